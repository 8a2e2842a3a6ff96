//! The transform spec: which raw columns a model reads, the steps that derive and encode
//! features from them, and which columns (in order) are the model's inputs. Training learns
//! it (categories on the training split) and stores it as JSON next to the model; serving
//! replays it on raw rows with [`CompiledSpec::apply_row`] / [`CompiledSpec::apply_json_row`],
//! and `kiln-data` replays it on data frames with the same semantics.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::dtype::DType;
use crate::error::{Result, TransformError};
use crate::expr::Expr;
use crate::value::Value;

/// A raw input column and its declared type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Column {
    pub name: String,
    pub dtype: DType,
}

impl Column {
    pub fn new(name: impl Into<String>, dtype: DType) -> Column {
        Column {
            name: name.into(),
            dtype,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransformSpec {
    pub inputs: Vec<Column>,
    pub steps: Vec<Step>,
    pub outputs: Vec<String>,
}

/// One step, applied in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Step {
    /// A new column computed by an expression (SQL text, parsed when the spec is compiled);
    /// `dtype` is the expression's type, checked on compile.
    Derive {
        name: String,
        expr: String,
        dtype: DType,
    },
    /// One float column per category, named `{column}={category}`: 1.0 where the value is
    /// that category, 0.0 otherwise (null and unseen values are all zeros). The source column
    /// stays.
    OneHot {
        column: String,
        categories: Vec<String>,
    },
    /// Replaces the column by the index of its value among the categories, as a float; null
    /// and unseen values are NaN (missing).
    Ordinal {
        column: String,
        categories: Vec<String>,
    },
}

impl Step {
    /// The name of a one-hot column.
    pub fn one_hot_name(column: &str, category: &str) -> String {
        format!("{column}={category}")
    }
}

/// The text of a value as a category: strings as themselves, ints in decimal, bools as
/// `true`/`false`; `None` for null. Polars' cast of these types to strings agrees.
pub fn category_key(value: &Value) -> Option<std::borrow::Cow<'_, str>> {
    use std::borrow::Cow;
    match value {
        Value::Str(s) => Some(Cow::Borrowed(s)),
        Value::Int(i) => Some(Cow::Owned(i.to_string())),
        Value::Bool(b) => Some(Cow::Borrowed(if *b { "true" } else { "false" })),
        _ => None,
    }
}

/// Types a one-hot or ordinal step can encode.
pub fn is_encodable(t: DType) -> bool {
    matches!(
        t,
        DType::String | DType::Categorical | DType::Int | DType::Bool
    )
}

impl TransformSpec {
    /// Checks the spec: names unique, every referenced column exists where it is used, every
    /// expression type-checks and has its declared type, outputs exist and are numeric or
    /// boolean after encoding.
    pub fn validate(&self) -> Result<()> {
        self.compile().map(|_| ())
    }

    /// Validates, parses and resolves every expression and builds the category lookups.
    pub fn compile(&self) -> Result<CompiledSpec> {
        let spec_err = |m: String| TransformError::Spec(m);
        let mut names: Vec<(String, DType)> = Vec::new();
        let mut slots: HashMap<String, usize> = HashMap::new();
        let define = |names: &mut Vec<(String, DType)>,
                      slots: &mut HashMap<String, usize>,
                      name: &str,
                      dtype: DType| {
            if slots.contains_key(name) {
                return Err(spec_err(format!("column `{name}` is defined twice")));
            }
            slots.insert(name.to_string(), names.len());
            names.push((name.to_string(), dtype));
            Ok(names.len() - 1)
        };
        for c in &self.inputs {
            define(&mut names, &mut slots, &c.name, c.dtype)?;
        }
        let n_inputs = names.len();
        let mut steps = Vec::with_capacity(self.steps.len());
        for step in &self.steps {
            match step {
                Step::Derive { name, expr, dtype } => {
                    let parsed = Expr::parse(expr)?;
                    let lookup = |c: &str| slots.get(c).map(|&i| names[i].1);
                    let resolved = parsed.resolve(&lookup)?;
                    let norm = |t: DType| {
                        if t == DType::Categorical {
                            DType::String
                        } else {
                            t
                        }
                    };
                    match resolved.dtype {
                        Some(t) if t == norm(*dtype) => {}
                        Some(t) => {
                            return Err(spec_err(format!(
                                "derived column `{name}` is declared {dtype}, but `{expr}` gives {t}"
                            )));
                        }
                        None => {
                            return Err(spec_err(format!(
                                "derived column `{name}`: `{expr}` is always null"
                            )));
                        }
                    }
                    let slot = define(&mut names, &mut slots, name, *dtype)?;
                    let refs = resolved
                        .expr
                        .columns()
                        .into_iter()
                        .map(|c| {
                            let i = slots[&c];
                            (c, i)
                        })
                        .collect();
                    steps.push(CompiledStep::Derive {
                        slot,
                        expr: resolved.expr,
                        refs,
                    });
                }
                Step::OneHot { column, categories } => {
                    let source = encodable_slot(&names, column, "one_hot")?;
                    let index = category_index(column, categories)?;
                    let first = names.len();
                    for category in categories {
                        define(
                            &mut names,
                            &mut slots,
                            &Step::one_hot_name(column, category),
                            DType::Float,
                        )?;
                    }
                    steps.push(CompiledStep::OneHot {
                        source,
                        first,
                        index,
                    });
                }
                Step::Ordinal { column, categories } => {
                    let slot = encodable_slot(&names, column, "ordinal")?;
                    let index = category_index(column, categories)?;
                    names[slot].1 = DType::Float;
                    steps.push(CompiledStep::Ordinal { slot, index });
                }
            }
        }
        let mut outputs = Vec::with_capacity(self.outputs.len());
        let mut seen = HashSet::new();
        for name in &self.outputs {
            if !seen.insert(name) {
                return Err(spec_err(format!("output `{name}` is listed twice")));
            }
            let Some(slot) = names.iter().position(|(n, _)| n == name) else {
                return Err(spec_err(format!(
                    "output `{name}` is not a column (columns: {})",
                    names
                        .iter()
                        .map(|(n, _)| n.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            };
            let t = names[slot].1;
            if !matches!(t, DType::Int | DType::Float | DType::Bool) {
                return Err(spec_err(format!(
                    "output `{name}` is {t}; outputs must be int, float or bool (encode text with one_hot or ordinal)"
                )));
            }
            outputs.push(slot);
        }
        Ok(CompiledSpec {
            spec: self.clone(),
            columns: names,
            n_inputs,
            steps,
            outputs,
        })
    }
}

fn encodable_slot(names: &[(String, DType)], column: &str, kind: &str) -> Result<usize> {
    let Some(slot) = names.iter().position(|(n, _)| n == column) else {
        return Err(TransformError::Spec(format!(
            "{kind} step: unknown column `{column}`"
        )));
    };
    let t = names[slot].1;
    if !is_encodable(t) {
        return Err(TransformError::Spec(format!(
            "{kind} step: column `{column}` is {t}; only string, categorical, int and bool columns can be encoded"
        )));
    }
    Ok(slot)
}

fn category_index(column: &str, categories: &[String]) -> Result<HashMap<String, usize>> {
    let mut index = HashMap::with_capacity(categories.len());
    for (i, c) in categories.iter().enumerate() {
        if index.insert(c.clone(), i).is_some() {
            return Err(TransformError::Spec(format!(
                "column `{column}`: category {c:?} is listed twice"
            )));
        }
    }
    Ok(index)
}

#[derive(Debug, Clone)]
enum CompiledStep {
    Derive {
        slot: usize,
        expr: Expr,
        /// The slots of the columns the expression reads.
        refs: Vec<(String, usize)>,
    },
    OneHot {
        source: usize,
        first: usize,
        index: HashMap<String, usize>,
    },
    Ordinal {
        slot: usize,
        index: HashMap<String, usize>,
    },
}

/// A validated spec ready to run on rows: parsed and resolved expressions, category hash
/// maps, and every column given a slot.
#[derive(Debug, Clone)]
pub struct CompiledSpec {
    spec: TransformSpec,
    /// Every column ever defined, in order of definition, with its type after the last step.
    columns: Vec<(String, DType)>,
    n_inputs: usize,
    steps: Vec<CompiledStep>,
    outputs: Vec<usize>,
}

impl CompiledSpec {
    pub fn spec(&self) -> &TransformSpec {
        &self.spec
    }

    pub fn inputs(&self) -> &[Column] {
        &self.spec.inputs
    }

    pub fn outputs(&self) -> &[String] {
        &self.spec.outputs
    }

    /// Runs the spec on one raw row. `row` gives each input column's value (`None`: the
    /// column is absent, an error naming it). Values must have the column's declared type or
    /// be null (an int is accepted for a float column). Returns the outputs in order as
    /// floats: bools 1/0, nulls NaN.
    pub fn apply_row(&self, row: &dyn Fn(&str) -> Option<Value>) -> Result<Vec<f64>> {
        let mut values = vec![Value::Null; self.columns.len()];
        for (slot, c) in self.spec.inputs.iter().enumerate() {
            let v = row(&c.name).ok_or_else(|| TransformError::MissingInput {
                column: c.name.clone(),
            })?;
            values[slot] = conform(&c.name, c.dtype, v)?;
        }
        self.run(values)
    }

    /// Runs the spec on a JSON object of raw inputs (a serving request's row), reading each
    /// input by its declared type ([`Value::from_json`]).
    pub fn apply_json_row(
        &self,
        row: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<Vec<f64>> {
        let mut values = vec![Value::Null; self.columns.len()];
        for (slot, c) in self.spec.inputs.iter().enumerate() {
            let json = row
                .get(&c.name)
                .ok_or_else(|| TransformError::MissingInput {
                    column: c.name.clone(),
                })?;
            values[slot] = Value::from_json(&c.name, c.dtype, json)?;
        }
        self.run(values)
    }

    fn run(&self, mut values: Vec<Value>) -> Result<Vec<f64>> {
        debug_assert!(values.len() >= self.n_inputs);
        for step in &self.steps {
            match step {
                CompiledStep::Derive { slot, expr, refs } => {
                    let v = {
                        let lookup = |name: &str| {
                            refs.iter()
                                .find(|(n, _)| n == name)
                                .map(|&(_, i)| values[i].clone())
                        };
                        expr.eval(&lookup)?
                    };
                    values[*slot] = v;
                }
                CompiledStep::OneHot {
                    source,
                    first,
                    index,
                } => {
                    let hit = category_key(&values[*source]).and_then(|k| index.get(k.as_ref()));
                    for i in 0..index.len() {
                        values[first + i] = Value::Float(if hit == Some(&i) { 1.0 } else { 0.0 });
                    }
                }
                CompiledStep::Ordinal { slot, index } => {
                    let code = category_key(&values[*slot])
                        .and_then(|k| index.get(k.as_ref()).map(|&i| i as f64));
                    values[*slot] = Value::Float(code.unwrap_or(f64::NAN));
                }
            }
        }
        self.outputs
            .iter()
            .map(|&slot| {
                values[slot].to_feature().ok_or_else(|| {
                    TransformError::value(
                        &self.columns[slot].0,
                        "a string output must be encoded (one_hot or ordinal)",
                    )
                })
            })
            .collect()
    }
}

/// Checks a raw value against its declared type (ints widen to floats).
fn conform(column: &str, dtype: DType, v: Value) -> Result<Value> {
    let ok = match (&v, dtype) {
        (Value::Null, _) => true,
        (Value::Int(i), DType::Float) => return Ok(Value::Float(*i as f64)),
        (Value::Str(_), DType::String | DType::Categorical) => true,
        (v, t) => v.dtype() == Some(t),
    };
    if ok {
        Ok(v)
    } else {
        Err(TransformError::value(
            column,
            format!("expected {dtype}, found {} {v}", crate::ops::type_name(&v)),
        ))
    }
}
