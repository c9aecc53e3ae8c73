//! A bad configuration: every fault named with its key path, exit code 64, nothing started.

use std::process::Command;

fn check(config: &str, env: &[(&str, &str)]) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, config).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hestyna-obsd"));
    cmd.arg("--config")
        .arg(&path)
        .arg("run")
        .current_dir(dir.path());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const BASE: &str = "[source]\nkind = \"kafka\"\n[kafka]\nbrokers = \"127.0.0.1:1\"\n[http]\nlisten = \"127.0.0.1:0\"\n";

#[test]
fn an_unknown_key_is_named() {
    let (code, stderr) = check(&format!("{BASE}[pipelines.metrics]\nenabeld = true\n"), &[]);
    assert_eq!(code, Some(64), "{stderr}");
    assert!(
        stderr.contains("pipelines.metrics.enabeld: unknown key"),
        "{stderr}"
    );
}

#[test]
fn a_wrong_type_is_named() {
    let (code, stderr) = check(
        &format!("{BASE}[shutdown]\ndrain_timeout_secs = \"soon\"\n"),
        &[],
    );
    assert_eq!(code, Some(64), "{stderr}");
    assert!(
        stderr.contains("shutdown.drain_timeout_secs: invalid type"),
        "{stderr}"
    );
}

#[test]
fn a_missing_broker_list_is_named() {
    let (code, stderr) = check(
        "[source]\nkind = \"kafka\"\n[http]\nlisten = \"127.0.0.1:0\"\n",
        &[],
    );
    assert_eq!(code, Some(64), "{stderr}");
    assert!(
        stderr.contains("kafka.brokers: missing broker list"),
        "{stderr}"
    );
}

#[test]
fn all_faults_are_reported_together_including_from_the_environment() {
    let config = format!(
        "{BASE}[source.generator]\ninvalid_ratio = 2.0\n[telemetry]\nlog_formatt = \"json\"\n"
    );
    let (code, stderr) = check(
        &config,
        &[("HESTYNA_OBSD__SOURCE__BATCH_MAX_RECORDS", "lots")],
    );
    assert_eq!(code, Some(64), "{stderr}");
    for path in [
        "source.generator.invalid_ratio",
        "telemetry.log_formatt",
        "source.batch_max_records",
    ] {
        assert!(
            stderr.contains(&format!("{path}: ")),
            "{path} not named in:\n{stderr}"
        );
    }
}

#[test]
fn an_unreadable_file_is_a_config_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_hestyna-obsd"))
        .args(["--config", "/nonexistent/hestyna.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/hestyna.toml"));
}

/// Sinks and redaction holding every kind of secret the forward side knows.
const SECRET_SINKS: &str = r#"
[forward.redaction]
mode = "hmac"
hmac_key = { value = "hmac-k3y" }
[forward.sinks.splunk]
kind = "http"
url = "https://splunk.example:8088"
encoding = "splunk_hec"
auth = { kind = "splunk", secret = { value = "hec-s3cret" } }
headers = { Authorization = "Bearer tok3n" }
[forward.sinks.ingest]
kind = "kafka"
topic = "siem"
properties = { "ssl.key.password" = "ssl-pa55" }
"#;

#[test]
fn check_config_masks_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ok.toml");
    let config = format!(
        "{BASE}[kafka.properties]\n\"sasl.password\" = \"hunter2\"\n\"sasl.username\" = \"obsd\"\n[http.basic_auth_users]\nops = \"$2b$04$XfX2Uk7ixuZtzijxbCAXwevpmcea6KjoggdY6rk3ys0Ia8/8/G46S\"\n{SECRET_SINKS}"
    );
    std::fs::write(&path, config).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_hestyna-obsd"))
        .arg("--config")
        .arg(&path)
        .arg("check-config")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    for secret in [
        "hunter2",
        "$2b$04$",
        "hec-s3cret",
        "hmac-k3y",
        "Bearer tok3n",
        "ssl-pa55",
    ] {
        assert!(!stdout.contains(secret), "{secret} printed: {stdout}");
    }
    assert!(stdout.contains("obsd"), "{stdout}");
}

#[test]
fn every_fault_of_the_forward_section_is_named_at_once() {
    let config = format!(
        "{BASE}{}",
        r#"
[forward.sinks.a]
kind = "http"
url = "ftp://x"
encodnig = "ndjson"
[forward.sinks.b]
kind = "syslog"
address = "nohost"
facility = 30
[forward.sinks.c]
kind = "http"
url = "http://127.0.0.1:1"
encoding = "splunk_hec"
batch = { max_events = 0 }
[forward.sinks.d]
kind = "kafka"
topic = "hestyna.events"
[forward.redaction]
builtin_patterns = ["email", "ssn"]
patterns = ["(unclosed"]
mode = "hmac"
"#
    );
    let (code, stderr) = check(&config, &[]);
    assert_eq!(code, Some(64), "{stderr}");
    for fault in [
        "forward.sinks.a.encodnig: unknown key",
        "forward.sinks.a.url: scheme \"ftp\" is not http or https",
        "forward.sinks.b.address: \"nohost\" is not host:port",
        "forward.sinks.b.facility: must be between 0 and 23",
        "forward.sinks.c.batch.max_events: must be between 1 and 100000",
        "forward.sinks.c.auth.kind: must be \"splunk\"",
        "forward.sinks.d.topic: must not be one of kafka.topics",
        "forward.redaction.builtin_patterns.1: unknown pattern \"ssn\"",
        "forward.redaction.patterns.0: regex parse error",
        "forward.redaction.hmac_key: required when forward.redaction.mode is \"hmac\"",
    ] {
        assert!(stderr.contains(fault), "{fault} missing from:\n{stderr}");
    }
}
