//! The monitoring kit: the alert and recording rules (config/prometheus/), the Alertmanager routing
//! (config/alertmanager.yml), the Grafana dashboard (config/grafana/) and the runbook (docs/runbook.md).
//!
//! Checked by the tools that read them (promtool, amtool), against their conventions, and end to end:
//! a real Prometheus evaluating the rules on a daemon fed from a real broker fires to a real
//! Alertmanager whose Slack and PagerDuty receivers point at a local stand-in; and every expression of
//! the dashboard and the rules runs against a real Prometheus scraping a daemon fed known events.

mod common;

use common::prom::{encode, get_json, scrape_job, tool, Alertmanager, Prometheus};
use common::receiver::Receiver;
use common::*;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const RULES: &str = "config/prometheus/hestyna-obsd.rules.yml";
const RULE_TESTS: &str = "config/prometheus/hestyna-obsd.rules.test.yml";
const ALERTMANAGER: &str = "config/alertmanager.yml";
const DASHBOARD: &str = "config/grafana/hestyna-obsd.json";
const RUNBOOK: &str = "docs/runbook.md";
const RUNBOOK_URL: &str = "https://github.com/hestyna/hestyna-obsd/blob/main/docs/runbook.md";

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn yaml(path: &str) -> Value {
    let text = std::fs::read_to_string(repo(path)).unwrap();
    serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn dashboard() -> Value {
    serde_json::from_str(&std::fs::read_to_string(repo(DASHBOARD)).unwrap()).unwrap()
}

/// Every rule of the rules file, with its group's name.
fn rules() -> Vec<(String, Value)> {
    let file = yaml(RULES);
    let mut out = Vec::new();
    for group in file["groups"].as_array().unwrap() {
        for rule in group["rules"].as_array().unwrap() {
            out.push((group["name"].as_str().unwrap().to_owned(), rule.clone()));
        }
    }
    out
}

fn alerts() -> Vec<Value> {
    let all = rules().into_iter().map(|(_, r)| r);
    all.filter(|r| r.get("alert").is_some()).collect()
}

/// Runs a tool and asserts it succeeded: what it printed.
fn run(command: &mut Command) -> String {
    let (ok, text) = output(command);
    assert!(ok, "{command:?} failed:\n{text}");
    text
}

#[test]
fn promtool_accepts_the_rules_and_every_unit_test_passes() {
    let promtool = tool("PROMTOOL", "promtool");
    let checked = run(Command::new(&promtool)
        .args(["check", "rules"])
        .arg(repo(RULES)));
    assert!(checked.contains("SUCCESS"), "{checked}");
    let tested = run(Command::new(&promtool)
        .args(["test", "rules"])
        .arg(repo(RULE_TESTS)));
    assert!(tested.contains("SUCCESS"), "{tested}");
}

#[test]
fn every_alert_follows_the_conventions_and_has_its_runbook_section() {
    let runbook = std::fs::read_to_string(repo(RUNBOOK)).unwrap();
    let headings: BTreeSet<String> = runbook
        .lines()
        .filter_map(|l| l.strip_prefix("### "))
        .map(|h| h.trim().to_owned())
        .collect();
    let mut problems = Vec::new();
    for (group, rule) in rules() {
        if let Some(record) = rule["record"].as_str() {
            if record.split(':').count() != 3 {
                problems.push(format!("{record}: not level:metric:operations"));
            }
            continue;
        }
        let name = rule["alert"].as_str().unwrap();
        let named = name == "IntegrationFailures"
            || (name.starts_with("Hestyna") && !name.contains(['_', '-', ' ']));
        if !named {
            problems.push(format!("{name}: not CamelCase with the Hestyna prefix"));
        }
        let severity = rule["labels"]["severity"].as_str().unwrap_or("");
        if !["page", "warning", "info"].contains(&severity) {
            problems.push(format!("{name}: severity {severity:?}"));
        }
        for key in ["summary", "description", "runbook_url"] {
            if rule["annotations"][key].as_str().unwrap_or("").is_empty() {
                problems.push(format!("{name}: no {key}"));
            }
        }
        let anchor = format!("{RUNBOOK_URL}#{}", name.to_lowercase());
        if rule["annotations"]["runbook_url"] != anchor.as_str() {
            problems.push(format!("{name}: runbook_url is not {anchor}"));
        }
        if !headings.contains(name) {
            problems.push(format!("{name}: no \"### {name}\" section in {RUNBOOK}"));
        }
        // The platform's alerts are about an organization: the responder lands on its dashboard.
        let dashboard = rule["annotations"]["dashboard_url"].as_str().unwrap_or("");
        if group == "hestyna-signals"
            && !dashboard.contains("var-organization={{ $labels.organization }}")
        {
            problems.push(format!("{name}: no dashboard_url with the organization"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_guides_integration_failures_rule_is_kept_as_written() {
    let rule = alerts()
        .into_iter()
        .find(|a| a["alert"] == "IntegrationFailures")
        .expect("IntegrationFailures");
    assert_eq!(
        rule["expr"],
        "increase(hestyna_integration_failures_total[5m]) > 5"
    );
    assert_eq!(rule["for"], "10m");
    assert_eq!(rule["labels"], json!({"severity": "page"}));
    assert_eq!(
        rule["annotations"]["summary"],
        "{{ $labels.integration }} failing repeatedly"
    );
    let description = rule["annotations"]["description"].as_str().unwrap();
    assert!(description.starts_with("Investigate credentials or downstream outages."));
}

/// For every alert: quiet on the healthy test, and a test that checks it quiet at one time and firing
/// at a later one.
#[test]
fn every_alert_has_unit_tests_that_fire_it_and_keep_it_quiet() {
    let tests = yaml(RULE_TESTS);
    let groups = tests["tests"].as_array().unwrap();
    let healthy = groups.iter().find(|g| g["name"] == "healthy").unwrap();
    let mut problems = Vec::new();
    for alert in alerts() {
        let name = alert["alert"].as_str().unwrap();
        let cases = |group: &Value| -> Vec<(u64, bool)> {
            let list = group["alert_rule_test"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            list.iter()
                .filter(|c| c["alertname"] == name)
                .map(|c| {
                    let fires = !c["exp_alerts"].as_array().unwrap().is_empty();
                    (minutes(c["eval_time"].as_str().unwrap()), fires)
                })
                .collect()
        };
        if cases(healthy).iter().any(|(_, fires)| *fires) || cases(healthy).is_empty() {
            problems.push(format!("{name}: not checked quiet by the healthy test"));
        }
        let tested = groups.iter().any(|g| {
            let c = cases(g);
            let first_firing = c.iter().filter(|(_, f)| *f).map(|(t, _)| *t).min();
            first_firing.is_some_and(|t| c.iter().any(|(q, f)| !f && *q < t))
        });
        if !tested {
            problems.push(format!(
                "{name}: no test quiet before it fires, then firing"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// `1d1h10m` -> minutes.
fn minutes(duration: &str) -> u64 {
    let (mut total, mut number) = (0, 0);
    for c in duration.chars() {
        match c {
            '0'..='9' => number = number * 10 + c.to_digit(10).unwrap() as u64,
            'd' => (total, number) = (total + number * 1440, 0),
            'h' => (total, number) = (total + number * 60, 0),
            'm' => (total, number) = (total + number, 0),
            _ => panic!("eval_time {duration}"),
        }
    }
    total
}

/// The metric names an expression reads: the library's reading, the one `doctor --rules` uses.
fn families_read(expr: &str) -> BTreeSet<String> {
    hestyna_obsd::app::doctor::families_read(expr)
        .into_iter()
        .collect()
}

/// Every family the daemon can export: the self metrics and the default rules (histograms with their
/// `_bucket`, `_sum` and `_count`).
fn exported_families() -> BTreeSet<String> {
    let source = std::fs::read_to_string(repo("src/telemetry/metrics.rs")).unwrap();
    let mut out: BTreeSet<String> = source
        .split('"')
        .filter(|s| s.starts_with("hestyna_obsd_") && !s.contains(' '))
        .map(str::to_owned)
        .collect();
    // The self histograms: `HistogramVec("name", ...` in the table.
    for histogram in source.split("HistogramVec(\"").skip(1) {
        let name = histogram.split('"').next().unwrap();
        for suffix in ["_bucket", "_sum", "_count"] {
            out.insert(format!("{name}{suffix}"));
        }
    }
    let defaults: toml::Value =
        toml::from_str(&std::fs::read_to_string(repo("config/default.toml")).unwrap()).unwrap();
    for rule in defaults["metrics"]["rules"].as_array().unwrap() {
        let name = rule["name"].as_str().unwrap();
        out.insert(name.to_owned());
        if rule["type"].as_str() == Some("histogram") {
            for suffix in ["_bucket", "_sum", "_count"] {
                out.insert(format!("{name}{suffix}"));
            }
        }
        if let Some(window) = rule.get("window") {
            out.insert(window["name"].as_str().unwrap().to_owned());
        }
    }
    out.insert("up".into());
    out
}

/// Every PromQL expression of the dashboard: (where, expression).
fn dashboard_exprs(d: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for panel in d["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().cloned().unwrap_or_default() {
            let title = panel["title"].as_str().unwrap_or("?");
            out.push((
                title.to_owned(),
                target["expr"].as_str().unwrap().to_owned(),
            ));
        }
    }
    for a in d["annotations"]["list"].as_array().unwrap() {
        if let Some(expr) = a["expr"].as_str() {
            out.push((format!("annotation {}", a["name"]), expr.to_owned()));
        }
    }
    out
}

/// `label_values(selector, label)` of each query variable: (variable, selector, label).
fn variable_queries(d: &Value) -> Vec<(String, String, String)> {
    let list = d["templating"]["list"].as_array().unwrap();
    let queries = list.iter().filter(|v| v["type"] == "query");
    queries
        .map(|v| {
            let q = v["query"]["query"].as_str().unwrap();
            let inner = q
                .strip_prefix("label_values(")
                .and_then(|q| q.strip_suffix(')'))
                .unwrap_or_else(|| panic!("{q}: not label_values(selector, label)"));
            let (selector, label) = inner.rsplit_once(',').unwrap();
            let name = v["name"].as_str().unwrap().to_owned();
            (name, selector.trim().to_owned(), label.trim().to_owned())
        })
        .collect()
}

#[test]
fn the_rules_and_the_dashboard_read_only_families_the_daemon_exports() {
    let exported = exported_families();
    let d = dashboard();
    let mut exprs: Vec<(String, String)> = rules()
        .into_iter()
        .map(|(_, r)| {
            let name = r.get("alert").or(r.get("record")).unwrap();
            (
                name.as_str().unwrap().to_owned(),
                r["expr"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    exprs.extend(dashboard_exprs(&d));
    exprs.extend(variable_queries(&d).into_iter().map(|(n, s, _)| (n, s)));
    let mut unknown = Vec::new();
    for (place, expr) in &exprs {
        for family in families_read(expr) {
            if !exported.contains(&family) {
                unknown.push(format!("{place}: {family}"));
            }
        }
    }
    assert!(unknown.is_empty(), "not exported:\n{}", unknown.join("\n"));
    // The checker sees what it must: a typo is caught.
    assert!(!exported.contains("hestyna_llm_run_total"));
    assert!(
        families_read("rate(hestyna_llm_run_total{a=\"hestyna_x\"}[5m])")
            .contains("hestyna_llm_run_total")
    );
}

#[test]
fn amtool_accepts_the_alertmanager_config_and_routes_each_severity() {
    let amtool = tool("AMTOOL", "amtool");
    let checked = run(Command::new(&amtool)
        .arg("check-config")
        .arg(repo(ALERTMANAGER)));
    assert!(checked.contains("SUCCESS"), "{checked}");
    let cases = [
        (
            "pagerduty,slack",
            "alertname=IntegrationFailures severity=page organization=acme integration=stripe",
        ),
        (
            "pagerduty,slack",
            "alertname=HestynaObsdSinkDown severity=page sink=siem",
        ),
        (
            "slack",
            "alertname=HestynaLLMLatencyHigh severity=warning intent=billing",
        ),
        (
            "slack",
            "alertname=HestynaResolutionTimeDegrading severity=info channel=chat",
        ),
        ("slack", "alertname=SomethingElse"),
    ];
    for (receivers, labels) in cases {
        let file = format!("--config.file={}", repo(ALERTMANAGER).display());
        let verify = format!("--verify.receivers={receivers}");
        let mut command = Command::new(&amtool);
        command.args(["config", "routes", "test", &file, &verify]);
        command.args(labels.split(' '));
        let routed = run(&mut command);
        assert!(routed.starts_with(receivers), "{labels}: {routed}");
    }
}

/// The checks of grafana's dashboard-linter (a Go tool, not installable here), and the guide's
/// conventions: UTC, refreshed every minute, organization filter.
#[test]
fn the_dashboard_passes_the_linter_rules() {
    let d = dashboard();
    let mut problems = Vec::new();
    assert_eq!(d["timezone"], "utc");
    assert_eq!(d["refresh"], "1m");
    let variables = d["templating"]["list"].as_array().unwrap();
    let sources: Vec<&Value> = variables
        .iter()
        .filter(|v| v["type"] == "datasource")
        .collect();
    if sources.len() != 1
        || sources[0]["name"] != "datasource"
        || sources[0]["query"] != "prometheus"
    {
        problems.push("one Prometheus datasource variable named datasource".to_owned());
    }
    for v in variables.iter().filter(|v| v["type"] == "query") {
        let name = &v["name"];
        if v["refresh"] != 2 {
            problems.push(format!(
                "variable {name}: not refreshed on time range change"
            ));
        }
        if v["datasource"]["uid"] != "${datasource}" {
            problems.push(format!(
                "variable {name}: datasource is not ${{datasource}}"
            ));
        }
    }
    let organization = variables.iter().find(|v| v["name"] == "organization");
    if !organization.is_some_and(|o| o["multi"] == true && o["includeAll"] == true) {
        problems.push("organization: a multi-value variable with All".to_owned());
    }
    for panel in d["panels"].as_array().unwrap() {
        let title = panel["title"].as_str().unwrap_or("");
        if title.is_empty() {
            problems.push(format!("panel {}: no title", panel["id"]));
        }
        if panel["type"] == "row" {
            continue;
        }
        if panel["description"].as_str().unwrap_or("").is_empty() {
            problems.push(format!("{title}: no description"));
        }
        if panel["fieldConfig"]["defaults"]["unit"]
            .as_str()
            .unwrap_or("")
            .is_empty()
        {
            problems.push(format!("{title}: no unit"));
        }
        let mut datasources = vec![&panel["datasource"]];
        datasources.extend(
            panel["targets"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| &t["datasource"]),
        );
        if datasources.iter().any(|ds| ds["uid"] != "${datasource}") {
            problems.push(format!(
                "{title}: a datasource uid other than ${{datasource}}"
            ));
        }
    }
    for (place, expr) in dashboard_exprs(&d) {
        for window in range_windows(&expr) {
            let rated = ["rate(", "irate("].iter().any(|f| expr.contains(f));
            let allowed: &[&str] = if rated && !expr.contains("increase(") {
                &["$__rate_interval"]
            } else {
                &["$__rate_interval", "$__range"]
            };
            if !allowed.contains(&window.as_str()) {
                problems.push(format!("{place}: range [{window}] in {expr}"));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The ranges `[...]` of an expression.
fn range_windows(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = expr;
    while let Some(start) = rest.find('[') {
        let end = rest[start..].find(']').unwrap() + start;
        out.push(rest[start + 1..end].to_owned());
        rest = &rest[end + 1..];
    }
    out
}

// ---------------------------------------------------------------------------------------------------
// Against real servers.

/// An event of `kind` for `organization`, now, with these fields.
fn event(kind: &str, organization: &str, fields: Value) -> Produced {
    event_at(kind, organization, chrono::Utc::now(), fields)
}

fn llm(org: &str, intent: &str, outcome: &str, tokens: Option<(u64, u64)>) -> Produced {
    let mut f =
        json!({"run_id": unique("run"), "intent": intent, "outcome": outcome, "latency_ms": 850});
    if let Some((prompt, completion)) = tokens {
        f["tokens_prompt"] = json!(prompt);
        f["tokens_completion"] = json!(completion);
    }
    if outcome == "failure" {
        f["failure_reason"] = json!("rate_limited");
    }
    event("llm_run", org, f)
}

fn call(org: &str, integration: &str, outcome: &str) -> Produced {
    let f = json!({"integration": integration, "outcome": outcome, "latency_ms": 120});
    event("integration_call", org, f)
}

fn automation(org: &str, outcome: &str) -> Produced {
    let f = json!({"automation_id": "refund", "automation_version": 3, "outcome": outcome});
    event("automation_run", org, f)
}

fn resolved(org: &str) -> Produced {
    let intake = chrono::Utc::now() - chrono::Duration::minutes(42);
    let f = json!({"request_id": unique("req"), "stage": "resolved", "channel": "chat",
        "intake_at": intake.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)});
    event("request_lifecycle", org, f)
}

/// The rules file with every `for` and group interval shortened, for a test that cannot wait 10 minutes.
fn shortened_rules() -> String {
    let mut file = yaml(RULES);
    for group in file["groups"].as_array_mut().unwrap() {
        group["interval"] = json!("1s");
        for rule in group["rules"].as_array_mut().unwrap() {
            if rule.get("for").is_some() {
                rule["for"] = json!("1s");
            }
        }
    }
    serde_norway::to_string(&file).unwrap()
}

/// config/alertmanager.yml with its secrets' files in `dir`, PagerDuty's and Slack's URLs pointing at
/// `stand_in`, and the waits shortened.
fn alertmanager_config(dir: &Path, stand_in: &str) -> PathBuf {
    let (slack, pagerduty) = (
        dir.join("slack-webhook-url"),
        dir.join("pagerduty-routing-key"),
    );
    std::fs::write(&slack, format!("{stand_in}/slack/webhook\n")).unwrap();
    std::fs::write(&pagerduty, "test-routing-key-0123456789abcdef\n").unwrap();
    let mut c = yaml(ALERTMANAGER);
    c["global"]["slack_api_url_file"] = json!(slack);
    c["global"]["pagerduty_url"] = json!(format!("{stand_in}/pagerduty/v2/enqueue"));
    for receiver in c["receivers"].as_array_mut().unwrap() {
        for pd in receiver["pagerduty_configs"]
            .as_array_mut()
            .into_iter()
            .flatten()
        {
            pd["routing_key_file"] = json!(pagerduty);
        }
    }
    let route = &mut c["route"];
    route["group_wait"] = json!("1s");
    route["group_interval"] = json!("1s");
    for child in route["routes"].as_array_mut().unwrap() {
        if child.get("group_interval").is_some() {
            child["group_interval"] = json!("1s");
        }
    }
    let file = dir.join("alertmanager.yml");
    std::fs::write(&file, serde_norway::to_string(&c).unwrap()).unwrap();
    file
}

/// The requests the stand-in received on `path`, as JSON.
fn posted(stand_in: &Receiver, path: &str) -> Vec<Value> {
    let requests = stand_in.requests();
    let on_path = requests.iter().filter(|r| r.path == path);
    on_path
        .filter_map(|r| serde_json::from_slice(&r.body).ok())
        .collect()
}

#[test]
fn failing_integration_events_page_pagerduty_and_post_to_slack() {
    let dir = tempfile::tempdir().unwrap();
    let (broker, topic, dlq) = broker_with_topics(1);
    let daemon = kafka_daemon(&broker, &topic, &dlq, dir.path());
    let port = daemon.http.port();
    let stand_in = Receiver::start();
    let am_config = alertmanager_config(dir.path(), &stand_in.url());
    let alertmanager = Alertmanager::start(dir.path(), &am_config);
    std::fs::write(dir.path().join("rules.yml"), shortened_rules()).unwrap();
    let prom_config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files: [rules.yml]\nalerting:\n  alertmanagers:\n    - static_configs:\n        - targets: ['127.0.0.1:{}']\n{}",
        alertmanager.port,
        scrape_job(port)
    );
    let prometheus = Prometheus::start(dir.path(), &prom_config, &[]);

    // The series appears, Prometheus sees it, then stripe fails 30 more times: the increase over 5
    // minutes is past 5. globex's slack calls succeed.
    let failures = |n: usize| {
        (0..n)
            .map(|_| call("acme", "stripe", "failure"))
            .collect::<Vec<_>>()
    };
    broker.produce(&topic, &failures(2));
    broker.produce(&topic, &[call("globex", "slack", "success")]);
    wait_for(
        "the first failures in Prometheus",
        Duration::from_secs(60),
        || {
            let q = "hestyna_integration_failures_total{integration=\"stripe\"}";
            (prometheus.value(q) == Some(2.0)).then_some(())
        },
    );
    broker.produce(&topic, &failures(30));

    let slack = wait_for("the Slack notification", Duration::from_secs(90), || {
        let found = posted(&stand_in, "/slack/webhook");
        found
            .into_iter()
            .find(|p| p.to_string().contains("IntegrationFailures"))
    });
    assert_eq!(slack["channel"], "#automation-alerts", "{slack:#}");
    let text = slack["attachments"][0]["text"].as_str().unwrap();
    assert!(
        text.contains("*stripe failing repeatedly* (page)"),
        "{text}"
    );
    assert!(text.contains("for organization acme"), "{text}");
    assert!(
        text.contains(&format!("{RUNBOOK_URL}#integrationfailures")),
        "{text}"
    );
    let title = slack["attachments"][0]["title"].as_str().unwrap();
    assert!(
        title.contains("[FIRING:1] IntegrationFailures (acme)"),
        "{title}"
    );

    let page = wait_for("the PagerDuty event", Duration::from_secs(30), || {
        posted(&stand_in, "/pagerduty/v2/enqueue")
            .into_iter()
            .next()
    });
    assert_eq!(page["routing_key"], "test-routing-key-0123456789abcdef");
    assert_eq!(page["event_action"], "trigger");
    assert_eq!(page["payload"]["summary"], "stripe failing repeatedly");
    assert_eq!(page["payload"]["severity"], "critical");
    assert_eq!(page["payload"]["custom_details"]["organization"], "acme");
    let links = page["links"].to_string();
    assert!(links.contains("runbook.md#integrationfailures"), "{links}");
    // Only the page went to PagerDuty: nothing else was firing.
    let pages = posted(&stand_in, "/pagerduty/v2/enqueue");
    assert!(pages
        .iter()
        .all(|p| p["payload"]["summary"] == "stripe failing repeatedly"));
    let firing: Vec<Value> = prometheus.alerts();
    let names: BTreeSet<&str> = firing
        .iter()
        .filter_map(|a| a["labels"]["alertname"].as_str())
        .collect();
    assert!(!names.contains("HestynaObsdDown"), "{names:?}");
}

/// The inhibition rules, in a real Alertmanager: the daemon down, consuming nothing or lagging on the
/// metrics pipeline mutes the platform's alerts; its other alerts, and a lagging forward pipeline, mute
/// nothing.
#[test]
fn the_daemons_trouble_inhibits_the_signals_it_would_cause() {
    let dir = tempfile::tempdir().unwrap();
    let stand_in = Receiver::start();
    let alertmanager = Alertmanager::start(
        dir.path(),
        &alertmanager_config(dir.path(), &stand_in.url()),
    );
    let alert = |labels: Value| json!({"labels": labels, "annotations": {"summary": "test"}});
    let signal = |name: &str| {
        alert(
            json!({"alertname": name, "severity": "page", "organization": "acme", "integration": "stripe"}),
        )
    };
    let cases: [(Value, bool); 4] = [
        (
            alert(
                json!({"alertname": "HestynaObsdDown", "severity": "page", "job": "hestyna-obsd", "instance": "obsd-0:9464"}),
            ),
            true,
        ),
        (
            alert(
                json!({"alertname": "HestynaObsdConsumerLagHigh", "severity": "warning", "pipeline": "metrics", "topic": "t"}),
            ),
            true,
        ),
        (
            alert(
                json!({"alertname": "HestynaObsdConsumerLagHigh", "severity": "warning", "pipeline": "forward", "topic": "t"}),
            ),
            false,
        ),
        (
            alert(json!({"alertname": "HestynaObsdSinkDown", "severity": "page", "sink": "siem"})),
            false,
        ),
    ];
    for (source, inhibits) in cases {
        alertmanager.post_alerts(&json!([
            source,
            signal("IntegrationFailures"),
            signal("HestynaEventsStopped")
        ]));
        let status = |name: &str| -> Option<String> {
            let held = alertmanager.alerts();
            let found = held.iter().find(|a| a["labels"]["alertname"] == name)?;
            Some(found["status"]["state"].as_str()?.to_owned())
        };
        let want = if inhibits { "suppressed" } else { "active" };
        for target in ["IntegrationFailures", "HestynaEventsStopped"] {
            // Inhibition is evaluated as alerts arrive: poll until it settles.
            wait_for(
                &format!("{target} {want} under {}", source["labels"]),
                Duration::from_secs(10),
                || (status(target).as_deref() == Some(want)).then_some(()),
            );
        }
        assert_eq!(
            status(source["labels"]["alertname"].as_str().unwrap()).as_deref(),
            Some("active")
        );
        // Resolve the source before the next case.
        let mut resolved = source.clone();
        resolved["endsAt"] = json!(chrono::Utc::now().to_rfc3339());
        alertmanager.post_alerts(&json!([resolved]));
        wait_for("the source to resolve", Duration::from_secs(10), || {
            let name = source["labels"]["alertname"].as_str().unwrap();
            let held = alertmanager.alerts();
            let still = held.iter().any(|a| a["labels"] == source["labels"]);
            (!still || status(name).is_none()).then_some(())
        });
    }
}

/// The phase-2 events of the dashboard test, whose panel values the test knows.
fn known_events() -> Vec<Produced> {
    let mut e = Vec::new();
    e.extend((0..6).map(|_| llm("acme", "billing", "success", Some((120, 30)))));
    e.extend((0..2).map(|_| llm("acme", "billing", "failure", None)));
    e.extend((0..2).map(|_| llm("acme", "search", "timeout", None)));
    e.extend((0..4).map(|_| llm("globex", "billing", "success", Some((200, 100)))));
    e.extend((0..5).map(|_| call("acme", "stripe", "failure")));
    e.extend((0..2).map(|_| call("globex", "stripe", "failure")));
    e.extend((0..9).map(|_| call("globex", "slack", "success")));
    e.extend((0..3).map(|_| automation("acme", "success")));
    e.extend((0..1).map(|_| automation("acme", "failure")));
    e.extend((0..2).map(|_| resolved("globex")));
    e.push(Produced {
        key: None,
        payload: b"{not json".to_vec(),
        headers: Vec::new(),
    });
    e
}

/// Phase 1: every label set of [`known_events`] once, so that phase 2 is an increase Prometheus sees.
fn priming_events() -> Vec<Produced> {
    let mut e = Vec::new();
    for org in ["acme", "globex"] {
        e.push(llm(org, "billing", "success", Some((100, 50))));
        e.push(llm(org, "billing", "failure", None));
        e.push(llm(org, "search", "timeout", None));
        e.push(call(org, "stripe", "failure"));
        e.push(call(org, "stripe", "success"));
        e.push(call(org, "slack", "success"));
        e.push(automation(org, "success"));
        e.push(automation(org, "failure"));
        e.push(resolved(org));
    }
    e.push(Produced {
        key: None,
        payload: b"[1, 2]".to_vec(),
        headers: Vec::new(),
    });
    e
}

/// The timestamps (ms) of the samples Prometheus holds of the daemon's records-read counter, with their
/// values.
fn samples(prometheus: &Prometheus) -> Vec<(i64, f64)> {
    let q = "hestyna_obsd_events_received_total{pipeline=\"metrics\"}[10m]";
    let data = prometheus.query_at(q, None).unwrap_or_default();
    let values = data["result"][0]["values"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    values
        .iter()
        .map(|v| {
            let ms = (v[0].as_f64().unwrap() * 1000.0).round() as i64;
            (ms, v[1].as_str().unwrap().parse().unwrap())
        })
        .collect()
}

/// Waits until Prometheus has scraped `count` records read at least `scrapes` times: the timestamp of
/// the last such sample.
fn settled(prometheus: &Prometheus, count: f64, scrapes: usize) -> i64 {
    wait_for(
        &format!("{count} records in Prometheus"),
        Duration::from_secs(90),
        || {
            let s = samples(prometheus);
            let at: Vec<i64> = s
                .iter()
                .filter(|(_, v)| *v == count)
                .map(|(t, _)| *t)
                .collect();
            (at.len() >= scrapes).then(|| *at.last().unwrap())
        },
    )
}

/// A dashboard expression with its variables as Grafana substitutes them: every organization of the
/// test selected, All for the others.
fn substitute(expr: &str, range_ms: i64) -> String {
    expr.replace("$organization", "acme|globex")
        .replace("$intent", ".*")
        .replace("$integration", ".*")
        .replace("$__rate_interval", "15s")
        .replace("$__range", &format!("{range_ms}ms"))
}

#[test]
fn every_dashboard_and_rule_expression_returns_data_and_three_panels_are_exact() {
    let dir = tempfile::tempdir().unwrap();
    let (broker, topic, dlq) = broker_with_topics(1);
    let port = free_port();
    // A file sink, and an HTTPS one the daemon presents a client certificate to (its expiry is a series).
    let pki = common::pki::pki(dir.path());
    let siem = Receiver::start_tls(&pki.server_cert, &pki.server_key);
    let sinks = format!(
        "[forward.sinks.siem]\nkind = \"file\"\npath = \"{}\"\n\n[forward.sinks.https]\nkind = \"http\"\nurl = \"{}/ingest\"\ntls = {{ ca_file = \"{}\", cert_file = \"{}\", key_file = \"{}\" }}\n",
        dir.path().join("siem.jsonl").display(),
        siem.https_url(),
        pki.ca.display(),
        pki.client_cert.display(),
        pki.client_key.display()
    );
    let config = kafka_config_with_sinks(&broker, &topic, &unique("g"), &dlq, port, &sinks);
    let _daemon = Daemon::start_with(&config, dir.path(), port, "/readyz");
    std::fs::copy(repo(RULES), dir.path().join("rules.yml")).unwrap();
    let prom_config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files: [rules.yml]\n{}",
        scrape_job(port)
    );
    let prometheus = Prometheus::start(dir.path(), &prom_config, &[]);

    let (priming, known) = (priming_events(), known_events());
    broker.produce(&topic, &priming);
    let before = settled(&prometheus, priming.len() as f64, 3);
    broker.produce(&topic, &known);
    let after = settled(&prometheus, (priming.len() + known.len()) as f64, 20);
    let (range_ms, at) = (after - before, after as f64 / 1000.0);

    let d = dashboard();
    let mut problems = Vec::new();
    let mut panel_values = BTreeMap::new();
    for (place, expr) in dashboard_exprs(&d) {
        let query = substitute(&expr, range_ms);
        match prometheus.query_at(&query, Some(at)) {
            Err(e) => problems.push(format!("{place}: {e}\n  {query}")),
            Ok(data) => {
                let result = data["result"].as_array().cloned().unwrap_or_default();
                let alerting = place.starts_with("annotation") || expr.contains("== 0");
                if result.is_empty() && !alerting {
                    problems.push(format!("{place}: no data\n  {query}"));
                }
                if let Some(v) = result.first().and_then(|r| r["value"][1].as_str()) {
                    panel_values.insert(place, v.parse::<f64>().unwrap());
                }
            }
        }
    }
    for (variable, selector, label) in variable_queries(&d) {
        let selector = substitute(&selector, range_ms);
        let url = format!(
            "{}/api/v1/label/{label}/values?match[]={}",
            prometheus.url(),
            encode(&selector)
        );
        let values = get_json(&url)
            .map(|v| v["data"].clone())
            .unwrap_or_default();
        let want = match variable.as_str() {
            "organization" => json!(["acme", "globex"]),
            "intent" => json!(["billing", "search"]),
            "integration" => json!(["slack", "stripe"]),
            other => panic!("variable {other} has no expected values"),
        };
        if values != want {
            problems.push(format!("variable {variable}: {values} (want {want})"));
        }
    }
    check_rules_against(&prometheus, at, &mut problems);
    assert!(problems.is_empty(), "{}", problems.join("\n"));

    // What the known events imply: 10 of 14 runs succeeded; (6 x 150 + 4 x 300) tokens over 14 runs;
    // 7 failed calls.
    assert_eq!(panel_values["LLM success rate"], 10.0 / 14.0);
    assert_eq!(panel_values["Average tokens per run"], 150.0);
    assert_eq!(panel_values["Integration failures"], 7.0);
}

/// Every recording rule returns data; every alert's expression runs, and each family it reads has
/// series in Prometheus.
fn check_rules_against(prometheus: &Prometheus, at: f64, problems: &mut Vec<String>) {
    for (_, rule) in rules() {
        let expr = rule["expr"].as_str().unwrap();
        if let Some(record) = rule["record"].as_str() {
            let found = prometheus.query_at(record, Some(at));
            if found
                .map(|d| d["result"].as_array().unwrap().is_empty())
                .unwrap_or(true)
            {
                problems.push(format!("recording rule {record}: no data"));
            }
            continue;
        }
        let alert = rule["alert"].as_str().unwrap();
        if let Err(e) = prometheus.query_at(expr, Some(at)) {
            problems.push(format!("alert {alert}: {e}"));
        }
        for family in families_read(expr) {
            let present = format!("count({{__name__=\"{family}\", job=\"hestyna-obsd\"}})");
            if prometheus
                .query_at(&present, Some(at))
                .map(|d| d["result"][0].is_null())
                .unwrap_or(true)
            {
                problems.push(format!("alert {alert}: no series of {family}"));
            }
        }
    }
}
