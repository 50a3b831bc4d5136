//! Reads what nvidia-smi says about each GPU, from any of its three outputs (`-q` text, `-q -x` XML,
//! `--query-gpu=… --format=csv`), so a capture taken on the GPU host can join the evidence.
//!
//! Each format is flattened to one map of paths per GPU (`clocks/sm`, `clocks.current.sm`, …); one table of
//! aliases then reads every fact from whichever path the format and driver version use.

use std::collections::BTreeMap;

use infer_doctor_core::{ClockReason, GpuState};

#[derive(Debug, thiserror::Error)]
pub enum GpuReadError {
    #[error("line {line}: {message}")]
    Syntax { line: usize, message: String },
    #[error(
        "not nvidia-smi output: expected `nvidia-smi -q`, `nvidia-smi -q -x`, `nvidia-smi --query-gpu=… \
         --format=csv` (with its header line), `nvidia-smi topo -m`, `nvidia-smi nvlink -s`, `rocm-smi \
         --showallinfo --json`, a kernel log or a dcgm-exporter scrape"
    )]
    UnknownFormat,
    #[error("no GPU in this {0} output")]
    NoGpu(&'static str),
}

/// One GPU's values by path, as the format spells them.
pub(crate) struct Flat {
    pub bus_id: String,
    pub values: BTreeMap<String, String>,
}

/// Every GPU in one capture of GPU state: a dcgm-exporter scrape, rocm-smi's JSON, or any nvidia-smi output.
pub fn read_capture(text: &str, source: &str) -> Result<Vec<GpuState>, GpuReadError> {
    if crate::rocm::is_rocm_smi_json(text) {
        return crate::rocm::read_rocm_smi_json(text, source);
    }
    let scrape = infer_doctor_observe::exposition::parse(text);
    if !crate::dcgm::is_dcgm(&scrape) {
        return read_nvidia_smi(text, source);
    }
    const FORMAT: &str = "dcgm-exporter";
    let flats = crate::dcgm::flatten(&scrape);
    if flats.is_empty() {
        return Err(GpuReadError::NoGpu(FORMAT));
    }
    Ok(flats
        .iter()
        .map(|flat| state(flat, &format!("{source} ({FORMAT})")))
        .collect())
}

/// Every GPU in one nvidia-smi output; `source` names the file for the facts' provenance.
pub fn read_nvidia_smi(text: &str, source: &str) -> Result<Vec<GpuState>, GpuReadError> {
    let start = text.trim_start();
    let (format, flats) = if start.starts_with("<?xml") || start.starts_with("<nvidia_smi_log") {
        ("nvidia-smi -q -x", flatten_xml(text)?)
    } else if text.lines().any(is_text_gpu_header) {
        ("nvidia-smi -q", flatten_text(text))
    } else if start.lines().next().is_some_and(is_csv_header) {
        ("nvidia-smi --query-gpu", flatten_csv(text)?)
    } else {
        return Err(GpuReadError::UnknownFormat);
    };
    if flats.is_empty() {
        return Err(GpuReadError::NoGpu(format));
    }
    Ok(flats
        .iter()
        .map(|flat| state(flat, &format!("{source} ({format})")))
        .collect())
}

/// `GPU 00000000:00:09.0`, the line that opens a GPU in the text output.
fn is_text_gpu_header(line: &str) -> bool {
    line.strip_prefix("GPU ").is_some_and(|id| {
        id.contains(':')
            && id
                .chars()
                .all(|c| c.is_ascii_hexdigit() || ":.".contains(c))
    })
}

fn is_csv_header(line: &str) -> bool {
    line.contains(',')
        && line
            .split(',')
            .any(|f| matches!(f.trim(), "name" | "pci.bus_id" | "index" | "uuid"))
}

/// Lower case, runs of anything but letters and digits as one `_`: "GPU T.Limit Temp" → `gpu_t_limit_temp`.
fn normalize(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for c in key.trim().chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.is_empty() && !out.ends_with('_') {
            out.push('_');
        }
    }
    out.trim_end_matches('_').to_string()
}

/// The text output nests by four-space indentation; a line without a colon opens a section, and a key line
/// can have children too ("HW Slowdown" holds "HW Thermal Slowdown").
fn flatten_text(text: &str) -> Vec<Flat> {
    let mut flats: Vec<Flat> = Vec::new();
    let mut sections: Vec<String> = Vec::new();
    for line in text.lines() {
        if is_text_gpu_header(line) {
            flats.push(Flat {
                bus_id: line["GPU ".len()..].trim().to_string(),
                values: BTreeMap::new(),
            });
            sections.clear();
            continue;
        }
        let Some(flat) = flats.last_mut() else {
            continue;
        };
        let indent = line.len() - line.trim_start().len();
        if line.trim().is_empty() || indent == 0 {
            continue;
        }
        let depth = indent.saturating_sub(1) / 4;
        // Depth can skip a level in hand-edited pastes; padding keeps the stack aligned with the indentation.
        sections.resize(depth, String::new());
        let (key, value) = match line.split_once(':') {
            Some((key, value)) => (key, Some(value.trim())),
            None => (line, None),
        };
        let key = normalize(key);
        let path = sections
            .iter()
            .chain([&key])
            .cloned()
            .collect::<Vec<_>>()
            .join("/");
        if let Some(value) = value {
            flat.values.entry(path).or_insert_with(|| value.to_string());
        }
        sections.push(key);
    }
    flats
}

/// Leaves of each `<gpu>` element by their path below it; per-process and MIG-instance lists are left out,
/// as they describe parts of the GPU.
fn flatten_xml(text: &str) -> Result<Vec<Flat>, GpuReadError> {
    let options = roxmltree::ParsingOptions {
        allow_dtd: true,
        ..Default::default()
    };
    let document = roxmltree::Document::parse_with_options(text, options).map_err(|e| {
        GpuReadError::Syntax {
            line: e.pos().row as usize,
            message: e.to_string(),
        }
    })?;
    let gpus = document
        .root_element()
        .children()
        .filter(|n| n.has_tag_name("gpu"));
    Ok(gpus
        .map(|gpu| {
            let mut values = BTreeMap::new();
            collect_leaves(gpu, "", &mut values);
            Flat {
                bus_id: gpu.attribute("id").unwrap_or_default().to_string(),
                values,
            }
        })
        .collect())
}

fn collect_leaves(node: roxmltree::Node, prefix: &str, values: &mut BTreeMap<String, String>) {
    for child in node.children().filter(|n| n.is_element()) {
        let name = child.tag_name().name();
        if matches!(name, "processes" | "mig_devices" | "supported_clocks") {
            continue;
        }
        let path = if prefix.is_empty() {
            name.to_string()
        } else {
            format!("{prefix}/{name}")
        };
        if child.children().any(|n| n.is_element()) {
            collect_leaves(child, &path, values);
        } else {
            values.insert(path, child.text().unwrap_or_default().trim().to_string());
        }
    }
}

/// A header of field names (units in brackets, dropped), then one row per GPU.
fn flatten_csv(text: &str) -> Result<Vec<Flat>, GpuReadError> {
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    let Some((_, header)) = lines.next() else {
        return Ok(Vec::new());
    };
    let fields: Vec<String> = header
        .split(',')
        .map(|f| f.split(" [").next().unwrap_or(f).trim().to_string())
        .collect();
    lines
        .map(|(index, line)| {
            let cells: Vec<&str> = line.split(',').map(str::trim).collect();
            if cells.len() != fields.len() {
                return Err(GpuReadError::Syntax {
                    line: index + 1,
                    message: format!(
                        "{} values for {} fields in the header",
                        cells.len(),
                        fields.len()
                    ),
                });
            }
            let values: BTreeMap<String, String> = fields
                .iter()
                .cloned()
                .zip(cells.iter().map(|c| c.to_string()))
                .collect();
            let bus_id = paths::BUS_ID
                .iter()
                .find_map(|field| values.get(*field).filter(|v| available(v)))
                .cloned()
                .unwrap_or_default();
            Ok(Flat { bus_id, values })
        })
        .collect()
}

/// Where each fact lives: `-q` text paths, `-q -x` XML paths (several DTD versions), `--query-gpu` fields,
/// dcgm-exporter fields (see `dcgm.rs`).
mod paths {
    pub const NAME: &[&str] = &["product_name", "name", "dcgm/model_name"];
    pub const UTILIZATION: &[&str] = &[
        "utilization/gpu",
        "utilization/gpu_util",
        "utilization.gpu",
        "dcgm_fi_dev_gpu_util",
    ];
    pub const MEMORY_USED: &[&str] =
        &["fb_memory_usage/used", "memory.used", "dcgm_fi_dev_fb_used"];
    pub const MEMORY_TOTAL: &[&str] = &["fb_memory_usage/total", "memory.total", "dcgm/fb_total"];
    pub const POWER_DRAW: &[&str] = &[
        "gpu_power_readings/average_power_draw",
        "gpu_power_readings/power_draw",
        "gpu_power_readings/instantaneous_power_draw",
        "gpu_power_readings/instant_power_draw",
        "power_readings/power_draw",
        "power.draw",
        "power.draw.average",
        "dcgm_fi_dev_power_usage",
    ];
    pub const POWER_LIMIT: &[&str] = &[
        "gpu_power_readings/current_power_limit",
        "power_readings/enforced_power_limit",
        "power_readings/power_limit",
        "enforced.power.limit",
        "power.limit",
        "dcgm_fi_dev_enforced_power_limit",
        "dcgm_fi_dev_power_mgmt_limit",
    ];
    pub const DEFAULT_POWER_LIMIT: &[&str] = &[
        "gpu_power_readings/default_power_limit",
        "power_readings/default_power_limit",
        "power.default_limit",
        "dcgm_fi_dev_power_mgmt_limit_default",
    ];
    pub const SM_CLOCK: &[&str] = &[
        "clocks/sm",
        "clocks/sm_clock",
        "clocks.current.sm",
        "clocks.sm",
        "dcgm_fi_dev_sm_clock",
    ];
    pub const MAX_SM_CLOCK: &[&str] = &[
        "max_clocks/sm",
        "max_clocks/sm_clock",
        "clocks.max.sm",
        "dcgm_fi_dev_max_sm_clock",
    ];
    pub const TEMPERATURE: &[&str] = &[
        "temperature/gpu_current_temp",
        "temperature/gpu_temp",
        "temperature.gpu",
        "dcgm_fi_dev_gpu_temp",
    ];
    pub const ECC_UNCORRECTED_VOLATILE: &[&str] = &[
        "ecc.errors.uncorrected.volatile.total",
        "dcgm_fi_dev_ecc_dbe_vol_total",
    ];
    pub const ECC_CORRECTED_VOLATILE: &[&str] = &[
        "ecc.errors.corrected.volatile.total",
        "dcgm_fi_dev_ecc_sbe_vol_total",
    ];
    pub const REMAP_PENDING: &[&str] = &[
        "remapped_rows/pending",
        "remapped_rows/remapped_row_pending",
        "remapped_rows.pending",
        "dcgm_fi_dev_row_remap_pending",
    ];
    pub const REMAP_FAILURE: &[&str] = &[
        "remapped_rows/remapping_failure_occurred",
        "remapped_rows/remapped_row_failure",
        "remapped_rows.failure",
        "dcgm_fi_dev_row_remap_failure",
    ];
    pub const RETIRED_PENDING: &[&str] = &[
        "retired_pages/pending_page_blacklist",
        "retired_pages/pending_page_retirement",
        "retired_pages/pending_blacklist",
        "retired_pages/pending_retirement",
        "retired_pages.pending",
    ];
    // The system's maximum (the lower of the GPU's and the host's) before the GPU's own, so a gen-5 GPU in a
    // gen-4 slot is not called degraded.
    pub const PCIE_GEN: &[&str] = &[
        "pci/gpu_link_info/pcie_generation/current",
        "pci/pci_gpu_link_info/pcie_gen/current_link_gen",
        "pcie.link.gen.current",
        "pcie.link.gen.gpucurrent",
        "dcgm_fi_dev_pcie_link_gen",
    ];
    pub const PCIE_GEN_MAX: &[&str] = &[
        "pci/gpu_link_info/pcie_generation/max",
        "pci/pci_gpu_link_info/pcie_gen/max_link_gen",
        "pcie.link.gen.max",
        "pcie.link.gen.gpumax",
        "dcgm_fi_dev_pcie_max_link_gen",
    ];
    pub const PCIE_WIDTH: &[&str] = &[
        "pci/gpu_link_info/link_width/current",
        "pci/pci_gpu_link_info/link_widths/current_link_width",
        "pcie.link.width.current",
        "dcgm_fi_dev_pcie_link_width",
    ];
    pub const PCIE_WIDTH_MAX: &[&str] = &[
        "pci/gpu_link_info/link_width/max",
        "pci/pci_gpu_link_info/link_widths/max_link_width",
        "pcie.link.width.max",
        "dcgm_fi_dev_pcie_max_link_width",
    ];
    pub const MEMORY_REPAIR_PENDING: &[&str] = &[
        "ecc_errors/channel_repair_pending",
        "ecc_errors/tpc_repair_pending",
    ];
    pub const UNREPAIRABLE_MEMORY: &[&str] = &["ecc_errors/unrepairable_memory"];
    pub const RESET_REQUIRED: &[&str] = &[
        "gpu_reset_status/reset_required",
        "gpu_reset_status/drain_and_reset_recommended",
    ];
    pub const BUS_ID: &[&str] = &["pci.bus_id", "index", "uuid"];
    pub const PERSISTENCE: &[&str] = &["persistence_mode"];
    pub const MIG: &[&str] = &[
        "mig_mode/current",
        "mig_mode/current_mig",
        "mig.mode.current",
        "dcgm/mig",
    ];
    pub const RECOVERY: &[&str] = &["gpu_recovery_action"];
    pub const CLOCK_REASON_MASK: &[&str] = &[
        "clocks_event_reasons.active",
        "clocks_throttle_reasons.active",
        "dcgm_fi_dev_clocks_event_reasons",
        "dcgm_fi_dev_clock_throttle_reasons",
    ];
}

fn state(flat: &Flat, source: &str) -> GpuState {
    let text = |aliases: &[&str]| {
        aliases
            .iter()
            .find_map(|a| flat.values.get(*a).filter(|v| available(v)))
            .cloned()
    };
    let number = |aliases: &[&str]| text(aliases).and_then(|v| leading_number(&v));
    let flag = |aliases: &[&str]| text(aliases).and_then(|v| yes_no(&v));
    // Several flags for one fact ("channel or TPC repair pending"): any yes is yes.
    let any_flag = |aliases: &[&str]| {
        aliases
            .iter()
            .filter_map(|a| flat.values.get(*a).and_then(|v| yes_no(v)))
            .reduce(|a, b| a || b)
    };
    GpuState {
        bus_id: flat.bus_id.clone(),
        name: text(paths::NAME).unwrap_or_default(),
        source: source.to_string(),
        utilization_percent: number(paths::UTILIZATION),
        memory_used_mib: number(paths::MEMORY_USED),
        memory_total_mib: number(paths::MEMORY_TOTAL),
        power_draw_watts: number(paths::POWER_DRAW),
        power_limit_watts: number(paths::POWER_LIMIT),
        default_power_limit_watts: number(paths::DEFAULT_POWER_LIMIT),
        sm_clock_mhz: number(paths::SM_CLOCK),
        max_sm_clock_mhz: number(paths::MAX_SM_CLOCK),
        temperature_c: number(paths::TEMPERATURE),
        clock_reasons: clock_reasons(flat, text(paths::CLOCK_REASON_MASK)),
        ecc_uncorrected_volatile: number(paths::ECC_UNCORRECTED_VOLATILE)
            .or_else(|| ecc_volatile(flat, true)),
        ecc_corrected_volatile: number(paths::ECC_CORRECTED_VOLATILE)
            .or_else(|| ecc_volatile(flat, false)),
        remapped_rows_pending: flag(paths::REMAP_PENDING),
        remapped_rows_failure: flag(paths::REMAP_FAILURE),
        retired_pages_pending: flag(paths::RETIRED_PENDING),
        memory_repair_pending: any_flag(paths::MEMORY_REPAIR_PENDING),
        unrepairable_memory: flag(paths::UNREPAIRABLE_MEMORY),
        reset_required: any_flag(paths::RESET_REQUIRED),
        pcie_gen: number(paths::PCIE_GEN),
        pcie_gen_max: number(paths::PCIE_GEN_MAX),
        pcie_width: number(paths::PCIE_WIDTH),
        pcie_width_max: number(paths::PCIE_WIDTH_MAX),
        persistence_mode: flag(paths::PERSISTENCE),
        mig_enabled: flag(paths::MIG),
        recovery_action: text(paths::RECOVERY),
    }
}

/// nvidia-smi writes `N/A`, `[N/A]`, `[Not Supported]` or `Requested functionality has been deprecated` for
/// what the GPU or driver cannot tell.
fn available(value: &str) -> bool {
    let value = value.trim();
    !(value.is_empty()
        || value.starts_with('[')
        || value.eq_ignore_ascii_case("n/a")
        || value.contains("deprecated")
        || value.contains("Not Supported")
        || value.contains("Unknown Error"))
}

/// The number at the start of `629.45 W`, `16x`, `81559 MiB`, `100 %`.
fn leading_number(value: &str) -> Option<f64> {
    let end = value
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-'))
        .unwrap_or(value.len());
    value[..end].parse().ok()
}

fn yes_no(value: &str) -> Option<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "yes" | "enabled" | "active" | "true" => Some(true),
        "no" | "disabled" | "not active" | "false" => Some(false),
        _ => None,
    }
}

/// The active reasons: from the CSV's bit mask when there is one, else from each reason's Active/Not Active.
fn clock_reasons(flat: &Flat, mask: Option<String>) -> Option<Vec<ClockReason>> {
    if let Some(bits) =
        mask.and_then(|m| u64::from_str_radix(m.trim().trim_start_matches("0x"), 16).ok())
    {
        return Some(
            ClockReason::ALL
                .into_iter()
                .enumerate()
                .filter(|(bit, _)| bits & (1 << bit) != 0)
                .map(|(_, reason)| reason)
                .collect(),
        );
    }
    let mut listed = false;
    let mut active = Vec::new();
    for (path, value) in &flat.values {
        let Some(name) = reason_name(path) else {
            continue;
        };
        let Some(reason) = ClockReason::ALL.into_iter().find(|r| r.name() == name) else {
            continue;
        };
        listed = true;
        if yes_no(value) == Some(true) && !active.contains(&reason) {
            active.push(reason);
        }
    }
    active.sort();
    listed.then_some(active)
}

/// A reason's canonical name from its path in any format, or `None` for paths that are not a reason (the
/// supported mask, the time counters).
fn reason_name(path: &str) -> Option<String> {
    let (section, leaf) = path.rsplit_once(['/', '.'])?;
    let in_section = ["clocks_event_reasons", "clocks_throttle_reasons"]
        .iter()
        .any(|s| section == *s || section.starts_with(&format!("{s}/")));
    if !in_section {
        return None;
    }
    let leaf = leaf
        .trim_start_matches("clocks_event_reason_")
        .trim_start_matches("clocks_throttle_reason_");
    Some(
        match leaf {
            "idle" => "gpu_idle",
            "display_clocks_setting" => "display_clock_setting",
            other => other,
        }
        .to_string(),
    )
}

/// The sum of the volatile ECC counters below `ecc_errors/volatile` (text and XML split them by memory and
/// kind, and the split changed with the driver); `None` when none is available.
fn ecc_volatile(flat: &Flat, uncorrected: bool) -> Option<f64> {
    let counts: Vec<f64> = flat
        .values
        .iter()
        .filter(|(path, _)| {
            let Some(rest) = path.strip_prefix("ecc_errors/volatile/") else {
                return false;
            };
            let is_uncorrected = rest.contains("uncorrectable") || rest.starts_with("double_bit/");
            let is_corrected = !is_uncorrected
                && (rest.contains("correctable") || rest.starts_with("single_bit/"));
            // Old drivers give per-memory counts and their total; only the totals are summed there.
            let counted = !rest.contains("_bit/") || rest.ends_with("/total");
            counted
                && if uncorrected {
                    is_uncorrected
                } else {
                    is_corrected
                }
        })
        .filter_map(|(_, v)| leading_number(v))
        .collect();
    (!counts.is_empty()).then(|| counts.iter().sum())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(name: &str) -> Vec<GpuState> {
        let path = format!("{}/../../fixtures/gpu/{name}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).unwrap();
        read_nvidia_smi(&text, name).unwrap()
    }

    #[test]
    fn the_text_and_csv_of_one_busy_h100_agree() {
        let [text] = read("h100_load_q.txt").try_into().unwrap();
        let [csv] = read("h100_load_query_gpu.csv").try_into().unwrap();
        assert_eq!(text.name, "NVIDIA H100 80GB HBM3");
        assert_eq!(text.bus_id, "00000000:00:09.0");
        assert_eq!(text.utilization_percent, Some(100.0));
        assert_eq!(
            (text.memory_used_mib, text.memory_total_mib),
            (Some(19818.0), Some(81559.0))
        );
        assert_eq!(
            (text.sm_clock_mhz, text.max_sm_clock_mhz),
            (Some(1980.0), Some(1980.0))
        );
        assert_eq!((text.pcie_gen, text.pcie_gen_max), (Some(5.0), Some(5.0)));
        assert_eq!(
            (text.pcie_width, text.pcie_width_max),
            (Some(16.0), Some(16.0))
        );
        assert_eq!(text.power_draw_watts, Some(629.45));
        assert_eq!(
            (text.power_limit_watts, text.default_power_limit_watts),
            (Some(700.0), Some(700.0))
        );
        assert_eq!(text.temperature_c, Some(59.0));
        assert_eq!(text.clock_reasons, Some(vec![]));
        assert_eq!(
            (text.ecc_uncorrected_volatile, text.ecc_corrected_volatile),
            (Some(0.0), Some(0.0))
        );
        assert_eq!(
            (
                text.remapped_rows_pending,
                text.remapped_rows_failure,
                text.retired_pages_pending
            ),
            (Some(false), Some(false), None)
        );
        assert_eq!(
            (text.persistence_mode, text.mig_enabled),
            (Some(true), Some(false))
        );
        assert_eq!(text.recovery_action.as_deref(), Some("None"));
        assert!(text.source.contains("nvidia-smi -q"), "{}", text.source);
        assert_eq!(
            (text.memory_repair_pending, text.unrepairable_memory),
            (Some(false), Some(false))
        );
        // The CSV was taken a moment later: the power draw moved. The repair flags are not among its fields
        // (driver 590). Every other fact is the same.
        assert_eq!(csv.power_draw_watts, Some(631.95));
        assert_eq!(
            (csv.memory_repair_pending, csv.unrepairable_memory),
            (None, None)
        );
        let same = |s: &GpuState| GpuState {
            source: String::new(),
            power_draw_watts: None,
            memory_repair_pending: None,
            unrepairable_memory: None,
            ..s.clone()
        };
        assert_eq!(same(&csv), same(&text));
    }

    /// A dcgm-exporter scrape as its README and issue #250 show it: two GPUs, the `gpu, UUID, pci_bus_id,
    /// device, modelName, Hostname` labels, and a blank sentinel for a field the GPU lacks.
    const DCGM_SCRAPE: &str = "\
# HELP DCGM_FI_DEV_SM_CLOCK SM clock frequency (in MHz).
# TYPE DCGM_FI_DEV_SM_CLOCK gauge
DCGM_FI_DEV_SM_CLOCK{gpu=\"0\",UUID=\"GPU-604ac76c\",pci_bus_id=\"00000000:18:00.0\",device=\"nvidia0\",modelName=\"NVIDIA H100 80GB HBM3\",Hostname=\"n1\"} 1980
DCGM_FI_DEV_SM_CLOCK{gpu=\"1\",UUID=\"GPU-9ab1e3f0\",pci_bus_id=\"00000000:2A:00.0\",device=\"nvidia1\",modelName=\"NVIDIA H100 80GB HBM3\",Hostname=\"n1\"} 1410
# TYPE DCGM_FI_DEV_GPU_TEMP gauge
DCGM_FI_DEV_GPU_TEMP{gpu=\"0\",UUID=\"GPU-604ac76c\",pci_bus_id=\"00000000:18:00.0\",device=\"nvidia0\",modelName=\"NVIDIA H100 80GB HBM3\",Hostname=\"n1\"} 41
DCGM_FI_DEV_GPU_TEMP{gpu=\"1\",UUID=\"GPU-9ab1e3f0\",pci_bus_id=\"00000000:2A:00.0\",device=\"nvidia1\",modelName=\"NVIDIA H100 80GB HBM3\",Hostname=\"n1\"} 87
# TYPE DCGM_FI_DEV_POWER_USAGE gauge
DCGM_FI_DEV_POWER_USAGE{gpu=\"0\",UUID=\"GPU-604ac76c\",pci_bus_id=\"00000000:18:00.0\",device=\"nvidia0\",modelName=\"NVIDIA H100 80GB HBM3\",Hostname=\"n1\"} 612.5
# TYPE DCGM_FI_DEV_GPU_UTIL gauge
DCGM_FI_DEV_GPU_UTIL{gpu=\"0\",UUID=\"GPU-604ac76c\",pci_bus_id=\"00000000:18:00.0\",device=\"nvidia0\",modelName=\"NVIDIA H100 80GB HBM3\",Hostname=\"n1\"} 97
# TYPE DCGM_FI_DEV_FB_FREE gauge
DCGM_FI_DEV_FB_FREE{gpu=\"0\",UUID=\"GPU-604ac76c\",pci_bus_id=\"00000000:18:00.0\",device=\"nvidia0\",modelName=\"NVIDIA H100 80GB HBM3\",Hostname=\"n1\"} 1024
# TYPE DCGM_FI_DEV_FB_USED gauge
DCGM_FI_DEV_FB_USED{gpu=\"0\",UUID=\"GPU-604ac76c\",pci_bus_id=\"00000000:18:00.0\",device=\"nvidia0\",modelName=\"NVIDIA H100 80GB HBM3\",Hostname=\"n1\"} 79054
# TYPE DCGM_FI_DEV_FB_RESERVED gauge
DCGM_FI_DEV_FB_RESERVED{gpu=\"0\",UUID=\"GPU-604ac76c\",pci_bus_id=\"00000000:18:00.0\",device=\"nvidia0\",modelName=\"NVIDIA H100 80GB HBM3\",Hostname=\"n1\"} 481
# TYPE DCGM_FI_DEV_CLOCKS_EVENT_REASONS gauge
DCGM_FI_DEV_CLOCKS_EVENT_REASONS{gpu=\"1\",UUID=\"GPU-9ab1e3f0\",pci_bus_id=\"00000000:2A:00.0\",device=\"nvidia1\",modelName=\"NVIDIA H100 80GB HBM3\",Hostname=\"n1\"} 72
# TYPE DCGM_FI_DEV_PCIE_LINK_GEN gauge
DCGM_FI_DEV_PCIE_LINK_GEN{gpu=\"1\",UUID=\"GPU-9ab1e3f0\",pci_bus_id=\"00000000:2A:00.0\",device=\"nvidia1\",modelName=\"NVIDIA H100 80GB HBM3\",Hostname=\"n1\"} 9223372036854775794
# TYPE DCGM_FI_DEV_ROW_REMAP_FAILURE gauge
DCGM_FI_DEV_ROW_REMAP_FAILURE{gpu=\"1\",UUID=\"GPU-9ab1e3f0\",pci_bus_id=\"00000000:2A:00.0\",device=\"nvidia1\",modelName=\"NVIDIA H100 80GB HBM3\",Hostname=\"n1\"} 1
";

    /// Issue 11: a dcgm-exporter scrape given as GPU state was read as nothing.
    #[test]
    fn a_dcgm_exporter_scrape_reads_as_gpu_state() {
        let gpus = read_capture(DCGM_SCRAPE, "dcgm.prom").unwrap();
        assert_eq!(gpus.len(), 2);
        let (first, second) = (&gpus[0], &gpus[1]);
        assert_eq!(first.bus_id, "00000000:18:00.0");
        assert_eq!(first.name, "NVIDIA H100 80GB HBM3");
        assert_eq!(first.source, "dcgm.prom (dcgm-exporter)");
        assert_eq!(first.sm_clock_mhz, Some(1980.0));
        assert_eq!(first.utilization_percent, Some(97.0));
        assert_eq!(first.power_draw_watts, Some(612.5));
        assert_eq!(first.memory_used_mib, Some(79054.0));
        assert_eq!(first.memory_total_mib, Some(80559.0));
        assert_eq!(first.clock_reasons, None, "not exported for this GPU");
        assert_eq!(second.temperature_c, Some(87.0));
        assert_eq!(second.memory_total_mib, None);
        // 72 = bits 3 and 6: hardware slowdown and hardware thermal slowdown.
        assert_eq!(
            second.clock_reasons,
            Some(vec![
                ClockReason::HwSlowdown,
                ClockReason::HwThermalSlowdown
            ])
        );
        assert_eq!(second.pcie_gen, None, "DCGM's blank sentinel is no value");
        assert_eq!(second.remapped_rows_failure, Some(true));
        let engine_only = "# TYPE vllm:num_requests_running gauge\nvllm:num_requests_running 1\n";
        assert!(matches!(
            read_capture(engine_only, "x"),
            Err(GpuReadError::UnknownFormat)
        ));
        assert_eq!(
            read_capture(include_str!("../../../fixtures/gpu/h100_load_q.txt"), "q")
                .unwrap()
                .len(),
            read("h100_load_q.txt").len(),
            "nvidia-smi output still reads as before"
        );
        // A federated scrape: two hosts whose GPUs share bus ids stay two GPUs.
        let federated = "# TYPE DCGM_FI_DEV_SM_CLOCK gauge\n\
            DCGM_FI_DEV_SM_CLOCK{gpu=\"0\",pci_bus_id=\"00000000:18:00.0\",Hostname=\"n1\"} 1980\n\
            DCGM_FI_DEV_SM_CLOCK{gpu=\"0\",pci_bus_id=\"00000000:18:00.0\",Hostname=\"n2\"} 1410\n";
        let clocks: Vec<Option<f64>> = read_capture(federated, "fed")
            .unwrap()
            .iter()
            .map(|g| g.sm_clock_mhz)
            .collect();
        assert_eq!(clocks, [Some(1980.0), Some(1410.0)]);
    }

    #[test]
    fn xml_from_three_driver_generations() {
        // DTD v12, an A100 in MIG mode: utilization is N/A under MIG.
        let [a100] = read("a100_sxm4_mig_v12.xml").try_into().unwrap();
        assert_eq!(a100.name, "NVIDIA A100-SXM4-80GB");
        assert_eq!(a100.bus_id, "00000000:01:00.0");
        assert_eq!(a100.mig_enabled, Some(true));
        assert_eq!(a100.utilization_percent, None);
        assert_eq!(a100.ecc_uncorrected_volatile, Some(0.0));
        // DTD v11 (throttle reasons under their old name, power under power_readings), idle.
        let [a10g] = read("a10g.xml").try_into().unwrap();
        assert_eq!(a10g.clock_reasons, Some(vec![ClockReason::GpuIdle]));
        assert_eq!((a10g.pcie_gen, a10g.pcie_gen_max), (Some(1.0), Some(4.0)));
        assert_eq!(a10g.power_limit_watts, Some(300.0));
        assert_eq!(a10g.persistence_mode, Some(false));
        // DTD v13: the ECC counters are all N/A on this workstation GPU, so no count is claimed.
        let [ada] = read("rtx4000_ada_v13.xml").try_into().unwrap();
        assert_eq!(ada.clock_reasons, Some(vec![ClockReason::GpuIdle]));
        assert_eq!(ada.ecc_uncorrected_volatile, None);
        assert_eq!(ada.remapped_rows_pending, Some(false));
        assert_eq!(ada.power_limit_watts, Some(70.0));
    }

    #[test]
    fn the_csv_mask_names_the_active_reasons() {
        let csv = "name, pci.bus_id, clocks_event_reasons.active, clocks.current.sm [MHz]\n\
                   NVIDIA H100, 00000000:00:09.0, 0x0000000000000044, 1410 MHz\n";
        let [gpu] = read_nvidia_smi(csv, "q.csv").unwrap().try_into().unwrap();
        assert_eq!(
            gpu.clock_reasons,
            Some(vec![
                ClockReason::SwPowerCap,
                ClockReason::HwThermalSlowdown
            ])
        );
        assert_eq!(gpu.sm_clock_mhz, Some(1410.0));
    }

    #[test]
    fn bad_input_is_named_with_its_line() {
        let err = |text: &str| read_nvidia_smi(text, "f").unwrap_err().to_string();
        assert!(err("hello\nworld\n").starts_with("not nvidia-smi output"));
        let xml = "<?xml version=\"1.0\"?>\n<nvidia_smi_log>\n<gpu id=\"0\">\n<name>x</gpu>\n";
        assert!(err(xml).starts_with("line 4"), "{}", err(xml));
        let csv = "name, pci.bus_id\nA100, 0:1:0, extra\n";
        assert_eq!(err(csv), "line 2: 3 values for 2 fields in the header");
        assert_eq!(
            err("<nvidia_smi_log><driver_version>1</driver_version></nvidia_smi_log>"),
            "no GPU in this nvidia-smi -q -x output"
        );
    }

    proptest::proptest! {
        /// Any text, and any cut or splice of the real captures, gives GPUs or a named error, never a panic.
        #[test]
        fn any_text_reads_without_panicking(
            noise in ".{0,200}",
            cut in 0usize..20_000,
            pick in 0usize..5,
        ) {
            let names = ["h100_load_q.txt", "h100_load_query_gpu.csv", "a100_sxm4_mig_v12.xml", "a10g.xml",
                         "rtx4000_ada_v13.xml"];
            let path = format!("{}/../../fixtures/gpu/{}", env!("CARGO_MANIFEST_DIR"), names[pick]);
            let text = std::fs::read_to_string(path).unwrap();
            let mut end = cut.min(text.len());
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            for candidate in [noise.clone(), format!("{}{noise}", &text[..end])] {
                let _ = read_nvidia_smi(&candidate, "f");
                let _ = crate::kernel::read_kernel_log(candidate.as_bytes(), "f");
            }
        }
    }
}
