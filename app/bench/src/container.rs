//! A server in a container of a locally built image (PostgreSQL, its
//! standby, Redis, RabbitMQ, the PostgreSQL exporters), through the `docker`
//! command line (which can pin it to a core): started on Docker's default
//! bridge network with its ports published on 127.0.0.1, its CPU time read from its
//! cgroup, its memory as `docker stats` shows it. Containers reach each other
//! by their address on the bridge ([`Container::bridge_address`]): no network
//! to create or clean up. Removed when dropped; a benchmark killed hard leaves
//! it labelled `org.faultline.test`, like the tests' containers.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::Command;

use crate::error::BenchError;

/// What builds the local images.
pub const BUILD_COMMAND: &str = "compose/build-images";

/// The label on every container of the benchmark.
pub const LABEL: &str = "org.faultline.test=bench";

/// Runs `docker args...`.
pub async fn docker(args: &[&str]) -> Result<std::process::Output, BenchError> {
    Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|err| {
            BenchError::Docker(format!(
                "cannot run `docker {}`: {err}. The benchmarks need the Docker command line \
                 and a running engine.",
                args.first().copied().unwrap_or_default()
            ))
        })
}

pub fn stdout_text(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

pub fn stderr_text(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).trim().to_owned()
}

/// Fails, saying what to do, when the engine or one of `images` is missing.
pub async fn preflight(images: &[&str]) -> Result<(), BenchError> {
    let version = docker(&["version", "--format", "{{.Server.Version}}"]).await?;
    if !version.status.success() {
        return Err(BenchError::Docker(format!(
            "Docker is unreachable: {}. Start the engine (for example `systemctl start docker`), \
             check that this user may use it, and run again.",
            stderr_text(&version)
        )));
    }
    let mut missing = Vec::new();
    for image in images {
        let found = docker(&["image", "inspect", "--format", "{{.Id}}", image]).await?;
        if !found.status.success() {
            missing.push(*image);
        }
    }
    if !missing.is_empty() {
        return Err(BenchError::Docker(format!(
            "missing local image(s) {}. No registry is reachable, so they are built here from \
             Debian packages: run `{BUILD_COMMAND}` from the repository root.",
            missing.join(", ")
        )));
    }
    Ok(())
}

/// How to start a container.
#[derive(Debug, Clone)]
pub struct ContainerSpec<'a> {
    /// For messages, e.g. `PostgreSQL`.
    pub what: &'a str,
    pub image: &'a str,
    /// The port inside the container, published on a free port of 127.0.0.1.
    pub port: u16,
    /// More ports inside the container to publish the same way (RabbitMQ's
    /// metrics); [`Container::host_port_of`] says where.
    pub more_ports: &'a [u16],
    /// Arguments after the image (the server's own).
    pub args: &'a [&'a str],
    /// Environment variables of the container.
    pub env: &'a [(&'a str, String)],
    /// A line of its log (stdout or stderr) that says it accepts connections.
    pub ready_line: &'a str,
    /// Pin to this core.
    pub cpu: Option<usize>,
}

/// How long a container gets to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A running container; removed when dropped.
#[derive(Debug)]
pub struct Container {
    id: String,
    /// The host port its port is published on (127.0.0.1).
    pub host_port: u16,
    /// Each of its `more_ports`, and the host port it is published on.
    more_ports: Vec<(u16, u16)>,
    cpu_usage_file: Option<PathBuf>,
}

impl Container {
    /// Starts `spec` and returns once its log says it is ready.
    pub async fn start(spec: &ContainerSpec<'_>) -> Result<Self, BenchError> {
        let mut args = vec![
            "run".to_owned(),
            "-d".to_owned(),
            "--rm".to_owned(),
            "--label".to_owned(),
            LABEL.to_owned(),
        ];
        for port in std::iter::once(spec.port).chain(spec.more_ports.iter().copied()) {
            args.push("-p".to_owned());
            args.push(format!("127.0.0.1::{port}"));
        }
        if let Some(cpu) = spec.cpu {
            args.push(format!("--cpuset-cpus={cpu}"));
        }
        for (name, value) in spec.env {
            args.push("--env".to_owned());
            args.push(format!("{name}={value}"));
        }
        args.push(spec.image.to_owned());
        args.extend(spec.args.iter().map(|&a| a.to_owned()));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let run = docker(&refs).await?;
        if !run.status.success() {
            return Err(BenchError::Docker(format!(
                "cannot start {}: {}",
                spec.image,
                stderr_text(&run)
            )));
        }
        // From here on, dropping it removes the container.
        let mut container = Self {
            id: stdout_text(&run),
            host_port: 0,
            more_ports: Vec::new(),
            cpu_usage_file: None,
        };
        container.host_port = container.mapped_port(spec.what, spec.port).await?;
        for &port in spec.more_ports {
            let host_port = container.mapped_port(spec.what, port).await?;
            container.more_ports.push((port, host_port));
        }
        container.wait_ready(spec).await?;
        container.cpu_usage_file = find_cpu_usage_file(&container.id);
        Ok(container)
    }

    /// The host port Docker published `port` (inside) on.
    async fn mapped_port(&self, what: &str, port: u16) -> Result<u16, BenchError> {
        let published = format!("{port}/tcp");
        let output = docker(&["port", &self.id, &published]).await?;
        let mapped = stdout_text(&output);
        mapped
            .lines()
            .next()
            .and_then(|line| line.rsplit(':').next())
            .and_then(|port| port.parse::<u16>().ok())
            .ok_or_else(|| {
                BenchError::Docker(format!(
                    "cannot read {what}'s mapped port {port} from {mapped:?}"
                ))
            })
    }

    /// The host port (127.0.0.1) one of the spec's `more_ports` is
    /// published on (the spec's `port` is [`Container::host_port`]).
    pub fn host_port_of(&self, port: u16) -> Option<u16> {
        self.more_ports
            .iter()
            .find(|(inside, _)| *inside == port)
            .map(|(_, host)| *host)
    }

    async fn wait_ready(&self, spec: &ContainerSpec<'_>) -> Result<(), BenchError> {
        let started = Instant::now();
        let mut last = String::new();
        while started.elapsed() < START_TIMEOUT {
            let logs = docker(&["logs", &self.id]).await?;
            if !logs.status.success() {
                // Started with --rm: once it exits, its logs are gone too.
                return Err(BenchError::Docker(format!(
                    "{} ({}) exited before it was ready ({}); its last log lines were:\n{}",
                    spec.what,
                    spec.image,
                    stderr_text(&logs),
                    tail(&last, 20)
                )));
            }
            last = format!("{}\n{}", stdout_text(&logs), stderr_text(&logs));
            if last.contains(spec.ready_line) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Err(BenchError::NotReady {
            what: spec.what.to_owned(),
            waited: START_TIMEOUT,
            last: tail(&last, 20),
        })
    }

    /// Its IPv4 address on Docker's default bridge network, where the other
    /// containers of the benchmark reach it.
    pub async fn bridge_address(&self, what: &str) -> Result<String, BenchError> {
        let inspect = docker(&[
            "inspect",
            "--format",
            "{{.NetworkSettings.IPAddress}}",
            &self.id,
        ])
        .await?;
        let address = stdout_text(&inspect);
        if !inspect.status.success() || address.parse::<std::net::Ipv4Addr>().is_err() {
            return Err(BenchError::Docker(format!(
                "cannot read {what}'s address on Docker's default bridge network (got \
                 {address:?}; {}): the benchmark's containers reach each other there. Check \
                 that the engine has its default bridge (`docker network inspect bridge`) and \
                 that containers start on it.",
                stderr_text(&inspect)
            )));
        }
        Ok(address)
    }

    /// The container's CPU time so far, in seconds, from its cgroup (`None`
    /// when the cgroup is not visible from here).
    pub fn cpu_seconds(&self) -> Option<f64> {
        let path = self.cpu_usage_file.as_ref()?;
        let text = std::fs::read_to_string(path).ok()?;
        parse_cgroup_cpu_seconds(path, &text)
    }

    /// The container's memory use as `docker stats` shows it, in bytes.
    pub async fn memory_bytes(&self) -> Result<u64, BenchError> {
        memory_of(&[self]).await?.first().copied().ok_or_else(|| {
            BenchError::Docker(format!("docker stats gave no memory use for {}", self.id))
        })
    }
}

/// The memory use of each of `containers` as `docker stats` shows it, in
/// bytes, in their order: one `docker stats` call for all of them, so that
/// they are sampled at the same moment.
pub async fn memory_of(containers: &[&Container]) -> Result<Vec<u64>, BenchError> {
    let mut args = vec![
        "stats",
        "--no-stream",
        "--format",
        "{{.Container}} {{.MemUsage}}",
    ];
    args.extend(containers.iter().map(|c| c.id.as_str()));
    let stats = docker(&args).await?;
    let text = stdout_text(&stats);
    if !stats.status.success() {
        return Err(BenchError::Docker(format!(
            "cannot read docker stats: {}",
            stderr_text(&stats)
        )));
    }
    let ids: Vec<&str> = containers.iter().map(|c| c.id.as_str()).collect();
    parse_stats(&text, &ids)
}

/// The memory column of `docker stats --format "{{.Container}} {{.MemUsage}}"`
/// for each of `ids`, in bytes.
fn parse_stats(text: &str, ids: &[&str]) -> Result<Vec<u64>, BenchError> {
    ids.iter()
        .map(|&id| {
            text.lines()
                .find_map(|line| {
                    let (container, usage) = line.split_once(' ')?;
                    (container == id)
                        .then(|| usage.split('/').next().and_then(parse_size))
                        .flatten()
                })
                .ok_or_else(|| {
                    BenchError::Docker(format!(
                        "docker stats gave no memory use for container {id}: {text:?}"
                    ))
                })
        })
        .collect()
}

/// The last `lines` lines of `text`, trimmed.
fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.trim().lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = std::process::Command::new("docker")
            .args(["rm", "-f", &self.id])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// The file holding the container's CPU usage: cgroup v1 (`cpuacct.usage`,
/// nanoseconds) or v2 (`cpu.stat`, `usage_usec`), for the cgroupfs and
/// systemd drivers.
fn find_cpu_usage_file(id: &str) -> Option<PathBuf> {
    [
        format!("/sys/fs/cgroup/cpuacct/docker/{id}/cpuacct.usage"),
        format!("/sys/fs/cgroup/cpu,cpuacct/docker/{id}/cpuacct.usage"),
        format!("/sys/fs/cgroup/cpuacct/system.slice/docker-{id}.scope/cpuacct.usage"),
        format!("/sys/fs/cgroup/system.slice/docker-{id}.scope/cpu.stat"),
        format!("/sys/fs/cgroup/docker/{id}/cpu.stat"),
    ]
    .into_iter()
    .map(PathBuf::from)
    .find(|path| path.exists())
}

fn parse_cgroup_cpu_seconds(path: &std::path::Path, text: &str) -> Option<f64> {
    if path.ends_with("cpu.stat") {
        let line = text.lines().find(|l| l.starts_with("usage_usec"))?;
        let micros: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(micros / 1e6)
    } else {
        let nanos: f64 = text.trim().parse().ok()?;
        Some(nanos / 1e9)
    }
}

/// `45.3MiB` (as docker prints sizes) in bytes.
fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let scale = match unit.trim() {
        "B" => 1.0,
        "KiB" => 1024.0,
        "MiB" => 1024.0 * 1024.0,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        "kB" | "KB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        _ => return None,
    };
    Some((number * scale).round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_docker_sizes() {
        assert_eq!(parse_size("45.5MiB "), Some(47_710_208));
        assert_eq!(parse_size("1.5GiB"), Some(1_610_612_736));
        assert_eq!(parse_size("512KiB"), Some(524_288));
        assert_eq!(parse_size("10MB"), Some(10_000_000));
        assert_eq!(parse_size("nonsense"), None);
        assert_eq!(parse_size("12parsecs"), None);
    }

    #[test]
    fn reads_each_containers_memory_from_one_stats_call() {
        let text = "bbb 3.5MiB / 23.54GiB\naaa 45.5MiB / 23.54GiB";
        assert_eq!(
            parse_stats(text, &["aaa", "bbb"]).unwrap(),
            vec![47_710_208, 3_670_016]
        );
        assert!(parse_stats(text, &["ccc"]).is_err());
    }

    #[test]
    fn keeps_the_last_log_lines() {
        assert_eq!(tail("a\nb\nc\n", 2), "b\nc");
        assert_eq!(tail("a", 5), "a");
    }

    #[test]
    fn parses_cgroup_cpu_usage() {
        let v1 = PathBuf::from("/sys/fs/cgroup/cpuacct/docker/x/cpuacct.usage");
        assert_eq!(parse_cgroup_cpu_seconds(&v1, "2500000000\n"), Some(2.5));
        let v2 = PathBuf::from("/sys/fs/cgroup/docker/x/cpu.stat");
        assert_eq!(
            parse_cgroup_cpu_seconds(&v2, "usage_usec 1500000\nuser_usec 1000000\n"),
            Some(1.5)
        );
    }
}
