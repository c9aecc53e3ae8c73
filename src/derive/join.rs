//! Intake to resolution without `intake_at`: a `resolved` event that does not say when its request was
//! taken in is joined with the `intake` event of the same (organization, request_id) seen earlier.
//!
//! The pending intakes are bounded: at most `max_entries` (the oldest intake is evicted first) and at most
//! `ttl` old; both evictions are counted. Each entry remembers the Kafka partition its intake came from,
//! so that the state can be persisted per partition ([`super::changelog`]) and handed over with the
//! partition when it moves to another replica. Producers must key lifecycle events by request_id so that
//! a request's events share a partition.

use crate::decode::{Body, Event, Stage};
use crate::telemetry::events::JoinCounted;
use crate::telemetry::SelfMetrics;
use chrono::{DateTime, Utc};
use hashbrown::HashMap;
use std::collections::BTreeSet;
use std::sync::Arc;

/// The Kafka partition an intake came from (`None` for a file or the generator).
pub type Partition = Option<(Arc<str>, i32)>;

/// The identity of a pending intake.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JoinKey {
    /// The organization.
    pub organization: Box<str>,
    /// The request.
    pub request_id: Box<str>,
}

/// A key as held: the organization's length (u32, little endian), the organization and the request
/// id, in one allocation that the map and the age index share (a [`JoinKey`] is two, and holding it
/// in both would make four).
type Packed = Arc<[u8]>;

/// Packs a key into `buf` (cleared first), for a lookup that allocates nothing.
fn pack_into(buf: &mut Vec<u8>, key: &JoinKey) {
    buf.clear();
    let len = u32::try_from(key.organization.len()).unwrap_or(u32::MAX);
    buf.extend_from_slice(&len.to_le_bytes());
    buf.extend_from_slice(key.organization.as_bytes());
    buf.extend_from_slice(key.request_id.as_bytes());
}

/// The key a [`Packed`] holds.
fn unpack(packed: &[u8]) -> JoinKey {
    let (len, rest) = packed.split_at(4.min(packed.len()));
    let len = u32::from_le_bytes(len.try_into().unwrap_or_default()) as usize;
    let (organization, request_id) = rest.split_at(len.min(rest.len()));
    // Packed from two `str`s, and cut where one ends: both halves are UTF-8.
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned().into_boxed_str();
    JoinKey {
        organization: text(organization),
        request_id: text(request_id),
    }
}

/// Whether [`IntakeJoin::apply`] may change the event: a `resolved` event without `intake_at` (the
/// only kind it completes). Every other event derives the same before and after the join, so it can be
/// derived before the join has seen it.
pub fn may_complete(ev: &Event<'_>) -> bool {
    matches!(&ev.body, Body::RequestLifecycle(l) if l.stage == Stage::Resolved && l.intake_at.is_none())
}

#[derive(Debug, Clone)]
struct Entry {
    intake_micros: i64,
    partition: Partition,
}

/// A change of the state, to persist.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// An intake is pending.
    Put {
        /// The input partition the intake came from.
        partition: Partition,
        /// The request.
        key: JoinKey,
        /// When the request came in.
        intake_at: DateTime<Utc>,
    },
    /// It is no more (resolved, or evicted).
    /// The intake is no longer pending (resolved or evicted).
    Delete {
        /// The input partition the intake came from.
        partition: Partition,
        /// The request.
        key: JoinKey,
    },
}

/// What the join counted since the last [`IntakeJoin::take_counts`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JoinCounts {
    /// `resolved` events whose `intake_at` came from the state.
    pub joined: u64,
    /// Intakes dropped for age.
    pub evicted_ttl: u64,
    /// Intakes dropped because the state was full.
    pub evicted_capacity: u64,
}

/// The pending intakes.
#[derive(Debug)]
pub struct IntakeJoin {
    entries: HashMap<Packed, Entry>,
    /// (intake time, key): the oldest first, for eviction.
    by_age: BTreeSet<(i64, Packed)>,
    /// Where a key is packed for a lookup.
    scratch: Vec<u8>,
    max_entries: usize,
    ttl_micros: i64,
    counts: JoinCounts,
}

fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

fn from_micros(us: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(us).unwrap_or_default()
}

impl IntakeJoin {
    /// An empty state with these bounds.
    pub fn new(max_entries: usize, ttl: std::time::Duration) -> Self {
        IntakeJoin {
            entries: HashMap::new(),
            by_age: BTreeSet::new(),
            scratch: Vec::new(),
            max_entries: max_entries.max(1),
            ttl_micros: i64::try_from(ttl.as_micros()).unwrap_or(i64::MAX),
            counts: JoinCounts::default(),
        }
    }

    /// Pending intakes.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn remove(&mut self, key: &JoinKey) -> Option<Entry> {
        pack_into(&mut self.scratch, key);
        let (packed, entry) = self.entries.remove_entry(self.scratch.as_slice())?;
        self.by_age.remove(&(entry.intake_micros, packed));
        Some(entry)
    }

    /// Inserts (or keeps the earlier of two intakes), evicting the oldest when full.
    fn insert(
        &mut self,
        key: JoinKey,
        intake_micros: i64,
        partition: Partition,
        now_micros: i64,
        changes: &mut Vec<Change>,
    ) -> bool {
        if now_micros.saturating_sub(intake_micros) > self.ttl_micros {
            self.counts.evicted_ttl += 1;
            return false;
        }
        pack_into(&mut self.scratch, &key);
        if let Some(existing) = self.entries.get(self.scratch.as_slice()) {
            if existing.intake_micros <= intake_micros {
                return false;
            }
            self.remove(&key);
        }
        while self.entries.len() >= self.max_entries {
            let Some((_, oldest)) = self.by_age.pop_first() else {
                break;
            };
            if let Some(entry) = self.entries.remove(&oldest) {
                self.counts.evicted_capacity += 1;
                changes.push(Change::Delete {
                    partition: entry.partition,
                    key: unpack(&oldest),
                });
            }
        }
        let packed: Packed = Arc::from(self.scratch.as_slice());
        self.by_age.insert((intake_micros, packed.clone()));
        self.entries.insert(
            packed,
            Entry {
                intake_micros,
                partition,
            },
        );
        true
    }

    /// Applies a lifecycle event: remembers an intake; fills a `resolved` event's missing `intake_at`
    /// and forgets the request. Appends what changed to `changes`.
    pub fn apply(
        &mut self,
        ev: &mut Event<'_>,
        partition: &Partition,
        now: DateTime<Utc>,
        changes: &mut Vec<Change>,
    ) {
        let organization = ev.organization.clone();
        let occurred_at = ev.occurred_at;
        let Body::RequestLifecycle(l) = &mut ev.body else {
            return;
        };
        let key = JoinKey {
            organization: organization.as_ref().into(),
            request_id: l.request_id.as_ref().into(),
        };
        match l.stage {
            Stage::Intake => {
                let (at, now) = (micros(occurred_at), micros(now));
                if self.insert(key.clone(), at, partition.clone(), now, changes) {
                    let partition = partition.clone();
                    changes.push(Change::Put {
                        partition,
                        key,
                        intake_at: occurred_at,
                    });
                }
            }
            Stage::Resolved => {
                if let Some(entry) = self.remove(&key) {
                    if l.intake_at.is_none() {
                        l.intake_at = Some(from_micros(entry.intake_micros));
                        self.counts.joined += 1;
                    }
                    changes.push(Change::Delete {
                        partition: entry.partition,
                        key,
                    });
                }
            }
            _ => {}
        }
    }

    /// Replays one persisted change (restore).
    pub fn restore(&mut self, change: Change, now: DateTime<Utc>) {
        let mut evicted = Vec::new();
        match change {
            Change::Put {
                partition,
                key,
                intake_at,
            } => {
                self.insert(key, micros(intake_at), partition, micros(now), &mut evicted);
            }
            Change::Delete { key, .. } => {
                self.remove(&key);
            }
        }
    }

    /// Forgets every intake of a partition (it moved to another replica).
    pub fn drop_partition(&mut self, topic: &str, partition: i32) -> usize {
        let gone: Vec<Packed> = self
            .entries
            .iter()
            .filter(|(_, e)| {
                e.partition
                    .as_ref()
                    .is_some_and(|(t, p)| t.as_ref() == topic && *p == partition)
            })
            .map(|(k, _)| k.clone())
            .collect();
        for key in &gone {
            if let Some(entry) = self.entries.remove(key) {
                self.by_age.remove(&(entry.intake_micros, key.clone()));
            }
        }
        gone.len()
    }

    /// Evicts intakes older than the TTL; appends the deletions to `changes`.
    pub fn expire(&mut self, now: DateTime<Utc>, changes: &mut Vec<Change>) {
        let limit = micros(now).saturating_sub(self.ttl_micros);
        while let Some((at, _)) = self.by_age.first() {
            if *at >= limit {
                break;
            }
            let (_, key) = self.by_age.pop_first().expect("checked above");
            if let Some(entry) = self.entries.remove(&key) {
                self.counts.evicted_ttl += 1;
                changes.push(Change::Delete {
                    partition: entry.partition,
                    key: unpack(&key),
                });
            }
        }
    }

    /// Takes the counts since the last call.
    pub fn take_counts(&mut self) -> JoinCounts {
        std::mem::take(&mut self.counts)
    }

    /// Takes the counts since the last call and counts them, with the pending size, in the self metrics.
    pub fn emit_counts(&mut self, metrics: &SelfMetrics) {
        let c = self.take_counts();
        JoinCounted {
            joined: c.joined,
            evicted_ttl: c.evicted_ttl,
            evicted_capacity: c.evicted_capacity,
            pending: self.len(),
        }
        .emit(metrics);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::decode;
    use std::time::Duration;

    fn lifecycle(request: &str, stage: &str, at: &str, extra: &str) -> String {
        format!(
            r#"{{"event_id":"e","type":"request_lifecycle","occurred_at":"{at}","organization":"acme","request_id":"{request}","stage":"{stage}"{extra}}}"#
        )
    }

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-27T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn keys_are_told_apart_by_where_the_organization_ends_and_come_back_whole() {
        let key = |o: &str, r: &str| JoinKey {
            organization: o.into(),
            request_id: r.into(),
        };
        let (mut a, mut b) = (Vec::new(), Vec::new());
        pack_into(&mut a, &key("ab", "c"));
        pack_into(&mut b, &key("a", "bc"));
        assert_ne!(a, b);
        for k in [
            key("ab", "c"),
            key("", ""),
            key("a\0b", "\u{e9}\0"),
            key("acme", ""),
        ] {
            pack_into(&mut a, &k);
            assert_eq!(unpack(&a), k);
        }
        // Evicted for room, the oldest comes back as it went in.
        let mut join = IntakeJoin::new(1, Duration::from_secs(30 * 86400));
        let mut changes = Vec::new();
        let now = micros(now());
        assert!(join.insert(key("ab", "c"), now - 2, None, now, &mut changes));
        assert!(join.insert(key("a", "bc"), now - 1, None, now, &mut changes));
        assert_eq!(
            changes,
            [Change::Delete {
                partition: None,
                key: key("ab", "c")
            }]
        );
        assert_eq!(join.len(), 1);
        assert!(join.remove(&key("a", "bc")).is_some());
        assert!(join.is_empty() && join.by_age.is_empty());
    }

    #[test]
    fn a_resolution_without_intake_at_is_joined_with_its_intake() {
        let mut join = IntakeJoin::new(10, Duration::from_secs(30 * 86400));
        let mut changes = Vec::new();
        let p: Partition = Some((Arc::from("t"), 2));
        let intake = lifecycle("r1", "intake", "2026-11-27T10:00:00Z", "");
        join.apply(
            &mut decode(intake.as_bytes(), None).unwrap(),
            &p,
            now(),
            &mut changes,
        );
        assert_eq!(join.len(), 1);
        let resolved = lifecycle("r1", "resolved", "2026-11-27T11:30:00Z", "");
        let mut ev = decode(resolved.as_bytes(), None).unwrap();
        join.apply(&mut ev, &None, now(), &mut changes);
        let Body::RequestLifecycle(l) = &ev.body else {
            unreachable!()
        };
        assert_eq!(
            l.intake_at.unwrap().to_rfc3339(),
            "2026-11-27T10:00:00+00:00"
        );
        assert!(join.is_empty());
        assert_eq!(join.take_counts().joined, 1);
        assert!(matches!(
            &changes[0],
            Change::Put {
                partition: Some((_, 2)),
                ..
            }
        ));
        assert!(
            matches!(
                &changes[1],
                Change::Delete {
                    partition: Some((_, 2)),
                    ..
                }
            ),
            "deleted where it was put"
        );
    }

    #[test]
    fn an_explicit_intake_at_wins() {
        let mut join = IntakeJoin::new(10, Duration::from_secs(86400));
        let mut changes = Vec::new();
        join.apply(
            &mut decode(
                lifecycle("r", "intake", "2026-11-27T10:00:00Z", "").as_bytes(),
                None,
            )
            .unwrap(),
            &None,
            now(),
            &mut changes,
        );
        let text = lifecycle(
            "r",
            "resolved",
            "2026-11-27T11:00:00Z",
            r#","intake_at":"2026-11-27T09:00:00Z""#,
        );
        let mut ev = decode(text.as_bytes(), None).unwrap();
        join.apply(&mut ev, &None, now(), &mut changes);
        let Body::RequestLifecycle(l) = &ev.body else {
            unreachable!()
        };
        assert_eq!(
            l.intake_at.unwrap().to_rfc3339(),
            "2026-11-27T09:00:00+00:00"
        );
        assert_eq!(join.take_counts().joined, 0);
        assert!(
            join.is_empty(),
            "the resolution closes the request either way"
        );
    }

    #[test]
    fn bounded_by_capacity_and_age_with_both_counted() {
        let mut join = IntakeJoin::new(2, Duration::from_secs(3600));
        let mut changes = Vec::new();
        for (r, at) in [
            ("a", "2026-11-27T11:10:00Z"),
            ("b", "2026-11-27T11:20:00Z"),
            ("c", "2026-11-27T11:30:00Z"),
        ] {
            join.apply(
                &mut decode(lifecycle(r, "intake", at, "").as_bytes(), None).unwrap(),
                &None,
                now(),
                &mut changes,
            );
        }
        assert_eq!(join.len(), 2);
        assert!(changes.contains(&Change::Delete {
            partition: None,
            key: JoinKey {
                organization: "acme".into(),
                request_id: "a".into()
            }
        }));
        // Too old on arrival.
        join.apply(
            &mut decode(
                lifecycle("old", "intake", "2026-11-27T09:00:00Z", "").as_bytes(),
                None,
            )
            .unwrap(),
            &None,
            now(),
            &mut changes,
        );
        assert_eq!(join.len(), 2);
        // b and c age out.
        join.expire(
            DateTime::parse_from_rfc3339("2026-11-27T12:25:00Z")
                .unwrap()
                .with_timezone(&Utc),
            &mut changes,
        );
        assert_eq!(join.len(), 1);
        let counts = join.take_counts();
        assert_eq!((counts.evicted_capacity, counts.evicted_ttl), (1, 2));
    }

    #[test]
    fn a_partition_can_be_dropped_and_restored() {
        let mut join = IntakeJoin::new(100, Duration::from_secs(86400));
        let mut changes = Vec::new();
        let p0: Partition = Some((Arc::from("t"), 0));
        let p1: Partition = Some((Arc::from("t"), 1));
        join.apply(
            &mut decode(
                lifecycle("a", "intake", "2026-11-27T10:00:00Z", "").as_bytes(),
                None,
            )
            .unwrap(),
            &p0,
            now(),
            &mut changes,
        );
        join.apply(
            &mut decode(
                lifecycle("b", "intake", "2026-11-27T10:00:00Z", "").as_bytes(),
                None,
            )
            .unwrap(),
            &p1,
            now(),
            &mut changes,
        );
        assert_eq!(join.drop_partition("t", 0), 1);
        assert_eq!(join.len(), 1);
        let mut other = IntakeJoin::new(100, Duration::from_secs(86400));
        for change in changes {
            other.restore(change, now());
        }
        assert_eq!(other.len(), 2);
    }
}
