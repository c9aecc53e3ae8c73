//! Decoding one batch ahead: a thread between a source and a pipeline decodes batch N+1 while the pipeline
//! works on batch N, so that decoding and the pipeline's own work run on two cores.
//!
//! Decoded events borrow their record's bytes; a [`DecodedBatch`] keeps them together with the batch they
//! borrow from (a `yoke`, no `unsafe` here), so they can cross to the pipeline's task.

use super::{decode_batch, Decoded, Progress};
use crate::source::offsets::TopicPartition;
use crate::source::{Batch, BatchRef, SourceMessage};
use crate::telemetry::SelfMetrics;
use std::sync::Arc;
use tokio::sync::mpsc;
use yoke::Yoke;

/// A batch's decoded records, held with the batch they borrow from.
pub(crate) type DecodedBatch = Yoke<Decoded<'static>, Arc<Batch>>;

/// A [`SourceMessage`] with its batch decoded; in the source's order.
pub(crate) enum Staged {
    /// Records to process, and what decoding made of them.
    Batch(BatchRef, DecodedBatch),
    /// As [`SourceMessage::Assigned`].
    Assigned(Vec<TopicPartition>),
    /// As [`SourceMessage::Revoked`].
    Revoked(Vec<TopicPartition>),
}

/// Starts decoding what `rx` brings, one message ahead of the receiver returned. Decoding counts what
/// was received and what was invalid, as [`decode_batch`] does. The thread ends when the source closes
/// its channel or the pipeline drops the returned receiver.
pub(crate) fn decode_ahead(
    pipeline: &'static str,
    mut rx: mpsc::Receiver<SourceMessage>,
    metrics: Arc<SelfMetrics>,
    progress: Arc<Progress>,
) -> mpsc::Receiver<Staged> {
    // One decoded batch waiting while the pipeline works on another: enough to overlap the two, and
    // the at-least-once replay after a crash grows by no more than that batch.
    let (tx, staged) = mpsc::channel(1);
    tokio::task::spawn_blocking(move || {
        while let Some(message) = rx.blocking_recv() {
            let next = match message {
                SourceMessage::Batch(batch) => {
                    let decoded = Yoke::attach_to_cart(batch.shared(), |batch: &Batch| {
                        decode_batch(pipeline, &batch.records, &metrics, &progress)
                    });
                    Staged::Batch(batch, decoded)
                }
                SourceMessage::Assigned(partitions) => Staged::Assigned(partitions),
                SourceMessage::Revoked(partitions) => Staged::Revoked(partitions),
            };
            if tx.blocking_send(next).is_err() {
                return; // the pipeline stopped
            }
        }
    });
    staged
}
