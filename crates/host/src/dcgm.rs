//! Reads a dcgm-exporter scrape (`DCGM_FI_DEV_*` per GPU) as the same per-GPU facts nvidia-smi gives, so a
//! Kubernetes GPU node's exporter serves as `--gpu` evidence where nobody can run nvidia-smi on the host.

use std::collections::BTreeMap;

use crate::gpu::Flat;
use infer_doctor_observe::exposition::{Sample, Scrape};

/// The fields read, under the keys the GPU alias table knows them by (the metric name in lower case).
const NUMBERS: [&str; 15] = [
    "DCGM_FI_DEV_GPU_UTIL",
    "DCGM_FI_DEV_FB_USED",
    "DCGM_FI_DEV_POWER_USAGE",
    "DCGM_FI_DEV_ENFORCED_POWER_LIMIT",
    "DCGM_FI_DEV_POWER_MGMT_LIMIT",
    "DCGM_FI_DEV_POWER_MGMT_LIMIT_DEFAULT",
    "DCGM_FI_DEV_SM_CLOCK",
    "DCGM_FI_DEV_MAX_SM_CLOCK",
    "DCGM_FI_DEV_GPU_TEMP",
    "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL",
    "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL",
    "DCGM_FI_DEV_PCIE_LINK_GEN",
    "DCGM_FI_DEV_PCIE_LINK_WIDTH",
    "DCGM_FI_DEV_PCIE_MAX_LINK_GEN",
    "DCGM_FI_DEV_PCIE_MAX_LINK_WIDTH",
];

/// 0/1 fields, written as nvidia-smi's Yes/No so one reading serves both.
const FLAGS: [&str; 2] = [
    "DCGM_FI_DEV_ROW_REMAP_PENDING",
    "DCGM_FI_DEV_ROW_REMAP_FAILURE",
];

/// Bit masks of clock event reasons (NVML's bits), renamed from "throttle" in newer DCGM.
const CLOCK_REASONS: [&str; 2] = [
    "DCGM_FI_DEV_CLOCKS_EVENT_REASONS",
    "DCGM_FI_DEV_CLOCK_THROTTLE_REASONS",
];

/// Framebuffer parts that add up to the GPU's memory (MiB); summed over MIG instances.
const MEMORY_PARTS: [&str; 3] = [
    "DCGM_FI_DEV_FB_USED",
    "DCGM_FI_DEV_FB_FREE",
    "DCGM_FI_DEV_FB_RESERVED",
];

/// Whether a scrape is dcgm-exporter's.
pub(crate) fn is_dcgm(scrape: &Scrape<'_>) -> bool {
    scrape
        .families
        .iter()
        .any(|f| f.name.starts_with("DCGM_FI_DEV_"))
}

/// One flat map per GPU, keyed by host (a federated scrape holds several, whose bus ids repeat) and PCI bus id
/// (else UUID, else the `gpu` index).
pub(crate) fn flatten(scrape: &Scrape<'_>) -> Vec<Flat> {
    let mut gpus: BTreeMap<String, Flat> = BTreeMap::new();
    for sample in scrape.families.iter().flat_map(|f| &f.samples) {
        let field = sample.name;
        if !field.starts_with("DCGM_FI_DEV_") {
            continue;
        }
        let Some(bus_id) = ["pci_bus_id", "UUID", "gpu"]
            .iter()
            .find_map(|key| sample.label(key))
        else {
            continue;
        };
        let host = sample.label("Hostname").unwrap_or_default();
        let flat = gpus
            .entry(format!("{host}/{bus_id}"))
            .or_insert_with(|| Flat {
                bus_id: bus_id.to_string(),
                values: BTreeMap::new(),
            });
        if let Some(model) = sample.label("modelName") {
            flat.values
                .entry("dcgm/model_name".into())
                .or_insert_with(|| model.to_string());
        }
        if sample.label("GPU_I_ID").is_some() {
            flat.values.insert("dcgm/mig".into(), "Enabled".into());
        }
        add_field(flat, field, sample);
    }
    for flat in gpus.values_mut() {
        let parts: Vec<f64> = MEMORY_PARTS
            .iter()
            .filter_map(|part| flat.values.get(&format!("dcgm/sum/{part}"))?.parse().ok())
            .collect();
        // Used and free at least, or the total would be short.
        if parts.len() >= 2 {
            let total: f64 = parts.iter().sum();
            flat.values
                .insert("dcgm/fb_total".into(), total.to_string());
        }
        if let Some(used) = flat.values.get("dcgm/sum/DCGM_FI_DEV_FB_USED").cloned() {
            flat.values.insert(key("DCGM_FI_DEV_FB_USED"), used);
        }
    }
    gpus.into_values().collect()
}

/// The alias-table key of a field.
pub(crate) fn key(field: &str) -> String {
    field.to_ascii_lowercase()
}

fn add_field(flat: &mut Flat, field: &str, sample: &Sample<'_>) {
    let value = sample.value;
    if is_blank(value) {
        return;
    }
    if MEMORY_PARTS.contains(&field) {
        // MIG instances each report their share of the framebuffer.
        let sum = flat.values.entry(format!("dcgm/sum/{field}")).or_default();
        let so_far: f64 = sum.parse().unwrap_or(0.0);
        *sum = (so_far + value).to_string();
    } else if NUMBERS.contains(&field) {
        flat.values.entry(key(field)).or_insert(value.to_string());
    } else if FLAGS.contains(&field) {
        let flag = if value != 0.0 { "Yes" } else { "No" };
        flat.values.entry(key(field)).or_insert(flag.into());
    } else if CLOCK_REASONS.contains(&field) {
        // The alias table reads masks as nvidia-smi's hexadecimal.
        let mask = format!("0x{:x}", value as u64);
        flat.values.entry(key(field)).or_insert(mask);
    }
}

/// DCGM's "no value" sentinels (`dcgm_structs.h`: the INT32, INT64 and FP64 blank values and the NOT_FOUND,
/// NOT_SUPPORTED, NOT_PERMISSIONED just above them), which dcgm-exporter prints as if they were numbers.
fn is_blank(value: f64) -> bool {
    const INT32_BLANK: f64 = 2_147_483_632.0;
    const INT64_BLANK: f64 = 9_223_372_036_854_775_792.0;
    const FP64_BLANK: f64 = 140_737_488_355_328.0;
    !value.is_finite()
        || (INT32_BLANK..=INT32_BLANK + 15.0).contains(&value)
        || value >= INT64_BLANK
        || (FP64_BLANK..=FP64_BLANK + 3.0).contains(&value)
}
