//! Expectations: each rule's verdict, counts and examples; quarantine holds every failing row
//! with the rules it broke.

use std::path::{Path, PathBuf};

use kiln_data::config::{DatasetConfig, Expectation};
use kiln_data::expect::{LINE_COLUMN, ROW_COLUMN, RULES_COLUMN, validate};
use kiln_data::read_dataset;

fn parse_cfg(toml_text: &str) -> DatasetConfig {
    #[derive(serde::Deserialize)]
    struct F {
        data: std::collections::BTreeMap<String, DatasetConfig>,
    }
    let f: F = toml::from_str(toml_text).unwrap();
    f.data.into_values().next().unwrap()
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

const CSV: &str = "\
id,name,score,code,city
1,alice,10.5,AB1,paris
2,bob,,AB2,rome
3,carol,99.0,XX,paris
4,,-5,AB4,oslo
5,eve,20,AB5,paris
5,frank,NaN,ab6,rome
";

fn rules(extra: &str) -> DatasetConfig {
    parse_cfg(&format!("[data.t]\nsource = \"t.csv\"\n{extra}"))
}

fn run(cfg: &DatasetConfig) -> kiln_data::expect::Validation {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "t.csv", CSV);
    let table = read_dataset(cfg, &p, "t.csv").unwrap();
    validate("t", &table, &cfg.expect).unwrap()
}

fn rule<'a>(v: &'a kiln_data::expect::Validation, name: &str) -> &'a kiln_data::expect::RuleResult {
    v.report
        .rules
        .iter()
        .find(|r| r.name == name)
        .unwrap_or_else(|| panic!("no rule {name}"))
}

#[test]
fn row_rules_count_failures_and_give_examples_with_rows_and_lines() {
    let cfg = rules(
        r#"
[[data.t.expect]]
rule = "not_null"
column = "name"
[[data.t.expect]]
rule = "between"
column = "score"
min = 0
max = 50
[[data.t.expect]]
rule = "in_set"
column = "city"
values = ["paris", "rome"]
[[data.t.expect]]
rule = "unique"
column = "id"
[[data.t.expect]]
rule = "regex"
column = "code"
pattern = "^AB[0-9]$"
[[data.t.expect]]
rule = "value_lengths"
column = "code"
min = 3
max = 3
"#,
    );
    let v = run(&cfg);
    let r = rule(&v, "not_null(name)");
    assert!(!r.success);
    assert_eq!((r.failing, r.checked), (1, 6));
    assert_eq!(r.examples[0].row, 4);
    assert_eq!(r.examples[0].line, Some(5));

    // score: 99 and -5 fail; the null and the NaN are not judged.
    let r = rule(&v, "between(score)");
    assert_eq!((r.failing, r.checked), (2, 4));
    assert_eq!(
        r.examples.iter().map(|e| e.row).collect::<Vec<_>>(),
        vec![3, 4]
    );
    assert_eq!(r.examples[0].value, serde_json::json!(99.0));

    let r = rule(&v, "in_set(city)");
    assert_eq!(r.failing, 1);
    assert_eq!(r.examples[0].value, serde_json::json!("oslo"));

    // Both occurrences of a repeated value fail.
    let r = rule(&v, "unique(id)");
    assert_eq!(r.failing, 2);
    assert_eq!(
        r.examples.iter().map(|e| e.row).collect::<Vec<_>>(),
        vec![5, 6]
    );

    let r = rule(&v, "regex(code)");
    assert_eq!(r.failing, 2); // XX, ab6

    let r = rule(&v, "value_lengths(code)");
    assert_eq!(r.failing, 1); // XX

    assert!(!v.report.success);
    // Quarantine: rows 3 (score, regex, length), 4 (name, score, city), 5 and 6 (unique; 6
    // also regex). Rows 1 and 2 are clean.
    let q = &v.quarantine;
    assert_eq!(q.height(), 4);
    assert_eq!(v.report.quarantined_rows, 4);
    let rows: Vec<u64> = q
        .column(ROW_COLUMN)
        .unwrap()
        .u64()
        .unwrap()
        .iter()
        .flatten()
        .collect();
    assert_eq!(rows, vec![3, 4, 5, 6]);
    let lines: Vec<Option<u64>> = q
        .column(LINE_COLUMN)
        .unwrap()
        .u64()
        .unwrap()
        .iter()
        .collect();
    assert_eq!(lines, vec![Some(4), Some(5), Some(6), Some(7)]);
    let broke: Vec<&str> = q
        .column(RULES_COLUMN)
        .unwrap()
        .str()
        .unwrap()
        .iter()
        .flatten()
        .collect();
    assert_eq!(broke[0], "between(score);regex(code);value_lengths(code)");
    assert_eq!(broke[1], "not_null(name);between(score);in_set(city)");
    assert_eq!(broke[2], "unique(id)");
    assert_eq!(broke[3], "unique(id);regex(code)");
    // Original columns follow, values intact.
    assert_eq!(
        q.column("name").unwrap().str().unwrap().get(0),
        Some("carol")
    );
    // Nothing lost: failing mask + clean rows = all rows.
    assert_eq!(v.failed_mask.sum().unwrap(), 4);
    assert_eq!(v.failed_mask.len(), 6);
}

#[test]
fn mostly_turns_a_few_failures_into_a_pass_but_still_quarantines_them() {
    let cfg = rules(
        r#"
[[data.t.expect]]
rule = "expect_column_values_to_be_in_set"
column = "city"
values = ["paris", "rome"]
mostly = 0.8
[[data.t.expect]]
rule = "in_set"
name = "strict cities"
column = "city"
values = ["paris", "rome"]
mostly = 0.9
"#,
    );
    let v = run(&cfg);
    assert!(rule(&v, "in_set(city)").success, "5/6 = 0.83 >= 0.8");
    assert!(!rule(&v, "strict cities").success, "5/6 < 0.9");
    assert_eq!(v.quarantine.height(), 1);
}

#[test]
fn table_rules_report_what_they_observed() {
    let cfg = rules(
        r#"
[[data.t.expect]]
rule = "row_count"
min = 1
max = 5
[[data.t.expect]]
rule = "mean_between"
column = "score"
min = 20
max = 40
[[data.t.expect]]
rule = "quantile_between"
column = "score"
quantile = 0.5
min = 15
max = 25
[[data.t.expect]]
rule = "column_set"
columns = ["id", "name", "score", "code", "town"]
[[data.t.expect]]
rule = "column_set"
name = "subset"
columns = ["id", "name"]
exact = false
[[data.t.expect]]
rule = "type"
column = "score"
type = "float"
[[data.t.expect]]
rule = "type"
column = "name"
type = "int"
[[data.t.expect]]
rule = "not_null"
column = "nope"
"#,
    );
    let v = run(&cfg);
    let r = rule(&v, "row_count");
    assert!(!r.success);
    assert_eq!(r.observed, Some(serde_json::json!(6)));
    // mean of 10.5, 99, -5, 20 = 31.125
    let r = rule(&v, "mean_between(score)");
    assert!(r.success);
    assert_eq!(r.observed, Some(serde_json::json!(31.125)));
    // Nearest-rank median of -5, 10.5, 20, 99 (as numpy's "nearest", which GE uses).
    let r = rule(&v, "quantile_between(score)");
    assert!(r.success, "{r:?}");
    assert_eq!(r.observed, Some(serde_json::json!(20.0)));
    let r = rule(&v, "column_set");
    assert!(!r.success);
    assert_eq!(
        r.observed,
        Some(serde_json::json!({"missing": ["town"], "unexpected": ["city"]}))
    );
    assert!(rule(&v, "subset").success);
    assert!(rule(&v, "type(score)").success);
    // Names are text that does not read as ints: each present value fails.
    let r = rule(&v, "type(name)");
    assert!(!r.success);
    assert_eq!(r.failing, 5);
    let r = rule(&v, "not_null(nope)");
    assert!(!r.success);
    assert!(
        r.error.as_ref().unwrap().contains("no column `nope`"),
        "{r:?}"
    );
    // Table rules quarantine nothing.
    assert_eq!(v.quarantine.height(), 5);
}

#[test]
fn the_bundled_flights_pass_the_project_expectations() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let text = std::fs::read_to_string(root.join("kiln.toml")).unwrap();
    #[derive(serde::Deserialize)]
    #[allow(dead_code)]
    struct F {
        data: std::collections::BTreeMap<String, DatasetConfig>,
        features: toml::Value,
        project: toml::Value,
    }
    let f: F = toml::from_str(&text).unwrap();
    for (name, cfg) in &f.data {
        let table = read_dataset(cfg, &root.join(&cfg.source), &cfg.source).unwrap();
        let v = validate(name, &table, &cfg.expect).unwrap();
        for r in &v.report.rules {
            assert!(r.success, "{name}: {r:?}");
        }
        if name == "weather" {
            // The one impossible wind reading (1,048 mph) is quarantined though the rule
            // passes thanks to `mostly`.
            assert_eq!(v.quarantine.height(), 1);
            let e: &Expectation = cfg.expect.iter().find(|e| e.mostly.is_some()).unwrap();
            assert_eq!(e.rule.column(), Some("wind_speed"));
        }
    }
}
