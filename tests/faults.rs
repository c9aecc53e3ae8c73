//! Faults under load, each counted by `event_id`: a rebalance while the SIEM is down, a replica killed
//! with SIGKILL, the broker killed and restarted, a source that dies. After each, every valid event
//! reached the SIEM at least once, and every duplicate is a record the killed process had forwarded
//! past its group's last commit (the bound of at-least-once).

mod common;

use common::prom::{self, Prometheus};
use common::receiver::{Mode, Receiver};
use common::system;
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

/// A generated corpus of `count` events from `seed`, cut into its first and second halves.
fn halves(seed: u64, count: u64) -> (Vec<Produced>, Vec<Produced>) {
    let mut early = generated(seed, count, 0.0);
    let late = early.split_off(early.len() / 2);
    (early, late)
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
    let records = generated(31, scaled(3_000), 0.0);
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
    let seen = wait_for("every event at a SIEM", patience(120), || {
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
    let records = generated(32, scaled(20_000), 0.0);
    let mut first = Daemon::start_with(&config, dir.path(), port, "/readyz");
    // A real Prometheus scrapes through the run; its first sample is the counter at 0.
    let prometheus = Prometheus::start(
        dir.path(),
        &format!("global:\n  scrape_interval: 1s\n{}", prom::scrape_job(port)),
        &[],
    );
    wait_for(
        "Prometheus to have a first sample",
        Duration::from_secs(30),
        || (prometheus.value(RECEIVED) == Some(0.0)).then_some(()),
    );
    let producing = produce_in_background(&broker, &topic, &records, 2_500);
    wait_for("a third of the events forwarded", patience(120), || {
        (read_jsonl(&siem).len() >= records.len() / 3).then_some(())
    });
    first.kill();
    let before = forwarded_offsets(&siem);
    let committed = broker.committed(&format!("{groups}-forward"), &topic, 2);
    let metrics_committed = broker.committed(&format!("{groups}-metrics"), &topic, 2);

    let restarted_at = unix_now();
    let second = Daemon::start_with(&config, dir.path(), port, "/readyz");
    producing.join().unwrap();
    let ids = event_ids(&records);
    let deadline = std::time::Instant::now() + patience(120);
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
    // A duplicate is a record (a partition and offset: the test producer may have landed an event
    // twice, at two offsets) forwarded before the kill at or past its partition's committed offset.
    let uncommitted: HashSet<(i32, i64)> = before
        .iter()
        .filter(|(_, p, o)| committed.get(p).is_none_or(|c| o >= c))
        .map(|(_, p, o)| (*p, *o))
        .collect();
    let mut at: BTreeMap<(i32, i64), usize> = BTreeMap::new();
    for (_, p, o) in forwarded_offsets(&siem) {
        *at.entry((p, o)).or_default() += 1;
    }
    let duplicates: Vec<(&(i32, i64), &usize)> = at.iter().filter(|(_, n)| **n > 1).collect();
    eprintln!(
        "SIGKILL: {} events, {} forwarded before the kill, {} of them past the commit, {} duplicates",
        ids.len(),
        before.len(),
        uncommitted.len(),
        duplicates.len()
    );
    for (record, n) in &duplicates {
        assert!(
            uncommitted.contains(record),
            "{record:?} was committed, yet read again"
        );
        assert_eq!(**n, 2, "{record:?} was read again more than once");
    }
    counters_across_the_crash(
        &prometheus,
        &second,
        ids.len(),
        restarted_at,
        &metrics_committed,
    );
}

/// The metrics pipeline's `events_received_total`, the counter followed across a crash, and its sum.
const SERIES: &str = "hestyna_obsd_events_received_total{pipeline=\"metrics\"}";
const RECEIVED: &str = "sum(hestyna_obsd_events_received_total{pipeline=\"metrics\"})";

fn unix_now() -> f64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    now.unwrap().as_secs_f64()
}

/// What Prometheus made of the counters across the kill: a reset, and `increase()` equal to the
/// killed process's last scraped value plus everything the restarted one counted, which is exactly
/// what lay past its group's commit.
fn counters_across_the_crash(
    prometheus: &Prometheus,
    second: &Daemon,
    total: usize,
    restarted_at: f64,
    committed: &BTreeMap<i32, i64>,
) {
    let after_commit = total as i64 - committed.values().sum::<i64>();
    wait_for(
        "every event past the commit derived",
        Duration::from_secs(60),
        || (received(second, "metrics") >= after_commit as f64).then_some(()),
    );
    // Settled: a few more seconds add nothing.
    std::thread::sleep(Duration::from_secs(3));
    let final_count = received(second, "metrics");
    // Evaluated at the last sample, taken once the counter stopped: increase() has nothing to
    // extrapolate at either end (the first sample is 0, the last is the end of the range).
    let last = wait_for(
        "Prometheus to scrape the final count",
        Duration::from_secs(30),
        || {
            let value = prometheus.value(RECEIVED)?;
            (value == final_count).then_some(())?;
            std::thread::sleep(Duration::from_secs(2));
            // timestamp() of the series itself: of an aggregate it would be the evaluation time.
            prometheus.value(&format!("max(timestamp({SERIES}))"))
        },
    );
    let at = |query: &str, t: f64| -> f64 {
        let data = prometheus.query_at(query, Some(t)).unwrap();
        data["result"][0]["value"][1]
            .as_str()
            .unwrap()
            .parse()
            .unwrap()
    };
    let series = SERIES;
    let resets = at(&format!("sum(resets({series}[1h]))"), last);
    let increase = at(&format!("sum(increase({series}[1h]))"), last);
    // The killed process's last sample (a range skips the staleness marker its failed scrape left).
    let before_kill = at(&format!("sum(last_over_time({series}[1h]))"), restarted_at);
    eprintln!(
        "across the SIGKILL, Prometheus saw {resets} reset(s): increase() {increase} = {before_kill} \
         scraped before the kill + {final_count} after; {total} events, {after_commit} past the commit"
    );
    assert!(resets >= 1.0, "Prometheus saw no reset");
    assert!((increase - (before_kill + final_count)).abs() < 1e-6);
    // The restarted process counted exactly what lay past the commit: nothing committed was lost.
    assert_eq!(final_count, after_commit as f64);
}

#[test]
fn a_broker_killed_and_restarted_mid_stream_loses_nothing_and_readiness_follows_it() {
    let mut broker = Broker::start_persistent();
    let (topic, dlq) = topics(&broker, 2);
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = kafka_config(&broker, &topic, &unique("g"), &dlq, dir.path(), port);
    let siem = dir.path().join("siem.jsonl");
    let daemon = Daemon::start_with(&config, dir.path(), port, "/readyz");
    let (early, late) = halves(33, scaled(6_000));
    broker.produce(&topic, &early);
    wait_for("some events forwarded", Duration::from_secs(60), || {
        (!read_jsonl(&siem).is_empty()).then_some(())
    });
    broker.kill();
    // Down for 30 s: the daemon keeps serving and stays alive (no crash loop needed), and says it is
    // not ready, so that a Service sends nothing its way.
    let unready_after = unready_through(&daemon, "30 s without a broker", Duration::from_secs(30));
    let m = daemon.scrape();
    assert_eq!(sum(&m, "hestyna_obsd_pipeline_ready", &[]), 0.0);
    broker.restart();
    let ready_after = ready_again(&daemon, Duration::from_secs(60));
    eprintln!(
        "broker restart: not ready {unready_after:?} after the kill, ready {ready_after:?} after the restart"
    );
    broker.produce(&topic, &late);
    let ids: HashSet<String> = event_ids(&early)
        .union(&event_ids(&late))
        .cloned()
        .collect();
    let seen = wait_for("every event forwarded", patience(180), || {
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
    duplicates_reported(&daemon, &siem);
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

/// `kafka_config`'s drain deadline made `secs`.
fn with_drain(config: &str, secs: u64) -> String {
    let at = "drain_timeout_secs = 20\n";
    assert!(config.contains(at));
    config.replace(at, &format!("drain_timeout_secs = {secs}\n"))
}

fn sink_up(daemon: &Daemon) -> f64 {
    sum(&daemon.scrape(), "hestyna_obsd_sink_up", &["sink=\"siem\""])
}

fn dead_letters(daemon: &Daemon) -> f64 {
    sum(&daemon.scrape(), "hestyna_obsd_dead_letters_total", &[])
}

#[test]
fn a_siem_down_past_the_drain_deadline_loses_nothing_and_shutdown_stays_within_its_bound() {
    let (broker, topic, dlq) = broker_with_topics(2);
    let groups = unique("g");
    let siem = Receiver::start();
    siem.set_mode(Mode::Status(503));
    let (drain, request_timeout) = (3, 4);
    let sinks = format!(
        "[forward.sinks.siem]\nkind = \"http\"\nurl = \"{}/ingest\"\nrequest_timeout_secs = {request_timeout}\n\
         batch = {{ max_events = 100, timeout_ms = 50 }}\n\
         retry = {{ initial_backoff_ms = 50, max_backoff_ms = 500 }}\n",
        siem.url()
    );
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = kafka_config_with_sinks(&broker, &topic, &groups, &dlq, port, &sinks);
    let config = with_drain(&config, drain);
    let mut first = Daemon::start_with(&config, dir.path(), port, "/readyz");
    let (early, late) = halves(37, scaled(2_000));

    // Down for three drain deadlines while running: the drain deadline is for shutdown only, so the
    // sink goes on retrying, nothing is given up or dead-lettered.
    broker.produce(&topic, &early);
    wait_for("the SIEM to refuse posts", Duration::from_secs(60), || {
        (siem.requests().len() >= 3).then_some(())
    });
    std::thread::sleep(Duration::from_secs(3 * drain));
    assert_eq!(sink_up(&first), 0.0);
    assert_eq!(dead_letters(&first), 0.0);
    siem.set_mode(Mode::Accept);
    let early_ids = event_ids(&early);
    wait_for(
        "the early events at the SIEM",
        Duration::from_secs(60),
        || (deliveries(siem.accepted()).len() == early_ids.len()).then_some(()),
    );
    assert_eq!(sink_up(&first), 1.0);

    // Down again, this time hanging every request, and SIGTERM: shutdown gives up at the drain
    // deadline, with at most one request timeout on top, and leaves the records to be read again.
    siem.set_mode(Mode::Slow(Duration::from_secs(600)));
    broker.produce(&topic, &late);
    // The receiver records a request once it has answered; the sink's timeouts show it hangs.
    wait_for("a post to time out", Duration::from_secs(60), || {
        let m = first.scrape();
        let timeouts = sum(
            &m,
            "hestyna_obsd_sink_retries_total",
            &["class=\"timeout\""],
        );
        (timeouts >= 1.0).then_some(())
    });
    let stopping = std::time::Instant::now();
    let code = first.stop();
    let took = stopping.elapsed();
    eprintln!("shutdown during a hanging SIEM took {took:?} (drain {drain} s, request timeout {request_timeout} s)");
    assert_eq!(code, Some(0), "{}", first.log());
    // The bound, with 3 s for the process to start its drain and to exit.
    let bound = Duration::from_secs(drain + request_timeout + 3);
    assert!(took <= bound, "shutdown took {took:?}, above {bound:?}");
    assert!(
        first
            .log()
            .contains("shutdown deadline passed with batches in flight"),
        "{}",
        first.log()
    );

    siem.set_mode(Mode::Accept);
    let second = Daemon::start_with(&config, dir.path(), port, "/readyz");
    let ids: HashSet<String> = early_ids.union(&event_ids(&late)).cloned().collect();
    let seen = wait_for("every event at the SIEM", patience(120), || {
        let seen = deliveries(siem.accepted());
        (seen.len() == ids.len()).then_some(seen)
    });
    assert_eq!(seen.keys().cloned().collect::<HashSet<_>>(), ids);
    // What was accepted before the shutdown was committed by it: nothing comes twice.
    let duplicates: usize = seen.values().map(|n| n - 1).sum();
    assert_eq!(duplicates, 0);
    assert_eq!(dead_letters(&second), 0.0);
}

#[test]
fn a_file_sink_on_a_full_disk_pauses_and_resumes_when_space_returns_losing_nothing() {
    let (broker, topic, dlq) = broker_with_topics(2);
    let disk = system::Tmpfs::mount(scaled(4 << 20));
    disk.fill("filler", 256 << 10);
    let path = disk.path().join("siem.jsonl");
    let sinks = format!(
        "[forward.sinks.siem]\nkind = \"file\"\npath = \"{}\"\n\
         retry = {{ initial_backoff_ms = 50, max_backoff_ms = 500 }}\n",
        path.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = kafka_config_with_sinks(&broker, &topic, &unique("g"), &dlq, port, &sinks);
    let daemon = Daemon::start_with(&config, dir.path(), port, "/readyz");
    // About 2 MB of SIEM records, for 256 KiB of room.
    let records = generated(39, scaled(3_000), 0.0);
    broker.produce(&topic, &records);
    wait_for(
        "the file sink to fail on the full disk",
        Duration::from_secs(60),
        || {
            let m = daemon.scrape();
            let failed = sum(&m, "hestyna_obsd_sink_retries_total", &["class=\"io\""]);
            (failed >= 2.0 && sum(&m, "hestyna_obsd_sink_up", &["sink=\"siem\""]) == 0.0)
                .then_some(())
        },
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(daemon.get("/livez", None).0, 200);
    assert_eq!(dead_letters(&daemon), 0.0);
    let written = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    assert!(
        written < 300 << 10,
        "{written} bytes written to 256 KiB of room"
    );

    std::fs::remove_file(disk.path().join("filler")).unwrap();
    let ids = event_ids(&records);
    // Every line parses (read_jsonl panics on one that does not): a failed write left no torn line.
    let seen = wait_for("every event in the file", patience(120), || {
        let seen = deliveries(read_jsonl(&path));
        (seen.len() == ids.len()).then_some(seen)
    });
    assert_eq!(seen.keys().cloned().collect::<HashSet<_>>(), ids);
    let duplicates: usize = seen.values().map(|n| n - 1).sum();
    assert_eq!(
        duplicates, 0,
        "a write cut back is written again once, whole"
    );
    assert_eq!(sink_up(&daemon), 1.0);
    assert_eq!(dead_letters(&daemon), 0.0);
}

/// Watches the daemon for the 30 s a fault lasts: `/livez` answers 200 throughout (no crash loop
/// needed), and `/readyz` turns 503 at some point. How long after the start it did.
fn unready_through(daemon: &Daemon, fault: &str, lasting: Duration) -> Duration {
    let start = std::time::Instant::now();
    let mut unready_after = None;
    while start.elapsed() < lasting {
        std::thread::sleep(Duration::from_secs(2));
        assert_eq!(daemon.get("/livez", None).0, 200, "{}", daemon.log());
        if unready_after.is_none() && daemon.get("/readyz", None).0 == 503 {
            unready_after = Some(start.elapsed());
        }
    }
    unready_after
        .unwrap_or_else(|| panic!("/readyz answered 200 through {fault}\n{}", daemon.log()))
}

/// Waits until `/readyz` answers 200 again; how long that took.
fn ready_again(daemon: &Daemon, within: Duration) -> Duration {
    let start = std::time::Instant::now();
    wait_for("/readyz to answer 200 again", within, || {
        (daemon.get("/readyz", None).0 == 200).then_some(())
    });
    start.elapsed()
}

/// What a daemon says it read again (`records_reread_total`) in `pipeline`.
fn reread(daemon: &Daemon, pipeline: &str) -> f64 {
    let with = format!("pipeline=\"{pipeline}\"");
    sum(
        &daemon.scrape(),
        "hestyna_obsd_records_reread_total",
        &[&with],
    )
}

/// Every record read twice, at the SIEM (the same partition and offset forwarded twice) and in the
/// counters (more events derived than the topic holds records), is one the daemon reported reading
/// again. (An `event_id` at two offsets is the test producer retrying a send that had landed: the
/// input holds it twice, and the daemon rightly forwards both.)
fn duplicates_reported(daemon: &Daemon, siem: &Path) {
    let mut at: BTreeMap<(i32, i64), usize> = BTreeMap::new();
    for (_, partition, offset) in forwarded_offsets(siem) {
        *at.entry((partition, offset)).or_default() += 1;
    }
    let twice: usize = at.values().map(|n| n - 1).sum();
    let extra = received(daemon, "metrics") - at.len() as f64;
    let (forward, metrics) = (reread(daemon, "forward"), reread(daemon, "metrics"));
    eprintln!(
        "reported re-reads: forward {forward} (records forwarded twice {twice}), metrics {metrics} \
         (derived beyond the {} records {extra})",
        at.len()
    );
    assert!(
        twice as f64 <= forward,
        "{twice} forwarded twice, {forward} reported"
    );
    assert!(
        extra <= metrics,
        "{extra} derived twice, {metrics} reported"
    );
}

/// Events received by `pipeline`, as the daemon counts them.
fn received(daemon: &Daemon, pipeline: &str) -> f64 {
    let with = format!("pipeline=\"{pipeline}\"");
    sum(
        &daemon.scrape(),
        "hestyna_obsd_events_received_total",
        &[&with],
    )
}

#[test]
fn a_network_partition_from_the_broker_loses_nothing_and_readiness_follows_it() {
    let netns = system::NetNs::new();
    let broker = Broker::start_in(&netns);
    let (topic, dlq) = topics(&broker, 2);
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    // Kafka's default session (45 s) outlasts the 25 s partition, so the group keeps its members.
    // (Past it, a Kafka broker would expire them and the rejoined member would get its partitions
    // back; tansu 0.6 never expires a member, which would strand them: not what is tested here.)
    // A request in flight at the cut must time out (socket.timeout.ms), and connecting again must be
    // tried often (setup timeout, backoff), so that a heartbeat lands well inside the session:
    // librdkafka's defaults (60 s, 30 s, up to 10 s) let the client's own session timer expire
    // first, and it rejoins as a new member.
    let session = "\"session.timeout.ms\" = \"10000\"";
    let config = kafka_config(&broker, &topic, &unique("g"), &dlq, dir.path(), port);
    assert!(config.contains(session));
    let config = config.replace(
        session,
        "\"session.timeout.ms\" = \"45000\"\n\"socket.timeout.ms\" = \"10000\"\n\
         \"reconnect.backoff.max.ms\" = \"1000\"\n\"socket.connection.setup.timeout.ms\" = \"5000\"",
    );
    let siem = dir.path().join("siem.jsonl");
    let daemon = Daemon::start_with(&config, dir.path(), port, "/readyz");
    let records = generated(41, scaled(6_000), 0.0);
    let (early, late) = records.split_at(records.len() / 2);
    broker.produce(&topic, early);
    wait_for("some events forwarded", Duration::from_secs(60), || {
        (!read_jsonl(&siem).is_empty()).then_some(())
    });

    // Cut for 25 s (readiness falls after 15 s of silence, seen at the next 5 s statistics): no
    // reset reaches either side, open connections just fall silent (and new ones find no route).
    netns.cut();
    let unready_after = unready_through(&daemon, "a 25 s partition", Duration::from_secs(25));
    netns.heal();
    let ready_after = ready_again(&daemon, Duration::from_secs(90));
    broker.produce(&topic, late);

    let ids = event_ids(&records);
    let seen = wait_for("every event forwarded", patience(180), || {
        let seen = deliveries(read_jsonl(&siem));
        (seen.len() == ids.len()).then_some(seen)
    });
    assert_eq!(seen.keys().cloned().collect::<HashSet<_>>(), ids);
    wait_for("every event derived", Duration::from_secs(60), || {
        (received(&daemon, "metrics") >= ids.len() as f64).then_some(())
    });
    let duplicates: usize = seen.values().map(|n| n - 1).sum();
    duplicates_reported(&daemon, &siem);
    eprintln!(
        "partition: not ready {unready_after:?} after the cut, ready {ready_after:?} after the heal; \
         {} events, {duplicates} duplicates forwarded, {} derived",
        ids.len(),
        received(&daemon, "metrics")
    );
}

#[test]
fn a_slow_link_to_the_broker_delays_but_counts_exactly_and_repeats_nothing() {
    let netns = system::NetNs::new();
    let broker = Broker::start_in(&netns);
    let (topic, dlq) = topics(&broker, 2);
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = kafka_config(&broker, &topic, &unique("g"), &dlq, dir.path(), port);
    let siem = dir.path().join("siem.jsonl");
    let daemon = Daemon::start_with(&config, dir.path(), port, "/readyz");
    // 2 Mbit/s each way with up to 200 ms of queueing: both groups' fetches share it with the
    // producer.
    netns.slow(2_000, 200);
    let records = generated(43, scaled(4_000), 0.0);
    let producing = produce_in_background(&broker, &topic, &records, 1_000);
    let ids = event_ids(&records);
    let started = std::time::Instant::now();
    let seen = wait_for("every event forwarded", patience(240), || {
        let seen = deliveries(read_jsonl(&siem));
        (seen.len() == ids.len()).then_some(seen)
    });
    producing.join().unwrap();
    assert_eq!(seen.keys().cloned().collect::<HashSet<_>>(), ids);
    let duplicates: usize = seen.values().map(|n| n - 1).sum();
    assert_eq!(
        duplicates, 0,
        "a slow link is no reason to read a record twice"
    );
    let derived = wait_for("every event derived", Duration::from_secs(60), || {
        let n = received(&daemon, "metrics");
        (n >= ids.len() as f64).then_some(n)
    });
    assert_eq!(derived, ids.len() as f64, "each event derived exactly once");
    assert_eq!(dead_letters(&daemon), 0.0);
    assert_eq!(daemon.get("/readyz", None).0, 200);
    eprintln!(
        "slow link: {} events through 2 Mbit/s in {:?}",
        ids.len(),
        started.elapsed()
    );
}
