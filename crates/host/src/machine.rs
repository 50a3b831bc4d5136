//! Facts about the machine the client ran on, for the run record: these few lines of `/proc` are enough to make
//! a run reproducible.

use serde::Serialize;

#[derive(Debug, Serialize)]
pub struct HostInfo {
    pub hostname: Option<String>,
    pub os: Option<String>,
    pub kernel: Option<String>,
    pub cpu_model: Option<String>,
    pub cores: u32,
    pub memory_bytes: Option<u64>,
}

fn read_trimmed(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

fn field<'a>(text: &'a str, key: &str, sep: char) -> Option<&'a str> {
    text.lines().find_map(|l| {
        l.split_once(sep)
            .filter(|(k, _)| k.trim() == key)
            .map(|(_, v)| v.trim())
    })
}

impl HostInfo {
    pub fn read() -> HostInfo {
        let os_release = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        HostInfo {
            hostname: read_trimmed("/proc/sys/kernel/hostname"),
            os: field(&os_release, "PRETTY_NAME", '=').map(|v| v.trim_matches('"').to_string()),
            kernel: read_trimmed("/proc/sys/kernel/osrelease"),
            cpu_model: field(&cpuinfo, "model name", ':').map(str::to_string),
            cores: std::thread::available_parallelism().map_or(1, |n| n.get() as u32),
            memory_bytes: field(&meminfo, "MemTotal", ':')
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
                .map(|kib| kib * 1024),
        }
    }
}
