//! Reporting every fault at once.
//!
//! serde stops at the first error. We deserialize again and again: each round records the failing key's
//! path and removes that key from the tree (every field has a default, so the next round gets further),
//! until the tree deserializes. Then the checks that span keys run on the result; a key already reported
//! is not reported twice.

use super::{
    Config, DeadLetterConfig, DeadLetterKind, GeneratorConfig, HttpConfig, IntakeJoinConfig,
    KafkaConfig, PipelinesConfig, SourceConfig, SourceKind, MANAGED_CONSUMER_PROPERTIES,
};
use serde_json::Value;
use std::fmt;

/// One fault, with the key path it is at (`kafka.brokers`, `forward.sinks.siem.path`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    /// The key path.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Issue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Removes the value at `path` (segments of a `serde_path_to_error` path); false if there is none.
fn remove_at(tree: &mut Value, segments: &[String]) -> bool {
    let Some((last, parents)) = segments.split_last() else {
        return false;
    };
    let mut node = tree;
    for segment in parents {
        node = match node {
            Value::Object(map) => match map.get_mut(segment) {
                Some(next) => next,
                None => return false,
            },
            Value::Array(items) => {
                match segment.parse::<usize>().ok().and_then(|i| items.get_mut(i)) {
                    Some(next) => next,
                    None => return false,
                }
            }
            _ => return false,
        };
    }
    match node {
        Value::Object(map) => map.remove(last).is_some(),
        Value::Array(items) => match last.parse::<usize>() {
            Ok(i) if i < items.len() => {
                items.remove(i);
                true
            }
            _ => false,
        },
        _ => false,
    }
}

fn segments(path: &serde_path_to_error::Path) -> Vec<String> {
    use serde_path_to_error::Segment;
    path.iter()
        .filter_map(|s| match s {
            Segment::Map { key } => Some(key.clone()),
            Segment::Seq { index } => Some(index.to_string()),
            Segment::Enum { variant } => Some(variant.clone()),
            Segment::Unknown => None,
        })
        .collect()
}

/// serde's message, with the key it names moved into the path for unknown fields.
fn issue_from(err: &serde_path_to_error::Error<serde_json::Error>) -> (Vec<String>, Issue) {
    let mut segs = segments(err.path());
    let message = err.inner().to_string();
    // "unknown field `x`, expected one of ..." is reported at the parent: point at the key itself.
    if let Some(rest) = message.strip_prefix("unknown field `") {
        if let Some(name) = rest.split('`').next() {
            if segs.last().map(String::as_str) != Some(name) {
                segs.push(name.to_owned());
            }
            let message = format!(
                "unknown key{}",
                rest.split_once('`').map(|(_, tail)| tail).unwrap_or("")
            );
            return (
                segs.clone(),
                Issue {
                    path: segs.join("."),
                    message,
                },
            );
        }
    }
    let mut message = message
        .split(" at line ")
        .next()
        .unwrap_or(&message)
        .to_owned();
    // serde quotes the value it refused (`invalid type: integer \`12345\``): under a secret's key
    // (`...secret.value`, `sasl.password`), the value is not shown.
    if segs.iter().any(|s| crate::shared::names_a_secret(s)) {
        message = hide_quoted(&message);
    }
    (
        segs.clone(),
        Issue {
            path: if segs.is_empty() {
                "(root)".into()
            } else {
                segs.join(".")
            },
            message,
        },
    )
}

/// `message` with every `` `...` `` and `"..."` span replaced by `***`.
fn hide_quoted(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(open) = rest.find(['`', '"']) {
        let quote = rest[open..].chars().next().expect("found");
        out.push_str(&rest[..=open]);
        match rest[open + 1..].find(quote) {
            Some(close) => {
                out.push_str("***");
                out.push(quote);
                rest = &rest[open + 1 + close + 1..];
            }
            None => {
                out.push_str("***");
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// Deserializes, collecting every fault, then checks what spans keys.
pub(super) fn deserialize_and_check(mut tree: Value) -> Result<Config, Vec<Issue>> {
    let mut issues: Vec<Issue> = Vec::new();
    let config = loop {
        match serde_path_to_error::deserialize::<_, Config>(&tree) {
            Ok(config) => break Some(config),
            Err(err) => {
                let (segs, issue) = issue_from(&err);
                issues.push(issue);
                if !remove_at(&mut tree, &segs) || issues.len() > 100 {
                    break None;
                }
            }
        }
    };
    if let Some(config) = &config {
        // A check on a key whose subtree already had a fault (removed above) would only repeat it.
        let related = |a: &str, b: &str| {
            a == b || a.starts_with(&format!("{b}.")) || b.starts_with(&format!("{a}."))
        };
        for issue in check(config) {
            if !issues.iter().any(|i| related(&i.path, &issue.path)) {
                issues.push(issue);
            }
        }
    }
    match config {
        Some(config) if issues.is_empty() => Ok(config),
        _ => Err(issues),
    }
}

/// Collects faults, each at its key path.
#[derive(Debug, Default)]
pub struct Faults(Vec<Issue>);

impl Faults {
    /// A fault at `path`.
    pub fn add(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(Issue {
            path: path.into(),
            message: message.into(),
        });
    }

    /// Whether none was found.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The faults, in the order found.
    pub fn into_vec(self) -> Vec<Issue> {
        self.0
    }
}

/// The checks that span keys, section by section. Pure: nothing here reads a file or a secret, or
/// compiles a rule or a pattern; what needs that is checked once, when it is built (`app::Inputs`).
fn check(c: &Config) -> Vec<Issue> {
    let mut f = Faults::default();
    c.kafka.check(c, &mut f);
    c.source.check(&mut f);
    c.pipelines.check(c, &mut f);
    c.dead_letter.check(c, &mut f);
    c.http.check(&mut f);
    c.forward
        .check(c.pipelines.forward.enabled, &c.kafka, &mut f);
    c.metrics.intake_join.check(c, &mut f);
    if tracing_subscriber::EnvFilter::try_new(&c.telemetry.log_level).is_err() {
        f.add(
            "telemetry.log_level",
            format!("{:?} is not a valid log filter", c.telemetry.log_level),
        );
    }
    // The environment's OTEL_* variables are checked with the section they override.
    let env = |name: &str| std::env::var(name).ok();
    if let Err(faults) =
        crate::telemetry::otel::resolve(&c.telemetry.tracing, &env, &Default::default())
    {
        for fault in faults {
            f.add(&fault.key, fault.message);
        }
    }
    if c.shutdown.drain_timeout.is_zero() {
        f.add("shutdown.drain_timeout_secs", "must be at least 1");
    }
    f.into_vec()
}

impl KafkaConfig {
    fn check(&self, c: &Config, f: &mut Faults) {
        let kafka_source = c.source.kind == SourceKind::Kafka;
        let kafka_dead_letters = c.dead_letter.kind == DeadLetterKind::Kafka;
        if self.brokers.trim().is_empty() && (kafka_source || kafka_dead_letters) {
            let user = match kafka_source {
                true => "source.kind",
                false => "dead_letter.kind",
            };
            f.add(
                "kafka.brokers",
                format!("missing broker list: required when {user} is \"kafka\""),
            );
        }
        if kafka_source && self.topics.iter().all(|t| t.trim().is_empty()) {
            f.add(
                "kafka.topics",
                "at least one topic is required when source.kind is \"kafka\"",
            );
        }
        for (section, props) in [
            ("kafka.properties", &self.properties),
            ("kafka.consumer_properties", &self.consumer_properties),
            ("kafka.producer_properties", &self.producer_properties),
        ] {
            for key in props.keys() {
                if MANAGED_CONSUMER_PROPERTIES.contains(&key.as_str()) {
                    f.add(
                        format!("{section}.{key}"),
                        "managed by hestyna-obsd (use kafka.brokers / pipelines.*.group_id); offsets are stored only after processing",
                    );
                }
            }
        }
    }
}

impl SourceConfig {
    fn check(&self, f: &mut Faults) {
        if !(1..=1_000_000).contains(&self.batch_max_records) {
            f.add("source.batch_max_records", "must be between 1 and 1000000");
        }
        if self.queue_batches == 0 {
            f.add("source.queue_batches", "must be at least 1");
        }
        if self.kind == SourceKind::File && self.file.path.is_empty() {
            f.add("source.file.path", "must name a file, or - for stdin");
        }
        self.generator.check(f);
    }
}

impl GeneratorConfig {
    fn check(&self, f: &mut Faults) {
        if !(self.rate >= 0.0 && self.rate.is_finite()) {
            f.add("source.generator.rate", "must be a finite number >= 0");
        }
        for (path, ratio) in [
            ("source.generator.invalid_ratio", self.invalid_ratio),
            ("source.generator.unknown_ratio", self.unknown_ratio),
        ] {
            if !(0.0..=1.0).contains(&ratio) {
                f.add(path, "must be between 0 and 1");
            }
        }
        if self.invalid_ratio + self.unknown_ratio > 1.0 {
            f.add(
                "source.generator.unknown_ratio",
                "invalid_ratio + unknown_ratio must not exceed 1",
            );
        }
        if self.organizations == 0 {
            f.add("source.generator.organizations", "must be at least 1");
        }
        if !self.start.is_empty() && chrono::DateTime::parse_from_rfc3339(&self.start).is_err() {
            f.add(
                "source.generator.start",
                "must be an RFC 3339 timestamp or empty",
            );
        }
    }
}

impl PipelinesConfig {
    fn check(&self, c: &Config, f: &mut Faults) {
        if !self.metrics.enabled && !self.forward.enabled {
            f.add(
                "pipelines",
                "at least one of pipelines.metrics and pipelines.forward must be enabled",
            );
        }
        if c.source.kind != SourceKind::Kafka {
            return;
        }
        for (path, pipe) in [
            ("pipelines.metrics.group_id", &self.metrics),
            ("pipelines.forward.group_id", &self.forward),
        ] {
            if pipe.enabled && pipe.group_id.trim().is_empty() {
                f.add(path, "must not be empty");
            }
        }
        if self.metrics.enabled
            && self.forward.enabled
            && self.metrics.group_id == self.forward.group_id
        {
            f.add(
                "pipelines.forward.group_id",
                "must differ from pipelines.metrics.group_id: each pipeline is its own consumer group",
            );
        }
    }
}

impl DeadLetterConfig {
    fn check(&self, c: &Config, f: &mut Faults) {
        match self.kind {
            DeadLetterKind::Kafka if self.topic.trim().is_empty() => {
                f.add("dead_letter.topic", "must not be empty")
            }
            DeadLetterKind::Kafka if c.kafka.topics.contains(&self.topic) => f.add(
                "dead_letter.topic",
                "must not be one of kafka.topics (dead letters would be read again)",
            ),
            DeadLetterKind::File if self.path.as_os_str().is_empty() => {
                f.add("dead_letter.path", "must not be empty")
            }
            _ => {}
        }
    }
}

impl HttpConfig {
    fn check(&self, f: &mut Faults) {
        for (user, hash) in &self.basic_auth_users {
            let at = format!("http.basic_auth_users.{user}");
            if user.is_empty() || user.contains(':') {
                f.add(&at, "a user name must be non-empty and without ':'");
            }
            if !crate::shared::looks_like_bcrypt(hash) {
                f.add(
                    at,
                    "must be a bcrypt hash (make one with `hestyna-obsd hash-password`)",
                );
            }
        }
        if self.web_config_file.is_some() && !self.basic_auth_users.is_empty() {
            f.add(
                "http.basic_auth_users",
                "set the users in http.web_config_file instead (one source of credentials)",
            );
        }
        if self.health_listen.is_some_and(|h| h == self.listen) {
            f.add("http.health_listen", "must differ from http.listen");
        }
    }
}

impl IntakeJoinConfig {
    fn check(&self, c: &Config, f: &mut Faults) {
        if !self.enabled {
            return;
        }
        if self.max_entries == 0 {
            f.add("metrics.intake_join.max_entries", "must be at least 1");
        }
        if self.ttl.is_zero() {
            f.add("metrics.intake_join.ttl_secs", "must be at least 1");
        }
        if c.source.kind == SourceKind::Kafka
            && (self.changelog_topic.trim().is_empty()
                || c.kafka.topics.contains(&self.changelog_topic))
        {
            f.add(
                "metrics.intake_join.changelog_topic",
                "must be set, and not one of kafka.topics",
            );
        }
    }
}
