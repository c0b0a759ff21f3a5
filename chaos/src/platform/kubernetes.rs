//! The Kubernetes backend of [`Platform`], through the API server (kube).
//!
//! A [`Selector`] names pods in the target's namespace: `service` is the
//! value of the service label (`app.kubernetes.io/name` by default),
//! `replica = N` the Nth of them in [`select::replica_order`] (a
//! StatefulSet's by ordinal, others oldest first), `name` a pod's name and
//! `labels` more labels the pods must carry. A pod's [`TargetRef`] id is
//! `<namespace>/pod/<name>`; a workload's `<namespace>/deployment/<name>` or
//! `<namespace>/statefulset/<name>`, so that an undo record names its object
//! whatever the namespace of the process that carries it out.
//!
//! The mapping, and what is refused (before anything changes):
//!
//! | action | Kubernetes | undo |
//! |---|---|---|
//! | kill (SIGKILL) | delete the pod, `gracePeriodSeconds: 0` | none: its controller replaces it |
//! | kill (SIGTERM) | delete the pod with its own grace period | none |
//! | restart | delete the pod (grace: the fault's `timeout`, else its own) | none |
//! | scale | patch the owning Deployment's or StatefulSet's scale subresource | scale back to the old count |
//! | start, unpause | nothing: a controller starts its pods by itself | — |
//! | stop, pause, other signals, exec, limit, partition, disconnect, connect | refused | — |

mod select;

#[cfg(test)]
pub(crate) mod fake;

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::sync::{Mutex, PoisonError};

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::autoscaling::v1::Scale;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::config::KubeConfigOptions;
use kube::{Api, Client, Config};
use serde_json::json;

pub use select::{Deletion, POD_INDEX_LABEL};

use super::{
    ContainerAction, Platform, PlatformError, ReplicaCount, Selector, TargetRef, TargetStatus,
};
use crate::environment::KubernetesTarget;

const PLATFORM: &str = "kubernetes";

/// Why `stop` is refused.
pub const STOP_REFUSED: &str = "Kubernetes cannot stop a pod and keep it: its controller \
     replaces a pod that stops. Use action = \"kill\" (the pod is deleted and replaced) or \
     action = \"scale\" with replicas (the workload runs fewer pods until the fault is \
     reverted)";

/// Why `pause` is refused.
pub const PAUSE_REFUSED: &str = "Kubernetes cannot freeze a pod's processes (there is no \
     docker pause). Alternatives: action = \"scale\" with replicas = 0 (the service goes \
     away, and comes back on revert), a NetworkPolicy that cuts the pods off, or SIGSTOP \
     sent from a shell in the pod (kubectl exec; the engine's exec fault is Docker-only)";

/// Pods and their workloads in one namespace of a cluster.
pub struct KubernetesPlatform {
    target: KubernetesTarget,
    client: tokio::sync::OnceCell<Client>,
    /// What [`Platform::resolve`] saw of each pod it returned, to tell
    /// later which pods took its place.
    seen: Mutex<HashMap<String, Seen>>,
}

impl fmt::Debug for KubernetesPlatform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KubernetesPlatform")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

/// A resolved pod as it was: its uid, its controller's, and the uids of
/// the pods that controller had then.
#[derive(Debug, Clone)]
struct Seen {
    uid: String,
    owner_uid: Option<String>,
    siblings: BTreeSet<String>,
    label_selector: String,
}

/// An object a [`TargetRef`] id names.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ObjectRef {
    namespace: String,
    kind: Kind,
    name: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Pod,
    Deployment,
    StatefulSet,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Pod => "pod",
            Kind::Deployment => "deployment",
            Kind::StatefulSet => "statefulset",
        }
    }
}

impl ObjectRef {
    fn parse(id: &str) -> Result<Self, PlatformError> {
        let mut parts = id.splitn(3, '/');
        let (Some(namespace), Some(kind), Some(name)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(PlatformError::InvalidSelector(format!(
                "{id:?} is not a Kubernetes target (<namespace>/<kind>/<name>)"
            )));
        };
        let kind = match kind {
            "pod" => Kind::Pod,
            "deployment" => Kind::Deployment,
            "statefulset" => Kind::StatefulSet,
            other => {
                return Err(PlatformError::InvalidSelector(format!(
                    "{id:?}: {other:?} is not a pod, deployment or statefulset"
                )));
            }
        };
        Ok(Self {
            namespace: namespace.to_owned(),
            kind,
            name: name.to_owned(),
        })
    }

    fn target(&self) -> TargetRef {
        TargetRef {
            id: format!("{}/{}/{}", self.namespace, self.kind.as_str(), self.name),
            name: match self.kind {
                Kind::Pod => self.name.clone(),
                kind => format!("{}/{}", kind.as_str(), self.name),
            },
        }
    }
}

/// A kube error as a platform error: an answer from the API server is the
/// action's failure (a 403 points at the RBAC rules), no answer is
/// [`PlatformError::Unreachable`].
fn api_error(action: &str, target: &str, err: kube::Error) -> PlatformError {
    match err {
        kube::Error::Api(status) => {
            let hint = if status.code == 403 {
                " (the engine's service account needs the Role in chaos/README.md: pods \
                 get/list/delete, replicasets and deployments get, deployments/scale and \
                 statefulsets/scale get/patch)"
            } else {
                ""
            };
            PlatformError::Action {
                action: action.to_owned(),
                target: target.to_owned(),
                reason: format!(
                    "the API server answered {}: {}{hint}",
                    status.code, status.message
                ),
            }
        }
        other => PlatformError::Unreachable {
            platform: PLATFORM,
            reason: other.to_string(),
        },
    }
}

fn is_not_found(err: &kube::Error) -> bool {
    matches!(err, kube::Error::Api(status) if status.code == 404)
}

fn refused(action: &impl ToString, target: &str, reason: &str) -> PlatformError {
    PlatformError::Refused {
        action: action.to_string(),
        target: target.to_owned(),
        platform: PLATFORM,
        reason: reason.to_owned(),
    }
}

/// Why an action other than the ones Kubernetes has is refused.
fn not_on_kubernetes(op: &str) -> String {
    format!(
        "the engine does {op} on Docker only; on Kubernetes it kills, restarts and scales \
         (start and unpause do nothing)"
    )
}

impl KubernetesPlatform {
    /// A platform for `target`; the client connects on first use: to
    /// `target.url` without credentials, else with the kubeconfig's
    /// `target.context`, else as `kube::Client::try_default()` does (the
    /// kubeconfig's current context, or the in-cluster service account).
    pub fn new(target: KubernetesTarget) -> Self {
        Self {
            target,
            client: tokio::sync::OnceCell::new(),
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// Uses an existing client.
    pub fn with_client(client: Client, target: KubernetesTarget) -> Self {
        Self {
            client: tokio::sync::OnceCell::from(client),
            ..Self::new(target)
        }
    }

    /// The settings it was made with.
    pub fn target(&self) -> &KubernetesTarget {
        &self.target
    }

    async fn client(&self) -> Result<&Client, PlatformError> {
        self.client.get_or_try_init(|| connect(&self.target)).await
    }

    /// The target's namespace, else the client's default.
    async fn namespace(&self) -> Result<String, PlatformError> {
        match &self.target.namespace {
            Some(namespace) if !namespace.is_empty() => Ok(namespace.clone()),
            _ => Ok(self.client().await?.default_namespace().to_owned()),
        }
    }

    async fn api<K>(&self, namespace: &str) -> Result<Api<K>, PlatformError>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Ok(Api::namespaced(self.client().await?.clone(), namespace))
    }

    /// The pods `selector` names, in replica order.
    async fn resolve_pods(&self, selector: &Selector) -> Result<(String, Vec<Pod>), PlatformError> {
        selector
            .validate()
            .map_err(PlatformError::InvalidSelector)?;
        let namespace = self.namespace().await?;
        let labels = select::label_selector(&self.target, selector);
        let mut params = ListParams::default();
        if !labels.is_empty() {
            params = params.labels(&labels);
        }
        let listed = self
            .api::<Pod>(&namespace)
            .await?
            .list(&params)
            .await
            .map_err(|err| {
                api_error(
                    "list pods",
                    &format!("{selector} in namespace {namespace}"),
                    err,
                )
            })?;
        let all = select::replica_order(listed.items);
        let matching = all.len();
        let chosen: Vec<Pod> = all
            .iter()
            .enumerate()
            .filter(|(index, pod)| {
                selector
                    .replica
                    .is_none_or(|replica| usize::try_from(replica).ok() == Some(index + 1))
                    && selector
                        .name
                        .as_ref()
                        .is_none_or(|name| pod.metadata.name.as_ref() == Some(name))
            })
            .map(|(_, pod)| pod.clone())
            .collect();
        if chosen.is_empty() {
            return Err(PlatformError::NoPod {
                selector: selector.to_string(),
                namespace,
                labels,
                matching,
            });
        }
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        for pod in &chosen {
            let Some(name) = pod.metadata.name.as_deref() else {
                continue;
            };
            let owner_uid = select::controller_of(&pod.metadata).map(|o| o.uid.clone());
            let siblings = all
                .iter()
                .filter(|other| {
                    owner_uid.is_some()
                        && select::controller_of(&other.metadata).map(|o| &o.uid)
                            == owner_uid.as_ref()
                })
                .filter_map(|other| other.metadata.uid.clone())
                .collect();
            let object = ObjectRef {
                namespace: namespace.clone(),
                kind: Kind::Pod,
                name: name.to_owned(),
            };
            seen.insert(
                object.target().id,
                Seen {
                    uid: pod.metadata.uid.clone().unwrap_or_default(),
                    owner_uid,
                    siblings,
                    label_selector: labels.clone(),
                },
            );
        }
        Ok((namespace, chosen))
    }

    /// The Deployment or StatefulSet that owns `pod` (Pod → ReplicaSet →
    /// Deployment, or Pod → StatefulSet).
    async fn workload_of(&self, namespace: &str, pod: &Pod) -> Result<ObjectRef, PlatformError> {
        let pod_name = pod.metadata.name.clone().unwrap_or_default();
        let workload = |kind, name: &str| ObjectRef {
            namespace: namespace.to_owned(),
            kind,
            name: name.to_owned(),
        };
        let Some(owner) = select::controller_of(&pod.metadata) else {
            return Err(refused(
                &"scale",
                &pod_name,
                "the pod has no owner: a bare pod has no replica count",
            ));
        };
        match owner.kind.as_str() {
            "StatefulSet" => Ok(workload(Kind::StatefulSet, &owner.name)),
            "ReplicaSet" => {
                let replica_set = self
                    .api::<ReplicaSet>(namespace)
                    .await?
                    .get(&owner.name)
                    .await
                    .map_err(|err| api_error("get replicaset", &owner.name, err))?;
                match select::controller_of(&replica_set.metadata) {
                    Some(deployment) if deployment.kind == "Deployment" => {
                        Ok(workload(Kind::Deployment, &deployment.name))
                    }
                    _ => Err(refused(
                        &"scale",
                        &pod_name,
                        &format!(
                            "its ReplicaSet {} belongs to no Deployment; the engine scales \
                             Deployments and StatefulSets only",
                            owner.name
                        ),
                    )),
                }
            }
            kind => Err(refused(
                &"scale",
                &pod_name,
                &format!(
                    "it belongs to {kind} {}; the engine scales Deployments and StatefulSets only",
                    owner.name
                ),
            )),
        }
    }

    /// Deletes the pod with `grace` (`None`: its own grace period); `false`
    /// when it was gone already.
    async fn delete_pod(
        &self,
        object: &ObjectRef,
        action: &ContainerAction,
        grace: Option<u32>,
    ) -> Result<bool, PlatformError> {
        let api = self.api::<Pod>(&object.namespace).await?;
        tracing::info!(pod = %object.name, namespace = %object.namespace, %action, ?grace, "deleting pod");
        let params = DeleteParams {
            grace_period_seconds: grace,
            ..DeleteParams::default()
        };
        match api.delete(&object.name, &params).await {
            Ok(_) => Ok(true),
            Err(err) if is_not_found(&err) => Ok(false),
            Err(err) => Err(api_error(&action.to_string(), &object.name, err)),
        }
    }

    /// The grace period `action` deletes a pod with; `None` inside: the
    /// pod's own. `Ok(None)`: the action does nothing to a pod.
    fn pod_deletion(
        &self,
        action: &ContainerAction,
        target: &TargetRef,
    ) -> Result<Option<Option<u32>>, PlatformError> {
        match action {
            ContainerAction::Kill { signal } => match Deletion::for_signal(signal) {
                Some(deletion) => Ok(Some(deletion.grace_period())),
                None => Err(refused(
                    action,
                    &target.name,
                    &format!(
                        "Kubernetes sends only SIGKILL (delete with gracePeriodSeconds 0) or \
                         SIGTERM (delete with the pod's grace period), not {signal}"
                    ),
                )),
            },
            ContainerAction::Restart { timeout_s } => Ok(Some(
                timeout_s.map(|t| u32::try_from(t).unwrap_or(u32::MAX)),
            )),
            ContainerAction::Start | ContainerAction::Unpause => Ok(None),
            _ => Err(self.refusal(action, target)),
        }
    }

    async fn scale(&self, object: &ObjectRef) -> Result<Scale, PlatformError> {
        let target = object.target().name;
        let result = match object.kind {
            Kind::Deployment => {
                self.api::<Deployment>(&object.namespace)
                    .await?
                    .get_scale(&object.name)
                    .await
            }
            Kind::StatefulSet => {
                self.api::<StatefulSet>(&object.namespace)
                    .await?
                    .get_scale(&object.name)
                    .await
            }
            Kind::Pod => return Err(refused(&"scale", &target, "a pod has no replica count")),
        };
        result.map_err(|err| api_error("get scale", &target, err))
    }

    async fn set_replicas(&self, object: &ObjectRef, replicas: u32) -> Result<(), PlatformError> {
        let target = object.target().name;
        tracing::info!(workload = %target, namespace = %object.namespace, replicas, "scaling");
        let patch = Patch::Merge(json!({"spec": {"replicas": replicas}}));
        let params = PatchParams::default();
        let result = match object.kind {
            Kind::Deployment => {
                self.api::<Deployment>(&object.namespace)
                    .await?
                    .patch_scale(&object.name, &params, &patch)
                    .await
            }
            Kind::StatefulSet => {
                self.api::<StatefulSet>(&object.namespace)
                    .await?
                    .patch_scale(&object.name, &params, &patch)
                    .await
            }
            Kind::Pod => return Err(refused(&"scale", &target, "a pod has no replica count")),
        };
        result
            .map(|_| ())
            .map_err(|err| api_error(&format!("scale to {replicas} replicas"), &target, err))
    }

    /// The pods that took the place of the pod `seen` describes: pods of
    /// the same controller that were not there when it was resolved.
    async fn replacements(
        &self,
        namespace: &str,
        seen: &Seen,
    ) -> Result<Vec<String>, PlatformError> {
        let Some(owner_uid) = &seen.owner_uid else {
            return Ok(Vec::new());
        };
        let mut params = ListParams::default();
        if !seen.label_selector.is_empty() {
            params = params.labels(&seen.label_selector);
        }
        let listed = self
            .api::<Pod>(namespace)
            .await?
            .list(&params)
            .await
            .map_err(|err| api_error("list pods", namespace, err))?;
        Ok(select::replica_order(listed.items)
            .into_iter()
            .filter(|pod| {
                select::controller_of(&pod.metadata).map(|o| &o.uid) == Some(owner_uid)
                    && pod
                        .metadata
                        .uid
                        .as_ref()
                        .is_some_and(|uid| !seen.siblings.contains(uid))
            })
            .filter_map(|pod| pod.metadata.name)
            .collect())
    }

    async fn pod_status(
        &self,
        object: &ObjectRef,
        target: &TargetRef,
    ) -> Result<TargetStatus, PlatformError> {
        let seen = self
            .seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&target.id)
            .cloned();
        let pod = self
            .api::<Pod>(&object.namespace)
            .await?
            .get_opt(&object.name)
            .await
            .map_err(|err| api_error("get pod", &target.name, err))?;
        let same_pod = |pod: &Pod| {
            seen.as_ref()
                .is_none_or(|seen| pod.metadata.uid.as_deref() == Some(seen.uid.as_str()))
        };
        let (state, running, image) = match &pod {
            None => ("deleted".to_owned(), false, String::new()),
            // A StatefulSet's replacement has the same name.
            Some(pod) if !same_pod(pod) => ("replaced".to_owned(), false, String::new()),
            Some(pod) if pod.metadata.deletion_timestamp.is_some() => {
                ("terminating".to_owned(), false, image_of(pod))
            }
            Some(pod) => {
                let phase = pod
                    .status
                    .as_ref()
                    .and_then(|status| status.phase.clone())
                    .unwrap_or_default();
                let running = phase == "Running";
                (phase.to_ascii_lowercase(), running, image_of(pod))
            }
        };
        let replaced_by = match &seen {
            Some(seen) if !running => self.replacements(&object.namespace, seen).await?,
            _ => Vec::new(),
        };
        Ok(TargetStatus {
            state,
            running,
            paused: false,
            exit_code: None,
            networks: Default::default(),
            addresses: Default::default(),
            limits: Default::default(),
            image,
            replicas: None,
            replaced_by,
        })
    }
}

fn image_of(pod: &Pod) -> String {
    pod.spec
        .as_ref()
        .and_then(|spec| spec.containers.first())
        .and_then(|container| container.image.clone())
        .unwrap_or_default()
}

/// A client for `target` (see [`KubernetesPlatform::new`]).
async fn connect(target: &KubernetesTarget) -> Result<Client, PlatformError> {
    let unreachable = |what: &str, reason: String| PlatformError::Unreachable {
        platform: PLATFORM,
        reason: format!("{what}: {reason}"),
    };
    let config = if let Some(url) = target.url.as_deref().filter(|u| !u.is_empty()) {
        let uri = url
            .parse()
            .map_err(|err| unreachable(&format!("kubernetes.url {url:?}"), format!("{err}")))?;
        Config::new(uri)
    } else if let Some(context) = &target.context {
        let options = KubeConfigOptions {
            context: Some(context.clone()),
            ..KubeConfigOptions::default()
        };
        Config::from_kubeconfig(&options).await.map_err(|err| {
            unreachable(&format!("kubeconfig context {context:?}"), err.to_string())
        })?
    } else {
        Config::infer()
            .await
            .map_err(|err| unreachable("no kubeconfig and not in a cluster", err.to_string()))?
    };
    Client::try_from(config).map_err(|err| unreachable("cannot build the client", err.to_string()))
}

#[async_trait::async_trait]
impl Platform for KubernetesPlatform {
    fn kind(&self) -> &'static str {
        PLATFORM
    }

    fn kubernetes_target(&self) -> Option<KubernetesTarget> {
        Some(self.target.clone())
    }

    fn supports(&self, op: &str, selector: &Selector) -> Result<(), PlatformError> {
        let target = match &self.target.namespace {
            Some(namespace) => format!("{selector} in namespace {namespace}"),
            None => selector.to_string(),
        };
        match op {
            "kill" | "restart" | "scale" | "start" | "unpause" => Ok(()),
            "stop" => Err(refused(&op, &target, STOP_REFUSED)),
            "pause" => Err(refused(&op, &target, PAUSE_REFUSED)),
            other => Err(refused(&other, &target, &not_on_kubernetes(other))),
        }
    }

    #[tracing::instrument(skip(self), fields(selector = %selector))]
    async fn resolve(&self, selector: &Selector) -> Result<Vec<TargetRef>, PlatformError> {
        let (namespace, pods) = self.resolve_pods(selector).await?;
        Ok(pods
            .into_iter()
            .filter_map(|pod| pod.metadata.name)
            .map(|name| {
                ObjectRef {
                    namespace: namespace.clone(),
                    kind: Kind::Pod,
                    name,
                }
                .target()
            })
            .collect())
    }

    #[tracing::instrument(skip(self), fields(selector = %selector))]
    async fn resolve_workloads(
        &self,
        selector: &Selector,
    ) -> Result<Vec<TargetRef>, PlatformError> {
        let (namespace, pods) = self.resolve_pods(selector).await?;
        let mut workloads: Vec<TargetRef> = Vec::new();
        for pod in &pods {
            let workload = self.workload_of(&namespace, pod).await?.target();
            if !workloads.contains(&workload) {
                workloads.push(workload);
            }
        }
        Ok(workloads)
    }

    #[tracing::instrument(skip(self), fields(target = %target.name, action = %action))]
    async fn apply(
        &self,
        target: &TargetRef,
        action: &ContainerAction,
    ) -> Result<(), PlatformError> {
        let object = ObjectRef::parse(&target.id)?;
        match (object.kind, action) {
            (Kind::Deployment | Kind::StatefulSet, ContainerAction::Scale { replicas }) => {
                self.set_replicas(&object, *replicas).await
            }
            (Kind::Pod, _) => match self.pod_deletion(action, target)? {
                None => Ok(()),
                Some(grace) => {
                    if self.delete_pod(&object, action, grace).await? {
                        Ok(())
                    } else {
                        Err(PlatformError::Action {
                            action: action.to_string(),
                            target: target.name.clone(),
                            reason: format!(
                                "no pod {} in namespace {}",
                                object.name, object.namespace
                            ),
                        })
                    }
                }
            },
            _ => Err(self.refusal(action, target)),
        }
    }

    async fn ensure(
        &self,
        target: &TargetRef,
        action: &ContainerAction,
    ) -> Result<(), PlatformError> {
        let object = ObjectRef::parse(&target.id)?;
        match (object.kind, action) {
            (Kind::Deployment | Kind::StatefulSet, ContainerAction::Scale { replicas }) => {
                let scale = self.scale(&object).await?;
                if scale.spec.and_then(|spec| spec.replicas) == i32::try_from(*replicas).ok() {
                    return Ok(());
                }
                self.set_replicas(&object, *replicas).await
            }
            // A pod that is gone already is as killed as it gets.
            (Kind::Pod, _) => match self.pod_deletion(action, target)? {
                Some(grace) => self.delete_pod(&object, action, grace).await.map(|_| ()),
                None => Ok(()),
            },
            _ => Err(self.refusal(action, target)),
        }
    }

    async fn status(&self, target: &TargetRef) -> Result<TargetStatus, PlatformError> {
        let object = ObjectRef::parse(&target.id)?;
        if object.kind == Kind::Pod {
            return self.pod_status(&object, target).await;
        }
        let scale = self.scale(&object).await?;
        let desired = scale
            .spec
            .and_then(|spec| spec.replicas)
            .and_then(|r| u32::try_from(r).ok())
            .unwrap_or(0);
        let current = scale
            .status
            .and_then(|status| u32::try_from(status.replicas).ok())
            .unwrap_or(0);
        Ok(TargetStatus {
            state: if desired == 0 && current == 0 {
                "scaled to zero".to_owned()
            } else {
                format!("{current} of {desired} replicas")
            },
            running: current > 0,
            paused: false,
            exit_code: None,
            networks: Default::default(),
            addresses: Default::default(),
            limits: Default::default(),
            image: String::new(),
            replicas: Some(ReplicaCount { desired, current }),
            replaced_by: Vec::new(),
        })
    }

    async fn plan_undo(
        &self,
        target: &TargetRef,
        action: &ContainerAction,
    ) -> Result<Vec<ContainerAction>, PlatformError> {
        let object = ObjectRef::parse(&target.id)?;
        match (object.kind, action) {
            // The controller brings a deleted pod back by itself.
            (
                Kind::Pod,
                ContainerAction::Kill { .. }
                | ContainerAction::Restart { .. }
                | ContainerAction::Start
                | ContainerAction::Unpause,
            ) => Ok(Vec::new()),
            (Kind::Deployment | Kind::StatefulSet, ContainerAction::Scale { .. }) => {
                let before = self.status(target).await?.replicas.map_or(0, |r| r.desired);
                Ok(vec![ContainerAction::Scale { replicas: before }])
            }
            _ => Err(self.refusal(action, target)),
        }
    }
}

impl KubernetesPlatform {
    /// The refusal of `action` on `target`, saying why.
    fn refusal(&self, action: &ContainerAction, target: &TargetRef) -> PlatformError {
        let reason = match action {
            ContainerAction::Stop { .. } => STOP_REFUSED.to_owned(),
            ContainerAction::Pause => PAUSE_REFUSED.to_owned(),
            ContainerAction::Scale { .. } => {
                "scale acts on a Deployment or StatefulSet, not on a pod".to_owned()
            }
            other => {
                let op = serde_json::to_value(other)
                    .ok()
                    .and_then(|v| v.get("op").and_then(|op| op.as_str()).map(str::to_owned))
                    .unwrap_or_else(|| other.to_string());
                not_on_kubernetes(&op)
            }
        };
        refused(action, &target.name, &reason)
    }
}

#[cfg(test)]
mod tests {
    use super::fake::{FakeApiServer, FakeKubernetes};
    use super::*;

    async fn platform(fake: FakeKubernetes) -> (FakeApiServer, KubernetesPlatform) {
        let server = fake.start().await;
        let platform = KubernetesPlatform::new(KubernetesTarget {
            namespace: Some("shop".to_owned()),
            url: Some(server.url.clone()),
            ..KubernetesTarget::default()
        });
        (server, platform)
    }

    fn deletions(server: &FakeApiServer) -> Vec<(String, serde_json::Value)> {
        server
            .requests_with("DELETE")
            .into_iter()
            .map(|r| (r.path, r.body))
            .collect()
    }

    #[tokio::test]
    async fn kill_of_replica_2_deletes_the_second_oldest_pod_with_no_grace() {
        let (server, platform) =
            platform(FakeKubernetes::new("shop").deployment("orders", 3)).await;
        let pods = server.pods("orders");
        let targets = platform
            .resolve(&Selector::replica("orders", 2))
            .await
            .unwrap();
        assert_eq!(
            targets,
            [TargetRef {
                id: format!("shop/pod/{}", pods[1]),
                name: pods[1].clone()
            }]
        );
        let list = &server.requests_with("GET")[0];
        assert_eq!(list.path, "/api/v1/namespaces/shop/pods");
        assert!(
            list.query
                .contains("labelSelector=app.kubernetes.io%2Fname%3Dorders"),
            "{}",
            list.query
        );
        let kill = ContainerAction::Kill {
            signal: "SIGKILL".to_owned(),
        };
        assert!(
            platform
                .plan_undo(&targets[0], &kill)
                .await
                .unwrap()
                .is_empty()
        );
        platform.apply(&targets[0], &kill).await.unwrap();
        let deleted = deletions(&server);
        assert_eq!(deleted.len(), 1);
        assert_eq!(
            deleted[0].0,
            format!("/api/v1/namespaces/shop/pods/{}", pods[1])
        );
        assert_eq!(deleted[0].1["gracePeriodSeconds"], 0);
        // The ReplicaSet replaced it; the evidence names the new pod.
        let now = server.pods("orders");
        assert_eq!(now.len(), 3);
        assert!(!now.contains(&pods[1]));
        let status = platform.status(&targets[0]).await.unwrap();
        assert_eq!(status.state, "deleted");
        assert!(!status.running);
        assert_eq!(status.replaced_by, [now[2].clone()]);
        // Deleting what is gone: an error for the fault, fine for an undo.
        assert!(platform.apply(&targets[0], &kill).await.is_err());
        platform.ensure(&targets[0], &kill).await.unwrap();
    }

    #[tokio::test]
    async fn sigterm_and_restart_delete_with_the_pods_own_grace() {
        let (server, platform) =
            platform(FakeKubernetes::new("shop").deployment("orders", 2)).await;
        let first = platform
            .resolve(&Selector::replica("orders", 1))
            .await
            .unwrap();
        platform
            .apply(
                &first[0],
                &ContainerAction::Kill {
                    signal: "SIGTERM".to_owned(),
                },
            )
            .await
            .unwrap();
        let second = platform
            .resolve(&Selector::replica("orders", 1))
            .await
            .unwrap();
        assert_ne!(first, second, "the old second replica is now the first");
        platform
            .apply(&second[0], &ContainerAction::Restart { timeout_s: None })
            .await
            .unwrap();
        platform
            .apply(&first[0], &ContainerAction::Restart { timeout_s: Some(5) })
            .await
            .unwrap_err();
        let deleted = deletions(&server);
        assert_eq!(deleted.len(), 3);
        for (_, body) in &deleted[..2] {
            assert!(body.get("gracePeriodSeconds").is_none(), "{body}");
        }
        assert_eq!(deleted[2].1["gracePeriodSeconds"], 5);
        assert_eq!(server.pods("orders").len(), 2);
    }

    #[tokio::test]
    async fn other_signals_stop_and_pause_are_refused_saying_why() {
        let (server, platform) =
            platform(FakeKubernetes::new("shop").deployment("orders", 2)).await;
        let selector = Selector::replica("orders", 1);
        let target = platform.resolve(&selector).await.unwrap().remove(0);
        let err = platform
            .apply(
                &target,
                &ContainerAction::Kill {
                    signal: "SIGSTOP".to_owned(),
                },
            )
            .await
            .unwrap_err();
        assert!(matches!(err, PlatformError::Refused { .. }), "{err}");
        assert!(err.to_string().contains("SIGKILL"), "{err}");
        for (op, says) in [("stop", "scale"), ("pause", "cannot freeze")] {
            let err = platform.supports(op, &selector).unwrap_err();
            let text = err.to_string();
            assert!(
                text.contains(says) && text.contains("namespace shop"),
                "{text}"
            );
        }
        let err = platform.supports("partition", &selector).unwrap_err();
        assert!(err.to_string().contains("partition"), "{err}");
        for action in [ContainerAction::Pause, ContainerAction::stop(None)] {
            assert!(platform.plan_undo(&target, &action).await.is_err());
            assert!(platform.apply(&target, &action).await.is_err());
        }
        for op in ["kill", "restart", "scale", "start", "unpause"] {
            platform.supports(op, &selector).unwrap();
        }
        // Start and unpause have nothing to do.
        platform
            .ensure(&target, &ContainerAction::Start)
            .await
            .unwrap();
        assert!(deletions(&server).is_empty());
    }

    #[tokio::test]
    async fn an_unknown_service_names_the_selector_and_namespace() {
        let (_server, platform) =
            platform(FakeKubernetes::new("shop").deployment("orders", 1)).await;
        let err = platform
            .resolve(&Selector::replica("payments", 1))
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("payments#1")
                && text.contains("\"shop\"")
                && text.contains("app.kubernetes.io/name=payments"),
            "{text}"
        );
        let err = platform
            .resolve(&Selector::replica("orders", 2))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("1 running pods"), "{err}");
    }

    #[tokio::test]
    async fn scale_goes_to_the_owning_deployment_and_is_undone_to_the_old_count() {
        let (server, platform) =
            platform(FakeKubernetes::new("shop").deployment("orders", 3)).await;
        let workloads = platform
            .resolve_workloads(&Selector {
                service: Some("orders".to_owned()),
                ..Selector::default()
            })
            .await
            .unwrap();
        assert_eq!(
            workloads,
            [TargetRef {
                id: "shop/deployment/orders".to_owned(),
                name: "deployment/orders".to_owned()
            }]
        );
        let scale = ContainerAction::Scale { replicas: 1 };
        let undo = platform.plan_undo(&workloads[0], &scale).await.unwrap();
        assert_eq!(undo, [ContainerAction::Scale { replicas: 3 }]);
        platform.apply(&workloads[0], &scale).await.unwrap();
        assert_eq!(server.replicas("orders"), Some(1));
        assert_eq!(server.pods("orders").len(), 1);
        let status = platform.status(&workloads[0]).await.unwrap();
        assert_eq!(
            status.replicas,
            Some(ReplicaCount {
                desired: 1,
                current: 1
            })
        );
        let patch = server.requests_with("PATCH").remove(0);
        assert_eq!(
            patch.path,
            "/apis/apps/v1/namespaces/shop/deployments/orders/scale"
        );
        assert_eq!(patch.body, json!({"spec": {"replicas": 1}}));
        platform.ensure(&workloads[0], &undo[0]).await.unwrap();
        platform.ensure(&workloads[0], &undo[0]).await.unwrap();
        assert_eq!(server.replicas("orders"), Some(3));
        assert_eq!(
            server.requests_with("PATCH").len(),
            2,
            "the second ensure patches nothing"
        );
    }

    #[tokio::test]
    async fn statefulset_pods_are_numbered_by_ordinal_and_their_replacement_is_seen() {
        let (server, platform) =
            platform(FakeKubernetes::new("shop").statefulset("postgres", 3)).await;
        let selector = Selector::replica("postgres", 2);
        let target = platform.resolve(&selector).await.unwrap().remove(0);
        assert_eq!(target.name, "postgres-1");
        let uid = server.uid("postgres-1");
        platform
            .apply(
                &target,
                &ContainerAction::Kill {
                    signal: "9".to_owned(),
                },
            )
            .await
            .unwrap();
        assert_ne!(server.uid("postgres-1"), uid, "a new pod of the same name");
        let status = platform.status(&target).await.unwrap();
        assert_eq!(status.state, "replaced");
        assert_eq!(status.replaced_by, ["postgres-1"]);
        let workloads = platform.resolve_workloads(&selector).await.unwrap();
        assert_eq!(workloads[0].id, "shop/statefulset/postgres");
    }

    #[tokio::test]
    async fn a_bare_pod_has_nothing_to_scale() {
        let (_server, platform) =
            platform(FakeKubernetes::new("shop").bare_pod("debug", "tools")).await;
        let err = platform
            .resolve_workloads(&Selector::name("debug"))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("no owner"), "{err}");
    }

    #[test]
    fn target_ids_name_namespace_kind_and_name() {
        let object = ObjectRef::parse("shop/deployment/orders").unwrap();
        assert_eq!(object.kind, Kind::Deployment);
        assert_eq!(object.target().name, "deployment/orders");
        assert!(ObjectRef::parse("orders").is_err());
        assert!(ObjectRef::parse("shop/daemonset/x").is_err());
    }
}
