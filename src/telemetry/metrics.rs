//! The daemon's own metrics (`hestyna_obsd_*`), in their own registry.
//!
//! Declared as a table ([`self_metrics!`]): each line is a field with its doc comment, type, name,
//! help and label names, so adding a metric is one line here and nothing else.

use crate::shared::alloc;
use crate::shared::exposition::{format_value, FamilyType, Format, Writer};
use prometheus::proto::MetricType;
use prometheus::{
    GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};

/// A metric type of the table: how to make one, registered.
trait Make: prometheus::core::Collector + Clone + Sized + 'static {
    fn make(name: &str, help: &str, labels: &[&str], buckets: Option<Vec<f64>>) -> Self;

    fn register(
        r: &Registry,
        name: &str,
        help: &str,
        labels: &[&str],
        buckets: Option<Vec<f64>>,
    ) -> Self {
        let metric = Self::make(name, help, labels, buckets);
        r.register(Box::new(metric.clone()))
            .expect("self metric names are unique");
        metric
    }
}

const VALID: &str = "self metric definitions are valid";

impl Make for IntCounterVec {
    fn make(name: &str, help: &str, labels: &[&str], _: Option<Vec<f64>>) -> Self {
        IntCounterVec::new(Opts::new(name, help), labels).expect(VALID)
    }
}

impl Make for IntGaugeVec {
    fn make(name: &str, help: &str, labels: &[&str], _: Option<Vec<f64>>) -> Self {
        IntGaugeVec::new(Opts::new(name, help), labels).expect(VALID)
    }
}

impl Make for GaugeVec {
    fn make(name: &str, help: &str, labels: &[&str], _: Option<Vec<f64>>) -> Self {
        GaugeVec::new(Opts::new(name, help), labels).expect(VALID)
    }
}

impl Make for IntCounter {
    fn make(name: &str, help: &str, _: &[&str], _: Option<Vec<f64>>) -> Self {
        IntCounter::new(name, help).expect(VALID)
    }
}

impl Make for IntGauge {
    fn make(name: &str, help: &str, _: &[&str], _: Option<Vec<f64>>) -> Self {
        IntGauge::new(name, help).expect(VALID)
    }
}

impl Make for HistogramVec {
    fn make(name: &str, help: &str, labels: &[&str], buckets: Option<Vec<f64>>) -> Self {
        let mut opts = HistogramOpts::new(name, help);
        if let Some(buckets) = buckets {
            opts = opts.buckets(buckets);
        }
        HistogramVec::new(opts, labels).expect(VALID)
    }
}

/// Declares [`SelfMetrics`]: one line per metric, `field: Type("name", "help", [labels]);`, with
/// `buckets = [...]` for histograms.
macro_rules! self_metrics {
    ($(
        $(#[doc = $doc:literal])*
        $field:ident: $kind:ident($name:literal, $help:literal, [$($label:literal),*] $(, buckets = [$($bucket:literal),*])?);
    )*) => {
        /// The daemon's own metrics (`hestyna_obsd_*`), in their own registry.
        pub struct SelfMetrics {
            registry: Registry,
            $( $(#[doc = $doc])* pub $field: $kind, )*
        }

        impl SelfMetrics {
            /// The name of every self metric, `hestyna_obsd_build_info` included.
            pub const NAMES: &'static [&'static str] = &[
                "hestyna_obsd_build_info",
                super::otel::NAMES[0],
                super::otel::NAMES[1],
                super::otel::NAMES[2],
                super::otel::NAMES[3],
                $($name),*
            ];

            /// Registers every self metric (`hestyna_obsd_build_info` and the span exporter's
            /// process-wide counters included).
            pub fn new() -> Self {
                let r = Registry::new();
                register_build_info(&r);
                super::otel::STATS.register(&r);
                SelfMetrics {
                    $( $field: <$kind as Make>::register(
                        &r,
                        $name,
                        $help,
                        &[$($label),*],
                        None $(.or(Some(vec![$($bucket),*])))?,
                    ), )*
                    registry: r,
                }
            }
        }
    };
}

self_metrics! {
    /// Records read, by pipeline and topic (`(file)` / `(generator)` for those sources).
    events_received: IntCounterVec("hestyna_obsd_events_received_total", "Records read.", ["pipeline", "topic"]);
    /// Records that broke the event contract, by pipeline and reason.
    events_invalid: IntCounterVec("hestyna_obsd_events_invalid_total", "Records that broke the event contract.", ["pipeline", "reason"]);
    /// Valid records a pipeline did not use, by pipeline and reason (`unknown_type`, ...).
    events_ignored: IntCounterVec("hestyna_obsd_events_ignored_total", "Valid records a pipeline did not use.", ["pipeline", "reason"]);
    /// Events a metric rule matched but could not derive a value from, by metric and reason.
    rule_skipped: IntCounterVec("hestyna_obsd_rule_skipped_total", "Events a metric rule matched but could not take a value from.", ["metric", "reason"]);
    /// Records written to the dead-letter destination, by pipeline and reason.
    dead_letters: IntCounterVec("hestyna_obsd_dead_letters_total", "Records written to the dead-letter destination.", ["pipeline", "reason"]);
    /// Failed attempts to write dead letters (retried), by pipeline.
    dead_letter_errors: IntCounterVec("hestyna_obsd_dead_letter_errors_total", "Failed attempts to write dead letters (retried).", ["pipeline"]);
    /// Records accepted by a sink, by sink.
    sink_records: IntCounterVec("hestyna_obsd_sink_records_total", "Records accepted by a sink.", ["sink"]);
    /// Framed bytes accepted by a sink (before compression), by sink.
    sink_bytes: IntCounterVec("hestyna_obsd_sink_bytes_total", "Framed bytes accepted by a sink, before compression.", ["sink"]);
    /// Failed delivery attempts (the records are sent again), by sink and class.
    sink_retries: IntCounterVec("hestyna_obsd_sink_retries_total", "Failed sink delivery attempts; the records are sent again.", ["sink", "class"]);
    /// Records a sink refused for good (dead-lettered), by sink and class.
    sink_rejected: IntCounterVec("hestyna_obsd_sink_rejected_total", "Records a sink refused for good; they are dead-lettered.", ["sink", "class"]);
    /// Duration of accepted sink requests, by sink.
    sink_batch_seconds: HistogramVec("hestyna_obsd_sink_batch_duration_seconds", "Duration of accepted sink requests.", ["sink"], buckets = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]);
    /// 1 when the sink's last request was accepted; 0 after a failed one or refused credentials.
    sink_up: IntGaugeVec("hestyna_obsd_sink_up", "1 when the sink's last request was accepted; 0 after a failed one or refused credentials.", ["sink"]);
    /// Values replaced by redaction, by rule.
    redactions: IntCounterVec("hestyna_obsd_redactions_total", "Values replaced by redaction.", ["rule"]);
    /// Records that could not be redacted: dead-lettered, never forwarded.
    redaction_failures: IntCounter("hestyna_obsd_redaction_failures_total", "Records that could not be redacted; dead-lettered (reason redaction_failed), never forwarded.", []);
    /// Reloads of the organization table, by result.
    enrichment_reloads: IntCounterVec("hestyna_obsd_enrichment_reloads_total", "Reloads of the organization table.", ["result"]);
    /// Consumer lag against the stored offset, by pipeline, topic and partition.
    consumer_lag: IntGaugeVec("hestyna_obsd_consumer_lag", "Records between the stored offset and the partition's high watermark.", ["pipeline", "topic", "partition"]);
    /// Partitions assigned to this instance, by pipeline.
    assigned_partitions: IntGaugeVec("hestyna_obsd_assigned_partitions", "Kafka partitions assigned to this instance.", ["pipeline"]);
    records_reread: IntCounterVec("hestyna_obsd_records_reread_total", "Kafka records read again by this process at offsets it had read before (a rebalance or a reconnect resumed from an older commit): each may be counted or forwarded twice.", ["pipeline"]);
    /// Errors reported by the Kafka client, by pipeline.
    kafka_errors: IntCounterVec("hestyna_obsd_kafka_errors_total", "Errors reported by the Kafka client.", ["pipeline"]);
    /// Derived series currently held, by metric.
    derived_series: IntGaugeVec("hestyna_obsd_derived_series", "Derived series currently held.", ["metric"]);
    /// Exemplars currently held (at most one a histogram bucket or counter), by metric.
    derived_exemplars: IntGaugeVec("hestyna_obsd_derived_exemplars", "Exemplars currently held, at most one a histogram bucket or counter series; written on OpenMetrics scrapes.", ["metric"]);
    /// Observations folded into a rule's `__overflow__` series, by metric.
    series_overflow: IntCounterVec("hestyna_obsd_series_overflow_total", "Observations folded into a rule's __overflow__ series once its series limit was reached.", ["metric"]);
    /// Label values cut to the length limit or cleaned of control characters, by metric.
    label_values_sanitized: IntCounterVec("hestyna_obsd_label_values_sanitized_total", "Label values cut to the length limit or cleaned of control characters.", ["metric"]);
    /// Series removed after their rule's idle time, by metric.
    series_expired: IntCounterVec("hestyna_obsd_series_expired_total", "Series removed after their rule's idle time.", ["metric"]);
    /// `resolved` events whose intake time came from the intake join.
    intake_joined: IntCounter("hestyna_obsd_intake_joined_total", "Resolved events whose intake time came from the intake join.", []);
    /// Pending intakes dropped, by reason (`ttl`, `capacity`).
    intake_evicted: IntCounterVec("hestyna_obsd_intake_evicted_total", "Pending intakes dropped from the join state.", ["reason"]);
    /// Pending intakes held.
    intake_pending: IntGauge("hestyna_obsd_intake_pending", "Pending intakes held by the intake join.", []);
    /// Refused requests to /metrics and /api/v1/quantiles, by reason.
    http_auth_failures: IntCounterVec("hestyna_obsd_http_auth_failures_total", "Refused requests to /metrics and /api/v1/quantiles.", ["reason"]);
    /// Connections closed at accept, by reason (`forbidden_network`, `address_limit`, `total_limit`).
    http_connections_refused: IntCounterVec("hestyna_obsd_http_connections_refused_total", "Connections closed at accept, before TLS or HTTP.", ["reason"]);
    /// Bytes of `/metrics` and `/api/v1/quantiles` bodies sent, by content encoding (`identity`, `gzip`).
    http_response_bytes: IntCounterVec("hestyna_obsd_http_response_bytes_total", "Bytes of /metrics and /api/v1/quantiles bodies sent, by content encoding (identity, gzip).", ["encoding"]);
    /// TLS handshakes that failed or timed out.
    tls_handshake_failures: IntCounter("hestyna_obsd_tls_handshake_failures_total", "TLS handshakes that failed or timed out.", []);
    /// Reloads of the web configuration file, by result.
    web_config_reloads: IntCounterVec("hestyna_obsd_web_config_reloads_total", "Reloads of the web configuration file.", ["result"]);
    /// Ingestion time minus `occurred_at`, by pipeline and event type (negative: stamped in the future).
    event_delay: HistogramVec("hestyna_obsd_event_delay_seconds", "Ingestion time minus occurred_at; negative when the event is stamped in the future (a producer's clock ahead, or local time sent as UTC).", ["pipeline", "type"], buckets = [-3600.0, -60.0, -1.0, 0.0, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 21600.0, 86400.0]);
    /// When an event of each type was last read (Unix seconds).
    last_event: GaugeVec("hestyna_obsd_last_event_timestamp_seconds", "When an event of each type was last read, in Unix seconds.", ["type"]);
    /// When each certificate the daemon serves (`listener`) or presents to a sink (`sink`) expires.
    tls_certificate_expiry: GaugeVec("hestyna_obsd_tls_certificate_expiry_timestamp_seconds", "When a certificate the daemon serves (listener) or presents (sink) expires, in Unix seconds.", ["listener", "sink"]);
    /// The allocator's heap in use, the pages holding it, its bookkeeping and its resident pages, read
    /// at each scrape (jemalloc builds).
    allocator_bytes: IntGaugeVec("hestyna_obsd_allocator_bytes", "Heap the allocator has handed out (state=allocated), the pages holding it (active), its own bookkeeping (metadata) and its pages resident in memory (resident: active, metadata and freed pages not yet returned), at the last scrape; jemalloc builds only.", ["state"]);
    /// Bytes librdkafka has fetched ahead for a pipeline and not yet handed over.
    consumer_prefetched_bytes: IntGaugeVec("hestyna_obsd_consumer_prefetched_bytes", "Record bytes librdkafka holds fetched ahead for the pipeline's consumer, not yet handed to it, at its last statistics (part of allocator_bytes: jemalloc serves librdkafka's malloc too).", ["pipeline"]);
    /// 1 once a pipeline's consumer has its first assignment (file and generator sources: at start).
    pipeline_ready: IntGaugeVec("hestyna_obsd_pipeline_ready", "1 while the pipeline's consumer has had its first partition assignment and reaches a Kafka broker; 0 before, and while every broker is out of reach.", ["pipeline"]);
}

/// `hestyna_obsd_build_info{version, commit, allocator}`, always 1.
fn register_build_info(r: &Registry) {
    let info = <IntGaugeVec as Make>::register(
        r,
        "hestyna_obsd_build_info",
        "Build of the running daemon; always 1.",
        &["version", "commit", "allocator"],
        None,
    );
    info.with_label_values(&[env!("CARGO_PKG_VERSION"), BUILD_COMMIT, alloc::NAME])
        .set(1);
}

/// The commit the daemon was built from (`build.rs`), or `unknown`.
pub const BUILD_COMMIT: &str = match option_env!("HESTYNA_OBSD_COMMIT") {
    Some(commit) => commit,
    None => "unknown",
};

impl SelfMetrics {
    /// Appends every self metric in `format` (without the OpenMetrics `# EOF`).
    pub fn render(&self, out: &mut String, format: Format) {
        let mut w = Writer::new(out, format);
        for family in self.registry.gather() {
            let kind = match family.get_field_type() {
                MetricType::COUNTER => FamilyType::Counter,
                MetricType::GAUGE => FamilyType::Gauge,
                MetricType::HISTOGRAM => FamilyType::Histogram,
                // Only counters, gauges and histograms are registered.
                _ => continue,
            };
            let name = family.name();
            w.family(name, family.help(), kind);
            for metric in family.get_metric() {
                let labels: Vec<(&str, &str)> = metric
                    .get_label()
                    .iter()
                    .map(|l| (l.name(), l.value()))
                    .collect();
                match kind {
                    FamilyType::Histogram => {
                        let h = metric.get_histogram();
                        let bucket = format!("{name}_bucket");
                        for b in h.get_bucket() {
                            let le = format_value(b.upper_bound());
                            w.sample(
                                &bucket,
                                &labels,
                                Some(("le", &le)),
                                &b.cumulative_count().to_string(),
                            );
                        }
                        let count = h.get_sample_count().to_string();
                        w.sample(&bucket, &labels, Some(("le", "+Inf")), &count);
                        w.sample(
                            &format!("{name}_sum"),
                            &labels,
                            None,
                            &format_value(h.get_sample_sum()),
                        );
                        w.sample(&format!("{name}_count"), &labels, None, &count);
                    }
                    FamilyType::Counter => w.sample(
                        name,
                        &labels,
                        None,
                        &format_value(metric.get_counter().get_value()),
                    ),
                    _ => w.sample(
                        name,
                        &labels,
                        None,
                        &format_value(metric.get_gauge().get_value()),
                    ),
                }
            }
        }
    }
}

impl Default for SelfMetrics {
    fn default() -> Self {
        Self::new()
    }
}
