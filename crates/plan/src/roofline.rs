//! Latency and throughput of one replica from the step cost alone: a closed loop of users (throughput against
//! concurrency and its knee) and an open load at a rate (the batch and TPOT it settles at), chunked prefill included.

use serde::Serialize;

use crate::cost::Bound;
use crate::{CostModel, StepWork};

/// One replica in a steady state.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct LoadPoint {
    /// Requests decoding at once.
    pub concurrency: f64,
    /// The mean engine step: a token for each decoding request plus the prefill chunks that share it.
    pub step_s: f64,
    /// Time between a request's tokens: a step with the other requests' prefills beside the decodes (a request
    /// alone decodes in pure decode steps; its own prompt is its TTFT).
    pub tpot_s: f64,
    /// Prompt tokens each step prefills beside the decodes.
    pub prefill_tokens_per_step: f64,
    pub output_tokens_per_s: f64,
    pub requests_per_s: f64,
    pub bound: Bound,
    /// The load asks for more than the replica gives: prompts beyond the token budget, or more requests in
    /// flight than it holds. The queue grows; latency has no steady value.
    pub overloaded: bool,
}

/// The request shape and the scheduler's budget.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Shape {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub max_num_batched_tokens: u64,
}

impl Shape {
    /// Prompt tokens a step can take beside `decodes` decoding requests.
    fn prefill_budget(&self, decodes: f64) -> f64 {
        (self.max_num_batched_tokens as f64 - decodes.max(1.0).round()).max(0.0)
    }

    /// Seconds of a step with `decodes` requests at their mean context and `prefill` prompt tokens, as vLLM's
    /// scheduler builds it; and the resource it waits on.
    fn step(&self, cost: &CostModel, decodes: f64, prefill: f64) -> (f64, Bound) {
        let mut work = StepWork::default();
        let whole = decodes.max(1.0).round() as u64;
        let context = self.input_tokens + self.output_tokens / 2;
        for _ in 0..whole {
            work.add_decode(context);
        }
        let chunk = prefill.clamp(0.0, self.prefill_budget(decodes)).round() as u64;
        if chunk > 0 {
            work.add_prefill_chunk(0, chunk);
        }
        (cost.step_seconds(&work), cost.bound(&work))
    }

    /// `requests_per_step` requests finishing (and as many prompts prefilled) a step with `concurrency` decoding.
    fn point(
        &self,
        cost: &CostModel,
        concurrency: f64,
        requests_per_step: f64,
        overloaded: bool,
    ) -> LoadPoint {
        let prefill = requests_per_step * self.input_tokens as f64;
        let (step_s, bound) = self.step(cost, concurrency, prefill);
        let others = (concurrency - 1.0).max(0.0) / concurrency.max(1.0);
        let (tpot_s, _) = self.step(cost, concurrency, prefill * others);
        let requests_per_s = requests_per_step / step_s;
        LoadPoint {
            concurrency,
            step_s,
            tpot_s,
            prefill_tokens_per_step: prefill,
            output_tokens_per_s: requests_per_s * self.output_tokens.max(1) as f64,
            requests_per_s,
            bound,
            overloaded,
        }
    }

    /// `concurrency` users sending back to back: each step decodes their tokens, and the requests that finish
    /// (concurrency / output a step) have their next prompts prefilled, as far as the token budget allows;
    /// beyond it, prefill is the limit and requests finish only as fast as their prompts fit.
    pub fn closed_loop(&self, cost: &CostModel, concurrency: f64) -> LoadPoint {
        let wanted = concurrency / self.output_tokens.max(1) as f64;
        let fits = self.prefill_budget(concurrency) / self.input_tokens.max(1) as f64;
        self.point(cost, concurrency, wanted.min(fits), false)
    }

    /// Requests arriving at `rate` a second: the batch settles where, by Little's law, it equals the rate times
    /// the time a request spends decoding, and each step prefills the prompts arriving meanwhile (fixed point;
    /// capped at `max_concurrency` and the token budget, past which requests queue: `overloaded`).
    pub fn at_rate(&self, cost: &CostModel, rate: f64, max_concurrency: f64) -> LoadPoint {
        let cap = max_concurrency.max(1.0);
        let mut point = self.point(cost, 1.0, 0.0, false);
        for _ in 0..50 {
            let wanted_batch = rate * self.output_tokens as f64 * point.step_s;
            let batch = wanted_batch.clamp(1.0, cap);
            let wanted = rate * point.step_s;
            let fits = self.prefill_budget(batch) / self.input_tokens.max(1) as f64;
            point = self.point(
                cost,
                batch,
                wanted.min(fits),
                wanted > fits || wanted_batch > cap,
            );
        }
        point
    }

    /// Throughput against concurrency, doubling from 1 up to `max_concurrency` (which ends the curve).
    pub fn curve(&self, cost: &CostModel, max_concurrency: f64) -> Vec<LoadPoint> {
        let top = max_concurrency.floor().max(1.0);
        let mut points = Vec::new();
        let mut c = 1.0;
        while c < top {
            points.push(self.closed_loop(cost, c));
            c *= 2.0;
        }
        points.push(self.closed_loop(cost, top));
        points
    }
}

/// The knee: the least concurrency reaching 90 % of the best throughput on the curve, past which more users
/// mostly add latency.
pub fn knee(points: &[LoadPoint]) -> Option<LoadPoint> {
    let best = points
        .iter()
        .map(|p| p.output_tokens_per_s)
        .fold(0.0, f64::max);
    points
        .iter()
        .find(|p| p.output_tokens_per_s >= 0.9 * best)
        .copied()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::llama_8b;
    use crate::{Calibration, Deployment, Gpu};

    fn cost() -> CostModel {
        let gpu = Gpu::by_name("h100").unwrap();
        let model = llama_8b();
        CostModel::new(
            &model,
            &gpu,
            &Deployment::new(&model, &gpu, 1),
            Calibration::default(),
        )
        .unwrap()
    }

    const SHAPE: Shape = Shape {
        input_tokens: 2000,
        output_tokens: 300,
        max_num_batched_tokens: 8192,
    };

    #[test]
    fn decode_is_memory_bound_alone_and_throughput_bends_at_a_knee() {
        let cost = cost();
        assert_eq!(SHAPE.closed_loop(&cost, 1.0).bound, Bound::Memory);
        let curve = SHAPE.curve(&cost, 400.0);
        assert_eq!(curve.last().unwrap().concurrency, 400.0);
        assert!(
            curve.windows(2).all(|w| w[1].step_s > w[0].step_s),
            "{curve:?}"
        );
        // Big batches with their prefills are compute-bound, so throughput flattens (attention over longer
        // contexts even bends it down a little): the knee is well inside.
        assert_eq!(curve.last().unwrap().bound, Bound::Compute);
        let knee = knee(&curve).unwrap();
        assert!(
            knee.concurrency > 1.0 && knee.concurrency < 400.0,
            "{knee:?}"
        );
        let rising: Vec<_> = curve
            .iter()
            .take_while(|p| p.concurrency <= knee.concurrency)
            .collect();
        assert!(
            rising
                .windows(2)
                .all(|w| w[1].output_tokens_per_s > w[0].output_tokens_per_s)
        );
        let best = curve
            .iter()
            .map(|p| p.output_tokens_per_s)
            .fold(0.0, f64::max);
        let beyond = curve.iter().filter(|p| p.concurrency > knee.concurrency);
        assert!(
            beyond.clone().all(|p| p.output_tokens_per_s >= 0.9 * best),
            "{curve:?}"
        );
    }

    #[test]
    fn an_open_load_settles_at_littles_law() {
        let cost = cost();
        // One H100 serves ~12 of these requests a second at most (the curve's plateau); 8 is within.
        let light = SHAPE.at_rate(&cost, 1.0, 1000.0);
        let heavy = SHAPE.at_rate(&cost, 8.0, 1000.0);
        assert!(heavy.concurrency > light.concurrency && heavy.step_s > light.step_s);
        // 8 req/s x 300 tokens x step: the batch Little's law gives; the prompts arriving meanwhile prefill.
        assert!(
            (heavy.concurrency - 8.0 * 300.0 * heavy.step_s).abs() < 1.0,
            "{heavy:?}"
        );
        assert!(
            (heavy.prefill_tokens_per_step - 8.0 * 2000.0 * heavy.step_s).abs() < 1.0,
            "{heavy:?}"
        );
        // Past the plateau the batch runs into its cap (the queue takes the rest) and a step's prefill into the
        // token budget.
        let over = SHAPE.at_rate(&cost, 200.0, 64.0);
        assert_eq!(over.concurrency, 64.0);
        assert_eq!(over.prefill_tokens_per_step, 8192.0 - 64.0);
        assert!(over.overloaded && over.requests_per_s < 200.0);
    }

    #[test]
    fn long_prompts_make_prefill_the_limit_and_a_lone_request_decodes_purely() {
        let cost = cost();
        // 8,000 prompt tokens for 20 output: a step's budget fits about one prompt, so requests finish about one
        // a step whatever the concurrency; without the budget 64 users would finish 3.2 a step.
        let prompt_heavy = Shape {
            input_tokens: 8000,
            output_tokens: 20,
            max_num_batched_tokens: 8192,
        };
        let crowd = prompt_heavy.closed_loop(&cost, 64.0);
        assert!(crowd.prefill_tokens_per_step <= 8192.0 - 64.0, "{crowd:?}");
        let per_step = crowd.requests_per_s * crowd.step_s;
        assert!(
            (per_step - (8192.0 - 64.0) / 8000.0).abs() < 1e-9,
            "{crowd:?}"
        );
        // One user: its decode steps carry no one else's prompt.
        let alone = prompt_heavy.closed_loop(&cost, 1.0);
        let mut decode = StepWork::default();
        decode.add_decode(8010);
        assert_eq!(alone.tpot_s, cost.step_seconds(&decode));
        assert!(alone.step_s > alone.tpot_s);
    }
}
