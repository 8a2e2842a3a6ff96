//! A small Parquet writer for the prediction log's flat columns, so that the writer thread
//! encodes straight from the records instead of through a DataFrame.
//!
//! Why: at 100% sampling the log writes as many records a second as the server answers, on
//! the same cores. Through Polars a record cost ~34k instructions on the writer thread
//! (building a frame, trying a dictionary and a HyperLogLog sketch on every column, zstd at
//! its default level with a fresh context per page) — a third more than serving the request.
//! Here a file is written in one pass over typed columns (see [`super::columns`]).
//!
//! What is written is plain Parquet that every reader takes: format 2 metadata, one row
//! group, every column `OPTIONAL` (definition levels, RLE), one v1 data page per column, PLAIN
//! values except for repeated strings (the model, the version, string inputs), which get a
//! dictionary page and `RLE_DICTIONARY` indices while their dictionary stays small, and for
//! floats in compressed column chunks, which are `BYTE_STREAM_SPLIT` (read by Polars, pyarrow,
//! DuckDB and Spark): the bytes that are alike (signs and exponents) end up together, and the
//! compressor runs through them at a fraction of its cost on interleaved bytes. Types: float32
//! tensors `FLOAT`, other floats `DOUBLE`, integers `INT64`, booleans `BOOLEAN`, strings
//! `BYTE_ARRAY` (`STRING`), dates `INT32` (`DATE`), times `INT64` (`TIMESTAMP(MICROS, UTC)`).
//! Statistics: the null count of every column, and the minimum and maximum of integers, dates,
//! times (what a reader skips files on) and dictionary strings. Pages are compressed with
//! [`Codec`].

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use super::PredLogError;
use super::encoding::{
    bit_pack, bit_width, byte_stream_split_f32, byte_stream_split_f64, levels, rle_hybrid,
};
use super::thrift::{CT_BINARY, CT_STRUCT, Thrift};

/// LZ4's acceleration: how quickly it gives up looking for matches. A float column's
/// byte-stream-split mantissa bytes hardly repeat, and the default (1) spends most of its time
/// failing to find matches in them. On 2,000 non-repeating rows of the serving benchmark's 30
/// float inputs: acceleration 1 takes ~110 ns a row for 106 bytes, 8 takes ~28 ns for 120
/// bytes; on the benchmark's own (cycled) rows 38 ns and 22 ns for the same 38 bytes.
const LZ4_ACCELERATION: i32 = 8;

/// How pages are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    None,
    /// LZ4 blocks without framing (Parquet's `LZ4_RAW`, format 2.9: read by Polars, pyarrow
    /// 8+, DuckDB, Spark 3.4+).
    Lz4Raw,
    /// Zstandard at this level, with one context reused for every page.
    Zstd(i32),
}

/// The values of a column that are present (nulls are not stored).
#[derive(Debug, Clone, PartialEq)]
pub enum Values {
    F32(Vec<f32>),
    F64(Vec<f64>),
    I64(Vec<i64>),
    Bool(Vec<bool>),
    /// Strings one after another in `data`; value `i` ends at `ends[i]`.
    Str {
        data: Vec<u8>,
        ends: Vec<usize>,
    },
    /// Days since 1970-01-01.
    Date(Vec<i32>),
    /// Microseconds since 1970-01-01 00:00:00 UTC.
    Timestamp(Vec<i64>),
}

/// One column of a file.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnData {
    pub name: String,
    /// One per row: whether the row has a value.
    pub valid: Vec<bool>,
    pub values: Values,
    /// Try a dictionary (strings only; given up when it grows past [`MAX_DICT_ENTRIES`]).
    pub dictionary: bool,
}

/// A dictionary with more entries than this is not worth it (the column is written PLAIN).
pub const MAX_DICT_ENTRIES: usize = 1 << 12;

// Parquet's enums (parquet.thrift).
const T_BOOLEAN: i32 = 0;
const T_INT32: i32 = 1;
const T_INT64: i32 = 2;
const T_FLOAT: i32 = 4;
const T_DOUBLE: i32 = 5;
const T_BYTE_ARRAY: i32 = 6;
const OPTIONAL: i32 = 1;
const CONVERTED_UTF8: i32 = 0;
const CONVERTED_DATE: i32 = 6;
const CONVERTED_TIMESTAMP_MICROS: i32 = 10;
const ENC_PLAIN: i32 = 0;
const ENC_RLE: i32 = 3;
const ENC_RLE_DICTIONARY: i32 = 8;
const ENC_BYTE_STREAM_SPLIT: i32 = 9;
const PAGE_DATA: i32 = 0;
const PAGE_DICTIONARY: i32 = 2;

/// A column whose compressed pages came out less than an eighth smaller than the raw ones
/// (random ids, the mantissas of noisy floats) is stored uncompressed in the next this many
/// files, then tried again. Compressing such a column cost more than all the rest of its
/// encoding for almost nothing (LZ4 took 5 instructions a byte to save 2–7% of the serving
/// benchmark's request ids and float inputs). Parquet gives each column chunk its own codec;
/// ZFS keeps a block compressed on the same condition (an eighth saved).
const RAW_FILES_AFTER_NO_GAIN: u8 = 16;

/// What the encoder learned about the columns of one series of files (the prediction log
/// keeps one per file to be: deployment, hour and schema): for each column, by position, how
/// many more files store it uncompressed.
#[derive(Debug, Default, Clone)]
pub struct RawColumns(Vec<u8>);

/// Writes files, keeping its compression context and scratch buffers from one to the next.
pub struct Encoder {
    compressor: Compressor,
    /// A data page's uncompressed bytes.
    body: Vec<u8>,
    /// A dictionary page's uncompressed bytes.
    dict_body: Vec<u8>,
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoder")
            .field("codec", &self.compressor.codec)
            .finish()
    }
}

struct Compressor {
    codec: Codec,
    zstd: Option<zstd::bulk::Compressor<'static>>,
    /// A page's compressed bytes.
    packed: Vec<u8>,
}

/// Where a column chunk went and what it holds, for the footer.
struct Chunk {
    start: usize,
    codec: Codec,
    data_page: usize,
    dictionary_page: Option<usize>,
    uncompressed: usize,
    compressed: usize,
    encodings: &'static [i32],
    nulls: usize,
    /// PLAIN-encoded minimum and maximum, when written.
    min_max: Option<(Vec<u8>, Vec<u8>)>,
}

impl Encoder {
    pub fn new(codec: Codec) -> Result<Encoder, PredLogError> {
        let zstd = match codec {
            Codec::Zstd(level) => Some(zstd::bulk::Compressor::new(level)?),
            Codec::None | Codec::Lz4Raw => None,
        };
        Ok(Encoder {
            compressor: Compressor {
                codec,
                zstd,
                packed: Vec::new(),
            },
            body: Vec::new(),
            dict_body: Vec::new(),
        })
    }

    /// The columns (all of `rows` rows) as one Parquet file, every column compressed.
    pub fn file(&mut self, columns: &[ColumnData], rows: usize) -> Result<Vec<u8>, PredLogError> {
        self.file_adapting(columns, rows, &mut RawColumns::default())
    }

    /// [`Encoder::file`] for the next file of a series: columns that `raw` says do not
    /// compress are stored uncompressed, and `raw` learns from this file.
    pub fn file_adapting(
        &mut self,
        columns: &[ColumnData],
        rows: usize,
        raw: &mut RawColumns,
    ) -> Result<Vec<u8>, PredLogError> {
        if let Some(c) = columns.iter().find(|c| c.valid.len() != rows) {
            return Err(PredLogError::Write(format!(
                "column `{}` has {} rows, expected {rows}",
                c.name,
                c.valid.len()
            )));
        }
        // Room for the file uncompressed, or for a quarter of it (it grows if need be).
        let plain: usize = columns.iter().map(|c| 8 * rows + c.name.len() + 64).sum();
        let estimate = match self.compressor.codec {
            Codec::None => plain,
            Codec::Lz4Raw | Codec::Zstd(_) => plain / 4,
        };
        let mut out = Vec::with_capacity(estimate + 1024);
        out.extend_from_slice(b"PAR1");
        let mut chunks = Vec::with_capacity(columns.len());
        raw.0.resize(columns.len(), 0);
        for (c, left) in columns.iter().zip(&mut raw.0) {
            let codec = if *left > 0 {
                *left -= 1;
                Codec::None
            } else {
                self.compressor.codec
            };
            let chunk = self.chunk(&mut out, c, codec)?;
            let size = chunk.uncompressed;
            if codec != Codec::None && 8 * (size - chunk.compressed.min(size)) < size {
                *left = RAW_FILES_AFTER_NO_GAIN;
            }
            chunks.push(chunk);
        }
        let meta_start = out.len();
        footer(&mut out, columns, &chunks, rows);
        let meta_len = u32::try_from(out.len() - meta_start)
            .map_err(|_| PredLogError::Write("Parquet footer over 4 GiB".into()))?;
        out.extend_from_slice(&meta_len.to_le_bytes());
        out.extend_from_slice(b"PAR1");
        Ok(out)
    }

    /// Writes a column chunk: a dictionary page when it pays, then one data page, each
    /// compressed with `codec`.
    fn chunk(
        &mut self,
        out: &mut Vec<u8>,
        c: &ColumnData,
        codec: Codec,
    ) -> Result<Chunk, PredLogError> {
        let start = out.len();
        let rows = c.valid.len();
        let nulls = c.valid.iter().filter(|v| !**v).count();
        // The data page: definition levels, then values (or dictionary indices).
        self.body.clear();
        levels(&mut self.body, &c.valid, nulls);
        let dict = match &c.values {
            Values::Str { data, ends } if c.dictionary => dictionary(data, ends),
            _ => None,
        };
        let (mut uncompressed, mut compressed) = (0, 0);
        let (dictionary_page, encoding, encodings, min_max) = if let Some(dict) = dict {
            self.dict_body.clear();
            for e in &dict.entries {
                plain_str(&mut self.dict_body, e);
            }
            let at = out.len();
            let (u, z) = self.compressor.page(
                out,
                &self.dict_body,
                codec,
                PAGE_DICTIONARY,
                dict.entries.len(),
                ENC_PLAIN,
            )?;
            (uncompressed, compressed) = (u, z);
            let width = bit_width(dict.entries.len() as u64 - 1).max(1);
            self.body.push(width as u8);
            rle_hybrid(&mut self.body, &dict.indices, width);
            let min = dict.entries.iter().min().copied();
            let max = dict.entries.iter().max().copied();
            let min_max = min.zip(max).map(|(a, b)| (a.to_vec(), b.to_vec()));
            (
                Some(at),
                ENC_RLE_DICTIONARY,
                &[ENC_PLAIN, ENC_RLE, ENC_RLE_DICTIONARY][..],
                min_max,
            )
        } else if let (Values::F32(_) | Values::F64(_), true) = (&c.values, codec != Codec::None) {
            // Floats byte-stream-split: the bytes that are alike (signs and exponents) end
            // up together, so the compressor runs through them.
            match &c.values {
                Values::F32(v) => byte_stream_split_f32(&mut self.body, v),
                Values::F64(v) => byte_stream_split_f64(&mut self.body, v),
                _ => {}
            }
            (
                None,
                ENC_BYTE_STREAM_SPLIT,
                &[ENC_RLE, ENC_BYTE_STREAM_SPLIT][..],
                None,
            )
        } else {
            let min_max = plain_values(&mut self.body, &c.values);
            (None, ENC_PLAIN, &[ENC_PLAIN, ENC_RLE][..], min_max)
        };
        let data_page = out.len();
        let (u, z) = self
            .compressor
            .page(out, &self.body, codec, PAGE_DATA, rows, encoding)?;
        Ok(Chunk {
            start,
            codec,
            data_page,
            dictionary_page,
            uncompressed: uncompressed + u,
            compressed: compressed + z,
            encodings,
            nulls,
            min_max,
        })
    }
}

impl Compressor {
    /// Writes a page (header, then `body` compressed); returns its uncompressed and
    /// compressed sizes, header included.
    fn page(
        &mut self,
        out: &mut Vec<u8>,
        body: &[u8],
        codec: Codec,
        kind: i32,
        values: usize,
        encoding: i32,
    ) -> Result<(usize, usize), PredLogError> {
        let stored: &[u8] = match codec {
            Codec::None => body,
            Codec::Lz4Raw => {
                let bound = lz4::block::compress_bound(body.len())?;
                // Only ever grown: zeroing the whole bound for every page cost more than
                // compressing some of them.
                if self.packed.len() < bound {
                    self.packed.resize(bound, 0);
                }
                let n = lz4::block::compress_to_buffer(
                    body,
                    Some(lz4::block::CompressionMode::FAST(LZ4_ACCELERATION)),
                    false,
                    &mut self.packed,
                )?;
                &self.packed[..n]
            }
            Codec::Zstd(_) => {
                let z = self.zstd.as_mut().expect("a zstd encoder has its context");
                self.packed.clear();
                self.packed
                    .reserve(zstd::zstd_safe::compress_bound(body.len()));
                z.compress_to_buffer(body, &mut self.packed)?;
                &self.packed
            }
        };
        let too_big = || PredLogError::Write("a Parquet page over 2 GiB".into());
        let raw_len = i32::try_from(body.len()).map_err(|_| too_big())?;
        let stored_len = i32::try_from(stored.len()).map_err(|_| too_big())?;
        let values = i32::try_from(values).map_err(|_| too_big())?;
        let header_start = out.len();
        let mut t = Thrift::new(out);
        t.i32(1, kind);
        t.i32(2, raw_len);
        t.i32(3, stored_len);
        // DataPageHeader (5) or DictionaryPageHeader (7).
        if kind == PAGE_DATA {
            t.begin(5);
            t.i32(1, values);
            t.i32(2, encoding);
            t.i32(3, ENC_RLE);
            t.i32(4, ENC_RLE);
            t.end();
        } else {
            t.begin(7);
            t.i32(1, values);
            t.i32(2, encoding);
            t.end();
        }
        t.stop();
        let header = out.len() - header_start;
        out.extend_from_slice(stored);
        Ok((header + body.len(), header + stored.len()))
    }
}

fn plain_str(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s);
}

/// Numbers as PLAIN values: little-endian, one after another.
fn plain_numbers<T: Copy, const N: usize>(out: &mut Vec<u8>, v: &[T], le: impl Fn(T) -> [u8; N]) {
    let at = out.len();
    out.resize(at + N * v.len(), 0);
    for (dst, x) in out[at..].chunks_exact_mut(N).zip(v) {
        dst.copy_from_slice(&le(*x));
    }
}

/// The minimum and maximum of integers, PLAIN-encoded.
fn int_min_max<T: Copy + Ord, const N: usize>(
    v: &[T],
    le: impl Fn(T) -> [u8; N],
) -> Option<(Vec<u8>, Vec<u8>)> {
    let min = v.iter().copied().min()?;
    let max = v.iter().copied().max()?;
    Some((le(min).to_vec(), le(max).to_vec()))
}

/// A column's values PLAIN-encoded; returns the minimum and maximum (PLAIN) of integers,
/// dates and times when there is a value. Floats, booleans and free strings get none: no
/// reader skips files on them, and they would cost a comparison per value.
fn plain_values(out: &mut Vec<u8>, values: &Values) -> Option<(Vec<u8>, Vec<u8>)> {
    match values {
        Values::F32(v) => {
            plain_numbers(out, v, f32::to_le_bytes);
            None
        }
        Values::F64(v) => {
            plain_numbers(out, v, f64::to_le_bytes);
            None
        }
        Values::I64(v) | Values::Timestamp(v) => {
            plain_numbers(out, v, i64::to_le_bytes);
            int_min_max(v, i64::to_le_bytes)
        }
        Values::Date(v) => {
            plain_numbers(out, v, i32::to_le_bytes);
            int_min_max(v, i32::to_le_bytes)
        }
        Values::Bool(v) => {
            let bits: Vec<u32> = v.iter().map(|b| u32::from(*b)).collect();
            bit_pack(out, &bits, 1, bits.len());
            None
        }
        Values::Str { data, ends } => {
            out.reserve(data.len() + 4 * ends.len());
            let mut from = 0;
            for &end in ends {
                plain_str(out, &data[from..end]);
                from = end;
            }
            None
        }
    }
}

struct Dictionary<'a> {
    entries: Vec<&'a [u8]>,
    indices: Vec<u32>,
}

/// The column's strings as a dictionary and indices, or `None` when it grows past
/// [`MAX_DICT_ENTRIES`].
fn dictionary<'a>(data: &'a [u8], ends: &[usize]) -> Option<Dictionary<'a>> {
    let mut entries: Vec<&[u8]> = Vec::new();
    let mut index: HashMap<&[u8], u32, BuildHasherDefault<FxHasher>> = HashMap::default();
    let mut indices = Vec::with_capacity(ends.len());
    let mut from = 0;
    // The previous value first: a column of one model name never hashes.
    let mut last: Option<(&[u8], u32)> = None;
    for &end in ends {
        let s = &data[from..end];
        from = end;
        let i = match last {
            Some((l, i)) if l == s => i,
            _ => {
                let next = entries.len() as u32;
                let i = *index.entry(s).or_insert(next);
                if i == next {
                    if entries.len() >= MAX_DICT_ENTRIES {
                        return None;
                    }
                    entries.push(s);
                }
                last = Some((s, i));
                i
            }
        };
        indices.push(i);
    }
    // An empty dictionary is written PLAIN (no values at all).
    (!entries.is_empty()).then_some(Dictionary { entries, indices })
}

/// A fast, non-cryptographic hash (the Fx hash of rustc) for the dictionary: its keys are
/// the log's own strings, and SipHash cost more than the rest of the column.
#[derive(Default)]
struct FxHasher(u64);

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x51_7c_c1_b7_27_22_0a_95;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let w = u64::from_le_bytes(c.try_into().expect("8 bytes"));
            self.0 = (self.0.rotate_left(5) ^ w).wrapping_mul(K);
        }
        for &b in chunks.remainder() {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(K);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// The physical type, converted type and logical type of a column.
fn types(v: &Values) -> (i32, Option<i32>) {
    match v {
        Values::F32(_) => (T_FLOAT, None),
        Values::F64(_) => (T_DOUBLE, None),
        Values::I64(_) => (T_INT64, None),
        Values::Bool(_) => (T_BOOLEAN, None),
        Values::Str { .. } => (T_BYTE_ARRAY, Some(CONVERTED_UTF8)),
        Values::Date(_) => (T_INT32, Some(CONVERTED_DATE)),
        Values::Timestamp(_) => (T_INT64, Some(CONVERTED_TIMESTAMP_MICROS)),
    }
}

/// The logical type (a union in parquet.thrift), when the column has one.
fn logical_type(t: &mut Thrift<'_>, v: &Values) {
    match v {
        Values::Str { .. } => {
            t.begin(10);
            t.begin(1); // STRING
            t.end();
            t.end();
        }
        Values::Date(_) => {
            t.begin(10);
            t.begin(6); // DATE
            t.end();
            t.end();
        }
        Values::Timestamp(_) => {
            t.begin(10);
            t.begin(8); // TIMESTAMP
            t.bool(1, true); // isAdjustedToUTC
            t.begin(2); // unit
            t.begin(2); // MICROS
            t.end();
            t.end();
            t.end();
            t.end();
        }
        Values::F32(_) | Values::F64(_) | Values::I64(_) | Values::Bool(_) => {}
    }
}

/// The file's metadata (FileMetaData): schema, the row group and its column chunks.
fn footer(out: &mut Vec<u8>, columns: &[ColumnData], chunks: &[Chunk], rows: usize) {
    let mut t = Thrift::new(out);
    t.i32(1, 2); // version
    t.list(2, CT_STRUCT, columns.len() + 1);
    t.begin_elem();
    t.binary(4, b"schema");
    t.i32(5, columns.len() as i32);
    t.end();
    for c in columns {
        let (physical, converted) = types(&c.values);
        t.begin_elem();
        t.i32(1, physical);
        t.i32(3, OPTIONAL);
        t.binary(4, c.name.as_bytes());
        if let Some(ct) = converted {
            t.i32(6, ct);
        }
        logical_type(&mut t, &c.values);
        t.end();
    }
    t.i64(3, rows as i64);
    // One row group.
    let uncompressed: usize = chunks.iter().map(|c| c.uncompressed).sum();
    let compressed: usize = chunks.iter().map(|c| c.compressed).sum();
    t.list(4, CT_STRUCT, 1);
    t.begin_elem();
    t.list(1, CT_STRUCT, chunks.len());
    for (c, k) in columns.iter().zip(chunks) {
        let (physical, _) = types(&c.values);
        t.begin_elem();
        t.i64(2, k.start as i64);
        t.begin(3);
        t.i32(1, physical);
        t.list_i32(2, k.encodings);
        t.list(3, CT_BINARY, 1);
        t.raw_binary(c.name.as_bytes());
        t.i32(4, codec_id(k.codec));
        t.i64(5, rows as i64);
        t.i64(6, k.uncompressed as i64);
        t.i64(7, k.compressed as i64);
        t.i64(9, k.data_page as i64);
        if let Some(d) = k.dictionary_page {
            t.i64(11, d as i64);
        }
        t.begin(12); // statistics
        t.i64(3, k.nulls as i64);
        if let Some((min, max)) = &k.min_max {
            t.binary(5, max);
            t.binary(6, min);
        }
        t.end();
        t.end();
        t.end();
    }
    t.i64(2, uncompressed as i64);
    t.i64(3, rows as i64);
    t.i64(5, chunks.first().map_or(4, |c| c.start) as i64);
    t.i64(6, compressed as i64);
    t.end();
    t.binary(6, b"kiln");
    // Column orders: every column by its type's order (so readers trust min_value/max_value).
    t.list(7, CT_STRUCT, columns.len());
    for _ in columns {
        t.begin_elem();
        t.begin(1);
        t.end();
        t.end();
    }
    t.stop();
}

fn codec_id(c: Codec) -> i32 {
    match c {
        Codec::None => 0,
        Codec::Zstd(_) => 6,
        Codec::Lz4Raw => 7,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_data::plain::PlainColumn;

    fn contains(hay: &[u8], needle: &[u8]) -> bool {
        hay.windows(needle.len()).any(|w| w == needle)
    }

    #[test]
    fn a_column_compression_does_not_shrink_is_stored_raw_in_the_next_files_then_tried_again() {
        let rows = 4_000;
        let mut seed = 1u64;
        let noise: Vec<f32> = (0..rows)
            .map(|_| {
                seed = seed
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                (seed >> 40) as f32 / (1u64 << 24) as f32
            })
            .collect();
        let steady: Vec<i64> = (0..rows as i64).map(|i| i / 100).collect();
        let columns = vec![
            ColumnData {
                name: "noise".into(),
                valid: vec![true; rows],
                values: Values::F32(noise.clone()),
                dictionary: false,
            },
            ColumnData {
                name: "steady".into(),
                valid: vec![true; rows],
                values: Values::I64(steady.clone()),
                dictionary: false,
            },
        ];
        // What a page holds when it is stored PLAIN and uncompressed: the values one after
        // another, as they are.
        let noise_plain: Vec<u8> = noise[..256].iter().flat_map(|x| x.to_le_bytes()).collect();
        let steady_plain: Vec<u8> = steady[..256].iter().flat_map(|x| x.to_le_bytes()).collect();
        let mut encoder = Encoder::new(Codec::Lz4Raw).unwrap();
        let (mut series, mut other_series) = (RawColumns::default(), RawColumns::default());
        let mut stored_raw = vec![];
        for file in 0..=RAW_FILES_AFTER_NO_GAIN + 1 {
            // Another series of files (another deployment, hour or schema) learns on its own,
            // and a file without a series compresses every column.
            if file == 1 {
                let other = encoder.file_adapting(&columns, rows, &mut other_series);
                assert!(!contains(&other.unwrap(), &noise_plain));
                assert!(!contains(
                    &encoder.file(&columns, rows).unwrap(),
                    &noise_plain
                ));
            }
            let bytes = encoder.file_adapting(&columns, rows, &mut series).unwrap();
            let back = kiln_data::plain::from_parquet_bytes(&bytes).unwrap();
            let widened = noise.iter().map(|&x| Some(f64::from(x))).collect();
            assert_eq!(back.column("noise"), Some(&PlainColumn::F64(widened)));
            let steady_back = steady.iter().map(|&x| Some(x)).collect();
            assert_eq!(back.column("steady"), Some(&PlainColumn::I64(steady_back)));
            // The steady column always compresses.
            assert!(!contains(&bytes, &steady_plain));
            stored_raw.push(contains(&bytes, &noise_plain));
        }
        // Compressed (and found not worth it), raw for the next files, then tried again.
        let mut expected = vec![false];
        expected.extend(std::iter::repeat_n(
            true,
            usize::from(RAW_FILES_AFTER_NO_GAIN),
        ));
        expected.push(false);
        assert_eq!(stored_raw, expected);
    }
}
