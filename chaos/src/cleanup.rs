//! Reverting what ledger files list: what `faultline cleanup` does for runs
//! that were killed, and what the guardian does for its run once the run's
//! process is gone.
//!
//! It sits above both [`crate::ledger`] (which stores undo records without
//! knowing how to carry them out) and [`crate::actions`] (which carries them
//! out), so neither depends on the other for it.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::actions::{ActionError, Services};
use crate::ledger::{ActiveFaults, LedgerError};
use crate::undo::UndoRecord;

/// One undo record carried out.
#[derive(Debug)]
pub struct RevertStep {
    /// The fault it belongs to.
    pub fault: String,
    pub record: UndoRecord,
    pub result: Result<Value, ActionError>,
}

/// What reverting one ledger file did.
#[derive(Debug)]
pub struct RunCleanup {
    pub path: PathBuf,
    pub run: ActiveFaults,
    /// Every record, in the order carried out (each fault's last first).
    pub steps: Vec<RevertStep>,
    /// Whether the ledger file was removed (every step succeeded).
    pub removed: bool,
}

impl RunCleanup {
    /// How many steps failed.
    pub fn failures(&self) -> usize {
        self.steps.iter().filter(|s| s.result.is_err()).count()
    }
}

/// Every undo record of `run` in the order [`revert_run`] carries them out:
/// fault by fault, each fault's records last first.
pub fn planned_steps(run: &ActiveFaults) -> impl Iterator<Item = (&String, &UndoRecord)> {
    run.faults
        .iter()
        .flat_map(|(fault, undo)| undo.iter().rev().map(move |record| (fault, record)))
}

/// Carries out every undo record of the ledger file at `path` (whose
/// content is `run`), all of them even when one fails, and removes the file
/// when all succeeded. Undoing twice is harmless, so a file that another
/// process is cleaning up too comes to no harm.
pub async fn revert_run(
    path: &Path,
    run: ActiveFaults,
    services: &Services,
) -> Result<RunCleanup, LedgerError> {
    let mut steps = Vec::new();
    for (fault, record) in planned_steps(&run) {
        let result = record.execute(services).await;
        steps.push(RevertStep {
            fault: fault.clone(),
            record: record.clone(),
            result,
        });
    }
    let removed = steps.iter().all(|s| s.result.is_ok());
    if removed {
        match std::fs::remove_file(path) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                return Err(LedgerError::Write {
                    path: path.to_owned(),
                    error,
                });
            }
            _ => {}
        }
    }
    Ok(RunCleanup {
        path: path.to_owned(),
        run,
        steps,
        removed,
    })
}
