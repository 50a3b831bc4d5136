//! vLLM's log messages (V1 and V0): version and arguments, start-up capacity, model loading, graph capture,
//! the periodic stats line in all its forms, and preemption warnings. Formats: `research/server_signals.md` §2.

use super::events::{EventKind, StatsSample, StatsSource};
use super::scan::{f64_after, fields, leading_f64, leading_u64, python_dict, u64_after};

/// A server started with `--api-key` (or an HF token, an SSL key password) prints it among its arguments: the
/// value is replaced before it can reach a report, a bundle or the terminal.
fn without_secrets(
    mut args: std::collections::BTreeMap<String, String>,
) -> std::collections::BTreeMap<String, String> {
    for (name, value) in args.iter_mut() {
        if infer_doctor_core::secret::is_secret_name(name) {
            *value = "[redacted]".to_string();
        }
    }
    args
}

/// The events in one vLLM message (one line may carry two, as 0.32's KV size and concurrency line does).
pub(super) fn parse(message: &str, out: &mut Vec<EventKind>) {
    if message.contains("Avg prompt throughput:") {
        out.extend(stats(message).map(EventKind::Stats));
    } else if let Some(args) = message.strip_prefix("non-default args: ") {
        out.push(EventKind::NonDefaultArgs {
            args: without_secrets(python_dict(args)),
        });
    } else if let Some(tokens) = u64_after(
        message,
        "Chunked prefill is enabled with max_num_batched_tokens=",
    ) {
        out.push(EventKind::EngineConfig {
            settings: [
                ("enable_chunked_prefill".to_string(), "True".to_string()),
                ("max_num_batched_tokens".to_string(), tokens.to_string()),
            ]
            .into(),
        });
    } else if let Some(rest) = message.strip_prefix("Using max model len ") {
        out.extend(leading_u64(rest).map(|tokens| EventKind::MaxModelLen { tokens }));
    } else if message.contains('█') {
        banner(message, out);
    } else if message.starts_with("vLLM ") && message.contains("server version ") {
        version_line(message, out);
    } else if message.starts_with("Initializing a") && message.contains("LLM engine (v") {
        engine_version(message, out);
    } else if message.contains("Model loading took ")
        || message.contains("Loading model weights took ")
    {
        out.push(model_loaded(message));
    } else if let Some(gib) = f64_after(message, "Available KV cache memory: ")
        .or_else(|| f64_after(message, "the rest of the memory reserved for KV Cache is "))
    {
        out.push(EventKind::AvailableKvMemory { gib });
    } else if message.contains(" KV cache size: ") || message.contains("Maximum concurrency for ") {
        kv_cache_size(message, out);
    } else if message.starts_with("# ") && message.contains(" blocks: ") {
        out.extend(cache_blocks(message));
    } else if let Some(seconds) = f64_after(message, "Graph capturing finished in ") {
        out.push(EventKind::GraphCapture {
            seconds,
            memory_gib: f64_after(message, ", took "),
        });
    } else if message.starts_with("init engine") {
        out.extend(
            f64_after(message, " took ").map(|seconds| EventKind::EngineInit {
                seconds,
                compilation_seconds: f64_after(message, "(compilation: "),
            }),
        );
    } else if message.starts_with("Starting vLLM") {
        out.extend(server_started(message));
    } else if message.contains(" is preempted by ") {
        out.push(preemption(message));
    } else if message.starts_with("SpecDecoding metrics: ") {
        if let (Some(accepted), Some(drafted)) = (
            u64_after(message, "Accepted: "),
            u64_after(message, "Drafted: "),
        ) {
            out.push(EventKind::SpecDecoding { accepted, drafted });
        }
    } else if let Some(rate) = message.strip_prefix("Prefix cache hit rate: GPU: ") {
        out.extend(
            leading_f64(rate).map(|percent| EventKind::PrefixCacheHitRate {
                rate: percent / 100.0,
            }),
        );
    }
}

/// `Engine 000: Avg prompt throughput: 2.4 tokens/s, ..., GPU KV cache usage: 0.2%, Prefix cache hit rate: 0.0%`
/// (V1, fields optional and in any order) or V0's `... Running: 2 reqs, Swapped: 0 reqs, Pending: 3 reqs, ...`.
fn stats(message: &str) -> Option<StatsSample> {
    let body_start = message.find("Avg prompt throughput:")?;
    let body = &message[body_start..];
    let is_v0 = body.contains("Swapped:") || body.contains("Pending:");
    let mut sample = StatsSample {
        source: Some(if is_v0 {
            StatsSource::VllmV0
        } else {
            StatsSource::VllmV1
        }),
        engine: message[..body_start]
            .strip_prefix("Engine ")
            .and_then(leading_u64)
            .and_then(|engine| u32::try_from(engine).ok()),
        ..StatsSample::default()
    };
    for (label, value) in fields(body, ": ") {
        let number = leading_f64(value);
        let count = leading_u64(value);
        match label {
            "Avg prompt throughput" => sample.prompt_throughput = number,
            "Avg generation throughput" => sample.generation_throughput = number,
            "Running" => sample.running = count,
            "Waiting" | "Pending" => sample.waiting = count,
            "Deferred" => sample.deferred = count,
            "Swapped" => sample.swapped = count,
            "Preemptions" => sample.preemptions = count,
            "Prefix cache hit rate" => sample.prefix_cache_hit_rate = number.map(|p| p / 100.0),
            // V0's CPU cache is swap space; a V1 server on the CPU backend says `CPU` for its only cache.
            "CPU KV cache usage" if is_v0 => sample.cpu_kv_usage = number.map(|p| p / 100.0),
            label if label.ends_with("KV cache usage") => {
                sample.kv_usage = number.map(|p| p / 100.0);
            }
            _ => {}
        }
    }
    (sample.prompt_throughput.is_some() || sample.generation_throughput.is_some()).then_some(sample)
}

/// The ASCII-art banner (vLLM ≥ 2026-01): `▄▄ ▄█ █ ... █  version 0.32.0` and `█▄█▀ ... █  model   NAME`.
fn banner(message: &str, out: &mut Vec<EventKind>) {
    if let Some((_, version)) = message.split_once(" version ") {
        out.extend(first_word(version).map(|version| EventKind::Version {
            version,
            engine: None,
        }));
    } else if let Some((_, model)) = message.split_once(" model ") {
        out.extend(first_word(model).map(|model| EventKind::Model { model }));
    }
}

/// `vLLM API server version 0.6.3.post1` (2024–2026) or `vLLM server version X, serving model Y`.
fn version_line(message: &str, out: &mut Vec<EventKind>) {
    let Some((_, rest)) = message.split_once("server version ") else {
        return;
    };
    out.extend(
        first_word(rest.trim_end_matches(',')).map(|version| EventKind::Version {
            version: version.trim_end_matches(',').to_string(),
            engine: None,
        }),
    );
    if let Some((_, model)) = rest.split_once("serving model ") {
        out.extend(first_word(model).map(|model| EventKind::Model { model }));
    }
}

/// `Initializing a V1 LLM engine (v0.32.0) with config: ...`; V0: `Initializing an LLM engine (v0.5.0) ...`.
fn engine_version(message: &str, out: &mut Vec<EventKind>) {
    let Some((head, rest)) = message.split_once("LLM engine (v") else {
        return;
    };
    let Some((version, _)) = rest.split_once(')') else {
        return;
    };
    let engine = if head.contains("V1") { "V1" } else { "V0" };
    out.push(EventKind::Version {
        version: version.to_string(),
        engine: Some(engine.to_string()),
    });
    // The same line states every engine setting, defaults included: the surest word on what ran.
    if let Some((_, config)) = message.split_once(" with config: ") {
        let settings = without_secrets(top_level_settings(config));
        if !settings.is_empty() {
            out.push(EventKind::EngineConfig { settings });
        }
    }
}

/// `key=value, key=value` at the top level of vLLM's engine config line, whose values may hold commas inside
/// brackets, braces, parentheses or quotes (`compilation_config={'mode': …, …}`).
fn top_level_settings(text: &str) -> std::collections::BTreeMap<String, String> {
    let mut settings = std::collections::BTreeMap::new();
    let mut depth = 0i32;
    let mut quote: Option<char> = None;
    let mut start = 0;
    let mut add = |part: &str| {
        if let Some((key, value)) = part.split_once('=') {
            let key = key.trim();
            if !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                settings.insert(key.to_string(), value.trim().trim_matches('\'').to_string());
            }
        }
    };
    for (at, c) in text.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(c),
            (None, '(' | '[' | '{') => depth += 1,
            (None, ')' | ']' | '}') => depth -= 1,
            (None, ',') if depth == 0 => {
                add(&text[start..at]);
                start = at + 1;
            }
            _ => {}
        }
    }
    add(&text[start..]);
    settings
}

/// `Model loading took 14.0 GiB memory and 3.500000 seconds`, `... took 14.9595 GB and 4.29 seconds`,
/// V0's `Loading model weights took 14.9595 GB`. vLLM's "GB" was always bytes / 2³⁰.
fn model_loaded(message: &str) -> EventKind {
    EventKind::ModelLoaded {
        memory_gib: f64_after(message, " took "),
        seconds: message
            .rfind(" and ")
            .and_then(|at| leading_f64(&message[at + 5..]))
            .filter(|_| message.contains("second")),
    }
}

/// `GPU KV cache size: 171,904 tokens` and `Maximum concurrency for 2,048 tokens per request: 128.00x`, on one
/// line (0.32) or two.
fn kv_cache_size(message: &str, out: &mut Vec<EventKind>) {
    if let Some(at) = message.find(" KV cache size: ") {
        let device = message[..at].rsplit(' ').next().unwrap_or_default();
        if let Some(tokens) = leading_u64(&message[at + " KV cache size: ".len()..]) {
            out.push(EventKind::KvCacheSize {
                device: device.to_string(),
                tokens,
            });
        }
    }
    let tokens_per_request = u64_after(message, "Maximum concurrency for ");
    let concurrency = f64_after(message, " tokens per request: ");
    if let (Some(tokens_per_request), Some(concurrency)) = (tokens_per_request, concurrency) {
        out.push(EventKind::MaxConcurrency {
            tokens_per_request,
            concurrency,
        });
    }
}

/// `# GPU blocks: 27913, # CPU blocks: 2048`, `# cuda blocks: 12200, # CPU blocks: 3640`, `# GPU blocks: 10000`.
fn cache_blocks(message: &str) -> Option<EventKind> {
    let (device, rest) = message.strip_prefix("# ")?.split_once(" blocks: ")?;
    Some(EventKind::CacheBlocks {
        device: device.to_string(),
        device_blocks: leading_u64(rest)?,
        cpu_blocks: u64_after(rest, "# CPU blocks: "),
    })
}

/// `Starting vLLM API server on http://0.0.0.0:8000`, `Starting vLLM server on http://127.0.0.1:8001`,
/// `Starting vLLM API server 0 on http://...`.
fn server_started(message: &str) -> Option<EventKind> {
    let (_, address) = message.rsplit_once(" on ")?;
    Some(EventKind::ServerStarted {
        address: first_word(address)?,
    })
}

/// V0: `Sequence group 221 is preempted by PreemptionMode.RECOMPUTE mode because there is not enough KV cache
/// space. ... total_num_cumulative_preemption=101`.
fn preemption(message: &str) -> EventKind {
    let mode = message
        .split_once(" is preempted by ")
        .and_then(|(_, rest)| rest.split_once(" mode"))
        .map(|(mode, _)| mode.trim_start_matches("PreemptionMode.").to_string());
    EventKind::Preemption {
        message: message.to_string(),
        mode,
        cumulative: u64_after(message, "total_num_cumulative_preemption="),
        retracted: None,
    }
}

fn first_word(text: &str) -> Option<String> {
    text.split_whitespace().next().map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(message: &str) -> Vec<EventKind> {
        let mut out = Vec::new();
        parse(message, &mut out);
        out
    }

    fn one(message: &str) -> EventKind {
        let mut all = events(message);
        assert_eq!(all.len(), 1, "{message}: {all:?}");
        all.remove(0)
    }

    fn sample(message: &str) -> StatsSample {
        match one(message) {
            EventKind::Stats(sample) => sample,
            other => panic!("not stats: {other:?}"),
        }
    }

    #[test]
    fn v1_stats_line_from_the_cpu_fixture() {
        let stats = sample(
            "Engine 000: Avg prompt throughput: 8.2 tokens/s, Avg generation throughput: 103.7 tokens/s, Running: 4 reqs, Waiting: 0 reqs, CPU KV cache usage: 0.2%, Prefix cache hit rate: 0.0%",
        );
        assert_eq!(stats.source, Some(StatsSource::VllmV1));
        assert_eq!(stats.engine, Some(0));
        assert_eq!(stats.prompt_throughput, Some(8.2));
        assert_eq!(stats.generation_throughput, Some(103.7));
        assert_eq!(stats.running, Some(4));
        assert_eq!(stats.waiting, Some(0));
        assert_eq!(stats.kv_usage, Some(0.2 / 100.0));
        assert_eq!(stats.cpu_kv_usage, None);
        assert_eq!(stats.prefix_cache_hit_rate, Some(0.0));
        assert_eq!(stats.deferred, None);
        assert_eq!(stats.preemptions, None);
    }

    #[test]
    fn v1_stats_line_with_deferred_and_preemptions() {
        // The simulator's line (crates/sim/src/logs.rs), in upstream's field order (loggers.py, 2026).
        let stats = sample(
            "Engine 001: Avg prompt throughput: 1234.6 tokens/s, Avg generation throughput: 0.1 tokens/s, Running: 256 reqs, Waiting: 42 reqs, Deferred: 2 reqs, Preemptions: 7, GPU KV cache usage: 100.0%, Prefix cache hit rate: 45.7%",
        );
        assert_eq!(stats.engine, Some(1));
        assert_eq!(stats.waiting, Some(42));
        assert_eq!(stats.deferred, Some(2));
        assert_eq!(stats.preemptions, Some(7));
        assert_eq!(stats.kv_usage, Some(1.0));
        assert_eq!(stats.prefix_cache_hit_rate, Some(0.457));
        // vllm issue #43295 (2026-05): the GPU form.
        let gpu = sample(
            "Engine 000: Avg prompt throughput: 12068.8 tokens/s, Avg generation throughput: 734.9 tokens/s, Running: 18 reqs, Waiting: 33 reqs, GPU KV cache usage: 87.7%, Prefix cache hit rate: 0.0%",
        );
        assert_eq!(gpu.waiting, Some(33));
        assert_eq!(gpu.kv_usage, Some(0.877));
        // Early 2025, no `Engine` prefix (vllm #12592).
        let early = sample(
            "Avg prompt throughput: 0.0 tokens/s, Avg generation throughput: 5.4 tokens/s, Running: 1 reqs, Waiting: 14 reqs, GPU KV cache usage: 76.5%, Prefix cache hit rate: 92.0%",
        );
        assert_eq!(early.source, Some(StatsSource::VllmV1));
        assert_eq!(early.engine, None);
        assert_eq!(early.prefix_cache_hit_rate, Some(0.92));
    }

    #[test]
    fn v0_stats_line() {
        // vllm issue #6737 (vLLM 0.4.2).
        let stats = sample(
            "Avg prompt throughput: 0.0 tokens/s, Avg generation throughput: 2136.3 tokens/s, Running: 247 reqs, Swapped: 0 reqs, Pending: 740 reqs, GPU KV cache usage: 99.7%, CPU KV cache usage: 0.0%",
        );
        assert_eq!(stats.source, Some(StatsSource::VllmV0));
        assert_eq!(stats.running, Some(247));
        assert_eq!(stats.swapped, Some(0));
        assert_eq!(stats.waiting, Some(740));
        assert_eq!(stats.kv_usage, Some(0.997));
        assert_eq!(stats.cpu_kv_usage, Some(0.0));
        // vllm issue #6689: the trailing period of later V0 versions.
        let dotted = sample(
            "Avg prompt throughput: 0.0 tokens/s, Avg generation throughput: 0.0 tokens/s, Running: 0 reqs, Swapped: 0 reqs, Pending: 0 reqs, GPU KV cache usage: 0.0%, CPU KV cache usage: 0.0%.",
        );
        assert_eq!(dotted.cpu_kv_usage, Some(0.0));
        assert_eq!(
            one("Prefix cache hit rate: GPU: 45.00%, CPU: 0.00%"),
            EventKind::PrefixCacheHitRate { rate: 0.45 }
        );
    }

    #[test]
    fn banner_and_version_lines() {
        assert_eq!(
            one(" ▄▄ ▄█ █     █     █ ▀▄▀ █  version 0.32.0"),
            EventKind::Version {
                version: "0.32.0".into(),
                engine: None
            }
        );
        assert_eq!(
            one("  █▄█▀ █     █     █     █  model   <workdir>/tiny-model/hf"),
            EventKind::Model {
                model: "<workdir>/tiny-model/hf".into()
            }
        );
        assert!(events("       █     █     █▄   ▄█").is_empty());
        assert_eq!(
            one("vLLM API server version 0.6.3.post1"),
            EventKind::Version {
                version: "0.6.3.post1".into(),
                engine: None
            }
        );
        assert_eq!(
            events("vLLM server version 0.15.0, serving model meta-llama/Llama-3.1-8B"),
            [
                EventKind::Version {
                    version: "0.15.0".into(),
                    engine: None
                },
                EventKind::Model {
                    model: "meta-llama/Llama-3.1-8B".into()
                }
            ]
        );
        assert_eq!(
            events(
                "Initializing a V1 LLM engine (v0.32.0) with config: model='<workdir>/tiny-model/hf', speculative_config=None"
            ),
            [
                EventKind::Version {
                    version: "0.32.0".into(),
                    engine: Some("V1".into())
                },
                EventKind::EngineConfig {
                    settings: [
                        ("model".to_string(), "<workdir>/tiny-model/hf".to_string()),
                        ("speculative_config".to_string(), "None".to_string())
                    ]
                    .into()
                }
            ]
        );
        assert_eq!(
            events("Initializing an LLM engine (v0.5.0.post1) with config: model='x'")[0],
            EventKind::Version {
                version: "0.5.0.post1".into(),
                engine: Some("V0".into())
            }
        );
    }

    #[test]
    fn startup_capacity_lines() {
        // The 0.32 CPU fixture: both facts on one line.
        assert_eq!(
            events(
                "CPU KV cache size: 262,144 tokens, Maximum concurrency for 2,048 tokens per request: 128.00x"
            ),
            [
                EventKind::KvCacheSize {
                    device: "CPU".into(),
                    tokens: 262_144
                },
                EventKind::MaxConcurrency {
                    tokens_per_request: 2048,
                    concurrency: 128.0
                }
            ]
        );
        // Earlier V1: two lines (kv_cache_utils.py, 2025).
        assert_eq!(
            one("GPU KV cache size: 171,904 tokens"),
            EventKind::KvCacheSize {
                device: "GPU".into(),
                tokens: 171_904
            }
        );
        assert_eq!(
            one("Maximum concurrency for 32,768 tokens per request: 5.25x"),
            EventKind::MaxConcurrency {
                tokens_per_request: 32_768,
                concurrency: 5.25
            }
        );
        // V0 prints the length without separators.
        assert_eq!(
            one("Maximum concurrency for 32768 tokens per request: 6.04x"),
            EventKind::MaxConcurrency {
                tokens_per_request: 32_768,
                concurrency: 6.04
            }
        );
        assert_eq!(
            one("Available KV cache memory: 41.98 GiB"),
            EventKind::AvailableKvMemory { gib: 41.98 }
        );
        assert_eq!(
            one(
                "Memory profiling takes 4.39 seconds the rest of the memory reserved for KV Cache is 9.49GiB."
            ),
            EventKind::AvailableKvMemory { gib: 9.49 }
        );
        assert_eq!(
            one("# GPU blocks: 27913, # CPU blocks: 2048"),
            EventKind::CacheBlocks {
                device: "GPU".into(),
                device_blocks: 27_913,
                cpu_blocks: Some(2048)
            }
        );
        assert_eq!(
            one("# cuda blocks: 12200, # CPU blocks: 3640"),
            EventKind::CacheBlocks {
                device: "cuda".into(),
                device_blocks: 12_200,
                cpu_blocks: Some(3640)
            }
        );
        assert_eq!(
            one("Using max model len 2048"),
            EventKind::MaxModelLen { tokens: 2048 }
        );
    }

    #[test]
    fn loading_graphs_and_engine_init() {
        assert_eq!(
            one("Model loading took 14.0 GiB memory and 3.500000 seconds"),
            EventKind::ModelLoaded {
                memory_gib: Some(14.0),
                seconds: Some(3.5)
            }
        );
        assert_eq!(
            one("Model loading took 14.9595 GB and 4.290234 seconds"),
            EventKind::ModelLoaded {
                memory_gib: Some(14.9595),
                seconds: Some(4.290_234)
            }
        );
        assert_eq!(
            one("Loading model weights took 14.9595 GB"),
            EventKind::ModelLoaded {
                memory_gib: Some(14.9595),
                seconds: None
            }
        );
        // vllm issue #17939 (0.8.x).
        assert_eq!(
            one("Graph capturing finished in 112 secs, took 0.95 GiB"),
            EventKind::GraphCapture {
                seconds: 112.0,
                memory_gib: Some(0.95)
            }
        );
        assert_eq!(
            one("Graph capturing finished in 5 secs."),
            EventKind::GraphCapture {
                seconds: 5.0,
                memory_gib: None
            }
        );
        assert_eq!(
            one("init engine (profile, create kv cache, warmup model) took 41.92 s"),
            EventKind::EngineInit {
                seconds: 41.92,
                compilation_seconds: None
            }
        );
        assert_eq!(
            one(
                "init engine (profile, create kv cache, warmup model) took 60.10 s (compilation: 35.02 s)"
            ),
            EventKind::EngineInit {
                seconds: 60.1,
                compilation_seconds: Some(35.02)
            }
        );
        assert_eq!(
            one("Starting vLLM server on http://127.0.0.1:8001"),
            EventKind::ServerStarted {
                address: "http://127.0.0.1:8001".into()
            }
        );
        assert_eq!(
            one("Starting vLLM API server on http://0.0.0.0:8000"),
            EventKind::ServerStarted {
                address: "http://0.0.0.0:8000".into()
            }
        );
        assert_eq!(
            one("Starting vLLM API server 0 on http://0.0.0.0:8000"),
            EventKind::ServerStarted {
                address: "http://0.0.0.0:8000".into()
            }
        );
    }

    #[test]
    fn v0_preemption_warning() {
        // vllm issue #546 comment (0.6.3).
        let message = "Sequence group chat-7e630abf1a8b4c8a88775b1e98a54cf2 is preempted by PreemptionMode.SWAP mode because there is not enough KV cache space. This can affect the end-to-end performance. Increase gpu_memory_utilization or tensor_parallel_size to provide more KV cache memory. total_num_cumulative_preemption=1";
        match one(message) {
            EventKind::Preemption {
                mode, cumulative, ..
            } => {
                assert_eq!(mode.as_deref(), Some("SWAP"));
                assert_eq!(cumulative, Some(1));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn engine_config_line_from_the_cpu_fixture() {
        let log = include_str!("../../../../fixtures/vllm_cpu/startup_and_run.log");
        let line = log
            .lines()
            .find(|l| l.contains("with config: "))
            .expect("the engine config line");
        let message = &line[line.find("Initializing").expect("message")..];
        let settings = events(message)
            .into_iter()
            .find_map(|e| match e {
                EventKind::EngineConfig { settings } => Some(settings),
                _ => None,
            })
            .expect("settings");
        assert_eq!(settings["enforce_eager"], "False");
        assert_eq!(settings["enable_prefix_caching"], "True");
        assert_eq!(settings["enable_chunked_prefill"], "True");
        assert_eq!(settings["kv_cache_dtype"], "auto");
        assert_eq!(settings["tensor_parallel_size"], "1");
        assert_eq!(settings["speculative_config"], "None");
        assert_eq!(settings["dtype"], "torch.bfloat16");
        assert_eq!(settings["max_seq_len"], "2048");
        // A value's inner commas do not split it.
        assert!(settings["compilation_config"].starts_with("{'mode'"));
    }

    #[test]
    fn spec_decoding_line() {
        // vllm/v1/spec_decode/metrics.py's format.
        match one(
            "SpecDecoding metrics: Mean acceptance length: 1.60, Accepted throughput: 12.00 tokens/s, Drafted \
             throughput: 60.00 tokens/s, Accepted: 120 tokens, Drafted: 600 tokens, Per-position acceptance rate: \
             0.400, 0.100, 0.050, 0.030, 0.020, Avg Draft acceptance rate: 20.0%",
        ) {
            EventKind::SpecDecoding { accepted, drafted } => {
                assert_eq!((accepted, drafted), (120, 600));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn chunked_prefill_line() {
        match one("Chunked prefill is enabled with max_num_batched_tokens=2048.") {
            EventKind::EngineConfig { settings } => {
                assert_eq!(settings["max_num_batched_tokens"], "2048");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn non_default_args_and_unknown_messages() {
        match one(
            "non-default args: {'host': '127.0.0.1', 'port': 8001, 'served_model_name': ['tiny'], 'api_key': \
             ['sk-live-1234'], 'max_num_batched_tokens': 8192, 'tokenizer': 'tiny'}",
        ) {
            EventKind::NonDefaultArgs { args } => {
                assert_eq!(args["port"], "8001");
                assert_eq!(args["served_model_name"], "['tiny']");
                // The server's own API key never leaves the parser; settings about tokens stay.
                assert_eq!(args["api_key"], "[redacted]");
                assert_eq!(args["max_num_batched_tokens"], "8192");
                assert_eq!(args["tokenizer"], "tiny");
            }
            other => panic!("{other:?}"),
        }
        for message in [
            "Resolved architecture: LlamaForCausalLM",
            "Avg prompt throughput: garbage",
            "Using max model len ",
            "# GPU blocks: x",
            "init engine",
            "Starting vLLM",
            "Initializing a V1 LLM engine (v0.32.0",
        ] {
            assert!(events(message).is_empty(), "{message}");
        }
    }
}
