//! The exposition writer: whatever bytes an event carries in the fields that become labels, the
//! rendered `/metrics` (text and OpenMetrics) is well formed: every sample line is a metric name, label
//! pairs whose values use only the three escapes, and a number.
#![no_main]

use hestyna_obsd::derive::{default_rules, Plan};
use libfuzzer_sys::fuzz_target;
use std::sync::LazyLock;

static PLAN: LazyLock<Plan> = LazyLock::new(|| Plan::compile(&default_rules()).unwrap());

/// `name{k="v",...} value [timestamp]` with only `\\`, `\"` and `\n` escapes in values.
fn check_sample(line: &str) {
    let name_end = line.find(['{', ' ']).expect(line);
    let name = &line[..name_end];
    assert!(
        !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
        "bad name in {line:?}"
    );
    let mut rest = &line[name_end..];
    if let Some(labels) = rest.strip_prefix('{') {
        rest = check_labels(labels, line);
    }
    let value = rest.strip_prefix(' ').expect(line);
    let number = value.split(' ').next().unwrap();
    let ok = number.parse::<f64>().is_ok() || ["+Inf", "-Inf", "NaN"].contains(&number);
    assert!(ok, "bad value in {line:?}");
}

/// Reads `k="v",...}`; what follows the closing brace.
fn check_labels<'a>(mut s: &'a str, line: &str) -> &'a str {
    loop {
        if let Some(after) = s.strip_prefix('}') {
            return after;
        }
        let eq = s.find('=').expect(line);
        let key = &s[..eq];
        assert!(
            !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "bad label name in {line:?}"
        );
        let mut chars = s[eq + 1..].strip_prefix('"').expect(line).char_indices();
        let end = loop {
            match chars.next().expect(line) {
                (_, '\\') => assert!(
                    matches!(chars.next(), Some((_, '\\' | '"' | 'n'))),
                    "{line:?}"
                ),
                (i, '"') => break i,
                (_, c) => assert!(c != '\n', "{line:?}"),
            }
        };
        s = &s[eq + 1 + 1 + end + 1..];
        s = s.strip_prefix(',').unwrap_or(s);
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(3, '\u{1}');
    let (org, intent, model) = (
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
    );
    let event = serde_json::json!({
        "event_id": "e1", "type": "llm_run", "occurred_at": "2026-11-27T08:00:00Z",
        "organization": org, "run_id": "r1", "intent": intent, "outcome": "success",
        "latency_ms": 12.5, "model": model, "tokens_prompt": 3, "tokens_completion": 4,
        "automation_id": model,
    })
    .to_string();
    let Ok(event) = hestyna_obsd::decode::decode(event.as_bytes(), None) else {
        return;
    };
    let mut store = PLAN.new_store();
    PLAN.observe(&mut store, &event);
    for format in [
        hestyna_obsd::derive::Format::Text,
        hestyna_obsd::derive::Format::OpenMetrics,
    ] {
        let mut out = String::new();
        store.snapshot().render(&mut out, format, None);
        for line in out.lines().filter(|l| !l.starts_with('#')) {
            check_sample(line);
        }
    }
});
