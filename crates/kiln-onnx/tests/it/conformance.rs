//! Every fixture loads, runs on the backend it is meant for, and matches onnxruntime's outputs
//! on every row: labels exactly, probabilities and regression values within 1e-5 (absolute;
//! NaN where onnxruntime gives NaN). Tree ensembles and linear scores come out bit for bit
//! (Kiln reproduces onnxruntime's float32 arithmetic); the rest (MLAS's logistic, tract's
//! kernels) are within a few 1e-7.

use kiln_ml::{ElemType, Predictor, Tensor, TensorData};
use kiln_onnx::{Backend, OnnxModel};

use crate::fixtures::{self, Fixture};

const TOL: f64 = 1e-5;

/// Largest absolute difference seen for one output.
fn compare(fixture: &str, got: &Tensor, want: &fixtures::JsonTensor) -> f64 {
    let ctx = format!("{fixture}: output `{}`", want.name);
    assert_eq!(got.elem_type().as_oip(), want.datatype, "{ctx}: datatype");
    assert_eq!(got.shape, want.shape, "{ctx}: shape");
    let want_t = want.tensor();
    let close = |i: usize, g: f64, w: f64| -> f64 {
        if g.is_nan() && w.is_nan() {
            return 0.0;
        }
        let d = (g - w).abs();
        assert!(d <= TOL, "{ctx}: value {i} is {g}, onnxruntime says {w}");
        d
    };
    match (&got.data, &want_t.data) {
        (TensorData::Fp32(g), TensorData::Fp32(w)) => g
            .iter()
            .zip(w)
            .enumerate()
            .map(|(i, (g, w))| close(i, f64::from(*g), f64::from(*w)))
            .fold(0.0, f64::max),
        (TensorData::Fp64(g), TensorData::Fp64(w)) => g
            .iter()
            .zip(w)
            .enumerate()
            .map(|(i, (g, w))| close(i, *g, *w))
            .fold(0.0, f64::max),
        (g, w) => {
            let n = g.len();
            assert_eq!(n, w.len(), "{ctx}: length");
            let (gt, wt) = (
                Tensor::new("", vec![n], g.clone()).unwrap(),
                Tensor::new("", vec![n], w.clone()).unwrap(),
            );
            for i in 0..n {
                assert_eq!(
                    slice(&gt, i),
                    slice(&wt, i),
                    "{ctx}: row {i} (Kiln, onnxruntime)"
                );
            }
            0.0
        }
    }
}

fn slice(t: &Tensor, i: usize) -> String {
    match &t.data {
        TensorData::Int64(v) => v[i].to_string(),
        TensorData::Int32(v) => v[i].to_string(),
        TensorData::Bool(v) => v[i].to_string(),
        TensorData::Bytes(v) => String::from_utf8_lossy(&v[i]).into_owned(),
        TensorData::Fp32(v) => v[i].to_string(),
        TensorData::Fp64(v) => v[i].to_string(),
    }
}

fn check(f: &Fixture) -> Vec<(String, f64)> {
    let model = OnnxModel::from_bytes(&fixtures::model_bytes(&f.name))
        .unwrap_or_else(|e| panic!("{}: does not load: {e}", f.name));
    let want_backend = match f.backend.as_str() {
        "native" => Backend::Native,
        _ => Backend::Tract,
    };
    assert_eq!(model.backend(), want_backend, "{}: backend", f.name);
    let inputs = f.inputs();
    // The specs describe the inputs the fixtures feed.
    for t in &inputs {
        let spec = model
            .inputs()
            .iter()
            .find(|s| s.name == t.name)
            .expect("input spec");
        t.check(spec).unwrap_or_else(|e| panic!("{}: {e}", f.name));
    }
    let got = model
        .predict(&inputs)
        .unwrap_or_else(|e| panic!("{}: predict failed: {e}", f.name));
    assert_eq!(got.len(), f.outputs.len(), "{}: number of outputs", f.name);
    let mut diffs = Vec::new();
    for (g, w) in got.iter().zip(&f.outputs) {
        assert_eq!(g.name, w.name, "{}: output order", f.name);
        let spec = model
            .outputs()
            .iter()
            .find(|s| s.name == g.name)
            .expect("output spec");
        assert_eq!(
            spec.datatype,
            g.elem_type(),
            "{}: `{}` spec datatype",
            f.name,
            g.name
        );
        assert_eq!(
            spec.shape.len(),
            g.shape.len(),
            "{}: `{}` spec rank",
            f.name,
            g.name
        );
        for (s, d) in spec.shape.iter().zip(&g.shape) {
            assert!(
                *s == -1 || *s as usize == *d,
                "{}: `{}` spec {:?} vs {:?}",
                f.name,
                g.name,
                spec.shape,
                g.shape
            );
        }
        if w.zipmap {
            assert_eq!(
                g.elem_type(),
                ElemType::Fp32,
                "{}: ZipMap output served as FP32",
                f.name
            );
        }
        diffs.push((w.name.clone(), compare(&f.name, g, w)));
    }
    // Row by row, at batch size 1, the same answers.
    if f.rows > 0 {
        for r in [0, f.rows / 2, f.rows - 1] {
            let one: Vec<Tensor> = inputs.iter().map(|t| row(t, r)).collect();
            let got1 = model
                .predict(&one)
                .unwrap_or_else(|e| panic!("{}: row {r}: {e}", f.name));
            for (g, full) in got1.iter().zip(&got) {
                // Debug form: NaN equals NaN there.
                assert_eq!(
                    format!("{:?}", g.data),
                    format!("{:?}", row(full, r).data),
                    "{}: row {r} alone, `{}`",
                    f.name,
                    g.name
                );
            }
        }
    }
    diffs
}

fn row(t: &Tensor, r: usize) -> Tensor {
    let per: usize = t.shape[1..].iter().product();
    let range = r * per..(r + 1) * per;
    let data = match &t.data {
        TensorData::Fp32(v) => TensorData::Fp32(v[range].to_vec()),
        TensorData::Fp64(v) => TensorData::Fp64(v[range].to_vec()),
        TensorData::Int64(v) => TensorData::Int64(v[range].to_vec()),
        TensorData::Int32(v) => TensorData::Int32(v[range].to_vec()),
        TensorData::Bool(v) => TensorData::Bool(v[range].to_vec()),
        TensorData::Bytes(v) => TensorData::Bytes(v[range].to_vec()),
    };
    let mut shape = t.shape.clone();
    shape[0] = 1;
    Tensor::new(t.name.clone(), shape, data).unwrap()
}

#[test]
fn every_fixture_matches_onnxruntime() {
    let m = fixtures::manifest();
    assert!(m.fixtures.len() >= 15, "fixtures missing: {:?}", m.fixtures);
    for name in &m.fixtures {
        let f = fixtures::fixture(name);
        let diffs = check(&f);
        let summary: Vec<String> = diffs.iter().map(|(n, d)| format!("{n} {d:.1e}")).collect();
        eprintln!(
            "{name:32} {:6} rows  {:6}  max diff: {}",
            f.rows,
            f.backend,
            summary.join(", ")
        );
    }
}

#[test]
fn load_file_reads_a_fixture() {
    let p = fixtures::dir().join("gb_classifier.onnx");
    let m = kiln_onnx::load_file(&p).unwrap();
    assert_eq!(m.inputs()[0].name, "X");
    assert_eq!(m.inputs()[0].shape, vec![-1, 30]);
    assert_eq!(m.inputs()[0].datatype, ElemType::Fp32);
    let outs: Vec<_> = m
        .outputs()
        .iter()
        .map(|o| (o.name.as_str(), o.datatype, o.shape.clone()))
        .collect();
    assert_eq!(
        outs,
        vec![
            ("label", ElemType::Int64, vec![-1]),
            ("probabilities", ElemType::Fp32, vec![-1, 2])
        ]
    );
    let Err(missing) = kiln_onnx::load_file(fixtures::dir().join("no-such-model.onnx")) else {
        panic!("a missing file loads");
    };
    assert!(
        matches!(missing, kiln_onnx::OnnxError::Io { .. }),
        "{missing}"
    );
}

#[test]
fn zipmap_output_is_served_as_the_probability_tensor() {
    let m = OnnxModel::from_bytes(&fixtures::model_bytes("rf_classifier_strings_zipmap")).unwrap();
    let outs: Vec<_> = m
        .outputs()
        .iter()
        .map(|o| (o.name.as_str(), o.datatype, o.shape.clone()))
        .collect();
    assert_eq!(
        outs,
        vec![
            ("output_label", ElemType::Bytes, vec![-1]),
            ("output_probability", ElemType::Fp32, vec![-1, 3])
        ]
    );
}

#[test]
fn models_serve_from_several_threads() {
    let f = fixtures::fixture("rf_classifier");
    let model = std::sync::Arc::new(
        OnnxModel::from_bytes(&fixtures::model_bytes("rf_classifier")).unwrap(),
    );
    let inputs = f.inputs();
    let reference = model.predict(&inputs).unwrap();
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let (m, i) = (model.clone(), inputs.clone());
            std::thread::spawn(move || m.predict(&i).unwrap())
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap(), reference);
    }
}
