//! The live progress lines of a run, as `faultline run` and `faultline
//! gameday` print them on stderr.
//!
//! Statuses: `ok` (green) for an action or probe that succeeded, `FAIL`
//! (red) for one that failed. A passing `must = "always"` during-probe
//! prints nothing (it is evaluated every `every`). A `must = "eventually"`
//! during-probe prints `wait` (dim yellow) while it has not passed yet and
//! its deadline (the end of the method) is still ahead, `ok` once it passes,
//! and `FAIL` only when the deadline passes without success.

use faultline_chaos::journal::{Activity, ActivityStatus, ActivityType};
use faultline_chaos::runner::RunEvent;

use super::style::{Paint, paint};

/// The line to print for `event`, if any.
pub fn line(event: &RunEvent, colour: bool) -> Option<String> {
    match event {
        RunEvent::Phase { name, at_s } => Some(format!(
            "{at_s:>7.1}s {}",
            paint(colour, Paint::Bold, &format!("== {name}"))
        )),
        RunEvent::Activity(activity) => activity_line(activity, colour),
        RunEvent::Missed { name, at_s, last } => Some(format!(
            "{at_s:>7.1}s {} probe {name} [during]: did not pass by the end of the method (last: {last})",
            paint(colour, Paint::Bad, "FAIL"),
        )),
        RunEvent::Alert { alert, state, at_s } => {
            let style = match state.as_str() {
                "firing" => Paint::Bad,
                "pending" => Paint::Warn,
                _ => Paint::Good,
            };
            Some(format!(
                "{at_s:>7.1}s alert {alert} {}",
                paint(colour, style, state)
            ))
        }
        RunEvent::Load(point) => {
            // One line every ~5 windows is enough to see the trend.
            let whole = point.t_s.round() as i64;
            (whole % 5 == 0).then(|| {
                paint(
                    colour,
                    Paint::Dim,
                    &format!(
                        "{:>7.1}s load {} req, {:.1}% errors, p50 {:.0} ms, p99 {:.0} ms",
                        point.t_s,
                        point.requests,
                        point.error_ratio * 100.0,
                        point.p50_ms,
                        point.p99_ms
                    ),
                )
            })
        }
        // The verdict is printed at the end; other notes (a lease not
        // renewed, a limit that cannot be evaluated) matter now.
        RunEvent::Note(text) if text.starts_with("verdict: ") => None,
        RunEvent::Note(text) => Some(format!(
            "         {} {text}",
            paint(colour, Paint::Warn, "note")
        )),
    }
}

/// One progress line for an activity, or none for a passing
/// `must = "always"` during-probe.
fn activity_line(activity: &Activity, colour: bool) -> Option<String> {
    let ok = activity.status == ActivityStatus::Succeeded;
    let eventually = activity.deadline_s;
    if activity.activity.step == "during" && ok && eventually.is_none() {
        return None;
    }
    let mark = match (ok, eventually) {
        (true, _) => paint(colour, Paint::Good, "ok  "),
        (false, Some(_)) => paint(colour, Paint::Wait, "wait"),
        (false, None) => paint(colour, Paint::Bad, "FAIL"),
    };
    let kind = match activity.activity.activity_type {
        ActivityType::Action => "action",
        ActivityType::Probe => "probe",
    };
    let step = match eventually {
        Some(deadline_s) if !ok => format!("{}, until {deadline_s:.1}s", activity.activity.step),
        _ => activity.activity.step.clone(),
    };
    let detail = activity
        .exception
        .clone()
        .unwrap_or_else(|| activity.detail.clone());
    Some(format!(
        "{:>7.1}s {mark} {kind} {} [{step}]{}",
        activity.end_s,
        activity.activity.name,
        if detail.is_empty() {
            String::new()
        } else {
            format!(": {detail}")
        }
    ))
}

#[cfg(test)]
mod tests {
    use faultline_chaos::journal::ActivityInfo;
    use faultline_chaos::runner::RunEvent;

    use super::*;

    fn probe(step: &str, ok: bool, deadline_s: Option<f64>) -> RunEvent {
        RunEvent::Activity(Box::new(Activity {
            activity: ActivityInfo {
                activity_type: ActivityType::Probe,
                name: "the dead replica is ejected".to_owned(),
                kind: "promql".to_owned(),
                step: step.to_owned(),
            },
            status: if ok {
                ActivityStatus::Succeeded
            } else {
                ActivityStatus::Failed
            },
            start: String::new(),
            end: String::new(),
            start_s: 6.0,
            end_s: 6.25,
            duration: 0.25,
            output: serde_json::Value::Null,
            tolerance_met: Some(ok),
            detail: if ok { "1 >= 1" } else { "0 < 1" }.to_owned(),
            exception: None,
            deadline_s,
        }))
    }

    #[test]
    fn an_eventually_probe_waits_until_it_passes() {
        let waiting = line(&probe("during", false, Some(45.0)), false).unwrap();
        assert_eq!(
            waiting,
            "    6.2s wait probe the dead replica is ejected [during, until 45.0s]: 0 < 1"
        );
        assert!(!waiting.contains("FAIL"));
        let passed = line(&probe("during", true, Some(45.0)), false).unwrap();
        assert_eq!(
            passed,
            "    6.2s ok   probe the dead replica is ejected [during]: 1 >= 1"
        );
    }

    #[test]
    fn an_eventually_probe_fails_only_at_its_deadline() {
        let missed = RunEvent::Missed {
            name: "the dead replica is ejected".to_owned(),
            at_s: 45.0,
            last: "0 < 1".to_owned(),
        };
        assert_eq!(
            line(&missed, false).unwrap(),
            "   45.0s FAIL probe the dead replica is ejected [during]: did not pass by the end of the method (last: 0 < 1)"
        );
    }

    #[test]
    fn always_probes_keep_their_lines() {
        assert_eq!(line(&probe("during", true, None), false), None);
        assert_eq!(
            line(&probe("during", false, None), false).unwrap(),
            "    6.2s FAIL probe the dead replica is ejected [during]: 0 < 1"
        );
        assert_eq!(
            line(&probe("steady_state_before", true, None), false).unwrap(),
            "    6.2s ok   probe the dead replica is ejected [steady_state_before]: 1 >= 1"
        );
    }

    #[test]
    fn colours_waiting_apart_from_failing() {
        let waiting = line(&probe("during", false, Some(45.0)), true).unwrap();
        let failing = line(&probe("during", false, None), true).unwrap();
        assert!(waiting.contains('\u{1b}'), "{waiting:?}");
        assert_ne!(
            waiting.split(" probe").next(),
            failing.split(" probe").next(),
            "wait and FAIL are painted differently"
        );
        assert!(waiting.contains("wait") && failing.contains("FAIL"));
    }
}
