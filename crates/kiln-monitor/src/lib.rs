//! Kiln's monitoring: the sampled prediction log, SLO burn rates, alert rules and their state
//! machine, notifications (Alertmanager webhook v4), incidents and rollback decisions.
//!
//! - [`clock`]: the injectable clock every time-dependent part takes, so tests step time.
//! - [`config`]: the `[deploy.*]` and `[monitor.*]` sections of `kiln.toml`.
//! - [`alert`]: `when` expressions over indicators, pending → firing → resolved, grouping,
//!   silences, notifications.
//! - [`slo`]: SLOs turned into multi-window burn-rate alerts.
//! - [`indicator`]: the [`indicator::Indicators`] snapshot (series labels → indicator values) that
//!   rules are evaluated on, and label matchers.
//! - [`expr`]: the `when` expression language (comparisons, `and`/`or`/`not`, arithmetic, label
//!   selectors; missing values are "no data" and never fire).
//! - [`notify`]: Alertmanager webhook v4 payloads and the notifier that POSTs them with retries.
//! - [`window`]: indicators over time windows (rates, error ratio, latency quantiles) from
//!   sampled cumulative counters.
//! - [`health`]: model health over the prediction log: input and prediction drift against
//!   the training profile, realised metrics once labels arrive, per version and window.
//! - [`predlog`]: the sampled prediction log, buffered in bounded memory and written as Parquet.

pub mod alert;
pub mod clock;
pub mod config;
pub mod expr;
pub mod health;
pub mod indicator;
pub mod notify;
pub mod predlog;
pub mod slo;
pub mod window;
