//! An in-process fake of the Kubernetes API server, for tests: only the
//! endpoints the Kubernetes platform calls (list, get and delete pods; get a
//! ReplicaSet; get and patch a Deployment's or StatefulSet's scale), with
//! state, a record of every request, and Kubernetes-shaped JSON (`Status`
//! objects for errors). Deleting a pod, or scaling, does what the
//! controllers would do at once: a ReplicaSet's pod comes back under a new
//! name, a StatefulSet's under the same name with a new uid.
//!
//! Self-contained (axum, serde_json, tokio), so that the unit tests
//! (`#[cfg(test)]`) and `chaos/tests/kubernetes.rs` (through `#[path]`)
//! share it.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

/// The label the fake gives pods: their service.
pub const SERVICE_LABEL: &str = "app.kubernetes.io/name";

/// One request the fake answered.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub query: String,
    /// The JSON body, `Null` when there was none.
    pub body: Value,
}

#[derive(Debug, Clone)]
struct Owner {
    kind: &'static str,
    name: String,
    uid: String,
}

#[derive(Debug, Clone)]
struct Pod {
    name: String,
    uid: String,
    labels: BTreeMap<String, String>,
    owner: Option<Owner>,
    created: u32,
}

#[derive(Debug, Clone)]
struct Workload {
    kind: &'static str,
    name: String,
    uid: String,
    replicas: u32,
    /// Deployments: their ReplicaSet; StatefulSets: themselves.
    pod_owner: Owner,
}

#[derive(Debug, Default)]
struct Cluster {
    namespace: String,
    pods: Vec<Pod>,
    workloads: Vec<Workload>,
    requests: Vec<Request>,
    counter: u32,
}

impl Cluster {
    fn next(&mut self) -> u32 {
        self.counter += 1;
        self.counter
    }

    /// A pod name suffix as a ReplicaSet makes them: random-looking, so
    /// that name order is not age order.
    fn suffix(n: u32) -> String {
        const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
        let mut x = n.wrapping_mul(2_654_435_761).wrapping_add(97);
        (0..5)
            .map(|_| {
                let c = ALPHABET[(x % ALPHABET.len() as u32) as usize] as char;
                x = x / ALPHABET.len() as u32 + n * 31;
                c
            })
            .collect()
    }

    fn add_pod(&mut self, workload: &Workload, ordinal: Option<u32>) {
        let n = self.next();
        let service = workload.name.clone();
        let mut labels = BTreeMap::from([(SERVICE_LABEL.to_owned(), service)]);
        let name = match ordinal {
            Some(ordinal) => {
                labels.insert(
                    "apps.kubernetes.io/pod-index".to_owned(),
                    ordinal.to_string(),
                );
                format!("{}-{ordinal}", workload.name)
            }
            None => {
                labels.insert("pod-template-hash".to_owned(), "5d8f7c9b6".to_owned());
                format!("{}-{}", workload.pod_owner.name, Self::suffix(n))
            }
        };
        self.pods.push(Pod {
            name,
            uid: format!("pod-uid-{n}"),
            labels,
            owner: Some(workload.pod_owner.clone()),
            created: n,
        });
    }

    fn owned_by<'a>(&'a self, owner_uid: &'a str) -> impl Iterator<Item = &'a Pod> + 'a {
        self.pods
            .iter()
            .filter(move |p| p.owner.as_ref().is_some_and(|o| o.uid == owner_uid))
    }

    /// Brings the workload's pods to its replica count, as its controller
    /// would: the youngest (a StatefulSet's highest ordinal) go first.
    fn reconcile(&mut self, workload_index: usize) {
        let workload = self.workloads[workload_index].clone();
        loop {
            let mut pods: Vec<Pod> = self.owned_by(&workload.pod_owner.uid).cloned().collect();
            let count = pods.len() as u32;
            if count == workload.replicas {
                return;
            }
            if count > workload.replicas {
                pods.sort_by_key(|p| (ordinal_of(p), p.created));
                if let Some(last) = pods.last() {
                    let uid = last.uid.clone();
                    self.pods.retain(|p| p.uid != uid);
                }
            } else if workload.kind == "StatefulSet" {
                let missing = (0..workload.replicas)
                    .find(|o| !pods.iter().any(|p| ordinal_of(p) == Some(*o)))
                    .unwrap_or(count);
                self.add_pod(&workload, Some(missing));
            } else {
                self.add_pod(&workload, None);
            }
        }
    }

    fn workload_index(&self, kind: &str, name: &str) -> Option<usize> {
        self.workloads
            .iter()
            .position(|w| w.kind == kind && w.name == name)
    }
}

fn ordinal_of(pod: &Pod) -> Option<u32> {
    pod.labels
        .get("apps.kubernetes.io/pod-index")
        .and_then(|i| i.parse().ok())
}

/// The fake's contents, built before it starts.
#[derive(Debug)]
pub struct FakeKubernetes {
    cluster: Cluster,
}

impl FakeKubernetes {
    /// An empty namespace.
    pub fn new(namespace: &str) -> Self {
        Self {
            cluster: Cluster {
                namespace: namespace.to_owned(),
                ..Cluster::default()
            },
        }
    }

    /// A Deployment `name` (its ReplicaSet `<name>-5d8f7c9b6`) with
    /// `replicas` pods labelled `app.kubernetes.io/name=<name>`.
    pub fn deployment(mut self, name: &str, replicas: u32) -> Self {
        let n = self.cluster.next();
        let workload = Workload {
            kind: "Deployment",
            name: name.to_owned(),
            uid: format!("deployment-uid-{n}"),
            replicas,
            pod_owner: Owner {
                kind: "ReplicaSet",
                name: format!("{name}-5d8f7c9b6"),
                uid: format!("replicaset-uid-{n}"),
            },
        };
        self.cluster.workloads.push(workload);
        self.cluster.reconcile(self.cluster.workloads.len() - 1);
        self
    }

    /// A StatefulSet `name` with pods `<name>-0` … `<name>-<replicas-1>`.
    pub fn statefulset(mut self, name: &str, replicas: u32) -> Self {
        let n = self.cluster.next();
        let uid = format!("statefulset-uid-{n}");
        let workload = Workload {
            kind: "StatefulSet",
            name: name.to_owned(),
            uid: uid.clone(),
            replicas,
            pod_owner: Owner {
                kind: "StatefulSet",
                name: name.to_owned(),
                uid,
            },
        };
        self.cluster.workloads.push(workload);
        self.cluster.reconcile(self.cluster.workloads.len() - 1);
        self
    }

    /// A pod no controller owns, of service `service`.
    pub fn bare_pod(mut self, name: &str, service: &str) -> Self {
        let n = self.cluster.next();
        self.cluster.pods.push(Pod {
            name: name.to_owned(),
            uid: format!("pod-uid-{n}"),
            labels: BTreeMap::from([(SERVICE_LABEL.to_owned(), service.to_owned())]),
            owner: None,
            created: n,
        });
        self
    }

    /// Serves on 127.0.0.1, on a free port.
    pub async fn start(self) -> FakeApiServer {
        let state = Arc::new(Mutex::new(self.cluster));
        let app = Router::new()
            .route("/api/v1/namespaces/{ns}/pods", get(list_pods))
            .route(
                "/api/v1/namespaces/{ns}/pods/{name}",
                get(get_pod).delete(delete_pod),
            )
            .route(
                "/apis/apps/v1/namespaces/{ns}/replicasets/{name}",
                get(get_replicaset),
            )
            .route(
                "/apis/apps/v1/namespaces/{ns}/{resource}/{name}/scale",
                get(get_scale).patch(patch_scale),
            )
            .fallback(fallback)
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeApiServer { url, state, task }
    }
}

/// A running fake API server; stops when dropped.
#[derive(Debug)]
pub struct FakeApiServer {
    pub url: String,
    state: Arc<Mutex<Cluster>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeApiServer {
    fn cluster(&self) -> MutexGuard<'_, Cluster> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Request> {
        self.cluster().requests.clone()
    }

    /// The requests with this method.
    pub fn requests_with(&self, method: &str) -> Vec<Request> {
        self.requests()
            .into_iter()
            .filter(|r| r.method == method)
            .collect()
    }

    /// The names of `service`'s pods, oldest first.
    pub fn pods(&self, service: &str) -> Vec<String> {
        let cluster = self.cluster();
        let mut pods: Vec<&Pod> = cluster
            .pods
            .iter()
            .filter(|p| p.labels.get(SERVICE_LABEL).map(String::as_str) == Some(service))
            .collect();
        pods.sort_by_key(|p| p.created);
        pods.into_iter().map(|p| p.name.clone()).collect()
    }

    /// The uid of pod `name`, if it exists.
    pub fn uid(&self, name: &str) -> Option<String> {
        self.cluster()
            .pods
            .iter()
            .find(|p| p.name == name)
            .map(|p| p.uid.clone())
    }

    /// The desired replicas of the Deployment or StatefulSet `name`.
    pub fn replicas(&self, name: &str) -> Option<u32> {
        self.cluster()
            .workloads
            .iter()
            .find(|w| w.name == name)
            .map(|w| w.replicas)
    }
}

type Shared = State<Arc<Mutex<Cluster>>>;

fn lock(state: &Arc<Mutex<Cluster>>) -> MutexGuard<'_, Cluster> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

fn record(cluster: &mut Cluster, method: &Method, uri: &Uri, body: &[u8]) {
    cluster.requests.push(Request {
        method: method.to_string(),
        path: uri.path().to_owned(),
        query: uri.query().unwrap_or_default().to_owned(),
        body: serde_json::from_slice(body).unwrap_or(Value::Null),
    });
}

fn not_found(kind: &str, name: &str) -> Response {
    (
        StatusCode::NOT_FOUND,
        axum::Json(json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": format!("{kind} \"{name}\" not found"),
            "reason": "NotFound",
            "details": {"name": name, "kind": kind},
            "code": 404
        })),
    )
        .into_response()
}

fn timestamp(n: u32) -> String {
    format!(
        "2026-01-01T{:02}:{:02}:{:02}Z",
        n / 3600,
        (n / 60) % 60,
        n % 60
    )
}

fn pod_json(namespace: &str, pod: &Pod, deleting: bool) -> Value {
    let mut metadata = json!({
        "name": pod.name,
        "namespace": namespace,
        "uid": pod.uid,
        "labels": pod.labels,
        "creationTimestamp": timestamp(pod.created),
    });
    if let Some(owner) = &pod.owner {
        metadata["ownerReferences"] = json!([{
            "apiVersion": "apps/v1",
            "kind": owner.kind,
            "name": owner.name,
            "uid": owner.uid,
            "controller": true,
            "blockOwnerDeletion": true
        }]);
    }
    if deleting {
        metadata["deletionTimestamp"] = json!(timestamp(pod.created + 3600));
    }
    json!({
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": metadata,
        "spec": {"containers": [{"name": "app", "image": "faultline-shop:test"}]},
        "status": {"phase": "Running"}
    })
}

/// Whether `labels` satisfy an equality-based selector (`a=b,c=d`).
fn matches(selector: &str, labels: &BTreeMap<String, String>) -> bool {
    selector
        .split(',')
        .filter(|term| !term.is_empty())
        .all(|term| match term.split_once('=') {
            Some((key, value)) => {
                labels.get(key.trim()).map(String::as_str) == Some(value.trim_start_matches('='))
            }
            None => false,
        })
}

async fn list_pods(
    State(state): Shared,
    Path(ns): Path<String>,
    Query(query): Query<BTreeMap<String, String>>,
    method: Method,
    uri: Uri,
) -> Response {
    let mut cluster = lock(&state);
    record(&mut cluster, &method, &uri, &[]);
    let selector = query.get("labelSelector").cloned().unwrap_or_default();
    let items: Vec<Value> = if ns == cluster.namespace {
        cluster
            .pods
            .iter()
            .filter(|p| matches(&selector, &p.labels))
            .map(|p| pod_json(&ns, p, false))
            .collect()
    } else {
        Vec::new()
    };
    axum::Json(json!({
        "kind": "PodList",
        "apiVersion": "v1",
        "metadata": {"resourceVersion": "1"},
        "items": items
    }))
    .into_response()
}

async fn get_pod(
    State(state): Shared,
    Path((ns, name)): Path<(String, String)>,
    method: Method,
    uri: Uri,
) -> Response {
    let mut cluster = lock(&state);
    record(&mut cluster, &method, &uri, &[]);
    match cluster.pods.iter().find(|p| p.name == name) {
        Some(pod) if ns == cluster.namespace => {
            axum::Json(pod_json(&ns, pod, false)).into_response()
        }
        _ => not_found("pods", &name),
    }
}

async fn delete_pod(
    State(state): Shared,
    Path((ns, name)): Path<(String, String)>,
    method: Method,
    uri: Uri,
    body: Bytes,
) -> Response {
    let mut cluster = lock(&state);
    record(&mut cluster, &method, &uri, &body);
    let Some(index) = cluster.pods.iter().position(|p| p.name == name) else {
        return not_found("pods", &name);
    };
    if ns != cluster.namespace {
        return not_found("pods", &name);
    }
    let pod = cluster.pods.remove(index);
    let answer = pod_json(&ns, &pod, true);
    // The controller replaces it.
    if let Some(owner) = &pod.owner
        && let Some(workload) = cluster
            .workloads
            .iter()
            .position(|w| w.pod_owner.uid == owner.uid)
    {
        cluster.reconcile(workload);
    }
    axum::Json(answer).into_response()
}

async fn get_replicaset(
    State(state): Shared,
    Path((ns, name)): Path<(String, String)>,
    method: Method,
    uri: Uri,
) -> Response {
    let mut cluster = lock(&state);
    record(&mut cluster, &method, &uri, &[]);
    let found = cluster
        .workloads
        .iter()
        .find(|w| w.kind == "Deployment" && w.pod_owner.name == name);
    match found {
        Some(deployment) if ns == cluster.namespace => axum::Json(json!({
            "kind": "ReplicaSet",
            "apiVersion": "apps/v1",
            "metadata": {
                "name": name,
                "namespace": ns,
                "uid": deployment.pod_owner.uid,
                "ownerReferences": [{
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "name": deployment.name,
                    "uid": deployment.uid,
                    "controller": true
                }]
            },
            "spec": {
                "replicas": deployment.replicas,
                "selector": {"matchLabels": {SERVICE_LABEL: deployment.name}}
            }
        }))
        .into_response(),
        _ => not_found("replicasets.apps", &name),
    }
}

fn kind_of(resource: &str) -> Option<&'static str> {
    match resource {
        "deployments" => Some("Deployment"),
        "statefulsets" => Some("StatefulSet"),
        _ => None,
    }
}

fn scale_json(cluster: &Cluster, index: usize) -> Value {
    let workload = &cluster.workloads[index];
    let current = cluster.owned_by(&workload.pod_owner.uid).count();
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {"name": workload.name, "namespace": cluster.namespace, "uid": workload.uid},
        "spec": {"replicas": workload.replicas},
        "status": {"replicas": current, "selector": format!("{SERVICE_LABEL}={}", workload.name)}
    })
}

async fn get_scale(
    State(state): Shared,
    Path((ns, resource, name)): Path<(String, String, String)>,
    method: Method,
    uri: Uri,
) -> Response {
    let mut cluster = lock(&state);
    record(&mut cluster, &method, &uri, &[]);
    let index = kind_of(&resource).and_then(|kind| cluster.workload_index(kind, &name));
    match index {
        Some(index) if ns == cluster.namespace => {
            axum::Json(scale_json(&cluster, index)).into_response()
        }
        _ => not_found(&format!("{resource}.apps"), &name),
    }
}

async fn patch_scale(
    State(state): Shared,
    Path((ns, resource, name)): Path<(String, String, String)>,
    method: Method,
    uri: Uri,
    body: Bytes,
) -> Response {
    let mut cluster = lock(&state);
    record(&mut cluster, &method, &uri, &body);
    let index = kind_of(&resource).and_then(|kind| cluster.workload_index(kind, &name));
    let Some(index) = index.filter(|_| ns == cluster.namespace) else {
        return not_found(&format!("{resource}.apps"), &name);
    };
    let patch: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let Some(replicas) = patch["spec"]["replicas"].as_u64() else {
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            axum::Json(json!({
                "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": "spec.replicas is required", "reason": "Invalid", "code": 422
            })),
        )
            .into_response();
    };
    cluster.workloads[index].replicas = replicas as u32;
    cluster.reconcile(index);
    axum::Json(scale_json(&cluster, index)).into_response()
}

async fn fallback(State(state): Shared, method: Method, uri: Uri) -> Response {
    let mut cluster = lock(&state);
    record(&mut cluster, &method, &uri, &[]);
    not_found("resource", uri.path())
}
