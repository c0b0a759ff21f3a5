//! Game days: a set of experiments run one at a time in a seeded,
//! reproducible random order, with a cool-down between runs, until a time
//! budget is spent; one combined report at the end.
//!
//! ```no_run
//! # async fn example() -> Result<(), faultline_chaos::gameday::GameDayError> {
//! use std::time::Duration;
//! use faultline_chaos::gameday::{self, GameDay};
//! use faultline_chaos::runner::Bindings;
//!
//! let day = GameDay {
//!     seed: 42,
//!     duration: Duration::from_secs(30 * 60),
//!     cooldown: Duration::from_secs(60),
//!     experiments: vec!["chaos/experiments/kill-replica.toml".into()],
//!     report_dir: "gameday/".into(),
//!     ..GameDay::default()
//! };
//! let report = gameday::run(&day, |_experiment| Bindings::default()).await?;
//! println!("{} runs, stopped: {:?}", report.runs.len(), report.stopped);
//! # Ok(()) }
//! ```
//!
//! - The order ([`order`]): the experiments shuffled by SplitMix64 seeded
//!   with `seed`, the same on every machine and version; when the order is
//!   done and time is left, it starts again from the top.
//! - The budget: a run starts only if the cool-down plus its estimate
//!   ([`estimate()`]: warm-up, steady state, method, recovery, alerts, after)
//!   fit what is left of `duration`; one that does not is skipped (and
//!   listed), and the next in the order is tried. The day ends when none
//!   fits.
//! - Each run goes through [`run_experiment`] with the [`Bindings`] the
//!   caller makes for it, so it rolls back and honours its safeguards as a
//!   single run does. Cancelling `cancel` interrupts the current run (which
//!   rolls back) and ends the day; so does a run that comes back
//!   interrupted. With `stop_on_failure`, the first run that does not pass
//!   ends the day.
//! - The report ([`GameDayReport`]): `gameday.json`, `gameday.md` and the
//!   timeline `gameday.svg`/`.png` in `report_dir`, each run's journal and
//!   report under `report_dir/runs/`.

pub mod estimate;
pub mod markdown;
pub mod order;
pub mod record;
pub mod timeline;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc::UnboundedSender;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::experiment::Experiment;
use crate::journal::{Verdict, unix_ms};
use crate::report::ReportError;
use crate::report::plot::PlotError;
use crate::runner::{Bindings, RunError, compile, run_experiment};

pub use estimate::estimate;
pub use record::{AlertTiming, GameDayReport, GameDayRun, Skipped, StopReason};

/// A game day's settings.
#[derive(Debug, Clone)]
pub struct GameDay {
    /// Seeds the order.
    pub seed: u64,
    /// The time budget: no run starts that is not expected to end within it.
    pub duration: Duration,
    /// The pause between two runs, for the system (and its alerts) to settle.
    pub cooldown: Duration,
    /// Experiment files.
    pub experiments: Vec<PathBuf>,
    /// End the day at the first run that does not pass.
    pub stop_on_failure: bool,
    /// Where the report goes (created if missing).
    pub report_dir: PathBuf,
    /// Cancelling it interrupts the current run and ends the day.
    pub cancel: CancellationToken,
    /// Progress of the day (the runs' own progress goes where their
    /// [`Bindings::events`] say).
    pub events: Option<UnboundedSender<GameDayEvent>>,
}

impl Default for GameDay {
    /// Seed 0, 30 minutes, a 60 s cool-down, no experiments, carry on after
    /// failures, `gameday/`.
    fn default() -> Self {
        Self {
            seed: 0,
            duration: Duration::from_secs(30 * 60),
            cooldown: Duration::from_secs(60),
            experiments: Vec::new(),
            stop_on_failure: false,
            report_dir: PathBuf::from("gameday"),
            cancel: CancellationToken::new(),
            events: None,
        }
    }
}

/// Progress of a game day. Times are seconds since it started.
#[derive(Debug, Clone, PartialEq)]
pub enum GameDayEvent {
    /// The seeded order of the experiments (by stem).
    Order(Vec<String>),
    CoolingDown {
        at_s: f64,
        seconds: f64,
    },
    RunStarted {
        index: usize,
        experiment: String,
        at_s: f64,
        estimate_s: f64,
        left_s: f64,
    },
    RunEnded {
        index: usize,
        experiment: String,
        at_s: f64,
        verdict: Verdict,
    },
    Skipped(Skipped),
    Stopped {
        at_s: f64,
        reason: StopReason,
    },
}

/// Why a game day could not be run or reported.
#[derive(Debug, thiserror::Error)]
pub enum GameDayError {
    #[error("a game day needs at least one experiment")]
    NoExperiments,
    #[error("{}: {error}", path.display())]
    Experiment { path: PathBuf, error: Box<RunError> },
    #[error("cannot write {}: {error}", path.display())]
    Write {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error(transparent)]
    Report(#[from] ReportError),
    #[error(transparent)]
    Plot(#[from] PlotError),
}

/// The files of a game day's combined report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GameDayFiles {
    pub json: PathBuf,
    pub markdown: PathBuf,
    pub svg: PathBuf,
    pub png: PathBuf,
}

/// An experiment ready for the day.
struct Entry {
    path: PathBuf,
    stem: String,
    estimate: Duration,
}

fn stem(path: &Path) -> String {
    path.file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("experiment")
        .to_owned()
}

fn write_err(path: &Path) -> impl FnOnce(std::io::Error) -> GameDayError + '_ {
    move |error| GameDayError::Write {
        path: path.to_owned(),
        error,
    }
}

/// Runs the game day: every experiment is loaded and compiled first (an
/// invalid one is an error before anything runs), then run in the seeded
/// order until the budget is spent. `make_bindings` is called with the
/// experiment's file stem for each run (and once per experiment up front,
/// to compile it for its estimate). Returns the report, already written.
pub async fn run(
    day: &GameDay,
    make_bindings: impl Fn(&str) -> Bindings,
) -> Result<GameDayReport, GameDayError> {
    if day.experiments.is_empty() {
        return Err(GameDayError::NoExperiments);
    }
    let mut entries = Vec::new();
    for path in &day.experiments {
        let stem = stem(path);
        let experiment_err = |error: RunError| GameDayError::Experiment {
            path: path.clone(),
            error: Box::new(error),
        };
        let bindings = make_bindings(&stem);
        let experiment = Experiment::load_with(path, &bindings.environment)
            .map_err(|e| experiment_err(RunError::Experiment(e)))?;
        let plan = compile(&experiment, Some(path), &bindings)
            .map_err(|e| experiment_err(RunError::Compile(e)))?;
        entries.push(Entry {
            path: path.clone(),
            stem,
            estimate: estimate(&plan),
        });
    }
    let order = order::shuffle(entries.len(), day.seed);
    let emit = |event: GameDayEvent| {
        if let Some(events) = &day.events {
            let _ = events.send(event);
        }
    };
    let order_names: Vec<String> = order.iter().map(|&i| entries[i].stem.clone()).collect();
    emit(GameDayEvent::Order(order_names.clone()));

    let started = Instant::now();
    let started_system = SystemTime::now();
    let since = |at: Instant| at.saturating_duration_since(started).as_secs_f64();
    let runs_dir = day.report_dir.join("runs");
    std::fs::create_dir_all(&runs_dir).map_err(write_err(&runs_dir))?;

    let mut runs: Vec<GameDayRun> = Vec::new();
    let mut skipped = Vec::new();
    let mut last_end: Option<Instant> = None;
    let mut position = 0;
    let mut skips_in_a_row = 0;
    let stopped = loop {
        if day.cancel.is_cancelled() {
            break StopReason::Interrupted;
        }
        if skips_in_a_row >= entries.len() {
            break StopReason::Budget;
        }
        let entry = &entries[order[position % order.len()]];
        position += 1;
        let now = Instant::now();
        let start_at = last_end.map_or(now, |end| (end + day.cooldown).max(now));
        let deadline = started + day.duration;
        if start_at + entry.estimate > deadline {
            let skip = Skipped {
                experiment: entry.stem.clone(),
                at_s: since(now),
                estimate_s: entry.estimate.as_secs_f64(),
                left_s: deadline.saturating_duration_since(start_at).as_secs_f64(),
            };
            emit(GameDayEvent::Skipped(skip.clone()));
            skipped.push(skip);
            skips_in_a_row += 1;
            continue;
        }
        skips_in_a_row = 0;
        if start_at > now {
            // The cool-down: waiting on the clock is the point here.
            emit(GameDayEvent::CoolingDown {
                at_s: since(now),
                seconds: (start_at - now).as_secs_f64(),
            });
            tokio::select! {
                () = day.cancel.cancelled() => break StopReason::Interrupted,
                () = tokio::time::sleep_until(start_at) => {}
            }
        }
        let index = runs.len() + 1;
        let run_start = Instant::now();
        emit(GameDayEvent::RunStarted {
            index,
            experiment: entry.stem.clone(),
            at_s: since(run_start),
            estimate_s: entry.estimate.as_secs_f64(),
            left_s: deadline.saturating_duration_since(run_start).as_secs_f64(),
        });
        let record = run_one(
            day,
            &make_bindings,
            entry,
            index,
            since(run_start),
            &runs_dir,
        )
        .await?;
        // The cool-down counts from when the run and its report are done.
        last_end = Some(Instant::now());
        emit(GameDayEvent::RunEnded {
            index,
            experiment: entry.stem.clone(),
            at_s: record.end_s,
            verdict: record.verdict,
        });
        let interrupted = record.verdict == Verdict::Interrupted;
        let failed = record.failed();
        runs.push(record);
        if interrupted || day.cancel.is_cancelled() {
            break StopReason::Interrupted;
        }
        if failed && day.stop_on_failure {
            break StopReason::Failure;
        }
    };
    let elapsed_s = since(Instant::now());
    emit(GameDayEvent::Stopped {
        at_s: elapsed_s,
        reason: stopped,
    });
    let report = GameDayReport {
        seed: day.seed,
        budget_s: day.duration.as_secs_f64(),
        cooldown_s: day.cooldown.as_secs_f64(),
        stop_on_failure: day.stop_on_failure,
        order: order_names,
        start: humantime::format_rfc3339_millis(started_system).to_string(),
        start_unix_ms: unix_ms(started_system),
        elapsed_s,
        stopped,
        runs,
        skipped,
    };
    write(&report, &day.report_dir)?;
    Ok(report)
}

/// One run: its journal and report under `runs_dir`, its record.
async fn run_one(
    day: &GameDay,
    make_bindings: &impl Fn(&str) -> Bindings,
    entry: &Entry,
    index: usize,
    start_s: f64,
    runs_dir: &Path,
) -> Result<GameDayRun, GameDayError> {
    let bindings = make_bindings(&entry.stem);
    // The day's cancellation interrupts the run, which then rolls back.
    let run_cancel = bindings.cancel.clone();
    let day_cancel = day.cancel.clone();
    let link = tokio::spawn(async move {
        day_cancel.cancelled().await;
        run_cancel.cancel();
    });
    let result = run_experiment(entry.path.as_path(), bindings).await;
    link.abort();
    let estimate_s = entry.estimate.as_secs_f64();
    let journal = match result {
        Ok(journal) => journal,
        Err(error) => {
            return Ok(GameDayRun {
                index,
                experiment: entry.stem.clone(),
                path: entry.path.display().to_string(),
                title: entry.stem.clone(),
                verdict: Verdict::Error,
                start_s,
                end_s: start_s,
                estimate_s,
                journal: None,
                report: None,
                fault_window: None,
                alerts: Vec::new(),
                alerts_seen: Vec::new(),
                deviations: vec![format!("could not start: {error}")],
            });
        }
    };
    let name = format!("{index:02}-{}", entry.stem);
    let journal_path = runs_dir.join(format!("{name}.journal.json"));
    journal
        .save(&journal_path)
        .map_err(|error| GameDayError::Write {
            path: journal_path.clone(),
            error: std::io::Error::other(error.to_string()),
        })?;
    let files = crate::report::write(&journal, runs_dir, &name)?;
    let mut record = GameDayRun::from_journal(
        index,
        &entry.stem,
        &entry.path,
        &journal,
        start_s,
        start_s + journal.duration,
        estimate_s,
    );
    let relative = |path: &Path| {
        path.strip_prefix(&day.report_dir)
            .unwrap_or(path)
            .display()
            .to_string()
    };
    record.journal = Some(relative(&journal_path));
    record.report = Some(relative(&files.markdown));
    Ok(record)
}

/// Writes `gameday.json`, `gameday.md`, `gameday.svg` and `gameday.png`
/// into `dir`.
pub fn write(report: &GameDayReport, dir: &Path) -> Result<GameDayFiles, GameDayError> {
    std::fs::create_dir_all(dir).map_err(write_err(dir))?;
    let files = GameDayFiles {
        json: dir.join("gameday.json"),
        markdown: dir.join("gameday.md"),
        svg: dir.join("gameday.svg"),
        png: dir.join("gameday.png"),
    };
    let json = serde_json::to_vec_pretty(report)
        .map_err(|e| write_err(&files.json)(std::io::Error::other(e)))?;
    std::fs::write(&files.json, json).map_err(write_err(&files.json))?;
    std::fs::write(&files.svg, timeline::render_svg(report)?).map_err(write_err(&files.svg))?;
    timeline::write_png(report, &files.png)?;
    std::fs::write(
        &files.markdown,
        markdown::render(report, Some("gameday.svg")),
    )
    .map_err(write_err(&files.markdown))?;
    Ok(files)
}
