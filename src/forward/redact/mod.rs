//! Redaction: secrets and personal data taken out of every forwarded record before any sink sees it.
//!
//! Three kinds of rule: regular expressions, whose every match inside any string (object keys included)
//! is replaced; field paths, whose whole value is replaced; and secret key names (`password`, `token`,
//! ...), whose value is replaced whole wherever a key holds the name as a word ([`crate::shared::key_words`]). The replacement is `[REDACTED]`, or (mode `hmac`)
//! `hmac-sha256:` and the hex HMAC-SHA256 of the replaced text under a secret key, so equal values stay
//! equal for correlation while the value itself cannot be recovered or guessed without the key.
//!
//! Speed: most records hold nothing to redact. A record is checked first on its JSON bytes as written,
//! or, when they hold a backslash (an escape could hide a match from a check on the raw bytes), on its
//! strings with their escapes decoded ([`strings`]): if no pattern matches anywhere in that text, and no
//! redacted field's key and no word of a secret key name appears in it, nothing in the record can need
//! redaction and it is left byte for byte as it is. Only otherwise is it parsed, cleaned value by
//! value, and written again. A pattern anchored with `^`/`$` cannot be checked on the whole text, so it
//! always takes the slow path.

mod quick;
mod strings;

use super::enrich::Document;
use crate::config::{RedactionConfig, RedactionMode, BUILTIN_PATTERNS};
use crate::shared::json::hex;
use crate::shared::key_words;
use hmac::{Hmac, Mac};
use serde_json::Value;

/// The text that replaces redacted values in mode `mask`.
pub const MASK: &str = "[REDACTED]";

/// Why redaction could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum RedactError {
    #[error("pattern {name}: {source}")]
    /// A pattern does not compile.
    Pattern {
        /// The rule (a built-in name, or `pattern_<i>`).
        name: String,
        /// Why.
        source: regex::Error,
    },
    #[error("unknown built-in pattern {0:?}")]
    /// No built-in pattern has this name.
    UnknownBuiltin(String),
    #[error("the HMAC key: {0}")]
    /// The HMAC key cannot be read or used.
    Key(String),
}

enum Replace {
    Mask,
    /// The key (never logged: this type has no Debug).
    Hmac(Hmac<sha2::Sha256>),
}

/// The compiled redaction rules.
pub struct Redactor {
    /// Rule names, patterns first then fields (the `rule` label of the self metric).
    names: Vec<String>,
    patterns: Vec<regex::Regex>,
    /// The same patterns over bytes, for the quick check (one by one: each then uses its own literal
    /// prefilter, several times faster than a `RegexSet` scanning every byte).
    prefilter: Vec<regex::bytes::Regex>,
    /// A pattern is anchored: the quick check cannot decide.
    always_parse: bool,
    /// Field paths, split.
    fields: Vec<Vec<String>>,
    /// `"<last segment>"` of each field path, unescaped: if absent from the text the quick check reads
    /// (the raw bytes hold no escape, the decoded strings none left), the field is absent.
    field_keys: Vec<Vec<u8>>,
    /// Secret key names, as words.
    secret_keys: Vec<SecretKey>,
    /// Finds, case-insensitively, the first word and the joined words of every secret key name: where it
    /// finds none inside a word of the bytes, no key can match.
    secret_prefilter: Option<regex::bytes::Regex>,
    /// The one-pass check of ASCII documents ([`quick`]).
    quick: quick::Quick,
    replace: Replace,
}

/// A secret key name: its words, and them joined (`api_key`: `api`, `key`; `apikey`).
struct SecretKey {
    words: Vec<String>,
    joined: String,
}

impl SecretKey {
    fn new(name: &str) -> Self {
        let words = key_words(name);
        SecretKey {
            joined: words.concat(),
            words,
        }
    }

    /// Whether a key with these words holds the name: its words in a row, or one word equal to them
    /// joined (`apikey`).
    fn matches(&self, key: &[String]) -> bool {
        key.windows(self.words.len()).any(|w| w == self.words) || key.contains(&self.joined)
    }
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redactor")
            .field("rules", &self.names)
            .finish_non_exhaustive()
    }
}

impl Redactor {
    /// Compiles the configured rules (the key is read here).
    pub fn new(config: &RedactionConfig) -> Result<Self, RedactError> {
        let mut names = Vec::new();
        let mut sources = Vec::new();
        for name in &config.builtin_patterns {
            let (_, pattern) = BUILTIN_PATTERNS
                .iter()
                .find(|(n, _)| n == name)
                .ok_or_else(|| RedactError::UnknownBuiltin(name.clone()))?;
            names.push(name.clone());
            sources.push(pattern.to_string());
        }
        for (i, pattern) in config.patterns.iter().enumerate() {
            names.push(format!("pattern_{i}"));
            sources.push(pattern.clone());
        }
        let patterns = sources
            .iter()
            .zip(&names)
            .map(|(p, name)| {
                regex::Regex::new(p).map_err(|source| RedactError::Pattern {
                    name: name.clone(),
                    source,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let prefilter = sources
            .iter()
            .zip(&names)
            .map(|(p, name)| {
                regex::bytes::Regex::new(p).map_err(|source| RedactError::Pattern {
                    name: name.clone(),
                    source,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        // An anchor (`^`, `$`, `\A`, `\z`, in any mode) makes a match depend on where the string starts
        // or ends, which the raw bytes do not show.
        let always_parse = sources.iter().any(|p| {
            regex_syntax::parse(p).map_or(true, |hir| hir.properties().look_set().contains_anchor())
        });
        let fields: Vec<Vec<String>> = config
            .fields
            .iter()
            .map(|f| f.split('.').map(str::to_owned).collect())
            .collect();
        names.extend(config.fields.iter().map(|f| format!("field:{f}")));
        let field_keys: Vec<Vec<u8>> = fields
            .iter()
            .map(|f| format!("\"{}\"", f.last().expect("checked: no empty path")).into_bytes())
            .collect();
        // A name without words could match nothing (validation refuses it): left out, its tally slot
        // with it, so names and keys stay aligned.
        let mut secret_keys = Vec::new();
        for name in &config.secret_keys {
            let key = SecretKey::new(name);
            if !key.words.is_empty() {
                names.push(format!("secret_key:{name}"));
                secret_keys.push(key);
            }
        }
        let secret_prefilter = secret_prefilter(&secret_keys)?;
        let builtins: Vec<Option<&str>> = config
            .builtin_patterns
            .iter()
            .map(|n| Some(n.as_str()))
            .chain(config.patterns.iter().map(|_| None))
            .collect();
        let quick = quick::Quick::new(&builtins, &secret_literals(&secret_keys), &field_keys);
        let replace = match config.mode {
            RedactionMode::Mask => Replace::Mask,
            RedactionMode::Hmac => {
                let key = config
                    .hmac_key
                    .as_ref()
                    .ok_or_else(|| RedactError::Key("not configured".into()))?
                    .read()
                    .map_err(RedactError::Key)?;
                Replace::Hmac(
                    Hmac::new_from_slice(key.as_bytes())
                        .map_err(|e| RedactError::Key(e.to_string()))?,
                )
            }
        };
        Ok(Redactor {
            names,
            patterns,
            prefilter,
            always_parse,
            fields,
            field_keys,
            secret_keys,
            secret_prefilter,
            quick,
            replace,
        })
    }

    /// The rule names, in tally order.
    pub fn rule_names(&self) -> &[String] {
        &self.names
    }

    /// Whether there is any rule.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    fn replacement(&self, text: &str) -> String {
        match &self.replace {
            Replace::Mask => MASK.to_owned(),
            Replace::Hmac(mac) => {
                let mut mac = mac.clone();
                mac.update(text.as_bytes());
                format!("hmac-sha256:{}", hex(&mac.finalize().into_bytes()))
            }
        }
    }

    /// Whether the bytes may hold something to redact (false: they certainly do not).
    fn may_match(&self, json: &[u8]) -> bool {
        if self.always_parse {
            return true;
        }
        if memchr::memchr(b'\\', json).is_none() {
            // In these bytes (no escape) a string ends at the next quote: only a key is followed by ':'.
            return self.may_match_text(json, &|_, end| is_key(json, end));
        }
        thread_local! {
            static STRINGS: std::cell::RefCell<strings::Strings> = Default::default();
        }
        STRINGS.with_borrow_mut(|strings| match strings.read(json) {
            Ok(()) => self.may_match_text(strings.text(), &|start, end| strings.in_key(start, end)),
            Err(strings::Unread) => true,
        })
    }

    /// [`Self::may_match`] on text without escapes; `in_key(start, end)`: whether the span lies in an
    /// object key.
    fn may_match_text(&self, text: &[u8], in_key: &dyn Fn(usize, usize) -> bool) -> bool {
        // Text outside ASCII, read once as UTF-8 for the digit-run check.
        let wide = match text.is_ascii() {
            true => None,
            false => match std::str::from_utf8(text) {
                Ok(wide) => Some(wide),
                Err(_) => return true,
            },
        };
        if wide.is_some() && quick::folds_into_ascii(text) {
            return self.may_match_slow(text);
        }
        self.quick.may_match(
            text,
            wide,
            &|i| self.prefilter[i].is_match(text),
            &|start, end| in_key(start, end) && self.secret_word_around(text, start, end),
            &|i, start, end| text[start..end] == self.field_keys[i][..],
        )
    }

    /// [`Self::may_match_text`] for any text: every pattern run, every field key and secret key looked
    /// for.
    fn may_match_slow(&self, json: &[u8]) -> bool {
        self.prefilter.iter().any(|p| p.is_match(json))
            || self
                .field_keys
                .iter()
                .any(|k| json.windows(k.len()).any(|w| w == k.as_slice()))
            || self.may_hold_secret_key(json)
    }

    /// Whether a word of the bytes (split as [`crate::shared::key_words`] splits, within the run of letters and digits
    /// around a prefilter hit) is the first word or the joined words of a secret key name.
    fn may_hold_secret_key(&self, json: &[u8]) -> bool {
        let Some(prefilter) = &self.secret_prefilter else {
            return false;
        };
        prefilter
            .find_iter(json)
            .any(|hit| self.secret_word_around(json, hit.start(), hit.end()))
    }

    /// Whether the run of ASCII letters and digits around a secret-key literal found at `start..end`
    /// has, among its words, a secret key name's first word or its joined words.
    fn secret_word_around(&self, json: &[u8], start: usize, end: usize) -> bool {
        let start = json[..start]
            .iter()
            .rposition(|b| !b.is_ascii_alphanumeric())
            .map_or(0, |p| p + 1);
        let end = json[end..]
            .iter()
            .position(|b| !b.is_ascii_alphanumeric())
            .map_or(json.len(), |p| end + p);
        // The run is ASCII letters and digits: valid UTF-8.
        let words = key_words(std::str::from_utf8(&json[start..end]).unwrap_or_default());
        self.secret_keys
            .iter()
            .any(|k| words.contains(&k.words[0]) || words.contains(&k.joined))
    }

    /// Redacts a document; adds what each rule replaced to `tally` (indexed like
    /// [`Self::rule_names`]). Fails closed: a document that may hold something to redact and whose JSON
    /// the redactor cannot read (a number beyond f64, a lone surrogate, nesting deeper than 128) comes
    /// back as an [`Unredactable`], never as a [`Redacted`] document a sink could take.
    pub fn redact(&self, mut doc: Document, tally: &mut [u64]) -> Result<Redacted, Unredactable> {
        match self.redact_in_place(&mut doc, tally) {
            Ok(_) => Ok(Redacted(doc)),
            Err(error) => Err(Unredactable { doc, error }),
        }
    }

    /// Redacts `doc` in place: whether anything changed, or why it cannot be read.
    fn redact_in_place(&self, doc: &mut Document, tally: &mut [u64]) -> Result<bool, String> {
        // No pattern matches anywhere in the bytes, no redacted field's key is in them, and there is no
        // escape: nothing in the document, readable or not, can need redaction.
        if self.is_empty() || !self.may_match(&doc.json) {
            return Ok(false);
        }
        self.redact_full(doc, tally)
    }

    /// Redacts `doc` in place after reading it whole: whether anything changed, or why it cannot be
    /// read.
    fn redact_full(&self, doc: &mut Document, tally: &mut [u64]) -> Result<bool, String> {
        // Something may need redaction: the document must be read to find it, and what cannot be read
        // is refused (fails closed), never passed on as it is.
        // By the one rule decoding applies too (`shared::json::parse`).
        let mut value: Value =
            crate::shared::json::parse(&doc.json).map_err(|e| format!("not redactable: {e}"))?;
        let mut changed = false;
        for (i, path) in self.fields.iter().enumerate() {
            if let Some(target) = lookup(&mut value, path) {
                self.replace_whole(target);
                tally[self.patterns.len() + i] += 1;
                changed = true;
            }
        }
        changed |= self.clean_tree(&mut value, tally);
        if let Some(org) = &mut doc.organization {
            changed |= self.clean(org, tally);
        }
        changed |= self.clean(&mut doc.event_id, tally);
        if changed {
            doc.json = serde_json::to_vec(&value).expect("a tree is valid JSON");
        }
        Ok(changed)
    }

    /// Whether the quick check lets `json` through untouched while the full redaction, reading it,
    /// would change it: a leak. `false` is agreement (the property tests and the `redact_quick` fuzz
    /// target hold the quick check to it).
    pub(crate) fn quick_check_misses(&self, json: &[u8]) -> bool {
        if self.may_match(json) {
            return false;
        }
        let mut doc = Document {
            json: json.to_vec(),
            event_id: String::new(),
            organization: None,
            timestamp: chrono::DateTime::UNIX_EPOCH,
            outcome: super::Outcome::Unknown,
        };
        let mut tally = vec![0; self.names.len()];
        matches!(self.redact_full(&mut doc, &mut tally), Ok(true))
    }

    /// Replaces the values of secret keys whole, and applies every pattern to every other string in the
    /// tree, object keys included.
    fn clean_tree(&self, value: &mut Value, tally: &mut [u64]) -> bool {
        match value {
            Value::String(s) => self.clean(s, tally),
            Value::Array(items) => items
                .iter_mut()
                .fold(false, |acc, v| self.clean_tree(v, tally) | acc),
            Value::Object(map) => {
                let first_secret = self.patterns.len() + self.fields.len();
                let mut changed = false;
                for (key, v) in map.iter_mut() {
                    match self.secret_key(key) {
                        Some(i) => {
                            self.replace_whole(v);
                            tally[first_secret + i] += 1;
                            changed = true;
                        }
                        None => changed |= self.clean_tree(v, tally),
                    }
                }
                changed | self.clean_keys(map, tally)
            }
            _ => false,
        }
    }

    /// Replaces a value, whatever its type, by the replacement of its text.
    fn replace_whole(&self, value: &mut Value) {
        let text = match &*value {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        *value = Value::String(self.replacement(&text));
    }

    /// The index of the secret key name `key` holds, if any.
    fn secret_key(&self, key: &str) -> Option<usize> {
        if self.secret_keys.is_empty() {
            return None;
        }
        let words = key_words(key);
        self.secret_keys.iter().position(|k| k.matches(&words))
    }

    /// Applies the patterns to an object's keys (an email used as a key), keeping the order; a cleaned
    /// key equal to one already there gets a `#2`, `#3`, ... suffix rather than overwrite it.
    fn clean_keys(&self, map: &mut serde_json::Map<String, Value>, tally: &mut [u64]) -> bool {
        if !map
            .keys()
            .any(|k| self.patterns.iter().any(|p| p.is_match(k)))
        {
            return false;
        }
        for (mut key, v) in std::mem::take(map) {
            self.clean(&mut key, tally);
            let mut unique = key.clone();
            for n in 2.. {
                if !map.contains_key(&unique) {
                    break;
                }
                unique = format!("{key}#{n}");
            }
            map.insert(unique, v);
        }
        true
    }

    /// Applies every pattern to one string, in one pass over the original text (so a replacement is
    /// never matched again): overlapping matches are replaced as one span (`Authorization: Basic <b64>`
    /// matched by two rules leaves nothing of either), and each rule that matched is counted.
    fn clean(&self, s: &mut String, tally: &mut [u64]) -> bool {
        let mut found: Vec<(usize, usize, usize)> = Vec::new();
        for (i, pattern) in self.patterns.iter().enumerate() {
            found.extend(pattern.find_iter(s).map(|m| (m.start(), m.end(), i)));
        }
        found.retain(|&(start, end, _)| start < end);
        if found.is_empty() {
            return false;
        }
        found.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
        let mut spans: Vec<(usize, usize)> = Vec::new();
        for (start, end, rule) in found {
            tally[rule] += 1;
            match spans.last_mut() {
                Some(last) if start < last.1 => last.1 = last.1.max(end),
                _ => spans.push((start, end)),
            }
        }
        let mut out = String::with_capacity(s.len());
        let mut at = 0;
        for (start, end) in spans {
            out.push_str(&s[at..start]);
            out.push_str(&self.replacement(&s[start..end]));
            at = end;
        }
        out.push_str(&s[at..]);
        *s = out;
        true
    }
}

/// Whether the JSON string around a position (of a document without escapes) is an object key: its
/// closing quote is followed by `:`. A position outside any string is never taken for a key.
fn is_key(json: &[u8], at: usize) -> bool {
    let Some(close) = memchr::memchr(b'"', &json[at..]) else {
        return false;
    };
    strings::followed_by_colon(&json[at + close + 1..])
}

/// Each secret key name's first word and its joined words, once each.
fn secret_literals(keys: &[SecretKey]) -> Vec<String> {
    let mut literals: Vec<String> = keys
        .iter()
        .flat_map(|k| [k.words[0].clone(), k.joined.clone()])
        .collect();
    literals.sort();
    literals.dedup();
    literals
}

/// The quick check for secret key names: each name's first word and its joined words, any case.
fn secret_prefilter(keys: &[SecretKey]) -> Result<Option<regex::bytes::Regex>, RedactError> {
    if keys.is_empty() {
        return Ok(None);
    }
    let literals = secret_literals(keys);
    let alternation: Vec<String> = literals.iter().map(|l| regex::escape(l)).collect();
    regex::bytes::RegexBuilder::new(&alternation.join("|"))
        .case_insensitive(true)
        .build()
        .map(Some)
        .map_err(|source| RedactError::Pattern {
            name: "secret_keys".into(),
            source,
        })
}

/// A document the redactor could not read, and why: it must not be forwarded.
#[derive(Debug)]
pub struct Unredactable {
    /// The document, as the enricher wrote it (unredacted).
    pub doc: Document,
    /// Why it could not be read.
    pub error: String,
}

/// A document that went through redaction: the only kind a sink takes.
#[derive(Debug, Clone)]
pub struct Redacted(Document);

impl Redacted {
    /// A document that needs no redaction, for tests of what comes after it.
    #[cfg(test)]
    pub(crate) fn assume(doc: Document) -> Self {
        Redacted(doc)
    }
}

impl std::ops::Deref for Redacted {
    type Target = Document;

    fn deref(&self) -> &Document {
        &self.0
    }
}

/// The value at a dot path, if present.
fn lookup<'v>(value: &'v mut Value, path: &[String]) -> Option<&'v mut Value> {
    path.iter().try_fold(value, |node, segment| match node {
        Value::Object(map) => map.get_mut(segment),
        Value::Array(items) => segment.parse::<usize>().ok().and_then(|i| items.get_mut(i)),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SecretConfig;
    use crate::forward::enrich::Outcome;
    use proptest::prelude::*;

    fn doc(json: &str) -> Document {
        Document {
            json: json.as_bytes().to_vec(),
            event_id: "e1".into(),
            organization: Some("acme".into()),
            timestamp: chrono::Utc::now(),
            outcome: Outcome::Success,
        }
    }

    fn redactor(mode: RedactionMode, fields: &[&str]) -> Redactor {
        Redactor::new(&RedactionConfig {
            mode,
            builtin_patterns: BUILTIN_PATTERNS
                .iter()
                .map(|(n, _)| n.to_string())
                .collect(),
            patterns: vec![],
            fields: fields.iter().map(|f| f.to_string()).collect(),
            secret_keys: crate::config::DEFAULT_SECRET_KEYS
                .map(String::from)
                .to_vec(),
            hmac_key: Some(SecretConfig {
                value: Some("k3y".into()),
                ..Default::default()
            }),
        })
        .unwrap()
    }

    /// Secrets of every default kind, as they might appear in prompts and error messages.
    const SECRETS: &[&str] = &[
        "jane.doe+billing@example.co.uk",
        "Bearer eyJhbGciOiJIUzI1NiJ9abcdefgh",
        "sk-proj-Abcdefghijklmnopqrstuvwx012345",
        "sk_live_51Habcdefghijklmnop",
        "AKIAIOSFODNN7EXAMPLE",
        "ghp_abcdefghijklmnopqrstuvwxyz0123456789",
        "xoxb-1234567890-abcdefghij",
        "api_key=9f8e7d6c5b4a",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
        "4111 1111 1111 1111",
        "Basic dXNlcjpodW50ZXIy",
        "basic YWxhZGRpbjpvcGVuc2VzYW1l",
        "password=hunter2",
        "\"password\":\"hunter2\"",
        "{'token': 'abc123'}",
        "Authorization: Bearer abcdefgh12345678",
        "authorization: Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==",
    ];

    #[test]
    fn key_words_split_as_people_name_keys() {
        for (key, words) in [
            ("api_key", &["api", "key"][..]),
            ("X-Api-Key", &["x", "api", "key"]),
            ("apiKey", &["api", "key"]),
            ("APIKey", &["api", "key"]),
            ("APIKEY", &["apikey"]),
            ("accessToken2", &["access", "token", "2"]),
            ("tokens_prompt", &["tokens", "prompt"]),
            ("ünï.Pass", &["n", "pass"]),
            ("", &[]),
        ] {
            assert_eq!(key_words(key), words, "{key}");
        }
    }

    #[test]
    fn secret_named_keys_are_replaced_whole_at_any_depth() {
        let r = redactor(RedactionMode::Mask, &[]);
        let json = r#"{"tokens_prompt":12,"hestyna":{"Password":"hunter2","n":[{"X-Api-Key":"k-1"}],"accessToken":{"v":"t-1"},"db_passwd":7,"Cookie":"sid=1","PRIVATE_KEY":"-----BEGIN","apikey":"a-1","client_secret":"s-1","authorization":null,"tokens":3}}"#;
        let mut d = doc(json);
        let mut tally = vec![0; r.rule_names().len()];
        assert!(r.redact_in_place(&mut d, &mut tally).unwrap());
        let v = d.to_value();
        let h = &v["hestyna"];
        for secret in [
            &h["Password"],
            &h["n"][0]["X-Api-Key"],
            &h["accessToken"],
            &h["db_passwd"],
            &h["Cookie"],
            &h["PRIVATE_KEY"],
            &h["apikey"],
            &h["client_secret"],
            &h["authorization"],
        ] {
            assert_eq!(secret, MASK, "{v}");
        }
        assert_eq!(v["tokens_prompt"], 12, "a count is not a token");
        assert_eq!(h["tokens"], 3);
        let names = r.rule_names();
        let count = |name: &str| tally[names.iter().position(|n| n == name).unwrap()];
        assert_eq!(count("secret_key:password"), 1);
        assert_eq!(count("secret_key:passwd"), 1);
        // `apikey` is `api_key`'s words joined: the first name that matches counts.
        assert_eq!(count("secret_key:api_key"), 2);
        assert_eq!(count("secret_key:apikey"), 0);
        // A key whose words only look alike takes the quick check and is left byte for byte.
        let clean = r#"{"tokens_prompt":12,"passwordless":true,"secretary":"Ann"}"#;
        let mut d = doc(clean);
        assert!(!r.redact_in_place(&mut d, &mut tally).unwrap());
        assert!(!r.may_match(clean.as_bytes()));
        // Turned off explicitly, the rule is gone.
        let off = Redactor::new(&RedactionConfig {
            secret_keys: vec![],
            builtin_patterns: vec![],
            ..RedactionConfig::default()
        })
        .unwrap();
        let mut d = doc(r#"{"password":"hunter2"}"#);
        assert!(!off.redact_in_place(&mut d, &mut [0; 16]).unwrap());
    }

    #[test]
    fn patterns_clean_object_keys_too() {
        let r = redactor(RedactionMode::Mask, &[]);
        let mut d = doc(r#"{"by_user":{"jane@example.com":3,"joe@example.com":4,"n":1}}"#);
        assert!(r.redact_in_place(&mut d, &mut [0; 32]).unwrap());
        assert_eq!(
            d.as_str(),
            r#"{"by_user":{"[REDACTED]":3,"[REDACTED]#2":4,"n":1}}"#
        );
    }

    #[test]
    fn a_document_the_redactor_cannot_read_is_refused_never_passed_on() {
        let r = redactor(RedactionMode::Mask, &[]);
        let email = "jane.doe@example.com";
        let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
        for unreadable in [
            r#"{"x":1e400,"m":"EMAIL"}"#.to_owned(),
            r#"{"m":"EMAIL","x":-1e999}"#.to_owned(),
            r#"{"m":"EMAIL \ud800"}"#.to_owned(),
            format!(r#"{{"m":"EMAIL","d":{deep}}}"#),
        ] {
            let json = unreadable.replace("EMAIL", email);
            let failed = r.redact(doc(&json), &mut [0; 16]).expect_err(&json);
            assert!(
                failed.error.starts_with("not redactable"),
                "{}",
                failed.error
            );
            assert_eq!(
                failed.doc.json,
                json.as_bytes(),
                "handed back as it came, to be dead-lettered"
            );
        }
        // The same document with nothing to redact passes the quick check untouched.
        let clean = r#"{"x":1e400,"m":"nothing here"}"#;
        let passed = r.redact(doc(clean), &mut [0; 16]).unwrap();
        assert_eq!(passed.json, clean.as_bytes());
        // And a readable one is redacted.
        let ok = r
            .redact(doc(&format!(r#"{{"m":"{email}"}}"#)), &mut [0; 16])
            .unwrap();
        assert!(!String::from_utf8_lossy(&ok.json).contains(email));
    }

    #[test]
    fn no_default_pattern_leaks_wherever_the_secret_sits() {
        let r = redactor(RedactionMode::Mask, &[]);
        for secret in SECRETS {
            for template in [
                r#"{"a":"SECRET"}"#,
                r#"{"hestyna":{"prompt":"please use SECRET now","n":[1,"x SECRET"]}}"#,
                r#"{"m":"line one\nSECRET\tthen"}"#,
                r#"{"m":"quoted \"SECRET\""}"#,
            ] {
                let quoted = serde_json::to_string(secret).unwrap();
                let json = template.replace("SECRET", &quoted[1..quoted.len() - 1]);
                let mut d = doc(&json);
                let mut tally = vec![0; r.rule_names().len()];
                assert!(r.redact_in_place(&mut d, &mut tally).unwrap(), "{json}");
                let out = d.as_str();
                assert!(!out.contains(secret), "{secret} leaked: {out}");
                assert!(out.contains(MASK), "{out}");
                assert!(tally.iter().sum::<u64>() >= 1);
                serde_json::from_str::<Value>(out).expect("still JSON");
            }
        }
    }

    #[test]
    fn an_escaped_secret_is_found_too() {
        let r = redactor(RedactionMode::Mask, &[]);
        // "jane@example.com" with the @ written as \u0040.
        let mut d = doc(r#"{"a":"jane\u0040example.com"}"#);
        assert!(r.redact_in_place(&mut d, &mut [0; 16]).unwrap());
        assert_eq!(d.to_value()["a"], MASK);
    }

    #[test]
    fn clean_records_are_left_byte_for_byte() {
        let r = redactor(RedactionMode::Mask, &["hestyna.prompt"]);
        let json = r#"{"organization":"acme","latency_ms":12.5,"hestyna":{"intent":"billing"}}"#;
        let mut d = doc(json);
        assert!(!r.redact_in_place(&mut d, &mut [0; 16]).unwrap());
        assert_eq!(d.as_str(), json);
    }

    #[test]
    fn fields_are_replaced_whole_and_hmac_correlates() {
        let r = redactor(RedactionMode::Hmac, &["hestyna.user", "hestyna.prompt"]);
        let mut a = doc(r#"{"hestyna":{"user":{"id":7},"prompt":"hi","email":"a@b.io"}}"#);
        let mut b = doc(r#"{"x":"a@b.io"}"#);
        let mut tally = vec![0; r.rule_names().len()];
        assert!(r.redact_in_place(&mut a, &mut tally).unwrap());
        assert!(r.redact_in_place(&mut b, &mut tally).unwrap());
        let (va, vb) = (a.to_value(), b.to_value());
        let hmac = |v: &Value| v.as_str().unwrap().to_owned();
        assert!(hmac(&va["hestyna"]["user"]).starts_with("hmac-sha256:"));
        assert_eq!(hmac(&va["hestyna"]["user"]).len(), 12 + 64);
        assert_eq!(
            va["hestyna"]["email"], vb["x"],
            "equal values, equal digests"
        );
        assert_ne!(va["hestyna"]["prompt"], va["hestyna"]["email"]);
        let names = r.rule_names();
        let count = |name: &str| tally[names.iter().position(|n| n == name).unwrap()];
        assert_eq!(count("email"), 2);
        assert_eq!(count("field:hestyna.user"), 1);
        assert_eq!(count("field:hestyna.prompt"), 1);
        // A different key gives different digests.
        let other = Redactor::new(&RedactionConfig {
            mode: RedactionMode::Hmac,
            hmac_key: Some(SecretConfig {
                value: Some("other".into()),
                ..Default::default()
            }),
            ..RedactionConfig::default()
        })
        .unwrap();
        let mut c = doc(r#"{"x":"a@b.io"}"#);
        other.redact_in_place(&mut c, &mut [0; 16]).unwrap();
        assert_ne!(c.to_value()["x"], vb["x"]);
    }

    #[test]
    fn only_anchored_patterns_skip_the_quick_check() {
        let with = |patterns: &[&str]| {
            Redactor::new(&RedactionConfig {
                builtin_patterns: BUILTIN_PATTERNS
                    .iter()
                    .map(|(n, _)| n.to_string())
                    .collect(),
                patterns: patterns.iter().map(|p| p.to_string()).collect(),
                ..RedactionConfig::default()
            })
            .unwrap()
        };
        assert!(
            !with(&[]).always_parse,
            "built-ins use [^...] classes, not anchors"
        );
        assert!(with(&["^secret"]).always_parse);
        assert!(with(&["(?m)token$"]).always_parse);
        // An anchored pattern still finds a value that is the whole string.
        let mut d = doc(r#"{"a":"secret-1","b":"no secret-2"}"#);
        assert!(with(&["^secret-\\d$"])
            .redact_in_place(&mut d, &mut [0; 16])
            .unwrap());
        assert_eq!(d.to_value()["a"], MASK);
        assert_eq!(d.to_value()["b"], "no secret-2");
    }

    #[test]
    fn the_key_is_not_in_debug_output() {
        let r = redactor(RedactionMode::Hmac, &[]);
        assert!(!format!("{r:?}").contains("k3y"));
    }

    /// An unknown field's value, often one of the corners readers disagree on.
    fn hostile_value() -> impl Strategy<Value = String> {
        let leaf = prop_oneof![
            Just("1e400".to_string()),
            Just("-1E+999".to_string()),
            Just(format!("1{}", "0".repeat(400))),
            Just("1e300".to_string()),
            Just("18446744073709551616".to_string()),
            Just(r#""\ud800""#.to_string()),
            Just(r#""x\udc00""#.to_string()),
            Just(r#""\ud83d\ude00""#.to_string()),
            Just(r#""a\u0000b""#.to_string()),
            Just(r#"{"k":1,"k":2}"#.to_string()),
            Just(r#"{"k":1,"\u006b":2}"#.to_string()),
            Just(format!("{}0{}", "[".repeat(126), "]".repeat(126))),
            Just(format!("{}0{}", "[".repeat(127), "]".repeat(127))),
            Just(format!("{}0{}", "[".repeat(300), "]".repeat(300))),
            Just(r#""jane.doe@example.com""#.to_string()),
            any::<i64>().prop_map(|n| n.to_string()),
            "\"[a-z@. ]{0,12}\"",
        ];
        leaf.prop_recursive(2, 8, 3, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..3)
                    .prop_map(|v| format!("[{}]", v.join(","))),
                prop::collection::vec(("[a-c]", inner), 0..3).prop_map(|m| {
                    let body: Vec<String> =
                        m.into_iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
                    format!("{{{}}}", body.join(","))
                }),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(600))]

        /// Decoding and redaction read JSON by one rule: a record decoding accepts is always readable to
        /// the redactor, and one it refuses as JSON is one the rule refuses; either way the forwarded
        /// document (valid or marked invalid) is redacted, never unredactable, and the planted email
        /// is gone from it.
        #[test]
        fn decoding_and_redaction_agree_on_what_json_is(extra in hostile_value(), dup in any::<bool>()) {
            use crate::decode::{decode, InvalidReason};
            use crate::forward::enrich::{BatchContext, Enricher, HostInfo};
            use crate::forward::organizations::OrganizationTable;
            use crate::source::{Origin, Record};
            let email = "jane.doe@example.com";
            let tail = if dup { r#","extra":0"# } else { "" };
            let payload = format!(
                r#"{{"event_id":"e1","type":"llm_run","occurred_at":"2026-11-27T10:00:00Z","organization":"acme","run_id":"r1","intent":"billing","outcome":"success","latency_ms":12,"note":"ask {email}","extra":{extra}{tail}}}"#
            );
            let rule = crate::shared::json::parse_event(payload.as_bytes());
            let record = Record::new(payload.clone().into_bytes(), Origin::Generator { seq: 1 });
            let orgs = OrganizationTable::default();
            let ctx = BatchContext::new(chrono::Utc::now(), &orgs);
            let enricher = Enricher::new(HostInfo::default(), "hestyna", "", "");
            let doc = match decode(payload.as_bytes(), None) {
                Ok(ev) => {
                    prop_assert!(rule.is_ok(), "decoded what the rule refuses: {payload}");
                    enricher.enrich(&ev, &record, &ctx)
                }
                Err(invalid) => {
                    let json_fault = matches!(invalid.reason, InvalidReason::NotJson | InvalidReason::DuplicateField);
                    prop_assert_eq!(json_fault, rule.is_err(), "{} {:?}", payload, invalid);
                    enricher.enrich_invalid(&record, &invalid, chrono::Utc::now(), &ctx)
                }
            };
            static REDACTOR: std::sync::LazyLock<Redactor> =
                std::sync::LazyLock::new(|| redactor(RedactionMode::Mask, &[]));
            let redacted = REDACTOR.redact(doc, &mut [0; 32]);
            prop_assert!(redacted.is_ok(), "unredactable: {:?}", redacted.err().map(|u| u.error));
            let out = redacted.unwrap();
            prop_assert!(!out.as_str().contains(email), "{}", out.as_str());
        }
    }

    proptest! {
        /// Whatever text surrounds an email, it never survives, and the record stays JSON.
        #[test]
        fn emails_never_survive(prefix in "\\PC{0,20}", user in "[a-z0-9._]{1,12}", domain in "[a-z]{2,10}", suffix in "\\PC{0,20}") {
            let r = redactor(RedactionMode::Mask, &[]);
            let email = format!("{user}@{domain}.com");
            let json = serde_json::json!({"m": format!("{prefix}{email}{suffix}")}).to_string();
            let mut d = doc(&json);
            r.redact_in_place(&mut d, &mut [0; 16]).unwrap();
            let v: Value = serde_json::from_slice(&d.json).unwrap();
            prop_assert!(!v["m"].as_str().unwrap().contains(&email));
        }

        /// Where the one-pass quick check says "nothing here", the full redaction indeed changes
        /// nothing: on JSON objects whose keys and values are made of the patterns' literals, near
        /// misses, separators and digits (one level of nesting, ASCII, no escapes).
        #[test]
        fn the_quick_check_misses_nothing_the_full_redaction_finds(
            entries in prop::collection::vec((word_soup(), word_soup(), any::<bool>()), 1..8),
        ) {
            let r = redactor(RedactionMode::Mask, &["user.email"]);
            let mut object = serde_json::Map::new();
            for (key, value, nest) in entries {
                let value = if nest { serde_json::json!({ value.clone(): value }) } else { Value::String(value) };
                object.insert(key, value);
            }
            let json = serde_json::to_vec(&Value::Object(object)).unwrap();
            prop_assume!(json.is_ascii() && !json.contains(&b'\\'));
            prop_assert!(!r.quick_check_misses(&json), "{}", String::from_utf8_lossy(&json));
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        /// The same on text outside ASCII (characters that fold into ASCII letters, other scripts'
        /// digits, letters a `\b` counts as word characters) and on documents with escapes: quotes,
        /// backslashes and control characters as serde_json escapes them, non-ASCII characters as
        /// `\uXXXX` (pairs for astral ones), and some ASCII characters escaped too.
        #[test]
        fn the_quick_check_misses_nothing_in_escaped_or_non_ascii_text(
            entries in prop::collection::vec((wide_soup(), wide_soup(), any::<bool>()), 1..6),
            escape_non_ascii in any::<bool>(),
            escaped in prop::collection::vec(prop::sample::select(b"oksyjpwilm@-_".to_vec()), 0..3),
        ) {
            let r = redactor(RedactionMode::Mask, &["user.email"]);
            let mut object = serde_json::Map::new();
            for (key, value, nest) in entries {
                let value = if nest { serde_json::json!({ value.clone(): [value] }) } else { Value::String(value) };
                object.insert(key, value);
            }
            let mut json = serde_json::to_string(&Value::Object(object)).unwrap();
            if escape_non_ascii {
                json = json.chars().map(|c| match c.is_ascii() {
                    true => c.to_string(),
                    false => c.encode_utf16(&mut [0; 2]).iter().map(|u| format!("\\u{u:04x}")).collect(),
                }).collect();
            }
            for b in escaped {
                json = json.replace(b as char, &format!("\\u{b:04x}"));
            }
            prop_assert!(!r.quick_check_misses(json.as_bytes()), "{}", json);
        }
    }

    #[test]
    fn text_outside_ascii_and_escaped_text_take_the_quick_check() {
        let r = redactor(RedactionMode::Mask, &["user.email"]);
        for clean in [
            r#"{"note":"r\u00e9clamation \ud83d\ude80 \"quoted\"\tand\\path","city":"Zürich"}"#,
            r#"{"tokens_prompt":12,"client":{"tags":["tier\t2",null,true]}}"#,
        ] {
            assert!(!r.may_match(clean.as_bytes()), "{clean}");
        }
        for dirty in [
            r#"{"note":"jane\u0040example.com"}"#,
            r#"{"n\u0061me":"x","user":{"em\u0061il":"x"}}"#,
            r#"{"pass\u0077ord":"hunter2"}"#,
            r#"{"note":"to\u212aen abcdefgh12345"}"#,
            r#"{"note":"ﬁ \u0663\u0664\u0665\u0666\u0667\u0668\u0669\u0660\u0661\u0662\u0663\u0664\u0665"}"#,
            r#"{"note":"\ud800"}"#,
        ] {
            assert!(r.may_match(dirty.as_bytes()), "{dirty}");
        }
    }

    /// [`word_soup`] with characters outside ASCII and ones JSON escapes.
    fn wide_soup() -> impl Strategy<Value = String> {
        prop::collection::vec(
            prop_oneof![
                3 => word_soup(),
                1 => prop::sample::select(vec![
                    "\u{212A}", "\u{017F}", "to\u{212A}en ", "pa\u{017F}\u{017F}word=", "é", "Zürich",
                    "\u{1F680}", "—", "\u{663}\u{664}\u{665}\u{666}\u{667}\u{668}\u{669}",
                    "\u{FF14}\u{FF11}\u{FF11}\u{FF11}", "\"", "\\", "\t", "\n", "\u{1}", "ß", "İ", "ı",
                ])
                .prop_map(str::to_owned),
            ],
            0..5,
        )
        .prop_map(|parts| parts.concat())
    }

    /// Text made of the redactor's literals, near misses and noise (no quote, no backslash).
    fn word_soup() -> impl Strategy<Value = String> {
        prop::collection::vec(
            prop_oneof![
                prop::sample::select(vec![
                    "token",
                    "tokens",
                    "Token ",
                    "bearer ",
                    "BEARER abcdefgh12345",
                    "basic ",
                    "Basic dXNlcjpwYXNz",
                    "password",
                    "passwd=",
                    "PassWord: hunter22",
                    "secret: ",
                    "api_key=",
                    "api-key ",
                    "apikey:",
                    "private_key=",
                    "authorization: x",
                    "cookie=abc123",
                    "eyJ",
                    "eyJhbGciOi.eyJzdWIiOi.sig12345",
                    "sk-",
                    "sk_live_abcdefghijklmnop",
                    "pk_test_",
                    "AKIA",
                    "ghp_",
                    "xoxb-",
                    "@",
                    "a@b.co",
                    "jane@example.com",
                    "4111",
                    " ",
                    "-",
                    "_",
                    ".",
                    ":",
                    "=",
                    "ssn",
                    "session",
                    "credential",
                    "email",
                    "x",
                    "abc",
                    "0123456789",
                    "2026-11-27T08:00:00Z",
                    "password_reset",
                    "user",
                ])
                .prop_map(str::to_owned),
                "[a-zA-Z0-9 :=_@.-]{0,10}",
            ],
            0..6,
        )
        .prop_map(|parts| parts.concat())
    }
}
