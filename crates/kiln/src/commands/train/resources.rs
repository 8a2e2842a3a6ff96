//! What a run cost: CPU-seconds and peak memory from the kernel's resource accounting,
//! wall time, and an estimate in money from `[costs]`; and where the code came from.

use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::resource::{UsageWho, getrusage};

use crate::project::Costs;

/// CPU time and peak resident memory so far (this process, or its finished children).
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    pub cpu_seconds: f64,
    pub peak_rss_bytes: u64,
}

pub fn usage(who: UsageWho) -> Usage {
    match getrusage(who) {
        Ok(u) => {
            let secs = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
            Usage {
                cpu_seconds: secs(u.user_time()) + secs(u.system_time()),
                // Linux reports kilobytes.
                peak_rss_bytes: u.max_rss().max(0) as u64 * 1024,
            }
        }
        Err(_) => Usage::default(),
    }
}

/// Measures one stretch of work: wall time and the CPU it used (this process plus the child
/// processes that finished during it).
pub struct Meter {
    started: Instant,
    self_at_start: Usage,
    children_at_start: Usage,
}

/// What a [`Meter`] saw.
#[derive(Debug, Clone, Copy)]
pub struct Measured {
    pub wall: Duration,
    pub cpu_seconds: f64,
    pub peak_rss_bytes: u64,
}

impl Meter {
    pub fn start() -> Meter {
        Meter {
            started: Instant::now(),
            self_at_start: usage(UsageWho::RUSAGE_SELF),
            children_at_start: usage(UsageWho::RUSAGE_CHILDREN),
        }
    }

    pub fn stop(&self) -> Measured {
        let s = usage(UsageWho::RUSAGE_SELF);
        let c = usage(UsageWho::RUSAGE_CHILDREN);
        Measured {
            wall: self.started.elapsed(),
            cpu_seconds: (s.cpu_seconds - self.self_at_start.cpu_seconds).max(0.0)
                + (c.cpu_seconds - self.children_at_start.cpu_seconds).max(0.0),
            // The kernel keeps a high-water mark, not a per-interval one: the largest of this
            // process's and any child's peak is an upper bound for the stretch.
            peak_rss_bytes: s.peak_rss_bytes.max(c.peak_rss_bytes),
        }
    }
}

impl Measured {
    /// CPU core-hours × price + peak GB × wall hours × price.
    pub fn cost(&self, c: &Costs) -> f64 {
        let hours = self.wall.as_secs_f64() / 3600.0;
        self.cpu_seconds / 3600.0 * c.core_hour
            + self.peak_rss_bytes as f64 / 1e9 * hours * c.gb_hour
    }

    /// The run metrics MLflow shows for this stretch.
    pub fn metrics(&self, c: &Costs) -> Vec<(String, f64)> {
        vec![
            ("wall_seconds".into(), self.wall.as_secs_f64()),
            ("cpu_seconds".into(), self.cpu_seconds),
            ("peak_rss_mb".into(), self.peak_rss_bytes as f64 / 1e6),
            ("cost_estimate".into(), self.cost(c)),
        ]
    }
}

/// The git commit of the project directory and whether the work tree had changes.
#[derive(Debug, Clone, Default)]
pub struct CodeVersion {
    pub commit: Option<String>,
    pub dirty: bool,
}

pub fn code_version(dir: &Path) -> CodeVersion {
    let git = |args: &[&str]| -> Option<String> {
        let out = std::process::Command::new("git")
            .args(args)
            .current_dir(dir)
            .stderr(std::process::Stdio::null())
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    match git(&["rev-parse", "HEAD"]) {
        Some(commit) if !commit.is_empty() => CodeVersion {
            commit: Some(commit),
            dirty: git(&["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|s| !s.is_empty()),
        },
        _ => CodeVersion::default(),
    }
}

pub fn host() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "unknown".into())
}

/// Who runs this (for `mlflow.user`).
pub fn user() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "kiln".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_busy_loop_uses_cpu_and_costs_money() {
        let m = Meter::start();
        let mut x = 0u64;
        // Spin until the process has used 0.15 s of CPU by the kernel's own account (on a
        // busy machine that takes longer than 0.15 s of wall time), for at most 20 s.
        let before = usage(UsageWho::RUSAGE_SELF).cpu_seconds;
        let t = Instant::now();
        while usage(UsageWho::RUSAGE_SELF).cpu_seconds - before < 0.15
            && t.elapsed() < Duration::from_secs(20)
        {
            for _ in 0..100_000 {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
            }
        }
        std::hint::black_box(x);
        let got = m.stop();
        assert!(got.cpu_seconds >= 0.1, "{got:?}");
        assert!(got.peak_rss_bytes > 1_000_000, "{got:?}");
        let c = Costs::default();
        let cost = got.cost(&c);
        assert!(cost > 0.0 && cost < 0.01, "{cost}");
    }
}
