//! The analysis in the evidence's terms: what `diagnose` judges of a trace, without the tables around it.

use infer_doctor_core::{
    KernelTrace, MAX_DRAWN_STEPS, PhaseTrace, RankTrace, StepTrace, TraceFacts,
};

use crate::TraceReport;
use crate::analysis::RankAnalysis;

/// Kernels named in the evidence, for the report's bars.
const TOP_KERNELS: usize = 10;

impl From<&TraceReport> for TraceFacts {
    fn from(report: &TraceReport) -> TraceFacts {
        TraceFacts {
            ranks: report.ranks.iter().map(RankTrace::from).collect(),
        }
    }
}

impl From<&RankAnalysis> for RankTrace {
    fn from(rank: &RankAnalysis) -> RankTrace {
        let temporal = rank.temporal.as_ref();
        let communication = rank
            .classes
            .iter()
            .find(|c| c.class == crate::kernel::KernelClass::Communication)
            .map_or(0.0, |c| c.busy_us);
        RankTrace {
            source: rank.source.clone(),
            rank: rank.rank,
            span_us: temporal.map_or(0.0, |t| t.span_us),
            idle_us: temporal.map_or(0.0, |t| t.idle_us),
            compute_us: temporal.map_or(0.0, |t| t.compute_us),
            idle_host_wait_us: rank.idle.iter().map(|s| s.host_wait_us).sum(),
            idle_kernel_wait_us: rank.idle.iter().map(|s| s.kernel_wait_us).sum(),
            idle_other_us: rank.idle.iter().map(|s| s.other_us).sum(),
            busy_us: rank.busy_us,
            kernels: rank.launches.kernels,
            short_kernels: rank.launches.short_kernels,
            kernels_from_graphs: rank.launches.kernels_from_graphs,
            launch_delay_p50_us: rank.launches.launch_delay_us.as_ref().map(|d| d.p50),
            communication_us: communication,
            communication_exposed_us: rank.communication_exposed_us,
            phases: rank
                .steps
                .iter()
                .flat_map(|s| &s.phases)
                .map(|p| {
                    let busy: f64 = p.classes.iter().map(|(_, t)| t).sum();
                    let (dominant_class, dominant_time) = p
                        .classes
                        .first()
                        .map_or(("none".to_string(), 0.0), |(c, t)| {
                            (c.label().to_string(), *t)
                        });
                    PhaseTrace {
                        phase: p.phase.label().to_string(),
                        steps: p.steps,
                        tokens: p.tokens,
                        mean_gpu_busy_us: p.mean_gpu_busy_us,
                        mean_gpu_span_us: p.mean_gpu_span_us,
                        dominant_class,
                        dominant_share: if busy > 0.0 {
                            dominant_time / busy
                        } else {
                            0.0
                        },
                        host_copies: p.host_copies,
                        host_copy_us: p.host_copy_us,
                        gpu_busy_us: p.mean_gpu_busy_us * p.steps as f64,
                    }
                })
                .collect(),
            steps: drawn_steps(rank),
            steps_total: rank.steps.as_ref().map_or(0, |s| s.steps.len() as u64),
            top_kernels: rank
                .kernels
                .iter()
                .take(TOP_KERNELS)
                .map(|k| KernelTrace {
                    name: k.name.clone(),
                    class: k.class.label().to_string(),
                    count: k.count,
                    total_us: k.sum_us,
                })
                .collect(),
            cut: rank.cut.clone(),
        }
    }
}

/// Every step up to `MAX_DRAWN_STEPS`, else that many evenly spaced ones, first and last included.
fn drawn_steps(rank: &RankAnalysis) -> Vec<StepTrace> {
    let Some(steps) = &rank.steps else {
        return Vec::new();
    };
    evenly_spaced(steps.steps.len(), MAX_DRAWN_STEPS)
        .into_iter()
        .map(|i| {
            let step = &steps.steps[i];
            let classes = step
                .classes
                .iter()
                .map(|(class, us)| (class.label().to_string(), *us))
                .collect();
            StepTrace {
                start_us: step.start_us,
                phase: step.phase.label().to_string(),
                cpu_us: step.cpu_us,
                gpu_span_us: step.gpu_span_us,
                gpu_busy_us: step.gpu_busy_us,
                classes,
            }
        })
        .collect()
}

/// Indices into `n` items: all of them up to `at_most` (at least 2), else `at_most` evenly spaced, first and last
/// included.
fn evenly_spaced(n: usize, at_most: usize) -> Vec<usize> {
    if n <= at_most {
        return (0..n).collect();
    }
    (0..at_most).map(|i| i * (n - 1) / (at_most - 1)).collect()
}

#[cfg(test)]
mod tests {
    use super::evenly_spaced;

    #[test]
    fn long_traces_keep_evenly_spaced_steps_first_and_last_included() {
        assert_eq!(evenly_spaced(3, 600), vec![0, 1, 2]);
        let picked = evenly_spaced(10_000, 600);
        assert_eq!(picked.len(), 600);
        assert_eq!((picked[0], picked[599]), (0, 9_999));
        assert!(picked.windows(2).all(|w| w[1] > w[0]));
        let gaps: Vec<usize> = picked.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(gaps.iter().all(|g| (16..=17).contains(g)), "{gaps:?}");
    }
}
