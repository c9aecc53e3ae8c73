//! The Kafka sink: records to a SIEM ingest topic through an idempotent producer (`acks=all`, no
//! duplicates or reordering from the producer's own retries), key = organization.
//!
//! Record by record: a record the broker refuses for its content (too large, invalid) is rejected; any
//! other failure (timeouts, broker transport) is sent again.

use super::{
    Delivery, Encoded, FailureClass, Refusal, Sink, SinkBuildError, SinkError, SinkFuture,
};
use crate::config::{KafkaConfig, KafkaSinkConfig};
use crate::forward::Redacted;
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use std::time::Duration;

/// A Kafka sink.
pub struct KafkaSink {
    name: String,
    topic: String,
    producer: FutureProducer,
}

impl KafkaSink {
    /// Creates the producer (it connects lazily).
    pub fn new(
        name: &str,
        c: &KafkaSinkConfig,
        kafka: &KafkaConfig,
    ) -> Result<Self, SinkBuildError> {
        let mut config = rdkafka::ClientConfig::new();
        config.set(
            "bootstrap.servers",
            c.brokers.as_deref().unwrap_or(&kafka.brokers),
        );
        for (k, v) in kafka.properties.iter().chain(&c.properties) {
            config.set(k, v);
        }
        config
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set(
                "message.timeout.ms",
                c.delivery_timeout.as_millis().to_string(),
            );
        let producer: FutureProducer = config
            .create()
            .map_err(|e| SinkBuildError::setup(name, e))?;
        Ok(KafkaSink {
            name: name.to_owned(),
            topic: c.topic.clone(),
            producer,
        })
    }

    async fn deliver(&self, batch: &Encoded<'_>) -> Result<Delivery, SinkError> {
        let mut pending = Vec::with_capacity(batch.len());
        let mut retry = Vec::new();
        let mut rejected = Vec::new();
        for i in 0..batch.len() {
            let doc = batch.docs[i];
            let mut record: FutureRecord<'_, str, [u8]> =
                FutureRecord::to(&self.topic).payload(batch.record(i));
            if let Some(org) = &doc.organization {
                record = record.key(org.as_str());
            }
            loop {
                match self.producer.send_result(record) {
                    Ok(delivery) => {
                        pending.push((i, delivery));
                        break;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        record = back;
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    Err((error, _)) => {
                        classify(i, &error, &mut rejected, &mut retry);
                        break;
                    }
                }
            }
        }
        for (i, delivery) in pending {
            match delivery.await {
                Ok(Ok(_)) => {}
                Ok(Err((error, _))) => classify(i, &error, &mut rejected, &mut retry),
                Err(_cancelled) => retry.push(i),
            }
        }
        if retry.len() == batch.len() {
            return Err(SinkError::new(
                FailureClass::Kafka,
                "no record of the batch was delivered",
            ));
        }
        Ok(if rejected.is_empty() && retry.is_empty() {
            Delivery::Accepted
        } else {
            retry.sort_unstable();
            Delivery::Partial { rejected, retry }
        })
    }
}

/// Whether a produce error is about the record itself (rejected) or passing (sent again).
fn classify(
    i: usize,
    error: &KafkaError,
    rejected: &mut Vec<(usize, Refusal)>,
    retry: &mut Vec<usize>,
) {
    use RDKafkaErrorCode as C;
    let code = match error {
        KafkaError::MessageProduction(code) => Some(*code),
        _ => error.rdkafka_error_code(),
    };
    match code {
        Some(
            C::MessageSizeTooLarge | C::InvalidRecord | C::InvalidMessage | C::InvalidMessageSize,
        ) => rejected.push((
            i,
            Refusal::new(FailureClass::KafkaRecord, error.to_string()),
        )),
        _ => retry.push(i),
    }
}

impl Sink for KafkaSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn encode(&self, doc: &Redacted, out: &mut Vec<u8>) {
        out.extend_from_slice(&doc.json);
    }

    fn send<'a>(&'a self, batch: &'a Encoded<'a>) -> SinkFuture<'a> {
        Box::pin(self.deliver(batch))
    }
}
