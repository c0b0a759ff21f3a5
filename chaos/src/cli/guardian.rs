//! `faultline guardian` (hidden): started by `faultline run`, never by hand.

use std::path::PathBuf;

/// Arguments of `faultline guardian`.
#[derive(Debug, clap::Args)]
pub struct GuardianArgs {
    /// The pid of the run it guards.
    #[arg(long)]
    pub parent: u32,
    /// The run's ledger directory.
    #[arg(long)]
    pub ledger_dir: PathBuf,
}

impl GuardianArgs {
    /// Exits 0 when it left nothing behind, 2 when an undo failed.
    pub async fn run(&self) -> anyhow::Result<u8> {
        let watched =
            faultline_chaos::guardian::watch(self.parent, &self.ledger_dir, tokio::io::stdin())
                .await;
        Ok(if watched.failed == 0 { 0 } else { 2 })
    }
}
