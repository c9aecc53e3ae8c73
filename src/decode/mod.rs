//! Decode: bytes of one record -> a validated [`Event`].
//!
//! The event contract lives in `schemas/` (JSON Schema, draft 2020-12); this module is its Rust twin, and
//! `tests/schemas.rs` checks every example there against both so that they cannot drift.
//!
//! Decoding borrows from the record's bytes wherever the JSON has no escapes, so the metrics side pays for
//! one pass over the bytes and no allocation per field. A record that breaks the contract becomes an
//! [`Invalid`] with a [`InvalidReason`] (a bounded set, used as a metric label) and the name of the field at
//! fault; decoding never panics on any input (see the property tests below).

mod event;
mod raw;

pub(crate) use raw::plain_run;
mod rfc3339;
mod traceparent;

pub use event::{
    AutomationOutcome, AutomationRun, Body, Event, EventType, IntegrationCall, IntegrationOutcome,
    LlmOutcome, LlmRun, RequestLifecycle, Stage,
};
pub use traceparent::TraceContext;

use std::borrow::Cow;
use std::fmt;

/// Why a record was refused. The names are metric label values and dead-letter header values: keep them
/// stable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum InvalidReason {
    /// The bytes are not one JSON document (syntax error, truncated, invalid UTF-8 in a string).
    NotJson,
    /// Valid JSON, but not an object.
    NotObject,
    /// The same key appears twice in the object: which one a reader would take is ambiguous.
    DuplicateField,
    /// A required field is absent (or `null`).
    MissingField,
    /// A field has the wrong JSON type.
    WrongType,
    /// A timestamp field is not RFC 3339.
    BadTimestamp,
    /// A field has the right type but a value outside the contract (unknown outcome, negative latency, ...).
    BadValue,
}

impl InvalidReason {
    /// Every reason, in label order; used to pre-register self metrics.
    pub const ALL: [InvalidReason; 7] = [
        InvalidReason::NotJson,
        InvalidReason::NotObject,
        InvalidReason::DuplicateField,
        InvalidReason::MissingField,
        InvalidReason::WrongType,
        InvalidReason::BadTimestamp,
        InvalidReason::BadValue,
    ];

    /// The stable snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            InvalidReason::NotJson => "not_json",
            InvalidReason::NotObject => "not_object",
            InvalidReason::DuplicateField => "duplicate_field",
            InvalidReason::MissingField => "missing_field",
            InvalidReason::WrongType => "wrong_type",
            InvalidReason::BadTimestamp => "bad_timestamp",
            InvalidReason::BadValue => "bad_value",
        }
    }
}

impl fmt::Display for InvalidReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A record that breaks the event contract.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{reason}: {detail}")]
pub struct Invalid {
    /// The class of fault.
    pub reason: InvalidReason,
    /// Which field, and what was wrong with it; for humans (dead-letter header, logs), not for labels.
    pub detail: Cow<'static, str>,
}

impl Invalid {
    pub(crate) fn field(reason: InvalidReason, field: &'static str, what: &'static str) -> Self {
        let detail = if what.is_empty() {
            Cow::Borrowed(field)
        } else {
            Cow::Owned(format!("{field}: {what}"))
        };
        Invalid { reason, detail }
    }
}

/// Decodes one record's payload. `traceparent` is the value of the record's W3C `traceparent` header, if
/// any: it fills `trace_id`/`span_id` when the body has none.
pub fn decode<'a>(payload: &'a [u8], traceparent: Option<&[u8]>) -> Result<Event<'a>, Invalid> {
    let mut raw = raw::RawEvent::default();
    raw::parse(payload, &mut raw)?;
    let mut event = raw.validate()?;
    if event.trace_id.is_none() {
        if let Some(ctx) = traceparent.and_then(TraceContext::parse) {
            event.trace_id = Some(Cow::Owned(ctx.trace_id));
            if event.span_id.is_none() {
                event.span_id = Some(Cow::Owned(ctx.span_id));
            }
        }
    }
    Ok(event)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn reason(payload: &str) -> InvalidReason {
        decode(payload.as_bytes(), None).expect_err(payload).reason
    }

    const LLM: &str = r#"{"event_id":"e1","type":"llm_run","occurred_at":"2026-11-27T10:00:00+02:00","organization":"acme","run_id":"r1","intent":"billing","outcome":"success","latency_ms":1234.5,"tokens_prompt":10,"extra":{"kept":true}}"#;

    #[test]
    fn decodes_an_llm_run_and_normalises_the_time_to_utc() {
        let ev = decode(LLM.as_bytes(), None).unwrap();
        assert_eq!(ev.event_id, "e1");
        assert_eq!(ev.organization, "acme");
        assert_eq!(ev.schema_version, 1);
        assert_eq!(ev.occurred_at.to_rfc3339(), "2026-11-27T08:00:00+00:00");
        match ev.body {
            Body::LlmRun(r) => {
                assert_eq!(r.intent, "billing");
                assert_eq!(r.outcome, LlmOutcome::Success);
                assert_eq!(r.latency_ms, 1234.5);
                assert_eq!(r.tokens_prompt, Some(10));
                assert_eq!(r.tokens_completion, None);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn borrows_plain_strings() {
        let ev = decode(LLM.as_bytes(), None).unwrap();
        assert!(matches!(ev.organization, Cow::Borrowed(_)));
        let escaped = LLM.replace("\"acme\"", "\"ac\\u006de\"");
        let ev = decode(escaped.as_bytes(), None).unwrap();
        assert_eq!(ev.organization, "acme");
    }

    #[test]
    fn classifies_faults() {
        let cases: Vec<(String, InvalidReason)> = vec![
            ("nope".to_owned(), InvalidReason::NotJson),
            ("{\"event_id\":".to_owned(), InvalidReason::NotJson),
            ("[1,2]".to_owned(), InvalidReason::NotObject),
            // An array as long as the event's fields (the decode fuzz target's find): serde alone
            // reads it as an event, field by field, and the first number is a wrong type.
            (
                format!("[\n\n{}\n]", vec!["44449444"; 26].join(",")),
                InvalidReason::NotObject,
            ),
            (
                format!(" \t[{}]", vec!["\"x\""; 26].join(",")),
                InvalidReason::NotObject,
            ),
            ("\"str\"".to_owned(), InvalidReason::NotObject),
            (
                LLM.replace("\"run_id\":\"r1\",", ""),
                InvalidReason::MissingField,
            ),
            (
                LLM.replace("\"run_id\":\"r1\"", "\"run_id\":null"),
                InvalidReason::MissingField,
            ),
            (LLM.replace("1234.5", "\"1234\""), InvalidReason::WrongType),
            (LLM.replace("1234.5", "-1"), InvalidReason::BadValue),
            (
                LLM.replace("\"success\"", "\"great\""),
                InvalidReason::BadValue,
            ),
            (
                LLM.replace("2026-11-27T10", "2026-13-27T10"),
                InvalidReason::BadTimestamp,
            ),
            (LLM.replace("+02:00", ""), InvalidReason::BadTimestamp),
            (
                LLM.replace("\"tokens_prompt\":10", "\"tokens_prompt\":1.5"),
                InvalidReason::WrongType,
            ),
            (
                LLM.replace("\"run_id\":\"r1\"", "\"run_id\":\"r1\",\"run_id\":\"r2\""),
                InvalidReason::DuplicateField,
            ),
            (
                LLM.replace("\"trace_id\":", "x")
                    .replace("\"extra\"", "\"trace_id\":\"abc\",\"extra\""),
                InvalidReason::BadValue,
            ),
        ];
        for (payload, expected) in cases {
            assert_eq!(reason(&payload), expected, "{payload}");
        }
    }

    #[test]
    fn names_the_field_at_fault() {
        let err = decode(LLM.replace("\"run_id\":\"r1\",", "").as_bytes(), None).unwrap_err();
        assert_eq!(err.detail, "run_id");
        let err = decode(LLM.replace("1234.5", "\"x\"").as_bytes(), None).unwrap_err();
        assert_eq!(err.detail, "latency_ms: expected a number");
    }

    #[test]
    fn unknown_type_is_an_event_not_an_error() {
        let ev = decode(br#"{"event_id":"e","type":"billing_tick","occurred_at":"2026-01-01T00:00:00Z","organization":"o"}"#, None).unwrap();
        assert_eq!(ev.event_type(), EventType::Unknown);
        assert!(matches!(ev.body, Body::Unknown { ref type_name } if type_name == "billing_tick"));
    }

    #[test]
    fn traceparent_header_fills_missing_ids_only() {
        let tp = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let ev = decode(LLM.as_bytes(), Some(tp)).unwrap();
        assert_eq!(
            ev.trace_id.as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        assert_eq!(ev.span_id.as_deref(), Some("00f067aa0ba902b7"));
        let own = LLM.replace(
            "\"extra\"",
            "\"trace_id\":\"0123456789abcdef0123456789abcdef\",\"extra\"",
        );
        let ev = decode(own.as_bytes(), Some(tp)).unwrap();
        assert_eq!(
            ev.trace_id.as_deref(),
            Some("0123456789abcdef0123456789abcdef")
        );
        assert_eq!(ev.span_id, None);
        let ev = decode(LLM.as_bytes(), Some(b"garbage")).unwrap();
        assert_eq!(ev.trace_id, None);
    }

    proptest! {
        #[test]
        fn never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode(&bytes, Some(&bytes));
        }

        #[test]
        fn never_panics_on_mutated_events(cut in 0usize..LLM.len(), byte in any::<u8>()) {
            let mut bytes = LLM.as_bytes().to_vec();
            bytes[cut] = byte;
            let _ = decode(&bytes, None);
            let _ = decode(&bytes[..cut], None);
        }
    }
}
