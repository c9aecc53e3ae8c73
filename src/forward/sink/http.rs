//! The HTTP sink: NDJSON, Splunk HEC (with optional indexer acknowledgements) or Elasticsearch bulk.
//!
//! Answers: 2xx accepted (for bulk, item by item: 2xx accepted, 409 on `create` accepted as already
//! stored, 429/5xx sent again, any other status rejected); 408, 429 and 5xx retriable; 400, 413 and 422
//! "something in this batch" (split); 401, 403 and other 4xx rejected whole.

use super::{
    encode_line, Delivery, Encoded, FailureClass, Refusal, Sink, SinkBuildError, SinkError,
    SinkFuture, SinkInputs,
};
use crate::config::{
    BulkAction, Compression, HttpAuthConfig, HttpAuthKind, HttpEncoding, HttpSinkConfig,
    SplunkConfig,
};
use crate::forward::{HostInfo, Redacted};
use base64::Engine as _;
use reqwest::header::{
    HeaderMap, HeaderName, HeaderValue, AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE,
};
use std::io::Write;
use std::time::{Duration, Instant};

/// An HTTP sink.
pub struct HttpSink {
    name: String,
    client: reqwest::Client,
    url: reqwest::Url,
    encoding: HttpEncoding,
    compression: Compression,
    headers: HeaderMap,
    splunk: Option<Hec>,
    /// `{"<action>":{"_index":"<index>","_id":` (bulk).
    bulk_prefix: Vec<u8>,
    bulk_create: bool,
}

/// Splunk HEC state.
struct Hec {
    config: SplunkConfig,
    /// The envelope's fields before `"event":`.
    prefix_fields: Vec<u8>,
    ack_url: reqwest::Url,
}

/// `path` under the base URL's path.
fn joined(base: &reqwest::Url, path: &str) -> reqwest::Url {
    let mut url = base.clone();
    url.set_path(&format!("{}/{path}", base.path().trim_end_matches('/')));
    url
}

/// The `Authorization` value for the configured kind and secret (none for kind `none`).
fn authorization(auth: &HttpAuthConfig, secret: &str) -> Option<String> {
    match auth.kind {
        HttpAuthKind::None => None,
        HttpAuthKind::Bearer => Some(format!("Bearer {secret}")),
        HttpAuthKind::ApiKey => Some(format!("ApiKey {secret}")),
        HttpAuthKind::Splunk => Some(format!("Splunk {secret}")),
        HttpAuthKind::Basic => {
            let pair = format!("{}:{secret}", auth.user);
            let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
            Some(format!("Basic {encoded}"))
        }
    }
}

/// Every request's headers: the configured ones and the credential (both marked sensitive, so they are
/// never printed), the content type and encoding.
fn request_headers(c: &HttpSinkConfig, secret: Option<&str>) -> Result<HeaderMap, String> {
    let mut headers = HeaderMap::new();
    for (k, v) in &c.headers {
        let name = HeaderName::from_bytes(k.as_bytes()).map_err(|e| e.to_string())?;
        let mut value = HeaderValue::from_str(v).map_err(|e| format!("header {k}: {e}"))?;
        value.set_sensitive(true);
        headers.insert(name, value);
    }
    if let Some(v) = secret.and_then(|secret| authorization(&c.auth, secret)) {
        let mut value =
            HeaderValue::from_str(&v).map_err(|_| "the secret is not a valid header value")?;
        value.set_sensitive(true);
        headers.insert(AUTHORIZATION, value);
    }
    let content_type = match c.encoding {
        HttpEncoding::SplunkHec => "application/json",
        _ => "application/x-ndjson",
    };
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    if c.compression == Compression::Gzip {
        headers.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    Ok(headers)
}

impl Hec {
    /// The HEC settings: the envelope's fixed fields, the ack URL, and with acknowledgements a request
    /// channel (added to `headers`).
    fn new(
        s: &SplunkConfig,
        base: &reqwest::Url,
        host: &HostInfo,
        headers: &mut HeaderMap,
    ) -> Self {
        if s.indexer_acknowledgements {
            let channel = HeaderValue::from_str(&channel_id()).expect("hex and dashes");
            headers.insert(HeaderName::from_static("x-splunk-request-channel"), channel);
        }
        let mut prefix = Vec::new();
        if let Some(h) = &host.host {
            prefix.extend_from_slice(b",\"host\":");
            serde_json::to_writer(&mut prefix, h).expect("to a Vec");
        }
        for (key, value) in [
            ("source", &s.source),
            ("sourcetype", &s.sourcetype),
            ("index", &s.index),
        ] {
            if !value.is_empty() {
                write!(prefix, ",\"{key}\":").expect("to a Vec");
                serde_json::to_writer(&mut prefix, value).expect("to a Vec");
            }
        }
        Hec {
            config: s.clone(),
            prefix_fields: prefix,
            ack_url: joined(base, "services/collector/ack"),
        }
    }
}

impl HttpSink {
    /// Builds the client (TLS, timeouts, headers, credentials).
    pub fn new(
        name: &str,
        c: &HttpSinkConfig,
        inputs: SinkInputs,
        host: &HostInfo,
    ) -> Result<Self, SinkBuildError> {
        let setup = |e: &dyn std::fmt::Display| SinkBuildError::setup(name, e);
        let tls = inputs
            .tls
            .ok_or_else(|| setup(&"no TLS configuration was read"))?;
        let client = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .connect_timeout(c.connect_timeout)
            .timeout(c.request_timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .no_proxy()
            // A redirect would send the batch and its credentials somewhere else: a 3xx is a failure.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("hestyna-obsd/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| setup(&e))?;
        let base = reqwest::Url::parse(&c.url).map_err(|e| setup(&e))?;
        let url = match c.encoding {
            HttpEncoding::Ndjson => base.clone(),
            HttpEncoding::SplunkHec => joined(&base, "services/collector/event"),
            HttpEncoding::ElasticsearchBulk => joined(&base, "_bulk"),
        };
        let mut headers = request_headers(c, inputs.secret.as_deref()).map_err(|e| setup(&e))?;
        let splunk = (c.encoding == HttpEncoding::SplunkHec)
            .then(|| Hec::new(&c.splunk, &base, host, &mut headers));
        let action = match c.elasticsearch.action {
            BulkAction::Index => "index",
            BulkAction::Create => "create",
        };
        let mut bulk_prefix = format!("{{\"{action}\":{{\"_index\":").into_bytes();
        serde_json::to_writer(&mut bulk_prefix, &c.elasticsearch.index).expect("to a Vec");
        bulk_prefix.extend_from_slice(b",\"_id\":");
        Ok(HttpSink {
            name: name.to_owned(),
            client,
            url,
            encoding: c.encoding,
            compression: c.compression,
            headers,
            splunk,
            bulk_prefix,
            bulk_create: c.elasticsearch.action == BulkAction::Create,
        })
    }

    fn body(&self, batch: &Encoded<'_>) -> Vec<u8> {
        match self.compression {
            Compression::None => batch.body.to_vec(),
            Compression::Gzip => {
                let mut gz = flate2::write::GzEncoder::new(
                    Vec::with_capacity(batch.body.len() / 4),
                    flate2::Compression::default(),
                );
                gz.write_all(batch.body).expect("to a Vec");
                gz.finish().expect("to a Vec")
            }
        }
    }

    /// Posts `body` (compressed as configured if `batch`; the acknowledgement polls are not).
    async fn post(
        &self,
        url: &reqwest::Url,
        body: Vec<u8>,
        batch: bool,
    ) -> Result<(u16, Vec<u8>), SinkError> {
        let mut headers = self.headers.clone();
        if !batch {
            headers.remove(CONTENT_ENCODING);
        }
        let response = self
            .client
            .post(url.clone())
            .headers(headers)
            .body(body)
            .send()
            .await
            .map_err(request_error)?;
        let status = response.status().as_u16();
        if (300..400).contains(&status) {
            let location = response
                .headers()
                .get(reqwest::header::LOCATION)
                .map(|l| crate::shared::mask_url(&String::from_utf8_lossy(l.as_bytes())));
            return Err(SinkError::new(
                FailureClass::Http(status),
                format!(
                    "HTTP {status}: redirects are not followed (Location: {}); point the sink's url at the final address",
                    location.as_deref().unwrap_or("none")
                ),
            ));
        }
        Ok((status, bounded_body(response).await?))
    }

    async fn deliver(&self, batch: &Encoded<'_>) -> Result<Delivery, SinkError> {
        let (status, body) = self.post(&self.url, self.body(batch), true).await?;
        if let Some(answer) = classify(status, &body) {
            return answer;
        }
        match self.encoding {
            HttpEncoding::Ndjson => Ok(Delivery::Accepted),
            HttpEncoding::SplunkHec => self.await_hec_ack(&body).await,
            HttpEncoding::ElasticsearchBulk => bulk_answer(&body, batch.len(), self.bulk_create),
        }
    }

    /// With indexer acknowledgements: polls until Splunk says the batch is indexed.
    async fn await_hec_ack(&self, answer: &[u8]) -> Result<Delivery, SinkError> {
        let Some(hec) = self
            .splunk
            .as_ref()
            .filter(|h| h.config.indexer_acknowledgements)
        else {
            return Ok(Delivery::Accepted);
        };
        let ack_id = serde_json::from_slice::<serde_json::Value>(answer)
            .ok()
            .and_then(|v| v.get("ackId").and_then(|a| a.as_u64()))
            .ok_or_else(|| {
                SinkError::new(
                    FailureClass::HecAck,
                    format!(
                        "no ackId in the answer (is acknowledgement on for the token?): {}",
                        snippet(answer)
                    ),
                )
            })?;
        let deadline = Instant::now() + hec.config.ack_timeout;
        let poll = serde_json::to_vec(&serde_json::json!({ "acks": [ack_id] })).expect("JSON");
        loop {
            tokio::time::sleep(hec.config.ack_poll).await;
            if let Ok((200, body)) = self.post(&hec.ack_url, poll.clone(), false).await {
                let acked = serde_json::from_slice::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|v| {
                        v.pointer(&format!("/acks/{ack_id}"))
                            .and_then(|a| a.as_bool())
                    });
                if acked == Some(true) {
                    return Ok(Delivery::Accepted);
                }
            }
            if Instant::now() >= deadline {
                return Err(SinkError::new(
                    FailureClass::HecAck,
                    format!(
                        "ack {ack_id} not confirmed within {}s: sending again",
                        hec.config.ack_timeout.as_secs()
                    ),
                ));
            }
        }
    }
}

/// A random HEC channel id (UUID v4 form).
fn channel_id() -> String {
    let b: [u8; 16] = rand::random();
    let h = crate::shared::json::hex(&b);
    format!(
        "{}-{}-4{}-a{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

/// The most of an answer's body that is read: past it, the rest is not read (a bulk answer cut there
/// does not parse, and the batch is sent again).
const MAX_ANSWER_BYTES: usize = 4 << 20;

/// Reads at most [`MAX_ANSWER_BYTES`] of the body.
async fn bounded_body(mut response: reqwest::Response) -> Result<Vec<u8>, SinkError> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(request_error)? {
        let room = MAX_ANSWER_BYTES - body.len();
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if chunk.len() >= room {
            break;
        }
    }
    Ok(body)
}

fn request_error(e: reqwest::Error) -> SinkError {
    // reqwest's message quotes the URL, which may hold credentials; the sink's name says where.
    let e = e.without_url();
    let class = if e.is_timeout() {
        FailureClass::Timeout
    } else if e.is_connect() {
        FailureClass::Connect
    } else {
        FailureClass::Request
    };
    // The chain says why (refused, reset, certificate).
    let mut detail = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        detail.push_str(": ");
        detail.push_str(&s.to_string());
        source = s.source();
    }
    SinkError::new(class, detail)
}

fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(300)]);
    text.trim().to_owned()
}

/// The answer for any status but 2xx (`None`: 2xx, read the body).
fn classify(status: u16, body: &[u8]) -> Option<Result<Delivery, SinkError>> {
    let detail = || format!("HTTP {status}: {}", snippet(body));
    let class = FailureClass::Http(status);
    Some(match status {
        200..=299 => return None,
        408 | 429 | 500..=599 => Err(SinkError::new(class, detail())),
        400 | 413 | 422 => Ok(Delivery::Split(Refusal::new(class, detail()))),
        _ => Ok(Delivery::RejectedAll(Refusal::new(class, detail()))),
    })
}

/// Reads an Elasticsearch bulk answer item by item.
fn bulk_answer(body: &[u8], expected: usize, create: bool) -> Result<Delivery, SinkError> {
    let bad = |what: &str| {
        SinkError::new(
            FailureClass::BulkResponse,
            format!("{what}: {}", snippet(body)),
        )
    };
    let v: serde_json::Value = serde_json::from_slice(body).map_err(|_| bad("not JSON"))?;
    if v.get("errors").and_then(|e| e.as_bool()) == Some(false) {
        return Ok(Delivery::Accepted);
    }
    let items = v
        .get("items")
        .and_then(|i| i.as_array())
        .ok_or_else(|| bad("no items"))?;
    if items.len() != expected {
        return Err(bad(&format!(
            "{} items for {expected} records",
            items.len()
        )));
    }
    let mut rejected = Vec::new();
    let mut retry = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let result = item
            .as_object()
            .and_then(|o| o.values().next())
            .ok_or_else(|| bad("malformed item"))?;
        let status = result.get("status").and_then(|s| s.as_u64()).unwrap_or(0) as u16;
        match status {
            200..=299 => {}
            409 if create => {}
            429 | 500..=599 => retry.push(i),
            _ => {
                let error = result.get("error");
                let kind = error
                    .and_then(|e| e.get("type"))
                    .and_then(|t| t.as_str())
                    .unwrap_or("unknown");
                let reason = error
                    .and_then(|e| e.get("reason"))
                    .and_then(|t| t.as_str())
                    .unwrap_or("");
                rejected.push((
                    i,
                    Refusal::new(
                        FailureClass::BulkItem,
                        format!("status {status} {kind}: {reason}"),
                    ),
                ));
            }
        }
    }
    Ok(if rejected.is_empty() && retry.is_empty() {
        Delivery::Accepted
    } else {
        Delivery::Partial { rejected, retry }
    })
}

impl Sink for HttpSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn encode(&self, doc: &Redacted, out: &mut Vec<u8>) {
        match self.encoding {
            HttpEncoding::Ndjson => encode_line(doc, out),
            HttpEncoding::SplunkHec => {
                let hec = self.splunk.as_ref().expect("HEC state with HEC encoding");
                let millis = doc.timestamp.timestamp_millis();
                write!(
                    out,
                    "{{\"time\":{}.{:03}",
                    millis.div_euclid(1000),
                    millis.rem_euclid(1000)
                )
                .expect("to a Vec");
                out.extend_from_slice(&hec.prefix_fields);
                out.extend_from_slice(b",\"event\":");
                out.extend_from_slice(&doc.json);
                out.extend_from_slice(b"}\n");
            }
            HttpEncoding::ElasticsearchBulk => {
                out.extend_from_slice(&self.bulk_prefix);
                serde_json::to_writer(&mut *out, &doc.event_id).expect("to a Vec");
                out.extend_from_slice(b"}}\n");
                encode_line(doc, out);
            }
        }
    }

    fn send<'a>(&'a self, batch: &'a Encoded<'a>) -> SinkFuture<'a> {
        Box::pin(self.deliver(batch))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server that answers 200 with a body far larger than anyone should read, written for as long as
    /// the client reads.
    fn endless_answer() -> std::net::SocketAddr {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut request = [0u8; 4096];
            let _ = conn.read(&mut request);
            let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1073741824\r\n\r\n");
            let chunk = vec![b'x'; 1 << 16];
            while conn.write_all(&chunk).is_ok() {}
        });
        addr
    }

    #[tokio::test]
    async fn an_answer_is_read_only_up_to_its_bound() {
        let addr = endless_answer();
        let response = reqwest::Client::new()
            .post(format!("http://{addr}/"))
            .send()
            .await
            .unwrap();
        let body = bounded_body(response).await.unwrap();
        assert_eq!(body.len(), MAX_ANSWER_BYTES);
    }

    #[test]
    fn statuses_map_to_the_documented_answers() {
        assert!(classify(204, b"").is_none());
        for s in [408, 429, 500, 502, 503, 504, 599] {
            assert!(matches!(classify(s, b""), Some(Err(_))), "{s} retriable");
        }
        for s in [400, 413, 422] {
            assert!(
                matches!(classify(s, b""), Some(Ok(Delivery::Split(_)))),
                "{s} split"
            );
        }
        for s in [401, 403, 404, 405] {
            assert!(
                matches!(classify(s, b""), Some(Ok(Delivery::RejectedAll(_)))),
                "{s} rejected"
            );
        }
        match classify(401, b"{\"text\":\"Invalid token\"}") {
            Some(Ok(Delivery::RejectedAll(r))) => {
                assert_eq!(r.class, FailureClass::Http(401));
                assert!(r.detail.contains("Invalid token"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bulk_answers_are_read_item_by_item() {
        let ok = br#"{"took":3,"errors":false,"items":[{"index":{"status":201}}]}"#;
        assert_eq!(bulk_answer(ok, 1, false).unwrap(), Delivery::Accepted);
        let mixed = br#"{"errors":true,"items":[
            {"index":{"_id":"a","status":201}},
            {"index":{"_id":"b","status":400,"error":{"type":"mapper_parsing_exception","reason":"failed to parse field [latency_ms]"}}},
            {"index":{"_id":"c","status":429,"error":{"type":"es_rejected_execution_exception"}}},
            {"create":{"_id":"d","status":409,"error":{"type":"version_conflict_engine_exception"}}},
            {"index":{"_id":"e","status":503}}]}"#;
        match bulk_answer(mixed, 5, false).unwrap() {
            Delivery::Partial { rejected, retry } => {
                assert_eq!(retry, vec![2, 4]);
                assert_eq!(rejected.len(), 2, "{rejected:?}");
                assert_eq!(rejected[0].0, 1);
                assert!(rejected[0].1.detail.contains("mapper_parsing_exception"));
                assert_eq!(rejected[1].0, 3, "409 is a rejection with index");
            }
            other => panic!("{other:?}"),
        }
        match bulk_answer(mixed, 5, true).unwrap() {
            Delivery::Partial { rejected, .. } => {
                assert_eq!(rejected.len(), 1, "409 is stored with create")
            }
            other => panic!("{other:?}"),
        }
        assert!(
            bulk_answer(mixed, 4, false).is_err(),
            "item count must match"
        );
        assert!(bulk_answer(b"<html>", 1, false).is_err());
    }

    #[test]
    fn channel_ids_look_like_uuids() {
        let id = channel_id();
        assert_eq!(id.len(), 36);
        assert_eq!(id.matches('-').count(), 4);
        assert_ne!(id, channel_id());
    }
}
