//! `faultline cleanup`: undo what killed runs left behind.

use std::path::PathBuf;

use faultline_chaos::actions::Services;
use faultline_chaos::environment::DockerTarget;
use faultline_chaos::{cleanup, ledger};

use super::style::{Paint, paint};

/// Arguments of `faultline cleanup`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Every run records the faults it injects (toxics, proxies taken down, paused,
killed or disconnected containers, fault admin calls) in a ledger file before
injecting them, and removes them once reverted. A run killed outright (kill -9,
a crash) leaves its file behind; this command reverts what it lists: removes
toxics, enables proxies, starts or unpauses containers, reconnects networks,
and sends the recorded undo requests. The file keeps the credentials the run
used (the proxy API's and fault admin's tokens), so cleanup sends them too;
it is readable by its owner only.

Examples:
  faultline cleanup
  faultline cleanup --dry-run
  faultline cleanup --ledger-dir /tmp/faultline-ci --force")]
pub struct CleanupArgs {
    /// Where run ledgers are kept (default: $XDG_RUNTIME_DIR/faultline or /tmp/faultline-$USER).
    #[arg(long, env = "FAULTLINE_LEDGER_DIR")]
    pub ledger_dir: Option<PathBuf>,
    /// Also clean up after runs whose process is still alive.
    #[arg(long)]
    pub force: bool,
    /// Only show what would be undone.
    #[arg(long)]
    pub dry_run: bool,
}

impl CleanupArgs {
    pub async fn run(&self) -> anyhow::Result<u8> {
        let colour = super::style::enabled(false);
        let dir = self.ledger_dir.clone().unwrap_or_else(ledger::default_dir);
        let runs = ledger::read_all(&dir)?;
        if runs.is_empty() {
            println!("nothing to clean up in {}", dir.display());
            return Ok(0);
        }
        let services = Services::new(DockerTarget::default())?;
        let mut failures = 0;
        for (path, run) in runs {
            if !self.force && ledger::process_alive(run.pid) {
                println!(
                    "{} run {} ({}) is still running as pid {}; use --force to clean it up anyway",
                    paint(colour, Paint::Warn, "skip"),
                    run.run_id,
                    run.experiment,
                    run.pid
                );
                continue;
            }
            println!("run {} — {}", run.run_id, run.experiment);
            if self.dry_run {
                for (fault, record) in cleanup::planned_steps(&run) {
                    println!("  would {record} ({fault})");
                }
                continue;
            }
            let done = cleanup::revert_run(&path, run, &services).await?;
            failures += done.failures();
            for step in &done.steps {
                let (record, fault) = (&step.record, &step.fault);
                match &step.result {
                    Ok(_) => println!(
                        "  {} {record} ({fault})",
                        paint(colour, Paint::Good, "done")
                    ),
                    Err(err) => println!(
                        "  {} {record} ({fault}): {err}",
                        paint(colour, Paint::Bad, "failed")
                    ),
                }
            }
        }
        Ok(if failures == 0 { 0 } else { 2 })
    }
}
