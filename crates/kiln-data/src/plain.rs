//! Plain-Rust tables for crates that must not depend on Polars (the prediction log, drift
//! windows): a [`PlainTable`] of named, typed, nullable columns, written to and read from
//! Parquet here, where Polars lives.
//!
//! Timestamps are microseconds since the Unix epoch and are written as Parquet timestamps
//! adjusted to UTC (`Datetime(µs, UTC)`); any Parquet timestamp reads back as microseconds
//! since the epoch (UTC). Dates are days since 1970-01-01. Lists hold one plain column per
//! row, all of one scalar type.

use std::io::Cursor;

use polars::prelude::*;

use crate::error::{DataError, Result};

/// One column's values, one per row (`None`: null).
#[derive(Debug, Clone, PartialEq)]
pub enum PlainColumn {
    F64(Vec<Option<f64>>),
    I64(Vec<Option<i64>>),
    Bool(Vec<Option<bool>>),
    Str(Vec<Option<String>>),
    /// Days since 1970-01-01.
    Date(Vec<Option<i32>>),
    /// Microseconds since 1970-01-01 00:00:00 UTC.
    Timestamp(Vec<Option<i64>>),
    /// A list per row; every present list is a scalar column of the same variant.
    List(Vec<Option<PlainColumn>>),
}

impl PlainColumn {
    pub fn len(&self) -> usize {
        match self {
            PlainColumn::F64(v) => v.len(),
            PlainColumn::I64(v) => v.len(),
            PlainColumn::Bool(v) => v.len(),
            PlainColumn::Str(v) => v.len(),
            PlainColumn::Date(v) => v.len(),
            PlainColumn::Timestamp(v) => v.len(),
            PlainColumn::List(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The variant's name (`f64`, `i64`, `bool`, `str`, `date`, `timestamp`, `list`).
    pub fn kind(&self) -> &'static str {
        match self {
            PlainColumn::F64(_) => "f64",
            PlainColumn::I64(_) => "i64",
            PlainColumn::Bool(_) => "bool",
            PlainColumn::Str(_) => "str",
            PlainColumn::Date(_) => "date",
            PlainColumn::Timestamp(_) => "timestamp",
            PlainColumn::List(_) => "list",
        }
    }

    /// An all-null column of the same variant with `n` rows.
    pub fn nulls_like(&self, n: usize) -> PlainColumn {
        match self {
            PlainColumn::F64(_) => PlainColumn::F64(vec![None; n]),
            PlainColumn::I64(_) => PlainColumn::I64(vec![None; n]),
            PlainColumn::Bool(_) => PlainColumn::Bool(vec![None; n]),
            PlainColumn::Str(_) => PlainColumn::Str(vec![None; n]),
            PlainColumn::Date(_) => PlainColumn::Date(vec![None; n]),
            PlainColumn::Timestamp(_) => PlainColumn::Timestamp(vec![None; n]),
            PlainColumn::List(_) => PlainColumn::List(vec![None; n]),
        }
    }

    /// The rows at `idx`, in that order.
    pub fn take(&self, idx: &[usize]) -> PlainColumn {
        fn pick<T: Clone>(v: &[T], idx: &[usize]) -> Vec<T> {
            idx.iter().map(|&i| v[i].clone()).collect()
        }
        match self {
            PlainColumn::F64(v) => PlainColumn::F64(pick(v, idx)),
            PlainColumn::I64(v) => PlainColumn::I64(pick(v, idx)),
            PlainColumn::Bool(v) => PlainColumn::Bool(pick(v, idx)),
            PlainColumn::Str(v) => PlainColumn::Str(pick(v, idx)),
            PlainColumn::Date(v) => PlainColumn::Date(pick(v, idx)),
            PlainColumn::Timestamp(v) => PlainColumn::Timestamp(pick(v, idx)),
            PlainColumn::List(v) => PlainColumn::List(pick(v, idx)),
        }
    }

    /// Appends `other`'s rows. Columns of different variants combine when one widens to the
    /// other: i64 into f64; anything else is an error naming both kinds.
    pub fn append(&mut self, other: PlainColumn) -> Result<()> {
        match (&mut *self, other) {
            (PlainColumn::F64(a), PlainColumn::F64(b)) => a.extend(b),
            (PlainColumn::I64(a), PlainColumn::I64(b)) => a.extend(b),
            (PlainColumn::Bool(a), PlainColumn::Bool(b)) => a.extend(b),
            (PlainColumn::Str(a), PlainColumn::Str(b)) => a.extend(b),
            (PlainColumn::Date(a), PlainColumn::Date(b)) => a.extend(b),
            (PlainColumn::Timestamp(a), PlainColumn::Timestamp(b)) => a.extend(b),
            (PlainColumn::List(a), PlainColumn::List(b)) => a.extend(b),
            (PlainColumn::F64(a), PlainColumn::I64(b)) => {
                a.extend(b.into_iter().map(|x| x.map(|x| x as f64)));
            }
            (PlainColumn::I64(a), PlainColumn::F64(b)) => {
                let mut wide: Vec<Option<f64>> = a.iter().map(|x| x.map(|x| x as f64)).collect();
                wide.extend(b);
                *self = PlainColumn::F64(wide);
            }
            (a, b) => {
                return Err(DataError::config(format!(
                    "cannot combine a {} column with a {} column",
                    a.kind(),
                    b.kind()
                )));
            }
        }
        Ok(())
    }
}

/// Named columns of equal length.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PlainTable {
    pub columns: Vec<(String, PlainColumn)>,
}

impl PlainTable {
    /// Rows (the first column's length; 0 without columns).
    pub fn height(&self) -> usize {
        self.columns.first().map_or(0, |(_, c)| c.len())
    }

    pub fn column(&self, name: &str) -> Option<&PlainColumn> {
        self.columns.iter().find(|(n, _)| n == name).map(|(_, c)| c)
    }

    pub fn names(&self) -> Vec<&str> {
        self.columns.iter().map(|(n, _)| n.as_str()).collect()
    }

    /// Checks that the columns have equal lengths and distinct names.
    pub fn check(&self) -> Result<()> {
        let h = self.height();
        for (i, (name, c)) in self.columns.iter().enumerate() {
            if c.len() != h {
                return Err(DataError::config(format!(
                    "column `{name}` has {} rows, the table {h}",
                    c.len()
                )));
            }
            if self.columns[..i].iter().any(|(n, _)| n == name) {
                return Err(DataError::config(format!("column `{name}` appears twice")));
            }
        }
        Ok(())
    }

    /// The rows at `idx`, in that order.
    pub fn take(&self, idx: &[usize]) -> PlainTable {
        PlainTable {
            columns: self
                .columns
                .iter()
                .map(|(n, c)| (n.clone(), c.take(idx)))
                .collect(),
        }
    }

    /// Stacks tables: the result has every column of any of them (in order of first
    /// appearance), null where a table lacks it; i64 and f64 columns of one name become f64.
    pub fn concat(tables: Vec<PlainTable>) -> Result<PlainTable> {
        let mut out = PlainTable::default();
        let mut height = 0usize;
        for t in tables {
            t.check()?;
            let h = t.height();
            let mut seen = vec![false; out.columns.len()];
            for (name, c) in t.columns {
                match out.columns.iter().position(|(n, _)| *n == name) {
                    Some(i) => {
                        seen[i] = true;
                        out.columns[i]
                            .1
                            .append(c)
                            .map_err(|e| DataError::config(format!("column `{name}`: {e}")))?;
                    }
                    None => {
                        let mut filled = c.nulls_like(height);
                        filled.append(c)?;
                        out.columns.push((name, filled));
                    }
                }
            }
            for (i, was) in seen.into_iter().enumerate() {
                if !was {
                    let pad = out.columns[i].1.nulls_like(h);
                    out.columns[i].1.append(pad)?;
                }
            }
            height += h;
        }
        Ok(out)
    }
}

fn series(name: &str, c: &PlainColumn) -> Result<Series> {
    let name: PlSmallStr = name.into();
    Ok(match c {
        PlainColumn::F64(v) => Series::new(name, v),
        PlainColumn::I64(v) => Series::new(name, v),
        PlainColumn::Bool(v) => Series::new(name, v),
        PlainColumn::Str(v) => Series::new(name, v),
        PlainColumn::Date(v) => Series::new(name, v).into_date(),
        PlainColumn::Timestamp(v) => {
            Series::new(name, v).into_datetime(TimeUnit::Microseconds, Some(TimeZone::UTC))
        }
        PlainColumn::List(v) => {
            let inner = v.iter().flatten().next();
            if let Some(PlainColumn::List(_)) = inner {
                return Err(DataError::config(format!(
                    "column `{name}`: lists of lists are not supported"
                )));
            }
            if let Some(first) = inner
                && let Some(other) = v.iter().flatten().find(|c| c.kind() != first.kind())
            {
                return Err(DataError::config(format!(
                    "column `{name}` holds {} and {} lists",
                    first.kind(),
                    other.kind()
                )));
            }
            let items: Vec<Option<Series>> = v
                .iter()
                .map(|x| x.as_ref().map(|c| series("", c)).transpose())
                .collect::<Result<_>>()?;
            let mut ca: ListChunked = items.into_iter().collect();
            ca.rename(name);
            ca.into_series()
        }
    })
}

/// The table as a Polars frame (for code inside `kiln-data`, e.g. drift statistics).
pub fn to_frame(t: &PlainTable) -> Result<DataFrame> {
    t.check()?;
    let cols: Vec<Column> = t
        .columns
        .iter()
        .map(|(n, c)| series(n, c).map(Column::from))
        .collect::<Result<_>>()?;
    Ok(DataFrame::new(t.height(), cols)?)
}

fn plain(s: &Series) -> Result<PlainColumn> {
    let unsupported = || {
        DataError::config(format!(
            "column `{}` has type {}, which a plain table cannot hold",
            s.name(),
            s.dtype()
        ))
    };
    Ok(match s.dtype() {
        DataType::Float32 | DataType::Float64 => {
            PlainColumn::F64(s.cast(&DataType::Float64)?.f64()?.iter().collect())
        }
        DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32 => PlainColumn::I64(s.cast(&DataType::Int64)?.i64()?.iter().collect()),
        DataType::UInt64 => {
            PlainColumn::I64(s.strict_cast(&DataType::Int64)?.i64()?.iter().collect())
        }
        DataType::Boolean => PlainColumn::Bool(s.bool()?.iter().collect()),
        DataType::String => {
            PlainColumn::Str(s.str()?.iter().map(|x| x.map(str::to_string)).collect())
        }
        DataType::Categorical(_, _) | DataType::Enum(_, _) => PlainColumn::Str(
            s.cast(&DataType::String)?
                .str()?
                .iter()
                .map(|x| x.map(str::to_string))
                .collect(),
        ),
        DataType::Date => PlainColumn::Date(s.cast(&DataType::Int32)?.i32()?.iter().collect()),
        DataType::Datetime(_, tz) => {
            let us = s.cast(&DataType::Datetime(TimeUnit::Microseconds, tz.clone()))?;
            PlainColumn::Timestamp(us.cast(&DataType::Int64)?.i64()?.iter().collect())
        }
        DataType::Null => PlainColumn::Str(vec![None; s.len()]),
        DataType::List(inner) => {
            if matches!(**inner, DataType::List(_)) {
                return Err(unsupported());
            }
            let ca = s.list()?;
            let mut rows = Vec::with_capacity(s.len());
            for i in 0..ca.len() {
                // Items come out physical (a date as its days): back to the logical type.
                let item = ca.get_as_series(i).map(|x| x.cast(ca.inner_dtype()));
                rows.push(item.map(|x| plain(&x?)).transpose()?);
            }
            PlainColumn::List(rows)
        }
        _ => return Err(unsupported()),
    })
}

/// A Polars frame as a plain table.
pub fn from_frame(df: &DataFrame) -> Result<PlainTable> {
    let columns = df
        .columns()
        .iter()
        .map(|c| Ok((c.name().to_string(), plain(c.as_materialized_series())?)))
        .collect::<Result<_>>()?;
    Ok(PlainTable { columns })
}

/// How pages are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    None,
    Snappy,
    Lz4,
    /// Zstandard at its default level.
    #[default]
    Zstd,
}

/// How a Parquet file is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteOptions {
    pub compression: Compression,
    /// Min/max/null-count statistics per column chunk (readers use them to skip data).
    pub statistics: bool,
    /// Encode columns on Polars' thread pool; `false` keeps the work on the calling thread.
    pub parallel: bool,
}

impl Default for WriteOptions {
    fn default() -> Self {
        WriteOptions {
            compression: Compression::Zstd,
            statistics: true,
            parallel: true,
        }
    }
}

/// The table as one Parquet file (zstd-compressed), in memory.
pub fn to_parquet_bytes(t: &PlainTable) -> Result<Vec<u8>> {
    to_parquet_bytes_with(t, &WriteOptions::default())
}

/// The table as one Parquet file written with `options`, in memory.
pub fn to_parquet_bytes_with(t: &PlainTable, options: &WriteOptions) -> Result<Vec<u8>> {
    let mut df = to_frame(t)?;
    let mut out = Vec::new();
    let compression = match options.compression {
        Compression::None => ParquetCompression::Uncompressed,
        Compression::Snappy => ParquetCompression::Snappy,
        Compression::Lz4 => ParquetCompression::Lz4Raw,
        Compression::Zstd => ParquetCompression::Zstd(None),
    };
    let statistics = if options.statistics {
        StatisticsOptions::default()
    } else {
        StatisticsOptions::empty()
    };
    ParquetWriter::new(&mut out)
        .with_compression(compression)
        .with_statistics(statistics)
        .set_parallel(options.parallel)
        .finish(&mut df)?;
    Ok(out)
}

/// Reads a Parquet file held in memory.
pub fn from_parquet_bytes(bytes: &[u8]) -> Result<PlainTable> {
    let df = ParquetReader::new(Cursor::new(bytes)).finish()?;
    from_frame(&df)
}

/// Reads a Parquet file held in memory as a Polars frame.
pub fn read_parquet_frame(bytes: &[u8]) -> Result<DataFrame> {
    Ok(ParquetReader::new(Cursor::new(bytes)).finish()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> PlainTable {
        PlainTable {
            columns: vec![
                (
                    "f".into(),
                    PlainColumn::F64(vec![Some(1.5), None, Some(f64::NAN)]),
                ),
                (
                    "i".into(),
                    PlainColumn::I64(vec![Some(-3), Some(i64::MAX), None]),
                ),
                (
                    "b".into(),
                    PlainColumn::Bool(vec![None, Some(true), Some(false)]),
                ),
                (
                    "s".into(),
                    PlainColumn::Str(vec![Some("a".into()), None, Some("ü".into())]),
                ),
                (
                    "d".into(),
                    PlainColumn::Date(vec![Some(0), Some(19_000), None]),
                ),
                (
                    "t".into(),
                    PlainColumn::Timestamp(vec![Some(1_700_000_000_123_456), None, Some(-1)]),
                ),
                (
                    "l".into(),
                    PlainColumn::List(vec![
                        Some(PlainColumn::F64(vec![Some(0.25), None])),
                        None,
                        Some(PlainColumn::F64(vec![])),
                    ]),
                ),
            ],
        }
    }

    #[test]
    fn parquet_round_trip_keeps_every_type_and_null() {
        let t = sample();
        let bytes = to_parquet_bytes(&t).unwrap();
        assert_eq!(&bytes[..4], b"PAR1");
        let back = from_parquet_bytes(&bytes).unwrap();
        assert_eq!(back.names(), t.names());
        // NaN != NaN: compare the float column by bits.
        let (PlainColumn::F64(a), PlainColumn::F64(b)) =
            (back.column("f").unwrap(), t.column("f").unwrap())
        else {
            panic!("f is not f64");
        };
        let bits = |v: &Vec<Option<f64>>| v.iter().map(|x| x.map(f64::to_bits)).collect::<Vec<_>>();
        assert_eq!(bits(a), bits(b));
        for name in ["i", "b", "s", "d", "t", "l"] {
            assert_eq!(back.column(name), t.column(name), "{name}");
        }
        let df = read_parquet_frame(&bytes).unwrap();
        assert_eq!(
            df.column("t").unwrap().dtype(),
            &DataType::Datetime(TimeUnit::Microseconds, Some(TimeZone::UTC))
        );
    }

    #[test]
    fn concat_unions_columns_and_widens_ints() {
        let a = PlainTable {
            columns: vec![
                ("x".into(), PlainColumn::I64(vec![Some(1), Some(2)])),
                (
                    "only_a".into(),
                    PlainColumn::Str(vec![Some("p".into()), None]),
                ),
            ],
        };
        let b = PlainTable {
            columns: vec![
                ("x".into(), PlainColumn::F64(vec![Some(0.5)])),
                ("only_b".into(), PlainColumn::Bool(vec![Some(true)])),
            ],
        };
        let c = PlainTable::concat(vec![a, b]).unwrap();
        assert_eq!(c.height(), 3);
        assert_eq!(c.names(), ["x", "only_a", "only_b"]);
        assert_eq!(
            c.column("x"),
            Some(&PlainColumn::F64(vec![Some(1.0), Some(2.0), Some(0.5)]))
        );
        assert_eq!(
            c.column("only_a"),
            Some(&PlainColumn::Str(vec![Some("p".into()), None, None]))
        );
        assert_eq!(
            c.column("only_b"),
            Some(&PlainColumn::Bool(vec![None, None, Some(true)]))
        );
        c.check().unwrap();
        let bad = PlainTable {
            columns: vec![("x".into(), PlainColumn::Str(vec![Some("no".into())]))],
        };
        let err = PlainTable::concat(vec![c, bad]).unwrap_err().to_string();
        assert!(err.contains("`x`") && err.contains("str"), "{err}");
    }

    #[test]
    fn ragged_and_mixed_tables_are_refused() {
        let t = PlainTable {
            columns: vec![
                ("a".into(), PlainColumn::F64(vec![Some(1.0)])),
                ("b".into(), PlainColumn::F64(vec![])),
            ],
        };
        assert!(to_parquet_bytes(&t).is_err());
        let t = PlainTable {
            columns: vec![(
                "l".into(),
                PlainColumn::List(vec![
                    Some(PlainColumn::F64(vec![Some(1.0)])),
                    Some(PlainColumn::I64(vec![Some(1)])),
                ]),
            )],
        };
        let err = to_parquet_bytes(&t).unwrap_err().to_string();
        assert!(err.contains("f64 and i64"), "{err}");
    }
}
