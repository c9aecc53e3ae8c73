use super::*;
use std::collections::{BTreeSet, HashMap};

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn issues(toml: &str, vars: &[(&str, &str)]) -> Vec<Issue> {
    match from_parts(toml, "test", env(vars)) {
        Err(ConfigError::Invalid { issues, .. }) => issues,
        other => panic!("expected invalid, got {other:?}"),
    }
}

fn paths(issues: &[Issue]) -> Vec<&str> {
    issues.iter().map(|i| i.path.as_str()).collect()
}

const DEFAULT_TOML: &str = include_str!("../../config/default.toml");

#[test]
fn default_toml_documents_exactly_the_defaults() {
    let tree: serde_json::Value = config::Config::builder()
        .add_source(config::File::from_str(
            DEFAULT_TOML,
            config::FileFormat::Toml,
        ))
        .build()
        .unwrap()
        .try_deserialize()
        .unwrap();
    // Every key of the defaults is written in the file: `#[serde(default)]` would hide a missing one
    // from the equality below. A key without a default (an `Option`, absent) cannot be written in TOML:
    // it must be shown commented out (`# key = ...`).
    let written = key_paths(&tree).0;
    let (defaults, optional) = key_paths(&serde_json::to_value(Config::default()).unwrap());
    let missing: Vec<&String> = defaults.difference(&written).collect();
    assert!(
        missing.is_empty(),
        "keys missing from config/default.toml: {missing:?}"
    );
    for key in optional {
        let leaf = key.rsplit('.').next().unwrap();
        assert!(
            DEFAULT_TOML.contains(&format!("# {leaf} =")),
            "{key} is not shown in config/default.toml"
        );
    }
    let parsed: Config = serde_json::from_value(tree).unwrap();
    assert_eq!(parsed, Config::default());
}

/// The key paths of a tree that hold a value, and those that are null.
fn key_paths(tree: &serde_json::Value) -> (BTreeSet<String>, BTreeSet<String>) {
    fn walk(v: &serde_json::Value, at: &str, out: &mut (BTreeSet<String>, BTreeSet<String>)) {
        let serde_json::Value::Object(map) = v else {
            return;
        };
        for (k, v) in map {
            let path = if at.is_empty() {
                k.clone()
            } else {
                format!("{at}.{k}")
            };
            match v.is_null() {
                true => out.1.insert(path.clone()),
                false => out.0.insert(path.clone()),
            };
            walk(v, &path, out);
        }
    }
    let mut out = Default::default();
    walk(tree, "", &mut out);
    out
}

#[test]
fn every_sink_kind_is_documented_with_every_key() {
    // config/default.toml shows each sink kind in an example (commented out but for stdout); each must
    // parse and name every key of its kind, so that a new key cannot be left out of the reference.
    // `batch` and `retry` are the same for every kind: written out once, in the file example.
    let examples = sink_examples(DEFAULT_TOML);
    let kinds: Vec<&str> = examples.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        kinds,
        ["stdout", "file", "http", "syslog", "kafka"],
        "{examples:#?}"
    );
    let shared = |k: &String| k.starts_with("batch") || k.starts_with("retry");
    for (kind, text) in &examples {
        let sink: SinkConfig =
            toml::from_str(text).unwrap_or_else(|e| panic!("{kind}: {e}\n{text}"));
        let (full, optional) = key_paths(&serde_json::to_value(&sink).unwrap());
        let table: toml::Value = toml::from_str(text).unwrap();
        let (written, _) = key_paths(&serde_json::to_value(table).unwrap());
        let missing: Vec<&String> = full
            .iter()
            .chain(&optional)
            .filter(|k| !written.contains(*k) && (kind == "file" || !shared(k)))
            .filter(|k| !raw_mentions(text, k))
            .collect();
        assert!(
            missing.is_empty(),
            "sink kind {kind}: keys missing from its example: {missing:?}"
        );
    }
}

/// Whether the reference's example of a sink shows the optional key `key` (`leaf =`) in a comment.
fn raw_mentions(example: &str, key: &str) -> bool {
    let leaf = key.rsplit('.').next().unwrap();
    let start = DEFAULT_TOML
        .find(example.lines().nth(1).unwrap_or(example))
        .unwrap_or(0);
    let block = &DEFAULT_TOML[start..];
    let block = &block[..block.find("\n\n").unwrap_or(block.len())];
    block.contains(&format!("{leaf} ="))
}

/// The sink examples of the reference: the lines after each `[forward.sinks.<x>]` (commented or not),
/// uncommented, with their `kind`, up to the next blank line.
fn sink_examples(text: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        let body = match line.strip_prefix("# ") {
            Some(b) => Some(b),
            None if !line.trim().is_empty() && !line.starts_with('#') => Some(line),
            None => None,
        };
        // An inline comment after a value is not part of it.
        let body = body.map(|b| b.split("  #").next().unwrap_or(b).trim_end());
        match body {
            Some(b)
                if b.starts_with("[forward.sinks.") && !b.contains("].") && b.ends_with(']') =>
            {
                current = Some(String::new());
            }
            Some(b) if current.is_some() => {
                let table = current.as_mut().expect("checked");
                // Sub-tables of the example: `[forward.sinks.x.auth]` -> `[auth]`.
                let b = match b.strip_prefix("[forward.sinks.") {
                    Some(rest) => format!("[{}", rest.split_once('.').map_or(rest, |(_, r)| r)),
                    None => b.to_owned(),
                };
                table.push_str(&b);
                table.push('\n');
            }
            _ => {
                if let Some(table) = current.take() {
                    let kind = toml::from_str::<toml::Value>(&table)
                        .ok()
                        .and_then(|v| v.get("kind").and_then(|k| k.as_str()).map(String::from))
                        .unwrap_or_default();
                    out.push((kind, table));
                }
            }
        }
    }
    out
}

#[test]
fn the_demo_config_is_valid() {
    let config = from_parts(DEMO_CONFIG, "demo", HashMap::new()).unwrap();
    assert_eq!(config.source.kind, SourceKind::Generator);
    assert!(config.http.listen.ip().is_loopback());
}

#[test]
fn the_default_needs_a_broker_list() {
    let found = issues(DEFAULT_TOML, &[]);
    // The reference also listens on every address without credentials: that is refused when the
    // listener is set up (`app::Inputs`), not here.
    assert_eq!(paths(&found), vec!["kafka.brokers"]);
    assert!(
        found[0].message.contains("missing broker list"),
        "{}",
        found[0]
    );
}

#[test]
fn environment_overrides_keys_and_lists() {
    let config = from_parts(
        DEFAULT_TOML,
        "test",
        env(&[
            ("HESTYNA_OBSD__KAFKA__BROKERS", "k1:9092,k2:9092"),
            ("HESTYNA_OBSD__KAFKA__TOPICS", "a,b"),
            ("HESTYNA_OBSD__SOURCE__BATCH_MAX_RECORDS", "10"),
            ("HESTYNA_OBSD__HTTP__LISTEN", "127.0.0.1:9000"),
        ]),
    )
    .unwrap();
    assert_eq!(config.kafka.brokers, "k1:9092,k2:9092");
    assert_eq!(config.kafka.topics, vec!["a", "b"]);
    assert_eq!(config.source.batch_max_records, 10);
    assert_eq!(config.http.listen.port(), 9000);
}

#[test]
fn every_fault_is_reported_at_once_with_its_path() {
    let toml = r#"
        [source]
        kind = "kafka"
        batch_max_records = "many"
        bogus = 1
        [kafka]
        brokers = ""
        [http]
        listen = "not an address"
        [http.basic_auth_users]
        ops = "plaintext"
        [forward.sinks.siem]
        kind = "file"
        paht = "x"
    "#;
    let found = issues(toml, &[]);
    let mut p = paths(&found);
    p.sort();
    assert_eq!(
        p,
        vec![
            "forward.sinks.siem",
            "forward.sinks.siem.paht",
            "http.basic_auth_users.ops",
            "http.listen",
            "kafka.brokers",
            "source.batch_max_records",
            "source.bogus",
        ],
        "{found:#?}"
    );
    let by_path = |path: &str| {
        found
            .iter()
            .find(|i| i.path == path)
            .unwrap()
            .message
            .clone()
    };
    assert!(
        by_path("source.bogus").starts_with("unknown key"),
        "{}",
        by_path("source.bogus")
    );
    assert!(
        by_path("source.batch_max_records").contains("invalid type"),
        "{}",
        by_path("source.batch_max_records")
    );
}

#[test]
fn case_of_map_keys_is_kept() {
    let toml = "[source]\nkind = \"generator\"\n[dead_letter]\nkind = \"file\"\n[http]\nlisten = \"127.0.0.1:9464\"\n\
                [http.basic_auth_users]\nOpsTeam = \"$2b$10$eQyad8Rv465T2dIJ0GV52e1L0ONSi.4kEVHP4l9UK6eQzUiD1qf.u\"\n";
    let config = from_parts(toml, "test", HashMap::new()).unwrap();
    assert!(
        config.http.basic_auth_users.contains_key("OpsTeam"),
        "{:?}",
        config.http.basic_auth_users
    );
}

#[test]
fn dotted_librdkafka_keys_stay_whole() {
    let toml = format!("{DEMO_CONFIG}\n[kafka.properties]\n\"security.protocol\" = \"SASL_SSL\"\n\"sasl.password\" = \"hunter2\"\n");
    let config = from_parts(&toml, "test", HashMap::new()).unwrap();
    assert_eq!(
        config
            .kafka
            .properties
            .get("security.protocol")
            .map(String::as_str),
        Some("SASL_SSL")
    );
    let masked = masked(&config);
    assert_eq!(masked.kafka.properties["sasl.password"], "***");
    assert_eq!(masked.kafka.properties["security.protocol"], "SASL_SSL");
}

#[test]
fn managed_kafka_properties_are_refused() {
    let toml =
        format!("{DEMO_CONFIG}\n[kafka.properties]\n\"enable.auto.offset.store\" = \"true\"\n");
    assert_eq!(
        paths(&issues(&toml, &[])),
        vec!["kafka.properties.enable.auto.offset.store"]
    );
}

#[test]
fn a_user_can_come_from_the_environment() {
    // As in docker/kubernetes.yaml: the hash from a Secret, the user name in the variable's name.
    let hash = "$2b$10$eQyad8Rv465T2dIJ0GV52e1L0ONSi.4kEVHP4l9UK6eQzUiD1qf.u";
    let config = from_parts(
        "[source]\nkind = \"generator\"\n[dead_letter]\nkind = \"file\"\n",
        "test",
        env(&[("HESTYNA_OBSD__HTTP__BASIC_AUTH_USERS__PROMETHEUS", hash)]),
    )
    .unwrap();
    assert_eq!(
        config
            .http
            .basic_auth_users
            .get("prometheus")
            .map(String::as_str),
        Some(hash)
    );
}

#[test]
fn a_numeric_secret_from_the_environment_is_not_echoed_in_its_type_error() {
    let found = from_parts(
        DEMO_CONFIG,
        "test",
        env(&[
            (
                "HESTYNA_OBSD__FORWARD__REDACTION__HMAC_KEY__VALUE",
                "918273645",
            ),
            ("HESTYNA_OBSD__SOURCE__BATCH_MAX_RECORDS", "many"),
        ]),
    )
    .map(|_| ())
    .unwrap_err()
    .to_string();
    assert!(
        found.contains("forward.redaction.hmac_key.value"),
        "{found}"
    );
    assert!(!found.contains("918273645"), "{found}");
    // Values under keys that are not secrets are still quoted, to say what was wrong.
    assert!(
        found.contains("\"many\"") || found.contains("`many`"),
        "{found}"
    );
}

#[test]
fn sink_urls_and_auth_headers_are_masked_for_printing() {
    let toml = format!(
        "{DEMO_CONFIG}\n[forward.sinks.secure]\nkind = \"http\"\nurl = \"https://u:pw-1@siem.example/in?token=tk-2&index=main\"\nheaders = {{ \"Proxy-Authorization\" = \"Basic px-3\", \"X-Hestyna-Auth\" = \"xa-4\", \"X-Splunk-Request-Channel\" = \"ch\" }}\n"
    );
    let config = from_parts(&toml, "test", HashMap::new()).unwrap();
    let shown = format!("{:?}", masked(&config));
    for secret in ["pw-1", "tk-2", "px-3", "xa-4"] {
        assert!(!shown.contains(secret), "{secret}: {shown}");
    }
    assert!(shown.contains("https://***@siem.example/in?token=***&index=main"));
    assert!(shown.contains("\"ch\""), "a plain header is shown");
    let described = config.forward.sinks["secure"].describe();
    assert!(
        !described.contains("pw-1") && !described.contains("tk-2"),
        "{described}"
    );
}

#[test]
fn otlp_headers_and_the_collectors_credentials_are_masked_for_printing() {
    let toml = format!(
        "{DEMO_CONFIG}\n[telemetry.tracing]\nendpoint = \"https://u:pw-5@collector.example:4318\"\nheaders = {{ \"x-honeycomb-team\" = \"hk-6\", \"plain\" = \"pl-7\" }}\n"
    );
    let config = from_parts(&toml, "test", HashMap::new()).unwrap();
    let shown = format!("{:?}", masked(&config));
    for secret in ["pw-5", "hk-6", "pl-7"] {
        assert!(!shown.contains(secret), "{secret}: {shown}");
    }
    assert!(shown.contains("collector.example:4318"), "{shown}");
}

#[test]
fn consumers_prefetch_within_bounds_and_fetch_again_soon_after_reaching_them() {
    let mut kafka = KafkaConfig {
        brokers: "127.0.0.1:9092".into(),
        ..Default::default()
    };
    let value = |kafka: &KafkaConfig, key: &str| {
        let props = kafka.consumer_properties("g");
        let found: Vec<String> = props
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .collect();
        assert_eq!(found.len(), 1, "{key} given once: {props:?}");
        found[0].clone()
    };
    assert_eq!(value(&kafka, "queued.max.messages.kbytes"), "4096");
    assert_eq!(value(&kafka, "queued.min.messages"), "10000");
    assert_eq!(value(&kafka, "fetch.max.bytes"), "4194304");
    assert_eq!(value(&kafka, "fetch.queue.backoff.ms"), "10");
    kafka
        .consumer_properties
        .insert("fetch.queue.backoff.ms".into(), "50".into());
    kafka
        .consumer_properties
        .insert("group.id".into(), "not-this".into());
    assert_eq!(value(&kafka, "fetch.queue.backoff.ms"), "50");
    assert_eq!(value(&kafka, "group.id"), "g", "managed keys win");
}
