//! What the rules make of a batch's events before the store is touched ([`Prepared`]).
//!
//! Matching rules, computing values, and sanitising and writing the series keys need only the plan and
//! the event, so decode workers do it in parallel ([`crate::derive::Plan::prepare`]). What needs the
//! store (one lookup and update per rule an event matches) is applied after, in the batch's order, on
//! one thread ([`crate::derive::Plan::apply`]): the store stays one, so series limits, expiry, windows
//! and the intake join stay exactly what they are with one thread.

/// The prepared work of one batch (or one event): for every rule an event matches, its value (or why it
/// has none) and its series key. Built with [`crate::derive::Plan::prepare`], in event order.
#[derive(Debug, Clone, Default)]
pub struct Prepared {
    ops: Vec<Op>,
    /// The ops' series keys, one after the other.
    keys: String,
    /// Events left for the pipeline's own task, by position in the batch, ascending (the intake join
    /// may still change them: see [`crate::derive::join::may_complete`]).
    deferred: Vec<u32>,
}

/// One rule's outcome for one event.
#[derive(Debug, Clone, Copy)]
pub(super) struct Op {
    /// The event's position in the batch.
    pub(super) event: u32,
    /// The rule's index in the plan.
    pub(super) rule: u32,
    /// The value, or why the rule skipped the event.
    pub(super) value: Result<f64, SkipReason>,
    /// Where the series key is in [`Prepared::keys`] (empty for a skip).
    pub(super) key: (u32, u32),
    /// Whether a label value was cut or cleaned.
    pub(super) sanitized: bool,
}

impl Prepared {
    /// Empties it, keeping its allocations.
    pub fn clear(&mut self) {
        self.ops.clear();
        self.keys.clear();
        self.deferred.clear();
    }

    /// Whether it holds no work at all (no op, nothing deferred).
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty() && self.deferred.is_empty()
    }

    /// Notes that the event at `event` was not prepared: the pipeline's task derives it itself.
    pub fn defer(&mut self, event: usize) {
        debug_assert!(self.deferred.last().is_none_or(|&d| (d as usize) < event));
        self.deferred.push(event as u32);
    }

    /// The positions of the deferred events, ascending.
    pub fn deferred(&self) -> &[u32] {
        &self.deferred
    }

    /// Whether the event at `event` was deferred.
    pub fn is_deferred(&self, event: usize) -> bool {
        self.deferred.binary_search(&(event as u32)).is_ok()
    }

    /// The key buffer, for writing the next op's key at its end.
    pub(super) fn keys_mut(&mut self) -> &mut String {
        &mut self.keys
    }

    /// Adds an op whose key is what was written to the key buffer since `start`.
    pub(super) fn push(
        &mut self,
        event: usize,
        rule: usize,
        value: Result<f64, SkipReason>,
        start: usize,
        sanitized: bool,
    ) {
        self.ops.push(Op {
            event: event as u32,
            rule: rule as u32,
            value,
            key: (start as u32, self.keys.len() as u32),
            sanitized,
        });
    }

    /// The ops of the event at `event`, from `cursor` on (ops are in event order); moves `cursor` past
    /// them.
    pub(super) fn ops_of(&self, event: usize, cursor: &mut usize) -> &[Op] {
        let start = *cursor;
        let n = self.ops[start..]
            .iter()
            .take_while(|op| op.event as usize == event)
            .count();
        *cursor = start + n;
        &self.ops[start..start + n]
    }

    /// An op's series key.
    pub(super) fn key(&self, op: &Op) -> &str {
        &self.keys[op.key.0 as usize..op.key.1 as usize]
    }
}

/// Walks a batch's [`Prepared`] in event order, for [`crate::derive::Plan::apply`].
#[derive(Debug, Default)]
pub struct Cursor(pub(super) usize);

/// Why a matching event gave a rule no value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    /// The value's field is absent (a `resolved` event without `intake_at`, ...).
    MissingValue,
    /// The value is negative (a duration whose end is before its start).
    NegativeValue,
}

impl SkipReason {
    /// Every reason, in index order (`reason as usize`).
    pub const ALL: [SkipReason; 2] = [SkipReason::MissingValue, SkipReason::NegativeValue];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::MissingValue => "missing_value",
            SkipReason::NegativeValue => "negative_value",
        }
    }
}
