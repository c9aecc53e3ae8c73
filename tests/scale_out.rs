//! Scale-out: two instances in one consumer group share a 4-partition topic, and their counters sum to the
//! truth.

mod common;

use common::*;
use serde_json::Value;
use std::collections::BTreeSet;
use std::time::Duration;

#[test]
fn two_instances_share_the_partitions_and_sum_to_the_truth() {
    let broker = Broker::start();
    let topic = unique("events");
    let dlq = unique("dlq");
    broker.create_topic(&topic, 4);
    broker.create_topic(&dlq, 1);
    let groups = unique("g");
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (port_a, port_b) = (free_port(), free_port());
    let a = Daemon::start_with(
        &kafka_config(&broker, &topic, &groups, &dlq, dir_a.path(), port_a),
        dir_a.path(),
        port_a,
        "/readyz",
    );
    let b = Daemon::start_with(
        &kafka_config(&broker, &topic, &groups, &dlq, dir_b.path(), port_b),
        dir_b.path(),
        port_b,
        "/readyz",
    );

    // Both pipelines of both instances settle on a share of the four partitions.
    let forward = |m: &std::collections::BTreeMap<String, f64>| {
        sum(
            m,
            "hestyna_obsd_assigned_partitions",
            &["pipeline=\"forward\""],
        )
    };
    wait_shared(&a, &b, 4.0, |ma, mb| {
        forward(ma) >= 1.0 && forward(mb) >= 1.0 && forward(ma) + forward(mb) == 4.0
    });

    let records = generated(11, 8_000, 0.0);
    broker.produce(&topic, &records);
    let total = records.len() as f64;
    let (ma, mb) = wait_for(
        "both instances to derive everything",
        Duration::from_secs(120),
        || {
            let (ma, mb) = (a.scrape(), b.scrape());
            let derived = sum(
                &ma,
                "hestyna_obsd_events_received_total",
                &["pipeline=\"metrics\""],
            ) + sum(
                &mb,
                "hestyna_obsd_events_received_total",
                &["pipeline=\"metrics\""],
            );
            let forwarded = read_jsonl(&dir_a.path().join("siem.jsonl")).len()
                + read_jsonl(&dir_b.path().join("siem.jsonl")).len();
            (derived == total && forwarded == records.len()).then_some((ma, mb))
        },
    );

    let events: Vec<Value> = records
        .iter()
        .map(|r| serde_json::from_slice(&r.payload).unwrap())
        .collect();
    for (name, kind) in [
        ("hestyna_llm_runs_total", "llm_run"),
        ("hestyna_automation_runs_total", "automation_run"),
        ("hestyna_llm_latency_seconds_count", "llm_run"),
    ] {
        let truth = events.iter().filter(|e| e["type"] == kind).count() as f64;
        let (got_a, got_b) = (sum(&ma, name, &[]), sum(&mb, name, &[]));
        assert!(
            got_a > 0.0 && got_b > 0.0,
            "{name}: each instance derived a share ({got_a}, {got_b})"
        );
        assert_eq!(got_a + got_b, truth, "{name}");
    }
    let failures = events
        .iter()
        .filter(|e| e["type"] == "integration_call" && e["outcome"] == "failure")
        .count() as f64;
    assert_eq!(
        sum(&ma, "hestyna_integration_failures_total", &[])
            + sum(&mb, "hestyna_integration_failures_total", &[]),
        failures
    );

    // Per organization, too (what a PromQL sum by (organization) would show).
    for org in ["acme", "globex", "initech"] {
        let with = format!("organization=\"{org}\"");
        let truth = events
            .iter()
            .filter(|e| e["type"] == "llm_run" && e["organization"] == org)
            .count() as f64;
        assert_eq!(
            sum(&ma, "hestyna_llm_runs_total", &[&with])
                + sum(&mb, "hestyna_llm_runs_total", &[&with]),
            truth,
            "{org}"
        );
    }

    // The SIEM files together hold every event exactly once.
    let mut ids = BTreeSet::new();
    for dir in [&dir_a, &dir_b] {
        for doc in read_jsonl(&dir.path().join("siem.jsonl")) {
            assert!(
                ids.insert(doc["event"]["id"].as_str().unwrap().to_owned()),
                "duplicate {}",
                doc["event"]["id"]
            );
        }
    }
    assert_eq!(ids.len(), records.len());
}
