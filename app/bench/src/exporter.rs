//! The Prometheus PostgreSQL exporter, one per server as deployed, in a
//! container of the locally built image (see [`crate::container`]). It
//! reaches its server at the server's address on Docker's default bridge.

use crate::container::{Container, ContainerSpec};
use crate::error::BenchError;
use crate::postgres::{self, Postgres};

/// The locally built image (`compose/build-images`).
pub const IMAGE: &str = "faultline-local/postgres-exporter:0.11";

/// The port it serves `/metrics` on inside its container.
pub const PORT: u16 = 9187;

/// A running exporter; removed when dropped.
#[derive(Debug)]
pub struct PostgresExporter {
    container: Container,
    /// For messages: which server it watches (`primary`, `standby`).
    pub server: String,
    /// `http://127.0.0.1:<port>/metrics`.
    pub metrics_url: String,
}

/// What a scrape found.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Scrape {
    /// `pg_up`: 1 when the exporter reached its server.
    up: Option<f64>,
    /// `pg_replica_in_recovery`: 1 on a standby, 0 on a primary.
    in_recovery: Option<f64>,
}

impl PostgresExporter {
    /// Starts an exporter of `target` (named `server` in messages), pinned
    /// to `cpu` when given, and returns once it listens.
    pub async fn start(
        server: &str,
        target: &Postgres,
        cpu: Option<usize>,
    ) -> Result<Self, BenchError> {
        let host = target.bridge_address().await?;
        let what = format!("the PostgreSQL exporter of the {server}");
        let container = Container::start(&ContainerSpec {
            what: &what,
            image: IMAGE,
            port: PORT,
            more_ports: &[],
            args: &[],
            env: &[(
                "DATA_SOURCE_NAME",
                format!(
                    "postgresql://postgres@{host}:{}/postgres?sslmode=disable",
                    postgres::PORT
                ),
            )],
            ready_line: "Listening on",
            cpu,
        })
        .await?;
        let metrics_url = format!("http://127.0.0.1:{}/metrics", container.host_port);
        Ok(Self {
            container,
            server: server.to_owned(),
            metrics_url,
        })
    }

    /// Scrapes `/metrics` once, as Prometheus would (each scrape runs the
    /// exporter's queries on its server), and fails unless it reached its
    /// server and found it in the role expected (`standby`: in recovery).
    pub async fn scrape(&self, client: &reqwest::Client, standby: bool) -> Result<(), BenchError> {
        let context = || format!("scraping the PostgreSQL exporter of the {}", self.server);
        let text = client
            .get(&self.metrics_url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|err| BenchError::http(context(), err))?
            .text()
            .await
            .map_err(|err| BenchError::http(context(), err))?;
        let scrape = parse_scrape(&text);
        let expected = if standby { 1.0 } else { 0.0 };
        if scrape.up != Some(1.0) || scrape.in_recovery != Some(expected) {
            return Err(BenchError::Measurement(format!(
                "{}: pg_up {:?}, pg_replica_in_recovery {:?} (expected 1 and {expected}): the \
                 exporter does not see its server as deployed. Its server is reached on Docker's \
                 default bridge; see the container's logs (`docker logs`) while the benchmark \
                 runs.",
                context(),
                scrape.up,
                scrape.in_recovery
            )));
        }
        Ok(())
    }

    /// The container.
    pub fn container(&self) -> &Container {
        &self.container
    }
}

/// `pg_up` and `pg_replica_in_recovery` from the Prometheus text format.
fn parse_scrape(text: &str) -> Scrape {
    let value = |metric: &str| {
        text.lines().find_map(|line| {
            let (series, value) = line.split_once(' ')?;
            let name = series.split('{').next()?;
            (name == metric).then(|| value.trim().parse::<f64>().ok())?
        })
    };
    Scrape {
        up: value("pg_up"),
        in_recovery: value("pg_replica_in_recovery"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_up_and_recovery_from_the_exposition() {
        let text = "# HELP pg_up Whether the last scrape could connect.\n\
                    # TYPE pg_up gauge\n\
                    pg_up 1\n\
                    pg_replica_in_recovery{server=\"172.17.0.3:5432\"} 1\n\
                    pg_replica_replay_paused{server=\"172.17.0.3:5432\"} 0\n";
        assert_eq!(
            parse_scrape(text),
            Scrape {
                up: Some(1.0),
                in_recovery: Some(1.0)
            }
        );
        assert_eq!(
            parse_scrape("pg_up 0\n"),
            Scrape {
                up: Some(0.0),
                in_recovery: None
            }
        );
    }
}
