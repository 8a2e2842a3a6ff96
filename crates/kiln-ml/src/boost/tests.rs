//! Tests of the boosting trainer.

use rand::SeedableRng;
use rand::rngs::StdRng;

use super::binning::{MISSING, count_edges};
use super::grow::{Bin, Grower, Split, sums};
use super::*;

/// A random matrix.
fn random_matrix(rows: usize, cols: usize, seed: u64) -> Matrix {
    use rand::Rng;
    let mut rng = StdRng::seed_from_u64(seed);
    Matrix::new(
        rows,
        cols,
        (0..rows * cols)
            .map(|_| rng.random_range(-1.0..1.0))
            .collect(),
    )
    .unwrap()
}

/// Bins follow the rows, not the distinct values: a value held by half the rows gets a bin of
/// its own and the rest share the other bins about equally.
#[test]
fn bins_hold_about_equal_row_counts() {
    let mut vals = vec![0.0f32];
    let mut counts = vec![3000usize];
    for i in 1..=3000 {
        vals.push(i as f32);
        counts.push(1);
    }
    let e = count_edges(&vals, &counts, 4);
    assert_eq!(e.len(), 3, "{e:?}");
    assert!(e[0] > 0.0 && e[0] < 1.0, "{e:?}");
    // 3,000 single rows over the 3 bins left: edges near 1,000 and 2,000.
    assert!(
        (e[1] - 1000.5).abs() <= 2.0 && (e[2] - 2000.5).abs() <= 2.0,
        "{e:?}"
    );
}

mod cases {
    use super::*;

    fn auc(y: &[f64], p: &[f64]) -> f64 {
        crate::metrics::auc(&y.iter().map(|v| *v > 0.5).collect::<Vec<_>>(), p).unwrap()
    }

    fn nonlinear(n: usize, seed: u64) -> (Matrix, Vec<f64>) {
        let x = random_matrix(n, 4, seed);
        let y = (0..n)
            .map(|i| {
                let r = x.row(i);
                f64::from(u8::from(r[0] * r[1] > 0.0 || r[2] > 0.8))
            })
            .collect();
        (x, y)
    }

    #[test]
    fn learns_a_nonlinear_binary_rule() {
        let (x, y) = nonlinear(4000, 1);
        let (vx, vy) = nonlinear(2000, 2);
        let p = GbdtParams {
            num_rounds: 80,
            ..Default::default()
        };
        let out = train(&x, &y, Some((&vx, &vy)), Task::Binary, &p, &mut |_| {}).unwrap();
        let pred = out.model.predict(&vx).unwrap();
        assert!(auc(&vy, &pred.value) > 0.97, "{}", auc(&vy, &pred.value));
        assert!(
            out.history
                .windows(2)
                .all(|w| w[1].train_loss <= w[0].train_loss + 1e-9)
        );
        // Feature 3 is noise.
        assert!(out.importance_gain[3] < out.importance_gain[0] / 5.0);
    }

    #[test]
    fn regression_and_multiclass_fit() {
        let x = random_matrix(3000, 3, 3);
        let y: Vec<f64> = (0..3000)
            .map(|i| f64::from(3.0 * x.get(i, 0) + x.get(i, 1).abs()))
            .collect();
        let out = train(
            &x,
            &y,
            None,
            Task::Regression,
            &GbdtParams::default(),
            &mut |_| {},
        )
        .unwrap();
        let pred = out.model.predict(&x).unwrap();
        let mse: f64 = pred
            .value
            .iter()
            .zip(&y)
            .map(|(a, b)| (a - b).powi(2))
            .sum::<f64>()
            / 3000.0;
        assert!(mse < 0.02, "{mse}");

        let y: Vec<f64> = (0..3000)
            .map(|i| {
                if x.get(i, 0) < -0.3 {
                    0.0
                } else if x.get(i, 1) < 0.0 {
                    1.0
                } else {
                    2.0
                }
            })
            .collect();
        let task = Task::Multiclass { classes: 3 };
        let out = train(&x, &y, None, task, &GbdtParams::default(), &mut |_| {}).unwrap();
        let pred = out.model.predict(&x).unwrap();
        let acc = pred
            .label
            .iter()
            .zip(&y)
            .filter(|(a, b)| **a as f64 == **b)
            .count();
        assert!(acc > 2900, "{acc}");
    }

    #[test]
    fn missing_values_take_the_side_that_gains() {
        // NaN in feature 0 means positive; otherwise x0 > 0.5 is positive.
        let mut x = random_matrix(4000, 2, 4);
        let mut y = vec![0.0; 4000];
        for (i, yi) in y.iter_mut().enumerate() {
            if i % 4 == 0 {
                x.data[i * 2] = f32::NAN;
                *yi = 1.0;
            } else {
                *yi = f64::from(u8::from(x.get(i, 0) > 0.5));
            }
        }
        let out = train(
            &x,
            &y,
            None,
            Task::Binary,
            &GbdtParams::default(),
            &mut |_| {},
        )
        .unwrap();
        let probe = Matrix::new(2, 2, vec![f32::NAN, 0.0, -0.9, 0.0]).unwrap();
        let pred = out.model.predict(&probe).unwrap();
        assert!(
            pred.value[0] > 0.9 && pred.value[1] < 0.1,
            "{:?}",
            pred.value
        );
    }

    #[test]
    fn early_stopping_keeps_the_best_round_and_training_is_deterministic() {
        let (x, mut y) = nonlinear(2000, 5);
        // Noisy labels make the validation loss turn up.
        for i in (0..2000).step_by(3) {
            y[i] = 1.0 - y[i];
        }
        let (vx, vy) = nonlinear(1000, 6);
        let p = GbdtParams {
            num_rounds: 300,
            learning_rate: 0.3,
            num_leaves: 63,
            min_data_in_leaf: 2,
            early_stopping_rounds: 10,
            bagging_fraction: 0.8,
            bagging_freq: 1,
            feature_fraction: 0.75,
            seed: 9,
            ..Default::default()
        };
        let a = train(&x, &y, Some((&vx, &vy)), Task::Binary, &p, &mut |_| {}).unwrap();
        assert!(a.history.len() < 300);
        assert_eq!(
            match &a.model.scorer {
                Scorer::Trees(t) => t.trees.len(),
                _ => 0,
            },
            a.best_iteration
        );
        let b = train(&x, &y, Some((&vx, &vy)), Task::Binary, &p, &mut |_| {}).unwrap();
        assert_eq!(
            serde_json::to_vec(&a.model).unwrap(),
            serde_json::to_vec(&b.model).unwrap()
        );
        let c = train(
            &x,
            &y,
            Some((&vx, &vy)),
            Task::Binary,
            &GbdtParams { seed: 10, ..p },
            &mut |_| {},
        )
        .unwrap();
        assert_ne!(
            serde_json::to_vec(&a.model).unwrap(),
            serde_json::to_vec(&c.model).unwrap()
        );
    }

    #[test]
    fn bad_input_is_named() {
        let x = random_matrix(50, 2, 7);
        let y: Vec<f64> = (0..50).map(|i| f64::from(i % 2)).collect();
        let p = GbdtParams::default();
        let e = |r: Result<GbdtOutcome>| r.err().expect("an error").to_string();
        assert!(e(train(&x, &y[..10], None, Task::Binary, &p, &mut |_| {})).contains("labels"));
        assert!(e(train(&x, &[1.0; 50], None, Task::Binary, &p, &mut |_| {})).contains("constant"));
        let mut bad = y.clone();
        bad[3] = 2.0;
        assert!(e(train(&x, &bad, None, Task::Binary, &p, &mut |_| {})).contains("label 4"));
        bad[3] = f64::NAN;
        assert!(e(train(&x, &bad, None, Task::Regression, &p, &mut |_| {})).contains("finite"));
        let m = |s: &str| {
            GbdtParams::from_map(&serde_json::from_str(s).unwrap())
                .err()
                .unwrap()
                .to_string()
        };
        assert!(m(r#"{"num_roundz": 3}"#).contains("num_roundz"));
        assert!(m(r#"{"learning_rate": -1}"#).contains("learning_rate"));
        assert!(m(r#"{"num_leaves": 1}"#).contains("num_leaves"));
        assert!(m(r#"{"num_leaves": "many"}"#).contains("num_leaves"));
        let ok = GbdtParams::from_map(
            &serde_json::from_str(r#"{"n_estimators": 7, "eta": 0.2}"#).unwrap(),
        )
        .unwrap();
        assert_eq!((ok.num_rounds, ok.learning_rate), (7, 0.2));
    }

    /// Category 3 of 0..7 (a middle code) is the only late one: one categorical split
    /// isolates it, where a threshold on the codes cannot.
    #[test]
    fn categorical_features_split_one_category_from_the_rest() {
        use rand::Rng;
        let mut rng = StdRng::seed_from_u64(11);
        let n = 2000;
        let mut data = Vec::with_capacity(n * 2);
        let mut y = Vec::with_capacity(n);
        for i in 0..n {
            let code = (i % 7) as f32;
            data.push(code);
            data.push(rng.random_range(-1.0..1.0));
            y.push(f64::from(u8::from(code == 3.0)));
        }
        let x = Matrix::new(n, 2, data).unwrap();
        let names = vec!["carrier".to_string(), "noise".to_string()];
        let stump = |categorical: bool| {
            let mut p = GbdtParams {
                num_rounds: 1,
                num_leaves: 2,
                learning_rate: 1.0,
                ..Default::default()
            };
            if categorical {
                p.categorical_features = vec!["carrier".into()];
                p.resolve_categorical(&names).unwrap();
            }
            let out = train(&x, &y, None, Task::Binary, &p, &mut |_| {}).unwrap();
            out.model.predict(&x).unwrap().value
        };
        let cat = stump(true);
        let p3 = cat[3];
        for (i, v) in cat.iter().enumerate() {
            if i % 7 == 3 {
                assert_eq!(*v, p3);
            } else {
                assert!(*v < p3 - 0.3, "row {i}: {v} vs {p3}");
            }
        }
        // As magnitudes, one threshold puts category 3 with 0..2 or with 4..6.
        let num = stump(false);
        let others_like_3 = (0..n).filter(|i| i % 7 != 3 && num[*i] == num[3]).count();
        assert!(others_like_3 > 0);

        // Not a code, too many categories, an unknown name: refused, named.
        let mut p = GbdtParams {
            categorical_features: vec!["nope".into()],
            ..Default::default()
        };
        assert!(
            p.resolve_categorical(&names)
                .unwrap_err()
                .to_string()
                .contains("nope")
        );
        p.categorical_columns = vec![1];
        let e = train(&x, &y, None, Task::Binary, &p, &mut |_| {})
            .err()
            .expect("refused");
        assert!(e.to_string().contains("not a category code"), "{e}");
        p.categorical_columns = vec![0];
        p.max_bin = 5;
        let e = train(&x, &y, None, Task::Binary, &p, &mut |_| {})
            .err()
            .expect("refused");
        assert!(e.to_string().contains("7 categories"), "{e}");
    }
}

/// Sparse, missing and dense columns side by side, with a categorical one: what the internals
/// below are checked on.
fn mixed_matrix(rows: usize, seed: u64) -> Matrix {
    use rand::Rng;
    let mut rng = StdRng::seed_from_u64(seed);
    let mut data = Vec::with_capacity(rows * 5);
    for _ in 0..rows {
        let dense: f32 = rng.random_range(-1.0..1.0);
        let mostly_zero = if rng.random_bool(0.9) {
            0.0
        } else {
            rng.random_range(0.0..5.0)
        };
        let mostly_missing = if rng.random_bool(0.7) {
            f32::NAN
        } else {
            rng.random_range(0.0..1.0)
        };
        let one_hot = f32::from(u8::from(rng.random_bool(0.2)));
        let category = f32::from(rng.random_range(0u8..6));
        data.extend([dense, mostly_zero, mostly_missing, one_hot, category]);
    }
    Matrix::new(rows, 5, data).unwrap()
}

/// Parameters (16 bins, column 4 categorical) and the binned `mixed_matrix`.
fn bin_mixed(x: &Matrix) -> (GbdtParams, binning::Binned) {
    let p = GbdtParams {
        max_bin: 16,
        categorical_columns: vec![4],
        ..GbdtParams::default()
    };
    let binned = binning::bin_features(x, p.max_bin, &p.categorical_columns, &[]).unwrap();
    (p, binned)
}

/// Histograms skip each feature's most frequent bin and rebuild it from the totals; over two
/// threads or one, they must equal a plain count of every row into every bin.
#[test]
fn histograms_equal_a_plain_count() {
    use rand::Rng;
    let x = mixed_matrix(20_000, 3);
    let (p, binned) = bin_mixed(&x);
    let grower = Grower::new(&binned, &p).unwrap();
    // The skipped bins are the frequent ones: zero, missing, and the one-hot's zero.
    assert!(
        grower.row_slots.len() < 20_000 * 3,
        "{}",
        grower.row_slots.len()
    );
    let mut rng = StdRng::seed_from_u64(4);
    let gh: Vec<[f64; 2]> = (0..20_000)
        .map(|_| [rng.random_range(-1.0..1.0), rng.random_range(0.01..0.25)])
        .collect();
    for rows in [
        (0..20_000u32).collect::<Vec<_>>(),            // two threads
        (0..20_000u32).step_by(7).collect::<Vec<_>>(), // one
    ] {
        let (hist, total) = grower.histogram(&rows, &gh);
        assert_eq!(total.n as usize, rows.len());
        for j in 0..5 {
            let mut want = vec![Bin::default(); grower.n_bins[j] + 1];
            for &r in &rows {
                let b = binned.bins[j][r as usize];
                let slot = if b == MISSING {
                    grower.n_bins[j]
                } else {
                    b as usize
                };
                want[slot].add(&Bin {
                    g: gh[r as usize][0],
                    h: gh[r as usize][1],
                    n: 1,
                });
            }
            for (i, (got, want)) in grower.feature_hist(&hist, j).iter().zip(&want).enumerate() {
                assert_eq!(got.n, want.n, "feature {j} slot {i}");
                assert!((got.g - want.g).abs() < 1e-9, "feature {j} slot {i}");
                assert!((got.h - want.h).abs() < 1e-9, "feature {j} slot {i}");
            }
        }
    }
}

/// Splitting a leaf sends each row where the split says (missing values to their side,
/// categories by equality), keeps each side in its original order and builds the smaller
/// side's histogram (or, after a tree's last split, its sums) in the same pass, on one thread
/// and (20,000 rows) on two.
#[test]
fn split_leaf_partitions_and_counts_the_smaller_side() {
    use rand::Rng;
    let x = mixed_matrix(30_000, 5);
    let (p, binned) = bin_mixed(&x);
    let grower = Grower::new(&binned, &p).unwrap();
    let mut rng = StdRng::seed_from_u64(8);
    let gh: Vec<[f64; 2]> = (0..30_000)
        .map(|_| [rng.random_range(-1.0..1.0), rng.random_range(0.01..0.25)])
        .collect();
    let goes_left = |s: &Split, b: u8| {
        if b == MISSING {
            s.missing_left
        } else if s.categorical {
            b == s.bin
        } else {
            b <= s.bin
        }
    };
    let mut scratch = vec![0u32; 30_000];
    for n in [3_000u32, 30_000] {
        for (feature, bin, categorical) in
            [(0, 7, false), (1, 0, false), (2, 3, false), (4, 2, true)]
        {
            for missing_left in [false, true] {
                let s = Split {
                    feature,
                    bin,
                    categorical,
                    missing_left,
                    gain: 1.0,
                    left_n: 0,
                };
                let col = &binned.bins[feature];
                let rows: Vec<u32> = (0..n).filter(|r| r % 3 != 0).collect();
                let (want_l, want_r): (Vec<u32>, Vec<u32>) =
                    rows.iter().partition(|&&r| goes_left(&s, col[r as usize]));
                for (small_left, last) in [(true, false), (false, false), (false, true)] {
                    let mut got = rows.clone();
                    let (nl, hist, total) =
                        grower.split_leaf(&mut got, &mut scratch, &s, col, &gh, small_left, last);
                    let what = format!(
                        "{n} rows, feature {feature}, missing_left {missing_left}, small_left {small_left}, last {last}"
                    );
                    assert_eq!(nl, want_l.len(), "{what}");
                    assert_eq!(got[..nl], want_l[..], "{what}");
                    assert_eq!(got[nl..], want_r[..], "{what}");
                    let small = if small_left { &want_l } else { &want_r };
                    let want = sums(small, &gh);
                    assert_eq!(total.n, want.n, "{what}");
                    assert!(
                        (total.g - want.g).abs() < 1e-9 && (total.h - want.h).abs() < 1e-9,
                        "{what}"
                    );
                    if last {
                        assert!(hist.is_empty(), "{what}");
                    } else {
                        let (want_hist, _) = grower.histogram(small, &gh);
                        for (i, (a, b)) in hist.iter().zip(&want_hist).enumerate() {
                            assert_eq!(a.n, b.n, "{what}: slot {i}");
                            assert!(
                                (a.g - b.g).abs() < 1e-9 && (a.h - b.h).abs() < 1e-9,
                                "{what}: slot {i}"
                            );
                        }
                    }
                }
            }
        }
    }
}

/// The binary loss, a product kept as mantissa and exponent, equals the sum of logarithms,
/// even where the product itself would underflow; the fused gradients equal the plain ones.
#[test]
fn binary_loss_and_fused_gradients() {
    use rand::Rng;
    let mut rng = StdRng::seed_from_u64(9);
    let n = 50_000;
    let s: Vec<f64> = (0..n).map(|_| rng.random_range(-40.0..40.0)).collect();
    let y: Vec<f64> = (0..n)
        .map(|_| f64::from(u8::from(rng.random_bool(0.3))))
        .collect();
    let want: f64 = s
        .iter()
        .zip(&y)
        .map(|(s, y)| {
            let p = crate::predictor::sigmoid(*s);
            -(if *y > 0.5 { p } else { 1.0 - p }).clamp(1e-15, 1.0).ln()
        })
        .sum::<f64>()
        / n as f64;
    let mut gh = vec![[0.0; 2]; n];
    let got = loss(Task::Binary, &s, &y, Some(&mut gh));
    assert!(((got - want) / want).abs() < 1e-12, "{got} vs {want}");
    let mut plain = vec![[0.0; 2]; n];
    gradients(Task::Binary, 0, &s, &y, &mut plain);
    assert_eq!(gh, plain);
    assert_eq!(loss(Task::Binary, &s, &y, None), got);
}

/// Distinct values are counted in a hash table while they are few and by sorting otherwise;
/// both give the values in order with their counts, NaN left out and -0 counted as 0.
#[test]
fn distinct_values_by_hashing_and_by_sorting_agree() {
    use super::binning::distinct_values;
    let reference = |col: &[f32]| {
        let mut m: BTreeMap<i64, (f32, usize)> = BTreeMap::new();
        for v in col.iter().filter(|v| !v.is_nan()) {
            let v = if *v == 0.0 { 0.0 } else { *v };
            // Ordered keys for f32 (total order of the bits).
            let k = i64::from(v.to_bits() as i32);
            let k = if k < 0 { -(k & 0x7fff_ffff) - 1 } else { k };
            m.entry(k).or_insert((v, 0)).1 += 1;
        }
        m.into_values().unzip::<f32, usize, Vec<f32>, Vec<usize>>()
    };
    let few: Vec<f32> = (0..10_000)
        .map(|i| match i % 5 {
            0 => f32::NAN,
            1 => -0.0,
            2 => 0.0,
            _ => (i % 37) as f32 - 18.0,
        })
        .collect();
    let many: Vec<f32> = (0..20_000)
        .map(|i| {
            if i % 9 == 0 {
                -0.0
            } else {
                (i as f32 * 0.37).sin() * 1e3
            }
        })
        .collect();
    for col in [few, many] {
        let (vals, counts) = distinct_values(&col);
        let (want_vals, want_counts) = reference(&col);
        assert_eq!(vals.len(), want_vals.len());
        assert!(
            vals.iter()
                .zip(&want_vals)
                .all(|(a, b)| a.to_bits() == b.to_bits())
        );
        assert_eq!(counts, want_counts);
    }
}
