//! The control API: Toxiproxy-compatible documents, errors, populate, reset,
//! enabling and disabling, and the typed client.

use std::io::ErrorKind;

use faultline_proxy::toxics::{Latency, ToxicKind};
use faultline_proxy::{
    ErrorBody, NewProxy, NewToxic, ProxyUpdate, Stream, ToxicUpdate, ToxiproxyClient,
};
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use crate::support::{Harness, echo_server, round_trip, within};

async fn raw(
    h: &Harness,
    method: reqwest::Method,
    path: &str,
    body: Option<&str>,
) -> (u16, String) {
    let http = reqwest::Client::new();
    let mut request = http.request(method, format!("{}{path}", h.server.api_url()));
    if let Some(body) = body {
        request = request.body(body.to_owned());
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

/// Asserts a JSON error answer with this status.
async fn expect_error(
    h: &Harness,
    method: reqwest::Method,
    path: &str,
    body: Option<&str>,
    status: u16,
) {
    let (got, text) = raw(h, method.clone(), path, body).await;
    assert_eq!(got, status, "{method} {path} {body:?}: {text}");
    let error: ErrorBody = serde_json::from_str(&text)
        .unwrap_or_else(|err| panic!("{method} {path}: not a JSON error ({err}): {text}"));
    assert_eq!(error.status, status);
    assert!(!error.error.is_empty());
}

#[tokio::test]
async fn client_mistakes_get_json_4xx_answers() {
    use reqwest::Method;
    let h = Harness::start().await;
    let upstream = echo_server().await.to_string();
    h.proxy("p", upstream.parse().unwrap()).await;
    h.client
        .add_toxic(
            "p",
            &NewToxic::new(&ToxicKind::Latency(Latency {
                latency: std::time::Duration::from_millis(1),
                jitter: std::time::Duration::ZERO,
            })),
        )
        .await
        .unwrap();
    let create = |extra: &str| format!(r#"{{"name":"q","listen":"127.0.0.1:0"{extra}}}"#);
    let api_in_use = format!(
        r#"{{"name":"q","listen":"{}","upstream":"{upstream}"}}"#,
        h.server.api_addr()
    );
    let cases: Vec<(Method, &str, Option<String>, u16)> = vec![
        (Method::POST, "/proxies", Some("{".into()), 400),
        (Method::POST, "/proxies", Some("[]".into()), 400),
        (Method::POST, "/proxies", Some(String::new()), 400),
        (Method::POST, "/proxies", Some(create("")), 400),
        (
            Method::POST,
            "/proxies",
            Some(create(r#","upstream":"nohost""#)),
            400,
        ),
        (
            Method::POST,
            "/proxies",
            Some(create(r#","upstream":"h:1","listen":"x""#)),
            400,
        ),
        (
            Method::POST,
            "/proxies",
            Some(format!(r#"{{"name":"p","upstream":"{upstream}"}}"#)),
            409,
        ),
        (Method::POST, "/proxies", Some(api_in_use), 409),
        (Method::GET, "/proxies/nope", None, 404),
        (Method::POST, "/proxies/nope", Some("{}".into()), 404),
        (Method::DELETE, "/proxies/nope", None, 404),
        (
            Method::POST,
            "/proxies/p",
            Some(r#"{"name":"renamed"}"#.into()),
            400,
        ),
        (
            Method::POST,
            "/proxies/p",
            Some(r#"{"enabled":"yes"}"#.into()),
            400,
        ),
        (Method::GET, "/proxies/nope/toxics", None, 404),
        (
            Method::POST,
            "/proxies/nope/toxics",
            Some(r#"{"type":"latency"}"#.into()),
            404,
        ),
        (
            Method::POST,
            "/proxies/p/toxics",
            Some(r#"{"type":"slicer"}"#.into()),
            400,
        ),
        (
            Method::POST,
            "/proxies/p/toxics",
            Some(r#"{"attributes":{}}"#.into()),
            400,
        ),
        (
            Method::POST,
            "/proxies/p/toxics",
            Some(r#"{"type":"latency","stream":"sideways"}"#.into()),
            400,
        ),
        (
            Method::POST,
            "/proxies/p/toxics",
            Some(r#"{"type":"latency","toxicity":2}"#.into()),
            400,
        ),
        (
            Method::POST,
            "/proxies/p/toxics",
            Some(r#"{"type":"latency","attributes":{"latency":-5}}"#.into()),
            400,
        ),
        (
            Method::POST,
            "/proxies/p/toxics",
            Some(r#"{"type":"latency","attributes":{"latancy":5}}"#.into()),
            400,
        ),
        (
            Method::POST,
            "/proxies/p/toxics",
            Some(r#"{"type":"latency"}"#.into()),
            409,
        ),
        (Method::GET, "/proxies/p/toxics/nope", None, 404),
        (
            Method::POST,
            "/proxies/p/toxics/nope",
            Some("{}".into()),
            404,
        ),
        (Method::DELETE, "/proxies/p/toxics/nope", None, 404),
        (
            Method::POST,
            "/proxies/p/toxics/latency_downstream",
            Some(r#"{"type":"bandwidth"}"#.into()),
            400,
        ),
        (
            Method::POST,
            "/proxies/p/toxics/latency_downstream",
            Some(r#"{"attributes":{"latency":"slow"}}"#.into()),
            400,
        ),
        (
            Method::POST,
            "/populate",
            Some(r#"{"name":"x"}"#.into()),
            400,
        ),
        (
            Method::POST,
            "/populate",
            Some(r#"[{"name":"x","upstream":"h:1"},{"name":"x","upstream":"h:2"}]"#.into()),
            400,
        ),
        (Method::GET, "/nowhere", None, 404),
        (Method::PUT, "/proxies", None, 405),
        (Method::DELETE, "/reset", None, 405),
    ];
    for (method, path, body, status) in cases {
        expect_error(&h, method, path, body.as_deref(), status).await;
    }
    // Nothing above changed anything.
    let proxies = h.client.proxies().await.unwrap();
    assert_eq!(proxies.keys().collect::<Vec<_>>(), ["p"]);
    assert_eq!(proxies["p"].toxics.len(), 1);
    h.stop().await;
}

#[tokio::test]
async fn bad_leases_get_400_with_a_clear_message() {
    use reqwest::Method;
    let h = Harness::start().await;
    h.proxy("p", echo_server().await).await;
    h.client
        .add_toxic(
            "p",
            &NewToxic::new(&ToxicKind::Latency(Latency {
                latency: std::time::Duration::from_millis(1),
                jitter: std::time::Duration::ZERO,
            })),
        )
        .await
        .unwrap();
    let cases = [
        (
            Method::POST,
            "/proxies/p/toxics",
            r#"{"type":"latency","name":"n","lease_ms":-1}"#,
            "whole number",
        ),
        (
            Method::POST,
            "/proxies/p/toxics",
            r#"{"type":"latency","name":"s","lease_ms":"300"}"#,
            "whole number",
        ),
        (
            Method::POST,
            "/proxies/p/toxics/latency_downstream",
            r#"{"lease_ms":-300}"#,
            "whole number",
        ),
        (
            Method::PATCH,
            "/proxies/p/toxics/latency_downstream",
            r#"{"lease_ms":"soon"}"#,
            "whole number",
        ),
        (
            Method::POST,
            "/proxies/p/toxics/latency_downstream",
            r#"{"lease_ms":999999999999}"#,
            "one day",
        ),
        (
            Method::POST,
            "/proxies/p",
            r#"{"lease_ms":300}"#,
            "is enabled",
        ),
        (
            Method::PATCH,
            "/proxies/p",
            r#"{"enabled":true,"lease_ms":300}"#,
            "\"enabled\": true",
        ),
        (
            Method::POST,
            "/proxies/p",
            r#"{"enabled":false,"lease_ms":-1}"#,
            "whole number",
        ),
        (
            Method::POST,
            "/proxies",
            r#"{"name":"q","upstream":"h:1","enabled":false,"lease_ms":300}"#,
            "updates only",
        ),
    ];
    for (method, path, body, needle) in cases {
        let (status, text) = raw(&h, method.clone(), path, Some(body)).await;
        assert_eq!(status, 400, "{method} {path} {body}: {text}");
        let error: ErrorBody = serde_json::from_str(&text).unwrap();
        assert_eq!(error.status, 400);
        assert!(
            error.error.contains("lease_ms") && error.error.contains(needle),
            "{method} {path} {body}: {}",
            error.error
        );
    }
    // Nothing changed.
    let proxy = h.client.proxy("p").await.unwrap();
    assert!(proxy.enabled && proxy.lease_remaining_ms.is_none());
    assert_eq!(proxy.toxics.len(), 1);
    assert_eq!(proxy.toxics[0].lease_remaining_ms, None);
    assert!(h.client.proxy("q").await.unwrap_err().is_not_found());
    h.stop().await;
}

#[tokio::test]
async fn browsers_may_read_but_not_change() {
    let h = Harness::start().await;
    let http = reqwest::Client::builder()
        .user_agent("Mozilla/5.0 (X11; Linux x86_64)")
        .build()
        .unwrap();
    let url = format!("{}/proxies", h.server.api_url());
    assert_eq!(http.get(&url).send().await.unwrap().status(), 200);
    let refused = http
        .post(&url)
        .body(r#"{"name":"evil","upstream":"example.com:80"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    assert!(h.client.proxies().await.unwrap().is_empty());
    h.stop().await;
}

#[tokio::test]
async fn documents_have_toxiproxy_shapes() {
    let h = Harness::start().await;
    let upstream = echo_server().await;
    let (status, text) = raw(
        &h,
        reqwest::Method::POST,
        "/proxies",
        Some(&format!(
            r#"{{"name":"db","listen":"127.0.0.1:0","upstream":"{upstream}"}}"#
        )),
    )
    .await;
    assert_eq!(status, 201, "{text}");
    let created: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(created["enabled"], json!(true));
    assert_eq!(created["toxics"], json!([]));
    assert!(!created["listen"].as_str().unwrap().ends_with(":0"));

    let (status, text) = raw(
        &h,
        reqwest::Method::POST,
        "/proxies/db/toxics",
        Some(r#"{"type":"latency","attributes":{"latency":100}}"#),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    // Toxiproxy's document, plus the stats extension (no lease was asked for).
    let mut toxic: Value = serde_json::from_str(&text).unwrap();
    let stats = toxic.as_object_mut().unwrap().remove("stats");
    assert_eq!(
        toxic,
        json!({
            "name": "latency_downstream",
            "type": "latency",
            "stream": "downstream",
            "toxicity": 1.0,
            "attributes": {"latency": 100, "jitter": 0}
        })
    );
    assert_eq!(
        stats,
        Some(json!({"connections": 0, "bytes": 0, "resets": 0, "closes": 0, "requests": 0}))
    );
    let (status, text) = raw(&h, reqwest::Method::GET, "/proxies", None).await;
    assert_eq!(status, 200);
    let all: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(all["db"]["toxics"][0]["name"], json!("latency_downstream"));
    let mut keys: Vec<&str> = all["db"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(keys, ["enabled", "listen", "name", "toxics", "upstream"]);

    // PATCH works like POST for updates.
    let (status, text) = raw(
        &h,
        reqwest::Method::PATCH,
        "/proxies/db/toxics/latency_downstream",
        Some(r#"{"attributes":{"jitter":10}}"#),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    let updated: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(updated["attributes"], json!({"latency": 100, "jitter": 10}));

    let (status, _) = raw(&h, reqwest::Method::DELETE, "/proxies/db", None).await;
    assert_eq!(status, 204);
    let (status, text) = raw(&h, reqwest::Method::GET, "/version", None).await;
    assert_eq!(status, 200);
    assert!(serde_json::from_str::<Value>(&text).unwrap()["version"].is_string());
    h.stop().await;
}

#[tokio::test]
async fn disabling_refuses_connections_and_enabling_restores_them() {
    let h = Harness::start().await;
    let addr = h.proxy("down", echo_server().await).await;
    let mut existing = TcpStream::connect(addr).await.unwrap();
    assert_eq!(round_trip(&mut existing, b"up").await, b"up");

    let proxy = h.client.set_enabled("down", false).await.unwrap();
    assert!(!proxy.enabled);
    assert_eq!(proxy.listen, addr.to_string(), "the address is kept");
    // The existing connection is closed...
    let mut buf = [0u8; 8];
    match within("the existing connection's close", existing.read(&mut buf)).await {
        Ok(0) => {}
        Ok(n) => panic!("read {n} bytes from a disabled proxy"),
        Err(err) => assert_eq!(err.kind(), ErrorKind::ConnectionReset, "{err}"),
    }
    // ...and new ones are refused.
    let err = TcpStream::connect(addr).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused, "{err}");

    let proxy = h.client.set_enabled("down", true).await.unwrap();
    assert!(proxy.enabled);
    let mut again = TcpStream::connect(addr).await.unwrap();
    assert_eq!(round_trip(&mut again, b"back").await, b"back");
    h.stop().await;
}

#[tokio::test]
async fn changing_the_upstream_redirects_new_connections() {
    let h = Harness::start().await;
    let addr = h.proxy("moving", echo_server().await).await;
    let other = crate::support::blob_server(b"other".to_vec()).await;
    let proxy = h
        .client
        .update_proxy(
            "moving",
            &ProxyUpdate {
                upstream: Some(other.to_string()),
                ..ProxyUpdate::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(proxy.upstream, other.to_string());
    assert_eq!(proxy.listen, addr.to_string());
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut received = Vec::new();
    within("reading", stream.read_to_end(&mut received))
        .await
        .unwrap();
    assert_eq!(received, b"other");
    h.stop().await;
}

#[tokio::test]
async fn populate_creates_keeps_and_replaces_and_reset_cleans_up() {
    let h = Harness::start().await;
    let echo = echo_server().await.to_string();
    let first = vec![
        NewProxy::new("a", "127.0.0.1:0", &echo),
        NewProxy::new("b", "127.0.0.1:0", &echo).disabled(),
    ];
    let populated = h.client.populate(&first).await.unwrap();
    assert_eq!(populated.len(), 2);
    assert!(populated[0].enabled && !populated[1].enabled);
    let a_listen = populated[0].listen.clone();
    h.client
        .add_toxic(
            "a",
            &NewToxic::new(&ToxicKind::Latency(Latency {
                latency: std::time::Duration::from_millis(10),
                jitter: std::time::Duration::ZERO,
            })),
        )
        .await
        .unwrap();

    // The same again: nothing changes, the toxic stays.
    let again = h.client.populate(&first).await.unwrap();
    assert_eq!(again[0].listen, a_listen);
    assert_eq!(again[0].toxics.len(), 1);

    // A different upstream replaces the proxy.
    let other = echo_server().await.to_string();
    let replaced = h
        .client
        .populate(&[NewProxy::new("a", "127.0.0.1:0", &other)])
        .await
        .unwrap();
    assert_eq!(replaced[0].upstream, other);
    assert!(replaced[0].toxics.is_empty());
    h.client
        .add_toxic(
            "b",
            &NewToxic::new(&ToxicKind::Latency(Latency {
                latency: std::time::Duration::from_millis(10),
                jitter: std::time::Duration::ZERO,
            }))
            .with_stream(Stream::Upstream),
        )
        .await
        .unwrap();

    h.client.reset().await.unwrap();
    let proxies = h.client.proxies().await.unwrap();
    assert_eq!(proxies.len(), 2);
    for proxy in proxies.values() {
        assert!(proxy.enabled, "{proxy:?}");
        assert!(proxy.toxics.is_empty(), "{proxy:?}");
    }
    let b: std::net::SocketAddr = proxies["b"].listen.parse().unwrap();
    let mut stream = TcpStream::connect(b).await.unwrap();
    assert_eq!(round_trip(&mut stream, b"b").await, b"b");
    h.stop().await;
}

#[tokio::test]
async fn the_client_round_trips_every_operation() {
    let h = Harness::start().await;
    let client: &ToxiproxyClient = &h.client;
    let echo = echo_server().await.to_string();
    assert_eq!(client.version().await.unwrap(), faultline_proxy::VERSION);

    let created = client
        .create_proxy(&NewProxy::new("svc", "127.0.0.1:0", &echo))
        .await
        .unwrap();
    assert_eq!(client.proxy("svc").await.unwrap(), created);
    assert_eq!(client.proxies().await.unwrap()["svc"], created);
    assert!(
        client
            .create_proxy(&NewProxy::new("svc", "127.0.0.1:0", &echo))
            .await
            .unwrap_err()
            .is_conflict()
    );

    let kind = ToxicKind::Latency(Latency {
        latency: std::time::Duration::from_millis(50),
        jitter: std::time::Duration::from_millis(5),
    });
    let toxic = client
        .add_toxic(
            "svc",
            &NewToxic::new(&kind)
                .with_name("slow")
                .with_stream(Stream::Upstream)
                .with_toxicity(0.5),
        )
        .await
        .unwrap();
    assert_eq!(toxic.name, "slow");
    assert_eq!(toxic.stream, Stream::Upstream);
    assert_eq!(toxic.toxicity, 0.5);
    assert_eq!(toxic.kind().unwrap(), kind);
    assert_eq!(client.toxic("svc", "slow").await.unwrap(), toxic);
    assert_eq!(client.toxics("svc").await.unwrap(), vec![toxic.clone()]);

    let mut attributes = serde_json::Map::new();
    attributes.insert("latency".into(), json!(75));
    let updated = client
        .update_toxic(
            "svc",
            "slow",
            &ToxicUpdate {
                toxicity: Some(1.0),
                attributes,
                lease_ms: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(updated.toxicity, 1.0);
    assert_eq!(
        updated.kind().unwrap(),
        ToxicKind::Latency(Latency {
            latency: std::time::Duration::from_millis(75),
            jitter: std::time::Duration::from_millis(5),
        })
    );

    client.remove_toxic("svc", "slow").await.unwrap();
    assert!(
        client
            .toxic("svc", "slow")
            .await
            .unwrap_err()
            .is_not_found()
    );
    client.delete_proxy("svc").await.unwrap();
    let err = client.proxy("svc").await.unwrap_err();
    assert!(err.is_not_found(), "{err}");
    assert!(err.to_string().contains("svc"), "{err}");
    h.stop().await;
}

#[tokio::test]
async fn the_registry_is_usable_in_process() {
    let h = Harness::start().await;
    let registry = h.server.registry();
    let echo = echo_server().await.to_string();
    let proxy = registry
        .create_proxy(&NewProxy::new("inproc", "127.0.0.1:0", &echo))
        .await
        .unwrap();
    // The HTTP API sees what the registry did.
    assert_eq!(h.client.proxy("inproc").await.unwrap(), proxy);
    let err = registry.proxy("missing").await.unwrap_err();
    assert_eq!(err.status(), 404);
    h.stop().await;
}

#[tokio::test]
async fn client_errors_say_what_went_wrong() {
    // A port nothing listens on: the OS's reason reaches the message.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let client = ToxiproxyClient::new(&format!("http://{addr}")).unwrap();
    let err = client.proxies().await.unwrap_err();
    assert_eq!(err.status(), None);
    let message = err.to_string().to_lowercase();
    assert!(message.contains("refused"), "{message}");

    let h = Harness::start().await;
    let err = h
        .client
        .add_toxic(
            "ghost",
            &NewToxic::new(&ToxicKind::Latency(Latency {
                latency: std::time::Duration::from_millis(1),
                jitter: std::time::Duration::ZERO,
            })),
        )
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "{err}");
    assert!(err.to_string().contains("404"), "{err}");
    h.stop().await;
}
