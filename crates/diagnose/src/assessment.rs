//! What one rule concluded: a finding when it fires, and always a pass, fail or unknown for the checklist, so
//! the checklist and the findings can never disagree about the same evidence.

use infer_doctor_core::{CheckStatus, Confidence, Finding, Observation, Severity, Symptom};

/// The fixed text of one playbook rule (DESIGN.md §6): everything but the numbers.
pub struct Rule {
    pub id: &'static str,
    pub symptom: Symptom,
    pub why: &'static str,
    pub remedies: &'static [&'static str],
    pub source: &'static str,
}

/// One rule's result.
pub(crate) struct Assessment {
    pub rule: &'static str,
    pub finding: Option<Finding>,
    pub status: CheckStatus,
    /// The numbers behind the status, or which evidence was missing.
    pub detail: String,
    pub how_to_know: Option<String>,
}

impl Rule {
    pub(crate) fn fires(
        &self,
        severity: Severity,
        confidence: Confidence,
        verdict: String,
        evidence: Vec<Observation>,
    ) -> Assessment {
        Assessment {
            rule: self.id,
            detail: verdict.clone(),
            finding: Some(Finding {
                id: self.id.to_string(),
                severity,
                confidence,
                symptom: self.symptom,
                verdict,
                evidence,
                why: self.why.to_string(),
                remedies: self.remedies.iter().map(|r| r.to_string()).collect(),
                source: self.source.to_string(),
            }),
            status: CheckStatus::Fail,
            how_to_know: None,
        }
    }

    pub(crate) fn passes(&self, detail: String) -> Assessment {
        Assessment {
            rule: self.id,
            finding: None,
            status: CheckStatus::Pass,
            detail,
            how_to_know: None,
        }
    }

    /// The evidence the rule needs is missing: `missing` names it, `how` says how to get it.
    pub(crate) fn unknown(&self, missing: &str, how: &str) -> Assessment {
        Assessment {
            rule: self.id,
            finding: None,
            status: CheckStatus::Unknown,
            detail: format!("not checked: {missing}"),
            how_to_know: Some(how.to_string()),
        }
    }
}

impl Assessment {
    /// A finding made on partial evidence, so the checklist still says what would settle it.
    pub(crate) fn unsettled(mut self, missing: &str, how: &str) -> Assessment {
        self.status = CheckStatus::Unknown;
        self.detail = format!("{}; not settled: {missing}", self.detail);
        self.how_to_know = Some(how.to_string());
        self
    }
}

/// An observation without a threshold.
pub(crate) fn seen(signal: impl Into<String>, value: f64, window: &str) -> Observation {
    Observation {
        signal: signal.into(),
        value,
        threshold: None,
        comparison: None,
        window: window.to_string(),
    }
}

/// An observation compared with a threshold (`comparison` is `>`, `<`, `≥`, `≈`, …).
pub(crate) fn compared(
    signal: impl Into<String>,
    value: f64,
    comparison: &str,
    threshold: f64,
    window: &str,
) -> Observation {
    Observation {
        threshold: Some(threshold),
        comparison: Some(comparison.to_string()),
        ..seen(signal, value, window)
    }
}

/// How to get each kind of missing evidence, worded once so every "unknown" line says the same.
pub(crate) mod how {
    pub const METRICS: &str = "start the server with metrics enabled (vLLM serves /metrics by default) and pass \
                               --metrics-url, or --metrics FILE.. offline";
    pub const LOG: &str = "pass --log FILE (the engine's startup and stats log)";
    pub const HARDWARE: &str = "give --gpu and --model so the hardware floor is known";
    pub const KERNEL_LOG: &str = "pass the GPU host's kernel log as --log FILE (`journalctl -k > kernel.log` or \
                                  `dmesg -T > dmesg.txt`, which may need root)";
    pub const GPU_STATE: &str = "pass --gpu FILE: `nvidia-smi -q` (or `-q -x`, or `--query-gpu=… --format=csv`) \
                                 saved on the GPU host while it serves";
    pub const COLLECT: &str =
        "run infer-doctor collect on the GPU host (it runs nvidia-smi under a deadline)";
    pub const TOPOLOGY: &str = "pass --gpu FILE with `nvidia-smi topo -m` and `nvidia-smi nvlink -s` saved on the \
                                GPU host, and `nvidia-smi nvlink -e` saved before and after load (infer-doctor \
                                collect gathers all of them)";
    pub const DCGM_DIAG: &str = "run `infer-doctor collect --dcgm` on the GPU host (it runs `dcgmi diag -r 1` after \
                                 the probe), or pass --gpu FILE with a saved `dcgmi diag -r 1 -j` output";
    pub const HOST: &str = "run `infer-doctor collect` on the GPU host and pass its bundle (--bundle DIR, which \
                            reads host.json)";
    pub const SERVER_PROCESS: &str = "run `infer-doctor collect --pid PID` on the GPU host with the server's \
                                      process id, so its CPU placement and cgroup are read";
    pub const POD: &str = "run `infer-doctor collect --log k8s:NAMESPACE/POD` where kubectl reaches the \
                           cluster and pass its bundle (--bundle DIR, which reads k8s/pod.json)";
    pub const LOADED_PROBE: &str = "run the loaded probe (diagnose --url URL) or pass --requests requests.jsonl / --bundle DIR";
    pub const SINGLE_USER_PROBE: &str =
        "run the single-user probe (diagnose --url URL runs it before the loaded one)";
    pub const REQUESTS: &str =
        "keep the per-request records (diagnose --url, or --requests requests.jsonl)";
}

/// How sure a finding is from how many of its independent reasons held: two or more agreeing, high.
pub(crate) fn confidence_from_reasons(reasons: usize) -> Confidence {
    if reasons > 1 {
        Confidence::High
    } else {
        Confidence::Medium
    }
}

/// Milliseconds for people: `17 ms`, `2.4 s`.
pub(crate) fn ms(value: f64) -> String {
    if value.abs() >= 1000.0 {
        format!("{:.1} s", value / 1000.0)
    } else if value.abs() >= 10.0 {
        format!("{value:.0} ms")
    } else {
        format!("{value:.1} ms")
    }
}

/// A 0–1 share as a percentage: `97%`, `1.5%`.
pub(crate) fn percent(share: f64) -> String {
    // `+ 0.0` turns an empty sum's -0.0 into 0.0, so nothing prints "-0.0%".
    let p = share * 100.0 + 0.0;
    if p.abs() >= 10.0 {
        format!("{p:.0}%")
    } else {
        format!("{p:.1}%")
    }
}

/// The middle value (the mean of the two middle ones for an even count); `None` for none. Sorts in place.
pub(crate) fn median(values: &mut [f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    Some(if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    })
}

/// `value / base` when both are usable numbers and the base is positive.
pub(crate) fn ratio(value: f64, base: f64) -> Option<f64> {
    (value.is_finite() && base.is_finite() && base > 0.0).then(|| value / base)
}
