//! The command line.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::error::BenchError;
use crate::plan::Plan;
use crate::procs::{self, EXEC_SHOP_ENV, Pinning};
use crate::run::{RunOptions, run};
use crate::servers::{self, ServeCommand};

/// What faultline's instrumentation, stacks and fault proxy cost, as ratios
/// measured side by side in one run.
///
/// Starts PostgreSQL and Redis (the local images faultline-local/postgres:15
/// and faultline-local/redis:7.0), a catalog and a gateway per telemetry
/// variant, a bare axum server, the fault proxy, gateways with each level of
/// the catalog cache and an OTLP sink, each in its own process; alternates
/// them in short rounds; then measures the memory of the five roles,
/// PostgreSQL with a hot standby, Redis, RabbitMQ (faultline-local/rabbitmq:3.10;
/// orders relays the outbox to it, the worker consumes from it) and a
/// PostgreSQL exporter per server (faultline-local/postgres-exporter:0.11).
/// Prints the results as Markdown; --json and --markdown also write them to
/// files.
///
/// Example: faultline-bench --json bench.json --markdown bench.md
#[derive(Debug, Parser)]
#[command(name = "faultline-bench", version, about, long_about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// A server the benchmark starts in its own process.
    #[command(hide = true)]
    Serve {
        #[command(subcommand)]
        what: ServeCommand,
    },
}

/// How to run the benchmarks.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// Run every benchmark briefly, as a smoke test (seconds; the numbers mean nothing).
    #[arg(long)]
    pub quick: bool,
    /// Measure figure 4 (the footprint) alone: no rounds, so no figures 1, 2,
    /// 3 and 5 (about a minute). PostgreSQL is then fresh, not after the
    /// rounds' load.
    #[arg(long)]
    pub footprint_only: bool,
    /// Rounds: each measures every variant once.
    #[arg(long)]
    pub rounds: Option<usize>,
    /// Length of each closed-loop and open-loop measurement.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub measure: Option<Duration>,
    /// Closed-loop workers.
    #[arg(long)]
    pub concurrency: Option<usize>,
    /// Figure 1's fixed rate as a fraction of the telemetry-off peak.
    #[arg(long)]
    pub load_fraction: Option<f64>,
    /// Figure 3's fixed rate, requests per second.
    #[arg(long)]
    pub proxy_rate: Option<f64>,
    /// Figure 5's fixed rate (the cache levels), requests per second.
    #[arg(long)]
    pub cache_rate: Option<f64>,
    /// Do not pin the load generator and the servers to different cores.
    #[arg(long)]
    pub no_pin: bool,
    /// Also write the results as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Also write the results as Markdown here.
    #[arg(long)]
    pub markdown: Option<PathBuf>,
    /// Where the servers' stderr goes (default: a new directory under the
    /// temporary directory, removed after a successful run).
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
}

impl RunArgs {
    /// The plan: quick or full, with the overrides.
    pub fn plan(&self) -> Plan {
        let mut plan = if self.quick {
            Plan::quick()
        } else {
            Plan::full()
        };
        if let Some(rounds) = self.rounds {
            plan.rounds = rounds.max(1);
        }
        if let Some(measure) = self.measure {
            plan.closed = measure;
            plan.open = measure;
        }
        if let Some(concurrency) = self.concurrency {
            plan.concurrency = concurrency.max(1);
        }
        if let Some(fraction) = self.load_fraction {
            plan.load_fraction = fraction;
        }
        if let Some(rate) = self.proxy_rate {
            plan.proxy_rate = rate;
        }
        if let Some(rate) = self.cache_rate {
            plan.cache_rate = rate;
        }
        plan
    }
}

/// The entry point of the binary.
pub fn main() -> ExitCode {
    if std::env::var_os(EXEC_SHOP_ENV).is_some() {
        // A shop role started by a benchmark: exactly the shop's binary.
        procs::exit_when_stdin_closes();
        return faultline_shop::cli::main();
    }
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Serve { what }) => runtime().and_then(|rt| rt.block_on(servers::serve(what))),
        None => run_benchmarks(&cli.run),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("faultline-bench: {err}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, BenchError> {
    faultline_signal::runtime().map_err(|err| BenchError::io("cannot start the async runtime", err))
}

fn run_benchmarks(args: &RunArgs) -> Result<(), BenchError> {
    let pinning = Pinning::detect(!args.no_pin);
    // Before the runtime exists: its threads inherit the affinity.
    if let Some(cpu) = pinning.client {
        procs::pin_self(cpu)?;
    }
    let (work_dir, temporary) = match &args.work_dir {
        Some(dir) => (dir.clone(), false),
        None => (
            std::env::temp_dir().join(format!("faultline-bench-{}", std::process::id())),
            true,
        ),
    };
    std::fs::create_dir_all(&work_dir)
        .map_err(|err| BenchError::io(format!("cannot create {}", work_dir.display()), err))?;
    let command = std::iter::once("faultline-bench".to_owned())
        .chain(std::env::args().skip(1))
        .collect::<Vec<_>>()
        .join(" ");
    let options = RunOptions {
        plan: args.plan(),
        quick: args.quick,
        footprint_only: args.footprint_only,
        pinning,
        work_dir: work_dir.clone(),
        command,
    };
    eprintln!(
        "[bench] {} run{}; pinning: {:?}; logs in {}",
        if args.quick { "quick" } else { "full" },
        if args.footprint_only {
            " of the footprint alone"
        } else {
            ""
        },
        pinning,
        work_dir.display()
    );
    let results = runtime()?.block_on(async {
        tokio::select! {
            results = run(options) => results,
            _ = tokio::signal::ctrl_c() => Err(BenchError::Interrupted),
        }
    })?;
    let markdown = results.to_markdown();
    if let Some(path) = &args.json {
        let json = serde_json::to_string_pretty(&results)?;
        std::fs::write(path, json + "\n").map_err(|source| BenchError::Write {
            path: path.clone(),
            source,
        })?;
    }
    if let Some(path) = &args.markdown {
        std::fs::write(path, &markdown).map_err(|source| BenchError::Write {
            path: path.clone(),
            source,
        })?;
    }
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{markdown}").map_err(|err| BenchError::io("cannot print", err))?;
    if temporary {
        let _ = std::fs::remove_dir_all(&work_dir);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_apply_to_the_plan() {
        let cli = Cli::try_parse_from([
            "faultline-bench",
            "--quick",
            "--rounds",
            "3",
            "--measure",
            "2s",
        ])
        .unwrap();
        let plan = cli.run.plan();
        assert_eq!(plan.rounds, 3);
        assert_eq!(plan.closed, Duration::from_secs(2));
        assert_eq!(plan.open, Duration::from_secs(2));
        assert_eq!(plan.concurrency, Plan::quick().concurrency);
        assert!(!cli.run.footprint_only);
        let cli = Cli::try_parse_from(["faultline-bench", "--footprint-only"]).unwrap();
        assert!(cli.run.footprint_only);
        assert_eq!(cli.run.plan(), Plan::full());
    }

    #[test]
    fn serve_is_a_hidden_subcommand() {
        let cli = Cli::try_parse_from([
            "faultline-bench",
            "serve",
            "proxy",
            "--upstream",
            "127.0.0.1:1",
        ])
        .unwrap();
        assert!(matches!(
            cli.command,
            Some(Command::Serve {
                what: ServeCommand::Proxy { .. }
            })
        ));
    }
}
