//! The metrics pipeline: decode -> derive; invalid records are dead-lettered.

use super::{decode_batch, retry, Progress, Shutdown};
use crate::deadletter::{DeadLetter, DeadLetterItem};
use crate::derive::{Plan, Store};
use crate::source::BatchRef;
use crate::telemetry::events::{DeadLetterFailed, DeadLettered, EventsIgnored, RuleSkipped};
use crate::telemetry::SelfMetrics;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::sync::mpsc;

/// The pipeline's label value.
pub const NAME: &str = "metrics";

/// decode -> derive.
pub struct MetricsPipeline {
    pub plan: Arc<Plan>,
    pub store: Arc<parking_lot::Mutex<Store>>,
    /// Where invalid records go; `None` when the forward pipeline dead-letters instead (it never is while
    /// this pipeline runs, see `app`).
    pub dead_letter: Option<Arc<DeadLetter>>,
    pub metrics: Arc<SelfMetrics>,
    pub progress: Arc<Progress>,
    pub shutdown: Shutdown,
}

impl MetricsPipeline {
    /// Processes batches until the source closes the channel (or the drain deadline stops a retry).
    pub async fn run(self, mut rx: mpsc::Receiver<BatchRef>) {
        while let Some(batch) = rx.recv().await {
            if self.process(&batch).await.is_err() {
                tracing::warn!(
                    pipeline = NAME,
                    "drain deadline passed: unfinished records will be read again"
                );
                return;
            }
            batch.done();
        }
    }

    async fn process(&self, batch: &BatchRef) -> Result<(), super::Stopped> {
        let records = batch.records();
        let decoded = decode_batch(NAME, records, &self.metrics, &self.progress);
        let mut unknown = 0u64;
        let skipped = {
            let mut store = self.store.lock();
            for (_, ev) in &decoded.events {
                if ev.event_type() == crate::decode::EventType::Unknown {
                    unknown += 1;
                }
                self.plan.observe(&mut store, ev);
            }
            let skipped = store.take_skipped();
            skipped
                .into_iter()
                .map(|(rule, reason, n)| (store.metric_name(rule).to_owned(), reason, n))
                .collect::<Vec<_>>()
        };
        for (metric, reason, count) in &skipped {
            RuleSkipped {
                metric,
                reason: reason.as_str(),
                count: *count,
            }
            .emit(&self.metrics);
        }
        if unknown > 0 {
            EventsIgnored {
                pipeline: NAME,
                reason: "unknown_type",
                count: unknown,
            }
            .emit(&self.metrics);
        }
        if let (Some(dead_letter), false) = (&self.dead_letter, decoded.invalid.is_empty()) {
            let items: Vec<DeadLetterItem<'_>> = decoded
                .invalid
                .iter()
                .map(|(i, e)| DeadLetterItem {
                    record: &records[*i],
                    reason: e.reason.as_str(),
                    detail: e.detail.to_string(),
                })
                .collect();
            write_dead_letters(dead_letter, NAME, &items, &self.metrics, &self.shutdown).await?;
            self.progress
                .dead_letters
                .fetch_add(items.len() as u64, Ordering::Relaxed);
        }
        self.progress
            .records
            .fetch_add(records.len() as u64, Ordering::Relaxed);
        Ok(())
    }
}

/// Writes dead letters, retrying until they are safe, and counts them by reason.
pub(crate) async fn write_dead_letters(
    dead_letter: &DeadLetter,
    pipeline: &str,
    items: &[DeadLetterItem<'_>],
    metrics: &SelfMetrics,
    shutdown: &Shutdown,
) -> Result<(), super::Stopped> {
    retry(
        shutdown,
        || dead_letter.send(pipeline, items),
        |error, attempt| {
            DeadLetterFailed {
                pipeline,
                error,
                attempt,
            }
            .emit(metrics)
        },
    )
    .await?;
    let mut reasons: Vec<&str> = items.iter().map(|i| i.reason).collect();
    reasons.sort_unstable();
    for chunk in reasons.chunk_by(|a, b| a == b) {
        DeadLettered {
            pipeline,
            reason: chunk[0],
            count: chunk.len() as u64,
        }
        .emit(metrics);
    }
    Ok(())
}
