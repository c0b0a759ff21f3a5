//! One measurement: the load generator against one target for a while, with
//! the CPU time every process involved spent meanwhile.

use std::collections::BTreeMap;
use std::time::Duration;

use faultline_loadgen::{Config, Mix, Mode, NoObserver};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use url::Url;

use crate::error::BenchError;
use crate::postgres::Postgres;
use crate::procs::{self, ChildProcess};
use crate::redis::Redis;

/// Only `GET /api/products`: the read path.
pub const LIST_ONLY: Mix = Mix {
    list: 100,
    product: 0,
    checkout: 0,
    order: 0,
};

/// The per-request timeout of the load generator.
const TIMEOUT: Duration = Duration::from_secs(2);

/// What to send.
#[derive(Debug, Clone, Copy)]
pub struct Load {
    pub mode: Mode,
    pub duration: Duration,
    /// Workers (closed loop) or the most requests in flight (open loop).
    pub concurrency: usize,
    pub mix: Mix,
}

/// Where to send it, and whose CPU time to count.
#[derive(Debug)]
pub struct Target<'a> {
    pub url: &'a Url,
    /// The server processes behind the target (PostgreSQL aside).
    pub servers: Vec<&'a ChildProcess>,
    /// Counted when the target reads from it.
    pub postgres: Option<&'a Postgres>,
    /// Counted when the target uses it (the shared cache and rate limit).
    pub redis: Option<&'a Redis>,
    /// Processes on the client's side besides this one (the OTLP sink).
    pub helpers: Vec<&'a ChildProcess>,
    /// Whether the load sends a sampled `traceparent` with every request.
    pub traceparent: bool,
}

/// The result of one measurement.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// 2xx answers per second.
    pub throughput: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Requests finished.
    pub requests: u64,
    /// Errors as the load generator counts them (5xx, timeouts, ...).
    pub errors: u64,
    /// Open loop: requests not sent because every slot was busy.
    pub dropped: u64,
    /// Cores the load generator (this process) used on average.
    pub loadgen_cpu: f64,
    /// Cores the client-side helpers (the OTLP sink) used on average.
    pub helper_cpu: f64,
    /// Cores the server processes used on average (PostgreSQL aside).
    pub server_cpu: f64,
    /// Server CPU time per 2xx answer, in microseconds (PostgreSQL aside).
    pub server_cpu_us_per_request: f64,
    /// PostgreSQL's CPU time per 2xx answer, in microseconds, when measurable.
    pub postgres_cpu_us_per_request: Option<f64>,
    /// Redis's CPU time per 2xx answer, in microseconds, when the target
    /// uses Redis and it is measurable.
    #[serde(default)]
    pub redis_cpu_us_per_request: Option<f64>,
    /// Server CPU time per 2xx answer by process (`gateway-full`, ...), microseconds.
    #[serde(default)]
    pub cpu_us_per_request_by_process: BTreeMap<String, f64>,
}

struct CpuClock {
    each: Vec<Option<f64>>,
    own: Option<f64>,
    servers: Option<f64>,
    helpers: Option<f64>,
    postgres: Option<f64>,
    redis: Option<f64>,
}

fn sum(processes: &[&ChildProcess]) -> Option<f64> {
    processes.iter().map(|p| p.cpu_seconds()).sum()
}

impl CpuClock {
    fn read(target: &Target<'_>) -> Self {
        Self {
            each: target.servers.iter().map(|p| p.cpu_seconds()).collect(),
            own: procs::self_cpu_seconds(),
            servers: sum(&target.servers),
            helpers: sum(&target.helpers),
            postgres: target.postgres.and_then(|p| p.container().cpu_seconds()),
            redis: target.redis.and_then(|r| r.container().cpu_seconds()),
        }
    }

    /// CPU seconds each group used since `earlier`: own, servers, helpers,
    /// PostgreSQL, Redis.
    fn since(&self, earlier: &Self) -> [Option<f64>; 5] {
        let delta = |now: Option<f64>, then: Option<f64>| Some(now? - then?);
        [
            delta(self.own, earlier.own),
            delta(self.servers, earlier.servers),
            delta(self.helpers, earlier.helpers),
            delta(self.postgres, earlier.postgres),
            delta(self.redis, earlier.redis),
        ]
    }
}

fn config(url: &Url, load: &Load, traceparent: bool) -> Config {
    let mut config = Config::new(url.clone());
    config.traceparent = traceparent;
    config.mode = load.mode;
    config.concurrency = load.concurrency;
    config.duration = Some(load.duration);
    config.timeout = TIMEOUT;
    config.seed = Some(1);
    config.mix = load.mix;
    config.retry_ratio = 0.0;
    config.window = load.duration.max(Duration::from_secs(1));
    config.max_failed_kept = 5;
    config.customers = crate::identity::customers();
    config
}

/// Runs `load` against `target` and reads what it cost.
pub async fn measure(target: &Target<'_>, load: &Load) -> Result<Sample, BenchError> {
    let before = CpuClock::read(target);
    let report = faultline_loadgen::run(
        config(target.url, load, target.traceparent),
        CancellationToken::new(),
        NoObserver,
    )
    .await?;
    let after = CpuClock::read(target);
    let [own, servers, helpers, postgres, redis] = after.since(&before);
    let seconds = report.elapsed_s.max(1e-9);
    let ok = report.totals.classes.s2xx;
    let ok_f = ok as f64;
    let per_request = |cpu: f64| {
        if ok > 0 { cpu / ok_f * 1e6 } else { f64::NAN }
    };
    let servers = servers.unwrap_or(f64::NAN);
    let by_process = target
        .servers
        .iter()
        .zip(after.each.iter().zip(&before.each))
        .filter_map(|(process, (now, then))| {
            Some((process.name().to_owned(), per_request((*now)? - (*then)?)))
        })
        .collect();
    Ok(Sample {
        throughput: ok_f / seconds,
        p50_ms: report.totals.latency_ms.p50,
        p99_ms: report.totals.latency_ms.p99,
        requests: report.totals.count,
        errors: report.totals.errors,
        dropped: report.totals.dropped,
        loadgen_cpu: own.unwrap_or(f64::NAN) / seconds,
        helper_cpu: helpers.unwrap_or(0.0) / seconds,
        server_cpu: servers / seconds,
        server_cpu_us_per_request: per_request(servers),
        postgres_cpu_us_per_request: postgres.map(per_request),
        redis_cpu_us_per_request: redis.map(per_request),
        cpu_us_per_request_by_process: by_process,
    })
}

/// Sends `load` to `target` and throws the result away (connections, caches
/// and pools warm up).
pub async fn warm_up(target: &Target<'_>, load: &Load) -> Result<(), BenchError> {
    faultline_loadgen::run(
        config(target.url, load, target.traceparent),
        CancellationToken::new(),
        NoObserver,
    )
    .await?;
    Ok(())
}
