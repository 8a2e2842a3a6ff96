//! Integration tests of kiln-monitor.

mod alerts;
mod expr;
mod grouping;
mod notify;
mod predlog;
mod silences;
mod slo;
