//! End-to-end tests: the real stack in containers. One module per area.
//!
//! These tests need a Docker engine and the local images (`compose/build-images`).
//! Without them they fail, saying what is missing; they never skip.

mod admin_surfaces;
mod broker;
mod campaign;
mod chaos;
mod foundation;
mod identity;
mod openapi;
mod oversell;
mod resilience;
mod shop;

use faultline_tests::images::{
    ALERTMANAGER, FAULTLINE, LocalImage, POSTGRES, PROMETHEUS, RABBITMQ, REDIS, REDIS_EXPORTER,
};

/// The images the foundation tests start.
const FOUNDATION_IMAGES: &[LocalImage] = &[POSTGRES, PROMETHEUS, FAULTLINE];
/// The images of a stack with Alertmanager.
const WATCHER_IMAGES: &[LocalImage] = &[POSTGRES, PROMETHEUS, ALERTMANAGER, FAULTLINE];
/// The images of a stack whose gateways share Redis.
const REDIS_IMAGES: &[LocalImage] = &[POSTGRES, PROMETHEUS, REDIS, REDIS_EXPORTER, FAULTLINE];
/// The images of a stack whose outbox is relayed through RabbitMQ.
const BROKER_IMAGES: &[LocalImage] = &[POSTGRES, RABBITMQ, FAULTLINE];
/// The images the shop tests start.
const SHOP_IMAGES: &[LocalImage] = &[POSTGRES, FAULTLINE];

use faultline_tests::docker::preflight;
