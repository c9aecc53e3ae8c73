//! Reporting every fault at once.
//!
//! serde stops at the first error. We deserialize again and again: each round records the failing key's
//! path and removes that key from the tree (every field has a default, so the next round gets further),
//! until the tree deserializes. Then the checks that span keys run on the result; a key already reported
//! is not reported twice.

use super::{Config, DeadLetterKind, SourceKind};
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
    let message = message
        .split(" at line ")
        .next()
        .unwrap_or(&message)
        .to_owned();
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

fn check(c: &Config) -> Vec<Issue> {
    let mut issues = Vec::new();
    let mut fault = |path: &str, message: String| {
        issues.push(Issue {
            path: path.into(),
            message,
        })
    };

    let kafka_source = c.source.kind == SourceKind::Kafka;
    let kafka_dead_letters = c.dead_letter.kind == DeadLetterKind::Kafka;
    if c.kafka.brokers.trim().is_empty() && (kafka_source || kafka_dead_letters) {
        let user = if kafka_source {
            "source.kind"
        } else {
            "dead_letter.kind"
        };
        fault(
            "kafka.brokers",
            format!("missing broker list: required when {user} is \"kafka\""),
        );
    }
    if kafka_source && c.kafka.topics.iter().all(|t| t.trim().is_empty()) {
        fault(
            "kafka.topics",
            "at least one topic is required when source.kind is \"kafka\"".into(),
        );
    }
    for (section, props) in [
        ("kafka.properties", &c.kafka.properties),
        ("kafka.consumer_properties", &c.kafka.consumer_properties),
        ("kafka.producer_properties", &c.kafka.producer_properties),
    ] {
        for key in props.keys() {
            if [
                "bootstrap.servers",
                "group.id",
                "enable.auto.offset.store",
                "enable.auto.commit",
            ]
            .contains(&key.as_str())
            {
                fault(
                    &format!("{section}.{key}"),
                    "managed by hestyna-obsd (use kafka.brokers / pipelines.*.group_id); offsets are stored only after processing".into(),
                );
            }
        }
    }

    let b = &c.source;
    if !(1..=1_000_000).contains(&b.batch_max_records) {
        fault(
            "source.batch_max_records",
            "must be between 1 and 1000000".into(),
        );
    }
    if b.queue_batches == 0 {
        fault("source.queue_batches", "must be at least 1".into());
    }
    let g = &b.generator;
    if !(g.rate >= 0.0 && g.rate.is_finite()) {
        fault(
            "source.generator.rate",
            "must be a finite number >= 0".into(),
        );
    }
    for (path, ratio) in [
        ("source.generator.invalid_ratio", g.invalid_ratio),
        ("source.generator.unknown_ratio", g.unknown_ratio),
    ] {
        if !(0.0..=1.0).contains(&ratio) {
            fault(path, "must be between 0 and 1".into());
        }
    }
    if g.invalid_ratio + g.unknown_ratio > 1.0 {
        fault(
            "source.generator.unknown_ratio",
            "invalid_ratio + unknown_ratio must not exceed 1".into(),
        );
    }
    if g.organizations == 0 {
        fault(
            "source.generator.organizations",
            "must be at least 1".into(),
        );
    }
    if !g.start.is_empty() && chrono::DateTime::parse_from_rfc3339(&g.start).is_err() {
        fault(
            "source.generator.start",
            "must be an RFC 3339 timestamp or empty".into(),
        );
    }
    if b.kind == SourceKind::File && b.file.path.is_empty() {
        fault(
            "source.file.path",
            "must name a file, or - for stdin".into(),
        );
    }

    let p = &c.pipelines;
    if !p.metrics.enabled && !p.forward.enabled {
        fault(
            "pipelines",
            "at least one of pipelines.metrics and pipelines.forward must be enabled".into(),
        );
    }
    if kafka_source {
        for (path, pipe) in [
            ("pipelines.metrics.group_id", &p.metrics),
            ("pipelines.forward.group_id", &p.forward),
        ] {
            if pipe.enabled && pipe.group_id.trim().is_empty() {
                fault(path, "must not be empty".into());
            }
        }
        if p.metrics.enabled && p.forward.enabled && p.metrics.group_id == p.forward.group_id {
            fault("pipelines.forward.group_id", "must differ from pipelines.metrics.group_id: each pipeline is its own consumer group".into());
        }
    }

    match c.dead_letter.kind {
        DeadLetterKind::Kafka => {
            if c.dead_letter.topic.trim().is_empty() {
                fault("dead_letter.topic", "must not be empty".into());
            } else if c.kafka.topics.contains(&c.dead_letter.topic) {
                fault(
                    "dead_letter.topic",
                    "must not be one of kafka.topics (dead letters would be read again)".into(),
                );
            }
        }
        DeadLetterKind::File => {
            if c.dead_letter.path.as_os_str().is_empty() {
                fault("dead_letter.path", "must not be empty".into());
            }
        }
    }

    for (user, hash) in &c.http.basic_auth_users {
        if user.is_empty() || user.contains(':') {
            fault(
                &format!("http.basic_auth_users.{user}"),
                "a user name must be non-empty and without ':'".into(),
            );
        }
        let looks_bcrypt = hash.len() == 60
            && ["$2a$", "$2b$", "$2y$", "$2x$"]
                .iter()
                .any(|p| hash.starts_with(p));
        if !looks_bcrypt {
            fault(
                &format!("http.basic_auth_users.{user}"),
                "must be a bcrypt hash (make one with `hestyna-obsd hash-password`)".into(),
            );
        }
    }
    if c.http.web_config_file.is_some() && !c.http.basic_auth_users.is_empty() {
        fault(
            "http.basic_auth_users",
            "set the users in http.web_config_file instead (one source of credentials)".into(),
        );
    }
    if let Some(path) = &c.http.web_config_file {
        if !path.is_file() {
            fault(
                "http.web_config_file",
                format!("{} is not a readable file", path.display()),
            );
        }
    }
    if c.http.health_listen.is_some_and(|h| h == c.http.listen) {
        fault("http.health_listen", "must differ from http.listen".into());
    }
    // With a web configuration file, whether it protects /metrics is checked when it is loaded.
    if c.http.web_config_file.is_none()
        && c.http.basic_auth_users.is_empty()
        && !c.http.listen.ip().is_loopback()
        && !c.http.allow_unauthenticated
    {
        fault(
            "http.basic_auth_users",
            format!(
                "/metrics on the non-loopback address {} would be open to anyone: add users, or set http.allow_unauthenticated = true",
                c.http.listen
            ),
        );
    }

    c.forward.check(p.forward.enabled, &c.kafka, &mut fault);

    if let Err(errors) = crate::derive::Plan::compile(&c.metrics.all_rules()) {
        let first_extra = c.metrics.rules.len();
        for e in errors {
            let (list, index) = if e.rule < first_extra {
                ("rules", e.rule)
            } else {
                ("extra_rules", e.rule - first_extra)
            };
            fault(
                &format!("metrics.{list}.{index}.{}", e.key),
                format!("{} (rule {:?})", e.message, e.name),
            );
        }
    }
    let join = &c.metrics.intake_join;
    if join.enabled {
        if join.max_entries == 0 {
            fault(
                "metrics.intake_join.max_entries",
                "must be at least 1".into(),
            );
        }
        if join.ttl_secs == 0 {
            fault("metrics.intake_join.ttl_secs", "must be at least 1".into());
        }
        if kafka_source
            && (join.changelog_topic.trim().is_empty()
                || c.kafka.topics.contains(&join.changelog_topic))
        {
            fault(
                "metrics.intake_join.changelog_topic",
                "must be set, and not one of kafka.topics".into(),
            );
        }
    }
    if tracing_subscriber::EnvFilter::try_new(&c.telemetry.log_level).is_err() {
        fault(
            "telemetry.log_level",
            format!("{:?} is not a valid log filter", c.telemetry.log_level),
        );
    }
    if c.shutdown.drain_timeout_secs == 0 {
        fault("shutdown.drain_timeout_secs", "must be at least 1".into());
    }
    issues
}
