//! Entry points for the fuzz targets (`fuzz/`) into modules the crate keeps private: not an API.

use std::path::Path;

/// Parses a web configuration (`http.web_config_file`) from `text` as if read from `path`: `Err`
/// with the message an operator would see.
pub fn web_config(text: &str, path: &Path) -> Result<(), String> {
    crate::http::Security::parse(text, path)
        .map(drop)
        .map_err(|e| e.to_string())
}
