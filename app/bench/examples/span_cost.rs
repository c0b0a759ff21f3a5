#![allow(clippy::print_stdout)] // The table is the example's output.

//! What the tracing stack costs one request of one service, without the
//! network, PostgreSQL or the load generator in the way: a server span, a
//! handler span (at `debug`, as in the shop) and a query span, polled seven
//! times, with the subscriber the services install (`Telemetry::init`), side
//! by side in one run. The server span is made two ways: as the shop makes
//! it, with the OpenTelemetry API (`faultline_telemetry::http_spans`), and
//! as a `tracing` span bridged by `tracing-opentelemetry` (as before issue
//! 19's last step), to show what that lever buys.
//!
//!     cargo run --release -p faultline-bench --example span_cost
//!
//! The subscriber is global to a process, so each setting runs in a child
//! process of this binary; each prints its nanoseconds per request and the
//! parent prints them with their difference from telemetry off. Single
//! threaded, so it shows the work, not the contention: figure 1 of
//! BENCHMARKS.md is the whole-system measure.

use std::process::Command;
use std::time::Instant;

use faultline_telemetry::http_spans::{HttpRequest, ServerSpan};
use tracing::Instrument;

/// Set on a child: the setting's name.
const CHILD: &str = "FAULTLINE_SPAN_COST_CHILD";
/// Set on a child: `tracing` for a bridged `tracing` server span, else the
/// OpenTelemetry API's.
const SERVER: &str = "FAULTLINE_SPAN_COST_SERVER";
const REQUESTS: u64 = 100_000;
/// Passes per child; it reports its best.
const REPEATS: usize = 3;
/// Children per setting, alternated (A B C, B C A, ...): each added cost is
/// taken within a round, against that round's telemetry off, and the table
/// shows its median and range over the rounds.
const ROUNDS: usize = 7;

const UNSAMPLED: Env = &[
    ("RUST_LOG", "info"),
    ("OTEL_TRACES_EXPORTER", "none"),
    ("OTEL_TRACES_SAMPLER", "always_off"),
];
const SAMPLED: Env = &[
    ("RUST_LOG", "info"),
    ("OTEL_TRACES_EXPORTER", "none"),
    ("OTEL_TRACES_SAMPLER", "always_on"),
];

/// Environment variables of a setting.
type Env = &'static [(&'static str, &'static str)];

/// (name, server span made by, environment): the settings compared.
const SETTINGS: [(&str, &str, Env); 5] = [
    (
        "off",
        "otel",
        &[("RUST_LOG", "off"), ("OTEL_SDK_DISABLED", "true")],
    ),
    ("unsampled, server span by `tracing`", "tracing", UNSAMPLED),
    (
        "unsampled, server span by the OTel API (as deployed)",
        "otel",
        UNSAMPLED,
    ),
    (
        "sampled (spans made, not exported), server span by `tracing`",
        "tracing",
        SAMPLED,
    ),
    (
        "sampled, server span by the OTel API (as deployed)",
        "otel",
        SAMPLED,
    ),
];

#[tracing::instrument(name = "SELECT products", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
async fn query(i: u64) -> u64 {
    for _ in 0..3 {
        tokio::task::yield_now().await;
    }
    i + 1
}

#[tracing::instrument(level = "debug", name = "list_products", skip_all, fields(limit = i))]
async fn handler(i: u64) -> u64 {
    tokio::task::yield_now().await;
    query(i).await
}

/// One request, its server span made as the shop makes it.
async fn request(i: u64) -> u64 {
    let parent = opentelemetry::Context::new();
    let span = if tracing::enabled!(tracing::Level::INFO) {
        ServerSpan::start(
            &parent,
            HttpRequest {
                name: "GET /api/products",
                method: "GET",
                route: "/api/products",
                path: "/api/products",
            },
        )
    } else {
        ServerSpan::none()
    };
    let answer = span.with_current(handler(i)).await;
    span.record_status(200);
    answer
}

/// One request, its server span a `tracing` span.
async fn request_by_tracing(i: u64) -> u64 {
    let parent = opentelemetry::Context::new();
    let span = faultline_telemetry::propagation::child_of_remote(parent, || {
        tracing::info_span!(
            "http.server",
            otel.name = "GET /api/products",
            otel.kind = "server",
            http.request.method = "GET",
            http.route = "/api/products",
            url.path = "/api/products",
            url.scheme = "http",
            http.response.status_code = tracing::field::Empty,
        )
    });
    let answer = handler(i).instrument(span.clone()).await;
    span.record("http.response.status_code", 200_u16);
    answer
}

/// The child: the best of [`REPEATS`] passes, in ns per request.
async fn child() -> anyhow::Result<f64> {
    let telemetry = faultline_telemetry::Telemetry::init("span-cost", "0")?;
    let by_tracing = std::env::var(SERVER).is_ok_and(|server| server == "tracing");
    let mut best = f64::MAX;
    for _ in 0..REPEATS {
        let started = Instant::now();
        let mut sum = 0;
        for i in 0..REQUESTS {
            sum += if by_tracing {
                request_by_tracing(i).await
            } else {
                request(i).await
            };
        }
        std::hint::black_box(sum);
        best = best.min(started.elapsed().as_nanos() as f64 / REQUESTS as f64);
    }
    telemetry.shutdown();
    Ok(best)
}

fn main() -> anyhow::Result<()> {
    if std::env::var_os(CHILD).is_some() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let ns = runtime.block_on(child())?;
        // The parent reads this one line.
        eprintln!("ns_per_request {ns:.0}");
        return Ok(());
    }
    let exe = std::env::current_exe()?;
    let run = |name: &str, server: &str, env: Env| -> anyhow::Result<f64> {
        let output = Command::new(&exe)
            .env(CHILD, name)
            .env(SERVER, server)
            .env("FAULTLINE_METRICS", "off")
            .envs(env.iter().copied())
            .output()?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        stderr
            .lines()
            .find_map(|line| line.strip_prefix("ns_per_request "))
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| anyhow::anyhow!("{name}: no result in:\n{stderr}"))
    };
    // One row per round: ns per request of each setting.
    let mut rounds = Vec::with_capacity(ROUNDS);
    for round in 0..ROUNDS {
        let mut row = vec![0.0; SETTINGS.len()];
        for offset in 0..SETTINGS.len() {
            let index = (round + offset) % SETTINGS.len();
            let (name, server, env) = SETTINGS[index];
            row[index] = run(name, server, env)?;
        }
        rounds.push(row);
    }
    let median = |mut values: Vec<f64>| {
        values.sort_by(f64::total_cmp);
        let (low, high) = (values[0], values[values.len() - 1]);
        (values[values.len() / 2], low, high)
    };
    println!("Medians over {ROUNDS} alternated rounds (range in brackets).");
    println!();
    println!("| setting | ns per request | added over off | ÷ off |");
    println!("|---|---|---|---|");
    for (index, (name, _, _)) in SETTINGS.iter().enumerate() {
        let (total, low, high) = median(rounds.iter().map(|row| row[index]).collect());
        let added = median(rounds.iter().map(|row| row[index] - row[0]).collect());
        let ratio = median(rounds.iter().map(|row| row[index] / row[0]).collect());
        println!(
            "| {name} | {total:.0} ({low:.0}–{high:.0}) | {:.0} ({:.0}–{:.0}) | {:.2} |",
            added.0, added.1, added.2, ratio.0
        );
    }
    Ok(())
}
