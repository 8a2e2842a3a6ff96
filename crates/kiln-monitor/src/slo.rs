//! Service-level objectives and multi-window, multi-burn-rate alerts (Google SRE workbook,
//! "Alerting on SLOs").
//!
//! An SLO says which share of requests must be good over a period (30 days by default):
//!
//! - **availability** `99.9`: at least 99.9 % of requests succeed; a failed request is bad;
//! - **latency** `p99 ≤ 20 ms`: at least 99 % of the *successful* requests take at most 20 ms; a
//!   slower one is bad (failed requests count against availability, not latency).
//!
//! The error budget is the bad share the SLO allows, `1 − target`. The *burn rate* over a window
//! is the window's bad share divided by the budget: at burn rate 1 the budget lasts exactly the
//! period. Each SLO becomes three alerts (for a 30-day period):
//!
//! | severity | budget spent | long window | short window | burn rate |
//! |---|---|---|---|---|
//! | page   | 2 %  | 1h | 5m  | 14.4 |
//! | page   | 5 %  | 6h | 30m | 6    |
//! | ticket | 10 % | 3d | 6h  | 1    |
//!
//! An alert fires when the burn rate exceeds its threshold over **both** its windows. The long
//! window makes it significant, the short one (1/12 of it) makes it stop soon after the problem
//! stops. For another period the thresholds scale: `budget share × period / long window`.
//!
//! [`SloTracker`] counts good and bad requests in per-minute buckets, a fixed ring per series
//! (4,320 buckets cover the 3-day window; memory per series does not grow with traffic), plus
//! per-hour buckets over the whole period for the remaining budget. It publishes the burn rates
//! as [`Indicators`] (`burn_rate_5m`, `burn_rate_1h`, …, `error_budget_remaining` on each series
//! with an `slo` label), and [`SloSpec::alert_rules`] gives the alert rules that read them, so
//! SLO alerts go through the same state machine, grouping, silences and notifications as every
//! other alert.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::alert::rule::format_value;
use crate::alert::time::{self, format_duration_ms};
use crate::alert::{RuleSpec, Severity};
use crate::clock::Clock;
use crate::indicator::{Indicators, Labels, names};

const MINUTE_MS: i64 = 60_000;
const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;

/// The default SLO period.
pub const DEFAULT_PERIOD_MS: i64 = 30 * DAY_MS;

/// What an SLO promises.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Objective {
    /// At least `percentile` % of successful requests take at most `threshold_ms`.
    Latency { percentile: f64, threshold_ms: f64 },
    /// At least `percent` % of requests succeed.
    Availability { percent: f64 },
}

impl Objective {
    /// The good share required, e.g. 0.999.
    pub fn target(&self) -> f64 {
        match self {
            Objective::Latency { percentile, .. } => percentile / 100.0,
            Objective::Availability { percent } => percent / 100.0,
        }
    }

    /// The bad share allowed, `1 − target`.
    pub fn error_budget(&self) -> f64 {
        match self {
            Objective::Latency { percentile, .. } => (100.0 - percentile) / 100.0,
            Objective::Availability { percent } => (100.0 - percent) / 100.0,
        }
    }

    /// Classifies one request: `Some(true)` good, `Some(false)` bad, `None` not counted (a
    /// failed request under a latency objective).
    pub fn classify(&self, latency_ms: f64, ok: bool) -> Option<bool> {
        match self {
            Objective::Latency { threshold_ms, .. } => ok.then_some(latency_ms <= *threshold_ms),
            Objective::Availability { .. } => Some(ok),
        }
    }

    fn describe(&self) -> String {
        match self {
            Objective::Latency {
                percentile,
                threshold_ms,
            } => format!(
                "p{} ≤ {} ms",
                format_value(*percentile),
                format_value(*threshold_ms)
            ),
            Objective::Availability { percent } => {
                format!("availability ≥ {} %", format_value(*percent))
            }
        }
    }
}

fn default_period() -> i64 {
    DEFAULT_PERIOD_MS
}

/// An SLO: `{ name = "flights-latency", kind = "latency", percentile = 99, threshold_ms = 20 }`
/// or `{ name = "flights-availability", kind = "availability", percent = 99.9 }`, with an
/// optional `period` (default `"30d"`) and `runbook`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SloSpec {
    pub name: String,
    #[serde(flatten)]
    pub objective: Objective,
    #[serde(default = "default_period", rename = "period", with = "time::duration")]
    pub period_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runbook: Option<String>,
}

/// Why an SLO was rejected or a recording refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SloError {
    #[error("SLO name {0:?} must be non-empty and use only letters, digits, `_`, `-`, `.`, `:`")]
    InvalidName(String),
    #[error("SLO {slo}: the target must be between 0 and 100 %, exclusive (got {value})")]
    InvalidTarget { slo: String, value: f64 },
    #[error("SLO {slo}: the latency threshold must be a positive number of milliseconds")]
    InvalidThreshold { slo: String },
    #[error("SLO {slo}: the period must be at least 3d (the longest alert window)")]
    PeriodTooShort { slo: String },
    #[error("two SLOs are named {0:?}")]
    Duplicate(String),
    #[error("no SLO named {0:?}")]
    Unknown(String),
    #[error("unknown SLO shorthand {0:?}: expected `availability` or `p<NN>_ms` (e.g. p99_ms)")]
    Shorthand(String),
    #[error("already tracking {0} series; refusing a new one (forget old series first)")]
    TooManySeries(usize),
}

impl SloSpec {
    pub fn latency(name: impl Into<String>, percentile: f64, threshold_ms: f64) -> SloSpec {
        SloSpec {
            name: name.into(),
            objective: Objective::Latency {
                percentile,
                threshold_ms,
            },
            period_ms: DEFAULT_PERIOD_MS,
            runbook: None,
        }
    }

    pub fn availability(name: impl Into<String>, percent: f64) -> SloSpec {
        SloSpec {
            name: name.into(),
            objective: Objective::Availability { percent },
            period_ms: DEFAULT_PERIOD_MS,
            runbook: None,
        }
    }

    /// One entry of `kiln.toml`'s `slo = { p99_ms = 20, availability = 99.9 }` for the
    /// deployment `deployment`: `p99_ms = 20` → latency p99 ≤ 20 ms named
    /// `<deployment>-latency-p99`, `availability = 99.9` → `<deployment>-availability`.
    pub fn from_shorthand(deployment: &str, key: &str, value: f64) -> Result<SloSpec, SloError> {
        let spec = if key == "availability" {
            SloSpec::availability(format!("{deployment}-availability"), value)
        } else {
            let p = key
                .strip_prefix('p')
                .and_then(|r| r.strip_suffix("_ms"))
                .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
                .ok_or_else(|| SloError::Shorthand(key.to_string()))?;
            let percentile: f64 = p
                .parse()
                .map_err(|_| SloError::Shorthand(key.to_string()))?;
            SloSpec::latency(format!("{deployment}-latency-p{p}"), percentile, value)
        };
        spec.validate()?;
        Ok(spec)
    }

    pub fn validate(&self) -> Result<(), SloError> {
        let name_ok = !self.name.is_empty()
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':'));
        if !name_ok {
            return Err(SloError::InvalidName(self.name.clone()));
        }
        let pct = self.objective.target() * 100.0;
        if !(pct > 0.0 && pct < 100.0) {
            return Err(SloError::InvalidTarget {
                slo: self.name.clone(),
                value: pct,
            });
        }
        if let Objective::Latency { threshold_ms, .. } = self.objective
            && !(threshold_ms > 0.0 && threshold_ms.is_finite())
        {
            return Err(SloError::InvalidThreshold {
                slo: self.name.clone(),
            });
        }
        if self.period_ms < 3 * DAY_MS {
            return Err(SloError::PeriodTooShort {
                slo: self.name.clone(),
            });
        }
        Ok(())
    }

    /// The three burn-rate windows of this SLO's period.
    pub fn burn_windows(&self) -> Vec<BurnWindow> {
        burn_windows(self.period_ms)
    }

    /// The alert rules of the SLO, one per burn window: `ErrorBudgetBurn` with labels `slo`,
    /// `long_window`, `short_window`, reading the indicators [`SloTracker::indicators`] fills.
    pub fn alert_rules(&self) -> Vec<RuleSpec> {
        self.burn_windows()
            .iter()
            .map(|w| {
                let long = format_duration_ms(w.long_ms);
                let short = format_duration_ms(w.short_ms);
                let rate = w.burn_rate;
                let sel = format!("{{slo=\"{}\"}}", self.name);
                let mut labels = BTreeMap::new();
                labels.insert("slo".to_string(), self.name.clone());
                labels.insert("long_window".to_string(), long.clone());
                labels.insert("short_window".to_string(), short.clone());
                RuleSpec {
                    name: "ErrorBudgetBurn".to_string(),
                    when: format!(
                        "{p}{long}{sel} > {rate} and {p}{short}{sel} > {rate}",
                        p = names::BURN_RATE_PREFIX
                    ),
                    for_ms: 0,
                    severity: w.severity,
                    labels,
                    annotations: BTreeMap::new(),
                    summary: Some(format!(
                        "SLO {}: error budget burning at {{{{ $value }}}}× over {long} (and {short}); threshold {rate}×",
                        self.name
                    )),
                    description: Some(format!(
                        "{} over {}. At {rate}× the budget, {}% of it is spent in {long}.",
                        self.objective.describe(),
                        format_duration_ms(self.period_ms),
                        format_value(w.budget_percent)
                    )),
                    runbook: self.runbook.clone(),
                }
            })
            .collect()
    }
}

/// One row of the multi-window table.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BurnWindow {
    pub severity: Severity,
    /// Share of the period's error budget spent in `long` at `burn_rate`, in percent.
    pub budget_percent: f64,
    pub long_ms: i64,
    pub short_ms: i64,
    pub burn_rate: f64,
}

/// The SRE workbook's rows: (severity, budget spent %, long window, short window).
pub const SRE_WINDOWS: [(Severity, f64, i64, i64); 3] = [
    (Severity::Page, 2.0, HOUR_MS, 5 * MINUTE_MS),
    (Severity::Page, 5.0, 6 * HOUR_MS, 30 * MINUTE_MS),
    (Severity::Ticket, 10.0, 3 * DAY_MS, 6 * HOUR_MS),
];

/// The windows for a period: burn rate = budget share × period / long window (14.4, 6 and 1 for
/// 30 days).
pub fn burn_windows(period_ms: i64) -> Vec<BurnWindow> {
    SRE_WINDOWS
        .iter()
        .map(
            |&(severity, budget_percent, long_ms, short_ms)| BurnWindow {
                severity,
                budget_percent,
                long_ms,
                short_ms,
                burn_rate: budget_percent * period_ms as f64 / (100.0 * long_ms as f64),
            },
        )
        .collect()
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    index: i64,
    good: u32,
    bad: u32,
}

/// Good/bad counts in fixed time buckets: a ring of `len` buckets of `bucket_ms` each.
#[derive(Debug, Clone)]
struct Ring {
    bucket_ms: i64,
    slots: Vec<Slot>,
}

impl Ring {
    fn new(bucket_ms: i64, len: usize) -> Ring {
        Ring {
            bucket_ms,
            slots: vec![
                Slot {
                    index: i64::MIN,
                    good: 0,
                    bad: 0,
                };
                len.max(1)
            ],
        }
    }

    fn slot_of(&self, index: i64) -> usize {
        index.rem_euclid(self.slots.len() as i64) as usize
    }

    fn add(&mut self, now_ms: i64, good: u64, bad: u64) {
        let index = now_ms.div_euclid(self.bucket_ms);
        let i = self.slot_of(index);
        let slot = &mut self.slots[i];
        if slot.index > index {
            // Older than what the bucket already holds (the clock went back): too old to keep.
            return;
        }
        if slot.index != index {
            *slot = Slot {
                index,
                good: 0,
                bad: 0,
            };
        }
        let clamp = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
        slot.good = slot.good.saturating_add(clamp(good));
        slot.bad = slot.bad.saturating_add(clamp(bad));
    }

    /// The non-empty buckets, oldest first.
    fn buckets(&self) -> Vec<Bucket> {
        let mut out: Vec<Bucket> = self
            .slots
            .iter()
            .filter(|s| s.index != i64::MIN && (s.good > 0 || s.bad > 0))
            .map(|s| (s.index, s.good, s.bad))
            .collect();
        out.sort_unstable();
        out
    }

    /// Puts a persisted bucket back (unless its slot already holds a newer one).
    fn put(&mut self, (index, good, bad): Bucket) {
        let i = self.slot_of(index);
        let slot = &mut self.slots[i];
        if slot.index > index {
            return;
        }
        if slot.index != index {
            *slot = Slot {
                index,
                good: 0,
                bad: 0,
            };
        }
        slot.good = slot.good.saturating_add(good);
        slot.bad = slot.bad.saturating_add(bad);
    }

    /// Counts in the buckets covering `window_ms` up to now (the current, partial bucket
    /// included).
    fn sum(&self, now_ms: i64, window_ms: i64) -> (u64, u64) {
        let now_index = now_ms.div_euclid(self.bucket_ms);
        let n = (window_ms + self.bucket_ms - 1) / self.bucket_ms;
        let n = n.clamp(1, self.slots.len() as i64);
        let (mut good, mut bad) = (0_u64, 0_u64);
        for index in now_index - n + 1..=now_index {
            let s = &self.slots[self.slot_of(index)];
            if s.index == index {
                good += u64::from(s.good);
                bad += u64::from(s.bad);
            }
        }
        (good, bad)
    }
}

/// A persisted bucket: (time / bucket width, good, bad).
pub type Bucket = (i64, u32, u32);

/// The counts of one SLO on one series, for persisting: the non-empty per-minute and per-hour
/// buckets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeriesState {
    pub slo: String,
    pub labels: Labels,
    pub minutes: Vec<Bucket>,
    pub hours: Vec<Bucket>,
}

/// Everything an [`SloTracker`] counted, so burn-rate windows survive a restart.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SloTrackerState {
    pub series: Vec<SeriesState>,
}

#[derive(Debug, Clone)]
struct SeriesCounts {
    minutes: Ring,
    hours: Ring,
}

#[derive(Debug, Clone)]
struct Tracked {
    spec: SloSpec,
    windows: Vec<BurnWindow>,
}

/// The state of one burn window of one series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowStatus {
    pub severity: Severity,
    pub long_window: String,
    pub short_window: String,
    pub threshold: f64,
    pub long_burn_rate: Option<f64>,
    pub short_burn_rate: Option<f64>,
    /// Both burn rates above the threshold: the alert's condition holds.
    pub burning: bool,
}

/// One SLO on one series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SloStatus {
    pub slo: String,
    pub labels: Labels,
    pub windows: Vec<WindowStatus>,
    /// Share of the period's budget left (1 = untouched, below 0 = overspent); `None` without
    /// traffic.
    pub budget_remaining: Option<f64>,
}

/// Default bound on tracked series (each costs about 80 KiB per SLO).
pub const DEFAULT_MAX_SERIES: usize = 1_000;

/// Counts good and bad requests per SLO and series and computes burn rates.
pub struct SloTracker {
    clock: Arc<dyn Clock>,
    slos: Vec<Tracked>,
    series: BTreeMap<(usize, Labels), SeriesCounts>,
    max_series: usize,
}

impl std::fmt::Debug for SloTracker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SloTracker")
            .field("slos", &self.slos)
            .field("series", &self.series.len())
            .field("max_series", &self.max_series)
            .finish_non_exhaustive()
    }
}

impl SloTracker {
    pub fn new(slos: Vec<SloSpec>, clock: Arc<dyn Clock>) -> Result<SloTracker, SloError> {
        let mut seen = BTreeSet::new();
        let mut tracked = Vec::with_capacity(slos.len());
        for spec in slos {
            spec.validate()?;
            if !seen.insert(spec.name.clone()) {
                return Err(SloError::Duplicate(spec.name));
            }
            tracked.push(Tracked {
                windows: spec.burn_windows(),
                spec,
            });
        }
        Ok(SloTracker {
            clock,
            slos: tracked,
            series: BTreeMap::new(),
            max_series: DEFAULT_MAX_SERIES,
        })
    }

    /// Caps the number of (SLO, series) pairs tracked.
    pub fn with_max_series(mut self, max: usize) -> Self {
        self.max_series = max;
        self
    }

    pub fn slos(&self) -> impl Iterator<Item = &SloSpec> {
        self.slos.iter().map(|t| &t.spec)
    }

    /// The alert rules of every SLO.
    pub fn alert_rules(&self) -> Vec<RuleSpec> {
        self.slos
            .iter()
            .flat_map(|t| t.spec.alert_rules())
            .collect()
    }

    fn index(&self, slo: &str) -> Result<usize, SloError> {
        self.slos
            .iter()
            .position(|t| t.spec.name == slo)
            .ok_or_else(|| SloError::Unknown(slo.to_string()))
    }

    fn counts_mut(&mut self, i: usize, labels: &Labels) -> Result<&mut SeriesCounts, SloError> {
        let key = (i, labels.clone());
        if !self.series.contains_key(&key) {
            if self.series.len() >= self.max_series {
                return Err(SloError::TooManySeries(self.series.len()));
            }
            let period = self.slos[i].spec.period_ms;
            let longest = self.slos[i]
                .windows
                .iter()
                .map(|w| w.long_ms.max(w.short_ms))
                .max()
                .unwrap_or(MINUTE_MS);
            let minutes = ((longest + MINUTE_MS - 1) / MINUTE_MS) as usize;
            let hours = ((period + HOUR_MS - 1) / HOUR_MS) as usize;
            self.series.insert(
                key.clone(),
                SeriesCounts {
                    minutes: Ring::new(MINUTE_MS, minutes),
                    hours: Ring::new(HOUR_MS, hours),
                },
            );
        }
        self.series
            .get_mut(&key)
            .ok_or_else(|| SloError::Unknown(self.slos[i].spec.name.clone()))
    }

    /// Records one request on series `labels` against every SLO.
    pub fn record_request(
        &mut self,
        labels: &Labels,
        latency_ms: f64,
        ok: bool,
    ) -> Result<(), SloError> {
        let now = self.clock.now_ms();
        for i in 0..self.slos.len() {
            let Some(good) = self.slos[i].spec.objective.classify(latency_ms, ok) else {
                continue;
            };
            let c = self.counts_mut(i, labels)?;
            let (g, b) = if good { (1, 0) } else { (0, 1) };
            c.minutes.add(now, g, b);
            c.hours.add(now, g, b);
        }
        Ok(())
    }

    /// Records counts already classified (e.g. from histogram buckets) for one SLO.
    pub fn record(
        &mut self,
        slo: &str,
        labels: &Labels,
        good: u64,
        bad: u64,
    ) -> Result<(), SloError> {
        let now = self.clock.now_ms();
        let i = self.index(slo)?;
        let c = self.counts_mut(i, labels)?;
        c.minutes.add(now, good, bad);
        c.hours.add(now, good, bad);
        Ok(())
    }

    /// The counts, for persisting (only non-empty buckets are kept).
    pub fn state(&self) -> SloTrackerState {
        SloTrackerState {
            series: self
                .series
                .iter()
                .map(|((i, labels), c)| SeriesState {
                    slo: self.slos[*i].spec.name.clone(),
                    labels: labels.clone(),
                    minutes: c.minutes.buckets(),
                    hours: c.hours.buckets(),
                })
                .collect(),
        }
    }

    /// Replaces the counts with persisted ones. Series of SLOs that no longer exist are skipped,
    /// as are series beyond the cap; returns how many series were restored.
    pub fn restore(&mut self, state: SloTrackerState) -> usize {
        self.series.clear();
        let mut restored = 0;
        for s in state.series {
            let Ok(i) = self.index(&s.slo) else {
                continue;
            };
            let Ok(c) = self.counts_mut(i, &s.labels) else {
                break;
            };
            for b in s.minutes {
                c.minutes.put(b);
            }
            for b in s.hours {
                c.hours.put(b);
            }
            restored += 1;
        }
        restored
    }

    /// Stops tracking a series (all SLOs).
    pub fn forget(&mut self, labels: &Labels) {
        self.series.retain(|(_, l), _| l != labels);
    }

    /// (good, bad) over the last `window_ms` (whole minutes, the current one included; at most
    /// the longest alert window).
    pub fn counts(
        &self,
        slo: &str,
        labels: &Labels,
        window_ms: i64,
    ) -> Result<(u64, u64), SloError> {
        let i = self.index(slo)?;
        let now = self.clock.now_ms();
        Ok(self
            .series
            .get(&(i, labels.clone()))
            .map(|c| c.minutes.sum(now, window_ms))
            .unwrap_or((0, 0)))
    }

    /// Bad share over the window; `None` without requests.
    pub fn error_ratio(
        &self,
        slo: &str,
        labels: &Labels,
        window_ms: i64,
    ) -> Result<Option<f64>, SloError> {
        let (good, bad) = self.counts(slo, labels, window_ms)?;
        let total = good + bad;
        Ok((total > 0).then(|| bad as f64 / total as f64))
    }

    /// Error ratio divided by the error budget; `None` without requests.
    pub fn burn_rate(
        &self,
        slo: &str,
        labels: &Labels,
        window_ms: i64,
    ) -> Result<Option<f64>, SloError> {
        let i = self.index(slo)?;
        let budget = self.slos[i].spec.objective.error_budget();
        Ok(self
            .error_ratio(slo, labels, window_ms)?
            .map(|r| r / budget))
    }

    /// Share of the period's error budget left; `None` without requests.
    pub fn budget_remaining(&self, slo: &str, labels: &Labels) -> Result<Option<f64>, SloError> {
        let i = self.index(slo)?;
        let spec = &self.slos[i].spec;
        let now = self.clock.now_ms();
        let Some(c) = self.series.get(&(i, labels.clone())) else {
            return Ok(None);
        };
        let (good, bad) = c.hours.sum(now, spec.period_ms);
        let total = good + bad;
        Ok((total > 0).then(|| 1.0 - (bad as f64 / total as f64) / spec.objective.error_budget()))
    }

    /// Burn rates of every series as indicators: for each SLO and series, the series' labels
    /// plus `slo="<name>"`, with `burn_rate_<window>` for every window of the table and
    /// `error_budget_remaining`. Windows without requests are left out (no data).
    pub fn indicators(&self) -> Indicators {
        let now = self.clock.now_ms();
        let mut out = Indicators::new();
        for ((i, labels), c) in &self.series {
            let t = &self.slos[*i];
            let budget = t.spec.objective.error_budget();
            let mut series = labels.clone();
            series.insert("slo", t.spec.name.clone());
            let mut windows: BTreeSet<i64> = BTreeSet::new();
            for w in &t.windows {
                windows.insert(w.long_ms);
                windows.insert(w.short_ms);
            }
            for w in windows {
                let (good, bad) = c.minutes.sum(now, w);
                if good + bad > 0 {
                    let ratio = bad as f64 / (good + bad) as f64;
                    out.set(
                        &series,
                        format!("{}{}", names::BURN_RATE_PREFIX, format_duration_ms(w)),
                        ratio / budget,
                    );
                }
            }
            let (good, bad) = c.hours.sum(now, t.spec.period_ms);
            if good + bad > 0 {
                out.set(
                    &series,
                    names::ERROR_BUDGET_REMAINING,
                    1.0 - (bad as f64 / (good + bad) as f64) / budget,
                );
            }
        }
        out
    }

    /// Every SLO on every series: burn rates per window and whether each alert's condition
    /// holds.
    pub fn status(&self) -> Vec<SloStatus> {
        let now = self.clock.now_ms();
        let mut out = Vec::new();
        for ((i, labels), c) in &self.series {
            let t = &self.slos[*i];
            let budget = t.spec.objective.error_budget();
            let burn = |w: i64| {
                let (good, bad) = c.minutes.sum(now, w);
                (good + bad > 0).then(|| bad as f64 / (good + bad) as f64 / budget)
            };
            let windows = t
                .windows
                .iter()
                .map(|w| {
                    let long = burn(w.long_ms);
                    let short = burn(w.short_ms);
                    WindowStatus {
                        severity: w.severity,
                        long_window: format_duration_ms(w.long_ms),
                        short_window: format_duration_ms(w.short_ms),
                        threshold: w.burn_rate,
                        long_burn_rate: long,
                        short_burn_rate: short,
                        burning: long.is_some_and(|v| v > w.burn_rate)
                            && short.is_some_and(|v| v > w.burn_rate),
                    }
                })
                .collect();
            let (good, bad) = c.hours.sum(now, t.spec.period_ms);
            out.push(SloStatus {
                slo: t.spec.name.clone(),
                labels: labels.clone(),
                windows,
                budget_remaining: (good + bad > 0)
                    .then(|| 1.0 - (bad as f64 / (good + bad) as f64) / budget),
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_keeps_only_its_window_and_ignores_writes_older_than_a_bucket() {
        let mut r = Ring::new(MINUTE_MS, 10);
        for m in 0..25 {
            r.add(m * MINUTE_MS, 1, u64::from(m % 2 == 0));
        }
        let now = 24 * MINUTE_MS + 59_000;
        // The last 10 minutes (15..=24) are kept; asking for more is capped at the ring.
        assert_eq!(r.sum(now, 10 * MINUTE_MS), (10, 5));
        assert_eq!(r.sum(now, 60 * MINUTE_MS), (10, 5));
        assert_eq!(r.sum(now, 1), (1, 1)); // the current minute (24, even)
        assert_eq!(r.sum(now, 3 * MINUTE_MS), (3, 2)); // 22, 23, 24
        // Much later: nothing in range.
        assert_eq!(r.sum(now + 11 * MINUTE_MS, 10 * MINUTE_MS), (0, 0));
        // A write for minute 14 would land in minute 24's slot: refused.
        r.add(14 * MINUTE_MS, 100, 100);
        assert_eq!(r.sum(now, 1), (1, 1));
    }
}
