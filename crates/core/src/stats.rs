//! Latency distributions with bounded memory and error: HDR histograms in microseconds, 3 significant digits.
//! Mergeable, so each worker thread keeps its own and the run merges them once at the end.

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Largest recordable value: one hour in microseconds. Larger values are clamped and counted.
const MAX_US: u64 = 3_600_000_000;

/// A latency distribution in microseconds.
#[derive(Clone, Debug)]
pub struct LatencyHistogram {
    hist: Histogram<u64>,
    clamped: u64,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self::new()
    }
}

impl LatencyHistogram {
    pub fn new() -> Self {
        let hist =
            Histogram::new_with_bounds(1, MAX_US, 3).expect("static histogram bounds are valid");
        Self { hist, clamped: 0 }
    }

    /// Records one value in microseconds; zero is recorded as the lowest bucket, values above an hour are clamped.
    pub fn record_us(&mut self, value_us: u64) {
        if value_us > MAX_US {
            self.clamped += 1;
        }
        self.hist.saturating_record(value_us.max(1));
    }

    pub fn record_us_n(&mut self, value_us: u64, count: u64) {
        if count == 0 {
            return;
        }
        if value_us > MAX_US {
            self.clamped += count;
        }
        // `record_n` only fails when the value is out of range, which the clamp below rules out.
        let _ = self.hist.record_n(value_us.clamp(1, MAX_US), count);
    }

    pub fn merge(&mut self, other: &LatencyHistogram) {
        // Both sides share the same bounds, so `add` cannot fail.
        let _ = self.hist.add(&other.hist);
        self.clamped += other.clamped;
    }

    pub fn count(&self) -> u64 {
        self.hist.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hist.is_empty()
    }

    /// Value at quantile `q` (0..=1) in microseconds, or `None` when empty.
    pub fn quantile_us(&self, q: f64) -> Option<u64> {
        (!self.is_empty()).then(|| self.value_at(q))
    }

    /// The lowest value of the bucket holding quantile `q`: an exact recorded value reads back unchanged.
    fn value_at(&self, q: f64) -> u64 {
        self.hist.lowest_equivalent(self.hist.value_at_quantile(q))
    }

    /// The summary printed and stored for every latency: count, mean, stddev, extremes and percentiles, in ms.
    pub fn summary(&self) -> Option<Summary> {
        if self.is_empty() {
            return None;
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Some(Summary {
            count: self.hist.len(),
            mean: self.hist.mean() / 1000.0,
            stddev: self.hist.stdev() / 1000.0,
            min: ms(self.hist.min()),
            max: ms(self.hist.lowest_equivalent(self.hist.max())),
            p50: ms(self.value_at(0.50)),
            p90: ms(self.value_at(0.90)),
            p95: ms(self.value_at(0.95)),
            p99: ms(self.value_at(0.99)),
            p999: ms(self.value_at(0.999)),
        })
    }
}

/// Summary statistics of one distribution. Every value is in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub count: u64,
    pub mean: f64,
    pub stddev: f64,
    pub min: f64,
    pub max: f64,
    pub p50: f64,
    pub p90: f64,
    pub p95: f64,
    pub p99: f64,
    pub p999: f64,
}

impl Summary {
    /// The statistic an SLO or a table names: `p50`, `p90`, `p95`, `p99`, `p999`, `mean`, `max`, `min`.
    pub fn stat(&self, name: &str) -> Option<f64> {
        Some(match name {
            "p50" | "median" => self.p50,
            "p90" => self.p90,
            "p95" => self.p95,
            "p99" => self.p99,
            "p999" | "p99.9" => self.p999,
            "mean" | "avg" => self.mean,
            "max" => self.max,
            "min" => self.min,
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn percentiles_of_a_uniform_ramp_are_within_three_digits() {
        let mut h = LatencyHistogram::new();
        for v in 1..=100_000u64 {
            h.record_us(v);
        }
        let s = h.summary().unwrap();
        assert_eq!(s.count, 100_000);
        for (got, want) in [(s.p50, 50.0), (s.p90, 90.0), (s.p99, 99.0), (s.p999, 99.9)] {
            assert!((got - want).abs() / want < 1e-3, "got {got} want {want}");
        }
        assert!((s.mean - 50.0005).abs() < 0.05);
        assert_eq!(s.min, 0.001);
    }

    #[test]
    fn huge_values_are_clamped_not_lost() {
        let mut h = LatencyHistogram::new();
        h.record_us(u64::MAX);
        h.record_us_n(MAX_US * 2, 3);
        assert_eq!(h.count(), 4);
        assert_eq!(h.clamped, 4);
    }

    proptest! {
        #[test]
        fn merging_equals_recording_into_one(a in proptest::collection::vec(1u64..10_000_000, 0..200),
                                             b in proptest::collection::vec(1u64..10_000_000, 0..200)) {
            let (mut ha, mut hb, mut all) = (LatencyHistogram::new(), LatencyHistogram::new(), LatencyHistogram::new());
            for &v in &a { ha.record_us(v); all.record_us(v); }
            for &v in &b { hb.record_us(v); all.record_us(v); }
            ha.merge(&hb);
            prop_assert_eq!(ha.summary(), all.summary());
        }
    }
}
