//! Reading experiment files, with errors that name the file, the line and
//! column, and the field.
//!
//! serde reports *which* field failed (through `serde_path_to_error`), toml
//! reports *where*; but inside tagged tables (`type = "..."`, which serde
//! buffers) toml only knows the enclosing table. So on error the path is
//! looked up in toml's spanned parse tree, and a table with a `type` is
//! deserialized again on its own into the variant's struct, which gives the
//! exact field and span.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use faultline_proxy::Stream;
use faultline_proxy::toxics::ToxicKind;
use serde::de::DeserializeOwned;
use serde_json::Value;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::model::*;
use crate::environment::{Environment, redact_passwords};

/// One step of a field path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Key(String),
    Index(usize),
}

/// A field path such as `method.faults[0].at`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldPath(pub Vec<Segment>);

impl FieldPath {
    fn key(mut self, key: &str) -> Self {
        self.0.push(Segment::Key(key.to_owned()));
        self
    }
    fn index(mut self, index: usize) -> Self {
        self.0.push(Segment::Index(index));
        self
    }
    fn from_serde(path: &serde_path_to_error::Path) -> Self {
        use serde_path_to_error::Segment as S;
        FieldPath(
            path.iter()
                .filter_map(|segment| match segment {
                    S::Seq { index } => Some(Segment::Index(*index)),
                    S::Map { key } => Some(Segment::Key(key.clone())),
                    // An externally tagged enum is a one-key table in TOML.
                    S::Enum { variant } => Some(Segment::Key(variant.clone())),
                    S::Unknown => None,
                })
                .collect(),
        )
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("(top level)");
        }
        for (i, segment) in self.0.iter().enumerate() {
            match segment {
                Segment::Key(key) if i == 0 => f.write_str(key)?,
                Segment::Key(key) => write!(f, ".{key}")?,
                Segment::Index(index) => write!(f, "[{index}]")?,
            }
        }
        Ok(())
    }
}

/// Why an experiment could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ExperimentError {
    #[error("cannot read {}: {error}", path.display())]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{file}:{line}:{column}: {field}: {message}\n{snippet}")]
    Invalid {
        /// The file (or the name given for a string).
        file: String,
        /// 1-based.
        line: usize,
        /// 1-based, in characters.
        column: usize,
        /// The field path, e.g. `method.faults[0].at`.
        field: String,
        message: String,
        /// The line with a caret under the column.
        snippet: String,
    },
}

impl ExperimentError {
    /// The field path of an invalid file.
    pub fn field(&self) -> Option<&str> {
        match self {
            ExperimentError::Invalid { field, .. } => Some(field),
            ExperimentError::Read { .. } => None,
        }
    }

    /// `(line, column)` of an invalid file.
    pub fn location(&self) -> Option<(usize, usize)> {
        match self {
            ExperimentError::Invalid { line, column, .. } => Some((*line, *column)),
            ExperimentError::Read { .. } => None,
        }
    }
}

impl Experiment {
    /// Reads and checks an experiment file.
    pub fn load(path: &Path) -> Result<Self, ExperimentError> {
        let text = read(path)?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Reads and checks an experiment file, and that its `[target]`, with
    /// `overrides` on top (FAULTLINE_TARGET_*, `--var`, a harness's
    /// bindings), gives what it needs beyond URLs: the key directory
    /// (`keys`) its tokens are minted with.
    pub fn load_with(path: &Path, overrides: &Environment) -> Result<Self, ExperimentError> {
        let text = read(path)?;
        Self::parse_with(&text, &path.display().to_string(), overrides)
    }

    /// Parses and checks an experiment; `file` names it in errors. What the
    /// target must provide is checked by [`Experiment::parse_with`] (and
    /// when the plan is compiled).
    pub fn parse(text: &str, file: &str) -> Result<Self, ExperimentError> {
        Self::parse_checked(text, file, None)
    }

    /// [`Experiment::parse`], then checks that the target with `overrides`
    /// on top gives the key directory the experiment's tokens need: a load
    /// with checkouts, order reads, customers or a subject, or an http probe
    /// or action with a `bearer`. Otherwise the error names the field that
    /// needs it.
    pub fn parse_with(
        text: &str,
        file: &str,
        overrides: &Environment,
    ) -> Result<Self, ExperimentError> {
        Self::parse_checked(text, file, Some(overrides))
    }

    fn parse_checked(
        text: &str,
        file: &str,
        overrides: Option<&Environment>,
    ) -> Result<Self, ExperimentError> {
        let tree = DeTable::parse(text).map_err(|err| {
            let span = err.span().unwrap_or(0..0);
            invalid(text, file, span, &FieldPath::default(), err.message())
        })?;
        let deserializer = toml::Deserializer::from(tree.clone());
        let experiment: Experiment =
            serde_path_to_error::deserialize(deserializer).map_err(|err| {
                let (path, span) = locate_serde_error(&tree, &err);
                invalid(text, file, span, &path, err.inner().message())
            })?;
        let checked = experiment.check().and_then(|()| match overrides {
            Some(overrides) => experiment.check_keys(&experiment.target.clone().overlay(overrides)),
            None => Ok(()),
        });
        if let Err((path, message)) = checked {
            let span = span_at(&tree, &path).unwrap_or(0..0);
            return Err(invalid(text, file, span, &path, &message));
        }
        Ok(experiment)
    }

    /// Reads a var file: a TOML table shaped like an experiment's
    /// `[target]` (`gateway`, `prometheus`, `proxy_api`, `database`,
    /// `fault_admin.*`, `docker.*`, `kubernetes.*`, `vars.*` at the top level). Errors name
    /// the file, line, column and field, as for experiments.
    pub fn load_target_file(path: &Path) -> Result<Environment, ExperimentError> {
        let text = read(path)?;
        Self::parse_target(&text, &path.display().to_string())
    }

    /// Parses a var file's text; `file` names it in errors.
    pub fn parse_target(text: &str, file: &str) -> Result<Environment, ExperimentError> {
        let tree = DeTable::parse(text).map_err(|err| {
            let span = err.span().unwrap_or(0..0);
            invalid(text, file, span, &FieldPath::default(), err.message())
        })?;
        let deserializer = toml::Deserializer::from(tree.clone());
        serde_path_to_error::deserialize(deserializer).map_err(|err| {
            let (path, span) = locate_serde_error(&tree, &err);
            invalid(text, file, span, &path, err.inner().message())
        })
    }

    /// The first field that needs a token minted with the target's keys,
    /// and why; `None` when nothing does.
    pub fn needs_keys(&self) -> Option<(FieldPath, String)> {
        let root = FieldPath::default();
        if let Some(load) = &self.load
            && let Some(need) = load_needs_keys(load, root.clone().key("load"))
        {
            return Some(need);
        }
        let probes = [
            (
                &self.steady_state.probes,
                root.clone().key("steady_state").key("probes"),
            ),
            (
                &self.recovery.probes,
                root.clone().key("recovery").key("probes"),
            ),
            (&self.after, root.clone().key("after")),
        ];
        for (probes, path) in probes {
            for (i, probe) in probes.iter().enumerate() {
                if let ProbeKind::Http(HttpProbe {
                    bearer: Some(bearer),
                    ..
                }) = &probe.kind
                {
                    return Some(bearer_needs_keys(bearer, path.clone().index(i)));
                }
            }
        }
        for (i, fault) in self.method.faults.iter().enumerate() {
            let path = root.clone().key("method").key("faults").index(i);
            match &fault.kind {
                FaultKind::Load(load) => {
                    if let Some(need) = load_needs_keys(load, path) {
                        return Some(need);
                    }
                }
                FaultKind::Http(http) => {
                    if let Some(bearer) = &http.bearer {
                        return Some(bearer_needs_keys(bearer, path));
                    }
                    if let Some(bearer) = http.undo.as_ref().and_then(|u| u.bearer.as_ref()) {
                        return Some(bearer_needs_keys(bearer, path.key("undo")));
                    }
                }
                _ => {}
            }
        }
        for (i, probe) in self.during.iter().enumerate() {
            if let ProbeKind::Http(HttpProbe {
                bearer: Some(bearer),
                ..
            }) = &probe.kind
            {
                return Some(bearer_needs_keys(
                    bearer,
                    root.clone().key("during").index(i),
                ));
            }
        }
        for (i, action) in self.rollbacks.iter().enumerate() {
            if let ActionKind::Http(HttpRequestSpec {
                bearer: Some(bearer),
                ..
            }) = &action.kind
            {
                return Some(bearer_needs_keys(
                    bearer,
                    root.clone().key("rollbacks").index(i),
                ));
            }
        }
        None
    }

    /// Tokens need a key directory to be minted with.
    fn check_keys(&self, target: &Environment) -> Result<(), (FieldPath, String)> {
        match (&target.keys, self.needs_keys()) {
            (None, Some((path, why))) => Err((
                path,
                format!(
                    "{why}, which the engine mints with the current key of a key directory: \
                     the target has none (set keys in [target], with --var keys=DIR, or with \
                     FAULTLINE_TARGET_KEYS)"
                ),
            )),
            (Some(keys), _) if keys.trim().is_empty() => Err((
                root_key("target", "keys"),
                "must not be empty: a key directory (faultline-shop keys init)".into(),
            )),
            _ => Ok(()),
        }
    }

    /// Checks what the types cannot: names, toxic attributes, the schedule.
    fn check(&self) -> Result<(), (FieldPath, String)> {
        let root = FieldPath::default();
        if self.title.trim().is_empty() {
            return Err((root.key("title"), "must not be empty".into()));
        }
        if self.settings.lease < std::time::Duration::from_secs(1) {
            return Err((
                root.clone().key("settings").key("lease"),
                "must be at least 1s (it is renewed every lease/3)".into(),
            ));
        }
        if let Some(load) = &self.load {
            check_load(load, root.clone().key("load"))?;
        }
        check_probes(
            &self.steady_state.probes,
            &root.clone().key("steady_state").key("probes"),
        )?;
        let faults = root.clone().key("method").key("faults");
        let mut schedule_end = std::time::Duration::ZERO;
        for (i, fault) in self.method.faults.iter().enumerate() {
            let path = faults.clone().index(i);
            unique(&self.method.faults, i, |f| &f.name, &path)?;
            check_fault(fault, path.clone())?;
            if let FaultKind::Sql(sql) = &fault.kind
                && sql.timeout > self.settings.action_timeout
            {
                return Err((
                    path.key("timeout"),
                    format!(
                        "is {} but settings.action_timeout, which bounds every action, is {}",
                        super::duration::render(sql.timeout),
                        super::duration::render(self.settings.action_timeout)
                    ),
                ));
            }
            schedule_end = schedule_end.max(fault.at + fault.duration.unwrap_or_default());
        }
        if let Some(duration) = self.method.duration
            && duration < schedule_end
        {
            return Err((
                root.clone().key("method").key("duration"),
                format!(
                    "is {} but the faults are scheduled until {}",
                    super::duration::render(duration),
                    super::duration::render(schedule_end)
                ),
            ));
        }
        for (i, probe) in self.during.iter().enumerate() {
            let path = root.clone().key("during").index(i);
            unique(&self.during, i, |p| &p.name, &path)?;
            check_probe_kind(&probe.kind, path)?;
        }
        for (i, condition) in self.abort_when.iter().enumerate() {
            let path = root.clone().key("abort_when").index(i);
            unique(&self.abort_when, i, |c| &c.name, &path)?;
            check_abort(condition, path)?;
        }
        for (i, action) in self.rollbacks.iter().enumerate() {
            let path = root.clone().key("rollbacks").index(i);
            match &action.kind {
                ActionKind::Http(request) => check_http(request, path)?,
                ActionKind::Container(container) => check_container(container, path)?,
                ActionKind::ProxyReset(_) => {}
            }
        }
        check_probes(
            &self.recovery.probes,
            &root.clone().key("recovery").key("probes"),
        )?;
        check_probes(&self.after, &root.clone().key("after"))?;
        for (i, alert) in self.expected_alerts.iter().enumerate() {
            if alert.alert.trim().is_empty() {
                return Err((
                    root.clone().key("expected_alerts").index(i).key("alert"),
                    "must not be empty".into(),
                ));
            }
            if let Some(other) = &alert.before {
                let comparable = self
                    .expected_alerts
                    .iter()
                    .any(|e| &e.alert == other && e.alert != alert.alert && e.state == alert.state);
                if !comparable || alert.state == ExpectedState::Resolved {
                    return Err((
                        root.clone().key("expected_alerts").index(i).key("before"),
                        format!(
                            "{other} must be another expected alert with the same state ({:?}, firing or pending)",
                            alert.state
                        ),
                    ));
                }
            }
        }
        for (i, allowed) in self.allowed_alerts.iter().enumerate() {
            let path = root.clone().key("allowed_alerts").index(i);
            if allowed.alert.trim().is_empty() {
                return Err((path.key("alert"), "must not be empty".into()));
            }
            if allowed.reason.trim().is_empty() {
                return Err((
                    path.key("reason"),
                    "say why this alert is a true side effect of the faults".into(),
                ));
            }
            // Redundant when every series it matches is expected anyway.
            let covered = self.expected_alerts.iter().any(|e| {
                e.state != ExpectedState::Resolved
                    && e.alert == allowed.alert
                    && e.labels
                        .iter()
                        .all(|(k, v)| allowed.labels.get(k) == Some(v))
            });
            if covered {
                return Err((
                    path.key("alert"),
                    format!(
                        "{} is expected already (for these labels): an expected alert need not be allowed",
                        allowed.alert
                    ),
                ));
            }
        }
        Ok(())
    }
}

fn unique<T>(
    items: &[T],
    index: usize,
    name: impl Fn(&T) -> &String,
    path: &FieldPath,
) -> Result<(), (FieldPath, String)> {
    let this = name(&items[index]);
    if this.trim().is_empty() {
        return Err((path.clone().key("name"), "must not be empty".into()));
    }
    if items[..index].iter().any(|other| name(other) == this) {
        return Err((
            path.clone().key("name"),
            format!("{this:?} is used twice; names must be unique"),
        ));
    }
    Ok(())
}

fn read(path: &Path) -> Result<String, ExperimentError> {
    std::fs::read_to_string(path).map_err(|error| ExperimentError::Read {
        path: path.to_owned(),
        error,
    })
}

fn root_key(table: &str, key: &str) -> FieldPath {
    FieldPath::default().key(table).key(key)
}

/// Where and why a load needs tokens.
fn load_needs_keys(load: &LoadSpec, path: FieldPath) -> Option<(FieldPath, String)> {
    if !load.needs_tokens() {
        return None;
    }
    Some(if let Some(subject) = &load.subject {
        (
            path.key("subject"),
            format!("the customer {subject:?} sends a bearer token"),
        )
    } else if load.customers.is_some() {
        (
            path.key("customers"),
            "the customers send bearer tokens".to_owned(),
        )
    } else {
        let field = if load.mix.is_some() {
            path.key("mix")
        } else {
            path
        };
        (
            field,
            "the load's checkouts and order reads (its mix, by default 10 and 5 in 100) are \
             sent by customers with bearer tokens"
                .to_owned(),
        )
    })
}

fn bearer_needs_keys(bearer: &BearerSpec, path: FieldPath) -> (FieldPath, String) {
    (
        path.key("bearer"),
        format!("a bearer token is sent for {:?}", bearer.subject),
    )
}

fn check_subject(subject: &str, path: FieldPath) -> Result<(), (FieldPath, String)> {
    if faultline_auth::Identity::valid_subject(subject) {
        Ok(())
    } else {
        Err((
            path,
            format!(
                "{subject:?} is not a token subject: 1 to {} characters, none of them a control \
                 character",
                faultline_auth::claims::MAX_SUBJECT_LEN
            ),
        ))
    }
}

fn check_bearer(bearer: Option<&BearerSpec>, path: FieldPath) -> Result<(), (FieldPath, String)> {
    match bearer {
        Some(bearer) => check_subject(&bearer.subject, path.key("bearer").key("subject")),
        None => Ok(()),
    }
}

fn check_load(load: &LoadSpec, path: FieldPath) -> Result<(), (FieldPath, String)> {
    if let (Some(_), Some(_)) = (&load.subject, load.customers) {
        return Err((
            path.key("subject"),
            "give subject (one named customer) or customers (how many), not both".into(),
        ));
    }
    if let Some(subject) = &load.subject {
        check_subject(subject, path.clone().key("subject"))?;
    }
    if let Some(customers) = load.customers
        && !(1..=faultline_loadgen::Customers::MAX).contains(&customers)
    {
        return Err((
            path.key("customers"),
            format!(
                "must be 1 to {}, got {customers}",
                faultline_loadgen::Customers::MAX
            ),
        ));
    }
    if let Some(mix) = &load.mix {
        mix.parse::<faultline_loadgen::Mix>()
            .map_err(|err| (path.clone().key("mix"), err.to_string()))?;
    }
    if let Some(rate) = load.rate
        && !(rate.is_finite() && rate > 0.0)
    {
        return Err((path.key("rate"), "must be a positive number".into()));
    }
    if load.concurrency == 0 {
        return Err((path.key("concurrency"), "must be positive".into()));
    }
    Ok(())
}

fn check_probes(probes: &[ProbeSpec], path: &FieldPath) -> Result<(), (FieldPath, String)> {
    for (i, probe) in probes.iter().enumerate() {
        let path = path.clone().index(i);
        unique(probes, i, |p| &p.name, &path)?;
        check_probe_kind(&probe.kind, path)?;
    }
    Ok(())
}

fn check_tolerance(tolerance: &Tolerance, path: FieldPath) -> Result<(), (FieldPath, String)> {
    if let Tolerance::Range([low, high]) = tolerance
        && low > high
    {
        return Err((path.key("range"), format!("[{low}, {high}] is empty")));
    }
    Ok(())
}

fn check_probe_kind(kind: &ProbeKind, path: FieldPath) -> Result<(), (FieldPath, String)> {
    match kind {
        ProbeKind::Http(probe) => {
            check_method(&probe.method, path.clone().key("method"))?;
            check_bearer(probe.bearer.as_ref(), path)
        }
        ProbeKind::Promql(probe) => check_tolerance(&probe.tolerance, path.key("tolerance")),
        ProbeKind::Sli(probe) => check_tolerance(&probe.tolerance, path.key("tolerance")),
        ProbeKind::Sql(probe) => check_tolerance(&probe.tolerance, path.key("tolerance")),
        ProbeKind::Alert(_) | ProbeKind::Invariant(_) => Ok(()),
    }
}

fn check_abort(condition: &AbortCondition, path: FieldPath) -> Result<(), (FieldPath, String)> {
    if condition.every.is_some_and(|every| every.is_zero()) {
        return Err((path.key("every"), "must be more than 0".into()));
    }
    match &condition.kind {
        AbortKind::Promql(probe) => check_tolerance(&probe.tolerance, path.key("tolerance")),
        AbortKind::Sli(probe) => check_tolerance(&probe.tolerance, path.key("tolerance")),
        AbortKind::Alert(alert) => {
            if alert.alert.is_none() && alert.severity.is_none() && alert.labels.is_empty() {
                return Err((
                    path.key("alert"),
                    "name the alert, a severity or labels (any alert at all would trip at once)"
                        .into(),
                ));
            }
            if alert.state == AlertState::Inactive {
                return Err((
                    path.key("state"),
                    "an abort condition trips on firing, pending or active alerts".into(),
                ));
            }
            Ok(())
        }
    }
}

fn check_method(method: &str, path: FieldPath) -> Result<(), (FieldPath, String)> {
    reqwest::Method::from_bytes(method.as_bytes())
        .map(|_| ())
        .map_err(|_| (path, format!("{method:?} is not an HTTP method")))
}

fn check_http(request: &HttpRequestSpec, path: FieldPath) -> Result<(), (FieldPath, String)> {
    check_method(&request.method, path.clone().key("method"))?;
    check_bearer(request.bearer.as_ref(), path)
}

fn check_container(fault: &ContainerFault, path: FieldPath) -> Result<(), (FieldPath, String)> {
    fault
        .target
        .validate()
        .map_err(|message| (path.clone().key("target"), message))?;
    if fault.signal.is_some() && fault.action != ContainerOp::Kill {
        return Err((
            path.key("signal"),
            "only applies to action = \"kill\"".into(),
        ));
    }
    if fault.action == ContainerOp::Connect && fault.network.is_none() {
        return Err((path.key("network"), "connect needs a network".into()));
    }
    if fault.action == ContainerOp::Exec && fault.command.first().is_none_or(String::is_empty) {
        return Err((path.key("command"), "exec needs a command".into()));
    }
    if fault.action == ContainerOp::Limit {
        if fault.cpus.is_none() && fault.memory_mib.is_none() {
            return Err((
                path.key("cpus"),
                "limit needs cpus, memory_mib or both".into(),
            ));
        }
        if let Some(cpus) = fault.cpus
            && !(0.01..=1024.0).contains(&cpus)
        {
            return Err((
                path.key("cpus"),
                format!("{cpus} is not between 0.01 and 1024"),
            ));
        }
        if fault.memory_mib.is_some_and(|m| m < 6) {
            return Err((
                path.key("memory_mib"),
                "the engine allows no memory limit under 6 MiB".into(),
            ));
        }
    }
    if fault.action == ContainerOp::Scale {
        if fault.replicas.is_none() {
            return Err((
                path.key("replicas"),
                "scale needs replicas (the count while the fault is in)".into(),
            ));
        }
        if fault.target.replica.is_some() {
            return Err((
                path.key("target").key("replica"),
                "scale sets the replicas of the whole workload that owns the service's pods; \
                 drop target.replica"
                    .into(),
            ));
        }
    }
    if fault.action == ContainerOp::Partition {
        let Some(peer) = &fault.peer else {
            return Err((path.key("peer"), "partition needs a peer".into()));
        };
        peer.validate()
            .map_err(|message| (path.clone().key("peer"), message))?;
    }
    let only_for = [
        ("command", ContainerOp::Exec, !fault.command.is_empty()),
        ("undo", ContainerOp::Exec, !fault.undo.is_empty()),
        ("user", ContainerOp::Exec, fault.user.is_some()),
        ("cpus", ContainerOp::Limit, fault.cpus.is_some()),
        ("memory_mib", ContainerOp::Limit, fault.memory_mib.is_some()),
        ("peer", ContainerOp::Partition, fault.peer.is_some()),
        ("image", ContainerOp::Partition, fault.image.is_some()),
        ("replicas", ContainerOp::Scale, fault.replicas.is_some()),
    ];
    if let Some((field, op, _)) = only_for
        .into_iter()
        .find(|(_, op, set)| *set && *op != fault.action)
    {
        let name = serde_json::to_value(op)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        return Err((
            path.key(field),
            format!("only applies to action = \"{name}\""),
        ));
    }
    Ok(())
}

fn check_fault(fault: &FaultSpec, path: FieldPath) -> Result<(), (FieldPath, String)> {
    match &fault.kind {
        FaultKind::Toxic(toxic) => {
            let attributes = toxic.api_attributes();
            let kind = ToxicKind::from_attributes(&toxic.toxic, &attributes).map_err(|err| {
                let field = if toxic.attributes.is_empty()
                    || err.to_string().contains("unknown toxic type")
                {
                    "toxic"
                } else {
                    "attributes"
                };
                (path.clone().key(field), err.to_string())
            })?;
            if !(0.0..=1.0).contains(&toxic.toxicity) {
                return Err((path.key("toxicity"), "must be within 0..=1".into()));
            }
            if kind.upstream_only() && toxic.stream != Stream::Upstream {
                return Err((
                    path.key("stream"),
                    format!(
                        "a {} toxic reads requests: it needs stream = \"upstream\"",
                        toxic.toxic
                    ),
                ));
            }
            if let Some(ramp) = &toxic.ramp {
                let ramp_path = path.clone().key("ramp");
                if !kind
                    .attributes()
                    .get(&ramp.attribute)
                    .is_some_and(Value::is_u64)
                {
                    return Err((
                        ramp_path.key("attribute"),
                        format!(
                            "{:?} is not a numeric attribute of a {} toxic",
                            ramp.attribute, toxic.toxic
                        ),
                    ));
                }
                if ramp.steps == 0 {
                    return Err((ramp_path.key("steps"), "must be at least 1".into()));
                }
                if let Some(duration) = fault.duration {
                    let ramp_end = ramp.every * ramp.steps;
                    if ramp_end > duration {
                        return Err((
                            ramp_path.key("steps"),
                            format!(
                                "the ramp takes {} but the fault lasts {}",
                                super::duration::render(ramp_end),
                                super::duration::render(duration)
                            ),
                        ));
                    }
                }
            }
            Ok(())
        }
        FaultKind::ProxyDown(_) => Ok(()),
        FaultKind::Container(container) => check_container(container, path),
        FaultKind::Http(http) => {
            check_method(&http.method, path.clone().key("method"))?;
            check_bearer(http.bearer.as_ref(), path.clone())?;
            if let Some(undo) = &http.undo {
                check_http(undo, path.key("undo"))?;
            }
            Ok(())
        }
        FaultKind::Load(load) => check_load(load, path),
        FaultKind::Sql(sql) => check_sql(sql, path),
    }
}

fn check_sql(fault: &SqlFault, path: FieldPath) -> Result<(), (FieldPath, String)> {
    check_database_url(&fault.url, path.clone().key("url"))?;
    if fault.statement.trim().is_empty() {
        return Err((path.key("statement"), "must not be empty".into()));
    }
    if fault.undo.trim().is_empty() {
        return Err((
            path.key("undo"),
            "a sql fault must be reversible: give the statement that undoes `statement` \
             (idempotent: it may run more than once)"
                .into(),
        ));
    }
    if fault.verify.as_ref().is_some_and(|v| v.trim().is_empty()) {
        return Err((
            path.key("verify"),
            "must not be empty (leave it out to record what the statement returned)".into(),
        ));
    }
    if fault.timeout.is_zero() {
        return Err((path.key("timeout"), "must be more than 0".into()));
    }
    Ok(())
}

/// A PostgreSQL URL: checked here when written out, at compile time once
/// its `${...}` are interpolated. The message never repeats the URL (it may
/// hold a password).
fn check_database_url(url: &str, path: FieldPath) -> Result<(), (FieldPath, String)> {
    if url.trim().is_empty() {
        return Err((path, "must not be empty (default: \"${database}\")".into()));
    }
    if url.contains("${") {
        let mut rest = url;
        while let Some(start) = rest.find("${") {
            let after = &rest[start + 2..];
            let Some(end) = after.find('}') else {
                return Err((path, "has an unterminated ${...}".into()));
            };
            rest = &after[end + 1..];
        }
        return Ok(());
    }
    match url::Url::parse(url) {
        Ok(parsed) if matches!(parsed.scheme(), "postgres" | "postgresql") => Ok(()),
        Ok(parsed) => Err((
            path,
            format!(
                "is a {}: URL, not a PostgreSQL one (postgres://user@host:5432/database)",
                parsed.scheme()
            ),
        )),
        Err(err) => Err((
            path,
            format!("is not a URL ({err}); expected postgres://user@host:5432/database"),
        )),
    }
}

fn invalid(
    text: &str,
    file: &str,
    span: Range<usize>,
    path: &FieldPath,
    message: &str,
) -> ExperimentError {
    let (line, column, content) = position(text, span.start);
    // A line with a database URL's password shows it as ***, and the caret
    // under what is shown.
    let before: String = content.chars().take(column - 1).collect();
    let caret_column = redact_passwords(&before).chars().count() + 1;
    let width = text
        .get(span.clone())
        .map(|s| {
            redact_passwords(s.lines().next().unwrap_or(""))
                .chars()
                .count()
        })
        .unwrap_or(1)
        .max(1);
    let content = redact_passwords(content);
    let gutter = line.to_string().len();
    let snippet = format!(
        "{:gutter$} |\n{line} | {content}\n{:gutter$} | {}{}",
        "",
        "",
        " ".repeat(caret_column - 1),
        "^".repeat(width),
    );
    ExperimentError::Invalid {
        file: file.to_owned(),
        line,
        column,
        field: path.to_string(),
        message: redact_passwords(message.trim()),
        snippet,
    }
}

/// 1-based line and column of a byte offset, and the line's text.
fn position(text: &str, offset: usize) -> (usize, usize, &str) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or("");
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = before.matches('\n').count() + 1;
    let column = before.get(line_start..).unwrap_or("").chars().count() + 1;
    let content = text
        .get(line_start..)
        .unwrap_or("")
        .lines()
        .next()
        .unwrap_or("");
    (line, column, content)
}

/// The node at `path`, or the deepest one on the way, with how many segments
/// were followed.
fn walk<'a, 'i>(
    root: &'a Spanned<DeTable<'i>>,
    path: &FieldPath,
) -> (Range<usize>, Option<&'a DeValue<'i>>, usize) {
    let mut span = root.span();
    let mut table: Option<&'a DeTable<'i>> = Some(root.get_ref());
    let mut array: Option<&'a [Spanned<DeValue<'i>>]> = None;
    let mut current: Option<&'a DeValue<'i>> = None;
    for (depth, segment) in path.0.iter().enumerate() {
        let next = match (segment, table, array) {
            (Segment::Key(key), Some(t), _) => t
                .iter()
                .find(|(k, _)| k.get_ref().as_ref() == key.as_str())
                .map(|(_, v)| v),
            (Segment::Index(i), _, Some(a)) => a.get(*i),
            _ => None,
        };
        let Some(next) = next else {
            return (span, current, depth);
        };
        span = next.span();
        current = Some(next.get_ref());
        table = None;
        array = None;
        match next.get_ref() {
            DeValue::Table(t) => table = Some(t),
            DeValue::Array(a) => array = Some(a),
            _ => {}
        }
    }
    (span, current, path.0.len())
}

/// The span of the value at `path` (or of its deepest existing ancestor).
fn span_at(root: &Spanned<DeTable<'_>>, path: &FieldPath) -> Option<Range<usize>> {
    Some(walk(root, path).0)
}

/// The span of key `key` in the table `value`, if it is one.
fn key_span(value: Option<&DeValue<'_>>, key: &str) -> Option<Range<usize>> {
    match value {
        Some(DeValue::Table(table)) => table
            .iter()
            .find(|(k, _)| k.get_ref().as_ref() == key)
            .map(|(k, _)| k.span()),
        _ => None,
    }
}

/// The word between the first pair of backticks of a serde message.
fn quoted(message: &str, prefix: &str) -> Option<String> {
    let rest = message.strip_prefix(prefix)?;
    let rest = rest.strip_prefix('`')?;
    Some(rest[..rest.find('`')?].to_owned())
}

type Relocated = Result<(), serde_path_to_error::Error<toml::de::Error>>;

fn check_as<T: DeserializeOwned>(deserializer: toml::Deserializer<'_>) -> Relocated {
    serde_path_to_error::deserialize::<_, T>(deserializer).map(|_| ())
}

fn fault_variant(tag: &str, de: toml::Deserializer<'_>) -> Option<Relocated> {
    Some(match tag {
        "toxic" => check_as::<ToxicFault>(de),
        "proxy_down" => check_as::<ProxyDownFault>(de),
        "container" => check_as::<ContainerFault>(de),
        "http" => check_as::<HttpFault>(de),
        "load" => check_as::<LoadSpec>(de),
        "sql" => check_as::<SqlFault>(de),
        _ => return None,
    })
}

fn probe_variant(tag: &str, de: toml::Deserializer<'_>) -> Option<Relocated> {
    Some(match tag {
        "http" => check_as::<HttpProbe>(de),
        "promql" => check_as::<PromqlProbe>(de),
        "alert" => check_as::<AlertProbe>(de),
        "sli" => check_as::<SliProbe>(de),
        "sql" => check_as::<SqlProbe>(de),
        "invariant" => check_as::<InvariantProbe>(de),
        _ => return None,
    })
}

fn action_variant(tag: &str, de: toml::Deserializer<'_>) -> Option<Relocated> {
    Some(match tag {
        "http" => check_as::<HttpRequestSpec>(de),
        "proxy_reset" => check_as::<ProxyResetAction>(de),
        "container" => check_as::<ContainerFault>(de),
        _ => return None,
    })
}

fn abort_variant(tag: &str, de: toml::Deserializer<'_>) -> Option<Relocated> {
    Some(match tag {
        "promql" => check_as::<PromqlProbe>(de),
        "sli" => check_as::<SliProbe>(de),
        "alert" => check_as::<AbortAlert>(de),
        _ => return None,
    })
}

type Relocator = fn(&str, toml::Deserializer<'_>) -> Option<Relocated>;

/// The tagged tables: the keys of the enclosing struct, and the variants.
const TAGGED: &[(&[&str], Relocator)] = &[
    (&["name", "at", "duration", "type"], fault_variant),
    (&["name", "within", "type"], probe_variant),
    (&["name", "every", "must", "abort", "type"], probe_variant),
    (&["name", "every", "type"], abort_variant),
    (&["name", "type"], action_variant),
];

/// Re-reads a tagged table on its own to find the exact field and span of
/// an error serde reported against the whole table.
fn relocate(
    span: &Range<usize>,
    node: Option<&DeValue<'_>>,
    message: &str,
) -> Option<(FieldPath, Range<usize>)> {
    let Some(DeValue::Table(table)) = node else {
        return None;
    };
    let tag = table
        .iter()
        .find(|(k, _)| k.get_ref().as_ref() == "type")
        .and_then(|(_, v)| match v.get_ref() {
            DeValue::String(s) => Some(s.to_string()),
            _ => None,
        })?;
    for (common, relocator) in TAGGED {
        let mut inner = DeTable::new();
        for (key, value) in table.iter() {
            if !common.contains(&key.get_ref().as_ref()) {
                inner.insert(key.clone(), value.clone());
            }
        }
        let deserializer = toml::Deserializer::from(Spanned::new(span.clone(), inner));
        if let Some(Err(err)) = relocator(&tag, deserializer)
            && err.inner().message() == message
        {
            let path = FieldPath::from_serde(err.path());
            let span = err.inner().span()?;
            return Some((path, span));
        }
    }
    None
}

/// The field path and span of a deserialization error.
fn locate_serde_error(
    tree: &Spanned<DeTable<'_>>,
    err: &serde_path_to_error::Error<toml::de::Error>,
) -> (FieldPath, Range<usize>) {
    let mut path = FieldPath::from_serde(err.path());
    let message = err.inner().message();
    let (node_span, node, depth) = walk(tree, &path);
    let mut span = err.inner().span().unwrap_or(node_span.clone());
    if depth == path.0.len()
        && let Some((inner, inner_span)) = relocate(&node_span, node, message)
    {
        path.0.extend(inner.0);
        span = inner_span;
    }
    let ends_with = |path: &FieldPath, field: &str| matches!(path.0.last(), Some(Segment::Key(key)) if key == field);
    if let Some(field) = quoted(message, "unknown field ") {
        if !ends_with(&path, &field) {
            let (_, node, depth) = walk(tree, &path);
            if depth == path.0.len()
                && let Some(key) = key_span(node, &field)
            {
                span = key;
            }
            path = path.key(&field);
        }
    } else if let Some(variant) = quoted(message, "unknown variant ")
        && !ends_with(&path, "type")
    {
        // A tagged table with an unknown `type`: point at the type.
        let (_, node, depth) = walk(tree, &path);
        if depth == path.0.len()
            && let Some(DeValue::Table(table)) = node
            && let Some((_, value)) = table.iter().find(|(k, _)| k.get_ref().as_ref() == "type")
            && matches!(value.get_ref(), DeValue::String(s) if *s == variant)
        {
            span = value.span();
            path = path.key("type");
        }
    } else if let Some(field) = quoted(message, "missing field ")
        && !ends_with(&path, &field)
    {
        path = path.key(&field);
    }
    (path, span)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// A sql fault with `fields`, after `name` and `type`.
    fn sql_experiment(fields: &str) -> String {
        format!(
            r#"title = "sql"

[target]
database = "postgres://postgres@127.0.0.1:5432/postgres"

[method]

[[method.faults]]
name = "pause replay"
type = "sql"
{fields}
duration = "30s"
"#
        )
    }

    const PAUSE: &str = r#"url = "${vars.replica_database}"
statement = "SELECT pg_wal_replay_pause()"
undo = "SELECT pg_wal_replay_resume()"
verify = "SELECT pg_is_wal_replay_paused()"
timeout = "2s""#;

    /// The message, field path and line of the error `text` gives.
    fn error(text: &str) -> (String, String, usize) {
        match Experiment::parse(text, "sql.toml") {
            Ok(experiment) => panic!("valid, but should not be: {experiment:?}"),
            Err(err) => {
                let field = err.field().unwrap_or_default().to_owned();
                let (line, _) = err.location().unwrap_or_default();
                (err.to_string(), field, line)
            }
        }
    }

    fn line_of(text: &str, needle: &str) -> usize {
        text.lines()
            .position(|l| l.contains(needle))
            .map_or(0, |i| i + 1)
    }

    #[test]
    fn a_sql_fault_parses_with_its_fields_and_defaults() {
        let experiment = Experiment::parse(&sql_experiment(PAUSE), "sql.toml").unwrap();
        let fault = &experiment.method.faults[0];
        assert_eq!(fault.kind.type_name(), "sql");
        assert_eq!(fault.duration, Some(Duration::from_secs(30)));
        let FaultKind::Sql(sql) = &fault.kind else {
            panic!("a sql fault: {fault:?}");
        };
        assert_eq!(sql.url, "${vars.replica_database}");
        assert_eq!(sql.statement, "SELECT pg_wal_replay_pause()");
        assert_eq!(sql.undo, "SELECT pg_wal_replay_resume()");
        assert_eq!(
            sql.verify.as_deref(),
            Some("SELECT pg_is_wal_replay_paused()")
        );
        assert_eq!(sql.timeout, Duration::from_secs(2));
        // It serialises back into TOML that parses to the same experiment.
        let again = toml::to_string(&experiment).unwrap();
        assert_eq!(Experiment::parse(&again, "again.toml").unwrap(), experiment);

        let minimal =
            sql_experiment("statement = \"CREATE TABLE t ()\"\nundo = \"DROP TABLE IF EXISTS t\"");
        let experiment = Experiment::parse(&minimal, "sql.toml").unwrap();
        let FaultKind::Sql(sql) = &experiment.method.faults[0].kind else {
            panic!("a sql fault");
        };
        assert_eq!(sql.url, "${database}", "the target's database");
        assert_eq!(sql.verify, None);
        assert_eq!(sql.timeout, Duration::from_secs(5));
    }

    #[test]
    fn sql_fault_errors_name_the_field_and_its_line() {
        let statement = "statement = \"SELECT pg_wal_replay_pause()\"";
        let undo = "undo = \"SELECT pg_wal_replay_resume()\"";
        let cases = [
            (
                format!("statement = \"  \"\n{undo}"),
                "statement",
                "must not be empty",
                "statement = ",
            ),
            (
                statement.to_owned(),
                "undo",
                "a sql fault must be reversible",
                "[[method.faults]]",
            ),
            (
                format!("{statement}\nundo = \"\""),
                "undo",
                "a sql fault must be reversible",
                "undo = ",
            ),
            (
                format!("{statement}\n{undo}\nverify = \"\""),
                "verify",
                "must not be empty",
                "verify = ",
            ),
            (
                format!("{statement}\n{undo}\ntimeout = \"0s\""),
                "timeout",
                "must be more than 0",
                "timeout = ",
            ),
            (
                format!("{statement}\n{undo}\ntimeout = \"1m\""),
                "timeout",
                "settings.action_timeout, which bounds every action, is 30s",
                "timeout = ",
            ),
            (
                format!("{statement}\n{undo}\ntimeout = \"soon\""),
                "timeout",
                "invalid duration \"soon\"",
                "timeout = ",
            ),
            (
                format!("{statement}\n{undo}\nurl = \"http://u:hunter2@db/x\""),
                "url",
                "is a http: URL, not a PostgreSQL one",
                "url = ",
            ),
            (
                format!("{statement}\n{undo}\nurl = \"postgres://u:hunter2@db:port/x\""),
                "url",
                "is not a URL (invalid port number)",
                "url = ",
            ),
            (
                format!("{statement}\n{undo}\nurl = \"${{vars.replica\""),
                "url",
                "unterminated",
                "url = ",
            ),
            (
                format!("{statement}\n{undo}\nurl = \"\""),
                "url",
                "must not be empty",
                "url = ",
            ),
            (
                format!("{statement}\n{undo}\nurl = 5432"),
                "url",
                "invalid type: integer `5432`, expected a string",
                "url = ",
            ),
            (
                format!("{undo}\nurl = \"${{database}}\""),
                "statement",
                "missing field `statement`",
                "[[method.faults]]",
            ),
            // Fields of other fault types.
            (
                format!("{statement}\n{undo}\nproxy = \"payments\""),
                "proxy",
                "unknown field `proxy`, expected one of `url`, `statement`, `undo`, `verify`, `timeout`",
                "proxy = ",
            ),
            (
                format!("{statement}\n{undo}\ncommand = [\"true\"]"),
                "command",
                "unknown field `command`",
                "command = ",
            ),
            (
                format!("{statement}\nundo = [\"rm\", \"-f\", \"/tmp/x\"]"),
                "undo",
                "invalid type: sequence, expected a string",
                "undo = ",
            ),
            (
                format!("{statement}\n{undo}\ndatabase = \"${{database}}\""),
                "database",
                "unknown field `database`",
                "database = \"${database}\"",
            ),
        ];
        for (fields, field, needle, line_needle) in cases {
            let text = sql_experiment(&fields);
            let (message, found, line) = error(&text);
            assert_eq!(found, format!("method.faults[0].{field}"), "{message}");
            assert!(message.contains(needle), "{needle:?} in {message}");
            assert!(
                message.starts_with(&format!("sql.toml:{line}:")),
                "{message}"
            );
            assert_eq!(line, line_of(&text, line_needle), "{message}");
            assert!(!message.contains("hunter2"), "{message}");
        }
    }
}
