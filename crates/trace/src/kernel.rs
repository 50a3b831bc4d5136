//! What a GPU operation is, from its name: HTA's four kernel types (which its temporal and overlap figures rest
//! on, so ours agree with it) and the finer classes an inference engineer asks about (GEMM, attention, MoE, …).

use serde::Serialize;

/// HTA's kernel type (`hta.utils.utils.get_kernel_type`, holistictraceanalysis 0.5.0).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HtaType {
    Communication,
    Memory,
    Computation,
    Other,
}

/// HTA's regexes, matched from the start of the name: COMMUNICATION `^nccl.*Kernel`; MEMORY
/// `(^Memcpy)|(^Memset)|(^dma)`; COMPUTATION what matches neither nor `(.*(Memcpy)|(Memset))|(.*Sync)`; the rest
/// (a HIP `hipMemcpy…`, `Stream Sync`, `Context Sync`) OTHER. vLLM's custom all-reduce is COMPUTATION here.
pub fn hta_type(name: &str) -> HtaType {
    let nccl_kernel = name
        .strip_prefix("nccl")
        .is_some_and(|rest| rest.contains("Kernel"));
    if nccl_kernel {
        HtaType::Communication
    } else if ["Memcpy", "Memset", "dma"]
        .iter()
        .any(|p| name.starts_with(p))
    {
        HtaType::Memory
    } else if name.contains("Memcpy") || name.contains("Sync") {
        HtaType::Other
    } else {
        HtaType::Computation
    }
}

/// The class of a GPU operation for an inference engineer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KernelClass {
    Gemm,
    AttentionFlash,
    AttentionPaged,
    AttentionMla,
    /// Attention of another or unknown implementation (xformers, SDPA, Triton's unified attention).
    AttentionOther,
    Moe,
    /// NCCL/RCCL collectives and vLLM's custom all-reduce: what tensor parallelism waits on.
    Communication,
    Memcpy,
    Memset,
    /// Elementwise, normalisation, activation, sampling and everything else.
    Other,
}

impl KernelClass {
    pub const ALL: [KernelClass; 10] = [
        KernelClass::Gemm,
        KernelClass::AttentionFlash,
        KernelClass::AttentionPaged,
        KernelClass::AttentionMla,
        KernelClass::AttentionOther,
        KernelClass::Moe,
        KernelClass::Communication,
        KernelClass::Memcpy,
        KernelClass::Memset,
        KernelClass::Other,
    ];

    pub fn label(self) -> &'static str {
        match self {
            KernelClass::Gemm => "GEMM",
            KernelClass::AttentionFlash => "attention (flash)",
            KernelClass::AttentionPaged => "attention (paged)",
            KernelClass::AttentionMla => "attention (MLA)",
            KernelClass::AttentionOther => "attention (other)",
            KernelClass::Moe => "MoE",
            KernelClass::Communication => "communication",
            KernelClass::Memcpy => "memcpy",
            KernelClass::Memset => "memset",
            KernelClass::Other => "elementwise/other",
        }
    }

    pub fn is_attention(self) -> bool {
        matches!(
            self,
            KernelClass::AttentionFlash
                | KernelClass::AttentionPaged
                | KernelClass::AttentionMla
                | KernelClass::AttentionOther
        )
    }
}

/// Name fragments per class, tried in this order (MoE and attention kernels often contain "gemm" too, and a
/// collective may be a Triton kernel). Lowercase; matched against the lowercased name.
const CLASS_PATTERNS: [(KernelClass, &[&str]); 8] = [
    (
        KernelClass::Communication,
        &[
            "nccl",
            "rccl",
            "cross_device_reduce",
            "all_reduce",
            "allreduce",
            "all_gather",
            "allgather",
            "reduce_scatter",
            "reducescatter",
            "all_to_all",
            "alltoall",
            "one_shot",
            "two_shot",
            "multimem",
        ],
    ),
    (KernelClass::Memcpy, &["memcpy"]),
    (KernelClass::Memset, &["memset"]),
    (
        KernelClass::Moe,
        &[
            "moe",
            "topk_softmax",
            "topkgating",
            "expert",
            "grouped_gemm",
            "groupgemm",
        ],
    ),
    (KernelClass::AttentionMla, &["mla", "flashmla", "flash_mla"]),
    (
        KernelClass::AttentionPaged,
        &[
            "paged_attention",
            "pagedattention",
            "reshape_and_cache",
            "ll4mi",
        ],
    ),
    (
        KernelClass::AttentionFlash,
        &[
            "flash",
            "fmha",
            "batchprefill",
            "batchdecode",
            "flashinfer",
            "fwd_splitkv",
        ],
    ),
    (
        KernelClass::AttentionOther,
        &["attention", "attn", "xformers", "sdpa"],
    ),
];

/// GEMMs by library and naming: cuBLAS/cuBLASLt, CUTLASS, hipBLASLt (`Cijk_`), NVIDIA's `nvjet`, Triton matmuls.
const GEMM_PATTERNS: [&str; 13] = [
    "gemm", "gemv", "cutlass", "cublas", "cijk_", "nvjet", "xmma", "matmul", "_mm_", "wgmma",
    "splitk", "hgemm", "sgemm",
];

/// The class of an operation named `name`.
pub fn classify(name: &str) -> KernelClass {
    let lower = name.to_ascii_lowercase();
    let has = |patterns: &[&str]| patterns.iter().any(|p| lower.contains(p));
    // DMA engines' copies, as HTA names them (`^dma`).
    if lower.starts_with("dma") {
        return KernelClass::Memcpy;
    }
    for (class, patterns) in CLASS_PATTERNS {
        if has(patterns) {
            return class;
        }
    }
    if has(&GEMM_PATTERNS) {
        KernelClass::Gemm
    } else {
        KernelClass::Other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hta_types_follow_its_regexes_including_their_precedence() {
        for (name, expected) in [
            (
                "ncclKernel_AllReduce_RING_LL_Sum_float",
                HtaType::Communication,
            ),
            ("ncclDevKernel_Generic", HtaType::Communication),
            ("Memcpy DtoD (Device -> Device)", HtaType::Memory),
            ("Memset (Device)", HtaType::Memory),
            ("hipMemcpyAsync", HtaType::Other),
            ("Stream Sync", HtaType::Other),
            ("Context Sync", HtaType::Other),
            // `(Memset)` is anchored, `.*Sync` is not: these are computation, as HTA has them.
            ("Stream Wait Event", HtaType::Computation),
            ("fused Memset", HtaType::Computation),
            (
                "void vllm::cross_device_reduce_1stage<float, 4>",
                HtaType::Computation,
            ),
            ("sm90_xmma_gemm_bf16bf16_bf16f32", HtaType::Computation),
        ] {
            assert_eq!(hta_type(name), expected, "{name}");
        }
    }

    #[test]
    fn inference_kernels_are_classed_by_what_they_do() {
        for (name, expected) in [
            (
                "sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n_tilesize128x128x64",
                KernelClass::Gemm,
            ),
            (
                "Cijk_Alik_Bljk_BBS_BH_MT256x32x64_MI16x16x1",
                KernelClass::Gemm,
            ),
            (
                "nvjet_tst_128x64_64x8_1x1_v_bz_coopB_NTN",
                KernelClass::Gemm,
            ),
            (
                "void flash_fwd_splitkv_kernel<Flash_fwd_kernel_traits<128>>",
                KernelClass::AttentionFlash,
            ),
            (
                "paged_attention_ll4mi_QKV_mfma16_kernel",
                KernelClass::AttentionPaged,
            ),
            (
                "void vllm::reshape_and_cache_flash_kernel<__nv_bfloat16>",
                KernelClass::AttentionPaged,
            ),
            (
                "void flash::flash_fwd_mla_kernel<Flash_fwd_kernel_traits_mla>",
                KernelClass::AttentionMla,
            ),
            ("kernel_unified_attention_2d", KernelClass::AttentionOther),
            ("fused_moe_kernel", KernelClass::Moe),
            ("void vllm::moe::topkGatingSoftmax<4, 64>", KernelClass::Moe),
            (
                "void vllm::cross_device_reduce_1stage<__nv_bfloat16, 4>",
                KernelClass::Communication,
            ),
            (
                "ncclDevKernel_AllReduce_Sum_bf16_RING_LL",
                KernelClass::Communication,
            ),
            ("Memcpy HtoD (Pageable -> Device)", KernelClass::Memcpy),
            ("Memset (Device)", KernelClass::Memset),
            (
                "void at::native::vectorized_elementwise_kernel<4>",
                KernelClass::Other,
            ),
            (
                "void vllm::rms_norm_kernel<c10::BFloat16>",
                KernelClass::Other,
            ),
        ] {
            assert_eq!(classify(name), expected, "{name}");
        }
    }
}
