//! Generic HTTP actions: a fault admin API call and the call that undoes it.

use serde_json::{Value, json};

use super::{Action, ActionError, Fault, HttpRequest, Prepared, Services, UndoRecord};

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
