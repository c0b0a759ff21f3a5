//! The `faultline` subcommands other than `proxy`.
#![allow(
    clippy::print_stdout,
    reason = "a command-line interface prints its results"
)]

pub mod cleanup;
pub mod coverage;
pub mod dry_run;
pub mod gameday;
pub mod guardian;
pub mod list;
pub mod progress;
pub mod regress;
pub mod report;
pub mod run;
pub mod style;
pub mod validate;

use std::path::{Path, PathBuf};

/// The experiments directory to use when none is given.
pub fn default_experiments_dir() -> PathBuf {
    for candidate in ["experiments", "chaos/experiments"] {
        if Path::new(candidate).is_dir() {
            return PathBuf::from(candidate);
        }
    }
    PathBuf::from("experiments")
}

/// `*.toml` files: the paths given, with directories expanded.
pub fn experiment_files(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(path)?
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "toml"))
                .collect();
            found.sort();
            files.extend(found);
        } else {
            files.push(path.clone());
        }
    }
    Ok(files)
}
