//! The Docker backend of [`Platform`], through the Docker Engine API (bollard).
//!
//! Selectors resolve against container labels: compose's
//! `com.docker.compose.service` and `com.docker.compose.container-number` by
//! default (both compose v1 and v2 set them), or whichever label keys the
//! [`DockerTarget`] names, so that a test harness can label its own containers.
//! Every lookup is narrowed to the target's project and scope labels.

use std::collections::{BTreeMap, HashMap};

use bollard::Docker;
use bollard::errors::Error as BollardError;
use bollard::exec::StartExecResults;
use bollard::models::{
    ContainerCreateBody, ContainerUpdateBody, EndpointSettings, ExecConfig, HostConfig,
    NetworkConnectRequest, NetworkDisconnectRequest,
};
use bollard::query_parameters::{
    InspectContainerOptions, KillContainerOptionsBuilder, ListContainersOptionsBuilder,
    LogsOptionsBuilder, RemoveContainerOptionsBuilder, RestartContainerOptionsBuilder,
    StartContainerOptions, StopContainerOptionsBuilder,
};
use futures::StreamExt;

use super::{
    ContainerAction, EXEC_TIMEOUT, Limits, Platform, PlatformError, Selector, TargetRef,
    TargetStatus,
};
use crate::environment::{COMPOSE_PROJECT_LABEL, COMPOSE_REPLICA_LABEL, DockerTarget};

/// Containers on a Docker engine.
#[derive(Debug, Clone)]
pub struct DockerPlatform {
    docker: Docker,
    target: DockerTarget,
}

fn unreachable(err: impl std::fmt::Display) -> PlatformError {
    PlatformError::Unreachable {
        platform: "docker",
        reason: err.to_string(),
    }
}

/// The HTTP status of an engine error answer.
fn status_of(err: &BollardError) -> Option<u16> {
    match err {
        BollardError::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

impl DockerPlatform {
    /// Whether the container runs a Swarm service's task.
    async fn is_swarm_task(&self, target: &TargetRef) -> bool {
        self.docker
            .inspect_container(&target.id, None::<InspectContainerOptions>)
            .await
            .ok()
            .and_then(|inspect| inspect.config)
            .and_then(|config| config.labels)
            .is_some_and(|labels| labels.contains_key(SWARM_TASK_LABEL))
    }

    /// Connects as the docker CLI would (`DOCKER_HOST`, else the local socket).
    pub fn connect(target: DockerTarget) -> Result<Self, PlatformError> {
        let docker = Docker::connect_with_defaults().map_err(unreachable)?;
        Ok(Self::with_client(docker, target))
    }

    /// Uses an existing client (e.g. testcontainers' `docker_client_instance()`).
    pub fn with_client(docker: Docker, target: DockerTarget) -> Self {
        Self { docker, target }
    }

    /// The engine client.
    pub fn client(&self) -> &Docker {
        &self.docker
    }

    fn label_filters(&self, selector: &Selector) -> Vec<String> {
        let mut labels: BTreeMap<&str, &str> = self
            .target
            .labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        // An empty project (set to clear the experiment's default) means any.
        if let Some(project) = self.target.project.as_deref().filter(|p| !p.is_empty()) {
            labels.insert(COMPOSE_PROJECT_LABEL, project);
        }
        for (key, value) in &selector.labels {
            labels.insert(key, value);
        }
        if let Some(service) = &selector.service {
            labels.insert(&self.target.service_label, service);
        }
        labels
            .into_iter()
            .map(|(key, value)| format!("{key}={value}"))
            .collect()
    }

    /// Runs `command` in the container, collecting its output, and fails
    /// unless it exits 0 within `timeout`. On a timeout the command may go on
    /// running in the container: the engine cannot stop an exec.
    async fn exec(
        &self,
        target: &TargetRef,
        action: &ContainerAction,
        command: &[String],
        user: Option<&str>,
        timeout: std::time::Duration,
    ) -> Result<(), PlatformError> {
        let failed = |reason: String| PlatformError::Action {
            action: action.to_string(),
            target: target.name.clone(),
            reason,
        };
        let config = ExecConfig {
            cmd: Some(command.to_vec()),
            user: user.map(str::to_owned),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            ..ExecConfig::default()
        };
        let run = async {
            let exec = self
                .docker
                .create_exec(&target.id, config)
                .await
                .map_err(|err| failed(err.to_string()))?;
            let mut output = String::new();
            match self
                .docker
                .start_exec(&exec.id, None)
                .await
                .map_err(|err| failed(err.to_string()))?
            {
                StartExecResults::Attached {
                    output: mut stream, ..
                } => {
                    while let Some(chunk) = stream.next().await {
                        output.push_str(&chunk.map_err(|err| failed(err.to_string()))?.to_string());
                    }
                }
                StartExecResults::Detached => {}
            }
            // The output ends when the process does; the engine records its
            // exit code a moment later.
            loop {
                let inspect = self
                    .docker
                    .inspect_exec(&exec.id)
                    .await
                    .map_err(|err| failed(err.to_string()))?;
                if inspect.running != Some(true) {
                    return Ok::<_, PlatformError>((inspect.exit_code, output));
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        };
        let (exit_code, output) = tokio::time::timeout(timeout, run)
            .await
            .map_err(|_| failed(format!("still running after {timeout:?}")))??;
        match exit_code {
            Some(0) => Ok(()),
            code => Err(failed(format!(
                "exited {}: {}",
                code.map_or_else(|| "with no code".to_owned(), |c| c.to_string()),
                tail(&output, 400)
            ))),
        }
    }

    /// Runs the packet filter in a short-lived container that shares the
    /// target's network namespace (so the target needs no extra capability
    /// and no iptables of its own), waits for it, and removes it.
    async fn sidecar(
        &self,
        target: &TargetRef,
        action: &ContainerAction,
        image: &str,
        script: &str,
        peers: &[String],
    ) -> Result<(), PlatformError> {
        let failed = |reason: String| PlatformError::Action {
            action: action.to_string(),
            target: target.name.clone(),
            reason,
        };
        if let Some(bad) = peers
            .iter()
            .find(|peer| peer.parse::<std::net::IpAddr>().is_err())
        {
            return Err(failed(format!("{bad:?} is not an IP address")));
        }
        let body = ContainerCreateBody {
            image: Some(image.to_owned()),
            entrypoint: Some(vec![
                "sh".to_owned(),
                "-c".to_owned(),
                script.to_owned(),
                "faultline-partition".to_owned(),
            ]),
            cmd: Some(peers.to_vec()),
            user: Some("0".to_owned()),
            labels: Some(HashMap::from([(
                SIDECAR_LABEL.to_owned(),
                target.name.clone(),
            )])),
            host_config: Some(HostConfig {
                network_mode: Some(format!("container:{}", target.id)),
                cap_add: Some(vec!["NET_ADMIN".to_owned()]),
                ..HostConfig::default()
            }),
            ..ContainerCreateBody::default()
        };
        let created = self
            .docker
            .create_container(None, body)
            .await
            .map_err(|err| {
                failed(format!(
                    "cannot create the packet filter container from {image}: {err}"
                ))
            })?;
        let outcome = async {
            self.docker
                .start_container(&created.id, None::<StartContainerOptions>)
                .await
                .map_err(|err| failed(err.to_string()))?;
            let mut wait = self.docker.wait_container(&created.id, None);
            let waited = tokio::time::timeout(EXEC_TIMEOUT, wait.next())
                .await
                .map_err(|_| {
                    failed(format!(
                        "the packet filter still runs after {EXEC_TIMEOUT:?}"
                    ))
                })?;
            let code = match waited {
                Some(Ok(response)) => response.status_code,
                Some(Err(BollardError::DockerContainerWaitError { code, .. })) => code,
                Some(Err(err)) => return Err(failed(err.to_string())),
                None => -1,
            };
            if code == 0 {
                Ok(())
            } else {
                Err(failed(format!("the packet filter exited {code}")))
            }
        }
        .await;
        let outcome = match outcome {
            Err(PlatformError::Action {
                action,
                target,
                reason,
            }) => {
                let logs = self.logs(&created.id).await;
                Err(PlatformError::Action {
                    action,
                    target,
                    reason: if logs.is_empty() {
                        reason
                    } else {
                        format!("{reason}: {logs}")
                    },
                })
            }
            other => other,
        };
        let remove = RemoveContainerOptionsBuilder::new().force(true).build();
        // Best effort: a leftover filter container holds nothing once exited.
        let _ = self
            .docker
            .remove_container(&created.id, Some(remove))
            .await;
        outcome
    }

    /// The end of a container's output, for error messages.
    async fn logs(&self, id: &str) -> String {
        let options = LogsOptionsBuilder::new().stdout(true).stderr(true).build();
        let mut stream = self.docker.logs(id, Some(options));
        let mut output = String::new();
        while let Some(Ok(chunk)) = stream.next().await {
            output.push_str(&chunk.to_string());
        }
        tail(&output, 400).to_owned()
    }

    fn action_error(
        action: &ContainerAction,
        target: &TargetRef,
        err: &BollardError,
    ) -> PlatformError {
        PlatformError::Action {
            action: action.to_string(),
            target: target.name.clone(),
            reason: err.to_string(),
        }
    }
}

/// Why Docker refuses `scale`.
const SCALE_ON_DOCKER: &str = "compose and Swarm containers have no replica count the engine \
     changes; kill or stop some replicas instead (action = \"kill\" or \"stop\" with \
     target.replica), or run the experiment against Kubernetes \
     (--set kubernetes.namespace=...)";

/// The label Swarm puts on the container of each of a service's tasks.
pub const SWARM_TASK_LABEL: &str = "com.docker.swarm.task.id";

/// The label naming a Swarm task: `<service>.<slot>.<task id>`.
pub const SWARM_TASK_NAME_LABEL: &str = "com.docker.swarm.task.name";

/// The replica number of a container without the target's replica label:
/// compose's container number (a scaled service's replicas), else a Swarm
/// task's slot.
fn replica_by_orchestrator(labels: &HashMap<String, String>) -> Option<u32> {
    labels
        .get(COMPOSE_REPLICA_LABEL)
        .and_then(|n| n.parse().ok())
        .or_else(|| swarm_slot(labels))
}

/// A Swarm task's slot (its replica number, from 1), from its task name; a
/// global service's tasks are named by node instead and have none.
fn swarm_slot(labels: &HashMap<String, String>) -> Option<u32> {
    let name = labels.get(SWARM_TASK_NAME_LABEL)?;
    let mut parts = name.rsplitn(3, '.');
    let (_id, slot) = (parts.next()?, parts.next()?);
    parts.next()?;
    slot.parse().ok()
}

/// The label on the packet filter containers, naming the container they
/// filter for.
pub const SIDECAR_LABEL: &str = "org.faultline.packet-filter-for";

/// Drops everything to and from each address given as an argument, once
/// (`-C` first, so that running it twice adds nothing).
const PARTITION_SCRIPT: &str = r#"set -e
command -v iptables >/dev/null || { echo "this image has no iptables" >&2; exit 127; }
for ip in "$@"; do
  iptables -w -C INPUT -s "$ip" -j DROP 2>/dev/null || iptables -w -I INPUT -s "$ip" -j DROP
  iptables -w -C OUTPUT -d "$ip" -j DROP 2>/dev/null || iptables -w -I OUTPUT -d "$ip" -j DROP
done"#;

/// Removes every rule [`PARTITION_SCRIPT`] adds (none left is fine).
const HEAL_SCRIPT: &str = r#"command -v iptables >/dev/null || { echo "this image has no iptables" >&2; exit 127; }
for ip in "$@"; do
  while iptables -w -D INPUT -s "$ip" -j DROP 2>/dev/null; do :; done
  while iptables -w -D OUTPUT -d "$ip" -j DROP 2>/dev/null; do :; done
done"#;

/// The last `max` bytes of `text` (on a character boundary), trimmed.
fn tail(text: &str, max: usize) -> &str {
    let mut start = text.len().saturating_sub(max);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    text[start..].trim()
}

#[async_trait::async_trait]
impl Platform for DockerPlatform {
    fn kind(&self) -> &'static str {
        "docker"
    }

    fn supports(&self, op: &str, selector: &Selector) -> Result<(), PlatformError> {
        if op == "scale" {
            return Err(PlatformError::Refused {
                action: op.to_owned(),
                target: selector.to_string(),
                platform: "docker",
                reason: SCALE_ON_DOCKER.to_owned(),
            });
        }
        Ok(())
    }

    async fn resolve(&self, selector: &Selector) -> Result<Vec<TargetRef>, PlatformError> {
        selector
            .validate()
            .map_err(PlatformError::InvalidSelector)?;
        let mut filters: HashMap<String, Vec<String>> = HashMap::new();
        let labels = self.label_filters(selector);
        if !labels.is_empty() {
            filters.insert("label".to_owned(), labels);
        }
        if let Some(name) = &selector.name {
            filters.insert("name".to_owned(), vec![name.clone()]);
        }
        let options = ListContainersOptionsBuilder::new()
            .all(true)
            .filters(&filters)
            .build();
        let containers = self
            .docker
            .list_containers(Some(options))
            .await
            .map_err(unreachable)?;
        let mut found: Vec<(u32, TargetRef)> = containers
            .into_iter()
            .filter_map(|summary| {
                let id = summary.id?;
                let name = summary
                    .names
                    .unwrap_or_default()
                    .into_iter()
                    .next()
                    .unwrap_or_default()
                    .trim_start_matches('/')
                    .to_owned();
                // The engine's name filter matches substrings; keep exact names.
                if selector.name.as_ref().is_some_and(|wanted| *wanted != name) {
                    return None;
                }
                let labels = summary.labels.unwrap_or_default();
                let replica = labels
                    .get(&self.target.replica_label)
                    .and_then(|n| n.parse::<u32>().ok())
                    .or_else(|| replica_by_orchestrator(&labels));
                if let Some(wanted) = selector.replica
                    && replica != Some(wanted)
                {
                    return None;
                }
                Some((replica.unwrap_or(0), TargetRef { id, name }))
            })
            .collect();
        if found.is_empty() {
            return Err(PlatformError::NoMatch {
                selector: selector.to_string(),
            });
        }
        found.sort_by(|a, b| (a.0, &a.1.name).cmp(&(b.0, &b.1.name)));
        Ok(found.into_iter().map(|(_, target)| target).collect())
    }

    async fn apply(
        &self,
        target: &TargetRef,
        action: &ContainerAction,
    ) -> Result<(), PlatformError> {
        let id = target.id.as_str();
        let timeout = |t: &Option<u64>| t.map(|s| i32::try_from(s).unwrap_or(i32::MAX));
        let result = match action {
            ContainerAction::Kill { signal } => {
                let options = KillContainerOptionsBuilder::new().signal(signal).build();
                self.docker.kill_container(id, Some(options)).await
            }
            ContainerAction::Stop { timeout_s } => {
                let mut options = StopContainerOptionsBuilder::new();
                if let Some(t) = timeout(timeout_s) {
                    options = options.t(t);
                }
                self.docker.stop_container(id, Some(options.build())).await
            }
            ContainerAction::Start => {
                self.docker
                    .start_container(id, None::<StartContainerOptions>)
                    .await
            }
            ContainerAction::Pause => self.docker.pause_container(id).await,
            ContainerAction::Unpause => self.docker.unpause_container(id).await,
            ContainerAction::Restart { timeout_s } => {
                let mut options = RestartContainerOptionsBuilder::new();
                if let Some(t) = timeout(timeout_s) {
                    options = options.t(t);
                }
                self.docker
                    .restart_container(id, Some(options.build()))
                    .await
            }
            ContainerAction::Disconnect { network } => {
                let request = NetworkDisconnectRequest {
                    container: id.to_owned(),
                    force: Some(true),
                };
                self.docker.disconnect_network(network, request).await
            }
            ContainerAction::Exec {
                command,
                user,
                timeout_s,
            } => {
                let limit = timeout_s.map_or(EXEC_TIMEOUT, std::time::Duration::from_secs);
                return self
                    .exec(target, action, command, user.as_deref(), limit)
                    .await;
            }
            ContainerAction::Update { limits } => {
                let body = ContainerUpdateBody {
                    cpu_quota: limits.cpu_quota,
                    cpu_period: limits.cpu_period,
                    nano_cpus: limits.nano_cpus,
                    memory: limits.memory,
                    memory_swap: limits.memory_swap,
                    ..ContainerUpdateBody::default()
                };
                self.docker.update_container(id, body).await
            }
            ContainerAction::Partition { peers, image } => {
                return self
                    .sidecar(target, action, image, PARTITION_SCRIPT, peers)
                    .await;
            }
            ContainerAction::Heal { peers, image } => {
                return self
                    .sidecar(target, action, image, HEAL_SCRIPT, peers)
                    .await;
            }
            ContainerAction::Scale { .. } => {
                return Err(PlatformError::Refused {
                    action: action.to_string(),
                    target: target.name.clone(),
                    platform: "docker",
                    reason: SCALE_ON_DOCKER.to_owned(),
                });
            }
            ContainerAction::Connect { network, aliases } => {
                let request = NetworkConnectRequest {
                    container: id.to_owned(),
                    endpoint_config: Some(EndpointSettings {
                        aliases: (!aliases.is_empty()).then(|| aliases.clone()),
                        ..EndpointSettings::default()
                    }),
                };
                self.docker.connect_network(network, request).await
            }
        };
        match result {
            Ok(()) => Ok(()),
            // 304: already started / already stopped.
            Err(err) if status_of(&err) == Some(304) => Ok(()),
            Err(err) => Err(Self::action_error(action, target, &err)),
        }
    }

    async fn ensure(
        &self,
        target: &TargetRef,
        action: &ContainerAction,
    ) -> Result<(), PlatformError> {
        let status = self.status(target).await?;
        if matches!(action, ContainerAction::Start)
            && !status.running
            && self.is_swarm_task(target).await
        {
            // Swarm replaces a task whose container stopped with a new task;
            // the old container started by hand would be a replica Swarm
            // does not know of. The orchestrator is the undo.
            tracing::info!(target = %target.name, "a Swarm task's container is not started again: Swarm replaces the task");
            return Ok(());
        }
        let needed = match action {
            ContainerAction::Start => !status.running,
            ContainerAction::Unpause => status.paused,
            ContainerAction::Pause => !status.paused,
            ContainerAction::Stop { .. } | ContainerAction::Kill { .. } => status.running,
            ContainerAction::Connect { network, .. } => !status.networks.contains_key(network),
            ContainerAction::Disconnect { network } => status.networks.contains_key(network),
            ContainerAction::Restart { .. }
            | ContainerAction::Exec { .. }
            | ContainerAction::Update { .. }
            | ContainerAction::Partition { .. }
            | ContainerAction::Heal { .. }
            | ContainerAction::Scale { .. } => true,
        };
        if !needed {
            return Ok(());
        }
        // A paused container must be unpaused before it can be started or stopped.
        if status.paused
            && matches!(
                action,
                ContainerAction::Start
                    | ContainerAction::Stop { .. }
                    | ContainerAction::Kill { .. }
            )
        {
            self.apply(target, &ContainerAction::Unpause).await?;
        }
        self.apply(target, action).await
    }

    async fn status(&self, target: &TargetRef) -> Result<TargetStatus, PlatformError> {
        let inspect = self
            .docker
            .inspect_container(&target.id, None::<InspectContainerOptions>)
            .await
            .map_err(|err| PlatformError::Action {
                action: "inspect".to_owned(),
                target: target.name.clone(),
                reason: err.to_string(),
            })?;
        let state = inspect.state.unwrap_or_default();
        let short_id: String = target.id.chars().take(12).collect();
        let host = inspect.host_config.unwrap_or_default();
        let limits = Limits {
            cpu_quota: host.cpu_quota,
            cpu_period: host.cpu_period,
            nano_cpus: host.nano_cpus,
            memory: host.memory,
            memory_swap: host.memory_swap,
        };
        let image = inspect
            .config
            .and_then(|config| config.image)
            .unwrap_or_default();
        let endpoints = inspect
            .network_settings
            .and_then(|settings| settings.networks)
            .unwrap_or_default();
        let addresses = endpoints
            .iter()
            .filter_map(|(name, endpoint)| {
                let ip = endpoint.ip_address.clone().filter(|ip| !ip.is_empty())?;
                Some((name.clone(), ip))
            })
            .collect();
        let networks = endpoints
            .into_iter()
            .map(|(name, endpoint)| {
                // The engine adds the short container id as an alias by itself.
                let aliases = endpoint
                    .aliases
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|alias| *alias != short_id)
                    .collect();
                (name, aliases)
            })
            .collect();
        Ok(TargetStatus {
            state: state.status.map(|s| s.to_string()).unwrap_or_default(),
            running: state.running.unwrap_or(false),
            paused: state.paused.unwrap_or(false),
            exit_code: state.exit_code,
            networks,
            addresses,
            limits,
            image,
            replicas: None,
            replaced_by: Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_swarm_task_is_numbered_by_its_slot() {
        let labels =
            |name: &str| HashMap::from([(SWARM_TASK_NAME_LABEL.to_owned(), name.to_owned())]);
        assert_eq!(
            swarm_slot(&labels("fl_orders.2.l9kpn0r4t756qmz5g8lqdej24")),
            Some(2)
        );
        assert_eq!(swarm_slot(&labels("a.b_orders.12.x")), Some(12));
        assert_eq!(
            swarm_slot(&labels("fl_agent.qznpe2z82vtcs87r4kion3bi9.x")),
            None
        );
        assert_eq!(swarm_slot(&labels("nodots")), None);
        assert_eq!(swarm_slot(&HashMap::new()), None);
    }

    #[test]
    fn a_scaled_compose_service_is_numbered_by_its_container_number() {
        let compose = HashMap::from([(COMPOSE_REPLICA_LABEL.to_owned(), "3".to_owned())]);
        assert_eq!(replica_by_orchestrator(&compose), Some(3));
        let swarm = HashMap::from([(SWARM_TASK_NAME_LABEL.to_owned(), "s_orders.2.x".to_owned())]);
        assert_eq!(replica_by_orchestrator(&swarm), Some(2));
    }
}
