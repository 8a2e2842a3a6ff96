//! Training progress: a bar on a terminal, plain log lines otherwise (CI logs, pipes).

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

pub struct Progress {
    label: String,
    total: Option<usize>,
    bar: Option<ProgressBar>,
    last_line: Instant,
    started: Instant,
}

impl Progress {
    pub fn new(label: &str, total: Option<usize>) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let b = match total {
                Some(n) => ProgressBar::new(n as u64),
                None => ProgressBar::new_spinner(),
            };
            b.set_style(
                ProgressStyle::with_template("  {prefix} [{bar:30}] {pos}/{len} {msg} ({elapsed})")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
            b.set_prefix(label.to_string());
            b
        });
        Progress {
            label: label.to_string(),
            total,
            bar,
            last_line: Instant::now(),
            started: Instant::now(),
        }
    }

    /// Iteration `i` (0-based) finished with these losses.
    pub fn step(&mut self, i: usize, train_loss: f64, valid_loss: Option<f64>) {
        let msg = match valid_loss {
            Some(v) => format!("train {train_loss:.5} valid {v:.5}"),
            None => format!("train {train_loss:.5}"),
        };
        if let Some(b) = &self.bar {
            b.set_position(i as u64 + 1);
            b.set_message(msg);
        } else if self.last_line.elapsed() >= Duration::from_secs(2) {
            // Without a terminal: one line every couple of seconds at most.
            self.last_line = Instant::now();
            let of = self.total.map(|t| format!("/{t}")).unwrap_or_default();
            eprintln!("  {} iteration {}{of}: {msg}", self.label, i + 1);
        }
    }

    pub fn finish(&mut self) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
        eprintln!(
            "  {} done in {:.2}s",
            self.label,
            self.started.elapsed().as_secs_f64()
        );
    }
}
