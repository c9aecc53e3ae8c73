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
static SINK_REJECT_LOG: LazyLock<RateLimit> = LazyLock::new(|| RateLimit::new(LOG_INTERVAL));
static KAFKA_LOG: LazyLock<RateLimit> = LazyLock::new(|| RateLimit::new(LOG_INTERVAL));
static REDACTION_LOG: LazyLock<RateLimit> = LazyLock::new(|| RateLimit::new(LOG_INTERVAL));
static OVERFLOW_LOG: LazyLock<RateLimit> = LazyLock::new(|| RateLimit::new(LOG_INTERVAL));

/// Declares an event that only counts: `count` more under (`pipeline`, and one more label).
macro_rules! pipeline_count {
    ($(#[doc = $doc:literal])* $name:ident, $counter:ident, $label:ident) => {
        $(#[doc = $doc])*
        pub struct $name<'a> {
            /// The pipeline (a label).
            pub pipeline: &'a str,
            /// The second label.
            pub $label: &'a str,
            /// How many.
            pub count: u64,
        }

        impl $name<'_> {
            /// Counts it.
            pub fn emit(&self, m: &SelfMetrics) {
                m.$counter
                    .with_label_values(&[self.pipeline, self.$label])
                    .inc_by(self.count);
            }
        }
    };
}

pipeline_count!(
    /// Records were read by a pipeline, from a topic (`(file)`, `(generator)` for those sources).
    EventsReceived, events_received, topic
);
pipeline_count!(
    /// Valid records a pipeline had no use for, by reason.
    EventsIgnored, events_ignored, reason
);
pipeline_count!(
    /// Records were written to the dead-letter destination, by reason.
    DeadLettered, dead_letters, reason
);

/// Records broke the event contract.
pub struct InvalidEvents<'a> {
    pub pipeline: &'a str,
    pub reason: &'a str,
    pub count: u64,
    /// One example, for the log line.
    pub detail: &'a str,
    /// Where the example came from (the record's topic, partition and offset, or line).
    pub origin: &'a dyn std::fmt::Debug,
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
    pub records: u64,
    /// Their framed bytes (before compression).
    pub bytes: u64,
    /// How long the request took.
    pub elapsed: std::time::Duration,
}

impl SinkDelivered<'_> {
    pub fn emit(&self, m: &SelfMetrics) {
        let labels = [self.sink];
        m.sink_records
            .with_label_values(&labels)
            .inc_by(self.records);
        m.sink_bytes.with_label_values(&labels).inc_by(self.bytes);
        m.sink_batch_seconds
            .with_label_values(&labels)
            .observe(self.elapsed.as_secs_f64());
        m.sink_up.with_label_values(&labels).set(1);
    }
}

/// A sink attempt failed in a way worth retrying; the records will be sent again.
pub struct SinkAttemptFailed<'a> {
    pub sink: &'a str,
    /// The failure's bounded class (a label value).
    pub class: &'a str,
    /// Whether the failure says the destination is down (`sink_up` 0).
    pub down: bool,
    pub error: &'a dyn std::error::Error,
    pub attempt: u32,
}

impl SinkAttemptFailed<'_> {
    pub fn emit(&self, m: &SelfMetrics) {
        m.sink_retries
            .with_label_values(&[self.sink, self.class])
            .inc();
        if self.down {
            m.sink_up.with_label_values(&[self.sink]).set(0);
        }
        if let Some(suppressed) = SINK_LOG.allow() {
            tracing::error!(sink = self.sink, class = self.class, error = %self.error, attempt = self.attempt, suppressed, "sink delivery failed; retrying");
        }
    }
}

/// A sink refused records for good; they go to the dead letters.
pub struct SinkRejected<'a> {
    pub sink: &'a str,
    /// The refusal's bounded class (a label value).
    pub class: &'a str,
    /// Whether the destination refused the credentials (`sink_up` 0: not usable as configured).
    pub credentials: bool,
    pub detail: &'a str,
    pub count: u64,
}

impl SinkRejected<'_> {
    pub fn emit(&self, m: &SelfMetrics) {
        m.sink_rejected
            .with_label_values(&[self.sink, self.class])
            .inc_by(self.count);
        if self.credentials {
            m.sink_up.with_label_values(&[self.sink]).set(0);
        }
        if let Some(suppressed) = SINK_REJECT_LOG.allow() {
            tracing::error!(
                sink = self.sink,
                class = self.class,
                detail = self.detail,
                count = self.count,
                suppressed,
                "sink refused records; dead-lettering them"
            );
        }
    }
}

/// Redaction rules replaced values during a batch.
pub struct Redactions<'a> {
    pub rules: &'a [String],
    pub tally: &'a [u64],
}

impl Redactions<'_> {
    pub fn emit(&self, m: &SelfMetrics) {
        for (rule, count) in self.rules.iter().zip(self.tally) {
            if *count > 0 {
                m.redactions.with_label_values(&[rule]).inc_by(*count);
            }
        }
    }
}

/// Records could not be redacted (their JSON is beyond what the redactor reads: a number out of
/// range, a lone surrogate, nesting too deep): they are dead-lettered, never forwarded.
pub struct RedactionFailed<'a> {
    /// How many records.
    pub count: u64,
    /// One example's error, for the log line.
    pub detail: &'a str,
}

impl RedactionFailed<'_> {
    /// Counts them and logs, rate-limited.
    pub fn emit(&self, m: &SelfMetrics) {
        m.redaction_failures.inc_by(self.count);
        if let Some(suppressed) = REDACTION_LOG.allow() {
            tracing::error!(
                count = self.count,
                detail = self.detail,
                suppressed,
                "records could not be redacted; dead-lettering them instead of forwarding"
            );
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
    /// Observations folded into the rule's `__overflow__` series.
    pub overflowed: u64,
    /// Label values cut or cleaned.
    pub sanitized: u64,
    /// Series removed by expiry.
    pub expired: u64,
    /// Matching events with no usable value: (reason label, count).
    pub skipped: &'a [(&'a str, u64)],
}

impl DerivedCounts<'_> {
    pub fn emit(&self, m: &SelfMetrics) {
        if self.overflowed > 0 {
            m.series_overflow
                .with_label_values(&[self.metric])
                .inc_by(self.overflowed);
            if let Some(suppressed) = OVERFLOW_LOG.allow() {
                tracing::warn!(
                    metric = self.metric,
                    folded = self.overflowed,
                    suppressed,
                    "series limit reached: new label sets are folded into __overflow__"
                );
            }
        }
        if self.sanitized > 0 {
            m.label_values_sanitized
                .with_label_values(&[self.metric])
                .inc_by(self.sanitized);
        }
        if self.expired > 0 {
            m.series_expired
                .with_label_values(&[self.metric])
                .inc_by(self.expired);
        }
        for &(reason, n) in self.skipped {
            if n > 0 {
                m.rule_skipped
                    .with_label_values(&[self.metric, reason])
                    .inc_by(n);
            }
        }
    }
}

/// What the intake join counted.
pub struct JoinCounted {
    /// `resolved` events whose intake time came from the join.
    pub joined: u64,
    /// Intakes dropped for age.
    pub evicted_ttl: u64,
    /// Intakes dropped because the state was full.
    pub evicted_capacity: u64,
    /// Intakes held now.
    pub pending: usize,
}

impl JoinCounted {
    pub fn emit(&self, m: &SelfMetrics) {
        if self.joined > 0 {
            m.intake_joined.inc_by(self.joined);
        }
        if self.evicted_ttl > 0 {
            m.intake_evicted
                .with_label_values(&["ttl"])
                .inc_by(self.evicted_ttl);
        }
        if self.evicted_capacity > 0 {
            m.intake_evicted
                .with_label_values(&["capacity"])
                .inc_by(self.evicted_capacity);
        }
        m.intake_pending.set(self.pending as i64);
    }
}
