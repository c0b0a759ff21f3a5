//! `faultline`: chaos experiments against the faultline stack.
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use faultline_proxy::cli::ProxyArgs;

mod cli;

/// faultline: chaos experiments against the faultline stack.
///
/// An experiment (TOML) states a steady-state hypothesis, injects faults
/// (proxy toxics, container actions, fault admin calls, load), probes the
/// system while they last, always rolls them back, checks that the system
/// recovers and that the expected alerts fired, and writes a JSON journal.
#[derive(Debug, Parser)]
#[command(
    name = "faultline",
    version,
    about,
    long_about,
    after_help = "\
Examples:
  faultline list
  faultline validate chaos/experiments/
  faultline run chaos/experiments/kill-replica.toml --report reports/
  faultline gameday --seed 42 --duration 30m --cooldown 60s --report gameday/ chaos/experiments/
  faultline report faultline-journals/kill-replica-<run>.json
  faultline cleanup
  faultline coverage target/chaos-reports/
  faultline regress <journal>.json --rules alerts/compressed/*.rules.yml --out x.test.yml
  faultline proxy --listen 0.0.0.0:8474

Exit codes: 0 passed, 1 the hypothesis failed, 2 error or interrupted,
3 aborted by an [[abort_when]] limit (its faults rolled back early)."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run an experiment: steady state, faults, rollback, recovery, verdict.
    Run(cli::run::RunArgs),
    /// A game day: experiments in a seeded order, with cool-downs, within a
    /// time budget, and one combined report.
    Gameday(cli::gameday::GameDayArgs),
    /// Check experiment files (and that the target defines what they use).
    Validate(cli::validate::ValidateArgs),
    /// List the experiments in a directory.
    List(cli::list::ListArgs),
    /// Render a journal as Markdown plus a timeline plot (SVG and PNG).
    Report(cli::report::ReportArgs),
    /// Undo the faults that killed runs left behind.
    Cleanup(cli::cleanup::CleanupArgs),
    /// The detection coverage table (Markdown) of a set of journals.
    Coverage(cli::coverage::CoverageArgs),
    /// A promtool unit test that replays the evidence of a journal.
    Regress(cli::regress::RegressArgs),
    /// Run the fault proxy: TCP proxies with toxics, driven by a
    /// Toxiproxy-compatible HTTP API.
    Proxy(ProxyArgs),
    /// Reverts a run's faults once the run's process is gone (started by
    /// `faultline run`).
    #[command(hide = true)]
    Guardian(cli::guardian::GuardianArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    faultline_signal::run_main("faultline", ExitCode::from(2), async {
        run(cli.command).await.map(ExitCode::from)
    })
}

async fn run(command: Command) -> anyhow::Result<u8> {
    match command {
        Command::Run(args) => args.run().await,
        Command::Gameday(args) => args.run().await,
        Command::Validate(args) => args.run().await,
        Command::List(args) => args.run(),
        Command::Report(args) => args.run(),
        Command::Cleanup(args) => args.run().await,
        Command::Coverage(args) => args.run(),
        Command::Regress(args) => args.run(),
        Command::Guardian(args) => args.run().await,
        Command::Proxy(args) => {
            let telemetry =
                faultline_telemetry::Telemetry::init("faultline-proxy", env!("CARGO_PKG_VERSION"))
                    .context("cannot set up telemetry")?;
            let result = args.run(faultline_signal::shutdown()).await;
            telemetry.shutdown();
            result?;
            Ok(0)
        }
    }
}
