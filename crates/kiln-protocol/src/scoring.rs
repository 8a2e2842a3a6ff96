//! MLflow's scoring protocol (`POST /invocations`) without HTTP types: [`decode`] turns a
//! request's Content-Type and body into a [`Batch`] for the model, [`encode_predictions`]
//! turns the model's output tensors into `{"predictions": …}`, and [`ScoringError`] carries
//! the status and MLflow-style JSON body of every refusal.
//!
//! Bodies are `application/json` (exactly one of `dataframe_split`, `dataframe_records`,
//! `instances`, `inputs`, plus an optional ignored `params`) or `text/csv` (a header line,
//! then rows). What the rows become depends on the model ([`ModelInputs`]):
//!
//! - **columns** (a Kiln package with a feature transform): each row is read by column name
//!   and converted to the column's [`DType`](kiln_transform::DType); extra columns are
//!   ignored, a missing one is an error; `null` (or an empty CSV field) is
//!   [`Value::Null`].
//! - **tensors** (a plain ONNX model): one input of shape `[-1, k]` takes a table of exactly
//!   `k` columns, by position (or a 1-D input `[-1]` one column); nested lists in
//!   `instances` / `inputs` become tensors of any rank; several inputs take `inputs` as an
//!   object `{input_name: tensor}` or `instances` as a list of such objects.
//!
//! Everything runs in time linear in the body and never panics.

mod dense;
mod encode;
mod json;
mod table;
mod tensor;

use kiln_ml::{Tensor, TensorSpec};
use kiln_transform::{Column, Value};

pub use encode::encode_predictions;

use json::J;
use table::{CsvTable, Table};

/// What the model takes.
#[derive(Debug, Clone, Copy)]
pub enum ModelInputs<'a> {
    /// Named raw columns (a Kiln package with a feature transform). Rows come back as
    /// values in this order.
    Columns(&'a [Column]),
    /// Tensor inputs (a plain ONNX model). Tensors come back in this order.
    Tensors(&'a [TensorSpec]),
}

/// A decoded request, ready to predict.
#[derive(Debug, Clone, PartialEq)]
pub enum Batch {
    /// For [`ModelInputs::Columns`]: each row's values in the model's column order.
    Rows { rows: Vec<Vec<Value>> },
    /// For [`ModelInputs::Tensors`]: one tensor per model input, in the model's order.
    Tensors(Vec<Tensor>),
}

impl Batch {
    /// The number of rows (the first dimension of the first tensor; 0 for a scalar).
    pub fn len(&self) -> usize {
        match self {
            Batch::Rows { rows } => rows.len(),
            Batch::Tensors(t) => t
                .first()
                .and_then(|t| t.shape.first())
                .copied()
                .unwrap_or(0),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The two body formats the scoring server reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFormat {
    Json,
    Csv,
}

const REQUIRED_INPUT_FORMAT: &str = "The input must be a JSON dictionary with exactly one of \
     the input fields {'dataframe_split', 'dataframe_records', 'instances', 'inputs'}";
const PROTOCOL_NOTE: &str = "Note: MLflow 2.0 changed the scoring protocol; bodies in the \
     MLflow 1.x format (a bare list, or a pandas orient selected by the Content-Type) are \
     not accepted. See https://mlflow.org/docs/latest/models.html#deploy-mlflow-models.";

/// Why a request could not be decoded (or predictions encoded). [`ScoringError::status`] is
/// the HTTP status, [`ScoringError::to_json`] the body.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ScoringError {
    /// Missing Content-Type, or neither `application/json` nor `text/csv` (the header's value,
    /// empty when missing).
    #[error(
        "This predictor only supports the following content types: Types: ['text/csv', \
         'application/json']. Got '{0}'."
    )]
    UnsupportedContentType(String),
    /// A `charset` other than UTF-8.
    #[error("The scoring server only supports UTF-8 (the request says charset={0})")]
    UnsupportedCharset(String),
    /// Content-Type parameters other than `charset`.
    #[error("Unrecognized content type parameters: {0}. {PROTOCOL_NOTE}")]
    UnsupportedParameters(String),
    /// An empty (or all-whitespace) body.
    #[error("the request body is empty")]
    EmptyBody,
    #[error("the request body is not valid UTF-8: invalid byte at offset {offset}")]
    InvalidUtf8 { offset: usize },
    /// The body is not JSON; `message` is serde_json's, with the line and column.
    #[error(
        "Failed to parse input from JSON. Ensure that input is a valid JSON formatted string. \
         Error: '{message}'"
    )]
    InvalidJson {
        line: usize,
        column: usize,
        message: String,
    },
    /// The JSON body is not an object with exactly one of the four input keys.
    #[error("{REQUIRED_INPUT_FORMAT}. {received}. {PROTOCOL_NOTE}")]
    InputFormat { received: String },
    /// The CSV body cannot be read (a ragged row, a missing header); `line` is 1-based.
    #[error(
        "Failed to parse input as a CSV table (a header line, then rows): line {line}: {message}"
    )]
    Csv { line: u64, message: String },
    /// A column the model needs is absent: from one row (`row`, 0-based), or from the
    /// request's column list (`row` is `None`).
    #[error("{}", missing_column(.column, *.row))]
    MissingColumn { column: String, row: Option<usize> },
    /// A value that does not fit its column (0-based row).
    #[error("row {row}, column `{column}`: {message}")]
    BadValue {
        row: usize,
        column: String,
        message: String,
    },
    /// Any other malformed input (shapes, tensor elements, the layout of a field).
    #[error("{0}")]
    BadInput(String),
    /// The model's outputs cannot be written as predictions (a server-side fault).
    #[error("cannot encode the predictions: {0}")]
    Encode(String),
}

fn missing_column(column: &str, row: Option<usize>) -> String {
    match row {
        Some(row) => format!("row {row}: missing column `{column}`"),
        None => format!("missing column `{column}`: the request has no column of that name"),
    }
}

impl ScoringError {
    /// The HTTP status: 415 for content-type problems, 500 for [`ScoringError::Encode`], 400
    /// for everything else.
    pub fn status(&self) -> u16 {
        match self {
            ScoringError::UnsupportedContentType(_)
            | ScoringError::UnsupportedCharset(_)
            | ScoringError::UnsupportedParameters(_) => 415,
            ScoringError::Encode(_) => 500,
            _ => 400,
        }
    }

    /// MLflow's error code: `INTERNAL_ERROR` for 500, `BAD_REQUEST` otherwise.
    pub fn error_code(&self) -> &'static str {
        if self.status() == 500 {
            "INTERNAL_ERROR"
        } else {
            "BAD_REQUEST"
        }
    }

    /// The response body, like MLflow's: `{"error_code":"BAD_REQUEST","message":"…"}`.
    pub fn to_json(&self) -> Vec<u8> {
        let body = serde_json::json!({
            "error_code": self.error_code(),
            "message": self.to_string(),
        });
        serde_json::to_vec(&body).unwrap_or_default()
    }
}

type Result<T, E = ScoringError> = std::result::Result<T, E>;

/// Reads a Content-Type header value: `application/json` or `text/csv` (case-insensitive),
/// with at most a `charset=utf-8` parameter.
pub fn parse_content_type(content_type: Option<&str>) -> Result<BodyFormat> {
    let raw = content_type.unwrap_or("");
    let mut parts = raw.split(';').map(str::trim);
    let mime = parts.next().unwrap_or("");
    let mut unknown = Vec::new();
    for part in parts.filter(|p| !p.is_empty()) {
        let (key, value) = part.split_once('=').unwrap_or((part, ""));
        let key = key.trim();
        if key.eq_ignore_ascii_case("charset") {
            let charset = value.trim().trim_matches('"');
            if !charset.eq_ignore_ascii_case("utf-8") {
                return Err(ScoringError::UnsupportedCharset(charset.to_string()));
            }
        } else {
            unknown.push(key.to_string());
        }
    }
    if !unknown.is_empty() {
        return Err(ScoringError::UnsupportedParameters(unknown.join(", ")));
    }
    if mime.eq_ignore_ascii_case("application/json") {
        Ok(BodyFormat::Json)
    } else if mime.eq_ignore_ascii_case("text/csv") {
        Ok(BodyFormat::Csv)
    } else {
        Err(ScoringError::UnsupportedContentType(raw.to_string()))
    }
}

/// Decodes an `/invocations` request into a batch for a model taking `inputs`.
pub fn decode(
    content_type: Option<&str>,
    body: &[u8],
    inputs: ModelInputs<'_>,
) -> Result<Batch, ScoringError> {
    if let ModelInputs::Tensors(specs) = inputs
        && let Ok(BodyFormat::Json) = parse_content_type(content_type)
        && let Ok(text) = std::str::from_utf8(body)
        && let Some(batch) = dense::try_decode(text, specs)
    {
        return Ok(batch);
    }
    decode_general(content_type, body, inputs)
}

/// [`decode`] without the fast path for dense float tensors.
pub(crate) fn decode_general(
    content_type: Option<&str>,
    body: &[u8],
    inputs: ModelInputs<'_>,
) -> Result<Batch, ScoringError> {
    let format = parse_content_type(content_type)?;
    let text = std::str::from_utf8(body).map_err(|e| ScoringError::InvalidUtf8 {
        offset: e.valid_up_to(),
    })?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if text.trim().is_empty() {
        return Err(ScoringError::EmptyBody);
    }
    match format {
        BodyFormat::Csv => {
            let csv = CsvTable::parse(text)?;
            from_table(&Table::Csv(&csv), inputs)
        }
        BodyFormat::Json => {
            let body = json::parse(text)?;
            let (key, payload) = pick_input_field(&body)?;
            match key {
                "dataframe_split" => from_table(&Table::split(payload)?, inputs),
                "dataframe_records" => from_table(&Table::records(payload, key)?, inputs),
                _ => from_tf_serving(key, payload, inputs),
            }
        }
    }
}

/// The one input field of a JSON body and its value.
fn pick_input_field(body: &J) -> Result<(&'static str, &J)> {
    const FIELDS: [&str; 4] = [
        "dataframe_split",
        "dataframe_records",
        "instances",
        "inputs",
    ];
    let J::Obj(fields) = body else {
        let received = match body {
            J::Arr(_) => "Received a list".to_string(),
            other => format!("Received {}", other.describe()),
        };
        return Err(ScoringError::InputFormat { received });
    };
    let mut found: Option<(&'static str, &J)> = None;
    let mut several = false;
    for (key, value) in fields {
        if let Some(&field) = FIELDS.iter().find(|f| **f == key.as_str()) {
            match found {
                // A repeated key: the last one wins, as in Python's json.loads.
                Some((prev, _)) if prev == field => found = Some((field, value)),
                Some(_) => several = true,
                None => found = Some((field, value)),
            }
        }
    }
    match found {
        Some(pair) if !several => Ok(pair),
        _ => {
            let names: Vec<String> = fields
                .iter()
                .map(|(k, _)| format!("'{}'", k.replace('\'', "\\'")))
                .collect();
            Err(ScoringError::InputFormat {
                received: format!(
                    "Received dictionary with input fields: [{}]",
                    names.join(", ")
                ),
            })
        }
    }
}

/// A table (a dataframe or CSV) for either kind of model.
fn from_table(table: &Table<'_>, inputs: ModelInputs<'_>) -> Result<Batch> {
    match inputs {
        ModelInputs::Columns(columns) => {
            table::rows(table, columns).map(|rows| Batch::Rows { rows })
        }
        ModelInputs::Tensors(specs) => match specs {
            [spec] => tensor::from_table(table, spec).map(|t| Batch::Tensors(vec![t])),
            _ => Err(several_inputs(specs)),
        },
    }
}

/// `instances` or `inputs` (TF-Serving's row and columnar formats).
fn from_tf_serving(key: &str, payload: &J, inputs: ModelInputs<'_>) -> Result<Batch> {
    match inputs {
        ModelInputs::Columns(columns) => {
            let table = match payload {
                J::Arr(items) => {
                    if let Some((row, item)) = items
                        .iter()
                        .enumerate()
                        .find(|(_, j)| !matches!(j, J::Obj(_)))
                    {
                        return Err(ScoringError::BadInput(format!(
                            "`{key}` row {row} is {}: this model takes named columns, so each \
                             row must be an object {{\"column\": value, …}}",
                            item.describe()
                        )));
                    }
                    Table::Records(items)
                }
                J::Obj(columns) if key == "inputs" => Table::Dict(columns),
                other => {
                    return Err(ScoringError::BadInput(format!(
                        "`{key}` must be a list of rows (objects naming the columns){}, found {}",
                        if key == "inputs" {
                            " or an object of column lists"
                        } else {
                            ""
                        },
                        other.describe()
                    )));
                }
            };
            table::rows(&table, columns).map(|rows| Batch::Rows { rows })
        }
        ModelInputs::Tensors(specs) => {
            tensor::from_tf_serving(key, payload, specs).map(Batch::Tensors)
        }
    }
}

fn several_inputs(specs: &[TensorSpec]) -> ScoringError {
    let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
    ScoringError::BadInput(format!(
        "the model has {} inputs ({}); send `inputs` as an object {{\"input_name\": tensor, …}} \
         or `instances` as a list of such objects",
        specs.len(),
        names.join(", ")
    ))
}
