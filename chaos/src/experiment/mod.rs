//! Experiments: the typed TOML format ([`model`]) and reading it ([`parse`]).

pub mod duration;
pub mod model;
pub mod parse;

pub use model::*;
pub use parse::{ExperimentError, FieldPath, Segment};
