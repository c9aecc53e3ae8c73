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
static OVERFLOW_LOG: LazyLock<RateLimit> = LazyLock::new(|| RateLimit::new(LOG_INTERVAL));

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

/// What the derive stage counted for one metric during a batch.
pub struct DerivedCounts<'a> {
    pub metric: &'a str,
    pub counts: &'a crate::derive::FamilyCounts,
}

impl DerivedCounts<'_> {
    pub fn emit(&self, m: &SelfMetrics) {
        let c = self.counts;
        if c.overflowed > 0 {
            m.series_overflow
                .with_label_values(&[self.metric])
                .inc_by(c.overflowed);
            if let Some(suppressed) = OVERFLOW_LOG.allow() {
                tracing::warn!(
                    metric = self.metric,
                    folded = c.overflowed,
                    suppressed,
                    "series limit reached: new label sets are folded into __overflow__"
                );
            }
        }
        if c.sanitized > 0 {
            m.label_values_sanitized
                .with_label_values(&[self.metric])
                .inc_by(c.sanitized);
        }
        if c.expired > 0 {
            m.series_expired
                .with_label_values(&[self.metric])
                .inc_by(c.expired);
        }
        for (reason, n) in [
            crate::derive::SkipReason::MissingValue,
            crate::derive::SkipReason::NegativeValue,
        ]
        .iter()
        .zip(c.skipped)
        {
            if n > 0 {
                m.rule_skipped
                    .with_label_values(&[self.metric, reason.as_str()])
                    .inc_by(n);
            }
        }
    }
}

/// What the intake join counted.
pub struct JoinCounted {
    pub counts: crate::derive::join::JoinCounts,
    pub pending: usize,
}

impl JoinCounted {
    pub fn emit(&self, m: &SelfMetrics) {
        let c = self.counts;
        if c.joined > 0 {
            m.intake_joined.inc_by(c.joined);
        }
        if c.evicted_ttl > 0 {
            m.intake_evicted
                .with_label_values(&["ttl"])
                .inc_by(c.evicted_ttl);
        }
        if c.evicted_capacity > 0 {
            m.intake_evicted
                .with_label_values(&["capacity"])
                .inc_by(c.evicted_capacity);
        }
        m.intake_pending.set(self.pending as i64);
    }
}
