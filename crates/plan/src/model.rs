//! Model shapes read from Hugging Face `config.json` (dense, GQA, MLA, MoE, sliding-window and quantized models),
//! with built-in names for popular models, so parameters, FLOPs and KV bytes follow from the real architecture.

use std::path::Path;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::{Dtype, HardwareError, Quantization};

/// The mixture-of-experts part of a model's MLP.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MoeShape {
    pub num_experts: u64,
    pub experts_per_token: u64,
    pub expert_intermediate_size: u64,
    /// 0 when the model has no shared expert.
    pub shared_expert_intermediate_size: u64,
    /// Layers whose MLP is dense (DeepSeek's `first_k_dense_replace`, Qwen-MoE's `mlp_only_layers`).
    pub dense_layers: u64,
}

/// DeepSeek's multi-head latent attention: the cache keeps one compressed latent per token and layer, the same
/// on every tensor-parallel rank.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MlaShape {
    pub kv_lora_rank: u64,
    /// `None`: queries are projected straight from the hidden state.
    pub q_lora_rank: Option<u64>,
    pub qk_nope_head_dim: u64,
    pub qk_rope_head_dim: u64,
    pub v_head_dim: u64,
}

/// Layers that attend only to the last `window` tokens, so their cache stops growing there.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct SlidingWindow {
    pub window: u64,
    /// How many of the model's layers use it; the rest attend to everything.
    pub layers: u64,
}

/// The shape of a decoder-only transformer, as far as memory and FLOPs care.
#[derive(Clone, Debug, PartialEq, Serialize)]
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
    pub mla: Option<MlaShape>,
    pub sliding_window: Option<SlidingWindow>,
    /// The checkpoint's `quantization_config`.
    pub quantization: Option<Quantization>,
    /// The checkpoint's weight bytes as its safetensors files state them, when a model directory was given.
    pub checkpoint_bytes: Option<u64>,
    /// What `vllm serve` loads it from: a built-in model's Hugging Face repository, a config's directory.
    pub source: String,
}

// The catalog: each entry's config.json as published (crates/plan/models/SOURCES.md says where each copy comes
// from), matched by its name, a Hugging Face id, or an alias; `-Instruct` variants share the base's shape.
// `tiny` is the project's test model (research/real_targets.md §3: llama, 4 layers, n_embd 256, 4/4 heads, n_ff 768,
// vocab 1155, ctx 4096, F32; llama-server counts 4,001,536 parameters, which this shape reproduces with untied
// embeddings); `llama-3.1-70b` is trimmed to the fields read (no verbatim copy was found).
/// A model the planner knows by name: its `config.json` as published and where vLLM would load it from.
struct BuiltIn {
    name: &'static str,
    /// The Hugging Face repository `vllm serve` takes; `None` for the project's own test model.
    hub: Option<&'static str>,
    aliases: &'static [&'static str],
    config: &'static str,
}

const BUILT_IN_MODELS: [BuiltIn; 15] = [
    BuiltIn {
        name: "tiny",
        hub: None,
        aliases: &["tiny-llama"],
        config: r#"{"model_type": "llama", "num_hidden_layers": 4, "hidden_size": 256, "num_attention_heads": 4,
            "num_key_value_heads": 4, "intermediate_size": 768, "vocab_size": 1155,
            "max_position_embeddings": 4096, "tie_word_embeddings": false, "torch_dtype": "float32"}"#,
    },
    BuiltIn {
        name: "llama-3.1-8b",
        hub: Some("meta-llama/Llama-3.1-8B-Instruct"),
        aliases: &["meta-llama-3.1-8b"],
        config: include_str!("../models/meta-llama--Llama-3.1-8B.json"),
    },
    BuiltIn {
        name: "llama-3.1-70b",
        hub: Some("meta-llama/Llama-3.1-70B-Instruct"),
        aliases: &[
            "llama-3.1-70b-instruct",
            "meta-llama-3.1-70b",
            "meta-llama-3.1-70b-instruct",
        ],
        config: r#"{"model_type": "llama", "num_hidden_layers": 80, "hidden_size": 8192, "num_attention_heads": 64,
            "num_key_value_heads": 8, "intermediate_size": 28672, "vocab_size": 128256,
            "max_position_embeddings": 131072, "tie_word_embeddings": false, "torch_dtype": "bfloat16"}"#,
    },
    BuiltIn {
        name: "llama-3.2-3b",
        hub: Some("meta-llama/Llama-3.2-3B-Instruct"),
        aliases: &[],
        config: include_str!("../models/meta-llama--Llama-3.2-3B.json"),
    },
    BuiltIn {
        name: "qwen2.5-3b",
        hub: Some("Qwen/Qwen2.5-3B-Instruct"),
        aliases: &[],
        config: include_str!("../models/Qwen--Qwen2.5-3B.json"),
    },
    BuiltIn {
        name: "qwen2.5-7b",
        hub: Some("Qwen/Qwen2.5-7B-Instruct"),
        aliases: &[],
        config: include_str!("../models/Qwen--Qwen2.5-7B.json"),
    },
    BuiltIn {
        name: "qwen2.5-14b",
        hub: Some("Qwen/Qwen2.5-14B-Instruct"),
        aliases: &["deepseek-r1-distill-qwen-14b"],
        config: include_str!("../models/Qwen--Qwen2.5-14B.json"),
    },
    BuiltIn {
        name: "qwen2.5-32b",
        hub: Some("Qwen/Qwen2.5-32B-Instruct"),
        aliases: &[],
        config: include_str!("../models/Qwen--Qwen2.5-32B.json"),
    },
    BuiltIn {
        name: "qwen3-4b",
        hub: Some("Qwen/Qwen3-4B"),
        aliases: &[],
        config: include_str!("../models/Qwen--Qwen3-4B.json"),
    },
    BuiltIn {
        name: "qwen3-8b",
        hub: Some("Qwen/Qwen3-8B"),
        aliases: &[],
        config: include_str!("../models/Qwen--Qwen3-8B.json"),
    },
    BuiltIn {
        name: "qwen3-14b",
        hub: Some("Qwen/Qwen3-14B"),
        aliases: &[],
        config: include_str!("../models/Qwen--Qwen3-14B.json"),
    },
    BuiltIn {
        name: "qwen3-32b",
        hub: Some("Qwen/Qwen3-32B"),
        aliases: &[],
        config: include_str!("../models/Qwen--Qwen3-32B.json"),
    },
    BuiltIn {
        name: "qwen3-30b-a3b",
        hub: Some("Qwen/Qwen3-30B-A3B"),
        aliases: &[],
        config: include_str!("../models/Qwen--Qwen3-30B-A3B.json"),
    },
    BuiltIn {
        name: "deepseek-v3",
        hub: Some("deepseek-ai/DeepSeek-V3"),
        // R1 has V3's architecture and FP8 checkpoint.
        aliases: &["deepseek-r1", "deepseek-v3-0324"],
        config: include_str!("../models/deepseek-ai--DeepSeek-V3.json"),
    },
    BuiltIn {
        name: "mixtral-8x7b",
        hub: Some("mistralai/Mixtral-8x7B-Instruct-v0.1"),
        aliases: &["mixtral-8x7b-v0.1"],
        config: include_str!("../models/mistralai--Mixtral-8x7B-v0.1.json"),
    },
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
        // Mixtral and gpt-oss say `num_local_experts`, Qwen-MoE `num_experts`, DeepSeek `n_routed_experts`.
        let mut experts = None;
        for field in ["num_local_experts", "num_experts", "n_routed_experts"] {
            if let Some(n) = self.positive_u64(field)? {
                experts = Some((field, n));
                break;
            }
        }
        let Some((experts_field, num_experts)) = experts else {
            return Ok(None);
        };
        // gpt-oss says `experts_per_token`.
        let experts_per_token = match self.positive_u64("experts_per_token")? {
            Some(k) => k,
            None => self.required("num_experts_per_tok")?,
        };
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
        // Qwen2-MoE sizes its shared expert directly, DeepSeek as a count of routed-expert widths.
        let shared_expert_intermediate_size = match self.optional_u64("n_shared_experts")? {
            Some(count) => count.saturating_mul(expert_intermediate_size),
            None => self
                .optional_u64("shared_expert_intermediate_size")?
                .unwrap_or(0),
        };
        let mlp_only_layers = match self.object.get("mlp_only_layers") {
            Some(Value::Array(layers)) => layers.len() as u64,
            _ => 0,
        };
        Ok(Some(MoeShape {
            num_experts,
            experts_per_token,
            expert_intermediate_size,
            shared_expert_intermediate_size,
            dense_layers: self
                .optional_u64("first_k_dense_replace")?
                .unwrap_or(0)
                .max(mlp_only_layers),
        }))
    }

    fn mla(&self) -> Result<Option<MlaShape>, HardwareError> {
        let Some(kv_lora_rank) = self.positive_u64("kv_lora_rank")? else {
            return Ok(None);
        };
        Ok(Some(MlaShape {
            kv_lora_rank,
            q_lora_rank: self.positive_u64("q_lora_rank")?,
            qk_nope_head_dim: self.required("qk_nope_head_dim")?,
            qk_rope_head_dim: self.required("qk_rope_head_dim")?,
            v_head_dim: self.required("v_head_dim")?,
        }))
    }

    /// Which layers slide, as vLLM's model code decides: `layer_types` where the config lists them (Gemma 3,
    /// gpt-oss, newer transformers), Gemma 2's alternation and Gemma 3's `sliding_window_pattern` otherwise.
    /// A bare `sliding_window` (Mistral 7B v0.1, Qwen2 with `use_sliding_window` false) is served as full
    /// attention by vLLM's Llama and Qwen code, so it counts as none.
    fn sliding_window(
        &self,
        model_type: &str,
        num_layers: u64,
    ) -> Result<Option<SlidingWindow>, HardwareError> {
        let Some(window) = self.positive_u64("sliding_window")? else {
            return Ok(None);
        };
        let layers = if let Some(Value::Array(types)) = self.object.get("layer_types") {
            types
                .iter()
                .filter(|t| t.as_str() == Some("sliding_attention"))
                .count() as u64
        } else if model_type.starts_with("gemma3") {
            // Every `pattern`-th layer is global.
            let pattern = self.positive_u64("sliding_window_pattern")?.unwrap_or(6);
            num_layers - num_layers / pattern
        } else if model_type == "gemma2" {
            num_layers.div_ceil(2)
        } else {
            0
        };
        Ok((layers > 0).then_some(SlidingWindow { window, layers }))
    }

    fn quantization(
        &self,
        root: &Map<String, Value>,
    ) -> Result<Option<Quantization>, HardwareError> {
        match root
            .get("quantization_config")
            .or_else(|| self.object.get("quantization_config"))
        {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Object(config)) => Quantization::from_config(self.origin, config).map(Some),
            Some(other) => Err(self.invalid(
                "quantization_config",
                &format!("must be an object, got {other}"),
            )),
        }
    }
}

/// The bytes of tensor data a model directory's safetensors hold: the index's `metadata.total_size` for sharded
/// checkpoints, else the end of the last tensor in `model.safetensors`'s header (8 bytes of little-endian header
/// length, then the header's JSON); `None` when the directory has neither.
fn safetensors_bytes(dir: &Path) -> Result<Option<u64>, HardwareError> {
    let read_error = |path: &Path, source: std::io::Error| HardwareError::ConfigRead {
        origin: path.display().to_string(),
        source,
    };
    let invalid = |path: &Path, field: &'static str, problem: &str| HardwareError::InvalidField {
        origin: path.display().to_string(),
        field,
        problem: problem.to_owned(),
    };
    let index = dir.join("model.safetensors.index.json");
    if index.is_file() {
        let text = std::fs::read_to_string(&index).map_err(|e| read_error(&index, e))?;
        let value: Value =
            serde_json::from_str(&text).map_err(|e| HardwareError::ConfigSyntax {
                origin: index.display().to_string(),
                message: e.to_string(),
            })?;
        return match value
            .pointer("/metadata/total_size")
            .and_then(Value::as_u64)
        {
            Some(0) | None => Err(invalid(&index, "metadata.total_size", "is missing or 0")),
            Some(bytes) => Ok(Some(bytes)),
        };
    }
    let single = dir.join("model.safetensors");
    if !single.is_file() {
        return Ok(None);
    }
    use std::io::Read;
    let mut file = std::fs::File::open(&single).map_err(|e| read_error(&single, e))?;
    let mut length = [0u8; 8];
    file.read_exact(&mut length)
        .map_err(|e| read_error(&single, e))?;
    let length = u64::from_le_bytes(length);
    // The format caps the header at 100 MB; a larger length is not a safetensors file.
    if length > 100_000_000 {
        return Err(invalid(
            &single,
            "header",
            &format!("claims {length} bytes, more than the format allows"),
        ));
    }
    let mut header = vec![0u8; length as usize];
    file.read_exact(&mut header)
        .map_err(|e| read_error(&single, e))?;
    let header: Map<String, Value> =
        serde_json::from_slice(&header).map_err(|e| HardwareError::ConfigSyntax {
            origin: single.display().to_string(),
            message: format!("header: {e}"),
        })?;
    let end = header
        .iter()
        .filter(|(name, _)| *name != "__metadata__")
        .filter_map(|(_, tensor)| tensor.pointer("/data_offsets/1").and_then(Value::as_u64))
        .max();
    end.map(Some)
        .ok_or_else(|| invalid(&single, "header", "names no tensor with data_offsets"))
}

fn normalize_model_name(name: &str) -> String {
    let lower = name.trim().to_ascii_lowercase();
    let base = lower.rsplit('/').next().unwrap_or(&lower);
    base.replace(['_', ' '], "-")
}

impl ModelShape {
    pub fn catalog_names() -> Vec<&'static str> {
        BUILT_IN_MODELS.iter().map(|model| model.name).collect()
    }

    /// A built-in model by name or Hugging Face id (`meta-llama/Llama-3.1-8B-Instruct`), ignoring case.
    pub fn by_name(name: &str) -> Result<ModelShape, HardwareError> {
        let wanted = normalize_model_name(name);
        let base = ["-instruct", "-chat", "-it"]
            .iter()
            .find_map(|suffix| wanted.strip_suffix(suffix))
            .unwrap_or(&wanted);
        let built_in = BUILT_IN_MODELS
            .iter()
            .find(|model| {
                [wanted.as_str(), base]
                    .iter()
                    .any(|w| model.name == *w || model.aliases.contains(w))
            })
            .ok_or_else(|| HardwareError::UnknownModel {
                name: name.to_owned(),
                known: Self::catalog_names().join(", "),
            })?;
        let origin = format!("built-in model {}", built_in.name);
        let mut model = Self::from_config_str(built_in.name, &origin, built_in.config)?;
        model.source = built_in.hub.unwrap_or(built_in.name).to_owned();
        Ok(model)
    }

    /// What a user names on the command line: a `config.json` (any file), a model directory holding one, or
    /// a built-in name.
    pub fn resolve(spec: &str) -> Result<ModelShape, HardwareError> {
        let path = Path::new(spec);
        if path.is_dir() {
            Self::from_directory(path)
        } else if spec.ends_with(".json") || path.is_file() {
            Self::from_config_file(path)
        } else {
            Self::by_name(spec)
        }
    }

    /// A model directory as vLLM loads it: `config.json`, with the weights' exact size from the safetensors index
    /// (`model.safetensors.index.json`'s `total_size`) or a single file's header, when present.
    pub fn from_directory(dir: &Path) -> Result<ModelShape, HardwareError> {
        let mut model = Self::from_config_file(&dir.join("config.json"))?;
        model.checkpoint_bytes = safetensors_bytes(dir)?;
        // Between ~0.4 and 64 bits a parameter: anything else is a corrupt header or another model's files.
        if let Some(bytes) = model.checkpoint_bytes {
            let parameters = model.parameters();
            let bits = bytes as f64 * 8.0 / parameters;
            if !(0.4..=64.0).contains(&bits) {
                return Err(HardwareError::InvalidField {
                    origin: dir.display().to_string(),
                    field: "safetensors",
                    problem: format!(
                        "hold {bytes} bytes, {bits:.2} bits for each of config.json's {parameters:.0} parameters: not \
                         this model's weights"
                    ),
                });
            }
        }
        model.source = dir.display().to_string();
        Ok(model)
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
        let mut model = Self::from_config_str(&name, &origin, &text)?;
        if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
            model.source = dir.display().to_string();
        }
        Ok(model)
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
        let num_layers = fields.required("num_hidden_layers")?;
        let model_type = root
            .get("model_type")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
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
        if object.contains_key("interleave_moe_layer_step") {
            // Llama 4 alternates dense and MoE layers and adds an always-on expert: sized as a plain MoE it comes
            // out twice too large, so it is refused rather than mis-sized.
            return Err(fields.invalid(
                "interleave_moe_layer_step",
                "is set: interleaved MoE layers (Llama 4) are not modelled yet",
            ));
        }
        let sliding_window = fields.sliding_window(&model_type, num_layers)?;
        let tied_by_default = model_type.starts_with("gemma");
        Ok(ModelShape {
            name: name.to_owned(),
            model_type,
            num_layers,
            hidden_size,
            num_attention_heads,
            num_kv_heads: fields
                .positive_u64("num_key_value_heads")?
                .unwrap_or(num_attention_heads),
            head_dim,
            intermediate_size,
            vocab_size: fields.required("vocab_size")?,
            // LlamaConfig, Qwen2/3Config and MixtralConfig default to untied, Gemma's configs to tied.
            tie_word_embeddings: fields
                .optional_bool("tie_word_embeddings")?
                .unwrap_or(tied_by_default),
            dtype: fields.dtype()?,
            max_position_embeddings: fields.max_len()?,
            moe,
            mla: fields.mla()?,
            sliding_window,
            quantization: fields.quantization(root)?,
            checkpoint_bytes: None,
            source: name.to_owned(),
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
        let heads = self.num_attention_heads as f64;
        match &self.mla {
            Some(mla) => {
                let qk_head = (mla.qk_nope_head_dim + mla.qk_rope_head_dim) as f64;
                let kv_lora = mla.kv_lora_rank as f64;
                let q = match mla.q_lora_rank {
                    Some(rank) => d * rank as f64 + rank as f64 + rank as f64 * heads * qk_head,
                    None => d * heads * qk_head,
                };
                let kv_down = d * (kv_lora + mla.qk_rope_head_dim as f64) + kv_lora;
                let kv_up = kv_lora * heads * (mla.qk_nope_head_dim + mla.v_head_dim) as f64;
                let out = heads * mla.v_head_dim as f64 * d;
                q + kv_down + kv_up + out
            }
            None => {
                let q_dim = self.query_dim() as f64;
                let kv_dim = (self.num_kv_heads as f64) * (self.head_dim as f64);
                d * q_dim + 2.0 * d * kv_dim + q_dim * d
            }
        }
    }

    /// Decoder layers whose MLP is a mixture of experts.
    fn moe_layers(&self) -> f64 {
        self.moe.as_ref().map_or(0.0, |moe| {
            self.num_layers.saturating_sub(moe.dense_layers) as f64
        })
    }

    fn dense_mlp_layers(&self) -> f64 {
        self.num_layers as f64 - self.moe_layers()
    }

    /// Routed-expert weights of one MoE layer, of which a token reads `experts`.
    fn expert_parameters(&self, experts: u64) -> f64 {
        self.moe.as_ref().map_or(0.0, |moe| {
            3.0 * (self.hidden_size as f64) * (moe.expert_intermediate_size as f64) * experts as f64
        })
    }

    /// MLP weights every token passes through, over all layers: the SwiGLUs of dense layers, and for MoE layers
    /// the router and the shared expert.
    fn always_active_mlp_parameters(&self) -> f64 {
        let d = self.hidden_size as f64;
        let dense = self.dense_mlp_layers() * 3.0 * d * self.intermediate_size as f64;
        let moe = self.moe.as_ref().map_or(0.0, |moe| {
            self.moe_layers()
                * (moe.num_experts as f64 * d
                    + 3.0 * d * moe.shared_expert_intermediate_size as f64)
        });
        dense + moe
    }

    fn routed_expert_parameters(&self) -> f64 {
        let all = self.moe.as_ref().map_or(0, |moe| moe.num_experts);
        self.moe_layers() * self.expert_parameters(all)
    }

    /// Weights of the decoder's linear layers (attention, MLPs, experts): what quantization methods compress.
    fn linear_parameters(&self) -> f64 {
        self.num_layers as f64 * self.attention_parameters_per_layer()
            + self.always_active_mlp_parameters()
            + self.routed_expert_parameters()
    }

    /// Embeddings, LM head and norms: kept in the activation dtype by every quantization method.
    fn unquantized_parameters(&self) -> f64 {
        let d = self.hidden_size as f64;
        let embedding_tables = if self.tie_word_embeddings { 1.0 } else { 2.0 };
        embedding_tables * self.vocab_size as f64 * d + d + self.num_layers as f64 * 2.0 * d
    }

    fn parameters(&self) -> f64 {
        self.linear_parameters() + self.unquantized_parameters()
    }

    /// Every stored weight (§B2's formula, with the query width in q/o so heads·head_dim ≠ hidden is right).
    pub fn parameter_count(&self) -> u64 {
        self.parameters() as u64
    }

    /// All routed-expert weights, which a step only partly reads.
    pub fn expert_parameter_count(&self) -> u64 {
        self.routed_expert_parameters() as u64
    }

    fn active_layer_parameters_f64(&self) -> f64 {
        let routed = self.moe.as_ref().map_or(0.0, |moe| {
            self.moe_layers() * self.expert_parameters(moe.experts_per_token)
        });
        self.num_layers as f64 * self.attention_parameters_per_layer()
            + self.always_active_mlp_parameters()
            + routed
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

    /// QKᵀ and AV FLOPs per (query token × attended token): 2·L·heads·(qk head dim + v head dim), 4·L·d_q for
    /// standard attention.
    pub fn attention_flops_factor(&self) -> f64 {
        let per_head = match &self.mla {
            Some(mla) => (mla.qk_nope_head_dim + mla.qk_rope_head_dim + mla.v_head_dim) as f64,
            None => 2.0 * self.head_dim as f64,
        };
        2.0 * self.num_layers as f64 * self.num_attention_heads as f64 * per_head
    }

    /// Bytes of all weights stored with `quantization` (or plainly in `dtype`), before any split over GPUs. A
    /// model directory's safetensors size is used as is when it is what vLLM will load.
    pub fn weight_bytes(&self, dtype: Dtype, quantization: Option<&Quantization>) -> f64 {
        if let Some(bytes) = self.checkpoint_bytes
            && quantization == self.quantization.as_ref()
            && dtype.activation_dtype() == self.dtype
        {
            return bytes as f64;
        }
        let plain = dtype.activation_dtype().bytes() as f64;
        match quantization {
            None => self.parameters() * dtype.bytes() as f64,
            Some(q) => {
                let quantized = if q.experts_only {
                    self.routed_expert_parameters()
                } else {
                    self.linear_parameters()
                };
                quantized * q.bits_per_weight / 8.0 + (self.parameters() - quantized) * plain
            }
        }
    }

    /// KV bytes one token occupies in one layer on one rank: 2·max(1, kv_heads/TP)·head_dim·bytes (KV heads are
    /// replicated when there are fewer than ranks), or MLA's latent (kv_lora_rank + rope dims), which every
    /// rank keeps whole.
    pub fn kv_bytes_per_token_per_layer(&self, kv_dtype: Dtype, tensor_parallel: u32) -> u64 {
        match &self.mla {
            Some(mla) => (mla.kv_lora_rank + mla.qk_rope_head_dim).saturating_mul(kv_dtype.bytes()),
            None => {
                let heads_per_rank = (self.num_kv_heads / u64::from(tensor_parallel.max(1))).max(1);
                [heads_per_rank, self.head_dim, kv_dtype.bytes()]
                    .into_iter()
                    .fold(2, u64::saturating_mul)
            }
        }
    }

    /// KV bytes one token occupies over all layers on one rank, as if every layer kept all tokens (what the
    /// simulator's single block pool holds).
    pub fn kv_bytes_per_token_per_rank(&self, kv_dtype: Dtype, tensor_parallel: u32) -> u64 {
        self.kv_bytes_per_token_per_layer(kv_dtype, tensor_parallel)
            .saturating_mul(self.num_layers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{llama_8b, within};

    #[test]
    fn llama_8b_matches_the_worked_check() {
        let model = llama_8b();
        assert_eq!(model.parameter_count(), 8_030_261_248);
        assert_eq!(
            model.kv_bytes_per_token_per_rank(Dtype::Bfloat16, 1),
            131_072
        );
        assert!(within(
            model.weight_bytes(Dtype::Bfloat16, None) / 1.0,
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
            model.weight_bytes(Dtype::Bfloat16, None) / 1.0,
            141e9,
            0.01
        ));
        assert!(within(
            model.weight_bytes(Dtype::Bfloat16, None) / 4.0,
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
        let model = ModelShape::by_name("mistralai/Mixtral-8x7B-Instruct-v0.1")
            .unwrap_or_else(|_| ModelShape::by_name("mixtral-8x7b-v0.1").unwrap());
        assert!(within(model.parameter_count() as f64, 46.7e9, 0.01));
        // 12.9 B active minus the 0.26 B of embedding and LM head.
        assert!(within(model.active_layer_parameters() as f64, 12.6e9, 0.01));
    }

    #[test]
    fn deepseek_v3_is_mla_and_moe_with_fp8_weights() {
        let model = ModelShape::by_name("deepseek-ai/DeepSeek-R1").unwrap();
        let mla = model.mla.as_ref().unwrap();
        assert_eq!((mla.kv_lora_rank, mla.qk_rope_head_dim), (512, 64));
        // One 576-wide latent per token and layer, the same on every rank: 70,272 bytes a token in BF16.
        assert_eq!(model.kv_bytes_per_token_per_layer(Dtype::Bfloat16, 8), 1152);
        assert_eq!(
            model.kv_bytes_per_token_per_rank(Dtype::Bfloat16, 1),
            70_272
        );
        // 671 B parameters (the MTP layer is not loaded), 37 B active per token.
        assert!(
            within(model.parameter_count() as f64, 671e9, 0.01),
            "{}",
            model.parameter_count()
        );
        assert!(
            within(model.active_layer_parameters() as f64, 37e9, 0.05),
            "{}",
            model.active_layer_parameters()
        );
        let moe = model.moe.as_ref().unwrap();
        assert_eq!(
            (moe.num_experts, moe.experts_per_token, moe.dense_layers),
            (256, 8, 3)
        );
        assert_eq!(moe.shared_expert_intermediate_size, 2048);
        let fp8 = model.quantization.unwrap();
        assert_eq!((fp8.method, fp8.fp8_activations), ("fp8", true));
        // FP8 linear layers and BF16 embeddings: ~1 byte a parameter.
        let bytes = model.weight_bytes(Dtype::Fp8, model.quantization.as_ref());
        assert!(
            within(bytes / model.parameter_count() as f64, 1.0, 0.01),
            "{bytes}"
        );
    }

    #[test]
    fn qwen3_moe_and_the_catalog_parse() {
        let model = ModelShape::by_name("Qwen/Qwen3-30B-A3B").unwrap();
        assert!(
            within(model.parameter_count() as f64, 30.5e9, 0.01),
            "{}",
            model.parameter_count()
        );
        // 3.3 B activated, of which 0.62 B are the untied embedding and LM head.
        assert!(within(
            model.active_layer_parameters() as f64,
            3.3e9 - 0.62e9,
            0.05
        ));
        for name in ModelShape::catalog_names() {
            let model = ModelShape::by_name(name).unwrap();
            assert!(
                model.parameter_count() > 0
                    && model.kv_bytes_per_token_per_rank(Dtype::Bfloat16, 1) > 0
            );
        }
        // Qwen2.5's `sliding_window` is off (`use_sliding_window: false`): full attention, as vLLM serves it.
        assert_eq!(
            ModelShape::by_name("qwen2.5-7b-instruct")
                .unwrap()
                .sliding_window,
            None
        );
    }

    #[test]
    fn sliding_layers_follow_layer_types_and_gemma_patterns() {
        let config = |extra: &str| {
            format!(
                r#"{{"model_type": "gemma3_text", "num_hidden_layers": 62, "hidden_size": 5376,
                "num_attention_heads": 32, "num_key_value_heads": 16, "head_dim": 128, "intermediate_size": 21504,
                "vocab_size": 262208, "sliding_window": 1024 {extra}}}"#
            )
        };
        let gemma3 = ModelShape::from_config_str("g", "config.json", &config("")).unwrap();
        // Every sixth layer is global: 52 slide.
        assert_eq!(
            gemma3.sliding_window,
            Some(SlidingWindow {
                window: 1024,
                layers: 52
            })
        );
        let types =
            r#", "layer_types": ["sliding_attention", "full_attention", "sliding_attention"]"#;
        let listed = ModelShape::from_config_str("g", "config.json", &config(types)).unwrap();
        assert_eq!(listed.sliding_window.unwrap().layers, 2);
    }

    #[test]
    fn a_model_directory_gives_the_checkpoint_size() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.json"), BUILT_IN_MODELS[0].config).unwrap();
        let spec = dir.path().to_str().unwrap();
        assert_eq!(ModelShape::resolve(spec).unwrap().checkpoint_bytes, None);
        // A single safetensors file: the header's last data offset is the tensor bytes (the tensors themselves
        // are not read). The tiny model's 4,001,536 f32 parameters: 16,006,144 bytes.
        let write_header = |end: u64| {
            let header = format!(
                r#"{{"__metadata__": {{"format": "pt"}}, "a": {{"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}},
                "b": {{"dtype": "F32", "shape": [4001534], "data_offsets": [8, {end}]}}}}"#
            );
            let mut file = (header.len() as u64).to_le_bytes().to_vec();
            file.extend_from_slice(header.as_bytes());
            std::fs::write(dir.path().join("model.safetensors"), &file).unwrap();
        };
        write_header(16_006_144);
        let model = ModelShape::resolve(spec).unwrap();
        assert_eq!(model.checkpoint_bytes, Some(16_006_144));
        assert_eq!(model.weight_bytes(Dtype::Float32, None), 16_006_144.0);
        assert_eq!(model.source, spec);
        // Served in bf16, the f32 checkpoint's size no longer applies.
        assert_eq!(
            model.weight_bytes(Dtype::Bfloat16, None),
            model.parameter_count() as f64 * 2.0
        );
        // A corrupt header (or another model's files) is not believed.
        write_header(u64::MAX);
        let error = ModelShape::resolve(spec).unwrap_err().to_string();
        assert!(error.contains("not this model's weights"), "{error}");
        write_header(16_006_144);
        // A sharded checkpoint's index wins; a broken one is an error naming the file.
        std::fs::write(
            dir.path().join("model.safetensors.index.json"),
            r#"{"metadata": {"total_size": 8003072}}"#,
        )
        .unwrap();
        // 8,003,072 bytes: the same weights in bf16 shards.
        assert_eq!(
            ModelShape::resolve(spec).unwrap().checkpoint_bytes,
            Some(8_003_072)
        );
        std::fs::write(
            dir.path().join("model.safetensors.index.json"),
            r#"{"weight_map": {}}"#,
        )
        .unwrap();
        let error = ModelShape::resolve(spec).unwrap_err().to_string();
        assert!(
            error.contains("model.safetensors.index.json") && error.contains("total_size"),
            "{error}"
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

        let nested = r#"{"model_type": "gemma3", "text_config": {"num_hidden_layers": 2, "hidden_size": 64,
            "num_attention_heads": 4, "intermediate_size": 128, "vocab_size": 100}}"#;
        let model = ModelShape::from_config_str("m", "cfg.json", nested).unwrap();
        assert_eq!(model.num_layers, 2);
        assert_eq!(model.max_position_embeddings, 2048);
        assert_eq!(model.dtype, Dtype::Float32);
    }
}
