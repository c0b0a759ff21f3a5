//! Head sampling, from `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG`
//! as the OpenTelemetry specification names them.
//!
//! Unset, faultline samples **10% of new traces** and follows the caller's
//! decision for the rest (`parentbased_traceidratio`, ratio
//! [`DEFAULT_RATIO`]): the SDK's own default, `parentbased_always_on`,
//! exports a trace for every request, which is what most of the cost of
//! tracing is (see BENCHMARKS.md). A caller that sends a sampled
//! `traceparent` (the load generator, the chaos engine's load, a developer
//! with a failing request to look at) is always traced; unsampled requests
//! keep their trace id, so their log lines still carry it.

use opentelemetry_sdk::trace::Sampler;

/// The sampler's environment variable.
pub const SAMPLER: &str = "OTEL_TRACES_SAMPLER";
/// Its argument (the ratio of the `*traceidratio` samplers).
pub const SAMPLER_ARG: &str = "OTEL_TRACES_SAMPLER_ARG";
/// The ratio of new traces sampled when nothing is configured.
pub const DEFAULT_RATIO: f64 = 0.1;

/// A sampler setting that cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SamplerError {
    #[error(
        "{SAMPLER}={0:?} is not supported: use always_on, always_off, traceidratio, parentbased_always_on, parentbased_always_off or parentbased_traceidratio"
    )]
    Unknown(String),
    #[error("{SAMPLER_ARG}={0:?} is not a ratio between 0 and 1")]
    Ratio(String),
}

/// The sampler the environment asks for; [`DEFAULT_RATIO`] of new traces
/// when it asks for none.
pub fn from_env() -> Result<Sampler, SamplerError> {
    parse(
        std::env::var(SAMPLER).ok().as_deref(),
        std::env::var(SAMPLER_ARG).ok().as_deref(),
    )
}

/// `name` and `arg` as the two variables hold them.
pub fn parse(name: Option<&str>, arg: Option<&str>) -> Result<Sampler, SamplerError> {
    let name = name.map(str::trim).filter(|n| !n.is_empty());
    let arg = arg.map(str::trim).filter(|a| !a.is_empty());
    let ratio = || -> Result<f64, SamplerError> {
        match arg {
            None => Ok(1.0),
            Some(text) => text
                .parse::<f64>()
                .ok()
                .filter(|r| (0.0..=1.0).contains(r))
                .ok_or_else(|| SamplerError::Ratio(text.to_owned())),
        }
    };
    let parent_based = |root: Sampler| Sampler::ParentBased(Box::new(root));
    Ok(match name.map(str::to_ascii_lowercase).as_deref() {
        None => parent_based(Sampler::TraceIdRatioBased(match arg {
            None => DEFAULT_RATIO,
            Some(_) => ratio()?,
        })),
        Some("always_on") => Sampler::AlwaysOn,
        Some("always_off") => Sampler::AlwaysOff,
        Some("traceidratio") => Sampler::TraceIdRatioBased(ratio()?),
        Some("parentbased_always_on") => parent_based(Sampler::AlwaysOn),
        Some("parentbased_always_off") => parent_based(Sampler::AlwaysOff),
        Some("parentbased_traceidratio") => parent_based(Sampler::TraceIdRatioBased(ratio()?)),
        Some(_) => return Err(SamplerError::Unknown(name.unwrap_or_default().to_owned())),
    })
}

#[cfg(test)]
mod tests {
    use opentelemetry::Context;
    use opentelemetry::trace::{
        SpanContext, SpanId, SpanKind, TraceContextExt, TraceFlags, TraceId, TraceState,
    };
    use opentelemetry_sdk::trace::{SamplingDecision, ShouldSample};

    use super::*;

    /// The share of 10,000 new traces `sampler` records.
    fn share(sampler: &Sampler, parent: &Context) -> f64 {
        let recorded = (1..=10_000u128)
            .filter(|i| {
                // Spread the ids over the whole range, as random ids are.
                let id = TraceId::from(i.wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835));
                let result = sampler.should_sample(
                    Some(parent),
                    id,
                    "GET /api/products",
                    &SpanKind::Server,
                    &[],
                    &[],
                );
                result.decision == SamplingDecision::RecordAndSample
            })
            .count();
        recorded as f64 / 10_000.0
    }

    fn remote_parent(sampled: bool) -> Context {
        let flags = if sampled {
            TraceFlags::SAMPLED
        } else {
            TraceFlags::default()
        };
        Context::new().with_remote_span_context(SpanContext::new(
            TraceId::from(7u128),
            SpanId::from(9u64),
            flags,
            true,
            TraceState::default(),
        ))
    }

    #[test]
    fn unset_samples_a_tenth_of_new_traces_and_follows_the_caller() {
        let sampler = parse(None, None).unwrap();
        let new = share(&sampler, &Context::new());
        assert!((0.08..=0.12).contains(&new), "{new}");
        assert_eq!(share(&sampler, &remote_parent(true)), 1.0);
        assert_eq!(share(&sampler, &remote_parent(false)), 0.0);
    }

    #[test]
    fn the_ratio_comes_from_the_argument() {
        let one_percent = parse(Some("parentbased_traceidratio"), Some("0.01")).unwrap();
        let new = share(&one_percent, &Context::new());
        assert!((0.005..=0.015).contains(&new), "{new}");
        // The argument alone changes the default's ratio.
        let half = parse(None, Some("0.5")).unwrap();
        let new = share(&half, &Context::new());
        assert!((0.45..=0.55).contains(&new), "{new}");
        assert_eq!(share(&one_percent, &remote_parent(true)), 1.0);
    }

    #[test]
    fn every_named_sampler_is_understood_in_any_case() {
        assert_eq!(
            share(
                &parse(Some("ALWAYS_ON"), None).unwrap(),
                &remote_parent(false)
            ),
            1.0
        );
        assert_eq!(
            share(
                &parse(Some("always_off"), None).unwrap(),
                &remote_parent(true)
            ),
            0.0
        );
        let all = parse(Some("parentbased_always_on"), None).unwrap();
        assert_eq!(share(&all, &Context::new()), 1.0);
        assert_eq!(share(&all, &remote_parent(false)), 0.0);
        let none = parse(Some("parentbased_always_off"), None).unwrap();
        assert_eq!(share(&none, &Context::new()), 0.0);
        assert_eq!(share(&none, &remote_parent(true)), 1.0);
        // traceidratio ignores the parent's decision.
        let ratio = parse(Some("traceidratio"), Some("0")).unwrap();
        assert_eq!(share(&ratio, &remote_parent(true)), 0.0);
    }

    #[test]
    fn bad_settings_are_errors_that_name_the_variable() {
        let err = parse(Some("jaeger_remote"), None).unwrap_err();
        assert!(
            err.to_string()
                .starts_with(r#"OTEL_TRACES_SAMPLER="jaeger_remote""#),
            "{err}"
        );
        for bad in ["1.5", "-0.1", "ten percent", "NaN"] {
            let err = parse(Some("parentbased_traceidratio"), Some(bad)).unwrap_err();
            assert_eq!(err, SamplerError::Ratio(bad.to_owned()));
            assert!(err.to_string().contains("OTEL_TRACES_SAMPLER_ARG"), "{err}");
        }
    }
}
