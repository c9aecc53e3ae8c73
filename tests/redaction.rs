//! Redaction fails closed, end to end: an event holding an email beside JSON the redactor could not read
//! (a number beyond f64, a lone surrogate, nesting deeper than serde_json reads) is refused at decoding
//! by the one JSON rule both read by (`not_json`, dead-lettered), forwarded only as a marked invalid
//! record whose raw text the redactor reads as one string (the email redacted), and the readable events
//! around it are forwarded, redacted. Nothing is left that the redactor cannot read.

mod common;

use common::*;

const EMAIL: &str = "jane.doe@example.com";

fn event(id: &str, extra: &str) -> String {
    format!(
        r#"{{"event_id":"{id}","type":"llm_run","occurred_at":"2026-11-27T10:00:00Z","organization":"acme","run_id":"r-{id}","intent":"billing","outcome":"success","latency_ms":120,"prompt":"mail {EMAIL} please"{extra}}}"#
    )
}

#[test]
fn an_unreadable_event_with_an_email_is_dead_lettered_not_forwarded() {
    let dir = tempfile::tempdir().unwrap();
    let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
    let unreadable = [
        event("huge", r#","x":1e400"#),
        event("surrogate", r#","x":"\ud800""#),
        event("deep", &format!(r#","x":{deep}"#)),
    ];
    let mut lines = vec![event("before", "")];
    lines.extend(unreadable.iter().cloned());
    lines.push(event("after", ""));
    let events = dir.path().join("events.jsonl");
    std::fs::write(&events, lines.join("\n") + "\n").unwrap();
    let (siem, dlq) = (dir.path().join("siem.jsonl"), dir.path().join("dlq.jsonl"));
    let config = dir.path().join("replay.toml");
    std::fs::write(
        &config,
        format!(
            "[dead_letter]\nkind = \"file\"\npath = \"{}\"\n[forward.sinks.siem]\nkind = \"file\"\npath = \"{}\"\n",
            dlq.display(),
            siem.display()
        ),
    )
    .unwrap();
    let stdout = replay(&config, &events);

    let forwarded = std::fs::read_to_string(&siem).unwrap();
    assert!(
        !forwarded.contains(EMAIL),
        "an email reached the SIEM:\n{forwarded}"
    );
    let ids: Vec<String> = read_jsonl(&siem)
        .iter()
        .map(|d| d["event"]["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        &ids[..2],
        ["before", "after"],
        "the readable events are forwarded, redacted"
    );
    let invalid: Vec<serde_json::Value> = read_jsonl(&siem).into_iter().skip(2).collect();
    assert_eq!(invalid.len(), 3, "the refused ones, marked invalid");
    for record in &invalid {
        assert_eq!(record["event"]["outcome"], "invalid");
        assert_eq!(record["event"]["reason"], "not_json", "{record}");
        assert!(record["message"].as_str().unwrap().contains("[REDACTED]"));
    }

    let dead = read_jsonl(&dlq);
    assert_eq!(dead.len(), 3, "each refused record, once: {dead:#?}");
    assert!(dead.iter().all(|d| d["reason"] == "not_json"), "{dead:#?}");
    assert!(
        stdout.contains("hestyna_obsd_redaction_failures_total 0"),
        "nothing the redactor could not read:\n{stdout}"
    );
    assert!(
        stdout.contains("reason=\"not_json\"} 3"),
        "counted:\n{stdout}"
    );
}
