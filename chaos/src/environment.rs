//! Where an experiment runs: the endpoints of the stack under test.
//!
//! The same experiment runs against the compose demo or a stack the test
//! harness started. Its `[target]` section holds defaults (the compose demo's
//! ports); they are overridden, in this order, by `FAULTLINE_TARGET_*`
//! environment variables, by `--set key=value` on the command line, and by the
//! [`Environment`] a test harness passes in [`crate::Bindings`].
//!
//! URLs and queries in an experiment can refer to these values as
//! `${gateway}`, `${prometheus}`, `${proxy_api}`, `${database}`,
//! `${fault_admin.<service>}` and `${vars.<name>}`.
//!
//! Two settings are credentials, never interpolated nor shown:
//! `proxy_api_token`, sent to the proxy's control API, and
//! `fault_admin_token`, sent to every fault admin API (any request whose URL
//! starts with one of `fault_admin.*`). Both are [`Secret`]s: a journal, a
//! dry run or an error shows `***`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Compose v1/v2 label naming a container's service.
pub const COMPOSE_SERVICE_LABEL: &str = "com.docker.compose.service";
/// Compose label holding a container's replica number (1-based).
pub const COMPOSE_REPLICA_LABEL: &str = "com.docker.compose.container-number";
/// Compose label holding the project name.
pub const COMPOSE_PROJECT_LABEL: &str = "com.docker.compose.project";
/// The recommended Kubernetes label naming an application: the default
/// label a pod's service is read from.
pub const KUBERNETES_SERVICE_LABEL: &str = "app.kubernetes.io/name";

/// The endpoints of the stack under test. Every field is optional: an
/// experiment only needs the ones its probes and faults use.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Environment {
    /// Base URL of the shop's public API, e.g. `http://127.0.0.1:8080`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    /// Base URL of Prometheus, e.g. `http://127.0.0.1:9090`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus: Option<String>,
    /// Base URL of the fault proxy's (or a Toxiproxy's) control API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_api: Option<String>,
    /// PostgreSQL URL for data-invariant probes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    /// A key directory (`faultline-shop keys init`): its current key signs
    /// the tokens of the load's customers and of http probes' and actions'
    /// `bearer`. A path, relative to the current directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keys: Option<String>,
    /// Fault admin API base URL per service, e.g. `orders = "http://127.0.0.1:9100"`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub fault_admin: BTreeMap<String, String>,
    /// The bearer token of the proxy's control API, when it requires one
    /// (`faultline proxy --api-token`); a plain Toxiproxy takes none.
    /// Serialised as `***`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "serialize_hidden"
    )]
    pub proxy_api_token: Option<Secret>,
    /// The bearer token of the fault admin APIs (the services'
    /// `FAULTLINE_FAULT_ADMIN_TOKEN`; one for all). Serialised as `***`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "serialize_hidden"
    )]
    pub fault_admin_token: Option<Secret>,
    /// How container targets are found on Docker.
    #[serde(default, skip_serializing_if = "DockerTarget::is_default")]
    pub docker: DockerTarget,
    /// How container targets are found on Kubernetes. Setting any of it
    /// makes container faults act on Kubernetes pods instead of Docker
    /// containers ([`KubernetesTarget::is_selected`]).
    #[serde(default, skip_serializing_if = "KubernetesTarget::is_default")]
    pub kubernetes: KubernetesTarget,
    /// Free-form values for `${vars.<name>}`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub vars: BTreeMap<String, String>,
}

/// How a container selector (`service` + `replica`, labels, or a name) maps
/// onto Docker containers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DockerTarget {
    /// Only containers of this compose project (label `com.docker.compose.project`).
    /// An empty string means any project: an override can set it to clear the
    /// experiment's default (`--set docker.project=`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// Only containers carrying all these labels (e.g. the test harness's
    /// `org.faultline.network = <network>`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// The label holding a container's service name.
    #[serde(default = "default_service_label")]
    pub service_label: String,
    /// The label holding a container's replica number.
    #[serde(default = "default_replica_label")]
    pub replica_label: String,
}

fn default_service_label() -> String {
    COMPOSE_SERVICE_LABEL.to_owned()
}

fn default_replica_label() -> String {
    COMPOSE_REPLICA_LABEL.to_owned()
}

impl Default for DockerTarget {
    fn default() -> Self {
        Self {
            project: None,
            labels: BTreeMap::new(),
            service_label: default_service_label(),
            replica_label: default_replica_label(),
        }
    }
}

impl DockerTarget {
    fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// How a container selector maps onto Kubernetes pods (`[target.kubernetes]`):
/// `service` is the value of the pod label `service_label`, in `namespace`.
/// Every field is optional; setting any selects the Kubernetes platform.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubernetesTarget {
    /// The namespace of the pods and their workloads (default: the
    /// kubeconfig context's, or the service account's in a cluster).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The pod label holding a pod's service name (default
    /// `app.kubernetes.io/name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_label: Option<String>,
    /// Only pods carrying all these labels (e.g. `app.kubernetes.io/part-of`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// The kubeconfig context to use (default: the current one, or the
    /// in-cluster service account).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    /// The API server's URL, spoken to without credentials (a test's fake
    /// API server, `kubectl proxy`); overrides `context`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

impl KubernetesTarget {
    fn is_default(&self) -> bool {
        *self == Self::default()
    }

    /// Whether container faults go to Kubernetes: any setting is set.
    pub fn is_selected(&self) -> bool {
        !self.is_default()
    }

    /// The label holding a pod's service name.
    pub fn service_label(&self) -> &str {
        self.service_label
            .as_deref()
            .unwrap_or(KUBERNETES_SERVICE_LABEL)
    }
}

/// A `--set` key or an environment variable that does not name a setting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvironmentError {
    #[error(
        "unknown target setting {0:?} (known: gateway, prometheus, proxy_api, proxy_api_token, \
         database, keys, fault_admin.<service>, fault_admin_token, docker.project, \
         docker.labels.<label>, docker.service_label, docker.replica_label, \
         kubernetes.namespace, kubernetes.labels.<label>, kubernetes.service_label, \
         kubernetes.context, kubernetes.url, vars.<name>)"
    )]
    UnknownKey(String),
    #[error("expected key=value, got {0:?}")]
    Syntax(String),
    #[error("{text:?} refers to ${{{name}}}, which the target does not define{hint}")]
    Undefined {
        text: String,
        name: String,
        hint: String,
    },
    #[error("{0:?} has an unterminated ${{...}}")]
    Unterminated(String),
    #[error(
        "{text:?} refers to ${{{name}}}, a credential: it is never written into a request; \
         the engine sends it as Authorization: Bearer by itself (proxy_api_token to the proxy's \
         API, fault_admin_token to every fault_admin.* URL)"
    )]
    Credential { text: String, name: String },
}

impl EnvironmentError {
    /// The same error with the password of any URL it quotes as `***`.
    pub fn redacted(self) -> Self {
        match self {
            EnvironmentError::Undefined { text, name, hint } => EnvironmentError::Undefined {
                text: redact_passwords(&text),
                name,
                hint,
            },
            EnvironmentError::Unterminated(text) => {
                EnvironmentError::Unterminated(redact_passwords(&text))
            }
            EnvironmentError::Syntax(text) => EnvironmentError::Syntax(redact_passwords(&text)),
            EnvironmentError::Credential { text, name } => EnvironmentError::Credential {
                text: redact_passwords(&text),
                name,
            },
            other @ EnvironmentError::UnknownKey(_) => other,
        }
    }
}

/// The prefix of environment variables that override target settings:
/// `FAULTLINE_TARGET_PROMETHEUS`, `FAULTLINE_TARGET_FAULT_ADMIN__ORDERS`
/// (`__` stands for `.`).
pub const ENV_PREFIX: &str = "FAULTLINE_TARGET_";

impl Environment {
    /// `self` with every value `overrides` sets replaced.
    pub fn overlay(mut self, overrides: &Environment) -> Self {
        fn pick(value: &mut Option<String>, other: &Option<String>) {
            if other.is_some() {
                value.clone_from(other);
            }
        }
        pick(&mut self.gateway, &overrides.gateway);
        pick(&mut self.prometheus, &overrides.prometheus);
        pick(&mut self.proxy_api, &overrides.proxy_api);
        pick(&mut self.database, &overrides.database);
        pick(&mut self.keys, &overrides.keys);
        self.fault_admin.extend(overrides.fault_admin.clone());
        if overrides.proxy_api_token.is_some() {
            self.proxy_api_token.clone_from(&overrides.proxy_api_token);
        }
        if overrides.fault_admin_token.is_some() {
            self.fault_admin_token
                .clone_from(&overrides.fault_admin_token);
        }
        self.vars.extend(overrides.vars.clone());
        let docker = &overrides.docker;
        pick(&mut self.docker.project, &docker.project);
        self.docker.labels.extend(docker.labels.clone());
        if docker.service_label != COMPOSE_SERVICE_LABEL {
            self.docker.service_label.clone_from(&docker.service_label);
        }
        if docker.replica_label != COMPOSE_REPLICA_LABEL {
            self.docker.replica_label.clone_from(&docker.replica_label);
        }
        let kubernetes = &overrides.kubernetes;
        pick(&mut self.kubernetes.namespace, &kubernetes.namespace);
        pick(
            &mut self.kubernetes.service_label,
            &kubernetes.service_label,
        );
        pick(&mut self.kubernetes.context, &kubernetes.context);
        pick(&mut self.kubernetes.url, &kubernetes.url);
        self.kubernetes.labels.extend(kubernetes.labels.clone());
        self
    }

    /// Sets one value by its dotted key (`prometheus`, `fault_admin.orders`,
    /// `fault_admin_token`, `docker.labels.org.faultline.network`, `vars.rate`).
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), EnvironmentError> {
        let value = value.to_owned();
        let unknown = || EnvironmentError::UnknownKey(key.to_owned());
        match key {
            "gateway" => self.gateway = Some(value),
            "prometheus" => self.prometheus = Some(value),
            "proxy_api" => self.proxy_api = Some(value),
            "proxy_api_token" => self.proxy_api_token = Some(Secret::new(value)),
            "fault_admin_token" => self.fault_admin_token = Some(Secret::new(value)),
            "database" => self.database = Some(value),
            "keys" => self.keys = Some(value),
            "docker.project" => self.docker.project = Some(value),
            "docker.service_label" => self.docker.service_label = value,
            "docker.replica_label" => self.docker.replica_label = value,
            "kubernetes.namespace" => self.kubernetes.namespace = Some(value),
            "kubernetes.service_label" => self.kubernetes.service_label = Some(value),
            "kubernetes.context" => self.kubernetes.context = Some(value),
            "kubernetes.url" => self.kubernetes.url = Some(value),
            _ => {
                let (map, name) = if let Some(name) = key.strip_prefix("fault_admin.") {
                    (&mut self.fault_admin, name)
                } else if let Some(name) = key.strip_prefix("docker.labels.") {
                    (&mut self.docker.labels, name)
                } else if let Some(name) = key.strip_prefix("kubernetes.labels.") {
                    (&mut self.kubernetes.labels, name)
                } else if let Some(name) = key.strip_prefix("vars.") {
                    (&mut self.vars, name)
                } else {
                    return Err(unknown());
                };
                if name.is_empty() {
                    return Err(unknown());
                }
                map.insert(name.to_owned(), value);
            }
        }
        Ok(())
    }

    /// Applies a `key=value` assignment.
    pub fn set_assignment(&mut self, assignment: &str) -> Result<(), EnvironmentError> {
        let (key, value) = assignment
            .split_once('=')
            .ok_or_else(|| EnvironmentError::Syntax(assignment.to_owned()))?;
        self.set(key.trim(), value.trim())
    }

    /// The overrides given by `FAULTLINE_TARGET_*` variables in `vars`.
    pub fn from_env_vars(
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, EnvironmentError> {
        let mut env = Environment::default();
        for (name, value) in vars {
            if let Some(key) = name.strip_prefix(ENV_PREFIX) {
                let key = key.to_ascii_lowercase().replace("__", ".");
                env.set(&key, &value)?;
            }
        }
        Ok(env)
    }

    /// Every setting that is set, as `(dotted key, value)`, in the order
    /// `--var` lists them; the docker labels' keys only when not compose's.
    pub fn settings(&self) -> Vec<(String, String)> {
        let mut all = Vec::new();
        for (key, value) in [
            ("gateway", &self.gateway),
            ("prometheus", &self.prometheus),
            ("proxy_api", &self.proxy_api),
            ("database", &self.database),
            ("keys", &self.keys),
        ] {
            if let Some(value) = value {
                all.push((key.to_owned(), value.clone()));
            }
        }
        for (service, url) in &self.fault_admin {
            all.push((format!("fault_admin.{service}"), url.clone()));
        }
        for (key, token) in [
            ("proxy_api_token", &self.proxy_api_token),
            ("fault_admin_token", &self.fault_admin_token),
        ] {
            if let Some(token) = token {
                all.push((key.to_owned(), token.expose().to_owned()));
            }
        }
        if let Some(project) = &self.docker.project {
            all.push(("docker.project".to_owned(), project.clone()));
        }
        for (label, value) in &self.docker.labels {
            all.push((format!("docker.labels.{label}"), value.clone()));
        }
        if self.docker.service_label != COMPOSE_SERVICE_LABEL {
            all.push((
                "docker.service_label".to_owned(),
                self.docker.service_label.clone(),
            ));
        }
        if self.docker.replica_label != COMPOSE_REPLICA_LABEL {
            all.push((
                "docker.replica_label".to_owned(),
                self.docker.replica_label.clone(),
            ));
        }
        let kubernetes = &self.kubernetes;
        for (key, value) in [
            ("kubernetes.namespace", &kubernetes.namespace),
            ("kubernetes.service_label", &kubernetes.service_label),
            ("kubernetes.context", &kubernetes.context),
            ("kubernetes.url", &kubernetes.url),
        ] {
            if let Some(value) = value {
                all.push((key.to_owned(), value.clone()));
            }
        }
        for (label, value) in &kubernetes.labels {
            all.push((format!("kubernetes.labels.{label}"), value.clone()));
        }
        for (name, value) in &self.vars {
            all.push((format!("vars.{name}"), value.clone()));
        }
        all
    }

    /// The same settings with every URL's password and every token replaced
    /// by `***` ([`redact_passwords`]): what a journal or a dry run shows.
    pub fn redacted(&self) -> Self {
        let redact = |value: &Option<String>| value.as_deref().map(redact_passwords);
        let redact_map = |map: &BTreeMap<String, String>| {
            map.iter()
                .map(|(key, value)| (key.clone(), redact_passwords(value)))
                .collect()
        };
        Self {
            gateway: redact(&self.gateway),
            prometheus: redact(&self.prometheus),
            proxy_api: redact(&self.proxy_api),
            database: redact(&self.database),
            keys: self.keys.clone(),
            fault_admin: redact_map(&self.fault_admin),
            proxy_api_token: self.proxy_api_token.as_ref().map(|_| Secret::hidden()),
            fault_admin_token: self.fault_admin_token.as_ref().map(|_| Secret::hidden()),
            docker: self.docker.clone(),
            kubernetes: KubernetesTarget {
                url: redact(&self.kubernetes.url),
                ..self.kubernetes.clone()
            },
            vars: redact_map(&self.vars),
        }
    }

    /// The value of a `${name}` reference.
    pub fn lookup(&self, name: &str) -> Option<&str> {
        match name {
            "gateway" => self.gateway.as_deref(),
            "prometheus" => self.prometheus.as_deref(),
            "proxy_api" => self.proxy_api.as_deref(),
            "database" => self.database.as_deref(),
            "keys" => self.keys.as_deref(),
            _ => {
                if let Some(service) = name.strip_prefix("fault_admin.") {
                    self.fault_admin.get(service).map(String::as_str)
                } else if let Some(var) = name.strip_prefix("vars.") {
                    self.vars.get(var).map(String::as_str)
                } else {
                    None
                }
            }
        }
    }

    /// The fault admin token to send with a request to `url`: the target's
    /// `fault_admin_token`, when `url` is one of the `fault_admin.*` base
    /// URLs or below one. Any other URL gets none.
    pub fn fault_admin_token_for(&self, url: &str) -> Option<&Secret> {
        let token = self.fault_admin_token.as_ref()?;
        self.fault_admin
            .values()
            .map(|base| base.trim_end_matches('/'))
            .filter(|base| !base.is_empty())
            .any(|base| {
                url.strip_prefix(base)
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with(['/', '?', '#']))
            })
            .then_some(token)
    }

    /// `text` with every `${name}` replaced by its value; a base URL's
    /// trailing `/` is dropped so that `${gateway}/api` stays clean.
    pub fn interpolate(&self, text: &str) -> Result<String, EnvironmentError> {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after
                .find('}')
                .ok_or_else(|| EnvironmentError::Unterminated(text.to_owned()))?;
            let name = after[..end].trim();
            if matches!(name, "proxy_api_token" | "fault_admin_token") {
                return Err(EnvironmentError::Credential {
                    text: text.to_owned(),
                    name: name.to_owned(),
                });
            }
            let value = self
                .lookup(name)
                .ok_or_else(|| EnvironmentError::Undefined {
                    text: text.to_owned(),
                    name: name.to_owned(),
                    hint: format!(
                        "; set it in [target], with --set {name}=..., or with {}{}",
                        ENV_PREFIX,
                        name.to_ascii_uppercase().replace('.', "__")
                    ),
                })?;
            let followed_by_slash = after[end + 1..].starts_with('/');
            out.push_str(if followed_by_slash {
                value.trim_end_matches('/')
            } else {
                value
            });
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }
}

/// A credential (a bearer token): kept whole to send, shown (`Debug`,
/// `Display`) as `***`. Serialised whole, for the ledger, which must send it
/// again to undo a fault; what shows it serialises it hidden
/// ([`Environment`]'s fields, [`Environment::redacted`],
/// `HttpRequest::redacted`).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// What a hidden secret shows.
    pub const HIDDEN: &str = "***";

    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// A secret that holds only `***`: what a redacted copy carries.
    pub fn hidden() -> Self {
        Self(Self::HIDDEN.to_owned())
    }

    /// The value, to send: never to show.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", Self::HIDDEN)
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(Self::HIDDEN)
    }
}

/// Serialises a secret setting as `***`, so that an [`Environment`] (or an
/// experiment) written out never carries a token.
fn serialize_hidden<S: serde::Serializer>(
    value: &Option<Secret>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match value {
        Some(_) => serializer.serialize_str(Secret::HIDDEN),
        None => serializer.serialize_none(),
    }
}

/// A URL that may carry a password (a database's): kept whole, since it is
/// what connects, but shown (`Debug`, `Display`) with the password as `***`.
/// Serialised whole: only the ledger stores it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SecretUrl(String);

impl SecretUrl {
    pub fn new(url: impl Into<String>) -> Self {
        Self(url.into())
    }

    /// The URL, password included: to connect with, never to show.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL with its password as `***`.
    pub fn redacted(&self) -> String {
        redact_passwords(&self.0)
    }
}

impl std::fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.redacted())
    }
}

impl std::fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// `text` with the password of every URL in it replaced by `***`:
/// `postgres://shop:secret@db/shop` → `postgres://shop:***@db/shop`, and a
/// `password=` query parameter (`?password=secret` → `?password=***`).
/// What is not a URL with a password comes back unchanged. For whatever is
/// shown (errors, logs, the journal, a dry run): a URL with a password is
/// kept whole only where it is needed to connect (the plan, the ledger).
pub fn redact_passwords(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("://") {
        let (before, after) = rest.split_at(start + 3);
        out.push_str(before);
        // The URL runs to the next blank or quote; its authority to the
        // path, query or fragment.
        let url_end = after
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '`' | '<' | '>'))
            .unwrap_or(after.len());
        let (url, tail) = after.split_at(url_end);
        let authority_end = url.find(['/', '?', '#']).unwrap_or(url.len());
        let (authority, path) = url.split_at(authority_end);
        match authority.rsplit_once('@') {
            Some((userinfo, host)) => match userinfo.split_once(':') {
                Some((user, _)) => {
                    out.push_str(user);
                    out.push_str(":***@");
                    out.push_str(host);
                }
                None => out.push_str(authority),
            },
            None => out.push_str(authority),
        }
        out.push_str(&redact_password_parameter(path));
        rest = tail;
    }
    out.push_str(rest);
    out
}

/// `path?a=1&password=secret` → `path?a=1&password=***`.
fn redact_password_parameter(path: &str) -> String {
    let Some((before, query)) = path.split_once('?') else {
        return path.to_owned();
    };
    let parameters: Vec<String> = query
        .split('&')
        .map(|parameter| match parameter.split_once('=') {
            Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=***"),
            _ => parameter.to_owned(),
        })
        .collect();
    format!("{before}?{}", parameters.join("&"))
}

/// Every string in `value` passed through [`redact_passwords`].
pub fn redact_json(value: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::String(text) => Value::String(redact_passwords(&text)),
        Value::Array(items) => Value::Array(items.into_iter().map(redact_json).collect()),
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(key, value)| (key, redact_json(value)))
                .collect(),
        ),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_overlay_and_interpolate() {
        let mut base = Environment {
            gateway: Some("http://127.0.0.1:8080/".into()),
            ..Environment::default()
        };
        base.set("fault_admin.orders", "http://o:9100").unwrap();
        let mut overrides = Environment::default();
        overrides.set_assignment("gateway = http://g:1").unwrap();
        overrides
            .set("docker.labels.org.faultline.network", "net-1")
            .unwrap();
        let env = base.overlay(&overrides);
        assert_eq!(env.gateway.as_deref(), Some("http://g:1"));
        assert_eq!(env.docker.labels["org.faultline.network"], "net-1");
        assert_eq!(
            env.interpolate("${gateway}/api?x=${fault_admin.orders}")
                .unwrap(),
            "http://g:1/api?x=http://o:9100"
        );
        let err = env.interpolate("${prometheus}/api").unwrap_err();
        assert!(
            err.to_string().contains("FAULTLINE_TARGET_PROMETHEUS"),
            "{err}"
        );
        assert!(env.interpolate("${gateway").is_err());
        assert!(Environment::default().set("nope", "x").is_err());
    }

    #[test]
    fn passwords_in_urls_are_redacted_and_nothing_else() {
        for (text, shown) in [
            (
                "postgres://shop:hunter2@db:5432/shop",
                "postgres://shop:***@db:5432/shop",
            ),
            (
                "cannot connect to postgres://u:p%40ss@db/x: refused",
                "cannot connect to postgres://u:***@db/x: refused",
            ),
            (
                "postgres://u@db/x?sslmode=disable&password=hunter2",
                "postgres://u@db/x?sslmode=disable&password=***",
            ),
            ("a postgres://db/shop b", "a postgres://db/shop b"),
            ("postgres://shop@db/shop", "postgres://shop@db/shop"),
            (
                "http://127.0.0.1:8080/api/users/@me",
                "http://127.0.0.1:8080/api/users/@me",
            ),
            (
                "\"postgres://a:b@h/1\" and 'postgres://c:d@h/2'",
                "\"postgres://a:***@h/1\" and 'postgres://c:***@h/2'",
            ),
            ("no url at all", "no url at all"),
        ] {
            assert_eq!(redact_passwords(text), shown, "{text}");
        }
        let env = Environment {
            database: Some("postgres://shop:hunter2@db/shop".into()),
            vars: [(
                "replica".to_owned(),
                "postgres://r:hunter2@replica/shop".to_owned(),
            )]
            .into(),
            ..Environment::default()
        };
        let shown = serde_json::to_string(&env.redacted()).unwrap();
        assert!(!shown.contains("hunter2"), "{shown}");
        let json = redact_json(serde_json::json!({"a": ["postgres://u:hunter2@h/d"]}));
        let secret = SecretUrl::new("postgres://u:hunter2@h/d");
        assert_eq!(secret.expose(), "postgres://u:hunter2@h/d");
        assert!(!format!("{secret} {secret:?}").contains("hunter2"));
        assert_eq!(
            serde_json::to_string(&secret).unwrap(),
            "\"postgres://u:hunter2@h/d\"",
            "stored whole, for cleanup"
        );
        assert_eq!(json, serde_json::json!({"a": ["postgres://u:***@h/d"]}));
    }

    #[test]
    fn tokens_are_set_like_the_other_settings_and_never_shown() {
        let env = Environment::from_env_vars([
            (
                "FAULTLINE_TARGET_PROXY_API_TOKEN".into(),
                "proxy-s3cret".into(),
            ),
            (
                "FAULTLINE_TARGET_FAULT_ADMIN_TOKEN".into(),
                "admin-s3cret".into(),
            ),
        ])
        .unwrap();
        assert_eq!(
            env.proxy_api_token.as_ref().map(Secret::expose),
            Some("proxy-s3cret")
        );
        let mut overrides = Environment::default();
        overrides
            .set_assignment("fault_admin_token = admin-2")
            .unwrap();
        let env = env.overlay(&overrides);
        assert_eq!(
            env.fault_admin_token.as_ref().map(Secret::expose),
            Some("admin-2")
        );
        assert_eq!(
            env.proxy_api_token.as_ref().map(Secret::expose),
            Some("proxy-s3cret"),
            "an override without a token keeps the token"
        );
        let shown = format!(
            "{env:?} {} {:?}",
            serde_json::to_string(&env).unwrap(),
            env.redacted().settings()
        );
        for secret in ["proxy-s3cret", "admin-2"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert!(
            env.settings()
                .contains(&("fault_admin_token".to_owned(), "admin-2".to_owned()))
        );
        // Never interpolated.
        let err = env.interpolate("Bearer ${fault_admin_token}").unwrap_err();
        assert!(matches!(err, EnvironmentError::Credential { .. }), "{err}");
        assert!(!err.to_string().contains("admin-2"), "{err}");
        // Read from a [target] table.
        let parsed: Environment = toml::from_str("fault_admin_token = \"t\"").unwrap();
        assert_eq!(
            parsed.fault_admin_token.as_ref().map(Secret::expose),
            Some("t")
        );
    }

    #[test]
    fn the_fault_admin_token_goes_to_fault_admin_urls_only() {
        let mut env = Environment::default();
        env.set("fault_admin.orders", "http://127.0.0.1:9102/")
            .unwrap();
        env.set("fault_admin.catalog", "http://127.0.0.1:9101")
            .unwrap();
        env.set("gateway", "http://127.0.0.1:8080").unwrap();
        assert_eq!(
            env.fault_admin_token_for("http://127.0.0.1:9102/faults"),
            None
        );
        env.set("fault_admin_token", "t").unwrap();
        for url in [
            "http://127.0.0.1:9102/faults",
            "http://127.0.0.1:9102",
            "http://127.0.0.1:9101/faults/latency",
            "http://127.0.0.1:9101?x=1",
        ] {
            assert_eq!(
                env.fault_admin_token_for(url).map(Secret::expose),
                Some("t"),
                "{url}"
            );
        }
        for url in [
            "http://127.0.0.1:8080/api/orders",
            "http://127.0.0.1:91011/faults",
            "http://127.0.0.1:910",
            "http://evil.example/http://127.0.0.1:9101/faults",
        ] {
            assert_eq!(env.fault_admin_token_for(url), None, "{url}");
        }
    }

    #[test]
    fn kubernetes_settings_select_the_platform_like_docker_settings() {
        assert!(!Environment::default().kubernetes.is_selected());
        let env = Environment::from_env_vars([
            (
                "FAULTLINE_TARGET_KUBERNETES__NAMESPACE".into(),
                "faultline".into(),
            ),
            (
                "FAULTLINE_TARGET_KUBERNETES__LABELS__TIER".into(),
                "backend".into(),
            ),
        ])
        .unwrap();
        assert!(env.kubernetes.is_selected());
        assert_eq!(env.kubernetes.namespace.as_deref(), Some("faultline"));
        assert_eq!(env.kubernetes.labels["tier"], "backend");
        assert_eq!(env.kubernetes.service_label(), KUBERNETES_SERVICE_LABEL);
        let mut overrides = Environment::default();
        overrides
            .set_assignment("kubernetes.service_label = app")
            .unwrap();
        overrides
            .set_assignment("kubernetes.url = http://127.0.0.1:1")
            .unwrap();
        overrides
            .set_assignment("kubernetes.context = kind-faultline")
            .unwrap();
        let env = env.overlay(&overrides);
        assert_eq!(env.kubernetes.service_label(), "app");
        assert_eq!(env.kubernetes.namespace.as_deref(), Some("faultline"));
        let settings = env.settings();
        for key in [
            "kubernetes.namespace",
            "kubernetes.service_label",
            "kubernetes.context",
            "kubernetes.url",
            "kubernetes.labels.tier",
        ] {
            assert!(
                settings.iter().any(|(k, _)| k == key),
                "{key}: {settings:?}"
            );
        }
        let err = Environment::default()
            .set("kubernetes.nope", "x")
            .unwrap_err();
        assert!(err.to_string().contains("kubernetes.namespace"), "{err}");
        assert!(
            Environment::default()
                .set("kubernetes.labels.", "x")
                .is_err()
        );
        let parsed: Environment =
            toml::from_str("[kubernetes]\nnamespace = \"shop\"\nservice_label = \"app\"").unwrap();
        assert_eq!(parsed.kubernetes.namespace.as_deref(), Some("shop"));
        assert!(toml::from_str::<Environment>("[kubernetes]\nnamspace = \"x\"").is_err());
    }

    #[test]
    fn env_vars_use_double_underscore_for_dots() {
        let env = Environment::from_env_vars([
            ("FAULTLINE_TARGET_PROMETHEUS".into(), "http://p".into()),
            (
                "FAULTLINE_TARGET_FAULT_ADMIN__ORDERS".into(),
                "http://o".into(),
            ),
            ("UNRELATED".into(), "x".into()),
        ])
        .unwrap();
        assert_eq!(env.prometheus.as_deref(), Some("http://p"));
        assert_eq!(env.fault_admin["orders"], "http://o");
    }
}
