//! Two runs side by side: each figure's change with its confidence interval, a verdict that separates a real
//! change from run-to-run noise, what the server's own signals did meanwhile, and the gates CI fails on.

use std::fmt;
use std::str::FromStr;

use infer_doctor_core::figures::{Better, FIGURES, Figure, RequestSamples, SampleSource, figure};
use infer_doctor_core::resample::{
    Bootstrap, Interval, Statistic, proportion_difference, relative_change,
};
use infer_doctor_core::signals::{ServerWindow, Signal};
use infer_doctor_core::summary::RunSummary;
use serde::Serialize;
use thiserror::Error;

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

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Better,
    Worse,
    WithinNoise,
    /// A value is missing on one side, or there are no samples to draw an interval from.
    Unknown,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verdict::Better => "better",
            Verdict::Worse => "worse",
            Verdict::WithinNoise => "within noise",
            Verdict::Unknown => "unknown",
        })
    }
}

/// How a figure's change is expressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeUnit {
    /// candidate / baseline − 1.
    Relative,
    /// candidate − baseline, in percentage points (the error rate).
    Points,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FigureChange {
    pub name: &'static str,
    pub label: &'static str,
    pub unit: &'static str,
    pub baseline: Option<f64>,
    pub candidate: Option<f64>,
    pub change: Option<f64>,
    pub change_unit: ChangeUnit,
    pub interval: Option<Interval>,
    pub verdict: Verdict,
    /// Why there is no interval, when there is none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// A server-side signal that moved between the runs, in words.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ServerChange {
    pub signal: &'static str,
    pub baseline: f64,
    pub candidate: f64,
    pub phrase: String,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Comparison {
    pub figures: Vec<FigureChange>,
    /// The server's signals that changed markedly, biggest first: the reason a latency or throughput moved.
    pub server: Vec<ServerChange>,
    /// Why no server-side reason can be given, when it cannot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_note: Option<String>,
    pub gates: Vec<GateResult>,
}

impl Comparison {
    pub fn failed(&self) -> bool {
        self.gates.iter().any(|g| g.failed)
    }

    /// The server-side reason in one clause, e.g. "twice the batch size (8.0 → 16.1), KV usage 40% → 85%".
    pub fn server_reason(&self) -> Option<String> {
        (!self.server.is_empty()).then(|| {
            self.server
                .iter()
                .map(|c| c.phrase.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        })
    }
}

/// Compares every figure of `candidate` with `baseline`, and checks `gates`.
pub fn compare(
    baseline: RunView<'_>,
    candidate: RunView<'_>,
    gates: &[Gate],
    settings: &CompareSettings,
) -> Comparison {
    let figures: Vec<FigureChange> = FIGURES
        .iter()
        .map(|f| figure_change(f, baseline, candidate, settings))
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

fn figure_change(
    f: &'static Figure,
    baseline: RunView<'_>,
    candidate: RunView<'_>,
    settings: &CompareSettings,
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
        (SampleSource::PerRequest(which, q), Some((sa, sb))) => (
            relative_change(
                sa.latency(which),
                sb.latency(which),
                Statistic::Quantile(q.fraction()),
                &settings.bootstrap,
            )
            .map(|(_, ci)| ci),
            None,
        ),
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
        (Some(p), Some(ci)) if ci.excludes_zero() && p.abs() >= floor => {
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
        note: if interval.is_none() { note } else { None },
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

fn prefix_hit_rate(w: &ServerWindow) -> Option<f64> {
    let hits = w.counter(Signal::PrefixCacheHits)?.increase;
    let queries = w.counter(Signal::PrefixCacheQueries)?.increase;
    (queries > 0.0).then(|| hits / queries)
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
        name: "preemptions",
        read: |w| w.counter(Signal::Preemptions).map(|c| c.increase),
        marked: |a, b| ratio_at_least(a, b, 1.5, 1.0),
        say: |a, b| format!("preemptions {a:.0} → {b:.0}"),
    },
    ServerSignal {
        name: "queue_time_p90",
        read: |w| w.histogram(Signal::QueueTime).map(|h| h.p90),
        marked: |a, b| ratio_at_least(a, b, 1.5, 0.010),
        say: |a, b| format!("server queue time p90 {} → {}", seconds(a), seconds(b)),
    },
    ServerSignal {
        name: "prefix_cache_hit_rate",
        read: prefix_hit_rate,
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

/// A `--fail-on` limit: the compared run fails when `figure` moved past `limit` (a relative change, or
/// percentage points for the error rate) in the limit's direction, and the move is not noise.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Gate {
    pub figure: &'static Figure,
    pub limit: f64,
}

#[derive(Debug, Error, PartialEq)]
#[error("--fail-on `{item}`: {reason} (expected e.g. tpot_p95=+10%,throughput=-5%,error_rate=+1%)")]
pub struct GateParseError {
    pub item: String,
    pub reason: String,
}

/// Parses `tpot_p95=+10%,throughput=-5%`.
pub fn parse_gates(text: &str) -> Result<Vec<Gate>, GateParseError> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::parse)
        .collect()
}

impl FromStr for Gate {
    type Err = GateParseError;

    fn from_str(item: &str) -> Result<Gate, GateParseError> {
        let fail = |reason: String| GateParseError {
            item: item.to_string(),
            reason,
        };
        let (name, limit) = item.split_once('=').ok_or_else(|| fail("no `=`".into()))?;
        let figure = figure(name.trim()).ok_or_else(|| {
            fail(format!(
                "unknown figure `{}`; known: {}",
                name.trim(),
                FIGURES
                    .iter()
                    .map(|f| f.name)
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?;
        let limit = limit.trim();
        let number = limit
            .strip_suffix('%')
            .ok_or_else(|| fail("the limit is a signed percentage, e.g. +10%".into()))?;
        if !number.starts_with(['+', '-']) {
            return Err(fail(
                "the limit needs a sign: + for a rise, - for a fall".into(),
            ));
        }
        let value: f64 = number
            .parse()
            .map_err(|_| fail(format!("`{limit}` is not a number")))?;
        if !value.is_finite() || value == 0.0 {
            return Err(fail("the limit must be a non-zero percentage".into()));
        }
        let limit = match figure.source {
            SampleSource::ErrorShare => value,
            _ => value / 100.0,
        };
        Ok(Gate { figure, limit })
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GateResult {
    pub name: &'static str,
    /// As given: relative (0.1 = +10 %) or percentage points.
    pub limit: f64,
    pub change: Option<f64>,
    pub failed: bool,
    pub reason: String,
}

impl Gate {
    fn judge(&self, change: Option<&FigureChange>) -> GateResult {
        let result = |failed: bool, reason: String| GateResult {
            name: self.figure.name,
            limit: self.limit,
            change: change.and_then(|c| c.change),
            failed,
            reason,
        };
        let Some(c) = change.filter(|c| c.change.is_some()) else {
            return result(
                true,
                "no value on one side: the gate cannot pass unchecked".into(),
            );
        };
        let moved = c.change.unwrap_or_default();
        let past = if self.limit > 0.0 {
            moved > self.limit
        } else {
            moved < self.limit
        };
        if !past {
            return result(false, "within the limit".into());
        }
        match c.interval {
            Some(ci) if !ci.excludes_zero() => result(
                false,
                "past the limit, but the interval includes no change: noise".into(),
            ),
            Some(_) => result(true, "past the limit".into()),
            None => result(true, "past the limit (no interval to call it noise)".into()),
        }
    }
}
