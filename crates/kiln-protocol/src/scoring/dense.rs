//! The fast path for the commonest `/invocations` body of a tensor model: one float input
//! and `{"inputs": [[x, …], …]}` (or `instances`, or a flat list), numbers only.
//!
//! The general path builds a JSON tree (an enum per number, a vector per row) and then walks
//! it; for a 100-row, 30-column request that is most of the server's work. This scanner reads
//! the numbers straight into the tensor's buffer. It accepts only what it can read exactly
//! like the general path — JSON numbers (strict grammar), arrays of equal length, no other
//! keys — and returns `None` for anything else (nulls, strings, `params`, other layouts,
//! errors of any kind), so the general path still gives every answer and every error message
//! it gave before. A property test holds the two paths to the same tensor.

use kiln_ml::{ElemType, TensorData, TensorSpec};

use super::Batch;
use super::tensor::{Elems, finish};

/// The decoded batch, or `None` to take the general path.
pub(super) fn try_decode(text: &str, specs: &[TensorSpec]) -> Option<Batch> {
    let [spec] = specs else { return None };
    let fp32 = match spec.datatype {
        ElemType::Fp32 => true,
        ElemType::Fp64 => false,
        _ => return None,
    };
    let mut s = Scan {
        b: text.as_bytes(),
        i: 0,
    };
    s.eat(b'{')?;
    s.ws();
    let rest = &s.b[s.i..];
    if rest.starts_with(b"\"inputs\"") {
        s.i += 8;
    } else if rest.starts_with(b"\"instances\"") {
        s.i += 11;
    } else {
        return None;
    }
    s.eat(b':')?;
    s.eat(b'[')?;
    let mut values: Vec<f64> = Vec::with_capacity(text.len() / 8);
    s.ws();
    let shape = if s.peek() == Some(b'[') {
        // Rows of equal length.
        let mut rows = 0usize;
        let mut width = None;
        loop {
            s.eat(b'[')?;
            let before = values.len();
            s.list(&mut values)?;
            let n = values.len() - before;
            match width {
                None if n == 0 => return None,
                None => width = Some(n),
                Some(w) if w != n => return None,
                Some(_) => {}
            }
            rows += 1;
            if !s.sep()? {
                break;
            }
        }
        vec![rows, width?]
    } else {
        s.list(&mut values)?;
        if values.is_empty() {
            return None;
        }
        vec![values.len()]
    };
    s.eat(b'}')?;
    s.ws();
    if s.i != s.b.len() {
        return None;
    }
    let data = if fp32 {
        TensorData::Fp32(values.into_iter().map(|v| v as f32).collect())
    } else {
        TensorData::Fp64(values)
    };
    finish(spec, shape, Elems::from_data(data))
        .ok()
        .map(|t| Batch::Tensors(vec![t]))
}

struct Scan<'a> {
    b: &'a [u8],
    i: usize,
}

impl Scan<'_> {
    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.b.get(self.i) {
            self.i += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn eat(&mut self, c: u8) -> Option<()> {
        self.ws();
        (self.peek()? == c).then(|| self.i += 1)
    }

    /// After an element: `true` on a comma, `false` on the closing `]`.
    fn sep(&mut self) -> Option<bool> {
        self.ws();
        let c = self.peek()?;
        self.i += 1;
        match c {
            b',' => Some(true),
            b']' => Some(false),
            _ => None,
        }
    }

    /// Numbers up to and including the closing `]` (the `[` already read).
    fn list(&mut self, out: &mut Vec<f64>) -> Option<()> {
        self.ws();
        if self.peek() == Some(b']') {
            self.i += 1;
            return Some(());
        }
        loop {
            out.push(self.number()?);
            if !self.sep()? {
                return Some(());
            }
        }
    }

    /// A JSON number, strictly: `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`, finite.
    fn number(&mut self) -> Option<f64> {
        self.ws();
        let b = self.b;
        let start = self.i;
        let mut i = start;
        // The significant digits as an integer while they fit (Clinger's fast path below).
        let mut mantissa: u64 = 0;
        let mut digits_seen = 0u32;
        let mut scale: i32 = 0;
        let mut take = |d: u8, frac: bool, mantissa: &mut u64, scale: &mut i32| {
            if digits_seen < 19 {
                *mantissa = *mantissa * 10 + u64::from(d - b'0');
                if *mantissa != 0 {
                    digits_seen += 1;
                }
                if frac {
                    // Saturates: only a body of more than 2³¹ leading zeros could get there.
                    *scale = scale.saturating_sub(1);
                }
            } else {
                digits_seen = u32::MAX; // too many digits for the fast path
            }
        };
        let negative = b.get(i) == Some(&b'-');
        if negative {
            i += 1;
        }
        match b.get(i)? {
            b'0' => i += 1,
            b'1'..=b'9' => {
                while let Some(&d) = b.get(i).filter(|d| d.is_ascii_digit()) {
                    take(d, false, &mut mantissa, &mut scale);
                    i += 1;
                }
            }
            _ => return None,
        }
        let mut integer = true;
        if b.get(i) == Some(&b'.') {
            i += 1;
            integer = false;
            let from = i;
            while let Some(&d) = b.get(i).filter(|d| d.is_ascii_digit()) {
                take(d, true, &mut mantissa, &mut scale);
                i += 1;
            }
            if i == from {
                return None;
            }
        }
        let mut exp: i32 = 0;
        if let Some(b'e' | b'E') = b.get(i) {
            i += 1;
            integer = false;
            let sign = match b.get(i) {
                Some(b'-') => {
                    i += 1;
                    -1
                }
                Some(b'+') => {
                    i += 1;
                    1
                }
                _ => 1,
            };
            let from = i;
            while let Some(&d) = b.get(i).filter(|d| d.is_ascii_digit()) {
                exp = exp.saturating_mul(10).saturating_add(i32::from(d - b'0'));
                i += 1;
            }
            if i == from {
                return None;
            }
            exp *= sign;
        }
        self.i = i;
        // Exact when the digits fit in 53 bits and the power of ten is exact in an f64: one
        // correctly rounded multiplication or division (what every fast float parser does
        // first). Anything else goes to the full algorithm.
        let e10 = scale.saturating_add(exp);
        let v = if digits_seen != u32::MAX && mantissa < (1 << 53) && (-22..=22).contains(&e10) {
            let m = mantissa as f64;
            let v = if e10 < 0 {
                m / POW10[(-e10) as usize]
            } else {
                m * POW10[e10 as usize]
            };
            if negative { -v } else { v }
        } else {
            let v: f64 = fast_float2::parse(&b[start..i]).ok()?;
            if !v.is_finite() {
                return None;
            }
            v
        };
        // serde_json reads `-0` as the integer 0.
        Some(if integer && v == 0.0 { 0.0 } else { v })
    }
}

/// Powers of ten exactly representable as f64.
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scoring::{ModelInputs, decode_general};
    use proptest::prelude::*;

    fn spec(shape: Vec<i64>, datatype: ElemType) -> TensorSpec {
        TensorSpec {
            name: "X".into(),
            datatype,
            shape,
        }
    }

    fn both(body: &str, spec: &TensorSpec) -> (Option<Batch>, Option<Batch>) {
        let specs = std::slice::from_ref(spec);
        let fast = try_decode(body, specs);
        let general = decode_general(
            Some("application/json"),
            body.as_bytes(),
            ModelInputs::Tensors(specs),
        )
        .ok();
        (fast, general)
    }

    #[test]
    fn reads_the_common_bodies_and_declines_the_rest() {
        let s = spec(vec![-1, 3], ElemType::Fp32);
        for body in [
            r#"{"inputs": [[1, 2.5, -3e2], [0, -0, 1E-3]]}"#,
            "{\n \"instances\" :[[1,2,3]]\t}\n",
        ] {
            let (fast, general) = both(body, &s);
            assert!(fast.is_some(), "{body}");
            assert_eq!(fast, general, "{body}");
        }
        for body in [
            r#"{"inputs": [[1, 2, 3]], "params": {}}"#,
            r#"{"inputs": [[1, 2, null]]}"#,
            r#"{"inputs": [[1, 2, "3"]]}"#,
            r#"{"inputs": [[1, 2]]}"#,
            r#"{"inputs": [[1, 2, 3], [1, 2]]}"#,
            r#"{"inputs": [[1, 2, 01]]}"#,
            r#"{"inputs": [[1, 2, 1.]]}"#,
            r#"{"inputs": [[1, 2, .5]]}"#,
            r#"{"inputs": [[1, 2, 1e999]]}"#,
            r#"{"inputs": [[1, 2, NaN]]}"#,
            r#"{"inputs": [[1, 2, +1]]}"#,
            r#"{"inputs": [[1, 2, 3],]}"#,
            r#"{"inputs": [[1, 2, 3]]} x"#,
            r#"{"inputs": []}"#,
            r#"{"dataframe_split": {"data": [[1, 2, 3]]}}"#,
        ] {
            assert_eq!(try_decode(body, std::slice::from_ref(&s)), None, "{body}");
        }
    }

    fn number() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<f32>()
                .prop_filter("finite", |x| x.is_finite())
                .prop_map(|x| format!("{x}")),
            any::<f64>()
                .prop_filter("finite", |x| x.is_finite())
                .prop_map(|x| format!("{x:e}")),
            any::<i64>().prop_map(|i| i.to_string()),
            Just("-0".to_string()),
            Just("-0.0".to_string()),
            Just("1E+2".to_string()),
            Just("123456789012345678901234567890".to_string()),
        ]
    }

    proptest! {
        #[test]
        fn agrees_with_the_general_path(
            rows in prop::collection::vec(prop::collection::vec(number(), 1..6), 1..6),
            key in prop_oneof![Just("inputs"), Just("instances")],
            fp32 in any::<bool>(),
            flat in any::<bool>(),
            pad in prop_oneof![Just(""), Just(" "), Just("\n\t")],
        ) {
            let width = rows[0].len();
            let payload = if flat {
                format!("[{pad}{}{pad}]", rows[0].join(&format!("{pad},{pad}")))
            } else {
                let rows: Vec<String> = rows
                    .iter()
                    .map(|r| format!("[{}]", r.join(",")))
                    .collect();
                format!("[{}]", rows.join(&format!(",{pad}")))
            };
            let body = format!("{{{pad}\"{key}\"{pad}:{pad}{payload}{pad}}}");
            let dtype = if fp32 { ElemType::Fp32 } else { ElemType::Fp64 };
            let shape = if flat { vec![-1] } else { vec![-1, width as i64] };
            let (fast, general) = both(&body, &spec(shape, dtype));
            if fast.is_some() {
                prop_assert_eq!(fast, general, "{}", body);
            } else {
                // Declined only for ragged rows.
                prop_assert!(!flat && rows.iter().any(|r| r.len() != width), "{}", body);
            }
        }
    }
}
