//! One simulated server, clock-agnostic: the engine, its step cost, its metrics and its faults, advanced by
//! whoever owns time (the real-time HTTP server or the discrete-event runner), so both clocks share one model.

use rand::SeedableRng;
use rand::rngs::StdRng;

use crate::engine::{Emitted, Engine, Finished, NewRequest, Step};
use crate::logs::{LogRecord, StatsWindow};
use crate::metrics::{self, KvTransfer, RequestTiming, StepStats, VllmMetrics};
use infer_doctor_plan::CostModel;

/// A token as a client would see it, with the times the metrics and the trace need.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenOut {
    pub id: u64,
    /// 1 for the first token.
    pub index: u32,
    pub at: f64,
    /// Requests in the forward pass that computed it: what batch-variant kernels make an output depend on.
    pub batch: u32,
    pub finished: Option<Finished>,
}

/// Running totals for the periodic stats log line.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Throughput {
    pub prompt_tokens: u64,
    pub generation_tokens: u64,
    pub preemptions: u64,
}

pub struct SimCore {
    pub engine: Engine,
    pub cost: CostModel,
    pub metrics: VllmMetrics,
    rng: StdRng,
    /// Multiplies every step's duration, given the uptime and the tokens generated so far: > 1 while "cold"
    /// (compiling, capturing graphs) or as traffic wears the server down.
    pub slowdown: Box<dyn FnMut(f64, u64) -> f64 + Send>,
    totals: Throughput,
    steps: u64,
    stats: StatsWindow,
}

impl SimCore {
    pub fn new(engine: Engine, cost: CostModel, metrics: VllmMetrics, seed: u64) -> SimCore {
        SimCore {
            engine,
            cost,
            metrics,
            rng: StdRng::seed_from_u64(seed),
            slowdown: Box::new(|_, _| 1.0),
            totals: Throughput::default(),
            steps: 0,
            stats: StatsWindow::new(0, 0.0),
        }
    }

    pub fn add(&mut self, request: NewRequest, now: f64) {
        self.engine.add(request, now);
        self.publish_state();
    }

    /// A request arriving at a decode replica with its prompt's KV pulled from a prefill replica.
    pub fn add_transferred(&mut self, request: NewRequest, now: f64, transfer: &KvTransfer) {
        let remote = if transfer.failed {
            0
        } else {
            request.prompt_tokens
        };
        self.metrics.observe_kv_transfer(transfer);
        self.engine.add_with_remote_kv(request, now, remote);
        self.publish_state();
    }

    pub fn abort(&mut self, id: u64, now: f64) -> Option<Finished> {
        let done = self.engine.abort(id, now);
        if let Some(done) = &done {
            self.metrics.observe_finished(&finished_for_metrics(done));
        }
        self.publish_state();
        done
    }

    pub fn has_work(&self) -> bool {
        self.engine.has_work()
    }

    /// Schedules the next batch at `now`; returns it and how long its forward pass takes, or `None` when there
    /// is nothing the engine can run now.
    pub fn begin_step(&mut self, now: f64) -> Option<(Step, f64)> {
        if !self.engine.has_work() {
            return None;
        }
        let step = self.engine.schedule(now);
        if step.scheduled.is_empty() && step.preempted.is_empty() {
            return None;
        }
        let base = self.cost.step_seconds(&step.work)
            * (self.slowdown)(now, self.totals.generation_tokens);
        let seconds = self.cost.jitter(base, &mut self.rng);
        self.totals.preemptions += step.preempted.len() as u64;
        self.steps += 1;
        Some((step, seconds))
    }

    /// Applies a finished forward pass at `now`: tokens out, metrics in.
    pub fn end_step(&mut self, step: &Step, now: f64) -> Vec<TokenOut> {
        let emitted = self.engine.complete(step, now);
        let mut out = Vec::with_capacity(emitted.len());
        let batch = step.scheduled.len() as u32;
        for Emitted {
            id,
            index,
            since_previous,
            prompt_tokens,
            cached_prompt_tokens,
            finished,
        } in emitted
        {
            self.totals.generation_tokens += 1;
            if index == 1 {
                self.totals.prompt_tokens += u64::from(prompt_tokens);
                self.metrics.observe_first_token(
                    since_previous,
                    prompt_tokens,
                    cached_prompt_tokens,
                );
            } else {
                self.metrics.observe_later_token(since_previous);
            }
            if let Some(done) = &finished {
                self.metrics.observe_finished(&finished_for_metrics(done));
            }
            out.push(TokenOut {
                id,
                index,
                at: now,
                batch,
                finished,
            });
        }
        let stats = StepStats {
            computed_prefill_tokens: step.work.prefill_tokens,
            preemptions: step.preempted.len() as u64,
            prefix_cache_requests: step.prefix_requests,
            prefix_cache_queries: step.prefix_queries,
            prefix_cache_hits: step.prefix_hits,
        };
        self.metrics.observe_step(&stats);
        self.stats.record_step(&stats, out.len() as u64);
        self.publish_state();
        out
    }

    fn publish_state(&mut self) {
        self.metrics.set_state(
            u64::from(self.engine.running()),
            u64::from(self.engine.waiting()),
            0,
            self.engine.kv_usage(),
        );
    }

    /// Totals since start, for throughput over a logging interval.
    pub fn totals(&self) -> Throughput {
        self.totals
    }

    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// Closes a stats interval at `now`: vLLM's periodic "Engine 000: Avg prompt throughput ..." line, or
    /// `None` when the server was idle through this and the previous interval (vLLM logs nothing then).
    pub fn stats_line(&mut self, now: f64) -> Option<LogRecord> {
        self.stats.take(
            now,
            u64::from(self.engine.running()),
            u64::from(self.engine.waiting()),
            0,
            self.engine.kv_usage(),
        )
    }
}

fn finished_for_metrics(done: &Finished) -> metrics::FinishedRequest {
    let t = &done.times;
    let end = t.last_token.unwrap_or(t.arrived);
    let timing = match (t.scheduled, t.first_token) {
        (None, _) => RequestTiming::NeverScheduled,
        (Some(scheduled), None) => RequestTiming::Scheduled {
            queue_s: scheduled - t.arrived,
        },
        (Some(scheduled), Some(first)) => RequestTiming::Completed {
            queue_s: scheduled - t.arrived,
            prefill_s: first - scheduled,
            decode_s: end - first,
            inference_s: end - scheduled,
        },
    };
    metrics::FinishedRequest {
        reason: done.reason,
        prompt_tokens: done.prompt_tokens,
        generation_tokens: done.generated,
        max_tokens: done.max_tokens,
        n: 1,
        e2e_s: end - t.arrived,
        timing,
        preemptions: done.preemptions,
        cached_prompt_tokens: done.cached_prompt_tokens,
    }
}
