//! Reading a dataset: locating the bytes, digesting them, checking a CSV's structure with
//! exact line numbers, and handing the bytes to Polars with the configured column types.
//!
//! Every frame leaving this module has only Kiln's physical types: Int64, Float64, Boolean,
//! String, Date and naive-UTC Datetime(µs). Categorical columns stay String in the frame; the
//! schema records that they are categorical.

use std::collections::BTreeMap;
use std::io::{Cursor, Read};
use std::path::{Path, PathBuf};

use kiln_transform::DType;
use polars::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::{CsvOptions, DatasetConfig, Format};
use crate::error::{DataError, Result};

/// One column of a dataset's schema.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnType {
    pub name: String,
    #[serde(rename = "type")]
    pub dtype: DType,
}

/// How the bytes of a source were packed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Packing {
    Plain,
    Gzip,
    Zip,
}

/// A dataset as read: the frame, its schema and where it came from.
#[derive(Debug, Clone)]
pub struct Table {
    pub df: DataFrame,
    pub schema: Vec<ColumnType>,
    /// The source as configured or given (a path or URL).
    pub source: String,
    /// The local file that was read.
    pub path: PathBuf,
    pub format: Format,
    pub packing: Packing,
    /// sha256 of the source file's bytes, hex.
    pub digest: String,
    /// Size of the source file in bytes.
    pub bytes: u64,
    /// For CSV input: the decoded text, kept to map row numbers back to lines.
    csv_text: Option<std::sync::Arc<Vec<u8>>>,
    delimiter: u8,
}

impl Table {
    pub fn rows(&self) -> usize {
        self.df.height()
    }

    /// The 1-based line in the source file where data row `row` (0-based) starts, for CSV
    /// sources.
    pub fn line_of_row(&self, row: usize) -> Option<u64> {
        let text = self.csv_text.as_ref()?;
        line_of_row(text, self.delimiter, row)
    }

    /// The lines where the given data rows (0-based) start, found in one scan of a CSV
    /// source. Empty for other formats.
    pub fn lines_of_rows(
        &self,
        rows: &std::collections::BTreeSet<usize>,
    ) -> std::collections::HashMap<usize, u64> {
        let mut out = std::collections::HashMap::new();
        let (Some(text), Some(&last)) = (self.csv_text.as_ref(), rows.last()) else {
            return out;
        };
        let mut rdr = csv::ReaderBuilder::new()
            .delimiter(self.delimiter)
            .has_headers(true)
            .flexible(true)
            .from_reader(&text[..]);
        let mut rec = csv::ByteRecord::new();
        let mut i = 0usize;
        while let Ok(true) = rdr.read_byte_record(&mut rec) {
            if rows.contains(&i)
                && let Some(p) = rec.position()
            {
                out.insert(i, p.line());
            }
            if i >= last {
                break;
            }
            i += 1;
        }
        out
    }

    pub fn dtype_of(&self, column: &str) -> Option<DType> {
        self.schema
            .iter()
            .find(|c| c.name == column)
            .map(|c| c.dtype)
    }
}

/// Reads the dataset `cfg` from the local file `path`; `source` is how the user named it (kept
/// in the dataset version).
pub fn read_dataset(cfg: &DatasetConfig, path: &Path, source: &str) -> Result<Table> {
    let started = std::time::Instant::now();
    let raw = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    tracing::debug!(
        elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
        bytes = raw.len(),
        "read"
    );
    let bytes = raw.len() as u64;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    let format = match cfg.format {
        Some(f) => f,
        None => guess_format(&name).ok_or_else(|| DataError::Format {
            path: path.to_path_buf(),
            message: "cannot tell the format from the file name; set `format = \"csv\"` or \
                      `format = \"parquet\"` in the dataset's section"
                .into(),
        })?,
    };
    let mut table = match format {
        Format::Parquet => {
            // The digest is computed beside the decoding, on its own thread.
            let (df, digest) = std::thread::scope(|s| {
                let digest = s.spawn(|| hex::encode(Sha256::digest(&raw)));
                let df = ParquetReader::new(Cursor::new(raw.as_slice())).finish();
                (df, digest.join().expect("the digest thread panicked"))
            });
            drop(raw);
            let df = df.map_err(|e| DataError::Format {
                path: path.to_path_buf(),
                message: format!("not a readable Parquet file: {e}"),
            })?;
            tracing::debug!(
                elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
                "parquet decoded"
            );
            let (df, schema) = normalize(df, &cfg.schema, path)?;
            tracing::debug!(
                elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
                "normalised"
            );
            Table {
                df,
                schema,
                source: source.to_string(),
                path: path.to_path_buf(),
                format,
                packing: Packing::Plain,
                digest,
                bytes,
                csv_text: None,
                delimiter: b',',
            }
        }
        Format::Csv => {
            let digest = hex::encode(Sha256::digest(&raw));
            let (text, packing, shown) = unpack(raw, path, &name)?;
            let delimiter = delimiter_byte(&cfg.csv)?;
            read_csv(text, &shown, delimiter, &cfg.csv, &cfg.schema)?
                .into_table(source, path, packing, digest, bytes, delimiter)
        }
    };
    if table.df.width() == 0 {
        return Err(DataError::Empty {
            path: table.path.clone(),
        });
    }
    table.source = source.to_string();
    Ok(table)
}

fn guess_format(name: &str) -> Option<Format> {
    let stem = name
        .strip_suffix(".gz")
        .or_else(|| name.strip_suffix(".zip"))
        .unwrap_or(name);
    if name.ends_with(".zip") {
        return Some(Format::Csv);
    }
    if stem.ends_with(".parquet") || stem.ends_with(".pq") {
        Some(Format::Parquet)
    } else if stem.ends_with(".csv") || stem.ends_with(".tsv") || stem.ends_with(".txt") {
        Some(Format::Csv)
    } else {
        None
    }
}

fn delimiter_byte(csv: &CsvOptions) -> Result<u8> {
    if csv.delimiter.is_ascii() && csv.delimiter != '\n' && csv.delimiter != '"' {
        Ok(csv.delimiter as u8)
    } else {
        Err(DataError::config(format!(
            "csv.delimiter must be one ASCII character other than a quote or newline, got {:?}",
            csv.delimiter
        )))
    }
}

/// Decompresses `.gz` and `.zip` sources; returns the CSV text, how it was packed and the
/// name to show in errors (`archive.zip!inner.csv` for zip members).
fn unpack(raw: Vec<u8>, path: &Path, name: &str) -> Result<(Vec<u8>, Packing, PathBuf)> {
    if name.ends_with(".gz") {
        let mut out = Vec::with_capacity(raw.len() * 4);
        flate2::read::MultiGzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(|e| DataError::Format {
                path: path.to_path_buf(),
                message: format!("not a valid gzip file: {e}"),
            })?;
        return Ok((out, Packing::Gzip, path.to_path_buf()));
    }
    if name.ends_with(".zip") {
        let bad = |e: ::zip::result::ZipError| DataError::Format {
            path: path.to_path_buf(),
            message: format!("not a valid zip archive: {e}"),
        };
        let mut archive = ::zip::ZipArchive::new(Cursor::new(raw)).map_err(bad)?;
        let files: Vec<String> = archive
            .file_names()
            .filter(|n| !n.ends_with('/') && !n.starts_with("__MACOSX/"))
            .map(str::to_string)
            .collect();
        let member = match files.as_slice() {
            [one] => one.clone(),
            _ => {
                let csvs: Vec<&String> = files
                    .iter()
                    .filter(|n| n.to_lowercase().ends_with(".csv"))
                    .collect();
                match csvs.as_slice() {
                    [one] => (*one).clone(),
                    _ => {
                        return Err(DataError::Format {
                            path: path.to_path_buf(),
                            message: format!(
                                "the archive must hold exactly one CSV file, it holds: {}",
                                files.join(", ")
                            ),
                        });
                    }
                }
            }
        };
        let mut file = archive.by_name(&member).map_err(bad)?;
        let mut out = Vec::with_capacity(file.size() as usize);
        file.read_to_end(&mut out).map_err(|e| DataError::Format {
            path: path.to_path_buf(),
            message: format!("cannot extract {member}: {e}"),
        })?;
        let shown = PathBuf::from(format!("{}!{member}", path.display()));
        return Ok((out, Packing::Zip, shown));
    }
    Ok((raw, Packing::Plain, path.to_path_buf()))
}

struct CsvRead {
    df: DataFrame,
    schema: Vec<ColumnType>,
    text: Vec<u8>,
}

impl CsvRead {
    fn into_table(
        self,
        source: &str,
        path: &Path,
        packing: Packing,
        digest: String,
        bytes: u64,
        delimiter: u8,
    ) -> Table {
        Table {
            df: self.df,
            schema: self.schema,
            source: source.to_string(),
            path: path.to_path_buf(),
            format: Format::Csv,
            packing,
            digest,
            bytes,
            csv_text: Some(std::sync::Arc::new(self.text)),
            delimiter,
        }
    }
}

/// Reads CSV text: structure check first (exact lines), then Polars with the overridden
/// columns read as text and converted here, so a bad value is reported with its line.
fn read_csv(
    mut text: Vec<u8>,
    shown: &Path,
    delimiter: u8,
    opts: &CsvOptions,
    overrides: &BTreeMap<String, DType>,
) -> Result<CsvRead> {
    if text.starts_with(b"\xEF\xBB\xBF") {
        text.drain(..3);
    }
    let header = check_structure(&text, shown, delimiter)?;
    for col in overrides.keys() {
        if !header.contains(col) {
            return Err(DataError::MissingColumn {
                path: shown.to_path_buf(),
                column: col.clone(),
                available: header.clone(),
            });
        }
    }
    let as_text: Schema = overrides
        .keys()
        .map(|c| Field::new(c.as_str().into(), DataType::String))
        .collect();
    let parse = CsvParseOptions::default()
        .with_separator(delimiter)
        .with_null_values(Some(NullValues::AllColumns(
            opts.null_values.iter().map(|s| s.as_str().into()).collect(),
        )))
        .with_missing_is_null(true);
    let df = CsvReadOptions::default()
        .with_has_header(true)
        .with_infer_schema_length(None)
        .with_schema_overwrite(Some(Arc::new(as_text)))
        .with_parse_options(parse)
        .into_reader_with_file_handle(Cursor::new(&text[..]))
        .finish()
        .map_err(|e| DataError::Format {
            path: shown.to_path_buf(),
            message: format!("cannot parse CSV: {e}"),
        })?;
    let mut df = df;
    infer_dates(&mut df, overrides)?;
    let mut schema_hint = overrides.clone();
    // Columns read as text only because of an override are converted now, with the first
    // value that does not convert reported by line.
    for (col, dtype) in overrides {
        let converted = convert_text_column(&df, col, *dtype, opts.timestamp_format.as_deref())?;
        if let Some(bad_row) = first_failed_conversion(&df, col, &converted)? {
            let value = df
                .column(col)?
                .str()?
                .get(bad_row)
                .unwrap_or_default()
                .to_string();
            return Err(DataError::Csv {
                path: shown.to_path_buf(),
                line: line_of_row(&text, delimiter, bad_row).unwrap_or(0),
                column: Some(col.clone()),
                message: format!("{value:?} is not a valid {dtype}"),
            });
        }
        df.replace(col, converted)?;
        schema_hint.insert(col.clone(), *dtype);
    }
    let (df, schema) = normalize(df, &schema_hint, shown)?;
    Ok(CsvRead { df, schema, text })
}

/// Text columns (not overridden) whose values are all dates or all timestamps become Date or
/// Timestamp columns. Done here, a column at a time with Polars' vectorised parsing and the
/// format inferred from the first value, rather than by the CSV reader's `try_parse_dates`,
/// which tries every date pattern on every value of every text column (8 s of the 0.3 s it
/// takes to read the 336,776 bundled flights).
fn infer_dates(df: &mut DataFrame, overrides: &BTreeMap<String, DType>) -> Result<()> {
    let names: Vec<String> = df
        .schema()
        .iter()
        .filter(|(n, t)| **t == DataType::String && !overrides.contains_key(n.as_str()))
        .map(|(n, _)| n.to_string())
        .collect();
    for name in names {
        let first = match df.column(&name)?.str()?.iter().flatten().next() {
            Some(v) => v.trim().to_string(),
            None => continue,
        };
        // A date starts with a digit and has a date separator; anything else is text.
        let dateish = first.len() >= 8
            && first.len() <= 40
            && first.starts_with(|c: char| c.is_ascii_digit())
            && first.contains(['-', '/', '.']);
        if !dateish {
            continue;
        }
        let dtype = if first.len() <= 10 {
            DType::Date
        } else {
            DType::Timestamp
        };
        let Ok(converted) = convert_text_column(df, &name, dtype, None) else {
            continue;
        };
        if first_failed_conversion(df, &name, &converted)?.is_none() {
            df.replace(&name, converted)?;
        }
    }
    Ok(())
}

/// Checks a CSV's shape with the `csv` crate, which knows the line of every record: a
/// header with unique, non-empty names; every row as wide as the header; UTF-8 text.
/// Returns the column names.
fn check_structure(text: &[u8], path: &Path, delimiter: u8) -> Result<Vec<String>> {
    if text.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(DataError::Empty {
            path: path.to_path_buf(),
        });
    }
    let mut rdr = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .has_headers(false)
        .flexible(true)
        .from_reader(text);
    let mut rec = csv::ByteRecord::new();
    let csv_err = |e: csv::Error| {
        let line = e.position().map(|p| p.line()).unwrap_or(0);
        DataError::Csv {
            path: path.to_path_buf(),
            line,
            column: None,
            message: e.to_string(),
        }
    };
    if !rdr.read_byte_record(&mut rec).map_err(csv_err)? {
        return Err(DataError::Empty {
            path: path.to_path_buf(),
        });
    }
    let mut header: Vec<String> = Vec::with_capacity(rec.len());
    for (i, field) in rec.iter().enumerate() {
        let name = std::str::from_utf8(field).map_err(|_| DataError::Csv {
            path: path.to_path_buf(),
            line: 1,
            column: Some(format!("#{}", i + 1)),
            message: "the column name is not valid UTF-8".into(),
        })?;
        let name = name.trim();
        if name.is_empty() {
            return Err(DataError::Csv {
                path: path.to_path_buf(),
                line: 1,
                column: Some(format!("#{}", i + 1)),
                message: "the header has an empty column name".into(),
            });
        }
        if let Some(first) = header.iter().position(|h| h == name) {
            return Err(DataError::DuplicateColumn {
                path: path.to_path_buf(),
                column: name.to_string(),
                first: first + 1,
                second: i + 1,
            });
        }
        header.push(name.to_string());
    }
    let width = header.len();
    loop {
        match rdr.read_byte_record(&mut rec) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => return Err(csv_err(e)),
        }
        let line = rec.position().map(|p| p.line()).unwrap_or(0);
        if rec.len() != width {
            return Err(DataError::Csv {
                path: path.to_path_buf(),
                line,
                column: None,
                message: format!(
                    "expected {width} fields as in the header, found {}",
                    rec.len()
                ),
            });
        }
        if std::str::from_utf8(rec.as_slice()).is_err() {
            let i = rec
                .iter()
                .position(|f| std::str::from_utf8(f).is_err())
                .unwrap_or(0);
            return Err(DataError::Csv {
                path: path.to_path_buf(),
                line,
                column: Some(header[i].clone()),
                message: "the value is not valid UTF-8 (the file must be UTF-8 encoded)".into(),
            });
        }
    }
    Ok(header)
}

/// The line where data row `row` (0-based, after the header) starts.
fn line_of_row(text: &[u8], delimiter: u8, row: usize) -> Option<u64> {
    let mut rdr = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .has_headers(true)
        .flexible(true)
        .from_reader(text);
    let mut rec = csv::ByteRecord::new();
    let mut i = 0usize;
    while rdr.read_byte_record(&mut rec).ok()? {
        if i == row {
            return rec.position().map(|p| p.line());
        }
        i += 1;
    }
    None
}

/// Converts a text column to `dtype`, non-strictly (a value that does not convert becomes
/// null; see [`first_failed_conversion`]).
pub(crate) fn convert_text_column(
    df: &DataFrame,
    col: &str,
    dtype: DType,
    timestamp_format: Option<&str>,
) -> Result<Column> {
    let convert = |expr: Expr| -> Result<Column> {
        Ok(df
            .clone()
            .lazy()
            .select([expr.alias(col)])
            .collect()?
            .column(col)?
            .clone())
    };
    let c = polars::prelude::col(col);
    if dtype == DType::Timestamp && timestamp_format.is_none() {
        // UTC timestamps written with a `Z` (`2013-01-01T10:00:00Z`, as R, pandas and most
        // exports write them) are parsed as naive values once the `Z` is cut: Polars parses a
        // zone-aware pattern value by value through chrono, ~40× slower. Values the naive
        // parse leaves out (other offsets) then go through the zone-aware parse.
        let naive = c
            .clone()
            .str()
            .strip_chars(lit(NULL))
            .str()
            .strip_suffix(lit("Z"))
            .str()
            .to_datetime(
                Some(TimeUnit::Microseconds),
                None,
                StrptimeOptions {
                    format: None,
                    strict: false,
                    exact: true,
                    cache: true,
                },
                lit("raise"),
            );
        let slow = || convert(text_conversion(c.clone(), dtype, None));
        // A first value with an offset makes Polars infer a zone-aware pattern, which it
        // refuses without a zone: then every value takes the zone-aware parse.
        let fast = match convert(naive) {
            Ok(f) if f.dtype() == &DataType::Datetime(TimeUnit::Microseconds, None) => f,
            _ => return slow(),
        };
        let had = df.column(col)?.is_not_null();
        let missed = &had & &fast.is_null();
        if !missed.any() {
            return Ok(fast);
        }
        let slow = slow()?;
        let merged = slow
            .as_materialized_series()
            .zip_with(&missed, fast.as_materialized_series())?;
        return Ok(merged.into_column());
    }
    convert(text_conversion(c, dtype, timestamp_format))
}

/// The Polars expression that converts a text column to `dtype` (failures become null).
pub(crate) fn text_conversion(c: Expr, dtype: DType, timestamp_format: Option<&str>) -> Expr {
    let opts = |format: Option<&str>| StrptimeOptions {
        format: format.map(Into::into),
        strict: false,
        exact: true,
        cache: true,
    };
    let trimmed = c.clone().str().strip_chars(lit(NULL));
    match dtype {
        DType::Int => trimmed.strict_cast(DataType::String).cast(DataType::Int64),
        DType::Float => trimmed.cast(DataType::Float64),
        DType::Bool => {
            let l = trimmed.str().to_lowercase();
            when(l.clone().is_in(
                lit(Series::new("t".into(), ["true", "t", "yes", "y", "1"])).implode(false),
                false,
            ))
            .then(lit(true))
            .when(l.is_in(
                lit(Series::new("f".into(), ["false", "f", "no", "n", "0"])).implode(false),
                false,
            ))
            .then(lit(false))
            .otherwise(lit(NULL).cast(DataType::Boolean))
        }
        DType::String | DType::Categorical => c,
        DType::Date => trimmed.str().to_date(opts(None)),
        // Parsed in UTC so values with an offset (`…Z`, `+01:00`) and naive values both
        // convert; the result is naive UTC like every Kiln timestamp.
        DType::Timestamp => trimmed
            .str()
            .to_datetime(
                Some(TimeUnit::Microseconds),
                Some(TimeZone::UTC),
                opts(timestamp_format),
                lit("raise"),
            )
            .dt()
            .replace_time_zone(None, lit("raise"), NonExistent::Raise),
    }
}

/// The first row where `original` had a value but `converted` is null.
pub(crate) fn first_failed_conversion(
    df: &DataFrame,
    col: &str,
    converted: &Column,
) -> Result<Option<usize>> {
    let had = df.column(col)?.is_not_null();
    let lost = converted.is_null();
    let bad = had & lost;
    Ok(bad.iter().position(|b| b == Some(true)))
}

/// Brings every column to Kiln's physical types and derives the Kiln schema.
fn normalize(
    df: DataFrame,
    hints: &BTreeMap<String, DType>,
    path: &Path,
) -> Result<(DataFrame, Vec<ColumnType>)> {
    let mut exprs = Vec::with_capacity(df.width());
    let mut schema = Vec::with_capacity(df.width());
    for (name, dt) in df.schema().iter() {
        let c = col(name.as_str());
        let (expr, kind) = match dt {
            DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::UInt8
            | DataType::UInt16
            | DataType::UInt32 => (c.cast(DataType::Int64), DType::Int),
            DataType::UInt64 => (c.strict_cast(DataType::Int64), DType::Int),
            DataType::Float32 | DataType::Float64 => (c.cast(DataType::Float64), DType::Float),
            DataType::Boolean => (c, DType::Bool),
            DataType::String => (c, DType::String),
            DataType::Categorical(_, _) | DataType::Enum(_, _) => {
                (c.cast(DataType::String), DType::Categorical)
            }
            DataType::Date => (c, DType::Date),
            DataType::Datetime(_, tz) => {
                let naive = if tz.is_some() {
                    c.dt()
                        .convert_time_zone(TimeZone::UTC)
                        .dt()
                        .replace_time_zone(None, lit("raise"), NonExistent::Raise)
                } else {
                    c
                };
                (
                    naive.dt().cast_time_unit(TimeUnit::Microseconds),
                    DType::Timestamp,
                )
            }
            DataType::Null => (c.cast(DataType::String), DType::String),
            other => {
                return Err(DataError::Format {
                    path: path.to_path_buf(),
                    message: format!(
                        "column `{name}` has type {other}, which Kiln does not read \
                         (int, float, bool, string, categorical, date and timestamp are supported)"
                    ),
                });
            }
        };
        let kind = match hints.get(name.as_str()) {
            Some(DType::Categorical) if kind == DType::String => DType::Categorical,
            Some(h) if *h == kind => *h,
            Some(h) => {
                // Parquet columns with an override: convert with a strict cast.
                let target = physical(*h);
                exprs.push(c_strict(name.as_str(), target));
                schema.push(ColumnType {
                    name: name.to_string(),
                    dtype: *h,
                });
                continue;
            }
            None => kind,
        };
        exprs.push(expr.alias(name.as_str()));
        schema.push(ColumnType {
            name: name.to_string(),
            dtype: kind,
        });
    }
    let df = df
        .lazy()
        .select(exprs)
        .collect()
        .map_err(|e| DataError::Format {
            path: path.to_path_buf(),
            message: format!("cannot convert columns to the declared types: {e}"),
        })?;
    Ok((df, schema))
}

fn c_strict(name: &str, target: DataType) -> Expr {
    col(name).strict_cast(target).alias(name)
}

/// The Polars type that holds values of a Kiln type.
pub fn physical(dtype: DType) -> DataType {
    match dtype {
        DType::Int => DataType::Int64,
        DType::Float => DataType::Float64,
        DType::Bool => DataType::Boolean,
        DType::String | DType::Categorical => DataType::String,
        DType::Date => DataType::Date,
        DType::Timestamp => DataType::Datetime(TimeUnit::Microseconds, None),
    }
}

/// sha256 of a file's bytes, hex.
pub fn file_digest(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h).map_err(|e| DataError::io(path, e))?;
    Ok(hex::encode(h.finalize()))
}
