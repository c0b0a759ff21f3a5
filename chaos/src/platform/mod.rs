//! Where containers live: the [`Platform`] trait and its Docker backend.
//!
//! A [`Selector`] names containers the way an experiment thinks of them (the
//! second replica of `orders`, everything labelled `role=catalog`, a container
//! name); a platform resolves it to [`TargetRef`]s and applies
//! [`ContainerAction`]s. Docker ([`docker::DockerPlatform`]) is the backend
//! today; a Kubernetes one (delete a pod, a NetworkPolicy partition) can
//! implement the same trait.

pub mod docker;

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Which containers an action applies to.
///
/// In TOML: `{ service = "orders", replica = 2 }`, `{ service = "catalog" }`
/// (every replica), `{ labels = { "org.faultline.test" = "x" } }` or
/// `{ name = "faultline_orders_2" }`. `labels` may be combined with the others
/// to narrow them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Selector {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// 1-based replica number (compose's container number).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

impl Selector {
    /// Replica `replica` of `service`.
    pub fn replica(service: impl Into<String>, replica: u32) -> Self {
        Self {
            service: Some(service.into()),
            replica: Some(replica),
            ..Self::default()
        }
    }

    /// The container named `name`.
    pub fn name(name: impl Into<String>) -> Self {
        Self {
            name: Some(name.into()),
            ..Self::default()
        }
    }

    /// Checks that the selector selects something definite.
    pub fn validate(&self) -> Result<(), String> {
        if self.service.is_none() && self.name.is_none() && self.labels.is_empty() {
            return Err("a target needs a service, a name or labels".to_owned());
        }
        if self.replica.is_some() && self.service.is_none() {
            return Err("replica needs a service".to_owned());
        }
        if self.replica == Some(0) {
            return Err("replicas are numbered from 1".to_owned());
        }
        Ok(())
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(service) = &self.service {
            parts.push(match self.replica {
                Some(replica) => format!("{service}#{replica}"),
                None => format!("{service} (all replicas)"),
            });
        }
        if let Some(name) = &self.name {
            parts.push(format!("name={name}"));
        }
        for (key, value) in &self.labels {
            parts.push(format!("{key}={value}"));
        }
        f.write_str(&parts.join(", "))
    }
}

/// One resolved container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetRef {
    /// The platform's id (Docker: the container id).
    pub id: String,
    /// A human name (Docker: the container name).
    pub name: String,
}

/// An action on one container. `Connect` carries the aliases the container
/// had on the network, so that reconnecting restores its DNS names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum ContainerAction {
    Kill {
        signal: String,
    },
    Stop {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timeout_s: Option<u64>,
    },
    Start,
    Pause,
    Unpause,
    Restart {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timeout_s: Option<u64>,
    },
    Disconnect {
        network: String,
    },
    Connect {
        network: String,
        #[serde(default)]
        aliases: Vec<String>,
    },
    /// Runs `command` in the container; it must exit 0 within `timeout_s`
    /// (default [`EXEC_TIMEOUT`]).
    Exec {
        command: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        user: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timeout_s: Option<u64>,
    },
}

/// How long an exec may run when its action names no timeout.
pub const EXEC_TIMEOUT: Duration = Duration::from_secs(30);

impl ContainerAction {
    /// `stop` with an optional grace.
    pub fn stop(timeout: Option<Duration>) -> Self {
        ContainerAction::Stop {
            timeout_s: timeout.map(|t| t.as_secs()),
        }
    }
}

impl fmt::Display for ContainerAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ContainerAction::Kill { signal } => write!(f, "kill ({signal})"),
            ContainerAction::Stop { .. } => f.write_str("stop"),
            ContainerAction::Start => f.write_str("start"),
            ContainerAction::Pause => f.write_str("pause"),
            ContainerAction::Unpause => f.write_str("unpause"),
            ContainerAction::Restart { .. } => f.write_str("restart"),
            ContainerAction::Disconnect { network } => write!(f, "disconnect from {network}"),
            ContainerAction::Connect { network, .. } => write!(f, "connect to {network}"),
            ContainerAction::Exec { command, .. } => write!(f, "exec {}", command.join(" ")),
        }
    }
}

/// What a container looks like now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetStatus {
    /// created, running, paused, restarting, removing, exited or dead.
    pub state: String,
    pub running: bool,
    pub paused: bool,
    pub exit_code: Option<i64>,
    /// Networks the container is attached to, with its aliases there.
    pub networks: BTreeMap<String, Vec<String>>,
}

/// Why a platform operation failed.
#[derive(Debug, thiserror::Error)]
pub enum PlatformError {
    #[error("cannot reach {platform}: {reason}")]
    Unreachable {
        platform: &'static str,
        reason: String,
    },
    #[error("no container matches {selector}")]
    NoMatch { selector: String },
    #[error("invalid target: {0}")]
    InvalidSelector(String),
    #[error("{action} on {target}: {reason}")]
    Action {
        action: String,
        target: String,
        reason: String,
    },
    #[error("{0} is not supported by this platform")]
    Unsupported(String),
}

/// A place where containers run.
#[async_trait::async_trait]
pub trait Platform: Send + Sync + fmt::Debug {
    /// `"docker"`, later `"kubernetes"`.
    fn kind(&self) -> &'static str;

    /// The containers `selector` names now (at least one, else an error).
    async fn resolve(&self, selector: &Selector) -> Result<Vec<TargetRef>, PlatformError>;

    /// Applies `action` to one container.
    async fn apply(
        &self,
        target: &TargetRef,
        action: &ContainerAction,
    ) -> Result<(), PlatformError>;

    /// Brings the container to the state `action` leads to, doing nothing if
    /// it is there already (used to undo: start a running container, unpause
    /// one that is not paused, reconnect one that is connected are no-ops).
    /// An exec always runs.
    async fn ensure(
        &self,
        target: &TargetRef,
        action: &ContainerAction,
    ) -> Result<(), PlatformError>;

    /// The container's state.
    async fn status(&self, target: &TargetRef) -> Result<TargetStatus, PlatformError>;

    /// The actions that undo `action` on `target`, planned before it is
    /// applied (disconnect plans a reconnect with the current aliases). An
    /// exec has no undo here: the experiment names its undo command.
    async fn plan_undo(
        &self,
        target: &TargetRef,
        action: &ContainerAction,
    ) -> Result<Vec<ContainerAction>, PlatformError> {
        Ok(match action {
            ContainerAction::Kill { .. } | ContainerAction::Stop { .. } => {
                vec![ContainerAction::Start]
            }
            ContainerAction::Pause => vec![ContainerAction::Unpause],
            ContainerAction::Disconnect { network } => {
                let status = self.status(target).await?;
                let aliases = status.networks.get(network).cloned().unwrap_or_default();
                vec![ContainerAction::Connect {
                    network: network.clone(),
                    aliases,
                }]
            }
            ContainerAction::Connect { network, .. } => vec![ContainerAction::Disconnect {
                network: network.clone(),
            }],
            ContainerAction::Start
            | ContainerAction::Unpause
            | ContainerAction::Restart { .. }
            | ContainerAction::Exec { .. } => Vec::new(),
        })
    }
}
