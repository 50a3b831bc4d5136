//! What the server said about itself over a window of scrapes, in canonical terms: gauge means and peaks,
//! counter increases and rates, histogram quantiles from bucket increases — each as PromQL would compute it.

use std::collections::BTreeMap;

use infer_doctor_core::signals::{CounterStats, GaugeStats, HistogramStats, ServerWindow};
use infer_doctor_core::{Buckets, Reading, ServerReadings, Signal, SignalKind};

use crate::window::{
    Bucket, BucketSeries, Point, Window, avg_over_time, histogram_mean_over_window, increase,
    locate_quantile, max_over_time, min_over_time, rated_buckets,
};

/// Summarises time-ordered scrapes `(t seconds, readings)` over the window from the first to the last; `None`
/// with fewer than two (no window to speak of).
pub fn summarize(scrapes: &[(f64, ServerReadings)]) -> Option<ServerWindow> {
    let (first, last) = (scrapes.first()?, scrapes.last()?);
    let ms = |t: f64| (t * 1e3).round() as i64;
    let window = Window::new(ms(last.0), ms(last.0) - ms(first.0))?;
    let mut out = ServerWindow {
        dialect: last.1.dialect.clone(),
        models: last.1.models.clone(),
        engines: last.1.engines,
        start: first.0,
        end: last.0,
        scrapes: scrapes.len(),
        cache_config: scrapes
            .iter()
            .rev()
            .map(|(_, r)| &r.cache_config)
            .find(|labels| !labels.is_empty())
            .cloned()
            .unwrap_or_default(),
        ..Default::default()
    };
    for signal in Signal::ALL {
        let present: Vec<(i64, &Reading)> = scrapes
            .iter()
            .filter_map(|(t, r)| Some((ms(*t), r.get(signal)?)))
            .collect();
        if present.is_empty() {
            continue;
        }
        match signal.kind() {
            SignalKind::Gauge => {
                let series = points(&present, |r| r.value());
                if let Some(stats) = gauge_stats(&series, window) {
                    out.gauges.insert(signal, stats);
                }
            }
            SignalKind::Counter => {
                if let Some(stats) = counter_stats(&present, window) {
                    out.counters.insert(signal, stats);
                }
            }
            SignalKind::Histogram => {
                if let Some(stats) = histogram_stats(&present, window) {
                    out.histograms.insert(signal, stats);
                }
            }
        }
    }
    Some(out)
}

/// The scrapes of the last stretch of time, for a diagnosis that moves with the clock (`watch`): older scrapes
/// drop out as new ones arrive, but the newest one older than the span stays as the baseline, so counters and
/// histograms cover the whole span.
pub struct RecentScrapes {
    span_seconds: f64,
    scrapes: Vec<(f64, ServerReadings)>,
}

impl RecentScrapes {
    pub fn new(span_seconds: f64) -> RecentScrapes {
        RecentScrapes {
            span_seconds,
            scrapes: Vec::new(),
        }
    }

    /// Adds a scrape taken at `t` seconds (later than every one before it).
    pub fn push(&mut self, t: f64, readings: ServerReadings) {
        self.scrapes.push((t, readings));
        let oldest_needed = t - self.span_seconds;
        let baseline = self
            .scrapes
            .iter()
            .rposition(|(at, _)| *at <= oldest_needed)
            .unwrap_or(0);
        self.scrapes.drain(..baseline);
    }

    /// The span a window covers once the scrapes have run that long.
    pub fn span_seconds(&self) -> f64 {
        self.span_seconds
    }

    /// The scrapes kept, oldest first.
    pub fn scrapes(&self) -> &[(f64, ServerReadings)] {
        &self.scrapes
    }

    /// The interval between the last two scrapes, summarised: what the server did just now.
    pub fn latest_interval(&self) -> Option<ServerWindow> {
        summarize(&self.scrapes[self.scrapes.len().saturating_sub(2)..])
    }
}

/// Summarises scrapes whose times are unknown, in the order they were taken. A gauge's peak and mean over the
/// scrapes, a counter's increase and a histogram's quantiles need no clock, so they hold; every rate is unknown.
pub fn summarize_unclocked(scrapes: &[ServerReadings]) -> Option<ServerWindow> {
    let ordinal: Vec<(f64, ServerReadings)> = scrapes
        .iter()
        .enumerate()
        .map(|(i, readings)| (i as f64, readings.clone()))
        .collect();
    let mut window = summarize(&ordinal)?;
    window.start = 0.0;
    window.end = 0.0;
    window.no_clock = true;
    for counter in window.counters.values_mut() {
        counter.rate = f64::NAN;
    }
    Some(window)
}

/// One number per scrape where the reading has it.
fn points(present: &[(i64, &Reading)], pick: impl Fn(&Reading) -> Option<f64>) -> Vec<Point> {
    present
        .iter()
        .filter_map(|(t, r)| Some(Point::new(*t, pick(r)?)))
        .collect()
}

fn gauge_stats(series: &[Point], window: Window) -> Option<GaugeStats> {
    Some(GaugeStats {
        mean: avg_over_time(series, window)?,
        min: min_over_time(series, window)?,
        max: max_over_time(series, window)?,
        last: series.last()?.v,
    })
}

fn counter_stats(present: &[(i64, &Reading)], window: Window) -> Option<CounterStats> {
    let total = increase(&points(present, Reading::value), window)?;
    let mut by_label = BTreeMap::new();
    for (_, reading) in present {
        let Reading::ByLabel(by) = reading else {
            continue;
        };
        for label in by.keys() {
            if by_label.contains_key(label) {
                continue;
            }
            let series = points(present, |r| match r {
                Reading::ByLabel(by) => by.get(label).copied(),
                _ => None,
            });
            if let Some(grew) = increase(&series, window) {
                by_label.insert(label.clone(), grew);
            }
        }
    }
    Some(CounterStats {
        increase: total,
        rate: total / (window.range_ms() as f64 / 1e3),
        by_label,
    })
}

fn histogram_stats(present: &[(i64, &Reading)], window: Window) -> Option<HistogramStats> {
    let buckets = |r: &Reading| match r {
        Reading::Histogram(b) => Some(b.clone()),
        _ => None,
    };
    let newest: Buckets = present.iter().rev().find_map(|(_, r)| buckets(r))?;
    let pick = |f: fn(&Buckets) -> f64| points(present, move |r| buckets(r).map(|b| f(&b)));
    let (sums, counts) = (pick(|b| b.sum), pick(|b| b.count));
    let per_bound: Vec<(f64, Vec<Point>)> = newest
        .bounds
        .iter()
        .map(|&(le, _)| {
            let series = points(present, |r| match r {
                Reading::Histogram(b) => b.bounds.iter().find(|(x, _)| *x == le).map(|(_, c)| *c),
                _ => None,
            });
            (le, series)
        })
        .collect();
    let series: Vec<BucketSeries<'_>> = per_bound
        .iter()
        .map(|(le, points)| BucketSeries {
            upper_bound: *le,
            points,
        })
        .collect();
    // No bucket with a rate gives NaN quantiles, as PromQL gives no sample.
    let mut rated = rated_buckets(&series, window).unwrap_or_default();
    Some(from_buckets(
        increase(&counts, window)?,
        histogram_mean_over_window(&sums, &counts, window).unwrap_or(f64::NAN),
        &mut rated,
    ))
}

/// A histogram's quantiles from its buckets (cumulative counts or their rates), beside its exact count and mean.
fn from_buckets(count: f64, mean: f64, buckets: &mut [Bucket]) -> HistogramStats {
    let [p50, p90, p99] = [0.5, 0.9, 0.99].map(|q| locate_quantile(q, buckets));
    let limits = [("p50", p50), ("p90", p90), ("p99", p99)]
        .into_iter()
        .filter_map(|(name, located)| Some((name.to_string(), located.limit?)))
        .collect();
    HistogramStats {
        count,
        mean,
        p50: p50.value,
        p90: p90.value,
        p99: p99.value,
        limits,
    }
}

/// One scrape on its own: gauges as they stand, counters and histograms since the server started (a counter's
/// `increase` is its total; no rate without a window).
pub fn snapshot(readings: &ServerReadings) -> ServerWindow {
    let mut out = ServerWindow {
        dialect: readings.dialect.clone(),
        models: readings.models.clone(),
        engines: readings.engines,
        scrapes: 1,
        cache_config: readings.cache_config.clone(),
        ..Default::default()
    };
    for (&signal, reading) in &readings.readings {
        match (signal.kind(), reading) {
            (SignalKind::Histogram, Reading::Histogram(b)) => {
                let mut buckets: Vec<Bucket> = b
                    .bounds
                    .iter()
                    .map(|&(upper_bound, count)| Bucket { upper_bound, count })
                    .collect();
                out.histograms
                    .insert(signal, from_buckets(b.count, b.sum / b.count, &mut buckets));
            }
            (SignalKind::Counter, reading) => {
                let by_label = match reading {
                    Reading::ByLabel(by) => by.clone(),
                    _ => BTreeMap::new(),
                };
                if let Some(total) = reading.value() {
                    out.counters.insert(
                        signal,
                        CounterStats {
                            increase: total,
                            rate: f64::NAN,
                            by_label,
                        },
                    );
                }
            }
            (_, reading) => {
                if let Some(v) = reading.value() {
                    out.gauges.insert(signal, GaugeStats::constant(v));
                }
            }
        }
    }
    out
}

/// Several replicas' scrapes as one server's, the way PromQL's `sum` (amounts) and `avg` (shares) see a fleet at
/// each instant: on the times of the replica scraped most often, each replica's latest scrape by then (within
/// half its own interval after), its counters first made continuous across its restarts, so the fleet's increase
/// is the sum of the replicas' increases (`sum(increase())`, never `increase(sum())`). Histograms add bucket by
/// bucket where their bounds agree; a replica whose bounds differ is left out of that signal. Replicas without a
/// scrape add nothing.
pub fn combine_replicas(replicas: &[Vec<(f64, ServerReadings)>]) -> Vec<(f64, ServerReadings)> {
    let continuous: Vec<(f64, Vec<(f64, ServerReadings)>)> = replicas
        .iter()
        .filter(|r| !r.is_empty())
        .map(|r| (half_interval(r), without_resets(r)))
        .collect();
    let Some((_, grid)) = continuous.iter().max_by_key(|(_, r)| r.len()) else {
        return Vec::new();
    };
    grid.iter()
        .map(|(t, _)| {
            let at = continuous.iter().filter_map(|(slack, scrapes)| {
                scrapes
                    .iter()
                    .take_while(|(s, _)| *s <= t + slack)
                    .last()
                    .map(|(_, r)| r)
            });
            (*t, combine_readings(at))
        })
        .collect()
}

/// Half the median gap between a replica's scrapes: how far apart two scrapes of one instant may lie.
fn half_interval(scrapes: &[(f64, ServerReadings)]) -> f64 {
    let mut gaps: Vec<f64> = scrapes.windows(2).map(|w| w[1].0 - w[0].0).collect();
    gaps.sort_by(f64::total_cmp);
    gaps.get(gaps.len() / 2).map_or(0.0, |g| g / 2.0)
}

/// One replica's scrapes with every counter (and histogram bucket, sum and count) made continuous over its
/// restarts, as Prometheus's `increase` reads them: a value below the one before starts again from that one.
fn without_resets(scrapes: &[(f64, ServerReadings)]) -> Vec<(f64, ServerReadings)> {
    let mut last: BTreeMap<(Signal, String), f64> = BTreeMap::new();
    let mut offset: BTreeMap<(Signal, String), f64> = BTreeMap::new();
    let mut fix = |signal: Signal, key: String, value: &mut f64| {
        let key = (signal, key);
        if let Some(before) = last.get(&key).copied()
            && *value < before
        {
            *offset.entry(key.clone()).or_default() += before;
        }
        last.insert(key.clone(), *value);
        *value += offset.get(&key).copied().unwrap_or(0.0);
    };
    scrapes
        .iter()
        .map(|(t, readings)| {
            let mut readings = readings.clone();
            for (&signal, reading) in readings.readings.iter_mut() {
                match (signal.kind(), reading) {
                    (SignalKind::Counter, Reading::Value(v)) => fix(signal, String::new(), v),
                    (SignalKind::Counter, Reading::ByLabel(by)) => {
                        for (label, v) in by.iter_mut() {
                            fix(signal, label.clone(), v);
                        }
                    }
                    (SignalKind::Histogram, Reading::Histogram(b)) => {
                        for (bound, count) in b.bounds.iter_mut() {
                            fix(signal, format!("le={bound}"), count);
                        }
                        fix(signal, "sum".into(), &mut b.sum);
                        fix(signal, "count".into(), &mut b.count);
                    }
                    _ => {}
                }
            }
            (*t, readings)
        })
        .collect()
}

fn combine_readings<'a>(all: impl Iterator<Item = &'a ServerReadings>) -> ServerReadings {
    let all: Vec<&ServerReadings> = all.collect();
    let mut out = ServerReadings {
        dialect: all.first().map(|r| r.dialect.clone()).unwrap_or_default(),
        cache_config: all
            .first()
            .map(|r| r.cache_config.clone())
            .unwrap_or_default(),
        ..Default::default()
    };
    for r in &all {
        for model in &r.models {
            if !out.models.contains(model) {
                out.models.push(model.clone());
            }
        }
        out.warnings.extend(r.warnings.iter().cloned());
    }
    let signals: std::collections::BTreeSet<Signal> = all
        .iter()
        .flat_map(|r| r.readings.keys().copied())
        .collect();
    for signal in signals {
        let readings: Vec<&Reading> = all.iter().filter_map(|r| r.readings.get(&signal)).collect();
        let combined = match readings.first() {
            Some(Reading::Histogram(first)) => {
                let mut sum = first.clone();
                for other in readings.iter().skip(1) {
                    if let Reading::Histogram(b) = other
                        && b.bounds.len() == sum.bounds.len()
                        && b.bounds.iter().zip(&sum.bounds).all(|(x, y)| x.0 == y.0)
                    {
                        for (total, (_, n)) in sum.bounds.iter_mut().zip(&b.bounds) {
                            total.1 += n;
                        }
                        (sum.sum, sum.count) = (sum.sum + b.sum, sum.count + b.count);
                    }
                }
                Reading::Histogram(sum)
            }
            Some(Reading::ByLabel(_)) => {
                let mut by: BTreeMap<String, f64> = BTreeMap::new();
                for reading in &readings {
                    if let Reading::ByLabel(b) = reading {
                        for (label, v) in b {
                            *by.entry(label.clone()).or_default() += v;
                        }
                    }
                }
                Reading::ByLabel(by)
            }
            _ => {
                let values = readings.iter().filter_map(|r| r.value());
                Reading::Value(signal.across().combine(values).unwrap_or(0.0))
            }
        };
        out.readings.insert(signal, combined);
    }
    out
}

/// How many times the server's counters went back to zero over its scrapes (a restarted process): the most of
/// any one counter, as PromQL's `resets()` per counter and `max` over them.
pub fn counter_resets(scrapes: &[(f64, ServerReadings)]) -> u32 {
    Signal::ALL
        .iter()
        .filter(|s| s.kind() == SignalKind::Counter)
        .map(|&signal| {
            let values: Vec<f64> = scrapes
                .iter()
                .filter_map(|(_, r)| r.readings.get(&signal).and_then(Reading::value))
                .collect();
            values.windows(2).filter(|w| w[1] < w[0]).count() as u32
        })
        .max()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scrape(tokens: f64) -> ServerReadings {
        let mut readings = ServerReadings {
            dialect: "vllm_v1".into(),
            ..Default::default()
        };
        readings
            .readings
            .insert(Signal::GenerationTokens, Reading::Value(tokens));
        readings
    }

    fn replica(tokens: f64, kv: f64, ttft_bounds: &[(f64, f64)]) -> ServerReadings {
        let mut r = scrape(tokens);
        r.readings.insert(Signal::KvUsage, Reading::Value(kv));
        r.readings.insert(
            Signal::RequestsFinished,
            Reading::ByLabel(BTreeMap::from([("stop".to_string(), tokens / 10.0)])),
        );
        let count = ttft_bounds.last().map_or(0.0, |b| b.1);
        r.readings.insert(
            Signal::Ttft,
            Reading::Histogram(infer_doctor_core::Buckets {
                bounds: ttft_bounds.to_vec(),
                sum: count * 0.1,
                count,
            }),
        );
        r
    }

    /// Two endpoint-picker replicas of one pool each count the same ready endpoints: the fleet has 3, not 6.
    #[test]
    fn ready_endpoints_seen_by_several_pickers_are_not_added() {
        let picker = |t: f64, ready: f64| {
            let mut r = scrape(0.0);
            r.readings
                .insert(Signal::ReadyReplicas, Reading::Value(ready));
            (t, r)
        };
        let fleet = combine_replicas(&[vec![picker(0.0, 3.0)], vec![picker(0.1, 3.0)]]);
        assert_eq!(fleet[0].1.value(Signal::ReadyReplicas), Some(3.0));
    }

    #[test]
    fn replicas_combine_as_promql_sums_amounts_and_averages_shares() {
        let bounds = |a: f64, b: f64| vec![(0.1, a), (f64::INFINITY, b)];
        let a = vec![
            (0.0, replica(0.0, 0.2, &bounds(0.0, 0.0))),
            (1.0, replica(100.0, 0.4, &bounds(3.0, 4.0))),
        ];
        let b = vec![
            (0.1, replica(0.0, 0.6, &bounds(0.0, 0.0))),
            (1.1, replica(300.0, 0.8, &bounds(1.0, 6.0))),
            // A scrape the other replica has no partner for.
            (2.1, replica(400.0, 0.8, &bounds(1.0, 6.0))),
        ];
        let fleet = combine_replicas(&[a, b, Vec::new()]);
        // On b's three scrape times; at 2.1 a's last scrape (1.0) still stands for it.
        assert_eq!(fleet.len(), 3);
        assert_eq!(fleet[1].0, 1.1);
        assert_eq!(fleet[2].1.value(Signal::GenerationTokens), Some(500.0));
        let last = &fleet[1].1;
        assert_eq!(last.value(Signal::GenerationTokens), Some(400.0));
        assert!((last.value(Signal::KvUsage).unwrap() - 0.6).abs() < 1e-12);
        assert_eq!(last.value(Signal::RequestsFinished), Some(40.0));
        let Some(Reading::Histogram(ttft)) = last.readings.get(&Signal::Ttft) else {
            panic!("no TTFT");
        };
        assert_eq!(ttft.bounds, vec![(0.1, 4.0), (f64::INFINITY, 10.0)]);
        assert_eq!(ttft.count, 10.0);
    }

    /// One replica restarts: the fleet's tokens grow by what each replica generated, not by its peer's whole count
    /// again (the `increase(sum())` mistake).
    #[test]
    fn a_replica_restarting_adds_only_what_it_did() {
        let steady: Vec<(f64, ServerReadings)> = (0..4)
            .map(|i| (f64::from(i), scrape(1000.0 + 100.0 * f64::from(i))))
            .collect();
        let restarted: Vec<(f64, ServerReadings)> = [500.0, 600.0, 20.0, 70.0]
            .iter()
            .enumerate()
            .map(|(i, &v)| (i as f64, scrape(v)))
            .collect();
        let fleet = summarize(&combine_replicas(&[steady, restarted])).unwrap();
        // 300 by the steady one; 100, then 20 after its restart, then 50 by the other.
        assert_eq!(
            fleet.counter(Signal::GenerationTokens).unwrap().increase,
            470.0
        );
    }

    #[test]
    fn a_counter_falling_back_is_a_restart() {
        let scrapes: Vec<(f64, ServerReadings)> = [0.0, 50.0, 90.0, 5.0, 40.0, 2.0]
            .iter()
            .enumerate()
            .map(|(i, &v)| (i as f64, scrape(v)))
            .collect();
        assert_eq!(counter_resets(&scrapes), 2);
        assert_eq!(counter_resets(&scrapes[..3]), 0);
    }

    #[test]
    fn recent_scrapes_keep_the_span_and_one_baseline_before_it() {
        let mut recent = RecentScrapes::new(10.0);
        assert!(summarize(recent.scrapes()).is_none());
        // 100 tokens a second for 20 s, then none.
        for t in 0..=20 {
            recent.push(f64::from(t), scrape(100.0 * f64::from(t)));
        }
        for t in 21..=25 {
            recent.push(f64::from(t), scrape(2000.0));
        }
        let times: Vec<f64> = recent.scrapes().iter().map(|(t, _)| *t).collect();
        assert_eq!(times.first(), Some(&15.0));
        assert_eq!(times.last(), Some(&25.0));
        let window = summarize(recent.scrapes()).unwrap();
        assert_eq!(window.seconds(), 10.0);
        assert_eq!(
            window.counter(Signal::GenerationTokens).unwrap().increase,
            500.0
        );
        let now = recent.latest_interval().unwrap();
        assert_eq!(now.seconds(), 1.0);
        assert_eq!(now.counter(Signal::GenerationTokens).unwrap().rate, 0.0);
    }
}
