//! Rules over each GPU's own health as nvidia-smi reported it: failing memory, clocks held down, a PCIe link
//! running below its rating. Source rows: gpu_trace.md §C (1–8) and DESIGN.md §6 "hardware rules".

use infer_doctor_core::{
    ClockReason, Confidence, DcgmDiag, DiagOutcome, GpuState, Observation, Severity, Symptom,
};

use crate::Thresholds;
use crate::assessment::{Assessment, Rule, compared, how, seen};
use crate::facts::Facts;

const MEMORY_ERRORS: Rule = Rule {
    id: "hardware.memory_errors",
    symptom: Symptom::Hardware,
    why: "Uncorrected ECC errors kill or corrupt the work on that GPU; a failed row remap is NVIDIA's criterion \
          for replacing the board; a pending remap or page retirement takes effect only after a reset, and \
          until then the bad memory stays in use.",
    remedies: &[
        "Drain the GPU from serving and follow the driver's recovery action (reset the GPU, or reboot)",
        "After a reset, check the remapped-rows and ECC counters again; a failed remap means an RMA",
        "Look for XID errors in the kernel log (`dmesg | grep -i xid`) around the same time",
    ],
    source: "utkuozdemir/nvidia_gpu_exporter: charts/nvidia-gpu-exporter/values.yaml @ e656cd8 (prometheusRule \
             alerts on uncorrected volatile ECC > 0, failed and pending row remaps, retired pages); \
             facebookresearch/gcm: gcm/health_checks/checks/check_nvidia_smi.py (ECC and retired-page checks)",
};

const CLOCK_SLOWDOWN: Rule = Rule {
    id: "hardware.clock_slowdown",
    symptom: Symptom::Hardware,
    why: "The driver holds the GPU's clocks down (too hot, a power brake, a power cap, or a lowered power \
          limit), so every step of prefill and decode takes longer than the GPU is rated for.",
    remedies: &[
        "Thermal slowdown: check cooling, fan and airflow, inlet temperature, and neighbouring boards",
        "Power brake: check the power supply and the chassis's power-brake signal",
        "Power cap or lowered limit: restore the default limit (`nvidia-smi -pl`), check the power budget",
    ],
    source: "utkuozdemir/nvidia_gpu_exporter: charts/nvidia-gpu-exporter/values.yaml @ e656cd8 (prometheusRule \
             alerts on HW thermal slowdown and HW power brake); a healthy busy H100 runs at its maximum SM clock \
             with no reason active (utkuozdemir/nvidia_gpu_exporter: internal/captures @ e656cd8); the power-cap \
             and lowered-limit checks are infer-doctor's own (inference)",
};

const PCIE_DEGRADED: Rule = Rule {
    id: "hardware.pcie_degraded",
    symptom: Symptom::Hardware,
    why: "A busy GPU whose PCIe link trained below its generation or width moves weights, KV swaps and \
          host↔device copies at a fraction of the rated bandwidth.",
    remedies: &[
        "Reseat the board or riser, check the slot's rated generation and width in the server's manual",
        "Check the BIOS PCIe settings, and `lspci -vv` for the link's LnkSta against LnkCap",
    ],
    source: "facebookresearch/gcm: gcm/health_checks/checks/check_pci.py (any mismatch with the expected link \
             fails); idle GPUs lower their link on purpose and are not judged (inference)",
};

const XID_ERRORS: Rule = Rule {
    id: "hardware.xid_errors",
    symptom: Symptom::Hardware,
    why: "The NVIDIA driver logs an XID when a GPU faults (fell off the bus, double-bit ECC, a crashed \
          engine) or an application's kernel faults on it; the faulting GPU's work fails or stalls until the \
          GPU is reset.",
    remedies: &[
        "Look the code up in NVIDIA's XID catalog for its immediate action (restart the app, reset the GPU, \
         reboot, or drain the node)",
        "XID 79 (fell off the bus): check the board's seating, power and temperature; it often needs a reboot",
        "Application XIDs (13, 31, 43, 45): the serving process faulted; look at its log for the failing kernel",
    ],
    source: "https://docs.nvidia.com/deploy/xid-errors/analyzing-xid-catalog.html; utkuozdemir/nvidia_gpu_exporter: \
             charts/nvidia-gpu-exporter/values.yaml @ e656cd8 (prometheusRule alerts on XID 48, 62, 64, 74, 79, 95, \
             119, 120); facebookresearch/gcm: gcm/health_checks/check_utils/xid_error_codes.py (13, 31, 43, 45, 63, \
             68, 92, 109 not critical)",
};

const GPU_UNRESPONSIVE: Rule = Rule {
    id: "hardware.gpu_unresponsive",
    symptom: Symptom::Hardware,
    why: "nvidia-smi asks the driver through NVML; when it hangs, the driver is wedged (a GPU that fell off the \
          bus, a stuck reset, a hung kernel thread) and the serving process's CUDA calls hang with it.",
    remedies: &[
        "Look at the kernel log for XIDs and NVRM lines around the hang (`dmesg -T | grep -i -e xid -e nvrm`)",
        "Drain the node; a wedged driver usually needs a GPU reset (`nvidia-smi -r`) or a reboot",
        "If it recurs, collect `nvidia-bug-report.sh` for NVIDIA support",
    ],
    source: "https://docs.nvidia.com/deploy/gpu-debug-guidelines/index.html (nvidia-smi hanging or slow points \
             at the driver or a GPU fault); facebookresearch/gcm: gcm/health_checks/checks/check_nvidia_smi.py \
             (a timed-out nvidia-smi fails the node's health check)",
};

const DCGM_DIAG_FAILED: Rule = Rule {
    id: "hardware.dcgm_diag_failed",
    symptom: Symptom::Hardware,
    why: "DCGM's diagnostic is NVIDIA's own check of a GPU's deployment, memory, PCIe and NVLink: a failed test \
          means that GPU (or its driver setup) is not fit to serve, whatever its counters show; a warning is a \
          check that passed only within a margin.",
    remedies: &[
        "Drain the node from serving; a failed GPU keeps slowing or failing the work placed on it",
        "Run the longer diagnostic on the drained node (`dcgmi diag -r 3`) to confirm and narrow it down",
        "A hardware test failing again (memory, PCIe, NVLink) means NVIDIA's field diagnostic and an RMA; \
         a deployment test (persistence mode, environment, permissions) is fixed in the host's setup",
    ],
    source: "https://docs.nvidia.com/datacenter/dcgm/latest/user-guide/dcgm-diagnostics.html (level 1 as a \
             readiness check, levels 3 and 4 as post-mortem; the field diagnostic and RMA for hardware failures); \
             NVIDIA/DCGM: testing/python3/dcgm_diag_schema.json @ 686e1024 (the JSON's results and warnings)",
};

/// XIDs the exporter's alert rules page on: the GPU itself failed.
const CRITICAL_XIDS: [u32; 8] = [48, 62, 64, 74, 79, 95, 119, 120];
/// XIDs GCM does not count as GPU failures: application faults and notices.
const APPLICATION_XIDS: [u32; 8] = [13, 31, 43, 45, 63, 68, 92, 109];

pub(crate) fn assess(facts: &Facts, t: &Thresholds) -> Vec<Assessment> {
    let gpus = &facts.evidence.gpus;
    vec![
        gpu_unresponsive(facts),
        xid_errors(facts),
        dcgm_diag_failed(facts.evidence.dcgm_diag.as_ref()),
        judge(&MEMORY_ERRORS, gpus, |gpu| memory_errors(gpu, t)),
        judge(&CLOCK_SLOWDOWN, gpus, |gpu| clock_slowdown(gpu, t)),
        judge(&PCIE_DEGRADED, gpus, |gpu| pcie_degraded(gpu, t)),
    ]
}

fn gpu_unresponsive(facts: &Facts) -> Assessment {
    let evidence = &facts.evidence;
    if !evidence.gpu_tool_timeouts.is_empty() {
        return GPU_UNRESPONSIVE.fires(
            Severity::Critical,
            Confidence::High,
            format!(
                "`{}` did not answer within its deadline: the GPU driver is not responding",
                evidence.gpu_tool_timeouts.join("`, `")
            ),
            evidence
                .gpu_tool_timeouts
                .iter()
                .map(|command| seen(format!("{command} timed out"), 1.0, "manifest.json"))
                .collect(),
        );
    }
    if evidence.gpus.is_empty() {
        return GPU_UNRESPONSIVE
            .unknown("whether nvidia-smi answers on the GPU host", how::COLLECT);
    }
    GPU_UNRESPONSIVE.passes(format!(
        "nvidia-smi answered for {} GPU{}",
        evidence.gpus.len(),
        if evidence.gpus.len() == 1 { "" } else { "s" }
    ))
}

fn xid_errors(facts: &Facts) -> Assessment {
    let Some(kernel) = &facts.evidence.kernel else {
        return XID_ERRORS.unknown("the GPU host's kernel log", how::KERNEL_LOG);
    };
    let read = kernel.sources.join(", ");
    let Some(severity) = kernel.xids.iter().map(|x| xid_severity(x.code)).min() else {
        return XID_ERRORS.passes(format!("no XID in {read}"));
    };
    let verdict: Vec<String> = kernel
        .xids
        .iter()
        .map(|x| {
            let times = if x.count > 1 {
                format!(" ×{}", x.count)
            } else {
                String::new()
            };
            format!("XID {} on {}{times} ({})", x.code, x.bus_id, x.message)
        })
        .collect();
    let evidence = kernel
        .xids
        .iter()
        .map(|x| {
            seen(
                format!("xid {} on {}", x.code, x.bus_id),
                x.count as f64,
                &x.first_seen,
            )
        })
        .collect();
    XID_ERRORS.fires(severity, Confidence::High, verdict.join("; "), evidence)
}

fn dcgm_diag_failed(diag: Option<&DcgmDiag>) -> Assessment {
    let Some(diag) = diag else {
        return DCGM_DIAG_FAILED.unknown("DCGM's diagnostic (`dcgmi diag`)", how::DCGM_DIAG);
    };
    let count = |outcome| diag.tests.iter().filter(|t| t.outcome == outcome).count();
    let worst = diag.tests.iter().map(|t| t.outcome).max();
    let severity = match worst {
        Some(DiagOutcome::Fail) => Severity::Critical,
        Some(DiagOutcome::Warn) => Severity::Warning,
        _ if count(DiagOutcome::Pass) == 0 => {
            // Every test skipped, or none run: the diagnostic checked nothing.
            return DCGM_DIAG_FAILED.unknown(
                "a DCGM test that ran (every one was skipped, or none is listed)",
                how::DCGM_DIAG,
            );
        }
        _ => {
            let skipped = match count(DiagOutcome::Skip) {
                0 => String::new(),
                n => format!(", {n} skipped"),
            };
            return DCGM_DIAG_FAILED.passes(format!(
                "DCGM's diagnostic passed: {} results{skipped} ({})",
                count(DiagOutcome::Pass),
                diag.source
            ));
        }
    };
    let named: Vec<_> = diag
        .tests
        .iter()
        .filter(|t| Some(t.outcome) == worst)
        .collect();
    let verdict = named
        .iter()
        .map(|t| {
            let gpu = t
                .gpu
                .map_or("all GPUs".to_string(), |gpu| format!("GPU {gpu}"));
            let detail = t
                .detail
                .as_ref()
                .map_or(String::new(), |d| format!(": {d}"));
            format!("{} {} on {gpu}{detail}", t.name, outcome_word(t.outcome))
        })
        .collect::<Vec<_>>()
        .join("; ");
    let evidence = named
        .iter()
        .map(|t| {
            let gpu = t.gpu.map_or("all".to_string(), |gpu| gpu.to_string());
            seen(
                format!(
                    "dcgmi diag {} {} (gpu {gpu})",
                    t.name,
                    outcome_word(t.outcome)
                ),
                1.0,
                &diag.source,
            )
        })
        .collect();
    DCGM_DIAG_FAILED.fires(
        severity,
        Confidence::High,
        format!("DCGM's diagnostic: {verdict}"),
        evidence,
    )
}

fn outcome_word(outcome: DiagOutcome) -> &'static str {
    match outcome {
        DiagOutcome::Pass => "passed",
        DiagOutcome::Skip => "skipped",
        DiagOutcome::Warn => "warned",
        DiagOutcome::Fail => "failed",
    }
}

fn xid_severity(code: u32) -> Severity {
    if CRITICAL_XIDS.contains(&code) {
        Severity::Critical
    } else if APPLICATION_XIDS.contains(&code) {
        Severity::Info
    } else {
        Severity::Warning
    }
}

/// What one rule found on one GPU.
struct Judged {
    /// Why the GPU could not be judged, when it could not.
    unchecked: Option<String>,
    problems: Vec<(Severity, String)>,
    evidence: Vec<Observation>,
    /// What the pass says about this GPU.
    fine: String,
}

impl Judged {
    fn checked(fine: String) -> Judged {
        Judged {
            unchecked: None,
            problems: Vec::new(),
            evidence: Vec::new(),
            fine,
        }
    }

    fn unchecked(why: &str) -> Judged {
        Judged {
            unchecked: Some(why.to_string()),
            ..Judged::checked(String::new())
        }
    }
}

/// Runs one rule over every GPU: it fires with the worst problem's severity, passes when every GPU checked is
/// fine, and is unknown when no GPU report had what it needs.
fn judge(rule: &Rule, gpus: &[GpuState], check: impl Fn(&GpuState) -> Judged) -> Assessment {
    if gpus.is_empty() {
        return rule.unknown("GPU state from nvidia-smi", how::GPU_STATE);
    }
    let label = |gpu: &GpuState| {
        if gpus.len() > 1 {
            format!("GPU {}: ", gpu.bus_id)
        } else {
            String::new()
        }
    };
    let (mut problems, mut evidence, mut fine) = (Vec::new(), Vec::new(), Vec::new());
    let mut unchecked = None;
    for gpu in gpus {
        let judged = check(gpu);
        if let Some(why) = judged.unchecked {
            unchecked = Some(why);
            continue;
        }
        evidence.extend(judged.evidence);
        if judged.problems.is_empty() {
            fine.push(format!("{}{}", label(gpu), judged.fine));
        }
        for (severity, problem) in judged.problems {
            problems.push((severity, format!("{}{problem}", label(gpu))));
        }
    }
    if let (true, Some(why)) = (fine.is_empty() && problems.is_empty(), unchecked) {
        return rule.unknown(&why, how::GPU_STATE);
    }
    let Some(severity) = problems.iter().map(|(s, _)| *s).min() else {
        return rule.passes(fine.join("; "));
    };
    let verdict: Vec<String> = problems.into_iter().map(|(_, p)| p).collect();
    // One snapshot from the GPU itself: the facts are certain, whether they last is not.
    rule.fires(severity, Confidence::High, verdict.join("; "), evidence)
}

fn memory_errors(gpu: &GpuState, t: &Thresholds) -> Judged {
    let repairs = [
        gpu.remapped_rows_pending,
        gpu.remapped_rows_failure,
        gpu.retired_pages_pending,
        gpu.memory_repair_pending,
        gpu.unrepairable_memory,
    ];
    let repairs_reported = repairs.iter().any(Option::is_some);
    if gpu.ecc_uncorrected_volatile.is_none() && !repairs_reported {
        return Judged::unchecked(
            "ECC and memory-repair counters (this GPU or driver reports none)",
        );
    }
    // The pass says only what was read: a GPU with ECC off reports repairs but no error counts.
    let mut fine = vec![match gpu.ecc_uncorrected_volatile {
        Some(_) => "no uncorrected ECC errors",
        None => "ECC error counts not reported (ECC off or unsupported)",
    }];
    if repairs_reported {
        fine.push("no pending, failed or impossible memory repair");
    }
    let mut judged = Judged::checked(fine.join("; "));
    let source = gpu.source.as_str();
    if let Some(n) = gpu.ecc_uncorrected_volatile.filter(|n| *n > 0.0) {
        judged.problems.push((
            Severity::Critical,
            format!("{n:.0} uncorrected ECC errors since the driver loaded"),
        ));
        judged
            .evidence
            .push(compared("ecc uncorrected volatile", n, ">", 0.0, source));
    }
    if let Some(n) = gpu
        .ecc_corrected_volatile
        .filter(|n| *n > t.gpu_ecc_corrected_max)
    {
        judged.problems.push((
            Severity::Warning,
            format!("{n:.0} corrected ECC errors since the driver loaded"),
        ));
        judged.evidence.push(compared(
            "ecc corrected volatile",
            n,
            ">",
            t.gpu_ecc_corrected_max,
            source,
        ));
    }
    let flags = [
        (
            gpu.remapped_rows_failure,
            Severity::Critical,
            "a row remap failed (NVIDIA's replacement criterion)",
            "remapped rows failure",
        ),
        (
            gpu.remapped_rows_pending,
            Severity::Warning,
            "a row remap waits for a GPU reset",
            "remapped rows pending",
        ),
        (
            gpu.retired_pages_pending,
            Severity::Warning,
            "retired pages wait for a reboot",
            "retired pages pending",
        ),
        (
            gpu.unrepairable_memory,
            Severity::Critical,
            "the GPU reports memory it cannot repair",
            "unrepairable memory",
        ),
        (
            gpu.memory_repair_pending,
            Severity::Warning,
            "a memory repair (channel or TPC) waits for a GPU reset",
            "memory repair pending",
        ),
        (
            gpu.reset_required,
            Severity::Warning,
            "the driver asks for a GPU reset",
            "gpu reset required",
        ),
    ];
    for (flag, severity, problem, signal) in flags {
        if flag == Some(true) {
            judged.problems.push((severity, problem.to_string()));
            judged.evidence.push(seen(signal, 1.0, source));
        }
    }
    if let Some(action) = gpu
        .recovery_action
        .as_deref()
        .filter(|a| !a.eq_ignore_ascii_case("none"))
    {
        judged.problems.push((
            Severity::Critical,
            format!("the driver asks for recovery: {action}"),
        ));
        judged
            .evidence
            .push(seen("gpu recovery action", 1.0, source));
    }
    judged
}

/// Busy enough that clocks and link speed mean something. A GPU without a utilization figure (MIG mode
/// reports none) is not claimed busy.
fn is_busy(gpu: &GpuState, t: &Thresholds) -> bool {
    gpu.utilization_percent
        .is_some_and(|util| util >= t.gpu_busy_utilization_percent)
        && gpu.clock_reason(ClockReason::GpuIdle) != Some(true)
}

fn clock_slowdown(gpu: &GpuState, t: &Thresholds) -> Judged {
    let source = gpu.source.as_str();
    let limits = gpu.power_limit_watts.zip(gpu.default_power_limit_watts);
    if gpu.clock_reasons.is_none() && limits.is_none() {
        return Judged::unchecked("clock event reasons and power limits (not in this GPU report)");
    }
    let clocks = match (gpu.sm_clock_mhz, gpu.max_sm_clock_mhz) {
        (Some(now), Some(max)) => format!("SM {now:.0} of {max:.0} MHz"),
        _ => "SM clock not reported".into(),
    };
    let idle = if is_busy(gpu, t) {
        ""
    } else {
        " (not busy when captured, or no utilization reported: capture under load to see its clocks at work)"
    };
    // The pass says only what was read.
    let mut fine = Vec::new();
    if gpu.clock_reasons.is_some() {
        fine.push("no slowdown reason active".to_string());
    }
    if limits.is_some() {
        fine.push("power limit at its default".to_string());
    }
    fine.push(format!("{clocks}{idle}"));
    let mut judged = Judged::checked(fine.join(", "));
    let reasons = gpu.clock_reasons.clone().unwrap_or_default();
    let protective: Vec<&str> = reasons
        .iter()
        .filter(|r| r.is_protective())
        .map(|r| r.name())
        .collect();
    if !protective.is_empty() {
        judged.problems.push((
            Severity::Warning,
            format!("clocks held down by {} ({clocks})", protective.join(", ")),
        ));
        judged.evidence.extend(
            protective
                .iter()
                .map(|name| seen(format!("clocks event reason {name}"), 1.0, source)),
        );
    }
    let below_max = match (gpu.sm_clock_mhz, gpu.max_sm_clock_mhz) {
        (Some(now), Some(max)) => now < t.gpu_clock_share * max,
        _ => false,
    };
    if reasons.contains(&ClockReason::SwPowerCap) && below_max && is_busy(gpu, t) {
        let draw = gpu
            .power_draw_watts
            .zip(gpu.power_limit_watts)
            .map(|(draw, limit)| format!(" at {draw:.0} of {limit:.0} W"))
            .unwrap_or_default();
        // At the board's own limit this is the GPU working as rated (heavy prefill draws the most power): a
        // note. Under a lowered limit it is the lowered limit's cost, named below.
        judged.problems.push((
            Severity::Info,
            format!("at its power cap{draw}, clocks below their maximum ({clocks})"),
        ));
        if let (Some(now), Some(max)) = (gpu.sm_clock_mhz, gpu.max_sm_clock_mhz) {
            judged.evidence.push(compared(
                "sm clock (MHz)",
                now,
                "<",
                t.gpu_clock_share * max,
                source,
            ));
        }
    }
    if let (Some(limit), Some(default)) = (gpu.power_limit_watts, gpu.default_power_limit_watts)
        && limit < t.gpu_power_limit_share * default
    {
        judged.problems.push((
            Severity::Warning,
            format!("power limit lowered to {limit:.0} W (default {default:.0} W)"),
        ));
        judged.evidence.push(compared(
            "power limit (W)",
            limit,
            "<",
            t.gpu_power_limit_share * default,
            source,
        ));
    }
    judged
}

fn pcie_degraded(gpu: &GpuState, t: &Thresholds) -> Judged {
    let (Some(gen_now), Some(gen_max), Some(width_now), Some(width_max)) = (
        gpu.pcie_gen,
        gpu.pcie_gen_max,
        gpu.pcie_width,
        gpu.pcie_width_max,
    ) else {
        return Judged::unchecked("the PCIe link's generation and width (not in this GPU report)");
    };
    // Idle GPUs lower their link on purpose (an idle RTX 4000 sits at gen 1 of 4): only a busy one is judged.
    if !is_busy(gpu, t) {
        return Judged::unchecked(
            "a GPU busy when captured (idle GPUs lower their PCIe link on purpose; MIG reports no utilization)",
        );
    }
    let link = format!("gen {gen_now:.0} x{width_now:.0} of gen {gen_max:.0} x{width_max:.0}");
    let mut judged = Judged::checked(format!("PCIe {link} while busy"));
    if gen_now < gen_max || width_now < width_max {
        let util = gpu
            .utilization_percent
            .map(|u| format!(" while {u:.0}% busy"))
            .unwrap_or_default();
        judged
            .problems
            .push((Severity::Warning, format!("PCIe link at {link}{util}")));
        for (what, now, max) in [
            ("pcie link gen", gen_now, gen_max),
            ("pcie link width", width_now, width_max),
        ] {
            if now < max {
                judged
                    .evidence
                    .push(compared(what, now, "<", max, &gpu.source));
            }
        }
    }
    judged
}
