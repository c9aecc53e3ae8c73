//! Dead letters, for both pipelines: the invalid records of a batch (written by the metrics pipeline, or
//! by the forward pipeline when it runs alone) and the records a sink refused for good. Each write is
//! retried until it is safe, and counted by reason, before the batch may be reported done.

use super::{retry, Progress, Stopped};
use crate::config::RetryConfig;
use crate::deadletter::{DeadLetter, Destination};
use crate::decode::Invalid;
use crate::lifecycle::Shutdown;
use crate::source::Record;
use crate::telemetry::events::{DeadLetterFailed, DeadLettered};
use crate::telemetry::otel::spans;
use crate::telemetry::SelfMetrics;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tracing::Instrument as _;

/// A pipeline's way to the dead-letter destination, with what it counts in.
#[derive(Clone)]
pub struct DeadLetters {
    destination: Arc<Destination>,
    /// The pipeline's name (a label).
    pipeline: &'static str,
    metrics: Arc<SelfMetrics>,
    progress: Arc<Progress>,
    shutdown: Shutdown,
}

impl DeadLetters {
    /// Dead letters of `pipeline` to `destination`, counted in `metrics` and `progress`; retries stop
    /// at `shutdown`'s drain deadline.
    pub fn new(
        destination: Arc<Destination>,
        pipeline: &'static str,
        metrics: Arc<SelfMetrics>,
        progress: Arc<Progress>,
        shutdown: Shutdown,
    ) -> Self {
        DeadLetters {
            destination,
            pipeline,
            metrics,
            progress,
            shutdown,
        }
    }

    /// Dead-letters a batch's invalid records (by index into `records`).
    pub async fn invalid(
        &self,
        records: &[Record],
        invalid: &[(usize, Invalid)],
    ) -> Result<(), Stopped> {
        let items: Vec<DeadLetter<'_>> = invalid
            .iter()
            .map(|(i, e)| DeadLetter {
                record: &records[*i],
                reason: e.reason.as_str(),
                detail: e.detail.to_string(),
            })
            .collect();
        self.write(&items).await
    }

    /// Writes dead letters, retrying until they are safe, and counts them by reason.
    pub async fn write(&self, items: &[DeadLetter<'_>]) -> Result<(), Stopped> {
        if items.is_empty() {
            return Ok(());
        }
        let pipeline = self.pipeline;
        let span = spans::dead_letter_write(pipeline, items.len());
        let mut attempts = 1u32;
        let written = retry(
            &self.shutdown,
            &RetryConfig::default(),
            || self.destination.send(pipeline, items),
            |error, attempt| {
                attempts = attempt + 1;
                DeadLetterFailed {
                    pipeline,
                    error,
                    attempt,
                }
                .emit(&self.metrics)
            },
        )
        .instrument(span.clone())
        .await;
        if !span.is_disabled() {
            spans::set(&span, "attempts", i64::from(attempts));
            spans::set(&span, "destination", self.destination.describe());
        }
        spans::finished(&span, written.is_ok(), "written");
        written?;
        let mut reasons: Vec<&str> = items.iter().map(|i| i.reason).collect();
        reasons.sort_unstable();
        for chunk in reasons.chunk_by(|a, b| a == b) {
            DeadLettered {
                pipeline,
                reason: chunk[0],
                count: chunk.len() as u64,
            }
            .emit(&self.metrics);
        }
        self.progress
            .dead_letters
            .fetch_add(items.len() as u64, Ordering::Relaxed);
        Ok(())
    }
}
