//! A record's schema as the serving threads compare it: what decides its columns (see
//! [`table`](super::table) for the columns themselves), owned and compared against the
//! borrowed tensors of the next record.

use kiln_ml::{Tensor, TensorData};

use super::table::{InputsRef, Kind, Layout, PredictionRef, layout};
use super::wire;

/// What decides a record's columns (equal for records whose [`schema_key`](super::table::schema_key)s are equal),
/// owned, so that a serving thread can tell whether a record joins the columns it is
/// building without keeping the records before it or making a key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Schema {
    /// Input tensors, or raw input columns (name and type tag).
    inputs: SchemaInputs,
    outputs: Vec<TensorSchema>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum SchemaInputs {
    Tensors(Vec<TensorSchema>),
    Rows(Vec<(String, u8)>),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct TensorSchema {
    name: String,
    kind: Kind,
    layout: Layout,
}

fn data_kind(d: &TensorData) -> Kind {
    match d {
        TensorData::Bool(_) => Kind::Bool,
        TensorData::Int32(_) | TensorData::Int64(_) => Kind::I64,
        TensorData::Fp32(_) => Kind::F32,
        TensorData::Fp64(_) => Kind::F64,
        TensorData::Bytes(_) => Kind::Str,
    }
}

impl Schema {
    pub(crate) fn of(p: &PredictionRef<'_>) -> Schema {
        let rows = p.rows();
        let tensors = |ts: &[Tensor]| -> Vec<TensorSchema> {
            ts.iter()
                .map(|t| TensorSchema {
                    name: t.name.clone(),
                    kind: data_kind(&t.data),
                    layout: layout(&t.shape, rows),
                })
                .collect()
        };
        Schema {
            inputs: match p.inputs {
                InputsRef::Tensors(ts) => SchemaInputs::Tensors(tensors(ts)),
                InputsRef::Rows { columns, .. } => SchemaInputs::Rows(
                    columns
                        .iter()
                        .map(|c| (c.name.clone(), wire::dtype_tag(c.dtype)))
                        .collect(),
                ),
            },
            outputs: tensors(p.outputs),
        }
    }

    /// Whether `p` has these columns (`Schema::of(p) == *self`, without making it).
    pub(crate) fn matches(&self, p: &PredictionRef<'_>) -> bool {
        let rows = p.rows();
        let same = |x: &[TensorSchema], y: &[Tensor]| {
            x.len() == y.len()
                && x.iter().zip(y).all(|(s, t)| {
                    s.kind == data_kind(&t.data)
                        && s.layout == layout(&t.shape, rows)
                        && s.name == t.name
                })
        };
        let inputs = match (&self.inputs, p.inputs) {
            (SchemaInputs::Tensors(x), InputsRef::Tensors(y)) => same(x, y),
            (SchemaInputs::Rows(x), InputsRef::Rows { columns: y, .. }) => {
                x.len() == y.len()
                    && x.iter()
                        .zip(y)
                        .all(|((n, d), c)| *n == c.name && *d == wire::dtype_tag(c.dtype))
            }
            _ => false,
        };
        inputs && same(&self.outputs, p.outputs)
    }
}
