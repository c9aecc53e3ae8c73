//! The series themselves: limits, expiry, windows, and their exposition.

use super::prepared::{Prepared, SkipReason};
use super::rules::{MetricKind, WindowSpec};
use super::window::SlidingWindow;
use crate::shared::exposition::{
    format_value, ExemplarRef, FamilyType, Format, Labels, Number, Writer,
};
use crate::shared::json::push_hex;
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
    /// The label names of its exemplars, from every rule that feeds it: a packed exemplar names its
    /// labels by their place here ([`push_exemplar_pair`]).
    pub(super) exemplar_names: Vec<String>,
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

/// An exemplar: the labels of the event behind an observation (at most [`EXEMPLAR_MAX_CHARS`]
/// characters of names and values in all, packed by [`push_exemplar_pair`]), its value, and when it
/// happened.
///
/// 40 bytes, and its labels hold exactly their length: a store keeps one for each bucket that events
/// landed in, across every histogram series of a rule that asks for them (170,000 after ten minutes of
/// the memory soak), so a spare byte here is megabytes there.
#[derive(Debug, Clone, Default)]
pub(super) struct Exemplar {
    labels: Box<[u8]>,
    value: f64,
    timestamp_ms: i64,
    /// The bucket (0 for a counter).
    slot: u32,
    /// When it was kept (the store clock's seconds, truncated to 32 bits: only compared for
    /// equality with the present second): an exemplar is replaced at most once a second.
    kept_at: u32,
}

/// OpenMetrics: "The combined length of the label names and values of an Exemplar's LabelSet MUST NOT
/// exceed 128 UTF-8 character code points."
pub const EXEMPLAR_MAX_CHARS: usize = 128;

/// The exemplar of an observation, as the plan hands it to the store: `write` appends its labels (with
/// [`push_exemplar_pair`]), called only when the slot takes a new one; and the event's time.
#[derive(Clone, Copy)]
pub(super) struct ExemplarIn<'a> {
    pub(super) write: &'a dyn Fn(&mut Vec<u8>),
    pub(super) timestamp_ms: i64,
}

/// How a packed exemplar label holds its value: the low two bits of its first byte, whose other six
/// are the name's index in [`FamilyDef::exemplar_names`].
const TEXT: u8 = 0;
/// Lowercase hexadecimal of an even length up to 254 (trace and span IDs): a length byte, then the
/// bytes it spells, half the room.
const HEX: u8 = 1;
/// A lowercase UUID (`8-4-4-4-12` hexadecimal digits): its 16 bytes, 44% of the room.
const UUID: u8 = 2;
/// Names a family's exemplars may use: the index has six bits.
pub(super) const EXEMPLAR_MAX_NAMES: usize = 64;

/// Appends the label `name=value` to an exemplar's packed labels within `budget` characters (what is
/// left of [`EXEMPLAR_MAX_CHARS`]): a value that does not fit is cut at a character boundary, a name
/// that does not fit with at least one character of value is left out. `index` is the name's place in
/// the family's [`FamilyDef::exemplar_names`], which writes it back. Returns the budget left.
///
/// Packed: a byte of `index` and the form, then the value as text (a length of one byte, or 255 and
/// two more, then the bytes), as the bytes its lowercase hexadecimal spells, or as a UUID's 16 bytes.
pub(super) fn push_exemplar_pair(
    packed: &mut Vec<u8>,
    index: usize,
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
    if name_chars >= budget || value.is_empty() || index >= EXEMPLAR_MAX_NAMES {
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
    let tag = (index as u8) << 2;
    if let Some(bytes) = uuid_bytes(value) {
        packed.push(tag | UUID);
        packed.extend_from_slice(&bytes);
    } else if value.len() % 2 == 0 && value.len() <= 254 && is_lower_hex(value.as_bytes()) {
        packed.push(tag | HEX);
        packed.push((value.len() / 2) as u8);
        packed.extend(
            value
                .as_bytes()
                .chunks(2)
                .map(|pair| hex_byte(pair[0], pair[1])),
        );
    } else {
        packed.push(tag | TEXT);
        match u8::try_from(value.len()) {
            Ok(len) if len < u8::MAX => packed.push(len),
            _ => {
                packed.push(u8::MAX);
                packed.extend_from_slice(&(value.len() as u16).to_le_bytes());
            }
        }
        packed.extend_from_slice(value.as_bytes());
    }
    budget - name_chars - chars(value)
}

fn is_lower_hex(bytes: &[u8]) -> bool {
    bytes.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The byte two lowercase hexadecimal digits spell.
fn hex_byte(high: u8, low: u8) -> u8 {
    let digit = |d: u8| if d <= b'9' { d - b'0' } else { d - b'a' + 10 };
    digit(high) << 4 | digit(low)
}

/// The 16 bytes of a lowercase `8-4-4-4-12` UUID; `None` for anything else.
fn uuid_bytes(value: &str) -> Option<[u8; 16]> {
    let v = value.as_bytes();
    if v.len() != 36 || [8, 13, 18, 23].iter().any(|&i| v[i] != b'-') {
        return None;
    }
    let mut digits = v.iter().copied().filter(|&b| b != b'-');
    let mut out = [0; 16];
    for o in &mut out {
        let pair = [digits.next()?, digits.next()?];
        if !is_lower_hex(&pair) {
            return None;
        }
        *o = hex_byte(pair[0], pair[1]);
    }
    digits.next().is_none().then_some(out)
}

/// Writes packed labels back as the `name\0value\0` pairs [`ExemplarRef`] takes, naming them from
/// `names`. Labels that do not parse (never written by [`push_exemplar_pair`]) end the list.
pub(super) fn unpack_exemplar(packed: &[u8], names: &[String], pairs: &mut String) {
    let mut rest = packed;
    while let Some((&tag, tail)) = rest.split_first() {
        let Some(name) = names.get(usize::from(tag >> 2)) else {
            return;
        };
        let (value, tail, form) = match tag & 3 {
            UUID if tail.len() >= 16 => (&tail[..16], &tail[16..], UUID),
            HEX | TEXT if !tail.is_empty() => {
                let (len, tail) = match (tail[0], tail.get(1..3)) {
                    (u8::MAX, Some(n)) if tag & 3 == TEXT => {
                        (usize::from(u16::from_le_bytes([n[0], n[1]])), &tail[3..])
                    }
                    (len, _) => (usize::from(len), &tail[1..]),
                };
                if tail.len() < len {
                    return;
                }
                (&tail[..len], &tail[len..], tag & 3)
            }
            _ => return,
        };
        pairs.push_str(name);
        pairs.push('\0');
        if form == TEXT {
            let Ok(text) = std::str::from_utf8(value) else {
                return;
            };
            pairs.push_str(text);
        } else if form == UUID {
            for (i, group) in [0..4, 4..6, 6..8, 8..10, 10..16].into_iter().enumerate() {
                if i > 0 {
                    pairs.push('-');
                }
                push_hex(&value[group], pairs);
            }
        } else {
            push_hex(value, pairs);
        }
        pairs.push('\0');
        rest = tail;
    }
}

impl Series {
    /// Keeps `exemplar` in slot `slot`, unless the slot took one this second (`now`):
    /// the labels are written only then, into `scratch` and copied into the slot's own allocation,
    /// which grows to exactly their length. A scraper sees a recent event of each bucket at a fraction
    /// of the cost of keeping the very latest. Returns 1 when the series took a slot it did not hold.
    fn set_exemplar(
        &mut self,
        slot: usize,
        exemplar: &ExemplarIn<'_>,
        value: f64,
        now: u64,
        scratch: &mut Vec<u8>,
    ) -> usize {
        let (slot, now) = (slot as u32, now as u32);
        let mut taken = 0;
        let at = match self.exemplars.iter().position(|e| e.slot == slot) {
            Some(at) => at,
            None => {
                // One more slot, not double: most series see only a few of their buckets.
                self.exemplars.reserve_exact(1);
                self.exemplars.push(Exemplar {
                    slot,
                    ..Exemplar::default()
                });
                taken = 1;
                self.exemplars.len() - 1
            }
        };
        let e = &mut self.exemplars[at];
        if e.kept_at == now && !e.labels.is_empty() {
            return taken;
        }
        scratch.clear();
        (exemplar.write)(scratch);
        if e.labels.len() == scratch.len() {
            e.labels.copy_from_slice(scratch);
        } else {
            e.labels = scratch.as_slice().into();
        }
        e.value = value;
        e.timestamp_ms = exemplar.timestamp_ms;
        e.kept_at = now;
        taken
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
    /// Exemplars held by the series (the sum of their `exemplars` lengths).
    exemplars: usize,
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
    /// The buffer an exemplar's labels are written into before they are copied into its slot.
    exemplar_scratch: Vec<u8>,
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
                    exemplars: 0,
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
            exemplar_scratch: Vec::with_capacity(4 * EXEMPLAR_MAX_CHARS),
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
        let (now, scratch) = (self.now, &mut self.exemplar_scratch);
        let family = &mut self.families[family];
        let mut taken = 0;
        family.update(Encoded(key), now, |s| {
            if let Value::Counter(total) = &mut s.value {
                *total += value;
            }
            if let Some(e) = &exemplar {
                taken = s.set_exemplar(0, e, value, now, scratch);
            }
        });
        family.exemplars += taken;
    }

    /// Observes `value` in a histogram, keeping `exemplar` as its bucket's latest.
    pub(super) fn observe(
        &mut self,
        family: usize,
        key: &str,
        value: f64,
        exemplar: Option<ExemplarIn>,
    ) {
        let (now, scratch) = (self.now, &mut self.exemplar_scratch);
        let family = &mut self.families[family];
        let bucket = family.def.buckets.partition_point(|bound| *bound < value);
        let mut taken = 0;
        family.update(Encoded(key), now, |s| {
            if let Value::Histogram { counts, sum, count } = &mut s.value {
                counts[bucket] += 1;
                *sum += value;
                *count += 1;
            }
            if let Some(e) = &exemplar {
                taken = s.set_exemplar(bucket, e, value, now, scratch);
            }
        });
        family.exemplars += taken;
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
            let mut exemplars = 0;
            family.series.retain(|_, s| {
                let keep = s.touched + ttl > now;
                exemplars += if keep { 0 } else { s.exemplars.len() };
                keep
            });
            family.exemplars -= exemplars;
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

    /// (metric name, number of exemplars held) of every family, windows excepted (they keep none).
    pub fn exemplar_counts(&self) -> impl Iterator<Item = (&str, usize)> {
        self.families
            .iter()
            .map(|f| (f.def.name.as_str(), f.exemplars))
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
    /// The exemplar as the writer takes it, its labels unpacked into `pairs` with `names`.
    fn unpacked<'a>(&self, names: &[String], pairs: &'a mut String) -> ExemplarRef<'a> {
        pairs.clear();
        unpack_exemplar(&self.labels, names, pairs);
        ExemplarRef {
            pairs,
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
            let mut pairs = String::new();
            for (key, value, exemplars) in family.series.iter().filter(|(k, ..)| visible.key(k)) {
                // Escaped once per series, written once per sample.
                key.write_labels(&def.label_names, &mut labels);
                let names = &def.exemplar_names;
                let find = |slot: usize| exemplars.iter().find(|e| e.slot as usize == slot);
                match value {
                    Value::Counter(total) => {
                        let v = Number::Value(*total);
                        let e = find(0).map(|e| e.unpacked(names, &mut pairs));
                        w.series_sample_with(&def.name, "", &labels, None, v, e)
                    }
                    Value::Histogram { counts, sum, count } => {
                        let mut cumulative = 0;
                        for (slot, (le, n)) in les.iter().zip(counts.iter()).enumerate() {
                            cumulative += n;
                            let e = find(slot).map(|e| e.unpacked(names, &mut pairs));
                            w.bucket_sample(&def.name, &labels, le, cumulative, e);
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

    #[test]
    fn exemplars_take_exactly_the_room_they_use() {
        assert_eq!(std::mem::size_of::<Exemplar>(), 40);
        let def = FamilyDef {
            name: "h".into(),
            help: "h".into(),
            kind: MetricKind::Histogram,
            label_names: vec![],
            buckets: vec![1.0, 2.0, 3.0, 4.0],
            max_series: 10,
            max_series_per_organization: 10,
            expire_after_secs: 0,
            exemplar_names: vec!["run_id".into()],
        };
        let mut store = Store::new(&[def], &[]);
        let labels = |len: usize| {
            move |packed: &mut Vec<u8>| {
                push_exemplar_pair(packed, 0, "run_id", &"x".repeat(len), EXEMPLAR_MAX_CHARS);
            }
        };
        // Three buckets, the first twice in one second (kept once) and once more a second later with
        // longer labels, then shorter ones.
        for (now, value, len) in [
            (1, 0.5, 32),
            (1, 2.5, 32),
            (1, 0.5, 40),
            (1, 9.0, 36),
            (2, 0.5, 50),
            (3, 0.5, 10),
        ] {
            store.set_now(now);
            let write = labels(len);
            let e = ExemplarIn {
                write: &write,
                timestamp_ms: 7,
            };
            store.observe(0, "", value, Some(e));
        }
        let series = store.families[0]
            .series
            .values()
            .next()
            .expect("one series");
        assert_eq!(series.exemplars.capacity(), 3);
        let kept: Vec<(u32, usize)> = series
            .exemplars
            .iter()
            .map(|e| (e.slot, e.labels.len()))
            .collect();
        // A byte of name and form and a byte of length before the text.
        assert_eq!(kept, [(0, 12), (2, 34), (4, 38)]);
        assert_eq!(store.exemplar_counts().collect::<Vec<_>>(), [("h", 3)]);
        let mut pairs = String::new();
        unpack_exemplar(&series.exemplars[0].labels, &["run_id".into()], &mut pairs);
        assert_eq!(pairs, format!("run_id\0{}\0", "x".repeat(10)));
    }

    /// The packed forms of a trace ID, a UUID and text, each unpacked as it was written, in order, with
    /// the room each takes.
    #[test]
    fn exemplar_labels_pack_ids_to_their_bytes_and_unpack_as_written() {
        let names: Vec<String> = ["trace_id", "run_id", "request_id", "automation_id"]
            .map(String::from)
            .to_vec();
        let trace = "0af7651916cd43dd8448eb211c80319c";
        let uuid = "3f2504e0-4f89-41d3-9a0c-0305e82c3301";
        let mut packed = Vec::new();
        let mut budget = 1000;
        for (index, value) in [
            (0, trace),
            (1, uuid),
            (3, "auto-7"),
            (2, "ABCD"),
            (0, "abc"),
        ] {
            budget = push_exemplar_pair(&mut packed, index, &names[index], value, budget);
        }
        // 1 + 1 + 16, 1 + 16, 1 + 1 + 6, 1 + 1 + 4, 1 + 1 + 3 (odd: text).
        assert_eq!(packed.len(), 18 + 17 + 8 + 6 + 5);
        let mut pairs = String::new();
        unpack_exemplar(&packed, &names, &mut pairs);
        let want = format!(
            "trace_id\0{trace}\0run_id\0{uuid}\0automation_id\0auto-7\0request_id\0ABCD\0trace_id\0abc\0"
        );
        assert_eq!(pairs, want);
        // A UUID in capitals, or with its dashes elsewhere, stays text.
        for odd in [
            uuid.to_uppercase(),
            uuid.replace('-', "").replacen('4', "-", 1),
        ] {
            let mut packed = Vec::new();
            push_exemplar_pair(&mut packed, 1, "run_id", &odd, 1000);
            assert_eq!(packed.len(), 2 + odd.len(), "{odd}");
        }
    }

    proptest::proptest! {
        /// Whatever the values, unpacking gives back each label that fit, cut as the budget cut it, in
        /// order; and a long text value keeps its length.
        #[test]
        fn packed_exemplar_labels_unpack_to_what_fit(
            values in proptest::collection::vec(
                proptest::prop_oneof!["[0-9a-f]{0,40}", "[0-9a-f-]{36}", "\\PC{0,140}", "[ -~]{0,300}"],
                0..5,
            ),
            budget in 0usize..400,
        ) {
            let names: Vec<String> = ["a", "bb", "ccc", "dddd", "eeeee"].map(String::from).to_vec();
            let (mut packed, mut left, mut want) = (Vec::new(), budget, String::new());
            for (index, value) in values.iter().enumerate() {
                let mut one = String::new();
                let before = left;
                left = push_exemplar_pair(&mut packed, index, &names[index], value, left);
                let name_chars = names[index].len();
                if before != left || (name_chars < before && !value.is_empty()) {
                    let kept: String = value.chars().take(before - name_chars).collect();
                    one.push_str(&format!("{}\0{kept}\0", names[index]));
                    proptest::prop_assert_eq!(left, before - name_chars - kept.chars().count());
                }
                want.push_str(&one);
            }
            let mut pairs = String::new();
            unpack_exemplar(&packed, &names, &mut pairs);
            proptest::prop_assert_eq!(pairs, want);
        }
    }

    #[test]
    fn exemplar_count_follows_the_slots_taken_and_the_series_expired() {
        let def = |name: &str, kind, expire_after_secs| FamilyDef {
            name: name.into(),
            help: "h".into(),
            kind,
            label_names: vec!["organization".into()],
            buckets: vec![1.0, 2.0],
            max_series: 10,
            max_series_per_organization: 10,
            expire_after_secs,
            exemplar_names: vec!["trace_id".into()],
        };
        let defs = [
            def("h", MetricKind::Histogram, 10),
            def("c", MetricKind::Counter, 0),
        ];
        let mut store = Store::new(&defs, &[]);
        let write = |packed: &mut Vec<u8>| {
            push_exemplar_pair(packed, 0, "trace_id", "t", EXEMPLAR_MAX_CHARS);
        };
        let e = || {
            Some(ExemplarIn {
                write: &write,
                timestamp_ms: 1,
            })
        };
        let (a, b) = ("a\0", "b\0");
        store.set_now(1);
        store.observe(0, a, 0.5, e());
        store.observe(0, a, 0.5, e());
        store.observe(0, a, 1.5, e());
        store.observe(0, b, 9.0, None);
        store.add(1, a, 1.0, e());
        store.add(1, b, 1.0, e());
        store.set_now(2);
        store.add(1, b, 1.0, e());
        let counts = |store: &Store| {
            store
                .exemplar_counts()
                .map(|(n, c)| (n.to_owned(), c))
                .collect::<Vec<_>>()
        };
        assert_eq!(counts(&store), [("h".to_owned(), 2), ("c".to_owned(), 2)]);
        store.set_now(5);
        store.observe(0, b, 9.0, e());
        assert_eq!(store.sweep(12), 1);
        assert_eq!(counts(&store), [("h".to_owned(), 1), ("c".to_owned(), 2)]);
    }
}
