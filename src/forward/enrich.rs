//! Enrichment: the forwarded document.
//!
//! ```json
//! {
//!   "@timestamp": "2026-11-27T08:00:00.000Z",          // occurred_at, UTC
//!   "event": {"id": "...", "kind": "event", "type": "llm_run", "outcome": "success",
//!             "ingested": "2026-11-27T08:00:00.120Z"},
//!   "organization": "acme", "organization_name": "Acme", "organization_tier": "gold",   // from the table
//!   "intent": "billing", "automation_id": "auto-3", "latency_ms": 1234.5,
//!   "run_id": "...", "request_id": "...", "trace_id": "...", "trace_url": "https://...", "span_id": "...",
//!   "kafka": {"topic": "...", "partition": 0, "offset": 42},   // or "source": {"file": ..., "line": ...}
//!   "host": {"name": "..."}, "kubernetes": {"pod": {"name": "..."}, "namespace": "...", "node": {"name": "..."}},
//!   "service": {"name": "hestyna"}, "environment": "prod",
//!   "hestyna": { ...the original event, unknown fields included... }
//! }
//! ```
//! Absent optional fields are left out, never written as `null`. An invalid record (when forwarded) has
//! `event.outcome = "invalid"`, `event.reason`, `error.message`, and the bytes under `hestyna` if they
//! are JSON, else as text under `message`. The document is written straight to JSON bytes, field by
//! field; [`super::redact::Redactor`] cleans it before any sink sees it.

use super::organizations::OrganizationTable;
use crate::decode::{Body, Event, Invalid};
use crate::shared::json::JsonError;
use crate::shared::json::{hex, write_timestamp};
pub use crate::shared::HostInfo;
use crate::source::{Origin, Record};
use chrono::{DateTime, Utc};
use serde_json::value::RawValue;
use sha2::Digest;

/// How the event ended, as ECS `event.outcome` (plus `invalid`); sinks map it to a severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// `event.outcome = "success"`.
    Success,
    /// `event.outcome = "failure"`.
    Failure,
    /// `event.outcome = "unknown"`.
    Unknown,
    /// The record broke the event contract.
    Invalid,
    /// The event type has no outcome (request lifecycle, unknown types).
    None,
}

impl Outcome {
    /// The `event.outcome` value, if any.
    pub fn as_str(self) -> Option<&'static str> {
        match self {
            Outcome::Success => Some("success"),
            Outcome::Failure => Some("failure"),
            Outcome::Unknown => Some("unknown"),
            Outcome::Invalid => Some("invalid"),
            Outcome::None => None,
        }
    }
}

/// A forwarded document: one compact JSON object (no line break), and what sinks need to know about it
/// without parsing it again.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    /// The record, compact JSON (redacted once the pipeline has made it a [`super::Redacted`]).
    pub json: Vec<u8>,
    /// `event.id` (for an invalid record, `invalid-` and a digest of where it came from and its bytes):
    /// the idempotency key of sinks that have one.
    pub event_id: String,
    /// The organization, if known (the Kafka sink's key).
    pub organization: Option<String>,
    /// `@timestamp`.
    pub timestamp: DateTime<Utc>,
    /// `event.outcome`.
    pub outcome: Outcome,
}

impl Document {
    /// The document as a JSON tree (for tests and diagnostics).
    pub fn to_value(&self) -> serde_json::Value {
        serde_json::from_slice(&self.json).expect("a document is valid JSON")
    }

    /// The document as text.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.json).expect("a document is UTF-8")
    }
}

/// The original event as compact JSON on one line, if it is JSON by the daemon's one rule
/// (`shared::json::parse`, which the redactor reads by): the bytes as they are, unless they hold a line
/// break (pretty-printed by the producer), which JSON lines cannot carry: then written compact.
pub fn original_json(payload: &[u8]) -> Result<Box<RawValue>, JsonError> {
    let value = crate::shared::json::parse_event(payload)?;
    if payload.iter().any(|b| *b == b'\n' || *b == b'\r') {
        return serde_json::value::to_raw_value(&value)
            .map_err(|e| JsonError::Unreadable(e.to_string()));
    }
    let text = std::str::from_utf8(payload).map_err(|e| JsonError::Unreadable(e.to_string()))?;
    RawValue::from_string(text.trim().to_owned()).map_err(|e| JsonError::Unreadable(e.to_string()))
}

/// Appends `s` as a JSON string.
fn write_str(out: &mut Vec<u8>, s: &str) {
    serde_json::to_writer(&mut *out, s).expect("writing to a Vec cannot fail");
}

/// Writes the members of one JSON object.
struct Obj<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
}

impl<'a> Obj<'a> {
    fn open(out: &'a mut Vec<u8>) -> Self {
        out.push(b'{');
        Obj { out, first: true }
    }

    /// `key` must need no escaping (every key here is a constant).
    fn key(&mut self, key: &str) -> &mut Vec<u8> {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        self.out.push(b'"');
        self.out.extend_from_slice(key.as_bytes());
        self.out.extend_from_slice(b"\":");
        self.out
    }

    fn str(&mut self, key: &str, value: &str) {
        write_str(self.key(key), value);
    }

    fn opt_str(&mut self, key: &str, value: Option<&str>) {
        if let Some(v) = value {
            self.str(key, v);
        }
    }

    fn raw(&mut self, key: &str, json: &[u8]) {
        self.key(key).extend_from_slice(json);
    }

    fn num<T: serde::Serialize>(&mut self, key: &str, value: T) {
        serde_json::to_writer(&mut *self.key(key), &value).expect("writing to a Vec cannot fail");
    }

    fn close(self) {
        self.out.push(b'}');
    }
}

/// Percent-encodes what is not unreserved in a URL (RFC 3986).
fn percent_encode(out: &mut String, s: &str) {
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

/// A `trace_url_template`, split at its placeholders.
#[derive(Debug, Clone, Default)]
pub struct TraceUrl {
    parts: Vec<TracePart>,
}

#[derive(Debug, Clone)]
enum TracePart {
    Text(String),
    TraceId,
    SpanId,
    Organization,
}

impl TraceUrl {
    /// Parses a template (checked by the configuration: only known placeholders).
    pub fn new(template: &str) -> Self {
        let mut parts = Vec::new();
        let mut rest = template;
        while let Some(open) = rest.find('{') {
            let Some(close) = rest[open..].find('}') else {
                break;
            };
            let name = &rest[open + 1..open + close];
            let part = match name {
                "trace_id" => TracePart::TraceId,
                "span_id" => TracePart::SpanId,
                "organization" => TracePart::Organization,
                _ => TracePart::Text(rest[open..=open + close].to_owned()),
            };
            parts.push(TracePart::Text(rest[..open].to_owned()));
            parts.push(part);
            rest = &rest[open + close + 1..];
        }
        parts.push(TracePart::Text(rest.to_owned()));
        parts.retain(|p| !matches!(p, TracePart::Text(t) if t.is_empty()));
        TraceUrl { parts }
    }

    /// The URL of an event with this trace, or `None` without a template or a trace.
    fn render(&self, trace_id: Option<&str>, span_id: Option<&str>, org: &str) -> Option<String> {
        let trace_id = trace_id?;
        if self.parts.is_empty() {
            return None;
        }
        let mut url = String::with_capacity(96);
        for part in &self.parts {
            match part {
                TracePart::Text(t) => url.push_str(t),
                TracePart::TraceId => percent_encode(&mut url, trace_id),
                TracePart::SpanId => percent_encode(&mut url, span_id.unwrap_or("")),
                TracePart::Organization => percent_encode(&mut url, org),
            }
        }
        Some(url)
    }
}

/// The parts of every document that depend on the batch, not the event: computed once per batch.
pub struct BatchContext<'a> {
    /// `event.ingested`, already formatted.
    ingested: Vec<u8>,
    /// The organization table as of this batch.
    organizations: &'a OrganizationTable,
}

impl<'a> BatchContext<'a> {
    /// The context of a batch ingested at `ingested`.
    pub fn new(ingested: DateTime<Utc>, organizations: &'a OrganizationTable) -> Self {
        let mut text = Vec::with_capacity(26);
        text.push(b'"');
        write_timestamp(&mut text, ingested);
        text.push(b'"');
        BatchContext {
            ingested: text,
            organizations,
        }
    }
}

/// Builds forwarded documents. The constant parts are written to JSON once.
#[derive(Debug, Clone)]
pub struct Enricher {
    /// `"host":{...},"kubernetes":{...},"service":{...},"environment":"..."`, ready to append.
    tail: Vec<u8>,
    trace_url: TraceUrl,
}

impl Enricher {
    /// An enricher for this host and service; `trace_url_template` as in the configuration.
    pub fn new(
        host: HostInfo,
        service_name: &str,
        environment: &str,
        trace_url_template: &str,
    ) -> Self {
        let mut tail = Vec::new();
        let comma = |tail: &mut Vec<u8>| {
            if !tail.is_empty() {
                tail.push(b',');
            }
        };
        if let Some(h) = &host.host {
            comma(&mut tail);
            tail.extend_from_slice(b"\"host\":{\"name\":");
            write_str(&mut tail, h);
            tail.push(b'}');
        }
        if host.pod.is_some() || host.namespace.is_some() || host.node.is_some() {
            comma(&mut tail);
            tail.extend_from_slice(b"\"kubernetes\":");
            let mut k = Obj::open(&mut tail);
            if let Some(pod) = &host.pod {
                k.key("pod").extend_from_slice(b"{\"name\":");
                write_str(k.out, pod);
                k.out.push(b'}');
            }
            k.opt_str("namespace", host.namespace.as_deref());
            if let Some(node) = &host.node {
                k.key("node").extend_from_slice(b"{\"name\":");
                write_str(k.out, node);
                k.out.push(b'}');
            }
            k.close();
        }
        comma(&mut tail);
        tail.extend_from_slice(b"\"service\":{\"name\":");
        write_str(&mut tail, service_name);
        tail.push(b'}');
        if !environment.is_empty() {
            tail.extend_from_slice(b",\"environment\":");
            write_str(&mut tail, environment);
        }
        Enricher {
            tail,
            trace_url: TraceUrl::new(trace_url_template),
        }
    }

    /// The document for one valid event of `record`.
    pub fn enrich(&self, ev: &Event<'_>, record: &Record, ctx: &BatchContext<'_>) -> Document {
        let mut out = Vec::with_capacity(record.payload.len() + 640);
        let mut doc = Obj::open(&mut out);
        doc.key("@timestamp").push(b'"');
        write_timestamp(doc.out, ev.occurred_at);
        doc.out.push(b'"');
        let outcome = outcome(&ev.body);
        let mut event = Obj::open(doc.key("event"));
        event.str("id", &ev.event_id);
        event.str("kind", "event");
        event.str("type", ev.type_name());
        event.opt_str("outcome", outcome.as_str());
        event.raw("ingested", &ctx.ingested);
        event.close();
        doc.str("organization", &ev.organization);
        if let Some(org) = ctx.organizations.get(&ev.organization) {
            doc.str("organization_name", &org.name);
            doc.opt_str(
                "organization_tier",
                (!org.tier.is_empty()).then_some(&*org.tier),
            );
        }
        match &ev.body {
            Body::LlmRun(r) => {
                doc.str("intent", &r.intent);
                doc.opt_str("automation_id", r.automation_id.as_deref());
                doc.num("latency_ms", r.latency_ms);
                doc.str("run_id", &r.run_id);
            }
            Body::IntegrationCall(c) => {
                doc.opt_str("automation_id", c.automation_id.as_deref());
                if let Some(l) = c.latency_ms {
                    doc.num("latency_ms", l);
                }
                doc.str("integration", &c.integration);
            }
            Body::AutomationRun(a) => {
                doc.str("automation_id", &a.automation_id);
                doc.str("automation_version", &a.automation_version);
            }
            Body::RequestLifecycle(l) => doc.str("request_id", &l.request_id),
            Body::Unknown { .. } => {}
        }
        doc.opt_str("trace_id", ev.trace_id.as_deref());
        if let Some(url) = self.trace_url.render(
            ev.trace_id.as_deref(),
            ev.span_id.as_deref(),
            &ev.organization,
        ) {
            doc.str("trace_url", &url);
        }
        doc.opt_str("span_id", ev.span_id.as_deref());
        self.finish(doc, record, true);
        Document {
            json: out,
            event_id: ev.event_id.to_string(),
            organization: Some(ev.organization.to_string()),
            timestamp: ev.occurred_at,
            outcome,
        }
    }

    /// The document for a record that broke the event contract: `@timestamp` is when it was read.
    pub fn enrich_invalid(
        &self,
        record: &Record,
        invalid: &Invalid,
        ingested: DateTime<Utc>,
        ctx: &BatchContext<'_>,
    ) -> Document {
        let mut digest = sha2::Sha256::new();
        digest.update(format!("{:?}", record.origin).as_bytes());
        digest.update(&record.payload);
        let event_id = format!("invalid-{}", &hex(&digest.finalize())[..32]);
        let mut out = Vec::with_capacity(record.payload.len() + 640);
        let mut doc = Obj::open(&mut out);
        doc.key("@timestamp").push(b'"');
        write_timestamp(doc.out, ingested);
        doc.out.push(b'"');
        let mut event = Obj::open(doc.key("event"));
        event.str("id", &event_id);
        event.str("kind", "event");
        event.str("outcome", "invalid");
        event.str("reason", invalid.reason.as_str());
        event.raw("ingested", &ctx.ingested);
        event.close();
        let mut error = Obj::open(doc.key("error"));
        error.str("message", &invalid.detail);
        error.close();
        self.finish(doc, record, false);
        Document {
            json: out,
            event_id,
            organization: None,
            timestamp: ingested,
            outcome: Outcome::Invalid,
        }
    }

    /// Origin, host, service, and the original (`decoded`: known to be valid JSON): the end of every
    /// document.
    fn finish(&self, mut doc: Obj<'_>, record: &Record, decoded: bool) {
        match &record.origin {
            Origin::Kafka {
                topic,
                partition,
                offset,
            } => {
                let mut k = Obj::open(doc.key("kafka"));
                k.str("topic", topic);
                k.num("partition", partition);
                k.num("offset", offset);
                k.close();
            }
            Origin::File { path, line } => {
                let mut f = Obj::open(doc.key("source"));
                f.str("file", path);
                f.num("line", line);
                f.close();
            }
            Origin::Generator { seq } => {
                let mut g = Obj::open(doc.key("source"));
                g.num("generator_seq", seq);
                g.close();
            }
        }
        doc.out.push(b',');
        doc.out.extend_from_slice(&self.tail);
        let payload = &record.payload;
        match embeddable(payload, decoded) {
            Some(json) => doc.raw("hestyna", json),
            None => match original_json(payload) {
                Ok(raw) => doc.raw("hestyna", raw.get().as_bytes()),
                Err(_) => doc.str("message", &String::from_utf8_lossy(payload)),
            },
        }
        doc.close();
    }
}

/// The payload itself, trimmed, when it can be embedded as it is: on one line, and JSON by the one rule
/// (known when it `decoded`, else checked here: what the rule refuses is forwarded as a string, which
/// the redactor can read).
fn embeddable(payload: &[u8], decoded: bool) -> Option<&[u8]> {
    if memchr::memchr2(b'\n', b'\r', payload).is_some() {
        return None;
    }
    if decoded {
        // Decoding checked it is UTF-8 JSON, which only ASCII whitespace can surround.
        return Some(payload.trim_ascii());
    }
    let text = std::str::from_utf8(payload).ok()?.trim();
    crate::shared::json::parse_event(text.as_bytes()).ok()?;
    Some(text.as_bytes())
}

/// ECS `event.outcome`: success, failure or unknown.
fn outcome(body: &Body<'_>) -> Outcome {
    use crate::decode::{AutomationOutcome as A, IntegrationOutcome as I, LlmOutcome as L};
    match body {
        Body::LlmRun(r) => match r.outcome {
            L::Success => Outcome::Success,
            L::Failure | L::Timeout => Outcome::Failure,
            L::Cancelled => Outcome::Unknown,
        },
        Body::IntegrationCall(c) => match c.outcome {
            I::Success => Outcome::Success,
            I::Failure => Outcome::Failure,
        },
        Body::AutomationRun(a) => match a.outcome {
            A::Success => Outcome::Success,
            A::Failure => Outcome::Failure,
            A::Cancelled => Outcome::Unknown,
        },
        Body::RequestLifecycle(_) | Body::Unknown { .. } => Outcome::None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::decode::decode;
    use serde_json::{json, Value};
    use std::sync::Arc;

    #[test]
    fn a_pretty_printed_original_is_made_compact() {
        let raw = original_json(b"{\n  \"a\": [1,\n 2]\n}").unwrap();
        assert_eq!(raw.get(), r#"{"a":[1,2]}"#);
        assert_eq!(original_json(b" {\"a\":1} ").unwrap().get(), r#"{"a":1}"#);
    }

    fn kafka_record(payload: &[u8]) -> Record {
        Record::new(
            payload.to_vec(),
            Origin::Kafka {
                topic: Arc::from("t"),
                partition: 3,
                offset: 42,
            },
        )
    }

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn builds_the_documented_record() {
        let payload = br#"{"event_id":"e1","type":"llm_run","occurred_at":"2026-11-27T10:00:00+02:00","organization":"acme","run_id":"r1","intent":"billing","outcome":"timeout","latency_ms":30000,"automation_id":"a7","custom":{"x":1}}"#;
        let mut record = kafka_record(payload);
        record.headers = crate::source::Headers::from_pairs([(
            "traceparent",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )]);
        let ev = decode(&record.payload, record.traceparent()).unwrap();
        let host = HostInfo {
            host: Some("node-a".into()),
            pod: Some("obsd-0".into()),
            namespace: Some("obs".into()),
            node: None,
        };
        let orgs =
            OrganizationTable::parse("organization,name,tier\nacme,\"Acme, Inc.\",gold\n").unwrap();
        let ctx = BatchContext::new(at("2026-11-27T08:00:01.5Z"), &orgs);
        let enricher = Enricher::new(
            host,
            "hestyna",
            "prod",
            "https://traces.example/{organization}/trace/{trace_id}?span={span_id}",
        );
        let doc = enricher.enrich(&ev, &record, &ctx);
        let expected = json!({
            "@timestamp": "2026-11-27T08:00:00.000Z",
            "event": {"id": "e1", "kind": "event", "type": "llm_run", "outcome": "failure", "ingested": "2026-11-27T08:00:01.500Z"},
            "organization": "acme", "organization_name": "Acme, Inc.", "organization_tier": "gold",
            "intent": "billing", "automation_id": "a7", "latency_ms": 30000.0, "run_id": "r1",
            "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
            "trace_url": "https://traces.example/acme/trace/4bf92f3577b34da6a3ce929d0e0e4736?span=00f067aa0ba902b7",
            "span_id": "00f067aa0ba902b7",
            "kafka": {"topic": "t", "partition": 3, "offset": 42},
            "host": {"name": "node-a"}, "kubernetes": {"pod": {"name": "obsd-0"}, "namespace": "obs"},
            "service": {"name": "hestyna"}, "environment": "prod",
            "hestyna": serde_json::from_slice::<Value>(payload).unwrap(),
        });
        assert_eq!(doc.to_value(), expected);
        let keys: Vec<String> = doc
            .to_value()
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        let expected_keys: Vec<String> = expected.as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys, expected_keys, "fields in the documented order");
        assert!(
            doc.as_str().ends_with(&format!(
                ",\"hestyna\":{}}}",
                std::str::from_utf8(payload).unwrap()
            )),
            "embedded as sent: {}",
            doc.as_str()
        );
        assert_eq!(doc.event_id, "e1");
        assert_eq!(doc.organization.as_deref(), Some("acme"));
        assert_eq!(doc.outcome, Outcome::Failure);
    }

    #[test]
    fn an_invalid_record_is_marked_and_keeps_its_bytes() {
        let orgs = OrganizationTable::default();
        let ingested = at("2026-11-27T08:00:00Z");
        let ctx = BatchContext::new(ingested, &orgs);
        let enricher = Enricher::new(HostInfo::default(), "hestyna", "", "");
        for (payload, original) in [
            (
                &b"{\"type\":\"llm_run\"}"[..],
                Some(json!({"type": "llm_run"})),
            ),
            (&b"not json \"at all\"\xff"[..], None),
        ] {
            let record = kafka_record(payload);
            let invalid = decode(payload, None).unwrap_err();
            let doc = enricher.enrich_invalid(&record, &invalid, ingested, &ctx);
            let v = doc.to_value();
            assert_eq!(v["@timestamp"], "2026-11-27T08:00:00.000Z");
            assert_eq!(v["event"]["outcome"], "invalid");
            assert_eq!(v["event"]["reason"], invalid.reason.as_str());
            assert_eq!(v["error"]["message"], &*invalid.detail);
            assert_eq!(v["event"]["id"], doc.event_id.as_str());
            assert!(doc.event_id.starts_with("invalid-") && doc.event_id.len() == 40);
            match original {
                Some(o) => assert_eq!(v["hestyna"], o),
                None => assert_eq!(v["message"], String::from_utf8_lossy(payload).as_ref()),
            }
            assert_eq!(doc.outcome, Outcome::Invalid);
        }
    }

    #[test]
    fn trace_urls_need_a_template_and_a_trace() {
        let t = TraceUrl::new("https://t/{trace_id}");
        assert_eq!(
            t.render(Some("ab"), None, "o").as_deref(),
            Some("https://t/ab")
        );
        assert_eq!(t.render(None, None, "o"), None);
        assert_eq!(TraceUrl::new("").render(Some("ab"), None, "o"), None);
        let t = TraceUrl::new("/o/{organization}");
        assert_eq!(
            t.render(Some("x"), None, "a b/é").as_deref(),
            Some("/o/a%20b%2F%C3%A9")
        );
    }
}
