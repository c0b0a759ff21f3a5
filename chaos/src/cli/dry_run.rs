//! `faultline run --dry-run`: the plan of a run, printed; nothing injected,
//! no load started.

use std::fmt::Write as _;
use std::time::Duration;

use faultline_chaos::actions::load::DEFAULT_CUSTOMERS;
use faultline_chaos::environment::redact_passwords;
use faultline_chaos::experiment::duration::render;
use faultline_chaos::experiment::{
    AbortKind, Experiment, FaultKind, FaultSpec, LoadSpec, Must, ProbeKind, ProbeSpec,
};
use faultline_chaos::runner::Plan;
use serde_json::Value;

/// How long resolving one container selector may take.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

/// Who a load acts as.
fn acting_as(load: &LoadSpec) -> String {
    match (&load.subject, load.needs_tokens()) {
        (Some(subject), _) => format!("as {subject:?}, its token on every request"),
        (None, true) => format!(
            "as {} customers with tokens",
            load.customers.unwrap_or(DEFAULT_CUSTOMERS)
        ),
        (None, false) => "anonymous".to_owned(),
    }
}

/// The plan as text: target, faults, probes, limits, alerts. Container
/// selectors are resolved when the platform answers (and said so when not).
pub async fn render_plan(experiment: &Experiment, plan: &Plan) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "dry run of {:?}: nothing is injected, no load starts",
        experiment.title
    );
    let _ = writeln!(out, "target:");
    let settings = plan.environment.redacted().settings();
    if settings.is_empty() {
        let _ = writeln!(out, "  (nothing set)");
    }
    for (key, value) in settings {
        let _ = writeln!(out, "  {key} = {value}");
    }
    if let Some(load) = &experiment.load {
        let rate = load
            .rate
            .map_or("closed loop".to_owned(), |r| format!("{r} req/s"));
        let _ = writeln!(
            out,
            "load: {}, {rate}, concurrency {}, {}, for the whole run",
            resolved(plan, &load.target),
            load.concurrency,
            acting_as(load)
        );
    }
    probes(
        &mut out,
        "steady state (before the faults, and again in recovery)",
        &experiment.steady_state.probes,
    );
    let _ = writeln!(out, "method: {}", render(plan.method_duration));
    let _ = writeln!(out, "  faults:");
    for (spec, planned) in experiment.method.faults.iter().zip(&plan.faults) {
        let until = spec
            .duration
            .map_or("until the method ends".to_owned(), |d| {
                format!("for {}", render(d))
            });
        let _ = writeln!(
            out,
            "    - {:?} [{}] at {} {until}: {}",
            spec.name,
            spec.kind.type_name(),
            render(spec.at),
            describe_fault(spec)
        );
        if matches!(spec.kind, FaultKind::Container(_)) {
            let resolved = tokio::time::timeout(RESOLVE_TIMEOUT, planned.fault.prepare()).await;
            let line = match resolved {
                Ok(Ok(prepared)) => {
                    let names = container_names(&prepared.detail);
                    if names.is_empty() {
                        "resolves to no container now".to_owned()
                    } else {
                        format!("resolves to {}", names.join(", "))
                    }
                }
                Ok(Err(err)) => format!("could not resolve the containers: {err}"),
                Err(_) => format!(
                    "could not resolve the containers within {}",
                    render(RESOLVE_TIMEOUT)
                ),
            };
            let _ = writeln!(out, "      {line}");
        }
    }
    if !experiment.during.is_empty() {
        let _ = writeln!(out, "  during:");
    }
    for (spec, planned) in experiment.during.iter().zip(&plan.during) {
        let schedule = match spec.must {
            Must::Always => format!(
                "every {}, must always hold{}",
                render(planned.every),
                if spec.abort {
                    " (stops the method when not)"
                } else {
                    ""
                }
            ),
            Must::Eventually => format!(
                "every {} from the first injection, must hold once",
                render(planned.every)
            ),
        };
        let _ = writeln!(
            out,
            "    - {:?} [{}] {schedule}: {}",
            spec.name,
            spec.kind.type_name(),
            describe_probe(&spec.kind)
        );
    }
    if !experiment.abort_when.is_empty() {
        let _ = writeln!(out, "  abort when (from the method's start):");
    }
    for (spec, planned) in experiment.abort_when.iter().zip(&plan.abort_when) {
        let limit = match &spec.kind {
            AbortKind::Promql(p) => format!("{} leaves {}", p.query, p.tolerance),
            AbortKind::Sli(p) => format!("{:?} of the load leaves {}", p.metric, p.tolerance),
            AbortKind::Alert(a) => {
                let labels: Vec<String> = a
                    .all_labels()
                    .iter()
                    .map(|(k, v)| format!("{k}={v:?}"))
                    .collect();
                format!(
                    "{}{{{}}} is {:?}",
                    a.alert.as_deref().unwrap_or("any alert"),
                    labels.join(", "),
                    a.state
                )
            }
        };
        let _ = writeln!(
            out,
            "    - {:?} [{}] every {}: {limit}",
            spec.name,
            spec.kind.type_name(),
            render(planned.every)
        );
    }
    if !experiment.rollbacks.is_empty() {
        let _ = writeln!(out, "rollbacks (after every fault is reverted):");
    }
    for action in &experiment.rollbacks {
        let _ = writeln!(out, "  - {:?}", action.name);
    }
    let _ = writeln!(out, "recovery: within {}", render(plan.recovery_deadline));
    probes(&mut out, "recovery probes", &experiment.recovery.probes);
    probes(&mut out, "after (once the load stops)", &experiment.after);
    if !experiment.expected_alerts.is_empty() {
        let _ = writeln!(out, "expected alerts:");
    }
    for alert in &experiment.expected_alerts {
        let _ = writeln!(
            out,
            "  - {} {:?} within {}{}",
            alert.alert,
            alert.state,
            render(alert.within),
            alert
                .before
                .as_ref()
                .map_or(String::new(), |b| format!(", before {b}"))
        );
    }
    if !experiment.allowed_alerts.is_empty() {
        let _ = writeln!(out, "allowed alerts:");
    }
    for alert in &experiment.allowed_alerts {
        let _ = writeln!(out, "  - {}: {}", alert.alert, alert.reason);
    }
    out
}

/// `text` with its `${...}` replaced, as the run will use it (as written
/// when a setting is missing: compiling said so already).
fn resolved(plan: &Plan, text: &str) -> String {
    plan.environment
        .interpolate(text)
        .unwrap_or_else(|_| text.to_owned())
}

fn probes(out: &mut String, title: &str, probes: &[ProbeSpec]) {
    if probes.is_empty() {
        return;
    }
    let _ = writeln!(out, "{title}:");
    for probe in probes {
        let within = probe
            .within
            .map_or("once".to_owned(), |w| format!("within {}", render(w)));
        let _ = writeln!(
            out,
            "  - {:?} [{}] {within}: {}",
            probe.name,
            probe.kind.type_name(),
            describe_probe(&probe.kind)
        );
    }
}

fn describe_fault(spec: &FaultSpec) -> String {
    match &spec.kind {
        FaultKind::Toxic(toxic) => {
            let attributes: Vec<String> = toxic
                .attributes
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            format!(
                "{} toxic {} on proxy {} ({})",
                toxic.toxic,
                toxic.name(),
                toxic.proxy,
                attributes.join(", ")
            )
        }
        FaultKind::ProxyDown(down) => format!("proxy {} down", down.proxy),
        FaultKind::Container(container) => format!(
            "{:?} {}",
            container.action,
            serde_json::to_string(&container.target).unwrap_or_default()
        ),
        FaultKind::Http(http) => format!("{} {}", http.method, http.url),
        FaultKind::Load(load) => format!("extra load on {}, {}", load.target, acting_as(load)),
        FaultKind::Sql(sql) => format!(
            "SQL {:?} on {}, undone by {:?}{}",
            sql.statement,
            redact_passwords(&sql.url),
            sql.undo,
            sql.verify
                .as_ref()
                .map_or(String::new(), |verify| format!(", verified by {verify:?}"))
        ),
    }
}

fn describe_probe(kind: &ProbeKind) -> String {
    match kind {
        ProbeKind::Http(p) => format!("{} {}", p.method, p.url),
        ProbeKind::Promql(p) => format!("{} {}", p.query, p.tolerance),
        ProbeKind::Alert(p) => format!("{} is {:?}", p.alert, p.state),
        ProbeKind::Sli(p) => format!("{:?} {}", p.metric, p.tolerance),
        ProbeKind::Sql(p) => format!("{} {}", p.query, p.tolerance),
        ProbeKind::Invariant(p) => format!("{:?}", p.invariant),
    }
}

/// The container names of a container fault's resolved steps.
fn container_names(detail: &Value) -> Vec<String> {
    let mut names: Vec<String> = detail["steps"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|step| step["target"]["name"].as_str().map(str::to_owned))
        .collect();
    names.dedup();
    names
}
