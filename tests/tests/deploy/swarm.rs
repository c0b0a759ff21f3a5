//! The Swarm stack (deploy/swarm/faultline.yml), deployed for real on a
//! single-node swarm: replicas found by DNS, a killed task replaced with no
//! failed read, and orders rolled to a new image under load with no failed
//! request.

use std::time::Duration;

use anyhow::{Context, ensure};
use faultline_chaos::runner::{Bindings, run_experiment};
use faultline_chaos::{Environment, Verdict};
use faultline_tests::docker::preflight;
use faultline_tests::identity::StackKeys;
use faultline_tests::images::{FAULTLINE, POSTGRES, PROMETHEUS};
use faultline_tests::prometheus::PrometheusClient;
use faultline_tests::swarm::{Stack, Swarm, docker};
use faultline_tests::{eventually, host_port, repo_root};

/// Nine tasks starting on two cores, the database's first start included.
const UP_WITHIN: Duration = Duration::from_secs(180);
/// Three tasks replaced one at a time: each started, healthy, and
/// monitored for 10 s, 2 s apart.
const UPDATE_WITHIN: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread")]
async fn the_swarm_stack_heals_a_killed_task_and_rolls_orders_without_a_failed_request()
-> anyhow::Result<()> {
    preflight(&[FAULTLINE, POSTGRES, PROMETHEUS]).await?;
    let _swarm = Swarm::enter()?;

    // The stack's secret and config: a fault admin token and the trusted keys.
    let secrets = tempfile::tempdir()?;
    std::fs::write(secrets.path().join("fault_admin_token"), "swarm-test-token")?;
    let keys = StackKeys::new()?;
    std::fs::create_dir_all(secrets.path().join("keys"))?;
    std::fs::write(secrets.path().join("keys/jwks.json"), keys.jwks_json()?)?;

    let (gateway_port, prometheus_port) = (host_port::free()?, host_port::free()?);
    let name = format!("fl{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let env = [
        ("FAULTLINE_IMAGE", FAULTLINE.reference()),
        ("FAULTLINE_POSTGRES_IMAGE", POSTGRES.reference()),
        ("FAULTLINE_PROMETHEUS_IMAGE", PROMETHEUS.reference()),
        ("FAULTLINE_GATEWAY_PORT", gateway_port.to_string()),
        ("FAULTLINE_PROMETHEUS_PORT", prometheus_port.to_string()),
        (
            "FAULTLINE_SECRETS_DIR",
            secrets.path().display().to_string(),
        ),
    ]
    .map(|(k, v)| (k.to_owned(), v));
    let stack = Stack::deploy(
        &name,
        &repo_root().join("deploy/swarm/faultline.yml"),
        env.to_vec(),
    )?;
    let gateway = format!("http://127.0.0.1:{gateway_port}");
    let prometheus_url = format!("http://127.0.0.1:{prometheus_port}");
    let http = faultline_tests::http_client()?;
    let prometheus = PrometheusClient::new(prometheus_url.clone(), http.clone());

    // Up: the shop answers, Prometheus finds every task by DNS, and the
    // gateway calls three orders replicas behind one name.
    let up = eventually("the stack to serve, scraped, three orders endpoints", UP_WITHIN, || async {
        let status = http.get(format!("{gateway}/api/products")).send().await?.status();
        ensure!(status == 200, "product list: {status}");
        let orders = prometheus.query_scalar(r#"count(up{job="orders"} == 1)"#).await?;
        ensure!(orders == 3.0, "{orders} orders tasks scraped");
        let healthy = prometheus
            .query_scalar(r#"min(upstream_endpoints{job="gateway",peer_service="orders",state="healthy"})"#)
            .await?;
        ensure!(healthy == 3.0, "the gateway sees {healthy} healthy orders endpoints");
        Ok(())
    })
    .await;
    if let Err(err) = up {
        for service in ["gateway", "orders", "postgres", "prometheus"] {
            eprintln!("--- {service}\n{}", stack.logs(service));
        }
        return Err(err);
    }

    // 1. Kill a task: Swarm replaces it, no read fails.
    let experiment = repo_root().join("deploy/swarm/experiments/kill-task.toml");
    let mut labels = std::collections::BTreeMap::new();
    labels.insert("com.docker.stack.namespace".to_owned(), name.clone());
    let mut environment = Environment {
        gateway: Some(gateway.clone()),
        prometheus: Some(prometheus_url.clone()),
        keys: Some(keys.path().display().to_string()),
        ..Environment::default()
    };
    environment.docker.labels = labels;
    let journal = run_experiment(
        experiment,
        Bindings {
            environment,
            ..Bindings::default()
        },
    )
    .await
    .context("the kill-task experiment could not start")?;
    eprintln!(
        "kill-task: {:?} in {:.0} s; reasons: {:?}",
        journal.verdict, journal.duration, journal.reasons
    );
    ensure!(
        journal.verdict == Verdict::Passed,
        "kill-task: {:?}: {:?}\norders tasks: {:#?}",
        journal.verdict,
        journal.reasons,
        stack.task_history("orders")
    );
    let history = stack.task_history("orders")?;
    ensure!(
        history.len() >= 4,
        "Swarm should have replaced the killed task: {history:#?}"
    );

    // 2. Roll orders to a new tag under load: no request fails.
    let tag = format!("{}:{name}", FAULTLINE.name);
    docker(&["tag", &FAULTLINE.reference(), &tag], &[])?;
    let _untag = Untag(tag.clone());
    let mut config = faultline_loadgen::Config::new(gateway.parse()?);
    config.customers = Some(keys.customers(20, "swarm")?);
    config.mode = faultline_loadgen::Mode::Open { rate: 25.0 };
    config.seed = Some(20);
    // A generous timeout: a request the roll drops fails at once (a reset,
    // a refused connection); one slowed down by a busy machine should not
    // count as dropped.
    config.timeout = Duration::from_secs(10);
    let stop = tokio_util::sync::CancellationToken::new();
    let load = tokio::spawn(faultline_loadgen::run(
        config,
        stop.clone(),
        faultline_loadgen::NoObserver,
    ));
    tokio::task::spawn_blocking({
        let stack_name = stack.service("orders");
        let tag = tag.clone();
        move || {
            // --detach=false follows the update until it converges;
            // --no-resolve-image: the tag is local, no registry knows it.
            docker(
                &[
                    "service",
                    "update",
                    "--detach=false",
                    "--no-resolve-image",
                    "--image",
                    &tag,
                    &stack_name,
                ],
                &[],
            )
        }
    })
    .await??;
    // The tasks have converged; the update is over once its last monitor
    // period has passed without a failure.
    let orders = stack.service("orders");
    let rolled = eventually("the update of orders to end", UPDATE_WITHIN, || async {
        let state = docker(
            &[
                "service",
                "inspect",
                "--format",
                "{{.UpdateStatus.State}}",
                &orders,
            ],
            &[],
        )?;
        ensure!(state != "updating", "still {state}");
        Ok(state)
    })
    .await?;
    stop.cancel();
    let report = load.await??;
    eprintln!(
        "roll of orders to {tag}: {rolled}; {} requests over {:.0} s, {} failed",
        report.totals.count, report.elapsed_s, report.totals.errors
    );
    ensure!(rolled == "completed", "the update ended {rolled:?}");
    let images = stack.running_images("orders")?;
    ensure!(
        images.len() == 3 && images.iter().all(|image| *image == tag),
        "every orders task should run {tag}: {images:?}"
    );
    ensure!(
        report.totals.count >= 100,
        "too little traffic during the roll: {}",
        report.totals.count
    );
    ensure!(
        report.totals.errors == 0,
        "{} of {} requests failed during the roll: {:#?}",
        report.totals.errors,
        report.totals.count,
        report.failed_requests
    );
    Ok(())
}

/// Removes a tag made for the test.
struct Untag(String);

impl Drop for Untag {
    fn drop(&mut self) {
        let _ = docker(&["image", "rm", &self.0], &[]);
    }
}
