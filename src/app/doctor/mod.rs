//! `hestyna-obsd doctor`: the observability guide's troubleshooting checklist as a command. Each check
//! reads the same configuration as `run` and says `ok`, `warn` or `fail`, with a hint of what to do;
//! nothing is changed (the dead-letter write probe is opt-in).
//!
//! - `config`: the configuration and what it names, with start-up's messages;
//! - `kafka.*` ([`kafka`]): brokers, topics, the dead-letter topic, each pipeline's consumer group
//!   (members, lag per partition from committed offsets and high watermarks), and the recent events'
//!   clocks (this machine against the broker; `occurred_at` against the broker's timestamp);
//! - `metrics.*` ([`endpoint`]): a running daemon's `/metrics`: 401 without credentials, 200 with,
//!   every family of the rule set, counts moving across two scrapes;
//! - `sink.*` ([`sinks`]): every SIEM sink reachable (TCP, TLS with the certificate's expiry, the
//!   kind's health request);
//! - `rules` ([`rules`]): an alert rules file reads only exported families and every alert has
//!   `summary`, `description` and `runbook_url`.

mod endpoint;
mod kafka;
mod rules;
mod sinks;

pub use rules::families_read;

use crate::config::{Config, DeadLetterKind, SourceKind};
use serde::Serialize;
use std::path::PathBuf;
use std::time::Duration;

/// What `doctor` is asked to check, beyond the configuration.
#[derive(Debug, Clone)]
pub struct DoctorOptions {
    /// `/metrics` of a running daemon; `None`: `http.listen` on loopback.
    pub url: Option<String>,
    /// Basic-auth user for `/metrics`.
    pub user: Option<String>,
    /// Its password.
    pub password: Option<String>,
    /// A PEM CA for an HTTPS `/metrics`.
    pub ca_file: Option<PathBuf>,
    /// Time between the two scrapes that must see counts move.
    pub interval: Duration,
    /// How long any one network step may take.
    pub timeout: Duration,
    /// Write a probe record to the dead-letter topic.
    pub write_probe: bool,
    /// An alert rules file to check against the exported families.
    pub rules: Option<PathBuf>,
}

/// A check's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// As it should be.
    Ok,
    /// Works, but look at it.
    Warn,
    /// Broken: exit 1.
    Fail,
}

/// One line of the report.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// What was checked (`kafka.brokers`, `metrics.moving`, `sink.siem`, ...).
    pub name: String,
    /// Its outcome.
    pub status: Status,
    /// What was found.
    pub message: String,
    /// What to do, when it is not `ok`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl Check {
    fn ok(name: impl Into<String>, message: impl Into<String>) -> Check {
        Check::new(name, Status::Ok, message, None)
    }

    fn warn(name: impl Into<String>, message: impl Into<String>, hint: &str) -> Check {
        Check::new(name, Status::Warn, message, Some(hint))
    }

    fn fail(name: impl Into<String>, message: impl Into<String>, hint: &str) -> Check {
        Check::new(name, Status::Fail, message, Some(hint))
    }

    fn new(
        name: impl Into<String>,
        status: Status,
        message: impl Into<String>,
        hint: Option<&str>,
    ) -> Check {
        Check {
            name: name.into(),
            status,
            message: message.into(),
            hint: hint.map(str::to_owned),
        }
    }
}

/// Every check's outcome, in order.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    /// The checks.
    pub checks: Vec<Check>,
}

impl Report {
    /// Whether any check failed (the command exits 1).
    pub fn failed(&self) -> bool {
        self.checks.iter().any(|c| c.status == Status::Fail)
    }

    /// One line per check (`ok`, `warn` or `fail`, the check, what was found), hints beneath.
    pub fn text(&self) -> String {
        let width = self.checks.iter().map(|c| c.name.len()).max().unwrap_or(0);
        let mut out = String::new();
        for c in &self.checks {
            let status = match c.status {
                Status::Ok => "ok",
                Status::Warn => "warn",
                Status::Fail => "fail",
            };
            out.push_str(&format!("{status:<4}  {:<width$}  {}\n", c.name, c.message));
            if let Some(hint) = &c.hint {
                out.push_str(&format!("      {:<width$}  hint: {hint}\n", ""));
            }
        }
        out
    }

    /// The report as JSON: `{"checks": [{"name", "status", "message", "hint"}]}`.
    pub fn json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

/// A configuration that did not load: the one line of the report, and the reason nothing else ran.
pub fn unloadable(error: &dyn std::fmt::Display) -> Report {
    Report {
        checks: vec![Check::fail(
            "config",
            error.to_string(),
            "fix the keys named; `hestyna-obsd --config FILE check-config` prints the same messages",
        )],
    }
}

/// Runs every check that applies to `config`.
pub async fn run(config: &Config, options: &DoctorOptions) -> Report {
    let mut report = Report::default();
    // As `run` and `check-config` read it (the refusal of an unprotected `/metrics` included).
    let inputs = crate::app::Inputs::read(config, true);
    let plan = match inputs {
        Ok(inputs) => {
            let rules = config.metrics.all_rules().len();
            let sinks = config.forward.sinks.len();
            let message = format!("valid ({rules} rules, {sinks} sinks)");
            report.checks.push(Check::ok("config", message));
            Some(inputs.plan)
        }
        Err(e) => {
            report.checks.push(Check::fail(
                "config",
                e.to_string(),
                "fix what it names, then run doctor again",
            ));
            None
        }
    };
    let kafka =
        config.source.kind == SourceKind::Kafka || config.dead_letter.kind == DeadLetterKind::Kafka;
    if kafka {
        report.checks.extend(kafka::checks(config, options).await);
    }
    report
        .checks
        .extend(endpoint::checks(config, plan.as_ref(), options).await);
    if config.pipelines.forward.enabled {
        report.checks.extend(sinks::checks(config, options).await);
    }
    if let Some(path) = &options.rules {
        report
            .checks
            .extend(rules::checks(path, config, plan.as_ref()));
    }
    report
}
