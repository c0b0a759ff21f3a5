//! Detection: the alert rules (alerts/), their promtool unit tests, the
//! Grafana dashboards (dashboards/) and the runbooks (runbooks/), checked
//! against each other and the metric catalog, through promtool in the
//! Prometheus image, and against a live stack under load.
//!
//! - [`assets`]: reading the files and the queries inside them.
//! - [`compressed`]: alerts/compressed/ is generated and up to date.
//! - [`crosscheck`]: no container needed.
//! - [`promtool`]: unit tests, `check rules`, every query parses.
//! - [`live`]: every dashboard query returns data from the running shop.
//! - [`routing`]: Alertmanager routes and inhibits as compose configures it,
//!   and the alerts on the monitoring pipeline itself fire live.
//!
//! The container tests need Docker and the local images (`compose/build-images`).
//! Without them they fail, saying what is missing; they never skip.

mod assets;
mod compressed;
mod crosscheck;
mod live;
mod promtool;
mod routing;

use faultline_tests::docker::preflight;
