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
    /// One engine step: a token for each decoding request plus the prefill chunks that share it.
    pub step_s: f64,
    /// Prompt tokens each step prefills beside the decodes.
    pub prefill_tokens_per_step: f64,
    pub output_tokens_per_s: f64,
    pub requests_per_s: f64,
    pub bound: Bound,
}

/// The request shape and the scheduler's budget.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Shape {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub max_num_batched_tokens: u64,
}

impl Shape {
    /// A step with `decodes` requests at their mean context and `prefill` prompt tokens (at most the budget
    /// left beside the decodes), as vLLM's scheduler builds it.
    fn step(&self, decodes: f64, prefill: f64) -> (StepWork, u64) {
        let mut work = StepWork::default();
        let whole = decodes.max(1.0).round() as u64;
        let context = self.input_tokens + self.output_tokens / 2;
        for _ in 0..whole {
            work.add_decode(context);
        }
        let budget = self.max_num_batched_tokens.saturating_sub(whole) as f64;
        let chunk = prefill.clamp(0.0, budget).round() as u64;
        if chunk > 0 {
            work.add_prefill_chunk(0, chunk);
        }
        (work, chunk)
    }

    fn point(&self, cost: &CostModel, concurrency: f64, prefill: f64) -> LoadPoint {
        let (work, chunk) = self.step(concurrency, prefill);
        let step_s = cost.step_seconds(&work);
        let output_tokens_per_s = concurrency.max(1.0) / step_s;
        LoadPoint {
            concurrency,
            step_s,
            prefill_tokens_per_step: chunk as f64,
            output_tokens_per_s,
            requests_per_s: output_tokens_per_s / self.output_tokens.max(1) as f64,
            bound: cost.bound(&work),
        }
    }

    /// `concurrency` users sending back to back: each step decodes their tokens and prefills, on average, the
    /// prompts of the requests that finished (concurrency × input / output tokens a step).
    pub fn closed_loop(&self, cost: &CostModel, concurrency: f64) -> LoadPoint {
        let prefill = concurrency * self.input_tokens as f64 / self.output_tokens.max(1) as f64;
        self.point(cost, concurrency, prefill)
    }

    /// Requests arriving at `rate` a second: the batch settles where, by Little's law, it equals the rate times
    /// the steps a request spends decoding, and each step prefills the prompts arriving meanwhile (fixed point;
    /// capped at `max_concurrency`, past which requests queue).
    pub fn at_rate(&self, cost: &CostModel, rate: f64, max_concurrency: f64) -> LoadPoint {
        let mut point = self.point(cost, 1.0, 0.0);
        for _ in 0..50 {
            let batch = (rate * self.output_tokens as f64 * point.step_s)
                .clamp(1.0, max_concurrency.max(1.0));
            let prefill = rate * self.input_tokens as f64 * point.step_s;
            point = self.point(cost, batch, prefill);
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
    }
}
