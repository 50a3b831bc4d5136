//! The GPU host's own facts — CPUs, NUMA, memory, pressure, cgroup limits — as read from /proc and /sys, so the
//! playbook can tell a slow server from a host that swaps, throttles or places the server far from its GPUs.

use std::collections::BTreeMap;

/// What the host said about itself; every `None` is "not read" (absent, unreadable or malformed), never "fine".
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct HostFacts {
    /// The root the facts were read under (`/` on the host itself), so a report names where it looked.
    pub source: String,
    pub kernel: Option<String>,
    pub cpu_model: Option<String>,
    pub logical_cores: Option<u32>,
    /// Whether simultaneous multithreading (hyper-threading) is on.
    pub smt_active: Option<bool>,
    /// The cpufreq governor of each core that has one; `None` where the host exposes no cpufreq (most VMs).
    pub governors: Option<BTreeMap<u32, String>>,
    pub numa_nodes: Option<Vec<NumaNode>>,
    /// The PCI devices asked about (the GPUs), in the order asked.
    pub pci_devices: Vec<PciDevice>,
    pub memory_total_bytes: Option<u64>,
    pub memory_available_bytes: Option<u64>,
    pub swap_total_bytes: Option<u64>,
    pub swap_used_bytes: Option<u64>,
    pub swappiness: Option<u32>,
    /// The selected transparent-huge-pages mode (`always`, `madvise`, `never`).
    pub transparent_hugepages: Option<String>,
    /// The 1, 5 and 15 minute load averages.
    pub load_average: Option<[f64; 3]>,
    pub pressure: Pressure,
    pub cgroup: Option<Cgroup>,
    /// The soft limit on open files (`None` also when it is unlimited).
    pub open_files_limit: Option<u64>,
    /// The container runtime whose marker was found (`docker`, `podman`, `containerd`, `kubernetes`); `None`
    /// when no marker was found.
    pub container: Option<String>,
    /// Whether the host runs the reader under Kubernetes (a service host set, or a kubepods cgroup).
    pub kubernetes: bool,
    /// The CPUs and memory nodes the server process may use (its `Cpus_allowed_list`, `Mems_allowed_list`),
    /// when the server process was found.
    pub server_cpus: Option<Vec<u32>>,
    pub server_memory_nodes: Option<Vec<u32>>,
    /// The server's resident memory, when the server process was found.
    pub server_memory: Option<ServerMemory>,
}

/// The resident memory of the server's process tree: vLLM's API server starts the engine core and the GPU
/// workers as processes of their own, which the main process's own RSS leaves out.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ServerMemory {
    /// The main process and every process under it.
    pub processes: u32,
    /// Their `VmRSS` summed (shared pages count once per process, as `ps` counts them).
    pub rss_bytes: u64,
    /// The main process's own peak (`VmHWM`).
    pub main_peak_rss_bytes: Option<u64>,
}

#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct NumaNode {
    pub id: u32,
    pub cpus: Vec<u32>,
    pub memory_total_bytes: Option<u64>,
}

/// One PCI device's place and link, as sysfs reports it.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PciDevice {
    /// The sysfs address (`0000:19:00.0`, lowercase, 4-digit domain).
    pub bus_id: String,
    /// `None` also when the kernel does not know (`-1`, as on most VMs).
    pub numa_node: Option<u32>,
    /// As sysfs writes them (`32.0 GT/s PCIe`).
    pub current_link_speed: Option<String>,
    pub max_link_speed: Option<String>,
    pub current_link_width: Option<u32>,
    pub max_link_width: Option<u32>,
}

/// Pressure stall information: the share of time (percent) some or all tasks waited for a resource.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Pressure {
    pub cpu: Option<PressureLine>,
    pub memory: Option<PressureLine>,
    pub io: Option<PressureLine>,
}

#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PressureLine {
    pub some_avg10: Option<f64>,
    pub some_avg60: Option<f64>,
    pub full_avg10: Option<f64>,
    pub full_avg60: Option<f64>,
}

/// The reader's cgroup (v2): its CPU quota and throttling, its memory limit and OOM kills.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Cgroup {
    /// The path under the cgroup root (`/kubepods/…`).
    pub path: String,
    /// `cpu.max`: microseconds of CPU per period; `None` quota is unlimited (`max`).
    pub cpu_quota_us: Option<u64>,
    pub cpu_period_us: Option<u64>,
    /// `cpu.stat`.
    pub nr_periods: Option<u64>,
    pub nr_throttled: Option<u64>,
    pub throttled_usec: Option<u64>,
    /// `memory.max`; `None` is unlimited or not read.
    pub memory_max_bytes: Option<u64>,
    /// `memory.events` `oom_kill`.
    pub oom_kills: Option<u64>,
}

impl HostFacts {
    /// The NUMA node a CPU belongs to, when the nodes were read.
    pub fn node_of_cpu(&self, cpu: u32) -> Option<u32> {
        self.numa_nodes
            .as_ref()?
            .iter()
            .find(|node| node.cpus.contains(&cpu))
            .map(|node| node.id)
    }
}

/// The server process's threads over the probe: a Python front end serves HTTP, tokenizes and detokenizes on
/// one thread, which can saturate one core while the GPU waits.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ServerThreads {
    pub pid: u32,
    /// How the process was found (`--pid`, the port it listens on, its name).
    pub found_by: String,
    /// The seconds between the two readings of the threads' CPU time.
    pub window_s: f64,
    /// Busiest first.
    pub threads: Vec<ThreadCpu>,
}

#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ThreadCpu {
    pub tid: u32,
    /// The thread's name (`comm`): `python3`, `uvicorn`, `tokenizers`, `VLLM::EngineCore`.
    pub name: String,
    /// CPU time over the window as a share of one core, in percent (100 = one core all the time).
    pub core_percent: f64,
}

/// The server's Kubernetes pod as `kubectl get pod -o json` described it: a container the kubelet restarted
/// (killed for memory above its limit, or crashed) is invisible in the server's own metrics, which start again
/// from zero with it.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct PodFacts {
    /// The file it was read from, so a finding names it.
    pub source: String,
    pub name: String,
    pub namespace: Option<String>,
    /// The node the pod was scheduled on.
    pub node: Option<String>,
    /// The pod's phase (`Running`, `Pending`, `Failed`).
    pub phase: Option<String>,
    pub containers: Vec<PodContainer>,
}

/// One container of the pod: what it runs and asks for (its spec) and how it has fared (its status).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct PodContainer {
    pub name: String,
    pub image: Option<String>,
    pub command: Vec<String>,
    pub args: Vec<String>,
    /// `resources.limits.memory` as the pod spec writes it (`64Gi`), and in bytes when it parses.
    pub memory_limit: Option<String>,
    pub memory_limit_bytes: Option<u64>,
    pub memory_request: Option<String>,
    /// `resources.limits["nvidia.com/gpu"]` (or another vendor's GPU resource).
    pub gpu_limit: Option<String>,
    /// `None` when the pod has no status for this container yet.
    pub restart_count: Option<u64>,
    /// `running`, `waiting` or `terminated`, with the reason where there is one (`waiting: CrashLoopBackOff`).
    pub state: Option<String>,
    /// How the previous run of the container ended, when it was restarted.
    pub last_termination: Option<Termination>,
}

/// A container run's end (`lastState.terminated`).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Termination {
    /// `OOMKilled`, `Error`, `Completed`, …
    pub reason: Option<String>,
    pub exit_code: Option<i64>,
    /// RFC 3339, as the API writes it.
    pub finished_at: Option<String>,
}
