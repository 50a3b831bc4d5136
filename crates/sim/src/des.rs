//! The discrete-event clock: feeds a workload to a `SimCore` and jumps from step to step without sleeping, so
//! what-if questions and faithfulness tests run as fast as the CPU allows and give every request's timings.

use crate::core::SimCore;
use crate::engine::{FinishReason, Finished, NewRequest};

/// How requests arrive.
#[derive(Clone, Debug, PartialEq)]
pub enum Arrivals {
    /// `users` clients, each sending its next request the moment the previous one finishes.
    Closed { users: u32, requests: u64 },
    /// Requests at these times (seconds, ascending), whatever the server does.
    Open { times: Vec<f64> },
}

/// The server's state at one moment, as a scrape would see it.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Sample {
    pub t: f64,
    pub running: u32,
    pub waiting: u32,
    pub kv_usage: f64,
    pub prompt_tokens: u64,
    pub generation_tokens: u64,
    pub preemptions: u64,
    pub finished: u64,
}

#[derive(Clone, Debug, Default)]
pub struct Outcome {
    /// Every token's time per request, when asked for (as a client would have seen them).
    pub token_times: std::collections::HashMap<u64, Vec<f64>>,
    /// Every request that left the engine, in finishing order.
    pub finished: Vec<Finished>,
    /// Sampled every `sample_every` seconds of simulated time, plus once at the end.
    pub series: Vec<Sample>,
    pub steps: u64,
    pub simulated_seconds: f64,
}

impl Outcome {
    pub fn count(&self, reason: FinishReason) -> usize {
        self.finished.iter().filter(|f| f.reason == reason).count()
    }
}

/// Runs `arrivals` to completion (or until `horizon` simulated seconds, which also bounds the samples kept);
/// `request(i)` makes the i-th request.
pub fn run(
    core: &mut SimCore,
    arrivals: &Arrivals,
    request: impl FnMut(u64) -> NewRequest,
    sample_every: f64,
    horizon: f64,
) -> Outcome {
    run_observed(
        core,
        arrivals,
        request,
        sample_every,
        horizon,
        false,
        |_, _| {},
    )
}

/// [`run`], also handing the server to `observe` at every sampling time (to scrape its `/metrics`, say), and
/// keeping every token's time when `keep_token_times`.
pub fn run_observed(
    core: &mut SimCore,
    arrivals: &Arrivals,
    mut request: impl FnMut(u64) -> NewRequest,
    sample_every: f64,
    horizon: f64,
    keep_token_times: bool,
    mut observe: impl FnMut(f64, &SimCore),
) -> Outcome {
    let mut out = Outcome::default();
    let (mut sent, total) = match arrivals {
        Arrivals::Closed { users, requests } => {
            let first = u64::from(*users).min(*requests);
            for i in 0..first {
                core.add(request(i), 0.0);
            }
            (first, *requests)
        }
        Arrivals::Open { times } => (0, times.len() as u64),
    };
    let open_times: &[f64] = match arrivals {
        Arrivals::Open { times } => times,
        Arrivals::Closed { .. } => &[],
    };
    let mut now = 0.0;
    let mut next_sample = 0.0;
    loop {
        while (sent as usize) < open_times.len() && open_times[sent as usize] <= now {
            core.add(request(sent), open_times[sent as usize]);
            sent += 1;
        }
        // Idle, or only waiting requests that cannot run: only the next arrival (none, in a closed loop) can
        // change that.
        let step = if core.has_work() {
            core.begin_step(now)
        } else {
            None
        };
        let Some((step, seconds)) = step else {
            match open_times.get(sent as usize) {
                Some(&t) if t <= horizon => {
                    sample_until(
                        core,
                        &mut out,
                        &mut next_sample,
                        t.min(horizon),
                        sample_every,
                        &mut observe,
                    );
                    now = t;
                    continue;
                }
                _ => break,
            }
        };
        let end = now + seconds;
        // Arrivals during the forward pass join the queue at their own time, for the next schedule.
        while (sent as usize) < open_times.len() && open_times[sent as usize] <= end {
            core.add(request(sent), open_times[sent as usize]);
            sent += 1;
        }
        // The state during the step is the state sampled at times it spans, up to the horizon: one step of a
        // badly slowed engine can span years, and a sample per second of them would fill the memory.
        sample_until(
            core,
            &mut out,
            &mut next_sample,
            end.min(horizon),
            sample_every,
            &mut observe,
        );
        for token in core.end_step(&step, end) {
            if keep_token_times {
                out.token_times.entry(token.id).or_default().push(token.at);
            }
            if let Some(done) = token.finished {
                out.finished.push(done);
                if matches!(arrivals, Arrivals::Closed { .. }) && sent < total {
                    core.add(request(sent), end);
                    sent += 1;
                }
            }
        }
        now = end;
        if now > horizon {
            break;
        }
    }
    out.series.push(sample(core, now, out.finished.len()));
    out.steps = core.steps();
    out.simulated_seconds = now;
    out
}

/// Samples the current state at every sampling time before `until`.
fn sample_until(
    core: &SimCore,
    out: &mut Outcome,
    next: &mut f64,
    until: f64,
    every: f64,
    observe: &mut impl FnMut(f64, &SimCore),
) {
    while *next < until {
        out.series.push(sample(core, *next, out.finished.len()));
        observe(*next, core);
        *next += every;
    }
}

fn sample(core: &SimCore, t: f64, finished: usize) -> Sample {
    let totals = core.totals();
    Sample {
        t,
        running: core.engine.running(),
        waiting: core.engine.waiting(),
        kv_usage: core.engine.kv_usage(),
        prompt_tokens: totals.prompt_tokens,
        generation_tokens: totals.generation_tokens,
        preemptions: totals.preemptions,
        finished: finished as u64,
    }
}

/// A synthetic request of `prompt` tokens whose first `prefix` tokens are shared by every request of its group
/// (`id % groups`), so prefix caching sees what real shared system prompts give it.
pub fn synthetic_request(
    id: u64,
    prompt: u32,
    (prefix, groups): (u32, u32),
    max_tokens: u32,
    stop_after: Option<u32>,
    block_size: u32,
) -> NewRequest {
    NewRequest {
        id,
        prompt_tokens: prompt,
        block_hashes: crate::text::synthetic_block_hashes(
            id % u64::from(groups.max(1)),
            id,
            prompt,
            prefix,
            block_size,
        ),
        max_tokens,
        stop_after,
        min_tokens: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::setup::SimSetup;

    /// Issue 11: `sim run` with an extreme fault (a step a trillion times slower) kept one sample per simulated
    /// second of a step that lasts for millennia, until memory ran out. The horizon bounds the samples.
    #[test]
    fn an_extremely_slow_step_keeps_no_more_samples_than_the_horizon_allows() {
        let setup = SimSetup {
            throttle: 1e12,
            ..SimSetup::default()
        };
        let mut built = setup.build().unwrap();
        let block_size = built.scheduler.block_size;
        let mut scrapes = 0;
        let outcome = run_observed(
            &mut built.core,
            &Arrivals::Closed {
                users: 2,
                requests: 4,
            },
            |id| synthetic_request(id, 64, (0, 1), 8, None, block_size),
            0.5,
            120.0,
            false,
            |_, _| scrapes += 1,
        );
        assert!(
            outcome.simulated_seconds > 120.0,
            "{}",
            outcome.simulated_seconds
        );
        assert!(outcome.finished.is_empty());
        // One sample per half second up to the horizon, and the last state.
        assert_eq!(outcome.series.len(), 241);
        assert_eq!(scrapes, 240);
    }
}
