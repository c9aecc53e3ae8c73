//! A real scrape is valid for Prometheus' own linter, OpenMetrics is served when asked for, and the
//! window quantiles are served as JSON behind the same credentials.

mod common;

use common::*;
use std::time::Duration;

/// A daemon fed by the generator (2,000 events/s, some invalid, some of an unknown type).
fn generator_daemon(dir: &std::path::Path) -> Daemon {
    let port = free_port();
    let config = generator_config(
        dir,
        port,
        "rate = 2000.0\ninvalid_ratio = 0.01\nunknown_ratio = 0.01",
    );
    Daemon::start(&config, dir, port)
}

#[test]
fn scrapes_pass_promtool_and_openmetrics_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = generator_daemon(dir.path());
    let auth = basic(USER, PASSWORD);
    let body = wait_for(
        "every default family to have series",
        Duration::from_secs(60),
        || {
            let (_, body) = daemon.get("/metrics", Some((USER, PASSWORD)));
            let families = [
                "hestyna_llm_runs_total{",
                "hestyna_llm_latency_seconds_bucket{",
                "hestyna_llm_tokens_total{",
                "hestyna_llm_failures_total{",
                "hestyna_integration_calls_total{",
                "hestyna_integration_failures_total{",
                "hestyna_automation_runs_total{",
                "hestyna_automation_duration_seconds_bucket{",
                "hestyna_requests_resolution_seconds_bucket{",
                "hestyna_llm_latency_window_seconds{",
            ];
            families.iter().all(|f| body.contains(f)).then_some(body)
        },
    );

    let report = prom::check_metrics(&body);
    assert!(report.is_empty(), "promtool check metrics:\n{report}");

    // OpenMetrics on request.
    let mut response = agent()
        .get(format!("http://{}/metrics", daemon.http))
        .header("Authorization", &auth)
        .header(
            "Accept",
            "application/openmetrics-text; version=1.0.0, text/plain;version=0.0.4;q=0.5",
        )
        .call()
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    let om = response.body_mut().read_to_string().unwrap();
    assert!(
        om.ends_with("# EOF\n"),
        "{}",
        &om[om.len().saturating_sub(200)..]
    );
    assert_eq!(om.matches("# EOF").count(), 1);
    assert!(
        om.contains("# TYPE hestyna_llm_runs counter\n"),
        "a counter family is named without _total"
    );
    assert!(om.contains("\nhestyna_llm_runs_total{"));
    assert!(om.contains("# TYPE hestyna_obsd_events_received counter\n"));
    assert!(!body.contains("# EOF"), "the text format has no EOF marker");
}

#[test]
fn quantiles_are_served_as_json_behind_the_same_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = generator_daemon(dir.path());
    assert_eq!(daemon.get("/api/v1/quantiles", None).0, 401);
    assert_eq!(
        daemon.get("/api/v1/quantiles", Some((USER, "wrong"))).0,
        401
    );
    let json: serde_json::Value = wait_for("windowed series", Duration::from_secs(30), || {
        let (status, body) = daemon.get("/api/v1/quantiles", Some((USER, PASSWORD)));
        assert_eq!(status, 200);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        (v["metrics"][0]["series"]
            .as_array()
            .is_some_and(|s| !s.is_empty()))
        .then_some(v)
    });
    let metric = &json["metrics"][0];
    assert_eq!(metric["name"], "hestyna_llm_latency_window_seconds");
    assert_eq!(metric["window_seconds"], 300);
    let series = &metric["series"][0];
    assert!(series["labels"]["organization"].is_string() && series["labels"]["intent"].is_string());
    let (p50, p95, p99) = (
        series["quantiles"]["0.5"].as_f64().unwrap(),
        series["quantiles"]["0.95"].as_f64().unwrap(),
        series["quantiles"]["0.99"].as_f64().unwrap(),
    );
    assert!(0.0 < p50 && p50 <= p95 && p95 <= p99, "{series}");
    assert!(series["count"].as_u64().unwrap() >= 1);
}
