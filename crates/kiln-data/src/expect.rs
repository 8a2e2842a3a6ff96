//! Expectations: each rule of a dataset judged in one vectorised pass, a report with failing
//! counts and examples, and the failing rows collected for quarantine.
//!
//! Semantics follow Great Expectations' pandas behaviour: column rules judge the non-missing
//! values (null, and NaN in float columns, are missing) except `not_null`, which judges every
//! row; `mostly` is the fraction of judged values that must pass.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use kiln_transform::DType;
use polars::prelude::*;
use serde::{Deserialize, Serialize};

use crate::config::{Expectation, Rule, SetValue};
use crate::error::{DataError, Result};
use crate::expect_text::TextCheck;
use crate::read::Table;

/// Per row of a table, whether it broke a row-level rule.
pub type Mask = BooleanChunked;

/// How many failing examples a rule reports.
pub const EXAMPLES: usize = 5;

/// The row column added to quarantined rows (1-based data row number).
pub const ROW_COLUMN: &str = "_row";
/// The line column added to quarantined rows of CSV sources.
pub const LINE_COLUMN: &str = "_line";
/// The column listing the rules a quarantined row broke (`;`-separated).
pub const RULES_COLUMN: &str = "_rules";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Example {
    /// 1-based data row number (the header is not a row).
    pub row: u64,
    /// The line in a CSV source where the row starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    pub value: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuleResult {
    pub name: String,
    pub rule: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub column: Option<String>,
    pub success: bool,
    /// What the rule asks, in words.
    pub expected: String,
    /// Values judged (row-level rules).
    pub checked: u64,
    /// Values that failed (row-level rules).
    pub failing: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mostly: Option<f64>,
    /// The measured value of table-level rules (row count, mean, quantile, missing columns).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub examples: Vec<Example>,
    /// Why the rule could not be judged (e.g. its column is missing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValidationReport {
    pub dataset: String,
    pub source: String,
    pub digest: String,
    pub rows: u64,
    pub success: bool,
    pub rules: Vec<RuleResult>,
    /// Rows that broke at least one row-level rule.
    pub quarantined_rows: u64,
    /// Where the quarantined rows were written, if anywhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quarantine: Option<String>,
    pub elapsed_ms: u64,
}

/// The result of validating a table: the report and the failing rows (with `_row`, `_line`
/// for CSV, and `_rules` in front of the original columns).
pub struct Validation {
    pub report: ValidationReport,
    pub quarantine: DataFrame,
    /// Per row: did it break a row-level rule. Same length as the table.
    pub failed_mask: BooleanChunked,
}

/// Judges `table` against `expectations`.
pub fn validate(name: &str, table: &Table, expectations: &[Expectation]) -> Result<Validation> {
    let started = Instant::now();
    let df = &table.df;
    let rows = df.height() as u64;
    let names = unique_names(expectations);

    // Row-level rules become one boolean "fails" column each, computed in one pass.
    let mut fail_exprs: Vec<Expr> = Vec::new();
    let mut fail_of: Vec<Option<usize>> = vec![None; expectations.len()];
    let mut results: Vec<RuleResult> = Vec::with_capacity(expectations.len());
    let mut agg_exprs: Vec<Expr> = Vec::new();
    let mut agg_of: Vec<Option<usize>> = vec![None; expectations.len()];
    let mut judged_of: Vec<Option<usize>> = vec![None; expectations.len()];
    let mut text_rules: Vec<(usize, String, TextCheck)> = Vec::new();
    for (i, e) in expectations.iter().enumerate() {
        let mut r = RuleResult {
            name: names[i].clone(),
            rule: e.rule.kind().to_string(),
            column: e.rule.column().map(str::to_string),
            success: false,
            expected: describe(&e.rule),
            checked: 0,
            failing: 0,
            mostly: e.mostly,
            observed: None,
            examples: vec![],
            error: None,
        };
        match plan_rule(table, &e.rule, i) {
            Ok(Plan::Row { fails, judged }) => {
                fail_of[i] = Some(fail_exprs.len());
                fail_exprs.push(fails.alias(format!("f{i}")));
                // The judged mask sits beside the fail mask and is counted eagerly: summing
                // it in a lazy select trips Polars 0.55's common-subexpression pass when two
                // rules judge the same column.
                judged_of[i] = Some(fail_exprs.len());
                fail_exprs.push(judged.alias(format!("j{i}")));
            }
            Ok(Plan::Text { column, check }) => text_rules.push((i, column, check)),
            Ok(Plan::Aggregate(expr)) => {
                agg_of[i] = Some(agg_exprs.len());
                agg_exprs.push(expr.alias(format!("a{i}")));
            }
            Ok(Plan::Done { success, observed }) => {
                r.success = success;
                r.observed = Some(observed);
            }
            Err(msg) => r.error = Some(msg),
        }
        results.push(r);
    }

    let t0 = Instant::now();
    let fails = if fail_exprs.is_empty() {
        DataFrame::empty()
    } else {
        df.clone().lazy().select(fail_exprs).collect()?
    };
    let mut fails = fails;
    if !text_rules.is_empty() {
        let mut cols: Vec<Column> = fails.columns().to_vec();
        for (i, column, check) in &text_rules {
            let ca = df.column(column)?.str()?;
            let failing = crate::expect_text::failing(ca, check);
            fail_of[*i] = Some(cols.len());
            cols.push(failing.with_name(format!("f{i}").into()).into_column());
            judged_of[*i] = Some(cols.len());
            cols.push(
                ca.is_not_null()
                    .with_name(format!("j{i}").into())
                    .into_column(),
            );
        }
        fails = DataFrame::new(df.height(), cols)?;
    }
    tracing::debug!(elapsed_ms = t0.elapsed().as_secs_f64() * 1e3, "row rules");
    let t0 = Instant::now();
    let aggs = if agg_exprs.is_empty() {
        DataFrame::empty()
    } else {
        df.clone().lazy().select(agg_exprs).collect()?
    };
    tracing::debug!(
        elapsed_ms = t0.elapsed().as_secs_f64() * 1e3,
        "aggregate rules"
    );

    let mut example_rows: BTreeSet<usize> = BTreeSet::new();
    let mut example_idx: Vec<Vec<usize>> = vec![vec![]; expectations.len()];
    for (i, e) in expectations.iter().enumerate() {
        let r = &mut results[i];
        if let Some(fi) = fail_of[i] {
            let mask = fails
                .select_at_idx(fi)
                .expect("fail column")
                .bool()?
                .clone();
            let failing = mask.sum().unwrap_or(0) as u64;
            let judged = fails
                .select_at_idx(judged_of[i].expect("judged mask"))
                .expect("judged column")
                .bool()?
                .sum()
                .unwrap_or(0) as u64;
            r.checked = judged;
            r.failing = failing;
            r.success = match e.mostly {
                None => failing == 0,
                Some(m) => judged == 0 || (judged - failing) as f64 / judged as f64 >= m,
            };
            if failing > 0 {
                let idx: Vec<usize> = mask
                    .iter()
                    .enumerate()
                    .filter(|(_, b)| *b == Some(true))
                    .take(EXAMPLES)
                    .map(|(i, _)| i)
                    .collect();
                example_rows.extend(idx.iter().copied());
                example_idx[i] = idx;
            }
        } else if let Some(ai) = agg_of[i] {
            let v = aggs.select_at_idx(ai).expect("aggregate column").get(0)?;
            let observed = any_to_f64(&v);
            r.observed = Some(observed.map(json_num).unwrap_or(serde_json::Value::Null));
            r.success = match (observed, &e.rule) {
                (Some(x), Rule::MeanBetween { min, max, .. })
                | (Some(x), Rule::QuantileBetween { min, max, .. }) => {
                    min.is_none_or(|m| x >= m) && max.is_none_or(|m| x <= m)
                }
                _ => false,
            };
            if observed.is_none() {
                r.error = Some("the column has no values to measure".into());
            }
        }
    }

    // Examples: their values and (for CSV) their lines, found in one scan.
    let lines = table.lines_of_rows(&example_rows);
    for (i, idx) in example_idx.iter().enumerate() {
        let Some(col) = expectations[i].rule.column() else {
            continue;
        };
        let Ok(c) = df.column(col) else { continue };
        for &row in idx {
            let v = c.get(row).map(|v| any_to_json(&v)).unwrap_or_default();
            results[i].examples.push(Example {
                row: row as u64 + 1,
                line: lines.get(&row).copied(),
                value: v,
            });
        }
    }

    let t0 = Instant::now();
    let (quarantine, failed_mask) = quarantine_rows(table, &fails, &fail_of, &names)?;
    tracing::debug!(
        elapsed_ms = t0.elapsed().as_secs_f64() * 1e3,
        "quarantine rows"
    );
    let success = results.iter().all(|r| r.success);
    let report = ValidationReport {
        dataset: name.to_string(),
        source: table.source.clone(),
        digest: table.digest.clone(),
        rows,
        success,
        rules: results,
        quarantined_rows: quarantine.height() as u64,
        quarantine: None,
        elapsed_ms: started.elapsed().as_millis() as u64,
    };
    Ok(Validation {
        report,
        quarantine,
        failed_mask,
    })
}

/// Report names, made unique with `#2`, `#3`… when two rules would share one.
fn unique_names(expectations: &[Expectation]) -> Vec<String> {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    expectations
        .iter()
        .map(|e| {
            let n = e.display_name();
            let k = seen.entry(n.clone()).or_insert(0);
            *k += 1;
            if *k == 1 { n } else { format!("{n}#{k}") }
        })
        .collect()
}

enum Plan {
    /// Row-level: an expression true where a row fails, and one true where it is judged.
    Row { fails: Expr, judged: Expr },
    /// Row-level on a text column, judged per distinct value (see `expect_text`).
    Text { column: String, check: TextCheck },
    /// Table-level measured by one aggregate expression.
    Aggregate(Expr),
    /// Table-level, judged without touching the data.
    Done {
        success: bool,
        observed: serde_json::Value,
    },
}

fn plan_rule(table: &Table, rule: &Rule, index: usize) -> Result<Plan, String> {
    let column_type = |c: &str| -> Result<DType, String> {
        table.dtype_of(c).ok_or_else(|| {
            format!(
                "no column `{c}` (columns: {})",
                table
                    .schema
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
    };
    // A value is present when it is neither null nor (in float columns) NaN.
    let present = |c: &str, t: DType| -> Expr {
        if t == DType::Float {
            col(c).is_not_null().and(col(c).is_not_nan())
        } else {
            col(c).is_not_null()
        }
    };
    let row = |c: &str, t: DType, bad: Expr| -> Plan {
        Plan::Row {
            fails: present(c, t).and(bad).fill_null(lit(false)),
            judged: present(c, t),
        }
    };
    Ok(match rule {
        Rule::NotNull { column } => {
            let t = column_type(column)?;
            Plan::Row {
                fails: present(column, t).not(),
                judged: lit(true),
            }
        }
        Rule::Between {
            column,
            min,
            max,
            strict_min,
            strict_max,
        } => {
            let t = column_type(column)?;
            if !t.is_numeric() {
                return Err(format!(
                    "`between` needs a numeric column; `{column}` is {t}"
                ));
            }
            let c = col(column).cast(DataType::Float64);
            let mut ok = lit(true);
            if let Some(m) = min {
                ok = ok.and(if *strict_min {
                    c.clone().gt(lit(*m))
                } else {
                    c.clone().gt_eq(lit(*m))
                });
            }
            if let Some(m) = max {
                ok = ok.and(if *strict_max {
                    c.clone().lt(lit(*m))
                } else {
                    c.clone().lt_eq(lit(*m))
                });
            }
            row(column, t, ok.not())
        }
        Rule::InSet { column, values } if column_type(column)?.is_text() => Plan::Text {
            column: column.clone(),
            check: TextCheck::InSet(
                values
                    .iter()
                    .map(|v| match v {
                        SetValue::Str(s) => s.clone(),
                        SetValue::Int(i) => i.to_string(),
                        SetValue::Float(f) => f.to_string(),
                        SetValue::Bool(b) => b.to_string(),
                    })
                    .collect(),
            ),
        },
        Rule::InSet { column, values } => {
            let t = column_type(column)?;
            // Each rule's list gets its own name: Polars 0.55's common-subexpression pass
            // would otherwise share two equal lists as one height-1 column and fail.
            let set = set_series(values, t)
                .map_err(|e| format!("in_set({column}): {e}"))?
                .with_name(format!("set{index}").into());
            row(
                column,
                t,
                col(column).is_in(lit(set).implode(false), false).not(),
            )
        }
        Rule::Unique { column } => {
            let t = column_type(column)?;
            // Only present values count: duplicates among them fail, every occurrence.
            let keyed = when(present(column, t))
                .then(col(column))
                .otherwise(lit(NULL));
            Plan::Row {
                fails: present(column, t)
                    .and(keyed.is_duplicated())
                    .fill_null(lit(false)),
                judged: present(column, t),
            }
        }
        Rule::Regex { column, pattern } if column_type(column)?.is_text() => Plan::Text {
            column: column.clone(),
            check: TextCheck::Regex(
                regex::Regex::new(pattern)
                    .map_err(|e| format!("regex({column}): invalid pattern {pattern:?}: {e}"))?,
            ),
        },
        Rule::ValueLengths { column, min, max } if column_type(column)?.is_text() => Plan::Text {
            column: column.clone(),
            check: TextCheck::Lengths {
                min: *min,
                max: *max,
            },
        },
        Rule::Regex { column, pattern } => {
            let t = column_type(column)?;
            regex::Regex::new(pattern)
                .map_err(|e| format!("regex({column}): invalid pattern {pattern:?}: {e}"))?;
            let s = as_text(column, t);
            row(
                column,
                t,
                s.str().contains(lit(pattern.as_str()), true).not(),
            )
        }
        Rule::ValueLengths { column, min, max } => {
            let t = column_type(column)?;
            let n = as_text(column, t).str().len_chars().cast(DataType::Int64);
            let mut ok = lit(true);
            if let Some(m) = min {
                ok = ok.and(n.clone().gt_eq(lit(*m as i64)));
            }
            if let Some(m) = max {
                ok = ok.and(n.clone().lt_eq(lit(*m as i64)));
            }
            row(column, t, ok.not())
        }
        Rule::Type { column, dtype } => {
            let t = column_type(column)?;
            let compatible = t == *dtype
                || (t.is_text() && dtype.is_text())
                || (t == DType::Int && *dtype == DType::Float);
            if compatible {
                row(column, t, lit(false))
            } else if t.is_text() {
                // Text that should be typed: the values that do not convert fail.
                let conv = crate::read::text_conversion(col(column), *dtype, None);
                row(column, t, conv.is_null())
            } else if t == DType::Float && *dtype == DType::Int {
                row(
                    column,
                    t,
                    col(column)
                        .neq(col(column).floor())
                        .or(col(column).is_infinite()),
                )
            } else {
                row(column, t, lit(true))
            }
        }
        Rule::RowCount { min, max } => {
            let n = table.rows() as u64;
            Plan::Done {
                success: min.is_none_or(|m| n >= m) && max.is_none_or(|m| n <= m),
                observed: serde_json::json!(n),
            }
        }
        Rule::MeanBetween { column, .. } => {
            let t = column_type(column)?;
            if !t.is_numeric() && t != DType::Bool {
                return Err(format!(
                    "`mean_between` needs a numeric column; `{column}` is {t}"
                ));
            }
            let c = col(column).cast(DataType::Float64);
            Plan::Aggregate(c.clone().filter(present(column, t)).mean())
        }
        Rule::QuantileBetween {
            column, quantile, ..
        } => {
            let t = column_type(column)?;
            if !t.is_numeric() {
                return Err(format!(
                    "`quantile_between` needs a numeric column; `{column}` is {t}"
                ));
            }
            if !(0.0..=1.0).contains(quantile) {
                return Err(format!("quantile must be within [0, 1], got {quantile}"));
            }
            let c = col(column).cast(DataType::Float64);
            Plan::Aggregate(
                c.filter(present(column, t))
                    .quantile(lit(*quantile), QuantileMethod::Nearest),
            )
        }
        Rule::ColumnSet { columns, exact } => {
            let have: BTreeSet<&str> = table.schema.iter().map(|c| c.name.as_str()).collect();
            let want: BTreeSet<&str> = columns.iter().map(String::as_str).collect();
            let missing: Vec<&str> = want.difference(&have).copied().collect();
            let extra: Vec<&str> = if *exact {
                have.difference(&want).copied().collect()
            } else {
                vec![]
            };
            Plan::Done {
                success: missing.is_empty() && extra.is_empty(),
                observed: serde_json::json!({"missing": missing, "unexpected": extra}),
            }
        }
    })
}

fn as_text(column: &str, t: DType) -> Expr {
    if t.is_text() {
        col(column)
    } else {
        col(column).cast(DataType::String)
    }
}

fn set_series(values: &[SetValue], t: DType) -> std::result::Result<Series, String> {
    let name = "set".into();
    Ok(match t {
        DType::String | DType::Categorical => Series::new(
            name,
            values
                .iter()
                .map(|v| match v {
                    SetValue::Str(s) => s.clone(),
                    SetValue::Int(i) => i.to_string(),
                    SetValue::Float(f) => f.to_string(),
                    SetValue::Bool(b) => b.to_string(),
                })
                .collect::<Vec<_>>(),
        ),
        DType::Int => Series::new(
            name,
            values
                .iter()
                .map(|v| match v {
                    SetValue::Int(i) => Ok(*i),
                    SetValue::Float(f) if f.fract() == 0.0 => Ok(*f as i64),
                    other => Err(format!("{other:?} is not an int")),
                })
                .collect::<std::result::Result<Vec<_>, _>>()?,
        ),
        DType::Float => Series::new(
            name,
            values
                .iter()
                .map(|v| match v {
                    SetValue::Int(i) => Ok(*i as f64),
                    SetValue::Float(f) => Ok(*f),
                    other => Err(format!("{other:?} is not a number")),
                })
                .collect::<std::result::Result<Vec<_>, _>>()?,
        ),
        DType::Bool => Series::new(
            name,
            values
                .iter()
                .map(|v| match v {
                    SetValue::Bool(b) => Ok(*b),
                    other => Err(format!("{other:?} is not a bool")),
                })
                .collect::<std::result::Result<Vec<_>, _>>()?,
        ),
        DType::Date | DType::Timestamp => {
            return Err("in_set is not supported on date/timestamp columns".into());
        }
    })
}

fn describe(rule: &Rule) -> String {
    fn range<T: std::fmt::Display>(min: &Option<T>, max: &Option<T>) -> String {
        match (min, max) {
            (Some(a), Some(b)) => format!("between {a} and {b}"),
            (Some(a), None) => format!("at least {a}"),
            (None, Some(b)) => format!("at most {b}"),
            (None, None) => "any value".into(),
        }
    }
    match rule {
        Rule::NotNull { .. } => "no missing values".into(),
        Rule::Between {
            min,
            max,
            strict_min,
            strict_max,
            ..
        } => {
            let mut s = format!("values {}", range(min, max));
            if *strict_min || *strict_max {
                s.push_str(" (strict)");
            }
            s
        }
        Rule::InSet { values, .. } => {
            let shown: Vec<String> = values
                .iter()
                .take(10)
                .map(|v| match v {
                    SetValue::Str(s) => format!("{s:?}"),
                    SetValue::Int(i) => i.to_string(),
                    SetValue::Float(f) => f.to_string(),
                    SetValue::Bool(b) => b.to_string(),
                })
                .collect();
            let more = if values.len() > 10 { ", …" } else { "" };
            format!("values in {{{}{more}}}", shown.join(", "))
        }
        Rule::Unique { .. } => "no repeated values".into(),
        Rule::Regex { pattern, .. } => format!("values match /{pattern}/"),
        Rule::Type { dtype, .. } => format!("values of type {dtype}"),
        Rule::ValueLengths { min, max, .. } => format!("lengths {}", range(min, max)),
        Rule::RowCount { min, max } => format!("row count {}", range(min, max)),
        Rule::MeanBetween { min, max, .. } => format!("mean {}", range(min, max)),
        Rule::QuantileBetween {
            quantile, min, max, ..
        } => format!("quantile {quantile} {}", range(min, max)),
        Rule::ColumnSet { columns, exact } => format!(
            "{} columns {}",
            if *exact {
                "exactly the"
            } else {
                "at least the"
            },
            columns.join(", ")
        ),
    }
}

fn quarantine_rows(
    table: &Table,
    fails: &DataFrame,
    fail_of: &[Option<usize>],
    names: &[String],
) -> Result<(DataFrame, BooleanChunked)> {
    let df = &table.df;
    let height = df.height();
    let used: Vec<(usize, &String)> = fail_of
        .iter()
        .zip(names)
        .filter_map(|(f, n)| f.map(|f| (f, n)))
        .collect();
    if used.is_empty() {
        let mask = BooleanChunked::full("failed".into(), false, height);
        let empty = df.clear();
        return Ok((with_meta_columns(table, empty, &[], &[])?, mask));
    }
    let mut any = BooleanChunked::full("failed".into(), false, height);
    for (f, _) in &used {
        any = &any | fails.select_at_idx(*f).expect("fail column").bool()?;
    }
    let idx: Vec<usize> = any
        .iter()
        .enumerate()
        .filter(|(_, b)| *b == Some(true))
        .map(|(i, _)| i)
        .collect();
    let take = IdxCa::from_vec(
        "idx".into(),
        idx.iter().map(|&i| i as IdxSize).collect::<Vec<_>>(),
    );
    let bad = df.take(&take)?;
    let rule_lists: Vec<String> = {
        let masks: Vec<&BooleanChunked> = used
            .iter()
            .map(|(f, _)| fails.select_at_idx(*f).expect("fail column").bool())
            .collect::<PolarsResult<_>>()?;
        idx.iter()
            .map(|&row| {
                used.iter()
                    .zip(&masks)
                    .filter(|(_, m)| m.get(row) == Some(true))
                    .map(|((_, n), _)| n.as_str())
                    .collect::<Vec<_>>()
                    .join(";")
            })
            .collect()
    };
    Ok((with_meta_columns(table, bad, &idx, &rule_lists)?, any))
}

fn with_meta_columns(
    table: &Table,
    bad: DataFrame,
    idx: &[usize],
    rules: &[String],
) -> Result<DataFrame> {
    let mut cols: Vec<Column> = Vec::with_capacity(bad.width() + 3);
    cols.push(Column::new(
        ROW_COLUMN.into(),
        idx.iter().map(|&i| i as u64 + 1).collect::<Vec<u64>>(),
    ));
    if table.format == crate::config::Format::Csv {
        let wanted: BTreeSet<usize> = idx.iter().copied().collect();
        let lines = table.lines_of_rows(&wanted);
        cols.push(Column::new(
            LINE_COLUMN.into(),
            idx.iter()
                .map(|i| lines.get(i).copied())
                .collect::<Vec<Option<u64>>>(),
        ));
    }
    cols.push(Column::new(RULES_COLUMN.into(), rules.to_vec()));
    cols.extend(bad.columns().iter().cloned());
    Ok(DataFrame::new(idx.len(), cols)?)
}

fn any_to_f64(v: &AnyValue) -> Option<f64> {
    match v {
        AnyValue::Null => None,
        AnyValue::Boolean(b) => Some(if *b { 1.0 } else { 0.0 }),
        other => other.extract::<f64>(),
    }
}

fn json_num(x: f64) -> serde_json::Value {
    serde_json::Number::from_f64(x)
        .map(serde_json::Value::Number)
        .unwrap_or_else(|| serde_json::Value::String(x.to_string()))
}

/// A cell as JSON for reports: numbers stay numbers, dates and times are ISO strings.
pub fn any_to_json(v: &AnyValue) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        AnyValue::Null => J::Null,
        AnyValue::Boolean(b) => J::Bool(*b),
        AnyValue::String(s) => J::String(s.to_string()),
        AnyValue::StringOwned(s) => J::String(s.to_string()),
        AnyValue::Int8(_)
        | AnyValue::Int16(_)
        | AnyValue::Int32(_)
        | AnyValue::Int64(_)
        | AnyValue::UInt8(_)
        | AnyValue::UInt16(_)
        | AnyValue::UInt32(_)
        | AnyValue::UInt64(_) => v
            .extract::<i64>()
            .map(|i| J::Number(i.into()))
            .unwrap_or(J::Null),
        AnyValue::Float32(_) | AnyValue::Float64(_) => {
            v.extract::<f64>().map(json_num).unwrap_or(J::Null)
        }
        other => J::String(format!("{other}").trim_matches('"').to_string()),
    }
}

/// Reads a quarantine or report problem as a `DataError` (used by callers writing files).
pub fn write_quarantine_csv(df: &mut DataFrame, path: &std::path::Path) -> Result<()> {
    crate::fsutil::write_atomically(path, |f| {
        CsvWriter::new(f)
            .include_header(true)
            .finish(df)
            .map_err(DataError::from)
    })
}
