//! Redaction: secrets and personal data taken out of every forwarded record before any sink sees it.
//!
//! Two kinds of rule: regular expressions, whose every match inside any string value is replaced, and
//! field paths, whose whole value is replaced. The replacement is `[REDACTED]`, or (mode `hmac`)
//! `hmac-sha256:` and the hex HMAC-SHA256 of the replaced text under a secret key, so equal values stay
//! equal for correlation while the value itself cannot be recovered or guessed without the key.
//!
//! Speed: most records hold nothing to redact. A record is checked first on its JSON bytes, as written:
//! if no pattern matches anywhere in them, no redacted field's key appears in them, and they hold no
//! backslash (an escape could hide a match from a check on the raw bytes), nothing in it can need
//! redaction and it is left as it is. Only otherwise is it parsed, cleaned value by value, and written
//! again. A pattern anchored with `^`/`$` cannot be checked on the raw bytes, so it always takes the slow
//! path.

use super::enrich::Document;
use crate::config::{RedactionConfig, RedactionMode, BUILTIN_PATTERNS};
use crate::shared::json::hex;
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
    /// `"<last segment>"` of each field path: if absent from the bytes, the field is absent.
    field_keys: Vec<Vec<u8>>,
    replace: Replace,
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
        let field_keys = fields
            .iter()
            .map(|f| {
                serde_json::to_vec(f.last().expect("checked: no empty path")).expect("a string")
            })
            .collect();
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
        self.always_parse
            || json.contains(&b'\\')
            || self.prefilter.iter().any(|p| p.is_match(json))
            || self
                .field_keys
                .iter()
                .any(|k| json.windows(k.len()).any(|w| w == k.as_slice()))
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
        // Something may need redaction: the document must be read to find it, and what cannot be read
        // is refused (fails closed), never passed on as it is.
        let mut value: Value =
            serde_json::from_slice(&doc.json).map_err(|e| format!("not redactable: {e}"))?;
        let mut changed = false;
        for (i, path) in self.fields.iter().enumerate() {
            if let Some(target) = lookup(&mut value, path) {
                let text = match &*target {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                *target = Value::String(self.replacement(&text));
                tally[self.patterns.len() + i] += 1;
                changed = true;
            }
        }
        changed |= self.clean_strings(&mut value, tally);
        if let Some(org) = &mut doc.organization {
            changed |= self.clean(org, tally);
        }
        changed |= self.clean(&mut doc.event_id, tally);
        if changed {
            doc.json = serde_json::to_vec(&value).expect("a tree is valid JSON");
        }
        Ok(changed)
    }

    /// Applies every pattern to every string in the tree.
    fn clean_strings(&self, value: &mut Value, tally: &mut [u64]) -> bool {
        match value {
            Value::String(s) => self.clean(s, tally),
            Value::Array(items) => items
                .iter_mut()
                .fold(false, |acc, v| self.clean_strings(v, tally) | acc),
            Value::Object(map) => map
                .values_mut()
                .fold(false, |acc, v| self.clean_strings(v, tally) | acc),
            _ => false,
        }
    }

    /// Applies every pattern to one string, in one pass over the original text (so a replacement is
    /// never matched again): where matches overlap, the earliest (then the longest) wins.
    fn clean(&self, s: &mut String, tally: &mut [u64]) -> bool {
        let mut found: Vec<(usize, usize, usize)> = Vec::new();
        for (i, pattern) in self.patterns.iter().enumerate() {
            found.extend(pattern.find_iter(s).map(|m| (m.start(), m.end(), i)));
        }
        if found.is_empty() {
            return false;
        }
        found.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
        let mut out = String::with_capacity(s.len());
        let mut at = 0;
        for (start, end, rule) in found {
            if start < at || start == end {
                continue;
            }
            out.push_str(&s[at..start]);
            out.push_str(&self.replacement(&s[start..end]));
            tally[rule] += 1;
            at = end;
        }
        out.push_str(&s[at..]);
        *s = out;
        true
    }
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
    ];

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
                let json = template.replace("SECRET", secret);
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
    }
}
