//! The GPU catalog: dense peaks, memory the runtime sees, bandwidths and links, so floors and capacity come
//! from datasheet facts rather than guesses, and names as drivers report them find their entry.

use std::fmt;

use serde::Serialize;

use crate::{Dtype, GIB, GIGA, HardwareError, MIB, TERA};

/// How tensor-parallel ranks exchange activations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Interconnect {
    /// The GPU's scale-up fabric: NVLink on NVIDIA, Infinity Fabric on AMD.
    NvLink,
    Pcie,
}

impl fmt::Display for Interconnect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Interconnect::NvLink => "NVLink",
            Interconnect::Pcie => "PCIe",
        })
    }
}

// NCCL-style collectives pay a fixed cost per call on top of bandwidth. 20 µs is BLIS's `allReduceLatency`
// (inference-sim docs/design/roofline.md); PCIe, routed through switches or the host, is taken as twice that
// (inference, no measurement read).
const NVLINK_ALL_REDUCE_LATENCY_S: f64 = 20e-6;
const PCIE_ALL_REDUCE_LATENCY_S: f64 = 40e-6;
// PCIe x16 per direction: Gen4 16 GT/s x 16 lanes x 128/130 ≈ 31.5 GB/s, Gen5 twice that.
const PCIE_GEN4_X16: f64 = 32.0 * GIGA;
const PCIE_GEN5_X16: f64 = 64.0 * GIGA;

/// One GPU's link of a given kind.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Link {
    pub interconnect: Interconnect,
    /// Bytes/s each way; a ring all-reduce sends and receives at once, so this is the rate it sees.
    pub bandwidth_per_direction: f64,
    pub latency_s: f64,
}

impl Link {
    /// Ring all-reduce of `bytes` over `ranks` GPUs: 2(TP−1)/TP of the buffer crosses each link, plus the
    /// per-collective latency; nothing at one rank.
    pub fn all_reduce_seconds(&self, bytes: f64, ranks: u32) -> f64 {
        if ranks <= 1 {
            return 0.0;
        }
        let ranks = f64::from(ranks);
        2.0 * (ranks - 1.0) / ranks * bytes / self.bandwidth_per_direction + self.latency_s
    }
}

/// vLLM's scheduler limits when the user sets none.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct BatchLimits {
    pub max_num_seqs: u64,
    pub max_num_batched_tokens: u64,
}

/// One GPU model with the dense peaks the roofline needs (datasheet "with sparsity" figures are halved).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Gpu {
    /// Catalog name, e.g. `h100-sxm`.
    pub name: &'static str,
    /// The name the driver reports (`nvidia-smi`, `torch.cuda.get_device_name`); vLLM keys defaults on it.
    pub device_name: &'static str,
    #[serde(skip)]
    pub aliases: &'static [&'static str],
    /// Memory the runtime sees (what vLLM multiplies by `gpu_memory_utilization`), not the marketing size.
    pub memory_bytes: u64,
    /// HBM/GDDR bytes/s.
    pub memory_bandwidth: f64,
    pub bf16_flops: f64,
    /// `None` where the GPU has no FP8 tensor cores; FP8 weights then compute in 16 bits (W8A16).
    pub fp8_flops: Option<f64>,
    /// Per direction; `None` where the card has no NVLink or bridge.
    pub nvlink_bandwidth_per_direction: Option<f64>,
    pub pcie_bandwidth_per_direction: f64,
    pub default_interconnect: Interconnect,
}

// Peaks and bandwidths: research/sim_capacity.md §B3 (vendor datasheets, dense). NVLink figures below are
// the datasheets' per-GPU totals (both directions) halved. Memory: nvidia-smi total minus reserved from the
// captures in shared/fixtures/gpu (H100, H200), torch/rocm-smi `total_memory` captures (A100 80GB, MI300X),
// else the nvidia-smi total seen in public logs.
static GPUS: [Gpu; 11] = [
    Gpu {
        name: "h100-sxm",
        device_name: "NVIDIA H100 80GB HBM3",
        aliases: &[
            "h100",
            "h100-sxm5",
            "h100-80gb",
            "h100-80gb-hbm3",
            "h100-sxm5-80gb",
        ],
        memory_bytes: (81_559 - 479) * MIB,
        memory_bandwidth: 3_350.0 * GIGA,
        bf16_flops: 989.4 * TERA,
        fp8_flops: Some(1_978.9 * TERA),
        nvlink_bandwidth_per_direction: Some(900.0 / 2.0 * GIGA),
        pcie_bandwidth_per_direction: PCIE_GEN5_X16,
        default_interconnect: Interconnect::NvLink,
    },
    Gpu {
        name: "h100-pcie",
        device_name: "NVIDIA H100 PCIe",
        aliases: &["h100-pcie-80gb"],
        memory_bytes: (81_559 - 479) * MIB,
        memory_bandwidth: 2_000.0 * GIGA,
        bf16_flops: 756.0 * TERA,
        fp8_flops: Some(1_513.0 * TERA),
        // NVLink bridge between card pairs: 600 GB/s.
        nvlink_bandwidth_per_direction: Some(600.0 / 2.0 * GIGA),
        pcie_bandwidth_per_direction: PCIE_GEN5_X16,
        default_interconnect: Interconnect::Pcie,
    },
    Gpu {
        name: "h200",
        device_name: "NVIDIA H200",
        aliases: &["h200-sxm", "h200-141gb"],
        memory_bytes: (143_771 - 614) * MIB,
        memory_bandwidth: 4_800.0 * GIGA,
        bf16_flops: 989.4 * TERA,
        fp8_flops: Some(1_978.9 * TERA),
        nvlink_bandwidth_per_direction: Some(900.0 / 2.0 * GIGA),
        pcie_bandwidth_per_direction: PCIE_GEN5_X16,
        default_interconnect: Interconnect::NvLink,
    },
    Gpu {
        name: "a100-40gb",
        device_name: "NVIDIA A100-SXM4-40GB",
        aliases: &[
            "a100-sxm4-40gb",
            "a100-pcie-40gb",
            "a100-40gb-pcie",
            "a100-40gb-sxm",
        ],
        // torch's total_memory (39.39 GiB), what vLLM multiplies; nvidia-smi shows 40960 MiB with the reserve.
        memory_bytes: 42_298_834_944,
        memory_bandwidth: 1_555.0 * GIGA,
        bf16_flops: 312.0 * TERA,
        fp8_flops: None,
        nvlink_bandwidth_per_direction: Some(600.0 / 2.0 * GIGA),
        pcie_bandwidth_per_direction: PCIE_GEN4_X16,
        default_interconnect: Interconnect::NvLink,
    },
    Gpu {
        name: "a100-80gb-sxm",
        device_name: "NVIDIA A100-SXM4-80GB",
        aliases: &["a100", "a100-80gb", "a100-sxm", "a100-sxm4-80gb"],
        memory_bytes: 85_056_798_720,
        memory_bandwidth: 2_039.0 * GIGA,
        bf16_flops: 312.0 * TERA,
        fp8_flops: None,
        nvlink_bandwidth_per_direction: Some(600.0 / 2.0 * GIGA),
        pcie_bandwidth_per_direction: PCIE_GEN4_X16,
        default_interconnect: Interconnect::NvLink,
    },
    Gpu {
        name: "a100-80gb-pcie",
        device_name: "NVIDIA A100 80GB PCIe",
        aliases: &["a100-pcie", "a100-pcie-80gb"],
        memory_bytes: 85_056_798_720,
        memory_bandwidth: 1_935.0 * GIGA,
        bf16_flops: 312.0 * TERA,
        fp8_flops: None,
        nvlink_bandwidth_per_direction: Some(600.0 / 2.0 * GIGA),
        pcie_bandwidth_per_direction: PCIE_GEN4_X16,
        default_interconnect: Interconnect::Pcie,
    },
    Gpu {
        name: "l40s",
        device_name: "NVIDIA L40S",
        aliases: &[],
        memory_bytes: 46_068 * MIB,
        memory_bandwidth: 864.0 * GIGA,
        bf16_flops: 362.05 * TERA,
        fp8_flops: Some(733.0 * TERA),
        nvlink_bandwidth_per_direction: None,
        pcie_bandwidth_per_direction: PCIE_GEN4_X16,
        default_interconnect: Interconnect::Pcie,
    },
    Gpu {
        name: "l4",
        device_name: "NVIDIA L4",
        aliases: &[],
        memory_bytes: 23_034 * MIB,
        memory_bandwidth: 300.0 * GIGA,
        bf16_flops: 121.0 * TERA,
        fp8_flops: Some(242.5 * TERA),
        nvlink_bandwidth_per_direction: None,
        pcie_bandwidth_per_direction: PCIE_GEN4_X16,
        default_interconnect: Interconnect::Pcie,
    },
    Gpu {
        name: "a10",
        device_name: "NVIDIA A10",
        aliases: &[],
        // The A10G capture (fixtures/gpu/telegraf__a10g.xml) shows 23028 MiB; A10 has the same 24 GB GDDR6.
        memory_bytes: 23_028 * MIB,
        memory_bandwidth: 600.0 * GIGA,
        bf16_flops: 125.0 * TERA,
        fp8_flops: None,
        nvlink_bandwidth_per_direction: None,
        pcie_bandwidth_per_direction: PCIE_GEN4_X16,
        default_interconnect: Interconnect::Pcie,
    },
    Gpu {
        name: "b200",
        device_name: "NVIDIA B200",
        aliases: &["hgx-b200", "b200-180gb"],
        memory_bytes: 183_359 * MIB,
        memory_bandwidth: 7_700.0 * GIGA,
        bf16_flops: 2_250.0 * TERA,
        fp8_flops: Some(4_500.0 * TERA),
        // NVLink 5: 1.8 TB/s per GPU.
        nvlink_bandwidth_per_direction: Some(1_800.0 / 2.0 * GIGA),
        pcie_bandwidth_per_direction: PCIE_GEN5_X16,
        default_interconnect: Interconnect::NvLink,
    },
    Gpu {
        name: "mi300x",
        device_name: "AMD Instinct MI300X",
        aliases: &["mi300"],
        memory_bytes: 205_822_885_888,
        memory_bandwidth: 5_300.0 * GIGA,
        bf16_flops: 1_307.4 * TERA,
        fp8_flops: Some(2_614.9 * TERA),
        // Infinity Fabric: 7 links x 128 GB/s = 896 GB/s per GPU (AMD MI300X datasheet).
        nvlink_bandwidth_per_direction: Some(896.0 / 2.0 * GIGA),
        pcie_bandwidth_per_direction: PCIE_GEN5_X16,
        default_interconnect: Interconnect::NvLink,
    },
];

/// Lower-cases and drops vendor prefixes so `NVIDIA H100 80GB HBM3`, `H100_80GB_HBM3` and `h100-80gb-hbm3`
/// meet.
fn normalize_gpu_name(name: &str) -> String {
    let dashed: String = name
        .trim()
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c == ' ' || c == '_' { '-' } else { c })
        .collect();
    ["nvidia-", "amd-instinct-", "amd-"]
        .iter()
        .fold(dashed, |acc, prefix| {
            acc.strip_prefix(prefix).map(str::to_owned).unwrap_or(acc)
        })
}

impl Gpu {
    pub fn catalog() -> &'static [Gpu] {
        &GPUS
    }

    /// Finds a GPU by catalog name, alias or driver-reported name, ignoring case.
    pub fn by_name(name: &str) -> Result<Gpu, HardwareError> {
        let wanted = normalize_gpu_name(name);
        GPUS.iter()
            .find(|gpu| {
                gpu.name == wanted
                    || gpu.aliases.contains(&wanted.as_str())
                    || normalize_gpu_name(gpu.device_name) == wanted
            })
            .cloned()
            .ok_or_else(|| HardwareError::UnknownGpu {
                name: name.to_owned(),
                known: GPUS
                    .iter()
                    .map(|gpu| gpu.name)
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    /// Dense tensor-core peak for matmuls in `dtype`. float32 runs as TF32, half the BF16 rate on every GPU
    /// listed; FP8 without FP8 units falls back to the 16-bit rate.
    pub fn peak_flops(&self, dtype: Dtype) -> f64 {
        match dtype {
            Dtype::Float32 => self.bf16_flops / 2.0,
            Dtype::Float16 | Dtype::Bfloat16 => self.bf16_flops,
            Dtype::Fp8 => self.fp8_flops.unwrap_or(self.bf16_flops),
        }
    }

    pub fn link(&self, interconnect: Interconnect) -> Result<Link, HardwareError> {
        let (bandwidth, latency_s) = match interconnect {
            Interconnect::NvLink => (
                self.nvlink_bandwidth_per_direction,
                NVLINK_ALL_REDUCE_LATENCY_S,
            ),
            Interconnect::Pcie => (
                Some(self.pcie_bandwidth_per_direction),
                PCIE_ALL_REDUCE_LATENCY_S,
            ),
        };
        let bandwidth_per_direction = bandwidth.ok_or(HardwareError::NoSuchLink {
            gpu: self.name,
            interconnect,
        })?;
        Ok(Link {
            interconnect,
            bandwidth_per_direction,
            latency_s,
        })
    }

    /// vLLM's `get_batch_defaults` for the OpenAI server: big limits on ≥ 70 GiB devices whose name does not
    /// contain "a100", small ones elsewhere (research/sim_capacity.md §C, source S9).
    pub fn default_batch_limits(&self) -> BatchLimits {
        let large = self.memory_bytes as f64 >= 70.0 * GIB
            && !self.device_name.to_ascii_lowercase().contains("a100");
        if large {
            BatchLimits {
                max_num_seqs: 1024,
                max_num_batched_tokens: 8192,
            }
        } else {
            BatchLimits {
                max_num_seqs: 256,
                max_num_batched_tokens: 2048,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ModelShape;
    use crate::testing::within;

    #[test]
    fn gpu_lookup_accepts_aliases_and_driver_names() {
        assert_eq!(Gpu::by_name("H100").unwrap().name, "h100-sxm");
        assert_eq!(
            Gpu::by_name("NVIDIA H100 80GB HBM3").unwrap().name,
            "h100-sxm"
        );
        assert_eq!(Gpu::by_name("h100-pcie").unwrap().name, "h100-pcie");
        assert_eq!(Gpu::by_name("a100").unwrap().name, "a100-80gb-sxm");
        assert_eq!(
            Gpu::by_name("NVIDIA A100 80GB PCIe").unwrap().name,
            "a100-80gb-pcie"
        );
        assert_eq!(Gpu::by_name("AMD Instinct MI300X").unwrap().name, "mi300x");
        assert_eq!(Gpu::by_name("nvidia_l40s").unwrap().name, "l40s");
        let error = Gpu::by_name("tpu-v5").unwrap_err().to_string();
        assert!(
            error.contains("\"tpu-v5\"") && error.contains("h100-sxm") && error.contains("mi300x"),
            "{error}"
        );
        let error = ModelShape::by_name("gpt-5").unwrap_err().to_string();
        assert!(
            error.contains("llama-3.1-8b") && error.contains("tiny"),
            "{error}"
        );
    }

    #[test]
    fn catalog_peaks_are_dense_and_visible_memory_matches_captures() {
        let h100 = Gpu::by_name("h100").unwrap();
        assert!(within(h100.memory_bytes as f64 / GIB, 79.18, 0.001));
        assert_eq!(h100.peak_flops(Dtype::Fp8), 1_978.9 * TERA);
        assert_eq!(h100.peak_flops(Dtype::Float32), h100.bf16_flops / 2.0);
        let a100 = Gpu::by_name("a100").unwrap();
        assert_eq!(a100.peak_flops(Dtype::Fp8), a100.bf16_flops);
        for gpu in Gpu::catalog() {
            assert!(
                gpu.bf16_flops < 2.5e15,
                "{} looks like a sparse figure",
                gpu.name
            );
            assert_eq!(Gpu::by_name(gpu.name).unwrap(), *gpu);
            assert_eq!(Gpu::by_name(gpu.device_name).unwrap(), *gpu);
            assert!(gpu.link(gpu.default_interconnect).is_ok());
        }
    }

    #[test]
    fn batch_defaults_follow_vllm() {
        let limits = |name| Gpu::by_name(name).unwrap().default_batch_limits();
        let large = BatchLimits {
            max_num_seqs: 1024,
            max_num_batched_tokens: 8192,
        };
        let small = BatchLimits {
            max_num_seqs: 256,
            max_num_batched_tokens: 2048,
        };
        assert_eq!(limits("h100"), large);
        assert_eq!(limits("h200"), large);
        assert_eq!(limits("mi300x"), large);
        assert_eq!(limits("a100"), small);
        assert_eq!(limits("a100-80gb-pcie"), small);
        assert_eq!(limits("l40s"), small);
        assert_eq!(limits("l4"), small);
    }

    #[test]
    fn all_reduce_cost() {
        let h100 = Gpu::by_name("h100").unwrap();
        let nvlink = h100.link(Interconnect::NvLink).unwrap();
        let pcie = h100.link(Interconnect::Pcie).unwrap();
        assert_eq!(nvlink.all_reduce_seconds(1e6, 1), 0.0);
        // TP=2: the whole buffer crosses once each way.
        assert!(within(
            nvlink.all_reduce_seconds(1e6, 2),
            1e6 / 450e9 + 20e-6,
            1e-9
        ));
        assert!(pcie.all_reduce_seconds(1e6, 2) > nvlink.all_reduce_seconds(1e6, 2));
    }
}
