//! A simulated vLLM V1 server: the scheduler, KV block pool and prefix cache stepped under a roofline cost model,
//! with vLLM's exact metrics and log lines, run on a real clock behind HTTP or as fast as the CPU allows.

pub mod core;
pub mod des;
pub mod engine;
pub mod fleet;
pub mod kv;
pub mod logs;
pub mod metrics;
pub mod picker;
pub mod scenario;
pub mod server;
pub mod setup;
pub mod text;
pub mod whatif;
