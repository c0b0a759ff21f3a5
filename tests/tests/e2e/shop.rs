//! The shop end to end: a checkout through the gateway, idempotency, bad
//! input, one trace across every hop, and the metric catalog.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use anyhow::{Context, ensure};
use faultline_telemetry::Catalog;
use faultline_tests::eventually;
use faultline_tests::otlp::OtlpReceiver;
use faultline_tests::shop_stack::{ShopStack, StackOptions};
use serde_json::{Value, json};

use crate::{BROKER_IMAGES, SHOP_IMAGES, preflight};

const SETTLE_WITHIN: Duration = Duration::from_secs(30);

async fn post_order(
    http: &reqwest::Client,
    stack: &ShopStack,
    key: &str,
    body: &Value,
) -> anyhow::Result<(u16, Value)> {
    let response = http
        .post(format!("{}/api/orders", stack.gateway_url()))
        .header("Idempotency-Key", key)
        .json(body)
        .send()
        .await?;
    let status = response.status().as_u16();
    Ok((status, response.json().await?))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_checkout_is_placed_and_its_event_processed_exactly_once() -> anyhow::Result<()> {
    preflight(SHOP_IMAGES).await?;
    let stack = ShopStack::start("checkout", StackOptions::default()).await?;
    let http = stack.customer("e2e-customer")?;
    let db = stack.db().await?;

    let products: Value = http
        .get(format!("{}/api/products", stack.gateway_url()))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let first = &products["products"][0];
    let stock_before = first["stock"].as_i64().context("stock")?;
    let product_id = first["id"].as_i64().context("id")?;

    let key = uuid::Uuid::new_v4().to_string();
    let (status, order) = post_order(
        &http,
        &stack,
        &key,
        &json!({ "items": [{ "product_id": product_id, "quantity": 2 }] }),
    )
    .await?;
    assert!(status == 201 || status == 202, "{status}: {order}");
    let order_id: uuid::Uuid = order["id"].as_str().context("order id")?.parse()?;

    // The order is readable through the gateway.
    let fetched: Value = http
        .get(format!("{}/api/orders/{order_id}", stack.gateway_url()))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    assert_eq!(fetched["id"], order["id"]);

    // The stock went down by exactly the quantity.
    let stock_after: i32 = sqlx::query_scalar("SELECT stock FROM products WHERE id = $1")
        .bind(product_id)
        .fetch_one(&db)
        .await?;
    assert_eq!(i64::from(stock_after), stock_before - 2);

    // The worker processes the order's event, once.
    let event_id: uuid::Uuid = eventually(
        "the outbox event to be processed",
        SETTLE_WITHIN,
        || async {
            let row: Option<(uuid::Uuid, bool)> = sqlx::query_as(
                "SELECT event_id, processed_at IS NOT NULL FROM outbox WHERE aggregate_id = $1",
            )
            .bind(order_id)
            .fetch_optional(&db)
            .await?;
            match row {
                Some((event_id, true)) => Ok(event_id),
                other => anyhow::bail!("event state: {other:?}"),
            }
        },
    )
    .await?;
    let processed: i64 =
        sqlx::query_scalar("SELECT count(*) FROM processed_events WHERE event_id = $1")
            .bind(event_id)
            .fetch_one(&db)
            .await?;
    let notified: i64 =
        sqlx::query_scalar("SELECT count(*) FROM notifications WHERE order_id = $1")
            .bind(order_id)
            .fetch_one(&db)
            .await?;
    assert_eq!((processed, notified), (1, 1));
    let status: String = sqlx::query_scalar("SELECT status FROM orders WHERE id = $1")
        .bind(order_id)
        .fetch_one(&db)
        .await?;
    assert_eq!(status, "paid");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_identical_checkouts_create_one_order() -> anyhow::Result<()> {
    preflight(SHOP_IMAGES).await?;
    let stack = ShopStack::start("idempotency", StackOptions::default()).await?;
    let http = stack.customer("e2e-customer")?;
    let key = uuid::Uuid::new_v4().to_string();
    let body = json!({ "items": [{ "product_id": 3, "quantity": 1 }, { "product_id": 4, "quantity": 2 }] });

    let attempts = (0..8).map(|_| post_order(&http, &stack, &key, &body));
    let results = futures::future::join_all(attempts).await;
    let mut ids = BTreeSet::new();
    for result in results {
        let (status, answer) = result?;
        ensure!(status == 201 || status == 202, "{status}: {answer}");
        ids.insert(answer["id"].as_str().context("id")?.to_owned());
    }
    assert_eq!(ids.len(), 1, "every answer names the same order: {ids:?}");

    let db = stack.db().await?;
    let orders: i64 = sqlx::query_scalar("SELECT count(*) FROM orders WHERE idempotency_key = $1")
        .bind(&key)
        .fetch_one(&db)
        .await?;
    assert_eq!(orders, 1);
    let reserved: i64 = sqlx::query_scalar(
        "SELECT COALESCE(sum(quantity), 0) FROM reservations WHERE status = 'reserved'",
    )
    .fetch_one(&db)
    .await?;
    assert_eq!(reserved, 3, "stock was taken once");

    // The same key with another body is refused, and creates nothing.
    let (status, answer) = post_order(
        &http,
        &stack,
        &key,
        &json!({ "items": [{ "product_id": 3, "quantity": 5 }] }),
    )
    .await?;
    assert_eq!(status, 422, "{answer}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_gets_a_clear_4xx_problem_never_a_5xx() -> anyhow::Result<()> {
    preflight(SHOP_IMAGES).await?;
    let stack = ShopStack::start("bad_input", StackOptions::default()).await?;
    let http = stack.customer("e2e-customer")?;
    let url = format!("{}/api/orders", stack.gateway_url());
    let good_key = || uuid::Uuid::new_v4().to_string();
    let json_body = |items: Value| json!({ "items": items }).to_string();
    let huge = "x".repeat(200 * 1024);
    let cases: Vec<(&str, String, String, u16, &str)> = vec![
        (
            "malformed JSON",
            good_key(),
            "{\"items\": [".into(),
            400,
            "parse",
        ),
        (
            "wrong type",
            good_key(),
            json_body(json!([{ "product_id": "one", "quantity": 1 }])),
            422,
            "product_id",
        ),
        (
            "unknown field",
            good_key(),
            json!({ "items": [], "coupon": "x" }).to_string(),
            422,
            "coupon",
        ),
        (
            "unknown product",
            good_key(),
            json_body(json!([{ "product_id": 999_999, "quantity": 1 }])),
            422,
            "999999",
        ),
        (
            "zero quantity",
            good_key(),
            json_body(json!([{ "product_id": 1, "quantity": 0 }])),
            422,
            "quantity",
        ),
        (
            "negative quantity",
            good_key(),
            json_body(json!([{ "product_id": 1, "quantity": -3 }])),
            422,
            "quantity",
        ),
        (
            "huge quantity",
            good_key(),
            json_body(json!([{ "product_id": 1, "quantity": 1_000_000_000_000_i64 }])),
            422,
            "quantity",
        ),
        (
            "no items",
            good_key(),
            json_body(json!([])),
            422,
            "at least one",
        ),
        (
            "oversize body",
            good_key(),
            json!({ "items": [], "pad": huge }).to_string(),
            413,
            "limit",
        ),
        (
            "key with spaces",
            "not a key".into(),
            json_body(json!([{ "product_id": 1, "quantity": 1 }])),
            400,
            "Idempotency-Key",
        ),
        (
            "key too long",
            "k".repeat(300),
            json_body(json!([{ "product_id": 1, "quantity": 1 }])),
            400,
            "Idempotency-Key",
        ),
    ];
    for (name, key, body, want, mentions) in cases {
        let response = http
            .post(&url)
            .header("Idempotency-Key", key)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .with_context(|| name.to_owned())?;
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let connection = response.headers().get("connection").cloned();
        let text = response.text().await?;
        assert_eq!(status, want, "{name}: {text}");
        if status == 413 {
            // The unread body ends the connection, and the answer says so, so
            // the client does not reuse it for the next case.
            assert_eq!(
                connection.as_ref().and_then(|v| v.to_str().ok()),
                Some("close"),
                "{name}"
            );
        }
        assert_eq!(content_type, "application/problem+json", "{name}");
        let problem: Value =
            serde_json::from_str(&text).with_context(|| format!("{name}: {text}"))?;
        let detail = problem["detail"].as_str().unwrap_or_default();
        assert!(
            detail.contains(mentions),
            "{name}: the detail should mention {mentions:?}: {detail}"
        );
    }
    // A missing key, a bad product id in the path and an unknown route.
    let missing_key = http.post(&url).json(&json!({ "items": [] })).send().await?;
    assert_eq!(missing_key.status().as_u16(), 400);
    for path in [
        "/api/products/abc",
        "/api/orders/not-a-uuid",
        "/api/nothing-here",
    ] {
        let response = http
            .get(format!("{}{path}", stack.gateway_url()))
            .send()
            .await?;
        let status = response.status().as_u16();
        assert!((400..500).contains(&status), "{path}: {status}");
        assert_eq!(
            response
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok()),
            Some("application/problem+json"),
            "{path}"
        );
    }
    // Nothing of the above created an order.
    let orders: i64 = sqlx::query_scalar("SELECT count(*) FROM orders")
        .fetch_one(&stack.db().await?)
        .await?;
    assert_eq!(orders, 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn one_checkout_gives_one_trace_across_every_hop() -> anyhow::Result<()> {
    preflight(BROKER_IMAGES).await?;
    let receiver = OtlpReceiver::start().await?;
    // Through the broker: orders' relay publishes the event, the worker
    // consumes it, and the trace goes on across both.
    let stack = ShopStack::start(
        "tracing",
        StackOptions {
            otlp_port: Some(receiver.port()),
            broker: true,
            ..StackOptions::default()
        },
    )
    .await?;
    let http = stack.customer("e2e-customer")?;
    // The test is the client: it starts the trace, as a browser or an edge proxy would.
    let trace_id = format!("{:032x}", uuid::Uuid::new_v4().as_u128());
    let root_span = "00f067aa0ba902b7";
    let response = http
        .post(format!("{}/api/orders", stack.gateway_url()))
        .header("traceparent", format!("00-{trace_id}-{root_span}-01"))
        .header("Idempotency-Key", uuid::Uuid::new_v4().to_string())
        .json(&json!({ "items": [{ "product_id": 2, "quantity": 1 }] }))
        .send()
        .await?;
    assert!(response.status().is_success(), "{}", response.text().await?);

    let wanted: BTreeSet<&str> = ["gateway", "orders", "catalog", "payments", "worker"].into();
    let spans = eventually(
        "spans from every service in one trace",
        SETTLE_WITHIN,
        || async {
            let spans = receiver.trace(&trace_id);
            let services: BTreeSet<&str> = spans.iter().map(|s| s.service.as_str()).collect();
            let missing: Vec<_> = wanted.difference(&services).collect();
            ensure!(
                missing.is_empty(),
                "no spans yet from {missing:?} ({} spans)",
                spans.len()
            );
            // Each service exports in batches of its own: a child can arrive
            // before its parent (the worker's span before the relay's
            // publish, which ends only at the broker's confirm). The trace
            // is whole once every parent has arrived.
            let ids: BTreeSet<&str> = spans.iter().map(|s| s.span_id.as_str()).collect();
            let orphans = spans
                .iter()
                .filter(|s| {
                    s.parent_span_id != root_span && !ids.contains(s.parent_span_id.as_str())
                })
                .count();
            ensure!(
                orphans == 0,
                "{orphans} spans whose parent has not arrived yet"
            );
            Ok(spans)
        },
    )
    .await?;

    eprintln!("the checkout's trace:\n{}", span_tree(&spans, root_span));

    // Every parent is in the trace (the wait above), except the root's,
    // which is the test's span.
    let ids: HashMap<&str, &str> = spans
        .iter()
        .map(|s| (s.span_id.as_str(), s.service.as_str()))
        .collect();
    let find = |service: &str, name: &str| {
        spans
            .iter()
            .find(|s| s.service == service && s.name == name)
            .with_context(|| {
                format!(
                    "no {service} span named {name:?} in {:#?}",
                    spans
                        .iter()
                        .map(|s| (&s.service, &s.name))
                        .collect::<Vec<_>>()
                )
            })
    };
    // Semantic-convention names and the hops' parent links.
    let gateway = find("gateway", "POST /api/orders")?;
    assert_eq!(gateway.parent_span_id, root_span);
    assert_eq!(
        gateway.attributes.get("http.route").map(String::as_str),
        Some("/api/orders")
    );
    assert_eq!(gateway.kind, 2, "the gateway's span is a server span");
    let orders = find("orders", "POST /api/orders")?;
    assert_eq!(orders.kind, 2);
    let by_id = |id: &str| spans.iter().find(|s| s.span_id == id);
    let call = by_id(&orders.parent_span_id).context("orders' parent is in the trace")?;
    assert_eq!(
        (call.service.as_str(), call.kind, call.name.as_str()),
        ("gateway", 3, "POST"),
        "orders' parent is the gateway's client span"
    );
    assert_eq!(
        call.parent_span_id, gateway.span_id,
        "the client span is the gateway's server span's child"
    );
    assert_eq!(
        call.attributes.get("peer.service").map(String::as_str),
        Some("orders")
    );
    assert_eq!(
        call.attributes
            .get("http.response.status_code")
            .map(String::as_str),
        Some("201"),
        "{call:?}"
    );
    let catalog = find("catalog", "POST /api/reservations")?;
    assert_eq!(ids.get(catalog.parent_span_id.as_str()), Some(&"orders"));
    let payments = find("payments", "POST /api/payments/authorizations")?;
    assert_eq!(ids.get(payments.parent_span_id.as_str()), Some(&"orders"));
    // The relay's producer span continues the checkout that wrote the
    // event, and carries the semantic conventions of messaging.
    let publish = find("orders", "publish faultline.orders")?;
    assert_eq!(
        ids.get(publish.parent_span_id.as_str()),
        Some(&"orders"),
        "the relay's publish continues the checkout's trace"
    );
    for (key, value) in [
        ("messaging.system", "rabbitmq"),
        ("messaging.operation.type", "send"),
        ("messaging.destination.name", "faultline.orders"),
        ("messaging.rabbitmq.destination.routing_key", "order.placed"),
    ] {
        assert_eq!(
            publish.attributes.get(key).map(String::as_str),
            Some(value),
            "{key} on {:?}",
            publish.attributes
        );
    }
    let worker = find("worker", "process order.placed")?;
    assert_eq!(
        worker.parent_span_id, publish.span_id,
        "the worker continues the trace from the publish span, across the broker"
    );
    assert_eq!(
        worker
            .attributes
            .get("messaging.system")
            .map(String::as_str),
        Some("rabbitmq")
    );
    // And links to the producer: the very span that sent the message.
    assert_eq!(
        worker.links,
        vec![(trace_id.clone(), publish.span_id.clone())],
        "the worker's span links to the relay's publish span"
    );
    let db_span = find("catalog", "UPDATE products")?;
    assert_eq!(
        db_span.attributes.get("db.system.name").map(String::as_str),
        Some("postgresql")
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn services_render_exactly_the_metric_catalog() -> anyhow::Result<()> {
    preflight(BROKER_IMAGES).await?;
    // With the broker: orders and the worker render its clients' metrics.
    let stack = ShopStack::start(
        "metric_catalog",
        StackOptions {
            broker: true,
            ..StackOptions::default()
        },
    )
    .await?;
    let http = stack.customer("e2e-customer")?;
    // Some traffic, so that every histogram has samples.
    for _ in 0..3 {
        http.get(format!("{}/api/products", stack.gateway_url()))
            .send()
            .await?;
        http.get(format!("{}/api/products/1", stack.gateway_url()))
            .send()
            .await?;
    }
    let (status, order) = post_order(
        &http,
        &stack,
        &uuid::Uuid::new_v4().to_string(),
        &json!({ "items": [{ "product_id": 1, "quantity": 1 }] }),
    )
    .await?;
    assert!(status == 201 || status == 202, "{order}");

    let catalog = Catalog::embedded()?;
    // Orders' relay publishes the order's event after the answer, and the
    // worker consumes it later still: the pages are read again until every
    // metric of the catalog is rendered somewhere, not once.
    let pages = eventually(
        "every metric of the catalog to be rendered",
        SETTLE_WITHIN,
        || async {
            let mut pages = Vec::new();
            for service in stack.services() {
                pages.push((service.host.clone(), service.metrics().await?));
            }
            let rendered: BTreeSet<&str> = pages
                .iter()
                .flat_map(|(_, page)| page.series_names())
                .filter_map(|series| catalog.metric_of_series(series))
                .map(|spec| spec.name.as_str())
                .collect();
            let missing: Vec<&str> = catalog
                .iter()
                .filter(|spec| {
                    spec.source != "proxy"
                        && !spec.optional
                        && !rendered.contains(spec.name.as_str())
                })
                .map(|spec| spec.name.as_str())
                .collect();
            ensure!(
                missing.is_empty(),
                "in the catalog but rendered by no service: {missing:?}"
            );
            Ok(pages)
        },
    )
    .await?;
    for (host, page) in &pages {
        for series in page.series_names() {
            catalog.metric_of_series(series).with_context(|| {
                format!("{host} renders {series}, which is not in the metric catalog")
            })?;
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_load_generator_drives_the_shop_and_every_acknowledged_order_exists_once()
-> anyhow::Result<()> {
    preflight(SHOP_IMAGES).await?;
    let stack = ShopStack::start("loadgen", StackOptions::default()).await?;
    let mut config = faultline_loadgen::Config::new(stack.gateway_url().parse()?);
    config.customers = Some(stack.customers(20)?);
    config.mode = faultline_loadgen::Mode::Open { rate: 25.0 };
    config.duration = Some(Duration::from_secs(4));
    config.seed = Some(7);
    let report = faultline_loadgen::run(
        config,
        tokio_util::sync::CancellationToken::new(),
        faultline_loadgen::NoObserver,
    )
    .await?;
    assert!(
        report.totals.count >= 40,
        "too little traffic: {}",
        report.totals.count
    );
    assert_eq!(report.totals.errors, 0, "{:#?}", report.failed_requests);
    assert_eq!(report.checkouts.idempotency_violations, 0);
    assert!(
        !report.acknowledged_orders.is_empty(),
        "no checkout in the mix"
    );

    // The data invariant: each acknowledged order exists, exactly once.
    let db = stack.db().await?;
    for order in &report.acknowledged_orders {
        let count: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM orders WHERE id = $1::uuid AND idempotency_key = $2",
        )
        .bind(&order.order_id)
        .bind(order.idempotency_key.to_string())
        .fetch_one(&db)
        .await?;
        assert_eq!(
            count, 1,
            "order {} ({})",
            order.order_id, order.idempotency_key
        );
    }

    // The public API documents itself.
    let doc: Value = faultline_tests::http_client()?
        .get(format!("{}/openapi.json", stack.gateway_url()))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    assert!(doc["paths"]["/api/orders"]["post"].is_object(), "{doc}");
    Ok(())
}

/// The spans as an indented tree under `root` (the caller's span), for the
/// test's output: `service: span name`, children in start order.
fn span_tree(spans: &[faultline_tests::otlp::ReceivedSpan], root: &str) -> String {
    fn walk(
        spans: &[faultline_tests::otlp::ReceivedSpan],
        parent: &str,
        depth: usize,
        out: &mut String,
    ) {
        let mut children: Vec<_> = spans
            .iter()
            .filter(|s| s.parent_span_id == parent)
            .collect();
        children.sort_by_key(|s| s.start_unix_nanos);
        for span in children {
            out.push_str(&format!(
                "{}{}: {}\n",
                "  ".repeat(depth),
                span.service,
                span.name
            ));
            walk(spans, &span.span_id, depth + 1, out);
        }
    }
    let mut out = String::new();
    walk(spans, root, 0, &mut out);
    out
}
