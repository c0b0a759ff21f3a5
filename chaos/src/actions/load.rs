//! Load from `faultline_loadgen`: the experiment's background load
//! ([`LoadSource`]) and extra load as a fault ([`LoadSurge`]).

use std::sync::{Mutex, PoisonError};

use faultline_loadgen::{Config, Mix, Mode, Report, Window};
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use url::Url;

use super::{ActionError, Fault, Prepared};
use crate::environment::{Environment, EnvironmentError};
use crate::experiment::LoadSpec;

/// Receives each stats window.
pub type WindowSink = Box<dyn FnMut(&Window) + Send>;

/// Something that generates load until cancelled, reporting windows.
#[async_trait::async_trait]
pub trait LoadSource: Send + Sync + std::fmt::Debug {
    /// Runs until `cancel` fires (or its own limits); returns the report.
    async fn run(&self, cancel: CancellationToken, sink: WindowSink) -> Result<Report, String>;
}

/// The load generator library.
#[derive(Debug, Clone)]
pub struct Loadgen {
    pub config: Config,
}

impl Loadgen {
    /// The loadgen configuration a `[load]` section describes.
    pub fn from_spec(spec: &LoadSpec, env: &Environment) -> Result<Self, LoadConfigError> {
        let target = env.interpolate(&spec.target)?;
        let target = Url::parse(&target).map_err(|err| LoadConfigError::Url(target, err))?;
        let mut config = Config::new(target);
        config.mode = match spec.rate {
            Some(rate) => Mode::Open { rate },
            None => Mode::Closed,
        };
        config.concurrency = spec.concurrency;
        config.timeout = spec.timeout;
        config.window = spec.window;
        config.seed = spec.seed;
        if let Some(mix) = &spec.mix {
            config.mix = mix
                .parse::<Mix>()
                .map_err(|err| LoadConfigError::Mix(err.to_string()))?;
        }
        if let Some(ratio) = spec.retry_ratio {
            config.retry_ratio = ratio;
        }
        config.max_failed_kept = 200;
        config.client_id = spec.client_id.clone();
        config
            .validate()
            .map_err(|err| LoadConfigError::Mix(err.to_string()))?;
        Ok(Self { config })
    }
}

/// A `[load]` section that cannot run.
#[derive(Debug, thiserror::Error)]
pub enum LoadConfigError {
    #[error(transparent)]
    Environment(#[from] EnvironmentError),
    #[error("load target {0:?} is not a URL: {1}")]
    Url(String, url::ParseError),
    #[error("{0}")]
    Mix(String),
}

#[async_trait::async_trait]
impl LoadSource for Loadgen {
    async fn run(&self, cancel: CancellationToken, mut sink: WindowSink) -> Result<Report, String> {
        faultline_loadgen::run(self.config.clone(), cancel, move |window: &Window| {
            sink(window);
        })
        .await
        .map_err(|err| err.to_string())
    }
}

/// A running surge: how to stop it, and its task.
type Running = (CancellationToken, JoinHandle<Result<Report, String>>);

/// Extra load for the fault's duration (a surge).
#[derive(Debug)]
pub struct LoadSurge {
    load: Loadgen,
    running: Mutex<Option<Running>>,
}

impl LoadSurge {
    pub fn new(load: Loadgen) -> Self {
        Self {
            load,
            running: Mutex::new(None),
        }
    }
}

#[async_trait::async_trait]
impl Fault for LoadSurge {
    fn kind(&self) -> &'static str {
        "load"
    }

    async fn inject(&self, _prepared: &Prepared) -> Result<Value, ActionError> {
        let cancel = CancellationToken::new();
        let load = self.load.clone();
        let token = cancel.clone();
        let handle = tokio::spawn(async move { load.run(token, Box::new(|_: &Window| {})).await });
        *self.running.lock().unwrap_or_else(PoisonError::into_inner) = Some((cancel, handle));
        Ok(json!({"target": self.load.config.target.as_str(), "mode": self.load.config.mode}))
    }

    async fn revert(&self, _prepared: &Prepared) -> Result<Value, ActionError> {
        let running = self
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let Some((cancel, handle)) = running else {
            return Ok(Value::from("not running"));
        };
        cancel.cancel();
        let report = handle
            .await
            .map_err(|err| ActionError::Load(err.to_string()))?
            .map_err(ActionError::Load)?;
        Ok(json!({"totals": report.totals, "achieved_rate": report.achieved_rate}))
    }
}
