//! Offsets: which Kafka offset may be stored for each partition.
//!
//! A batch holds, per partition, a run of ascending offsets. Batches may finish in any order (slow sinks,
//! retries), but the offset stored for a partition must never pass a record that is not finished. The
//! tracker keeps, per partition, the batches in flight in read order and advances a low watermark over the
//! finished prefix only: the offset to store is one past the last record of that prefix.
//!
//! Each assignment of a partition gets a new generation. A completion that names an older generation (the
//! partition was revoked, and maybe assigned back, while the batch was in flight) is ignored: its records
//! will be read again by whoever owns the partition now.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

/// A topic and partition.
pub type TopicPartition = (Arc<str>, i32);

/// The part of one batch that belongs to one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// The topic.
    pub topic: Arc<str>,
    /// The partition.
    pub partition: i32,
    /// The generation of the partition's assignment when the batch was read.
    pub generation: u64,
    /// The batch's sequence number (unique per source).
    pub batch: u64,
    /// The last offset of the batch in this partition.
    pub last_offset: i64,
}

#[derive(Debug)]
struct InFlight {
    batch: u64,
    last_offset: i64,
    done: bool,
}

#[derive(Debug)]
struct PartitionState {
    generation: u64,
    in_flight: VecDeque<InFlight>,
}

/// Per-partition low watermarks of finished records.
#[derive(Debug, Default)]
pub struct OffsetTracker {
    partitions: HashMap<TopicPartition, PartitionState>,
    next_generation: u64,
}

impl OffsetTracker {
    /// An empty tracker.
    pub fn new() -> Self {
        Self::default()
    }

    /// The partition is (re)assigned: a new generation, nothing in flight.
    pub fn assign(&mut self, tp: TopicPartition) {
        self.next_generation += 1;
        self.partitions.insert(
            tp,
            PartitionState {
                generation: self.next_generation,
                in_flight: VecDeque::new(),
            },
        );
    }

    /// The partition is gone: forget it (completions still in flight will be ignored).
    pub fn revoke(&mut self, tp: &TopicPartition) {
        self.partitions.remove(tp);
    }

    /// The current generation of an assigned partition.
    pub fn generation(&self, tp: &TopicPartition) -> Option<u64> {
        self.partitions.get(tp).map(|p| p.generation)
    }

    /// A batch was read: its segment for this partition is now in flight. Returns `None` when the partition
    /// is not assigned (the record came from a revoked partition and must not be processed).
    pub fn begin(&mut self, tp: &TopicPartition, batch: u64, last_offset: i64) -> Option<Segment> {
        let state = self.partitions.get_mut(tp)?;
        debug_assert!(state
            .in_flight
            .back()
            .is_none_or(|b| b.last_offset < last_offset));
        state.in_flight.push_back(InFlight {
            batch,
            last_offset,
            done: false,
        });
        Some(Segment {
            topic: tp.0.clone(),
            partition: tp.1,
            generation: state.generation,
            batch,
            last_offset,
        })
    }

    /// A segment is finished. Returns the offset that may now be stored for its partition (one past the last
    /// finished record of the finished prefix), if that moved.
    pub fn complete(&mut self, segment: &Segment) -> Option<i64> {
        let state = self
            .partitions
            .get_mut(&(segment.topic.clone(), segment.partition))?;
        if state.generation != segment.generation {
            return None;
        }
        let entry = state
            .in_flight
            .iter_mut()
            .find(|f| f.batch == segment.batch)?;
        entry.done = true;
        let mut store = None;
        while state.in_flight.front().is_some_and(|f| f.done) {
            store = state.in_flight.pop_front().map(|f| f.last_offset + 1);
        }
        store
    }

    /// Segments still in flight for this partition.
    pub fn in_flight(&self, tp: &TopicPartition) -> usize {
        self.partitions.get(tp).map_or(0, |p| p.in_flight.len())
    }

    /// Segments still in flight over all partitions.
    pub fn total_in_flight(&self) -> usize {
        self.partitions.values().map(|p| p.in_flight.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn tp(p: i32) -> TopicPartition {
        (Arc::from("t"), p)
    }

    #[test]
    fn out_of_order_completion_never_skips_a_record() {
        let mut t = OffsetTracker::new();
        t.assign(tp(0));
        let a = t.begin(&tp(0), 1, 9).unwrap();
        let b = t.begin(&tp(0), 2, 19).unwrap();
        let c = t.begin(&tp(0), 3, 29).unwrap();
        assert_eq!(t.complete(&b), None, "batch 1 is still in flight");
        assert_eq!(t.complete(&c), None);
        assert_eq!(
            t.complete(&a),
            Some(30),
            "all three are done: store one past offset 29"
        );
        assert_eq!(t.in_flight(&tp(0)), 0);
    }

    #[test]
    fn completions_of_an_older_generation_are_ignored() {
        let mut t = OffsetTracker::new();
        t.assign(tp(0));
        let old = t.begin(&tp(0), 1, 9).unwrap();
        t.revoke(&tp(0));
        assert_eq!(t.complete(&old), None);
        t.assign(tp(0));
        let new = t.begin(&tp(0), 2, 9).unwrap();
        assert_eq!(
            t.complete(&old),
            None,
            "a completion from before the reassignment"
        );
        assert_eq!(t.complete(&new), Some(10));
    }

    #[test]
    fn records_of_unassigned_partitions_are_refused() {
        let mut t = OffsetTracker::new();
        assert_eq!(t.begin(&tp(3), 1, 0), None);
    }

    proptest! {
        /// Whatever the completion order, the stored offset is always one past a record whose every
        /// predecessor is finished, and it ends one past the last record.
        #[test]
        fn stored_offset_is_a_low_watermark(order in Just((0..20usize).collect::<Vec<_>>()).prop_shuffle()) {
            let mut t = OffsetTracker::new();
            t.assign(tp(0));
            let segments: Vec<_> = (0..20).map(|i| t.begin(&tp(0), i as u64, i as i64 * 10 + 9).unwrap()).collect();
            let mut finished = [false; 20];
            let mut stored = 0;
            for i in order {
                finished[i] = true;
                if let Some(offset) = t.complete(&segments[i]) {
                    prop_assert!(offset > stored);
                    stored = offset;
                }
                let prefix = finished.iter().take_while(|f| **f).count();
                prop_assert_eq!(stored, prefix as i64 * 10);
            }
            prop_assert_eq!(stored, 200);
        }
    }
}
