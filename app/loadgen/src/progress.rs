//! Live progress on stderr: an indicatif bar on a terminal, a line every few
//! seconds otherwise, or nothing.

use std::io::{IsTerminal, Write as _};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::config::Config;
use crate::report::Window;

/// How progress is shown.
#[derive(Debug)]
pub struct Progress {
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    Bar {
        bar: ProgressBar,
        /// The bar counts requests (else elapsed milliseconds, or nothing).
        by_requests: bool,
    },
    Lines {
        every: Duration,
        last_line_at: f64,
        last_line_requests: u64,
        /// Worst window p99 since the last line.
        worst_p99_ms: f64,
    },
    Quiet,
}

impl Progress {
    /// A bar when stderr is a terminal, else a line every `line_every`;
    /// nothing when `quiet`.
    pub fn for_stderr(config: &Config, quiet: bool, line_every: Duration) -> Self {
        let kind = if quiet {
            Kind::Quiet
        } else if std::io::stderr().is_terminal() {
            bar(config)
        } else {
            Kind::Lines {
                every: line_every,
                last_line_at: 0.0,
                last_line_requests: 0,
                worst_p99_ms: 0.0,
            }
        };
        Self { kind }
    }

    /// Shows nothing.
    pub fn quiet() -> Self {
        Self { kind: Kind::Quiet }
    }

    /// Updates the display with the window that just ended.
    pub fn on_window(&mut self, window: &Window) {
        match &mut self.kind {
            Kind::Bar { bar, by_requests } => {
                if *by_requests {
                    bar.set_position(window.cumulative_requests);
                } else {
                    bar.set_position(millis(window.end_offset_s));
                }
                bar.set_message(status_line(window, window.totals.latency_ms.p99));
            }
            Kind::Lines {
                every,
                last_line_at,
                last_line_requests,
                worst_p99_ms,
            } => {
                *worst_p99_ms = worst_p99_ms.max(window.totals.latency_ms.p99);
                let since = window.end_offset_s - *last_line_at;
                if since >= every.as_secs_f64() {
                    let requests = window.cumulative_requests - *last_line_requests;
                    let rate = requests as f64 / since;
                    let line = format!(
                        "loadgen [{:>7.1}s] {} requests, {:.1} req/s, {} errors ({:.2} %), worst p99 {:.1} ms",
                        window.end_offset_s,
                        window.cumulative_requests,
                        rate,
                        window.cumulative_errors,
                        ratio(window.cumulative_errors, window.cumulative_requests) * 100.0,
                        worst_p99_ms
                    );
                    let _ = writeln!(std::io::stderr(), "{line}");
                    *last_line_at = window.end_offset_s;
                    *last_line_requests = window.cumulative_requests;
                    *worst_p99_ms = 0.0;
                }
            }
            Kind::Quiet => {}
        }
    }

    /// Removes the bar, before the summary is printed.
    pub fn finish(&self) {
        if let Kind::Bar { bar, .. } = &self.kind {
            bar.finish_and_clear();
        }
    }
}

fn bar(config: &Config) -> Kind {
    let (length, by_requests) = match (config.requests, config.duration) {
        (Some(n), _) => (Some(n), true),
        (None, Some(d)) => (
            Some(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            false,
        ),
        (None, None) => (None, false),
    };
    let template = if length.is_some() {
        "{spinner} [{elapsed_precise}] {wide_bar} {msg}"
    } else {
        "{spinner} [{elapsed_precise}] {msg}"
    };
    let bar = ProgressBar::with_draw_target(length, ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.enable_steady_tick(Duration::from_millis(200));
    Kind::Bar { bar, by_requests }
}

fn status_line(window: &Window, p99_ms: f64) -> String {
    format!(
        "{} req  {:.1} req/s  {} errors ({:.2} %)  p99 {:.1} ms",
        window.cumulative_requests,
        window.totals.rate,
        window.cumulative_errors,
        ratio(window.cumulative_errors, window.cumulative_requests) * 100.0,
        p99_ms
    )
}

fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

fn millis(seconds: f64) -> u64 {
    (seconds.max(0.0) * 1000.0) as u64
}
