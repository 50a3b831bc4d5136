//! The quick diagnosis checklist, printed with every report: one pass / fail / unknown per question, read from
//! the same rule assessments as the findings so the two never disagree; "unknown" says how to find out.

use infer_doctor_core::{CheckLine, CheckStatus};

use crate::Thresholds;
use crate::assessment::{Assessment, how, ms, percent};
use crate::facts::Facts;

/// Lines answered directly by one rule: (line id, question, rule id).
const RULE_LINES: [(&str, &str, &str); 52] = [
    ("error_rate", "Is the error rate below 1%?", "errors.rate"),
    (
        "no_preemptions",
        "Are there no preemptions?",
        "capacity.preemptions",
    ),
    (
        "batch_not_capped",
        "Is the batch not capped (running below max-num-seqs while requests wait)?",
        "capacity.batch_cap",
    ),
    (
        "prefix_cache_hitting",
        "Is the prefix cache hitting (when prompts share prefixes)?",
        "cache.prefix_low_hit",
    ),
    (
        "outputs_stop",
        "Do outputs end by stop, not by length?",
        "output.runaway",
    ),
    (
        "outputs_deterministic",
        "At temperature 0, does a prompt give the same output inside a batch as alone?",
        "output.nondeterministic",
    ),
    (
        "template_matches",
        "Does the server's chat give the model the prompt its own chat template makes?",
        "output.template",
    ),
    (
        "fleet_balanced",
        "Is the load even across the replicas (no one pod far busier or fuller than its peers)?",
        "fleet.load_skew",
    ),
    (
        "replicas_up",
        "Were all replicas up through the window (every scrape answered, no restart)?",
        "fleet.replica_down",
    ),
    (
        "prefix_routing",
        "Does each shared prefix stay on the replica that cached it (per-pod hit rates near what the workload allows)?",
        "fleet.cache_unaware_routing",
    ),
    (
        "kv_transfer_fast",
        "Is the prefill→decode KV transfer fast (a small share of TTFT, at RDMA speed, none failing)?",
        "pd.kv_transfer_slow",
    ),
    (
        "gateway_passes_requests",
        "Does the gateway in front pass requests on (no 502/503/504 the servers did not count)?",
        "fleet.gateway_errors",
    ),
    (
        "multinode_split_fits_network",
        "Does an engine split over hosts keep tensor parallelism within a host and NCCL on RDMA between them?",
        "multinode.pp_tp",
    ),
    (
        "scheduler_keeps_up",
        "Does llm-d's endpoint picker keep up (quick scheduling, no queue of its own, a ready replica to pick)?",
        "llmd.scheduler",
    ),
    (
        "upstream_matches",
        "Does the server's running + waiting match the client's in-flight count (nothing held upstream)?",
        "upstream.bottleneck",
    ),
    (
        "network_fast",
        "Is the path to the server fast (connect, first byte of /health, what a gateway adds)?",
        "network.slow_path",
    ),
    (
        "littles_law",
        "Does Little's law hold for the server's numbers?",
        "consistency.littles_law",
    ),
    (
        "trace_gpu_busy",
        "Does the GPU stay busy through the traced steps (idle under 15%)?",
        "trace.gpu_idle",
    ),
    (
        "trace_launches_amortised",
        "Are kernel launches amortised (CUDA graphs, or kernels longer than their launch)?",
        "trace.launch_bound",
    ),
    (
        "trace_comm_hidden",
        "Is communication a small share of the GPU's time in the trace?",
        "trace.comm_exposed",
    ),
    (
        "trace_steps_copy_free",
        "Are the engine steps free of host↔device copies?",
        "trace.memcpy_in_step",
    ),
    (
        "trace_steps_near_floor",
        "Do traced prefill and decode steps run near their roofline floor?",
        "trace.step_over_floor",
    ),
    (
        "sources_agree",
        "Do the server metrics and the engine log describe the same server?",
        "consistency.sources_disagree",
    ),
    (
        "startup_capacity",
        "Does the startup KV capacity cover the concurrency used?",
        "capacity.startup_headroom",
    ),
    (
        "itl_holds_under_load",
        "Does ITL stay close to the single-user ITL under load?",
        "itl.batch_size",
    ),
    (
        "first_requests_warm",
        "Are the first requests as fast as later ones (the server was warm)?",
        "ttft.cold_start",
    ),
    (
        "throughput_holds",
        "Does throughput hold steady through the run?",
        "throughput.degraded_over_time",
    ),
    (
        "gpu_responds",
        "Does nvidia-smi answer on the GPU host (the driver is not wedged)?",
        "hardware.gpu_unresponsive",
    ),
    (
        "gpu_no_xid",
        "Is the kernel log free of GPU XID errors?",
        "hardware.xid_errors",
    ),
    (
        "gpu_memory_healthy",
        "Are the GPUs free of memory errors and pending repairs (ECC, row remapping)?",
        "hardware.memory_errors",
    ),
    (
        "gpu_clocks_full",
        "Do the GPUs run at full clocks (no thermal, power-brake or power-cap slowdown)?",
        "hardware.clock_slowdown",
    ),
    (
        "gpu_tp_on_nvlink",
        "Does the tensor-parallel group meet over NVLink, not PCIe?",
        "hardware.tp_over_pcie",
    ),
    (
        "gpu_nvlink_up",
        "Are all NVLinks up, at full speed and bonded alike, with no error counter growing over the probe?",
        "hardware.nvlink_degraded",
    ),
    (
        "gpu_link_full",
        "Do busy GPUs' PCIe links run at their full generation and width?",
        "hardware.pcie_degraded",
    ),
    (
        "gpu_dcgm_diag_pass",
        "Does DCGM's diagnostic (`dcgmi diag -r 1`) pass on every GPU?",
        "hardware.dcgm_diag_failed",
    ),
    (
        "host_no_swap",
        "Is the GPU host free of swap use?",
        "host.swap_active",
    ),
    (
        "host_cpu_performance",
        "Do the host's cores run a performance governor (not powersave, ondemand or conservative)?",
        "host.cpu_governor",
    ),
    (
        "host_cpu_not_throttled",
        "Is the server's cgroup free of CPU-quota throttling?",
        "host.cpu_throttled",
    ),
    (
        "host_numa_local",
        "Does the server run on the NUMA node of its GPUs?",
        "host.numa_mismatch",
    ),
    (
        "host_front_end_has_cpu",
        "Does the server's front end keep up (no thread at a full core while requests wait before the engine)?",
        "host.api_server_cpu_bound",
    ),
    (
        "host_no_oom_kill",
        "Has the kernel's OOM killer left the server and its host alone?",
        "host.oom_killed",
    ),
    (
        "host_no_hung_task",
        "Is the kernel log free of hung tasks (processes stuck on storage, locks or the GPU driver)?",
        "host.hung_tasks",
    ),
    (
        "config_cuda_graphs",
        "Does the server run with CUDA graphs (no --enforce-eager)?",
        "config.enforce_eager",
    ),
    (
        "config_max_num_seqs_fits_kv",
        "Does max-num-seqs match what the KV cache holds for these requests?",
        "config.max_num_seqs_vs_kv",
    ),
    (
        "config_max_model_len_fits",
        "Is max-model-len close to the longest request (not oversized while the KV cache is short)?",
        "config.max_model_len_oversized",
    ),
    (
        "config_gpu_memory_used",
        "Does gpu-memory-utilization give the KV cache the memory it needs?",
        "config.gpu_memory_utilization_low",
    ),
    (
        "config_prefix_caching_on",
        "Is prefix caching on where prompts share prefixes?",
        "config.prefix_caching_off",
    ),
    (
        "config_chunked_prefill",
        "Do chunked prefill and max-num-batched-tokens suit the prompt lengths?",
        "config.chunked_prefill",
    ),
    (
        "config_tp_fits_topology",
        "Does tensor-parallel-size fit the GPUs, their links and the model?",
        "config.tp_vs_topology",
    ),
    (
        "config_kv_cache_dtype",
        "Is the KV cache stored in FP8 where an FP8-capable GPU runs out of it?",
        "config.kv_cache_dtype",
    ),
    (
        "config_spec_decode_accepted",
        "Does speculative decoding get most drafted tokens accepted?",
        "config.spec_decode_low_acceptance",
    ),
    (
        "k8s_no_restarts",
        "Has the server's pod run without container restarts (none killed for memory)?",
        "k8s.container_restarts",
    ),
];

pub(crate) fn build(facts: &Facts, t: &Thresholds, assessments: &[Assessment]) -> Vec<CheckLine> {
    let from_rule = |id: &str, question: &str, rule: &str| {
        assessments
            .iter()
            .find(|a| a.rule == rule)
            .map(|a| CheckLine {
                id: id.to_string(),
                question: question.to_string(),
                status: a.status,
                detail: a.detail.clone(),
                how_to_know: a.how_to_know.clone(),
            })
    };
    let mut lines = vec![server_answering(facts), engine_ran_clean(assessments)];
    lines.extend(from_rule(RULE_LINES[0].0, RULE_LINES[0].1, RULE_LINES[0].2));
    lines.push(single_user_near_floor(facts, t, assessments));
    lines.push(queue_empty(facts, t));
    lines.push(kv_below_saturation(facts, t));
    lines.extend(
        RULE_LINES[1..]
            .iter()
            .filter_map(|(id, question, rule)| from_rule(id, question, rule)),
    );
    lines
}

fn line(
    id: &str,
    question: &str,
    status: CheckStatus,
    detail: String,
    how_to_know: Option<&str>,
) -> CheckLine {
    CheckLine {
        id: id.to_string(),
        question: question.to_string(),
        status,
        detail,
        how_to_know: how_to_know.map(str::to_string),
    }
}

fn server_answering(facts: &Facts) -> CheckLine {
    const ID: &str = "server_answering";
    const QUESTION: &str = "Is the server healthy and answering?";
    let runs = [facts.client(), facts.single_user()];
    let (sent, ok) = runs.iter().flatten().fold((0, 0), |(sent, ok), run| {
        (sent + run.requests.sent, ok + run.requests.ok)
    });
    if sent > 0 {
        let status = if ok > 0 {
            CheckStatus::Pass
        } else {
            CheckStatus::Fail
        };
        return line(
            ID,
            QUESTION,
            status,
            format!("{ok} of {sent} requests answered"),
            None,
        );
    }
    let finished = facts
        .counter(infer_doctor_core::Signal::RequestsFinished)
        .map(|c| c.increase)
        .filter(|n| *n > 0.0);
    match finished {
        Some(n) => line(
            ID,
            QUESTION,
            CheckStatus::Pass,
            format!("the server finished {n:.0} requests in the window"),
            None,
        ),
        None => line(
            ID,
            QUESTION,
            CheckStatus::Unknown,
            "not checked: no requests were sent or seen".to_string(),
            Some(how::LOADED_PROBE),
        ),
    }
}

fn engine_ran_clean(assessments: &[Assessment]) -> CheckLine {
    let engine: Vec<&Assessment> = assessments
        .iter()
        .filter(|a| crate::engine::RULES.contains(&a.rule))
        .collect();
    let (status, detail, how_to_know) = crate::engine::check_status(&engine);
    line(
        "engine_ran_clean",
        "Did the engine run without crashing, running out of memory or logging errors?",
        status,
        detail,
        how_to_know.as_deref(),
    )
}

fn single_user_near_floor(facts: &Facts, t: &Thresholds, assessments: &[Assessment]) -> CheckLine {
    const ID: &str = "single_user_near_floor";
    const QUESTION: &str = "Are single-user TTFT and ITL near what the hardware allows?";
    let Some(single_ttft) = facts.single_user_ttft_p95() else {
        return line(
            ID,
            QUESTION,
            CheckStatus::Unknown,
            "not checked: no single-user probe".to_string(),
            Some(how::SINGLE_USER_PROBE),
        );
    };
    if single_ttft.ms > t.ttft_high_ms {
        return line(
            ID,
            QUESTION,
            CheckStatus::Fail,
            format!(
                "TTFT p95 {} with one user (> {})",
                ms(single_ttft.ms),
                ms(t.ttft_high_ms)
            ),
            None,
        );
    }
    match assessments
        .iter()
        .find(|a| a.rule == "itl.single_user_slow")
    {
        Some(itl) => CheckLine {
            id: ID.to_string(),
            question: QUESTION.to_string(),
            status: itl.status,
            detail: format!("TTFT p95 {} alone; {}", ms(single_ttft.ms), itl.detail),
            how_to_know: itl.how_to_know.clone(),
        },
        None => line(
            ID,
            QUESTION,
            CheckStatus::Unknown,
            "not checked".to_string(),
            Some(how::HARDWARE),
        ),
    }
}

fn queue_empty(facts: &Facts, t: &Thresholds) -> CheckLine {
    const ID: &str = "queue_empty";
    const QUESTION: &str = "Is the queue empty under load (waiting ≈ 0)?";
    match facts.waiting() {
        Some(waiting) => {
            let status = if waiting.mean <= t.waiting_mean_nonempty {
                CheckStatus::Pass
            } else {
                CheckStatus::Fail
            };
            line(
                ID,
                QUESTION,
                status,
                format!(
                    "{:.1} waiting on average, {:.0} at most ({})",
                    waiting.mean, waiting.max, waiting.window
                ),
                None,
            )
        }
        None => line(
            ID,
            QUESTION,
            CheckStatus::Unknown,
            "not checked: no waiting-queue gauge".to_string(),
            Some(&facts.how_server()),
        ),
    }
}

fn kv_below_saturation(facts: &Facts, t: &Thresholds) -> CheckLine {
    const ID: &str = "kv_below_saturation";
    let question = format!(
        "Is the KV cache below {} under load?",
        percent(t.kv_saturated)
    );
    match facts.kv_usage() {
        Some(kv) => {
            let status = if kv.max <= t.kv_saturated {
                CheckStatus::Pass
            } else {
                CheckStatus::Fail
            };
            line(
                ID,
                &question,
                status,
                format!(
                    "KV usage peaked at {}, {} on average ({})",
                    percent(kv.max),
                    percent(kv.mean),
                    kv.window
                ),
                None,
            )
        }
        None => line(
            ID,
            &question,
            CheckStatus::Unknown,
            "not checked: no KV usage gauge".to_string(),
            Some(&facts.how_server()),
        ),
    }
}
