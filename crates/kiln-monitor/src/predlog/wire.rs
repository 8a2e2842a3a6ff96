//! A prediction packed into one byte buffer: how a record whose schema has list columns
//! waits in a lane and in the writer for the table path (other records are folded into
//! columns as they come), and how a column builder reads its first record's schema.
//!
//! Why packed: a [`Prediction`] owns a dozen small allocations (strings, shapes, tensor
//! data). Kept as is, every one of them is freed on the writer thread, and the system
//! allocator serves such cross-thread frees through the allocating thread's arena lock.
//! Packed, records lie back to back in one buffer per lane. The format is private to this
//! process (native field order, little-endian numbers), never stored. The writer reads a
//! packed record in place ([`view`]): strings and tensor data are not copied out of it.
//! [`packed_len`] is also the measure of the buffer's byte bound.

use kiln_ml::{Tensor, TensorData};
use kiln_transform::{DType, Value};

#[cfg(test)]
use super::table::{Inputs, Prediction};
use super::table::{InputsRef, PredictionRef};
#[cfg(test)]
use kiln_transform::Column;

/// Packs `p` into one buffer.
pub fn pack(p: &PredictionRef<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(packed_len(p));
    pack_into(p, &mut out);
    out
}

/// Packs `p` at the end of `out` (records are packed back to back into one buffer per
/// serving thread; it grows as a vector does).
pub fn pack_into(p: &PredictionRef<'_>, out: &mut Vec<u8>) {
    put_str(out, p.deployment);
    put_str(out, p.version);
    put_str(out, p.request_id);
    out.extend_from_slice(&p.time_us.to_le_bytes());
    out.extend_from_slice(&p.latency_us.to_le_bytes());
    match p.inputs {
        InputsRef::Tensors(ts) => {
            out.push(0);
            put_tensors(out, ts);
        }
        InputsRef::Rows { columns, rows } => {
            out.push(1);
            put_u32(out, columns.len());
            for c in columns {
                put_str(out, &c.name);
                out.push(dtype_tag(c.dtype));
            }
            put_u32(out, rows.len());
            for row in rows {
                put_u32(out, row.len());
                for v in row {
                    put_value(out, v);
                }
            }
        }
    }
    put_tensors(out, p.outputs);
}

/// The packed size of `p`, exactly (so [`pack`] allocates once).
pub fn packed_len(p: &PredictionRef<'_>) -> usize {
    let s = |x: &str| 4 + x.len();
    let tensors = |ts: &[Tensor]| {
        4 + ts
            .iter()
            .map(|t| {
                s(&t.name)
                    + 4
                    + 8 * t.shape.len()
                    + 1
                    + match &t.data {
                        TensorData::Bool(v) => v.len(),
                        TensorData::Int32(v) => 4 * v.len(),
                        TensorData::Int64(v) => 8 * v.len(),
                        TensorData::Fp32(v) => 4 * v.len(),
                        TensorData::Fp64(v) => 8 * v.len(),
                        TensorData::Bytes(v) => 4 + v.iter().map(|b| 4 + b.len()).sum::<usize>(),
                    }
            })
            .sum::<usize>()
    };
    let inputs = match p.inputs {
        InputsRef::Tensors(ts) => tensors(ts),
        InputsRef::Rows { columns, rows } => {
            4 + columns.iter().map(|c| s(&c.name) + 1).sum::<usize>()
                + 4
                + rows
                    .iter()
                    .map(|r| 4 + r.iter().map(value_len).sum::<usize>())
                    .sum::<usize>()
        }
    };
    s(p.deployment) + s(p.version) + s(p.request_id) + 16 + 1 + inputs + tensors(p.outputs)
}

fn value_len(v: &Value) -> usize {
    1 + match v {
        Value::Null => 0,
        Value::Bool(_) => 1,
        Value::Int(_) | Value::Float(_) | Value::Timestamp(_) => 8,
        Value::Date(_) => 4,
        Value::Str(s) => 4 + s.len(),
    }
}

fn put_u32(out: &mut Vec<u8>, n: usize) {
    out.extend_from_slice(&(n as u32).to_le_bytes());
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_u32(out, s.len());
    out.extend_from_slice(s.as_bytes());
}

fn put_tensors(out: &mut Vec<u8>, ts: &[Tensor]) {
    put_u32(out, ts.len());
    for t in ts {
        put_str(out, &t.name);
        put_u32(out, t.shape.len());
        for d in &t.shape {
            out.extend_from_slice(&(*d as u64).to_le_bytes());
        }
        match &t.data {
            TensorData::Bool(v) => {
                out.push(0);
                out.extend(v.iter().map(|b| u8::from(*b)));
            }
            TensorData::Int32(v) => {
                out.push(1);
                put_numbers(out, v, i32::to_le_bytes);
            }
            TensorData::Int64(v) => {
                out.push(2);
                put_numbers(out, v, i64::to_le_bytes);
            }
            TensorData::Fp32(v) => {
                out.push(3);
                put_numbers(out, v, f32::to_le_bytes);
            }
            TensorData::Fp64(v) => {
                out.push(4);
                put_numbers(out, v, f64::to_le_bytes);
            }
            TensorData::Bytes(v) => {
                out.push(5);
                put_u32(out, v.len());
                for b in v {
                    put_u32(out, b.len());
                    out.extend_from_slice(b);
                }
            }
        }
    }
}

/// Numbers little-endian, one after another (one bounds check for all, not one each: this
/// runs on the request path).
fn put_numbers<T: Copy, const N: usize>(out: &mut Vec<u8>, v: &[T], le: impl Fn(T) -> [u8; N]) {
    let at = out.len();
    out.resize(at + N * v.len(), 0);
    for (dst, x) in out[at..].chunks_exact_mut(N).zip(v) {
        dst.copy_from_slice(&le(*x));
    }
}

fn put_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Null => out.push(0),
        Value::Bool(b) => {
            out.push(1);
            out.push(u8::from(*b));
        }
        Value::Int(i) => {
            out.push(2);
            out.extend_from_slice(&i.to_le_bytes());
        }
        Value::Float(f) => {
            out.push(3);
            out.extend_from_slice(&f.to_le_bytes());
        }
        Value::Str(s) => {
            out.push(4);
            put_str(out, s);
        }
        Value::Date(d) => {
            out.push(5);
            out.extend_from_slice(&d.to_le_bytes());
        }
        Value::Timestamp(t) => {
            out.push(6);
            out.extend_from_slice(&t.to_le_bytes());
        }
    }
}

pub(crate) fn dtype_tag(d: DType) -> u8 {
    match d {
        DType::Int => 0,
        DType::Float => 1,
        DType::Bool => 2,
        DType::String => 3,
        DType::Categorical => 4,
        DType::Date => 5,
        DType::Timestamp => 6,
    }
}

/// The element type of a packed tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Elem {
    Bool,
    Int32,
    Int64,
    Fp32,
    Fp64,
    Bytes,
}

/// A tensor's dimensions, held inline up to rank 4 (the writer reads one shape per tensor
/// of every record: an allocation each cost more than the rest of reading it).
#[derive(Debug, Clone, Default)]
pub struct Shape {
    dims: [usize; 4],
    len: usize,
    /// Every dimension, when there are more than 4.
    more: Vec<usize>,
}

impl Shape {
    fn push(&mut self, d: usize) {
        if self.len < self.dims.len() {
            self.dims[self.len] = d;
        } else {
            if self.more.is_empty() {
                self.more.extend_from_slice(&self.dims);
            }
            self.more.push(d);
        }
        self.len += 1;
    }
}

impl std::ops::Deref for Shape {
    type Target = [usize];

    fn deref(&self) -> &[usize] {
        if self.len <= self.dims.len() {
            &self.dims[..self.len]
        } else {
            &self.more
        }
    }
}

/// A tensor inside a packed record, read in place.
#[derive(Debug, Clone)]
pub struct TensorView<'a> {
    pub name: &'a str,
    pub shape: Shape,
    pub elem: Elem,
    /// Little-endian elements (one byte per bool); unused for `Bytes`.
    raw: &'a [u8],
    /// The elements of a `Bytes` tensor.
    items: Vec<&'a [u8]>,
}

impl TensorView<'_> {
    /// Elements in all.
    pub fn len(&self) -> usize {
        match self.elem {
            Elem::Bool => self.raw.len(),
            Elem::Int32 | Elem::Fp32 => self.raw.len() / 4,
            Elem::Int64 | Elem::Fp64 => self.raw.len() / 8,
            Elem::Bytes => self.items.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn word<const N: usize>(&self, i: usize) -> Option<[u8; N]> {
        self.raw.get(i * N..(i + 1) * N)?.try_into().ok()
    }

    /// The elements, little-endian one after another (one byte per bool); empty for
    /// `Bytes`.
    pub fn raw(&self) -> &[u8] {
        self.raw
    }

    /// Element `i` as a float (float tensors only).
    pub fn f64_at(&self, i: usize) -> Option<f64> {
        match self.elem {
            Elem::Fp32 => self.word(i).map(|w| f64::from(f32::from_le_bytes(w))),
            Elem::Fp64 => self.word(i).map(f64::from_le_bytes),
            _ => None,
        }
    }

    /// Element `i` as an integer (integer tensors only).
    pub fn i64_at(&self, i: usize) -> Option<i64> {
        match self.elem {
            Elem::Int32 => self.word(i).map(|w| i64::from(i32::from_le_bytes(w))),
            Elem::Int64 => self.word(i).map(i64::from_le_bytes),
            _ => None,
        }
    }

    pub fn bool_at(&self, i: usize) -> Option<bool> {
        match self.elem {
            Elem::Bool => self.raw.get(i).map(|b| *b != 0),
            _ => None,
        }
    }

    pub fn bytes_at(&self, i: usize) -> Option<&[u8]> {
        self.items.get(i).copied()
    }

    /// The owned tensor.
    pub fn to_tensor(&self) -> Option<Tensor> {
        let n = self.len();
        let data = match self.elem {
            Elem::Bool => TensorData::Bool((0..n).filter_map(|i| self.bool_at(i)).collect()),
            Elem::Int32 => TensorData::Int32(
                (0..n)
                    .filter_map(|i| self.word(i).map(i32::from_le_bytes))
                    .collect(),
            ),
            Elem::Int64 => TensorData::Int64((0..n).filter_map(|i| self.i64_at(i)).collect()),
            Elem::Fp32 => TensorData::Fp32(
                (0..n)
                    .filter_map(|i| self.word(i).map(f32::from_le_bytes))
                    .collect(),
            ),
            Elem::Fp64 => TensorData::Fp64((0..n).filter_map(|i| self.f64_at(i)).collect()),
            Elem::Bytes => TensorData::Bytes(self.items.iter().map(|b| b.to_vec()).collect()),
        };
        Tensor::new(self.name, self.shape.to_vec(), data).ok()
    }
}

/// A record's tensors, inline up to two (a model's inputs and outputs are one or two
/// tensors nearly always): reading a record then allocates nothing.
pub type Tensors<'a> = smallvec::SmallVec<[TensorView<'a>; 2]>;

/// A packed record's inputs, read in place (raw cells are decoded).
#[derive(Debug, Clone)]
// The tensors are inline on purpose (see `Tensors`); a view lives on the writer's stack or in
// one vector per file.
#[allow(clippy::large_enum_variant)]
pub enum InputsView<'a> {
    Tensors(Tensors<'a>),
    Rows {
        columns: Vec<(&'a str, DType)>,
        rows: Vec<Vec<Value>>,
    },
}

/// A packed record, read in place: what the writer turns into table rows.
#[derive(Debug, Clone)]
pub struct View<'a> {
    pub deployment: &'a str,
    pub version: &'a str,
    pub request_id: &'a str,
    pub time_us: i64,
    pub latency_us: u64,
    pub inputs: InputsView<'a>,
    pub outputs: Tensors<'a>,
}

impl View<'_> {
    /// The rows the request predicted (as [`PredictionRef::rows`]).
    pub fn rows(&self) -> usize {
        match &self.inputs {
            InputsView::Rows { rows, .. } => rows.len(),
            InputsView::Tensors(ts) => ts
                .first()
                .or(self.outputs.first())
                .map_or(1, |t| t.shape.first().copied().unwrap_or(1)),
        }
    }

    /// The owned prediction (the tests' round trip).
    #[cfg(test)]
    fn to_prediction(&self) -> Option<Prediction> {
        let tensors = |ts: &[TensorView<'_>]| -> Option<Vec<Tensor>> {
            ts.iter().map(TensorView::to_tensor).collect()
        };
        Some(Prediction {
            deployment: self.deployment.to_string(),
            version: self.version.to_string(),
            request_id: self.request_id.to_string(),
            time_us: self.time_us,
            latency_us: self.latency_us,
            inputs: match &self.inputs {
                InputsView::Tensors(ts) => Inputs::Tensors(tensors(ts)?),
                InputsView::Rows { columns, rows } => Inputs::Rows {
                    columns: columns.iter().map(|(n, d)| Column::new(*n, *d)).collect(),
                    rows: rows.clone(),
                },
            },
            outputs: tensors(&self.outputs)?,
        })
    }
}

/// Reads what [`pack`] wrote, in place; `None` for a malformed buffer (which this process
/// never makes).
pub fn view(buf: &[u8]) -> Option<View<'_>> {
    let mut r = Reader { buf, at: 0 };
    let deployment = r.str()?;
    let version = r.str()?;
    let request_id = r.str()?;
    let time_us = i64::from_le_bytes(r.array()?);
    let latency_us = u64::from_le_bytes(r.array()?);
    let inputs = match r.u8()? {
        0 => InputsView::Tensors(r.tensors()?),
        1 => {
            let n = r.u32()?;
            let mut columns = Vec::with_capacity(n.min(4096));
            for _ in 0..n {
                let name = r.str()?;
                let dtype = match r.u8()? {
                    0 => DType::Int,
                    1 => DType::Float,
                    2 => DType::Bool,
                    3 => DType::String,
                    4 => DType::Categorical,
                    5 => DType::Date,
                    6 => DType::Timestamp,
                    _ => return None,
                };
                columns.push((name, dtype));
            }
            let n = r.u32()?;
            let mut rows = Vec::with_capacity(n.min(1 << 16));
            for _ in 0..n {
                let k = r.u32()?;
                let mut row = Vec::with_capacity(k.min(4096));
                for _ in 0..k {
                    row.push(r.value()?);
                }
                rows.push(row);
            }
            InputsView::Rows { columns, rows }
        }
        _ => return None,
    };
    let outputs = r.tensors()?;
    (r.at == buf.len()).then_some(View {
        deployment,
        version,
        request_id,
        time_us,
        latency_us,
        inputs,
        outputs,
    })
}

/// Reads what [`pack`] wrote into an owned prediction (the tests' round trip).
#[cfg(test)]
fn unpack(buf: &[u8]) -> Option<Prediction> {
    view(buf)?.to_prediction()
}

struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.at.checked_add(n)?;
        let s = self.buf.get(self.at..end)?;
        self.at = end;
        Some(s)
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }

    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }

    fn u32(&mut self) -> Option<usize> {
        Some(u32::from_le_bytes(self.array()?) as usize)
    }

    fn str(&mut self) -> Option<&'a str> {
        let n = self.u32()?;
        std::str::from_utf8(self.take(n)?).ok()
    }

    fn tensors(&mut self) -> Option<Tensors<'a>> {
        let n = self.u32()?;
        let mut out = Tensors::with_capacity(n.min(256));
        for _ in 0..n {
            let name = self.str()?;
            let rank = self.u32()?;
            let mut shape = Shape::default();
            for _ in 0..rank {
                shape.push(usize::try_from(u64::from_le_bytes(self.array()?)).ok()?);
            }
            let len = shape.iter().try_fold(1usize, |a, d| a.checked_mul(*d))?;
            let (elem, width) = match self.u8()? {
                0 => (Elem::Bool, 1),
                1 => (Elem::Int32, 4),
                2 => (Elem::Int64, 8),
                3 => (Elem::Fp32, 4),
                4 => (Elem::Fp64, 8),
                5 => (Elem::Bytes, 0),
                _ => return None,
            };
            let (raw, items) = if elem == Elem::Bytes {
                let k = self.u32()?;
                if k != len {
                    return None;
                }
                let mut items = Vec::with_capacity(k.min(1 << 16));
                for _ in 0..k {
                    let m = self.u32()?;
                    items.push(self.take(m)?);
                }
                (&[][..], items)
            } else {
                (self.take(len.checked_mul(width)?)?, Vec::new())
            };
            out.push(TensorView {
                name,
                shape,
                elem,
                raw,
                items,
            });
        }
        Some(out)
    }

    fn value(&mut self) -> Option<Value> {
        Some(match self.u8()? {
            0 => Value::Null,
            1 => Value::Bool(self.u8()? != 0),
            2 => Value::Int(i64::from_le_bytes(self.array()?)),
            3 => Value::Float(f64::from_le_bytes(self.array()?)),
            4 => Value::Str(self.str()?.to_string()),
            5 => Value::Date(i32::from_le_bytes(self.array()?)),
            6 => Value::Timestamp(i64::from_le_bytes(self.array()?)),
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(name: &str, shape: Vec<usize>, data: TensorData) -> Tensor {
        Tensor::new(name, shape, data).unwrap()
    }

    #[test]
    fn every_kind_of_record_packs_into_its_exact_size_and_back() {
        let tensors = Prediction {
            deployment: "gb/ü".into(),
            version: "12".into(),
            request_id: "req-1".into(),
            time_us: -5,
            latency_us: u64::MAX,
            inputs: Inputs::Tensors(vec![
                t(
                    "X",
                    vec![2, 2],
                    TensorData::Fp32(vec![1.5, f32::NAN, -0.0, 3.0]),
                ),
                t("b", vec![2], TensorData::Bool(vec![true, false])),
                t("i", vec![2, 1], TensorData::Int32(vec![i32::MIN, 7])),
                t("r5", vec![2, 1, 1, 1, 1], TensorData::Fp32(vec![1.0, 2.0])),
                t(
                    "s",
                    vec![2],
                    TensorData::Bytes(vec![b"ab".to_vec(), vec![0xff]]),
                ),
            ]),
            outputs: vec![
                t("label", vec![2], TensorData::Int64(vec![0, i64::MAX])),
                t("p", vec![2, 1], TensorData::Fp64(vec![0.25, f64::INFINITY])),
            ],
        };
        let rows = Prediction {
            inputs: Inputs::Rows {
                columns: vec![
                    Column::new("a", DType::Int),
                    Column::new("b", DType::Categorical),
                    Column::new("c", DType::Date),
                    Column::new("d", DType::Timestamp),
                    Column::new("e", DType::Bool),
                    Column::new("f", DType::Float),
                    Column::new("g", DType::String),
                ],
                rows: vec![
                    vec![
                        Value::Int(-1),
                        Value::Str("UA".into()),
                        Value::Date(19_000),
                        Value::Timestamp(1),
                        Value::Bool(true),
                        Value::Float(2.5),
                        Value::Null,
                    ],
                    vec![],
                ],
            },
            ..tensors.clone()
        };
        for p in [tensors, rows] {
            let packed = pack(&p.borrowed());
            assert_eq!(packed.len(), packed_len(&p.borrowed()));
            assert_eq!(packed.capacity(), packed.len());
            let back = unpack(&packed).unwrap();
            // NaN != NaN: compare the debug forms.
            assert_eq!(format!("{back:?}"), format!("{p:?}"));
            // Any truncation is refused, never misread.
            for cut in [0, 1, packed.len() / 2, packed.len() - 1] {
                assert!(unpack(&packed[..cut]).is_none(), "cut at {cut}");
            }
        }
    }
}
