//! The host's own facts read straight from /proc and /sys under a root directory, so `collect` needs no tool
//! installed and tests can point the same code at a fake root built from real files.

use std::collections::BTreeMap;
use std::path::Path;

use infer_doctor_core::{Cgroup, HostFacts, NumaNode, PciDevice, Pressure, PressureLine};

/// What the caller knows that the library must not read from its own environment.
#[derive(Clone, Debug, Default)]
pub struct HostQuery<'a> {
    /// The GPUs' PCI addresses in any spelling nvidia-smi or sysfs uses (`00000000:19:00.0`, `0000:19:00.0`).
    pub gpu_bus_ids: &'a [String],
    /// The value of `KUBERNETES_SERVICE_HOST` in the caller's environment.
    pub kubernetes_service_host: Option<&'a str>,
    /// The server process, for its CPU and memory-node placement.
    pub server_pid: Option<u32>,
}

/// Reads every host fact under `root` (`/` on the host itself). Nothing here fails: what cannot be read or
/// parsed stays `None`.
pub fn read_host(root: &Path, query: &HostQuery) -> HostFacts {
    let meminfo = read_text(root, "proc/meminfo")
        .map(|text| meminfo_bytes(&text))
        .unwrap_or_default();
    let cpuinfo = read_text(root, "proc/cpuinfo");
    // The server's own cgroup and limits: the collector may run elsewhere (an ssh session on the node, another
    // container), so without the server's pid these stay unknown rather than describe the collector.
    let server = query.server_pid.map(|pid| format!("proc/{pid}"));
    let of_server = |file: &str| {
        server
            .as_ref()
            .and_then(|dir| read_text(root, &format!("{dir}/{file}")))
    };
    let cgroup_lines = of_server("cgroup").unwrap_or_default();
    let (server_cpus, server_memory_nodes) = query
        .server_pid
        .map(|pid| placement(root, pid))
        .unwrap_or_default();
    let server_memory = query
        .server_pid
        .and_then(|pid| crate::process::tree_memory(root, pid));
    HostFacts {
        source: root.display().to_string(),
        kernel: read_text(root, "proc/sys/kernel/osrelease"),
        cpu_model: cpuinfo.as_deref().and_then(cpu_model),
        logical_cores: read_text(root, "sys/devices/system/cpu/online")
            .and_then(|list| cpu_list(&list))
            .map(|cpus| cpus.len() as u32)
            // Some container runtimes mask /sys/devices/system/cpu; cpuinfo still lists the processors.
            .or_else(|| {
                let count = cpuinfo
                    .as_deref()?
                    .lines()
                    .filter_map(|line| line.split_once(':'))
                    .filter(|(key, n)| key.trim() == "processor" && n.trim().parse::<u32>().is_ok())
                    .count();
                (count > 0).then_some(count as u32)
            }),
        smt_active: read_number(root, "sys/devices/system/cpu/smt/active").map(|on: u8| on == 1),
        governors: governors(root),
        numa_nodes: numa_nodes(root),
        pci_devices: query
            .gpu_bus_ids
            .iter()
            .map(|id| pci_device(root, id))
            .collect(),
        memory_total_bytes: meminfo.get("MemTotal").copied(),
        memory_available_bytes: meminfo.get("MemAvailable").copied(),
        swap_total_bytes: meminfo.get("SwapTotal").copied(),
        swap_used_bytes: meminfo
            .get("SwapTotal")
            .zip(meminfo.get("SwapFree"))
            .map(|(total, free)| total.saturating_sub(*free)),
        swappiness: read_number(root, "proc/sys/vm/swappiness"),
        transparent_hugepages: read_text(root, "sys/kernel/mm/transparent_hugepage/enabled")
            .and_then(|modes| bracketed(&modes)),
        load_average: read_text(root, "proc/loadavg").and_then(|text| load_average(&text)),
        pressure: Pressure {
            cpu: read_text(root, "proc/pressure/cpu").and_then(|text| pressure(&text)),
            memory: read_text(root, "proc/pressure/memory").and_then(|text| pressure(&text)),
            io: read_text(root, "proc/pressure/io").and_then(|text| pressure(&text)),
        },
        cgroup: cgroup(root, &cgroup_lines),
        open_files_limit: of_server("limits").and_then(|text| open_files(&text)),
        container: container(root, &cgroup_lines),
        kubernetes: query
            .kubernetes_service_host
            .is_some_and(|host| !host.trim().is_empty())
            || cgroup_lines.contains("kubepods"),
        server_cpus,
        server_memory_nodes,
        server_memory,
    }
}

/// A file's text, trimmed; `None` when it is missing, unreadable, not UTF-8 or empty.
pub(crate) fn read_text(root: &Path, relative: &str) -> Option<String> {
    std::fs::read_to_string(root.join(relative))
        .ok()
        .map(|text| text.trim().to_string())
        .filter(|text| !text.is_empty())
}

fn read_number<T: std::str::FromStr>(root: &Path, relative: &str) -> Option<T> {
    read_text(root, relative)?.parse().ok()
}

/// The first value of `key` in a `key<sep>value` text (cpuinfo, os-release).
pub(crate) fn field<'a>(text: &'a str, key: &str, sep: char) -> Option<&'a str> {
    text.lines().find_map(|line| {
        line.split_once(sep)
            .filter(|(k, _)| k.trim() == key)
            .map(|(_, value)| value.trim())
    })
}

pub(crate) fn cpu_model(cpuinfo: &str) -> Option<String> {
    field(cpuinfo, "model name", ':')
        .filter(|model| !model.is_empty())
        .map(str::to_string)
}

/// `/proc/meminfo` (and a NUMA node's `meminfo`, whose lines start `Node N`) in bytes, by key.
pub(crate) fn meminfo_bytes(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|line| {
            let (key, value) = line.split_once(':')?;
            let key = key.split_whitespace().last()?;
            let mut words = value.split_whitespace();
            let number: u64 = words.next()?.parse().ok()?;
            let bytes = match words.next() {
                Some("kB") => number.checked_mul(1024)?,
                None => number,
                Some(_) => return None,
            };
            Some((key.to_string(), bytes))
        })
        .collect()
}

/// A kernel CPU or node list (`0-3,8,10-11`); `None` when any part is malformed.
pub fn cpu_list(text: &str) -> Option<Vec<u32>> {
    let mut cpus = Vec::new();
    for part in text.trim().split(',').filter(|part| !part.is_empty()) {
        match part.split_once('-') {
            Some((first, last)) => {
                let (first, last): (u32, u32) = (first.parse().ok()?, last.parse().ok()?);
                // A reversed or absurd range is a malformed file, not a reason to allocate billions.
                if last < first || last - first > 1 << 16 {
                    return None;
                }
                cpus.extend(first..=last);
            }
            None => cpus.push(part.parse().ok()?),
        }
    }
    Some(cpus)
}

/// Numbered entries `<prefix>N` of a directory, in number order.
fn numbered(dir: &Path, prefix: &str) -> Vec<(u32, std::path::PathBuf)> {
    let mut entries: Vec<(u32, std::path::PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name();
            let number = name.to_str()?.strip_prefix(prefix)?.parse().ok()?;
            Some((number, entry.path()))
        })
        .collect();
    entries.sort();
    entries
}

fn governors(root: &Path) -> Option<BTreeMap<u32, String>> {
    let governors: BTreeMap<u32, String> = numbered(&root.join("sys/devices/system/cpu"), "cpu")
        .into_iter()
        .filter_map(|(cpu, dir)| Some((cpu, read_text(&dir, "cpufreq/scaling_governor")?)))
        .collect();
    (!governors.is_empty()).then_some(governors)
}

fn numa_nodes(root: &Path) -> Option<Vec<NumaNode>> {
    let nodes: Vec<NumaNode> = numbered(&root.join("sys/devices/system/node"), "node")
        .into_iter()
        .filter_map(|(id, dir)| {
            Some(NumaNode {
                id,
                cpus: cpu_list(&read_text(&dir, "cpulist").unwrap_or_default())?,
                memory_total_bytes: read_text(&dir, "meminfo")
                    .and_then(|text| meminfo_bytes(&text).get("MemTotal").copied()),
            })
        })
        .collect();
    (!nodes.is_empty()).then_some(nodes)
}

/// NVIDIA's PCI vendor id, and the display-controller classes its GPUs report (3D controller `0x0302`, VGA
/// `0x0300`), as sysfs writes them.
const NVIDIA_VENDOR: &str = "0x10de";
const GPU_CLASSES: [&str; 2] = ["0x0302", "0x0300"];

/// The PCI addresses of the NVIDIA GPUs sysfs lists under `root`, sorted: found without nvidia-smi, so the
/// host's facts name the GPUs even when the driver hangs.
pub fn nvidia_gpu_bus_ids(root: &Path) -> Vec<String> {
    let mut ids: Vec<String> = std::fs::read_dir(root.join("sys/bus/pci/devices"))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|device| {
            let path = device.path();
            read_text(&path, "vendor").as_deref() == Some(NVIDIA_VENDOR)
                && read_text(&path, "class")
                    .is_some_and(|class| GPU_CLASSES.iter().any(|c| class.starts_with(c)))
        })
        .map(|device| device.file_name().to_string_lossy().into_owned())
        .collect();
    ids.sort();
    ids
}

/// The sysfs spelling of a PCI address: nvidia-smi writes an 8-digit domain in uppercase
/// (`00000000:19:00.0`), sysfs a 4-digit one in lowercase (`0000:19:00.0`).
pub fn sysfs_bus_id(bus_id: &str) -> String {
    let lower = bus_id.trim().to_ascii_lowercase();
    match lower.split_once(':') {
        // `get`, not indexing: a hostile file's domain need not be ASCII.
        Some((domain, rest)) if domain.len() > 4 => match domain.get(domain.len() - 4..) {
            Some(short) => format!("{short}:{rest}"),
            None => lower.clone(),
        },
        _ => lower,
    }
}

fn pci_device(root: &Path, bus_id: &str) -> PciDevice {
    let bus_id = sysfs_bus_id(bus_id);
    // A path separator in an address would read outside the PCI folder.
    let dir = (!bus_id.contains('/') && !bus_id.contains(".."))
        .then(|| root.join("sys/bus/pci/devices").join(&bus_id));
    let read = |name: &str| dir.as_ref().and_then(|dir| read_text(dir, name));
    PciDevice {
        // The kernel writes -1 when it does not know the node.
        numa_node: read("numa_node").and_then(|n| n.parse().ok()),
        current_link_speed: read("current_link_speed"),
        max_link_speed: read("max_link_speed"),
        current_link_width: read("current_link_width").and_then(|n| n.parse().ok()),
        max_link_width: read("max_link_width").and_then(|n| n.parse().ok()),
        bus_id,
    }
}

/// The selected one of `always [madvise] never`.
fn bracketed(text: &str) -> Option<String> {
    let start = text.find('[')? + 1;
    let end = start + text[start..].find(']')?;
    Some(text[start..end].to_string()).filter(|mode| !mode.is_empty())
}

fn load_average(text: &str) -> Option<[f64; 3]> {
    let mut numbers = text.split_whitespace().map(|n| n.parse::<f64>().ok());
    Some([numbers.next()??, numbers.next()??, numbers.next()??])
}

/// `some avg10=0.15 avg60=1.54 avg300=7.81 total=441082981` and the `full` line (absent for CPU before 5.13).
fn pressure(text: &str) -> Option<PressureLine> {
    let value = |kind: &str, key: &str| {
        text.lines()
            .find(|line| line.split_whitespace().next() == Some(kind))?
            .split_whitespace()
            .find_map(|pair| pair.strip_prefix(key)?.strip_prefix('=')?.parse().ok())
    };
    let line = PressureLine {
        some_avg10: value("some", "avg10"),
        some_avg60: value("some", "avg60"),
        full_avg10: value("full", "avg10"),
        full_avg60: value("full", "avg60"),
    };
    (line != PressureLine::default()).then_some(line)
}

/// The server's cgroup v2 (`0::/path` of `/proc/<pid>/cgroup`), mounted at `/sys/fs/cgroup`.
fn cgroup(root: &Path, cgroup_lines: &str) -> Option<Cgroup> {
    let path = cgroup_lines
        .lines()
        .find_map(|line| line.strip_prefix("0::"))?;
    if path.split('/').any(|part| part == "..") {
        return None;
    }
    let dir = root
        .join("sys/fs/cgroup")
        .join(path.trim_start_matches('/'));
    let (quota, period) = read_text(&dir, "cpu.max")
        .and_then(|text| {
            let (quota, period) = text.split_once(' ')?;
            Some((quota.parse().ok(), period.trim().parse().ok()))
        })
        .unwrap_or_default();
    let stat = read_text(&dir, "cpu.stat")
        .map(|text| counters(&text))
        .unwrap_or_default();
    let events = read_text(&dir, "memory.events")
        .map(|text| counters(&text))
        .unwrap_or_default();
    Some(Cgroup {
        path: path.to_string(),
        cpu_quota_us: quota,
        cpu_period_us: period,
        nr_periods: stat.get("nr_periods").copied(),
        nr_throttled: stat.get("nr_throttled").copied(),
        throttled_usec: stat.get("throttled_usec").copied(),
        // `max` is no limit.
        memory_max_bytes: read_number(&dir, "memory.max"),
        oom_kills: events.get("oom_kill").copied(),
    })
}

/// `key value` lines (cgroup `cpu.stat`, `memory.events`).
fn counters(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|line| {
            let (key, value) = line.split_once(' ')?;
            Some((key.to_string(), value.trim().parse().ok()?))
        })
        .collect()
}

/// The soft limit of `Max open files` in `/proc/<pid>/limits`; `unlimited` reads as `None`.
fn open_files(limits: &str) -> Option<u64> {
    limits
        .lines()
        .find_map(|line| line.strip_prefix("Max open files"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn container(root: &Path, cgroup_lines: &str) -> Option<String> {
    let marker = if root.join(".dockerenv").exists() {
        Some("docker")
    } else if root.join("run/.containerenv").exists() {
        Some("podman")
    } else {
        [
            ("kubepods", "kubernetes"),
            ("docker", "docker"),
            ("libpod", "podman"),
            ("containerd", "containerd"),
        ]
        .into_iter()
        .find(|(word, _)| cgroup_lines.contains(word))
        .map(|(_, runtime)| runtime)
    };
    marker.map(str::to_string)
}

/// The CPUs and memory nodes a process may run on and allocate from.
fn placement(root: &Path, pid: u32) -> (Option<Vec<u32>>, Option<Vec<u32>>) {
    let Some(status) = read_text(root, &format!("proc/{pid}/status")) else {
        return (None, None);
    };
    let list = |key: &str| field(&status, key, ':').and_then(cpu_list);
    (list("Cpus_allowed_list"), list("Mems_allowed_list"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_and_addresses_read_as_the_kernel_writes_them() {
        assert_eq!(cpu_list("0-2,8,10-11"), Some(vec![0, 1, 2, 8, 10, 11]));
        assert_eq!(cpu_list(""), Some(vec![]));
        assert_eq!(cpu_list("3-1"), None);
        assert_eq!(cpu_list("0-4294967295"), None);
        assert_eq!(cpu_list("a"), None);
        assert_eq!(sysfs_bus_id("00000000:9B:00.0"), "0000:9b:00.0");
        assert_eq!(sysfs_bus_id("0000:19:00.0"), "0000:19:00.0");
        assert_eq!(bracketed("always [madvise] never"), Some("madvise".into()));
        assert_eq!(bracketed("always madvise never"), None);
        assert_eq!(bracketed("]["), None);
    }
}
