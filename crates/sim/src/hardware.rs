//! What the simulated server runs on: a GPU catalog (dense peaks), model shapes read from `config.json`,
//! and vLLM V1's memory arithmetic, so the simulated KV capacity and batch limits match a real server's.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use serde::Serialize;
use serde_json::{Map, Value};

const GIB: f64 = (1u64 << 30) as f64;
const MIB: u64 = 1 << 20;
/// Decimal giga, the unit of every datasheet bandwidth and FLOP/s figure.
const GIGA: f64 = 1e9;
const TERA: f64 = 1e12;

/// Everything that can go wrong turning names, files and settings into hardware and capacity.
#[derive(Debug, thiserror::Error)]
pub enum HardwareError {
    #[error("unknown GPU {name:?}; known GPUs: {known}")]
    UnknownGpu { name: String, known: String },
    #[error("unknown model {name:?}; built-in models: {known} (or give a config.json)")]
    UnknownModel { name: String, known: String },
    #[error("{origin}: cannot read: {source}")]
    ConfigRead {
        origin: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{origin}: not a config.json object: {message}")]
    ConfigSyntax { origin: String, message: String },
    #[error("{origin}: missing field `{field}`")]
    MissingField { origin: String, field: &'static str },
    #[error("{origin}: field `{field}` {problem}")]
    InvalidField {
        origin: String,
        field: &'static str,
        problem: String,
    },
    #[error("unknown dtype {0:?}; known: float32, float16, bfloat16, fp8")]
    UnknownDtype(String),
    #[error("{setting} = {value} is invalid: {expected}")]
    InvalidSetting {
        setting: &'static str,
        value: String,
        expected: String,
    },
    #[error("{gpu} has no {interconnect} link")]
    NoSuchLink {
        gpu: &'static str,
        interconnect: Interconnect,
    },
    #[error(
        "model does not fit: needs {needed_gib:.2} GiB per GPU (weights {weights_gib:.2} + activations \
         {activation_gib:.2} + non-torch {non_torch_gib:.2}), {available_gib:.2} GiB available \
         ({total_gib:.2} GiB x gpu_memory_utilization {utilization})"
    )]
    ModelDoesNotFit {
        needed_gib: f64,
        weights_gib: f64,
        activation_gib: f64,
        non_torch_gib: f64,
        available_gib: f64,
        total_gib: f64,
        utilization: f64,
    },
    #[error(
        "max_model_len {max_model_len} needs {needed_gib:.2} GiB of KV cache per GPU, more than the \
         {available_gib:.2} GiB available"
    )]
    MaxModelLenTooLong {
        max_model_len: u64,
        needed_gib: f64,
        available_gib: f64,
    },
}

/// Number formats for weights, activations and the KV cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Dtype {
    Float32,
    Float16,
    Bfloat16,
    Fp8,
}

impl Dtype {
    pub fn bytes(self) -> u64 {
        match self {
            Dtype::Float32 => 4,
            Dtype::Float16 | Dtype::Bfloat16 => 2,
            Dtype::Fp8 => 1,
        }
    }

    /// The dtype activations (and so all-reduces and vLLM's `kv_cache_dtype=auto`) use: FP8 checkpoints
    /// keep 16-bit activations.
    pub fn activation_dtype(self) -> Dtype {
        match self {
            Dtype::Fp8 => Dtype::Bfloat16,
            other => other,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Dtype::Float32 => "float32",
            Dtype::Float16 => "float16",
            Dtype::Bfloat16 => "bfloat16",
            Dtype::Fp8 => "fp8",
        }
    }
}

impl fmt::Display for Dtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Dtype {
    type Err = HardwareError;

    /// Accepts `config.json`'s `torch_dtype` spellings and vLLM's `--dtype` / `--kv-cache-dtype` ones.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let lower = text.trim().to_ascii_lowercase();
        let lower = lower.strip_prefix("torch.").unwrap_or(&lower);
        match lower {
            "float32" | "fp32" | "f32" | "float" => Ok(Dtype::Float32),
            "float16" | "fp16" | "f16" | "half" => Ok(Dtype::Float16),
            "bfloat16" | "bf16" => Ok(Dtype::Bfloat16),
            _ if lower.starts_with("fp8") || lower.starts_with("float8") => Ok(Dtype::Fp8),
            _ => Err(HardwareError::UnknownDtype(text.to_owned())),
        }
    }
}

/// How tensor-parallel ranks exchange activations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Interconnect {
    /// The GPU's scale-up fabric: NVLink on NVIDIA, Infinity Fabric on AMD.
    NvLink,
    Pcie,
}

impl fmt::Display for Interconnect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Interconnect::NvLink => "NVLink",
            Interconnect::Pcie => "PCIe",
        })
    }
}

// NCCL-style collectives pay a fixed cost per call on top of bandwidth. 20 µs is BLIS's `allReduceLatency`
// (inference-sim docs/design/roofline.md); PCIe, routed through switches or the host, is taken as twice that
// (inference, no measurement read).
const NVLINK_ALL_REDUCE_LATENCY_S: f64 = 20e-6;
const PCIE_ALL_REDUCE_LATENCY_S: f64 = 40e-6;
// PCIe x16 per direction: Gen4 16 GT/s x 16 lanes x 128/130 ≈ 31.5 GB/s, Gen5 twice that.
const PCIE_GEN4_X16: f64 = 32.0 * GIGA;
const PCIE_GEN5_X16: f64 = 64.0 * GIGA;

/// One GPU's link of a given kind.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Link {
    pub interconnect: Interconnect,
    /// Bytes/s each way; a ring all-reduce sends and receives at once, so this is the rate it sees.
    pub bandwidth_per_direction: f64,
    pub latency_s: f64,
}

impl Link {
    /// Ring all-reduce of `bytes` over `ranks` GPUs: 2(TP−1)/TP of the buffer crosses each link, plus the
    /// per-collective latency; nothing at one rank.
    pub fn all_reduce_seconds(&self, bytes: f64, ranks: u32) -> f64 {
        if ranks <= 1 {
            return 0.0;
        }
        let ranks = f64::from(ranks);
        2.0 * (ranks - 1.0) / ranks * bytes / self.bandwidth_per_direction + self.latency_s
    }
}

/// vLLM's scheduler limits when the user sets none.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct BatchLimits {
    pub max_num_seqs: u64,
    pub max_num_batched_tokens: u64,
}

/// One GPU model with the dense peaks the roofline needs (datasheet "with sparsity" figures are halved).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Gpu {
    /// Catalog name, e.g. `h100-sxm`.
    pub name: &'static str,
    /// The name the driver reports (`nvidia-smi`, `torch.cuda.get_device_name`); vLLM keys defaults on it.
    pub device_name: &'static str,
    #[serde(skip)]
    pub aliases: &'static [&'static str],
    /// Memory the runtime sees (what vLLM multiplies by `gpu_memory_utilization`), not the marketing size.
    pub memory_bytes: u64,
    /// HBM/GDDR bytes/s.
    pub memory_bandwidth: f64,
    pub bf16_flops: f64,
    /// `None` where the GPU has no FP8 tensor cores; FP8 weights then compute in 16 bits (W8A16).
    pub fp8_flops: Option<f64>,
    /// Per direction; `None` where the card has no NVLink or bridge.
    pub nvlink_bandwidth_per_direction: Option<f64>,
    pub pcie_bandwidth_per_direction: f64,
    pub default_interconnect: Interconnect,
}

// Peaks and bandwidths: research/sim_capacity.md §B3 (vendor datasheets, dense). NVLink figures below are
// the datasheets' per-GPU totals (both directions) halved. Memory: nvidia-smi total minus reserved from the
// captures in shared/fixtures/gpu (H100, H200), torch/rocm-smi `total_memory` captures (A100 80GB, MI300X),
// else the nvidia-smi total seen in public logs.
static GPUS: [Gpu; 11] = [
    Gpu {
        name: "h100-sxm",
        device_name: "NVIDIA H100 80GB HBM3",
        aliases: &[
            "h100",
            "h100-sxm5",
            "h100-80gb",
            "h100-80gb-hbm3",
            "h100-sxm5-80gb",
        ],
        memory_bytes: (81_559 - 479) * MIB,
        memory_bandwidth: 3_350.0 * GIGA,
        bf16_flops: 989.4 * TERA,
        fp8_flops: Some(1_978.9 * TERA),
        nvlink_bandwidth_per_direction: Some(900.0 / 2.0 * GIGA),
        pcie_bandwidth_per_direction: PCIE_GEN5_X16,
        default_interconnect: Interconnect::NvLink,
    },
    Gpu {
        name: "h100-pcie",
        device_name: "NVIDIA H100 PCIe",
        aliases: &["h100-pcie-80gb"],
        memory_bytes: (81_559 - 479) * MIB,
        memory_bandwidth: 2_000.0 * GIGA,
        bf16_flops: 756.0 * TERA,
        fp8_flops: Some(1_513.0 * TERA),
        // NVLink bridge between card pairs: 600 GB/s.
        nvlink_bandwidth_per_direction: Some(600.0 / 2.0 * GIGA),
        pcie_bandwidth_per_direction: PCIE_GEN5_X16,
        default_interconnect: Interconnect::Pcie,
    },
    Gpu {
        name: "h200",
        device_name: "NVIDIA H200",
        aliases: &["h200-sxm", "h200-141gb"],
        memory_bytes: (143_771 - 614) * MIB,
        memory_bandwidth: 4_800.0 * GIGA,
        bf16_flops: 989.4 * TERA,
        fp8_flops: Some(1_978.9 * TERA),
        nvlink_bandwidth_per_direction: Some(900.0 / 2.0 * GIGA),
        pcie_bandwidth_per_direction: PCIE_GEN5_X16,
        default_interconnect: Interconnect::NvLink,
    },
    Gpu {
        name: "a100-40gb",
        device_name: "NVIDIA A100-SXM4-40GB",
        aliases: &[
            "a100-sxm4-40gb",
            "a100-pcie-40gb",
            "a100-40gb-pcie",
            "a100-40gb-sxm",
        ],
        memory_bytes: 40_960 * MIB,
        memory_bandwidth: 1_555.0 * GIGA,
        bf16_flops: 312.0 * TERA,
        fp8_flops: None,
        nvlink_bandwidth_per_direction: Some(600.0 / 2.0 * GIGA),
        pcie_bandwidth_per_direction: PCIE_GEN4_X16,
        default_interconnect: Interconnect::NvLink,
    },
    Gpu {
        name: "a100-80gb-sxm",
        device_name: "NVIDIA A100-SXM4-80GB",
        aliases: &["a100", "a100-80gb", "a100-sxm", "a100-sxm4-80gb"],
        memory_bytes: 85_056_798_720,
        memory_bandwidth: 2_039.0 * GIGA,
        bf16_flops: 312.0 * TERA,
        fp8_flops: None,
        nvlink_bandwidth_per_direction: Some(600.0 / 2.0 * GIGA),
        pcie_bandwidth_per_direction: PCIE_GEN4_X16,
        default_interconnect: Interconnect::NvLink,
    },
    Gpu {
        name: "a100-80gb-pcie",
        device_name: "NVIDIA A100 80GB PCIe",
        aliases: &["a100-pcie", "a100-pcie-80gb"],
        memory_bytes: 85_056_798_720,
        memory_bandwidth: 1_935.0 * GIGA,
        bf16_flops: 312.0 * TERA,
        fp8_flops: None,
        nvlink_bandwidth_per_direction: Some(600.0 / 2.0 * GIGA),
        pcie_bandwidth_per_direction: PCIE_GEN4_X16,
        default_interconnect: Interconnect::Pcie,
    },
    Gpu {
        name: "l40s",
        device_name: "NVIDIA L40S",
        aliases: &[],
        memory_bytes: 46_068 * MIB,
        memory_bandwidth: 864.0 * GIGA,
        bf16_flops: 362.05 * TERA,
        fp8_flops: Some(733.0 * TERA),
        nvlink_bandwidth_per_direction: None,
        pcie_bandwidth_per_direction: PCIE_GEN4_X16,
        default_interconnect: Interconnect::Pcie,
    },
    Gpu {
        name: "l4",
        device_name: "NVIDIA L4",
        aliases: &[],
        memory_bytes: 23_034 * MIB,
        memory_bandwidth: 300.0 * GIGA,
        bf16_flops: 121.0 * TERA,
        fp8_flops: Some(242.5 * TERA),
        nvlink_bandwidth_per_direction: None,
        pcie_bandwidth_per_direction: PCIE_GEN4_X16,
        default_interconnect: Interconnect::Pcie,
    },
    Gpu {
        name: "a10",
        device_name: "NVIDIA A10",
        aliases: &[],
        // The A10G capture (fixtures/gpu/telegraf__a10g.xml) shows 23028 MiB; A10 has the same 24 GB GDDR6.
        memory_bytes: 23_028 * MIB,
        memory_bandwidth: 600.0 * GIGA,
        bf16_flops: 125.0 * TERA,
        fp8_flops: None,
        nvlink_bandwidth_per_direction: None,
        pcie_bandwidth_per_direction: PCIE_GEN4_X16,
        default_interconnect: Interconnect::Pcie,
    },
    Gpu {
        name: "b200",
        device_name: "NVIDIA B200",
        aliases: &["hgx-b200", "b200-180gb"],
        memory_bytes: 183_359 * MIB,
        memory_bandwidth: 7_700.0 * GIGA,
        bf16_flops: 2_250.0 * TERA,
        fp8_flops: Some(4_500.0 * TERA),
        // NVLink 5: 1.8 TB/s per GPU.
        nvlink_bandwidth_per_direction: Some(1_800.0 / 2.0 * GIGA),
        pcie_bandwidth_per_direction: PCIE_GEN5_X16,
        default_interconnect: Interconnect::NvLink,
    },
    Gpu {
        name: "mi300x",
        device_name: "AMD Instinct MI300X",
        aliases: &["mi300"],
        memory_bytes: 205_822_885_888,
        memory_bandwidth: 5_300.0 * GIGA,
        bf16_flops: 1_307.4 * TERA,
        fp8_flops: Some(2_614.9 * TERA),
        // Infinity Fabric: 7 links x 128 GB/s = 896 GB/s per GPU (AMD MI300X datasheet).
        nvlink_bandwidth_per_direction: Some(896.0 / 2.0 * GIGA),
        pcie_bandwidth_per_direction: PCIE_GEN5_X16,
        default_interconnect: Interconnect::NvLink,
    },
];

/// Lower-cases and drops vendor prefixes so `NVIDIA H100 80GB HBM3`, `H100_80GB_HBM3` and `h100-80gb-hbm3`
/// meet.
fn normalize_gpu_name(name: &str) -> String {
    let dashed: String = name
        .trim()
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c == ' ' || c == '_' { '-' } else { c })
        .collect();
    ["nvidia-", "amd-instinct-", "amd-"]
        .iter()
        .fold(dashed, |acc, prefix| {
            acc.strip_prefix(prefix).map(str::to_owned).unwrap_or(acc)
        })
}

impl Gpu {
    pub fn catalog() -> &'static [Gpu] {
        &GPUS
    }

    /// Finds a GPU by catalog name, alias or driver-reported name, ignoring case.
    pub fn by_name(name: &str) -> Result<Gpu, HardwareError> {
        let wanted = normalize_gpu_name(name);
        GPUS.iter()
            .find(|gpu| {
                gpu.name == wanted
                    || gpu.aliases.contains(&wanted.as_str())
                    || normalize_gpu_name(gpu.device_name) == wanted
            })
            .cloned()
            .ok_or_else(|| HardwareError::UnknownGpu {
                name: name.to_owned(),
                known: GPUS
                    .iter()
                    .map(|gpu| gpu.name)
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    /// Dense tensor-core peak for matmuls in `dtype`. float32 runs as TF32, half the BF16 rate on every GPU
    /// listed; FP8 without FP8 units falls back to the 16-bit rate.
    pub fn peak_flops(&self, dtype: Dtype) -> f64 {
        match dtype {
            Dtype::Float32 => self.bf16_flops / 2.0,
            Dtype::Float16 | Dtype::Bfloat16 => self.bf16_flops,
            Dtype::Fp8 => self.fp8_flops.unwrap_or(self.bf16_flops),
        }
    }

    pub fn link(&self, interconnect: Interconnect) -> Result<Link, HardwareError> {
        let (bandwidth, latency_s) = match interconnect {
            Interconnect::NvLink => (
                self.nvlink_bandwidth_per_direction,
                NVLINK_ALL_REDUCE_LATENCY_S,
            ),
            Interconnect::Pcie => (
                Some(self.pcie_bandwidth_per_direction),
                PCIE_ALL_REDUCE_LATENCY_S,
            ),
        };
        let bandwidth_per_direction = bandwidth.ok_or(HardwareError::NoSuchLink {
            gpu: self.name,
            interconnect,
        })?;
        Ok(Link {
            interconnect,
            bandwidth_per_direction,
            latency_s,
        })
    }

    /// vLLM's `get_batch_defaults` for the OpenAI server: big limits on ≥ 70 GiB devices whose name does not
    /// contain "a100", small ones elsewhere (research/sim_capacity.md §C, [S9]).
    pub fn default_batch_limits(&self) -> BatchLimits {
        let large = self.memory_bytes as f64 >= 70.0 * GIB
            && !self.device_name.to_ascii_lowercase().contains("a100");
        if large {
            BatchLimits {
                max_num_seqs: 1024,
                max_num_batched_tokens: 8192,
            }
        } else {
            BatchLimits {
                max_num_seqs: 256,
                max_num_batched_tokens: 2048,
            }
        }
    }
}

/// The mixture-of-experts part of a model's MLP.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MoeShape {
    pub num_experts: u64,
    pub experts_per_token: u64,
    pub expert_intermediate_size: u64,
    /// 0 when the model has no shared expert.
    pub shared_expert_intermediate_size: u64,
}

/// The shape of a decoder-only transformer, as far as memory and FLOPs care.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ModelShape {
    pub name: String,
    /// `config.json`'s `model_type` (e.g. `llama`, `qwen3`); picks the activation reserve.
    pub model_type: String,
    pub num_layers: u64,
    pub hidden_size: u64,
    pub num_attention_heads: u64,
    pub num_kv_heads: u64,
    pub head_dim: u64,
    pub intermediate_size: u64,
    pub vocab_size: u64,
    pub tie_word_embeddings: bool,
    /// The checkpoint's dtype (`torch_dtype` / `dtype`).
    pub dtype: Dtype,
    /// vLLM's default `max_model_len`.
    pub max_position_embeddings: u64,
    pub moe: Option<MoeShape>,
}

// Real configs trimmed to the fields ModelShape reads. `tiny` is the project's test model
// (research/real_targets.md §3: llama, 4 layers, n_embd 256, 4/4 heads, n_ff 768, vocab 1155, ctx 4096, F32;
// llama-server counts 4,001,536 parameters, which this shape reproduces with untied embeddings).
const BUILT_IN_MODELS: [(&str, &[&str], &str); 4] = [
    (
        "tiny",
        &["tiny-llama"],
        r#"{"model_type": "llama", "num_hidden_layers": 4, "hidden_size": 256, "num_attention_heads": 4,
            "num_key_value_heads": 4, "intermediate_size": 768, "vocab_size": 1155,
            "max_position_embeddings": 4096, "tie_word_embeddings": false, "torch_dtype": "float32"}"#,
    ),
    (
        "llama-3.1-8b",
        &[
            "llama-3.1-8b-instruct",
            "meta-llama-3.1-8b",
            "meta-llama-3.1-8b-instruct",
        ],
        r#"{"model_type": "llama", "num_hidden_layers": 32, "hidden_size": 4096, "num_attention_heads": 32,
            "num_key_value_heads": 8, "intermediate_size": 14336, "vocab_size": 128256,
            "max_position_embeddings": 131072, "tie_word_embeddings": false, "torch_dtype": "bfloat16"}"#,
    ),
    (
        "llama-3.1-70b",
        &[
            "llama-3.1-70b-instruct",
            "meta-llama-3.1-70b",
            "meta-llama-3.1-70b-instruct",
        ],
        r#"{"model_type": "llama", "num_hidden_layers": 80, "hidden_size": 8192, "num_attention_heads": 64,
            "num_key_value_heads": 8, "intermediate_size": 28672, "vocab_size": 128256,
            "max_position_embeddings": 131072, "tie_word_embeddings": false, "torch_dtype": "bfloat16"}"#,
    ),
    (
        "qwen3-8b",
        &[],
        r#"{"model_type": "qwen3", "num_hidden_layers": 36, "hidden_size": 4096, "num_attention_heads": 32,
            "num_key_value_heads": 8, "head_dim": 128, "intermediate_size": 12288, "vocab_size": 151936,
            "max_position_embeddings": 40960, "tie_word_embeddings": false, "torch_dtype": "bfloat16"}"#,
    ),
];

// vLLM's `_get_and_verify_max_len` takes the smallest of these keys, and 2048 when none is present.
const MAX_LEN_KEYS: [&str; 8] = [
    "max_position_embeddings",
    "n_positions",
    "max_seq_len",
    "seq_length",
    "model_max_length",
    "max_sequence_length",
    "max_seq_length",
    "seq_len",
];
const DEFAULT_MAX_LEN: u64 = 2048;

/// Reads typed fields from one `config.json` object, naming the file and field in every error.
struct ConfigFields<'a> {
    origin: &'a str,
    object: &'a Map<String, Value>,
}

impl ConfigFields<'_> {
    fn invalid(&self, field: &'static str, problem: &str) -> HardwareError {
        HardwareError::InvalidField {
            origin: self.origin.to_owned(),
            field,
            problem: problem.to_owned(),
        }
    }

    /// `null` counts as absent, as transformers treats it.
    fn optional_u64(&self, field: &'static str) -> Result<Option<u64>, HardwareError> {
        match self.object.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(value) => value.as_u64().map(Some).ok_or_else(|| {
                self.invalid(
                    field,
                    &format!("must be a non-negative integer, got {value}"),
                )
            }),
        }
    }

    fn positive_u64(&self, field: &'static str) -> Result<Option<u64>, HardwareError> {
        match self.optional_u64(field)? {
            Some(0) => Err(self.invalid(field, "must be positive, got 0")),
            other => Ok(other),
        }
    }

    fn required(&self, field: &'static str) -> Result<u64, HardwareError> {
        self.positive_u64(field)?
            .ok_or_else(|| HardwareError::MissingField {
                origin: self.origin.to_owned(),
                field,
            })
    }

    fn optional_bool(&self, field: &'static str) -> Result<Option<bool>, HardwareError> {
        match self.object.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(value) => value
                .as_bool()
                .map(Some)
                .ok_or_else(|| self.invalid(field, &format!("must be true or false, got {value}"))),
        }
    }

    fn optional_str(&self, field: &'static str) -> Result<Option<&str>, HardwareError> {
        match self.object.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(value) => value
                .as_str()
                .map(Some)
                .ok_or_else(|| self.invalid(field, &format!("must be a string, got {value}"))),
        }
    }

    fn dtype(&self) -> Result<Dtype, HardwareError> {
        // Newer transformers write `dtype`, older `torch_dtype`; a config without either loads as float32.
        for field in ["dtype", "torch_dtype"] {
            if let Some(text) = self.optional_str(field)? {
                return text
                    .parse()
                    .map_err(|_| self.invalid(field, &format!("is an unknown dtype {text:?}")));
            }
        }
        Ok(Dtype::Float32)
    }

    fn max_len(&self) -> Result<u64, HardwareError> {
        let mut smallest: Option<u64> = None;
        for field in MAX_LEN_KEYS {
            if let Some(len) = self.positive_u64(field)? {
                smallest = Some(smallest.map_or(len, |s| s.min(len)));
            }
        }
        Ok(smallest.unwrap_or(DEFAULT_MAX_LEN))
    }

    fn moe(&self, hidden_intermediate: Option<u64>) -> Result<Option<MoeShape>, HardwareError> {
        // Mixtral says `num_local_experts`, Qwen-MoE `num_experts`.
        let experts = match self.positive_u64("num_local_experts")? {
            Some(n) => Some(("num_local_experts", n)),
            None => self
                .positive_u64("num_experts")?
                .map(|n| ("num_experts", n)),
        };
        let Some((experts_field, num_experts)) = experts else {
            return Ok(None);
        };
        let experts_per_token = self.required("num_experts_per_tok")?;
        if experts_per_token > num_experts {
            return Err(self.invalid(
                "num_experts_per_tok",
                &format!(
                    "is {experts_per_token}, more than the {num_experts} of `{experts_field}`"
                ),
            ));
        }
        // Mixtral sizes experts with `intermediate_size`, Qwen-MoE with `moe_intermediate_size`.
        let expert_intermediate_size = match self.positive_u64("moe_intermediate_size")? {
            Some(size) => size,
            None => hidden_intermediate.ok_or_else(|| HardwareError::MissingField {
                origin: self.origin.to_owned(),
                field: "moe_intermediate_size",
            })?,
        };
        Ok(Some(MoeShape {
            num_experts,
            experts_per_token,
            expert_intermediate_size,
            shared_expert_intermediate_size: self
                .optional_u64("shared_expert_intermediate_size")?
                .unwrap_or(0),
        }))
    }
}

fn normalize_model_name(name: &str) -> String {
    let lower = name.trim().to_ascii_lowercase();
    let base = lower.rsplit('/').next().unwrap_or(&lower);
    base.replace(['_', ' '], "-")
}

impl ModelShape {
    pub fn catalog_names() -> Vec<&'static str> {
        BUILT_IN_MODELS.iter().map(|(name, _, _)| *name).collect()
    }

    /// A built-in model by name or Hugging Face id (`meta-llama/Llama-3.1-8B-Instruct`), ignoring case.
    pub fn by_name(name: &str) -> Result<ModelShape, HardwareError> {
        let wanted = normalize_model_name(name);
        let (canonical, _, json) = BUILT_IN_MODELS
            .iter()
            .find(|(canonical, aliases, _)| {
                *canonical == wanted || aliases.contains(&wanted.as_str())
            })
            .ok_or_else(|| HardwareError::UnknownModel {
                name: name.to_owned(),
                known: Self::catalog_names().join(", "),
            })?;
        Self::from_config_str(canonical, &format!("built-in model {canonical}"), json)
    }

    /// Reads a Hugging Face `config.json`; the model is named after the directory holding it.
    pub fn from_config_file(path: &Path) -> Result<ModelShape, HardwareError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| HardwareError::ConfigRead {
            origin: origin.clone(),
            source,
        })?;
        let name = path
            .parent()
            .and_then(Path::file_name)
            .map_or_else(|| origin.clone(), |dir| dir.to_string_lossy().into_owned());
        Self::from_config_str(&name, &origin, &text)
    }

    /// Parses `config.json` text; `origin` (a path, usually) prefixes every error.
    pub fn from_config_str(
        name: &str,
        origin: &str,
        json: &str,
    ) -> Result<ModelShape, HardwareError> {
        let syntax = |message: String| HardwareError::ConfigSyntax {
            origin: origin.to_owned(),
            message,
        };
        let root: Value = serde_json::from_str(json).map_err(|e| syntax(e.to_string()))?;
        let root = root
            .as_object()
            .ok_or_else(|| syntax("the top level is not an object".to_owned()))?;
        // Multimodal configs (Llama 4, Gemma 3, Mistral 3) keep the language model under `text_config`.
        let object = match root.get("text_config") {
            Some(Value::Object(text)) if !root.contains_key("num_hidden_layers") => text,
            _ => root,
        };
        let fields = ConfigFields { origin, object };

        let hidden_size = fields.required("hidden_size")?;
        let num_attention_heads = fields.required("num_attention_heads")?;
        let head_dim = match fields.positive_u64("head_dim")? {
            Some(dim) => dim,
            None if hidden_size % num_attention_heads == 0 => hidden_size / num_attention_heads,
            None => {
                return Err(fields.invalid(
                    "head_dim",
                    &format!(
                        "is absent and hidden_size {hidden_size} is not a multiple of num_attention_heads \
                         {num_attention_heads}"
                    ),
                ));
            }
        };
        let intermediate = fields.positive_u64("intermediate_size")?;
        let moe = fields.moe(intermediate)?;
        let intermediate_size = match (&moe, intermediate) {
            (_, Some(size)) => size,
            (Some(moe), None) => moe.expert_intermediate_size,
            (None, None) => {
                return Err(HardwareError::MissingField {
                    origin: origin.to_owned(),
                    field: "intermediate_size",
                });
            }
        };
        Ok(ModelShape {
            name: name.to_owned(),
            model_type: root
                .get("model_type")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            num_layers: fields.required("num_hidden_layers")?,
            hidden_size,
            num_attention_heads,
            num_kv_heads: fields
                .positive_u64("num_key_value_heads")?
                .unwrap_or(num_attention_heads),
            head_dim,
            intermediate_size,
            vocab_size: fields.required("vocab_size")?,
            // LlamaConfig, Qwen2/3Config and MixtralConfig all default to untied.
            tie_word_embeddings: fields
                .optional_bool("tie_word_embeddings")?
                .unwrap_or(false),
            dtype: fields.dtype()?,
            max_position_embeddings: fields.max_len()?,
            moe,
        })
    }

    /// The dtype vLLM serves with `--dtype auto`: float32 checkpoints are downcast to bfloat16 (the CPU
    /// fixture logs "Downcasting torch.float32 to torch.bfloat16").
    pub fn default_serving_dtype(&self) -> Dtype {
        match self.dtype {
            Dtype::Float32 => Dtype::Bfloat16,
            other => other,
        }
    }

    /// n_heads·head_dim: the query width, which differs from hidden_size in e.g. Qwen3-4B and Gemma.
    pub fn query_dim(&self) -> u64 {
        self.num_attention_heads.saturating_mul(self.head_dim)
    }

    // Shape arithmetic runs in f64: exact for every real model (< 2^53 parameters) and, unlike u64, unable to
    // overflow on an absurd config.json.

    fn attention_parameters_per_layer(&self) -> f64 {
        let d = self.hidden_size as f64;
        let q_dim = self.query_dim() as f64;
        let kv_dim = (self.num_kv_heads as f64) * (self.head_dim as f64);
        d * q_dim + 2.0 * d * kv_dim + q_dim * d
    }

    fn expert_parameters_per_layer(&self) -> f64 {
        self.moe.as_ref().map_or(0.0, |moe| {
            3.0 * (self.hidden_size as f64)
                * (moe.expert_intermediate_size as f64)
                * (moe.num_experts as f64)
        })
    }

    /// MLP weights every token passes through: the SwiGLU, or for MoE the router and shared expert.
    fn always_active_mlp_parameters_per_layer(&self) -> f64 {
        let d = self.hidden_size as f64;
        match &self.moe {
            None => 3.0 * d * self.intermediate_size as f64,
            Some(moe) => {
                moe.num_experts as f64 * d + 3.0 * d * moe.shared_expert_intermediate_size as f64
            }
        }
    }

    fn parameters(&self) -> f64 {
        let d = self.hidden_size as f64;
        let embedding_tables = if self.tie_word_embeddings { 1.0 } else { 2.0 };
        let norms_per_layer = 2.0 * d;
        let per_layer = self.attention_parameters_per_layer()
            + self.always_active_mlp_parameters_per_layer()
            + self.expert_parameters_per_layer()
            + norms_per_layer;
        embedding_tables * self.vocab_size as f64 * d + d + self.num_layers as f64 * per_layer
    }

    /// Every stored weight (§B2's formula, with the query width in q/o so heads·head_dim ≠ hidden is right).
    pub fn parameter_count(&self) -> u64 {
        self.parameters() as u64
    }

    /// All routed-expert weights, which a step only partly reads.
    pub fn expert_parameter_count(&self) -> u64 {
        (self.num_layers as f64 * self.expert_parameters_per_layer()) as u64
    }

    fn active_layer_parameters_f64(&self) -> f64 {
        let routed = self.moe.as_ref().map_or(0.0, |moe| {
            3.0 * (self.hidden_size as f64)
                * (moe.expert_intermediate_size as f64)
                * (moe.experts_per_token as f64)
        });
        self.num_layers as f64
            * (self.attention_parameters_per_layer()
                + self.always_active_mlp_parameters_per_layer()
                + routed)
    }

    /// Matmul weights one token multiplies through the decoder layers (only its own experts for MoE). The
    /// embedding is a lookup, and the LM head only runs for sampled positions, so neither is in here.
    pub fn active_layer_parameters(&self) -> u64 {
        self.active_layer_parameters_f64() as u64
    }

    /// 2·N matmul FLOPs per token through the layers.
    pub fn flops_per_token(&self) -> f64 {
        2.0 * self.active_layer_parameters_f64()
    }

    /// 2·V·d FLOPs of the LM head for each position whose logits are computed.
    pub fn lm_head_flops(&self) -> f64 {
        2.0 * self.vocab_size as f64 * self.hidden_size as f64
    }

    /// 4·L·d_q: QKᵀ and AV FLOPs per (query token × attended token).
    pub fn attention_flops_factor(&self) -> f64 {
        4.0 * self.num_layers as f64 * self.query_dim() as f64
    }

    pub fn weight_bytes_per_rank(&self, dtype: Dtype, tensor_parallel: u32) -> f64 {
        self.parameters() * dtype.bytes() as f64 / f64::from(tensor_parallel.max(1))
    }

    /// KV bytes one token occupies on one rank: 2·max(1, kv_heads/TP)·head_dim·bytes·layers (KV heads are
    /// replicated when there are fewer than ranks).
    pub fn kv_bytes_per_token_per_rank(&self, kv_dtype: Dtype, tensor_parallel: u32) -> u64 {
        let heads_per_rank = (self.num_kv_heads / u64::from(tensor_parallel.max(1))).max(1);
        [
            heads_per_rank,
            self.head_dim,
            kv_dtype.bytes(),
            self.num_layers,
        ]
        .into_iter()
        .fold(2, u64::saturating_mul)
    }

    /// llm-d-planner's constant for the profile run's peak activations (CUDA graphs included), measured on
    /// H100 at 16k context: MoE 8.0 GiB, Llama 4.8, Qwen 5.6, other dense 5.5 (research/sim_capacity.md §B1).
    pub fn activation_reserve_bytes(&self) -> f64 {
        let family = self.model_type.to_ascii_lowercase();
        let gib = if self.moe.is_some() {
            8.0
        } else if family.contains("llama") {
            4.8
        } else if family.contains("qwen") {
            5.6
        } else {
            5.5
        };
        gib * GIB
    }
}

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

    fn llama_8b() -> ModelShape {
        ModelShape::by_name("llama-3.1-8b").unwrap()
    }

    fn plan(
        model: &ModelShape,
        gpu: &str,
        tp: u32,
        cache: CacheConfig,
    ) -> Result<MemoryPlan, HardwareError> {
        let gpu = Gpu::by_name(gpu).unwrap();
        MemoryPlan::compute(model, &gpu, &Deployment::new(model, &gpu, tp), &cache)
    }

    fn within(actual: f64, expected: f64, relative: f64) -> bool {
        (actual - expected).abs() <= expected.abs() * relative
    }

    #[test]
    fn llama_8b_matches_the_worked_check() {
        let model = llama_8b();
        assert_eq!(model.parameter_count(), 8_030_261_248);
        assert_eq!(
            model.kv_bytes_per_token_per_rank(Dtype::Bfloat16, 1),
            131_072
        );
        assert!(within(
            model.weight_bytes_per_rank(Dtype::Bfloat16, 1),
            16.06e9,
            0.001
        ));
        // 2·N excludes embedding and LM head: §B3's 2.86e13 FLOPs for 2048 prompt tokens.
        assert!(within(model.flops_per_token() * 2048.0, 2.86e13, 0.005));
    }

    #[test]
    fn llama_70b_kv_and_weights() {
        let model = ModelShape::by_name("meta-llama/Llama-3.1-70B-Instruct").unwrap();
        assert_eq!(
            model.kv_bytes_per_token_per_rank(Dtype::Bfloat16, 1),
            327_680
        );
        assert!(within(
            model.weight_bytes_per_rank(Dtype::Bfloat16, 1),
            141e9,
            0.01
        ));
        assert!(within(
            model.weight_bytes_per_rank(Dtype::Bfloat16, 4),
            35.3e9,
            0.01
        ));
    }

    #[test]
    fn tiny_model_has_llama_server_parameter_count() {
        let tiny = ModelShape::by_name("TINY").unwrap();
        assert_eq!(tiny.parameter_count(), 4_001_536);
        assert_eq!(tiny.dtype, Dtype::Float32);
        assert_eq!(tiny.default_serving_dtype(), Dtype::Bfloat16);
        assert_eq!(tiny.kv_bytes_per_token_per_rank(Dtype::Bfloat16, 1), 4096);
    }

    #[test]
    fn qwen3_shapes_use_the_query_width() {
        let qwen3_8b = ModelShape::by_name("Qwen/Qwen3-8B").unwrap();
        assert!(within(qwen3_8b.parameter_count() as f64, 8.19e9, 0.005));
        // Qwen3-4B: 32 heads x 128 = 4096 ≠ hidden 2560; d·d for q/o would undercount by ~0.28 B.
        let json = r#"{"model_type": "qwen3", "num_hidden_layers": 36, "hidden_size": 2560,
            "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 128, "intermediate_size": 9728,
            "vocab_size": 151936, "tie_word_embeddings": true, "torch_dtype": "bfloat16",
            "max_position_embeddings": 40960}"#;
        let qwen3_4b = ModelShape::from_config_str("qwen3-4b", "config.json", json).unwrap();
        assert_eq!(qwen3_4b.query_dim(), 4096);
        assert_eq!(qwen3_4b.parameter_count(), 4_022_458_880);
        assert_eq!(qwen3_4b.attention_flops_factor(), 4.0 * 36.0 * 4096.0);
    }

    #[test]
    fn moe_counts_all_experts_stored_and_k_active() {
        let mixtral = r#"{"model_type": "mixtral", "num_hidden_layers": 32, "hidden_size": 4096,
            "num_attention_heads": 32, "num_key_value_heads": 8, "intermediate_size": 14336,
            "num_local_experts": 8, "num_experts_per_tok": 2, "vocab_size": 32000,
            "tie_word_embeddings": false, "torch_dtype": "bfloat16", "max_position_embeddings": 32768}"#;
        let model = ModelShape::from_config_str("mixtral", "config.json", mixtral).unwrap();
        assert!(within(model.parameter_count() as f64, 46.7e9, 0.01));
        // 12.9 B active minus the 0.26 B of embedding and LM head.
        assert!(within(model.active_layer_parameters() as f64, 12.6e9, 0.01));
        assert_eq!(model.activation_reserve_bytes(), 8.0 * GIB);
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
    fn missing_and_malformed_fields_name_file_and_field() {
        let missing = r#"{"hidden_size": 4096, "num_attention_heads": 32, "intermediate_size": 14336,
            "vocab_size": 128256}"#;
        let error = ModelShape::from_config_str("m", "/models/m/config.json", missing).unwrap_err();
        assert_eq!(
            error.to_string(),
            "/models/m/config.json: missing field `num_hidden_layers`"
        );

        let wrong_type = r#"{"num_hidden_layers": "32", "hidden_size": 4096, "num_attention_heads": 32,
            "intermediate_size": 14336, "vocab_size": 128256}"#;
        let error = ModelShape::from_config_str("m", "cfg.json", wrong_type).unwrap_err();
        assert!(
            matches!(&error, HardwareError::InvalidField { field: "num_hidden_layers", origin, .. } if origin == "cfg.json"),
            "{error}"
        );

        let error = ModelShape::from_config_str("m", "cfg.json", "[1, 2").unwrap_err();
        assert!(error.to_string().starts_with("cfg.json: "), "{error}");

        let error =
            ModelShape::from_config_file(Path::new("/nonexistent/dir/config.json")).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("/nonexistent/dir/config.json: cannot read"),
            "{error}"
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

    #[test]
    fn config_defaults_follow_transformers_and_vllm() {
        let json = r#"{"model_type": "mistral", "num_hidden_layers": 2, "hidden_size": 64,
            "num_attention_heads": 4, "head_dim": null, "intermediate_size": 128, "vocab_size": 100,
            "dtype": "float16", "seq_length": 1024, "max_position_embeddings": 4096,
            "text_config_unused": {}}"#;
        let model = ModelShape::from_config_str("m", "cfg.json", json).unwrap();
        assert_eq!(model.num_kv_heads, 4);
        assert_eq!(model.head_dim, 16);
        assert_eq!(model.dtype, Dtype::Float16);
        assert_eq!(model.max_position_embeddings, 1024);
        assert!(!model.tie_word_embeddings);
        assert_eq!(model.activation_reserve_bytes(), 5.5 * GIB);

        let nested = r#"{"model_type": "gemma3", "text_config": {"num_hidden_layers": 2, "hidden_size": 64,
            "num_attention_heads": 4, "intermediate_size": 128, "vocab_size": 100}}"#;
        let model = ModelShape::from_config_str("m", "cfg.json", nested).unwrap();
        assert_eq!(model.num_layers, 2);
        assert_eq!(model.max_position_embeddings, 2048);
        assert_eq!(model.dtype, Dtype::Float32);
    }

    #[test]
    fn gpu_lookup_accepts_aliases_and_driver_names() {
        assert_eq!(Gpu::by_name("H100").unwrap().name, "h100-sxm");
        assert_eq!(
            Gpu::by_name("NVIDIA H100 80GB HBM3").unwrap().name,
            "h100-sxm"
        );
        assert_eq!(Gpu::by_name("h100-pcie").unwrap().name, "h100-pcie");
        assert_eq!(Gpu::by_name("a100").unwrap().name, "a100-80gb-sxm");
        assert_eq!(
            Gpu::by_name("NVIDIA A100 80GB PCIe").unwrap().name,
            "a100-80gb-pcie"
        );
        assert_eq!(Gpu::by_name("AMD Instinct MI300X").unwrap().name, "mi300x");
        assert_eq!(Gpu::by_name("nvidia_l40s").unwrap().name, "l40s");
        let error = Gpu::by_name("tpu-v5").unwrap_err().to_string();
        assert!(
            error.contains("\"tpu-v5\"") && error.contains("h100-sxm") && error.contains("mi300x"),
            "{error}"
        );
        let error = ModelShape::by_name("gpt-5").unwrap_err().to_string();
        assert!(
            error.contains("llama-3.1-8b") && error.contains("tiny"),
            "{error}"
        );
    }

    #[test]
    fn catalog_peaks_are_dense_and_visible_memory_matches_captures() {
        let h100 = Gpu::by_name("h100").unwrap();
        assert!(within(h100.memory_bytes as f64 / GIB, 79.18, 0.001));
        assert_eq!(h100.peak_flops(Dtype::Fp8), 1_978.9 * TERA);
        assert_eq!(h100.peak_flops(Dtype::Float32), h100.bf16_flops / 2.0);
        let a100 = Gpu::by_name("a100").unwrap();
        assert_eq!(a100.peak_flops(Dtype::Fp8), a100.bf16_flops);
        for gpu in Gpu::catalog() {
            assert!(
                gpu.bf16_flops < 2.5e15,
                "{} looks like a sparse figure",
                gpu.name
            );
            assert_eq!(Gpu::by_name(gpu.name).unwrap(), *gpu);
            assert_eq!(Gpu::by_name(gpu.device_name).unwrap(), *gpu);
            assert!(gpu.link(gpu.default_interconnect).is_ok());
        }
    }

    #[test]
    fn batch_defaults_follow_vllm() {
        let limits = |name| Gpu::by_name(name).unwrap().default_batch_limits();
        let large = BatchLimits {
            max_num_seqs: 1024,
            max_num_batched_tokens: 8192,
        };
        let small = BatchLimits {
            max_num_seqs: 256,
            max_num_batched_tokens: 2048,
        };
        assert_eq!(limits("h100"), large);
        assert_eq!(limits("h200"), large);
        assert_eq!(limits("mi300x"), large);
        assert_eq!(limits("a100"), small);
        assert_eq!(limits("a100-80gb-pcie"), small);
        assert_eq!(limits("l40s"), small);
        assert_eq!(limits("l4"), small);
    }

    #[test]
    fn all_reduce_cost() {
        let h100 = Gpu::by_name("h100").unwrap();
        let nvlink = h100.link(Interconnect::NvLink).unwrap();
        let pcie = h100.link(Interconnect::Pcie).unwrap();
        assert_eq!(nvlink.all_reduce_seconds(1e6, 1), 0.0);
        // TP=2: the whole buffer crosses once each way.
        assert!(within(
            nvlink.all_reduce_seconds(1e6, 2),
            1e6 / 450e9 + 20e-6,
            1e-9
        ));
        assert!(pcie.all_reduce_seconds(1e6, 2) > nvlink.all_reduce_seconds(1e6, 2));
    }

    #[test]
    fn dtype_parsing() {
        assert_eq!("torch.bfloat16".parse::<Dtype>().unwrap(), Dtype::Bfloat16);
        assert_eq!("FP8_E4M3".parse::<Dtype>().unwrap(), Dtype::Fp8);
        assert_eq!("half".parse::<Dtype>().unwrap(), Dtype::Float16);
        assert!(matches!(
            "int3".parse::<Dtype>(),
            Err(HardwareError::UnknownDtype(_))
        ));
    }
}
