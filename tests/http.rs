//! /metrics is protected by basic auth; /livez and /readyz are open and reveal nothing.

mod common;

use common::*;
use std::time::Duration;

#[test]
fn metrics_needs_the_right_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let daemon = Daemon::start(
        &generator_config(dir.path(), port, "rate = 500.0"),
        dir.path(),
        port,
    );
    let addr = daemon.http;

    let (status, headers, body) = http_get_full(addr, "/metrics", None);
    assert_eq!(status, 401);
    assert!(
        headers["www-authenticate"].starts_with("Basic realm="),
        "{headers:?}"
    );
    assert!(!body.contains("hestyna_"), "a refusal reveals nothing");
    assert_eq!(
        http_get(addr, "/metrics", Some(&basic(USER, "wrong"))).0,
        401
    );
    assert_eq!(
        http_get(addr, "/metrics", Some(&basic("nobody", PASSWORD))).0,
        401
    );
    assert_eq!(http_get(addr, "/metrics", Some("Basic not-base64!")).0, 401);
    assert_eq!(http_get(addr, "/metrics", Some("Bearer abc")).0, 401);

    let body = wait_for("derived series", Duration::from_secs(30), || {
        let (status, headers, body) = http_get_full(addr, "/metrics", Some(&basic(USER, PASSWORD)));
        assert_eq!(status, 200);
        assert_eq!(
            headers["content-type"],
            "text/plain; version=0.0.4; charset=utf-8"
        );
        body.contains("hestyna_llm_runs_total{").then_some(body)
    });
    for family in [
        "hestyna_llm_runs_total",
        "hestyna_llm_latency_seconds",
        "hestyna_integration_failures_total",
        "hestyna_automation_runs_total",
        "hestyna_requests_resolution_seconds",
        "hestyna_obsd_events_received_total",
        "hestyna_obsd_build_info",
    ] {
        assert!(
            body.contains(&format!("# TYPE {family} ")),
            "{family} missing"
        );
    }

    for path in ["/livez", "/readyz"] {
        let (status, body) = http_get(addr, path, None);
        assert_eq!(status, 200, "{path}");
        assert!(!body.contains("hestyna"), "{path} reveals nothing: {body}");
    }
    assert_eq!(http_get(addr, "/nope", None).0, 404);
}

#[test]
fn unprotected_metrics_off_loopback_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = generator_config(dir.path(), free_port(), "rate = 500.0")
        .replace("listen = \"127.0.0.1:", "listen = \"0.0.0.0:")
        .replace(&format!("{USER} = \"{USER_HASH}\""), "");
    let path = dir.path().join("open.toml");
    std::fs::write(&path, &config).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hestyna-obsd"))
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("http.basic_auth_users") && stderr.contains("allow_unauthenticated"),
        "{stderr}"
    );
}

#[test]
fn the_demo_password_is_refused_off_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("demo.toml");
    let demo = include_str!("../config/demo.toml")
        .replace("127.0.0.1:9464", &format!("0.0.0.0:{}", free_port()));
    std::fs::write(&path, demo).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hestyna-obsd"))
        .arg("--config")
        .arg(&path)
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("demo password"));
}
