//! Records of one schema straight into typed columns for [`super::parquet`]: the same
//! columns, names and values as [`table::to_table`](super::table::to_table), without a
//! `PlainTable` (an `Option` and often a `String` per cell) or a DataFrame in between.
//!
//! List columns (a tensor with more than [`MAX_WIDE`](super::table::MAX_WIDE) elements per
//! row, or one that is not per row) are not built here: such records are written through
//! the table and Polars, as before.

use std::borrow::Cow;

use kiln_ml::{Tensor, TensorData};
use kiln_transform::Value;

use super::parquet::{ColumnData, Values};
use super::table::{self, InputsRef, Kind, PredictionRef, Source};
use super::wire;

impl ColumnData {
    fn new(name: String, kind: Kind, rows: usize, dictionary: bool) -> Option<ColumnData> {
        let values = match kind {
            Kind::F32 => Values::F32(Vec::with_capacity(rows)),
            Kind::F64 => Values::F64(Vec::with_capacity(rows)),
            Kind::I64 => Values::I64(Vec::with_capacity(rows)),
            Kind::Bool => Values::Bool(Vec::with_capacity(rows)),
            Kind::Str => Values::Str {
                data: Vec::new(),
                ends: Vec::with_capacity(rows),
            },
            Kind::Date => Values::Date(Vec::with_capacity(rows)),
            Kind::Timestamp => Values::Timestamp(Vec::with_capacity(rows)),
            Kind::List => return None,
        };
        Some(ColumnData {
            name,
            valid: Vec::with_capacity(rows),
            values,
            dictionary,
        })
    }

    fn null(&mut self) {
        self.valid.push(false);
    }

    fn nulls(&mut self, n: usize) {
        self.valid.extend(std::iter::repeat_n(false, n));
    }

    /// Appends a float (NaN is null); null in a column of another type.
    #[inline]
    fn f64(&mut self, x: Option<f64>) {
        match (&mut self.values, x.and_then(table::f)) {
            (Values::F64(v), Some(x)) => {
                v.push(x);
                self.valid.push(true);
            }
            // A float32 column only ever gets float32 values (its schema says so).
            (Values::F32(v), Some(x)) => {
                v.push(x as f32);
                self.valid.push(true);
            }
            _ => self.valid.push(false),
        }
    }

    fn i64(&mut self, x: Option<i64>) {
        match (&mut self.values, x) {
            (Values::I64(v), Some(x)) => {
                v.push(x);
                self.valid.push(true);
            }
            _ => self.valid.push(false),
        }
    }

    fn bool(&mut self, x: Option<bool>) {
        match (&mut self.values, x) {
            (Values::Bool(v), Some(x)) => {
                v.push(x);
                self.valid.push(true);
            }
            _ => self.valid.push(false),
        }
    }

    fn str(&mut self, x: Option<&str>) {
        match (&mut self.values, x) {
            (Values::Str { data, ends }, Some(s)) => {
                data.extend_from_slice(s.as_bytes());
                ends.push(data.len());
                self.valid.push(true);
            }
            _ => self.valid.push(false),
        }
    }

    fn date(&mut self, x: Option<i32>) {
        match (&mut self.values, x) {
            (Values::Date(v), Some(x)) => {
                v.push(x);
                self.valid.push(true);
            }
            _ => self.valid.push(false),
        }
    }

    fn timestamp(&mut self, x: Option<i64>) {
        match (&mut self.values, x) {
            (Values::Timestamp(v), Some(x)) => {
                v.push(x);
                self.valid.push(true);
            }
            _ => self.valid.push(false),
        }
    }

    /// Appends element `i` of a tensor, as the column's type (null when the tensor has
    /// fewer elements or another type).
    fn elem(&mut self, d: &TensorData, i: usize) {
        match self.values {
            Values::F32(_) | Values::F64(_) => self.f64(match d {
                TensorData::Fp32(v) => v.get(i).map(|x| f64::from(*x)),
                TensorData::Fp64(v) => v.get(i).copied(),
                _ => None,
            }),
            Values::I64(_) => self.i64(match d {
                TensorData::Int32(v) => v.get(i).map(|x| i64::from(*x)),
                TensorData::Int64(v) => v.get(i).copied(),
                _ => None,
            }),
            Values::Bool(_) => self.bool(match d {
                TensorData::Bool(v) => v.get(i).copied(),
                _ => None,
            }),
            Values::Str { .. } => {
                let s = match d {
                    TensorData::Bytes(v) => v.get(i).map(|b| String::from_utf8_lossy(b)),
                    _ => None,
                };
                self.str(s.as_deref());
            }
            Values::Date(_) | Values::Timestamp(_) => self.null(),
        }
    }

    /// Appends `other`'s rows (a column of the same type).
    fn append(&mut self, other: &ColumnData) {
        self.valid.extend_from_slice(&other.valid);
        match (&mut self.values, &other.values) {
            (Values::F32(a), Values::F32(b)) => a.extend_from_slice(b),
            (Values::F64(a), Values::F64(b)) => a.extend_from_slice(b),
            (Values::I64(a), Values::I64(b)) | (Values::Timestamp(a), Values::Timestamp(b)) => {
                a.extend_from_slice(b)
            }
            (Values::Bool(a), Values::Bool(b)) => a.extend_from_slice(b),
            (Values::Date(a), Values::Date(b)) => a.extend_from_slice(b),
            (
                Values::Str { data, ends },
                Values::Str {
                    data: more,
                    ends: more_ends,
                },
            ) => {
                let base = data.len();
                data.extend_from_slice(more);
                ends.extend(more_ends.iter().map(|e| e + base));
            }
            // Never: both come from one schema. Keep the rows in step.
            _ => {
                let n = other.valid.len();
                self.valid.truncate(self.valid.len() - n);
                self.nulls(n);
            }
        }
    }

    fn clear(&mut self) {
        self.valid.clear();
        match &mut self.values {
            Values::F32(v) => v.clear(),
            Values::F64(v) => v.clear(),
            Values::I64(v) | Values::Timestamp(v) => v.clear(),
            Values::Bool(v) => v.clear(),
            Values::Str { data, ends } => {
                data.clear();
                ends.clear();
            }
            Values::Date(v) => v.clear(),
        }
    }

    /// Appends a raw value, converted to the column's type (null when it does not convert),
    /// as `table::push_value` does.
    fn value(&mut self, v: Option<&Value>) {
        let Some(v) = v.filter(|v| !v.is_null()) else {
            self.null();
            return;
        };
        match self.values {
            Values::F32(_) | Values::F64(_) => self.f64(v.to_f64()),
            Values::I64(_) => self.i64(match v {
                Value::Int(i) | Value::Timestamp(i) => Some(*i),
                Value::Bool(b) => Some(i64::from(*b)),
                Value::Date(d) => Some(i64::from(*d)),
                _ => None,
            }),
            Values::Bool(_) => self.bool(match v {
                Value::Bool(b) => Some(*b),
                _ => None,
            }),
            Values::Str { .. } => {
                let s: Cow<'_, str> = match v {
                    Value::Str(s) => Cow::Borrowed(s),
                    other => Cow::Owned(other.to_string()),
                };
                self.str(Some(&s));
            }
            Values::Date(_) => self.date(match v {
                Value::Date(d) => Some(*d),
                _ => None,
            }),
            Values::Timestamp(_) => self.timestamp(match v {
                Value::Timestamp(t) => Some(*t),
                _ => None,
            }),
        }
    }
}

/// The columns a tensor fills: `width` of them from `first`, element `j` of each row in
/// column `first + j`.
#[derive(Clone, Copy)]
struct Span {
    input: bool,
    t: usize,
    first: usize,
    width: usize,
}

/// A float tensor's columns, row by row as they come (one copy, in the tensor's own type),
/// split into columns when the file is written. NaN is null.
#[derive(Clone)]
struct Block {
    span: Span,
    /// `width` values a row.
    data: Floats,
}

#[derive(Clone)]
enum Floats {
    F32(Vec<f32>),
    F64(Vec<f64>),
}

/// A float a block holds.
trait Float: Copy {
    const NAN: Self;
    fn of(d: &TensorData, i: usize) -> Option<Self>;
    /// Appends the first `n` elements of `d` in one copy; false when it has fewer or
    /// another type.
    fn extend(out: &mut Vec<Self>, d: &TensorData, n: usize) -> bool;
    fn is_nan(self) -> bool;
    /// The column's values, if it holds this type.
    fn values(v: &mut Values) -> Option<&mut Vec<Self>>;
}

impl Float for f32 {
    const NAN: f32 = f32::NAN;
    fn of(d: &TensorData, i: usize) -> Option<f32> {
        match d {
            TensorData::Fp32(v) => v.get(i).copied(),
            // Never: a float32 block's schema has a float32 tensor.
            TensorData::Fp64(v) => v.get(i).map(|&x| x as f32),
            _ => None,
        }
    }
    fn extend(out: &mut Vec<f32>, d: &TensorData, n: usize) -> bool {
        match d {
            TensorData::Fp32(v) if v.len() >= n => out.extend_from_slice(&v[..n]),
            _ => return false,
        }
        true
    }
    fn is_nan(self) -> bool {
        f32::is_nan(self)
    }
    fn values(v: &mut Values) -> Option<&mut Vec<f32>> {
        match v {
            Values::F32(v) => Some(v),
            _ => None,
        }
    }
}

impl Float for f64 {
    const NAN: f64 = f64::NAN;
    fn of(d: &TensorData, i: usize) -> Option<f64> {
        match d {
            TensorData::Fp64(v) => v.get(i).copied(),
            TensorData::Fp32(v) => v.get(i).map(|&x| f64::from(x)),
            _ => None,
        }
    }
    fn extend(out: &mut Vec<f64>, d: &TensorData, n: usize) -> bool {
        match d {
            TensorData::Fp64(v) if v.len() >= n => out.extend_from_slice(&v[..n]),
            TensorData::Fp32(v) if v.len() >= n => out.extend(v[..n].iter().map(|&x| f64::from(x))),
            _ => return false,
        }
        true
    }
    fn is_nan(self) -> bool {
        f64::is_nan(self)
    }
    fn values(v: &mut Values) -> Option<&mut Vec<f64>> {
        match v {
            Values::F64(v) => Some(v),
            _ => None,
        }
    }
}

/// Appends each row's `width` elements of `t` (NaN where it has none, or another type).
fn push_rows<T: Float>(out: &mut Vec<T>, t: Option<&Tensor>, width: usize, rows: usize) {
    let n = rows * width;
    let Some(t) = t else {
        out.extend(std::iter::repeat_n(T::NAN, n));
        return;
    };
    let stride: usize = t.shape.iter().skip(1).product();
    // The whole request, as the server built it: one copy.
    if stride == width && T::extend(out, &t.data, n) {
        return;
    }
    for r in 0..rows {
        out.extend((0..width).map(|j| T::of(&t.data, r * stride + j).unwrap_or(T::NAN)));
    }
}

/// Splits a block's rows (`width` values each) into its columns.
fn split<T: Float>(data: &[T], width: usize, rows: usize, cols: &mut [ColumnData]) {
    // Nothing missing (nearly always): every row valid, each column a strided copy.
    let whole = width > 0
        && data.len() == rows * width
        && !data.iter().fold(false, |nan, x| nan | x.is_nan());
    for (j, col) in cols.iter_mut().enumerate().take(width) {
        col.clear();
        let Some(v) = T::values(&mut col.values) else {
            continue;
        };
        if whole {
            col.valid.resize(rows, true);
            v.extend(data.chunks_exact(width).map(|row| row[j]));
            continue;
        }
        col.valid.reserve(rows);
        v.reserve(rows);
        for &x in data.iter().skip(j).step_by(width) {
            let present = !x.is_nan();
            col.valid.push(present);
            if present {
                v.push(x);
            }
        }
    }
}

/// Records of one schema (equal `schema_key`s) folded into columns one at a time, as they
/// are answered: on the serving thread that answered them, from the request's own tensors
/// (nothing is packed or read back). Float tensors — nearly all of a record — are copied a
/// row at a time into a [`Block`]; the rest go straight into their columns.
#[derive(Clone)]
pub(crate) struct Builder {
    cols: Vec<ColumnData>,
    rows: usize,
    /// Fixed columns: (column, which).
    fixed: Vec<(usize, usize)>,
    spans: Vec<Span>,
    blocks: Vec<Block>,
    /// Whether a column is filled from a block (only when the file is written).
    in_block: Vec<bool>,
    /// Raw input columns: (column, raw column).
    raw: Vec<(usize, usize)>,
}

fn tensor<'a>(p: &PredictionRef<'a>, input: bool, t: usize) -> Option<&'a Tensor> {
    if input {
        match p.inputs {
            InputsRef::Tensors(ts) => ts.get(t),
            InputsRef::Rows { .. } => None,
        }
    } else {
        p.outputs.get(t)
    }
}

impl Builder {
    /// Columns for records shaped like `first` (room for `capacity` rows to start with);
    /// `None` when the schema has a list column.
    pub(crate) fn new(first: &PredictionRef<'_>, capacity: usize) -> Option<Builder> {
        // The column specs are read from the packed form, as the table path reads them
        // (once per builder).
        let packed = wire::pack(first);
        let specs = table::specs(&wire::view(&packed)?);
        let mut cols = Vec::with_capacity(specs.len());
        let (mut fixed, mut spans, mut raw) = (vec![], Vec::<(Span, Kind)>::new(), vec![]);
        for (k, s) in specs.iter().enumerate() {
            // Model, version and raw string inputs repeat: a dictionary. Request ids do not.
            let dictionary = s.kind == Kind::Str && !matches!(s.source, Source::Fixed(0));
            cols.push(ColumnData::new(
                s.name.clone(),
                s.kind,
                capacity,
                dictionary,
            )?);
            match s.source {
                Source::Fixed(i) => fixed.push((k, i)),
                Source::Elem { input, t, j: 0 } => spans.push((
                    Span {
                        input,
                        t,
                        first: k,
                        width: 1,
                    },
                    s.kind,
                )),
                // The elements of a tensor are consecutive columns.
                Source::Elem { .. } => spans.last_mut()?.0.width += 1,
                Source::Raw(ci) => raw.push((k, ci)),
                // Lists are refused above (`ColumnData::new`).
                Source::RowList { .. } | Source::Whole { .. } => return None,
            }
        }
        let mut in_block = vec![false; cols.len()];
        let (mut blocks, mut other) = (vec![], vec![]);
        for (span, kind) in spans {
            let room = capacity * span.width;
            let data = match kind {
                Kind::F32 => Floats::F32(Vec::with_capacity(room)),
                Kind::F64 => Floats::F64(Vec::with_capacity(room)),
                _ => {
                    other.push(span);
                    continue;
                }
            };
            in_block[span.first..span.first + span.width].fill(true);
            blocks.push(Block { span, data });
        }
        Some(Builder {
            cols,
            rows: 0,
            fixed,
            spans: other,
            blocks,
            in_block,
            raw,
        })
    }

    /// The same columns with no rows (made once per file to be; the rows copied and dropped
    /// are one take's).
    pub(crate) fn empty_like(&self) -> Builder {
        let mut b = self.clone();
        b.clear();
        b
    }

    /// Rows so far.
    pub(crate) fn rows(&self) -> usize {
        self.rows
    }

    /// Appends a record of this schema.
    pub(crate) fn push(&mut self, p: &PredictionRef<'_>) {
        let rows = p.rows();
        self.rows += rows;
        let cols = &mut self.cols;
        for &(k, i) in &self.fixed {
            let col = &mut cols[k];
            for r in 0..rows {
                match i {
                    0 => col.str(Some(p.request_id)),
                    1 => col.i64(Some(r as i64)),
                    2 => col.timestamp(Some(p.time_us)),
                    3 => col.str(Some(p.deployment)),
                    4 => col.str(Some(p.version)),
                    5 => col.i64(Some(i64::try_from(p.latency_us).unwrap_or(i64::MAX))),
                    _ => col.null(),
                }
            }
        }
        for b in &mut self.blocks {
            let t = tensor(p, b.span.input, b.span.t);
            match &mut b.data {
                Floats::F32(v) => push_rows(v, t, b.span.width, rows),
                Floats::F64(v) => push_rows(v, t, b.span.width, rows),
            }
        }
        for s in &self.spans {
            let cols = &mut cols[s.first..s.first + s.width];
            let Some(t) = tensor(p, s.input, s.t) else {
                cols.iter_mut().for_each(|c| c.nulls(rows));
                continue;
            };
            let stride: usize = t.shape.iter().skip(1).product();
            for r in 0..rows {
                for (j, col) in cols.iter_mut().enumerate() {
                    col.elem(&t.data, r * stride + j);
                }
            }
        }
        match p.inputs {
            InputsRef::Rows { rows: values, .. } => {
                for row in values {
                    for &(k, ci) in &self.raw {
                        cols[k].value(row.get(ci));
                    }
                }
            }
            InputsRef::Tensors(_) => self.raw.iter().for_each(|&(k, _)| cols[k].nulls(rows)),
        }
    }

    /// Appends `other`'s rows (a builder of the same schema: see [`Builder::empty_like`]).
    pub(crate) fn append(&mut self, other: &Builder) {
        self.rows += other.rows;
        for (k, (c, o)) in self.cols.iter_mut().zip(&other.cols).enumerate() {
            if !self.in_block[k] {
                c.append(o);
            }
        }
        for (b, o) in self.blocks.iter_mut().zip(&other.blocks) {
            match (&mut b.data, &o.data) {
                (Floats::F32(a), Floats::F32(more)) => a.extend_from_slice(more),
                (Floats::F64(a), Floats::F64(more)) => a.extend_from_slice(more),
                // Never: both come from one schema.
                _ => {}
            }
        }
    }

    /// The columns of the rows so far (the blocks split into their columns).
    pub(crate) fn columns(&mut self) -> &[ColumnData] {
        let rows = self.rows;
        for b in &self.blocks {
            let cols = &mut self.cols[b.span.first..b.span.first + b.span.width];
            match &b.data {
                Floats::F32(v) => split(v, b.span.width, rows, cols),
                Floats::F64(v) => split(v, b.span.width, rows, cols),
            }
        }
        &self.cols
    }

    /// Bytes the columns and blocks hold room for (what [`Builder::clear`] keeps).
    pub(crate) fn room(&self) -> usize {
        let cols: usize = self
            .cols
            .iter()
            .map(|c| {
                c.valid.capacity()
                    + match &c.values {
                        Values::F32(v) => 4 * v.capacity(),
                        Values::F64(v) => 8 * v.capacity(),
                        Values::I64(v) | Values::Timestamp(v) => 8 * v.capacity(),
                        Values::Bool(v) => v.capacity(),
                        Values::Date(v) => 4 * v.capacity(),
                        Values::Str { data, ends } => data.capacity() + 8 * ends.capacity(),
                    }
            })
            .sum();
        cols + self
            .blocks
            .iter()
            .map(|b| match &b.data {
                Floats::F32(v) => 4 * v.capacity(),
                Floats::F64(v) => 8 * v.capacity(),
            })
            .sum::<usize>()
    }

    /// Empties the columns, keeping their room for the next records.
    pub(crate) fn clear(&mut self) {
        self.cols.iter_mut().for_each(ColumnData::clear);
        self.blocks.iter_mut().for_each(|b| match &mut b.data {
            Floats::F32(v) => v.clear(),
            Floats::F64(v) => v.clear(),
        });
        self.rows = 0;
    }
}

/// Records of one schema (equal `schema_key`s) as columns, with their row count; `None`
/// when the schema has a list column. Built in two builders and appended, as the lanes and
/// the writer do.
#[cfg(test)]
pub(crate) fn build(group: &[&table::Prediction]) -> Option<(Vec<ColumnData>, usize)> {
    let first = group.first()?.borrowed();
    let mut b = Builder::new(&first, 4)?;
    let mut other = b.empty_like();
    let half = group.len() / 2;
    for p in &group[..half] {
        b.push(&p.borrowed());
    }
    for p in &group[half..] {
        other.push(&p.borrowed());
    }
    b.append(&other);
    let cols = b.columns().to_vec();
    Some((cols, b.rows))
}

#[cfg(test)]
mod tests {
    use kiln_ml::{Tensor, TensorData};
    use kiln_transform::{Column, DType, Value};

    use super::super::parquet::{Codec, Encoder};
    use super::super::table::{self, Inputs, Prediction};
    use super::super::wire::{self, View};
    use super::build;

    fn t(name: &str, shape: Vec<usize>, data: TensorData) -> Tensor {
        Tensor::new(name, shape, data).unwrap()
    }

    fn pred(id: &str, version: &str, inputs: Inputs, outputs: Vec<Tensor>) -> Prediction {
        Prediction {
            deployment: "gb/ü".into(),
            version: version.into(),
            request_id: id.into(),
            time_us: 1_764_400_000_000_000 + id.len() as i64,
            latency_us: 250,
            inputs,
            outputs,
        }
    }

    /// Records of every shape the flat writer takes: tensors of each element type with NaN,
    /// invalid UTF-8 and several rows; raw rows of every type with nulls and values of the
    /// wrong type; several versions in one file.
    fn records() -> Vec<Vec<Prediction>> {
        let tensors = |id: &str, version: &str, seed: f32| {
            pred(
                id,
                version,
                Inputs::Tensors(vec![
                    t(
                        "X",
                        vec![2, 3],
                        TensorData::Fp32(vec![seed, f32::NAN, -0.0, 4.5, 1e30, seed * 2.0]),
                    ),
                    t("b", vec![2], TensorData::Bool(vec![true, seed > 1.0])),
                    t("i", vec![2, 1], TensorData::Int32(vec![i32::MIN, 7])),
                    t(
                        "s",
                        vec![2],
                        TensorData::Bytes(vec![b"ab".to_vec(), vec![0xff, b'x']]),
                    ),
                ]),
                vec![
                    t("label", vec![2], TensorData::Int64(vec![0, i64::MAX])),
                    t(
                        "probabilities",
                        vec![2, 2],
                        TensorData::Fp64(vec![0.25, 0.75, f64::NAN, f64::INFINITY]),
                    ),
                ],
            )
        };
        let columns = vec![
            Column::new("carrier", DType::Categorical),
            Column::new("temp", DType::Float),
            Column::new("n", DType::Int),
            Column::new("ok", DType::Bool),
            Column::new("day", DType::Date),
            Column::new("at", DType::Timestamp),
            Column::new("note", DType::String),
        ];
        let raw = |id: &str, carrier: &str| {
            pred(
                id,
                "3",
                Inputs::Rows {
                    columns: columns.clone(),
                    rows: vec![
                        vec![
                            Value::Str(carrier.into()),
                            Value::Int(39),
                            Value::Bool(true),
                            Value::Bool(false),
                            Value::Date(20_000),
                            Value::Timestamp(-5),
                            Value::Float(1.5),
                        ],
                        vec![
                            Value::Null,
                            Value::Float(f64::NAN),
                            Value::Str("x".into()),
                            Value::Int(1),
                            Value::Null,
                            Value::Date(3),
                            Value::Str(String::new()),
                        ],
                        // A short row: the missing cells are null.
                        vec![Value::Str("UA".into())],
                    ],
                },
                vec![t("label", vec![3], TensorData::Int64(vec![1, 0, 1]))],
            )
        };
        vec![
            (0..40)
                .map(|i| tensors(&format!("r{i}"), ["1", "2"][i % 2], i as f32))
                .collect(),
            (0..12)
                .map(|i| raw(&format!("q{i}"), ["UA", "AA", "é"][i % 3]))
                .collect(),
            vec![tensors("one", "1", 0.5)],
            // No float missing anywhere: the blocks' straight path.
            (0..9)
                .map(|i| {
                    let x = i as f32;
                    pred(
                        &format!("c{i}"),
                        "1",
                        Inputs::Tensors(vec![t(
                            "X",
                            vec![2, 3],
                            TensorData::Fp32(vec![x, x + 0.5, -x, 1e30, 2.0, x * 3.0]),
                        )]),
                        vec![
                            t("label", vec![2], TensorData::Int64(vec![i, 1])),
                            t(
                                "probabilities",
                                vec![2, 2],
                                TensorData::Fp64(vec![0.25, 0.75, f64::from(x), -1.0]),
                            ),
                        ],
                    )
                })
                .collect(),
        ]
    }

    #[test]
    fn the_flat_writer_reads_back_as_the_table_every_codec() {
        for group in records() {
            let packed: Vec<Vec<u8>> = group.iter().map(|p| wire::pack(&p.borrowed())).collect();
            let views: Vec<View<'_>> = packed.iter().map(|b| wire::view(b).unwrap()).collect();
            let refs: Vec<&View<'_>> = views.iter().collect();
            let expected = table::to_table(&refs);
            let group: Vec<&Prediction> = group.iter().collect();
            let (columns, rows) = build(&group).unwrap();
            assert_eq!(rows, expected.height());
            for codec in [Codec::None, Codec::Lz4Raw, Codec::Zstd(1)] {
                let bytes = Encoder::new(codec).unwrap().file(&columns, rows).unwrap();
                let back = kiln_data::plain::from_parquet_bytes(&bytes).unwrap();
                assert_eq!(back, expected, "{codec:?}");
            }
        }
    }

    #[test]
    fn list_columns_are_left_to_the_table_path() {
        let wide = table::MAX_WIDE + 1;
        let p = pred(
            "r",
            "1",
            Inputs::Tensors(vec![t(
                "img",
                vec![1, wide],
                TensorData::Int32(vec![7; wide]),
            )]),
            vec![t("bias", vec![3], TensorData::Fp64(vec![1.0, 2.0, 3.0]))],
        );
        assert!(build(&[&p]).is_none());
    }

    #[test]
    fn a_request_of_no_rows_writes_an_empty_file() {
        let p = pred(
            "r",
            "1",
            Inputs::Tensors(vec![t("X", vec![0, 2], TensorData::Fp32(vec![]))]),
            vec![t("label", vec![0], TensorData::Int64(vec![]))],
        );
        let packed = wire::pack(&p.borrowed());
        let view = wire::view(&packed).unwrap();
        let expected = table::to_table(&[&view]);
        let (columns, rows) = build(&[&p]).unwrap();
        assert_eq!(rows, 0);
        let bytes = Encoder::new(Codec::Lz4Raw)
            .unwrap()
            .file(&columns, rows)
            .unwrap();
        let back = kiln_data::plain::from_parquet_bytes(&bytes).unwrap();
        assert_eq!(back, expected);
    }
}
