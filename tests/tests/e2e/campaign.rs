//! The bad-input campaign over HTTP (see `faultline_tests::campaign`):
//! proptest-generated hostile requests at the gateway; no answer 5xx, every
//! error problem+json, no internal detail, no dropped connection (a panic in
//! a handler would drop it), and the services still ready at the end.
//!
//! CI runs 1,000 cases; the full campaign is
//!
//!   FAULTLINE_CAMPAIGN_CASES=10000 cargo nextest run -p faultline-tests --test e2e -E 'test(/campaign/)' --no-capture
//!
//! which prints the status histogram.

use std::time::Duration;

use faultline_auth::{Minter, SigningKey};
use faultline_tests::campaign::{self, Answer, Histogram, Tokens};
use faultline_tests::shop_stack::{ShopStack, StackOptions};
use futures::StreamExt;

use crate::{SHOP_IMAGES, preflight};

/// Cases in CI; FAULTLINE_CAMPAIGN_CASES overrides it.
const CI_CASES: usize = 1000;
/// Requests in flight at once.
const CONCURRENCY: usize = 8;

fn cases_wanted() -> anyhow::Result<usize> {
    match std::env::var("FAULTLINE_CAMPAIGN_CASES") {
        Ok(value) => Ok(value.parse()?),
        Err(_) => Ok(CI_CASES),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_bad_input_campaign_gets_no_5xx_and_only_problems() -> anyhow::Result<()> {
    preflight(SHOP_IMAGES).await?;
    let stack = ShopStack::start(
        "campaign",
        StackOptions {
            // The campaign is one client sending fast: the rate limit would
            // answer most cases with 429 before they reach anything else.
            gateway_env: vec![
                ("FAULTLINE_RATE_LIMIT_PER_SECOND", "100000".into()),
                ("FAULTLINE_RATE_LIMIT_BURST", "100000".into()),
            ],
            ..StackOptions::default()
        },
    )
    .await?;
    let minter = stack.keys.minter()?;
    let untrusted = Minter::new(SigningKey::generate(minter.key().kid())?);
    let tokens = Tokens::new(&minter, &untrusted)?;
    let count = cases_wanted()?;
    let cases = campaign::sample(&tokens, count, 2026)?;
    // Its own client: no default headers, a bounded wait per case, and a new
    // connection per case. A server may close a connection after refusing a
    // request whose body it did not read; a pooled client that reuses it in
    // that instant sees "connection closed" for the next, innocent case.
    // Fresh connections make "no answer" mean the server dropped this case.
    let http = faultline_tests::http_client_builder()
        .timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(0)
        .build()?;
    let base = stack.gateway_url().to_owned();

    let answers = futures::stream::iter(cases.iter().cloned())
        .map(|case| {
            let (http, base) = (http.clone(), base.clone());
            async move {
                let method = reqwest::Method::from_bytes(case.method.as_bytes())?;
                let mut request = http.request(method, format!("{base}{}", case.path));
                for (name, value) in &case.headers {
                    request = request.header(name.as_str(), value.as_slice());
                }
                if let Some(body) = &case.body {
                    request = request.body(body.clone());
                }
                let response = match request.send().await {
                    Ok(response) => response,
                    Err(err) => {
                        return Err(anyhow::anyhow!(
                            "{} {} [{}] headers {:?}: {err}",
                            case.method,
                            case.path,
                            case.kind,
                            case.headers
                                .iter()
                                .map(|(n, v)| format!("{n} ({} bytes)", v.len()))
                                .collect::<Vec<_>>()
                        ));
                    }
                };
                let status = response.status().as_u16();
                let headers = response
                    .headers()
                    .iter()
                    .map(|(name, value)| {
                        (
                            name.as_str().to_owned(),
                            String::from_utf8_lossy(value.as_bytes()).into_owned(),
                        )
                    })
                    .collect();
                let body = response.bytes().await?.to_vec();
                Ok::<_, anyhow::Error>((
                    case,
                    Answer {
                        status,
                        headers,
                        body,
                    },
                ))
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect::<Vec<_>>()
        .await;

    let mut histogram = Histogram::new();
    // One example per kind of failure, with its count.
    let mut failures: std::collections::BTreeMap<String, (u64, String)> =
        std::collections::BTreeMap::new();
    let mut no_answer = Vec::new();
    for result in answers {
        match result {
            Ok((case, answer)) => {
                *histogram.entry(answer.status).or_default() += 1;
                if let Err(why) = campaign::judge(&case, &answer) {
                    let entry = failures.entry(why.clone()).or_default();
                    entry.0 += 1;
                    entry.1 = format!(
                        "{} {} [{}] headers {:?} -> {}",
                        case.method,
                        case.path,
                        case.kind,
                        case.headers
                            .iter()
                            .map(|(n, v)| format!(
                                "{n}: {}",
                                String::from_utf8_lossy(v)
                                    .chars()
                                    .take(80)
                                    .collect::<String>()
                            ))
                            .collect::<Vec<_>>(),
                        String::from_utf8_lossy(&answer.body)
                            .chars()
                            .take(300)
                            .collect::<String>()
                    );
                }
            }
            Err(err) => no_answer.push(format!("{err:#}")),
        }
    }
    eprintln!("campaign: {count} cases, statuses {histogram:?}");
    assert!(
        no_answer.is_empty(),
        "{} case(s) got no answer: {:#?}",
        no_answer.len(),
        &no_answer[..no_answer.len().min(10)]
    );
    let broken: u64 = failures.values().map(|(n, _)| n).sum();
    assert!(
        failures.is_empty(),
        "{broken} of {count} answer(s) broke the rules; by kind (count, an example): {failures:#?}"
    );
    assert!(
        histogram.keys().all(|status| *status < 500),
        "{histogram:?}"
    );
    // The campaign reached past authentication and validation: some cases
    // were accepted, some refused for their token, some for their body.
    for status in [200, 401, 400, 422] {
        assert!(
            histogram.contains_key(&status),
            "no {status} in {histogram:?}"
        );
    }
    // Nothing fell over.
    for service in [&stack.gateway, &stack.orders[0], &stack.catalog] {
        service.wait_ready(Duration::from_secs(10)).await?;
    }
    Ok(())
}
