//! Rules as data (`[[metrics.rules]]`), and the default Hestyna set.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The Prometheus type of a derived series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricKind {
    /// Counts matching events, or adds up a numeric field.
    Counter,
    /// Observes a value into buckets.
    Histogram,
}

/// The unit a numeric field is in; values are converted to seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    /// Seconds (no conversion).
    S,
    /// Milliseconds.
    Ms,
    /// Microseconds.
    Us,
    /// Nanoseconds.
    Ns,
}

impl Unit {
    /// How many of this unit make a second.
    pub fn per_second(self) -> f64 {
        match self {
            Unit::S => 1.0,
            Unit::Ms => 1e3,
            Unit::Us => 1e6,
            Unit::Ns => 1e9,
        }
    }
}

/// Where a rule's value comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ValueSpec {
    /// A numeric field, converted from `unit` to seconds when given.
    Field(FieldValue),
    /// The time from one timestamp field to another, in seconds.
    Duration(DurationValue),
}

/// `value = { field = "latency_ms", unit = "ms" }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldValue {
    /// The numeric field.
    pub field: String,
    /// The field's unit; the value is converted to seconds. Absent: taken as is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<Unit>,
}

/// `value = { duration_from = "intake_at", duration_to = "occurred_at" }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DurationValue {
    /// The earlier timestamp field.
    pub duration_from: String,
    /// The later timestamp field.
    pub duration_to: String,
}

/// Where a label's value comes from: a field name, or a field with a value for when it is absent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum LabelSource {
    /// The field's value; empty when absent.
    Field(String),
    /// `{ field = "failure_reason", default = "unspecified" }`.
    WithDefault(LabelWithDefault),
}

/// A label from a field, with a default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabelWithDefault {
    /// The field.
    pub field: String,
    /// The value when the event has no such field.
    pub default: String,
}

impl LabelSource {
    /// The field's name.
    pub fn field(&self) -> &str {
        match self {
            LabelSource::Field(f) => f,
            LabelSource::WithDefault(l) => &l.field,
        }
    }

    /// The value for an absent field.
    pub fn default_value(&self) -> &str {
        match self {
            LabelSource::Field(_) => "",
            LabelSource::WithDefault(l) => &l.default,
        }
    }
}

/// A sliding window of exact quantiles (hdrhistogram) kept beside a histogram rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowSpec {
    /// The gauge family: `<name>{<rule's labels>,quantile="0.95"}`.
    pub name: String,
    /// The window's length in seconds.
    #[serde(default = "default_window_seconds")]
    pub seconds: u64,
    /// Slices the window is kept in; the oldest slice is dropped as time moves on.
    #[serde(default = "default_window_slices")]
    pub slices: u32,
    /// The quantiles exposed, each in (0, 1].
    #[serde(default = "default_quantiles")]
    pub quantiles: Vec<f64>,
    /// Significant decimal digits kept (1 to 5).
    #[serde(default = "default_significant_digits")]
    pub significant_digits: u8,
    /// The smallest difference told apart, in the value's unit (seconds): 0.001 keeps milliseconds.
    #[serde(default = "default_resolution")]
    pub resolution: f64,
    /// At most this many windowed series (each costs tens of KiB); more are folded into `__overflow__`.
    #[serde(default = "default_window_series")]
    pub max_series: usize,
}

fn default_window_seconds() -> u64 {
    300
}
fn default_window_slices() -> u32 {
    5
}
fn default_quantiles() -> Vec<f64> {
    vec![0.5, 0.95, 0.99]
}
fn default_significant_digits() -> u8 {
    3
}
fn default_resolution() -> f64 {
    0.001
}
fn default_window_series() -> usize {
    500
}

/// A rule's series budget per organization: `max_series_per_organization`, or a quarter of
/// `max_series`.
pub fn organization_budget(max_series: usize, explicit: Option<usize>) -> usize {
    explicit.unwrap_or(max_series / 4).max(1)
}

/// The default series limit of a rule.
pub const DEFAULT_MAX_SERIES: usize = 10_000;
/// The default length limit of a label value, in bytes.
pub const DEFAULT_MAX_LABEL_LENGTH: usize = 128;

fn default_max_series() -> usize {
    DEFAULT_MAX_SERIES
}
fn default_max_label_length() -> usize {
    DEFAULT_MAX_LABEL_LENGTH
}
fn is_default_max_series(v: &usize) -> bool {
    *v == DEFAULT_MAX_SERIES
}
fn is_default_max_label_length(v: &usize) -> bool {
    *v == DEFAULT_MAX_LABEL_LENGTH
}
fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// One derived series family (or, with `const_labels`, a share of one: several rules may feed the same
/// metric name when they agree on type, help, label names and buckets).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    /// The metric name (counters end in `_total`).
    pub name: String,
    /// The `# HELP` text.
    pub help: String,
    /// `counter` or `histogram`.
    #[serde(rename = "type")]
    pub kind: MetricKind,
    /// The event type it applies to: `llm_run`, `integration_call`, `automation_run`, `request_lifecycle`.
    pub event_type: String,
    /// Only events whose field has one of these values: field -> allowed values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub when: BTreeMap<String, Vec<String>>,
    /// Label name -> where its value comes from.
    pub labels: BTreeMap<String, LabelSource>,
    /// Labels with a fixed value (`kind = "prompt"`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub const_labels: BTreeMap<String, String>,
    /// The value: absent for a counter of events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<ValueSpec>,
    /// Histogram bucket upper bounds, ascending (`+Inf` is implied).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub buckets: Vec<f64>,
    /// At most this many series; further label sets are folded into one `__overflow__` series.
    #[serde(
        default = "default_max_series",
        skip_serializing_if = "is_default_max_series"
    )]
    pub max_series: usize,
    /// At most this many of the rule's series for one organization (when it has an `organization`
    /// label); an organization past it has its further label sets folded into its own overflow series
    /// (`organization` kept, every other label `__overflow__`), so one tenant cannot push the others'
    /// new series into the overflow. Unset: a quarter of `max_series` (at least 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_series_per_organization: Option<usize>,
    /// Label values longer than this many bytes are cut (at a character boundary).
    #[serde(
        default = "default_max_label_length",
        skip_serializing_if = "is_default_max_label_length"
    )]
    pub max_label_length: usize,
    /// Remove a series not changed for this many seconds (0: never). A series that comes back starts
    /// from zero, which Prometheus reads as a counter reset.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub expire_after_secs: u64,
    /// Exact quantiles over a sliding window (histograms only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<WindowSpec>,
    /// Event fields written as an exemplar of the latest observation of each histogram bucket (of the
    /// series, for a counter) on OpenMetrics scrapes, e.g. `["trace_id", "run_id"]`: the way from a
    /// latency spike to the run and its trace. An exemplar's labels are cut to 128 characters in all
    /// (OpenMetrics' limit). Empty: no exemplars, and no cost.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exemplar: Vec<String>,
}

/// Latency buckets in seconds; 6 s (the guide's P95 objective) is an edge.
pub const LLM_LATENCY_BUCKETS: &[f64] = &[
    0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 15.0, 30.0, 60.0,
];

/// Automation durations in seconds.
pub const AUTOMATION_DURATION_BUCKETS: &[f64] = &[
    0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
];

/// Resolution buckets in seconds: a minute to a week.
pub const RESOLUTION_BUCKETS: &[f64] = &[
    60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0, 28800.0, 86400.0, 172800.0, 345600.0,
    604800.0,
];

fn rule(name: &str, help: &str, kind: MetricKind, event_type: &str, labels: &[&str]) -> RuleSpec {
    RuleSpec {
        name: name.into(),
        help: help.into(),
        kind,
        event_type: event_type.into(),
        when: BTreeMap::new(),
        labels: labels
            .iter()
            .map(|l| (l.to_string(), LabelSource::Field(l.to_string())))
            .collect(),
        const_labels: BTreeMap::new(),
        value: None,
        buckets: Vec::new(),
        max_series: DEFAULT_MAX_SERIES,
        max_series_per_organization: None,
        max_label_length: DEFAULT_MAX_LABEL_LENGTH,
        expire_after_secs: 0,
        window: None,
        exemplar: Vec::new(),
    }
}

fn exemplar(fields: &[&str]) -> Vec<String> {
    fields.iter().map(|f| f.to_string()).collect()
}

fn when(field: &str, values: &[&str]) -> BTreeMap<String, Vec<String>> {
    [(
        field.to_string(),
        values.iter().map(|v| v.to_string()).collect(),
    )]
    .into()
}

fn field(name: &str, unit: Option<Unit>) -> Option<ValueSpec> {
    Some(ValueSpec::Field(FieldValue {
        field: name.into(),
        unit,
    }))
}

/// The series of the Hestyna observability guide (every one with `organization`).
///
/// Longer than a screen for a reason: it is a table, one rule per entry, read top to bottom like
/// `config/default.toml`'s list; splitting it would only scatter the rule set.
pub fn default_rules() -> Vec<RuleSpec> {
    use MetricKind::{Counter, Histogram};
    let tokens = |kind: &str, source: &str| RuleSpec {
        const_labels: [("kind".to_string(), kind.to_string())].into(),
        value: field(source, None),
        ..rule(
            "hestyna_llm_tokens_total",
            "LLM tokens by intent and kind (prompt, completion); average tokens = tokens / runs.",
            Counter,
            "llm_run",
            &["organization", "intent"],
        )
    };
    vec![
        rule(
            "hestyna_llm_runs_total",
            "LLM runs by intent and outcome.",
            Counter,
            "llm_run",
            &["organization", "intent", "outcome"],
        ),
        RuleSpec {
            value: field("latency_ms", Some(Unit::Ms)),
            buckets: LLM_LATENCY_BUCKETS.to_vec(),
            exemplar: exemplar(&["trace_id", "run_id"]),
            window: Some(WindowSpec {
                name: "hestyna_llm_latency_window_seconds".into(),
                seconds: default_window_seconds(),
                slices: default_window_slices(),
                quantiles: default_quantiles(),
                significant_digits: default_significant_digits(),
                resolution: default_resolution(),
                max_series: default_window_series(),
            }),
            ..rule(
                "hestyna_llm_latency_seconds",
                "Model latency of LLM runs; the P95 objective is 6 seconds.",
                Histogram,
                "llm_run",
                &["organization", "intent"],
            )
        },
        tokens("prompt", "tokens_prompt"),
        tokens("completion", "tokens_completion"),
        RuleSpec {
            when: when("outcome", &["failure", "timeout"]),
            exemplar: exemplar(&["trace_id", "run_id"]),
            labels: [
                (
                    "organization".to_string(),
                    LabelSource::Field("organization".into()),
                ),
                ("intent".to_string(), LabelSource::Field("intent".into())),
                (
                    "reason".to_string(),
                    LabelSource::WithDefault(LabelWithDefault {
                        field: "failure_reason".into(),
                        default: "unspecified".into(),
                    }),
                ),
            ]
            .into(),
            ..rule(
                "hestyna_llm_failures_total",
                "Failed or timed-out LLM runs by reason.",
                Counter,
                "llm_run",
                &[],
            )
        },
        rule(
            "hestyna_integration_calls_total",
            "Integration calls by integration slug and outcome.",
            Counter,
            "integration_call",
            &["organization", "integration", "outcome"],
        ),
        RuleSpec {
            when: when("outcome", &["failure"]),
            exemplar: exemplar(&["trace_id", "automation_id"]),
            ..rule(
                "hestyna_integration_failures_total",
                "Failed calls per integration slug.",
                Counter,
                "integration_call",
                &["organization", "integration"],
            )
        },
        rule(
            "hestyna_automation_runs_total",
            "Automation runs per automation version and outcome.",
            Counter,
            "automation_run",
            &[
                "organization",
                "automation_id",
                "automation_version",
                "outcome",
            ],
        ),
        RuleSpec {
            value: field("duration_ms", Some(Unit::Ms)),
            buckets: AUTOMATION_DURATION_BUCKETS.to_vec(),
            exemplar: exemplar(&["trace_id", "automation_id"]),
            ..rule(
                "hestyna_automation_duration_seconds",
                "Automation run durations.",
                Histogram,
                "automation_run",
                &["organization", "automation_id"],
            )
        },
        RuleSpec {
            when: when("stage", &["resolved"]),
            value: Some(ValueSpec::Duration(DurationValue {
                duration_from: "intake_at".into(),
                duration_to: "occurred_at".into(),
            })),
            buckets: RESOLUTION_BUCKETS.to_vec(),
            exemplar: exemplar(&["trace_id", "request_id"]),
            ..rule(
                "hestyna_requests_resolution_seconds",
                "Request lifecycle from intake to resolution.",
                Histogram,
                "request_lifecycle",
                &["organization", "channel"],
            )
        },
    ]
}
