//! `kiln feedback import FILE --deployment NAME`: labels for earlier predictions, by request
//! id, from a CSV file (a header with `request_id` and `label` columns) or JSON lines
//! (`{"request_id": …, "label": …}` per line). All or nothing: a bad line stops the import
//! before anything is stored, and the error names the line and the column.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use serde_json::Value;

use super::data::{Ctx, ProjectArgs};

#[derive(Args, Debug)]
pub struct FeedbackArgs {
    #[command(flatten)]
    pub project: ProjectArgs,
    #[command(subcommand)]
    pub command: FeedbackCommand,
}

#[derive(Subcommand, Debug)]
pub enum FeedbackCommand {
    /// Store labels from a CSV (`request_id,label`) or JSON-lines file.
    Import {
        file: PathBuf,
        /// The deployment (served name) the predictions came from.
        #[arg(long)]
        deployment: String,
    },
}

pub fn run(a: FeedbackArgs) -> anyhow::Result<ExitCode> {
    let FeedbackCommand::Import { file, deployment } = a.command;
    let text = std::fs::read_to_string(&file)
        .with_context(|| format!("cannot read {}", file.display()))?;
    let labels = if text.trim_start().starts_with('{') {
        json_lines(&text).with_context(|| file.display().to_string())?
    } else {
        csv_rows(&text).with_context(|| file.display().to_string())?
    };
    if labels.is_empty() {
        bail!("{}: no labels in the file", file.display());
    }
    let ctx = Ctx::new_optional_project(&a.project)?;
    let store = ctx.store()?;
    let n = ctx.rt.block_on(store.put_feedback(&deployment, labels))?;
    println!("stored {n} labels for deployment `{deployment}`");
    Ok(ExitCode::SUCCESS)
}

/// A label as written in CSV: a number when it reads as one, `true`/`false`, else the text.
fn csv_label(s: &str) -> Value {
    let t = s.trim();
    if let Ok(i) = t.parse::<i64>() {
        return Value::from(i);
    }
    if let Ok(x) = t.parse::<f64>()
        && x.is_finite()
    {
        return Value::from(x);
    }
    match t {
        "true" | "True" => Value::Bool(true),
        "false" | "False" => Value::Bool(false),
        _ => Value::String(t.to_string()),
    }
}

fn csv_rows(text: &str) -> anyhow::Result<Vec<(String, Value)>> {
    let mut r = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let headers = r
        .headers()
        .context("line 1: cannot read the header")?
        .clone();
    let col = |name: &str| {
        headers.iter().position(|h| h == name).with_context(|| {
            format!(
                "line 1: no `{name}` column (the header has: {})",
                headers.iter().collect::<Vec<_>>().join(", ")
            )
        })
    };
    let (id_col, label_col) = (col("request_id")?, col("label")?);
    let mut out = vec![];
    for rec in r.records() {
        let rec = rec.map_err(|e| match e.position() {
            Some(p) => anyhow::anyhow!("line {}: {e}", p.line()),
            None => anyhow::anyhow!("{e}"),
        })?;
        let line = rec.position().map_or(0, |p| p.line());
        let id = rec.get(id_col).unwrap_or_default();
        let label = rec.get(label_col).unwrap_or_default();
        if id.is_empty() {
            bail!("line {line}, column `request_id` ({}): empty", id_col + 1);
        }
        if label.is_empty() {
            bail!("line {line}, column `label` ({}): empty", label_col + 1);
        }
        out.push((id.to_string(), csv_label(label)));
    }
    Ok(out)
}

fn json_lines(text: &str) -> anyhow::Result<Vec<(String, Value)>> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Line {
        request_id: String,
        label: Value,
    }
    let mut out = vec![];
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let l: Line = serde_json::from_str(line)
            .map_err(|e| anyhow::anyhow!("line {}, column {}: {e}", i + 1, e.column()))?;
        out.push((l.request_id, l.label));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_csv_and_json_lines_and_names_bad_lines() {
        let got = csv_rows("request_id,label\nr1,1\nr2, 0.5 \nr3,late\n").unwrap();
        assert_eq!(
            got,
            vec![
                ("r1".into(), json!(1)),
                ("r2".into(), json!(0.5)),
                ("r3".into(), json!("late"))
            ]
        );
        let e = csv_rows("request_id,label\nr1,1\n,0\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 3") && e.contains("request_id"), "{e}");
        let e = csv_rows("id,label\nr1,1\n").unwrap_err().to_string();
        assert!(e.contains("no `request_id` column"), "{e}");
        let e = csv_rows("request_id,label\nr1,1,extra\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2"), "{e}");
        let got = json_lines(
            "{\"request_id\":\"a\",\"label\":1}\n\n{\"request_id\":\"b\",\"label\":\"x\"}\n",
        )
        .unwrap();
        assert_eq!(got, vec![("a".into(), json!(1)), ("b".into(), json!("x"))]);
        let e = json_lines("{\"request_id\":\"a\",\"label\":1}\n{\"request_id\":\"b\"}\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2") && e.contains("label"), "{e}");
    }
}
