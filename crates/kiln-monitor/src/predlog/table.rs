//! Predictions as table rows: one row per predicted row (a request with three rows gives three
//! rows sharing its `request_id`, numbered by `row`).
//!
//! Columns, in order:
//! - `request_id` (string), `row` (int: the row's index in its request), `time` (timestamp,
//!   µs, UTC: when the request arrived), `model` (the deployment), `version`, `latency_us`;
//! - the inputs: raw rows (a Kiln package on `/invocations`) keep their column names and
//!   types; a tensor gives one column per element of a row, `NAME_0 … NAME_{k-1}` (`X_0 … X_29`
//!   for a `[-1, 30]` input), or `NAME` for a one-dimensional tensor; a tensor with more than
//!   [`MAX_WIDE`] elements per row is one list column `NAME`;
//! - the outputs, named the same way (`label`, `probabilities_0`, `probabilities_1`). An
//!   output that is not per row (its first dimension is not the request's row count) is one
//!   list column holding the whole tensor on every row.
//!
//! Floats are f64 here (f32 values convert exactly; the flat writer, [`super::columns`],
//! keeps float32 tensors float32); NaN — a missing value to the model — is null.
//! Integers are i64, booleans bool, BYTES elements strings (invalid UTF-8 replaced). A name
//! that collides with a fixed column gets an `input_` / `output_` prefix, an output that
//! collides with an input an `output_` prefix.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;

use kiln_data::plain::{PlainColumn, PlainTable};
use kiln_ml::Tensor;
use kiln_transform::{Column, DType, Value};

use super::wire::{self, Elem, InputsView, TensorView, View};

/// Elements per row above which a tensor is one list column instead of one column each.
pub const MAX_WIDE: usize = 256;

/// The fixed columns, in order.
pub const FIXED: [&str; 6] = [
    "request_id",
    "row",
    "time",
    "model",
    "version",
    "latency_us",
];

/// One answered request, as the log takes it (owned; see [`PredictionRef`] for the borrowed
/// form the data plane hands over).
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    /// The served name.
    pub deployment: String,
    pub version: String,
    pub request_id: String,
    /// When the request arrived, µs since the Unix epoch (UTC).
    pub time_us: i64,
    pub latency_us: u64,
    pub inputs: Inputs,
    pub outputs: Vec<Tensor>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Inputs {
    /// The model's input tensors.
    Tensors(Vec<Tensor>),
    /// Raw rows before a feature transform: its input columns, each row's values in order.
    Rows {
        columns: Vec<Column>,
        rows: Vec<Vec<Value>>,
    },
}

/// One answered request, borrowed from the request that made it: logging copies it once,
/// into the log's buffer, and nothing else.
#[derive(Debug, Clone, Copy)]
pub struct PredictionRef<'a> {
    pub deployment: &'a str,
    pub version: &'a str,
    pub request_id: &'a str,
    pub time_us: i64,
    pub latency_us: u64,
    pub inputs: InputsRef<'a>,
    pub outputs: &'a [Tensor],
}

#[derive(Debug, Clone, Copy)]
pub enum InputsRef<'a> {
    Tensors(&'a [Tensor]),
    Rows {
        columns: &'a [Column],
        rows: &'a [Vec<Value>],
    },
}

impl Prediction {
    pub fn borrowed(&self) -> PredictionRef<'_> {
        PredictionRef {
            deployment: &self.deployment,
            version: &self.version,
            request_id: &self.request_id,
            time_us: self.time_us,
            latency_us: self.latency_us,
            inputs: match &self.inputs {
                Inputs::Tensors(t) => InputsRef::Tensors(t),
                Inputs::Rows { columns, rows } => InputsRef::Rows { columns, rows },
            },
            outputs: &self.outputs,
        }
    }

    /// See [`PredictionRef::rows`].
    pub fn rows(&self) -> usize {
        self.borrowed().rows()
    }

    /// See [`PredictionRef::buffer_bytes`].
    pub fn buffer_bytes(&self) -> usize {
        self.borrowed().buffer_bytes()
    }
}

impl PredictionRef<'_> {
    /// The rows the request predicted: the first input's first dimension (1 for a scalar).
    pub fn rows(&self) -> usize {
        match self.inputs {
            InputsRef::Rows { rows, .. } => rows.len(),
            InputsRef::Tensors(ts) => ts
                .first()
                .or(self.outputs.first())
                .map_or(1, |t| t.shape.first().copied().unwrap_or(1)),
        }
    }

    /// The bytes the record takes in the log's buffer (packed, see [`wire`]): what the
    /// buffer's byte bound counts.
    pub fn buffer_bytes(&self) -> usize {
        wire::packed_len(self)
    }
}

/// The physical type of a column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Kind {
    /// A float32 tensor's elements: `FLOAT` in the flat writer's files (the table path,
    /// which only list schemas take, writes every float as `DOUBLE`).
    F32,
    F64,
    I64,
    Bool,
    Str,
    Date,
    Timestamp,
    List,
}

fn elem_kind(e: Elem) -> Kind {
    match e {
        Elem::Bool => Kind::Bool,
        Elem::Int32 | Elem::Int64 => Kind::I64,
        Elem::Fp32 => Kind::F32,
        Elem::Fp64 => Kind::F64,
        Elem::Bytes => Kind::Str,
    }
}

fn dtype_kind(d: DType) -> Kind {
    match d {
        DType::Int => Kind::I64,
        DType::Float => Kind::F64,
        DType::Bool => Kind::Bool,
        DType::String | DType::Categorical => Kind::Str,
        DType::Date => Kind::Date,
        DType::Timestamp => Kind::Timestamp,
    }
}

fn empty(kind: Kind, cap: usize) -> PlainColumn {
    match kind {
        Kind::F32 | Kind::F64 => PlainColumn::F64(Vec::with_capacity(cap)),
        Kind::I64 => PlainColumn::I64(Vec::with_capacity(cap)),
        Kind::Bool => PlainColumn::Bool(Vec::with_capacity(cap)),
        Kind::Str => PlainColumn::Str(Vec::with_capacity(cap)),
        Kind::Date => PlainColumn::Date(Vec::with_capacity(cap)),
        Kind::Timestamp => PlainColumn::Timestamp(Vec::with_capacity(cap)),
        Kind::List => PlainColumn::List(Vec::with_capacity(cap)),
    }
}

/// How a tensor is laid out in columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Layout {
    /// Rank 1 and per row: one column `NAME`.
    Scalar,
    /// Per row, `width` elements each: columns `NAME_0 …`.
    Wide(usize),
    /// Per row, more than [`MAX_WIDE`] elements: one list column.
    RowList(usize),
    /// Not per row: the whole tensor on every row.
    Whole,
}

pub(crate) fn layout(shape: &[usize], rows: usize) -> Layout {
    match shape.split_first() {
        Some((&n, rest)) if n == rows => {
            let width: usize = rest.iter().product();
            if rest.is_empty() {
                Layout::Scalar
            } else if width > MAX_WIDE {
                Layout::RowList(width)
            } else {
                Layout::Wide(width)
            }
        }
        _ => Layout::Whole,
    }
}

/// A group key: records with equal keys have the same columns.
pub(crate) fn schema_key(p: &View<'_>) -> String {
    let rows = p.rows();
    let mut k = String::new();
    let tensors = |k: &mut String, ts: &[TensorView<'_>]| {
        for t in ts {
            let _ = write!(
                k,
                "{}\u{1}{:?}\u{1}{:?}\u{2}",
                t.name,
                elem_kind(t.elem),
                layout(&t.shape, rows)
            );
        }
    };
    match &p.inputs {
        InputsView::Tensors(ts) => {
            k.push('T');
            tensors(&mut k, ts);
        }
        InputsView::Rows { columns, .. } => {
            k.push('R');
            for (name, dtype) in columns {
                let _ = write!(k, "{name}\u{1}{dtype:?}\u{2}");
            }
        }
    }
    k.push('\u{3}');
    tensors(&mut k, &p.outputs);
    k
}

/// Where a column's values come from.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Source {
    Fixed(usize),
    /// Tensor `t` (of the inputs or the outputs), element `j` of each row.
    Elem {
        input: bool,
        t: usize,
        j: usize,
    },
    /// Tensor `t`, each row's elements as a list.
    RowList {
        input: bool,
        t: usize,
    },
    /// Tensor `t`, all of it on every row.
    Whole {
        input: bool,
        t: usize,
    },
    /// Raw column `c`.
    Raw(usize),
}

pub(crate) struct Spec {
    pub(crate) name: String,
    pub(crate) kind: Kind,
    pub(crate) source: Source,
}

/// Adds a column named `name`, or `prefix + name` (then `…_2`, `…_3`) if that is taken.
fn push_spec(
    out: &mut Vec<Spec>,
    used: &mut HashSet<String>,
    name: String,
    prefix: &str,
    kind: Kind,
    source: Source,
) {
    let mut n = name.clone();
    if used.contains(&n) {
        n = format!("{prefix}{name}");
    }
    let mut k = 2;
    while used.contains(&n) {
        n = format!("{prefix}{name}_{k}");
        k += 1;
    }
    used.insert(n.clone());
    out.push(Spec {
        name: n,
        kind,
        source,
    });
}

fn tensor_specs(
    out: &mut Vec<Spec>,
    used: &mut HashSet<String>,
    ts: &[TensorView<'_>],
    rows: usize,
    input: bool,
) {
    let prefix = if input { "input_" } else { "output_" };
    for (ti, t) in ts.iter().enumerate() {
        let kind = elem_kind(t.elem);
        match layout(&t.shape, rows) {
            Layout::Scalar => push_spec(
                out,
                used,
                t.name.to_string(),
                prefix,
                kind,
                Source::Elem { input, t: ti, j: 0 },
            ),
            Layout::Wide(w) => {
                for j in 0..w {
                    push_spec(
                        out,
                        used,
                        format!("{}_{j}", t.name),
                        prefix,
                        kind,
                        Source::Elem { input, t: ti, j },
                    );
                }
            }
            Layout::RowList(_) => push_spec(
                out,
                used,
                t.name.to_string(),
                prefix,
                Kind::List,
                Source::RowList { input, t: ti },
            ),
            Layout::Whole => push_spec(
                out,
                used,
                t.name.to_string(),
                prefix,
                Kind::List,
                Source::Whole { input, t: ti },
            ),
        }
    }
}

/// The columns of records shaped like `p`.
pub(crate) fn specs(p: &View<'_>) -> Vec<Spec> {
    const FIXED_KINDS: [Kind; 6] = [
        Kind::Str,
        Kind::I64,
        Kind::Timestamp,
        Kind::Str,
        Kind::Str,
        Kind::I64,
    ];
    let rows = p.rows();
    let mut out: Vec<Spec> = FIXED
        .iter()
        .zip(FIXED_KINDS)
        .enumerate()
        .map(|(i, (n, kind))| Spec {
            name: (*n).to_string(),
            kind,
            source: Source::Fixed(i),
        })
        .collect();
    let mut used: HashSet<String> = FIXED.iter().map(|s| (*s).to_string()).collect();
    match &p.inputs {
        InputsView::Tensors(ts) => tensor_specs(&mut out, &mut used, ts, rows, true),
        InputsView::Rows { columns, .. } => {
            for (ci, (name, dtype)) in columns.iter().enumerate() {
                push_spec(
                    &mut out,
                    &mut used,
                    (*name).to_string(),
                    "input_",
                    dtype_kind(*dtype),
                    Source::Raw(ci),
                );
            }
        }
    }
    tensor_specs(&mut out, &mut used, &p.outputs, rows, false);
    out
}

/// A float as the log stores it: NaN (a missing value to the model) is null.
pub(crate) fn f(x: f64) -> Option<f64> {
    (!x.is_nan()).then_some(x)
}

/// Elements `range` of a tensor as a plain column.
fn slice(t: &TensorView<'_>, range: std::ops::Range<usize>) -> PlainColumn {
    match t.elem {
        Elem::Bool => PlainColumn::Bool(range.map(|i| t.bool_at(i)).collect()),
        Elem::Int32 | Elem::Int64 => PlainColumn::I64(range.map(|i| t.i64_at(i)).collect()),
        Elem::Fp32 | Elem::Fp64 => {
            PlainColumn::F64(range.map(|i| t.f64_at(i).and_then(f)).collect())
        }
        Elem::Bytes => PlainColumn::Str(
            range
                .map(|i| {
                    t.bytes_at(i)
                        .map(|b| String::from_utf8_lossy(b).into_owned())
                })
                .collect(),
        ),
    }
}

/// Appends element `i` of a tensor (null when it has fewer elements).
fn push_elem(col: &mut PlainColumn, t: &TensorView<'_>, i: usize) {
    match col {
        PlainColumn::Bool(c) => c.push(t.bool_at(i)),
        PlainColumn::I64(c) => c.push(t.i64_at(i)),
        PlainColumn::F64(c) => c.push(t.f64_at(i).and_then(f)),
        PlainColumn::Str(c) => c.push(
            t.bytes_at(i)
                .map(|b| String::from_utf8_lossy(b).into_owned()),
        ),
        c => push_null(c),
    }
}

fn push_null(col: &mut PlainColumn) {
    match col {
        PlainColumn::F64(c) => c.push(None),
        PlainColumn::I64(c) => c.push(None),
        PlainColumn::Bool(c) => c.push(None),
        PlainColumn::Str(c) => c.push(None),
        PlainColumn::Date(c) => c.push(None),
        PlainColumn::Timestamp(c) => c.push(None),
        PlainColumn::List(c) => c.push(None),
    }
}

/// Appends a raw value, converted to the column's type (null when it does not convert).
fn push_value(col: &mut PlainColumn, v: Option<&Value>) {
    let Some(v) = v.filter(|v| !v.is_null()) else {
        push_null(col);
        return;
    };
    match col {
        PlainColumn::F64(c) => c.push(v.to_f64().and_then(f)),
        PlainColumn::I64(c) => c.push(match v {
            Value::Int(i) | Value::Timestamp(i) => Some(*i),
            Value::Bool(b) => Some(i64::from(*b)),
            Value::Date(d) => Some(i64::from(*d)),
            _ => None,
        }),
        PlainColumn::Bool(c) => c.push(match v {
            Value::Bool(b) => Some(*b),
            _ => None,
        }),
        PlainColumn::Str(c) => c.push(Some(match v {
            Value::Str(s) => s.clone(),
            other => other.to_string(),
        })),
        PlainColumn::Date(c) => c.push(match v {
            Value::Date(d) => Some(*d),
            _ => None,
        }),
        PlainColumn::Timestamp(c) => c.push(match v {
            Value::Timestamp(t) => Some(*t),
            _ => None,
        }),
        PlainColumn::List(c) => c.push(None),
    }
}

/// Records of one schema (equal [`schema_key`]s) as one table.
pub(crate) fn to_table(group: &[&View<'_>]) -> PlainTable {
    let Some(first) = group.first() else {
        return PlainTable::default();
    };
    let specs = specs(first);
    let total: usize = group.iter().map(|p| p.rows()).sum();
    let mut cols: Vec<PlainColumn> = specs.iter().map(|s| empty(s.kind, total)).collect();
    for p in group {
        let rows = p.rows();
        let tensor = |input: bool, t: usize| -> Option<&TensorView<'_>> {
            if input {
                match &p.inputs {
                    InputsView::Tensors(ts) => ts.get(t),
                    InputsView::Rows { .. } => None,
                }
            } else {
                p.outputs.get(t)
            }
        };
        for (spec, col) in specs.iter().zip(cols.iter_mut()) {
            match spec.source {
                Source::Fixed(i) => match (i, &mut *col) {
                    (0, PlainColumn::Str(c)) => {
                        c.extend((0..rows).map(|_| Some(p.request_id.to_string())));
                    }
                    (1, PlainColumn::I64(c)) => c.extend((0..rows).map(|r| Some(r as i64))),
                    (2, PlainColumn::Timestamp(c)) => c.extend((0..rows).map(|_| Some(p.time_us))),
                    (3, PlainColumn::Str(c)) => {
                        c.extend((0..rows).map(|_| Some(p.deployment.to_string())));
                    }
                    (4, PlainColumn::Str(c)) => {
                        c.extend((0..rows).map(|_| Some(p.version.to_string())));
                    }
                    (5, PlainColumn::I64(c)) => {
                        let l = i64::try_from(p.latency_us).unwrap_or(i64::MAX);
                        c.extend((0..rows).map(|_| Some(l)));
                    }
                    (_, c) => (0..rows).for_each(|_| push_null(c)),
                },
                Source::Elem { input, t, j } => {
                    let Some(t) = tensor(input, t) else {
                        (0..rows).for_each(|_| push_null(col));
                        continue;
                    };
                    let width: usize = t.shape.iter().skip(1).product();
                    for r in 0..rows {
                        push_elem(col, t, r * width + j);
                    }
                }
                Source::RowList { input, t } => {
                    let PlainColumn::List(c) = col else { continue };
                    let Some(t) = tensor(input, t) else {
                        c.extend((0..rows).map(|_| None));
                        continue;
                    };
                    let width: usize = t.shape.iter().skip(1).product();
                    for r in 0..rows {
                        let end = ((r + 1) * width).min(t.len());
                        c.push(Some(slice(t, (r * width).min(end)..end)));
                    }
                }
                Source::Whole { input, t } => {
                    let PlainColumn::List(c) = col else { continue };
                    let whole = tensor(input, t).map(|t| slice(t, 0..t.len()));
                    c.extend((0..rows).map(|_| whole.clone()));
                }
                Source::Raw(ci) => {
                    let InputsView::Rows { rows: raw, .. } = &p.inputs else {
                        (0..rows).for_each(|_| push_null(col));
                        continue;
                    };
                    for row in raw {
                        push_value(col, row.get(ci));
                    }
                }
            }
        }
    }
    PlainTable {
        columns: specs.into_iter().map(|s| s.name).zip(cols).collect(),
    }
}

/// Records grouped by schema, one table each (in order of first appearance).
pub fn views_to_tables(records: &[&View<'_>]) -> Vec<PlainTable> {
    let mut order: Vec<String> = vec![];
    let mut groups: BTreeMap<String, Vec<&View<'_>>> = BTreeMap::new();
    for p in records {
        let k = schema_key(p);
        if !groups.contains_key(&k) {
            order.push(k.clone());
        }
        groups.entry(k).or_default().push(p);
    }
    order.iter().map(|k| to_table(&groups[k])).collect()
}

/// Owned predictions grouped by schema, one table each (packed and read back, as the
/// writer does).
pub fn to_tables(records: &[&Prediction]) -> Vec<PlainTable> {
    let packed: Vec<Vec<u8>> = records.iter().map(|p| wire::pack(&p.borrowed())).collect();
    let views: Vec<View<'_>> = packed.iter().filter_map(|b| wire::view(b)).collect();
    let refs: Vec<&View<'_>> = views.iter().collect();
    views_to_tables(&refs)
}

#[cfg(test)]
mod tests {
    use super::super::schema::Schema;
    use super::*;
    use kiln_ml::TensorData;

    fn t(name: &str, shape: Vec<usize>, data: TensorData) -> Tensor {
        Tensor::new(name, shape, data).unwrap()
    }

    fn pred(inputs: Inputs, outputs: Vec<Tensor>) -> Prediction {
        Prediction {
            deployment: "gb".into(),
            version: "1".into(),
            request_id: "r".into(),
            time_us: 1_000_000,
            latency_us: 250,
            inputs,
            outputs,
        }
    }

    #[test]
    fn tensors_become_a_column_per_element_and_outputs_follow() {
        let p = pred(
            Inputs::Tensors(vec![t(
                "X",
                vec![2, 3],
                TensorData::Fp32(vec![1.0, 2.0, f32::NAN, 4.0, 5.0, 6.0]),
            )]),
            vec![
                t("label", vec![2], TensorData::Int64(vec![0, 1])),
                t(
                    "probabilities",
                    vec![2, 2],
                    TensorData::Fp32(vec![0.75, 0.25, 0.5, 0.5]),
                ),
            ],
        );
        let table = to_tables(&[&p]).remove(0);
        assert_eq!(
            table.names(),
            [
                "request_id",
                "row",
                "time",
                "model",
                "version",
                "latency_us",
                "X_0",
                "X_1",
                "X_2",
                "label",
                "probabilities_0",
                "probabilities_1"
            ]
        );
        assert_eq!(table.height(), 2);
        assert_eq!(
            table.column("row"),
            Some(&PlainColumn::I64(vec![Some(0), Some(1)]))
        );
        assert_eq!(
            table.column("X_2"),
            Some(&PlainColumn::F64(vec![None, Some(6.0)]))
        );
        assert_eq!(
            table.column("label"),
            Some(&PlainColumn::I64(vec![Some(0), Some(1)]))
        );
        assert_eq!(
            table.column("probabilities_1"),
            Some(&PlainColumn::F64(vec![Some(0.25), Some(0.5)]))
        );
        assert_eq!(
            table.column("time"),
            Some(&PlainColumn::Timestamp(vec![Some(1_000_000); 2]))
        );
        table.check().unwrap();
    }

    #[test]
    fn wide_and_whole_tensors_are_lists_and_names_never_collide() {
        let wide = MAX_WIDE + 1;
        let p = pred(
            Inputs::Tensors(vec![
                t("img", vec![1, wide], TensorData::Int32(vec![7; wide])),
                t("row", vec![1], TensorData::Bool(vec![true])),
            ]),
            vec![
                t("row", vec![1], TensorData::Fp64(vec![0.5])),
                t("bias", vec![3], TensorData::Fp64(vec![1.0, 2.0, 3.0])),
            ],
        );
        let table = to_tables(&[&p]).remove(0);
        assert_eq!(
            &table.names()[6..],
            ["img", "input_row", "output_row", "bias"]
        );
        let PlainColumn::List(l) = table.column("img").unwrap() else {
            panic!("img is not a list")
        };
        assert_eq!(l[0], Some(PlainColumn::I64(vec![Some(7); wide])));
        assert_eq!(
            table.column("bias"),
            Some(&PlainColumn::List(vec![Some(PlainColumn::F64(vec![
                Some(1.0),
                Some(2.0),
                Some(3.0)
            ]))]))
        );
    }

    #[test]
    fn raw_rows_keep_their_names_and_types_and_schemas_group() {
        let columns = vec![
            Column::new("carrier", DType::Categorical),
            Column::new("temp", DType::Float),
            Column::new("time_hour", DType::Timestamp),
        ];
        let raw = pred(
            Inputs::Rows {
                columns: columns.clone(),
                rows: vec![
                    vec![Value::Str("UA".into()), Value::Int(39), Value::Timestamp(5)],
                    vec![Value::Null, Value::Float(1.5), Value::Null],
                ],
            },
            vec![t("label", vec![2], TensorData::Int64(vec![1, 0]))],
        );
        let tensor = pred(
            Inputs::Tensors(vec![t("X", vec![1, 1], TensorData::Fp64(vec![2.0]))]),
            vec![t("label", vec![1], TensorData::Int64(vec![1]))],
        );
        let tables = to_tables(&[&raw, &tensor, &raw]);
        assert_eq!(tables.len(), 2);
        let r = &tables[0];
        assert_eq!(r.height(), 4);
        assert_eq!(
            r.column("carrier"),
            Some(&PlainColumn::Str(vec![
                Some("UA".into()),
                None,
                Some("UA".into()),
                None
            ]))
        );
        assert_eq!(
            r.column("temp"),
            Some(&PlainColumn::F64(vec![
                Some(39.0),
                Some(1.5),
                Some(39.0),
                Some(1.5)
            ]))
        );
        assert_eq!(
            r.column("time_hour"),
            Some(&PlainColumn::Timestamp(vec![Some(5), None, Some(5), None]))
        );
        assert_eq!(tables[1].names()[6..], ["X_0", "label"]);
        // The serving threads' schemas agree with the keys.
        let mut other_rows = raw.clone();
        if let Inputs::Rows { columns, .. } = &mut other_rows.inputs {
            columns[1].dtype = DType::Int;
        }
        let records = [&raw, &tensor, &other_rows];
        let packed: Vec<Vec<u8>> = records.iter().map(|p| wire::pack(&p.borrowed())).collect();
        let views: Vec<View<'_>> = packed.iter().map(|b| wire::view(b).unwrap()).collect();
        for (a, va) in records.iter().zip(&views) {
            for (b, vb) in records.iter().zip(&views) {
                let same_key = schema_key(va) == schema_key(vb);
                let schema = Schema::of(&a.borrowed());
                assert_eq!(schema == Schema::of(&b.borrowed()), same_key);
                assert_eq!(schema.matches(&b.borrowed()), same_key);
            }
        }
        assert_eq!(
            raw.buffer_bytes(),
            crate::predlog::wire::pack(&raw.borrowed()).len()
        );
    }
}
