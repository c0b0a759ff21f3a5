//! How a [`Selector`] picks pods: the label selector it means, the order
//! that numbers replicas, and what a kill's signal means for a deletion.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use super::Selector;
use crate::environment::KubernetesTarget;

/// The label a StatefulSet puts on its pods (Kubernetes 1.28 and later):
/// the pod's ordinal.
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";

/// The equality-based label selector (`a=b,c=d`) of the pods `selector`
/// names: the target's labels, the selector's, and the service label.
pub fn label_selector(target: &KubernetesTarget, selector: &Selector) -> String {
    let mut labels: BTreeMap<&str, &str> = target
        .labels
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    for (key, value) in &selector.labels {
        labels.insert(key, value);
    }
    if let Some(service) = &selector.service {
        labels.insert(target.service_label(), service);
    }
    labels
        .into_iter()
        .map(|(key, value)| format!("{key}={value}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The pods that count as replicas (not being deleted), in replica order:
/// a StatefulSet's by ordinal (its pods are named and numbered, and keep
/// their number when replaced), the others oldest first, then by name (a
/// ReplicaSet's pod names are random, so their order means nothing; age
/// is stable while no pod is replaced, and a replacement comes last).
pub fn replica_order(pods: Vec<Pod>) -> Vec<Pod> {
    let mut live: Vec<Pod> = pods
        .into_iter()
        .filter(|pod| pod.metadata.deletion_timestamp.is_none())
        .collect();
    live.sort_by(|a, b| sort_key(a).cmp(&sort_key(b)));
    live
}

fn sort_key(pod: &Pod) -> (u32, Option<k8s_openapi::jiff::Timestamp>, &str) {
    let ordinal = pod
        .metadata
        .labels
        .as_ref()
        .and_then(|labels| labels.get(POD_INDEX_LABEL))
        .and_then(|index| index.parse().ok())
        .unwrap_or(u32::MAX);
    let created = pod.metadata.creation_timestamp.as_ref().map(|t| t.0);
    (
        ordinal,
        created,
        pod.metadata.name.as_deref().unwrap_or_default(),
    )
}

/// The controller that owns an object (its `controller: true` owner, else
/// its first).
pub fn controller_of(metadata: &ObjectMeta) -> Option<&OwnerReference> {
    let owners = metadata.owner_references.as_deref().unwrap_or_default();
    owners
        .iter()
        .find(|owner| owner.controller == Some(true))
        .or_else(|| owners.first())
}

/// What deleting a pod does for a kill's signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deletion {
    /// `gracePeriodSeconds: 0`: the kubelet kills the containers at once
    /// (SIGKILL).
    Immediate,
    /// The pod's own grace period: SIGTERM, then SIGKILL when it ends.
    Graceful,
}

impl Deletion {
    /// The deletion a kill with `signal` means (`SIGKILL`, `KILL`, `9`;
    /// `SIGTERM`, `TERM`, `15`); `None` for any other signal, which
    /// Kubernetes cannot send.
    pub fn for_signal(signal: &str) -> Option<Self> {
        let upper = signal.trim().to_ascii_uppercase();
        match upper.strip_prefix("SIG").unwrap_or(&upper) {
            "KILL" | "9" => Some(Deletion::Immediate),
            "TERM" | "15" => Some(Deletion::Graceful),
            _ => None,
        }
    }

    /// The grace period to send (`None`: the pod's own).
    pub fn grace_period(self) -> Option<u32> {
        match self {
            Deletion::Immediate => Some(0),
            Deletion::Graceful => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn pod(name: &str, created_s: i64, index: Option<u32>, deleting: bool) -> Pod {
        let at = |s: i64| Time(k8s_openapi::jiff::Timestamp::from_second(s).unwrap());
        let mut labels = BTreeMap::new();
        if let Some(index) = index {
            labels.insert(POD_INDEX_LABEL.to_owned(), index.to_string());
        }
        Pod {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                creation_timestamp: Some(at(created_s)),
                deletion_timestamp: deleting.then(|| at(created_s + 60)),
                labels: Some(labels),
                ..ObjectMeta::default()
            },
            ..Pod::default()
        }
    }

    fn names(pods: &[Pod]) -> Vec<&str> {
        pods.iter()
            .map(|p| p.metadata.name.as_deref().unwrap())
            .collect()
    }

    #[test]
    fn replicas_are_numbered_oldest_first_and_terminating_pods_do_not_count() {
        let ordered = replica_order(vec![
            pod("orders-abc-zzzzz", 10, None, false),
            pod("orders-abc-aaaaa", 30, None, false),
            pod("orders-abc-mmmmm", 20, None, false),
            pod("orders-abc-bbbbb", 5, None, true),
            pod("orders-abc-ccccc", 20, None, false),
        ]);
        assert_eq!(
            names(&ordered),
            [
                "orders-abc-zzzzz",
                "orders-abc-ccccc",
                "orders-abc-mmmmm",
                "orders-abc-aaaaa"
            ]
        );
    }

    #[test]
    fn statefulset_pods_are_numbered_by_ordinal_whatever_their_age() {
        let ordered = replica_order(vec![
            pod("db-10", 1, Some(10), false),
            pod("db-2", 50, Some(2), false),
            pod("db-0", 40, Some(0), false),
        ]);
        assert_eq!(names(&ordered), ["db-0", "db-2", "db-10"]);
    }

    #[test]
    fn the_label_selector_joins_target_selector_and_service_labels() {
        let target = KubernetesTarget {
            labels: [(
                "app.kubernetes.io/part-of".to_owned(),
                "faultline".to_owned(),
            )]
            .into(),
            ..KubernetesTarget::default()
        };
        let selector = Selector {
            labels: [("tier".to_owned(), "backend".to_owned())].into(),
            ..Selector::replica("orders", 2)
        };
        assert_eq!(
            label_selector(&target, &selector),
            "app.kubernetes.io/name=orders,app.kubernetes.io/part-of=faultline,tier=backend"
        );
        let custom = KubernetesTarget {
            service_label: Some("app".to_owned()),
            ..KubernetesTarget::default()
        };
        assert_eq!(
            label_selector(&custom, &Selector::replica("orders", 1)),
            "app=orders"
        );
        assert_eq!(label_selector(&custom, &Selector::name("x")), "");
    }

    #[test]
    fn only_kill_and_term_signals_map_to_a_deletion() {
        for signal in ["SIGKILL", "KILL", "9", "sigkill"] {
            assert_eq!(Deletion::for_signal(signal), Some(Deletion::Immediate));
        }
        for signal in ["SIGTERM", "TERM", "15"] {
            assert_eq!(Deletion::for_signal(signal), Some(Deletion::Graceful));
        }
        for signal in ["SIGSTOP", "SIGHUP", "SIGUSR1", ""] {
            assert_eq!(Deletion::for_signal(signal), None, "{signal}");
        }
        assert_eq!(Deletion::Immediate.grace_period(), Some(0));
        assert_eq!(Deletion::Graceful.grace_period(), None);
    }
}
