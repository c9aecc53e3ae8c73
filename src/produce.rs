//! Kafka producing, shared by the dead letters, the intake changelog and `generate`: librdkafka's local
//! queue may be full, which means "wait", not "fail".

use rdkafka::error::KafkaError;
use rdkafka::producer::{
    BaseRecord, FutureProducer, FutureRecord, ProducerContext, ThreadedProducer,
};
use rdkafka::types::RDKafkaErrorCode;
use std::time::Duration;

/// A producer's librdkafka configuration: our `defaults` for this use, then the configured `properties`
/// over them.
pub fn client_config(
    defaults: &[(&str, &str)],
    properties: &[(String, String)],
) -> rdkafka::ClientConfig {
    let mut config = rdkafka::ClientConfig::new();
    for (k, v) in defaults {
        config.set(*k, *v);
    }
    for (k, v) in properties {
        config.set(k, v);
    }
    config
}

fn queue_full(error: &KafkaError) -> bool {
    matches!(
        error,
        KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull)
    )
}

/// Sends every record, then waits until each one is acknowledged by the broker. The first failure is
/// returned (the caller retries the whole set: at least once).
pub async fn send_all(
    producer: &FutureProducer,
    records: Vec<FutureRecord<'_, [u8], [u8]>>,
) -> Result<(), KafkaError> {
    let mut deliveries = Vec::with_capacity(records.len());
    for mut record in records {
        loop {
            match producer.send_result(record) {
                Ok(delivery) => {
                    deliveries.push(delivery);
                    break;
                }
                Err((error, back)) if queue_full(&error) => {
                    record = back;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err((error, _)) => return Err(error),
            }
        }
    }
    for delivery in deliveries {
        match delivery.await {
            Ok(Ok(_)) => {}
            Ok(Err((error, _))) => return Err(error),
            Err(_cancelled) => return Err(KafkaError::Canceled),
        }
    }
    Ok(())
}

/// Queues one record on a threaded producer, waiting while its queue is full.
pub fn send_blocking<C: ProducerContext<DeliveryOpaque = ()> + 'static>(
    producer: &ThreadedProducer<C>,
    mut record: BaseRecord<'_, [u8], [u8]>,
) -> Result<(), KafkaError> {
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((error, back)) if queue_full(&error) => {
                record = back;
                std::thread::sleep(Duration::from_millis(2));
            }
            Err((error, _)) => return Err(error),
        }
    }
}
