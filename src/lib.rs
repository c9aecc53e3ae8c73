//! hestyna-obsd: Hestyna's events in, Prometheus metrics and SIEM records out.
//!
//! The crate follows the data's path; each stage is a module of the same name (see ARCHITECTURE.md):
//!
//! - [`source`]: Kafka (a consumer group per pipeline), a JSONL file or stdin, or the synthetic generator;
//!   batches, acknowledgements and offsets.
//! - [`decode`]: bytes -> a validated [`decode::Event`], or an [`decode::Invalid`] with its reason.
//! - [`derive`]: events -> Prometheus series, by rules compiled into a plan.
//! - [`forward`]: events -> enriched JSON documents -> SIEM sinks.
//! - [`deadletter`]: where invalid (and rejected) records go, before their offsets are stored.
//! - [`pipeline`]: the metrics and forward pipelines that run those stages on each batch.
//! - [`produce`]: Kafka producing shared by the dead letters, the intake changelog and `generate`.
//! - [`http`]: `/metrics`, `/livez`, `/readyz`.
//! - [`config`], [`telemetry`], [`app`] (wiring and subcommands), [`cli`].

pub mod app;
pub mod bench;
pub mod cli;
pub mod config;
pub(crate) mod deadletter;
pub mod decode;
pub mod derive;
pub mod forward;
#[doc(hidden)]
pub mod fuzzing;
pub(crate) mod http;
pub(crate) mod lifecycle;
pub(crate) mod pipeline;
pub mod produce;
pub(crate) mod shared;
pub mod source;
pub(crate) mod telemetry;

pub use shared::alloc;
