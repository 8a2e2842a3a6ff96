//! Row rules on text columns (`in_set`, `regex`, `value_lengths`) judged once per distinct
//! value instead of once per row. Text columns hold few distinct values (codes, categories),
//! and Polars stores strings of up to 12 bytes inline in a 16-byte view, so a row is judged by
//! one small hash-table lookup keyed by its view; longer strings are looked up by content.
//! The result is exactly the per-row verdict, for every row.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

use polars::prelude::*;
use polars_arrow::array::Array;

/// What a text rule asks of each present value.
pub enum TextCheck {
    InSet(HashSet<String>),
    Regex(regex::Regex),
    /// Length in characters (Unicode scalar values), as Great Expectations counts it.
    Lengths {
        min: Option<u64>,
        max: Option<u64>,
    },
}

impl TextCheck {
    fn ok(&self, s: &str) -> bool {
        match self {
            TextCheck::InSet(set) => set.contains(s),
            TextCheck::Regex(re) => re.is_match(s),
            TextCheck::Lengths { min, max } => {
                let n = s.chars().count() as u64;
                min.is_none_or(|m| n >= m) && max.is_none_or(|m| n <= m)
            }
        }
    }
}

/// A hasher for 16-byte views: they are already well mixed by their content bytes.
#[derive(Default)]
struct ViewHasher(u64);

impl Hasher for ViewHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 =
                (self.0.rotate_left(5) ^ u64::from(*b)).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        }
    }
    fn write_u128(&mut self, v: u128) {
        let x = (v as u64) ^ ((v >> 64) as u64).rotate_left(29);
        self.0 = (x ^ (x >> 31)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// Polars' array type of a text chunk.
type TextArray = <StringType as PolarsDataType>::Array;

type ViewMap = HashMap<u128, bool, BuildHasherDefault<ViewHasher>>;

/// Largest string stored inside its view.
const MAX_INLINE: u32 = 12;

/// Per row: does the present value fail `check` (missing values do not fail).
pub fn failing(ca: &StringChunked, check: &TextCheck) -> BooleanChunked {
    let chunks: Vec<_> = ca.downcast_iter().collect();
    // Two halves of the chunks on two threads (each with its own cache: the distinct
    // values are few, so judging them twice costs nothing).
    let judge = |arrs: &[&TextArray]| -> Vec<bool> {
        let mut out = Vec::new();
        let mut inline: ViewMap = ViewMap::default();
        let mut long: HashMap<&str, bool> = HashMap::new();
        for arr in arrs {
            let views = arr.views();
            let validity = arr.validity();
            out.reserve(views.len());
            for (i, v) in views.iter().enumerate() {
                if validity.is_some_and(|b| !b.get_bit(i)) {
                    out.push(false);
                    continue;
                }
                let bad = if v.length <= MAX_INLINE {
                    *inline
                        .entry(v.as_u128())
                        .or_insert_with(|| !check.ok(arr.value(i)))
                } else {
                    let s = arr.value(i);
                    *long.entry(s).or_insert_with(|| !check.ok(s))
                };
                out.push(bad);
            }
        }
        out
    };
    let mid = chunks.len() / 2;
    let values: Vec<bool> = if chunks.len() >= 2 && ca.len() >= 100_000 {
        let (a, b) = chunks.split_at(mid);
        let (ra, rb) = std::thread::scope(|s| {
            let h = s.spawn(|| judge(b));
            (judge(a), h.join())
        });
        let mut v = ra;
        v.extend(rb.expect("a text-rule worker thread panicked"));
        v
    } else {
        judge(&chunks)
    };
    BooleanChunked::from_slice(ca.name().clone(), &values)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_match_per_row_checks_for_inline_long_and_missing_values() {
        let long = "a string much longer than twelve bytes";
        let vals: Vec<Option<&str>> = (0..5000)
            .map(|i| match i % 7 {
                0 => None,
                1 => Some("ABC"),
                2 => Some("abc"),
                3 => Some(long),
                4 => Some("ÅÄÖ"),
                5 => Some(""),
                _ => Some("ABCD"),
            })
            .collect();
        let mut ca = StringChunked::new("c".into(), &vals[..2500]);
        ca.append(&StringChunked::new("c".into(), &vals[2500..]))
            .unwrap();
        let checks = [
            TextCheck::Regex(regex::Regex::new("^[A-Z]{3}$").unwrap()),
            TextCheck::InSet(["ABC".to_string(), long.to_string()].into()),
            TextCheck::Lengths {
                min: Some(3),
                max: Some(3),
            },
        ];
        for check in &checks {
            let got: Vec<bool> = failing(&ca, check).iter().map(|b| b.unwrap()).collect();
            let want: Vec<bool> = vals
                .iter()
                .map(|v| v.is_some_and(|s| !check.ok(s)))
                .collect();
            assert_eq!(got, want);
        }
        // "ÅÄÖ" is 3 characters (6 bytes).
        assert!(checks[2].ok("ÅÄÖ"));
    }
}
