//! The inference server's settings as far as they are known, each with where it was read, so the configuration
//! review judges what the server really ran with and says which source said so; unknown stays unknown.

use std::fmt::Display;

use serde::{Deserialize, Serialize};

/// Where a setting was read. The order is the trust: the running server's own word first, then its log, then
/// the command line that started it, and last a default inferred from a log line that lists only non-defaults.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConfigSource {
    /// The server's metrics: vLLM's `vllm:cache_config_info` labels.
    Metrics,
    /// The server's `/v1/models` answer (`max_model_len`).
    ModelsEndpoint,
    /// The engine log states it: the engine's config line, `Chunked prefill is enabled with …`, or the
    /// `non-default args` line naming it.
    Log,
    /// The server process's command line (`collect`'s `server/cmdline.txt`).
    CommandLine,
    /// The log's `non-default args` line does not name it, so the version's default held.
    LogDefault,
}

impl ConfigSource {
    pub fn describe(self) -> &'static str {
        match self {
            ConfigSource::Metrics => "vllm:cache_config_info",
            ConfigSource::ModelsEndpoint => "/v1/models",
            ConfigSource::Log => "engine log",
            ConfigSource::CommandLine => "server command line",
            ConfigSource::LogDefault => "vLLM's default: the non-default args line omits it",
        }
    }
}

/// One setting's value and where it was read.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Setting<T> {
    pub value: T,
    pub source: ConfigSource,
}

impl<T> Setting<T> {
    pub fn new(value: T, source: ConfigSource) -> Self {
        Setting { value, source }
    }
}

/// vLLM's settings the configuration review reads; `None` where no source said.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ServerConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enforce_eager: Option<Setting<bool>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_num_seqs: Option<Setting<u64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_num_batched_tokens: Option<Setting<u64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_model_len: Option<Setting<u64>>,
    /// 0–1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpu_memory_utilization: Option<Setting<f64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enable_prefix_caching: Option<Setting<bool>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enable_chunked_prefill: Option<Setting<bool>>,
    /// `auto`, `fp8`, `fp8_e4m3`, … as vLLM spells it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kv_cache_dtype: Option<Setting<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tensor_parallel_size: Option<Setting<u64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pipeline_parallel_size: Option<Setting<u64>>,
    /// Hosts one engine spans (vLLM's `--nnodes`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nnodes: Option<Setting<u64>>,
    /// KV blocks per engine, and tokens per block.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub num_gpu_blocks: Option<Setting<u64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub block_size: Option<Setting<u64>>,
    /// Whether speculative decoding is configured, and how many tokens it drafts per step when said.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub speculative: Option<Setting<bool>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub num_speculative_tokens: Option<Setting<u64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dtype: Option<Setting<String>>,
    /// `None` as a value is spelled `none`: no quantization.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quantization: Option<Setting<String>>,
}

/// Two sources disagreeing on a setting: both values, and which one was kept.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConfigConflict {
    pub setting: String,
    pub kept: String,
    pub kept_source: ConfigSource,
    pub other: String,
    pub other_source: ConfigSource,
}

impl Display for ConfigConflict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} ({}) against {} ({}); {} is taken",
            self.setting,
            self.kept,
            self.kept_source.describe(),
            self.other,
            self.other_source.describe(),
            self.kept
        )
    }
}

/// Values equal for the configuration's purpose (utilizations that print alike are one value).
trait SameValue {
    fn same(&self, other: &Self) -> bool;
}

impl SameValue for bool {
    fn same(&self, other: &Self) -> bool {
        self == other
    }
}

impl SameValue for u64 {
    fn same(&self, other: &Self) -> bool {
        self == other
    }
}

impl SameValue for f64 {
    fn same(&self, other: &Self) -> bool {
        (self - other).abs() < 1e-6
    }
}

impl SameValue for String {
    fn same(&self, other: &Self) -> bool {
        self.eq_ignore_ascii_case(other)
    }
}

/// Keeps the more trusted of two readings of one setting, recording a disagreement.
fn keep<T: SameValue + Display + Clone>(
    name: &str,
    mine: &mut Option<Setting<T>>,
    theirs: Option<Setting<T>>,
    conflicts: &mut Vec<ConfigConflict>,
) {
    let Some(theirs) = theirs else {
        return;
    };
    let Some(current) = mine.as_ref() else {
        *mine = Some(theirs);
        return;
    };
    let (kept, other) = if theirs.source < current.source {
        (theirs, current.clone())
    } else {
        (current.clone(), theirs)
    };
    if !kept.value.same(&other.value) {
        conflicts.push(ConfigConflict {
            setting: name.to_string(),
            kept: kept.value.to_string(),
            kept_source: kept.source,
            other: other.value.to_string(),
            other_source: other.source,
        });
    }
    *mine = Some(kept);
}

impl ServerConfig {
    /// Nothing is known.
    pub fn is_empty(&self) -> bool {
        *self == ServerConfig::default()
    }

    /// Adds another source's readings: per setting the more trusted source wins, whatever the order of calls,
    /// and each disagreement is returned so it can be said.
    pub fn absorb(&mut self, other: ServerConfig) -> Vec<ConfigConflict> {
        let mut c = Vec::new();
        let o = other;
        keep(
            "enforce_eager",
            &mut self.enforce_eager,
            o.enforce_eager,
            &mut c,
        );
        keep(
            "max_num_seqs",
            &mut self.max_num_seqs,
            o.max_num_seqs,
            &mut c,
        );
        keep(
            "max_num_batched_tokens",
            &mut self.max_num_batched_tokens,
            o.max_num_batched_tokens,
            &mut c,
        );
        keep(
            "max_model_len",
            &mut self.max_model_len,
            o.max_model_len,
            &mut c,
        );
        keep(
            "gpu_memory_utilization",
            &mut self.gpu_memory_utilization,
            o.gpu_memory_utilization,
            &mut c,
        );
        keep(
            "enable_prefix_caching",
            &mut self.enable_prefix_caching,
            o.enable_prefix_caching,
            &mut c,
        );
        keep(
            "enable_chunked_prefill",
            &mut self.enable_chunked_prefill,
            o.enable_chunked_prefill,
            &mut c,
        );
        keep(
            "kv_cache_dtype",
            &mut self.kv_cache_dtype,
            o.kv_cache_dtype,
            &mut c,
        );
        keep(
            "tensor_parallel_size",
            &mut self.tensor_parallel_size,
            o.tensor_parallel_size,
            &mut c,
        );
        keep(
            "pipeline_parallel_size",
            &mut self.pipeline_parallel_size,
            o.pipeline_parallel_size,
            &mut c,
        );
        keep("nnodes", &mut self.nnodes, o.nnodes, &mut c);
        keep(
            "num_gpu_blocks",
            &mut self.num_gpu_blocks,
            o.num_gpu_blocks,
            &mut c,
        );
        keep("block_size", &mut self.block_size, o.block_size, &mut c);
        keep("speculative", &mut self.speculative, o.speculative, &mut c);
        keep(
            "num_speculative_tokens",
            &mut self.num_speculative_tokens,
            o.num_speculative_tokens,
            &mut c,
        );
        keep("dtype", &mut self.dtype, o.dtype, &mut c);
        keep(
            "quantization",
            &mut self.quantization,
            o.quantization,
            &mut c,
        );
        c
    }

    /// Every known setting as `(name, value as text, source)`, in field order, for reports.
    pub fn entries(&self) -> Vec<(&'static str, String, ConfigSource)> {
        fn one<T: Display>(
            name: &'static str,
            setting: &Option<Setting<T>>,
        ) -> Option<(&'static str, String, ConfigSource)> {
            setting
                .as_ref()
                .map(|s| (name, s.value.to_string(), s.source))
        }
        [
            one("enforce_eager", &self.enforce_eager),
            one("max_num_seqs", &self.max_num_seqs),
            one("max_num_batched_tokens", &self.max_num_batched_tokens),
            one("max_model_len", &self.max_model_len),
            one("gpu_memory_utilization", &self.gpu_memory_utilization),
            one("enable_prefix_caching", &self.enable_prefix_caching),
            one("enable_chunked_prefill", &self.enable_chunked_prefill),
            one("kv_cache_dtype", &self.kv_cache_dtype),
            one("tensor_parallel_size", &self.tensor_parallel_size),
            one("pipeline_parallel_size", &self.pipeline_parallel_size),
            one("nnodes", &self.nnodes),
            one("num_gpu_blocks", &self.num_gpu_blocks),
            one("block_size", &self.block_size),
            one("speculative", &self.speculative),
            one("num_speculative_tokens", &self.num_speculative_tokens),
            one("dtype", &self.dtype),
            one("quantization", &self.quantization),
        ]
        .into_iter()
        .flatten()
        .collect()
    }

    /// Tokens the KV cache holds per engine, from the block count and size the server reported.
    pub fn kv_tokens(&self) -> Option<Setting<u64>> {
        let blocks = self.num_gpu_blocks.as_ref()?;
        let size = self.block_size.as_ref()?;
        Some(Setting::new(
            blocks.value.saturating_mul(size.value),
            blocks.source.max(size.source),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_more_trusted_source_wins_in_any_order_and_disagreement_is_said() {
        let from = |eager: bool, seqs: u64, source| ServerConfig {
            enforce_eager: Some(Setting::new(eager, source)),
            max_num_seqs: Some(Setting::new(seqs, source)),
            ..Default::default()
        };
        let mut a = from(true, 64, ConfigSource::CommandLine);
        let conflicts = a.absorb(from(true, 128, ConfigSource::Log));
        assert_eq!(a.max_num_seqs, Some(Setting::new(128, ConfigSource::Log)));
        assert_eq!(conflicts.len(), 1, "{conflicts:?}");
        assert_eq!(
            conflicts[0].to_string(),
            "max_num_seqs: 128 (engine log) against 64 (server command line); 128 is taken"
        );
        let mut b = from(true, 128, ConfigSource::Log);
        assert_eq!(b.absorb(from(true, 64, ConfigSource::CommandLine)).len(), 1);
        assert_eq!(a, b);
    }

    #[test]
    fn entries_list_what_is_known_with_its_source() {
        let config = ServerConfig {
            max_num_seqs: Some(Setting::new(64, ConfigSource::CommandLine)),
            kv_cache_dtype: Some(Setting::new("fp8".to_string(), ConfigSource::Metrics)),
            ..Default::default()
        };
        assert_eq!(
            config.entries(),
            [
                ("max_num_seqs", "64".to_string(), ConfigSource::CommandLine),
                ("kv_cache_dtype", "fp8".to_string(), ConfigSource::Metrics),
            ]
        );
    }

    #[test]
    fn an_older_bundle_without_a_config_reads() {
        let config: ServerConfig = serde_json::from_str("{}").expect("reads");
        assert!(config.is_empty());
        let evidence: crate::Evidence = serde_json::from_str("{}").expect("reads");
        assert!(evidence.config.is_none());
    }
}
