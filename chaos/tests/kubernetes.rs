//! The Kubernetes target against an in-process fake of the API server (no
//! cluster, no Docker): the shipped kill-replica experiment with only its
//! target changed, scale and its undo through the ledger and cleanup, and
//! the checks that refuse what a platform cannot do.
// Test helpers outside #[test] functions may fail loudly too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../src/platform/kubernetes/fake.rs"]
mod fake;

use std::path::Path;

use fake::{FakeApiServer, FakeKubernetes};
use faultline_chaos::actions::container::ContainerInjection;
use faultline_chaos::actions::{Fault, Services};
use faultline_chaos::environment::{DockerTarget, Environment, KubernetesTarget};
use faultline_chaos::experiment::{ContainerFault, ContainerOp, Experiment, FaultKind};
use faultline_chaos::ledger::{Ledger, read_all};
use faultline_chaos::platform::Selector;
use faultline_chaos::platform::docker::DockerPlatform;
use faultline_chaos::runner::compile;
use faultline_chaos::undo::UndoRecord;
use faultline_chaos::{Bindings, cleanup};
use serde_json::json;

fn kubernetes(server: &FakeApiServer) -> KubernetesTarget {
    KubernetesTarget {
        namespace: Some("faultline".to_owned()),
        url: Some(server.url.clone()),
        ..KubernetesTarget::default()
    }
}

fn services(server: &FakeApiServer) -> Services {
    Services::new(DockerTarget::default())
        .unwrap()
        .with_kubernetes(kubernetes(server))
}

fn service(name: &str) -> Selector {
    Selector {
        service: Some(name.to_owned()),
        ..Selector::default()
    }
}

#[tokio::test]
async fn kill_replica_runs_against_kubernetes_with_only_the_target_changed() {
    let server = FakeKubernetes::new("faultline")
        .deployment("orders", 3)
        .start()
        .await;
    let pods = server.pods("orders");
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("experiments/kill-replica.toml");
    // What `--set kubernetes.namespace=faultline --set kubernetes.url=...`
    // (or FAULTLINE_TARGET_KUBERNETES__*) does.
    let mut overrides = Environment::default();
    overrides
        .set_assignment("kubernetes.namespace=faultline")
        .unwrap();
    overrides
        .set("kubernetes.service_label", "app.kubernetes.io/name")
        .unwrap();
    overrides.set("kubernetes.url", &server.url).unwrap();
    let mut experiment = Experiment::load(&path).unwrap();
    // The load needs the demo's key directory; the container fault does not.
    experiment.load = None;
    let bindings = Bindings {
        environment: overrides,
        ..Bindings::default()
    };
    let plan = compile(&experiment, Some(&path), &bindings).unwrap();
    assert!(plan.environment.kubernetes.is_selected());
    let fault = &plan.faults[0].fault;
    let prepared = fault.prepare().await.unwrap();
    assert!(
        prepared.undo.is_empty(),
        "the ReplicaSet brings the pod back"
    );
    assert_eq!(
        prepared.detail["steps"][0]["target"]["name"],
        json!(pods[1])
    );
    fault.inject(&prepared).await.unwrap();
    let deletes = server.requests_with("DELETE");
    assert_eq!(deletes.len(), 1);
    assert_eq!(
        deletes[0].path,
        format!("/api/v1/namespaces/faultline/pods/{}", pods[1])
    );
    assert_eq!(deletes[0].body["gracePeriodSeconds"], 0);
    let effect = fault.effect(&prepared).await.unwrap();
    assert_eq!(effect.effective, Some(true), "{}", effect.evidence);
    let evidence = &effect.evidence[0];
    assert_eq!(evidence["state"], "deleted");
    assert_eq!(evidence["replaced_by"], json!([server.pods("orders")[2]]));
    fault.revert(&prepared).await.unwrap();
    // The rollback (start every orders replica) has nothing to do.
    for rollback in &plan.rollbacks {
        rollback.action.run().await.unwrap();
    }
    assert_eq!(server.requests_with("DELETE").len(), 1);
    assert_eq!(server.pods("orders").len(), 3);
}

#[tokio::test]
async fn scale_is_undone_by_cleanup_from_the_ledger_after_a_crash() {
    let server = FakeKubernetes::new("faultline")
        .deployment("orders", 3)
        .start()
        .await;
    let spec = ContainerFault {
        replicas: Some(0),
        ..ContainerFault::new(ContainerOp::Scale, service("orders"))
    };
    let fault = ContainerInjection::new(services(&server), spec);
    let prepared = fault.prepare().await.unwrap();
    let [UndoRecord::Container { action, target, .. }] = prepared.undo.as_slice() else {
        panic!("one container undo: {:?}", prepared.undo);
    };
    assert_eq!(target.name, "deployment/orders");
    assert_eq!(action.to_string(), "scale to 3 replicas");
    // The run writes the ledger, injects, and dies.
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::new(Some(dir.path()), "run-k8s", "scale orders");
    ledger.record("orders to zero", &prepared.undo).unwrap();
    fault.inject(&prepared).await.unwrap();
    assert_eq!(server.replicas("orders"), Some(0));
    assert!(server.pods("orders").is_empty());
    let effect = fault.effect(&prepared).await.unwrap();
    assert_eq!(effect.effective, Some(true), "{}", effect.evidence);
    assert_eq!(
        effect.evidence[0]["replicas"],
        json!({"desired": 0, "current": 0})
    );
    // `faultline cleanup`: another process, Docker's default services, only
    // the ledger file to go by.
    let mut runs = read_all(dir.path()).unwrap();
    assert_eq!(runs.len(), 1);
    let (file, run) = runs.remove(0);
    assert_eq!(run.faults["orders to zero"], prepared.undo);
    let stored = std::fs::read_to_string(&file).unwrap();
    assert!(stored.contains("\"platform\": \"kubernetes\""), "{stored}");
    let cleanup_services = Services::new(DockerTarget::default()).unwrap();
    let done = cleanup::revert_run(&file, run, &cleanup_services)
        .await
        .unwrap();
    assert_eq!(done.failures(), 0, "{:?}", done.steps);
    assert!(done.removed);
    assert_eq!(server.replicas("orders"), Some(3));
    assert_eq!(server.pods("orders").len(), 3);
    // Undoing twice is harmless.
    fault.revert(&prepared).await.unwrap();
    assert_eq!(server.replicas("orders"), Some(3));
}

#[tokio::test]
async fn pause_and_stop_are_refused_before_anything_is_resolved() {
    let server = FakeKubernetes::new("faultline")
        .deployment("orders", 2)
        .start()
        .await;
    for (op, says) in [
        (ContainerOp::Pause, "cannot freeze"),
        (ContainerOp::Stop, "action = \"scale\""),
        (ContainerOp::Disconnect, "Docker only"),
    ] {
        let fault =
            ContainerInjection::action(services(&server), op, Selector::replica("orders", 1));
        let err = fault.prepare().await.unwrap_err().to_string();
        assert!(err.contains(says) && err.contains("kubernetes"), "{err}");
    }
    assert!(server.requests().is_empty(), "{:?}", server.requests());
}

#[tokio::test]
async fn an_unknown_service_names_the_selector_and_the_namespace() {
    let server = FakeKubernetes::new("faultline")
        .deployment("orders", 2)
        .start()
        .await;
    let fault = ContainerInjection::action(
        services(&server),
        ContainerOp::Kill,
        Selector::replica("ordres", 2),
    );
    let err = fault.prepare().await.unwrap_err().to_string();
    assert!(
        err.contains("ordres#2") && err.contains("namespace \"faultline\""),
        "{err}"
    );
}

#[tokio::test]
async fn docker_refuses_scale_with_a_clear_error() {
    let docker =
        bollard::Docker::connect_with_http("http://127.0.0.1:9", 1, bollard::API_DEFAULT_VERSION)
            .unwrap();
    let services = Services::new(DockerTarget::default())
        .unwrap()
        .with_platform(std::sync::Arc::new(DockerPlatform::with_client(
            docker,
            DockerTarget::default(),
        )));
    let spec = ContainerFault {
        replicas: Some(1),
        ..ContainerFault::new(ContainerOp::Scale, service("orders"))
    };
    let err = ContainerInjection::new(services, spec)
        .prepare()
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("scale on orders (all replicas) is not possible on docker"),
        "{err}"
    );
    assert!(err.contains("kubernetes.namespace"), "{err}");
}

#[test]
fn scale_and_replicas_are_checked_with_file_line_and_field() {
    let experiment = |fault: &str| {
        format!(
            "title = \"t\"\n\n[method]\n[[method.faults]]\nname = \"f\"\ntype = \"container\"\n{fault}\nat = \"1s\"\n"
        )
    };
    for (fault, field, says) in [
        (
            "action = \"kill\"\ntarget = { service = \"orders\" }\nreplicas = 1",
            "method.faults[0].replicas",
            "only applies to action = \"scale\"",
        ),
        (
            "action = \"scale\"\ntarget = { service = \"orders\" }",
            "method.faults[0].replicas",
            "scale needs replicas",
        ),
        (
            "action = \"scale\"\nreplicas = 1\ntarget = { service = \"orders\", replica = 2 }",
            "method.faults[0].target.replica",
            "drop target.replica",
        ),
    ] {
        let text = experiment(fault);
        let err = Experiment::parse(&text, "scale.toml").unwrap_err();
        assert_eq!(err.field(), Some(field), "{err}");
        let shown = err.to_string();
        assert!(
            shown.contains("scale.toml:") && shown.contains(says),
            "{shown}"
        );
        assert!(err.location().is_some_and(|(line, _)| line >= 4), "{shown}");
    }
    let ok = Experiment::parse(
        &experiment("action = \"scale\"\nreplicas = 0\ntarget = { service = \"orders\" }"),
        "scale.toml",
    )
    .unwrap();
    let FaultKind::Container(fault) = &ok.method.faults[0].kind else {
        panic!("a container fault");
    };
    assert_eq!(fault.replicas, Some(0));
}
