//! `faultline run`: run an experiment with live progress and a verdict.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use std::time::Duration;

use anyhow::Context;
use faultline_chaos::environment::Environment;
use faultline_chaos::experiment::Experiment;
use faultline_chaos::guardian::Guardian;
use faultline_chaos::journal::Verdict;
use faultline_chaos::runner::{Bindings, LedgerDir, compile, run_plan};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::style::{Paint, paint};

/// How long a finished run waits for its guardian to see that it ended.
pub const GUARDIAN_EXIT_WAIT: Duration = Duration::from_secs(5);

/// Arguments of `faultline run`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  faultline run chaos/experiments/kill-replica.toml
  faultline run chaos/experiments/payments-latency.toml --report reports/
  faultline run payments-latency.toml --var prometheus=http://127.0.0.1:9091 \\
      --var fault_admin.orders=http://127.0.0.1:9100 --journal out/run.json
  faultline run kill-replica.toml --var-file envs/staging.toml --dry-run
  FAULTLINE_TARGET_GATEWAY=http://127.0.0.1:18080 faultline run kill-replica.toml --json

A var file is shaped like an experiment's [target] table:
  gateway = \"http://staging:8080\"
  proxy_api = \"http://staging:8474\"
  fault_admin = { orders = \"http://staging:9100\" }
  docker = { project = \"shop-staging\" }
  vars = { rate = \"20\" }

Target settings come from the experiment's [target], then FAULTLINE_TARGET_*
variables (FAULTLINE_TARGET_FAULT_ADMIN__ORDERS for fault_admin.orders), then
the --var-file files in order, then --var (alias --set).

Tokens: keys (FAULTLINE_TARGET_KEYS, --var keys=DIR) is a key directory
(faultline-shop keys init); its current key signs the bearer tokens of the
load's customers and of http probes' and actions' `bearer`. An experiment
that sends tokens is refused without it.

Credentials: fault_admin_token (FAULTLINE_TARGET_FAULT_ADMIN_TOKEN) is sent as
Authorization: Bearer with every request to a fault_admin.* URL (the services'
FAULTLINE_FAULT_ADMIN_TOKEN; the compose demo's is demo-fault-admin-token), and
proxy_api_token (FAULTLINE_TARGET_PROXY_API_TOKEN) with every call to the
proxy's API (its --api-token; a plain Toxiproxy needs none). Prefer the
variables to --var, which other users of the host see; the journal, the dry
run and errors show them as ***. The ledger keeps them, for cleanup. --dry-run prints the
resolved settings, the containers each selector resolves to (when Docker
answers), every fault, probe, limit and expected alert, and exits 0 without
injecting anything or starting the load. Ctrl-C or SIGTERM stops the run and rolls back; a third Ctrl-C leaves
at once. A guardian process (its pid and log on the first line) reverts
whatever the run leaves when it dies without rolling back, SIGKILL included;
--no-guardian runs without one (then `faultline cleanup` undoes a killed run).

Exit code: 0 passed, 1 the hypothesis failed, 2 error or interrupted,
3 aborted by an [[abort_when]] limit (its faults rolled back early).")]
pub struct RunArgs {
    /// The experiment file.
    pub experiment: PathBuf,
    /// Override a [target] setting (repeatable; `--set` is an alias): gateway,
    /// prometheus, proxy_api, proxy_api_token, database, keys, fault_admin.<service>,
    /// fault_admin_token, docker.project, docker.labels.<label>,
    /// docker.service_label, docker.replica_label, vars.<name>.
    #[arg(long = "var", visible_alias = "set", value_name = "KEY=VALUE")]
    pub vars: Vec<String>,
    /// A TOML file shaped like [target] (repeatable), applied after
    /// FAULTLINE_TARGET_* and before --var: one experiment, any environment.
    #[arg(long = "var-file", value_name = "PATH")]
    pub var_files: Vec<PathBuf>,
    /// Print the plan (settings, containers, faults, probes, limits, alerts)
    /// and exit 0 without injecting anything or starting the load.
    #[arg(long)]
    pub dry_run: bool,
    /// Where to write the journal (default: faultline-journals/<experiment>-<run id>.json).
    #[arg(long)]
    pub journal: Option<PathBuf>,
    /// Also write the report (Markdown, SVG, PNG) into this directory.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Print the journal as JSON on stdout (progress stays on stderr).
    #[arg(long)]
    pub json: bool,
    /// No progress on stderr.
    #[arg(long, short)]
    pub quiet: bool,
    /// Where to record active faults for `faultline cleanup` (and for the
    /// guardian): default $XDG_RUNTIME_DIR/faultline or /tmp/faultline-$USER.
    #[arg(long, env = "FAULTLINE_LEDGER_DIR")]
    pub ledger_dir: Option<PathBuf>,
    /// Run without a guardian process: if this process is killed outright,
    /// its faults stay until `faultline cleanup`.
    #[arg(long)]
    pub no_guardian: bool,
}

/// The overrides of an experiment's [target]: FAULTLINE_TARGET_*, then the
/// var files in order, then `--var` assignments.
pub fn environment_overrides(
    var_files: &[PathBuf],
    vars: &[String],
) -> anyhow::Result<Environment> {
    let mut environment = Environment::from_env_vars(std::env::vars())?;
    for file in var_files {
        let from_file = Experiment::load_target_file(file)
            .with_context(|| format!("invalid var file {}", file.display()))?;
        environment = environment.overlay(&from_file);
    }
    for assignment in vars {
        environment.set_assignment(assignment)?;
    }
    Ok(environment)
}

/// The guardian that reverts what a killed run (or game day) left, unless
/// `--no-guardian`; failing to start it is an error, never a silent
/// unguarded run.
pub async fn start_guardian(
    no_guardian: bool,
    ledger_dir: &Path,
) -> anyhow::Result<Option<Guardian>> {
    if no_guardian {
        return Ok(None);
    }
    let exe = std::env::current_exe()
        .context("cannot find this executable to start the guardian (or use --no-guardian)")?;
    let guardian = Guardian::spawn(&exe, ledger_dir).await.context(
        "the guardian that reverts the faults if this run is killed did not start \
         (--no-guardian runs without one)",
    )?;
    Ok(Some(guardian))
}

/// Cancels on the first signal; says so on the second; exits on the third.
pub fn watch_signals(cancel: CancellationToken, colour: bool, guarded: bool) {
    tokio::spawn(async move {
        let mut count = 0;
        loop {
            faultline_signal::shutdown().await;
            count += 1;
            match count {
                1 => {
                    eprintln!(
                        "{}",
                        paint(colour, Paint::Warn, "interrupted: rolling back...")
                    );
                    cancel.cancel();
                }
                2 => eprintln!(
                    "{}",
                    paint(
                        colour,
                        Paint::Warn,
                        "still rolling back; interrupt again to leave now (then run `faultline cleanup`)"
                    )
                ),
                _ => {
                    if guarded {
                        eprintln!(
                            "leaving without finishing the rollback; the guardian reverts what is left"
                        );
                    } else {
                        eprintln!(
                            "leaving without finishing the rollback; run `faultline cleanup`"
                        );
                    }
                    std::process::exit(2);
                }
            }
        }
    });
}

fn default_journal_path(experiment: &Path, run_id: &str) -> PathBuf {
    let stem = experiment
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("experiment");
    PathBuf::from("faultline-journals").join(format!("{stem}-{run_id}.json"))
}

impl RunArgs {
    pub async fn run(&self) -> anyhow::Result<u8> {
        let colour_err = super::style::enabled(true);
        let colour_out = super::style::enabled(false);
        let environment = environment_overrides(&self.var_files, &self.vars)?;
        let experiment = Experiment::load_with(&self.experiment, &environment)?;
        if self.dry_run {
            let bindings = Bindings {
                environment,
                ledger: LedgerDir::Disabled,
                ..Bindings::default()
            };
            let plan = compile(&experiment, Some(&self.experiment), &bindings)?;
            print!("{}", super::dry_run::render_plan(&experiment, &plan).await);
            return Ok(0);
        }
        let ledger_dir = self
            .ledger_dir
            .clone()
            .unwrap_or_else(faultline_chaos::ledger::default_dir);
        let guardian = start_guardian(self.no_guardian, &ledger_dir).await?;
        let cancel = CancellationToken::new();
        watch_signals(cancel.clone(), colour_err, guardian.is_some());
        let (events, mut receiver) = mpsc::unbounded_channel();
        let quiet = self.quiet;
        let printer = tokio::spawn(async move {
            while let Some(event) = receiver.recv().await {
                if !quiet && let Some(line) = super::progress::line(&event, colour_err) {
                    eprintln!("{line}");
                }
            }
        });
        let bindings = Bindings {
            environment,
            cancel,
            ledger: LedgerDir::At(ledger_dir),
            events: Some(events),
            platform: None,
            alerts: None,
            guardian: guardian.as_ref().map(Guardian::record),
        };
        let plan = compile(&experiment, Some(&self.experiment), &bindings)?;
        if !quiet {
            match &guardian {
                Some(guardian) => eprintln!(
                    "faultline: running {} (guardian pid {}, log {})",
                    self.experiment.display(),
                    guardian.pid(),
                    guardian.log().display()
                ),
                None => eprintln!(
                    "faultline: running {} (no guardian)",
                    self.experiment.display()
                ),
            }
        }
        let journal = run_plan(plan, bindings).await;
        let _ = printer.await;
        if let Some(guardian) = guardian {
            guardian.release(GUARDIAN_EXIT_WAIT).await;
        }

        let journal_path = self
            .journal
            .clone()
            .unwrap_or_else(|| default_journal_path(&self.experiment, &journal.run_id));
        journal.save(&journal_path)?;
        let report = match &self.report {
            Some(dir) => {
                let stem = journal_path
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .unwrap_or("journal")
                    .to_owned();
                Some(
                    faultline_chaos::report::write(&journal, dir, &stem)
                        .context("cannot write the report")?,
                )
            }
            None => None,
        };

        if self.json {
            let mut stdout = std::io::stdout().lock();
            serde_json::to_writer_pretty(&mut stdout, &journal)?;
            writeln!(stdout)?;
        } else {
            let (style, word) = match journal.verdict {
                Verdict::Passed => (Paint::Good, "PASSED"),
                Verdict::Failed => (Paint::Bad, "FAILED"),
                Verdict::Error => (Paint::Bad, "ERROR"),
                Verdict::Interrupted => (Paint::Warn, "INTERRUPTED"),
                Verdict::Aborted => (Paint::Bad, "ABORTED"),
            };
            println!(
                "{} {} ({:.1} s)",
                paint(colour_out, style, word),
                journal.experiment.title,
                journal.duration
            );
            for reason in &journal.reasons {
                println!("  - {reason}");
            }
            for alert in &journal.expected_alerts {
                println!(
                    "  alert {} {}: {}",
                    alert.alert,
                    alert.state,
                    match alert.detection_time_s {
                        Some(t) if alert.met => format!("after {t:.1} s"),
                        _ => "not seen in time".to_owned(),
                    }
                );
            }
            if let Some(recovery) = &journal.recovery
                && let Some(t) = recovery.recovery_time_s
            {
                println!("  recovered in {t:.1} s");
            }
            println!("  journal: {}", journal_path.display());
            if let Some(files) = report {
                println!(
                    "  report: {} ({}, {})",
                    files.markdown.display(),
                    files.svg.display(),
                    files.png.display()
                );
            }
        }
        Ok(journal.verdict.exit_code())
    }
}
