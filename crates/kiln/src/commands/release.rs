//! `kiln release`, `kiln release status`, `kiln release policy` and `kiln rollback`: alias
//! moves through the server, which runs the release gates and records every evaluation.
//!
//! Exit status: 0 done, 1 the release was refused (a gate failed, or the alias moved under
//! us), 2 any other error.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::bail;
use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{Value, json};

use super::client::{ApiFailure, Client, ServerConn, time};
use crate::project::Project;

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct ReleaseArgs {
    #[command(subcommand)]
    pub command: Option<ReleaseCommand>,
    /// The registered model.
    pub name: Option<String>,
    /// The version to release.
    #[arg(long)]
    pub version: Option<String>,
    /// The alias to move (a protected alias runs its gates).
    #[arg(long, default_value = "champion")]
    pub to: String,
    /// Move despite failed gates, recording this reason (admins only).
    #[arg(long = "override", value_name = "REASON")]
    pub override_reason: Option<String>,
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub conn: ServerConn,
}

#[derive(Subcommand, Debug)]
pub enum ReleaseCommand {
    /// Aliases, their history and the stored gate evaluations of a model.
    Status(StatusArgs),
    /// Show the `[release.*]` policies of kiln.toml against the server's; `--apply` sends them.
    Policy(PolicyArgs),
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    pub name: String,
    /// Only this alias.
    #[arg(long)]
    pub alias: Option<String>,
    /// Evaluations to show.
    #[arg(long, default_value_t = 10)]
    pub max_results: u32,
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub conn: ServerConn,
}

#[derive(Args, Debug)]
pub struct PolicyArgs {
    /// Only this model's policy (default: every `[release.*]`).
    pub name: Option<String>,
    /// The project file.
    #[arg(long, env = "KILN_CONFIG", default_value = "kiln.toml")]
    pub config: PathBuf,
    /// Send the file's policies to the server.
    #[arg(long)]
    pub apply: bool,
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub conn: ServerConn,
}

#[derive(Args, Debug)]
pub struct RollbackArgs {
    pub name: String,
    #[arg(long, default_value = "champion")]
    pub alias: String,
    /// Why (recorded in the alias history).
    #[arg(long)]
    pub reason: Option<String>,
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub conn: ServerConn,
}

pub fn run(args: ReleaseArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        Some(ReleaseCommand::Status(a)) => status(a),
        Some(ReleaseCommand::Policy(a)) => policy(a),
        None => release(args),
    }
}

/// A refusal the caller can act on (exit 1) rather than a failure to run (exit 2).
fn refused(e: &anyhow::Error) -> Option<&ApiFailure> {
    e.downcast_ref::<ApiFailure>()
        .filter(|f| matches!(f.code.as_str(), "PERMISSION_DENIED" | "RESOURCE_CONFLICT"))
}

fn release(a: ReleaseArgs) -> anyhow::Result<ExitCode> {
    let Some(name) = a.name.clone() else {
        bail!("give the model: kiln release NAME --version V [--to ALIAS]");
    };
    let Some(version) = a.version.clone() else {
        bail!("give the version to release: kiln release {name} --version V");
    };
    let client = Client::new(&a.conn)?;
    // The holder we saw: if another release moves the alias first, ours is refused.
    let before = client.call(
        Method::GET,
        "releases/status",
        &[("name", name.clone()), ("alias", a.to.clone())],
        None,
    )?;
    let holder = before["aliases"]
        .as_array()
        .and_then(|v| v.iter().find(|x| x["alias"] == a.to.as_str()))
        .map(|x| x["version"].clone())
        .unwrap_or(Value::Null);
    let body = json!({
        "name": name,
        "version": version,
        "alias": a.to,
        "override_reason": a.override_reason,
        "expected_holder": holder,
    });
    match client.call(Method::POST, "releases", &[], Some(body)) {
        Ok(out) => {
            if a.json {
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                let e = &out["event"];
                println!(
                    "{} version {} is now `{}` (was {}; {} by {})",
                    name,
                    version,
                    a.to,
                    e["previous"]
                        .as_str()
                        .map_or("unset".into(), |p| format!("version {p}")),
                    e["action"].as_str().unwrap_or(""),
                    e["actor"].as_str().unwrap_or("")
                );
                if let Some(ev) = out.get("evaluation").filter(|v| !v.is_null()) {
                    print_evaluation(ev);
                } else {
                    println!("  `{}` is not protected: no gates ran", a.to);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            let Some(f) = refused(&e) else {
                return Err(e);
            };
            if a.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&json!({
                        "released": false, "error_code": f.code, "message": f.message
                    }))?
                );
            } else {
                eprintln!("refused: {}", f.message);
                // Show the stored evaluation, gate by gate, when there is one.
                if f.code == "PERMISSION_DENIED"
                    && let Ok(s) = client.call(
                        Method::GET,
                        "releases/status",
                        &[
                            ("name", name.clone()),
                            ("alias", a.to.clone()),
                            ("max_results", "1".into()),
                        ],
                        None,
                    )
                    && let Some(ev) = s["evaluations"].get(0)
                    && ev["version"] == version.as_str()
                {
                    print_evaluation(ev);
                }
            }
            Ok(ExitCode::from(1))
        }
    }
}

fn print_evaluation(ev: &Value) {
    println!(
        "  evaluation {} ({} by {} at {}{}):",
        ev["id"],
        ev["outcome"].as_str().unwrap_or(""),
        ev["actor"].as_str().unwrap_or(""),
        time(ev["created_at"].as_i64().unwrap_or(0)),
        ev["holder"]
            .as_str()
            .map_or(String::new(), |h| format!(", against holder version {h}"))
    );
    for g in ev["gates"].as_array().into_iter().flatten() {
        let what = match g["subject"].as_str() {
            Some(s) if !s.is_empty() => format!("{} {s}", g["gate"].as_str().unwrap_or("")),
            _ => g["gate"].as_str().unwrap_or("").to_string(),
        };
        println!(
            "    {} {:<28} {}",
            if g["passed"].as_bool() == Some(true) {
                "PASS"
            } else {
                "FAIL"
            },
            what,
            g["message"].as_str().unwrap_or("")
        );
    }
    if let Some(r) = ev["override_reason"].as_str() {
        println!("    overridden: {r}");
    }
}

fn status(a: StatusArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(&a.conn)?;
    let mut q = vec![
        ("name", a.name.clone()),
        ("max_results", a.max_results.max(1).to_string()),
    ];
    if let Some(al) = &a.alias {
        q.push(("alias", al.clone()));
    }
    let s = client.call(Method::GET, "releases/status", &q, None)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&s)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("{}", a.name);
    println!("aliases:");
    let aliases = s["aliases"].as_array().cloned().unwrap_or_default();
    if aliases.is_empty() {
        println!("  (none)");
    }
    for x in &aliases {
        println!(
            "  {:<16} {}{}",
            x["alias"].as_str().unwrap_or(""),
            x["version"]
                .as_str()
                .map_or("unset".into(), |v| format!("version {v}")),
            if x["protected"].as_bool() == Some(true) {
                "  (protected)"
            } else {
                ""
            }
        );
    }
    println!("history:");
    let history = s["history"].as_array().cloned().unwrap_or_default();
    if history.is_empty() {
        println!("  (none)");
    }
    for e in &history {
        let v = |k: &str| {
            e[k].as_str()
                .map_or("unset".to_string(), |x| format!("v{x}"))
        };
        println!(
            "  {}  {:<12} {:>6} -> {:<6} {:<15} by {}{}{}",
            time(e["at"].as_i64().unwrap_or(0)),
            e["alias"].as_str().unwrap_or(""),
            v("previous"),
            v("version"),
            e["action"].as_str().unwrap_or(""),
            e["actor"].as_str().unwrap_or(""),
            e["evaluation"]
                .as_i64()
                .map_or(String::new(), |i| format!(" (evaluation {i})")),
            e["reason"]
                .as_str()
                .map_or(String::new(), |r| format!(": {r}"))
        );
    }
    println!("evaluations (newest first):");
    let evs = s["evaluations"].as_array().cloned().unwrap_or_default();
    if evs.is_empty() {
        println!("  (none)");
    }
    for ev in &evs {
        println!(
            "  `{}` <- version {}",
            ev["alias"].as_str().unwrap_or(""),
            ev["version"].as_str().unwrap_or("")
        );
        print_evaluation(ev);
    }
    Ok(ExitCode::SUCCESS)
}

fn policy(a: PolicyArgs) -> anyhow::Result<ExitCode> {
    let project = Project::load(&a.config)?;
    let names: Vec<String> = match &a.name {
        Some(n) => vec![n.clone()],
        None => project.file.release.keys().cloned().collect(),
    };
    if names.is_empty() {
        bail!("{}: no [release.*] sections", project.path.display());
    }
    let client = Client::new(&a.conn)?;
    let mut report = vec![];
    for name in &names {
        let local = project.release_policy(name)?;
        let remote = match client.call(
            Method::GET,
            "release-policies",
            &[("name", name.clone())],
            None,
        ) {
            Ok(v) => Some(v["policies"][0]["policy"].clone()),
            Err(e)
                if e.downcast_ref::<ApiFailure>()
                    .is_some_and(|f| f.code == "RESOURCE_DOES_NOT_EXIST") =>
            {
                None
            }
            Err(e) => return Err(e),
        };
        let local_json = serde_json::to_value(&local)?;
        let state = match &remote {
            None => "absent on the server",
            Some(r) if *r == local_json => "up to date",
            Some(_) => "differs from the server's",
        };
        let mut applied = false;
        if a.apply && state != "up to date" {
            client.call(
                Method::PUT,
                "release-policies",
                &[],
                Some(json!({ "policy": local_json })),
            )?;
            applied = true;
        }
        if !a.json {
            let protected: Vec<&str> = local.aliases.keys().map(String::as_str).collect();
            println!(
                "{name}: {state}{} (protected: {}; {} trusted key(s))",
                if applied { " -> applied" } else { "" },
                if protected.is_empty() {
                    "none".to_string()
                } else {
                    protected.join(", ")
                },
                local.trusted_keys.len()
            );
        }
        report
            .push(json!({"model": name, "state": state, "applied": applied, "policy": local_json}));
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else if !a.apply && report.iter().any(|r| r["state"] != "up to date") {
        println!(
            "run with --apply to send these policies to {}",
            a.conn.server
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn rollback(a: RollbackArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(&a.conn)?;
    let out = client.call(
        Method::POST,
        "releases/rollback",
        &[],
        Some(json!({"name": a.name, "alias": a.alias, "reason": a.reason})),
    );
    let out = match out {
        Ok(o) => o,
        Err(e) => match refused(&e) {
            Some(f) => {
                eprintln!("refused: {}", f.message);
                return Ok(ExitCode::from(1));
            }
            None => return Err(e),
        },
    };
    if a.json {
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        let e = &out["event"];
        println!(
            "{} `{}` rolled back: version {} -> version {}",
            a.name,
            a.alias,
            e["previous"].as_str().unwrap_or("?"),
            e["version"].as_str().unwrap_or("?")
        );
    }
    Ok(ExitCode::SUCCESS)
}
