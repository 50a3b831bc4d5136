//! One GPU's health at one moment, whichever nvidia-smi output it was read from, so the playbook can tell a
//! throttled, failing or badly linked GPU from a server that is merely busy. `None` means the source did not say.

/// Why the driver holds the clocks below their maximum (nvidia-smi's "clocks event reasons", formerly
/// "clocks throttle reasons"; the bits of NVML's `nvmlClocksEventReasons`).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum ClockReason {
    GpuIdle,
    ApplicationsClocksSetting,
    SwPowerCap,
    HwSlowdown,
    SyncBoost,
    SwThermalSlowdown,
    HwThermalSlowdown,
    HwPowerBrakeSlowdown,
    DisplayClockSetting,
}

impl ClockReason {
    /// In NVML's bit order: bit `i` of the `clocks_event_reasons.active` mask is `ALL[i]`.
    pub const ALL: [ClockReason; 9] = [
        ClockReason::GpuIdle,
        ClockReason::ApplicationsClocksSetting,
        ClockReason::SwPowerCap,
        ClockReason::HwSlowdown,
        ClockReason::SyncBoost,
        ClockReason::SwThermalSlowdown,
        ClockReason::HwThermalSlowdown,
        ClockReason::HwPowerBrakeSlowdown,
        ClockReason::DisplayClockSetting,
    ];

    /// The name nvidia-smi's CSV and XML use, after their `clocks_event_reason(s)_` prefix.
    pub fn name(self) -> &'static str {
        match self {
            ClockReason::GpuIdle => "gpu_idle",
            ClockReason::ApplicationsClocksSetting => "applications_clocks_setting",
            ClockReason::SwPowerCap => "sw_power_cap",
            ClockReason::HwSlowdown => "hw_slowdown",
            ClockReason::SyncBoost => "sync_boost",
            ClockReason::SwThermalSlowdown => "sw_thermal_slowdown",
            ClockReason::HwThermalSlowdown => "hw_thermal_slowdown",
            ClockReason::HwPowerBrakeSlowdown => "hw_power_brake_slowdown",
            ClockReason::DisplayClockSetting => "display_clock_setting",
        }
    }

    /// A slowdown the hardware or the thermal protection imposed, as opposed to idling, a cap someone set or
    /// a clock someone chose.
    pub fn is_protective(self) -> bool {
        matches!(
            self,
            ClockReason::HwSlowdown
                | ClockReason::HwThermalSlowdown
                | ClockReason::HwPowerBrakeSlowdown
                | ClockReason::SwThermalSlowdown
        )
    }
}

#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct GpuState {
    /// The PCI bus id (`00000000:00:09.0`), which names a GPU in every nvidia-smi output.
    pub bus_id: String,
    pub name: String,
    /// Where the facts came from: the file, and which nvidia-smi output it holds.
    pub source: String,
    /// Percent of the last sample period a kernel ran (N/A under MIG).
    pub utilization_percent: Option<f64>,
    pub memory_used_mib: Option<f64>,
    pub memory_total_mib: Option<f64>,
    pub power_draw_watts: Option<f64>,
    /// The limit the driver enforces now, and the board's default.
    pub power_limit_watts: Option<f64>,
    pub default_power_limit_watts: Option<f64>,
    pub sm_clock_mhz: Option<f64>,
    pub max_sm_clock_mhz: Option<f64>,
    pub temperature_c: Option<f64>,
    /// `None` when the source lists no reasons; empty when none is active.
    pub clock_reasons: Option<Vec<ClockReason>>,
    pub ecc_uncorrected_volatile: Option<f64>,
    pub ecc_corrected_volatile: Option<f64>,
    /// Row remapping (Ampere and later): a remap waiting for a GPU reset, or one that failed (NVIDIA's RMA
    /// criterion).
    pub remapped_rows_pending: Option<bool>,
    pub remapped_rows_failure: Option<bool>,
    /// Page retirement (before Ampere): pages waiting for a reboot to be retired.
    pub retired_pages_pending: Option<bool>,
    /// A channel or TPC repair waiting for a reset, and memory the GPU cannot repair (driver 570+).
    pub memory_repair_pending: Option<bool>,
    pub unrepairable_memory: Option<bool>,
    /// The driver asks for a GPU reset, or to drain the GPU and reset it.
    pub reset_required: Option<bool>,
    pub pcie_gen: Option<f64>,
    pub pcie_gen_max: Option<f64>,
    pub pcie_width: Option<f64>,
    pub pcie_width_max: Option<f64>,
    pub persistence_mode: Option<bool>,
    pub mig_enabled: Option<bool>,
    /// The driver's recommended recovery (driver 570+): `None` when healthy, else e.g. `Reset`, `Reboot`.
    pub recovery_action: Option<String>,
}

impl GpuState {
    /// Whether a reason is active; `None` when the source lists no reasons.
    pub fn clock_reason(&self, reason: ClockReason) -> Option<bool> {
        self.clock_reasons.as_ref().map(|r| r.contains(&reason))
    }
}

/// An XID the NVIDIA driver wrote to the kernel log: a GPU fault, or an application's fault seen by the driver.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct XidEvent {
    /// The PCI address as the kernel wrote it (`0000:44:00`).
    pub bus_id: String,
    pub code: u32,
    /// The driver's words after the code (`GPU has fallen off the bus`).
    pub message: String,
    /// How many times the same code was logged for the same GPU.
    pub count: u64,
    /// The file and line of the first one.
    pub first_seen: String,
}

/// What the GPU host's kernel log says about its GPUs and its memory: the driver's XIDs, the processes the OOM
/// killer ended, and the tasks the hung-task watchdog found stuck.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct KernelFacts {
    /// The kernel logs read, so "no XID" names where it looked.
    pub sources: Vec<String>,
    pub xids: Vec<XidEvent>,
    pub oom_kills: Vec<OomKill>,
    pub hung_tasks: Vec<HungTask>,
}

impl KernelFacts {
    /// Adds what another kernel log of the same host says. Two logs of one host overlap (`journalctl -k` and
    /// `/var/log/kern.log` hold the same lines), so an event both tell of counts once, at the larger count.
    pub fn absorb(&mut self, other: KernelFacts) {
        self.sources.extend(other.sources);
        for xid in other.xids {
            match self
                .xids
                .iter_mut()
                .find(|x| x.bus_id == xid.bus_id && x.code == xid.code)
            {
                Some(seen) => seen.count = seen.count.max(xid.count),
                None => self.xids.push(xid),
            }
        }
        for kill in other.oom_kills {
            if !self
                .oom_kills
                .iter()
                .any(|k| k.pid == kill.pid && k.process == kill.process)
            {
                self.oom_kills.push(kill);
            }
        }
        for task in other.hung_tasks {
            match self.hung_tasks.iter_mut().find(|t| t.pid == task.pid) {
                Some(seen) => {
                    seen.count = seen.count.max(task.count);
                    seen.blocked_s = seen.blocked_s.max(task.blocked_s);
                    seen.in_gpu_driver |= task.in_gpu_driver;
                }
                None => self.hung_tasks.push(task),
            }
        }
    }
}

/// A process the kernel's OOM killer ended (`Out of memory: Killed process PID (NAME) … anon-rss:…kB`).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct OomKill {
    pub pid: u32,
    /// The process name as the kernel keeps it (at most 15 characters: `python3`, `VLLM::EngineCor`).
    pub process: String,
    /// Its resident anonymous memory when killed.
    pub anon_rss_bytes: Option<u64>,
    /// A cgroup's memory limit (a container's) ran out, not the host's memory.
    pub cgroup_limit: bool,
    /// The file and line.
    pub seen: String,
}

/// A task in uninterruptible sleep past the hung-task timeout (`INFO: task NAME:PID blocked for more than N
/// seconds.`): stuck on storage, a lock or a driver.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct HungTask {
    pub pid: u32,
    pub process: String,
    /// The longest block reported.
    pub blocked_s: u64,
    /// How many reports named this task.
    pub count: u64,
    /// Its stack, printed after the report, runs through the NVIDIA driver (`[nvidia]`, `[nvidia_uvm]`): the GPU
    /// driver, not storage, holds it.
    pub in_gpu_driver: bool,
    /// The file and line of the first report.
    pub first_seen: String,
}

/// A PCIe path between two GPUs as `nvidia-smi topo -m` names it, best to worst: at most one bridge, several
/// bridges, through the host bridge (CPU), between host bridges of one NUMA node, across NUMA nodes.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "UPPERCASE")]
pub enum PciePath {
    Pix,
    Pxb,
    Phb,
    Node,
    Sys,
}

/// How one GPU reaches another.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GpuLink {
    /// A bonded set of this many NVLinks (`NV18`).
    NvLink(u32),
    Pcie(PciePath),
}

/// One GPU's row of the topology matrix.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TopologyGpu {
    /// `GPU0`, as the matrix names it (the index nvidia-smi and CUDA_VISIBLE_DEVICES use).
    pub name: String,
    /// To every other GPU of the matrix, by name.
    pub links: Vec<(String, GpuLink)>,
    /// The CPUs near it, a cpulist (`0-55,112-167`).
    pub cpu_affinity: Option<String>,
    pub numa_node: Option<u32>,
}

/// `nvidia-smi topo -m`: how the host's GPUs reach each other and which CPUs are near each.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct GpuTopology {
    pub source: String,
    pub gpus: Vec<TopologyGpu>,
}

/// One NVLink of a GPU: its speed, or `None` when it is inactive.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct NvLinkLane {
    pub link: u32,
    pub speed_gb_per_s: Option<f64>,
}

/// One GPU's NVLinks as `nvidia-smi nvlink -s` lists them.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct GpuNvLinks {
    pub index: u32,
    pub name: String,
    pub links: Vec<NvLinkLane>,
    /// nvidia-smi said every link is inactive instead of listing them (`all links are inActive`).
    #[serde(default)]
    pub all_inactive: bool,
}

/// One NVLink's error counters as `nvidia-smi nvlink -e` lists them, by the driver's own names: `Replay Errors`,
/// `Recovery Errors`, `CRC Errors` up to Hopper; `Rx Errors`, `Link recovery successful events`, `Tx packets` and
/// more on Blackwell drivers, which dropped the older names.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct NvLinkErrorCounters {
    pub link: u32,
    pub counters: std::collections::BTreeMap<String, u64>,
}

/// One GPU's NVLink error counters (`nvidia-smi nvlink -e`); no links where every link is inactive.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct GpuNvLinkErrors {
    pub index: u32,
    pub name: String,
    pub links: Vec<NvLinkErrorCounters>,
}

/// What `vllm collect-env` (`python -m vllm.collect_env`) printed on the GPU host, as pasted into a ticket.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EnvFacts {
    pub source: String,
    pub vllm_version: Option<String>,
    pub torch_version: Option<String>,
    pub cuda_runtime: Option<String>,
    pub driver_version: Option<String>,
    /// `GPU 0: NVIDIA H100 80GB HBM3` → `NVIDIA H100 80GB HBM3`, in index order.
    pub gpu_models: Vec<String>,
    pub cpu_model: Option<String>,
    pub numa_nodes: Option<u32>,
    /// The environment variables it listed, values whose names say KEY, TOKEN, SECRET or PASSWORD replaced.
    pub variables: std::collections::BTreeMap<String, String>,
    /// The variables are the server process's own (`collect --pid`), not those of the shell collect-env ran in.
    #[serde(default)]
    pub server_process: bool,
}

/// What DCGM's own diagnostic (`dcgmi diag`) concluded on the GPU host, with the file it was read from: the
/// driver-level checks nvidia-smi's counters do not run (deployment, memory, PCIe, stress).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DcgmDiag {
    pub source: String,
    pub tests: Vec<DiagTest>,
}

/// One test's verdict on one GPU, or on all of them where DCGM gave one verdict for the host (the deployment
/// checks).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DiagTest {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu: Option<u32>,
    pub outcome: DiagOutcome,
    /// DCGM's own words on why it did not pass (its warnings and info), when it said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// A test's verdict, declared from best to worst so the worst of several is their maximum.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum DiagOutcome {
    Pass,
    Skip,
    Warn,
    Fail,
}
