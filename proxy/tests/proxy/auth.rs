//! The control API's optional token: without one the API takes no
//! credential (as Toxiproxy); with one, every call but `GET /version` and
//! `GET /metrics` needs it, and one without it is refused with 401 and
//! changes nothing.

use clap::Parser as _;
use faultline_proxy::cli::ProxyArgs;
use faultline_proxy::{
    ApiToken, DEFAULT_API_LISTEN, NewProxy, ProxyServer, ProxyServerConfig, ToxiproxyClient,
};
use reqwest::Method;
use serde_json::Value;

use crate::support::echo_server;

/// `faultline proxy`'s arguments, as the `faultline` binary flattens them.
#[derive(Debug, clap::Parser)]
struct Cli {
    #[command(flatten)]
    proxy: ProxyArgs,
}

fn parse(args: &[&str]) -> Result<ProxyArgs, clap::Error> {
    Cli::try_parse_from(std::iter::once("proxy").chain(args.iter().copied())).map(|cli| cli.proxy)
}

const TOKEN: &str = "proxy-test-token";

async fn server_with_token() -> ProxyServer {
    let config = ProxyServerConfig::ephemeral().with_api_token(ApiToken::new(TOKEN).unwrap());
    ProxyServer::start(config).await.unwrap()
}

/// Status, headers and body of one raw call.
async fn call(
    server: &ProxyServer,
    method: Method,
    path: &str,
    authorization: Option<&str>,
    body: Option<&str>,
) -> (u16, reqwest::header::HeaderMap, String) {
    faultline_signal::install_crypto_provider();
    let http = reqwest::Client::new();
    let mut request = http.request(method, format!("{}{path}", server.api_url()));
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    if let Some(body) = body {
        request = request.body(body.to_owned());
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (status, headers, response.text().await.unwrap())
}

#[tokio::test]
async fn with_a_token_every_change_and_read_needs_it() {
    let server = server_with_token().await;
    let upstream = echo_server().await;
    let proxy = format!(r#"{{"name":"p","listen":"127.0.0.1:0","upstream":"{upstream}"}}"#);
    let toxic = r#"{"type":"latency","attributes":{"latency":10}}"#;
    let calls: [(Method, &str, Option<&str>); 9] = [
        (Method::GET, "/proxies", None),
        (Method::POST, "/proxies", Some(&proxy)),
        (Method::GET, "/proxies/p", None),
        (Method::POST, "/proxies/p", Some(r#"{"enabled":false}"#)),
        (Method::DELETE, "/proxies/p", None),
        (Method::POST, "/proxies/p/toxics", Some(toxic)),
        (Method::POST, "/populate", Some("[]")),
        (Method::POST, "/reset", None),
        (Method::GET, "/nowhere", None),
    ];
    for authorization in [
        None,
        Some("Bearer not-the-token"),
        Some("Basic cHJveHk6dGVzdA=="),
        Some(TOKEN),
        Some("Bearer proxy-test-token-plus"),
    ] {
        for (method, path, body) in &calls {
            let what = format!("{method} {path} with {authorization:?}");
            let (status, headers, text) =
                call(&server, method.clone(), path, authorization, *body).await;
            assert_eq!(status, 401, "{what}: {text}");
            assert_eq!(
                headers["content-type"], "application/problem+json",
                "{what}"
            );
            let challenge = headers["www-authenticate"].to_str().unwrap();
            assert!(
                challenge.starts_with(r#"Bearer realm="faultline-proxy""#),
                "{what}: {challenge}"
            );
            let problem: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(problem["status"], 401, "{what}");
            assert_eq!(problem["title"], "Unauthorized", "{what}");
            // Toxiproxy clients read `error`.
            assert!(problem["error"].as_str().is_some_and(|e| !e.is_empty()));
            assert!(!text.contains(TOKEN), "{what}: {text}");
        }
    }
    assert!(
        server.registry().proxies().await.is_empty(),
        "a refused call created a proxy"
    );

    // With the token, the same calls work.
    let bearer = format!("Bearer {TOKEN}");
    let (status, _, text) = call(
        &server,
        Method::POST,
        "/proxies",
        Some(&bearer),
        Some(&proxy),
    )
    .await;
    assert_eq!(status, 201, "{text}");
    let (status, _, text) = call(
        &server,
        Method::POST,
        "/proxies/p/toxics",
        Some(&bearer),
        Some(toxic),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    // The scheme in any case.
    let (status, _, _) = call(
        &server,
        Method::GET,
        "/proxies/p",
        Some(&format!("bearer {TOKEN}")),
        None,
    )
    .await;
    assert_eq!(status, 200);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_version_and_the_metrics_stay_open() {
    let server = server_with_token().await;
    for path in ["/version", "/metrics"] {
        let (status, _, text) = call(&server, Method::GET, path, None, None).await;
        assert_eq!(status, 200, "{path}: {text}");
    }
    // Only to read them.
    let (status, _, _) = call(&server, Method::POST, "/version", None, None).await;
    assert_eq!(status, 401);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_client_sends_its_token_and_reports_a_refusal() {
    let server = server_with_token().await;
    let upstream = echo_server().await;

    // The server's own client carries the token.
    let client = server.client().unwrap();
    assert!(client.api_token().is_some());
    client
        .create_proxy(&NewProxy::new("p", "127.0.0.1:0", upstream.to_string()))
        .await
        .unwrap();
    client.reset().await.unwrap();

    let anonymous = ToxiproxyClient::new(&server.api_url()).unwrap();
    let err = anonymous.proxies().await.unwrap_err();
    assert_eq!(err.status(), Some(401), "{err}");
    assert!(err.to_string().contains("Authorization: Bearer"), "{err}");
    // Reading the version needs no token.
    anonymous.version().await.unwrap();

    let wrong = ToxiproxyClient::new(&server.api_url())
        .unwrap()
        .with_api_token(ApiToken::new("wrong").unwrap());
    let err = wrong.delete_proxy("p").await.unwrap_err();
    assert_eq!(err.status(), Some(401), "{err}");
    assert!(
        server.registry().proxies().await.contains_key("p"),
        "a refused delete removed the proxy"
    );
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn without_a_token_plain_toxiproxy_clients_need_no_credential() {
    let server = ProxyServer::start(ProxyServerConfig::ephemeral())
        .await
        .unwrap();
    let (status, _, text) = call(&server, Method::GET, "/proxies", None, None).await;
    assert_eq!(status, 200, "{text}");
    // A token sent anyway is ignored.
    let (status, _, _) = call(
        &server,
        Method::GET,
        "/proxies",
        Some("Bearer anything"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    server.shutdown().await.unwrap();
}

#[test]
fn the_command_line_listens_on_loopback_and_hides_the_token() {
    let args = parse(&[]).unwrap();
    assert_eq!(args.listen, DEFAULT_API_LISTEN);
    assert!(args.listen.ip().is_loopback());
    assert!(args.api_token.is_none());

    let args = parse(&["--listen", "0.0.0.0:8474", "--api-token", "cli-s3cret"]).unwrap();
    assert_eq!(
        args.api_token.as_ref().map(ApiToken::expose),
        Some("cli-s3cret")
    );
    let shown = format!("{args:?}");
    assert!(!shown.contains("cli-s3cret"), "{shown}");
    let config = args.server_config().unwrap();
    assert_eq!(config.api_token, args.api_token);
    assert!(!format!("{config:?}").contains("cli-s3cret"));

    let err = parse(&["--api-token", "has space"]).unwrap_err();
    assert!(err.to_string().contains("visible ASCII"), "{err}");
}
