//! The `inputs` gate: the candidate must accept everything the holder accepts — no input of
//! the holder removed or retyped (added inputs are fine). Raw columns (the feature
//! transform's inputs: name and Kiln dtype) are compared when both versions have them;
//! otherwise tensor inputs (name, element type, and the shape without the batch dimension).

use kiln_core::release::GateResult;
use kiln_ml::TensorSpec;
use serde_json::json;

use super::{Facts, fail};

/// One compared input: its name and a printable type.
#[derive(Debug, Clone, PartialEq)]
struct Input {
    name: String,
    ty: String,
}

fn tensor_type(s: &TensorSpec) -> String {
    let dims: Vec<String> = s.shape.iter().skip(1).map(i64::to_string).collect();
    format!("{}[{}]", s.datatype.as_oip(), dims.join(","))
}

pub(super) fn gate(cand: &Facts<'_>, holder: &Facts<'_>) -> GateResult {
    let hv = &holder.mv.version;
    let (cf, hf) = match (&cand.fetched, &holder.fetched) {
        (Err(e), _) => {
            return fail(
                "inputs",
                "",
                json!({}),
                format!("cannot compare inputs: {e}"),
            );
        }
        (_, Err(e)) => {
            let msg = format!("cannot compare inputs with the holder (version {hv}): {e}");
            return fail("inputs", "", json!({}), msg);
        }
        (Ok(c), Ok(h)) => (c, h),
    };
    let (level, have, want) = if !cf.raw_inputs().is_empty() && !hf.raw_inputs().is_empty() {
        let cols = |f: &crate::Fetched| {
            f.raw_inputs()
                .iter()
                .map(|c| Input {
                    name: c.name.clone(),
                    ty: c.dtype.to_string(),
                })
                .collect::<Vec<_>>()
        };
        ("raw columns", cols(cf), cols(hf))
    } else {
        let specs = |f: &crate::Fetched| {
            f.inputs().map(|v| {
                v.iter()
                    .map(|s| Input {
                        name: s.name.clone(),
                        ty: tensor_type(s),
                    })
                    .collect::<Vec<_>>()
            })
        };
        match (specs(cf), specs(hf)) {
            (Ok(c), Ok(h)) => ("tensor inputs", c, h),
            (Err(e), _) => {
                let msg = format!("cannot read the candidate's inputs: {e}");
                return fail("inputs", "", json!({}), msg);
            }
            (_, Err(e)) => {
                let msg = format!("cannot read the inputs of the holder (version {hv}): {e}");
                return fail("inputs", "", json!({}), msg);
            }
        }
    };
    let mut removed = vec![];
    let mut retyped = vec![];
    for w in &want {
        match have.iter().find(|h| h.name == w.name) {
            None => removed.push(w.name.clone()),
            Some(h) if h.ty != w.ty => retyped.push((w.name.clone(), w.ty.clone(), h.ty.clone())),
            Some(_) => {}
        }
    }
    let added: Vec<&str> = have
        .iter()
        .filter(|h| !want.iter().any(|w| w.name == h.name))
        .map(|h| h.name.as_str())
        .collect();
    let inputs = json!({
        "compared": level,
        "holder_version": hv,
        "removed": removed,
        "retyped": retyped.iter().map(|(n, h, c)| json!({"name": n, "holder": h, "candidate": c})).collect::<Vec<_>>(),
        "added": added,
    });
    let bad = removed.len() + retyped.len();
    let message = if bad == 0 {
        let extra = if added.is_empty() {
            String::new()
        } else {
            format!("; it adds {}", added.join(", "))
        };
        format!(
            "the candidate accepts all {} {level} of the holder (version {hv}) with the same types{extra}",
            want.len()
        )
    } else {
        let mut parts = vec![];
        if !removed.is_empty() {
            parts.push(format!("removes {}", removed.join(", ")));
        }
        if !retyped.is_empty() {
            let r: Vec<String> = retyped
                .iter()
                .map(|(n, h, c)| format!("{n} ({h} → {c})"))
                .collect();
            parts.push(format!("retypes {}", r.join(", ")));
        }
        format!(
            "the candidate {} of the {level} of the holder (version {hv})",
            parts.join(" and ")
        )
    };
    GateResult {
        gate: "inputs".into(),
        subject: level.into(),
        passed: bad == 0,
        value: Some(bad as f64),
        threshold: Some(0.0),
        inputs,
        message,
    }
}
