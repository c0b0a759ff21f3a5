//! The admin surfaces are locked (issue 18, section 3): neither the fault
//! admin API nor the fault proxy's control API (nor `/metrics`) is reachable
//! through the gateway's public port, and both refuse a call without their
//! credential, changing nothing.

use anyhow::{Context, ensure};
use faultline_tests::shop_stack::{ShopStack, StackOptions};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::{SHOP_IMAGES, preflight};

/// Status, content type, `WWW-Authenticate` and body of one call.
struct Answer {
    status: StatusCode,
    content_type: String,
    challenge: String,
    body: String,
}

async fn call(
    http: &reqwest::Client,
    method: Method,
    url: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> anyhow::Result<Answer> {
    let mut request = http.request(method.clone(), url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(body);
    }
    let response = request
        .send()
        .await
        .with_context(|| format!("{method} {url}"))?;
    let header = |name| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let (content_type, challenge) = (header("content-type"), header("www-authenticate"));
    Ok(Answer {
        status: response.status(),
        content_type,
        challenge,
        body: response.text().await?,
    })
}

/// The active faults of one service, read with its token.
async fn active_faults(
    http: &reqwest::Client,
    admin_url: &str,
    token: &str,
) -> anyhow::Result<Vec<Value>> {
    let answer = call(
        http,
        Method::GET,
        &format!("{admin_url}/faults"),
        Some(token),
        None,
    )
    .await?;
    ensure!(
        answer.status == StatusCode::OK,
        "GET {admin_url}/faults with the token answered {}: {}",
        answer.status,
        answer.body
    );
    Ok(serde_json::from_str(&answer.body)?)
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_surfaces_are_not_public_and_refuse_calls_without_their_token() -> anyhow::Result<()>
{
    preflight(SHOP_IMAGES).await?;
    let stack = ShopStack::start(
        "admin_surfaces",
        StackOptions {
            fault_admin: true,
            payments_through_proxy: true,
            ..StackOptions::default()
        },
    )
    .await?;
    let http = faultline_tests::http_client()?;
    let admin_token = stack
        .fault_admin_token
        .clone()
        .context("the stack's fault admin token")?;
    let proxy = stack.proxy.as_ref().context("the stack has the proxy")?;
    let services: Vec<(&str, String)> = stack
        .services()
        .into_iter()
        .map(|shop| {
            let url = shop
                .fault_admin_url
                .clone()
                .with_context(|| format!("{} has no fault admin API", shop.host))?;
            Ok((shop.host.as_str(), url))
        })
        .collect::<anyhow::Result<_>>()?;

    // (a) Through the gateway's public port: the fault admin's, the proxy's
    // and the admin listener's paths are not there, credential or not.
    let gateway = stack.gateway_url();
    let fault = json!({ "kind": "error_ratio", "ratio": 1.0 });
    let link = json!({ "name": "sneaky", "listen": "0.0.0.0:18999", "upstream": "payments:8080" });
    let toxic = json!({ "type": "latency", "attributes": { "latency": 1000 } });
    let disable = json!({ "enabled": false });
    let populate = json!([link]);
    let public_calls: [(Method, &str, Option<&Value>, &str); 12] = [
        (Method::GET, "/faults", None, &admin_token),
        (Method::POST, "/faults", Some(&fault), &admin_token),
        (Method::DELETE, "/faults", None, &admin_token),
        (Method::DELETE, "/faults/latency", None, &admin_token),
        (Method::GET, "/proxies", None, &proxy.api_token),
        (Method::POST, "/proxies", Some(&link), &proxy.api_token),
        (
            Method::POST,
            "/proxies/payments",
            Some(&disable),
            &proxy.api_token,
        ),
        (
            Method::POST,
            "/proxies/payments/toxics",
            Some(&toxic),
            &proxy.api_token,
        ),
        (Method::POST, "/reset", None, &proxy.api_token),
        (Method::POST, "/populate", Some(&populate), &proxy.api_token),
        (Method::GET, "/metrics", None, &admin_token),
        (Method::GET, "/version", None, &proxy.api_token),
    ];
    for (method, path, body, token) in &public_calls {
        let url = format!("{gateway}{path}");
        let answer = call(&http, method.clone(), &url, None, *body).await?;
        assert_eq!(
            answer.status,
            StatusCode::NOT_FOUND,
            "{method} {path} on the public port: {}",
            answer.body
        );
        assert_eq!(
            answer.content_type, "application/problem+json",
            "{method} {path}"
        );
        // With the surface's own credential: still nothing there (the
        // gateway may refuse a bearer token that is not its kind first).
        let answer = call(&http, method.clone(), &url, Some(token), *body).await?;
        assert!(
            matches!(
                answer.status,
                StatusCode::NOT_FOUND | StatusCode::UNAUTHORIZED
            ),
            "{method} {path} on the public port with a token: {} {}",
            answer.status,
            answer.body
        );
        assert_eq!(
            answer.content_type, "application/problem+json",
            "{method} {path} with a token"
        );
        assert!(
            !answer.body.contains("# TYPE") && !answer.body.contains("\"proxies\""),
            "{method} {path}: {}",
            answer.body
        );
    }
    for (host, admin_url) in &services {
        let active = active_faults(&http, admin_url, &admin_token).await?;
        assert!(active.is_empty(), "{host} has faults: {active:?}");
    }

    // (b) The fault admin API itself, without its token or with another:
    // 401 problem+json with the Bearer challenge, and nothing created.
    let wrong = format!("{admin_token}-not");
    for (host, admin_url) in &services {
        for token in [None, Some("wrong"), Some(wrong.as_str())] {
            for (method, body) in [
                (Method::POST, Some(&fault)),
                (Method::GET, None),
                (Method::DELETE, None),
            ] {
                let what = format!("{method} {host} /faults with {token:?}");
                let answer =
                    call(&http, method, &format!("{admin_url}/faults"), token, body).await?;
                assert_eq!(
                    answer.status,
                    StatusCode::UNAUTHORIZED,
                    "{what}: {}",
                    answer.body
                );
                assert_eq!(answer.content_type, "application/problem+json", "{what}");
                assert!(
                    answer
                        .challenge
                        .starts_with(r#"Bearer realm="faultline-fault-admin""#),
                    "{what}: {:?}",
                    answer.challenge
                );
                assert!(!answer.body.contains(&admin_token), "{what}");
            }
        }
        let active = active_faults(&http, admin_url, &admin_token).await?;
        assert!(
            active.is_empty(),
            "a refused call left a fault on {host}: {active:?}"
        );
    }
    // And the shop answers as if nothing was asked.
    let products = call(
        &http,
        Method::GET,
        &format!("{gateway}/api/products"),
        None,
        None,
    )
    .await?;
    assert_eq!(products.status, StatusCode::OK, "{}", products.body);

    // (c) The proxy's control API, which has a token in the stack: refused
    // without it (or with another), accepted with it.
    let api = &proxy.api_url;
    let wrong = format!("{}-not", proxy.api_token);
    for token in [None, Some("wrong"), Some(wrong.as_str())] {
        for (method, path, body) in [
            (Method::GET, "/proxies", None),
            (Method::POST, "/proxies/payments/toxics", Some(&toxic)),
            (Method::POST, "/proxies/payments", Some(&disable)),
            (Method::POST, "/reset", None),
        ] {
            let what = format!("{method} {path} with {token:?}");
            let answer = call(&http, method, &format!("{api}{path}"), token, body).await?;
            assert_eq!(
                answer.status,
                StatusCode::UNAUTHORIZED,
                "{what}: {}",
                answer.body
            );
            assert_eq!(answer.content_type, "application/problem+json", "{what}");
            assert!(
                answer
                    .challenge
                    .starts_with(r#"Bearer realm="faultline-proxy""#),
                "{what}: {:?}",
                answer.challenge
            );
        }
    }
    let listed = call(
        &http,
        Method::GET,
        &format!("{api}/proxies"),
        Some(&proxy.api_token),
        None,
    )
    .await?;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.body);
    let proxies: Value = serde_json::from_str(&listed.body)?;
    let payments = &proxies["payments"];
    assert_eq!(payments["enabled"], true, "{proxies}");
    assert_eq!(
        payments["toxics"],
        json!([]),
        "a refused call added a toxic"
    );
    assert!(proxies.get("sneaky").is_none(), "{proxies}");
    // With the token, a change goes through (and is undone).
    let added = call(
        &http,
        Method::POST,
        &format!("{api}/proxies/payments/toxics"),
        Some(&proxy.api_token),
        Some(&json!({ "name": "probe", "type": "latency", "attributes": { "latency": 1 } })),
    )
    .await?;
    assert_eq!(added.status, StatusCode::OK, "{}", added.body);
    let removed = call(
        &http,
        Method::DELETE,
        &format!("{api}/proxies/payments/toxics/probe"),
        Some(&proxy.api_token),
        None,
    )
    .await?;
    assert_eq!(removed.status, StatusCode::NO_CONTENT, "{}", removed.body);
    // What Prometheus scrapes and clients ask first stays open.
    for path in ["/version", "/metrics"] {
        let answer = call(&http, Method::GET, &format!("{api}{path}"), None, None).await?;
        assert_eq!(answer.status, StatusCode::OK, "{path}: {}", answer.body);
    }
    Ok(())
}
