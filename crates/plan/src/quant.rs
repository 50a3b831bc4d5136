//! How a checkpoint stores its weights when they are quantized (`quantization_config` or vLLM's
//! `--quantization`): bits per weight with scales, which layers, and whether matmuls run in FP8.

use serde::Serialize;
use serde_json::{Map, Value};

use crate::HardwareError;

/// Quantized storage of a model's decoder weights. Embeddings, the LM head, norms and routers stay in the
/// activation dtype, as every method below leaves them.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Quantization {
    /// vLLM's name of the method (`fp8`, `awq`, `gptq`, `compressed-tensors`, `mxfp4`, `bitsandbytes`, …).
    pub method: &'static str,
    /// Storage bits per weight, group scales and zero points included.
    pub bits_per_weight: f64,
    /// Only the routed experts are quantized (gpt-oss's MXFP4 checkpoints).
    pub experts_only: bool,
    /// Activations are FP8 too (W8A8), so matmuls run at the GPU's FP8 peak where it has one.
    pub fp8_activations: bool,
}

// Every method vLLM names that the planner can size, with the name vLLM logs.
const METHODS: [&str; 11] = [
    "fp8",
    "fbgemm_fp8",
    "awq",
    "awq_marlin",
    "gptq",
    "gptq_marlin",
    "compressed-tensors",
    "mxfp4",
    "bitsandbytes",
    "modelopt",
    "modelopt_fp4",
];

impl Quantization {
    /// vLLM's `--quantization fp8` on a 16-bit checkpoint: weights cast to FP8 with a per-tensor scale at load,
    /// activations quantized dynamically.
    pub fn online_fp8() -> Quantization {
        Quantization {
            method: "fp8",
            bits_per_weight: 8.0,
            experts_only: false,
            fp8_activations: true,
        }
    }

    /// Integer weights in groups of `group_size` sharing a 16-bit scale and (AWQ, GPTQ) a packed zero point of
    /// the same width as the weights; `group_size` ≤ 0 means one scale per output channel.
    fn grouped_int(
        method: &'static str,
        bits: u64,
        group_size: i64,
        zero_points: bool,
    ) -> Quantization {
        let per_group = 16.0 + if zero_points { bits as f64 } else { 0.0 };
        let overhead = if group_size > 0 {
            per_group / group_size as f64
        } else {
            0.0
        };
        Quantization {
            method,
            bits_per_weight: bits as f64 + overhead,
            experts_only: false,
            fp8_activations: false,
        }
    }

    /// Reads `config.json`'s `quantization_config`; `origin` names the file in errors.
    pub fn from_config(
        origin: &str,
        config: &Map<String, Value>,
    ) -> Result<Quantization, HardwareError> {
        let invalid = |problem: String| HardwareError::InvalidField {
            origin: origin.to_owned(),
            field: "quantization_config",
            problem,
        };
        let method_text = config
            .get("quant_method")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid("has no `quant_method` string".to_owned()))?
            .to_ascii_lowercase();
        let method = Self::method_name(&method_text).ok_or_else(|| {
            invalid(format!(
                "has quant_method {method_text:?}, which the planner cannot size (known: {})",
                METHODS.join(", ")
            ))
        })?;
        let int = |key: &str| config.get(key).and_then(Value::as_i64);
        Ok(match method {
            // NVIDIA ModelOpt names its scheme in `quant_algo`: FP8, or NVFP4 (4-bit values with an FP8 scale
            // per 16, vLLM's `modelopt_fp4`).
            "modelopt" | "modelopt_fp4"
                if method == "modelopt_fp4"
                    || config
                        .get("quant_algo")
                        .and_then(Value::as_str)
                        .is_some_and(|algo| algo.to_ascii_uppercase().contains("FP4")) =>
            {
                Quantization {
                    method: "modelopt_fp4",
                    bits_per_weight: 4.5,
                    experts_only: false,
                    fp8_activations: false,
                }
            }
            "fp8" | "fbgemm_fp8" | "modelopt" => Quantization {
                method,
                ..Self::online_fp8()
            },
            "awq" | "awq_marlin" | "gptq" | "gptq_marlin" => {
                let bits = int("bits").or_else(|| int("w_bit")).unwrap_or(4);
                let group = int("group_size")
                    .or_else(|| int("q_group_size"))
                    .unwrap_or(128);
                if !(2..=8).contains(&bits) {
                    return Err(invalid(format!(
                        "has {bits} bits per weight; expected 2 to 8"
                    )));
                }
                Self::grouped_int(method, bits as u64, group, true)
            }
            "mxfp4" => Quantization {
                // 4-bit values with one 8-bit shared exponent per 32.
                method,
                bits_per_weight: 4.25,
                experts_only: true,
                fp8_activations: false,
            },
            "bitsandbytes" => {
                let four_bit = config.get("load_in_4bit").and_then(Value::as_bool) == Some(true);
                Quantization {
                    method,
                    // NF4 in blocks of 64 with a double-quantized absmax: ~4.13 bits; LLM.int8 ~8.
                    bits_per_weight: if four_bit { 4.13 } else { 8.0 },
                    experts_only: false,
                    fp8_activations: false,
                }
            }
            _ => Self::compressed_tensors(config).map_err(invalid)?,
        })
    }

    fn method_name(text: &str) -> Option<&'static str> {
        METHODS.into_iter().find(|m| *m == text)
    }

    /// compressed-tensors (llm-compressor's format) names its schemes per group of layers; the first group's
    /// weights decide the storage.
    fn compressed_tensors(config: &Map<String, Value>) -> Result<Quantization, String> {
        let group = config
            .get("config_groups")
            .and_then(Value::as_object)
            .and_then(|groups| groups.values().next())
            .ok_or("has no `config_groups` entry")?;
        let weights = group
            .get("weights")
            .ok_or("config_groups: its first group has no `weights`")?;
        let bits = weights
            .get("num_bits")
            .and_then(Value::as_u64)
            .ok_or("config_groups: weights.num_bits is missing")?;
        let float = weights.get("type").and_then(Value::as_str) == Some("float");
        let fp8_activations = group
            .get("input_activations")
            .filter(|a| !a.is_null())
            .is_some_and(|a| {
                a.get("num_bits").and_then(Value::as_u64) == Some(8)
                    && a.get("type").and_then(Value::as_str) == Some("float")
            });
        if float && bits == 8 {
            return Ok(Quantization {
                method: "compressed-tensors",
                fp8_activations,
                ..Self::online_fp8()
            });
        }
        let group_size = weights
            .get("group_size")
            .and_then(Value::as_i64)
            .unwrap_or(-1);
        let zero_points = weights.get("symmetric").and_then(Value::as_bool) == Some(false);
        Ok(Quantization {
            fp8_activations,
            ..Self::grouped_int("compressed-tensors", bits, group_size, zero_points)
        })
    }

    /// vLLM's `--quantization NAME` given on the command line for a checkpoint that is not quantized; only FP8
    /// quantizes at load time.
    pub fn from_flag(name: &str) -> Result<Quantization, HardwareError> {
        match name.trim().to_ascii_lowercase().as_str() {
            "fp8" => Ok(Self::online_fp8()),
            other => Err(HardwareError::InvalidSetting {
                setting: "quantization",
                value: other.to_owned(),
                expected: "fp8 (other methods need a checkpoint quantized with them: give its config.json)"
                    .to_owned(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<Quantization, HardwareError> {
        let value: Value = serde_json::from_str(json).unwrap();
        Quantization::from_config("config.json", value.as_object().unwrap())
    }

    #[test]
    fn methods_store_their_bits_with_scales() {
        let fp8 = parse(r#"{"quant_method": "fp8", "activation_scheme": "dynamic", "weight_block_size": [128, 128]}"#)
            .unwrap();
        assert_eq!((fp8.bits_per_weight, fp8.fp8_activations), (8.0, true));
        // AWQ int4, group 128: a 16-bit scale and a 4-bit zero per 128 weights.
        let awq =
            parse(r#"{"quant_method": "awq", "bits": 4, "group_size": 128, "zero_point": true}"#)
                .unwrap();
        assert!((awq.bits_per_weight - (4.0 + 20.0 / 128.0)).abs() < 1e-12);
        assert!(!awq.fp8_activations);
        let gpt_oss = parse(
            r#"{"quant_method": "mxfp4", "modules_to_not_convert": ["model.layers.*.self_attn"]}"#,
        )
        .unwrap();
        assert!(gpt_oss.experts_only && gpt_oss.bits_per_weight == 4.25);
        let w8a8 = parse(
            r#"{"quant_method": "compressed-tensors", "config_groups": {"group_0": {"targets": ["Linear"],
                "weights": {"num_bits": 8, "type": "float", "strategy": "channel", "symmetric": true},
                "input_activations": {"num_bits": 8, "type": "float", "dynamic": true}}}}"#,
        )
        .unwrap();
        assert_eq!((w8a8.bits_per_weight, w8a8.fp8_activations), (8.0, true));
        let w4a16 = parse(
            r#"{"quant_method": "compressed-tensors", "config_groups": {"group_0": {
                "weights": {"num_bits": 4, "type": "int", "group_size": 128, "symmetric": true},
                "input_activations": null}}}"#,
        )
        .unwrap();
        assert!((w4a16.bits_per_weight - (4.0 + 16.0 / 128.0)).abs() < 1e-12);
        let nvfp4 =
            parse(r#"{"quant_method": "modelopt", "quant_algo": "NVFP4", "group_size": 16}"#)
                .unwrap();
        assert_eq!((nvfp4.method, nvfp4.bits_per_weight), ("modelopt_fp4", 4.5));
        let modelopt_fp8 = parse(r#"{"quant_method": "modelopt", "quant_algo": "FP8"}"#).unwrap();
        assert_eq!(modelopt_fp8.bits_per_weight, 8.0);
    }

    #[test]
    fn unknown_methods_are_named_errors() {
        let error = parse(r#"{"quant_method": "hqq"}"#).unwrap_err().to_string();
        assert!(
            error.starts_with("config.json: field `quantization_config`"),
            "{error}"
        );
        assert!(error.contains("\"hqq\""), "{error}");
        assert!(parse(r#"{"bits": 4}"#).is_err());
        assert!(Quantization::from_flag("awq").is_err());
        assert_eq!(
            Quantization::from_flag("FP8").unwrap(),
            Quantization::online_fp8()
        );
    }
}
