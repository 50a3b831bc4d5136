//! A run's headline numbers under stable names (`ttft_p95`, `throughput`, …) and the per-request samples behind
//! them: what `compare` tests and `--fail-on` gates, and what the history keeps of every run.

use serde::{Deserialize, Serialize};

use crate::record::RequestRecord;
use crate::stats::Summary;
use crate::summary::RunSummary;

/// Which way a figure improves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Better {
    Lower,
    Higher,
}

/// Where a figure's per-request (or per-interval) samples come from, for its confidence interval.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SampleSource {
    /// One value per successful request; the figure is this quantile of them.
    PerRequest(Latency, Quantile),
    /// Per-interval amounts over the throughput window; the figure is their mean rate.
    PerInterval(Rate),
    /// Failed / judged requests: a proportion, compared in percentage points.
    ErrorShare,
    /// Pooled ITL gaps: consecutive gaps of one request are not independent samples, so no interval is drawn
    /// from them (TPOT is the per-request test of the same thing).
    PooledGaps(Quantile),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Quantile {
    P50,
    P95,
    P99,
}

impl Quantile {
    pub fn fraction(self) -> f64 {
        match self {
            Quantile::P50 => 0.50,
            Quantile::P95 => 0.95,
            Quantile::P99 => 0.99,
        }
    }

    fn of(self, summary: &Summary) -> f64 {
        match self {
            Quantile::P50 => summary.p50,
            Quantile::P95 => summary.p95,
            Quantile::P99 => summary.p99,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Latency {
    Ttft,
    Tpot,
    E2e,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rate {
    OutputTokens,
    Requests,
}

/// One named figure of a run.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Figure {
    /// Stable name, as `--fail-on` and `history --metric` take it.
    pub name: &'static str,
    pub label: &'static str,
    pub unit: &'static str,
    pub better: Better,
    pub source: SampleSource,
}

const fn latency(name: &'static str, label: &'static str, which: Latency, q: Quantile) -> Figure {
    Figure {
        name,
        label,
        unit: "ms",
        better: Better::Lower,
        source: SampleSource::PerRequest(which, q),
    }
}

const fn itl(name: &'static str, label: &'static str, q: Quantile) -> Figure {
    Figure {
        name,
        label,
        unit: "ms",
        better: Better::Lower,
        source: SampleSource::PooledGaps(q),
    }
}

/// Every figure, in the order reports list them.
pub const FIGURES: &[Figure] = &[
    latency("ttft_p50", "TTFT p50", Latency::Ttft, Quantile::P50),
    latency("ttft_p95", "TTFT p95", Latency::Ttft, Quantile::P95),
    latency("ttft_p99", "TTFT p99", Latency::Ttft, Quantile::P99),
    latency("tpot_p50", "TPOT p50", Latency::Tpot, Quantile::P50),
    latency("tpot_p95", "TPOT p95", Latency::Tpot, Quantile::P95),
    latency("tpot_p99", "TPOT p99", Latency::Tpot, Quantile::P99),
    itl("itl_p50", "ITL p50", Quantile::P50),
    itl("itl_p95", "ITL p95", Quantile::P95),
    itl("itl_p99", "ITL p99", Quantile::P99),
    latency("e2e_p50", "E2E p50", Latency::E2e, Quantile::P50),
    latency("e2e_p95", "E2E p95", Latency::E2e, Quantile::P95),
    latency("e2e_p99", "E2E p99", Latency::E2e, Quantile::P99),
    Figure {
        name: "throughput",
        label: "output tokens/s",
        unit: "tok/s",
        better: Better::Higher,
        source: SampleSource::PerInterval(Rate::OutputTokens),
    },
    Figure {
        name: "request_rate",
        label: "requests/s",
        unit: "req/s",
        better: Better::Higher,
        source: SampleSource::PerInterval(Rate::Requests),
    },
    Figure {
        name: "error_rate",
        label: "error rate",
        unit: "%",
        better: Better::Lower,
        source: SampleSource::ErrorShare,
    },
];

/// The figure with this name, also under the short names users type (`tokens_per_s`, `errors`).
pub fn figure(name: &str) -> Option<&'static Figure> {
    let name = match name {
        "tokens_per_s" | "output_tokens_per_s" | "tok_s" => "throughput",
        "errors" => "error_rate",
        "requests_per_s" | "req_s" => "request_rate",
        other => other,
    };
    FIGURES.iter().find(|f| f.name == name)
}

impl Figure {
    /// This figure's value in a run's summary: the headline latencies (queue-inclusive in open loop), the
    /// steady window's rates, the error share in percent.
    pub fn value(&self, summary: &RunSummary) -> Option<f64> {
        let l = &summary.latency;
        let quantile = |s: Option<&Summary>, q: Quantile| s.map(|s| q.of(s));
        let judged = summary.requests.ok + summary.requests.failed;
        match self.source {
            SampleSource::PerRequest(Latency::Ttft, q) => quantile(l.headline_ttft(), q),
            SampleSource::PerRequest(Latency::Tpot, q) => quantile(l.tpot.as_ref(), q),
            SampleSource::PerRequest(Latency::E2e, q) => quantile(l.headline_e2e(), q),
            SampleSource::PooledGaps(q) => quantile(l.itl_gap.as_ref(), q),
            SampleSource::PerInterval(Rate::OutputTokens) => (summary.throughput.window_s > 0.0)
                .then_some(summary.throughput.output_tokens_per_s),
            SampleSource::PerInterval(Rate::Requests) => {
                (summary.throughput.window_s > 0.0).then_some(summary.throughput.request_rate)
            }
            SampleSource::ErrorShare => (judged > 0).then_some(summary.requests.error_rate * 100.0),
        }
    }
}

/// The figure `name` names, or the message that lists the names there are.
pub fn parse_figure(name: &str) -> Result<&'static Figure, String> {
    figure(name).ok_or_else(|| {
        format!(
            "unknown figure `{name}`; known: {}",
            FIGURES
                .iter()
                .map(|f| f.name)
                .collect::<Vec<_>>()
                .join(", ")
        )
    })
}

/// Every figure the summary has a value for.
pub fn figures(summary: &RunSummary) -> Vec<(&'static str, f64)> {
    FIGURES
        .iter()
        .filter_map(|f| {
            f.value(summary)
                .filter(|v| v.is_finite())
                .map(|v| (f.name, v))
        })
        .collect()
}

/// Intervals the throughput window is cut into: enough for a stable bootstrap, few enough that each holds many
/// tokens in a short run.
pub const INTERVALS: usize = 20;

/// What a run's statistics were computed from, one value per successful measured request (milliseconds), and
/// per interval of the throughput window: the raw material of a confidence interval, kept small enough to store.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RequestSamples {
    pub ttft_ms: Vec<f64>,
    pub tpot_ms: Vec<f64>,
    pub e2e_ms: Vec<f64>,
    /// Output tokens per second in each of [`INTERVALS`] equal slices of the throughput window (runs differ in
    /// window length, so the slices hold rates, not counts).
    pub output_tokens_per_s: Vec<f64>,
    /// Requests completed per second in each slice.
    pub completions_per_s: Vec<f64>,
    pub ok: u64,
    pub failed: u64,
}

impl RequestSamples {
    /// The samples of the measured requests, with the headline definitions of `summary` (queue-inclusive TTFT
    /// and E2E in open loop) over its throughput window.
    pub fn from_records<'a>(
        records: impl IntoIterator<Item = &'a RequestRecord>,
        summary: &RunSummary,
    ) -> RequestSamples {
        let open_loop = summary.latency.open_loop;
        let window = &summary.throughput;
        let from_us = window.window_start_s * 1e6;
        let span_us = (window.window_end_s - window.window_start_s) * 1e6;
        let slice = |at_us: u64| {
            let offset = at_us as f64 - from_us;
            (span_us > 0.0 && offset >= 0.0 && offset < span_us)
                .then(|| ((offset / span_us) * INTERVALS as f64) as usize)
        };
        let mut samples = RequestSamples {
            output_tokens_per_s: vec![0.0; INTERVALS],
            completions_per_s: vec![0.0; INTERVALS],
            ..RequestSamples::default()
        };
        let ms = |us: u64| us as f64 / 1e3;
        for rec in records.into_iter().filter(|r| r.measured()) {
            match &rec.error {
                Some(e) if e.class == crate::record::ErrorClass::Interrupted => continue,
                Some(_) => {
                    samples.failed += 1;
                    continue;
                }
                None => samples.ok += 1,
            }
            let ttft = if open_loop {
                rec.ttft_from_schedule_us()
            } else {
                rec.ttft_us()
            };
            samples.ttft_ms.extend(ttft.map(ms));
            samples.tpot_ms.extend(rec.tpot_us().map(|us| us / 1e3));
            samples.e2e_ms.push(ms(if open_loop {
                rec.e2e_from_schedule_us()
            } else {
                rec.e2e_us()
            }));
            if let Some(i) = slice(rec.end_us) {
                samples.completions_per_s[i] += 1.0;
            }
            for (at, tokens) in rec.token_arrivals() {
                if let Some(i) = slice(at) {
                    samples.output_tokens_per_s[i] += tokens;
                }
            }
            if rec.first_token_us.is_none()
                && let Some(i) = slice(rec.end_us)
            {
                samples.output_tokens_per_s[i] += f64::from(rec.output_tokens());
            }
        }
        let slice_s = span_us / 1e6 / INTERVALS as f64;
        if slice_s > 0.0 {
            for v in samples
                .output_tokens_per_s
                .iter_mut()
                .chain(samples.completions_per_s.iter_mut())
            {
                *v /= slice_s;
            }
        }
        samples
    }

    /// The per-request values a latency figure is a quantile of.
    pub fn latency(&self, which: Latency) -> &[f64] {
        match which {
            Latency::Ttft => &self.ttft_ms,
            Latency::Tpot => &self.tpot_ms,
            Latency::E2e => &self.e2e_ms,
        }
    }

    /// Per-slice amounts of a rate figure.
    pub fn per_interval(&self, which: Rate) -> &[f64] {
        match which {
            Rate::OutputTokens => &self.output_tokens_per_s,
            Rate::Requests => &self.completions_per_s,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::{AggregateConfig, RunAggregate, RunContext};
    use crate::record::{ErrorClass, Phase, RequestError};
    use crate::resample::{Statistic, statistic};

    /// Request `id` sent at `id` × 50 ms, with a TTFT and a gap that grow with `id`, so quantiles differ.
    fn request(id: u64) -> RequestRecord {
        let sent = id * 50_000;
        let first = sent + 10_000 + id * 100;
        let gaps = vec![4_000 + id as u32 * 10; 15];
        let last = first + gaps.iter().map(|&g| u64::from(g)).sum::<u64>();
        RequestRecord {
            id,
            phase: Some(Phase::Measured),
            scheduled_us: sent,
            sent_us: sent,
            first_token_us: Some(first),
            first_content_us: Some(first),
            last_token_us: Some(last),
            end_us: last,
            streamed: true,
            max_tokens: 16,
            usage_output_tokens: Some(16),
            token_events: 16,
            gaps_us: gaps,
            ..Default::default()
        }
    }

    #[test]
    fn the_samples_give_the_summary_s_figures_and_the_failures() {
        let mut records: Vec<RequestRecord> = (0..400).map(request).collect();
        records[7].error = Some(RequestError {
            class: ErrorClass::HttpStatus,
            status: Some(503),
            message: "busy".into(),
        });
        let mut aggregate = RunAggregate::new(AggregateConfig::default());
        for r in &records {
            aggregate.add(r);
        }
        let last = records.iter().map(|r| r.end_us).max().unwrap();
        let summary = aggregate.summarize(&RunContext {
            window_us: (0, last),
            wall_seconds: last as f64 / 1e6,
            cores: 1,
            ..Default::default()
        });
        let samples = RequestSamples::from_records(&records, &summary);
        assert_eq!((samples.ok, samples.failed), (399, 1));
        for f in FIGURES {
            let from_summary = f.value(&summary);
            let from_samples = match f.source {
                SampleSource::PerRequest(which, q) => statistic(
                    &mut samples.latency(which).to_vec(),
                    Statistic::Quantile(q.fraction()),
                ),
                SampleSource::PerInterval(which) => {
                    statistic(&mut samples.per_interval(which).to_vec(), Statistic::Mean)
                }
                SampleSource::ErrorShare => Some(100.0 * samples.failed as f64 / 400.0),
                SampleSource::PooledGaps(_) => continue,
            };
            let (a, b) = (from_summary.unwrap(), from_samples.unwrap());
            // HDR histograms keep 3 significant digits; the throughput window's slices cut at bin edges.
            assert!(
                (a - b).abs() <= a.abs() * 0.02 + 1e-9,
                "{}: summary {a}, samples {b}",
                f.name
            );
        }
    }
}
