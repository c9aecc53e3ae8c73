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
use crate::telemetry::SelfMetrics;
use std::sync::atomic::Ordering;

/// Dead-letters a batch's invalid records (by index into `records`) and counts them.
pub(crate) async fn dead_letter_invalid(
    dead_letter: &Destination,
    pipeline: &str,
    records: &[Record],
    invalid: &[(usize, Invalid)],
    metrics: &SelfMetrics,
    progress: &Progress,
    shutdown: &Shutdown,
) -> Result<(), Stopped> {
    if invalid.is_empty() {
        return Ok(());
    }
    let items: Vec<DeadLetter<'_>> = invalid
        .iter()
        .map(|(i, e)| DeadLetter {
            record: &records[*i],
            reason: e.reason.as_str(),
            detail: e.detail.to_string(),
        })
        .collect();
    write_dead_letters(dead_letter, pipeline, &items, metrics, shutdown).await?;
    progress
        .dead_letters
        .fetch_add(items.len() as u64, Ordering::Relaxed);
    Ok(())
}

/// Writes dead letters, retrying until they are safe, and counts them by reason.
pub(crate) async fn write_dead_letters(
    dead_letter: &Destination,
    pipeline: &str,
    items: &[DeadLetter<'_>],
    metrics: &SelfMetrics,
    shutdown: &Shutdown,
) -> Result<(), Stopped> {
    retry(
        shutdown,
        &RetryConfig::default(),
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
