//! Reading datasets: types, digests, and the errors bad files get.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use kiln_data::config::{DatasetConfig, Format};
use kiln_data::{DataError, read_dataset};
use kiln_transform::DType;

fn repo_data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../data/nycflights13")
        .join(name)
}

fn cfg(source: &str) -> DatasetConfig {
    DatasetConfig {
        source: source.to_string(),
        format: None,
        description: None,
        schema: BTreeMap::new(),
        csv: Default::default(),
        expect: vec![],
    }
}

fn write(dir: &Path, name: &str, text: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn reads_the_bundled_flights_zip_with_inferred_types() {
    let path = repo_data("flights.csv.zip");
    let t = std::time::Instant::now();
    let table = read_dataset(&cfg("flights.csv.zip"), &path, "flights.csv.zip").unwrap();
    eprintln!("read flights in {:?}", t.elapsed());
    assert_eq!(table.rows(), 336_776);
    assert_eq!(table.df.width(), 19);
    assert_eq!(table.dtype_of("year"), Some(DType::Int));
    assert_eq!(table.dtype_of("dep_delay"), Some(DType::Int));
    assert_eq!(table.dtype_of("carrier"), Some(DType::String));
    assert_eq!(table.dtype_of("time_hour"), Some(DType::Timestamp));
    assert_eq!(table.digest.len(), 64);
    // NA cells are missing values.
    assert_eq!(table.df.column("dep_time").unwrap().null_count(), 8255);
}

#[test]
fn reads_weather_with_overrides() {
    let mut c = cfg("weather.csv");
    c.schema.insert("origin".into(), DType::Categorical);
    c.schema.insert("wind_dir".into(), DType::Float);
    c.schema.insert("time_hour".into(), DType::Timestamp);
    let table = read_dataset(&c, &repo_data("weather.csv"), "weather.csv").unwrap();
    assert_eq!(table.rows(), 26_115);
    assert_eq!(table.dtype_of("origin"), Some(DType::Categorical));
    assert_eq!(table.dtype_of("wind_dir"), Some(DType::Float));
    assert_eq!(table.dtype_of("time_hour"), Some(DType::Timestamp));
    let th = table.df.column("time_hour").unwrap();
    assert_eq!(
        th.dtype(),
        &polars::prelude::DataType::Datetime(polars::prelude::TimeUnit::Microseconds, None)
    );
    // 2013-01-01T06:00:00Z as naive UTC microseconds.
    let first = th.datetime().unwrap().physical().get(0).unwrap();
    assert_eq!(first, 1_357_020_000_000_000);
}

#[test]
fn digest_is_stable_and_changes_with_one_byte() {
    let dir = tempfile::tempdir().unwrap();
    let a = write(dir.path(), "a.csv", b"x,y\n1,2\n3,4\n");
    let b = write(dir.path(), "b.csv", b"x,y\n1,2\n3,5\n");
    let ta1 = read_dataset(&cfg("a.csv"), &a, "a.csv").unwrap();
    let ta2 = read_dataset(&cfg("a.csv"), &a, "a.csv").unwrap();
    let tb = read_dataset(&cfg("b.csv"), &b, "b.csv").unwrap();
    assert_eq!(ta1.digest, ta2.digest);
    assert_ne!(ta1.digest, tb.digest);
}

#[test]
fn gzip_and_parquet_round_trip() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let text = b"id,score,ok,day\n1,0.5,true,2024-01-02\n2,,false,2024-01-03\n";
    let gz = dir.path().join("t.csv.gz");
    let mut enc = flate2::write::GzEncoder::new(
        std::fs::File::create(&gz).unwrap(),
        flate2::Compression::default(),
    );
    enc.write_all(text).unwrap();
    enc.finish().unwrap();
    let t = read_dataset(&cfg("t.csv.gz"), &gz, "t.csv.gz").unwrap();
    assert_eq!(t.rows(), 2);
    assert_eq!(t.dtype_of("ok"), Some(DType::Bool));
    assert_eq!(t.dtype_of("day"), Some(DType::Date));
    assert_eq!(t.dtype_of("score"), Some(DType::Float));

    let pq = dir.path().join("t.parquet");
    let mut df = t.df.clone();
    polars::prelude::ParquetWriter::new(std::fs::File::create(&pq).unwrap())
        .finish(&mut df)
        .unwrap();
    let mut c = cfg("t.parquet");
    c.format = Some(Format::Parquet);
    let p = read_dataset(&c, &pq, "t.parquet").unwrap();
    assert!(p.df.equals_missing(&t.df));
    assert_eq!(p.schema, t.schema);
}

fn err_of(text: &[u8], c: DatasetConfig) -> String {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "bad.csv", text);
    match read_dataset(&c, &p, "bad.csv") {
        Ok(t) => panic!("expected an error, read {} rows", t.rows()),
        Err(e) => {
            let s = e.to_string();
            assert!(s.contains("bad.csv"), "error does not name the file: {s}");
            s
        }
    }
}

#[test]
fn ragged_rows_name_the_line() {
    let e = err_of(b"a,b,c\n1,2,3\n4,5\n6,7,8\n", cfg("bad.csv"));
    assert!(e.contains("bad.csv:3:"), "{e}");
    assert!(e.contains("expected 3 fields"), "{e}");
    let e = err_of(b"a,b\n1,2\n3,4\n5,6,7\n", cfg("bad.csv"));
    assert!(e.contains("bad.csv:4:"), "{e}");
}

#[test]
fn wrong_types_name_line_column_and_value() {
    let mut c = cfg("bad.csv");
    c.schema.insert("n".into(), DType::Int);
    let e = err_of(b"s,n\nx,1\ny,2\nz,abc\n", c);
    assert!(e.contains("bad.csv:4:"), "{e}");
    assert!(e.contains("column `n`"), "{e}");
    assert!(e.contains("\"abc\" is not a valid int"), "{e}");

    let mut c = cfg("bad.csv");
    c.schema.insert("when".into(), DType::Timestamp);
    let e = err_of(
        b"when\n2024-01-01 00:00:00\n\"quoted\nline\"\nnot-a-time\n",
        c,
    );
    assert!(e.contains("column `when`"), "{e}");
    assert!(e.contains(":3:"), "{e}");
}

#[test]
fn bad_encoding_names_line_and_column() {
    let e = err_of(b"a,b\n1,ok\n2,caf\xe9\n", cfg("bad.csv"));
    assert!(e.contains("bad.csv:3:"), "{e}");
    assert!(e.contains("column `b`"), "{e}");
    assert!(e.contains("UTF-8"), "{e}");
}

#[test]
fn empty_missing_and_duplicate_columns() {
    let e = err_of(b"", cfg("bad.csv"));
    assert!(e.contains("empty"), "{e}");
    let e = err_of(b"a,b,a\n1,2,3\n", cfg("bad.csv"));
    assert!(e.contains("`a` appears twice"), "{e}");
    assert!(e.contains("columns 1 and 3"), "{e}");
    let e = err_of(b"a,,c\n1,2,3\n", cfg("bad.csv"));
    assert!(e.contains("empty column name"), "{e}");
    let mut c = cfg("bad.csv");
    c.schema.insert("missing".into(), DType::Int);
    let e = err_of(b"a,b\n1,2\n", c);
    assert!(e.contains("no column `missing`"), "{e}");
    assert!(e.contains("columns: a, b"), "{e}");
}

#[test]
fn header_only_file_reads_as_zero_rows() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "h.csv", b"a,b\n");
    let t = read_dataset(&cfg("h.csv"), &p, "h.csv").unwrap();
    assert_eq!(t.rows(), 0);
    assert_eq!(t.df.width(), 2);
}

#[test]
fn not_parquet_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "x.parquet", b"this is not parquet");
    let e = read_dataset(&cfg("x.parquet"), &p, "x.parquet").unwrap_err();
    assert!(matches!(e, DataError::Format { .. }), "{e}");
    assert!(e.to_string().contains("x.parquet"), "{e}");
}

/// Timestamps ending in `Z` take a fast naive parse; values with other offsets, in the same
/// column or first in it, still convert to naive UTC, and a bad one is still named by line.
#[test]
fn utc_and_offset_timestamps_read_as_naive_utc() {
    let dir = tempfile::tempdir().unwrap();
    let read = |text: &[u8]| {
        let p = write(dir.path(), "t.csv", text);
        let mut c = cfg("t.csv");
        c.schema.insert("when".into(), DType::Timestamp);
        read_dataset(&c, &p, "t.csv")
    };
    let micros = |t: &kiln_data::read::Table| -> Vec<Option<i64>> {
        let c = t.df.column("when").unwrap();
        assert_eq!(
            c.dtype(),
            &polars::prelude::DataType::Datetime(polars::prelude::TimeUnit::Microseconds, None)
        );
        c.datetime().unwrap().physical().iter().collect()
    };
    let h = 3_600_000_000i64;
    let jan1 = 1_356_998_400_000_000i64; // 2013-01-01T00:00:00Z
    let t = read(b"when,n\n2013-01-01T10:00:00Z,1\n2013-01-01T12:30:00+02:00,2\n,3\n2013-01-02T00:00:00Z,4\n")
        .unwrap();
    assert_eq!(
        micros(&t),
        vec![
            Some(jan1 + 10 * h),
            Some(jan1 + 10 * h + h / 2),
            None,
            Some(jan1 + 24 * h)
        ]
    );
    let t = read(b"when\n2013-01-01T12:30:00+02:00\n2013-01-01T10:00:00Z\n").unwrap();
    assert_eq!(
        micros(&t),
        vec![Some(jan1 + 10 * h + h / 2), Some(jan1 + 10 * h)]
    );
    let e = read(b"when\n2013-01-01T10:00:00Z\n2013-01-01T11:00:00Z\nsoon\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("t.csv:4:") && e.contains("column `when`"), "{e}");
}

/// Without overrides, text columns whose values are all dates or all timestamps are read as
/// such; a column with one value that is not a date stays text.
#[test]
fn dates_and_timestamps_are_inferred_per_column() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "d.csv",
        b"d,t,z,mixed,tail\n2024-01-02,2024-01-02 03:04:05,2024-01-02T03:04:05Z,2024-01-02,N14228\n\
          2024-02-29,2024-02-29 23:59:59,2024-02-29T23:59:59Z,soon,N24211\n,,,,\n",
    );
    let t = read_dataset(&cfg("d.csv"), &p, "d.csv").unwrap();
    assert_eq!(t.dtype_of("d"), Some(DType::Date));
    assert_eq!(t.dtype_of("t"), Some(DType::Timestamp));
    assert_eq!(t.dtype_of("z"), Some(DType::Timestamp));
    assert_eq!(t.dtype_of("mixed"), Some(DType::String));
    assert_eq!(t.dtype_of("tail"), Some(DType::String));
    assert_eq!(t.df.column("t").unwrap().null_count(), 1);
}
