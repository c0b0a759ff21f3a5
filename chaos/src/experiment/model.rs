//! The typed shape of an experiment file. See the crate README for the format.
//!
//! Every table rejects unknown fields. Durations are humantime strings
//! (`"500ms"`, `"30s"`, `"1m 30s"`). Faults, actions and probes are tables
//! with a `type` that picks their kind.

use std::collections::BTreeMap;
use std::time::Duration;

use faultline_proxy::{NewToxic, Stream};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::duration;
use crate::environment::Environment;
use crate::platform::Selector;

/// One chaos experiment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Experiment {
    pub title: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub tags: Vec<String>,
    /// Endpoints of the stack; overridable (see [`Environment`]).
    #[serde(default)]
    pub target: Environment,
    #[serde(default)]
    pub settings: Settings,
    /// The harness's own load, running from before the steady-state check
    /// until the recovery check is over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load: Option<LoadSpec>,
    /// Probes that must pass before the faults (and again after them).
    #[serde(default)]
    pub steady_state: SteadyState,
    /// The faults.
    pub method: Method,
    /// Probes evaluated continuously while the method runs.
    #[serde(default)]
    pub during: Vec<DuringProbe>,
    /// Limits evaluated all through the method: the first one crossed
    /// cancels the faults still to come, rolls back the injected ones at
    /// once, and ends the run `aborted`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub abort_when: Vec<AbortCondition>,
    /// Actions run after the faults are reverted, whatever happened.
    #[serde(default)]
    pub rollbacks: Vec<ActionSpec>,
    /// How long the system gets to meet its steady state again.
    #[serde(default)]
    pub recovery: Recovery,
    /// Probes run once the load has stopped (data invariants), each polled
    /// until it passes or its `within` (default: the recovery deadline) ends.
    #[serde(default)]
    pub after: Vec<ProbeSpec>,
    /// Alerts that must reach a state within a time.
    #[serde(default)]
    pub expected_alerts: Vec<ExpectedAlert>,
    /// Alerts that may fire as true side effects of the faults. Any other
    /// alert that fires during the run (Watchdog aside) fails it.
    #[serde(default)]
    pub allowed_alerts: Vec<AllowedAlert>,
}

/// Timing knobs of the run loop.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// How often probes with a `within` and recovery probes are retried.
    #[serde(default = "one_second", with = "duration")]
    pub probe_interval: Duration,
    /// How long one probe evaluation may take.
    #[serde(default = "five_seconds", with = "duration")]
    pub probe_timeout: Duration,
    /// How often Prometheus' alerts are read.
    #[serde(default = "one_second", with = "duration")]
    pub alert_poll_interval: Duration,
    /// How long one action (injection, revert, rollback) may take.
    #[serde(default = "thirty_seconds", with = "duration")]
    pub action_timeout: Duration,
    /// How long the load runs before the steady state is checked.
    #[serde(default, with = "duration")]
    pub warmup: Duration,
    /// The lease of toxic and proxy_down faults: the fault proxy undoes them
    /// this long after the last renewal, so they end even if every process
    /// of the run is gone. Renewed every lease/3 while the fault is in; at
    /// least 1 s. A real Toxiproxy ignores it.
    #[serde(default = "fifteen_seconds", with = "duration")]
    pub lease: Duration,
}

fn one_second() -> Duration {
    Duration::from_secs(1)
}
fn five_seconds() -> Duration {
    Duration::from_secs(5)
}
fn fifteen_seconds() -> Duration {
    Duration::from_secs(15)
}
fn thirty_seconds() -> Duration {
    Duration::from_secs(30)
}
fn sixty_seconds() -> Duration {
    Duration::from_secs(60)
}
fn default_true() -> bool {
    true
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            probe_interval: one_second(),
            probe_timeout: five_seconds(),
            alert_poll_interval: one_second(),
            action_timeout: thirty_seconds(),
            warmup: Duration::ZERO,
            lease: fifteen_seconds(),
        }
    }
}

/// Load from the `faultline_loadgen` library.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadSpec {
    /// Base URL; default `${gateway}`.
    #[serde(default = "default_load_target")]
    pub target: String,
    /// Requests per second (open loop); closed loop when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<f64>,
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// `list=60,product=25,checkout=10,order=5` (any subset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mix: Option<String>,
    #[serde(default = "two_seconds", with = "duration")]
    pub timeout: Duration,
    /// Length of a stats window.
    #[serde(default = "one_second", with = "duration")]
    pub window: Duration,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Probability that a checkout is re-sent with the same Idempotency-Key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_ratio: Option<f64>,
    /// How many distinct customers place and read the orders, each with a
    /// token the engine mints (default 50 when the mix has checkouts or
    /// order reads); product reads go without a token. Needs `target.keys`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customers: Option<u32>,
    /// One named customer sends every request, product reads included, with
    /// its token: one client as the gateway's rate limit (keyed by subject)
    /// sees it. Instead of `customers`; needs `target.keys`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// Every token is forged: signed by a key the shop does not trust, under
    /// the trusted key's `kid`, so every request that needs one is refused
    /// with 401 (a credential-stuffing attack: `customers` distinct
    /// accounts, none of them really signed in). Needs `target.keys` (for
    /// the `kid`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub forged_tokens: bool,
}

impl LoadSpec {
    /// Whether the load sends tokens (so needs the target's keys): it names
    /// customers or a subject, or its mix has checkouts or order reads,
    /// which the gateway serves only to a customer.
    pub fn needs_tokens(&self) -> bool {
        let mix = match &self.mix {
            Some(mix) => mix.parse::<faultline_loadgen::Mix>().ok(),
            None => Some(faultline_loadgen::Mix::default()),
        };
        self.customers.is_some()
            || self.subject.is_some()
            || self.forged_tokens
            || mix.is_some_and(|mix| mix.checkout > 0 || mix.order > 0)
    }
}

/// `bearer = { subject = "alice", role = "customer" }` on an http probe or
/// action: the request carries a token for that subject, minted by the
/// engine (with the target's `keys`) right before it is sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BearerSpec {
    pub subject: String,
    /// `customer` (default) or `admin`.
    #[serde(default = "customer_role")]
    pub role: faultline_auth::Role,
}

fn customer_role() -> faultline_auth::Role {
    faultline_auth::Role::Customer
}

fn default_load_target() -> String {
    "${gateway}".to_owned()
}
fn default_concurrency() -> usize {
    32
}
fn two_seconds() -> Duration {
    Duration::from_secs(2)
}

/// The steady-state hypothesis.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SteadyState {
    #[serde(default)]
    pub title: String,
    #[serde(default)]
    pub probes: Vec<ProbeSpec>,
}

/// The faults and when they happen.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Method {
    /// How long the method phase lasts; default: until the last timed fault
    /// ends (at least 1 s).
    #[serde(
        default,
        with = "duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub duration: Option<Duration>,
    #[serde(default)]
    pub faults: Vec<FaultSpec>,
}

/// One fault: what, when, and for how long.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultSpec {
    pub name: String,
    /// Start offset from the beginning of the method.
    #[serde(default, with = "duration")]
    pub at: Duration,
    /// Reverted this long after it started; otherwise it lasts until the
    /// method ends.
    #[serde(
        default,
        with = "duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub duration: Option<Duration>,
    #[serde(flatten)]
    pub kind: FaultKind,
}

/// The kinds of fault (`type = "..."`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum FaultKind {
    /// A toxic on a fault-proxy (or Toxiproxy) link.
    Toxic(ToxicFault),
    /// A proxy taken down (`enabled = false`).
    ProxyDown(ProxyDownFault),
    /// A container action through the platform (Docker).
    Container(ContainerFault),
    /// An HTTP call (e.g. a fault admin API), with the call that undoes it.
    Http(HttpFault),
    /// Extra load (a surge) for the fault's duration.
    Load(LoadSpec),
    /// A SQL statement against PostgreSQL, with the statement that undoes it.
    Sql(SqlFault),
}

impl FaultKind {
    /// The `type` of this fault.
    pub fn type_name(&self) -> &'static str {
        match self {
            FaultKind::Toxic(_) => "toxic",
            FaultKind::ProxyDown(_) => "proxy_down",
            FaultKind::Container(_) => "container",
            FaultKind::Http(_) => "http",
            FaultKind::Load(_) => "load",
            FaultKind::Sql(_) => "sql",
        }
    }
}

/// `type = "toxic"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToxicFault {
    /// The proxy's name in the control API.
    pub proxy: String,
    /// latency, bandwidth, timeout, reset_peer, slow_close or limit_data.
    pub toxic: String,
    /// The toxic's name; default `faultline_<proxy>_<toxic>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub toxic_name: Option<String>,
    #[serde(default)]
    pub stream: Stream,
    #[serde(default = "full_toxicity")]
    pub toxicity: f32,
    /// As the API takes them: numbers (milliseconds, KB/s, bytes, a
    /// ratio), and for the HTTP toxics strings and tables (`path`,
    /// `headers`). The proxy's own types check them.
    #[serde(default)]
    pub attributes: BTreeMap<String, Value>,
    /// Changes one attribute step by step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ramp: Option<Ramp>,
}

fn full_toxicity() -> f32 {
    1.0
}

impl ToxicFault {
    /// The toxic's name: `toxic_name`, or `faultline_<proxy>_<toxic>`.
    pub fn name(&self) -> String {
        self.toxic_name
            .clone()
            .unwrap_or_else(|| format!("faultline_{}_{}", self.proxy, self.toxic))
    }

    /// The attributes as the control API takes them: a JSON object. The one
    /// place the TOML table becomes the API's map; validation
    /// ([`faultline_proxy::ToxicKind::from_attributes`]) and injection both
    /// read this.
    pub fn api_attributes(&self) -> Map<String, Value> {
        self.attributes
            .iter()
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect()
    }

    /// The toxic to add, as the control API takes it.
    pub fn new_toxic(&self) -> NewToxic {
        NewToxic {
            name: Some(self.name()),
            toxic_type: self.toxic.clone(),
            stream: self.stream,
            toxicity: self.toxicity,
            attributes: self.api_attributes(),
            lease_ms: None,
        }
    }
}

/// A ramp: `attribute` goes from its value in `attributes` to `to` in
/// `steps` equal steps, one every `every`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ramp {
    pub attribute: String,
    pub to: u64,
    pub steps: u32,
    #[serde(with = "duration")]
    pub every: Duration,
}

impl Ramp {
    /// The attribute's value after step `step` (1-based) from `from`.
    pub fn value_at(&self, from: u64, step: u32) -> u64 {
        let steps = self.steps.max(1);
        let step = step.min(steps);
        let from_i = i128::from(from);
        let delta = i128::from(self.to) - from_i;
        let value = from_i + delta * i128::from(step) / i128::from(steps);
        u64::try_from(value).unwrap_or(0)
    }
}

/// `type = "proxy_down"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyDownFault {
    pub proxy: String,
}

/// What to do to a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContainerOp {
    Kill,
    Stop,
    Start,
    Pause,
    Unpause,
    Restart,
    Disconnect,
    Connect,
    /// Run a command in the container (a file changed, a signal sent), and
    /// the `undo` command when the fault is reverted.
    Exec,
    /// Squeeze the container's CPU (`cpus`) and/or memory (`memory_mib`)
    /// live; the old limits come back when the fault is reverted.
    Limit,
    /// Cut the container off from the `peer` containers only (both
    /// directions, packets dropped), and from nothing else.
    Partition,
    /// Set the `replicas` of the workload (Kubernetes Deployment or
    /// StatefulSet) that owns the target's pods; the old count comes back
    /// when the fault is reverted. Kubernetes only.
    Scale,
}

/// `type = "container"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContainerFault {
    pub action: ContainerOp,
    /// Which containers.
    pub target: Selector,
    /// For kill: the signal (default SIGKILL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<String>,
    /// For stop and restart: the grace before SIGKILL (default 10 s).
    #[serde(
        default,
        with = "duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub timeout: Option<Duration>,
    /// For disconnect and connect: the network (default: every network the
    /// container is on, for disconnect).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    /// For exec: the command, as an argument vector (`["sh", "-c", "..."]`).
    /// It must exit 0 within `timeout` (default 30 s).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// For exec: the command that undoes `command`, run when the fault is
    /// reverted and by `faultline cleanup`. It may run more than once, and
    /// after a `command` that failed half-way: make it idempotent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub undo: Vec<String>,
    /// For exec: the user both commands run as (default: the container's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// For limit: the CPUs the container may use (`0.2` is a fifth of one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<f64>,
    /// For limit: its memory limit in MiB, swap included (at least 6).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mib: Option<u64>,
    /// For partition: the containers it is cut off from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<Selector>,
    /// For partition: the image whose `iptables` filters the packets, run
    /// beside the container in its network namespace (default: the
    /// container's own image).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// For scale: the replicas the workload runs while the fault is in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<u32>,
}

impl ContainerFault {
    /// `action` on `target`, every other field left out.
    pub fn new(action: ContainerOp, target: Selector) -> Self {
        Self {
            action,
            target,
            signal: None,
            timeout: None,
            network: None,
            command: Vec::new(),
            undo: Vec::new(),
            user: None,
            cpus: None,
            memory_mib: None,
            peer: None,
            image: None,
            replicas: None,
        }
    }
}

/// `type = "http"` as a fault: a request, and the request that undoes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpFault {
    #[serde(default = "post")]
    pub method: String,
    pub url: String,
    /// A JSON body (any TOML value).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json: Option<Value>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Accepted statuses; default any 2xx.
    #[serde(default)]
    pub expect: Vec<u16>,
    /// Sent with a token the engine mints for this subject.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bearer: Option<BearerSpec>,
    /// Run when the fault is reverted (and by `faultline cleanup`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub undo: Option<HttpRequestSpec>,
}

fn post() -> String {
    "POST".to_owned()
}

/// An HTTP request with the statuses it must get.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpRequestSpec {
    #[serde(default = "post")]
    pub method: String,
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json: Option<Value>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Accepted statuses; default any 2xx.
    #[serde(default)]
    pub expect: Vec<u16>,
    /// Sent with a token the engine mints for this subject.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bearer: Option<BearerSpec>,
}

impl From<&HttpFault> for HttpRequestSpec {
    fn from(fault: &HttpFault) -> Self {
        Self {
            method: fault.method.clone(),
            url: fault.url.clone(),
            json: fault.json.clone(),
            headers: fault.headers.clone(),
            expect: fault.expect.clone(),
            bearer: fault.bearer.clone(),
        }
    }
}

/// `type = "sql"`: one statement run against PostgreSQL when the fault is
/// injected, and one that undoes it when it is reverted (and by `faultline
/// cleanup`). Each runs on a connection of its own, closed right after: the
/// statement must change something that outlives its session (a setting,
/// a table, WAL replay paused), not hold a lock or a `SET`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlFault {
    /// The server; default `${database}`. Interpolated like other URLs
    /// (`${vars.replica_database}`).
    #[serde(default = "default_sql_url")]
    pub url: String,
    /// One SQL statement (no `;`-separated list: it is sent as one prepared
    /// statement).
    pub statement: String,
    /// The statement that undoes `statement`. Required: a SQL fault must be
    /// reversible. It may run more than once, and after a `statement` that
    /// failed: make it idempotent (`DROP TABLE IF EXISTS`, not `DROP TABLE`).
    #[serde(default)]
    pub undo: String,
    /// A query returning one boolean row, run just before the revert: the
    /// fault's evidence. False, NULL or an error: "fault not effective".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify: Option<String>,
    /// How long each statement (connecting included) may take.
    #[serde(default = "five_seconds", with = "duration")]
    pub timeout: Duration,
}

fn default_sql_url() -> String {
    "${database}".to_owned()
}

/// A rollback action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionSpec {
    pub name: String,
    #[serde(flatten)]
    pub kind: ActionKind,
}

/// The kinds of rollback action (`type = "..."`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ActionKind {
    /// An HTTP request.
    Http(HttpRequestSpec),
    /// `POST /reset` on the proxy API: every proxy up, every toxic gone.
    ProxyReset(ProxyResetAction),
    /// A container action.
    Container(Box<ContainerFault>),
}

/// `type = "proxy_reset"`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyResetAction {}

/// A probe of the steady state, recovery or after phase.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeSpec {
    pub name: String,
    /// Retry until it passes, for this long (default: evaluate once; in the
    /// recovery and after phases: the recovery deadline).
    #[serde(
        default,
        with = "duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub within: Option<Duration>,
    #[serde(flatten)]
    pub kind: ProbeKind,
}

/// A probe evaluated continuously during the method.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DuringProbe {
    pub name: String,
    /// How often it is evaluated (default: `settings.probe_interval`).
    #[serde(
        default,
        with = "duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub every: Option<Duration>,
    /// `always` (every evaluation must pass) or `eventually` (one must).
    #[serde(default)]
    pub must: Must,
    /// For `always`: stop the method (and roll back) at the first failure.
    #[serde(default = "default_true")]
    pub abort: bool,
    #[serde(flatten)]
    pub kind: ProbeKind,
}

/// `[[abort_when]]`: a limit that must hold while the faults are in.
///
/// `promql` and `sli` hold while their tolerance is met (a query with no
/// sample, or no load window yet, is no data: it does not trip); `alert`
/// holds while no matching alert is in `state`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AbortCondition {
    pub name: String,
    /// How often it is evaluated (default 1 s), from the start of the method.
    #[serde(
        default,
        with = "duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub every: Option<Duration>,
    #[serde(flatten)]
    pub kind: AbortKind,
}

/// The kinds of abort condition (`type = "..."`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum AbortKind {
    /// A PromQL query that must stay within its tolerance.
    Promql(PromqlProbe),
    /// The SLI of the run's own load, which must stay within its tolerance.
    Sli(SliProbe),
    /// Alerts that must not be firing (or pending).
    Alert(AbortAlert),
}

impl AbortKind {
    /// The `type` of this condition.
    pub fn type_name(&self) -> &'static str {
        match self {
            AbortKind::Promql(_) => "promql",
            AbortKind::Sli(_) => "sli",
            AbortKind::Alert(_) => "alert",
        }
    }
}

/// `type = "alert"` in `[[abort_when]]`: trips when an alert matching every
/// filter given is in `state`. `severity = "page"` alone: any paging alert.
/// The Watchdog, and the alerts the experiment expects or allows, never trip it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AbortAlert {
    /// The alert's name (default: any alert).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert: Option<String>,
    /// Shorthand for `labels.severity`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// `firing` (default), `pending` or `active` (either).
    #[serde(default = "alert_firing")]
    pub state: AlertState,
}

fn alert_firing() -> AlertState {
    AlertState::Firing
}

impl AbortAlert {
    /// The labels to match: `labels`, plus `severity`.
    pub fn all_labels(&self) -> BTreeMap<String, String> {
        let mut labels = self.labels.clone();
        if let Some(severity) = &self.severity {
            labels.insert("severity".to_owned(), severity.clone());
        }
        labels
    }
}

/// How a during-probe's evaluations add up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Must {
    #[default]
    Always,
    Eventually,
}

/// The kinds of probe (`type = "..."`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ProbeKind {
    /// An HTTP request's status (and optionally headers and body).
    Http(HttpProbe),
    /// A PromQL instant query with a tolerance.
    Promql(PromqlProbe),
    /// An alert's state in Prometheus.
    Alert(AlertProbe),
    /// The SLI of the harness's own load.
    Sli(SliProbe),
    /// A SQL query's scalar with a tolerance.
    Sql(SqlProbe),
    /// A built-in data invariant.
    Invariant(InvariantProbe),
}

impl ProbeKind {
    /// The `type` of this probe.
    pub fn type_name(&self) -> &'static str {
        match self {
            ProbeKind::Http(_) => "http",
            ProbeKind::Promql(_) => "promql",
            ProbeKind::Alert(_) => "alert",
            ProbeKind::Sli(_) => "sli",
            ProbeKind::Sql(_) => "sql",
            ProbeKind::Invariant(_) => "invariant",
        }
    }
}

/// `type = "http"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpProbe {
    pub url: String,
    #[serde(default = "get")]
    pub method: String,
    /// Accepted statuses; default 200.
    #[serde(default = "default_status")]
    pub status: Statuses,
    /// Headers the answer must carry, with their values (`"*"`: any value).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Headers sent with the request.
    #[serde(default)]
    pub request_headers: BTreeMap<String, String>,
    /// Sent with a token the engine mints for this subject at each
    /// evaluation (`bearer = { subject = "flooding-client" }`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bearer: Option<BearerSpec>,
    /// Text the body must contain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_contains: Option<String>,
}

fn get() -> String {
    "GET".to_owned()
}
fn default_status() -> Statuses {
    Statuses::One(200)
}

/// One status or a list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Statuses {
    One(u16),
    Any(Vec<u16>),
}

impl Statuses {
    pub fn accepts(&self, status: u16) -> bool {
        match self {
            Statuses::One(one) => *one == status,
            Statuses::Any(any) => any.contains(&status),
        }
    }
}

/// What a number (or a set of numbers) must be.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Tolerance {
    /// Within `[min, max]`, bounds included.
    Range([f64; 2]),
    /// Exactly this value.
    Equals(f64),
    /// At most this value.
    AtMost(f64),
    /// At least this value.
    AtLeast(f64),
    /// At least one sample (PromQL) or row (SQL).
    NonEmpty,
    /// No sample or row at all.
    Empty,
}

/// `type = "promql"`. A vector result passes when every sample is within the
/// tolerance (and, unless the tolerance is `empty`, there is one).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromqlProbe {
    pub query: String,
    pub tolerance: Tolerance,
}

/// An alert state as a probe sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertState {
    Pending,
    Firing,
    /// Pending or firing.
    Active,
    /// Neither pending nor firing (also spelt `resolved`).
    #[serde(alias = "resolved")]
    Inactive,
}

/// `type = "alert"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertProbe {
    pub alert: String,
    pub state: AlertState,
    /// Only alerts carrying these labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// A number computed from the load generator's windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SliMetric {
    /// 1 − errors / requests.
    SuccessRatio,
    /// errors / requests.
    ErrorRatio,
    /// Failed requests.
    Errors,
    /// Finished requests.
    Requests,
    /// 429 answers.
    RateLimited,
    /// Answers marked `X-Degraded`.
    Degraded,
    P50Ms,
    P95Ms,
    P99Ms,
    MaxMs,
    MeanMs,
}

/// Which windows an SLI probe looks at.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SliOver {
    /// The latest window.
    #[default]
    Window,
    /// Every window since the current phase began (latency: the worst window).
    Phase,
}

/// `type = "sli"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SliProbe {
    pub metric: SliMetric,
    /// Route templates, e.g. `"POST /api/orders"`; empty: all routes.
    #[serde(default)]
    pub routes: Vec<faultline_loadgen::Route>,
    #[serde(default)]
    pub over: SliOver,
    /// Windows with fewer requests (on the chosen routes) are ignored.
    #[serde(default = "one")]
    pub min_requests: u64,
    pub tolerance: Tolerance,
}

fn one() -> u64 {
    1
}

/// `type = "sql"`: the first column of the first row (or the row count for
/// `non_empty`/`empty`), compared with the tolerance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlProbe {
    pub query: String,
    /// Bound to `$1`, `$2`... as text (cast in SQL: `$1::uuid`).
    #[serde(default)]
    pub params: Vec<String>,
    pub tolerance: Tolerance,
    /// Default `${database}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
}

/// Built-in invariants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Invariant {
    /// Every order the load generator saw acknowledged exists exactly once,
    /// under its idempotency key.
    AcknowledgedOrdersExistOnce,
}

/// `type = "invariant"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InvariantProbe {
    pub invariant: Invariant,
    /// The fewest acknowledged orders the load must have seen for the
    /// invariant to mean anything (default 1: zero orders fail it).
    #[serde(default = "one")]
    pub min_acknowledged: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
}

/// The recovery phase.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recovery {
    /// After the rollbacks, the steady-state probes (and `probes`) must all
    /// pass again within this time.
    #[serde(default = "sixty_seconds", with = "duration")]
    pub deadline: Duration,
    #[serde(default)]
    pub probes: Vec<ProbeSpec>,
}

impl Default for Recovery {
    fn default() -> Self {
        Self {
            deadline: sixty_seconds(),
            probes: Vec::new(),
        }
    }
}

/// An alert state that must be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExpectedState {
    /// Pending or firing, counted from the first fault.
    Pending,
    /// Firing, counted from the first fault.
    Firing,
    /// Seen firing, then gone, counted from the last fault reverted (else the end of the rollbacks).
    Resolved,
}

/// `[[expected_alerts]]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectedAlert {
    pub alert: String,
    #[serde(default = "firing")]
    pub state: ExpectedState,
    #[serde(with = "duration")]
    pub within: Duration,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Another expected alert this one must reach its state strictly before
    /// (a leading indicator before the SLO alert); the journal records the
    /// lead time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<String>,
}

fn firing() -> ExpectedState {
    ExpectedState::Firing
}

/// `[[allowed_alerts]]`: an alert that may fire during the run, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllowedAlert {
    pub alert: String,
    /// Only series carrying these labels (default: every series).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Why it is a true side effect of the faults.
    pub reason: String,
}

/// The alert that fires whatever happens (a dead man's switch): never
/// unexpected.
pub const WATCHDOG_ALERT: &str = "Watchdog";
