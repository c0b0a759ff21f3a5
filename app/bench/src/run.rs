//! A benchmark run, start to finish:
//!
//! 1. PostgreSQL (pinned to the server core, like every container), the
//!    OTLP sink (client core). Every container is on Docker's default
//!    bridge.
//! 2. Redis; for each telemetry variant, a catalog and a gateway process (server
//!    core); the bare axum server answering the listing's bytes; the fault
//!    proxy in front of it; gateways with their catalog cache as deployed
//!    (figure 2); a gateway per cache level, on one catalog (figure 5).
//! 3. Calibration: the telemetry-off peak sets figure 1's fixed rate.
//! 4. Rounds: every target in turn (the order rotates each round), closed
//!    loop then open loop, so that ratios compare neighbours in time.
//! 5. Footprint: the five roles with telemetry as deployed, PostgreSQL with a
//!    fresh hot standby (the catalog's read replica), a PostgreSQL exporter
//!    per server, a fresh Redis and a fresh RabbitMQ (orders relays the
//!    outbox to it, the worker consumes from it), idle then under the
//!    realistic mix.
//!
//! Only step 5 starts orders and the worker, so only it has the broker:
//! figures 1, 2, 3 and 5 measure the read path, which never touches it.
//!
//! With `--footprint-only`, steps 1 and 5 only.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use faultline_loadgen::{Mix, Mode};
use url::Url;

use crate::container;
use crate::error::BenchError;
use crate::exporter::{self, PostgresExporter};
use crate::measure::{self, LIST_ONLY, Load, Sample, Target};
use crate::plan::{Plan, Telemetry};
use crate::postgres::{self, Postgres};
use crate::procs::{self, ChildProcess, Pinning, ReadyLine, Spawn};
use crate::rabbitmq::{self, RabbitMq};
use crate::redis::{self, Redis};
use crate::report::{
    Absolute, CacheLevels, Events, Figures, Footprint, Goal, HotPath, Instrumentation, LevelRatios,
    Machine, Memory, ProxyFigure, Rates, Results, Round, SCHEMA, added_label, p99_label,
};
use crate::stats::{Summary, ratio};

/// How long a shop role gets to report ready (migrations included).
const READY_TIMEOUT: Duration = Duration::from_secs(90);

/// How long a server gets to flush its spans and exit after SIGTERM.
const STOP_GRACE: Duration = Duration::from_secs(15);

/// A load generator using more than this share of its core is probably what
/// limits the throughput.
const SATURATED: f64 = 0.9;

/// How a run is set up.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub plan: Plan,
    pub quick: bool,
    /// Figure 4 alone: no rounds, no figures 1, 2, 3 and 5.
    pub footprint_only: bool,
    pub pinning: Pinning,
    /// Where children's stderr and the captured listing go.
    pub work_dir: PathBuf,
    /// The command line, for the report.
    pub command: String,
}

/// A shop role in its own process.
#[derive(Debug)]
struct Role {
    process: ChildProcess,
    http: Url,
    admin: SocketAddr,
}

fn progress(message: &str) {
    eprintln!("[bench] {message}");
}

fn url(addr: SocketAddr) -> Result<Url, BenchError> {
    Url::parse(&format!("http://{addr}"))
        .map_err(|err| BenchError::Child(format!("bad address {addr}: {err}")))
}

fn http_client() -> Result<reqwest::Client, BenchError> {
    faultline_signal::install_crypto_provider();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .map_err(|err| BenchError::http("cannot build the HTTP client", err))
}

/// Starts `role` (`gateway`, `catalog`, ...) as `name` with `env`.
async fn start_role(
    name: &str,
    role: &str,
    env: &[(&str, String)],
    cpu: Option<usize>,
    work_dir: &Path,
) -> Result<Role, BenchError> {
    let ports = procs::free_ports(2)?;
    let http = SocketAddr::from(([127, 0, 0, 1], ports[0]));
    let admin = SocketAddr::from(([127, 0, 0, 1], ports[1]));
    let mut spec = Spawn::shop(name, role)
        .on_cpu(cpu)
        .env("FAULTLINE_HTTP_ADDR", http.to_string())
        .env("FAULTLINE_ADMIN_ADDR", admin.to_string())
        .env("OTEL_SERVICE_NAME", role);
    for (key, value) in env {
        spec = spec.env(key, value.clone());
    }
    let (process, _) = ChildProcess::start(&spec, work_dir).await?;
    Ok(Role {
        process,
        http: url(http)?,
        admin,
    })
}

/// Polls `/health/ready` until it answers 200.
async fn wait_ready(client: &reqwest::Client, role: &mut Role) -> Result<(), BenchError> {
    let started = Instant::now();
    let ready = format!("http://{}/health/ready", role.admin);
    let mut last = String::from("no answer yet");
    while started.elapsed() < READY_TIMEOUT {
        if !role.process.is_running() {
            return Err(role.process.failure("exited while starting").await);
        }
        match client.get(&ready).send().await {
            Ok(response) if response.status().is_success() => return Ok(()),
            Ok(response) => {
                last = format!(
                    "{}: {}",
                    response.status(),
                    response.text().await.unwrap_or_default()
                );
            }
            Err(err) => last = err.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(BenchError::NotReady {
        what: role.process.name().to_owned(),
        waited: READY_TIMEOUT,
        last,
    })
}

/// GETs `/api/products` and checks it is a 200 listing.
async fn listing(client: &reqwest::Client, base: &Url) -> Result<Vec<u8>, BenchError> {
    let url = format!("{}api/products", base);
    let response = client
        .get(&url)
        .send()
        .await
        .map_err(|err| BenchError::http(format!("GET {url}"), err))?;
    let status = response.status();
    let body = response
        .bytes()
        .await
        .map_err(|err| BenchError::http(format!("GET {url}"), err))?;
    if !status.is_success() || !body.starts_with(b"{\"products\"") {
        return Err(BenchError::Measurement(format!(
            "GET {url} answered {status}: {}",
            String::from_utf8_lossy(&body)
        )));
    }
    Ok(body.to_vec())
}

/// The telemetry variants' processes (their gateways always ask the
/// catalog), the bare server, the proxy, and gateways with their catalog
/// cache on (as deployed), telemetry full and off; the full one exports to a
/// sink of its own, so the first sink's span count stays the read path's.
#[derive(Debug)]
struct Fleet {
    gateways: BTreeMap<Telemetry, (Role, Role)>,
    bare: (ChildProcess, Url),
    proxy: (ChildProcess, Url),
    cached: BTreeMap<Telemetry, (Role, Role)>,
    /// The second sink: figure 2's and figure 5's exporting servers.
    cached_sink: ChildProcess,
    /// The third: figure 1's sampled variants.
    sampled_sink: ChildProcess,
    /// Figure 5: a gateway per cache level, all on `levels_catalog`.
    levels: BTreeMap<CacheLevel, Role>,
    levels_catalog: Role,
}

impl Fleet {
    /// Stops the servers of figure 1's exporting variants, gateways first,
    /// and waits for each to exit.
    async fn stop_exporters(&mut self, grace: Duration) -> Result<(), BenchError> {
        for (telemetry, (catalog, gateway)) in &mut self.gateways {
            if !telemetry.traces_every_request() {
                continue;
            }
            for role in [gateway, catalog] {
                if !role.process.terminate(grace).await {
                    return Err(role.process.failure("did not stop after SIGTERM").await);
                }
            }
        }
        Ok(())
    }
}

/// The telemetry variants of the cached gateway.
const CACHED: [Telemetry; 2] = [Telemetry::Full, Telemetry::Off];

/// Figure 5: which levels of its catalog cache a gateway uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum CacheLevel {
    /// The local level alone (TTL 1 s), no Redis: the rate limit is local too.
    Local,
    /// Local TTL 1 s in front of Redis: as deployed.
    TwoLevel,
    /// Local TTL 0 s: every read asks Redis (misses go to the catalog).
    SharedOnly,
}

impl CacheLevel {
    const ALL: [Self; 3] = [Self::Local, Self::TwoLevel, Self::SharedOnly];

    /// The target's name.
    fn name(self) -> &'static str {
        match self {
            Self::Local => "levels-local",
            Self::TwoLevel => "levels-two-level",
            Self::SharedOnly => "levels-shared-only",
        }
    }

    fn uses_redis(self) -> bool {
        self != Self::Local
    }

    /// The gateway's environment for this level; `redis` is Redis's URL.
    fn env(self, redis: &str) -> Vec<(&'static str, String)> {
        let ttl = match self {
            Self::Local | Self::TwoLevel => "1s",
            Self::SharedOnly => "0s",
        };
        let mut env = vec![("FAULTLINE_CATALOG_CACHE_TTL", ttl.to_owned())];
        if self.uses_redis() {
            env.push(("FAULTLINE_REDIS_URL", redis.to_owned()));
        }
        env
    }
}

/// What a target is measured with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TargetKind {
    Variant(Telemetry),
    Bare,
    Proxy,
    /// The gateway's cached product-list GET (cache TTL as deployed, so
    /// about one request a second reaches the catalog): closed loop only.
    Cached(Telemetry),
    /// Figure 5: a gateway with the given cache levels (telemetry full).
    Level(CacheLevel),
}

impl TargetKind {
    fn name(self) -> &'static str {
        match self {
            Self::Variant(t) => t.name(),
            Self::Bare => "bare",
            Self::Proxy => "proxy",
            Self::Cached(Telemetry::Off) => "cached-off",
            Self::Cached(_) => "cached-full",
            Self::Level(level) => level.name(),
        }
    }

    fn all() -> Vec<Self> {
        let mut all: Vec<Self> = Telemetry::ALL.iter().map(|&t| Self::Variant(t)).collect();
        all.extend([Self::Bare, Self::Proxy]);
        all.extend(CACHED.iter().map(|&t| Self::Cached(t)));
        all.extend(CacheLevel::ALL.iter().map(|&l| Self::Level(l)));
        all
    }

    /// The open-loop rate this target is measured at, if any.
    fn open_rate(self, rates: &Rates) -> Option<f64> {
        match self {
            Self::Variant(_) => Some(rates.instrumentation),
            Self::Bare | Self::Proxy => Some(rates.proxy),
            Self::Cached(_) => None,
            Self::Level(_) => Some(rates.cache_levels),
        }
    }
}

impl Fleet {
    fn target<'a>(
        &'a self,
        kind: TargetKind,
        postgres: &'a Postgres,
        redis: &'a Redis,
        sink: &'a ChildProcess,
    ) -> Option<Target<'a>> {
        match kind {
            TargetKind::Variant(t) => {
                let (catalog, gateway) = self.gateways.get(&t)?;
                Some(Target {
                    url: &gateway.http,
                    servers: vec![&gateway.process, &catalog.process],
                    postgres: Some(postgres),
                    redis: None,
                    helpers: if t.sampling().is_some() {
                        vec![&self.sampled_sink]
                    } else if t.exports() {
                        vec![sink]
                    } else {
                        Vec::new()
                    },
                    traceparent: t.traceparent(),
                })
            }
            TargetKind::Bare => Some(Target {
                url: &self.bare.1,
                servers: vec![&self.bare.0],
                postgres: None,
                redis: None,
                helpers: Vec::new(),
                traceparent: true,
            }),
            TargetKind::Proxy => Some(Target {
                url: &self.proxy.1,
                servers: vec![&self.proxy.0, &self.bare.0],
                postgres: None,
                redis: None,
                helpers: Vec::new(),
                traceparent: true,
            }),
            TargetKind::Cached(t) => {
                let (catalog, gateway) = self.cached.get(&t)?;
                Some(Target {
                    url: &gateway.http,
                    servers: vec![&gateway.process, &catalog.process],
                    postgres: Some(postgres),
                    redis: None,
                    helpers: if t.exports() {
                        vec![&self.cached_sink]
                    } else {
                        Vec::new()
                    },
                    traceparent: true,
                })
            }
            TargetKind::Level(level) => {
                let gateway = self.levels.get(&level)?;
                Some(Target {
                    url: &gateway.http,
                    servers: vec![&gateway.process, &self.levels_catalog.process],
                    postgres: Some(postgres),
                    redis: level.uses_redis().then_some(redis),
                    helpers: vec![&self.cached_sink],
                    traceparent: true,
                })
            }
        }
    }
}

/// What the gateway does with catalog answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GatewayCache {
    /// `FAULTLINE_CATALOG_CACHE_TTL=0s` and `FAULTLINE_CATALOG_COALESCE=off`:
    /// every read goes to the catalog, each on its own (none shares another's
    /// fetch), so each request takes the whole read path.
    Off,
    /// The TTL as deployed (the default).
    AsDeployed,
}

/// Starts a catalog and a gateway for `telemetry`.
async fn start_variant(
    telemetry: Telemetry,
    name: &str,
    cache: GatewayCache,
    postgres: &Postgres,
    otlp: &str,
    cpu: Option<usize>,
    work_dir: &Path,
) -> Result<(Role, Role), BenchError> {
    let mut env = telemetry.env(otlp);
    env.push(("DATABASE_URL", postgres.url.clone()));
    let catalog = start_role(&format!("catalog-{name}"), "catalog", &env, cpu, work_dir).await?;
    let mut env = telemetry.env(otlp);
    env.extend(gateway_env(&catalog.http, "http://127.0.0.1:9"));
    if cache == GatewayCache::Off {
        env.push(("FAULTLINE_CATALOG_CACHE_TTL", "0s".to_owned()));
        env.push(("FAULTLINE_CATALOG_COALESCE", "off".to_owned()));
    }
    let gateway = start_role(&format!("gateway-{name}"), "gateway", &env, cpu, work_dir).await?;
    Ok((catalog, gateway))
}

/// The gateway's upstreams, and a rate limit the benchmark never reaches.
fn gateway_env(catalog: &Url, orders: &str) -> Vec<(&'static str, String)> {
    vec![
        (
            "FAULTLINE_CATALOG_URLS",
            catalog.as_str().trim_end_matches('/').to_owned(),
        ),
        ("FAULTLINE_ORDERS_URLS", orders.to_owned()),
        crate::identity::jwks_env(),
        ("FAULTLINE_RATE_LIMIT_PER_SECOND", "1000000".to_owned()),
        ("FAULTLINE_RATE_LIMIT_BURST", "1000000".to_owned()),
    ]
}

fn read_machine() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu_model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map_or_else(|| "unknown".to_owned(), |m| m.trim().to_owned());
    Machine {
        // Not available_parallelism: this process may be pinned to one core already.
        nproc: cpuinfo
            .lines()
            .filter(|l| l.starts_with("processor"))
            .count()
            .max(1),
        cpu_model,
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
            .to_owned(),
        load_average_start: load_average(),
        load_average_end: String::new(),
        other_containers: 0,
    }
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

async fn running_containers() -> usize {
    tokio::process::Command::new("docker")
        .args(["ps", "-q"])
        .output()
        .await
        .map(|o| String::from_utf8_lossy(&o.stdout).lines().count())
        .unwrap_or(0)
}

async fn spans_received(client: &reqwest::Client, sink: SocketAddr) -> Option<u64> {
    let text = client
        .get(format!("http://{sink}/spans"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.trim().parse().ok()
}

fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

/// Runs every benchmark and returns the results.
pub async fn run(options: RunOptions) -> Result<Results, BenchError> {
    let started = Instant::now();
    let started_at = now_rfc3339();
    let plan = &options.plan;
    let pin = options.pinning;
    let work = options.work_dir.as_path();
    let mut machine = read_machine();
    machine.other_containers = running_containers().await;
    let client = http_client()?;
    let mut warnings = Vec::new();

    container::preflight(&[
        postgres::IMAGE,
        redis::IMAGE,
        rabbitmq::IMAGE,
        exporter::IMAGE,
    ])
    .await?;
    postgres::preflight_standby().await?;
    progress("starting PostgreSQL");
    let postgres = Postgres::start(pin.server).await?;
    progress("starting the OTLP sink");
    let (sink, otlp, sink_ready) = start_sink("otlp-sink", pin, work).await?;
    let sink_http = sink_ready.addr("http")?;

    let side_by_side = if options.footprint_only {
        None
    } else {
        let sink = Sink {
            process: &sink,
            otlp: &otlp,
            http: sink_http,
        };
        Some(side_by_side(&client, &postgres, &sink, plan, pin, work).await?)
    };

    progress(
        "footprint: the five roles, PostgreSQL and its standby, Redis, RabbitMQ, the exporters",
    );
    let footprint = footprint(&client, &postgres, &otlp, &sink, plan, pin, work).await?;
    warnings.extend(check_footprint(&footprint));

    let (figures, rates, absolute, rounds) = match side_by_side {
        Some(SideBySide {
            rounds,
            rates,
            counters,
            spans_per_request,
        }) => {
            let figures = Figures {
                instrumentation: instrumentation(&rounds, spans_per_request),
                hot_path: hot_path(&rounds),
                proxy: proxy_figure(&rounds),
                footprint,
                cache_levels: cache_levels(&rounds, counters),
            };
            let absolute = absolute(&rounds);
            warnings.extend(check(&rounds, &absolute, pin));
            warnings.extend(check_levels(&figures.cache_levels));
            (figures, rates, absolute, rounds)
        }
        None => {
            let figures = Figures {
                footprint,
                ..Figures::default()
            };
            (figures, Rates::default(), BTreeMap::new(), Vec::new())
        }
    };
    let mut goals = goals(&figures, &rates);
    if options.footprint_only {
        goals.retain(|goal| goal.figure == "4");
    }
    machine.load_average_end = load_average();
    Ok(Results {
        schema: SCHEMA,
        command: options.command.clone(),
        quick: options.quick,
        footprint_only: options.footprint_only,
        started_at,
        elapsed_s: started.elapsed().as_secs_f64(),
        machine,
        plan: plan.clone(),
        pinning: pin,
        rates,
        figures,
        goals,
        absolute,
        rounds,
        warnings,
    })
}

/// Starts an OTLP sink named `name` on the client's core: the process, its
/// gRPC endpoint (`http://host:port`) and its ready line.
async fn start_sink(
    name: &str,
    pin: Pinning,
    work: &Path,
) -> Result<(ChildProcess, String, ReadyLine), BenchError> {
    let (sink, ready) =
        ChildProcess::start(&Spawn::serve(name, &["otlp-sink"]).on_cpu(pin.client), work).await?;
    let ready = ready.unwrap_or_default();
    let otlp = format!("http://{}", ready.addr("grpc")?);
    Ok((sink, otlp, ready))
}

/// Figure 1's OTLP sink.
struct Sink<'a> {
    process: &'a ChildProcess,
    /// Its gRPC endpoint, `http://host:port`.
    otlp: &'a str,
    /// Where it says how many spans it received.
    http: SocketAddr,
}

/// What the rounds measured: figures 1, 2, 3 and 5.
struct SideBySide {
    rounds: Vec<Round>,
    rates: Rates,
    /// Figure 5's gateways' counters, by target.
    counters: BTreeMap<String, BTreeMap<String, f64>>,
    spans_per_request: Option<f64>,
}

/// Figures 1, 2, 3 and 5: starts Redis and every target's processes,
/// calibrates, runs the rounds, and stops them all.
async fn side_by_side(
    client: &reqwest::Client,
    postgres: &Postgres,
    sink: &Sink<'_>,
    plan: &Plan,
    pin: Pinning,
    work: &Path,
) -> Result<SideBySide, BenchError> {
    let (otlp, sink_http) = (sink.otlp, sink.http);
    let sink = sink.process;
    progress("starting Redis");
    let redis = Redis::start(pin.server).await?;

    let (sampled_sink, sampled_otlp, _) = start_sink("otlp-sink-sampled", pin, work).await?;
    progress("starting a catalog and a gateway per telemetry variant");
    let mut gateways = BTreeMap::new();
    for telemetry in Telemetry::ALL {
        let pair = start_variant(
            telemetry,
            telemetry.name(),
            GatewayCache::Off,
            postgres,
            if telemetry.sampling().is_some() {
                &sampled_otlp
            } else {
                otlp
            },
            pin.server,
            work,
        )
        .await?;
        gateways.insert(telemetry, pair);
    }
    for (catalog, gateway) in gateways.values_mut() {
        wait_ready(client, catalog).await?;
        wait_ready(client, gateway).await?;
    }
    let mut body = Vec::new();
    for (catalog, gateway) in gateways.values() {
        body = listing(client, &gateway.http).await?;
        listing(client, &catalog.http).await?;
    }
    let body_file = work.join("products.json");
    std::fs::write(&body_file, &body).map_err(|source| BenchError::Write {
        path: body_file.clone(),
        source,
    })?;

    progress("starting the bare server and the fault proxy");
    let body_arg = body_file.to_string_lossy().into_owned();
    let (bare, bare_ready) = ChildProcess::start(
        &Spawn::serve("bare", &["bare", "--body-file", &body_arg]).on_cpu(pin.server),
        work,
    )
    .await?;
    let bare_addr = bare_ready.unwrap_or_default().addr("http")?;
    let upstream = bare_addr.to_string();
    let (proxy, proxy_ready) = ChildProcess::start(
        &Spawn::serve("proxy", &["proxy", "--upstream", &upstream]).on_cpu(pin.server),
        work,
    )
    .await?;
    let proxy_addr = proxy_ready.unwrap_or_default().addr("proxy")?;
    progress("starting gateways with their catalog cache on");
    let (cached_sink, cached_otlp, _) = start_sink("otlp-sink-cached", pin, work).await?;
    let mut cached = BTreeMap::new();
    for telemetry in CACHED {
        let name = format!("cached-{}", telemetry.name());
        let (mut catalog, mut gateway) = start_variant(
            telemetry,
            &name,
            GatewayCache::AsDeployed,
            postgres,
            &cached_otlp,
            pin.server,
            work,
        )
        .await?;
        wait_ready(client, &mut catalog).await?;
        wait_ready(client, &mut gateway).await?;
        if listing(client, &gateway.http).await? != body {
            return Err(BenchError::Measurement(format!(
                "the {name} gateway did not answer the listing's bytes"
            )));
        }
        cached.insert(telemetry, (catalog, gateway));
    }
    progress("starting a gateway per cache level, on one catalog");
    let mut env = Telemetry::Full.env(&cached_otlp);
    env.push(("DATABASE_URL", postgres.url.clone()));
    env.push(("FAULTLINE_REDIS_URL", redis.url.clone()));
    let mut levels_catalog =
        start_role("catalog-levels", "catalog", &env, pin.server, work).await?;
    wait_ready(client, &mut levels_catalog).await?;
    let mut levels = BTreeMap::new();
    for level in CacheLevel::ALL {
        let mut env = Telemetry::Full.env(&cached_otlp);
        env.extend(gateway_env(&levels_catalog.http, "http://127.0.0.1:9"));
        env.extend(level.env(&redis.url));
        let name = format!("gateway-{}", level.name());
        let mut gateway = start_role(&name, "gateway", &env, pin.server, work).await?;
        wait_ready(client, &mut gateway).await?;
        if listing(client, &gateway.http).await? != body {
            return Err(BenchError::Measurement(format!(
                "the {name} gateway did not answer the listing's bytes"
            )));
        }
        levels.insert(level, gateway);
    }
    let mut fleet = Fleet {
        gateways,
        bare: (bare, url(bare_addr)?),
        proxy: (proxy, url(proxy_addr)?),
        cached,
        cached_sink,
        sampled_sink,
        levels,
        levels_catalog,
    };
    if listing(client, &fleet.proxy.1).await? != body
        || listing(client, &fleet.bare.1).await? != body
    {
        return Err(BenchError::Measurement(
            "the bare server or the proxy did not answer the listing's bytes".to_owned(),
        ));
    }

    let closed = Load {
        mode: Mode::Closed,
        duration: plan.closed,
        concurrency: plan.concurrency,
        mix: LIST_ONLY,
    };
    let closed_warmup = Load {
        duration: plan.warmup,
        ..closed
    };

    progress("calibrating: the telemetry-off peak");
    let off = fleet
        .target(TargetKind::Variant(Telemetry::Off), postgres, &redis, sink)
        .ok_or_else(|| BenchError::Measurement("no telemetry-off target".to_owned()))?;
    measure::warm_up(
        &off,
        &Load {
            duration: plan.warmup * 2,
            ..closed
        },
    )
    .await?;
    let peak = measure::measure(&off, &closed).await?;
    if !(peak.throughput.is_finite() && peak.throughput > 0.0) {
        return Err(BenchError::Measurement(format!(
            "the telemetry-off read path answered nothing during calibration: {peak:?}"
        )));
    }
    let rates = Rates {
        instrumentation: (peak.throughput * plan.load_fraction).max(10.0).round(),
        proxy: plan.proxy_rate,
        cache_levels: plan.cache_rate,
    };
    progress(&format!(
        "telemetry-off peak {:.0} req/s; figure 1's fixed rate {:.0} req/s",
        peak.throughput, rates.instrumentation
    ));

    let spans_before = spans_received(client, sink_http).await.unwrap_or(0);
    let mut exported_requests = 0u64;
    let kinds = TargetKind::all();
    let mut rounds = Vec::new();
    for index in 0..plan.rounds {
        let mut round = Round {
            index,
            ..Round::default()
        };
        let mut order = kinds.clone();
        order.rotate_left(index % kinds.len());
        for kind in order {
            let name = kind.name();
            round.order.push(name.to_owned());
            let target = fleet
                .target(kind, postgres, &redis, sink)
                .ok_or_else(|| BenchError::Measurement(format!("no target {name}")))?;
            measure::warm_up(&target, &closed_warmup).await?;
            let sample = measure::measure(&target, &closed).await?;
            let mut sent = sample.requests;
            round.closed.insert(name.to_owned(), sample);
            if matches!(kind, TargetKind::Bare | TargetKind::Proxy) {
                let one = Load {
                    concurrency: 1,
                    duration: plan.open,
                    ..closed
                };
                measure::warm_up(
                    &target,
                    &Load {
                        duration: plan.warmup,
                        ..one
                    },
                )
                .await?;
                let sample = measure::measure(&target, &one).await?;
                round.sequential.insert(name.to_owned(), sample);
            }
            let Some(rate) = kind.open_rate(&rates) else {
                continue;
            };
            let open = Load {
                mode: Mode::Open { rate },
                duration: plan.open,
                concurrency: plan.open_concurrency,
                mix: LIST_ONLY,
            };
            measure::warm_up(
                &target,
                &Load {
                    duration: plan.warmup,
                    ..open
                },
            )
            .await?;
            let sample = measure::measure(&target, &open).await?;
            sent += sample.requests;
            round.open.insert(name.to_owned(), sample);
            if let TargetKind::Variant(t) = kind
                && t.traces_every_request()
            {
                exported_requests += sent;
            }
        }
        progress(&format!("round {}/{} done", index + 1, plan.rounds));
        rounds.push(round);
    }
    // What figure 5's gateways did: which level answered, and whether Redis
    // ever failed them.
    let mut counters = BTreeMap::new();
    for (level, gateway) in &fleet.levels {
        counters.insert(
            level.name().to_owned(),
            cache_counters(client, gateway.admin).await?,
        );
    }
    // Warm-ups sent requests too; the sink counted their spans. Count them.
    exported_requests += warmup_requests(&rounds, plan, &rates);
    // Every exporting server flushes its spans when it stops (the batch
    // processor would otherwise hold the last ones for up to 5 s): once they
    // have all exited, the sink's count is final.
    fleet.stop_exporters(STOP_GRACE).await?;
    let spans = spans_received(client, sink_http)
        .await
        .map(|n| n - spans_before.min(n));
    let spans_per_request = spans
        .filter(|_| exported_requests > 0)
        .map(|n| n as f64 / exported_requests as f64);
    drop(fleet);
    drop(redis);

    Ok(SideBySide {
        rounds,
        rates,
        counters,
        spans_per_request,
    })
}

/// An estimate of the requests the warm-ups sent to the exporting variants:
/// closed warm-ups at the measured closed rate, open ones at the fixed rate.
fn warmup_requests(rounds: &[Round], plan: &Plan, rates: &Rates) -> u64 {
    let mut total = 0.0;
    for round in rounds {
        for t in Telemetry::ALL.iter().filter(|t| t.traces_every_request()) {
            if let Some(sample) = round.closed.get(t.name()) {
                total += sample.throughput * plan.warmup.as_secs_f64();
            }
            total += rates.instrumentation * plan.warmup.as_secs_f64();
        }
    }
    total.round() as u64
}

fn per_round(rounds: &[Round], f: impl Fn(&Round) -> Option<f64>) -> Option<Summary> {
    let values: Vec<f64> = rounds.iter().filter_map(f).collect();
    Summary::of(&values)
}

fn closed(round: &Round, name: &str) -> Option<Sample> {
    round.closed.get(name).cloned()
}

fn open(round: &Round, name: &str) -> Option<Sample> {
    round.open.get(name).cloned()
}

/// Server CPU per request, PostgreSQL and Redis included when measured.
fn cpu_per_request(sample: &Sample) -> f64 {
    sample.server_cpu_us_per_request
        + sample.postgres_cpu_us_per_request.unwrap_or(0.0)
        + sample.redis_cpu_us_per_request.unwrap_or(0.0)
}

fn instrumentation(rounds: &[Round], spans_per_request: Option<f64>) -> Instrumentation {
    let mut throughput_ratio = BTreeMap::new();
    let mut p99_ratio = BTreeMap::new();
    let mut cpu_ratio = BTreeMap::new();
    for t in Telemetry::ALL.iter().filter(|t| **t != Telemetry::Off) {
        let name = t.name();
        throughput_ratio.insert(
            name.to_owned(),
            per_round(rounds, |r| {
                Some(ratio(
                    closed(r, name)?.throughput,
                    closed(r, "off")?.throughput,
                ))
            }),
        );
        p99_ratio.insert(
            name.to_owned(),
            per_round(rounds, |r| {
                Some(ratio(open(r, name)?.p99_ms, open(r, "off")?.p99_ms))
            }),
        );
        cpu_ratio.insert(
            name.to_owned(),
            per_round(rounds, |r| {
                Some(ratio(
                    closed(r, name)?.server_cpu_us_per_request,
                    closed(r, "off")?.server_cpu_us_per_request,
                ))
            }),
        );
    }
    Instrumentation {
        throughput_ratio,
        p99_ratio,
        cpu_ratio,
        spans_per_request,
    }
}

fn hot_path(rounds: &[Round]) -> HotPath {
    let throughput = |a: &'static str, b: &'static str| {
        per_round(rounds, move |r| {
            Some(ratio(closed(r, a)?.throughput, closed(r, b)?.throughput))
        })
    };
    let cpu = |fast: &'static str, slow: &'static str| {
        per_round(rounds, move |r| {
            Some(ratio(
                cpu_per_request(&closed(r, fast)?),
                cpu_per_request(&closed(r, slow)?),
            ))
        })
    };
    HotPath {
        throughput_ratio: throughput("cached-full", "bare"),
        off_throughput_ratio: throughput("cached-off", "bare"),
        cpu_ratio: cpu("bare", "cached-full"),
        read_path_throughput_ratio: throughput("full", "bare"),
        read_path_off_throughput_ratio: throughput("off", "bare"),
        read_path_cpu_ratio: cpu("bare", "full"),
    }
}

fn proxy_figure(rounds: &[Round]) -> ProxyFigure {
    let added = |f: fn(&Sample) -> f64| {
        per_round(rounds, move |r| {
            Some((f(&open(r, "proxy")?) - f(&open(r, "bare")?)) * 1000.0)
        })
    };
    ProxyFigure {
        throughput_ratio: per_round(rounds, |r| {
            Some(ratio(
                closed(r, "proxy")?.throughput,
                closed(r, "bare")?.throughput,
            ))
        }),
        added_p50_us: added(|s| s.p50_ms),
        added_p50_sequential_us: per_round(rounds, |r| {
            let proxied = r.sequential.get("proxy")?.p50_ms;
            let direct = r.sequential.get("bare")?.p50_ms;
            Some((proxied - direct) * 1000.0)
        }),
        added_p99_us: added(|s| s.p99_ms),
        cpu_ratio: per_round(rounds, |r| {
            Some(ratio(
                closed(r, "bare")?.server_cpu_us_per_request,
                closed(r, "proxy")?.server_cpu_us_per_request,
            ))
        }),
    }
}

/// Figure 5: each level against the next, round by round.
fn cache_levels(
    rounds: &[Round],
    counters: BTreeMap<String, BTreeMap<String, f64>>,
) -> CacheLevels {
    let ratios = |a: CacheLevel, b: CacheLevel| {
        let (a, b) = (a.name(), b.name());
        LevelRatios {
            throughput_ratio: per_round(rounds, |r| {
                Some(ratio(closed(r, a)?.throughput, closed(r, b)?.throughput))
            }),
            cpu_ratio: per_round(rounds, |r| {
                Some(ratio(
                    cpu_per_request(&closed(r, a)?),
                    cpu_per_request(&closed(r, b)?),
                ))
            }),
            p99_ratio: per_round(rounds, |r| {
                Some(ratio(open(r, a)?.p99_ms, open(r, b)?.p99_ms))
            }),
        }
    };
    CacheLevels {
        two_level_vs_local: ratios(CacheLevel::TwoLevel, CacheLevel::Local),
        shared_only_vs_two_level: ratios(CacheLevel::SharedOnly, CacheLevel::TwoLevel),
        counters,
    }
}

/// A gateway's cache counters, from its `/metrics`.
async fn cache_counters(
    client: &reqwest::Client,
    admin: SocketAddr,
) -> Result<BTreeMap<String, f64>, BenchError> {
    Ok(parse_cache_counters(&metrics_text(client, admin).await?))
}

/// `catalog_cache_lookups_total{level,result}` as `<level>_<result>`, and
/// `degraded_responses_total{reason}` as `degraded_<reason>`, from the
/// Prometheus text format.
fn parse_cache_counters(text: &str) -> BTreeMap<String, f64> {
    let mut counters = BTreeMap::new();
    for (name, labels, value) in samples(text) {
        let key = match name {
            "catalog_cache_lookups_total" => {
                match (label(labels, "level"), label(labels, "result")) {
                    (Some(level), Some(result)) => format!("{level}_{result}"),
                    _ => continue,
                }
            }
            "degraded_responses_total" => match label(labels, "reason") {
                Some(reason) => format!("degraded_{reason}"),
                None => continue,
            },
            _ => continue,
        };
        *counters.entry(key).or_insert(0.0) += value;
    }
    counters
}

/// The samples of the Prometheus text format: name, labels (the text
/// between the braces, empty without), value.
fn samples(text: &str) -> impl Iterator<Item = (&str, &str, f64)> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|line| {
            let mut parts = line.split_whitespace();
            let (series, value) = (parts.next()?, parts.next()?);
            let value = value.parse::<f64>().ok()?;
            let (name, labels) = match series.split_once('{') {
                Some((name, labels)) => (name, labels.trim_end_matches('}')),
                None => (series, ""),
            };
            Some((name, labels, value))
        })
}

/// The value of label `key` in a sample's labels.
fn label(labels: &str, key: &str) -> Option<String> {
    labels.split(',').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == key).then(|| v.trim_matches('"').to_owned())
    })
}

/// Warnings when a figure 5 gateway did not work as its level says: Redis
/// failed it (it then decides and reads without Redis), or the level that
/// should answer never did.
fn check_levels(levels: &CacheLevels) -> Vec<String> {
    let mut warnings = Vec::new();
    let get = |target: &str, counter: &str| {
        levels
            .counters
            .get(target)
            .and_then(|c| c.get(counter))
            .copied()
            .unwrap_or(0.0)
    };
    for level in CacheLevel::ALL {
        let name = level.name();
        for reason in ["shared_cache_unavailable", "local_rate_limit"] {
            let degraded = get(name, &format!("degraded_{reason}"));
            if degraded > 0.0 {
                warnings.push(format!(
                    "{name}: {degraded:.0} answer(s) degraded ({reason}): Redis failed the \
                     gateway (an error or its timeout) and it went on without it"
                ));
            }
        }
    }
    let expected = [
        (CacheLevel::Local, "local_hit"),
        (CacheLevel::TwoLevel, "local_hit"),
        (CacheLevel::TwoLevel, "shared_hit"),
        (CacheLevel::SharedOnly, "shared_hit"),
    ];
    for (level, counter) in expected {
        if get(level.name(), counter) <= 0.0 {
            warnings.push(format!(
                "{}: no {counter} counted: the gateway did not use its cache as its level says",
                level.name()
            ));
        }
    }
    warnings
}

/// The median of each number of each sample, over the rounds.
fn median_sample(samples: &[&Sample]) -> Option<Sample> {
    if samples.is_empty() {
        return None;
    }
    let med = |f: fn(&Sample) -> f64| {
        let values: Vec<f64> = samples.iter().map(|s| f(s)).collect();
        Summary::of(&values).map_or(f64::NAN, |s| s.median)
    };
    let postgres: Vec<f64> = samples
        .iter()
        .filter_map(|s| s.postgres_cpu_us_per_request)
        .collect();
    let redis: Vec<f64> = samples
        .iter()
        .filter_map(|s| s.redis_cpu_us_per_request)
        .collect();
    let count = |f: fn(&Sample) -> u64| samples.iter().map(|s| f(s)).sum::<u64>();
    Some(Sample {
        throughput: med(|s| s.throughput),
        p50_ms: med(|s| s.p50_ms),
        p99_ms: med(|s| s.p99_ms),
        requests: count(|s| s.requests),
        errors: count(|s| s.errors),
        dropped: count(|s| s.dropped),
        loadgen_cpu: med(|s| s.loadgen_cpu),
        helper_cpu: med(|s| s.helper_cpu),
        server_cpu: med(|s| s.server_cpu),
        server_cpu_us_per_request: med(|s| s.server_cpu_us_per_request),
        postgres_cpu_us_per_request: Summary::of(&postgres).map(|s| s.median),
        redis_cpu_us_per_request: Summary::of(&redis).map(|s| s.median),
        cpu_us_per_request_by_process: samples[0]
            .cpu_us_per_request_by_process
            .keys()
            .map(|name| {
                let values: Vec<f64> = samples
                    .iter()
                    .filter_map(|s| s.cpu_us_per_request_by_process.get(name).copied())
                    .collect();
                (
                    name.clone(),
                    Summary::of(&values).map_or(f64::NAN, |s| s.median),
                )
            })
            .collect(),
    })
}

fn absolute(rounds: &[Round]) -> BTreeMap<String, Absolute> {
    TargetKind::all()
        .into_iter()
        .map(|kind| {
            let name = kind.name();
            let closed: Vec<&Sample> = rounds.iter().filter_map(|r| r.closed.get(name)).collect();
            let open: Vec<&Sample> = rounds.iter().filter_map(|r| r.open.get(name)).collect();
            let sequential: Vec<&Sample> = rounds
                .iter()
                .filter_map(|r| r.sequential.get(name))
                .collect();
            (
                name.to_owned(),
                Absolute {
                    closed: median_sample(&closed),
                    open: median_sample(&open),
                    sequential: median_sample(&sequential),
                },
            )
        })
        .collect()
}

/// Warnings about what limits the trust in the numbers.
fn check(rounds: &[Round], absolute: &BTreeMap<String, Absolute>, pin: Pinning) -> Vec<String> {
    let mut warnings = Vec::new();
    for (name, a) in absolute {
        if let Some(closed) = &a.closed
            && pin.client.is_some()
            && closed.loadgen_cpu + closed.helper_cpu > SATURATED
        {
            warnings.push(format!(
                "{name}: the client core was {:.0}% busy (load generator {:.2}, OTLP sink {:.2} \
                 cores) at peak: the closed-loop throughput of {name} is partly the client's \
                 ceiling; the CPU-per-request ratios are not affected",
                (closed.loadgen_cpu + closed.helper_cpu) * 100.0,
                closed.loadgen_cpu,
                closed.helper_cpu
            ));
        }
    }
    let errors: u64 = rounds
        .iter()
        .flat_map(|r| r.closed.values().chain(r.open.values()))
        .map(|s| s.errors)
        .sum();
    let dropped: u64 = rounds
        .iter()
        .flat_map(|r| r.open.values())
        .map(|s| s.dropped)
        .sum();
    if errors > 0 {
        warnings.push(format!(
            "{errors} request(s) failed during the measurements"
        ));
    }
    if dropped > 0 {
        warnings.push(format!(
            "{dropped} open-loop request(s) were dropped (every slot busy): the server fell behind the fixed rate"
        ));
    }
    warnings
}

fn median_of(summary: Option<&Summary>) -> Option<f64> {
    summary.map(|s| s.median)
}

fn goals(f: &Figures, rates: &Rates) -> Vec<Goal> {
    let i = &f.instrumentation;
    vec![
        // At the deployed default sampling (10% of new traces).
        Goal::at_least(
            "1",
            "throughput, full-10pct ÷ off",
            median_of(
                i.throughput_ratio
                    .get("full-10pct")
                    .and_then(Option::as_ref),
            ),
            0.95,
        ),
        Goal::at_most(
            "1",
            &p99_label(rates.instrumentation, "full-10pct"),
            median_of(i.p99_ratio.get("full-10pct").and_then(Option::as_ref)),
            1.10,
        ),
        // Every request traced.
        Goal::at_least(
            "1",
            "throughput, full ÷ off",
            median_of(i.throughput_ratio.get("full").and_then(Option::as_ref)),
            0.90,
        ),
        Goal::at_most(
            "1",
            &p99_label(rates.instrumentation, "full"),
            median_of(i.p99_ratio.get("full").and_then(Option::as_ref)),
            1.25,
        ),
        Goal::at_least(
            "2",
            "throughput, cached product-list GET (telemetry full) ÷ bare axum",
            median_of(f.hot_path.throughput_ratio.as_ref()),
            0.50,
        ),
        // Server-bound: the CPU both servers spend per request, since the
        // load generator's core caps the direct throughput.
        Goal::at_least(
            "3",
            "server CPU per request, direct ÷ proxied",
            median_of(f.proxy.cpu_ratio.as_ref()),
            0.85,
        ),
        Goal::at_most(
            "3",
            &added_label(rates.proxy, "p50"),
            median_of(f.proxy.added_p50_us.as_ref()),
            100.0,
        ),
        Goal::at_most(
            "4",
            "core stack RSS, under load (MB)",
            Some(f.footprint.total.load_mb),
            512.0,
        ),
    ]
}

const MB: f64 = 1e6;

fn mb(bytes: u64) -> f64 {
    bytes as f64 / MB
}

/// How long the catalog gets to put its read replica in use: its first
/// checks, one a second, and `FAULTLINE_REPLICA_RECOVER_AFTER` (3) good ones
/// in a row.
const REPLICA_IN_USE_TIMEOUT: Duration = Duration::from_secs(30);

/// How long orders' relay and the worker's consumer get to connect to
/// RabbitMQ, and the broker to count the worker's consumer on its queue
/// (its statistics are collected every second).
const BROKER_IN_USE_TIMEOUT: Duration = Duration::from_secs(30);

/// How long the worker gets, once the load ended, to process every event
/// the relay published.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Figure 4: the five roles with telemetry as deployed, PostgreSQL with a hot
/// standby the catalog reads products from, one PostgreSQL exporter per
/// server, a Redis of its own (started here, so it is measured from empty)
/// for the gateway and the catalog, and a RabbitMQ of its own, as deployed:
/// orders relays the outbox to it, the worker consumes from it
/// (`FAULTLINE_AMQP_URL`). The standby, Redis, RabbitMQ and the exporters
/// are started here; PostgreSQL is the run's.
async fn footprint(
    client: &reqwest::Client,
    postgres: &Postgres,
    otlp: &str,
    sink: &ChildProcess,
    plan: &Plan,
    pin: Pinning,
    work: &Path,
) -> Result<Footprint, BenchError> {
    let telemetry = Telemetry::Full.env(otlp);
    let cpu = pin.server;
    let with = |extra: Vec<(&'static str, String)>| {
        let mut env = telemetry.clone();
        env.extend(extra);
        env
    };
    let redis = Redis::start(pin.server).await?;
    let broker = RabbitMq::start(pin.server, client).await?;
    let standby = Postgres::start_standby(postgres, pin.server).await?;
    let exporters = [
        PostgresExporter::start("primary", postgres, pin.server).await?,
        PostgresExporter::start("standby", &standby, pin.server).await?,
    ];
    let db = || ("DATABASE_URL", postgres.url.clone());
    let shared = || ("FAULTLINE_REDIS_URL", redis.url.clone());
    let amqp = || ("FAULTLINE_AMQP_URL", broker.url.clone());
    let read = ("FAULTLINE_DATABASE_READ_URL", standby.url.clone());
    let payments = start_role("payments", "payments", &with(vec![]), cpu, work).await?;
    let catalog = start_role(
        "catalog",
        "catalog",
        &with(vec![db(), read, shared()]),
        cpu,
        work,
    )
    .await?;
    let bare = |u: &Url| u.as_str().trim_end_matches('/').to_owned();
    let orders = start_role(
        "orders",
        "orders",
        &with(vec![
            db(),
            ("FAULTLINE_CATALOG_URLS", bare(&catalog.http)),
            ("FAULTLINE_PAYMENTS_URLS", bare(&payments.http)),
            crate::identity::jwks_env(),
            amqp(),
        ]),
        cpu,
        work,
    )
    .await?;
    let worker = start_role(
        "worker",
        "worker",
        &with(vec![
            db(),
            ("FAULTLINE_CATALOG_URLS", bare(&catalog.http)),
            ("FAULTLINE_PAYMENTS_URLS", bare(&payments.http)),
            amqp(),
        ]),
        cpu,
        work,
    )
    .await?;
    let mut gateway_env = gateway_env(&catalog.http, &bare(&orders.http));
    gateway_env.push(shared());
    let gateway = start_role("gateway", "gateway", &with(gateway_env), cpu, work).await?;
    let mut roles = vec![gateway, catalog, orders, payments, worker];
    for role in &mut roles {
        wait_ready(client, role).await?;
    }
    let catalog_admin = roles[1].admin;
    let (orders_admin, worker_admin) = (roles[2].admin, roles[4].admin);
    wait_replica_in_use(client, catalog_admin).await?;
    wait_broker_in_use(client, &broker, orders_admin, worker_admin).await?;
    listing(client, &roles[0].http).await?;
    // Straight to the catalog: a read its standby serves.
    listing(client, &roles[1].http).await?;
    // As Prometheus does: each scrape runs the exporter's queries, and makes
    // the broker collect its per-queue series.
    for (exporter, is_standby) in exporters.iter().zip([false, true]) {
        exporter.scrape(client, is_standby).await?;
    }
    broker.scrape(client).await?;
    tokio::time::sleep(plan.settle).await;

    let rss = |roles: &[Role]| -> Result<Vec<u64>, BenchError> {
        roles
            .iter()
            .map(|r| {
                r.process.rss_bytes().ok_or_else(|| {
                    BenchError::Measurement(format!("cannot read the RSS of {}", r.process.name()))
                })
            })
            .collect()
    };
    // In the order of the footprint's rows; one `docker stats` for all.
    let containers = [
        postgres.container(),
        standby.container(),
        redis.container(),
        broker.container(),
        exporters[0].container(),
        exporters[1].container(),
    ];
    let idle = rss(&roles)?;
    let containers_idle = container::memory_of(&containers).await?;
    let reads_before = read_routes(client, catalog_admin).await?;
    let events_before = read_events(client, orders_admin, worker_admin).await?;

    let mut peak = idle.clone();
    let mut containers_peak = containers_idle.clone();
    let load = Load {
        mode: Mode::Closed,
        duration: plan.footprint_load,
        concurrency: plan.concurrency,
        mix: Mix::default(),
    };
    let servers: Vec<&ChildProcess> = roles.iter().map(|r| &r.process).collect();
    let target = Target {
        url: &roles[0].http,
        servers,
        postgres: Some(postgres),
        redis: Some(&redis),
        helpers: vec![sink],
        traceparent: true,
    };
    let done = AtomicBool::new(false);
    let run_load = async {
        let result = measure::measure(&target, &load).await;
        done.store(true, Ordering::Relaxed);
        result
    };
    let sample_rss = async {
        while !done.load(Ordering::Relaxed) {
            if let Ok(now) = rss(&roles) {
                for (p, n) in peak.iter_mut().zip(now) {
                    *p = (*p).max(n);
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    let sample_containers = async {
        while !done.load(Ordering::Relaxed) {
            if let Ok(now) = container::memory_of(&containers).await {
                for (p, n) in containers_peak.iter_mut().zip(now) {
                    *p = (*p).max(n);
                }
            }
        }
    };
    // Prometheus scrapes every exporter and the broker while the shop works:
    // once, halfway.
    let scrape = async {
        tokio::time::sleep(plan.footprint_load / 2).await;
        for (exporter, is_standby) in exporters.iter().zip([false, true]) {
            exporter.scrape(client, is_standby).await?;
        }
        broker.scrape(client).await?;
        Ok::<(), BenchError>(())
    };
    let (load_sample, (), (), scraped) =
        tokio::join!(run_load, sample_rss, sample_containers, scrape);
    let load_sample = load_sample?;
    scraped?;
    let reads_after = read_routes(client, catalog_admin).await?;
    let events = wait_drained(client, orders_admin, worker_admin, &events_before).await?;

    let names = ["gateway", "catalog", "orders", "payments", "worker"];
    let role_memory: BTreeMap<String, Memory> = names
        .iter()
        .zip(idle.iter().zip(&peak))
        .map(|(name, (i, p))| {
            (
                (*name).to_owned(),
                Memory {
                    idle_mb: mb(*i),
                    load_mb: mb(*p),
                },
            )
        })
        .collect();
    let memory: Vec<Memory> = containers_idle
        .iter()
        .zip(&containers_peak)
        .map(|(i, p)| Memory {
            idle_mb: mb(*i),
            load_mb: mb(*p),
        })
        .collect();
    let [
        postgres_memory,
        standby_memory,
        redis_memory,
        rabbitmq_memory,
        primary_exporter,
        standby_exporter,
    ] = memory[..]
    else {
        return Err(BenchError::Measurement(format!(
            "docker stats gave {} memory figures for the footprint's {} containers",
            memory.len(),
            containers.len()
        )));
    };
    let total = Memory {
        idle_mb: role_memory.values().map(|m| m.idle_mb).sum::<f64>()
            + memory.iter().map(|m| m.idle_mb).sum::<f64>(),
        load_mb: role_memory.values().map(|m| m.load_mb).sum::<f64>()
            + memory.iter().map(|m| m.load_mb).sum::<f64>(),
    };
    Ok(Footprint {
        roles: role_memory,
        postgres: postgres_memory,
        standby: standby_memory,
        redis: redis_memory,
        rabbitmq: rabbitmq_memory,
        exporters: BTreeMap::from([
            ("primary".to_owned(), primary_exporter),
            ("standby".to_owned(), standby_exporter),
        ]),
        total,
        catalog_reads: routes_between(&reads_before, &reads_after),
        events: Some(events),
        load: Some(load_sample),
    })
}

/// Waits until the catalog at `admin` reads from its standby
/// (`db_client_replica_in_use` 1).
async fn wait_replica_in_use(
    client: &reqwest::Client,
    admin: SocketAddr,
) -> Result<(), BenchError> {
    let started = Instant::now();
    let mut last = String::from("no answer yet");
    while started.elapsed() < REPLICA_IN_USE_TIMEOUT {
        match metrics_text(client, admin).await {
            Ok(text) => {
                let in_use = samples(&text)
                    .find(|(name, _, _)| *name == "db_client_replica_in_use")
                    .map(|(_, _, value)| value);
                if in_use == Some(1.0) {
                    return Ok(());
                }
                last = format!("db_client_replica_in_use {in_use:?}");
            }
            Err(err) => last = err.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(BenchError::NotReady {
        what: "the catalog's read replica (the PostgreSQL standby, by \
               FAULTLINE_DATABASE_READ_URL)"
            .to_owned(),
        waited: REPLICA_IN_USE_TIMEOUT,
        last: format!(
            "{last}; the catalog's log (its stderr, in the work directory) says why it does \
             not use it"
        ),
    })
}

/// A role's `/metrics`, from its admin address.
async fn metrics_text(client: &reqwest::Client, admin: SocketAddr) -> Result<String, BenchError> {
    let url = format!("http://{admin}/metrics");
    client
        .get(&url)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(|err| BenchError::http(format!("GET {url}"), err))?
        .text()
        .await
        .map_err(|err| BenchError::http(format!("GET {url}"), err))
}

/// Waits until orders' relay and the worker's consumer are connected to the
/// broker (`messaging_client_connected` 1) and the broker counts a consumer
/// on the workers' queue.
async fn wait_broker_in_use(
    client: &reqwest::Client,
    broker: &RabbitMq,
    orders: SocketAddr,
    worker: SocketAddr,
) -> Result<(), BenchError> {
    let started = Instant::now();
    let mut last = String::from("no answer yet");
    let connected = |text: &str| {
        samples(text)
            .find(|(name, _, _)| *name == faultline_shop::broker::CONNECTED)
            .map(|(_, _, value)| value)
    };
    while started.elapsed() < BROKER_IN_USE_TIMEOUT {
        let state = async {
            let relay = connected(&metrics_text(client, orders).await?);
            let consumer = connected(&metrics_text(client, worker).await?);
            let scrape = broker.scrape(client).await?;
            Ok::<_, BenchError>((relay, consumer, scrape.consumers))
        };
        match state.await {
            Ok((Some(1.0), Some(1.0), Some(consumers))) if consumers >= 1.0 => return Ok(()),
            Ok((relay, consumer, consumers)) => {
                last = format!(
                    "orders' relay connected {relay:?}, the worker's consumer connected \
                     {consumer:?}, consumers of {} in the broker {consumers:?}",
                    rabbitmq::QUEUE
                );
            }
            Err(err) => last = err.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(BenchError::NotReady {
        what: "the broker's clients (orders' relay and the worker's consumer, by \
               FAULTLINE_AMQP_URL)"
            .to_owned(),
        waited: BROKER_IN_USE_TIMEOUT,
        last: format!(
            "{last}; the roles' logs (their stderr, in the work directory) say why they do \
             not connect"
        ),
    })
}

/// The outbox's counters: orders' relay (`orders`) and the worker's
/// (`worker`), as totals since they started; `unprocessed` is the worker's
/// `outbox_backlog_events`.
async fn read_events(
    client: &reqwest::Client,
    orders: SocketAddr,
    worker: SocketAddr,
) -> Result<(Events, f64), BenchError> {
    let orders = metrics_text(client, orders).await?;
    let worker = metrics_text(client, worker).await?;
    Ok(parse_events(&orders, &worker))
}

fn parse_events(orders: &str, worker: &str) -> (Events, f64) {
    use faultline_shop::broker::{CONSUMED, SENT, topology};
    use faultline_shop::outbox::backlog::BACKLOG_EVENTS;
    use faultline_shop::roles::worker::PROCESSED;

    let mut events = Events::default();
    for (name, labels, value) in samples(orders) {
        let destination = label(labels, "messaging_destination_name");
        if name != SENT || destination.as_deref() != Some(topology::EXCHANGE) {
            continue;
        }
        match label(labels, "error_type").as_deref() {
            Some("") | None => events.published += value,
            Some(_) => events.publish_failures += value,
        }
    }
    let mut unprocessed = f64::NAN;
    for (name, labels, value) in samples(worker) {
        if name == CONSUMED {
            events.consumed += value;
        } else if name == BACKLOG_EVENTS {
            unprocessed = value;
        } else if name == PROCESSED {
            match label(labels, "outcome").as_deref() {
                Some("processed") => events.processed += value,
                Some("duplicate") => events.duplicate += value,
                Some("retry") => events.retry += value,
                Some("dead_letter") => events.dead_letter += value,
                _ => {}
            }
        }
    }
    (events, unprocessed)
}

/// The counts of `after` less those of `before`.
fn events_between(before: &Events, after: &Events) -> Events {
    Events {
        published: after.published - before.published,
        publish_failures: after.publish_failures - before.publish_failures,
        consumed: after.consumed - before.consumed,
        processed: after.processed - before.processed,
        duplicate: after.duplicate - before.duplicate,
        retry: after.retry - before.retry,
        dead_letter: after.dead_letter - before.dead_letter,
        drained_after_s: None,
    }
}

/// Whether the worker has processed every event the relay published, and
/// the outbox holds none unprocessed.
fn drained(events: &Events, unprocessed: f64) -> bool {
    events.processed >= events.published && unprocessed == 0.0
}

/// Polls the outbox's counters after the load, until the worker has
/// processed every event the relay published since `before` and its
/// backlog gauge (measured every second) reads 0, or [`DRAIN_TIMEOUT`]
/// passes; returns the counts since `before`.
async fn wait_drained(
    client: &reqwest::Client,
    orders: SocketAddr,
    worker: SocketAddr,
    before: &(Events, f64),
) -> Result<Events, BenchError> {
    let started = Instant::now();
    loop {
        let (now, unprocessed) = read_events(client, orders, worker).await?;
        let mut events = events_between(&before.0, &now);
        if drained(&events, unprocessed) {
            events.drained_after_s = Some(started.elapsed().as_secs_f64());
            return Ok(events);
        }
        if started.elapsed() >= DRAIN_TIMEOUT {
            progress(&format!(
                "footprint: {unprocessed} outbox event(s) still unprocessed {DRAIN_TIMEOUT:?} \
                 after the load"
            ));
            return Ok(events);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The catalog's `db_client_read_routes_total`, by target and reason.
async fn read_routes(
    client: &reqwest::Client,
    admin: SocketAddr,
) -> Result<BTreeMap<String, BTreeMap<String, f64>>, BenchError> {
    Ok(parse_read_routes(&metrics_text(client, admin).await?))
}

fn parse_read_routes(text: &str) -> BTreeMap<String, BTreeMap<String, f64>> {
    let mut routes: BTreeMap<String, BTreeMap<String, f64>> = BTreeMap::new();
    for (name, labels, value) in samples(text) {
        if name != "db_client_read_routes_total" {
            continue;
        }
        if let (Some(target), Some(reason)) = (label(labels, "target"), label(labels, "reason")) {
            *routes
                .entry(target)
                .or_default()
                .entry(reason)
                .or_insert(0.0) += value;
        }
    }
    routes
}

/// The reads counted between two readings of the counters.
fn routes_between(
    before: &BTreeMap<String, BTreeMap<String, f64>>,
    after: &BTreeMap<String, BTreeMap<String, f64>>,
) -> BTreeMap<String, BTreeMap<String, f64>> {
    after
        .iter()
        .map(|(target, reasons)| {
            let reasons = reasons
                .iter()
                .map(|(reason, count)| {
                    let then = before
                        .get(target)
                        .and_then(|r| r.get(reason))
                        .copied()
                        .unwrap_or(0.0);
                    (reason.clone(), count - then)
                })
                .filter(|(_, count)| *count > 0.0)
                .collect::<BTreeMap<_, _>>();
            (target.clone(), reasons)
        })
        .filter(|(_, reasons)| !reasons.is_empty())
        .collect()
}

/// Warnings when figure 4's catalog did not read from its standby under
/// load as deployed.
fn check_footprint(footprint: &Footprint) -> Vec<String> {
    let reads = &footprint.catalog_reads;
    let count = |target: &str| reads.get(target).map_or(0.0, |r| r.values().sum::<f64>());
    let mut warnings = Vec::new();
    if count("replica") <= 0.0 {
        warnings.push(
            "footprint: the catalog served no product read from its standby under load: the \
             standby's memory is that of an idle one"
                .to_owned(),
        );
    }
    if let Some(primary) = reads.get("primary") {
        for (reason, n) in primary {
            if reason != "read_your_writes" && *n > 0.0 {
                warnings.push(format!(
                    "footprint: {n:.0} product read(s) under load went to the primary instead \
                     of the standby ({reason})"
                ));
            }
        }
    }
    warnings.extend(check_events(footprint.events.as_ref()));
    warnings
}

/// Warnings when figure 4's checkouts did not go through RabbitMQ to the
/// worker as deployed.
fn check_events(events: Option<&Events>) -> Vec<String> {
    let Some(events) = events else {
        return vec!["footprint: the outbox's events were not counted".to_owned()];
    };
    let mut warnings = Vec::new();
    if events.published <= 0.0 {
        warnings.push(
            "footprint: the relay published no outbox event under load: RabbitMQ's memory is \
             that of an idle broker"
                .to_owned(),
        );
    }
    if events.drained_after_s.is_none() {
        warnings.push(format!(
            "footprint: the worker processed {:.0} of the {:.0} events the relay published, and \
             left the outbox unprocessed, {DRAIN_TIMEOUT:?} after the load",
            events.processed, events.published
        ));
    }
    for (what, n) in [
        ("publish(es) failed", events.publish_failures),
        ("event(s) were retried", events.retry),
        ("event(s) went to the dead letters", events.dead_letter),
    ] {
        if n > 0.0 {
            warnings.push(format!("footprint: {n:.0} {what} under load"));
        }
    }
    warnings
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_counters_are_read_from_the_prometheus_text() {
        let text = "# TYPE catalog_cache_lookups_total counter\n\
                    catalog_cache_lookups_total{level=\"local\",result=\"hit\"} 990\n\
                    catalog_cache_lookups_total{result=\"miss\",level=\"shared\"} 3\n\
                    degraded_responses_total{reason=\"local_rate_limit\"} 0\n\
                    http_server_active_requests 1\n\
                    catalog_cache_lookups_total{level=\"shared\"} 7\n";
        let counters = parse_cache_counters(text);
        assert_eq!(
            counters,
            BTreeMap::from([
                ("local_hit".to_owned(), 990.0),
                ("shared_miss".to_owned(), 3.0),
                ("degraded_local_rate_limit".to_owned(), 0.0),
            ])
        );
    }

    #[test]
    fn the_catalogs_reads_under_load_are_counted_by_server_and_reason() {
        let before = parse_read_routes(
            "db_client_read_routes_total{target=\"primary\",reason=\"replica_unavailable\"} 2\n\
             db_client_read_routes_total{target=\"replica\",reason=\"replica_healthy\"} 1\n",
        );
        let after = parse_read_routes(
            "# TYPE db_client_read_routes_total counter\n\
             db_client_read_routes_total{target=\"primary\",reason=\"replica_unavailable\"} 2\n\
             db_client_read_routes_total{target=\"primary\",reason=\"read_your_writes\"} 4\n\
             db_client_read_routes_total{target=\"replica\",reason=\"replica_healthy\"} 51\n\
             db_client_replica_in_use 1\n",
        );
        let under_load = routes_between(&before, &after);
        assert_eq!(
            under_load,
            BTreeMap::from([
                (
                    "primary".to_owned(),
                    BTreeMap::from([("read_your_writes".to_owned(), 4.0)])
                ),
                (
                    "replica".to_owned(),
                    BTreeMap::from([("replica_healthy".to_owned(), 50.0)])
                ),
            ])
        );
        let mut footprint = Footprint {
            catalog_reads: under_load,
            events: Some(Events {
                published: 10.0,
                consumed: 10.0,
                processed: 10.0,
                drained_after_s: Some(0.2),
                ..Events::default()
            }),
            ..Footprint::default()
        };
        assert!(check_footprint(&footprint).is_empty());
        footprint.catalog_reads = BTreeMap::from([(
            "primary".to_owned(),
            BTreeMap::from([("replica_lagging".to_owned(), 7.0)]),
        )]);
        let warnings = check_footprint(&footprint);
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings[1].contains("7 product read(s)"), "{warnings:?}");
    }

    #[test]
    fn the_outbox_events_are_counted_from_orders_and_the_worker() {
        let orders = "# TYPE messaging_client_sent_messages_total counter\n\
             messaging_client_sent_messages_total{messaging_system=\"rabbitmq\",messaging_destination_name=\"faultline.orders\",error_type=\"\"} 42\n\
             messaging_client_sent_messages_total{messaging_system=\"rabbitmq\",messaging_destination_name=\"faultline.orders\",error_type=\"timeout\"} 1\n\
             messaging_client_connected{messaging_system=\"rabbitmq\"} 1\n";
        let worker = "messaging_client_consumed_messages_total{messaging_system=\"rabbitmq\",messaging_destination_name=\"worker.order-events\"} 43\n\
             messaging_client_sent_messages_total{messaging_system=\"rabbitmq\",messaging_destination_name=\"worker.order-events.retry\",error_type=\"\"} 1\n\
             outbox_events_processed_total{kind=\"order.placed\",outcome=\"processed\"} 40\n\
             outbox_events_processed_total{kind=\"order.payment_declined\",outcome=\"processed\"} 2\n\
             outbox_events_processed_total{kind=\"order.placed\",outcome=\"retry\"} 1\n\
             outbox_events_processed_total{kind=\"unknown\",outcome=\"dead_letter\"} 0\n\
             outbox_backlog_events 0\n";
        let (events, unprocessed) = parse_events(orders, worker);
        assert_eq!(
            events,
            Events {
                published: 42.0,
                publish_failures: 1.0,
                consumed: 43.0,
                processed: 42.0,
                retry: 1.0,
                ..Events::default()
            }
        );
        assert!(drained(&events, unprocessed));
        let before = Events {
            published: 2.0,
            processed: 1.0,
            ..Events::default()
        };
        let between = events_between(&before, &events);
        assert_eq!((between.published, between.processed), (40.0, 41.0));
        assert!(!drained(&events, 3.0), "events left in the outbox");
        let behind = Events {
            processed: 41.0,
            ..events
        };
        assert!(!drained(&behind, 0.0), "fewer processed than published");
        let warnings = check_events(Some(&events));
        assert_eq!(warnings.len(), 3, "{warnings:?}");
        assert!(
            warnings[0].contains("worker processed 42 of the 42"),
            "{warnings:?}"
        );
        assert!(warnings[1].contains("1 publish(es) failed"), "{warnings:?}");
        let idle = check_events(Some(&Events {
            drained_after_s: Some(0.0),
            ..Events::default()
        }));
        assert_eq!(idle.len(), 1, "{idle:?}");
        assert!(idle[0].contains("no outbox event"), "{idle:?}");
    }

    #[test]
    fn levels_that_did_not_work_as_configured_are_flagged() {
        let counters = |pairs: &[(&str, f64)]| {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), *v))
                .collect::<BTreeMap<_, _>>()
        };
        let mut levels = CacheLevels {
            counters: BTreeMap::from([
                ("levels-local".to_owned(), counters(&[("local_hit", 10.0)])),
                (
                    "levels-two-level".to_owned(),
                    counters(&[("local_hit", 10.0), ("shared_hit", 1.0)]),
                ),
                (
                    "levels-shared-only".to_owned(),
                    counters(&[("shared_hit", 10.0)]),
                ),
            ]),
            ..CacheLevels::default()
        };
        assert!(check_levels(&levels).is_empty());
        levels.counters.insert(
            "levels-shared-only".to_owned(),
            counters(&[
                ("shared_hit", 0.0),
                ("degraded_shared_cache_unavailable", 4.0),
            ]),
        );
        let warnings = check_levels(&levels);
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings.iter().all(|w| w.starts_with("levels-shared-only")));
    }

    #[test]
    fn every_level_has_its_own_target_and_environment() {
        let names: Vec<&str> = TargetKind::all().iter().map(|k| k.name()).collect();
        for level in CacheLevel::ALL {
            assert_eq!(names.iter().filter(|n| **n == level.name()).count(), 1);
        }
        let env = |level: CacheLevel| level.env("redis://127.0.0.1:6379");
        let get = |env: &[(&str, String)], key: &str| {
            env.iter().find(|(k, _)| *k == key).map(|(_, v)| v.clone())
        };
        assert_eq!(get(&env(CacheLevel::Local), "FAULTLINE_REDIS_URL"), None);
        assert_eq!(
            get(&env(CacheLevel::TwoLevel), "FAULTLINE_CATALOG_CACHE_TTL").as_deref(),
            Some("1s")
        );
        assert_eq!(
            get(&env(CacheLevel::SharedOnly), "FAULTLINE_CATALOG_CACHE_TTL").as_deref(),
            Some("0s")
        );
        assert!(get(&env(CacheLevel::SharedOnly), "FAULTLINE_REDIS_URL").is_some());
    }
}
