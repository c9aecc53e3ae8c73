use super::*;
use std::collections::HashMap;

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
    let parsed: Config = serde_json::from_value(tree).unwrap();
    assert_eq!(parsed, Config::default());
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
    // The reference listens on every address, so it also needs credentials: both are the operator's call.
    assert_eq!(
        paths(&found),
        vec!["kafka.brokers", "http.basic_auth_users"]
    );
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
fn open_metrics_off_loopback_needs_an_explicit_yes() {
    let toml = "[source]\nkind = \"generator\"\n[dead_letter]\nkind = \"file\"\n[http]\nlisten = \"0.0.0.0:9464\"\n";
    assert_eq!(paths(&issues(toml, &[])), vec!["http.basic_auth_users"]);
    let open = format!("{toml}allow_unauthenticated = true\n");
    from_parts(&open, "test", HashMap::new()).unwrap();
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
