//! Derive: events -> Prometheus series.
//!
//! Every derived series is a [`RuleSpec`] (`[[metrics.rules]]` in the configuration; `config/default.toml`
//! ships the Hestyna set): which events it applies to, which fields become labels, what value it takes,
//! its buckets, series limit, expiry and optional window of exact quantiles. Rules are compiled once at
//! start into a [`Plan`] (field names resolved to accessors, rules grouped by event type, families
//! resolved), so per event nothing is looked up by name. The [`Store`] holds the series, folds label sets
//! past a rule's limit into one `__overflow__` series (totals stay exact), expires idle series, and renders
//! everything sorted, so the output is deterministic. [`join::IntakeJoin`] fills a `resolved` event's
//! missing `intake_at` from the `intake` seen earlier.

pub mod changelog;
mod field;
pub mod join;
mod plan;
mod prepared;
mod rules;
mod store;
mod window;

pub use crate::shared::exposition::{format_value, Format};
pub use crate::shared::gzip::{gzip, GzipStream};
pub use field::Field;
pub use plan::Plan;
pub use prepared::{Cursor, Prepared, SkipReason};
pub use rules::{default_rules, LabelSource, MetricKind, RuleSpec, Unit, ValueSpec, WindowSpec};
pub use store::{wall_clock, FamilyCounts, Scope, Snapshot, Store, TakenCounts, OVERFLOW};

/// Why a rule cannot be compiled.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("rule {name:?}: {key}: {message}")]
pub struct DeriveError {
    /// The rule's index in the rule list.
    pub rule: usize,
    /// The rule's name.
    pub name: String,
    /// The rule's key at fault (`labels.reason`, `buckets`, ...).
    pub key: String,
    /// What is wrong.
    pub message: String,
}
