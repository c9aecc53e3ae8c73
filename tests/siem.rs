//! SIEM forwarding against receivers on loopback: an HTTP server that speaks NDJSON, Splunk HEC and
//! Elasticsearch bulk and fails on demand (outage, 401, refused bulk items), and the broker for the Kafka
//! sink; with enrichment and redaction checked on what arrives.

mod common;

use common::pki::pki;
use common::receiver::{Mode, Receiver};
use common::*;
use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

fn event_id(record: &serde_json::Value) -> String {
    record["event"]["id"].as_str().unwrap().to_owned()
}

/// Waits until the sink has failed at least twice with `class` (so it is retrying, not stopped).
fn wait_for_retries(daemon: &Daemon, class: &str) {
    let label = format!("class=\"{class}\"");
    wait_for(&format!("{class} retries"), Duration::from_secs(30), || {
        let m = daemon.scrape();
        (sum(&m, "hestyna_obsd_sink_retries_total", &[&label]) >= 2.0).then_some(())
    });
}

fn llm_runs(m: &BTreeMap<String, f64>) -> f64 {
    sum(m, "hestyna_llm_runs_total", &[])
}

#[test]
fn an_outage_delays_the_siem_but_loses_nothing_and_never_stalls_metrics() {
    let (broker, topic, dlq) = broker_with_topics(2);
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start();
    receiver.set_mode(Mode::Status(503));
    let forward = format!(
        r#"
[forward.sinks.siem]
kind = "http"
url = "{}/ingest"
compression = "gzip"
batch = {{ max_events = 200, timeout_ms = 50 }}
retry = {{ initial_backoff_ms = 50, max_backoff_ms = 400 }}
"#,
        receiver.url()
    );
    let daemon = start_forwarding(&broker, &topic, &dlq, dir.path(), &forward);
    let events = generated(11, 6000, 0.0);
    let ids = event_ids(&events);
    let producer = {
        let (addr, topic, events) = (broker.addr.clone(), topic.clone(), events.clone());
        std::thread::spawn(move || {
            let producer = producer_for(&addr);
            for chunk in events.chunks(300) {
                for e in chunk {
                    send(&producer, &topic, e);
                }
                std::thread::sleep(Duration::from_millis(400));
            }
            flush(&producer);
        })
    };

    // Phase 1, the SIEM answers 503; phase 2, it refuses connections. In both, /metrics keeps counting.
    let mut outage_counts = Vec::new();
    for mode in [Mode::Status(503), Mode::Refuse] {
        receiver.set_mode(mode.clone());
        let phase_end = Instant::now() + Duration::from_secs(3);
        let before = llm_runs(&daemon.scrape());
        std::thread::sleep(Duration::from_millis(1500));
        let after = llm_runs(&daemon.scrape());
        assert!(
            after > before,
            "{mode:?}: metrics stalled at {before} -> {after}"
        );
        outage_counts.push((before, after));
        std::thread::sleep(phase_end.saturating_duration_since(Instant::now()));
    }
    let during = daemon.scrape();
    let accepted_during = receiver.accepted().len();
    assert_eq!(accepted_during, 0, "nothing accepted during the outage");
    assert!(
        sum(
            &during,
            "hestyna_obsd_sink_retries_total",
            &["class=\"http_503\""]
        ) > 0.0,
        "503s counted as retries"
    );
    assert!(
        sum(
            &during,
            "hestyna_obsd_sink_retries_total",
            &["sink=\"siem\""]
        ) > sum(
            &during,
            "hestyna_obsd_sink_retries_total",
            &["class=\"http_503\""]
        ),
        "refused connections counted too"
    );
    assert_eq!(
        sum(&during, "hestyna_obsd_sink_up", &["sink=\"siem\""]),
        0.0
    );

    // Recovery.
    receiver.set_mode(Mode::Accept);
    producer.join().unwrap();
    let received = wait_for("every event at the SIEM", Duration::from_secs(90), || {
        let got: HashSet<String> = receiver.accepted().iter().map(event_id).collect();
        (got.len() >= ids.len()).then_some(got)
    });
    assert_eq!(received, ids, "exactly the produced events");
    let total = receiver.accepted().len();
    let m = daemon.scrape();
    let llm_total = generated(11, 6000, 0.0)
        .iter()
        .filter(|p| String::from_utf8_lossy(&p.payload).contains("\"type\":\"llm_run\""))
        .count() as f64;
    assert_eq!(llm_runs(&m), llm_total, "metrics counted every llm run");
    assert_eq!(sum(&m, "hestyna_obsd_sink_up", &["sink=\"siem\""]), 1.0);
    assert_eq!(
        sum(&m, "hestyna_obsd_sink_rejected_total", &[]),
        0.0,
        "an outage rejects nothing"
    );
    let gzip = receiver
        .requests()
        .iter()
        .filter(|r| r.status == 200)
        .all(|r| r.headers.get("content-encoding").map(String::as_str) == Some("gzip"));
    assert!(gzip, "bodies were gzip");
    eprintln!(
        "outage: {} events, {} records received, {} duplicates; /metrics llm runs during 503 {:?}, during refusal {:?}",
        ids.len(),
        total,
        total - ids.len(),
        outage_counts[0],
        outage_counts[1]
    );
}

#[test]
fn records_refused_with_401_are_dead_lettered_and_alertable() {
    let (broker, topic, dlq) = broker_with_topics(2);
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start();
    receiver.set_mode(Mode::Status(401));
    let forward = format!(
        r#"
[forward.sinks.siem]
kind = "http"
url = "{}/ingest"
auth = {{ kind = "bearer", secret = {{ value = "expired-token" }} }}
batch = {{ max_events = 100, timeout_ms = 50 }}
"#,
        receiver.url()
    );
    let daemon = start_forwarding(&broker, &topic, &dlq, dir.path(), &forward);
    let events = generated(12, 300, 0.0);
    broker.produce(&topic, &events);
    let dead = broker.consume(&dlq, 300, Duration::from_secs(60));
    let dead_payloads: HashSet<Vec<u8>> = dead.iter().map(|d| d.payload.clone()).collect();
    let sent: HashSet<Vec<u8>> = events.iter().map(|e| e.payload.clone()).collect();
    assert_eq!(dead_payloads, sent, "every refused record, as produced");
    for d in &dead {
        assert_eq!(d.headers["hestyna.dlq.reason"], "sink_rejected");
        assert_eq!(d.headers["hestyna.dlq.pipeline"], "forward");
        assert!(
            d.headers["hestyna.dlq.detail"].starts_with("siem (http_401): HTTP 401"),
            "{:?}",
            d.headers
        );
    }
    let m = wait_for("the counters", Duration::from_secs(10), || {
        let m = daemon.scrape();
        (sum(&m, "hestyna_obsd_sink_rejected_total", &[]) >= 300.0).then_some(m)
    });
    assert_eq!(
        sum(
            &m,
            "hestyna_obsd_sink_rejected_total",
            &["sink=\"siem\"", "class=\"http_401\""]
        ),
        300.0
    );
    assert_eq!(sum(&m, "hestyna_obsd_sink_up", &["sink=\"siem\""]), 0.0);
    assert_eq!(
        sum(
            &m,
            "hestyna_obsd_dead_letters_total",
            &["pipeline=\"forward\"", "reason=\"sink_rejected\""]
        ),
        300.0
    );
    let request = &receiver.requests()[0];
    assert_eq!(request.headers["authorization"], "Bearer expired-token");
    assert_eq!(request.headers["content-type"], "application/x-ndjson");
}

#[test]
fn a_redirect_is_not_followed_and_credentials_stay_out_of_the_log() {
    let (broker, topic, dlq) = broker_with_topics(1);
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start();
    let elsewhere = format!("{}/elsewhere?access_token=leaked-123", receiver.url());
    receiver.set_mode(Mode::Redirect(elsewhere));
    let url = receiver
        .url()
        .replace("http://", "http://siem-user:url-secret-456@");
    let forward = format!(
        r#"
[forward.sinks.siem]
kind = "http"
url = "{url}/ingest?token=query-secret-789"
headers = {{ "Proxy-Authorization" = "Basic cHJveHk6c2VjcmV0", "X-Auth-Token" = "header-secret-012" }}
batch = {{ max_events = 100, timeout_ms = 50 }}
retry = {{ initial_backoff_ms = 50, max_backoff_ms = 200 }}
"#
    );
    let mut daemon = start_forwarding(&broker, &topic, &dlq, dir.path(), &forward);
    let events = generated(21, 40, 0.0);
    broker.produce(&topic, &events);
    wait_for_retries(&daemon, "http_3xx");
    assert_eq!(
        sum(&daemon.scrape(), "hestyna_obsd_sink_up", &["sink=\"siem\""]),
        0.0
    );
    let requests = receiver.requests();
    assert!(
        requests.iter().all(|r| r.path == "/ingest"),
        "never followed: {:?}",
        requests.iter().map(|r| &r.path).collect::<Vec<_>>()
    );
    assert!(receiver.accepted().is_empty());
    // Back to a server that accepts: everything arrives, nothing was dropped while it redirected.
    receiver.set_mode(Mode::Accept);
    wait_for("every record", Duration::from_secs(30), || {
        (receiver.accepted().len() >= events.len()).then_some(())
    });
    daemon.stop();
    let log = daemon.log();
    assert!(log.contains("redirects are not followed"), "{log}");
    assert!(log.contains("access_token=***"), "{log}");
    for secret in [
        "leaked-123",
        "url-secret-456",
        "query-secret-789",
        "cHJveHk6c2VjcmV0",
        "header-secret-012",
    ] {
        assert!(!log.contains(secret), "{secret} printed: {log}");
    }
    // check-config masks the same.
    let config = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "toml"))
        .unwrap();
    let out = run_ok(
        std::process::Command::new(env!("CARGO_BIN_EXE_hestyna-obsd"))
            .arg("--config")
            .arg(&config)
            .arg("check-config"),
    );
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains("siem"), "{shown}");
    for secret in [
        "url-secret-456",
        "query-secret-789",
        "cHJveHk6c2VjcmV0",
        "header-secret-012",
    ] {
        assert!(
            !shown.contains(secret),
            "{secret} printed by check-config: {shown}"
        );
    }
}

#[test]
fn splunk_hec_gets_exact_envelopes_and_waits_for_indexer_acknowledgements() {
    let (broker, topic, dlq) = broker_with_topics(2);
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start();
    let token_file = dir.path().join("hec.token");
    std::fs::write(&token_file, "9f1c2d3e-hec-token\n").unwrap();
    let forward = format!(
        r#"
[forward.sinks.splunk]
kind = "http"
url = "{url}"
encoding = "splunk_hec"
compression = "gzip"
auth = {{ kind = "splunk", secret = {{ file = "{token}" }} }}
splunk = {{ index = "hestyna", indexer_acknowledgements = true, ack_poll_ms = 20 }}
batch = {{ max_events = 25, timeout_ms = 50 }}
"#,
        url = receiver.url(),
        token = token_file.display()
    );
    let daemon = start_forwarding(&broker, &topic, &dlq, dir.path(), &forward);
    let events = generated(13, 100, 0.0);
    let ids = event_ids(&events);
    broker.produce(&topic, &events);
    wait_for("every event indexed", Duration::from_secs(60), || {
        let m = daemon.scrape();
        (sum(&m, "hestyna_obsd_sink_records_total", &["sink=\"splunk\""]) >= 100.0).then_some(())
    });
    let got: HashSet<String> = receiver.accepted().iter().map(event_id).collect();
    assert_eq!(got, ids);
    let requests = receiver.requests();
    let posts: Vec<_> = requests
        .iter()
        .filter(|r| r.path == "/services/collector/event")
        .collect();
    let polls: Vec<_> = requests
        .iter()
        .filter(|r| r.path == "/services/collector/ack")
        .collect();
    assert!(
        polls.len() >= 2 * posts.len(),
        "each batch acknowledged after polling ({} posts, {} polls)",
        posts.len(),
        polls.len()
    );
    let channel = &posts[0].headers["x-splunk-request-channel"];
    assert_eq!(channel.len(), 36);
    for r in posts.iter().chain(&polls) {
        assert_eq!(r.headers["authorization"], "Splunk 9f1c2d3e-hec-token");
        assert_eq!(&r.headers["x-splunk-request-channel"], channel);
    }
    assert_eq!(posts[0].headers["content-encoding"], "gzip");
    // The exact envelope of every record.
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .unwrap()
                .trim()
                .to_owned()
        });
    for post in posts {
        let text = String::from_utf8(post.body.clone()).unwrap();
        for line in text.lines() {
            let envelope: serde_json::Value = serde_json::from_str(line).unwrap();
            let event = &envelope["event"];
            let at = chrono::DateTime::parse_from_rfc3339(event["@timestamp"].as_str().unwrap())
                .unwrap();
            let millis = at.timestamp_millis();
            let expected = format!(
                r#"{{"time":{}.{:03},"host":{},"source":"hestyna-obsd","sourcetype":"hestyna:event","index":"hestyna","event":{}}}"#,
                millis / 1000,
                millis % 1000,
                serde_json::to_string(&host).unwrap(),
                serde_json::to_string(event).unwrap()
            );
            assert_eq!(line, expected);
        }
    }
}

#[test]
fn elasticsearch_bulk_items_are_settled_one_by_one() {
    let (broker, topic, dlq) = broker_with_topics(2);
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start();
    let events = generated(14, 200, 0.0);
    let ids: Vec<String> = {
        let mut v: Vec<String> = event_ids(&events).into_iter().collect();
        v.sort();
        v
    };
    let refused: HashSet<String> = ids.iter().take(3).cloned().collect();
    receiver.bulk_refuse(refused.iter().cloned());
    receiver.bulk_throttle(20);
    let forward = format!(
        r#"
[forward.sinks.es]
kind = "http"
url = "{}/"
encoding = "elasticsearch_bulk"
auth = {{ kind = "api_key", secret = {{ value = "a2V5OnNlY3JldA==" }} }}
batch = {{ max_events = 50, timeout_ms = 50 }}
retry = {{ initial_backoff_ms = 20, max_backoff_ms = 100 }}
"#,
        receiver.url()
    );
    let daemon = start_forwarding(&broker, &topic, &dlq, dir.path(), &forward);
    broker.produce(&topic, &events);
    let dead = broker.consume(&dlq, 3, Duration::from_secs(60));
    let dead_ids: HashSet<String> = dead
        .iter()
        .map(|d| {
            let v: serde_json::Value = serde_json::from_slice(&d.payload).unwrap();
            v["event_id"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(dead_ids, refused);
    for d in &dead {
        assert!(
            d.headers["hestyna.dlq.detail"]
                .contains("es (bulk_item): status 400 mapper_parsing_exception"),
            "{:?}",
            d.headers
        );
    }
    let stored = wait_for("the other 197 stored", Duration::from_secs(60), || {
        let got: HashSet<String> = receiver.accepted().iter().map(event_id).collect();
        (got.len() >= 197).then_some(got)
    });
    let expected: HashSet<String> = ids
        .iter()
        .filter(|i| !refused.contains(*i))
        .cloned()
        .collect();
    assert_eq!(stored, expected);
    assert_eq!(
        receiver.accepted().len(),
        197,
        "a throttled item is sent again alone, not its batch"
    );
    for request in receiver.requests() {
        assert_eq!(request.path, "/_bulk");
        assert_eq!(request.headers["authorization"], "ApiKey a2V5OnNlY3JldA==");
        let text = String::from_utf8(request.body).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        for pair in lines.chunks(2) {
            let doc: serde_json::Value = serde_json::from_str(pair[1]).unwrap();
            assert_eq!(
                pair[0],
                format!(
                    r#"{{"index":{{"_index":"hestyna-events","_id":"{}"}}}}"#,
                    event_id(&doc)
                )
            );
        }
    }
    let m = daemon.scrape();
    assert_eq!(
        sum(
            &m,
            "hestyna_obsd_sink_rejected_total",
            &["class=\"bulk_item\""]
        ),
        3.0
    );
    assert!(
        sum(
            &m,
            "hestyna_obsd_sink_retries_total",
            &["class=\"partial\""]
        ) >= 1.0
    );
}

/// Events carrying secrets in free text and in a configured field.
fn secret_events() -> (Vec<Produced>, Vec<&'static str>) {
    let secrets = vec![
        "ana.silva@example.org",
        "Bearer eyJhbGciOiJIUzI1NiJ9secretsecret",
        "sk-proj-AbCdEfGhIjKlMnOpQrStUv123456",
        "AKIAIOSFODNN7EXAMPLE",
        "do-not-ship-this-prompt",
    ];
    let mut events = Vec::new();
    for (i, org) in ["acme", "globex", "initech"].iter().enumerate() {
        for (j, secret) in secrets.iter().take(4).enumerate() {
            let payload = serde_json::json!({
                "event_id": format!("sec-{i}-{j}"),
                "type": "llm_run",
                "occurred_at": "2026-11-27T08:00:00Z",
                "organization": org,
                "run_id": format!("r-{i}-{j}"),
                "intent": "billing",
                "outcome": "failure",
                "latency_ms": 812.5,
                "error": format!("upstream said: invalid credential {secret}"),
                "prompt": "do-not-ship-this-prompt",
                "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
            });
            events.push(Produced {
                key: Some(org.to_string()),
                payload: serde_json::to_vec(&payload).unwrap(),
                headers: vec![],
            });
        }
    }
    events.push(Produced {
        key: None,
        payload: b"{\"type\":\"llm_run\",\"note\":\"from ops@example.net\"}".to_vec(),
        headers: vec![],
    });
    (events, secrets)
}

#[test]
fn kafka_sink_gets_enriched_redacted_records_keyed_by_organization() {
    let (broker, topic, dlq) = broker_with_topics(2);
    let out = unique("siem-out");
    broker.create_topic(&out, 3);
    let dir = tempfile::tempdir().unwrap();
    let orgs = dir.path().join("orgs.csv");
    std::fs::write(
        &orgs,
        "organization,name,tier\nacme,\"Acme, Inc.\",enterprise\nglobex,Globex,free\n",
    )
    .unwrap();
    let forward_tables = format!(
        r#"trace_url_template = "https://tempo.example/trace/{{trace_id}}?org={{organization}}"
organizations_file = "{orgs}"

[forward.redaction]
fields = ["hestyna.prompt"]

[forward.sinks.ingest]
kind = "kafka"
topic = "{out}"
batch = {{ max_events = 10, timeout_ms = 50 }}
"#,
        orgs = orgs.display()
    );
    let daemon = start_forwarding(&broker, &topic, &dlq, dir.path(), &forward_tables);
    let (events, secrets) = secret_events();
    broker.produce(&topic, &events);
    let records = broker.consume(&out, events.len(), Duration::from_secs(60));
    let mut valid = 0;
    for r in &records {
        let text = String::from_utf8(r.payload.clone()).unwrap();
        for secret in &secrets {
            assert!(!text.contains(secret), "{secret} leaked: {text}");
        }
        assert!(
            !text.contains("ops@example.net"),
            "leaked from an invalid record: {text}"
        );
        let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
        if doc["event"]["outcome"] == "invalid" {
            assert_eq!(doc["event"]["reason"], "missing_field");
            assert!(doc["error"]["message"]
                .as_str()
                .unwrap()
                .contains("event_id"));
            assert_eq!(doc["hestyna"]["note"], "from [REDACTED]");
            continue;
        }
        valid += 1;
        let org = doc["organization"].as_str().unwrap();
        assert_eq!(r.key.as_deref(), Some(org), "keyed by organization");
        assert_eq!(doc["hestyna"]["prompt"], "[REDACTED]");
        assert!(doc["hestyna"]["error"]
            .as_str()
            .unwrap()
            .starts_with("upstream said: invalid credential "));
        assert_eq!(
            doc["trace_url"],
            format!("https://tempo.example/trace/4bf92f3577b34da6a3ce929d0e0e4736?org={org}")
        );
        match org {
            "acme" => {
                assert_eq!(doc["organization_name"], "Acme, Inc.");
                assert_eq!(doc["organization_tier"], "enterprise");
            }
            "globex" => assert_eq!(doc["organization_name"], "Globex"),
            _ => assert!(doc.get("organization_name").is_none()),
        }
        assert_eq!(doc["kubernetes"]["pod"]["name"], "obsd-test-0");
        assert_eq!(doc["environment"], "test");
    }
    assert_eq!(valid, 12);
    let m = daemon.scrape();
    assert_eq!(
        sum(
            &m,
            "hestyna_obsd_redactions_total",
            &["rule=\"field:hestyna.prompt\""]
        ),
        12.0
    );
    assert!(sum(&m, "hestyna_obsd_redactions_total", &["rule=\"email\""]) >= 4.0);

    // The organization table is read again when it changes.
    std::fs::write(&orgs, "organization,name,tier\ninitech,Initech,gold\n").unwrap();
    wait_for("the table reload", Duration::from_secs(20), || {
        let m = daemon.scrape();
        (sum(
            &m,
            "hestyna_obsd_enrichment_reloads_total",
            &["result=\"success\""],
        ) >= 1.0)
            .then_some(())
    });
    let more: Vec<Produced> = secret_events()
        .0
        .into_iter()
        .filter(|p| p.key.as_deref() == Some("initech"))
        .collect();
    broker.produce(&topic, &more);
    let all = broker.consume(&out, events.len() + more.len(), Duration::from_secs(60));
    let tiers: Vec<String> = all
        .iter()
        .filter_map(|r| {
            let doc: serde_json::Value = serde_json::from_slice(&r.payload).ok()?;
            doc["organization_tier"].as_str().map(str::to_owned)
        })
        .collect();
    assert!(tiers.iter().filter(|t| *t == "gold").count() >= more.len());
}

#[test]
fn https_with_a_private_ca() {
    let (broker, topic, dlq) = broker_with_topics(2);
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let receiver = Receiver::start_tls(&pki.server_cert, &pki.server_key);
    let forward = format!(
        r#"
[forward.sinks.siem]
kind = "http"
url = "{}/ingest"
tls = {{ ca_file = "{}", cert_file = "{}", key_file = "{}" }}
batch = {{ max_events = 100, timeout_ms = 20 }}
"#,
        receiver.https_url(),
        pki.ca.display(),
        pki.client_cert.display(),
        pki.client_key.display()
    );
    let daemon = start_forwarding(&broker, &topic, &dlq, dir.path(), &forward);
    let events = generated(15, 150, 0.0);
    broker.produce(&topic, &events);
    let got = wait_for("every event over HTTPS", Duration::from_secs(60), || {
        let got: HashSet<String> = receiver.accepted().iter().map(event_id).collect();
        (got.len() >= 150).then_some(got)
    });
    assert_eq!(got, event_ids(&events));
    // The certificate it presents is watched for expiry.
    let expiry =
        "hestyna_obsd_tls_certificate_expiry_timestamp_seconds{listener=\"\",sink=\"siem\"}";
    assert_eq!(
        daemon.scrape()[expiry],
        common::pki::not_after(&pki.client_cert)
    );
}

#[test]
fn an_offset_waits_for_every_sink_so_a_restart_resends_what_one_sink_missed() {
    let (broker, topic, dlq) = broker_with_topics(2);
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start();
    receiver.set_mode(Mode::Status(503));
    let forward = format!(
        r#"
[forward.sinks.archive]
kind = "file"
path = "{archive}"
batch = {{ max_events = 50, timeout_ms = 20 }}

[forward.sinks.siem]
kind = "http"
url = "{url}/ingest"
batch = {{ max_events = 50, timeout_ms = 20 }}
retry = {{ initial_backoff_ms = 50, max_backoff_ms = 200 }}
"#,
        archive = dir.path().join("archive.jsonl").display(),
        url = receiver.url()
    );
    let port = free_port();
    let config = kafka_config_with_sinks(&broker, &topic, &unique("g"), &dlq, port, &forward)
        .replace("drain_timeout_secs = 20", "drain_timeout_secs = 2");
    let mut daemon = Daemon::start_with(&config, dir.path(), port, "/readyz");
    let events = generated(16, 1000, 0.0);
    let ids = event_ids(&events);
    broker.produce(&topic, &events);
    // The archive gets records while the SIEM is down; the SIEM none.
    let archived = wait_for("records in the archive", Duration::from_secs(30), || {
        let n = read_jsonl(&dir.path().join("archive.jsonl")).len();
        (n > 0).then_some(n)
    });
    std::thread::sleep(Duration::from_secs(1));
    assert!(receiver.accepted().is_empty());
    assert_eq!(daemon.stop(), Some(0), "drained and stopped");

    // Restarted with the SIEM back: every record reaches it, because no offset was stored for records
    // only the archive had.
    receiver.set_mode(Mode::Accept);
    let daemon = Daemon::start_with(&config, dir.path(), port, "/readyz");
    let got = wait_for("every event at the SIEM", Duration::from_secs(60), || {
        let got: HashSet<String> = receiver.accepted().iter().map(event_id).collect();
        (got.len() >= ids.len()).then_some(got)
    });
    assert_eq!(got, ids);
    let archive: HashSet<String> = read_jsonl(&dir.path().join("archive.jsonl"))
        .iter()
        .map(event_id)
        .collect();
    assert_eq!(archive, ids, "the archive has everything too");
    drop(daemon);
    eprintln!(
        "fan-out: {archived} archived before the stop, all {} at both sinks after the restart",
        ids.len()
    );
}

#[test]
fn a_receiver_that_does_not_answer_times_out_and_is_retried() {
    let (broker, topic, dlq) = broker_with_topics(2);
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start();
    receiver.set_mode(Mode::Slow(Duration::from_secs(5)));
    let forward = format!(
        r#"
[forward.sinks.siem]
kind = "http"
url = "{}/ingest"
request_timeout_secs = 1
batch = {{ max_events = 100, timeout_ms = 20 }}
retry = {{ initial_backoff_ms = 50, max_backoff_ms = 200 }}
"#,
        receiver.url()
    );
    let daemon = start_forwarding(&broker, &topic, &dlq, dir.path(), &forward);
    let events = generated(17, 100, 0.0);
    broker.produce(&topic, &events);
    wait_for_retries(&daemon, "timeout");
    receiver.set_mode(Mode::Accept);
    let got = wait_for(
        "every event after the timeouts",
        Duration::from_secs(60),
        || {
            let got: HashSet<String> = receiver.accepted().iter().map(event_id).collect();
            (got.len() >= 100).then_some(got)
        },
    );
    assert_eq!(got, event_ids(&events));
}
