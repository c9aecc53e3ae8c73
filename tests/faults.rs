//! Faults under load, each counted by `event_id`: a rebalance while the SIEM is down, a replica killed
//! with SIGKILL, the broker killed and restarted, a source that dies. After each, every valid event
//! reached the SIEM at least once, and every duplicate is a record the killed process had forwarded
//! past its group's last commit (the bound of at-least-once).

mod common;

use common::receiver::{Mode, Receiver};
use common::*;
use serde_json::Value;
use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::time::Duration;

/// How many times each `event.id` reached a SIEM, over every file and receiver given.
fn deliveries(docs: impl IntoIterator<Item = Value>) -> BTreeMap<String, usize> {
    let mut seen = BTreeMap::new();
    for d in docs {
        let id = d["event"]["id"].as_str().unwrap().to_owned();
        *seen.entry(id).or_default() += 1;
    }
    seen
}

/// Produces `records` from a thread at about `per_second`, in chunks of 100.
fn produce_in_background(
    broker: &Broker,
    topic: &str,
    records: &[Produced],
    per_second: usize,
) -> std::thread::JoinHandle<()> {
    let producer = broker.producer();
    let (topic, records) = (topic.to_owned(), records.to_vec());
    let pause = Duration::from_millis((100_000 / per_second.max(1)) as u64);
    std::thread::spawn(move || {
        for chunk in records.chunks(100) {
            for r in chunk {
                send(&producer, &topic, r);
            }
            std::thread::sleep(pause);
        }
        flush(&producer);
    })
}

/// The `[source]` table's queue made this short, so that a stalled sink fills it at once.
fn with_queue(config: &str, batches: usize) -> String {
    let at = "batch_max_wait_ms = 20\n";
    assert!(config.contains(at));
    config.replace(at, &format!("{at}queue_batches = {batches}\n"))
}

fn assigned(daemon: &Daemon, pipeline: &str) -> f64 {
    sum(
        &daemon.scrape(),
        "hestyna_obsd_assigned_partitions",
        &[&format!("pipeline=\"{pipeline}\"")],
    )
}

#[test]
fn a_rebalance_while_the_siem_is_down_does_not_stall_the_group_and_loses_nothing() {
    let (broker, topic, dlq) = broker_with_topics(2);
    let groups = unique("g");
    let siem = Receiver::start();
    siem.set_mode(Mode::Status(503));
    let sinks = format!(
        "[forward.sinks.siem]\nkind = \"http\"\nurl = \"{}/ingest\"\n\
         batch = {{ max_events = 100, timeout_ms = 50 }}\n",
        siem.url()
    );
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let port_a = free_port();
    let config_a = kafka_config_with_sinks(&broker, &topic, &groups, &dlq, port_a, &sinks);
    let a = Daemon::start_with(&with_queue(&config_a, 1), dir_a.path(), port_a, "/readyz");
    let records = generated(31, 3_000, 0.0);
    broker.produce(&topic, &records);
    // A's forward pipeline holds a batch it cannot deliver, its queue is full, its source waits.
    wait_for(
        "the SIEM to refuse A's first posts",
        Duration::from_secs(60),
        || (siem.requests().len() >= 3).then_some(()),
    );
    std::thread::sleep(Duration::from_secs(2));

    let port_b = free_port();
    let config_b = kafka_config(&broker, &topic, &groups, &dlq, dir_b.path(), port_b);
    let b = Daemon::start_with(&config_b, dir_b.path(), port_b, "/livez");
    // A rebalance callback that waited for room in A's full pipeline would hold the group until the
    // SIEM came back (or max.poll.interval.ms, 5 minutes, threw A out).
    wait_for(
        "B to be given a partition while the SIEM is still down",
        Duration::from_secs(60),
        || (assigned(&b, "forward") >= 1.0 && assigned(&a, "forward") == 1.0).then_some(()),
    );
    siem.set_mode(Mode::Accept);
    let ids = event_ids(&records);
    let seen = wait_for("every event at a SIEM", Duration::from_secs(120), || {
        let docs = siem
            .accepted()
            .into_iter()
            .chain(read_jsonl(&dir_b.path().join("siem.jsonl")));
        let seen = deliveries(docs);
        (seen.len() == ids.len()).then_some(seen)
    });
    assert_eq!(seen.keys().cloned().collect::<HashSet<_>>(), ids);
    let duplicates: usize = seen.values().map(|n| n - 1).sum();
    // Only what A held when its partition went (its queue of 1 batch, the batch in its sink, the batch
    // its source had cut: 500 records each) can be read again by B.
    eprintln!(
        "rebalance during a SIEM outage: {} events, {duplicates} duplicates",
        ids.len()
    );
    assert!(duplicates <= 1_500, "{duplicates} duplicates");
    assert_eq!(a.get("/livez", None).0, 200);
}

/// The records a SIEM file holds, with the (partition, offset) of each.
fn forwarded_offsets(path: &Path) -> Vec<(String, i32, i64)> {
    read_jsonl(path)
        .iter()
        .map(|d| {
            let id = d["event"]["id"].as_str().unwrap().to_owned();
            let kafka = &d["kafka"];
            let partition = kafka["partition"].as_i64().unwrap() as i32;
            (id, partition, kafka["offset"].as_i64().unwrap())
        })
        .collect()
}

#[test]
fn a_replica_killed_under_load_loses_nothing_and_repeats_only_what_it_had_not_committed() {
    let (broker, topic, dlq) = broker_with_topics(2);
    let groups = unique("g");
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    // Static membership: the restarted replica takes over its partitions at once. (tansu 0.6 never
    // expires the session of a member that died without leaving, so without it the partitions would
    // stay with the dead member; a Kafka broker hands them over after `session.timeout.ms`.)
    let config = kafka_config(&broker, &topic, &groups, &dlq, dir.path(), port).replace(
        "[kafka.consumer_properties]\n",
        "[kafka.consumer_properties]\n\"group.instance.id\" = \"replica-0\"\n",
    );
    let siem = dir.path().join("siem.jsonl");
    let records = generated(32, 20_000, 0.0);
    let producing = produce_in_background(&broker, &topic, &records, 2_500);

    let mut first = Daemon::start_with(&config, dir.path(), port, "/readyz");
    wait_for(
        "a third of the events forwarded",
        Duration::from_secs(120),
        || (read_jsonl(&siem).len() >= records.len() / 3).then_some(()),
    );
    first.kill();
    let before = forwarded_offsets(&siem);
    let committed = broker.committed(&format!("{groups}-forward"), &topic, 2);

    let second = Daemon::start_with(&config, dir.path(), port, "/readyz");
    producing.join().unwrap();
    let ids = event_ids(&records);
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let seen = loop {
        let seen = deliveries(read_jsonl(&siem));
        if seen.len() == ids.len() {
            break seen;
        }
        if std::time::Instant::now() > deadline {
            let m = second.scrape();
            panic!(
                "{} of {} events forwarded; committed at the kill {committed:?}, now {:?}; received {}\n{}",
                seen.len(),
                ids.len(),
                broker.committed(&format!("{groups}-forward"), &topic, 2),
                sum(&m, "hestyna_obsd_events_received_total", &["pipeline=\"forward\""]),
                second.log(),
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(seen.keys().cloned().collect::<HashSet<_>>(), ids);
    // A duplicate is a record forwarded before the kill at or past its partition's committed offset.
    let uncommitted: HashSet<&str> = before
        .iter()
        .filter(|(_, p, o)| committed.get(p).is_none_or(|c| o >= c))
        .map(|(id, _, _)| id.as_str())
        .collect();
    let duplicates: Vec<&String> = seen
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(id, _)| id)
        .collect();
    eprintln!(
        "SIGKILL: {} events, {} forwarded before the kill, {} of them past the commit, {} duplicates",
        ids.len(),
        before.len(),
        uncommitted.len(),
        duplicates.len()
    );
    for id in &duplicates {
        assert!(
            uncommitted.contains(id.as_str()),
            "{id} was committed, yet read again"
        );
        assert_eq!(seen[*id], 2, "{id} was read again more than once");
    }
}

#[test]
fn a_broker_killed_and_restarted_mid_stream_loses_nothing_and_the_daemon_rides_it_out() {
    let mut broker = Broker::start_persistent();
    let (topic, dlq) = topics(&broker, 2);
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = kafka_config(&broker, &topic, &unique("g"), &dlq, dir.path(), port);
    let siem = dir.path().join("siem.jsonl");
    let daemon = Daemon::start_with(&config, dir.path(), port, "/readyz");
    let (early, late) = {
        let records = generated(33, 6_000, 0.0);
        let (a, b) = records.split_at(3_000);
        (a.to_vec(), b.to_vec())
    };
    broker.produce(&topic, &early);
    wait_for("some events forwarded", Duration::from_secs(60), || {
        (!read_jsonl(&siem).is_empty()).then_some(())
    });
    broker.kill();
    // Down for 30 s: the daemon keeps serving and stays alive (no crash loop needed).
    for _ in 0..15 {
        std::thread::sleep(Duration::from_secs(2));
        assert_eq!(daemon.get("/livez", None).0, 200, "{}", daemon.log());
    }
    broker.restart();
    broker.produce(&topic, &late);
    let ids: HashSet<String> = event_ids(&early)
        .union(&event_ids(&late))
        .cloned()
        .collect();
    let seen = wait_for("every event forwarded", Duration::from_secs(180), || {
        let seen = deliveries(read_jsonl(&siem));
        (seen.len() == ids.len()).then_some(seen)
    });
    assert_eq!(seen.keys().cloned().collect::<HashSet<_>>(), ids);
    let m = wait_for("every event derived", Duration::from_secs(60), || {
        let m = daemon.scrape();
        let received = sum(
            &m,
            "hestyna_obsd_events_received_total",
            &["pipeline=\"metrics\""],
        );
        (received >= ids.len() as f64).then_some(m)
    });
    let duplicates: usize = seen.values().map(|n| n - 1).sum();
    eprintln!(
        "broker restart: {} events, {duplicates} duplicates forwarded, {} derived",
        ids.len(),
        sum(
            &m,
            "hestyna_obsd_events_received_total",
            &["pipeline=\"metrics\""]
        )
    );
}

#[test]
fn a_source_that_dies_fails_livez_while_readyz_and_metrics_stay_up() {
    // A directory opens as a file on Linux, and its first read fails: the source thread ends in error.
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = format!(
        "[source]\nkind = \"file\"\n\n[source.file]\npath = \"{}\"\n\n\
         [pipelines.forward]\nenabled = false\n\n[dead_letter]\nkind = \"file\"\npath = \"{}\"\n\n\
         [http]\nlisten = \"127.0.0.1:{port}\"\n\n[http.basic_auth_users]\n{USER} = \"{USER_HASH}\"\n",
        dir.path().display(),
        dir.path().join("dead.jsonl").display(),
    );
    let daemon = Daemon::start_with(&config, dir.path(), port, "/readyz");
    let (status, body) = wait_for("/livez to fail", Duration::from_secs(30), || {
        let (status, body) = daemon.get("/livez", None);
        (status != 200).then_some((status, body))
    });
    assert_eq!((status, body.as_str()), (503, "dead: source-file\n"));
    assert!(
        daemon.log().contains("a vital task died"),
        "{}",
        daemon.log()
    );
    assert_eq!(daemon.get("/readyz", None).0, 200);
    daemon.scrape();
}
