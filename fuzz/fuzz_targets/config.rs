//! The configuration parser: any text is a configuration or a list of faults, never a panic; a fault
//! always names its key path.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match hestyna_obsd::config::from_parts(text, "fuzz.toml", Default::default()) {
        Ok(_) => {}
        Err(error) => assert!(!error.to_string().is_empty()),
    }
});
