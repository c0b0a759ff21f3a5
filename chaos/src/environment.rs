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

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Compose v1/v2 label naming a container's service.
pub const COMPOSE_SERVICE_LABEL: &str = "com.docker.compose.service";
/// Compose label holding a container's replica number (1-based).
pub const COMPOSE_REPLICA_LABEL: &str = "com.docker.compose.container-number";
/// Compose label holding the project name.
pub const COMPOSE_PROJECT_LABEL: &str = "com.docker.compose.project";

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
    /// Fault admin API base URL per service, e.g. `orders = "http://127.0.0.1:9100"`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub fault_admin: BTreeMap<String, String>,
    /// How container targets are found.
    #[serde(default, skip_serializing_if = "DockerTarget::is_default")]
    pub docker: DockerTarget,
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

/// A `--set` key or an environment variable that does not name a setting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvironmentError {
    #[error(
        "unknown target setting {0:?} (known: gateway, prometheus, proxy_api, database, \
         fault_admin.<service>, docker.project, docker.labels.<label>, docker.service_label, \
         docker.replica_label, vars.<name>)"
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
        self.fault_admin.extend(overrides.fault_admin.clone());
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
        self
    }

    /// Sets one value by its dotted key (`prometheus`, `fault_admin.orders`,
    /// `docker.labels.org.faultline.network`, `vars.rate`).
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), EnvironmentError> {
        let value = value.to_owned();
        let unknown = || EnvironmentError::UnknownKey(key.to_owned());
        match key {
            "gateway" => self.gateway = Some(value),
            "prometheus" => self.prometheus = Some(value),
            "proxy_api" => self.proxy_api = Some(value),
            "database" => self.database = Some(value),
            "docker.project" => self.docker.project = Some(value),
            "docker.service_label" => self.docker.service_label = value,
            "docker.replica_label" => self.docker.replica_label = value,
            _ => {
                let (map, name) = if let Some(name) = key.strip_prefix("fault_admin.") {
                    (&mut self.fault_admin, name)
                } else if let Some(name) = key.strip_prefix("docker.labels.") {
                    (&mut self.docker.labels, name)
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
        ] {
            if let Some(value) = value {
                all.push((key.to_owned(), value.clone()));
            }
        }
        for (service, url) in &self.fault_admin {
            all.push((format!("fault_admin.{service}"), url.clone()));
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
        for (name, value) in &self.vars {
            all.push((format!("vars.{name}"), value.clone()));
        }
        all
    }

    /// The value of a `${name}` reference.
    pub fn lookup(&self, name: &str) -> Option<&str> {
        match name {
            "gateway" => self.gateway.as_deref(),
            "prometheus" => self.prometheus.as_deref(),
            "proxy_api" => self.proxy_api.as_deref(),
            "database" => self.database.as_deref(),
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
