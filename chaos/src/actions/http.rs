//! Generic HTTP actions: a fault admin API call and the call that undoes it.

use serde_json::{Value, json};

use super::{Action, ActionError, Effect, Fault, HttpRequest, Prepared, Services, UndoRecord};

/// A request that injects a fault, and optionally one that reverts it.
#[derive(Debug, Clone)]
pub struct HttpInjection {
    services: Services,
    request: HttpRequest,
    undo: Option<HttpRequest>,
}

impl HttpInjection {
    pub fn new(services: Services, request: HttpRequest, undo: Option<HttpRequest>) -> Self {
        Self {
            services,
            request,
            undo,
        }
    }
}

#[async_trait::async_trait]
impl Fault for HttpInjection {
    fn kind(&self) -> &'static str {
        "http"
    }

    async fn prepare(&self) -> Result<Prepared, ActionError> {
        Ok(Prepared {
            undo: self
                .undo
                .iter()
                .map(|request| UndoRecord::Http {
                    request: request.clone(),
                })
                .collect(),
            detail: json!({"request": self.request}),
        })
    }

    async fn inject(&self, _prepared: &Prepared) -> Result<Value, ActionError> {
        let (status, body) = self.request.send(&self.services.http).await?;
        Ok(json!({"status": status, "body": body}))
    }

    /// For a fault admin call (`POST .../faults` with a `kind`), asks the
    /// same URL which faults are active: the fault must be among them.
    /// Anything else cannot tell.
    async fn effect(&self, _prepared: &Prepared) -> Result<Effect, ActionError> {
        let kind = self
            .request
            .json
            .as_ref()
            .and_then(|json| json.get("kind"))
            .and_then(Value::as_str);
        let (Some(kind), true) = (kind, self.request.method.eq_ignore_ascii_case("POST")) else {
            return Ok(Effect::default());
        };
        let listing = HttpRequest {
            method: "GET".to_owned(),
            url: self.request.url.clone(),
            json: None,
            headers: self.request.headers.clone(),
            expect: Vec::new(),
        };
        let Ok((_, Value::Array(active))) = listing.send(&self.services.http).await else {
            return Ok(Effect::unknown(json!({"active_faults": "not readable"})));
        };
        let kinds: Vec<&str> = active
            .iter()
            .filter_map(|fault| fault.get("kind").and_then(Value::as_str))
            .collect();
        Ok(Effect::seen(
            kinds.contains(&kind),
            json!({"fault": kind, "active_faults": kinds}),
        ))
    }

    async fn revert(&self, _prepared: &Prepared) -> Result<Value, ActionError> {
        match &self.undo {
            Some(undo) => {
                let (status, body) = undo.send(&self.services.http).await?;
                Ok(json!({"status": status, "body": body}))
            }
            None => Ok(Value::from("nothing to undo")),
        }
    }
}

/// A request as a rollback action.
#[derive(Debug, Clone)]
pub struct HttpAction {
    services: Services,
    request: HttpRequest,
}

impl HttpAction {
    pub fn new(services: Services, request: HttpRequest) -> Self {
        Self { services, request }
    }
}

#[async_trait::async_trait]
impl Action for HttpAction {
    fn kind(&self) -> &'static str {
        "http"
    }

    async fn run(&self) -> Result<Value, ActionError> {
        let (status, body) = self.request.send(&self.services.http).await?;
        Ok(json!({"status": status, "body": body}))
    }
}
