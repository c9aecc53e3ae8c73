//! The quick check on raw bytes: can anything in this document need redaction? One case-insensitive
//! Aho-Corasick search (with its SIMD prefilter) for the literals every match must contain (each built-in pattern's, the secret
//! key names', the redacted fields' keys), each hit checked for the word boundaries its pattern needs,
//! and only then the pattern itself. Patterns without such literals (user patterns) are run whole;
//! the card-number pattern has a digit-run check instead.
//!
//! It reads text without escapes: a document's bytes as written when they hold no backslash, else its
//! strings decoded ([`super::strings`]). Non-ASCII text is checked the same way, with two cares: a
//! non-ASCII character counts as a non-word character beside a literal (so a boundary it might make is
//! never ruled out), and a character that is not a digit byte but may be a `\d` (another script's
//! digits) counts as a digit in a digit run. Under Unicode case folding `K` (U+212A) is a `k` and `ſ`
//! (U+017F) an `s`, which a byte literal would miss: text holding one of those takes the slow check,
//! which runs every pattern ([`folds_into_ascii`]; a test checks against the regex engine that no
//! other character folds into the literals' letters). The property tests in the redactor check that
//! wherever the full redaction finds something, this check says "may match".

use aho_corasick::{AhoCorasick, MatchKind};

/// What a literal hit may be the start of.
#[derive(Debug, Clone, Copy)]
enum Target {
    /// A match of pattern `i`.
    Pattern(usize),
    /// A secret key name.
    SecretKey,
    /// The key of redacted field `i` (confirmed byte for byte: the pass is case-insensitive).
    Field(usize),
}

/// A literal and the word boundaries a match needs around it.
#[derive(Debug, Clone, Copy)]
struct Cond {
    target: Target,
    before: bool,
    after: bool,
}

/// The literals of a built-in pattern (lowercase; matched case-insensitively) and whether the
/// pattern puts a word boundary before and after them. `None`: the pattern has no literal (checked by
/// its own means, or run whole).
fn builtin_literals(name: &str) -> Option<(&'static [&'static str], bool, bool)> {
    const SECRET_WORDS: &[&str] = &[
        "password",
        "passwd",
        "secret",
        "token",
        "api_key",
        "api-key",
        "apikey",
        "private_key",
        "private-key",
        "privatekey",
        "authorization",
        "cookie",
    ];
    Some(match name {
        "email" => (&["@"], false, false),
        "bearer_token" => (&["bearer", "token"], true, true),
        "basic_auth" => (&["basic"], true, true),
        "secret_assignment" => (SECRET_WORDS, true, true),
        "jwt" => (&["eyj"], true, false),
        _ => return None,
    })
}

/// `api_key` is an alternation of literals with different boundaries.
const API_KEY_PREFIXES: &[&str] = &[
    "sk-", "sk_", "pk-", "pk_", "rk-", "rk_", "akia", "ghp_", "gho_", "ghu_", "ghs_", "ghr_",
    "xoxa-", "xoxb-", "xoxp-", "xoxr-",
];
const API_KEY_WORDS: &[&str] = &["api_key", "api-key", "apikey", "secret", "password"];

/// The quick check's literals.
pub(super) struct Quick {
    ac: Option<AhoCorasick>,
    /// By literal id: what a hit may start.
    conds: Vec<Vec<Cond>>,
    /// Patterns with a digit-run check (`credit_card`): 13 digits in a run of digits, spaces and hyphens.
    digit_runs: Vec<usize>,
    /// Patterns run whole.
    rest: Vec<usize>,
}

impl Quick {
    /// The check for these patterns (`builtins[i]`: pattern `i`'s built-in name, `None` for a user
    /// pattern), secret key literals and field keys.
    pub(super) fn new(
        builtins: &[Option<&str>],
        secret_literals: &[String],
        field_keys: &[Vec<u8>],
    ) -> Quick {
        let mut literals: Vec<Vec<u8>> = Vec::new();
        let mut conds: Vec<Vec<Cond>> = Vec::new();
        let mut add = |literal: &[u8], cond: Cond| {
            let lower = literal.to_ascii_lowercase();
            match literals.iter().position(|l| *l == lower) {
                Some(i) => conds[i].push(cond),
                None => {
                    literals.push(lower);
                    conds.push(vec![cond]);
                }
            }
        };
        let (mut digit_runs, mut rest) = (Vec::new(), Vec::new());
        for (i, name) in builtins.iter().enumerate() {
            let target = Target::Pattern(i);
            match name.and_then(|n| builtin_literals(n).map(|l| (n, l))) {
                Some((_, (words, before, after))) => {
                    for w in words {
                        add(
                            w.as_bytes(),
                            Cond {
                                target,
                                before,
                                after,
                            },
                        );
                    }
                }
                None if *name == Some("api_key") => {
                    for w in API_KEY_PREFIXES {
                        add(
                            w.as_bytes(),
                            Cond {
                                target,
                                before: true,
                                after: false,
                            },
                        );
                    }
                    for w in API_KEY_WORDS {
                        add(
                            w.as_bytes(),
                            Cond {
                                target,
                                before: true,
                                after: true,
                            },
                        );
                    }
                }
                None if *name == Some("credit_card") => digit_runs.push(i),
                None => rest.push(i),
            }
        }
        for literal in secret_literals {
            add(
                literal.as_bytes(),
                Cond {
                    target: Target::SecretKey,
                    before: false,
                    after: false,
                },
            );
        }
        for (i, key) in field_keys.iter().enumerate() {
            add(
                key,
                Cond {
                    target: Target::Field(i),
                    before: false,
                    after: false,
                },
            );
        }
        // The search reports the longest literal at each place; the literals that are prefixes of it
        // match there too, so it carries their conditions as well.
        let conds: Vec<Vec<Cond>> = literals
            .iter()
            .map(|long| {
                (literals.iter().zip(&conds))
                    .filter(|(short, _)| long.starts_with(short))
                    .flat_map(|(_, c)| c.iter().copied())
                    .collect()
            })
            .collect();
        let ac = (!literals.is_empty()).then(|| {
            AhoCorasick::builder()
                .ascii_case_insensitive(true)
                .match_kind(MatchKind::LeftmostLongest)
                .build(&literals)
                .expect("a few short literals build")
        });
        Quick {
            ac,
            conds,
            digit_runs,
            rest,
        }
    }

    /// Whether something may need redaction in `json` (valid UTF-8, no escape, no character
    /// [`folds_into_ascii`]): `pattern(i, json)` runs
    /// pattern `i`, `secret(start, end)` checks a secret-key hit, `field(i, start, end)` a field hit.
    pub(super) fn may_match(
        &self,
        json: &[u8],
        pattern: &dyn Fn(usize) -> bool,
        secret: &dyn Fn(usize, usize) -> bool,
        field: &dyn Fn(usize, usize, usize) -> bool,
    ) -> bool {
        if self.rest.iter().any(|&i| pattern(i)) {
            return true;
        }
        if !self.digit_runs.is_empty()
            && digit_run(json, 13)
            && self.digit_runs.iter().any(|&i| pattern(i))
        {
            return true;
        }
        let Some(ac) = &self.ac else {
            return false;
        };
        // Patterns already run on this document (found not to match); at most 64 tracked, the rest rerun.
        let mut ran: u64 = 0;
        let mut from = 0;
        // Every place a literal starts: after a hit, search again from the next byte, so that a literal
        // starting inside the one found is found too.
        while let Some(hit) = ac.find(aho_corasick::Input::new(json).range(from..)) {
            from = hit.start() + 1;
            for cond in &self.conds[hit.pattern().as_usize()] {
                if (cond.before && !boundary(json, hit.start()))
                    || (cond.after && !boundary(json, hit.end()))
                {
                    continue;
                }
                let found = match cond.target {
                    Target::Pattern(i) => {
                        let bit = 1u64.checked_shl(i as u32).unwrap_or(0);
                        if ran & bit != 0 {
                            continue;
                        }
                        ran |= bit;
                        pattern(i)
                    }
                    Target::SecretKey => secret(hit.start(), hit.end()),
                    Target::Field(i) => field(i, hit.start(), hit.end()),
                };
                if found {
                    return true;
                }
            }
        }
        false
    }
}

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Whether there is a word boundary at `at` (ASCII: between a word byte and a non-word byte, or an end).
fn boundary(json: &[u8], at: usize) -> bool {
    let before = at.checked_sub(1).map(|i| json[i]).is_some_and(is_word);
    let after = json.get(at).copied().is_some_and(is_word);
    before != after
}

/// The characters outside ASCII that Unicode case folding (as the regex engine applies it) makes equal
/// to an ASCII letter: LATIN SMALL LETTER LONG S (`s`) and KELVIN SIGN (`k`).
const FOLDING_INTO_ASCII: [&str; 2] = ["\u{017F}", "\u{212A}"];

/// Whether `text` holds a character that case folding makes an ASCII letter (see
/// [`FOLDING_INTO_ASCII`]): then the literals' search could miss a match.
pub(super) fn folds_into_ascii(text: &[u8]) -> bool {
    FOLDING_INTO_ASCII
        .iter()
        .any(|c| memchr::memmem::find(text, c.as_bytes()).is_some())
}

/// Whether a run of digits, spaces and hyphens holds at least `n` digits. Outside ASCII, any numeric
/// character counts as a digit (`char::is_numeric` holds every character `\d` matches).
fn digit_run(json: &[u8], n: usize) -> bool {
    if !json.is_ascii() {
        return digit_run_chars(&String::from_utf8_lossy(json), n);
    }
    let mut digits = 0;
    for &b in json {
        match b {
            b'0'..=b'9' => {
                digits += 1;
                if digits >= n {
                    return true;
                }
            }
            b' ' | b'-' => {}
            _ => digits = 0,
        }
    }
    false
}

/// [`digit_run`] for text with characters outside ASCII.
fn digit_run_chars(text: &str, n: usize) -> bool {
    let mut digits = 0;
    for c in text.chars() {
        match c {
            ' ' | '-' => {}
            c if c.is_numeric() => {
                digits += 1;
                if digits >= n {
                    return true;
                }
            }
            _ => digits = 0,
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_pattern_has_a_check() {
        for (name, _) in crate::config::BUILTIN_PATTERNS {
            let handled =
                builtin_literals(name).is_some() || ["api_key", "credit_card"].contains(name);
            assert!(handled, "{name} would be run whole: give it literals");
        }
    }

    #[test]
    fn boundaries_and_digit_runs() {
        assert!(boundary(b"a token", 2) && !boundary(b"tokens", 5) && boundary(b"token", 5));
        assert!(digit_run(b"4111 1111-1111 1111", 13));
        assert!(!digit_run(b"2026-11-27T08:00:00.000Z", 13));
        // Arabic-Indic and fullwidth digits are `\d` too.
        assert!(digit_run("٤١١١ ١١١١ ١١١١ ١١١١".as_bytes(), 13));
        assert!(digit_run("４１１１-１１１１-１１１１-１".as_bytes(), 13));
        assert!(!digit_run("٤١١١ é ١١١١ ١١١١".as_bytes(), 13));
    }

    /// Every character the regex engine takes, case-insensitively, for one of the literals' ASCII
    /// characters is that character itself or in [`FOLDING_INTO_ASCII`]; and every numeric
    /// character `\d` matches is numeric for [`digit_run`].
    #[test]
    fn only_the_listed_characters_fold_into_the_literals() {
        let letters = regex::Regex::new(r"(?i)^[a-z0-9_@\-]$").unwrap();
        let digit = regex::Regex::new(r"^\d$").unwrap();
        let mut folding = Vec::new();
        for c in (0x80..=0x10FFFF).filter_map(char::from_u32) {
            let mut utf8 = [0; 4];
            let s = c.encode_utf8(&mut utf8);
            if letters.is_match(s) {
                folding.push(s.to_owned());
            }
            assert!(
                !digit.is_match(s) || c.is_numeric(),
                "{c:?} is \\d and not numeric"
            );
        }
        assert_eq!(
            folding, FOLDING_INTO_ASCII,
            "characters that fold into ASCII"
        );
        assert!(folds_into_ascii("to\u{212A}en".as_bytes()) && !folds_into_ascii(b"token"));
    }

    /// A literal that needs a word boundary on one side has a word byte on that side: then a
    /// non-ASCII neighbour (a non-word byte to [`boundary`]) never rules a hit out.
    #[test]
    fn bounded_literals_have_word_bytes_at_their_bounded_ends() {
        let builtins: Vec<Option<&str>> = crate::config::BUILTIN_PATTERNS
            .iter()
            .map(|(n, _)| Some(*n))
            .collect();
        let quick = Quick::new(&builtins, &[], &[]);
        let ac = quick.ac.as_ref().unwrap();
        let mut literals: Vec<&[u8]> = Vec::new();
        for words in builtins.iter().filter_map(|n| builtin_literals(n.unwrap())) {
            literals.extend(words.0.iter().map(|w| w.as_bytes()));
        }
        literals.extend(
            API_KEY_PREFIXES
                .iter()
                .chain(API_KEY_WORDS)
                .map(|w| w.as_bytes()),
        );
        for literal in literals {
            let hit = ac.find(literal).expect("every literal is found");
            for cond in &quick.conds[hit.pattern().as_usize()] {
                let (first, last) = (literal[0], literal[literal.len() - 1]);
                assert!(
                    !cond.before || is_word(first),
                    "{:?}",
                    std::str::from_utf8(literal)
                );
                assert!(
                    !cond.after || is_word(last),
                    "{:?}",
                    std::str::from_utf8(literal)
                );
            }
        }
    }
}
