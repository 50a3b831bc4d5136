//! The `host` room: what infer-doctor learns on the GPU host rather than from the server — nvidia-smi and
//! dcgm-exporter captures as GPU state, the kernel log's XIDs, and the machine's own facts from /proc and /sys.

mod dcgm;
pub mod gpu;
pub mod kernel;
pub mod machine;
pub mod system;
