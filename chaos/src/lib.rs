//! faultline's chaos engine: declarative experiments, a Toxiproxy-compatible
//! fault proxy and container actions. The engine lands in later steps; this
//! crate already ships the `faultline` binary so images and docs can name it.
