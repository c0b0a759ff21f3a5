//! The faultline shop: every role of the backend in one library, so that one
//! binary (and one image) runs any of them, and tests can start them in-process.

pub mod admin;
pub mod cli;
pub mod config;
pub mod db;
pub mod health;
pub mod probe;
pub mod problem;
pub mod shutdown;
pub mod startup;

pub use config::ServeConfig;
pub use startup::Application;
