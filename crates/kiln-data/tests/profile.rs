//! Profiles: exact statistics on small frames, sketch accuracy on large ones, merges that
//! agree with profiling the concatenation, the JSON format, reference binning, and proposed
//! expectations that parse back and pass on the data they came from.

use std::collections::BTreeMap;
use std::path::Path;

use kiln_data::config::{DatasetConfig, Expectation, Rule, SetValue};
use kiln_data::infer::{propose, readable_bounds, to_toml};
use kiln_data::profile::{ColumnProfile, Profile, profile, profile_against, profile_with_schema};
use kiln_data::sketch::{Hll, QuantileSketch};
use kiln_transform::DType;
use polars::prelude::*;

/// SplitMix64: a small deterministic generator, so the tests need no random crate.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal (Box–Muller).
    fn normal(&mut self) -> f64 {
        let u = self.uniform().max(1e-300);
        let v = self.uniform();
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

fn col_of<'a>(p: &'a Profile, name: &str) -> &'a ColumnProfile {
    p.column(name).unwrap_or_else(|| panic!("no column {name}"))
}

fn close(a: f64, b: f64, rel: f64) -> bool {
    (a - b).abs() <= rel * a.abs().max(b.abs()).max(1e-300)
}

fn small_frame() -> DataFrame {
    df!(
        "i" => [Some(1i64), Some(2), Some(3), Some(4), None, Some(2)],
        "f" => [Some(1.0f64), Some(f64::NAN), Some(3.0), None, Some(5.0), Some(f64::NAN)],
        "s" => [Some("a"), Some("b"), Some("a"), None, Some("c"), Some("a")],
        "b" => [Some(true), Some(false), Some(true), Some(true), None, None],
        "d" => [Some(15706i32), Some(15707), None, Some(15706), Some(15710), Some(15708)],
        "t" => [Some(1_356_998_400_000_000i64), None, Some(1_356_998_400_500_000), None, None, Some(1_357_002_000_000_000)],
    )
    .unwrap()
    .lazy()
    .with_columns([
        col("d").cast(DataType::Date),
        col("t").cast(DataType::Datetime(TimeUnit::Microseconds, None)),
    ])
    .collect()
    .unwrap()
}

#[test]
fn exact_statistics_on_a_small_frame() {
    let p = profile(&small_frame()).unwrap();
    assert_eq!(p.version, 1);
    assert_eq!(p.rows, 6);

    let i = col_of(&p, "i");
    assert_eq!(i.dtype, DType::Int);
    assert_eq!((i.count, i.nulls, i.nan), (5, 1, None));
    assert_eq!(i.min, Some(SetValue::Int(1)));
    assert_eq!(i.max, Some(SetValue::Int(4)));
    assert!(close(i.mean.unwrap(), 12.0 / 5.0, 1e-12));
    // Sample std of 1,2,3,4,2: mean 2.4, squares 1.96+0.16+0.36+2.56+0.16 = 5.2, /4.
    assert!(close(i.std.unwrap(), (5.2f64 / 4.0).sqrt(), 1e-12));
    assert!(close(i.m2.unwrap(), 5.2, 1e-12));
    assert_eq!((i.distinct, i.distinct_exact), (4, true));
    let top: Vec<(SetValue, u64)> = i
        .top_values
        .as_ref()
        .unwrap()
        .iter()
        .map(|t| (t.value.clone(), t.count))
        .collect();
    assert_eq!(
        top,
        vec![
            (SetValue::Int(2), 2),
            (SetValue::Int(1), 1),
            (SetValue::Int(3), 1),
            (SetValue::Int(4), 1)
        ]
    );
    let h = i.histogram.as_ref().unwrap();
    assert_eq!(h.edges.len(), 21);
    assert_eq!(h.counts.len(), 20);
    assert_eq!((h.edges[0], h.edges[20]), (1.0, 4.0));
    assert_eq!(h.counts.iter().sum::<u64>(), 5);
    assert_eq!((h.counts[0], h.counts[19]), (1, 1));
    let q = i.quantiles.as_ref().unwrap();
    assert_eq!(
        q.keys().cloned().collect::<Vec<_>>(),
        ["0.01", "0.05", "0.25", "0.5", "0.75", "0.95", "0.99"]
    );
    assert!((1.0..=4.0).contains(&q["0.5"]));
    assert_eq!(i.sketch.as_ref().unwrap().count(), 5);

    // NaN is counted apart and kept out of every statistic.
    let f = col_of(&p, "f");
    assert_eq!((f.count, f.nulls, f.nan), (3, 1, Some(2)));
    assert_eq!(f.min, Some(SetValue::Float(1.0)));
    assert_eq!(f.max, Some(SetValue::Float(5.0)));
    assert!(close(f.mean.unwrap(), 3.0, 1e-12));
    assert!(close(f.std.unwrap(), 2.0, 1e-12));
    assert_eq!(f.distinct, 3);
    assert!(f.top_values.is_none());
    assert_eq!(f.sketch.as_ref().unwrap().count(), 3);
    assert_eq!(f.histogram.as_ref().unwrap().counts.iter().sum::<u64>(), 3);

    let s = col_of(&p, "s");
    assert_eq!(s.dtype, DType::String);
    assert_eq!((s.count, s.nulls, s.distinct), (5, 1, 3));
    assert!(s.min.is_none() && s.mean.is_none() && s.sketch.is_none() && s.histogram.is_none());
    let top: Vec<(SetValue, u64)> = s
        .top_values
        .as_ref()
        .unwrap()
        .iter()
        .map(|t| (t.value.clone(), t.count))
        .collect();
    assert_eq!(
        top,
        vec![
            (SetValue::Str("a".into()), 3),
            (SetValue::Str("b".into()), 1),
            (SetValue::Str("c".into()), 1)
        ]
    );

    let b = col_of(&p, "b");
    assert_eq!((b.count, b.nulls, b.distinct), (4, 2, 2));
    let top = b.top_values.as_ref().unwrap();
    assert_eq!(top[0].value, SetValue::Bool(true));
    assert_eq!((top[0].count, top[1].count), (3, 1));

    let d = col_of(&p, "d");
    assert_eq!(d.unit.as_deref(), Some("epoch_seconds"));
    assert_eq!(d.min, Some(SetValue::Str("2013-01-01".into())));
    assert_eq!(d.max, Some(SetValue::Str("2013-01-05".into())));
    assert_eq!((d.count, d.nulls, d.distinct), (5, 1, 4));
    let days = [15706.0, 15707.0, 15706.0, 15710.0, 15708.0];
    let mean = days.iter().sum::<f64>() / 5.0 * 86_400.0;
    assert!(close(d.mean.unwrap(), mean, 1e-12));
    assert_eq!(d.sketch.as_ref().unwrap().min(), Some(15706.0 * 86_400.0));

    let t = col_of(&p, "t");
    assert_eq!(t.dtype, DType::Timestamp);
    assert_eq!(t.min, Some(SetValue::Str("2013-01-01 00:00:00".into())));
    assert_eq!(t.max, Some(SetValue::Str("2013-01-01 01:00:00".into())));
    assert_eq!((t.count, t.nulls), (3, 3));
    assert_eq!(t.sketch.as_ref().unwrap().max(), Some(1_357_002_000.0));
}

#[test]
fn empty_and_all_null_columns() {
    let df = df!(
        "x" => [None::<f64>, None],
        "s" => [None::<&str>, None],
    )
    .unwrap();
    let p = profile(&df).unwrap();
    let x = col_of(&p, "x");
    assert_eq!((x.count, x.nulls, x.nan, x.distinct), (0, 2, Some(0), 0));
    assert!(x.min.is_none() && x.mean.is_none() && x.quantiles.is_none() && x.histogram.is_none());
    let s = col_of(&p, "s");
    assert_eq!((s.count, s.nulls, s.distinct), (0, 2, 0));

    let empty = df.slice(0, 0);
    let p0 = profile(&empty).unwrap();
    assert_eq!(p0.rows, 0);
    let merged = p0.merge(&p).unwrap();
    assert_eq!(merged, p);
}

#[test]
fn categorical_by_schema_and_by_polars_type() {
    let df = df!("c" => ["x", "y", "x"]).unwrap();
    let schema = [kiln_data::ColumnType {
        name: "c".into(),
        dtype: DType::Categorical,
    }];
    let p = profile_with_schema(&df, &schema).unwrap();
    assert_eq!(col_of(&p, "c").dtype, DType::Categorical);
    let cat = df
        .clone()
        .lazy()
        .with_column(col("c").cast(DataType::from_categories(Categories::global())))
        .collect()
        .unwrap();
    let q = profile(&cat).unwrap();
    assert_eq!(col_of(&q, "c").dtype, DType::Categorical);
    assert_eq!(col_of(&q, "c").top_values, col_of(&p, "c").top_values);
}

/// The fraction of `sorted` at or below `x`.
fn rank(sorted: &[f64], x: f64) -> f64 {
    sorted.partition_point(|v| *v <= x) as f64 / sorted.len() as f64
}

#[test]
fn quantiles_from_the_sketch_are_close_to_exact_quantiles() {
    let mut rng = Rng(7);
    for dist in ["uniform", "normal", "skewed"] {
        let mut values: Vec<f64> = (0..100_000)
            .map(|_| match dist {
                "uniform" => rng.uniform() * 1000.0,
                "normal" => 50.0 + 10.0 * rng.normal(),
                _ => (3.0 * rng.normal()).exp(),
            })
            .collect();
        let df = df!("v" => values.clone()).unwrap();
        let p = profile(&df).unwrap();
        let c = col_of(&p, "v");
        values.sort_by(f64::total_cmp);
        let sketch = c.sketch.as_ref().unwrap();
        for (key, est) in c.quantiles.as_ref().unwrap() {
            let q: f64 = key.parse().unwrap();
            let r = rank(&values, *est);
            assert!(
                (r - q).abs() < 0.003,
                "{dist}: quantile {q} estimated {est}, which is at rank {r}"
            );
        }
        for q in [0.001, 0.1, 0.3, 0.6, 0.9, 0.999] {
            let exact = values[((q * values.len() as f64) as usize).min(values.len() - 1)];
            let cdf = sketch.cdf(exact).unwrap();
            assert!(
                (cdf - q).abs() < 0.003,
                "{dist}: cdf({exact}) = {cdf}, expected ≈ {q}"
            );
        }
        assert_eq!(sketch.min(), Some(values[0]));
        assert_eq!(sketch.max(), Some(values[values.len() - 1]));
        assert!(sketch.centroids().len() <= 210);
    }
}

#[test]
fn quantile_sketch_on_tiny_inputs() {
    let s = QuantileSketch::from_values(vec![3.0, 1.0, 2.0, f64::NAN]);
    assert_eq!(s.count(), 3);
    assert_eq!(s.quantile(0.0), Some(1.0));
    assert_eq!(s.quantile(1.0), Some(3.0));
    assert_eq!(s.quantile(0.5), Some(2.0));
    assert_eq!(s.cdf(0.5), Some(0.0));
    assert_eq!(s.cdf(3.0), Some(1.0));
    let one = QuantileSketch::from_values(vec![5.0]);
    assert_eq!(one.quantile(0.3), Some(5.0));
    assert_eq!(QuantileSketch::new().quantile(0.5), None);
    let merged = one.merge(&QuantileSketch::new());
    assert_eq!(merged, one);
}

#[test]
fn hll_estimates_within_a_few_percent() {
    for n in [100_000u64, 1_000_000] {
        let mut h = Hll::new();
        for i in 0..n {
            h.insert_i64(i as i64 * 7919);
        }
        let est = h.estimate() as f64;
        assert!(
            (est - n as f64).abs() / (n as f64) < 0.02,
            "{n} distinct estimated as {est}"
        );
    }
    for n in [0u64, 1, 2, 10, 100, 1000, 5000] {
        let mut h = Hll::new();
        for i in 0..n {
            h.insert_str(&format!("value-{i}"));
            h.insert_str(&format!("value-{i}"));
        }
        let est = h.estimate() as f64;
        let tolerance = (n as f64 * 0.01).max(1.0);
        assert!(
            (est - n as f64).abs() <= tolerance,
            "{n} distinct estimated as {est}"
        );
    }
}

#[test]
fn hll_merges_by_register_maximum_and_round_trips() {
    let mut a = Hll::new();
    let mut b = Hll::new();
    for i in 0..60_000i64 {
        a.insert_i64(i);
    }
    for i in 40_000..100_000i64 {
        b.insert_i64(i);
    }
    let mut u = a.clone();
    u.merge(&b).unwrap();
    let est = u.estimate() as f64;
    assert!(
        (est - 100_000.0).abs() < 2_000.0,
        "union estimated as {est}"
    );
    // Merging is idempotent.
    let mut again = u.clone();
    again.merge(&a).unwrap();
    assert_eq!(again, u);

    let json = serde_json::to_string(&u).unwrap();
    assert!(json.len() < 16_000, "{} bytes", json.len());
    let back: Hll = serde_json::from_str(&json).unwrap();
    assert_eq!(back, u);
    // A small set's sketch stays small.
    let mut small = Hll::new();
    small.insert_str("x");
    assert!(serde_json::to_string(&small).unwrap().len() < 200);

    let mut p12 = Hll::with_precision(12);
    assert!(p12.merge(&a).is_err());
    assert!(serde_json::from_str::<Hll>(r#"{"p":14,"registers":"AAAA"}"#).is_err());
}

fn frame(rng: &mut Rng, rows: usize, shift: f64) -> DataFrame {
    let origins = ["JFK", "LGA", "EWR", "BOS", "SFO", "ORD", "ATL"];
    let mut day = Vec::with_capacity(rows);
    let mut delay = Vec::with_capacity(rows);
    let mut distance = Vec::with_capacity(rows);
    let mut origin = Vec::with_capacity(rows);
    let mut id = Vec::with_capacity(rows);
    let mut small = Vec::with_capacity(rows);
    for r in 0..rows {
        day.push(Some(15_706 + rng.below(365) as i32));
        delay.push(match rng.below(50) {
            0 => None,
            1 => Some(f64::NAN),
            _ => Some(shift + 12.0 + 40.0 * rng.normal()),
        });
        distance.push(Some(100 + rng.below(4_900) as i64));
        origin.push(if rng.below(100) == 0 {
            None
        } else {
            Some(origins[(rng.below(7) as usize + shift as usize) % 7])
        });
        id.push(format!("{shift}-{r}"));
        small.push(rng.below(5) as i64 + shift as i64);
    }
    df!(
        "day" => day,
        "delay" => delay,
        "distance" => distance,
        "origin" => origin,
        "id" => id,
        "small" => small,
    )
    .unwrap()
    .lazy()
    .with_column(col("day").cast(DataType::Date))
    .collect()
    .unwrap()
}

#[test]
fn merged_profiles_agree_with_the_profile_of_the_concatenation() {
    let mut rng = Rng(42);
    let a = frame(&mut rng, 50_000, 0.0);
    let b = frame(&mut rng, 70_000, 3.0);
    let pa = profile(&a).unwrap();
    let pb = profile(&b).unwrap();
    let merged = pa.merge(&pb).unwrap();
    let whole = profile(&a.vstack(&b).unwrap()).unwrap();

    assert_eq!(merged.rows, whole.rows);
    assert_eq!(merged.columns.len(), whole.columns.len());
    for (m, w) in merged.columns.iter().zip(&whole.columns) {
        let name = &m.name;
        assert_eq!(m.dtype, w.dtype, "{name}");
        assert_eq!(
            (m.count, m.nulls, m.nan),
            (w.count, w.nulls, w.nan),
            "{name}"
        );
        assert_eq!((&m.min, &m.max), (&w.min, &w.max), "{name}");
        assert_eq!(m.unit, w.unit, "{name}");
        match (m.mean, w.mean) {
            (Some(x), Some(y)) => assert!(close(x, y, 1e-9), "{name}: mean {x} vs {y}"),
            (x, y) => assert_eq!(x, y, "{name}"),
        }
        match (m.std, w.std) {
            (Some(x), Some(y)) => assert!(close(x, y, 1e-9), "{name}: std {x} vs {y}"),
            (x, y) => assert_eq!(x, y, "{name}"),
        }
        assert!(
            close(m.distinct as f64, w.distinct as f64, 0.02),
            "{name}: distinct {} vs {}",
            m.distinct,
            w.distinct
        );
        assert!(!m.distinct_exact && w.distinct_exact);
        if let (Some(ms), Some(ws)) = (&m.sketch, &w.sketch) {
            assert_eq!(ms.count(), ws.count());
            let (lo, hi) = (ws.min().unwrap(), ws.max().unwrap());
            for (k, v) in m.quantiles.as_ref().unwrap() {
                let exact = w.quantiles.as_ref().unwrap()[k];
                // Within half a percent of rank (the range is a proxy: distributions are
                // smooth here).
                let rank_merged = ws.cdf(*v).unwrap();
                let rank_whole = ws.cdf(exact).unwrap();
                assert!(
                    (rank_merged - rank_whole).abs() < 0.005
                        || (v - exact).abs() < 1e-6 * (hi - lo),
                    "{name} q{k}: {v} vs {exact}"
                );
            }
        }
        match (&m.histogram, &w.histogram) {
            (Some(mh), Some(wh)) => {
                assert_eq!(
                    mh.counts.iter().sum::<u64>(),
                    wh.counts.iter().sum::<u64>(),
                    "{name}"
                );
                assert_eq!(mh.edges.len(), 21);
                // Re-binned from the sketch over the same min..max: close to the exact bins.
                for (x, y) in mh.counts.iter().zip(&wh.counts) {
                    let total = wh.counts.iter().sum::<u64>() as f64;
                    assert!(
                        (*x as f64 - *y as f64).abs() <= 0.01 * total,
                        "{name}: bins {:?} vs {:?}",
                        mh.counts,
                        wh.counts
                    );
                }
            }
            (x, y) => assert_eq!(x.is_some(), y.is_some(), "{name}"),
        }
    }

    // Frequent values: complete lists merge exactly.
    assert_eq!(
        col_of(&merged, "origin").top_values,
        col_of(&whole, "origin").top_values
    );
    assert_eq!(
        col_of(&merged, "small").top_values,
        col_of(&whole, "small").top_values
    );
    // More than 20 distinct ints: no list.
    assert!(col_of(&merged, "distance").top_values.is_none());

    // Merging is symmetric in the counts.
    let other_way = pb.merge(&pa).unwrap();
    assert_eq!(
        col_of(&other_way, "delay").count,
        col_of(&merged, "delay").count
    );

    // Profiles of different tables do not merge.
    let narrow = profile(&a.select(["delay"]).unwrap()).unwrap();
    assert!(pa.merge(&narrow).is_err());
}

#[test]
fn histograms_with_the_same_edges_add_bin_by_bin() {
    let mut rng = Rng(3);
    let reference = profile(&frame(&mut rng, 20_000, 0.0)).unwrap();
    let a = profile_against(&frame(&mut rng, 10_000, 0.0), &reference).unwrap();
    let b = profile_against(&frame(&mut rng, 10_000, 0.0), &reference).unwrap();
    let m = a.merge(&b).unwrap();
    let (ha, hb, hm) = (
        col_of(&a, "delay").histogram.as_ref().unwrap(),
        col_of(&b, "delay").histogram.as_ref().unwrap(),
        col_of(&m, "delay").histogram.as_ref().unwrap(),
    );
    assert_eq!(hm.edges, ha.edges);
    for i in 0..20 {
        assert_eq!(hm.counts[i], ha.counts[i] + hb.counts[i]);
    }
    assert_eq!(hm.under, ha.under + hb.under);
    assert_eq!(hm.over, ha.over + hb.over);
}

#[test]
fn json_round_trip() {
    let mut rng = Rng(5);
    let p = profile(&frame(&mut rng, 5_000, 0.0)).unwrap();
    let json = serde_json::to_string(&p).unwrap();
    let back: Profile = serde_json::from_str(&json).unwrap();
    assert_eq!(back, p);
    // The merged sketches of a round-tripped profile are the same.
    assert_eq!(back.merge(&p).unwrap(), p.merge(&p).unwrap());

    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(value["version"], 1);
    let day = &value["columns"][0];
    assert_eq!(day["name"], "day");
    assert_eq!(day["dtype"], "date");
    assert_eq!(day["unit"], "epoch_seconds");
    assert!(day["min"].as_str().unwrap().starts_with("2013-01-0"));
    assert_eq!(day["histogram"]["edges"].as_array().unwrap().len(), 21);
    assert!(day["sketch"]["centroids"].as_array().unwrap().len() > 10);
    assert!(day["hll"]["registers"].is_string());
    let origin = &value["columns"][3];
    assert!(origin["top_values"][0]["count"].as_u64().unwrap() > 0);
    assert!(origin.get("sketch").is_none());

    let small = profile(&small_frame()).unwrap();
    let back: Profile =
        serde_json::from_str(&serde_json::to_string_pretty(&small).unwrap()).unwrap();
    assert_eq!(back, small);
}

#[test]
fn profile_against_uses_the_reference_edges_and_categories() {
    let reference_df = df!(
        "x" => (0..100).map(|i| i as f64).collect::<Vec<_>>(),
        "c" => (0..100).map(|i| ["a", "b", "c"][i % 3]).collect::<Vec<_>>(),
        "k" => (0..100).map(|i| (i % 4) as i64).collect::<Vec<_>>(),
    )
    .unwrap();
    let reference = profile(&reference_df).unwrap();
    let live_df = df!(
        "x" => (0..100).map(|i| 50.0 + i as f64).collect::<Vec<_>>(),
        "c" => (0..100).map(|i| ["a", "z"][i % 2]).collect::<Vec<_>>(),
        "k" => (0..100).map(|i| (i % 3) as i64 + 10).collect::<Vec<_>>(),
    )
    .unwrap();
    let live = profile_against(&live_df, &reference).unwrap();

    let rh = col_of(&reference, "x").histogram.as_ref().unwrap();
    let lh = col_of(&live, "x").histogram.as_ref().unwrap();
    assert_eq!(lh.edges, rh.edges);
    assert_eq!((lh.edges[0], lh.edges[20]), (0.0, 99.0));
    // 50..=99 fall inside, 100..=149 above.
    assert_eq!(lh.counts.iter().sum::<u64>(), 50);
    assert_eq!((lh.under, lh.over), (0, 50));
    assert_eq!(lh.counts[..10].iter().sum::<u64>(), 0);
    // Without the reference the live window gets its own edges.
    let own = profile(&live_df).unwrap();
    assert_eq!(col_of(&own, "x").histogram.as_ref().unwrap().edges[0], 50.0);

    let top = |p: &Profile, c: &str| -> BTreeMap<String, u64> {
        col_of(p, c)
            .top_values
            .as_ref()
            .unwrap()
            .iter()
            .map(|t| (serde_json::to_string(&t.value).unwrap(), t.count))
            .collect()
    };
    let c = top(&live, "c");
    assert_eq!(c["\"a\""], 50);
    assert_eq!(c["\"z\""], 50);
    assert_eq!(c["\"b\""], 0);
    assert_eq!(c["\"c\""], 0);
    let k = top(&live, "k");
    assert_eq!(k.len(), 3 + 4);
    assert_eq!(k["0"], 0);
    assert_eq!(k["10"], 34);

    // Apart from edges and categories, the same numbers as a plain profile.
    let (a, b) = (col_of(&live, "x"), col_of(&own, "x"));
    assert_eq!(
        (a.count, a.mean, a.std, &a.quantiles),
        (b.count, b.mean, b.std, &b.quantiles)
    );
}

#[test]
fn readable_bounds_round_outwards() {
    assert_eq!(readable_bounds(17.0, 4983.0), (0.0, 5300.0));
    assert_eq!(readable_bounds(-43.0, 1301.0), (-200.0, 1400.0));
    assert_eq!(readable_bounds(0.1, 0.9), (0.06, 0.94));
    assert_eq!(readable_bounds(5.0, 5.0), (4.75, 5.25));
    let (lo, hi) = readable_bounds(-3.2, -1.1);
    assert!(lo <= -3.2 && (-1.1..=0.0).contains(&hi));
}

fn parse_cfg(toml_text: &str) -> DatasetConfig {
    #[derive(serde::Deserialize)]
    struct F {
        data: BTreeMap<String, DatasetConfig>,
    }
    let f: F = toml::from_str(toml_text).unwrap_or_else(|e| panic!("{e}\n{toml_text}"));
    f.data.into_values().next().unwrap()
}

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn proposed_expectations_parse_back_and_pass_on_the_data() {
    let mut csv = String::from("id,day,delay,distance,origin,carrier\n");
    let mut rng = Rng(11);
    for i in 0..2_000 {
        let delay = if i % 40 == 0 {
            String::new()
        } else {
            format!("{:.1}", 10.0 + 30.0 * rng.normal())
        };
        csv.push_str(&format!(
            "{i},2013-{:02}-{:02},{delay},{},{},C{}\n",
            1 + rng.below(12),
            1 + rng.below(28),
            100 + rng.below(4000),
            ["JFK", "LGA", "EWR"][rng.below(3) as usize],
            rng.below(30),
        ));
    }
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "f.csv", &csv);
    let cfg = parse_cfg("[data.f]\nsource = \"f.csv\"\nschema = { origin = \"categorical\" }\n");
    let table = kiln_data::read_dataset(&cfg, &path, "f.csv").unwrap();
    let p = profile_with_schema(&table.df, &table.schema).unwrap();

    let proposed = propose(&p);
    let kinds: Vec<String> = proposed.iter().map(|e| e.display_name()).collect();
    for expected in [
        "column_set",
        "row_count",
        "type(id)",
        "not_null(id)",
        "unique(id)",
        "between(delay)",
        "not_null(delay)",
        "in_set(origin)",
        "between(distance)",
    ] {
        assert!(
            kinds.iter().any(|k| k == expected),
            "no {expected} in {kinds:?}"
        );
    }
    // 30 carriers: too many for a set; days repeat: not unique.
    assert!(
        !kinds
            .iter()
            .any(|k| k == "in_set(carrier)" || k == "unique(day)")
    );
    let delay_not_null = proposed
        .iter()
        .find(|e| e.display_name() == "not_null(delay)")
        .unwrap();
    assert_eq!(delay_not_null.mostly, Some(0.975));
    let Rule::RowCount { min, max } = &proposed[1].rule else {
        panic!("{:?}", proposed[1])
    };
    assert_eq!((*min, *max), (Some(1_000), Some(4_000)));

    let text = to_toml("f", &proposed);
    assert!(
        text.starts_with("[[data.f.expect]]\nrule = \"column_set\"\n"),
        "{text}"
    );
    assert!(
        text.contains(
            "rule = \"in_set\"\ncolumn = \"origin\"\nvalues = [\"EWR\", \"JFK\", \"LGA\"]\n"
        ),
        "{text}"
    );
    let back = parse_cfg(&format!("[data.f]\nsource = \"f.csv\"\n{text}"));
    assert_eq!(back.expect, proposed);

    // The numeric bounds hold on the data itself.
    for e in &proposed {
        if let Rule::Between {
            column, min, max, ..
        } = &e.rule
        {
            let c = col_of(&p, column);
            let num = |v: &SetValue| match v {
                SetValue::Int(i) => *i as f64,
                SetValue::Float(f) => *f,
                other => panic!("{other:?}"),
            };
            assert!(min.unwrap() <= num(c.min.as_ref().unwrap()));
            assert!(max.unwrap() >= num(c.max.as_ref().unwrap()));
        }
    }
    // And every proposed rule passes when validated on the same table.
    let v = kiln_data::expect::validate("f", &table, &back.expect).unwrap();
    for r in &v.report.rules {
        assert!(r.success, "{} failed: {r:?}", r.name);
    }
    assert!(v.report.success);
}

#[test]
fn to_toml_quotes_names_and_escapes_strings() {
    let e = vec![Expectation {
        rule: Rule::InSet {
            column: "odd \"name\"".into(),
            values: vec![SetValue::Str("a\\b\n".into()), SetValue::Str("ü".into())],
        },
        name: Some("set".into()),
        mostly: Some(0.5),
    }];
    let text = to_toml("my data", &e);
    assert!(text.starts_with("[[data.\"my data\".expect]]\n"), "{text}");
    #[derive(serde::Deserialize)]
    struct F {
        data: BTreeMap<String, DatasetConfig>,
    }
    let f: F = toml::from_str(&format!("[data.\"my data\"]\nsource = \"x\"\n{text}")).unwrap();
    assert_eq!(f.data["my data"].expect, e);
}
