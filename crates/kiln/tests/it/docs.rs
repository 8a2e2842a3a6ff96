//! The user guide stays true. Every `kiln.toml` block in the guide is accepted by the real
//! project parser (`kiln plan` on a project made of the block and the repository's own
//! sections); every `kiln …` command shown in a code block of the docs or the README exists,
//! with every flag shown; and the backup and restore of the embedded store that
//! `docs/operations.md` documents, run exactly as written while a server keeps writing,
//! keeps what was acknowledged before the backup began.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use kiln_testkit::ServerProcess;
use serde_json::{Value, json};

use super::train::{repo, text};
use crate::kiln_bin;

/// A fenced code block of a Markdown file.
struct Block {
    /// The file, relative to the repository.
    file: String,
    /// The line of the opening fence (1-based).
    fence_line: usize,
    /// The info string: `toml`, `sh`, or empty.
    lang: String,
    /// NAME of a `<!-- docs-test: NAME … -->` comment on the line before the fence.
    marker: Option<String>,
    lines: Vec<String>,
}

impl Block {
    fn at(&self) -> String {
        format!("{}:{}", self.file, self.fence_line)
    }

    fn text(&self) -> String {
        let mut s = self.lines.join("\n");
        s.push('\n');
        s
    }
}

fn blocks(file: &str) -> Vec<Block> {
    let text = std::fs::read_to_string(repo().join(file))
        .unwrap_or_else(|e| panic!("cannot read {file}: {e}"));
    let mut out = vec![];
    let mut open: Option<Block> = None;
    let mut prev = "";
    for (i, line) in text.lines().enumerate() {
        let fence = line.trim_start().starts_with("```");
        match open.take() {
            None if fence => {
                let marker = prev
                    .trim()
                    .strip_prefix("<!-- docs-test:")
                    .and_then(|m| m.split_whitespace().next())
                    .map(str::to_string);
                open = Some(Block {
                    file: file.to_string(),
                    fence_line: i + 1,
                    lang: line.trim_start()[3..].trim().to_string(),
                    marker,
                    lines: vec![],
                });
            }
            None => {}
            Some(b) if fence => out.push(b),
            Some(mut b) => {
                b.lines.push(line.to_string());
                open = Some(b);
            }
        }
        prev = line;
    }
    assert!(open.is_none(), "{file}: a code block is not closed");
    out
}

fn kiln_command(args: &[&str], config: &Path, data_dir: &Path) -> Command {
    let mut c = Command::new(kiln_bin());
    c.args(args)
        .arg("--config")
        .arg(config)
        .arg("--data-dir")
        .arg(data_dir)
        .env("KILN_LOG", "warn")
        .env_remove("KILN_STORE")
        .env_remove("KILN_ARTIFACTS")
        .current_dir(config.parent().unwrap());
    c
}

// ---------------------------------------------------------------- kiln.toml blocks

/// The guide's pages whose ```toml blocks are `kiln.toml` text.
const TOML_PAGES: [&str; 7] = [
    "docs/reference.md",
    "docs/tutorial.md",
    "docs/pipeline.md",
    "docs/data.md",
    "docs/training.md",
    "docs/releases.md",
    "docs/monitoring.md",
];

/// The table a header line names: `data.flights.expect` for `[[data.flights.expect]]`;
/// None for a line that is not a header.
fn table(line: &str) -> Option<String> {
    let t = line.trim();
    let inner = match t.strip_prefix("[[") {
        Some(r) => r.split("]]").next()?,
        None => t.strip_prefix('[')?.split(']').next()?,
    };
    let parts: Vec<&str> = inner.split('.').map(str::trim).collect();
    if parts
        .iter()
        .any(|p| p.is_empty() || p.contains(['"', '=', ' ']))
    {
        return None;
    }
    Some(parts.join("."))
}

/// `base` without the tables the block defines and the tables under them: a block with
/// `[data.flights]` replaces the whole dataset, one with only `[[data.flights.expect]]`
/// replaces its expectations and keeps its source.
fn without(base: &str, defined: &BTreeSet<String>) -> String {
    let mut keep = true;
    let mut out = String::new();
    for line in base.lines() {
        if line.trim_start().starts_with('[')
            && let Some(t) = table(line)
        {
            keep = !defined
                .iter()
                .any(|d| t == *d || t.starts_with(&format!("{d}.")));
        }
        if keep {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// A directory to write projects into: the repository's data and runbooks linked in, and a
/// key pair in `keys/` (`kiln.pub`) for `trusted_keys`.
fn project_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for d in ["data", "runbooks"] {
        std::os::unix::fs::symlink(repo().join(d), dir.path().join(d)).unwrap();
    }
    let keys = super::train::keys_new(&dir.path().join("keys"));
    assert!(keys.status.success(), "{}", text(&keys.stderr));
    dir
}

/// Writes the block, followed by the repository's `kiln.toml` without the tables the block
/// defines, and runs `kiln plan` on it. The block comes first, so a line number in
/// an error is the line within the block. Returns an error naming the doc's line.
fn plan_block(dir: &Path, base: &str, block: &Block) -> Result<(), String> {
    let body = block.text();
    let defined: BTreeSet<String> = block.lines.iter().filter_map(|l| table(l)).collect();
    // Key files the block trusts: a copy of the test's public key under each name.
    for line in block.lines.iter().filter(|l| l.contains("trusted_keys")) {
        for (i, part) in line.split('"').enumerate() {
            if i % 2 == 1 {
                let path = dir.join(part);
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::copy(dir.join("keys/kiln.pub"), &path).unwrap();
            }
        }
    }
    let config = dir.join("kiln.toml");
    std::fs::write(&config, format!("{body}\n{}", without(base, &defined))).unwrap();
    let mut plan = kiln_command(&["plan"], &config, &dir.join("state"));
    // Variables the block interpolates (`${NAME}`) get a value.
    for part in body.split("${").skip(1) {
        if let Some(name) = part.split('}').next() {
            plan.env(name, "docs-example");
        }
    }
    let out = plan.output().expect("kiln runs");
    if out.status.success() {
        return Ok(());
    }
    let err = text(&out.stderr);
    // "TOML parse error at line N, column C": N counts from the block's first line.
    let doc_line = err
        .split("at line ")
        .nth(1)
        .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse::<usize>().ok())
        .filter(|n| *n <= block.lines.len())
        .map_or(String::new(), |n| {
            format!(" (line {} of {})", block.fence_line + n, block.file)
        });
    Err(format!(
        "{}: kiln plan refused this block{doc_line}:\n{err}",
        block.at()
    ))
}

#[test]
fn every_kiln_toml_block_in_the_guide_is_accepted_by_kiln_plan() {
    let dir = project_dir();
    let base = std::fs::read_to_string(repo().join("kiln.toml")).unwrap();
    let mut failures = vec![];
    let mut checked: BTreeMap<&str, usize> = BTreeMap::new();
    for page in TOML_PAGES {
        if !repo().join(page).exists() {
            failures.push(format!("{page} is missing"));
            continue;
        }
        for block in blocks(page).iter().filter(|b| b.lang == "toml") {
            *checked.entry(page).or_default() += 1;
            if let Err(e) = plan_block(dir.path(), &base, block) {
                failures.push(e);
            }
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n\n"));
    // The reference shows every section: if its blocks were not found, nothing was tested.
    assert!(
        checked.get("docs/reference.md").copied().unwrap_or(0) >= 12,
        "too few toml blocks found: {checked:?}"
    );
}

#[test]
fn a_broken_block_is_refused_with_its_line_in_the_doc() {
    // The check above must be able to fail: the reference's first block with an unknown key
    // after its header is refused, and the error points at the doc's line.
    let dir = project_dir();
    let base = std::fs::read_to_string(repo().join("kiln.toml")).unwrap();
    let mut block = blocks("docs/reference.md")
        .into_iter()
        .find(|b| b.lang == "toml")
        .unwrap();
    block.lines.insert(1, "no_such_key = 1".into());
    let e = plan_block(dir.path(), &base, &block).unwrap_err();
    let expected = format!("(line {} of docs/reference.md)", block.fence_line + 2);
    assert!(e.contains(&expected), "{e}");
    assert!(e.contains("no_such_key"), "{e}");
}

// ---------------------------------------------------------------- kiln commands

/// `kiln CHAIN --help`, cached.
struct Help(BTreeMap<Vec<String>, Result<String, String>>);

impl Help {
    fn get(&mut self, chain: &[String]) -> Result<String, String> {
        self.0
            .entry(chain.to_vec())
            .or_insert_with(|| {
                let out = Command::new(kiln_bin())
                    .args(chain)
                    .arg("--help")
                    .env_remove("KILN_LOG")
                    .output()
                    .expect("kiln runs");
                if out.status.success() {
                    Ok(text(&out.stdout))
                } else {
                    Err(text(&out.stderr))
                }
            })
            .clone()
    }

    /// Whether `kiln CHAIN` needs a subcommand (its usage ends in `<COMMAND>`).
    fn requires_subcommand(&mut self, chain: &[String]) -> bool {
        self.get(chain).is_ok_and(|h| {
            h.lines()
                .find(|l| l.starts_with("Usage:"))
                .is_some_and(|l| l.contains("<COMMAND>"))
        })
    }

    /// The subcommands `kiln CHAIN --help` lists.
    fn subcommands(&mut self, chain: &[String]) -> BTreeSet<String> {
        let Ok(help) = self.get(chain) else {
            return BTreeSet::new();
        };
        help.lines()
            .skip_while(|l| l.trim() != "Commands:")
            .skip(1)
            .take_while(|l| !l.trim().is_empty())
            .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
            .filter_map(|l| l.split_whitespace().next().map(str::to_string))
            .collect()
    }
}

/// `kiln CHAIN` as text.
fn cmd(chain: &[String]) -> String {
    std::iter::once("kiln")
        .chain(chain.iter().map(String::as_str))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A token without the brackets, quotes and commas of usage notation.
fn clean(token: &str) -> &str {
    token
        .trim_start_matches(['[', '(', '{', '"', '\''])
        .trim_end_matches([']', ')', '}', ',', '"', '\'', ';'])
}

/// The logical command lines of a block: continuations joined, comments, prompts and
/// here-documents left out. Returns (the doc's line, the text).
fn command_lines(block: &Block) -> Vec<(usize, String)> {
    let shell = matches!(block.lang.as_str(), "sh" | "bash" | "shell" | "console");
    let mut out: Vec<(usize, String)> = vec![];
    let mut heredoc: Option<String> = None;
    let mut continued = false;
    for (i, raw) in block.lines.iter().enumerate() {
        if let Some(end) = &heredoc {
            if raw.trim() == end {
                heredoc = None;
            }
            continue;
        }
        let mut line = raw.trim_start().trim_start_matches("$ ").to_string();
        if let Some(c) = line.find(" #") {
            line.truncate(c);
        }
        if line.starts_with('#') {
            line.clear();
        }
        if shell && let Some(rest) = line.split("<<").nth(1) {
            let word = rest.trim_start_matches('-').trim();
            let word = word.split_whitespace().next().unwrap_or("");
            heredoc = Some(word.trim_matches(['\'', '"']).to_string());
        }
        let t = line.trim_end().to_string();
        let joins_usage = !shell
            && raw.starts_with(char::is_whitespace)
            && (t.starts_with('[') || t.starts_with('|') || t.starts_with("--"))
            && out.last().is_some_and(|(_, l)| l.starts_with("kiln "));
        if continued || joins_usage {
            if let Some((_, last)) = out.last_mut() {
                last.push(' ');
                last.push_str(t.trim_end_matches('\\'));
            }
        } else if !t.is_empty() {
            out.push((
                block.fence_line + i + 1,
                t.trim_end_matches('\\').to_string(),
            ));
        }
        continued = t.ends_with('\\');
    }
    out
}

/// The arguments after `kiln` (or `cargo run … --`) in a segment, if it runs kiln.
fn kiln_args(tokens: &[&str]) -> Option<Vec<String>> {
    let start = tokens
        .iter()
        .position(|t| !(t.contains('=') && t.starts_with(|c: char| c.is_ascii_uppercase())))?;
    let rest = &tokens[start..];
    let args = match rest {
        ["kiln", args @ ..] => args,
        ["cargo", "run", more @ ..] => {
            let dashes = more.iter().position(|t| *t == "--")?;
            &more[dashes + 1..]
        }
        _ => return None,
    };
    Some(args.iter().map(|t| t.to_string()).collect())
}

/// Checks one command line; returns what is wrong with it.
fn check_line(help: &mut Help, shell: bool, line: &str) -> Vec<String> {
    let mut problems = vec![];
    let tokens: Vec<&str> = line.split_whitespace().collect();
    let seps: &[&str] = if shell {
        &["|", "||", "&&", ";", "&"]
    } else {
        &["|"]
    };
    let mut segments: Vec<Vec<&str>> = vec![vec![]];
    for t in tokens {
        if seps.contains(&t) {
            segments.push(vec![]);
        } else {
            segments.last_mut().unwrap().push(t);
        }
    }
    // The command the previous segment named, for usage notation such as
    // `kiln incidents list | show N` and `--rate R … | --concurrency 1,2`.
    let mut chain: Option<Vec<String>> = None;
    for seg in segments.iter().filter(|s| !s.is_empty()) {
        let (mut current, args): (Vec<String>, Vec<String>) = match kiln_args(seg) {
            Some(args) => (vec![], args),
            None => match &chain {
                Some(c)
                    if c.len() > 1
                        && help.subcommands(&c[..c.len() - 1]).contains(clean(seg[0])) =>
                {
                    (
                        c[..c.len() - 1].to_vec(),
                        seg.iter().map(|t| t.to_string()).collect(),
                    )
                }
                Some(c) if !shell => (c.clone(), seg.iter().map(|t| t.to_string()).collect()),
                // Output piped into another program.
                _ => continue,
            },
        };
        let mut rest = args.iter().map(|a| clean(a)).peekable();
        while let Some(t) = rest.peek() {
            if t.is_empty() || t.starts_with('-') {
                break;
            }
            if !help.subcommands(&current).contains(*t) {
                if help.requires_subcommand(&current) {
                    problems.push(format!("`{}` has no subcommand `{t}`", cmd(&current)));
                }
                break;
            }
            current.push(t.to_string());
            rest.next();
        }
        if let Err(e) = help.get(&current) {
            problems.push(format!("`{} --help` fails: {e}", cmd(&current)));
            continue;
        }
        let usage = help.get(&current).unwrap();
        for t in rest {
            let Some(flag) = t.strip_prefix("--").filter(|f| !f.is_empty()) else {
                continue;
            };
            let name = flag.split('=').next().unwrap();
            let shown = usage.match_indices(&format!("--{name}")).any(|(i, m)| {
                !usage[i + m.len()..].starts_with(|c: char| c.is_ascii_alphanumeric() || c == '-')
            });
            if !shown {
                problems.push(format!("`{}` has no flag `--{name}`", cmd(&current)));
            }
        }
        chain = Some(current);
    }
    problems
}

#[test]
fn every_kiln_command_in_the_docs_exists_with_its_flags() {
    let mut pages: Vec<String> = std::fs::read_dir(repo().join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .map(|p| format!("docs/{}", p.file_name().unwrap().to_string_lossy()))
        .collect();
    pages.sort();
    pages.push("README.md".into());
    let mut help = Help(BTreeMap::new());
    let mut failures = vec![];
    let mut checked = 0;
    for page in &pages {
        for block in blocks(page) {
            if !matches!(
                block.lang.as_str(),
                "" | "sh" | "bash" | "shell" | "console"
            ) {
                continue;
            }
            let shell = !block.lang.is_empty();
            for (line_no, line) in command_lines(&block) {
                let problems = check_line(&mut help, shell, &line);
                if line.contains("kiln ") {
                    checked += 1;
                }
                for p in problems {
                    failures.push(format!("{page}:{line_no}: {p}\n    {line}"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
    assert!(checked > 50, "only {checked} command lines found");
}

#[test]
fn the_command_check_catches_unknown_subcommands_and_flags() {
    let mut help = Help(BTreeMap::new());
    assert!(check_line(&mut help, true, "kiln data validate flights --json").is_empty());
    assert!(
        check_line(
            &mut help,
            false,
            "kiln incidents list | show N | resolve N --note x"
        )
        .is_empty()
    );
    let p = check_line(&mut help, true, "kiln data validat flights");
    assert!(
        p.iter()
            .any(|p| p.contains("`kiln data` has no subcommand `validat`")),
        "{p:?}"
    );
    let p = check_line(&mut help, true, "kiln dta validate flights");
    assert!(
        p.iter()
            .any(|p| p.contains("`kiln` has no subcommand `dta`")),
        "{p:?}"
    );
    // A positional after a command that takes one is not a subcommand.
    assert!(check_line(&mut help, true, "kiln release delay --version 3").is_empty());
    let p = check_line(&mut help, true, "kiln data validate flights --jsn");
    assert!(p.iter().any(|p| p.contains("--jsn")), "{p:?}");
    let p = check_line(
        &mut help,
        false,
        "kiln alerts list --deployment d | silence x --fr 2h",
    );
    assert!(
        p.iter()
            .any(|p| p.contains("`kiln alerts silence` has no flag `--fr`")),
        "{p:?}"
    );
}

// ---------------------------------------------------------------- backup and restore

fn sh(dir: &Path, script: &str) -> Output {
    Command::new("sh")
        .args(["-e", "-c", script])
        .current_dir(dir)
        .output()
        .expect("sh runs")
}

fn stop(server: &mut ServerProcess) {
    let pid = server.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    assert!(server.child.wait().unwrap().success(), "server exit status");
}

#[test]
fn the_documented_backup_and_restore_of_the_embedded_store_work_while_a_server_writes() {
    let page = blocks("docs/operations.md");
    let marked = |name: &str| -> String {
        page.iter()
            .find(|b| b.marker.as_deref() == Some(name))
            .unwrap_or_else(|| {
                panic!("docs/operations.md has no block after <!-- docs-test: {name} -->")
            })
            .text()
    };
    let (backup, restore) = (marked("backup"), marked("restore"));
    let dir = tempfile::tempdir().unwrap();
    let data: PathBuf = dir.path().join(".kiln");
    let rt = super::serve::rt();
    let http = reqwest::Client::new();
    let mut server = ServerProcess::start(&kiln_bin(), &data, &[]);
    let api = format!("{}/api/2.0/mlflow", server.url);
    let artifact = format!(
        "{}/api/2.0/mlflow-artifacts/artifacts/backup-test/model.txt",
        server.url
    );
    let post = |url: String, body: Value| {
        let http = http.clone();
        async move {
            let r = http.post(url).json(&body).send().await.unwrap();
            assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
            r.json::<Value>().await.unwrap()
        }
    };

    // Before the backup: an experiment, a run with 50 points of a metric, an artifact.
    let run_id = rt.block_on(async {
        let e = post(format!("{api}/experiments/create"), json!({"name": "kept"})).await;
        let run = post(
            format!("{api}/runs/create"),
            json!({"experiment_id": e["experiment_id"]}),
        )
        .await;
        let run_id = run["run"]["info"]["run_id"].as_str().unwrap().to_string();
        for step in 0..50 {
            post(
                format!("{api}/runs/log-metric"),
                json!({"run_id": run_id, "key": "m", "value": step, "timestamp": 1, "step": step}),
            )
            .await;
        }
        let r = http
            .put(&artifact)
            .body("the model, before the backup")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        run_id
    });

    // During the backup: a client keeps logging.
    let (stopping, acked) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicUsize::new(0)),
    );
    let writer = {
        let (http, api, run_id) = (http.clone(), api.clone(), run_id.clone());
        let (stopping, acked) = (stopping.clone(), acked.clone());
        rt.spawn(async move {
            let mut step = 0;
            while !stopping.load(Ordering::SeqCst) {
                let r = http
                    .post(format!("{api}/runs/log-metric"))
                    .json(&json!({"run_id": run_id, "key": "during", "value": step,
                                  "timestamp": 1, "step": step}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
                acked.fetch_add(1, Ordering::SeqCst);
                step += 1;
            }
        })
    };
    assert!(kiln_testkit::wait_until(Duration::from_secs(10), || {
        acked.load(Ordering::SeqCst) >= 20
    }));
    let acked_before = acked.load(Ordering::SeqCst);
    let out = sh(dir.path(), &backup);
    assert!(
        out.status.success(),
        "the documented backup failed:\n{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    stopping.store(true, Ordering::SeqCst);
    rt.block_on(writer).unwrap();
    assert!(
        acked.load(Ordering::SeqCst) > acked_before,
        "the client kept writing during the backup"
    );

    // After the backup: written, then lost by the restore.
    rt.block_on(post(
        format!("{api}/experiments/create"),
        json!({"name": "after-backup"}),
    ));
    stop(&mut server);

    let out = sh(dir.path(), &restore);
    assert!(
        out.status.success(),
        "the documented restore failed:\n{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );

    // The restored directory, opened by kiln.
    let server = ServerProcess::start(&kiln_bin(), &data, &[]);
    let api = format!("{}/api/2.0/mlflow", server.url);
    let artifact = format!(
        "{}/api/2.0/mlflow-artifacts/artifacts/backup-test/model.txt",
        server.url
    );
    rt.block_on(async {
        let get = |url: String| {
            let http = http.clone();
            async move { http.get(url).send().await.unwrap() }
        };
        let r = get(format!("{api}/experiments/get-by-name?experiment_name=kept")).await;
        assert_eq!(r.status(), 200, "the experiment made before the backup");
        let r = get(format!(
            "{api}/experiments/get-by-name?experiment_name=after-backup"
        ))
        .await;
        assert_eq!(r.status(), 404, "the experiment made after the backup");
        let history = |key: &'static str| {
            let (api, run_id) = (api.clone(), run_id.clone());
            async move {
                let r = get(format!(
                    "{api}/metrics/get-history?run_id={run_id}&metric_key={key}&max_results=25000"
                ))
                .await;
                assert_eq!(r.status(), 200);
                let v: Value = r.json().await.unwrap();
                v["metrics"].as_array().map_or(0, Vec::len)
            }
        };
        assert_eq!(history("m").await, 50);
        let during = history("during").await;
        assert!(
            during >= acked_before,
            "{during} points of `during` restored, {acked_before} were acknowledged before the backup began"
        );
        let r = get(artifact.clone()).await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.text().await.unwrap(), "the model, before the backup");
    });
}
