//! vLLM V1's memory arithmetic on one rank: weights, activation peak and non-torch memory out of
//! `gpu_memory_utilization` of the GPU, the rest KV blocks, tokens and maximum concurrency.

use serde::Serialize;

use crate::{Dtype, GIB, Gpu, HardwareError, Interconnect, ModelShape};

/// How one model is laid out over GPUs.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Deployment {
    pub tensor_parallel: u32,
    pub interconnect: Interconnect,
    pub weight_dtype: Dtype,
    pub kv_cache_dtype: Dtype,
}

impl Deployment {
    /// vLLM's defaults on `tensor_parallel` GPUs: `--dtype auto`, `--kv-cache-dtype auto`, the GPU's own link.
    pub fn new(model: &ModelShape, gpu: &Gpu, tensor_parallel: u32) -> Deployment {
        let weight_dtype = model.default_serving_dtype();
        Deployment {
            tensor_parallel,
            interconnect: gpu.default_interconnect,
            weight_dtype,
            kv_cache_dtype: weight_dtype.activation_dtype(),
        }
    }

    /// vLLM refuses a TP size that does not divide the attention heads; a TP above 1 needs a link.
    pub fn validate(&self, model: &ModelShape, gpu: &Gpu) -> Result<(), HardwareError> {
        let tp = self.tensor_parallel;
        if tp == 0 || !model.num_attention_heads.is_multiple_of(u64::from(tp)) {
            return Err(HardwareError::InvalidSetting {
                setting: "tensor_parallel_size",
                value: tp.to_string(),
                expected: format!(
                    "a positive divisor of num_attention_heads ({})",
                    model.num_attention_heads
                ),
            });
        }
        if tp > 1 {
            gpu.link(self.interconnect)?;
        }
        Ok(())
    }
}

/// The cache settings vLLM takes from its command line.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct CacheConfig {
    pub block_size: u64,
    pub gpu_memory_utilization: f64,
    pub num_gpu_blocks_override: Option<u64>,
    /// `None`: the model's `max_position_embeddings`, as vLLM.
    pub max_model_len: Option<u64>,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            block_size: 16,
            gpu_memory_utilization: 0.9,
            num_gpu_blocks_override: None,
            max_model_len: None,
        }
    }
}

/// The KV block pool's size.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct KvCapacity {
    pub block_size: u64,
    /// Per rank.
    pub kv_bytes_per_token: u64,
    pub num_blocks: u64,
}

impl KvCapacity {
    /// Blocks that fit in `budget_bytes` (vLLM: `available // page_size` summed over layers). Also the path
    /// for vLLM on CPU, whose budget is `VLLM_CPU_KVCACHE_SPACE` GiB rather than a profile run.
    pub fn from_budget(
        budget_bytes: u64,
        kv_bytes_per_token: u64,
        block_size: u64,
    ) -> Result<KvCapacity, HardwareError> {
        if block_size == 0 {
            return Err(HardwareError::InvalidSetting {
                setting: "block_size",
                value: "0".to_owned(),
                expected: "a positive number of tokens".to_owned(),
            });
        }
        let block_bytes = block_size.saturating_mul(kv_bytes_per_token).max(1);
        Ok(KvCapacity {
            block_size,
            kv_bytes_per_token,
            num_blocks: budget_bytes / block_bytes,
        })
    }

    /// vLLM's log "GPU KV cache size: N tokens".
    pub fn tokens(&self) -> u64 {
        self.num_blocks.saturating_mul(self.block_size)
    }

    /// vLLM's log "Maximum concurrency for L tokens per request: X.XXx": num_blocks / ceil(L/block_size),
    /// full attention assumed.
    pub fn max_concurrency(&self, max_model_len: u64) -> f64 {
        let blocks_per_request = max_model_len.div_ceil(self.block_size.max(1)).max(1);
        self.num_blocks as f64 / blocks_per_request as f64
    }
}

/// vLLM V1's memory budget on one rank (`gpu_worker.determine_available_memory`), with llm-d-planner's
/// constants standing in for the profile run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MemoryPlan {
    pub total_bytes: u64,
    pub gpu_memory_utilization: f64,
    pub requested_bytes: f64,
    pub weight_bytes_per_rank: f64,
    pub activation_bytes: f64,
    pub non_torch_bytes: f64,
    /// vLLM's "Available KV cache memory".
    pub available_kv_bytes: f64,
    pub max_model_len: u64,
    pub kv: KvCapacity,
}

// llm-d-planner's non-torch memory (NCCL, CUDA context): 0.15 GiB alone, 0.6 GiB with TP (§B1).
const NON_TORCH_SINGLE_GIB: f64 = 0.15;
const NON_TORCH_TP_GIB: f64 = 0.6;

impl MemoryPlan {
    pub fn compute(
        model: &ModelShape,
        gpu: &Gpu,
        deployment: &Deployment,
        cache: &CacheConfig,
    ) -> Result<MemoryPlan, HardwareError> {
        deployment.validate(model, gpu)?;
        let utilization = cache.gpu_memory_utilization;
        if !(utilization > 0.0 && utilization <= 1.0) {
            return Err(HardwareError::InvalidSetting {
                setting: "gpu_memory_utilization",
                value: utilization.to_string(),
                expected: "a fraction in (0, 1]".to_owned(),
            });
        }
        let tp = deployment.tensor_parallel;
        let requested_bytes = gpu.memory_bytes as f64 * utilization;
        let weight_bytes_per_rank = model.weight_bytes_per_rank(deployment.weight_dtype, tp);
        let activation_bytes = model.activation_reserve_bytes();
        let non_torch_bytes = if tp > 1 {
            NON_TORCH_TP_GIB
        } else {
            NON_TORCH_SINGLE_GIB
        } * GIB;
        let available_kv_bytes =
            requested_bytes - weight_bytes_per_rank - activation_bytes - non_torch_bytes;
        if available_kv_bytes <= 0.0 {
            return Err(HardwareError::ModelDoesNotFit {
                needed_gib: (weight_bytes_per_rank + activation_bytes + non_torch_bytes) / GIB,
                weights_gib: weight_bytes_per_rank / GIB,
                activation_gib: activation_bytes / GIB,
                non_torch_gib: non_torch_bytes / GIB,
                available_gib: requested_bytes / GIB,
                total_gib: gpu.memory_bytes as f64 / GIB,
                utilization,
            });
        }
        let kv_bytes_per_token = model.kv_bytes_per_token_per_rank(deployment.kv_cache_dtype, tp);
        let max_model_len = cache.max_model_len.unwrap_or(model.max_position_embeddings);
        // vLLM's check_enough_kv_cache_memory: one request of max_model_len must fit, before any override.
        let needed_bytes = max_model_len.div_ceil(cache.block_size.max(1)) as f64
            * cache.block_size as f64
            * kv_bytes_per_token as f64;
        if needed_bytes > available_kv_bytes {
            return Err(HardwareError::MaxModelLenTooLong {
                max_model_len,
                needed_gib: needed_bytes / GIB,
                available_gib: available_kv_bytes / GIB,
            });
        }
        let mut kv = KvCapacity::from_budget(
            available_kv_bytes as u64,
            kv_bytes_per_token,
            cache.block_size,
        )?;
        if let Some(blocks) = cache.num_gpu_blocks_override {
            kv.num_blocks = blocks;
        }
        Ok(MemoryPlan {
            total_bytes: gpu.memory_bytes,
            gpu_memory_utilization: utilization,
            requested_bytes,
            weight_bytes_per_rank,
            activation_bytes,
            non_torch_bytes,
            available_kv_bytes,
            max_model_len,
            kv,
        })
    }

    pub fn max_concurrency(&self) -> f64 {
        self.kv.max_concurrency(self.max_model_len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{llama_8b, within};

    fn plan(
        model: &ModelShape,
        gpu: &str,
        tp: u32,
        cache: CacheConfig,
    ) -> Result<MemoryPlan, HardwareError> {
        let gpu = Gpu::by_name(gpu).unwrap();
        MemoryPlan::compute(model, &gpu, &Deployment::new(model, &gpu, tp), &cache)
    }

    #[test]
    fn h100_kv_capacity_for_llama_8b() {
        let plan = plan(&llama_8b(), "H100", 1, CacheConfig::default()).unwrap();
        assert!(
            within(plan.kv.tokens() as f64, 420_000.0, 0.03),
            "{}",
            plan.kv.tokens()
        );
        assert!(within(plan.available_kv_bytes / GIB, 51.4, 0.01));
        let at_8k = plan.kv.max_concurrency(8192);
        assert!(within(at_8k, 51.0, 0.02), "{at_8k}");
        // TP=2 halves weights and KV heads per rank: more than twice the tokens per rank minus the larger
        // non-torch reserve.
        let tp2 = self::plan(&llama_8b(), "h100-sxm", 2, CacheConfig::default()).unwrap();
        assert_eq!(tp2.kv.kv_bytes_per_token, 65_536);
        assert!(tp2.kv.tokens() > 2 * plan.kv.tokens());
    }

    #[test]
    fn cpu_fixture_capacity_is_exact() {
        // fixtures/vllm_cpu/startup_and_run.log: VLLM_CPU_KVCACHE_SPACE=1 GiB, tiny model in bf16,
        // "CPU KV cache size: 262,144 tokens, Maximum concurrency for 2,048 tokens per request: 128.00x".
        let tiny = ModelShape::by_name("tiny").unwrap();
        let kvb = tiny.kv_bytes_per_token_per_rank(Dtype::Bfloat16, 1);
        let kv = KvCapacity::from_budget(1 << 30, kvb, 16).unwrap();
        assert_eq!(kv.num_blocks, 16_384);
        assert_eq!(kv.tokens(), 262_144);
        assert_eq!(kv.max_concurrency(2048), 128.0);
        assert_eq!(format!("{:.2}", kv.max_concurrency(2048)), "128.00");
        assert_eq!(kv.max_concurrency(2047), 128.0);
        assert_eq!(kv.max_concurrency(2049), 16_384.0 / 129.0);
    }

    #[test]
    fn block_override_replaces_the_computed_count() {
        let cache = CacheConfig {
            num_gpu_blocks_override: Some(512),
            max_model_len: Some(4096),
            ..CacheConfig::default()
        };
        let plan = plan(&llama_8b(), "h100", 1, cache).unwrap();
        assert_eq!(plan.kv.num_blocks, 512);
        assert_eq!(plan.kv.tokens(), 8192);
        assert_eq!(plan.max_concurrency(), 2.0);
    }

    #[test]
    fn oversized_model_is_an_error_with_the_numbers() {
        let model = ModelShape::by_name("llama-3.1-70b").unwrap();
        let error = plan(&model, "h100", 1, CacheConfig::default()).unwrap_err();
        let message = error.to_string();
        assert!(
            message.starts_with("model does not fit: needs 136."),
            "{message}"
        );
        assert!(message.contains("71.26 GiB available"), "{message}");
        assert!(plan(&model, "h100", 4, CacheConfig::default()).is_ok());
    }

    #[test]
    fn max_model_len_beyond_the_cache_is_an_error() {
        let cache = CacheConfig {
            max_model_len: Some(4_000_000),
            ..CacheConfig::default()
        };
        let error = plan(&llama_8b(), "h100", 1, cache).unwrap_err();
        assert!(matches!(
            error,
            HardwareError::MaxModelLenTooLong {
                max_model_len: 4_000_000,
                ..
            }
        ));
    }

    #[test]
    fn tensor_parallel_must_divide_heads_and_have_a_link() {
        let model = llama_8b();
        let l40s = Gpu::by_name("l40s").unwrap();
        let mut deployment = Deployment::new(&model, &l40s, 3);
        assert!(matches!(
            deployment.validate(&model, &l40s),
            Err(HardwareError::InvalidSetting {
                setting: "tensor_parallel_size",
                ..
            })
        ));
        deployment.tensor_parallel = 2;
        deployment.interconnect = Interconnect::NvLink;
        assert!(matches!(
            deployment.validate(&model, &l40s),
            Err(HardwareError::NoSuchLink { .. })
        ));
        // 8 KV heads over 16 ranks: replicated, one per rank.
        assert_eq!(
            model.kv_bytes_per_token_per_rank(Dtype::Bfloat16, 16),
            16_384
        );
    }

    #[test]
    fn absurd_shapes_are_errors_not_panics() {
        let huge = u64::MAX;
        let json = format!(
            r#"{{"num_hidden_layers": {huge}, "hidden_size": {huge}, "num_attention_heads": 1,
                "intermediate_size": {huge}, "vocab_size": {huge}, "num_experts": {huge},
                "num_experts_per_tok": 1, "max_position_embeddings": {huge}}}"#
        );
        let model = ModelShape::from_config_str("m", "cfg.json", &json).unwrap();
        assert_eq!(model.parameter_count(), u64::MAX);
        assert_eq!(model.kv_bytes_per_token_per_rank(Dtype::Fp8, 1), u64::MAX);
        let error = plan(&model, "b200", 1, CacheConfig::default()).unwrap_err();
        assert!(matches!(error, HardwareError::ModelDoesNotFit { .. }));
        let kv = KvCapacity::from_budget(1 << 40, u64::MAX, 16).unwrap();
        assert_eq!(kv.num_blocks, 0);
        assert_eq!(kv.max_concurrency(u64::MAX), 0.0);
    }
}
