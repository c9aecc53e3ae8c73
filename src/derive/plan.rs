//! Compiling rules into a plan, and applying the plan to events.

use super::field::Field;
use super::prepared::{Cursor, Prepared, SkipReason};
use super::rules::{organization_budget, MetricKind, RuleSpec, ValueSpec};
use super::store::{
    push_exemplar_pair, push_label_value, ExemplarIn, FamilyDef, Store, WindowDef,
    EXEMPLAR_MAX_CHARS,
};
use super::DeriveError;
use crate::decode::{Event, EventType};
use std::borrow::Cow;

/// The most labels a family may have.
pub const MAX_LABELS: usize = 8;

#[derive(Debug, Clone, Copy)]
enum Value {
    One,
    /// A numeric field, divided by this (1 for none): one correctly rounded division, so 6000 ms is
    /// exactly 6 s and lands in the `le="6"` bucket.
    Field(Field, f64),
    Duration(Field, Field),
}

#[derive(Debug)]
enum LabelPlan {
    Field { field: Field, default: Box<str> },
    Const(Box<str>),
}

#[derive(Debug)]
struct CompiledRule {
    family: usize,
    window: Option<usize>,
    when: Vec<(Field, Vec<String>)>,
    labels: Vec<LabelPlan>,
    value: Value,
    histogram: bool,
    max_label_length: usize,
    /// The exemplar's fields, with their label names and those names' places in the family's
    /// `exemplar_names` (empty: no exemplar).
    exemplar: Vec<(Field, String, usize)>,
}

/// Compiled rules: what to do with each event type.
#[derive(Debug)]
pub struct Plan {
    rules: Vec<CompiledRule>,
    families: Vec<FamilyDef>,
    windows: Vec<WindowDef>,
    /// Rules by event type, in `EventType::KNOWN` order.
    by_type: [Vec<usize>; EventType::KNOWN.len()],
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

/// Replaces control characters and cuts the value to `max` bytes (at a character boundary); borrows when
/// nothing needs changing.
#[inline]
pub(crate) fn sanitize(value: Cow<'_, str>, max: usize) -> (Cow<'_, str>, bool) {
    // Printable ASCII (the usual label value) is checked eight bytes at a time; anything else char by char.
    if value.len() <= max
        && (printable_ascii(value.as_bytes()) || !value.chars().any(char::is_control))
    {
        return (value, false);
    }
    (Cow::Owned(cleaned(&value, max)), true)
}

/// Whether every byte is in `0x20..0x7f`.
#[inline]
fn printable_ascii(bytes: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    // The high bit of a byte of the result is set where that byte of `word` is below 0x20 or above 0x7e
    // (borrows and carries can only add flags next to a byte already flagged, which does not change
    // whether any is set).
    let outside = |word: u64| {
        let below = word.wrapping_sub(ONES * 0x20) & !word;
        let above = word.wrapping_add(ONES) | word;
        (below | above) & HIGHS
    };
    let mut chunks = bytes.chunks_exact(8);
    let mut flags = 0;
    for chunk in &mut chunks {
        flags |= outside(u64::from_le_bytes(chunk.try_into().expect("eight bytes")));
    }
    // The tail, padded with spaces (printable).
    let mut tail = [b' '; 8];
    tail[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
    flags |= outside(u64::from_le_bytes(tail));
    flags == 0
}

/// `value` with control characters replaced, cut to `max` bytes at a character boundary.
#[cold]
fn cleaned(value: &str, max: usize) -> String {
    let mut out = String::with_capacity(value.len().min(max));
    for c in value.chars() {
        let c = if c.is_control() { '\u{fffd}' } else { c };
        if out.len() + c.len_utf8() > max {
            break;
        }
        out.push(c);
    }
    out
}

/// Reports a fault of the rule being compiled: (its key, what is wrong).
type Fail<'a> = &'a mut dyn FnMut(&str, String);

/// The name must suit the metric's type.
fn check_name(spec: &RuleSpec, fail: Fail<'_>) {
    if !valid_name(&spec.name) {
        fail("name", "not a valid Prometheus metric name".into());
    }
    if spec.kind == MetricKind::Counter && !spec.name.ends_with("_total") {
        fail("name", "a counter's name must end in _total".into());
    }
    if spec.kind == MetricKind::Histogram && spec.name.ends_with("_total") {
        fail("name", "a histogram's name must not end in _total".into());
    }
}

/// The `when` filters, fields resolved.
fn compile_when(spec: &RuleSpec, fail: Fail<'_>) -> Vec<(Field, Vec<String>)> {
    let mut when = Vec::new();
    for (name, values) in &spec.when {
        match Field::from_name(name) {
            Some(f) => when.push((f, values.clone())),
            None => fail(&format!("when.{name}"), "unknown field".into()),
        }
    }
    when
}

/// The labels in the family's order (sorted by name, rule labels and constant labels together): their
/// names and how each gets its value.
fn compile_labels(spec: &RuleSpec, fail: Fail<'_>) -> (Vec<String>, Vec<LabelPlan>) {
    let mut names: Vec<&String> = spec.labels.keys().chain(spec.const_labels.keys()).collect();
    names.sort();
    for pair in names.windows(2).filter(|w| w[0] == w[1]) {
        fail(
            &format!("const_labels.{}", pair[0]),
            "also in labels".into(),
        );
    }
    let mut labels = Vec::new();
    for name in &names {
        let reserved = name.starts_with("__") || *name == "le" || *name == "quantile";
        if !valid_name(name) || reserved {
            fail(&format!("labels.{name}"), "not a usable label name".into());
        }
        let Some(source) = spec.labels.get(*name) else {
            // Sanitised like any value: the store relies on label values holding no NUL.
            let value = spec.const_labels[*name].as_str();
            let (value, _) = sanitize(Cow::Borrowed(value), spec.max_label_length);
            labels.push(LabelPlan::Const(value.as_ref().into()));
            continue;
        };
        match Field::from_name(source.field()) {
            Some(field) => labels.push(LabelPlan::Field {
                field,
                default: source.default_value().into(),
            }),
            None => fail(
                &format!("labels.{name}"),
                format!("unknown field {:?}", source.field()),
            ),
        }
    }
    if names.len() > MAX_LABELS {
        fail("labels", format!("at most {MAX_LABELS} labels"));
    }
    (names.into_iter().cloned().collect(), labels)
}

/// What a matching event adds: one, a numeric field (in its unit), or the time between two fields.
fn compile_value(spec: &RuleSpec, fail: Fail<'_>) -> Option<Value> {
    let mut field_of = |name: &str| {
        let f = Field::from_name(name);
        if f.is_none() {
            fail("value", format!("unknown field {name:?}"));
        }
        f
    };
    let (value, fault) = match &spec.value {
        None => (Some(Value::One), None),
        Some(ValueSpec::Field(v)) => match field_of(&v.field) {
            Some(f) if !f.is_numeric() => (None, Some(format!("{:?} is not numeric", v.field))),
            Some(f) => (
                Some(Value::Field(f, v.unit.map_or(1.0, |u| u.per_second()))),
                None,
            ),
            None => (None, None),
        },
        Some(ValueSpec::Duration(d)) => {
            match (field_of(&d.duration_from), field_of(&d.duration_to)) {
                (Some(a), Some(b)) if a.is_time() && b.is_time() => {
                    (Some(Value::Duration(a, b)), None)
                }
                (Some(_), Some(_)) => (
                    None,
                    Some("a duration runs between two timestamp fields".to_owned()),
                ),
                _ => (None, None),
            }
        }
    };
    if let Some(fault) = fault {
        fail("value", fault);
    }
    value
}

/// The exemplar's fields: each a field of the event, named once.
fn compile_exemplar(spec: &RuleSpec, fail: Fail<'_>) -> Vec<(Field, String)> {
    let mut fields = Vec::new();
    for (i, name) in spec.exemplar.iter().enumerate() {
        let key = format!("exemplar[{i}]");
        match Field::from_name(name) {
            None => fail(&key, format!("unknown field {name:?}")),
            Some(_) if spec.exemplar[..i].contains(name) => {
                fail(&key, format!("{name:?} is named twice"))
            }
            Some(field) => fields.push((field, name.clone())),
        }
    }
    fields
}

/// What only histograms have (a value, buckets, a window), and the limits every rule has.
fn check_shape(spec: &RuleSpec, value: Option<&Value>, fail: Fail<'_>) {
    if spec.kind == MetricKind::Histogram {
        if matches!(value, Some(Value::One)) {
            fail("value", "a histogram needs a value".into());
        }
        if spec.buckets.is_empty() {
            fail("buckets", "a histogram needs buckets".into());
        }
        let b = &spec.buckets;
        if b.windows(2).any(|w| w[0] >= w[1]) || b.iter().any(|b| !b.is_finite()) {
            fail("buckets", "must be finite and strictly ascending".into());
        }
    } else {
        if !spec.buckets.is_empty() {
            fail("buckets", "only histograms have buckets".into());
        }
        if spec.window.is_some() {
            fail("window", "only histograms have a window".into());
        }
    }
    if spec.max_series == 0 {
        fail("max_series", "must be at least 1".into());
    }
    if spec.max_label_length < 8 {
        fail("max_label_length", "must be at least 8".into());
    }
}

/// The window's settings, and its name against every rule's.
fn check_window(spec: &RuleSpec, specs: &[RuleSpec], fail: Fail<'_>) {
    let Some(w) = &spec.window else {
        return;
    };
    if !valid_name(&w.name) || specs.iter().any(|s| s.name == w.name) {
        fail(
            "window.name",
            "must be a valid metric name, distinct from every rule's".into(),
        );
    }
    let same_name = |s: &&RuleSpec| s.window.as_ref().is_some_and(|o| o.name == w.name);
    if specs.iter().filter(same_name).count() > 1 {
        fail("window.name", "used by another rule's window".into());
    }
    if w.seconds == 0 || w.slices == 0 || w.slices as u64 > w.seconds {
        fail("window.slices", "need 1 <= slices <= seconds".into());
    }
    if w.quantiles.is_empty() || w.quantiles.iter().any(|q| !(*q > 0.0 && *q <= 1.0)) {
        fail("window.quantiles", "each in (0, 1]".into());
    }
    if !(1..=5).contains(&w.significant_digits) {
        fail("window.significant_digits", "between 1 and 5".into());
    }
    if !(w.resolution > 0.0 && w.resolution.is_finite()) {
        fail("window.resolution", "must be > 0".into());
    }
    if w.max_series == 0 {
        fail("window.max_series", "must be at least 1".into());
    }
}

impl Plan {
    /// Compiles the rules, reporting every fault of every rule.
    pub fn compile(specs: &[RuleSpec]) -> Result<Plan, Vec<DeriveError>> {
        let mut errors = Vec::new();
        let mut plan = Plan {
            rules: Vec::new(),
            families: Vec::new(),
            windows: Vec::new(),
            by_type: Default::default(),
        };
        for (index, spec) in specs.iter().enumerate() {
            let mut fail = |key: &str, message: String| {
                errors.push(DeriveError {
                    rule: index,
                    name: spec.name.clone(),
                    key: key.into(),
                    message,
                })
            };
            plan.add_rule(spec, specs, &mut fail);
        }
        match errors.is_empty() {
            true => Ok(plan),
            false => Err(errors),
        }
    }

    /// Compiles one rule into the plan; a rule with any fault is reported and left out.
    fn add_rule(&mut self, spec: &RuleSpec, specs: &[RuleSpec], fail: Fail<'_>) {
        let mut faulty = false;
        let mut fail = |key: &str, message: String| {
            faulty = true;
            fail(key, message)
        };
        check_name(spec, &mut fail);
        let type_slot = type_index(EventType::from_name(&spec.event_type));
        if type_slot.is_none() {
            let message = format!("unknown event type {:?}", spec.event_type);
            fail("event_type", message);
        }
        let when = compile_when(spec, &mut fail);
        let (label_names, labels) = compile_labels(spec, &mut fail);
        let value = compile_value(spec, &mut fail);
        check_shape(spec, value.as_ref(), &mut fail);
        check_window(spec, specs, &mut fail);
        let exemplar = compile_exemplar(spec, &mut fail);
        let family = self.family_for(spec, &label_names, &mut fail);
        let exemplar = self.name_exemplar(family, exemplar);
        let (Some(value), Some(slot), false) = (value, type_slot, faulty) else {
            return;
        };
        let window = spec.window.as_ref().map(|w| {
            let help = spec.help.clone();
            self.windows.push(WindowDef::new(w, label_names, help));
            self.windows.len() - 1
        });
        self.by_type[slot].push(self.rules.len());
        self.rules.push(CompiledRule {
            family,
            window,
            when,
            labels,
            value,
            histogram: spec.kind == MetricKind::Histogram,
            max_label_length: spec.max_label_length,
            exemplar,
        });
    }

    /// The family the rule's series go to: a new one, or the earlier rule's of the same name, which
    /// must agree on its shape (the smaller series limit wins).
    fn family_for(&mut self, spec: &RuleSpec, label_names: &[String], fail: Fail<'_>) -> usize {
        let Some(existing) = self.families.iter().position(|f| f.name == spec.name) else {
            self.families.push(FamilyDef {
                name: spec.name.clone(),
                help: spec.help.clone(),
                kind: spec.kind,
                label_names: label_names.to_vec(),
                buckets: spec.buckets.clone(),
                max_series: spec.max_series,
                max_series_per_organization: organization_budget(
                    spec.max_series,
                    spec.max_series_per_organization,
                ),
                expire_after_secs: spec.expire_after_secs,
                exemplar_names: Vec::new(),
            });
            return self.families.len() - 1;
        };
        let f = &mut self.families[existing];
        if f.kind != spec.kind
            || f.help != spec.help
            || f.label_names != label_names
            || f.buckets != spec.buckets
        {
            fail(
                "name",
                "shared with an earlier rule that differs in type, help, label names or buckets"
                    .into(),
            );
        }
        if f.expire_after_secs != spec.expire_after_secs {
            fail(
                "expire_after_secs",
                "differs from an earlier rule of the same metric".into(),
            );
        }
        f.max_series = f.max_series.min(spec.max_series);
        f.max_series_per_organization = f.max_series_per_organization.min(organization_budget(
            spec.max_series,
            spec.max_series_per_organization,
        ));
        existing
    }

    /// Gives each exemplar field its name's place in the family's `exemplar_names`, adding the names
    /// no earlier rule of the family used. Names are field names, fewer than
    /// [`EXEMPLAR_MAX_NAMES`](super::store::EXEMPLAR_MAX_NAMES).
    fn name_exemplar(
        &mut self,
        family: usize,
        fields: Vec<(Field, String)>,
    ) -> Vec<(Field, String, usize)> {
        let names = &mut self.families[family].exemplar_names;
        fields
            .into_iter()
            .map(|(field, name)| {
                let at = names.iter().position(|n| *n == name).unwrap_or_else(|| {
                    names.push(name.clone());
                    names.len() - 1
                });
                (field, name, at)
            })
            .collect()
    }

    /// The names of the plan's families and windows: the `metric` label values of the self metrics
    /// about rules.
    pub fn metric_names(&self) -> impl Iterator<Item = &str> {
        let families = self.families.iter().map(|f| f.name.as_str());
        families.chain(self.windows.iter().map(|w| w.name()))
    }

    /// An empty store for this plan's series.
    pub fn new_store(&self) -> Store {
        Store::new(&self.families, &self.windows)
    }

    /// Applies every rule of the event's type to it: [`Plan::prepare`] then [`Plan::apply`], on this
    /// thread.
    pub fn observe(&self, store: &mut Store, ev: &Event<'_>) {
        let mut prepared = store.take_prepared();
        self.prepare(0, ev, &mut prepared);
        self.apply(store, 0, ev, &prepared, &mut Cursor::default());
        store.put_prepared(prepared);
    }

    /// Works out, without the store, what every rule of the event's type makes of it (the event at
    /// `at` of its batch; events in ascending order): which rules match, their values or why they have
    /// none, and their series keys, sanitised. Appends to `out`.
    pub fn prepare(&self, at: usize, ev: &Event<'_>, out: &mut Prepared) {
        let Some(slot) = type_index(ev.event_type()) else {
            return;
        };
        for &index in &self.by_type[slot] {
            let rule = &self.rules[index];
            if !rule.matches(ev) {
                continue;
            }
            let value = rule.value_of(ev);
            let start = out.keys_mut().len();
            let mut sanitized = false;
            if value.is_ok() {
                let key = out.keys_mut();
                for label in &rule.labels {
                    match label {
                        LabelPlan::Const(v) => push_label_value(key, v),
                        LabelPlan::Field { field, default } => {
                            let (v, changed) = sanitize(
                                field.text(ev).unwrap_or(Cow::Borrowed(default.as_ref())),
                                rule.max_label_length,
                            );
                            sanitized |= changed;
                            push_label_value(key, &v);
                        }
                    }
                }
            }
            out.push(at, index, value, start, sanitized);
        }
    }

    /// Applies to the store what [`Plan::prepare`] made of the event at `at` (`ev` itself, for its
    /// exemplars). `cursor` walks `prepared`: give it the batch's events in the order they were
    /// prepared.
    pub fn apply(
        &self,
        store: &mut Store,
        at: usize,
        ev: &Event<'_>,
        prepared: &Prepared,
        cursor: &mut Cursor,
    ) {
        for op in prepared.ops_of(at, &mut cursor.0) {
            let rule = &self.rules[op.rule as usize];
            let value = match op.value {
                Ok(v) => v,
                Err(reason) => {
                    store.skip(rule.family, reason);
                    continue;
                }
            };
            if op.sanitized {
                store.note_sanitized(rule.family);
            }
            let key = prepared.key(op);
            let write = |packed: &mut Vec<u8>| write_exemplar(&rule.exemplar, ev, packed);
            let exemplar = (!rule.exemplar.is_empty()).then_some(ExemplarIn {
                write: &write,
                timestamp_ms: ev.occurred_at.timestamp_millis(),
            });
            if rule.histogram {
                store.observe(rule.family, key, value, exemplar);
            } else {
                store.add(rule.family, key, value, exemplar);
            }
            if let Some(window) = rule.window {
                store.window_record(window, key, value);
            }
        }
    }
}

impl CompiledRule {
    /// Whether the event meets every condition of the rule.
    fn matches(&self, ev: &Event<'_>) -> bool {
        self.when.iter().all(|(field, allowed)| {
            field
                .text(ev)
                .is_some_and(|value| allowed.iter().any(|a| a.as_str() == value.as_ref()))
        })
    }

    /// The rule's value for a matching event, or why it has none.
    fn value_of(&self, ev: &Event<'_>) -> Result<f64, SkipReason> {
        let value = match self.value {
            Value::One => Ok(1.0),
            Value::Field(field, divisor) => field
                .number(ev)
                .map(|v| v / divisor)
                .ok_or(SkipReason::MissingValue),
            Value::Duration(from, to) => match (from.time(ev), to.time(ev)) {
                (Some(a), Some(b)) => Ok((b - a)
                    .num_microseconds()
                    .map_or(f64::MAX, |us| us as f64 / 1e6)),
                _ => Err(SkipReason::MissingValue),
            },
        };
        match value {
            Ok(v) if v < 0.0 => Err(SkipReason::NegativeValue),
            other => other,
        }
    }
}

/// Writes the exemplar labels of an event for a rule (the fields it has), within OpenMetrics' 128
/// characters, control characters replaced as in label values ([`sanitize`]).
fn write_exemplar(fields: &[(Field, String, usize)], ev: &Event<'_>, packed: &mut Vec<u8>) {
    let mut budget = EXEMPLAR_MAX_CHARS;
    for (field, name, index) in fields {
        if let Some(value) = field.text(ev) {
            let (value, _) = sanitize(value, usize::MAX);
            budget = push_exemplar_pair(packed, *index, name, &value, budget);
        }
    }
}

#[cfg(test)]
mod tests;
