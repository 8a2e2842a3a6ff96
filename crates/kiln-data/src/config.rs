//! The `[data.*]` and `[features.*]` sections of `kiln.toml`: which datasets exist, how to read
//! them, what they are expected to hold, and how features are built from them.

use std::collections::BTreeMap;

use kiln_transform::DType;
use serde::{Deserialize, Serialize};

/// `[data.NAME]`: one dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetConfig {
    /// A local path (relative to the directory of `kiln.toml`) or an object-store URL
    /// (`s3://bucket/key`, `file:///abs/path`).
    pub source: String,
    /// `csv` or `parquet`; inferred from the file name when absent (`.csv`, `.csv.gz`, `.zip`,
    /// `.parquet`).
    #[serde(default)]
    pub format: Option<Format>,
    #[serde(default)]
    pub description: Option<String>,
    /// Column type overrides; other columns are inferred.
    #[serde(default)]
    pub schema: BTreeMap<String, DType>,
    /// CSV reading options.
    #[serde(default)]
    pub csv: CsvOptions,
    /// Expectations, checked by `kiln data validate` and before features are built.
    #[serde(default)]
    pub expect: Vec<Expectation>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    Csv,
    Parquet,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CsvOptions {
    /// Field separator, one ASCII character.
    #[serde(default = "default_delimiter")]
    pub delimiter: char,
    /// Cell values read as missing (in addition to the empty cell).
    #[serde(default = "default_null_values")]
    pub null_values: Vec<String>,
    /// Timestamp format (chrono strftime) when values are not ISO 8601.
    #[serde(default)]
    pub timestamp_format: Option<String>,
}

fn default_delimiter() -> char {
    ','
}

fn default_null_values() -> Vec<String> {
    vec!["NA".into(), "null".into(), "NULL".into(), "NaN".into()]
}

impl Default for CsvOptions {
    fn default() -> Self {
        CsvOptions {
            delimiter: default_delimiter(),
            null_values: default_null_values(),
            timestamp_format: None,
        }
    }
}

/// One expectation (`[[data.NAME.expect]]`). `rule` takes Kiln's short name or Great
/// Expectations' full name (`expect_column_values_to_not_be_null`, …).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Expectation {
    #[serde(flatten)]
    pub rule: Rule,
    /// A name for reports; defaults to `rule(column)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Fraction of non-null values that must pass (row-level rules only), 0 < mostly ≤ 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mostly: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "rule", rename_all = "snake_case", deny_unknown_fields)]
pub enum Rule {
    #[serde(alias = "expect_column_values_to_not_be_null")]
    NotNull { column: String },
    #[serde(alias = "expect_column_values_to_be_between")]
    Between {
        column: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        min: Option<f64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max: Option<f64>,
        #[serde(default, skip_serializing_if = "is_false")]
        strict_min: bool,
        #[serde(default, skip_serializing_if = "is_false")]
        strict_max: bool,
    },
    #[serde(alias = "expect_column_values_to_be_in_set")]
    InSet {
        column: String,
        values: Vec<SetValue>,
    },
    #[serde(alias = "expect_column_values_to_be_unique")]
    Unique { column: String },
    #[serde(alias = "expect_column_values_to_match_regex")]
    Regex { column: String, pattern: String },
    #[serde(
        alias = "expect_column_values_to_be_of_type",
        alias = "expect_column_values_to_be_in_type_list"
    )]
    Type {
        column: String,
        #[serde(rename = "type")]
        dtype: DType,
    },
    #[serde(alias = "expect_column_value_lengths_to_be_between")]
    ValueLengths {
        column: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        min: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max: Option<u64>,
    },
    #[serde(alias = "expect_table_row_count_to_be_between")]
    RowCount {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        min: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max: Option<u64>,
    },
    #[serde(alias = "expect_column_mean_to_be_between")]
    MeanBetween {
        column: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        min: Option<f64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max: Option<f64>,
    },
    #[serde(alias = "expect_column_quantile_values_to_be_between")]
    QuantileBetween {
        column: String,
        quantile: f64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        min: Option<f64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max: Option<f64>,
    },
    #[serde(alias = "expect_table_columns_to_match_set")]
    ColumnSet {
        columns: Vec<String>,
        /// When true (the default) the table must have exactly these columns; when false it
        /// must have at least them.
        #[serde(default = "default_true")]
        exact: bool,
    },
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn default_true() -> bool {
    true
}

// `name` and `mostly` sit beside the rule's own fields in one TOML table; serde's `flatten`
// would silently accept unknown fields, so the table is split by hand and the rule part is
// read strictly.
impl<'de> Deserialize<'de> for Expectation {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let mut map = serde_json::Map::<String, serde_json::Value>::deserialize(d)?;
        let name = match map.remove("name") {
            None => None,
            Some(serde_json::Value::String(s)) => Some(s),
            Some(other) => {
                return Err(D::Error::custom(format!(
                    "`name` must be a string, got {other}"
                )));
            }
        };
        let mostly = match map.remove("mostly") {
            None => None,
            Some(v) => match v.as_f64() {
                Some(f) if f > 0.0 && f <= 1.0 => Some(f),
                _ => {
                    return Err(D::Error::custom(format!(
                        "`mostly` must be a number in (0, 1], got {v}"
                    )));
                }
            },
        };
        if !map.contains_key("rule") {
            return Err(D::Error::custom(
                "missing field `rule` (e.g. rule = \"not_null\")",
            ));
        }
        let rule: Rule =
            serde_json::from_value(serde_json::Value::Object(map)).map_err(D::Error::custom)?;
        if mostly.is_some() && !rule.is_row_level() {
            return Err(D::Error::custom(format!(
                "`mostly` applies to row-level rules only, not to `{}`",
                rule.kind()
            )));
        }
        Ok(Expectation { rule, name, mostly })
    }
}

/// A member of an `in_set` list: strings, numbers or booleans as written in TOML.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SetValue {
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
}

impl Rule {
    /// Kiln's short name of the rule.
    pub fn kind(&self) -> &'static str {
        match self {
            Rule::NotNull { .. } => "not_null",
            Rule::Between { .. } => "between",
            Rule::InSet { .. } => "in_set",
            Rule::Unique { .. } => "unique",
            Rule::Regex { .. } => "regex",
            Rule::Type { .. } => "type",
            Rule::ValueLengths { .. } => "value_lengths",
            Rule::RowCount { .. } => "row_count",
            Rule::MeanBetween { .. } => "mean_between",
            Rule::QuantileBetween { .. } => "quantile_between",
            Rule::ColumnSet { .. } => "column_set",
        }
    }

    /// The column the rule is about, if it is about one.
    pub fn column(&self) -> Option<&str> {
        match self {
            Rule::NotNull { column }
            | Rule::Between { column, .. }
            | Rule::InSet { column, .. }
            | Rule::Unique { column }
            | Rule::Regex { column, .. }
            | Rule::Type { column, .. }
            | Rule::ValueLengths { column, .. }
            | Rule::MeanBetween { column, .. }
            | Rule::QuantileBetween { column, .. } => Some(column),
            Rule::RowCount { .. } | Rule::ColumnSet { .. } => None,
        }
    }

    /// Row-level rules judge each row and quarantine the rows that fail; the others judge
    /// the table as a whole.
    pub fn is_row_level(&self) -> bool {
        matches!(
            self,
            Rule::NotNull { .. }
                | Rule::Between { .. }
                | Rule::InSet { .. }
                | Rule::Unique { .. }
                | Rule::Regex { .. }
                | Rule::Type { .. }
                | Rule::ValueLengths { .. }
        )
    }
}

impl Expectation {
    /// The name shown in reports: the configured name or `rule(column)`.
    pub fn display_name(&self) -> String {
        if let Some(n) = &self.name {
            return n.clone();
        }
        match self.rule.column() {
            Some(c) => format!("{}({c})", self.rule.kind()),
            None => self.rule.kind().to_string(),
        }
    }
}

/// `[features.NAME]`: a feature pipeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureConfig {
    /// The dataset whose rows become feature rows (the label side of as-of joins).
    pub source: String,
    #[serde(default)]
    pub description: Option<String>,
    /// Point-in-time joins, applied in order.
    #[serde(default)]
    pub join: Vec<AsOfJoin>,
    /// Derived columns: NAME = "SQL expression", applied in order after the joins.
    #[serde(default)]
    pub derive: Vec<Derived>,
    /// Categorical encodings learned on the training split.
    #[serde(default)]
    pub encode: Vec<Encoding>,
    /// The label column (often derived).
    pub label: String,
    /// The columns fed to the model, in order (encoded columns expand).
    pub features: Vec<String>,
    /// Time-based split into train / valid / test.
    pub split: TimeSplit,
    /// Columns kept alongside features and label for segment metrics and joins (not fed to
    /// the model).
    #[serde(default)]
    pub keep: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AsOfJoin {
    /// The dataset holding the features (e.g. hourly weather).
    pub dataset: String,
    /// Equality keys (e.g. `["origin"]`).
    #[serde(default)]
    pub by: Vec<String>,
    /// The event-time column in the source rows.
    pub on: String,
    /// The event-time column in the joined dataset; defaults to `on`.
    #[serde(default)]
    pub right_on: Option<String>,
    /// How far back a feature row may be, e.g. `"1h"`, `"90m"`, `"2d"`.
    pub tolerance: String,
    /// Which of the joined dataset's columns to bring (default: all but keys).
    #[serde(default)]
    pub columns: Vec<String>,
    /// Prefix for the brought columns (default: none).
    #[serde(default)]
    pub prefix: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Derived {
    pub name: String,
    pub expr: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Encoding {
    pub column: String,
    pub method: EncodingMethod,
    /// Keep at most this many categories (most frequent first).
    #[serde(default = "default_max_categories")]
    pub max_categories: usize,
    /// Drop categories seen fewer times than this in the training split.
    #[serde(default = "default_min_count")]
    pub min_count: u64,
}

fn default_max_categories() -> usize {
    50
}

fn default_min_count() -> u64 {
    1
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EncodingMethod {
    OneHot,
    Ordinal,
}

/// Rows with `column < valid_from` train, `valid_from ≤ column < test_from` validate, the rest
/// test. Bounds are dates or timestamps (`2013-10-01`, `2013-10-01 00:00:00`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeSplit {
    pub column: String,
    pub valid_from: String,
    pub test_from: String,
    /// Rows at or after this bound are left out of all three splits (e.g. months kept back
    /// for monitoring); optional.
    #[serde(default)]
    pub end: Option<String>,
}
