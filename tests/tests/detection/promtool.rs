//! promtool, run from the Prometheus image: the unit tests of every alert,
//! `check rules` on both time scales, and every dashboard and runbook query
//! parsed as a recording rule.

use std::fmt::Write as _;

use anyhow::{Result, ensure};
use faultline_tests::promtool::promtool;

use crate::assets::{self, QueryKind};

/// The source rule files, the compressed ones, the unit tests and the
/// regression tests replayed from chaos runs, as files for the container, in
/// the repository's layout.
fn alert_files() -> Result<Vec<(String, String)>> {
    let mut files = Vec::new();
    for dir in ["alerts", "alerts/compressed"] {
        for file in assets::files_in(dir, ".rules.yml")? {
            files.push((format!("/tmp/faultline/{}", file.repo_path), file.text));
        }
    }
    for file in test_files()? {
        files.push((format!("/tmp/faultline/{}", file.repo_path), file.text));
    }
    Ok(files)
}

/// The unit tests (alerts/tests, real time scale) and the regression tests
/// that live chaos runs left (alerts/tests/regressions, against the
/// compressed rules the runs used): a rule change that would have missed
/// one of those faults fails here too.
fn test_files() -> Result<Vec<assets::TextFile>> {
    let mut files = assets::files_in("alerts/tests", ".test.yml")?;
    files.extend(assets::files_in(REGRESSIONS_DIR, ".test.yml")?);
    Ok(files)
}

/// Where the regression tests replayed from chaos journals are kept.
const REGRESSIONS_DIR: &str = "alerts/tests/regressions";

#[tokio::test(flavor = "multi_thread")]
async fn promtool_unit_tests_of_every_alert_pass() -> Result<()> {
    let tests: Vec<String> = test_files()?
        .iter()
        .map(|file| format!("/tmp/faultline/{}", file.repo_path))
        .collect();
    let mut args = vec!["test".to_owned(), "rules".to_owned()];
    args.extend(tests);
    let run = promtool(&args, &alert_files()?).await?;
    ensure!(
        run.exit_code == 0,
        "promtool test rules failed (exit {}):\n{}",
        run.exit_code,
        run.output
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn promtool_checks_every_rule_file_at_both_time_scales() -> Result<()> {
    let mut files = Vec::new();
    let mut args = vec!["check".to_owned(), "rules".to_owned()];
    for dir in ["alerts", "alerts/compressed"] {
        for file in assets::files_in(dir, ".rules.yml")? {
            let path = format!("/tmp/faultline/{}", file.repo_path);
            args.push(path.clone());
            files.push((path, file.text));
        }
    }
    let run = promtool(&args, &files).await?;
    ensure!(
        run.exit_code == 0,
        "promtool check rules failed (exit {}):\n{}",
        run.exit_code,
        run.output
    );
    // Lint warnings (duplicate rules, say) do not fail the check: fail on them too.
    ensure!(
        !run.output.to_lowercase().contains("warning"),
        "promtool check rules warns:\n{}",
        run.output
    );
    Ok(())
}

/// Escapes a string for a double-quoted YAML scalar.
fn yaml_quoted(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn every_dashboard_and_runbook_query_parses() -> Result<()> {
    // Every query becomes a recording rule; promtool parses each expression.
    let mut queries: Vec<(String, String)> = Vec::new();
    for dashboard in assets::dashboards()? {
        for query in dashboard.queries() {
            let expr = assets::concrete(&query.expr, "1m");
            let what = match query.kind {
                QueryKind::Variable => format!("{query} (as {expr})"),
                _ => query.to_string(),
            };
            queries.push((what, expr));
        }
    }
    for runbook in assets::runbooks()? {
        for (n, block) in assets::promql_blocks(&runbook.text).into_iter().enumerate() {
            queries.push((
                format!("{} block {}: {}", runbook.repo_path, n + 1, block.trim()),
                block,
            ));
        }
    }
    let mut yaml = String::from("groups:\n  - name: dashboard-and-runbook-queries\n    rules:\n");
    let mut index = String::new();
    for (n, (what, expr)) in queries.iter().enumerate() {
        writeln!(
            yaml,
            "      - record: faultline_query_{n}\n        expr: {}",
            yaml_quoted(expr.trim())
        )?;
        writeln!(index, "  faultline_query_{n} (rule {}): {what}", n + 1)?;
    }
    let path = "/tmp/faultline/queries.rules.yml".to_owned();
    let run = promtool(
        &["check".to_owned(), "rules".to_owned(), path.clone()],
        &[(path, yaml)],
    )
    .await?;
    ensure!(
        run.exit_code == 0,
        "a dashboard or runbook query does not parse (exit {}):\n{}\nThe rules, by number:\n{index}",
        run.exit_code,
        run.output
    );
    Ok(())
}
