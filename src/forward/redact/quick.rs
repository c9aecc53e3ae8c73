//! The quick check on raw bytes: can anything in this document need redaction? One case-insensitive
//! Aho-Corasick search (with its SIMD prefilter) for the literals every match must contain (each built-in pattern's, the secret
//! key names', the redacted fields' keys), each hit checked for the word boundaries its pattern needs,
//! and only then the pattern itself. Patterns without such literals (user patterns) are run whole;
//! the card-number pattern has a digit-run check instead.
//!
//! It decides only pure-ASCII documents without escapes: under Unicode case folding `K` (U+212A) is a
//! `k` and `ſ` an `s`, and `\d` takes other scripts' digits, which a byte literal would miss. Anything
//! else takes the slow check, which runs every pattern. The property test in the redactor checks that
//! wherever the slow check says "may match", this one does too.

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

    /// Whether something may need redaction in `json` (ASCII, no backslash): `pattern(i, json)` runs
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

/// Whether a run of digits, spaces and hyphens holds at least `n` digits.
fn digit_run(json: &[u8], n: usize) -> bool {
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
    }
}
