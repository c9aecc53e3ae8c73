//! `generate --output` then `replay`: the same pipelines over a file, and a summary that agrees with it.

mod common;

use common::*;
use serde_json::Value;
use std::process::Command;

#[test]
fn replay_derives_what_the_file_holds() {
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events.jsonl");
    let bin = env!("CARGO_BIN_EXE_hestyna-obsd");
    run_ok(
        Command::new(bin)
            .args([
                "generate",
                "--count",
                "3000",
                "--seed",
                "5",
                "--invalid-ratio",
                "0.02",
                "--quiet",
                "--output",
            ])
            .arg(&events),
    );

    let config = dir.path().join("replay.toml");
    std::fs::write(
        &config,
        format!(
            "[dead_letter]\nkind = \"file\"\npath = \"{}\"\n[http]\nlisten = \"127.0.0.1:0\"\n[forward.sinks.siem]\nkind = \"file\"\npath = \"{}\"\n",
            dir.path().join("dlq.jsonl").display(),
            dir.path().join("siem.jsonl").display()
        ),
    )
    .unwrap();
    let out = Command::new(bin)
        .arg("--config")
        .arg(&config)
        .arg("replay")
        .arg(&events)
        .arg("--print-metrics")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );

    let lines: Vec<&str> = std::fs::read_to_string(&events)
        .unwrap()
        .leak()
        .lines()
        .collect();
    let parsed: Vec<Option<Value>> = lines
        .iter()
        .map(|l| serde_json::from_str::<Value>(l).ok())
        .collect();
    let llm_runs = parsed
        .iter()
        .flatten()
        .filter(|v| {
            v["type"] == "llm_run" && v["intent"].is_string() && v["latency_ms"].is_number()
        })
        .count();
    let dead = read_jsonl(&dir.path().join("dlq.jsonl")).len();
    let siem = read_jsonl(&dir.path().join("siem.jsonl"));
    let forwarded = siem.len();
    let forwarded_invalid = siem
        .iter()
        .filter(|d| d["event"]["outcome"] == "invalid")
        .count();

    assert!(stdout.contains("records read        3000\n"), "{stdout}");
    assert!(
        stdout.contains(&format!("dead letters        {dead}\n")),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("forwarded           {forwarded}\n")),
        "{stdout}"
    );
    assert_eq!(forwarded, 3000, "every line is forwarded");
    assert_eq!(
        forwarded_invalid, dead,
        "invalid lines are dead-lettered and forwarded marked invalid"
    );
    assert!((30..=100).contains(&dead), "about 2% invalid: {dead}");
    let metrics = parse_metrics(stdout.split_once("\n\n").unwrap().1);
    assert_eq!(
        sum(&metrics, "hestyna_llm_runs_total", &[]),
        llm_runs as f64
    );
    assert_eq!(
        sum(
            &metrics,
            "hestyna_obsd_events_received_total",
            &["pipeline=\"metrics\"", "topic=\"(file)\""]
        ),
        3000.0
    );
}
