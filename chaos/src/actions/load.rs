//! Load from `faultline_loadgen`: the experiment's background load
//! ([`LoadSource`]) and extra load as a fault ([`LoadSurge`]).

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use faultline_loadgen::{Config, Customers, Mix, Mode, Report, Window};
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use url::Url;

use super::{ActionError, Fault, Prepared};
use crate::environment::{Environment, EnvironmentError};
use crate::experiment::LoadSpec;
use crate::identity::{self, IdentityError};

/// How many customers a load with checkouts or order reads acts as, unless
/// it says (`customers`) or names one (`subject`).
pub const DEFAULT_CUSTOMERS: u32 = 50;
/// The customers' subjects: `customer-1` to `customer-<n>`.
pub const CUSTOMER_PREFIX: &str = "customer";

/// Receives each stats window.
pub type WindowSink = Box<dyn FnMut(&Window) + Send>;

/// Something that generates load until cancelled, reporting windows.
#[async_trait::async_trait]
pub trait LoadSource: Send + Sync + std::fmt::Debug {
    /// Runs until `cancel` fires (or its own limits); returns the report.
    async fn run(&self, cancel: CancellationToken, sink: WindowSink) -> Result<Report, String>;

    /// The length of its stats windows: how long after a moment the window
    /// holding it is reported.
    fn window(&self) -> Duration;
}

/// The load generator library.
#[derive(Debug, Clone)]
pub struct Loadgen {
    /// The configuration, but for its customers.
    pub config: Config,
    /// Who the load acts as; `None`: it sends no token.
    pub customers: Option<LoadCustomers>,
}

/// The customers of a load, made when it starts: their tokens are signed
/// with the current key of the target's key directory, read then (so that
/// compiling a plan, for `validate` or a dry run, needs no key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadCustomers {
    /// The key directory (`target.keys`).
    pub keys: String,
    /// One named customer (`subject`), whose token goes with every request;
    /// else `count` customers `customer-1` to `customer-<count>`.
    pub subject: Option<String>,
    pub count: u32,
    /// Sign with an untrusted key under the current key's id (see
    /// [`LoadSpec::forged_tokens`]).
    pub forged: bool,
}

impl LoadCustomers {
    /// The load generator's customers, with a minter of the current key (or,
    /// forged, of a fresh key nobody trusts, under the current key's id).
    pub fn resolve(&self) -> Result<Customers, IdentityError> {
        let mut minter = identity::minter(&self.keys)?;
        if self.forged {
            minter = identity::forger(&minter)?;
        }
        Ok(match &self.subject {
            Some(subject) => Customers::one(minter, subject),
            None => Customers::new(minter, self.count, CUSTOMER_PREFIX),
        })
    }
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
        config
            .validate()
            .map_err(|err| LoadConfigError::Mix(err.to_string()))?;
        let customers = if spec.needs_tokens() {
            let keys = env.keys.clone().ok_or(LoadConfigError::NoKeys)?;
            Some(LoadCustomers {
                keys,
                subject: spec.subject.clone(),
                count: match spec.subject {
                    Some(_) => 1,
                    None => spec.customers.unwrap_or(DEFAULT_CUSTOMERS),
                },
                forged: spec.forged_tokens,
            })
        } else {
            None
        };
        Ok(Self { config, customers })
    }

    /// The configuration the load runs with: its customers made, their
    /// signing key read.
    pub fn resolved_config(&self) -> Result<Config, LoadConfigError> {
        let mut config = self.config.clone();
        config.customers = self
            .customers
            .as_ref()
            .map(LoadCustomers::resolve)
            .transpose()?;
        config
            .validate()
            .map_err(|err| LoadConfigError::Mix(err.to_string()))?;
        Ok(config)
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
    #[error(
        "its customers send bearer tokens, minted with a key directory: set target.keys \
         (in [target], with --var keys=DIR, or FAULTLINE_TARGET_KEYS)"
    )]
    NoKeys,
    #[error(transparent)]
    Keys(#[from] IdentityError),
}

#[async_trait::async_trait]
impl LoadSource for Loadgen {
    fn window(&self) -> Duration {
        self.config.window
    }

    async fn run(&self, cancel: CancellationToken, mut sink: WindowSink) -> Result<Report, String> {
        let config = self.resolved_config().map_err(|err| err.to_string())?;
        faultline_loadgen::run(config, cancel, move |window: &Window| {
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use faultline_auth::{AuthError, KeyDir, KeySet, Policy, Role, Verifier};

    use super::*;

    #[test]
    fn forged_customers_sign_with_a_key_the_jwks_does_not_hold() {
        let dir = tempfile::tempdir().unwrap();
        let keys = KeyDir::new(dir.path());
        keys.ensure().unwrap();
        let jwks = serde_json::to_string(&keys.jwks().unwrap()).unwrap();
        let verifier = Verifier::new(KeySet::from_jwks(&jwks).unwrap().0, Policy::default());
        let customers = |forged| {
            LoadCustomers {
                keys: dir.path().display().to_string(),
                subject: None,
                count: 3,
                forged,
            }
            .resolve()
            .unwrap()
        };
        let token = |customers: Customers| {
            customers
                .minter
                .token("customer-1", Role::Customer, Duration::from_secs(60))
                .unwrap()
        };
        assert!(verifier.verify(&token(customers(false))).is_ok());
        assert_eq!(
            verifier.verify(&token(customers(true))),
            Err(AuthError::Signature)
        );
    }
}
