//! Helpers shared by several stages: the exposition text writer (derived series and self metrics), the
//! append-only file (file sink and file dead letters), UTC timestamp and hex writing (the forwarded
//! record, syslog, Splunk), and the form of a bcrypt hash (configuration and web configuration). A leaf: it imports no other module of the crate.

use std::fmt::Write as _;

pub mod alloc;
pub mod append;
pub mod exposition;
pub mod gzip;
mod host;
pub mod json;

pub use host::HostInfo;

/// When a DER certificate expires (its `notAfter`, Unix seconds); `None` if it does not parse.
pub fn certificate_not_after(der: &[u8]) -> Option<i64> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    Some(cert.validity().not_after.timestamp())
}

/// Whether `hash` has the form of a bcrypt hash (`$2a$`, `$2b$`, `$2y$` or `$2x$`, 60 characters): the
/// one check of the configuration's users and of the web configuration's.
pub fn looks_like_bcrypt(hash: &str) -> bool {
    hash.len() == 60
        && ["$2a$", "$2b$", "$2y$", "$2x$"]
            .iter()
            .any(|p| hash.starts_with(p))
}

/// The lowercase words of a key: split at anything not an ASCII letter or digit, at a lowercase letter
/// or digit followed by an uppercase one (`apiKey`), before the last capital of a run followed by a
/// lowercase letter (`APIKey`: `api`, `key`), and between letters and digits.
pub fn key_words(key: &str) -> Vec<String> {
    let chars: Vec<char> = key.chars().collect();
    let mut words = Vec::new();
    let mut word = String::new();
    for (i, &c) in chars.iter().enumerate() {
        if !c.is_ascii_alphanumeric() {
            if !word.is_empty() {
                words.push(std::mem::take(&mut word));
            }
            continue;
        }
        if let Some(&prev) = i.checked_sub(1).map(|p| &chars[p]) {
            let next_lower = chars.get(i + 1).is_some_and(char::is_ascii_lowercase);
            let boundary = prev.is_ascii_alphanumeric()
                && ((!prev.is_ascii_uppercase() && c.is_ascii_uppercase())
                    || (prev.is_ascii_uppercase() && c.is_ascii_uppercase() && next_lower)
                    || prev.is_ascii_digit() != c.is_ascii_digit());
            if boundary && !word.is_empty() {
                words.push(std::mem::take(&mut word));
            }
        }
        word.push(c.to_ascii_lowercase());
    }
    if !word.is_empty() {
        words.push(word);
    }
    words
}

/// The words that make a configuration key, header or query parameter name a secret when printing
/// (broader than the redactor's defaults: printing one value too few masked is the worse mistake).
const SECRET_WORDS: &[&str] = &[
    "password",
    "passwd",
    "pass",
    "secret",
    "token",
    "key",
    "apikey",
    "auth",
    "authorization",
    "cookie",
    "credential",
    "credentials",
    "jaas",
    "private",
    "signature",
    "sig",
    "session",
];

/// Whether a name (`sasl.password`, `Proxy-Authorization`, `X-Api-Key`, `access_token`) says its value is
/// a secret, by its words ([`key_words`]).
pub fn names_a_secret(name: &str) -> bool {
    key_words(name).iter().any(|w| {
        SECRET_WORDS.contains(&w.as_str()) || w.ends_with("password") || w.ends_with("token")
    })
}

/// A URL fit to print: credentials in its userinfo replaced by `***`, and the values of query parameters
/// whose names say they are secrets ([`names_a_secret`]). Works on text that is not a valid URL too (an
/// error message quoting a bad one).
pub fn mask_url(url: &str) -> String {
    let (before_fragment, fragment) = match url.split_once('#') {
        Some((b, f)) => (b, Some(f)),
        None => (url, None),
    };
    let (before_query, query) = match before_fragment.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (before_fragment, None),
    };
    let mut out = String::with_capacity(url.len());
    let authority_at = before_query.find("://").map_or(0, |i| i + 3);
    let authority_end = before_query[authority_at..]
        .find('/')
        .map_or(before_query.len(), |i| authority_at + i);
    match before_query[authority_at..authority_end].rfind('@') {
        Some(at) => {
            out.push_str(&before_query[..authority_at]);
            out.push_str("***");
            out.push_str(&before_query[authority_at + at..]);
        }
        None => out.push_str(before_query),
    }
    if let Some(query) = query {
        out.push('?');
        for (i, pair) in query.split('&').enumerate() {
            if i > 0 {
                out.push('&');
            }
            match pair.split_once('=') {
                Some((name, _)) if names_a_secret(name) => {
                    let _ = write!(out, "{name}=***");
                }
                _ => out.push_str(pair),
            }
        }
    }
    if let Some(fragment) = fragment {
        out.push('#');
        out.push_str(fragment);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_print_without_their_credentials() {
        for (url, shown) in [
            (
                "https://user:hunter2@siem.example:8088/x?a=1",
                "https://***@siem.example:8088/x?a=1",
            ),
            (
                "https://siem.example/x?access_token=abc&index=main&X-Api-Key=k#f",
                "https://siem.example/x?access_token=***&index=main&X-Api-Key=***#f",
            ),
            ("http://tok@h", "http://***@h"),
            ("not a url: u:p@h?sig=1", "***@h?sig=***"),
            ("https://h/path@x?q=1", "https://h/path@x?q=1"),
            ("https://h/", "https://h/"),
        ] {
            assert_eq!(mask_url(url), shown, "{url}");
        }
    }

    #[test]
    fn secret_names_are_found_by_their_words() {
        for name in [
            "sasl.password",
            "Proxy-Authorization",
            "X-Auth-Token",
            "X-API-Key",
            "ssl.key.pem",
            "sasl.jaas.config",
            "client_secret",
            "Cookie",
            "basic_auth_users",
        ] {
            assert!(names_a_secret(name), "{name}");
        }
        for name in [
            "X-Splunk-Request-Channel",
            "Content-Type",
            "bootstrap.servers",
            "index",
            "tokens_prompt",
            "monkey",
        ] {
            assert!(!names_a_secret(name), "{name}");
        }
    }
}
