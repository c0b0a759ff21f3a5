//! The deployments beyond compose: the Kubernetes manifests, checked offline
//! (rendered, validated against the schemas, kept in step with compose), and
//! the Swarm stack, deployed for real on a single-node swarm.

mod kubernetes;
mod swarm;
