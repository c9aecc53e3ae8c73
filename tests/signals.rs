//! The signals an operator's checklist needs, on a daemon fed from a real broker: event delay by
//! pipeline and type (clocks that are off included), when each type was last seen, readiness per
//! pipeline, the build's real commit, and the landing page.

mod common;

use common::*;
use serde_json::json;
use std::time::Duration;

/// An `llm_run` or `integration_call` stamped `offset_secs` from now (negative: in the past).
fn stamped(kind: &str, offset_secs: i64) -> Produced {
    let at = chrono::Utc::now() + chrono::Duration::seconds(offset_secs);
    let fields = match kind {
        "llm_run" => {
            json!({"run_id": "r", "intent": "billing", "outcome": "success", "latency_ms": 10})
        }
        _ => json!({"integration": "stripe", "outcome": "success"}),
    };
    event_at(kind, "acme", at, fields)
}

fn series(metric: &str, labels: &str) -> String {
    format!("{metric}{{{labels}}}")
}

#[test]
fn event_delay_last_seen_and_readiness_per_pipeline() {
    let dir = tempfile::tempdir().unwrap();
    let (broker, topic, dlq) = broker_with_topics(1);
    let daemon = kafka_daemon(&broker, &topic, &dlq, dir.path());
    let m = daemon.scrape();
    for pipeline in ["metrics", "forward"] {
        let ready = series(
            "hestyna_obsd_pipeline_ready",
            &format!("pipeline=\"{pipeline}\""),
        );
        assert_eq!(m[&ready], 1.0, "{pipeline} ready once assigned");
    }
    // Three LLM runs 20 s old, and two integration calls stamped two hours ahead (local time sent as
    // UTC by a producer east of Greenwich).
    let mut events: Vec<Produced> = (0..3).map(|_| stamped("llm_run", -20)).collect();
    events.extend((0..2).map(|_| stamped("integration_call", 7200)));
    let before = chrono::Utc::now().timestamp() as f64;
    broker.produce(&topic, &events);
    let count = |m: &std::collections::BTreeMap<String, f64>, pipeline: &str, t: &str| {
        let labels = format!("pipeline=\"{pipeline}\",type=\"{t}\"");
        m.get(&series("hestyna_obsd_event_delay_seconds_count", &labels))
            .copied()
    };
    let m = wait_for(
        "delays of both types in both pipelines",
        Duration::from_secs(60),
        || {
            let m = daemon.scrape();
            let all = ["metrics", "forward"].iter().all(|p| {
                count(&m, p, "llm_run") == Some(3.0)
                    && count(&m, p, "integration_call") == Some(2.0)
            });
            all.then_some(m)
        },
    );
    let bucket = |pipeline: &str, t: &str, le: &str| {
        let labels = format!("pipeline=\"{pipeline}\",type=\"{t}\",le=\"{le}\"");
        m[&series("hestyna_obsd_event_delay_seconds_bucket", &labels)]
    };
    for pipeline in ["metrics", "forward"] {
        // 20 s late (and at most a minute, however slow the machine): above 10 s, within 60 s.
        assert_eq!(bucket(pipeline, "llm_run", "10"), 0.0);
        assert_eq!(bucket(pipeline, "llm_run", "60"), 3.0);
        assert_eq!(bucket(pipeline, "llm_run", "-1"), 0.0);
        // Two hours ahead: below -3600, the bucket the clock-skew alert reads.
        assert_eq!(bucket(pipeline, "integration_call", "-3600"), 2.0);
    }
    let after = chrono::Utc::now().timestamp() as f64;
    for t in ["llm_run", "integration_call"] {
        let seen = m[&series(
            "hestyna_obsd_last_event_timestamp_seconds",
            &format!("type=\"{t}\""),
        )];
        assert!(
            seen >= before - 1.0 && seen <= after + 1.0,
            "{t} last seen at {seen}"
        );
    }
    assert!(!m.contains_key(&series(
        "hestyna_obsd_last_event_timestamp_seconds",
        "type=\"automation_run\""
    )));
}

/// The daemon allocates with jemalloc (the default `jemalloc` feature), not only says so, and for C's
/// malloc too: asked through `MALLOC_CONF`, the variable of an unprefixed jemalloc (a prefixed one, which
/// would leave librdkafka on glibc's malloc, reads `_RJEM_MALLOC_CONF`), it prints its statistics at
/// exit, with the defaults `.cargo/config.toml` compiles in. The system allocator prints nothing.
#[cfg(feature = "jemalloc")]
#[test]
fn the_daemon_allocates_with_jemalloc_for_c_too_with_the_shipped_defaults() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hestyna-obsd"))
        .arg("--version")
        .env("MALLOC_CONF", "stats_print:true")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Begin jemalloc statistics"), "{stderr}");
    for opt in [
        "opt.background_thread: true",
        "opt.percpu_arena: \"percpu\"",
        "opt.dirty_decay_ms: 1000",
    ] {
        assert!(stderr.contains(opt), "{opt} not in {stderr}");
    }
}

#[test]
fn build_info_names_the_commit_and_the_landing_page_links_without_data() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let daemon = Daemon::start(
        &generator_config(dir.path(), port, "rate = 50.0"),
        dir.path(),
        port,
    );
    let head = std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8(o.stdout).unwrap().trim().to_owned());
    let m = daemon.scrape();
    let info = m
        .keys()
        .find(|k| k.starts_with("hestyna_obsd_build_info{"))
        .unwrap();
    match head {
        // Built from this checkout: the label is its commit (as build.rs read it then).
        Some(commit) if std::env::var_os("HESTYNA_OBSD_COMMIT").is_none() => {
            assert!(
                info.contains(&format!("commit=\"{commit}\"")),
                "{info} at {commit}"
            )
        }
        _ => assert!(!info.contains("commit=\"\""), "{info}"),
    }
    let allocator = if cfg!(feature = "jemalloc") {
        "jemalloc"
    } else {
        "system"
    };
    assert!(
        info.contains(&format!("allocator=\"{allocator}\"")),
        "{info}"
    );
    if cfg!(feature = "jemalloc") {
        // The daemon's own heap (its store, its queues): megabytes, and never more than is resident.
        let allocated = m[&series("hestyna_obsd_allocator_bytes", "state=\"allocated\"")];
        let active = m[&series("hestyna_obsd_allocator_bytes", "state=\"active\"")];
        let metadata = m[&series("hestyna_obsd_allocator_bytes", "state=\"metadata\"")];
        let resident = m[&series("hestyna_obsd_allocator_bytes", "state=\"resident\"")];
        assert!(
            allocated > 1e6 && active >= allocated && resident >= active && metadata > 0.0,
            "{allocated} {active} {metadata} {resident}"
        );
    }
    let (status, headers, body) = http_get_full(daemon.http, "/", None);
    assert_eq!(status, 200);
    assert!(headers["content-type"].starts_with("text/html"));
    for link in ["href=\"metrics\"", "href=\"livez\"", "href=\"readyz\""] {
        assert!(body.contains(link), "{link} in {body}");
    }
    assert!(body.contains(env!("CARGO_PKG_VERSION")));
    assert!(
        !body.contains("hestyna_"),
        "the landing page shows no data: {body}"
    );
}
