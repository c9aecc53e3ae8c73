//! The intake join's changelog: a compacted Kafka topic that persists [`super::join::IntakeJoin`] per input partition,
//! so that the state survives a restart and follows a partition to another replica (the approach of
//! Kafka Streams' state stores).
//!
//! A record's key is the JSON array `[topic, partition, organization, request_id]`, its value the intake
//! time (RFC 3339), or nothing (a tombstone) once the request is resolved or evicted. The state of input
//! partition `p` lives in changelog partition `p % partitions`. When the source is assigned a partition,
//! the metrics pipeline reads that changelog partition to its end before it processes any record of the
//! input partition; the writes of a batch are acknowledged before the batch's offsets are stored.

use super::join::{Change, JoinKey};
use chrono::{DateTime, Utc};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Why the changelog could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ChangelogError {
    #[error("kafka: {0}")]
    /// The Kafka client failed.
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("cannot create the changelog topic {topic}: {message}")]
    /// The changelog topic could not be created.
    Create {
        /// The topic.
        topic: String,
        /// Why.
        message: String,
    },
    #[error("the changelog topic {0} has no partitions")]
    /// An input topic has no partitions to mirror.
    NoPartitions(String),
    #[error("restoring {topic} partition {partition} took longer than {seconds} s")]
    /// Reading a partition's state did not reach its end in time.
    RestoreTimeout {
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
        /// How long it waited.
        seconds: u64,
    },
    #[error("the restore task failed: {0}")]
    /// The blocking read task failed.
    Join(#[from] tokio::task::JoinError),
}

/// The changelog topic, ready to write and read.
pub struct Changelog {
    producer: FutureProducer,
    topic: String,
    partitions: i32,
    consumer_properties: Vec<(String, String)>,
}

fn config(properties: &[(String, String)]) -> ClientConfig {
    let mut c = ClientConfig::new();
    for (k, v) in properties {
        c.set(k, v);
    }
    c
}

fn encode_key(topic: &str, partition: i32, key: &JoinKey) -> Vec<u8> {
    serde_json::to_vec(&(
        topic,
        partition,
        key.organization.as_ref(),
        key.request_id.as_ref(),
    ))
    .expect("strings serialize")
}

fn decode_record(key: &[u8], value: Option<&[u8]>) -> Option<Change> {
    let (topic, partition, organization, request_id): (String, i32, String, String) =
        serde_json::from_slice(key).ok()?;
    let partition = Some((Arc::from(topic.as_str()), partition));
    let key = JoinKey {
        organization: organization.into(),
        request_id: request_id.into(),
    };
    match value {
        None => Some(Change::Delete { partition, key }),
        Some(v) => {
            let at = DateTime::parse_from_rfc3339(std::str::from_utf8(v).ok()?)
                .ok()?
                .with_timezone(&Utc);
            Some(Change::Put {
                partition,
                key,
                intake_at: at,
            })
        }
    }
}

impl Changelog {
    /// Opens the changelog topic, creating it (compacted, with as many partitions as the most partitioned
    /// input topic) when it does not exist. `producer_properties` and `consumer_properties` include
    /// `bootstrap.servers` and the user's properties.
    pub async fn open(
        producer_properties: &[(String, String)],
        consumer_properties: &[(String, String)],
        topic: &str,
        inputs: &[String],
    ) -> Result<Changelog, ChangelogError> {
        let probe: BaseConsumer = config(consumer_properties).create()?;
        let timeout = Duration::from_secs(10);
        let metadata = probe.fetch_metadata(None, timeout)?;
        let partitions_of = |name: &str| {
            metadata
                .topics()
                .iter()
                .find(|t| t.name() == name && t.error().is_none())
                .map(|t| t.partitions().len() as i32)
        };
        if partitions_of(topic).is_none_or(|n| n == 0) {
            let wanted = inputs
                .iter()
                .filter_map(|t| partitions_of(t))
                .max()
                .unwrap_or(1)
                .max(1);
            let admin: AdminClient<DefaultClientContext> = config(producer_properties).create()?;
            let new = NewTopic::new(topic, wanted, TopicReplication::Fixed(-1))
                .set("cleanup.policy", "compact");
            let results = admin
                .create_topics(
                    &[new],
                    &AdminOptions::new().operation_timeout(Some(timeout)),
                )
                .await?;
            for result in results {
                match result {
                    Ok(_) => tracing::info!(
                        topic,
                        partitions = wanted,
                        "created the intake changelog topic"
                    ),
                    Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {}
                    Err((_, code)) => {
                        return Err(ChangelogError::Create {
                            topic: topic.into(),
                            message: code.to_string(),
                        })
                    }
                }
            }
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        let partitions = loop {
            let md = probe.fetch_metadata(Some(topic), timeout)?;
            let n = md
                .topics()
                .iter()
                .find(|t| t.name() == topic && t.error().is_none())
                .map_or(0, |t| t.partitions().len() as i32);
            if n > 0 {
                break n;
            }
            if Instant::now() > deadline {
                return Err(ChangelogError::NoPartitions(topic.into()));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let mut producer_config = config(producer_properties);
        // A batch's changes are sent at once and then waited for, before its offsets may be stored:
        // lingering would only add its wait to every batch (5 ms held the metrics pipeline from a
        // broker to ~145,000 events/s).
        producer_config.set("acks", "all").set("linger.ms", "0");
        Ok(Changelog {
            producer: producer_config.create()?,
            topic: topic.into(),
            partitions,
            consumer_properties: consumer_properties.to_vec(),
        })
    }

    /// Writes changes and waits until every one is acknowledged. Changes of non-Kafka records are skipped.
    pub async fn write(&self, changes: &[Change]) -> Result<(), ChangelogError> {
        // Keys and values first: the records borrow them.
        let encoded: Vec<(i32, Vec<u8>, Option<String>)> = changes
            .iter()
            .filter_map(|change| match change {
                Change::Put {
                    partition: Some(p),
                    key,
                    intake_at,
                } => Some((
                    p.1,
                    encode_key(&p.0, p.1, key),
                    Some(intake_at.to_rfc3339()),
                )),
                Change::Delete {
                    partition: Some(p),
                    key,
                } => Some((p.1, encode_key(&p.0, p.1, key), None)),
                _ => None,
            })
            .collect();
        let records = encoded.iter().map(|(partition, key, value)| {
            let record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&self.topic)
                .key(key.as_slice())
                .partition(partition % self.partitions);
            match value {
                Some(v) => record.payload(v.as_bytes()),
                None => record,
            }
        });
        Ok(crate::produce::send_all(&self.producer, records.collect()).await?)
    }

    /// Reads the state of input partition (`topic`, `partition`): every change, to the changelog's end,
    /// in order, for [`super::join::IntakeJoin::restore`].
    pub async fn read(&self, topic: &str, partition: i32) -> Result<Vec<Change>, ChangelogError> {
        let properties = self.consumer_properties.clone();
        let changelog = self.topic.clone();
        let source = (topic.to_owned(), partition);
        let target = partition % self.partitions;
        let changes =
            tokio::task::spawn_blocking(move || -> Result<Vec<Change>, ChangelogError> {
                let mut c = config(&properties);
                c.set("enable.auto.commit", "false")
                    .set("fetch.wait.max.ms", "50")
                    .set("group.id", "hestyna-obsd-changelog-restore");
                let consumer: BaseConsumer = c.create()?;
                let (low, high) =
                    consumer.fetch_watermarks(&changelog, target, Duration::from_secs(10))?;
                if high <= low {
                    return Ok(Vec::new());
                }
                let mut list = TopicPartitionList::new();
                list.add_partition_offset(&changelog, target, Offset::Beginning)?;
                consumer.assign(&list)?;
                let deadline = Instant::now() + Duration::from_secs(120);
                let mut changes = Vec::new();
                // Done once past the high watermark and nothing more arrives for a moment: tansu (the
                // test broker) reports a high watermark below the partition's real end, so the mark
                // alone would stop a restore early.
                let mut reached = false;
                let mut last_record = Instant::now();
                loop {
                    if Instant::now() > deadline {
                        return Err(ChangelogError::RestoreTimeout {
                            topic: changelog,
                            partition: target,
                            seconds: 120,
                        });
                    }
                    match consumer.poll(Duration::from_millis(100)) {
                        Some(Ok(m)) => {
                            if let Some(change) =
                                m.key().and_then(|k| decode_record(k, m.payload()))
                            {
                                let mine = match &change {
                                    Change::Put {
                                        partition: Some((t, p)),
                                        ..
                                    }
                                    | Change::Delete {
                                        partition: Some((t, p)),
                                        ..
                                    } => t.as_ref() == source.0 && *p == source.1,
                                    _ => false,
                                };
                                if mine {
                                    changes.push(change);
                                }
                            }
                            last_record = Instant::now();
                            reached |= m.offset() + 1 >= high;
                        }
                        Some(Err(e)) => return Err(e.into()),
                        None => {}
                    }
                    if reached && last_record.elapsed() >= Duration::from_millis(500) {
                        return Ok(changes);
                    }
                }
            })
            .await??;
        Ok(changes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let key = JoinKey {
            organization: "ac\"me".into(),
            request_id: "r-1".into(),
        };
        let bytes = encode_key("events", 3, &key);
        let at = DateTime::parse_from_rfc3339("2026-11-27T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let put = decode_record(&bytes, Some(at.to_rfc3339().as_bytes())).unwrap();
        assert_eq!(
            put,
            Change::Put {
                partition: Some((Arc::from("events"), 3)),
                key: key.clone(),
                intake_at: at
            }
        );
        let delete = decode_record(&bytes, None).unwrap();
        assert_eq!(
            delete,
            Change::Delete {
                partition: Some((Arc::from("events"), 3)),
                key
            }
        );
        assert_eq!(decode_record(b"garbage", None), None);
    }
}
