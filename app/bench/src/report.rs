//! The results of a run: the JSON document and its Markdown rendering.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::measure::Sample;
use crate::plan::Plan;
use crate::procs::Pinning;
use crate::stats::Summary;

/// The version of the JSON document's shape: 2 added figure 5 (the cache
/// levels), Redis to figure 4's footprint and to the CPU per request; 3 added
/// the PostgreSQL standby, the PostgreSQL exporters and the catalog's read
/// routes to figure 4, and `footprint_only`; 4 added RabbitMQ to figure 4
/// (`rabbitmq`, in the total too) and the outbox events relayed through it
/// under load (`events`).
pub const SCHEMA: u32 = 4;

/// Everything a run found.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Results {
    pub schema: u32,
    /// The command line that produced this.
    pub command: String,
    pub quick: bool,
    /// Figure 4 alone (`--footprint-only`): the other figures are empty.
    #[serde(default)]
    pub footprint_only: bool,
    pub started_at: String,
    pub elapsed_s: f64,
    pub machine: Machine,
    pub plan: Plan,
    pub pinning: Pinning,
    /// The fixed rates of the open-loop measurements, requests per second.
    pub rates: Rates,
    pub figures: Figures,
    /// Each goal of the issue, judged on the median.
    pub goals: Vec<Goal>,
    /// Per target, the median over the rounds of each absolute number.
    pub absolute: BTreeMap<String, Absolute>,
    /// Every measurement, round by round.
    pub rounds: Vec<Round>,
    /// What makes a number less trustworthy (a saturated load generator, errors, ...).
    pub warnings: Vec<String>,
}

/// Where it ran.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Machine {
    pub nproc: usize,
    pub cpu_model: String,
    pub kernel: String,
    /// `/proc/loadavg` when the run started and when it ended.
    pub load_average_start: String,
    pub load_average_end: String,
    /// Containers running when the run started that are not the benchmark's.
    pub other_containers: usize,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Rates {
    /// Figure 1's open-loop rate: a fraction of the telemetry-off peak.
    pub instrumentation: f64,
    /// Figure 3's open-loop rate.
    pub proxy: f64,
    /// Figure 5's open-loop rate.
    #[serde(default)]
    pub cache_levels: f64,
}

/// The figures: the four of the issue, and the cache levels.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Figures {
    pub instrumentation: Instrumentation,
    pub hot_path: HotPath,
    pub proxy: ProxyFigure,
    pub footprint: Footprint,
    pub cache_levels: CacheLevels,
}

/// Figure 1: each telemetry variant against telemetry off, on the gateway →
/// catalog → PostgreSQL read path.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Instrumentation {
    /// Closed-loop throughput of the variant ÷ that of `off`, by variant.
    pub throughput_ratio: BTreeMap<String, Option<Summary>>,
    /// Open-loop p99 of the variant ÷ that of `off`, by variant.
    pub p99_ratio: BTreeMap<String, Option<Summary>>,
    /// Server CPU time per request of the variant ÷ that of `off` (gateway and catalog).
    pub cpu_ratio: BTreeMap<String, Option<Summary>>,
    /// Spans the OTLP sink received per request sent to the exporting
    /// variants (about 6 when nothing is dropped).
    pub spans_per_request: Option<f64>,
}

/// Figure 2: the gateway's cached product-list GET, and the uncached read
/// path, against bare axum answering the same bytes.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct HotPath {
    /// Closed-loop throughput, the gateway's cached product-list GET as
    /// deployed (cache TTL 1 s, telemetry full) ÷ bare: the figure's goal.
    pub throughput_ratio: Option<Summary>,
    /// The same with telemetry off: the cost of the stack without telemetry.
    pub off_throughput_ratio: Option<Summary>,
    /// Server CPU per request, bare ÷ the cached GET (telemetry full; the
    /// gateway, its catalog and PostgreSQL): the throughput ratio a
    /// server-bound client would see.
    pub cpu_ratio: Option<Summary>,
    /// Closed-loop throughput, the uncached read path (gateway → catalog →
    /// PostgreSQL, telemetry full) ÷ bare.
    pub read_path_throughput_ratio: Option<Summary>,
    /// The same with telemetry off.
    pub read_path_off_throughput_ratio: Option<Summary>,
    /// Server CPU per request, bare ÷ the uncached read path (full).
    pub read_path_cpu_ratio: Option<Summary>,
}

/// Figure 3: the fault proxy with no toxics against a direct connection to
/// the bare server.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ProxyFigure {
    /// Closed-loop throughput, proxied ÷ direct.
    pub throughput_ratio: Option<Summary>,
    /// Open-loop p50 at a fixed rate, proxied − direct, microseconds.
    pub added_p50_us: Option<Summary>,
    /// Open-loop p99 at a fixed rate, proxied − direct, microseconds.
    pub added_p99_us: Option<Summary>,
    /// Server CPU per request, direct ÷ proxied (bare server + proxy).
    pub cpu_ratio: Option<Summary>,
    /// One request at a time (closed loop, one worker): p50 proxied − direct,
    /// microseconds. No queueing and no send timetable: the hop alone.
    pub added_p50_sequential_us: Option<Summary>,
}

/// Figure 4: resident memory of the core stack, one measurement.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Footprint {
    /// By role: RSS idle and the highest seen under load, MB (10^6 bytes).
    pub roles: BTreeMap<String, Memory>,
    /// PostgreSQL's container (the primary), as `docker stats` shows it.
    pub postgres: Memory,
    /// The hot standby's container (the catalog's read replica), as `docker
    /// stats` shows it.
    #[serde(default)]
    pub standby: Memory,
    /// Redis's container (the gateway's and the catalog's), as `docker stats` shows it.
    #[serde(default)]
    pub redis: Memory,
    /// RabbitMQ's container (orders' relay publishes to it, the worker
    /// consumes from it), as `docker stats` shows it.
    #[serde(default)]
    pub rabbitmq: Memory,
    /// The PostgreSQL exporters' containers, by the server each watches
    /// (`primary`, `standby`), as `docker stats` shows them.
    #[serde(default)]
    pub exporters: BTreeMap<String, Memory>,
    /// The five roles plus every container above.
    pub total: Memory,
    /// The catalog's product reads under load
    /// (`db_client_read_routes_total`), by the server that answered
    /// (`replica`, `primary`) and why (`replica_healthy`, ...).
    #[serde(default)]
    pub catalog_reads: BTreeMap<String, BTreeMap<String, f64>>,
    /// The outbox's events under load, through RabbitMQ: what orders'
    /// relay published and what the worker did with them.
    #[serde(default)]
    pub events: Option<Events>,
    /// The realistic mix the stack was under meanwhile.
    pub load: Option<Sample>,
}

/// Figure 4's outbox events, counted from the load's start until the worker
/// had processed every event the relay published (or a deadline passed).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Events {
    /// Events the relay published and the broker confirmed (orders'
    /// `messaging_client_sent_messages_total` to `faultline.orders`,
    /// `error_type` empty).
    pub published: f64,
    /// Publishes that failed (any other `error_type`); published again later.
    pub publish_failures: f64,
    /// Deliveries the worker received from its queue
    /// (`messaging_client_consumed_messages_total`).
    pub consumed: f64,
    /// The worker's `outbox_events_processed_total` by outcome.
    pub processed: f64,
    pub duplicate: f64,
    pub retry: f64,
    pub dead_letter: f64,
    /// Seconds from the end of the load until the worker had processed as
    /// many events as the relay published; `None` when it had not within
    /// the deadline.
    pub drained_after_s: Option<f64>,
}

/// Figure 5: the gateway's catalog cache levels, side by side on `GET
/// /api/products` (telemetry full): the local level alone (no Redis), both
/// levels (as deployed), and the shared level alone (local TTL 0 s).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CacheLevels {
    /// Both levels ÷ the local level alone: what Redis costs (with Redis,
    /// the rate limit is one EVALSHA per request).
    pub two_level_vs_local: LevelRatios,
    /// The shared level alone ÷ both levels: what dropping the local level
    /// costs (one more Redis GET per request).
    pub shared_only_vs_two_level: LevelRatios,
    /// Each gateway's counters at the end of the rounds, by target:
    /// `local_hit`, `shared_miss`, ... (`catalog_cache_lookups_total`), and
    /// `degraded_<reason>` (`degraded_responses_total`).
    pub counters: BTreeMap<String, BTreeMap<String, f64>>,
}

/// One comparison of figure 5, each as a ratio within a round.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LevelRatios {
    /// Closed-loop throughput.
    pub throughput_ratio: Option<Summary>,
    /// CPU per request of the gateway, its catalog, PostgreSQL and Redis
    /// (when used).
    pub cpu_ratio: Option<Summary>,
    /// Open-loop p99 at the fixed rate.
    pub p99_ratio: Option<Summary>,
}

/// Idle and under-load memory, MB.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Memory {
    pub idle_mb: f64,
    pub load_mb: f64,
}

/// One goal of the issue and whether the median meets it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Goal {
    pub figure: String,
    pub what: String,
    /// The goal, e.g. `>= 0.95`.
    pub target: String,
    /// `None` when the figure could not be measured.
    pub value: Option<f64>,
    pub met: bool,
}

impl Goal {
    pub fn at_least(figure: &str, what: &str, value: Option<f64>, bound: f64) -> Self {
        Self {
            figure: figure.to_owned(),
            what: what.to_owned(),
            target: format!(">= {bound}"),
            value,
            met: value.is_some_and(|v| v >= bound),
        }
    }

    pub fn at_most(figure: &str, what: &str, value: Option<f64>, bound: f64) -> Self {
        Self {
            figure: figure.to_owned(),
            what: what.to_owned(),
            target: format!("<= {bound}"),
            value,
            met: value.is_some_and(|v| v <= bound),
        }
    }
}

/// Medians over the rounds of one target's absolute numbers.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Absolute {
    pub closed: Option<Sample>,
    pub open: Option<Sample>,
    #[serde(default)]
    pub sequential: Option<Sample>,
}

/// The measurements of one round, by target.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Round {
    pub index: usize,
    /// The order the targets were measured in.
    pub order: Vec<String>,
    pub closed: BTreeMap<String, Sample>,
    pub open: BTreeMap<String, Sample>,
    /// One request at a time (figure 3's targets only).
    #[serde(default)]
    pub sequential: BTreeMap<String, Sample>,
}

/// The label of figure 1's p99 row for `variant`.
/// Figure 1's variants against `off`, in the tables' order.
pub const FIGURE_1_VARIANTS: [&str; 6] = [
    "full",
    "full-10pct",
    "full-1pct",
    "traces",
    "metrics",
    "logs",
];

pub fn p99_label(rate: f64, variant: &str) -> String {
    format!("p99 at {} req/s, {variant} ÷ off", num(rate, 0))
}

/// The label of figure 3's added-latency row for `percentile` (`p50`, `p99`).
pub fn added_label(rate: f64, percentile: &str) -> String {
    format!("added {percentile} at {} req/s (µs)", num(rate, 0))
}

/// The label of figure 5's rows: `measure` of `a` ÷ that of `b`.
pub fn level_label(measure: &str, a: &str, b: &str) -> String {
    format!("{measure}, {a} ÷ {b}")
}

/// The counters of figure 5's table, in its column order.
pub const LEVEL_COUNTERS: [&str; 7] = [
    "local_hit",
    "local_miss",
    "shared_hit",
    "shared_miss",
    "shared_error",
    "degraded_shared_cache_unavailable",
    "degraded_local_rate_limit",
];

fn num(value: f64, decimals: usize) -> String {
    if value.is_finite() {
        format!("{value:.decimals$}")
    } else {
        "n/a".to_owned()
    }
}

fn summary_cells(summary: Option<&Summary>, decimals: usize) -> [String; 3] {
    match summary {
        Some(s) => [
            num(s.median, decimals),
            format!("{} – {}", num(s.q1, decimals), num(s.q3, decimals)),
            format!("{} – {}", num(s.min, decimals), num(s.max, decimals)),
        ],
        None => ["n/a".to_owned(), "n/a".to_owned(), "n/a".to_owned()],
    }
}

impl Results {
    fn goal(&self, what: &str) -> (String, String) {
        match self.goals.iter().find(|g| g.what == what) {
            Some(goal) => (
                goal.target.replace(">=", "≥").replace("<=", "≤"),
                if goal.met { "yes" } else { "**no**" }.to_owned(),
            ),
            None => (String::new(), String::new()),
        }
    }

    fn row(
        &self,
        out: &mut String,
        figure: &str,
        what: &str,
        summary: Option<&Summary>,
        decimals: usize,
    ) {
        let [median, iqr, range] = summary_cells(summary, decimals);
        let (goal, met) = self.goal(what);
        let _ = writeln!(
            out,
            "| {figure} | {what} | {median} | {iqr} | {range} | {goal} | {met} |"
        );
    }

    /// The results as Markdown: the figures table, then the absolute numbers
    /// and the footprint.
    pub fn to_markdown(&self) -> String {
        let mut out = String::new();
        let f = &self.figures;
        let rounds = self.plan.rounds;
        if self.footprint_only {
            out.push_str("Figure 4 alone (`--footprint-only`): one measurement.\n\n");
        } else {
            let _ = writeln!(
                out,
                "Ratios are medians over {rounds} round(s); IQR and min – max show their spread.\n"
            );
        }
        out.push_str("| figure | measure | median | IQR | min – max | goal | met |\n");
        out.push_str("|---|---|---|---|---|---|---|\n");
        if !self.footprint_only {
            self.side_by_side_rows(&mut out);
        }
        for (what, value) in [
            ("core stack RSS, idle (MB)", f.footprint.total.idle_mb),
            ("core stack RSS, under load (MB)", f.footprint.total.load_mb),
        ] {
            let (goal, met) = self.goal(what);
            let _ = writeln!(
                out,
                "| 4 footprint | {what} | {} | (one measurement) | | {goal} | {met} |",
                num(value, 1)
            );
        }
        if !self.footprint_only {
            self.cache_level_rows(&mut out);
        }
        out.push('\n');
        if !self.absolute.is_empty() {
            self.absolute_table(&mut out);
        }
        self.footprint_table(&mut out);
        self.counters_table(&mut out);
        if !self.warnings.is_empty() {
            out.push_str("\nWarnings:\n\n");
            for warning in &self.warnings {
                let _ = writeln!(out, "- {warning}");
            }
        }
        out
    }

    /// Figures 1, 2 and 3's rows of the figures table.
    fn side_by_side_rows(&self, out: &mut String) {
        let f = &self.figures;
        for variant in FIGURE_1_VARIANTS {
            let what = format!("throughput, {variant} ÷ off");
            let s = f
                .instrumentation
                .throughput_ratio
                .get(variant)
                .and_then(Option::as_ref);
            self.row(out, "1 instrumentation", &what, s, 3);
        }
        for variant in FIGURE_1_VARIANTS {
            let what = p99_label(self.rates.instrumentation, variant);
            let s = f
                .instrumentation
                .p99_ratio
                .get(variant)
                .and_then(Option::as_ref);
            self.row(out, "1 instrumentation", &what, s, 3);
        }
        for variant in FIGURE_1_VARIANTS {
            let what = format!("server CPU per request, {variant} ÷ off");
            let s = f
                .instrumentation
                .cpu_ratio
                .get(variant)
                .and_then(Option::as_ref);
            self.row(out, "1 instrumentation", &what, s, 3);
        }
        self.row(
            out,
            "2 hot path",
            "throughput, cached product-list GET (telemetry full) ÷ bare axum",
            f.hot_path.throughput_ratio.as_ref(),
            3,
        );
        self.row(
            out,
            "2 hot path",
            "throughput, cached product-list GET (telemetry off) ÷ bare axum",
            f.hot_path.off_throughput_ratio.as_ref(),
            3,
        );
        self.row(
            out,
            "2 hot path",
            "server CPU per request, bare ÷ cached GET (full; gateway, catalog, PostgreSQL)",
            f.hot_path.cpu_ratio.as_ref(),
            3,
        );
        self.row(
            out,
            "2 hot path",
            "throughput, uncached read path gateway → catalog → PostgreSQL (telemetry full) ÷ bare axum",
            f.hot_path.read_path_throughput_ratio.as_ref(),
            3,
        );
        self.row(
            out,
            "2 hot path",
            "throughput, uncached read path (telemetry off) ÷ bare axum",
            f.hot_path.read_path_off_throughput_ratio.as_ref(),
            3,
        );
        self.row(
            out,
            "2 hot path",
            "server CPU per request, bare ÷ uncached read path (full, PostgreSQL included)",
            f.hot_path.read_path_cpu_ratio.as_ref(),
            3,
        );
        self.row(
            out,
            "3 fault proxy",
            "throughput, proxied ÷ direct",
            f.proxy.throughput_ratio.as_ref(),
            3,
        );
        self.row(
            out,
            "3 fault proxy",
            &added_label(self.rates.proxy, "p50"),
            f.proxy.added_p50_us.as_ref(),
            0,
        );
        self.row(
            out,
            "3 fault proxy",
            &added_label(self.rates.proxy, "p99"),
            f.proxy.added_p99_us.as_ref(),
            0,
        );
        self.row(
            out,
            "3 fault proxy",
            "added p50, one request at a time (µs)",
            f.proxy.added_p50_sequential_us.as_ref(),
            0,
        );
        self.row(
            out,
            "3 fault proxy",
            "server CPU per request, direct ÷ proxied",
            f.proxy.cpu_ratio.as_ref(),
            3,
        );
    }

    fn cache_level_rows(&self, out: &mut String) {
        let levels = &self.figures.cache_levels;
        let p99 = format!("p99 at {} req/s", num(self.rates.cache_levels, 0));
        let cpu = "CPU per request (gateway, catalog, PostgreSQL, Redis)";
        for (ratios, a, b) in [
            (&levels.two_level_vs_local, "two-level", "local"),
            (&levels.shared_only_vs_two_level, "shared-only", "two-level"),
        ] {
            for (measure, summary) in [
                ("throughput", ratios.throughput_ratio.as_ref()),
                (cpu, ratios.cpu_ratio.as_ref()),
                (p99.as_str(), ratios.p99_ratio.as_ref()),
            ] {
                self.row(
                    out,
                    "5 cache levels",
                    &level_label(measure, a, b),
                    summary,
                    3,
                );
            }
        }
    }

    fn counters_table(&self, out: &mut String) {
        let counters = &self.figures.cache_levels.counters;
        if counters.is_empty() {
            return;
        }
        out.push_str(
            "\nFigure 5's gateways, their counters at the end of the rounds (`catalog_cache_lookups_total` by level and result, `degraded_responses_total` by reason):\n\n",
        );
        out.push_str("| target |");
        for name in LEVEL_COUNTERS {
            let _ = write!(out, " {name} |");
        }
        out.push_str("\n|---|");
        out.push_str(&"---|".repeat(LEVEL_COUNTERS.len()));
        out.push('\n');
        for (target, values) in counters {
            let _ = write!(out, "| {target} |");
            for name in LEVEL_COUNTERS {
                let cell = values.get(name).map_or(String::new(), |v| num(*v, 0));
                let _ = write!(out, " {cell} |");
            }
            out.push('\n');
        }
    }

    fn absolute_table(&self, out: &mut String) {
        out.push_str("Absolute medians per target (closed loop: peak; open loop: fixed rate):\n\n");
        out.push_str(
            "| target | closed req/s | closed p99 ms | load generator CPU (cores) | sink CPU (cores) | server CPU µs/req (by process) | PostgreSQL CPU µs/req | Redis CPU µs/req | open req/s | open p50 ms | open p99 ms | one at a time p50 ms | errors | dropped |\n",
        );
        out.push_str("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
        for (target, absolute) in &self.absolute {
            let closed = absolute.closed.as_ref();
            let open = absolute.open.as_ref();
            let c =
                |f: fn(&Sample) -> f64, d: usize| closed.map_or("".to_owned(), |s| num(f(s), d));
            let o = |f: fn(&Sample) -> f64, d: usize| open.map_or("".to_owned(), |s| num(f(s), d));
            let errors = closed.map_or(0, |s| s.errors) + open.map_or(0, |s| s.errors);
            let dropped = open.map_or(0, |s| s.dropped);
            let by_process = closed.map_or(String::new(), |s| {
                let parts: Vec<String> = s
                    .cpu_us_per_request_by_process
                    .iter()
                    .map(|(name, us)| format!("{name} {}", num(*us, 0)))
                    .collect();
                if parts.len() > 1 {
                    format!(" ({})", parts.join(", "))
                } else {
                    String::new()
                }
            });
            let sequential = absolute
                .sequential
                .as_ref()
                .map_or(String::new(), |s| num(s.p50_ms, 3));
            let _ = writeln!(
                out,
                "| {target} | {} | {} | {} | {} | {}{by_process} | {} | {} | {} | {} | {} | {sequential} | {errors} | {dropped} |",
                c(|s| s.throughput, 0),
                c(|s| s.p99_ms, 2),
                c(|s| s.loadgen_cpu, 2),
                c(|s| s.helper_cpu, 2),
                c(|s| s.server_cpu_us_per_request, 0),
                closed
                    .and_then(|s| s.postgres_cpu_us_per_request)
                    .map_or(String::new(), |v| num(v, 0)),
                closed
                    .and_then(|s| s.redis_cpu_us_per_request)
                    .map_or(String::new(), |v| num(v, 0)),
                o(|s| s.throughput, 0),
                o(|s| s.p50_ms, 3),
                o(|s| s.p99_ms, 3),
            );
        }
        out.push('\n');
    }

    fn footprint_table(&self, out: &mut String) {
        let f = &self.figures.footprint;
        out.push_str("Footprint (RSS, MB; under load: the highest sample):\n\n");
        out.push_str("| process | idle | under load |\n|---|---|---|\n");
        for (role, memory) in &f.roles {
            let _ = writeln!(
                out,
                "| {role} | {} | {} |",
                num(memory.idle_mb, 1),
                num(memory.load_mb, 1)
            );
        }
        let exporter = |server: &str| f.exporters.get(server).copied().unwrap_or_default();
        for (what, memory) in [
            ("PostgreSQL (docker stats)", f.postgres),
            ("PostgreSQL standby (docker stats)", f.standby),
            ("Redis (docker stats)", f.redis),
            ("RabbitMQ (docker stats)", f.rabbitmq),
            (
                "PostgreSQL exporter, primary (docker stats)",
                exporter("primary"),
            ),
            (
                "PostgreSQL exporter, standby (docker stats)",
                exporter("standby"),
            ),
        ] {
            let _ = writeln!(
                out,
                "| {what} | {} | {} |",
                num(memory.idle_mb, 1),
                num(memory.load_mb, 1)
            );
        }
        let _ = writeln!(
            out,
            "| **total** | **{}** | **{}** |",
            num(f.total.idle_mb, 1),
            num(f.total.load_mb, 1)
        );
        if let Some(load) = &f.load {
            let _ = writeln!(
                out,
                "\nThe load meanwhile: the realistic mix, closed loop, {} req/s, p99 {} ms, {} errors.",
                num(load.throughput, 0),
                num(load.p99_ms, 1),
                load.errors
            );
        }
        if !f.catalog_reads.is_empty() {
            let reads = |target: &str, server: &str| {
                let reasons = f.catalog_reads.get(target);
                let total = reasons.map_or(0.0, |r| r.values().sum::<f64>());
                let why: Vec<String> = reasons
                    .into_iter()
                    .flatten()
                    .map(|(reason, n)| format!("{reason} {}", num(*n, 0)))
                    .collect();
                if why.is_empty() {
                    format!("{} from the {server}", num(total, 0))
                } else {
                    format!("{} from the {server} ({})", num(total, 0), why.join(", "))
                }
            };
            let _ = writeln!(
                out,
                "\nThe catalog's product reads meanwhile (`db_client_read_routes_total`): {}, {}.",
                reads("replica", "standby"),
                reads("primary", "primary"),
            );
        }
        if let Some(events) = &f.events {
            let drained = events.drained_after_s.map_or_else(
                || "not all processed by the deadline".to_owned(),
                |s| format!("all processed {} s after the load ended", num(s, 1)),
            );
            let _ = writeln!(
                out,
                "\nThe outbox through RabbitMQ meanwhile: {} events published by the relay \
                 (confirmed; {} failed publishes), {} deliveries to the worker, {} processed \
                 ({} duplicates, {} retries, {} dead letters); {drained}.",
                num(events.published, 0),
                num(events.publish_failures, 0),
                num(events.consumed, 0),
                num(events.processed, 0),
                num(events.duplicate, 0),
                num(events.retry, 0),
                num(events.dead_letter, 0),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(v: f64) -> Option<Summary> {
        Summary::of(&[v])
    }

    pub(crate) fn example() -> Results {
        let variants = ["full", "traces", "metrics", "logs"];
        Results {
            schema: SCHEMA,
            command: "faultline-bench --quick".into(),
            quick: true,
            footprint_only: false,
            started_at: "2026-01-01T00:00:00Z".into(),
            elapsed_s: 12.0,
            machine: Machine::default(),
            plan: Plan::quick(),
            pinning: Pinning::NONE,
            rates: Rates {
                instrumentation: 500.0,
                proxy: 200.0,
                cache_levels: 200.0,
            },
            figures: Figures {
                instrumentation: Instrumentation {
                    throughput_ratio: variants
                        .iter()
                        .map(|v| ((*v).into(), summary(0.9)))
                        .collect(),
                    p99_ratio: variants
                        .iter()
                        .map(|v| ((*v).into(), summary(1.2)))
                        .collect(),
                    cpu_ratio: variants
                        .iter()
                        .map(|v| ((*v).into(), summary(1.1)))
                        .collect(),
                    spans_per_request: Some(6.0),
                },
                hot_path: HotPath {
                    throughput_ratio: summary(0.2),
                    off_throughput_ratio: summary(0.25),
                    cpu_ratio: summary(0.1),
                    read_path_throughput_ratio: summary(0.6),
                    read_path_off_throughput_ratio: summary(0.6),
                    read_path_cpu_ratio: summary(0.5),
                },
                proxy: ProxyFigure {
                    throughput_ratio: summary(0.9),
                    added_p50_us: summary(40.0),
                    added_p99_us: summary(90.0),
                    cpu_ratio: summary(0.7),
                    added_p50_sequential_us: summary(30.0),
                },
                footprint: Footprint {
                    standby: Memory {
                        idle_mb: 30.0,
                        load_mb: 40.0,
                    },
                    redis: Memory {
                        idle_mb: 4.0,
                        load_mb: 5.0,
                    },
                    rabbitmq: Memory {
                        idle_mb: 110.0,
                        load_mb: 120.0,
                    },
                    events: Some(Events {
                        published: 80.0,
                        consumed: 80.0,
                        processed: 80.0,
                        drained_after_s: Some(0.4),
                        ..Events::default()
                    }),
                    exporters: BTreeMap::from([
                        (
                            "primary".into(),
                            Memory {
                                idle_mb: 6.0,
                                load_mb: 7.0,
                            },
                        ),
                        (
                            "standby".into(),
                            Memory {
                                idle_mb: 6.5,
                                load_mb: 7.5,
                            },
                        ),
                    ]),
                    catalog_reads: BTreeMap::from([
                        (
                            "replica".into(),
                            BTreeMap::from([("replica_healthy".into(), 120.0)]),
                        ),
                        (
                            "primary".into(),
                            BTreeMap::from([("read_your_writes".into(), 3.0)]),
                        ),
                    ]),
                    total: Memory {
                        idle_mb: 100.0,
                        load_mb: 150.0,
                    },
                    ..Footprint::default()
                },
                cache_levels: CacheLevels {
                    two_level_vs_local: LevelRatios {
                        throughput_ratio: summary(0.5),
                        cpu_ratio: summary(1.8),
                        p99_ratio: summary(1.1),
                    },
                    shared_only_vs_two_level: LevelRatios {
                        throughput_ratio: summary(0.7),
                        cpu_ratio: summary(1.3),
                        p99_ratio: summary(1.05),
                    },
                    counters: BTreeMap::from([(
                        "levels-two-level".into(),
                        BTreeMap::from([("local_hit".into(), 990.0), ("shared_hit".into(), 9.0)]),
                    )]),
                },
            },
            goals: vec![
                Goal::at_least("1", "throughput, full ÷ off", Some(0.9), 0.95),
                Goal::at_most("4", "core stack RSS, under load (MB)", Some(150.0), 512.0),
            ],
            absolute: BTreeMap::from([("off".into(), Absolute::default())]),
            rounds: Vec::new(),
            warnings: vec!["a warning".into()],
        }
    }

    #[test]
    fn goals_judge_the_bound() {
        assert!(Goal::at_least("1", "x", Some(0.95), 0.95).met);
        assert!(!Goal::at_least("1", "x", Some(0.94), 0.95).met);
        assert!(Goal::at_most("3", "x", Some(100.0), 100.0).met);
        assert!(!Goal::at_most("3", "x", None, 100.0).met);
    }

    #[test]
    fn markdown_has_every_figure_and_marks_missed_goals() {
        let text = example().to_markdown();
        for needle in [
            "| 1 instrumentation | throughput, full ÷ off | 0.900 |",
            "| ≥ 0.95 | **no** |",
            "2 hot path",
            "3 fault proxy",
            "| 4 footprint | core stack RSS, under load (MB) | 150.0 | (one measurement) | | ≤ 512 | yes |",
            "| PostgreSQL standby (docker stats) | 30.0 | 40.0 |",
            "| Redis (docker stats) | 4.0 | 5.0 |",
            "| RabbitMQ (docker stats) | 110.0 | 120.0 |",
            "80 events published by the relay (confirmed; 0 failed publishes), 80 deliveries to \
             the worker, 80 processed (0 duplicates, 0 retries, 0 dead letters); all processed \
             0.4 s after the load ended.",
            "| PostgreSQL exporter, primary (docker stats) | 6.0 | 7.0 |",
            "| PostgreSQL exporter, standby (docker stats) | 6.5 | 7.5 |",
            "120 from the standby (replica_healthy 120), 3 from the primary (read_your_writes 3).",
            "| 5 cache levels | throughput, two-level ÷ local | 0.500 |",
            "| 5 cache levels | CPU per request (gateway, catalog, PostgreSQL, Redis), shared-only ÷ two-level | 1.300 |",
            "| 5 cache levels | p99 at 200 req/s, shared-only ÷ two-level | 1.050 |",
            "| levels-two-level | 990 |  | 9 |",
            "- a warning",
        ] {
            assert!(text.contains(needle), "{needle:?} missing from:\n{text}");
        }
    }

    #[test]
    fn json_round_trips() {
        let text = serde_json::to_string(&example()).unwrap();
        let back: Results = serde_json::from_str(&text).unwrap();
        assert_eq!(back.figures.proxy.added_p50_us, summary(40.0));
        assert_eq!(
            back.figures.cache_levels.shared_only_vs_two_level.cpu_ratio,
            summary(1.3)
        );
        assert_eq!(back.figures.footprint.redis.load_mb, 5.0);
        assert_eq!(back.figures.footprint.rabbitmq.idle_mb, 110.0);
        assert_eq!(
            back.figures.footprint.events.map(|e| e.processed),
            Some(80.0)
        );
        assert_eq!(back.figures.footprint.standby.idle_mb, 30.0);
        assert_eq!(
            back.figures.footprint.exporters["standby"],
            Memory {
                idle_mb: 6.5,
                load_mb: 7.5
            }
        );
        assert_eq!(
            back.figures.footprint.catalog_reads["replica"]["replica_healthy"],
            120.0
        );
        assert!(!back.footprint_only);
    }

    #[test]
    fn a_schema_2_footprint_still_reads() {
        let mut value = serde_json::to_value(example()).unwrap();
        let footprint = value["figures"]["footprint"].as_object_mut().unwrap();
        for field in [
            "standby",
            "exporters",
            "catalog_reads",
            "rabbitmq",
            "events",
        ] {
            footprint.remove(field);
        }
        value.as_object_mut().unwrap().remove("footprint_only");
        let back: Results = serde_json::from_value(value).unwrap();
        assert_eq!(back.figures.footprint.standby, Memory::default());
        assert!(back.figures.footprint.exporters.is_empty());
    }

    #[test]
    fn a_schema_3_footprint_still_reads() {
        let mut value = serde_json::to_value(example()).unwrap();
        value["schema"] = 3.into();
        let footprint = value["figures"]["footprint"].as_object_mut().unwrap();
        for field in ["rabbitmq", "events"] {
            footprint.remove(field);
        }
        let back: Results = serde_json::from_value(value).unwrap();
        assert_eq!(back.figures.footprint.rabbitmq, Memory::default());
        assert_eq!(back.figures.footprint.events, None);
        assert_eq!(back.figures.footprint.standby.idle_mb, 30.0);
        assert!(!back.to_markdown().contains("The outbox through RabbitMQ"));
    }

    #[test]
    fn the_footprint_alone_renders_only_figure_4() {
        let mut results = example();
        results.footprint_only = true;
        results.figures = Figures {
            footprint: results.figures.footprint.clone(),
            ..Figures::default()
        };
        results.goals.retain(|g| g.figure == "4");
        results.absolute.clear();
        let text = results.to_markdown();
        assert!(text.contains("| 4 footprint | core stack RSS, under load (MB) | 150.0 |"));
        assert!(text.contains("| PostgreSQL standby (docker stats) | 30.0 | 40.0 |"));
        for absent in [
            "1 instrumentation",
            "2 hot path",
            "3 fault proxy",
            "5 cache levels",
            "Absolute medians",
        ] {
            assert!(!text.contains(absent), "{absent:?} in:\n{text}");
        }
    }
}
