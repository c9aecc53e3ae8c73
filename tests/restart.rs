//! Restart: SIGTERM half way through a stream, start again: nothing is missing, and nothing is sent
//! twice (a clean drain finishes and commits everything it read before it exits).

mod common;

use common::*;
use std::collections::BTreeMap;
use std::time::Duration;

#[test]
fn a_restart_half_way_loses_nothing() {
    let (broker, topic, dlq) = broker_with_topics(2);
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = kafka_config(&broker, &topic, &unique("g"), &dlq, dir.path(), port);
    let siem = dir.path().join("siem.jsonl");

    // A producer keeps writing (about 2,500 events/s) while the daemon is stopped and started.
    let records = generated(21, 20_000, 0.0);
    let total = records.len();
    let producing = {
        let producer = broker.producer();
        let topic = topic.clone();
        let records = records.clone();
        std::thread::spawn(move || {
            for chunk in records.chunks(250) {
                for r in chunk {
                    send(&producer, &topic, r);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            rdkafka::producer::Producer::flush(
                &producer,
                rdkafka::util::Timeout::After(Duration::from_secs(60)),
            )
            .unwrap();
        })
    };

    let mut first = Daemon::start_with(&config, dir.path(), port, "/readyz");
    wait_for(
        "half of the events to be forwarded",
        Duration::from_secs(120),
        || (read_jsonl(&siem).len() >= total / 2).then_some(()),
    );
    let code = first.stop();
    assert_eq!(code, Some(0), "a clean exit on SIGTERM:\n{}", first.log());
    let log = first.log();
    assert!(log.contains("kafka source stopped"), "{log}");
    let at_stop = read_jsonl(&siem).len();
    assert!(at_stop < total, "stopped before the end ({at_stop})");

    let second = Daemon::start_with(&config, dir.path(), port, "/readyz");
    producing.join().unwrap();
    let docs = wait_for(
        "every event to be forwarded",
        Duration::from_secs(120),
        || {
            let docs = read_jsonl(&siem);
            let mut seen: BTreeMap<String, usize> = BTreeMap::new();
            for d in &docs {
                *seen
                    .entry(d["event"]["id"].as_str().unwrap().to_owned())
                    .or_default() += 1;
            }
            (seen.len() == total).then_some(seen)
        },
    );
    let duplicates: usize = docs.values().map(|n| n - 1).sum();
    eprintln!("restart: {total} events, {at_stop} forwarded before SIGTERM, {duplicates} duplicates after the restart");
    assert_eq!(
        duplicates, 0,
        "a clean SIGTERM drains and commits: nothing is read twice"
    );
    let m = second.scrape();
    assert!(
        sum(
            &m,
            "hestyna_obsd_events_received_total",
            &["pipeline=\"forward\""]
        ) >= (total - at_stop) as f64
    );
}
