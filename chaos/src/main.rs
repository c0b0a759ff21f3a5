use clap::Parser;

/// faultline: chaos experiments against the faultline stack.
#[derive(Debug, Parser)]
#[command(name = "faultline", version, about, long_about)]
struct Cli {}

fn main() {
    Cli::parse();
}
