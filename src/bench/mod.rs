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
    /// The Kafka client failed.
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("http: {0}")]
    /// A scrape failed.
    Http(#[from] reqwest::Error),
    #[error("{0}")]
    /// The measurement could not be made.
    Failed(String),
}

/// What a run measured, printed as one JSON line.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Measured {
    /// Records read.
    pub records: u64,
    /// Seconds it took, from the first record.
    pub seconds: f64,
    /// Records per second.
    pub rate: f64,
}
