//! The event contract has two forms, the JSON Schemas in `schemas/` and the Rust decoder; every example
//! beside the schemas is checked against both, so they cannot drift.
//!
//! Example files are named `<type>.<case>.json` (valid) and `<type>.<case>.<reason>.json` (invalid, with
//! the reason the decoder must give). `unknown_type` examples are checked against the envelope alone.

use hestyna_obsd::decode::{decode, EventType};
use jsonschema::{Draft, Resource, Validator};
use serde_json::Value;
use std::path::{Path, PathBuf};

const ID_BASE: &str = "https://schemas.hestyna.invalid/";

fn schemas_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas")
}

fn load(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn validator(kind: &str) -> Validator {
    let envelope = load(&schemas_dir().join("envelope.schema.json"));
    let schema = load(&schemas_dir().join(format!("{kind}.schema.json")));
    jsonschema::options()
        .with_draft(Draft::Draft202012)
        .should_validate_formats(true)
        .with_resource(
            format!("{ID_BASE}envelope.schema.json"),
            Resource::from_contents(envelope).unwrap(),
        )
        .build(&schema)
        .unwrap_or_else(|e| panic!("{kind}: {e}"))
}

fn examples(kind: &str) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> =
        std::fs::read_dir(schemas_dir().join("examples").join(kind))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .map(|p| {
                (
                    p.file_stem().unwrap().to_string_lossy().into_owned(),
                    std::fs::read(&p).unwrap(),
                )
            })
            .collect();
    out.sort();
    out
}

fn schema_for(type_prefix: &str) -> Validator {
    match type_prefix {
        "unknown_type" => validator("envelope"),
        known => validator(known),
    }
}

#[test]
fn every_schema_is_valid_draft_2020_12() {
    for kind in [
        "envelope",
        "llm_run",
        "integration_call",
        "automation_run",
        "request_lifecycle",
    ] {
        let schema = load(&schemas_dir().join(format!("{kind}.schema.json")));
        assert_eq!(
            schema["$schema"],
            "https://json-schema.org/draft/2020-12/schema"
        );
        jsonschema::meta::validate(&schema).unwrap_or_else(|e| panic!("{kind}: {e}"));
        validator(kind);
    }
}

#[test]
fn valid_examples_pass_both_the_schema_and_the_decoder() {
    let valid = examples("valid");
    assert!(valid.len() >= 10);
    for (name, bytes) in valid {
        let prefix = name.split('.').next().unwrap();
        let instance: Value = serde_json::from_slice(&bytes).unwrap();
        let validator = schema_for(prefix);
        let errors: Vec<String> = validator
            .iter_errors(&instance)
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{name}: schema says {errors:?}");
        let ev = decode(&bytes, None).unwrap_or_else(|e| panic!("{name}: decoder says {e}"));
        let expected = if prefix == "unknown_type" {
            EventType::Unknown
        } else {
            EventType::from_name(prefix)
        };
        assert_eq!(ev.event_type(), expected, "{name}");
    }
}

#[test]
fn invalid_examples_fail_both_for_the_named_reason() {
    let invalid = examples("invalid");
    assert!(invalid.len() >= 15);
    let mut reasons = std::collections::BTreeSet::new();
    for (name, bytes) in invalid {
        let parts: Vec<&str> = name.split('.').collect();
        let (prefix, reason) = (parts[0], *parts.last().unwrap());
        let err = decode(&bytes, None)
            .err()
            .unwrap_or_else(|| panic!("{name}: the decoder accepted it"));
        assert_eq!(err.reason.as_str(), reason, "{name}: {err}");
        reasons.insert(reason.to_owned());
        // A schema validates parsed JSON: it cannot see bytes that do not parse, nor a key given twice
        // (parsers keep one of them). The decoder refuses both.
        if reason == "not_json" || reason == "duplicate_field" {
            continue;
        }
        let instance: Value = serde_json::from_slice(&bytes).unwrap();
        assert!(
            !schema_for(prefix).is_valid(&instance),
            "{name}: the schema accepted it"
        );
    }
    let all: std::collections::BTreeSet<String> = hestyna_obsd::decode::InvalidReason::ALL
        .iter()
        .map(|r| r.as_str().to_owned())
        .collect();
    assert_eq!(reasons, all, "an example for every reason");
}
