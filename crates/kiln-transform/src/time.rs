//! Calendar arithmetic on Kiln's date and timestamp encodings, with plain integers: a date is
//! the number of days since 1970-01-01, a timestamp the number of microseconds since
//! 1970-01-01 00:00:00 (naive, read as UTC). The civil-date conversions are Howard Hinnant's
//! `days_from_civil` / `civil_from_days` (proleptic Gregorian calendar), the same calendar
//! chrono and Polars use.

pub const MICROS_PER_SECOND: i64 = 1_000_000;
pub const MICROS_PER_MINUTE: i64 = 60 * MICROS_PER_SECOND;
pub const MICROS_PER_HOUR: i64 = 60 * MICROS_PER_MINUTE;
pub const MICROS_PER_DAY: i64 = 24 * MICROS_PER_HOUR;

/// Days since 1970-01-01 of a civil date; `month` is 1..=12, `day` 1..=31.
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400; // [0, 399]
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1; // [0, 365]
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy; // [0, 146096]
    era * 146_097 + doe - 719_468
}

/// The civil date (year, month 1..=12, day 1..=31) of a day count since 1970-01-01.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097; // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11]
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32; // [1, 31]
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32; // [1, 12]
    (if m <= 2 { y + 1 } else { y }, m, d)
}

pub fn is_leap_year(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

pub fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap_year(year) => 29,
        2 => 28,
        _ => 0,
    }
}

/// ISO day of the week: Monday = 1 … Sunday = 7 (1970-01-01 was a Thursday).
pub fn weekday(days: i64) -> u32 {
    ((days + 3).rem_euclid(7) + 1) as u32
}

/// Day of the year, 1..=366.
pub fn ordinal(days: i64) -> u32 {
    let (y, _, _) = civil_from_days(days);
    (days - days_from_civil(y, 1, 1) + 1) as u32
}

/// Splits a timestamp into its day and its microseconds into that day.
pub fn split_timestamp(micros: i64) -> (i64, i64) {
    (
        micros.div_euclid(MICROS_PER_DAY),
        micros.rem_euclid(MICROS_PER_DAY),
    )
}

/// Parses `YYYY-MM-DD` (a four-digit year). Anything else, or an impossible date, is `None`.
pub fn parse_date(text: &str) -> Option<i32> {
    let (days, rest) = parse_date_prefix(text.trim())?;
    if !rest.is_empty() {
        return None;
    }
    i32::try_from(days).ok()
}

/// Parses an ISO 8601 timestamp: `YYYY-MM-DD`, then optionally `T` or a space and
/// `HH:MM[:SS[.fraction]]`, then optionally `Z` or an offset `±HH[:MM]` (the value is converted
/// to UTC). Digits of the fraction beyond microseconds are dropped (truncated).
pub fn parse_timestamp(text: &str) -> Option<i64> {
    let (days, rest) = parse_date_prefix(text.trim())?;
    let mut micros = days.checked_mul(MICROS_PER_DAY)?;
    if rest.is_empty() {
        return Some(micros);
    }
    let rest = rest
        .strip_prefix('T')
        .or_else(|| rest.strip_prefix('t'))
        .or_else(|| rest.strip_prefix(' '))?;
    let b = rest.as_bytes();
    let hour = two_digits(b, 0)?;
    if b.get(2) != Some(&b':') {
        return None;
    }
    let minute = two_digits(b, 3)?;
    let mut i = 5;
    let mut second = 0;
    let mut frac = 0i64;
    if b.get(i) == Some(&b':') {
        second = two_digits(b, i + 1)?;
        i += 3;
        if b.get(i) == Some(&b'.') || b.get(i) == Some(&b',') {
            i += 1;
            let start = i;
            while i < b.len() && b[i].is_ascii_digit() {
                if i - start < 6 {
                    frac = frac * 10 + i64::from(b[i] - b'0');
                }
                i += 1;
            }
            let digits = i - start;
            if digits == 0 {
                return None;
            }
            for _ in digits..6 {
                frac *= 10;
            }
        }
    }
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    micros += i64::from(hour) * MICROS_PER_HOUR
        + i64::from(minute) * MICROS_PER_MINUTE
        + i64::from(second) * MICROS_PER_SECOND
        + frac;
    let zone = &rest[i..];
    let offset_minutes = match zone.as_bytes() {
        [] | [b'Z'] | [b'z'] => 0,
        [sign @ (b'+' | b'-'), tail @ ..] => {
            let (h, m) = match tail {
                [_, _] => (two_digits(tail, 0)?, 0),
                [_, _, b':', _, _] => (two_digits(tail, 0)?, two_digits(tail, 3)?),
                [_, _, _, _] => (two_digits(tail, 0)?, two_digits(tail, 2)?),
                _ => return None,
            };
            if h > 23 || m > 59 {
                return None;
            }
            let minutes = i64::from(h) * 60 + i64::from(m);
            if *sign == b'+' { minutes } else { -minutes }
        }
        _ => return None,
    };
    micros.checked_sub(offset_minutes * MICROS_PER_MINUTE)
}

fn two_digits(b: &[u8], at: usize) -> Option<u32> {
    let hi = *b.get(at)?;
    let lo = *b.get(at + 1)?;
    if hi.is_ascii_digit() && lo.is_ascii_digit() {
        Some(u32::from(hi - b'0') * 10 + u32::from(lo - b'0'))
    } else {
        None
    }
}

/// Reads `YYYY-MM-DD` at the start of `text` (or an expanded year: a sign and at least four
/// digits, `-0001-03-01`, `+12345-01-01`); returns the day count and the rest.
fn parse_date_prefix(text: &str) -> Option<(i64, &str)> {
    let b = text.as_bytes();
    let (negative, digits_start) = match b.first()? {
        b'+' => (false, 1),
        b'-' => (true, 1),
        _ => (false, 0),
    };
    let digits = b[digits_start..]
        .iter()
        .take_while(|c| c.is_ascii_digit())
        .count();
    let year_end = digits_start + digits;
    if digits < 4 || (digits_start == 0 && digits != 4) || digits > 9 {
        return None;
    }
    let rest = &b[year_end..];
    if rest.len() < 6 || rest[0] != b'-' || rest[3] != b'-' {
        return None;
    }
    let mut year: i64 = text[digits_start..year_end].parse().ok()?;
    if negative {
        year = -year;
    }
    let month = two_digits(rest, 1)?;
    let day = two_digits(rest, 4)?;
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    Some((days_from_civil(year, month, day), &text[year_end + 6..]))
}

/// `YYYY-MM-DD`; years outside 0..=9999 are written with their sign and at least four digits
/// (ISO 8601's expanded years), which [`parse_date`] reads back.
pub fn format_date(days: i32) -> String {
    let (y, m, d) = civil_from_days(i64::from(days));
    if (0..=9999).contains(&y) {
        format!("{y:04}-{m:02}-{d:02}")
    } else {
        format!("{y:+05}-{m:02}-{d:02}")
    }
}

/// `YYYY-MM-DD HH:MM:SS`, with `.ffffff` when the microseconds are not zero.
pub fn format_timestamp(micros: i64) -> String {
    let (days, tod) = split_timestamp(micros);
    // A day count of an i64 timestamp always fits in an i32.
    let date = format_date(days as i32);
    let h = tod / MICROS_PER_HOUR;
    let mi = tod % MICROS_PER_HOUR / MICROS_PER_MINUTE;
    let s = tod % MICROS_PER_MINUTE / MICROS_PER_SECOND;
    let us = tod % MICROS_PER_SECOND;
    if us == 0 {
        format!("{date} {h:02}:{mi:02}:{s:02}")
    } else {
        format!("{date} {h:02}:{mi:02}:{s:02}.{us:06}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_round_trip() {
        for days in (-800_000..800_000).step_by(37) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days, "{y}-{m}-{d}");
        }
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(days_from_civil(2013, 1, 1), 15706);
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(civil_from_days(11016), (2000, 2, 29));
    }

    #[test]
    fn weekdays_and_ordinals() {
        assert_eq!(weekday(0), 4); // Thursday
        assert_eq!(weekday(days_from_civil(2013, 1, 1)), 2); // Tuesday
        assert_eq!(weekday(days_from_civil(2024, 6, 2)), 7); // Sunday
        assert_eq!(weekday(days_from_civil(2024, 6, 3)), 1); // Monday
        assert_eq!(weekday(-1), 3);
        assert_eq!(ordinal(days_from_civil(2012, 12, 31)), 366);
        assert_eq!(ordinal(days_from_civil(2013, 12, 31)), 365);
        assert_eq!(ordinal(days_from_civil(1969, 1, 1)), 1);
    }

    #[test]
    fn parses_dates() {
        assert_eq!(parse_date("2013-01-01"), Some(15706));
        assert_eq!(parse_date(" 2013-01-01 "), Some(15706));
        assert_eq!(parse_date("2013-02-29"), None);
        assert_eq!(parse_date("2012-02-29"), Some(15399));
        assert_eq!(parse_date("2013-1-01"), None);
        assert_eq!(parse_date("2013-01-01 00:00:00"), None);
        assert_eq!(parse_date(""), None);
        assert_eq!(parse_date("2013-13-01"), None);
    }

    #[test]
    fn parses_timestamps() {
        let base = 15706 * MICROS_PER_DAY + 5 * MICROS_PER_HOUR;
        assert_eq!(parse_timestamp("2013-01-01 05:00:00"), Some(base));
        assert_eq!(parse_timestamp("2013-01-01T05:00:00"), Some(base));
        assert_eq!(parse_timestamp("2013-01-01T05:00:00Z"), Some(base));
        assert_eq!(parse_timestamp("2013-01-01T05:00"), Some(base));
        assert_eq!(parse_timestamp("2013-01-01T07:00:00+02:00"), Some(base));
        assert_eq!(parse_timestamp("2013-01-01T04:30:00-0030"), Some(base));
        assert_eq!(
            parse_timestamp("2013-01-01T05:00:00.5"),
            Some(base + 500_000)
        );
        assert_eq!(
            parse_timestamp("2013-01-01T05:00:00.1234569"),
            Some(base + 123_456)
        );
        assert_eq!(parse_timestamp("2013-01-01"), Some(15706 * MICROS_PER_DAY));
        assert_eq!(parse_timestamp("2013-01-01 24:00:00"), None);
        assert_eq!(parse_timestamp("2013-01-01 05:00:00 UTC"), None);
        assert_eq!(parse_timestamp("2013-01-01 05"), None);
        assert_eq!(parse_timestamp("2013-01-01 05:00:00."), None);
        assert_eq!(
            parse_timestamp("1969-12-31 23:59:59"),
            Some(-MICROS_PER_SECOND)
        );
    }

    #[test]
    fn formats() {
        assert_eq!(format_date(15706), "2013-01-01");
        assert_eq!(format_date(-1), "1969-12-31");
        for days in [-719_529, -800_000, 2_932_897, i32::MIN, i32::MAX] {
            let text = format_date(days);
            assert_eq!(parse_date(&text), Some(days), "{text}");
        }
        assert_eq!(format_date(-719_529), "-0001-12-31");
        assert_eq!(
            format_timestamp(15706 * MICROS_PER_DAY + 5 * MICROS_PER_HOUR),
            "2013-01-01 05:00:00"
        );
        assert_eq!(format_timestamp(-1), "1969-12-31 23:59:59.999999");
        for t in ["2013-01-01 05:00:00", "1900-03-04 01:02:03.000004"] {
            assert_eq!(format_timestamp(parse_timestamp(t).unwrap()), t);
        }
    }
}
