//! promtool, run from the local Prometheus image in a throwaway container.

use std::time::Duration;

use anyhow::{Context, Result};
use testcontainers::core::WaitFor;
use testcontainers::core::wait::ExitWaitStrategy;
use testcontainers::runners::AsyncRunner;
use testcontainers::{GenericImage, ImageExt};

use crate::docker::preflight;
use crate::images::PROMETHEUS;
use crate::stack::TEST_LABEL;

/// What promtool said.
#[derive(Debug)]
pub struct Promtool {
    pub exit_code: i64,
    pub output: String,
}

/// Runs `promtool <args>` with `files` (path in the container, content)
/// copied in, and returns once it exits.
pub async fn promtool(args: &[String], files: &[(String, String)]) -> Result<Promtool> {
    preflight(&[PROMETHEUS]).await?;
    let mut request = GenericImage::new(PROMETHEUS.name, PROMETHEUS.tag)
        .with_entrypoint("promtool")
        .with_wait_for(WaitFor::exit(
            ExitWaitStrategy::new().with_poll_interval(Duration::from_millis(50)),
        ))
        .with_cmd(args.iter().cloned())
        .with_labels([(TEST_LABEL, "detection-promtool")])
        .with_startup_timeout(Duration::from_secs(120));
    for (path, content) in files {
        request = request.with_copy_to(path.clone(), content.as_bytes().to_vec());
    }
    let container = request
        .start()
        .await
        .with_context(|| format!("run promtool {}", args.join(" ")))?;
    let exit_code = container
        .exit_code()
        .await?
        .context("promtool exited without an exit code")?;
    let stdout = String::from_utf8_lossy(&container.stdout_to_vec().await?).into_owned();
    let stderr = String::from_utf8_lossy(&container.stderr_to_vec().await?).into_owned();
    Ok(Promtool {
        exit_code,
        output: format!("{stdout}{stderr}"),
    })
}
