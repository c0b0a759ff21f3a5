//! `faultline-bench --quick` end to end: every benchmark runs briefly and the
//! JSON has all five figures with sane values. No timing is asserted.
//!
//! Needs Docker and the local PostgreSQL, Redis, RabbitMQ and PostgreSQL
//! exporter images: without them it fails and says what to do; it never
//! passes by skipping.

use std::process::Command;

use faultline_tests::docker::{require_docker, require_images};
use faultline_tests::images;
use serde_json::Value;

fn finite(value: &Value, path: &str) -> anyhow::Result<f64> {
    let number = value.pointer(path).and_then(Value::as_f64);
    let Some(number) = number else {
        anyhow::bail!(
            "{path} is missing or not a number: {:?}",
            value.pointer(path)
        );
    };
    anyhow::ensure!(number.is_finite(), "{path} = {number}");
    Ok(number)
}

fn positive(value: &Value, path: &str) -> anyhow::Result<f64> {
    let number = finite(value, path)?;
    anyhow::ensure!(number > 0.0, "{path} = {number}, expected > 0");
    Ok(number)
}

#[tokio::test(flavor = "multi_thread")]
async fn quick_mode_measures_all_five_figures() -> anyhow::Result<()> {
    let docker = require_docker().await?;
    require_images(
        &docker,
        &[
            images::POSTGRES,
            images::REDIS,
            images::RABBITMQ,
            images::POSTGRES_EXPORTER,
        ],
    )
    .await?;

    let dir = std::env::temp_dir().join(format!("faultline-bench-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let json_path = dir.join("bench.json");
    let markdown_path = dir.join("bench.md");
    let output = tokio::task::spawn_blocking({
        let (json_path, markdown_path, dir) =
            (json_path.clone(), markdown_path.clone(), dir.clone());
        move || {
            Command::new(env!("CARGO_BIN_EXE_faultline-bench"))
                .arg("--quick")
                .arg("--json")
                .arg(&json_path)
                .arg("--markdown")
                .arg(&markdown_path)
                .arg("--work-dir")
                .arg(dir.join("work"))
                .output()
        }
    })
    .await??;
    let stderr = String::from_utf8_lossy(&output.stderr);
    anyhow::ensure!(
        output.status.success(),
        "faultline-bench --quick failed ({}):\n{stderr}",
        output.status
    );

    let results: Value = serde_json::from_str(&std::fs::read_to_string(&json_path)?)?;
    assert_eq!(results["schema"], 4);
    assert_eq!(results["footprint_only"], false);
    assert_eq!(results["quick"], true);

    // 1. Instrumentation: each part against telemetry off.
    for variant in faultline_bench::report::FIGURE_1_VARIANTS {
        positive(
            &results,
            &format!("/figures/instrumentation/throughput_ratio/{variant}/median"),
        )?;
        positive(
            &results,
            &format!("/figures/instrumentation/p99_ratio/{variant}/median"),
        )?;
    }
    // 2. Hot path against bare axum.
    positive(&results, "/figures/hot_path/throughput_ratio/median")?;
    positive(&results, "/figures/hot_path/cpu_ratio/median")?;
    positive(&results, "/figures/hot_path/off_throughput_ratio/median")?;
    positive(
        &results,
        "/figures/hot_path/read_path_throughput_ratio/median",
    )?;
    positive(&results, "/figures/hot_path/read_path_cpu_ratio/median")?;
    // 3. The fault proxy against a direct connection. The added latency is a
    //    difference of two noisy numbers: finite, but its sign is not asserted.
    positive(&results, "/figures/proxy/throughput_ratio/median")?;
    finite(&results, "/figures/proxy/added_p50_us/median")?;
    // 4. Footprint: every role, PostgreSQL and its standby, Redis, RabbitMQ
    //    and the two PostgreSQL exporters, idle and under load; the catalog
    //    read from the standby; the checkouts' events went through RabbitMQ
    //    and the worker processed every one.
    for role in ["gateway", "catalog", "orders", "payments", "worker"] {
        positive(
            &results,
            &format!("/figures/footprint/roles/{role}/idle_mb"),
        )?;
        positive(
            &results,
            &format!("/figures/footprint/roles/{role}/load_mb"),
        )?;
    }
    for container in [
        "postgres",
        "standby",
        "redis",
        "rabbitmq",
        "exporters/primary",
        "exporters/standby",
    ] {
        positive(&results, &format!("/figures/footprint/{container}/idle_mb"))?;
        positive(&results, &format!("/figures/footprint/{container}/load_mb"))?;
    }
    let total = positive(&results, "/figures/footprint/total/load_mb")?;
    let parts: f64 = ["postgres", "standby", "redis", "rabbitmq"]
        .iter()
        .map(|c| finite(&results, &format!("/figures/footprint/{c}/load_mb")))
        .chain(["primary", "standby"].iter().map(|s| {
            finite(
                &results,
                &format!("/figures/footprint/exporters/{s}/load_mb"),
            )
        }))
        .sum::<anyhow::Result<f64>>()?;
    anyhow::ensure!(
        total > parts,
        "the footprint's total ({total} MB) should count the roles and every container ({parts} MB)"
    );
    let published = positive(&results, "/figures/footprint/events/published")?;
    let processed = finite(&results, "/figures/footprint/events/processed")?;
    anyhow::ensure!(
        processed >= published,
        "the worker processed {processed} of the {published} events the relay published"
    );
    finite(&results, "/figures/footprint/events/drained_after_s")?;
    // 5. Cache levels: both levels against the local one, the shared one
    //    alone against both; and the counters say each level was used.
    for comparison in ["two_level_vs_local", "shared_only_vs_two_level"] {
        for ratio in ["throughput_ratio", "cpu_ratio", "p99_ratio"] {
            positive(
                &results,
                &format!("/figures/cache_levels/{comparison}/{ratio}/median"),
            )?;
        }
    }
    for (target, counter) in [
        ("levels-local", "local_hit"),
        ("levels-two-level", "local_hit"),
        ("levels-shared-only", "shared_hit"),
    ] {
        positive(
            &results,
            &format!("/figures/cache_levels/counters/{target}/{counter}"),
        )?;
    }
    for target in ["levels-two-level", "levels-shared-only"] {
        positive(
            &results,
            &format!("/absolute/{target}/closed/redis_cpu_us_per_request"),
        )?;
    }

    let goals = results["goals"].as_array().map_or(0, Vec::len);
    assert_eq!(goals, 8, "one entry per goal of the issues");
    let markdown = std::fs::read_to_string(&markdown_path)?;
    for figure in [
        "1 instrumentation",
        "2 hot path",
        "3 fault proxy",
        "4 footprint",
        "| Redis (docker stats) |",
        "| RabbitMQ (docker stats) |",
        "The outbox through RabbitMQ meanwhile:",
        "| PostgreSQL standby (docker stats) |",
        "| PostgreSQL exporter, primary (docker stats) |",
        "| PostgreSQL exporter, standby (docker stats) |",
        "5 cache levels",
    ] {
        assert!(markdown.contains(figure), "{figure} missing:\n{markdown}");
    }
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
