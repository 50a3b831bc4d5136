//! Two runs side by side: each figure's change with its confidence interval, a verdict that separates a real
//! change from run-to-run noise, what the server's own signals did meanwhile, and the gates CI fails on.

use std::collections::BTreeMap;

use infer_doctor_core::comparison::{
    ChangeUnit, Comparison, FigureChange, Gate, ServerChange, Verdict,
};
use infer_doctor_core::figures::{
    Better, FIGURES, Figure, Latency, Quantile, RequestSamples, SampleSource,
};
use infer_doctor_core::resample::{
    Bootstrap, Interval, Statistic, proportion_difference, relative_change, relative_changes,
};
use infer_doctor_core::signals::{ServerWindow, Signal};
use infer_doctor_core::summary::RunSummary;

/// Values a tail quantile needs beyond it in each run before its interval means anything.
const MIN_TAIL_SAMPLES: f64 = 5.0;

/// One run as a comparison reads it: the summary always; the samples and the server's window where recorded.
#[derive(Clone, Copy, Debug)]
pub struct RunView<'a> {
    pub summary: &'a RunSummary,
    pub samples: Option<&'a RequestSamples>,
    pub server: Option<&'a ServerWindow>,
}

/// What counts as a change worth a verdict.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CompareSettings {
    /// Relative changes smaller than this are "within noise" even when significant: two runs of one unchanged
    /// service differ by a few percent for reasons no resampling of one run sees (warm caches, neighbours).
    pub noise: f64,
    /// The same floor for the error rate, in percentage points.
    pub noise_points: f64,
    pub bootstrap: Bootstrap,
}

impl Default for CompareSettings {
    fn default() -> Self {
        CompareSettings {
            noise: 0.05,
            noise_points: 1.0,
            bootstrap: Bootstrap::default(),
        }
    }
}

/// Compares every figure of `candidate` with `baseline`, and checks `gates`.
pub fn compare(
    baseline: RunView<'_>,
    candidate: RunView<'_>,
    gates: &[Gate],
    settings: &CompareSettings,
) -> Comparison {
    let latency_intervals = latency_intervals(baseline, candidate, settings);
    let figures: Vec<FigureChange> = FIGURES
        .iter()
        .map(|f| figure_change(f, baseline, candidate, settings, &latency_intervals))
        .collect();
    let (server, server_note) = match (baseline.server, candidate.server) {
        (Some(a), Some(b)) => (server_changes(a, b), None),
        _ => (
            Vec::new(),
            Some(format!(
                "the server's metrics were not scraped in the {} run: no server-side reason",
                match (baseline.server, candidate.server) {
                    (None, None) => "either",
                    (None, _) => "baseline",
                    _ => "compared",
                }
            )),
        ),
    };
    let gates = gates
        .iter()
        .map(|g| {
            let change = figures.iter().find(|c| c.name == g.figure.name);
            g.judge(change)
        })
        .collect();
    Comparison {
        figures,
        server,
        server_note,
        gates,
    }
}

/// The intervals of every per-request latency figure, each latency's quantiles from one set of resamples.
fn latency_intervals(
    baseline: RunView<'_>,
    candidate: RunView<'_>,
    settings: &CompareSettings,
) -> BTreeMap<&'static str, Option<Interval>> {
    let mut out = BTreeMap::new();
    let Some((sa, sb)) = baseline.samples.zip(candidate.samples) else {
        return out;
    };
    for which in [Latency::Ttft, Latency::Tpot, Latency::E2e] {
        let figures: Vec<(&'static str, Quantile)> = FIGURES
            .iter()
            .filter_map(|f| match f.source {
                SampleSource::PerRequest(w, q) if w == which => Some((f.name, q)),
                _ => None,
            })
            .collect();
        let stats: Vec<Statistic> = figures
            .iter()
            .map(|(_, q)| Statistic::Quantile(q.fraction()))
            .collect();
        let changes = relative_changes(
            sa.latency(which),
            sb.latency(which),
            &stats,
            &settings.bootstrap,
        );
        for ((name, _), change) in figures.into_iter().zip(changes) {
            out.insert(name, change.map(|(_, ci)| ci));
        }
    }
    out
}

fn figure_change(
    f: &'static Figure,
    baseline: RunView<'_>,
    candidate: RunView<'_>,
    settings: &CompareSettings,
    latency_intervals: &BTreeMap<&'static str, Option<Interval>>,
) -> FigureChange {
    let (a, b) = (f.value(baseline.summary), f.value(candidate.summary));
    let change_unit = match f.source {
        SampleSource::ErrorShare => ChangeUnit::Points,
        _ => ChangeUnit::Relative,
    };
    let point = match (a, b, change_unit) {
        (Some(a), Some(b), ChangeUnit::Points) => Some(b - a),
        (Some(a), Some(b), ChangeUnit::Relative) if a != 0.0 => Some(b / a - 1.0),
        _ => None,
    };
    let samples = baseline.samples.zip(candidate.samples);
    let (interval, note) = match (f.source, samples) {
        (_, _) if point.is_none() => (None, Some("no value on one side".to_string())),
        (SampleSource::PooledGaps(_), _) => (
            None,
            Some(
                "pooled gaps of one request are not independent; TPOT is the tested figure".into(),
            ),
        ),
        (_, None) => (
            None,
            Some("per-request samples missing (a run without requests.jsonl)".into()),
        ),
        (SampleSource::PerRequest(which, q), Some((sa, sb))) => {
            let fewest = sa.latency(which).len().min(sb.latency(which).len());
            // A tail quantile of few requests rests on its last few values: the bootstrap cannot widen past them,
            // so its interval would claim a precision the run does not have.
            if (fewest as f64) * (1.0 - q.fraction()) < MIN_TAIL_SAMPLES {
                (
                    None,
                    Some(format!(
                        "too few requests for an interval of this quantile ({fewest} on the smaller side; needs \
                         {MIN_TAIL_SAMPLES} beyond it)"
                    )),
                )
            } else {
                (latency_intervals.get(f.name).copied().flatten(), None)
            }
        }
        (SampleSource::PerInterval(which), Some((sa, sb))) => (
            relative_change(
                sa.per_interval(which),
                sb.per_interval(which),
                Statistic::Mean,
                &settings.bootstrap,
            )
            .map(|(_, ci)| ci),
            None,
        ),
        (SampleSource::ErrorShare, Some((sa, sb))) => (
            proportion_difference(
                (sa.failed, sa.ok + sa.failed),
                (sb.failed, sb.ok + sb.failed),
                settings.bootstrap.confidence,
            )
            .map(|(_, ci)| ci),
            None,
        ),
    };
    let floor = match change_unit {
        ChangeUnit::Relative => settings.noise,
        ChangeUnit::Points => settings.noise_points,
    };
    let verdict = match (point, interval) {
        // The interval must agree with the point's direction: the point is the summary's, the interval the samples'.
        (Some(p), Some(ci))
            if ci.excludes_zero() && (ci.low > 0.0) == (p > 0.0) && p.abs() >= floor =>
        {
            let higher = p > 0.0;
            if higher == (f.better == Better::Higher) {
                Verdict::Better
            } else {
                Verdict::Worse
            }
        }
        (Some(_), Some(_)) => Verdict::WithinNoise,
        _ => Verdict::Unknown,
    };
    FigureChange {
        name: f.name,
        label: f.label,
        unit: f.unit,
        baseline: a,
        candidate: b,
        change: point,
        change_unit,
        interval,
        verdict,
        note: match interval {
            Some(_) => None,
            None => note.or_else(|| Some("no interval: a side's statistic is zero".into())),
        },
    }
}

/// How one server signal is read from a window and said in words.
struct ServerSignal {
    name: &'static str,
    read: fn(&ServerWindow) -> Option<f64>,
    /// Whether the change is large enough to name.
    marked: fn(f64, f64) -> bool,
    say: fn(f64, f64) -> String,
}

fn gauge_mean(w: &ServerWindow, s: Signal) -> Option<f64> {
    w.gauge(s).map(|g| g.mean).filter(|v| v.is_finite())
}

fn ratio_at_least(a: f64, b: f64, ratio: f64, floor: f64) -> bool {
    (a - b).abs() >= floor && (a.max(b) / a.min(b).max(1e-9)) >= ratio
}

/// 2, 3 or 4 when `ratio` is near that whole number.
fn near_whole(ratio: f64) -> Option<usize> {
    let whole = ratio.round();
    ((2.0..=4.0).contains(&whole) && (ratio - whole).abs() < 0.15).then_some(whole as usize)
}

/// "twice the batch size (8.0 → 16.1)" when the ratio is near a whole number, "batch size 8.0 → 11.0" otherwise.
fn say_count(what: &str, a: f64, b: f64) -> String {
    let up = (a > 0.0).then(|| near_whole(b / a)).flatten();
    let down = (b > 0.0).then(|| near_whole(a / b)).flatten();
    match (up, down) {
        (Some(n), _) => format!(
            "{} the {what} ({a:.1} → {b:.1})",
            ["twice", "three times", "four times"][n - 2]
        ),
        (_, Some(n)) => format!(
            "{} the {what} ({a:.1} → {b:.1})",
            ["half", "a third of", "a quarter of"][n - 2]
        ),
        _ => format!("{what} {a:.1} → {b:.1}"),
    }
}

fn say_share(what: &str, a: f64, b: f64) -> String {
    format!("{what} {:.0}% → {:.0}%", a * 100.0, b * 100.0)
}

const SERVER_SIGNALS: &[ServerSignal] = &[
    ServerSignal {
        name: "requests_running",
        read: |w| gauge_mean(w, Signal::RequestsRunning),
        marked: |a, b| ratio_at_least(a, b, 1.25, 0.5),
        say: |a, b| say_count("batch size", a, b),
    },
    ServerSignal {
        name: "kv_usage",
        read: |w| gauge_mean(w, Signal::KvUsage),
        marked: |a, b| (a - b).abs() >= 0.10,
        say: |a, b| say_share("KV usage", a, b),
    },
    ServerSignal {
        name: "requests_waiting",
        read: |w| gauge_mean(w, Signal::RequestsWaiting),
        marked: |a, b| ratio_at_least(a, b, 1.5, 1.0),
        say: |a, b| format!("waiting requests {a:.1} → {b:.1}"),
    },
    ServerSignal {
        // A rate: runs of different lengths preempt different totals at the same pace.
        name: "preemptions_per_s",
        read: |w| w.counter(Signal::Preemptions).map(|c| c.rate),
        marked: |a, b| ratio_at_least(a, b, 1.5, 0.05),
        say: |a, b| format!("preemptions {a:.2}/s → {b:.2}/s"),
    },
    ServerSignal {
        name: "queue_time_p90",
        read: |w| w.histogram(Signal::QueueTime).map(|h| h.p90),
        marked: |a, b| ratio_at_least(a, b, 1.5, 0.010),
        say: |a, b| format!("server queue time p90 {} → {}", seconds(a), seconds(b)),
    },
    ServerSignal {
        name: "prefix_cache_hit_rate",
        read: ServerWindow::prefix_cache_hit_rate,
        marked: |a, b| (a - b).abs() >= 0.10,
        say: |a, b| say_share("prefix-cache hit rate", a, b),
    },
    ServerSignal {
        name: "generation_tokens_per_s",
        read: |w| w.counter(Signal::GenerationTokens).map(|c| c.rate),
        marked: |a, b| ratio_at_least(a, b, 1.10, 1.0),
        say: |a, b| format!("server generation {a:.0} → {b:.0} tokens/s"),
    },
];

fn seconds(s: f64) -> String {
    if s < 1.0 {
        format!("{:.0} ms", s * 1e3)
    } else {
        format!("{s:.2} s")
    }
}

fn server_changes(a: &ServerWindow, b: &ServerWindow) -> Vec<ServerChange> {
    SERVER_SIGNALS
        .iter()
        .filter_map(|s| {
            let (x, y) = ((s.read)(a)?, (s.read)(b)?);
            (x.is_finite() && y.is_finite() && (s.marked)(x, y)).then(|| ServerChange {
                signal: s.name,
                baseline: x,
                candidate: y,
                phrase: (s.say)(x, y),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use infer_doctor_core::comparison::parse_gates;
    use infer_doctor_core::figures::{INTERVALS, figure};
    use infer_doctor_core::signals::GaugeStats;
    use infer_doctor_core::stats::Summary;

    /// A run whose TPOT samples are `tpot` ms with a spread, and whose summary says the same.
    fn run(tpot: f64, tokens_per_s: f64) -> (RunSummary, RequestSamples) {
        let samples: Vec<f64> = (0..400)
            .map(|i| tpot * (0.9 + 0.2 * f64::from(i % 41) / 40.0))
            .collect();
        let mut sorted = samples.clone();
        sorted.sort_by(f64::total_cmp);
        let summary_of = |v: &[f64]| Summary {
            count: v.len() as u64,
            p50: v[v.len() / 2],
            p95: v[v.len() * 95 / 100],
            p99: v[v.len() * 99 / 100],
            mean: 0.0,
            stddev: 0.0,
            min: v[0],
            max: v[v.len() - 1],
            p90: v[v.len() * 90 / 100],
            p999: v[v.len() - 1],
        };
        let mut summary = RunSummary::default();
        summary.latency.tpot = Some(summary_of(&sorted));
        summary.requests.ok = 400;
        summary.throughput.window_s = 20.0;
        summary.throughput.output_tokens_per_s = tokens_per_s;
        let per_interval = (0..INTERVALS)
            .map(|i| tokens_per_s * (0.97 + 0.06 * (i % 3) as f64 / 2.0))
            .collect();
        let samples = RequestSamples {
            tpot_ms: samples,
            output_tokens_per_s: per_interval,
            completions_per_s: vec![20.0; INTERVALS],
            ok: 400,
            ..RequestSamples::default()
        };
        (summary, samples)
    }

    fn window(running: f64, kv: f64) -> ServerWindow {
        let mut w = ServerWindow::default();
        w.gauges
            .insert(Signal::RequestsRunning, GaugeStats::constant(running));
        w.gauges.insert(Signal::KvUsage, GaugeStats::constant(kv));
        w
    }

    fn change<'a>(c: &'a Comparison, name: &str) -> &'a FigureChange {
        c.figures.iter().find(|f| f.name == name).unwrap()
    }

    #[test]
    fn a_slower_run_is_worse_with_the_server_side_reason_and_fails_its_gate() {
        let (base, base_samples) = run(20.0, 600.0);
        let (slow, slow_samples) = run(24.0, 500.0);
        let (w1, w2) = (window(8.0, 0.40), window(16.1, 0.85));
        let gates = parse_gates("tpot_p95=+10%, throughput=-5%, e2e_p95=+10%").unwrap();
        let c = compare(
            RunView {
                summary: &base,
                samples: Some(&base_samples),
                server: Some(&w1),
            },
            RunView {
                summary: &slow,
                samples: Some(&slow_samples),
                server: Some(&w2),
            },
            &gates,
            &CompareSettings::default(),
        );
        let tpot = change(&c, "tpot_p95");
        assert_eq!(tpot.verdict, Verdict::Worse, "{tpot:?}");
        assert!((tpot.change.unwrap() - 0.2).abs() < 0.01);
        assert_eq!(change(&c, "throughput").verdict, Verdict::Worse);
        assert_eq!(
            c.server_reason().unwrap(),
            "twice the batch size (8.0 → 16.1), KV usage 40% → 85%"
        );
        // E2E has no value on either side: its gate cannot pass unchecked.
        assert_eq!(
            c.gates
                .iter()
                .map(|g| (g.name, g.failed))
                .collect::<Vec<_>>(),
            [("tpot_p95", true), ("throughput", true), ("e2e_p95", true)]
        );
        assert!(c.failed());
    }

    #[test]
    fn the_same_run_twice_is_within_noise_and_passes() {
        let (base, samples) = run(20.0, 600.0);
        let view = RunView {
            summary: &base,
            samples: Some(&samples),
            server: None,
        };
        let c = compare(
            view,
            view,
            &parse_gates("tpot_p95=+10%").unwrap(),
            &CompareSettings::default(),
        );
        assert_eq!(change(&c, "tpot_p95").verdict, Verdict::WithinNoise);
        assert!(!c.failed());
        assert!(c.server_note.as_deref().unwrap().contains("either"));
        // Without samples there is no interval, so no verdict.
        let bare = RunView {
            summary: &base,
            samples: None,
            server: None,
        };
        let c = compare(bare, bare, &[], &CompareSettings::default());
        assert_eq!(change(&c, "tpot_p95").verdict, Verdict::Unknown);
        assert!(
            change(&c, "tpot_p95")
                .note
                .as_deref()
                .unwrap()
                .contains("requests.jsonl")
        );
    }

    #[test]
    fn gates_are_parsed_with_their_sign_and_bad_ones_name_the_item() {
        let gates = parse_gates("tpot_p95=+10%,tokens_per_s=-5%,error_rate=+1%").unwrap();
        assert_eq!(gates[0].figure, figure("tpot_p95").unwrap());
        assert!((gates[0].limit - 0.10).abs() < 1e-12);
        assert_eq!(gates[1].figure.name, "throughput");
        assert!((gates[1].limit + 0.05).abs() < 1e-12);
        assert_eq!(
            gates[2].limit, 1.0,
            "the error rate's limit is in percentage points"
        );
        for bad in [
            "tpot_p95=10%",
            "tpot_p95=+10",
            "nope=+1%",
            "tpot_p95",
            "ttft_p95=+x%",
        ] {
            let e = parse_gates(bad).unwrap_err();
            assert_eq!(e.item, bad);
        }
    }
}
