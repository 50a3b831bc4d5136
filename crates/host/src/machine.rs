//! Facts about the machine the client ran on, for the run record: these few lines of `/proc` are enough to make
//! a run reproducible.

use std::path::Path;

use serde::Serialize;

use crate::system::{cpu_model, field, meminfo_bytes, read_text};

#[derive(Debug, Serialize)]
pub struct HostInfo {
    pub hostname: Option<String>,
    pub os: Option<String>,
    pub kernel: Option<String>,
    pub cpu_model: Option<String>,
    pub cores: u32,
    pub memory_bytes: Option<u64>,
}

impl HostInfo {
    pub fn read() -> HostInfo {
        let root = Path::new("/");
        let os_release = read_text(root, "etc/os-release").unwrap_or_default();
        HostInfo {
            hostname: read_text(root, "proc/sys/kernel/hostname"),
            os: field(&os_release, "PRETTY_NAME", '=').map(|v| v.trim_matches('"').to_string()),
            kernel: read_text(root, "proc/sys/kernel/osrelease"),
            cpu_model: read_text(root, "proc/cpuinfo").and_then(|text| cpu_model(&text)),
            cores: std::thread::available_parallelism().map_or(1, |n| n.get() as u32),
            memory_bytes: read_text(root, "proc/meminfo")
                .and_then(|text| meminfo_bytes(&text).get("MemTotal").copied()),
        }
    }
}
