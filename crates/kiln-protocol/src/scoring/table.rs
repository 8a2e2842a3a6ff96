//! Dataframe-shaped requests (`dataframe_split`, `dataframe_records`, row-object `instances`,
//! column-object `inputs`, CSV) read cell by cell, and the cells of a columns model
//! converted to values of the columns' types.

use std::collections::HashMap;

use kiln_transform::{Column, DType, Value, time};

use super::json::{self, J, quote};
use super::{Result, ScoringError};

/// One cell of a table: a JSON value or a CSV field.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Cell<'a> {
    Json(&'a J),
    Text(&'a str),
}

/// A parsed CSV body: the header and the records, each with its 1-based line.
#[derive(Debug)]
pub(crate) struct CsvTable {
    header: Vec<String>,
    records: Vec<csv::StringRecord>,
}

impl CsvTable {
    pub(crate) fn parse(text: &str) -> Result<CsvTable> {
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(text.as_bytes());
        let mut records = reader.records();
        let header: Vec<String> = match records.next() {
            Some(rec) => rec.map_err(csv_error)?.iter().map(str::to_owned).collect(),
            None => return Err(ScoringError::EmptyBody),
        };
        let mut rows = Vec::new();
        for rec in records {
            let rec = rec.map_err(csv_error)?;
            if rec.len() != header.len() {
                return Err(ScoringError::Csv {
                    line: rec.position().map_or(0, |p| p.line()),
                    message: format!(
                        "expected {} fields (as in the header), found {}",
                        header.len(),
                        rec.len()
                    ),
                });
            }
            rows.push(rec);
        }
        Ok(CsvTable {
            header,
            records: rows,
        })
    }
}

fn csv_error(e: csv::Error) -> ScoringError {
    ScoringError::Csv {
        line: e.position().map_or(0, |p| p.line()),
        message: e.to_string(),
    }
}

/// A table, borrowed from the request.
#[derive(Debug)]
pub(crate) enum Table<'a> {
    /// pandas orient=split: column names and rows of values by position.
    Split {
        columns: Vec<String>,
        data: &'a [J],
    },
    /// A list of row objects.
    Records(&'a [J]),
    /// An object of column lists.
    Dict(&'a [(String, J)]),
    Csv(&'a CsvTable),
}

impl<'a> Table<'a> {
    /// `dataframe_split`: `{"columns": [..], "data": [[..]], "index"?: [..]}`.
    pub(crate) fn split(payload: &'a J) -> Result<Table<'a>> {
        let bad = |m: String| ScoringError::BadInput(format!("`dataframe_split`: {m}"));
        let J::Obj(fields) = payload else {
            return Err(bad(format!(
                "expected an object {{\"columns\": [..], \"data\": [[..]]}}, found {}",
                payload.describe()
            )));
        };
        let get = |name: &str| fields.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v);
        let data = match get("data") {
            Some(J::Arr(rows)) => rows.as_slice(),
            Some(other) => {
                return Err(bad(format!(
                    "`data` must be a list of rows, found {}",
                    other.describe()
                )));
            }
            None => return Err(bad("`data` is missing".into())),
        };
        let columns = match get("columns") {
            Some(J::Arr(names)) => names
                .iter()
                .map(|n| match n {
                    J::Str(s) => Ok(s.clone()),
                    J::Int(i) => Ok(i.to_string()),
                    other => Err(bad(format!(
                        "column names must be strings, found {}",
                        other.describe()
                    ))),
                })
                .collect::<Result<Vec<_>>>()?,
            Some(other) => {
                return Err(bad(format!(
                    "`columns` must be a list of names, found {}",
                    other.describe()
                )));
            }
            // pandas numbers unnamed columns 0, 1, …
            None => match data.first() {
                Some(J::Arr(first)) => (0..first.len()).map(|i| i.to_string()).collect(),
                _ => Vec::new(),
            },
        };
        Ok(Table::Split { columns, data })
    }

    /// A list of row objects (`dataframe_records`, or `instances` / `inputs` of objects).
    pub(crate) fn records(payload: &'a J, key: &str) -> Result<Table<'a>> {
        match payload {
            J::Arr(rows) => Ok(Table::Records(rows)),
            other => Err(ScoringError::BadInput(format!(
                "`{key}` must be a list of row objects, found {}",
                other.describe()
            ))),
        }
    }

    /// The column names in the table's own order (the first row's keys for records).
    pub(crate) fn names(&self) -> Vec<&str> {
        match self {
            Table::Split { columns, .. } => columns.iter().map(String::as_str).collect(),
            Table::Records(rows) => match rows.first() {
                Some(J::Obj(fields)) => fields.iter().map(|(k, _)| k.as_str()).collect(),
                _ => Vec::new(),
            },
            Table::Dict(fields) => fields.iter().map(|(k, _)| k.as_str()).collect(),
            Table::Csv(csv) => csv.header.iter().map(String::as_str).collect(),
        }
    }

    /// Calls `f(row, column_index, cell)` for every row and, within it, every wanted column
    /// in order. `by_position` takes the table's own columns by position instead of by name
    /// (`wanted` is then [`Table::names`]). Errors name the missing column and its row.
    pub(crate) fn for_each_cell(
        &self,
        wanted: &[&str],
        by_position: bool,
        mut f: impl FnMut(usize, usize, Cell<'a>) -> Result<()>,
    ) -> Result<()> {
        let positions = |names: &[String]| -> Result<Vec<usize>> {
            if by_position {
                return Ok((0..names.len()).collect());
            }
            let mut index: HashMap<&str, usize> = HashMap::with_capacity(names.len());
            for (i, n) in names.iter().enumerate() {
                index.entry(n.as_str()).or_insert(i);
            }
            wanted
                .iter()
                .map(|w| {
                    index
                        .get(w)
                        .copied()
                        .ok_or_else(|| ScoringError::MissingColumn {
                            column: (*w).to_string(),
                            row: None,
                        })
                })
                .collect()
        };
        match self {
            Table::Split { columns, data } => {
                let pos = positions(columns)?;
                for (r, row) in data.iter().enumerate() {
                    let values = match row {
                        J::Arr(values) if values.len() == columns.len() => values,
                        J::Arr(values) => {
                            return Err(ScoringError::BadInput(format!(
                                "`dataframe_split` row {r} has {} values, `columns` has {}",
                                values.len(),
                                columns.len()
                            )));
                        }
                        other => {
                            return Err(ScoringError::BadInput(format!(
                                "`dataframe_split` row {r} must be a list of values, found {}",
                                other.describe()
                            )));
                        }
                    };
                    for (c, &p) in pos.iter().enumerate() {
                        f(r, c, Cell::Json(&values[p]))?;
                    }
                }
            }
            Table::Records(rows) => {
                let mut hints = vec![0usize; wanted.len()];
                for (r, row) in rows.iter().enumerate() {
                    let J::Obj(fields) = row else {
                        return Err(ScoringError::BadInput(format!(
                            "row {r} must be an object {{\"column\": value, …}}, found {}",
                            row.describe()
                        )));
                    };
                    let mut index = None;
                    for (c, name) in wanted.iter().enumerate() {
                        let cell = json::field(fields, name, &mut hints[c], &mut index)
                            .ok_or_else(|| ScoringError::MissingColumn {
                                column: (*name).to_string(),
                                row: Some(r),
                            })?;
                        f(r, c, Cell::Json(cell))?;
                    }
                }
            }
            Table::Dict(fields) => {
                let mut hint = 0;
                let mut index = None;
                let mut lists: Vec<&'a [J]> = Vec::with_capacity(wanted.len());
                for name in wanted {
                    let list = match json::field(fields, name, &mut hint, &mut index) {
                        Some(J::Arr(list)) => list.as_slice(),
                        Some(other) => {
                            return Err(ScoringError::BadInput(format!(
                                "`inputs` column `{name}` must be a list of values, found {}",
                                other.describe()
                            )));
                        }
                        None => {
                            return Err(ScoringError::MissingColumn {
                                column: (*name).to_string(),
                                row: None,
                            });
                        }
                    };
                    if let Some(first) = lists.first()
                        && first.len() != list.len()
                    {
                        return Err(ScoringError::BadInput(format!(
                            "`inputs` columns differ in length: `{}` has {} values, `{name}` has {}",
                            wanted[0],
                            first.len(),
                            list.len()
                        )));
                    }
                    lists.push(list);
                }
                let n = lists.first().map_or(0, |l| l.len());
                for r in 0..n {
                    for (c, list) in lists.iter().enumerate() {
                        f(r, c, Cell::Json(&list[r]))?;
                    }
                }
            }
            Table::Csv(csv) => {
                let pos = positions(&csv.header)?;
                for (r, rec) in csv.records.iter().enumerate() {
                    for (c, &p) in pos.iter().enumerate() {
                        f(r, c, Cell::Text(rec.get(p).unwrap_or("")))?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// Rows for a columns model: each row's values in the model's column order.
pub(crate) fn rows(table: &Table<'_>, columns: &[Column]) -> Result<Vec<Vec<Value>>> {
    let wanted: Vec<&str> = columns.iter().map(|c| c.name.as_str()).collect();
    let mut rows: Vec<Vec<Value>> = Vec::new();
    table.for_each_cell(&wanted, false, |r, c, cell| {
        if c == 0 {
            rows.push(Vec::with_capacity(columns.len()));
        }
        let column = &columns[c];
        let value = cell_value(column.dtype, cell).map_err(|message| ScoringError::BadValue {
            row: r,
            column: column.name.clone(),
            message,
        })?;
        if let Some(row) = rows.last_mut() {
            row.push(value);
        }
        Ok(())
    })?;
    Ok(rows)
}

/// Markers of a missing value in CSV (pandas' usual ones), for non-text columns.
pub(crate) fn is_na(s: &str) -> bool {
    matches!(
        s.trim(),
        "" | "NA" | "N/A" | "n/a" | "null" | "NULL" | "None" | "<NA>" | "#N/A"
    )
}

fn cell_value(dtype: DType, cell: Cell<'_>) -> Result<Value, String> {
    match cell {
        Cell::Json(j) => json_value(dtype, j),
        Cell::Text("") => Ok(Value::Null),
        Cell::Text(s) if !dtype.is_text() && is_na(s) => Ok(Value::Null),
        Cell::Text(s) => text_value(dtype, s),
    }
}

/// A JSON value as a value of `dtype`. Numeric and boolean columns also take their values
/// written as strings (`"3.5"`, `"true"`), as pandas would coerce them.
fn json_value(dtype: DType, j: &J) -> Result<Value, String> {
    let wrong = || {
        Err(format!(
            "expected {}, found {}",
            expected(dtype),
            j.describe()
        ))
    };
    Ok(match (dtype, j) {
        (_, J::Null) => Value::Null,
        (DType::String | DType::Categorical, J::Str(s)) => Value::Str(s.clone()),
        (_, J::Str(s)) => return text_value(dtype, s),
        (DType::Int, J::Int(i)) => Value::Int(*i),
        (DType::Int, J::Float(x)) => match whole(*x) {
            Some(i) => Value::Int(i),
            None => return wrong(),
        },
        (DType::Float, n) if n.as_f64().is_some() => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        (DType::Bool, J::Bool(b)) => Value::Bool(*b),
        _ => return wrong(),
    })
}

/// A text (CSV field, or a JSON string) as a value of `dtype`.
pub(crate) fn text_value(dtype: DType, s: &str) -> Result<Value, String> {
    let parsed = match dtype {
        DType::String | DType::Categorical => Some(Value::Str(s.to_owned())),
        DType::Int => parse_int(s).map(Value::Int),
        DType::Float => parse_float(s).map(Value::Float),
        DType::Bool => parse_bool(s).map(Value::Bool),
        DType::Date => time::parse_date(s).map(Value::Date),
        DType::Timestamp => time::parse_timestamp(s).map(Value::Timestamp),
    };
    parsed.ok_or_else(|| {
        format!(
            "expected {}, found the string {}",
            expected(dtype),
            quote(s)
        )
    })
}

fn expected(dtype: DType) -> &'static str {
    match dtype {
        DType::Int => "an integer",
        DType::Float => "a number",
        DType::Bool => "true or false",
        DType::String | DType::Categorical => "a string",
        DType::Date => "a date \"YYYY-MM-DD\"",
        DType::Timestamp => "an ISO 8601 timestamp \"YYYY-MM-DD HH:MM:SS\"",
    }
}

/// A float with no fraction, in the range of `i64`.
pub(crate) fn whole(x: f64) -> Option<i64> {
    if x.fract() == 0.0 {
        kiln_transform::ops::float_to_int(x)
    } else {
        None
    }
}

/// An integer written as text: `42`, `-7`, or a whole number such as `3.0` or `1e3`.
pub(crate) fn parse_int(s: &str) -> Option<i64> {
    let s = s.trim();
    s.parse::<i64>().ok().or_else(|| {
        let x = s.parse::<f64>().ok()?;
        whole(x)
    })
}

/// A number written as text (Rust's float syntax, `nan` and `inf` included).
pub(crate) fn parse_float(s: &str) -> Option<f64> {
    s.trim().parse::<f64>().ok()
}

/// `true` / `false`, in any case.
pub(crate) fn parse_bool(s: &str) -> Option<bool> {
    let s = s.trim();
    if s.eq_ignore_ascii_case("true") {
        Some(true)
    } else if s.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}
