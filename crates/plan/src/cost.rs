//! How long one engine step takes: α + max(compute, memory) from the model's shapes and the GPU's peaks, plus
//! tensor-parallel all-reduces, so latency grows with batch, context and prompt the way a real server's does.

use rand_distr::StandardNormal;
use serde::Serialize;

use crate::{Deployment, Gpu, HardwareError, Link, ModelShape};

/// Which resource a step waits on: decode at small batches reads weights (memory), prefill and large batches
/// multiply (compute).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Bound {
    Memory,
    Compute,
}

/// What one step computes, summed over the requests it scheduled.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct StepWork {
    /// Σ n_i: new prompt (or recomputed) tokens processed by prefill chunks.
    pub prefill_tokens: u64,
    /// Σ n_i·(c_i + n_i/2): attention work of the prefill chunks, c_i = tokens already in the KV cache.
    pub prefill_attention: f64,
    /// Requests that decode one token in this step.
    pub decode_seqs: u64,
    /// Σ c_j: context length of each decoding request.
    pub decode_context: u64,
    /// Σ (c_i + n_i): KV tokens the prefill chunks read and write.
    pub prefill_kv_tokens: u64,
}

impl StepWork {
    /// Adds a prefill chunk of `new_tokens` on top of `cached_tokens` already in the KV cache.
    pub fn add_prefill_chunk(&mut self, cached_tokens: u64, new_tokens: u64) {
        let (cached, new) = (cached_tokens as f64, new_tokens as f64);
        self.prefill_tokens += new_tokens;
        self.prefill_attention += new * (cached + new / 2.0);
        self.prefill_kv_tokens += cached_tokens + new_tokens;
    }

    /// Adds one request decoding a token at `context_tokens` of context.
    pub fn add_decode(&mut self, context_tokens: u64) {
        self.decode_seqs += 1;
        self.decode_context += context_tokens;
    }

    /// Tokens through the model in this step: each prefill token and one per decode.
    pub fn tokens(&self) -> u64 {
        self.prefill_tokens + self.decode_seqs
    }
}

/// What the roofline cannot know, fitted per server (research/sim_capacity.md §C step 8).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Calibration {
    /// Fixed cost of every step (scheduling, launches, sampling, output processing).
    pub alpha_s: f64,
    /// Fraction of peak FLOP/s prefill matmuls reach.
    pub mfu_prefill: f64,
    /// Fraction of peak FLOP/s decode matmuls reach (small, skinny GEMMs).
    pub mfu_decode: f64,
    /// Fraction of peak memory bandwidth a step reaches.
    pub mbu: f64,
    /// σ of the multiplicative lognormal step noise; 0 for none.
    pub jitter_sigma: f64,
    /// ≥ 1: how much slower a throttled GPU runs its kernels.
    pub throttle: f64,
}

impl Default for Calibration {
    /// α 0.5 ms is BLIS's `TOverheadMicros`, MBU 0.72 its `BwEffConstant` (inference-sim
    /// docs/design/roofline.md); MFU 0.45/0.30 are BLIS's H100 prefill/decode values
    /// (research/sim_capacity.md §A4); σ 5 % is the low end of §C's 5–15 %. 8B on an H100 then decodes
    /// alone in 0.5 + 4.8/0.72 ≈ 7.2 ms.
    fn default() -> Self {
        Calibration {
            alpha_s: 0.5e-3,
            mfu_prefill: 0.45,
            mfu_decode: 0.30,
            mbu: 0.72,
            jitter_sigma: 0.05,
            throttle: 1.0,
        }
    }
}

impl Calibration {
    /// The bare roofline: no overhead, every peak reached, no noise.
    pub fn ideal() -> Self {
        Calibration {
            alpha_s: 0.0,
            mfu_prefill: 1.0,
            mfu_decode: 1.0,
            mbu: 1.0,
            jitter_sigma: 0.0,
            throttle: 1.0,
        }
    }

    fn validate(&self) -> Result<(), HardwareError> {
        let fraction = "a fraction in (0, 1]";
        let checks = [
            ("alpha_s", self.alpha_s, self.alpha_s >= 0.0, "≥ 0 seconds"),
            (
                "mfu_prefill",
                self.mfu_prefill,
                self.mfu_prefill > 0.0 && self.mfu_prefill <= 1.0,
                fraction,
            ),
            (
                "mfu_decode",
                self.mfu_decode,
                self.mfu_decode > 0.0 && self.mfu_decode <= 1.0,
                fraction,
            ),
            ("mbu", self.mbu, self.mbu > 0.0 && self.mbu <= 1.0, fraction),
            (
                "jitter_sigma",
                self.jitter_sigma,
                self.jitter_sigma >= 0.0 && self.jitter_sigma.is_finite(),
                "≥ 0",
            ),
            (
                "throttle",
                self.throttle,
                self.throttle >= 1.0 && self.throttle.is_finite(),
                "≥ 1",
            ),
        ];
        match checks.into_iter().find(|(_, _, ok, _)| !ok) {
            Some((setting, value, _, expected)) => Err(HardwareError::InvalidSetting {
                setting,
                value: value.to_string(),
                expected: expected.to_owned(),
            }),
            None => Ok(()),
        }
    }
}

/// Step time for one model on one deployment, all rates per rank.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CostModel {
    calibration: Calibration,
    tensor_parallel: u32,
    peak_flops: f64,
    memory_bandwidth: f64,
    link: Link,
    num_layers: u64,
    /// Weights every step reads in full.
    shared_weight_bytes: f64,
    /// Routed-expert weights, read as far as the step's tokens touch them.
    expert_weight_bytes: f64,
    /// Fraction of experts one token leaves untouched (1 − k/E); 1 for dense models.
    expert_miss_per_token: f64,
    kv_bytes_per_token: f64,
    flops_per_token: f64,
    lm_head_flops: f64,
    attention_flops_factor: f64,
    all_reduce_bytes_per_token: f64,
}

impl CostModel {
    pub fn new(
        model: &ModelShape,
        gpu: &Gpu,
        deployment: &Deployment,
        calibration: Calibration,
    ) -> Result<CostModel, HardwareError> {
        deployment.validate(model, gpu)?;
        calibration.validate()?;
        let tp = deployment.tensor_parallel;
        // A token crosses every pipeline stage in turn, so a step reads the weights of one tensor-parallel rank
        // of each stage: the model over TP, whatever the PP.
        let all_weight_bytes = model
            .weight_bytes(deployment.weight_dtype, deployment.quantization.as_ref())
            / f64::from(tp.max(1));
        // Routed experts' share of the bytes, at the bits they are stored in.
        let expert_bits = deployment
            .quantization
            .map_or(deployment.weight_dtype.bytes() as f64 * 8.0, |q| {
                q.bits_per_weight
            });
        let expert_weight_bytes =
            model.expert_parameter_count() as f64 * expert_bits / 8.0 / f64::from(tp.max(1));
        Ok(CostModel {
            calibration,
            tensor_parallel: tp,
            peak_flops: gpu.peak_flops(deployment.weight_dtype),
            memory_bandwidth: gpu.memory_bandwidth,
            link: gpu.link(deployment.interconnect)?,
            num_layers: model.num_layers,
            shared_weight_bytes: (all_weight_bytes - expert_weight_bytes).max(0.0),
            expert_weight_bytes,
            expert_miss_per_token: model.moe.as_ref().map_or(1.0, |moe| {
                1.0 - moe.experts_per_token as f64 / moe.num_experts as f64
            }),
            kv_bytes_per_token: model.kv_bytes_per_token_per_rank(deployment.kv_cache_dtype, tp)
                as f64,
            flops_per_token: model.flops_per_token(),
            lm_head_flops: model.lm_head_flops(),
            attention_flops_factor: model.attention_flops_factor(),
            all_reduce_bytes_per_token: model.hidden_size as f64
                * deployment.weight_dtype.activation_dtype().bytes() as f64,
        })
    }

    pub fn calibration(&self) -> &Calibration {
        &self.calibration
    }

    /// Swaps the calibration mid-run (a GPU starts throttling, a fit improves).
    pub fn set_calibration(&mut self, calibration: Calibration) -> Result<(), HardwareError> {
        calibration.validate()?;
        self.calibration = calibration;
        Ok(())
    }

    /// Seconds one step takes: α + throttle·max(compute, memory) + all-reduces. A step with no work costs
    /// nothing (the engine runs no forward pass).
    pub fn step_seconds(&self, work: &StepWork) -> f64 {
        if work.tokens() == 0 {
            return 0.0;
        }
        let c = &self.calibration;
        let gpu_seconds = self.roofline_seconds(work, c.mfu_prefill, c.mfu_decode, c.mbu);
        c.alpha_s + c.throttle * gpu_seconds + self.all_reduce_seconds(work)
    }

    /// Multiplies by a lognormal factor with median 1, so tails stretch the way real step times do (a clamped
    /// normal caps p99/p50 near 1.7×, research/sim_capacity.md §C step 4).
    pub fn jitter(&self, seconds: f64, rng: &mut impl rand::Rng) -> f64 {
        let sigma = self.calibration.jitter_sigma;
        if sigma == 0.0 {
            return seconds;
        }
        let z: f64 = rng.sample(StandardNormal);
        seconds * (sigma * z).exp()
    }

    /// The fastest a lone decode step can be: the weights one token needs, read once at peak bandwidth
    /// (no α, no efficiency loss, no all-reduce).
    pub fn decode_floor_seconds(&self) -> f64 {
        let mut work = StepWork::default();
        work.add_decode(0);
        self.roofline_seconds(&work, 1.0, 1.0, 1.0)
    }

    /// The fastest a `prompt_tokens` prompt can prefill alone in one step, on the same terms as
    /// [`Self::decode_floor_seconds`].
    pub fn prefill_floor_seconds(&self, prompt_tokens: u64) -> f64 {
        let mut work = StepWork::default();
        work.add_prefill_chunk(0, prompt_tokens);
        self.roofline_seconds(&work, 1.0, 1.0, 1.0)
    }

    /// The compute floor of one prompt token: its FLOPs at peak, with no attention over earlier tokens, so a
    /// prefill step of `n` tokens can take no less than `n` times this (or the weights' read, when longer).
    pub fn prefill_token_compute_seconds(&self) -> f64 {
        let mut work = StepWork::default();
        work.add_prefill_chunk(0, 1);
        self.roofline_parts(&work, 1.0, 1.0, 1.0).0
    }

    /// max(compute, memory) on one rank. Prefill and decode FLOPs each run at their own MFU and add up (as
    /// BLIS does): a pure prefill gets `mfu_prefill`, a decode-only step `mfu_decode`, and a mixed step falls
    /// between in proportion to its work, with no jump when one prefill chunk joins a decode batch.
    fn roofline_seconds(
        &self,
        work: &StepWork,
        mfu_prefill: f64,
        mfu_decode: f64,
        mbu: f64,
    ) -> f64 {
        let (compute, memory) = self.roofline_parts(work, mfu_prefill, mfu_decode, mbu);
        compute.max(memory)
    }

    /// Whether the step waits on the tensor cores or on memory, at the calibrated efficiencies.
    pub fn bound(&self, work: &StepWork) -> Bound {
        let c = &self.calibration;
        let (compute, memory) = self.roofline_parts(work, c.mfu_prefill, c.mfu_decode, c.mbu);
        if compute > memory {
            Bound::Compute
        } else {
            Bound::Memory
        }
    }

    /// (compute, memory) seconds of a step on one rank.
    fn roofline_parts(
        &self,
        work: &StepWork,
        mfu_prefill: f64,
        mfu_decode: f64,
        mbu: f64,
    ) -> (f64, f64) {
        let prefill_flops = self.flops_per_token * work.prefill_tokens as f64
            + self.attention_flops_factor * work.prefill_attention;
        // Only decodes pay the LM head: a prefill chunk computes logits for one position, under 1 % of its
        // matmuls once it is longer than a few tokens.
        let decode_flops = (self.flops_per_token + self.lm_head_flops) * work.decode_seqs as f64
            + self.attention_flops_factor * work.decode_context as f64;
        let rank_flops = self.peak_flops * f64::from(self.tensor_parallel);
        let compute = (prefill_flops / mfu_prefill + decode_flops / mfu_decode) / rank_flops;

        let kv_tokens = (work.prefill_kv_tokens + work.decode_context) as f64;
        let bytes = self.weight_bytes_read(work.tokens()) + self.kv_bytes_per_token * kv_tokens;
        let memory = bytes / (self.memory_bandwidth * mbu);
        (compute, memory)
    }

    /// Weights read once per step; for MoE only the experts some token routed to, 1 − (1 − k/E)^T of them
    /// in expectation for T tokens routed independently (BLIS's unique-expert estimate).
    fn weight_bytes_read(&self, tokens: u64) -> f64 {
        let exponent = i32::try_from(tokens).unwrap_or(i32::MAX);
        let touched = 1.0 - self.expert_miss_per_token.powi(exponent);
        self.shared_weight_bytes + self.expert_weight_bytes * touched
    }

    /// Two ring all-reduces per layer (after attention and after the MLP) of every token's hidden state.
    fn all_reduce_seconds(&self, work: &StepWork) -> f64 {
        let bytes = self.all_reduce_bytes_per_token * work.tokens() as f64;
        2.0 * self.num_layers as f64 * self.link.all_reduce_seconds(bytes, self.tensor_parallel)
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;
    use crate::Interconnect;
    use crate::testing::within;

    fn cost_model(model: &str, gpu: &str, tp: u32, calibration: Calibration) -> CostModel {
        let model = ModelShape::by_name(model).unwrap();
        let gpu = Gpu::by_name(gpu).unwrap();
        CostModel::new(
            &model,
            &gpu,
            &Deployment::new(&model, &gpu, tp),
            calibration,
        )
        .unwrap()
    }

    fn decode_batch(batch: u64, context: u64) -> StepWork {
        let mut work = StepWork::default();
        for _ in 0..batch {
            work.add_decode(context);
        }
        work
    }

    #[test]
    fn floors_for_llama_8b_on_h100() {
        let model = cost_model("llama-3.1-8b", "h100", 1, Calibration::default());
        let decode = model.decode_floor_seconds();
        assert!(within(decode, 4.79e-3, 0.01), "{decode}");
        let prefill = model.prefill_floor_seconds(2048);
        assert!(within(prefill, 30e-3, 0.02), "{prefill}");
        // At BLIS's prefill MFU the same prompt takes ~67 ms (§B3).
        let calibration = Calibration {
            mfu_prefill: 0.45,
            ..Calibration::ideal()
        };
        let real = cost_model("llama-3.1-8b", "h100", 1, calibration);
        let mut work = StepWork::default();
        work.add_prefill_chunk(0, 2048);
        assert!(within(real.step_seconds(&work), 67e-3, 0.02));
    }

    #[test]
    fn itl_grows_linearly_with_batch() {
        // §A8: 8B/H100, ctx 2k, 100 % bandwidth: 4.8 ms + 0.080 ms per sequence.
        let model = cost_model("llama-3.1-8b", "h100", 1, Calibration::ideal());
        let at = |batch| model.step_seconds(&decode_batch(batch, 2048));
        assert!(within(at(64), 9.9e-3, 0.01), "{}", at(64));
        assert!(within(at(256), 25.3e-3, 0.01), "{}", at(256));
        let slope = (at(256) - at(64)) / 192.0;
        let expected_slope = 2048.0 * 131_072.0 / 3.35e12;
        assert!(within(slope, expected_slope, 1e-6), "{slope}");
        assert!(within((at(128) - at(64)) / 64.0, expected_slope, 1e-6));
    }

    #[test]
    fn mfu_follows_the_phase() {
        let slow_prefill = Calibration {
            mfu_prefill: 0.5,
            ..Calibration::ideal()
        };
        let ideal = cost_model("llama-3.1-8b", "h100", 1, Calibration::ideal());
        let slow = cost_model("llama-3.1-8b", "h100", 1, slow_prefill);
        let mut prefill = StepWork::default();
        prefill.add_prefill_chunk(0, 4096);
        assert!(within(
            slow.step_seconds(&prefill),
            2.0 * ideal.step_seconds(&prefill),
            1e-9
        ));
        let decodes = decode_batch(32, 1024);
        assert_eq!(slow.step_seconds(&decodes), ideal.step_seconds(&decodes));
    }

    #[test]
    fn prefill_chunks_inflate_co_running_decodes() {
        let model = cost_model("llama-3.1-8b", "h100", 1, Calibration::default());
        let decodes = decode_batch(64, 2048);
        let mut mixed = decodes;
        mixed.add_prefill_chunk(0, 2048);
        assert!(model.step_seconds(&mixed) > 2.0 * model.step_seconds(&decodes));
        // Quadratic attention: a chunk deep into a long prompt costs more than the first one.
        let mut first = StepWork::default();
        first.add_prefill_chunk(0, 2048);
        let mut deep = StepWork::default();
        deep.add_prefill_chunk(30_720, 2048);
        assert!(model.step_seconds(&deep) > 1.5 * model.step_seconds(&first));
    }

    #[test]
    fn tensor_parallel_over_pcie_is_slower_than_over_nvlink() {
        let model = ModelShape::by_name("llama-3.1-8b").unwrap();
        let gpu = Gpu::by_name("h100").unwrap();
        let mut deployment = Deployment::new(&model, &gpu, 2);
        let nvlink = CostModel::new(&model, &gpu, &deployment, Calibration::default()).unwrap();
        deployment.interconnect = Interconnect::Pcie;
        let pcie = CostModel::new(&model, &gpu, &deployment, Calibration::default()).unwrap();
        let single = cost_model("llama-3.1-8b", "h100", 1, Calibration::default());
        for work in [decode_batch(1, 512), decode_batch(64, 2048)] {
            assert!(pcie.step_seconds(&work) > nvlink.step_seconds(&work));
            assert!(nvlink.step_seconds(&work) < single.step_seconds(&work));
        }
    }

    #[test]
    fn tiny_model_steps_are_dominated_by_alpha() {
        let mut work = decode_batch(4, 256);
        work.add_prefill_chunk(0, 128);
        for gpu in Gpu::catalog() {
            let model = cost_model("tiny", gpu.name, 1, Calibration::default());
            let step = model.step_seconds(&work);
            assert!(
                model.calibration().alpha_s / step > 0.8,
                "{}: {step}",
                gpu.name
            );
        }
    }

    #[test]
    fn throttle_slows_the_gpu_not_the_host() {
        let throttled = Calibration {
            throttle: 2.0,
            ..Calibration::default()
        };
        let normal = cost_model("llama-3.1-8b", "h100", 1, Calibration::default());
        let slow = cost_model("llama-3.1-8b", "h100", 1, throttled);
        let work = decode_batch(16, 1024);
        let alpha = normal.calibration().alpha_s;
        let gpu_time = normal.step_seconds(&work) - alpha;
        assert!(within(
            slow.step_seconds(&work),
            alpha + 2.0 * gpu_time,
            1e-9
        ));
    }

    #[test]
    fn empty_step_costs_nothing() {
        let model = cost_model("llama-3.1-8b", "h100", 1, Calibration::default());
        assert_eq!(model.step_seconds(&StepWork::default()), 0.0);
    }

    #[test]
    fn bad_calibration_is_an_error() {
        let model = ModelShape::by_name("tiny").unwrap();
        let gpu = Gpu::by_name("l4").unwrap();
        let deployment = Deployment::new(&model, &gpu, 1);
        for broken in [
            Calibration {
                mfu_decode: 0.0,
                ..Calibration::default()
            },
            Calibration {
                mbu: 1.5,
                ..Calibration::default()
            },
            Calibration {
                throttle: 0.5,
                ..Calibration::default()
            },
            Calibration {
                jitter_sigma: f64::NAN,
                ..Calibration::default()
            },
            Calibration {
                alpha_s: -1.0,
                ..Calibration::default()
            },
        ] {
            let error = CostModel::new(&model, &gpu, &deployment, broken).unwrap_err();
            assert!(
                matches!(error, HardwareError::InvalidSetting { .. }),
                "{error}"
            );
        }
        let mut model = CostModel::new(&model, &gpu, &deployment, Calibration::default()).unwrap();
        assert!(
            model
                .set_calibration(Calibration {
                    throttle: 0.9,
                    ..Calibration::default()
                })
                .is_err()
        );
        assert_eq!(model.calibration(), &Calibration::default());
    }

    #[test]
    fn moe_reads_more_experts_as_the_batch_grows() {
        let mixtral = r#"{"model_type": "mixtral", "num_hidden_layers": 32, "hidden_size": 4096,
            "num_attention_heads": 32, "num_key_value_heads": 8, "intermediate_size": 14336,
            "num_local_experts": 8, "num_experts_per_tok": 2, "vocab_size": 32000,
            "tie_word_embeddings": false, "torch_dtype": "bfloat16", "max_position_embeddings": 32768}"#;
        let model = ModelShape::from_config_str("mixtral", "config.json", mixtral).unwrap();
        let gpu = Gpu::by_name("h200").unwrap();
        let cost = CostModel::new(
            &model,
            &gpu,
            &Deployment::new(&model, &gpu, 1),
            Calibration::ideal(),
        )
        .unwrap();
        let all_weights = model.weight_bytes(model.dtype, None) / gpu.memory_bandwidth;
        // One token reads 2 of 8 experts; a large batch reads all of them.
        assert!(cost.decode_floor_seconds() < 0.35 * all_weights);
        assert!(within(
            cost.step_seconds(&decode_batch(64, 0)),
            all_weights,
            0.01
        ));
    }

    #[test]
    fn jitter_is_lognormal_with_median_one() {
        let mut rng = StdRng::seed_from_u64(7);
        let quiet = cost_model(
            "tiny",
            "h100",
            1,
            Calibration {
                jitter_sigma: 0.0,
                ..Calibration::default()
            },
        );
        assert_eq!(quiet.jitter(0.01, &mut rng), 0.01);

        let sigma = 0.3;
        let noisy = cost_model(
            "tiny",
            "h100",
            1,
            Calibration {
                jitter_sigma: sigma,
                ..Calibration::default()
            },
        );
        let mut samples: Vec<f64> = (0..20_001).map(|_| noisy.jitter(1.0, &mut rng)).collect();
        samples.sort_by(f64::total_cmp);
        let quantile = |q: f64| samples[(q * (samples.len() - 1) as f64) as usize];
        assert!(samples.iter().all(|s| *s > 0.0));
        assert!(within(quantile(0.5), 1.0, 0.02), "{}", quantile(0.5));
        // p99/p50 = e^(2.326σ) ≈ 2.0, past the 1.7× a clamped normal allows.
        let tail = quantile(0.99) / quantile(0.5);
        assert!(within(tail, (2.326 * sigma).exp(), 0.05), "{tail}");
    }
}
