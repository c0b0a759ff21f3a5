//! The record of faults that are active now, so that `faultline cleanup` can
//! undo whatever a killed run left behind.
//!
//! Each run keeps one file, `<dir>/<run id>.json`, listing its injected faults
//! with the [`UndoRecord`]s that revert them. An entry is written *before* a
//! fault is injected and removed once it is reverted; the file goes when the
//! run ends. The directory is `$XDG_RUNTIME_DIR/faultline`, or
//! `/tmp/faultline-<user>` without it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use serde::{Deserialize, Serialize};

use crate::undo::UndoRecord;

/// One run's active faults, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActiveFaults {
    pub run_id: String,
    /// The process that ran it (cleanup leaves live runs alone).
    pub pid: u32,
    pub experiment: String,
    /// By fault name.
    pub faults: BTreeMap<String, Vec<UndoRecord>>,
}

/// Why the ledger could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("cannot write {}: {error}", path.display())]
    Write {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("cannot read {}: {error}", path.display())]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{} is not a faultline ledger: {error}", path.display())]
    Parse {
        path: PathBuf,
        error: serde_json::Error,
    },
}

/// The default ledger directory.
pub fn default_dir() -> PathBuf {
    if let Some(runtime) = std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(runtime).join("faultline");
    }
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "user".to_owned());
    std::env::temp_dir().join(format!("faultline-{user}"))
}

/// One run's ledger file (or none, when disabled).
#[derive(Debug)]
pub struct Ledger {
    path: Option<PathBuf>,
    state: Mutex<ActiveFaults>,
}

impl Ledger {
    /// A ledger for `run_id` in `dir`; `None` keeps nothing on disk.
    pub fn new(dir: Option<&Path>, run_id: &str, experiment: &str) -> Self {
        Self {
            path: dir.map(|dir| dir.join(format!("{run_id}.json"))),
            state: Mutex::new(ActiveFaults {
                run_id: run_id.to_owned(),
                pid: std::process::id(),
                experiment: experiment.to_owned(),
                faults: BTreeMap::new(),
            }),
        }
    }

    /// The file, when kept on disk.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Records (or replaces) the undo records of `fault`.
    pub fn record(&self, fault: &str, undo: &[UndoRecord]) -> Result<(), LedgerError> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if undo.is_empty() {
            state.faults.remove(fault);
        } else {
            state.faults.insert(fault.to_owned(), undo.to_vec());
        }
        self.save(&state)
    }

    /// Forgets `fault` (it was reverted).
    pub fn clear(&self, fault: &str) -> Result<(), LedgerError> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.faults.remove(fault).is_none() {
            return Ok(());
        }
        self.save(&state)
    }

    fn save(&self, state: &ActiveFaults) -> Result<(), LedgerError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let write = |error| LedgerError::Write {
            path: path.clone(),
            error,
        };
        if state.faults.is_empty() {
            return match std::fs::remove_file(path) {
                Err(err) if err.kind() != std::io::ErrorKind::NotFound => Err(write(err)),
                _ => Ok(()),
            };
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(write)?;
        }
        let json = serde_json::to_vec_pretty(state).map_err(|err| write(err.into()))?;
        let tmp = path.with_extension("json.tmp");
        write_private(&tmp, &json).map_err(write)?;
        std::fs::rename(&tmp, path).map_err(write)
    }
}

/// Writes `bytes` to `path`, readable and writable by its owner only: an
/// undo record may hold a database URL with its password, or a bearer token
/// (the proxy API's, a fault admin API's).
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    // A file left by an older version keeps its mode through `open`.
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    file.write_all(bytes)
}

/// Every ledger file in `dir`, with its path; the first that cannot be read
/// is the error.
pub fn read_all(dir: &Path) -> Result<Vec<(PathBuf, ActiveFaults)>, LedgerError> {
    read_each(dir)?
        .into_iter()
        .map(|(path, faults)| faults.map(|faults| (path, faults)))
        .collect()
}

/// One ledger file, read or not.
pub type LedgerFile = (PathBuf, Result<ActiveFaults, LedgerError>);

/// Every ledger file in `dir`, each read on its own: one that cannot be
/// read does not hide the others. `Err` when the directory cannot be listed.
pub fn read_each(dir: &Path) -> Result<Vec<LedgerFile>, LedgerError> {
    let read = |error| LedgerError::Read {
        path: dir.to_owned(),
        error,
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(read(err)),
    };
    let mut all = Vec::new();
    for entry in entries {
        let path = entry.map_err(read)?.path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let faults = std::fs::read(&path)
            .map_err(|error| LedgerError::Read {
                path: path.clone(),
                error,
            })
            .and_then(|text| {
                serde_json::from_slice(&text).map_err(|error| LedgerError::Parse {
                    path: path.clone(),
                    error,
                })
            });
        all.push((path, faults));
    }
    all.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(all)
}

/// Whether process `pid` is alive (Linux: `/proc/<pid>` exists and is not a
/// zombie).
pub fn process_alive(pid: u32) -> bool {
    if pid == std::process::id() {
        return true;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name, which is in parentheses.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next())
            .is_none_or(|state| !matches!(state, 'Z' | 'X')),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_clear_and_remove_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::new(Some(dir.path()), "run-1", "exp");
        let undo = UndoRecord::EnableProxy {
            api: "http://127.0.0.1:8474".into(),
            proxy: "payments".into(),
            token: None,
        };
        ledger.record("down", std::slice::from_ref(&undo)).unwrap();
        let mode = {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::metadata(ledger.path().unwrap())
                .unwrap()
                .permissions()
                .mode()
        };
        assert_eq!(mode & 0o777, 0o600, "the owner's only: {mode:o}");
        let all = read_all(dir.path()).unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].1.faults["down"], vec![undo]);
        ledger.clear("down").unwrap();
        assert!(read_all(dir.path()).unwrap().is_empty());
        assert!(read_all(&dir.path().join("missing")).unwrap().is_empty());
    }

    #[test]
    fn liveness_of_processes() {
        assert!(process_alive(std::process::id()));
        assert!(process_alive(1));
        assert!(!process_alive(u32::MAX));
    }
}
