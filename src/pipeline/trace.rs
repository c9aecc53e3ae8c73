//! The pipelines' spans: what a batch span says of its records (where they came from, how many were
//! invalid) and its links to the events' own trace contexts. Computed only when spans are exported.

use super::Decoded;
use crate::source::{Origin, Record};
use crate::telemetry::otel::spans;
use std::fmt::Write as _;
use tracing::Span;

/// Describes a batch span (from [`spans::batch`]) once its batch is decoded: the source place, the
/// invalid count, and links to its events' trace contexts.
pub(crate) fn describe(span: &Span, records: &[Record], decoded: &Decoded<'_>) {
    if span.is_disabled() {
        return;
    }
    place(span, records);
    spans::set(span, "invalid", decoded.invalid.len() as i64);
    let ids = decoded
        .events
        .iter()
        .map(|(_, ev)| (ev.trace_id.as_deref(), ev.span_id.as_deref()));
    spans::link_events(span, ids);
}

/// Where the records came from. Kafka: the topic, partition and first and last offsets when the batch
/// holds one partition, and always `offsets` (`topic/partition:first-last`, one segment per run).
fn place(span: &Span, records: &[Record]) {
    let mut segments: Vec<(&str, i32, i64, i64)> = Vec::new();
    for record in records {
        match &record.origin {
            Origin::Kafka {
                topic,
                partition,
                offset,
            } => match segments.last_mut() {
                Some((t, p, _, last)) if *t == topic.as_ref() && p == partition => *last = *offset,
                _ => segments.push((topic, *partition, *offset, *offset)),
            },
            other => {
                spans::set(span, "source", other.topic_label().to_owned());
                return;
            }
        }
    }
    spans::set(span, "messaging.system", "kafka");
    if let [(topic, partition, first, last)] = segments[..] {
        spans::set(span, "messaging.destination.name", topic.to_owned());
        spans::set(span, "partition", i64::from(partition));
        spans::set(span, "first_offset", first);
        spans::set(span, "last_offset", last);
    }
    let mut offsets = String::new();
    for (i, (topic, partition, first, last)) in segments.iter().enumerate() {
        let sep = if i == 0 { "" } else { "," };
        let _ = write!(offsets, "{sep}{topic}/{partition}:{first}-{last}");
    }
    spans::set(span, "offsets", offsets);
}
