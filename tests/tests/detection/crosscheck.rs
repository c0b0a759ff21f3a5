//! Cross-checks that need no container: alerts, their unit tests, runbooks and
//! dashboards agree with each other and with the metric catalog.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context, Result, ensure};
use faultline_chaos::evidence::metric_names;
use faultline_telemetry::Catalog;
use serde_yaml_ng::Value;

use crate::assets::{self, QueryKind, RUNBOOK_URL_BASE};

/// Series Prometheus makes itself.
const BUILTIN_SERIES: [&str; 3] = ["up", "ALERTS", "ALERTS_FOR_STATE"];

/// The severities an alert may have: page wakes someone up, ticket is for
/// working hours, info is never routed to a person.
const SEVERITIES: [&str; 3] = ["page", "ticket", "info"];

/// The dashboards that must exist, by uid, and whether they need the service
/// (`job`) variable.
const DASHBOARDS: [(&str, bool); 6] = [
    ("faultline-overview", true),
    ("faultline-service", true),
    ("faultline-dependencies", true),
    ("faultline-slo", false),
    ("faultline-chaos", true),
    ("faultline-postgres", false),
];

/// The sections every runbook has, in order.
const RUNBOOK_SECTIONS: [&str; 5] = [
    "## Meaning",
    "## Impact",
    "## Confirm",
    "## Mitigation",
    "## Reproduce",
];

/// Alerts whose unit tests cannot show a pending alert that never fires, and why.
const NO_PENDING_BLIP: [(&str, &str); 4] = [
    (
        "ErrorBudgetBurnFast",
        "multi-window: a burst too short to spend the budget keeps the long window under its \
         threshold, so the alert is never even pending; the test shows the short window was over",
    ),
    (
        "ErrorBudgetBurnSlow",
        "multi-window, as ErrorBudgetBurnFast",
    ),
    (
        "DatabaseUnavailable",
        "a ratio over 5 minutes: an outage shorter than a minute stays under the threshold",
    ),
    ("Watchdog", "always fires"),
];

#[test]
fn every_metric_name_used_is_in_the_catalog() -> Result<()> {
    let catalog = Catalog::embedded()?;
    let sources = assets::rule_files("alerts")?;
    let recorded = assets::recorded_names(&sources);
    let known = |name: &str| {
        catalog.metric_of_series(name).is_some()
            || recorded.contains(name)
            || BUILTIN_SERIES.contains(&name)
    };
    let mut uses: Vec<(String, String)> = Vec::new();
    for file in &sources {
        for rule in file.rules.rules() {
            uses.push((
                format!("{} rule {}", file.file.repo_path, rule.name()),
                rule.expr.clone(),
            ));
        }
    }
    for dashboard in assets::dashboards()? {
        for query in dashboard.queries() {
            uses.push((query.to_string(), assets::concrete(&query.expr, "1m")));
        }
    }
    for runbook in assets::runbooks()? {
        for block in assets::promql_blocks(&runbook.text) {
            uses.push((runbook.repo_path.clone(), block));
        }
    }
    let mut unknown = Vec::new();
    for (where_, expr) in &uses {
        let names = metric_names(expr);
        for name in names.iter().filter(|name| !known(name)) {
            unknown.push(format!("{name} in {where_}"));
        }
    }
    ensure!(
        unknown.is_empty(),
        "these names are neither in app/telemetry/metrics.toml, nor recorded by a rule in \
         alerts/, nor built into Prometheus:\n  {}",
        unknown.join("\n  ")
    );
    Ok(())
}

#[test]
fn every_catalog_metric_has_a_dashboard_panel() -> Result<()> {
    let catalog = Catalog::embedded()?;
    let mut used = BTreeSet::new();
    for dashboard in assets::dashboards()? {
        for query in dashboard.queries() {
            if query.kind == QueryKind::Panel {
                for name in metric_names(&assets::concrete(&query.expr, "1m")) {
                    if let Some(spec) = catalog.metric_of_series(&name) {
                        used.insert(spec.name.clone());
                    }
                }
            }
        }
    }
    let missing: Vec<&str> = catalog
        .iter()
        .filter(|spec| !spec.optional && !used.contains(&spec.name))
        .map(|spec| spec.name.as_str())
        .collect();
    ensure!(missing.is_empty(), "no dashboard panel shows {missing:?}");
    Ok(())
}

#[test]
fn every_alert_has_a_severity_a_summary_a_description_and_its_runbook_url() -> Result<()> {
    let sources = assets::rule_files("alerts")?;
    let mut problems = Vec::new();
    let mut names = BTreeSet::new();
    for (file, rule) in assets::alerts(&sources) {
        let name = rule.name();
        let mut problem = |what: String| problems.push(format!("{file} {name}: {what}"));
        if !names.insert(name.to_owned()) {
            problem("is defined twice".into());
        }
        if !name.starts_with(|c: char| c.is_ascii_uppercase())
            || !name.chars().all(char::is_alphanumeric)
        {
            problem("is not PascalCase".into());
        }
        match rule.labels.get("severity") {
            Some(severity) if SEVERITIES.contains(&severity.as_str()) => {}
            other => problem(format!("severity {other:?} is not one of {SEVERITIES:?}")),
        }
        if rule.annotations.get("summary").is_none_or(String::is_empty) {
            problem("has no summary".into());
        }
        if !rule
            .annotations
            .get("description")
            .is_some_and(|d| d.contains("$value"))
        {
            problem("has no description with the live value ($value)".into());
        }
        let url = format!("{RUNBOOK_URL_BASE}{name}.md");
        if rule.annotations.get("runbook_url") != Some(&url) {
            problem(format!("runbook_url is not {url}"));
        }
    }
    for file in &sources {
        for rule in file.rules.rules() {
            if let Some(record) = &rule.record {
                ensure!(
                    record.contains(':'),
                    "{}: recording rule {record} is not named level:metric:operations",
                    file.file.repo_path
                );
                ensure!(
                    rule.annotations.is_empty(),
                    "{}: recording rule {record} has annotations",
                    file.file.repo_path
                );
            }
        }
    }
    ensure!(problems.is_empty(), "{}", problems.join("\n"));
    Ok(())
}

#[test]
fn every_alert_has_a_runbook_and_every_runbook_an_alert() -> Result<()> {
    let sources = assets::rule_files("alerts")?;
    let alerts: BTreeSet<String> = assets::alerts(&sources)
        .iter()
        .map(|(_, rule)| rule.name().to_owned())
        .collect();
    let runbooks = assets::runbooks()?;
    let with_runbook: BTreeSet<String> = runbooks
        .iter()
        .map(|file| file.name.trim_end_matches(".md").to_owned())
        .collect();
    let missing: Vec<_> = alerts.difference(&with_runbook).collect();
    let orphans: Vec<_> = with_runbook.difference(&alerts).collect();
    ensure!(
        missing.is_empty(),
        "alerts without runbooks/<Alert>.md: {missing:?}"
    );
    ensure!(orphans.is_empty(), "runbooks of no alert: {orphans:?}");

    let panels: BTreeSet<String> = assets::dashboards()?
        .iter()
        .flat_map(|d| {
            d.panels()
                .into_iter()
                .filter_map(|p| p["title"].as_str().map(str::to_owned))
                .collect::<Vec<_>>()
        })
        .collect();
    let index = assets::files_in("runbooks", "README.md")?
        .pop()
        .context("runbooks/README.md")?;
    let mut problems = Vec::new();
    for runbook in &runbooks {
        let text = &runbook.text;
        let alert = runbook.name.trim_end_matches(".md");
        let mut problem = |what: String| problems.push(format!("{}: {what}", runbook.repo_path));
        if !text.starts_with(&format!("# {alert}")) {
            problem(format!("does not start with `# {alert}`"));
        }
        let mut at = 0;
        for section in RUNBOOK_SECTIONS {
            match text[at..].find(&format!("\n{section}\n")) {
                Some(found) => at += found + section.len(),
                None => problem(format!(
                    "has no `{section}` section (after the previous ones)"
                )),
            }
        }
        if assets::promql_blocks(text).is_empty() {
            problem("has no ```promql block to confirm with".into());
        }
        // Markdown wraps lines: a title may span two.
        let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
        let mentioned: Vec<&str> = flat
            .split("panel \"")
            .skip(1)
            .filter_map(|rest| rest.split('"').next())
            .collect();
        if mentioned.is_empty() {
            problem("names no dashboard panel (write: panel \"<title>\")".into());
        }
        for title in mentioned.iter().filter(|t| !panels.contains(**t)) {
            problem(format!("names panel \"{title}\", which no dashboard has"));
        }
        if !text.contains("chaos/experiments/") || !text.contains(".toml") {
            problem("names no chaos experiment (chaos/experiments/<name>.toml)".into());
        }
        if !index.text.contains(&format!("({alert}.md)")) {
            problem("is not listed in runbooks/README.md".into());
        }
    }
    ensure!(problems.is_empty(), "{}", problems.join("\n"));
    Ok(())
}

/// What the unit tests say about one alert.
#[derive(Debug, Default)]
struct Coverage {
    fires: usize,
    silent: usize,
    pending_but_silent: usize,
}

fn as_str(value: &Value) -> &str {
    value.as_str().unwrap_or_default()
}

#[test]
fn every_alert_has_unit_tests_that_fire_and_stay_silent() -> Result<()> {
    let sources = assets::rule_files("alerts")?;
    let mut defined_in: BTreeMap<String, String> = BTreeMap::new();
    for (file, rule) in assets::alerts(&sources) {
        defined_in.insert(
            rule.name().to_owned(),
            file.trim_start_matches("alerts/").to_owned(),
        );
    }
    let mut coverage: BTreeMap<String, Coverage> = BTreeMap::new();
    let mut problems = Vec::new();
    for file in assets::files_in("alerts/tests", ".test.yml")? {
        let yaml: Value = serde_yaml_ng::from_str(&file.text).context(file.repo_path.clone())?;
        let loaded: BTreeSet<String> = yaml["rule_files"]
            .as_sequence()
            .into_iter()
            .flatten()
            .map(|path| as_str(path).trim_start_matches("../").to_owned())
            .collect();
        for test in yaml["tests"].as_sequence().into_iter().flatten() {
            for case in test["alert_rule_test"].as_sequence().into_iter().flatten() {
                let alert = as_str(&case["alertname"]).to_owned();
                // A test of an alert its rule files do not define passes vacuously.
                if !defined_in.get(&alert).is_some_and(|f| loaded.contains(f)) {
                    problems.push(format!(
                        "{}: test {:?} checks {alert}, which its rule_files do not define",
                        file.repo_path,
                        as_str(&test["name"])
                    ));
                }
                let entry = coverage.entry(alert).or_default();
                match case["exp_alerts"].as_sequence() {
                    Some(expected) if !expected.is_empty() => entry.fires += 1,
                    _ => entry.silent += 1,
                }
            }
            for case in test["promql_expr_test"].as_sequence().into_iter().flatten() {
                for sample in case["exp_samples"].as_sequence().into_iter().flatten() {
                    let labels = as_str(&sample["labels"]);
                    if labels.starts_with("ALERTS{")
                        && labels.contains("alertstate=\"pending\"")
                        && let Some(name) = labels
                            .split("alertname=\"")
                            .nth(1)
                            .and_then(|rest| rest.split('"').next())
                    {
                        coverage
                            .entry(name.to_owned())
                            .or_default()
                            .pending_but_silent += 1;
                    }
                }
            }
        }
    }
    for alert in defined_in.keys() {
        let c = coverage.get(alert);
        let exempt = NO_PENDING_BLIP.iter().any(|(name, _)| name == alert);
        if c.is_none_or(|c| c.fires == 0) {
            problems.push(format!("{alert}: no unit test where it fires"));
        }
        if alert != "Watchdog" && c.is_none_or(|c| c.silent == 0) {
            problems.push(format!("{alert}: no unit test where it stays silent"));
        }
        if !exempt && c.is_none_or(|c| c.pending_but_silent == 0) {
            problems.push(format!(
                "{alert}: no unit test of a blip shorter than its `for` (a promql_expr_test \
                 expecting ALERTS{{alertname=\"{alert}\", alertstate=\"pending\", ...}} in a \
                 test where it never fires)"
            ));
        }
    }
    ensure!(problems.is_empty(), "{}", problems.join("\n"));
    Ok(())
}

#[test]
fn dashboards_have_stable_uids_a_datasource_variable_and_described_panels() -> Result<()> {
    let dashboards = assets::dashboards()?;
    let uids: Vec<&str> = dashboards.iter().map(assets::Dashboard::uid).collect();
    let unique: BTreeSet<&str> = uids.iter().copied().collect();
    ensure!(unique.len() == uids.len(), "duplicate uids: {uids:?}");
    let datasource = serde_json::json!({"type": "prometheus", "uid": "${datasource}"});
    let mut problems = Vec::new();
    for (uid, needs_job) in DASHBOARDS {
        let Some(dashboard) = dashboards.iter().find(|d| d.uid() == uid) else {
            problems.push(format!("no dashboard with uid {uid}"));
            continue;
        };
        let json = &dashboard.json;
        let mut problem =
            |what: String| problems.push(format!("{}: {what}", dashboard.file.repo_path));
        if json["schemaVersion"].as_u64().is_none_or(|v| v < 39) {
            problem("schemaVersion is not 39 or later".into());
        }
        if !json["id"].is_null() {
            problem("id must be null, so that importing never overwrites by id".into());
        }
        if !json["title"]
            .as_str()
            .is_some_and(|t| t.starts_with("faultline / "))
        {
            problem("title does not start with `faultline / `".into());
        }
        let variables = json["templating"]["list"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let variable = |name: &str| variables.iter().find(|v| v["name"] == name).cloned();
        match variable("datasource") {
            Some(v) if v["type"] == "datasource" && v["query"] == "prometheus" => {}
            _ => {
                problem("has no `datasource` variable of type datasource, query prometheus".into());
            }
        }
        if needs_job && variable("job").is_none() {
            problem("has no `job` (service) variable".into());
        }
        let mut ids = BTreeSet::new();
        for panel in dashboard.panels() {
            let title = panel["title"].as_str().unwrap_or_default();
            if !ids.insert(panel["id"].as_u64()) {
                problem(format!("panel {title:?} reuses id {}", panel["id"]));
            }
            if panel["type"] == "row" {
                continue;
            }
            if title.is_empty() || panel["description"].as_str().is_none_or(str::is_empty) {
                problem(format!("panel {title:?} has no title or no description"));
            }
            if panel["datasource"] != datasource {
                problem(format!("panel {title:?} does not use ${{datasource}}"));
            }
            let targets = panel["targets"].as_array().cloned().unwrap_or_default();
            if targets.is_empty() {
                problem(format!("panel {title:?} has no query"));
            }
            let mut refs = BTreeSet::new();
            for target in &targets {
                if target["datasource"] != datasource || target["expr"].as_str().is_none() {
                    problem(format!(
                        "panel {title:?} has a target without expr or ${{datasource}}"
                    ));
                }
                if !refs.insert(target["refId"].as_str().unwrap_or_default().to_owned()) {
                    problem(format!("panel {title:?} repeats a refId"));
                }
            }
        }
    }
    let chaos = dashboards.iter().find(|d| d.uid() == "faultline-chaos");
    let annotates_faults = chaos.is_some_and(|d| {
        d.queries()
            .iter()
            .any(|q| q.kind == QueryKind::Annotation && q.expr.contains("fault_active"))
    });
    ensure!(
        annotates_faults,
        "the chaos dashboard must annotate fault_active changes"
    );
    let overview = dashboards.iter().find(|d| d.uid() == "faultline-overview");
    let shows =
        |what: &str| overview.is_some_and(|d| d.queries().iter().any(|q| q.expr.contains(what)));
    ensure!(
        shows("ALERTS") && shows("slo:") && shows("http_server_request_duration_seconds"),
        "the overview must show active alerts, SLO status and RED per service"
    );
    ensure!(problems.is_empty(), "{}", problems.join("\n"));
    Ok(())
}

#[test]
fn the_alerts_readme_lists_every_alert() -> Result<()> {
    let sources = assets::rule_files("alerts")?;
    let readme = assets::files_in("alerts", "README.md")?
        .pop()
        .context("alerts/README.md")?;
    let missing: Vec<String> = assets::alerts(&sources)
        .iter()
        .map(|(_, rule)| rule.name().to_owned())
        .filter(|name| !readme.text.contains(&format!("| {name} |")))
        .collect();
    ensure!(
        missing.is_empty(),
        "alerts/README.md has no table row for {missing:?}"
    );
    Ok(())
}

/// The repository paths a Markdown text names that start with `prefix` and
/// end with `suffix` (`chaos/experiments/` … `.toml`), `../` stripped.
fn named_paths(text: &str, prefix: &str, suffix: &str) -> BTreeSet<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || "_./-".contains(c)))
        .map(|token| token.trim_start_matches("../").trim_start_matches("./"))
        .filter(|token| token.starts_with(prefix) && token.ends_with(suffix))
        .map(str::to_owned)
        .collect()
}

#[test]
fn named_paths_are_found_in_code_spans_and_links() {
    let text = "Run `faultline run chaos/experiments/kill-replica.toml`, see\n\
                [the test](../tests/tests/detection/routing.rs) and chaos/experiments/<name>.toml.";
    assert_eq!(
        named_paths(text, "chaos/experiments/", ".toml"),
        BTreeSet::from(["chaos/experiments/kill-replica.toml".to_owned()])
    );
    assert_eq!(
        named_paths(text, "tests/", ".rs"),
        BTreeSet::from(["tests/tests/detection/routing.rs".to_owned()])
    );
}

#[test]
fn every_experiment_a_runbook_names_exists() -> Result<()> {
    let root = assets::repo_root();
    let mut missing = Vec::new();
    for runbook in assets::runbooks()? {
        for path in named_paths(&runbook.text, "chaos/experiments/", ".toml") {
            if !root.join(&path).is_file() {
                missing.push(format!("{} names {path}", runbook.repo_path));
            }
        }
    }
    ensure!(
        missing.is_empty(),
        "runbooks name experiments that do not exist:\n  {}",
        missing.join("\n  ")
    );
    Ok(())
}

/// The alerts each experiment asserts `firing` (`[[expected_alerts]]`, whose
/// `state` defaults to firing), by alert, with the files asserting them.
fn asserted_firing() -> Result<BTreeMap<String, BTreeSet<String>>> {
    let mut asserted: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in assets::files_in("chaos/experiments", ".toml")? {
        let experiment: toml::Table = file
            .text
            .parse()
            .with_context(|| format!("{} is not TOML", file.repo_path))?;
        let expected = match experiment.get("expected_alerts") {
            None => continue,
            Some(toml::Value::Array(expected)) => expected,
            Some(_) => anyhow::bail!("{}: expected_alerts is not an array", file.repo_path),
        };
        for (index, expect) in expected.iter().enumerate() {
            let field = |name: &str| expect.get(name).and_then(toml::Value::as_str);
            let alert = field("alert").with_context(|| {
                format!(
                    "{}: expected_alerts[{index}].alert is missing",
                    file.repo_path
                )
            })?;
            if field("state").unwrap_or("firing") == "firing" {
                asserted
                    .entry(alert.to_owned())
                    .or_default()
                    .insert(file.repo_path.clone());
            }
        }
    }
    Ok(asserted)
}

#[test]
fn every_alert_is_proven_firing_by_an_experiment() -> Result<()> {
    let sources = assets::rule_files("alerts")?;
    let asserted = asserted_firing()?;
    let unproven: Vec<&str> = assets::alerts(&sources)
        .iter()
        .map(|(_, rule)| rule.name())
        .filter(|name| *name != "Watchdog" && !asserted.contains_key(*name))
        .collect();
    ensure!(
        unproven.is_empty(),
        "every alert but the Watchdog must be proven live by a chaos experiment with \
         [[expected_alerts]] alert = \"<Alert>\", state = \"firing\". Unproven: {unproven:?}"
    );
    Ok(())
}

/// Every experiment runs in cargo test: the container tests of
/// tests/tests/e2e/chaos.rs name each file of chaos/experiments/.
#[test]
fn every_experiment_runs_in_a_container_test() -> Result<()> {
    let tests = std::fs::read_to_string(assets::repo_root().join("tests/tests/e2e/chaos.rs"))
        .context("read tests/tests/e2e/chaos.rs")?;
    let missing: Vec<String> = assets::files_in("chaos/experiments", ".toml")?
        .into_iter()
        .filter_map(|file| {
            let name = file.name.trim_end_matches(".toml").to_owned();
            (!tests.contains(&format!("\"{name}\""))).then_some(name)
        })
        .collect();
    ensure!(
        missing.is_empty(),
        "tests/tests/e2e/chaos.rs runs no experiment named {missing:?}"
    );
    Ok(())
}

/// The compressed rules run with a 1 s scrape and a 1 s evaluation (the
/// harness and the demo): a sample reaches a rule at most this late.
const SCRAPE_AND_EVALUATION: std::time::Duration = std::time::Duration::from_secs(2);

/// An experiment's deadline for an alert to fire can be met: it is at least
/// the rule's compressed `for`, plus a scrape and an evaluation. (How much
/// longer depends on the rule's windows and the fault; the experiments'
/// comments say.) A deadline shorter than that would fail a correct rule.
#[test]
fn every_firing_deadline_allows_for_the_rules_for_a_scrape_and_an_evaluation() -> Result<()> {
    let compressed = assets::rule_files("alerts/compressed")?;
    let holds: BTreeMap<&str, std::time::Duration> = assets::alerts(&compressed)
        .into_iter()
        .map(|(_, rule)| {
            let hold = rule
                .for_
                .as_deref()
                .map(humantime::parse_duration)
                .transpose()
                .with_context(|| format!("{}: for", rule.name()))?
                .unwrap_or_default();
            Ok((rule.name(), hold))
        })
        .collect::<Result<_>>()?;
    let mut short = Vec::new();
    for file in assets::files_in("chaos/experiments", ".toml")? {
        let experiment: toml::Table = file
            .text
            .parse()
            .with_context(|| format!("{} is not TOML", file.repo_path))?;
        let Some(toml::Value::Array(expected)) = experiment.get("expected_alerts") else {
            continue;
        };
        for expect in expected {
            let field = |name: &str| expect.get(name).and_then(toml::Value::as_str);
            let (Some(alert), Some(within)) = (field("alert"), field("within")) else {
                continue;
            };
            if field("state").unwrap_or("firing") == "resolved" {
                continue;
            }
            let within = humantime::parse_duration(within)
                .with_context(|| format!("{}: {alert} within", file.repo_path))?;
            let Some(hold) = holds.get(alert) else {
                short.push(format!("{}: {alert} is not a rule", file.repo_path));
                continue;
            };
            let least = *hold + SCRAPE_AND_EVALUATION;
            if within < least {
                short.push(format!(
                    "{}: {alert} within {within:?}, but its compressed `for` is {hold:?}: at least {least:?}",
                    file.repo_path
                ));
            }
        }
    }
    ensure!(short.is_empty(), "{}", short.join("\n"));
    Ok(())
}
