//! Fakes for the run loop's traits, for tests (here and in the integration
//! test crate) and demos: a fault that records what happens to it, scripted
//! probes, an alert source and a load source driven by the caller.
//!
//! They never touch a network or a container.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use faultline_loadgen::{Report, RouteSummary, Window};
use serde_json::{Value, json};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::actions::load::{LoadSource, WindowSink};
use crate::actions::{Action, ActionError, Fault, Prepared, UndoRecord};
use crate::probes::prometheus::{ActiveAlert, AlertSource};
use crate::probes::{Observation, Probe, ProbeContext, ProbeError};

/// Panics with `message`: the fakes do so on purpose, to prove that the run
/// loop survives a panicking action or probe and still rolls back.
#[expect(clippy::panic, reason = "a fake that panics on purpose")]
fn deliberate_panic(message: String) -> ! {
    std::panic::panic_any(message)
}

/// A shared, ordered log of what the fakes did: `"inject db"`, `"revert db"`...
#[derive(Debug, Clone, Default)]
pub struct CallLog(Arc<Mutex<Vec<String>>>);

impl CallLog {
    pub fn push(&self, entry: impl Into<String>) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(entry.into());
    }

    pub fn entries(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// How many entries equal `entry`.
    pub fn count(&self, entry: &str) -> usize {
        self.entries().iter().filter(|e| *e == entry).count()
    }
}

/// How a fake call behaves.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Behaviour {
    #[default]
    Succeed,
    Fail,
    Panic,
}

/// A fault that logs `inject <name>`, `ramp <name> <step>`,
/// `renew <name>` and `revert <name>`, and can fail or panic on injection.
#[derive(Debug)]
pub struct FakeFault {
    pub name: String,
    pub log: CallLog,
    pub inject: Behaviour,
    pub revert: Behaviour,
    pub ramp_every: Option<(Duration, usize)>,
    /// Undo records to hand to the ledger.
    pub undo: Vec<UndoRecord>,
    /// Notified once injected.
    pub injected: Arc<Notify>,
    /// Its lease, if it has one (then the run renews it).
    pub lease: Option<Duration>,
    pub renew: Behaviour,
    /// How long its injection takes: a slow action, as a real one can be.
    pub inject_takes: Duration,
}

impl FakeFault {
    pub fn new(name: &str, log: &CallLog) -> Self {
        Self {
            name: name.to_owned(),
            log: log.clone(),
            inject: Behaviour::Succeed,
            revert: Behaviour::Succeed,
            ramp_every: None,
            undo: Vec::new(),
            injected: Arc::new(Notify::new()),
            lease: None,
            renew: Behaviour::Succeed,
            inject_takes: Duration::ZERO,
        }
    }
}

#[async_trait::async_trait]
impl Fault for FakeFault {
    fn kind(&self) -> &'static str {
        "fake"
    }

    async fn prepare(&self) -> Result<Prepared, ActionError> {
        Ok(Prepared {
            undo: self.undo.clone(),
            detail: json!({"fake": self.name}),
        })
    }

    async fn inject(&self, _prepared: &Prepared) -> Result<Value, ActionError> {
        self.log.push(format!("inject {}", self.name));
        if !self.inject_takes.is_zero() {
            tokio::time::sleep(self.inject_takes).await;
        }
        let result = match self.inject {
            Behaviour::Succeed => Ok(Value::from("injected")),
            Behaviour::Fail => Err(ActionError::Config(format!(
                "{} cannot be injected",
                self.name
            ))),
            Behaviour::Panic => deliberate_panic(format!("{} panicked while injecting", self.name)),
        };
        self.injected.notify_one();
        result
    }

    fn ramp_steps(&self) -> Vec<Duration> {
        match self.ramp_every {
            Some((every, steps)) => (1..=steps)
                .map(|k| every * u32::try_from(k).unwrap_or(1))
                .collect(),
            None => Vec::new(),
        }
    }

    async fn ramp(&self, _prepared: &Prepared, step: usize) -> Result<Value, ActionError> {
        self.log.push(format!("ramp {} {step}", self.name));
        Ok(Value::from(step))
    }

    fn lease(&self) -> Option<Duration> {
        self.lease
    }

    async fn renew(&self, _prepared: &Prepared) -> Result<Value, ActionError> {
        self.log.push(format!("renew {}", self.name));
        match self.renew {
            Behaviour::Succeed => Ok(Value::from("renewed")),
            Behaviour::Fail => Err(ActionError::Config(format!(
                "{}'s lease cannot be renewed",
                self.name
            ))),
            Behaviour::Panic => deliberate_panic(format!("{} panicked while renewing", self.name)),
        }
    }

    async fn revert(&self, _prepared: &Prepared) -> Result<Value, ActionError> {
        self.log.push(format!("revert {}", self.name));
        match self.revert {
            Behaviour::Succeed => Ok(Value::from("reverted")),
            Behaviour::Fail => Err(ActionError::Config(format!(
                "{} cannot be reverted",
                self.name
            ))),
            Behaviour::Panic => deliberate_panic(format!("{} panicked while reverting", self.name)),
        }
    }
}

/// A rollback action that logs `rollback <name>`.
#[derive(Debug)]
pub struct FakeAction {
    pub name: String,
    pub log: CallLog,
}

#[async_trait::async_trait]
impl Action for FakeAction {
    fn kind(&self) -> &'static str {
        "fake"
    }

    async fn run(&self) -> Result<Value, ActionError> {
        self.log.push(format!("rollback {}", self.name));
        Ok(Value::Null)
    }
}

/// A probe whose answers the test switches at will.
#[derive(Debug, Clone)]
pub struct SwitchProbe {
    state: Arc<Mutex<Behaviour>>,
    /// Notified at every evaluation.
    pub evaluated: Arc<Notify>,
}

impl SwitchProbe {
    pub fn new(behaviour: Behaviour) -> Self {
        Self {
            state: Arc::new(Mutex::new(behaviour)),
            evaluated: Arc::new(Notify::new()),
        }
    }

    pub fn set(&self, behaviour: Behaviour) {
        *self.state.lock().unwrap_or_else(PoisonError::into_inner) = behaviour;
    }
}

#[async_trait::async_trait]
impl Probe for SwitchProbe {
    fn kind(&self) -> &'static str {
        "fake"
    }

    async fn check(&self, _cx: &ProbeContext) -> Result<Observation, ProbeError> {
        let behaviour = *self.state.lock().unwrap_or_else(PoisonError::into_inner);
        self.evaluated.notify_one();
        match behaviour {
            Behaviour::Succeed => Ok(Observation::new(true, Value::from(1), "fine")),
            Behaviour::Fail => Ok(Observation::new(false, Value::from(0), "not fine")),
            Behaviour::Panic => deliberate_panic("the probe panicked".to_owned()),
        }
    }
}

/// Alerts the test sets: `set(&[("A", "firing")])`. It counts how often the
/// runner asked, so a test can move its alerts on after the runner has seen
/// them ([`FakeAlerts::polled`]) instead of after a guessed delay.
#[derive(Debug, Clone)]
pub struct FakeAlerts {
    alerts: Arc<Mutex<Vec<ActiveAlert>>>,
    polls: Arc<tokio::sync::watch::Sender<u64>>,
}

impl Default for FakeAlerts {
    fn default() -> Self {
        Self {
            alerts: Arc::default(),
            polls: Arc::new(tokio::sync::watch::Sender::new(0)),
        }
    }
}

impl FakeAlerts {
    /// Waits until the runner has asked for the alerts `more` more times.
    pub async fn polled(&self, more: u64) {
        let mut polls = self.polls.subscribe();
        let target = *polls.borrow_and_update() + more;
        // The sender lives in `self`, so the channel cannot close while we wait.
        let _ = polls.wait_for(|n| *n >= target).await;
    }

    pub fn set(&self, alerts: &[(&str, &str)]) {
        *self.alerts.lock().unwrap_or_else(PoisonError::into_inner) = alerts
            .iter()
            .map(|(name, state)| ActiveAlert {
                name: (*name).to_owned(),
                state: (*state).to_owned(),
                labels: BTreeMap::from([("alertname".to_owned(), (*name).to_owned())]),
            })
            .collect();
    }
}

#[async_trait::async_trait]
impl AlertSource for FakeAlerts {
    async fn active_alerts(&self) -> Result<Vec<ActiveAlert>, ProbeError> {
        let alerts = self
            .alerts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        self.polls.send_modify(|n| *n += 1);
        Ok(alerts)
    }
}

/// A load source that emits one synthetic window every `window`, with the
/// latency and errors `shape(seconds since start)` gives, until cancelled.
#[derive(Clone)]
pub struct SyntheticLoad {
    pub window: Duration,
    pub requests_per_window: u64,
    /// `t` (s) → (p50 ms, p99 ms, error ratio).
    pub shape: Arc<dyn Fn(f64) -> (f64, f64, f64) + Send + Sync>,
}

impl std::fmt::Debug for SyntheticLoad {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyntheticLoad")
            .field("window", &self.window)
            .finish_non_exhaustive()
    }
}

fn summary(requests: u64, p50: f64, p99: f64, error_ratio: f64) -> RouteSummary {
    let errors = (requests as f64 * error_ratio).round() as u64;
    let mut summary = RouteSummary {
        count: requests,
        errors,
        error_ratio: if requests == 0 {
            0.0
        } else {
            errors as f64 / requests as f64
        },
        ..RouteSummary::default()
    };
    summary.classes.s2xx = requests - errors;
    summary.classes.s5xx = errors;
    summary.latency_ms.p50 = p50;
    summary.latency_ms.p95 = (p50 + p99) / 2.0;
    summary.latency_ms.p99 = p99;
    summary.latency_ms.max = p99 * 1.2;
    summary.latency_ms.mean = p50 * 1.1;
    summary
}

#[async_trait::async_trait]
impl LoadSource for SyntheticLoad {
    fn window(&self) -> Duration {
        self.window
    }

    async fn run(&self, cancel: CancellationToken, mut sink: WindowSink) -> Result<Report, String> {
        let start = SystemTime::now();
        let start_ms = crate::journal::unix_ms(start);
        let mut index = 0u64;
        let mut cumulative = 0;
        let mut cumulative_errors = 0;
        let mut interval = tokio::time::interval(self.window);
        interval.tick().await;
        loop {
            tokio::select! {
                () = cancel.cancelled() => break,
                _ = interval.tick() => {}
            }
            let start_offset_s = index as f64 * self.window.as_secs_f64();
            let end_offset_s = start_offset_s + self.window.as_secs_f64();
            let (p50, p99, error_ratio) = (self.shape)(end_offset_s);
            let totals = summary(self.requests_per_window, p50, p99, error_ratio);
            cumulative += totals.count;
            cumulative_errors += totals.errors;
            let mut routes = BTreeMap::new();
            routes.insert(faultline_loadgen::Route::CreateOrder, totals.clone());
            sink(&Window {
                index,
                start_unix_ms: start_ms + (start_offset_s * 1000.0) as u64,
                start_offset_s,
                end_offset_s,
                totals,
                routes,
                cumulative_requests: cumulative,
                cumulative_errors,
            });
            index += 1;
        }
        let report_json = json!({
            "schema": faultline_loadgen::REPORT_SCHEMA,
            "target": "http://synthetic/",
            "mode": {"kind": "closed"},
            "concurrency": 1, "seed": 0,
            "mix": {"list": 60, "product": 25, "checkout": 10, "order": 5},
            "timeout_ms": 2000,
            "started_at_unix_ms": start_ms,
            "elapsed_s": start.elapsed().map(|d| d.as_secs_f64()).unwrap_or(0.0),
            "stopped_by": "cancelled",
            "planned": cumulative, "achieved_rate": 0.0,
            "totals": summary(cumulative, 0.0, 0.0, 0.0),
            "routes": {},
            "checkouts": {"acknowledged": 0, "retried": 0, "idempotency_checks": 0,
                          "idempotency_violations": 0, "violations": []},
            "failed_requests_total": cumulative_errors,
            "failed_requests": [],
            "acknowledged_orders": [],
            "windows": [],
        });
        serde_json::from_value(report_json).map_err(|err| err.to_string())
    }
}
