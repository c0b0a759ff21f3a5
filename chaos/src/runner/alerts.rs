//! Watching Prometheus' alerts during a run: every state change of every
//! alert series, and whether the expected alerts reached their state in time.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::RunEvent;
use super::record::Recorder;
use crate::experiment::{AllowedAlert, ExpectedAlert, ExpectedState, WATCHDOG_ALERT};
use crate::journal::{AlertExpectationRecord, AlertSeen, AlertTransition, UnexpectedAlert};
use crate::probes::prometheus::{ActiveAlert, AlertSource, labels_match};

type SeriesKey = (String, BTreeMap<String, String>);

/// Every alert series seen, with its transitions.
#[derive(Debug, Clone, Default)]
pub struct AlertLog(Arc<Mutex<AlertLogInner>>);

#[derive(Debug, Default)]
struct AlertLogInner {
    series: BTreeMap<SeriesKey, Vec<AlertTransition>>,
    errors: u64,
    last_error: Option<String>,
}

fn current(transitions: &[AlertTransition]) -> &str {
    transitions.last().map_or("inactive", |t| t.state.as_str())
}

impl AlertLog {
    /// Records what Prometheus holds now; returns the transitions it saw.
    pub fn observe(&self, alerts: &[ActiveAlert], at_s: f64) -> Vec<(String, String)> {
        let mut inner = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let mut now: BTreeMap<SeriesKey, &str> = BTreeMap::new();
        for alert in alerts {
            let mut labels = alert.labels.clone();
            labels.remove("alertname");
            let key = (alert.name.clone(), labels);
            // A series both pending and firing cannot be; keep the stronger.
            let state = now.entry(key).or_insert("pending");
            if alert.state == "firing" {
                *state = "firing";
            }
        }
        let mut changes = Vec::new();
        for (key, state) in &now {
            let transitions = inner.series.entry(key.clone()).or_default();
            if current(transitions) != *state {
                transitions.push(AlertTransition {
                    state: (*state).to_owned(),
                    at_s,
                });
                changes.push((key.0.clone(), (*state).to_owned()));
            }
        }
        for (key, transitions) in inner.series.iter_mut() {
            if !now.contains_key(key) && current(transitions) != "inactive" {
                transitions.push(AlertTransition {
                    state: "inactive".to_owned(),
                    at_s,
                });
                changes.push((key.0.clone(), "inactive".to_owned()));
            }
        }
        changes
    }

    /// Reads the alerts once, right before the faults, so that an expected
    /// alert already active then is known to be; `Err` says why it could not.
    pub async fn read_before_faults(
        &self,
        source: &Arc<dyn AlertSource>,
        recorder: &Recorder,
        timeout: Duration,
    ) -> Result<(), String> {
        match tokio::time::timeout(timeout, source.active_alerts()).await {
            Ok(Ok(active)) => {
                self.observe(&active, recorder.clock.now_s());
                Ok(())
            }
            Ok(Err(err)) => Err(format!("cannot read the alerts before the faults: {err}")),
            Err(_) => Err(format!(
                "cannot read the alerts before the faults: no answer within {}",
                crate::experiment::duration::render(timeout)
            )),
        }
    }

    fn error(&self, message: String) {
        let mut inner = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        inner.errors += 1;
        inner.last_error = Some(message);
    }

    /// Every series seen.
    pub fn seen(&self) -> Vec<AlertSeen> {
        let inner = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        inner
            .series
            .iter()
            .map(|((alert, labels), transitions)| AlertSeen {
                alert: alert.clone(),
                labels: labels.clone(),
                transitions: transitions.clone(),
            })
            .collect()
    }

    /// The last error reading alerts, if any.
    pub fn last_error(&self) -> Option<String> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .last_error
            .clone()
    }
}

/// Polls `source` every `interval` until `stop` fires.
pub async fn watch(
    source: Arc<dyn AlertSource>,
    interval: Duration,
    log: AlertLog,
    recorder: Recorder,
    stop: CancellationToken,
) {
    loop {
        match source.active_alerts().await {
            Ok(alerts) => {
                let at_s = recorder.clock.now_s();
                for (alert, state) in log.observe(&alerts, at_s) {
                    recorder.emit(RunEvent::Alert { alert, state, at_s });
                }
            }
            Err(err) => log.error(err.to_string()),
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
    }
}

/// Whether an expected alert is met, failed, or not decided yet.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Met { at_s: f64, note: String },
    Failed(String),
    Undecided,
}

/// When each expectation's clock starts.
#[derive(Debug, Clone, Copy)]
pub struct Anchors {
    /// The first injection.
    pub fault_start_s: Option<f64>,
    /// The end of the rollbacks.
    pub rollback_end_s: Option<f64>,
    /// The last fault reverted: a `resolved` expectation counts from here,
    /// so its time is how long the alert outlived the fault.
    pub faults_end_s: Option<f64>,
}

impl Anchors {
    fn resolved_from(&self) -> Option<f64> {
        self.faults_end_s.or(self.rollback_end_s)
    }
}

/// Decides one expectation from the log at `now_s`; `grace_s` allows for
/// the polling interval.
pub fn decide(
    expect: &ExpectedAlert,
    seen: &[AlertSeen],
    anchors: Anchors,
    now_s: f64,
    grace_s: f64,
) -> Decision {
    let anchor = match expect.state {
        ExpectedState::Pending | ExpectedState::Firing => anchors.fault_start_s,
        ExpectedState::Resolved => anchors.resolved_from(),
    };
    let Some(anchor) = anchor else {
        return Decision::Failed(match expect.state {
            ExpectedState::Resolved => "the faults were never reverted".to_owned(),
            _ => "no fault was injected".to_owned(),
        });
    };
    let deadline = anchor + expect.within.as_secs_f64() + grace_s;
    let series = seen
        .iter()
        .filter(|s| s.alert == expect.alert && labels_match(&s.labels, &expect.labels));
    let mut best: Option<(f64, String)> = None;
    for s in series {
        let reached = |state: &str| match expect.state {
            ExpectedState::Firing => state == "firing",
            ExpectedState::Pending => state == "pending" || state == "firing",
            ExpectedState::Resolved => state == "inactive",
        };
        // The state the series was in when the clock started.
        let before = s
            .transitions
            .iter()
            .rev()
            .find(|t| t.at_s <= anchor)
            .map_or("inactive", |t| t.state.as_str());
        if expect.state != ExpectedState::Resolved && reached(before) {
            // A rule that fires without the fault proves nothing about it.
            return Decision::Failed(format!(
                "already {before} before the fault started{}",
                describe_labels(&s.labels)
            ));
        }
        let candidate = if expect.state == ExpectedState::Resolved {
            // Resolved: it must have fired, and then gone after the rollbacks.
            let fired = s.transitions.iter().any(|t| t.state == "firing");
            s.transitions
                .iter()
                .find(|t| t.at_s >= anchor && t.state == "inactive")
                .filter(|_| fired)
                .map(|t| (t.at_s, String::new()))
                .or_else(|| {
                    (fired && before == "inactive")
                        .then(|| (anchor, "already resolved when the faults ended".to_owned()))
                })
        } else {
            s.transitions
                .iter()
                .find(|t| t.at_s >= anchor && reached(&t.state))
                .map(|t| (t.at_s, String::new()))
        };
        if let Some(candidate) = candidate
            && best.as_ref().is_none_or(|b| candidate.0 < b.0)
        {
            best = Some(candidate);
        }
    }
    match best {
        Some((at_s, note)) if at_s <= deadline => Decision::Met { at_s, note },
        Some((at_s, _)) => Decision::Failed(format!(
            "reached {:?} only {:.1} s after its clock started (within {:.1} s expected)",
            expect.state,
            at_s - anchor,
            expect.within.as_secs_f64()
        )),
        None if now_s > deadline => Decision::Failed(format!(
            "not {:?} within {:.1} s",
            expect.state,
            expect.within.as_secs_f64()
        )),
        None => Decision::Undecided,
    }
}

fn describe_labels(labels: &BTreeMap<String, String>) -> String {
    if labels.is_empty() {
        String::new()
    } else {
        let pairs: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
        format!(" ({{{}}})", pairs.join(", "))
    }
}

/// The alert series that fired during the run although the experiment
/// neither expects nor allows them (Watchdog aside), each with the time it
/// first fired.
pub fn unexpected(
    seen: &[AlertSeen],
    expected: &[ExpectedAlert],
    allowed: &[AllowedAlert],
) -> Vec<UnexpectedAlert> {
    seen.iter()
        .filter(|s| s.alert != WATCHDOG_ALERT)
        .filter(|s| {
            // Only what must fire makes a series expected: a `resolved`
            // expectation says how an expected series ends, and allows none.
            !expected
                .iter()
                .filter(|e| e.state != ExpectedState::Resolved)
                .any(|e| e.alert == s.alert && labels_match(&s.labels, &e.labels))
                && !allowed
                    .iter()
                    .any(|a| a.alert == s.alert && labels_match(&s.labels, &a.labels))
        })
        .filter_map(|s| {
            s.transitions
                .iter()
                .find(|t| t.state == "firing")
                .map(|t| UnexpectedAlert {
                    alert: s.alert.clone(),
                    labels: s.labels.clone(),
                    first_firing_s: t.at_s,
                })
        })
        .collect()
}

/// One line for the verdict's reasons.
pub fn unexpected_reason(alert: &UnexpectedAlert) -> String {
    format!(
        "alert {}{} fired at {:.1} s, but the experiment neither expects nor allows it",
        alert.alert,
        describe_labels(&alert.labels),
        alert.first_firing_s
    )
}

/// The journal record of a decided (or, at the end, undecided) expectation.
pub fn record(
    expect: &ExpectedAlert,
    decision: &Decision,
    anchors: Anchors,
) -> AlertExpectationRecord {
    let anchor = match expect.state {
        ExpectedState::Resolved => anchors.resolved_from(),
        _ => anchors.fault_start_s,
    };
    let (met, at_s, note) = match decision {
        Decision::Met { at_s, note } => (true, Some(*at_s), note.clone()),
        Decision::Failed(reason) => (false, None, reason.clone()),
        Decision::Undecided => (false, None, "not decided when the run ended".to_owned()),
    };
    AlertExpectationRecord {
        alert: expect.alert.clone(),
        state: match expect.state {
            ExpectedState::Pending => "pending",
            ExpectedState::Firing => "firing",
            ExpectedState::Resolved => "resolved",
        }
        .to_owned(),
        within_s: expect.within.as_secs_f64(),
        labels: expect.labels.clone(),
        met,
        at_s,
        detection_time_s: at_s.zip(anchor).map(|(at, anchor)| (at - anchor).max(0.0)),
        note,
        before: expect.before.clone(),
        lead_time_s: None,
    }
}

/// Checks the `before` orderings among decided expectations, filling in
/// their lead times; returns a reason for each one broken. An ordering whose
/// either side was not met is left to that expectation's own failure.
pub fn check_order(records: &mut [AlertExpectationRecord]) -> Vec<String> {
    let reached: Vec<(String, String, Option<f64>)> = records
        .iter()
        .map(|r| (r.alert.clone(), r.state.clone(), r.at_s.filter(|_| r.met)))
        .collect();
    let mut reasons = Vec::new();
    for record in records.iter_mut() {
        let (Some(other), Some(at_s)) = (record.before.clone(), record.at_s) else {
            continue;
        };
        if !record.met {
            continue;
        }
        let Some(other_at_s) = reached
            .iter()
            .find(|(alert, state, _)| *alert == other && *state == record.state)
            .and_then(|(_, _, at)| *at)
        else {
            continue;
        };
        let lead = other_at_s - at_s;
        record.lead_time_s = Some(lead);
        if lead <= 0.0 {
            reasons.push(format!(
                "alert {} was {} {:.1} s after {other}, but must lead it",
                record.alert, record.state, -lead
            ));
        }
    }
    reasons
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(name: &str, state: &str) -> ActiveAlert {
        ActiveAlert {
            name: name.into(),
            state: state.into(),
            labels: BTreeMap::from([("alertname".into(), name.into())]),
        }
    }

    fn expect(state: ExpectedState, within_s: u64) -> ExpectedAlert {
        ExpectedAlert {
            alert: "A".into(),
            state,
            within: Duration::from_secs(within_s),
            labels: BTreeMap::new(),
            before: None,
        }
    }

    #[test]
    fn transitions_and_decisions() {
        let log = AlertLog::default();
        log.observe(&[], 0.0);
        log.observe(&[alert("A", "pending")], 3.0);
        log.observe(&[alert("A", "firing")], 5.0);
        log.observe(&[], 20.0);
        let seen = log.seen();
        assert_eq!(seen.len(), 1);
        let states: Vec<_> = seen[0]
            .transitions
            .iter()
            .map(|t| t.state.as_str())
            .collect();
        assert_eq!(states, ["pending", "firing", "inactive"]);
        let anchors = Anchors {
            fault_start_s: Some(1.0),
            rollback_end_s: Some(15.0),
            faults_end_s: None,
        };
        assert_eq!(
            decide(
                &expect(ExpectedState::Firing, 10),
                &seen,
                anchors,
                30.0,
                0.0
            ),
            Decision::Met {
                at_s: 5.0,
                note: String::new()
            }
        );
        let firing = record(
            &expect(ExpectedState::Firing, 10),
            &Decision::Met {
                at_s: 5.0,
                note: String::new(),
            },
            anchors,
        );
        assert_eq!(firing.detection_time_s, Some(4.0));
        assert!(matches!(
            decide(&expect(ExpectedState::Firing, 2), &seen, anchors, 30.0, 0.0),
            Decision::Failed(_)
        ));
        assert_eq!(
            decide(
                &expect(ExpectedState::Resolved, 10),
                &seen,
                anchors,
                30.0,
                0.0
            ),
            Decision::Met {
                at_s: 20.0,
                note: String::new()
            }
        );
        let none = Anchors {
            fault_start_s: Some(1.0),
            rollback_end_s: None,
            faults_end_s: None,
        };
        assert!(matches!(
            decide(&expect(ExpectedState::Firing, 60), &[], none, 2.0, 0.0),
            Decision::Undecided
        ));
    }
    #[test]
    fn an_alert_firing_before_the_fault_fails_its_expectation() {
        let log = AlertLog::default();
        log.observe(&[alert("A", "firing")], 0.5);
        log.observe(&[alert("A", "firing")], 5.0);
        let anchors = Anchors {
            fault_start_s: Some(1.0),
            rollback_end_s: Some(15.0),
            faults_end_s: None,
        };
        let decision = decide(
            &expect(ExpectedState::Firing, 10),
            &log.seen(),
            anchors,
            30.0,
            0.0,
        );
        let Decision::Failed(reason) = decision else {
            panic!("{decision:?}");
        };
        assert!(
            reason.contains("already firing before the fault"),
            "{reason}"
        );
        // Pending before the fault fails a pending expectation too.
        let log = AlertLog::default();
        log.observe(&[alert("A", "pending")], 0.5);
        log.observe(&[alert("A", "firing")], 3.0);
        assert!(matches!(
            decide(
                &expect(ExpectedState::Pending, 10),
                &log.seen(),
                anchors,
                30.0,
                0.0
            ),
            Decision::Failed(_)
        ));
        // But pending before, firing after, meets a firing expectation.
        assert_eq!(
            decide(
                &expect(ExpectedState::Firing, 10),
                &log.seen(),
                anchors,
                30.0,
                0.0
            ),
            Decision::Met {
                at_s: 3.0,
                note: String::new()
            }
        );
    }

    #[test]
    fn alerts_neither_expected_nor_allowed_are_unexpected() {
        let log = AlertLog::default();
        let mut other = alert("B", "firing");
        other.labels.insert("job".into(), "orders".into());
        log.observe(
            &[
                alert("A", "firing"),
                other.clone(),
                alert("Watchdog", "firing"),
                alert("C", "pending"),
            ],
            2.0,
        );
        let seen = log.seen();
        let expected = [expect(ExpectedState::Firing, 10)];
        let found = unexpected(&seen, &expected, &[]);
        // C was only pending; Watchdog always fires; A is expected.
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].alert, "B");
        assert_eq!(found[0].first_firing_s, 2.0);
        assert!(unexpected_reason(&found[0]).contains("job=\"orders\""));
        let allow = |labels: &[(&str, &str)]| AllowedAlert {
            alert: "B".into(),
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            reason: "a side effect".into(),
        };
        assert!(unexpected(&seen, &expected, &[allow(&[])]).is_empty());
        assert!(unexpected(&seen, &expected, &[allow(&[("job", "orders")])]).is_empty());
        assert_eq!(
            unexpected(&seen, &expected, &[allow(&[("job", "catalog")])]).len(),
            1
        );
    }
    #[test]
    fn a_leading_alert_must_reach_its_state_first() {
        let anchors = Anchors {
            fault_start_s: Some(0.0),
            rollback_end_s: Some(50.0),
            faults_end_s: None,
        };
        let mut leading = expect(ExpectedState::Firing, 60);
        leading.before = Some("B".into());
        let mut slo = expect(ExpectedState::Firing, 60);
        slo.alert = "B".into();
        let met = |at_s: f64| Decision::Met {
            at_s,
            note: String::new(),
        };
        let mut records = vec![
            record(&leading, &met(12.0), anchors),
            record(&slo, &met(20.0), anchors),
        ];
        assert!(check_order(&mut records).is_empty());
        assert_eq!(records[0].lead_time_s, Some(8.0));
        let mut records = vec![
            record(&leading, &met(25.0), anchors),
            record(&slo, &met(20.0), anchors),
        ];
        let reasons = check_order(&mut records);
        assert_eq!(reasons.len(), 1, "{reasons:?}");
        assert!(reasons[0].contains("must lead"), "{reasons:?}");
        assert_eq!(records[0].lead_time_s, Some(-5.0));
    }
}
