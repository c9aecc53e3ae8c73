//! Sliding windows of exact quantiles: hdrhistograms kept in time slices.

use hdrhistogram::Histogram;

/// One series' window: `slices` histograms, each covering `slice_secs` of wall-clock time. A slice is
/// reused (cleared) when time comes round to it again, so a value older than the window never counts.
#[derive(Debug, Clone)]
pub(super) struct SlidingWindow {
    slices: Vec<Option<(u64, Histogram<u32>)>>,
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

    /// Records `value` (already in resolution units) at time `epoch` (the slice number).
    pub(super) fn record(&mut self, epoch: u64, value: u64, significant_digits: u8) {
        let n = self.slices.len() as u64;
        let slot = &mut self.slices[(epoch % n) as usize];
        match slot {
            Some((e, h)) if *e == epoch => record(h, value),
            _ => {
                // Auto-resizing: memory follows the largest value recorded, not a configured maximum.
                let mut h = match slot.take() {
                    Some((_, mut old)) => {
                        old.reset();
                        old
                    }
                    None => Histogram::new(significant_digits).expect("1 to 5 significant digits"),
                };
                record(&mut h, value);
                *slot = Some((epoch, h));
            }
        }
    }

    /// The slices still inside the window at `epoch`, merged; `None` when they hold nothing.
    pub(super) fn merged(&self, epoch: u64) -> Option<Histogram<u32>> {
        let n = self.slices.len() as u64;
        let mut live = self
            .slices
            .iter()
            .flatten()
            .filter(|(e, h)| *e + n > epoch && *e <= epoch && !h.is_empty());
        let (_, first) = live.next()?;
        let mut merged = first.clone();
        for (_, h) in live {
            // Both auto-resize, so adding cannot fail for lack of range.
            let _ = merged.add(h);
        }
        Some(merged)
    }

    /// Whether every slice is outside the window at `epoch`.
    pub(super) fn is_stale(&self, epoch: u64) -> bool {
        let n = self.slices.len() as u64;
        self.slices.iter().flatten().all(|(e, _)| *e + n <= epoch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_slices_leave_the_window() {
        let mut w = SlidingWindow::new(5);
        w.record(100, 10, 3);
        w.record(101, 20_000, 3);
        let max = w.merged(101).unwrap().max();
        assert!(
            (20_000..=20_020).contains(&max),
            "the range grew to hold it, within 3 digits: {max}"
        );
        assert_eq!(w.merged(101).unwrap().len(), 2);
        assert_eq!(w.merged(104).unwrap().len(), 2);
        assert_eq!(w.merged(105).unwrap().len(), 1, "slice 100 has left");
        assert!(w.merged(106).is_none());
        assert!(w.is_stale(106));
        w.record(106, 5, 3);
        assert_eq!(
            w.merged(106).unwrap().len(),
            1,
            "the reused slot was cleared"
        );
    }
}
