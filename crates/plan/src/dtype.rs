//! Number formats for weights, activations and the KV cache, with the spellings of `config.json` and of
//! vLLM's flags, because bytes per element drive every memory and bandwidth figure.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

use crate::HardwareError;

/// Number formats for weights, activations and the KV cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Dtype {
    Float32,
    Float16,
    Bfloat16,
    Fp8,
}

impl Dtype {
    pub fn bytes(self) -> u64 {
        match self {
            Dtype::Float32 => 4,
            Dtype::Float16 | Dtype::Bfloat16 => 2,
            Dtype::Fp8 => 1,
        }
    }

    /// The dtype activations (and so all-reduces and vLLM's `kv_cache_dtype=auto`) use: FP8 checkpoints
    /// keep 16-bit activations.
    pub fn activation_dtype(self) -> Dtype {
        match self {
            Dtype::Fp8 => Dtype::Bfloat16,
            other => other,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Dtype::Float32 => "float32",
            Dtype::Float16 => "float16",
            Dtype::Bfloat16 => "bfloat16",
            Dtype::Fp8 => "fp8",
        }
    }
}

impl fmt::Display for Dtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Dtype {
    type Err = HardwareError;

    /// Accepts `config.json`'s `torch_dtype` spellings and vLLM's `--dtype` / `--kv-cache-dtype` ones.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let lower = text.trim().to_ascii_lowercase();
        let lower = lower.strip_prefix("torch.").unwrap_or(&lower);
        match lower {
            "float32" | "fp32" | "f32" | "float" => Ok(Dtype::Float32),
            "float16" | "fp16" | "f16" | "half" => Ok(Dtype::Float16),
            "bfloat16" | "bf16" => Ok(Dtype::Bfloat16),
            _ if lower.starts_with("fp8") || lower.starts_with("float8") => Ok(Dtype::Fp8),
            _ => Err(HardwareError::UnknownDtype(text.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dtype_parsing() {
        assert_eq!("torch.bfloat16".parse::<Dtype>().unwrap(), Dtype::Bfloat16);
        assert_eq!("FP8_E4M3".parse::<Dtype>().unwrap(), Dtype::Fp8);
        assert_eq!("half".parse::<Dtype>().unwrap(), Dtype::Float16);
        assert!(matches!(
            "int3".parse::<Dtype>(),
            Err(HardwareError::UnknownDtype(_))
        ));
    }
}
