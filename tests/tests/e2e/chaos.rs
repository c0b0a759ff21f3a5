//! The chaos experiments of chaos/experiments/, run by the chaos engine
//! against the real shop in containers, with Prometheus evaluating the
//! compressed alert rules. Each experiment must pass; a variant with the
//! resilience turned off must fail, and its journal must say why.

use std::path::{Path, PathBuf};

use anyhow::Context;
use faultline_chaos::journal::ActivityStatus;
use faultline_chaos::runner::{Bindings, run_experiment};
use faultline_chaos::{Environment, Journal, Verdict};
use faultline_tests::shop_stack::{ShopStack, StackOptions};
use faultline_tests::stack::{REPLICA_LABEL, SERVICE_LABEL};

use crate::{FOUNDATION_IMAGES, REDIS_IMAGES, WATCHER_IMAGES, preflight};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from(".."), Path::to_path_buf)
}

/// Points an experiment at the test's stack instead of the compose demo.
fn environment(stack: &ShopStack) -> anyhow::Result<Environment> {
    let mut env = Environment::default();
    env.set("gateway", stack.gateway_url())?;
    env.set("database", &stack.database.url)?;
    env.set("keys", &stack.keys.path().display().to_string())?;
    if let Some(prometheus) = &stack.prometheus {
        env.set("prometheus", prometheus.client.base_url())?;
    }
    if let Some(proxy) = &stack.proxy {
        env.set("proxy_api", &proxy.api_url)?;
        env.set("proxy_api_token", &proxy.api_token)?;
    }
    if let Some(token) = &stack.fault_admin_token {
        env.set("fault_admin_token", token)?;
    }
    if let Some(replica) = stack.replica_url() {
        env.set("vars.replica_database", replica)?;
    }
    // Replica 1 of each role, as the compose demo publishes them.
    let first_replicas = [
        ("catalog", Some(&stack.catalog)),
        ("orders", stack.orders.first()),
        ("worker", stack.workers.first()),
    ];
    for (service, shop) in first_replicas {
        if let Some(url) = shop.and_then(|shop| shop.fault_admin_url.as_ref()) {
            env.set(&format!("fault_admin.{service}"), url)?;
        }
    }
    // Containers of this test only, picked by the same labels as in compose.
    env.set("docker.project", "")?;
    env.set("docker.labels.org.faultline.network", stack.network.name())?;
    env.set("docker.service_label", SERVICE_LABEL)?;
    env.set("docker.replica_label", REPLICA_LABEL)?;
    Ok(env)
}

/// Where the reports of the runs that prove detection go; the coverage table
/// is made of these.
const REPORTS: &str = "target/chaos-reports";
/// Where negative controls (runs that must fail) report: not in the table.
const NEGATIVE_REPORTS: &str = "target/chaos-negative-controls";

/// Runs `chaos/experiments/<name>.toml` and writes its report under
/// `target/chaos-reports/<test>/`.
async fn run(name: &str, test: &str, stack: &ShopStack) -> anyhow::Result<Journal> {
    run_into(REPORTS, name, test, stack).await
}

/// Like [`run`], reporting under `base/<test>/`.
async fn run_into(
    base: &str,
    name: &str,
    test: &str,
    stack: &ShopStack,
) -> anyhow::Result<Journal> {
    let path = repo_root()
        .join("chaos/experiments")
        .join(format!("{name}.toml"));
    let bindings = Bindings {
        environment: environment(stack)?,
        ..Bindings::default()
    };
    let journal = run_experiment(path, bindings)
        .await
        .with_context(|| format!("experiment {name} could not start"))?;
    let all_reports = repo_root().join(base);
    let reports = all_reports.join(test);
    std::fs::create_dir_all(&reports)?;
    journal.save(&reports.join(format!("{name}.journal.json")))?;
    let files = faultline_chaos::report::write(&journal, &reports, name)?;
    if base == REPORTS {
        write_coverage(&all_reports)?;
    }
    eprintln!(
        "{name}: {:?} in {:.0} s; reasons: {:?}; report: {}",
        journal.verdict,
        journal.duration,
        journal.reasons,
        files.png.display()
    );
    for expectation in &journal.expected_alerts {
        eprintln!(
            "  {} {}: met {}, detected after {:?} s",
            expectation.alert, expectation.state, expectation.met, expectation.detection_time_s
        );
    }
    for unexpected in &journal.unexpected_alerts {
        eprintln!(
            "  unexpected: {} {:?} at {:.1} s",
            unexpected.alert, unexpected.labels, unexpected.first_firing_s
        );
    }
    Ok(journal)
}

/// The detection coverage table of every journal the container tests have
/// written so far, as `target/chaos-reports/coverage.md`. Each chaos test
/// rewrites it after its run, so the last one to finish leaves the table of
/// the whole suite. Written to a temporary file, then renamed: a reader
/// never sees half a table.
fn write_coverage(reports: &Path) -> anyhow::Result<()> {
    let coverage = faultline_chaos::coverage::Coverage::from_dir(reports)?;
    let temporary = reports.join(format!(".coverage-{}.md", std::process::id()));
    std::fs::write(&temporary, coverage.render_markdown())?;
    std::fs::rename(&temporary, reports.join("coverage.md"))?;
    Ok(())
}

fn assert_passed(journal: &Journal) {
    assert_eq!(
        journal.verdict,
        Verdict::Passed,
        "the experiment failed: {:#?}",
        journal.reasons
    );
    assert!(
        journal.expected_alerts.iter().all(|e| e.met),
        "{:#?}",
        journal.expected_alerts
    );
}

/// Starts a stack with Prometheus and `options`, runs
/// `chaos/experiments/<name>.toml` against it, and requires it to pass with
/// every expected alert seen.
async fn passes(name: &str, options: StackOptions) -> anyhow::Result<()> {
    preflight(FOUNDATION_IMAGES).await?;
    let test = name.replace('-', "_");
    let stack = ShopStack::start(
        &format!("chaos_{test}"),
        StackOptions {
            prometheus: true,
            ..options
        },
    )
    .await?;
    let journal = run(name, &test, &stack).await?;
    assert_passed(&journal);
    replays_offline(&journal, &test, name).await
}

/// Where the compressed rules and a regression test sit in the promtool
/// container: the same layout as the repository, so a generated test can be
/// copied to alerts/tests/regressions/ as it is.
const PROMTOOL_ROOT: &str = "/tmp/faultline/alerts";

/// The live proof as an offline regression test: the series the run recorded
/// behind its expected alerts become a promtool test of the compressed rules
/// (`faultline regress`), which must pass too. A rule change that would have
/// missed this fault then fails `promtool test rules` as well. The test is
/// kept beside the report as `<name>.regression.test.yml`.
async fn replays_offline(journal: &Journal, test: &str, name: &str) -> anyhow::Result<()> {
    let dir = repo_root().join("alerts/compressed");
    let mut files = Vec::new();
    let mut rule_files = Vec::new();
    for entry in std::fs::read_dir(&dir)? {
        let path = entry?.path();
        let Some(file) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if file.ends_with(".rules.yml") {
            rule_files.push(format!("../../compressed/{file}"));
            files.push((
                format!("{PROMTOOL_ROOT}/compressed/{file}"),
                std::fs::read_to_string(&path)?,
            ));
        }
    }
    rule_files.sort();
    let yaml = faultline_chaos::evidence::promtool_test(journal, &rule_files)
        .with_context(|| format!("no regression test from the journal of {name}"))?;
    let saved = repo_root()
        .join(REPORTS)
        .join(test)
        .join(format!("{name}.regression.test.yml"));
    std::fs::write(&saved, &yaml)?;
    let in_container = format!("{PROMTOOL_ROOT}/tests/regressions/{name}.test.yml");
    files.push((in_container.clone(), yaml));
    let run = faultline_tests::promtool::promtool(
        &["test".to_owned(), "rules".to_owned(), in_container],
        &files,
    )
    .await?;
    anyhow::ensure!(
        run.exit_code == 0,
        "the run's series, replayed by promtool, do not fire its alerts ({}):\n{}",
        saved.display(),
        run.output
    );
    Ok(())
}

/// The experiments of the short game day: both need three orders replicas.
const GAME_DAY: [&str; 2] = ["kill-replica", "replica-partitioned"];

/// A short game day on one stack with three orders replicas: kill-replica
/// and replica-partitioned in a seeded order, with a cool-down between them,
/// within a budget that fits both and not a third. Each run must pass and
/// replay offline, and the combined report must name both. Then, on the same
/// stack, a safeguard stops an experiment that would kill a second replica:
/// the second kill is never made, the first is reverted at once, and the
/// verdict is aborted.
#[tokio::test(flavor = "multi_thread")]
async fn a_short_game_day_then_a_safeguard_stops_a_run() -> anyhow::Result<()> {
    preflight(FOUNDATION_IMAGES).await?;
    let stack = ShopStack::start(
        "chaos_game_day",
        StackOptions {
            prometheus: true,
            orders_replicas: 3,
            ..StackOptions::default()
        },
    )
    .await?;
    let environment = environment(&stack)?;
    let test = "game_day";
    let report_dir = repo_root().join(REPORTS).join(test);
    let day = faultline_chaos::gameday::GameDay {
        seed: 2026,
        // Each run is expected to take at most 195 s (warm-up, steady state,
        // method, recovery, after) and takes 55 to 75 s. The second starts
        // if 195 s fit after the first and a cool-down (by 85 s at most);
        // a third, after two runs, does not (from 85 s on).
        duration: std::time::Duration::from_secs(290),
        cooldown: std::time::Duration::from_secs(10),
        experiments: GAME_DAY
            .iter()
            .map(|name| repo_root().join(format!("chaos/experiments/{name}.toml")))
            .collect(),
        report_dir: report_dir.clone(),
        ..faultline_chaos::gameday::GameDay::default()
    };
    let report = faultline_chaos::gameday::run(&day, |_| Bindings {
        environment: environment.clone(),
        ..Bindings::default()
    })
    .await?;
    write_coverage(&repo_root().join(REPORTS))?;
    let ran: Vec<String> = report.runs.iter().map(|r| r.experiment.clone()).collect();
    let mut expected: Vec<String> = GAME_DAY.iter().map(|n| (*n).to_owned()).collect();
    let mut sorted = ran.clone();
    sorted.sort();
    expected.sort();
    assert_eq!(sorted, expected, "each experiment ran once: {ran:?}");
    assert_eq!(
        report.order[..2],
        ran[..],
        "the runs followed the seeded order"
    );
    let gap = report.runs[1].start_s - report.runs[0].end_s;
    assert!(
        gap >= 10.0 - 0.5,
        "a cool-down between the runs: {gap:.1} s"
    );
    let markdown = std::fs::read_to_string(report_dir.join("gameday.md"))?;
    for run in &report.runs {
        assert!(markdown.contains(&run.experiment), "{markdown}");
        let journal_path = run
            .journal
            .as_ref()
            .with_context(|| format!("no journal for {}", run.experiment))?;
        // Relative to the day's report directory.
        let journal = Journal::load(&report_dir.join(journal_path))?;
        assert_passed(&journal);
        replays_offline(&journal, test, &run.experiment).await?;
    }
    for picture in ["gameday.svg", "gameday.png"] {
        assert!(report_dir.join(picture).is_file(), "{picture} written");
    }

    // A safeguard, on the same stack.
    let path = repo_root().join("tests/experiments/safeguard-stops-the-second-kill.toml");
    let bindings = Bindings {
        environment,
        ..Bindings::default()
    };
    let journal = run_experiment(path, bindings).await?;
    let reports = repo_root().join(NEGATIVE_REPORTS).join("safeguard");
    std::fs::create_dir_all(&reports)?;
    journal.save(&reports.join("safeguard.journal.json"))?;
    assert_eq!(journal.verdict, Verdict::Aborted, "{:#?}", journal.reasons);
    assert!(
        journal
            .reasons
            .iter()
            .any(|r| r.contains("fewer than three healthy orders endpoints")),
        "the reason names the limit: {:#?}",
        journal.reasons
    );
    let step = |fault: &str, step: &str| {
        journal
            .run
            .iter()
            .find(|a| a.activity.name == fault && a.activity.step == step)
            .map(|a| a.end_s)
    };
    assert_eq!(
        step("kill orders replica 3", "inject"),
        None,
        "the second kill is never made"
    );
    let injected = step("kill orders replica 2", "inject").context("the first kill")?;
    let reverted = step("kill orders replica 2", "revert").context("its revert")?;
    assert!(
        reverted - injected < 20.0,
        "the first kill is reverted at once, not after its 30 s: {:.1} s",
        reverted - injected
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_payments_latency_experiment_passes() -> anyhow::Result<()> {
    let options = StackOptions {
        payments_through_proxy: true,
        ..StackOptions::default()
    };
    passes("payments-latency", options).await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_catalog_down_experiment_passes() -> anyhow::Result<()> {
    passes("catalog-down", StackOptions::default()).await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_worker_stopped_experiment_passes() -> anyhow::Result<()> {
    passes("worker-stopped", StackOptions::default()).await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_db_connections_held_experiment_passes() -> anyhow::Result<()> {
    let options = StackOptions {
        fault_admin: true,
        ..StackOptions::default()
    };
    passes("db-connections-held", options).await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_memory_leak_experiment_passes() -> anyhow::Result<()> {
    let options = StackOptions {
        fault_admin: true,
        ..StackOptions::default()
    };
    passes("memory-leak", options).await
}

/// The harness can tell good from bad: with the payment step allowed 5 s
/// instead of 300 ms, checkouts wait for the slow provider, and the
/// experiment must fail on its checkout-latency probe.
#[tokio::test(flavor = "multi_thread")]
async fn the_payments_latency_experiment_fails_with_resilience_turned_off() -> anyhow::Result<()> {
    preflight(FOUNDATION_IMAGES).await?;
    let stack = ShopStack::start(
        "chaos_payments_latency_broken",
        StackOptions {
            payments_through_proxy: true,
            prometheus: true,
            orders_env: vec![("FAULTLINE_PAYMENT_TIMEOUT", "5s".into())],
            ..StackOptions::default()
        },
    )
    .await?;
    let journal = run_into(
        NEGATIVE_REPORTS,
        "payments-latency",
        "payments_latency_broken",
        &stack,
    )
    .await?;
    assert_eq!(journal.verdict, Verdict::Failed, "{:#?}", journal.reasons);
    assert!(journal.deviated);
    // It must fail for the right reason: the checkout-latency probe measured
    // a p99 over its 500 ms bound (not "no data", not another probe).
    let probe = "checkout p99 under 500 ms";
    let failed = journal
        .steady_states
        .during
        .iter()
        .find(|a| a.activity.name == probe && a.status == ActivityStatus::Failed)
        .with_context(|| format!("the probe {probe:?} never failed: {:#?}", journal.reasons))?;
    let measured = failed.output["value"]
        .as_f64()
        .with_context(|| format!("no measured value in {:?}", failed.output))?;
    assert!(
        measured > 500.0,
        "the probe failed, but its p99 was {measured} ms: {failed:#?}"
    );
    assert!(
        journal
            .reasons
            .iter()
            .any(|r| r.contains(probe) && !r.contains("no data")),
        "the verdict names the probe: {:#?}",
        journal.reasons
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_postgres_restart_experiment_passes() -> anyhow::Result<()> {
    let options = StackOptions {
        postgres_fixed_port: true,
        ..StackOptions::default()
    };
    passes("postgres-restart", options).await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_connection_resets_experiment_passes() -> anyhow::Result<()> {
    let options = StackOptions {
        orders_through_proxy: true,
        // Every call takes its own chance of a reset (see the experiment).
        gateway_env: vec![("FAULTLINE_UPSTREAM_KEEPALIVE", "off".into())],
        ..StackOptions::default()
    };
    passes("connection-resets", options).await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_load_surge_experiment_passes() -> anyhow::Result<()> {
    passes("load-surge", StackOptions::default()).await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_credential_stuffing_experiment_passes() -> anyhow::Result<()> {
    passes("credential-stuffing", StackOptions::default()).await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_latency_ramp_experiment_passes_with_the_leading_alert_first() -> anyhow::Result<()> {
    preflight(FOUNDATION_IMAGES).await?;
    let stack = ShopStack::start(
        "chaos_latency_ramp",
        StackOptions {
            catalog_through_proxy: true,
            // A cached read never crosses the slow link.
            gateway_env: vec![("FAULTLINE_CATALOG_CACHE_TTL", "0s".into())],
            prometheus: true,
            ..StackOptions::default()
        },
    )
    .await?;
    let journal = run("latency-ramp", "latency_ramp", &stack).await?;
    assert_passed(&journal);
    let leading = journal
        .expected_alerts
        .iter()
        .find(|e| e.alert == "LatencyRising" && e.state == "firing")
        .context("LatencyRising is expected")?;
    let lead = leading
        .lead_time_s
        .context("the journal records the lead time")?;
    assert!(lead > 0.0, "LatencyRising led by {lead} s");
    eprintln!("LatencyRising fired {lead:.1} s before ErrorBudgetBurnFast");
    replays_offline(&journal, "latency_ramp", "latency-ramp").await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_otlp_receiver_down_experiment_passes() -> anyhow::Result<()> {
    let options = StackOptions {
        otlp_through_proxy: true,
        ..StackOptions::default()
    };
    passes("otlp-receiver-down", options).await
}

/// The watchers watched: a broken rule, a failed reload and an unreachable
/// receiver, one after the other against one stack with Alertmanager (each
/// experiment waits for its alert to resolve, so the next starts quiet).
/// Every experiment runs even when one fails; the test fails with all their
/// reasons.
#[tokio::test(flavor = "multi_thread")]
async fn the_watchers_experiments_pass() -> anyhow::Result<()> {
    preflight(WATCHER_IMAGES).await?;
    let stack = ShopStack::start(
        "chaos_watchers",
        StackOptions {
            prometheus: true,
            alertmanager: true,
            ..StackOptions::default()
        },
    )
    .await?;
    let mut failures = Vec::new();
    for name in [
        "prometheus-rule-failures",
        "prometheus-reload-failed",
        "alertmanager-notifications-failing",
    ] {
        let test = name.replace('-', "_");
        let outcome = async {
            let journal = run(name, &test, &stack).await?;
            anyhow::ensure!(
                journal.verdict == Verdict::Passed && journal.expected_alerts.iter().all(|e| e.met),
                "{name} failed: {:#?}\n{:#?}",
                journal.reasons,
                journal.expected_alerts
            );
            replays_offline(&journal, &test, name).await
        }
        .await;
        if let Err(err) = outcome {
            failures.push(format!("{err:#}"));
        }
    }
    // Nothing is lost: the notification of AlertmanagerNotificationsFailing,
    // which failed while the receivers were gone, reaches the ticket receiver
    // once they are back.
    let webhooks = stack.webhooks.as_ref().context("the stack has webhooks")?;
    let delivered = faultline_tests::eventually(
        "AlertmanagerNotificationsFailing at the ticket receiver",
        std::time::Duration::from_secs(30),
        || async {
            let receivers = webhooks.receivers_of("AlertmanagerNotificationsFailing", "firing");
            anyhow::ensure!(
                receivers == ["ticket"],
                "delivered to {receivers:?}; deliveries: {:?}",
                webhooks.deliveries().len()
            );
            Ok(())
        },
    )
    .await;
    if let Err(err) = delivered {
        failures.push(format!("{err:#}"));
    }
    anyhow::ensure!(failures.is_empty(), "{}", failures.join("\n\n"));
    Ok(())
}

/// The negative control of precision: the shop under its usual load for
/// three compressed hours (three minutes), with no fault at all. Every rule
/// is evaluated the whole time, and nothing but the Watchdog may fire.
#[tokio::test(flavor = "multi_thread")]
async fn a_quiet_baseline_fires_nothing_but_the_watchdog() -> anyhow::Result<()> {
    preflight(FOUNDATION_IMAGES).await?;
    let stack = ShopStack::start(
        "chaos_quiet_baseline",
        StackOptions {
            orders_replicas: 2,
            prometheus: true,
            ..StackOptions::default()
        },
    )
    .await?;
    let experiment = faultline_chaos::Experiment::parse(QUIET_BASELINE, "quiet-baseline.toml")?;
    let bindings = Bindings {
        environment: environment(&stack)?,
        ..Bindings::default()
    };
    let journal = run_experiment(experiment, bindings).await?;
    let reports = repo_root().join(REPORTS).join("quiet_baseline");
    journal.save(&reports.join("quiet-baseline.journal.json"))?;
    faultline_chaos::report::write(&journal, &reports, "quiet-baseline")?;
    let fired: Vec<String> = journal
        .alerts_seen
        .iter()
        .filter(|a| a.alert != "Watchdog" && a.transitions.iter().any(|t| t.state == "firing"))
        .map(|a| format!("{} {:?}", a.alert, a.labels))
        .collect();
    assert!(
        fired.is_empty(),
        "alerts fired on a healthy shop: {fired:#?}"
    );
    let watchdog = journal
        .alerts_seen
        .iter()
        .any(|a| a.alert == "Watchdog" && a.transitions.iter().any(|t| t.state == "firing"));
    assert!(watchdog, "the Watchdog fires: rules are evaluated");
    assert_passed(&journal);
    let requests = journal
        .load
        .as_ref()
        .and_then(|l| l.totals.as_ref())
        .map_or(0, |t| t.count);
    assert!(requests > 5_000, "the load ran: {requests} requests");
    Ok(())
}

/// Three compressed hours of the usual traffic mix, and nothing else. The
/// one "fault" is a harmless request, so the run has a method like any other.
const QUIET_BASELINE: &str = r#"
title = "A quiet baseline: three compressed hours, no fault"
tags = ["baseline", "precision"]

[target]
gateway = "http://127.0.0.1:8080"
prometheus = "http://127.0.0.1:9090"
database = "postgres://postgres@127.0.0.1:5432/postgres"

[settings]
warmup = "5s"

[load]
rate = 40
concurrency = 32
timeout = "2s"

[steady_state]
[[steady_state.probes]]
name = "product list answers"
type = "http"
url = "${gateway}/api/products"
within = "30s"

[method]
duration = "180s"

[[method.faults]]
name = "nothing: a read of the product list"
type = "http"
method = "GET"
url = "${gateway}/api/products"
at = "1s"

[[during]]
name = "no request fails"
type = "sli"
metric = "errors"
over = "phase"
tolerance = { equals = 0 }
every = "5s"

[[after]]
name = "acknowledged orders exist exactly once"
type = "invariant"
invariant = "acknowledged_orders_exist_once"
min_acknowledged = 300
"#;

/// The per-client quota of the Redis stack, over both gateway replicas.
const SHARED_RATE: f64 = 40.0;
const SHARED_BURST: f64 = 20.0;

/// One stack for everything Redis: two gateway replicas sharing Redis (their
/// link to it through the fault proxy), with a quota of 40 requests a second
/// and a burst of 20 per client, and shared answers kept 2 minutes (so that
/// only invalidation can make one go sooner). On it, in turn: the
/// redis-latency and redis-down experiments (each must pass, with its alert,
/// and replay offline), then one client flooding both gateways is held to
/// the global rate, and a product one gateway cached is served by the other
/// without a catalog call, until a stock change drops it.
#[tokio::test(flavor = "multi_thread")]
async fn redis_is_shared_by_the_gateways_and_losing_it_is_graceful() -> anyhow::Result<()> {
    preflight(REDIS_IMAGES).await?;
    let stack = ShopStack::start(
        "chaos_redis",
        StackOptions {
            prometheus: true,
            redis: true,
            redis_through_proxy: true,
            gateway_replicas: 2,
            gateway_env: vec![
                ("FAULTLINE_RATE_LIMIT_PER_SECOND", SHARED_RATE.to_string()),
                ("FAULTLINE_RATE_LIMIT_BURST", SHARED_BURST.to_string()),
                ("FAULTLINE_SHARED_CACHE_TTL", "120s".into()),
            ],
            ..StackOptions::default()
        },
    )
    .await?;
    for name in ["redis-latency", "redis-down"] {
        let test = name.replace('-', "_");
        let journal = run(name, &test, &stack).await?;
        assert_passed(&journal);
        replays_offline(&journal, &test, name).await?;
    }
    one_client_is_held_to_the_global_rate(&stack).await?;
    a_product_one_gateway_cached_is_served_by_the_other(&stack).await
}

/// One client sends three times its quota for 6 s, alternating between the
/// two gateways: the two together let through what the quota allows (its
/// burst, plus its rate for the time it took), within 20%, not twice that.
async fn one_client_is_held_to_the_global_rate(stack: &ShopStack) -> anyhow::Result<()> {
    let urls: Vec<String> = std::iter::once(&stack.gateway)
        .chain(&stack.more_gateways)
        .map(|gateway| format!("{}/api/products", gateway.http_url))
        .collect();
    anyhow::ensure!(urls.len() == 2, "two gateways: {urls:?}");
    // One client: one subject, whichever gateway it reaches.
    let http = stack.customer(&format!("flood-{}", uuid::Uuid::new_v4().simple()))?;
    let sends = (SHARED_RATE * 3.0 * 6.0) as usize;
    let mut ticker = tokio::time::interval(std::time::Duration::from_secs_f64(
        1.0 / (SHARED_RATE * 3.0),
    ));
    let mut requests = tokio::task::JoinSet::new();
    let started = std::time::Instant::now();
    for i in 0..sends {
        ticker.tick().await;
        let request = http.get(&urls[i % 2]).send();
        requests.spawn(async move { (i % 2, request.await.map(|r| r.status().as_u16())) });
    }
    let elapsed = started.elapsed().as_secs_f64();
    let mut allowed = [0_u32; 2];
    let mut refused = [0_u32; 2];
    while let Some(done) = requests.join_next().await {
        let (gateway, status) = done?;
        match status? {
            200 => allowed[gateway] += 1,
            429 => refused[gateway] += 1,
            other => anyhow::bail!("gateway {} answered {other}", gateway + 1),
        }
    }
    let total = f64::from(allowed[0] + allowed[1]);
    let quota = SHARED_BURST + SHARED_RATE * elapsed;
    eprintln!(
        "flood: {sends} sent in {elapsed:.1} s; let through {allowed:?}, refused {refused:?}; \
         the quota allows {quota:.0}"
    );
    for gateway in 0..2 {
        anyhow::ensure!(
            allowed[gateway] > 0 && refused[gateway] > 0,
            "gateway {} both lets through and refuses: {allowed:?} {refused:?}",
            gateway + 1
        );
    }
    anyhow::ensure!(
        (0.8 * quota..=1.2 * quota).contains(&total),
        "the two gateways let through {total} requests of one client in {elapsed:.1} s; \
         the global quota allows {quota:.0} (each gateway alone would allow about that many)"
    );
    Ok(())
}

/// Reads of one product the catalog served, from its metrics.
async fn catalog_product_reads(stack: &ShopStack) -> anyhow::Result<f64> {
    let page = stack.catalog.metrics().await?;
    Ok(page
        .find(
            "http_server_request_duration_seconds_count",
            &[("http_route", "/api/products/{id}")],
        )
        .map(|sample| sample.value)
        .sum())
}

/// Gateway 1 reads a product from the catalog and shares it in Redis;
/// gateway 2 then serves it from Redis, the catalog not asked. A checkout of
/// that product changes its stock: the catalog drops the shared answer, and
/// gateway 2 shows the new stock long before the answer's 2-minute TTL.
async fn a_product_one_gateway_cached_is_served_by_the_other(
    stack: &ShopStack,
) -> anyhow::Result<()> {
    use redis::AsyncCommands;

    let (redis, _) = stack.redis.as_ref().context("a stack with Redis")?;
    let second = stack.more_gateways.first().context("a second gateway")?;
    let mut connection = redis::Client::open(redis.url().await?)?
        .get_multiplexed_async_connection()
        .await?;
    let path = "/api/products/3";
    let key = faultline_shop::shared_cache::key(path);
    let _: () = connection.del(&key).await?;
    let http = stack.customer("e2e-customer")?;
    let read = |base: String| {
        let http = http.clone();
        async move {
            let response = http.get(format!("{base}{path}")).send().await?;
            anyhow::ensure!(
                response.status() == 200,
                "{base}{path}: {}",
                response.status()
            );
            Ok::<serde_json::Value, anyhow::Error>(response.json().await?)
        }
    };
    let first = read(stack.gateway.http_url.clone()).await?;
    faultline_tests::eventually(
        "gateway 1 to share the product",
        std::time::Duration::from_secs(10),
        || {
            let mut connection = connection.clone();
            let key = key.clone();
            async move {
                let exists: bool = connection.exists(&key).await?;
                anyhow::ensure!(exists, "{key} not in Redis yet");
                Ok(())
            }
        },
    )
    .await?;
    let catalog_reads = catalog_product_reads(stack).await?;
    let shared_hits = |page: &faultline_tests::prom_text::Exposition| {
        page.value(
            "catalog_cache_lookups_total",
            &[("level", "shared"), ("result", "hit")],
        )
    };
    let hits_before = shared_hits(&second.metrics().await?).context("gateway 2's shared hits")?;
    let served = read(second.http_url.clone()).await?;
    assert_eq!(served, first, "gateway 2 serves gateway 1's answer");
    assert_eq!(
        catalog_product_reads(stack).await?,
        catalog_reads,
        "the catalog was not asked"
    );
    let hits_after = shared_hits(&second.metrics().await?).context("gateway 2's shared hits")?;
    assert_eq!(hits_after, hits_before + 1.0, "a shared hit on gateway 2");

    // A stock change drops the shared answer.
    let stock = first["stock"].as_i64().context("a stock")?;
    let checkout = http
        .post(format!("{}/api/orders", stack.gateway.http_url))
        .header("Idempotency-Key", uuid::Uuid::new_v4().to_string())
        .json(&serde_json::json!({"items": [{"product_id": 3, "quantity": 1}]}))
        .send()
        .await?;
    anyhow::ensure!(
        checkout.status() == 201 || checkout.status() == 202,
        "the checkout: {}",
        checkout.status()
    );
    faultline_tests::eventually(
        "gateway 2 to show the new stock",
        std::time::Duration::from_secs(15),
        || {
            let read = read(second.http_url.clone());
            async move {
                let now = read.await?["stock"].as_i64().context("a stock")?;
                anyhow::ensure!(now == stock - 1, "stock {now}, not {}", stock - 1);
                Ok(())
            }
        },
    )
    .await
}

/// The images of a stack with a read replica and the PostgreSQL exporters.
const REPLICA_IMAGES: &[faultline_tests::images::LocalImage] = &[
    faultline_tests::images::POSTGRES,
    faultline_tests::images::POSTGRES_EXPORTER,
    faultline_tests::images::PROMETHEUS,
    faultline_tests::images::FAULTLINE,
];

/// The catalog's product reads, as PostgreSQL's pg_stat_statements records
/// them (the list and the detail: the only statements that read these
/// columns this way).
const PRODUCT_READS: &str = "SELECT coalesce(sum(calls), 0)::bigint FROM pg_stat_statements \
     WHERE query LIKE 'SELECT id, sku, name, price_cents, stock FROM products%'";

/// The catalog reads products from the read replica: the replica's
/// statement counts grow with the reads and the primary's do not; a write
/// followed by a read that names the write's position sees it. Then the
/// replica-lag experiment (replay paused: reads move to the primary once the
/// lag passes the bound, and a write made meanwhile shows in product reads
/// within the staleness bound, long before replay resumes) and the
/// replica-down experiment (the replica killed: no read fails, the catalog
/// stays ready) must pass with their alerts, and replay offline.
#[tokio::test(flavor = "multi_thread")]
async fn a_read_replica_serves_product_reads_and_losing_it_is_graceful() -> anyhow::Result<()> {
    preflight(REPLICA_IMAGES).await?;
    let stack = ShopStack::start(
        "chaos_replica",
        StackOptions {
            prometheus: true,
            read_replica: true,
            ..StackOptions::default()
        },
    )
    .await?;
    product_reads_go_to_the_replica(&stack).await?;
    a_read_after_a_write_sees_it(&stack).await?;

    let (journal, staleness) = tokio::join!(
        run("replica-lag", "replica_lag", &stack),
        a_write_shows_within_the_bound_while_replay_is_paused(&stack),
    );
    let journal = journal?;
    assert_passed(&journal);
    let seen_after = staleness?;
    eprintln!(
        "replica-lag: a write made while replay was paused showed in reads after {seen_after:.1} s"
    );
    replays_offline(&journal, "replica_lag", "replica-lag").await?;

    let stop = tokio_util::sync::CancellationToken::new();
    let readiness = tokio::spawn(catalog_readiness(
        stack.catalog.admin_url.clone(),
        stop.clone(),
    ));
    let journal = run("replica-down", "replica_down", &stack).await;
    stop.cancel();
    let (ready, not_ready) = readiness.await??;
    let journal = journal?;
    assert_passed(&journal);
    anyhow::ensure!(
        ready > 0 && not_ready.is_empty(),
        "the catalog's readiness must not depend on the replica: {ready} ready, not ready: {not_ready:?}"
    );
    replays_offline(&journal, "replica_down", "replica-down").await
}

async fn connect(url: &str) -> anyhow::Result<sqlx::PgPool> {
    Ok(sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect(url)
        .await?)
}

async fn catalog_metric(
    stack: &ShopStack,
    name: &str,
    labels: &[(&str, &str)],
) -> anyhow::Result<f64> {
    let page = stack.catalog.metrics().await?;
    Ok(page.find(name, labels).map(|sample| sample.value).sum())
}

async fn product_reads_go_to_the_replica(stack: &ShopStack) -> anyhow::Result<()> {
    faultline_tests::eventually(
        "the catalog to read from the replica",
        std::time::Duration::from_secs(30),
        || async {
            let in_use = catalog_metric(stack, "db_client_replica_in_use", &[]).await?;
            anyhow::ensure!(in_use == 1.0, "db_client_replica_in_use is {in_use}");
            Ok(())
        },
    )
    .await?;
    let primary = stack.db().await?;
    let replica = connect(stack.replica_url().context("a stack with a read replica")?).await?;
    sqlx::query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        .execute(&primary)
        .await?;
    // The extension reaches the standby by replication.
    faultline_tests::eventually(
        "pg_stat_statements on the replica",
        std::time::Duration::from_secs(10),
        || async {
            sqlx::query("SELECT pg_stat_statements_reset()")
                .execute(&replica)
                .await?;
            Ok(())
        },
    )
    .await?;
    sqlx::query("SELECT pg_stat_statements_reset()")
        .execute(&primary)
        .await?;
    let http = faultline_tests::http_client()?;
    let reads = 20;
    for i in 0..reads {
        let path = if i % 2 == 0 {
            "/api/products".to_owned()
        } else {
            format!("/api/products/{}", 1 + i % 20)
        };
        let response = http
            .get(format!("{}{path}", stack.catalog.http_url))
            .send()
            .await?;
        anyhow::ensure!(response.status() == 200, "{path}: {}", response.status());
    }
    let on_replica: i64 = sqlx::query_scalar(PRODUCT_READS)
        .fetch_one(&replica)
        .await?;
    let on_primary: i64 = sqlx::query_scalar(PRODUCT_READS)
        .fetch_one(&primary)
        .await?;
    eprintln!("product reads: {on_replica} on the replica, {on_primary} on the primary");
    anyhow::ensure!(
        on_replica >= reads,
        "the replica ran {on_replica} product reads of the {reads} made"
    );
    anyhow::ensure!(
        on_primary == 0,
        "the primary ran {on_primary} product reads, which the replica should have served"
    );
    Ok(())
}

/// Reserves `quantity` of `product` for a new order, straight at the
/// catalog; the order id and the write's WAL position.
async fn reserve(
    stack: &ShopStack,
    product: i64,
    quantity: i64,
) -> anyhow::Result<(uuid::Uuid, Option<String>)> {
    let order = uuid::Uuid::new_v4();
    let response = faultline_tests::http_client()?
        .post(format!("{}/api/reservations", stack.catalog.http_url))
        .json(&serde_json::json!({
            "order_id": order,
            "items": [{ "product_id": product, "quantity": quantity }],
        }))
        .send()
        .await?;
    anyhow::ensure!(response.status() == 201, "reserve: {}", response.status());
    let lsn = response
        .headers()
        .get("faultline-write-lsn")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    Ok((order, lsn))
}

async fn release(stack: &ShopStack, order: uuid::Uuid) -> anyhow::Result<()> {
    let response = faultline_tests::http_client()?
        .delete(format!(
            "{}/api/reservations/{order}",
            stack.catalog.http_url
        ))
        .send()
        .await?;
    anyhow::ensure!(response.status() == 204, "release: {}", response.status());
    Ok(())
}

async fn stock(stack: &ShopStack, product: i64, after: Option<&str>) -> anyhow::Result<i64> {
    let mut request = faultline_tests::http_client()?
        .get(format!("{}/api/products/{product}", stack.catalog.http_url));
    if let Some(lsn) = after {
        request = request.header("faultline-read-after-lsn", lsn);
    }
    let response = request.send().await?;
    anyhow::ensure!(response.status() == 200, "read: {}", response.status());
    let body: serde_json::Value = response.json().await?;
    body["stock"].as_i64().context("a product with its stock")
}

/// Twenty times: reserve, then read the product at once naming the write's
/// position. Every read sees its write, whoever serves it.
///
/// The stock before each write is read on the primary: a plain read through
/// the catalog may come from the standby and miss the previous round's
/// release (no position named, so it is allowed to), which would make a
/// correct read after the write look like a miss.
async fn a_read_after_a_write_sees_it(stack: &ShopStack) -> anyhow::Result<()> {
    let product = 7;
    let primary = stack.db().await?;
    for _ in 0..20 {
        let before: i64 = sqlx::query_scalar("SELECT stock::bigint FROM products WHERE id = $1")
            .bind(product)
            .fetch_one(&primary)
            .await?;
        let (order, lsn) = reserve(stack, product, 3).await?;
        let lsn = lsn.context("a write with a read replica answers with its WAL position")?;
        let after = stock(stack, product, Some(&lsn)).await?;
        release(stack, order).await?;
        anyhow::ensure!(
            after <= before - 3,
            "a read after the write at {lsn} shows stock {after}, not the {} it left",
            before - 3
        );
    }
    Ok(())
}

/// While replay is paused: a write shows in plain product reads (no
/// position named) within the staleness bound (5 s + two 1 s checks), that
/// is, from the primary, long before replay resumes 20 s after the pause.
/// The seconds it took.
async fn a_write_shows_within_the_bound_while_replay_is_paused(
    stack: &ShopStack,
) -> anyhow::Result<f64> {
    let replica = connect(stack.replica_url().context("a stack with a read replica")?).await?;
    faultline_tests::eventually(
        "the experiment to pause replay",
        std::time::Duration::from_secs(90),
        || async {
            let paused: bool = sqlx::query_scalar("SELECT pg_is_wal_replay_paused()")
                .fetch_one(&replica)
                .await?;
            anyhow::ensure!(paused, "replay is not paused yet");
            Ok(())
        },
    )
    .await?;
    // 500 units of a product with 100 000: the load buys at most 2 at a time.
    let product = 13;
    let before = stock(stack, product, None).await?;
    let written = std::time::Instant::now();
    let (order, _) = reserve(stack, product, 500).await?;
    let seen = faultline_tests::eventually(
        "the write to show in product reads",
        std::time::Duration::from_secs(9),
        || async {
            let now = stock(stack, product, None).await?;
            anyhow::ensure!(
                now <= before - 500,
                "stock {now}: the write is not visible yet"
            );
            Ok(written.elapsed().as_secs_f64())
        },
    )
    .await;
    let still_paused: bool = sqlx::query_scalar("SELECT pg_is_wal_replay_paused()")
        .fetch_one(&replica)
        .await?;
    release(stack, order).await?;
    let seen = seen?;
    anyhow::ensure!(
        still_paused,
        "replay resumed before the write showed: the proof needs it paused"
    );
    Ok(seen)
}

/// Polls the catalog's readiness every 200 ms until `stop`: how many
/// answers were ready, and the others.
async fn catalog_readiness(
    admin_url: String,
    stop: tokio_util::sync::CancellationToken,
) -> anyhow::Result<(u32, Vec<String>)> {
    let http = faultline_tests::http_client()?;
    let mut ready = 0;
    let mut not_ready = Vec::new();
    let mut ticker = tokio::time::interval(std::time::Duration::from_millis(200));
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = stop.cancelled() => return Ok((ready, not_ready)),
        }
        match http.get(format!("{admin_url}/health/ready")).send().await {
            Ok(response) if response.status() == 200 => ready += 1,
            Ok(response) => not_ready.push(response.status().to_string()),
            Err(err) => not_ready.push(err.to_string()),
        }
    }
}

/// The images of the broker's experiments.
const BROKER_CHAOS_IMAGES: &[faultline_tests::images::LocalImage] = &[
    faultline_tests::images::POSTGRES,
    faultline_tests::images::PROMETHEUS,
    faultline_tests::images::RABBITMQ,
    faultline_tests::images::FAULTLINE,
];

/// The broker's experiments, on one stack as in compose: two orders
/// replicas relaying, two workers consuming through the fault proxy, worker
/// 1's fault admin API on. The gentlest first, the broker's kill last; each
/// must pass, and each that expects alerts must replay offline.
#[tokio::test(flavor = "multi_thread")]
async fn the_broker_experiments_pass() -> anyhow::Result<()> {
    preflight(BROKER_CHAOS_IMAGES).await?;
    let stack = ShopStack::start(
        "chaos_broker",
        StackOptions {
            prometheus: true,
            broker: true,
            broker_through_proxy: true,
            orders_replicas: 2,
            worker_replicas: 2,
            fault_admin: true,
            ..StackOptions::default()
        },
    )
    .await?;
    for name in [
        "consumer-killed",
        "poison-message",
        "broker-partition",
        "broker-down",
    ] {
        let test = name.replace('-', "_");
        let journal = run(name, &test, &stack).await?;
        assert_passed(&journal);
        if !journal.expected_alerts.is_empty() {
            replays_offline(&journal, &test, name).await?;
        }
    }
    Ok(())
}
