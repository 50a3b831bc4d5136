//! Capacity from the model and the GPU: model shapes from `config.json`, the GPU catalog, vLLM V1's memory and
//! KV arithmetic and the roofline step cost, shared by `plan`, the simulator and the hardware floors of `diagnose`.

pub mod autoscale;
pub mod cost;
pub mod dtype;
pub mod error;
pub mod floors;
pub mod gpu;
pub mod load_job;
pub mod memory;
pub mod model;
pub mod options;
pub mod quant;
pub mod roofline;

pub use cost::{Bound, Calibration, CostModel, StepWork};
pub use dtype::Dtype;
pub use error::HardwareError;
pub use floors::hardware_facts;
pub use gpu::{BatchLimits, Gpu, Interconnect, Link};
pub use memory::{CacheConfig, Deployment, KvCapacity, KvLayout, MemoryPlan};
pub use model::{MlaShape, ModelShape, MoeShape, SlidingWindow};
pub use options::{DeploymentOption, Search, Slo, Workload};
pub use quant::Quantization;

pub(crate) const GIB: f64 = (1u64 << 30) as f64;
pub(crate) const MIB: u64 = 1 << 20;
/// Decimal giga, the unit of every datasheet bandwidth and FLOP/s figure.
pub(crate) const GIGA: f64 = 1e9;
pub(crate) const TERA: f64 = 1e12;

#[cfg(test)]
pub(crate) mod testing {
    use crate::ModelShape;

    pub fn llama_8b() -> ModelShape {
        ModelShape::by_name("llama-3.1-8b").unwrap()
    }

    pub fn within(actual: f64, expected: f64, relative: f64) -> bool {
        (actual - expected).abs() <= expected.abs() * relative
    }
}
