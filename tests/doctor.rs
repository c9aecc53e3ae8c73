//! `hestyna-obsd doctor` against a real broker and a running daemon: every check passing on a healthy
//! set-up, and failing where it must (a wrong password, the broker stopped, a topic missing, counts
//! stuck, a sink's port closed, an event stamped two hours ahead).

mod common;

use common::receiver::Receiver;
use common::*;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

/// Runs doctor on `config` with `args`: (exit code, status of each check by name, the report).
fn doctor(
    dir: &Path,
    config: &str,
    args: &[&str],
    password: &str,
) -> (i32, BTreeMap<String, String>, Value) {
    let file = dir.join(format!("doctor-{}.toml", unique("c")));
    std::fs::write(&file, config).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_hestyna-obsd"))
        .arg("--config")
        .arg(&file)
        .args(["doctor", "--json", "--interval", "2", "--timeout", "3"])
        .args(["--user", USER, "--password-env", "DOCTOR_TEST_PASSWORD"])
        .args(args)
        .env("DOCTOR_TEST_PASSWORD", password)
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    let statuses = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_owned(),
                c["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    (out.status.code().unwrap(), statuses, report)
}

fn message<'a>(report: &'a Value, name: &str) -> &'a str {
    let checks = report["checks"].as_array().unwrap();
    let check = checks.iter().find(|c| c["name"] == name).unwrap();
    check["message"].as_str().unwrap()
}

/// The test daemon's configuration with an NDJSON sink at `siem` besides its file sink.
fn config(
    broker: &Broker,
    topic: &str,
    dlq: &str,
    dir: &Path,
    port: u16,
    groups: &str,
    siem: &str,
) -> String {
    let sinks = format!(
        "[forward.sinks.siem]\nkind = \"file\"\npath = \"{}\"\n\n[forward.sinks.ndjson]\nkind = \"http\"\nurl = \"{siem}/ingest\"\n",
        dir.join("siem.jsonl").display()
    );
    kafka_config_with_sinks(broker, topic, groups, dlq, port, &sinks)
}

/// Produces a few generated events every 200 ms while `f` runs.
fn producing<T>(broker: &Broker, topic: &str, f: impl FnOnce() -> T) -> T {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let producer = {
        let (stop, addr, topic) = (stop.clone(), broker.addr.clone(), topic.to_owned());
        std::thread::spawn(move || {
            let p = producer_for(&addr);
            let mut seed = 100;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for r in generated(seed, 10, 0.0) {
                    send(&p, &topic, &r);
                }
                flush(&p);
                seed += 1;
                std::thread::sleep(std::time::Duration::from_millis(200));
            }
        })
    };
    let out = f();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    producer.join().unwrap();
    out
}

#[test]
fn a_healthy_set_up_passes_and_each_fault_fails_its_check() {
    let dir = tempfile::tempdir().unwrap();
    let (broker, topic, dlq) = broker_with_topics(2);
    let siem = Receiver::start();
    let port = free_port();
    let groups = unique("g");
    let text = config(
        &broker,
        &topic,
        &dlq,
        dir.path(),
        port,
        &groups,
        &siem.url(),
    );
    let _daemon = Daemon::start_with(&text, dir.path(), port, "/readyz");
    broker.produce(&topic, &generated(1, 400, 0.0));

    healthy(dir.path(), &broker, &topic, &dlq, &text);
    // Nothing produced during the interval: counts are stuck; the hint names the producers.
    let (code, statuses, report) = doctor(dir.path(), &text, &[], PASSWORD);
    assert_eq!(
        (code, statuses["metrics.moving"].as_str()),
        (1, "fail"),
        "{report:#}"
    );
    let hint = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "metrics.moving")
        .unwrap()["hint"]
        .clone();
    assert!(
        hint.as_str().unwrap().contains("celery inspect stats"),
        "{hint}"
    );

    // A wrong password; a topic missing; a sink's port closed.
    let (_, statuses, report) = doctor(dir.path(), &text, &[], "wrong");
    assert_eq!(statuses["metrics.scrape"], "fail", "{report:#}");
    assert!(message(&report, "metrics.scrape").contains("was refused"));
    let closed = format!("http://127.0.0.1:{}", free_port());
    let broken = config(&broker, &topic, &dlq, dir.path(), port, &groups, &closed).replace(
        &format!("topics = [\"{topic}\"]"),
        &format!("topics = [\"{topic}\", \"no-such-topic\"]"),
    );
    let (code, statuses, report) = doctor(dir.path(), &broken, &[], PASSWORD);
    assert_eq!(code, 1);
    assert_eq!(statuses["kafka.topic.no-such-topic"], "fail", "{report:#}");
    assert_eq!(statuses["sink.ndjson"], "fail", "{report:#}");
    assert_eq!(statuses["sink.siem"], "ok");

    // An event stamped two hours ahead (local time sent as UTC): the clock check fails.
    let mut event: Value = serde_json::from_slice(&generated(7, 1, 0.0)[0].payload).unwrap();
    let ahead = chrono::Utc::now() + chrono::Duration::hours(2);
    event["occurred_at"] = json!(ahead.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
    broker.produce(
        &topic,
        &[Produced {
            key: None,
            payload: event.to_string().into_bytes(),
            headers: Vec::new(),
        }],
    );
    let (_, statuses, report) = doctor(dir.path(), &text, &[], PASSWORD);
    assert_eq!(statuses["kafka.clocks"], "fail", "{report:#}");
    assert!(
        message(&report, "kafka.clocks").contains("+2 h"),
        "{report:#}"
    );

    // The broker stopped: the brokers check fails, and says where it looked.
    drop(broker);
    let (code, statuses, report) = doctor(dir.path(), &text, &[], PASSWORD);
    assert_eq!(
        (code, statuses["kafka.brokers"].as_str()),
        (1, "fail"),
        "{report:#}"
    );
}

#[test]
fn an_unloadable_configuration_is_one_failing_line_and_text_is_one_line_per_check() {
    let dir = tempfile::tempdir().unwrap();
    let (code, statuses, report) = doctor(dir.path(), "[source]\nkind = \"nope\"\n", &[], PASSWORD);
    assert_eq!((code, statuses.len()), (1, 1), "{report:#}");
    assert!(
        message(&report, "config").contains("source.kind"),
        "{report:#}"
    );
    // The text form: a status, the check and what was found on each line, the hint beneath.
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, "[source]\nkind = \"nope\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_hestyna-obsd"))
        .arg("--config")
        .arg(&file)
        .arg("doctor")
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.starts_with("fail  config  invalid configuration"),
        "{text}"
    );
    assert!(
        text.contains("\n  - source.kind: unknown variant `nope`"),
        "{text}"
    );
    let hint = text.lines().find(|l| l.trim_start().starts_with("hint: "));
    assert!(hint.is_some_and(|h| h.contains("check-config")), "{text}");
    assert_eq!(out.status.code(), Some(1));
}

/// Healthy, with events flowing: every check ok (and the write probe in the dead-letter topic).
fn healthy(dir: &Path, broker: &Broker, topic: &str, dlq: &str, text: &str) {
    let rules = env!("CARGO_MANIFEST_DIR").to_owned() + "/config/prometheus/hestyna-obsd.rules.yml";
    let args = ["--write-probe", "--rules", &rules];
    let (code, statuses, report) = producing(broker, topic, || doctor(dir, text, &args, PASSWORD));
    // tansu 0.6 does not answer DescribeGroups: the members are unknown there, which doctor says as a
    // warning; against Kafka the group is described (ok with its member count).
    let tansu = |name: &str, status: &str| {
        status == "warn" && message(&report, name).starts_with("the broker does not describe group")
    };
    let not_ok: Vec<_> = statuses
        .iter()
        .filter(|(name, s)| *s != "ok" && !tansu(name, s))
        .collect();
    assert!(not_ok.is_empty() && code == 0, "{not_ok:?}\n{report:#}");
    for name in [
        "config",
        "kafka.brokers",
        &format!("kafka.topic.{topic}"),
        &format!("kafka.dead_letter_topic.{dlq}"),
        "kafka.dead_letter_write",
        "kafka.group.metrics",
        "kafka.group.metrics.lag",
        "kafka.group.forward",
        "kafka.clocks",
        "metrics.unauthenticated",
        "metrics.scrape",
        "metrics.families",
        "metrics.moving",
        "sink.siem",
        "sink.ndjson",
        "rules.families",
        "rules.annotations",
    ] {
        assert!(statuses.contains_key(name), "no {name} check:\n{report:#}");
    }
    // The probe is in the dead-letter topic, marked.
    let probe = broker.consume(dlq, 1, std::time::Duration::from_secs(20));
    assert_eq!(probe[0].headers["hestyna.dlq.reason"], "doctor_probe");
}
