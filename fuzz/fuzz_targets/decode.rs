//! Event decoding against serde_json: whatever the bytes, decoding never panics; what serde_json
//! cannot read is `not_json`, what is not an object is `not_object`, and a decoded event says what
//! serde_json reads in the same bytes.
#![no_main]

use hestyna_obsd::decode::{decode, InvalidReason};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let decoded = decode(data, None);
    let Ok(value) = serde_json::from_slice::<Value>(data) else {
        let reason = decoded.as_ref().map_err(|e| e.reason);
        assert_eq!(
            reason.err(),
            Some(InvalidReason::NotJson),
            "serde_json refuses it"
        );
        return;
    };
    let Some(object) = value.as_object() else {
        assert_eq!(
            decoded.map_err(|e| e.reason).err(),
            Some(InvalidReason::NotObject)
        );
        return;
    };
    match decoded {
        Ok(event) => {
            assert_eq!(object["event_id"].as_str(), Some(&*event.event_id));
            assert_eq!(object["organization"].as_str(), Some(&*event.organization));
            assert_eq!(object["type"].as_str(), Some(event.type_name()));
        }
        // Nesting past the event limit is refused as unreadable; anything else readable is judged by the
        // contract, never called unreadable.
        Err(e) if e.reason == InvalidReason::NotJson => {
            assert!(
                e.detail.contains("nesting"),
                "serde_json reads it, yet: {e}"
            )
        }
        Err(e) => assert_ne!(e.reason, InvalidReason::NotObject, "{e}"),
    }
});
