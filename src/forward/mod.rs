//! Forward: valid events -> enriched JSON records -> every configured SIEM sink.
//!
//! [`enrich::Enricher`] turns a decoded event and its record into the document security teams receive;
//! [`sink::Sink`]s deliver a batch of documents and say when it is safe (the pipeline stores offsets only
//! after every sink accepted the batch).

pub mod enrich;
pub mod sink;

pub use enrich::{original_json, Document, Enricher, HostInfo};
pub use sink::{build_sinks, Sink, SinkError};
