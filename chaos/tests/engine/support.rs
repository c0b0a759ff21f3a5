//! What several test files share: the `faultline` binary, an in-process
//! fault proxy, experiment files in a temporary directory, and polling with
//! a deadline.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use faultline_proxy::{NewProxy, ProxyServer, ProxyServerConfig, ToxiproxyClient};

/// The longest a single wait in these tests may take.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// The `faultline` binary, without colours.
pub fn faultline() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_faultline"));
    command.env("NO_COLOR", "1");
    command
}

/// A fault proxy on a free port with one proxy, `payments`, and a client.
pub struct FaultProxy {
    pub server: ProxyServer,
    pub client: ToxiproxyClient,
}

impl FaultProxy {
    pub const PROXY: &str = "payments";

    pub async fn start() -> Self {
        let server = ProxyServer::start(ProxyServerConfig::ephemeral())
            .await
            .unwrap();
        let client = server.client().unwrap();
        client
            .create_proxy(&NewProxy::new(Self::PROXY, "127.0.0.1:0", "127.0.0.1:9"))
            .await
            .unwrap();
        Self { server, client }
    }

    pub fn api_url(&self) -> String {
        self.server.api_url()
    }

    /// The names of the toxics on [`Self::PROXY`].
    pub async fn toxics(&self) -> Vec<String> {
        self.client
            .toxics(Self::PROXY)
            .await
            .unwrap()
            .into_iter()
            .map(|t| t.name)
            .collect()
    }

    pub async fn stop(self) {
        self.server.shutdown().await.unwrap();
    }
}

/// An experiment with one latency toxic on `payments` through `api`, for
/// `fault_duration`, plus `extra` TOML appended (`[settings]`, probes...).
pub fn toxic_experiment(api: &str, fault_duration: &str, extra: &str) -> String {
    format!(
        r#"
title = "one toxic"

[target]
proxy_api = "{api}"

[method]

[[method.faults]]
name = "payments latency"
type = "toxic"
proxy = "payments"
toxic = "latency"
attributes = {{ latency = 100 }}
duration = "{fault_duration}"
{extra}
"#
    )
}

/// Writes `text` to `dir/name` and returns the path.
pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[path = "../common/eventually.rs"]
mod polling;
pub use polling::eventually;

/// The files of `dir` (names), sorted.
pub fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Waits for `child` without blocking the runtime (an in-process proxy may
/// have to answer it meanwhile).
pub async fn exit_status(mut child: std::process::Child) -> std::process::ExitStatus {
    tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap()
}

/// Sends SIGKILL to `pid` (for a process that is not our child; for a child,
/// `Child::kill` does it).
pub fn sigkill(pid: u32) {
    let status = Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -KILL {pid}");
}

/// One request a [`fake_admin`] got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminCall {
    pub method: String,
    pub path: String,
    pub body: String,
    /// Whether it carried the fake's token (always, for a fake without one).
    pub authorized: bool,
}

/// Every request a [`fake_admin`] got, in order.
pub type AdminCalls = std::sync::Arc<std::sync::Mutex<Vec<AdminCall>>>;

/// How a [`fake_admin`] behaves.
#[derive(Debug, Clone, Copy, Default)]
pub struct FakeAdminOptions {
    /// Like the shop's: 401 without `Authorization: Bearer <token>` (but on
    /// `/health`). `None`: no credential needed.
    pub token: Option<&'static str>,
    /// Accepts faults and activates none: a fault admin nobody listens to.
    pub forgetful: bool,
}

/// A fake fault admin API: `POST /faults` (the fault becomes active, unless
/// `forgetful`), `GET /faults` (the active ones), `DELETE /faults`,
/// `GET /health`; it remembers every request. Its base URL and the calls.
pub async fn fake_admin(options: FakeAdminOptions) -> (String, AdminCalls) {
    use axum::Router;
    use axum::body::Bytes;
    use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
    use axum::response::IntoResponse;

    let calls = AdminCalls::default();
    let active: std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>> = Default::default();
    let handler = {
        let calls = calls.clone();
        move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
            let (calls, active) = (calls.clone(), active.clone());
            async move {
                let authorized = options.token.is_none_or(|token| {
                    headers
                        .get(header::AUTHORIZATION)
                        .is_some_and(|v| v.as_bytes() == format!("Bearer {token}").as_bytes())
                });
                let path = uri.path().to_owned();
                calls.lock().unwrap().push(AdminCall {
                    method: method.to_string(),
                    path: path.clone(),
                    body: String::from_utf8_lossy(&body).into_owned(),
                    authorized,
                });
                if !authorized && path != "/health" {
                    return StatusCode::UNAUTHORIZED.into_response();
                }
                match (method, path.as_str()) {
                    (Method::GET, "/health") => "ok".into_response(),
                    (Method::POST, "/faults") => {
                        if !options.forgetful {
                            active
                                .lock()
                                .unwrap()
                                .push(serde_json::from_slice(&body).unwrap());
                        }
                        StatusCode::CREATED.into_response()
                    }
                    (Method::GET, "/faults") => {
                        axum::Json(active.lock().unwrap().clone()).into_response()
                    }
                    (Method::DELETE, "/faults") => {
                        active.lock().unwrap().clear();
                        StatusCode::NO_CONTENT.into_response()
                    }
                    _ => StatusCode::NOT_FOUND.into_response(),
                }
            }
        }
    };
    let app = Router::new().fallback(handler);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, calls)
}
