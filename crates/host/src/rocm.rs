//! Reads `rocm-smi --showallinfo --json` into the same GPU facts nvidia-smi gives, so the hardware rules judge
//! an AMD host's GPUs as they judge NVIDIA's.

use infer_doctor_core::GpuState;
use serde_json::{Map, Value};

use crate::gpu::GpuReadError;

const FORMAT: &str = "rocm-smi --json";
const BYTES_PER_MIB: f64 = 1024.0 * 1024.0;

/// Whether `text` is rocm-smi's JSON: one object, after any `WARNING:` lines rocm-smi prints first (on a host
/// whose GPUs it cannot see, say).
pub(crate) fn is_rocm_smi_json(text: &str) -> bool {
    let json = without_warnings(text);
    json.starts_with('{') && (json.contains("\"card") || json.contains("\"system\""))
}

fn without_warnings(text: &str) -> &str {
    let mut rest = text.trim_start();
    while rest.starts_with("WARNING:") {
        rest = rest
            .split_once('\n')
            .map_or("", |(_, after)| after)
            .trim_start();
    }
    rest
}

/// Every GPU (`card0`, `card1`, …) in one `rocm-smi --json` output; `source` names the file for the facts'
/// provenance. Keys this does not know are ignored, and `N/A` is read as unknown.
pub fn read_rocm_smi_json(text: &str, source: &str) -> Result<Vec<GpuState>, GpuReadError> {
    let doc: Value =
        serde_json::from_str(without_warnings(text)).map_err(|e| GpuReadError::Syntax {
            line: e.line(),
            message: format!("not {FORMAT} output: {e}"),
        })?;
    let Value::Object(cards) = doc else {
        return Err(malformed("the output is not one JSON object"));
    };
    let mut gpus = Vec::new();
    for (card, fields) in cards
        .iter()
        .filter(|(key, _)| key.strip_prefix("card").is_some_and(is_index))
    {
        let Value::Object(fields) = fields else {
            return Err(malformed(&format!("`{card}` is not an object")));
        };
        gpus.push(state(card, fields, &format!("{source} ({FORMAT})")));
    }
    // Keys sort as text (`card10` before `card2`): GPUs go in their index's order.
    gpus.sort_by_key(|(index, _)| *index);
    if gpus.is_empty() {
        return Err(GpuReadError::NoGpu(FORMAT));
    }
    Ok(gpus.into_iter().map(|(_, gpu)| gpu).collect())
}

fn is_index(digits: &str) -> bool {
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

fn malformed(what: &str) -> GpuReadError {
    GpuReadError::Syntax {
        line: 1,
        message: format!("not {FORMAT} output: {what}"),
    }
}

/// One card's facts, with its index to order the cards by.
fn state(card: &str, fields: &Map<String, Value>, source: &str) -> (u64, GpuState) {
    let text = |key: &str| {
        fields
            .get(key)
            .and_then(|value| match value {
                Value::String(s) => Some(s.trim().to_string()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            })
            .filter(|s| !s.is_empty() && s != "N/A")
    };
    // rocm-smi renamed keys between releases (ROCm 6's `Card Series` was `Card series`): the first one present.
    let first = |keys: &[&str]| keys.iter().find_map(|key| text(key));
    let number = |keys: &[&str]| first(keys).and_then(|s| s.parse::<f64>().ok());
    let index = card["card".len()..].parse().unwrap_or(u64::MAX);
    let gpu = GpuState {
        // Kept as rocm-smi writes it (`0000:C1:00.0`); a trailing ` --> SN: …` some builds add is not the address.
        bus_id: text("PCI Bus")
            .and_then(|bus| bus.split_whitespace().next().map(str::to_string))
            .unwrap_or_else(|| card.to_string()),
        name: first(&[
            "Card Series",
            "Card series",
            "Device Name",
            "Card Model",
            "Card model",
            "GPU ID",
            "Device ID",
        ])
        .unwrap_or_else(|| card.to_string()),
        source: source.to_string(),
        utilization_percent: number(&["GPU use (%)"]),
        memory_used_mib: number(&["VRAM Total Used Memory (B)"]).map(|b| b / BYTES_PER_MIB),
        memory_total_mib: number(&["VRAM Total Memory (B)"]).map(|b| b / BYTES_PER_MIB),
        // ROCm 6 reports the socket's current power where ROCm 5 reported an average.
        power_draw_watts: number(&[
            "Average Graphics Package Power (W)",
            "Current Socket Graphics Package Power (W)",
        ]),
        // Despite its name, rocm-smi fills this from the power cap the driver enforces now.
        power_limit_watts: number(&["Max Graphics Package Power (W)"]),
        sm_clock_mhz: text("sclk clock speed:").and_then(|s| megahertz(&s)),
        // `500Mhz - 1700Mhz`: the top of the range the driver lets the clock run in.
        max_sm_clock_mhz: text("Valid sclk range")
            .and_then(|range| range.rsplit('-').next().and_then(megahertz)),
        // The edge sensor, nearest in meaning to nvidia-smi's GPU temperature; junction (the hottest spot, which
        // runs 10-20 °C above it) only where a GPU has no edge sensor (MI300X reports N/A).
        temperature_c: number(&[
            "Temperature (Sensor edge) (C)",
            "Temperature (Sensor junction) (C)",
        ]),
        ..GpuState::default()
    };
    (index, gpu)
}

/// `(1700Mhz)` or `1700Mhz` in MHz.
fn megahertz(text: &str) -> Option<f64> {
    let value = text.trim().trim_start_matches('(').trim_end_matches(')');
    let digits = value
        .strip_suffix("Mhz")
        .or_else(|| value.strip_suffix("MHz"))?;
    digits.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> String {
        let path = format!("{}/../../fixtures/gpu/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    #[test]
    fn a_busy_mi250x_reads_into_the_nvidia_facts() {
        let text = fixture("mi250x_rocm_smi_a.json");
        assert!(is_rocm_smi_json(&text));
        let gpus = read_rocm_smi_json(&text, "gpu/rocm-smi.json").unwrap();
        assert_eq!(gpus.len(), 1);
        let gpu = &gpus[0];
        assert_eq!(gpu.bus_id, "0000:C1:00.0");
        // The excerpt stops before the product-name keys: the device id names it.
        assert_eq!(gpu.name, "0x7408");
        assert_eq!(gpu.source, "gpu/rocm-smi.json (rocm-smi --json)");
        assert_eq!(gpu.utilization_percent, Some(100.0));
        assert_eq!(gpu.power_draw_watts, Some(144.0));
        assert_eq!(gpu.power_limit_watts, Some(560.0));
        assert_eq!(gpu.sm_clock_mhz, Some(1700.0));
        assert_eq!(gpu.temperature_c, Some(56.0), "edge, not junction (61)");
        // What this output does not say stays unknown.
        assert_eq!(gpu.memory_total_mib, None);
        assert_eq!(gpu.max_sm_clock_mhz, None);
        assert_eq!(gpu.ecc_uncorrected_volatile, None);
        assert_eq!(gpu.pcie_gen, None);
    }

    #[test]
    fn rocm_6_key_names_and_na_values_are_read() {
        let gpus = read_rocm_smi_json(&fixture("radeon780m_rocm_smi_a.json"), "f").unwrap();
        let gpu = &gpus[0];
        assert_eq!(gpu.bus_id, "0000:C4:00.0");
        assert_eq!(gpu.name, "Phoenix3");
        assert_eq!(gpu.power_draw_watts, Some(7.222));
        assert_eq!(gpu.utilization_percent, Some(19.0));
        assert_eq!(gpu.sm_clock_mhz, Some(800.0));
        assert_eq!(gpu.temperature_c, Some(31.0));
        assert_eq!(gpu.power_limit_watts, None);
    }

    #[test]
    fn vram_bytes_clock_range_and_junction_only_temperature() {
        // Keys the fixtures lack, written here: the VRAM bytes an MI300X reports (the values from
        // ROCm/legacy-rocm-build#4750), an N/A edge sensor (as MI300X's), the sclk range ROCm 5's `-a` lists (as in
        // wandb's MI210 test data), a number not in quotes; cards out of text order, a `system` entry beside them.
        let text = r#"WARNING: One or more commands failed
{"card10": {"PCI Bus": "0000:DF:00.0"},
 "card2": {"Card Series": "AMD Instinct MI300X OAM", "PCI Bus": "0000:1B:00.0 --> SN: X",
   "VRAM Total Memory (B)": "206141652992", "VRAM Total Used Memory (B)": "297771008",
   "Temperature (Sensor edge) (C)": "N/A", "Temperature (Sensor junction) (C)": "43.0",
   "Valid sclk range": "500Mhz - 2100Mhz", "GPU use (%)": 7},
 "system": {"Driver version": "6.8.5"}}"#;
        assert!(is_rocm_smi_json(text));
        let gpus = read_rocm_smi_json(text, "f").unwrap();
        assert_eq!(gpus.len(), 2);
        let gpu = &gpus[0];
        assert_eq!(
            (gpu.name.as_str(), gpu.bus_id.as_str()),
            ("AMD Instinct MI300X OAM", "0000:1B:00.0")
        );
        assert_eq!(gpu.memory_total_mib, Some(206141652992.0 / BYTES_PER_MIB));
        assert!((gpu.memory_used_mib.unwrap() - 283.97).abs() < 0.01);
        assert_eq!(gpu.temperature_c, Some(43.0));
        assert_eq!(gpu.max_sm_clock_mhz, Some(2100.0));
        assert_eq!(gpu.utilization_percent, Some(7.0));
        assert_eq!(
            (gpus[1].name.as_str(), gpus[1].bus_id.as_str()),
            ("card10", "0000:DF:00.0")
        );
    }

    #[test]
    fn malformed_output_says_what_is_wrong() {
        let cut = &fixture("radeon780m_rocm_smi_a.json")[..400];
        let error = read_rocm_smi_json(cut, "f").unwrap_err().to_string();
        assert!(error.starts_with("line "), "{error}");
        assert!(
            error.contains("not rocm-smi --json output: EOF while parsing"),
            "{error}"
        );
        let error = read_rocm_smi_json(r#"{"card0": "flat"}"#, "f").unwrap_err();
        assert!(
            error.to_string().contains("`card0` is not an object"),
            "{error}"
        );
        let error = read_rocm_smi_json(r#"{"system": {"Driver version": "6.3.6"}}"#, "f");
        assert!(
            matches!(error, Err(GpuReadError::NoGpu(FORMAT))),
            "{error:?}"
        );
        assert!(!is_rocm_smi_json("<?xml version=\"1.0\" ?>"));
    }
}
