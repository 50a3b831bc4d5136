//! The analysis in the evidence's terms: what `diagnose` judges of a trace, without the tables around it.

use infer_doctor_core::{PhaseTrace, RankTrace, TraceFacts};

use crate::TraceReport;
use crate::analysis::RankAnalysis;

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
            cut: rank.cut.clone(),
        }
    }
}
