//! The alert rules check: every family a rule reads is one the daemon exports, and every alert carries
//! `summary`, `description` and `runbook_url`.

use super::Check;
use crate::config::Config;
use crate::derive::Plan;
use crate::telemetry::SelfMetrics;
use std::path::Path;

pub(super) fn checks(path: &Path, _config: &Config, plan: Option<&Plan>) -> Vec<Check> {
    let name = "rules";
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            return vec![Check::fail(
                name,
                format!("{}: {e}", path.display()),
                "--rules names a Prometheus rules file",
            )]
        }
    };
    let file: serde_json::Value = match serde_norway::from_str(&text) {
        Ok(v) => v,
        Err(e) => {
            return vec![Check::fail(
                name,
                format!("{}: {e}", path.display()),
                "not YAML: `promtool check rules` says more",
            )]
        }
    };
    let mut known: Vec<String> = SelfMetrics::NAMES.iter().map(|n| n.to_string()).collect();
    known.extend(
        plan.into_iter()
            .flat_map(|p| p.metric_names().map(str::to_owned)),
    );
    let exported = |family: &str| {
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| family.strip_suffix(s));
        family == "up"
            || known
                .iter()
                .any(|k| k == family || Some(k.as_str()) == base)
    };
    let (mut unknown, mut bare, mut alerts) = (Vec::new(), Vec::new(), 0);
    let groups = file["groups"].as_array().cloned().unwrap_or_default();
    for rule in groups
        .iter()
        .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
    {
        let title = rule["alert"]
            .as_str()
            .or(rule["record"].as_str())
            .unwrap_or("?")
            .to_owned();
        let expr = rule["expr"].as_str().unwrap_or("");
        let unexported = families_read(expr).into_iter().filter(|f| !exported(f));
        unknown.extend(unexported.map(|f| format!("{title}: {f}")));
        if rule.get("alert").is_some() {
            alerts += 1;
            let missing = missing_annotations(&rule);
            if !missing.is_empty() {
                bare.push(format!("{title} (no {})", missing.join(", ")));
            }
        }
    }
    let mut out = Vec::new();
    out.push(if unknown.is_empty() {
        Check::ok(
            "rules.families",
            format!(
                "every family the rules read is exported ({})",
                path.display()
            ),
        )
    } else {
        Check::fail(
            "rules.families",
            format!("not exported: {}", unknown.join("; ")),
            "a typo, or a family of a rule this configuration does not have",
        )
    });
    out.push(if bare.is_empty() {
        Check::ok(
            "rules.annotations",
            format!("all {alerts} alerts have summary, description and runbook_url"),
        )
    } else {
        Check::fail(
            "rules.annotations",
            bare.join("; "),
            "responders need the context: add the annotations (see config/prometheus/)",
        )
    });
    out
}

/// The annotations a responder needs that an alert lacks.
fn missing_annotations(rule: &serde_json::Value) -> Vec<&'static str> {
    let present = |k: &str| {
        rule["annotations"][k]
            .as_str()
            .is_some_and(|v| !v.is_empty())
    };
    ["summary", "description", "runbook_url"]
        .into_iter()
        .filter(|k| !present(k))
        .collect()
}

/// The metric names an expression reads (`hestyna_*` and `up`; recorded series, with a colon, and
/// quoted strings aside), each once.
pub fn families_read(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let (mut quoted, mut word) = (false, String::new());
    for c in expr.chars().chain(std::iter::once(' ')) {
        if c == '"' {
            quoted = !quoted;
        }
        if !quoted && (c.is_ascii_alphanumeric() || c == '_' || c == ':') {
            word.push(c);
            continue;
        }
        if (word.starts_with("hestyna_") || word == "up")
            && !word.contains(':')
            && !out.contains(&word)
        {
            out.push(word.clone());
        }
        word.clear();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::families_read;

    #[test]
    fn reads_metric_names_not_strings_nor_recorded_series() {
        let expr = r#"sum(rate(hestyna_llm_runs_total{intent="hestyna_x"}[5m])) / a:hestyna_b:rate5m > up"#;
        assert_eq!(families_read(expr), ["hestyna_llm_runs_total", "up"]);
    }
}
