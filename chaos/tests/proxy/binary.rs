//! The `faultline proxy` binary: starts from a config file, serves the API,
//! and stops cleanly on SIGTERM.

use std::process::Stdio;

use faultline_proxy::{NewProxy, ToxiproxyClient};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

/// A proxies file holding `proxies`; removed when dropped.
fn config_file(proxies: &[NewProxy]) -> tempfile::NamedTempFile {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), serde_json::to_vec(proxies).unwrap()).unwrap();
    file
}

/// The longest any single wait in this test may take.
const DEADLINE: std::time::Duration = std::time::Duration::from_secs(10);

/// Awaits `future`, failing after [`DEADLINE`].
async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    match tokio::time::timeout(DEADLINE, future).await {
        Ok(value) => value,
        Err(_) => panic!("{what}: still waiting after {DEADLINE:?}"),
    }
}

#[tokio::test]
async fn the_binary_serves_the_api_and_stops_on_sigterm() {
    let config = config_file(&[NewProxy::new("from_file", "127.0.0.1:0", "127.0.0.1:9")]);
    let mut child = Command::new(env!("CARGO_BIN_EXE_faultline"))
        .args(["proxy", "--listen", "127.0.0.1:0", "--config"])
        .arg(config.path())
        .env("RUST_LOG", "info")
        .env("OTEL_TRACES_EXPORTER", "none")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let api = within("the ready log line", async {
        while let Some(line) = lines.next_line().await.unwrap() {
            let Ok(entry) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            if entry["message"] == "faultline proxy ready" {
                return entry["api"].as_str().unwrap().to_owned();
            }
        }
        panic!("the proxy exited before it was ready");
    })
    .await;

    let client = ToxiproxyClient::new(&api).unwrap();
    let proxies = client.proxies().await.unwrap();
    assert!(proxies["from_file"].enabled);

    let pid = child.id().unwrap().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = within("the proxy's exit", child.wait()).await.unwrap();
    assert!(status.success(), "{status}");
}
