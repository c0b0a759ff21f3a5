//! Reaching the Docker engine. Container tests never skip: when the engine or an
//! image is missing they fail, and the error says what to do.

use std::time::Duration;

use anyhow::{Context, bail};
use testcontainers::bollard::Docker;
use testcontainers::core::client::docker_client_instance;

use crate::images::{BUILD_COMMAND, LocalImage};

/// How long the engine gets to answer a ping.
const PING_TIMEOUT: Duration = Duration::from_secs(10);

/// Connects to the engine testcontainers uses (`DOCKER_HOST`, else the default
/// socket) and pings it.
pub async fn require_docker() -> anyhow::Result<Docker> {
    let where_ = std::env::var("DOCKER_HOST")
        .map(|host| format!("DOCKER_HOST={host}"))
        .unwrap_or_else(|_| "/var/run/docker.sock (DOCKER_HOST is unset)".to_owned());
    let hint = "The container tests need a running Docker engine: start it \
                (for example `systemctl start docker`), check that this user may use it, and run again.";
    let docker = docker_client_instance()
        .await
        .with_context(|| format!("Docker is unreachable at {where_}. {hint}"))?;
    match tokio::time::timeout(PING_TIMEOUT, docker.ping()).await {
        Ok(Ok(_)) => Ok(docker),
        Ok(Err(err)) => bail!("Docker is unreachable at {where_}: {err}. {hint}"),
        Err(_) => bail!("Docker at {where_} did not answer a ping within {PING_TIMEOUT:?}. {hint}"),
    }
}

/// Checks that every image exists locally, naming the missing ones.
pub async fn require_images(docker: &Docker, images: &[LocalImage]) -> anyhow::Result<()> {
    let mut missing = Vec::new();
    for image in images {
        if docker.inspect_image(&image.reference()).await.is_err() {
            missing.push(image.reference());
        }
    }
    if !missing.is_empty() {
        bail!(
            "missing local image(s): {}. No registry is reachable, so they are built \
             here from Debian packages: run `{BUILD_COMMAND}` from the repository root \
             (the README's test command does this first).",
            missing.join(", ")
        );
    }
    Ok(())
}

/// Fails unless Docker answers and every image is present: a container test
/// calls this first, so that it fails saying what to do instead of skipping.
pub async fn preflight(images: &[LocalImage]) -> anyhow::Result<()> {
    let docker = require_docker().await?;
    require_images(&docker, images).await
}

/// Runs `command` in `container` and waits for it to exit; its stdout, or an
/// error naming the command, its exit code and its output when it fails.
pub async fn exec(
    container: &testcontainers::ContainerAsync<testcontainers::GenericImage>,
    command: &[&str],
) -> anyhow::Result<String> {
    use testcontainers::core::{CmdWaitFor, ExecCommand};
    let mut exec = container
        .exec(
            ExecCommand::new(command.iter().copied()).with_cmd_ready_condition(CmdWaitFor::exit()),
        )
        .await
        .with_context(|| format!("cannot run {command:?} in container {}", container.id()))?;
    let stdout = String::from_utf8_lossy(&exec.stdout_to_vec().await?).into_owned();
    let stderr = String::from_utf8_lossy(&exec.stderr_to_vec().await?).into_owned();
    let code = exec.exit_code().await?;
    anyhow::ensure!(
        code == Some(0),
        "{command:?} exited with {code:?}: {stdout}{stderr}"
    );
    Ok(stdout)
}

/// What container `id` printed (stdout and stderr) since `since`: for a test
/// to show the log of a container it started again, which the log consumer
/// attached at the first start no longer follows.
pub async fn logs_since(
    docker: &Docker,
    id: &str,
    since: std::time::SystemTime,
) -> anyhow::Result<String> {
    use futures::TryStreamExt;
    use testcontainers::bollard::query_parameters::LogsOptionsBuilder;
    let since = since.duration_since(std::time::UNIX_EPOCH)?.as_secs();
    let options = LogsOptionsBuilder::new()
        .stdout(true)
        .stderr(true)
        .since(i32::try_from(since).context("a time past 2038")?)
        .build();
    let frames: Vec<_> = docker
        .logs(id, Some(options))
        .try_collect()
        .await
        .with_context(|| format!("cannot read the log of container {id}"))?;
    Ok(frames.iter().map(ToString::to_string).collect())
}
