//! Docker Swarm for the stack test: swarm mode entered only if the engine is
//! not in it already (and left again only then), and a stack deployed with
//! `docker stack deploy` and removed when dropped.
//!
//! Both go through the `docker` CLI, as a user would: `docker stack` is a
//! client-side command (it turns the compose file into services, networks,
//! configs and secrets), not an engine API.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// How long `docker stack rm` gets to take every task and network away.
const REMOVE_WITHIN: Duration = Duration::from_secs(60);

/// Runs `docker args...` with `env`; its stdout, or an error naming the
/// command, its status and its output.
pub fn docker(args: &[&str], env: &[(String, String)]) -> anyhow::Result<String> {
    let output = Command::new("docker")
        .args(args)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .with_context(|| {
            format!(
                "cannot run docker {}: is the docker CLI installed?",
                args.join(" ")
            )
        })?;
    if !output.status.success() {
        bail!(
            "docker {} failed ({}): {}{}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr),
            String::from_utf8_lossy(&output.stdout)
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// The engine in swarm mode, for as long as this lives.
#[derive(Debug)]
pub struct Swarm {
    /// Whether this process put the engine in swarm mode (and so takes it out).
    entered: bool,
}

impl Swarm {
    /// Enters swarm mode (a single-node swarm on 127.0.0.1) unless the engine
    /// is in it already.
    pub fn enter() -> anyhow::Result<Self> {
        let state = docker(&["info", "--format", "{{.Swarm.LocalNodeState}}"], &[])?;
        match state.as_str() {
            "active" => Ok(Self { entered: false }),
            "inactive" => {
                docker(&["swarm", "init", "--advertise-addr", "127.0.0.1"], &[])
                    .context("cannot enter swarm mode")?;
                Ok(Self { entered: true })
            }
            other => bail!(
                "the engine's swarm state is {other:?}: neither in swarm mode nor out of it; \
                 sort it out (`docker swarm leave --force`) and run again"
            ),
        }
    }
}

impl Drop for Swarm {
    fn drop(&mut self) {
        if !self.entered {
            return;
        }
        if let Err(err) = docker(&["swarm", "leave", "--force"], &[]) {
            eprintln!("could not leave swarm mode: {err:#}");
        }
        // Leaving keeps the bridge swarm mode made; nothing else uses it.
        let _ = docker(&["network", "rm", "docker_gwbridge"], &[]);
    }
}

/// A stack deployed from a compose file, removed when dropped.
#[derive(Debug)]
pub struct Stack {
    pub name: String,
    env: Vec<(String, String)>,
}

impl Stack {
    /// `docker stack deploy -c file name` with `env` (the file's variables),
    /// on the local images (`--resolve-image never`: no registry is asked).
    pub fn deploy(name: &str, file: &Path, env: Vec<(String, String)>) -> anyhow::Result<Self> {
        let stack = Self {
            name: name.to_owned(),
            env,
        };
        let file = file
            .to_str()
            .context("the stack file's path is not UTF-8")?;
        docker(
            &[
                "stack",
                "deploy",
                "--resolve-image",
                "never",
                "--detach=true",
                "-c",
                file,
                name,
            ],
            &stack.env,
        )?;
        Ok(stack)
    }

    /// The full name of the stack's `service`.
    pub fn service(&self, service: &str) -> String {
        format!("{}_{service}", self.name)
    }

    /// The images of the service's tasks that are meant to run.
    pub fn running_images(&self, service: &str) -> anyhow::Result<Vec<String>> {
        let out = docker(
            &[
                "service",
                "ps",
                "--filter",
                "desired-state=running",
                "--format",
                "{{.Image}} {{.CurrentState}}",
                &self.service(service),
            ],
            &[],
        )?;
        Ok(out
            .lines()
            .filter(|line| line.contains(" Running "))
            .map(|line| line.split(' ').next().unwrap_or_default().to_owned())
            .collect())
    }

    /// Every task the service ever had (running, failed, shut down), as
    /// `docker service ps` lists them: `slot state`.
    pub fn task_history(&self, service: &str) -> anyhow::Result<Vec<String>> {
        let out = docker(
            &[
                "service",
                "ps",
                "--no-trunc",
                "--format",
                "{{.Name}} {{.CurrentState}}",
                &self.service(service),
            ],
            &[],
        )?;
        Ok(out.lines().map(str::to_owned).collect())
    }

    /// Logs of every task of `service`, for a failing test's output.
    pub fn logs(&self, service: &str) -> String {
        docker(
            &["service", "logs", "--tail", "50", &self.service(service)],
            &[],
        )
        .unwrap_or_else(|err| format!("{err:#}"))
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        if let Err(err) = docker(&["stack", "rm", &self.name], &[]) {
            eprintln!("could not remove stack {}: {err:#}", self.name);
            return;
        }
        // `stack rm` returns at once; wait until its containers and network
        // are gone, so that leaving swarm mode (or the next test) finds none.
        let label = format!("label=com.docker.stack.namespace={}", self.name);
        let deadline = Instant::now() + REMOVE_WITHIN;
        while Instant::now() < deadline {
            let containers = docker(&["ps", "-aq", "--filter", &label], &[]).unwrap_or_default();
            let networks =
                docker(&["network", "ls", "-q", "--filter", &label], &[]).unwrap_or_default();
            if containers.is_empty() && networks.is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        let volumes = docker(&["volume", "ls", "-q", "--filter", &label], &[]).unwrap_or_default();
        for volume in volumes.lines() {
            let _ = docker(&["volume", "rm", volume], &[]);
        }
    }
}
