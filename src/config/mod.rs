//! Config: the daemon's settings, from a TOML file layered with `HESTYNA_OBSD__SECTION__KEY` environment
//! variables.
//!
//! Every key is documented on its field here and in `config/default.toml`, whose values are the defaults
//! (a test keeps the two equal). Unknown keys are refused. Loading reports every fault at once, each with
//! its key path, rather than stopping at the first: see [`load`].

mod duration;
mod forward;
mod validate;

pub use forward::*;

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use std::time::Duration;
pub use validate::{Faults, Issue};

/// The embedded default configuration (`config/demo.toml`): generator source, `/metrics` on loopback with
/// demo credentials, SIEM records to a local file.
pub const DEMO_CONFIG: &str = include_str!("../../config/demo.toml");

/// The prefix of environment overrides: `HESTYNA_OBSD__KAFKA__BROKERS` sets `kafka.brokers`.
pub const ENV_PREFIX: &str = "HESTYNA_OBSD";

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    /// The configuration file cannot be read.
    ReadFile {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    #[error("cannot parse the configuration: {0}")]
    /// The configuration is not TOML, or an override is not usable.
    Parse(#[from] config::ConfigError),
    #[error("invalid configuration ({origin}):\n{}", .issues.iter().map(|i| format!("  - {i}")).collect::<Vec<_>>().join("\n"))]
    /// Keys are missing, unknown or wrong.
    Invalid {
        /// Where the configuration came from (its file, or the embedded demo).
        origin: String,
        /// Every fault, with its key path.
        issues: Vec<Issue>,
    },
}

/// Every setting of the daemon.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where events come from.
    pub source: SourceConfig,
    /// The Kafka cluster: used by the kafka source, the kafka dead-letter destination and `generate`.
    pub kafka: KafkaConfig,
    /// The two pipelines, each its own consumer group.
    pub pipelines: PipelinesConfig,
    /// The derived series and the intake join.
    pub metrics: MetricsConfig,
    /// Where invalid records go.
    pub dead_letter: DeadLetterConfig,
    /// The HTTP listener (`/metrics`, `/livez`, `/readyz`).
    pub http: HttpConfig,
    /// SIEM forwarding.
    pub forward: ForwardConfig,
    /// The daemon's own logs.
    pub telemetry: TelemetryConfig,
    /// Stopping.
    pub shutdown: ShutdownConfig,
}

/// Which source feeds the pipelines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    /// Kafka topics (`kafka.*`), one consumer group per pipeline.
    #[default]
    Kafka,
    /// A JSONL file or stdin (`source.file`).
    File,
    /// Synthetic events (`source.generator`).
    Generator,
}

/// `[source]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SourceConfig {
    /// `kafka`, `file` or `generator`.
    pub kind: SourceKind,
    /// A batch is cut at this many records...
    pub batch_max_records: usize,
    /// ...or once its first record has waited this many milliseconds (`batch_max_wait_ms`).
    #[serde(rename = "batch_max_wait_ms", with = "duration::millis")]
    pub batch_max_wait: Duration,
    /// Batches buffered between the source and each pipeline; when full, Kafka partitions are paused.
    pub queue_batches: usize,
    /// `[source.file]`.
    pub file: FileSourceConfig,
    /// `[source.generator]`.
    pub generator: GeneratorConfig,
}

impl Default for SourceConfig {
    fn default() -> Self {
        SourceConfig {
            kind: SourceKind::Kafka,
            batch_max_records: 1024,
            batch_max_wait: Duration::from_millis(50),
            queue_batches: 8,
            file: FileSourceConfig::default(),
            generator: GeneratorConfig::default(),
        }
    }
}

/// `[source.file]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileSourceConfig {
    /// The JSONL file to read, `-` for stdin.
    pub path: String,
}

impl Default for FileSourceConfig {
    fn default() -> Self {
        FileSourceConfig { path: "-".into() }
    }
}

/// `[source.generator]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GeneratorConfig {
    /// Events per second; 0 for as fast as possible.
    pub rate: f64,
    /// How many events; 0 for no end.
    pub count: u64,
    /// Seed: the same seed and start give the same events.
    pub seed: u64,
    /// How many organizations the events spread over.
    pub organizations: usize,
    /// Share of invalid records (0 to 1).
    pub invalid_ratio: f64,
    /// Share of events of an unknown type (0 to 1).
    pub unknown_ratio: f64,
    /// `occurred_at` of the first event, RFC 3339; empty for the time of start.
    pub start: String,
}

impl Default for GeneratorConfig {
    fn default() -> Self {
        GeneratorConfig {
            rate: 200.0,
            count: 0,
            seed: 1,
            organizations: 8,
            invalid_ratio: 0.01,
            unknown_ratio: 0.005,
            start: String::new(),
        }
    }
}

/// `[kafka]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// Bootstrap servers, `host:port` separated by commas. Required when Kafka is used.
    pub brokers: String,
    /// Topics the kafka source subscribes to.
    pub topics: Vec<String>,
    /// librdkafka properties for every client, passed through verbatim (SASL, TLS, tuning).
    pub properties: BTreeMap<String, String>,
    /// librdkafka properties for the consumers only (over `properties`).
    pub consumer_properties: BTreeMap<String, String>,
    /// librdkafka properties for the producers only (dead letters, `generate`; over `properties`).
    pub producer_properties: BTreeMap<String, String>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: String::new(),
            topics: vec!["hestyna.events".into()],
            properties: BTreeMap::new(),
            consumer_properties: BTreeMap::new(),
            producer_properties: BTreeMap::new(),
        }
    }
}

/// The librdkafka consumer properties hestyna-obsd sets itself, which the configuration may not: the
/// offset invariant rests on them (see [`KafkaConfig::consumer_properties`]).
pub const MANAGED_CONSUMER_PROPERTIES: [&str; 4] = [
    "bootstrap.servers",
    "group.id",
    "enable.auto.offset.store",
    "enable.auto.commit",
];

impl KafkaConfig {
    /// `properties` then `consumer_properties`.
    pub fn consumer_overrides(&self) -> Vec<(String, String)> {
        merged(&self.properties, &self.consumer_properties)
    }

    /// The librdkafka configuration of a consumer in `group_id`: our defaults, then the configured
    /// overrides, then the [`MANAGED_CONSUMER_PROPERTIES`], which nothing overrides (offsets are
    /// stored by hand, only after processing, and committed by librdkafka).
    pub fn consumer_properties(&self, group_id: &str) -> Vec<(String, String)> {
        let mut props: Vec<(String, String)> = [
            ("auto.offset.reset", "earliest"),
            ("enable.partition.eof", "false"),
            ("statistics.interval.ms", "5000"),
            ("fetch.wait.max.ms", "100"),
            // librdkafka prefetches up to 64 MiB and 100,000 records a partition per consumer by default,
            // and a fetch answer may be 50 MiB; a daemon runs two consumers. With 16 MiB and the rest as
            // librdkafka ships them, the memory soak saw up to 92 MiB prefetched after a pause (RSS
            // 210 MiB with 67 MiB of heap in use). 4 MiB and 10,000 records still hold about 20 ms of
            // the fastest replay, many fetches' worth.
            ("queued.max.messages.kbytes", "4096"),
            ("queued.min.messages", "10000"),
            ("fetch.max.bytes", "4194304"),
            // A consumer whose queue reached those bounds fetches again only after this; librdkafka's
            // 1,000 ms held a bare consumer of tansu to 48,000 records/s with the bounds above (1.48M/s
            // with librdkafka's own bounds, 906,000/s with these bounds and 10 ms; 200,000 records, by hand).
            ("fetch.queue.backoff.ms", "10"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .to_vec();
        let values = [self.brokers.as_str(), group_id, "false", "true"];
        let managed = MANAGED_CONSUMER_PROPERTIES
            .iter()
            .zip(values)
            .map(|(k, v)| (k.to_string(), v.to_string()));
        let user = self.consumer_overrides();
        for (k, v) in user.into_iter().chain(managed) {
            props.retain(|(key, _)| *key != k);
            props.push((k, v));
        }
        props
    }

    /// `bootstrap.servers`, then `properties`, then `producer_properties`.
    pub fn producer_properties(&self) -> Vec<(String, String)> {
        let mut props = vec![("bootstrap.servers".to_string(), self.brokers.clone())];
        for (k, v) in merged(&self.properties, &self.producer_properties) {
            props.retain(|(key, _)| *key != k);
            props.push((k, v));
        }
        props
    }
}

fn merged(
    base: &BTreeMap<String, String>,
    over: &BTreeMap<String, String>,
) -> Vec<(String, String)> {
    let mut all = base.clone();
    all.extend(over.iter().map(|(k, v)| (k.clone(), v.clone())));
    all.into_iter().collect()
}

/// `[pipelines]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PipelinesConfig {
    /// decode -> derive; dead-letters invalid records.
    pub metrics: PipelineConfig,
    /// decode -> enrich -> sinks.
    pub forward: PipelineConfig,
}

impl Default for PipelinesConfig {
    fn default() -> Self {
        PipelinesConfig {
            metrics: PipelineConfig {
                enabled: true,
                group_id: "hestyna-obsd-metrics".into(),
            },
            forward: PipelineConfig {
                enabled: true,
                group_id: "hestyna-obsd-forward".into(),
            },
        }
    }
}

/// `[pipelines.metrics]`, `[pipelines.forward]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineConfig {
    /// Whether the pipeline runs (a sidecar may want only metrics).
    pub enabled: bool,
    /// Its Kafka consumer group; replicas with the same group share the partitions.
    pub group_id: String,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            enabled: true,
            group_id: String::new(),
        }
    }
}

/// `[metrics]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// The derived series, one `[[metrics.rules]]` table each. Setting this list replaces the default
    /// Hestyna set (listed in config/default.toml); to keep it and add series, use `extra_rules`.
    pub rules: Vec<crate::derive::RuleSpec>,
    /// Rules added after `rules`.
    pub extra_rules: Vec<crate::derive::RuleSpec>,
    /// `[metrics.intake_join]`.
    pub intake_join: IntakeJoinConfig,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            rules: crate::derive::default_rules(),
            extra_rules: Vec::new(),
            intake_join: IntakeJoinConfig::default(),
        }
    }
}

impl MetricsConfig {
    /// The key path of `key` in the `index`th rule of [`Self::all_rules`].
    pub fn rule_path(&self, index: usize, key: &str) -> String {
        match index.checked_sub(self.rules.len()) {
            None => format!("metrics.rules.{index}.{key}"),
            Some(extra) => format!("metrics.extra_rules.{extra}.{key}"),
        }
    }

    /// `rules` then `extra_rules`.
    pub fn all_rules(&self) -> Vec<crate::derive::RuleSpec> {
        self.rules
            .iter()
            .chain(&self.extra_rules)
            .cloned()
            .collect()
    }
}

/// `[metrics.intake_join]`: a `resolved` event without `intake_at` takes the time of the request's
/// `intake` event seen earlier.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IntakeJoinConfig {
    /// Whether to keep pending intakes and join them.
    pub enabled: bool,
    /// At most this many pending intakes; the oldest is evicted first (counted).
    pub max_entries: usize,
    /// Pending intakes older than this many seconds are evicted (counted) (`ttl_secs`).
    #[serde(rename = "ttl_secs", with = "duration::secs")]
    pub ttl: Duration,
    /// With the kafka source: the compacted topic that persists the state per input partition (created
    /// when missing). It survives restarts and follows a partition to another replica.
    pub changelog_topic: String,
}

impl Default for IntakeJoinConfig {
    fn default() -> Self {
        IntakeJoinConfig {
            enabled: true,
            max_entries: 1_000_000,
            ttl: Duration::from_secs(30 * 86_400),
            changelog_topic: "hestyna-obsd.intake-changelog".into(),
        }
    }
}

/// Where dead letters go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeadLetterKind {
    /// A Kafka topic (`dead_letter.topic` on `kafka.brokers`).
    #[default]
    Kafka,
    /// A JSONL file (`dead_letter.path`).
    File,
}

/// `[dead_letter]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeadLetterConfig {
    /// `kafka` or `file`.
    pub kind: DeadLetterKind,
    /// The dead-letter topic (kind `kafka`). Must not be one of `kafka.topics`.
    pub topic: String,
    /// The dead-letter file (kind `file`).
    pub path: PathBuf,
}

impl Default for DeadLetterConfig {
    fn default() -> Self {
        DeadLetterConfig {
            kind: DeadLetterKind::Kafka,
            topic: "hestyna.events.dlq".into(),
            path: PathBuf::from("dead-letter.jsonl"),
        }
    }
}

/// `[http]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Address of the listener.
    pub listen: SocketAddr,
    /// User name -> bcrypt hash (`hestyna-obsd hash-password`) of the users allowed to read `/metrics`.
    pub basic_auth_users: BTreeMap<String, String>,
    /// Serve `/metrics` with no credentials on a non-loopback address. Off: the daemon refuses to start.
    pub allow_unauthenticated: bool,
    /// A Prometheus exporter-toolkit web configuration file (TLS, mTLS, basic auth users, response
    /// headers) with hestyna-obsd's extensions (bearer tokens, organization scopes, allowed networks,
    /// trusted proxies). Re-read on SIGHUP and on change. Replaces `basic_auth_users`.
    pub web_config_file: Option<PathBuf>,
    /// A second, plain listener serving only `/livez` and `/readyz` (for probes when the main listener
    /// needs client certificates). They stay on the main listener too.
    pub health_listen: Option<SocketAddr>,
}

impl HttpConfig {
    /// Whether `/metrics` must be protected: it listens off loopback and unauthenticated access was not
    /// asked for. The one rule, used at start-up and on every reload of the web configuration.
    pub fn must_protect(&self) -> bool {
        !self.listen.ip().is_loopback() && !self.allow_unauthenticated
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], 9464)),
            basic_auth_users: BTreeMap::new(),
            allow_unauthenticated: false,
            web_config_file: None,
            health_listen: None,
        }
    }
}

/// `[telemetry]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// `text` or `json`.
    pub log_format: crate::telemetry::LogFormat,
    /// A `tracing` filter (`info`, `hestyna_obsd=debug,rdkafka=warn`); `RUST_LOG` overrides it.
    pub log_level: String,
    /// `[telemetry.tracing]`: the daemon's own spans over OTLP; the `OTEL_*` variables win.
    pub tracing: crate::telemetry::otel::TracingConfig,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig {
            log_format: crate::telemetry::LogFormat::Text,
            log_level: "info".into(),
            tracing: Default::default(),
        }
    }
}

/// `[shutdown]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShutdownConfig {
    /// On SIGTERM/SIGINT, how long in-flight records may take before the final commit
    /// (`drain_timeout_secs`).
    #[serde(rename = "drain_timeout_secs", with = "duration::secs")]
    pub drain_timeout: Duration,
    /// On a partition revoke, how long in-flight records of that partition may take before it is given
    /// up (`revoke_drain_ms`).
    #[serde(rename = "revoke_drain_ms", with = "duration::millis")]
    pub revoke_drain: Duration,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        ShutdownConfig {
            drain_timeout: Duration::from_secs(30),
            revoke_drain: Duration::from_millis(5000),
        }
    }
}

/// Loads `path` (or the embedded demo configuration), applies the process's `HESTYNA_OBSD__*` variables,
/// and validates.
pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
    load_with(path, &[])
}

/// [`load`], with `overrides` (key path, value) applied over everything before validation (`replay`
/// sets the source to its file).
pub fn load_with(path: Option<&Path>, overrides: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let (text, origin) = match path {
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|source| ConfigError::ReadFile {
                path: p.display().to_string(),
                source,
            })?;
            (text, p.display().to_string())
        }
        None => (
            DEMO_CONFIG.to_owned(),
            "embedded config/demo.toml".to_owned(),
        ),
    };
    let env: std::collections::HashMap<String, String> = std::env::vars()
        .filter(|(k, _)| k.starts_with(&format!("{ENV_PREFIX}__")))
        .collect();
    from_parts_with(&text, &origin, env, overrides)
}

/// Loads from TOML text and an explicit set of environment variables (for tests).
pub fn from_parts(
    toml_text: &str,
    origin: &str,
    env: std::collections::HashMap<String, String>,
) -> Result<Config, ConfigError> {
    from_parts_with(toml_text, origin, env, &[])
}

fn from_parts_with(
    toml_text: &str,
    origin: &str,
    env: std::collections::HashMap<String, String>,
    overrides: &[(&str, &str)],
) -> Result<Config, ConfigError> {
    let mut builder = config::Config::builder()
        .add_source(config::File::from_str(toml_text, config::FileFormat::Toml))
        .add_source(
            config::Environment::with_prefix(ENV_PREFIX)
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true)
                .list_separator(",")
                .with_list_parse_key("kafka.topics")
                .source(Some(env)),
        );
    for (key, value) in overrides {
        builder = builder.set_override(*key, *value)?;
    }
    let layered = builder.build()?;
    let tree: serde_json::Value = layered.try_deserialize()?;
    validate::deserialize_and_check(tree).map_err(|issues| ConfigError::Invalid {
        origin: origin.to_owned(),
        issues,
    })
}

/// A copy with secrets replaced, for printing.
pub fn masked(config: &Config) -> Config {
    let mut out = config.clone();
    let secretish = |key: &str| {
        let k = key.to_ascii_lowercase();
        crate::shared::names_a_secret(key)
            || ["password", "secret", "token", "jaas", "private", ".key"]
                .iter()
                .any(|s| k.contains(s))
            || k.ends_with("key")
    };
    for map in [
        &mut out.kafka.properties,
        &mut out.kafka.consumer_properties,
        &mut out.kafka.producer_properties,
    ] {
        for (k, v) in map.iter_mut() {
            if secretish(k) {
                *v = "***".into();
            }
        }
    }
    for hash in out.http.basic_auth_users.values_mut() {
        *hash = "*** (bcrypt hash)".into();
    }
    let mask_secret = |secret: &mut Option<SecretConfig>| {
        if let Some(SecretConfig { value: Some(v), .. }) = secret {
            *v = "***".into();
        }
    };
    mask_secret(&mut out.forward.redaction.hmac_key);
    // OTLP headers carry API keys whatever their name.
    for v in out.telemetry.tracing.headers.values_mut() {
        *v = "***".into();
    }
    if let Some(endpoint) = &mut out.telemetry.tracing.endpoint {
        *endpoint = crate::shared::mask_url(endpoint);
    }
    for sink in out.forward.sinks.values_mut() {
        match sink {
            SinkConfig::Http(http) => {
                mask_secret(&mut http.auth.secret);
                http.url = crate::shared::mask_url(&http.url);
                for (k, v) in http.headers.iter_mut() {
                    if secretish(k) {
                        *v = "***".into();
                    }
                }
            }
            SinkConfig::Kafka(kafka) => {
                for (k, v) in kafka.properties.iter_mut() {
                    if secretish(k) {
                        *v = "***".into();
                    }
                }
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests;
