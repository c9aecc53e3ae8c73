//! The daemon's spans, for the stages to open: one per batch, sink request, dead-letter write and
//! changelog restore. Each is a `tracing` span (so log lines written inside it carry its ids); when
//! tracing is off every helper hands out a disabled span and does nothing else.

use opentelemetry::trace::{SpanContext, SpanId, Status, TraceFlags, TraceId, TraceState};
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

static ENABLED: AtomicBool = AtomicBool::new(false);
static MAX_LINKS: AtomicU32 = AtomicU32::new(0);

pub(super) fn enable(max_links: u32) {
    MAX_LINKS.store(max_links, Ordering::Relaxed);
    ENABLED.store(true, Ordering::Relaxed);
}

pub(super) fn disable() {
    ENABLED.store(false, Ordering::Relaxed);
}

/// Whether spans are exported: compute what only a span needs only when this is true.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// A pipeline's span for one batch of `records`.
pub fn batch(pipeline: &'static str, records: usize) -> Span {
    if !enabled() {
        return Span::none();
    }
    tracing::info_span!(
        target: "hestyna_obsd::trace",
        "batch",
        otel.name = %format_args!("{pipeline} batch"),
        otel.kind = "consumer",
        pipeline,
        records = records as i64,
    )
}

/// A span for one request of `records` to a sink, the `attempt`-th try of them (the caller sets
/// `bytes` and the outcome once it is answered).
pub fn sink_request(sink: &str, records: usize, attempt: u32) -> Span {
    if !enabled() {
        return Span::none();
    }
    tracing::info_span!(
        target: "hestyna_obsd::trace",
        "sink request",
        otel.name = %format_args!("send {sink}"),
        otel.kind = "client",
        sink,
        records = records as i64,
        attempt,
    )
}

/// A span for one write of `records` dead letters by `pipeline`.
pub fn dead_letter_write(pipeline: &'static str, records: usize) -> Span {
    if !enabled() {
        return Span::none();
    }
    tracing::info_span!(
        target: "hestyna_obsd::trace",
        "dead-letter write",
        otel.kind = "producer",
        pipeline,
        records = records as i64,
    )
}

/// A span for the restore of one partition's intake state from the changelog.
pub fn changelog_restore(topic: &str, partition: i32) -> Span {
    if !enabled() {
        return Span::none();
    }
    tracing::info_span!(
        target: "hestyna_obsd::trace",
        "changelog restore",
        topic,
        partition,
    )
}

/// Sets an attribute on a span (nothing on a disabled one).
pub fn set(span: &Span, key: &'static str, value: impl Into<opentelemetry::Value>) {
    if !span.is_disabled() {
        span.set_attribute(key, value);
    }
}

/// Records how the span's work ended: `outcome` as an attribute, and an error status unless `ok`.
pub fn outcome(span: &Span, ok: bool, outcome: &'static str) {
    if span.is_disabled() {
        return;
    }
    span.set_attribute("outcome", outcome);
    if !ok {
        span.set_status(Status::error(outcome));
    }
}

/// Records how a stage's work on the span ended: `done`, or `stopped` (error status) when the drain
/// deadline stopped it (its records are read again after the restart).
pub fn finished(span: &Span, ok: bool, done: &'static str) {
    outcome(span, ok, if ok { done } else { "stopped" });
}

/// What [`link_events`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Links {
    /// Links added (distinct trace contexts).
    pub added: u32,
    /// Events with both ids once the cap was reached (not de-duplicated: past the cap nothing more is
    /// parsed or remembered, so the cost per event stays a check of two options).
    pub cut: u32,
    /// Events with a trace id but no span id (a link needs both), or ids that are not W3C hex.
    pub trace_id_only: u32,
}

/// Links a batch span to the trace contexts of its events, `(trace_id, span_id)` from the body or the
/// `traceparent` header: each distinct context once, at most `max_links_per_span`; what is cut and
/// the events with only a trace id are set as attributes (`links.dropped`, `events.trace_id_only`).
pub fn link_events<'a>(
    span: &Span,
    ids: impl Iterator<Item = (Option<&'a str>, Option<&'a str>)>,
) -> Links {
    let mut links = Links::default();
    if span.is_disabled() {
        return links;
    }
    let cap = MAX_LINKS.load(Ordering::Relaxed);
    let mut seen: HashSet<(&str, &str)> = HashSet::new();
    for (trace, span_id) in ids {
        let Some(trace) = trace else {
            continue;
        };
        let Some(span_id) = span_id else {
            links.trace_id_only += 1;
            continue;
        };
        if links.added >= cap {
            links.cut += 1;
            continue;
        }
        if !seen.insert((trace, span_id)) {
            continue;
        }
        let parsed = (TraceId::from_hex(trace), SpanId::from_hex(span_id));
        let (Ok(trace), Ok(span_id)) = parsed else {
            links.trace_id_only += 1;
            continue;
        };
        if trace == TraceId::INVALID || span_id == SpanId::INVALID {
            links.trace_id_only += 1;
            continue;
        }
        links.added += 1;
        let context = SpanContext::new(trace, span_id, TraceFlags::SAMPLED, true, TraceState::NONE);
        span.add_link(context);
    }
    span.set_attribute("links", i64::from(links.added));
    span.set_attribute("links.dropped", i64::from(links.cut));
    span.set_attribute("events.trace_id_only", i64::from(links.trace_id_only));
    if links.cut > 0 {
        super::STATS.links_cut(u64::from(links.cut));
    }
    links
}

/// The current span's trace and span ids (lowercase hex), when it is exported.
pub fn current_ids() -> Option<(String, String)> {
    use opentelemetry::trace::TraceContextExt as _;
    if !enabled() {
        return None;
    }
    let context = Span::current().context();
    let span = context.span();
    let ids = span.span_context();
    ids.is_valid()
        .then(|| (ids.trace_id().to_string(), ids.span_id().to_string()))
}
