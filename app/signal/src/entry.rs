//! The boilerplate of a binary's `main`.

use std::fmt::Display;
use std::future::Future;
use std::process::ExitCode;

/// The runtime every faultline binary runs on: multi-threaded, with I/O and
/// timers.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
}

/// Runs `main` to completion on a fresh [`runtime`], and returns its exit code.
///
/// If the runtime cannot start, or `main` fails, the error is logged
/// (`error`, "exiting"), printed to stderr as `program: error` (with `{:#}`,
/// so an `anyhow::Error` shows its causes), and `failure` is returned.
pub fn run_main<E: Display>(
    program: &str,
    failure: ExitCode,
    main: impl Future<Output = Result<ExitCode, E>>,
) -> ExitCode {
    let result = match runtime() {
        Ok(runtime) => runtime.block_on(main),
        Err(err) => {
            return fail(
                program,
                failure,
                &format!("cannot start the async runtime: {err}"),
            );
        }
    };
    match result {
        Ok(code) => code,
        Err(err) => fail(program, failure, &format!("{err:#}")),
    }
}

fn fail(program: &str, failure: ExitCode, message: &str) -> ExitCode {
    tracing::error!(error = message, "exiting");
    eprintln!("{program}: {message}");
    failure
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_the_code_of_main_or_the_failure_code() {
        let ok = run_main("test", ExitCode::from(2), async {
            Ok::<_, String>(ExitCode::from(7))
        });
        assert_eq!(ok, ExitCode::from(7));
        let failed = run_main("test", ExitCode::from(2), async {
            Err::<ExitCode, _>("broken".to_owned())
        });
        assert_eq!(failed, ExitCode::from(2));
    }
}
