//! The deployments worth comparing for a load and an SLO: tensor-parallel sizes, FP8 weights and KV, each with
//! vLLM's memory, the roofline's latency at that load, the replicas the rate needs and what a token costs.

use serde::Serialize;

use crate::roofline::{LoadPoint, Shape};
use crate::{
    CacheConfig, Calibration, CostModel, Deployment, Dtype, Gpu, HardwareError, MemoryPlan,
    ModelShape, Quantization, StepWork,
};

/// The traffic a deployment must serve.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Workload {
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Requests per second over all replicas.
    pub rate: f64,
}

/// Latency targets at the 95th percentile.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Slo {
    pub ttft_p95_s: f64,
    pub tpot_p95_s: f64,
}

/// One way to serve the model, with what vLLM and the roofline say of it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DeploymentOption {
    pub deployment: Deployment,
    pub memory: MemoryPlan,
    /// Requests one replica holds at once: the scheduler cap, or the KV cache at the workload's mean length.
    pub max_concurrency: f64,
    /// The largest batch whose decode step still meets the TPOT target.
    pub batch_at_slo: f64,
    /// Requests per second one replica serves within the SLO (Little: batch / time in system).
    pub replica_rate: f64,
    /// 0 when one request alone already misses the TPOT target.
    pub replicas: u32,
    pub gpus: u32,
    /// From the roofline: the prompt's prefill alone (no queue), and a step at the batch the planned per-replica
    /// rate settles at, prefill chunks included.
    pub predicted_ttft_s: f64,
    pub predicted_tpot_s: f64,
    /// Throughput against concurrency on one replica, up to the most it holds.
    pub curve: Vec<LoadPoint>,
    /// With `--gpu-hour-price`: dollars per million output tokens at the planned rate.
    pub cost_per_million_output_tokens: Option<f64>,
}

impl DeploymentOption {
    /// Serves the workload with `replicas` replicas: GPUs, the cost and the per-replica latency follow.
    pub fn set_replicas(&mut self, replicas: u32, workload: &Workload, search: &Search) {
        self.replicas = replicas.max(1);
        self.gpus = self.replicas.saturating_mul(self.deployment.gpus());
        self.cost_per_million_output_tokens = search
            .gpu_hour_price
            .filter(|_| self.gpus > 0)
            .map(|price| cost_per_million(self.gpus, price, workload));
    }

    /// The weights' format as a table shows it.
    pub fn weights_label(&self) -> String {
        match &self.deployment.quantization {
            Some(q) => q.method.to_owned(),
            None => self.deployment.weight_dtype.to_string(),
        }
    }
}

/// The choices `plan` compares.
#[derive(Clone, Debug, PartialEq)]
pub struct Search {
    /// GPUs one replica may span (one node's worth).
    pub max_gpus_per_replica: u32,
    pub gpu_hour_price: Option<f64>,
    /// Spare capacity kept above the rate, as llm-d-planner's 20 %.
    pub headroom: f64,
    pub cache: CacheConfig,
}

impl Default for Search {
    fn default() -> Self {
        Search {
            max_gpus_per_replica: 8,
            gpu_hour_price: None,
            headroom: 0.2,
            cache: CacheConfig::default(),
        }
    }
}

/// Every option that fits: TP 1, 2, 4, 8 and TP 8 × PP 2, 4 (up to `max_gpus_per_replica`, TP dividing the
/// heads), with the checkpoint's weights and, on an FP8-capable GPU, FP8 weights and FP8 KV. An option that
/// cannot hold the model or one request of `max_model_len` is left out with the reason.
pub fn enumerate(
    model: &ModelShape,
    gpu: &Gpu,
    workload: &Workload,
    slo: &Slo,
    search: &Search,
) -> (Vec<DeploymentOption>, Vec<(String, HardwareError)>) {
    let mut options = Vec::new();
    let mut rejected = Vec::new();
    let fp8 = gpu.fp8_flops.is_some();
    // Tensor parallelism within a node first; pipeline stages (of 8-way TP) only where one node's GPUs are
    // allowed more than 8.
    let layouts = [1u32, 2, 4, 8]
        .map(|tp| (tp, 1u32))
        .into_iter()
        .chain([2u32, 4].map(|pp| (8, pp)));
    for (tp, pp) in layouts {
        if tp.saturating_mul(pp) > search.max_gpus_per_replica
            || !model.num_attention_heads.is_multiple_of(u64::from(tp))
        {
            continue;
        }
        let mut base = Deployment::new(model, gpu, tp);
        base.pipeline_parallel = pp;
        let mut variants = vec![base];
        if fp8 {
            let mut fp8_kv = base;
            fp8_kv.kv_cache_dtype = Dtype::Fp8;
            variants.push(fp8_kv);
            if base.quantization.is_none() {
                let mut fp8_all = fp8_kv;
                fp8_all.quantize(Some(Quantization::online_fp8()));
                variants.push(fp8_all);
            }
        }
        for deployment in variants {
            let label = format!(
                "TP {tp}{}, {} weights, {} KV",
                if pp > 1 {
                    format!(" x PP {pp}")
                } else {
                    String::new()
                },
                deployment
                    .quantization
                    .map_or(deployment.weight_dtype.to_string(), |q| q.method.to_owned()),
                deployment.kv_cache_dtype
            );
            match evaluate(model, gpu, deployment, workload, slo, search) {
                Ok(option) => options.push(option),
                Err(error) => rejected.push((label, error)),
            }
        }
    }
    (options, rejected)
}

/// One option's numbers.
pub fn evaluate(
    model: &ModelShape,
    gpu: &Gpu,
    deployment: Deployment,
    workload: &Workload,
    slo: &Slo,
    search: &Search,
) -> Result<DeploymentOption, HardwareError> {
    let memory = MemoryPlan::compute(model, gpu, &deployment, &search.cache)?;
    let cost = CostModel::new(model, gpu, &deployment, Calibration::default())?;
    let (isl, osl) = (workload.input_tokens, workload.output_tokens.max(1));
    // A request holds its prompt and, on average, half its output in the cache.
    let mean_tokens = isl as f64 + osl as f64 / 2.0;
    let max_concurrency =
        (memory.kv.tokens() as f64 / mean_tokens).min(memory.limits.max_num_seqs as f64);
    let shape = Shape {
        input_tokens: isl,
        output_tokens: osl,
        max_num_batched_tokens: memory.limits.max_num_batched_tokens,
    };
    let prefill = {
        let mut work = StepWork::default();
        work.add_prefill_chunk(0, isl);
        cost.step_seconds(&work)
    };
    let batch_at_slo = largest_batch(max_concurrency, |b| {
        shape.closed_loop(&cost, b).tpot_s <= slo.tpot_p95_s
    });
    let replica_rate = if batch_at_slo > 0.0 {
        shape.closed_loop(&cost, batch_at_slo).requests_per_s
    } else {
        0.0
    };
    // 0 when not even one request alone decodes within the TPOT target: no number of replicas helps.
    let replicas = if replica_rate > 0.0 {
        (workload.rate * (1.0 + search.headroom) / replica_rate)
            .ceil()
            .clamp(1.0, f64::from(u32::MAX)) as u32
    } else {
        0
    };
    let at_load = shape.at_rate(
        &cost,
        workload.rate / f64::from(replicas.max(1)),
        max_concurrency,
    );
    let gpus = replicas.saturating_mul(deployment.gpus());
    Ok(DeploymentOption {
        deployment,
        memory,
        max_concurrency,
        batch_at_slo,
        replica_rate,
        replicas,
        gpus,
        predicted_ttft_s: prefill,
        predicted_tpot_s: at_load.tpot_s,
        curve: shape.curve(&cost, max_concurrency),
        cost_per_million_output_tokens: search
            .gpu_hour_price
            .filter(|_| gpus > 0)
            .map(|price| cost_per_million(gpus, price, workload)),
    })
}

/// Dollars per million output tokens: the GPUs' hourly price over the tokens an hour at the planned rate.
fn cost_per_million(gpus: u32, gpu_hour_price: f64, workload: &Workload) -> f64 {
    let output_tokens_per_hour = workload.rate * workload.output_tokens.max(1) as f64 * 3600.0;
    f64::from(gpus) * gpu_hour_price / output_tokens_per_hour * 1e6
}

/// The largest whole batch in [1, limit] that `fits` (a decode step grows with the batch), 0 when not even one.
fn largest_batch(limit: f64, fits: impl Fn(f64) -> bool) -> f64 {
    let (mut low, mut high) = (0u64, limit.floor().max(0.0) as u64);
    while low < high {
        let mid = (low + high).div_ceil(2);
        if fits(mid as f64) {
            low = mid;
        } else {
            high = mid - 1;
        }
    }
    low as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::llama_8b;

    fn workload(rate: f64) -> Workload {
        Workload {
            input_tokens: 2000,
            output_tokens: 300,
            rate,
        }
    }

    const SLO: Slo = Slo {
        ttft_p95_s: 1.0,
        tpot_p95_s: 0.05,
    };

    #[test]
    fn h100_options_span_tp_and_fp8_and_replicas_follow_the_rate() {
        let gpu = Gpu::by_name("h100").unwrap();
        let (options, rejected) =
            enumerate(&llama_8b(), &gpu, &workload(20.0), &SLO, &Search::default());
        // TP 1, 2, 4, 8 x (bf16, bf16 + FP8 KV, FP8 + FP8 KV).
        assert_eq!(options.len(), 12, "{rejected:?}");
        let tp1 = &options[0];
        assert_eq!(
            (tp1.deployment.tensor_parallel, tp1.weights_label()),
            (1, "bfloat16".to_owned())
        );
        // FP8 KV halves bytes per token: about twice the tokens.
        let ratio = options[1].memory.kv.tokens() as f64 / tp1.memory.kv.tokens() as f64;
        assert!((1.95..2.05).contains(&ratio), "{ratio}");
        assert!(tp1.predicted_tpot_s <= SLO.tpot_p95_s && tp1.batch_at_slo >= 1.0);
        let more = evaluate(
            &llama_8b(),
            &gpu,
            tp1.deployment,
            &workload(200.0),
            &SLO,
            &Search::default(),
        )
        .unwrap();
        assert!(
            more.replicas > tp1.replicas,
            "{} vs {}",
            more.replicas,
            tp1.replicas
        );
        assert!(f64::from(more.replicas) * more.replica_rate >= 200.0);
    }

    #[test]
    fn past_one_node_pipeline_stages_hold_what_tensor_parallelism_cannot() {
        let model = ModelShape::by_name("deepseek-v3").unwrap();
        let gpu = Gpu::by_name("h100").unwrap();
        let search = Search {
            max_gpus_per_replica: 16,
            ..Search::default()
        };
        let (options, rejected) = enumerate(&model, &gpu, &workload(2.0), &SLO, &search);
        // 671 GB of FP8 weights: 84 GB a GPU at TP 8 is too much for an H100; 8 x 2 stages hold it.
        assert!(rejected.iter().any(|(label, _)| label.starts_with("TP 8,")));
        assert!(!options.is_empty());
        assert!(
            options
                .iter()
                .all(|o| o.deployment.pipeline_parallel == 2 && o.gpus % 16 == 0),
            "{options:?}"
        );
    }

    #[test]
    fn a_model_too_big_for_one_gpu_is_rejected_with_the_reason() {
        let model = ModelShape::by_name("llama-3.1-70b").unwrap();
        let gpu = Gpu::by_name("a100").unwrap();
        let search = Search {
            gpu_hour_price: Some(2.0),
            ..Search::default()
        };
        let (options, rejected) = enumerate(&model, &gpu, &workload(5.0), &SLO, &search);
        assert!(rejected.iter().any(|(label, e)| label.starts_with("TP 1")
            && matches!(e, HardwareError::ModelDoesNotFit { .. })));
        // A100 has no FP8: only the 16-bit option at each size that fits.
        assert!(
            options
                .iter()
                .all(|o| o.deployment.kv_cache_dtype == Dtype::Bfloat16)
        );
        assert!(options.iter().all(|o| o.deployment.tensor_parallel >= 2));
        let cost = options[0].cost_per_million_output_tokens.unwrap();
        let expected = f64::from(options[0].gpus) * 2.0 / (5.0 * 300.0 * 3600.0) * 1e6;
        assert!((cost - expected).abs() < 1e-9);
    }
}
