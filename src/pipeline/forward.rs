//! The forward pipeline: decode -> enrich -> redact -> every sink's worker -> finisher.
//!
//! This task turns each source batch into documents (invalid records too, when forwarded) and hands
//! the same [`Job`] to every sink's [`Worker`]; the workers batch, send and retry on their own tasks, so
//! decoding the next batch overlaps delivering the last. A full worker queue blocks this task, which
//! fills the source's queue, which pauses the Kafka partitions: a SIEM outage holds the forwarder's
//! offsets back and never the metrics pipeline (its own consumer group). The finisher writes what the
//! sinks refused for good to the dead letters, then reports the batch done.

use super::dead_letters::DeadLetters;
use super::deliver::{Job, Worker};
use super::{decode_batch, Decoded, Progress};
use crate::deadletter::DeadLetter;
use crate::forward::enrich::BatchContext;
use crate::forward::organizations::LiveOrganizations;
use crate::forward::{Document, Enricher, Redacted, Redactor};
use crate::source::{BatchRef, Record, SourceMessage};
use crate::telemetry::events::{EventsIgnored, RedactionFailed, Redactions};
use crate::telemetry::otel::spans;
use crate::telemetry::SelfMetrics;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::sync::mpsc;
use tracing::Instrument as _;

/// The pipeline's label value.
pub const NAME: &str = "forward";

/// Jobs queued per sink worker before the pipeline waits.
const WORKER_QUEUE: usize = 4;

/// decode -> enrich -> redact -> sinks.
pub struct ForwardPipeline {
    /// Batch -> job.
    pub prepare: Prepare,
    /// One worker per sink (their `index` is their position here).
    pub workers: Vec<Worker>,
}

impl ForwardPipeline {
    /// Processes batches until the source closes the channel; then lets the workers send what they
    /// hold, and the finisher settle it.
    pub async fn run(self, mut rx: mpsc::Receiver<SourceMessage>) {
        let ForwardPipeline { prepare, workers } = self;
        let (finished_tx, finished_rx) = mpsc::unbounded_channel();
        let finisher = tokio::spawn(finish(
            finished_rx,
            prepare.dead_letters.clone(),
            prepare.progress.clone(),
        ));
        let sinks = workers.len();
        let mut queues = Vec::with_capacity(sinks);
        let mut tasks = Vec::with_capacity(sinks);
        for worker in workers {
            let (tx, rx) = mpsc::channel(WORKER_QUEUE);
            queues.push(tx);
            tasks.push(tokio::spawn(worker.run(rx, finished_tx.clone())));
        }
        while let Some(message) = rx.recv().await {
            // Assignments matter only to the metrics side's state.
            let SourceMessage::Batch(batch) = message else {
                continue;
            };
            let Some(job) = prepare.job(batch, sinks).await else {
                tracing::warn!(
                    pipeline = NAME,
                    "drain deadline passed: unfinished records will be read again"
                );
                break;
            };
            let job = Arc::new(job);
            if job.docs.is_empty() {
                let _ = finished_tx.send(job);
                continue;
            }
            let mut gone = false;
            for queue in &queues {
                gone |= queue.send(job.clone()).await.is_err();
            }
            if gone {
                tracing::warn!(
                    pipeline = NAME,
                    "a sink stopped at the drain deadline: unfinished records will be read again"
                );
                break;
            }
        }
        drop(queues);
        for task in tasks {
            let _ = task.await;
        }
        drop(finished_tx);
        let _ = finisher.await;
    }
}

/// What turns a batch into a job: decode, enrich, redact.
pub struct Prepare {
    pub enricher: Enricher,
    pub redactor: Redactor,
    pub organizations: LiveOrganizations,
    /// Forward invalid records too (marked `event.outcome = "invalid"`).
    pub forward_invalid: bool,
    /// Where invalid records go when the metrics pipeline is off, and where records a sink refused for
    /// good always go.
    pub dead_letters: DeadLetters,
    /// Whether this pipeline dead-letters invalid records (the metrics pipeline does, when it runs).
    pub owns_invalid: bool,
    pub metrics: Arc<SelfMetrics>,
    pub progress: Arc<Progress>,
}

impl Prepare {
    /// Decodes, enriches and redacts a batch into a job for `sinks` sinks, and dead-letters its invalid
    /// records if this pipeline owns them. `None`: the drain deadline passed while writing dead letters.
    async fn job(&self, batch: BatchRef, sinks: usize) -> Option<Job> {
        let records = batch.records();
        // Decoded inside the span: what decoding logs (invalid records) carries its ids.
        let span = spans::batch(NAME, records.len());
        let decoded = span.in_scope(|| decode_batch(NAME, records, &self.metrics, &self.progress));
        super::trace::describe(&span, records, &decoded);
        let parts = self
            .documents(records, &decoded)
            .instrument(span.clone())
            .await;
        spans::finished(&span, parts.is_some(), "handed to the sinks");
        let (docs, doc_records) = parts?;
        Some(Job::new(docs, doc_records, batch, sinks))
    }

    /// The redacted documents of a decoded batch and their records; its invalid records dead-lettered
    /// if this pipeline owns them. `None`: the drain deadline passed while writing dead letters.
    async fn documents(
        &self,
        records: &[Record],
        decoded: &Decoded<'_>,
    ) -> Option<(Vec<Redacted>, Vec<usize>)> {
        let ingested = chrono::Utc::now();
        let organizations = self.organizations.read().clone();
        let ctx = BatchContext::new(ingested, &organizations);
        let forwarded_invalid = if self.forward_invalid {
            decoded.invalid.len()
        } else {
            0
        };
        let mut docs: Vec<Document> = Vec::with_capacity(decoded.events.len() + forwarded_invalid);
        let mut doc_records: Vec<usize> = Vec::with_capacity(docs.capacity());
        for (i, ev) in &decoded.events {
            docs.push(self.enricher.enrich(ev, &records[*i], &ctx));
            doc_records.push(*i);
        }
        if self.forward_invalid {
            for (i, invalid) in &decoded.invalid {
                docs.push(
                    self.enricher
                        .enrich_invalid(&records[*i], invalid, ingested, &ctx),
                );
                doc_records.push(*i);
            }
        }
        let (docs, doc_records) = self.redact(docs, doc_records, records).await?;
        if self.owns_invalid {
            self.dead_letters
                .invalid(records, &decoded.invalid)
                .await
                .ok()?;
        } else if !self.forward_invalid && !decoded.invalid.is_empty() {
            EventsIgnored {
                pipeline: NAME,
                reason: "invalid",
                count: decoded.invalid.len() as u64,
            }
            .emit(&self.metrics);
        }
        Some((docs, doc_records))
    }
}

impl Prepare {
    /// Redacts the documents (`doc_records[i]` is document `i`'s record). Those the redactor cannot read
    /// are dead-lettered (`redaction_failed`), never forwarded. `None`: the drain deadline passed while
    /// writing those dead letters.
    async fn redact(
        &self,
        docs: Vec<Document>,
        doc_records: Vec<usize>,
        records: &[Record],
    ) -> Option<(Vec<Redacted>, Vec<usize>)> {
        let mut tally = vec![0u64; self.redactor.rule_names().len()];
        let mut redacted = Vec::with_capacity(docs.len());
        let mut kept = Vec::with_capacity(docs.len());
        let mut refused: Vec<DeadLetter<'_>> = Vec::new();
        for (doc, record) in docs.into_iter().zip(doc_records) {
            match self.redactor.redact(doc, &mut tally) {
                Ok(doc) => {
                    redacted.push(doc);
                    kept.push(record);
                }
                Err(failure) => refused.push(DeadLetter {
                    record: &records[record],
                    reason: "redaction_failed",
                    detail: failure.error,
                }),
            }
        }
        Redactions {
            rules: self.redactor.rule_names(),
            tally: &tally,
        }
        .emit(&self.metrics);
        if let Some(first) = refused.first() {
            RedactionFailed {
                count: refused.len() as u64,
                detail: &first.detail,
            }
            .emit(&self.metrics);
            self.dead_letters.write(&refused).await.ok()?;
        }
        Some((redacted, kept))
    }
}

/// Settles finished jobs: dead letters for what sinks refused, then the batch is done.
async fn finish(
    mut rx: mpsc::UnboundedReceiver<Arc<Job>>,
    dead_letters: DeadLetters,
    progress: Arc<Progress>,
) {
    while let Some(job) = rx.recv().await {
        let Some(batch) = job.batch.lock().take() else {
            continue;
        };
        let records = batch.records();
        let rejections = std::mem::take(&mut *job.rejections.lock());
        if !rejections.is_empty() {
            let dead: Vec<DeadLetter<'_>> = rejections
                .iter()
                .map(|r| DeadLetter {
                    record: &records[job.doc_records[r.doc]],
                    reason: "sink_rejected",
                    detail: format!("{} ({}): {}", r.sink, r.refusal.class, r.refusal.detail),
                })
                .collect();
            if dead_letters.write(&dead).await.is_err() {
                continue;
            }
        }
        let mut refused: Vec<usize> = rejections.iter().map(|r| r.doc).collect();
        refused.sort_unstable();
        refused.dedup();
        progress
            .forwarded
            .fetch_add((job.docs.len() - refused.len()) as u64, Ordering::Relaxed);
        progress
            .records
            .fetch_add(records.len() as u64, Ordering::Relaxed);
        batch.done();
    }
}
