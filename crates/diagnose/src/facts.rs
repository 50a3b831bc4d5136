//! Reads the numbers rules need out of `Evidence`, preferring the server's metrics and falling back to its log,
//! and drops any number that is not finite, so no rule compares with NaN or divides by zero by accident.

use crate::assessment::how;
use infer_doctor_core::signals::{CounterStats, HistogramStats, ServerWindow};
use infer_doctor_core::{Evidence, RunSummary, Signal, Summary};

/// How to measure over a window when the metrics given were one scrape.
const SECOND_SCRAPE: &str = "pass a second scrape taken some seconds later (--metrics A.prom B.prom), or diagnose a \
                             run (--url or --bundle)";

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

/// Fewer stats lines with a queue than this cannot show a trend.
const MIN_QUEUED_LINES: usize = 3;

/// Prompt throughput whose spread (standard deviation / mean) over the queued lines stays under this is flat:
/// the engine prefills at one rate however many requests wait. Inference: a rate that holds within a quarter.
pub(crate) const FLAT_PROMPT_SPREAD: f64 = 0.25;

/// Running may climb by this many requests before it counts as climbing, so noise of one is not a trend.
const MIN_RUNNING_CLIMB: f64 = 2.0;

/// A cap binds when running sits at it on at least this share of the log's stats lines with a queue; running
/// that touches its peak once on the way up is not held by a limit.
pub(crate) const PINNED_SHARE: f64 = 0.5;

/// An engine log's stats lines printed while requests waited, in log order: they tell a batch cap (running
/// pinned at a ceiling) from a prefill that cannot keep up (running climbing while prompt throughput is flat).
pub(crate) struct QueuedStats {
    pub running: Vec<f64>,
    pub waiting_mean: f64,
    /// Mean prompt tokens/s over the lines that print it, and its spread (standard deviation / mean).
    pub prompt: Option<(f64, f64)>,
    pub window: String,
}

impl QueuedStats {
    pub fn first_running(&self) -> f64 {
        self.running[0]
    }

    pub fn last_running(&self) -> f64 {
        self.running[self.running.len() - 1]
    }

    pub fn max_running(&self) -> f64 {
        self.running.iter().copied().fold(f64::MIN, f64::max)
    }

    /// Share of the lines whose running count reached `ceiling`.
    pub fn share_at(&self, ceiling: f64) -> f64 {
        self.running.iter().filter(|r| **r >= ceiling).count() as f64 / self.running.len() as f64
    }

    /// Running rose across the queued lines, more steps up than down.
    pub fn running_climbs(&self) -> bool {
        let steps = self.running.windows(2);
        let ups = steps.clone().filter(|w| w[1] > w[0]).count();
        let downs = steps.filter(|w| w[1] < w[0]).count();
        self.last_running() - self.first_running() >= MIN_RUNNING_CLIMB && ups > downs
    }

    /// Prompt throughput held at one positive rate.
    pub fn prompt_flat(&self) -> bool {
        self.prompt
            .is_some_and(|(mean, spread)| mean > 0.0 && spread <= FLAT_PROMPT_SPREAD)
    }

    /// Running climbs, never settling at its peak, while prompt throughput is flat: prefill, not a batch
    /// limit, holds the queue back.
    pub fn prefill_backlog(&self) -> bool {
        self.running_climbs()
            && self.prompt_flat()
            && self.share_at(self.max_running()) < PINNED_SHARE
    }
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
    /// and "enable metrics" would send the user in a circle; unless they were one scrape, which measures no
    /// window, so counters it holds cannot be rated.
    pub fn how_server(&self) -> String {
        let Some(server) = &self.evidence.server else {
            return how::METRICS.to_string();
        };
        let dialect = &server.dialect;
        if is_one_scrape(server) {
            format!(
                "one scrape of this server's metrics ({dialect}) measures no window: {}; if it is still missing, \
                 the server does not export it",
                SECOND_SCRAPE
            )
        } else if self.evidence.log.is_some() {
            format!("neither this server's metrics ({dialect}) nor its log report it")
        } else {
            format!(
                "this server's metrics ({dialect}) do not export it; its engine log may ({})",
                how::LOG
            )
        }
    }

    /// How to get one server signal that is missing: said precisely, since the evidence shows whether the
    /// scrape held it (a counter one scrape cannot rate) or not.
    pub fn how_server_for(&self, signal: Signal) -> String {
        match &self.evidence.server {
            Some(server) if is_one_scrape(server) && server.counter(signal).is_some() => format!(
                "one scrape holds the {} counter's total since the server started, not its growth in a window: \
                 {}",
                signal.name(),
                SECOND_SCRAPE
            ),
            Some(server) if is_one_scrape(server) => {
                let dialect = &server.dialect;
                format!(
                    "this server's metrics ({dialect}) do not export {}",
                    signal.name()
                )
            }
            _ => self.how_server(),
        }
    }

    /// A counter's total since the server started, where the metrics are one scrape and so give no window.
    pub fn counter_since_start(&self, signal: Signal) -> Option<f64> {
        let server = self.evidence.server.as_ref().filter(|s| is_one_scrape(s))?;
        finite(server.counter(signal)?.increase)
    }

    /// Preemptions the evidence shows over the window: the counter's increase, else the engine log's count.
    pub fn preemptions_in_window(&self) -> Option<f64> {
        self.counter(Signal::Preemptions)
            .map(|c| c.increase)
            .or_else(|| {
                self.evidence
                    .log
                    .as_ref()
                    .and_then(|l| l.preemptions)
                    .map(|n| n as f64)
            })
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
            Some(log) if log.server == "unknown" => {
                "the log passed is no known engine's log: pass the engine's own log".to_string()
            }
            Some(log) => format!("{}'s log does not print it", log.server),
        }
    }

    pub fn server_window_label(&self) -> String {
        match &self.evidence.server {
            Some(server) if server.no_clock => format!(
                "server metrics, {} scrapes at unknown times",
                server.scrapes
            ),
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
                client.requests.sent,
                client.throughput.held_in_flight()
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
        let from_metrics = self
            .evidence
            .server
            .as_ref()
            .and_then(|s| s.gauge(signal))
            .and_then(|gauge| {
                Some(Level {
                    mean: finite(gauge.mean)?,
                    max: finite(gauge.max)?,
                    window: self.server_window_label(),
                })
            });
        let values: Vec<f64> = self
            .evidence
            .log
            .iter()
            .flat_map(|log| log.stats.iter().filter_map(&from_log))
            .filter(|v| v.is_finite())
            .collect();
        let from_log = (!values.is_empty()).then(|| Level {
            mean: values.iter().sum::<f64>() / values.len() as f64,
            max: values.iter().copied().fold(f64::MIN, f64::max),
            window: format!("engine log, {} stats lines", values.len()),
        });
        // Scrapes over a window describe the run, which the log's lines (the server's whole life, idle hours and
        // earlier loads too) do not: there the metrics speak, but a log that saw more pressure is named beside them,
        // never silently overridden. Scrapes that cannot be placed in time (one scrape, taken after the load ended
        // say, or files without a clock) describe no window: there the source that saw more pressure speaks.
        let unplaced = self
            .evidence
            .server
            .as_ref()
            .is_some_and(|s| s.no_clock || (s.scrapes <= 1 && s.seconds() <= 0.0));
        let rounded = |v: f64| (v * 1000.0).round() / 1000.0;
        match (from_metrics, from_log) {
            (Some(metrics), Some(log)) if log.max > metrics.max && unplaced => {
                let scrapes = match self.evidence.server.as_ref().map_or(1, |s| s.scrapes) {
                    1 => "the one scrape of server metrics read".to_string(),
                    n => {
                        format!("the {n} scrapes of server metrics, at unknown times, read at most")
                    }
                };
                Some(Level {
                    window: format!("{} ({scrapes} {})", log.window, rounded(metrics.max)),
                    ..log
                })
            }
            (Some(metrics), Some(log)) if log.max > metrics.max => Some(Level {
                window: format!(
                    "{}; the engine log's {} reached {}, outside or between these scrapes",
                    metrics.window,
                    log.window.trim_start_matches("engine log, "),
                    rounded(log.max)
                ),
                ..metrics
            }),
            (Some(metrics), _) => Some(metrics),
            (None, log) => log,
        }
    }

    pub fn waiting(&self) -> Option<Level> {
        self.level(Signal::RequestsWaiting, |s| s.waiting.map(|w| w as f64))
    }

    pub fn running(&self) -> Option<Level> {
        self.level(Signal::RequestsRunning, |s| s.running.map(|r| r as f64))
    }

    /// 0–1: a server's own hit-rate gauge, else the log's stats lines.
    pub fn prefix_cache_hit_rate(&self) -> Option<Level> {
        self.level(Signal::PrefixCacheHitRate, |s| s.prefix_cache_hit_rate)
    }

    pub fn kv_usage(&self) -> Option<Level> {
        self.level(Signal::KvUsage, |s| s.kv_usage)
    }

    /// The log's stats lines with a queue, when the running count comes from the log (the server's metrics,
    /// where given, have no timeline of it); `None` with too few such lines to show a trend.
    pub fn queued_log_stats(&self, t: &crate::Thresholds) -> Option<QueuedStats> {
        let from_metrics = self
            .evidence
            .server
            .as_ref()
            .is_some_and(|s| s.gauge(Signal::RequestsRunning).is_some());
        if from_metrics {
            return None;
        }
        let queued: Vec<&infer_doctor_core::LogStats> = self
            .evidence
            .log
            .as_ref()?
            .stats
            .iter()
            .filter(|s| {
                s.running.is_some()
                    && s.waiting
                        .is_some_and(|w| w as f64 > t.waiting_mean_nonempty)
            })
            .collect();
        if queued.len() < MIN_QUEUED_LINES {
            return None;
        }
        let prompts: Vec<f64> = queued
            .iter()
            .filter_map(|s| s.prompt_throughput)
            .filter(|v| v.is_finite())
            .collect();
        let prompt = (prompts.len() >= MIN_QUEUED_LINES).then(|| {
            let mean = prompts.iter().sum::<f64>() / prompts.len() as f64;
            let variance =
                prompts.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / prompts.len() as f64;
            let spread = if mean > 0.0 {
                variance.sqrt() / mean
            } else {
                f64::INFINITY
            };
            (mean, spread)
        });
        Some(QueuedStats {
            running: queued
                .iter()
                .filter_map(|s| s.running)
                .map(|r| r as f64)
                .collect(),
            waiting_mean: queued.iter().filter_map(|s| s.waiting).sum::<u64>() as f64
                / queued.len() as f64,
            prompt,
            window: format!(
                "engine log, {} stats lines with requests waiting",
                queued.len()
            ),
        })
    }

    /// Requests waiting for KV blocks or a slot (vLLM's `reason="capacity"`): server metrics only.
    pub fn waiting_for_capacity(&self) -> Option<Level> {
        self.level(Signal::RequestsWaitingCapacity, |_| None)
    }

    /// A counter's increase over a window of scrapes. One scrape has no window (its counters are totals since
    /// the server started); several without a clock have an increase but no rate, and a rule that needs the rate
    /// stays silent then.
    pub fn counter(&self, signal: Signal) -> Option<&'a CounterStats> {
        let server = self.evidence.server.as_ref()?;
        server
            .counter(signal)
            .filter(|c| c.increase.is_finite() && (c.rate.is_finite() || server.no_clock))
    }

    pub fn histogram(&self, signal: Signal) -> Option<&'a HistogramStats> {
        self.evidence
            .server
            .as_ref()?
            .histogram(signal)
            .filter(|h| h.count.is_finite() && h.count > 0.0 && h.mean.is_finite())
    }

    /// The engine's cap on requests running at once, and where it was read: vLLM's `max_num_seqs` when its log
    /// shows it was set (its default depends on the GPU, so it is not guessed), llama.cpp's slots, or the max
    /// batch size TensorRT-LLM exports.
    pub fn running_cap(&self) -> Option<RunningCap> {
        let positive = |v: f64| finite(v).filter(|v| *v > 0.0);
        let from_args = self
            .evidence
            .log
            .as_ref()
            .and_then(|log| {
                ["max_num_seqs", "max-num-seqs"]
                    .iter()
                    .find_map(|key| log.non_default_args.get(*key))
                    .and_then(|value| value.trim().parse::<f64>().ok())
                    .and_then(positive)
            })
            .map(|value| (value, "engine log, non-default args"))
            // The gathered settings, where a source stated it (the command line, the engine's config line);
            // a default inferred for the GPU is not the server's word.
            .or_else(|| {
                let setting = self.evidence.config.as_ref()?.max_num_seqs.as_ref()?;
                (setting.source != infer_doctor_core::ConfigSource::LogDefault)
                    .then_some((setting.value as f64, setting.source.describe()))
                    .filter(|(value, _)| *value > 0.0)
            });
        let server = self.evidence.server.as_ref();
        let exported = server
            .and_then(|s| s.gauge(Signal::MaxRunning))
            .and_then(|g| positive(g.max));
        // Each engine exports its cap under its own name.
        let (name, source, beyond) = match server.map(|s| s.dialect.as_str()) {
            Some("triton") => (
                "max batch size",
                "nv_trt_llm_request_metrics{request_type=max}",
                "wait",
            ),
            Some("trtllm_serve") => ("max_batch_size", "trtllm_max_batch_size_runtime", "wait"),
            _ => ("slots", "llama.cpp /props total_slots", "are deferred"),
        };
        // max_num_seqs holds per engine; the metrics add running requests up over data-parallel engines.
        let engines = server.and_then(|s| s.engines).unwrap_or(1);
        from_args
            .map(|(value, source)| RunningCap {
                value: value * f64::from(engines),
                name: if engines > 1 {
                    "max_num_seqs × engines"
                } else {
                    "max_num_seqs"
                },
                source,
                beyond: "wait",
            })
            .or_else(|| {
                exported.map(|value| RunningCap {
                    value,
                    name,
                    source,
                    beyond,
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

/// Metrics read from a single scrape: levels and totals since the server started, no window to rate them over.
fn is_one_scrape(server: &ServerWindow) -> bool {
    server.scrapes <= 1 && server.seconds() <= 0.0
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

/// The GPU indices in `CUDA_VISIBLE_DEVICES` (UUIDs and MIG names cannot be matched to a host's GPUs: `None`),
/// and whether the variable is the server process's own rather than a shell's from a collect-env paste.
pub(crate) fn visible_gpu_indices(
    evidence: &infer_doctor_core::Evidence,
) -> Option<(Vec<u32>, bool)> {
    let environment = evidence.environment.as_ref()?;
    let indices = environment
        .variables
        .get("CUDA_VISIBLE_DEVICES")?
        .split(',')
        .map(|i| i.trim().parse::<u32>().ok())
        .collect::<Option<Vec<_>>>()?;
    Some((indices, environment.server_process))
}

/// Mean running + waiting over a window. Both gauges are needed: a missing queue read as empty would make the
/// server look less busy than it is, and the rules comparing it (Little's law, requests held upstream) wrong.
pub(crate) fn in_system_mean(window: &ServerWindow) -> Option<f64> {
    let mean = |signal| window.gauge(signal).and_then(|g| finite(g.mean));
    Some(mean(Signal::RequestsRunning)? + mean(Signal::RequestsWaiting)?)
}
