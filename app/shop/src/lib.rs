//! The faultline shop: every role of the backend in one library, so that one
//! binary (and one image) runs any of them, and tests can start them in-process.
//!
//! | role | owns | calls |
//! |---|---|---|
//! | gateway | the public API | catalog, orders |
//! | catalog | products, stock, reservations | PostgreSQL |
//! | orders | checkout, idempotency, the outbox and its relay | catalog, payments, PostgreSQL, RabbitMQ |
//! | payments | a simulated payment provider | — |
//! | worker | handles the outbox's events (from RabbitMQ, or the table) | payments, catalog, PostgreSQL |

pub mod admin;
pub mod auth;
pub mod broker;
pub mod cli;
pub mod clients;
pub mod config;
pub mod db;
pub mod domain;
pub mod faults;
pub mod headers;
pub mod health;
pub mod http;
pub mod outbox;
pub mod probe;
pub mod problem;
pub mod read_replica;
pub mod redis_client;
pub mod resilience;
pub mod roles;
pub mod shared_cache;
pub mod startup;

pub use startup::{Application, RoleConfig};
