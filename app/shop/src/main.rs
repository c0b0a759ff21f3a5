use std::process::ExitCode;

fn main() -> ExitCode {
    faultline_shop::cli::main()
}
