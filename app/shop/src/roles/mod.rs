//! The roles: each builds its public router and background tasks.

pub mod catalog;
pub mod gateway;
pub mod orders;
pub mod payments;
pub mod worker;
