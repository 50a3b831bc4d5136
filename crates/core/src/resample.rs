//! Confidence intervals for the change between two runs, by the percentile bootstrap: one run is one sample of a
//! noisy service, so a change counts only when resampling both runs' requests cannot make it vanish.

use serde::{Deserialize, Serialize};

/// A two-sided interval of a relative change (0.1 = +10 %) or of a difference in percentage points.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    pub low: f64,
    pub high: f64,
}

impl Interval {
    pub fn excludes_zero(&self) -> bool {
        self.low > 0.0 || self.high < 0.0
    }
}

/// What is compared between the two sample sets.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Statistic {
    /// This quantile (0–1), interpolated between order statistics as Prometheus and numpy's default do.
    Quantile(f64),
    Mean,
}

/// How many resamples and what coverage: 2,000 resamples put the 2.5 % and 97.5 % points within a few tenths of
/// a percent of where 100,000 would; the seed makes a comparison repeatable.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bootstrap {
    pub resamples: usize,
    pub confidence: f64,
    pub seed: u64,
}

impl Default for Bootstrap {
    fn default() -> Self {
        Bootstrap {
            resamples: 2000,
            confidence: 0.95,
            seed: 0x1f0d_0c70,
        }
    }
}

/// The statistic of `values`, or `None` when there are none. `values` is reordered.
pub fn statistic(values: &mut [f64], stat: Statistic) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    Some(match stat {
        Statistic::Mean => values.iter().sum::<f64>() / values.len() as f64,
        Statistic::Quantile(q) => {
            let rank = q.clamp(0.0, 1.0) * (values.len() - 1) as f64;
            let below = rank.floor() as usize;
            let (_, &mut low, above) = values.select_nth_unstable_by(below, f64::total_cmp);
            let fraction = rank - below as f64;
            if fraction == 0.0 || above.is_empty() {
                low
            } else {
                let high = above.iter().copied().fold(f64::INFINITY, f64::min);
                low + (high - low) * fraction
            }
        }
    })
}

/// SplitMix64: a few lines, fast, and equal on every platform, which a repeatable comparison needs.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next()) * n as u128) >> 64) as usize
    }
}

fn resampled(values: &[f64], rng: &mut SplitMix, into: &mut Vec<f64>) {
    into.clear();
    into.extend((0..values.len()).map(|_| values[rng.below(values.len())]));
}

/// The relative change `candidate / baseline − 1` of `stat` and its bootstrap interval: each resample draws both
/// runs anew, with replacement, and the interval is the middle `confidence` of the resampled changes. `None`
/// when either side is empty or the baseline's statistic is zero.
pub fn relative_change(
    baseline: &[f64],
    candidate: &[f64],
    stat: Statistic,
    bootstrap: &Bootstrap,
) -> Option<(f64, Interval)> {
    relative_changes(baseline, candidate, &[stat], bootstrap)
        .pop()
        .flatten()
}

/// [`relative_change`] of several statistics of the same samples (p50, p95 and p99 of one latency), all from the
/// same resamples: drawing is most of the cost, so one draw serves every statistic.
pub fn relative_changes(
    baseline: &[f64],
    candidate: &[f64],
    stats: &[Statistic],
    bootstrap: &Bootstrap,
) -> Vec<Option<(f64, Interval)>> {
    let change = |a: f64, b: f64| (a != 0.0).then(|| b / a - 1.0);
    let points: Vec<Option<f64>> = stats
        .iter()
        .map(|&stat| {
            change(
                statistic(&mut baseline.to_vec(), stat)?,
                statistic(&mut candidate.to_vec(), stat)?,
            )
        })
        .collect();
    if points.iter().all(Option::is_none) {
        return vec![None; stats.len()];
    }
    let mut rng = SplitMix(bootstrap.seed);
    let (mut a, mut b) = (Vec::new(), Vec::new());
    let mut changes = vec![Vec::with_capacity(bootstrap.resamples); stats.len()];
    for _ in 0..bootstrap.resamples {
        resampled(baseline, &mut rng, &mut a);
        resampled(candidate, &mut rng, &mut b);
        // Each statistic reorders the buffers, which stay the same multisets: the next one reads them as well.
        for (&stat, resampled_changes) in stats.iter().zip(changes.iter_mut()) {
            if let (Some(x), Some(y)) = (statistic(&mut a, stat), statistic(&mut b, stat)) {
                resampled_changes.extend(change(x, y));
            }
        }
    }
    points
        .into_iter()
        .zip(changes.iter_mut())
        .map(|(point, resampled_changes)| {
            Some((
                point?,
                percentile_interval(resampled_changes, bootstrap.confidence)?,
            ))
        })
        .collect()
}

fn percentile_interval(changes: &mut [f64], confidence: f64) -> Option<Interval> {
    let tail = (1.0 - confidence) / 2.0;
    Some(Interval {
        low: statistic(changes, Statistic::Quantile(tail))?,
        high: statistic(changes, Statistic::Quantile(1.0 - tail))?,
    })
}

/// The difference of two proportions (failed / judged) in percentage points, with the normal-approximation
/// interval (Wald, with the pooled count's continuity): fine for the hundreds of requests a run has.
pub fn proportion_difference(
    (failed_a, judged_a): (u64, u64),
    (failed_b, judged_b): (u64, u64),
    confidence: f64,
) -> Option<(f64, Interval)> {
    if judged_a == 0 || judged_b == 0 {
        return None;
    }
    let (pa, pb) = (
        failed_a as f64 / judged_a as f64,
        failed_b as f64 / judged_b as f64,
    );
    let se = (pa * (1.0 - pa) / judged_a as f64 + pb * (1.0 - pb) / judged_b as f64).sqrt();
    let z = normal_quantile(1.0 - (1.0 - confidence) / 2.0);
    // Half a request either way, so two runs without a single failure do not get a zero-width interval.
    let continuity = 0.5 * (1.0 / judged_a as f64 + 1.0 / judged_b as f64);
    let margin = z * se + continuity;
    let d = pb - pa;
    Some((
        d * 100.0,
        Interval {
            low: (d - margin) * 100.0,
            high: (d + margin) * 100.0,
        },
    ))
}

/// The standard normal's quantile (Acklam's rational approximation, |error| < 1.2e-9), for `p` in (0, 1).
pub fn normal_quantile(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    if p < 0.02425 {
        tail((-2.0 * p.ln()).sqrt())
    } else if p > 1.0 - 0.02425 {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    }
}

/// The standard normal's distribution function, from the complementary error function (W. J. Cody's rational
/// Chebyshev fit as in Numerical Recipes' `erfcc`, |error| < 1.2e-7).
pub fn normal_cdf(z: f64) -> f64 {
    let x = z.abs() / std::f64::consts::SQRT_2;
    let t = 1.0 / (1.0 + 0.5 * x);
    let poly = -x * x - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let erfc = t * poly.exp();
    if z >= 0.0 {
        1.0 - erfc / 2.0
    } else {
        erfc / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_between_order_statistics_as_numpy_does() {
        let mut v = vec![4.0, 1.0, 3.0, 2.0];
        // numpy.quantile([1,2,3,4], [0, .5, .95, 1]) = 1, 2.5, 3.85, 4
        assert_eq!(statistic(&mut v, Statistic::Quantile(0.0)), Some(1.0));
        assert_eq!(statistic(&mut v, Statistic::Quantile(0.5)), Some(2.5));
        let p95 = statistic(&mut v, Statistic::Quantile(0.95)).unwrap();
        assert!((p95 - 3.85).abs() < 1e-12, "{p95}");
        assert_eq!(statistic(&mut v, Statistic::Quantile(1.0)), Some(4.0));
        assert_eq!(statistic(&mut [], Statistic::Mean), None);
    }

    #[test]
    fn normal_quantile_matches_the_table() {
        assert!((normal_quantile(0.975) - 1.959_963_985).abs() < 1e-8);
        assert!((normal_quantile(0.5)).abs() < 1e-12);
        assert!((normal_quantile(0.001) + 3.090_232_306).abs() < 1e-8);
        assert!((normal_cdf(1.959_963_985) - 0.975).abs() < 1e-6);
        assert!((normal_cdf(-1.0) - 0.158_655_254).abs() < 1e-6);
    }

    /// Deterministic "lognormal-ish" latencies: the same distribution drawn twice with different seeds.
    fn latencies(seed: u64, n: usize, scale: f64) -> Vec<f64> {
        let mut rng = SplitMix(seed);
        (0..n)
            .map(|_| {
                let u = (rng.next() >> 11) as f64 / (1u64 << 53) as f64;
                scale * (1.0 + normal_quantile(u.clamp(1e-9, 1.0 - 1e-9)) * 0.2).exp()
            })
            .collect()
    }

    #[test]
    fn two_draws_of_one_distribution_have_an_interval_around_zero_and_a_shift_does_not() {
        let bootstrap = Bootstrap::default();
        let a = latencies(1, 500, 100.0);
        let same = latencies(2, 500, 100.0);
        let slower = latencies(3, 500, 120.0);
        let (point, ci) = relative_change(&a, &same, Statistic::Quantile(0.5), &bootstrap).unwrap();
        assert!(!ci.excludes_zero(), "{point} {ci:?}");
        let (point, ci) =
            relative_change(&a, &slower, Statistic::Quantile(0.5), &bootstrap).unwrap();
        assert!(
            ci.excludes_zero() && ci.low > 0.1 && ci.high < 0.3,
            "{point} {ci:?}"
        );
        assert!((point - 0.2).abs() < 0.05, "{point}");
    }

    #[test]
    fn several_statistics_from_shared_resamples_match_each_alone() {
        let bootstrap = Bootstrap::default();
        let (a, b) = (latencies(4, 300, 100.0), latencies(5, 300, 110.0));
        let stats = [
            Statistic::Quantile(0.5),
            Statistic::Quantile(0.95),
            Statistic::Mean,
        ];
        let together = relative_changes(&a, &b, &stats, &bootstrap);
        for (stat, shared) in stats.iter().zip(&together) {
            let (point, ci) = shared.unwrap();
            let (alone_point, alone_ci) = relative_change(&a, &b, *stat, &bootstrap).unwrap();
            assert_eq!(point, alone_point);
            // The same draws: a quantile of a reordered buffer is the same value (a mean, to rounding).
            assert!(
                (ci.low - alone_ci.low).abs() < 1e-9 && (ci.high - alone_ci.high).abs() < 1e-9,
                "{stat:?}"
            );
        }
    }

    #[test]
    fn a_proportion_difference_is_in_percentage_points() {
        let (d, ci) = proportion_difference((0, 500), (50, 500), 0.95).unwrap();
        assert!((d - 10.0).abs() < 1e-9);
        assert!(ci.excludes_zero() && ci.low > 6.0, "{ci:?}");
        let (_, ci) = proportion_difference((0, 200), (0, 200), 0.95).unwrap();
        assert!(!ci.excludes_zero(), "{ci:?}");
        assert_eq!(proportion_difference((0, 0), (1, 2), 0.95), None);
    }
}
