//! Generic HTTP actions: a fault admin API call and the call that undoes it.
//! A request to a fault admin API carries the target's `fault_admin_token`
//! ([`HttpRequest::bearer`], set when the plan is compiled); the journal
//! shows it as `***`. A request with a `bearer` carries instead a token
//! minted for its subject right before it is sent (the undo written to the
//! ledger, one valid for an hour, for `faultline cleanup`).

use std::borrow::Cow;
use std::time::Duration;

use serde_json::{Value, json};

use super::{Action, ActionError, Effect, Fault, HttpRequest, Prepared, Services, UndoRecord};
use crate::identity::{Bearer, LEDGER_TOKEN_TTL, REQUEST_TOKEN_TTL};

/// `request` with a token freshly minted by `bearer`, valid for `ttl`.
fn signed<'r>(
    request: &'r HttpRequest,
    bearer: Option<&Bearer>,
    ttl: Duration,
) -> Result<Cow<'r, HttpRequest>, ActionError> {
    let Some(bearer) = bearer else {
        return Ok(Cow::Borrowed(request));
    };
    let token = bearer
        .mint(ttl)
        .map_err(|err| ActionError::Config(err.to_string()))?;
    Ok(Cow::Owned(HttpRequest {
        bearer: Some(token),
        ..request.clone()
    }))
}

/// A request that injects a fault, and optionally one that reverts it.
#[derive(Debug, Clone)]
pub struct HttpInjection {
    services: Services,
    request: HttpRequest,
    undo: Option<HttpRequest>,
    /// Who the request, and the undo, are sent as (their `bearer`).
    request_bearer: Option<Bearer>,
    undo_bearer: Option<Bearer>,
}

impl HttpInjection {
    pub fn new(services: Services, request: HttpRequest, undo: Option<HttpRequest>) -> Self {
        Self {
            services,
            request,
            undo,
            request_bearer: None,
            undo_bearer: None,
        }
    }

    /// Sends the request and the undo with tokens minted by these.
    pub fn with_bearers(mut self, request: Option<Bearer>, undo: Option<Bearer>) -> Self {
        self.request_bearer = request;
        self.undo_bearer = undo;
        self
    }

    fn request(&self) -> Result<Cow<'_, HttpRequest>, ActionError> {
        signed(
            &self.request,
            self.request_bearer.as_ref(),
            REQUEST_TOKEN_TTL,
        )
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
                .map(|request| {
                    Ok(UndoRecord::Http {
                        request: signed(request, self.undo_bearer.as_ref(), LEDGER_TOKEN_TTL)?
                            .into_owned(),
                    })
                })
                .collect::<Result<_, ActionError>>()?,
            detail: json!({"request": self.request.redacted()}),
        })
    }

    async fn inject(&self, _prepared: &Prepared) -> Result<Value, ActionError> {
        let (status, body) = self.request()?.send(&self.services.http).await?;
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
            bearer: self.request()?.bearer.clone(),
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
                let undo = signed(undo, self.undo_bearer.as_ref(), REQUEST_TOKEN_TTL)?;
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
    bearer: Option<Bearer>,
}

impl HttpAction {
    pub fn new(services: Services, request: HttpRequest) -> Self {
        Self {
            services,
            request,
            bearer: None,
        }
    }

    /// Sends the request with a token minted by `bearer` (its `bearer`).
    pub fn with_bearer(mut self, bearer: Option<Bearer>) -> Self {
        self.bearer = bearer;
        self
    }
}

#[async_trait::async_trait]
impl Action for HttpAction {
    fn kind(&self) -> &'static str {
        "http"
    }

    async fn run(&self) -> Result<Value, ActionError> {
        let request = signed(&self.request, self.bearer.as_ref(), REQUEST_TOKEN_TTL)?;
        let (status, body) = request.send(&self.services.http).await?;
        Ok(json!({"status": status, "body": body}))
    }
}
