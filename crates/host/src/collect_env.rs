//! Reads the output of vLLM's `collect-env` (`python -m vllm.collect_env`), which users paste into tickets: the
//! versions, GPUs, CPU, the `topo -m` matrix and the environment, so a diagnosis can start from the paste alone.
//!
//! Both layouts are read: the sectioned one (`Key    : value` under `=====` banners, vLLM 0.9 and later) and the
//! older one inherited from PyTorch's script (`Key: value`).

use infer_doctor_core::secret::is_secret_name;
use infer_doctor_core::{EnvFacts, GpuTopology};

use crate::topo;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum EnvReadError {
    #[error(
        "not `vllm collect-env` output: no `vLLM Version`, `PyTorch version` or `GPU models` line"
    )]
    NotCollectEnv,
}

/// `Key   : value` or `Key: value` → (key, value), the key's padding trimmed.
fn field(line: &str) -> Option<(&str, &str)> {
    let (key, value) = line.split_once(':')?;
    let key = key.trim();
    (!key.is_empty() && !key.contains('=')).then(|| (key, value.trim()))
}

fn known(value: &str) -> Option<String> {
    let value = value.trim();
    (!value.is_empty() && value != "N/A" && value != "Could not collect").then(|| value.to_string())
}

/// The facts of one `collect-env` output, and the GPU topology it holds when `nvidia-smi topo -m` ran.
pub fn read_collect_env(
    text: &str,
    source: &str,
) -> Result<(EnvFacts, Option<GpuTopology>), EnvReadError> {
    let mut facts = EnvFacts {
        source: source.to_string(),
        ..Default::default()
    };
    let mut recognised = false;
    let mut in_gpu_list = false;
    let mut in_environment = false;
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with("====") {
            continue;
        }
        if trimmed == "Environment Variables" {
            in_environment = true;
            continue;
        }
        if in_environment {
            if let Some((name, value)) = trimmed.split_once('=')
                && !name.is_empty()
                && !name.contains(' ')
            {
                let value = if is_secret_name(name) { "***" } else { value };
                facts.variables.insert(name.to_string(), value.to_string());
                continue;
            }
            // A banner's title line (another section after it) ends the list.
            in_environment = trimmed.is_empty();
            continue;
        }
        // `GPU 0: NVIDIA H100 80GB HBM3`, one per line after the heading (or on its line, older layout).
        let gpu_model = |text: &str| {
            let rest = text.trim().strip_prefix("GPU ")?;
            let (index, model) = rest.split_once(':')?;
            index.trim().parse::<u32>().ok()?;
            known(model.split(" (UUID").next().unwrap_or(model))
        };
        if in_gpu_list {
            match gpu_model(trimmed) {
                Some(model) => {
                    facts.gpu_models.push(model);
                    continue;
                }
                None => in_gpu_list = false,
            }
        }
        let Some((key, value)) = field(trimmed) else {
            continue;
        };
        match key {
            "vLLM Version" => facts.vllm_version = known(value),
            "PyTorch version" => facts.torch_version = known(value),
            "CUDA runtime version" => facts.cuda_runtime = known(value),
            "Nvidia driver version" => facts.driver_version = known(value),
            "Model name" => facts.cpu_model = known(value),
            "NUMA node(s)" => facts.numa_nodes = value.parse().ok(),
            "GPU models and configuration" => {
                in_gpu_list = true;
                facts.gpu_models.extend(gpu_model(value));
            }
            _ => continue,
        }
        recognised |= matches!(
            key,
            "vLLM Version" | "PyTorch version" | "GPU models and configuration"
        );
    }
    if !recognised {
        return Err(EnvReadError::NotCollectEnv);
    }
    // The matrix is the one `topo -m` prints, inside its own section.
    let topology = topo::read_topology(text, source).ok();
    Ok((facts, topology))
}

#[cfg(test)]
mod tests {
    use super::*;
    use infer_doctor_core::{GpuLink, PciePath};

    /// The sectioned layout of vLLM 0.9+ (`vllm/collect_env.py`'s `env_info_fmt`), with two PCIe-linked GPUs.
    const SECTIONED: &str = "\
Collecting environment information...
==============================
        System Info
==============================
OS                           : Ubuntu 22.04.5 LTS (x86_64)
==============================
       PyTorch Info
==============================
PyTorch version              : 2.9.1+cu129
==============================
       CUDA / GPU Info
==============================
Is CUDA available            : True
CUDA runtime version         : 12.9.86
GPU models and configuration :
GPU 0: NVIDIA L40S
GPU 1: NVIDIA L40S

Nvidia driver version        : 580.119.02
cuDNN version                : Could not collect
==============================
          CPU Info
==============================
Model name:                              Example CPU 64-Core
NUMA node(s):                            2
==============================
         vLLM Info
==============================
vLLM Version                 : 0.16.0
GPU Topology:
  \tGPU0\tGPU1\tNIC0\tCPU Affinity\tNUMA Affinity\tGPU NUMA ID
GPU0\t X \tNODE\tSYS\t0-31\t0\t\tN/A
GPU1\tNODE\t X \tSYS\t0-31\t0\t\tN/A
NIC0\tSYS\tSYS\t X \t\t\t

Legend:

  X    = Self

==============================
     Environment Variables
==============================
CUDA_VISIBLE_DEVICES=1,0
HF_TOKEN=hf_plantedsecret
VLLM_API_KEY=sk-planted
NCCL_P2P_DISABLE=1
";

    #[test]
    fn the_sectioned_layout_gives_versions_gpus_topology_and_redacted_variables() {
        let (facts, topology) = read_collect_env(SECTIONED, "env.txt").unwrap();
        assert_eq!(facts.vllm_version.as_deref(), Some("0.16.0"));
        assert_eq!(facts.torch_version.as_deref(), Some("2.9.1+cu129"));
        assert_eq!(facts.cuda_runtime.as_deref(), Some("12.9.86"));
        assert_eq!(facts.driver_version.as_deref(), Some("580.119.02"));
        assert_eq!(facts.gpu_models, ["NVIDIA L40S", "NVIDIA L40S"]);
        assert_eq!(facts.cpu_model.as_deref(), Some("Example CPU 64-Core"));
        assert_eq!(facts.numa_nodes, Some(2));
        assert_eq!(facts.variables["CUDA_VISIBLE_DEVICES"], "1,0");
        assert_eq!(facts.variables["NCCL_P2P_DISABLE"], "1");
        assert_eq!(facts.variables["HF_TOKEN"], "***");
        assert_eq!(facts.variables["VLLM_API_KEY"], "***");
        let topology = topology.unwrap();
        assert_eq!(
            topology.gpus[0].links,
            [("GPU1".to_string(), GpuLink::Pcie(PciePath::Node))]
        );
    }

    #[test]
    fn the_older_layout_reads_too_and_other_text_is_refused() {
        let older = "PyTorch version: 2.1.2+cu121\nCUDA runtime version: 12.1.105\n\
                     GPU models and configuration: GPU 0: NVIDIA A100-SXM4-80GB\nGPU 1: NVIDIA A100-SXM4-80GB\n\n\
                     Nvidia driver version: 535.104.05\nvLLM Version: 0.4.0.post1\n";
        let (facts, topology) = read_collect_env(older, "old.txt").unwrap();
        assert_eq!(facts.gpu_models.len(), 2);
        assert_eq!(facts.vllm_version.as_deref(), Some("0.4.0.post1"));
        assert_eq!(facts.driver_version.as_deref(), Some("535.104.05"));
        assert!(topology.is_none());
        assert_eq!(
            read_collect_env("INFO engine started\n", "x"),
            Err(EnvReadError::NotCollectEnv)
        );
    }
}
