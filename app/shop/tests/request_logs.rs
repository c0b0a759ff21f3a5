#![allow(clippy::unwrap_used)] // A failed unwrap is a failed test.

//! The inbound stack logs a failed (5xx) or slow request with its trace id,
//! and whether its trace was sampled: at a low sampling ratio that line is
//! the way to the request. Checked in a child process of this test binary,
//! since the tracing subscriber is global to a process.

mod child;

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::routing::get;
use faultline_shop::http::server::SLOW_REQUEST;
use tower::ServiceExt;

/// Set on the child: run the requests instead of spawning.
const CHILD: &str = "FAULTLINE_REQUEST_LOGS_CHILD";

async fn send(router: &Router, path: &str) -> StatusCode {
    let request = Request::get(path).body(Body::empty()).unwrap();
    router.clone().oneshot(request).await.unwrap().status()
}

/// The child: three requests through the stack, one of each kind.
async fn requests() {
    let telemetry = faultline_telemetry::Telemetry::init("request-logs", "0.0.0").unwrap();
    let routes = Router::new()
        .route("/ok", get(|| async { "fine" }))
        .route(
            "/fail",
            get(|| async { (StatusCode::SERVICE_UNAVAILABLE, "down") }),
        )
        .route(
            "/slow",
            get(|| async {
                // The behaviour under test: an answer later than the bound.
                tokio::time::sleep(SLOW_REQUEST + Duration::from_millis(50)).await;
                "late"
            }),
        );
    let router = child::behind_the_stack(routes);
    assert_eq!(send(&router, "/ok").await, StatusCode::OK);
    assert_eq!(
        send(&router, "/fail").await,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(send(&router, "/slow").await, StatusCode::OK);
    telemetry.shutdown();
}

#[test]
fn failed_and_slow_requests_are_logged_with_their_trace_id() {
    let Some(stdout) = child::requests_in_child(
        "failed_and_slow_requests_are_logged_with_their_trace_id",
        CHILD,
        // Nothing sampled: the lines must still lead to the requests.
        child::UNSAMPLED,
        requests,
    ) else {
        return;
    };
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .filter(|line: &serde_json::Value| line["target"] == "faultline_shop::http::server")
        .collect();
    let line = |message: &str| {
        let found: Vec<_> = lines.iter().filter(|l| l["message"] == message).collect();
        assert_eq!(found.len(), 1, "one {message:?} line in:\n{stdout}");
        found[0].clone()
    };
    let failed = line("request failed");
    assert_eq!(failed["level"], "WARN");
    assert_eq!(failed["status"], 503);
    let slow = line("slow request");
    assert_eq!(slow["level"], "INFO");
    assert_eq!(slow["status"], 200);
    assert!(slow["duration_ms"].as_u64().unwrap() >= SLOW_REQUEST.as_millis() as u64);
    for logged in [&failed, &slow] {
        assert_eq!(
            logged["trace_id"].as_str().map(str::len),
            Some(32),
            "{logged}"
        );
        assert_eq!(logged["trace_sampled"], false, "{logged}");
    }
    assert_ne!(
        failed["trace_id"], slow["trace_id"],
        "one trace per request"
    );
    assert_eq!(
        lines.len(),
        2,
        "the good, fast request logs nothing:\n{stdout}"
    );
}
