//! Window arithmetic over scraped samples that gives exactly what Prometheus 2.42's PromQL gives, so that
//! rates, histogram quantiles and gauge statistics from our own scrapes agree with the user's dashboards.
//!
//! Every function names the PromQL expression it equals. Times are integer milliseconds, as Prometheus stores
//! them: window membership and the durations used by extrapolation are then computed exactly as Prometheus
//! computes them, which `f64` seconds cannot do at Unix-epoch magnitudes (their resolution there is ~0.2 µs).
//!
//! Prometheus 2.42 semantics reproduced here (they changed in later versions):
//! - a range selector `x[w]` evaluated at `t` holds the samples with `t - w <= time <= t` (both ends included;
//!   Prometheus 3 excludes the left end);
//! - `rate`/`increase` clamp the start-edge extrapolation at the counter's zero point *before* comparing it
//!   with the 1.1 × average-interval threshold (later versions compare first, then clamp).

use std::cmp::Ordering;

use infer_doctor_core::signals::QuantileLimit;

/// One sample of a series: when (milliseconds since an epoch of the caller's choosing, Unix for Prometheus)
/// and what value. Series are slices of points sorted by time, one point per timestamp, as scraped.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Point {
    pub t_ms: i64,
    pub v: f64,
}

impl Point {
    pub fn new(t_ms: i64, v: f64) -> Self {
        Self { t_ms, v }
    }

    /// A point from a time in seconds, rounded to the millisecond as Prometheus rounds when it stores a sample
    /// (and as its HTTP API's `[seconds, "value"]` pairs are meant to be read back). `None` if the time is not
    /// finite or does not fit in milliseconds.
    pub fn from_secs(t_secs: f64, v: f64) -> Option<Self> {
        let t_ms = (t_secs * 1000.0).round();
        // `i64::MAX as f64` rounds up to 2^63, which itself does not fit; hence the strict upper bound.
        if t_ms.is_finite() && t_ms >= i64::MIN as f64 && t_ms < i64::MAX as f64 {
            Some(Self::new(t_ms as i64, v))
        } else {
            None
        }
    }
}

/// The range of a PromQL range selector `x[range]` evaluated at `end`: the samples with
/// `end - range <= t <= end` (Prometheus 2.42 includes both ends).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    end_ms: i64,
    range_ms: i64,
}

impl Window {
    /// `None` unless `range_ms > 0` (PromQL rejects empty ranges) and `end_ms - range_ms` fits in an `i64`.
    pub fn new(end_ms: i64, range_ms: i64) -> Option<Self> {
        if range_ms > 0 && end_ms.checked_sub(range_ms).is_some() {
            Some(Self { end_ms, range_ms })
        } else {
            None
        }
    }

    pub fn end_ms(&self) -> i64 {
        self.end_ms
    }

    pub fn range_ms(&self) -> i64 {
        self.range_ms
    }

    pub fn start_ms(&self) -> i64 {
        // Cannot overflow: `new` checked it.
        self.end_ms - self.range_ms
    }

    /// The points of a time-sorted series that fall in the window, both ends included.
    pub fn select<'a>(&self, points: &'a [Point]) -> &'a [Point] {
        let first = points.partition_point(|p| p.t_ms < self.start_ms());
        let past_last = points.partition_point(|p| p.t_ms <= self.end_ms);
        points.get(first..past_last).unwrap_or(&[])
    }

    /// The range in seconds, rounded exactly as Go's `time.Duration.Seconds()` rounds it (whole seconds plus
    /// the nanosecond remainder / 1e9), because `rate` divides by that value.
    fn range_seconds(&self) -> f64 {
        let whole_seconds = self.range_ms / 1000;
        let remainder_ns = (self.range_ms % 1000) * 1_000_000;
        whole_seconds as f64 + remainder_ns as f64 / 1e9
    }
}

/// `increase(x[w])`: how much a counter grew over the window, counter resets included, extrapolated towards the
/// window's edges as Prometheus does. `None` where PromQL returns no sample (fewer than two points in the window,
/// or all of them at one instant, which Prometheus's storage cannot hold).
pub fn increase(points: &[Point], window: Window) -> Option<f64> {
    extrapolated_rate(points, window, Extrapolation::Counter, Per::Window)
}

/// `rate(x[w])`: [`increase`] divided by the window's range in seconds (not by the time the samples span).
pub fn rate(points: &[Point], window: Window) -> Option<f64> {
    extrapolated_rate(points, window, Extrapolation::Counter, Per::Second)
}

/// `delta(x[w])`: how much a gauge changed over the window, extrapolated like [`increase`] but without counter
/// reset handling and without the zero clamp.
pub fn delta(points: &[Point], window: Window) -> Option<f64> {
    extrapolated_rate(points, window, Extrapolation::Gauge, Per::Window)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Extrapolation {
    /// Counter resets are added back and the series is never extrapolated below zero.
    Counter,
    Gauge,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Per {
    Window,
    Second,
}

/// Prometheus's `extrapolatedRate` (promql/functions.go, 2.42) for float samples.
fn extrapolated_rate(
    points: &[Point],
    window: Window,
    kind: Extrapolation,
    per: Per,
) -> Option<f64> {
    let samples = window.select(points);
    let (first, last) = match samples {
        [first, .., last] => (*first, *last),
        _ => return None,
    };

    let mut result = last.v - first.v;
    if kind == Extrapolation::Counter {
        // A drop means the counter restarted from zero: what it had reached before the drop was lost from
        // `last - first` and is added back.
        let mut previous = first.v;
        for sample in &samples[1..] {
            if sample.v < previous {
                result += previous;
            }
            previous = sample.v;
        }
    }

    let mut duration_to_start = seconds_between(window.start_ms(), first.t_ms);
    let duration_to_end = seconds_between(last.t_ms, window.end_ms);
    let sampled_interval = seconds_between(first.t_ms, last.t_ms);
    if sampled_interval == 0.0 {
        return None;
    }
    let average_interval = sampled_interval / (samples.len() - 1) as f64;

    if kind == Extrapolation::Counter && result > 0.0 && first.v >= 0.0 {
        // A counter cannot have been below zero: if the slope reaches zero before the window's start, the series
        // most likely began there, so extrapolate only that far.
        let duration_to_zero = sampled_interval * (first.v / result);
        if duration_to_zero < duration_to_start {
            duration_to_start = duration_to_zero;
        }
    }

    // A sample is expected every average interval (10 % allowance for jitter). Where the gap to an edge is
    // larger, the series probably starts or ends inside the window: extrapolate only half an interval there.
    let threshold = average_interval * 1.1;
    let mut extrapolate_to = sampled_interval;
    extrapolate_to += if duration_to_start < threshold {
        duration_to_start
    } else {
        average_interval / 2.0
    };
    extrapolate_to += if duration_to_end < threshold {
        duration_to_end
    } else {
        average_interval / 2.0
    };

    let mut factor = extrapolate_to / sampled_interval;
    if per == Per::Second {
        factor /= window.range_seconds();
    }
    Some(result * factor)
}

/// `(to - from) / 1000` as Go computes `float64(to-from) / 1000` on int64 milliseconds; widened so that no
/// input can overflow.
fn seconds_between(from_ms: i64, to_ms: i64) -> f64 {
    (i128::from(to_ms) - i128::from(from_ms)) as f64 / 1000.0
}

/// `avg_over_time(x[w])`: the mean of the window's samples, computed incrementally with Kahan–Neumaier
/// compensation as Prometheus 2.42 does (so huge and tiny values mix as they do there). `None` on an empty window.
pub fn avg_over_time(points: &[Point], window: Window) -> Option<f64> {
    let samples = window.select(points);
    if samples.is_empty() {
        return None;
    }
    let (mut mean, mut count, mut compensation) = (0.0_f64, 0.0_f64, 0.0_f64);
    for sample in samples {
        count += 1.0;
        if mean.is_infinite() {
            // Once the mean is infinite, the update below would compute Inf - Inf = NaN; keep the infinity unless
            // the new value is NaN or the opposite infinity.
            if sample.v.is_infinite() && (mean > 0.0) == (sample.v > 0.0) {
                continue;
            }
            if sample.v.is_finite() {
                continue;
            }
        }
        (mean, compensation) =
            kahan_sum_increment(sample.v / count - mean / count, mean, compensation);
    }
    if mean.is_infinite() {
        Some(mean)
    } else {
        Some(mean + compensation)
    }
}

/// Prometheus's `kahanSumInc`: Neumaier's variant, which also compensates when the increment outweighs the sum.
fn kahan_sum_increment(increment: f64, sum: f64, compensation: f64) -> (f64, f64) {
    let new_sum = sum + increment;
    let lost = if sum.abs() >= increment.abs() {
        (sum - new_sum) + increment
    } else {
        (increment - new_sum) + sum
    };
    (new_sum, compensation + lost)
}

/// `max_over_time(x[w])`: the largest sample in the window. A NaN is replaced by any later sample, so the result
/// is NaN only when every sample is. `None` on an empty window.
pub fn max_over_time(points: &[Point], window: Window) -> Option<f64> {
    let samples = window.select(points);
    let mut max = samples.first()?.v;
    for sample in samples {
        if sample.v > max || max.is_nan() {
            max = sample.v;
        }
    }
    Some(max)
}

/// `min_over_time(x[w])`: the smallest sample in the window, with NaN treated as in [`max_over_time`].
pub fn min_over_time(points: &[Point], window: Window) -> Option<f64> {
    let samples = window.select(points);
    let mut min = samples.first()?.v;
    for sample in samples {
        if sample.v < min || min.is_nan() {
            min = sample.v;
        }
    }
    Some(min)
}

/// `quantile_over_time(q, x[w])`: the q-quantile of the window's samples, interpolated linearly between the two
/// nearest ranks (rank `q × (n − 1)`); NaN samples sort below every number. `q < 0` gives −Inf and `q > 1` +Inf.
/// `q = NaN` gives NaN. `None` on an empty window.
pub fn quantile_over_time(q: f64, points: &[Point], window: Window) -> Option<f64> {
    let samples = window.select(points);
    if samples.is_empty() {
        return None;
    }
    if q.is_nan() {
        return Some(f64::NAN);
    }
    if q < 0.0 {
        return Some(f64::NEG_INFINITY);
    }
    if q > 1.0 {
        return Some(f64::INFINITY);
    }
    let mut values: Vec<f64> = samples.iter().map(|p| p.v).collect();
    values.sort_by(nan_first);

    let last_index = (values.len() - 1) as f64;
    let rank = q * last_index;
    let lower_index = rank.floor().max(0.0);
    let upper_index = last_index.min(lower_index + 1.0);
    let weight = rank - rank.floor();
    // Both indices lie in 0..len since 0 <= q <= 1; `get` keeps that a fact rather than an assumption.
    let lower = values
        .get(lower_index as usize)
        .copied()
        .unwrap_or(f64::NAN);
    let upper = values
        .get(upper_index as usize)
        .copied()
        .unwrap_or(f64::NAN);
    Some(lower * (1.0 - weight) + upper * weight)
}

/// Prometheus's sample order for quantiles: NaN below everything, then numeric order.
fn nan_first(a: &f64, b: &f64) -> Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
        (false, false) => a.partial_cmp(b).unwrap_or(Ordering::Equal),
    }
}

/// One bucket of a classic Prometheus histogram: how many observations were `<= upper_bound` (the `le` label),
/// or, after `rate`, how many per second.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Bucket {
    pub upper_bound: f64,
    pub count: f64,
}

/// `histogram_quantile(q, b)` for the buckets `b` of one histogram, exactly as Prometheus 2.42's
/// `bucketQuantile`: buckets are sorted by upper bound (this reorders and overwrites the slice), buckets with
/// equal bounds are merged by adding their counts, decreasing cumulative counts are raised to the running maximum,
/// and the quantile is interpolated linearly inside the bucket holding rank `q × total`; the lowest bucket spans
/// from 0 when its upper bound is positive, else its upper bound is returned; a rank in the +Inf bucket returns
/// the second-highest upper bound.
///
/// Special cases, as in PromQL: `q < 0` → −Inf; `q > 1` → +Inf; NaN when there is no +Inf bucket, fewer than
/// two distinct bounds, no observations, or `q = NaN`. A NaN upper bound sorts above +Inf here, so the result is
/// NaN; Prometheus's order for it depends on its sort's internals (it gave NaN too where we tried).
pub fn bucket_quantile(q: f64, buckets: &mut [Bucket]) -> f64 {
    locate_quantile(q, buckets).value
}

/// A quantile as PromQL computes it, and, where it landed in the first or the +Inf bucket, the bound that is
/// all the buckets really know about it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LocatedQuantile {
    pub value: f64,
    pub limit: Option<QuantileLimit>,
}

/// [`bucket_quantile`], telling also whether the buckets only bound the result.
pub fn locate_quantile(q: f64, buckets: &mut [Bucket]) -> LocatedQuantile {
    let exact = |value| LocatedQuantile { value, limit: None };
    if q.is_nan() {
        return exact(f64::NAN);
    }
    if q < 0.0 {
        return exact(f64::NEG_INFINITY);
    }
    if q > 1.0 {
        return exact(f64::INFINITY);
    }
    buckets.sort_by(|a, b| a.upper_bound.total_cmp(&b.upper_bound));
    match buckets.last() {
        Some(highest) if highest.upper_bound == f64::INFINITY => {}
        _ => return exact(f64::NAN),
    }
    let buckets = coalesce_equal_bounds(buckets);
    ensure_monotonic(buckets);

    let [.., second_highest, highest] = buckets else {
        return exact(f64::NAN);
    };
    let (second_highest_bound, observations) = (second_highest.upper_bound, highest.count);
    if observations == 0.0 {
        return exact(f64::NAN);
    }
    let mut rank = q * observations;
    let below_inf = buckets.len() - 1;
    let index = go_sort_search(below_inf, |i| buckets[i].count >= rank);
    if index == below_inf {
        return LocatedQuantile {
            value: second_highest_bound,
            limit: Some(QuantileLimit::AtLeast(second_highest_bound)),
        };
    }
    let bucket = buckets[index];
    if index == 0 && bucket.upper_bound <= 0.0 {
        return exact(bucket.upper_bound);
    }
    let (mut bucket_start, mut count) = (0.0, bucket.count);
    if index > 0 {
        let previous = buckets[index - 1];
        bucket_start = previous.upper_bound;
        count -= previous.count;
        rank -= previous.count;
    }
    LocatedQuantile {
        value: bucket_start + (bucket.upper_bound - bucket_start) * (rank / count),
        limit: (index == 0).then_some(QuantileLimit::AtMost(bucket.upper_bound)),
    }
}

/// Merges adjacent buckets with equal upper bounds (the slice is sorted) and returns the merged prefix.
fn coalesce_equal_bounds(buckets: &mut [Bucket]) -> &mut [Bucket] {
    let mut kept = 0;
    for i in 1..buckets.len() {
        if buckets[i].upper_bound == buckets[kept].upper_bound {
            buckets[kept].count += buckets[i].count;
        } else {
            kept += 1;
            buckets[kept] = buckets[i];
        }
    }
    let merged_len = if buckets.is_empty() { 0 } else { kept + 1 };
    &mut buckets[..merged_len]
}

/// Cumulative counts must not decrease with the bound; they do when buckets were scraped or rated out of step.
/// Prometheus takes the running maximum, and so do we.
fn ensure_monotonic(buckets: &mut [Bucket]) {
    let Some(first) = buckets.first() else {
        return;
    };
    let mut max = first.count;
    for bucket in &mut buckets[1..] {
        if bucket.count > max {
            max = bucket.count;
        } else if bucket.count < max {
            bucket.count = max;
        }
    }
}

/// Go's `sort.Search(n, f)`: the smallest `i` in `0..n` with `f(i)`, or `n`. The same bisection as Go's, so
/// that a predicate made non-monotonic by NaN counts lands on the same index.
fn go_sort_search(n: usize, f: impl Fn(usize) -> bool) -> usize {
    let (mut low, mut high) = (0, n);
    while low < high {
        let middle = low + (high - low) / 2;
        if f(middle) {
            high = middle;
        } else {
            low = middle + 1;
        }
    }
    low
}

/// The samples of one `_bucket` series of a histogram (all series with the same labels but `le`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BucketSeries<'a> {
    /// The `le` label's value.
    pub upper_bound: f64,
    pub points: &'a [Point],
}

/// `histogram_quantile(q, rate(x_bucket[w]))` for one histogram: the per-second rate of each bucket over the
/// window, then [`bucket_quantile`]. A bucket whose rate is undefined (fewer than two samples in the window) is
/// left out, as PromQL leaves it out; `None` when that leaves no bucket (PromQL returns no sample). The result can
/// be NaN (no observations in the window, no +Inf bucket) just as in PromQL.
pub fn histogram_quantile_over_window(
    q: f64,
    buckets: &[BucketSeries<'_>],
    window: Window,
) -> Option<f64> {
    Some(bucket_quantile(q, &mut rated_buckets(buckets, window)?))
}

/// `rate(x_bucket[w])` for each bucket of one histogram, leaving out those whose rate is undefined; `None` when
/// that leaves none.
pub fn rated_buckets(buckets: &[BucketSeries<'_>], window: Window) -> Option<Vec<Bucket>> {
    let rated: Vec<Bucket> = buckets
        .iter()
        .filter_map(|series| {
            let count = rate(series.points, window)?;
            Some(Bucket {
                upper_bound: series.upper_bound,
                count,
            })
        })
        .collect();
    (!rated.is_empty()).then_some(rated)
}

/// `rate(x_sum[w]) / rate(x_count[w])`: the mean observation of a histogram (or summary) over the window. NaN when
/// nothing was observed (0/0), as in PromQL; `None` when either rate is undefined.
pub fn histogram_mean_over_window(sum: &[Point], count: &[Point], window: Window) -> Option<f64> {
    Some(rate(sum, window)? / rate(count, window)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(samples: &[(i64, f64)]) -> Vec<Point> {
        samples
            .iter()
            .map(|&(t_ms, v)| Point::new(t_ms, v))
            .collect()
    }

    fn window(end_ms: i64, range_ms: i64) -> Window {
        Window::new(end_ms, range_ms).expect("a valid window")
    }

    fn assert_close(actual: f64, expected: f64) {
        let tolerance = 1e-12 * expected.abs().max(1.0);
        assert!(
            (actual - expected).abs() <= tolerance,
            "got {actual}, expected {expected}"
        );
    }

    fn buckets(pairs: &[(f64, f64)]) -> Vec<Bucket> {
        pairs
            .iter()
            .map(|&(upper_bound, count)| Bucket { upper_bound, count })
            .collect()
    }

    #[test]
    fn window_includes_both_ends_as_prometheus_2_42_does() {
        let points = series(&[(0, 1.0), (1000, 2.0), (2000, 3.0), (3000, 4.0)]);
        let selected = window(3000, 2000).select(&points);
        assert_eq!(selected, &points[1..4]);
        assert!(window(-1, 1000).select(&points).is_empty());
        assert!(Window::new(10, 0).is_none());
        assert!(Window::new(i64::MIN, 1).is_none());
    }

    #[test]
    fn increase_extrapolates_to_both_edges_when_samples_are_close_to_them() {
        // Samples every 10 s from 5 s to 55 s in a 60 s window: 5 s to each edge (< 1.1 × 10 s), so the 50 s of
        // samples are stretched to the full 60 s. The counter starts at 100, far from its zero point.
        let points = series(&[
            (5_000, 100.0),
            (15_000, 110.0),
            (25_000, 120.0),
            (35_000, 130.0),
            (45_000, 140.0),
            (55_000, 150.0),
        ]);
        let w = window(60_000, 60_000);
        assert_close(increase(&points, w).unwrap(), 50.0 * 60.0 / 50.0);
        assert_close(rate(&points, w).unwrap(), 60.0 / 60.0);
    }

    #[test]
    fn increase_extrapolates_half_an_interval_where_the_gap_to_an_edge_is_large() {
        // Samples every 10 s from 30 s to 50 s, window 0–80 s: 30 s gaps at both ends exceed 11 s, so only 5 s
        // are added at each end: 20 s sampled → 30 s.
        let points = series(&[(30_000, 100.0), (40_000, 110.0), (50_000, 120.0)]);
        assert_close(
            increase(&points, window(80_000, 80_000)).unwrap(),
            20.0 * 30.0 / 20.0,
        );
        assert_close(rate(&points, window(80_000, 80_000)).unwrap(), 30.0 / 80.0);
    }

    #[test]
    fn increase_never_extrapolates_a_counter_below_zero() {
        // 2 → 12 over 10 s: zero is reached 2 s before the first sample, sooner than the window's start 5 s before.
        let points = series(&[(5_000, 2.0), (10_000, 7.0), (15_000, 12.0)]);
        assert_close(
            increase(&points, window(15_000, 15_000)).unwrap(),
            10.0 * 12.0 / 10.0,
        );
        // delta() of the same samples is a gauge's change: no zero clamp, the full 5 s are added.
        assert_close(
            delta(&points, window(15_000, 15_000)).unwrap(),
            10.0 * 15.0 / 10.0,
        );
    }

    #[test]
    fn zero_point_clamp_comes_before_the_threshold_test_as_in_2_42() {
        // Samples every 1 s from 20 s to 22 s, window 0–22 s: 20 s to the start, far beyond 1.1 s. The counter
        // went 1 → 3, so its zero point is 1 s before the first sample. 2.42 clamps first (20 s → 1 s), then finds
        // 1 s < 1.1 s and extrapolates the full 1 s: 2 × 3/2 = 3. (Later versions give 2 × 2.5/2 = 2.5.)
        let points = series(&[(20_000, 1.0), (21_000, 2.0), (22_000, 3.0)]);
        assert_close(increase(&points, window(22_000, 22_000)).unwrap(), 3.0);
    }

    #[test]
    fn increase_adds_back_what_was_lost_at_each_counter_reset() {
        // 10 → 20, reset to 5, → 8, reset to 1: increase is 10 + 5 + 3 + 1 = 19 over 4 s sampled, window 4 s.
        let points = series(&[
            (0, 10.0),
            (1000, 20.0),
            (2000, 5.0),
            (3000, 8.0),
            (4000, 1.0),
        ]);
        let w = window(4000, 4000);
        assert_close(increase(&points, w).unwrap(), 19.0);
        assert_close(rate(&points, w).unwrap(), 19.0 / 4.0);
        // A gauge has no resets: 1 − 10.
        assert_close(delta(&points, w).unwrap(), -9.0);
    }

    #[test]
    fn sparse_and_degenerate_windows_have_no_rate() {
        let points = series(&[(0, 1.0), (10_000, 2.0)]);
        assert_eq!(increase(&points, window(5_000, 5_000)), None, "one sample");
        assert_eq!(rate(&[], window(5_000, 5_000)), None, "no sample");
        let same_instant = series(&[(1000, 1.0), (1000, 2.0)]);
        assert_eq!(increase(&same_instant, window(1000, 1000)), None);
    }

    #[test]
    fn rate_divides_by_the_range_not_by_the_sampled_span() {
        // 1.5 s range: Go's Duration.Seconds() gives exactly 1.5.
        let points = series(&[(500, 0.0), (1500, 3.0)]);
        let w = window(1500, 1500);
        // 0 s to the start would be 0.5 s (< 1.1 s) but the zero point is at the first sample: 3 × 1/1.
        assert_close(increase(&points, w).unwrap(), 3.0);
        assert_close(rate(&points, w).unwrap(), 2.0);
    }

    #[test]
    fn from_secs_rounds_to_the_millisecond() {
        assert_eq!(
            Point::from_secs(1_700_000_000.123, 1.0),
            Some(Point::new(1_700_000_000_123, 1.0))
        );
        assert_eq!(Point::from_secs(f64::NAN, 1.0), None);
        assert_eq!(Point::from_secs(1e300, 1.0), None);
    }

    #[test]
    fn gauge_statistics_over_a_window() {
        let points = series(&[
            (0, 4.0),
            (1000, 1.0),
            (2000, 3.0),
            (3000, 2.0),
            (4000, 10.0),
        ]);
        let w = window(3000, 3000);
        assert_close(avg_over_time(&points, w).unwrap(), 2.5);
        assert_eq!(max_over_time(&points, w), Some(4.0));
        assert_eq!(min_over_time(&points, w), Some(1.0));
        // Sorted 1 2 3 4: rank 0.95 × 3 = 2.85 → 3 × 0.15 + 4 × 0.85.
        assert_close(quantile_over_time(0.95, &points, w).unwrap(), 3.85);
        assert_close(quantile_over_time(0.5, &points, w).unwrap(), 2.5);
        assert_eq!(
            quantile_over_time(-0.1, &points, w),
            Some(f64::NEG_INFINITY)
        );
        assert_eq!(quantile_over_time(1.1, &points, w), Some(f64::INFINITY));
        assert!(quantile_over_time(f64::NAN, &points, w).unwrap().is_nan());
        let empty = window(-10, 5);
        assert_eq!(avg_over_time(&points, empty), None);
        assert_eq!(max_over_time(&points, empty), None);
        assert_eq!(min_over_time(&points, empty), None);
        assert_eq!(quantile_over_time(0.5, &points, empty), None);
    }

    #[test]
    fn gauge_statistics_with_nan_and_infinities() {
        let w = window(3000, 3000);
        let nan_first = series(&[(0, f64::NAN), (1000, 2.0), (2000, 1.0)]);
        assert_eq!(max_over_time(&nan_first, w), Some(2.0));
        assert_eq!(min_over_time(&nan_first, w), Some(1.0));
        assert!(avg_over_time(&nan_first, w).unwrap().is_nan());
        // NaN sorts first: [NaN, 1, 2]; the median is 1, the minimum NaN.
        assert_eq!(quantile_over_time(0.5, &nan_first, w), Some(1.0));
        assert!(quantile_over_time(0.0, &nan_first, w).unwrap().is_nan());

        let all_nan = series(&[(0, f64::NAN), (1000, f64::NAN)]);
        assert!(max_over_time(&all_nan, w).unwrap().is_nan());

        let infinite = series(&[(0, 1.0), (1000, f64::INFINITY), (2000, 5.0)]);
        assert_eq!(avg_over_time(&infinite, w), Some(f64::INFINITY));
        assert_eq!(max_over_time(&infinite, w), Some(f64::INFINITY));
        let opposite = series(&[(0, f64::INFINITY), (1000, f64::NEG_INFINITY)]);
        assert!(avg_over_time(&opposite, w).unwrap().is_nan());
        // One sample: v × 1 + v × 0, so an infinite sample gives NaN, as in Prometheus.
        let lone_infinity = series(&[(0, f64::INFINITY)]);
        assert!(quantile_over_time(0.5, &lone_infinity, w).unwrap().is_nan());
    }

    #[test]
    fn kahan_increment_keeps_what_plain_addition_rounds_away() {
        // 1e16 + 1 rounds back to 1e16 (the spacing of doubles there is 2); the lost 1 is kept as compensation
        // and survives the cancellation that follows.
        let (sum, compensation) = kahan_sum_increment(1e16, 0.0, 0.0);
        let (sum, compensation) = kahan_sum_increment(1.0, sum, compensation);
        assert_eq!((sum, compensation), (1e16, 1.0));
        let (sum, compensation) = kahan_sum_increment(-1e16, sum, compensation);
        assert_eq!(sum + compensation, 1.0);
    }

    #[test]
    fn avg_over_time_matches_prometheus_where_magnitudes_cancel() {
        // Prometheus 2.42 answers 0 for avg_over_time over these four samples (checked against it with a
        // subquery); the exact mean is 0.5, which the incremental update loses before compensation can keep it.
        let points = series(&[(0, 1e16), (1, 1.0), (2, 1.0), (3, -1e16)]);
        assert_eq!(avg_over_time(&points, window(3, 3)), Some(0.0));
    }

    #[test]
    fn bucket_quantile_interpolates_inside_the_bucket() {
        // 100 observations: 10 ≤ 0.1, 50 ≤ 0.5, 90 ≤ 1. Median rank 50 is the top of (0.1, 0.5].
        let mut b = buckets(&[
            (1.0, 90.0),
            (0.1, 10.0),
            (f64::INFINITY, 100.0),
            (0.5, 50.0),
        ]);
        assert_close(bucket_quantile(0.5, &mut b), 0.5);
        // Rank 30 is halfway through (0.1, 0.5]: 0.1 + 0.4 × 20/40.
        assert_close(bucket_quantile(0.3, &mut b), 0.3);
        // Lowest bucket starts at 0: rank 5 → 0.1 × 5/10.
        assert_close(bucket_quantile(0.05, &mut b), 0.05);
        // Rank 95 falls in the +Inf bucket: the second-highest bound.
        assert_eq!(bucket_quantile(0.95, &mut b), 1.0);
        assert_eq!(bucket_quantile(-0.5, &mut b), f64::NEG_INFINITY);
        assert_eq!(bucket_quantile(1.5, &mut b), f64::INFINITY);
        assert!(bucket_quantile(f64::NAN, &mut b).is_nan());
    }

    #[test]
    fn quantiles_in_the_edge_buckets_are_located_as_bounds() {
        // vLLM's queue-time shape: everything in the first bucket (0, 0.3], PromQL still says 0.15 for p50.
        let mut first = buckets(&[(0.3, 20.0), (0.5, 20.0), (f64::INFINITY, 20.0)]);
        let p50 = locate_quantile(0.5, &mut first);
        assert_close(p50.value, 0.15);
        assert_eq!(p50.limit, Some(QuantileLimit::AtMost(0.3)));
        // 10 ≤ 0.1, 50 ≤ 0.5, 90 ≤ 1, 100 in all: p95 is in +Inf, only known to be ≥ 1.
        let mut b = buckets(&[
            (0.1, 10.0),
            (0.5, 50.0),
            (1.0, 90.0),
            (f64::INFINITY, 100.0),
        ]);
        let p95 = locate_quantile(0.95, &mut b);
        assert_eq!(
            (p95.value, p95.limit),
            (1.0, Some(QuantileLimit::AtLeast(1.0)))
        );
        // Rank 90 is the top of (0.5, 1]: that is 1.0 too, but inside a finite bucket, so an estimate.
        assert_eq!(locate_quantile(0.9, &mut b).limit, None);
        assert_eq!(locate_quantile(0.3, &mut b).limit, None);
        // A first bucket at or below zero returns its own bound, which is exact.
        let mut at_zero = buckets(&[(0.0, 5.0), (1.0, 10.0), (f64::INFINITY, 10.0)]);
        assert_eq!(locate_quantile(0.2, &mut at_zero).limit, None);
    }

    #[test]
    fn bucket_quantile_special_cases_give_nan() {
        assert!(bucket_quantile(0.5, &mut []).is_nan(), "no bucket");
        assert!(
            bucket_quantile(0.5, &mut buckets(&[(1.0, 3.0), (2.0, 5.0)])).is_nan(),
            "no +Inf"
        );
        assert!(
            bucket_quantile(0.5, &mut buckets(&[(f64::INFINITY, 5.0)])).is_nan(),
            "one bucket"
        );
        assert!(
            bucket_quantile(0.5, &mut buckets(&[(1.0, 0.0), (f64::INFINITY, 0.0)])).is_nan(),
            "no observations"
        );
        assert!(
            bucket_quantile(f64::NAN, &mut buckets(&[(1.0, 0.0), (f64::INFINITY, 0.0)])).is_nan()
        );
        assert!(
            bucket_quantile(0.5, &mut buckets(&[(f64::NAN, 1.0), (f64::INFINITY, 1.0)])).is_nan(),
            "NaN bound"
        );
        // q = 0 with an empty lowest bucket: 0 × (0/0) = NaN, as in Prometheus.
        assert!(
            bucket_quantile(
                0.0,
                &mut buckets(&[(1.0, 0.0), (2.0, 4.0), (f64::INFINITY, 4.0)])
            )
            .is_nan()
        );
    }

    #[test]
    fn bucket_quantile_lowest_bucket_at_or_below_zero_returns_its_bound() {
        let mut b = buckets(&[(-1.0, 40.0), (1.0, 80.0), (f64::INFINITY, 100.0)]);
        assert_eq!(bucket_quantile(0.2, &mut b), -1.0);
        // Rank 60 in (−1, 1]: −1 + 2 × 20/40.
        assert_close(bucket_quantile(0.6, &mut b), 0.0);
    }

    #[test]
    fn bucket_quantile_merges_equal_bounds_and_repairs_monotonicity() {
        // Two series both le=1 (e.g. "1" and "1.0"): their counts add up to 60.
        let mut merged = buckets(&[
            (1.0, 20.0),
            (2.0, 80.0),
            (1.0, 40.0),
            (f64::INFINITY, 100.0),
        ]);
        // Rank 30 in (0, 1]: 30/60.
        assert_close(bucket_quantile(0.3, &mut merged), 0.5);
        // le=2 counted fewer than le=1: it is raised to 60, so rank 55 lands in (0, 1] and rank 70 in (2, +Inf).
        let mut broken = buckets(&[
            (1.0, 60.0),
            (2.0, 50.0),
            (3.0, 80.0),
            (f64::INFINITY, 100.0),
        ]);
        assert_close(bucket_quantile(0.55, &mut broken), 55.0 / 60.0);
        // Rank 70 in (2, 3] with the repaired le=2 count of 60: 2 + 10/20.
        assert_close(bucket_quantile(0.7, &mut broken), 2.5);
    }

    #[test]
    fn histogram_quantile_and_mean_over_a_window_use_per_bucket_rates() {
        // Over 10 s: le=0.1 gains 20, le=0.5 gains 60, +Inf gains 80 → median rank 40 sits halfway in (0.1, 0.5].
        let le_01 = series(&[(0, 100.0), (10_000, 120.0)]);
        let le_05 = series(&[(0, 200.0), (10_000, 260.0)]);
        let le_inf = series(&[(0, 300.0), (10_000, 380.0)]);
        let sum = series(&[(0, 50.0), (10_000, 66.0)]);
        let w = window(10_000, 10_000);
        let histogram = [
            BucketSeries {
                upper_bound: 0.1,
                points: &le_01,
            },
            BucketSeries {
                upper_bound: 0.5,
                points: &le_05,
            },
            BucketSeries {
                upper_bound: f64::INFINITY,
                points: &le_inf,
            },
        ];
        assert_close(
            histogram_quantile_over_window(0.5, &histogram, w).unwrap(),
            0.3,
        );
        assert_close(
            histogram_mean_over_window(&sum, &le_inf, w).unwrap(),
            16.0 / 80.0,
        );

        let too_short = window(10_000, 5_000);
        assert_eq!(
            histogram_quantile_over_window(0.5, &histogram, too_short),
            None
        );
        assert_eq!(histogram_mean_over_window(&sum, &le_inf, too_short), None);

        let idle = series(&[(0, 7.0), (10_000, 7.0)]);
        let idle_histogram = [
            BucketSeries {
                upper_bound: 1.0,
                points: &idle,
            },
            BucketSeries {
                upper_bound: f64::INFINITY,
                points: &idle,
            },
        ];
        assert!(
            histogram_quantile_over_window(0.5, &idle_histogram, w)
                .unwrap()
                .is_nan()
        );
        assert!(
            histogram_mean_over_window(&idle, &idle, w)
                .unwrap()
                .is_nan()
        );
    }

    #[test]
    fn go_sort_search_finds_the_first_true() {
        assert_eq!(go_sort_search(5, |i| i >= 3), 3);
        assert_eq!(go_sort_search(5, |_| false), 5);
        assert_eq!(go_sort_search(0, |_| true), 0);
    }
}
