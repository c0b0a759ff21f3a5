//! The faults that are active now, and the guard that reverts them when the
//! run is dropped mid-flight (the caller gave up on the future, or a panic
//! unwound through it).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use super::{PlannedAction, invoke};
use crate::actions::{Fault, Prepared};
use crate::ledger::Ledger;

/// A fault that was (or was being) injected.
#[derive(Debug, Clone)]
pub struct ActiveFault {
    pub name: String,
    pub fault: Arc<dyn Fault>,
    pub prepared: Prepared,
}

/// The faults to revert, in injection order.
#[derive(Debug, Clone, Default)]
pub struct ActiveSet(Arc<Mutex<Vec<ActiveFault>>>);

impl ActiveSet {
    pub fn push(&self, fault: ActiveFault) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(fault);
    }

    /// Removes and returns the fault named `name`.
    pub fn take(&self, name: &str) -> Option<ActiveFault> {
        let mut active = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let index = active.iter().position(|f| f.name == name)?;
        Some(active.remove(index))
    }

    /// Removes every fault, the last injected first.
    pub fn drain_reversed(&self) -> Vec<ActiveFault> {
        let mut active = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let mut all: Vec<ActiveFault> = active.drain(..).collect();
        all.reverse();
        all
    }

    /// A copy of every active fault, in injection order.
    pub fn snapshot(&self) -> Vec<ActiveFault> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// A copy of the fault named `name`, if active.
    pub fn get(&self, name: &str) -> Option<ActiveFault> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .find(|f| f.name == name)
            .cloned()
    }

    pub fn is_active(&self, name: &str) -> bool {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .any(|f| f.name == name)
    }
}

/// Reverts the active faults and runs the rollbacks when dropped while armed.
///
/// The run loop disarms it once its own rollback phase has run. If the run's
/// future is dropped before that, `Drop` does the work synchronously: on the
/// current runtime through `block_in_place` when it is multi-threaded, else
/// on a fresh thread with its own runtime (a runtime cannot be entered from
/// inside another), and waits for it.
#[derive(Debug)]
pub struct RollbackGuard {
    active: ActiveSet,
    rollbacks: Vec<PlannedAction>,
    ledger: Arc<Ledger>,
    timeout: Duration,
    armed: bool,
}

impl RollbackGuard {
    pub fn new(
        active: ActiveSet,
        rollbacks: Vec<PlannedAction>,
        ledger: Arc<Ledger>,
        timeout: Duration,
    ) -> Self {
        Self {
            active,
            rollbacks,
            ledger,
            timeout,
            armed: true,
        }
    }

    pub fn disarm(&mut self) {
        self.armed = false;
    }
}

impl Drop for RollbackGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let faults = self.active.drain_reversed();
        let rollbacks = std::mem::take(&mut self.rollbacks);
        let ledger = self.ledger.clone();
        let timeout = self.timeout;
        tracing::warn!(
            faults = faults.len(),
            rollbacks = rollbacks.len(),
            "run dropped before its rollback: rolling back now"
        );
        let work = async move {
            for active in faults {
                let fault = active.fault.clone();
                let prepared = active.prepared.clone();
                match invoke(timeout, async move { fault.revert(&prepared).await }).await {
                    Ok(_) => {
                        let _ = ledger.clear(&active.name);
                    }
                    Err(err) => {
                        tracing::error!(fault = %active.name, error = %err, "revert failed; run `faultline cleanup`");
                    }
                }
            }
            for rollback in rollbacks {
                let action = rollback.action.clone();
                if let Err(err) = invoke(timeout, async move { action.run().await }).await {
                    tracing::error!(rollback = %rollback.name, error = %err, "rollback failed");
                }
            }
        };
        // On a multi-threaded runtime, finish on it: the clients' pooled
        // connections live there. Otherwise use a fresh runtime on a thread.
        if let Ok(handle) = tokio::runtime::Handle::try_current()
            && handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread
        {
            tokio::task::block_in_place(|| handle.block_on(work));
            return;
        }
        let thread = move || match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime.block_on(work),
            Err(err) => {
                tracing::error!(error = %err, "cannot start a runtime to roll back; run `faultline cleanup`");
            }
        };
        match std::thread::Builder::new()
            .name("faultline-rollback".into())
            .spawn(thread)
        {
            Ok(handle) => {
                let _ = handle.join();
            }
            Err(err) => {
                tracing::error!(error = %err, "cannot start the rollback thread; run `faultline cleanup`");
            }
        }
    }
}
