//! The fast path of [`super::parse`]: a reader for the one shape events have, a JSON object whose known
//! keys hold scalars.
//!
//! It reads the (already UTF-8-checked) text once, left to right, filling the [`RawEvent`] in place;
//! unknown keys and compound values are checked against the JSON grammar and skipped. It never decides
//! that a record is invalid: on anything it does not handle (a syntax error, an escaped key, a key given
//! twice, a negative or very long number, deep nesting, ...) it gives up with `None`, and the caller runs
//! serde_json, which both decides and explains. So the only way this reader can be wrong is to accept what
//! serde_json refuses or to read a value differently; `tests` compares the two on generated and mutated
//! documents. Floats are read with the standard library's correctly rounded parser (serde_json's default
//! one may differ in the last bit).
//!
//! Strings are scanned 16 bytes at a time with SSE2 on x86_64 (8 at a time with integer arithmetic
//! elsewhere) for the quote, backslash or control character that ends their plain run.

use super::{RawEvent, Scalar};
use std::borrow::Cow;

/// Nesting deeper than this is left to serde_json (whose own limit is 128).
const MAX_DEPTH: usize = 64;

/// An object with more unknown keys than this is left to serde_json (the duplicate check here is a
/// linear scan).
const MAX_KEYS: usize = 32;

/// Reads `text` into `out` (which must be empty), or `None` to let serde_json decide.
pub(super) fn read<'a>(text: &'a str, out: &mut RawEvent<'a>) -> Option<()> {
    let mut r = Reader {
        text,
        bytes: text.as_bytes(),
        at: 0,
        keys: Vec::new(),
    };
    let mut seen = 0u32;
    r.skip_ws();
    r.expect(b'{')?;
    r.skip_ws();
    if r.peek()? == b'}' {
        r.at += 1;
    } else {
        loop {
            r.expect(b'"')?;
            // An escaped key is left to serde_json.
            let Cow::Borrowed(key) = r.string()? else {
                return None;
            };
            r.skip_ws();
            r.expect(b':')?;
            r.skip_ws();
            match out.slot(key) {
                Some((index, slot)) => {
                    let bit = 1u32 << index;
                    if seen & bit != 0 {
                        return None; // serde_json names the duplicate.
                    }
                    seen |= bit;
                    *slot = r.scalar()?;
                }
                None => {
                    // Unknown keys of the top-level object are kept from index 0 of `keys`.
                    r.new_key(0, key)?;
                    r.skip_value()?;
                }
            }
            r.skip_ws();
            match r.next()? {
                b',' => r.skip_ws(),
                b'}' => break,
                _ => return None,
            }
        }
    }
    r.skip_ws();
    (r.at == r.bytes.len()).then_some(())
}

struct Reader<'a> {
    text: &'a str,
    bytes: &'a [u8],
    at: usize,
    /// The unknown keys of the objects still open, outermost first (each object's from the index its
    /// entry in `skip_value`'s stack records), for the rule's duplicate check.
    keys: Vec<&'a str>,
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// A mask with the high bit set in (at least) the first byte of `word` that ends a run of plain string
/// content: a quote, a backslash or a control character. Bytes after the first flagged one may be flagged
/// spuriously (borrows), so only the lowest flag is meaningful.
#[inline]
fn specials(word: u64) -> u64 {
    let zero_in = |v: u64| v.wrapping_sub(ONES) & !v & HIGHS;
    zero_in(word ^ (ONES * u64::from(b'"')))
        | zero_in(word ^ (ONES * u64::from(b'\\')))
        | (word.wrapping_sub(ONES * 0x20) & !word & HIGHS)
}

/// The bits of the bytes of `chunk` that end a run of plain string content (a quote, a backslash or a
/// control character), bit `i` for byte `i`.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[target_feature(enable = "sse2")]
#[inline]
fn specials16(chunk: &[u8; 16]) -> u32 {
    use std::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_max_epu8, _mm_movemask_epi8, _mm_or_si128,
        _mm_set1_epi8,
    };
    // SAFETY: `chunk` is 16 readable bytes, and `_mm_loadu_si128` reads exactly 16 bytes from the
    // pointer, with no alignment requirement.
    let word = unsafe { _mm_loadu_si128(chunk.as_ptr().cast::<__m128i>()) };
    let below_space = _mm_set1_epi8(0x1f);
    let special = _mm_or_si128(
        _mm_or_si128(
            _mm_cmpeq_epi8(word, _mm_set1_epi8(b'"' as i8)),
            _mm_cmpeq_epi8(word, _mm_set1_epi8(b'\\' as i8)),
        ),
        // A control character: max(byte, 0x1f) is 0x1f (unsigned).
        _mm_cmpeq_epi8(_mm_max_epu8(word, below_space), below_space),
    );
    _mm_movemask_epi8(special) as u32
}

#[inline]
fn is_special(b: u8) -> bool {
    b == b'"' || b == b'\\' || b < 0x20
}

/// The length of the run of plain string content that `bytes` starts with: up to the first quote,
/// backslash or control character (or the end). Sixteen bytes at a time with SSE2 on x86_64, else
/// eight with integer arithmetic. The fast reader's scan, and the redactor's string reader's.
#[inline(always)]
pub(crate) fn plain_run(bytes: &[u8]) -> usize {
    let mut at = 0;
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    while let Some(chunk) = bytes.get(at..at + 16) {
        let chunk: &[u8; 16] = chunk.try_into().expect("sixteen bytes");
        // SAFETY: `specials16` only needs SSE2, which this build enables (the `cfg` above).
        let mask = unsafe { specials16(chunk) };
        if mask != 0 {
            return at + mask.trailing_zeros() as usize;
        }
        at += 16;
    }
    while let Some(chunk) = bytes.get(at..at + 8) {
        let word = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
        let mask = specials(word);
        if mask != 0 {
            return at + (mask.trailing_zeros() / 8) as usize;
        }
        at += 8;
    }
    while at < bytes.len() && !is_special(bytes[at]) {
        at += 1;
    }
    at
}

impl<'a> Reader<'a> {
    #[inline]
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    #[inline]
    fn next(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.at += 1;
        Some(b)
    }

    #[inline]
    fn expect(&mut self, want: u8) -> Option<()> {
        (self.next()? == want).then_some(())
    }

    #[inline]
    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\t' | b'\r') = self.peek() {
            self.at += 1;
        }
    }

    /// Moves to the first quote, backslash or control character at or after the cursor (or the end).
    #[inline(always)]
    fn run_of_plain(&mut self) {
        self.at += plain_run(&self.bytes[self.at..]);
    }

    /// The text between `start` and the cursor. Both ends must be where the cursor stopped at an ASCII
    /// byte (or the string's start, just after an ASCII quote), which are character boundaries; the check
    /// stays (it is two compares) so that a mistake here is a `None`, never a panic.
    #[inline]
    fn since(&self, start: usize) -> Option<&'a str> {
        self.text.get(start..self.at)
    }

    /// The rest of a string (the opening quote consumed), borrowed when it has no escapes.
    #[inline(always)]
    fn string(&mut self) -> Option<Cow<'a, str>> {
        let start = self.at;
        self.run_of_plain();
        if self.peek()? == b'"' {
            debug_assert!(self.text.is_char_boundary(start) && self.text.is_char_boundary(self.at));
            // SAFETY: `start <= self.at < text.len()` (the cursor only moves forward, and `peek` just found a
            // byte at `self.at`). Both are character boundaries of `text`, which is valid UTF-8: `start`
            // follows the opening quote, an ASCII byte (every caller consumes it just before), and `self.at`
            // holds the closing quote, an ASCII byte; a byte below 0x80 is never inside a multi-byte
            // character. So the range is in bounds and the slice is valid UTF-8.
            let s = unsafe { self.text.get_unchecked(start..self.at) };
            self.at += 1;
            Some(Cow::Borrowed(s))
        } else {
            self.string_with_escapes(start).map(Cow::Owned)
        }
    }

    /// The rest of a string whose plain run from `start` ended at the cursor on something other than a
    /// quote: a backslash (escapes, decoded into a new string) or a control character (`None`).
    #[cold]
    #[inline(never)]
    fn string_with_escapes(&mut self, start: usize) -> Option<String> {
        if self.peek()? != b'\\' {
            return None; // a control character
        }
        let mut owned = String::with_capacity(self.at - start + 16);
        owned.push_str(self.since(start)?);
        loop {
            match self.next()? {
                b'"' => return Some(owned),
                b'\\' => owned.push(self.escape()?),
                _ => return None, // a control character
            }
            let from = self.at;
            self.run_of_plain();
            owned.push_str(self.since(from)?);
        }
    }

    /// One escape after its backslash. A lone surrogate is left to serde_json, which refuses it.
    fn escape(&mut self) -> Option<char> {
        Some(match self.next()? {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => self.unicode_escape()?,
            _ => return None,
        })
    }

    /// The character of a `\uXXXX` escape after its `\u` (a surrogate pair is two escapes); `None`
    /// for a lone surrogate.
    fn unicode_escape(&mut self) -> Option<char> {
        let (c, len) = crate::shared::json::unicode_escape(self.bytes, self.at)?;
        self.at += len;
        Some(c)
    }

    /// Skips the rest of a string (the opening quote consumed), checking its escapes; a lone surrogate
    /// escape is left to serde_json, which refuses it (`shared::json::parse`).
    fn skip_string(&mut self) -> Option<()> {
        loop {
            self.run_of_plain();
            match self.next()? {
                b'"' => return Some(()),
                b'\\' => match self.next()? {
                    b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => {}
                    b'u' => {
                        self.unicode_escape()?;
                    }
                    _ => return None,
                },
                _ => return None,
            }
        }
    }

    /// Records `key` as a key of the object whose keys start at `from`; `None` (left to serde_json, which
    /// names it) when that object has it already, or has too many keys to check here.
    fn new_key(&mut self, from: usize, key: &'a str) -> Option<()> {
        let object = self.keys.get(from..)?;
        if object.len() >= MAX_KEYS || object.contains(&key) {
            return None;
        }
        self.keys.push(key);
        Some(())
    }

    /// Moves over a skipped number, checking it is one the rule admits: a finite f64. Without an
    /// exponent and with at most 300 digits it always is; otherwise it is parsed to find out.
    fn skip_number(&mut self) -> Option<()> {
        let start = self.at;
        let float = self.number_text()?;
        let text = self.text.get(start..self.at)?;
        if (float && text.bytes().any(|b| b | 0x20 == b'e')) || text.len() > 300 {
            let value: f64 = text.parse().ok()?;
            return value.is_finite().then_some(());
        }
        Some(())
    }

    /// A known field's value.
    fn scalar(&mut self) -> Option<Option<Scalar<'a>>> {
        Some(Some(match self.peek()? {
            b'"' => {
                self.at += 1;
                Scalar::Str(self.string()?)
            }
            b'0'..=b'9' => self.number()?,
            b't' => {
                self.literal(b"true")?;
                Scalar::Bool
            }
            b'f' => {
                self.literal(b"false")?;
                Scalar::Bool
            }
            b'n' => {
                self.literal(b"null")?;
                return Some(None); // as serde reads `null` into an `Option`
            }
            b'{' | b'[' => {
                self.skip_value()?;
                Scalar::Compound
            }
            _ => return None, // negative numbers included: serde_json's rules for them are subtle
        }))
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        let end = self.at + word.len();
        (self.bytes.get(self.at..end)? == word).then(|| self.at = end)
    }

    /// Moves over `[0-9]*`, returning how many digits there were.
    #[inline]
    fn digits(&mut self) -> usize {
        let start = self.at;
        while let Some(b'0'..=b'9') = self.peek() {
            self.at += 1;
        }
        self.at - start
    }

    /// Moves over a number by the JSON grammar (an optional minus sign included); returns whether it had a
    /// fraction or an exponent.
    fn number_text(&mut self) -> Option<bool> {
        if self.peek()? == b'-' {
            self.at += 1;
        }
        match self.next()? {
            b'0' => {}
            b'1'..=b'9' => {
                self.digits();
            }
            _ => return None,
        }
        let mut float = false;
        if self.peek() == Some(b'.') {
            self.at += 1;
            if self.digits() == 0 {
                return None;
            }
            float = true;
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.at += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.at += 1;
            }
            if self.digits() == 0 {
                return None;
            }
            float = true;
        }
        Some(float)
    }

    /// A non-negative number: an integer that fits in a `u64`, or a finite float.
    fn number(&mut self) -> Option<Scalar<'a>> {
        let start = self.at;
        let float = self.number_text()?;
        let text = self.text.get(start..self.at)?;
        if float {
            let value: f64 = text.parse().ok()?;
            return value.is_finite().then_some(Scalar::Float(value));
        }
        // Past u64, serde_json reads a float: left to it.
        text.parse().ok().map(Scalar::UInt)
    }

    /// Skips one value of any kind, checking it against the grammar.
    fn skip_value(&mut self) -> Option<()> {
        // Containers still open, innermost last: `true` for an object, and where its keys start in `keys`.
        let mut open: Vec<(bool, usize)> = Vec::new();
        loop {
            // A value.
            match self.next()? {
                b'"' => self.skip_string()?,
                b'-' | b'0'..=b'9' => {
                    self.at -= 1;
                    self.skip_number()?;
                }
                b't' => {
                    self.at -= 1;
                    self.literal(b"true")?
                }
                b'f' => {
                    self.at -= 1;
                    self.literal(b"false")?
                }
                b'n' => {
                    self.at -= 1;
                    self.literal(b"null")?
                }
                opener @ (b'{' | b'[') => {
                    if open.len() >= MAX_DEPTH {
                        return None;
                    }
                    let object = opener == b'{';
                    self.skip_ws();
                    if self.peek()? == if object { b'}' } else { b']' } {
                        self.at += 1;
                    } else {
                        let from = self.keys.len();
                        open.push((object, from));
                        if object {
                            self.member_key(from)?;
                        }
                        continue;
                    }
                }
                _ => return None,
            }
            // After a value: close what ends here, stop at the next member or element.
            loop {
                let Some(&(object, from)) = open.last() else {
                    return Some(());
                };
                self.skip_ws();
                match (self.next()?, object) {
                    (b',', true) => {
                        self.skip_ws();
                        self.member_key(from)?;
                        break;
                    }
                    (b',', false) => {
                        self.skip_ws();
                        break;
                    }
                    (b'}', true) | (b']', false) => {
                        open.pop();
                        self.keys.truncate(from);
                    }
                    _ => return None,
                }
            }
        }
    }

    /// `"key" :` inside a skipped object whose keys start at `from`, leaving the cursor at its value. An
    /// escaped key is left to serde_json (its duplicates cannot be found by comparing bytes).
    fn member_key(&mut self, from: usize) -> Option<()> {
        self.expect(b'"')?;
        let Cow::Borrowed(key) = self.string()? else {
            return None;
        };
        self.new_key(from, key)?;
        self.skip_ws();
        self.expect(b':')?;
        self.skip_ws();
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::RawEvent;
    use super::*;
    use proptest::prelude::*;

    fn fast(text: &str) -> Option<RawEvent<'_>> {
        let mut raw = RawEvent::default();
        read(text, &mut raw).map(|()| raw)
    }

    fn serde(text: &str) -> Option<RawEvent<'_>> {
        serde_json::from_str(text).ok()
    }

    /// Equal, floats within a relative 1e-15 (serde_json's default float reader is not exact).
    fn same(a: &RawEvent<'_>, b: &RawEvent<'_>) -> bool {
        a.fields().zip(b.fields()).all(|(x, y)| match (x, y) {
            (Some(Scalar::Float(x)), Some(Scalar::Float(y))) => {
                x == y || ((x - y) / y).abs() < 1e-15
            }
            (x, y) => x == y,
        })
    }

    /// The fast reader either gives up or agrees with serde_json, field by field.
    fn agrees(text: &str) -> Result<(), TestCaseError> {
        if let Some(ours) = fast(text) {
            let theirs = serde(text);
            prop_assert!(
                theirs.is_some(),
                "accepted what serde_json refuses: {text:?}"
            );
            prop_assert!(
                crate::shared::json::parse_event(text.as_bytes()).is_ok(),
                "accepted what the rule refuses: {text:?}"
            );
            let theirs = theirs.unwrap();
            prop_assert!(
                same(&ours, &theirs),
                "{text:?}\nours:   {ours:?}\ntheirs: {theirs:?}"
            );
        }
        Ok(())
    }

    #[test]
    fn reads_what_events_hold_without_giving_up() {
        let text = r#" { "event_id" : "e\"1\u00e9\n", "type":"llm_run", "latency_ms": 12.5e1,
            "tokens_prompt": 0, "tokens_completion": 18446744073709551615, "model": null,
            "intent": "ünï", "error": {"a": [1, -2.5e-3, "x\\", {}, []], "b": {"c": null}},
            "extra": [true, false, null, "\u0041"], "status_code": true, "trigger": [] } "#;
        let ours = fast(text).expect("read");
        assert!(same(&ours, &serde(text).unwrap()));
        assert_eq!(ours.event_id, Some(Scalar::Str("e\"1é\n".into())));
        assert_eq!(ours.latency_ms, Some(Scalar::Float(125.0)));
        assert_eq!(ours.tokens_completion, Some(Scalar::UInt(u64::MAX)));
        assert_eq!(ours.model, None);
        assert_eq!(ours.error, Some(Scalar::Compound));
        assert!(matches!(
            ours.kind,
            Some(Scalar::Str(Cow::Borrowed("llm_run")))
        ));
        assert!(fast("{}").is_some());
    }

    #[test]
    fn reads_surrogate_pairs_as_serde_json_does() {
        for text in [
            r#"{"event_id":"a\ud83d\ude80b","x":"\uD83D\uDE80"}"#,
            r#"{"x":{"note":"r\u00e9clamation \ud83d\ude80"},"type":"llm_run"}"#,
        ] {
            let ours = fast(text).unwrap_or_else(|| panic!("gave up on {text}"));
            assert!(same(&ours, &serde(text).unwrap()), "{text}");
        }
        let ours = fast(r#"{"event_id":"\ud83d\ude80"}"#).unwrap();
        assert!(matches!(ours.event_id, Some(Scalar::Str(ref s)) if s == "\u{1F680}"));
    }

    #[test]
    fn leaves_the_hard_cases_to_serde_json() {
        for text in [
            r#"{"type":"a","type":"b"}"#,              // duplicate known key
            r#"{"type":null,"type":"b"}"#,             // duplicate, the first null
            r#"{"t\u0079pe":"a"}"#,                    // escaped key
            r#"{"latency_ms":-1}"#,                    // negative known number
            r#"{"latency_ms":123456789012345678901}"#, // past u64
            r#"{"latency_ms":1e400}"#,                 // out of range
            r#"{"event_id":"\ud83d"}"#,                // lone high surrogate in a known field
            r#"{"event_id":"\ude00\ud83d"}"#,          // a pair the wrong way round
            r#"{"event_id":"\ud83d\u0041"}"#,          // high surrogate, then no low one
            r#"{"x":"\ud83dx"}"#,                      // lone high surrogate, unknown field
            r#"{"x":1e400}"#,                          // out of range, unknown field
            r#"{"x":[1,{"y":-1E+999}]}"#,              // out of range, nested
            r#"{"x":"\ud800"}"#,                       // lone surrogate, unknown field
            r#"{"x":1,"x":2}"#,                        // duplicate unknown key
            r#"{"x":{"a":1,"b":[],"a":2}}"#,           // duplicate nested key
            r#"{"x":{"a":1,"\u0062":2}}"#,             // escaped nested key
            r#"{"a":1,}"#,
            r#"{"a":01}"#,
            r#"{"a":1.}"#,
            r#"{"a":"x"} x"#,
            "[1]",
            "{\"a\":\"\u{1}\"}",
        ] {
            assert!(fast(text).is_none(), "{text}");
        }
        let deep = format!("{{\"a\":{}{}}}", "[".repeat(100), "]".repeat(100));
        assert!(fast(&deep).is_none());
        let ok = format!("{{\"a\":{}{}}}", "[".repeat(60), "]".repeat(60));
        assert!(fast(&ok).is_some());
    }

    #[test]
    fn every_generated_event_takes_the_fast_path() {
        use crate::source::generator::{EventGenerator, GeneratorSettings};
        let settings = GeneratorSettings {
            count: Some(5_000),
            unknown_ratio: 0.01,
            ..Default::default()
        };
        for generated in EventGenerator::new(settings) {
            let text = std::str::from_utf8(&generated.payload).unwrap();
            let ours = fast(text).unwrap_or_else(|| panic!("gave up on {text}"));
            assert!(same(&ours, &serde(text).unwrap()), "{text}");
        }
    }

    /// A JSON value as text, sometimes with the odd corners of the grammar.
    fn value() -> impl Strategy<Value = String> {
        let leaf = prop_oneof![
            Just("null".to_string()),
            Just("true".to_string()),
            Just("false".to_string()),
            any::<u64>().prop_map(|n| n.to_string()),
            any::<i64>().prop_map(|n| n.to_string()),
            any::<f64>().prop_map(|f| format!("{f:e}")),
            (0u32..100_000, 0u32..1000).prop_map(|(a, b)| format!("{a}.{b}")),
            "[0-9eE.+-]{1,6}",
            "-?[1-9]e[+-]?[34][0-9]{2}",
            "[1-9][0-9]{295,305}",
            // Escapes with surrogates: high, low, and a pair.
            "\"([a-z\"é]|\\\\[\"\\\\/bfnrtx]|\\\\u[0-9a-fA-F]{4}|\\\\ud8[0-9a-f]{2}|\\\\ud[c-f][0-9a-f]{2}|\\\\ud83d\\\\ude00)*\"",
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4)
                    .prop_map(|v| format!("[{}]", v.join(","))),
                prop::collection::vec((key(), inner), 0..4).prop_map(|members| {
                    let body: Vec<String> = members
                        .into_iter()
                        .map(|(k, v)| format!("\"{k}\":{v}"))
                        .collect();
                    format!("{{{}}}", body.join(","))
                }),
            ]
        })
    }

    fn key() -> impl Strategy<Value = String> {
        prop_oneof![
            prop::sample::select(vec![
                "event_id",
                "type",
                "latency_ms",
                "tokens_prompt",
                "error",
                "model",
                "stage",
            ])
            .prop_map(str::to_string),
            "[a-z_]{1,6}",
        ]
    }

    fn document() -> impl Strategy<Value = String> {
        (
            prop::collection::vec((key(), value()), 0..8),
            prop::sample::select(vec!["", " ", "\n\t "]),
        )
            .prop_map(|(members, ws)| {
                let body: Vec<String> = members
                    .into_iter()
                    .map(|(k, v)| format!("{ws}\"{k}\"{ws}:{ws}{v}{ws}"))
                    .collect();
                format!("{ws}{{{}}}{ws}", body.join(","))
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// The SSE2 and word-at-a-time scans flag exactly the bytes the byte-by-byte check does (the word
        /// scan: at least the first one).
        #[test]
        fn scans_flag_what_the_byte_check_flags(bytes in proptest::array::uniform16(
            prop_oneof![Just(b'"'), Just(b'\\'), 0u8..0x22, 0x1eu8..0x21, any::<u8>()]))
        {
            let first = bytes.iter().position(|b| is_special(*b));
            #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
            {
                // SAFETY: this build enables SSE2.
                let mask = unsafe { specials16(&bytes) };
                for (i, b) in bytes.iter().enumerate() {
                    prop_assert_eq!(mask >> i & 1 == 1, is_special(*b), "byte {}", i);
                }
            }
            let word = specials(u64::from_le_bytes(bytes[..8].try_into().unwrap()));
            let word_first = (word != 0).then(|| (word.trailing_zeros() / 8) as usize);
            prop_assert_eq!(word_first, first.filter(|i| *i < 8));
        }

        #[test]
        fn agrees_with_serde_json_on_documents(text in document()) {
            agrees(&text)?;
        }

        #[test]
        fn agrees_with_serde_json_on_mutated_documents(
            text in document(),
            at in any::<prop::sample::Index>(),
            byte in prop::sample::select(b"\"\\{}[],:-.e0 \x01tnu".to_vec()),
            cut in any::<bool>(),
        ) {
            if text.is_empty() {
                return Ok(());
            }
            let mut bytes = text.into_bytes();
            let i = at.index(bytes.len());
            if cut {
                bytes.truncate(i);
            } else {
                bytes[i] = byte;
            }
            if let Ok(text) = String::from_utf8(bytes) {
                agrees(&text)?;
            }
        }

        #[test]
        fn agrees_with_serde_json_on_arbitrary_text(text in "\\PC{0,64}") {
            agrees(&text)?;
        }
    }
}
