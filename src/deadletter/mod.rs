//! Dead letters: invalid records, records a sink refused for good, and records that could not be
//! redacted, kept for inspection.
//!
//! A dead letter carries the original bytes untouched, the reason, and where the record came from. The
//! pipeline writes dead letters *before* it reports the record done, so a record's offset is never stored
//! before its dead letter is safe.
//!
//! Kafka: the record goes to `dead_letter.topic` with its original key and headers, plus
//! `hestyna.dlq.reason`, `hestyna.dlq.detail`, `hestyna.dlq.pipeline`, and for Kafka records
//! `hestyna.dlq.topic`, `hestyna.dlq.partition`, `hestyna.dlq.offset` (for file records `hestyna.dlq.file`,
//! `hestyna.dlq.line`). File: one JSON object per line with the same fields and the payload as text (or
//! base64 when it is not UTF-8).

use crate::shared::append::AppendFile;
use crate::source::{Origin, Record};
use base64::Engine as _;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// One record to dead-letter.
#[derive(Debug, Clone)]
pub struct DeadLetter<'a> {
    /// The record, as read.
    pub record: &'a Record,
    /// The bounded reason (a label value: `not_json`, `missing_field`, `sink_rejected`, ...).
    pub reason: &'static str,
    /// Details for humans.
    pub detail: String,
}

/// Why dead letters could not be written (the pipeline retries).
#[derive(Debug, thiserror::Error)]
pub enum DeadLetterError {
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("{path}: {source}")]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Where dead letters go.
pub enum Destination {
    /// A Kafka topic.
    Kafka {
        producer: FutureProducer,
        topic: String,
    },
    /// A JSONL file.
    File(AppendFile),
}

fn origin_headers(origin: &Origin) -> Vec<(&'static str, String)> {
    match origin {
        Origin::Kafka {
            topic,
            partition,
            offset,
        } => vec![
            ("hestyna.dlq.topic", topic.to_string()),
            ("hestyna.dlq.partition", partition.to_string()),
            ("hestyna.dlq.offset", offset.to_string()),
        ],
        Origin::File { path, line } => vec![
            ("hestyna.dlq.file", path.to_string()),
            ("hestyna.dlq.line", line.to_string()),
        ],
        Origin::Generator { seq } => vec![("hestyna.dlq.generator_seq", seq.to_string())],
    }
}

/// The original headers, then `hestyna.dlq.*`.
fn dead_letter_headers(item: &DeadLetter<'_>, pipeline: &str) -> OwnedHeaders {
    let mut headers = OwnedHeaders::new_with_capacity(item.record.headers.len() + 6);
    for (key, value) in item.record.headers.iter() {
        headers = headers.insert(Header {
            key,
            value: Some(value),
        });
    }
    let mut extra = vec![
        ("hestyna.dlq.reason", item.reason.to_owned()),
        ("hestyna.dlq.detail", item.detail.clone()),
        ("hestyna.dlq.pipeline", pipeline.to_owned()),
    ];
    extra.extend(origin_headers(&item.record.origin));
    for (k, v) in &extra {
        headers = headers.insert(Header {
            key: k,
            value: Some(v.as_bytes()),
        });
    }
    headers
}

impl Destination {
    /// A Kafka destination with these producer properties.
    pub fn kafka(properties: &[(String, String)], topic: &str) -> Result<Self, DeadLetterError> {
        // Dead letters are sent a batch's worth at once and waited for before the batch's offsets
        // are stored: no lingering, which would add its wait to every batch with an invalid record.
        let defaults = [
            ("acks", "all"),
            ("linger.ms", "0"),
            ("message.timeout.ms", "30000"),
        ];
        let config = crate::produce::client_config(&defaults, properties);
        Ok(Destination::Kafka {
            producer: config.create()?,
            topic: topic.to_owned(),
        })
    }

    /// A file destination (created if absent, appended to).
    pub fn file(path: &Path) -> Result<Self, DeadLetterError> {
        AppendFile::open(path)
            .map(Destination::File)
            .map_err(|source| DeadLetterError::File {
                path: path.to_owned(),
                source,
            })
    }

    /// A name for logs.
    pub fn describe(&self) -> String {
        match self {
            Destination::Kafka { topic, .. } => format!("kafka topic {topic}"),
            Destination::File(file) => format!("file {}", file.path().display()),
        }
    }

    /// Writes every item; `Ok` only once all of them are durable at the destination.
    pub async fn send(
        &self,
        pipeline: &str,
        items: &[DeadLetter<'_>],
    ) -> Result<(), DeadLetterError> {
        if items.is_empty() {
            return Ok(());
        }
        match self {
            Destination::Kafka { producer, topic } => {
                let headers: Vec<OwnedHeaders> = items
                    .iter()
                    .map(|item| dead_letter_headers(item, pipeline))
                    .collect();
                let records = items.iter().zip(headers).map(|(item, headers)| {
                    let record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic)
                        .payload(item.record.payload.as_ref())
                        .headers(headers);
                    match &item.record.key {
                        Some(key) => record.key(key.as_ref()),
                        None => record,
                    }
                });
                Ok(crate::produce::send_all(producer, records.collect()).await?)
            }
            Destination::File(file) => {
                let mut buf = Vec::with_capacity(items.len() * 256);
                for item in items {
                    let mut line = serde_json::Map::new();
                    line.insert("reason".into(), item.reason.into());
                    line.insert("detail".into(), item.detail.clone().into());
                    line.insert("pipeline".into(), pipeline.into());
                    for (k, v) in origin_headers(&item.record.origin) {
                        line.insert(k.trim_start_matches("hestyna.dlq.").into(), v.into());
                    }
                    match std::str::from_utf8(&item.record.payload) {
                        Ok(text) => line.insert("payload".into(), text.into()),
                        Err(_) => line.insert(
                            "payload_base64".into(),
                            base64::engine::general_purpose::STANDARD
                                .encode(&item.record.payload)
                                .into(),
                        ),
                    };
                    serde_json::to_writer(&mut buf, &line).expect("writing to a Vec cannot fail");
                    buf.push(b'\n');
                }
                file.append(buf)
                    .await
                    .map_err(|source| DeadLetterError::File {
                        path: file.path().to_owned(),
                        source,
                    })
            }
        }
    }

    /// Waits for queued Kafka deliveries (shutdown).
    pub fn flush(&self, timeout: Duration) {
        if let Destination::Kafka { producer, .. } = self {
            let _ = producer.flush(Timeout::After(timeout));
        }
    }
}
