//! Identity end to end: bearer tokens at the gateway and again at orders,
//! orders that belong to someone, and a key rotated while the shop runs.

use std::time::Duration;

use anyhow::Context;
use faultline_auth::{Minter, Role, SigningKey, forge};
use faultline_tests::eventually;
use faultline_tests::shop_stack::{ShopStack, StackOptions};
use serde_json::{Value, json};

use crate::{SHOP_IMAGES, preflight};

/// Generous: the gateway and orders read the JWKS every second.
const ROTATION_WITHIN: Duration = Duration::from_secs(30);

/// Places an order as `client`: its id.
async fn place(client: &reqwest::Client, stack: &ShopStack, key: &str) -> anyhow::Result<String> {
    let response = client
        .post(format!("{}/api/orders", stack.gateway_url()))
        .header("Idempotency-Key", key)
        .json(&json!({ "items": [{ "product_id": 1, "quantity": 1 }] }))
        .send()
        .await?;
    let status = response.status();
    let body: Value = response.json().await?;
    anyhow::ensure!(status.is_success(), "checkout: {status} {body}");
    Ok(body["id"].as_str().context("an order id")?.to_owned())
}

/// A GET as `client`: the status and the body.
async fn get(client: &reqwest::Client, url: &str) -> anyhow::Result<(u16, Value)> {
    let response = client.get(url).send().await?;
    let status = response.status().as_u16();
    Ok((status, response.json().await.unwrap_or(Value::Null)))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_customer_reads_only_their_own_orders_and_an_admin_reads_all() -> anyhow::Result<()> {
    preflight(SHOP_IMAGES).await?;
    let stack = ShopStack::start("identity_owner", StackOptions::default()).await?;
    let alice = stack.customer("alice")?;
    let bob = stack.customer("bob")?;
    let admin = stack.keys.client_as("ops", Role::Admin)?;

    // The same Idempotency-Key from two customers: two orders, neither
    // replaying the other's answer.
    let key = uuid::Uuid::new_v4().to_string();
    let alices = place(&alice, &stack, &key).await?;
    let bobs = place(&bob, &stack, &key).await?;
    assert_ne!(alices, bobs, "an Idempotency-Key is one customer's");

    let url = |id: &str| format!("{}/api/orders/{id}", stack.gateway_url());
    let (status, order) = get(&alice, &url(&alices)).await?;
    assert_eq!(status, 200, "{order}");
    assert_eq!(order["id"], alices.as_str());
    // Bob asking for Alice's order gets exactly what a missing order gets.
    let (theirs, theirs_body) = get(&bob, &url(&alices)).await?;
    let (missing, missing_body) = get(&bob, &url(&uuid::Uuid::new_v4().to_string())).await?;
    assert_eq!(
        (theirs, missing),
        (404, 404),
        "{theirs_body} {missing_body}"
    );
    assert_eq!(theirs_body["title"], missing_body["title"]);
    assert!(
        !theirs_body.to_string().contains("alice"),
        "a 404 says nothing of the owner: {theirs_body}"
    );
    // An admin sees both.
    for id in [&alices, &bobs] {
        assert_eq!(get(&admin, &url(id)).await?.0, 200, "admin reads {id}");
    }
    // The owner is stored with the order.
    let owners: Vec<(String, String)> =
        sqlx::query_as("SELECT id::text, owner FROM orders ORDER BY owner")
            .fetch_all(&stack.db().await?)
            .await?;
    assert_eq!(
        owners,
        vec![(alices, "alice".to_owned()), (bobs, "bob".to_owned())]
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn expired_forged_and_missing_tokens_are_refused_at_the_gateway_and_at_orders()
-> anyhow::Result<()> {
    preflight(SHOP_IMAGES).await?;
    let stack = ShopStack::start("identity_refused", StackOptions::default()).await?;
    let http = faultline_tests::http_client()?;
    let minter = stack.keys.minter()?;
    // A key nobody trusts, with the trusted key's id: a forged signature.
    let forger = Minter::new(SigningKey::generate(minter.key().kid())?);
    let mut bad = forge::all(&minter, "mallory");
    bad.push((
        "signature",
        forger.token("mallory", Role::Admin, Duration::from_secs(600))?,
    ));
    bad.push(("malformed", "not-a-jwt".to_owned()));
    let order_url = format!("/api/orders/{}", uuid::Uuid::new_v4());
    for base in [stack.gateway_url(), stack.orders[0].http_url.as_str()] {
        for (reason, token) in &bad {
            for (method, path) in [("POST", "/api/orders"), ("GET", order_url.as_str())] {
                let request = match method {
                    "POST" => http
                        .post(format!("{base}{path}"))
                        .header("Idempotency-Key", uuid::Uuid::new_v4().to_string())
                        .json(&json!({ "items": [{ "product_id": 1, "quantity": 1 }] })),
                    _ => http.get(format!("{base}{path}")),
                };
                let response = request.bearer_auth(token).send().await?;
                let what = format!("{method} {base}{path} with a {reason} token");
                assert_eq!(response.status().as_u16(), 401, "{what}");
                assert_eq!(
                    response
                        .headers()
                        .get("content-type")
                        .and_then(|v| v.to_str().ok()),
                    Some("application/problem+json"),
                    "{what}"
                );
                let challenge = response
                    .headers()
                    .get("www-authenticate")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                assert!(
                    challenge.starts_with("Bearer ")
                        && challenge.contains("error=\"invalid_token\""),
                    "{what}: {challenge}"
                );
            }
        }
        // No token at all: 401 with a bare challenge.
        let response = http.get(format!("{base}{order_url}")).send().await?;
        assert_eq!(response.status().as_u16(), 401, "{base} without a token");
        assert_eq!(
            response
                .headers()
                .get("www-authenticate")
                .and_then(|v| v.to_str().ok()),
            Some("Bearer realm=\"faultline\"")
        );
    }
    // The product list stays public.
    let (status, _) = get(&http, &format!("{}/api/products", stack.gateway_url())).await?;
    assert_eq!(status, 200);
    // Nothing was written, and every refusal was counted by its reason.
    let orders: i64 = sqlx::query_scalar("SELECT count(*) FROM orders")
        .fetch_one(&stack.db().await?)
        .await?;
    assert_eq!(orders, 0);
    let metrics = stack.gateway.metrics().await?;
    for reason in [
        "expired",
        "signature",
        "algorithm",
        "unknown_key",
        "audience",
        "issuer",
    ] {
        let count = metrics
            .value("auth_failures_total", &[("reason", reason)])
            .with_context(|| format!("auth_failures_total{{reason=\"{reason}\"}}"))?;
        assert!(count >= 1.0, "{reason}: {count}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rotated_key_is_honoured_while_the_old_one_is_still_trusted() -> anyhow::Result<()> {
    preflight(SHOP_IMAGES).await?;
    let stack = ShopStack::start(
        "identity_rotation",
        StackOptions {
            jwks_served: true,
            ..StackOptions::default()
        },
    )
    .await?;
    let old_kid = stack.keys.dir().current_kid()?;
    let before = stack.customer("carol")?;
    let order = place(&before, &stack, &uuid::Uuid::new_v4().to_string()).await?;
    let url = format!("{}/api/orders/{order}", stack.gateway_url());

    // A new key: tokens it signs are refused until the gateway and orders
    // have read the new JWKS, then accepted.
    stack.keys.dir().rotate(Some("rotated"))?;
    let after = stack.customer("carol")?;
    eventually("the rotated key to be trusted", ROTATION_WITHIN, || {
        let (after, url) = (after.clone(), url.clone());
        async move {
            let (status, body) = get(&after, &url).await?;
            anyhow::ensure!(status == 200, "{status} {body}");
            Ok(())
        }
    })
    .await?;
    // The old key's tokens still work while it is in the JWKS.
    assert_eq!(
        get(&before, &url).await?.0,
        200,
        "the old key still trusted"
    );

    // Retired: the old key's tokens stop working, the new ones go on.
    stack.keys.dir().retire(&old_kid)?;
    eventually("the retired key to be refused", ROTATION_WITHIN, || {
        let (before, url) = (before.clone(), url.clone());
        async move {
            let (status, body) = get(&before, &url).await?;
            anyhow::ensure!(status == 401, "{status} {body}");
            Ok(())
        }
    })
    .await?;
    assert_eq!(get(&after, &url).await?.0, 200, "the new key still trusted");
    Ok(())
}
