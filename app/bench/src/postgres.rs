//! PostgreSQL for the catalog, in a container of the locally built image
//! (see [`crate::container`]).

use crate::container::{Container, ContainerSpec};
use crate::error::BenchError;

/// The locally built image (`compose/build-images`).
pub const IMAGE: &str = "faultline-local/postgres:15";

/// A running PostgreSQL container; removed when dropped.
#[derive(Debug)]
pub struct Postgres {
    container: Container,
    /// `postgres://postgres@127.0.0.1:<port>/postgres`.
    pub url: String,
}

impl Postgres {
    /// Starts PostgreSQL (fsync off, like the tests), pinned to `cpu` when
    /// given, and returns once it accepts connections.
    pub async fn start(cpu: Option<usize>) -> Result<Self, BenchError> {
        let container = Container::start(&ContainerSpec {
            what: "PostgreSQL",
            image: IMAGE,
            port: 5432,
            args: &["-c", "fsync=off", "-c", "max_connections=200"],
            ready_line: "database system is ready to accept connections",
            cpu,
        })
        .await?;
        let url = format!(
            "postgres://postgres@127.0.0.1:{}/postgres",
            container.host_port
        );
        Ok(Self { container, url })
    }

    /// The container's CPU time so far, in seconds (`None` when its cgroup
    /// is not visible from here).
    pub fn cpu_seconds(&self) -> Option<f64> {
        self.container.cpu_seconds()
    }

    /// The container's memory use as `docker stats` shows it, in bytes.
    pub async fn memory_bytes(&self) -> Result<u64, BenchError> {
        self.container.memory_bytes().await
    }
}
