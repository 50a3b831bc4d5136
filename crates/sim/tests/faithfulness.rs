//! The phenomena a real vLLM server shows (research/sim_capacity.md §C "Acceptance tests"), reproduced by the
//! simulator on its discrete-event clock: if one of these fails, diagnoses made against the simulator lie.

mod common;

use common::sample;
use infer_doctor_plan::StepWork;
use infer_doctor_sim::des::{self, Arrivals, Outcome};
use infer_doctor_sim::engine::{FinishReason, NewRequest};
use infer_doctor_sim::logs;
use infer_doctor_sim::setup::{Built, SimSetup};
use rand::SeedableRng;
use rand_distr::{Distribution, Exp};

fn exact(setup: SimSetup) -> Built {
    SimSetup {
        jitter_sigma: 0.0,
        ..setup
    }
    .build()
    .expect("setup builds")
}

/// Requests with distinct prompts of `prompt` tokens that run to exactly `output` tokens.
fn fixed(prompt: u32, output: u32) -> impl FnMut(u64) -> NewRequest {
    move |id| des::synthetic_request(id, prompt, (0, 1), output, None, 16)
}

fn closed(built: &mut Built, users: u32, requests: u64, prompt: u32, output: u32) -> Outcome {
    des::run(
        &mut built.core,
        &Arrivals::Closed { users, requests },
        fixed(prompt, output),
        0.5,
        f64::INFINITY,
    )
}

fn poisson(rate: f64, count: usize, seed: u64) -> Vec<f64> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let gap = Exp::new(rate).unwrap();
    let mut t = 0.0;
    (0..count)
        .map(|_| {
            t += gap.sample(&mut rng);
            t
        })
        .collect()
}

fn generation_rate(outcome: &Outcome) -> f64 {
    let tokens: u64 = outcome
        .finished
        .iter()
        .map(|f| u64::from(f.generated))
        .sum();
    tokens as f64 / outcome.simulated_seconds
}

#[test]
fn requests_queue_when_the_kv_cache_is_full_not_when_the_batch_is() {
    // About six requests fit in the pool; the batch cap (64) is never what stops admission.
    let mut built = exact(SimSetup {
        num_gpu_blocks_override: Some(300),
        max_model_len: 2048,
        max_num_seqs: Some(64),
        ..SimSetup::default()
    });
    let max_num_seqs = built.scheduler.max_num_seqs;
    let arrivals = Arrivals::Open {
        times: poisson(20.0, 400, 1),
    };
    let outcome = des::run(&mut built.core, &arrivals, fixed(512, 256), 0.1, 1e6);
    let full = outcome
        .series
        .iter()
        .find(|s| s.waiting > 0 && s.kv_usage >= 0.95 && s.running < max_num_seqs);
    assert!(
        full.is_some(),
        "never saturated: {:?}",
        outcome.series.last()
    );
    assert_eq!(outcome.finished.len(), 400);
}

#[test]
fn long_outputs_in_a_tight_pool_are_preempted_and_recomputed() {
    // Without prefix caching, so a resumed request cannot reuse its own freed prompt blocks.
    let mut built = exact(SimSetup {
        num_gpu_blocks_override: Some(400),
        max_model_len: 2048,
        enable_prefix_caching: false,
        ..SimSetup::default()
    });
    let outcome = closed(&mut built, 16, 32, 256, 1500);
    let preempted: Vec<_> = outcome
        .finished
        .iter()
        .filter(|f| f.preemptions > 0)
        .collect();
    assert!(!preempted.is_empty());
    // Recomputation: a preempted request computes more prompt-side tokens than its prompt.
    assert!(
        preempted
            .iter()
            .all(|f| f.prefill_computed > f.prompt_tokens)
    );
    assert!(outcome.series.last().unwrap().preemptions >= preempted.len() as u64);
    assert_eq!(outcome.count(FinishReason::Length), 32);
    let metrics = built.core.metrics.render();
    assert!(sample(&metrics, "vllm:num_preemptions_total") >= preempted.len() as f64);
}

#[test]
fn ttft_at_concurrency_one_grows_linearly_with_the_prompt() {
    let mut ttfts = Vec::new();
    for prompt in [1024, 2048, 4096, 8000] {
        let mut built = exact(SimSetup::default());
        let outcome = closed(&mut built, 1, 1, prompt, 2);
        let t = &outcome.finished[0].times;
        let ttft = t.first_token.unwrap() - t.arrived;
        // One prefill step under the 8192-token budget: exactly what the cost model says for it.
        let mut work = StepWork::default();
        work.add_prefill_chunk(0, u64::from(prompt));
        assert!((ttft / built.core.cost.step_seconds(&work) - 1.0).abs() < 1e-9);
        ttfts.push(ttft);
    }
    for pair in ttfts.windows(2) {
        let ratio = pair[1] / pair[0];
        // Twice the prompt: twice the matmuls plus a little more attention (the quadratic term).
        assert!((1.9..2.3).contains(&ratio), "{ttfts:?}");
    }
}

#[test]
fn itl_grows_with_the_batch_as_the_cost_model_predicts() {
    let mut itls = Vec::new();
    for batch in [1u32, 16, 64, 128] {
        let mut built = exact(SimSetup::default());
        let outcome = closed(&mut built, batch, u64::from(batch), 16, 400);
        let mean_itl: f64 = outcome
            .finished
            .iter()
            .map(|f| {
                let t = &f.times;
                (t.last_token.unwrap() - t.first_token.unwrap()) / f64::from(f.generated - 1)
            })
            .sum::<f64>()
            / f64::from(batch);
        // The predicted decode step at the mean context over the run (prompt + half the output).
        let mut work = StepWork::default();
        for _ in 0..batch {
            work.add_decode(16 + 200);
        }
        let predicted = built.core.cost.step_seconds(&work);
        assert!(
            (mean_itl / predicted - 1.0).abs() < 0.1,
            "batch {batch}: {mean_itl} vs {predicted}"
        );
        itls.push(mean_itl);
    }
    assert!(itls.windows(2).all(|p| p[1] > p[0]), "{itls:?}");
}

#[test]
fn past_the_service_rate_tokens_per_second_plateau_and_the_queue_grows() {
    // A batch cap that the KV cache holds, so the plateau is the step rate's and not preemptions' (1,024
    // sequences of 768 tokens would overflow the ~400k-token cache and thrash).
    let setup = SimSetup {
        max_num_seqs: Some(256),
        ..SimSetup::default()
    };
    let mut saturated = exact(setup.clone());
    let capacity = closed(&mut saturated, 256, 1024, 512, 256);
    let service_rate = capacity.finished.len() as f64 / capacity.simulated_seconds;
    let mut built = exact(setup);
    let arrivals = Arrivals::Open {
        times: poisson(2.0 * service_rate, 3000, 2),
    };
    let outcome = des::run(&mut built.core, &arrivals, fixed(512, 256), 1.0, 1e6);
    let arrivals_end = match &arrivals {
        Arrivals::Open { times } => *times.last().unwrap(),
        Arrivals::Closed { .. } => unreachable!(),
    };
    let at = |t: f64| outcome.series.iter().find(|s| s.t >= t).unwrap();
    let (third, two_thirds) = (at(arrivals_end / 3.0), at(2.0 * arrivals_end / 3.0));
    assert!(
        two_thirds.waiting > third.waiting + 100,
        "{third:?} {two_thirds:?}"
    );
    let rate = |a: &des::Sample, b: &des::Sample| {
        (b.generation_tokens - a.generation_tokens) as f64 / (b.t - a.t)
    };
    let overloaded = rate(third, two_thirds);
    let ceiling = generation_rate(&capacity);
    assert!(
        (overloaded / ceiling - 1.0).abs() < 0.15,
        "{overloaded} vs {ceiling}"
    );
}

#[test]
fn when_kv_bound_tokens_per_second_fall_as_context_grows() {
    let mut rates = Vec::new();
    for prompt in [512, 7680] {
        let mut built = exact(SimSetup {
            max_num_seqs: Some(1024),
            ..SimSetup::default()
        });
        let outcome = closed(&mut built, 600, 600, prompt, 512);
        rates.push(generation_rate(&outcome));
    }
    // 1k vs 8k context: the KV pool holds about 8× fewer sequences, each step costs about the same.
    assert!(rates[0] / rates[1] > 4.0, "{rates:?}");
}

#[test]
fn littles_law_holds_on_the_emitted_metrics() {
    let mut built = exact(SimSetup::default());
    let arrivals = Arrivals::Open {
        times: poisson(8.0, 2000, 3),
    };
    let requests = move |id| NewRequest {
        stop_after: Some(50 + (id % 7) as u32 * 40),
        ..fixed(512, 1000)(id)
    };
    let outcome = des::run(&mut built.core, &arrivals, requests, 0.05, 1e6);
    let metrics = built.core.metrics.render();
    let completed = sample(&metrics, "vllm:e2e_request_latency_seconds_count");
    let mean_e2e = sample(&metrics, "vllm:e2e_request_latency_seconds_sum") / completed;
    let throughput = completed / outcome.simulated_seconds;
    let in_system = outcome
        .series
        .iter()
        .map(|s| f64::from(s.running + s.waiting))
        .sum::<f64>()
        / outcome.series.len() as f64;
    assert_eq!(completed, 2000.0);
    assert!(
        (in_system / (throughput * mean_e2e) - 1.0).abs() < 0.05,
        "L {in_system} vs λW {}",
        throughput * mean_e2e
    );
    assert_eq!(outcome.count(FinishReason::Stop), 2000);
}

#[test]
fn the_startup_concurrency_line_is_vllms_formula() {
    for (setup, max_model_len) in [
        (SimSetup::default(), 8192u32),
        (
            SimSetup {
                model: "tiny".into(),
                gpu: "l4".into(),
                max_model_len: 2048,
                num_gpu_blocks_override: Some(16_384),
                ..SimSetup::default()
            },
            2048,
        ),
    ] {
        let built = exact(setup);
        let blocks = built.scheduler.num_gpu_blocks;
        let expected = f64::from(blocks) / f64::from(max_model_len.div_ceil(16));
        let line = logs::kv_cache_size(
            built.plan.kv.tokens(),
            max_model_len,
            built.plan.max_concurrency(),
        )
        .message;
        assert!(
            line.ends_with(&format!("per request: {expected:.2}x")),
            "{line}"
        );
    }
}

#[test]
fn a_request_that_can_never_fit_ends_the_run_instead_of_spinning() {
    let mut built = exact(SimSetup {
        num_gpu_blocks_override: Some(200),
        max_model_len: 2048,
        ..SimSetup::default()
    });
    // 4000 tokens need 250 blocks: more than the pool, so it can never be admitted.
    let outcome = closed(&mut built, 1, 1, 4000, 4);
    assert!(outcome.finished.is_empty());
    assert_eq!(outcome.series.last().unwrap().waiting, 1);
}
