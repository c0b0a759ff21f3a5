//! Tests of the global tracing subscriber run their requests in a child
//! process of the test binary, since a subscriber is global to a process.

use std::process::Command;
use std::time::Duration;

use axum::Router;
use faultline_shop::http::server::{ServerPolicy, stack};

/// `routes` behind the shop's inbound stack, with nothing but a timeout.
/// The services' telemetry with logs on, no exporter and no new trace
/// sampled (a caller's decision is still followed).
pub const UNSAMPLED: &[(&str, &str)] = &[
    ("RUST_LOG", "info"),
    ("OTEL_TRACES_EXPORTER", "none"),
    ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
    ("OTEL_TRACES_SAMPLER_ARG", "0"),
];

pub fn behind_the_stack(routes: Router) -> Router {
    stack(
        routes,
        ServerPolicy {
            request_timeout: Duration::from_secs(5),
            max_in_flight: 10,
            rate_limit: None,
            auth: None,
            faults: None,
        },
    )
}

/// The body of a test whose requests run in a child: in the child (the
/// process `marker` names), runs `requests` and returns `None`; in the test
/// itself, runs `test` in a child with `marker` and `env` set and returns
/// the child's stdout.
pub fn requests_in_child<F: Future<Output = ()>>(
    test: &str,
    marker: &str,
    env: &[(&str, &str)],
    requests: impl FnOnce() -> F,
) -> Option<String> {
    if std::env::var_os(marker).is_some() {
        tokio::runtime::Runtime::new().unwrap().block_on(requests());
        return None;
    }
    Some(run(test, marker, env))
}

/// Runs `test` alone in a child process with `marker` and `env` set; fails
/// unless it passed there. Returns the child's stdout (its log lines).
fn run(test: &str, marker: &str, env: &[(&str, &str)]) -> String {
    let output = Command::new(std::env::current_exe().unwrap())
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(marker, "1")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success() && stdout.contains("test result: ok. 1 passed;"),
        "the child failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}
