//! Entry points for the fuzz targets (`fuzz/`) into modules the crate keeps private: not an API.

use std::path::Path;

/// Parses a web configuration (`http.web_config_file`) from `text` as if read from `path`: `Err`
/// with the message an operator would see.
pub fn web_config(text: &str, path: &Path) -> Result<(), String> {
    crate::http::Security::parse(text, path)
        .map(drop)
        .map_err(|e| e.to_string())
}

/// Whether the redactor (the shipped rules, and a redacted field `user.email`) lets `json` through its
/// quick check untouched while its full redaction would change it: a leak, which the `redact_quick`
/// target asserts never happens.
pub fn redaction_quick_check_misses(json: &[u8]) -> bool {
    static REDACTOR: std::sync::LazyLock<crate::forward::Redactor> =
        std::sync::LazyLock::new(|| {
            let config = crate::config::RedactionConfig {
                fields: vec!["user.email".into()],
                ..Default::default()
            };
            crate::forward::Redactor::new(&config).expect("the shipped rules compile")
        });
    REDACTOR.quick_check_misses(json)
}
