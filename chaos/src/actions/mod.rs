//! What an experiment does to the system: faults (injected, optionally
//! ramped, then reverted) and rollback actions.
//!
//! - [`proxy`]: toxics and proxy outages through a Toxiproxy-compatible API;
//! - [`container`]: container actions through a [`Platform`];
//! - [`http`]: generic HTTP calls (the shop's fault admin API);
//! - [`load`]: extra load from `faultline_loadgen`;
//! - [`sql`]: a SQL statement against PostgreSQL, and the one that undoes it.
//!
//! Every fault says, before it changes anything, how to undo it
//! ([`Prepared::undo`]); the run loop writes that to the [`crate::ledger`]
//! so `faultline cleanup` can revert a killed run. The undo records are plain
//! data, in [`crate::undo`]; how to carry one out ([`UndoRecord::execute`])
//! is here.

pub mod container;
pub mod http;
pub mod load;
pub mod proxy;
pub mod sql;

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use faultline_proxy::{ApiToken, ClientError, ToxiproxyClient};
use faultline_signal::error_chain;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::environment::{DockerTarget, KubernetesTarget, Secret};
use crate::ledger::LedgerError;
use crate::platform::docker::DockerPlatform;
use crate::platform::kubernetes::KubernetesPlatform;
use crate::platform::{Platform, PlatformError};
pub use crate::undo::{HttpRequest, UndoRecord};

/// Why an action failed.
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    #[error(transparent)]
    Proxy(#[from] ClientError),
    #[error(transparent)]
    Platform(#[from] PlatformError),
    #[error("{method} {url} failed: {reason}")]
    Http {
        method: String,
        url: String,
        reason: String,
    },
    #[error("{method} {url} answered {status} (expected {expected}): {body}")]
    UnexpectedStatus {
        method: String,
        url: String,
        status: u16,
        expected: String,
        body: String,
    },
    /// A SQL statement failed (or could not connect, or timed out). The URL
    /// is shown with its password as `***`.
    #[error("{context} on {url}: {reason}")]
    Sql {
        /// What ran: `sql fault "x": statement`, `verify`, `undo`.
        context: String,
        url: String,
        reason: String,
    },
    #[error("cannot record the fault for cleanup: {0}")]
    Ledger(#[from] LedgerError),
    #[error("did not finish within {}", crate::experiment::duration::render(*.0))]
    Timeout(Duration),
    #[error("{0}")]
    Config(String),
    #[error("load: {0}")]
    Load(String),
    #[error("panicked: {0}")]
    Panicked(String),
}

/// What a fault will do, resolved before it does it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Prepared {
    /// How to undo it, for the ledger and for [`Fault::revert`]'s default.
    pub undo: Vec<UndoRecord>,
    /// What was resolved (targets, toxic names), for the journal.
    pub detail: Value,
}

/// What a fault was seen to do, read just before it is reverted: the
/// evidence that it took effect.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Effect {
    /// `Some(true)`: it acted; `Some(false)`: nothing shows it did anything
    /// (a proxy nobody routes through, a container that is not in the state
    /// the action leads to), and the run fails as "fault not effective";
    /// `None`: this fault cannot tell.
    pub effective: Option<bool>,
    /// What was read: counters, states.
    pub evidence: Value,
}

impl Effect {
    /// Evidence that does not decide.
    pub fn unknown(evidence: Value) -> Self {
        Self {
            effective: None,
            evidence,
        }
    }

    /// Evidence that decides.
    pub fn seen(effective: bool, evidence: Value) -> Self {
        Self {
            effective: Some(effective),
            evidence,
        }
    }
}

/// A fault of the method.
#[async_trait::async_trait]
pub trait Fault: Send + Sync + fmt::Debug {
    /// The `type` of the fault, for the journal.
    fn kind(&self) -> &'static str;

    /// Resolves targets and plans the undo, changing nothing.
    async fn prepare(&self) -> Result<Prepared, ActionError> {
        Ok(Prepared::default())
    }

    /// Injects the fault.
    async fn inject(&self, prepared: &Prepared) -> Result<Value, ActionError>;

    /// Offsets, from the injection, of the ramp's steps.
    fn ramp_steps(&self) -> Vec<Duration> {
        Vec::new()
    }

    /// Applies ramp step `step` (1-based).
    async fn ramp(&self, _prepared: &Prepared, _step: usize) -> Result<Value, ActionError> {
        Ok(Value::Null)
    }

    /// What the fault has done so far, read before it is reverted (see
    /// [`Effect`]). By default it cannot tell.
    async fn effect(&self, _prepared: &Prepared) -> Result<Effect, ActionError> {
        Ok(Effect::default())
    }

    /// Reverts the fault.
    async fn revert(&self, prepared: &Prepared) -> Result<Value, ActionError>;

    /// The lease the fault was injected with: what injected it undoes it
    /// this long after the last [`Fault::renew`]. `None`: it lasts until
    /// reverted.
    fn lease(&self) -> Option<Duration> {
        None
    }

    /// Renews the lease (the run does so every lease/3 while it is in).
    async fn renew(&self, _prepared: &Prepared) -> Result<Value, ActionError> {
        Ok(Value::Null)
    }
}

/// A rollback action.
#[async_trait::async_trait]
pub trait Action: Send + Sync + fmt::Debug {
    fn kind(&self) -> &'static str;
    async fn run(&self) -> Result<Value, ActionError>;
}

/// What actions share: an HTTP client and, once needed, the container
/// platform: Kubernetes when the target selects it
/// ([`KubernetesTarget::is_selected`]), else Docker.
#[derive(Debug, Clone)]
pub struct Services {
    pub http: reqwest::Client,
    docker_target: DockerTarget,
    kubernetes_target: KubernetesTarget,
    platform: Arc<Mutex<Option<Arc<dyn Platform>>>>,
}

impl Services {
    /// Services with a fresh HTTP client; the platform connects on first use.
    pub fn new(docker_target: DockerTarget) -> Result<Self, ActionError> {
        faultline_signal::install_crypto_provider();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .connect_timeout(Duration::from_secs(3))
            .build()
            .map_err(|err| ActionError::Config(format!("cannot build the HTTP client: {err}")))?;
        Ok(Self {
            http,
            docker_target,
            kubernetes_target: KubernetesTarget::default(),
            platform: Arc::new(Mutex::new(None)),
        })
    }

    /// Container faults go to Kubernetes, as `target` says, when it selects
    /// it (any setting set); else to Docker.
    pub fn with_kubernetes(mut self, target: KubernetesTarget) -> Self {
        self.kubernetes_target = target;
        self
    }

    /// Uses `platform` for container actions instead of connecting to Docker.
    pub fn with_platform(self, platform: Arc<dyn Platform>) -> Self {
        *self.platform.lock().unwrap_or_else(PoisonError::into_inner) = Some(platform);
        self
    }

    /// The container platform (Kubernetes or Docker, connected on first
    /// use).
    pub fn platform(&self) -> Result<Arc<dyn Platform>, ActionError> {
        let mut slot = self.platform.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(platform) = slot.as_ref() {
            return Ok(platform.clone());
        }
        let platform: Arc<dyn Platform> = if self.kubernetes_target.is_selected() {
            Arc::new(KubernetesPlatform::new(self.kubernetes_target.clone()))
        } else {
            Arc::new(DockerPlatform::connect(self.docker_target.clone())?)
        };
        *slot = Some(platform.clone());
        Ok(platform)
    }

    /// The platform an undo record names: this run's when it is the same
    /// kind (and, for Kubernetes, the same cluster), else a new one, as
    /// `faultline cleanup` needs for a record another run wrote.
    pub fn platform_for(
        &self,
        kind: &str,
        kubernetes: Option<&KubernetesTarget>,
    ) -> Result<Arc<dyn Platform>, ActionError> {
        let current = self
            .platform
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(platform) = current
            && platform.kind() == kind
            && (kubernetes.is_none() || platform.kubernetes_target().as_ref() == kubernetes)
        {
            return Ok(platform);
        }
        match kind {
            "kubernetes" => Ok(Arc::new(KubernetesPlatform::new(
                kubernetes
                    .cloned()
                    .unwrap_or_else(|| self.kubernetes_target.clone()),
            ))),
            "docker" if self.kubernetes_target.is_selected() => Ok(Arc::new(
                DockerPlatform::connect(self.docker_target.clone())?,
            )),
            "docker" => self.platform(),
            other => Err(ActionError::Config(format!(
                "an undo record names the platform {other:?}, which this engine does not know"
            ))),
        }
    }
}

impl HttpRequest {
    /// Sends it; an unexpected status is an error. Returns status and body.
    pub async fn send(&self, http: &reqwest::Client) -> Result<(u16, Value), ActionError> {
        let failed = |reason: String| ActionError::Http {
            method: self.method.clone(),
            url: self.url.clone(),
            reason,
        };
        let method = reqwest::Method::from_bytes(self.method.as_bytes())
            .map_err(|err| failed(err.to_string()))?;
        let mut request = http.request(method, &self.url);
        for (name, value) in &self.headers {
            request = request.header(name, value);
        }
        if let Some(token) = &self.bearer {
            request = request.bearer_auth(token.expose());
        }
        if let Some(json) = &self.json {
            request = request.json(json);
        }
        let response = request
            .send()
            .await
            .map_err(|err| failed(error_chain(&err)))?;
        let status = response.status().as_u16();
        let text = response
            .text()
            .await
            .map_err(|err| failed(error_chain(&err)))?;
        let ok = if self.expect.is_empty() {
            (200..300).contains(&status)
        } else {
            self.expect.contains(&status)
        };
        if !ok {
            return Err(ActionError::UnexpectedStatus {
                method: self.method.clone(),
                url: self.url.clone(),
                status,
                expected: if self.expect.is_empty() {
                    "2xx".to_owned()
                } else {
                    format!("{:?}", self.expect)
                },
                body: text.chars().take(300).collect(),
            });
        }
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok((status, body))
    }
}

/// A client for the control API at `api`, sending `token`, if any.
pub fn proxy_client(
    api: &str,
    token: Option<&Secret>,
    http: reqwest::Client,
) -> Result<ToxiproxyClient, ActionError> {
    let client = ToxiproxyClient::with_http_client(api, http)?;
    Ok(match token {
        Some(token) => {
            let token = ApiToken::new(token.expose())
                .map_err(|err| ActionError::Config(format!("proxy_api_token: {err}")))?;
            client.with_api_token(token)
        }
        None => client,
    })
}

/// The token a proxy client sends, as the ledger stores it.
pub fn proxy_token(client: &ToxiproxyClient) -> Option<Secret> {
    client.api_token().map(|token| Secret::new(token.expose()))
}

impl UndoRecord {
    /// Carries out the undo. Undoing twice is harmless.
    pub async fn execute(&self, services: &Services) -> Result<Value, ActionError> {
        match self {
            UndoRecord::RemoveToxic {
                api,
                proxy,
                toxic,
                token,
            } => {
                let client = proxy_client(api, token.as_ref(), services.http.clone())?;
                match client.remove_toxic(proxy, toxic).await {
                    Ok(()) => Ok(Value::from(format!("removed toxic {toxic}"))),
                    Err(err) if err.is_not_found() => {
                        Ok(Value::from(format!("toxic {toxic} was already gone")))
                    }
                    Err(err) => Err(err.into()),
                }
            }
            UndoRecord::EnableProxy { api, proxy, token } => {
                let client = proxy_client(api, token.as_ref(), services.http.clone())?;
                client.set_enabled(proxy, true).await?;
                Ok(Value::from(format!("enabled proxy {proxy}")))
            }
            UndoRecord::Container {
                platform,
                target,
                action,
                kubernetes,
            } => {
                services
                    .platform_for(platform, kubernetes.as_ref())?
                    .ensure(target, action)
                    .await?;
                Ok(Value::from(format!("{action}: {}", target.name)))
            }
            UndoRecord::Http { request } => {
                let (status, body) = request.send(&services.http).await?;
                Ok(serde_json::json!({"status": status, "body": body}))
            }
            UndoRecord::Sql {
                url,
                statement,
                timeout_ms,
            } => {
                let executed = sql::execute(
                    url,
                    statement,
                    Duration::from_millis(*timeout_ms),
                    "sql undo",
                )
                .await?;
                Ok(executed.to_json())
            }
        }
    }
}

/// Executes undo records in reverse order, all of them even if one fails;
/// returns their outputs, or the first error.
pub async fn execute_all(undo: &[UndoRecord], services: &Services) -> Result<Value, ActionError> {
    let mut outputs = Vec::new();
    let mut first_error = None;
    for record in undo.iter().rev() {
        match record.execute(services).await {
            Ok(output) => outputs.push(output),
            Err(err) => {
                outputs.push(Value::from(format!("{record}: {err}")));
                first_error.get_or_insert(err);
            }
        }
    }
    match first_error {
        Some(err) => Err(err),
        None => Ok(Value::Array(outputs)),
    }
}
