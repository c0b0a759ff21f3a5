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
