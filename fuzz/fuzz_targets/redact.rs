//! The redactor on the forward pipeline's real path: fuzz bytes with an email planted in them are
//! decoded, enriched (a valid event, or an invalid record's document) and redacted with the shipped
//! configuration. The email never comes out: not in the bytes, not in any key or string once unescaped.
#![no_main]

use hestyna_obsd::config::RedactionConfig;
use hestyna_obsd::forward::{Enricher, HostInfo, OrganizationTable, Redactor};
use hestyna_obsd::source::{Origin, Record};
use libfuzzer_sys::fuzz_target;
use std::sync::LazyLock;

const EMAIL: &str = "jane.doe@example.com";

static REDACTOR: LazyLock<Redactor> =
    LazyLock::new(|| Redactor::new(&RedactionConfig::default()).unwrap());
static ENRICHER: LazyLock<Enricher> =
    LazyLock::new(|| Enricher::new(HostInfo::default(), "hestyna-obsd", "fuzz", ""));

fn leaks(value: &serde_json::Value) -> bool {
    match value {
        serde_json::Value::String(s) => s.contains(EMAIL),
        serde_json::Value::Array(items) => items.iter().any(leaks),
        serde_json::Value::Object(map) => map.iter().any(|(k, v)| k.contains(EMAIL) || leaks(v)),
        _ => false,
    }
}

fuzz_target!(|data: &[u8]| {
    // The first byte says where the email goes; the rest is the record around it.
    let Some((&at, rest)) = data.split_first() else {
        return;
    };
    let at = usize::from(at).min(rest.len());
    let payload = [&rest[..at], EMAIL.as_bytes(), &rest[at..]].concat();
    let record = Record::new(payload, Origin::Generator { seq: 1 });
    let organizations = OrganizationTable::default();
    let ctx = hestyna_obsd::forward::enrich::BatchContext::new(chrono::Utc::now(), &organizations);
    let doc = match hestyna_obsd::decode::decode(&record.payload, None) {
        Ok(event) => ENRICHER.enrich(&event, &record, &ctx),
        Err(invalid) => ENRICHER.enrich_invalid(&record, &invalid, chrono::Utc::now(), &ctx),
    };
    let Ok(redacted) = REDACTOR.redact(doc, &mut [0; 64]) else {
        return; // Unredactable: dead-lettered, never forwarded.
    };
    let text = redacted.as_str();
    assert!(!text.contains(EMAIL), "{text}");
    let value: serde_json::Value =
        serde_json::from_str(text).expect("a forwarded document is JSON");
    assert!(!leaks(&value), "{text}");
});
