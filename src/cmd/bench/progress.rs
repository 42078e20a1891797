//! The progress line on stderr while a run goes (only on a terminal).

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// The progress line on a terminal (stderr); hidden otherwise.
pub(super) struct Progress {
    pub(super) bar: ProgressBar,
    pub(super) shown: bool,
}

impl Progress {
    pub(super) fn new() -> Self {
        let shown = std::io::stderr().is_terminal();
        let bar = if shown {
            ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr())
        } else {
            ProgressBar::hidden()
        };
        Self { bar, shown }
    }

    pub(super) fn phase(&self, prefix: &str, msg: &str) {
        self.bar.set_style(
            ProgressStyle::with_template("{spinner} {prefix} {msg} [{elapsed}]")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        self.bar.set_prefix(prefix.to_string());
        self.bar.set_message(msg.to_string());
        self.bar.reset_elapsed();
        self.bar.enable_steady_tick(Duration::from_millis(100));
    }

    pub(super) fn tasks(&self, prefix: &str, total: u64) {
        self.bar.set_style(
            ProgressStyle::with_template(
                "{spinner} {prefix} {bar:30} {pos}/{len} tasks {per_sec} [{elapsed}]",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        self.bar.set_prefix(prefix.to_string());
        self.bar.set_length(total);
        self.bar.set_position(0);
        self.bar.reset_elapsed();
    }

    /// A line for people, above the progress line (stderr, terminal only).
    pub(super) fn note(&self, line: &str) {
        if self.shown {
            self.bar.println(line);
        }
    }

    pub(super) fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
