//! The few events of a profiler trace that the analyses need, kept compact: a trace of millions of events holds
//! its GPU operations, their CPU launches and the annotations, and counts the rest without keeping it.

use std::collections::HashMap;

use crate::kernel::{HtaType, KernelClass};

/// An interned event name: kernels repeat thousands of times under one name.
pub type NameId = u32;

/// Every distinct name kept, once.
#[derive(Debug, Default)]
pub struct Names {
    ids: HashMap<Box<str>, NameId>,
    names: Vec<Box<str>>,
}

impl Names {
    pub fn intern(&mut self, name: &str) -> NameId {
        if let Some(id) = self.ids.get(name) {
            return *id;
        }
        let id = self.names.len() as NameId;
        self.names.push(name.into());
        self.ids.insert(name.into(), id);
        id
    }

    pub fn get(&self, id: NameId) -> &str {
        &self.names[id as usize]
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

/// What a GPU-side event is, from its category (`kernel`, `gpu_memcpy`, …; the 2022 format's `Kernel`, `Memcpy`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GpuKind {
    Kernel,
    Memcpy,
    Memset,
    /// `cuda_sync`: a stream or context synchronisation Kineto draws on the GPU row.
    Sync,
    /// Any other category carrying a stream.
    Other,
}

impl GpuKind {
    /// Kernels, copies and sets: what runs on a stream, as HTA's idle-time breakdown counts them.
    pub fn runs_on_stream(self) -> bool {
        matches!(self, GpuKind::Kernel | GpuKind::Memcpy | GpuKind::Memset)
    }
}

/// An event on a GPU stream. Times are µs on the trace's own clock (Kineto's `ts`, with its sub-µs decimals).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GpuOp {
    pub ts: f64,
    pub dur: f64,
    pub stream: i64,
    /// Joins the op to the CPU call that launched it; every kernel of one CUDA-graph replay shares its launch's.
    pub correlation: Option<i64>,
    pub name: NameId,
    pub kind: GpuKind,
    /// What the name says the op does, for us and for HTA.
    pub class: KernelClass,
    pub hta: HtaType,
    /// Kineto's `memory bandwidth (GB/s)` of a copy or set.
    pub bandwidth_gbps: Option<f64>,
    pub bytes: Option<f64>,
}

impl GpuOp {
    pub fn end(&self) -> f64 {
        self.ts + self.dur
    }
}

/// A CPU call of the CUDA or HIP runtime or driver (`cudaLaunchKernel`, `cudaGraphLaunch`, `hipLaunchKernel`, …).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RuntimeCall {
    pub ts: f64,
    pub dur: f64,
    pub correlation: Option<i64>,
    pub name: NameId,
}

/// A user range: `ProfilerStep#N`, vLLM's step and model-runner annotations, `record_function` ranges.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Annotation {
    pub ts: f64,
    pub dur: f64,
    pub name: NameId,
    /// `gpu_user_annotation`: the same range drawn over the GPU's work.
    pub on_gpu: bool,
}

/// One GPU of the trace's `deviceProperties`.
#[derive(Clone, Debug, Default, PartialEq, serde::Deserialize, serde::Serialize)]
pub struct Device {
    #[serde(default)]
    pub id: i64,
    #[serde(default)]
    pub name: String,
    #[serde(default, rename = "numSms")]
    pub sms: Option<u32>,
    #[serde(default, rename = "totalGlobalMem")]
    pub memory_bytes: Option<u64>,
}
