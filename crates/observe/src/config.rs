//! Reads vLLM's settings from every place the server states them (its cache-config metric, its log, `/v1/models`,
//! the command line that started it) into one `ServerConfig`, so the configuration review has one answer per setting.

use std::collections::BTreeMap;

use infer_doctor_core::{ConfigSource, Evidence, LogFacts, ServerConfig, Setting};
use serde_json::Value;

/// vLLM's scheduler limits when none is given, which depend on the GPU (the caller looks them up).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchDefaults {
    pub max_num_seqs: u64,
    pub max_num_batched_tokens: u64,
}

/// The first vLLM version whose defaults are V1's (prefix caching and chunked prefill on): 0.8.0.
const V1_DEFAULTS_SINCE: (u64, u64) = (0, 8);
/// The GPU-dependent scheduler limits (`get_batch_defaults`: 1024 sequences / 8192 tokens on large GPUs) are
/// implied only for releases known to have them; the release that introduced them was not pinned, so earlier
/// and unknown versions imply nothing.
const BATCH_DEFAULTS_SINCE: (u64, u64) = (0, 10);

/// What the evidence itself does not hold: files of a bundle, and facts the caller looks up.
#[derive(Clone, Copy, Debug, Default)]
pub struct Sources<'a> {
    /// The server process's command line, words joined by spaces (`collect`'s `server/cmdline.txt`).
    pub command_line: Option<&'a str>,
    /// `/v1/models` as the server answered it.
    pub models: Option<&'a Value>,
    /// `vllm:cache_config_info` labels from a scrape outside the run's window (`collect`'s
    /// `server/metrics-after.prom`), used where the evidence's scrapes have none.
    pub cache_config: Option<&'a BTreeMap<String, String>>,
    /// vLLM's scheduler defaults for the server's GPU.
    pub batch_defaults: Option<BatchDefaults>,
}

/// Everything known of the server's settings, and each disagreement between sources as a sentence; `None` when
/// no source said anything. Trust: metrics and `/v1/models`, then the log, then the command line (the process's,
/// else its Kubernetes container's), then defaults inferred from the log's non-default args.
pub fn assemble(evidence: &Evidence, sources: Sources<'_>) -> (Option<ServerConfig>, Vec<String>) {
    let labels = evidence
        .server
        .as_ref()
        .map(|s| &s.cache_config)
        .filter(|l| !l.is_empty())
        .or_else(|| {
            evidence
                .scrapes
                .iter()
                .rev()
                .map(|(_, r)| &r.cache_config)
                .find(|l| !l.is_empty())
        })
        .or(sources.cache_config);
    let container_command = evidence.pod.as_ref().and_then(pod_command_line);
    let command_line = sources.command_line.or(container_command.as_deref());
    let parts = [
        labels.map(from_cache_config),
        sources.models.map(from_models),
        evidence
            .log
            .as_ref()
            .map(|log| from_log(log, sources.batch_defaults)),
        command_line.and_then(from_command_line),
    ];
    let mut config = ServerConfig::default();
    let mut conflicts = Vec::new();
    for part in parts.into_iter().flatten() {
        conflicts.extend(config.absorb(part).iter().map(ToString::to_string));
    }
    ((!config.is_empty()).then_some(config), conflicts)
}

/// The vLLM container's command and arguments as one command line. vLLM's images start `vllm serve` by their
/// entrypoint, so a container that gives only arguments runs that.
fn pod_command_line(pod: &infer_doctor_core::PodFacts) -> Option<String> {
    let container = pod.containers.iter().find(|c| {
        c.image.as_deref().is_some_and(|i| i.contains("vllm"))
            || c.command.iter().any(|w| w.contains("vllm"))
    })?;
    let mut words: Vec<&str> = if container.command.is_empty() {
        vec!["vllm", "serve"]
    } else {
        container.command.iter().map(String::as_str).collect()
    };
    words.extend(container.args.iter().map(String::as_str));
    Some(words.join(" "))
}

/// Python's and vLLM's spellings of a boolean.
fn boolean(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Some(true),
        "false" | "0" | "no" => Some(false),
        _ => None,
    }
}

/// The largest count a setting can sensibly hold (2^40): beyond it a value is a typo or an attack, and products
/// of settings (blocks × block size, TP × PP) must not overflow.
const MAX_COUNT: u64 = 1 << 40;

/// A whole number, with vLLM's human-readable suffixes for lengths (`32k` = 32,000, `32K` = 32,768, `1g`, `1G`);
/// a fraction (`2.5`), an exponent or a value past [`MAX_COUNT`] is not a count vLLM would take.
fn count(text: &str) -> Option<u64> {
    let text = text.trim().replace('_', "");
    let (digits, scale) = match text.chars().last()? {
        'k' => (&text[..text.len() - 1], 1_000),
        'K' => (&text[..text.len() - 1], 1 << 10),
        'm' => (&text[..text.len() - 1], 1_000_000),
        'M' => (&text[..text.len() - 1], 1 << 20),
        'g' => (&text[..text.len() - 1], 1_000_000_000),
        'G' => (&text[..text.len() - 1], 1 << 30),
        _ => (text.as_str(), 1),
    };
    let value: u64 = digits.parse().ok()?;
    value.checked_mul(scale).filter(|v| *v <= MAX_COUNT)
}

/// A fraction of the GPU's memory, as vLLM accepts it: in (0, 1].
fn fraction(text: &str) -> Option<f64> {
    text.trim()
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v > 0.0 && *v <= 1.0)
}

/// A name such as a dtype, `None`/`null` read as `none`; `torch.bfloat16` as `bfloat16`.
fn name(text: &str) -> Option<String> {
    let text = text.trim().trim_matches(['\'', '"']);
    if text.is_empty() {
        return None;
    }
    let text = text.strip_prefix("torch.").unwrap_or(text);
    Some(match text.to_ascii_lowercase().as_str() {
        "none" | "null" => "none".to_string(),
        lower => lower.to_string(),
    })
}

/// `num_speculative_tokens` inside a speculative config written as JSON or as a Python dict.
fn speculative_tokens(config: &str) -> Option<u64> {
    let at = config.find("num_speculative_tokens")? + "num_speculative_tokens".len();
    let rest = config[at..].trim_start_matches(['\'', '"', ':', '=', ' ']);
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// A speculative config is present unless it is absent, `None` or empty.
fn speculative_present(config: &str) -> bool {
    !matches!(
        config.trim().to_ascii_lowercase().as_str(),
        "" | "none" | "null" | "{}"
    )
}

/// Settings named by vLLM's own keys (`max_num_seqs`, …) or flags (`--max-num-seqs` without dashes), values as
/// text; keys it does not know are left out.
fn from_pairs<'a>(
    pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    source: ConfigSource,
) -> ServerConfig {
    let mut c = ServerConfig::default();
    for (key, value) in pairs {
        match key.replace('-', "_").as_str() {
            "enforce_eager" => c.enforce_eager = boolean(value).map(|v| Setting::new(v, source)),
            "max_num_seqs" => c.max_num_seqs = count(value).map(|v| Setting::new(v, source)),
            "max_num_batched_tokens" => {
                c.max_num_batched_tokens = count(value).map(|v| Setting::new(v, source))
            }
            "max_model_len" | "max_seq_len" => {
                c.max_model_len = count(value).map(|v| Setting::new(v, source))
            }
            "gpu_memory_utilization" => {
                c.gpu_memory_utilization = fraction(value).map(|v| Setting::new(v, source))
            }
            "enable_prefix_caching" => {
                c.enable_prefix_caching = boolean(value).map(|v| Setting::new(v, source))
            }
            // vLLM's engine-config line spelled it `chunked_prefill_enabled` up to 0.11.
            "enable_chunked_prefill" | "chunked_prefill_enabled" => {
                c.enable_chunked_prefill = boolean(value).map(|v| Setting::new(v, source))
            }
            "kv_cache_dtype" | "cache_dtype" => {
                c.kv_cache_dtype = name(value).map(|v| Setting::new(v, source))
            }
            "tensor_parallel_size" => {
                c.tensor_parallel_size = count(value).map(|v| Setting::new(v, source))
            }
            "pipeline_parallel_size" => {
                c.pipeline_parallel_size = count(value).map(|v| Setting::new(v, source))
            }
            "nnodes" => c.nnodes = count(value).map(|v| Setting::new(v, source)),
            "num_gpu_blocks" => c.num_gpu_blocks = count(value).map(|v| Setting::new(v, source)),
            "block_size" => c.block_size = count(value).map(|v| Setting::new(v, source)),
            "speculative_config" => {
                c.speculative = Some(Setting::new(speculative_present(value), source));
                c.num_speculative_tokens =
                    speculative_tokens(value).map(|v| Setting::new(v, source));
            }
            "num_speculative_tokens" => {
                c.num_speculative_tokens = count(value).map(|v| Setting::new(v, source))
            }
            "dtype" => c.dtype = name(value).map(|v| Setting::new(v, source)),
            "quantization" => c.quantization = name(value).map(|v| Setting::new(v, source)),
            _ => {}
        }
    }
    c
}

/// `vllm:cache_config_info`'s labels: the cache settings the running engine reports.
pub fn from_cache_config(labels: &BTreeMap<String, String>) -> ServerConfig {
    from_pairs(
        labels
            .iter()
            .filter(|(key, _)| {
                matches!(
                    key.as_str(),
                    "block_size"
                        | "num_gpu_blocks"
                        | "gpu_memory_utilization"
                        | "enable_prefix_caching"
                        | "cache_dtype"
                )
            })
            .map(|(k, v)| (k.as_str(), v.as_str())),
        ConfigSource::Metrics,
    )
}

/// `/v1/models`: the first model's `max_model_len`, where vLLM serves it (`owned_by: vllm`; SGLang answers with
/// the same field, but its flag is another).
pub fn from_models(models: &Value) -> ServerConfig {
    let model = &models["data"][0];
    ServerConfig {
        max_model_len: model["max_model_len"]
            .as_u64()
            .filter(|_| model["owned_by"] == "vllm")
            .map(|v| Setting::new(v, ConfigSource::ModelsEndpoint)),
        ..Default::default()
    }
}

/// A vLLM log: its engine config line and chunked-prefill line (stated outright), its non-default args, its
/// `Using max model len`; and, where the non-default args line was read, the defaults it implies for the
/// settings it does not name.
pub fn from_log(log: &LogFacts, batch_defaults: Option<BatchDefaults>) -> ServerConfig {
    if log.server != "vllm" {
        return ServerConfig::default();
    }
    let stated = |map: &BTreeMap<String, String>| {
        from_pairs(
            map.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            ConfigSource::Log,
        )
    };
    let mut config = stated(&log.engine_config);
    // Both are the log's word; the engine's line wins where they differ, as it is what the engine made of them.
    config.absorb(stated(&log.non_default_args));
    config.absorb(ServerConfig {
        max_model_len: log
            .max_model_len
            .map(|v| Setting::new(v, ConfigSource::Log)),
        ..Default::default()
    });
    if !log.non_default_args.is_empty() {
        config.absorb(implied_defaults(log, batch_defaults));
    }
    config
}

/// What a `non-default args` line's silence means: the version's default. Only the defaults that are one
/// value for every model are filled; the scheduler limits only when the GPU is known.
fn implied_defaults(log: &LogFacts, batch_defaults: Option<BatchDefaults>) -> ServerConfig {
    let v1 = log
        .version
        .as_deref()
        .and_then(major_minor)
        .is_none_or(|version| version >= V1_DEFAULTS_SINCE);
    let mut c = ServerConfig {
        enforce_eager: implied(false),
        gpu_memory_utilization: Some(Setting::new(0.9, ConfigSource::LogDefault)),
        kv_cache_dtype: Some(Setting::new("auto".to_string(), ConfigSource::LogDefault)),
        tensor_parallel_size: implied(1),
        pipeline_parallel_size: implied(1),
        speculative: implied(false),
        ..Default::default()
    };
    if v1 {
        c.enable_prefix_caching = implied(true);
        c.enable_chunked_prefill = implied(true);
        let known_release = log
            .version
            .as_deref()
            .and_then(major_minor)
            .is_some_and(|version| version >= BATCH_DEFAULTS_SINCE);
        if let Some(limits) = batch_defaults.filter(|_| known_release) {
            c.max_num_seqs = implied(limits.max_num_seqs);
            c.max_num_batched_tokens = implied(limits.max_num_batched_tokens);
        }
    }
    c
}

fn implied<T>(value: T) -> Option<Setting<T>> {
    Some(Setting::new(value, ConfigSource::LogDefault))
}

fn major_minor(version: &str) -> Option<(u64, u64)> {
    let mut parts = version.trim_start_matches('v').split('.');
    let major = parts.next()?.parse().ok()?;
    let minor: String = parts
        .next()?
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    Some((major, minor.parse().ok()?))
}

/// Boolean flags vLLM takes without a value (argparse's `store_true` and `BooleanOptionalAction`).
const BOOLEAN_FLAGS: [&str; 3] = [
    "enforce-eager",
    "enable-prefix-caching",
    "enable-chunked-prefill",
];

/// vLLM's short flags.
const SHORT_FLAGS: [(&str, &str); 3] = [
    ("tp", "tensor-parallel-size"),
    ("pp", "pipeline-parallel-size"),
    ("q", "quantization"),
];

/// The command line of a vLLM server (`vllm serve MODEL --flag value …` or `python -m
/// vllm.entrypoints.openai.api_server …`), as words joined by spaces; `None` when it is not vLLM's.
pub fn from_command_line(text: &str) -> Option<ServerConfig> {
    let words: Vec<&str> = text.split_whitespace().collect();
    let is_vllm = words.windows(2).any(|w| {
        w[0].rsplit('/').next() == Some("vllm") && w[1] == "serve"
            || w[0] == "-m" && w[1].starts_with("vllm.entrypoints")
    });
    if !is_vllm {
        return None;
    }
    let mut pairs: Vec<(String, String)> = Vec::new();
    let mut i = 0;
    while i < words.len() {
        let word = words[i];
        i += 1;
        let Some(flag) = word
            .strip_prefix("--")
            .or_else(|| word.strip_prefix('-').filter(|w| !w.is_empty()))
        else {
            continue;
        };
        let (flag, inline) = match flag.split_once('=') {
            Some((flag, value)) => (flag, Some(value.to_string())),
            None => (flag, None),
        };
        let flag = flag.replace('_', "-");
        let flag = SHORT_FLAGS
            .iter()
            .find(|(short, _)| *short == flag)
            .map_or(flag.clone(), |(_, long)| long.to_string());
        if let Some(setting) = flag.strip_prefix("no-")
            && BOOLEAN_FLAGS.contains(&setting)
        {
            pairs.push((setting.to_string(), "false".to_string()));
            continue;
        }
        if BOOLEAN_FLAGS.contains(&flag.as_str()) {
            // Older vLLM took `--enable-chunked-prefill False`: a following boolean word is the value.
            let value = match inline {
                Some(value) => value,
                None if i < words.len() && boolean(words[i]).is_some() => {
                    i += 1;
                    words[i - 1].to_string()
                }
                None => "true".to_string(),
            };
            pairs.push((flag, value));
            continue;
        }
        let mut value = match inline {
            Some(value) => value,
            None if i < words.len() && !words[i].starts_with('-') => {
                i += 1;
                words[i - 1].to_string()
            }
            None => continue,
        };
        // A JSON value may have been split at its spaces: take words until its braces close, never past the
        // next flag (unbalanced braces must not swallow the rest of the line).
        while value.matches('{').count() > value.matches('}').count()
            && i < words.len()
            && !words[i].starts_with("--")
        {
            value.push(' ');
            value.push_str(words[i]);
            i += 1;
        }
        pairs.push((flag, value));
    }
    Some(from_pairs(
        pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        ConfigSource::CommandLine,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{dialect, exposition};

    #[test]
    fn vllm_serve_command_line_in_its_spellings() {
        let config = from_command_line(
            "/venv/bin/python3 /venv/bin/vllm serve meta-llama/Llama-3.1-8B --max-num-seqs 256 \
             --max-num-batched-tokens=4096 --enforce-eager --no-enable-prefix-caching --kv-cache-dtype fp8 \
             -tp 2 --pipeline_parallel_size 1 --gpu-memory-utilization 0.85 --max-model-len 32k \
             --speculative-config {\"method\": \"ngram\", \"num_speculative_tokens\": 5} --dtype bfloat16",
        )
        .expect("vLLM's command line");
        let cl = ConfigSource::CommandLine;
        assert_eq!(config.max_num_seqs, Some(Setting::new(256, cl)));
        assert_eq!(config.max_num_batched_tokens, Some(Setting::new(4096, cl)));
        assert_eq!(config.enforce_eager, Some(Setting::new(true, cl)));
        assert_eq!(config.enable_prefix_caching, Some(Setting::new(false, cl)));
        assert_eq!(config.kv_cache_dtype, Some(Setting::new("fp8".into(), cl)));
        assert_eq!(config.tensor_parallel_size, Some(Setting::new(2, cl)));
        assert_eq!(config.pipeline_parallel_size, Some(Setting::new(1, cl)));
        assert_eq!(config.gpu_memory_utilization, Some(Setting::new(0.85, cl)));
        assert_eq!(config.max_model_len, Some(Setting::new(32_000, cl)));
        assert_eq!(config.speculative, Some(Setting::new(true, cl)));
        assert_eq!(config.num_speculative_tokens, Some(Setting::new(5, cl)));
        assert_eq!(config.dtype, Some(Setting::new("bfloat16".into(), cl)));
        // Unknown stays unknown: the command line did not say.
        assert_eq!(config.enable_chunked_prefill, None);
    }

    #[test]
    fn values_vllm_would_refuse_are_not_read() {
        let config = from_command_line(
            "vllm serve m --max-num-seqs 1e30 --max-model-len 99999999999999999999999 -tp 2.5 \
             --gpu-memory-utilization 90 --num-gpu-blocks-override 18446744073709551615 --max-num-batched-tokens 2G",
        )
        .expect("vLLM");
        assert_eq!(config.max_num_seqs, None);
        assert_eq!(config.max_model_len, None);
        assert_eq!(config.tensor_parallel_size, None);
        assert_eq!(config.gpu_memory_utilization, None);
        assert_eq!(
            config.max_num_batched_tokens.map(|s| s.value),
            Some(2 << 30)
        );
        assert_eq!(count("1099511627777"), None);
        // Inline JSON split at its spaces keeps its contents; unbalanced braces stop at the next flag; a boolean
        // flag takes an explicit False.
        let config = from_command_line(
            "vllm serve m --speculative-config={\"method\": \"ngram\", \"num_speculative_tokens\": 5} \
             --enable-chunked-prefill False --quantization {{{{ --max-num-seqs 8",
        )
        .expect("vLLM");
        assert_eq!(config.num_speculative_tokens.map(|s| s.value), Some(5));
        assert_eq!(config.enable_chunked_prefill.map(|s| s.value), Some(false));
        assert_eq!(config.max_num_seqs.map(|s| s.value), Some(8));
        assert_eq!(count("32K"), Some(32_768));
    }

    #[test]
    fn api_server_module_and_other_programs() {
        let config = from_command_line(
            "python -m vllm.entrypoints.openai.api_server --model m --enable-prefix-caching \
             --tensor-parallel-size=4",
        )
        .expect("vLLM's module");
        assert_eq!(config.enable_prefix_caching.map(|s| s.value), Some(true));
        assert_eq!(config.tensor_parallel_size.map(|s| s.value), Some(4));
        assert!(from_command_line("infer-doctor sim --port 0 --scenario kv-saturated").is_none());
        assert!(from_command_line("python3 -m sglang.launch_server --tp 2").is_none());
    }

    #[test]
    fn cache_config_labels_from_the_cpu_fixture() {
        let text = include_str!("../../../fixtures/vllm_cpu/metrics_after_load.txt");
        let readings = dialect::read(&exposition::parse(text), None, "fixture").expect("vLLM");
        let config = from_cache_config(&readings.cache_config);
        let m = ConfigSource::Metrics;
        assert_eq!(config.block_size, Some(Setting::new(128, m)));
        assert_eq!(config.num_gpu_blocks, Some(Setting::new(2048, m)));
        assert_eq!(config.gpu_memory_utilization, Some(Setting::new(0.92, m)));
        assert_eq!(config.enable_prefix_caching, Some(Setting::new(true, m)));
        assert_eq!(config.kv_cache_dtype, Some(Setting::new("auto".into(), m)));
        assert_eq!(config.kv_tokens().map(|t| t.value), Some(262_144));
    }

    #[test]
    fn a_window_of_scrapes_keeps_the_last_cache_config() {
        let text = include_str!("../../../fixtures/vllm_cpu/metrics_during_load.txt");
        let readings = dialect::read(&exposition::parse(text), None, "fixture").expect("vLLM");
        // The first scrape said otherwise (a restart with new settings between them): the last one counts.
        let mut earlier = readings.clone();
        earlier
            .cache_config
            .insert("gpu_memory_utilization".into(), "0.5".into());
        let window =
            crate::server::summarize(&[(0.0, earlier), (5.0, readings)]).expect("a window");
        let evidence = Evidence {
            server: Some(window),
            ..Default::default()
        };
        let config = assemble(&evidence, Sources::default()).0.expect("known");
        assert_eq!(
            config.gpu_memory_utilization,
            Some(Setting::new(0.92, ConfigSource::Metrics))
        );
    }

    #[test]
    fn a_log_states_settings_and_its_non_default_args_imply_the_rest() {
        let text = include_str!("../../../fixtures/vllm_cpu/startup_and_run.log");
        let facts = crate::logs::read_log(text.as_bytes())
            .expect("reads")
            .facts()
            .expect("vLLM");
        let config = from_log(
            &facts,
            Some(BatchDefaults {
                max_num_seqs: 256,
                max_num_batched_tokens: 2048,
            }),
        );
        let log = ConfigSource::Log;
        // The args line sets max_num_seqs 8; the engine config line states the rest.
        assert_eq!(config.max_num_seqs, Some(Setting::new(8, log)));
        assert_eq!(config.max_model_len, Some(Setting::new(2048, log)));
        assert_eq!(config.enforce_eager, Some(Setting::new(false, log)));
        assert_eq!(config.enable_prefix_caching, Some(Setting::new(true, log)));
        assert_eq!(
            config.kv_cache_dtype,
            Some(Setting::new("auto".into(), log))
        );
        assert_eq!(config.speculative, Some(Setting::new(false, log)));
        assert_eq!(config.quantization, Some(Setting::new("none".into(), log)));
        // Not stated anywhere in the log: the default the args line's silence implies.
        assert_eq!(
            config.max_num_batched_tokens,
            Some(Setting::new(2048, ConfigSource::LogDefault))
        );
    }

    #[test]
    fn non_default_args_alone() {
        let log = LogFacts {
            server: "vllm".into(),
            non_default_args: BTreeMap::from([
                ("enforce_eager".to_string(), "True".to_string()),
                ("model".to_string(), "m".to_string()),
            ]),
            ..Default::default()
        };
        let config = from_log(&log, None);
        assert_eq!(
            config.enforce_eager,
            Some(Setting::new(true, ConfigSource::Log))
        );
        assert_eq!(
            config.enable_prefix_caching,
            Some(Setting::new(true, ConfigSource::LogDefault))
        );
        // Depends on the GPU, which is not known here.
        assert_eq!(config.max_num_seqs, None);
        // The GPU known, the scheduler limits follow only for a release known to key them on it.
        let large = Some(BatchDefaults {
            max_num_seqs: 1024,
            max_num_batched_tokens: 8192,
        });
        let implied_seqs = |version: Option<&str>| {
            let log = LogFacts {
                version: version.map(str::to_string),
                ..log.clone()
            };
            from_log(&log, large).max_num_seqs.map(|s| s.value)
        };
        assert_eq!(implied_seqs(Some("0.11.0")), Some(1024));
        assert_eq!(implied_seqs(Some("0.8.5")), None);
        assert_eq!(implied_seqs(None), None);
        // A log without the args line implies nothing.
        assert!(
            from_log(
                &LogFacts {
                    server: "vllm".into(),
                    ..Default::default()
                },
                None
            )
            .is_empty()
        );
    }

    #[test]
    fn sources_are_merged_by_trust_and_disagreements_said() {
        let evidence = Evidence {
            log: Some(LogFacts {
                server: "vllm".into(),
                non_default_args: BTreeMap::from([
                    ("max_num_seqs".to_string(), "128".to_string()),
                    ("max_model_len".to_string(), "8192".to_string()),
                ]),
                ..Default::default()
            }),
            ..Default::default()
        };
        let models =
            serde_json::json!({"data": [{"id": "m", "owned_by": "vllm", "max_model_len": 8192}]});
        let (config, conflicts) = assemble(
            &evidence,
            Sources {
                command_line: Some("vllm serve m --max-num-seqs 64 --enforce-eager"),
                models: Some(&models),
                ..Default::default()
            },
        );
        let config = config.expect("known");
        assert_eq!(
            config.max_num_seqs,
            Some(Setting::new(128, ConfigSource::Log))
        );
        assert_eq!(
            config.max_model_len,
            Some(Setting::new(8192, ConfigSource::ModelsEndpoint))
        );
        // The command line's --enforce-eager against the args line's silence (the default, false).
        assert_eq!(
            config.enforce_eager,
            Some(Setting::new(true, ConfigSource::CommandLine))
        );
        assert_eq!(conflicts.len(), 2, "{conflicts:?}");
        assert!(
            conflicts
                .iter()
                .any(|c| c.starts_with("max_num_seqs: 128 (engine log)")),
            "{conflicts:?}"
        );
        assert_eq!(
            assemble(&Evidence::default(), Sources::default()),
            (None, Vec::new())
        );
    }

    #[test]
    fn a_kubernetes_container_of_a_vllm_image_is_a_command_line() {
        let evidence = Evidence {
            pod: Some(infer_doctor_core::PodFacts {
                containers: vec![infer_doctor_core::PodContainer {
                    name: "vllm".into(),
                    image: Some("vllm/vllm-openai:v0.11.0".into()),
                    args: vec![
                        "m".into(),
                        "--enforce-eager".into(),
                        "--max-num-seqs=32".into(),
                    ],
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        };
        let config = assemble(&evidence, Sources::default()).0.expect("known");
        assert_eq!(
            config.enforce_eager,
            Some(Setting::new(true, ConfigSource::CommandLine))
        );
        assert_eq!(config.max_num_seqs.map(|s| s.value), Some(32));
    }
}
