//! The chaos experiments of chaos/experiments/, run by the chaos engine
//! against the real shop in containers, with Prometheus evaluating the
//! compressed alert rules. Each experiment must pass; a variant with the
//! resilience turned off must fail, and its journal must say why.

use std::path::{Path, PathBuf};

use anyhow::Context;
use faultline_chaos::runner::{Bindings, run_experiment};
use faultline_chaos::{Environment, Journal, Verdict};
use faultline_tests::shop_stack::{ShopStack, StackOptions};
use faultline_tests::stack::{REPLICA_LABEL, SERVICE_LABEL};

use crate::{FOUNDATION_IMAGES, preflight};

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
    if let Some(prometheus) = &stack.prometheus {
        env.set("prometheus", prometheus.client.base_url())?;
    }
    if let Some(proxy) = &stack.proxy {
        env.set("proxy_api", &proxy.api_url)?;
    }
    // Replica 1 of each role, as the compose demo publishes them.
    let first_replicas = [
        ("catalog", Some(&stack.catalog)),
        ("orders", stack.orders.first()),
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

/// Runs `chaos/experiments/<name>.toml` and writes its report under
/// `target/chaos-reports/<test>/`.
async fn run(name: &str, test: &str, stack: &ShopStack) -> anyhow::Result<Journal> {
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
    let reports = repo_root().join("target/chaos-reports").join(test);
    std::fs::create_dir_all(&reports)?;
    journal.save(&reports.join(format!("{name}.journal.json")))?;
    let files = faultline_chaos::report::write(&journal, &reports, name)?;
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
    Ok(journal)
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
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_kill_replica_experiment_passes() -> anyhow::Result<()> {
    let options = StackOptions {
        orders_replicas: 3,
        ..StackOptions::default()
    };
    passes("kill-replica", options).await
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
    let journal = run("payments-latency", "payments_latency_broken", &stack).await?;
    assert_eq!(journal.verdict, Verdict::Failed, "{:#?}", journal.reasons);
    assert!(journal.deviated);
    let reasons = journal.reasons.join("\n");
    assert!(
        reasons.contains("checkout p99") && !reasons.contains("no data"),
        "the journal should name the checkout latency probe, measured: {reasons}"
    );
    Ok(())
}
