//! The command line: `faultline-shop loadgen [FLAGS]`. Every flag has a
//! `FAULTLINE_LOADGEN_*` environment variable.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use faultline_auth::{KeyDir, KeyError, Minter};
use tokio_util::sync::CancellationToken;
use url::Url;

use crate::config::{Config, Customers, Mode};
use crate::engine::run;
use crate::mix::Mix;
use crate::progress::Progress;
use crate::report::Report;

/// Flags of the `loadgen` subcommand.
#[derive(Debug, Clone, clap::Args)]
pub struct LoadgenArgs {
    /// Base URL of the gateway.
    #[arg(
        long,
        env = "FAULTLINE_LOADGEN_TARGET",
        default_value = "http://127.0.0.1:8080"
    )]
    pub target: Url,

    /// Open loop at this many requests per second (latency measured from the
    /// intended send time). Without it: closed loop, for peak throughput.
    #[arg(long, env = "FAULTLINE_LOADGEN_RATE")]
    pub rate: Option<f64>,

    /// Most requests in flight (open loop; more are dropped), or number of
    /// workers (closed loop).
    #[arg(long, env = "FAULTLINE_LOADGEN_CONCURRENCY", default_value_t = 32)]
    pub concurrency: usize,

    /// Stop after this long (e.g. 30s, 5m). Without it nor --requests: run
    /// until Ctrl-C or SIGTERM.
    #[arg(long, env = "FAULTLINE_LOADGEN_DURATION", value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,

    /// Stop after this many planned requests (checkout retries come on top).
    #[arg(long, env = "FAULTLINE_LOADGEN_REQUESTS")]
    pub requests: Option<u64>,

    /// Per-request timeout, body included.
    #[arg(long, env = "FAULTLINE_LOADGEN_TIMEOUT", default_value = "2s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,

    /// Seed of the traffic mix, to replay the same plan (random if absent;
    /// the report says which).
    #[arg(long, env = "FAULTLINE_LOADGEN_SEED")]
    pub seed: Option<u64>,

    /// Relative weights of the requests.
    #[arg(
        long,
        env = "FAULTLINE_LOADGEN_MIX",
        default_value = "list=60,product=25,checkout=10,order=5"
    )]
    pub mix: Mix,

    /// Probability that a checkout is sent again with the same
    /// Idempotency-Key and body.
    #[arg(long, env = "FAULTLINE_LOADGEN_RETRY_RATIO", default_value_t = 0.05)]
    pub retry_ratio: f64,

    /// Most distinct items in a checkout.
    #[arg(long, env = "FAULTLINE_LOADGEN_MAX_ITEMS", default_value_t = 3)]
    pub max_items: u32,

    /// Largest quantity of one item.
    #[arg(long, env = "FAULTLINE_LOADGEN_MAX_QUANTITY", default_value_t = 2)]
    pub max_quantity: u32,

    /// Product ids 1..=N are used until a product listing succeeds.
    #[arg(
        long,
        env = "FAULTLINE_LOADGEN_FALLBACK_PRODUCTS",
        default_value_t = 10
    )]
    pub fallback_products: u32,

    /// Length of a stats window (progress updates, --timeline).
    #[arg(long, env = "FAULTLINE_LOADGEN_WINDOW", default_value = "1s", value_parser = humantime::parse_duration)]
    pub window: Duration,

    /// Include every window in the JSON report (`windows`).
    #[arg(long, env = "FAULTLINE_LOADGEN_TIMELINE")]
    pub timeline: bool,

    /// How many failed requests the report lists.
    #[arg(long, env = "FAULTLINE_LOADGEN_MAX_FAILED_KEPT", default_value_t = 50)]
    pub max_failed_kept: usize,

    /// Send no `traceparent`: the services then sample as they would for any
    /// client (by default every request carries a sampled one, so the whole
    /// load is traced).
    #[arg(long, env = "FAULTLINE_LOADGEN_NO_TRACEPARENT")]
    pub no_traceparent: bool,

    /// A key directory (`faultline-shop keys init`): its current key signs
    /// the customers' bearer tokens. Without it no request carries a token.
    #[arg(long, env = "FAULTLINE_LOADGEN_KEYS", value_name = "DIR")]
    pub keys: Option<PathBuf>,

    /// How many distinct customers place and read orders (with --keys).
    #[arg(
        long,
        env = "FAULTLINE_LOADGEN_CUSTOMERS",
        default_value_t = 50,
        value_parser = clap::value_parser!(u32).range(1..=i64::from(Customers::MAX)),
        requires = "keys"
    )]
    pub customers: u32,

    /// The customers' subjects are <PREFIX>-1 to <PREFIX>-N; with
    /// --customers 1, the prefix itself (one named client).
    #[arg(
        long,
        env = "FAULTLINE_LOADGEN_SUBJECT_PREFIX",
        default_value = "customer",
        value_name = "PREFIX",
        requires = "keys"
    )]
    pub subject_prefix: String,

    /// Product reads carry the customer's token too (the gateway then
    /// rate-limits them by subject, not by address). Without it they are
    /// anonymous.
    #[arg(long, env = "FAULTLINE_LOADGEN_AUTHENTICATED_READS", requires = "keys")]
    pub authenticated_reads: bool,

    /// Print the report as JSON on stdout instead of the summary table.
    #[arg(long, env = "FAULTLINE_LOADGEN_JSON")]
    pub json: bool,

    /// No progress on stderr.
    #[arg(long, env = "FAULTLINE_LOADGEN_QUIET")]
    pub quiet: bool,

    /// When stderr is not a terminal, print a progress line this often.
    #[arg(long, env = "FAULTLINE_LOADGEN_PROGRESS_INTERVAL", default_value = "5s", value_parser = humantime::parse_duration)]
    pub progress_interval: Duration,

    /// Exit with status 1 when the overall error ratio exceeds this (0..=1).
    #[arg(long, env = "FAULTLINE_LOADGEN_MAX_ERROR_RATIO")]
    pub max_error_ratio: Option<f64>,
}

impl LoadgenArgs {
    /// The library configuration these flags describe; with `--keys`, reads
    /// the directory's current signing key.
    pub fn to_config(&self) -> Result<Config, KeyError> {
        let customers = match &self.keys {
            Some(dir) => {
                let key = KeyDir::new(dir).signing_key(None)?;
                let mut customers =
                    Customers::new(Minter::new(key), self.customers, &*self.subject_prefix);
                customers.authenticated_reads = self.authenticated_reads;
                Some(customers)
            }
            None => None,
        };
        Ok(Config {
            target: self.target.clone(),
            mode: match self.rate {
                Some(rate) => Mode::Open { rate },
                None => Mode::Closed,
            },
            concurrency: self.concurrency,
            duration: self.duration,
            requests: self.requests,
            timeout: self.timeout,
            seed: self.seed,
            mix: self.mix,
            retry_ratio: self.retry_ratio,
            max_items: self.max_items,
            max_quantity: self.max_quantity,
            fallback_products: self.fallback_products,
            window: self.window,
            keep_windows: self.timeline,
            max_failed_kept: self.max_failed_kept,
            traceparent: !self.no_traceparent,
            customers,
        })
    }
}

/// Whether `report` passes the `--max-error-ratio` gate.
pub fn exit_code(report: &Report, max_error_ratio: Option<f64>) -> ExitCode {
    match max_error_ratio {
        Some(max) if report.totals.error_ratio > max => ExitCode::FAILURE,
        _ => ExitCode::SUCCESS,
    }
}

/// Runs the load generator as a command: progress on stderr, the summary
/// (or JSON) on stdout, stops early on Ctrl-C or SIGTERM.
///
/// Exit code 0, or 1 when `--max-error-ratio` is exceeded. Errors (a bad
/// configuration, stdout closed) are returned.
pub async fn run_cli(args: LoadgenArgs) -> anyhow::Result<ExitCode> {
    let config = args.to_config().with_context(|| match &args.keys {
        Some(dir) => format!("cannot read the signing key of --keys {}", dir.display()),
        None => "invalid flags".to_owned(),
    })?;
    let cancel = CancellationToken::new();
    let signals = tokio::spawn(cancel_on_signal(cancel.clone()));
    let mut progress = Progress::for_stderr(&config, args.quiet, args.progress_interval);
    let result = run(config, cancel, |w: &crate::Window| progress.on_window(w)).await;
    signals.abort();
    progress.finish();
    let report = result?;

    let mut stdout = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut stdout, &report)?;
        writeln!(stdout)?;
    } else {
        write!(stdout, "{}", report.summary_text())?;
    }
    stdout.flush()?;
    Ok(exit_code(&report, args.max_error_ratio))
}

/// Cancels on Ctrl-C or SIGTERM (what `docker stop` sends).
async fn cancel_on_signal(cancel: CancellationToken) {
    faultline_signal::shutdown().await;
    cancel.cancel();
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: LoadgenArgs,
    }

    #[test]
    fn flags_parse_into_a_config() {
        let cli = Cli::try_parse_from([
            "loadgen",
            "--target",
            "http://gateway:8080",
            "--rate",
            "50",
            "--duration",
            "1m 30s",
            "--mix",
            "list=1,checkout=1",
            "--seed",
            "9",
            "--json",
            "--max-error-ratio",
            "0.01",
        ])
        .unwrap();
        let config = cli.args.to_config().unwrap();
        assert_eq!(config.mode, Mode::Open { rate: 50.0 });
        assert_eq!(config.duration, Some(Duration::from_secs(90)));
        assert_eq!(config.mix.checkout, 1);
        assert_eq!(config.seed, Some(9));
        assert_eq!(config.target.as_str(), "http://gateway:8080/");
        assert!(cli.args.json);
        assert_eq!(cli.args.max_error_ratio, Some(0.01));
        assert_eq!(config.validate(), Ok(()));
    }

    #[test]
    fn defaults_are_a_closed_loop() {
        let cli = Cli::try_parse_from(["loadgen"]).unwrap();
        let config = cli.args.to_config().unwrap();
        assert_eq!(config.mode, Mode::Closed);
        assert_eq!(config.timeout, Duration::from_secs(2));
        assert_eq!(config.mix, Mix::default());
        assert!(config.customers.is_none(), "no token without --keys");
        assert_eq!(config.validate(), Ok(()));
    }

    #[test]
    fn keys_make_customers_signed_by_the_current_key() {
        let dir = tempfile::tempdir().unwrap();
        let keys = KeyDir::new(dir.path());
        let kid = keys.ensure().unwrap();
        let path = dir.path().to_str().unwrap();
        let cli = Cli::try_parse_from(["loadgen", "--keys", path]).unwrap();
        let customers = cli.args.to_config().unwrap().customers.unwrap();
        assert_eq!(customers.minter.key().kid(), kid);
        assert_eq!(customers.count, 50);
        assert_eq!(customers.subject(49), "customer-50");
        assert!(!customers.authenticated_reads);
        assert_eq!(customers.ttl, Customers::DEFAULT_TTL);

        let cli = Cli::try_parse_from([
            "loadgen",
            "--keys",
            path,
            "--customers",
            "1",
            "--subject-prefix",
            "flooding-client",
            "--authenticated-reads",
        ])
        .unwrap();
        let customers = cli.args.to_config().unwrap().customers.unwrap();
        assert_eq!(
            customers.subjects().collect::<Vec<_>>(),
            ["flooding-client"]
        );
        assert!(customers.authenticated_reads);

        // A directory without keys is named.
        let empty = tempfile::tempdir().unwrap();
        let cli =
            Cli::try_parse_from(["loadgen", "--keys", empty.path().to_str().unwrap()]).unwrap();
        let err = cli.args.to_config().unwrap_err().to_string();
        assert!(err.contains(&empty.path().display().to_string()), "{err}");
    }

    #[test]
    fn bad_values_are_refused() {
        assert!(Cli::try_parse_from(["loadgen", "--mix", "list=x"]).is_err());
        assert!(Cli::try_parse_from(["loadgen", "--duration", "soon"]).is_err());
        assert!(Cli::try_parse_from(["loadgen", "--target", "not a url"]).is_err());
        assert!(Cli::try_parse_from(["loadgen", "--keys", "k", "--customers", "0"]).is_err());
        assert!(Cli::try_parse_from(["loadgen", "--keys", "k", "--customers", "100001"]).is_err());
        // Customers mean nothing without a key to sign their tokens.
        assert!(Cli::try_parse_from(["loadgen", "--customers", "5"]).is_err());
        assert!(Cli::try_parse_from(["loadgen", "--subject-prefix", "x"]).is_err());
        assert!(Cli::try_parse_from(["loadgen", "--client-id", "x"]).is_err());
    }
}
