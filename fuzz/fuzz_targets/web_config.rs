//! The web-configuration parser (exporter-toolkit's file and our extensions): any text is a security
//! setting or a clear error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = std::path::Path::new("/nonexistent/web-config.yml");
    if let Err(message) = hestyna_obsd::fuzzing::web_config(text, path) {
        assert!(!message.is_empty());
    }
});
