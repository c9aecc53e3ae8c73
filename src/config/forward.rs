//! `[forward]`: enrichment, redaction and the SIEM sinks.

use super::duration::{millis, secs};
use super::Faults;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// `[forward]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ForwardConfig {
    /// Sink name -> sink. Every record goes to every sink; its offset is stored when all of them are done
    /// with it (accepted, or rejected for good and dead-lettered).
    pub sinks: BTreeMap<String, SinkConfig>,
    /// Written as `service.name` on every record.
    pub service_name: String,
    /// Written as `environment` on every record (empty: left out).
    pub environment: String,
    /// `trace_url` of every record with a trace: `{trace_id}`, `{span_id}` and `{organization}` are
    /// replaced (percent-encoded). Empty: no `trace_url`.
    pub trace_url_template: String,
    /// A CSV file `organization,name,tier` (with that header): adds `organization_name` and
    /// `organization_tier` to records of the organizations it lists. Re-read when it changes.
    pub organizations_file: Option<PathBuf>,
    /// Forward invalid records too (`event.outcome = "invalid"`, `event.reason`, `error.message`, the
    /// bytes as received), besides dead-lettering them.
    pub forward_invalid: bool,
    /// `[forward.redaction]`.
    pub redaction: RedactionConfig,
}

impl Default for ForwardConfig {
    fn default() -> Self {
        ForwardConfig {
            sinks: [(
                "stdout".to_string(),
                SinkConfig::Stdout(StdoutSinkConfig::default()),
            )]
            .into(),
            service_name: "hestyna".into(),
            environment: String::new(),
            trace_url_template: String::new(),
            organizations_file: None,
            forward_invalid: true,
            redaction: RedactionConfig::default(),
        }
    }
}

/// How a redacted value is replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RedactionMode {
    /// By the text `[REDACTED]`.
    #[default]
    Mask,
    /// By `hmac-sha256:<64 hex digits>` of the value under `hmac_key`: equal values stay equal, so
    /// analysts can still correlate, and nobody without the key can test a guess.
    Hmac,
}

/// `[forward.redaction]`: applied to every string of every forwarded record (the original event
/// included), before any sink sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedactionConfig {
    /// `mask` or `hmac`.
    pub mode: RedactionMode,
    /// Built-in patterns to apply: `email`, `bearer_token`, `basic_auth`, `api_key`,
    /// `secret_assignment`, `jwt`, `credit_card` (all but `credit_card` by default; a list given here
    /// replaces the default one).
    pub builtin_patterns: Vec<String>,
    /// More regular expressions (Rust `regex` syntax): every match inside a string value is replaced.
    pub patterns: Vec<String>,
    /// Field paths, dot-separated, into the record (`hestyna.prompt`, `hestyna.user.email`): the whole
    /// value is replaced, whatever its type.
    pub fields: Vec<String>,
    /// Key names that say their value is a secret: wherever a key, at any depth, holds one as a word
    /// (case-insensitive; words split at punctuation and camelCase, so `api_key` matches `X-Api-Key`,
    /// `apiKey` and `APIKEY`, and `token` matches `access_token` but not `tokens_prompt`), its whole value
    /// is replaced. A list given here replaces the default one; `[]` turns the rule off.
    pub secret_keys: Vec<String>,
    /// The HMAC key (mode `hmac`). Never logged.
    pub hmac_key: Option<SecretConfig>,
}

impl Default for RedactionConfig {
    fn default() -> Self {
        RedactionConfig {
            mode: RedactionMode::Mask,
            builtin_patterns: [
                "email",
                "bearer_token",
                "basic_auth",
                "api_key",
                "secret_assignment",
                "jwt",
            ]
            .map(String::from)
            .to_vec(),
            patterns: Vec::new(),
            fields: Vec::new(),
            secret_keys: DEFAULT_SECRET_KEYS.map(String::from).to_vec(),
            hmac_key: None,
        }
    }
}

/// A secret, read from exactly one of: an environment variable, a file (trailing newline dropped), or
/// the value itself (discouraged outside tests). Printed masked.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecretConfig {
    /// The name of an environment variable holding it.
    pub env: Option<String>,
    /// A file holding it.
    pub file: Option<PathBuf>,
    /// The secret itself.
    pub value: Option<String>,
}

/// One SIEM sink.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SinkConfig {
    /// JSON lines appended to a file.
    File(FileSinkConfig),
    /// JSON lines on standard output.
    Stdout(StdoutSinkConfig),
    /// HTTP: NDJSON, Splunk HEC or Elasticsearch bulk.
    Http(Box<HttpSinkConfig>),
    /// RFC 5424 syslog over TCP (octet counting), optionally TLS (RFC 5425).
    Syslog(Box<SyslogSinkConfig>),
    /// A Kafka topic (idempotent producer, key = organization).
    Kafka(KafkaSinkConfig),
}

impl SinkConfig {
    /// The batching and retry settings, whatever the kind.
    pub fn delivery(&self) -> (&BatchConfig, &RetryConfig) {
        match self {
            SinkConfig::File(c) => (&c.batch, &c.retry),
            SinkConfig::Stdout(c) => (&c.batch, &c.retry),
            SinkConfig::Http(c) => (&c.batch, &c.retry),
            SinkConfig::Syslog(c) => (&c.batch, &c.retry),
            SinkConfig::Kafka(c) => (&c.batch, &c.retry),
        }
    }

    /// Where it delivers, for the start-up banner.
    pub fn describe(&self) -> String {
        match self {
            SinkConfig::File(c) => format!("{} (tail -f it)", c.path.display()),
            SinkConfig::Stdout(_) => "standard output".into(),
            SinkConfig::Http(c) => {
                let encoding = match c.encoding {
                    HttpEncoding::Ndjson => "NDJSON",
                    HttpEncoding::SplunkHec => "Splunk HEC",
                    HttpEncoding::ElasticsearchBulk => "Elasticsearch bulk",
                };
                format!("{} ({encoding})", crate::shared::mask_url(&c.url))
            }
            SinkConfig::Syslog(c) => format!(
                "syslog {}{}",
                c.address,
                if c.tls.is_some() { " (TLS)" } else { "" }
            ),
            SinkConfig::Kafka(c) => format!("kafka topic {}", c.topic),
        }
    }
}

/// When a sink's batch is sent: at `max_events` records, `max_bytes` encoded bytes, or once its first
/// record has waited `timeout_ms`, whichever comes first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BatchConfig {
    /// Records per batch at most.
    pub max_events: usize,
    /// Encoded bytes per batch at most (a single larger record goes alone).
    pub max_bytes: usize,
    /// How long the first record of a batch may wait for more (`timeout_ms`).
    #[serde(rename = "timeout_ms", with = "millis")]
    pub timeout: Duration,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            max_events: 1000,
            max_bytes: 1 << 20,
            timeout: Duration::from_millis(200),
        }
    }
}

/// Retries of retriable failures (connection errors, timeouts, 429, 5xx): exponential backoff with
/// jitter, for as long as it takes (the records wait in Kafka), until the shutdown drain deadline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// The first wait (`initial_backoff_ms`).
    #[serde(rename = "initial_backoff_ms", with = "millis")]
    pub initial_backoff: Duration,
    /// The wait doubles up to this (`max_backoff_ms`).
    #[serde(rename = "max_backoff_ms", with = "millis")]
    pub max_backoff: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
        }
    }
}

/// Declares a sink kind's settings: its own fields, then `batch` and `retry`, which every kind takes.
macro_rules! sink_config {
    ($(#[$meta:meta])* pub struct $name:ident { $($fields:tt)* }) => {
        $(#[$meta])*
        pub struct $name {
            $($fields)*
            /// Batching.
            #[serde(default)]
            pub batch: BatchConfig,
            /// Retries.
            #[serde(default)]
            pub retry: RetryConfig,
        }
    };
}

sink_config! {
/// `kind = "file"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSinkConfig {
    /// The file.
    pub path: PathBuf,
    /// Rotate once the file reaches this many bytes (`path` -> `path.1` -> `path.2` ...); 0: never.
    #[serde(default)]
    pub rotate_bytes: u64,
    /// Rotated files kept.
    #[serde(default = "default_rotate_keep")]
    pub rotate_keep: usize,
}
}

fn default_rotate_keep() -> usize {
    5
}

sink_config! {
/// `kind = "stdout"`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StdoutSinkConfig {
}
}

/// What an HTTP sink sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HttpEncoding {
    /// One record per line, `Content-Type: application/x-ndjson`.
    #[default]
    Ndjson,
    /// Splunk HEC event envelopes, to `<url>/services/collector/event`.
    SplunkHec,
    /// Elasticsearch `_bulk` (action line + record), to `<url>/_bulk`; `_id` = `event.id`.
    ElasticsearchBulk,
}

/// Request body compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Compression {
    /// None.
    #[default]
    None,
    /// gzip (`Content-Encoding: gzip`).
    Gzip,
}

/// How an HTTP sink authenticates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HttpAuthKind {
    /// No `Authorization` header (or one set in `headers`).
    #[default]
    None,
    /// `Authorization: Bearer <secret>`.
    Bearer,
    /// `Authorization: Basic base64(<user>:<secret>)`.
    Basic,
    /// `Authorization: ApiKey <secret>` (Elasticsearch API keys).
    ApiKey,
    /// `Authorization: Splunk <secret>` (HEC tokens).
    Splunk,
}

/// `[forward.sinks.<name>.auth]`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpAuthConfig {
    /// `none`, `bearer`, `basic`, `api_key` or `splunk`.
    pub kind: HttpAuthKind,
    /// The user (kind `basic`).
    pub user: String,
    /// The token, password or key.
    pub secret: Option<SecretConfig>,
}

/// TLS towards a SIEM.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClientTlsConfig {
    /// PEM CA certificates to trust (instead of the system's).
    pub ca_file: Option<PathBuf>,
    /// A PEM client certificate chain (mutual TLS), with `key_file`.
    pub cert_file: Option<PathBuf>,
    /// The PEM private key of `cert_file`.
    pub key_file: Option<PathBuf>,
    /// The name to verify the server's certificate against (default: the host of the address).
    pub server_name: Option<String>,
}

sink_config! {
/// `kind = "http"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSinkConfig {
    /// The endpoint. For `splunk_hec` and `elasticsearch_bulk`, the base URL (the path is added).
    pub url: String,
    /// `ndjson`, `splunk_hec` or `elasticsearch_bulk`.
    #[serde(default)]
    pub encoding: HttpEncoding,
    /// `none` or `gzip`.
    #[serde(default)]
    pub compression: Compression,
    /// Authentication.
    #[serde(default)]
    pub auth: HttpAuthConfig,
    /// Extra request headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// TLS settings for `https://` URLs.
    #[serde(default)]
    pub tls: ClientTlsConfig,
    /// Connecting gives up after this long (then retried) (`connect_timeout_secs`).
    #[serde(rename = "connect_timeout_secs", default = "default_connect_timeout", with = "secs")]
    pub connect_timeout: Duration,
    /// A request gives up after this long (then retried) (`request_timeout_secs`).
    #[serde(rename = "request_timeout_secs", default = "default_request_timeout", with = "secs")]
    pub request_timeout: Duration,
    /// `[forward.sinks.<name>.splunk]`.
    #[serde(default)]
    pub splunk: SplunkConfig,
    /// `[forward.sinks.<name>.elasticsearch]`.
    #[serde(default)]
    pub elasticsearch: ElasticsearchConfig,
}
}

fn default_connect_timeout() -> Duration {
    Duration::from_secs(10)
}

fn default_request_timeout() -> Duration {
    Duration::from_secs(30)
}

/// Splunk HEC settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SplunkConfig {
    /// The `index` of every event (empty: the token's default).
    pub index: String,
    /// The `sourcetype` of every event.
    pub sourcetype: String,
    /// The `source` of every event.
    pub source: String,
    /// Wait for indexer acknowledgement (the token must have it enabled): a batch counts as delivered
    /// only once Splunk says it is indexed, polled on `/services/collector/ack`.
    pub indexer_acknowledgements: bool,
    /// Polling interval of acknowledgements (`ack_poll_ms`).
    #[serde(rename = "ack_poll_ms", with = "millis")]
    pub ack_poll: Duration,
    /// A batch not acknowledged within this long is sent again (`ack_timeout_secs`).
    #[serde(rename = "ack_timeout_secs", with = "secs")]
    pub ack_timeout: Duration,
}

impl Default for SplunkConfig {
    fn default() -> Self {
        SplunkConfig {
            index: String::new(),
            sourcetype: "hestyna:event".into(),
            source: "hestyna-obsd".into(),
            indexer_acknowledgements: false,
            ack_poll: Duration::from_millis(500),
            ack_timeout: Duration::from_secs(30),
        }
    }
}

/// The bulk action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BulkAction {
    /// `index`: a retry overwrites the same `_id`.
    #[default]
    Index,
    /// `create` (required by data streams): a retry of a record already stored answers 409, counted as
    /// delivered.
    Create,
}

/// Elasticsearch settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ElasticsearchConfig {
    /// The index (or data stream).
    pub index: String,
    /// `index` or `create`.
    pub action: BulkAction,
}

impl Default for ElasticsearchConfig {
    fn default() -> Self {
        ElasticsearchConfig {
            index: "hestyna-events".into(),
            action: BulkAction::Index,
        }
    }
}

sink_config! {
/// `kind = "syslog"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyslogSinkConfig {
    /// `host:port` of the receiver.
    pub address: String,
    /// TLS (RFC 5425); absent: plain TCP.
    #[serde(default)]
    pub tls: Option<ClientTlsConfig>,
    /// The syslog facility number (0-23); 13 (log audit) by default.
    #[serde(default = "default_facility")]
    pub facility: u8,
    /// APP-NAME of every message.
    #[serde(default = "default_app_name")]
    pub app_name: String,
    /// Connecting gives up after this long (then retried) (`connect_timeout_secs`).
    #[serde(rename = "connect_timeout_secs", default = "default_connect_timeout", with = "secs")]
    pub connect_timeout: Duration,
    /// Writing a batch gives up after this long (then retried on a new connection)
    /// (`write_timeout_secs`).
    #[serde(rename = "write_timeout_secs", default = "default_request_timeout", with = "secs")]
    pub write_timeout: Duration,
}
}

fn default_facility() -> u8 {
    13
}

fn default_app_name() -> String {
    "hestyna-obsd".into()
}

sink_config! {
/// `kind = "kafka"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSinkConfig {
    /// The SIEM ingest topic.
    pub topic: String,
    /// Bootstrap servers (default: `kafka.brokers`).
    #[serde(default)]
    pub brokers: Option<String>,
    /// librdkafka properties of this producer (over `kafka.properties`).
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
    /// A batch gives up waiting for the broker after this long (then retried)
    /// (`delivery_timeout_secs`).
    #[serde(rename = "delivery_timeout_secs", default = "default_request_timeout", with = "secs")]
    pub delivery_timeout: Duration,
}
}

/// The built-in redaction patterns, by name.
pub const BUILTIN_PATTERNS: &[(&str, &str)] = &[
    (
        "email",
        r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}",
    ),
    (
        "bearer_token",
        r"(?i)\b(?:bearer|token)\s+[A-Za-z0-9\-._~+/]{8,}=*",
    ),
    (
        "api_key",
        r"\b(?:sk|pk|rk)[-_](?:live[-_]|test[-_]|proj[-_])?[A-Za-z0-9_\-]{16,}|\bAKIA[0-9A-Z]{16}\b|\bgh[pousr]_[A-Za-z0-9]{36,}\b|\bxox[abpr]-[A-Za-z0-9\-]{10,}|(?i)\b(?:api[_-]?key|apikey|secret|password)\b\s*[:=]\s*[^\s,;]{6,}",
    ),
    (
        "basic_auth",
        // HTTP Basic credentials: base64 of at least 6 bytes, so "basic authentication" is left alone.
        r"\b(?i:basic)\s+(?:[A-Za-z0-9+/]{4}){2,}(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=|\b)",
    ),
    (
        "secret_assignment",
        // A secret-named key given a value inside text: `"password":"hunter2"`, `token=abc`, `secret: x`.
        r#"(?i)\b(?:password|passwd|secret|token|api[_-]?key|apikey|private[_-]?key|authorization|cookie)\b["']?\s*[:=]\s*(?:"[^"]*"|'[^']*'|[^\s,;&"'}]+)"#,
    ),
    (
        "jwt",
        r"\beyJ[A-Za-z0-9_\-]{5,}\.eyJ[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]{5,}",
    ),
    ("credit_card", r"\b(?:\d[ \-]?){12,18}\d\b"),
];

/// The default `secret_keys`: key names whose value is redacted whole.
pub const DEFAULT_SECRET_KEYS: [&str; 9] = [
    "password",
    "passwd",
    "secret",
    "token",
    "api_key",
    "apikey",
    "authorization",
    "cookie",
    "private_key",
];

/// The placeholders a `trace_url_template` may use.
pub const TRACE_URL_PLACEHOLDERS: &[&str] = &["trace_id", "span_id", "organization"];

impl SecretConfig {
    /// Reads the secret.
    pub fn read(&self) -> Result<String, String> {
        match (&self.env, &self.file, &self.value) {
            (Some(var), None, None) => match std::env::var(var) {
                Ok(v) if !v.is_empty() => Ok(v),
                _ => Err(format!("the environment variable {var} is not set")),
            },
            (None, Some(path), None) => std::fs::read_to_string(path)
                .map(|s| s.trim_end_matches(['\r', '\n']).to_owned())
                .map_err(|e| format!("cannot read {}: {e}", path.display()))
                .and_then(|s| match s.is_empty() {
                    true => Err(format!("{} is empty", path.display())),
                    false => Ok(s),
                }),
            (None, None, Some(v)) if !v.is_empty() => Ok(v.clone()),
            _ => Err("set exactly one of env, file or value".into()),
        }
    }
}

impl ForwardConfig {
    /// Every fault of `[forward]` (key paths from the root), given whether the pipeline runs and the
    /// cluster (the topics the source reads, the default brokers).
    pub(super) fn check(&self, forward_enabled: bool, kafka: &super::KafkaConfig, f: &mut Faults) {
        if forward_enabled && self.sinks.is_empty() {
            f.add(
                "forward.sinks",
                "at least one sink is required when pipelines.forward is enabled",
            );
        }
        let mut placeholders = self.trace_url_template.split('{').skip(1);
        if let Some(bad) = placeholders.find_map(|rest| {
            let name = rest.split('}').next().unwrap_or("");
            (!TRACE_URL_PLACEHOLDERS.contains(&name)).then(|| name.to_owned())
        }) {
            f.add(
                "forward.trace_url_template",
                format!(
                    "unknown placeholder {{{bad}}}: use {}",
                    TRACE_URL_PLACEHOLDERS.join(", ")
                ),
            );
        }
        if self
            .organizations_file
            .as_ref()
            .is_some_and(|p| p.as_os_str().is_empty())
        {
            f.add("forward.organizations_file", "must not be empty");
        }
        self.redaction.check(f);
        for (name, sink) in &self.sinks {
            sink.check(&format!("forward.sinks.{name}"), kafka, f);
        }
    }
}

impl RedactionConfig {
    fn check(&self, f: &mut Faults) {
        for (i, name) in self.builtin_patterns.iter().enumerate() {
            if !BUILTIN_PATTERNS.iter().any(|(n, _)| n == name) {
                let known: Vec<&str> = BUILTIN_PATTERNS.iter().map(|(n, _)| *n).collect();
                f.add(
                    format!("forward.redaction.builtin_patterns.{i}"),
                    format!("unknown pattern {name:?}: use {}", known.join(", ")),
                );
            }
        }
        // The syntax only (the redactor compiles each pattern once, at start-up, where a size limit
        // could still refuse one).
        for (i, pattern) in self.patterns.iter().enumerate() {
            if let Err(e) = regex_syntax::parse(pattern) {
                f.add(format!("forward.redaction.patterns.{i}"), e.to_string());
            }
        }
        for (i, key) in self.secret_keys.iter().enumerate() {
            if !key.bytes().any(|b| b.is_ascii_alphanumeric()) {
                f.add(
                    format!("forward.redaction.secret_keys.{i}"),
                    "must hold at least one ASCII letter or digit (keys are matched word by word)",
                );
            }
        }
        for (i, field) in self.fields.iter().enumerate() {
            if field.split('.').any(str::is_empty) {
                f.add(
                    format!("forward.redaction.fields.{i}"),
                    "must be a dot-separated path without empty segments",
                );
            }
        }
        match (&self.mode, &self.hmac_key) {
            (RedactionMode::Hmac, None) => f.add(
                "forward.redaction.hmac_key",
                "required when forward.redaction.mode is \"hmac\"",
            ),
            (_, Some(key)) => key.check("forward.redaction.hmac_key", f),
            _ => {}
        }
    }
}

impl SecretConfig {
    /// Exactly one source is set (whether it can be read is found when it is read, once, at start-up).
    fn check(&self, at: &str, f: &mut Faults) {
        let set = [
            self.env.is_some(),
            self.file.is_some(),
            self.value.is_some(),
        ];
        if set.iter().filter(|s| **s).count() != 1 {
            f.add(at, "set exactly one of env, file or value");
        } else if self.value.as_deref() == Some("") || self.env.as_deref() == Some("") {
            f.add(at, "must not be empty");
        }
    }
}

impl SinkConfig {
    /// Every fault of the sink at `at` (`forward.sinks.<name>`).
    fn check(&self, at: &str, kafka: &super::KafkaConfig, f: &mut Faults) {
        let (batch, retry) = self.delivery();
        batch.check(at, f);
        retry.check(at, f);
        match self {
            SinkConfig::File(c) => c.check(at, f),
            SinkConfig::Stdout(_) => {}
            SinkConfig::Http(c) => c.check(at, f),
            SinkConfig::Syslog(c) => c.check(at, f),
            SinkConfig::Kafka(c) => c.check(at, kafka, f),
        }
    }
}

/// A duration that must be at least a second.
fn at_least_a_second(at: &str, key: &str, d: Duration, f: &mut Faults) {
    if d < Duration::from_secs(1) {
        f.add(format!("{at}.{key}"), "must be at least 1");
    }
}

impl BatchConfig {
    fn check(&self, at: &str, f: &mut Faults) {
        if !(1..=100_000).contains(&self.max_events) {
            f.add(
                format!("{at}.batch.max_events"),
                "must be between 1 and 100000",
            );
        }
        if self.max_bytes == 0 {
            f.add(format!("{at}.batch.max_bytes"), "must be at least 1");
        }
        if self.timeout > Duration::from_secs(60) {
            f.add(format!("{at}.batch.timeout_ms"), "must be at most 60000");
        }
    }
}

impl RetryConfig {
    fn check(&self, at: &str, f: &mut Faults) {
        if self.initial_backoff.is_zero() {
            f.add(
                format!("{at}.retry.initial_backoff_ms"),
                "must be at least 1",
            );
        }
        if self.max_backoff < self.initial_backoff {
            f.add(
                format!("{at}.retry.max_backoff_ms"),
                "must be at least retry.initial_backoff_ms",
            );
        }
    }
}

impl FileSinkConfig {
    fn check(&self, at: &str, f: &mut Faults) {
        if self.path.as_os_str().is_empty() {
            f.add(format!("{at}.path"), "must not be empty");
        }
        if self.rotate_bytes > 0 && self.rotate_keep == 0 {
            f.add(format!("{at}.rotate_keep"), "must be at least 1 to rotate");
        }
    }
}

impl HttpSinkConfig {
    fn check(&self, at: &str, f: &mut Faults) {
        match reqwest::Url::parse(&self.url) {
            Ok(u) if u.scheme() == "http" || u.scheme() == "https" => {}
            Ok(u) => f.add(
                format!("{at}.url"),
                format!("scheme {:?} is not http or https", u.scheme()),
            ),
            Err(e) => f.add(
                format!("{at}.url"),
                format!("{:?} is not a URL: {e}", crate::shared::mask_url(&self.url)),
            ),
        }
        self.auth.check(at, self.encoding, f);
        for key in self.headers.keys() {
            if reqwest::header::HeaderName::from_bytes(key.as_bytes()).is_err() {
                f.add(format!("{at}.headers.{key}"), "not a valid header name");
            }
        }
        self.tls.check(&format!("{at}.tls"), f);
        at_least_a_second(at, "connect_timeout_secs", self.connect_timeout, f);
        at_least_a_second(at, "request_timeout_secs", self.request_timeout, f);
        if self.encoding == HttpEncoding::ElasticsearchBulk
            && self.elasticsearch.index.trim().is_empty()
        {
            f.add(format!("{at}.elasticsearch.index"), "must not be empty");
        }
        let s = &self.splunk;
        if s.indexer_acknowledgements
            && (s.ack_poll < Duration::from_millis(10) || s.ack_timeout < Duration::from_secs(1))
        {
            f.add(
                format!("{at}.splunk.ack_poll_ms"),
                "ack_poll_ms must be at least 10 and ack_timeout_secs at least 1",
            );
        }
    }
}

impl HttpAuthConfig {
    fn check(&self, at: &str, encoding: HttpEncoding, f: &mut Faults) {
        match (&self.kind, &self.secret) {
            (HttpAuthKind::None, Some(_)) => f.add(
                format!("{at}.auth.kind"),
                "a secret is set but auth.kind is \"none\"",
            ),
            (HttpAuthKind::None, None) => {}
            (_, None) => f.add(format!("{at}.auth.secret"), "required by auth.kind"),
            (_, Some(secret)) => secret.check(&format!("{at}.auth.secret"), f),
        }
        if self.kind == HttpAuthKind::Basic && self.user.is_empty() {
            f.add(
                format!("{at}.auth.user"),
                "required when auth.kind is \"basic\"",
            );
        }
        if encoding == HttpEncoding::SplunkHec && self.kind != HttpAuthKind::Splunk {
            f.add(
                format!("{at}.auth.kind"),
                "must be \"splunk\" (the HEC token) when encoding is \"splunk_hec\"",
            );
        }
    }
}

impl ClientTlsConfig {
    fn check(&self, at: &str, f: &mut Faults) {
        for (key, file) in [
            ("ca_file", &self.ca_file),
            ("cert_file", &self.cert_file),
            ("key_file", &self.key_file),
        ] {
            if file.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
                f.add(format!("{at}.{key}"), "must not be empty");
            }
        }
        if self.cert_file.is_some() != self.key_file.is_some() {
            f.add(
                format!("{at}.key_file"),
                "cert_file and key_file go together",
            );
        }
    }
}

impl SyslogSinkConfig {
    fn check(&self, at: &str, f: &mut Faults) {
        let port_ok = self
            .address
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
        if !port_ok {
            f.add(
                format!("{at}.address"),
                format!("{:?} is not host:port", self.address),
            );
        }
        if self.facility > 23 {
            f.add(format!("{at}.facility"), "must be between 0 and 23");
        }
        let name = &self.app_name;
        if name.is_empty() || name.len() > 48 || !name.bytes().all(|b| (33..=126).contains(&b)) {
            f.add(
                format!("{at}.app_name"),
                "must be 1 to 48 printable ASCII characters without spaces",
            );
        }
        if let Some(tls) = &self.tls {
            tls.check(&format!("{at}.tls"), f);
        }
        at_least_a_second(at, "connect_timeout_secs", self.connect_timeout, f);
        at_least_a_second(at, "write_timeout_secs", self.write_timeout, f);
    }
}

impl KafkaSinkConfig {
    fn check(&self, at: &str, kafka: &super::KafkaConfig, f: &mut Faults) {
        if self.topic.trim().is_empty() {
            f.add(format!("{at}.topic"), "must not be empty");
        } else if kafka.topics.contains(&self.topic) {
            f.add(
                format!("{at}.topic"),
                "must not be one of kafka.topics (records would be read again)",
            );
        }
        if self
            .brokers
            .as_deref()
            .unwrap_or(&kafka.brokers)
            .trim()
            .is_empty()
        {
            f.add(format!("{at}.brokers"), "missing: set it or kafka.brokers");
        }
        for key in self.properties.keys() {
            if key == "bootstrap.servers" || key == "enable.idempotence" {
                f.add(
                    format!("{at}.properties.{key}"),
                    "managed by hestyna-obsd (use brokers; the producer is always idempotent)",
                );
            }
        }
        at_least_a_second(at, "delivery_timeout_secs", self.delivery_timeout, f);
    }
}
