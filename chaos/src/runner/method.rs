//! The method phase: faults on their schedule, probes evaluated alongside.

use std::pin::Pin;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tokio::time::Instant;

use super::guard::ActiveFault;
use super::record::Outcome;
use super::{Plan, Run, RunEvent, action_outcome, invoke, observe, probe_outcome};
use crate::actions::{ActionError, Prepared};
use crate::experiment::Must;
use crate::journal::{Activity, ActivityStatus, ActivityType};
use crate::probes::{Observation, ProbeError};

/// How the method ended.
#[derive(Debug, Default)]
pub(crate) enum MethodEnd {
    #[default]
    Completed,
    /// Probes failed; one reason each.
    Deviated(Vec<String>),
    /// An action failed (or panicked).
    Aborted(String),
    /// An `[[abort_when]]` limit was crossed: the reason names it and the value.
    Tripped(String),
    Interrupted,
}

/// What the method did.
#[derive(Debug, Default)]
pub(crate) struct MethodResult {
    pub end: MethodEnd,
    pub actions: Vec<Activity>,
    pub probes: Vec<Activity>,
    pub first_injection_s: Option<f64>,
    pub last_revert_s: Option<f64>,
    /// Faults whose effect could not be seen: "fault not effective", one
    /// reason each.
    pub not_effective: Vec<String>,
    /// The method was neither aborted nor interrupted: the faults still
    /// active had their whole window, so what they did is read before the
    /// rollback reverts them.
    pub ran_to_the_end: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum What {
    // At the same instant: revert first, then inject, then ramp.
    Revert,
    Inject,
    Ramp(usize),
}

#[derive(Debug, Clone, Copy)]
struct Event {
    at: Duration,
    what: What,
    fault: usize,
}

fn schedule(run: &Run) -> Vec<Event> {
    let mut events = Vec::new();
    for (index, fault) in run.plan.faults.iter().enumerate() {
        events.push(Event {
            at: fault.at,
            what: What::Inject,
            fault: index,
        });
        for (step, offset) in fault.fault.ramp_steps().into_iter().enumerate() {
            let at = fault.at + offset;
            if fault.duration.is_none_or(|d| offset < d) {
                events.push(Event {
                    at,
                    what: What::Ramp(step + 1),
                    fault: index,
                });
            }
        }
        if let Some(duration) = fault.duration {
            events.push(Event {
                at: fault.at + duration,
                what: What::Revert,
                fault: index,
            });
        }
    }
    events.sort_by_key(|e| (e.at, e.what, e.fault));
    events
}

type Evaluation =
    Pin<Box<dyn Future<Output = (usize, f64, Result<Observation, ProbeError>)> + Send>>;

pub(crate) async fn run_method(run: &Run) -> MethodResult {
    let plan = &run.plan;
    let clock = run.recorder.clock;
    let start_s = clock.now_s();
    let start = clock.instant(start_s);
    let end = start + plan.method_duration;
    let mut cx = run.cx(start_s);
    // Probes that must pass "eventually" look for the fault's effect: they
    // are due from the first injection, and see only what came after it. So
    // are probes that measure from the fault ($__fault_range), which have
    // nothing to measure before it.
    let mut fault_cx = cx.clone();
    let first_fault_at = plan
        .faults
        .iter()
        .map(|f| f.at)
        .min()
        .unwrap_or(Duration::ZERO);
    let mut result = MethodResult::default();
    let mut events = schedule(run);
    let mut next_event = 0;
    let mut next_due: Vec<Instant> = plan
        .during
        .iter()
        .map(|p| match p.must {
            Must::Always if !p.probe.counts_from_the_fault() => start,
            Must::Always | Must::Eventually => start + first_fault_at,
        })
        .collect();
    let mut in_flight: Vec<bool> = plan.during.iter().map(|_| false).collect();
    let mut passed_once: Vec<bool> = plan.during.iter().map(|_| false).collect();
    // An always-probe that finds no data yet (no load window in the phase so
    // far) is not failing: it is waiting. It must have seen data by the end,
    // or within a window (plus a second's grace) after it: the window that
    // holds the end is reported only when it closes, and on a busy machine
    // a short method's only whole window can close a little after the
    // method's last evaluation.
    let mut saw_data: Vec<bool> = plan.during.iter().map(|_| false).collect();
    let data_grace = plan.load.as_ref().map_or(Duration::ZERO, |load| {
        load.window() + Duration::from_secs(1)
    });
    let last_evaluation = |index: usize, saw_data: &[bool]| {
        if plan.during[index].must == Must::Always && !saw_data[index] {
            end + data_grace
        } else {
            end
        }
    };
    let mut evaluations: FuturesUnordered<Evaluation> = FuturesUnordered::new();
    let mut deviations = Vec::new();
    let abort = super::abort::watch(run, start_s);
    tokio::pin!(abort);

    loop {
        let now = Instant::now();
        // Due actions, in order.
        while next_event < events.len() && start + events[next_event].at <= now {
            let event = events[next_event];
            next_event += 1;
            let injected_before = result.first_injection_s.is_some();
            let acted_s = clock.now_s();
            if let Err(reason) = act(run, event, acted_s, &mut result).await {
                result.end = MethodEnd::Aborted(reason);
                return result;
            }
            if event.what == What::Inject {
                // A fault acts for its whole duration from when it was
                // actually injected, even if the injection ran late.
                let injected_at = clock.instant(acted_s).saturating_duration_since(start);
                hold_revert(&mut events[next_event..], event.fault, injected_at, plan);
            }
            if let (false, Some(fault_start_s)) = (injected_before, result.first_injection_s) {
                let _ = run.fault_start_s.set(fault_start_s);
                cx = run.cx(start_s);
                fault_cx = run.cx(fault_start_s);
            }
        }
        // Due probes.
        for (index, probe) in plan.during.iter().enumerate() {
            if in_flight[index] || next_due[index] > now || now >= last_evaluation(index, &saw_data)
            {
                continue;
            }
            if probe.must == Must::Eventually && passed_once[index] {
                continue;
            }
            in_flight[index] = true;
            next_due[index] = now + probe.every;
            let probe_ref = probe.probe.clone();
            let cx = match probe.must {
                Must::Always => cx.clone(),
                Must::Eventually => fault_cx.clone(),
            };
            let timeout = plan
                .settings
                .probe_timeout
                .min(probe.every.max(Duration::from_secs(1)) * 5);
            evaluations.push(Box::pin(async move {
                let start_s = clock.now_s();
                (index, start_s, observe(&probe_ref, &cx, timeout).await)
            }));
        }
        let actions_done = next_event >= events.len();
        let awaiting_data =
            (0..plan.during.len()).any(|index| now < last_evaluation(index, &saw_data));
        if now >= end && actions_done && evaluations.is_empty() && !awaiting_data {
            break;
        }
        // Past the end, only the evaluations in flight, and those of probes
        // still waiting for data, are waited for.
        let mut wake = if now >= end && actions_done {
            now + Duration::from_secs(3600)
        } else {
            end
        };
        if let Some(event) = events.get(next_event) {
            wake = wake.min(start + event.at);
        }
        for (index, due) in next_due.iter().enumerate() {
            let last = last_evaluation(index, &saw_data);
            if now < last && !in_flight[index] {
                wake = wake.min((*due).min(last));
            }
        }
        tokio::select! {
            () = run.cancel.cancelled() => {
                result.end = MethodEnd::Interrupted;
                return result;
            }
            tripped = &mut abort => {
                result.probes.push(tripped.activity);
                result.end = MethodEnd::Tripped(tripped.reason);
                return result;
            }
            () = tokio::time::sleep_until(wake) => {}
            Some((index, eval_start_s, observation)) = evaluations.next(), if !evaluations.is_empty() => {
                in_flight[index] = false;
                let probe = &plan.during[index];
                if matches!(observation, Err(ProbeError::NoData(_))) && probe.must == Must::Always {
                    continue;
                }
                saw_data[index] = true;
                let outcome: Outcome = probe_outcome(observation, 1);
                let ok = outcome.ok;
                let activity = match probe.must {
                    Must::Always => run.recorder.activity(
                        ActivityType::Probe,
                        &probe.name,
                        probe.probe.kind(),
                        "during",
                        eval_start_s,
                        outcome,
                    ),
                    Must::Eventually => run.recorder.eventually(
                        &probe.name,
                        probe.probe.kind(),
                        eval_start_s,
                        outcome,
                        start_s + plan.method_duration.as_secs_f64(),
                    ),
                };
                if ok {
                    passed_once[index] = true;
                    if probe.must == Must::Eventually {
                        // Done: never due again.
                        next_due[index] = end;
                    }
                } else if probe.must == Must::Always {
                    deviations.push(format!(
                        "probe {} failed during the method: {}",
                        probe.name,
                        activity.exception.clone().unwrap_or_else(|| activity.detail.clone())
                    ));
                }
                result.probes.push(activity);
                if !ok && probe.must == Must::Always && probe.abort {
                    result.end = MethodEnd::Deviated(deviations);
                    return result;
                }
            }
        }
    }
    for (index, probe) in plan.during.iter().enumerate() {
        if probe.must == Must::Always && !saw_data[index] {
            deviations.push(format!(
                "probe {} never had data during the method",
                probe.name
            ));
        }
        if probe.must == Must::Eventually && !passed_once[index] {
            deviations.push(format!(
                "probe {} never passed during the method",
                probe.name
            ));
            let last = result
                .probes
                .iter()
                .rev()
                .find(|a| a.activity.name == probe.name);
            run.recorder.emit(RunEvent::Missed {
                name: probe.name.clone(),
                at_s: clock.now_s(),
                last: last
                    .map(|a| a.exception.clone().unwrap_or_else(|| a.detail.clone()))
                    .unwrap_or_else(|| "never evaluated".to_owned()),
            });
        }
    }
    // Always-probes that failed without aborting still deviate.
    let failed_always = result.probes.iter().any(|a| {
        a.status == ActivityStatus::Failed
            && plan
                .during
                .iter()
                .any(|p| p.name == a.activity.name && p.must == Must::Always)
    });
    deviations.extend(result.not_effective.iter().cloned());
    if !deviations.is_empty() || failed_always {
        result.end = MethodEnd::Deviated(deviations);
    }
    result
}

/// Reads what an active fault has done ([`crate::actions::Effect`]) and
/// records it as its `effect` step. The reason comes back when the evidence
/// shows it did nothing ("fault not effective"); evidence that cannot be
/// read fails nothing.
pub(crate) async fn read_effect(run: &Run, active: &ActiveFault) -> (Activity, Option<String>) {
    let start_s = run.recorder.clock.now_s();
    let fault = active.fault.clone();
    let prepared = active.prepared.clone();
    let timeout = run.plan.settings.action_timeout;
    let effect = invoke(timeout, async move { fault.effect(&prepared).await }).await;
    let mut not_effective = None;
    let outcome = match effect {
        Ok(effect) if effect.effective == Some(false) => {
            let reason = format!("fault not effective: {}: {}", active.name, effect.evidence);
            not_effective = Some(reason.clone());
            Err(ActionError::Config(reason))
        }
        Ok(effect) => Ok(serde_json::json!(effect)),
        Err(err) => Ok(serde_json::json!({"unreadable": err.to_string()})),
    };
    let activity = run.recorder.activity(
        ActivityType::Action,
        &active.name,
        active.fault.kind(),
        "effect",
        start_s,
        action_outcome(outcome),
    );
    (activity, not_effective)
}

/// Carries out one scheduled event; `Err` aborts the method.
/// Moves the revert of `fault` to no earlier than `injected_at` (from the
/// method's start) plus its duration, and keeps `pending` in order.
fn hold_revert(pending: &mut [Event], fault: usize, injected_at: Duration, plan: &Plan) {
    let Some(duration) = plan.faults[fault].duration else {
        return;
    };
    let Some(revert) = pending
        .iter_mut()
        .find(|e| e.fault == fault && e.what == What::Revert)
    else {
        return;
    };
    revert.at = revert.at.max(injected_at + duration);
    pending.sort_by_key(|e| (e.at, e.what, e.fault));
}

/// Runs `event`, recorded as starting at `start_s`.
async fn act(
    run: &Run,
    event: Event,
    start_s: f64,
    result: &mut MethodResult,
) -> Result<(), String> {
    let planned = &run.plan.faults[event.fault];
    let timeout = run.plan.settings.action_timeout;
    let clock = run.recorder.clock;
    let record =
        |result: &mut MethodResult, step: &str, outcome: Result<serde_json::Value, ActionError>| {
            let failed = outcome.as_ref().err().map(ToString::to_string);
            let activity = run.recorder.activity(
                ActivityType::Action,
                &planned.name,
                planned.fault.kind(),
                step,
                start_s,
                action_outcome(outcome),
            );
            result.actions.push(activity);
            failed.map(|err| format!("{step} of {} failed: {err}", planned.name))
        };
    match event.what {
        What::Inject => {
            let fault = planned.fault.clone();
            let prepared = match invoke(timeout, async move { fault.prepare().await }).await {
                Ok(prepared) => prepared,
                Err(err) => return Err(record(result, "inject", Err(err)).unwrap_or_default()),
            };
            if let Err(err) = run.ledger.record(&planned.name, &prepared.undo) {
                return Err(record(result, "inject", Err(err.into())).unwrap_or_default());
            }
            // Active from now on: a failed or partial injection is reverted too.
            run.active.push(ActiveFault {
                name: planned.name.clone(),
                fault: planned.fault.clone(),
                prepared: prepared.clone(),
            });
            result.first_injection_s.get_or_insert(start_s);
            let fault = planned.fault.clone();
            let outcome = invoke(timeout, async move { fault.inject(&prepared).await }).await;
            match record(result, "inject", outcome) {
                Some(err) => Err(err),
                None => Ok(()),
            }
        }
        What::Ramp(step) => {
            let Some(active) = run.active.get(&planned.name) else {
                return Ok(());
            };
            let fault = planned.fault.clone();
            let prepared: Prepared = active.prepared;
            let outcome = invoke(timeout, async move { fault.ramp(&prepared, step).await }).await;
            match record(result, &format!("ramp {step}"), outcome) {
                Some(err) => Err(err),
                None => Ok(()),
            }
        }
        What::Revert => {
            let Some(active) = run.active.take(&planned.name) else {
                return Ok(());
            };
            // The evidence that it did something, read while it still acts.
            let (activity, not_effective) = read_effect(run, &active).await;
            result.actions.push(activity);
            result.not_effective.extend(not_effective);
            let fault = active.fault.clone();
            let prepared = active.prepared.clone();
            let outcome = invoke(timeout, async move { fault.revert(&prepared).await }).await;
            if outcome.is_ok() {
                let _ = run.ledger.clear(&planned.name);
            } else {
                // Put it back so that the rollback phase tries again.
                run.active.push(active);
            }
            result.last_revert_s = Some(clock.now_s());
            match record(result, "revert", outcome) {
                Some(err) => Err(err),
                None => Ok(()),
            }
        }
    }
}
