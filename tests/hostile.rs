//! The hostile corpus (`tests/data/hostile/`, its expected outcomes in `cases.toml`) through a running
//! daemon: each record is derived or dead-lettered with its reason, and counted; the daemon keeps
//! serving with its memory bounded; the scrape passes `promtool check metrics`; and the email planted in
//! every record never reaches the SIEM.

mod common;

use common::*;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

const PLANTED: &str = "jane.doe@example.com";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Cases {
    case: Vec<Case>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    file: String,
    outcome: String,
    fill: Option<String>,
    times: Option<usize>,
    suffix: Option<String>,
    suffix_fill: Option<String>,
}

impl Case {
    /// The record's bytes, a template expanded.
    fn record(&self, dir: &Path) -> Vec<u8> {
        let mut bytes = std::fs::read(dir.join(&self.file)).unwrap();
        assert_eq!(bytes.pop(), Some(b'\n'), "{}: one line", self.file);
        let Some(fill) = &self.fill else {
            return bytes;
        };
        let times = self.times.expect("a template says how many times");
        let mut filling = fill.repeat(times);
        if let Some(close) = &self.suffix_fill {
            filling.push_str(&close.repeat(times));
        }
        filling.push_str(self.suffix.as_deref().unwrap_or(""));
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.contains("@@FILL@@"), "{}", self.file);
        text.replace("@@FILL@@", &filling).into_bytes()
    }
}

fn corpus() -> Vec<(Case, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/hostile");
    let cases: Cases = toml::from_str(&std::fs::read_to_string(dir.join("cases.toml")).unwrap())
        .expect("cases.toml");
    let listed: Vec<&str> = cases.case.iter().map(|c| c.file.as_str()).collect();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        assert!(
            name == "cases.toml" || listed.contains(&name.as_str()),
            "{name} has no expected outcome in cases.toml"
        );
    }
    cases
        .case
        .into_iter()
        .map(|c| {
            let record = c.record(&dir);
            (c, record)
        })
        .collect()
}

/// The peak resident memory of a process, in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn every_hostile_record_is_derived_or_dead_lettered_and_nothing_leaks() {
    let corpus = corpus();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("hostile.jsonl");
    let mut text = Vec::new();
    for (_, record) in &corpus {
        text.extend_from_slice(record);
        text.push(b'\n');
    }
    std::fs::write(&input, &text).unwrap();
    let (siem, dead) = (dir.path().join("siem.jsonl"), dir.path().join("dead.jsonl"));
    let port = free_port();
    let config = format!(
        "[source]\nkind = \"file\"\n\n[source.file]\npath = \"{}\"\n\n\
         [dead_letter]\nkind = \"file\"\npath = \"{}\"\n\n\
         [forward.sinks.siem]\nkind = \"file\"\npath = \"{}\"\n\n\
         [http]\nlisten = \"127.0.0.1:{port}\"\n\n[http.basic_auth_users]\n{USER} = \"{USER_HASH}\"\n",
        input.display(),
        dead.display(),
        siem.display(),
    );
    let daemon = Daemon::start_with(&config, dir.path(), port, "/readyz");
    let invalid = corpus.iter().filter(|(c, _)| c.outcome != "valid").count();
    // Invalid records are forwarded too (`forward_invalid`, on by default), redacted.
    let forwarded = wait_for("every record forwarded", Duration::from_secs(60), || {
        let docs = read_jsonl(&siem);
        (docs.len() == corpus.len() && read_jsonl(&dead).len() == invalid).then_some(docs)
    });

    let reasons: BTreeMap<usize, String> = read_jsonl(&dead)
        .iter()
        .map(|d| {
            let line = d["line"].as_str().unwrap().parse().unwrap();
            (line, d["reason"].as_str().unwrap().to_owned())
        })
        .collect();
    let mut wrong = Vec::new();
    for (i, (case, _)) in corpus.iter().enumerate() {
        let got = reasons.get(&(i + 1)).map_or("valid", String::as_str);
        if got != case.outcome {
            wrong.push(format!(
                "{}: expected {}, got {got}",
                case.file, case.outcome
            ));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");

    let siem_text = std::fs::read_to_string(&siem).unwrap();
    assert!(!siem_text.contains(PLANTED), "an email reached the SIEM");
    assert_eq!(forwarded.len(), corpus.len());

    let m = daemon.scrape();
    let valid = (corpus.len() - invalid) as f64;
    assert_eq!(sum(&m, "hestyna_llm_runs_total", &[]), valid);
    assert_eq!(
        sum(
            &m,
            "hestyna_obsd_events_invalid_total",
            &["pipeline=\"metrics\""]
        ),
        invalid as f64
    );
    let (status, body) = daemon.get("/metrics", Some((USER, PASSWORD)));
    assert_eq!(status, 200);
    let report = prom::check_metrics(&body);
    assert!(report.is_empty(), "promtool check metrics:\n{report}");
    assert_eq!(daemon.get("/livez", None).0, 200);
    // The 10 MiB record passes through both pipelines and the sink: a few copies of it, not a blow-up.
    let peak = peak_rss_kib(daemon.pid());
    eprintln!(
        "hostile corpus: {} records, {invalid} dead-lettered, peak RSS {} MiB",
        corpus.len(),
        peak / 1024
    );
    assert!(peak < 256 * 1024, "peak RSS {} MiB", peak / 1024);
}
