//! End-to-end tests of the `kiln` binary: start-up, shutdown, and crash durability.

mod apply;
mod crash;
mod data;
mod demo;
mod docs;
mod lifecycle;
mod loadtest;
mod monitor;
mod monitor_report;
mod predlog;
mod release;
mod serve;
mod train;

use std::path::PathBuf;

pub fn kiln_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_kiln"))
}
