//! Derive: events -> Prometheus series.
//!
//! Every derived series is a [`RuleSpec`]: which events it applies to, which fields become labels, what
//! value it takes. Rules are compiled once at start into a [`Plan`] (field names resolved to accessors,
//! rules grouped by event type), so per event nothing is looked up by name. The [`Store`] holds the series
//! and renders them in the Prometheus text format, sorted, so the output is deterministic.

mod field;
mod plan;
mod rules;
mod store;

pub use field::Field;
pub use plan::{Plan, SkipReason};
pub use rules::{default_rules, MetricKind, RuleSpec, ValueSpec};
pub use store::{format_value, Store};

/// Why the rules cannot be compiled.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DeriveError {
    #[error("rule {rule:?}: {message}")]
    Rule { rule: String, message: String },
}
