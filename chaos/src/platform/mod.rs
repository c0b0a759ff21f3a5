//! Where containers live: the [`Platform`] trait and its backends.
//!
//! A [`Selector`] names containers the way an experiment thinks of them (the
//! second replica of `orders`, everything labelled `role=catalog`, a container
//! name); a platform resolves it to [`TargetRef`]s and applies
//! [`ContainerAction`]s. Docker ([`docker::DockerPlatform`]: compose or
//! Swarm containers) and Kubernetes ([`kubernetes::KubernetesPlatform`]:
//! pods, and the replicas of their Deployment or StatefulSet) implement it;
//! what a platform cannot do it refuses with [`PlatformError::Refused`],
//! before anything changes.

pub mod docker;
pub mod kubernetes;

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::environment::KubernetesTarget;

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
    /// 1-based replica number: compose's container number; on Kubernetes
    /// the Nth pod of the service (StatefulSet pods by ordinal, others
    /// oldest first).
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
    /// Changes the container's CPU and memory limits (each field that is
    /// set), live, through the engine's update call.
    Update {
        #[serde(flatten)]
        limits: Limits,
    },
    /// Drops every packet between the container and each of `peers` (IP
    /// addresses), in both directions, and nothing else: a partition from
    /// those peers only. `image` runs the packet filter beside the
    /// container, in its network namespace.
    Partition {
        peers: Vec<String>,
        image: String,
    },
    /// Undoes [`ContainerAction::Partition`] (idempotent).
    Heal {
        peers: Vec<String>,
        image: String,
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
    /// Sets a workload's desired replicas (a target from
    /// [`Platform::resolve_workloads`]); undone by another `Scale` to the
    /// count it had. Kubernetes only.
    Scale {
        replicas: u32,
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
            ContainerAction::Update { limits } => write!(f, "limit {limits}"),
            ContainerAction::Partition { peers, .. } => {
                write!(f, "partition from {}", peers.join(", "))
            }
            ContainerAction::Heal { peers, .. } => {
                write!(f, "heal partition from {}", peers.join(", "))
            }
            ContainerAction::Scale { replicas } => write!(f, "scale to {replicas} replicas"),
        }
    }
}

/// A container's CPU and memory limits, in the engine's units; `None` leaves
/// a value as it is. `0` reads as "not set".
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// CPU time per period, in microseconds (the CFS quota); -1: unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_quota: Option<i64>,
    /// The CFS period, in microseconds (Docker's default is 100 000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_period: Option<i64>,
    /// CPUs in billionths (`--cpus`); exclusive with a quota.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nano_cpus: Option<i64>,
    /// Memory limit in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<i64>,
    /// Memory plus swap in bytes; -1: unlimited swap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_swap: Option<i64>,
}

/// The CFS period the engine uses when none is set.
pub const DEFAULT_CPU_PERIOD_US: i64 = 100_000;

/// What a memory limit is raised to when the container had none: the engine
/// cannot remove a memory limit once set, so "none" comes back as one larger
/// than any host (1 TiB).
pub const UNLIMITED_MEMORY: i64 = 1 << 40;

impl Limits {
    /// The limits that squeeze a container with `current` limits to `cpus`
    /// CPUs and `memory` bytes (each optional).
    pub fn squeeze(current: &Limits, cpus: Option<f64>, memory: Option<i64>) -> Limits {
        let mut limits = Limits::default();
        if let Some(cpus) = cpus {
            // The engine refuses a quota on a container created with --cpus.
            if current.nano_cpus.unwrap_or(0) > 0 {
                limits.nano_cpus = Some((cpus * 1e9).round() as i64);
            } else {
                let period = current
                    .cpu_period
                    .filter(|p| *p > 0)
                    .unwrap_or(DEFAULT_CPU_PERIOD_US);
                limits.cpu_period = Some(period);
                limits.cpu_quota = Some(((cpus * period as f64).round() as i64).max(1000));
            }
        }
        if let Some(memory) = memory {
            limits.memory = Some(memory);
            limits.memory_swap = Some(memory);
        }
        limits
    }

    /// The limits that bring back `before` after `applied` was applied.
    pub fn restore(before: &Limits, applied: &Limits) -> Limits {
        let mut limits = Limits::default();
        if applied.nano_cpus.is_some() {
            limits.nano_cpus = before.nano_cpus;
        }
        if applied.cpu_quota.is_some() || applied.cpu_period.is_some() {
            limits.cpu_quota = Some(before.cpu_quota.filter(|q| *q != 0).unwrap_or(-1));
            limits.cpu_period = Some(
                before
                    .cpu_period
                    .filter(|p| *p > 0)
                    .unwrap_or(DEFAULT_CPU_PERIOD_US),
            );
        }
        if applied.memory.is_some() || applied.memory_swap.is_some() {
            // The kernel (cgroup v1) wants memory ≤ memory+swap at every
            // step, and the engine writes the memory first: so the swap limit
            // comes back as a number, never -1 ("unlimited" is one too large
            // to matter, like the memory).
            let memory = before.memory.filter(|m| *m > 0).unwrap_or(UNLIMITED_MEMORY);
            let swap = before
                .memory_swap
                .filter(|s| *s >= memory)
                .unwrap_or(UNLIMITED_MEMORY.saturating_mul(2).max(memory));
            limits.memory = Some(memory);
            limits.memory_swap = Some(swap);
        }
        limits
    }
}

impl fmt::Display for Limits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(nano) = self.nano_cpus {
            parts.push(format!("cpus={:.2}", nano as f64 / 1e9));
        }
        match (self.cpu_quota, self.cpu_period) {
            (Some(q), _) if q < 0 => parts.push("cpus=unlimited".to_owned()),
            (Some(q), p) => parts.push(format!(
                "cpus={:.2}",
                q as f64 / p.filter(|p| *p > 0).unwrap_or(DEFAULT_CPU_PERIOD_US) as f64
            )),
            _ => {}
        }
        if let Some(memory) = self.memory {
            if memory >= UNLIMITED_MEMORY {
                parts.push("memory=unlimited".to_owned());
            } else {
                parts.push(format!("memory={}MiB", memory / (1024 * 1024)));
            }
        }
        f.write_str(&parts.join(" "))
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
    /// Its IPv4 address on each network it is attached to.
    #[serde(default)]
    pub addresses: BTreeMap<String, String>,
    /// Its CPU and memory limits now.
    #[serde(default)]
    pub limits: Limits,
    /// The image it runs.
    #[serde(default)]
    pub image: String,
    /// A workload's replicas (Kubernetes: its scale subresource).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<ReplicaCount>,
    /// The pods that took the place of a deleted one (Kubernetes: new pods
    /// of the same owner since the target was resolved).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replaced_by: Vec<String>,
}

/// A workload's replicas: how many it should have, how many it has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaCount {
    pub desired: u32,
    pub current: u32,
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
    /// The platform cannot do this at all; `reason` says why and what to
    /// do instead. Returned before anything changed.
    #[error("{action} on {target} is not possible on {platform}: {reason}")]
    Refused {
        action: String,
        target: String,
        platform: &'static str,
        reason: String,
    },
    #[error(
        "no pod in namespace {namespace:?} matches {selector} (label selector {labels:?}; \
         {matching} running pods carry those labels)"
    )]
    NoPod {
        selector: String,
        namespace: String,
        labels: String,
        matching: usize,
    },
}

/// A place where containers run.
#[async_trait::async_trait]
pub trait Platform: Send + Sync + fmt::Debug {
    /// `"docker"` or `"kubernetes"`.
    fn kind(&self) -> &'static str;

    /// What another process needs to reach this platform again (`faultline
    /// cleanup` undoing a fault after a crash), stored with each undo
    /// record: Kubernetes' settings. `None`: the defaults do (Docker).
    fn kubernetes_target(&self) -> Option<KubernetesTarget> {
        None
    }

    /// Checks, before anything is resolved or changed, that this platform
    /// can carry out the container fault action `op` (as an experiment
    /// writes it: `"kill"`, `"pause"`, `"scale"`) on `selector`; the error
    /// says why not and what to do instead.
    fn supports(&self, op: &str, selector: &Selector) -> Result<(), PlatformError> {
        let _ = (op, selector);
        Ok(())
    }

    /// The workloads (with a replica count) that own the containers
    /// `selector` names: what `scale` acts on. Only Kubernetes has them.
    async fn resolve_workloads(
        &self,
        selector: &Selector,
    ) -> Result<Vec<TargetRef>, PlatformError> {
        Err(PlatformError::Refused {
            action: "scale".to_owned(),
            target: selector.to_string(),
            platform: self.kind(),
            reason: "its containers belong to no workload with a replica count".to_owned(),
        })
    }

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
            ContainerAction::Update { limits } => {
                let before = self.status(target).await?.limits;
                vec![ContainerAction::Update {
                    limits: Limits::restore(&before, limits),
                }]
            }
            ContainerAction::Partition { peers, image } => vec![ContainerAction::Heal {
                peers: peers.clone(),
                image: image.clone(),
            }],
            ContainerAction::Scale { .. } => match self.status(target).await?.replicas {
                Some(before) => vec![ContainerAction::Scale {
                    replicas: before.desired,
                }],
                None => {
                    return Err(PlatformError::Refused {
                        action: action.to_string(),
                        target: target.name.clone(),
                        platform: self.kind(),
                        reason: "it has no replica count to restore".to_owned(),
                    });
                }
            },
            ContainerAction::Start
            | ContainerAction::Unpause
            | ContainerAction::Restart { .. }
            | ContainerAction::Heal { .. }
            | ContainerAction::Exec { .. } => Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cpu_squeeze_uses_a_quota_and_is_undone_to_unlimited() {
        let before = Limits::default();
        let squeeze = Limits::squeeze(&before, Some(0.25), None);
        assert_eq!(squeeze.cpu_quota, Some(25_000));
        assert_eq!(squeeze.cpu_period, Some(DEFAULT_CPU_PERIOD_US));
        assert_eq!(squeeze.memory, None);
        let restore = Limits::restore(&before, &squeeze);
        assert_eq!(restore.cpu_quota, Some(-1));
        assert_eq!(restore.memory, None);
        assert_eq!(squeeze.to_string(), "cpus=0.25");
        assert_eq!(restore.to_string(), "cpus=unlimited");
    }

    #[test]
    fn a_container_made_with_cpus_is_squeezed_in_nano_cpus_and_gets_them_back() {
        let before = Limits {
            nano_cpus: Some(1_500_000_000),
            ..Limits::default()
        };
        let squeeze = Limits::squeeze(&before, Some(0.1), None);
        assert_eq!(squeeze.nano_cpus, Some(100_000_000));
        assert_eq!(squeeze.cpu_quota, None);
        let restore = Limits::restore(&before, &squeeze);
        assert_eq!(restore.nano_cpus, Some(1_500_000_000));
        assert_eq!(restore.cpu_quota, None);
    }

    #[test]
    fn a_memory_squeeze_allows_no_swap_and_restores_the_old_limit_or_none() {
        let mib = 1024 * 1024;
        let squeeze = Limits::squeeze(&Limits::default(), None, Some(64 * mib));
        assert_eq!(
            (squeeze.memory, squeeze.memory_swap),
            (Some(64 * mib), Some(64 * mib))
        );
        let from_none = Limits::restore(&Limits::default(), &squeeze);
        assert_eq!(
            (from_none.memory, from_none.memory_swap),
            (Some(UNLIMITED_MEMORY), Some(2 * UNLIMITED_MEMORY))
        );
        assert_eq!(from_none.to_string(), "memory=unlimited");
        let before = Limits {
            memory: Some(512 * mib),
            memory_swap: Some(1024 * mib),
            ..Limits::default()
        };
        let restore = Limits::restore(&before, &squeeze);
        assert_eq!(
            (restore.memory, restore.memory_swap),
            (Some(512 * mib), Some(1024 * mib))
        );
        assert_eq!(restore.cpu_quota, None);
    }

    #[test]
    fn scale_round_trips_through_the_ledger_format() {
        let action = ContainerAction::Scale { replicas: 3 };
        let json = serde_json::to_value(&action).expect("serialises");
        assert_eq!(json, serde_json::json!({"op": "scale", "replicas": 3}));
        assert_eq!(
            serde_json::from_value::<ContainerAction>(json).expect("parses"),
            action
        );
        assert_eq!(action.to_string(), "scale to 3 replicas");
    }

    #[test]
    fn limits_round_trip_through_the_ledger_format() {
        let action = ContainerAction::Update {
            limits: Limits::squeeze(&Limits::default(), Some(0.5), Some(1 << 26)),
        };
        let json = serde_json::to_value(&action).expect("serialises");
        assert_eq!(json["op"], "update");
        assert_eq!(json["cpu_quota"], 50_000);
        let back: ContainerAction = serde_json::from_value(json).expect("parses");
        assert_eq!(back, action);
    }
}
