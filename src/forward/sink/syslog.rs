//! The syslog sink: RFC 5424 messages over TCP with octet-counting framing (RFC 6587), optionally over
//! TLS (RFC 5425).
//!
//! Each record is `<len> <PRI>1 <@timestamp> <host> <app> <pid> <msgid> - <JSON record>`: severity
//! warning for failures, error for invalid records, informational otherwise; MSGID `invalid` or
//! `event`. TCP has no application acknowledgement: a batch counts as delivered once the kernel took all
//! of it. Before each batch the connection is checked for a close by the receiver (a restarted
//! receiver would otherwise swallow the next batch into a dead socket); any write error drops the
//! connection and the whole batch is sent again on a new one. What the receiver's kernel held when the
//! receiver died is lost: syslog over TCP cannot do better (RFC 5425 has no acknowledgements).

use super::{
    Delivery, Encoded, FailureClass, Sink, SinkBuildError, SinkError, SinkFuture, SinkInputs,
};
use crate::config::SyslogSinkConfig;
use crate::forward::{HostInfo, Outcome, Redacted};
use crate::shared::json::write_timestamp;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// An open connection.
enum Connection {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl Connection {
    fn writer(&mut self) -> &mut (dyn AsyncWrite + Unpin + Send) {
        match self {
            Connection::Plain(tcp) => tcp,
            Connection::Tls(tls) => tls.as_mut(),
        }
    }

    fn tcp(&self) -> &TcpStream {
        match self {
            Connection::Plain(tcp) => tcp,
            Connection::Tls(tls) => tls.get_ref().0,
        }
    }

    /// Whether the receiver has closed its end. A receiver sends nothing (bar TLS records, which are
    /// peeked at, not consumed), so end-of-stream or an error means the connection is gone: writing
    /// to it would "succeed" into the kernel and be lost.
    fn closed(&self) -> bool {
        // The socket is non-blocking (tokio's), so this peek answers at once.
        let mut byte = [std::mem::MaybeUninit::<u8>::uninit(); 1];
        match socket2::SockRef::from(self.tcp()).peek(&mut byte) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
        }
    }
}

/// A syslog sink.
pub struct SyslogSink {
    name: String,
    address: String,
    tls: Option<(
        tokio_rustls::TlsConnector,
        rustls::pki_types::ServerName<'static>,
    )>,
    facility: u8,
    /// ` <host> <app> <pid> ` with the spaces.
    header_middle: Vec<u8>,
    connect_timeout: Duration,
    write_timeout: Duration,
    connection: tokio::sync::Mutex<Option<Connection>>,
}

/// A header field: printable ASCII without spaces, at most `max` long; `-` when empty.
fn header_field(value: Option<&str>, max: usize) -> String {
    let cleaned: String = value
        .unwrap_or("")
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(max)
        .collect();
    if cleaned.is_empty() {
        "-".into()
    } else {
        cleaned
    }
}

impl SyslogSink {
    /// Prepares the sink; connects at the first batch.
    pub fn new(
        name: &str,
        c: &SyslogSinkConfig,
        inputs: SinkInputs,
        host: &HostInfo,
    ) -> Result<Self, SinkBuildError> {
        let tls = match (&c.tls, inputs.tls) {
            (Some(tls), Some(config)) => {
                let host_part = c
                    .address
                    .rsplit_once(':')
                    .map(|(h, _)| h.trim_start_matches('[').trim_end_matches(']'))
                    .unwrap_or(&c.address);
                let server = tls.server_name.as_deref().unwrap_or(host_part).to_owned();
                let server = rustls::pki_types::ServerName::try_from(server)
                    .map_err(|e| SinkBuildError::setup(name, format!("server name: {e}")))?;
                Some((tokio_rustls::TlsConnector::from(Arc::new(config)), server))
            }
            _ => None,
        };
        let header_middle = format!(
            " {} {} {} ",
            header_field(host.host.as_deref(), 255),
            header_field(Some(&c.app_name), 48),
            std::process::id()
        )
        .into_bytes();
        Ok(SyslogSink {
            name: name.to_owned(),
            address: c.address.clone(),
            tls,
            facility: c.facility,
            header_middle,
            connect_timeout: c.connect_timeout,
            write_timeout: c.write_timeout,
            connection: tokio::sync::Mutex::new(None),
        })
    }

    async fn connect(&self) -> Result<Connection, SinkError> {
        let connect = TcpStream::connect(&self.address);
        let tcp = self
            .timed("connecting to", FailureClass::Connect, connect)
            .await?;
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            None => Ok(Connection::Plain(tcp)),
            Some((connector, server)) => {
                let handshake = connector.connect(server.clone(), tcp);
                let tls = self.timed("TLS handshake with", FailureClass::Tls, handshake);
                Ok(Connection::Tls(Box::new(tls.await?)))
            }
        }
    }

    /// `step` within the connect timeout: a timeout, or its error as `class`.
    async fn timed<T>(
        &self,
        what: &str,
        class: FailureClass,
        step: impl std::future::Future<Output = std::io::Result<T>>,
    ) -> Result<T, SinkError> {
        let address = &self.address;
        match tokio::time::timeout(self.connect_timeout, step).await {
            Err(_) => Err(SinkError::new(
                FailureClass::Timeout,
                format!("{what} {address}"),
            )),
            Ok(Err(e)) => Err(SinkError::new(class, format!("{what} {address}: {e}"))),
            Ok(Ok(v)) => Ok(v),
        }
    }

    async fn deliver(&self, batch: &Encoded<'_>) -> Result<Delivery, SinkError> {
        let mut slot = self.connection.lock().await;
        if let Some(open) = slot.as_ref() {
            if open.closed() {
                *slot = None;
            }
        }
        if slot.is_none() {
            *slot = Some(self.connect().await?);
        }
        let stream = slot.as_mut().expect("connected above").writer();
        let written = tokio::time::timeout(self.write_timeout, async {
            stream.write_all(batch.body).await?;
            stream.flush().await
        })
        .await;
        match written {
            Ok(Ok(())) => Ok(Delivery::Accepted),
            Ok(Err(e)) => {
                *slot = None;
                Err(SinkError::new(
                    FailureClass::Io,
                    format!("{}: {e}", self.address),
                ))
            }
            Err(_) => {
                *slot = None;
                Err(SinkError::new(
                    FailureClass::Timeout,
                    format!("writing to {}", self.address),
                ))
            }
        }
    }
}

impl Sink for SyslogSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn encode(&self, doc: &Redacted, out: &mut Vec<u8>) {
        let severity = match doc.outcome {
            Outcome::Invalid => 3,
            Outcome::Failure => 4,
            _ => 6,
        };
        let msgid = if doc.outcome == Outcome::Invalid {
            "invalid"
        } else {
            "event"
        };
        let mut message = Vec::with_capacity(doc.json.len() + 96);
        write!(message, "<{}>1 ", self.facility as u16 * 8 + severity).expect("to a Vec");
        write_timestamp(&mut message, doc.timestamp);
        message.extend_from_slice(&self.header_middle);
        message.extend_from_slice(msgid.as_bytes());
        message.extend_from_slice(b" - ");
        message.extend_from_slice(&doc.json);
        write!(out, "{} ", message.len()).expect("to a Vec");
        out.extend_from_slice(&message);
    }

    fn send<'a>(&'a self, batch: &'a Encoded<'a>) -> SinkFuture<'a> {
        Box::pin(self.deliver(batch))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SyslogSinkConfig;
    use crate::forward::Document;

    #[test]
    fn frames_rfc5424_with_octet_counting() {
        let config: SyslogSinkConfig =
            toml::from_str("address = \"127.0.0.1:1\"\nfacility = 13\n").unwrap();
        let host = HostInfo {
            host: Some("node a".into()),
            ..HostInfo::default()
        };
        let sink = SyslogSink::new("s", &config, SinkInputs::default(), &host).unwrap();
        let doc = Redacted::assume(Document {
            json: "{\"m\":\"é\"}".as_bytes().to_vec(),
            event_id: "e".into(),
            organization: None,
            timestamp: chrono::DateTime::parse_from_rfc3339("2026-11-27T08:00:00.25Z")
                .unwrap()
                .with_timezone(&chrono::Utc),
            outcome: Outcome::Failure,
        });
        let mut out = Vec::new();
        sink.encode(&doc, &mut out);
        let text = String::from_utf8(out).unwrap();
        let (len, message) = text.split_once(' ').unwrap();
        assert_eq!(
            len.parse::<usize>().unwrap(),
            message.len(),
            "octet count in bytes"
        );
        assert_eq!(
            message,
            format!(
                "<108>1 2026-11-27T08:00:00.250Z nodea hestyna-obsd {} event - {{\"m\":\"é\"}}",
                std::process::id()
            )
        );
    }
}
