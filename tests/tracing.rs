//! The daemon's own OpenTelemetry traces, against OTLP receivers on loopback that the tests start:
//! spans arrive with the resource, batch spans link to the produced events' trace contexts, sink spans
//! carry their status, JSON log lines carry the ids of the span they were written in; with
//! `OTEL_SDK_DISABLED=true` nothing arrives; with a collector that never answers, every event is still
//! derived and forwarded and the failures are counted.

mod common;

use common::otlp::{attributes, black_hole, hex, Collector, Received1};
use common::*;
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

/// A Kafka-fed daemon writing JSON logs, started with `env`.
fn traced_daemon(
    broker: &Broker,
    topic: &str,
    dlq: &str,
    dir: &Path,
    env: &[(&str, &str)],
) -> Daemon {
    let port = free_port();
    let config = kafka_config(broker, topic, &unique("g"), dlq, dir, port)
        .replace("[telemetry]\n", "[telemetry]\nlog_format = \"json\"\n");
    Daemon::start_env(&config, dir, port, "/readyz", env)
}

/// A daemon on `config` (a generator source) exporting its spans to `collector` every 100 ms, with
/// `env` besides.
fn exporting_to(
    collector: &Collector,
    config: &str,
    dir: &Path,
    port: u16,
    env: &[(&str, &str)],
) -> Daemon {
    let endpoint = format!("http://{}", collector.addr);
    let mut vars = vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
    ];
    vars.extend_from_slice(env);
    Daemon::start_env(config, dir, port, "/livez", &vars)
}

/// A broker with a topic of one partition, an http/protobuf collector, and a daemon exporting its
/// spans there with `env` besides; the test's corpus produced.
struct Traced {
    dir: tempfile::TempDir,
    _broker: Broker,
    topic: String,
    collector: Collector,
    daemon: Daemon,
    events: Vec<Produced>,
    contexts: BTreeSet<(String, String)>,
}

fn traced(env: &[(&str, &str)]) -> Traced {
    let dir = tempfile::tempdir().unwrap();
    let (broker, topic, dlq) = broker_with_topics(1);
    let collector = Collector::http();
    let endpoint = format!("http://{}", collector.addr);
    let mut vars = vec![("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str())];
    vars.extend_from_slice(env);
    let daemon = traced_daemon(&broker, &topic, &dlq, dir.path(), &vars);
    let (events, contexts) = corpus();
    broker.produce(&topic, &events);
    Traced {
        dir,
        _broker: broker,
        topic,
        collector,
        daemon,
        events,
        contexts,
    }
}

/// The test's events: five with ids in the body, three with only a `traceparent` header, two with
/// only a trace id, and one that is not JSON. The (trace_id, span_id) pairs a batch span must link to.
fn corpus() -> (Vec<Produced>, BTreeSet<(String, String)>) {
    let mut events = Vec::new();
    let mut contexts = BTreeSet::new();
    let run = |n: usize| json!({"run_id": format!("run-{n}"), "intent": "billing", "outcome": "success", "latency_ms": 120});
    for n in 0..5 {
        let (trace, span) = (
            format!("{:032x}", 0xa11ce000 + n),
            format!("{:016x}", 0xb0b000 + n),
        );
        let mut fields = run(n);
        fields["trace_id"] = json!(trace);
        fields["span_id"] = json!(span);
        events.push(event_at("llm_run", "acme", chrono::Utc::now(), fields));
        contexts.insert((trace, span));
    }
    for n in 5..8 {
        let (trace, span) = (
            format!("{:032x}", 0xfeed000 + n),
            format!("{:016x}", 0xcafe000 + n),
        );
        let mut event = event_at("llm_run", "acme", chrono::Utc::now(), run(n));
        event
            .headers
            .push(("traceparent".into(), format!("00-{trace}-{span}-01")));
        events.push(event);
        contexts.insert((trace, span));
    }
    for n in 8..10 {
        let mut fields = run(n);
        fields["trace_id"] = json!(format!("{:032x}", 0xdead000 + n));
        events.push(event_at("llm_run", "acme", chrono::Utc::now(), fields));
    }
    events.push(Produced {
        key: None,
        payload: b"{not json".to_vec(),
        headers: Vec::new(),
    });
    (events, contexts)
}

/// The spans named `name`, with their attributes.
fn named<'a>(spans: &'a [Received1], name: &str) -> Vec<(&'a Received1, BTreeMap<String, String>)> {
    spans
        .iter()
        .filter(|s| s.span.name == name)
        .map(|s| (s, attributes(&s.span.attributes)))
        .collect()
}

/// The (trace_id, span_id) pairs the batch spans of `pipeline` link to.
fn linked(spans: &[Received1], pipeline: &str) -> BTreeSet<(String, String)> {
    named(spans, &format!("{pipeline} batch"))
        .iter()
        .flat_map(|(s, _)| s.span.links.iter())
        .map(|l| (hex(&l.trace_id), hex(&l.span_id)))
        .collect()
}

/// The sum of an integer attribute over spans.
fn total(spans: &[(&Received1, BTreeMap<String, String>)], key: &str) -> i64 {
    spans
        .iter()
        .map(|(_, a)| a.get(key).map_or(0, |v| v.parse::<i64>().unwrap()))
        .sum()
}

#[test]
fn spans_reach_an_http_collector_with_the_resource_links_and_sink_status() {
    let t = traced(&[("OTEL_BSP_SCHEDULE_DELAY", "100")]);
    let (topic, collector, daemon, contexts) = (&t.topic, &t.collector, &t.daemon, &t.contexts);

    let spans = wait_for(
        "every event's context in the batch spans",
        Duration::from_secs(60),
        || {
            let spans = collector.spans();
            let sent = named(&spans, "send siem");
            let done = linked(&spans, "metrics") == *contexts
                && linked(&spans, "forward") == *contexts
                && total(&sent, "records") >= 11
                && !named(&spans, "dead-letter write").is_empty();
            done.then_some(spans)
        },
    );

    // The resource: the service, its version, and where it runs.
    for s in &spans {
        assert_eq!(s.resource["service.name"], "hestyna-obsd");
        assert_eq!(s.resource["service.version"], env!("CARGO_PKG_VERSION"));
        assert_eq!(s.resource["k8s.pod.name"], "obsd-test-0");
        assert_eq!(s.resource["k8s.namespace.name"], "observability");
        assert!(s.resource.contains_key("host.name"), "{:?}", s.resource);
    }
    // Batch spans: where the records came from, what was invalid, what could not be linked.
    for pipeline in ["metrics", "forward"] {
        let batches = named(&spans, &format!("{pipeline} batch"));
        assert_eq!(total(&batches, "records"), 11, "{pipeline}");
        assert_eq!(total(&batches, "invalid"), 1, "{pipeline}");
        assert_eq!(total(&batches, "events.trace_id_only"), 2, "{pipeline}");
        assert_eq!(total(&batches, "links.dropped"), 0, "{pipeline}");
        for (s, a) in &batches {
            assert_eq!(&a["messaging.destination.name"], topic);
            assert_eq!(a["partition"], "0");
            let (first, last): (i64, i64) = (
                a["first_offset"].parse().unwrap(),
                a["last_offset"].parse().unwrap(),
            );
            assert!(first <= last && last <= 10, "{a:?}");
            assert_eq!(a["offsets"], format!("{topic}/0:{first}-{last}"));
            assert_eq!(s.span.kind, 5, "consumer"); // SPAN_KIND_CONSUMER
        }
    }
    // Sink requests: the sink, what was sent, and how it was answered.
    for (s, a) in named(&spans, "send siem") {
        assert_eq!(a["sink"], "siem");
        assert_eq!(a["outcome"], "accepted");
        assert_eq!(a["attempt"], "1");
        assert!(a["bytes"].parse::<i64>().unwrap() > 0);
        assert_eq!(s.span.kind, 3, "client"); // SPAN_KIND_CLIENT
        assert_ne!(
            s.span.status.as_ref().map_or(0, |st| st.code),
            2,
            "not an error"
        );
    }
    // The invalid record's dead letter, written inside the metrics batch that held it.
    let metrics_batches: BTreeSet<Vec<u8>> = named(&spans, "metrics batch")
        .iter()
        .map(|(s, _)| s.span.span_id.clone())
        .collect();
    let writes = named(&spans, "dead-letter write");
    assert_eq!(writes.len(), 1, "{writes:?}");
    let (write, attrs) = &writes[0];
    assert_eq!(
        (attrs["pipeline"].as_str(), attrs["records"].as_str()),
        ("metrics", "1")
    );
    assert_eq!(attrs["outcome"], "written");
    assert!(
        metrics_batches.contains(&write.span.parent_span_id),
        "a child of its batch"
    );

    // The log line of the partition's intake restore carries the ids of its span.
    let restores: BTreeSet<(String, String)> = named(&spans, "changelog restore")
        .iter()
        .map(|(s, a)| {
            assert_eq!(
                (a["topic"].as_str(), a["partition"].as_str()),
                (topic.as_str(), "0")
            );
            (hex(&s.span.trace_id), hex(&s.span.span_id))
        })
        .collect();
    let line = daemon
        .log()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|l| l["message"] == "intake state restored")
        .expect("the restore is logged");
    let ids = (
        line["trace_id"].as_str().expect("trace_id").to_owned(),
        line["span_id"].as_str().expect("span_id").to_owned(),
    );
    assert!(restores.contains(&ids), "{line}");
    // A line written outside any span has no ids.
    let started = daemon
        .log()
        .lines()
        .find(|l| l.contains("\"message\":\"started\""))
        .unwrap()
        .to_owned();
    assert!(!started.contains("trace_id"), "{started}");

    let m = daemon.scrape();
    assert!(sum(&m, "hestyna_obsd_otlp_spans_exported_total", &[]) >= spans.len() as f64);
    assert_eq!(sum(&m, "hestyna_obsd_otlp_export_failures_total", &[]), 0.0);
    assert_eq!(sum(&m, "hestyna_obsd_otlp_spans_dropped_total", &[]), 0.0);
}

#[test]
fn links_past_the_cap_are_cut_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let collector = Collector::http();
    let port = free_port();
    // 200 generated events in large batches (every LLM run in its own trace); at most 16 links a span.
    let config = generator_config(
        dir.path(),
        port,
        "rate = 0.0\ncount = 200\ninvalid_ratio = 0.0",
    )
    .replace(
        "[source]\nkind = \"generator\"\n",
        "[source]\nkind = \"generator\"\nbatch_max_records = 1000\nbatch_max_wait_ms = 500\n",
    );
    let daemon = exporting_to(
        &collector,
        &config,
        dir.path(),
        port,
        &[("HESTYNA_OBSD__TELEMETRY__TRACING__MAX_LINKS_PER_SPAN", "16")],
    );
    let batches = wait_for("the batch spans", Duration::from_secs(60), || {
        let spans = collector.spans();
        let batches: Vec<_> = named(&spans, "metrics batch")
            .into_iter()
            .map(|(s, a)| (s.clone(), a))
            .collect();
        let records: i64 = batches
            .iter()
            .map(|(_, a)| a["records"].parse::<i64>().unwrap())
            .sum();
        (records == 200).then_some(batches)
    });
    let mut cut = 0;
    for (s, a) in &batches {
        let dropped: i64 = a["links.dropped"].parse().unwrap();
        assert_eq!(a["links"], s.span.links.len().to_string());
        if dropped > 0 {
            assert_eq!(s.span.links.len(), 16, "cut at the cap, not before");
        }
        assert!(s.span.links.len() <= 16, "{}", s.span.links.len());
        assert_eq!(a["source"], "(generator)");
        cut += dropped;
    }
    assert!(cut > 0, "the batches held more than 16 events");
    let m = daemon.scrape();
    // Both pipelines cut links; the counter holds every cut.
    assert!(sum(&m, "hestyna_obsd_otlp_span_links_dropped_total", &[]) >= cut as f64);
}

#[test]
fn spans_reach_a_grpc_collector() {
    let dir = tempfile::tempdir().unwrap();
    let collector = Collector::grpc();
    let port = free_port();
    let config = generator_config(dir.path(), port, "rate = 0.0\ncount = 50");
    let _daemon = exporting_to(
        &collector,
        &config,
        dir.path(),
        port,
        &[
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_SERVICE_NAME", "obsd-grpc"),
            ("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=test"),
        ],
    );
    let spans = wait_for("spans over gRPC", Duration::from_secs(60), || {
        let spans = collector.spans();
        let records = total(&named(&spans, "metrics batch"), "records");
        (records == 50 && !named(&spans, "send siem").is_empty()).then_some(spans)
    });
    for s in &spans {
        assert_eq!(s.resource["service.name"], "obsd-grpc");
        assert_eq!(s.resource["deployment.environment"], "test");
    }
}

#[test]
fn otel_sdk_disabled_sends_nothing() {
    let t = traced(&[
        ("OTEL_BSP_SCHEDULE_DELAY", "50"),
        ("OTEL_SDK_DISABLED", "true"),
    ]);
    let (dir, collector, daemon, events) = (&t.dir, &t.collector, &t.daemon, &t.events);
    let siem = dir.path().join("siem.jsonl");
    wait_for("every record forwarded", Duration::from_secs(60), || {
        (siem.exists() && read_jsonl(&siem).len() == events.len()).then_some(())
    });
    // Twenty schedule delays later, still nothing.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(collector.requests(), 0);
    let m = daemon.scrape();
    assert_eq!(sum(&m, "hestyna_obsd_otlp_spans_exported_total", &[]), 0.0);
    assert!(
        !daemon.log().contains("\"trace_id\":\"0"),
        "no log line has span ids"
    );
}

#[test]
fn a_collector_that_never_answers_costs_no_event_and_is_counted() {
    let dir = tempfile::tempdir().unwrap();
    let (broker, topic, dlq) = broker_with_topics(2);
    let endpoint = format!("http://{}", black_hole());
    let daemon = traced_daemon(
        &broker,
        &topic,
        &dlq,
        dir.path(),
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "200"),
            ("OTEL_BSP_SCHEDULE_DELAY", "20"),
            ("OTEL_BSP_MAX_QUEUE_SIZE", "4"),
            ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "2"),
        ],
    );
    let events = generated(41, 300, 0.0);
    let truth = event_ids(&events);
    broker.produce(&topic, &events);
    let siem = dir.path().join("siem.jsonl");
    wait_for("every event forwarded", Duration::from_secs(90), || {
        (siem.exists() && read_jsonl(&siem).len() >= events.len()).then_some(())
    });
    let forwarded: std::collections::HashSet<String> = read_jsonl(&siem)
        .iter()
        .map(|d| d["event"]["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(forwarded, truth);
    let m = wait_for(
        "every event derived and the failures counted",
        Duration::from_secs(30),
        || {
            let m = daemon.scrape();
            let derived = sum(
                &m,
                "hestyna_obsd_events_received_total",
                &["pipeline=\"metrics\""],
            );
            (derived == events.len() as f64
                && sum(&m, "hestyna_obsd_otlp_export_failures_total", &[]) >= 1.0)
                .then_some(m)
        },
    );
    assert_eq!(sum(&m, "hestyna_obsd_dead_letters_total", &[]), 0.0);
    assert!(
        sum(
            &m,
            "hestyna_obsd_otlp_spans_dropped_total",
            &["reason=\"export_failed\""]
        ) >= 1.0
    );
    assert_eq!(sum(&m, "hestyna_obsd_otlp_spans_exported_total", &[]), 0.0);
    assert!(daemon
        .log()
        .contains("exporting spans to the OTLP collector failed"));
}
