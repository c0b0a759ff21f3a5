//! Container actions against real throwaway containers (Docker and the local
//! image `faultline-local/base:bookworm`, built by `compose/build-images`).
//!
//! Each test starts its own `sleep infinity` containers, labelled as compose
//! would label replicas of a service, on a private network. In nextest's
//! `containers` test group.

#[path = "../common/eventually.rs"]
mod polling;
mod sql;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use faultline_chaos::actions::container::ContainerInjection;
use faultline_chaos::actions::{Fault, Services};
use faultline_chaos::environment::{
    COMPOSE_PROJECT_LABEL, COMPOSE_REPLICA_LABEL, COMPOSE_SERVICE_LABEL, DockerTarget, Environment,
};
use faultline_chaos::experiment::{ContainerFault, ContainerOp, Experiment};
use faultline_chaos::journal::{Status, Verdict};
use faultline_chaos::platform::docker::DockerPlatform;
use faultline_chaos::platform::{ContainerAction, Platform, PlatformError, Selector, TargetRef};
use faultline_chaos::runner::{Bindings, LedgerDir};
use testcontainers::core::client::docker_client_instance;
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, GenericImage, ImageExt};

const IMAGE: (&str, &str) = ("faultline-local/base", "bookworm");

/// Generous bound for anything the engine does.
const BOUND: Duration = Duration::from_secs(60);

/// The Docker client, once Docker and the local image `name:tag` are
/// there; else an error saying what to do: these tests never skip.
async fn require_image((name, tag): (&str, &str)) -> anyhow::Result<bollard::Docker> {
    let docker = docker_client_instance().await.context(
        "Docker is needed for these tests: start the engine and check that this user may use it",
    )?;
    if docker
        .inspect_image(&format!("{name}:{tag}"))
        .await
        .is_err()
    {
        anyhow::bail!("the local image {name}:{tag} is missing: run compose/build-images first");
    }
    Ok(docker)
}

/// A compose-like project: `replicas` containers of service `victim`.
struct Project {
    name: String,
    network: String,
    containers: Vec<ContainerAsync<GenericImage>>,
    platform: DockerPlatform,
}

impl Project {
    async fn start(test: &str, replicas: u32) -> anyhow::Result<Self> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let name = format!("flchaos{}", &id[..10]);
        let network = format!("{name}_default");
        let docker = require_image(IMAGE).await?;
        let mut containers = Vec::new();
        for replica in 1..=replicas {
            let labels = [
                ("org.faultline.test".to_owned(), test.to_owned()),
                (COMPOSE_PROJECT_LABEL.to_owned(), name.clone()),
                (COMPOSE_SERVICE_LABEL.to_owned(), "victim".to_owned()),
                (COMPOSE_REPLICA_LABEL.to_owned(), replica.to_string()),
            ];
            let container = GenericImage::new(IMAGE.0, IMAGE.1)
                .with_cmd(["sleep", "infinity"])
                .with_network(network.clone())
                .with_container_name(format!("{name}_victim_{replica}"))
                .with_labels(labels)
                .with_startup_timeout(BOUND)
                .start()
                .await
                .context("the container starts")?;
            containers.push(container);
        }
        let platform = DockerPlatform::with_client(
            docker,
            DockerTarget {
                project: Some(name.clone()),
                ..DockerTarget::default()
            },
        );
        Ok(Self {
            name,
            network,
            containers,
            platform,
        })
    }

    fn replica(&self, replica: u32) -> Selector {
        Selector::replica("victim", replica)
    }

    async fn target(&self, replica: u32) -> anyhow::Result<TargetRef> {
        let mut targets = self.platform.resolve(&self.replica(replica)).await?;
        anyhow::ensure!(targets.len() == 1, "one container per replica: {targets:?}");
        Ok(targets.remove(0))
    }

    async fn state(
        &self,
        target: &TargetRef,
    ) -> anyhow::Result<faultline_chaos::platform::TargetStatus> {
        Ok(self.platform.status(target).await?)
    }
}

#[tokio::test]
async fn selectors_resolve_by_service_replica_name_and_label() {
    let project = Project::start("selectors_resolve", 2).await.unwrap();
    let all = project
        .platform
        .resolve(&Selector {
            service: Some("victim".into()),
            ..Selector::default()
        })
        .await
        .unwrap();
    let names: Vec<_> = all.iter().map(|t| t.name.clone()).collect();
    assert_eq!(
        names,
        [
            format!("{}_victim_1", project.name),
            format!("{}_victim_2", project.name)
        ]
    );
    assert_eq!(
        project.target(2).await.unwrap().name,
        format!("{}_victim_2", project.name)
    );
    assert_eq!(
        project.containers[1].id(),
        project.target(2).await.unwrap().id
    );

    let by_name = project
        .platform
        .resolve(&Selector::name(format!("{}_victim_1", project.name)))
        .await
        .unwrap();
    assert_eq!(by_name.len(), 1, "the name filter matches exactly");

    let by_label = project
        .platform
        .resolve(&Selector {
            labels: BTreeMap::from([(COMPOSE_REPLICA_LABEL.to_owned(), "1".to_owned())]),
            ..Selector::default()
        })
        .await
        .unwrap();
    assert_eq!(by_label, by_name);

    // A harness-style target: no compose project, scoped by a label instead.
    let scoped = DockerPlatform::with_client(
        project.platform.client().clone(),
        DockerTarget {
            project: Some(String::new()),
            labels: BTreeMap::from([(COMPOSE_PROJECT_LABEL.to_owned(), project.name.clone())]),
            ..DockerTarget::default()
        },
    );
    assert_eq!(
        scoped.resolve(&project.replica(2)).await.unwrap(),
        vec![project.target(2).await.unwrap()]
    );

    let missing = project
        .platform
        .resolve(&project.replica(3))
        .await
        .unwrap_err();
    assert!(
        matches!(missing, PlatformError::NoMatch { .. }),
        "{missing}"
    );
    assert!(missing.to_string().contains("victim#3"));
}

#[tokio::test]
async fn kill_pause_stop_restart_and_their_undo() {
    let project = Project::start("kill_pause_stop", 1).await.unwrap();
    let target = project.target(1).await.unwrap();
    let platform = &project.platform;
    assert!(project.state(&target).await.unwrap().running);

    platform
        .apply(&target, &ContainerAction::Pause)
        .await
        .unwrap();
    let state = project.state(&target).await.unwrap();
    assert!(state.paused, "{state:?}");
    assert_eq!(state.state, "paused");
    platform
        .ensure(&target, &ContainerAction::Unpause)
        .await
        .unwrap();
    platform
        .ensure(&target, &ContainerAction::Unpause)
        .await
        .unwrap();
    assert!(
        !project.state(&target).await.unwrap().paused,
        "unpaused, twice is harmless"
    );

    platform
        .apply(
            &target,
            &ContainerAction::Kill {
                signal: "SIGKILL".into(),
            },
        )
        .await
        .unwrap();
    let state = project.state(&target).await.unwrap();
    assert!(!state.running);
    assert_eq!(state.exit_code, Some(137));
    platform
        .ensure(&target, &ContainerAction::Start)
        .await
        .unwrap();
    platform
        .ensure(&target, &ContainerAction::Start)
        .await
        .unwrap();
    assert!(
        project.state(&target).await.unwrap().running,
        "started, twice is harmless"
    );

    platform
        .apply(&target, &ContainerAction::stop(Some(Duration::ZERO)))
        .await
        .unwrap();
    assert!(!project.state(&target).await.unwrap().running);
    platform
        .apply(&target, &ContainerAction::Start)
        .await
        .unwrap();
    assert!(project.state(&target).await.unwrap().running);

    platform
        .apply(&target, &ContainerAction::Restart { timeout_s: Some(0) })
        .await
        .unwrap();
    assert!(project.state(&target).await.unwrap().running);

    // A paused container is unpaused before it is stopped.
    platform
        .apply(&target, &ContainerAction::Pause)
        .await
        .unwrap();
    platform
        .ensure(&target, &ContainerAction::stop(Some(Duration::ZERO)))
        .await
        .unwrap();
    let state = project.state(&target).await.unwrap();
    assert!(!state.running && !state.paused, "{state:?}");
}

/// `command` as an exec action with no user and the default timeout.
fn exec(command: &[&str]) -> ContainerAction {
    ContainerAction::Exec {
        command: command.iter().map(|arg| (*arg).to_owned()).collect(),
        user: None,
        timeout_s: None,
    }
}

#[tokio::test]
async fn an_exec_fault_runs_its_command_and_its_undo() {
    let project = Project::start("exec", 1).await.unwrap();
    let target = project.target(1).await.unwrap();
    let platform = &project.platform;
    let exists = exec(&["test", "-e", "/tmp/faultline-broken"]);
    let services = Services::new(DockerTarget::default())
        .unwrap()
        .with_platform(Arc::new(platform.clone()));
    let fault = ContainerInjection::new(
        services,
        ContainerFault {
            command: ["sh", "-c", "echo broken > /tmp/faultline-broken"]
                .map(str::to_owned)
                .to_vec(),
            undo: ["rm", "-f", "/tmp/faultline-broken"]
                .map(str::to_owned)
                .to_vec(),
            user: Some("root".to_owned()),
            ..ContainerFault::new(ContainerOp::Exec, project.replica(1))
        },
    );
    let prepared = fault.prepare().await.unwrap();
    assert_eq!(
        prepared.undo.len(),
        1,
        "the undo command is recorded: {prepared:?}"
    );
    assert!(
        platform.apply(&target, &exists).await.is_err(),
        "nothing is injected while preparing"
    );
    fault.inject(&prepared).await.unwrap();
    platform.apply(&target, &exists).await.unwrap();
    fault.revert(&prepared).await.unwrap();
    assert!(platform.apply(&target, &exists).await.is_err(), "undone");
    // Reverting twice is harmless.
    fault.revert(&prepared).await.unwrap();

    // A command that fails says how, with its output.
    let failed = platform
        .apply(
            &target,
            &exec(&["sh", "-c", "echo no such thing >&2; exit 3"]),
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(
        failed.contains("exited 3") && failed.contains("no such thing"),
        "{failed}"
    );
    // So does one that does not finish in time.
    let slow = ContainerAction::Exec {
        command: ["sleep", "30"].map(str::to_owned).to_vec(),
        user: None,
        timeout_s: Some(1),
    };
    let timed_out = platform
        .apply(&target, &slow)
        .await
        .unwrap_err()
        .to_string();
    assert!(timed_out.contains("still running"), "{timed_out}");
}

#[tokio::test]
async fn network_disconnect_and_reconnect_keep_aliases() {
    let project = Project::start("network_disconnect", 1).await.unwrap();
    let target = project.target(1).await.unwrap();
    let platform = &project.platform;
    let before = project.state(&target).await.unwrap();
    assert!(before.networks.contains_key(&project.network), "{before:?}");

    // As a fault: disconnect from every network, undo reconnects.
    let services = Services::new(DockerTarget::default())
        .unwrap()
        .with_platform(Arc::new(platform.clone()));
    let fault = ContainerInjection::action(services, ContainerOp::Disconnect, project.replica(1));
    let prepared = fault.prepare().await.unwrap();
    assert_eq!(prepared.undo.len(), 1, "{prepared:?}");
    fault.inject(&prepared).await.unwrap();
    let during = project.state(&target).await.unwrap();
    assert!(
        !during.networks.contains_key(&project.network),
        "{during:?}"
    );
    fault.revert(&prepared).await.unwrap();
    let after = project.state(&target).await.unwrap();
    assert_eq!(
        after.networks.get(&project.network),
        before.networks.get(&project.network)
    );

    // Reverting twice is harmless.
    fault.revert(&prepared).await.unwrap();
}

/// A shell command that passes when `command`'s output is `expected`.
fn output_is(command: &str, expected: &str) -> ContainerAction {
    exec(&[
        "sh",
        "-c",
        &format!("test \"$({command})\" = \"{expected}\""),
    ])
}

/// The CFS quota in the container's cgroup (v1 or v2), as `max`/-1 or microseconds.
const CPU_QUOTA: &str =
    "cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us 2>/dev/null || cut -d' ' -f1 /sys/fs/cgroup/cpu.max";

#[tokio::test]
async fn a_limit_squeezes_cpu_and_memory_and_gives_them_back() {
    let project = Project::start("limit", 1).await.unwrap();
    let target = project.target(1).await.unwrap();
    let platform = &project.platform;
    let before = project.state(&target).await.unwrap().limits;
    let services = Services::new(DockerTarget::default())
        .unwrap()
        .with_platform(Arc::new(platform.clone()));
    let fault = ContainerInjection::new(
        services,
        ContainerFault {
            cpus: Some(0.2),
            memory_mib: Some(64),
            ..ContainerFault::new(ContainerOp::Limit, project.replica(1))
        },
    );
    let prepared = fault.prepare().await.unwrap();
    assert_eq!(prepared.undo.len(), 1, "{prepared:?}");
    assert_eq!(
        project.state(&target).await.unwrap().limits,
        before,
        "nothing changes while preparing"
    );

    fault.inject(&prepared).await.unwrap();
    let squeezed = project.state(&target).await.unwrap().limits;
    assert_eq!(squeezed.cpu_quota, Some(20_000), "{squeezed:?}");
    assert_eq!(squeezed.memory, Some(64 * 1024 * 1024), "{squeezed:?}");
    // The kernel enforces it, not only the engine's record.
    platform
        .apply(&target, &output_is(CPU_QUOTA, "20000"))
        .await
        .unwrap();

    fault.revert(&prepared).await.unwrap();
    let restored = project.state(&target).await.unwrap().limits;
    assert!(
        restored.cpu_quota.unwrap_or(0) <= 0,
        "no CPU quota again: {restored:?}"
    );
    assert!(
        restored.memory.unwrap_or(0) >= 1 << 40 || restored.memory.unwrap_or(0) == 0,
        "no practical memory limit again: {restored:?}"
    );
    platform
        .apply(
            &target,
            &exec(&[
                "sh",
                "-c",
                &format!("q=$({CPU_QUOTA}); test \"$q\" = -1 || test \"$q\" = max"),
            ]),
        )
        .await
        .unwrap();
    // Reverting twice is harmless.
    fault.revert(&prepared).await.unwrap();
}

/// Passes when a TCP connection from the container to `ip` is refused (the
/// peer is reachable, nothing listens on port 9), fails when it hangs (the
/// packets are dropped).
fn reachable(ip: &str) -> ContainerAction {
    exec(&[
        "bash",
        "-c",
        &format!("timeout 3 bash -c 'exec 3<>/dev/tcp/{ip}/9'; test $? -eq 1"),
    ])
}

/// Passes when that connection hangs until the timeout: the packets are dropped.
fn cut_off(ip: &str) -> ContainerAction {
    exec(&[
        "bash",
        "-c",
        &format!("timeout 3 bash -c 'exec 3<>/dev/tcp/{ip}/9'; test $? -eq 124"),
    ])
}

#[tokio::test]
async fn a_partition_cuts_one_replica_from_one_peer_and_not_from_the_others() {
    let project = Project::start("partition", 3).await.unwrap();
    let platform = &project.platform;
    let mut ips = Vec::new();
    let mut targets = Vec::new();
    for replica in 1..=3 {
        let target = project.target(replica).await.unwrap();
        let status = project.state(&target).await.unwrap();
        ips.push(status.addresses[&project.network].clone());
        targets.push(target);
    }
    let services = Services::new(DockerTarget::default())
        .unwrap()
        .with_platform(Arc::new(platform.clone()));
    let fault = ContainerInjection::new(
        services,
        ContainerFault {
            peer: Some(project.replica(2)),
            ..ContainerFault::new(ContainerOp::Partition, project.replica(1))
        },
    );
    let prepared = fault.prepare().await.unwrap();
    assert_eq!(prepared.undo.len(), 1, "{prepared:?}");
    platform
        .apply(&targets[0], &reachable(&ips[1]))
        .await
        .unwrap();

    fault.inject(&prepared).await.unwrap();
    // Both directions between 1 and 2 are cut...
    platform
        .apply(&targets[0], &cut_off(&ips[1]))
        .await
        .unwrap();
    platform
        .apply(&targets[1], &cut_off(&ips[0]))
        .await
        .unwrap();
    // ...and nothing else: 1 ↔ 3 and 2 ↔ 3 still reach each other.
    platform
        .apply(&targets[0], &reachable(&ips[2]))
        .await
        .unwrap();
    platform
        .apply(&targets[2], &reachable(&ips[0]))
        .await
        .unwrap();
    platform
        .apply(&targets[1], &reachable(&ips[2]))
        .await
        .unwrap();
    // The packet filter ran beside the replica and is gone.
    let leftovers = platform
        .client()
        .list_containers(Some(
            bollard::query_parameters::ListContainersOptionsBuilder::new()
                .all(true)
                .filters(&std::collections::HashMap::from([(
                    "label".to_owned(),
                    vec![faultline_chaos::platform::docker::SIDECAR_LABEL.to_owned()],
                )]))
                .build(),
        ))
        .await
        .unwrap()
        .into_iter()
        .filter(|c| {
            c.labels
                .as_ref()
                .and_then(|l| l.get(faultline_chaos::platform::docker::SIDECAR_LABEL))
                == Some(&targets[0].name)
        })
        .count();
    assert_eq!(leftovers, 0, "no packet filter container is left behind");

    fault.revert(&prepared).await.unwrap();
    platform
        .apply(&targets[0], &reachable(&ips[1]))
        .await
        .unwrap();
    platform
        .apply(&targets[1], &reachable(&ips[0]))
        .await
        .unwrap();
    // Healing twice is harmless.
    fault.revert(&prepared).await.unwrap();
}

#[tokio::test]
async fn an_experiment_pauses_a_replica_and_rolls_it_back() {
    let project = Project::start("experiment_pause", 2).await.unwrap();
    let text = r#"
title = "pause replica 2"

[settings]
probe_interval = "100ms"

[method]
duration = "1s"

[[method.faults]]
name = "pause victim 2"
type = "container"
action = "pause"
target = { service = "victim", replica = 2 }
"#;
    let experiment = Experiment::parse(text, "inline.toml").unwrap();
    let mut environment = Environment::default();
    environment.set("docker.project", &project.name).unwrap();
    let ledger = tempfile::tempdir().unwrap();
    let (events, mut receiver) = tokio::sync::mpsc::unbounded_channel();
    let run = faultline_chaos::run_experiment(
        experiment,
        Bindings {
            environment,
            ledger: LedgerDir::At(ledger.path().to_owned()),
            events: Some(events),
            ..Bindings::default()
        },
    );
    let target = project.target(2).await.unwrap();
    let platform = project.platform.clone();
    let watcher = async {
        // While the fault is in, replica 2 is paused and the ledger says so.
        while let Some(event) = receiver.recv().await {
            if let faultline_chaos::RunEvent::Activity(activity) = event
                && activity.activity.step == "inject"
            {
                let state = platform.status(&target).await.unwrap();
                let ledger = faultline_chaos::ledger::read_all(ledger.path()).unwrap();
                return (state.paused, ledger.len());
            }
        }
        (false, 0)
    };
    let (journal, (paused_during, ledger_entries)) =
        tokio::time::timeout(BOUND, async { tokio::join!(run, watcher) })
            .await
            .unwrap();
    let journal = journal.unwrap();
    assert_eq!(journal.verdict, Verdict::Passed, "{:?}", journal.reasons);
    assert_eq!(journal.status, Status::Completed);
    assert!(paused_during);
    assert_eq!(ledger_entries, 1);
    assert!(!project.state(&target).await.unwrap().paused, "rolled back");
    assert!(
        project
            .state(&project.target(1).await.unwrap())
            .await
            .unwrap()
            .running
    );
    assert!(
        faultline_chaos::ledger::read_all(ledger.path())
            .unwrap()
            .is_empty()
    );
}
