//! Exemplars, from a metric to the run and its trace: a real Prometheus 2.42 with exemplar storage
//! scrapes the daemon over OpenMetrics, and `/api/v1/query_exemplars` answers with the trace ids and run
//! ids of the events the test produced.

mod common;

use common::prom::{encode, get_json, scrape_job, Prometheus};
use common::*;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::Duration;

/// An event of `kind` for acme, now, in the trace `trace_id`.
fn traced(kind: &str, trace_id: &str, mut fields: Value) -> Produced {
    fields["trace_id"] = json!(trace_id);
    fields["span_id"] = json!("00f067aa0ba902b7");
    event_at(kind, "acme", chrono::Utc::now(), fields)
}

/// The exemplars Prometheus holds for `query` over the last and next hour: (labels, value) of each.
fn exemplars(prometheus: &Prometheus, query: &str) -> Vec<(Value, f64)> {
    let now = chrono::Utc::now().timestamp();
    let url = format!(
        "{}/api/v1/query_exemplars?query={}&start={}&end={}",
        prometheus.url(),
        encode(query),
        now - 3600,
        now + 3600
    );
    let answer = get_json(&url).unwrap_or_default();
    let series = answer["data"].as_array().cloned().unwrap_or_default();
    series
        .iter()
        .flat_map(|s| s["exemplars"].as_array().cloned().unwrap_or_default())
        .map(|e| {
            (
                e["labels"].clone(),
                e["value"].as_str().unwrap().parse().unwrap(),
            )
        })
        .collect()
}

#[test]
fn prometheus_stores_the_trace_and_run_of_a_slow_run_and_a_failing_call() {
    let dir = tempfile::tempdir().unwrap();
    let (broker, topic, dlq) = broker_with_topics(1);
    let daemon = kafka_daemon(&broker, &topic, &dlq, dir.path());
    let prom_config = format!(
        "global:\n  scrape_interval: 1s\n{}",
        scrape_job(daemon.http.port())
    );
    let prometheus = Prometheus::start(
        dir.path(),
        &prom_config,
        &["--enable-feature=exemplar-storage"],
    );

    // A slow billing run (7.2 s: the (6, 8] bucket) and failing stripe calls from an automation.
    let slow = "4bf92f3577b34da6a3ce929d0e0e4736";
    let failing = "0af7651916cd43dd8448eb211c80319c";
    let mut events = vec![traced(
        "llm_run",
        slow,
        json!({"run_id": "run-slow-1", "intent": "billing", "outcome": "success", "latency_ms": 7200}),
    )];
    events.extend((0..3).map(|_| {
        traced(
            "integration_call",
            failing,
            json!({"integration": "stripe", "outcome": "failure", "automation_id": "refund"}),
        )
    }));
    broker.produce(&topic, &events);
    // The daemon serves them, in OpenMetrics, on the buckets and counters.
    let body = wait_for(
        "the exemplars in the exposition",
        Duration::from_secs(60),
        || {
            let body = scrape_open_metrics(daemon.http);
            (body.contains(slow) && body.contains(failing)).then_some(body)
        },
    );
    // The daemon counts what it holds: one exemplar a sample line that carries one.
    let written = body.lines().filter(|l| l.contains(" # {")).count();
    let held: f64 = body
        .lines()
        .filter(|l| l.starts_with("hestyna_obsd_derived_exemplars{"))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum();
    assert!(written >= 2, "{body}");
    assert_eq!(held, written as f64, "{body}");

    let latency = wait_for(
        "the run's exemplar in Prometheus",
        Duration::from_secs(60),
        || {
            let found = exemplars(&prometheus, "hestyna_llm_latency_seconds_bucket");
            (!found.is_empty()).then_some(found)
        },
    );
    let (labels, value) = &latency[0];
    assert_eq!(labels["trace_id"], slow);
    assert_eq!(labels["run_id"], "run-slow-1");
    assert_eq!(*value, 7.2);
    let calls = wait_for(
        "the failing call's exemplar",
        Duration::from_secs(60),
        || {
            let found = exemplars(&prometheus, "hestyna_integration_failures_total");
            (!found.is_empty()).then_some(found)
        },
    );
    let traces: BTreeSet<&str> = calls
        .iter()
        .filter_map(|(l, _)| l["trace_id"].as_str())
        .collect();
    assert_eq!(traces, BTreeSet::from([failing]));
    assert!(calls.iter().all(|(l, _)| l["automation_id"] == "refund"));
    // The series is still read the same way: exemplars change no value.
    let count = prometheus.value("sum(hestyna_integration_failures_total)");
    assert_eq!(count, Some(3.0));
}

/// `/metrics` with an OpenMetrics `Accept` and the test credentials.
fn scrape_open_metrics(addr: std::net::SocketAddr) -> String {
    let mut answer = ureq::get(format!("http://{addr}/metrics"))
        .header("Authorization", basic(USER, PASSWORD))
        .header("Accept", "application/openmetrics-text; version=1.0.0")
        .call()
        .unwrap();
    answer.body_mut().read_to_string().unwrap()
}
