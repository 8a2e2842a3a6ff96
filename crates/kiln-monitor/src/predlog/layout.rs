//! Where the prediction log's files go in the artifact store:
//! `predictions/deployment=NAME/date=YYYY-MM-DD/hour=HH/part-YYYYMMDDTHHMMSSmmmZ-UUID.parquet`
//! (Hive-style partitions, so Spark, DuckDB or Polars read the tree as one table with
//! `deployment`, `date` and `hour` columns). Dates and hours are UTC.

/// The folder under the store's root that holds every deployment's log.
pub const ROOT: &str = "predictions";

/// A deployment name as a partition value: letters, digits, `.`, `_` and `-` stay; every
/// other byte is `%XX` (as Hive escapes partition values).
pub fn encode_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    // `.` and `..` alone are not valid path parts.
    if out.chars().all(|c| c == '.') {
        return out.replace('.', "%2E");
    }
    out
}

/// Days since 1970-01-01 as (year, month, day), proleptic Gregorian (Howard Hinnant's
/// `civil_from_days`).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// (year, month, day) as days since 1970-01-01.
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

const MS_PER_HOUR: i64 = 3_600_000;
const HOURS_PER_DAY: i64 = 24;

/// The hour (since the epoch) a time in milliseconds falls in.
pub fn hour_of_ms(ms: i64) -> i64 {
    ms.div_euclid(MS_PER_HOUR)
}

/// `date=YYYY-MM-DD/hour=HH` of an hour since the epoch.
pub fn hour_partition(hour: i64) -> String {
    let (y, m, d) = civil_from_days(hour.div_euclid(HOURS_PER_DAY));
    format!(
        "date={y:04}-{m:02}-{d:02}/hour={:02}",
        hour.rem_euclid(HOURS_PER_DAY)
    )
}

/// `predictions/deployment=NAME`.
pub fn deployment_dir(deployment: &str) -> String {
    format!("{ROOT}/deployment={}", encode_name(deployment))
}

/// `YYYYMMDDTHHMMSSmmmZ` of a time in milliseconds.
pub fn stamp(ms: i64) -> String {
    let (y, mo, d) = civil_from_days(ms.div_euclid(86_400_000));
    let in_day = ms.rem_euclid(86_400_000);
    format!(
        "{y:04}{mo:02}{d:02}T{:02}{:02}{:02}{:03}Z",
        in_day / 3_600_000,
        in_day / 60_000 % 60,
        in_day / 1_000 % 60,
        in_day % 1_000
    )
}

/// The path of a new part file: unique (a random UUID), so a restarted writer never replaces
/// what an earlier one wrote.
pub fn part_path(deployment: &str, hour: i64, now_ms: i64) -> String {
    format!(
        "{}/{}/part-{}-{}.parquet",
        deployment_dir(deployment),
        hour_partition(hour),
        stamp(now_ms),
        uuid::Uuid::new_v4()
    )
}

/// The day (since the epoch) of a `date=YYYY-MM-DD` folder name.
pub fn parse_date_dir(name: &str) -> Option<i64> {
    let v = name.strip_prefix("date=")?;
    let mut it = v.split('-');
    let (y, m, d) = (it.next()?, it.next()?, it.next()?);
    if it.next().is_some() || y.len() != 4 || m.len() != 2 || d.len() != 2 {
        return None;
    }
    let (y, m, d): (i64, u32, u32) = (y.parse().ok()?, m.parse().ok()?, d.parse().ok()?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    Some(days_from_civil(y, m, d))
}

/// The hour of day of an `hour=HH` folder name.
pub fn parse_hour_dir(name: &str) -> Option<i64> {
    let h: i64 = name.strip_prefix("hour=")?.parse().ok()?;
    (0..HOURS_PER_DAY).contains(&h).then_some(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates_round_trip_and_match_known_days() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
        for d in (-800_000..800_000).step_by(97) {
            let (y, m, dd) = civil_from_days(d);
            assert_eq!(days_from_civil(y, m, dd), d);
        }
    }

    #[test]
    fn partitions_and_stamps_are_utc() {
        // 2026-11-29 23:59:59.999 UTC, then one millisecond later.
        let t = days_from_civil(2026, 11, 29) * 86_400_000 + 86_399_999;
        assert_eq!(hour_partition(hour_of_ms(t)), "date=2026-11-29/hour=23");
        assert_eq!(hour_partition(hour_of_ms(t + 1)), "date=2026-11-30/hour=00");
        assert_eq!(stamp(t), "20261129T235959999Z");
        assert_eq!(hour_partition(hour_of_ms(-1)), "date=1969-12-31/hour=23");
        let p = part_path("gb", hour_of_ms(t), t);
        assert!(
            p.starts_with(
                "predictions/deployment=gb/date=2026-11-29/hour=23/part-20261129T235959999Z-"
            ),
            "{p}"
        );
        assert!(p.ends_with(".parquet"));
        assert_ne!(p, part_path("gb", hour_of_ms(t), t));
        assert_eq!(
            parse_date_dir("date=2026-11-30"),
            Some(days_from_civil(2026, 11, 30))
        );
        assert_eq!(parse_date_dir("date=2026-13-01"), None);
        assert_eq!(parse_date_dir("hour=01"), None);
        assert_eq!(parse_hour_dir("hour=07"), Some(7));
        assert_eq!(parse_hour_dir("hour=24"), None);
    }

    #[test]
    fn names_are_escaped_for_paths() {
        assert_eq!(encode_name("flight-delay_v2.1"), "flight-delay_v2.1");
        assert_eq!(encode_name("a/b c"), "a%2Fb%20c");
        assert_eq!(encode_name(".."), "%2E%2E");
        assert_eq!(encode_name("é"), "%C3%A9");
    }
}
