//! `faultline gameday`: experiments in a seeded order, with a cool-down
//! between runs, within a time budget; one combined report. The work is
//! `faultline_chaos::gameday`; this is its command line.

use std::path::PathBuf;
use std::time::Duration;

use faultline_chaos::gameday::{self, GameDay, GameDayEvent};
use faultline_chaos::journal::Verdict;
use faultline_chaos::runner::{Bindings, LedgerDir};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::style::{Paint, paint};

/// Arguments of `faultline gameday`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  faultline gameday --seed 42 --duration 30m chaos/experiments/
  faultline gameday --seed 7 --duration 1h --cooldown 2m --report gameday/ \\
      --stop-on-failure chaos/experiments/kill-replica.toml chaos/experiments/catalog-down.toml
  faultline gameday --seed 42 --duration 20m --set prometheus=http://127.0.0.1:9091 chaos/experiments/

The same seed gives the same order on every machine and version (SplitMix64,
Fisher-Yates). A run starts only if the cool-down plus its expected length
(warm-up, steady state, method, recovery, alerts, after) fit the budget left;
the order starts again from the top while time is left. Ctrl-C stops the
current run (it rolls back) and the day; the report is still written.

Exit code: 0 every run passed, 1 a run did not pass, 2 error or interrupted.")]
pub struct GameDayArgs {
    /// Experiment files or directories (default: the experiments directory).
    pub paths: Vec<PathBuf>,
    /// Seeds the order (default: the clock; the report says which).
    #[arg(long)]
    pub seed: Option<u64>,
    /// The time budget (humantime: 30m, 1h 30m).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "30m")]
    pub duration: Duration,
    /// The pause between two runs.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "60s")]
    pub cooldown: Duration,
    /// Where the combined report and each run's journal and report go.
    #[arg(long, default_value = "gameday")]
    pub report: PathBuf,
    /// End the day at the first run that does not pass.
    #[arg(long)]
    pub stop_on_failure: bool,
    /// Override a [target] setting of every experiment (repeatable; `--set`
    /// is an alias), as for `run`.
    #[arg(long = "var", visible_alias = "set", value_name = "KEY=VALUE")]
    pub vars: Vec<String>,
    /// A TOML file shaped like [target] (repeatable), as for `run`.
    #[arg(long = "var-file", value_name = "PATH")]
    pub var_files: Vec<PathBuf>,
    /// Where to record active faults for `faultline cleanup`.
    #[arg(long, env = "FAULTLINE_LEDGER_DIR")]
    pub ledger_dir: Option<PathBuf>,
    /// Run without a guardian: if the day is killed outright, its faults
    /// stay until `faultline cleanup` (or their leases end).
    #[arg(long)]
    pub no_guardian: bool,
    /// No progress on stderr.
    #[arg(long, short)]
    pub quiet: bool,
}

fn day_line(event: &GameDayEvent, colour: bool) -> String {
    let head = |at_s: f64| paint(colour, Paint::Bold, &format!("[day {at_s:>6.0}s]"));
    match event {
        GameDayEvent::Order(order) => format!("order: {}", order.join(" → ")),
        GameDayEvent::CoolingDown { at_s, seconds } => {
            format!("{} cooling down {seconds:.0} s", head(*at_s))
        }
        GameDayEvent::RunStarted {
            index,
            experiment,
            at_s,
            estimate_s,
            left_s,
        } => format!(
            "{} run {index}: {experiment} (at most {estimate_s:.0} s expected, {left_s:.0} s left)",
            head(*at_s)
        ),
        GameDayEvent::RunEnded {
            index,
            experiment,
            at_s,
            verdict,
        } => {
            let style = match verdict {
                Verdict::Passed => Paint::Good,
                Verdict::Interrupted => Paint::Warn,
                _ => Paint::Bad,
            };
            format!(
                "{} run {index}: {experiment} {}",
                head(*at_s),
                paint(colour, style, verdict.as_str())
            )
        }
        GameDayEvent::Skipped(skipped) => paint(
            colour,
            Paint::Dim,
            &format!(
                "[day {:>6.0}s] not starting {}: {:.0} s expected, {:.0} s left",
                skipped.at_s, skipped.experiment, skipped.estimate_s, skipped.left_s
            ),
        ),
        GameDayEvent::Stopped { at_s, reason } => {
            format!("{} stopped: {}", head(*at_s), reason.describe())
        }
    }
}

impl GameDayArgs {
    pub async fn run(&self) -> anyhow::Result<u8> {
        let colour_err = super::style::enabled(true);
        let colour_out = super::style::enabled(false);
        let paths = if self.paths.is_empty() {
            vec![super::default_experiments_dir()]
        } else {
            self.paths.clone()
        };
        let experiments = super::experiment_files(&paths)?;
        let environment = super::run::environment_overrides(&self.var_files, &self.vars)?;
        let seed = self.seed.unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
        });
        let ledger_dir = self
            .ledger_dir
            .clone()
            .unwrap_or_else(faultline_chaos::ledger::default_dir);
        // One guardian for the whole day: every run's ledger carries this pid.
        let guardian = super::run::start_guardian(self.no_guardian, &ledger_dir).await?;
        let cancel = CancellationToken::new();
        super::run::watch_signals(cancel.clone(), colour_err, guardian.is_some());

        let (day_events, mut day_receiver) = mpsc::unbounded_channel();
        let (run_events, mut run_receiver) = mpsc::unbounded_channel();
        let quiet = self.quiet;
        let day_printer = tokio::spawn(async move {
            while let Some(event) = day_receiver.recv().await {
                if !quiet {
                    eprintln!("{}", day_line(&event, colour_err));
                }
            }
        });
        let run_printer = tokio::spawn(async move {
            while let Some(event) = run_receiver.recv().await {
                if !quiet && let Some(line) = super::progress::line(&event, colour_err) {
                    eprintln!("{line}");
                }
            }
        });
        let ledger = LedgerDir::At(ledger_dir);
        let day = GameDay {
            seed,
            duration: self.duration,
            cooldown: self.cooldown,
            experiments,
            stop_on_failure: self.stop_on_failure,
            report_dir: self.report.clone(),
            cancel,
            events: Some(day_events),
        };
        if !quiet {
            eprintln!(
                "faultline: game day, seed {seed}, {} experiments, budget {}",
                day.experiments.len(),
                humantime::format_duration(self.duration)
            );
        }
        let guardian_record = guardian
            .as_ref()
            .map(faultline_chaos::guardian::Guardian::record);
        let make_bindings = |_experiment: &str| Bindings {
            environment: environment.clone(),
            ledger: ledger.clone(),
            events: Some(run_events.clone()),
            guardian: guardian_record.clone(),
            ..Bindings::default()
        };
        let result = gameday::run(&day, make_bindings).await;
        if let Some(guardian) = guardian {
            guardian.release(super::run::GUARDIAN_EXIT_WAIT).await;
        }
        drop(day);
        drop(run_events);
        let _ = day_printer.await;
        let _ = run_printer.await;
        let report = result?;

        let tally: Vec<String> = report
            .tally()
            .iter()
            .map(|(verdict, count)| format!("{count} {verdict}"))
            .collect();
        let all_passed = report.runs.iter().all(|r| r.verdict == Verdict::Passed);
        let (style, word) = match report.stopped {
            gameday::StopReason::Interrupted => (Paint::Warn, "INTERRUPTED"),
            _ if all_passed => (Paint::Good, "PASSED"),
            _ => (Paint::Bad, "FAILED"),
        };
        println!(
            "{} game day, seed {seed}: {} runs ({}) in {:.0} s; stopped: {}",
            paint(colour_out, style, word),
            report.runs.len(),
            tally.join(", "),
            report.elapsed_s,
            report.stopped.describe()
        );
        for run in report.runs.iter().filter(|r| r.verdict != Verdict::Passed) {
            println!(
                "  {}. {} {}",
                run.index,
                run.experiment,
                run.verdict.as_str()
            );
            for reason in &run.deviations {
                println!("     - {reason}");
            }
        }
        println!("  report: {}", self.report.join("gameday.md").display());
        Ok(match report.stopped {
            gameday::StopReason::Interrupted => 2,
            _ if all_passed => 0,
            _ if report.runs.iter().any(|r| r.verdict == Verdict::Error) => 2,
            _ => 1,
        })
    }
}
