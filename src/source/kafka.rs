//! The Kafka source: one consumer (one consumer group) per pipeline, polled on its own thread.
//!
//! The thread owns the consumer and does everything that touches it: polling, cutting batches, pausing
//! the assignment while the pipeline is full (Kafka is the buffer: nothing piles up in memory and the group
//! membership stays alive), storing offsets as batches complete, and the final commit on revoke and on
//! shutdown. `enable.auto.offset.store` is always false: an offset is stored only through the
//! [`OffsetTracker`], after every pipeline stage is done with the record.

use super::offsets::{OffsetTracker, Segment, TopicPartition};
use super::{
    Acknowledge, Batch, BatchRef, Headers, Origin, Record, SourceError, SourceMessage,
    SourceSummary,
};
use crate::telemetry::events::KafkaClientError;
use crate::telemetry::SelfMetrics;
use bytes::BytesMut;
use parking_lot::Mutex;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers as _, Message};
use rdkafka::statistics::Statistics;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use std::collections::{HashMap, VecDeque};
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::{self, error::TrySendError};

/// Completed batches are applied (offsets stored) at least every this many turns of the poll loop, and
/// whenever a batch has just been cut: not once per message.
const ACK_DRAIN_EVERY: u32 = 64;

/// A stream that never makes the poll wait has its batch's age read every this many records, not at
/// each one: 64 ready records take well under a millisecond, against a `batch_max_wait` of
/// milliseconds.
const AGE_CHECK_EVERY: usize = 64;

/// How long a full pipeline may block the source before its partitions are paused.
const PAUSE_AFTER: Duration = Duration::from_millis(1000);

/// A broker connection that has received nothing for this long is taken as cut off (a partition leaves
/// the socket open until librdkafka's request timeout, a minute by default). A live consumer hears from
/// its group coordinator at every heartbeat (3 s by default) and from partition leaders at every fetch.
const SILENT_AFTER_MICROS: i64 = 15_000_000;

/// Everything the Kafka source needs to know.
#[derive(Debug, Clone)]
pub struct KafkaSourceSettings {
    /// Which pipeline it serves (a label, and part of log lines).
    pub pipeline: &'static str,
    /// librdkafka properties, already merged (`bootstrap.servers`, `group.id`, SASL/TLS, tuning).
    pub properties: Vec<(String, String)>,
    /// Topics to subscribe to.
    pub topics: Vec<String>,
    /// A batch is cut at this many records...
    pub batch_max_records: usize,
    /// ...or when its first record has waited this long.
    pub batch_max_wait: Duration,
    /// How long a revoke waits for in-flight batches of the revoked partitions before giving them up.
    pub revoke_drain: Duration,
    /// How long shutdown waits for in-flight batches before the final commit.
    pub shutdown_drain: Duration,
}

/// Tracker and completions, shared by the poll loop and the rebalance callbacks (same thread).
struct Shared {
    tracker: OffsetTracker,
    acks: std_mpsc::Receiver<Vec<Segment>>,
    /// Partitions revoked since the poll loop last looked: records of theirs it still holds must go
    /// (the new owner reads them).
    revoked: Vec<TopicPartition>,
    /// The highest offset this process has handed over per partition, kept across rebalances: a
    /// record at or below it is read again (`records_reread_total`).
    high_water: HashMap<TopicPartition, i64>,
}

/// The consumer's context: rebalance and statistics callbacks.
pub struct SourceContext {
    pipeline: &'static str,
    shared: Mutex<Shared>,
    /// The pipeline's channel, for `Assigned`/`Revoked`; taken at shutdown so that the channel closes.
    tx: Mutex<Option<mpsc::Sender<SourceMessage>>>,
    /// `Assigned`/`Revoked` messages the pipeline had no room for yet, oldest first: the poll loop hands
    /// them over before any batch, so a rebalance callback never waits on a full pipeline.
    control: Mutex<VecDeque<SourceMessage>>,
    /// Whether `control` holds anything: the poll loop looks here, not at the lock, on every turn.
    control_waiting: AtomicBool,
    /// Whether `Shared::revoked` may hold partitions: the poll loop looks here, not at the lock.
    revoked_waiting: AtomicBool,
    metrics: Arc<SelfMetrics>,
    /// Readiness: the first assignment has come and a broker is within reach.
    ready: Arc<AtomicBool>,
    /// Whether the first assignment has come.
    assigned: AtomicBool,
    /// Whether a broker answers: false after librdkafka reports every broker down, or once the
    /// statistics show no connection up and hearing from its broker; true again at the next message,
    /// assignment or statistics with one.
    reachable: AtomicBool,
    revoke_drain: Duration,
}

impl ClientContext for SourceContext {
    fn stats(&self, stats: Statistics) {
        self.set_reachable(brokers_reachable(&stats));
        let mut prefetched = 0;
        for (topic, t) in &stats.topics {
            for (partition, p) in &t.partitions {
                if *partition < 0 {
                    continue;
                }
                prefetched += p.fetchq_size;
                let lag = if p.consumer_lag_stored >= 0 {
                    p.consumer_lag_stored
                } else {
                    p.consumer_lag
                };
                if lag >= 0 {
                    let partition = partition.to_string();
                    self.metrics
                        .consumer_lag
                        .with_label_values(&[self.pipeline, topic, &partition])
                        .set(lag);
                }
            }
        }
        self.metrics
            .consumer_prefetched_bytes
            .with_label_values(&[self.pipeline])
            .set(i64::try_from(prefetched).unwrap_or(i64::MAX));
    }

    fn error(&self, error: KafkaError, reason: &str) {
        let _ = reason;
        if error.rdkafka_error_code() == Some(rdkafka::types::RDKafkaErrorCode::AllBrokersDown) {
            self.set_reachable(false);
        }
        KafkaClientError {
            pipeline: self.pipeline,
            error: &error,
        }
        .emit(&self.metrics);
    }
}

impl ConsumerContext for SourceContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(list) = rebalance else {
            return;
        };
        let revoked = partitions(list);
        let mut shared = self.shared.lock();
        // Give the pipeline a moment to finish what it holds of these partitions, so that the new owner
        // does not read them again.
        let deadline = Instant::now() + self.revoke_drain;
        loop {
            drain_acks(consumer, &mut shared, None);
            if revoked.iter().all(|tp| shared.tracker.in_flight(tp) == 0)
                || Instant::now() >= deadline
            {
                break;
            }
            if let Ok(segments) = shared.acks.recv_timeout(Duration::from_millis(20)) {
                store(consumer, &mut shared.tracker, &segments);
            }
        }
        let abandoned: usize = revoked.iter().map(|tp| shared.tracker.in_flight(tp)).sum();
        for tp in &revoked {
            shared.tracker.revoke(tp);
            let _ = self.metrics.consumer_lag.remove_label_values(&[
                self.pipeline,
                &tp.0,
                &tp.1.to_string(),
            ]);
        }
        shared.revoked.extend(revoked.iter().cloned());
        self.revoked_waiting.store(true, Ordering::Release);
        drop(shared);
        self.send(SourceMessage::Revoked(revoked.clone()));
        // librdkafka commits the stored offsets of revoked partitions itself (auto commit is on); commit
        // here too so that it happens before the new owner fetches.
        if let Err(error) = consumer.commit_consumer_state(CommitMode::Sync) {
            if !matches!(
                error,
                KafkaError::ConsumerCommit(rdkafka::types::RDKafkaErrorCode::NoOffset)
            ) {
                KafkaClientError {
                    pipeline: self.pipeline,
                    error: &error,
                }
                .emit(&self.metrics);
            }
        }
        tracing::info!(
            pipeline = self.pipeline,
            partitions = revoked.len(),
            abandoned_batches = abandoned,
            "partitions revoked"
        );
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(list) => {
                let assigned = partitions(list);
                let mut shared = self.shared.lock();
                for tp in &assigned {
                    shared.tracker.assign(tp.clone());
                }
                shared.revoked.retain(|tp| !assigned.contains(tp));
                drop(shared);
                // Before any batch with records of these partitions: the pipeline restores their state.
                self.send(SourceMessage::Assigned(assigned));
                let count = consumer.assignment().map(|a| a.count()).unwrap_or(0);
                self.metrics
                    .assigned_partitions
                    .with_label_values(&[self.pipeline])
                    .set(count as i64);
                self.assigned.store(true, Ordering::Release);
                self.set_reachable(true);
                tracing::info!(
                    pipeline = self.pipeline,
                    assigned = list.count(),
                    total = count,
                    "partitions assigned"
                );
            }
            Rebalance::Revoke(_) => {
                let count = consumer.assignment().map(|a| a.count()).unwrap_or(0);
                self.metrics
                    .assigned_partitions
                    .with_label_values(&[self.pipeline])
                    .set(count as i64);
            }
            Rebalance::Error(error) => {
                KafkaClientError {
                    pipeline: self.pipeline,
                    error,
                }
                .emit(&self.metrics);
            }
        }
    }
}

/// The (topic, partition) pairs of a rebalance's list.
fn partitions(list: &TopicPartitionList) -> Vec<TopicPartition> {
    let pairs = list.elements().into_iter();
    pairs
        .map(|e| (Arc::from(e.topic()), e.partition()))
        .collect()
}

/// Whether the statistics show a broker connection that is up and has heard from its broker lately.
fn brokers_reachable(stats: &Statistics) -> bool {
    let heard = |rxidle: i64| (0..SILENT_AFTER_MICROS).contains(&rxidle);
    stats
        .brokers
        .values()
        .any(|b| b.state == "UP" && heard(b.rxidle))
}

impl SourceContext {
    /// Records whether a broker is within reach, and with it readiness (the flag and the gauge); logs
    /// the changes, never more than one line per change.
    fn set_reachable(&self, reachable: bool) {
        let was = self.reachable.swap(reachable, Ordering::AcqRel);
        let ready = reachable && self.assigned.load(Ordering::Acquire);
        self.ready.store(ready, Ordering::Release);
        let gauge = self
            .metrics
            .pipeline_ready
            .with_label_values(&[self.pipeline]);
        gauge.set(i64::from(ready));
        match (was, reachable) {
            (true, false) => tracing::warn!(
                pipeline = self.pipeline,
                "no Kafka broker within reach; not ready until one answers"
            ),
            (false, true) => {
                tracing::info!(pipeline = self.pipeline, "a Kafka broker answers again")
            }
            _ => {}
        }
    }

    /// Queues a control message for the pipeline and hands over what it has room for, never waiting: a
    /// pipeline held up by its sinks (a SIEM outage) must not hold the group's rebalance up. What is left
    /// goes before the next batch ([`SourceContext::hand_over_control`]).
    fn send(&self, message: SourceMessage) {
        self.control.lock().push_back(message);
        self.control_waiting.store(true, Ordering::Release);
        self.hand_over_control();
    }

    /// Hands queued control messages to the pipeline, in order, while it has room. Nothing is sent
    /// once shutdown has taken the channel.
    fn hand_over_control(&self) -> Control {
        if !self.control_waiting.load(Ordering::Acquire) {
            return Control::Empty;
        }
        let mut queue = self.control.lock();
        let Some(tx) = self.tx.lock().clone() else {
            queue.clear();
            self.control_waiting.store(false, Ordering::Release);
            return Control::Closed;
        };
        while let Some(message) = queue.pop_front() {
            match tx.try_send(message) {
                Ok(()) => {}
                Err(TrySendError::Full(message)) => {
                    queue.push_front(message);
                    return Control::Full;
                }
                Err(TrySendError::Closed(_)) => return Control::Closed,
            }
        }
        self.control_waiting.store(false, Ordering::Release);
        Control::Empty
    }
}

/// What became of the queued control messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Control {
    /// All handed over.
    Empty,
    /// The pipeline is full; some wait.
    Full,
    /// The pipeline is gone.
    Closed,
}

/// Marks finished segments complete and stores the offsets that moved.
fn store(
    consumer: &BaseConsumer<SourceContext>,
    tracker: &mut OffsetTracker,
    segments: &[Segment],
) {
    let mut list = TopicPartitionList::new();
    for segment in segments {
        if let Some(offset) = tracker.complete(segment) {
            // A later segment of the same partition in this list overrides an earlier one.
            let _ = list.add_partition_offset(
                &segment.topic,
                segment.partition,
                Offset::Offset(offset),
            );
        }
    }
    if list.count() > 0 {
        if let Err(error) = consumer.store_offsets(&list) {
            // Only fails for partitions no longer assigned, whose records the new owner reads again.
            tracing::debug!(%error, "offsets not stored");
        }
    }
}

/// Applies every completion that has arrived; with a deadline, waits for more until nothing is in flight.
fn drain_acks(consumer: &BaseConsumer<SourceContext>, shared: &mut Shared, until: Option<Instant>) {
    loop {
        while let Ok(segments) = shared.acks.try_recv() {
            store(consumer, &mut shared.tracker, &segments);
        }
        let Some(deadline) = until else { return };
        if shared.tracker.total_in_flight() == 0 || Instant::now() >= deadline {
            return;
        }
        if let Ok(segments) = shared.acks.recv_timeout(Duration::from_millis(20)) {
            store(consumer, &mut shared.tracker, &segments);
        }
    }
}

/// Sends the batch's segments back to the source thread.
struct KafkaAck {
    segments: Vec<Segment>,
    tx: std_mpsc::Sender<Vec<Segment>>,
}

impl Acknowledge for KafkaAck {
    fn acknowledge(self: Box<Self>, _records: &[Record]) {
        // The source thread is gone only after shutdown, when nothing more can be stored anyway.
        let _ = self.tx.send(self.segments);
    }
}

/// A Kafka source, ready to run.
pub struct KafkaSource {
    settings: KafkaSourceSettings,
    consumer: BaseConsumer<SourceContext>,
    acks_tx: std_mpsc::Sender<Vec<Segment>>,
    metrics: Arc<SelfMetrics>,
    tx: mpsc::Sender<SourceMessage>,
}

impl KafkaSource {
    /// Creates the consumer and subscribes; `ready` turns true at the first assignment, and holds while
    /// a broker is within reach. Everything goes
    /// to `tx`, the channel of the one pipeline this source serves.
    pub fn new(
        settings: KafkaSourceSettings,
        metrics: Arc<SelfMetrics>,
        ready: Arc<AtomicBool>,
        tx: mpsc::Sender<SourceMessage>,
    ) -> Result<Self, SourceError> {
        let (acks_tx, acks) = std_mpsc::channel();
        let context = SourceContext {
            pipeline: settings.pipeline,
            shared: Mutex::new(Shared {
                tracker: OffsetTracker::new(),
                acks,
                revoked: Vec::new(),
                high_water: HashMap::new(),
            }),
            tx: Mutex::new(Some(tx.clone())),
            control: Mutex::new(VecDeque::new()),
            control_waiting: AtomicBool::new(false),
            revoked_waiting: AtomicBool::new(false),
            metrics: metrics.clone(),
            ready,
            assigned: AtomicBool::new(false),
            reachable: AtomicBool::new(true),
            revoke_drain: settings.revoke_drain,
        };
        let mut config = ClientConfig::new();
        for (k, v) in &settings.properties {
            config.set(k, v);
        }
        let consumer: BaseConsumer<SourceContext> = config.create_with_context(context)?;
        let topics: Vec<&str> = settings.topics.iter().map(String::as_str).collect();
        consumer.subscribe(&topics)?;
        Ok(KafkaSource {
            settings,
            consumer,
            acks_tx,
            metrics,
            tx,
        })
    }

    /// Polls until `stop` is set, then drains and commits. Runs on the calling thread.
    pub fn run(self, stop: Arc<AtomicBool>) -> Result<SourceSummary, SourceError> {
        let mut poller = Poller {
            batch: Vec::with_capacity(self.settings.batch_max_records),
            arena: BytesMut::new(),
            source: self,
            topics: Vec::new(),
            first_at: Instant::now(),
            waited: true,
            pending: None,
            paused: false,
            blocked_since: None,
            batch_seq: 0,
            summary: SourceSummary::default(),
        };
        let mut turn = 0u32;
        while !stop.load(Ordering::Acquire) {
            turn = turn.wrapping_add(1);
            if poller.batch.is_empty() || turn.is_multiple_of(ACK_DRAIN_EVERY) {
                let consumer = &poller.source.consumer;
                drain_acks(consumer, &mut consumer.context().shared.lock(), None);
            }
            match poller.hand_over() {
                HandOver::Done => {}
                HandOver::Wait => continue,
                HandOver::Closed => break,
            }
            poller.poll();
            poller.cut();
        }
        Ok(poller.finish())
    }
}

/// What became of the batch waiting for the pipeline.
enum HandOver {
    /// Taken, or none was waiting, or the partitions are paused: poll on.
    Done,
    /// The pipeline is full: wait a moment, without polling.
    Wait,
    /// The pipeline is gone.
    Closed,
}

/// The poll loop's state.
struct Poller {
    source: KafkaSource,
    /// Shared topic names, one allocation per topic (a consumer reads a few topics: a scan of them
    /// is cheaper than hashing the name of every message).
    topics: Vec<Arc<str>>,
    /// The batch being filled: messages read into `arena`.
    batch: Vec<Read>,
    /// The bytes (payloads, keys, headers) of the batch being filled: one buffer that its records
    /// share once it is cut, instead of allocations per message.
    arena: BytesMut,
    /// When its first record came.
    first_at: Instant,
    /// Whether the last poll waited (no record was ready at once).
    waited: bool,
    /// A cut batch the pipeline has not taken yet.
    pending: Option<BatchRef>,
    paused: bool,
    /// Since when the pipeline has been full.
    blocked_since: Option<Instant>,
    batch_seq: u64,
    summary: SourceSummary,
}

impl Poller {
    /// Hands the waiting batch to the pipeline. A full pipeline: wait a moment without polling (what
    /// librdkafka has prefetched stays queued), and only if it stays full pause the partitions (which
    /// drops the prefetched messages, to be fetched again on resume) and keep polling to keep the group
    /// alive.
    fn hand_over(&mut self) -> HandOver {
        let consumer = &self.source.consumer;
        // Control messages first: an assignment reaches the pipeline before any batch of its records.
        match consumer.context().hand_over_control() {
            Control::Empty if self.pending.is_none() => self.unblocked(),
            Control::Empty => {}
            Control::Full => return self.blocked(),
            Control::Closed => return HandOver::Closed,
        }
        if let Some(batch) = self.pending.take() {
            match self.source.tx.try_send(SourceMessage::Batch(batch)) {
                Ok(()) => self.unblocked(),
                Err(TrySendError::Full(message)) => {
                    self.pending = unwrap_batch(message);
                    if let HandOver::Wait = self.blocked() {
                        return HandOver::Wait;
                    }
                }
                Err(TrySendError::Closed(_)) => return HandOver::Closed,
            }
        }
        // Partitions assigned while paused are not paused: stop them too once a batch is waiting.
        if self.pending.is_some() && self.batch.len() >= self.source.settings.batch_max_records {
            self.pause();
        }
        HandOver::Done
    }

    /// The pipeline took what waited: resume the partitions if they were paused.
    fn unblocked(&mut self) {
        self.blocked_since = None;
        if self.paused {
            if let Ok(assignment) = self.source.consumer.assignment() {
                let _ = self.source.consumer.resume(&assignment);
            }
            self.paused = false;
        }
    }

    /// The pipeline is full: wait a moment, or once it has stayed full, pause and poll on.
    fn blocked(&mut self) -> HandOver {
        let since = *self.blocked_since.get_or_insert_with(Instant::now);
        if !self.paused && since.elapsed() < PAUSE_AFTER {
            std::thread::sleep(Duration::from_millis(1));
            return HandOver::Wait;
        }
        self.pause();
        HandOver::Done
    }

    fn pause(&mut self) {
        if let Ok(assignment) = self.source.consumer.assignment() {
            let _ = self.source.consumer.pause(&assignment);
        }
        self.paused = true;
    }

    /// Polls once (briefly while a batch waits), adding a message to the batch. While a batch fills,
    /// a message that is ready is taken without waiting, so without reading the clock for how long
    /// the wait may be; the clock is read only when none is ready.
    fn poll(&mut self) {
        let settings = &self.source.settings;
        let consumer = &self.source.consumer;
        let filling = self.pending.is_none() && !self.batch.is_empty();
        let mut polled = filling.then(|| consumer.poll(Duration::ZERO)).flatten();
        self.waited = polled.is_none();
        if polled.is_none() {
            let wait = match (self.pending.is_some(), self.batch.is_empty()) {
                (true, _) => Duration::from_millis(20),
                (false, true) => Duration::from_millis(100),
                (false, false) => settings
                    .batch_max_wait
                    .saturating_sub(self.first_at.elapsed()),
            };
            polled = consumer.poll(wait);
        }
        match polled {
            Some(Ok(message)) => {
                if self.batch.is_empty() {
                    self.first_at = Instant::now();
                    let context = consumer.context();
                    if !context.reachable.load(Ordering::Relaxed) {
                        context.set_reachable(true);
                    }
                }
                let read = read(&mut self.topics, &mut self.arena, &message);
                self.batch.push(read);
            }
            Some(Err(error)) => KafkaClientError {
                pipeline: settings.pipeline,
                error: &error,
            }
            .emit(&self.source.metrics),
            None => {}
        }
        forget_revoked(consumer, &mut self.batch, &mut self.pending);
    }

    /// Cuts the batch when it is full or old enough and no batch waits. Its age is read after a poll
    /// that waited, and every [`AGE_CHECK_EVERY`] records while records keep coming without a wait.
    fn cut(&mut self) {
        let settings = &self.source.settings;
        let full = self.batch.len() >= settings.batch_max_records;
        let check_age = self.waited || self.batch.len().is_multiple_of(AGE_CHECK_EVERY);
        let old = !self.batch.is_empty()
            && check_age
            && self.first_at.elapsed() >= settings.batch_max_wait;
        if (full || old) && self.pending.is_none() {
            let records = self.seal();
            self.begin(records);
        }
    }

    /// The batch being filled, as records sharing one buffer; the next batch starts empty, with room
    /// for about as many bytes.
    fn seal(&mut self) -> Vec<Record> {
        let fresh = Vec::with_capacity(self.source.settings.batch_max_records);
        let reads = std::mem::replace(&mut self.batch, fresh);
        let bytes = self.arena.len();
        let buf = self.arena.split().freeze();
        self.arena.reserve(bytes);
        let records = reads.into_iter().map(|r| Record {
            payload: buf.slice(r.payload),
            key: r.key.map(|k| buf.slice(k)),
            headers: Headers::from_packed(buf.slice(r.headers)),
            origin: r.origin,
        });
        records.collect()
    }

    /// Makes `records` the waiting batch, tracked for acknowledgement.
    fn begin(&mut self, records: Vec<Record>) {
        self.batch_seq += 1;
        let (consumer, acks) = (&self.source.consumer, &self.source.acks_tx);
        let (batch, reread) = begin_batch(consumer, acks, self.batch_seq, records);
        if let Some(batch) = batch {
            self.summary.records += batch.records().len() as u64;
            self.pending = Some(batch);
        }
        if reread > 0 {
            let pipeline = self.source.settings.pipeline;
            let counter = self
                .source
                .metrics
                .records_reread
                .with_label_values(&[pipeline]);
            counter.inc_by(reread);
        }
    }

    /// Shutdown: hands over what was read (if the pipeline takes it before the drain deadline), closes
    /// the channel, waits for completions until the deadline, stores, commits and leaves the group.
    fn finish(mut self) -> SourceSummary {
        let deadline = Instant::now() + self.source.settings.shutdown_drain;
        if !self.batch.is_empty() && self.pending.is_none() {
            let records = self.seal();
            self.begin(records);
        }
        let KafkaSource {
            settings,
            consumer,
            metrics,
            tx,
            ..
        } = self.source;
        let mut pending = self.pending;
        // Queued control messages go first; a batch never overtakes the assignment of its partitions.
        while consumer.context().hand_over_control() == Control::Full {
            if Instant::now() >= deadline {
                pending = None;
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        while let Some(batch) = pending.take() {
            match tx.try_send(SourceMessage::Batch(batch)) {
                Ok(()) => {}
                Err(TrySendError::Full(message)) if Instant::now() < deadline => {
                    pending = unwrap_batch(message);
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(_) => break,
            }
        }
        // Close the channel: the pipeline ends once it has drained it.
        drop(tx);
        consumer.context().tx.lock().take();
        let shared = &mut consumer.context().shared.lock();
        drain_acks(&consumer, shared, Some(deadline));
        let left = shared.tracker.total_in_flight();
        if left > 0 {
            tracing::warn!(
                pipeline = settings.pipeline,
                batches = left,
                "shutdown deadline passed with batches in flight; they will be read again"
            );
        }
        match consumer.commit_consumer_state(CommitMode::Sync) {
            Ok(()) => {}
            Err(KafkaError::ConsumerCommit(rdkafka::types::RDKafkaErrorCode::NoOffset)) => {}
            Err(error) => KafkaClientError {
                pipeline: settings.pipeline,
                error: &error,
            }
            .emit(&metrics),
        }
        consumer.unsubscribe();
        tracing::info!(
            pipeline = settings.pipeline,
            records = self.summary.records,
            "kafka source stopped"
        );
        self.summary
    }
}

/// A message read into the batch's buffer, not yet a record: its parts are ranges of the buffer.
struct Read {
    payload: Range<usize>,
    key: Option<Range<usize>>,
    headers: Range<usize>,
    origin: Origin,
}

/// Copies a message's payload, key and headers (packed) to the end of `arena`.
fn read(
    topics: &mut Vec<Arc<str>>,
    arena: &mut BytesMut,
    message: &rdkafka::message::BorrowedMessage<'_>,
) -> Read {
    let topic = match topics.iter().find(|t| &***t == message.topic()) {
        Some(t) => t.clone(),
        None => {
            let t: Arc<str> = Arc::from(message.topic());
            topics.push(t.clone());
            t
        }
    };
    let mut append = |bytes: &[u8]| {
        let start = arena.len();
        arena.extend_from_slice(bytes);
        start..arena.len()
    };
    let payload = append(message.payload().unwrap_or_default());
    let key = message.key().map(append);
    let start = arena.len();
    if let Some(headers) = message.headers() {
        for h in headers.iter() {
            Headers::pack(arena, h.key, h.value.unwrap_or_default());
        }
    }
    Read {
        payload,
        key,
        headers: start..arena.len(),
        origin: Origin::Kafka {
            topic,
            partition: message.partition(),
            offset: message.offset(),
        },
    }
}

fn unwrap_batch(message: SourceMessage) -> Option<BatchRef> {
    match message {
        SourceMessage::Batch(batch) => Some(batch),
        _ => None,
    }
}

fn is_revoked(origin: &Origin, revoked: &[TopicPartition]) -> bool {
    match origin {
        Origin::Kafka {
            topic, partition, ..
        } => revoked.iter().any(|(t, p)| t == topic && p == partition),
        _ => false,
    }
}

/// Drops the records of partitions revoked since the last look from what this thread still holds: the
/// batch being cut and the batch waiting for room. The new owner reads them from the committed offset;
/// keeping them would count them twice.
fn forget_revoked(
    consumer: &BaseConsumer<SourceContext>,
    current: &mut Vec<Read>,
    pending: &mut Option<BatchRef>,
) {
    let context = consumer.context();
    if !context.revoked_waiting.load(Ordering::Acquire) {
        return;
    }
    let revoked = {
        let mut shared = context.shared.lock();
        context.revoked_waiting.store(false, Ordering::Release);
        std::mem::take(&mut shared.revoked)
    };
    if revoked.is_empty() {
        return;
    }
    // What they had in the buffer stays there unused until the batch is cut: no copying.
    current.retain(|r| !is_revoked(&r.origin, &revoked));
    if let Some(batch) = pending.as_mut() {
        // Not handed over yet, so this thread holds the only reference.
        if let Some(inner) = Arc::get_mut(&mut batch.0) {
            inner.records.retain(|r| !is_revoked(&r.origin, &revoked));
        }
    }
}

/// Per partition of a batch: its last offset in the batch, and the highest offset this process had
/// read from it before (`high`).
type PartitionEnds = HashMap<TopicPartition, (i64, Option<i64>)>;

/// Keeps the records of the partitions `assigned` accepts, and says what the batch holds of each
/// partition kept, and how many records are at or below what this process had read before (`high`).
/// A poll hands a partition's messages over together, so records come in runs of one partition:
/// `assigned` and `high` are asked, and the partition's name copied, once per run, not per record.
fn partition_runs(
    records: &mut Vec<Record>,
    assigned: impl Fn(&TopicPartition) -> bool,
    high: impl Fn(&TopicPartition) -> Option<i64>,
) -> (PartitionEnds, u64) {
    /// The run being read: its partition, whether it is kept, the high before the batch, and the
    /// run's last offset so far.
    struct Run {
        tp: TopicPartition,
        kept: bool,
        before: Option<i64>,
        last: Option<i64>,
    }
    fn close(run: Run, ends: &mut PartitionEnds) {
        if let (true, Some(last)) = (run.kept, run.last) {
            ends.entry(run.tp).or_insert((last, run.before)).0 = last;
        }
    }
    let mut ends = PartitionEnds::new();
    let mut reread = 0;
    let mut run: Option<Run> = None;
    records.retain(|r| {
        let Origin::Kafka {
            topic,
            partition,
            offset,
        } = &r.origin
        else {
            return false;
        };
        let same = run.as_ref().is_some_and(|run| {
            run.tp.1 == *partition && (Arc::ptr_eq(&run.tp.0, topic) || run.tp.0 == *topic)
        });
        if !same {
            let tp = (topic.clone(), *partition);
            let (kept, before) = (assigned(&tp), high(&tp));
            let next = Run {
                tp,
                kept,
                before,
                last: None,
            };
            if let Some(done) = run.replace(next) {
                close(done, &mut ends);
            }
        }
        let run = run.as_mut().expect("set above");
        if run.kept {
            run.last = Some(*offset);
            reread += u64::from(run.before.is_some_and(|h| *offset <= h));
        }
        run.kept
    });
    if let Some(done) = run {
        close(done, &mut ends);
    }
    (ends, reread)
}

/// Registers a batch's segments with the tracker; records of partitions no longer assigned are dropped
/// (their new owner reads them). `None` when nothing is left; with it, how many of the records this
/// process had read before.
fn begin_batch(
    consumer: &BaseConsumer<SourceContext>,
    acks_tx: &std_mpsc::Sender<Vec<Segment>>,
    seq: u64,
    mut records: Vec<Record>,
) -> (Option<BatchRef>, u64) {
    let mut shared = consumer.context().shared.lock();
    let (last, reread) = {
        let Shared {
            tracker,
            high_water,
            ..
        } = &*shared;
        partition_runs(
            &mut records,
            |tp| tracker.generation(tp).is_some(),
            |tp| high_water.get(tp).copied(),
        )
    };
    if records.is_empty() {
        return (None, 0);
    }
    let mut segments = Vec::with_capacity(last.len());
    for (tp, (offset, _)) in last {
        let high = shared.high_water.entry(tp.clone()).or_insert(offset);
        *high = (*high).max(offset);
        segments.extend(shared.tracker.begin(&tp, seq, offset));
    }
    let ack = KafkaAck {
        segments,
        tx: acks_tx.clone(),
    };
    let batch = Batch::new(records, 1, Some(Box::new(ack)));
    (Some(BatchRef(batch)), reread)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// `partition_runs` as it was: every lookup made for every record.
    fn per_record(
        records: &mut Vec<Record>,
        assigned: &dyn Fn(&TopicPartition) -> bool,
        high: &dyn Fn(&TopicPartition) -> Option<i64>,
    ) -> (PartitionEnds, u64) {
        records.retain(|r| match &r.origin {
            Origin::Kafka {
                topic, partition, ..
            } => assigned(&(topic.clone(), *partition)),
            _ => false,
        });
        let (mut ends, mut reread) = (PartitionEnds::new(), 0);
        for r in records.iter() {
            if let Origin::Kafka {
                topic,
                partition,
                offset,
            } = &r.origin
            {
                let tp = (topic.clone(), *partition);
                let entry = ends.entry(tp).or_insert_with_key(|tp| (*offset, high(tp)));
                entry.0 = *offset;
                reread += u64::from(entry.1.is_some_and(|h| *offset <= h));
            }
        }
        (ends, reread)
    }

    proptest! {
        /// Runs of partitions (two topics, one allocation of a name or several), some partitions not
        /// assigned, some read before, a record from elsewhere: the same records kept, the same ends
        /// and the same count of records read again as looking each record up.
        #[test]
        fn runs_give_what_looking_up_every_record_gives(
            runs in prop::collection::vec((0usize..2, 0i32..3, 1usize..6, any::<bool>()), 0..12),
            unassigned in prop::collection::btree_set((0usize..2, 0i32..3), 0..3),
            highs in prop::collection::vec(((0usize..2, 0i32..3), 0i64..40), 0..4),
        ) {
            let names = ["a", "b"];
            let shared: [Arc<str>; 2] = [Arc::from("a"), Arc::from("b")];
            let mut offsets = std::collections::HashMap::new();
            let mut records = Vec::new();
            for (topic, partition, len, fresh_name) in runs {
                // The same name in another allocation, as a second consumer's record would carry.
                let name = match fresh_name {
                    true => Arc::from(names[topic]),
                    false => shared[topic].clone(),
                };
                for _ in 0..len {
                    let offset = offsets.entry((topic, partition)).or_insert(0i64);
                    *offset += 7;
                    let origin = Origin::Kafka { topic: name.clone(), partition, offset: *offset };
                    records.push(Record::new(Vec::new(), origin));
                }
                if partition == 2 {
                    records.push(Record::new(Vec::new(), Origin::Generator { seq: 0 }));
                }
            }
            let index = |tp: &TopicPartition| (names.iter().position(|n| **n == *tp.0).unwrap(), tp.1);
            let assigned = |tp: &TopicPartition| !unassigned.contains(&index(tp));
            let high = |tp: &TopicPartition| {
                highs.iter().find(|(k, _)| *k == index(tp)).map(|(_, h)| *h)
            };
            let mut by_run = records.clone();
            let mut by_record = records;
            let got = partition_runs(&mut by_run, assigned, high);
            let want = per_record(&mut by_record, &assigned, &high);
            prop_assert_eq!(got, want);
            let origins = |rs: &[Record]| rs.iter().map(|r| format!("{:?}", r.origin)).collect::<Vec<_>>();
            prop_assert_eq!(origins(&by_run), origins(&by_record));
        }
    }
}
