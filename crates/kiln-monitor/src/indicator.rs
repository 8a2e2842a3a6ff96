//! Indicators: the numbers alert rules look at, one snapshot per evaluation.
//!
//! An [`Indicators`] snapshot maps each *series* — a [`Labels`] set such as
//! `{deployment="flight-delay", version="3"}` — to named values (`p99_ms`, `error_rate`, …).
//! The server fills a snapshot from its metrics before every evaluation; an alert rule's `when`
//! expression is evaluated once per series, and each series for which it holds becomes one alert
//! instance carrying the series' labels.
//!
//! A value that is absent from a series is *no data*: see [`crate::expr`] for how that
//! propagates (a rule never fires on no data). `NaN` values are treated as absent.
//!
//! Standard indicator names are in [`names`]; any other name (`f1`, `precision`, a custom
//! realised metric) is allowed too.
//!
//! The module also holds the label [`Matcher`] (`name=value`, `!=`, `=~`, `!~`) shared by
//! expression selectors, silences and routes.

use std::collections::BTreeMap;
use std::fmt;

use regex::Regex;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Standard indicator names. Rules may use any other name as well.
pub mod names {
    /// Latency quantiles of the served requests, in milliseconds, over the evaluation window.
    pub const P50_MS: &str = "p50_ms";
    pub const P90_MS: &str = "p90_ms";
    pub const P95_MS: &str = "p95_ms";
    pub const P99_MS: &str = "p99_ms";
    /// Share of requests that failed (0..1) over the evaluation window.
    pub const ERROR_RATE: &str = "error_rate";
    /// Requests per second over the evaluation window.
    pub const REQUEST_RATE: &str = "request_rate";
    /// Share of drifted columns (0..1), as in Evidently's dataset drift.
    pub const DRIFT_SHARE: &str = "drift_share";
    /// Prefix of per-column drift scores: `drift.<column>` (e.g. `drift.temp`).
    pub const DRIFT_PREFIX: &str = "drift.";
    /// Realised performance from joined feedback labels.
    pub const AUC: &str = "auc";
    pub const ACCURACY: &str = "accuracy";
    pub const RMSE: &str = "rmse";
    /// Prefix of SLO burn rates, `burn_rate_<window>` (`burn_rate_1h`, `burn_rate_5m`, …), on
    /// series labelled `slo="<name>"`; filled by [`crate::slo::SloTracker::indicators`].
    pub const BURN_RATE_PREFIX: &str = "burn_rate_";
    /// Share of an SLO's error budget left over its period (1 = untouched, < 0 = overspent).
    pub const ERROR_BUDGET_REMAINING: &str = "error_budget_remaining";

    /// The per-column drift indicator name for `column`.
    pub fn drift(column: &str) -> String {
        format!("{DRIFT_PREFIX}{column}")
    }
}

/// A label set: sorted names to values. A missing label and an empty value are the same thing
/// to a [`Matcher`], as in Prometheus.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Labels(BTreeMap<String, String>);

impl Labels {
    pub fn new() -> Self {
        Labels(BTreeMap::new())
    }

    /// `Labels::from_pairs([("deployment", "flight-delay"), ("version", "3")])`.
    pub fn from_pairs<I, K, V>(pairs: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        Labels(
            pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    pub fn insert(&mut self, name: impl Into<String>, value: impl Into<String>) -> Option<String> {
        self.0.insert(name.into(), value.into())
    }

    pub fn remove(&mut self, name: &str) -> Option<String> {
        self.0.remove(name)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn as_map(&self) -> &BTreeMap<String, String> {
        &self.0
    }

    /// These labels overlaid with `other` (its values win).
    pub fn merged(&self, other: &Labels) -> Labels {
        let mut out = self.clone();
        for (k, v) in other.iter() {
            out.insert(k, v);
        }
        out
    }

    /// Only the labels named in `names` (those present).
    pub fn subset<'a>(&self, names: impl IntoIterator<Item = &'a str>) -> Labels {
        let mut out = Labels::new();
        for n in names {
            if let Some(v) = self.get(n) {
                out.insert(n, v);
            }
        }
        out
    }

    /// Prometheus' `labelSetToFingerprint`: FNV-1a 64 over the sorted names and values, each
    /// followed by the separator byte 255. Alertmanager identifies alerts by it.
    pub fn fingerprint(&self) -> u64 {
        const OFFSET: u64 = 14_695_981_039_346_656_037;
        const PRIME: u64 = 1_099_511_628_211;
        let mut h = OFFSET;
        let mut add = |bytes: &[u8]| {
            for b in bytes {
                h ^= u64::from(*b);
                h = h.wrapping_mul(PRIME);
            }
        };
        for (k, v) in &self.0 {
            add(k.as_bytes());
            add(&[255]);
            add(v.as_bytes());
            add(&[255]);
        }
        h
    }

    /// [`Self::fingerprint`] as Alertmanager prints it: 16 lower-case hex digits.
    pub fn fingerprint_hex(&self) -> String {
        format!("{:016x}", self.fingerprint())
    }
}

impl fmt::Display for Labels {
    /// Prometheus' `LabelSet.String()`: `{a="1", b="2"}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        for (i, (k, v)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{k}={}", go_quote(v))?;
        }
        f.write_str("}")
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for Labels {
    fn from_iter<T: IntoIterator<Item = (K, V)>>(iter: T) -> Self {
        Labels::from_pairs(iter)
    }
}

/// Quotes a string the way Go's `%q` does for the characters that occur in label values.
pub(crate) fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Whether `name` is a valid Prometheus label name: `[a-zA-Z_][a-zA-Z0-9_]*`.
pub fn is_valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// One evaluation's indicator values: series labels → indicator name → value.
///
/// ```
/// use kiln_monitor::indicator::{Indicators, Labels, names};
/// let canary = Labels::from_pairs([("deployment", "flight-delay"), ("version", "4")]);
/// let mut snap = Indicators::new();
/// snap.set(&canary, names::P99_MS, 23.5);
/// snap.set(&canary, names::ERROR_RATE, 0.002);
/// snap.set(&canary, names::drift("temp"), 0.31);
/// assert_eq!(snap.get(&canary, "p99_ms"), Some(23.5));
/// ```
///
/// Serialised as a list of `{"labels": {…}, "values": {…}}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(from = "Vec<SeriesEntry>", into = "Vec<SeriesEntry>")]
pub struct Indicators {
    series: BTreeMap<Labels, BTreeMap<String, f64>>,
}

#[derive(Serialize, Deserialize)]
struct SeriesEntry {
    labels: Labels,
    values: BTreeMap<String, f64>,
}

impl From<Vec<SeriesEntry>> for Indicators {
    fn from(v: Vec<SeriesEntry>) -> Self {
        let mut out = Indicators::new();
        for e in v {
            out.series.entry(e.labels).or_default().extend(e.values);
        }
        out
    }
}

impl From<Indicators> for Vec<SeriesEntry> {
    fn from(i: Indicators) -> Self {
        i.series
            .into_iter()
            .map(|(labels, values)| SeriesEntry { labels, values })
            .collect()
    }
}

impl Indicators {
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `name` on the series `labels` (creating the series), replacing any earlier value.
    pub fn set(&mut self, labels: &Labels, name: impl Into<String>, value: f64) {
        self.series
            .entry(labels.clone())
            .or_default()
            .insert(name.into(), value);
    }

    /// Builder form of [`Self::set`].
    pub fn with(mut self, labels: &Labels, name: impl Into<String>, value: f64) -> Self {
        self.set(labels, name, value);
        self
    }

    /// The value of `name` on the series `labels`; `None` if absent or `NaN`.
    pub fn get(&self, labels: &Labels, name: &str) -> Option<f64> {
        self.series
            .get(labels)
            .and_then(|s| s.get(name))
            .copied()
            .filter(|v| !v.is_nan())
    }

    /// Every series with its values, in label order.
    pub fn series(&self) -> impl Iterator<Item = (&Labels, &BTreeMap<String, f64>)> {
        self.series.iter()
    }

    /// Adds every value of `other` (its values win on conflicts).
    pub fn extend(&mut self, other: Indicators) {
        for (labels, values) in other.series {
            self.series.entry(labels).or_default().extend(values);
        }
    }

    /// Number of series.
    pub fn len(&self) -> usize {
        self.series.len()
    }

    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }
}

/// How a [`Matcher`] compares a label value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MatchOp {
    /// `=`
    Eq,
    /// `!=`
    Ne,
    /// `=~` (a regular expression anchored at both ends, as in Prometheus)
    Re,
    /// `!~`
    NotRe,
}

impl MatchOp {
    pub fn as_str(self) -> &'static str {
        match self {
            MatchOp::Eq => "=",
            MatchOp::Ne => "!=",
            MatchOp::Re => "=~",
            MatchOp::NotRe => "!~",
        }
    }

    pub fn is_regex(self) -> bool {
        matches!(self, MatchOp::Re | MatchOp::NotRe)
    }

    pub fn is_equal(self) -> bool {
        matches!(self, MatchOp::Eq | MatchOp::Re)
    }
}

/// Why a matcher could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MatcherError {
    #[error("invalid label name {0:?}: must match [a-zA-Z_][a-zA-Z0-9_]*")]
    InvalidName(String),
    #[error("invalid regular expression for label {name:?}: {message}")]
    InvalidRegex { name: String, message: String },
    #[error(
        "invalid matcher {0:?}: expected label=value, label!=value, label=~regex or label!~regex"
    )]
    Syntax(String),
}

/// A label matcher: `name=value`, `name!=value`, `name=~regex`, `name!~regex`. A label the set
/// does not have matches as the empty string.
///
/// Serialised in Alertmanager's API shape, `{"name","value","isRegex","isEqual"}`; also
/// deserialised from the string form (`"severity=page"`), as Alertmanager's configuration
/// `matchers` are written.
#[derive(Debug, Clone)]
pub struct Matcher {
    name: String,
    op: MatchOp,
    value: String,
    re: Option<Regex>,
}

impl PartialEq for Matcher {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.op == other.op && self.value == other.value
    }
}

impl Matcher {
    pub fn new(
        name: impl Into<String>,
        op: MatchOp,
        value: impl Into<String>,
    ) -> Result<Self, MatcherError> {
        let name = name.into();
        let value = value.into();
        if !is_valid_label_name(&name) {
            return Err(MatcherError::InvalidName(name));
        }
        let re = if op.is_regex() {
            Some(
                Regex::new(&format!("^(?:{value})$")).map_err(|e| MatcherError::InvalidRegex {
                    name: name.clone(),
                    message: e.to_string(),
                })?,
            )
        } else {
            None
        };
        Ok(Matcher {
            name,
            op,
            value,
            re,
        })
    }

    /// `name="value"`.
    pub fn eq(name: impl Into<String>, value: impl Into<String>) -> Result<Self, MatcherError> {
        Self::new(name, MatchOp::Eq, value)
    }

    /// Parses `name=value`, `name!=value`, `name=~regex`, `name!~regex`; the value may be
    /// wrapped in double quotes (with `\"` and `\\` escapes), as `amtool` and the CLI take it.
    pub fn parse(s: &str) -> Result<Self, MatcherError> {
        let s = s.trim();
        let syntax = || MatcherError::Syntax(s.to_string());
        let pos = s.find(['=', '!']).ok_or_else(syntax)?;
        let name = s[..pos].trim();
        let rest = &s[pos..];
        let (op, raw) = if let Some(r) = rest.strip_prefix("=~") {
            (MatchOp::Re, r)
        } else if let Some(r) = rest.strip_prefix("!~") {
            (MatchOp::NotRe, r)
        } else if let Some(r) = rest.strip_prefix("!=") {
            (MatchOp::Ne, r)
        } else if let Some(r) = rest.strip_prefix('=') {
            (MatchOp::Eq, r)
        } else {
            return Err(syntax());
        };
        let raw = raw.trim();
        let value = if let Some(inner) = raw.strip_prefix('"') {
            let inner = inner.strip_suffix('"').ok_or_else(syntax)?;
            let mut out = String::with_capacity(inner.len());
            let mut chars = inner.chars();
            while let Some(c) = chars.next() {
                if c == '\\' {
                    match chars.next() {
                        Some('n') => out.push('\n'),
                        Some(e @ ('"' | '\\')) => out.push(e),
                        Some(other) => {
                            out.push('\\');
                            out.push(other);
                        }
                        None => return Err(syntax()),
                    }
                } else if c == '"' {
                    return Err(syntax());
                } else {
                    out.push(c);
                }
            }
            out
        } else {
            raw.to_string()
        };
        Self::new(name, op, value)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn op(&self) -> MatchOp {
        self.op
    }

    pub fn value(&self) -> &str {
        &self.value
    }

    /// Whether a label value (empty for a missing label) satisfies the matcher.
    pub fn matches_value(&self, v: &str) -> bool {
        match (self.op, &self.re) {
            (MatchOp::Eq, _) => v == self.value,
            (MatchOp::Ne, _) => v != self.value,
            (MatchOp::Re, Some(re)) => re.is_match(v),
            (MatchOp::NotRe, Some(re)) => !re.is_match(v),
            // Regex ops always carry a compiled regex (see `new`).
            (MatchOp::Re | MatchOp::NotRe, None) => false,
        }
    }

    /// Whether `labels` satisfies the matcher.
    pub fn matches(&self, labels: &Labels) -> bool {
        self.matches_value(labels.get(&self.name).unwrap_or(""))
    }
}

impl fmt::Display for Matcher {
    /// `name="value"` with the operator, quoted as Alertmanager prints matchers.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}{}{}",
            self.name,
            self.op.as_str(),
            go_quote(&self.value)
        )
    }
}

/// Whether all `matchers` hold for `labels` (an empty list matches everything).
pub fn matches_all(matchers: &[Matcher], labels: &Labels) -> bool {
    matchers.iter().all(|m| m.matches(labels))
}

/// `{a="1",b=~"x.*"}` as Alertmanager prints a matcher list.
pub fn matchers_to_string(matchers: &[Matcher]) -> String {
    let inner: Vec<String> = matchers.iter().map(ToString::to_string).collect();
    format!("{{{}}}", inner.join(","))
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct MatcherWire {
    name: String,
    value: String,
    is_regex: bool,
    #[serde(default = "default_true")]
    is_equal: bool,
}

fn default_true() -> bool {
    true
}

impl Serialize for Matcher {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        MatcherWire {
            name: self.name.clone(),
            value: self.value.clone(),
            is_regex: self.op.is_regex(),
            is_equal: self.op.is_equal(),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Matcher {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            Text(String),
            Wire(MatcherWire),
        }
        match Either::deserialize(d)? {
            Either::Text(s) => Matcher::parse(&s).map_err(serde::de::Error::custom),
            Either::Wire(w) => {
                let op = match (w.is_regex, w.is_equal) {
                    (false, true) => MatchOp::Eq,
                    (false, false) => MatchOp::Ne,
                    (true, true) => MatchOp::Re,
                    (true, false) => MatchOp::NotRe,
                };
                Matcher::new(w.name, op, w.value).map_err(serde::de::Error::custom)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_matches_prometheus_test_vectors() {
        // prometheus/common model/signature_test.go
        assert_eq!(Labels::new().fingerprint(), 14_695_981_039_346_656_037);
        let l = Labels::from_pairs([("name", "garland, briggs"), ("fear", "love is not enough")]);
        assert_eq!(l.fingerprint(), 5_799_056_148_416_392_346);
        assert_eq!(l.fingerprint_hex(), "507a62d79ee76c9a");
    }

    #[test]
    fn labels_print_like_prometheus() {
        let l = Labels::from_pairs([("b", "x\"y"), ("a", "1")]);
        assert_eq!(l.to_string(), r#"{a="1", b="x\"y"}"#);
        assert_eq!(Labels::new().to_string(), "{}");
    }

    #[test]
    fn matchers_parse_match_and_round_trip() {
        let l = Labels::from_pairs([("alertname", "HighLatency"), ("deployment", "flights-eu")]);
        let cases = [
            ("alertname=HighLatency", true),
            ("alertname!=HighLatency", false),
            (r#"deployment=~"flights-.*""#, true),
            ("deployment=~flights", false), // anchored
            ("deployment!~flights", true),
            ("team=", true), // missing label == ""
            ("team!=", false),
        ];
        for (text, want) in cases {
            let m = Matcher::parse(text).unwrap();
            assert_eq!(m.matches(&l), want, "{text}");
            let json = serde_json::to_string(&m).unwrap();
            let back: Matcher = serde_json::from_str(&json).unwrap();
            assert_eq!(back, m);
            assert_eq!(back.matches(&l), want);
        }
        let from_text: Matcher = serde_json::from_str(r#""severity!=info""#).unwrap();
        assert_eq!(from_text.op(), MatchOp::Ne);
        assert_eq!(
            serde_json::to_value(&from_text).unwrap(),
            serde_json::json!({"name": "severity", "value": "info", "isRegex": false, "isEqual": false})
        );
        assert!(matches!(
            Matcher::parse("a=~("),
            Err(MatcherError::InvalidRegex { .. })
        ));
        assert!(matches!(
            Matcher::parse("1a=b"),
            Err(MatcherError::InvalidName(_))
        ));
        assert!(matches!(Matcher::parse("ab"), Err(MatcherError::Syntax(_))));
        assert_eq!(
            Matcher::parse(r#"a=~"x\"y""#).unwrap().to_string(),
            r#"a=~"x\"y""#
        );
    }

    #[test]
    fn indicators_serde_and_nan_is_absent() {
        let a = Labels::from_pairs([("deployment", "d")]);
        let snap = Indicators::new()
            .with(&a, "p99_ms", 12.0)
            .with(&a, "auc", f64::NAN);
        assert_eq!(snap.get(&a, "auc"), None);
        assert_eq!(snap.get(&a, "p99_ms"), Some(12.0));
        let snap = Indicators::new().with(&a, "p99_ms", 12.0);
        let json = serde_json::to_value(&snap).unwrap();
        assert_eq!(
            json,
            serde_json::json!([{"labels": {"deployment": "d"}, "values": {"p99_ms": 12.0}}])
        );
        let back: Indicators = serde_json::from_value(json).unwrap();
        assert_eq!(back, snap);
    }
}
