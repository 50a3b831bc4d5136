//! What a model on a GPU could do at best, in the form `diagnose` judges against: its rules say "slower than
//! the hardware allows" only with these floors, so they come from the planner's own model and catalog.

use infer_doctor_core::HardwareFacts;

use crate::{Calibration, CostModel, Deployment, Gpu, HardwareError, ModelShape};

/// The floors of `model` on `tensor_parallel` GPUs served with vLLM's defaults (`--dtype auto`, the GPU's own
/// link).
pub fn hardware_facts(
    model: &ModelShape,
    gpu: &Gpu,
    tensor_parallel: u32,
) -> Result<HardwareFacts, HardwareError> {
    let deployment = Deployment::new(model, gpu, tensor_parallel);
    let cost = CostModel::new(model, gpu, &deployment, Calibration::ideal())?;
    Ok(HardwareFacts {
        gpu: gpu.name.to_owned(),
        model: model.name.clone(),
        tensor_parallel,
        decode_floor_seconds: cost.decode_floor_seconds(),
        prefill_token_seconds: cost.prefill_token_compute_seconds(),
        vram_bytes: gpu.memory_bytes as f64,
        weight_bytes: deployment.weight_bytes_per_rank(model),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{llama_8b, within};

    #[test]
    fn llama_8b_on_h100_reads_its_weights_in_4_8_ms() {
        let facts = hardware_facts(&llama_8b(), &Gpu::by_name("h100").unwrap(), 1).unwrap();
        assert!(
            within(facts.decode_floor_seconds, 4.79e-3, 0.01),
            "{facts:?}"
        );
        assert!(within(facts.weight_bytes, 16.06e9, 0.001));
        // 2 FLOPs per weight per token at the H100's 989 dense BF16 TFLOP/s, over the 6.98 G weights a prompt
        // token multiplies: not the embedding (a lookup) nor the LM head (vLLM computes logits for the last
        // token only): 14.1 µs.
        assert!(
            within(facts.prefill_token_seconds, 14.1e-6, 0.01),
            "{facts:?}"
        );
        let tp2 = hardware_facts(&llama_8b(), &Gpu::by_name("h100").unwrap(), 2).unwrap();
        assert!(within(tp2.weight_bytes, 8.03e9, 0.001));
        assert!(hardware_facts(&llama_8b(), &Gpu::by_name("h100").unwrap(), 3).is_err());
    }
}
