//! Whole-log tests: every real fixture log, the simulator's lines, prefixes, tracebacks, and arbitrary input,
//! checked through the public API the CLI and the run directory use.

use super::*;

macro_rules! fixture {
    ($path:literal) => {
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../fixtures/",
            $path
        ))
    };
}

const VLLM_RUN: &str = fixture!("vllm_cpu/startup_and_run.log");
const VLLM_WARM: &str = fixture!("vllm_cpu/startup_warm_cache_and_peer_runs.log");
const VLLM_CLI_ERROR: &str = fixture!("vllm_cpu/vllm_serve_cli_error.log");
const LLAMA_TINY: &str = fixture!("llamacpp/llama_server.log");
const LLAMA_MEDIUM: &str = fixture!("llamacpp/medium_server.log");
const LLAMA_GEMMA: &str = fixture!("llamacpp/gemma3_270m_server.log");

/// (prompt tok/s, generation tok/s, running, KV usage 0–1) of each stats line, as printed.
fn stats_values(report: &LogReport) -> Vec<(f64, f64, u64, f64)> {
    report
        .stats
        .iter()
        .map(|point| {
            let sample = &point.sample;
            (
                sample.prompt_throughput.expect("prompt"),
                sample.generation_throughput.expect("generation"),
                sample.running.expect("running"),
                sample.kv_usage.expect("kv"),
            )
        })
        .collect()
}

#[test]
fn vllm_cpu_startup_and_run_fixture() {
    let report = parse_log(VLLM_RUN);
    assert_eq!(report.server, Some(ServerKind::Vllm));
    let configuration = &report.configuration;
    assert_eq!(configuration.version.as_deref(), Some("0.32.0"));
    assert_eq!(configuration.engine.as_deref(), Some("V1"));
    assert_eq!(
        configuration.model.as_deref(),
        Some("<workdir>/tiny-model/hf")
    );
    assert_eq!(configuration.max_model_len, Some(2048));
    assert_eq!(configuration.non_default_args.len(), 8);
    assert_eq!(configuration.non_default_args["max_num_seqs"], "8");
    assert_eq!(
        configuration.non_default_args["served_model_name"],
        "['tiny']"
    );
    assert_eq!(configuration.engine_init_seconds, Some(41.92));
    assert_eq!(
        configuration.server_address.as_deref(),
        Some("http://127.0.0.1:8001")
    );

    let capacity = &report.capacity;
    assert_eq!(capacity.kv_cache_tokens, Some(262_144));
    assert_eq!(capacity.kv_cache_device.as_deref(), Some("CPU"));
    assert_eq!(capacity.max_concurrency, Some(128.0));
    assert_eq!(capacity.max_concurrency_tokens_per_request, Some(2048));

    assert_eq!(
        stats_values(&report),
        [
            (2.4, 3.2, 0, 0.0),
            (8.2, 103.7, 4, 0.2 / 100.0),
            (31.4, 382.7, 0, 0.0),
            (0.0, 0.0, 0, 0.0),
            (64.2, 64.0, 0, 0.0),
            (7.5, 180.7, 6, 0.9 / 100.0),
        ]
    );
    let first = &report.stats[0];
    assert_eq!(first.line, 102);
    let time = first.time.as_ref().expect("time");
    assert_eq!(time.text, "11-22 11:04:10");
    assert_eq!(time.clock, Clock::LocalYearless);
    let last = report.stats.last().expect("stats");
    assert_eq!(
        last.time.as_ref().expect("time").seconds - time.seconds,
        100.0
    );
    assert!(
        report
            .stats
            .iter()
            .all(|point| point.sample.waiting == Some(0)
                && point.sample.source == Some(StatsSource::VllmV1)
                && point.sample.engine == Some(0))
    );

    // The shutdown traceback is one problem.
    assert_eq!(report.problems.len(), 1);
    let problem = &report.problems[0];
    assert_eq!(problem.kind, ProblemKind::Error);
    assert_eq!(
        problem.message,
        "vllm.v1.engine.exceptions.EngineDeadError: EngineCore encountered an issue. See stack trace (above) for the root cause."
    );
    assert_eq!(
        problem.headline.as_deref(),
        Some("AsyncLLM output_handler failed.")
    );
    assert_eq!(problem.lines, 8);
    assert_eq!(problem.process.as_deref(), Some("APIServer"));

    assert!(report.warnings.iter().any(|warning| warning.message
        == "Triton is not installed. triton-cpu is expected on x86 CPUs."
        && warning.count == 2));
    assert_eq!(report.lines.read, 202);
    assert_eq!(
        report.lines.recognised + report.lines.skipped,
        report.lines.read
    );
    assert!(report.lines.skipped > 100, "{:?}", report.lines);
}

#[test]
fn vllm_cpu_warm_start_fixture() {
    let report = parse_log(VLLM_WARM);
    assert_eq!(report.server, Some(ServerKind::Vllm));
    assert_eq!(report.capacity.kv_cache_tokens, Some(262_144));
    assert_eq!(report.capacity.max_concurrency, Some(128.0));
    assert_eq!(
        report.capacity.max_concurrency_tokens_per_request,
        Some(2048)
    );
    assert_eq!(report.configuration.engine_init_seconds, Some(18.22));
    assert_eq!(
        stats_values(&report),
        [
            (64.0, 64.0, 0, 0.0),
            (0.0, 0.0, 0, 0.0),
            (12.8, 12.8, 0, 0.0),
            (51.2, 51.2, 0, 0.0),
            (0.0, 0.0, 0, 0.0),
            (64.0, 64.0, 0, 0.0),
        ]
    );
    assert!(report.problems.is_empty(), "{:?}", report.problems);
}

#[test]
fn bare_traceback_is_one_error() {
    let report = parse_log(VLLM_CLI_ERROR);
    assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
    let problem = &report.problems[0];
    assert_eq!(problem.kind, ProblemKind::Error);
    assert_eq!(
        problem.message,
        "importlib.metadata.PackageNotFoundError: No package metadata was found for vllm"
    );
    assert_eq!(problem.line, 2);
    assert_eq!(problem.lines, 24);
    assert_eq!(report.lines.recognised, 24);
    assert_eq!(report.lines.skipped, 1);
    assert_eq!(report.server, None);
}

#[test]
fn llamacpp_gemma_fixture() {
    let report = parse_log(LLAMA_GEMMA);
    assert_eq!(report.server, Some(ServerKind::LlamaCpp));
    assert_eq!(report.capacity.slots, Some(4));
    assert_eq!(report.capacity.context_per_slot, Some(1024));
    assert_eq!(report.capacity.kv_cache_tokens, Some(4096));
    assert_eq!(
        report.configuration.server_address.as_deref(),
        Some("http://127.0.0.1:8084")
    );
    assert_eq!(report.requests.len(), 6);
    let first = &report.requests[0];
    assert_eq!(
        first.timing,
        RequestTiming {
            slot: Some(3),
            task: Some(0),
            prompt_ms: Some(1437.34),
            prompt_tokens: Some(3),
            generation_ms: Some(14_360.25),
            generated_tokens: Some(30),
            total_ms: Some(15_797.59),
            total_tokens: Some(33),
        }
    );
    assert_eq!(first.line, 12);
    let time = first.time.as_ref().expect("time");
    assert_eq!(time.clock, Clock::SinceStart);
    assert!((time.seconds - 21.856_955).abs() < 1e-9);
    // Four requests ran at once; their blocks are kept apart by slot and task.
    let tasks: Vec<_> = report.requests.iter().map(|r| r.timing.task).collect();
    assert_eq!(
        tasks,
        [Some(0), Some(31), Some(97), Some(100), Some(99), Some(101)]
    );
    assert!(report.requests.iter().all(|r| r.timing.total_ms.is_some()
        && r.timing.prompt_ms.is_some()
        && r.timing.generation_ms.is_some()));
    assert_eq!(report.warnings.len(), 2);
}

#[test]
fn llamacpp_tiny_and_medium_fixtures() {
    let tiny = parse_log(LLAMA_TINY);
    assert_eq!(tiny.server, Some(ServerKind::LlamaCpp));
    assert_eq!(tiny.requests.len(), 235);
    assert_eq!(tiny.capacity.slots, Some(4));
    assert_eq!(
        tiny.configuration.server_address.as_deref(),
        Some("http://127.0.0.1:8080")
    );
    let first = &tiny.requests[0].timing;
    assert_eq!(first.total_ms, Some(16.57));
    assert_eq!(first.total_tokens, Some(21));
    // The request over the context limit.
    let errors: Vec<_> = tiny
        .problems
        .iter()
        .filter(|problem| problem.kind == ProblemKind::Error)
        .collect();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].line, 1704);
    assert!(
        errors[0]
            .message
            .contains("exceeds the available context size (1024 tokens)")
    );

    let medium = parse_log(LLAMA_MEDIUM);
    assert_eq!(medium.requests.len(), 26);
    let first = &medium.requests[0].timing;
    assert_eq!(first.prompt_ms, Some(171.49));
    assert_eq!(first.prompt_tokens, Some(11));
    assert_eq!(first.generated_tokens, Some(128));
    assert_eq!(first.total_tokens, Some(139));
    for report in [&tiny, &medium] {
        assert_eq!(
            report.lines.recognised + report.lines.skipped,
            report.lines.read
        );
        assert!(report.requests.iter().all(|r| r.timing.total_ms.is_some()));
    }
}

/// The lines `crates/sim/src/logs.rs` renders (its tests pin them byte for byte), GPU forms included.
#[test]
fn simulator_lines() {
    let log = "\
(APIServer pid=1) INFO 11-22 11:00:36 [api_utils.py:347] \r
(APIServer pid=1) INFO 11-22 11:00:36 [api_utils.py:347]  ▄▄ ▄█ █     █     █ ▀▄▀ █  version 0.32.0\r
(APIServer pid=1) INFO 11-22 11:00:36 [api_utils.py:347]   █▄█▀ █     █     █     █  model   meta-llama/Llama-3.1-8B-Instruct\r
(APIServer pid=1) INFO 11-22 11:00:36 [api_utils.py:286] non-default args: {'a': \"it's\", 'b': 'say \"hi\" it\\'s', 'd': True, 'f': 0.92}
(APIServer pid=1) INFO 11-22 11:00:36 [model.py:2152] Using max model len 131072
(Worker pid=3) INFO 11-22 11:00:50 [gpu_model_runner.py:5102] Model loading took 14.0 GiB memory and 3.500000 seconds
(Worker pid=3) INFO 11-22 11:01:00 [gpu_worker.py:463] Available KV cache memory: 41.98 GiB
(EngineCore pid=2) INFO 11-22 11:01:01 [kv_cache_utils.py:2327] GPU KV cache size: 1,234,567 tokens, Maximum concurrency for 131,072 tokens per request: 9.42x
(EngineCore pid=2) INFO 11-22 11:01:02 [core.py:402] init engine (profile, create kv cache, warmup model) took 25.00 s
(APIServer pid=1) INFO 11-22 11:01:03 [entry.py:140] Starting vLLM server on http://0.0.0.0:8000
(APIServer pid=1) INFO 11-22 11:01:13 [loggers.py:335] Engine 000: Avg prompt throughput: 82.0 tokens/s, Avg generation throughput: 103.7 tokens/s, Running: 3 reqs, Waiting: 1 reqs, Preemptions: 2, GPU KV cache usage: 50.0%, Prefix cache hit rate: 25.0%
";
    let report = parse_log(log);
    assert_eq!(report.server, Some(ServerKind::Vllm));
    let configuration = &report.configuration;
    assert_eq!(configuration.version.as_deref(), Some("0.32.0"));
    assert_eq!(
        configuration.model.as_deref(),
        Some("meta-llama/Llama-3.1-8B-Instruct")
    );
    assert_eq!(configuration.non_default_args["b"], "say \"hi\" it's");
    assert_eq!(configuration.max_model_len, Some(131_072));
    assert_eq!(configuration.model_memory_gib, Some(14.0));
    assert_eq!(configuration.model_load_seconds, Some(3.5));
    assert_eq!(configuration.engine_init_seconds, Some(25.0));
    assert_eq!(
        configuration.server_address.as_deref(),
        Some("http://0.0.0.0:8000")
    );
    let capacity = &report.capacity;
    assert_eq!(capacity.kv_memory_gib, Some(41.98));
    assert_eq!(capacity.kv_cache_tokens, Some(1_234_567));
    assert_eq!(capacity.kv_cache_device.as_deref(), Some("GPU"));
    assert_eq!(capacity.max_concurrency, Some(9.42));
    assert_eq!(capacity.max_concurrency_tokens_per_request, Some(131_072));
    let sample = &report.stats[0].sample;
    assert_eq!(sample.waiting, Some(1));
    assert_eq!(sample.preemptions, Some(2));
    assert_eq!(sample.kv_usage, Some(0.5));
    assert_eq!(sample.prefix_cache_hit_rate, Some(0.25));
    assert_eq!(report.lines.skipped, 1, "only the banner's blank line");
}

#[test]
fn docker_timestamps_and_untagged_prefixes() {
    let log = "\
2026-11-22T11:04:10.123456789Z (APIServer pid=7) INFO 11-22 11:04:10 [loggers.py:335] Engine 000: Avg prompt throughput: 2.4 tokens/s, Avg generation throughput: 3.2 tokens/s, Running: 0 reqs, Waiting: 0 reqs, GPU KV cache usage: 0.0%, Prefix cache hit rate: 0.0%
2026-11-22T11:04:20.123456789Z INFO 11-22 11:04:20 [loggers.py:335] Engine 000: Avg prompt throughput: 8.2 tokens/s, Avg generation throughput: 103.7 tokens/s, Running: 4 reqs, Waiting: 0 reqs, GPU KV cache usage: 0.2%, Prefix cache hit rate: 0.0%
INFO 11-22 11:04:30 loggers.py:335] Engine 000: Avg prompt throughput: 31.4 tokens/s, Avg generation throughput: 382.7 tokens/s, Running: 0 reqs, Waiting: 0 reqs, GPU KV cache usage: 0.0%, Prefix cache hit rate: 0.0%
\u{1b}[36m(APIServer pid=7)\u{1b}[0m INFO 11-22 11:04:40 [loggers.py:335] Engine 000: Avg prompt throughput: 0.0 tokens/s, Avg generation throughput: 0.0 tokens/s, Running: 0 reqs, Waiting: 0 reqs, GPU KV cache usage: 0.0%, Prefix cache hit rate: 0.0%
";
    let report = parse_log(log);
    assert_eq!(
        stats_values(&report),
        [
            (2.4, 3.2, 0, 0.0),
            (8.2, 103.7, 4, 0.002),
            (31.4, 382.7, 0, 0.0),
            (0.0, 0.0, 0, 0.0)
        ]
    );
    let times: Vec<_> = report
        .stats
        .iter()
        .map(|point| point.time.as_ref().expect("time"))
        .collect();
    assert_eq!(times[0].clock, Clock::Utc);
    assert_eq!(times[1].seconds - times[0].seconds, 10.0);
    assert_eq!(times[2].clock, Clock::LocalYearless);
    assert_eq!(report.lines.skipped, 0);
}

#[test]
fn v0_log_with_blocks_preemption_and_hit_rate() {
    // Lines of vLLM 0.4–0.6 (issues #6737, #546, #3094; `# GPU blocks` of executor_base.py).
    let log = "\
INFO 07-24 09:50:01 llm_engine.py:100] Initializing an LLM engine (v0.4.2) with config: model='qwen2-0.5b'
INFO 07-24 09:50:20 gpu_executor.py:83] # GPU blocks: 27913, # CPU blocks: 2048
INFO 07-24 09:50:30 model_runner.py:1514] Graph capturing finished in 5 secs.
INFO 07-24 09:55:30 metrics.py:334] Avg prompt throughput: 0.0 tokens/s, Avg generation throughput: 2136.3 tokens/s, Running: 247 reqs, Swapped: 0 reqs, Pending: 740 reqs, GPU KV cache usage: 99.7%, CPU KV cache usage: 0.0%
INFO 07-24 09:55:30 metrics.py:341] Prefix cache hit rate: GPU: 12.50%, CPU: 0.00%
WARNING 07-24 09:55:31 scheduler.py:1483] Sequence group chat-7e63 is preempted by PreemptionMode.RECOMPUTE mode because there is not enough KV cache space. This can affect the end-to-end performance. Increase gpu_memory_utilization or tensor_parallel_size to provide more KV cache memory. total_num_cumulative_preemption=51
";
    let report = parse_log(log);
    assert_eq!(report.configuration.version.as_deref(), Some("0.4.2"));
    assert_eq!(report.configuration.engine.as_deref(), Some("V0"));
    assert_eq!(report.capacity.device_blocks, Some(27_913));
    assert_eq!(report.capacity.cpu_blocks, Some(2048));
    assert_eq!(report.configuration.graph_capture_seconds, Some(5.0));
    let sample = &report.stats[0].sample;
    assert_eq!(sample.source, Some(StatsSource::VllmV0));
    assert_eq!(sample.waiting, Some(740));
    assert_eq!(sample.prefix_cache_hit_rate, Some(0.125));
    assert_eq!(report.problems.len(), 1);
    assert_eq!(report.problems[0].kind, ProblemKind::Preemption);
    assert_eq!(report.problems[0].line, 6);
    assert!(
        report.warnings.is_empty(),
        "the preemption is not also a plain warning"
    );
}

#[test]
fn out_of_memory_traceback_is_one_event() {
    // Shape of vllm issue #27508 (an unlevelled EngineCore traceback), with an interleaved line from another
    // process, then the levelled form of club-3090 issue #16.
    let log = "\
(EngineCore_DP0 pid=8884) Process EngineCore_DP0:
(EngineCore_DP0 pid=8884) Traceback (most recent call last):
(EngineCore_DP0 pid=8884)   File \"/opt/conda/lib/python3.13/site-packages/vllm/v1/sample/sampler.py\", line 86, in forward
(APIServer pid=1) INFO 05-01 14:39:05 [loggers.py:271] Engine 000: Avg prompt throughput: 0.0 tokens/s, Avg generation throughput: 5.4 tokens/s, Running: 1 reqs, Waiting: 14 reqs, GPU KV cache usage: 76.5%, Prefix cache hit rate: 92.0%
(EngineCore_DP0 pid=8884)     logits = logits.to(torch.float32)
(EngineCore_DP0 pid=8884) torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 786.00 MiB. GPU 0 has a total capacity of 79.11 GiB of which 140.75 MiB is free.
(EngineCore pid=112) ERROR 05-01 14:39:06 [core.py:1131] EngineCore encountered a fatal error.
(EngineCore pid=112) ERROR 05-01 14:39:06 [core.py:1131] Traceback (most recent call last):
(EngineCore pid=112) ERROR 05-01 14:39:06 [core.py:1131]   File \"/usr/local/lib/python3.12/dist-packages/vllm/v1/engine/core.py\", line 1122, in run_engine_core
(EngineCore pid=112) ERROR 05-01 14:39:06 [core.py:1131] torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 50.00 MiB. GPU 0 has a total capacity of 23.56 GiB of which 21.75 MiB is free.
(APIServer pid=1) ERROR 05-01 14:39:06 [async_llm.py:699] AsyncLLM output_handler failed.
";
    let mut parser = LogParser::new();
    let mut events = Vec::new();
    for line in log.lines() {
        events.extend(parser.push_line(line));
    }
    events.extend(parser.flush());
    let problems: Vec<_> = events
        .iter()
        .filter(|event| !matches!(event.kind, EventKind::Stats(_)))
        .map(|event| &event.kind)
        .collect();
    assert_eq!(problems.len(), 3, "{problems:#?}");
    assert_eq!(
        problems[0],
        &EventKind::OutOfMemory {
            message: "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 786.00 MiB. GPU 0 has a total capacity of 79.11 GiB of which 140.75 MiB is free.".into(),
            message_line: 6,
            headline: "Traceback (most recent call last):".into(),
            lines: 4,
        }
    );
    match problems[1] {
        EventKind::OutOfMemory {
            message,
            message_line,
            headline,
            lines,
        } => {
            assert_eq!(*message_line, 10);
            assert!(message.starts_with(
                "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 50.00 MiB."
            ));
            assert_eq!(headline, "EngineCore encountered a fatal error.");
            assert_eq!(*lines, 4);
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(problems[2], EventKind::Error { .. }));
    let report = parser.finish();
    assert_eq!(report.stats.len(), 1);
    assert_eq!(report.lines.skipped, 1, "only `Process EngineCore_DP0:`");
}

#[test]
fn uvicorn_error_with_traceback() {
    let log = "\
ERROR:    Exception in ASGI application
Traceback (most recent call last):
  File \"/usr/local/lib/python3.12/dist-packages/uvicorn/protocols/http/httptools_impl.py\", line 409, in run_asgi
    result = await app(  # type: ignore[func-returns-value]
ValueError: boom
INFO:     127.0.0.1:40052 - \"POST /v1/chat/completions HTTP/1.1\" 200 OK
";
    let report = parse_log(log);
    assert_eq!(report.problems.len(), 1);
    assert_eq!(report.problems[0].message, "ValueError: boom");
    assert_eq!(report.problems[0].lines, 5);
}

#[test]
fn sglang_log() {
    // Lines of sglang issue #7515, PR #22166 and issue #3909; the capacity line in scheduler.py's format.
    let log = "\
[2025-06-25 14:01:30 TP0] max_total_num_tokens=456123, chunked_prefill_size=8192, max_prefill_tokens=16384, max_running_requests=4096, context_len=131072, available_gpu_mem=13.54 GB
[2025-06-25 14:01:42] The server is fired up and ready to roll!
[2025-06-25 14:02:04] INFO:     172.21.0.7:34016 - \"POST /v1/chat/completions HTTP/1.1\" 200 OK
[2025-06-25 14:02:04 TP0] Prefill batch. #new-seq: 1, #new-token: 2266, #cached-token: 1, token usage: 0.00, #running-req: 0, #queue-req: 0
[2025-06-25 14:02:06 TP0] Decode batch. #running-req: 8, #token: 62531, token usage: 0.12, gen throughput (token/s): 186.64, #queue-req: 0
[2025-06-25 14:02:07 TP0] KV cache pool is full. Retract requests. #retracted_reqs: 3, #new_tokens_gained: 1024
";
    let report = parse_log(log);
    assert_eq!(report.server, Some(ServerKind::Sglang));
    assert_eq!(report.capacity.kv_cache_tokens, Some(456_123));
    assert_eq!(report.capacity.max_running_requests, Some(4096));
    assert_eq!(report.capacity.max_prefill_tokens, Some(16_384));
    assert_eq!(report.configuration.max_model_len, Some(131_072));
    assert_eq!(report.stats.len(), 2);
    let decode = &report.stats[1];
    assert_eq!(decode.sample.generation_throughput, Some(186.64));
    assert_eq!(decode.sample.kv_usage, Some(0.12));
    let time = decode.time.as_ref().expect("time");
    assert_eq!(time.clock, Clock::LocalDate);
    assert_eq!(
        time.seconds - report.stats[0].time.as_ref().expect("time").seconds,
        2.0
    );
    assert_eq!(report.problems.len(), 1);
    assert_eq!(report.problems[0].kind, ProblemKind::Preemption);
}

#[test]
fn streaming_reader_matches_parse_log_and_survives_bad_bytes() {
    let from_reader = read_log(VLLM_RUN.as_bytes()).expect("in-memory read");
    assert_eq!(from_reader, parse_log(VLLM_RUN));
    let mut bytes =
        b"INFO 11-22 11:00:36 [model.py:2152] Using max model len 4096\n\xff\xfe garbage\n"
            .to_vec();
    bytes.extend_from_slice(b"no newline at the end");
    let report = read_log(bytes.as_slice()).expect("in-memory read");
    assert_eq!(report.configuration.max_model_len, Some(4096));
    assert_eq!(report.lines.read, 3);
    assert_eq!(report.lines.skipped, 2);
}

#[test]
fn report_serialises_to_json() {
    let report = parse_log(VLLM_RUN);
    let json = serde_json::to_value(&report).expect("serialisable");
    assert_eq!(json["server"], "vllm");
    assert_eq!(json["capacity"]["kv_cache_tokens"], 262_144);
    assert_eq!(json["stats"][1]["generation_throughput"], 103.7);
    assert_eq!(json["stats"][1]["time"]["clock"], "local_yearless");
    assert_eq!(json["problems"][0]["kind"], "error");
    let event =
        LogParser::new().push_line("INFO 11-22 11:00:36 [model.py:2152] Using max model len 2048");
    let json = serde_json::to_value(&event[0]).expect("serialisable");
    assert_eq!(json["event"], "max_model_len");
    assert_eq!(json["tokens"], 2048);
    assert_eq!(json["level"], "info");
}

#[test]
fn server_is_told_by_its_prefix_when_no_line_is_known() {
    let report = parse_log(
        "DEBUG 11-22 11:04:50 [loggers.py:335] Engine 000: idle\n(APIServer pid=1) INFO 11-22 11:04:51 [a.py:1] hello",
    );
    assert_eq!(report.lines.recognised, 0);
    assert_eq!(report.server, Some(ServerKind::Vllm));
    let sglang = parse_log("[2026-04-05 20:02:51] The server is fired up and ready to roll!");
    assert_eq!(sglang.server, Some(ServerKind::Sglang));
    assert_eq!(
        parse_log("INFO:     127.0.0.1:1 - \"GET /health HTTP/1.1\" 200 OK").server,
        None
    );
}

#[test]
fn idle_stats_line_at_debug_level_still_counts() {
    let report = parse_log(
        "(APIServer pid=1) DEBUG 11-22 11:05:00 [loggers.py:335] Engine 000: Avg prompt throughput: 0.0 tokens/s, Avg generation throughput: 0.0 tokens/s, Running: 0 reqs, Waiting: 0 reqs, GPU KV cache usage: 0.0%, Prefix cache hit rate: 0.0%",
    );
    assert_eq!(report.stats.len(), 1);
}

#[test]
fn distinct_warnings_are_capped() {
    let mut parser = LogParser::new();
    for index in 0..MAX_DISTINCT_WARNINGS + 5 {
        parser.push_line(&format!(
            "WARNING 11-22 11:00:36 [a.py:1] warning number {index}"
        ));
    }
    parser.push_line("WARNING 11-22 11:00:36 [a.py:1] warning number 0");
    let report = parser.finish();
    assert_eq!(report.warnings.len(), MAX_DISTINCT_WARNINGS);
    assert_eq!(report.warnings_not_kept, 5);
    assert_eq!(report.warnings[0].count, 2);
}

#[test]
fn truncated_lines_never_panic_and_are_skipped() {
    for fixture in [VLLM_RUN, VLLM_WARM, VLLM_CLI_ERROR, LLAMA_GEMMA] {
        for line in fixture.lines() {
            for cut in (0..=line.len()).filter(|cut| line.is_char_boundary(*cut)) {
                let report = parse_log(&line[..cut]);
                assert_eq!(report.lines.read, u64::from(cut > 0));
            }
        }
    }
}

proptest::proptest! {
    #[test]
    fn arbitrary_input_never_panics(text in "\\PC{0,300}") {
        let report = parse_log(&text);
        proptest::prop_assert_eq!(report.lines.recognised + report.lines.skipped, report.lines.read);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..400)) {
        let report = read_log(bytes.as_slice()).expect("in-memory read");
        proptest::prop_assert!(report.lines.recognised <= report.lines.read);
    }

    #[test]
    fn mangled_known_lines_never_panic(
        template in proptest::sample::select(vec![
            "(APIServer pid=1) INFO 11-22 11:04:20 [loggers.py:335] Engine 000: Avg prompt throughput: 8.2 tokens/s, Avg generation throughput: 103.7 tokens/s, Running: 4 reqs, Waiting: 0 reqs, Deferred: 1 reqs, Preemptions: 2, GPU KV cache usage: 0.2%, Prefix cache hit rate: 0.0%",
            "(EngineCore pid=2) INFO 11-22 11:02:46 [kv_cache_utils.py:2327] CPU KV cache size: 262,144 tokens, Maximum concurrency for 2,048 tokens per request: 128.00x",
            "(APIServer pid=1) INFO 11-22 11:00:36 [api_utils.py:286] non-default args: {'host': '127.0.0.1', 'served_model_name': ['tiny'], 'x': \"it's\"}",
            "2026-11-22T11:00:36.123456789Z [2025-02-27 04:46:39 TP0] Decode batch. #running-req: 8, #token: 62531, token usage: 0.12, gen throughput (token/s): 186.64, #queue-req: 0",
            "1.15.776.958 I slot print_timing: id  2 | task 31 | prompt eval time =     961.20 ms /    13 tokens (   73.94 ms per token,    13.52 tokens per second)",
            "max_total_num_tokens=456123, max_prefill_tokens=16384, max_running_requests=4096, context_len=131072",
        ]),
        position in 0_usize..400,
        insert in "\\PC{0,8}",
    ) {
        let mut line = template.to_string();
        let mut at = position.min(line.len());
        while !line.is_char_boundary(at) {
            at -= 1;
        }
        line.insert_str(at, &insert);
        let text = format!("{line}\n{}", &line[..at]);
        let report = parse_log(&text);
        proptest::prop_assert_eq!(report.lines.read, text.lines().count() as u64);
    }
}

#[test]
fn a_logs_facts_are_its_numbers_in_canonical_terms() {
    let facts = parse_log(VLLM_RUN).facts().unwrap();
    assert_eq!(facts.server, "vllm");
    assert_eq!(facts.kv_capacity_tokens, Some(262_144));
    assert_eq!(facts.max_concurrency, Some((128.0, 2048)));
    assert_eq!(facts.max_model_len, Some(2048));
    assert_eq!(facts.non_default_args["max_num_seqs"], "8");
    assert_eq!(facts.stats.len(), 6);
    assert_eq!(facts.stats[2].generation_throughput, Some(382.7));
    let llama = parse_log(LLAMA_TINY).facts().unwrap();
    assert_eq!(llama.server, "llamacpp");
    assert_eq!(parse_log("nothing to see\n").facts(), None);
}

#[test]
fn a_log_of_only_enginecore_tagged_tracebacks_is_vllm_and_its_oom_a_failure() {
    // Regression: the unlevelled traceback of vllm issue #27508 carries only `(EngineCore_DP0 pid=…)` tags, so
    // no line voted for a server, the log gave no facts and the out-of-memory crash no finding.
    let log = "\
(EngineCore_DP0 pid=8884) Process EngineCore_DP0:
(EngineCore_DP0 pid=8884) Traceback (most recent call last):
(EngineCore_DP0 pid=8884)   File \"/opt/conda/lib/python3.13/site-packages/vllm/v1/sample/sampler.py\", line 86, in forward
(EngineCore_DP0 pid=8884)     logits = logits.to(torch.float32)
(EngineCore_DP0 pid=8884) torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 786.00 MiB. GPU 0 has a total capacity of 79.11 GiB of which 140.75 MiB is free.
";
    let report = parse_log(log);
    assert_eq!(report.server, Some(ServerKind::Vllm));
    let facts = report.facts().expect("facts");
    assert_eq!(facts.server, "vllm");
    assert_eq!(facts.out_of_memory, 1);
    assert_eq!(
        facts.failures,
        [infer_doctor_core::LogFailure {
            kind: infer_doctor_core::LogFailureKind::OutOfMemory,
            line: 5,
            message: "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 786.00 MiB. GPU 0 has a total capacity of 79.11 GiB of which 140.75 MiB is free.".into(),
            headline: Some("Traceback (most recent call last):".into()),
            count: 1,
        }]
    );
}

#[test]
fn fatal_engine_errors_are_told_from_plain_errors_and_from_shutdown_noise() {
    use infer_doctor_core::LogFailureKind::{Error, Fatal, OutOfMemory};
    // vLLM V1's fatal-error record and the API server's EngineDeadError (vllm issue #12529's shape), a dead
    // engine process, SGLang's scheduler exception, llama.cpp's ggml abort and a failed allocation, and a
    // request's exception in uvicorn, which the server survives.
    let cases: [(&str, &[(infer_doctor_core::LogFailureKind, u64)]); 6] = [
        (
            "\
(EngineCore_DP0 pid=112) ERROR 05-01 14:39:06 [core.py:1131] EngineCore encountered a fatal error.
(EngineCore_DP0 pid=112) ERROR 05-01 14:39:06 [core.py:1131] Traceback (most recent call last):
(EngineCore_DP0 pid=112) ERROR 05-01 14:39:06 [core.py:1131] RuntimeError: CUDA error: an illegal memory access was encountered
(APIServer pid=1) ERROR 05-01 14:39:06 [async_llm.py:699] AsyncLLM output_handler failed.
(APIServer pid=1) ERROR 05-01 14:39:06 [async_llm.py:699] vllm.v1.engine.exceptions.EngineDeadError: EngineCore encountered an issue. See stack trace (above) for the root cause.
",
            &[(Fatal, 3), (Fatal, 5)],
        ),
        (
            "ERROR 03-01 10:00:00 [core_client.py:564] Engine core proc EngineCore_0 died unexpectedly, shutting down client.\n",
            &[(Fatal, 1)],
        ),
        (
            "\
[2025-06-25 14:02:07 TP0] Scheduler hit an exception: Traceback (most recent call last):
  File \"/sgl-workspace/sglang/python/sglang/srt/managers/scheduler.py\", line 2311, in run_scheduler_process
    scheduler.event_loop_overlap()
RuntimeError: CUDA error: device-side assert triggered
[2025-06-25 14:02:07] Received sigquit from a child process. It usually means the child failed.
",
            &[(Fatal, 4)],
        ),
        (
            "/app/ggml/src/ggml-cuda/ggml-cuda.cu:75: GGML_ASSERT(ne00 % 2 == 0) failed\n",
            &[(Fatal, 1)],
        ),
        (
            "ggml_gallocr_reserve_n: failed to allocate CUDA0 buffer of size 8589934592\n",
            &[(OutOfMemory, 1)],
        ),
        (
            "\
ERROR:    Exception in ASGI application
Traceback (most recent call last):
ValueError: boom
",
            &[(Error, 3)],
        ),
    ];
    for (log, expected) in cases {
        let facts = parse_log(log).facts().expect("facts");
        let found: Vec<_> = facts.failures.iter().map(|f| (f.kind, f.line)).collect();
        assert_eq!(found, expected, "{log}");
    }
    // The real vLLM run ends in an EngineDeadError printed while it is being shut down: not a failure.
    let facts = parse_log(VLLM_RUN).facts().expect("facts");
    assert_eq!(facts.errors, 1);
    assert!(facts.failures.is_empty(), "{:?}", facts.failures);
    assert!(parse_log(VLLM_RUN).problems[0].during_shutdown);
}

#[test]
fn a_log_that_cannot_report_preemptions_does_not_say_zero() {
    // Regression: V1 stats lines before 2025-11 (and SGLang's) carry no preemption field, yet the log's facts
    // said 0 preemptions.
    let without_field = "(APIServer pid=1) INFO 11-22 11:04:20 [loggers.py:335] Engine 000: Avg prompt throughput: 8.2 tokens/s, Avg generation throughput: 103.7 tokens/s, Running: 4 reqs, Waiting: 0 reqs, GPU KV cache usage: 0.2%, Prefix cache hit rate: 0.0%\n";
    assert_eq!(parse_log(without_field).facts().unwrap().preemptions, None);
    assert_eq!(parse_log(VLLM_RUN).facts().unwrap().preemptions, None);
    let with_field = without_field.replace("Waiting: 0 reqs,", "Waiting: 0 reqs, Preemptions: 3,");
    let twice = format!("{without_field}{with_field}");
    assert_eq!(parse_log(&twice).facts().unwrap().preemptions, Some(3));
    let sglang = "[2025-06-25 14:02:06 TP0] Decode batch. #running-req: 8, #token: 62531, token usage: 0.12, gen throughput (token/s): 186.64, #queue-req: 0\n";
    assert_eq!(parse_log(sglang).facts().unwrap().preemptions, None);
    let retracted = format!(
        "{sglang}[2025-06-25 14:02:07 TP0] KV cache pool is full. Retract requests. #retracted_reqs: 3, #new_tokens_gained: 1024\n"
    );
    assert_eq!(parse_log(&retracted).facts().unwrap().preemptions, Some(1));
    // vLLM V0 warns at the first preemption, so its stats without a warning do mean none.
    let v0 = "INFO 05-20 10:00:00 metrics.py:486] Avg prompt throughput: 0.0 tokens/s, Avg generation throughput: 10.0 tokens/s, Running: 1 reqs, Swapped: 0 reqs, Pending: 0 reqs, GPU KV cache usage: 1.0%, CPU KV cache usage: 0.0%.\n";
    assert_eq!(parse_log(v0).facts().unwrap().preemptions, Some(0));
}

#[test]
fn an_oom_after_many_distinct_request_errors_is_still_a_failure() {
    // Twenty-five distinct request errors would fill a shared cap before the crash that follows them.
    let mut log: String = (0..25)
        .map(|i| {
            format!(
                "(APIServer pid=1) ERROR 05-01 14:38:{:02} [serving.py:200] ValueError: unsupported option {}\n\
                 (APIServer pid=1) INFO 05-01 14:38:00 [launcher.py:46] Route: /v1/models, Methods: GET\n",
                i % 60,
                "z".repeat(i + 1)
            )
        })
        .collect();
    log.push_str("(EngineCore_DP0 pid=8884) torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 786.00 MiB.\n");
    let facts = parse_log(&log).facts().expect("facts");
    let errors = facts
        .failures
        .iter()
        .filter(|f| f.kind == infer_doctor_core::LogFailureKind::Error)
        .count();
    assert_eq!(errors, 20, "the request errors fill their kind's cap");
    assert!(
        facts
            .failures
            .iter()
            .any(|f| f.kind == infer_doctor_core::LogFailureKind::OutOfMemory),
        "{:?}",
        facts.failures
    );
}

/// NCCL's own lines under `NCCL_DEBUG=INFO`, interleaved in a multi-host vLLM log with their `host:pid:tid [rank]`
/// prefix: the network it chose is kept (the last said), and the lines name no server.
#[test]
fn nccl_names_the_network_between_hosts() {
    let log = "INFO 05-14 10:00:01 [api_server.py:1] non-default args: {'tensor_parallel_size': 8, 'pipeline_parallel_size': 2, 'nnodes': 2}\n\
        node-a:5021:5021 [0] NCCL INFO Bootstrap : Using eth0:10.0.0.11<0>\n\
        node-a:5021:5021 [0] NCCL INFO NET/Socket : Using [0]eth0:10.0.0.11<0>\n\
        node-a:5021:5021 [0] NCCL INFO Using network Socket\n\
        node-b:4810:4810 [0] NCCL INFO Using network Socket\n";
    let report = parse_log(log);
    assert_eq!(report.collective_network.as_deref(), Some("Socket"));
    assert_eq!(report.server, Some(ServerKind::Vllm));
    let facts = report.facts().expect("a vLLM log");
    assert_eq!(facts.collective_network.as_deref(), Some("Socket"));
    let config = crate::config::from_log(&facts, None);
    assert_eq!(config.nnodes.map(|s| s.value), Some(2));
    assert_eq!(config.tensor_parallel_size.map(|s| s.value), Some(8));
}
