//! Reads the numbers rules need out of `Evidence`, preferring the server's metrics and falling back to its log,
//! and drops any number that is not finite, so no rule compares with NaN or divides by zero by accident.

use crate::assessment::how;
use infer_doctor_core::signals::{CounterStats, HistogramStats};
use infer_doctor_core::{Evidence, RunSummary, Signal, Summary};

/// A gauge over the window: its mean and its peak, and where they were read.
#[derive(Clone, Debug)]
pub(crate) struct Level {
    pub mean: f64,
    pub max: f64,
    pub window: String,
}

impl Level {
    /// The waiting queue's evidence for rules that need it empty: its mean against the non-empty threshold.
    pub fn stayed_empty(&self, t: &crate::Thresholds) -> infer_doctor_core::Observation {
        crate::assessment::compared(
            "requests_waiting mean",
            self.mean,
            "≤",
            t.waiting_mean_nonempty,
            &self.window,
        )
    }
}

/// A latency as the client measured it (ms), with the statistic's name.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Latency {
    pub ms: f64,
    /// E.g. `itl_token p50`.
    pub label: &'static str,
}

/// One number with its name and window, ready to become an observation.
#[derive(Clone, Debug)]
pub(crate) struct Measured {
    pub ms: f64,
    pub label: &'static str,
    pub window: String,
}

/// The evidence, with accessors that say where each number came from.
pub(crate) struct Facts<'a> {
    pub evidence: &'a Evidence,
}

pub(crate) fn finite(value: f64) -> Option<f64> {
    value.is_finite().then_some(value)
}

/// How many requests an engine runs at once, by its own name for the limit, and where that was read.
pub(crate) struct RunningCap {
    pub value: f64,
    pub name: &'static str,
    pub source: &'static str,
    /// What the engine does with requests beyond the cap, in its own words.
    pub beyond: &'static str,
}

impl<'a> Facts<'a> {
    pub fn new(evidence: &'a Evidence) -> Self {
        Facts { evidence }
    }

    /// How to get a server signal that is missing. Where metrics were read, the server does not export it,
    /// and "enable metrics" would send the user in a circle.
    pub fn how_server(&self) -> String {
        let Some(server) = &self.evidence.server else {
            return how::METRICS.to_string();
        };
        let dialect = &server.dialect;
        if self.evidence.log.is_some() {
            format!("neither this server's metrics ({dialect}) nor its log report it")
        } else {
            format!(
                "this server's metrics ({dialect}) do not export it; its engine log may ({})",
                how::LOG
            )
        }
    }

    /// How to get a fact only an engine log tells. Where a log was read it lacks the line: vLLM prints its
    /// start-up facts once, so the log may begin too late; other engines do not print them at all.
    pub fn how_log(&self) -> String {
        match &self.evidence.log {
            None => how::LOG.to_string(),
            Some(log) if log.server == "vllm" => {
                "the log passed lacks vLLM's start-up lines: pass the log from the server's start"
                    .to_string()
            }
            Some(log) => format!("{}'s log does not print it", log.server),
        }
    }

    pub fn server_window_label(&self) -> String {
        match &self.evidence.server {
            Some(server) if server.seconds().is_finite() && server.seconds() > 0.0 => format!(
                "server metrics, {:.0} s, {} scrapes",
                server.seconds(),
                server.scrapes
            ),
            _ => "server metrics".to_string(),
        }
    }

    pub fn client_window_label(&self) -> String {
        match &self.evidence.client {
            Some(client) => format!(
                "client, loaded run ({} requests, {:.1} in flight on average)",
                client.requests.sent, client.throughput.mean_concurrency
            ),
            None => "client, loaded run".to_string(),
        }
    }

    pub fn single_user_window_label(&self) -> String {
        match &self.evidence.single_user {
            Some(single) => format!(
                "client, single-user probe ({} requests)",
                single.requests.sent
            ),
            None => "client, single-user probe".to_string(),
        }
    }

    /// A gauge from the server's metrics, else from the log's periodic stats lines.
    fn level(
        &self,
        signal: Signal,
        from_log: impl Fn(&infer_doctor_core::LogStats) -> Option<f64>,
    ) -> Option<Level> {
        if let Some(gauge) = self.evidence.server.as_ref().and_then(|s| s.gauge(signal))
            && let (Some(mean), Some(max)) = (finite(gauge.mean), finite(gauge.max))
        {
            return Some(Level {
                mean,
                max,
                window: self.server_window_label(),
            });
        }
        let log = self.evidence.log.as_ref()?;
        let values: Vec<f64> = log
            .stats
            .iter()
            .filter_map(&from_log)
            .filter(|v| v.is_finite())
            .collect();
        if values.is_empty() {
            return None;
        }
        Some(Level {
            mean: values.iter().sum::<f64>() / values.len() as f64,
            max: values.iter().copied().fold(f64::MIN, f64::max),
            window: format!("engine log, {} stats lines", values.len()),
        })
    }

    pub fn waiting(&self) -> Option<Level> {
        self.level(Signal::RequestsWaiting, |s| s.waiting.map(|w| w as f64))
    }

    pub fn running(&self) -> Option<Level> {
        self.level(Signal::RequestsRunning, |s| s.running.map(|r| r as f64))
    }

    pub fn kv_usage(&self) -> Option<Level> {
        self.level(Signal::KvUsage, |s| s.kv_usage)
    }

    /// Requests waiting for KV blocks or a slot (vLLM's `reason="capacity"`): server metrics only.
    pub fn waiting_for_capacity(&self) -> Option<Level> {
        self.level(Signal::RequestsWaitingCapacity, |_| None)
    }

    pub fn counter(&self, signal: Signal) -> Option<&'a CounterStats> {
        self.evidence
            .server
            .as_ref()?
            .counter(signal)
            .filter(|c| c.increase.is_finite() && c.rate.is_finite())
    }

    pub fn histogram(&self, signal: Signal) -> Option<&'a HistogramStats> {
        self.evidence
            .server
            .as_ref()?
            .histogram(signal)
            .filter(|h| h.count.is_finite() && h.count > 0.0 && h.mean.is_finite())
    }

    /// The engine's cap on requests running at once, and where it was read: vLLM's `max_num_seqs` when its log
    /// shows it was set (its default depends on the GPU, so it is not guessed), or llama.cpp's slots.
    pub fn running_cap(&self) -> Option<RunningCap> {
        let positive = |v: f64| finite(v).filter(|v| *v > 0.0);
        let from_args = self.evidence.log.as_ref().and_then(|log| {
            ["max_num_seqs", "max-num-seqs"]
                .iter()
                .find_map(|key| log.non_default_args.get(*key))
                .and_then(|value| value.trim().parse::<f64>().ok())
                .and_then(positive)
        });
        let slots = self
            .evidence
            .server
            .as_ref()
            .and_then(|s| s.gauge(Signal::MaxRunning))
            .and_then(|g| positive(g.max));
        from_args
            .map(|value| RunningCap {
                value,
                name: "max_num_seqs",
                source: "engine log, non-default args",
                beyond: "wait",
            })
            .or_else(|| {
                slots.map(|value| RunningCap {
                    value,
                    name: "slots",
                    source: "llama.cpp /props total_slots",
                    beyond: "are deferred",
                })
            })
    }

    pub fn client(&self) -> Option<&'a RunSummary> {
        self.evidence.client.as_ref()
    }

    pub fn single_user(&self) -> Option<&'a RunSummary> {
        self.evidence.single_user.as_ref()
    }

    /// The concurrency the probe or bench used: the workload's when it was ours, else the client's peak.
    pub fn concurrency_used(&self) -> Option<f64> {
        self.evidence
            .workload
            .as_ref()
            .map(|w| w.concurrency as f64)
            .filter(|c| *c > 0.0)
            .or_else(|| {
                self.client()
                    .map(|c| c.throughput.max_concurrency as f64)
                    .filter(|c| *c > 0.0)
            })
    }

    /// TTFT p95 under load: the client's, else the server's histogram (its p90, the nearest it exports).
    pub fn loaded_ttft_p95(&self) -> Option<Measured> {
        if let Some(summary) = self.client().and_then(ttft) {
            return Some(Measured {
                ms: summary.p95,
                label: "ttft p95 (loaded)",
                window: self.client_window_label(),
            });
        }
        let histogram = self.histogram(Signal::Ttft)?;
        finite(histogram.p90).map(|p90| Measured {
            ms: p90 * 1000.0,
            label: "server ttft p90",
            window: self.server_window_label(),
        })
    }

    pub fn single_user_ttft_p95(&self) -> Option<Measured> {
        let summary = self.single_user().and_then(ttft)?;
        Some(Measured {
            ms: summary.p95,
            label: "ttft p95 (single user)",
            window: self.single_user_window_label(),
        })
    }

    /// Mean prompt length: the client's count, else the workload's.
    pub fn mean_input_tokens(&self) -> Option<f64> {
        self.client()
            .and_then(|c| finite(c.tokens.mean_input))
            .filter(|v| *v > 0.0)
            .or_else(|| {
                self.evidence
                    .workload
                    .as_ref()
                    .and_then(|w| finite(w.input_tokens))
                    .filter(|v| *v > 0.0)
            })
    }
}

/// A summary with usable numbers only.
fn usable(summary: Option<&Summary>) -> Option<&Summary> {
    summary.filter(|s| s.count > 0 && s.p50.is_finite() && s.p95.is_finite() && s.mean.is_finite())
}

/// The run's headline TTFT (queue-inclusive in open loop).
pub(crate) fn ttft(run: &RunSummary) -> Option<&Summary> {
    usable(run.latency.headline_ttft())
}

/// The run's typical time per output token: per-token ITL, else TPOT, else per-event gaps.
pub(crate) fn itl(run: &RunSummary) -> Option<Latency> {
    let latency = &run.latency;
    [
        (latency.itl_token.as_ref(), "itl_token p50"),
        (latency.tpot.as_ref(), "tpot p50"),
        (latency.itl_gap.as_ref(), "itl_gap p50"),
    ]
    .into_iter()
    .find_map(|(summary, label)| {
        usable(summary)
            .filter(|s| s.p50 > 0.0)
            .map(|s| Latency { ms: s.p50, label })
    })
}

pub(crate) fn tpot(run: &RunSummary) -> Option<&Summary> {
    usable(run.latency.tpot.as_ref())
}
