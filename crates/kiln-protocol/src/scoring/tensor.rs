//! Requests for tensor models: a table as one `[rows, k]` tensor, nested lists as tensors of
//! any rank, objects of tensors for several inputs.

use kiln_ml::{ElemType, Tensor, TensorData, TensorSpec};

use super::json::{self, J, quote};
use super::table::{Cell, Table, is_na, parse_bool, parse_float, parse_int, whole};
use super::{Result, ScoringError, several_inputs};

/// Elements being gathered for one tensor.
pub(crate) struct Elems(TensorData);

impl Elems {
    pub(crate) fn from_data(data: TensorData) -> Elems {
        Elems(data)
    }

    fn new(elem: ElemType) -> Elems {
        Elems(match elem {
            ElemType::Bool => TensorData::Bool(Vec::new()),
            ElemType::Int32 => TensorData::Int32(Vec::new()),
            ElemType::Int64 => TensorData::Int64(Vec::new()),
            ElemType::Fp32 => TensorData::Fp32(Vec::new()),
            ElemType::Fp64 => TensorData::Fp64(Vec::new()),
            ElemType::Bytes => TensorData::Bytes(Vec::new()),
        })
    }

    fn push(&mut self, cell: Cell<'_>) -> Result<(), String> {
        match &mut self.0 {
            TensorData::Fp32(v) => v.push(float(cell)? as f32),
            TensorData::Fp64(v) => v.push(float(cell)?),
            TensorData::Int64(v) => v.push(int(cell)?),
            TensorData::Int32(v) => {
                let i = int(cell)?;
                v.push(i32::try_from(i).map_err(|_| format!("{i} is out of the INT32 range"))?);
            }
            TensorData::Bool(v) => v.push(match (cell, text(cell)) {
                (Cell::Json(J::Bool(b)), _) => *b,
                (_, Some(s)) => parse_bool(s).ok_or_else(|| wrong("true or false", cell))?,
                _ => return Err(wrong("true or false", cell)),
            }),
            TensorData::Bytes(v) => match text(cell) {
                Some(s) => v.push(s.as_bytes().to_vec()),
                None => return Err(wrong("a string", cell)),
            },
        }
        Ok(())
    }

    fn into_data(self) -> TensorData {
        self.0
    }
}

/// The text of a CSV field or a JSON string.
fn text(cell: Cell<'_>) -> Option<&str> {
    match cell {
        Cell::Json(J::Str(s)) => Some(s),
        Cell::Text(s) => Some(s),
        Cell::Json(_) => None,
    }
}

fn wrong(expected: &str, cell: Cell<'_>) -> String {
    let found = match cell {
        Cell::Json(j) => j.describe(),
        Cell::Text(s) => format!("the text {}", quote(s)),
    };
    format!("expected {expected}, found {found}")
}

/// A float element: numbers, numeric strings, `nan`; null and missing CSV fields are NaN.
fn float(cell: Cell<'_>) -> Result<f64, String> {
    match cell {
        Cell::Json(J::Null) => Ok(f64::NAN),
        Cell::Json(J::Str(s)) => parse_float(s).ok_or_else(|| wrong("a number", cell)),
        Cell::Json(j) => j.as_f64().ok_or_else(|| wrong("a number", cell)),
        Cell::Text(s) if is_na(s) => Ok(f64::NAN),
        Cell::Text(s) => parse_float(s).ok_or_else(|| wrong("a number", cell)),
    }
}

/// An integer element: no missing values (integers have no NaN).
fn int(cell: Cell<'_>) -> Result<i64, String> {
    let missing = || "a missing value (null or an empty field) in an integer input".to_string();
    match cell {
        Cell::Json(J::Null) => Err(missing()),
        Cell::Json(J::Int(i)) => Ok(*i),
        Cell::Json(J::Float(x)) => whole(*x).ok_or_else(|| wrong("an integer", cell)),
        Cell::Json(J::Str(s)) => parse_int(s).ok_or_else(|| wrong("an integer", cell)),
        Cell::Json(_) => Err(wrong("an integer", cell)),
        Cell::Text(s) if s.trim().is_empty() => Err(missing()),
        Cell::Text(s) => parse_int(s).ok_or_else(|| wrong("an integer", cell)),
    }
}

/// A table as the single input: `[rows, k]` for a 2-D input (exactly `k` columns, by
/// position), `[rows]` for a 1-D input (one column).
pub(crate) fn from_table(table: &Table<'_>, spec: &TensorSpec) -> Result<Tensor> {
    let names = table.names();
    let k = names.len();
    let fits = match spec.shape.as_slice() {
        [_] => k == 1,
        [_, want] => *want < 0 || *want as usize == k,
        _ => {
            return Err(ScoringError::BadInput(format!(
                "input `{}` has shape {:?}: send it as nested lists in `inputs` or `instances`, \
                 not as a table",
                spec.name, spec.shape
            )));
        }
    };
    if !fits {
        let want = spec.shape.get(1).map_or(1, |&w| w);
        return Err(ScoringError::BadInput(format!(
            "input `{}` takes {want} column{} (by position), the request has {k}: {}",
            spec.name,
            if want == 1 { "" } else { "s" },
            names.join(", ")
        )));
    }
    let mut elems = Elems::new(spec.datatype);
    let mut rows = 0;
    table.for_each_cell(&names, true, |r, c, cell| {
        rows = r + 1;
        elems.push(cell).map_err(|message| ScoringError::BadValue {
            row: r,
            column: names[c].to_string(),
            message,
        })
    })?;
    let shape = if spec.shape.len() == 1 {
        vec![rows]
    } else {
        vec![rows, k]
    };
    finish(spec, shape, elems)
}

/// `instances` or `inputs` for a tensor model.
pub(crate) fn from_tf_serving(key: &str, payload: &J, specs: &[TensorSpec]) -> Result<Vec<Tensor>> {
    match (payload, specs) {
        (J::Obj(fields), _) => {
            let mut hint = 0;
            let mut index = None;
            specs
                .iter()
                .map(
                    |spec| match json::field(fields, &spec.name, &mut hint, &mut index) {
                        Some(value) => nested(spec, value),
                        None => Err(missing_input(key, &spec.name, None)),
                    },
                )
                .collect()
        }
        (J::Arr(items), _) if matches!(items.first(), Some(J::Obj(_))) => {
            let named = specs.iter().all(|s| match items.first() {
                Some(J::Obj(first)) => first.iter().any(|(k, _)| *k == s.name),
                _ => false,
            });
            match specs {
                // Row objects that do not name the input: a table of columns.
                [spec] if !named => from_table(&Table::Records(items), spec).map(|t| vec![t]),
                _ => specs.iter().map(|spec| stacked(key, items, spec)).collect(),
            }
        }
        (J::Arr(_), [spec]) => nested(spec, payload).map(|t| vec![t]),
        (J::Arr(_), _) => Err(several_inputs(specs)),
        (other, _) => Err(ScoringError::BadInput(format!(
            "`{key}` must be a list or an object of tensors, found {}",
            other.describe()
        ))),
    }
}

fn missing_input(key: &str, name: &str, row: Option<usize>) -> ScoringError {
    let at = row.map_or(String::new(), |r| format!(" in row {r}"));
    ScoringError::BadInput(format!("`{key}`: missing input `{name}`{at}"))
}

/// Row objects `{input: value}` stacked into one tensor per input (TF-Serving's row format).
fn stacked(key: &str, items: &[J], spec: &TensorSpec) -> Result<Tensor> {
    let mut hint = 0;
    let mut values: Vec<&J> = Vec::with_capacity(items.len());
    for (r, item) in items.iter().enumerate() {
        let J::Obj(fields) = item else {
            return Err(ScoringError::BadInput(format!(
                "`{key}` row {r} must be an object {{\"input\": value, …}}, found {}",
                item.describe()
            )));
        };
        let mut index = None;
        let value = json::field(fields, &spec.name, &mut hint, &mut index)
            .ok_or_else(|| missing_input(key, &spec.name, Some(r)))?;
        values.push(value);
    }
    let inner = values.first().map_or_else(Vec::new, |j| shape_of(j));
    let mut shape = vec![values.len()];
    shape.extend_from_slice(&inner);
    let mut elems = Elems::new(spec.datatype);
    let mut path = Vec::new();
    for (r, value) in values.iter().enumerate() {
        path.push(r);
        flatten(&spec.name, value, &inner, &mut path, &mut elems)?;
        path.pop();
    }
    finish(spec, shape, elems)
}

/// Nested lists (or a scalar) as a tensor; the shape comes from the first elements and
/// every list must match it.
fn nested(spec: &TensorSpec, value: &J) -> Result<Tensor> {
    let shape = shape_of(value);
    let mut elems = Elems::new(spec.datatype);
    flatten(&spec.name, value, &shape, &mut Vec::new(), &mut elems)?;
    finish(spec, shape, elems)
}

fn shape_of(mut j: &J) -> Vec<usize> {
    let mut shape = Vec::new();
    while let J::Arr(items) = j {
        shape.push(items.len());
        match items.first() {
            Some(first) => j = first,
            None => break,
        }
    }
    shape
}

fn flatten(
    name: &str,
    j: &J,
    shape: &[usize],
    path: &mut Vec<usize>,
    elems: &mut Elems,
) -> Result<()> {
    let at = |path: &[usize]| {
        let idx: Vec<String> = path.iter().map(usize::to_string).collect();
        format!("input `{name}`, element [{}]", idx.join(", "))
    };
    match (shape.split_first(), j) {
        (None, _) => elems
            .push(Cell::Json(j))
            .map_err(|m| ScoringError::BadInput(format!("{}: {m}", at(path)))),
        (Some((&len, rest)), J::Arr(items)) if items.len() == len => {
            for (i, item) in items.iter().enumerate() {
                path.push(i);
                flatten(name, item, rest, path, elems)?;
                path.pop();
            }
            Ok(())
        }
        (Some((&len, _)), other) => {
            let found = match other {
                J::Arr(items) => format!("a list of {}", items.len()),
                other => other.describe(),
            };
            Err(ScoringError::BadInput(format!(
                "{}: ragged tensor: expected a list of {len}, found {found}",
                at(path)
            )))
        }
    }
}

/// Builds the tensor and checks it against the spec; a tensor one rank short of an input
/// whose last dimension is 1 (`[n]` for `[-1, 1]`) gains that dimension.
pub(crate) fn finish(spec: &TensorSpec, mut shape: Vec<usize>, elems: Elems) -> Result<Tensor> {
    if shape.len() + 1 == spec.shape.len() && spec.shape.last() == Some(&1) {
        shape.push(1);
    }
    let bad = |e: kiln_ml::MlError| ScoringError::BadInput(e.to_string());
    let tensor = Tensor::new(spec.name.clone(), shape, elems.into_data()).map_err(bad)?;
    tensor.check(spec).map_err(bad)?;
    Ok(tensor)
}
