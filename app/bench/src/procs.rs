//! Child processes: every server of a benchmark runs in its own process,
//! started by re-executing this binary (a shop role, the bare server, the
//! fault proxy or the OTLP sink), optionally pinned to a core with `taskset`.
//!
//! A child exits when its standard input closes, so that a benchmark killed
//! hard leaves nothing running; [`ChildProcess`] also kills it when dropped.
//! Its CPU time and resident memory are read from `/proc`.

use std::io::Read as _;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use crate::error::BenchError;

/// Set on a child to make this binary run `faultline_shop::cli::main` instead
/// of its own command line: the child is then exactly the shop binary.
pub const EXEC_SHOP_ENV: &str = "FAULTLINE_BENCH_EXEC_SHOP";

/// How long a child gets to print its ready line.
const READY_LINE_TIMEOUT: Duration = Duration::from_secs(30);

/// `/proc/<pid>/stat` counts CPU time in clock ticks of 1/100 s (`USER_HZ`
/// is 100 on every Linux architecture that exposes it to user space).
const CLOCK_TICKS_PER_SECOND: f64 = 100.0;

/// Exits the process as soon as its standard input closes: the parent is gone
/// or wants it to stop.
pub fn exit_when_stdin_closes() {
    std::thread::spawn(|| {
        let mut stdin = std::io::stdin();
        let mut buffer = [0u8; 64];
        loop {
            match stdin.read(&mut buffer) {
                Ok(0) | Err(_) => std::process::exit(0),
                Ok(_) => {}
            }
        }
    });
}

/// Which cores the load generator and the servers are pinned to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pinning {
    /// The benchmark process (load generator) and the OTLP sink.
    pub client: Option<usize>,
    /// Every server: shop roles, bare server, proxy, PostgreSQL, Redis.
    pub server: Option<usize>,
}

impl Pinning {
    /// No pinning.
    pub const NONE: Self = Self {
        client: None,
        server: None,
    };

    /// Client on core 0 and servers on core 1 when asked for, there are at
    /// least two cores, and `taskset` exists; else none.
    pub fn detect(wanted: bool) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        if !wanted || cores < 2 || !taskset_available() {
            return Self::NONE;
        }
        Self {
            client: Some(0),
            server: Some(1),
        }
    }
}

fn taskset_available() -> bool {
    std::process::Command::new("taskset")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// Pins every thread of this process to `cpu`. Threads started later (the
/// async runtime's) inherit it, so call it first.
pub fn pin_self(cpu: usize) -> Result<(), BenchError> {
    let status = std::process::Command::new("taskset")
        .args([
            "-a",
            "-p",
            "-c",
            &cpu.to_string(),
            &std::process::id().to_string(),
        ])
        .stdout(Stdio::null())
        .status()
        .map_err(|err| BenchError::io("cannot run taskset", err))?;
    if status.success() {
        Ok(())
    } else {
        Err(BenchError::Child(format!(
            "taskset could not pin the benchmark to CPU {cpu} ({status})"
        )))
    }
}

/// The lowest port [`free_ports`] hands out: above the well-known and
/// registered ports the demo's services publish (9090, 9187, ...).
const FIRST_PORT: u16 = 10_000;

/// Where [`free_ports`] looks next, as an offset from this process's own
/// starting point: every port it hands out is a new one, so two children
/// started one after the other never get the same port.
static NEXT_PORT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// `n` free TCP ports on 127.0.0.1, all different, for children to listen on.
///
/// Each is released before its child binds it, so another process could take
/// it in between (the child then fails to start and says so). To make that
/// unlikely on a busy machine they are taken below the kernel's ephemeral
/// range (`net.ipv4.ip_local_port_range`), where the ports of outgoing
/// connections, Docker's published ports and other programs' port-0
/// listeners do not land; a port found taken is skipped.
pub fn free_ports(n: usize) -> Result<Vec<u16>, BenchError> {
    let low = ephemeral_low().unwrap_or(32_768);
    let span = usize::from(low.saturating_sub(FIRST_PORT));
    if span < n.saturating_mul(16) {
        return ephemeral_ports(n);
    }
    // Two benchmarks side by side start from different places.
    let start = std::process::id() as usize * 7_919;
    let mut listeners = Vec::with_capacity(n);
    for _ in 0..span {
        if listeners.len() == n {
            break;
        }
        let next = NEXT_PORT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let offset = u16::try_from(start.wrapping_add(next) % span).unwrap_or_default();
        if let Ok(listener) = TcpListener::bind((Ipv4Addr::LOCALHOST, FIRST_PORT + offset)) {
            listeners.push(listener);
        }
    }
    if listeners.len() < n {
        return ephemeral_ports(n);
    }
    ports_of(&listeners)
}

/// The first port of the kernel's ephemeral range.
fn ephemeral_low() -> Option<u16> {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// `n` different ports the kernel picks (port 0), all held until all are found.
fn ephemeral_ports(n: usize) -> Result<Vec<u16>, BenchError> {
    let listeners = (0..n)
        .map(|_| {
            TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
                .map_err(|err| BenchError::io("cannot find a free port", err))
        })
        .collect::<Result<Vec<_>, _>>()?;
    ports_of(&listeners)
}

fn ports_of(listeners: &[TcpListener]) -> Result<Vec<u16>, BenchError> {
    listeners
        .iter()
        .map(|l| {
            l.local_addr()
                .map(|a| a.port())
                .map_err(|err| BenchError::io("cannot find a free port", err))
        })
        .collect()
}

/// What a `serve` child prints on its first line of stdout once it listens.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ReadyLine {
    /// Named addresses, e.g. `{"http": "127.0.0.1:40123"}`.
    pub addrs: std::collections::BTreeMap<String, SocketAddr>,
}

impl ReadyLine {
    /// The address named `name`.
    pub fn addr(&self, name: &str) -> Result<SocketAddr, BenchError> {
        self.addrs.get(name).copied().ok_or_else(|| {
            BenchError::Child(format!("the child did not report its {name} address"))
        })
    }
}

/// How to start a child.
#[derive(Debug, Clone)]
pub struct Spawn {
    /// A short name for messages and the log file, e.g. `gateway-full`.
    pub name: String,
    /// Arguments after the program name.
    pub args: Vec<String>,
    /// Environment added to the benchmark's own (less its OTEL_*, RUST_LOG,
    /// FAULTLINE_* and DATABASE_URL, which would change the variants).
    pub env: Vec<(String, String)>,
    /// Pin to this core.
    pub cpu: Option<usize>,
    /// Run the shop's command line ([`EXEC_SHOP_ENV`]); its stdout (the JSON
    /// logs) goes to /dev/null. Otherwise a `serve` child that prints a [`ReadyLine`].
    pub shop: bool,
}

impl Spawn {
    /// A shop role, e.g. `Spawn::shop("gateway-off", "gateway")`.
    pub fn shop(name: impl Into<String>, role: &str) -> Self {
        Self {
            name: name.into(),
            args: vec![role.to_owned()],
            env: Vec::new(),
            cpu: None,
            shop: true,
        }
    }

    /// A `serve` child of this binary, e.g. `Spawn::serve("bare", &["bare", ...])`.
    pub fn serve(name: impl Into<String>, args: &[&str]) -> Self {
        let mut all = vec!["serve".to_owned()];
        all.extend(args.iter().map(|&a| a.to_owned()));
        Self {
            name: name.into(),
            args: all,
            env: Vec::new(),
            cpu: None,
            shop: false,
        }
    }

    /// Adds an environment variable.
    pub fn env(mut self, key: &str, value: impl Into<String>) -> Self {
        self.env.push((key.to_owned(), value.into()));
        self
    }

    /// Pins the child to `cpu` (when `Some`).
    pub fn on_cpu(mut self, cpu: Option<usize>) -> Self {
        self.cpu = cpu;
        self
    }
}

/// A running child; killed when dropped.
#[derive(Debug)]
pub struct ChildProcess {
    name: String,
    pid: u32,
    log: PathBuf,
    child: Child,
    // Held open: closing it tells the child to exit.
    _stdin: Option<ChildStdin>,
    // Held open: a child writing to a closed pipe would fail.
    _stdout: Option<BufReader<ChildStdout>>,
}

/// True for inherited variables that would change what a child measures.
fn is_setting(key: &str) -> bool {
    key.starts_with("OTEL_")
        || key.starts_with("FAULTLINE_")
        || key == "RUST_LOG"
        || key == "DATABASE_URL"
}

impl ChildProcess {
    /// Starts `spec`, with its stderr in `log_dir/<name>.log`. A `serve`
    /// child is returned once it has printed its ready line.
    pub async fn start(
        spec: &Spawn,
        log_dir: &Path,
    ) -> Result<(Self, Option<ReadyLine>), BenchError> {
        let exe = std::env::current_exe()
            .map_err(|err| BenchError::io("cannot find this executable", err))?;
        let mut command = match spec.cpu {
            Some(cpu) => {
                let mut command = Command::new("taskset");
                command.arg("-c").arg(cpu.to_string()).arg(&exe);
                command
            }
            None => Command::new(&exe),
        };
        command.args(&spec.args);
        for (key, _) in std::env::vars_os() {
            if key.to_str().is_some_and(is_setting) {
                command.env_remove(&key);
            }
        }
        if spec.shop {
            command.env(EXEC_SHOP_ENV, "1");
        }
        command.envs(spec.env.iter().map(|(k, v)| (k, v)));
        let log = log_dir.join(format!("{}.log", spec.name));
        let stderr = std::fs::File::create(&log)
            .map_err(|err| BenchError::io(format!("cannot create {}", log.display()), err))?;
        command
            .stdin(Stdio::piped())
            .stdout(if spec.shop {
                Stdio::null()
            } else {
                Stdio::piped()
            })
            .stderr(stderr)
            .kill_on_drop(true);
        let mut child = command
            .spawn()
            .map_err(|err| BenchError::io(format!("cannot start {}", spec.name), err))?;
        let pid = child
            .id()
            .ok_or_else(|| BenchError::Child(format!("{} exited at once", spec.name)))?;
        let stdin = child.stdin.take();
        let mut stdout = child.stdout.take().map(BufReader::new);
        let mut process = Self {
            name: spec.name.clone(),
            pid,
            log,
            child,
            _stdin: stdin,
            _stdout: None,
        };
        let ready = match stdout.as_mut() {
            Some(reader) => Some(process.read_ready_line(reader).await?),
            None => None,
        };
        process._stdout = stdout;
        Ok((process, ready))
    }

    async fn read_ready_line(
        &mut self,
        reader: &mut BufReader<ChildStdout>,
    ) -> Result<ReadyLine, BenchError> {
        let mut line = String::new();
        let read = tokio::time::timeout(READY_LINE_TIMEOUT, reader.read_line(&mut line)).await;
        match read {
            Ok(Ok(n)) if n > 0 => serde_json::from_str(line.trim()).map_err(|err| {
                BenchError::Child(format!(
                    "{} printed {line:?} instead of its ready line: {err}",
                    self.name
                ))
            }),
            Ok(Ok(_)) => Err(self.failure("exited before it was ready").await),
            Ok(Err(err)) => Err(BenchError::io(
                format!("cannot read the ready line of {}", self.name),
                err,
            )),
            Err(_) => Err(self.failure("did not report ready in time").await),
        }
    }

    /// An error naming the child, with the end of its stderr.
    pub async fn failure(&mut self, what: &str) -> BenchError {
        let status = match self.child.try_wait() {
            Ok(Some(status)) => format!(" ({status})"),
            _ => String::new(),
        };
        BenchError::Child(format!(
            "{} {what}{status}; the end of its stderr ({}):\n{}",
            self.name,
            self.log.display(),
            tail(&self.log, 20)
        ))
    }

    /// Asks it to stop (SIGTERM, as `docker stop` would) and waits up to
    /// `grace` for it to exit; true when it did. A shop role flushes its
    /// spans on the way out.
    pub async fn terminate(&mut self, grace: Duration) -> bool {
        let sent = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()
            .await
            .is_ok_and(|status| status.success());
        sent && matches!(
            tokio::time::timeout(grace, self.child.wait()).await,
            Ok(Ok(_))
        )
    }

    /// Whether it is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// CPU time used so far (user + system, every thread), in seconds.
    pub fn cpu_seconds(&self) -> Option<f64> {
        cpu_seconds(self.pid)
    }

    /// Resident memory now, in bytes.
    pub fn rss_bytes(&self) -> Option<u64> {
        rss_bytes(self.pid)
    }
}

/// The last `lines` lines of a file (empty when unreadable).
pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// CPU time of process `pid` (user + system, all threads), in seconds.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat_cpu_ticks(&stat).map(|ticks| ticks as f64 / CLOCK_TICKS_PER_SECOND)
}

/// CPU time of this process, in seconds.
pub fn self_cpu_seconds() -> Option<f64> {
    cpu_seconds(std::process::id())
}

/// `utime + stime` from the text of `/proc/<pid>/stat`.
fn parse_stat_cpu_ticks(stat: &str) -> Option<u64> {
    // The command name (field 2) is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); utime is field 14, stime field 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Resident memory of process `pid` (`VmRSS`), in bytes.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_vm_rss(&status)
}

fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ports_differ_and_stay_below_the_ephemeral_range() {
        let low = ephemeral_low().unwrap_or(32_768);
        let first = free_ports(3).unwrap();
        let second = free_ports(3).unwrap();
        let mut all: Vec<u16> = first.iter().chain(&second).copied().collect();
        if low > FIRST_PORT + 1_000 {
            assert!(
                all.iter().all(|&p| (FIRST_PORT..low).contains(&p)),
                "{all:?}"
            );
        }
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), 6, "one call after another hands out new ports");
        for port in first {
            TcpListener::bind((Ipv4Addr::LOCALHOST, port)).unwrap();
        }
    }

    #[test]
    fn parses_cpu_ticks_even_with_spaces_in_the_name() {
        let stat = "1234 (tokio-rt (worker) 1) S 1 1234 1234 0 -1 4194560 100 0 0 0 \
                    250 50 0 0 20 0 3 0 100 1000000 500 18446744073709551615";
        assert_eq!(parse_stat_cpu_ticks(stat), Some(300));
        assert_eq!(parse_stat_cpu_ticks("garbage"), None);
    }

    #[test]
    fn parses_vm_rss() {
        let status = "Name:\tx\nVmPeak:\t  9000 kB\nVmRSS:\t    2048 kB\nThreads:\t3\n";
        assert_eq!(parse_vm_rss(status), Some(2048 * 1024));
        assert_eq!(parse_vm_rss("Name:\tx\n"), None);
    }

    #[test]
    fn reads_this_process() {
        assert!(rss_bytes(std::process::id()).is_some_and(|rss| rss > 0));
        assert!(self_cpu_seconds().is_some_and(|cpu| cpu >= 0.0));
    }

    #[test]
    fn only_settings_are_removed_from_the_environment() {
        assert!(is_setting("OTEL_SDK_DISABLED"));
        assert!(is_setting("FAULTLINE_METRICS"));
        assert!(is_setting("RUST_LOG"));
        assert!(!is_setting("PATH"));
        assert!(!is_setting("HOME"));
    }
}
