//! What the span exporter counts, process-wide (there is one tracer provider per process); every
//! [`SelfMetrics`](crate::telemetry::SelfMetrics) registry shows the same counters.

use prometheus::{IntCounter, IntCounterVec, Opts, Registry};
use std::sync::LazyLock;

/// Why spans were not exported.
#[derive(Debug, Clone, Copy)]
pub enum Dropped {
    /// The export queue was full.
    QueueFull,
    /// They ended after the exporter had shut down.
    Shutdown,
    /// Their export request failed or timed out.
    ExportFailed,
}

impl Dropped {
    /// Every reason, in label order.
    pub const ALL: [Dropped; 3] = [Dropped::QueueFull, Dropped::Shutdown, Dropped::ExportFailed];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Dropped::QueueFull => "queue_full",
            Dropped::Shutdown => "shutdown",
            Dropped::ExportFailed => "export_failed",
        }
    }
}

/// The exporter's counters.
pub struct Stats {
    export_failures: IntCounter,
    spans_exported: IntCounter,
    spans_dropped: IntCounterVec,
    links_dropped: IntCounter,
}

const VALID: &str = "the OTLP counters are valid";

/// The process's counters.
pub static STATS: LazyLock<Stats> = LazyLock::new(|| {
    let stats = Stats {
        export_failures: IntCounter::new(
            "hestyna_obsd_otlp_export_failures_total",
            "OTLP span export requests that failed or timed out; their spans are dropped.",
        )
        .expect(VALID),
        spans_exported: IntCounter::new(
            "hestyna_obsd_otlp_spans_exported_total",
            "Spans the OTLP collector accepted.",
        )
        .expect(VALID),
        spans_dropped: IntCounterVec::new(
            Opts::new(
                "hestyna_obsd_otlp_spans_dropped_total",
                "Spans not exported, by reason (queue_full, shutdown, export_failed).",
            ),
            &["reason"],
        )
        .expect(VALID),
        links_dropped: IntCounter::new(
            "hestyna_obsd_otlp_span_links_dropped_total",
            "Links to events' trace contexts cut from batch spans past telemetry.tracing.max_links_per_span.",
        )
        .expect(VALID),
    };
    for reason in Dropped::ALL {
        stats.spans_dropped.with_label_values(&[reason.as_str()]);
    }
    stats
});

/// The names of the counters, for [`SelfMetrics::NAMES`](crate::telemetry::SelfMetrics::NAMES).
pub const NAMES: [&str; 4] = [
    "hestyna_obsd_otlp_export_failures_total",
    "hestyna_obsd_otlp_spans_exported_total",
    "hestyna_obsd_otlp_spans_dropped_total",
    "hestyna_obsd_otlp_span_links_dropped_total",
];

impl Stats {
    /// Adds the counters to a registry.
    pub fn register(&self, r: &Registry) {
        let collectors: [Box<dyn prometheus::core::Collector>; 4] = [
            Box::new(self.export_failures.clone()),
            Box::new(self.spans_exported.clone()),
            Box::new(self.spans_dropped.clone()),
            Box::new(self.links_dropped.clone()),
        ];
        for c in collectors {
            r.register(c).expect("self metric names are unique");
        }
    }

    /// `count` spans were not exported, for `reason`.
    pub fn dropped(&self, reason: Dropped, count: u64) {
        self.spans_dropped
            .with_label_values(&[reason.as_str()])
            .inc_by(count);
    }

    /// An export request of `count` spans failed.
    pub fn export_failed(&self, count: u64) {
        self.export_failures.inc();
        self.dropped(Dropped::ExportFailed, count);
    }

    /// An export request of `count` spans was accepted.
    pub fn exported(&self, count: u64) {
        self.spans_exported.inc_by(count);
    }

    /// `count` links were cut from a span.
    pub fn links_cut(&self, count: u64) {
        self.links_dropped.inc_by(count);
    }
}
