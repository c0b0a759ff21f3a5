//! Redis for the gateways' shared catalog cache and rate limit, in a
//! container of the locally built image (see [`crate::container`]): as
//! deployed, a throwaway cache (no persistence, `maxmemory 64mb`).

use crate::container::{Container, ContainerSpec};
use crate::error::BenchError;

/// The locally built image (`compose/build-images`).
pub const IMAGE: &str = "faultline-local/redis:7.0";

/// A running Redis container; removed when dropped.
#[derive(Debug)]
pub struct Redis {
    container: Container,
    /// `redis://127.0.0.1:<port>`, for `FAULTLINE_REDIS_URL`.
    pub url: String,
}

impl Redis {
    /// Starts Redis with the image's configuration, pinned to `cpu` when
    /// given, and returns once it accepts connections.
    pub async fn start(cpu: Option<usize>) -> Result<Self, BenchError> {
        let container = Container::start(&ContainerSpec {
            what: "Redis",
            image: IMAGE,
            port: 6379,
            more_ports: &[],
            args: &[],
            env: &[],
            ready_line: "Ready to accept connections",
            cpu,
        })
        .await?;
        let url = format!("redis://127.0.0.1:{}", container.host_port);
        Ok(Self { container, url })
    }

    /// The container.
    pub fn container(&self) -> &Container {
        &self.container
    }
}
