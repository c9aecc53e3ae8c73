//! Delivery to one sink: batching by count, bytes and age; retries with backoff and jitter; bisection
//! of batches refused for their content; rejections handed back for dead-lettering.
//!
//! The forward pipeline hands every sink's worker the same [`Job`] (the documents of one source batch).
//! A worker frames the documents for its sink into its current batch and sends that batch when it is
//! full or old enough. When a worker has finished with every document of a job (accepted, or refused
//! for good), it says so on the job; when every sink has, the job goes to the finisher, which writes
//! the dead letters and only then reports the source batch done. A job a worker could not finish (the
//! shutdown drain deadline passed during a retry) is never reported done: its records are read again.

use super::{Backoff, Shutdown};
use crate::config::{BatchConfig, RetryConfig};
use crate::forward::sink::{framed, Delivery, Encoded, FailureClass, Refusal, Sink, SinkError};
use crate::forward::Redacted;
use crate::source::BatchRef;
use crate::telemetry::events::{SinkAttemptFailed, SinkDelivered, SinkRejected};
use crate::telemetry::otel::spans;
use crate::telemetry::SelfMetrics;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::mpsc;
use tracing::Instrument as _;

/// A document refused for good by a sink.
#[derive(Debug, Clone)]
pub struct Rejection {
    /// Index of the document in its job.
    pub doc: usize,
    /// The sink's name.
    pub sink: String,
    pub refusal: Refusal,
}

/// The documents of one source batch, on their way to every sink.
pub struct Job {
    /// The documents.
    pub docs: Vec<Redacted>,
    /// The index of each document's record in the source batch.
    pub doc_records: Vec<usize>,
    /// The source batch, taken and reported done by the finisher.
    pub batch: parking_lot::Mutex<Option<BatchRef>>,
    /// Per sink: documents it has not finished yet.
    left: Vec<AtomicUsize>,
    /// Sinks not finished with the job.
    sinks_left: AtomicUsize,
    /// What sinks refused for good.
    pub rejections: parking_lot::Mutex<Vec<Rejection>>,
}

impl Job {
    /// A job for `sinks` sinks.
    pub fn new(
        docs: Vec<Redacted>,
        doc_records: Vec<usize>,
        batch: BatchRef,
        sinks: usize,
    ) -> Self {
        let n = docs.len();
        Job {
            docs,
            doc_records,
            batch: parking_lot::Mutex::new(Some(batch)),
            left: (0..sinks).map(|_| AtomicUsize::new(n)).collect(),
            sinks_left: AtomicUsize::new(sinks),
            rejections: parking_lot::Mutex::new(Vec::new()),
        }
    }

    /// Sink `sink` finished `count` more documents; true when that was the last of the last sink.
    fn finished(&self, sink: usize, count: usize) -> bool {
        count > 0
            && self.left[sink].fetch_sub(count, Ordering::AcqRel) == count
            && self.sinks_left.fetch_sub(1, Ordering::AcqRel) == 1
    }
}

/// A job finished by every sink, for the finisher.
pub type Finished = mpsc::UnboundedSender<Arc<Job>>;

/// One sink's worker.
pub struct Worker {
    pub sink: Box<dyn Sink>,
    /// The sink's index in every job.
    pub index: usize,
    pub batch: BatchConfig,
    pub retry: RetryConfig,
    pub metrics: Arc<SelfMetrics>,
    pub shutdown: Shutdown,
}

/// A sink request span's outcome: whether it is a success, and its status (`accepted`, `partial`,
/// `split`, `rejected`, or the failure class of a failed attempt).
fn status(answer: &Result<Delivery, SinkError>) -> (bool, &'static str) {
    match answer {
        Ok(Delivery::Accepted) => (true, "accepted"),
        Ok(Delivery::Partial { .. }) => (true, "partial"),
        Ok(Delivery::Split(_)) => (false, "split"),
        Ok(Delivery::RejectedAll(_)) => (false, "rejected"),
        Err(error) => (false, error.class.as_str()),
    }
}

/// A batch's parts still to send, and the waits between attempts.
struct Retrying {
    queue: VecDeque<Vec<usize>>,
    backoff: Backoff,
    attempt: u32,
}

/// A part that was sent: its records (indices into the batch), their sizes, how long the request took.
struct Sent {
    sub: Vec<usize>,
    sizes: Vec<u64>,
    elapsed: std::time::Duration,
}

/// The batch being filled.
#[derive(Default)]
struct Pending {
    items: Vec<(Arc<Job>, usize)>,
    body: Vec<u8>,
    ends: Vec<usize>,
    since: Option<Instant>,
}

impl Pending {
    fn len(&self) -> usize {
        self.items.len()
    }

    /// Takes the first `n` records, leaving the rest.
    fn take(&mut self, n: usize) -> Pending {
        if n == self.items.len() {
            return std::mem::take(self);
        }
        let cut = self.ends[n - 1];
        let rest_items = self.items.split_off(n);
        let rest_body = self.body.split_off(cut);
        let rest_ends = self
            .ends
            .split_off(n)
            .into_iter()
            .map(|e| e - cut)
            .collect();
        let head = Pending {
            items: std::mem::replace(&mut self.items, rest_items),
            body: std::mem::replace(&mut self.body, rest_body),
            ends: std::mem::replace(&mut self.ends, rest_ends),
            since: self.since,
        };
        self.since = (!self.items.is_empty()).then(Instant::now);
        head
    }
}

impl Worker {
    /// Runs until the pipeline closes `rx` (then sends what it holds) or a retry is stopped by the drain
    /// deadline.
    pub async fn run(self, mut rx: mpsc::Receiver<Arc<Job>>, finished: Finished) {
        let mut pending = Pending::default();
        let timeout = self.batch.timeout;
        loop {
            let deadline = pending
                .since
                .map(|s| tokio::time::Instant::from_std(s + timeout));
            let job = tokio::select! {
                job = rx.recv() => job,
                _ = async { tokio::time::sleep_until(deadline.expect("guarded")).await }, if deadline.is_some() => {
                    let batch = pending.take(pending.len());
                    if self.deliver(batch, &finished).await.is_err() {
                        return;
                    }
                    continue;
                }
            };
            let Some(job) = job else {
                if pending.len() > 0 {
                    let batch = pending.take(pending.len());
                    let _ = self.deliver(batch, &finished).await;
                }
                return;
            };
            for i in 0..job.docs.len() {
                self.sink.encode(&job.docs[i], &mut pending.body);
                pending.ends.push(pending.body.len());
                pending.items.push((job.clone(), i));
                pending.since.get_or_insert_with(Instant::now);
                let n = pending.len();
                let over_bytes = pending.body.len() > self.batch.max_bytes;
                if n >= self.batch.max_events || over_bytes {
                    // Over the byte limit: the last record starts the next batch (unless alone).
                    let send = if over_bytes && n > 1 { n - 1 } else { n };
                    let batch = pending.take(send);
                    if self.deliver(batch, &finished).await.is_err() {
                        return;
                    }
                }
            }
        }
    }

    /// Sends a batch until every record is accepted or refused for good; then settles its jobs.
    async fn deliver(&self, batch: Pending, finished: &Finished) -> Result<(), super::Stopped> {
        let mut retrying = Retrying {
            queue: VecDeque::from([(0..batch.len()).collect()]),
            backoff: Backoff::new(&self.retry),
            attempt: 0,
        };
        while let Some(sub) = retrying.queue.pop_front() {
            let started = Instant::now();
            let span = spans::sink_request(self.sink.name(), sub.len(), retrying.attempt + 1);
            let (answer, sizes) = self.send_part(&batch, &sub).instrument(span.clone()).await;
            if !span.is_disabled() {
                spans::set(&span, "bytes", sizes.iter().sum::<u64>() as i64);
                let (ok, status) = status(&answer);
                spans::outcome(&span, ok, status);
            }
            drop(span);
            let sent = Sent {
                sub,
                sizes,
                elapsed: started.elapsed(),
            };
            self.answered(&batch, sent, answer, &mut retrying).await?;
        }
        self.settle(&batch, finished);
        Ok(())
    }

    /// Sends the records `sub` of the batch: the batch's bytes as they are the first time, the part
    /// framed again from them after a split or a partial answer. The answer, and each record's size.
    async fn send_part(
        &self,
        batch: &Pending,
        sub: &[usize],
    ) -> (Result<Delivery, SinkError>, Vec<u64>) {
        let (body, ends) = if sub.len() == batch.len() {
            (None, None)
        } else {
            let mut body = Vec::new();
            let mut ends = Vec::with_capacity(sub.len());
            for &i in sub {
                body.extend_from_slice(framed(&batch.body, &batch.ends, i));
                ends.push(body.len());
            }
            (Some(body), Some(ends))
        };
        let docs: Vec<&Redacted> = sub
            .iter()
            .map(|&i| &batch.items[i].0.docs[batch.items[i].1])
            .collect();
        let encoded = Encoded {
            docs: &docs,
            body: body.as_deref().unwrap_or(&batch.body),
            ends: ends.as_deref().unwrap_or(&batch.ends),
        };
        let sizes = (0..sub.len())
            .map(|i| encoded.record(i).len() as u64)
            .collect();
        (self.sink.send(&encoded).await, sizes)
    }

    /// Acts on the sink's answer for a part: counts what was accepted, records refusals on their jobs,
    /// queues what must be sent again (waiting first), splits a batch refused for its content.
    async fn answered(
        &self,
        batch: &Pending,
        sent: Sent,
        answer: Result<Delivery, SinkError>,
        r: &mut Retrying,
    ) -> Result<(), super::Stopped> {
        let Sent {
            sub,
            sizes,
            elapsed,
        } = sent;
        let reject = |local: usize, refusal: &Refusal| {
            let (job, doc) = &batch.items[sub[local]];
            job.rejections.lock().push(Rejection {
                doc: *doc,
                sink: self.sink.name().to_owned(),
                refusal: refusal.clone(),
            });
        };
        match answer {
            Ok(Delivery::Accepted) => {
                self.delivered(&sizes, &[], elapsed);
                r.backoff.reset();
            }
            Ok(Delivery::Partial { rejected, retry }) => {
                let mut skip: Vec<usize> = retry.clone();
                skip.extend(rejected.iter().map(|(i, _)| *i));
                self.delivered(&sizes, &skip, elapsed);
                for (i, refusal) in &rejected {
                    reject(*i, refusal);
                    self.rejected(refusal, 1);
                }
                if !retry.is_empty() {
                    let detail = format!("{} record(s) to send again", retry.len());
                    let error = SinkError::new(FailureClass::Partial, detail);
                    self.failed(&error, &mut r.attempt, &mut r.backoff).await?;
                    r.queue.push_front(retry.iter().map(|&i| sub[i]).collect());
                }
            }
            Ok(Delivery::Split(refusal)) => {
                if sub.len() == 1 {
                    reject(0, &refusal);
                    self.rejected(&refusal, 1);
                } else {
                    let (a, b) = sub.split_at(sub.len() / 2);
                    r.queue.push_front(b.to_vec());
                    r.queue.push_front(a.to_vec());
                }
                let name = self.sink.name();
                self.metrics.sink_up.with_label_values(&[name]).set(1);
            }
            Ok(Delivery::RejectedAll(refusal)) => {
                (0..sub.len()).for_each(|i| reject(i, &refusal));
                self.rejected(&refusal, sub.len() as u64);
            }
            Err(error) => {
                self.failed(&error, &mut r.attempt, &mut r.backoff).await?;
                r.queue.push_front(sub);
            }
        }
        Ok(())
    }

    /// Counts the records of a part the sink accepted (all but `skip`).
    fn delivered(&self, sizes: &[u64], skip: &[usize], elapsed: std::time::Duration) {
        let accepted = (0..sizes.len()).filter(|i| !skip.contains(i));
        SinkDelivered {
            sink: self.sink.name(),
            records: (sizes.len() - skip.len()) as u64,
            bytes: accepted.map(|i| sizes[i]).sum(),
            elapsed,
        }
        .emit(&self.metrics);
    }

    /// Every record of the batch is settled for this sink: tells each job, in runs of its records.
    fn settle(&self, batch: &Pending, finished: &Finished) {
        let mut i = 0;
        while i < batch.len() {
            let job = &batch.items[i].0;
            let run = batch.items[i..]
                .iter()
                .take_while(|(j, _)| Arc::ptr_eq(j, job))
                .count();
            if job.finished(self.index, run) {
                let _ = finished.send(job.clone());
            }
            i += run;
        }
    }

    /// Counts `count` records refused for good.
    fn rejected(&self, refusal: &Refusal, count: u64) {
        SinkRejected {
            sink: self.sink.name(),
            class: refusal.class.as_str(),
            credentials: refusal.class.is_credentials(),
            detail: &refusal.detail,
            count,
        }
        .emit(&self.metrics);
    }

    /// Counts a failed attempt, then waits before the retry; stops once the drain deadline has passed.
    async fn failed(
        &self,
        error: &SinkError,
        attempt: &mut u32,
        backoff: &mut Backoff,
    ) -> Result<(), super::Stopped> {
        *attempt += 1;
        SinkAttemptFailed {
            sink: self.sink.name(),
            class: error.class.as_str(),
            down: error.class.means_down(),
            error,
            attempt: *attempt,
        }
        .emit(&self.metrics);
        backoff.wait(&self.shutdown).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forward::sink::SinkFuture;
    use crate::forward::Outcome;
    use crate::source::{Batch, Origin, Record};
    use std::time::Duration;

    /// A sink that answers from a script and records what it was sent.
    struct Scripted {
        answers: parking_lot::Mutex<VecDeque<Result<Delivery, SinkError>>>,
        /// Every attempt: the documents' event ids.
        sent: parking_lot::Mutex<Vec<Vec<String>>>,
        /// A document that makes any batch holding it answer 400.
        poison: Option<String>,
    }

    impl Sink for Scripted {
        fn name(&self) -> &str {
            "scripted"
        }
        fn encode(&self, doc: &Redacted, out: &mut Vec<u8>) {
            out.extend_from_slice(&doc.json);
        }
        fn send<'a>(&'a self, batch: &'a Encoded<'a>) -> SinkFuture<'a> {
            let ids: Vec<String> = batch.docs.iter().map(|d| d.event_id.clone()).collect();
            let poisoned = self.poison.as_ref().is_some_and(|p| ids.contains(p));
            self.sent.lock().push(ids);
            let answer = if poisoned {
                Ok(Delivery::Split(Refusal::new(
                    FailureClass::Http(400),
                    "bad record",
                )))
            } else {
                self.answers
                    .lock()
                    .pop_front()
                    .unwrap_or(Ok(Delivery::Accepted))
            };
            Box::pin(async move { answer })
        }
    }

    fn job(ids: &[&str], sinks: usize) -> Arc<Job> {
        let records: Vec<Record> = ids
            .iter()
            .map(|_| Record::new(b"{}".to_vec(), Origin::Generator { seq: 0 }))
            .collect();
        let batch = Batch::new(records, 1, None);
        let docs = ids
            .iter()
            .map(|id| {
                Redacted::assume(crate::forward::Document {
                    json: id.as_bytes().to_vec(),
                    event_id: id.to_string(),
                    organization: None,
                    timestamp: chrono::Utc::now(),
                    outcome: Outcome::None,
                })
            })
            .collect();
        Arc::new(Job::new(
            docs,
            (0..ids.len()).collect(),
            batch.handle(),
            sinks,
        ))
    }

    async fn run(
        sink: Scripted,
        batch: BatchConfig,
        jobs: Vec<Arc<Job>>,
    ) -> (Arc<Scripted>, Vec<Arc<Job>>) {
        let sink = Arc::new(sink);
        let worker = Worker {
            sink: Box::new(ArcSink(sink.clone())),
            index: 0,
            batch,
            retry: RetryConfig {
                initial_backoff: Duration::from_millis(1),
                max_backoff: Duration::from_millis(2),
            },
            metrics: Arc::new(SelfMetrics::new()),
            shutdown: Shutdown::new(Duration::from_secs(1)),
        };
        let (tx, rx) = mpsc::channel(16);
        let (done_tx, mut done_rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(worker.run(rx, done_tx));
        for j in jobs {
            tx.send(j).await.unwrap();
        }
        drop(tx);
        task.await.unwrap();
        let mut done = Vec::new();
        while let Some(j) = done_rx.recv().await {
            done.push(j);
        }
        (sink, done)
    }

    fn scripted(answers: Vec<Result<Delivery, SinkError>>, poison: Option<&str>) -> Scripted {
        Scripted {
            answers: parking_lot::Mutex::new(answers.into()),
            sent: Default::default(),
            poison: poison.map(String::from),
        }
    }

    #[tokio::test]
    async fn batches_by_count_across_jobs_and_finishes_each_job_once() {
        let cfg = BatchConfig {
            max_events: 3,
            max_bytes: 1 << 20,
            timeout: Duration::from_secs(60),
        };
        let (sink, done) = run(
            scripted(vec![], None),
            cfg,
            vec![job(&["a", "b"], 1), job(&["c", "d", "e"], 1)],
        )
        .await;
        assert_eq!(*sink.sent.lock(), vec![vec!["a", "b", "c"], vec!["d", "e"]]);
        assert_eq!(done.len(), 2);
    }

    #[tokio::test]
    async fn batches_by_bytes_and_by_age() {
        let cfg = BatchConfig {
            max_events: 100,
            max_bytes: 4,
            timeout: Duration::from_secs(60),
        };
        let (sink, _) = run(
            scripted(vec![], None),
            cfg,
            vec![job(&["aa", "bb", "cc"], 1)],
        )
        .await;
        assert_eq!(*sink.sent.lock(), vec![vec!["aa", "bb"], vec!["cc"]]);

        let cfg = BatchConfig {
            max_events: 100,
            max_bytes: 1 << 20,
            timeout: Duration::from_millis(20),
        };
        let sink = Arc::new(scripted(vec![], None));
        let worker = Worker {
            sink: Box::new(ArcSink(sink.clone())),
            index: 0,
            batch: cfg,
            retry: RetryConfig::default(),
            metrics: Arc::new(SelfMetrics::new()),
            shutdown: Shutdown::new(Duration::from_secs(1)),
        };
        let (tx, rx) = mpsc::channel(16);
        let (done_tx, mut done_rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(worker.run(rx, done_tx));
        tx.send(job(&["x"], 1)).await.unwrap();
        // Sent by age, while the channel is still open.
        let finished = tokio::time::timeout(Duration::from_secs(5), done_rx.recv())
            .await
            .unwrap();
        assert!(finished.is_some());
        assert_eq!(*sink.sent.lock(), vec![vec!["x"]]);
        drop(tx);
        task.await.unwrap();
    }

    struct ArcSink(Arc<Scripted>);
    impl Sink for ArcSink {
        fn name(&self) -> &str {
            self.0.name()
        }
        fn encode(&self, doc: &Redacted, out: &mut Vec<u8>) {
            self.0.encode(doc, out)
        }
        fn send<'a>(&'a self, batch: &'a Encoded<'a>) -> SinkFuture<'a> {
            self.0.send(batch)
        }
    }

    #[tokio::test]
    async fn retries_until_accepted_and_resends_only_what_must_be() {
        let cfg = BatchConfig {
            max_events: 4,
            max_bytes: 1 << 20,
            timeout: Duration::from_secs(60),
        };
        let answers = vec![
            Err(SinkError::new(FailureClass::Http(503), "down")),
            Err(SinkError::new(FailureClass::Connect, "refused")),
            Ok(Delivery::Partial {
                rejected: vec![(0, Refusal::new(FailureClass::BulkItem, "mapping"))],
                retry: vec![2],
            }),
        ];
        let (sink, done) = run(
            scripted(answers, None),
            cfg,
            vec![job(&["a", "b", "c", "d"], 1)],
        )
        .await;
        let all = ["a", "b", "c", "d"].map(String::from).to_vec();
        assert_eq!(
            *sink.sent.lock(),
            vec![all.clone(), all.clone(), all, vec!["c".to_string()]]
        );
        assert_eq!(done.len(), 1);
        let rejections = done[0].rejections.lock().clone();
        assert_eq!(rejections.len(), 1);
        assert_eq!(rejections[0].doc, 0);
        assert_eq!(rejections[0].refusal.class, FailureClass::BulkItem);
    }

    #[tokio::test]
    async fn a_refused_batch_is_split_until_the_bad_record_stands_alone() {
        let cfg = BatchConfig {
            max_events: 8,
            max_bytes: 1 << 20,
            timeout: Duration::from_secs(60),
        };
        let ids = ["a", "b", "c", "d", "e", "f", "g", "h"];
        let (sink, done) = run(scripted(vec![], Some("f")), cfg, vec![job(&ids, 1)]).await;
        let rejections = done[0].rejections.lock().clone();
        assert_eq!(rejections.len(), 1);
        assert_eq!(done[0].docs[rejections[0].doc].event_id, "f");
        // abcdefgh (refused) -> abcd (ok), efgh (refused) -> ef (refused) -> e (ok), f (rejected);
        // gh (ok): 7 requests, every good record accepted exactly once.
        let sent = sink.sent.lock().clone();
        let accepted: Vec<&String> = sent
            .iter()
            .filter(|b| !b.contains(&"f".to_string()))
            .flatten()
            .collect();
        assert_eq!(accepted.len(), 7);
        assert_eq!(sent.len(), 7);
    }

    #[tokio::test]
    async fn a_job_finishes_only_when_every_sink_has() {
        let j = job(&["a"], 2);
        assert!(!j.finished(0, 1));
        assert!(j.finished(1, 1));
    }

    #[tokio::test]
    async fn the_drain_deadline_stops_retrying_and_leaves_the_job_unfinished() {
        let sink = Arc::new(scripted(
            vec![Err(SinkError::new(FailureClass::Connect, "refused")); 1000],
            None,
        ));
        let shutdown = Shutdown::new(Duration::from_millis(1));
        let worker = Worker {
            sink: Box::new(ArcSink(sink.clone())),
            index: 0,
            batch: BatchConfig {
                max_events: 1,
                max_bytes: 1 << 20,
                timeout: Duration::from_millis(10),
            },
            retry: RetryConfig {
                initial_backoff: Duration::from_millis(1),
                max_backoff: Duration::from_millis(1),
            },
            metrics: Arc::new(SelfMetrics::new()),
            shutdown: shutdown.clone(),
        };
        let (tx, rx) = mpsc::channel(16);
        let (done_tx, mut done_rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(worker.run(rx, done_tx));
        tx.send(job(&["a"], 1)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        shutdown.trigger();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .unwrap()
            .unwrap();
        assert!(
            done_rx.recv().await.is_none(),
            "not finished: read again after restart"
        );
        assert!(sink.sent.lock().len() >= 2);
    }
}
