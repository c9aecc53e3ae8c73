use crate::shared::exposition::{format_value, FamilyType, Format, Writer};
use prometheus::proto::MetricType;
use prometheus::{
    HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

/// The daemon's own metrics (`hestyna_obsd_*`), in their own registry.
pub struct SelfMetrics {
    registry: Registry,
    /// Records read, by pipeline and topic (`(file)` / `(generator)` for those sources).
    pub events_received: IntCounterVec,
    /// Records that broke the event contract, by pipeline and reason.
    pub events_invalid: IntCounterVec,
    /// Valid records a pipeline did not use, by pipeline and reason (`unknown_type`, ...).
    pub events_ignored: IntCounterVec,
    /// Events a metric rule matched but could not derive a value from, by metric and reason.
    pub rule_skipped: IntCounterVec,
    /// Records written to the dead-letter destination, by pipeline and reason.
    pub dead_letters: IntCounterVec,
    /// Failed attempts to write dead letters (retried), by pipeline.
    pub dead_letter_errors: IntCounterVec,
    /// Records accepted by a sink, by sink.
    pub sink_records: IntCounterVec,
    /// Framed bytes accepted by a sink (before compression), by sink.
    pub sink_bytes: IntCounterVec,
    /// Failed delivery attempts (the records are sent again), by sink and class.
    pub sink_retries: IntCounterVec,
    /// Records a sink refused for good (dead-lettered), by sink and class.
    pub sink_rejected: IntCounterVec,
    /// Duration of accepted sink requests, by sink.
    pub sink_batch_seconds: HistogramVec,
    /// 1 when the sink's last request was accepted; 0 after a failed one or refused credentials.
    pub sink_up: IntGaugeVec,
    /// Values replaced by redaction, by rule.
    pub redactions: IntCounterVec,
    /// Reloads of the organization table, by result.
    pub enrichment_reloads: IntCounterVec,
    /// Consumer lag against the stored offset, by pipeline, topic and partition.
    pub consumer_lag: IntGaugeVec,
    /// Partitions assigned to this instance, by pipeline.
    pub assigned_partitions: IntGaugeVec,
    /// Errors reported by the Kafka client, by pipeline.
    pub kafka_errors: IntCounterVec,
    /// Derived series currently held, by metric.
    pub derived_series: IntGaugeVec,
    /// Observations folded into a rule's `__overflow__` series, by metric.
    pub series_overflow: IntCounterVec,
    /// Label values cut to the length limit or cleaned of control characters, by metric.
    pub label_values_sanitized: IntCounterVec,
    /// Series removed after their rule's idle time, by metric.
    pub series_expired: IntCounterVec,
    /// `resolved` events whose intake time came from the intake join.
    pub intake_joined: IntCounter,
    /// Pending intakes dropped, by reason (`ttl`, `capacity`).
    pub intake_evicted: IntCounterVec,
    /// Pending intakes held.
    pub intake_pending: IntGauge,
    /// Refused requests to /metrics and /api/v1/quantiles, by reason.
    pub http_auth_failures: IntCounterVec,
    /// TLS handshakes that failed or timed out.
    pub tls_handshake_failures: IntCounter,
    /// Reloads of the web configuration file, by result.
    pub web_config_reloads: IntCounterVec,
}

/// Registers a metric and hands it back.
fn register<M: prometheus::core::Collector + Clone + 'static>(registry: &Registry, metric: M) -> M {
    registry
        .register(Box::new(metric.clone()))
        .expect("self metric names are unique");
    metric
}

fn counter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    register(
        registry,
        IntCounterVec::new(Opts::new(name, help), labels)
            .expect("self metric definitions are valid"),
    )
}

fn gauge(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    register(
        registry,
        IntGaugeVec::new(Opts::new(name, help), labels).expect("self metric definitions are valid"),
    )
}

impl SelfMetrics {
    /// Registers every self metric.
    pub fn new() -> Self {
        let r = Registry::new();
        let build_info = gauge(
            &r,
            "hestyna_obsd_build_info",
            "Build of the running daemon; always 1.",
            &["version", "commit"],
        );
        build_info
            .with_label_values(&[
                env!("CARGO_PKG_VERSION"),
                option_env!("HESTYNA_OBSD_COMMIT").unwrap_or("unknown"),
            ])
            .set(1);
        SelfMetrics {
            events_received: counter(
                &r,
                "hestyna_obsd_events_received_total",
                "Records read.",
                &["pipeline", "topic"],
            ),
            events_invalid: counter(
                &r,
                "hestyna_obsd_events_invalid_total",
                "Records that broke the event contract.",
                &["pipeline", "reason"],
            ),
            events_ignored: counter(
                &r,
                "hestyna_obsd_events_ignored_total",
                "Valid records a pipeline did not use.",
                &["pipeline", "reason"],
            ),
            rule_skipped: counter(
                &r,
                "hestyna_obsd_rule_skipped_total",
                "Events a metric rule matched but could not take a value from.",
                &["metric", "reason"],
            ),
            dead_letters: counter(
                &r,
                "hestyna_obsd_dead_letters_total",
                "Records written to the dead-letter destination.",
                &["pipeline", "reason"],
            ),
            dead_letter_errors: counter(
                &r,
                "hestyna_obsd_dead_letter_errors_total",
                "Failed attempts to write dead letters (retried).",
                &["pipeline"],
            ),
            sink_records: counter(
                &r,
                "hestyna_obsd_sink_records_total",
                "Records accepted by a sink.",
                &["sink"],
            ),
            sink_bytes: counter(
                &r,
                "hestyna_obsd_sink_bytes_total",
                "Framed bytes accepted by a sink, before compression.",
                &["sink"],
            ),
            sink_retries: counter(
                &r,
                "hestyna_obsd_sink_retries_total",
                "Failed sink delivery attempts; the records are sent again.",
                &["sink", "class"],
            ),
            sink_rejected: counter(
                &r,
                "hestyna_obsd_sink_rejected_total",
                "Records a sink refused for good; they are dead-lettered.",
                &["sink", "class"],
            ),
            sink_batch_seconds: register(
                &r,
                HistogramVec::new(
                    HistogramOpts::new(
                        "hestyna_obsd_sink_batch_duration_seconds",
                        "Duration of accepted sink requests.",
                    )
                    .buckets(vec![0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]),
                    &["sink"],
                )
                .expect("self metric definitions are valid"),
            ),
            sink_up: gauge(
                &r,
                "hestyna_obsd_sink_up",
                "1 when the sink's last request was accepted; 0 after a failed one or refused credentials.",
                &["sink"],
            ),
            redactions: counter(
                &r,
                "hestyna_obsd_redactions_total",
                "Values replaced by redaction.",
                &["rule"],
            ),
            enrichment_reloads: counter(
                &r,
                "hestyna_obsd_enrichment_reloads_total",
                "Reloads of the organization table.",
                &["result"],
            ),
            consumer_lag: gauge(
                &r,
                "hestyna_obsd_consumer_lag",
                "Records between the stored offset and the partition's high watermark.",
                &["pipeline", "topic", "partition"],
            ),
            assigned_partitions: gauge(
                &r,
                "hestyna_obsd_assigned_partitions",
                "Kafka partitions assigned to this instance.",
                &["pipeline"],
            ),
            kafka_errors: counter(
                &r,
                "hestyna_obsd_kafka_errors_total",
                "Errors reported by the Kafka client.",
                &["pipeline"],
            ),
            derived_series: gauge(
                &r,
                "hestyna_obsd_derived_series",
                "Derived series currently held.",
                &["metric"],
            ),
            series_overflow: counter(
                &r,
                "hestyna_obsd_series_overflow_total",
                "Observations folded into a rule's __overflow__ series once its series limit was reached.",
                &["metric"],
            ),
            label_values_sanitized: counter(
                &r,
                "hestyna_obsd_label_values_sanitized_total",
                "Label values cut to the length limit or cleaned of control characters.",
                &["metric"],
            ),
            series_expired: counter(
                &r,
                "hestyna_obsd_series_expired_total",
                "Series removed after their rule's idle time.",
                &["metric"],
            ),
            intake_joined: register(&r, IntCounter::new("hestyna_obsd_intake_joined_total", "Resolved events whose intake time came from the intake join.").expect("self metric definitions are valid")),
            intake_evicted: counter(
                &r,
                "hestyna_obsd_intake_evicted_total",
                "Pending intakes dropped from the join state.",
                &["reason"],
            ),
            intake_pending: register(&r, IntGauge::new("hestyna_obsd_intake_pending", "Pending intakes held by the intake join.").expect("self metric definitions are valid")),
            http_auth_failures: counter(
                &r,
                "hestyna_obsd_http_auth_failures_total",
                "Refused requests to /metrics and /api/v1/quantiles.",
                &["reason"],
            ),
            tls_handshake_failures: register(&r, IntCounter::new("hestyna_obsd_tls_handshake_failures_total", "TLS handshakes that failed or timed out.").expect("self metric definitions are valid")),
            web_config_reloads: counter(
                &r,
                "hestyna_obsd_web_config_reloads_total",
                "Reloads of the web configuration file.",
                &["result"],
            ),
            registry: r,
        }
    }

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
