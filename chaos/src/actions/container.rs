//! Container actions (kill, stop/start, pause/unpause, restart, network
//! disconnect/connect, exec, CPU and memory limits, a partition from some
//! peers, a workload's replica count) on the containers a [`Selector`]
//! names, on Docker or Kubernetes; what the platform cannot do it refuses
//! before anything is resolved ([`Platform::supports`]).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{Action, ActionError, Effect, Fault, Prepared, Services, UndoRecord, execute_all};
use crate::experiment::{ContainerFault, ContainerOp};
use crate::platform::{ContainerAction, Limits, Platform, Selector, TargetRef, TargetStatus};

/// One action on one resolved container.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Step {
    target: TargetRef,
    action: ContainerAction,
}

/// A container action as a fault: applied to every container the selector
/// names, and undone (start, unpause, reconnect) when reverted.
#[derive(Debug, Clone)]
pub struct ContainerInjection {
    services: Services,
    spec: ContainerFault,
}

impl ContainerInjection {
    pub fn new(services: Services, spec: ContainerFault) -> Self {
        Self { services, spec }
    }

    /// The same, for callers that build faults in code.
    pub fn action(services: Services, action: ContainerOp, target: Selector) -> Self {
        Self::new(services, ContainerFault::new(action, target))
    }
}

/// `command` as the spec's exec action (its user and timeout).
fn exec(spec: &ContainerFault, command: &[String]) -> ContainerAction {
    ContainerAction::Exec {
        command: command.to_vec(),
        user: spec.user.clone(),
        timeout_s: spec.timeout.map(|t| t.as_secs()),
    }
}

/// Cuts `target` off from the addresses the spec's peers have on the
/// networks they share with it.
async fn partition(
    platform: &dyn Platform,
    spec: &ContainerFault,
    target: &TargetRef,
) -> Result<ContainerAction, ActionError> {
    let Some(peer) = &spec.peer else {
        return Err(ActionError::Config("partition needs a peer".into()));
    };
    let own = platform.status(target).await?;
    let mut peers = Vec::new();
    for other in platform.resolve(peer).await? {
        if other.id == target.id {
            continue;
        }
        let status = platform.status(&other).await?;
        let shared: Vec<String> = status
            .addresses
            .iter()
            .filter(|(network, _)| own.addresses.contains_key(*network))
            .map(|(_, address)| address.clone())
            .collect();
        if shared.is_empty() {
            return Err(ActionError::Config(format!(
                "{} shares no network with {}: nothing to partition",
                other.name, target.name
            )));
        }
        peers.extend(shared);
    }
    if peers.is_empty() {
        return Err(ActionError::Config(format!(
            "the peer {peer} selects only {} itself",
            target.name
        )));
    }
    peers.sort();
    peers.dedup();
    Ok(ContainerAction::Partition {
        peers,
        image: spec.image.clone().unwrap_or(own.image),
    })
}

/// The name of `op` as an experiment writes it (`"kill"`).
fn op_name(op: ContainerOp) -> String {
    serde_json::to_value(op)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// What `spec` acts on: its containers, or, for scale, their workloads;
/// refused first when the platform cannot do the action at all.
async fn targets_of(
    platform: &dyn Platform,
    spec: &ContainerFault,
) -> Result<Vec<TargetRef>, ActionError> {
    platform.supports(&op_name(spec.action), &spec.target)?;
    Ok(if spec.action == ContainerOp::Scale {
        platform.resolve_workloads(&spec.target).await?
    } else {
        platform.resolve(&spec.target).await?
    })
}

/// The platform actions a spec means for one container.
async fn actions_for(
    platform: &dyn Platform,
    spec: &ContainerFault,
    target: &TargetRef,
) -> Result<Vec<ContainerAction>, ActionError> {
    let timeout_s = spec.timeout.map(|t: Duration| t.as_secs());
    Ok(match spec.action {
        ContainerOp::Kill => vec![ContainerAction::Kill {
            signal: spec.signal.clone().unwrap_or_else(|| "SIGKILL".to_owned()),
        }],
        ContainerOp::Stop => vec![ContainerAction::Stop { timeout_s }],
        ContainerOp::Start => vec![ContainerAction::Start],
        ContainerOp::Pause => vec![ContainerAction::Pause],
        ContainerOp::Unpause => vec![ContainerAction::Unpause],
        ContainerOp::Restart => vec![ContainerAction::Restart { timeout_s }],
        ContainerOp::Disconnect => match &spec.network {
            Some(network) => vec![ContainerAction::Disconnect {
                network: network.clone(),
            }],
            None => platform
                .status(target)
                .await?
                .networks
                .into_keys()
                .map(|network| ContainerAction::Disconnect { network })
                .collect(),
        },
        ContainerOp::Exec => vec![exec(spec, &spec.command)],
        ContainerOp::Limit => {
            let current = platform.status(target).await?.limits;
            let memory = spec
                .memory_mib
                .map(|mib| i64::try_from(mib.saturating_mul(1024 * 1024)).unwrap_or(i64::MAX));
            vec![ContainerAction::Update {
                limits: Limits::squeeze(&current, spec.cpus, memory),
            }]
        }
        ContainerOp::Partition => vec![partition(platform, spec, target).await?],
        ContainerOp::Scale => match spec.replicas {
            Some(replicas) => vec![ContainerAction::Scale { replicas }],
            None => return Err(ActionError::Config("scale needs replicas".into())),
        },
        ContainerOp::Connect => match &spec.network {
            Some(network) => vec![ContainerAction::Connect {
                network: network.clone(),
                aliases: Vec::new(),
            }],
            None => {
                return Err(ActionError::Config("connect needs a network".into()));
            }
        },
    })
}

#[async_trait::async_trait]
impl Fault for ContainerInjection {
    fn kind(&self) -> &'static str {
        "container"
    }

    async fn prepare(&self) -> Result<Prepared, ActionError> {
        let platform = self.services.platform()?;
        let targets = targets_of(platform.as_ref(), &self.spec).await?;
        let mut steps = Vec::new();
        let mut undo = Vec::new();
        for target in targets {
            for action in actions_for(platform.as_ref(), &self.spec, &target).await? {
                let mut reverses = platform.plan_undo(&target, &action).await?;
                // An exec's undo is the command the experiment names.
                if matches!(action, ContainerAction::Exec { .. }) && !self.spec.undo.is_empty() {
                    reverses.push(exec(&self.spec, &self.spec.undo));
                }
                for reverse in reverses {
                    undo.push(UndoRecord::Container {
                        platform: platform.kind().to_owned(),
                        target: target.clone(),
                        action: reverse,
                        kubernetes: platform.kubernetes_target(),
                    });
                }
                steps.push(Step {
                    target: target.clone(),
                    action,
                });
            }
        }
        Ok(Prepared {
            undo,
            detail: json!({"selector": self.spec.target, "steps": steps}),
        })
    }

    async fn inject(&self, prepared: &Prepared) -> Result<Value, ActionError> {
        let steps = steps_of(prepared)?;
        let platform = self.services.platform()?;
        let mut done = Vec::new();
        for step in &steps {
            platform.apply(&step.target, &step.action).await?;
            done.push(format!("{}: {}", step.target.name, step.action));
        }
        Ok(json!(done))
    }

    async fn effect(&self, prepared: &Prepared) -> Result<Effect, ActionError> {
        let platform = self.services.platform()?;
        let mut evidence = Vec::new();
        let mut verdicts = Vec::new();
        for step in steps_of(prepared)? {
            let status = platform.status(&step.target).await?;
            let shows = shows_effect(&step.action, &status);
            verdicts.extend(shows);
            let mut seen = json!({
                "container": step.target.name,
                "action": step.action.to_string(),
                "state": status.state,
                "running": status.running,
                "paused": status.paused,
                "networks": status.networks.keys().collect::<Vec<_>>(),
                "limits": status.limits.to_string(),
                "shows_effect": shows,
            });
            // Kubernetes: the pods that replaced a deleted one, a
            // workload's replicas.
            if !status.replaced_by.is_empty() {
                seen["replaced_by"] = json!(status.replaced_by);
            }
            if let Some(replicas) = status.replicas {
                seen["replicas"] = json!(replicas);
            }
            evidence.push(seen);
        }
        let effective = if verdicts.is_empty() {
            None
        } else {
            Some(verdicts.iter().all(|seen| *seen))
        };
        Ok(Effect {
            effective,
            evidence: json!(evidence),
        })
    }

    async fn revert(&self, prepared: &Prepared) -> Result<Value, ActionError> {
        execute_all(&prepared.undo, &self.services).await
    }
}

/// The steps [`ContainerInjection::prepare`] planned.
fn steps_of(prepared: &Prepared) -> Result<Vec<Step>, ActionError> {
    Ok(prepared
        .detail
        .get("steps")
        .cloned()
        .map(serde_json::from_value)
        .transpose()
        .map_err(|err| ActionError::Config(format!("bad prepared steps: {err}")))?
        .unwrap_or_default())
}

/// Whether a container's state shows that `action` took effect; `None` when
/// its state cannot tell (an exec, a partition, a restart).
fn shows_effect(action: &ContainerAction, status: &TargetStatus) -> Option<bool> {
    let applied = |want: Option<i64>, have: Option<i64>| want.is_none() || want == have;
    match action {
        ContainerAction::Kill { .. } | ContainerAction::Stop { .. } => {
            Some(!status.running || status.state == "restarting")
        }
        ContainerAction::Pause => Some(status.paused),
        ContainerAction::Start | ContainerAction::Unpause => Some(status.running && !status.paused),
        ContainerAction::Disconnect { network } => Some(!status.networks.contains_key(network)),
        ContainerAction::Connect { network, .. } => Some(status.networks.contains_key(network)),
        ContainerAction::Update { limits } => Some(
            applied(limits.cpu_quota, status.limits.cpu_quota)
                && applied(limits.nano_cpus, status.limits.nano_cpus)
                && applied(limits.memory, status.limits.memory),
        ),
        ContainerAction::Scale { replicas } => {
            Some(status.replicas.is_some_and(|r| r.desired == *replicas))
        }
        ContainerAction::Restart { .. }
        | ContainerAction::Exec { .. }
        | ContainerAction::Partition { .. }
        | ContainerAction::Heal { .. } => None,
    }
}

/// A container action as a rollback: brings every selected container to the
/// action's state (a no-op where it is there already).
#[derive(Debug, Clone)]
pub struct ContainerRollback {
    services: Services,
    spec: ContainerFault,
}

impl ContainerRollback {
    pub fn new(services: Services, spec: ContainerFault) -> Self {
        Self { services, spec }
    }
}

#[async_trait::async_trait]
impl Action for ContainerRollback {
    fn kind(&self) -> &'static str {
        "container"
    }

    async fn run(&self) -> Result<Value, ActionError> {
        let platform = self.services.platform()?;
        let mut done = Vec::new();
        for target in targets_of(platform.as_ref(), &self.spec).await? {
            for action in actions_for(platform.as_ref(), &self.spec, &target).await? {
                platform.ensure(&target, &action).await?;
                done.push(format!("{}: {action}", target.name));
            }
        }
        Ok(json!(done))
    }
}
