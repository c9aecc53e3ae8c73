//! Writing the small pieces of JSON and text that several stages emit (UTC timestamps, hex), the one
//! rule of what JSON the daemon reads ([`parse`]), and the reading of a `\u` escape
//! ([`unicode_escape`]) for the readers that go faster than that rule.

use chrono::{DateTime, Datelike, Timelike, Utc};
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use std::fmt;
use std::io::Write as _;

/// Why a document is not JSON by the daemon's rule ([`parse`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsonError {
    /// Some object holds the same key twice: readers disagree on which one counts.
    #[error("duplicate key {0:?}")]
    DuplicateKey(String),
    /// Anything else: a syntax error, invalid UTF-8, a lone surrogate, a number beyond f64, nesting
    /// deeper than 128 (serde_json's message, with its line and column).
    #[error("{0}")]
    Unreadable(String),
}

/// The one rule of what JSON is, shared by decoding (which refuses what it breaks) and redaction (which
/// reads by it): RFC 8259 text in UTF-8, with no lone surrogate, every number a finite f64 (or an
/// integer of 64 bits), nesting at most 128 deep, and no key twice in one object. What decoding accepts,
/// the redactor can read; what the redactor could not read was refused, dead-lettered, at decoding.
pub fn parse(bytes: &[u8]) -> Result<Value, JsonError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = Strict::deserialize(&mut de).and_then(|v| de.end().map(|()| v.0));
    value.map_err(|e| {
        let text = e.to_string();
        let Some(rest) = text.strip_prefix(DUPLICATE) else {
            return JsonError::Unreadable(text);
        };
        // A key given twice is only the fault of a text that is JSON otherwise: the duplicate may come
        // before a syntax error further on (found by fuzzing), which is then what is wrong.
        if let Err(error) = serde_json::from_slice::<serde::de::IgnoredAny>(bytes) {
            return JsonError::Unreadable(error.to_string());
        }
        let key = rest.rsplit_once(" at line ").map_or(rest, |(key, _)| key);
        JsonError::DuplicateKey(key.to_owned())
    })
}

/// The deepest nesting an event may have: a forwarded document embeds the event one level down (and
/// the redactor reads documents by [`parse`], to 128), so events keep a margin below that.
pub const EVENT_MAX_DEPTH: usize = 100;

/// [`parse`] for an event: the same rule, with nesting at most [`EVENT_MAX_DEPTH`], so that any document
/// embedding an event the decoder accepted is one the redactor can read.
pub fn parse_event(bytes: &[u8]) -> Result<Value, JsonError> {
    let value = parse(bytes)?;
    if depth(&value) > EVENT_MAX_DEPTH {
        return Err(JsonError::Unreadable(format!(
            "nesting deeper than {EVENT_MAX_DEPTH}"
        )));
    }
    Ok(value)
}

/// How deep `value` nests: 0 for a scalar, 1 for `[]` or `{}`.
fn depth(value: &Value) -> usize {
    match value {
        Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        Value::Object(map) => 1 + map.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// How the visitor marks a duplicate key in serde's error text (a custom error can carry only text).
const DUPLICATE: &str = "\u{0}duplicate key: ";

/// A `Value` read by the rule: as serde_json reads one, but a key given twice is an error.
struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("number out of range"))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(Strict(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let Strict(value) = map.next_value()?;
            if out.contains_key(&key) {
                return Err(de::Error::custom(format_args!("{DUPLICATE}{key}")));
            }
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }
}

/// Appends `t` as RFC 3339 UTC with milliseconds and `Z`.
pub fn write_timestamp(out: &mut Vec<u8>, t: DateTime<Utc>) {
    let year = t.year();
    if (0..=9999).contains(&year) {
        // Digit by digit: the formatting machinery costs more than the rest of a document's fields.
        let two = |n: u32| [b'0' + (n / 10 % 10) as u8, b'0' + (n % 10) as u8];
        let (y, ms) = (year as u32, t.timestamp_subsec_millis().min(999));
        let [y0, y1] = two(y / 100);
        let [y2, y3] = two(y);
        let [mo0, mo1] = two(t.month());
        let [d0, d1] = two(t.day());
        let [h0, h1] = two(t.hour());
        let [mi0, mi1] = two(t.minute());
        let [s0, s1] = two(t.second());
        let [m1, m2] = two(ms);
        out.extend_from_slice(&[
            y0,
            y1,
            y2,
            y3,
            b'-',
            mo0,
            mo1,
            b'-',
            d0,
            d1,
            b'T',
            h0,
            h1,
            b':',
            mi0,
            mi1,
            b':',
            s0,
            s1,
            b'.',
            b'0' + (ms / 100) as u8,
            m1,
            m2,
            b'Z',
        ]);
        return;
    }
    let _ = write!(
        out,
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        t.month(),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.timestamp_subsec_millis().min(999)
    );
}

/// The character of a JSON `\uXXXX` escape whose four hexadecimal digits start at `at` (just after
/// the `\u`), and how many bytes from `at` it took: 4, or 10 for a surrogate pair (a high surrogate
/// followed by the escape of a low one). `None` for anything else: a digit that is not hexadecimal, or
/// a lone or reversed surrogate, which the one rule refuses ([`parse`]).
pub fn unicode_escape(bytes: &[u8], at: usize) -> Option<(char, usize)> {
    let code = hex4(bytes, at)?;
    if !(0xD800..=0xDBFF).contains(&code) {
        return char::from_u32(code).map(|c| (c, 4)); // `None` for a lone low surrogate
    }
    if bytes.get(at + 4..at + 6)? != b"\\u" {
        return None;
    }
    let low = hex4(bytes, at + 6)?;
    if !(0xDC00..=0xDFFF).contains(&low) {
        return None;
    }
    char::from_u32(0x10000 + ((code - 0xD800) << 10 | (low - 0xDC00))).map(|c| (c, 10))
}

/// The four hexadecimal digits at `at`, as a number.
fn hex4(bytes: &[u8], at: usize) -> Option<u32> {
    let digits = bytes.get(at..at + 4)?;
    digits
        .iter()
        .try_fold(0, |n, &d| Some(n << 4 | char::from(d).to_digit(16)?))
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    push_hex(bytes, &mut s);
    s
}

/// Appends `bytes` to `out` as lowercase hex.
pub fn push_hex(bytes: &[u8], out: &mut String) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 15)]));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rule_refuses_what_readers_would_disagree_on() {
        let deep = |n: usize| format!("{}1{}", "[".repeat(n), "]".repeat(n));
        assert!(parse(deep(127).as_bytes()).is_ok());
        for (text, why) in [
            (r#"{"x":1e400}"#.to_owned(), "number out of range"),
            (r#"{"x":-1e999}"#.to_owned(), "number out of range"),
            (
                format!(r#"{{"x":1{}}}"#, "0".repeat(400)),
                "number out of range",
            ),
            (r#"{"x":"\ud800"}"#.to_owned(), "escape"),
            // A key twice before a syntax error (the fuzzer's find): the syntax is what is wrong.
            (
                r#"{"fa{":[[{"fa{":[[{"{":2,"{":2,2="#.to_owned(),
                "key must be a string",
            ),
            (r#"{"x":"\udc00x"}"#.to_owned(), "surrogate"),
            (deep(200), "recursion limit"),
            ("{\"x\":\"\u{1}\"}".to_owned(), "control character"),
            (r#"{"x":1} {}"#.to_owned(), "trailing characters"),
        ] {
            match parse(text.as_bytes()) {
                Err(JsonError::Unreadable(message)) => {
                    assert!(message.contains(why), "{text}: {message}")
                }
                other => panic!("{text}: {other:?}"),
            }
        }
        for text in [
            r#"{"a":1,"a":2}"#,
            r#"{"n":{"k":[{"a":1,"b":{},"a":null}]}}"#,
            r#"{"\u0061":1,"a":2}"#,
        ] {
            assert_eq!(
                parse(text.as_bytes()),
                Err(JsonError::DuplicateKey("a".into())),
                "{text}"
            );
        }
        // What serde_json reads otherwise, this reads the same.
        let text = r#"{"a":[1,-2,3.5,1e300,18446744073709551615,-9223372036854775808],"b":"\ud83d\ude00","c":{"d":null,"e":true}}"#;
        assert_eq!(
            parse(text.as_bytes()).unwrap(),
            serde_json::from_str::<Value>(text).unwrap()
        );
        // An event keeps a margin for being embedded.
        let event = |n: usize| format!(r#"{{"x":{}}}"#, deep(n - 1));
        assert!(parse_event(event(EVENT_MAX_DEPTH).as_bytes()).is_ok());
        assert!(parse_event(event(EVENT_MAX_DEPTH + 1).as_bytes()).is_err());
        assert!(parse(format!(r#"{{"doc":{}}}"#, event(EVENT_MAX_DEPTH)).as_bytes()).is_ok());
    }

    proptest::proptest! {
        /// The digit-by-digit timestamp is what the formatting machinery writes (leap seconds included:
        /// second 59 and millisecond 999, as before), and chrono's RFC 3339 form otherwise.
        #[test]
        fn timestamps_are_written_as_formatting_writes_them(
            secs in -70_000_000_000i64..260_000_000_000, nanos in 0u32..1_000_000_000, leap in proptest::bool::weighted(0.1)
        ) {
            let t = DateTime::from_timestamp(secs / 60 * 60 + 59, nanos + 1_000_000_000)
                .filter(|_| leap)
                .unwrap_or_else(|| DateTime::from_timestamp(secs, nanos).expect("in chrono's range"));
            let mut ours = Vec::new();
            write_timestamp(&mut ours, t);
            let ours = String::from_utf8(ours).unwrap();
            let expected = format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
                t.year(), t.month(), t.day(), t.hour(), t.minute(), t.second(),
                t.timestamp_subsec_millis().min(999)
            );
            proptest::prop_assert_eq!(&ours, &expected);
            if !leap && (0..=9999).contains(&t.year()) {
                proptest::prop_assert_eq!(ours, t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
            }
        }
    }
}
