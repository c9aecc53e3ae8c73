//! Self-observability events: each is one struct whose `emit` counts and, where useful, logs.
//!
//! Events that can repeat per record carry a `count` (the pipeline aggregates per batch) and log through a
//! [`RateLimit`], with the number of lines held back.

use super::{RateLimit, SelfMetrics};
use std::sync::LazyLock;
use std::time::Duration;

const LOG_INTERVAL: Duration = Duration::from_secs(10);

static INVALID_LOG: LazyLock<RateLimit> = LazyLock::new(|| RateLimit::new(LOG_INTERVAL));
static DEAD_LETTER_LOG: LazyLock<RateLimit> = LazyLock::new(|| RateLimit::new(LOG_INTERVAL));
static SINK_LOG: LazyLock<RateLimit> = LazyLock::new(|| RateLimit::new(LOG_INTERVAL));
static KAFKA_LOG: LazyLock<RateLimit> = LazyLock::new(|| RateLimit::new(LOG_INTERVAL));

/// Records were read by a pipeline.
pub struct EventsReceived<'a> {
    pub pipeline: &'a str,
    pub topic: &'a str,
    pub count: u64,
}

impl EventsReceived<'_> {
    pub fn emit(&self, m: &SelfMetrics) {
        m.events_received
            .with_label_values(&[self.pipeline, self.topic])
            .inc_by(self.count);
    }
}

/// Records broke the event contract.
pub struct InvalidEvents<'a> {
    pub pipeline: &'a str,
    pub reason: &'a str,
    pub count: u64,
    /// One example, for the log line.
    pub detail: &'a str,
    /// Where the example came from.
    pub origin: &'a crate::source::Origin,
}

impl InvalidEvents<'_> {
    pub fn emit(&self, m: &SelfMetrics) {
        m.events_invalid
            .with_label_values(&[self.pipeline, self.reason])
            .inc_by(self.count);
        if let Some(suppressed) = INVALID_LOG.allow() {
            tracing::warn!(
                pipeline = self.pipeline,
                reason = self.reason,
                detail = self.detail,
                origin = ?self.origin,
                count = self.count,
                suppressed,
                "invalid events"
            );
        }
    }
}

/// Valid records a pipeline had no use for.
pub struct EventsIgnored<'a> {
    pub pipeline: &'a str,
    pub reason: &'a str,
    pub count: u64,
}

impl EventsIgnored<'_> {
    pub fn emit(&self, m: &SelfMetrics) {
        m.events_ignored
            .with_label_values(&[self.pipeline, self.reason])
            .inc_by(self.count);
    }
}

/// A metric rule matched events but could not take its value from them.
pub struct RuleSkipped<'a> {
    pub metric: &'a str,
    pub reason: &'a str,
    pub count: u64,
}

impl RuleSkipped<'_> {
    pub fn emit(&self, m: &SelfMetrics) {
        m.rule_skipped
            .with_label_values(&[self.metric, self.reason])
            .inc_by(self.count);
    }
}

/// Records were written to the dead-letter destination.
pub struct DeadLettered<'a> {
    pub pipeline: &'a str,
    pub reason: &'a str,
    pub count: u64,
}

impl DeadLettered<'_> {
    pub fn emit(&self, m: &SelfMetrics) {
        m.dead_letters
            .with_label_values(&[self.pipeline, self.reason])
            .inc_by(self.count);
    }
}

/// Writing dead letters failed; the batch will be retried.
pub struct DeadLetterFailed<'a> {
    pub pipeline: &'a str,
    pub error: &'a dyn std::error::Error,
    pub attempt: u32,
}

impl DeadLetterFailed<'_> {
    pub fn emit(&self, m: &SelfMetrics) {
        m.dead_letter_errors
            .with_label_values(&[self.pipeline])
            .inc();
        if let Some(suppressed) = DEAD_LETTER_LOG.allow() {
            tracing::error!(pipeline = self.pipeline, error = %self.error, attempt = self.attempt, suppressed, "dead-letter write failed; retrying");
        }
    }
}

/// A sink accepted records.
pub struct SinkDelivered<'a> {
    pub sink: &'a str,
    pub count: u64,
}

impl SinkDelivered<'_> {
    pub fn emit(&self, m: &SelfMetrics) {
        m.sink_records
            .with_label_values(&[self.sink])
            .inc_by(self.count);
    }
}

/// A sink write failed; the batch will be retried.
pub struct SinkFailed<'a> {
    pub sink: &'a str,
    pub error: &'a dyn std::error::Error,
    pub attempt: u32,
}

impl SinkFailed<'_> {
    pub fn emit(&self, m: &SelfMetrics) {
        m.sink_errors.with_label_values(&[self.sink]).inc();
        if let Some(suppressed) = SINK_LOG.allow() {
            tracing::error!(sink = self.sink, error = %self.error, attempt = self.attempt, suppressed, "sink write failed; retrying");
        }
    }
}

/// The Kafka client reported an error.
pub struct KafkaClientError<'a> {
    pub pipeline: &'a str,
    pub error: &'a dyn std::error::Error,
}

impl KafkaClientError<'_> {
    pub fn emit(&self, m: &SelfMetrics) {
        m.kafka_errors.with_label_values(&[self.pipeline]).inc();
        if let Some(suppressed) = KAFKA_LOG.allow() {
            tracing::warn!(pipeline = self.pipeline, error = %self.error, suppressed, "kafka client error");
        }
    }
}
