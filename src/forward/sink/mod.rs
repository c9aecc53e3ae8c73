//! Sinks: where forwarded documents go.
//!
//! A sink takes a whole batch and answers once it is safe at the destination. A retriable failure
//! (connection refused, disk full, 503) makes the pipeline retry the batch with backoff, holding its
//! offsets back (Kafka is the buffer); a record rejected for good is dead-lettered by the pipeline, never
//! dropped. Later sinks (HTTP, syslog, Kafka) implement the same trait.

mod file;

pub use file::{AppendFile, FileSink, StdoutSink};

use crate::config::SinkConfig;
use crate::forward::Document;
use std::future::Future;
use std::pin::Pin;

/// A boxed future of a sink's answer.
pub type SinkFuture<'a> = Pin<Box<dyn Future<Output = Result<(), SinkError>> + Send + 'a>>;

/// A SIEM destination.
pub trait Sink: Send + Sync {
    /// The configured name (a label of self metrics).
    fn name(&self) -> &str;
    /// Delivers every document of the batch. `Ok` means all were accepted; `Rejected` names the ones
    /// refused for good (the rest were accepted).
    fn send<'a>(&'a self, batch: &'a [Document]) -> SinkFuture<'a>;
}

/// How a delivery failed.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// Worth retrying: nothing of the batch is known to be accepted.
    #[error("{0}")]
    Retriable(String),
    /// These documents (indices into the batch) were refused and will never be accepted; the others were.
    #[error("{} record(s) rejected: {}", .0.len(), .0.first().map(|r| r.1.as_str()).unwrap_or(""))]
    Rejected(Vec<(usize, String)>),
}

/// Why a sink could not be built.
#[derive(Debug, thiserror::Error)]
pub enum SinkBuildError {
    #[error("sink {name}: cannot open {path}: {source}")]
    Open {
        name: String,
        path: String,
        source: std::io::Error,
    },
}

/// Builds every configured sink.
pub fn build_sinks(
    configs: &std::collections::BTreeMap<String, SinkConfig>,
) -> Result<Vec<Box<dyn Sink>>, SinkBuildError> {
    configs
        .iter()
        .map(|(name, config)| -> Result<Box<dyn Sink>, SinkBuildError> {
            Ok(match config {
                SinkConfig::File { path } => Box::new(FileSink::open(name, path).map_err(
                    |source| SinkBuildError::Open {
                        name: name.clone(),
                        path: path.display().to_string(),
                        source,
                    },
                )?),
                SinkConfig::Stdout {} => Box::new(StdoutSink::new(name)),
            })
        })
        .collect()
}

/// Encodes a batch as JSON lines.
pub fn encode_jsonl(batch: &[Document]) -> Vec<u8> {
    let mut out = Vec::with_capacity(batch.len() * 512);
    for doc in batch {
        serde_json::to_writer(&mut out, doc).expect("writing JSON to a Vec cannot fail");
        out.push(b'\n');
    }
    out
}
