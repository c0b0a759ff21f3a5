//! The guardian: a second process that reverts a run's faults when the run's
//! process dies without doing so itself (SIGKILL, the OOM killer, a crash, a
//! terminal that went away).
//!
//! `faultline run` starts it ([`Guardian::spawn`]) as `faultline guardian`,
//! the same executable, in a process group of its own (a terminal's SIGINT
//! and SIGHUP go to the foreground group, not to it; it ignores both
//! anyway), with its stdin a pipe from the run. It does nothing but wait for
//! that pipe to close ([`watch`]): the kernel closes it when the run's
//! process ends, however it ends. Then it reverts, as `faultline cleanup`
//! would ([`crate::cleanup`]), every ledger file of the directory whose
//! recorded pid is the run's, and exits. After a normal end the run has
//! removed its ledger file already, so there is nothing to do.
//!
//! Beside the ledger files it keeps `guardian-<run pid>.pid` (its own pid,
//! while it lives) and `guardian-<run pid>.log` (what it did; removed when
//! it had nothing to do). Its stdout is a second pipe to the run, for one
//! line, `ready`, once it is watching: a run whose guardian does not come up
//! fails before it injects anything.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, SystemTime};

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};

use crate::actions::Services;
use crate::cleanup;
use crate::environment::DockerTarget;
use crate::journal::GuardianRecord;
use crate::ledger;

/// The line the guardian prints on stdout once it is watching.
pub const READY: &str = "ready";

/// How long [`Guardian::spawn`] waits for [`READY`].
pub const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a guardian could not be started.
#[derive(Debug, thiserror::Error)]
pub enum GuardianError {
    #[error("cannot create the ledger directory {}: {error}", dir.display())]
    Dir { dir: PathBuf, error: std::io::Error },
    #[error("cannot open the guardian's log {}: {error}", path.display())]
    Log {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("cannot start the guardian ({}): {error}", exe.display())]
    Spawn { exe: PathBuf, error: std::io::Error },
    #[error("the guardian did not say it was ready within {timeout:?}: {reason} (see {})", log.display())]
    NotReady {
        timeout: Duration,
        reason: String,
        log: PathBuf,
    },
}

/// The guardian's log file for the run whose pid is `run_pid`.
pub fn log_path(dir: &Path, run_pid: u32) -> PathBuf {
    dir.join(format!("guardian-{run_pid}.log"))
}

/// The file holding the guardian's pid while it lives.
pub fn pid_path(dir: &Path, run_pid: u32) -> PathBuf {
    dir.join(format!("guardian-{run_pid}.pid"))
}

/// A running guardian, from the run's side. Keep it for as long as the run
/// lasts: dropping it closes the pipe, which the guardian takes as the end
/// of the run.
#[derive(Debug)]
pub struct Guardian {
    child: Child,
    stdin: Option<ChildStdin>,
    pid: u32,
    log: PathBuf,
}

impl Guardian {
    /// Starts `exe guardian --parent <this pid> --ledger-dir <dir>` and waits
    /// until it says it is ready.
    pub async fn spawn(exe: &Path, ledger_dir: &Path) -> Result<Self, GuardianError> {
        std::fs::create_dir_all(ledger_dir).map_err(|error| GuardianError::Dir {
            dir: ledger_dir.to_owned(),
            error,
        })?;
        let run_pid = std::process::id();
        let log = log_path(ledger_dir, run_pid);
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .map_err(|error| GuardianError::Log {
                path: log.clone(),
                error,
            })?;
        let mut command = Command::new(exe);
        command
            .arg("guardian")
            .arg("--parent")
            .arg(run_pid.to_string())
            .arg("--ledger-dir")
            .arg(ledger_dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log_file))
            .kill_on_drop(false)
            .process_group(0);
        let spawn_error = |error| GuardianError::Spawn {
            exe: exe.to_owned(),
            error,
        };
        let mut child = command.spawn().map_err(spawn_error)?;
        let not_ready = |reason: String| GuardianError::NotReady {
            timeout: READY_TIMEOUT,
            reason,
            log: log.clone(),
        };
        let pid = child
            .id()
            .ok_or_else(|| not_ready("it exited at once".to_owned()))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| not_ready("no pipe from it".to_owned()))?;
        let mut lines = BufReader::new(stdout).lines();
        match tokio::time::timeout(READY_TIMEOUT, lines.next_line()).await {
            Ok(Ok(Some(line))) if line.trim() == READY => {}
            Ok(Ok(Some(line))) => return Err(not_ready(format!("it said {line:?}"))),
            Ok(Ok(None)) => return Err(not_ready("it exited".to_owned())),
            Ok(Err(err)) => return Err(not_ready(err.to_string())),
            Err(_) => return Err(not_ready("no answer".to_owned())),
        }
        let stdin = child.stdin.take();
        Ok(Self {
            child,
            stdin,
            pid,
            log,
        })
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn log(&self) -> &Path {
        &self.log
    }

    /// What the journal records.
    pub fn record(&self) -> GuardianRecord {
        GuardianRecord {
            pid: self.pid,
            log: self.log.display().to_string(),
        }
    }

    /// Closes the pipe (the run is over) and waits, up to `timeout`, for the
    /// guardian to exit.
    pub async fn release(mut self, timeout: Duration) {
        drop(self.stdin.take());
        let _ = tokio::time::timeout(timeout, self.child.wait()).await;
    }
}

/// What the guardian did once its run was gone.
#[derive(Debug, Default)]
pub struct Watched {
    /// Ledger files of the run it found.
    pub runs: usize,
    /// Undo records carried out, and how many of them failed.
    pub reverted: usize,
    pub failed: usize,
}

fn log_line(message: &str) {
    let now = humantime::format_rfc3339_seconds(SystemTime::now());
    let mut stderr = std::io::stderr().lock();
    let _ = writeln!(stderr, "{now} {message}");
}

/// The guardian's side: ignores SIGINT and SIGHUP, writes its pid file,
/// says [`READY`] on stdout, waits for `input` to end, then reverts what the
/// ledger files of `run_pid` in `dir` list. Logs to stderr.
pub async fn watch(run_pid: u32, dir: &Path, mut input: impl AsyncRead + Unpin) -> Watched {
    ignore_terminal_signals();
    let pid_file = pid_path(dir, run_pid);
    if let Err(err) = std::fs::write(&pid_file, format!("{}\n", std::process::id())) {
        log_line(&format!("cannot write {}: {err}", pid_file.display()));
    }
    log_line(&format!(
        "guardian {} watching run pid {run_pid} (ledger {})",
        std::process::id(),
        dir.display()
    ));
    {
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "{READY}");
        let _ = stdout.flush();
    }
    let mut sink = [0u8; 256];
    loop {
        match input.read(&mut sink).await {
            Ok(0) => break,
            Ok(_) => {}
            Err(err) => {
                log_line(&format!(
                    "reading the pipe from the run failed: {err}; acting as if it ended"
                ));
                break;
            }
        }
    }
    let watched = revert_for(run_pid, dir).await;
    let _ = std::fs::remove_file(&pid_file);
    if watched.runs == 0 {
        // A normal end: nothing was left, nothing to keep.
        let _ = std::fs::remove_file(log_path(dir, run_pid));
    }
    watched
}

/// Registering a handler replaces the default action (terminate) for good;
/// the task only notes the signals.
fn ignore_terminal_signals() {
    use tokio::signal::unix::{SignalKind, signal};
    for (kind, name) in [
        (SignalKind::hangup(), "SIGHUP"),
        (SignalKind::interrupt(), "SIGINT"),
    ] {
        match signal(kind) {
            Ok(mut stream) => {
                tokio::spawn(async move {
                    while stream.recv().await.is_some() {
                        log_line(&format!("{name} ignored"));
                    }
                });
            }
            Err(err) => log_line(&format!("cannot ignore {name}: {err}")),
        }
    }
}

/// Reverts every ledger file in `dir` whose pid is `run_pid`.
async fn revert_for(run_pid: u32, dir: &Path) -> Watched {
    let mut watched = Watched::default();
    let runs = match ledger::read_each(dir) {
        Ok(runs) => runs,
        Err(err) => {
            log_line(&format!("the run ended; cannot read its ledger: {err}"));
            return watched;
        }
    };
    let mine: Vec<_> = runs
        .into_iter()
        .filter_map(|(path, run)| match run {
            Ok(run) => Some((path, run)),
            Err(err) => {
                log_line(&format!("skipping {}: {err}", path.display()));
                None
            }
        })
        .filter(|(_, run)| run.pid == run_pid)
        .collect();
    if mine.is_empty() {
        log_line("the run ended and left no fault behind");
        return watched;
    }
    let services = match Services::new(DockerTarget::default()) {
        Ok(services) => services,
        Err(err) => {
            log_line(&format!("cannot revert: {err}; run `faultline cleanup`"));
            watched.runs = mine.len();
            return watched;
        }
    };
    for (path, run) in mine {
        watched.runs += 1;
        log_line(&format!(
            "run {} ({}) ended without reverting its faults: reverting them",
            run.run_id, run.experiment
        ));
        match cleanup::revert_run(&path, run, &services).await {
            Ok(done) => {
                for step in &done.steps {
                    watched.reverted += 1;
                    match &step.result {
                        Ok(_) => log_line(&format!("done {} ({})", step.record, step.fault)),
                        Err(err) => {
                            watched.failed += 1;
                            log_line(&format!("failed {} ({}): {err}", step.record, step.fault));
                        }
                    }
                }
                if !done.removed {
                    log_line(&format!(
                        "{} stays: run `faultline cleanup` once what failed can be undone",
                        path.display()
                    ));
                }
            }
            Err(err) => log_line(&format!("{err}")),
        }
    }
    watched
}
