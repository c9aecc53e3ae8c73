//! The strings of a JSON document with their escapes decoded, for the quick check of a document that
//! holds a backslash (an escape can hide a match from a check on the raw bytes: `\u0040` is an `@`).
//!
//! Every string (object keys included) is copied into one buffer, decoded and between quotes:
//! `{"a":"x\ty","b":[1,"z"]}` reads as `"a""x<tab>y""b""z"`. Redaction applies its patterns to strings
//! one by one ([`super::Redactor`]'s `clean`), and a pattern without anchors matches a string exactly
//! when it matches this buffer inside that string's quotes: a quote is not a word character, so `\b`
//! and `\B` see the same thing at a string's ends as at the ends of the text. A match across two strings
//! only makes the check say "may match" where the full redaction finds nothing, which costs time, never
//! a leak. Which strings are object keys is kept beside the buffer.
//!
//! Fails closed: an escape JSON does not allow (a lone surrogate, `\x`), a string that does not end, or
//! a byte outside the strings that no JSON value holds outside a string is [`Unread`], and the caller
//! then reads the document whole (which refuses what it cannot read).

/// The document is not JSON this reader can vouch for: read it whole instead.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Unread;

/// The decoded strings of one document; reused from document to document.
#[derive(Debug, Default)]
pub(super) struct Strings {
    /// Every string, decoded, between quotes, in document order.
    text: Vec<u8>,
    /// The spans in [`Self::text`] (inside the quotes) of the object keys, in order.
    keys: Vec<(usize, usize)>,
}

/// Bytes JSON allows outside strings: structure, whitespace, numbers, `true`, `false`, `null`.
const OUTSIDE: [bool; 256] = {
    let mut table = [false; 256];
    let allowed = b"{}[],: \t\n\r0123456789+-.eEtruefalsn";
    let mut i = 0;
    while i < allowed.len() {
        table[allowed[i] as usize] = true;
        i += 1;
    }
    table
};

impl Strings {
    /// The decoded strings: each between quotes.
    pub(super) fn text(&self) -> &[u8] {
        &self.text
    }

    /// Reads the strings of `json` (replacing what was read before), in one pass. JSON has a quote
    /// every few bytes, where a memchr search per quote costs more than it saves: strings are scanned
    /// with the fast decoder's scan ([`crate::decode::plain_run`]), the short runs between them byte
    /// by byte.
    pub(super) fn read(&mut self, json: &[u8]) -> Result<(), Unread> {
        self.text.clear();
        self.keys.clear();
        self.text.reserve(json.len());
        let mut at = 0;
        while at < json.len() {
            match json[at] {
                b'"' => at = self.read_string(json, at + 1)?,
                b if OUTSIDE[b as usize] => at += 1,
                _ => return Err(Unread),
            }
        }
        Ok(())
    }

    /// Decodes the string whose first byte is at `at` into the buffer, noting whether it is a key:
    /// where its closing quote ends.
    fn read_string(&mut self, json: &[u8], mut at: usize) -> Result<usize, Unread> {
        self.text.push(b'"');
        let start = self.text.len();
        loop {
            // Up to a quote, a backslash or a control character (copied like any byte).
            let run = crate::decode::plain_run(&json[at..]);
            self.text.extend_from_slice(&json[at..at + run]);
            at += run;
            let stop = *json.get(at).ok_or(Unread)?;
            match stop {
                b'"' => break,
                b'\\' => at = self.unescape(json, at)?,
                _ => {
                    self.text.push(stop);
                    at += 1;
                }
            }
        }
        let end = self.text.len();
        self.text.push(b'"');
        if followed_by_colon(&json[at + 1..]) {
            self.keys.push((start, end));
        }
        Ok(at + 1)
    }

    /// Decodes the escape at `at` (a backslash): where it ends.
    fn unescape(&mut self, json: &[u8], at: usize) -> Result<usize, Unread> {
        let byte = match json.get(at + 1).ok_or(Unread)? {
            b'"' => b'"',
            b'\\' => b'\\',
            b'/' => b'/',
            b'b' => 0x08,
            b'f' => 0x0c,
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'u' => {
                let (c, len) = crate::shared::json::unicode_escape(json, at + 2).ok_or(Unread)?;
                let mut utf8 = [0; 4];
                self.text
                    .extend_from_slice(c.encode_utf8(&mut utf8).as_bytes());
                return Ok(at + 2 + len);
            }
            _ => return Err(Unread),
        };
        self.text.push(byte);
        Ok(at + 2)
    }

    /// Whether `start..end` of [`Self::text`] lies inside an object key.
    pub(super) fn in_key(&self, start: usize, end: usize) -> bool {
        let after = self.keys.partition_point(|&(s, _)| s <= start);
        after.checked_sub(1).is_some_and(|i| end <= self.keys[i].1)
    }
}

/// Whether the next byte after whitespace is a `:` (the string before was an object key). Any ASCII
/// whitespace is skipped: of those, what JSON does not allow outside a string makes [`Strings::read`]
/// refuse the document anyway, and the raw check's [`super::is_key`] errs towards "key".
pub(super) fn followed_by_colon(rest: &[u8]) -> bool {
    rest.iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| *b == b':')
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn read(json: &str) -> Result<(String, Vec<String>), Unread> {
        let mut s = Strings::default();
        s.read(json.as_bytes())?;
        let text = String::from_utf8(s.text.clone()).expect("decoded strings are UTF-8");
        let keys = s.keys.iter().map(|&(a, b)| text[a..b].to_owned()).collect();
        Ok((text, keys))
    }

    #[test]
    fn strings_are_decoded_between_quotes_and_keys_known() {
        let (text, keys) =
            read(r#"{"a\"b" : "x\ty\u00fc\ud83d\ude00", "n":[1.5e3,true,null,"\/\\"]}"#).unwrap();
        assert_eq!(text, "\"a\"b\"\"x\ty\u{fc}\u{1f600}\"\"n\"\"/\\\"");
        assert_eq!(keys, ["a\"b", "n"]);
        // A raw control character (not JSON, so the full parse would refuse it) is copied as it is.
        assert_eq!(read("{\"a\":\"x\u{1}y\"}").unwrap().0, "\"a\"\"x\u{1}y\"");
    }

    #[test]
    fn what_json_does_not_allow_is_unread() {
        for bad in [
            r#"{"a":"\ud800"}"#,
            r#"{"a":"\udc00x"}"#,
            r#"{"a":"\ud800\u0041"}"#,
            r#"{"a":"\x41"}"#,
            r#"{"a":"\u00g1"}"#,
            r#"{"a":"\u+041"}"#,
            r#"{"a":"unterminated"#,
            r#"{"a":"x\"#,
            r#"{"a": jane@example.com}"#,
            r#"{"a": secret}"#,
        ] {
            assert_eq!(read(bad), Err(Unread), "{bad}");
        }
    }

    #[test]
    fn a_span_is_in_a_key_only_inside_one() {
        let mut s = Strings::default();
        s.read(br#"{"ab":"cd","ef":{"gh":1}}"#).unwrap();
        // "ab""cd""ef""gh": the keys at 1..3, 9..11 and 13..15.
        assert!(s.in_key(1, 3) && s.in_key(2, 3) && s.in_key(13, 15));
        assert!(!s.in_key(5, 7) && !s.in_key(1, 5) && !s.in_key(0, 1));
    }

    proptest! {
        /// Whatever serde_json writes, the buffer holds exactly its strings (keys and values), in order.
        #[test]
        fn the_buffer_holds_exactly_the_documents_strings(
            entries in prop::collection::vec(("\\PC{0,6}", "\\PC{0,10}", any::<bool>()), 0..6),
            ascii_only in any::<bool>(),
        ) {
            let mut map = serde_json::Map::new();
            let mut expected = Vec::new();
            for (k, v, nest) in entries {
                if map.contains_key(&k) {
                    continue;
                }
                expected.push((k.clone(), true));
                let value = if nest {
                    expected.push((v.clone(), false));
                    serde_json::json!([1, v, null])
                } else {
                    serde_json::json!(-2.5)
                };
                map.insert(k, value);
            }
            let mut json = serde_json::to_string(&serde_json::Value::Object(map)).unwrap();
            if ascii_only {
                json = json.chars().map(|c| if c.is_ascii() { c.to_string() } else {
                    c.encode_utf16(&mut [0; 2]).iter().map(|u| format!("\\u{u:04x}")).collect()
                }).collect();
            }
            let (text, keys) = read(&json).unwrap();
            let want: String = expected.iter().map(|(s, _)| format!("\"{s}\"")).collect();
            prop_assert_eq!(text, want);
            let want_keys: Vec<&String> = expected.iter().filter(|(_, k)| *k).map(|(s, _)| s).collect();
            prop_assert_eq!(keys.iter().collect::<Vec<_>>(), want_keys);
        }
    }
}
