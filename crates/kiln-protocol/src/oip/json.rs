//! Streaming decode of the request's JSON (header). Small fields (`name`, `shape`,
//! `parameters`…) are read as `serde_json::Value`; `data` goes through a visitor that writes
//! each number straight into the model input's typed vector when `name` and `datatype` came
//! before it (as every client sends them), or into a compact untyped buffer otherwise.

use std::cell::RefCell;
use std::fmt;

use kiln_ml::{ElemType, TensorSpec};
use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use super::OipError;
use super::wire::Wire;

/// Hard cap on elements in one input.
pub(crate) const MAX_ELEMS: usize = 1 << 28;

pub(crate) struct RawRequest {
    pub id: Option<Value>,
    pub parameters: Option<Value>,
    pub inputs: Option<Vec<RawInput>>,
    pub outputs: Option<Value>,
}

pub(crate) struct RawInput {
    pub name: Option<Value>,
    pub shape: Option<Value>,
    pub datatype: Option<Value>,
    pub parameters: Option<Value>,
    pub data: Option<Parsed>,
}

/// `data` as read: the values and the nesting observed (list lengths by depth).
pub(crate) struct Parsed {
    pub coll: Collector,
    pub dims: Vec<usize>,
}

/// One JSON leaf value.
#[derive(Clone, Copy)]
pub(crate) enum Leaf<'a> {
    Bool(bool),
    I(i64),
    U(u64),
    F(f64),
    S(&'a str),
    Null,
    Object,
}

/// A leaf kept for later, when the target type was not known yet.
pub(crate) enum Owned {
    Bool(bool),
    I(i64),
    U(u64),
    F(f64),
    S(Box<str>),
    Null,
    Object,
}

impl Owned {
    fn leaf(&self) -> Leaf<'_> {
        match self {
            Owned::Bool(b) => Leaf::Bool(*b),
            Owned::I(v) => Leaf::I(*v),
            Owned::U(v) => Leaf::U(*v),
            Owned::F(v) => Leaf::F(*v),
            Owned::S(s) => Leaf::S(s),
            Owned::Null => Leaf::Null,
            Owned::Object => Leaf::Object,
        }
    }
}

impl fmt::Display for Leaf<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Leaf::Bool(b) => write!(f, "{b}"),
            Leaf::I(v) => write!(f, "{v}"),
            Leaf::U(v) => write!(f, "{v}"),
            Leaf::F(v) => write!(f, "{v:?}"),
            Leaf::S(s) => match s.char_indices().nth(40) {
                Some((cut, _)) => write!(f, "{:?}…", &s[..cut]),
                None => write!(f, "{s:?}"),
            },
            Leaf::Null => f.write_str("null"),
            Leaf::Object => f.write_str("an object"),
        }
    }
}

pub(crate) enum Out {
    Generic(Vec<Owned>),
    Bool(Vec<bool>),
    I32(Vec<i32>),
    I64(Vec<i64>),
    F32(Vec<f32>),
    F64(Vec<f64>),
    Bytes(Vec<Vec<u8>>),
}

/// A value checked against the wire datatype, before conversion to the model's type.
enum Val<'a> {
    B(bool),
    Int(i128),
    Float(f64),
    S(&'a str),
}

/// Receives leaves in row-major order, checks them against the wire datatype and stores
/// them as the model input's element type.
pub(crate) struct Collector {
    pub wire: Option<Wire>,
    pub out: Out,
    pub len: usize,
}

impl Collector {
    pub(crate) fn generic() -> Self {
        Collector {
            wire: None,
            out: Out::Generic(Vec::new()),
            len: 0,
        }
    }

    /// Caller has checked `wire.converts_to(model)`.
    pub(crate) fn typed(wire: Wire, model: ElemType, reserve: usize) -> Self {
        let out = match model {
            ElemType::Bool => Out::Bool(Vec::with_capacity(reserve)),
            ElemType::Int32 => Out::I32(Vec::with_capacity(reserve)),
            ElemType::Int64 => Out::I64(Vec::with_capacity(reserve)),
            ElemType::Fp32 => Out::F32(Vec::with_capacity(reserve)),
            ElemType::Fp64 => Out::F64(Vec::with_capacity(reserve)),
            ElemType::Bytes => Out::Bytes(Vec::with_capacity(reserve.min(1 << 16))),
        };
        Collector {
            wire: Some(wire),
            out,
            len: 0,
        }
    }

    /// Replays an untyped collection into a typed one. `field` is `inputs[i]`.
    pub(crate) fn retype(self, wire: Wire, model: ElemType, field: &str) -> Result<Self, String> {
        let Out::Generic(vals) = self.out else {
            return Ok(self);
        };
        let mut typed = Collector::typed(wire, model, vals.len());
        for v in &vals {
            typed.push(v.leaf(), field)?;
        }
        Ok(typed)
    }

    pub(crate) fn push(&mut self, leaf: Leaf<'_>, field: &str) -> Result<(), String> {
        let i = self.len;
        if i >= MAX_ELEMS {
            return Err(format!("{field}.data has more than {MAX_ELEMS} elements"));
        }
        self.len += 1;
        let Some(wire) = self.wire else {
            if let Out::Generic(v) = &mut self.out {
                v.push(match leaf {
                    Leaf::Bool(b) => Owned::Bool(b),
                    Leaf::I(v) => Owned::I(v),
                    Leaf::U(v) => Owned::U(v),
                    Leaf::F(v) => Owned::F(v),
                    Leaf::S(s) => Owned::S(s.into()),
                    Leaf::Null => Owned::Null,
                    Leaf::Object => Owned::Object,
                });
            }
            return Ok(());
        };
        let bad = |why: &dyn fmt::Display| format!("{field}.data[{i}] is {leaf}{why}");
        let val = match (wire, leaf) {
            (Wire::Bool, Leaf::Bool(b)) => Val::B(b),
            (Wire::Bool, _) => return Err(bad(&"; BOOL takes true or false")),
            (Wire::Bytes, Leaf::S(s)) => Val::S(s),
            (Wire::Bytes, _) => return Err(bad(&"; BYTES takes strings")),
            (_, Leaf::I(v)) if wire.float_max().is_some() => Val::Float(v as f64),
            (_, Leaf::U(v)) if wire.float_max().is_some() => Val::Float(v as f64),
            (_, Leaf::F(v)) if wire.float_max().is_some() => Val::Float(v),
            (_, Leaf::I(v)) => Val::Int(v.into()),
            (_, Leaf::U(v)) => Val::Int(v.into()),
            (_, Leaf::F(v)) if v.fract() == 0.0 && v.abs() < 1.9e19 => Val::Int(v as i128),
            (_, Leaf::F(_)) => {
                return Err(bad(&format_args!("; {} takes integers", wire.name())));
            }
            _ => return Err(bad(&"; a number was expected")),
        };
        if let (Val::Int(v), Some((lo, hi))) = (&val, wire.int_range())
            && !(lo..=hi).contains(v)
        {
            return Err(bad(&format_args!(", out of range for {}", wire.name())));
        }
        if let (Val::Float(v), Some(max)) = (&val, wire.float_max())
            && v.abs() > max
        {
            return Err(bad(&format_args!(", out of range for {}", wire.name())));
        }
        let model_range = |t: &str| bad(&format_args!(", out of range for the model's {t}"));
        match (&mut self.out, val) {
            (Out::Bool(o), Val::B(b)) => o.push(b),
            (Out::I32(o), Val::Int(v)) => {
                o.push(i32::try_from(v).map_err(|_| model_range("INT32"))?)
            }
            (Out::I64(o), Val::Int(v)) => {
                o.push(i64::try_from(v).map_err(|_| model_range("INT64"))?)
            }
            (Out::F32(o), Val::Int(v)) => o.push(v as f32),
            (Out::F32(o), Val::Float(v)) => {
                let f = v as f32;
                if !f.is_finite() {
                    return Err(model_range("FP32"));
                }
                o.push(f);
            }
            (Out::F64(o), Val::Int(v)) => o.push(v as f64),
            (Out::F64(o), Val::Float(v)) => o.push(v),
            (Out::Bytes(o), Val::S(s)) => o.push(s.as_bytes().to_vec()),
            _ => {
                return Err(bad(&format_args!(
                    "; {} cannot go to this input",
                    wire.name()
                )));
            }
        }
        Ok(())
    }
}

/// Shared state of one parse: the model's inputs and the first error of our own making
/// (kept here so that it reaches the caller without serde_json's position suffix).
pub(crate) struct Ctx<'a> {
    pub specs: &'a [TensorSpec],
    pub json_len: usize,
    pub err: RefCell<Option<OipError>>,
}

impl Ctx<'_> {
    fn fail<E: de::Error>(&self, msg: String) -> E {
        let e = E::custom(&msg);
        let mut slot = self.err.borrow_mut();
        if slot.is_none() {
            *slot = Some(OipError::Input(msg));
        }
        e
    }
}

pub(crate) fn parse(text: &str, specs: &[TensorSpec]) -> Result<RawRequest, OipError> {
    let ctx = Ctx {
        specs,
        json_len: text.len(),
        err: RefCell::new(None),
    };
    let mut de = serde_json::Deserializer::from_str(text);
    let res = RequestSeed(&ctx)
        .deserialize(&mut de)
        .and_then(|r| de.end().map(|()| r));
    if let Some(e) = ctx.err.borrow_mut().take() {
        return Err(e);
    }
    res.map_err(|e| {
        let full = e.to_string();
        let suffix = format!(" at line {} column {}", e.line(), e.column());
        let msg = full.strip_suffix(&suffix).unwrap_or(&full);
        let what = if e.is_data() {
            "request JSON is not an infer request"
        } else {
            "request body is not valid JSON"
        };
        OipError::Json(format!(
            "{what} at line {} column {}: {msg}",
            e.line(),
            e.column()
        ))
    })
}

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "lowercase")]
enum ReqField {
    Id,
    Parameters,
    Inputs,
    Outputs,
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "lowercase")]
enum InField {
    Name,
    Shape,
    Datatype,
    Parameters,
    Data,
    #[serde(other)]
    Other,
}

fn set<T, E: de::Error>(ctx: &Ctx, slot: &mut Option<T>, v: T, what: &str) -> Result<(), E> {
    if slot.is_some() {
        return Err(ctx.fail(format!("{what} appears twice")));
    }
    *slot = Some(v);
    Ok(())
}

struct RequestSeed<'c, 'a>(&'c Ctx<'a>);

impl<'de> DeserializeSeed<'de> for RequestSeed<'_, '_> {
    type Value = RawRequest;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<RawRequest, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for RequestSeed<'_, '_> {
    type Value = RawRequest;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an infer request object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawRequest, A::Error> {
        let ctx = self.0;
        let mut r = RawRequest {
            id: None,
            parameters: None,
            inputs: None,
            outputs: None,
        };
        while let Some(k) = map.next_key::<ReqField>()? {
            match k {
                ReqField::Id => set(ctx, &mut r.id, map.next_value()?, "`id`")?,
                ReqField::Parameters => {
                    set(ctx, &mut r.parameters, map.next_value()?, "`parameters`")?;
                }
                ReqField::Inputs => {
                    set(
                        ctx,
                        &mut r.inputs,
                        map.next_value_seed(InputsSeed(ctx))?,
                        "`inputs`",
                    )?;
                }
                ReqField::Outputs => set(ctx, &mut r.outputs, map.next_value()?, "`outputs`")?,
                ReqField::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(r)
    }
}

struct InputsSeed<'c, 'a>(&'c Ctx<'a>);

impl<'de> DeserializeSeed<'de> for InputsSeed<'_, '_> {
    type Value = Vec<RawInput>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Vec<RawInput>, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for InputsSeed<'_, '_> {
    type Value = Vec<RawInput>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("`inputs` to be a list of input tensors")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<RawInput>, A::Error> {
        let mut v = Vec::new();
        while let Some(input) = seq.next_element_seed(InputSeed {
            ctx: self.0,
            index: v.len(),
        })? {
            v.push(input);
        }
        Ok(v)
    }
}

struct InputSeed<'c, 'a> {
    ctx: &'c Ctx<'a>,
    index: usize,
}

impl<'de> DeserializeSeed<'de> for InputSeed<'_, '_> {
    type Value = RawInput;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<RawInput, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for InputSeed<'_, '_> {
    type Value = RawInput;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "inputs[{}] to be an object", self.index)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawInput, A::Error> {
        let ctx = self.ctx;
        let field = format!("inputs[{}]", self.index);
        let mut r = RawInput {
            name: None,
            shape: None,
            datatype: None,
            parameters: None,
            data: None,
        };
        while let Some(k) = map.next_key::<InField>()? {
            let what = |f: &str| format!("{field}.{f}");
            match k {
                InField::Name => set(ctx, &mut r.name, map.next_value()?, &what("name"))?,
                InField::Shape => set(ctx, &mut r.shape, map.next_value()?, &what("shape"))?,
                InField::Datatype => {
                    set(ctx, &mut r.datatype, map.next_value()?, &what("datatype"))?;
                }
                InField::Parameters => {
                    set(
                        ctx,
                        &mut r.parameters,
                        map.next_value()?,
                        &what("parameters"),
                    )?;
                }
                InField::Data => {
                    if r.data.is_some() {
                        return Err(ctx.fail(format!("{field}.data appears twice")));
                    }
                    let coll = self.collector(&r);
                    let mut st = DataState {
                        ctx,
                        field: &field,
                        coll,
                        dims: Vec::new(),
                        leaf_depth: None,
                    };
                    map.next_value_seed(DataSeed {
                        st: &mut st,
                        depth: 0,
                    })?;
                    let dims = st.dims.iter().map(|d| d.unwrap_or(0)).collect();
                    r.data = Some(Parsed {
                        coll: st.coll,
                        dims,
                    });
                }
                InField::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(r)
    }
}

impl InputSeed<'_, '_> {
    /// A typed collector when `name` and `datatype` are already known and convertible.
    fn collector(&self, r: &RawInput) -> Collector {
        let (Some(Value::String(name)), Some(Value::String(dt))) = (&r.name, &r.datatype) else {
            return Collector::generic();
        };
        let Some(spec) = self.ctx.specs.iter().find(|s| s.name == *name) else {
            return Collector::generic();
        };
        match Wire::parse(dt) {
            Some(wire) if wire.converts_to(spec.datatype) => {
                // A JSON element takes at least 2 bytes ("0,"): never reserve past that.
                let cap = self.ctx.json_len / 2;
                let want = match &r.shape {
                    Some(Value::Array(dims)) => dims
                        .iter()
                        .try_fold(1usize, |acc, d| {
                            acc.checked_mul(usize::try_from(d.as_u64()?).ok()?)
                        })
                        .unwrap_or(0),
                    _ => 0,
                };
                Collector::typed(wire, spec.datatype, want.min(cap))
            }
            _ => Collector::generic(),
        }
    }
}

struct DataState<'s, 'c, 'a> {
    ctx: &'c Ctx<'a>,
    field: &'s str,
    coll: Collector,
    /// Length of the lists at each depth (all lists at one depth must agree).
    dims: Vec<Option<usize>>,
    /// Depth at which leaves sit (all leaves must sit at one depth).
    leaf_depth: Option<usize>,
}

struct DataSeed<'r, 's, 'c, 'a> {
    st: &'r mut DataState<'s, 'c, 'a>,
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for DataSeed<'_, '_, '_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl DataSeed<'_, '_, '_, '_> {
    fn leaf<E: de::Error>(self, leaf: Leaf<'_>) -> Result<(), E> {
        let st = self.st;
        let depth = self.depth;
        let ragged = st.dims.len() > depth || st.leaf_depth.is_some_and(|l| l != depth);
        if ragged {
            let msg = format!(
                "{}.data[{}] is {leaf} where a list was expected: nested data must be rectangular",
                st.field, st.coll.len
            );
            return Err(st.ctx.fail(msg));
        }
        st.leaf_depth = Some(depth);
        st.coll.push(leaf, st.field).map_err(|m| st.ctx.fail(m))
    }
}

impl<'de> Visitor<'de> for DataSeed<'_, '_, '_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}.data to be a list of values", self.st.field)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        self.leaf(Leaf::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.leaf(Leaf::I(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.leaf(Leaf::U(v))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        self.leaf(Leaf::F(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        self.leaf(Leaf::S(v))
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.leaf(Leaf::Null)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        self.leaf(Leaf::Object)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let st = self.st;
        let depth = self.depth;
        if st.leaf_depth.is_some_and(|l| depth >= l) {
            let msg = format!(
                "{}.data[{}] is a list where a value was expected: nested data must be rectangular",
                st.field, st.coll.len
            );
            return Err(st.ctx.fail(msg));
        }
        if st.dims.len() <= depth {
            st.dims.resize(depth + 1, None);
        }
        let mut n = 0usize;
        while seq
            .next_element_seed(DataSeed {
                st: &mut *st,
                depth: depth + 1,
            })?
            .is_some()
        {
            n += 1;
        }
        match st.dims.get_mut(depth) {
            Some(slot @ None) => *slot = Some(n),
            Some(Some(m)) if *m != n => {
                let msg = format!(
                    "{}.data is not rectangular: a list at depth {depth} has {n} elements, an earlier one has {m}",
                    st.field
                );
                return Err(st.ctx.fail(msg));
            }
            _ => {}
        }
        Ok(())
    }
}
