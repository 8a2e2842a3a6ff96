//! Durations as people write them (`30s`, `5m`, `1h30m`) and RFC 3339 timestamps as Alertmanager
//! writes them. Times are milliseconds since the Unix epoch throughout the crate (see
//! [`crate::clock::Clock`]).

use chrono::{DateTime, SecondsFormat, Utc};

/// Alertmanager's `endsAt` for an alert that is still firing: Go's zero time.
pub const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

const UNITS: [(&str, i64); 7] = [
    ("y", 365 * 24 * 3_600_000),
    ("w", 7 * 24 * 3_600_000),
    ("d", 24 * 3_600_000),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1_000),
    ("ms", 1),
];

/// Why a duration string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {input:?}: {reason} (write e.g. \"30s\", \"5m\", \"1h30m\", \"3d\")")]
pub struct DurationError {
    pub input: String,
    pub reason: String,
}

/// Parses a Prometheus-style duration into milliseconds: one or more `<integer><unit>` with units
/// `y w d h m s ms` from largest to smallest, each at most once (`1h30m`, `90s`, `250ms`); `0`
/// alone is zero.
pub fn parse_duration_ms(s: &str) -> Result<i64, DurationError> {
    let fail = |reason: &str| DurationError {
        input: s.to_string(),
        reason: reason.to_string(),
    };
    let t = s.trim();
    if t.is_empty() {
        return Err(fail("empty"));
    }
    if t == "0" {
        return Ok(0);
    }
    let bytes = t.as_bytes();
    let mut i = 0;
    let mut total: i64 = 0;
    let mut last_unit = usize::MAX; // index into UNITS of the previous unit
    while i < bytes.len() {
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return Err(fail("expected a number"));
        }
        let n: i64 = t[start..i].parse().map_err(|_| fail("number too large"))?;
        let unit_start = i;
        while i < bytes.len() && bytes[i].is_ascii_alphabetic() {
            i += 1;
        }
        let unit = &t[unit_start..i];
        let Some(idx) = UNITS.iter().position(|(u, _)| *u == unit) else {
            return Err(fail(if unit.is_empty() {
                "missing unit"
            } else {
                "unknown unit"
            }));
        };
        if last_unit != usize::MAX && idx <= last_unit {
            return Err(fail("units must go from largest to smallest, each once"));
        }
        last_unit = idx;
        total = n
            .checked_mul(UNITS[idx].1)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| fail("too large"))?;
    }
    Ok(total)
}

/// Formats milliseconds the way [`parse_duration_ms`] reads them, largest units first
/// (`5400000` → `"1h30m"`; zero → `"0s"`). Days are the largest unit (`"30d"`, not `"4w2d"`).
pub fn format_duration_ms(ms: i64) -> String {
    if ms == 0 {
        return "0s".to_string();
    }
    let mut out = String::new();
    if ms < 0 {
        out.push('-');
    }
    let mut rest = ms.unsigned_abs();
    for (unit, size) in UNITS.iter().skip(2) {
        let size = *size as u64;
        if rest >= size {
            out.push_str(&format!("{}{unit}", rest / size));
            rest %= size;
        }
    }
    out
}

/// RFC 3339 in UTC with the fraction only when there is one, as Go prints `time.Time`:
/// `2024-05-01T10:00:00Z`, `2024-05-01T10:00:00.250Z`.
pub fn rfc3339(ms: i64) -> String {
    match DateTime::<Utc>::from_timestamp_millis(ms) {
        Some(t) => t.to_rfc3339_opts(SecondsFormat::AutoSi, true),
        None => ZERO_TIME.to_string(),
    }
}

/// Parses an RFC 3339 timestamp (any offset) into milliseconds since the epoch.
pub fn parse_rfc3339(s: &str) -> Result<i64, chrono::ParseError> {
    Ok(DateTime::parse_from_rfc3339(s)?.timestamp_millis())
}

/// `#[serde(with = "…::duration")]` for an `i64` of milliseconds written as `"5m"`.
pub mod duration {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(ms: &i64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format_duration_ms(*ms))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        let s = String::deserialize(d)?;
        let ms = super::parse_duration_ms(&s).map_err(serde::de::Error::custom)?;
        Ok(ms)
    }
}

/// `#[serde(with = "…::opt_duration")]` for an `Option<i64>` of milliseconds.
pub mod opt_duration {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(ms: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
        match ms {
            Some(ms) => s.serialize_some(&super::format_duration_ms(*ms)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
        match Option::<String>::deserialize(d)? {
            Some(s) => super::parse_duration_ms(&s)
                .map(Some)
                .map_err(serde::de::Error::custom),
            None => Ok(None),
        }
    }
}

/// `#[serde(with = "…::timestamp")]` for an `i64` of milliseconds written as RFC 3339.
pub mod timestamp {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(ms: &i64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::rfc3339(*ms))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        let s = String::deserialize(d)?;
        super::parse_rfc3339(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_and_format() {
        assert_eq!(parse_duration_ms("30s"), Ok(30_000));
        assert_eq!(parse_duration_ms("5m"), Ok(300_000));
        assert_eq!(parse_duration_ms("1h"), Ok(3_600_000));
        assert_eq!(parse_duration_ms("1h30m"), Ok(5_400_000));
        assert_eq!(parse_duration_ms("3d"), Ok(259_200_000));
        assert_eq!(parse_duration_ms("250ms"), Ok(250));
        assert_eq!(parse_duration_ms("1m30s500ms"), Ok(90_500));
        assert_eq!(parse_duration_ms("0"), Ok(0));
        for bad in ["", "5", "m", "5x", "30m1h", "1h1h", "-5m", "1.5h"] {
            assert!(parse_duration_ms(bad).is_err(), "{bad}");
        }
        let e = parse_duration_ms("5x").unwrap_err();
        assert!(e.to_string().contains("unknown unit"), "{e}");
        assert_eq!(format_duration_ms(5_400_000), "1h30m");
        assert_eq!(format_duration_ms(259_200_000), "3d");
        assert_eq!(format_duration_ms(30 * 86_400_000), "30d");
        assert_eq!(format_duration_ms(0), "0s");
        assert_eq!(format_duration_ms(90_500), "1m30s500ms");
        for ms in [1, 999, 60_000, 86_400_000 * 30, 3_723_004] {
            assert_eq!(parse_duration_ms(&format_duration_ms(ms)), Ok(ms));
        }
    }

    #[test]
    fn timestamps_print_like_go() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_714_557_600_250), "2024-05-01T10:00:00.250Z");
        assert_eq!(
            parse_rfc3339("2024-05-01T12:00:00.250+02:00"),
            Ok(1_714_557_600_250)
        );
        assert_eq!(
            parse_rfc3339(&rfc3339(1_714_557_600_000)),
            Ok(1_714_557_600_000)
        );
        assert!(parse_rfc3339("yesterday").is_err());
    }
}
