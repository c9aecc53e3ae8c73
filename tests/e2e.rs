//! End to end against a real broker: produced events in, exact /metrics, SIEM records and dead letters out.

mod common;

use common::*;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

const LATENCY_EDGES: &[(&str, f64)] = &[
    ("0.1", 0.1),
    ("0.25", 0.25),
    ("0.5", 0.5),
    ("1", 1.0),
    ("2", 2.0),
    ("3", 3.0),
    ("4", 4.0),
    ("5", 5.0),
    ("6", 6.0),
    ("8", 8.0),
    ("10", 10.0),
    ("15", 15.0),
    ("30", 30.0),
    ("60", 60.0),
    ("+Inf", f64::INFINITY),
];
const RESOLUTION_EDGES: &[(&str, f64)] = &[
    ("60", 60.0),
    ("300", 300.0),
    ("900", 900.0),
    ("1800", 1800.0),
    ("3600", 3600.0),
    ("7200", 7200.0),
    ("14400", 14400.0),
    ("28800", 28800.0),
    ("86400", 86400.0),
    ("172800", 172800.0),
    ("345600", 345600.0),
    ("604800", 604800.0),
    ("+Inf", f64::INFINITY),
];

fn s(v: &Value, key: &str) -> String {
    match &v[key] {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        other => panic!("{key}: {other}"),
    }
}

fn time(text: &str) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&chrono::Utc)
}

/// Adds a histogram observation to the expected series (cumulative buckets, count) and sums.
fn observe(
    series: &mut BTreeMap<String, f64>,
    sums: &mut BTreeMap<String, f64>,
    name: &str,
    labels: &str,
    edges: &[(&str, f64)],
    v: f64,
) {
    for (text, edge) in edges {
        let key = format!("{name}_bucket{{{labels},le=\"{text}\"}}");
        *series.entry(key).or_default() += if v <= *edge { 1.0 } else { 0.0 };
    }
    *series
        .entry(format!("{name}_count{{{labels}}}"))
        .or_default() += 1.0;
    *sums.entry(format!("{name}_sum{{{labels}}}")).or_default() += v;
}

const AUTOMATION_EDGES: &[(&str, f64)] = &[
    ("0.5", 0.5),
    ("1", 1.0),
    ("2.5", 2.5),
    ("5", 5.0),
    ("10", 10.0),
    ("30", 30.0),
    ("60", 60.0),
    ("120", 120.0),
    ("300", 300.0),
    ("600", 600.0),
    ("1800", 1800.0),
    ("3600", 3600.0),
    ("+Inf", f64::INFINITY),
];

fn count(series: &mut BTreeMap<String, f64>, key: String, by: f64) {
    *series.entry(key).or_default() += by;
}

/// The expected derived series of the whole default rule set, computed from the produced JSON alone:
/// (series without sums, sums). A `resolved` event without `intake_at` takes the time of its request's
/// earlier `intake` (the intake join).
fn expected(valid: &[Value]) -> (BTreeMap<String, f64>, BTreeMap<String, f64>) {
    let mut series = BTreeMap::new();
    let mut sums = BTreeMap::new();
    let mut intakes: HashMap<(String, String), String> = HashMap::new();
    for ev in valid {
        let org = s(ev, "organization");
        match ev["type"].as_str().unwrap() {
            "llm_run" => {
                let (intent, outcome) = (s(ev, "intent"), s(ev, "outcome"));
                count(&mut series, format!("hestyna_llm_runs_total{{intent=\"{intent}\",organization=\"{org}\",outcome=\"{outcome}\"}}"), 1.0);
                let latency = ev["latency_ms"].as_f64().unwrap() / 1000.0;
                observe(
                    &mut series,
                    &mut sums,
                    "hestyna_llm_latency_seconds",
                    &format!("intent=\"{intent}\",organization=\"{org}\""),
                    LATENCY_EDGES,
                    latency,
                );
                for kind in ["prompt", "completion"] {
                    if let Some(tokens) = ev[format!("tokens_{kind}")].as_f64() {
                        count(&mut series, format!("hestyna_llm_tokens_total{{intent=\"{intent}\",kind=\"{kind}\",organization=\"{org}\"}}"), tokens);
                    }
                }
                if outcome == "failure" || outcome == "timeout" {
                    let reason = ev["failure_reason"].as_str().unwrap_or("unspecified");
                    count(&mut series, format!("hestyna_llm_failures_total{{intent=\"{intent}\",organization=\"{org}\",reason=\"{reason}\"}}"), 1.0);
                }
            }
            "integration_call" => {
                let (integration, outcome) = (s(ev, "integration"), s(ev, "outcome"));
                count(&mut series, format!("hestyna_integration_calls_total{{integration=\"{integration}\",organization=\"{org}\",outcome=\"{outcome}\"}}"), 1.0);
                if outcome == "failure" {
                    count(&mut series, format!("hestyna_integration_failures_total{{integration=\"{integration}\",organization=\"{org}\"}}"), 1.0);
                }
            }
            "automation_run" => {
                let (id, version, outcome) = (
                    s(ev, "automation_id"),
                    s(ev, "automation_version"),
                    s(ev, "outcome"),
                );
                count(&mut series, format!("hestyna_automation_runs_total{{automation_id=\"{id}\",automation_version=\"{version}\",organization=\"{org}\",outcome=\"{outcome}\"}}"), 1.0);
                if let Some(ms) = ev["duration_ms"].as_f64() {
                    observe(
                        &mut series,
                        &mut sums,
                        "hestyna_automation_duration_seconds",
                        &format!("automation_id=\"{id}\",organization=\"{org}\""),
                        AUTOMATION_EDGES,
                        ms / 1000.0,
                    );
                }
            }
            "request_lifecycle" => {
                let key = (org.clone(), s(ev, "request_id"));
                match ev["stage"].as_str().unwrap() {
                    "intake" => {
                        intakes.entry(key).or_insert_with(|| s(ev, "occurred_at"));
                    }
                    "resolved" => {
                        let joined = intakes.remove(&key);
                        let intake = ev["intake_at"].as_str().map(str::to_owned).or(joined);
                        if let Some(intake) = intake {
                            let took = time(ev["occurred_at"].as_str().unwrap()) - time(&intake);
                            let secs = took.num_microseconds().unwrap() as f64 / 1e6;
                            let channel = ev["channel"].as_str().unwrap_or("");
                            observe(
                                &mut series,
                                &mut sums,
                                "hestyna_requests_resolution_seconds",
                                &format!("channel=\"{channel}\",organization=\"{org}\""),
                                RESOLUTION_EDGES,
                                secs,
                            );
                        }
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }
    (series, sums)
}

/// Hand-made invalid records, one class of fault each, with the reason the daemon must give.
fn invalid_records() -> Vec<(Produced, &'static str)> {
    let mut out = Vec::new();
    for i in 0..5 {
        let stamp = "2026-11-27T08:00:00Z";
        let cases: [(String, &str); 7] = [
            (format!("not json {i}"), "not_json"),
            (format!("[\"array\", {i}]"), "not_object"),
            (
                format!(
                    r#"{{"event_id":"inv-m{i}","type":"llm_run","occurred_at":"{stamp}","organization":"acme","run_id":"r","outcome":"success","latency_ms":5}}"#
                ),
                "missing_field",
            ),
            (
                format!(
                    r#"{{"event_id":"inv-w{i}","type":"llm_run","occurred_at":"{stamp}","organization":"acme","run_id":"r","intent":"billing","outcome":"success","latency_ms":"fast"}}"#
                ),
                "wrong_type",
            ),
            (
                format!(
                    r#"{{"event_id":"inv-t{i}","type":"integration_call","occurred_at":"yesterday","organization":"acme","integration":"stripe","outcome":"success"}}"#
                ),
                "bad_timestamp",
            ),
            (
                format!(
                    r#"{{"event_id":"inv-v{i}","type":"automation_run","occurred_at":"{stamp}","organization":"acme","automation_id":"a","automation_version":1,"outcome":"exploded"}}"#
                ),
                "bad_value",
            ),
            (
                format!(r#"{{"event_id":"inv-d{i}","event_id":"again","type":"llm_run"}}"#),
                "duplicate_field",
            ),
        ];
        for (payload, reason) in cases {
            out.push((
                Produced {
                    key: None,
                    payload: payload.into_bytes(),
                    headers: vec![("x-producer".into(), "test".into())],
                },
                reason,
            ));
        }
    }
    out.push((
        Produced {
            key: Some("empty".into()),
            payload: Vec::new(),
            headers: vec![],
        },
        "not_json",
    ));
    out
}

#[test]
fn events_in_exact_metrics_siem_records_and_dead_letters_out() {
    let broker = Broker::start();
    let topic = unique("events");
    let dlq = unique("dlq");
    broker.create_topic(&topic, 3);
    broker.create_topic(&dlq, 1);
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let daemon = Daemon::start_with(
        &kafka_config(&broker, &topic, &unique("g"), &dlq, dir.path(), port),
        dir.path(),
        port,
        "/readyz",
    );

    // 12,000 generated events (about 1% of an unknown type), with the invalid ones spread among them.
    let valid = generated(7, 12_000, 0.01);
    let invalid = invalid_records();
    let mut records = valid.clone();
    for (i, (r, _)) in invalid.iter().enumerate() {
        records.insert(i * 300 + 17, r.clone());
    }
    broker.produce(&topic, &records);
    let total = records.len() as f64;

    let valid_json: Vec<Value> = valid
        .iter()
        .map(|r| serde_json::from_slice(&r.payload).unwrap())
        .collect();
    let siem = dir.path().join("siem.jsonl");
    let metrics = wait_for(
        "every record to be derived and forwarded",
        Duration::from_secs(180),
        || {
            let m = daemon.scrape();
            let derived = sum(
                &m,
                "hestyna_obsd_events_received_total",
                &["pipeline=\"metrics\""],
            );
            let forwarded = read_jsonl(&siem).len();
            (derived == total && forwarded >= records.len()).then_some(m)
        },
    );

    // Exact derived series.
    let (mut want, want_sums) = expected(&valid_json);
    // Every run happened within the last minutes: the 5-minute window holds them all.
    let window_counts: Vec<(String, f64)> = want
        .iter()
        .filter_map(|(k, v)| {
            let labels = k.strip_prefix("hestyna_llm_latency_seconds_count")?;
            Some((
                format!("hestyna_llm_latency_window_seconds_count{labels}"),
                *v,
            ))
        })
        .collect();
    want.extend(window_counts);
    let got: BTreeMap<String, f64> = metrics
        .iter()
        .filter(|(k, _)| {
            k.starts_with("hestyna_")
                && !k.starts_with("hestyna_obsd_")
                && !k.contains("_sum{")
                && !k.contains("_window_seconds{")
        })
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    let missing: Vec<_> = want
        .iter()
        .filter(|(k, v)| got.get(*k) != Some(v))
        .take(5)
        .collect();
    let extra: Vec<_> = got
        .keys()
        .filter(|k| !want.contains_key(*k))
        .take(5)
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "differ: want {missing:?}; not expected {extra:?}"
    );
    assert_eq!(got.len(), want.len());
    for (key, want) in &want_sums {
        let got = metrics[key];
        assert!(
            (got - want).abs() <= 1e-9 * want.abs().max(1.0),
            "{key}: {got} != {want}"
        );
    }
    assert!(
        want.keys().any(|k| k.contains("le=\"6\"")),
        "6 s is a bucket edge"
    );

    // Self metrics.
    let mut by_reason: BTreeMap<&str, f64> = BTreeMap::new();
    for (_, reason) in &invalid {
        *by_reason.entry(reason).or_default() += 1.0;
    }
    for (reason, count) in &by_reason {
        let series = format!(
            "hestyna_obsd_events_invalid_total{{pipeline=\"metrics\",reason=\"{reason}\"}}"
        );
        assert_eq!(metrics.get(&series), Some(count), "{series}");
        let dead =
            format!("hestyna_obsd_dead_letters_total{{pipeline=\"metrics\",reason=\"{reason}\"}}");
        assert_eq!(metrics.get(&dead), Some(count), "{dead}");
    }
    let unknown = valid_json
        .iter()
        .filter(|v| v["type"] == "billing_tick")
        .count() as f64;
    assert!(unknown > 50.0);
    assert_eq!(
        metrics[r#"hestyna_obsd_events_ignored_total{pipeline="metrics",reason="unknown_type"}"#],
        unknown
    );
    assert_eq!(
        sum(
            &metrics,
            "hestyna_obsd_events_received_total",
            &[&format!("topic=\"{topic}\""), "pipeline=\"forward\""]
        ),
        total
    );
    assert_eq!(
        sum(
            &metrics,
            "hestyna_obsd_assigned_partitions",
            &["pipeline=\"metrics\""]
        ),
        3.0
    );
    assert_eq!(sum(&metrics, "hestyna_obsd_build_info", &[]), 1.0);

    // Exactly one enriched SIEM record per valid event (unknown types included), with the documented
    // fields; and one per invalid record, marked so, with its reason.
    let (docs, invalid_docs): (Vec<Value>, Vec<Value>) = read_jsonl(&siem)
        .into_iter()
        .partition(|d| d["event"]["outcome"] != "invalid");
    assert_eq!(docs.len(), valid.len());
    let mut want_reasons: Vec<&str> = invalid.iter().map(|(_, reason)| *reason).collect();
    let mut got_reasons: Vec<&str> = invalid_docs
        .iter()
        .map(|d| d["event"]["reason"].as_str().unwrap())
        .map(|r| by_reason.keys().find(|k| **k == r).copied().unwrap())
        .collect();
    want_reasons.sort();
    got_reasons.sort();
    assert_eq!(got_reasons, want_reasons, "invalid records forwarded too");
    for d in &invalid_docs {
        assert!(d["error"]["message"].is_string());
        assert!(d["event"]["id"].as_str().unwrap().starts_with("invalid-"));
        assert!(d.get("hestyna").is_some() || d.get("message").is_some());
    }
    let by_id: HashMap<String, &Value> = valid_json.iter().map(|v| (s(v, "event_id"), v)).collect();
    let ids: BTreeSet<String> = docs
        .iter()
        .map(|d| d["event"]["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), valid.len(), "no duplicates");
    let traceparents: HashMap<String, String> = valid
        .iter()
        .filter_map(|r| {
            let tp = r.headers.iter().find(|(k, _)| k == "traceparent")?;
            let v: Value = serde_json::from_slice(&r.payload).unwrap();
            Some((
                s(&v, "event_id"),
                tp.1.split('-').nth(1).unwrap().to_owned(),
            ))
        })
        .collect();
    assert!(!traceparents.is_empty());
    for doc in &docs {
        let id = doc["event"]["id"].as_str().unwrap();
        let original = by_id[id];
        assert_eq!(
            &doc["hestyna"], original,
            "the original event, unknown fields included"
        );
        let stamp = doc["@timestamp"].as_str().unwrap();
        assert!(stamp.ends_with('Z'), "{stamp}");
        assert_eq!(time(stamp), time(original["occurred_at"].as_str().unwrap()));
        assert!(doc["event"]["ingested"].as_str().unwrap().ends_with('Z'));
        assert_eq!(doc["event"]["type"], original["type"]);
        assert_eq!(doc["organization"], original["organization"]);
        assert_eq!(doc["kafka"]["topic"], topic.as_str());
        assert!(doc["kafka"]["offset"].as_i64().unwrap() >= 0);
        assert!((0..3).contains(&doc["kafka"]["partition"].as_i64().unwrap()));
        assert_eq!(doc["kubernetes"]["pod"]["name"], "obsd-test-0");
        assert_eq!(doc["kubernetes"]["namespace"], "observability");
        assert!(doc["host"]["name"].is_string());
        assert_eq!(doc["environment"], "test");
        match original["type"].as_str().unwrap() {
            "llm_run" => {
                assert_eq!(doc["intent"], original["intent"]);
                assert_eq!(doc["latency_ms"].as_f64(), original["latency_ms"].as_f64());
                let trace = original["trace_id"]
                    .as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| traceparents[id].clone());
                assert_eq!(doc["trace_id"], trace.as_str());
            }
            "automation_run" => assert_eq!(doc["automation_id"], original["automation_id"]),
            _ => {}
        }
    }

    // Every invalid record is on the dead-letter topic, with its reason and where it came from.
    let dead = broker.consume(&dlq, invalid.len(), Duration::from_secs(30));
    let mut want_dead: Vec<(Vec<u8>, &str)> = invalid
        .iter()
        .map(|(r, reason)| (r.payload.clone(), *reason))
        .collect();
    let mut got_dead: Vec<(Vec<u8>, &str)> = Vec::new();
    for d in &dead {
        assert_eq!(d.headers["hestyna.dlq.topic"], topic);
        assert!(d.headers["hestyna.dlq.offset"].parse::<i64>().unwrap() >= 0);
        assert_eq!(d.headers["hestyna.dlq.pipeline"], "metrics");
        assert!(!d.headers["hestyna.dlq.detail"].is_empty());
        if !d.payload.is_empty() {
            assert_eq!(d.headers["x-producer"], "test", "original headers are kept");
        }
        let reason = by_reason
            .keys()
            .find(|r| **r == d.headers["hestyna.dlq.reason"])
            .copied()
            .unwrap();
        got_dead.push((d.payload.clone(), reason));
    }
    want_dead.sort();
    got_dead.sort();
    assert_eq!(got_dead, want_dead);
}
