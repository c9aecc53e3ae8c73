//! `generate`: synthetic events to a Kafka topic or a JSONL file.

use super::AppError;
use crate::source::generator::{EventGenerator, Generated, GeneratorSettings};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::util::Timeout;
use std::io::Write;
use std::time::{Duration, Instant};

/// Where generated events go.
pub enum Target {
    /// A Kafka topic, with these producer properties (`bootstrap.servers` included).
    Kafka {
        /// librdkafka producer properties (`bootstrap.servers` included).
        properties: Vec<(String, String)>,
        /// The topic to write to.
        topic: String,
    },
    /// A JSONL file (`-` for stdout).
    File(String),
}

/// Generates `settings.count` events (required) into `target`, with a progress bar on stderr when
/// `progress` is set. Returns how many were written.
pub fn generate(
    settings: GeneratorSettings,
    target: Target,
    progress: bool,
) -> Result<u64, AppError> {
    let count = settings
        .count
        .ok_or_else(|| AppError::Usage("generate needs --count".into()))?;
    let rate = settings.rate;
    let bar = super::progress_bar(progress, count, "events ({per_sec}, eta {eta})");
    let started = Instant::now();
    // Every 256 events: the bar moves, and at a set rate the writer waits until they are due.
    let mut tick = |n: u64| {
        bar.set_position(n);
        if rate > 0.0 {
            let due = Duration::from_secs_f64(n as f64 / rate);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(wait);
            }
        }
    };
    let events = EventGenerator::new(settings);
    let written = match target {
        Target::Kafka { properties, topic } => to_kafka(events, &properties, &topic, &mut tick)?,
        Target::File(path) => to_file(events, &path, &mut tick)?,
    };
    bar.set_position(written);
    bar.finish();
    Ok(written)
}

/// Produces every event to `topic` (key and headers as generated); waits until all are delivered.
fn to_kafka(
    events: EventGenerator,
    properties: &[(String, String)],
    topic: &str,
    tick: &mut dyn FnMut(u64),
) -> Result<u64, AppError> {
    let defaults = [
        ("linger.ms", "20"),
        ("acks", "all"),
        ("compression.type", "lz4"),
    ];
    let config = crate::produce::client_config(&defaults, properties);
    let producer: ThreadedProducer<DefaultProducerContext> = config.create()?;
    let mut n = 0u64;
    for Generated {
        key,
        payload,
        headers,
    } in events
    {
        let mut owned = OwnedHeaders::new();
        for (k, v) in &headers {
            owned = owned.insert(Header {
                key: k,
                value: Some(v.as_bytes()),
            });
        }
        let record = BaseRecord::to(topic)
            .key(key.as_bytes())
            .payload(payload.as_slice())
            .headers(owned);
        crate::produce::send_blocking(&producer, record)?;
        n += 1;
        if n.is_multiple_of(256) {
            tick(n);
        }
    }
    producer.flush(Timeout::After(Duration::from_secs(60)))?;
    Ok(n)
}

/// Writes every event as a line of `path` (`-`: standard output).
fn to_file(events: EventGenerator, path: &str, tick: &mut dyn FnMut(u64)) -> Result<u64, AppError> {
    let failed = |source| AppError::Io {
        context: format!("cannot write {path}"),
        source,
    };
    let out: Box<dyn Write> = if path == "-" {
        Box::new(std::io::stdout().lock())
    } else {
        Box::new(std::fs::File::create(path).map_err(failed)?)
    };
    let mut out = std::io::BufWriter::new(out);
    let mut n = 0u64;
    for g in events {
        out.write_all(&g.payload)
            .and_then(|_| out.write_all(b"\n"))
            .map_err(failed)?;
        n += 1;
        if n.is_multiple_of(256) {
            tick(n);
        }
    }
    out.flush().map_err(failed)?;
    Ok(n)
}
