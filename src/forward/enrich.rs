//! Enrichment: the forwarded document.
//!
//! ```json
//! {
//!   "@timestamp": "2026-11-27T08:00:00.000Z",          // occurred_at, UTC
//!   "event": {"id": "...", "kind": "event", "type": "llm_run", "outcome": "success",
//!             "ingested": "2026-11-27T08:00:00.120Z"},
//!   "organization": "acme", "intent": "billing", "automation_id": "auto-3", "latency_ms": 1234.5,
//!   "run_id": "...", "request_id": "...", "trace_id": "...", "span_id": "...",
//!   "kafka": {"topic": "...", "partition": 0, "offset": 42},   // or "source": {"file": ..., "line": ...}
//!   "host": {"name": "..."}, "kubernetes": {"pod": {"name": "..."}, "namespace": "...", "node": {"name": "..."}},
//!   "service": {"name": "hestyna"}, "environment": "prod",
//!   "hestyna": { ...the original event, unknown fields included... }
//! }
//! ```
//! Absent optional fields are left out, never written as `null`.

use crate::decode::{Body, Event};
use crate::source::{Origin, Record};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};

/// A forwarded document: the enrichment fields, and the original event embedded as it was sent (not
/// parsed into a tree and written again), under `hestyna`.
#[derive(Debug, Clone)]
pub struct Document {
    /// Everything but the original, keyed by name.
    pub fields: Map<String, Value>,
    /// The original event, compact JSON.
    pub original: Box<RawValue>,
}

impl Serialize for Document {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.fields.len() + 1))?;
        for (k, v) in &self.fields {
            map.serialize_entry(k, v)?;
        }
        map.serialize_entry("hestyna", &self.original)?;
        map.end()
    }
}

impl Document {
    /// The document as a JSON tree (for sinks that rework it, and for tests).
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).expect("a document is valid JSON")
    }
}

/// The original event as compact JSON on one line: the bytes as they are, unless they hold a line break
/// (pretty-printed by the producer), which JSON lines cannot carry: then parsed and written compact.
pub fn original_json(payload: &[u8]) -> Result<Box<RawValue>, serde_json::Error> {
    if payload.iter().any(|b| *b == b'\n' || *b == b'\r') {
        let value: Value = serde_json::from_slice(payload)?;
        return serde_json::value::to_raw_value(&value);
    }
    let text = std::str::from_utf8(payload).map_err(serde::de::Error::custom)?;
    RawValue::from_string(text.trim().to_owned())
}

/// Where the daemon runs, read once from the environment (the Kubernetes downward API sets these).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostInfo {
    /// `HOSTNAME`, else the kernel's host name.
    pub host: Option<String>,
    /// `POD_NAME`.
    pub pod: Option<String>,
    /// `POD_NAMESPACE`.
    pub namespace: Option<String>,
    /// `NODE_NAME`.
    pub node: Option<String>,
}

impl HostInfo {
    /// Reads the environment.
    pub fn from_env() -> Self {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let host = var("HOSTNAME").or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
                .filter(|h| !h.is_empty())
        });
        HostInfo {
            host,
            pod: var("POD_NAME"),
            namespace: var("POD_NAMESPACE"),
            node: var("NODE_NAME"),
        }
    }
}

/// Builds forwarded documents. The constant parts are built once.
#[derive(Debug, Clone)]
pub struct Enricher {
    host: Option<Value>,
    kubernetes: Option<Value>,
    service: Value,
    environment: Option<Value>,
}

fn ts(t: DateTime<Utc>) -> Value {
    Value::String(t.to_rfc3339_opts(SecondsFormat::Millis, true))
}

impl Enricher {
    /// An enricher for this host and service.
    pub fn new(host: HostInfo, service_name: &str, environment: &str) -> Self {
        let mut kubernetes = Map::new();
        if let Some(pod) = host.pod {
            kubernetes.insert("pod".into(), json!({ "name": pod }));
        }
        if let Some(ns) = host.namespace {
            kubernetes.insert("namespace".into(), json!(ns));
        }
        if let Some(node) = host.node {
            kubernetes.insert("node".into(), json!({ "name": node }));
        }
        Enricher {
            host: host.host.map(|h| json!({ "name": h })),
            kubernetes: (!kubernetes.is_empty()).then_some(Value::Object(kubernetes)),
            service: json!({ "name": service_name }),
            environment: (!environment.is_empty()).then(|| json!(environment)),
        }
    }

    /// The document for one valid event. `original` is the record's payload ([`original_json`]).
    pub fn enrich(
        &self,
        ev: &Event<'_>,
        record: &Record,
        original: Box<RawValue>,
        ingested: DateTime<Utc>,
    ) -> Document {
        let mut doc = Map::new();
        doc.insert("@timestamp".into(), ts(ev.occurred_at));
        let mut event = Map::new();
        event.insert("id".into(), json!(ev.event_id));
        event.insert("kind".into(), json!("event"));
        event.insert("type".into(), json!(ev.type_name()));
        if let Some(outcome) = ecs_outcome(&ev.body) {
            event.insert("outcome".into(), json!(outcome));
        }
        event.insert("ingested".into(), ts(ingested));
        doc.insert("event".into(), Value::Object(event));
        doc.insert("organization".into(), json!(ev.organization));

        let mut put = |key: &str, value: Option<Value>| {
            if let Some(v) = value {
                doc.insert(key.into(), v);
            }
        };
        match &ev.body {
            Body::LlmRun(r) => {
                put("intent", Some(json!(r.intent)));
                put("automation_id", r.automation_id.as_ref().map(|a| json!(a)));
                put("latency_ms", Some(json!(r.latency_ms)));
                put("run_id", Some(json!(r.run_id)));
            }
            Body::IntegrationCall(c) => {
                put("automation_id", c.automation_id.as_ref().map(|a| json!(a)));
                put("latency_ms", c.latency_ms.map(|l| json!(l)));
                put("integration", Some(json!(c.integration)));
            }
            Body::AutomationRun(a) => {
                put("automation_id", Some(json!(a.automation_id)));
                put("automation_version", Some(json!(a.automation_version)));
            }
            Body::RequestLifecycle(l) => {
                put("request_id", Some(json!(l.request_id)));
            }
            Body::Unknown { .. } => {}
        }
        put("trace_id", ev.trace_id.as_ref().map(|t| json!(t)));
        put("span_id", ev.span_id.as_ref().map(|s| json!(s)));
        put(
            "kafka",
            match &record.origin {
                Origin::Kafka {
                    topic,
                    partition,
                    offset,
                } => Some(
                    json!({ "topic": topic.as_ref(), "partition": partition, "offset": offset }),
                ),
                _ => None,
            },
        );
        put(
            "source",
            match &record.origin {
                Origin::File { path, line } => Some(json!({ "file": path.as_ref(), "line": line })),
                Origin::Generator { seq } => Some(json!({ "generator_seq": seq })),
                Origin::Kafka { .. } => None,
            },
        );
        put("host", self.host.clone());
        put("kubernetes", self.kubernetes.clone());
        put("service", Some(self.service.clone()));
        put("environment", self.environment.clone());
        Document {
            fields: doc,
            original,
        }
    }
}

/// ECS `event.outcome`: success, failure or unknown.
fn ecs_outcome(body: &Body<'_>) -> Option<&'static str> {
    use crate::decode::{AutomationOutcome as A, IntegrationOutcome as I, LlmOutcome as L};
    Some(match body {
        Body::LlmRun(r) => match r.outcome {
            L::Success => "success",
            L::Failure | L::Timeout => "failure",
            L::Cancelled => "unknown",
        },
        Body::IntegrationCall(c) => match c.outcome {
            I::Success => "success",
            I::Failure => "failure",
        },
        Body::AutomationRun(a) => match a.outcome {
            A::Success => "success",
            A::Failure => "failure",
            A::Cancelled => "unknown",
        },
        Body::RequestLifecycle(_) | Body::Unknown { .. } => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::decode;
    use std::sync::Arc;

    #[test]
    fn a_pretty_printed_original_is_made_compact() {
        let raw = original_json(b"{\n  \"a\": [1,\n 2]\n}").unwrap();
        assert_eq!(raw.get(), r#"{"a":[1,2]}"#);
        assert_eq!(original_json(b" {\"a\":1} ").unwrap().get(), r#"{"a":1}"#);
    }

    #[test]
    fn builds_the_documented_record() {
        let payload = br#"{"event_id":"e1","type":"llm_run","occurred_at":"2026-11-27T10:00:00+02:00","organization":"acme","run_id":"r1","intent":"billing","outcome":"timeout","latency_ms":30000,"automation_id":"a7","custom":{"x":1}}"#;
        let mut record = Record::new(
            payload.to_vec(),
            Origin::Kafka {
                topic: Arc::from("t"),
                partition: 3,
                offset: 42,
            },
        );
        record.headers.push((
            "traceparent".into(),
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_vec(),
        ));
        let ev = decode(&record.payload, record.traceparent()).unwrap();
        let host = HostInfo {
            host: Some("node-a".into()),
            pod: Some("obsd-0".into()),
            namespace: Some("obs".into()),
            node: None,
        };
        let ingested = DateTime::parse_from_rfc3339("2026-11-27T08:00:01.5Z")
            .unwrap()
            .with_timezone(&Utc);
        let original = original_json(payload).unwrap();
        let doc = Enricher::new(host, "hestyna", "prod").enrich(&ev, &record, original, ingested);
        let expected = json!({
            "@timestamp": "2026-11-27T08:00:00.000Z",
            "event": {"id": "e1", "kind": "event", "type": "llm_run", "outcome": "failure", "ingested": "2026-11-27T08:00:01.500Z"},
            "organization": "acme", "intent": "billing", "automation_id": "a7", "latency_ms": 30000.0, "run_id": "r1",
            "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "span_id": "00f067aa0ba902b7",
            "kafka": {"topic": "t", "partition": 3, "offset": 42},
            "host": {"name": "node-a"}, "kubernetes": {"pod": {"name": "obsd-0"}, "namespace": "obs"},
            "service": {"name": "hestyna"}, "environment": "prod",
            "hestyna": serde_json::from_slice::<Value>(payload).unwrap(),
        });
        assert_eq!(doc.to_value(), expected);
        let line = serde_json::to_string(&doc).unwrap();
        assert!(
            line.ends_with(&format!(
                ",\"hestyna\":{}}}",
                std::str::from_utf8(payload).unwrap()
            )),
            "embedded as sent: {line}"
        );
    }
}
