//! Source: where records come from, and how their completion flows back.
//!
//! A source runs on its own OS thread and hands [`Batch`]es to one or more pipelines. A Kafka source serves
//! exactly one pipeline (each pipeline is its own consumer group); the file and generator sources serve every
//! pipeline at once (fan-out), since a file or stdin can be read only once.
//!
//! Completion: each pipeline calls [`BatchRef::done`] when it has finished with every record of the batch
//! (derived, accepted by every sink, or dead-lettered). When every pipeline that got the batch has done so,
//! the batch's [`Acknowledge`] runs; for Kafka it marks the batch's offsets complete in the
//! [`offsets::OffsetTracker`]. A `BatchRef` dropped without `done` acknowledges nothing, so those records
//! are read again after a restart: that is the at-least-once rule.

pub mod file;
pub mod generator;
pub mod headers;
pub mod kafka;
pub mod offsets;

pub use headers::Headers;

use bytes::Bytes;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::mpsc;

/// Where a record came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A Kafka record.
    Kafka {
        /// The topic.
        topic: Arc<str>,
        /// The partition.
        partition: i32,
        /// The offset.
        offset: i64,
    },
    /// A line of a JSONL file (`path` is `-` for stdin); lines count from 1.
    File {
        /// The file.
        path: Arc<str>,
        /// The line number, from 1.
        line: u64,
    },
    /// The n-th event of the synthetic generator, from 0.
    Generator {
        /// Its sequence number.
        seq: u64,
    },
}

impl Origin {
    /// The value of the `topic` label of self metrics: the topic, or `(file)` / `(generator)`.
    pub fn topic_label(&self) -> &str {
        match self {
            Origin::Kafka { topic, .. } => topic,
            Origin::File { .. } => "(file)",
            Origin::Generator { .. } => "(generator)",
        }
    }
}

/// One record as read, before decoding.
#[derive(Debug, Clone)]
pub struct Record {
    /// The bytes of the event, untouched. Often a slice of a larger buffer that several records share (the
    /// file source reads lines into shared chunks), so a record costs no allocation of its own.
    pub payload: Bytes,
    /// The Kafka key, if any (like the payload, often a slice of a shared buffer).
    pub key: Option<Bytes>,
    /// Kafka headers, in order, packed.
    pub headers: Headers,
    /// Where it came from.
    pub origin: Origin,
}

impl Record {
    /// A record with no key and no headers.
    pub fn new(payload: impl Into<Bytes>, origin: Origin) -> Self {
        Record {
            payload: payload.into(),
            key: None,
            headers: Headers::default(),
            origin,
        }
    }

    /// The value of the first header with this name.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers.get(name)
    }

    /// The W3C `traceparent` header.
    pub fn traceparent(&self) -> Option<&[u8]> {
        self.header("traceparent")
    }
}

/// What runs once every pipeline that got a batch is done with it.
pub trait Acknowledge: Send + Sync {
    /// Called exactly once, from whichever pipeline finished last.
    fn acknowledge(self: Box<Self>, records: &[Record]);
}

/// A batch of records shared by the pipelines it was sent to.
pub struct Batch {
    /// The records, in source order (per Kafka partition: ascending offsets).
    pub records: Vec<Record>,
    remaining: AtomicUsize,
    ack: parking_lot::Mutex<Option<Box<dyn Acknowledge>>>,
}

impl Batch {
    /// Wraps records for `consumers` pipelines; `ack` runs when all of them are done.
    pub fn new(
        records: Vec<Record>,
        consumers: usize,
        ack: Option<Box<dyn Acknowledge>>,
    ) -> Arc<Batch> {
        Arc::new(Batch {
            records,
            remaining: AtomicUsize::new(consumers),
            ack: parking_lot::Mutex::new(ack),
        })
    }
}

impl Batch {
    /// One more pipeline's handle on the batch (counted in `consumers` at [`Batch::new`]).
    pub fn handle(self: &Arc<Self>) -> BatchRef {
        BatchRef(self.clone())
    }
}

/// One pipeline's handle on a shared batch.
pub struct BatchRef(Arc<Batch>);

impl BatchRef {
    /// The records.
    pub fn records(&self) -> &[Record] {
        &self.0.records
    }

    /// The batch itself, to keep it alive beside data borrowed from its records. Holding it finishes
    /// nothing: only [`BatchRef::done`] does.
    pub fn shared(&self) -> Arc<Batch> {
        self.0.clone()
    }

    /// This pipeline is finished with every record of the batch.
    pub fn done(self) {
        if self.0.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            if let Some(ack) = self.0.ack.lock().take() {
                ack.acknowledge(&self.0.records);
            }
        }
    }
}

/// What a source sends a pipeline, in order.
pub enum SourceMessage {
    /// Records to process.
    Batch(BatchRef),
    /// Kafka partitions now assigned to this pipeline; sent before any batch holding their records.
    Assigned(Vec<offsets::TopicPartition>),
    /// Kafka partitions taken away; sent after the last batch holding their records.
    Revoked(Vec<offsets::TopicPartition>),
}

/// The sending side a source writes to: one channel per pipeline it serves.
#[derive(Clone)]
pub struct Outputs(Vec<mpsc::Sender<SourceMessage>>);

impl Outputs {
    /// Outputs to these pipelines.
    pub fn new(senders: Vec<mpsc::Sender<SourceMessage>>) -> Self {
        Outputs(senders)
    }

    /// Sends a batch to every pipeline, waiting while a pipeline is full. Returns false when a pipeline has
    /// gone away (shutdown).
    pub fn send_blocking(&self, records: Vec<Record>, ack: Option<Box<dyn Acknowledge>>) -> bool {
        let batch = Batch::new(records, self.0.len(), ack);
        self.0.iter().all(|tx| {
            tx.blocking_send(SourceMessage::Batch(BatchRef(batch.clone())))
                .is_ok()
        })
    }
}

/// What a source's run ends with.
pub type SourceResult = Result<SourceSummary, SourceError>;

/// A source that one reader feeds every pipeline from (a file, the generator): a batch is done when
/// every pipeline is done with it.
pub trait FanOut: Send {
    /// Reads to the end (or until `stop`), handing batches to `outputs`.
    fn run(self: Box<Self>, outputs: Outputs, stop: Arc<AtomicBool>) -> SourceResult;
}

/// What a source reports when it ends.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SourceSummary {
    /// Records read.
    pub records: u64,
}

/// Why a source failed.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("cannot open {path}: {source}")]
    /// The file cannot be opened.
    Open {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    #[error("cannot read {path}: {source}")]
    /// Reading the file failed.
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    #[error("kafka consumer: {0}")]
    /// The Kafka client failed.
    Kafka(#[from] rdkafka::error::KafkaError),
}
