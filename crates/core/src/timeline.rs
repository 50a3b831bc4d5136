//! Per-interval counts over a run (tokens, completions, sends, busy time), so throughput and concurrency can be
//! measured over the steady window alone, and later plotted, without keeping every request in memory.

use serde::{Deserialize, Serialize};

/// Width of one timeline bin.
pub const BIN_US: u64 = 20_000;

#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Bin {
    pub sent: u32,
    pub completed_ok: u32,
    pub completed_good: u32,
    pub failed: u32,
    pub output_tokens: f64,
    pub input_tokens: u64,
    /// Sum over measured requests of the time each was in flight inside this bin: ∫ concurrency dt.
    pub busy_us: u64,
    /// The same over warm-up requests: a user still waiting on its warm-up holds a request at the server too.
    pub warmup_busy_us: u64,
}

/// Counts per `BIN_US` interval from the run's start.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Timeline {
    pub bins: Vec<Bin>,
}

impl Timeline {
    pub fn bin_mut(&mut self, at_us: u64) -> &mut Bin {
        let i = (at_us / BIN_US) as usize;
        if i >= self.bins.len() {
            self.bins.resize(i + 1, Bin::default());
        }
        &mut self.bins[i]
    }

    /// Adds the interval `[from, to)` during which one measured request was in flight.
    pub fn add_busy(&mut self, from_us: u64, to_us: u64) {
        self.add_interval(from_us, to_us, |bin| &mut bin.busy_us);
    }

    /// Adds the interval `[from, to)` during which one warm-up request was in flight.
    pub fn add_warmup_busy(&mut self, from_us: u64, to_us: u64) {
        self.add_interval(from_us, to_us, |bin| &mut bin.warmup_busy_us);
    }

    fn add_interval(&mut self, from_us: u64, to_us: u64, field: impl Fn(&mut Bin) -> &mut u64) {
        let mut at = from_us;
        while at < to_us {
            let bin_end = (at / BIN_US + 1) * BIN_US;
            let until = bin_end.min(to_us);
            *field(self.bin_mut(at)) += until - at;
            at = until;
        }
    }

    pub fn merge(&mut self, other: &Timeline) {
        if other.bins.len() > self.bins.len() {
            self.bins.resize(other.bins.len(), Bin::default());
        }
        for (a, b) in self.bins.iter_mut().zip(&other.bins) {
            a.sent += b.sent;
            a.completed_ok += b.completed_ok;
            a.completed_good += b.completed_good;
            a.failed += b.failed;
            a.output_tokens += b.output_tokens;
            a.input_tokens += b.input_tokens;
            a.busy_us += b.busy_us;
            a.warmup_busy_us += b.warmup_busy_us;
        }
    }

    /// Sums `field` over `[from, to)`, counting each edge bin in proportion to its overlap with the window.
    pub fn sum_over(&self, from_us: u64, to_us: u64, field: impl Fn(&Bin) -> f64) -> f64 {
        let mut total = 0.0;
        for (i, bin) in self.bins.iter().enumerate() {
            let start = i as u64 * BIN_US;
            let end = start + BIN_US;
            let overlap = end.min(to_us).saturating_sub(start.max(from_us));
            if overlap > 0 {
                total += field(bin) * overlap as f64 / BIN_US as f64;
            }
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_time_is_split_across_bins_exactly() {
        let mut t = Timeline::default();
        t.add_busy(BIN_US / 2, BIN_US * 3);
        let total: u64 = t.bins.iter().map(|b| b.busy_us).sum();
        assert_eq!(total, BIN_US * 5 / 2);
        assert_eq!(t.bins[0].busy_us, BIN_US / 2);
        assert_eq!(
            t.sum_over(0, BIN_US * 3, |b| b.busy_us as f64),
            (BIN_US * 5 / 2) as f64
        );
    }

    #[test]
    fn window_sums_prorate_edge_bins() {
        let mut t = Timeline::default();
        t.bin_mut(0).sent = 10;
        t.bin_mut(BIN_US).sent = 10;
        assert_eq!(
            t.sum_over(BIN_US / 2, BIN_US * 2, |b| f64::from(b.sent)),
            15.0
        );
    }
}
