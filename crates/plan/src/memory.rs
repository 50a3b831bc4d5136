//! vLLM V1's memory arithmetic on one rank: weights, the profile run's activation peak, non-torch memory and
//! CUDA graphs out of `gpu_memory_utilization` of the GPU, the rest KV blocks, tokens and maximum concurrency.

use serde::Serialize;

use crate::model::SlidingWindow;
use crate::{BatchLimits, Dtype, GIB, Gpu, HardwareError, Interconnect, ModelShape, Quantization};

/// How one model is laid out over GPUs.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Deployment {
    pub tensor_parallel: u32,
    pub pipeline_parallel: u32,
    pub interconnect: Interconnect,
    /// The dtype matmuls run in: the serving dtype, or FP8 for W8A8 checkpoints.
    pub weight_dtype: Dtype,
    /// How the weights are stored when quantized (the checkpoint's, or `--quantization fp8`).
    pub quantization: Option<Quantization>,
    pub kv_cache_dtype: Dtype,
}

impl Deployment {
    /// vLLM's defaults on `tensor_parallel` GPUs: `--dtype auto`, the checkpoint's quantization,
    /// `--kv-cache-dtype auto`, the GPU's own link, no pipeline stages.
    pub fn new(model: &ModelShape, gpu: &Gpu, tensor_parallel: u32) -> Deployment {
        let serving = model.default_serving_dtype();
        let mut deployment = Deployment {
            tensor_parallel,
            pipeline_parallel: 1,
            interconnect: gpu.default_interconnect,
            weight_dtype: serving,
            quantization: None,
            kv_cache_dtype: serving.activation_dtype(),
        };
        deployment.quantize(model.quantization);
        deployment
    }

    /// Stores the weights as `quantization` says; W8A8 methods also move the matmuls to FP8.
    pub fn quantize(&mut self, quantization: Option<Quantization>) {
        self.quantization = quantization;
        let activations = self.weight_dtype.activation_dtype();
        self.weight_dtype = match quantization {
            Some(q) if q.fp8_activations => Dtype::Fp8,
            _ => activations,
        };
    }

    /// GPUs one replica occupies.
    pub fn gpus(&self) -> u32 {
        self.tensor_parallel.saturating_mul(self.pipeline_parallel)
    }

    /// Weight bytes on one GPU: the model split evenly over tensor and pipeline ranks.
    pub fn weight_bytes_per_rank(&self, model: &ModelShape) -> f64 {
        model.weight_bytes(self.weight_dtype, self.quantization.as_ref())
            / f64::from(self.gpus().max(1))
    }

    /// Decoder layers one pipeline stage holds (the first stages take the remainder).
    pub fn layers_per_stage(&self, model: &ModelShape) -> u64 {
        model
            .num_layers
            .div_ceil(u64::from(self.pipeline_parallel.max(1)))
    }

    /// vLLM refuses a TP size that does not divide the attention heads, and a PP size above the layer count; a
    /// TP above 1 needs a link.
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
        let pp = self.pipeline_parallel;
        if pp == 0 || u64::from(pp) > model.num_layers {
            return Err(HardwareError::InvalidSetting {
                setting: "pipeline_parallel_size",
                value: pp.to_string(),
                expected: format!("1 to the {} layers", model.num_layers),
            });
        }
        if tp > 1 {
            gpu.link(self.interconnect)?;
        }
        Ok(())
    }
}

/// The cache and scheduler settings vLLM takes from its command line that decide its memory budget.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct CacheConfig {
    pub block_size: u64,
    pub gpu_memory_utilization: f64,
    pub num_gpu_blocks_override: Option<u64>,
    /// `None`: the model's `max_position_embeddings`, as vLLM.
    pub max_model_len: Option<u64>,
    /// `None`: vLLM's defaults for the GPU. The profile run's batch: they size the activation peak.
    pub max_num_seqs: Option<u64>,
    pub max_num_batched_tokens: Option<u64>,
    pub enforce_eager: bool,
    /// vLLM ≥ 0.21 captures a trial CUDA graph while profiling and reserves its memory ahead of the KV cache;
    /// earlier releases captured after sizing it, out of the `1 − gpu_memory_utilization` headroom.
    pub reserve_cuda_graphs: bool,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            block_size: 16,
            gpu_memory_utilization: 0.9,
            num_gpu_blocks_override: None,
            max_model_len: None,
            max_num_seqs: None,
            max_num_batched_tokens: None,
            enforce_eager: false,
            reserve_cuda_graphs: true,
        }
    }
}

impl CacheConfig {
    /// The scheduler limits in force: the flags, else vLLM's defaults for the GPU.
    pub fn batch_limits(&self, gpu: &Gpu) -> BatchLimits {
        let defaults = gpu.default_batch_limits();
        BatchLimits {
            max_num_seqs: self.max_num_seqs.unwrap_or(defaults.max_num_seqs),
            max_num_batched_tokens: self
                .max_num_batched_tokens
                .unwrap_or(defaults.max_num_batched_tokens),
        }
    }
}

/// Which layers share the block pool how: vLLM's KV cache groups. Uniform models have one group of all layers;
/// hybrid models (sliding and full attention) split layers into equal-sized groups, each with its own blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct KvLayout {
    /// Bytes of one token in one layer on one rank.
    pub bytes_per_token_per_layer: u64,
    pub full_attention_layers: u64,
    pub sliding: Option<SlidingWindow>,
    /// The scheduler's token budget: a sliding layer's cache holds the window plus one step's new tokens.
    pub max_num_batched_tokens: u64,
}

impl KvLayout {
    /// Every layer keeps every token.
    pub fn uniform(bytes_per_token_per_layer: u64, layers: u64) -> KvLayout {
        KvLayout {
            bytes_per_token_per_layer,
            full_attention_layers: layers,
            sliding: None,
            max_num_batched_tokens: 0,
        }
    }

    /// The layout of `model`'s layers on one pipeline stage.
    pub fn of(
        model: &ModelShape,
        deployment: &Deployment,
        max_num_batched_tokens: u64,
    ) -> KvLayout {
        let layers = deployment.layers_per_stage(model);
        let bytes = model
            .kv_bytes_per_token_per_layer(deployment.kv_cache_dtype, deployment.tensor_parallel);
        let pp = u64::from(deployment.pipeline_parallel.max(1));
        let sliding = model.sliding_window.map(|sw| SlidingWindow {
            window: sw.window,
            layers: sw.layers.div_ceil(pp).min(layers),
        });
        KvLayout {
            bytes_per_token_per_layer: bytes,
            full_attention_layers: layers - sliding.map_or(0, |sw| sw.layers),
            sliding,
            max_num_batched_tokens,
        }
    }

    fn sliding_layers(&self) -> u64 {
        self.sliding.map_or(0, |sw| sw.layers)
    }

    /// Layers per group: all of them when uniform; for hybrids the smaller kind's count (vLLM pads the larger
    /// kind's last group), or the larger's when the two are within 25 % of each other, where one padded group
    /// each wastes less (vLLM's `_get_kv_cache_groups_uniform_page_size`).
    fn group_size(&self) -> u64 {
        match (self.full_attention_layers, self.sliding_layers()) {
            (0, sliding) => sliding,
            (full, 0) => full,
            (full, sliding) => {
                let (fewer, more) = (full.min(sliding), full.max(sliding));
                if (more as f64) < 1.25 * fewer as f64 {
                    more
                } else {
                    fewer
                }
            }
        }
        .max(1)
    }

    /// (full-attention groups, sliding groups).
    fn groups(&self) -> (u64, u64) {
        let size = self.group_size();
        (
            self.full_attention_layers.div_ceil(size),
            self.sliding_layers().div_ceil(size),
        )
    }

    /// Bytes of one block of one group: the page every group's blocks share.
    fn block_bytes(&self, block_size: u64) -> u64 {
        [
            self.group_size(),
            block_size,
            self.bytes_per_token_per_layer,
        ]
        .into_iter()
        .fold(1, u64::saturating_mul)
        .max(1)
    }

    /// Blocks one request of `len` tokens needs over all groups (vLLM's `max_memory_usage_bytes` / page):
    /// full attention keeps all, a sliding layer the window plus a step's tokens and one spare block.
    pub fn blocks_per_request(&self, len: u64, block_size: u64) -> u64 {
        let block_size = block_size.max(1);
        let (full, sliding) = self.groups();
        let sliding_blocks = self.sliding.map_or(0, |sw| {
            let kept = (sw.window - 1 + self.max_num_batched_tokens).min(len);
            kept.div_ceil(block_size) + 1
        });
        full.saturating_mul(len.div_ceil(block_size))
            .saturating_add(sliding.saturating_mul(sliding_blocks))
            .max(1)
    }
}

/// The KV block pool's size.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct KvCapacity {
    pub block_size: u64,
    pub layout: KvLayout,
    /// Per rank, all layers as if each kept every token: what the simulator's one pool charges a token.
    pub kv_bytes_per_token: u64,
    pub num_blocks: u64,
}

impl KvCapacity {
    /// Blocks that fit in `budget_bytes` (vLLM: `available // page_size // group_size`). Also the path for vLLM
    /// on CPU, whose budget is `VLLM_CPU_KVCACHE_SPACE` GiB rather than a profile run.
    pub fn from_budget(
        budget_bytes: u64,
        layout: KvLayout,
        block_size: u64,
    ) -> Result<KvCapacity, HardwareError> {
        if block_size == 0 {
            return Err(HardwareError::InvalidSetting {
                setting: "block_size",
                value: "0".to_owned(),
                expected: "a positive number of tokens".to_owned(),
            });
        }
        let layers = layout.full_attention_layers + layout.sliding_layers();
        Ok(KvCapacity {
            block_size,
            layout,
            kv_bytes_per_token: layout.bytes_per_token_per_layer.saturating_mul(layers),
            num_blocks: budget_bytes / layout.block_bytes(block_size),
        })
    }

    /// vLLM's log "GPU KV cache size: N tokens": the blocks one group gets, in tokens.
    pub fn tokens(&self) -> u64 {
        let (full, sliding) = self.layout.groups();
        (self.num_blocks / (full + sliding).max(1)).saturating_mul(self.block_size)
    }

    /// vLLM's log "Maximum concurrency for L tokens per request: X.XXx": requests of `max_model_len` tokens
    /// the blocks hold at once.
    pub fn max_concurrency(&self, max_model_len: u64) -> f64 {
        self.num_blocks as f64
            / self
                .layout
                .blocks_per_request(max_model_len, self.block_size) as f64
    }
}

/// vLLM V1's memory budget on one rank (`gpu_worker.determine_available_memory`): what the profile run measures
/// is estimated (see docs/CAPACITY.md), the rest is vLLM's arithmetic.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MemoryPlan {
    pub total_bytes: u64,
    pub gpu_memory_utilization: f64,
    pub requested_bytes: f64,
    pub weight_bytes_per_rank: f64,
    /// Estimated: the profile run's torch peak above the weights.
    pub activation_bytes: f64,
    /// Estimated: CUDA context growth, NCCL and cuBLAS workspaces during profiling.
    pub non_torch_bytes: f64,
    /// Estimated: the CUDA graphs' memory, when this vLLM reserves it ahead of the KV cache.
    pub cuda_graph_bytes: f64,
    /// vLLM's "Available KV cache memory".
    pub available_kv_bytes: f64,
    pub max_model_len: u64,
    pub limits: BatchLimits,
    pub kv: KvCapacity,
}

// Non-torch growth during vLLM's profile run. Since vLLM 0.9.2 (PR #19312) the baseline snapshot follows NCCL's
// initialisation, so TP adds little: 0.27 GiB for Qwen3-14B on an L40S (fixtures/vllm_startup, 0.29.0).
const NON_TORCH_GIB: f64 = 0.2;
// The sampler's dummy run holds max_num_seqs x vocab logits in fp32 with its softmax, sort and penalty tensors:
// about 34 bytes per logit, fitted to the start-up logs in fixtures/vllm_startup (docs/CAPACITY.md).
const SAMPLER_BYTES_PER_LOGIT: f64 = 34.0;
// CUDA-graph memory vLLM ≥ 0.21 reserves, per captured piece (a layer's piecewise graph at one batch size), from
// the estimates start-up logs print: 0.51 GiB for Qwen3-14B's 41 pieces x 67 sizes, 0.52 GiB for Qwen3-8B's 37
// (fixtures/vllm_startup; 0.19's 2.35 GiB counted full graphs too, and was not reserved).
const CUDA_GRAPH_BYTES_PER_PIECE: f64 = 0.2 * (1u64 << 20) as f64;
const CUDA_GRAPH_SIZES: f64 = 67.0;

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
        let limits = cache.batch_limits(gpu);
        let requested_bytes = gpu.memory_bytes as f64 * utilization;
        let weight_bytes_per_rank = deployment.weight_bytes_per_rank(model);
        let activation_bytes = profile_activation_bytes(model, deployment, limits);
        let non_torch_bytes = NON_TORCH_GIB * GIB;
        let cuda_graph_bytes = if cache.reserve_cuda_graphs && !cache.enforce_eager {
            (deployment.layers_per_stage(model) as f64 + 1.0)
                * CUDA_GRAPH_SIZES
                * CUDA_GRAPH_BYTES_PER_PIECE
        } else {
            0.0
        };
        let needed = weight_bytes_per_rank + activation_bytes + non_torch_bytes + cuda_graph_bytes;
        let available_kv_bytes = requested_bytes - needed;
        if available_kv_bytes <= 0.0 {
            return Err(HardwareError::ModelDoesNotFit {
                needed_gib: needed / GIB,
                weights_gib: weight_bytes_per_rank / GIB,
                activation_gib: (activation_bytes + cuda_graph_bytes) / GIB,
                non_torch_gib: non_torch_bytes / GIB,
                available_gib: requested_bytes / GIB,
                total_gib: gpu.memory_bytes as f64 / GIB,
                utilization,
            });
        }
        let max_model_len = cache.max_model_len.unwrap_or(model.max_position_embeddings);
        let layout = KvLayout::of(model, deployment, limits.max_num_batched_tokens);
        let mut kv = KvCapacity::from_budget(available_kv_bytes as u64, layout, cache.block_size)?;
        // vLLM's check_enough_kv_cache_memory: one request of max_model_len must fit, before any override.
        let needed_bytes = layout.blocks_per_request(max_model_len, cache.block_size) as f64
            * layout.block_bytes(cache.block_size) as f64;
        if needed_bytes > available_kv_bytes {
            return Err(HardwareError::MaxModelLenTooLong {
                max_model_len,
                needed_gib: needed_bytes / GIB,
                available_gib: available_kv_bytes / GIB,
            });
        }
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
            cuda_graph_bytes,
            available_kv_bytes,
            max_model_len,
            limits,
            kv,
        })
    }

    pub fn max_concurrency(&self) -> f64 {
        self.kv.max_concurrency(self.max_model_len)
    }
}

/// The torch peak of vLLM's profile run on one rank: a forward pass of `max_num_batched_tokens` tokens (the
/// residual stream, one layer's attention projections and its MLP or expert workspace alive at once), then the
/// sampler on `max_num_seqs` rows of logits. Estimated, not measured: docs/CAPACITY.md gives its fit.
pub fn profile_activation_bytes(
    model: &ModelShape,
    deployment: &Deployment,
    limits: BatchLimits,
) -> f64 {
    let tp = f64::from(deployment.tensor_parallel.max(1));
    let d = model.hidden_size as f64;
    let attention =
        (model.query_dim() as f64 + 2.0 * model.num_kv_heads as f64 * model.head_dim as f64) / tp;
    let mlp = match &model.moe {
        Some(moe) => {
            3.0 * (moe.experts_per_token as f64 * moe.expert_intermediate_size as f64
                + moe.shared_expert_intermediate_size as f64)
                / tp
        }
        None => 3.0 * model.intermediate_size as f64 / tp,
    };
    let activation_bytes = deployment.weight_dtype.activation_dtype().bytes() as f64;
    let forward =
        limits.max_num_batched_tokens as f64 * (2.0 * d + attention + mlp) * activation_bytes;
    let sampler = limits.max_num_seqs as f64 * model.vocab_size as f64 * SAMPLER_BYTES_PER_LOGIT;
    forward + sampler
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
        // H100's defaults: the profile run takes 8,192 tokens and 1,024 sequences.
        assert_eq!(plan.limits.max_num_batched_tokens, 8192);
        let terms = plan.weight_bytes_per_rank
            + plan.activation_bytes
            + plan.non_torch_bytes
            + plan.cuda_graph_bytes;
        assert!(within(
            plan.available_kv_bytes,
            plan.requested_bytes - terms,
            1e-12
        ));
        assert!(
            within(plan.activation_bytes / GIB, 5.04, 0.01),
            "{}",
            plan.activation_bytes / GIB
        );
        // 131,072 bytes a token, 16 a block: 2 MiB blocks.
        assert_eq!(plan.kv.num_blocks, (plan.available_kv_bytes as u64) >> 21);
        assert_eq!(plan.kv.tokens(), plan.kv.num_blocks * 16);
        assert_eq!(
            plan.kv.max_concurrency(8192),
            plan.kv.num_blocks as f64 / 512.0
        );
        // vLLM 0.9.1 on an H100 with this model (and an EAGLE head of ~0.5 GiB more) logged 51.63 GiB
        // available (fixtures/vllm_startup/llama31_8b_eagle_h100_v1_091dev.log); that release reserved no
        // CUDA-graph memory.
        let old = CacheConfig {
            reserve_cuda_graphs: false,
            ..CacheConfig::default()
        };
        let old = self::plan(&llama_8b(), "H100", 1, old).unwrap();
        assert!(
            within(old.available_kv_bytes / GIB, 51.63, 0.03),
            "{}",
            old.available_kv_bytes / GIB
        );
        // TP=2 halves weights and KV heads per rank: more than twice the tokens per rank.
        let tp2 = self::plan(&llama_8b(), "h100-sxm", 2, CacheConfig::default()).unwrap();
        assert_eq!(tp2.kv.kv_bytes_per_token, 65_536);
        assert!(tp2.kv.tokens() > 2 * plan.kv.tokens());
    }

    #[test]
    fn pipeline_stages_split_weights_and_layers() {
        let model = ModelShape::by_name("llama-3.1-70b").unwrap();
        let gpu = Gpu::by_name("h100").unwrap();
        let mut deployment = Deployment::new(&model, &gpu, 4);
        let tp4 = MemoryPlan::compute(&model, &gpu, &deployment, &CacheConfig::default()).unwrap();
        deployment.pipeline_parallel = 2;
        let pp2 = MemoryPlan::compute(&model, &gpu, &deployment, &CacheConfig::default()).unwrap();
        assert!(within(
            pp2.weight_bytes_per_rank,
            tp4.weight_bytes_per_rank / 2.0,
            1e-9
        ));
        assert_eq!(deployment.layers_per_stage(&model), 40);
        // Half the layers a rank, and more memory left: over twice the tokens.
        assert_eq!(pp2.kv.kv_bytes_per_token, tp4.kv.kv_bytes_per_token / 2);
        assert!(pp2.kv.tokens() > 2 * tp4.kv.tokens());
        deployment.pipeline_parallel = 81;
        assert!(MemoryPlan::compute(&model, &gpu, &deployment, &CacheConfig::default()).is_err());
    }

    #[test]
    fn hybrid_models_group_layers_as_vllm_does() {
        // Gemma-3-27B's shape: 62 layers, 52 sliding (window 1024), 10 full; 16 KV heads of 128.
        let json = r#"{"model_type": "gemma3_text", "num_hidden_layers": 62, "hidden_size": 5376,
            "num_attention_heads": 32, "num_key_value_heads": 16, "head_dim": 128, "intermediate_size": 21504,
            "vocab_size": 262208, "sliding_window": 1024, "torch_dtype": "bfloat16",
            "max_position_embeddings": 131072}"#;
        let model = ModelShape::from_config_str("gemma-3-27b", "config.json", json).unwrap();
        let gpu = Gpu::by_name("h100").unwrap();
        let layout = KvLayout::of(&model, &Deployment::new(&model, &gpu, 1), 8192);
        assert_eq!(
            (layout.full_attention_layers, layout.sliding.unwrap().layers),
            (10, 52)
        );
        // Groups of 10 layers: 1 full, 6 sliding (the last padded); a block of a group is 10 layers' page.
        let kv = KvCapacity::from_budget(70 << 30, layout, 16).unwrap();
        let page = 2 * 16 * 128 * 2;
        assert_eq!(kv.num_blocks, (70u64 << 30) / (10 * 16 * page));
        assert_eq!(kv.tokens(), kv.num_blocks / 7 * 16);
        // A 32k request: 2,048 blocks in the full group, (1023 + 8192)/16 → 576 + 1 in each sliding group.
        assert_eq!(layout.blocks_per_request(32_768, 16), 2048 + 6 * 577);
        assert_eq!(
            kv.max_concurrency(32_768),
            kv.num_blocks as f64 / (2048.0 + 6.0 * 577.0)
        );
        // Short requests never reach the window: every group keeps them whole.
        assert_eq!(layout.blocks_per_request(512, 16), 32 + 6 * 33);
        // 12 sliding and 13 full layers (gpt-oss with an EAGLE layer): within 25 %, one padded group of 13 each.
        let near = KvLayout {
            full_attention_layers: 13,
            sliding: Some(SlidingWindow {
                window: 128,
                layers: 12,
            }),
            ..layout
        };
        let kv = KvCapacity::from_budget(13 << 20, near, 16).unwrap();
        assert_eq!(kv.num_blocks, (13u64 << 20) / (13 * 16 * page));
        assert_eq!(kv.tokens(), kv.num_blocks / 2 * 16);
    }

    #[test]
    fn cpu_fixture_capacity_is_exact() {
        // fixtures/vllm_cpu/startup_and_run.log: VLLM_CPU_KVCACHE_SPACE=1 GiB, tiny model in bf16,
        // "CPU KV cache size: 262,144 tokens, Maximum concurrency for 2,048 tokens per request: 128.00x".
        let tiny = ModelShape::by_name("tiny").unwrap();
        let kvb = tiny.kv_bytes_per_token_per_rank(Dtype::Bfloat16, 1);
        let kv = KvCapacity::from_budget(1 << 30, KvLayout::uniform(kvb / 4, 4), 16).unwrap();
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
            message.starts_with("model does not fit: needs 138.55 GiB per GPU (weights 131.42 + "),
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
        let kv = KvCapacity::from_budget(1 << 40, KvLayout::uniform(u64::MAX, 1), 16).unwrap();
        assert_eq!(kv.num_blocks, 0);
        assert_eq!(kv.max_concurrency(u64::MAX), 0.0);
    }
}
