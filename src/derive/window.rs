//! Sliding windows of exact quantiles: hdrhistograms kept in time slices.
//!
//! A slice holds its values themselves while they are few, and an hdrhistogram once they are many:
//! most window series see a handful of values a slice, and an hdrhistogram of 3 significant digits
//! over seconds of latency is 15 to 30 KiB whatever it holds. Either way a merge records the same
//! values into one histogram, so the quantiles are the same.

use hdrhistogram::Histogram;

/// Values a slice keeps as they are before it moves them into an hdrhistogram (2 KiB of them).
const FEW: usize = 256;

/// What a slice counts: its values (in resolution units) while there are at most [`FEW`], else the
/// histogram they were moved into.
#[derive(Debug, Clone)]
enum Counts {
    Few(Vec<u64>),
    Many(Box<Histogram<u32>>),
}

/// One slice: its number, its counts and the exact sum of its values.
#[derive(Debug, Clone)]
struct Slice {
    epoch: u64,
    counts: Counts,
    sum: f64,
}

/// One series' window: `slices` slices, each covering `slice_secs` of wall-clock time. A slice is
/// reused (cleared) when time comes round to it again, so a value older than the window never counts.
/// The window at slice `e` is slices `e - slices + 1 ..= e`: the current, partial slice and the full ones
/// before it.
#[derive(Debug, Clone)]
pub(super) struct SlidingWindow {
    slices: Vec<Option<Slice>>,
}

/// Records a value, growing the histogram's range as needed (`saturating_record` would clamp to the
/// current range instead); a count that would overflow `u32` saturates.
fn record(h: &mut Histogram<u32>, value: u64) {
    if h.record(value).is_err() {
        h.saturating_record(value);
    }
}

/// An empty histogram. Auto-resizing: memory follows the largest value recorded, not a configured
/// maximum.
fn histogram(significant_digits: u8) -> Histogram<u32> {
    Histogram::new(significant_digits).expect("1 to 5 significant digits")
}

impl Counts {
    fn record(&mut self, value: u64, significant_digits: u8) {
        match self {
            Counts::Few(values) if values.len() < FEW => values.push(value),
            Counts::Few(values) => {
                let mut h = histogram(significant_digits);
                for v in values.iter().copied().chain([value]) {
                    record(&mut h, v);
                }
                *self = Counts::Many(Box::new(h));
            }
            Counts::Many(h) => record(h, value),
        }
    }

    /// Empties it, keeping its allocation for the slice's next turn.
    fn clear(&mut self) {
        match self {
            Counts::Few(values) => values.clear(),
            Counts::Many(h) => h.reset(),
        }
    }

    fn is_empty(&self) -> bool {
        match self {
            Counts::Few(values) => values.is_empty(),
            Counts::Many(h) => h.is_empty(),
        }
    }

    /// Adds these counts to `into`.
    fn add_to(&self, into: &mut Histogram<u32>) {
        match self {
            Counts::Few(values) => values.iter().for_each(|v| record(into, *v)),
            // Both auto-resize, so adding cannot fail for lack of range.
            Counts::Many(h) => {
                let _ = into.add(&**h);
            }
        }
    }
}

impl SlidingWindow {
    pub(super) fn new(slices: u32) -> Self {
        SlidingWindow {
            slices: vec![None; slices as usize],
        }
    }

    /// Records `value` (`scaled`: the same in resolution units) in slice `epoch`.
    pub(super) fn record(&mut self, epoch: u64, value: f64, scaled: u64, significant_digits: u8) {
        let n = self.slices.len() as u64;
        let slot = &mut self.slices[(epoch % n) as usize];
        let slice = match slot {
            Some(slice) if slice.epoch == epoch => slice,
            Some(slice) => {
                slice.counts.clear();
                slice.epoch = epoch;
                slice.sum = 0.0;
                slice
            }
            None => slot.insert(Slice {
                epoch,
                counts: Counts::Few(Vec::new()),
                sum: 0.0,
            }),
        };
        slice.counts.record(scaled, significant_digits);
        slice.sum += value;
    }

    /// The slices inside the window at `epoch`, merged, with the sum of their values; `None` when they
    /// hold nothing.
    pub(super) fn merged(
        &self,
        epoch: u64,
        significant_digits: u8,
    ) -> Option<(Histogram<u32>, f64)> {
        let n = self.slices.len() as u64;
        let mut live = self
            .slices
            .iter()
            .flatten()
            .filter(|s| s.epoch + n > epoch && s.epoch <= epoch && !s.counts.is_empty())
            .peekable();
        live.peek()?;
        let (mut merged, mut sum) = (histogram(significant_digits), 0.0);
        for slice in live {
            slice.counts.add_to(&mut merged);
            sum += slice.sum;
        }
        Some((merged, sum))
    }

    /// Whether every slice is outside the window at `epoch`.
    pub(super) fn is_stale(&self, epoch: u64) -> bool {
        let n = self.slices.len() as u64;
        self.slices.iter().flatten().all(|s| s.epoch + n <= epoch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// How many of a window's slices hold an hdrhistogram.
    fn dense_slices(w: &SlidingWindow) -> usize {
        w.slices
            .iter()
            .flatten()
            .filter(|s| matches!(s.counts, Counts::Many(_)))
            .count()
    }

    proptest! {
        /// Whether a slice keeps its values or an hdrhistogram, the window reads the same as one
        /// hdrhistogram of every value still inside it.
        #[test]
        fn a_window_reads_as_one_histogram_of_its_live_values(
            values in prop::collection::vec((0u64..12, 0u64..5_000_000), 0..1_500),
            digits in 1u8..=4,
        ) {
            let mut w = SlidingWindow::new(4);
            let mut epoch = 0;
            let mut seen = Vec::new();
            for (step, value) in values {
                epoch += u64::from(step > 9);
                w.record(epoch, value as f64, value, digits);
                seen.push((epoch, value));
            }
            let mut want = histogram(digits);
            let mut sum = 0.0;
            for (_, v) in seen.iter().filter(|(e, _)| e + 4 > epoch) {
                record(&mut want, *v);
                sum += *v as f64;
            }
            match w.merged(epoch, digits) {
                None => prop_assert!(want.is_empty()),
                Some((got, got_sum)) => {
                    prop_assert_eq!(got.len(), want.len());
                    prop_assert_eq!(got_sum, sum);
                    for q in [0.0, 0.25, 0.5, 0.9, 0.95, 0.99, 0.999, 1.0] {
                        prop_assert_eq!(got.value_at_quantile(q), want.value_at_quantile(q));
                    }
                }
            }
        }
    }

    #[test]
    fn a_slice_keeps_few_values_as_they_are_and_many_in_a_histogram() {
        let mut w = SlidingWindow::new(5);
        for v in 0..FEW as u64 {
            w.record(7, v as f64, v, 3);
        }
        assert_eq!(dense_slices(&w), 0, "{FEW} values are kept as they are");
        w.record(7, 1.0, 1, 3);
        assert_eq!(
            dense_slices(&w),
            1,
            "one more, and they go into a histogram"
        );
        assert_eq!(w.merged(7, 3).unwrap().0.len(), FEW as u64 + 1);
        w.record(8, 1.0, 1, 3);
        assert_eq!(dense_slices(&w), 1, "the next slice starts with its values");
    }

    #[test]
    fn old_slices_leave_the_window() {
        let mut w = SlidingWindow::new(5);
        w.record(100, 0.01, 10, 3);
        w.record(101, 20.0, 20_000, 3);
        let (h, sum) = w.merged(101, 3).unwrap();
        assert!(
            (20_000..=20_020).contains(&h.max()),
            "the range grew to hold it, within 3 digits: {}",
            h.max()
        );
        assert_eq!((h.len(), sum), (2, 20.01));
        assert_eq!(w.merged(104, 3).unwrap().0.len(), 2);
        assert_eq!(w.merged(105, 3).unwrap().0.len(), 1, "slice 100 has left");
        assert!(w.merged(106, 3).is_none());
        assert!(w.is_stale(106));
        w.record(106, 0.005, 5, 3);
        assert_eq!(
            w.merged(106, 3).unwrap(),
            (w.merged(106, 3).unwrap().0, 0.005),
            "the reused slot was cleared"
        );
        assert_eq!(w.merged(106, 3).unwrap().0.len(), 1);
    }
}
