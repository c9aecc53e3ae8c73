//! Sinks: where forwarded documents go.
//!
//! A sink knows two things: how to frame one document for its destination ([`Sink::encode`]), and how
//! to deliver a batch of framed documents and read the destination's answer ([`Sink::send`]). Batching,
//! retries with backoff, bisection of refused batches, dead-lettering and acknowledgements are the same
//! for every sink and live in `pipeline::deliver`.
//!
//! The answer is one of: all accepted; some refused for good and/or some to send again (Elasticsearch
//! bulk items, Kafka records); the whole request refused because of something in it (400, 413: the batch
//! is split to find the records at fault); the whole request refused for good (401, 403); or a retriable
//! failure (connection refused, timeout, 429, 5xx) after which nothing is known to be accepted.

mod file;
mod http;
mod kafka;
mod syslog;

pub use file::LineSink;
pub use http::HttpSink;
pub use kafka::KafkaSink;
pub use syslog::SyslogSink;

use crate::config::{ClientTlsConfig, KafkaConfig, SinkConfig};
use crate::forward::{HostInfo, Redacted};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// A batch of framed documents.
pub struct Encoded<'a> {
    /// The documents, in order.
    pub docs: &'a [&'a Redacted],
    /// Their framed bytes, concatenated.
    pub body: &'a [u8],
    /// `body[ends[i - 1]..ends[i]]` is document `i` (from 0 for the first).
    pub ends: &'a [usize],
}

impl Encoded<'_> {
    /// The framed bytes of document `i`.
    pub fn record(&self, i: usize) -> &[u8] {
        framed(self.body, self.ends, i)
    }

    /// How many documents.
    pub fn len(&self) -> usize {
        self.docs.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.docs.is_empty()
    }
}

/// The bounded class of a failure or refusal: the `class` label of the sink self metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureClass {
    /// Connecting failed.
    Connect,
    /// Connecting, the TLS handshake, a request or a write timed out.
    Timeout,
    /// The HTTP request failed otherwise.
    Request,
    /// The TLS handshake failed.
    Tls,
    /// Writing failed (file, stdout, syslog stream).
    Io,
    /// The Kafka producer delivered nothing of the batch.
    Kafka,
    /// The Kafka broker refused a record for its content.
    KafkaRecord,
    /// An HTTP status other than 2xx.
    Http(u16),
    /// The Elasticsearch bulk answer could not be read.
    BulkResponse,
    /// Elasticsearch refused one item of a bulk request.
    BulkItem,
    /// Splunk did not acknowledge the batch.
    HecAck,
    /// Some records of an answered batch are to be sent again.
    Partial,
}

impl FailureClass {
    /// The label value (`http_401`, `bulk_item`, ...). Statuses without a name of their own fold into
    /// `http_4xx`, `http_5xx` or `http_other`, so the label stays bounded.
    pub fn as_str(self) -> &'static str {
        const NAMED: &[(u16, &str)] = &[
            (400, "http_400"),
            (401, "http_401"),
            (403, "http_403"),
            (404, "http_404"),
            (408, "http_408"),
            (413, "http_413"),
            (422, "http_422"),
            (429, "http_429"),
            (500, "http_500"),
            (502, "http_502"),
            (503, "http_503"),
            (504, "http_504"),
        ];
        match self {
            FailureClass::Connect => "connect",
            FailureClass::Timeout => "timeout",
            FailureClass::Request => "request",
            FailureClass::Tls => "tls",
            FailureClass::Io => "io",
            FailureClass::Kafka => "kafka",
            FailureClass::KafkaRecord => "kafka_record",
            FailureClass::BulkResponse => "bulk_response",
            FailureClass::BulkItem => "bulk_item",
            FailureClass::HecAck => "hec_ack",
            FailureClass::Partial => "partial",
            FailureClass::Http(status) => match NAMED.iter().find(|(code, _)| *code == status) {
                Some((_, name)) => name,
                None if (300..400).contains(&status) => "http_3xx",
                None if (400..500).contains(&status) => "http_4xx",
                None if (500..600).contains(&status) => "http_5xx",
                None => "http_other",
            },
        }
    }

    /// Whether the destination refused our credentials (401, 403): the sink is not usable as configured.
    pub fn is_credentials(self) -> bool {
        matches!(self, FailureClass::Http(401 | 403))
    }

    /// Whether a failure of this class says the destination is down (a partial answer does not: it
    /// answered).
    pub fn means_down(self) -> bool {
        self != FailureClass::Partial
    }
}

impl std::fmt::Display for FailureClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Record `i` of framed bytes `body` whose records end at `ends` (`body[ends[i - 1]..ends[i]]`, from 0
/// for the first): the one place that slices a framed batch.
pub fn framed<'a>(body: &'a [u8], ends: &[usize], i: usize) -> &'a [u8] {
    let start = if i == 0 { 0 } else { ends[i - 1] };
    &body[start..ends[i]]
}

/// A refusal: a bounded class and details for humans.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// What kind of refusal.
    pub class: FailureClass,
    /// Details for humans.
    pub detail: String,
}

impl Refusal {
    /// A refusal of this class.
    pub fn new(class: FailureClass, detail: impl Into<String>) -> Self {
        Refusal {
            class,
            detail: detail.into(),
        }
    }
}

/// What the destination said about a batch it answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// Every document was accepted.
    Accepted,
    /// Documents (indices into the batch) refused for good, and documents to send again; the rest were
    /// accepted.
    Partial {
        /// Refused for good, with why.
        rejected: Vec<(usize, Refusal)>,
        /// To send again.
        retry: Vec<usize>,
    },
    /// The request was refused for something in it (400, 413): send the halves apart until the
    /// documents at fault stand alone; a single document refused so is rejected.
    Split(Refusal),
    /// The request was refused for good, whatever it held (401, 403, other 4xx).
    RejectedAll(Refusal),
}

/// A retriable failure: nothing of the batch is known to be accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{detail}")]
pub struct SinkError {
    /// What kind of failure.
    pub class: FailureClass,
    /// Details for humans.
    pub detail: String,
}

impl SinkError {
    /// A failure of this class.
    pub fn new(class: FailureClass, detail: impl Into<String>) -> Self {
        SinkError {
            class,
            detail: detail.into(),
        }
    }
}

/// A boxed future of a sink's answer.
pub type SinkFuture<'a> = Pin<Box<dyn Future<Output = Result<Delivery, SinkError>> + Send + 'a>>;

/// A SIEM destination.
pub trait Sink: Send + Sync {
    /// The configured name (a label of self metrics).
    fn name(&self) -> &str;
    /// Appends one document, framed for this destination.
    fn encode(&self, doc: &Redacted, out: &mut Vec<u8>);
    /// Delivers a batch.
    fn send<'a>(&'a self, batch: &'a Encoded<'a>) -> SinkFuture<'a>;
}

/// Why a sink could not be built.
#[derive(Debug, thiserror::Error)]
pub enum SinkBuildError {
    #[error("sink {name}: cannot open {path}: {source}")]
    /// The sink's file cannot be opened.
    Open {
        /// The sink.
        name: String,
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    #[error("sink {name}: {message}")]
    /// The sink's client cannot be set up.
    Setup {
        /// The sink.
        name: String,
        /// Why.
        message: String,
    },
}

impl SinkBuildError {
    fn setup(name: &str, message: impl std::fmt::Display) -> Self {
        SinkBuildError::Setup {
            name: name.to_owned(),
            message: message.to_string(),
        }
    }
}

/// What a sink's configuration names that must be read before the sink is built: its secret and its
/// TLS material. Read once, by [`SinkInputs::read`] (which `check-config` runs too); building a sink
/// reads nothing more.
#[derive(Default)]
pub struct SinkInputs {
    /// The HTTP sink's credential (`auth.secret`).
    pub secret: Option<String>,
    /// The TLS client configuration (HTTP sinks always; syslog sinks with `tls`).
    pub tls: Option<rustls::ClientConfig>,
    /// When the client certificate presented to the sink expires (Unix seconds), with one.
    pub certificate_expiry: Option<i64>,
}

impl SinkInputs {
    /// Reads what `config` names. Every fault, as (key path under the sink, message).
    pub fn read(config: &SinkConfig) -> Result<Self, Vec<(String, String)>> {
        let mut faults = Vec::new();
        let mut inputs = SinkInputs::default();
        let tls = match config {
            SinkConfig::Http(h) => {
                if let Some(secret) = &h.auth.secret {
                    match secret.read() {
                        Ok(s) => inputs.secret = Some(s),
                        Err(e) => faults.push(("auth.secret".to_owned(), e)),
                    }
                }
                Some(&h.tls)
            }
            SinkConfig::Syslog(s) => s.tls.as_ref(),
            _ => None,
        };
        if let Some(tls) = tls {
            match tls_client_config(tls) {
                Ok((c, expiry)) => (inputs.tls, inputs.certificate_expiry) = (Some(c), expiry),
                Err((key, e)) => faults.push((format!("tls.{key}"), e)),
            }
        }
        match faults.is_empty() {
            true => Ok(inputs),
            false => Err(faults),
        }
    }
}

/// The TLS client configuration of a sink: the configured CA (else the system's roots) and optional
/// client certificate, and when that certificate expires. A fault names its key (`ca_file`,
/// `cert_file`, `key_file`).
fn tls_client_config(
    tls: &ClientTlsConfig,
) -> Result<(rustls::ClientConfig, Option<i64>), (&'static str, String)> {
    let roots = client_roots(tls.ca_file.as_deref()).map_err(|e| ("ca_file", e))?;
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| ("ca_file", e.to_string()))?
    .with_root_certificates(roots);
    let (Some(cert), Some(key)) = (&tls.cert_file, &tls.key_file) else {
        return Ok((builder.with_no_client_auth(), None));
    };
    let read = |k: &'static str, p: &std::path::Path| {
        std::fs::read(p).map_err(|e| (k, format!("{}: {e}", p.display())))
    };
    let chain = rustls_pemfile::certs(&mut read("cert_file", cert)?.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ("cert_file", format!("{}: {e}", cert.display())))?;
    let private = rustls_pemfile::private_key(&mut read("key_file", key)?.as_slice())
        .map_err(|e| ("key_file", format!("{}: {e}", key.display())))?
        .ok_or_else(|| ("key_file", format!("{}: no private key", key.display())))?;
    let expiry = chain
        .first()
        .and_then(|c| crate::shared::certificate_not_after(c));
    let config = builder
        .with_client_auth_cert(chain, private)
        .map_err(|e| ("key_file", e.to_string()))?;
    Ok((config, expiry))
}

/// Builds one configured sink from what [`SinkInputs::read`] read. `kafka` gives the cluster defaults
/// of kafka sinks; `host` names this host in syslog headers and HEC envelopes.
pub fn build_sink(
    name: &str,
    config: &SinkConfig,
    inputs: SinkInputs,
    kafka: &KafkaConfig,
    host: &HostInfo,
) -> Result<Box<dyn Sink>, SinkBuildError> {
    Ok(match config {
        SinkConfig::File(c) => {
            Box::new(
                LineSink::file(name, c).map_err(|source| SinkBuildError::Open {
                    name: name.to_owned(),
                    path: c.path.display().to_string(),
                    source,
                })?,
            )
        }
        SinkConfig::Stdout(_) => Box::new(LineSink::stdout(name)),
        SinkConfig::Http(c) => Box::new(HttpSink::new(name, c, inputs, host)?),
        SinkConfig::Syslog(c) => Box::new(SyslogSink::new(name, c, inputs, host)?),
        SinkConfig::Kafka(c) => Box::new(KafkaSink::new(name, c, kafka)?),
    })
}

/// Appends a document as one JSON line.
pub fn encode_line(doc: &Redacted, out: &mut Vec<u8>) {
    out.extend_from_slice(&doc.json);
    out.push(b'\n');
}

/// Loads the trust roots for a TLS client: the PEM file's certificates, or the system's.
pub(crate) fn client_roots(
    ca_file: Option<&std::path::Path>,
) -> Result<rustls::RootCertStore, String> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let pem = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
            for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
                let cert = cert.map_err(|e| format!("{}: {e}", path.display()))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
            }
            if roots.is_empty() {
                return Err(format!("{}: no certificate in it", path.display()));
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for cert in found.certs {
                let _ = roots.add(cert);
            }
        }
    }
    Ok(roots)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_cut_at_their_ends() {
        let doc = Redacted::assume(crate::forward::Document {
            json: b"{}".to_vec(),
            event_id: "e".into(),
            organization: None,
            timestamp: chrono::Utc::now(),
            outcome: crate::forward::Outcome::None,
        });
        let docs = [&doc, &doc, &doc];
        let batch = Encoded {
            docs: &docs,
            body: b"aabbbc",
            ends: &[2, 5, 6],
        };
        assert_eq!(batch.record(0), b"aa");
        assert_eq!(batch.record(1), b"bbb");
        assert_eq!(batch.record(2), b"c");
    }
}
