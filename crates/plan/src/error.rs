//! Everything that can go wrong turning names, files and settings into hardware and capacity, each error
//! naming the input (file, field, setting) so a user can fix it.

use crate::gpu::Interconnect;

#[derive(Debug, thiserror::Error)]
pub enum HardwareError {
    #[error("unknown GPU {name:?}; known GPUs: {known}")]
    UnknownGpu { name: String, known: String },
    #[error("unknown model {name:?}; built-in models: {known} (or give a config.json)")]
    UnknownModel { name: String, known: String },
    #[error("{origin}: cannot read: {source}")]
    ConfigRead {
        origin: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{origin}: not a config.json object: {message}")]
    ConfigSyntax { origin: String, message: String },
    #[error("{origin}: missing field `{field}`")]
    MissingField { origin: String, field: &'static str },
    #[error("{origin}: field `{field}` {problem}")]
    InvalidField {
        origin: String,
        field: &'static str,
        problem: String,
    },
    #[error("unknown dtype {0:?}; known: float32, float16, bfloat16, fp8")]
    UnknownDtype(String),
    #[error("{setting} = {value} is invalid: {expected}")]
    InvalidSetting {
        setting: &'static str,
        value: String,
        expected: String,
    },
    #[error("{gpu} has no {interconnect} link")]
    NoSuchLink {
        gpu: &'static str,
        interconnect: Interconnect,
    },
    #[error(
        "model does not fit: needs {needed_gib:.2} GiB per GPU (weights {weights_gib:.2} + activations and CUDA graphs \
         {activation_gib:.2} + non-torch {non_torch_gib:.2}), {available_gib:.2} GiB available \
         ({total_gib:.2} GiB x gpu_memory_utilization {utilization})"
    )]
    ModelDoesNotFit {
        needed_gib: f64,
        weights_gib: f64,
        activation_gib: f64,
        non_torch_gib: f64,
        available_gib: f64,
        total_gib: f64,
        utilization: f64,
    },
    #[error(
        "max_model_len {max_model_len} needs {needed_gib:.2} GiB of KV cache per GPU, more than the \
         {available_gib:.2} GiB available"
    )]
    MaxModelLenTooLong {
        max_model_len: u64,
        needed_gib: f64,
        available_gib: f64,
    },
}
