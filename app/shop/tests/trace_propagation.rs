#![allow(clippy::unwrap_used)] // A failed unwrap is a failed test.

//! Sampling is decided at the head and followed downstream: a request sends
//! on its caller's trace id with the caller's decision, sampled or not, and
//! a request with no caller gets a trace id of its own. A `tracing` span the
//! handler makes joins the server span's trace (the server span is made with
//! the OpenTelemetry API; `faultline_telemetry::http_spans`): a child of it
//! when sampled, no span at all when not. Checked in a child
//! process of this test binary (the tracing subscriber is global to a
//! process), with the subscriber the services install.

mod child;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request};
use axum::routing::get;
use faultline_telemetry::http_spans::{ClientSpan, HttpCall};
use tower::ServiceExt;

/// Set on the child: run the requests instead of spawning.
const CHILD: &str = "FAULTLINE_TRACE_PROPAGATION_CHILD";

const CALLER_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

/// The `traceparent`s the handler would send to the next service: from the
/// handler itself, from inside a `tracing` span it makes, and from the
/// client span of an outbound call.
async fn outbound(router: &Router, traceparent: Option<&str>) -> (String, String, String) {
    let mut request = Request::get("/next");
    if let Some(value) = traceparent {
        request = request.header("traceparent", value);
    }
    let response = router
        .clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let body = axum::body::to_bytes(response.into_body(), 1024)
        .await
        .unwrap();
    let body = String::from_utf8(body.to_vec()).unwrap();
    let sent: Vec<&str> = body.split(' ').collect();
    assert_eq!(sent.len(), 3, "{body:?}");
    (sent[0].to_owned(), sent[1].to_owned(), sent[2].to_owned())
}

/// The `traceparent` the current context would send.
fn traceparent() -> String {
    let mut headers = HeaderMap::new();
    faultline_telemetry::propagation::inject_current(&mut headers);
    traceparent_in(&headers)
}

fn traceparent_in(headers: &HeaderMap) -> String {
    headers
        .get("traceparent")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

fn parts(traceparent: &str) -> (String, String, String) {
    let fields: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(fields.len(), 4, "not a traceparent: {traceparent:?}");
    assert_eq!(fields[0], "00", "{traceparent}");
    (
        fields[1].to_owned(),
        fields[2].to_owned(),
        fields[3].to_owned(),
    )
}

async fn requests() {
    let telemetry = faultline_telemetry::Telemetry::init("trace-propagation", "0.0.0").unwrap();
    let routes = Router::new().route(
        "/next",
        get(|| async {
            let handler = traceparent();
            let inner = tracing::info_span!("inner").in_scope(traceparent);
            // What an outbound call sends: its client span's context.
            let call = ClientSpan::start(HttpCall {
                method: "GET",
                server_address: "catalog",
                server_port: 8080,
                url: "http://catalog:8080/api/products",
                peer_service: "catalog",
            });
            let mut headers = HeaderMap::new();
            call.inject(&mut headers);
            let client = traceparent_in(&headers);
            format!("{handler} {inner} {client}")
        }),
    );
    let router = child::behind_the_stack(routes);
    for (flags, expected) in [("00", "00"), ("01", "01")] {
        let sent = format!("00-{CALLER_TRACE}-{CALLER_SPAN}-{flags}");
        let (handler, inner, client) = outbound(&router, Some(&sent)).await;
        let (trace, span, flags) = parts(&handler);
        assert_eq!(trace, CALLER_TRACE, "the caller's trace goes on");
        assert_ne!(span, CALLER_SPAN, "with this service's span as parent");
        assert_eq!(flags, expected, "the caller's decision is followed");
        let (inner_trace, inner_span, inner_flags) = parts(&inner);
        assert_eq!(
            inner_trace, CALLER_TRACE,
            "the handler's span joins the trace"
        );
        assert_eq!(inner_flags, expected);
        let (client_trace, client_span, client_flags) = parts(&client);
        assert_eq!(client_trace, CALLER_TRACE, "the call continues the trace");
        assert_eq!(client_flags, expected);
        if expected == "01" {
            assert_ne!(inner_span, span, "a span of its own, in the trace");
            assert_ne!(client_span, span, "the call names its own client span");
            assert_ne!(client_span, inner_span);
        } else {
            assert_eq!(inner_span, span, "no span is made in an unsampled trace");
            assert_eq!(client_span, span, "nor for a call in one");
        }
    }
    // No caller: a new trace, not sampled at ratio 0, with ids of its own.
    let (first, _, flags) = parts(&outbound(&router, None).await.0);
    let (second, _, _) = parts(&outbound(&router, None).await.0);
    assert_eq!(flags, "00");
    assert_ne!(first, second);
    assert_ne!(first, CALLER_TRACE);
    telemetry.shutdown();
}

#[test]
fn the_callers_trace_and_decision_are_sent_on() {
    child::requests_in_child(
        "the_callers_trace_and_decision_are_sent_on",
        CHILD,
        child::UNSAMPLED,
        requests,
    );
}
