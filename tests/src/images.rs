//! The locally built images (see `compose/build-images`), by name and tag.
//!
//! The names are distinctive on purpose: testcontainers pulls an image that is
//! missing locally, and with no registry reachable that pull fails obscurely.
//! [`crate::docker::require_images`] checks for them first and says what to do.

/// A local image reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalImage {
    pub name: &'static str,
    pub tag: &'static str,
}

impl LocalImage {
    pub fn reference(&self) -> String {
        format!("{}:{}", self.name, self.tag)
    }
}

pub const POSTGRES: LocalImage = LocalImage {
    name: "faultline-local/postgres",
    tag: "15",
};

pub const PROMETHEUS: LocalImage = LocalImage {
    name: "faultline-local/prometheus",
    tag: "2.42",
};

pub const ALERTMANAGER: LocalImage = LocalImage {
    name: "faultline-local/alertmanager",
    tag: "0.25",
};

pub const REDIS: LocalImage = LocalImage {
    name: "faultline-local/redis",
    tag: "7.0",
};

pub const REDIS_EXPORTER: LocalImage = LocalImage {
    name: "faultline-local/redis-exporter",
    tag: "1.45",
};

/// The demo's edge: one published port in front of the gateway replicas.
pub const HAPROXY: LocalImage = LocalImage {
    name: "faultline-local/haproxy",
    tag: "2.6",
};

pub const FAULTLINE: LocalImage = LocalImage {
    name: "faultline-local/faultline",
    tag: "latest",
};

/// The command that builds them all.
pub const BUILD_COMMAND: &str = "compose/build-images";
