//! The run's clock and the recorder that turns evaluations into journal
//! activities and progress events.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use serde_json::Value;
use tokio::sync::mpsc::UnboundedSender;
use tokio::time::Instant;

use super::RunEvent;
use crate::journal::{Activity, ActivityInfo, ActivityStatus, ActivityType, Interval};

/// Time since the start of the run.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    start: Instant,
    start_system: SystemTime,
}

impl Clock {
    pub fn start() -> Self {
        Self {
            start: Instant::now(),
            start_system: SystemTime::now(),
        }
    }

    /// Seconds since the start, to the microsecond.
    pub fn now_s(&self) -> f64 {
        round_us(self.start.elapsed().as_secs_f64())
    }

    /// The instant `offset_s` seconds after the start.
    pub fn instant(&self, offset_s: f64) -> Instant {
        self.start + Duration::from_secs_f64(offset_s.max(0.0))
    }

    pub fn start_unix_ms(&self) -> u64 {
        unix_ms(self.start_system)
    }

    /// Wall-clock time in ms since the epoch, `offset_s` after the start.
    pub fn unix_ms_at(&self, offset_s: f64) -> u64 {
        self.start_unix_ms() + (offset_s.max(0.0) * 1000.0) as u64
    }

    /// RFC 3339 of `offset_s` seconds after the start.
    pub fn rfc3339(&self, offset_s: f64) -> String {
        let at = self.start_system + Duration::from_secs_f64(offset_s.max(0.0));
        humantime::format_rfc3339_millis(at).to_string()
    }
}

/// `seconds` rounded to the microsecond, which keeps journals readable.
pub fn round_us(seconds: f64) -> f64 {
    (seconds * 1e6).round() / 1e6
}

pub use crate::journal::unix_ms;

/// What an evaluated activity produced.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub ok: bool,
    pub output: Value,
    pub detail: String,
    pub exception: Option<String>,
    pub tolerance_met: Option<bool>,
}

/// Builds activities and sends progress events.
#[derive(Debug, Clone)]
pub struct Recorder {
    pub clock: Clock,
    events: Option<UnboundedSender<RunEvent>>,
    phases: Arc<Mutex<Vec<Interval>>>,
    notes: Arc<Mutex<Vec<String>>>,
}

impl Recorder {
    pub fn new(clock: Clock, events: Option<UnboundedSender<RunEvent>>) -> Self {
        Self {
            clock,
            events,
            phases: Arc::default(),
            notes: Arc::default(),
        }
    }

    /// A note for the journal (`notes`), sent as a [`RunEvent::Note`] too;
    /// prefixed with the time since the start.
    pub fn note(&self, text: &str) {
        let line = format!("{:.1}s: {text}", self.clock.now_s());
        self.notes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(line);
        self.emit(RunEvent::Note(text.to_owned()));
    }

    /// Every note so far.
    pub fn notes(&self) -> Vec<String> {
        self.notes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub fn emit(&self, event: RunEvent) {
        if let Some(events) = &self.events {
            let _ = events.send(event);
        }
    }

    /// Starts a phase (and ends the previous one).
    pub fn phase(&self, name: &str) {
        let now = self.clock.now_s();
        let mut phases = self.phases.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(last) = phases.last_mut()
            && last.end_s < last.start_s
        {
            last.end_s = now;
        }
        phases.push(Interval {
            name: name.to_owned(),
            start_s: now,
            end_s: -1.0,
        });
        drop(phases);
        self.emit(RunEvent::Phase {
            name: name.to_owned(),
            at_s: now,
        });
    }

    /// Every phase, the last one ended now.
    pub fn phases(&self) -> Vec<Interval> {
        let now = self.clock.now_s();
        let mut phases = self
            .phases
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        for phase in &mut phases {
            if phase.end_s < phase.start_s {
                phase.end_s = now;
            }
        }
        phases
    }

    /// Records an activity that ran from `start_s` until now.
    pub fn activity(
        &self,
        activity_type: ActivityType,
        name: &str,
        kind: &str,
        step: &str,
        start_s: f64,
        outcome: Outcome,
    ) -> Activity {
        self.record(activity_type, name, kind, step, start_s, outcome, None)
    }

    /// Records an evaluation of a `must = "eventually"` during-probe, which
    /// must pass by `deadline_s`: a failure before then is waiting.
    pub fn eventually(
        &self,
        name: &str,
        kind: &str,
        start_s: f64,
        outcome: Outcome,
        deadline_s: f64,
    ) -> Activity {
        self.record(
            ActivityType::Probe,
            name,
            kind,
            "during",
            start_s,
            outcome,
            Some(deadline_s),
        )
    }

    #[expect(clippy::too_many_arguments, reason = "the parts of one activity")]
    fn record(
        &self,
        activity_type: ActivityType,
        name: &str,
        kind: &str,
        step: &str,
        start_s: f64,
        outcome: Outcome,
        deadline_s: Option<f64>,
    ) -> Activity {
        let end_s = self.clock.now_s();
        let activity = Activity {
            activity: ActivityInfo {
                activity_type,
                name: name.to_owned(),
                kind: kind.to_owned(),
                step: step.to_owned(),
            },
            status: if outcome.ok {
                ActivityStatus::Succeeded
            } else {
                ActivityStatus::Failed
            },
            start: self.clock.rfc3339(start_s),
            end: self.clock.rfc3339(end_s),
            start_s,
            end_s,
            duration: round_us(end_s - start_s),
            output: outcome.output,
            tolerance_met: outcome.tolerance_met,
            detail: outcome.detail,
            exception: outcome.exception,
            deadline_s,
        };
        self.emit(RunEvent::Activity(Box::new(activity.clone())));
        activity
    }
}
