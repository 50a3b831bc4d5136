//! Two analyses side by side, as HTA's TraceDiff compares a control and a test trace: each kernel's count and
//! total time in both, added, removed, grown or shrunk, and the time breakdowns beside each other.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::analysis::RankAnalysis;
use crate::kernel::{KernelClass, classify};

/// How a kernel changed from the baseline.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    Added,
    Removed,
    Increased,
    Decreased,
    Unchanged,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct KernelChange {
    pub name: String,
    pub class: KernelClass,
    pub baseline_count: u64,
    pub compared_count: u64,
    pub baseline_us: f64,
    pub compared_us: f64,
    pub change: Change,
}

impl KernelChange {
    pub fn delta_us(&self) -> f64 {
        self.compared_us - self.baseline_us
    }
}

/// Busy time of one class in both traces.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ClassChange {
    pub class: KernelClass,
    pub baseline_us: f64,
    pub compared_us: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TraceDiff {
    pub baseline: String,
    pub compared: String,
    pub classes: Vec<ClassChange>,
    /// Largest change in total time first.
    pub kernels: Vec<KernelChange>,
}

/// Total times within this share of each other are unchanged (HTA's diff counts any difference; a trace of the
/// same work never repeats to the nanosecond).
const UNCHANGED_WITHIN: f64 = 0.02;

pub fn diff(baseline: &RankAnalysis, compared: &RankAnalysis) -> TraceDiff {
    let mut by_name: BTreeMap<&str, [(u64, f64); 2]> = BTreeMap::new();
    for (side, analysis) in [baseline, compared].into_iter().enumerate() {
        for kernel in &analysis.kernels {
            by_name.entry(&kernel.name).or_default()[side] = (kernel.count, kernel.sum_us);
        }
    }
    let mut kernels: Vec<KernelChange> = by_name
        .into_iter()
        .map(
            |(name, [(baseline_count, baseline_us), (compared_count, compared_us)])| {
                let change = match (baseline_count, compared_count) {
                    (0, _) => Change::Added,
                    (_, 0) => Change::Removed,
                    _ if (compared_us - baseline_us).abs()
                        <= UNCHANGED_WITHIN * baseline_us.max(compared_us) =>
                    {
                        Change::Unchanged
                    }
                    _ if compared_us > baseline_us => Change::Increased,
                    _ => Change::Decreased,
                };
                KernelChange {
                    name: name.to_string(),
                    class: classify(name),
                    baseline_count,
                    compared_count,
                    baseline_us,
                    compared_us,
                    change,
                }
            },
        )
        .collect();
    kernels.sort_by(|a, b| b.delta_us().abs().total_cmp(&a.delta_us().abs()));
    let busy = |analysis: &RankAnalysis, class: KernelClass| {
        analysis
            .classes
            .iter()
            .find(|c| c.class == class)
            .map_or(0.0, |c| c.busy_us)
    };
    let classes = KernelClass::ALL
        .iter()
        .map(|class| ClassChange {
            class: *class,
            baseline_us: busy(baseline, *class),
            compared_us: busy(compared, *class),
        })
        .filter(|c| c.baseline_us > 0.0 || c.compared_us > 0.0)
        .collect();
    TraceDiff {
        baseline: baseline.source.clone(),
        compared: compared.source.clone(),
        classes,
        kernels,
    }
}
