//! Sliding windows of exact quantiles: hdrhistograms kept in time slices.

use hdrhistogram::Histogram;

/// One slice: its number, the histogram (in resolution units) and the exact sum of its values.
type Slice = (u64, Histogram<u32>, f64);

/// One series' window: `slices` histograms, each covering `slice_secs` of wall-clock time. A slice is
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
        match slot {
            Some((e, h, sum)) if *e == epoch => {
                record(h, scaled);
                *sum += value;
            }
            _ => {
                // Auto-resizing: memory follows the largest value recorded, not a configured maximum.
                let mut h = match slot.take() {
                    Some((_, mut old, _)) => {
                        old.reset();
                        old
                    }
                    None => Histogram::new(significant_digits).expect("1 to 5 significant digits"),
                };
                record(&mut h, scaled);
                *slot = Some((epoch, h, value));
            }
        }
    }

    /// The slices inside the window at `epoch`, merged, with the sum of their values; `None` when they
    /// hold nothing.
    pub(super) fn merged(&self, epoch: u64) -> Option<(Histogram<u32>, f64)> {
        let n = self.slices.len() as u64;
        let mut live = self
            .slices
            .iter()
            .flatten()
            .filter(|(e, h, _)| *e + n > epoch && *e <= epoch && !h.is_empty());
        let (_, first, first_sum) = live.next()?;
        let (mut merged, mut sum) = (first.clone(), *first_sum);
        for (_, h, s) in live {
            // Both auto-resize, so adding cannot fail for lack of range.
            let _ = merged.add(h);
            sum += s;
        }
        Some((merged, sum))
    }

    /// Whether every slice is outside the window at `epoch`.
    pub(super) fn is_stale(&self, epoch: u64) -> bool {
        let n = self.slices.len() as u64;
        self.slices
            .iter()
            .flatten()
            .all(|(e, _, _)| *e + n <= epoch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_slices_leave_the_window() {
        let mut w = SlidingWindow::new(5);
        w.record(100, 0.01, 10, 3);
        w.record(101, 20.0, 20_000, 3);
        let (h, sum) = w.merged(101).unwrap();
        assert!(
            (20_000..=20_020).contains(&h.max()),
            "the range grew to hold it, within 3 digits: {}",
            h.max()
        );
        assert_eq!((h.len(), sum), (2, 20.01));
        assert_eq!(w.merged(104).unwrap().0.len(), 2);
        assert_eq!(w.merged(105).unwrap().0.len(), 1, "slice 100 has left");
        assert!(w.merged(106).is_none());
        assert!(w.is_stale(106));
        w.record(106, 0.005, 5, 3);
        assert_eq!(
            w.merged(106).unwrap(),
            (w.merged(106).unwrap().0, 0.005),
            "the reused slot was cleared"
        );
        assert_eq!(w.merged(106).unwrap().0.len(), 1);
    }
}
