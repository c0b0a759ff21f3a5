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

/// The PostgreSQL exporter, with faultline's replication queries baked in.
pub const POSTGRES_EXPORTER: LocalImage = LocalImage {
    name: "faultline-local/postgres-exporter",
    tag: "0.11",
};

/// The broker the outbox is relayed to, with its Prometheus plugin on.
pub const RABBITMQ: LocalImage = LocalImage {
    name: "faultline-local/rabbitmq",
    tag: "3.10",
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

/// Every image above: what `compose/build-images` makes (besides the base
/// they are all built on).
pub const ALL: &[LocalImage] = &[
    POSTGRES,
    PROMETHEUS,
    ALERTMANAGER,
    REDIS,
    REDIS_EXPORTER,
    POSTGRES_EXPORTER,
    HAPROXY,
    RABBITMQ,
    FAULTLINE,
];

#[cfg(test)]
mod tests {
    use super::*;

    /// The tags here and the tags `compose/build-images` builds agree: a
    /// constant nobody builds would fail every container test that needs it
    /// with "missing image" even after a build.
    #[test]
    fn build_images_builds_every_image_named_here() {
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(BUILD_COMMAND);
        let text = std::fs::read_to_string(&script).unwrap();
        for image in ALL {
            let reference = image.reference();
            let built = if *image == FAULTLINE {
                text.contains(&format!("APP_TAG={reference}\n"))
            } else {
                text.lines().any(|line| {
                    line.trim().starts_with('\'')
                        && line.trim().ends_with(&format!(" {reference}'"))
                })
            };
            assert!(built, "{BUILD_COMMAND} does not build {reference}");
        }
    }
}
