//! Every playbook rule over hand-built evidence: one case that must fire and a near miss that must not, then the
//! checklist, the headline and partial evidence.

mod support;

use std::collections::BTreeMap;

use infer_doctor_core::record::ErrorClass;
use infer_doctor_core::summary::ErrorCount;
use infer_doctor_core::{
    CheckStatus, ClockReason, Confidence, DeterminismFacts, DiagOutcome, Divergence, EnvFacts,
    Evidence, GpuLink, LogFailure, LogFailureKind, PathTiming, PciePath, Severity, Signal,
    TemplateFacts, TokenPick, XidEvent,
};
use infer_doctor_diagnose::{Thresholds, diagnose};
use support::*;

type Change = fn(&mut Evidence);

/// One engine over two hosts of eight GPUs the way vLLM advises (TP 8 within each, PP 2 across), NCCL saying
/// which network it uses between them.
fn two_hosts(e: &mut Evidence, network: &str) {
    let c = config(e);
    (c.tensor_parallel_size, c.pipeline_parallel_size, c.nnodes) =
        (logged(8), logged(2), logged(2));
    e.log.as_mut().unwrap().collective_network = Some(network.into());
}

/// 8 of the client's 100 requests, sent through a gateway to a fleet, answered with `status`.
fn proxy_errors(e: &mut Evidence, status: u16) {
    with_fleet(e);
    let requests = &mut client(e).requests;
    (requests.ok, requests.failed, requests.error_rate) = (92, 8, 0.08);
    requests.errors = vec![ErrorCount {
        class: ErrorClass::HttpStatus,
        status: Some(status),
        count: 8,
        example: "Bad Gateway".into(),
    }];
}

/// (rule id, the change that makes it fire, a near miss that must not).
const CASES: &[(&str, Change, Change)] = &[
    (
        "fleet.gateway_errors",
        // 8 of 100 requests got a 502 from the proxy; the servers finished every request they saw.
        |e| proxy_errors(e, 502),
        // The same 8 failures as 500s from the engine, which the servers count (finished with `error`).
        |e| {
            proxy_errors(e, 503);
            server(e)
                .counters
                .get_mut(&Signal::RequestsFinished)
                .unwrap()
                .by_label
                .insert("error".into(), 8.0);
        },
    ),
    (
        "llmd.scheduler",
        // Requests wait 300 ms (p90) in the picker's flow-control queue, two thirds of the gateway's TTFT.
        |e| {
            with_fleet(e);
            with_picker(e);
            let w = picker(e);
            w.histograms
                .insert(Signal::GatewayQueueTime, histogram(0.2));
            w.histograms.insert(Signal::Ttft, histogram(0.3));
        },
        // A 60 ms queue and 16 ms to choose at p99: under both bars.
        |e| {
            with_fleet(e);
            with_picker(e);
            let w = picker(e);
            w.histograms
                .insert(Signal::GatewayQueueTime, histogram(0.04));
            w.histograms
                .insert(Signal::SchedulingLatency, histogram(0.008));
        },
    ),
    (
        "fleet.replica_down",
        // vllm-1's counters reset in the window: it restarted.
        |e| {
            with_fleet(e);
            e.pod_health.get_mut("vllm-1").unwrap().restarts = Some(1.0);
        },
        // Every scrape answered and nothing reset.
        with_fleet,
    ),
    (
        "fleet.load_skew",
        // vllm-1 queues with a full cache while vllm-0 runs its 15 with 40% of its cache.
        |e| {
            with_fleet(e);
            set_pod_gauge(e, "vllm-1", Signal::RequestsWaiting, 6.0, 12.0);
            set_pod_gauge(e, "vllm-1", Signal::KvUsage, 0.96, 0.99);
        },
        // A queue of 0.4 and a cache 25 points fuller: an uneven split, not a skew.
        |e| {
            with_fleet(e);
            set_pod_gauge(e, "vllm-1", Signal::RequestsWaiting, 0.4, 2.0);
            set_pod_gauge(e, "vllm-1", Signal::KvUsage, 0.65, 0.8);
        },
    ),
    (
        "fleet.cache_unaware_routing",
        // 75% of each prompt is shared, and each replica's cache serves 20% of prompt tokens.
        |e| {
            with_fleet(e);
            set_pod_prefix_hits(e, 20_000.0);
        },
        // 48%: above 60% of the 75% the workload allows.
        |e| {
            with_fleet(e);
            set_pod_prefix_hits(e, 48_000.0);
        },
    ),
    (
        "pd.kv_transfer_slow",
        // Each request's KV takes 45 ms to reach its decode replica, about 40% of the client's TTFT.
        |e| {
            server(e)
                .histograms
                .insert(Signal::KvTransferTime, histogram(0.045));
        },
        // 25 ms: under a quarter of it (8 MiB transfers, too small to judge the link's bandwidth by).
        |e| {
            server(e)
                .histograms
                .insert(Signal::KvTransferTime, histogram(0.025));
        },
    ),
    (
        "trace.gpu_idle",
        // Decode steps whose GPU work is spread over 30% more time than it takes, the host launching late.
        |e| {
            let rank = traced(e);
            rank.phases[0] = phase_trace("decode", 12, 7_000.0, 10_000.0);
            (rank.idle_host_wait_us, rank.idle_kernel_wait_us) = (20_000.0, 2_000.0);
        },
        |e| traced(e).phases[0] = phase_trace("decode", 12, 7_000.0, 8_000.0),
    ),
    (
        "trace.launch_bound",
        // --enforce-eager: no graph replays, short kernels, a GPU waiting on its host.
        |e| {
            let rank = traced(e);
            rank.kernels_from_graphs = 0;
            rank.phases[0] = phase_trace("decode", 12, 7_000.0, 10_000.0);
            (rank.idle_host_wait_us, rank.idle_kernel_wait_us) = (20_000.0, 2_000.0);
        },
        // The same idle GPU with CUDA graphs on: its launches are not the problem.
        |e| {
            let rank = traced(e);
            rank.phases[0] = phase_trace("decode", 12, 7_000.0, 10_000.0);
            (rank.idle_host_wait_us, rank.idle_kernel_wait_us) = (20_000.0, 2_000.0);
        },
    ),
    (
        "trace.comm_exposed",
        |e| traced(e).communication_exposed_us = 30_000.0,
        |e| traced(e).communication_exposed_us = 14_000.0,
    ),
    (
        "trace.memcpy_in_step",
        // 10 ms of copies in 92 ms of decode and prefill GPU time.
        |e| traced(e).phases[0].host_copy_us = 10_000.0,
        |e| traced(e).phases[0].host_copy_us = 4_000.0,
    ),
    (
        "trace.step_over_floor",
        |e| traced(e).phases[0] = phase_trace("decode", 12, 15_000.0, 15_300.0),
        |e| traced(e).phases[0] = phase_trace("decode", 12, 9_500.0, 9_800.0),
    ),
    (
        // A prefill step of 512 prompt tokens (floor 8.2 ms of compute) taking 25 ms; 15 ms is under 2×.
        "trace.step_over_floor",
        |e| traced(e).phases[1] = phase_trace("prefill", 1, 25_000.0, 25_400.0),
        |e| traced(e).phases[1] = phase_trace("prefill", 1, 15_000.0, 15_400.0),
    ),
    (
        "hardware.xid_errors",
        |e| {
            e.kernel.as_mut().unwrap().xids = vec![xid(79, "GPU has fallen off the bus")];
        },
        // A second kernel log, also clean.
        |e| e.kernel.as_mut().unwrap().sources.push("dmesg.txt".into()),
    ),
    (
        "hardware.gpu_unresponsive",
        |e| e.gpu_tool_timeouts = vec!["nvidia-smi -q -x".into()],
        // nvidia-smi failed outright (not installed, no GPU): an answer, not a hang.
        |e| e.gpus.clear(),
    ),
    (
        "hardware.memory_errors",
        |e| gpu(e).ecc_uncorrected_volatile = Some(1.0),
        // Corrected errors are what ECC is for, up to GCM's limit.
        |e| gpu(e).ecc_corrected_volatile = Some(1_000_000.0),
    ),
    (
        "hardware.clock_slowdown",
        |e| {
            gpu(e).clock_reasons = Some(vec![ClockReason::HwThermalSlowdown]);
            gpu(e).sm_clock_mhz = Some(1410.0);
        },
        // At its power cap but still at full clock: the cap is not what limits it.
        |e| gpu(e).clock_reasons = Some(vec![ClockReason::SwPowerCap]),
    ),
    (
        "hardware.pcie_degraded",
        |e| gpu(e).pcie_gen = Some(3.0),
        // The same link on an idle GPU, which lowers it on purpose.
        |e| {
            gpu(e).pcie_gen = Some(1.0);
            gpu(e).utilization_percent = Some(0.0);
            gpu(e).clock_reasons = Some(vec![ClockReason::GpuIdle]);
        },
    ),
    (
        "hardware.tp_over_pcie",
        |e| {
            // A PCIe-only box: every group of 4 crosses PCIe, half of its pairs across the sockets.
            tensor_parallel(e, 4);
            e.topology = Some(topology(8, |i, j| {
                pcie(if (i < 4) == (j < 4) {
                    PciePath::Node
                } else {
                    PciePath::Sys
                })
            }));
            e.nvlinks = None;
        },
        // The group of 4 (GPUs 0–3) on NVLink, though the other half of the box meets over PCIe.
        |e| {
            tensor_parallel(e, 4);
            e.topology = Some(topology(8, |_, j| {
                if j < 4 {
                    GpuLink::NvLink(18)
                } else {
                    pcie(PciePath::Sys)
                }
            }));
        },
    ),
    (
        "hardware.nvlink_degraded",
        |e| {
            let mut links = nvlinks(8, 18);
            links[5].links[3].speed_gb_per_s = None;
            e.nvlinks = Some(("nvlink.txt".into(), links));
        },
        // A100s bond each pair by 12 links: fewer than an H100's 18, but the same for every pair.
        |e| {
            e.topology = Some(topology(8, |_, _| GpuLink::NvLink(12)));
            e.nvlinks = Some(("nvlink.txt".into(), nvlinks(8, 12)));
        },
    ),
    (
        "hardware.dcgm_diag_failed",
        |e| {
            e.dcgm_diag = Some(dcgm_diag(&[
                ("software", None, DiagOutcome::Pass),
                ("memory", Some(2), DiagOutcome::Fail),
            ]))
        },
        // Skipped tests (a level that does not run there, an unsupported GPU) are no failure.
        |e| {
            e.dcgm_diag = Some(dcgm_diag(&[
                ("software", None, DiagOutcome::Pass),
                ("memory", Some(2), DiagOutcome::Skip),
                ("pcie", None, DiagOutcome::Skip),
            ]))
        },
    ),
    (
        "network.slow_path",
        |e| e.network.as_mut().unwrap().through.connect_ms = 40.0,
        // A gateway that adds 30 ms over the pod itself: noticeable, within what a proxy may cost.
        |e| {
            let network = e.network.as_mut().unwrap();
            network.direct_url = Some("http://10.0.0.7:8000".into());
            network.direct = Some(PathTiming {
                connect_ms: 0.3,
                tls_ms: None,
                first_byte_ms: 0.9,
            });
            network.through.first_byte_ms = 31.0;
        },
    ),
    (
        "host.swap_active",
        |e| {
            host(e).swap_used_bytes = Some(2 << 30);
            host(e).pressure.memory.as_mut().unwrap().some_avg10 = Some(3.5);
        },
        // Swap configured, none of it in use.
        |e| host(e).swap_total_bytes = Some(32 << 30),
    ),
    (
        "k8s.container_restarts",
        |e| {
            pod_container(e).restart_count = Some(3);
            pod_container(e).last_termination = terminated("OOMKilled", 137);
        },
        // A pod still starting has restarted nothing.
        |e| pod_container(e).state = Some("waiting: ContainerCreating".into()),
    ),
    (
        "host.api_server_cpu_bound",
        // The front end's thread at a full core, and the engine sees a fraction of the client's requests.
        |e| {
            busiest_thread(e).core_percent = 99.0;
            set_gauge(e, Signal::RequestsRunning, 3.0, 4.0);
        },
        // As hot, but the engine holds the requests: its own loop is busy, not the front.
        |e| busiest_thread(e).core_percent = 99.0,
    ),
    (
        "host.cpu_governor",
        |e| {
            host(e)
                .governors
                .as_mut()
                .unwrap()
                .insert(3, "powersave".into());
        },
        // schedutil follows the scheduler's load at once: not a slow governor.
        |e| {
            host(e)
                .governors
                .as_mut()
                .unwrap()
                .insert(3, "schedutil".into());
        },
    ),
    (
        "host.cpu_throttled",
        |e| host(e).cgroup.as_mut().unwrap().nr_throttled = Some(4_000),
        // A sixth of the periods throttled: below kubernetes-mixin's 25%.
        |e| host(e).cgroup.as_mut().unwrap().nr_throttled = Some(2_000),
    ),
    (
        "host.oom_killed",
        // The OOM killer took another process on the host: the server may be next.
        |e| e.kernel.as_mut().unwrap().oom_kills = vec![oom_kill(9001, "node_exporter", false)],
        // A memory limit on the server's cgroup that it never hit.
        |e| host(e).cgroup.as_mut().unwrap().memory_max_bytes = Some(64 << 30),
    ),
    (
        "host.hung_tasks",
        // A task stuck on storage: model loads from there stall.
        |e| e.kernel.as_mut().unwrap().hung_tasks = vec![hung_task(812, "jbd2/nvme0n1p1-", false)],
        // Another kernel log read, as clean.
        |e| e.kernel.as_mut().unwrap().sources.push("dmesg.txt".into()),
    ),
    (
        "host.numa_mismatch",
        |e| host(e).server_cpus = Some(vec![2, 3]),
        // Memory allowed on both nodes, the GPU's among them, and the CPUs local.
        |e| host(e).server_memory_nodes = Some(vec![0, 1]),
    ),
    (
        "capacity.kv_saturated",
        |e| {
            set_gauge(e, Signal::KvUsage, 0.85, 0.97);
            set_gauge(e, Signal::RequestsWaiting, 5.0, 12.0);
        },
        |e| {
            set_gauge(e, Signal::KvUsage, 0.8, 0.89);
            set_gauge(e, Signal::RequestsWaiting, 5.0, 12.0);
        },
    ),
    (
        "capacity.batch_cap",
        |e| {
            set_gauge(e, Signal::RequestsWaiting, 5.0, 12.0);
            set_gauge(e, Signal::RequestsRunning, 250.0, 256.0);
        },
        |e| {
            set_gauge(e, Signal::RequestsWaiting, 5.0, 12.0);
            set_gauge(e, Signal::RequestsRunning, 190.0, 200.0);
        },
    ),
    (
        "capacity.preemptions",
        |e| {
            server(e)
                .counters
                .insert(Signal::Preemptions, counter(12.0, WINDOW_SECONDS));
        },
        |e| {
            server(e)
                .counters
                .insert(Signal::Preemptions, counter(0.0, WINDOW_SECONDS));
        },
    ),
    (
        "ttft.queueing",
        |e| {
            client(e).latency.ttft = Some(latency(1800.0, 2400.0));
            server(e).histograms.insert(Signal::Ttft, histogram(1.8));
            server(e)
                .histograms
                .insert(Signal::QueueTime, histogram(1.5));
        },
        |e| {
            client(e).latency.ttft = Some(latency(1800.0, 2400.0));
            server(e).histograms.insert(Signal::Ttft, histogram(1.8));
            server(e)
                .histograms
                .insert(Signal::QueueTime, histogram(0.2));
        },
    ),
    (
        "ttft.prefill_bound",
        |e| {
            client(e).latency.ttft = Some(latency(2800.0, 3000.0));
            server(e).histograms.insert(Signal::Ttft, histogram(2.8));
            server(e)
                .histograms
                .insert(Signal::PrefillTime, histogram(2.5));
        },
        |e| {
            client(e).latency.ttft = Some(latency(1400.0, 1500.0));
            server(e).histograms.insert(Signal::Ttft, histogram(1.4));
            server(e)
                .histograms
                .insert(Signal::PrefillTime, histogram(1.3));
        },
    ),
    (
        "ttft.cold_start",
        // A cold engine is slow at every step: the first requests' decode crawls too.
        |e| {
            for r in e.requests.iter_mut().take(3) {
                *r = record(r.id, r.sent_us as f64 / 1e6, 2000.0, 100, 80.0);
            }
        },
        // A crowd arriving at once: first tokens late from the queue, decode at full speed.
        |e| {
            for r in e.requests.iter_mut().take(3) {
                *r = record(r.id, r.sent_us as f64 / 1e6, 2000.0, 100, 12.0);
            }
        },
    ),
    (
        "itl.single_user_slow",
        |e| e.single_user.as_mut().unwrap().latency.itl_token = Some(latency(15.0, 18.0)),
        |e| e.single_user.as_mut().unwrap().latency.itl_token = Some(latency(10.0, 12.0)),
    ),
    (
        "itl.batch_size",
        |e| client(e).latency.itl_token = Some(latency(20.0, 25.0)),
        |e| client(e).latency.itl_token = Some(latency(13.0, 16.0)),
    ),
    (
        "throughput.memory_bound",
        |e| {
            set_gauge(e, Signal::KvUsage, 0.9, 0.99);
            set_gauge(e, Signal::RequestsWaiting, 5.0, 12.0);
        },
        |e| {
            set_gauge(e, Signal::KvUsage, 0.9, 0.95);
            set_gauge(e, Signal::RequestsWaiting, 5.0, 12.0);
        },
    ),
    (
        "throughput.degraded_over_time",
        |e| {
            for r in e.requests.iter_mut().skip(15) {
                *r = record(r.id, r.sent_us as f64 / 1e6, 100.0, 30, 10.0);
            }
            server(e)
                .counters
                .insert(Signal::Preemptions, counter(40.0, WINDOW_SECONDS));
        },
        |e| {
            for r in e.requests.iter_mut().skip(15) {
                *r = record(r.id, r.sent_us as f64 / 1e6, 100.0, 80, 10.0);
            }
        },
    ),
    (
        "upstream.bottleneck",
        |e| set_gauge(e, Signal::RequestsRunning, 3.0, 4.0),
        |e| set_gauge(e, Signal::RequestsRunning, 10.0, 12.0),
    ),
    (
        "client.bound",
        // 16 in flight of 40 users: the client, between a response and the next request, held back the load.
        |e| client(e).client.requested_concurrency = Some(40),
        |e| {
            client(e).client.requested_concurrency = Some(18);
            client(e).client.schedule_lag = Some(latency(5.0, 40.0));
        },
    ),
    (
        "errors.rate",
        |e| {
            let requests = &mut client(e).requests;
            (requests.ok, requests.failed, requests.error_rate) = (92, 8, 0.08);
            requests.errors = vec![ErrorCount {
                class: ErrorClass::HttpStatus,
                status: Some(503),
                count: 8,
                example: "Service Unavailable".into(),
            }];
        },
        |e| {
            let requests = &mut client(e).requests;
            (
                requests.sent,
                requests.ok,
                requests.failed,
                requests.error_rate,
            ) = (1000, 991, 9, 0.009);
        },
    ),
    (
        "output.runaway",
        |e| {
            let tokens = &mut client(e).tokens;
            tokens.finish_reasons = [("length".to_string(), 90), ("stop".to_string(), 10)].into();
            tokens.mean_output = 252.0;
        },
        |e| {
            client(e).tokens.finish_reasons =
                [("length".to_string(), 40), ("stop".to_string(), 60)].into();
        },
    ),
    (
        "output.nondeterministic",
        // Three prompts flipped at token 6 between tokens far apart (0.8 nats): more than rounding.
        |e| diverged(e, 3, Some(0.8)),
        // Two batched requests failed and the rest matched: a failure is not a different output.
        |e| {
            let run = &mut e.determinism.as_mut().unwrap().runs[1];
            (run.compared, run.failed) = (30, 2);
            run.first_error = Some("HTTP 503: overloaded".into());
        },
    ),
    (
        "output.template",
        // The server's template drops the assistant's opening: two prompt tokens fewer, another answer.
        |e| {
            let probe = e.template.as_mut().unwrap();
            probe.server_rendered =
                Some("<|im_start|>user\nName three colours.<|im_end|>\n".into());
            probe.chat.prompt_tokens = Some(29);
            probe.chat.text = Some(" and a fourth".into());
        },
        // A random model runs to max_tokens through both endpoints alike, never writing its end-of-turn: the
        // stop is untested, not missing.
        |e| {
            let probe = e.template.as_mut().unwrap();
            for answer in [&mut probe.chat, &mut probe.completion] {
                (answer.text, answer.finish_reason) =
                    (Some(" zq zq zq".into()), Some("length".into()));
            }
        },
    ),
    (
        "output.truncation",
        |e| {
            client(e).requests.errors = vec![ErrorCount {
                class: ErrorClass::HttpStatus,
                status: Some(400),
                count: 5,
                example: "This model's maximum context length is 4096 tokens".into(),
            }];
        },
        |e| {
            client(e).requests.errors = vec![ErrorCount {
                class: ErrorClass::HttpStatus,
                status: Some(400),
                count: 5,
                example: "temperature must be non-negative".into(),
            }];
        },
    ),
    (
        "cache.prefix_low_hit",
        |e| {
            server(e)
                .counters
                .insert(Signal::PrefixCacheHits, counter(10_000.0, WINDOW_SECONDS));
        },
        |e| {
            server(e)
                .counters
                .insert(Signal::PrefixCacheHits, counter(40_000.0, WINDOW_SECONDS));
        },
    ),
    (
        "capacity.weights_dominate",
        |e| e.hardware.as_mut().unwrap().weight_bytes = 70e9,
        |e| e.hardware.as_mut().unwrap().weight_bytes = 58e9,
    ),
    (
        "capacity.startup_headroom",
        |e| {
            let log = e.log.as_mut().unwrap();
            (log.max_concurrency, log.kv_capacity_tokens) = (Some((8.0, 4096)), None);
        },
        |e| e.log.as_mut().unwrap().max_concurrency = Some((16.0, 4096)),
    ),
    (
        "engine.out_of_memory",
        |e| log_failure(e, LogFailureKind::OutOfMemory, OOM_LINE),
        // An error the engine survived is not an out-of-memory crash.
        |e| log_failure(e, LogFailureKind::Error, "ValueError: boom"),
    ),
    (
        "engine.fatal_error",
        |e| log_failure(e, LogFailureKind::Fatal, ENGINE_DEAD_LINE),
        |e| log_failure(e, LogFailureKind::Error, "ValueError: boom"),
    ),
    (
        "engine.errors",
        |e| log_failure(e, LogFailureKind::Error, "ValueError: boom"),
        // A clean log that was read: nothing to report.
        |e| e.log.as_mut().unwrap().errors = 0,
    ),
    (
        "consistency.sources_disagree",
        |e| e.log.as_mut().unwrap().server = "sglang".into(),
        // vLLM's cache_config_info and its log's KV cache size round differently on hybrid models.
        |e| set_gauge(e, Signal::KvCapacityTokens, 170_000.0, 170_000.0),
    ),
    (
        "consistency.littles_law",
        |e| {
            server(e).histograms.insert(Signal::E2e, histogram(0.5));
        },
        |e| {
            server(e).histograms.insert(Signal::E2e, histogram(2.0));
        },
    ),
    (
        "config.enforce_eager",
        |e| config(e).enforce_eager = logged(true),
        // One user slow against the floor, but CUDA graphs are on: not this setting.
        |e| client_single_user_slow(e),
    ),
    (
        "config.max_num_seqs_vs_kv",
        // 163,840 KV tokens hold 230 requests of 712 tokens; 1024 admitted, and the cache ran out.
        |e| {
            config(e).max_num_seqs = logged(1024);
            set_gauge(e, Signal::KvUsage, 0.8, 0.96);
        },
        // 320 is within 1.5× of the 230 that fit.
        |e| {
            config(e).max_num_seqs = logged(320);
            set_gauge(e, Signal::KvUsage, 0.8, 0.96);
        },
    ),
    (
        "config.max_model_len_oversized",
        // A 32k context for requests of 768 tokens, while requests are preempted.
        |e| {
            config(e).max_model_len = logged(32_768);
            server(e)
                .counters
                .insert(Signal::Preemptions, counter(12.0, 30.0));
        },
        // Under pressure too, but the context is within 4× of the longest request.
        |e| {
            config(e).max_model_len = logged(3_000);
            server(e)
                .counters
                .insert(Signal::Preemptions, counter(12.0, 30.0));
        },
    ),
    (
        "config.gpu_memory_utilization_low",
        |e| {
            config(e).gpu_memory_utilization = logged(0.7);
            set_gauge(e, Signal::KvUsage, 0.8, 0.96);
        },
        // Low, but the cache never ran short: deliberate headroom.
        |e| config(e).gpu_memory_utilization = logged(0.7),
    ),
    (
        "config.prefix_caching_off",
        |e| config(e).enable_prefix_caching = logged(false),
        // Off, for prompts that share nothing.
        |e| {
            config(e).enable_prefix_caching = logged(false);
            e.shared_prefixes = Some(false);
        },
    ),
    (
        "config.chunked_prefill",
        |e| {
            config(e).enable_chunked_prefill = logged(false);
            long_prompts(e, 3000.0);
        },
        // Off with long prompts, but TTFT holds under load.
        |e| {
            config(e).enable_chunked_prefill = logged(false);
            long_prompts(e, 120.0);
        },
    ),
    (
        "config.tp_vs_topology",
        // Sixteen GPUs asked of a host that shows eight.
        |e| config(e).tensor_parallel_size = logged(16),
        // One GPU per engine on a PCIe-only box: no group to link.
        |e| {
            config(e).tensor_parallel_size = logged(1);
            e.topology = Some(topology(2, |_, _| pcie(PciePath::Node)));
        },
    ),
    (
        "multinode.pp_tp",
        // Sixteen-way tensor parallel over two hosts of eight GPUs.
        |e| {
            config(e).tensor_parallel_size = logged(16);
            config(e).nnodes = logged(2);
        },
        // Eight-way within each host, two pipeline stages across, NCCL on InfiniBand.
        |e| two_hosts(e, "IB"),
    ),
    (
        "config.kv_cache_dtype",
        |e| set_gauge(e, Signal::KvUsage, 0.8, 0.96),
        // The same shortage on a GPU without FP8 units.
        |e| {
            set_gauge(e, Signal::KvUsage, 0.8, 0.96);
            e.hardware.as_mut().unwrap().gpu = "a100-40gb".into();
        },
    ),
    (
        "config.spec_decode_low_acceptance",
        // 200 drafts: 0.4 tokens gained per draft, then 0.6.
        |e| speculation(e, 1000.0, 80.0),
        |e| speculation(e, 1000.0, 120.0),
    ),
];

/// Single-user ITL far above the decode floor.
fn client_single_user_slow(evidence: &mut Evidence) {
    let single = evidence.single_user.as_mut().unwrap();
    single.latency.itl_token = Some(latency(30.0, 35.0));
}

/// Prompts of 4,000 tokens, with TTFT p95 under load of `ttft_ms`.
fn long_prompts(evidence: &mut Evidence, ttft_ms: f64) {
    let c = client(evidence);
    c.tokens.mean_input = 4000.0;
    c.latency.ttft = Some(latency(ttft_ms * 0.7, ttft_ms));
}

/// Speculative decoding configured, its counters over the window.
fn speculation(evidence: &mut Evidence, drafted: f64, accepted: f64) {
    config(evidence).speculative = logged(true);
    config(evidence).num_speculative_tokens = logged(5);
    let counters = &mut server(evidence).counters;
    counters.insert(Signal::SpecDrafts, counter(200.0, 30.0));
    counters.insert(Signal::SpecDraftTokens, counter(drafted, 30.0));
    counters.insert(Signal::SpecAcceptedTokens, counter(accepted, 30.0));
}

#[test]
fn every_rule_fires_on_its_case_and_not_on_its_near_miss() {
    let thresholds = Thresholds::default();
    for (id, fire, near_miss) in CASES {
        let mut evidence = healthy();
        fire(&mut evidence);
        let diagnosis = diagnose(&evidence, &thresholds);
        let found =
            finding(&diagnosis, id).unwrap_or_else(|| panic!("{id} did not fire: {diagnosis:#?}"));
        // Weights filling VRAM is only a note until the load needs the KV room (see the test below).
        if *id != "capacity.weights_dominate" {
            assert!(
                found.severity <= Severity::Warning,
                "{id} fired only as {:?}",
                found.severity
            );
        }
        assert!(
            !found.evidence.is_empty() && !found.remedies.is_empty() && !found.source.is_empty(),
            "{id}"
        );

        let mut evidence = healthy();
        near_miss(&mut evidence);
        let diagnosis = diagnose(&evidence, &thresholds);
        assert!(
            finding(&diagnosis, id).is_none(),
            "{id} fired on its near miss: {diagnosis:#?}"
        );
    }
}

#[test]
fn every_playbook_rule_has_a_case() {
    let ids = [
        "capacity.kv_saturated",
        "capacity.batch_cap",
        "capacity.preemptions",
        "ttft.queueing",
        "ttft.prefill_bound",
        "ttft.cold_start",
        "itl.single_user_slow",
        "itl.batch_size",
        "throughput.memory_bound",
        "upstream.bottleneck",
        "client.bound",
        "errors.rate",
        "output.runaway",
        "output.truncation",
        "cache.prefix_low_hit",
        "capacity.weights_dominate",
        "capacity.startup_headroom",
        "throughput.degraded_over_time",
        "consistency.littles_law",
        "hardware.xid_errors",
        "hardware.memory_errors",
        "hardware.clock_slowdown",
        "hardware.pcie_degraded",
        "hardware.gpu_unresponsive",
        "hardware.tp_over_pcie",
        "hardware.nvlink_degraded",
        "hardware.dcgm_diag_failed",
        "network.slow_path",
        "host.swap_active",
        "host.cpu_governor",
        "host.cpu_throttled",
        "host.numa_mismatch",
        "host.api_server_cpu_bound",
        "host.oom_killed",
        "host.hung_tasks",
        "k8s.container_restarts",
        "engine.out_of_memory",
        "engine.fatal_error",
        "engine.errors",
        "consistency.sources_disagree",
        "config.enforce_eager",
        "config.max_num_seqs_vs_kv",
        "config.max_model_len_oversized",
        "config.gpu_memory_utilization_low",
        "config.prefix_caching_off",
        "config.chunked_prefill",
        "config.tp_vs_topology",
        "config.kv_cache_dtype",
        "config.spec_decode_low_acceptance",
        "trace.gpu_idle",
        "trace.launch_bound",
        "trace.comm_exposed",
        "trace.memcpy_in_step",
        "trace.step_over_floor",
        "fleet.load_skew",
        "fleet.replica_down",
        "fleet.gateway_errors",
        "llmd.scheduler",
        "multinode.pp_tp",
        "fleet.cache_unaware_routing",
        "pd.kv_transfer_slow",
    ];
    for id in ids {
        assert!(
            CASES.iter().any(|(case, _, _)| *case == id),
            "no case for {id}"
        );
    }
}

#[test]
fn every_finding_cites_public_references_not_design_notes() {
    let thresholds = Thresholds::default();
    for (case, fire, _) in CASES {
        let mut evidence = healthy();
        fire(&mut evidence);
        for found in diagnose(&evidence, &thresholds).findings {
            if let Some(problem) = source_problem(&found.source) {
                panic!(
                    "{} (in the {case} case): its source {problem}: {}",
                    found.id, found.source
                );
            }
        }
    }
}

#[test]
fn healthy_evidence_has_no_warning_and_every_checklist_line_passes() {
    let mut evidence = healthy();
    with_fleet(&mut evidence);
    with_picker(&mut evidence);
    let diagnosis = diagnose(&evidence, &Thresholds::default());
    assert!(
        diagnosis
            .findings
            .iter()
            .all(|f| f.severity == Severity::Info),
        "{:#?}",
        diagnosis.findings
    );
    assert_eq!(diagnosis.checklist.len(), 57);
    for line in &diagnosis.checklist {
        assert_eq!(line.status, CheckStatus::Pass, "{line:#?}");
    }
    assert!(
        diagnosis
            .headline
            .starts_with("No problem found: TTFT p95 120 ms"),
        "{}",
        diagnosis.headline
    );
}

#[test]
fn headline_names_the_symptom_numbers_and_the_primary_finding() {
    let mut evidence = healthy();
    client(&mut evidence).latency.ttft = Some(latency(1800.0, 2400.0));
    set_gauge(&mut evidence, Signal::KvUsage, 0.9, 0.97);
    set_gauge(&mut evidence, Signal::RequestsWaiting, 6.0, 14.0);
    server(&mut evidence)
        .histograms
        .insert(Signal::Ttft, histogram(1.8));
    server(&mut evidence)
        .histograms
        .insert(Signal::QueueTime, histogram(1.5));
    let diagnosis = diagnose(&evidence, &Thresholds::default());
    assert_eq!(
        diagnosis.findings[0].id, "capacity.kv_saturated",
        "{:#?}",
        diagnosis.findings
    );
    assert_eq!(diagnosis.findings[0].severity, Severity::Critical);
    let headline = &diagnosis.headline;
    assert!(
        headline.starts_with("TTFT is high under load (p95 2.4 s vs 30 ms alone): "),
        "{headline}"
    );
    assert!(headline.ends_with("(capacity.kv_saturated)"), "{headline}");
    assert!(
        finding(&diagnosis, "ttft.queueing").is_some(),
        "the queueing symptom is reported too"
    );
}

#[test]
fn weights_filling_vram_warn_only_when_the_load_needs_the_room() {
    let mut evidence = healthy();
    evidence.hardware.as_mut().unwrap().weight_bytes = 70e9;
    let note = diagnose(&evidence, &Thresholds::default());
    assert_eq!(
        finding(&note, "capacity.weights_dominate")
            .unwrap()
            .severity,
        Severity::Info
    );
    assert!(
        note.headline.starts_with("No problem found"),
        "{}",
        note.headline
    );
    assert!(
        note.headline
            .ends_with("(notes: capacity.weights_dominate)"),
        "{}",
        note.headline
    );
    set_gauge(&mut evidence, Signal::RequestsWaiting, 5.0, 12.0);
    let warning = diagnose(&evidence, &Thresholds::default());
    assert_eq!(
        finding(&warning, "capacity.weights_dominate")
            .unwrap()
            .severity,
        Severity::Warning
    );
}

#[test]
fn errors_dominate_the_headline() {
    let mut evidence = healthy();
    let requests = &mut client(&mut evidence).requests;
    (requests.ok, requests.failed, requests.error_rate) = (90, 10, 0.10);
    let diagnosis = diagnose(&evidence, &Thresholds::default());
    assert_eq!(diagnosis.findings[0].id, "errors.rate");
    assert!(
        diagnosis
            .headline
            .starts_with("Errors are high (10 of 100 answered requests failed)"),
        "{}",
        diagnosis.headline
    );
}

#[test]
fn findings_are_sorted_by_severity_then_confidence() {
    let mut evidence = healthy();
    for (_, fire, _) in CASES {
        fire(&mut evidence);
    }
    let diagnosis = diagnose(&evidence, &Thresholds::default());
    let keys: Vec<_> = diagnosis
        .findings
        .iter()
        .map(|f| (f.severity, f.confidence))
        .collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted);
    assert!(diagnosis.findings.len() > 10);
}

#[test]
fn batch_cap_without_max_num_seqs_is_a_low_confidence_guess_and_the_checklist_asks_for_the_log() {
    // The how-to fits what was given: no log, a log without vLLM's start-up lines, or start-up arguments
    // that leave max_num_seqs at its default.
    type Change = fn(&mut Evidence);
    let cases: [(Change, &str); 3] = [
        (|e| e.log = None, "pass --log FILE"),
        (
            |e| e.log.as_mut().unwrap().non_default_args.clear(),
            "lacks vLLM's start-up lines",
        ),
        (
            |e| {
                let args = &mut e.log.as_mut().unwrap().non_default_args;
                args.remove("max_num_seqs");
                args.insert("max_model_len".into(), "8192".into());
            },
            "start the server with --max-num-seqs",
        ),
    ];
    for (change, how) in cases {
        let mut evidence = healthy();
        change(&mut evidence);
        // No other source told the cap either.
        config(&mut evidence).max_num_seqs = None;
        set_gauge(&mut evidence, Signal::RequestsWaiting, 5.0, 12.0);
        set_gauge(&mut evidence, Signal::RequestsRunning, 250.0, 256.0);
        let diagnosis = diagnose(&evidence, &Thresholds::default());
        let found = finding(&diagnosis, "capacity.batch_cap").expect("batch cap suspected");
        assert_eq!(found.confidence, infer_doctor_core::Confidence::Low);
        let line = check_line(&diagnosis, "batch_not_capped");
        assert_eq!(line.status, CheckStatus::Unknown);
        let said = line.how_to_know.as_deref().unwrap();
        assert!(said.contains(how), "{said}");
    }
}

#[test]
fn nothing_at_all_gives_no_findings_and_says_how_to_get_each_answer() {
    let diagnosis = diagnose(&Evidence::default(), &Thresholds::default());
    assert!(diagnosis.findings.is_empty());
    assert!(
        diagnosis
            .headline
            .starts_with("No problem found: no client measurement")
    );
    // Even "does the workload share prefixes": with no workload known, that is unknown too.
    for line in &diagnosis.checklist {
        assert_eq!(line.status, CheckStatus::Unknown, "{line:#?}");
        assert!(line.detail.starts_with("not checked"), "{line:#?}");
        assert!(line.how_to_know.is_some(), "{line:#?}");
    }
}

#[test]
fn client_only_evidence_skips_server_rules_and_asks_for_metrics() {
    let mut evidence = healthy();
    evidence.server = None;
    evidence.log = None;
    set_gauge_free_saturation(&mut evidence);
    let diagnosis = diagnose(&evidence, &Thresholds::default());
    for id in [
        "capacity.kv_saturated",
        "capacity.batch_cap",
        "capacity.preemptions",
        "throughput.memory_bound",
    ] {
        assert!(
            finding(&diagnosis, id).is_none(),
            "{id} fired without server evidence"
        );
    }
    for id in [
        "queue_empty",
        "kv_below_saturation",
        "no_preemptions",
        "upstream_matches",
        "littles_law",
    ] {
        let line = check_line(&diagnosis, id);
        assert_eq!(line.status, CheckStatus::Unknown, "{line:#?}");
        assert!(
            line.how_to_know
                .as_deref()
                .unwrap()
                .contains("--metrics-url"),
            "{line:#?}"
        );
    }
    let startup = check_line(&diagnosis, "startup_capacity");
    assert!(startup.how_to_know.as_deref().unwrap().contains("--log"));
}

/// The client alone shows high TTFT under load; without server metrics only TTFT rules can speak.
fn set_gauge_free_saturation(evidence: &mut Evidence) {
    client(evidence).latency.ttft = Some(latency(1800.0, 2400.0));
}

#[test]
fn missing_hardware_facts_leave_the_floor_unknown() {
    let mut evidence = healthy();
    evidence.hardware = None;
    let diagnosis = diagnose(&evidence, &Thresholds::default());
    let line = check_line(&diagnosis, "single_user_near_floor");
    assert_eq!(line.status, CheckStatus::Unknown);
    assert!(line.how_to_know.as_deref().unwrap().contains("--gpu"));
}

#[test]
fn the_checklist_fails_where_the_findings_fire() {
    let mut evidence = healthy();
    set_gauge(&mut evidence, Signal::KvUsage, 0.9, 0.97);
    set_gauge(&mut evidence, Signal::RequestsWaiting, 6.0, 14.0);
    server(&mut evidence)
        .counters
        .insert(Signal::Preemptions, counter(5.0, WINDOW_SECONDS));
    let diagnosis = diagnose(&evidence, &Thresholds::default());
    for id in ["queue_empty", "kv_below_saturation", "no_preemptions"] {
        let line = check_line(&diagnosis, id);
        assert_eq!(line.status, CheckStatus::Fail, "{line:#?}");
    }
}

#[test]
fn diagnosis_is_deterministic() {
    let mut evidence = healthy();
    for (_, fire, _) in CASES {
        fire(&mut evidence);
    }
    let thresholds = Thresholds::default();
    assert_eq!(
        diagnose(&evidence, &thresholds),
        diagnose(&evidence, &thresholds)
    );
}

/// llama.cpp: no KV gauge, but its slots (from `/props`) are the cap, and `requests_deferred` the queue.
fn llamacpp_with_deferred_requests(running_max: f64) -> Evidence {
    let mut evidence = healthy();
    evidence.log = None;
    // No vLLM settings on a llama.cpp server.
    evidence.config = None;
    let server = server(&mut evidence);
    server.dialect = "llamacpp".into();
    server.gauges.remove(&Signal::KvUsage);
    set_gauge(&mut evidence, Signal::MaxRunning, 4.0, 4.0);
    set_gauge(
        &mut evidence,
        Signal::RequestsRunning,
        running_max - 0.5,
        running_max,
    );
    set_gauge(&mut evidence, Signal::RequestsWaiting, 2.5, 4.0);
    evidence
}

#[test]
fn llamacpp_slots_all_busy_with_deferred_requests_is_the_batch_cap() {
    let diagnosis = diagnose(
        &llamacpp_with_deferred_requests(4.0),
        &Thresholds::default(),
    );
    let found = finding(&diagnosis, "capacity.batch_cap").expect("slots full");
    assert_eq!(found.severity, Severity::Warning);
    assert_eq!(found.confidence, infer_doctor_core::Confidence::High);
    assert!(found.verdict.contains("slots 4"), "{}", found.verdict);
    assert!(found.remedies[0].contains("--parallel"));
    let line = check_line(&diagnosis, "batch_not_capped");
    assert_eq!(line.status, CheckStatus::Fail);

    // Near miss: requests wait but only two of the four slots were ever busy.
    let diagnosis = diagnose(
        &llamacpp_with_deferred_requests(2.0),
        &Thresholds::default(),
    );
    assert!(finding(&diagnosis, "capacity.batch_cap").is_none());
}

#[test]
fn outputs_ending_by_length_are_expected_when_the_run_asked_for_exact_lengths() {
    let mut evidence = healthy();
    let tokens = &mut client(&mut evidence).tokens;
    tokens.finish_reasons = [("length".to_string(), 100)].into();
    tokens.mean_output = 256.0;
    assert!(
        finding(
            &diagnose(&evidence, &Thresholds::default()),
            "output.runaway"
        )
        .is_some()
    );

    evidence.exact_output_lengths = true;
    let diagnosis = diagnose(&evidence, &Thresholds::default());
    assert!(finding(&diagnosis, "output.runaway").is_none());
    let line = check_line(&diagnosis, "outputs_stop");
    assert_eq!(line.status, CheckStatus::Unknown);
    assert!(
        line.how_to_know
            .as_deref()
            .unwrap()
            .contains("--ignore-eos")
    );
}

/// The cold-start line says why it passes: first answers that came fast, or a first wave whose tokens all
/// arrived at once (a server that buffered them), which is not a cold engine although its TTFT was long.
#[test]
fn the_cold_start_line_passes_with_the_reason_that_holds() {
    let line = |evidence: &Evidence| {
        let diagnosis = diagnose(evidence, &Thresholds::default());
        assert!(finding(&diagnosis, "ttft.cold_start").is_none());
        let line = check_line(&diagnosis, "first_requests_warm").clone();
        assert_eq!(line.status, CheckStatus::Pass, "{line:?}");
        line.detail
    };
    let mut burst = healthy();
    for r in burst.requests.iter_mut().take(3) {
        *r = record(r.id, r.sent_us as f64 / 1e6, 2000.0, 100, 0.0);
    }
    let detail = line(&burst);
    assert!(detail.contains("no slower than 5×"), "{detail}");
    let mut quick = healthy();
    for r in quick.requests.iter_mut().take(3) {
        *r = record(r.id, r.sent_us as f64 / 1e6, 50.0, 100, 80.0);
    }
    let detail = line(&quick);
    assert!(
        detail.starts_with("the first requests answer fast"),
        "{detail}"
    );
}

/// With several GPUs the verdict names the one at fault; an idle GPU's lowered PCIe link is not judged, and
/// the line says what capture would settle it.
#[test]
fn gpu_rules_name_the_gpu_and_leave_idle_links_unjudged() {
    let mut evidence = healthy();
    let mut second = busy_gpu();
    second.bus_id = "00000000:0A:00.0".into();
    second.remapped_rows_pending = Some(true);
    evidence.gpus.push(second);
    let diagnosis = diagnose(&evidence, &Thresholds::default());
    let found = finding(&diagnosis, "hardware.memory_errors").unwrap();
    assert_eq!(found.severity, Severity::Warning);
    assert_eq!(
        found.verdict,
        "GPU 00000000:0A:00.0: a row remap waits for a GPU reset"
    );
    assert!(
        diagnosis
            .headline
            .starts_with("A GPU is not at full health")
    );

    let mut idle = healthy();
    let gpu = gpu(&mut idle);
    (gpu.utilization_percent, gpu.pcie_gen) = (Some(0.0), Some(1.0));
    gpu.clock_reasons = Some(vec![ClockReason::GpuIdle]);
    let diagnosis = diagnose(&idle, &Thresholds::default());
    let link = check_line(&diagnosis, "gpu_link_full");
    assert_eq!(link.status, CheckStatus::Unknown);
    assert!(
        link.detail.contains("idle GPUs lower their PCIe link"),
        "{link:?}"
    );
    assert!(
        link.how_to_know
            .as_deref()
            .unwrap()
            .contains("while it serves")
    );
    let clocks = check_line(&diagnosis, "gpu_clocks_full");
    assert_eq!(clocks.status, CheckStatus::Pass);
    assert!(
        clocks.detail.contains("not busy when captured"),
        "{clocks:?}"
    );

    // At its own power cap under load the GPU works as rated: a note, not a warning; a lowered limit warns.
    let mut capped = healthy();
    capped.gpus[0].clock_reasons = Some(vec![ClockReason::SwPowerCap]);
    capped.gpus[0].sm_clock_mhz = Some(1755.0);
    let note = diagnose(&capped, &Thresholds::default());
    assert_eq!(
        finding(&note, "hardware.clock_slowdown").unwrap().severity,
        Severity::Info
    );
    capped.gpus[0].power_limit_watts = Some(500.0);
    let lowered = diagnose(&capped, &Thresholds::default());
    let found = finding(&lowered, "hardware.clock_slowdown").unwrap();
    assert_eq!(found.severity, Severity::Warning);
    assert!(
        found
            .verdict
            .contains("power limit lowered to 500 W (default 700 W)")
    );

    // ECC off: the pass says the counts were not reported, not that there were no errors.
    let mut no_ecc = healthy();
    (
        no_ecc.gpus[0].ecc_uncorrected_volatile,
        no_ecc.gpus[0].ecc_corrected_volatile,
    ) = (None, None);
    let memory = check_line(
        &diagnose(&no_ecc, &Thresholds::default()),
        "gpu_memory_healthy",
    )
    .clone();
    assert_eq!(memory.status, CheckStatus::Pass);
    assert!(
        memory.detail.starts_with("ECC error counts not reported"),
        "{memory:?}"
    );
}

/// An XID's severity follows what it means: the GPU failing is critical, an application's fault seen by the
/// driver is a note, the rest a warning; the verdict counts repeats.
/// NVLink error counters are judged by their growth between collect's readings before and after the probe: a
/// fault counter that grew fires; the same counters unchanged, traffic that grew, or one reading alone (however
/// high its counts) say nothing against the links.
#[test]
fn nvlink_error_counters_that_grow_over_the_probe_fire_and_still_ones_pass() {
    let window = |after: Vec<infer_doctor_core::GpuNvLinkErrors>| {
        let mut evidence = healthy();
        evidence.nvlink_errors_before =
            Some(("gpu/nvlink-errors-before.txt".into(), nvlink_errors(8, 18)));
        evidence.nvlink_errors_after = Some(("gpu/nvlink-errors-after.txt".into(), after));
        evidence
    };
    let mut grown = nvlink_errors(8, 18);
    grown[3].links[7].counters.insert("CRC Errors".into(), 12);
    let diagnosis = diagnose(&window(grown), &Thresholds::default());
    let found =
        finding(&diagnosis, "hardware.nvlink_degraded").expect("CRC errors grew on GPU 3 link 7");
    assert!(
        found
            .verdict
            .contains("1 NVLink error counters grew over the probe (GPU 3 link 7 CRC Errors +12)"),
        "{}",
        found.verdict
    );
    assert_eq!(found.confidence, Confidence::High);
    let increase = found
        .evidence
        .iter()
        .find(|o| o.signal == "gpu 3 nvlink 7 CRC Errors increase")
        .expect("the link, the counter and its increase");
    assert_eq!(
        (increase.value, increase.window.as_str()),
        (12.0, "gpu/nvlink-errors-after.txt")
    );

    // Near miss: the counters present in both readings, unchanged, and a Blackwell-style traffic counter that grew.
    let mut still = nvlink_errors(8, 18);
    let mut traffic_before = nvlink_errors(8, 18);
    traffic_before[0].links[0]
        .counters
        .insert("Tx packets".into(), 1_000);
    still[0].links[0]
        .counters
        .insert("Tx packets".into(), 9_000_000);
    let mut evidence = window(still);
    evidence.nvlink_errors_before.as_mut().unwrap().1 = traffic_before;
    let diagnosis = diagnose(&evidence, &Thresholds::default());
    assert!(finding(&diagnosis, "hardware.nvlink_degraded").is_none());
    let line = check_line(&diagnosis, "gpu_nvlink_up");
    assert_eq!(line.status, CheckStatus::Pass);
    assert!(
        line.detail
            .contains("432 NVLink error counters unchanged over the probe"),
        "{line:?}"
    );

    // One reading alone, even of counts far from zero: no window, so nothing about growth.
    let mut high = nvlink_errors(8, 18);
    high[3].links[7].counters.insert("CRC Errors".into(), 5_000);
    let mut once = healthy();
    once.nvlink_errors_after = Some(("gpu/nvlink-errors-after.txt".into(), high));
    let diagnosis = diagnose(&once, &Thresholds::default());
    assert!(finding(&diagnosis, "hardware.nvlink_degraded").is_none());
    assert!(
        !check_line(&diagnosis, "gpu_nvlink_up")
            .detail
            .contains("error counters")
    );
}

#[test]
fn the_tensor_parallel_group_is_the_one_cuda_visible_devices_names() {
    let diagnosed = |visible: &str, p2p_off: bool| {
        let mut evidence = healthy();
        tensor_parallel(&mut evidence, 2);
        // GPUs 0–3 on NVLink, 4–7 on NVLink, the two halves over SYS.
        evidence.topology = Some(topology(8, |i, j| {
            if (i < 4) == (j < 4) {
                GpuLink::NvLink(18)
            } else {
                pcie(PciePath::Sys)
            }
        }));
        let mut env = EnvFacts {
            source: "env/server.env".into(),
            server_process: true,
            ..Default::default()
        };
        env.variables
            .insert("CUDA_VISIBLE_DEVICES".into(), visible.into());
        if p2p_off {
            env.variables.insert("NCCL_P2P_DISABLE".into(), "1".into());
        }
        evidence.environment = Some(env);
        let diagnosis = diagnose(&evidence, &Thresholds::default());
        finding(&diagnosis, "hardware.tp_over_pcie").cloned()
    };
    // GPUs 3 and 4 straddle the sockets: the first two visible GPUs are the group, whatever the matrix's order.
    let straddling = diagnosed("3,4,5,6", false).expect("GPU3–GPU4 over SYS");
    assert_eq!(straddling.confidence, Confidence::High);
    assert!(
        straddling
            .verdict
            .contains("GPU3, GPU4, by CUDA_VISIBLE_DEVICES"),
        "{}",
        straddling.verdict
    );
    assert!(straddling.verdict.contains("across CPU sockets"));
    assert!(diagnosed("4,5", false).is_none());
    // UUIDs cannot be matched to the matrix: the first GPUs are assumed, and said to be.
    let mut all_down = healthy();
    all_down.nvlinks.as_mut().unwrap().1[2].all_inactive = true;
    all_down.nvlinks.as_mut().unwrap().1[2].links.clear();
    let diagnosis = diagnose(&all_down, &Thresholds::default());
    let found = finding(&diagnosis, "hardware.nvlink_degraded").expect("every link of GPU 2 down");
    assert!(
        found.verdict.contains("GPU 2: every NVLink inactive"),
        "{}",
        found.verdict
    );
    assert_eq!(found.confidence, Confidence::High);
    // One pair bonded by fewer links than the rest: maybe damage, maybe a design that mixes bonds.
    let mut uneven = healthy();
    uneven.topology = Some(topology(8, |i, j| {
        GpuLink::NvLink(if (i, j) == (0, 1) { 12 } else { 18 })
    }));
    let diagnosis = diagnose(&uneven, &Thresholds::default());
    let found = finding(&diagnosis, "hardware.nvlink_degraded").expect("GPU0–GPU1 NV12 among NV18");
    assert_eq!(found.confidence, Confidence::Medium, "{}", found.verdict);
    assert!(diagnosed("GPU-1a2b,GPU-3c4d", false).is_none());
    let p2p = diagnosed("0,1", true).expect("NVLink unused with P2P off");
    assert!(
        p2p.verdict.starts_with("NCCL_P2P_DISABLE=1"),
        "{}",
        p2p.verdict
    );
}

#[test]
fn a_server_beside_one_of_gpus_on_two_nodes_is_not_called_local() {
    // GPUs on both nodes of the host, the server's CPUs on node 0: which GPUs it drives decides, and that is not
    // in the evidence.
    let mut evidence = healthy();
    let mut remote = host(&mut evidence).pci_devices[0].clone();
    remote.bus_id = "0000:9b:00.0".into();
    remote.numa_node = Some(1);
    host(&mut evidence).pci_devices.push(remote);
    let diagnosis = diagnose(&evidence, &Thresholds::default());
    assert!(finding(&diagnosis, "host.numa_mismatch").is_none());
    let line = check_line(&diagnosis, "host_numa_local");
    assert_eq!(line.status, CheckStatus::Unknown, "{line:?}");
    assert!(line.detail.contains("which of the host's GPUs"), "{line:?}");
    // The server process's own CUDA_VISIBLE_DEVICES says which: the node-1 GPU is remote from its node-0 CPUs,
    // the node-0 GPU local. A shell's, from a collect-env paste, says nothing about the server.
    let with_visible = |devices: &str, server_process: bool| {
        let mut named = evidence.clone();
        named.environment = Some(EnvFacts {
            variables: BTreeMap::from([("CUDA_VISIBLE_DEVICES".to_string(), devices.to_string())]),
            server_process,
            ..Default::default()
        });
        diagnose(&named, &Thresholds::default())
    };
    let remote = with_visible("1", true);
    let found = finding(&remote, "host.numa_mismatch").expect("its GPU is on node 1");
    assert_eq!(found.severity, Severity::Warning, "{found:?}");
    assert_eq!(
        check_line(&with_visible("0", true), "host_numa_local").status,
        CheckStatus::Pass
    );
    assert_eq!(
        check_line(&with_visible("1", false), "host_numa_local").status,
        CheckStatus::Unknown
    );
}

#[test]
fn xid_severity_follows_what_the_code_means() {
    let severity = |xids: Vec<XidEvent>| {
        let mut evidence = healthy();
        evidence.kernel.as_mut().unwrap().xids = xids;
        let diagnosis = diagnose(&evidence, &Thresholds::default());
        let found = finding(&diagnosis, "hardware.xid_errors").unwrap().clone();
        (found.severity, found.verdict)
    };
    let mut repeated = xid(79, "GPU has fallen off the bus");
    repeated.count = 3;
    assert_eq!(
        severity(vec![repeated]),
        (
            Severity::Critical,
            "XID 79 on 0000:00:09.0 ×3 (GPU has fallen off the bus)".to_string()
        )
    );
    assert_eq!(
        severity(vec![xid(13, "Graphics Exception")]).0,
        Severity::Info
    );
    assert_eq!(
        severity(vec![xid(94, "Contained ECC error")]).0,
        Severity::Warning
    );
    // No kernel log at all: unknown, with how to get one.
    let mut evidence = healthy();
    evidence.kernel = None;
    let line = check_line(&diagnose(&evidence, &Thresholds::default()), "gpu_no_xid").clone();
    assert_eq!(line.status, CheckStatus::Unknown);
    assert!(line.how_to_know.unwrap().contains("journalctl -k"));
}

/// Scrapes of a server generating `rates` tokens/s, one every 5 s, then `idle` scrapes after the load ended.
fn scrapes_at(rates: &[f64], idle: usize) -> Vec<(f64, infer_doctor_core::ServerReadings)> {
    let mut total = 0.0;
    let mut out = Vec::new();
    for (i, rate) in rates
        .iter()
        .chain(std::iter::repeat_n(&0.0, idle))
        .enumerate()
    {
        out.push((
            i as f64 * 5.0,
            infer_doctor_core::ServerReadings {
                dialect: "vllm_v1".into(),
                readings: BTreeMap::from([(
                    Signal::GenerationTokens,
                    infer_doctor_core::Reading::Value(total),
                )]),
                ..Default::default()
            },
        ));
        total += rate * 5.0;
    }
    out
}

#[test]
fn idle_scrapes_after_the_load_ended_are_not_a_throughput_degradation() {
    let mut evidence = healthy();
    evidence.requests.clear();
    evidence.scrapes = scrapes_at(&[500.0; 8], 10);
    // A health check's token now and then after the load is not load either.
    for (i, (_, readings)) in evidence.scrapes.iter_mut().enumerate().skip(9) {
        if let Some(infer_doctor_core::Reading::Value(v)) =
            readings.readings.get_mut(&Signal::GenerationTokens)
        {
            *v += i as f64;
        }
    }
    let diagnosis = diagnose(&evidence, &Thresholds::default());
    assert!(
        finding(&diagnosis, "throughput.degraded_over_time").is_none(),
        "{:#?}",
        diagnosis.findings
    );
    let line = check_line(&diagnosis, "throughput_holds");
    assert_eq!(line.status, CheckStatus::Pass, "{line:?}");
    // A real fall while the load lasts still fires, idle tail or not.
    evidence.scrapes = scrapes_at(
        &[500.0, 500.0, 500.0, 480.0, 300.0, 200.0, 200.0, 200.0],
        10,
    );
    let diagnosis = diagnose(&evidence, &Thresholds::default());
    assert!(finding(&diagnosis, "throughput.degraded_over_time").is_some());
}

#[test]
fn prefix_caching_disabled_in_the_log_is_named_when_the_workload_shares_prefixes() {
    let mut evidence = healthy();
    evidence
        .log
        .as_mut()
        .unwrap()
        .non_default_args
        .insert("enable_prefix_caching".into(), "False".into());
    let diagnosis = diagnose(&evidence, &Thresholds::default());
    let found = finding(&diagnosis, "cache.prefix_low_hit").expect("prefix caching off");
    assert!(found.verdict.contains("disabled"), "{}", found.verdict);
    // The same server with a workload that shares nothing: nothing to say.
    evidence.shared_prefixes = Some(false);
    let diagnosis = diagnose(&evidence, &Thresholds::default());
    assert!(finding(&diagnosis, "cache.prefix_low_hit").is_none());
    // Unknown workload: the line says so, not "not applicable".
    evidence.shared_prefixes = None;
    let diagnosis = diagnose(&evidence, &Thresholds::default());
    assert_eq!(
        check_line(&diagnosis, "prefix_cache_hitting").status,
        CheckStatus::Unknown
    );
}

#[test]
fn a_client_holding_55_of_100_requests_in_flight_is_the_limit_unless_the_user_allows_it() {
    let mut evidence = healthy();
    client(&mut evidence).throughput.mean_concurrency = 55.0;
    client(&mut evidence).client.requested_concurrency = Some(100);
    let diagnosis = diagnose(&evidence, &Thresholds::default());
    let found = finding(&diagnosis, "client.bound").expect("client-bound");
    assert!(
        found.verdict.contains("55.0 of its 100"),
        "{}",
        found.verdict
    );
    let lenient = Thresholds::from_toml("client_in_flight_share = 0.5\n").unwrap();
    assert!(finding(&diagnose(&evidence, &lenient), "client.bound").is_none());
    // A run with no steady part (all sent at once) is measured into its drain: no verdict on the client.
    client(&mut evidence).throughput.steady = false;
    assert!(finding(&diagnose(&evidence, &Thresholds::default()), "client.bound").is_none());
    client(&mut evidence).throughput.steady = true;
    // 45 users held by warm-up requests the server failed or stalled: the shortfall is the server's, not the
    // client's (the run's warm-up warning names it).
    client(&mut evidence).warmup.failed = 45;
    assert!(finding(&diagnose(&evidence, &Thresholds::default()), "client.bound").is_none());
    client(&mut evidence).warmup.failed = 0;
    // CI, real vLLM thrashing on 20 KV blocks: users still waiting on their warm-up after the window opened held
    // requests at the server all the same. 55 measured + 30 warm-up is 85 of 100: no shortfall.
    client(&mut evidence).throughput.warmup_in_flight = 30.0;
    assert!(finding(&diagnose(&evidence, &Thresholds::default()), "client.bound").is_none());
    client(&mut evidence).throughput.warmup_in_flight = 20.0;
    let diagnosis = diagnose(&evidence, &Thresholds::default());
    let found = finding(&diagnosis, "client.bound").expect("75 of 100 held is still a shortfall");
    assert!(
        found.verdict.contains("75.0 of its 100"),
        "{}",
        found.verdict
    );
    // Those 20 warm-ups stalled in the window and then failed, with 5 more: 75 held, and the 25 failures cover
    // only part of the 45 users short of measured requests. Counted once, the client still held too few.
    client(&mut evidence).warmup.failed = 25;
    let diagnosis = diagnose(&evidence, &Thresholds::default());
    let found = finding(&diagnosis, "client.bound").expect("the failures are not counted twice");
    assert!(
        found.verdict.contains("75.0 of its 100"),
        "{}",
        found.verdict
    );
    client(&mut evidence).throughput.warmup_in_flight = 0.0;
    client(&mut evidence).warmup.failed = 0;
    // A busy client machine is direct evidence: high confidence.
    client(&mut evidence).client.cores = 2;
    client(&mut evidence).client.cpu_cores_used = 1.95;
    let diagnosis = diagnose(&evidence, &Thresholds::default());
    let found = finding(&diagnosis, "client.bound").unwrap();
    assert_eq!(found.confidence, infer_doctor_core::Confidence::High);
}

#[test]
fn a_prompt_builder_that_could_not_keep_up_is_named_as_the_client_limit() {
    // Regression: 512-token exact prompts built on one thread capped a run near 2,000 req/s with no warning.
    let mut evidence = healthy();
    client(&mut evidence).client.prompt_wait_s = 6.0;
    client(&mut evidence).client.prompt_wait_share = 0.6;
    let diagnosis = diagnose(&evidence, &Thresholds::default());
    let found = finding(&diagnosis, "client.bound").expect("client-bound");
    assert!(
        found.verdict.contains(
            "the prompt builder could not keep up: requests waited for their prompt 60% of the run (6.0 s)"
        ),
        "{}",
        found.verdict
    );
    // Measured on the client itself: direct evidence.
    assert_eq!(found.confidence, infer_doctor_core::Confidence::High);
    assert!(
        found
            .evidence
            .iter()
            .any(|o| o.signal == "prompt wait / run time")
    );
    let lenient = Thresholds::from_toml("client_prompt_wait_share = 0.7\n").unwrap();
    assert!(finding(&diagnose(&evidence, &lenient), "client.bound").is_none());
    // A probe of a few requests whose prompts took 40 ms to build: a large share of a short run, but nothing that
    // limited it.
    client(&mut evidence).client.prompt_wait_s = 0.04;
    assert!(finding(&diagnose(&evidence, &Thresholds::default()), "client.bound").is_none());
    // The first prompts' wait in a run whose builder kept up is no finding.
    client(&mut evidence).client.prompt_wait_s = 6.0;
    client(&mut evidence).client.prompt_wait_share = 0.001;
    assert!(finding(&diagnose(&evidence, &Thresholds::default()), "client.bound").is_none());
}

const OOM_LINE: &str = "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 786.00 MiB. GPU 0 has a total \
                        capacity of 79.11 GiB of which 140.75 MiB is free.";
const ENGINE_DEAD_LINE: &str = "vllm.v1.engine.exceptions.EngineDeadError: EngineCore encountered an issue. See stack \
                                trace (above) for the root cause.";

/// The engine log holds one failure of `kind` at line 412.
fn log_failure(evidence: &mut Evidence, kind: LogFailureKind, message: &str) {
    evidence.log.as_mut().unwrap().failures.push(LogFailure {
        kind,
        line: 412,
        message: message.to_string(),
        headline: Some("EngineCore encountered a fatal error.".to_string()),
        count: 1,
    });
}

#[test]
fn an_out_of_memory_crash_in_the_engine_log_is_a_critical_finding_quoting_the_line() {
    // Regression: an engine log with a CUDA out-of-memory traceback gave no finding at all.
    let mut evidence = healthy();
    evidence.client = None;
    evidence.single_user = None;
    log_failure(&mut evidence, LogFailureKind::OutOfMemory, OOM_LINE);
    let diagnosis = diagnose(&evidence, &Thresholds::default());
    let found = finding(&diagnosis, "engine.out_of_memory").expect("OOM finding");
    assert_eq!(found.severity, Severity::Critical);
    assert!(
        found
            .verdict
            .contains("line 412: torch.OutOfMemoryError: CUDA out of memory."),
        "{}",
        found.verdict
    );
    assert!(found.remedies[0].contains("--gpu-memory-utilization"));
    assert!(
        found.source.contains("https://docs.vllm.ai/"),
        "{}",
        found.source
    );
    assert!(!found.source.contains(".md"), "{}", found.source);
    assert_eq!(diagnosis.findings[0].id, "engine.out_of_memory");
    assert!(
        diagnosis
            .headline
            .starts_with("The engine failed: the engine ran out of memory"),
        "{}",
        diagnosis.headline
    );
    let line = check_line(&diagnosis, "engine_ran_clean");
    assert_eq!(line.status, CheckStatus::Fail);
    assert!(line.detail.contains("line 412"), "{}", line.detail);

    // Without a log nothing says the engine ran clean.
    evidence.log = None;
    let diagnosis = diagnose(&evidence, &Thresholds::default());
    let line = check_line(&diagnosis, "engine_ran_clean");
    assert_eq!(line.status, CheckStatus::Unknown);
    assert!(line.how_to_know.as_deref().unwrap().contains("--log FILE"));
}

#[test]
fn no_preemptions_is_not_claimed_from_a_log_that_cannot_report_them() {
    // Regression: a vLLM V1 or SGLang log whose stats lines have no preemption field passed "no preemptions".
    let mut evidence = healthy();
    server(&mut evidence).counters.remove(&Signal::Preemptions);
    for server in ["vllm", "sglang"] {
        let log = evidence.log.as_mut().unwrap();
        (log.server, log.preemptions) = (server.to_string(), None);
        let diagnosis = diagnose(&evidence, &Thresholds::default());
        let line = check_line(&diagnosis, "no_preemptions");
        assert_eq!(line.status, CheckStatus::Unknown, "{line:#?}");
        assert!(
            line.detail.contains("do not report preemptions"),
            "{}",
            line.detail
        );
        assert!(finding(&diagnosis, "capacity.preemptions").is_none());
    }
    // A log that reports them, and reports none, passes.
    evidence.log.as_mut().unwrap().preemptions = Some(0);
    let diagnosis = diagnose(&evidence, &Thresholds::default());
    assert_eq!(
        check_line(&diagnosis, "no_preemptions").status,
        CheckStatus::Pass
    );
    evidence.log.as_mut().unwrap().preemptions = Some(7);
    let diagnosis = diagnose(&evidence, &Thresholds::default());
    assert!(finding(&diagnosis, "capacity.preemptions").is_some());
}

#[test]
fn preemptions_under_a_blocks_override_name_the_override_first() {
    // Raising --gpu-memory-utilization does nothing while --num-gpu-blocks-override holds the cache small.
    let mut evidence = healthy();
    server(&mut evidence)
        .counters
        .insert(Signal::Preemptions, counter(12.0, WINDOW_SECONDS));
    let first_remedy = |evidence: &Evidence| {
        let diagnosis = diagnose(evidence, &Thresholds::default());
        finding(&diagnosis, "capacity.preemptions")
            .expect("preempting")
            .remedies[0]
            .clone()
    };
    assert!(!first_remedy(&evidence).contains("override"));
    set_gauge(&mut evidence, Signal::KvBlocksOverride, 64.0, 64.0);
    let remedy = first_remedy(&evidence);
    assert!(
        remedy.contains("64 blocks by --num-gpu-blocks-override"),
        "{remedy}"
    );
}

/// A vLLM log of stats lines only, (prompt tok/s, running, waiting, KV usage) each, with the given arguments.
fn stats_log(lines: &[(f64, u64, u64, f64)], max_num_seqs: Option<&str>) -> Evidence {
    let mut non_default_args = std::collections::BTreeMap::new();
    if let Some(cap) = max_num_seqs {
        non_default_args.insert("max_num_seqs".to_string(), cap.to_string());
    }
    Evidence {
        log: Some(infer_doctor_core::LogFacts {
            server: "vllm".into(),
            non_default_args,
            stats: lines
                .iter()
                .enumerate()
                .map(
                    |(i, &(prompt, running, waiting, kv))| infer_doctor_core::LogStats {
                        t: Some(i as f64 * 10.0),
                        prompt_throughput: Some(prompt),
                        generation_throughput: Some(300.0),
                        running: Some(running),
                        waiting: Some(waiting),
                        kv_usage: Some(kv),
                        ..Default::default()
                    },
                )
                .collect(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[test]
fn running_climbing_under_flat_prompt_throughput_is_prefill_bound_not_a_batch_cap() {
    // Regression: a log whose running count climbs while prompt throughput stays flat and requests wait was
    // called a batch cap ("a batch limit likely binds at 20 running").
    let climbing = stats_log(
        &[
            (8000.0, 4, 40, 0.08),
            (8100.0, 8, 38, 0.12),
            (7950.0, 12, 36, 0.17),
            (8050.0, 16, 34, 0.22),
            (8000.0, 20, 30, 0.27),
        ],
        None,
    );
    let diagnosis = diagnose(&climbing, &Thresholds::default());
    assert!(
        finding(&diagnosis, "capacity.batch_cap").is_none(),
        "{:#?}",
        diagnosis.findings
    );
    let line = check_line(&diagnosis, "batch_not_capped");
    assert_eq!(line.status, CheckStatus::Pass);
    assert!(line.detail.contains("prefill"), "{}", line.detail);
    let found = finding(&diagnosis, "ttft.prefill_bound").expect("prefill-bound");
    assert!(
        found.verdict.contains("prefill cannot keep up")
            && found.verdict.contains("climbs from 4 to 20"),
        "{}",
        found.verdict
    );

    // Near miss: the same queue with prompt throughput swinging is not shown to be prefill-bound.
    let mut swinging = climbing.clone();
    for (stats, prompt) in swinging
        .log
        .as_mut()
        .unwrap()
        .stats
        .iter_mut()
        .zip([2000.0, 9000.0, 4000.0, 12000.0, 1000.0])
    {
        stats.prompt_throughput = Some(prompt);
    }
    let diagnosis = diagnose(&swinging, &Thresholds::default());
    assert!(finding(&diagnosis, "ttft.prefill_bound").is_none());
    assert!(finding(&diagnosis, "capacity.batch_cap").is_none());
}

#[test]
fn running_pinned_at_max_num_seqs_while_requests_wait_is_the_batch_cap() {
    let lines = [
        (2000.0, 16, 10, 0.40),
        (900.0, 16, 12, 0.42),
        (3100.0, 16, 15, 0.45),
        (1500.0, 16, 18, 0.47),
    ];
    let diagnosis = diagnose(&stats_log(&lines, Some("16")), &Thresholds::default());
    let found = finding(&diagnosis, "capacity.batch_cap").expect("batch cap");
    assert_eq!(found.severity, Severity::Warning);
    assert_eq!(found.confidence, infer_doctor_core::Confidence::High);
    assert!(finding(&diagnosis, "ttft.prefill_bound").is_none());
    // The same log with max_num_seqs 32: running never reached the cap.
    let diagnosis = diagnose(&stats_log(&lines, Some("32")), &Thresholds::default());
    assert!(finding(&diagnosis, "capacity.batch_cap").is_none());
}

#[test]
fn metrics_and_a_log_from_different_servers_are_said_to_disagree() {
    // Regression: scrapes of one server and a log of another were mixed without a word.
    let mut evidence = healthy();
    set_gauge(
        &mut evidence,
        Signal::KvCapacityTokens,
        524_288.0,
        524_288.0,
    );
    let diagnosis = diagnose(&evidence, &Thresholds::default());
    let found = finding(&diagnosis, "consistency.sources_disagree").expect("capacities differ");
    assert_eq!(found.severity, Severity::Warning);
    assert!(
        found.verdict.contains("server metrics (vllm_v1 dialect)")
            && found.verdict.contains("engine log (vllm)")
            && found.verdict.contains("524288")
            && found.verdict.contains("163840"),
        "{}",
        found.verdict
    );
    // One source alone cannot disagree with itself.
    evidence.log = None;
    let diagnosis = diagnose(&evidence, &Thresholds::default());
    assert!(finding(&diagnosis, "consistency.sources_disagree").is_none());
}

#[test]
fn sources_that_state_nothing_in_common_are_not_said_to_agree() {
    let mut evidence = healthy();
    let diagnosis = diagnose(&evidence, &Thresholds::default());
    let line = check_line(&diagnosis, "sources_agree");
    assert_eq!(line.status, CheckStatus::Pass, "{line:#?}");
    assert!(line.detail.contains("agree on the server"), "{line:#?}");
    // A log of no known server, naming no model and no KV cache: nothing was compared.
    let log = evidence.log.as_mut().unwrap();
    (log.server, log.model, log.kv_capacity_tokens) = ("unknown".into(), None, None);
    let diagnosis = diagnose(&evidence, &Thresholds::default());
    let line = check_line(&diagnosis, "sources_agree");
    assert_eq!(line.status, CheckStatus::Unknown, "{line:#?}");
}

#[test]
fn a_missing_waiting_gauge_is_not_read_as_an_empty_queue() {
    // Without the queue, running alone understates what the server holds: Little's law and the upstream
    // comparison would judge a guessed zero.
    let mut evidence = healthy();
    let diagnosis = diagnose(&evidence, &Thresholds::default());
    assert_ne!(
        check_line(&diagnosis, "upstream_matches").status,
        CheckStatus::Unknown
    );
    server(&mut evidence)
        .gauges
        .remove(&Signal::RequestsWaiting);
    evidence.log = None;
    let diagnosis = diagnose(&evidence, &Thresholds::default());
    for id in ["upstream_matches", "littles_law"] {
        let line = check_line(&diagnosis, id);
        assert_eq!(line.status, CheckStatus::Unknown, "{line:#?}");
    }
    assert!(finding(&diagnosis, "upstream.bottleneck").is_none());
}

#[test]
fn requests_the_client_stopped_are_not_blamed_on_the_server() {
    let error_rate_line = |evidence: &Evidence| {
        let diagnosis = diagnose(evidence, &Thresholds::default());
        assert!(
            diagnosis.findings.iter().all(|f| f.id != "errors.rate"),
            "{:#?}",
            diagnosis.findings
        );
        let line = diagnosis.checklist.iter().find(|l| l.id == "error_rate");
        line.expect("the error-rate line").clone()
    };
    // A probe cut off by its budget: 40 answered, 60 stopped by the client.
    let mut evidence = healthy();
    let requests = &mut client(&mut evidence).requests;
    (requests.sent, requests.ok, requests.interrupted) = (100, 40, 60);
    let line = error_rate_line(&evidence);
    assert_eq!(line.status, CheckStatus::Pass, "{line:#?}");
    assert!(line.detail.contains("of 40 requests"), "{line:#?}");

    // A run recorded before they were counted apart listed them as failures of class `interrupted`.
    let requests = &mut client(&mut evidence).requests;
    (requests.failed, requests.interrupted, requests.error_rate) = (60, 0, 0.6);
    requests.errors = vec![ErrorCount {
        class: ErrorClass::Interrupted,
        status: None,
        count: 60,
        example: "run interrupted before the response ended".into(),
    }];
    assert_eq!(error_rate_line(&evidence).status, CheckStatus::Pass);

    // Every request stopped: nothing to judge, and the server's aborts would only be the client's hang-ups.
    let requests = &mut client(&mut evidence).requests;
    (requests.ok, requests.failed, requests.interrupted) = (0, 0, 100);
    requests.errors.clear();
    assert_eq!(error_rate_line(&evidence).status, CheckStatus::Unknown);
}

#[test]
fn a_short_run_does_not_headline_littles_law() {
    let mut evidence = healthy();
    server(&mut evidence)
        .histograms
        .insert(Signal::E2e, histogram(0.5));
    assert!(
        finding(
            &diagnose(&evidence, &Thresholds::default()),
            "consistency.littles_law"
        )
        .is_some()
    );
    // The same disagreement from four scrapes: too coarse to say the measurement cannot be trusted.
    server(&mut evidence).scrapes = 4;
    let diagnosis = diagnose(&evidence, &Thresholds::default());
    assert!(finding(&diagnosis, "consistency.littles_law").is_none());
    assert!(
        !diagnosis
            .headline
            .starts_with("The measurement cannot be trusted")
    );
    assert_eq!(
        check_line(&diagnosis, "littles_law").status,
        CheckStatus::Unknown
    );
}

#[test]
fn requests_rejected_at_once_do_not_raise_upstream_bottleneck() {
    let mut evidence = healthy();
    set_gauge(&mut evidence, Signal::RequestsRunning, 3.0, 4.0);
    assert!(
        finding(
            &diagnose(&evidence, &Thresholds::default()),
            "upstream.bottleneck"
        )
        .is_some()
    );
    // Most requests were refused with an HTTP 400 before they could run: the engine's count cannot match.
    let requests = &mut client(&mut evidence).requests;
    (requests.ok, requests.failed) = (20, 80);
    let diagnosis = diagnose(&evidence, &Thresholds::default());
    assert!(finding(&diagnosis, "upstream.bottleneck").is_none());
    assert_eq!(
        check_line(&diagnosis, "upstream_matches").status,
        CheckStatus::Unknown
    );
}

#[test]
fn metrics_and_a_log_of_different_models_are_said_to_disagree() {
    let mut evidence = healthy();
    evidence.log.as_mut().unwrap().model = Some("meta-llama/Llama-3.1-8B-Instruct".into());
    server(&mut evidence).models = vec!["Qwen/Qwen3-32B".into()];
    let diagnosis = diagnose(&evidence, &Thresholds::default());
    let found = finding(&diagnosis, "consistency.sources_disagree").expect("different models");
    assert!(
        found.verdict.contains("Qwen/Qwen3-32B"),
        "{}",
        found.verdict
    );
    // The log's --served-model-name is the name the metrics carry: the same server.
    evidence
        .log
        .as_mut()
        .unwrap()
        .non_default_args
        .insert("served_model_name".into(), "['Qwen/Qwen3-32B']".into());
    let diagnosis = diagnose(&evidence, &Thresholds::default());
    assert!(finding(&diagnosis, "consistency.sources_disagree").is_none());
}

#[test]
fn an_idle_scrape_does_not_hide_a_log_that_shows_the_server_full() {
    let mut evidence = healthy();
    // One scrape, taken after the load ended: nothing waits, the cache is nearly empty.
    set_gauge(&mut evidence, Signal::KvUsage, 0.02, 0.02);
    set_gauge(&mut evidence, Signal::RequestsWaiting, 0.0, 0.0);
    let one = server(&mut evidence);
    (one.scrapes, one.start, one.end) = (1, 0.0, 0.0);
    log_showing_the_server_full(&mut evidence);
    let diagnosis = diagnose(&evidence, &Thresholds::default());
    let found = finding(&diagnosis, "capacity.kv_saturated").expect("the log shows the cache full");
    assert!(
        found
            .evidence
            .iter()
            .any(|o| o.window.contains("engine log")
                && o.window
                    .contains("the one scrape of server metrics read 0.02")),
        "{:#?}",
        found.evidence
    );
}

/// A log that shows the cache full, three times.
fn log_showing_the_server_full(evidence: &mut Evidence) {
    let stats = |kv: f64, waiting: u64| infer_doctor_core::LogStats {
        kv_usage: Some(kv),
        waiting: Some(waiting),
        running: Some(40),
        ..Default::default()
    };
    evidence.log.as_mut().unwrap().stats = vec![stats(0.97, 12), stats(0.99, 20), stats(0.98, 15)];
}

#[test]
fn several_unclocked_scrapes_do_not_hide_a_log_that_shows_the_server_full() {
    // Three copied scrape files sharing one modification time: when they were taken is unknown, so they describe
    // no window the log could be set against; the source that saw the pressure speaks.
    let mut evidence = healthy();
    set_gauge(&mut evidence, Signal::KvUsage, 0.03, 0.05);
    set_gauge(&mut evidence, Signal::RequestsWaiting, 0.0, 0.0);
    let unclocked = server(&mut evidence);
    (unclocked.scrapes, unclocked.no_clock) = (3, true);
    log_showing_the_server_full(&mut evidence);
    let diagnosis = diagnose(&evidence, &Thresholds::default());
    let found = finding(&diagnosis, "capacity.kv_saturated").expect("the log shows the cache full");
    assert!(
        found
            .evidence
            .iter()
            .any(|o| o.window.contains("engine log")
                && o.window.contains(
                    "the 3 scrapes of server metrics, at unknown times, read at most 0.05"
                )),
        "{:#?}",
        found.evidence
    );
}

#[test]
fn a_scrape_window_speaks_for_the_run_but_names_a_log_that_saw_more() {
    // Scrapes over the run's own window describe it; the log's fuller moments (an earlier load, say) are named
    // beside them rather than dropped without a word.
    let mut evidence = healthy();
    set_gauge(&mut evidence, Signal::KvUsage, 0.30, 0.40);
    log_showing_the_server_full(&mut evidence);
    let diagnosis = diagnose(&evidence, &Thresholds::default());
    assert!(finding(&diagnosis, "capacity.kv_saturated").is_none());
    let line = check_line(&diagnosis, "kv_below_saturation");
    assert_eq!(line.status, CheckStatus::Pass);
    assert!(
        line.detail.contains("server metrics")
            && line
                .detail
                .contains("the engine log's 3 stats lines reached 0.99"),
        "{line:#?}"
    );
}

#[test]
fn a_hit_rate_gauge_alone_judges_the_prefix_cache() {
    // SGLang exports only its cache_hit_rate, no hit and query counters.
    let mut evidence = healthy();
    evidence.log = None;
    let server = server(&mut evidence);
    server.counters.remove(&Signal::PrefixCacheHits);
    server.counters.remove(&Signal::PrefixCacheQueries);
    set_gauge(&mut evidence, Signal::PrefixCacheHitRate, 0.1, 0.15);
    let diagnosis = diagnose(&evidence, &Thresholds::default());
    assert!(finding(&diagnosis, "cache.prefix_low_hit").is_some());
    set_gauge(&mut evidence, Signal::PrefixCacheHitRate, 0.8, 0.9);
    let diagnosis = diagnose(&evidence, &Thresholds::default());
    assert_eq!(
        check_line(&diagnosis, "prefix_cache_hitting").status,
        CheckStatus::Pass
    );
}

#[test]
fn data_parallel_engines_are_judged_per_engine_against_their_settings() {
    // Two engines of one server, each running 130 of its max_num_seqs 256, each with a 16k-token cache: the
    // metrics add them up (260 running, 32k tokens), the log speaks for one engine.
    let mut evidence = healthy();
    let log = evidence.log.as_mut().unwrap();
    log.kv_capacity_tokens = Some(16_384);
    log.non_default_args
        .insert("max_num_seqs".into(), "256".into());
    set_gauge(&mut evidence, Signal::RequestsRunning, 255.0, 260.0);
    set_gauge(&mut evidence, Signal::RequestsWaiting, 3.0, 6.0);
    set_gauge(&mut evidence, Signal::KvCapacityTokens, 32_768.0, 32_768.0);
    server(&mut evidence).engines = Some(2);
    let diagnosis = diagnose(&evidence, &Thresholds::default());
    assert!(
        finding(&diagnosis, "consistency.sources_disagree").is_none(),
        "{:#?}",
        diagnosis.findings
    );
    assert!(
        finding(&diagnosis, "capacity.batch_cap").is_none(),
        "{:#?}",
        diagnosis.findings
    );
    // One engine with the same numbers is at its cap, and its cache is twice the log's: both are said.
    server(&mut evidence).engines = None;
    let diagnosis = diagnose(&evidence, &Thresholds::default());
    assert!(finding(&diagnosis, "consistency.sources_disagree").is_some());
    assert!(finding(&diagnosis, "capacity.batch_cap").is_some());
}

#[test]
fn host_rules_are_unknown_without_their_signal_and_say_how_to_get_it() {
    let rules = [
        ("host.swap_active", "host_no_swap"),
        ("host.cpu_governor", "host_cpu_performance"),
        ("host.cpu_throttled", "host_cpu_not_throttled"),
        ("host.numa_mismatch", "host_numa_local"),
    ];
    let mut without_host = healthy();
    without_host.host = None;
    // Each signal missing on its own: a VM without cpufreq, a cgroup v1 host, a GPU whose node sysfs does not
    // know, no server process found.
    let mut without_signals = healthy();
    let facts = host(&mut without_signals);
    facts.swap_used_bytes = None;
    facts.governors = None;
    facts.cgroup.as_mut().unwrap().nr_periods = None;
    facts.pci_devices[0].numa_node = None;
    let mut without_server = healthy();
    host(&mut without_server).server_cpus = None;
    for evidence in [without_host, without_signals] {
        let diagnosis = diagnose(&evidence, &Thresholds::default());
        for (rule, line) in rules {
            assert!(finding(&diagnosis, rule).is_none(), "{rule}");
            let line = check_line(&diagnosis, line);
            assert_eq!(line.status, CheckStatus::Unknown, "{line:#?}");
            assert!(
                line.how_to_know
                    .as_deref()
                    .is_some_and(|how| how.contains("collect"))
            );
        }
    }
    let diagnosis = diagnose(&without_server, &Thresholds::default());
    let line = check_line(&diagnosis, "host_numa_local");
    assert_eq!(line.status, CheckStatus::Unknown, "{line:#?}");
    assert!(line.how_to_know.as_deref().unwrap().contains("--pid"));
}

/// A container killed for memory is critical and names its limit; one that crashed is a warning with its exit
/// code; without the pod, or with restarts the pod does not explain, the rule says what it saw and no more.
#[test]
fn a_restarted_container_is_graded_by_how_it_ended() {
    let t = Thresholds::default();
    let mut oom = healthy();
    pod_container(&mut oom).restart_count = Some(3);
    pod_container(&mut oom).last_termination = terminated("OOMKilled", 137);
    let diagnosis = diagnose(&oom, &t);
    let found = finding(&diagnosis, "k8s.container_restarts").expect("fires");
    assert_eq!(found.severity, Severity::Critical);
    assert!(
        found.verdict.contains("restarted 3 time(s)")
            && found.verdict.contains("memory limit of 64Gi")
            && found.verdict.contains("exit code 137"),
        "{}",
        found.verdict
    );
    assert!(found.why.contains("--swap-space"), "{}", found.why);
    assert!(
        diagnosis
            .headline
            .starts_with("The server's container was restarted: container vllm"),
        "{}",
        diagnosis.headline
    );
    assert_eq!(
        check_line(&diagnosis, "k8s_no_restarts").status,
        CheckStatus::Fail
    );

    let mut crashed = healthy();
    pod_container(&mut crashed).restart_count = Some(1);
    pod_container(&mut crashed).last_termination = terminated("Error", 1);
    let found = finding(&diagnose(&crashed, &t), "k8s.container_restarts")
        .expect("fires")
        .clone();
    assert_eq!(found.severity, Severity::Warning);
    assert!(
        found.verdict.contains("Error, exit code 1"),
        "{}",
        found.verdict
    );

    // A container killed for memory that was not restarted (restartPolicy: Never, or caught before the
    // kubelet restarts it) is as critical.
    let mut ended = healthy();
    pod_container(&mut ended).state = Some("terminated: OOMKilled".into());
    pod_container(&mut ended).last_termination = terminated("OOMKilled", 137);
    let found = finding(&diagnose(&ended, &t), "k8s.container_restarts")
        .expect("fires")
        .clone();
    assert_eq!(found.severity, Severity::Critical);
    assert!(
        found.verdict.contains("ended (not restarted)"),
        "{}",
        found.verdict
    );

    // Restarts whose end the pod no longer records: a warning that says so, never critical.
    let mut unexplained = healthy();
    pod_container(&mut unexplained).restart_count = Some(2);
    let found = finding(&diagnose(&unexplained, &t), "k8s.container_restarts")
        .expect("fires")
        .clone();
    assert_eq!(found.severity, Severity::Warning);
    assert!(found.verdict.contains("not recorded"), "{}", found.verdict);

    // No pod evidence: silent, and the line says how to get it.
    let mut outside = healthy();
    outside.pod = None;
    let diagnosis = diagnose(&outside, &t);
    assert!(finding(&diagnosis, "k8s.container_restarts").is_none());
    let line = check_line(&diagnosis, "k8s_no_restarts");
    assert_eq!(line.status, CheckStatus::Unknown, "{line:#?}");
    assert!(line.how_to_know.as_deref().unwrap().contains("k8s:"));
}

/// A hot front-end thread is judged with where the requests wait: without the threads, unknown; hot with no
/// loaded probe to say where requests wait, a low-confidence note that names what would settle it.
#[test]
fn the_front_end_rule_needs_its_threads_and_says_what_it_cannot_tell() {
    let t = Thresholds::default();
    let mut without_threads = healthy();
    without_threads.server_threads = None;
    let line = check_line(&diagnose(&without_threads, &t), "host_front_end_has_cpu").clone();
    assert_eq!(line.status, CheckStatus::Unknown, "{line:#?}");
    assert!(line.how_to_know.as_deref().unwrap().contains("collect"));
    let mut hot_without_probe = healthy();
    busiest_thread(&mut hot_without_probe).core_percent = 100.0;
    hot_without_probe.client = None;
    let diagnosis = diagnose(&hot_without_probe, &t);
    let found = finding(&diagnosis, "host.api_server_cpu_bound").expect("a note");
    assert_eq!(
        (found.severity, found.confidence),
        (Severity::Info, Confidence::Low)
    );
    assert!(found.verdict.contains("python3"), "{}", found.verdict);
    let line = check_line(&diagnosis, "host_front_end_has_cpu");
    assert_eq!(line.status, CheckStatus::Unknown, "{line:#?}");
    assert!(line.detail.contains("not settled"), "{line:#?}");
}

#[test]
fn host_rules_grade_what_they_see() {
    let t = Thresholds::default();
    // Swap holding pages nobody waits for is a note; with tasks stalling on memory, a warning.
    let mut parked = healthy();
    host(&mut parked).swap_used_bytes = Some(512 << 20);
    let diagnosis = diagnose(&parked, &t);
    let found = finding(&diagnosis, "host.swap_active").unwrap();
    assert_eq!(found.severity, Severity::Info);
    assert!(
        found
            .verdict
            .starts_with("512 MiB of swap in use of 8192 MiB"),
        "{}",
        found.verdict
    );
    assert_eq!(
        check_line(&diagnosis, "host_no_swap").status,
        CheckStatus::Fail
    );
    // A user who tolerates a GiB of swap raises the threshold.
    let tolerant = Thresholds {
        host_swap_used_mib: 1024.0,
        ..Thresholds::default()
    };
    assert!(finding(&diagnose(&parked, &tolerant), "host.swap_active").is_none());

    // An unbound server on a two-node host may run far from its GPU: a note, not a warning.
    let mut unbound = healthy();
    host(&mut unbound).server_cpus = Some(vec![0, 1, 2, 3]);
    host(&mut unbound).server_memory_nodes = Some(vec![0, 1]);
    let found = finding(&diagnose(&unbound, &t), "host.numa_mismatch")
        .unwrap()
        .clone();
    assert_eq!(found.severity, Severity::Info);
    assert!(found.verdict.contains("not bound"), "{}", found.verdict);
    // Memory bound to the other node is remote whatever the CPUs.
    let mut remote_memory = healthy();
    host(&mut remote_memory).server_memory_nodes = Some(vec![1]);
    let found = finding(&diagnose(&remote_memory, &t), "host.numa_mismatch")
        .unwrap()
        .clone();
    assert_eq!(found.severity, Severity::Warning);
    assert!(
        found.verdict.contains("memory only on node 1"),
        "{}",
        found.verdict
    );

    // The governor finding names how many cores run which governor.
    let mut slow = healthy();
    host(&mut slow).governors = Some((0..4).map(|core| (core, "ondemand".to_string())).collect());
    let diagnosis = diagnose(&slow, &t);
    assert_eq!(
        finding(&diagnosis, "host.cpu_governor").unwrap().verdict,
        "ondemand on 4 of 4 cores"
    );
    assert_eq!(
        check_line(&diagnosis, "host_cpu_performance").status,
        CheckStatus::Fail
    );
    assert!(
        diagnosis
            .headline
            .starts_with("The GPU host slows the server"),
        "{}",
        diagnosis.headline
    );
}

#[test]
fn the_oom_killer_taking_the_server_is_critical_and_a_driver_hang_of_its_task_too() {
    let thresholds = Thresholds::default();
    let judged = |change: &dyn Fn(&mut Evidence), id: &str| {
        let mut evidence = healthy();
        change(&mut evidence);
        let diagnosis = diagnose(&evidence, &thresholds);
        let line = diagnosis
            .checklist
            .iter()
            .find(|l| l.id == id)
            .unwrap()
            .clone();
        (
            finding(
                &diagnosis,
                if id == "host_no_oom_kill" {
                    "host.oom_killed"
                } else {
                    "host.hung_tasks"
                },
            )
            .map(|f| (f.severity, f.verdict.clone())),
            line,
        )
    };
    // Killed by name (vLLM's engine process) or by the server's pid (collect found it): critical. Counted by the
    // server's cgroup with no kernel log to name the victims: a warning.
    let (by_name, _) = judged(
        &|e| e.kernel.as_mut().unwrap().oom_kills = vec![oom_kill(77, "VLLM::EngineCor", true)],
        "host_no_oom_kill",
    );
    let (severity, summary) = by_name.unwrap();
    assert_eq!(severity, Severity::Critical);
    assert!(summary.contains("VLLM::EngineCor (pid 77) killed at 20.0 GiB resident when a cgroup's memory limit ran out"), "{summary}");
    let (by_pid, _) = judged(
        &|e| e.kernel.as_mut().unwrap().oom_kills = vec![oom_kill(4242, "uvicorn", false)],
        "host_no_oom_kill",
    );
    assert_eq!(by_pid.unwrap().0, Severity::Critical);
    let (counted, _) = judged(
        &|e| {
            e.kernel = None;
            let cgroup = host(e).cgroup.as_mut().unwrap();
            cgroup.oom_kills = Some(2);
            cgroup.memory_max_bytes = Some(32 << 30);
        },
        "host_no_oom_kill",
    );
    let (severity, summary) = counted.unwrap();
    assert_eq!(severity, Severity::Warning);
    assert!(
        summary.contains(
            "2 OOM kills in the server's cgroup /system.slice/vllm.service, memory.max 32.0 GiB"
        ),
        "{summary}"
    );
    // Neither a kernel log nor the cgroup's count: not known, not a pass.
    let (silent, line) = judged(
        &|e| {
            e.kernel = None;
            host(e).cgroup.as_mut().unwrap().oom_kills = None;
        },
        "host_no_oom_kill",
    );
    assert!(silent.is_none());
    assert_eq!(line.status, CheckStatus::Unknown);

    // The server's own task stuck in the NVIDIA driver is a wedged GPU; stuck elsewhere, a warning.
    let (wedged, _) = judged(
        &|e| e.kernel.as_mut().unwrap().hung_tasks = vec![hung_task(4242, "python3", true)],
        "host_no_hung_task",
    );
    let (severity, summary) = wedged.unwrap();
    assert_eq!(severity, Severity::Critical);
    assert!(
        summary.contains(
            "python3 (pid 4242) blocked over 241 s in the NVIDIA driver, reported 2 times"
        ),
        "{summary}"
    );
    let (storage, _) = judged(
        &|e| e.kernel.as_mut().unwrap().hung_tasks = vec![hung_task(4242, "python3", false)],
        "host_no_hung_task",
    );
    assert_eq!(storage.unwrap().0, Severity::Warning);
    let (silent, line) = judged(&|e| e.kernel = None, "host_no_hung_task");
    assert!(silent.is_none());
    assert_eq!(line.status, CheckStatus::Unknown);
}

#[test]
fn a_failed_dcgm_test_is_critical_and_names_its_gpu_a_warning_is_a_warning() {
    let thresholds = Thresholds::default();
    let mut evidence = healthy();
    evidence.dcgm_diag = Some(dcgm_diag(&[
        ("memory", Some(2), DiagOutcome::Fail),
        ("pcie", Some(1), DiagOutcome::Warn),
    ]));
    let diagnosis = diagnose(&evidence, &thresholds);
    let found = finding(&diagnosis, "hardware.dcgm_diag_failed").unwrap();
    assert_eq!(found.severity, Severity::Critical);
    assert!(
        found
            .verdict
            .contains("memory failed on GPU 2: memory said why"),
        "{}",
        found.verdict
    );
    assert!(
        !found.verdict.contains("pcie"),
        "the worst outcome is named"
    );
    assert!(found.remedies.iter().any(|r| r.contains("-r 3")));
    assert!(found.remedies.iter().any(|r| r.contains("Drain")));

    evidence.dcgm_diag = Some(dcgm_diag(&[("pcie", Some(1), DiagOutcome::Warn)]));
    let diagnosis = diagnose(&evidence, &thresholds);
    let found = finding(&diagnosis, "hardware.dcgm_diag_failed").unwrap();
    assert_eq!(found.severity, Severity::Warning);

    // No diagnostic, or one whose every test was skipped: nothing was checked, so nothing passes.
    for diag in [
        None,
        Some(dcgm_diag(&[("memory", Some(2), DiagOutcome::Skip)])),
    ] {
        evidence.dcgm_diag = diag;
        let diagnosis = diagnose(&evidence, &thresholds);
        assert!(finding(&diagnosis, "hardware.dcgm_diag_failed").is_none());
        let line = diagnosis
            .checklist
            .iter()
            .find(|l| l.id == "gpu_dcgm_diag_pass")
            .unwrap();
        assert_eq!(line.status, CheckStatus::Unknown);
    }
}

#[test]
fn prefill_steps_are_judged_against_their_prompt_tokens_compute_floor() {
    let mut evidence = healthy();
    traced(&mut evidence).phases[1] = phase_trace("prefill", 1, 25_000.0, 25_400.0);
    let diagnosis = diagnose(&evidence, &Thresholds::default());
    let slow = finding(&diagnosis, "trace.step_over_floor").expect("25 ms for 512 tokens");
    // 512 tokens × 16 µs = 8.19 ms of compute, longer than the 5 ms read: 3.1× it, felt as TTFT.
    assert_eq!(slow.symptom, infer_doctor_core::Symptom::Ttft);
    assert!(
        slow.verdict.starts_with(
            "prefill steps (512 prompt tokens each) take 25.00 ms of GPU each, 3.1× their 8.19 ms floor"
        ) && slow.verdict.contains("decode steps take 7.00 ms of GPU each, 1.4×"),
        "{}",
        slow.verdict
    );
    // Short prompts are bound by the weights' read, as decode is: 64 tokens' compute (1 ms) is under it.
    let rank = traced(&mut evidence);
    rank.phases[1] = phase_trace("prefill", 1, 9_000.0, 9_400.0);
    rank.phases[1].tokens = 64;
    let diagnosis = diagnose(&evidence, &Thresholds::default());
    let line = check_line(&diagnosis, "trace_steps_near_floor");
    assert_eq!(line.status, CheckStatus::Pass);
    assert!(
        line.detail.contains("1.8× their 5.00 ms floor"),
        "{}",
        line.detail
    );
}

#[test]
fn a_trace_rule_without_the_trace_it_needs_stays_unknown() {
    let lines = [
        "trace_gpu_busy",
        "trace_launches_amortised",
        "trace_comm_hidden",
        "trace_steps_copy_free",
        "trace_steps_near_floor",
    ];
    let statuses = |evidence: &Evidence| {
        let diagnosis = diagnose(evidence, &Thresholds::default());
        lines.map(|id| check_line(&diagnosis, id).status)
    };
    let mut evidence = healthy();
    evidence.trace = None;
    assert_eq!(statuses(&evidence), [CheckStatus::Unknown; 5]);
    // A CPU-only profile (vLLM on CPU) has no GPU time to judge.
    evidence.trace = Some(healthy_trace());
    let rank = traced(&mut evidence);
    (rank.busy_us, rank.span_us, rank.kernels) = (0.0, 0.0, 0);
    assert_eq!(statuses(&evidence), [CheckStatus::Unknown; 5]);
    // Without vLLM's step annotations, copies inside steps and decode steps cannot be told, and idle over the
    // whole trace (which may hold time with no requests) speaks with low confidence.
    let mut evidence = healthy();
    let rank = traced(&mut evidence);
    rank.phases.clear();
    (rank.idle_us, rank.idle_host_wait_us) = (40_000.0, 1_000.0);
    let diagnosis = diagnose(&evidence, &Thresholds::default());
    let idle = finding(&diagnosis, "trace.gpu_idle").expect("40% idle over the trace");
    assert_eq!(idle.confidence, Confidence::Low);
    assert!(
        idle.verdict.contains("over the whole trace"),
        "{}",
        idle.verdict
    );
    for id in ["trace_steps_copy_free", "trace_steps_near_floor"] {
        assert_eq!(
            check_line(&diagnosis, id).status,
            CheckStatus::Unknown,
            "{id}"
        );
    }
    // Without hardware facts there is no floor to compare decode steps with.
    let mut evidence = healthy();
    evidence.hardware = None;
    let diagnosis = diagnose(&evidence, &Thresholds::default());
    assert_eq!(
        check_line(&diagnosis, "trace_steps_near_floor").status,
        CheckStatus::Unknown
    );
}

/// The endpoint picker's other faults, each named, and its line unknown (never a pass) without its metrics or with
/// too few decisions to read a tail from.
#[test]
fn the_endpoint_picker_is_judged_on_what_its_metrics_hold() {
    let thresholds = Thresholds::default();
    let judged = |change: &dyn Fn(&mut Evidence)| {
        let mut e = healthy();
        with_fleet(&mut e);
        with_picker(&mut e);
        change(&mut e);
        let d = diagnose(&e, &thresholds);
        (
            finding(&d, "llmd.scheduler").cloned(),
            check_line(&d, "scheduler_keeps_up").status,
        )
    };

    let (found, _) = judged(&|e| {
        picker(e)
            .gauges
            .get_mut(&Signal::ReadyReplicas)
            .unwrap()
            .min = 0.0
    });
    let found = found.expect("no ready endpoint");
    assert_eq!(found.severity, Severity::Critical);
    assert!(
        found.verdict.contains("no ready endpoint"),
        "{}",
        found.verdict
    );

    // One replica of two never ready in the picker's eyes.
    let (found, _) = judged(&|e| {
        let ready = picker(e).gauges.get_mut(&Signal::ReadyReplicas).unwrap();
        (ready.min, ready.max) = (1.0, 1.0);
    });
    let found = found.expect("fewer ready endpoints than replicas");
    assert!(
        found
            .verdict
            .contains("at most 1 ready endpoints while 2 replicas"),
        "{}",
        found.verdict
    );

    // 9 of 180 attempts failed: 5%, a critical share (error_rate_critical).
    let (found, _) = judged(&|e| {
        let attempts = picker(e)
            .counters
            .get_mut(&Signal::SchedulingAttempts)
            .unwrap();
        attempts.by_label.insert("failure".into(), 9.0);
    });
    let found = found.expect("failed scheduling attempts");
    assert!(
        found
            .verdict
            .contains("5.0% of 180 scheduling attempts failed"),
        "{}",
        found.verdict
    );

    // 60 ms at p99 to choose a replica.
    let (found, _) = judged(&|e| {
        picker(e)
            .histograms
            .insert(Signal::SchedulingLatency, histogram(0.03));
    });
    let found = found.expect("slow scheduling");
    assert_eq!(found.severity, Severity::Warning);
    assert!(found.verdict.contains("60 ms at p99"), "{}", found.verdict);

    // Too few decisions for a p99, and nothing else read: unknown.
    let (found, status) = judged(&|e| {
        let w = picker(e);
        w.gauges.clear();
        w.counters.clear();
        w.histograms.retain(|s, _| *s == Signal::SchedulingLatency);
        w.histograms
            .get_mut(&Signal::SchedulingLatency)
            .unwrap()
            .count = 5.0;
    });
    assert!(found.is_none());
    assert_eq!(status, CheckStatus::Unknown);

    // Ready endpoints alone, all ready: nothing of the picker's own work read, so unknown, not a pass.
    let (found, status) = judged(&|e| {
        let w = picker(e);
        w.counters.clear();
        w.histograms.clear();
    });
    assert!(found.is_none());
    assert_eq!(status, CheckStatus::Unknown);

    // A replica down all window (its pod known from `up` only) is no endpoint the picker should count ready.
    let (found, _) = judged(&|e| {
        e.pods.insert("vllm-2".into(), Default::default());
    });
    assert!(found.is_none(), "{found:#?}");

    // No picker metrics at all: unknown.
    assert!(found.is_none());
    assert_eq!(status, CheckStatus::Unknown);
}

/// The network between the hosts counts as much as the split: TCP sockets are named, both faults are critical,
/// and an unnamed network leaves the line unknown, never passed.
#[test]
fn an_engine_over_hosts_is_judged_by_its_split_and_its_network() {
    let thresholds = Thresholds::default();
    let judged = |change: &dyn Fn(&mut Evidence)| {
        let mut e = healthy();
        change(&mut e);
        let d = diagnose(&e, &thresholds);
        (
            finding(&d, "multinode.pp_tp").cloned(),
            check_line(&d, "multinode_split_fits_network").status,
        )
    };
    let (found, _) = judged(&|e| two_hosts(e, "Socket"));
    let found = found.expect("NCCL over TCP between hosts");
    assert_eq!(found.severity, Severity::Warning);
    assert!(
        found.verdict.contains("over TCP sockets"),
        "{}",
        found.verdict
    );

    let (found, _) = judged(&|e| {
        two_hosts(e, "Socket");
        config(e).tensor_parallel_size = logged(16);
        config(e).pipeline_parallel_size = logged(1);
    });
    let found = found.expect("TP across hosts over TCP");
    assert_eq!(found.severity, Severity::Critical);
    assert!(
        found
            .verdict
            .contains("run --tensor-parallel-size 8 --pipeline-parallel-size 2"),
        "{}",
        found.verdict
    );

    // NCCL_IB_DISABLE=1 in the server's environment says the same without NCCL's log line.
    let (found, _) = judged(&|e| {
        two_hosts(e, "IB");
        e.log.as_mut().unwrap().collective_network = None;
        let mut env = EnvFacts::default();
        env.variables.insert("NCCL_IB_DISABLE".into(), "1".into());
        e.environment = Some(env);
    });
    assert!(
        found
            .expect("IB disabled")
            .verdict
            .contains("NCCL_IB_DISABLE=1")
    );

    // Split well, network not named: unknown.
    let (found, status) = judged(&|e| {
        two_hosts(e, "IB");
        e.log.as_mut().unwrap().collective_network = None;
    });
    assert!(found.is_none());
    assert_eq!(status, CheckStatus::Unknown);

    // Sixteen GPUs asked of a host of eight with no word of other hosts: a split or a setting that cannot start;
    // config.tp_vs_topology speaks, this rule does not guess.
    let (found, status) = judged(&|e| config(e).tensor_parallel_size = logged(16));
    assert!(found.is_none());
    assert_eq!(status, CheckStatus::Unknown);

    // One host: nothing crosses a network.
    let (found, status) = judged(&|_| {});
    assert!(found.is_none());
    assert_eq!(status, CheckStatus::Pass);
}

/// Flips only where the lone run's two best tokens were nearly tied are what batch-variant kernels do: a note
/// with the near tie in it; a server that gave no logprobs cannot tell, so it warns. Without the probe the line
/// is unknown, and with a probe that compared nothing too.
#[test]
fn a_prompt_whose_two_lone_runs_differ_is_nondeterministic_alone_not_batch_variant() {
    let thresholds = Thresholds::default();
    let mut evidence = healthy();
    let probe = evidence.determinism.as_mut().unwrap();
    // Prompt 2's second lone run hit the cache its first filled and changed at token 3; its batched copies were
    // left out, so the batches compared 30 and 6 outputs and all matched.
    probe.alone_divergences = vec![Divergence {
        batch: 1,
        prompt: 2,
        position: 3,
        alone: TokenPick {
            token: " red".into(),
            logprob: Some(-0.4),
        },
        batched: TokenPick {
            token: " blue".into(),
            logprob: Some(-0.5),
        },
        margin: Some(0.1),
    }];
    (probe.runs[0].compared, probe.runs[1].compared) = (6, 24);
    let diagnosis = diagnose(&evidence, &thresholds);
    let found = finding(&diagnosis, "output.nondeterministic").unwrap();
    assert_eq!(
        (found.severity, found.confidence),
        (Severity::Warning, Confidence::High)
    );
    assert!(
        found.verdict.starts_with("1 of 4 prompts gave a different output at temperature 0 when sent alone twice, first at token 3")
            && found.verdict.contains("not compared")
            && !found.verdict.contains("inside a batch"),
        "{}",
        found.verdict
    );
    // Near miss: every prompt repeated itself alone, so the matching batches pass.
    let mut evidence = healthy();
    evidence.determinism.as_mut().unwrap().repeated = 4;
    let diagnosis = diagnose(&evidence, &thresholds);
    assert!(finding(&diagnosis, "output.nondeterministic").is_none());
}

#[test]
fn determinism_near_ties_are_a_note_and_no_probe_is_unknown() {
    let thresholds = Thresholds::default();
    let mut evidence = healthy();
    diverged(&mut evidence, 4, Some(0.01));
    let diagnosis = diagnose(&evidence, &thresholds);
    let found = finding(&diagnosis, "output.nondeterministic").unwrap();
    assert_eq!(found.severity, Severity::Info, "{found:#?}");
    assert!(
        found.verdict.contains("4 of 40") && found.verdict.contains("token 6"),
        "{}",
        found.verdict
    );
    assert!(found.verdict.contains("near tie"), "{}", found.verdict);
    assert!(found.remedies[0].contains("VLLM_BATCH_INVARIANT=1"));

    let probe = evidence.determinism.as_mut().unwrap();
    (probe.logprobs, probe.by_tokens) = (false, false);
    for d in &mut probe.divergences {
        d.margin = None;
    }
    let diagnosis = diagnose(&evidence, &thresholds);
    let found = finding(&diagnosis, "output.nondeterministic").unwrap();
    assert_eq!(
        (found.severity, found.confidence),
        (Severity::Warning, Confidence::Medium)
    );
    assert!(found.verdict.contains("word 6"), "{}", found.verdict);

    for probe in [
        None,
        Some(DeterminismFacts {
            prompts: 4,
            lone_failed: 4,
            ..Default::default()
        }),
    ] {
        let mut evidence = healthy();
        evidence.determinism = probe;
        let diagnosis = diagnose(&evidence, &thresholds);
        assert!(finding(&diagnosis, "output.nondeterministic").is_none());
        let line = diagnosis
            .checklist
            .iter()
            .find(|l| l.id == "outputs_deterministic")
            .unwrap();
        assert_eq!(line.status, CheckStatus::Unknown, "{line:#?}");
        assert!(
            line.how_to_know
                .as_deref()
                .unwrap_or_default()
                .contains("--determinism"),
            "{line:#?}"
        );
    }
}

/// The template rule's other causes: a model template that never opens the assistant's turn, an end-of-turn the
/// model wrote that did not stop it, a chat that fails where completions answer; without the probe, unknown.
#[test]
fn template_causes_each_fire_and_no_probe_is_unknown() {
    let thresholds = Thresholds::default();
    let fired = |change: &dyn Fn(&mut TemplateFacts)| {
        let mut evidence = healthy();
        change(evidence.template.as_mut().unwrap());
        let diagnosis = diagnose(&evidence, &thresholds);
        finding(&diagnosis, "output.template").map(|f| f.verdict.clone())
    };
    let verdict = fired(&|p| p.generation_prompt = false).unwrap();
    assert!(
        verdict.contains("never opens the assistant's turn"),
        "{verdict}"
    );
    let verdict = fired(&|p| {
        p.chat.text = Some("Red.<|im_end|>\nuser: more".into());
        p.completion.text = p.chat.text.clone();
        p.chat.finish_reason = Some("length".into());
    })
    .unwrap();
    assert!(
        verdict.contains("\"<|im_end|>\"") && verdict.contains("not a stop token"),
        "{verdict}"
    );
    let verdict = fired(&|p| {
        p.chat.text = None;
        p.chat.error = Some("HTTP 400: default chat template is no longer allowed".into());
    })
    .unwrap();
    assert!(
        verdict.contains("chat failed") && verdict.contains("HTTP 400"),
        "{verdict}"
    );
    // The server's rendering read back is shown where it parts from the model's.
    let verdict = fired(&|p| {
        p.server_rendered = Some("<|im_start|>user\nName three colours.<|im_end|>\n".into());
        p.chat.prompt_tokens = Some(29);
    })
    .unwrap();
    assert!(verdict.contains("part at character 47"), "{verdict}");
    assert!(
        verdict.contains("\"<|im_start|>assistant\\n\""),
        "{verdict}"
    );

    // A reasoning parser moves the thinking out of chat's content; completions returns it inline, tags and all.
    let reasoning = |p: &mut TemplateFacts, thought: &str| {
        p.completion.text =
            Some("<think>\nPrimary first.\n</think>\n\nRed, green and blue.".into());
        p.chat.reasoning = Some(thought.into());
        p.chat.text = Some("\n\nRed, green and blue.".into());
    };
    assert_eq!(fired(&|p| reasoning(p, "\nPrimary first.\n")), None);
    let verdict = fired(&|p| reasoning(p, "Secondary first.")).unwrap();
    assert!(verdict.contains("different answers"), "{verdict}");

    let status = |change: &dyn Fn(&mut TemplateFacts)| {
        let mut evidence = healthy();
        if let Some(p) = evidence.template.as_mut() {
            change(p);
        }
        let diagnosis = diagnose(&evidence, &thresholds);
        assert!(finding(&diagnosis, "output.template").is_none());
        diagnosis
            .checklist
            .iter()
            .find(|l| l.id == "template_matches")
            .unwrap()
            .clone()
    };
    // A template that could not be rendered here judges nothing, and says why.
    let line = status(&|p| {
        *p = TemplateFacts {
            template: p.template.clone(),
            render_error: Some("template line 3: unknown function strftime_now".into()),
            ..Default::default()
        }
    });
    assert_eq!(line.status, CheckStatus::Unknown, "{line:#?}");
    assert!(
        format!("{line:?}").contains("unknown function strftime_now"),
        "{line:#?}"
    );

    let mut evidence = healthy();
    evidence.template = None;
    let diagnosis = diagnose(&evidence, &thresholds);
    let line = diagnosis
        .checklist
        .iter()
        .find(|l| l.id == "template_matches")
        .unwrap();
    assert_eq!(line.status, CheckStatus::Unknown, "{line:#?}");
    assert!(
        line.how_to_know
            .as_deref()
            .unwrap_or_default()
            .contains("--template")
    );
}
