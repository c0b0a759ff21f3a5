//! Faults through a Toxiproxy-compatible control API (the fault proxy or a
//! real Toxiproxy): toxics, with ramps, and proxy outages.
//!
//! With a lease ([`ToxicInjection::with_lease`], [`ProxyOutage::with_lease`])
//! the fault proxy undoes the fault by itself unless the run renews it in
//! time ([`Fault::renew`]); a real Toxiproxy ignores the lease.

use std::time::Duration;

use faultline_proxy::{NewToxic, Stream, ToxicUpdate, ToxiproxyClient};
use serde_json::{Map, Value, json};

use super::{Action, ActionError, Effect, Fault, Prepared, UndoRecord, proxy_token};
use crate::experiment::Ramp;

/// A toxic on one proxy for the fault's duration.
#[derive(Debug, Clone)]
pub struct ToxicInjection {
    client: ToxiproxyClient,
    proxy: String,
    toxic: NewToxic,
    ramp: Option<Ramp>,
    lease: Option<Duration>,
}

impl ToxicInjection {
    /// `toxic` on `proxy`; its name defaults to `faultline_<proxy>_<type>`.
    pub fn new(
        client: ToxiproxyClient,
        proxy: &str,
        mut toxic: NewToxic,
        ramp: Option<Ramp>,
    ) -> Self {
        if toxic.name.is_none() {
            toxic.name = Some(format!("faultline_{proxy}_{}", toxic.toxic_type));
        }
        Self {
            client,
            proxy: proxy.to_owned(),
            toxic,
            ramp,
            lease: None,
        }
    }

    /// Injects the toxic with a lease of `lease` (renewed while it is in).
    pub fn with_lease(mut self, lease: Duration) -> Self {
        self.toxic = self.toxic.with_lease(lease);
        self.lease = Some(lease);
        self
    }

    /// A typed helper for tests and callers: a latency toxic.
    pub fn latency(
        client: ToxiproxyClient,
        proxy: &str,
        latency: Duration,
        stream: Stream,
    ) -> Self {
        let mut attributes = Map::new();
        attributes.insert(
            "latency".into(),
            Value::from(u64::try_from(latency.as_millis()).unwrap_or(u64::MAX)),
        );
        let toxic = NewToxic {
            name: None,
            toxic_type: "latency".into(),
            stream,
            toxicity: 1.0,
            attributes,
            lease_ms: None,
        };
        Self::new(client, proxy, toxic, None)
    }

    fn name(&self) -> String {
        self.toxic.effective_name()
    }

    fn api(&self) -> String {
        self.client.base_url().to_string()
    }
}

#[async_trait::async_trait]
impl Fault for ToxicInjection {
    fn kind(&self) -> &'static str {
        "toxic"
    }

    async fn prepare(&self) -> Result<Prepared, ActionError> {
        Ok(Prepared {
            undo: vec![UndoRecord::RemoveToxic {
                api: self.api(),
                proxy: self.proxy.clone(),
                toxic: self.name(),
                token: proxy_token(&self.client),
            }],
            detail: json!({"proxy": self.proxy, "toxic": self.toxic}),
        })
    }

    async fn inject(&self, _prepared: &Prepared) -> Result<Value, ActionError> {
        let toxic = match self.client.add_toxic(&self.proxy, &self.toxic).await {
            // Left behind by an earlier run: replace it.
            Err(err) if err.is_conflict() => {
                self.client.remove_toxic(&self.proxy, &self.name()).await?;
                self.client.add_toxic(&self.proxy, &self.toxic).await?
            }
            other => other?,
        };
        Ok(serde_json::to_value(toxic).unwrap_or(Value::Null))
    }

    fn ramp_steps(&self) -> Vec<Duration> {
        match &self.ramp {
            Some(ramp) => (1..=ramp.steps).map(|step| ramp.every * step).collect(),
            None => Vec::new(),
        }
    }

    async fn ramp(&self, _prepared: &Prepared, step: usize) -> Result<Value, ActionError> {
        let Some(ramp) = &self.ramp else {
            return Ok(Value::Null);
        };
        let from = self
            .toxic
            .attributes
            .get(&ramp.attribute)
            .and_then(Value::as_u64)
            .unwrap_or(0);
        let value = ramp.value_at(from, u32::try_from(step).unwrap_or(u32::MAX));
        let mut attributes = Map::new();
        attributes.insert(ramp.attribute.clone(), Value::from(value));
        let update = ToxicUpdate {
            toxicity: None,
            attributes,
            lease_ms: None,
        };
        let toxic = self
            .client
            .update_toxic(&self.proxy, &self.name(), &update)
            .await?;
        Ok(json!({"step": step, ramp.attribute.clone(): value, "toxic": toxic}))
    }

    /// The proxy's counters for this toxic: it must have acted on at least
    /// one connection. A proxy nobody routes through shows none. A real
    /// Toxiproxy keeps no counters: then it cannot tell.
    async fn effect(&self, _prepared: &Prepared) -> Result<Effect, ActionError> {
        let toxic = self.client.toxic(&self.proxy, &self.name()).await?;
        Ok(match toxic.stats {
            Some(stats) => Effect::seen(stats.connections > 0, json!(stats)),
            None => Effect::unknown(json!({"stats": "this proxy keeps none"})),
        })
    }

    async fn revert(&self, _prepared: &Prepared) -> Result<Value, ActionError> {
        match self.client.remove_toxic(&self.proxy, &self.name()).await {
            Ok(()) => Ok(Value::from(format!("removed toxic {}", self.name()))),
            Err(err) if err.is_not_found() => Ok(Value::from("the toxic was already gone")),
            Err(err) => Err(err.into()),
        }
    }

    fn lease(&self) -> Option<Duration> {
        self.lease
    }

    async fn renew(&self, _prepared: &Prepared) -> Result<Value, ActionError> {
        let Some(lease) = self.lease else {
            return Ok(Value::Null);
        };
        let toxic = self
            .client
            .renew_toxic_lease(&self.proxy, &self.name(), lease)
            .await?;
        Ok(json!({"lease_remaining_ms": toxic.lease_remaining_ms}))
    }
}

/// A proxy taken down (`enabled = false`): new connections are refused, and
/// open ones closed.
#[derive(Debug, Clone)]
pub struct ProxyOutage {
    client: ToxiproxyClient,
    proxy: String,
    lease: Option<Duration>,
}

impl ProxyOutage {
    pub fn new(client: ToxiproxyClient, proxy: &str) -> Self {
        Self {
            client,
            proxy: proxy.to_owned(),
            lease: None,
        }
    }

    /// Takes the proxy down with a lease of `lease` (renewed while it is down).
    pub fn with_lease(mut self, lease: Duration) -> Self {
        self.lease = Some(lease);
        self
    }
}

#[async_trait::async_trait]
impl Fault for ProxyOutage {
    fn kind(&self) -> &'static str {
        "proxy_down"
    }

    async fn prepare(&self) -> Result<Prepared, ActionError> {
        Ok(Prepared {
            undo: vec![UndoRecord::EnableProxy {
                api: self.client.base_url().to_string(),
                proxy: self.proxy.clone(),
                token: proxy_token(&self.client),
            }],
            detail: json!({"proxy": self.proxy}),
        })
    }

    async fn inject(&self, _prepared: &Prepared) -> Result<Value, ActionError> {
        let proxy = match self.lease {
            Some(lease) => self.client.disable_with_lease(&self.proxy, lease).await?,
            None => self.client.set_enabled(&self.proxy, false).await?,
        };
        Ok(serde_json::to_value(proxy).unwrap_or(Value::Null))
    }

    /// Still down at the end of its window (nobody enabled it behind the
    /// run's back).
    async fn effect(&self, _prepared: &Prepared) -> Result<Effect, ActionError> {
        let proxy = self.client.proxy(&self.proxy).await?;
        Ok(Effect::seen(
            !proxy.enabled,
            json!({"proxy": proxy.name, "enabled": proxy.enabled}),
        ))
    }

    async fn revert(&self, _prepared: &Prepared) -> Result<Value, ActionError> {
        let proxy = self.client.set_enabled(&self.proxy, true).await?;
        Ok(serde_json::to_value(proxy).unwrap_or(Value::Null))
    }

    fn lease(&self) -> Option<Duration> {
        self.lease
    }

    async fn renew(&self, _prepared: &Prepared) -> Result<Value, ActionError> {
        let Some(lease) = self.lease else {
            return Ok(Value::Null);
        };
        let proxy = self.client.renew_proxy_lease(&self.proxy, lease).await?;
        Ok(json!({"lease_remaining_ms": proxy.lease_remaining_ms}))
    }
}

/// `POST /reset`: every proxy enabled, every toxic removed.
#[derive(Debug, Clone)]
pub struct ProxyReset {
    client: ToxiproxyClient,
}

impl ProxyReset {
    pub fn new(client: ToxiproxyClient) -> Self {
        Self { client }
    }
}

#[async_trait::async_trait]
impl Action for ProxyReset {
    fn kind(&self) -> &'static str {
        "proxy_reset"
    }

    async fn run(&self) -> Result<Value, ActionError> {
        self.client.reset().await?;
        Ok(Value::from("every proxy enabled, every toxic removed"))
    }
}
