use std::process::ExitCode;

fn main() -> ExitCode {
    faultline_bench::cli::main()
}
