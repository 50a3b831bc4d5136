//! A simulated server's whole setup as one value (scenarios are values of it, flags override its fields) and
//! the one place that turns it into an engine, a cost model, metrics and an HTTP configuration.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::core::SimCore;
use crate::engine::{Engine, SchedulerConfig};
use crate::logs::{self, LogRecord, PyValue};
use crate::metrics::{CacheConfigInfo, VllmMetrics};
use crate::server::{Faults, ServerConfig, StopModel};
use infer_doctor_plan::{
    CacheConfig, Calibration, CostModel, Deployment, Gpu, HardwareError, Interconnect, MemoryPlan,
    ModelShape, Quantization,
};

/// The vLLM release whose metric names, log lines and defaults the simulator reproduces.
pub const VLLM_VERSION: &str = "0.32.0";

/// Everything needed to build a simulated server. Scenarios are values of this; flags override fields.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct SimSetup {
    /// A built-in model name or a path to an HF `config.json`.
    pub model: String,
    /// The name the server reports and accepts.
    pub served_model_name: String,
    pub gpu: String,
    pub tensor_parallel_size: u32,
    /// Force PCIe between tensor-parallel GPUs instead of the GPU's NVLink.
    pub pcie: bool,
    /// vLLM's `--quantization` for a checkpoint stored in 16 bits (`fp8`); `None`: as the checkpoint is.
    pub quantization: Option<String>,
    /// vLLM's `--kv-cache-dtype`; `None`: `auto`, the activations' dtype.
    pub kv_cache_dtype: Option<String>,
    pub gpu_memory_utilization: f64,
    pub num_gpu_blocks_override: Option<u32>,
    pub max_num_seqs: Option<u32>,
    pub max_num_batched_tokens: Option<u32>,
    pub max_model_len: u32,
    pub enable_prefix_caching: bool,
    pub enable_chunked_prefill: bool,
    pub stop: StopModel,
    pub faults: Faults,
    /// The first `cold_seconds` of steps run `cold_factor` times slower (compilation, graph capture).
    pub cold_seconds: f64,
    pub cold_factor: f64,
    /// Multiplies the GPU's compute and memory time of each step, not the host's per-step overhead or the
    /// all-reduces (a thermally or power-throttled GPU).
    pub throttle: f64,
    /// Step time grows by this fraction per 10,000 tokens generated (fragmentation, a leak: wear that comes
    /// with traffic, not with idle time).
    pub degrade_per_10k_tokens: f64,
    /// σ of the multiplicative lognormal jitter on each step.
    pub jitter_sigma: f64,
    pub seed: u64,
}

impl Default for SimSetup {
    fn default() -> Self {
        SimSetup {
            model: "llama-3.1-8b".into(),
            served_model_name: "sim-llama-3.1-8b".into(),
            gpu: "h100".into(),
            tensor_parallel_size: 1,
            pcie: false,
            quantization: None,
            kv_cache_dtype: None,
            gpu_memory_utilization: 0.9,
            num_gpu_blocks_override: None,
            max_num_seqs: None,
            max_num_batched_tokens: None,
            max_model_len: 8192,
            enable_prefix_caching: true,
            enable_chunked_prefill: true,
            stop: StopModel::LogNormal {
                median: 200.0,
                sigma: 0.5,
            },
            faults: Faults {
                error_status: 500,
                cut_after: 8,
                ..Default::default()
            },
            cold_seconds: 0.0,
            cold_factor: 1.0,
            throttle: 1.0,
            degrade_per_10k_tokens: 0.0,
            jitter_sigma: 0.05,
            seed: 0,
        }
    }
}

impl SimSetup {
    /// How much slower than the cost model a step at `uptime` seconds runs (throttling is in the cost model).
    pub fn slowdown(&self, uptime: f64, generated_tokens: u64) -> f64 {
        let cold = if uptime < self.cold_seconds {
            self.cold_factor
        } else {
            1.0
        };
        cold * (1.0 + self.degrade_per_10k_tokens * generated_tokens as f64 / 1e4)
    }
}

/// A setup turned into parts, with the facts a start-up log and a run record need.
pub struct Built {
    pub core: SimCore,
    pub server: ServerConfig,
    pub scheduler: SchedulerConfig,
    pub plan: MemoryPlan,
    pub model: ModelShape,
    pub gpu: Gpu,
    pub deployment: Deployment,
}

impl SimSetup {
    pub fn build(&self) -> Result<Built, HardwareError> {
        if self.max_model_len < 2 {
            return Err(HardwareError::InvalidSetting {
                setting: "max_model_len",
                value: self.max_model_len.to_string(),
                expected: "at least 2 tokens (a prompt token and an output token)".into(),
            });
        }
        let model = ModelShape::resolve(&self.model)?;
        let gpu = Gpu::by_name(&self.gpu)?;
        let mut deployment = Deployment::new(&model, &gpu, self.tensor_parallel_size);
        if let Some(method) = &self.quantization {
            deployment.quantize(Some(Quantization::from_flag(method)?));
        }
        if let Some(dtype) = self.kv_cache_dtype.as_deref().filter(|d| *d != "auto") {
            deployment.kv_cache_dtype = dtype.parse()?;
        }
        if self.pcie {
            deployment.interconnect = Interconnect::Pcie;
        }
        let cache = CacheConfig {
            gpu_memory_utilization: self.gpu_memory_utilization,
            num_gpu_blocks_override: self.num_gpu_blocks_override.map(u64::from),
            max_model_len: Some(u64::from(self.max_model_len)),
            ..CacheConfig::default()
        };
        let plan = MemoryPlan::compute(&model, &gpu, &deployment, &cache)?;
        let calibration = Calibration {
            jitter_sigma: self.jitter_sigma,
            throttle: self.throttle,
            ..Calibration::default()
        };
        let cost = CostModel::new(&model, &gpu, &deployment, calibration)?;
        let limits = gpu.default_batch_limits();
        // One pool for all layers: a hybrid model's blocks per group, so its sliding layers are charged as full
        // ones (conservative); a uniform model's blocks as they are.
        let pool_blocks = plan.kv.tokens() / plan.kv.block_size.max(1);
        let num_gpu_blocks = u32::try_from(pool_blocks).unwrap_or(u32::MAX);
        let scheduler = SchedulerConfig {
            block_size: plan.kv.block_size as u32,
            num_gpu_blocks,
            max_num_seqs: self
                .max_num_seqs
                .unwrap_or(limits.max_num_seqs.min(u64::from(u32::MAX)) as u32),
            max_num_batched_tokens: self
                .max_num_batched_tokens
                .unwrap_or(limits.max_num_batched_tokens.min(u64::from(u32::MAX)) as u32),
            max_model_len: self.max_model_len,
            enable_chunked_prefill: self.enable_chunked_prefill,
            enable_prefix_caching: self.enable_prefix_caching,
            long_prefill_token_threshold: 0,
        };
        // vLLM refuses to start when one request of max_model_len cannot fit (the null block aside).
        let usable_tokens =
            u64::from(num_gpu_blocks.saturating_sub(1)) * u64::from(scheduler.block_size);
        if usable_tokens < u64::from(self.max_model_len) {
            return Err(HardwareError::InvalidSetting {
                setting: "num_gpu_blocks",
                value: num_gpu_blocks.to_string(),
                expected: format!(
                    "enough blocks for one request of max_model_len {} ({} blocks of {} tokens, plus the null block)",
                    self.max_model_len,
                    self.max_model_len.div_ceil(scheduler.block_size),
                    scheduler.block_size
                ),
            });
        }
        let mut info = CacheConfigInfo::full_attention(
            scheduler.block_size,
            pool_blocks,
            self.gpu_memory_utilization,
            self.max_model_len,
        );
        info.enable_prefix_caching = self.enable_prefix_caching;
        info.num_gpu_blocks_override = self.num_gpu_blocks_override.map(u64::from);
        let started = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let metrics = VllmMetrics::new(&self.served_model_name, info, self.max_model_len, started);
        let mut core = SimCore::new(Engine::new(scheduler.clone()), cost, metrics, self.seed);
        let slowdown = self.clone();
        core.slowdown = Box::new(move |uptime, generated| slowdown.slowdown(uptime, generated));
        let server = ServerConfig {
            model: self.served_model_name.clone(),
            max_model_len: self.max_model_len,
            block_size: scheduler.block_size,
            vllm_version: VLLM_VERSION.into(),
            stop: self.stop.clone(),
            faults: self.faults.clone(),
            seed: self.seed,
            log_interval: Duration::from_secs(10),
            trace: None,
        };
        Ok(Built {
            core,
            server,
            scheduler,
            plan,
            model,
            gpu,
            deployment,
        })
    }
}

impl Built {
    /// The lines vLLM logs from launch until it starts listening, with this server's numbers: what `logs` and
    /// the diagnoser read for capacity and configuration.
    pub fn startup_log(&self, setup: &SimSetup, host: &str, port: u16) -> Vec<LogRecord> {
        let mut args = vec![
            ("host", PyValue::Str(host.to_string())),
            ("port", PyValue::Int(i64::from(port))),
            ("model", PyValue::Str(setup.model.clone())),
            (
                "max_model_len",
                PyValue::Int(i64::from(setup.max_model_len)),
            ),
            (
                "served_model_name",
                PyValue::List(vec![PyValue::Str(setup.served_model_name.clone())]),
            ),
        ];
        let optional = [
            (
                "tensor_parallel_size",
                Some(setup.tensor_parallel_size).filter(|&tp| tp > 1),
            ),
            ("max_num_seqs", setup.max_num_seqs),
            ("max_num_batched_tokens", setup.max_num_batched_tokens),
            ("num_gpu_blocks_override", setup.num_gpu_blocks_override),
        ];
        for (name, value) in optional {
            if let Some(v) = value {
                args.push((name, PyValue::Int(i64::from(v))));
            }
        }
        if (setup.gpu_memory_utilization - 0.9).abs() > 1e-9 {
            args.push((
                "gpu_memory_utilization",
                PyValue::Float(setup.gpu_memory_utilization),
            ));
        }
        if !setup.enable_prefix_caching {
            args.push(("enable_prefix_caching", PyValue::Bool(false)));
        }
        if !setup.enable_chunked_prefill {
            args.push(("enable_chunked_prefill", PyValue::Bool(false)));
        }
        let kv = &self.plan.kv;
        vec![
            logs::banner(VLLM_VERSION, &setup.model),
            logs::non_default_args(&args),
            logs::max_model_len(setup.max_model_len),
            // The simulated load takes no time; report the configured loading phase, if any.
            logs::model_loading(
                self.plan.weight_bytes_per_rank as u64,
                setup.faults.loading_seconds,
            ),
            logs::available_kv_cache_memory(self.plan.available_kv_bytes.max(0.0) as u64),
            logs::kv_cache_size(
                kv.tokens(),
                setup.max_model_len,
                self.plan.max_concurrency(),
            ),
            logs::engine_init_took(setup.faults.loading_seconds),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hugging_face_config_file_is_a_model() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(
            &path,
            r#"{"model_type": "llama", "num_hidden_layers": 32, "hidden_size": 4096, "num_attention_heads": 32,
                "num_key_value_heads": 8, "intermediate_size": 14336, "vocab_size": 128256,
                "max_position_embeddings": 131072, "torch_dtype": "bfloat16"}"#,
        )
        .unwrap();
        let from_file = SimSetup {
            model: path.display().to_string(),
            ..SimSetup::default()
        }
        .build()
        .unwrap();
        let built_in = SimSetup::default().build().unwrap();
        // The same shapes as the built-in Llama-3.1-8B: the same KV pool.
        assert_eq!(
            from_file.scheduler.num_gpu_blocks,
            built_in.scheduler.num_gpu_blocks
        );
        std::fs::write(&path, r#"{"model_type": "llama"}"#).unwrap();
        let err = SimSetup {
            model: path.display().to_string(),
            ..SimSetup::default()
        }
        .build()
        .err()
        .unwrap()
        .to_string();
        assert!(
            err.contains("config.json: missing field `hidden_size`"),
            "{err}"
        );
    }

    /// Issue 17: `--throttle` said every step takes that many times longer, but it slows only the GPU's work of a
    /// step; the host's per-step overhead runs as fast as before, as it does on a thermally throttled GPU.
    #[test]
    fn the_throttle_slows_the_gpu_work_of_each_step_not_the_host_overhead() {
        let mean_gap = |throttle: f64| {
            let mut built = SimSetup {
                throttle,
                jitter_sigma: 0.0,
                ..SimSetup::default()
            }
            .build()
            .unwrap();
            let block_size = built.scheduler.block_size;
            let outcome = crate::des::run_observed(
                &mut built.core,
                &crate::des::Arrivals::Closed {
                    users: 1,
                    requests: 1,
                },
                |id| crate::des::synthetic_request(id, 64, (0, 1), 20, None, block_size),
                1.0,
                60.0,
                true,
                |_, _| {},
            );
            let times = &outcome.token_times[&0];
            (times[times.len() - 1] - times[0]) / (times.len() - 1) as f64
        };
        let (normal, throttled) = (mean_gap(1.0), mean_gap(2.5));
        let host = Calibration::default().alpha_s;
        let expected = host + 2.5 * (normal - host);
        assert!(
            (throttled - expected).abs() < 1e-9,
            "a token every {throttled} s throttled, {normal} s not: expected {expected} s"
        );
        assert!(throttled < 2.5 * normal);
    }

    #[test]
    fn a_max_model_len_below_two_is_refused() {
        let setup = SimSetup {
            max_model_len: 1,
            ..SimSetup::default()
        };
        assert!(setup.build().is_err());
    }
}
