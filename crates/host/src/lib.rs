//! The `host` room: what infer-doctor learns on the GPU host rather than from the server — nvidia-smi and
//! dcgm-exporter captures as GPU state, GPU topology and NVLinks, the kernel log's XIDs, the machine's own facts.

pub mod collect_env;
mod dcgm;
pub mod gpu;
pub mod kernel;
pub mod machine;
pub mod topo;
