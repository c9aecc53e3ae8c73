//! The bare consumer: subscribe with a new group, read `count` records from the earliest offset, touch
//! each payload (so nothing is optimised away), discard it. Timed from the first record to the last, as
//! the daemon is in `scripts/bench`, so the group join is left out of both.

use super::{BenchError, Measured};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Message};
use std::time::{Duration, Instant};

/// Reads `count` records of `topic` with these consumer properties (`bootstrap.servers` included;
/// `group.id` is set to `group`).
pub fn run(
    properties: &[(String, String)],
    group: &str,
    topic: &str,
    count: u64,
    timeout: Duration,
) -> Result<Measured, BenchError> {
    let mut config = ClientConfig::new();
    for (k, v) in properties {
        config.set(k, v);
    }
    config
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false");
    let consumer: BaseConsumer = config.create()?;
    consumer.subscribe(&[topic])?;
    let deadline = Instant::now() + timeout;
    let mut first: Option<Instant> = None;
    let mut read = 0u64;
    let mut checksum = 0u64;
    while read < count {
        if Instant::now() > deadline {
            return Err(BenchError::Failed(format!(
                "read {read} of {count} records of {topic} before the timeout"
            )));
        }
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => {
                first.get_or_insert_with(Instant::now);
                read += 1;
                if let Some(payload) = message.payload() {
                    checksum = checksum.wrapping_add(payload.len() as u64);
                }
            }
            // Transient (a topic's metadata not there yet, a broker hiccup): librdkafka retries.
            Some(Err(_)) => {}
            None => {}
        }
    }
    std::hint::black_box(checksum);
    let seconds = first.map_or(0.0, |f| f.elapsed().as_secs_f64());
    Ok(Measured {
        records: read,
        seconds,
        rate: read as f64 / seconds.max(1e-9),
        cpu_seconds: super::process_cpu_seconds(),
    })
}
