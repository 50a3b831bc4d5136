//! The `host` room: what infer-doctor learns on the GPU host rather than from the server (nvidia-smi, rocm-smi,
//! dcgm-exporter, dcgmi diag, topology, kernel-log, collect-env and Kubernetes pod readers, the machine's facts
//! from /proc and /sys), and the host's commands under deadlines, redacted.

pub mod archive;
pub mod collect_env;
pub mod command;
mod dcgm;
pub mod dcgm_diag;
pub mod gpu;
pub mod hostnames;
pub mod kernel;
pub mod kube;
pub mod machine;
pub mod process;
pub mod redact;
pub mod rocm;
pub mod system;
pub mod topo;
