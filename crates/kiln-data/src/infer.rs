//! Proposed expectations: from a profile, the rules the profiled data already meets, rounded
//! to readable bounds, and their rendering as `[[data.NAME.expect]]` tables for `kiln.toml`.
//!
//! The proposals describe the data as seen; they are a starting point to review, not a
//! verdict. Bounds are widened a little so that the next batch of the same data passes.

use kiln_transform::DType;

use crate::config::{Expectation, Rule, SetValue};
use crate::profile::{ColumnProfile, Profile};

/// Text columns with at most this many distinct values get an `in_set` rule.
pub const IN_SET_MAX: u64 = 20;
/// `between` bounds are widened by this fraction of the observed range on each side.
pub const MARGIN: f64 = 0.05;

/// The expectations the profiled data meets: the column set, the row count within ½×–2× of
/// the rows seen, each column's type, `not_null` (with `mostly` = the observed present
/// fraction, rounded down to 3 decimals, when some values are missing), `between` for numeric
/// columns (the observed range widened by 5 % and rounded outwards to readable numbers; not
/// below 0 when no value was negative), `in_set` for text columns with at most 20 distinct
/// values, and `unique` for columns whose every row holds a distinct value.
pub fn propose(profile: &Profile) -> Vec<Expectation> {
    let mut out = vec![
        plain(Rule::ColumnSet {
            columns: profile.columns.iter().map(|c| c.name.clone()).collect(),
            exact: true,
        }),
        plain(Rule::RowCount {
            min: Some(profile.rows / 2),
            max: Some(profile.rows.saturating_mul(2)),
        }),
    ];
    for c in &profile.columns {
        out.push(plain(Rule::Type {
            column: c.name.clone(),
            dtype: c.dtype,
        }));
        if let Some(e) = not_null(c, profile.rows) {
            out.push(e);
        }
        if let Some(e) = between(c) {
            out.push(e);
        }
        if let Some(e) = in_set(c) {
            out.push(e);
        }
        if is_unique(c, profile.rows) {
            out.push(plain(Rule::Unique {
                column: c.name.clone(),
            }));
        }
    }
    out
}

fn plain(rule: Rule) -> Expectation {
    Expectation {
        rule,
        name: None,
        mostly: None,
    }
}

fn not_null(c: &ColumnProfile, rows: u64) -> Option<Expectation> {
    if rows == 0 || c.count == 0 {
        return None;
    }
    let rule = Rule::NotNull {
        column: c.name.clone(),
    };
    if c.count >= rows {
        return Some(plain(rule));
    }
    // Rounded down, so that the data profiled passes.
    let mostly = (c.count as f64 / rows as f64 * 1000.0).floor() / 1000.0;
    (mostly > 0.0).then_some(Expectation {
        rule,
        name: None,
        mostly: Some(mostly),
    })
}

fn between(c: &ColumnProfile) -> Option<Expectation> {
    if !c.dtype.is_numeric() {
        return None;
    }
    let (min, max) = (number(c.min.as_ref()?)?, number(c.max.as_ref()?)?);
    if !min.is_finite() || !max.is_finite() {
        return None;
    }
    let (lo, hi) = readable_bounds(min, max);
    Some(plain(Rule::Between {
        column: c.name.clone(),
        min: Some(lo),
        max: Some(hi),
        strict_min: false,
        strict_max: false,
    }))
}

fn number(v: &SetValue) -> Option<f64> {
    match v {
        SetValue::Int(i) => Some(*i as f64),
        SetValue::Float(f) => Some(*f),
        _ => None,
    }
}

/// `[min, max]` widened by [`MARGIN`] of the range and rounded outwards at a tenth of the
/// widened range's order of magnitude (17..4983 → 0..5300; -43..1301 → -200..1400). The
/// result always contains `[min, max]`; it does not cross 0 when `min` does not.
pub fn readable_bounds(min: f64, max: f64) -> (f64, f64) {
    let range = max - min;
    let margin = if range > 0.0 {
        range * MARGIN
    } else if min != 0.0 {
        min.abs() * MARGIN
    } else {
        1.0
    };
    let (lo, hi) = (min - margin, max + margin);
    let exp = (hi - lo).log10().floor() as i32 - 1;
    let (mut lo, mut hi) = if exp >= 0 {
        let step = 10f64.powi(exp);
        ((lo / step).floor() * step, (hi / step).ceil() * step)
    } else {
        // Divide by a power of ten so that 0.06 prints as 0.06, not 0.060000000000000005.
        let scale = 10f64.powi(-exp);
        ((lo * scale).floor() / scale, (hi * scale).ceil() / scale)
    };
    if min >= 0.0 && lo < 0.0 {
        lo = 0.0;
    }
    if max <= 0.0 && hi > 0.0 {
        hi = 0.0;
    }
    // Rounding in the last bit must not cut off the observed range.
    lo = lo.min(min);
    hi = hi.max(max);
    (lo, hi)
}

fn in_set(c: &ColumnProfile) -> Option<Expectation> {
    if !c.dtype.is_text() || c.count == 0 || c.distinct > IN_SET_MAX {
        return None;
    }
    let top = c.top_values.as_ref()?;
    // Only a complete list: every present value among the listed ones.
    let listed = top
        .iter()
        .filter(|t| t.count > 0)
        .map(|t| t.count)
        .sum::<u64>();
    if listed != c.count {
        return None;
    }
    let mut values: Vec<String> = top
        .iter()
        .filter(|t| t.count > 0)
        .filter_map(|t| match &t.value {
            SetValue::Str(s) => Some(s.clone()),
            _ => None,
        })
        .collect();
    values.sort();
    Some(plain(Rule::InSet {
        column: c.name.clone(),
        values: values.into_iter().map(SetValue::Str).collect(),
    }))
}

fn is_unique(c: &ColumnProfile, rows: u64) -> bool {
    if rows < 2 || c.count != rows || c.dtype == DType::Bool {
        return false;
    }
    if c.distinct_exact {
        c.distinct == rows
    } else {
        // A merged profile knows the distinct count within the HyperLogLog's error only.
        c.distinct as f64 >= 0.99 * rows as f64
    }
}

/// Renders expectations as `[[data.DATASET.expect]]` tables, one per expectation, in the
/// order given, keys in a fixed readable order (`rule` and `column` first).
pub fn to_toml(dataset: &str, expectations: &[Expectation]) -> String {
    const ORDER: &[&str] = &[
        "rule",
        "column",
        "columns",
        "exact",
        "type",
        "quantile",
        "min",
        "max",
        "strict_min",
        "strict_max",
        "values",
        "pattern",
        "mostly",
        "name",
    ];
    let header = format!("[[data.{}.expect]]", toml_key(dataset));
    let mut out = String::new();
    for e in expectations {
        let serde_json::Value::Object(map) =
            serde_json::to_value(e).expect("an expectation serializes to a JSON object")
        else {
            continue;
        };
        let mut keys: Vec<&String> = map.keys().collect();
        keys.sort_by_key(|k| {
            (
                ORDER.iter().position(|o| o == k).unwrap_or(ORDER.len()),
                k.to_string(),
            )
        });
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(&header);
        out.push('\n');
        for k in keys {
            if let Some(v) = toml_value(&map[k]) {
                out.push_str(&format!("{} = {v}\n", toml_key(k)));
            }
        }
    }
    out
}

fn toml_key(k: &str) -> String {
    if !k.is_empty()
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        k.to_string()
    } else {
        toml_string(k)
    }
}

fn toml_value(v: &serde_json::Value) -> Option<String> {
    Some(match v {
        serde_json::Value::Null => return None,
        serde_json::Value::Bool(b) => b.to_string(),
        serde_json::Value::Number(n) => n.to_string(),
        serde_json::Value::String(s) => toml_string(s),
        serde_json::Value::Array(items) => {
            let items: Vec<String> = items.iter().filter_map(toml_value).collect();
            format!("[{}]", items.join(", "))
        }
        serde_json::Value::Object(map) => {
            let fields: Vec<String> = map
                .iter()
                .filter_map(|(k, v)| Some(format!("{} = {}", toml_key(k), toml_value(v)?)))
                .collect();
            format!("{{ {} }}", fields.join(", "))
        }
    })
}

/// A TOML basic string.
fn toml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
