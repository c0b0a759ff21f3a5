//! The OpenAPI document states every rule the server enforces: requests
//! generated from the document alone, as a schema-driven fuzzer sends them,
//! are accepted, or refused only with a status the document lists for the
//! operation, every error as problem+json, every body as the document
//! describes it.
//!
//! `FAULTLINE_OPENAPI_CASES` sets how many requests (300 by default),
//! `FAULTLINE_OPENAPI_SEED` the seed (fixed by default, so a run repeats).
//! The stack's rate limit is raised so that every request gets past it (a
//! 429 would still be checked against the document). The histogram of
//! answers goes to stderr (`--no-capture` shows it).

use anyhow::{Context, ensure};
use faultline_tests::openapi_requests::{
    ApiDocument, GeneratedRequest, Histogram, Operation, sample,
};
use faultline_tests::shop_stack::{ShopStack, StackOptions};
use serde_json::Value;

use crate::{SHOP_IMAGES, preflight};

const DEFAULT_CASES: usize = 300;
const DEFAULT_SEED: u64 = 0x0a91_2026;
/// At most this many failures are spelled out.
const SHOWN: usize = 20;

fn env_number<T: std::str::FromStr>(name: &str, default: T) -> anyhow::Result<T> {
    match std::env::var(name) {
        Ok(value) => value
            .trim()
            .parse()
            .ok()
            .with_context(|| format!("{name}={value:?} is not a number")),
        Err(_) => Ok(default),
    }
}

/// An answer, as much of it as the checks need.
#[derive(Debug)]
struct Answer {
    status: u16,
    content_type: Option<String>,
    /// `Retry-After`, in seconds.
    retry_after: Option<u64>,
    www_authenticate: bool,
    body: Vec<u8>,
}

/// Sends `request`, with the bearer `token` where the request says so.
async fn send(
    http: &reqwest::Client,
    base: &str,
    request: &GeneratedRequest,
    token: Option<&str>,
) -> anyhow::Result<Answer> {
    let method = reqwest::Method::from_bytes(request.method.as_bytes())?;
    let mut builder = http.request(method, format!("{base}{}", request.path));
    for (name, value) in &request.headers {
        builder = builder.header(name, value);
    }
    if let (true, Some(token)) = (request.bearer, token) {
        builder = builder.bearer_auth(token);
    }
    if let Some(body) = &request.body {
        builder = builder
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(serde_json::to_vec(body)?);
    }
    let response = builder.send().await?;
    let header = |name| {
        response
            .headers()
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
    };
    Ok(Answer {
        status: response.status().as_u16(),
        content_type: header(reqwest::header::CONTENT_TYPE),
        retry_after: header(reqwest::header::RETRY_AFTER).and_then(|v| v.trim().parse().ok()),
        www_authenticate: header(reqwest::header::WWW_AUTHENTICATE).is_some(),
        body: response.bytes().await?.to_vec(),
    })
}

/// The refusals (400, 422) of a request that fits the document which no
/// schema keyword can state, by operation and status: fragments of the
/// problem's `detail`. Any other such refusal of a generated request is a
/// rule the document fails to state (what a fuzzer's "schema-valid data is
/// accepted" check reports), even though its status is documented.
const BEYOND_SCHEMA: &[(&str, u16, &[&str])] = &[(
    "POST /api/orders",
    422,
    &[
        // An id the catalog does not hold, as the catalog or orders says it.
        "no product ",
        "does not exist",
        // One product in two lines with different quantities (uniqueItems
        // only rules out equal lines).
        "appears twice",
        // An Idempotency-Key drawn twice, with two bodies.
        "already used with a different request body",
    ],
)];

/// What in `answer` the document does not say.
fn check(api: &ApiDocument, op: &Operation, answer: &Answer) -> Vec<String> {
    let status = answer.status;
    let mut problems = api
        .check_answer(op, status, answer.content_type.as_deref(), &answer.body)
        .err()
        .unwrap_or_default();
    if status == 400 || status == 422 {
        let detail = serde_json::from_slice::<Value>(&answer.body)
            .ok()
            .and_then(|problem| problem["detail"].as_str().map(str::to_owned))
            .unwrap_or_default();
        let id = op.id();
        let explained = BEYOND_SCHEMA.iter().any(|(operation, code, fragments)| {
            *operation == id
                && *code == status
                && fragments.iter().any(|fragment| detail.contains(fragment))
        });
        if !explained {
            problems.push(format!(
                "a request that fits the document is refused with {status} ({detail:?}): a rule the document does not state"
            ));
        }
    }
    if status >= 400
        && !answer
            .content_type
            .as_deref()
            .is_some_and(|t| t.starts_with("application/problem+json"))
    {
        problems.push(format!(
            "{status} is {:?}, not problem+json",
            answer.content_type
        ));
    }
    if status == 429 && answer.retry_after.is_none() {
        problems.push("429 without Retry-After".into());
    }
    if status == 401 && !answer.www_authenticate {
        problems.push("401 without WWW-Authenticate".into());
    }
    problems
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_generated_from_the_document_get_documented_answers() -> anyhow::Result<()> {
    let cases = env_number("FAULTLINE_OPENAPI_CASES", DEFAULT_CASES)?;
    let seed = env_number("FAULTLINE_OPENAPI_SEED", DEFAULT_SEED)?;
    preflight(SHOP_IMAGES).await?;
    // One client sending back to back: with the default limit most requests
    // would be answered 429 before reaching anything the document states
    // (a 429 is still checked against the document when it comes; the
    // resilience tests prove the limit itself).
    let stack = ShopStack::start(
        "openapi",
        StackOptions {
            gateway_env: vec![
                ("FAULTLINE_RATE_LIMIT_PER_SECOND", "100000".into()),
                ("FAULTLINE_RATE_LIMIT_BURST", "100000".into()),
            ],
            ..StackOptions::default()
        },
    )
    .await?;
    let http = faultline_tests::http_client()?;
    let base = stack.gateway_url().to_owned();

    let doc: Value = http
        .get(format!("{base}/openapi.json"))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let api = ApiDocument::new(doc)?;
    let requests = sample(&api.requests()?, cases, seed)?;
    let token = stack.bearer_for("openapi-fuzzer");

    let mut histogram = Histogram::default();
    let mut failures = Vec::new();
    for request in &requests {
        let op = &api.operations()[request.operation];
        let answer = send(&http, &base, request, token.as_deref())
            .await
            .with_context(|| format!("sending {request:?}"))?;
        histogram.record(&op.id(), answer.status);
        let problems = check(&api, op, &answer);
        if !problems.is_empty() {
            failures.push(format!(
                "{} {} headers {:?} body {} (bearer: {}) → {} {}: {}",
                request.method,
                request.path,
                request.headers,
                request
                    .body
                    .as_ref()
                    .map_or_else(String::new, Value::to_string),
                request.bearer && token.is_some(),
                answer.status,
                String::from_utf8_lossy(&answer.body),
                problems.join("; ")
            ));
        }
    }
    eprintln!(
        "{} requests generated from /openapi.json (seed {seed:#x}, bearer token: {}); {} answers:\n{histogram}",
        requests.len(),
        if token.is_some() { "yes" } else { "none" },
        histogram.totals().values().sum::<usize>(),
    );
    ensure!(
        failures.is_empty(),
        "{} of {} answers are not what the document says:\n{}",
        failures.len(),
        requests.len(),
        failures
            .iter()
            .take(SHOWN)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    for op in api.operations() {
        ensure!(
            histogram.0.contains_key(&op.id()),
            "no request tried {}",
            op.id()
        );
    }
    let totals = histogram.totals();
    ensure!(
        totals.range(200..300).count() > 0,
        "no request was accepted: {totals:?}"
    );
    Ok(())
}
