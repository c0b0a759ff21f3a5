//! The Markdown report of a journal.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::journal::{Activity, ActivityStatus, Journal, SteadyStateRecord, Verdict};

fn status(activity: &Activity) -> &'static str {
    match activity.status {
        ActivityStatus::Succeeded => "✅",
        ActivityStatus::Failed => "❌",
    }
}

/// Text safe inside a table cell.
fn cell(text: &str) -> String {
    let one_line = text.replace(['\n', '\r'], " ").replace('|', "\\|");
    if one_line.chars().count() > 160 {
        format!("{}…", one_line.chars().take(160).collect::<String>())
    } else {
        one_line
    }
}

fn what(activity: &Activity) -> String {
    match &activity.exception {
        Some(err) => cell(err),
        None if !activity.detail.is_empty() => cell(&activity.detail),
        None => match &activity.output {
            serde_json::Value::Null => String::new(),
            serde_json::Value::String(s) => cell(s),
            other => cell(&other.to_string()),
        },
    }
}

fn probes_table(out: &mut String, probes: &[Activity]) {
    let _ = writeln!(
        out,
        "| probe | kind | | at (s) | result |\n|---|---|---|---:|---|"
    );
    for p in probes {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.1} | {} |",
            cell(&p.activity.name),
            p.activity.kind,
            status(p),
            p.start_s,
            what(p)
        );
    }
}

fn steady(out: &mut String, title: &str, record: Option<&SteadyStateRecord>) {
    let Some(record) = record else {
        return;
    };
    let met = if record.steady_state_met {
        "met"
    } else {
        "**not met**"
    };
    let _ = writeln!(out, "\n## {title}: {met}\n");
    probes_table(out, &record.probes);
}

/// Renders `journal`; `plot` is the image to embed (e.g. `run.svg`).
pub fn render(journal: &Journal, plot: Option<&str>) -> String {
    let mut out = String::new();
    let verdict = match journal.verdict {
        Verdict::Passed => "✅ PASSED",
        Verdict::Failed => "❌ FAILED",
        Verdict::Error => "⚠️ ERROR",
        Verdict::Interrupted => "⏹ INTERRUPTED",
        Verdict::Aborted => "⛔ ABORTED",
    };
    let _ = writeln!(out, "# {}\n", journal.experiment.title);
    let _ = writeln!(
        out,
        "**{verdict}** — status `{}`, deviated `{}` · run `{}` · started {} · {:.1} s",
        journal.status.as_str(),
        journal.deviated,
        journal.run_id,
        journal.start,
        journal.duration
    );
    if let Some(path) = &journal.experiment.path {
        let _ = writeln!(out, "\nExperiment: `{path}`");
    }
    if !journal.experiment.description.is_empty() {
        let _ = writeln!(
            out,
            "\n> {}",
            journal.experiment.description.trim().replace('\n', "\n> ")
        );
    }
    if !journal.reasons.is_empty() {
        let _ = writeln!(out, "\n## Why\n");
        for reason in &journal.reasons {
            let _ = writeln!(out, "- {}", reason.replace('\n', " "));
        }
    }
    if let Some(plot) = plot {
        let _ = writeln!(out, "\n![timeline]({plot})");
    }

    let _ = writeln!(
        out,
        "\n## Timeline\n\n| phase | from (s) | to (s) |\n|---|---:|---:|"
    );
    for phase in &journal.phases {
        let _ = writeln!(
            out,
            "| {} | {:.1} | {:.1} |",
            phase.name, phase.start_s, phase.end_s
        );
    }
    if let Some(window) = &journal.fault_window {
        let _ = writeln!(
            out,
            "\nFaults active from {:.1} s to {:.1} s ({:.1} s).",
            window.start_s,
            window.end_s,
            window.end_s - window.start_s
        );
    }

    steady(
        &mut out,
        "Steady state before",
        journal.steady_states.before.as_ref(),
    );

    if !journal.run.is_empty() {
        let _ = writeln!(
            out,
            "\n## Method\n\n| fault | kind | step | | at (s) | took (s) | result |\n|---|---|---|---|---:|---:|---|"
        );
        for a in &journal.run {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {:.1} | {:.2} | {} |",
                cell(&a.activity.name),
                a.activity.kind,
                a.activity.step,
                status(a),
                a.start_s,
                a.duration,
                what(a)
            );
        }
    }

    if !journal.steady_states.during.is_empty() {
        // Per probe: evaluations, waiting (an eventually-probe not passed
        // yet, before its deadline: not a failure), failed, an example.
        let mut by_probe: BTreeMap<&str, (usize, usize, usize, Option<&Activity>)> =
            BTreeMap::new();
        for a in &journal.steady_states.during {
            let entry = by_probe.entry(&a.activity.name).or_default();
            entry.0 += 1;
            if a.is_waiting() {
                entry.1 += 1;
            } else if a.status == ActivityStatus::Failed {
                entry.2 += 1;
                entry.3.get_or_insert(a);
            } else if entry
                .3
                .is_none_or(|first| first.status == ActivityStatus::Succeeded)
            {
                entry.3 = Some(a);
            }
        }
        let _ = writeln!(
            out,
            "\n## Probes during the method\n\n| probe | evaluations | waiting | failed | first failure (or last result) |\n|---|---:|---:|---:|---|"
        );
        for (name, (count, mut waiting, mut failed, mut example)) in by_probe {
            // Waited to the end and never passed: that was a failure.
            if example.is_none() && waiting > 0 {
                example = journal
                    .steady_states
                    .during
                    .iter()
                    .rev()
                    .find(|a| a.activity.name == name);
                waiting -= 1;
                failed += 1;
            }
            let _ = writeln!(
                out,
                "| {} | {count} | {waiting} | {failed} | {} |",
                cell(name),
                example.map(what).unwrap_or_default()
            );
        }
    }

    if !journal.rollbacks.is_empty() {
        let _ = writeln!(
            out,
            "\n## Rollbacks\n\n| action | kind | | result |\n|---|---|---|---|"
        );
        for a in &journal.rollbacks {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} |",
                cell(&a.activity.name),
                a.activity.kind,
                status(a),
                what(a)
            );
        }
    }

    if let Some(recovery) = &journal.recovery {
        let _ = writeln!(out, "\n## Recovery\n");
        match recovery.recovery_time_s {
            Some(t) => {
                let _ = writeln!(
                    out,
                    "Recovered in **{t:.1} s** (deadline {:.0} s).",
                    recovery.deadline_s
                );
            }
            None => {
                let _ = writeln!(
                    out,
                    "**Not recovered** within the deadline of {:.0} s.",
                    recovery.deadline_s
                );
            }
        }
    }
    steady(
        &mut out,
        "Steady state after",
        journal.steady_states.after.as_ref(),
    );

    if !journal.expected_alerts.is_empty() {
        let _ = writeln!(
            out,
            "\n## Expected alerts\n\n| alert | state | within (s) | | detection (s) | note |\n|---|---|---:|---|---:|---|"
        );
        for e in &journal.expected_alerts {
            let lead = match (&e.before, e.lead_time_s) {
                (Some(other), Some(lead)) => format!("{lead:.1} s before {other}"),
                (Some(other), None) => format!("must lead {other}"),
                _ => String::new(),
            };
            let note = [e.note.as_str(), lead.as_str()]
                .into_iter()
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
                .join("; ");
            let _ = writeln!(
                out,
                "| {} | {} | {:.0} | {} | {} | {} |",
                e.alert,
                e.state,
                e.within_s,
                if e.met { "✅" } else { "❌" },
                e.detection_time_s
                    .map(|t| format!("{t:.1}"))
                    .unwrap_or_else(|| "—".into()),
                cell(&note)
            );
        }
    }
    if !journal.unexpected_alerts.is_empty() {
        let _ = writeln!(
            out,
            "\n## Unexpected alerts\n\nThese fired although the experiment neither expects nor allows them; each fails the run.\n\n| alert | labels | first fired (s) |\n|---|---|---:|"
        );
        for a in &journal.unexpected_alerts {
            let labels: Vec<String> = a.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let _ = writeln!(
                out,
                "| {} | {} | {:.1} |",
                a.alert,
                cell(&labels.join(", ")),
                a.first_firing_s
            );
        }
    }
    if !journal.alerts_seen.is_empty() {
        let _ = writeln!(
            out,
            "\n## Alerts seen\n\n| alert | labels | transitions (s) |\n|---|---|---|"
        );
        for a in &journal.alerts_seen {
            let labels: Vec<String> = a.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let transitions: Vec<String> = a
                .transitions
                .iter()
                .map(|t| format!("{} @ {:.1}", t.state, t.at_s))
                .collect();
            let _ = writeln!(
                out,
                "| {} | {} | {} |",
                a.alert,
                cell(&labels.join(", ")),
                transitions.join(" → ")
            );
        }
    }

    if let Some(load) = &journal.load {
        let _ = writeln!(out, "\n## Load\n");
        if let Some(error) = &load.error {
            let _ = writeln!(out, "The load failed: {}\n", cell(error));
        }
        let _ = writeln!(
            out,
            "| route | requests | errors | error % | 429 | degraded | p50 ms | p95 ms | p99 ms | max ms |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        );
        let rows = load
            .routes
            .iter()
            .map(|(route, summary)| (route.as_str(), summary))
            .chain(load.totals.iter().map(|t| ("**total**", t)));
        for (route, s) in rows {
            let _ = writeln!(
                out,
                "| {route} | {} | {} | {:.2} | {} | {} | {:.1} | {:.1} | {:.1} | {:.1} |",
                s.count,
                s.errors,
                s.error_ratio * 100.0,
                s.rate_limited,
                s.degraded,
                s.latency_ms.p50,
                s.latency_ms.p95,
                s.latency_ms.p99,
                s.latency_ms.max
            );
        }
        let _ = writeln!(
            out,
            "\n{} orders acknowledged, {} idempotency violations, {} failed requests.",
            load.acknowledged_orders, load.idempotency_violations, load.failed_requests_total
        );
    }

    if !journal.after.is_empty() {
        let _ = writeln!(out, "\n## After the load\n");
        probes_table(&mut out, &journal.after);
    }

    if !journal.failed_requests.is_empty() {
        let _ = writeln!(
            out,
            "\n## Failed requests\n\nLook these trace ids up in the tracing backend.\n\n| trace id | route | status | error | at (s) |\n|---|---|---:|---|---:|"
        );
        for f in journal.failed_requests.iter().take(25) {
            let _ = writeln!(
                out,
                "| `{}` | {} | {} | {} | {:.1} |",
                f.trace_id,
                f.route,
                f.status.map(|s| s.to_string()).unwrap_or_default(),
                cell(&format!(
                    "{}{}",
                    f.error,
                    f.detail
                        .as_ref()
                        .map(|d| format!(": {d}"))
                        .unwrap_or_default()
                )),
                f.at_s
            );
        }
        if journal.failed_requests.len() > 25 {
            let _ = writeln!(
                out,
                "\n…and {} more in the journal.",
                journal.failed_requests.len() - 25
            );
        }
    }
    out
}
