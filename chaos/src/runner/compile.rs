//! From an [`Experiment`] and the caller's [`Bindings`] to a runnable [`Plan`]:
//! endpoints resolved, `${...}` interpolated, clients built.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use faultline_proxy::{ClientError, ToxiproxyClient};
use serde_json::Value;

use super::{
    Bindings, Plan, PlannedAbort, PlannedAction, PlannedDuring, PlannedFault, PlannedProbe,
};
use crate::actions::container::{ContainerInjection, ContainerRollback};
use crate::actions::http::{HttpAction, HttpInjection};
use crate::actions::load::{LoadConfigError, LoadSurge, Loadgen};
use crate::actions::proxy::{ProxyOutage, ProxyReset, ToxicInjection};
use crate::actions::sql::{SqlInjection, connect_options};
use crate::actions::{ActionError, Fault, HttpRequest, Services, proxy_client};
use crate::environment::{Environment, EnvironmentError, Secret, SecretUrl, redact_json};
use crate::experiment::*;
use crate::identity::Bearer;
use crate::journal::ExperimentInfo;
use crate::probes::alert::{AlertCheck, NoAlert};
use crate::probes::http::HttpCheck;
use crate::probes::prometheus::{AlertSource, PrometheusClient};
use crate::probes::promql::PromqlCheck;
use crate::probes::sli::SliCheck;
use crate::probes::sql::{InvariantCheck, SqlCheck, lazy_pool};
use crate::probes::{Probe, ProbeError};

/// Why an experiment cannot run against this environment.
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    #[error("{what}: {source}")]
    Environment {
        what: String,
        source: EnvironmentError,
    },
    #[error("{what} needs target.{setting}; set it in [target], with --set {setting}=..., or FAULTLINE_TARGET_{}", setting.to_ascii_uppercase())]
    Missing { what: String, setting: &'static str },
    #[error("[load]: {0}")]
    Load(#[from] LoadConfigError),
    #[error("{what}: {source}")]
    Proxy {
        what: String,
        source: Box<ClientError>,
    },
    #[error("{what}: {source}")]
    Action {
        what: String,
        source: Box<ActionError>,
    },
    #[error("{what}: {source}")]
    Probe { what: String, source: ProbeError },
}

struct Compiler<'a> {
    env: Environment,
    /// The lease of proxy faults (`settings.lease`).
    lease: Duration,
    services: Services,
    bindings: &'a Bindings,
}

impl Compiler<'_> {
    fn text(&self, what: &str, text: &str) -> Result<String, CompileError> {
        self.env
            .interpolate(text)
            .map_err(|source| CompileError::Environment {
                what: what.to_owned(),
                source,
            })
    }

    fn required(&self, what: &str, setting: &'static str) -> Result<String, CompileError> {
        self.env
            .lookup(setting)
            .map(str::to_owned)
            .ok_or_else(|| CompileError::Missing {
                what: what.to_owned(),
                setting,
            })
    }

    /// A client for the target's proxy API, sending its `proxy_api_token`.
    fn proxy_client(&self, what: &str) -> Result<ToxiproxyClient, CompileError> {
        let api = self.required(what, "proxy_api")?;
        proxy_client(
            &api,
            self.env.proxy_api_token.as_ref(),
            self.services.http.clone(),
        )
        .map_err(|source| match source {
            ActionError::Proxy(source) => CompileError::Proxy {
                what: what.to_owned(),
                source: Box::new(source),
            },
            other => CompileError::Action {
                what: what.to_owned(),
                source: Box::new(other),
            },
        })
    }

    fn prometheus(&self, what: &str) -> Result<PrometheusClient, CompileError> {
        let url = self.required(what, "prometheus")?;
        Ok(PrometheusClient::new(&url, self.services.http.clone()))
    }

    fn alert_source(&self, what: &str) -> Result<Arc<dyn AlertSource>, CompileError> {
        match &self.bindings.alerts {
            Some(source) => Ok(source.clone()),
            None => Ok(Arc::new(self.prometheus(what)?)),
        }
    }

    /// The fault admin token for a request to `url` with `headers`: the
    /// target's, when `url` is a fault admin API's and the experiment does
    /// not set `Authorization` itself.
    fn fault_admin_bearer<'h>(
        &self,
        url: &str,
        mut headers: impl Iterator<Item = &'h String>,
    ) -> Option<Secret> {
        if headers.any(|name| name.eq_ignore_ascii_case("authorization")) {
            return None;
        }
        self.env.fault_admin_token_for(url).cloned()
    }

    /// Who a `bearer` sends a request as: tokens minted with the target's
    /// keys (read when a token is minted).
    fn bearer(
        &self,
        what: &str,
        spec: Option<&BearerSpec>,
    ) -> Result<Option<Bearer>, CompileError> {
        let Some(spec) = spec else {
            return Ok(None);
        };
        let keys = self.required(what, "keys")?;
        Ok(Some(Bearer::new(keys, &spec.subject, spec.role)))
    }

    fn request(&self, what: &str, spec: &HttpRequestSpec) -> Result<HttpRequest, CompileError> {
        let url = self.text(what, &spec.url)?;
        Ok(HttpRequest {
            method: spec.method.to_ascii_uppercase(),
            bearer: self.fault_admin_bearer(&url, spec.headers.keys()),
            url,
            json: spec.json.clone(),
            headers: spec.headers.clone(),
            expect: spec.expect.clone(),
        })
    }

    fn database(&self, what: &str, url: Option<&String>) -> Result<sqlx::PgPool, CompileError> {
        let url = match url {
            Some(url) => self.text(what, url)?,
            None => self.required(what, "database")?,
        };
        lazy_pool(&url).map_err(|source| CompileError::Probe {
            what: what.to_owned(),
            source,
        })
    }

    fn probe(&self, what: &str, kind: &ProbeKind) -> Result<Arc<dyn Probe>, CompileError> {
        Ok(match kind {
            ProbeKind::Http(probe) => {
                let url = self.text(what, &probe.url)?;
                Arc::new(HttpCheck {
                    http: self.services.http.clone(),
                    method: reqwest::Method::from_bytes(
                        probe.method.to_ascii_uppercase().as_bytes(),
                    )
                    .unwrap_or(reqwest::Method::GET),
                    bearer: self.fault_admin_bearer(&url, probe.request_headers.keys()),
                    mint: self.bearer(what, probe.bearer.as_ref())?,
                    url,
                    status: probe.status.clone(),
                    headers: probe.headers.clone(),
                    request_headers: probe
                        .request_headers
                        .iter()
                        .map(|(name, value)| Ok((name.clone(), self.text(what, value)?)))
                        .collect::<Result<_, CompileError>>()?,
                    body_contains: probe.body_contains.clone(),
                })
            }
            ProbeKind::Promql(probe) => Arc::new(PromqlCheck {
                client: self.prometheus(what)?,
                query: self.text(what, &probe.query)?,
                tolerance: probe.tolerance.clone(),
            }),
            ProbeKind::Alert(probe) => Arc::new(AlertCheck {
                source: self.alert_source(what)?,
                alert: probe.alert.clone(),
                state: probe.state,
                labels: probe.labels.clone(),
            }),
            ProbeKind::Sli(probe) => Arc::new(SliCheck {
                spec: probe.clone(),
            }),
            ProbeKind::Sql(probe) => Arc::new(SqlCheck {
                pool: self.database(what, probe.database.as_ref())?,
                query: self.text(what, &probe.query)?,
                params: probe
                    .params
                    .iter()
                    .map(|p| self.text(what, p))
                    .collect::<Result<_, _>>()?,
                tolerance: probe.tolerance.clone(),
            }),
            ProbeKind::Invariant(probe) => Arc::new(InvariantCheck {
                pool: self.database(what, probe.database.as_ref())?,
                invariant: probe.invariant,
                min_acknowledged: probe.min_acknowledged,
            }),
        })
    }

    fn probes(
        &self,
        section: &str,
        probes: &[ProbeSpec],
    ) -> Result<Vec<PlannedProbe>, CompileError> {
        probes
            .iter()
            .map(|p| {
                Ok(PlannedProbe {
                    name: p.name.clone(),
                    within: p.within,
                    probe: self.probe(&format!("{section} probe {:?}", p.name), &p.kind)?,
                })
            })
            .collect()
    }

    fn fault(&self, spec: &FaultSpec) -> Result<Arc<dyn Fault>, CompileError> {
        let what = format!("fault {:?}", spec.name);
        Ok(match &spec.kind {
            FaultKind::Toxic(toxic) => Arc::new(
                ToxicInjection::new(
                    self.proxy_client(&what)?,
                    &toxic.proxy,
                    toxic.new_toxic(),
                    toxic.ramp.clone(),
                )
                .with_lease(self.lease),
            ),
            FaultKind::ProxyDown(down) => Arc::new(
                ProxyOutage::new(self.proxy_client(&what)?, &down.proxy).with_lease(self.lease),
            ),
            FaultKind::Container(container) => Arc::new(ContainerInjection::new(
                self.services.clone(),
                container.clone(),
            )),
            FaultKind::Http(http) => {
                let request = self.request(&what, &HttpRequestSpec::from(http))?;
                let undo = http
                    .undo
                    .as_ref()
                    .map(|undo| self.request(&what, undo))
                    .transpose()?;
                let undo_bearer = http.undo.as_ref().and_then(|undo| undo.bearer.as_ref());
                Arc::new(
                    HttpInjection::new(self.services.clone(), request, undo).with_bearers(
                        self.bearer(&what, http.bearer.as_ref())?,
                        self.bearer(&what, undo_bearer)?,
                    ),
                )
            }
            FaultKind::Load(load) => Arc::new(LoadSurge::new(Loadgen::from_spec(load, &self.env)?)),
            FaultKind::Sql(sql) => {
                // The URL may hold a password: errors quote it redacted, if at all.
                let url =
                    self.env
                        .interpolate(&sql.url)
                        .map_err(|source| CompileError::Environment {
                            what: format!("{what}: url"),
                            source: source.redacted(),
                        })?;
                connect_options(&url).map_err(|reason| CompileError::Action {
                    what: format!("{what}: url"),
                    source: Box::new(ActionError::Config(reason)),
                })?;
                Arc::new(
                    SqlInjection::new(&spec.name, SecretUrl::new(url), &sql.statement, &sql.undo)
                        .with_verify(sql.verify.clone())
                        .with_timeout(sql.timeout),
                )
            }
        })
    }
}

/// Resolves an experiment against `[target]` overridden by the bindings.
pub fn compile(
    experiment: &Experiment,
    path: Option<&Path>,
    bindings: &Bindings,
) -> Result<Plan, CompileError> {
    let env = experiment.target.clone().overlay(&bindings.environment);
    let mut services = Services::new(env.docker.clone())
        .map_err(|source| CompileError::Action {
            what: "services".to_owned(),
            source: Box::new(source),
        })?
        .with_kubernetes(env.kubernetes.clone());
    if let Some(platform) = &bindings.platform {
        services = services.with_platform(platform.clone());
    }
    let compiler = Compiler {
        env: env.clone(),
        lease: experiment.settings.lease,
        services: services.clone(),
        bindings,
    };
    let settings = experiment.settings.clone();
    let load = match &experiment.load {
        Some(load) => {
            let loadgen: Arc<dyn crate::actions::load::LoadSource> =
                Arc::new(Loadgen::from_spec(load, &env)?);
            Some(loadgen)
        }
        None => None,
    };
    let faults = experiment
        .method
        .faults
        .iter()
        .map(|spec| {
            Ok(PlannedFault {
                name: spec.name.clone(),
                at: spec.at,
                duration: spec.duration,
                fault: compiler.fault(spec)?,
            })
        })
        .collect::<Result<Vec<_>, CompileError>>()?;
    let schedule_end = experiment
        .method
        .faults
        .iter()
        .map(|f| {
            let ramp = match &f.kind {
                FaultKind::Toxic(ToxicFault {
                    ramp: Some(ramp), ..
                }) => ramp.every * ramp.steps,
                _ => Duration::ZERO,
            };
            f.at + f.duration.unwrap_or(ramp)
        })
        .max()
        .unwrap_or_default();
    let method_duration = experiment
        .method
        .duration
        .unwrap_or(schedule_end)
        .max(Duration::from_secs(1));
    let during = experiment
        .during
        .iter()
        .map(|p| {
            Ok(PlannedDuring {
                name: p.name.clone(),
                every: p.every.unwrap_or(settings.probe_interval),
                must: p.must,
                abort: p.abort,
                probe: compiler.probe(&format!("during probe {:?}", p.name), &p.kind)?,
            })
        })
        .collect::<Result<Vec<_>, CompileError>>()?;
    // Alerts the experiment plans for never trip an alert limit.
    let planned_alerts: Vec<String> = experiment
        .expected_alerts
        .iter()
        .map(|e| e.alert.clone())
        .chain(experiment.allowed_alerts.iter().map(|a| a.alert.clone()))
        .collect();
    let abort_when = experiment
        .abort_when
        .iter()
        .map(|c| {
            let what = format!("abort_when {:?}", c.name);
            let probe: Arc<dyn Probe> = match &c.kind {
                AbortKind::Promql(probe) => {
                    compiler.probe(&what, &ProbeKind::Promql(probe.clone()))?
                }
                AbortKind::Sli(probe) => compiler.probe(&what, &ProbeKind::Sli(probe.clone()))?,
                AbortKind::Alert(alert) => Arc::new(NoAlert {
                    source: compiler.alert_source(&what)?,
                    alert: alert.alert.clone(),
                    labels: alert.all_labels(),
                    state: alert.state,
                    ignore: planned_alerts.clone(),
                }),
            };
            Ok(PlannedAbort {
                name: c.name.clone(),
                every: c.every.unwrap_or(Duration::from_secs(1)),
                probe,
            })
        })
        .collect::<Result<Vec<_>, CompileError>>()?;
    let rollbacks = experiment
        .rollbacks
        .iter()
        .map(|a| {
            let what = format!("rollback {:?}", a.name);
            let action: Arc<dyn crate::actions::Action> = match &a.kind {
                ActionKind::Http(request) => Arc::new(
                    HttpAction::new(services.clone(), compiler.request(&what, request)?)
                        .with_bearer(compiler.bearer(&what, request.bearer.as_ref())?),
                ),
                ActionKind::ProxyReset(_) => {
                    Arc::new(ProxyReset::new(compiler.proxy_client(&what)?))
                }
                ActionKind::Container(container) => Arc::new(ContainerRollback::new(
                    services.clone(),
                    (**container).clone(),
                )),
            };
            Ok(PlannedAction {
                name: a.name.clone(),
                action,
            })
        })
        .collect::<Result<Vec<_>, CompileError>>()?;
    // Alerts are watched whenever they can be: an experiment that expects
    // none still fails on any alert that fires (Watchdog aside).
    let alerts = if !experiment.expected_alerts.is_empty() || !experiment.allowed_alerts.is_empty()
    {
        Some(compiler.alert_source("expected_alerts")?)
    } else if bindings.alerts.is_some() || env.prometheus.is_some() {
        Some(compiler.alert_source("alerts")?)
    } else {
        None
    };
    Ok(Plan {
        info: ExperimentInfo {
            title: experiment.title.clone(),
            description: experiment.description.clone(),
            tags: experiment.tags.clone(),
            path: path.map(|p| p.display().to_string()),
            // For the journal: no password from a URL written in the file.
            spec: redact_json(serde_json::to_value(experiment).unwrap_or(Value::Null)),
        },
        environment: env,
        settings,
        load,
        steady_state: compiler.probes("steady_state", &experiment.steady_state.probes)?,
        method_duration,
        faults,
        during,
        abort_when,
        rollbacks,
        recovery_deadline: experiment.recovery.deadline,
        recovery: compiler.probes("recovery", &experiment.recovery.probes)?,
        after: compiler.probes("after", &experiment.after)?,
        expected_alerts: experiment.expected_alerts.clone(),
        allowed_alerts: experiment.allowed_alerts.clone(),
        alerts,
    })
}
