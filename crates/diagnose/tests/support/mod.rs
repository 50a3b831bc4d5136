//! Hand-built evidence for the playbook tests: a healthy server measured every way we can, and small builders
//! for the client summaries, server windows and request records the rules read.
#![allow(dead_code)] // Each test binary uses its own part of these helpers.

use std::collections::BTreeMap;

use infer_doctor_core::signals::{CounterStats, GaugeStats, HistogramStats, ServerWindow};
use infer_doctor_core::summary::{RequestCounts, Throughput, TokenAccounting};
use infer_doctor_core::{
    Cgroup, CheckLine, ConfigSource, DcgmDiag, DeterminismFacts, DeterminismRun, DiagOutcome,
    DiagTest, Diagnosis, Divergence, Evidence, Finding, GpuLink, GpuNvLinkErrors, GpuNvLinks,
    GpuState, GpuTopology, HardwareFacts, HostFacts, HungTask, KernelFacts, LogFacts, NetworkFacts,
    NumaNode, NvLinkErrorCounters, NvLinkLane, OomKill, PathTiming, PciDevice, PciePath, Phase,
    PodContainer, PodFacts, Pressure, PressureLine, ReplicaHealth, RequestRecord, RunSummary,
    ServerConfig, ServerThreads, Setting, Signal, Summary, TemplateAnswer, TemplateFacts,
    Termination, ThreadCpu, TokenPick, TopologyGpu, TraceFacts, WorkloadFacts, XidEvent,
};

/// A latency distribution (ms) with the given median and p95.
pub fn latency(p50: f64, p95: f64) -> Summary {
    Summary {
        count: 100,
        mean: (p50 + p95) / 2.0,
        stddev: (p95 - p50) / 2.0,
        min: p50 / 2.0,
        max: p95 * 1.2,
        p50,
        p90: p95 * 0.95,
        p95,
        p99: p95 * 1.1,
        p999: p95 * 1.2,
    }
}

/// A client run of 100 successful requests with the given TTFT p95 and ITL median (ms).
pub fn run(ttft_p95: f64, itl_p50: f64, in_flight: f64) -> RunSummary {
    let mut summary = RunSummary {
        requests: RequestCounts {
            sent: 100,
            ok: 100,
            ..Default::default()
        },
        throughput: Throughput {
            window_s: 30.0,
            steady: true,
            request_rate: 6.0,
            output_tokens_per_s: 1200.0,
            mean_concurrency: in_flight,
            max_concurrency: in_flight.ceil() as u64,
            send_rate: 6.0,
            ..Default::default()
        },
        tokens: TokenAccounting {
            mean_input: 512.0,
            mean_output: 200.0,
            mean_max_tokens: 256.0,
            finish_reasons: BTreeMap::from([("stop".to_string(), 100)]),
            ..Default::default()
        },
        ..Default::default()
    };
    summary.latency.ttft = Some(latency(ttft_p95 * 0.7, ttft_p95));
    summary.latency.itl_token = Some(latency(itl_p50, itl_p50 * 1.3));
    summary.latency.tpot = Some(latency(itl_p50, itl_p50 * 1.3));
    summary.latency.e2e = Some(latency(2500.0, 3000.0));
    summary
}

pub fn gauge(mean: f64, max: f64) -> GaugeStats {
    GaugeStats {
        mean,
        min: 0.0,
        max,
        last: mean,
    }
}

pub fn counter(increase: f64, seconds: f64) -> CounterStats {
    CounterStats {
        increase,
        rate: increase / seconds,
        by_label: BTreeMap::new(),
    }
}

/// A histogram in seconds with the given mean.
pub fn histogram(mean: f64) -> HistogramStats {
    HistogramStats {
        count: 180.0,
        mean,
        p50: mean * 0.9,
        p90: mean * 1.5,
        p99: mean * 2.0,
        limits: BTreeMap::new(),
    }
}

pub const WINDOW_SECONDS: f64 = 30.0;

/// A server at ease: 15 running of 256 allowed, nothing waiting, KV half used, Little's law holding
/// (6/s × 2.5 s = 15).
pub fn healthy_server() -> ServerWindow {
    let mut finished = counter(180.0, WINDOW_SECONDS);
    finished.by_label = BTreeMap::from([("stop".to_string(), 180.0)]);
    ServerWindow {
        dialect: "vllm_v1".into(),
        start: 0.0,
        end: WINDOW_SECONDS,
        scrapes: 31,
        no_clock: false,
        cache_config: BTreeMap::new(),
        gauges: BTreeMap::from([
            (Signal::RequestsRunning, gauge(15.0, 16.0)),
            (Signal::RequestsWaiting, gauge(0.0, 0.0)),
            (Signal::KvUsage, gauge(0.4, 0.5)),
        ]),
        counters: BTreeMap::from([
            (Signal::Preemptions, counter(0.0, WINDOW_SECONDS)),
            (Signal::RequestsFinished, finished),
            (
                Signal::PrefixCacheQueries,
                counter(100_000.0, WINDOW_SECONDS),
            ),
            (Signal::PrefixCacheHits, counter(60_000.0, WINDOW_SECONDS)),
            // A prefill/decode split's KV: 8 MiB per request, no failure.
            (
                Signal::KvTransferBytes,
                counter(180.0 * 8.0 * 1_048_576.0, WINDOW_SECONDS),
            ),
            (Signal::KvTransferFailures, counter(0.0, WINDOW_SECONDS)),
        ]),
        histograms: BTreeMap::from([
            (Signal::Ttft, histogram(0.09)),
            (Signal::QueueTime, histogram(0.005)),
            (Signal::PrefillTime, histogram(0.06)),
            (Signal::E2e, histogram(2.5)),
            (Signal::KvTransferTime, histogram(0.005)),
        ]),
        ..Default::default()
    }
}

/// One streamed request sent at `sent_s` with `tokens` output tokens `gap_ms` apart.
pub fn record(id: u64, sent_s: f64, ttft_ms: f64, tokens: u32, gap_ms: f64) -> RequestRecord {
    let sent_us = (sent_s * 1e6) as u64;
    let first = sent_us + (ttft_ms * 1000.0) as u64;
    let gap_us = (gap_ms * 1000.0) as u32;
    let last = first + u64::from(gap_us) * u64::from(tokens.saturating_sub(1));
    RequestRecord {
        id,
        phase: Some(Phase::Measured),
        scheduled_us: sent_us,
        sent_us,
        first_token_us: Some(first),
        last_token_us: Some(last),
        end_us: last + 1000,
        status: Some(200),
        streamed: true,
        max_tokens: 256,
        usage_output_tokens: Some(tokens),
        token_events: tokens,
        finish_reason: Some("stop".into()),
        gaps_us: vec![gap_us; tokens.saturating_sub(1) as usize],
        ..Default::default()
    }
}

/// Thirty requests a second apart, all alike.
pub fn steady_records() -> Vec<RequestRecord> {
    (0..30)
        .map(|i| record(i, i as f64, 100.0, 100, 10.0))
        .collect()
}

/// Everything measured, nothing wrong.
pub fn healthy() -> Evidence {
    Evidence {
        client: Some(run(120.0, 12.0, 16.0)),
        single_user: Some(run(30.0, 9.0, 1.0)),
        hardware: Some(HardwareFacts {
            gpu: "H100-SXM".into(),
            model: "llama-3.1-8b".into(),
            tensor_parallel: 1,
            decode_floor_seconds: 0.005,
            prefill_token_seconds: 16e-6,
            vram_bytes: 80e9,
            weight_bytes: 16e9,
        }),
        workload: Some(WorkloadFacts {
            input_tokens: 512.0,
            output_tokens: 256.0,
            concurrency: 16,
            // 384 of the 512 prompt tokens shared: the 60% hit rate of `healthy_server` is what a cache allows.
            prefix_tokens: Some(384.0),
        }),
        shared_prefixes: Some(true),
        exact_output_lengths: false,
        requests: steady_records(),
        server: Some(healthy_server()),
        scrapes: Vec::new(),
        pods: BTreeMap::new(),
        pod_health: BTreeMap::new(),
        scheduler: None,
        log: Some(LogFacts {
            server: "vllm".into(),
            max_model_len: Some(4096),
            non_default_args: BTreeMap::from([("max_num_seqs".to_string(), "256".to_string())]),
            kv_capacity_tokens: Some(163_840),
            max_concurrency: Some((40.0, 4096)),
            ..Default::default()
        }),
        gpus: vec![busy_gpu()],
        kernel: Some(KernelFacts {
            sources: vec!["kernel.log".into()],
            ..Default::default()
        }),
        topology: Some(topology(8, |_, _| GpuLink::NvLink(18))),
        nvlinks: Some(("nvlink.txt".into(), nvlinks(8, 18))),
        nvlink_errors_before: None,
        nvlink_errors_after: None,
        dcgm_diag: Some(dcgm_diag(&[
            ("software", None, DiagOutcome::Pass),
            ("pcie", Some(0), DiagOutcome::Pass),
        ])),
        environment: None,
        gpu_tool_timeouts: Vec::new(),
        network: Some(NetworkFacts {
            url: "http://gateway:8000".into(),
            path: "/health".into(),
            samples: 5,
            through: PathTiming {
                connect_ms: 0.4,
                tls_ms: None,
                first_byte_ms: 1.2,
            },
            direct_url: None,
            direct: None,
        }),
        host: Some(healthy_host()),
        server_threads: Some(ServerThreads {
            pid: 4242,
            found_by: "listening on port 8000".into(),
            window_s: 30.0,
            threads: vec![
                ThreadCpu {
                    tid: 4242,
                    name: "python3".into(),
                    core_percent: 45.0,
                },
                ThreadCpu {
                    tid: 4250,
                    name: "tokenizers".into(),
                    core_percent: 8.0,
                },
            ],
        }),
        pod: Some(PodFacts {
            source: "k8s/pod.json".into(),
            name: "vllm-0".into(),
            namespace: Some("inference".into()),
            node: Some("gpu-node-1".into()),
            phase: Some("Running".into()),
            containers: vec![PodContainer {
                name: "vllm".into(),
                memory_limit: Some("64Gi".into()),
                memory_limit_bytes: Some(64 << 30),
                restart_count: Some(0),
                state: Some("running".into()),
                ..Default::default()
            }],
        }),
        config: Some(healthy_config()),
        trace: Some(healthy_trace()),
        determinism: Some(healthy_determinism()),
        template: Some(healthy_template()),
    }
}

/// The chat-template probe on a server that uses the model's own ChatML template: both endpoints agree.
pub fn healthy_template() -> TemplateFacts {
    let answer = |text: &str| TemplateAnswer {
        text: Some(text.into()),
        finish_reason: Some("stop".into()),
        prompt_tokens: Some(31),
        ..Default::default()
    };
    TemplateFacts {
        template: "hf/tokenizer_config.json".into(),
        generation_prompt: true,
        rendered: "<|im_start|>user\nName three colours.<|im_end|>\n<|im_start|>assistant\n".into(),
        server_rendered: None,
        end_of_turn: Some("<|im_end|>".into()),
        max_tokens: 32,
        chat: answer("Red, green and blue."),
        completion: answer("Red, green and blue."),
        ..Default::default()
    }
}

/// The determinism probe on a batch-invariant server: 4 prompts, every batched output equal to its lone run.
pub fn healthy_determinism() -> DeterminismFacts {
    let run = |batch| DeterminismRun {
        batch,
        sent: batch,
        compared: batch,
        ..Default::default()
    };
    DeterminismFacts {
        prompts: 4,
        max_tokens: 32,
        by_tokens: true,
        logprobs: true,
        runs: vec![run(8), run(32)],
        repeated: 4,
        ..Default::default()
    }
}

/// `differing` outputs of the batch of 32 left their lone runs at token 6, where the lone run's logprob gap to
/// the batched token was `margin`.
pub fn diverged(evidence: &mut Evidence, differing: u32, margin: Option<f64>) {
    let probe = evidence.determinism.as_mut().unwrap();
    probe.runs[1].differing = differing;
    probe.divergences = (0..differing.min(probe.prompts))
        .map(|prompt| Divergence {
            batch: 32,
            prompt,
            position: 6,
            alone: TokenPick {
                token: " cache".into(),
                logprob: Some(-0.69),
            },
            batched: TokenPick {
                token: " queue".into(),
                logprob: margin.map(|m| -0.69 - m),
            },
            margin,
        })
        .collect();
}

/// One rank of a tensor-parallel vLLM server traced under load: CUDA graphs, a busy GPU, collectives a small
/// share, decode steps 1.4× the 5 ms floor of `healthy()`'s hardware.
pub fn healthy_trace() -> TraceFacts {
    TraceFacts {
        ranks: vec![infer_doctor_core::RankTrace {
            source: "traces/rank0.pt.trace.json.gz".into(),
            rank: Some(0),
            span_us: 100_000.0,
            idle_us: 5_000.0,
            compute_us: 88_000.0,
            idle_host_wait_us: 2_500.0,
            idle_kernel_wait_us: 2_000.0,
            idle_other_us: 500.0,
            busy_us: 95_000.0,
            kernels: 5_000,
            short_kernels: 3_000,
            kernels_from_graphs: 4_500,
            launch_delay_p50_us: Some(40.0),
            communication_us: 8_000.0,
            communication_exposed_us: 8_000.0,
            phases: vec![
                phase_trace("decode", 12, 7_000.0, 7_300.0),
                phase_trace("prefill", 1, 9_000.0, 9_400.0),
            ],
            // Drawn by the report, not judged.
            ..Default::default()
        }],
    }
}

/// Steps of one phase, each with this GPU busy time and span; one small copy per step (the sampled tokens); 512
/// prompt tokens per prefill step, a batch of 16 per decode step.
pub fn phase_trace(
    phase: &str,
    steps: u64,
    busy_us: f64,
    span_us: f64,
) -> infer_doctor_core::PhaseTrace {
    infer_doctor_core::PhaseTrace {
        phase: phase.into(),
        steps,
        tokens: steps * if phase == "prefill" { 512 } else { 16 },
        mean_gpu_busy_us: busy_us,
        mean_gpu_span_us: span_us,
        dominant_class: "GEMM".into(),
        dominant_share: 0.6,
        host_copies: steps,
        host_copy_us: steps as f64 * 5.0,
        gpu_busy_us: busy_us * steps as f64,
    }
}

/// The first rank of the evidence's trace.
pub fn traced(evidence: &mut Evidence) -> &mut infer_doctor_core::RankTrace {
    &mut evidence.trace.as_mut().unwrap().ranks[0]
}

/// Settings that suit the healthy load: CUDA graphs, a batch cap the cache holds, a context near the requests.
pub fn healthy_config() -> ServerConfig {
    ServerConfig {
        enforce_eager: logged(false),
        max_num_seqs: logged(256),
        max_num_batched_tokens: logged(8192),
        max_model_len: logged(4096),
        gpu_memory_utilization: logged(0.9),
        enable_prefix_caching: logged(true),
        enable_chunked_prefill: logged(true),
        kv_cache_dtype: logged("auto".to_string()),
        tensor_parallel_size: logged(1),
        pipeline_parallel_size: logged(1),
        speculative: logged(false),
        ..Default::default()
    }
}

/// The server pod's first container.
pub fn pod_container(evidence: &mut Evidence) -> &mut PodContainer {
    &mut evidence
        .pod
        .as_mut()
        .expect("the evidence has the server's pod")
        .containers[0]
}

/// How a container run ended, as `lastState.terminated` says it.
pub fn terminated(reason: &str, exit_code: i64) -> Option<Termination> {
    Some(Termination {
        reason: Some(reason.into()),
        exit_code: Some(exit_code),
        finished_at: Some("2026-07-14T08:12:53Z".into()),
    })
}

/// The server process's busiest thread.
pub fn busiest_thread(evidence: &mut Evidence) -> &mut ThreadCpu {
    &mut evidence
        .server_threads
        .as_mut()
        .expect("the evidence has the server's threads")
        .threads[0]
}

/// An `n`-GPU `topo -m` matrix whose pair (i, j) meets by `link(i, j)`; GPUs 0–3 on NUMA node 0, the rest on 1,
/// as on 8-GPU H100 boxes.
pub fn topology(n: usize, link: impl Fn(usize, usize) -> GpuLink) -> GpuTopology {
    GpuTopology {
        source: "topo.txt".into(),
        gpus: (0..n)
            .map(|i| TopologyGpu {
                name: format!("GPU{i}"),
                links: (0..n)
                    .filter(|j| *j != i)
                    .map(|j| (format!("GPU{j}"), link(i.min(j), i.max(j))))
                    .collect(),
                cpu_affinity: Some(if i < 4 { "0-55" } else { "56-111" }.into()),
                numa_node: Some(u32::from(i >= 4)),
            })
            .collect(),
    }
}

/// `nvidia-smi nvlink -s` of `n` H100s with `links` links each, all up at 26.562 GB/s.
/// DCGM's diagnostic with these (test, GPU, outcome) results.
pub fn dcgm_diag(results: &[(&str, Option<u32>, DiagOutcome)]) -> DcgmDiag {
    DcgmDiag {
        source: "gpu/dcgmi-diag.json".into(),
        tests: results
            .iter()
            .map(|(name, gpu, outcome)| DiagTest {
                name: name.to_string(),
                gpu: *gpu,
                outcome: *outcome,
                detail: (*outcome != DiagOutcome::Pass).then(|| format!("{name} said why")),
            })
            .collect(),
    }
}

pub fn nvlinks(n: u32, links: u32) -> Vec<GpuNvLinks> {
    (0..n)
        .map(|index| GpuNvLinks {
            index,
            name: "NVIDIA H100 80GB HBM3".into(),
            links: (0..links)
                .map(|link| NvLinkLane {
                    link,
                    speed_gb_per_s: Some(26.562),
                })
                .collect(),
            all_inactive: false,
        })
        .collect()
}

/// `nvidia-smi nvlink -e` of `n` H100s with `links` links each, every counter at 0.
pub fn nvlink_errors(n: u32, links: u32) -> Vec<GpuNvLinkErrors> {
    (0..n)
        .map(|index| GpuNvLinkErrors {
            index,
            name: "NVIDIA H100 80GB HBM3".into(),
            links: (0..links)
                .map(|link| NvLinkErrorCounters {
                    link,
                    counters: ["Replay Errors", "Recovery Errors", "CRC Errors"]
                        .into_iter()
                        .map(|name| (name.to_string(), 0))
                        .collect(),
                })
                .collect(),
        })
        .collect()
}

/// A PCIe path, for topology builders.
pub fn pcie(path: PciePath) -> GpuLink {
    GpuLink::Pcie(path)
}

/// Sets the server's tensor-parallel size as its vLLM log's arguments line would show it.
pub fn tensor_parallel(evidence: &mut Evidence, size: u32) {
    evidence
        .log
        .as_mut()
        .unwrap()
        .non_default_args
        .insert("tensor_parallel_size".into(), size.to_string());
}

/// A two-socket GPU host set up for serving: no swap in use, the performance governor, an unthrottled cgroup,
/// and the server bound to its GPU's NUMA node.
pub fn healthy_host() -> HostFacts {
    HostFacts {
        source: "/".into(),
        logical_cores: Some(4),
        governors: Some(
            (0..4)
                .map(|core| (core, "performance".to_string()))
                .collect(),
        ),
        numa_nodes: Some(vec![
            NumaNode {
                id: 0,
                cpus: vec![0, 1],
                memory_total_bytes: Some(64 << 30),
            },
            NumaNode {
                id: 1,
                cpus: vec![2, 3],
                memory_total_bytes: Some(64 << 30),
            },
        ]),
        pci_devices: vec![PciDevice {
            bus_id: "0000:00:09.0".into(),
            numa_node: Some(0),
            ..Default::default()
        }],
        memory_total_bytes: Some(128 << 30),
        swap_total_bytes: Some(8 << 30),
        swap_used_bytes: Some(0),
        pressure: Pressure {
            memory: Some(PressureLine {
                some_avg10: Some(0.0),
                ..Default::default()
            }),
            ..Default::default()
        },
        cgroup: Some(Cgroup {
            path: "/system.slice/vllm.service".into(),
            nr_periods: Some(12_000),
            nr_throttled: Some(0),
            oom_kills: Some(0),
            ..Default::default()
        }),
        server_cpus: Some(vec![0, 1]),
        server_memory_nodes: Some(vec![0]),
        ..Default::default()
    }
}

pub fn host(evidence: &mut Evidence) -> &mut HostFacts {
    evidence.host.as_mut().expect("the evidence has host facts")
}

/// The kernel's XID line for a GPU, as `read_kernel_log` returns it.
pub fn xid(code: u32, message: &str) -> XidEvent {
    XidEvent {
        bus_id: "0000:00:09.0".into(),
        code,
        message: message.into(),
        count: 1,
        first_seen: "kernel.log:1".into(),
    }
}

/// The kernel's line for a process the OOM killer ended.
pub fn oom_kill(pid: u32, process: &str, cgroup_limit: bool) -> OomKill {
    OomKill {
        pid,
        process: process.into(),
        anon_rss_bytes: Some(20 << 30),
        cgroup_limit,
        seen: "kernel.log:7".into(),
    }
}

/// The hung-task watchdog's report of a task.
pub fn hung_task(pid: u32, process: &str, in_gpu_driver: bool) -> HungTask {
    HungTask {
        pid,
        process: process.into(),
        blocked_s: 241,
        count: 2,
        first_seen: "kernel.log:9".into(),
        in_gpu_driver,
    }
}

/// A busy, healthy H100 as `nvidia-smi -q` shows it under load (the values of `fixtures/gpu/h100_load_q.txt`).
pub fn busy_gpu() -> GpuState {
    GpuState {
        bus_id: "00000000:00:09.0".into(),
        name: "NVIDIA H100 80GB HBM3".into(),
        source: "nvidia-smi -q".into(),
        utilization_percent: Some(100.0),
        memory_used_mib: Some(19818.0),
        memory_total_mib: Some(81559.0),
        power_draw_watts: Some(629.45),
        power_limit_watts: Some(700.0),
        default_power_limit_watts: Some(700.0),
        sm_clock_mhz: Some(1980.0),
        max_sm_clock_mhz: Some(1980.0),
        temperature_c: Some(59.0),
        clock_reasons: Some(Vec::new()),
        ecc_uncorrected_volatile: Some(0.0),
        ecc_corrected_volatile: Some(0.0),
        remapped_rows_pending: Some(false),
        remapped_rows_failure: Some(false),
        retired_pages_pending: None,
        memory_repair_pending: Some(false),
        unrepairable_memory: Some(false),
        reset_required: None,
        pcie_gen: Some(5.0),
        pcie_gen_max: Some(5.0),
        pcie_width: Some(16.0),
        pcie_width_max: Some(16.0),
        persistence_mode: Some(true),
        mig_enabled: Some(false),
        recovery_action: Some("None".into()),
    }
}

pub fn gpu(evidence: &mut Evidence) -> &mut GpuState {
    &mut evidence.gpus[0]
}

pub fn server(evidence: &mut Evidence) -> &mut ServerWindow {
    evidence
        .server
        .as_mut()
        .expect("the evidence has a server window")
}

pub fn client(evidence: &mut Evidence) -> &mut RunSummary {
    evidence
        .client
        .as_mut()
        .expect("the evidence has a client run")
}

pub fn set_gauge(evidence: &mut Evidence, signal: Signal, mean: f64, max: f64) {
    server(evidence).gauges.insert(signal, gauge(mean, max));
}

/// The server seen as two replicas behind a router, evenly loaded (each half of `healthy_server()`'s requests),
/// as `diagnose --prometheus` reads a fleet.
pub fn with_fleet(evidence: &mut Evidence) {
    let mut replica = healthy_server();
    replica
        .gauges
        .insert(Signal::RequestsRunning, gauge(7.5, 8.0));
    evidence.pods = BTreeMap::from([
        ("vllm-0".to_string(), replica.clone()),
        ("vllm-1".to_string(), replica),
    ]);
    let reachable = ReplicaHealth {
        up_share: Some(1.0),
        restarts: Some(0.0),
    };
    evidence.pod_health = BTreeMap::from([
        ("vllm-0".to_string(), reachable.clone()),
        ("vllm-1".to_string(), reachable),
    ]);
}

/// llm-d's endpoint picker in front of the fleet, keeping up: a millisecond to choose a replica, no flow-control
/// queue to speak of, both replicas ready, every attempt placed.
pub fn with_picker(evidence: &mut Evidence) {
    let mut attempts = counter(180.0, WINDOW_SECONDS);
    attempts.by_label = BTreeMap::from([("success".to_string(), 180.0)]);
    let ready = GaugeStats {
        mean: 2.0,
        min: 2.0,
        max: 2.0,
        last: 2.0,
    };
    evidence.scheduler = Some(ServerWindow {
        dialect: "llmd_epp".into(),
        start: 0.0,
        end: WINDOW_SECONDS,
        scrapes: 31,
        gauges: BTreeMap::from([(Signal::ReadyReplicas, ready)]),
        counters: BTreeMap::from([(Signal::SchedulingAttempts, attempts)]),
        histograms: BTreeMap::from([
            (Signal::SchedulingLatency, histogram(0.001)),
            (Signal::GatewayQueueTime, histogram(0.0005)),
            (Signal::Ttft, histogram(0.09)),
        ]),
        ..Default::default()
    });
}

/// The picker's window, as `with_picker` made it.
pub fn picker(evidence: &mut Evidence) -> &mut ServerWindow {
    evidence.scheduler.as_mut().expect("with_picker() set it")
}

/// Every replica's prefix-cache hits over the window, out of `healthy_server()`'s 100,000 lookups.
pub fn set_pod_prefix_hits(evidence: &mut Evidence, hits: f64) {
    for window in evidence.pods.values_mut() {
        window
            .counters
            .insert(Signal::PrefixCacheHits, counter(hits, WINDOW_SECONDS));
    }
}

/// One replica's gauge, as a Prometheus that scrapes the fleet reports it.
pub fn set_pod_gauge(evidence: &mut Evidence, pod: &str, signal: Signal, mean: f64, max: f64) {
    evidence
        .pods
        .get_mut(pod)
        .expect("healthy() has this pod")
        .gauges
        .insert(signal, gauge(mean, max));
}

pub fn finding<'a>(diagnosis: &'a Diagnosis, id: &str) -> Option<&'a Finding> {
    diagnosis.findings.iter().find(|f| f.id == id)
}

/// The checklist line with this id; every diagnosis has all of them.
pub fn check_line<'a>(diagnosis: &'a Diagnosis, id: &str) -> &'a CheckLine {
    diagnosis
        .checklist
        .iter()
        .find(|l| l.id == id)
        .unwrap_or_else(|| panic!("no checklist line {id}"))
}

/// Notes of the project's private design folder: a user cannot open them, so no finding may cite them.
const DESIGN_NOTES: [&str; 7] = [
    "DESIGN",
    "sim_capacity",
    "bench_anchors",
    "gpu_trace",
    "server_signals",
    "rust_stack",
    "real_targets",
];

/// Why a finding's `source` is not something a user can open, or None when it cites a URL, an `owner/repo:`
/// path or an `owner/repo#N` issue and no design note.
pub fn source_problem(source: &str) -> Option<String> {
    if source.contains(".md") {
        return Some("names a .md file".to_string());
    }
    if source.contains('§') {
        return Some("cites a section (§) of the design notes".to_string());
    }
    if let Some(note) = DESIGN_NOTES.iter().find(|note| source.contains(*note)) {
        return Some(format!("names the design note {note}"));
    }
    if !source.contains("https://") && !cites_repository(source) {
        return Some("cites no URL, owner/repo path or owner/repo#issue".to_string());
    }
    None
}

/// Whether a word of `text` is `owner/repo:` (a path follows) or `owner/repo#N` (an issue or pull request).
fn cites_repository(text: &str) -> bool {
    let is_name = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    };
    text.split_whitespace().any(|word| {
        let Some((owner, rest)) = word.split_once('/') else {
            return false;
        };
        let Some(end) = rest.find([':', '#']) else {
            return false;
        };
        let (repo, reference) = rest.split_at(end);
        let path_follows = reference == ":";
        let issue = reference
            .strip_prefix('#')
            .is_some_and(|n| n.starts_with(|c: char| c.is_ascii_digit()));
        is_name(owner) && is_name(repo) && (path_follows || issue)
    })
}

/// The server's settings, as the gathering put them in the evidence.
pub fn config(evidence: &mut Evidence) -> &mut ServerConfig {
    evidence
        .config
        .as_mut()
        .expect("the evidence has the server's settings")
}

/// A setting as the engine log stated it.
pub fn logged<T>(value: T) -> Option<Setting<T>> {
    Some(Setting::new(value, ConfigSource::Log))
}
