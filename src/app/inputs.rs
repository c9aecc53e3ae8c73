//! What the configuration names outside itself, read once before anything starts: the metric rules
//! (compiled), the web configuration and the refusal rule of `/metrics`, the redaction rules and their
//! key, the organization table, and each sink's secret and TLS material.
//!
//! The configuration itself was checked without side effects (`config::load`); this is the step that
//! reads files and secrets, and it reports every fault it finds together, each with its key path, as
//! loading does. `check-config` runs it too, so what it accepts starts.

use super::AppError;
use crate::config::{Config, Faults};
use crate::derive::Plan;
use crate::forward::organizations::{load_live, LiveOrganizations, Stamp};
use crate::forward::redact::RedactError;
use crate::forward::sink::SinkInputs;
use crate::forward::Redactor;
use crate::http::Security;

/// Everything read and compiled from what the configuration names.
pub struct Inputs {
    /// The compiled metric rules.
    pub plan: Plan,
    /// The security of `/metrics` (the web configuration, or `http.basic_auth_users`).
    pub security: Security,
    /// The users whose password is the public demo password (found only when serving: bcrypt work).
    pub demo_users: Vec<String>,
    /// The compiled redaction rules.
    pub redactor: Redactor,
    /// The organization table, with its file's stamp for the watcher.
    pub organizations: Option<(LiveOrganizations, Stamp)>,
    /// Each sink's secret and TLS material, in `forward.sinks` order.
    pub sinks: Vec<SinkInputs>,
}

impl Inputs {
    /// Reads and compiles what `config` names. `serving`: `/metrics` will be served, so the refusal
    /// rule applies (it checks the demo password, bcrypt work that commands serving nothing skip).
    pub fn read(config: &Config, serving: bool) -> Result<Inputs, AppError> {
        let mut f = Faults::default();
        let plan = Plan::compile(&config.metrics.all_rules()).map_err(|errors| {
            for e in errors {
                let path = config.metrics.rule_path(e.rule, &e.key);
                f.add(path, format!("{} (rule {:?})", e.message, e.name));
            }
        });
        let (security, demo_users) = match security(config, serving, &mut f) {
            Some((s, demo)) => (Some(s), demo),
            None => (None, Vec::new()),
        };
        let redactor = Redactor::new(&config.forward.redaction)
            .map_err(|e| f.add(redaction_path(&e), e.to_string()));
        let organizations = match &config.forward.organizations_file {
            Some(path) => load_live(path)
                .map(Some)
                .map_err(|e| f.add("forward.organizations_file", e.to_string())),
            None => Ok(None),
        };
        let mut sinks = Vec::with_capacity(config.forward.sinks.len());
        for (name, sink) in &config.forward.sinks {
            match SinkInputs::read(sink) {
                Ok(inputs) => sinks.push(inputs),
                Err(faults) => {
                    for (key, message) in faults {
                        f.add(format!("forward.sinks.{name}.{key}"), message);
                    }
                }
            }
        }
        match (plan, security, redactor, organizations) {
            (Ok(plan), Some(security), Ok(redactor), Ok(organizations)) if f.is_empty() => {
                Ok(Inputs {
                    plan,
                    security,
                    demo_users,
                    redactor,
                    organizations,
                    sinks,
                })
            }
            _ => Err(AppError::Inputs(f.into_vec())),
        }
    }
}

/// The security in force at start, whether it may serve, and (when serving) its demo-password users.
fn security(config: &Config, serving: bool, f: &mut Faults) -> Option<(Security, Vec<String>)> {
    let http = &config.http;
    let (security, key) = match &http.web_config_file {
        Some(path) => match Security::load(path) {
            Ok(s) => (s, "http.web_config_file"),
            Err(e) => {
                f.add("http.web_config_file", e.to_string());
                return None;
            }
        },
        None => (
            Security::basic(http.basic_auth_users.clone()),
            "http.basic_auth_users",
        ),
    };
    if !serving {
        return Some((security, Vec::new()));
    }
    let demo = security.auth.demo_users();
    match crate::http::refusal(&security, &demo, http.listen, http.must_protect()) {
        Some(reason) => {
            f.add(key, reason);
            None
        }
        None => Some((security, demo)),
    }
}

/// The key a redaction fault is at.
fn redaction_path(e: &RedactError) -> String {
    match e {
        RedactError::Pattern { name, .. } => match name.strip_prefix("pattern_") {
            Some(i) => format!("forward.redaction.patterns.{i}"),
            None => "forward.redaction.builtin_patterns".into(),
        },
        RedactError::UnknownBuiltin(_) => "forward.redaction.builtin_patterns".into(),
        RedactError::Key(_) => "forward.redaction.hmac_key".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(toml: &str) -> Config {
        crate::config::from_parts(toml, "test", HashMap::new()).unwrap()
    }

    fn paths(result: Result<Inputs, AppError>) -> Vec<String> {
        match result {
            Err(AppError::Inputs(issues)) => issues.into_iter().map(|i| i.path).collect(),
            Err(e) => panic!("expected faults of the inputs, got {e}"),
            Ok(_) => Vec::new(),
        }
    }

    const OFF_LOOPBACK: &str = "[source]\nkind = \"generator\"\n[dead_letter]\nkind = \"file\"\n[http]\nlisten = \"0.0.0.0:9464\"\n";

    #[test]
    fn open_metrics_off_loopback_needs_an_explicit_yes_when_served() {
        assert_eq!(
            paths(Inputs::read(&config(OFF_LOOPBACK), true)),
            ["http.basic_auth_users"]
        );
        // Nothing is served (`replay`): nothing to refuse.
        assert!(paths(Inputs::read(&config(OFF_LOOPBACK), false)).is_empty());
        let open = format!("{OFF_LOOPBACK}allow_unauthenticated = true\n");
        assert!(paths(Inputs::read(&config(&open), true)).is_empty());
    }

    #[test]
    fn every_fault_of_what_the_configuration_names_is_reported_together() {
        let toml = format!(
            "{OFF_LOOPBACK}allow_unauthenticated = true\n\
             [forward]\norganizations_file = \"/nonexistent/orgs.csv\"\n\
             [forward.redaction]\npatterns = [\"ok\", \"a{{1000000}}\"]\n\
             [forward.sinks.s]\nkind = \"http\"\nurl = \"https://127.0.0.1:1\"\n\
             auth = {{ kind = \"bearer\", secret = {{ file = \"/nonexistent/token\" }} }}\n\
             tls = {{ ca_file = \"/nonexistent/ca.pem\" }}\n\
             [[metrics.extra_rules]]\nname = \"x_total\"\nhelp = \"x\"\ntype = \"counter\"\n\
             event_type = \"llm_run\"\nlabels = {{ a = \"no_such_field\" }}\n"
        );
        let mut found = paths(Inputs::read(&config(&toml), true));
        found.sort();
        assert_eq!(
            found,
            [
                "forward.organizations_file",
                "forward.redaction.patterns.1",
                "forward.sinks.s.auth.secret",
                "forward.sinks.s.tls.ca_file",
                "metrics.extra_rules.0.labels.a",
            ]
        );
    }
}
