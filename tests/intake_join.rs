//! Intake to resolution without `intake_at`: the pending intakes survive a restart and follow their
//! partitions to an instance that joins and back when it leaves (changelog topic); intakes that age
//! out or overflow are counted.

mod common;

use common::*;
use std::time::Duration;

const RESOLUTION: &str = "hestyna_requests_resolution_seconds";

fn stamp(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// `n` requests: their intakes (an hour and a bit ago), and their resolutions without `intake_at`, each
/// resolved exactly `10 * (i + 1)` minutes after its intake. Keyed by request_id.
fn lifecycle(tag: &str, n: usize) -> (Vec<Produced>, Vec<Produced>, f64) {
    let base = chrono::Utc::now() - chrono::Duration::hours(30);
    let mut intakes = Vec::new();
    let mut resolutions = Vec::new();
    let mut total_secs = 0.0;
    for i in 0..n {
        let request = format!("req-{tag}-{i}");
        let intake_at = base + chrono::Duration::seconds(i as i64);
        let resolved_at = intake_at + chrono::Duration::minutes(10 * (i as i64 % 20 + 1));
        total_secs += (resolved_at - intake_at).num_seconds() as f64;
        let event = |stage: &str, at: String, id: String| {
            Produced {
            key: Some(request.clone()),
            payload: format!(
                r#"{{"event_id":"{id}","type":"request_lifecycle","occurred_at":"{at}","organization":"acme","request_id":"{request}","stage":"{stage}","channel":"email"}}"#
            )
            .into_bytes(),
            headers: vec![],
        }
        };
        intakes.push(event("intake", stamp(intake_at), format!("{request}-i")));
        resolutions.push(event(
            "resolved",
            stamp(resolved_at),
            format!("{request}-r"),
        ));
    }
    (intakes, resolutions, total_secs)
}

fn resolution(m: &std::collections::BTreeMap<String, f64>) -> (f64, f64) {
    (
        sum(m, &format!("{RESOLUTION}_count"), &[]),
        sum(m, &format!("{RESOLUTION}_sum"), &[]),
    )
}

#[test]
fn pending_intakes_survive_a_restart() {
    let (broker, topic, dlq) = broker_with_topics(2);
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = kafka_config(&broker, &topic, &unique("g"), &dlq, dir.path(), port);
    let (intakes, resolutions, total_secs) = lifecycle("restart", 200);

    let mut first = Daemon::start_with(&config, dir.path(), port, "/readyz");
    broker.produce(&topic, &intakes);
    wait_for("the intakes to be pending", Duration::from_secs(60), || {
        (first.scrape().get("hestyna_obsd_intake_pending{}") == Some(&200.0)).then_some(())
    });
    assert_eq!(first.stop(), Some(0));

    let second = Daemon::start_with(&config, dir.path(), port, "/readyz");
    wait_for("the restored state", Duration::from_secs(60), || {
        (second.scrape().get("hestyna_obsd_intake_pending{}") == Some(&200.0)).then_some(())
    });
    broker.produce(&topic, &resolutions);
    let m = wait_for(
        "every resolution to be observed",
        Duration::from_secs(60),
        || {
            let m = second.scrape();
            (resolution(&m).0 == 200.0).then_some(m)
        },
    );
    assert_eq!(resolution(&m).1, total_secs);
    assert_eq!(m["hestyna_obsd_intake_joined_total{}"], 200.0);
    assert_eq!(m["hestyna_obsd_intake_pending{}"], 0.0);
    assert!(second.log().contains("intake state restored"));
}

#[test]
fn pending_intakes_follow_their_partitions_when_an_instance_joins_and_when_it_leaves() {
    let broker = Broker::start();
    let (topic, dlq) = (unique("events"), unique("dlq"));
    broker.create_topic(&topic, 4);
    broker.create_topic(&dlq, 1);
    let groups = unique("g");
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (port_a, port_b) = (free_port(), free_port());
    let (intakes, resolutions, total_secs) = lifecycle("move", 400);

    let a = Daemon::start_with(
        &kafka_config(&broker, &topic, &groups, &dlq, dir_a.path(), port_a),
        dir_a.path(),
        port_a,
        "/readyz",
    );
    broker.produce(&topic, &intakes);
    wait_for(
        "the intakes to be pending on A",
        Duration::from_secs(60),
        || (a.scrape().get("hestyna_obsd_intake_pending{}") == Some(&400.0)).then_some(()),
    );

    let b = Daemon::start_with(
        &kafka_config(&broker, &topic, &groups, &dlq, dir_b.path(), port_b),
        dir_b.path(),
        port_b,
        "/readyz",
    );
    let pending = |m: &std::collections::BTreeMap<String, f64>| {
        m.get("hestyna_obsd_intake_pending{}")
            .copied()
            .unwrap_or(0.0)
    };
    wait_shared(&a, &b, 4.0, |ma, mb| pending(ma) + pending(mb) == 400.0);

    // Half the resolutions while both run: each instance joins those of its partitions.
    let (first, second) = resolutions.split_at(200);
    broker.produce(&topic, first);
    let (ma, mb) = wait_for(
        "the first half of the resolutions to be observed",
        Duration::from_secs(60),
        || {
            let (ma, mb) = (a.scrape(), b.scrape());
            (resolution(&ma).0 + resolution(&mb).0 == 200.0).then_some((ma, mb))
        },
    );
    let joined =
        |m: &std::collections::BTreeMap<String, f64>| m["hestyna_obsd_intake_joined_total{}"];
    assert!(joined(&mb) > 0.0, "B joined with intakes A had seen");
    assert_eq!(joined(&ma) + joined(&mb), 200.0);
    assert!(b.log().contains("intake state restored"));

    // B leaves (SIGTERM: it commits and leaves the group). A takes its partitions back, and with
    // them the intakes still pending there, less the ones B resolved (the changelog has both).
    let mut b = b;
    let b_last = (resolution(&mb), joined(&mb));
    assert_eq!(b.stop(), Some(0), "{}", b.log());
    wait_for(
        "A to own every partition and the 200 pending intakes",
        Duration::from_secs(60),
        || {
            let m = a.scrape();
            let owned = sum(
                &m,
                "hestyna_obsd_assigned_partitions",
                &["pipeline=\"metrics\""],
            );
            (owned == 4.0 && pending(&m) == 200.0).then_some(())
        },
    );
    broker.produce(&topic, second);
    let ma = wait_for(
        "every resolution to be observed",
        Duration::from_secs(60),
        || {
            let ma = a.scrape();
            (resolution(&ma).0 + b_last.0 .0 == 400.0).then_some(ma)
        },
    );
    assert_eq!(resolution(&ma).1 + b_last.0 .1, total_secs);
    assert_eq!(joined(&ma) + b_last.1, 400.0);
    assert_eq!(pending(&ma), 0.0);
}

#[test]
fn intakes_that_age_out_or_overflow_are_counted_not_kept() {
    let dir = tempfile::tempdir().unwrap();
    let now = chrono::Utc::now();
    let mut lines = Vec::new();
    let event = |request: &str, stage: &str, at: chrono::DateTime<chrono::Utc>| {
        format!(
            r#"{{"event_id":"{request}-{stage}","type":"request_lifecycle","occurred_at":"{}","organization":"acme","request_id":"{request}","stage":"{stage}"}}"#,
            stamp(at)
        )
    };
    // 5 intakes 31 days old (past the 30-day TTL), 50 recent ones into a state of 10 entries.
    for i in 0..5 {
        lines.push(event(
            &format!("old-{i}"),
            "intake",
            now - chrono::Duration::days(31),
        ));
    }
    for i in 0..50 {
        lines.push(event(
            &format!("new-{i}"),
            "intake",
            now - chrono::Duration::minutes(60 - i),
        ));
    }
    for r in (0..5)
        .map(|i| format!("old-{i}"))
        .chain((0..50).map(|i| format!("new-{i}")))
    {
        lines.push(event(&r, "resolved", now));
    }
    let events = dir.path().join("lifecycle.jsonl");
    std::fs::write(&events, lines.join("\n") + "\n").unwrap();
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        format!(
            "[dead_letter]\nkind = \"file\"\npath = \"{}\"\n[http]\nlisten = \"127.0.0.1:0\"\n[pipelines.forward]\nenabled = false\n[metrics.intake_join]\nmax_entries = 10\n",
            dir.path().join("dlq.jsonl").display()
        ),
    )
    .unwrap();
    let stdout = replay(&config, &events);
    let m = parse_metrics(stdout.split_once("\n\n").unwrap().1);
    assert_eq!(m["hestyna_obsd_intake_evicted_total{reason=\"ttl\"}"], 5.0);
    assert_eq!(
        m["hestyna_obsd_intake_evicted_total{reason=\"capacity\"}"], 40.0,
        "the oldest go first"
    );
    assert_eq!(m["hestyna_obsd_intake_joined_total{}"], 10.0);
    assert_eq!(m["hestyna_obsd_intake_pending{}"], 0.0, "nothing leaks");
    assert_eq!(sum(&m, &format!("{RESOLUTION}_count"), &[]), 10.0);
    assert_eq!(
        m[&format!(
            "hestyna_obsd_rule_skipped_total{{metric=\"{RESOLUTION}\",reason=\"missing_value\"}}"
        )],
        45.0
    );
}
