//! The first pass: JSON bytes -> a flat struct of loosely typed, borrowed fields; then the contract's checks.
//!
//! Every field this version knows is read as a [`Scalar`] whatever its JSON type, so type errors are
//! reported by our checks (with the field's name and a bounded reason) rather than by serde's messages.
//! Unknown keys are skipped here; the forward side keeps them from the original bytes.

// The one module allowed `unsafe` (ARCHITECTURE.md): each block carries a SAFETY comment.
#[allow(unsafe_code)]
mod fast;

pub(crate) use fast::plain_run;

use super::event::*;
use super::{Invalid, InvalidReason};
use crate::shared::json::JsonError;
use chrono::{DateTime, Utc};
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use std::borrow::Cow;
use std::fmt;

/// Any JSON value, reduced to what the contract's checks need.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Scalar<'a> {
    Str(Cow<'a, str>),
    Int(i64),
    UInt(u64),
    Float(f64),
    Bool,
    Null,
    /// An object or an array (its content skipped).
    Compound,
}

impl<'de: 'a, 'a> Deserialize<'de> for Scalar<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ScalarVisitor;
        impl<'de> Visitor<'de> for ScalarVisitor {
            type Value = Scalar<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Scalar::Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Scalar::Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Scalar::Str(Cow::Owned(v)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(Scalar::Int(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(Scalar::UInt(v))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                Ok(Scalar::Float(v))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
                Ok(Scalar::Bool)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Scalar::Null)
            }
            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Scalar::Null)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Scalar::Compound)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Scalar::Compound)
            }
        }
        deserializer.deserialize_any(ScalarVisitor)
    }
}

/// Declares [`RawEvent`] with one `Option<Scalar>` per known key, and its key -> field lookup.
macro_rules! raw_event {
    ($($field:ident $(= $key:literal)?,)*) => {
        /// Every field any event type of this version knows, as sent.
        #[derive(Debug, Default, Deserialize)]
        pub(super) struct RawEvent<'a> {
            $(
                #[serde(borrow $(, rename = $key)?)]
                $field: Option<Scalar<'a>>,
            )*
        }

        // The fast reader marks the fields it has seen in a `u32`.
        const _: () = assert!([$(stringify!($field)),*].len() <= 32);

        impl<'a> RawEvent<'a> {
            /// The field a key names, with its position (for duplicate detection); `None` for an unknown key.
            #[inline]
            fn slot(&mut self, key: &str) -> Option<(u32, &mut Option<Scalar<'a>>)> {
                let mut index = 0;
                $(
                    if key == raw_event!(@key $field $($key)?) {
                        return Some((index, &mut self.$field));
                    }
                    index += 1;
                )*
                let _ = index;
                None
            }

            /// Every field, in declaration order.
            #[cfg(test)]
            fn fields(&self) -> impl Iterator<Item = &Option<Scalar<'a>>> {
                [$(&self.$field,)*].into_iter()
            }
        }
    };
    (@key $field:ident $key:literal) => { $key };
    (@key $field:ident) => { stringify!($field) };
}

raw_event! {
    event_id,
    kind = "type",
    occurred_at,
    organization,
    schema_version,
    trace_id,
    span_id,
    run_id,
    intent,
    outcome,
    latency_ms,
    tokens_prompt,
    tokens_completion,
    model,
    failure_reason,
    automation_id,
    integration,
    status_code,
    error,
    automation_version,
    duration_ms,
    trigger,
    request_id,
    stage,
    intake_at,
    channel,
}

/// Parses the bytes into `raw` (which must be empty), classifying what serde refuses. Filling the caller's
/// struct rather than returning one saves copying its ~800 bytes per event.
pub(super) fn parse<'a>(payload: &'a [u8], raw: &mut RawEvent<'a>) -> Result<(), Invalid> {
    // Validating the UTF-8 of the whole payload at once (word at a time over ASCII) and parsing it as
    // text is faster than serde_json checking string by string; bytes that are not UTF-8 go the byte
    // way, for the same error.
    if let Ok(text) = std::str::from_utf8(payload) {
        if fast::read(text, raw).is_some() {
            return Ok(());
        }
        // The fast reader may have filled some fields before giving up.
        *raw = RawEvent::default();
    }
    // The one rule of what JSON is, which the redactor reads by too (`shared::json`): a document it
    // refuses is refused here, so nothing decoded can be unreadable to the redactor.
    match crate::shared::json::parse_event(payload) {
        Ok(_) => {}
        Err(JsonError::DuplicateKey(key)) => {
            return Err(Invalid {
                reason: InvalidReason::DuplicateField,
                detail: Cow::Owned(format!("the key {key:?} is given twice")),
            })
        }
        Err(JsonError::Unreadable(_)) if payload.starts_with(b"\xef\xbb\xbf") => {
            return Err(Invalid {
                reason: InvalidReason::NotJson,
                detail: Cow::Borrowed("starts with a byte-order mark, which JSON text must not"),
            })
        }
        Err(JsonError::Unreadable(why)) => {
            return Err(Invalid {
                reason: InvalidReason::NotJson,
                detail: Cow::Owned(why),
            })
        }
    }
    // The rule refused what is not JSON and every key given twice, and every known field takes any
    // value: all that is left to refuse is a document that is not an object. That is looked at first:
    // serde would fill the struct from an array long enough, field by field in order.
    let not_object = || Invalid {
        reason: InvalidReason::NotObject,
        detail: Cow::Borrowed("the document is not an object"),
    };
    let first = payload
        .iter()
        .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'));
    if first != Some(&b'{') {
        return Err(not_object());
    }
    let parsed = serde_json::from_slice::<RawEvent<'_>>(payload);
    parsed.map(|parsed| *raw = parsed).map_err(|_| not_object())
}

type Checked<T> = Result<T, Invalid>;

#[cold]
fn missing(field: &'static str) -> Invalid {
    Invalid::field(InvalidReason::MissingField, field, "")
}

#[cold]
fn wrong(field: &'static str, expected: &'static str) -> Invalid {
    Invalid::field(InvalidReason::WrongType, field, expected)
}

#[cold]
fn bad(field: &'static str, why: &'static str) -> Invalid {
    Invalid::field(InvalidReason::BadValue, field, why)
}

/// `null` counts as absent.
#[inline]
fn present<'s, 'a>(value: &'s Option<Scalar<'a>>) -> Option<&'s Scalar<'a>> {
    match value {
        None | Some(Scalar::Null) => None,
        Some(v) => Some(v),
    }
}

#[inline]
fn opt_str<'a>(value: Option<Scalar<'a>>, field: &'static str) -> Checked<Option<Cow<'a, str>>> {
    match value {
        None | Some(Scalar::Null) => Ok(None),
        Some(Scalar::Str(s)) => Ok(Some(s)),
        Some(_) => Err(wrong(field, "expected a string")),
    }
}

/// A required, non-empty string.
#[inline]
fn req_str<'a>(value: Option<Scalar<'a>>, field: &'static str) -> Checked<Cow<'a, str>> {
    match opt_str(value, field)? {
        None => Err(missing(field)),
        Some(s) if s.is_empty() => Err(bad(field, "must not be empty")),
        Some(s) => Ok(s),
    }
}

#[inline]
fn opt_number(value: &Option<Scalar<'_>>, field: &'static str) -> Checked<Option<f64>> {
    let n = match present(value) {
        None => return Ok(None),
        Some(Scalar::Int(i)) => *i as f64,
        Some(Scalar::UInt(u)) => *u as f64,
        Some(Scalar::Float(f)) => *f,
        Some(_) => return Err(wrong(field, "expected a number")),
    };
    if n < 0.0 {
        return Err(bad(field, "must be >= 0"));
    }
    Ok(Some(n))
}

/// A non-negative integer; a float with no fractional part counts (as in JSON Schema's `integer`).
#[inline]
fn opt_count(value: &Option<Scalar<'_>>, field: &'static str) -> Checked<Option<u64>> {
    match present(value) {
        None => Ok(None),
        Some(Scalar::UInt(u)) => Ok(Some(*u)),
        Some(Scalar::Int(_)) => Err(bad(field, "must be >= 0")),
        Some(Scalar::Float(f)) if f.fract() == 0.0 && *f >= 0.0 && *f < u64::MAX as f64 => {
            Ok(Some(*f as u64))
        }
        Some(Scalar::Float(f)) if f.fract() == 0.0 && *f < 0.0 => Err(bad(field, "must be >= 0")),
        Some(Scalar::Float(f)) if f.fract() == 0.0 => {
            Err(bad(field, "too large (above 18446744073709551615)"))
        }
        Some(_) => Err(wrong(field, "expected an integer")),
    }
}

fn timestamp(value: Option<Scalar<'_>>, field: &'static str) -> Checked<Option<DateTime<Utc>>> {
    match opt_str(value, field)? {
        None => Ok(None),
        Some(text) => super::rfc3339::parse(&text).map(Some).ok_or_else(|| {
            Invalid::field(
                InvalidReason::BadTimestamp,
                field,
                "expected an RFC 3339 timestamp",
            )
        }),
    }
}

#[inline]
fn enum_value<T>(
    value: Option<Scalar<'_>>,
    field: &'static str,
    parse: fn(&str) -> Option<T>,
) -> Checked<T> {
    let text = req_str(value, field)?;
    parse(&text).ok_or_else(|| bad(field, "not one of the allowed values"))
}

/// `n` hex digits, lowercased.
fn hex_id<'a>(
    value: Option<Scalar<'a>>,
    field: &'static str,
    digits: usize,
) -> Checked<Option<Cow<'a, str>>> {
    let Some(text) = opt_str(value, field)? else {
        return Ok(None);
    };
    // One pass with no early exit (so that it vectorises): whether every byte is a hex digit, and whether
    // any is upper case.
    let (mut other, mut upper) = (false, false);
    for b in text.bytes() {
        let up = matches!(b, b'A'..=b'F');
        other |= !(b.is_ascii_digit() || matches!(b, b'a'..=b'f') || up);
        upper |= up;
    }
    let hex = text.len() == digits && !other;
    match (hex, upper) {
        (false, _) => Err(bad(field, "expected lowercase hex of the W3C length")),
        (true, true) => Ok(Some(Cow::Owned(text.to_ascii_lowercase()))),
        (true, false) => Ok(Some(text)),
    }
}

impl<'a> RawEvent<'a> {
    /// Applies the contract: required fields, types, values.
    pub(super) fn validate(&mut self) -> Checked<Event<'a>> {
        let event_id = req_str(self.event_id.take(), "event_id")?;
        let kind = req_str(self.kind.take(), "type")?;
        let occurred_at = timestamp(self.occurred_at.take(), "occurred_at")?
            .ok_or_else(|| missing("occurred_at"))?;
        let organization = req_str(self.organization.take(), "organization")?;
        let schema_version = match opt_count(&self.schema_version, "schema_version")? {
            None => 1,
            Some(0) => return Err(bad("schema_version", "must be >= 1")),
            Some(v) => i64::try_from(v).map_err(|_| bad("schema_version", "too large"))?,
        };
        let trace_id = hex_id(self.trace_id.take(), "trace_id", 32)?;
        let span_id = hex_id(self.span_id.take(), "span_id", 16)?;

        let body = match EventType::from_name(&kind) {
            EventType::LlmRun => Body::LlmRun(LlmRun {
                run_id: req_str(self.run_id.take(), "run_id")?,
                intent: req_str(self.intent.take(), "intent")?,
                outcome: enum_value(self.outcome.take(), "outcome", LlmOutcome::parse)?,
                latency_ms: opt_number(&self.latency_ms, "latency_ms")?
                    .ok_or_else(|| missing("latency_ms"))?,
                tokens_prompt: opt_count(&self.tokens_prompt, "tokens_prompt")?,
                tokens_completion: opt_count(&self.tokens_completion, "tokens_completion")?,
                model: opt_str(self.model.take(), "model")?,
                failure_reason: opt_str(self.failure_reason.take(), "failure_reason")?,
                automation_id: opt_str(self.automation_id.take(), "automation_id")?,
            }),
            EventType::IntegrationCall => Body::IntegrationCall(IntegrationCall {
                integration: req_str(self.integration.take(), "integration")?,
                outcome: enum_value(self.outcome.take(), "outcome", IntegrationOutcome::parse)?,
                latency_ms: opt_number(&self.latency_ms, "latency_ms")?,
                status_code: opt_count(&self.status_code, "status_code")?,
                error: opt_str(self.error.take(), "error")?,
                automation_id: opt_str(self.automation_id.take(), "automation_id")?,
            }),
            EventType::AutomationRun => Body::AutomationRun(AutomationRun {
                automation_id: req_str(self.automation_id.take(), "automation_id")?,
                automation_version: match &self.automation_version {
                    Some(Scalar::Str(_)) => {
                        req_str(self.automation_version.take(), "automation_version")?
                    }
                    other => match opt_count(other, "automation_version")? {
                        Some(v) => Cow::Owned(v.to_string()),
                        None => return Err(missing("automation_version")),
                    },
                },
                outcome: enum_value(self.outcome.take(), "outcome", AutomationOutcome::parse)?,
                duration_ms: opt_number(&self.duration_ms, "duration_ms")?,
                trigger: opt_str(self.trigger.take(), "trigger")?,
            }),
            EventType::RequestLifecycle => Body::RequestLifecycle(RequestLifecycle {
                request_id: req_str(self.request_id.take(), "request_id")?,
                stage: enum_value(self.stage.take(), "stage", Stage::parse)?,
                intake_at: timestamp(self.intake_at.take(), "intake_at")?,
                channel: opt_str(self.channel.take(), "channel")?,
            }),
            EventType::Unknown => Body::Unknown { type_name: kind },
        };
        Ok(Event {
            event_id,
            occurred_at,
            organization,
            schema_version,
            trace_id,
            span_id,
            body,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// `hex_id` accepts exactly the strings of the right length made of hex digits, and lowercases them.
        #[test]
        fn hex_id_checks_and_lowercases(
            text in prop_oneof!["[0-9a-fA-F]{14,18}", "[0-9a-f]{16}", "[0-9a-gA-G/:@`]{16}", ".{0,18}"]
        ) {
            let got = hex_id(Some(Scalar::Str(Cow::Borrowed(&text))), "span_id", 16);
            let expected = (text.len() == 16 && text.bytes().all(|b| b.is_ascii_hexdigit()))
                .then(|| text.to_ascii_lowercase());
            match (got, expected) {
                (Ok(Some(id)), Some(want)) => {
                    prop_assert_eq!(&*id, want.as_str());
                    // Already lowercase: borrowed, not copied.
                    prop_assert_eq!(matches!(id, Cow::Borrowed(_)), want == text);
                }
                (Err(e), None) => prop_assert_eq!(e.reason, InvalidReason::BadValue),
                (got, expected) => prop_assert!(false, "{:?} vs {:?}", got, expected),
            }
        }
    }
}
