//! The HTTP toxics between a reqwest client (or a raw socket) and an
//! in-process axum server that counts what reaches it.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{Method, Uri};
use faultline_proxy::{ClientError, NewToxic, Stream, Toxic, ToxicStats};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::support::{Harness, echo_server, round_trip, within};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// What reached the server, in order: `"METHOD /path body-length"`.
#[derive(Debug, Clone, Default)]
struct Seen(Arc<Mutex<Vec<String>>>);

impl Seen {
    fn all(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }

    fn count(&self, path: &str) -> usize {
        self.all()
            .iter()
            .filter(|line| line.split(' ').nth(1) == Some(path))
            .count()
    }
}

/// An HTTP server answering every request 200 with the line it recorded.
async fn http_server() -> (SocketAddr, Seen) {
    async fn record(State(seen): State<Seen>, method: Method, uri: Uri, body: Bytes) -> String {
        let line = format!("{method} {} {}", uri.path(), body.len());
        seen.0.lock().unwrap().push(line.clone());
        line
    }
    let seen = Seen::default();
    let app = Router::new().fallback(record).with_state(seen.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, seen)
}

/// An upstream toxic of `type` with these attributes.
fn toxic(toxic_type: &str, attributes: Value) -> NewToxic {
    NewToxic {
        name: None,
        toxic_type: toxic_type.to_owned(),
        stream: Stream::Upstream,
        toxicity: 1.0,
        attributes: match attributes {
            Value::Object(map) => map,
            _ => panic!("attributes must be an object"),
        },
        lease_ms: None,
    }
}

async fn add(h: &Harness, proxy: &str, new: NewToxic) -> Toxic {
    h.client.add_toxic(proxy, &new).await.unwrap()
}

async fn stats(h: &Harness, proxy: &str, toxic: &str) -> ToxicStats {
    let toxic = h.client.toxic(proxy, toxic).await.unwrap();
    toxic.stats.expect("this proxy always shows stats")
}

fn client() -> reqwest::Client {
    faultline_signal::install_crypto_provider();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

async fn get(client: &reqwest::Client, url: String) -> (u16, String) {
    let response = client.get(url).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

#[tokio::test]
async fn abort_answers_matching_requests_in_place_of_the_server() {
    let h = Harness::start().await;
    let (server, seen) = http_server().await;
    let addr = h.proxy("orders", server).await;
    let abort = add(
        &h,
        "orders",
        toxic("http_abort", json!({"status": 503, "path": "/api/orders"})),
    )
    .await;
    let client = client();
    let base = format!("http://{addr}");
    assert_eq!(get(&client, format!("{base}/api/health")).await.0, 200);
    for _ in 0..3 {
        let response = client
            .post(format!("{base}/api/orders"))
            .json(&json!({"sku": "a", "quantity": 1}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 503);
        let headers = response.headers();
        assert_eq!(headers["connection"], "close");
        assert_eq!(headers["content-type"], "application/problem+json");
        let problem: Value = response.json().await.unwrap();
        assert_eq!(problem["status"], 503);
        // The same client still gets through on other paths.
        let (status, body) = get(&client, format!("{base}/api/health?after=abort")).await;
        assert_eq!((status, body.as_str()), (200, "GET /api/health 0"));
    }
    assert_eq!(seen.count("/api/orders"), 0, "{:?}", seen.all());
    assert_eq!(seen.count("/api/health"), 4);
    // Each aborted request counts as a request and a close, its bytes as dropped.
    let stats = stats(&h, "orders", &abort.name).await;
    assert_eq!((stats.requests, stats.closes, stats.resets), (3, 3, 0));
    assert!(stats.connections >= 3, "{stats:?}");
    assert!(stats.bytes >= 3 * 60, "{stats:?}");
    h.stop().await;
}

#[tokio::test]
async fn abort_ratio_picks_about_that_share_of_requests() {
    let h = Harness::start().await;
    let (server, seen) = http_server().await;
    let addr = h.proxy("half", server).await;
    add(
        &h,
        "half",
        toxic("http_abort", json!({"status": 500, "ratio": 0.5})),
    )
    .await;
    let client = client();
    let mut aborted = 0;
    for i in 0..200 {
        match get(&client, format!("http://{addr}/r/{i}")).await.0 {
            500 => aborted += 1,
            200 => {}
            other => panic!("unexpected status {other}"),
        }
    }
    assert!((50..=150).contains(&aborted), "{aborted} of 200 aborted");
    assert_eq!(seen.all().len(), 200 - aborted);
    h.stop().await;
}

#[tokio::test]
async fn method_and_header_matchers_pick_only_their_requests() {
    let h = Harness::start().await;
    let (server, seen) = http_server().await;
    let addr = h.proxy("picky", server).await;
    add(
        &h,
        "picky",
        toxic(
            "http_abort",
            json!({"status": 418, "method": "delete", "headers": {"X-Chaos": "on"},
                   "body": "no deletes today"}),
        ),
    )
    .await;
    let client = client();
    let url = format!("http://{addr}/items/1");
    let status = |request: reqwest::RequestBuilder| async move {
        let response = request.send().await.unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    };
    assert_eq!(
        status(client.delete(&url).header("x-chaos", "on")).await,
        (418, "no deletes today".to_owned())
    );
    assert_eq!(status(client.delete(&url)).await.0, 200);
    assert_eq!(
        status(client.delete(&url).header("x-chaos", "off")).await.0,
        200
    );
    assert_eq!(
        status(client.get(&url).header("x-chaos", "on")).await.0,
        200
    );
    assert_eq!(
        seen.all(),
        ["DELETE /items/1 0", "DELETE /items/1 0", "GET /items/1 0"]
    );
    h.stop().await;
}

#[tokio::test]
async fn delay_holds_matching_requests_only() {
    let h = Harness::start().await;
    let (server, _) = http_server().await;
    let addr = h.proxy("slow", server).await;
    let delay = add(
        &h,
        "slow",
        toxic("http_delay", json!({"latency": 600, "path": "/slow"})),
    )
    .await;
    let client = client();
    // Warm the connection pool so connecting does not count.
    get(&client, format!("http://{addr}/warm")).await;
    for _ in 0..3 {
        let start = Instant::now();
        assert_eq!(get(&client, format!("http://{addr}/slow/1")).await.0, 200);
        let slow = start.elapsed();
        assert!(slow >= ms(600) && slow < ms(3000), "matched took {slow:?}");
        let start = Instant::now();
        assert_eq!(get(&client, format!("http://{addr}/fast")).await.0, 200);
        let fast = start.elapsed();
        // Not delayed: under the delay itself, however busy the machine.
        assert!(fast < ms(600), "unmatched took {fast:?}");
    }
    // Only the matched requests count, with the bytes they were held.
    let stats = stats(&h, "slow", &delay.name).await;
    assert_eq!((stats.requests, stats.closes), (3, 0));
    assert!(stats.bytes >= 3 * 30, "{stats:?}");
    h.stop().await;
}

/// Reads `count` responses (bodies framed by content-length) from `stream`.
async fn read_responses(stream: &mut TcpStream, count: usize) -> Vec<(u16, String)> {
    within("reading the responses", async {
        let mut buf = Vec::new();
        let mut responses = Vec::new();
        let mut chunk = [0u8; 4096];
        while responses.len() < count {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut response = httparse::Response::new(&mut headers);
            if let httparse::Status::Complete(len) = response.parse(&buf).unwrap() {
                let length: usize = response
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                    .map(|h| std::str::from_utf8(h.value).unwrap().parse().unwrap())
                    .unwrap();
                if buf.len() >= len + length {
                    let code = response.code.unwrap();
                    let body = String::from_utf8(buf[len..len + length].to_vec()).unwrap();
                    responses.push((code, body));
                    buf.drain(..len + length);
                    continue;
                }
            }
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(n > 0, "closed after {} responses", responses.len());
            buf.extend_from_slice(&chunk[..n]);
        }
        responses
    })
    .await
}

const PIPELINED: &[u8] = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n\
    POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello\
    PUT /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\
    4\r\nwiki\r\n5\r\npedia\r\n0\r\n\r\n\
    GET /d HTTP/1.1\r\nHost: x\r\n\r\n";

#[tokio::test]
async fn pipelined_requests_with_bodies_pass_in_order() {
    let h = Harness::start().await;
    let (server, seen) = http_server().await;
    let addr = h.proxy("pipelined", server).await;
    add(
        &h,
        "pipelined",
        toxic("http_delay", json!({"latency": 200, "path": "/b"})),
    )
    .await;
    add(
        &h,
        "pipelined",
        toxic("http_abort", json!({"status": 503, "path": "/never"})),
    )
    .await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let start = Instant::now();
    stream.write_all(PIPELINED).await.unwrap();
    let expected = ["GET /a 0", "POST /b 5", "PUT /c 9", "GET /d 0"];
    let responses = read_responses(&mut stream, 4).await;
    assert!(start.elapsed() >= ms(200), "the delay of /b was skipped");
    let bodies: Vec<&str> = responses.iter().map(|(_, body)| body.as_str()).collect();
    assert_eq!(bodies, expected);
    assert!(responses.iter().all(|(status, _)| *status == 200));
    assert_eq!(seen.all(), expected);

    // The same request stream, one byte per write: the same answers.
    for byte in PIPELINED {
        stream.write_all(std::slice::from_ref(byte)).await.unwrap();
    }
    let responses = read_responses(&mut stream, 4).await;
    let bodies: Vec<&str> = responses.iter().map(|(_, body)| body.as_str()).collect();
    assert_eq!(bodies, expected);
    h.stop().await;
}

#[tokio::test]
async fn an_abort_closes_the_connection_cleanly_after_its_answer() {
    let h = Harness::start().await;
    let (server, seen) = http_server().await;
    let addr = h.proxy("abort_raw", server).await;
    add(
        &h,
        "abort_raw",
        toxic("http_abort", json!({"status": 503, "path": "/b"})),
    )
    .await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(read_responses(&mut stream, 1).await[0].1, "GET /a 0");
    // An upload without Expect, and a request behind it: neither is forwarded.
    stream
        .write_all(b"POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n01234")
        .await
        .unwrap();
    stream
        .write_all(b"56789GET /c HTTP/1.1\r\n\r\n")
        .await
        .unwrap();
    let mut rest = Vec::new();
    within("reading to the close", stream.read_to_end(&mut rest))
        .await
        .unwrap();
    let text = String::from_utf8(rest).unwrap();
    assert!(
        text.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
        "{text}"
    );
    assert!(text.contains("connection: close\r\n"), "{text}");
    assert_eq!(seen.all(), ["GET /a 0"]);
    h.stop().await;
}

#[tokio::test]
async fn removing_the_toxic_restores_an_open_connection() {
    let h = Harness::start().await;
    let (server, seen) = http_server().await;
    let addr = h.proxy("restore", server).await;
    let delay = add(&h, "restore", toxic("http_delay", json!({"latency": 400}))).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let start = Instant::now();
    stream
        .write_all(b"GET /one HTTP/1.1\r\n\r\n")
        .await
        .unwrap();
    read_responses(&mut stream, 1).await;
    assert!(start.elapsed() >= ms(400), "{:?}", start.elapsed());

    // Half a request, then the toxic goes: the held half is handed on.
    let abort = add(
        &h,
        "restore",
        toxic("http_abort", json!({"status": 503, "path": "/never"})),
    )
    .await;
    stream.write_all(b"GET /two HTTP/1.1\r\nHo").await.unwrap();
    tokio::time::sleep(ms(50)).await;
    h.client.remove_toxic("restore", &delay.name).await.unwrap();
    h.client.remove_toxic("restore", &abort.name).await.unwrap();
    let start = Instant::now();
    stream.write_all(b"st: x\r\n\r\n").await.unwrap();
    assert_eq!(read_responses(&mut stream, 1).await[0].1, "GET /two 0");
    // No longer delayed: under the 400 ms the toxic added.
    assert!(start.elapsed() < ms(400), "{:?}", start.elapsed());
    assert_eq!(seen.all(), ["GET /one 0", "GET /two 0"]);
    h.stop().await;
}

#[tokio::test]
async fn bytes_that_are_not_http_pass_untouched() {
    let h = Harness::start().await;
    let addr = h.proxy("binary", echo_server().await).await;
    add(&h, "binary", toxic("http_delay", json!({"latency": 500}))).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let message: Vec<u8> = (0..=255u8)
        .chain(b"GET / HTTP/1.1\r\n\r\n".iter().copied())
        .collect();
    let start = Instant::now();
    assert_eq!(round_trip(&mut stream, &message).await, message);
    assert_eq!(round_trip(&mut stream, b"more").await, b"more");
    assert!(start.elapsed() < ms(400), "{:?}", start.elapsed());
    h.stop().await;
}

#[tokio::test]
async fn bad_http_toxics_are_refused_with_400() {
    let h = Harness::start().await;
    let (server, _) = http_server().await;
    h.proxy("refused", server).await;
    let refused = |new: NewToxic| {
        let client = h.client.clone();
        async move {
            match client.add_toxic("refused", &new).await {
                Err(ClientError::Api {
                    status, message, ..
                }) => (status, message),
                other => panic!("not refused: {other:?}"),
            }
        }
    };
    let (status, message) =
        refused(toxic("http_abort", json!({"status": 503})).with_stream(Stream::Downstream)).await;
    assert_eq!(status, 400);
    assert!(message.contains("upstream"), "{message}");
    for (attributes, needle) in [
        (json!({"status": 700}), "status"),
        (json!({}), "status"),
        (json!({"status": 503, "ratio": 2}), "ratio"),
        (json!({"status": 503, "ratio": "often"}), "ratio"),
        (json!({"status": 503, "path": 5}), "path"),
        (json!({"status": 503, "headers": {"x": 1}}), "headers"),
        (json!({"status": 503, "pth": "/a"}), "pth"),
    ] {
        let (status, message) = refused(toxic("http_abort", attributes.clone())).await;
        assert_eq!(status, 400, "{attributes}");
        assert!(message.contains(needle), "{attributes}: {message}");
    }
    let (status, message) = refused(toxic("http_delay", json!({"latency": -1}))).await;
    assert_eq!(status, 400);
    assert!(message.contains("latency"), "{message}");
    assert!(h.client.toxics("refused").await.unwrap().is_empty());
    h.stop().await;
}
