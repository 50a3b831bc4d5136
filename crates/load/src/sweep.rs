//! `--sweep`: measure the saturation throughput with a closed loop, run open-loop rates up to it, and with SLOs
//! find the highest rate that meets all of them (grid, then bisection between the last pass and first fail).

use std::sync::Arc;

use infer_doctor_core::{PromptSource, RunSummary, TokenCounter};
use serde::{Deserialize, Serialize};

use crate::LoadError;
use crate::cancel::Cancel;
use crate::run::{LiveCounters, LoadShape, RunSpec, run};
use crate::schedule::Arrival;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SweepPoint {
    /// Requested arrival rate (req/s).
    pub rate: f64,
    /// Whether every SLO passed at this rate (`None` without SLOs).
    pub slo_pass: Option<bool>,
    pub summary: RunSummary,
    /// Absent from run directories written before spans were recorded.
    #[serde(flatten, default)]
    pub span: Option<PointSpan>,
}

/// Where one measured load sits in the sweep's shared files: its block of request ids in `requests.jsonl` and
/// its time on the sweep's clock (seconds from its start, the scrapes' clock), so a reader can take one point
/// alone instead of pooling loads that differ by design.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PointSpan {
    pub first_id: u64,
    pub started_s: f64,
    pub ended_s: f64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SweepOutcome {
    pub saturation_concurrency: u64,
    /// Completed requests per second at saturation: the top of the sweep.
    pub saturation_rate: f64,
    pub saturation: RunSummary,
    #[serde(default)]
    pub saturation_span: Option<PointSpan>,
    pub points: Vec<SweepPoint>,
    /// The highest rate measured that met every SLO.
    pub best_rate: Option<f64>,
    pub interrupted: bool,
}

/// Request ids of one point: each starts past the previous point's block, so ids stay unique in requests.jsonl.
pub const POINT_ID_BLOCK: u64 = 1_000_000_000;

impl SweepOutcome {
    /// The point a sweep's headline describes: the highest rate meeting every SLO, else the highest rate
    /// measured, else the saturation run; with where it lies in the shared files when that was recorded.
    pub fn headline_point(&self) -> (&RunSummary, Option<PointSpan>) {
        self.best_rate
            .and_then(|r| self.points.iter().find(|p| p.rate == r))
            .or(self.points.last())
            .map_or((&self.saturation, self.saturation_span), |p| {
                (&p.summary, p.span)
            })
    }
}

/// Bisection steps between the highest passing and the lowest failing grid rate.
const REFINE_STEPS: u32 = 2;

pub async fn sweep(
    base: &RunSpec,
    points: u32,
    saturation_concurrency: u64,
    prompts: Arc<dyn PromptSource>,
    counter: Option<Arc<dyn TokenCounter>>,
    live: Arc<LiveCounters>,
    cancel: Cancel,
) -> Result<SweepOutcome, LoadError> {
    let arrival = match base.shape {
        LoadShape::Open { arrival, .. } => arrival,
        LoadShape::Closed { .. } => Arrival::Poisson,
    };
    let clock = std::time::Instant::now();
    let mut next_id = base.first_id;
    let mut append = false;
    let mut run_point = |shape: LoadShape| {
        let first_id = next_id;
        let mut spec = base.clone();
        spec.shape = shape;
        spec.first_id = next_id;
        spec.requests_jsonl = base
            .requests_jsonl
            .as_ref()
            .map(|(p, _)| (p.clone(), append));
        append = true;
        // Ids stay unique across points: each point's ids start past the previous point's.
        next_id += POINT_ID_BLOCK;
        let (prompts, counter, live, cancel) = (
            prompts.clone(),
            counter.clone(),
            live.clone(),
            cancel.clone(),
        );
        async move {
            let started_s = clock.elapsed().as_secs_f64();
            let out = run(&spec, prompts, counter, live, cancel).await?;
            let span = PointSpan {
                first_id,
                started_s,
                ended_s: clock.elapsed().as_secs_f64(),
            };
            Ok::<_, LoadError>((out, span))
        }
    };
    let (saturation, saturation_span) = run_point(LoadShape::Closed {
        concurrency: saturation_concurrency,
    })
    .await?;
    let saturation_rate = saturation.summary.throughput.request_rate;
    let mut outcome = SweepOutcome {
        saturation_concurrency,
        saturation_rate,
        saturation: saturation.summary,
        saturation_span: Some(saturation_span),
        points: Vec::new(),
        best_rate: None,
        interrupted: saturation.interrupted,
    };
    if saturation_rate <= 0.0 || outcome.interrupted {
        return Ok(outcome);
    }
    let has_slo = !base.slo.is_empty();
    let mut measure =
        async |rate: f64, outcome: &mut SweepOutcome| -> Result<Option<bool>, LoadError> {
            let (out, span) = run_point(LoadShape::Open {
                rate,
                arrival,
                max_concurrency: None,
            })
            .await?;
            outcome.interrupted |= out.interrupted;
            let slo_pass = has_slo.then(|| out.summary.slo.iter().all(|s| s.pass));
            outcome.points.push(SweepPoint {
                rate,
                slo_pass,
                summary: out.summary,
                span: Some(span),
            });
            Ok(slo_pass)
        };
    let n = points.max(1);
    for k in 1..=n {
        measure(saturation_rate * f64::from(k) / f64::from(n), &mut outcome).await?;
        if outcome.interrupted {
            return Ok(outcome);
        }
    }
    if has_slo {
        let passing = |o: &SweepOutcome| {
            o.points
                .iter()
                .filter(|p| p.slo_pass == Some(true))
                .map(|p| p.rate)
                .fold(None, |a: Option<f64>, r| Some(a.map_or(r, |a| a.max(r))))
        };
        let mut low = passing(&outcome);
        let mut high = outcome
            .points
            .iter()
            .filter(|p| p.slo_pass == Some(false) && low.is_none_or(|l| p.rate > l))
            .map(|p| p.rate)
            .reduce(f64::min);
        for _ in 0..REFINE_STEPS {
            let (Some(l), Some(h)) = (low.or(Some(0.0)), high) else {
                break;
            };
            let mid = (l + h) / 2.0;
            if mid <= 0.0 || outcome.interrupted {
                break;
            }
            if measure(mid, &mut outcome).await? == Some(true) {
                low = Some(mid)
            } else {
                high = Some(mid)
            }
        }
        outcome.best_rate = low;
        outcome.points.sort_by(|a, b| a.rate.total_cmp(&b.rate));
    }
    Ok(outcome)
}
