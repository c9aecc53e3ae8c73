//! The forward pipeline: decode -> enrich -> every sink.

use super::metrics::write_dead_letters;
use super::{decode_batch, retry, Progress, Shutdown};
use crate::deadletter::{DeadLetter, DeadLetterItem};
use crate::forward::{original_json, Document, Enricher, Sink, SinkError};
use crate::source::{BatchRef, SourceMessage};
use crate::telemetry::events::{EventsIgnored, SinkDelivered, SinkFailed};
use crate::telemetry::SelfMetrics;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::sync::mpsc;

/// The pipeline's label value.
pub const NAME: &str = "forward";

/// decode -> enrich -> sinks.
pub struct ForwardPipeline {
    pub enricher: Enricher,
    pub sinks: Vec<Box<dyn Sink>>,
    /// Where invalid records go when the metrics pipeline is off, and where records a sink rejected for
    /// good always go.
    pub dead_letter: Arc<DeadLetter>,
    /// Whether this pipeline dead-letters invalid records (the metrics pipeline does, when it runs).
    pub owns_invalid: bool,
    pub metrics: Arc<SelfMetrics>,
    pub progress: Arc<Progress>,
    pub shutdown: Shutdown,
}

impl ForwardPipeline {
    /// Processes batches until the source closes the channel (or the drain deadline stops a retry).
    pub async fn run(self, mut rx: mpsc::Receiver<SourceMessage>) {
        while let Some(message) = rx.recv().await {
            // Assignments matter only to the metrics side's state.
            let SourceMessage::Batch(batch) = message else {
                continue;
            };
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
        let ingested = chrono::Utc::now();
        let mut docs: Vec<Document> = Vec::with_capacity(decoded.events.len());
        let mut doc_records: Vec<usize> = Vec::with_capacity(decoded.events.len());
        for (i, ev) in &decoded.events {
            // The payload decoded, so it is one JSON object and embedding it cannot fail; were it to,
            // the record still goes, with its bytes as a string.
            let payload = &records[*i].payload;
            let original = original_json(payload).unwrap_or_else(|_| {
                serde_json::value::to_raw_value(&String::from_utf8_lossy(payload))
                    .expect("a string is JSON")
            });
            docs.push(self.enricher.enrich(ev, &records[*i], original, ingested));
            doc_records.push(*i);
        }
        let mut dead: Vec<DeadLetterItem<'_>> = Vec::new();
        if self.owns_invalid {
            dead.extend(decoded.invalid.iter().map(|(i, e)| DeadLetterItem {
                record: &records[*i],
                reason: e.reason.as_str(),
                detail: e.detail.to_string(),
            }));
        } else if !decoded.invalid.is_empty() {
            EventsIgnored {
                pipeline: NAME,
                reason: "invalid",
                count: decoded.invalid.len() as u64,
            }
            .emit(&self.metrics);
        }
        for sink in &self.sinks {
            let name = sink.name();
            let outcome = retry(
                &self.shutdown,
                || async {
                    match sink.send(&docs).await {
                        Err(SinkError::Retriable(reason)) => Err(SinkError::Retriable(reason)),
                        other => Ok(other),
                    }
                },
                |error, attempt| {
                    SinkFailed {
                        sink: name,
                        error,
                        attempt,
                    }
                    .emit(&self.metrics)
                },
            )
            .await?;
            let rejected = match outcome {
                Ok(()) => Vec::new(),
                Err(SinkError::Rejected(rejected)) => rejected,
                Err(SinkError::Retriable(_)) => unreachable!("retried above"),
            };
            SinkDelivered {
                sink: name,
                count: (docs.len() - rejected.len()) as u64,
            }
            .emit(&self.metrics);
            for (doc, reason) in rejected {
                if let Some(&record) = doc_records.get(doc) {
                    dead.push(DeadLetterItem {
                        record: &records[record],
                        reason: "sink_rejected",
                        detail: format!("{name}: {reason}"),
                    });
                }
            }
        }
        if !dead.is_empty() {
            write_dead_letters(
                &self.dead_letter,
                NAME,
                &dead,
                &self.metrics,
                &self.shutdown,
            )
            .await?;
            self.progress
                .dead_letters
                .fetch_add(dead.len() as u64, Ordering::Relaxed);
        }
        self.progress
            .forwarded
            .fetch_add(docs.len() as u64, Ordering::Relaxed);
        self.progress
            .records
            .fetch_add(records.len() as u64, Ordering::Relaxed);
        Ok(())
    }
}
