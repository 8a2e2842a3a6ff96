//! `kiln incidents`: list incidents, show one with its timeline, likely trigger and runbook,
//! and resolve one with a note. Reads and writes the metadata store directly.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use kiln_store::{Incident, TimelineEntry};
use serde_json::json;

use super::client::time;
use super::data::{Ctx, ProjectArgs};

#[derive(Args, Debug)]
pub struct IncidentsArgs {
    #[command(flatten)]
    pub project: ProjectArgs,
    #[command(subcommand)]
    pub command: IncidentsCommand,
}

#[derive(Subcommand, Debug)]
pub enum IncidentsCommand {
    /// Open incidents, newest first (`--all` for resolved ones too).
    List {
        #[arg(long)]
        all: bool,
        #[arg(long)]
        json: bool,
    },
    /// One incident: its evidence, the timeline of what changed before and during it, the
    /// likely trigger and the runbook.
    Show {
        id: i64,
        /// How far before the incident the timeline starts, e.g. `30m`, `2h`, `1d`.
        #[arg(long, default_value = "1h")]
        before: String,
        #[arg(long)]
        json: bool,
    },
    /// Resolve an open incident; the note says what was found and done.
    Resolve {
        id: i64,
        #[arg(long)]
        note: String,
        /// Who resolves it (default: $USER).
        #[arg(long, env = "USER", default_value = "unknown")]
        by: String,
    },
}

/// Timeline kinds that are changes someone or something made (candidates for the trigger).
const CHANGES: [&str; 7] = [
    "deploy", "undeploy", "alias", "traffic", "apply", "config", "rollback",
];

pub fn run(a: IncidentsArgs) -> anyhow::Result<ExitCode> {
    let ctx = Ctx::new_optional_project(&a.project)?;
    let store = ctx.store()?;
    match a.command {
        IncidentsCommand::List { all, json } => {
            let list = ctx.rt.block_on(store.incidents(!all))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else if list.is_empty() {
                println!("no {}incidents", if all { "" } else { "open " });
            } else {
                for i in &list {
                    let state = match i.resolved_at {
                        Some(t) => format!("resolved {}", time(t)),
                        None => "OPEN".to_string(),
                    };
                    println!(
                        "{:>4}  {:<6} {:<20} {}  {}  ({state})",
                        i.id,
                        i.severity,
                        i.subject,
                        time(i.opened_at),
                        i.title
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        IncidentsCommand::Show { id, before, json } => {
            let lookback = parse_duration_ms(&before)
                .with_context(|| format!("--before {before:?}: expected e.g. 30m, 2h, 1d"))?;
            let incident = ctx.rt.block_on(store.incident(id))?;
            let until = incident
                .resolved_at
                .unwrap_or_else(kiln_store::now_ms)
                .max(incident.opened_at)
                + 1;
            let timeline = ctx.rt.block_on(store.timeline(
                &incident.subject,
                incident.opened_at - lookback,
                until,
            ))?;
            let trigger = likely_trigger(&incident, &timeline);
            let runbook = incident
                .runbook
                .as_deref()
                .map(|r| (r, read_runbook(&ctx.project.dir, r)));
            if json {
                let v = json!({
                    "incident": incident,
                    "timeline": timeline,
                    "likely_trigger": trigger,
                    "runbook": runbook.as_ref().map(|(r, text)| json!({"link": r, "text": text})),
                });
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(ExitCode::SUCCESS);
            }
            print_incident(&incident, &timeline, trigger, runbook);
            Ok(ExitCode::SUCCESS)
        }
        IncidentsCommand::Resolve { id, note, by } => {
            let i =
                ctx.rt
                    .block_on(store.resolve_incident(id, &by, &note, kiln_store::now_ms()))?;
            println!(
                "incident {} resolved by {} at {}",
                i.id,
                by,
                time(i.resolved_at.unwrap_or_default())
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The last change before the incident opened; failing that, the first thing seen during
/// the lookback (a drift onset, an alert).
fn likely_trigger<'a>(
    incident: &Incident,
    timeline: &'a [TimelineEntry],
) -> Option<&'a TimelineEntry> {
    let before = |e: &&TimelineEntry| e.at <= incident.opened_at && e.kind != "incident";
    timeline
        .iter()
        .filter(before)
        .rfind(|e| CHANGES.contains(&e.kind.as_str()) && e.kind != "rollback")
        .or_else(|| timeline.iter().find(before))
}

fn read_runbook(project_dir: &Path, link: &str) -> Option<String> {
    if link.contains("://") {
        return None;
    }
    [project_dir.join(link), Path::new(link).to_path_buf()]
        .into_iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
}

fn print_incident(
    i: &Incident,
    timeline: &[TimelineEntry],
    trigger: Option<&TimelineEntry>,
    runbook: Option<(&str, Option<String>)>,
) {
    println!("incident {}: {}", i.id, i.title);
    println!("  subject     {}", i.subject);
    println!("  severity    {}", i.severity);
    println!("  opened      {}", time(i.opened_at));
    match (&i.resolved_at, &i.resolution) {
        (Some(t), note) => println!(
            "  resolved    {} by {}: {}",
            time(*t),
            i.resolved_by.as_deref().unwrap_or("?"),
            note.as_deref().unwrap_or("")
        ),
        _ => println!(
            "  resolved    no (kiln incidents resolve {} --note …)",
            i.id
        ),
    }
    if let Some(obj) = i.evidence.as_object().filter(|o| !o.is_empty()) {
        println!("  evidence");
        for (k, v) in obj {
            println!("    {k:<22} {v}");
        }
    }
    println!();
    println!("timeline (oldest first)");
    if timeline.is_empty() {
        println!("  nothing recorded");
    }
    for e in timeline {
        let mark = if trigger.is_some_and(|t| std::ptr::eq(t, e)) {
            "►"
        } else {
            " "
        };
        println!(
            "{mark} {}  {:<9} {}  ({})",
            time(e.at),
            e.kind,
            e.summary,
            e.actor
        );
    }
    println!();
    match trigger {
        Some(t) => println!(
            "likely trigger: {} at {} ({}), {} before the incident opened",
            t.summary,
            time(t.at),
            t.kind,
            human_ms(i.opened_at - t.at)
        ),
        None => println!("likely trigger: nothing recorded before the incident"),
    }
    if let Some((link, text)) = runbook {
        println!();
        println!("runbook: {link}");
        if let Some(text) = text {
            for line in text.lines() {
                println!("  {line}");
            }
        }
    }
}

fn human_ms(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{}s", s / 60, s % 60),
        _ => format!("{}h{}m", s / 3600, (s % 3600) / 60),
    }
}

/// `30s`, `5m`, `2h`, `1d` (or plain milliseconds).
pub fn parse_duration_ms(s: &str) -> Option<i64> {
    let s = s.trim();
    let (num, unit) = s.split_at(
        s.find(|c: char| !c.is_ascii_digit() && c != '.')?
            .min(s.len()),
    );
    let n: f64 = num.parse().ok()?;
    let scale = match unit {
        "ms" => 1.0,
        "s" => 1e3,
        "m" => 60e3,
        "h" => 3600e3,
        "d" => 86_400e3,
        _ => return None,
    };
    Some((n * scale) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ms("30s"), Some(30_000));
        assert_eq!(parse_duration_ms("1.5h"), Some(5_400_000));
        assert_eq!(parse_duration_ms("2d"), Some(172_800_000));
        assert_eq!(parse_duration_ms("10"), None);
        assert_eq!(parse_duration_ms("5 parsecs"), None);
    }

    fn entry(at: i64, kind: &str) -> TimelineEntry {
        TimelineEntry {
            at,
            kind: kind.into(),
            actor: "x".into(),
            summary: kind.into(),
            detail: json!({}),
        }
    }

    #[test]
    fn the_trigger_is_the_last_change_before_the_incident() {
        let i = Incident {
            id: 1,
            subject: "d".into(),
            title: "t".into(),
            severity: "page".into(),
            opened_at: 100,
            fingerprint: "f".into(),
            runbook: None,
            evidence: json!({}),
            resolved_at: None,
            resolved_by: None,
            resolution: None,
        };
        let tl = vec![
            entry(10, "deploy"),
            entry(20, "drift"),
            entry(50, "traffic"),
            entry(90, "alert"),
            entry(100, "incident"),
            entry(120, "rollback"),
        ];
        assert_eq!(likely_trigger(&i, &tl).unwrap().at, 50);
        let tl = vec![
            entry(20, "drift"),
            entry(90, "alert"),
            entry(150, "traffic"),
        ];
        assert_eq!(likely_trigger(&i, &tl).unwrap().kind, "drift");
        assert!(likely_trigger(&i, &[entry(150, "deploy")]).is_none());
    }
}
