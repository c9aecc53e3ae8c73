//! The redactor's quick check against its full redaction, on any bytes as a forwarded document: where
//! the quick check says "nothing here" (the document goes on untouched), the full redaction, reading
//! the same document, changes nothing. `fuzz/dicts/redact_quick.dict` gives the fuzzer the rules'
//! literals, escapes and characters that case-fold into ASCII.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    assert!(
        !hestyna_obsd::fuzzing::redaction_quick_check_misses(data),
        "the quick check let through what redaction changes: {}",
        String::from_utf8_lossy(data)
    );
});
