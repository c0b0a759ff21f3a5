//! Head sampling decided before a span is made, so that an unsampled request
//! costs no OpenTelemetry span at all.
//!
//! `tracing-opentelemetry` builds an OpenTelemetry span for every `tracing`
//! span it sees and lets the SDK's sampler drop it only when it closes: at
//! 10% sampling, nine requests in ten paid for spans nobody would see (see
//! BENCHMARKS.md). Here the decision is made when the first span of a trace
//! on this service is created (the server span, a consumer's span, a
//! background task's root), and:
//!
//! - [`SampledOnly`], the OpenTelemetry layer's per-layer filter, lets only
//!   the spans of sampled traces (and the events inside them) reach it;
//! - [`UnsampledIds`] gives the root span of an unsampled trace a span
//!   context of its own ([`unsampled_context`]): the caller's trace id (or a
//!   new one), a new span id, and the sampled flag off. Log lines carry that
//!   trace id and [`crate::propagation`] sends it on, so the next service
//!   follows the decision and the request stays findable by its trace id.
//!   No span is made inside it: its inner spans would cost the registry's
//!   bookkeeping on every poll, for no one.
//!
//! A span made with a remote parent ([`crate::propagation::child_of_remote`])
//! is decided with that parent; any other span follows the span it is made
//! in, or, made in no `tracing` span, the HTTP server span whose context is
//! current ([`crate::http_spans`], decided by the same [`Head`]); a span
//! made in neither is a new trace. The SDK's own sampler is then
//! `AlwaysOn`: what reaches it was decided here.

use std::cell::RefCell;

use opentelemetry::Context;
use opentelemetry::trace::{SpanContext, SpanKind, TraceContextExt, TraceFlags, TraceState};
use opentelemetry_sdk::trace::{
    IdGenerator, RandomIdGenerator, Sampler, SamplingDecision, ShouldSample,
};
use tracing::span::{Attributes, Id};
use tracing::subscriber::Interest;
use tracing::{Metadata, Subscriber};
use tracing_subscriber::Registry;
use tracing_subscriber::layer::{Context as LayerContext, Filter, Layer};
use tracing_subscriber::registry::LookupSpan;

thread_local! {
    /// The caller's span context while [`with_remote_parent`] makes a span.
    static REMOTE: RefCell<Option<SpanContext>> = const { RefCell::new(None) };
    /// An unsampled trace's context, from [`SampledOnly::enabled`] to
    /// [`UnsampledIds::on_new_span`] for the span being made on this thread.
    static UNSAMPLED_ROOT: RefCell<Option<SpanContext>> = const { RefCell::new(None) };
}

/// The span context of an unsampled trace, kept on its first span.
#[derive(Debug, Clone)]
struct Unsampled(SpanContext);

/// Decides whether a new trace, or one continued from a caller, is sampled.
#[derive(Debug, Clone)]
pub struct Head {
    sampler: Sampler,
    ids: RandomIdGenerator,
}

impl Head {
    /// Decides new traces with `sampler` (see [`crate::sampling`]).
    pub fn new(sampler: Sampler) -> Self {
        Self {
            sampler,
            ids: RandomIdGenerator::default(),
        }
    }

    /// Whether a trace starting at a span named `name`, under `remote` (the
    /// caller's span) if any, is sampled: `None` if it is, else the
    /// unsampled trace's context (the caller's trace id or a new one, a new
    /// span id, the sampled flag off).
    pub fn decide(&self, name: &str, remote: Option<&SpanContext>) -> Option<SpanContext> {
        let trace_id = remote.map_or_else(|| self.ids.new_trace_id(), SpanContext::trace_id);
        let parent = remote.map_or_else(Context::new, |r| {
            Context::new().with_remote_span_context(r.clone())
        });
        let sampled = self
            .sampler
            .should_sample(Some(&parent), trace_id, name, &SpanKind::Internal, &[], &[])
            .decision
            == SamplingDecision::RecordAndSample;
        (!sampled).then(|| {
            SpanContext::new(
                trace_id,
                self.ids.new_span_id(),
                TraceFlags::default(),
                false,
                remote.map_or_else(TraceState::default, |r| r.trace_state().clone()),
            )
        })
    }
}

/// The span context current in OpenTelemetry's own context, if valid: set
/// while a future made by [`crate::http_spans`] is polled.
pub(crate) fn otel_current() -> Option<SpanContext> {
    Context::map_current(|cx| {
        let span = cx.span();
        let context = span.span_context();
        context.is_valid().then(|| context.clone())
    })
}

/// The OpenTelemetry layer's filter: the spans of sampled traces and the
/// events inside them, nothing else.
#[derive(Debug, Clone)]
pub struct SampledOnly {
    head: Head,
}

impl SampledOnly {
    /// Decides new traces with `head`.
    pub fn new(head: Head) -> Self {
        Self { head }
    }

    /// Whether the trace a span starts is sampled; if not, its context is
    /// left for [`UnsampledIds`].
    fn decide(&self, name: &str, remote: Option<&SpanContext>) -> bool {
        let unsampled = self.head.decide(name, remote);
        let sampled = unsampled.is_none();
        UNSAMPLED_ROOT.set(unsampled);
        sampled
    }
}

impl<S> Filter<S> for SampledOnly
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn enabled(&self, meta: &Metadata<'_>, cx: &LayerContext<'_, S>) -> bool {
        if meta.is_span()
            && let Some(remote) = REMOTE.with_borrow(Clone::clone)
        {
            return self.decide(meta.name(), Some(&remote));
        }
        UNSAMPLED_ROOT.set(None);
        match cx.current_span().id() {
            // `cx` sees only the spans this filter let through: the current
            // span is in a sampled trace exactly when it is there.
            Some(current) => cx.span(current).is_some(),
            // An event outside any `tracing` span: OpenTelemetry has nowhere
            // to put it.
            None if !meta.is_span() => false,
            // Inside a server span (`crate::http_spans`): its decision.
            None => match otel_current() {
                Some(server) => server.is_sampled(),
                None => self.decide(meta.name(), None),
            },
        }
    }

    fn callsite_enabled(&self, _meta: &'static Metadata<'static>) -> Interest {
        // Decided per span, never cached per call site.
        Interest::sometimes()
    }
}

/// Keeps the context of an unsampled trace on its first span, and makes no
/// span inside it (see the module's documentation).
#[derive(Debug, Clone, Copy, Default)]
pub struct UnsampledIds;

impl<S> Layer<S> for UnsampledIds
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn register_callsite(&self, meta: &'static Metadata<'static>) -> Interest {
        if meta.is_span() {
            Interest::sometimes()
        } else {
            Interest::always()
        }
    }

    /// No span is made inside an unsampled trace: its first span (which
    /// holds the ids) is the only one, for every layer. Its log lines name
    /// that span, and its inner `#[instrument]` spans cost nothing, not even
    /// the registry's bookkeeping on every poll. A span made with a remote
    /// parent is a new decision and is always made.
    fn enabled(&self, meta: &Metadata<'_>, ctx: LayerContext<'_, S>) -> bool {
        if !meta.is_span() || REMOTE.with_borrow(Option::is_some) {
            return true;
        }
        match ctx.lookup_current() {
            Some(current) => current.extensions().get::<Unsampled>().is_none(),
            // Inside a server span (`crate::http_spans`) or none.
            None => otel_current().is_none_or(|server| server.is_sampled()),
        }
    }

    fn on_new_span(&self, _attrs: &Attributes<'_>, id: &Id, ctx: LayerContext<'_, S>) {
        if let Some(context) = UNSAMPLED_ROOT.take()
            && let Some(span) = ctx.span(id)
        {
            span.extensions_mut().insert(Unsampled(context));
        }
    }
}

/// Runs `make` (which makes one span) with `remote` as the caller's span, so
/// that the span's sampling follows it.
pub(crate) fn with_remote_parent(
    remote: SpanContext,
    make: impl FnOnce() -> tracing::Span,
) -> tracing::Span {
    REMOTE.set(Some(remote));
    let span = make();
    REMOTE.set(None);
    span
}

/// The context of the unsampled trace the span `id` is in, if it is in one.
pub(crate) fn unsampled_context(dispatch: &tracing::Dispatch, id: &Id) -> Option<SpanContext> {
    let registry = dispatch.downcast_ref::<Registry>()?;
    unsampled_context_of(&registry.span(id)?)
}

/// [`unsampled_context`] for a span the caller already holds from the registry.
pub(crate) fn unsampled_context_of<'a, R: LookupSpan<'a>>(
    span: &tracing_subscriber::registry::SpanRef<'a, R>,
) -> Option<SpanContext> {
    span.scope()
        .find_map(|span| span.extensions().get::<Unsampled>().map(|u| u.0.clone()))
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use opentelemetry::trace::{SpanId, TraceId};
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    /// Records the names of the spans and events it is shown.
    #[derive(Clone, Default)]
    struct Seen(Arc<Mutex<Vec<String>>>);

    impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Seen {
        fn on_new_span(&self, attrs: &Attributes<'_>, _id: &Id, _ctx: LayerContext<'_, S>) {
            self.0
                .lock()
                .unwrap()
                .push(attrs.metadata().name().to_owned());
        }
        fn on_event(&self, event: &tracing::Event<'_>, _ctx: LayerContext<'_, S>) {
            let message = format!("event at {}", event.metadata().level());
            self.0.lock().unwrap().push(message);
        }
    }

    fn remote(sampled: bool) -> SpanContext {
        let flags = if sampled {
            TraceFlags::SAMPLED
        } else {
            TraceFlags::default()
        };
        SpanContext::new(
            TraceId::from(0xabcu128),
            SpanId::from(0x12u64),
            flags,
            true,
            TraceState::default(),
        )
    }

    /// Runs `body` under a registry whose sampled-only layer records what it
    /// sees; returns what it saw.
    fn under(sampler: Sampler, body: impl FnOnce()) -> Vec<String> {
        let seen = Seen::default();
        let subscriber = tracing_subscriber::registry()
            .with(
                seen.clone()
                    .with_filter(SampledOnly::new(Head::new(sampler))),
            )
            .with(UnsampledIds);
        tracing::subscriber::with_default(subscriber, body);
        seen.0.lock().unwrap().clone()
    }

    fn current_unsampled() -> Option<SpanContext> {
        tracing::Span::current()
            .with_subscriber(|(id, dispatch)| unsampled_context(dispatch, id))
            .flatten()
    }

    fn request(remote_parent: Option<SpanContext>) -> Option<SpanContext> {
        let make = || tracing::info_span!("request");
        let span = match remote_parent {
            Some(remote) => with_remote_parent(remote, make),
            None => make(),
        };
        span.in_scope(|| {
            let child = tracing::info_span!("query");
            let unsampled = child.in_scope(|| {
                tracing::info!("inside");
                current_unsampled()
            });
            // Inside an unsampled trace no span is made.
            assert_eq!(child.is_disabled(), unsampled.is_some());
            unsampled
        })
    }

    #[test]
    fn an_unsampled_trace_reaches_no_layer_and_keeps_the_callers_trace_id() {
        let sampler = Sampler::ParentBased(Box::new(Sampler::AlwaysOn));
        let mut context = None;
        let seen = under(sampler, || context = request(Some(remote(false))));
        assert!(seen.is_empty(), "{seen:?}");
        let context = context.expect("an unsampled request has a context");
        assert_eq!(context.trace_id(), TraceId::from(0xabcu128));
        assert_ne!(context.span_id(), SpanId::from(0x12u64));
        assert!(context.is_valid() && !context.is_sampled());
    }

    #[test]
    fn a_sampled_trace_reaches_the_layer_whole() {
        let sampler = Sampler::ParentBased(Box::new(Sampler::AlwaysOff));
        let mut context = Some(remote(false));
        let seen = under(sampler, || context = request(Some(remote(true))));
        assert_eq!(seen, ["request", "query", "event at INFO"]);
        assert!(context.is_none());
    }

    #[test]
    fn a_new_trace_is_decided_by_the_root_sampler_with_a_new_trace_id() {
        let mut contexts = Vec::new();
        let seen = under(Sampler::AlwaysOff, || {
            contexts = (0..3).filter_map(|_| request(None)).collect();
        });
        assert!(seen.is_empty(), "{seen:?}");
        assert_eq!(contexts.len(), 3);
        assert_ne!(contexts[0].trace_id(), contexts[1].trace_id());
        let seen = under(Sampler::AlwaysOn, || assert!(request(None).is_none()));
        assert_eq!(seen.len(), 3, "{seen:?}");
    }

    #[test]
    fn a_remote_parent_decides_even_inside_another_span() {
        let sampler = Sampler::ParentBased(Box::new(Sampler::AlwaysOn));
        let mut context = None;
        let seen = under(sampler, || {
            let outer = tracing::info_span!("consume loop");
            context = outer.in_scope(|| request(Some(remote(false))));
        });
        assert_eq!(seen, ["consume loop"]);
        assert_eq!(
            context.map(|c| c.trace_id()),
            Some(TraceId::from(0xabcu128))
        );
    }
}
