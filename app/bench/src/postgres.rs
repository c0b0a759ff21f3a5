//! PostgreSQL for the catalog, in a container of the locally built image
//! (see [`crate::container`]): a primary, or a hot standby streaming from one
//! (the catalog's read replica, `FAULTLINE_DATABASE_READ_URL`).

use crate::container::{self, Container, ContainerSpec};
use crate::error::BenchError;

/// The locally built image (`compose/build-images`).
pub const IMAGE: &str = "faultline-local/postgres:15";

/// The image's entrypoint that makes a standby of it when
/// `FAULTLINE_PG_PRIMARY_HOST` is set (compose/images/postgres/).
const STANDBY_ENTRYPOINT: &str = "faultline-postgres";

/// The port PostgreSQL listens on inside its container.
pub const PORT: u16 = 5432;

/// The standby's replication slot on the primary (also its
/// `application_name` there), as deployed.
pub const SLOT: &str = "replica_1";

/// The server's own arguments, the same for the primary and the standby (a
/// standby needs at least its primary's `max_connections`): fsync off, like
/// the tests.
const ARGS: [&str; 4] = ["-c", "fsync=off", "-c", "max_connections=200"];

/// A running PostgreSQL container; removed when dropped.
#[derive(Debug)]
pub struct Postgres {
    container: Container,
    /// `postgres://postgres@127.0.0.1:<port>/postgres`.
    pub url: String,
}

impl Postgres {
    /// Starts a primary, pinned to `cpu` when given, and returns once it
    /// accepts connections.
    pub async fn start(cpu: Option<usize>) -> Result<Self, BenchError> {
        Self::start_spec(&ContainerSpec {
            what: "PostgreSQL",
            image: IMAGE,
            port: PORT,
            more_ports: &[],
            args: &ARGS,
            env: &[],
            ready_line: "database system is ready to accept connections",
            cpu,
        })
        .await
    }

    /// Starts a hot standby of `primary`, pinned to `cpu` when given: the
    /// image's entrypoint clones the primary with `pg_basebackup` through the
    /// replication slot [`SLOT`] and streams its WAL. It reaches the primary
    /// at its address on Docker's default bridge. Returns once it accepts
    /// read-only connections.
    pub async fn start_standby(primary: &Postgres, cpu: Option<usize>) -> Result<Self, BenchError> {
        let host = primary.bridge_address().await?;
        Self::start_spec(&ContainerSpec {
            what: "the PostgreSQL standby",
            image: IMAGE,
            port: PORT,
            more_ports: &[],
            args: &ARGS,
            env: &[
                ("FAULTLINE_PG_PRIMARY_HOST", host),
                ("FAULTLINE_PG_PRIMARY_PORT", PORT.to_string()),
                ("FAULTLINE_PG_SLOT", SLOT.to_owned()),
            ],
            ready_line: "database system is ready to accept read-only connections",
            cpu,
        })
        .await
    }

    async fn start_spec(spec: &ContainerSpec<'_>) -> Result<Self, BenchError> {
        let container = Container::start(spec).await?;
        let url = format!(
            "postgres://postgres@127.0.0.1:{}/postgres",
            container.host_port
        );
        Ok(Self { container, url })
    }

    /// Its address on Docker's default bridge, where the standby and the
    /// exporters reach it (on [`PORT`]).
    pub async fn bridge_address(&self) -> Result<String, BenchError> {
        self.container.bridge_address("PostgreSQL").await
    }

    /// The container.
    pub fn container(&self) -> &Container {
        &self.container
    }
}

/// Fails, saying what to do, when [`IMAGE`] predates its standby entrypoint:
/// an older image ignores `FAULTLINE_PG_PRIMARY_HOST` and would start a
/// second primary instead of a standby.
pub async fn preflight_standby() -> Result<(), BenchError> {
    let inspect = container::docker(&[
        "image",
        "inspect",
        "--format",
        "{{json .Config.Entrypoint}}",
        IMAGE,
    ])
    .await?;
    let entrypoint = container::stdout_text(&inspect);
    if !inspect.status.success() || !entrypoint.contains(STANDBY_ENTRYPOINT) {
        return Err(BenchError::Docker(format!(
            "{IMAGE} cannot run as a standby: its entrypoint is {entrypoint} (expected \
             {STANDBY_ENTRYPOINT}, which clones a primary when FAULTLINE_PG_PRIMARY_HOST is \
             set). Rebuild the images with `{} --no-app` from the repository root.",
            container::BUILD_COMMAND
        )));
    }
    Ok(())
}
