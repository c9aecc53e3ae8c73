//! Decoding ahead: threads between a source and a pipeline decode the next batches while the pipeline
//! works on the current one, so that decoding and the pipeline's own work spread over the cores. Each
//! worker also runs the pipeline's [`Prepare`] on what it decoded (the metrics pipeline's rule matching
//! and series keys), leaving the pipeline's task only what must happen in order.
//!
//! A dispatcher thread takes the source's messages in order and deals the batches out to the decode
//! workers in turn; for each message it puts, in the same order, a one-shot slot into the pipeline's
//! channel, which the worker fills when the batch is decoded. The pipeline takes the slots in order, so it
//! sees the source's order whichever worker finishes first, partition assignments and revocations included.
//!
//! Decoded events borrow their record's bytes; a [`DecodedBatch`] keeps them together with the batch they
//! borrow from (a `yoke`, no `unsafe` here), so they can cross to the pipeline's task.

use super::{decode_batch, Decoded, Progress};
use crate::derive::Prepared;
use crate::source::offsets::TopicPartition;
use crate::source::{Batch, BatchRef, SourceMessage};
use crate::telemetry::SelfMetrics;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};
use yoke::Yoke;

/// Decode workers at most, whatever the core count: past this, the pipeline's own task is the limit.
const MAX_WORKERS: usize = 4;

/// A batch's decoded records, held with the batch they borrow from.
pub(crate) type DecodedBatch = Yoke<Decoded<'static>, Arc<Batch>>;

/// A [`SourceMessage`] with its batch decoded; in the source's order.
pub(crate) enum Staged {
    /// Records to process, what decoding made of them, what the worker's [`Prepare`] made of that, and
    /// the batch's span (opened and described here, in parallel: its links cost the pipeline's own task
    /// nothing).
    Batch(BatchRef, DecodedBatch, Prepared, tracing::Span),
    /// As [`SourceMessage::Assigned`].
    Assigned(Vec<TopicPartition>),
    /// As [`SourceMessage::Revoked`].
    Revoked(Vec<TopicPartition>),
}

/// What a worker does with a batch it decoded, besides decoding it: the metrics pipeline prepares its
/// derive work there ([`crate::derive::Plan::prepare`]), so that only the store's updates are left for
/// its own task.
pub(crate) type Prepare = Arc<dyn Fn(&Decoded<'_>) -> Prepared + Send + Sync>;

/// The pipeline's end: staged messages in the source's order.
pub(crate) struct StagedReceiver {
    slots: mpsc::Receiver<oneshot::Receiver<Staged>>,
    /// The slot being waited on, kept across a cancelled `recv` so that nothing is lost.
    waiting: Option<oneshot::Receiver<Staged>>,
}

impl StagedReceiver {
    /// The next message; `None` when the source has ended (or a decode worker stopped). Cancel-safe.
    pub(crate) async fn recv(&mut self) -> Option<Staged> {
        if self.waiting.is_none() {
            self.waiting = Some(self.slots.recv().await?);
        }
        let staged = self.waiting.as_mut().expect("just set").await;
        self.waiting = None;
        staged.ok()
    }
}

/// How many decode workers: one per core the process may use (cgroup quotas included), at most
/// [`MAX_WORKERS`].
pub(crate) fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(MAX_WORKERS))
}

/// Starts decoding what `rx` brings on `workers` threads, ahead of the receiver returned, and running
/// `prepare` on each decoded batch. Decoding counts what was received and what was invalid, as
/// [`decode_batch`] does. The threads end when the source
/// closes its channel or the pipeline drops the returned receiver.
pub(crate) fn decode_ahead(
    pipeline: &'static str,
    mut rx: mpsc::Receiver<SourceMessage>,
    metrics: Arc<SelfMetrics>,
    progress: Arc<Progress>,
    workers: usize,
    prepare: Prepare,
) -> StagedReceiver {
    let workers = workers.max(1);
    // Slots handed to the pipeline but not yet taken: one per worker, so every worker can be decoding
    // while the pipeline works. The at-least-once replay after a crash grows by these batches and the
    // one the dispatcher holds.
    let (slots_tx, slots) = mpsc::channel(workers);
    let mut queues = Vec::with_capacity(workers);
    for _ in 0..workers {
        let (tx, mut jobs) = mpsc::channel::<(BatchRef, oneshot::Sender<Staged>)>(1);
        queues.push(tx);
        let (metrics, progress, prepare) = (metrics.clone(), progress.clone(), prepare.clone());
        tokio::task::spawn_blocking(move || {
            while let Some((batch, slot)) = jobs.blocking_recv() {
                let span = crate::telemetry::otel::spans::batch(pipeline, batch.records().len());
                let decoded = span.in_scope(|| {
                    Yoke::attach_to_cart(batch.shared(), |batch: &Batch| {
                        decode_batch(pipeline, &batch.records, &metrics, &progress)
                    })
                });
                super::trace::describe(&span, batch.records(), decoded.get());
                let prepared = span.in_scope(|| prepare(decoded.get()));
                // A closed slot: the pipeline stopped; the dispatcher notices on its side.
                let _ = slot.send(Staged::Batch(batch, decoded, prepared, span));
            }
        });
    }
    tokio::task::spawn_blocking(move || {
        let mut next_worker = 0;
        while let Some(message) = rx.blocking_recv() {
            let (slot, filled) = oneshot::channel();
            match message {
                SourceMessage::Batch(batch) => {
                    let queue = &queues[next_worker];
                    next_worker = (next_worker + 1) % queues.len();
                    if queue.blocking_send((batch, slot)).is_err() {
                        return;
                    }
                }
                // Nothing to decode: the slot is filled at once, and still taken in order.
                SourceMessage::Assigned(partitions) => {
                    let _ = slot.send(Staged::Assigned(partitions));
                }
                SourceMessage::Revoked(partitions) => {
                    let _ = slot.send(Staged::Revoked(partitions));
                }
            }
            if slots_tx.blocking_send(filled).is_err() {
                return; // the pipeline stopped
            }
        }
    });
    StagedReceiver {
        slots,
        waiting: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::{Origin, Record};

    fn batch(seq: u64, size: usize) -> SourceMessage {
        // Batches of different sizes (so workers finish out of order), each record naming its batch.
        let records = (0..size)
            .map(|i| {
                let payload = format!(
                    r#"{{"event_id":"b{seq}-{i}","type":"billing_tick","occurred_at":"2026-11-27T08:00:00Z","organization":"o{seq}"}}"#
                );
                Record::new(payload.into_bytes(), Origin::Generator { seq })
            })
            .collect();
        SourceMessage::Batch(Batch::new(records, 1, None).handle())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn keeps_the_source_order_with_several_workers() {
        let (tx, rx) = mpsc::channel(4);
        let mut staged = decode_ahead(
            "metrics",
            rx,
            Arc::new(SelfMetrics::new()),
            Arc::new(Progress::default()),
            3,
            Arc::new(|_: &Decoded<'_>| Prepared::default()),
        );
        let feeder = tokio::task::spawn_blocking(move || {
            for seq in 0..60u64 {
                let size = if seq % 3 == 0 { 400 } else { 1 };
                tx.blocking_send(batch(seq, size)).unwrap();
                if seq % 7 == 0 {
                    let tp: TopicPartition = (Arc::from("t"), seq as i32);
                    let message = if seq % 2 == 0 {
                        SourceMessage::Assigned(vec![tp])
                    } else {
                        SourceMessage::Revoked(vec![tp])
                    };
                    tx.blocking_send(message).unwrap();
                }
            }
        });
        let mut seen = Vec::new();
        while let Some(message) = staged.recv().await {
            seen.push(match message {
                Staged::Batch(batch, decoded, _, _) => {
                    let events = &decoded.get().events;
                    assert_eq!(events.len(), batch.records().len());
                    let Origin::Generator { seq } = batch.records()[0].origin else {
                        unreachable!()
                    };
                    // The decoded events are the batch's own.
                    assert_eq!(events[0].1.organization, format!("o{seq}"));
                    format!("b{seq}")
                }
                Staged::Assigned(tps) => format!("a{}", tps[0].1),
                Staged::Revoked(tps) => format!("r{}", tps[0].1),
            });
        }
        feeder.await.unwrap();
        let mut expected = Vec::new();
        for seq in 0..60 {
            expected.push(format!("b{seq}"));
            if seq % 7 == 0 {
                expected.push(format!("{}{seq}", if seq % 2 == 0 { 'a' } else { 'r' }));
            }
        }
        assert_eq!(seen, expected);
    }
}
