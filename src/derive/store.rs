//! The series themselves, and their Prometheus text exposition.

use super::plan::SkipReason;
use super::rules::{MetricKind, RuleSpec};
use hashbrown::{Equivalent, HashMap};
use std::borrow::Cow;
use std::fmt::Write as _;
use std::hash::{Hash, Hasher};

/// Owned label values of one series, in the family's label order.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct LabelKey(Box<[Box<str>]>);

impl Hash for LabelKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_usize(self.0.len());
        for value in self.0.iter() {
            value.as_ref().hash(state);
        }
    }
}

/// Borrowed label values, to look a series up without allocating.
struct LabelRef<'a, 'b>(&'a [Cow<'b, str>]);

impl Hash for LabelRef<'_, '_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_usize(self.0.len());
        for value in self.0 {
            value.as_ref().hash(state);
        }
    }
}

impl Equivalent<LabelKey> for LabelRef<'_, '_> {
    fn equivalent(&self, key: &LabelKey) -> bool {
        self.0.len() == key.0.len()
            && self
                .0
                .iter()
                .zip(key.0.iter())
                .all(|(a, b)| a.as_ref() == b.as_ref())
    }
}

#[derive(Debug, Clone)]
enum Series {
    Counter(f64),
    Histogram {
        counts: Box<[u64]>,
        sum: f64,
        count: u64,
    },
}

/// One metric family: its definition and its series.
#[derive(Debug, Clone)]
pub(super) struct Family {
    pub(super) name: String,
    help: String,
    kind: MetricKind,
    label_names: Vec<String>,
    buckets: Vec<f64>,
    series: HashMap<LabelKey, Series>,
    skipped: [u64; 2],
}

impl Family {
    pub(super) fn new(spec: &RuleSpec) -> Self {
        Family {
            name: spec.name.clone(),
            help: spec.help.clone(),
            kind: spec.kind,
            label_names: spec.labels.keys().cloned().collect(),
            buckets: spec.buckets.clone(),
            series: HashMap::new(),
            skipped: [0; 2],
        }
    }

    fn entry(&mut self, labels: &[Cow<'_, str>]) -> &mut Series {
        let buckets = self.buckets.len();
        let kind = self.kind;
        // Look up with borrowed values; allocate only for a new series.
        if !self.series.contains_key(&LabelRef(labels)) {
            let key = LabelKey(labels.iter().map(|v| Box::from(v.as_ref())).collect());
            let series = match kind {
                MetricKind::Counter => Series::Counter(0.0),
                MetricKind::Histogram => Series::Histogram {
                    counts: vec![0; buckets + 1].into_boxed_slice(),
                    sum: 0.0,
                    count: 0,
                },
            };
            self.series.insert(key, series);
        }
        self.series
            .get_mut(&LabelRef(labels))
            .expect("inserted above")
    }
}

/// Every derived series, one family per rule.
#[derive(Debug, Clone)]
pub struct Store {
    families: Vec<Family>,
}

impl Store {
    pub(super) fn new(families: Vec<Family>) -> Self {
        Store { families }
    }

    /// Adds `value` to a counter.
    pub(super) fn add(&mut self, rule: usize, labels: &[Cow<'_, str>], value: f64) {
        if let Series::Counter(total) = self.families[rule].entry(labels) {
            *total += value;
        }
    }

    /// Observes `value` in a histogram.
    pub(super) fn observe(&mut self, rule: usize, labels: &[Cow<'_, str>], value: f64) {
        let family = &mut self.families[rule];
        let bucket = family.buckets.partition_point(|bound| *bound < value);
        if let Series::Histogram { counts, sum, count } = family.entry(labels) {
            counts[bucket] += 1;
            *sum += value;
            *count += 1;
        }
    }

    pub(super) fn skip(&mut self, rule: usize, reason: SkipReason) {
        self.families[rule].skipped[reason as usize] += 1;
    }

    /// Takes the skip counts since the last call: (rule index, reason, count).
    pub fn take_skipped(&mut self) -> Vec<(usize, SkipReason, u64)> {
        let mut out = Vec::new();
        for (index, family) in self.families.iter_mut().enumerate() {
            for (slot, reason) in [SkipReason::MissingValue, SkipReason::NegativeValue]
                .into_iter()
                .enumerate()
            {
                let n = std::mem::take(&mut family.skipped[slot]);
                if n > 0 {
                    out.push((index, reason, n));
                }
            }
        }
        out
    }

    /// The metric name of a rule.
    pub fn metric_name(&self, rule: usize) -> &str {
        &self.families[rule].name
    }

    /// (metric name, number of series) of every family.
    pub fn series_counts(&self) -> impl Iterator<Item = (&str, usize)> {
        self.families
            .iter()
            .map(|f| (f.name.as_str(), f.series.len()))
    }

    /// Appends the Prometheus text exposition (version 0.0.4) of every family, series sorted by labels.
    pub fn render(&self, out: &mut String) {
        for family in &self.families {
            let _ = writeln!(out, "# HELP {} {}", family.name, escape_help(&family.help));
            let kind = match family.kind {
                MetricKind::Counter => "counter",
                MetricKind::Histogram => "histogram",
            };
            let _ = writeln!(out, "# TYPE {} {}", family.name, kind);
            let mut series: Vec<(&LabelKey, &Series)> = family.series.iter().collect();
            series.sort_unstable_by(|a, b| a.0.cmp(b.0));
            for (key, value) in series {
                let mut labels = String::new();
                for (i, (name, v)) in family.label_names.iter().zip(key.0.iter()).enumerate() {
                    if i > 0 {
                        labels.push(',');
                    }
                    let _ = write!(labels, "{name}=\"");
                    escape_label_value(v, &mut labels);
                    labels.push('"');
                }
                match value {
                    Series::Counter(total) => {
                        let _ = writeln!(
                            out,
                            "{}{{{}}} {}",
                            family.name,
                            labels,
                            format_value(*total)
                        );
                    }
                    Series::Histogram { counts, sum, count } => {
                        let sep = if labels.is_empty() { "" } else { "," };
                        let mut cumulative = 0;
                        for (bound, n) in family
                            .buckets
                            .iter()
                            .map(|b| format_value(*b))
                            .chain([String::from("+Inf")])
                            .zip(counts.iter())
                        {
                            cumulative += n;
                            let _ = writeln!(
                                out,
                                "{}_bucket{{{labels}{sep}le=\"{bound}\"}} {cumulative}",
                                family.name
                            );
                        }
                        let _ = writeln!(
                            out,
                            "{}_sum{{{labels}}} {}",
                            family.name,
                            format_value(*sum)
                        );
                        let _ = writeln!(out, "{}_count{{{labels}}} {count}", family.name);
                    }
                }
            }
        }
    }
}

/// A sample value as Prometheus writes it: integers without a fraction, `+Inf`, `-Inf`, `NaN`.
pub fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else {
        // Rust's shortest round-trip representation, never in exponent form.
        format!("{v}")
    }
}

fn escape_help(text: &str) -> Cow<'_, str> {
    if text.contains(['\\', '\n']) {
        Cow::Owned(text.replace('\\', "\\\\").replace('\n', "\\n"))
    } else {
        Cow::Borrowed(text)
    }
}

fn escape_label_value(value: &str, out: &mut String) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::decode::decode;
    use crate::derive::{default_rules, Plan};

    #[test]
    fn renders_the_exact_exposition() {
        let plan = Plan::compile(&default_rules()).unwrap();
        let mut store = plan.new_store();
        for (org, intent, outcome, latency) in [
            ("acme", "billing", "success", 1200),
            ("acme", "billing", "failure", 6000),
            ("glo\"bex", "refund", "success", 6001),
        ] {
            let text = format!(
                r#"{{"event_id":"e","type":"llm_run","occurred_at":"2026-01-01T00:00:00Z","organization":"{}","run_id":"r","intent":"{intent}","outcome":"{outcome}","latency_ms":{latency}}}"#,
                org.replace('"', "\\\"")
            );
            plan.observe(&mut store, &decode(text.as_bytes(), None).unwrap());
        }
        let mut out = String::new();
        store.render(&mut out);
        let runs = "\
# HELP hestyna_llm_runs_total LLM runs by intent and outcome.
# TYPE hestyna_llm_runs_total counter
hestyna_llm_runs_total{intent=\"billing\",organization=\"acme\",outcome=\"failure\"} 1
hestyna_llm_runs_total{intent=\"billing\",organization=\"acme\",outcome=\"success\"} 1
hestyna_llm_runs_total{intent=\"refund\",organization=\"glo\\\"bex\",outcome=\"success\"} 1
";
        assert!(out.starts_with(runs), "{out}");
        assert!(out.contains("hestyna_llm_latency_seconds_bucket{intent=\"billing\",organization=\"acme\",le=\"5\"} 1\n"));
        assert!(out.contains("hestyna_llm_latency_seconds_bucket{intent=\"billing\",organization=\"acme\",le=\"6\"} 2\n"), "6 s lands in le=6");
        assert!(out.contains("hestyna_llm_latency_seconds_bucket{intent=\"refund\",organization=\"glo\\\"bex\",le=\"6\"} 0\n"));
        assert!(out.contains("hestyna_llm_latency_seconds_bucket{intent=\"refund\",organization=\"glo\\\"bex\",le=\"+Inf\"} 1\n"));
        assert!(out.contains(
            "hestyna_llm_latency_seconds_sum{intent=\"billing\",organization=\"acme\"} 7.2\n"
        ));
        assert!(out.contains(
            "hestyna_llm_latency_seconds_count{intent=\"billing\",organization=\"acme\"} 2\n"
        ));
        assert!(out.contains("# TYPE hestyna_requests_resolution_seconds histogram\n"));
    }
}
