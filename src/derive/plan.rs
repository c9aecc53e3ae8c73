//! Compiling rules into a plan, and applying the plan to events.

use super::field::Field;
use super::rules::{MetricKind, RuleSpec, ValueSpec};
use super::store::{Family, Store};
use super::DeriveError;
use crate::decode::{Event, EventType};
use std::borrow::Cow;

/// The most labels a rule may have.
pub const MAX_LABELS: usize = 8;

/// Why a matching event gave a rule no value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    /// The value's field is absent (a `resolved` event without `intake_at`, ...).
    MissingValue,
    /// The value is negative (a duration whose end is before its start).
    NegativeValue,
}

impl SkipReason {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::MissingValue => "missing_value",
            SkipReason::NegativeValue => "negative_value",
        }
    }
}

/// `v * scale`, computed as `v / (1 / scale)` when that divisor is a whole number (0.001 -> / 1000): a
/// single correctly rounded division, so 6000 ms is exactly 6 s and lands in the `le="6"` bucket.
fn apply_scale(v: f64, scale: f64) -> f64 {
    let divisor = 1.0 / scale;
    if scale < 1.0 && divisor.fract() == 0.0 {
        v / divisor
    } else {
        v * scale
    }
}

#[derive(Debug, Clone, Copy)]
enum Value {
    One,
    Field(Field, f64),
    Duration(Field, Field),
}

#[derive(Debug)]
struct CompiledRule {
    when: Vec<(Field, Vec<String>)>,
    labels: Vec<Field>,
    value: Value,
    histogram: bool,
}

/// Compiled rules: what to do with each event type.
#[derive(Debug)]
pub struct Plan {
    rules: Vec<CompiledRule>,
    families: Vec<Family>,
    by_type: [Vec<usize>; 4],
}

fn type_index(t: EventType) -> Option<usize> {
    EventType::KNOWN.iter().position(|k| *k == t)
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl Plan {
    /// Compiles the rules, reporting every fault of every rule.
    pub fn compile(specs: &[RuleSpec]) -> Result<Plan, Vec<DeriveError>> {
        let mut errors = Vec::new();
        let mut plan = Plan {
            rules: Vec::new(),
            families: Vec::new(),
            by_type: Default::default(),
        };
        for spec in specs {
            let mut fail = |message: String| {
                errors.push(DeriveError::Rule {
                    rule: spec.name.clone(),
                    message,
                })
            };
            if !valid_name(&spec.name) || spec.name.contains("__") && spec.name.starts_with("__") {
                fail("the name is not a valid Prometheus metric name".into());
            }
            if plan.families.iter().any(|f| f.name == spec.name)
                || specs.iter().filter(|s| s.name == spec.name).count() > 1
            {
                fail("the name is used by another rule".into());
            }
            if spec.kind == MetricKind::Counter && !spec.name.ends_with("_total") {
                fail("a counter's name must end in _total".into());
            }
            let event_type = EventType::from_name(&spec.event_type);
            let Some(type_slot) = type_index(event_type) else {
                fail(format!("unknown event_type {:?}", spec.event_type));
                continue;
            };
            let mut field = |name: &str, what: &str| {
                let f = Field::from_name(name);
                if f.is_none() {
                    errors.push(DeriveError::Rule {
                        rule: spec.name.clone(),
                        message: format!("{what}: unknown field {name:?}"),
                    });
                }
                f
            };
            let when: Vec<(Field, Vec<String>)> = spec
                .when
                .iter()
                .filter_map(|(name, values)| field(name, "when").map(|f| (f, values.clone())))
                .collect();
            let labels: Vec<Field> = spec
                .labels
                .values()
                .filter_map(|name| field(name, "labels"))
                .collect();
            let value = match &spec.value {
                None => Some(Value::One),
                Some(ValueSpec::Field { field: name, scale }) => {
                    field(name, "value").map(|f| Value::Field(f, *scale))
                }
                Some(ValueSpec::Duration {
                    duration_from,
                    duration_to,
                }) => match (field(duration_from, "value"), field(duration_to, "value")) {
                    (Some(a), Some(b)) => Some(Value::Duration(a, b)),
                    _ => None,
                },
            };
            let mut fail = |message: String| {
                errors.push(DeriveError::Rule {
                    rule: spec.name.clone(),
                    message,
                })
            };
            match value {
                Some(Value::Field(f, scale)) if !f.is_numeric() || !scale.is_finite() => {
                    fail("value: the field must be numeric and the scale finite".into())
                }
                Some(Value::Duration(a, b)) if !a.is_time() || !b.is_time() => {
                    fail("value: a duration runs between two timestamp fields".into())
                }
                _ => {}
            }
            for label in spec.labels.keys() {
                if !valid_name(label)
                    || label.starts_with("__")
                    || label == "le"
                    || label == "quantile"
                {
                    fail(format!("labels: {label:?} is not a usable label name"));
                }
            }
            if spec.labels.len() > MAX_LABELS {
                fail(format!("at most {MAX_LABELS} labels"));
            }
            let histogram = spec.kind == MetricKind::Histogram;
            if histogram {
                if matches!(value, Some(Value::One)) {
                    fail("a histogram needs a value".into());
                }
                if spec.buckets.is_empty() {
                    fail("a histogram needs buckets".into());
                }
                if spec.buckets.windows(2).any(|w| w[0] >= w[1])
                    || spec.buckets.iter().any(|b| !b.is_finite())
                {
                    fail("buckets must be finite and strictly ascending".into());
                }
            } else if !spec.buckets.is_empty() {
                fail("only histograms have buckets".into());
            }
            let (Some(value), true) = (
                value,
                labels.len() == spec.labels.len() && when.len() == spec.when.len(),
            ) else {
                continue;
            };
            plan.by_type[type_slot].push(plan.rules.len());
            plan.rules.push(CompiledRule {
                when,
                labels,
                value,
                histogram,
            });
            plan.families.push(Family::new(spec));
        }
        if errors.is_empty() {
            Ok(plan)
        } else {
            Err(errors)
        }
    }

    /// An empty store for this plan's series.
    pub fn new_store(&self) -> Store {
        Store::new(self.families.clone())
    }

    /// Applies every rule of the event's type to it.
    pub fn observe(&self, store: &mut Store, ev: &Event<'_>) {
        let Some(slot) = type_index(ev.event_type()) else {
            return;
        };
        for &index in &self.by_type[slot] {
            let rule = &self.rules[index];
            let matches = rule.when.iter().all(|(field, allowed)| {
                field
                    .text(ev)
                    .is_some_and(|value| allowed.iter().any(|a| a.as_str() == value.as_ref()))
            });
            if !matches {
                continue;
            }
            let value = match rule.value {
                Value::One => Ok(1.0),
                Value::Field(field, scale) => field
                    .number(ev)
                    .map(|v| apply_scale(v, scale))
                    .ok_or(SkipReason::MissingValue),
                Value::Duration(from, to) => match (from.time(ev), to.time(ev)) {
                    (Some(a), Some(b)) => Ok((b - a)
                        .num_microseconds()
                        .map_or(f64::MAX, |us| us as f64 / 1e6)),
                    _ => Err(SkipReason::MissingValue),
                },
            };
            let value = match value {
                Ok(v) if v < 0.0 => Err(SkipReason::NegativeValue),
                other => other,
            };
            let value = match value {
                Ok(v) => v,
                Err(reason) => {
                    store.skip(index, reason);
                    continue;
                }
            };
            let mut labels: [Cow<'_, str>; MAX_LABELS] = Default::default();
            for (slot, field) in labels.iter_mut().zip(&rule.labels) {
                *slot = field.text(ev).unwrap_or(Cow::Borrowed(""));
            }
            let labels = &labels[..rule.labels.len()];
            if rule.histogram {
                store.observe(index, labels, value);
            } else {
                store.add(index, labels, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::decode;
    use crate::derive::default_rules;

    fn spec(name: &str) -> RuleSpec {
        default_rules()
            .into_iter()
            .find(|r| r.name == name)
            .unwrap()
    }

    #[test]
    fn the_default_rules_compile() {
        Plan::compile(&default_rules()).unwrap();
    }

    #[test]
    fn reports_every_fault_of_every_rule() {
        let mut bad = spec("hestyna_llm_latency_seconds");
        bad.name = "bad name".into();
        bad.labels.insert("x".into(), "no_such_field".into());
        bad.buckets = vec![2.0, 1.0];
        let mut counter = spec("hestyna_llm_runs_total");
        counter.event_type = "nope".into();
        let errors = Plan::compile(&[bad, counter]).unwrap_err();
        let text: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(errors.len(), 4, "{text:#?}");
        assert!(text
            .iter()
            .any(|t| t.contains("unknown field \"no_such_field\"")));
        assert!(text.iter().any(|t| t.contains("ascending")));
        assert!(text.iter().any(|t| t.contains("unknown event_type")));
    }

    #[test]
    fn a_condition_selects_events() {
        let plan = Plan::compile(&[spec("hestyna_integration_failures_total")]).unwrap();
        let mut store = plan.new_store();
        let call = |outcome: &str| {
            format!(
                r#"{{"event_id":"e","type":"integration_call","occurred_at":"2026-01-01T00:00:00Z","organization":"o","integration":"stripe","outcome":"{outcome}"}}"#
            )
        };
        for outcome in ["failure", "success", "failure"] {
            plan.observe(&mut store, &decode(call(outcome).as_bytes(), None).unwrap());
        }
        let mut out = String::new();
        store.render(&mut out);
        assert!(
            out.contains(
                "hestyna_integration_failures_total{integration=\"stripe\",organization=\"o\"} 2\n"
            ),
            "{out}"
        );
    }

    #[test]
    fn a_duration_without_its_start_is_skipped_and_counted() {
        let plan = Plan::compile(&[spec("hestyna_requests_resolution_seconds")]).unwrap();
        let mut store = plan.new_store();
        let ev = |extra: &str| {
            format!(
                r#"{{"event_id":"e","type":"request_lifecycle","occurred_at":"2026-01-01T01:00:00Z","organization":"o","request_id":"r","stage":"resolved"{extra}}}"#
            )
        };
        plan.observe(&mut store, &decode(ev("").as_bytes(), None).unwrap());
        plan.observe(
            &mut store,
            &decode(
                ev(r#","intake_at":"2026-01-01T02:00:00Z""#).as_bytes(),
                None,
            )
            .unwrap(),
        );
        plan.observe(
            &mut store,
            &decode(
                ev(r#","intake_at":"2026-01-01T00:00:00+00:00""#).as_bytes(),
                None,
            )
            .unwrap(),
        );
        let skipped = store.take_skipped();
        assert_eq!(
            skipped,
            vec![
                (0, SkipReason::MissingValue, 1),
                (0, SkipReason::NegativeValue, 1)
            ]
        );
        let mut out = String::new();
        store.render(&mut out);
        assert!(
            out.contains(
                "hestyna_requests_resolution_seconds_bucket{organization=\"o\",le=\"3600\"} 1\n"
            ),
            "{out}"
        );
        assert!(
            out.contains(
                "hestyna_requests_resolution_seconds_bucket{organization=\"o\",le=\"1800\"} 0\n"
            ),
            "{out}"
        );
        assert!(
            out.contains("hestyna_requests_resolution_seconds_sum{organization=\"o\"} 3600\n"),
            "{out}"
        );
    }
}
