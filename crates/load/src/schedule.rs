//! Open-loop arrival times, computed once before the run from a seed: constant, Poisson or gamma inter-arrival
//! gaps, so the send loop only sleeps until absolute deadlines and never drifts.

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, Gamma};
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Arrival {
    /// Evenly spaced, 1/rate apart.
    Constant,
    /// Exponential gaps (gamma with shape 1).
    Poisson,
    /// Gamma gaps with shape = burstiness (< 1 burstier than Poisson, > 1 smoother), mean 1/rate.
    Gamma { burstiness: f64 },
}

impl Arrival {
    fn gamma_shape(self) -> Option<f64> {
        match self {
            Arrival::Constant => None,
            Arrival::Poisson => Some(1.0),
            Arrival::Gamma { burstiness } => Some(burstiness),
        }
    }
}

/// Intended send offsets in seconds from the start of the run, one per request.
///
/// `count`: exactly that many arrivals, rescaled so the last one falls at `count / rate` and the achieved mean
/// rate equals the requested one (as `vllm bench serve` does). `until_s`: every arrival before that offset.
pub fn offsets(
    rate: f64,
    arrival: Arrival,
    seed: u64,
    count: Option<u64>,
    until_s: Option<f64>,
) -> Vec<f64> {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed_a771_0a15);
    let shape = arrival.gamma_shape().filter(|s| s.is_finite() && *s > 0.0);
    let gamma = shape.and_then(|k| Gamma::new(k, 1.0 / (rate * k)).ok());
    let mut next_gap = || gamma.as_ref().map_or(1.0 / rate, |g| g.sample(&mut rng));
    let mut out = Vec::new();
    // The first request goes at once; later ones follow the drawn gaps.
    let mut at = 0.0;
    loop {
        if count.is_some_and(|n| out.len() as u64 >= n) || until_s.is_some_and(|u| at >= u) {
            break;
        }
        out.push(at);
        at += next_gap();
    }
    if let (Some(n), Some(&last)) = (count, out.last())
        && n > 1
        && last > 0.0
    {
        let scale = (n - 1) as f64 / rate / last;
        out.iter_mut().for_each(|o| *o *= scale);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_is_evenly_spaced() {
        let o = offsets(4.0, Arrival::Constant, 1, Some(5), None);
        assert_eq!(o, vec![0.0, 0.25, 0.5, 0.75, 1.0]);
    }

    #[test]
    fn count_mode_hits_the_requested_mean_rate_exactly() {
        for arrival in [Arrival::Poisson, Arrival::Gamma { burstiness: 0.3 }] {
            let o = offsets(50.0, arrival, 7, Some(1001), None);
            assert!((o[1000] - 20.0).abs() < 1e-9, "{}", o[1000]);
            assert!(o.windows(2).all(|w| w[1] >= w[0]));
        }
    }

    #[test]
    fn burstiness_changes_the_spread_not_the_mean() {
        let cv = |b: f64| {
            let o = offsets(
                100.0,
                Arrival::Gamma { burstiness: b },
                3,
                None,
                Some(200.0),
            );
            let gaps: Vec<f64> = o.windows(2).map(|w| w[1] - w[0]).collect();
            let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
            let var = gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / gaps.len() as f64;
            assert!((mean - 0.01).abs() < 0.0005, "mean gap {mean}");
            var.sqrt() / mean
        };
        let (bursty, poisson, smooth) = (cv(0.25), cv(1.0), cv(4.0));
        assert!(
            (poisson - 1.0).abs() < 0.05,
            "Poisson gaps have CV 1, got {poisson}"
        );
        assert!(bursty > 1.8 && smooth < 0.6, "cv {bursty} {smooth}");
    }

    #[test]
    fn same_seed_same_schedule() {
        let a = offsets(10.0, Arrival::Poisson, 42, Some(100), None);
        assert_eq!(a, offsets(10.0, Arrival::Poisson, 42, Some(100), None));
        assert_ne!(a, offsets(10.0, Arrival::Poisson, 43, Some(100), None));
    }
}
