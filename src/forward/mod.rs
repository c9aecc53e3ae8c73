//! Forward: events -> enriched, redacted JSON records -> every configured SIEM sink.
//!
//! [`enrich::Enricher`] writes the document security teams receive (with [`organizations`] for the
//! organization table); [`redact::Redactor`] takes secrets out of it; [`sink::Sink`]s frame and deliver
//! batches of [`Redacted`] documents (the only kind a sink takes). Batching, retries and acknowledgements are in `pipeline::deliver`.

pub mod enrich;
pub mod organizations;
pub mod redact;
pub mod sink;

pub use enrich::{original_json, Document, Enricher, HostInfo, Outcome};
pub use organizations::{LiveOrganizations, OrganizationTable};
pub use redact::{Redacted, Redactor};
pub use sink::{build_sink, Sink, SinkError};
