//! The series themselves: limits, expiry, windows, and their exposition.

use super::prepared::{Prepared, SkipReason};
use super::rules::{MetricKind, WindowSpec};
use super::window::SlidingWindow;
use crate::shared::exposition::{
    format_value, ExemplarRef, FamilyType, Format, Labels, Number, Writer,
};
use crate::telemetry::events::DerivedCounts;
use crate::telemetry::SelfMetrics;
use hashbrown::hash_map::EntryRef;
use hashbrown::{Equivalent, HashMap};
use std::borrow::Cow;
use std::collections::BTreeSet;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// The label value of the series that label sets past a rule's limit are folded into.
pub const OVERFLOW: &str = "__overflow__";

/// Owned label values of one series, in the family's label order: each value followed by a NUL, in one
/// allocation. Values never hold a NUL (the sanitiser replaces control characters), so the bytes split
/// back into the values, and comparing the bytes orders keys as comparing the tuples of values would.
/// One allocation per series (not one per value) keeps a scrape's walk over 100,000 series to one cache
/// miss per series.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct LabelKey(Arc<str>);

const END: char = '\0';

/// Appends one label value to a series key as the store's keys hold it (the value, then a NUL). Every key
/// is written through here, by the plan and by [`LabelKey::from_ref`].
pub(super) fn push_label_value(key: &mut String, value: &str) {
    key.push_str(value);
    key.push(END);
}

impl Hash for LabelKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // As `Encoded` hashes: the bytes, in one call.
        state.write(self.0.as_bytes());
    }
}

/// Label values encoded as a [`LabelKey`] holds them (each followed by a NUL), borrowed from the buffer
/// the plan wrote them into: a lookup hashes them in one call and compares them in one slice comparison,
/// without allocating.
struct Encoded<'a>(&'a str);

impl Hash for Encoded<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write(self.0.as_bytes());
    }
}

impl From<&Encoded<'_>> for LabelKey {
    fn from(labels: &Encoded<'_>) -> Self {
        LabelKey(Arc::from(labels.0))
    }
}

impl Equivalent<LabelKey> for Encoded<'_> {
    fn equivalent(&self, key: &LabelKey) -> bool {
        *key.0 == *self.0
    }
}

impl LabelKey {
    fn from_ref(labels: &[Cow<'_, str>]) -> Self {
        let mut text = String::with_capacity(labels.iter().map(|v| v.len() + 1).sum());
        for value in labels {
            push_label_value(&mut text, value);
        }
        LabelKey(Arc::from(text))
    }

    fn values(&self) -> std::str::SplitTerminator<'_, char> {
        self.0.split_terminator(END)
    }

    /// Writes the series' labels, escaped for the exposition, into `labels`.
    fn write_labels(&self, names: &[String], labels: &mut Labels) {
        labels.set(names.iter().map(String::as_str), self.values())
    }

    /// The first 16 bytes, zero-padded, big-endian: ordered as the keys are (a prefix orders as its
    /// whole), and unequal for most unequal keys.
    fn prefix(&self) -> u128 {
        let mut bytes = [0u8; 16];
        let n = self.0.len().min(bytes.len());
        bytes[..n].copy_from_slice(&self.0.as_bytes()[..n]);
        u128::from_be_bytes(bytes)
    }

    fn overflow(len: usize) -> Self {
        LabelKey::from_ref(&vec![Cow::Borrowed(OVERFLOW); len])
    }

    /// The overflow series of one organization: its value at `at`, `__overflow__` elsewhere.
    fn organization_overflow(len: usize, at: usize, organization: &str) -> Self {
        let mut values = vec![Cow::Borrowed(OVERFLOW); len];
        values[at] = Cow::Borrowed(organization);
        LabelKey::from_ref(&values)
    }
}

/// Who holds a family's series: each organization's count of them (when the family has an
/// `organization` label) and how many overflow series there are, so that the limit counts live series
/// and one organization cannot take more than its share of them.
#[derive(Debug, Clone, Default)]
struct Budget {
    /// Where `organization` is among the label values.
    organization_at: Option<usize>,
    /// Series one organization may hold.
    per_organization: usize,
    held: HashMap<Box<str>, usize>,
    /// Overflow series present (the family's, and organizations' own).
    overflow_series: usize,
}

/// Where a new label set goes.
enum Placement {
    /// A series of its own.
    Own,
    /// Into this overflow series (the organization's own, or the family's).
    Overflow(LabelKey),
}

impl Budget {
    fn new(label_names: &[String], per_organization: usize) -> Self {
        Budget {
            organization_at: label_names.iter().position(|n| n == "organization"),
            per_organization,
            ..Budget::default()
        }
    }

    fn organization<'k>(&self, key: &'k str) -> Option<&'k str> {
        key.split_terminator(END).nth(self.organization_at?)
    }

    /// Where the new label set `key` goes, with `live` series of at most `max` in the family.
    fn place(&self, key: &str, live: usize, max: usize, labels: usize) -> Placement {
        if live >= max {
            return Placement::Overflow(LabelKey::overflow(labels));
        }
        match (self.organization_at, self.organization(key)) {
            (Some(at), Some(org))
                if self.held.get(org).copied().unwrap_or(0) >= self.per_organization =>
            {
                Placement::Overflow(LabelKey::organization_overflow(labels, at, org))
            }
            _ => Placement::Own,
        }
    }

    /// Counts a new series of its own.
    fn add(&mut self, key: &str) {
        if let Some(org) = self.organization(key) {
            match self.held.get_mut(org) {
                Some(n) => *n += 1,
                None => {
                    self.held.insert(org.into(), 1);
                }
            }
        }
    }

    /// Whether `key` is an overflow series (every value `__overflow__` but, maybe, the organization).
    fn is_overflow(&self, key: &str) -> bool {
        key.split_terminator(END)
            .enumerate()
            .all(|(i, v)| v == OVERFLOW || Some(i) == self.organization_at)
            && key.split_terminator(END).any(|v| v == OVERFLOW)
    }

    /// Counts again from the keys left (after expiry).
    fn recount<'k>(&mut self, keys: impl Iterator<Item = &'k LabelKey>) {
        self.held.clear();
        self.overflow_series = 0;
        for key in keys {
            if self.is_overflow(&key.0) {
                self.overflow_series += 1;
            } else {
                self.add(&key.0);
            }
        }
    }
}

/// A family's definition, from the rules that feed it.
#[derive(Debug, Clone)]
pub(super) struct FamilyDef {
    pub(super) name: String,
    pub(super) help: String,
    pub(super) kind: MetricKind,
    pub(super) label_names: Vec<String>,
    pub(super) buckets: Vec<f64>,
    pub(super) max_series: usize,
    /// Series one organization may hold.
    pub(super) max_series_per_organization: usize,
    pub(super) expire_after_secs: u64,
}

/// A window family's definition.
#[derive(Debug, Clone)]
pub(super) struct WindowDef {
    name: String,
    help: String,
    label_names: Vec<String>,
    slice_secs: u64,
    slices: u32,
    quantiles: Vec<(f64, String)>,
    significant_digits: u8,
    resolution: f64,
    max_series: usize,
    seconds: u64,
}

impl WindowDef {
    /// The window's metric name.
    pub(super) fn name(&self) -> &str {
        &self.name
    }

    pub(super) fn new(spec: &WindowSpec, label_names: Vec<String>, help: String) -> Self {
        WindowDef {
            name: spec.name.clone(),
            help: format!(
                "{} Quantiles over the last {} s.",
                help.trim_end_matches('.'),
                spec.seconds
            ),
            label_names,
            slice_secs: spec.seconds.div_ceil(spec.slices as u64).max(1),
            slices: spec.slices,
            quantiles: spec
                .quantiles
                .iter()
                .map(|q| (*q, format_value(*q)))
                .collect(),
            significant_digits: spec.significant_digits,
            resolution: spec.resolution,
            max_series: spec.max_series,
            seconds: spec.seconds,
        }
    }
}

#[derive(Debug, Clone)]
enum Value {
    Counter(f64),
    Histogram {
        counts: Box<[u64]>,
        sum: f64,
        count: u64,
    },
}

#[derive(Debug, Clone)]
struct Series {
    value: Value,
    /// When it last changed (store clock, seconds).
    touched: u64,
    /// A recent exemplar of each bucket that has one (slot 0 for a counter), for rules that ask for
    /// them: only the buckets events landed in take room.
    exemplars: Vec<Exemplar>,
}

/// An exemplar: the labels of the event behind an observation (`name\0value\0` pairs, at most
/// [`EXEMPLAR_MAX_CHARS`] characters of names and values in all), its value, and when it happened.
#[derive(Debug, Clone, Default)]
pub(super) struct Exemplar {
    /// The bucket (0 for a counter).
    slot: u32,
    pairs: String,
    value: f64,
    timestamp_ms: i64,
    /// When it was kept (store clock, seconds): an exemplar is replaced at most once a second.
    kept_at: u64,
}

/// OpenMetrics: "The combined length of the label names and values of an Exemplar's LabelSet MUST NOT
/// exceed 128 UTF-8 character code points."
pub const EXEMPLAR_MAX_CHARS: usize = 128;

/// The exemplar of an observation, as the plan hands it to the store: `write` appends its labels as
/// `name\0value\0` pairs (with [`push_exemplar_pair`]), called only when the slot takes a new one;
/// and the event's time.
#[derive(Clone, Copy)]
pub(super) struct ExemplarIn<'a> {
    pub(super) write: &'a dyn Fn(&mut String),
    pub(super) timestamp_ms: i64,
}

/// Appends `name=value` to an exemplar's pairs within `budget` characters (what is left of
/// [`EXEMPLAR_MAX_CHARS`]): a value that does not fit is cut at a character boundary, a name that
/// does not fit with at least one character of value is left out. Returns the budget left.
pub(super) fn push_exemplar_pair(
    pairs: &mut String,
    name: &str,
    value: &str,
    budget: usize,
) -> usize {
    let chars = |s: &str| {
        if s.is_ascii() {
            s.len()
        } else {
            s.chars().count()
        }
    };
    let name_chars = chars(name);
    if name_chars >= budget || value.is_empty() {
        return budget;
    }
    let room = budget - name_chars;
    let value = if value.len() <= room {
        value
    } else {
        &value[..value
            .char_indices()
            .nth(room)
            .map_or(value.len(), |(i, _)| i)]
    };
    pairs.push_str(name);
    pairs.push('\0');
    pairs.push_str(value);
    pairs.push('\0');
    budget - name_chars - chars(value)
}

impl Series {
    /// Keeps `exemplar` in slot `slot` (of `slots`), unless the slot took one this second (`now`):
    /// the labels are written only then, into the slot's own allocation. A scraper sees a recent
    /// event of each bucket at a fraction of the cost of keeping the very latest.
    fn set_exemplar(&mut self, slot: usize, exemplar: &ExemplarIn<'_>, value: f64, now: u64) {
        let slot = slot as u32;
        let at = match self.exemplars.iter().position(|e| e.slot == slot) {
            Some(at) => at,
            None => {
                self.exemplars.push(Exemplar {
                    slot,
                    ..Exemplar::default()
                });
                self.exemplars.len() - 1
            }
        };
        let e = &mut self.exemplars[at];
        if e.kept_at == now && !e.pairs.is_empty() {
            return;
        }
        e.pairs.clear();
        (exemplar.write)(&mut e.pairs);
        e.value = value;
        e.timestamp_ms = exemplar.timestamp_ms;
        e.kept_at = now;
    }
}

/// Counts taken from the store ([`Store::take_owned_counts`]), to be counted in the self metrics.
#[derive(Debug, Default)]
pub struct TakenCounts(Vec<(String, FamilyCounts)>);

impl TakenCounts {
    /// Counts every family's counts in the self metrics.
    pub fn emit(&self, metrics: &SelfMetrics) {
        for (metric, c) in &self.0 {
            let skipped = SkipReason::ALL.map(|r| (r.as_str(), c.skipped[r as usize]));
            DerivedCounts {
                metric,
                overflowed: c.overflowed,
                sanitized: c.sanitized,
                expired: c.expired,
                skipped: &skipped,
            }
            .emit(metrics);
        }
    }
}

/// What a family counted since the last [`Store::take_counts`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FamilyCounts {
    /// Observations folded into the overflow series.
    pub overflowed: u64,
    /// Label values cut or cleaned.
    pub sanitized: u64,
    /// Matching events with no usable value, by reason.
    pub skipped: [u64; SkipReason::ALL.len()],
    /// Series removed by expiry.
    pub expired: u64,
}

#[derive(Debug, Clone)]
struct Family {
    def: Arc<FamilyDef>,
    series: HashMap<LabelKey, Series>,
    budget: Budget,
    counts: FamilyCounts,
}

impl Family {
    fn new_value(kind: MetricKind, buckets: usize) -> Value {
        match kind {
            MetricKind::Counter => Value::Counter(0.0),
            MetricKind::Histogram => Value::Histogram {
                counts: vec![0; buckets + 1].into_boxed_slice(),
                sum: 0.0,
                count: 0,
            },
        }
    }

    /// Applies `change` to the series of these labels, creating it (or, past the limit, using the
    /// overflow series). One hash and one probe for a series that exists.
    fn update(&mut self, labels: Encoded<'_>, now: u64, change: impl FnOnce(&mut Series)) {
        let live = self.series.len() - self.budget.overflow_series;
        let (kind, buckets) = (self.def.kind, self.def.buckets.len());
        let overflow = match self.series.entry_ref(&labels) {
            EntryRef::Occupied(mut series) => {
                let series = series.get_mut();
                series.touched = now;
                change(series);
                return;
            }
            EntryRef::Vacant(slot) => {
                let placement = self.budget.place(
                    labels.0,
                    live,
                    self.def.max_series,
                    self.def.label_names.len(),
                );
                match placement {
                    Placement::Own => {
                        let value = Self::new_value(kind, buckets);
                        change(slot.insert(Series {
                            value,
                            touched: now,
                            exemplars: Vec::new(),
                        }));
                        self.budget.add(labels.0);
                        return;
                    }
                    Placement::Overflow(key) => key,
                }
            }
        };
        self.counts.overflowed += 1;
        let budget = &mut self.budget;
        let series = self.series.entry(overflow).or_insert_with(|| {
            budget.overflow_series += 1;
            Series {
                value: Self::new_value(kind, buckets),
                touched: now,
                exemplars: Vec::new(),
            }
        });
        series.touched = now;
        change(series);
    }
}

#[derive(Debug, Clone)]
struct WindowFamily {
    def: Arc<WindowDef>,
    series: HashMap<LabelKey, SlidingWindow>,
    budget: Budget,
    overflowed: u64,
}

/// Every derived series.
#[derive(Debug, Clone)]
pub struct Store {
    families: Vec<Family>,
    windows: Vec<WindowFamily>,
    /// The buffer of [`Store::take_prepared`].
    scratch: Prepared,
    /// The clock: wall-clock seconds, set by the pipeline per batch and by the expiry sweep.
    now: u64,
    /// The length of the last full exposition, for sizing the next one's buffer.
    render_hint: usize,
}

/// Wall-clock seconds since the Unix epoch.
pub fn wall_clock() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Store {
    pub(super) fn new(families: &[FamilyDef], windows: &[WindowDef]) -> Self {
        Store {
            families: families
                .iter()
                .map(|def| Family {
                    def: Arc::new(def.clone()),
                    series: HashMap::new(),
                    budget: Budget::new(&def.label_names, def.max_series_per_organization),
                    counts: FamilyCounts::default(),
                })
                .collect(),
            windows: windows
                .iter()
                .map(|def| WindowFamily {
                    def: Arc::new(def.clone()),
                    series: HashMap::new(),
                    budget: Budget::new(
                        &def.label_names,
                        crate::derive::rules::organization_budget(def.max_series, None),
                    ),
                    overflowed: 0,
                })
                .collect(),
            scratch: Prepared::default(),
            now: wall_clock(),
            render_hint: 0,
        }
    }

    /// The length of the last full exposition ([`Store::set_render_hint`]), 0 before the first.
    pub fn render_hint(&self) -> usize {
        self.render_hint
    }

    /// Remembers how long a full exposition of this store was, so that the next one can be written into
    /// one buffer of about that size instead of doubling its way there.
    pub fn set_render_hint(&mut self, len: usize) {
        self.render_hint = len;
    }

    /// Sets the clock (seconds) used to stamp changes and place window observations.
    pub fn set_now(&mut self, now: u64) {
        self.now = now;
    }

    /// Adds `value` to a counter, keeping `exemplar` as its latest.
    pub(super) fn add(
        &mut self,
        family: usize,
        key: &str,
        value: f64,
        exemplar: Option<ExemplarIn>,
    ) {
        let now = self.now;
        self.families[family].update(Encoded(key), now, |s| {
            if let Value::Counter(total) = &mut s.value {
                *total += value;
            }
            if let Some(e) = &exemplar {
                s.set_exemplar(0, e, value, now);
            }
        });
    }

    /// Observes `value` in a histogram, keeping `exemplar` as its bucket's latest.
    pub(super) fn observe(
        &mut self,
        family: usize,
        key: &str,
        value: f64,
        exemplar: Option<ExemplarIn>,
    ) {
        let now = self.now;
        let family = &mut self.families[family];
        let bucket = family.def.buckets.partition_point(|bound| *bound < value);
        family.update(Encoded(key), now, |s| {
            if let Value::Histogram { counts, sum, count } = &mut s.value {
                counts[bucket] += 1;
                *sum += value;
                *count += 1;
            }
            if let Some(e) = &exemplar {
                s.set_exemplar(bucket, e, value, now);
            }
        });
    }

    /// Records `value` in a sliding window.
    pub(super) fn window_record(&mut self, window: usize, key: &str, value: f64) {
        let w = &mut self.windows[window];
        let epoch = self.now / w.def.slice_secs;
        let scaled = (value / w.def.resolution).round().max(0.0) as u64;
        let encoded = Encoded(key);
        if let Some(series) = w.series.get_mut(&encoded) {
            series.record(epoch, value, scaled, w.def.significant_digits);
            return;
        }
        let live = w.series.len() - w.budget.overflow_series;
        let placement = w
            .budget
            .place(key, live, w.def.max_series, w.def.label_names.len());
        let (key, own) = match placement {
            Placement::Own => {
                w.budget.add(key);
                (LabelKey::from(&encoded), true)
            }
            Placement::Overflow(overflow) => {
                w.overflowed += 1;
                (overflow, false)
            }
        };
        let (budget, slices) = (&mut w.budget, w.def.slices);
        w.series
            .entry(key)
            .or_insert_with(|| {
                budget.overflow_series += usize::from(!own);
                SlidingWindow::new(slices)
            })
            .record(epoch, value, scaled, w.def.significant_digits);
    }

    /// A buffer for preparing one event's work ([`crate::derive::Plan::observe`]), empty; give it back
    /// with [`Store::put_prepared`] so that its allocations serve every event.
    pub(super) fn take_prepared(&mut self) -> Prepared {
        let mut prepared = std::mem::take(&mut self.scratch);
        prepared.clear();
        prepared
    }

    pub(super) fn put_prepared(&mut self, prepared: Prepared) {
        self.scratch = prepared;
    }

    pub(super) fn skip(&mut self, family: usize, reason: SkipReason) {
        self.families[family].counts.skipped[reason as usize] += 1;
    }

    pub(super) fn note_sanitized(&mut self, family: usize) {
        self.families[family].counts.sanitized += 1;
    }

    /// Removes series idle for longer than their family's expiry, and windows with nothing left in them.
    /// Returns how many series went.
    pub fn sweep(&mut self, now: u64) -> usize {
        self.now = self.now.max(now);
        let mut removed = 0;
        for family in &mut self.families {
            let ttl = family.def.expire_after_secs;
            if ttl == 0 {
                continue;
            }
            let before = family.series.len();
            family.series.retain(|_, s| s.touched + ttl > now);
            let gone = before - family.series.len();
            if gone > 0 {
                family.budget.recount(family.series.keys());
                family.counts.expired += gone as u64;
                removed += gone;
            }
        }
        for w in &mut self.windows {
            let epoch = now / w.def.slice_secs;
            let before = w.series.len();
            w.series.retain(|_, s| !s.is_stale(epoch));
            if w.series.len() != before {
                w.budget.recount(w.series.keys());
            }
        }
        removed
    }

    /// Takes each family's counts since the last call and counts them in the self metrics. The names are
    /// copied, so the caller can emit after releasing the store's lock: see [`TakenCounts::emit`].
    pub fn take_owned_counts(&mut self) -> TakenCounts {
        TakenCounts(
            self.take_counts()
                .into_iter()
                .map(|(name, counts)| (name.to_owned(), counts))
                .collect(),
        )
    }

    /// Takes each family's counts since the last call: (metric name, counts).
    pub fn take_counts(&mut self) -> Vec<(&str, FamilyCounts)> {
        let mut out = Vec::new();
        for f in &mut self.families {
            let counts = std::mem::take(&mut f.counts);
            if counts != FamilyCounts::default() {
                out.push((f.def.name.as_str(), counts));
            }
        }
        for w in &mut self.windows {
            let overflowed = std::mem::take(&mut w.overflowed);
            if overflowed > 0 {
                out.push((
                    w.def.name.as_str(),
                    FamilyCounts {
                        overflowed,
                        ..Default::default()
                    },
                ));
            }
        }
        out
    }

    /// (metric name, number of series) of every family, windows included.
    pub fn series_counts(&self) -> Vec<(&str, usize)> {
        self.families
            .iter()
            .map(|f| (f.def.name.as_str(), f.series.len()))
            .chain(
                self.windows
                    .iter()
                    .map(|w| (w.def.name.as_str(), w.series.len())),
            )
            .collect()
    }

    /// Appends every family in `format` (without the OpenMetrics `# EOF`). Holding the store while
    /// formatting: the HTTP endpoint uses [`Store::snapshot`] instead, which does not.
    #[cfg(test)]
    pub fn render(&self, out: &mut String, format: Format) {
        self.snapshot_for(format).render(out, format, None);
    }

    /// The window quantiles as JSON.
    #[cfg(test)]
    pub fn quantiles_json(&self) -> serde_json::Value {
        self.snapshot().quantiles_json(None)
    }

    /// A copy of every series, cheap to take (label keys are shared, not copied) and rendered after the
    /// lock on the store is released, so that a scrape never holds up event processing for longer than
    /// the copy. Window quantiles are read here, under the lock: one merge of each series' live slices
    /// (copying every slice instead, to merge after the lock, cost a third more resident memory at
    /// 90,510 series in `scripts/bench`); sorting and formatting them happen after.
    pub fn snapshot(&self) -> Snapshot {
        self.snapshot_for(Format::Text)
    }

    /// [`Store::snapshot`] for rendering in `format`: with the exemplars for OpenMetrics (the text
    /// format has none, and copying them would be wasted).
    pub fn snapshot_for(&self, format: Format) -> Snapshot {
        let exemplars = format == Format::OpenMetrics;
        let families = self
            .families
            .iter()
            .map(|f| FamilySnapshot {
                def: f.def.clone(),
                series: f
                    .series
                    .iter()
                    .map(|(k, s)| {
                        let e = if exemplars {
                            s.exemplars.clone()
                        } else {
                            Vec::new()
                        };
                        (k.clone(), s.value.clone(), e)
                    })
                    .collect(),
            })
            .collect();
        let windows = self
            .windows
            .iter()
            .map(|family| {
                let def = &family.def;
                let epoch = self.now / def.slice_secs;
                let rows = family
                    .series
                    .iter()
                    .filter_map(|(key, window)| {
                        let (h, sum) = window.merged(epoch, def.significant_digits)?;
                        let values = def
                            .quantiles
                            .iter()
                            .map(|(q, _)| h.value_at_quantile(*q) as f64 * def.resolution)
                            .collect();
                        Some((key.clone(), h.len(), sum, values))
                    })
                    .collect();
                WindowSnapshot {
                    def: def.clone(),
                    rows,
                }
            })
            .collect();
        Snapshot { families, windows }
    }
}

struct FamilySnapshot {
    def: Arc<FamilyDef>,
    series: Vec<SeriesRow>,
}

/// A series at the snapshot: labels, value, and its exemplars when the format writes them.
type SeriesRow = (LabelKey, Value, Vec<Exemplar>);

impl Exemplar {
    fn as_ref(&self) -> ExemplarRef<'_> {
        ExemplarRef {
            pairs: &self.pairs,
            value: self.value,
            timestamp_ms: self.timestamp_ms,
        }
    }
}

struct WindowSnapshot {
    def: Arc<WindowDef>,
    /// Every series that holds observations in the window, with its quantiles.
    rows: Vec<WindowRow>,
}

/// A window's row: labels, observations in the window, their sum, the value of each quantile.
type WindowRow = (LabelKey, u64, f64, Vec<f64>);

impl WindowSnapshot {
    /// The rows, sorted by labels.
    fn sorted_rows(&mut self) -> &[WindowRow] {
        sort_by_labels(&mut self.rows, |row| &row.0);
        &self.rows
    }
}

/// Every series at one moment; see [`Store::snapshot`].
pub struct Snapshot {
    families: Vec<FamilySnapshot>,
    windows: Vec<WindowSnapshot>,
}

/// Which series a reader may see: `None` all; `Some(orgs)` only series whose `organization` label is
/// one of `orgs` (families without that label are hidden).
pub type Scope<'a> = Option<&'a BTreeSet<String>>;

/// Sorts rows by their label keys. Comparing keys means following a pointer per row; most comparisons
/// are settled here on a 16-byte prefix kept beside each row's position, in one contiguous array, and
/// only equal prefixes look at the rest of the keys. The rows are then moved into that order (rendering
/// them through a list of positions instead was slower: a cache miss per row).
fn sort_by_labels<T>(rows: &mut Vec<T>, key: impl Fn(&T) -> &LabelKey) {
    let mut order: Vec<(u128, u32)> = rows
        .iter()
        .enumerate()
        .map(|(i, row)| (key(row).prefix(), i as u32))
        .collect();
    order.sort_unstable_by(|a, b| {
        a.0.cmp(&b.0).then_with(|| {
            let a = key(&rows[a.1 as usize]).0.as_bytes();
            let b = key(&rows[b.1 as usize]).0.as_bytes();
            // The prefixes are equal, so are the first `n` bytes.
            let n = a.len().min(b.len()).min(16);
            a[n..].cmp(&b[n..])
        })
    });
    let mut taken: Vec<Option<T>> = rows.drain(..).map(Some).collect();
    rows.extend(order.iter().filter_map(|&(_, i)| taken[i as usize].take()));
}

/// A scope applied to one family.
struct Visible<'a> {
    /// `None`: everything; else (the position of the `organization` label, the organizations).
    filter: Option<(usize, &'a BTreeSet<String>)>,
}

impl Visible<'_> {
    fn key(&self, key: &LabelKey) -> bool {
        self.filter
            .is_none_or(|(at, orgs)| key.values().nth(at).is_some_and(|org| orgs.contains(org)))
    }
}

/// How `scope` applies to a family with these labels; `None` when the family is hidden altogether.
fn visible<'a>(label_names: &[String], scope: Scope<'a>) -> Option<Visible<'a>> {
    match scope {
        None => Some(Visible { filter: None }),
        Some(orgs) => {
            let at = label_names.iter().position(|n| n == "organization")?;
            Some(Visible {
                filter: Some((at, orgs)),
            })
        }
    }
}

impl Snapshot {
    /// Appends every visible family in `format`, series sorted by labels (without the OpenMetrics
    /// `# EOF`).
    pub fn render(self, out: &mut String, format: Format, scope: Scope<'_>) {
        self.render_chunked(out, format, scope, usize::MAX, &mut |_| {});
    }

    /// [`Snapshot::render`] in pieces: whenever `out` holds at least `chunk` bytes (after a whole
    /// series), `take` is handed it to empty. What is left at the end stays in `out`.
    pub fn render_chunked(
        mut self,
        out: &mut String,
        format: Format,
        scope: Scope<'_>,
        chunk: usize,
        take: &mut dyn FnMut(&mut String),
    ) {
        let mut w = Writer::new(out, format);
        let mut full = |w: &mut Writer<'_>| {
            if w.buffer().len() >= chunk {
                take(w.buffer());
            }
        };
        for family in &mut self.families {
            let def = &family.def;
            let Some(visible) = visible(&def.label_names, scope) else {
                continue;
            };
            let kind = match def.kind {
                MetricKind::Counter => FamilyType::Counter,
                MetricKind::Histogram => FamilyType::Histogram,
            };
            w.family(&def.name, &def.help, kind);
            let les: Vec<String> = def
                .buckets
                .iter()
                .map(|b| format_value(*b))
                .chain([String::from("+Inf")])
                .map(|bound| Writer::le_pair(&bound))
                .collect();
            sort_by_labels(&mut family.series, |row| &row.0);
            let mut labels = Labels::default();
            for (key, value, exemplars) in family.series.iter().filter(|(k, ..)| visible.key(k)) {
                // Escaped once per series, written once per sample.
                key.write_labels(&def.label_names, &mut labels);
                let exemplar = |slot: usize| {
                    let found = exemplars.iter().find(|e| e.slot as usize == slot);
                    found.map(Exemplar::as_ref)
                };
                match value {
                    Value::Counter(total) => {
                        let v = Number::Value(*total);
                        w.series_sample_with(&def.name, "", &labels, None, v, exemplar(0))
                    }
                    Value::Histogram { counts, sum, count } => {
                        let mut cumulative = 0;
                        for (slot, (le, n)) in les.iter().zip(counts.iter()).enumerate() {
                            cumulative += n;
                            w.bucket_sample(&def.name, &labels, le, cumulative, exemplar(slot));
                        }
                        w.series_sample(&def.name, "_sum", &labels, None, Number::Value(*sum));
                        w.series_sample(&def.name, "_count", &labels, None, Number::Count(*count));
                    }
                }
                full(&mut w);
            }
        }
        for window in &mut self.windows {
            let def = window.def.clone();
            let Some(visible) = visible(&def.label_names, scope) else {
                continue;
            };
            // A summary: the Prometheus type for quantiles computed by the exporter (a gauge may not
            // carry a `quantile` label).
            w.family(&def.name, &def.help, FamilyType::Summary);
            let mut labels = Labels::default();
            for (key, count, sum, values) in
                window.sorted_rows().iter().filter(|r| visible.key(&r.0))
            {
                key.write_labels(&def.label_names, &mut labels);
                for ((_, q), v) in def.quantiles.iter().zip(values) {
                    w.series_sample(
                        &def.name,
                        "",
                        &labels,
                        Some(("quantile", q)),
                        Number::Value(*v),
                    );
                }
                w.series_sample(&def.name, "_sum", &labels, None, Number::Value(*sum));
                w.series_sample(&def.name, "_count", &labels, None, Number::Count(*count));
                full(&mut w);
            }
        }
    }

    /// The window quantiles as JSON (for `/api/v1/quantiles`), within `scope`.
    pub fn quantiles_json(mut self, scope: Scope<'_>) -> serde_json::Value {
        use serde_json::{json, Map, Value};
        let mut metrics = Vec::new();
        for window in &mut self.windows {
            let def = window.def.clone();
            let Some(visible) = visible(&def.label_names, scope) else {
                continue;
            };
            let series: Vec<Value> = window
                .sorted_rows()
                .iter()
                .filter(|r| visible.key(&r.0))
                .map(|(key, count, sum, values)| {
                    let labels: Map<String, Value> = def
                        .label_names
                        .iter()
                        .zip(key.values())
                        .map(|(k, v)| (k.clone(), json!(v)))
                        .collect();
                    let quantiles: Map<String, Value> = def
                        .quantiles
                        .iter()
                        .zip(values)
                        .map(|((_, q), v)| (q.clone(), json!(v)))
                        .collect();
                    json!({ "labels": labels, "count": count, "sum": sum, "quantiles": quantiles })
                })
                .collect();
            metrics
                .push(json!({ "name": def.name, "window_seconds": def.seconds, "series": series }));
        }
        json!({ "metrics": metrics })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::hash::BuildHasher;

    fn owned(values: &[String]) -> Vec<Cow<'_, str>> {
        values.iter().map(|v| Cow::Borrowed(v.as_str())).collect()
    }

    /// Tuples of three label values, from a small alphabet so that equal prefixes are common.
    fn tuple() -> impl Strategy<Value = Vec<String>> {
        prop::collection::vec("[ab!\" é]{0,20}", 3)
    }

    proptest! {
        #[test]
        fn label_keys_order_hash_and_match_as_their_values(a in tuple(), b in tuple()) {
            let (ka, kb) = (LabelKey::from_ref(&owned(&a)), LabelKey::from_ref(&owned(&b)));
            prop_assert_eq!(ka.cmp(&kb), a.cmp(&b));
            prop_assert_eq!(ka.values().collect::<Vec<_>>(), a.iter().map(String::as_str).collect::<Vec<_>>());
            if ka.prefix() != kb.prefix() {
                prop_assert_eq!(ka.prefix().cmp(&kb.prefix()), a.cmp(&b));
            }
            let (ra, rb) = (owned(&a), owned(&b));
            // As the plan writes a key.
            let encode = |values: &[Cow<'_, str>]| {
                let mut key = String::new();
                for v in values {
                    push_label_value(&mut key, v);
                }
                key
            };
            let (buf_a, buf_b) = (encode(&ra), encode(&rb));
            let (ea, eb) = (Encoded(&buf_a), Encoded(&buf_b));
            prop_assert!(ea.equivalent(&ka));
            prop_assert_eq!(ea.equivalent(&kb), a == b);
            prop_assert_eq!(eb.equivalent(&ka), a == b);
            let hasher = hashbrown::DefaultHashBuilder::default();
            prop_assert_eq!(hasher.hash_one(&ea), hasher.hash_one(&ka));
            prop_assert_eq!(LabelKey::from(&ea), ka);
        }

        #[test]
        fn rows_sort_as_their_values(rows in prop::collection::vec(tuple(), 0..200)) {
            let mut keyed: Vec<(LabelKey, usize)> = rows
                .iter()
                .enumerate()
                .map(|(i, r)| (LabelKey::from_ref(&owned(r)), i))
                .collect();
            sort_by_labels(&mut keyed, |row| &row.0);
            let got: Vec<&Vec<String>> = keyed.iter().map(|(_, i)| &rows[*i]).collect();
            let mut want: Vec<&Vec<String>> = rows.iter().collect();
            want.sort();
            prop_assert_eq!(got, want);
        }
    }

    #[test]
    fn no_labels_and_one_empty_label_differ() {
        assert_ne!(
            LabelKey::from_ref(&[]),
            LabelKey::from_ref(&[Cow::Borrowed("")])
        );
        assert_eq!(LabelKey::from_ref(&[]).values().count(), 0);
        assert_eq!(
            LabelKey::from_ref(&[Cow::Borrowed("")])
                .values()
                .collect::<Vec<_>>(),
            [""]
        );
    }
}
