//! Benchmark tools (the `hestyna-obsd-bench` binary): the baselines and probes `scripts/bench` measures
//! the daemon against.
//!
//! - [`consume`]: a bare consumer (same librdkafka, the same properties as the daemon's consumers) that
//!   reads a topic and discards every record: the rate to compare the daemon's end-to-end rate with.
//! - [`freshness`]: produces load at a steady rate plus probe events, scrapes `/metrics` and measures
//!   how long each probe takes from its produce time to its first appearance there.

pub mod consume;
pub mod freshness;

/// Why a bench tool failed.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("http: {0}")]
    Http(#[from] reqwest::Error),
    #[error("{0}")]
    Failed(String),
}

/// What a run measured, printed as one JSON line.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Measured {
    pub records: u64,
    pub seconds: f64,
    pub rate: f64,
}
