//! `gameday.md`: the runs in order, each expected alert's time to its
//! state, what deviated, links to each run's own report.

use std::fmt::Write as _;

use super::record::GameDayReport;
use crate::journal::Verdict;

fn verdict(verdict: Verdict) -> String {
    let mark = match verdict {
        Verdict::Passed => "✅",
        Verdict::Failed => "❌",
        Verdict::Error => "⚠️",
        Verdict::Interrupted => "⏹",
        Verdict::Aborted => "🛑",
    };
    format!("{mark} {}", verdict.as_str())
}

fn clock(seconds: f64) -> String {
    let whole = seconds.max(0.0).round() as u64;
    format!("{}:{:02}", whole / 60, whole % 60)
}

fn cell(text: &str) -> String {
    text.replace(['\n', '\r'], " ").replace('|', "\\|")
}

/// Renders the report; `plot` is the timeline image to embed.
pub fn render(report: &GameDayReport, plot: Option<&str>) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# Game day (seed {})\n", report.seed);
    let tally: Vec<String> = report
        .tally()
        .iter()
        .map(|(verdict, count)| format!("{count} {verdict}"))
        .collect();
    let _ = writeln!(
        out,
        "Started {} · budget {} · cool-down {:.0} s · stop on failure: {} · took {} · stopped: {}.\n",
        report.start,
        clock(report.budget_s),
        report.cooldown_s,
        if report.stop_on_failure { "yes" } else { "no" },
        clock(report.elapsed_s),
        report.stopped.describe()
    );
    let _ = writeln!(
        out,
        "**{} runs**{}{}\n",
        report.runs.len(),
        if tally.is_empty() { "" } else { ": " },
        tally.join(", ")
    );
    let _ = writeln!(
        out,
        "Order (seed {}): {}",
        report.seed,
        report.order.join(" → ")
    );
    if let Some(plot) = plot {
        let _ = writeln!(out, "\n![timeline]({plot})");
    }

    let _ = writeln!(
        out,
        "\n## Runs\n\n| # | experiment | verdict | start | duration (s) | expected at most (s) | report |\n|---:|---|---|---:|---:|---:|---|"
    );
    for run in &report.runs {
        let link = match (&run.report, &run.journal) {
            (Some(report), Some(journal)) => format!("[report]({report}) · [journal]({journal})"),
            (None, Some(journal)) => format!("[journal]({journal})"),
            _ => "—".to_owned(),
        };
        let _ = writeln!(
            out,
            "| {} | {} (`{}`) | {} | {} | {:.1} | {:.0} | {link} |",
            run.index,
            cell(&run.title),
            run.experiment,
            verdict(run.verdict),
            clock(run.start_s),
            run.end_s - run.start_s,
            run.estimate_s,
        );
    }

    let timings: Vec<_> = report
        .runs
        .iter()
        .flat_map(|run| run.alerts.iter().map(move |alert| (run, alert)))
        .collect();
    if !timings.is_empty() {
        let _ = writeln!(
            out,
            "\n## Expected alerts\n\nTime to the state: from the first injection (for `resolved`, from the last revert).\n\n| alert | state | # | experiment | after (s) | |\n|---|---|---:|---|---:|---|"
        );
        let mut sorted = timings;
        sorted.sort_by(|(ra, a), (rb, b)| {
            (a.alert.as_str(), a.state.as_str(), ra.index).cmp(&(
                b.alert.as_str(),
                b.state.as_str(),
                rb.index,
            ))
        });
        for (run, alert) in sorted {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} |",
                alert.alert,
                alert.state,
                run.index,
                run.experiment,
                alert
                    .after_s
                    .filter(|_| alert.met)
                    .map_or_else(|| "—".to_owned(), |t| format!("{t:.1}")),
                if alert.met { "✅" } else { "❌ not in time" }
            );
        }
    }

    let deviated: Vec<_> = report
        .runs
        .iter()
        .filter(|r| !r.deviations.is_empty())
        .collect();
    if !deviated.is_empty() {
        let _ = writeln!(out, "\n## What deviated\n");
        for run in deviated {
            let _ = writeln!(
                out,
                "### {}. {} — {}\n",
                run.index,
                run.experiment,
                run.verdict.as_str()
            );
            for reason in &run.deviations {
                let _ = writeln!(out, "- {}", cell(reason));
            }
            let _ = writeln!(out);
        }
    }

    if !report.skipped.is_empty() {
        let _ = writeln!(
            out,
            "\n## Not started\n\nEach would not have fitted what was left of the budget.\n\n| experiment | its turn at | expected at most (s) | left (s) |\n|---|---:|---:|---:|"
        );
        for skipped in &report.skipped {
            let _ = writeln!(
                out,
                "| {} | {} | {:.0} | {:.0} |",
                skipped.experiment,
                clock(skipped.at_s),
                skipped.estimate_s,
                skipped.left_s
            );
        }
    }
    out
}
