//! Feature pipelines: point-in-time joins without leakage, encodings learned on the training
//! split, time splits, and a transform spec that replays on raw rows exactly as the batch
//! build encoded them.

use std::path::{Path, PathBuf};

use kiln_data::config::{DatasetConfig, FeatureConfig};
use kiln_data::features::{Input, SPLIT_COLUMN, build, write_output};
use kiln_data::read_dataset;
use polars::prelude::*;

#[derive(serde::Deserialize)]
struct Project {
    data: std::collections::BTreeMap<String, DatasetConfig>,
    features: std::collections::BTreeMap<String, FeatureConfig>,
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

const PROJECT: &str = r#"
[data.events]
source = "events.csv"
[data.events.schema]
at = "timestamp"
[data.sensor]
source = "sensor.csv"
[data.sensor.schema]
at = "timestamp"

[features.f]
source = "events"
label = "y"
features = ["reading", "kind", "hour"]
keep = ["id", "site"]
[[features.f.join]]
dataset = "sensor"
by = ["site"]
on = "at"
tolerance = "1h"
columns = ["reading"]
[[features.f.derive]]
name = "hour"
expr = "hour(at)"
[[features.f.encode]]
column = "kind"
method = "one_hot"
[features.f.split]
column = "at"
valid_from = "2024-01-02"
test_from = "2024-01-03"
end = "2024-01-04"
"#;

// Events (labels) and sensor readings (features). Row order is deliberately not sorted.
const EVENTS: &str = "\
id,site,at,kind,y
1,a,2024-01-01 10:00:00,x,1
2,a,2024-01-01 09:00:00,y,0
3,b,2024-01-01 10:00:00,x,1
4,b,2024-01-01 12:00:00,x,0
5,a,2024-01-02 10:00:00,z,1
6,a,2024-01-03 10:00:00,x,0
7,a,2024-01-05 10:00:00,x,1
8,a,2024-01-01 11:00:00,y,
";

// `note` is mostly missing: a missing value outside the keys must not hide a reading.
const SENSOR: &str = "\
site,at,reading,note
a,2024-01-01 09:30:00,1.0,
a,2024-01-01 10:00:00,2.0,
a,2024-01-01 10:00:01,999.0,
b,2024-01-01 10:30:00,888.0,
b,2024-01-01 10:45:00,3.0,
a,2024-01-02 09:59:59,4.0,ok
a,2024-01-03 08:00:00,5.0,
";

struct Fixture {
    _dir: tempfile::TempDir,
    project: Project,
    events: kiln_data::Table,
    sensor: kiln_data::Table,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let e = write(dir.path(), "events.csv", EVENTS);
    let s = write(dir.path(), "sensor.csv", SENSOR);
    let project: Project = toml::from_str(PROJECT).unwrap();
    let events = read_dataset(&project.data["events"], &e, "events.csv").unwrap();
    let sensor = read_dataset(&project.data["sensor"], &s, "sensor.csv").unwrap();
    Fixture {
        _dir: dir,
        project,
        events,
        sensor,
    }
}

/// Builds feature set `f` of the fixture, leaving out the `excluded` event rows.
fn build_f(
    f: &Fixture,
    cfg: &FeatureConfig,
    excluded: Option<&BooleanChunked>,
) -> kiln_data::Result<kiln_data::features::FeatureOutput> {
    build(
        "f",
        cfg,
        Input {
            name: "events",
            table: &f.events,
            excluded,
        },
        &[Input {
            name: "sensor",
            table: &f.sensor,
            excluded: None,
        }],
    )
}

fn by_id(df: &DataFrame, id: i64, column: &str) -> Option<f64> {
    let ids = df.column("id").unwrap().i64().unwrap();
    let i = ids.iter().position(|v| v == Some(id)).expect("id present");
    let c = df.column(column).unwrap().cast(&DataType::Float64).unwrap();
    // Features are floats with NaN for missing.
    c.f64().unwrap().get(i).filter(|v| !v.is_nan())
}

#[test]
fn as_of_join_never_takes_a_feature_stamped_after_the_row() {
    let f = fixture();
    let out = build_f(&f, &f.project.features["f"], None).unwrap();
    let t = &out.table;
    // Event 1 (a, 10:00): the reading stamped exactly 10:00 is known; the one a second later
    // (999) is the future and must not be used.
    assert_eq!(by_id(t, 1, "reading"), Some(2.0));
    // Event 2 (a, 09:00): the only site-a readings are after it → no match.
    assert_eq!(by_id(t, 2, "reading"), None);
    // Event 3 (b, 10:00): site b's readings are at 10:30 and 10:45, both later → no match,
    // and site a's 10:00 reading is another key → not used either.
    assert_eq!(by_id(t, 3, "reading"), None);
    // Event 4 (b, 12:00): latest at or before is 10:45, 75 minutes old > 1h tolerance.
    assert_eq!(by_id(t, 4, "reading"), None);
    // Event 5 (a, Jan 2 10:00): 09:59:59 is within tolerance.
    assert_eq!(by_id(t, 5, "reading"), Some(4.0));
    // Event 6 (a, Jan 3 10:00): 08:00 is two hours old → none.
    assert_eq!(by_id(t, 6, "reading"), None);
    // No joined value ever comes from a later reading.
    for v in t
        .column("reading")
        .unwrap()
        .f64()
        .unwrap()
        .iter()
        .flatten()
        .filter(|v| !v.is_nan())
    {
        assert!(v != 999.0 && v != 888.0, "future reading {v} leaked");
    }
    // Event 7 is after `end`; event 8 has no label: both left out and counted.
    assert_eq!(out.summary.outside_split, 1);
    assert_eq!(out.summary.unlabeled, 1);
    assert_eq!(out.summary.rows_in, 8);
    assert_eq!(
        (out.summary.train, out.summary.valid, out.summary.test),
        (4, 1, 1)
    );
    // The feature table keeps the source's row order (ids 1..6).
    let ids: Vec<i64> = t
        .column("id")
        .unwrap()
        .i64()
        .unwrap()
        .iter()
        .flatten()
        .collect();
    assert_eq!(ids, vec![1, 2, 3, 4, 5, 6]);
    let splits: Vec<&str> = t
        .column(SPLIT_COLUMN)
        .unwrap()
        .str()
        .unwrap()
        .iter()
        .flatten()
        .collect();
    assert_eq!(
        splits,
        vec!["train", "train", "train", "train", "valid", "test"]
    );
}

#[test]
fn encodings_are_learned_on_the_training_split_only() {
    let f = fixture();
    let out = build_f(&f, &f.project.features["f"], None).unwrap();
    // `z` appears only in the validation split: no column for it, and its row is all zeros.
    assert_eq!(
        out.spec.outputs,
        vec!["reading", "kind=x", "kind=y", "hour"]
    );
    assert_eq!(by_id(&out.table, 5, "kind=x"), Some(0.0));
    assert_eq!(by_id(&out.table, 5, "kind=y"), Some(0.0));
    assert_eq!(by_id(&out.table, 1, "kind=x"), Some(1.0));
    assert_eq!(by_id(&out.table, 1, "hour"), Some(10.0));
    // The label's derivation is not part of what serving replays.
    assert!(out.spec.inputs.iter().all(|c| c.name != "y"));
}

#[test]
fn quarantined_rows_are_left_out_and_counted() {
    let f = fixture();
    let mask = BooleanChunked::from_slice(
        "m".into(),
        &[true, false, false, false, false, false, false, false],
    );
    let out = build_f(&f, &f.project.features["f"], Some(&mask)).unwrap();
    assert_eq!(out.summary.quarantined, 1);
    assert_eq!(out.summary.train, 3);
}

#[test]
fn output_is_all_or_nothing() {
    let f = fixture();
    let mut out = build_f(&f, &f.project.features["f"], None).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("build");
    write_output(&mut out, &target).unwrap();
    for f in ["features.parquet", "spec.json", "build.json"] {
        assert!(target.join(f).is_file(), "{f}");
    }
    // No temporary directories are left beside it.
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    assert_eq!(names, vec!["build"]);
    let back = ParquetReader::new(std::fs::File::open(target.join("features.parquet")).unwrap())
        .finish()
        .unwrap();
    assert!(back.equals_missing(&out.table));
}

#[test]
fn bad_pipelines_get_clear_errors() {
    let f = fixture();
    let mut cfg = f.project.features["f"].clone();
    cfg.encode.clear();
    let e = build_f(&f, &cfg, None).err().unwrap().to_string();
    assert!(e.contains("feature `kind` is string"), "{e}");
    assert!(e.contains("encode"), "{e}");

    let mut cfg = f.project.features["f"].clone();
    cfg.join[0].tolerance = "1 fortnight".into();
    let e = build_f(&f, &cfg, None).err().unwrap().to_string();
    assert!(e.contains("tolerance"), "{e}");

    let mut cfg = f.project.features["f"].clone();
    cfg.derive[0].expr = "hour(nope)".into();
    let e = build_f(&f, &cfg, None).err().unwrap().to_string();
    assert!(e.contains("nope"), "{e}");
}

/// The canonical example on the bundled data: flights + the weather at the origin at the
/// scheduled hour. Replaying the spec on raw rows gives exactly the batch features.
#[test]
fn nycflights13_delay_features_replay_identically_on_raw_rows() {
    use kiln_transform::Value;
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    #[derive(serde::Deserialize)]
    #[allow(dead_code)]
    struct Full {
        data: std::collections::BTreeMap<String, DatasetConfig>,
        features: std::collections::BTreeMap<String, FeatureConfig>,
        project: toml::Value,
    }
    let p: Full =
        toml::from_str(&std::fs::read_to_string(root.join("kiln.toml")).unwrap()).unwrap();
    let read = |n: &str| {
        let c = &p.data[n];
        read_dataset(c, &root.join(&c.source), &c.source).unwrap()
    };
    let flights = read("flights");
    let weather = read("weather");
    let out = build(
        "delay",
        &p.features["delay"],
        Input {
            name: "flights",
            table: &flights,
            excluded: None,
        },
        &[Input {
            name: "weather",
            table: &weather,
            excluded: None,
        }],
    )
    .unwrap();
    let s = &out.summary;
    assert_eq!(s.rows_in, 336_776);
    assert!(
        s.train > 40_000 && s.valid > 10_000 && s.test > 10_000,
        "{s:?}"
    );
    assert_eq!(
        s.joins[0].matched + s.joins[0].unmatched,
        s.train + s.valid + s.test
    );

    // Spot check one join by hand: the first flight (UA 1545, EWR, 2013-01-01 10:00 UTC)
    // gets EWR's 10:00 UTC weather (temp 39.02, the 05:00 local reading).
    let temp = out.table.column("temp").unwrap().f64().unwrap().get(0);
    assert_eq!(temp, Some(39.02));

    let compiled = out.spec.compile().unwrap();
    let outputs = compiled.outputs().to_vec();
    let n = out.table.height();
    let mut checked = 0;
    for i in (0..n).step_by(97) {
        let values: std::collections::HashMap<String, Value> = out
            .raw
            .columns()
            .iter()
            .map(|c| (c.name().to_string(), any_to_value(c.get(i).unwrap())))
            .collect();
        let row = compiled
            .apply_row(&|name: &str| values.get(name).cloned())
            .unwrap();
        for (j, name) in outputs.iter().enumerate() {
            let batch = out.table.column(name).unwrap().f64().unwrap().get(i);
            let served = row[j];
            let same = match batch {
                None => served.is_nan(),
                Some(b) if b.is_nan() => served.is_nan(),
                Some(b) => b == served,
            };
            assert!(
                same,
                "row {i} feature {name}: batch {batch:?} served {served}"
            );
        }
        checked += 1;
    }
    assert!(checked > 500);
}

fn any_to_value(v: AnyValue) -> kiln_transform::Value {
    use kiln_transform::Value;
    match v {
        AnyValue::Null => Value::Null,
        AnyValue::Boolean(b) => Value::Bool(b),
        AnyValue::Int64(i) => Value::Int(i),
        AnyValue::Float64(f) => Value::Float(f),
        AnyValue::String(s) => Value::Str(s.to_string()),
        AnyValue::StringOwned(s) => Value::Str(s.to_string()),
        AnyValue::Date(d) => Value::Date(d),
        AnyValue::Datetime(us, TimeUnit::Microseconds, _) => Value::Timestamp(us),
        other => panic!("unexpected value {other:?}"),
    }
}
