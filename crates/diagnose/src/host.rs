//! Rules over the GPU host's own facts: swap, CPU frequency, cgroup throttling, NUMA placement and a pod's
//! restarted containers slow a server whose GPUs are healthy, and none of them shows in the server's metrics.

use std::collections::{BTreeMap, BTreeSet};

use infer_doctor_core::{
    CheckStatus, Confidence, HostFacts, Observation, PodFacts, Severity, Symptom,
};

use crate::Thresholds;
use crate::assessment::{Assessment, Rule, compared, how, percent, seen};
use crate::facts::{Facts, visible_gpu_indices};

const SWAP_ACTIVE: Rule = Rule {
    id: "host.swap_active",
    symptom: Symptom::Host,
    why: "Pages of the serving process (the Python front end, the scheduler, tokenizers, pinned KV offload) that \
          were swapped out must be read back from disk before the code touching them runs again: every such \
          fault stalls a step for milliseconds. Memory pressure (PSI) says whether tasks are waiting on it now.",
    remedies: &[
        "Find what uses the memory (`ps -eo rss,cmd --sort=-rss | head`), and give the host or the container \
         more memory or run less beside the server",
        "Lower vLLM's CPU-side memory (`--swap-space`, `--cpu-offload-gb`, `--kv-offloading-size`) if it set them",
        "On a dedicated serving host, `sysctl vm.swappiness=1` or `swapoff -a` keeps the server resident",
    ],
    source: "https://docs.kernel.org/accounting/psi.html (memory pressure: the share of time tasks stall on \
             memory); https://docs.kernel.org/admin-guide/sysctl/vm.html (swappiness)",
};

const CPU_GOVERNOR: Rule = Rule {
    id: "host.cpu_governor",
    symptom: Symptom::Host,
    why: "The engine's CPU work — scheduling, sampling, detokenizing, launching kernels — sits between GPU steps; \
          a governor that keeps cores at low frequency (powersave) or raises it only after sustained load \
          (ondemand, conservative) lengthens every step. Under the intel_pstate driver `powersave` still scales \
          with load, so the cost there is smaller.",
    remedies: &[
        "Set the performance governor on a serving host: `cpupower frequency-set -g performance` (or the \
         BIOS power profile 'Maximum Performance')",
        "Check `cat /sys/devices/system/cpu/cpu*/cpufreq/scaling_driver`: under intel_pstate, also set \
         `energy_performance_preference` to `performance`",
    ],
    source: "https://docs.kernel.org/admin-guide/pm/cpufreq.html (the powersave, ondemand and conservative \
             governors); https://docs.kernel.org/admin-guide/pm/intel_pstate.html",
};

const CPU_THROTTLED: Rule = Rule {
    id: "host.cpu_throttled",
    symptom: Symptom::Host,
    why: "A cgroup CPU quota (a container's or pod's CPU limit) stops all of the cgroup's threads for the rest of \
          each period once the quota is spent, however idle the host is: the engine loop and the HTTP front stall \
          in bursts, which shows as ITL and TTFT spikes.",
    remedies: &[
        "Raise or remove the CPU limit of the server's container or pod (Kubernetes: resources.limits.cpu)",
        "Or keep the limit and pin the server to whole cores (the static CPU manager policy with a Guaranteed pod)",
    ],
    source: "https://docs.kernel.org/admin-guide/cgroup-v2.html (cpu.max, cpu.stat nr_periods/nr_throttled); \
             kubernetes-monitoring/kubernetes-mixin: alerts/resource_alerts.libsonnet (CPUThrottlingHigh, \
             cpuThrottlingPercent: 25)",
};

const NUMA_MISMATCH: Rule = Rule {
    id: "host.numa_mismatch",
    symptom: Symptom::Host,
    why: "On a multi-socket host each GPU hangs off one socket's PCIe root. A server whose threads and memory \
          are on another NUMA node copies every host↔device transfer across the socket link and runs its CPU work \
          on remote memory; vLLM and SGLang added NUMA binding for this.",
    remedies: &[
        "Bind the server to its GPUs' node: `numactl --cpunodebind=N --membind=N vllm serve …` (the node from \
         `nvidia-smi topo -m`'s NUMA Affinity column)",
        "In Kubernetes, the Topology Manager's single-numa-node policy keeps a pod's CPUs and GPUs on one node",
    ],
    source: "vllm-project/vllm#30492 (NUMA binding for GPU workers); stas00/ml-engineering: \
             training/performance (the NUMA affinity section)",
};

const API_SERVER_CPU_BOUND: Rule = Rule {
    id: "host.api_server_cpu_bound",
    symptom: Symptom::Ttft,
    why: "A Python front end parses HTTP, tokenizes prompts, detokenizes and streams every token on one thread           (asyncio's event loop). At a full core it cannot hand requests to the engine as fast as they come, so           they wait in front of it: the client sees queueing while the engine's own queue stays short and the           GPU has room.",
    remedies: &[
        "vLLM: run several API server processes (`vllm serve … --api-server-count N`), so HTTP, tokenization \
         and streaming spread over cores; or run more replicas behind a load balancer",
        "Give the server's container more and faster cores; check `host.cpu_governor` and `host.cpu_throttled`",
    ],
    source: "vllm-project/vllm#12705 (the API server on one CPU limits how fast requests reach the GPU); \
             vllm-project/vllm#17546 (--api-server-count); rh-aiservices-bu/llm-d-playbook: Performance \
             Debugging Guide (running + waiting ≈ the client's concurrency, else the bottleneck is before vLLM)",
};

const OOM_KILLED: Rule = Rule {
    id: "host.oom_killed",
    symptom: Symptom::Errors,
    why: "When the host's memory, or the memory limit of a container's cgroup, runs out, the kernel kills the \
          process that uses the most. A killed engine or worker process takes the whole server down (requests \
          fail until it restarts and reloads the weights); another process killed says the host runs at its \
          memory limit and the server may be next.",
    remedies: &[
        "Find what grew: the killed process's resident memory is in the kernel line; `ps -eo rss,cmd --sort=-rss` \
         shows what uses memory now",
        "Give the server's container a higher memory limit, or make vLLM use less host memory: a smaller \
         `--swap-space` (GiB per GPU), `--cpu-offload-gb`, `--kv-offloading-size`, fewer `--api-server-count`",
        "Run less beside the server on the host, or move it to a host with more memory",
    ],
    source: "https://docs.kernel.org/admin-guide/cgroup-v2.html (memory.max, memory.events oom_kill); \
             torvalds/linux: mm/oom_kill.c (the `Killed process` line and the `oom-kill:constraint=` summary); \
             vllm-project/vllm#43639 (a vLLM server OOM-killed by the kernel)",
};

const HUNG_TASKS: Rule = Rule {
    id: "host.hung_tasks",
    symptom: Symptom::Host,
    why: "The kernel's hung-task watchdog names each task that stayed in uninterruptible sleep past its timeout \
          (120 s by default): a process waiting on storage (a model loading from a network filesystem), on a \
          lock, or on the GPU driver. Stuck in the NVIDIA driver, the GPU or driver is wedged; elsewhere, model \
          loads and checkpoint reads stall.",
    remedies: &[
        "Read the stack printed after the `INFO: task … blocked` line: `[nvidia]`/`[nvidia_uvm]` frames point at \
         the driver (check XIDs, `nvidia-smi`, and reset or drain the node); nfs, fuse or block frames at storage",
        "Load models from local disk (copy the weights off network storage) if the blocked task reads them",
    ],
    source: "https://docs.kernel.org/admin-guide/sysctl/kernel.html (hung_task_timeout_secs); torvalds/linux: \
             kernel/hung_task.c (the `INFO: task NAME:PID blocked for more than N seconds.` report); \
             NVIDIA/k8s-device-plugin#77 (a task hung in nvidia_uvm)",
};

const CONTAINER_RESTARTS: Rule = Rule {
    id: "k8s.container_restarts",
    symptom: Symptom::Host,
    why: "The kubelet restarts a container that exits or exceeds its memory limit (reason OOMKilled, exit code \
          137: the kernel killed it for the cgroup's limit, which counts host RAM, not GPU memory). Every restart \
          drops the requests in flight, reloads the weights and starts cold, and the server's metrics and log \
          begin again from zero, so only the pod's status remembers it. vLLM's host RAM is its processes, the \
          weights while they load, the CPU swap space (`--swap-space` GiB per GPU), weights offloaded to the CPU \
          (`--cpu-offload-gb` per GPU), KV offload, and a memory-backed /dev/shm emptyDir, which counts against \
          the limit too; `--gpu-memory-utilization` sizes GPU memory and does not change it.",
    remedies: &[
        "OOMKilled: raise the container's resources.limits.memory (and requests, for a Guaranteed pod) above the \
         server's host RAM at its peak, watched with `kubectl top pod` or the cgroup's memory.peak",
        "OOMKilled: or lower vLLM's host RAM: a smaller `--swap-space` (its CPU swap space per GPU), less \
         `--cpu-offload-gb` or `--kv-offloading-size`, a size limit on the /dev/shm emptyDir; fewer API server \
         processes (`--api-server-count`)",
        "Another reason: read why it ended in the previous container's log (`kubectl logs POD --previous`, the \
         bundle's logs/k8s-POD-previous.log) and the pod's events (`kubectl describe pod POD`)",
    ],
    source: "https://kubernetes.io/docs/concepts/configuration/manage-resources-containers/ (a container \
             exceeding its memory limit is terminated; OOMKilled); https://kubernetes.io/docs/concepts/storage/volumes/#emptydir \
             (a memory-backed emptyDir counts against the container's memory limit); \
             https://docs.vllm.ai/en/latest/configuration/engine_args.html (--swap-space, --cpu-offload-gb)",
};

pub(crate) fn assess(facts: &Facts, t: &Thresholds) -> Vec<Assessment> {
    let host = facts.evidence.host.as_ref();
    vec![
        swap_active(host, t),
        cpu_governor(host),
        cpu_throttled(host, t),
        numa_mismatch(host, facts),
        api_server_cpu_bound(facts, t),
        oom_killed(facts),
        hung_tasks(facts),
        container_restarts(facts.evidence.pod.as_ref()),
    ]
}

/// The process names the kernel gives an inference server's own processes (at most 15 characters): vLLM's
/// renamed engine and worker processes and the native servers. A plain `python3` could be anything on the host;
/// the server's Python process is known by its pid when collect found it.
const ENGINE_PROCESS_PREFIXES: [&str; 7] = [
    "VLLM::",
    "vllm",
    "ray::",
    "sglang",
    "llama-server",
    "text-generation",
    "trtllm",
];

/// Whether a killed or stuck process is the server's: its pid when collect found the server, else its name.
fn is_server_process(facts: &Facts, pid: u32, name: &str) -> bool {
    facts
        .evidence
        .server_threads
        .as_ref()
        .is_some_and(|server| server.pid == pid)
        || ENGINE_PROCESS_PREFIXES
            .iter()
            .any(|prefix| name.starts_with(prefix))
}

/// The kernel log's OOM kills, and the server cgroup's own count of them (`memory.events`).
fn oom_killed(facts: &Facts) -> Assessment {
    let kernel = facts.evidence.kernel.as_ref();
    let cgroup = facts.evidence.host.as_ref().and_then(|h| h.cgroup.as_ref());
    let counted = cgroup.and_then(|c| c.oom_kills.map(|kills| (c, kills)));
    if kernel.is_none() && counted.is_none() {
        return OOM_KILLED.unknown(
            "the GPU host's kernel log or the server's cgroup",
            how::KERNEL_LOG,
        );
    }
    let kills = kernel.map_or(&[][..], |k| k.oom_kills.as_slice());
    let mut evidence: Vec<Observation> = kills
        .iter()
        .map(|k| {
            seen(
                format!("OOM kill of {} (pid {}): resident MiB", k.process, k.pid),
                k.anon_rss_bytes.map_or(f64::NAN, |b| b as f64 / MIB),
                &k.seen,
            )
        })
        .collect();
    let mut told: Vec<String> = kills
        .iter()
        .map(|k| {
            let cause = if k.cgroup_limit {
                "a cgroup's memory limit"
            } else {
                "the host's memory"
            };
            let rss = k
                .anon_rss_bytes
                .map(|b| format!(" at {:.1} GiB resident", b as f64 / (1024.0 * MIB)))
                .unwrap_or_default();
            format!(
                "{} (pid {}) killed{rss} when {cause} ran out ({})",
                k.process, k.pid, k.seen
            )
        })
        .collect();
    if let Some((cgroup, count)) = counted.filter(|(_, count)| *count > 0) {
        let limit = cgroup
            .memory_max_bytes
            .map(|b| format!(", memory.max {:.1} GiB", b as f64 / (1024.0 * MIB)))
            .unwrap_or_default();
        told.push(format!(
            "{count} OOM kill{} in the server's cgroup {}{limit} (the kernel log names the processes)",
            if count == 1 { "" } else { "s" },
            cgroup.path
        ));
        evidence.push(seen(
            "OOM kills in the server's cgroup (memory.events oom_kill)".to_string(),
            count as f64,
            &cgroup.path,
        ));
    }
    if told.is_empty() {
        let mut read: Vec<String> = kernel.map(|k| k.sources.clone()).unwrap_or_default();
        read.extend(counted.map(|(c, _)| format!("memory.events of {}", c.path)));
        return OOM_KILLED.passes(format!("no OOM kill in {}", read.join(", ")));
    }
    // Only the kernel log names its victims. The cgroup's counter says kills happened in the server's cgroup
    // since it was created, which for a shell's scope may predate the server: a warning until a victim is named.
    let server_killed = kills
        .iter()
        .any(|k| is_server_process(facts, k.pid, &k.process));
    let severity = if server_killed {
        Severity::Critical
    } else {
        Severity::Warning
    };
    OOM_KILLED.fires(severity, Confidence::High, told.join("; "), evidence)
}

/// Tasks the hung-task watchdog reported: a warning, critical when one is the server's and stuck in the GPU
/// driver.
fn hung_tasks(facts: &Facts) -> Assessment {
    let Some(kernel) = facts.evidence.kernel.as_ref() else {
        return HUNG_TASKS.unknown("the GPU host's kernel log", how::KERNEL_LOG);
    };
    if kernel.hung_tasks.is_empty() {
        return HUNG_TASKS.passes(format!("no hung task in {}", kernel.sources.join(", ")));
    }
    let told: Vec<String> = kernel
        .hung_tasks
        .iter()
        .map(|t| {
            let driver = if t.in_gpu_driver {
                " in the NVIDIA driver"
            } else {
                ""
            };
            let times = if t.count > 1 {
                format!(", reported {} times", t.count)
            } else {
                String::new()
            };
            format!(
                "{} (pid {}) blocked over {} s{driver}{times}",
                t.process, t.pid, t.blocked_s
            )
        })
        .collect();
    let evidence = kernel
        .hung_tasks
        .iter()
        .map(|t| {
            seen(
                format!("hung task {} (pid {}): seconds blocked", t.process, t.pid),
                t.blocked_s as f64,
                &t.first_seen,
            )
        })
        .collect();
    let wedged = kernel
        .hung_tasks
        .iter()
        .any(|t| t.in_gpu_driver && is_server_process(facts, t.pid, &t.process));
    let severity = if wedged {
        Severity::Critical
    } else {
        Severity::Warning
    };
    HUNG_TASKS.fires(severity, Confidence::High, told.join("; "), evidence)
}

/// A container of the server's pod that the kubelet restarted: critical when the last run was killed for
/// memory, since then it will be again under the same load.
fn container_restarts(pod: Option<&PodFacts>) -> Assessment {
    let Some(pod) = pod else {
        return CONTAINER_RESTARTS.unknown("the server's pod (kubectl get pod -o json)", how::POD);
    };
    let restarted: Vec<_> = pod
        .containers
        .iter()
        .filter(|c| {
            c.restart_count.unwrap_or(0) > 0
                || c.state
                    .as_deref()
                    .is_some_and(|s| s.starts_with("terminated"))
        })
        .collect();
    if restarted.is_empty() {
        let counted = pod
            .containers
            .iter()
            .filter(|c| c.restart_count.is_some())
            .count();
        if counted == 0 {
            return CONTAINER_RESTARTS.unknown(
                &format!("pod {}'s container statuses (not started yet?)", pod.name),
                how::POD,
            );
        }
        return CONTAINER_RESTARTS.passes(format!(
            "pod {}: no restarts in {counted} container(s)",
            pod.name
        ));
    }
    let mut severity = Severity::Warning;
    let mut verdicts = Vec::new();
    let mut evidence = Vec::new();
    for container in restarted {
        let restarts = container.restart_count.unwrap_or(0);
        evidence.push(seen(
            format!("container {} restarts", container.name),
            restarts as f64,
            &pod.source,
        ));
        let ended = container.last_termination.as_ref();
        let reason = ended.and_then(|e| e.reason.as_deref());
        let code = ended
            .and_then(|e| e.exit_code)
            .map(|c| format!(", exit code {c}"))
            .unwrap_or_default();
        let when = ended
            .and_then(|e| e.finished_at.as_deref())
            .map(|t| format!(" at {t}"))
            .unwrap_or_default();
        let last = match reason {
            Some("OOMKilled") => {
                severity = Severity::Critical;
                let limit = match &container.memory_limit {
                    Some(limit) => format!("its memory limit of {limit}"),
                    None => "memory (no limit set: the node's own)".to_string(),
                };
                format!("last killed for exceeding {limit}{code}{when}")
            }
            Some(reason) => format!("last ended: {reason}{code}{when}"),
            None if ended.is_some() => format!("last ended{code}{when}"),
            None => "how it last ended is not recorded".to_string(),
        };
        let now = container
            .state
            .as_deref()
            .map(|s| format!("; now {s}"))
            .unwrap_or_default();
        let what = match restarts {
            0 => "ended (not restarted)".to_string(),
            n => format!("restarted {n} time(s)"),
        };
        verdicts.push(format!(
            "container {} of pod {} {what}, {last}{now}",
            container.name, pod.name
        ));
    }
    CONTAINER_RESTARTS.fires(severity, Confidence::High, verdicts.join("; "), evidence)
}

/// The busiest thread of the server process at a full core, and requests held before the engine: the front
/// end is the bottleneck. A hot thread with the engine holding the requests is the engine's own busy loop.
fn api_server_cpu_bound(facts: &Facts, t: &Thresholds) -> Assessment {
    let Some(threads) = facts.evidence.server_threads.as_ref() else {
        return API_SERVER_CPU_BOUND.unknown(
            "the server process's per-thread CPU over the probe",
            "run `infer-doctor collect --url URL` on the GPU host (it finds the server by its port or name, or              give --pid) and pass its bundle",
        );
    };
    let window = format!(
        "pid {} ({}), {:.0} s around the probe",
        threads.pid, threads.found_by, threads.window_s
    );
    let Some(busiest) = threads.threads.first() else {
        return API_SERVER_CPU_BOUND
            .unknown("any thread of the server process", "run collect again");
    };
    let hot = format!(
        "thread {} ({}) used {:.0}% of a core",
        busiest.tid, busiest.name, busiest.core_percent
    );
    if busiest.core_percent < t.host_thread_core_percent {
        return API_SERVER_CPU_BOUND.passes(format!("the busiest, {hot}"));
    }
    let held = crate::upstream::upstream(facts, t);
    let thread_evidence = compared(
        format!(
            "CPU of thread {} ({}) (% of a core)",
            busiest.tid, busiest.name
        ),
        busiest.core_percent,
        ">=",
        t.host_thread_core_percent,
        &window,
    );
    match held.status {
        CheckStatus::Fail => {
            let mut evidence = vec![thread_evidence];
            evidence.extend(held.finding.into_iter().flat_map(|f| f.evidence));
            API_SERVER_CPU_BOUND.fires(
                Severity::Warning,
                Confidence::High,
                format!(
                    "the server's front end is CPU-bound: {hot} while {}",
                    held.detail
                ),
                evidence,
            )
        }
        CheckStatus::Pass => API_SERVER_CPU_BOUND.passes(format!(
            "{hot}, but the engine holds the requests ({})",
            held.detail
        )),
        CheckStatus::Unknown => API_SERVER_CPU_BOUND
            .fires(
                Severity::Info,
                Confidence::Low,
                format!("{hot}; whether requests wait before the engine is not known"),
                vec![thread_evidence],
            )
            .unsettled(
                held.detail.trim_start_matches("not checked: "),
                held.how_to_know.as_deref().unwrap_or(how::LOADED_PROBE),
            ),
    }
}

const MIB: f64 = 1024.0 * 1024.0;

fn swap_active(host: Option<&HostFacts>, t: &Thresholds) -> Assessment {
    let Some(used) = host.and_then(|h| h.swap_used_bytes) else {
        return SWAP_ACTIVE.unknown("swap use on the GPU host (/proc/meminfo)", how::HOST);
    };
    let used_mib = used as f64 / MIB;
    let total = host
        .and_then(|h| h.swap_total_bytes)
        .map(|total| format!(" of {:.0} MiB", total as f64 / MIB))
        .unwrap_or_default();
    if used_mib <= t.host_swap_used_mib {
        return SWAP_ACTIVE.passes(format!("{used_mib:.0} MiB of swap in use{total}"));
    }
    let stall = host
        .and_then(|h| h.pressure.memory.as_ref())
        .and_then(|m| m.some_avg10);
    let mut evidence = vec![compared(
        "swap used (MiB)",
        used_mib,
        ">",
        t.host_swap_used_mib,
        "/proc/meminfo",
    )];
    let (severity, pressure) = match stall {
        // Pages parked in swap that nothing waits for cost nothing now: a note.
        Some(stall) if stall <= t.host_memory_stall_percent => (
            Severity::Info,
            format!("; no task stalled on memory in the last 10 s ({stall:.2}%)"),
        ),
        Some(stall) => {
            evidence.push(compared(
                "memory pressure some avg10 (%)",
                stall,
                ">",
                t.host_memory_stall_percent,
                "/proc/pressure/memory",
            ));
            (
                Severity::Warning,
                format!("; tasks stalled on memory {stall:.2}% of the last 10 s"),
            )
        }
        None => (Severity::Warning, "; memory pressure not read".to_string()),
    };
    SWAP_ACTIVE.fires(
        severity,
        Confidence::Medium,
        format!("{used_mib:.0} MiB of swap in use{total}{pressure}"),
        evidence,
    )
}

/// Governors that keep cores below their top frequency or raise it only after load has lasted.
const SLOW_GOVERNORS: [&str; 3] = ["powersave", "ondemand", "conservative"];

fn cpu_governor(host: Option<&HostFacts>) -> Assessment {
    let Some(governors) = host.and_then(|h| h.governors.as_ref()) else {
        return CPU_GOVERNOR.unknown(
            "the cores' cpufreq governors (none exposed: most VMs and some BIOS settings hide them)",
            how::HOST,
        );
    };
    let mut cores: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
    for (core, governor) in governors {
        cores.entry(governor.as_str()).or_default().push(*core);
    }
    let summary = |slow_only: bool| -> Vec<String> {
        cores
            .iter()
            .filter(|(governor, _)| !slow_only || SLOW_GOVERNORS.contains(governor))
            .map(|(governor, list)| {
                format!("{governor} on {} of {} cores", list.len(), governors.len())
            })
            .collect()
    };
    let slow = summary(true);
    if slow.is_empty() {
        return CPU_GOVERNOR.passes(summary(false).join(", "));
    }
    let evidence = cores
        .iter()
        .filter(|(governor, _)| SLOW_GOVERNORS.contains(governor))
        .map(|(governor, list)| {
            seen(
                format!("cores with the {governor} governor"),
                list.len() as f64,
                "/sys/devices/system/cpu/cpu*/cpufreq/scaling_governor",
            )
        })
        .collect();
    // The driver decides what `powersave` means (intel_pstate scales with load), and the facts do not say which.
    CPU_GOVERNOR.fires(
        Severity::Warning,
        Confidence::Medium,
        slow.join(", "),
        evidence,
    )
}

fn cpu_throttled(host: Option<&HostFacts>, t: &Thresholds) -> Assessment {
    let cgroup = host.and_then(|h| h.cgroup.as_ref());
    let Some((periods, throttled)) = cgroup.and_then(|c| c.nr_periods.zip(c.nr_throttled)) else {
        return CPU_THROTTLED.unknown(
            "the server's cgroup CPU statistics (cgroup v2 cpu.stat)",
            how::SERVER_PROCESS,
        );
    };
    let quota = cgroup
        .and_then(|c| c.cpu_quota_us.zip(c.cpu_period_us))
        .map(|(quota, period)| {
            format!("a quota of {:.1} CPUs", quota as f64 / period.max(1) as f64)
        })
        .unwrap_or_else(|| "no CPU quota".to_string());
    if periods == 0 {
        return CPU_THROTTLED.passes(format!("{quota}; no quota period counted"));
    }
    let share = throttled as f64 / periods as f64;
    let detail = format!(
        "{} of {periods} periods throttled ({}) under {quota}, since the cgroup started",
        throttled,
        percent(share)
    );
    if share <= t.host_cpu_throttled_share {
        return CPU_THROTTLED.passes(detail);
    }
    // The counters cover the cgroup's whole life, not only the probe's window.
    CPU_THROTTLED.fires(
        Severity::Warning,
        Confidence::Medium,
        detail,
        vec![compared(
            "throttled share of cpu periods",
            share,
            ">",
            t.host_cpu_throttled_share,
            "cgroup cpu.stat",
        )],
    )
}

fn numa_mismatch(host: Option<&HostFacts>, facts: &Facts) -> Assessment {
    let Some(host) = host else {
        return NUMA_MISMATCH.unknown("the GPU host's facts", how::HOST);
    };
    // The server's own CUDA_VISIBLE_DEVICES names its GPUs, by index in bus order (nvidia-smi's, and CUDA's on
    // a host of one GPU model); without it, every GPU of the host may be the server's.
    let server_gpus = visible_gpu_indices(facts.evidence)
        .filter(|(indices, from_server)| {
            *from_server
                && indices
                    .iter()
                    .all(|i| (*i as usize) < host.pci_devices.len())
        })
        .map(|(indices, _)| indices);
    let gpu_nodes: BTreeSet<u32> = host
        .pci_devices
        .iter()
        .enumerate()
        .filter(|(index, _)| {
            server_gpus
                .as_ref()
                .is_none_or(|visible| visible.contains(&(*index as u32)))
        })
        .filter_map(|(_, d)| d.numa_node)
        .collect();
    let Some(nodes) = host.numa_nodes.as_ref().filter(|_| !gpu_nodes.is_empty()) else {
        return NUMA_MISMATCH.unknown(
            "the NUMA nodes and the GPUs' node (sysfs numa_node; -1 where the host does not say)",
            how::HOST,
        );
    };
    if nodes.len() == 1 {
        return NUMA_MISMATCH
            .passes("one NUMA node: the server's CPUs and memory are local to its GPUs".into());
    }
    let Some(server_cpus) = &host.server_cpus else {
        return NUMA_MISMATCH.unknown("the server process's allowed CPUs", how::SERVER_PROCESS);
    };
    let cpu_nodes: BTreeSet<u32> = server_cpus
        .iter()
        .filter_map(|cpu| host.node_of_cpu(*cpu))
        .collect();
    let memory_nodes: Option<BTreeSet<u32>> = host
        .server_memory_nodes
        .as_ref()
        .map(|list| list.iter().copied().collect());
    let list = |set: &BTreeSet<u32>| {
        set.iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let gpus = format!("its GPUs are on node {}", list(&gpu_nodes));
    let window = "/proc/PID/status, /sys/bus/pci/devices/*/numa_node";
    let mut problems: Vec<(Severity, String)> = Vec::new();
    if cpu_nodes.is_disjoint(&gpu_nodes) {
        problems.push((
            Severity::Warning,
            format!(
                "the server may run only on CPUs of node {}",
                list(&cpu_nodes)
            ),
        ));
    } else if !cpu_nodes.is_subset(&gpu_nodes) {
        // Unbound: the scheduler may put it anywhere, local or not.
        problems.push((
            Severity::Info,
            format!(
                "the server is not bound: its CPUs span node {}",
                list(&cpu_nodes)
            ),
        ));
    }
    if let Some(memory) = memory_nodes.as_ref().filter(|m| m.is_disjoint(&gpu_nodes)) {
        problems.push((
            Severity::Warning,
            format!("the server allocates memory only on node {}", list(memory)),
        ));
    }
    let Some(severity) = problems.iter().map(|(s, _)| *s).min() else {
        // The host's GPUs span several nodes and which of them the server drives is not in the evidence: its
        // CPUs being on one of those nodes does not make them local to its own GPUs.
        if gpu_nodes.len() > 1 {
            return NUMA_MISMATCH.unknown(
                &format!(
                    "which of the host's GPUs the server uses (the GPUs span node {}; its CPUs are on node {})",
                    list(&gpu_nodes),
                    list(&cpu_nodes)
                ),
                how::SERVER_PROCESS,
            );
        }
        return NUMA_MISMATCH.passes(format!(
            "the server's CPUs are on node {}; {gpus}",
            list(&cpu_nodes)
        ));
    };
    let verdict: Vec<String> = problems.into_iter().map(|(_, p)| p).collect();
    NUMA_MISMATCH.fires(
        severity,
        Confidence::High,
        format!("{}; {gpus}", verdict.join("; ")),
        host.pci_devices
            .iter()
            .filter_map(|gpu| {
                Some(seen(
                    format!("gpu {} numa node", gpu.bus_id),
                    gpu.numa_node? as f64,
                    window,
                ))
            })
            .chain(cpu_nodes.iter().map(|node| {
                let cpus = server_cpus
                    .iter()
                    .filter(|cpu| host.node_of_cpu(**cpu) == Some(*node))
                    .count();
                seen(
                    format!("server cpus on numa node {node}"),
                    cpus as f64,
                    window,
                )
            }))
            .collect(),
    )
}
