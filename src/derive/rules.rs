//! Rules as data, and the default Hestyna set.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The Prometheus type of a derived series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricKind {
    /// Counts matching events, or adds up a field.
    Counter,
    /// Observes a value into buckets.
    Histogram,
}

/// Where a rule's value comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, untagged)]
pub enum ValueSpec {
    /// A numeric field, multiplied by `scale` (0.001 turns milliseconds into seconds).
    Field {
        /// The field's name.
        field: String,
        /// Factor applied to the field's value.
        #[serde(default = "one")]
        scale: f64,
    },
    /// The time from one timestamp field to another, in seconds.
    Duration {
        /// The earlier timestamp field.
        duration_from: String,
        /// The later timestamp field.
        duration_to: String,
    },
}

fn one() -> f64 {
    1.0
}

/// One derived series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    /// The metric name (`hestyna_...`; counters end in `_total`).
    pub name: String,
    /// The `# HELP` text.
    pub help: String,
    /// Counter or histogram.
    pub kind: MetricKind,
    /// The event type it applies to (`llm_run`, `integration_call`, `automation_run`, `request_lifecycle`).
    pub event_type: String,
    /// Only events whose field has one of these values (field name -> allowed values).
    #[serde(default)]
    pub when: BTreeMap<String, Vec<String>>,
    /// Label name -> the field that gives its value. An absent optional field gives an empty value.
    pub labels: BTreeMap<String, String>,
    /// The value; absent for a counter of events.
    #[serde(default)]
    pub value: Option<ValueSpec>,
    /// Histogram bucket upper bounds, ascending (`+Inf` is implied).
    #[serde(default)]
    pub buckets: Vec<f64>,
}

fn labels(pairs: &[&str]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|name| (name.to_string(), name.to_string()))
        .collect()
}

/// Latency buckets in seconds; 6 s (the guide's P95 objective) is an edge.
pub const LLM_LATENCY_BUCKETS: &[f64] = &[
    0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 15.0, 30.0, 60.0,
];

/// Resolution buckets in seconds: a minute to a week.
pub const RESOLUTION_BUCKETS: &[f64] = &[
    60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0, 28800.0, 86400.0, 172800.0, 345600.0,
    604800.0,
];

/// The series of the Hestyna observability guide.
pub fn default_rules() -> Vec<RuleSpec> {
    vec![
        RuleSpec {
            name: "hestyna_llm_runs_total".into(),
            help: "LLM runs by intent and outcome.".into(),
            kind: MetricKind::Counter,
            event_type: "llm_run".into(),
            when: BTreeMap::new(),
            labels: labels(&["organization", "intent", "outcome"]),
            value: None,
            buckets: vec![],
        },
        RuleSpec {
            name: "hestyna_llm_latency_seconds".into(),
            help: "Model latency of LLM runs; the P95 objective is 6 seconds.".into(),
            kind: MetricKind::Histogram,
            event_type: "llm_run".into(),
            when: BTreeMap::new(),
            labels: labels(&["organization", "intent"]),
            value: Some(ValueSpec::Field {
                field: "latency_ms".into(),
                scale: 0.001,
            }),
            buckets: LLM_LATENCY_BUCKETS.to_vec(),
        },
        RuleSpec {
            name: "hestyna_integration_failures_total".into(),
            help: "Failed integration calls per integration slug.".into(),
            kind: MetricKind::Counter,
            event_type: "integration_call".into(),
            when: [("outcome".to_string(), vec!["failure".to_string()])].into(),
            labels: labels(&["organization", "integration"]),
            value: None,
            buckets: vec![],
        },
        RuleSpec {
            name: "hestyna_automation_runs_total".into(),
            help: "Automation runs per automation version.".into(),
            kind: MetricKind::Counter,
            event_type: "automation_run".into(),
            when: BTreeMap::new(),
            labels: labels(&["organization", "automation_id", "automation_version"]),
            value: None,
            buckets: vec![],
        },
        RuleSpec {
            name: "hestyna_requests_resolution_seconds".into(),
            help: "Request lifecycle from intake to resolution.".into(),
            kind: MetricKind::Histogram,
            event_type: "request_lifecycle".into(),
            when: [("stage".to_string(), vec!["resolved".to_string()])].into(),
            labels: labels(&["organization"]),
            value: Some(ValueSpec::Duration {
                duration_from: "intake_at".into(),
                duration_to: "occurred_at".into(),
            }),
            buckets: RESOLUTION_BUCKETS.to_vec(),
        },
    ]
}
