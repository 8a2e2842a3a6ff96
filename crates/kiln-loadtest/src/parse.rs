//! The small value grammars of the command line: durations (`10s`, `500ms`) and
//! concurrency levels (`1,2,4,8`, `1:16:2`).

use std::time::Duration;

use crate::{LoadtestError, Result};

/// A duration: a non-negative number with a unit `us` (or `µs`), `ms`, `s`, `m` or `h`;
/// a bare number is seconds. `1.5s`, `250ms` and `2m` parse.
pub fn parse_duration(s: &str) -> Result<Duration> {
    parse_duration_unit(s, Some(1.0), "a duration like 10s, 500ms or 2m")
}

/// As [`parse_duration`], but a unit is required (for SLO latencies, where a bare `5`
/// could mean seconds or milliseconds).
pub(crate) fn parse_duration_strict(s: &str, what: &'static str) -> Result<Duration> {
    parse_duration_unit(s, None, what)
}

fn parse_duration_unit(s: &str, bare: Option<f64>, expected: &'static str) -> Result<Duration> {
    let err = || LoadtestError::Parse {
        what: "duration",
        expected,
        found: s.to_string(),
    };
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 = num.parse().map_err(|_| err())?;
    let scale = match unit.trim() {
        "" => bare.ok_or_else(err)?,
        "us" | "µs" => 1e-6,
        "ms" => 1e-3,
        "s" => 1.0,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        _ => return Err(err()),
    };
    let secs = value * scale;
    if !(0.0..=1e9).contains(&secs) {
        return Err(err());
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Concurrency levels, in the order given, without repeats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Levels(pub Vec<usize>);

/// `1,2,4,8`, or perf_analyzer's `start:end[:step]` ranges (`1:16:2` is 1, 3, 5 … 15;
/// the step is added, default 1), or both: `1,2,4:16:4`. Every level is at least 1.
pub fn parse_levels(s: &str) -> Result<Levels> {
    const EXPECTED: &str = "concurrency levels like 1,2,4,8 or a range START:END[:STEP]";
    let err = || LoadtestError::Parse {
        what: "concurrency",
        expected: EXPECTED,
        found: s.to_string(),
    };
    let mut out: Vec<usize> = vec![];
    for part in s.split(',').map(str::trim) {
        let nums: Vec<usize> = part
            .split(':')
            .map(|n| n.trim().parse::<usize>().map_err(|_| err()))
            .collect::<Result<_>>()?;
        let (start, end, step) = match nums[..] {
            [n] => (n, n, 1),
            [a, b] => (a, b, 1),
            [a, b, c] => (a, b, c),
            _ => return Err(err()),
        };
        if start == 0 || step == 0 || end < start || (end - start) / step >= 10_000 {
            return Err(err());
        }
        for level in (start..=end).step_by(step) {
            if !out.contains(&level) {
                out.push(level);
            }
        }
    }
    Ok(Levels(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("10").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("250us").unwrap(), Duration::from_micros(250));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("0s").unwrap(), Duration::ZERO);
        for bad in ["", "s", "ten", "10 parsecs", "-1s", "1e3s", "1..2s"] {
            let e = parse_duration(bad).unwrap_err().to_string();
            assert!(e.contains(&format!("`{bad}`")), "{bad}: {e}");
        }
        assert!(parse_duration_strict("5", "a latency").is_err());
        assert_eq!(
            parse_duration_strict("0.001ms", "a latency").unwrap(),
            Duration::from_micros(1)
        );
    }

    #[test]
    fn levels() {
        assert_eq!(parse_levels("1,2,4,8").unwrap().0, vec![1, 2, 4, 8]);
        assert_eq!(parse_levels("4").unwrap().0, vec![4]);
        assert_eq!(
            parse_levels("1:16:2").unwrap().0,
            vec![1, 3, 5, 7, 9, 11, 13, 15]
        );
        assert_eq!(parse_levels("1:3").unwrap().0, vec![1, 2, 3]);
        assert_eq!(parse_levels("1,2, 2:8:2").unwrap().0, vec![1, 2, 4, 6, 8]);
        for bad in ["", "0", "1,,2", "4:2", "1:8:0", "1:2:3:4", "a", "1:1000000"] {
            let e = parse_levels(bad).unwrap_err().to_string();
            assert!(e.contains("concurrency"), "{bad}: {e}");
        }
    }

    proptest::proptest! {
        #[test]
        fn level_lists_never_panic_and_hold_positive_distinct_levels(s in "[0-9:, ]{0,12}") {
            if let Ok(Levels(levels)) = parse_levels(&s) {
                proptest::prop_assert!(!levels.is_empty());
                proptest::prop_assert!(levels.iter().all(|&l| l >= 1));
                let mut d = levels.clone();
                d.sort_unstable();
                d.dedup();
                proptest::prop_assert_eq!(d.len(), levels.len());
            }
        }

        #[test]
        fn durations_never_panic(s in "[0-9.a-zµ ]{0,8}") {
            let _ = parse_duration(&s);
        }
    }
}
