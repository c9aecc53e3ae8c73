//! Pipeline: the two consumers of batches.
//!
//! - [`metrics::MetricsPipeline`]: decode -> derive, and dead-letters invalid records.
//! - [`forward::ForwardPipeline`]: decode -> enrich -> redact -> every sink, each through its own
//!   [`deliver::Worker`] (batching, retries, bisection, rejections).
//!
//! Both share the source and decode code and differ only in what they do with an event. Each reports a
//! batch done only once everything it owes that batch is safe (derived; accepted by every sink; dead
//! letters written): see the offset invariant in ARCHITECTURE.md.

mod ahead;
mod dead_letters;
pub mod deliver;
pub mod forward;
pub mod metrics;
mod retry;
mod trace;

pub use crate::lifecycle::Shutdown;
pub use crate::lifecycle::Stopped;
pub use retry::{retry, Backoff};

use crate::decode::{decode, Event, EventType, Invalid, InvalidReason};
use crate::source::Record;
use crate::telemetry::events::{EventsReceived, InvalidEvents};
use crate::telemetry::SelfMetrics;
use std::sync::atomic::{AtomicU64, Ordering};

/// Progress counters of a pipeline (for `replay`'s progress bar and summary).
#[derive(Debug, Default)]
pub struct Progress {
    /// Records finished.
    pub records: AtomicU64,
    /// Valid events, by type index ([`Progress::type_slot`]: `EventType::KNOWN` order, then unknown).
    pub by_type: [AtomicU64; EventType::KNOWN.len() + 1],
    /// Invalid records, by reason index (`InvalidReason::ALL` order).
    pub invalid: [AtomicU64; InvalidReason::ALL.len()],
    /// Dead letters written.
    pub dead_letters: AtomicU64,
    /// Documents accepted by every sink.
    pub forwarded: AtomicU64,
}

impl Progress {
    /// The index of `t` in [`Progress::by_type`]: its place in `EventType::KNOWN`, unknown types last.
    pub fn type_slot(t: EventType) -> usize {
        EventType::KNOWN
            .iter()
            .position(|k| *k == t)
            .unwrap_or(EventType::KNOWN.len())
    }
}

/// A decoded batch: the valid events and the invalid records (by index into the batch).
#[derive(yoke::Yokeable)]
pub(crate) struct Decoded<'a> {
    pub events: Vec<(usize, Event<'a>)>,
    pub invalid: Vec<(usize, Invalid)>,
}

/// Decodes every record of a batch and counts what was received and what was invalid.
pub(crate) fn decode_batch<'a>(
    pipeline: &str,
    records: &'a [Record],
    metrics: &SelfMetrics,
    progress: &Progress,
) -> Decoded<'a> {
    let mut events = Vec::with_capacity(records.len());
    let mut invalid = Vec::new();
    for (i, record) in records.iter().enumerate() {
        match decode(&record.payload, record.traceparent()) {
            Ok(ev) => events.push((i, ev)),
            Err(e) => invalid.push((i, e)),
        }
    }
    // Records of one batch nearly always share a topic: count runs, not records.
    let mut start = 0;
    while start < records.len() {
        let topic = records[start].origin.topic_label();
        let run = records[start..]
            .iter()
            .take_while(|r| r.origin.topic_label() == topic)
            .count();
        EventsReceived {
            pipeline,
            topic,
            count: run as u64,
        }
        .emit(metrics);
        start += run;
    }
    for reason in InvalidReason::ALL {
        let mut matching = invalid.iter().filter(|(_, e)| e.reason == reason);
        if let Some((first, example)) = matching.next() {
            let count = 1 + matching.count() as u64;
            progress.invalid[reason as usize].fetch_add(count, Ordering::Relaxed);
            InvalidEvents {
                pipeline,
                reason: reason.as_str(),
                count,
                detail: &example.detail,
                origin: &records[*first].origin,
            }
            .emit(metrics);
        }
    }
    count_events(pipeline, &events, metrics, progress);
    Decoded { events, invalid }
}

/// Counts the valid events by type (progress), and observes ingestion time minus `occurred_at` and
/// when each type was last seen: one clock read per batch, observations gathered locally and flushed
/// once per type.
fn count_events(
    pipeline: &str,
    events: &[(usize, Event<'_>)],
    metrics: &SelfMetrics,
    progress: &Progress,
) {
    if events.is_empty() {
        return;
    }
    let now = chrono::Utc::now();
    let mut local: [Option<prometheus::local::LocalHistogram>; EventType::KNOWN.len() + 1] =
        Default::default();
    for (_, ev) in events {
        let t = ev.event_type();
        let slot = Progress::type_slot(t);
        progress.by_type[slot].fetch_add(1, Ordering::Relaxed);
        let delay = (now - ev.occurred_at).num_milliseconds() as f64 / 1000.0;
        local[slot]
            .get_or_insert_with(|| {
                let h = metrics
                    .event_delay
                    .with_label_values(&[pipeline, t.as_str()]);
                h.local()
            })
            .observe(delay);
    }
    let seconds = now.timestamp_millis() as f64 / 1000.0;
    for (slot, histogram) in local.iter_mut().enumerate() {
        if let Some(h) = histogram.take() {
            h.flush();
            let t = EventType::KNOWN
                .get(slot)
                .copied()
                .unwrap_or(EventType::Unknown);
            metrics
                .last_event
                .with_label_values(&[t.as_str()])
                .set(seconds);
        }
    }
}
