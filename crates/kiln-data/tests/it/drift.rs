//! Drift: the statistics against known values (scipy 1.17.1 and textbook tables), the
//! profile-based KS and Wasserstein against exact computations on the raw samples, Evidently's
//! default methods, the effect-size floors on a million rows, windows, errors, and the
//! nycflights13 delay model's inputs: July drifts from January–March, a held-back half of
//! January–March does not.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use kiln_data::config::{DatasetConfig, FeatureConfig};
use kiln_data::drift::{
    DriftError, DriftOptions, DriftReport, Floors, Method, Windowing, compare, drift,
    drift_windows, render_text, split_windows, stats,
};
use kiln_data::features::{Input, build, training_profile};
use kiln_data::profile::{Profile, profile, profile_against, profile_with_schema};
use kiln_data::{ColumnType, Table, read_dataset};
use kiln_transform::DType;
use polars::prelude::*;

// ---------------------------------------------------------------------------------------------
// Helpers

/// SplitMix64: a small deterministic generator.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn normal(&mut self) -> f64 {
        let u = self.uniform().max(1e-300);
        let v = self.uniform();
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }

    fn normals(&mut self, n: usize, mean: f64) -> Vec<f64> {
        (0..n).map(|_| mean + self.normal()).collect()
    }

    /// One of `labels` with the given probabilities.
    fn pick<'a>(&mut self, labels: &[&'a str], probs: &[f64]) -> &'a str {
        let u = self.uniform();
        let mut acc = 0.0;
        for (l, p) in labels.iter().zip(probs) {
            acc += p;
            if u < acc {
                return l;
            }
        }
        labels[labels.len() - 1]
    }
}

fn sorted(v: &[f64]) -> Vec<f64> {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v
}

/// Walks the merged sorted samples: calls `step(x, F_a(x), F_b(x))` at each distinct value.
fn walk(a: &[f64], b: &[f64], mut step: impl FnMut(f64, f64, f64)) {
    let (a, b) = (sorted(a), sorted(b));
    let (n, m) = (a.len() as f64, b.len() as f64);
    let (mut i, mut j) = (0, 0);
    loop {
        let x = match (a.get(i), b.get(j)) {
            (Some(&p), Some(&q)) => p.min(q),
            (Some(&p), None) => p,
            (None, Some(&q)) => q,
            (None, None) => break,
        };
        while i < a.len() && a[i] <= x {
            i += 1;
        }
        while j < b.len() && b[j] <= x {
            j += 1;
        }
        step(x, i as f64 / n, j as f64 / m);
    }
}

/// The two-sample KS statistic on raw samples: the largest gap between the empirical CDFs.
fn exact_ks(a: &[f64], b: &[f64]) -> f64 {
    let mut d = 0.0f64;
    walk(a, b, |_, fa, fb| d = d.max((fa - fb).abs()));
    d
}

/// The Wasserstein-1 distance on raw samples: ∫ |F_a − F_b|.
fn exact_w1(a: &[f64], b: &[f64]) -> f64 {
    let mut area = 0.0;
    let mut prev: Option<(f64, f64)> = None;
    walk(a, b, |x, fa, fb| {
        if let Some((px, gap)) = prev {
            area += gap * (x - px);
        }
        prev = Some((x, (fa - fb).abs()));
    });
    area
}

/// numpy's `std` (population).
fn pop_std(a: &[f64]) -> f64 {
    let n = a.len() as f64;
    let mean = a.iter().sum::<f64>() / n;
    (a.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n).sqrt()
}

fn frame_f64(name: &str, v: &[f64]) -> DataFrame {
    DataFrame::new_infer_height(vec![Column::new(name.into(), v)]).unwrap()
}

fn frame_i64(name: &str, v: &[i64]) -> DataFrame {
    DataFrame::new_infer_height(vec![Column::new(name.into(), v)]).unwrap()
}

fn forced(m: Method) -> DriftOptions {
    DriftOptions {
        method: Some(m),
        ..DriftOptions::default()
    }
}

/// KS and normed Wasserstein of column `x` computed from the two samples' profiles.
fn from_profiles(r: &DataFrame, c: &DataFrame) -> (f64, f64, bool) {
    let rp = profile(r).unwrap();
    let cp = profile_against(c, &rp).unwrap();
    let ks = compare(&rp, &cp, &forced(Method::Ks)).unwrap();
    let w = compare(&rp, &cp, &forced(Method::Wasserstein)).unwrap();
    let (ks, w) = (&ks.columns[0], &w.columns[0]);
    assert_eq!(ks.method, Method::Ks);
    (ks.statistic, w.statistic, ks.approximate)
}

fn repo_data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../data/nycflights13")
        .join(name)
}

fn weather() -> Table {
    let mut c = DatasetConfig {
        source: "weather.csv".into(),
        format: None,
        description: None,
        schema: BTreeMap::new(),
        csv: Default::default(),
        expect: vec![],
    };
    c.schema.insert("origin".into(), DType::Categorical);
    c.schema.insert("time_hour".into(), DType::Timestamp);
    read_dataset(&c, &repo_data("weather.csv"), "weather.csv").unwrap()
}

/// The weather readings a delay model takes (the `[[features.delay.join]]` columns).
const WEATHER: [&str; 8] = [
    "temp",
    "dewp",
    "humid",
    "wind_speed",
    "wind_gust",
    "precip",
    "pressure",
    "visib",
];

fn filter(df: &DataFrame, e: Expr) -> DataFrame {
    df.clone().lazy().filter(e).collect().unwrap()
}

/// A random split: rows with probability `share` go left.
fn split(df: &DataFrame, seed: u64, share: f64) -> (DataFrame, DataFrame) {
    let mut rng = Rng(seed);
    let mask: BooleanChunked = (0..df.height()).map(|_| rng.uniform() < share).collect();
    (df.filter(&mask).unwrap(), df.filter(&!&mask).unwrap())
}

fn names(cols: &[&str]) -> Option<Vec<String>> {
    Some(cols.iter().map(|s| s.to_string()).collect())
}

// ---------------------------------------------------------------------------------------------
// The statistics against known values

#[test]
fn kolmogorov_distribution_matches_textbook_values() {
    // P(K > λ) of the Kolmogorov distribution: the classic critical values of
    // √n·D (1.2238 → 10 %, 1.3581 → 5 %, 1.6276 → 1 %, 1.9495 → 0.1 %), and the table
    // values K(0.5) = 0.0361, K(1.0) = 0.7300, K(1.5) = 0.9778, K(2.0) = 0.99933.
    let cases = [
        (1.2238, 0.10),
        (1.3581, 0.05),
        (1.6276, 0.01),
        (1.9495, 0.001),
        (0.5, 1.0 - 0.036_055),
        (1.0, 1.0 - 0.730_000),
        (1.5, 1.0 - 0.977_782),
        (2.0, 1.0 - 0.999_329),
    ];
    for (lambda, p) in cases {
        let got = stats::kolmogorov_sf(lambda);
        assert!(
            (got - p).abs() < 1e-4,
            "Q_KS({lambda}) = {got}, expected {p}"
        );
    }
    // Both series agree where they meet.
    let below = stats::kolmogorov_sf(1.18 - 1e-12);
    let above = stats::kolmogorov_sf(1.18);
    assert!((below - above).abs() < 1e-12, "{below} vs {above}");
    assert_eq!(stats::kolmogorov_sf(0.0), 1.0);
    assert!(stats::kolmogorov_sf(0.05) > 0.999_999);
    assert!(stats::kolmogorov_sf(10.0) < 1e-80);
}

#[test]
fn ks_p_values_agree_with_scipy() {
    // scipy 1.17.1: `scipy.stats.kstwo.sf(d, round(n*m/(n+m)))`, which is what
    // `ks_2samp(..., method="asymp")` returns. Stephens' form is within 6 % of it.
    let cases = [
        (0.1, 1000, 1000, 8.342293067263533e-05),
        (0.061, 1000, 1000, 0.046421401495898906),
        (0.2, 100, 150, 0.014023403960275127),
        (0.05, 1000, 1_000_000, 0.013077334507170583),
        (0.15, 500, 2000, 2.5400354626118724e-08),
        (0.3, 50, 60, 0.01189366697993266),
        (0.01, 1_000_000, 1_000_000, 7.374635645083527e-44),
    ];
    for (d, n, m, p) in cases {
        let got = stats::ks_p_value(d, n, m);
        assert!(
            (got - p).abs() <= 0.06 * p,
            "ks_p_value({d}, {n}, {m}) = {got}, scipy {p}"
        );
    }
    assert_eq!(stats::ks_p_value(0.0, 100, 100), 1.0);
    assert_eq!(stats::ks_p_value(0.5, 0, 100), 1.0);
}

#[test]
fn chi_square_survival_matches_textbook_critical_values() {
    // Table critical values at 5 %: 3.841 (1 dof), 5.991 (2), 18.307 (10); the rest from
    // scipy 1.17.1 `scipy.stats.chi2.sf(x, k)`.
    let cases = [
        (3.841458820694124, 1.0, 0.05),
        (5.991464547107979, 2.0, 0.05),
        (18.307038053275146, 10.0, 0.05),
        (0.5, 3.0, 0.9188914116546758),
        (1e-3, 1.0, 0.9747728793699604),
        (250.0, 200.0, 0.009379131668826098),
        (100.0, 10.0, 5.4497019829205215e-17),
        (1000.0, 10.0, 1.870290720915977e-208),
    ];
    for (x, k, p) in cases {
        let got = stats::chi_square_sf(x, k);
        assert!(
            (got - p).abs() <= 1e-9 * p.max(1e-300) || (got - p).abs() < 1e-12,
            "chi2.sf({x}, {k}) = {got:e}, expected {p:e}"
        );
    }
    assert_eq!(stats::chi_square_sf(0.0, 3.0), 1.0);
    // Γ(5) = 24, Γ(0.5) = √π.
    assert!((stats::ln_gamma(5.0) - 24f64.ln()).abs() < 1e-13);
    assert!((stats::ln_gamma(0.5) - std::f64::consts::PI.sqrt().ln()).abs() < 1e-13);
}

#[test]
fn chi_square_test_and_cramers_v_agree_with_scipy() {
    // scipy 1.17.1: `chi2_contingency(table, correction=False)` and
    // `scipy.stats.contingency.association(table, method="cramer")`.
    let t = stats::chi_square_test(&[30.0, 50.0, 20.0], &[45.0, 35.0, 40.0]);
    assert!((t.statistic - 10.583006535947717).abs() < 1e-10, "{t:?}");
    assert!((t.p_value - 0.0050341868368289425).abs() < 1e-12, "{t:?}");
    assert_eq!(t.dof, 2);

    // Equal row totals: V of the proportions is scipy's V of the counts.
    let t = stats::chi_square_test(&[200.0, 300.0, 500.0], &[260.0, 240.0, 500.0]);
    assert!((t.statistic - 14.492753623188406).abs() < 1e-10, "{t:?}");
    assert!((t.p_value - 0.0007127521514942107).abs() < 1e-13, "{t:?}");
    assert!((t.cramers_v - 0.08512565307587486).abs() < 1e-12, "{t:?}");

    // V of the proportions does not depend on how many rows each side has.
    let scaled = stats::chi_square_test(&[200.0, 300.0, 500.0], &[2600.0, 2400.0, 5000.0]);
    assert!((scaled.cramers_v - t.cramers_v).abs() < 1e-12);
    assert!(scaled.statistic > t.statistic);

    // Identical proportions; empty categories are dropped.
    let same = stats::chi_square_test(&[500.0, 300.0, 0.0, 50.0], &[50.0, 30.0, 0.0, 5.0]);
    assert_eq!((same.statistic, same.p_value, same.dof), (0.0, 1.0, 2));
    assert_eq!(same.cramers_v, 0.0);
}

#[test]
fn two_categories_chi_square_is_the_two_proportion_z_test() {
    // 120 of 200 vs 90 of 200. Evidently's Z-test (scipy 1.17.1): z = 3.003757045930553,
    // p = 2·(1 − Φ(|z|)) = 0.0026666817936140674; chi2_contingency gives χ² = z².
    let t = stats::chi_square_test(&[120.0, 80.0], &[90.0, 110.0]);
    let z = 3.003757045930553f64;
    assert!((t.statistic - z * z).abs() < 1e-10, "{t:?}");
    assert!((t.statistic - 9.022556390977442).abs() < 1e-10, "{t:?}");
    assert!((t.p_value - 0.0026666817936140674).abs() < 1e-12, "{t:?}");
    assert!((t.cramers_v - 0.15018785229652765).abs() < 1e-12, "{t:?}");
}

#[test]
fn jensen_shannon_and_psi_agree_with_scipy_and_by_hand() {
    // scipy 1.17.1 `scipy.spatial.distance.jensenshannon(p, q)` (natural log).
    let js = stats::jensen_shannon(&[0.5, 0.3, 0.2], &[0.2, 0.3, 0.5]);
    assert!((js - 0.25770974832606103).abs() < 1e-12, "{js}");
    let js = stats::jensen_shannon(&[10.0, 0.0, 30.0, 60.0], &[20.0, 20.0, 20.0, 40.0]);
    assert!((js - 0.30481355786575676).abs() < 1e-12, "{js}");
    // Disjoint supports: √ln 2.
    let js = stats::jensen_shannon(&[1.0, 0.0], &[0.0, 1.0]);
    assert!((js - 2f64.ln().sqrt()).abs() < 1e-12, "{js}");
    assert_eq!(stats::jensen_shannon(&[3.0, 1.0], &[30.0, 10.0]), 0.0);

    // PSI by hand: 0.1·ln(0.5/0.4) + (−0.1)·ln(0.3/0.4) = 0.05108256237659909.
    let psi = stats::psi(&[50.0, 30.0, 20.0], &[40.0, 40.0, 20.0]);
    assert!((psi - 0.05108256237659909).abs() < 1e-12, "{psi}");
    // An empty share becomes 0.0001 (Evidently): 0.25·ln 2 + (0.0001 − 0.25)·ln(0.0001/0.25).
    let psi = stats::psi(&[0.5, 0.5, 0.0], &[0.5, 0.25, 0.25]);
    assert!((psi - 2.1285158932529735).abs() < 1e-9, "{psi}");
}

// ---------------------------------------------------------------------------------------------
// KS and Wasserstein from profiles against the raw samples

#[test]
fn ks_and_wasserstein_from_profiles_match_the_raw_samples() {
    let mut rng = Rng(7);
    let mut cases: Vec<(&str, Vec<f64>, Vec<f64>)> = Vec::new();
    cases.push((
        "normal, shifted 0.3",
        rng.normals(800, 0.0),
        rng.normals(5000, 0.3),
    ));
    cases.push((
        "normal, same",
        rng.normals(100_000, 0.0),
        rng.normals(100_000, 0.0),
    ));
    let lognormal = |rng: &mut Rng, n: usize, scale: f64| -> Vec<f64> {
        (0..n).map(|_| scale * rng.normal().exp()).collect()
    };
    cases.push((
        "lognormal, scaled 1.1",
        lognormal(&mut rng, 20_000, 1.0),
        lognormal(&mut rng, 20_000, 1.1),
    ));
    // Integers with ties, more than 20 values (so the profiles keep sketches, not counts).
    let binomial = |rng: &mut Rng, n: usize, p: f64| -> Vec<f64> {
        (0..n)
            .map(|_| (0..60).filter(|_| rng.uniform() < p).count() as f64)
            .collect()
    };
    cases.push((
        "binomial(60), 0.5 vs 0.53",
        binomial(&mut rng, 50_000, 0.5),
        binomial(&mut rng, 30_000, 0.53),
    ));
    // A big atom at zero (like rain): 85 % zeros vs 75 %.
    let rain = |rng: &mut Rng, n: usize, dry: f64| -> Vec<f64> {
        (0..n)
            .map(|_| {
                if rng.uniform() < dry {
                    0.0
                } else {
                    -rng.uniform().max(1e-12).ln()
                }
            })
            .collect()
    };
    cases.push((
        "zero-inflated, 85% vs 75% zeros",
        rain(&mut rng, 40_000, 0.85),
        rain(&mut rng, 40_000, 0.75),
    ));
    cases.push(("tiny samples", rng.normals(40, 0.0), rng.normals(60, 0.5)));
    // Real: January–March temperatures against July's, and a random half of January–March
    // pressures against the other half.
    let w = weather();
    let column = |df: &DataFrame, name: &str| -> Vec<f64> {
        df.column(name)
            .unwrap()
            .cast(&DataType::Float64)
            .unwrap()
            .f64()
            .unwrap()
            .iter()
            .flatten()
            .filter(|v| !v.is_nan())
            .collect()
    };
    let q1 = filter(&w.df, col("month").lt_eq(lit(3)));
    let july = filter(&w.df, col("month").eq(lit(7)));
    cases.push((
        "weather temp, Q1 vs July",
        column(&q1, "temp"),
        column(&july, "temp"),
    ));
    let (a, b) = split(&q1, 11, 0.5);
    cases.push((
        "weather pressure, Q1 halves",
        column(&a, "pressure"),
        column(&b, "pressure"),
    ));

    for (what, a, b) in &cases {
        let d = exact_ks(a, b);
        let wn = exact_w1(a, b) / pop_std(a).max(0.001);
        let (d_hat, w_hat, approximate) = from_profiles(&frame_f64("x", a), &frame_f64("x", b));
        eprintln!(
            "{what}: KS {d:.5} vs {d_hat:.5} (Δ {:+.5}), W {wn:.5} vs {w_hat:.5} (Δ {:+.5}), approximate {approximate}",
            d_hat - d,
            w_hat - wn
        );
        assert!(
            (d_hat - d).abs() <= 0.01,
            "{what}: KS from profiles {d_hat}, exact {d}"
        );
        assert!(
            (w_hat - wn).abs() <= 0.01 + 0.02 * wn,
            "{what}: normed Wasserstein from profiles {w_hat}, exact {wn}"
        );
    }
}

#[test]
fn complete_value_lists_give_exact_statistics() {
    // Int columns with at most 20 values are listed whole in a profile: KS, Wasserstein and
    // the categories are exact.
    let mut rng = Rng(3);
    let a: Vec<i64> = (0..3000)
        .map(|_| (rng.normal() * 3.0 + 8.0).round().clamp(0.0, 15.0) as i64)
        .collect();
    let b: Vec<i64> = (0..2000)
        .map(|_| (rng.normal() * 3.0 + 9.0).round().clamp(0.0, 15.0) as i64)
        .collect();
    let (fa, fb): (Vec<f64>, Vec<f64>) = (
        a.iter().map(|&v| v as f64).collect(),
        b.iter().map(|&v| v as f64).collect(),
    );
    let (d, w, approximate) = from_profiles(&frame_i64("x", &a), &frame_i64("x", &b));
    assert!(!approximate);
    assert!((d - exact_ks(&fa, &fb)).abs() < 1e-12, "{d}");
    assert!((w - exact_w1(&fa, &fb) / pop_std(&fa)).abs() < 1e-9, "{w}");

    // Chi-square over the values: the same as the test on the value counts.
    let rp = profile(&frame_i64("x", &a)).unwrap();
    let cp = profile_against(&frame_i64("x", &b), &rp).unwrap();
    let r = compare(&rp, &cp, &forced(Method::ChiSquare)).unwrap();
    let counts = |v: &[i64]| -> Vec<f64> {
        (0..=15)
            .map(|k| v.iter().filter(|&&x| x == k).count() as f64)
            .collect()
    };
    let t = stats::chi_square_test(&counts(&a), &counts(&b));
    let c = &r.columns[0];
    assert!(!c.approximate);
    assert!((c.statistic - t.statistic).abs() < 1e-9, "{c:?} vs {t:?}");
    assert_eq!(c.dof, Some(t.dof));
}

// ---------------------------------------------------------------------------------------------
// Method choice

#[test]
fn default_methods_follow_evidently() {
    let frame = |n: usize, seed: u64| -> DataFrame {
        let mut rng = Rng(seed);
        let x = rng.normals(n, 0.0);
        let k: Vec<i64> = (0..n).map(|_| (rng.uniform() * 3.0) as i64).collect();
        let s: Vec<&str> = (0..n)
            .map(|_| rng.pick(&["a", "b", "c", "d"], &[0.4, 0.3, 0.2, 0.1]))
            .collect();
        let flag: Vec<bool> = (0..n).map(|_| rng.uniform() < 0.3).collect();
        let t: Vec<i64> = (0..n as i64)
            .map(|i| 1_356_998_400_000_000 + i * 60_000_000)
            .collect();
        DataFrame::new_infer_height(vec![
            Column::new("x".into(), x),
            Column::new("k".into(), k),
            Column::new("s".into(), s),
            Column::new("flag".into(), flag),
            Column::new("t".into(), t)
                .cast(&DataType::Datetime(TimeUnit::Microseconds, None))
                .unwrap(),
        ])
        .unwrap()
    };
    let methods = |r: &DriftReport| -> Vec<(String, Method)> {
        r.columns
            .iter()
            .map(|c| (c.column.clone(), c.method))
            .collect()
    };
    let expect = |pairs: &[(&str, Method)]| -> Vec<(String, Method)> {
        pairs.iter().map(|(n, m)| (n.to_string(), *m)).collect()
    };

    // ≤ 1000 reference values: KS for many-valued numbers, chi-square for the rest; the
    // timestamp column is left out.
    let small = profile(&frame(1000, 1)).unwrap();
    let (_, r) = drift(&frame(700, 2), &small, &DriftOptions::default()).unwrap();
    assert_eq!(
        methods(&r),
        expect(&[
            ("x", Method::Ks),
            ("k", Method::ChiSquare),
            ("s", Method::ChiSquare),
            ("flag", Method::ChiSquare),
        ])
    );
    assert!(r.columns.iter().all(|c| !c.forced && c.p_value.is_some()));

    // > 1000: normed Wasserstein and Jensen–Shannon.
    let large = profile(&frame(1001, 3)).unwrap();
    let (_, r) = drift(&frame(700, 4), &large, &DriftOptions::default()).unwrap();
    assert_eq!(
        methods(&r),
        expect(&[
            ("x", Method::Wasserstein),
            ("k", Method::JensenShannon),
            ("s", Method::JensenShannon),
            ("flag", Method::JensenShannon),
        ])
    );
    assert!(r.columns.iter().all(|c| c.p_value.is_none()));

    // Forced for all, one column overridden, the timestamp named and so compared.
    let opts = DriftOptions {
        columns: names(&["x", "s", "t"]),
        method: Some(Method::Psi),
        column_methods: [("x".to_string(), Method::Ks)].into(),
        ..DriftOptions::default()
    };
    let (_, r) = drift(&frame(700, 4), &large, &opts).unwrap();
    assert_eq!(
        methods(&r),
        expect(&[("x", Method::Ks), ("s", Method::Psi), ("t", Method::Psi)])
    );
    assert!(r.columns.iter().all(|c| c.forced));
    // The current minutes cover only the first 700 of the reference's 1,001: time moved.
    assert!(r.column("t").unwrap().drifted);

    // The small-reference cut-off is an option.
    let opts = DriftOptions {
        small_reference: 5000,
        ..DriftOptions::default()
    };
    let (_, r) = drift(&frame(700, 4), &large, &opts).unwrap();
    assert_eq!(r.column("x").unwrap().method, Method::Ks);
}

// ---------------------------------------------------------------------------------------------
// Effect-size floors

#[test]
fn effect_size_floors_keep_a_million_rows_of_noise_quiet() {
    const N: usize = 1_000_000;
    let labels = ["a", "b", "c"];
    let frame = |seed: u64, shift: f64, probs: &[f64]| -> DataFrame {
        let mut rng = Rng(seed);
        let x = rng.normals(N, shift);
        let c: Vec<&str> = (0..N).map(|_| rng.pick(&labels, probs)).collect();
        DataFrame::new_infer_height(vec![Column::new("x".into(), x), Column::new("c".into(), c)])
            .unwrap()
    };
    let reference = profile(&frame(1, 0.0, &[0.5, 0.3, 0.2])).unwrap();
    // The same distributions, nudged: 0.02 standard deviations, half a point of share.
    let tiny = profile_against(&frame(2, 0.02, &[0.505, 0.297, 0.198]), &reference).unwrap();
    // A real change: half a standard deviation, 20 points of share moved.
    let real = profile_against(&frame(3, 0.5, &[0.3, 0.3, 0.4]), &reference).unwrap();

    let tests = DriftOptions {
        column_methods: [
            ("x".to_string(), Method::Ks),
            ("c".to_string(), Method::ChiSquare),
        ]
        .into(),
        ..DriftOptions::default()
    };
    let no_floors = DriftOptions {
        floors: Floors {
            ks_statistic: 0.0,
            cramers_v: 0.0,
        },
        ..tests.clone()
    };

    // Without floors, a million rows make the nudge "significant" in both tests.
    let r = compare(&reference, &tiny, &no_floors).unwrap();
    for c in &r.columns {
        assert!(c.p_value.unwrap() < 1e-6, "{c:?}");
        assert!(c.drifted, "{c:?}");
    }
    // With the default floors it is not drift: D ≈ 0.008 < 0.1, V ≈ 0.005 < 0.1.
    let r = compare(&reference, &tiny, &tests).unwrap();
    for c in &r.columns {
        let e = c.effect.as_ref().unwrap();
        assert!(e.value < e.floor / 5.0, "{c:?}");
        assert!(!c.drifted, "{c:?}");
    }
    assert!(!r.dataset_drift);
    // The real change drifts, well above the floors.
    let r = compare(&reference, &real, &tests).unwrap();
    for c in &r.columns {
        let e = c.effect.as_ref().unwrap();
        assert!(e.value > 1.5 * e.floor, "{c:?}");
        assert!(c.drifted, "{c:?}");
    }
    assert!(r.dataset_drift);

    // The default methods for a million reference rows (Wasserstein, Jensen–Shannon) are
    // effect sizes already: quiet on the nudge, loud on the change.
    let r = compare(&reference, &tiny, &DriftOptions::default()).unwrap();
    assert_eq!(r.column("x").unwrap().method, Method::Wasserstein);
    assert_eq!(r.column("c").unwrap().method, Method::JensenShannon);
    assert_eq!(r.drifted_columns, 0, "{r:?}");
    let r = compare(&reference, &real, &DriftOptions::default()).unwrap();
    assert_eq!(r.drifted_columns, 2, "{r:?}");
}

// ---------------------------------------------------------------------------------------------
// nycflights13: the delay model's inputs

struct Delay {
    /// The raw inputs of every flight (`[features.delay]` without its `end`).
    raw: DataFrame,
    schema: Vec<ColumnType>,
    /// The training profile a package of the model carries (the train split).
    package_profile: Profile,
}

fn delay_inputs() -> Delay {
    #[derive(serde::Deserialize)]
    struct Project {
        data: BTreeMap<String, DatasetConfig>,
        features: BTreeMap<String, FeatureConfig>,
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let p: Project =
        toml::from_str(&std::fs::read_to_string(root.join("kiln.toml")).unwrap()).unwrap();
    let read = |n: &str| {
        let c = &p.data[n];
        read_dataset(c, &root.join(&c.source), &c.source).unwrap()
    };
    let (flights, weather) = (read("flights"), read("weather"));
    // The model trains on January–March; keep the later months too, to watch them.
    let mut cfg = p.features["delay"].clone();
    assert_eq!(cfg.split.end.as_deref(), Some("2013-04-01"));
    cfg.split.end = None;
    let out = build(
        "delay",
        &cfg,
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
    let schema = out
        .spec
        .inputs
        .iter()
        .map(|c| ColumnType {
            name: c.name.clone(),
            dtype: c.dtype,
        })
        .collect();
    Delay {
        package_profile: training_profile(&out).unwrap(),
        raw: out.raw,
        schema,
    }
}

#[test]
fn the_delay_models_inputs_drift_in_july_and_not_on_held_back_rows() {
    let d = delay_inputs();
    for w in WEATHER {
        assert!(d.schema.iter().any(|c| c.name == w), "{w} is an input");
    }
    let q1 = filter(&d.raw, col("month").lt_eq(lit(3)));
    let july = filter(&d.raw, col("month").eq(lit(7)));
    // The training rows: a random two thirds of January–March; the rest is held back.
    let (train, held_back) = split(&q1, 42, 2.0 / 3.0);
    let reference = profile_with_schema(&train, &d.schema).unwrap();
    let weather_only = DriftOptions {
        columns: names(&WEATHER),
        ..DriftOptions::default()
    };

    let (_, r) = drift(&july, &reference, &weather_only).unwrap();
    eprint!("July:\n{}", render_text(&r));
    assert!(r.columns.iter().all(|c| c.method == Method::Wasserstein));
    for w in ["temp", "dewp", "humid"] {
        assert!(r.column(w).unwrap().drifted, "{w} drifts in July");
    }
    assert!(r.share_drifted >= 0.5, "{:?}", r.drifted());
    assert!(r.dataset_drift);

    let (_, r) = drift(&held_back, &reference, &weather_only).unwrap();
    eprint!("held back:\n{}", render_text(&r));
    assert_eq!(r.drifted_columns, 0, "{:?}", r.drifted());
    assert!(!r.dataset_drift);
    for c in &r.columns {
        // Far from the line, not just under it.
        assert!(c.statistic < 0.05, "{c:?}");
    }
    // Every input, not only the weather: still nothing on the held-back rows.
    let (_, r) = drift(&held_back, &reference, &DriftOptions::default()).unwrap();
    assert!(r.columns.len() > WEATHER.len());
    assert_eq!(r.drifted_columns, 0, "{:?}", r.drifted());

    // The package's training profile (the train split, January 1 – March 1) sees July the
    // same way.
    let (_, r) = drift(&july, &d.package_profile, &weather_only).unwrap();
    for w in ["temp", "dewp", "humid"] {
        assert!(r.column(w).unwrap().drifted, "{w} drifts in July");
    }

    // A small reference (1,000 training rows) gets the tests, with the same verdicts.
    let (small, _) = split(&train, 5, 1000.0 / train.height() as f64);
    let small = small.slice(0, 1000);
    let reference = profile_with_schema(&small, &d.schema).unwrap();
    let (_, r) = drift(&july, &reference, &weather_only).unwrap();
    eprint!("July against 1,000 rows:\n{}", render_text(&r));
    assert!(r.columns.iter().all(|c| c.method == Method::Ks));
    for w in ["temp", "dewp", "humid"] {
        assert!(r.column(w).unwrap().drifted, "{w} drifts in July");
    }
    let (_, r) = drift(&held_back, &reference, &weather_only).unwrap();
    assert_eq!(r.drifted_columns, 0, "{:?}", r.drifted());
}

#[test]
fn prediction_drift_is_reported_apart_from_the_features() {
    let d = delay_inputs();
    let q1 = filter(&d.raw, col("month").lt_eq(lit(3)));
    let july = filter(&d.raw, col("month").eq(lit(7)));
    let (train, held_back) = split(&q1, 42, 2.0 / 3.0);
    let reference = profile_with_schema(&train, &d.schema).unwrap();
    // `distance` stands for a model output here: marked as one, it is compared the same way
    // and reported as prediction drift, outside the share of drifted features.
    let opts = DriftOptions {
        columns: names(&["temp", "dewp"]),
        outputs: vec!["distance".into()],
        ..DriftOptions::default()
    };
    let (_, r) = drift(&july, &reference, &opts).unwrap();
    assert_eq!(r.columns.len(), 2);
    assert_eq!(r.outputs.len(), 1);
    assert_eq!(r.outputs[0].column, "distance");
    assert!(r.column("distance").is_some());
    let distance_drifted = r.outputs[0].drifted;
    assert_eq!(r.prediction_drift, Some(distance_drifted));
    assert_eq!(r.share_drifted, 1.0);
    let (_, r) = drift(&held_back, &reference, &opts).unwrap();
    assert_eq!(r.prediction_drift, Some(false));
    // Without outputs there is no prediction verdict.
    let (_, r) = drift(&held_back, &reference, &DriftOptions::default()).unwrap();
    assert_eq!(r.prediction_drift, None);
    assert!(r.outputs.is_empty());
}

// ---------------------------------------------------------------------------------------------
// Windows

#[test]
fn time_and_row_windows_cut_the_rows_and_compare_each() {
    let w = weather();
    let q1 = filter(&w.df, col("month").lt_eq(lit(3)));
    let reference = profile_with_schema(&q1, &w.schema).unwrap();
    let opts = DriftOptions {
        columns: names(&["temp", "dewp", "origin"]),
        ..DriftOptions::default()
    };
    let week = Duration::from_secs(7 * 86_400);
    let windowing = Windowing::Time {
        column: "time_hour".into(),
        every: week,
    };

    // The buckets, counted independently from the timestamps.
    let micros: Vec<i64> =
        w.df.column("time_hour")
            .unwrap()
            .datetime()
            .unwrap()
            .physical()
            .iter()
            .flatten()
            .collect();
    let every = 7 * 86_400 * 1_000_000i64;
    let mut expected: BTreeMap<i64, u64> = BTreeMap::new();
    for t in &micros {
        *expected.entry(t.div_euclid(every)).or_default() += 1;
    }
    let cut = split_windows(&w.df, &windowing).unwrap();
    assert_eq!(cut.rows_without_time, 0);
    assert_eq!(cut.windows.len(), expected.len());
    for ((info, frame), (k, n)) in cut.windows.iter().zip(&expected) {
        assert_eq!(info.rows, *n);
        assert_eq!(frame.height() as u64, *n);
        let start = kiln_transform::time::format_timestamp(k * every);
        assert_eq!(info.start.as_deref(), Some(start.as_str()));
        let times = frame
            .column("time_hour")
            .unwrap()
            .datetime()
            .unwrap()
            .physical();
        assert!(times.iter().flatten().all(|t| t.div_euclid(every) == *k));
    }

    let windows = drift_windows(&w.df, &reference, &windowing, &opts).unwrap();
    assert_eq!(windows.windows.len(), expected.len());
    let mut july = 0;
    for wd in &windows.windows {
        assert_eq!(wd.report.current_rows, wd.window.rows);
        let start = wd.window.start.as_deref().unwrap();
        // Weeks wholly inside July: temperatures far above January–March's.
        if ("2013-07-01".."2013-07-25").contains(&start) {
            july += 1;
            assert!(wd.report.column("temp").unwrap().drifted, "{start}");
            assert!(wd.report.column("dewp").unwrap().drifted, "{start}");
        }
    }
    assert!(july >= 3, "{july} July weeks");

    // Row windows: consecutive, the last one shorter.
    let cut = split_windows(&w.df, &Windowing::Rows(5000)).unwrap();
    let sizes: Vec<u64> = cut.windows.iter().map(|(i, _)| i.rows).collect();
    let height = w.df.height() as u64;
    assert_eq!(sizes.iter().sum::<u64>(), height);
    assert_eq!(sizes.len() as u64, height.div_ceil(5000));
    assert!(sizes[..sizes.len() - 1].iter().all(|&s| s == 5000));
    for (i, (info, _)) in cut.windows.iter().enumerate() {
        assert_eq!(info.first_row, Some(i as u64 * 5000));
    }
    let windows = drift_windows(&w.df, &reference, &Windowing::Rows(5000), &opts).unwrap();
    assert_eq!(windows.windows.len(), sizes.len());

    // A missing time is counted, not windowed.
    let with_gap =
        w.df.clone()
            .lazy()
            .with_column(
                when(col("hour").eq(lit(3)))
                    .then(lit(NULL).cast(DataType::Datetime(TimeUnit::Microseconds, None)))
                    .otherwise(col("time_hour"))
                    .alias("time_hour"),
            )
            .collect()
            .unwrap();
    let gaps = with_gap.column("time_hour").unwrap().null_count() as u64;
    assert!(gaps > 0);
    let cut = split_windows(&with_gap, &windowing).unwrap();
    assert_eq!(cut.rows_without_time, gaps);
    let total: u64 = cut.windows.iter().map(|(i, _)| i.rows).sum();
    assert_eq!(total + gaps, height);
}

// ---------------------------------------------------------------------------------------------
// Errors and reports

#[test]
fn bad_input_is_an_error_naming_the_column() {
    let w = weather();
    let q1 = filter(&w.df, col("month").lt_eq(lit(3)));
    let reference = profile_with_schema(&q1, &w.schema).unwrap();
    let july = filter(&w.df, col("month").eq(lit(7)));

    let err = |r: Result<(Profile, DriftReport), DriftError>| r.err().unwrap().to_string();
    let e = err(drift(
        &july,
        &reference,
        &DriftOptions {
            columns: names(&["temp", "tmep"]),
            ..DriftOptions::default()
        },
    ));
    assert!(e.contains("no column `tmep` in the reference"), "{e}");
    let e = err(drift(
        &july,
        &reference,
        &DriftOptions {
            outputs: vec!["score".into()],
            ..DriftOptions::default()
        },
    ));
    assert!(e.contains("`score`"), "{e}");

    let e = err(drift(
        &july.drop("dewp").unwrap(),
        &reference,
        &DriftOptions::default(),
    ));
    assert!(
        e.contains("column `dewp` of the reference is missing from the current data"),
        "{e}"
    );

    // Text where the reference has numbers.
    let text = july
        .clone()
        .lazy()
        .with_column(col("temp").cast(DataType::String))
        .collect()
        .unwrap();
    let e = err(drift(&text, &reference, &DriftOptions::default()));
    assert!(
        e.contains("column `temp` is float in the reference but string in the current data"),
        "{e}"
    );

    let e = err(drift(&july, &reference, &forced(Method::Wasserstein)));
    assert!(
        e.contains("method `wasserstein` compares numeric columns"),
        "{e}"
    );
    assert!(e.contains("`origin` is categorical"), "{e}");

    let e = err(drift(
        &july,
        &reference,
        &DriftOptions {
            columns: names(&["temp"]),
            column_methods: [("dewp".to_string(), Method::Psi)].into(),
            ..DriftOptions::default()
        },
    ));
    assert!(e.contains("column `dewp`, which is not compared"), "{e}");

    let e = err(drift(
        &july,
        &reference,
        &DriftOptions {
            drift_share: 0.0,
            ..DriftOptions::default()
        },
    ));
    assert!(e.contains("drift_share"), "{e}");

    let e = "kolmogorov".parse::<Method>().unwrap_err().to_string();
    assert!(e.contains("unknown method \"kolmogorov\""), "{e}");
    for m in Method::ALL {
        assert_eq!(m.name().parse::<Method>().unwrap(), m);
    }

    let e = split_windows(
        &july,
        &Windowing::Time {
            column: "temp".into(),
            every: Duration::from_secs(3600),
        },
    )
    .err()
    .unwrap()
    .to_string();
    assert!(e.contains("`temp`"), "{e}");
}

#[test]
fn a_column_with_no_values_is_skipped_with_its_reason() {
    let reference = profile(&frame_f64("x", &Rng(1).normals(500, 0.0))).unwrap();
    let empty =
        DataFrame::new_infer_height(vec![Column::new("x".into(), vec![None::<f64>, None, None])])
            .unwrap();
    let (_, r) = drift(&empty, &reference, &DriftOptions::default()).unwrap();
    assert!(r.columns.is_empty());
    assert_eq!(r.skipped.len(), 1);
    assert!(
        r.skipped[0]
            .reason
            .contains("no values in the current data"),
        "{r:?}"
    );
    assert_eq!((r.share_drifted, r.dataset_drift), (0.0, false));
}

#[test]
fn reports_round_trip_through_json_and_read_as_text() {
    let w = weather();
    let q1 = filter(&w.df, col("month").lt_eq(lit(3)));
    let reference = profile_with_schema(&q1, &w.schema).unwrap();
    let july = filter(&w.df, col("month").eq(lit(7)));
    let opts = DriftOptions {
        columns: names(&["temp", "origin", "precip"]),
        outputs: vec!["humid".into()],
        column_methods: [("precip".to_string(), Method::Ks)].into(),
        ..DriftOptions::default()
    };
    let (current, r) = drift(&july, &reference, &opts).unwrap();
    assert_eq!(current.rows, july.height() as u64);
    let json = serde_json::to_string_pretty(&r).unwrap();
    let back: DriftReport = serde_json::from_str(&json).unwrap();
    assert_eq!(back, r);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    // Columns come in the reference's order.
    let listed: Vec<&str> = v["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["column"].as_str().unwrap())
        .collect();
    assert_eq!(listed, ["origin", "temp", "precip"]);
    assert_eq!(v["columns"][0]["method"], "jensenshannon");
    assert_eq!(v["columns"][1]["method"], "wasserstein");
    assert_eq!(v["columns"][2]["method"], "ks");
    assert_eq!(v["columns"][2]["forced"], true);
    assert_eq!(v["columns"][2]["effect"]["measure"], "ks_statistic");
    assert_eq!(v["outputs"][0]["column"], "humid");

    let text = render_text(&r);
    assert!(text.starts_with("drift: "), "{text}");
    assert!(text.contains("prediction drift:"), "{text}");
    for c in ["temp", "origin", "precip", "humid"] {
        assert!(
            text.lines().any(|l| l.trim_start().starts_with(c)),
            "{c}: {text}"
        );
    }
    let temp = text
        .lines()
        .find(|l| l.trim_start().starts_with("temp"))
        .unwrap();
    assert!(
        temp.contains("wasserstein") && temp.ends_with("DRIFT"),
        "{temp}"
    );
}
