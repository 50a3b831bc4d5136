//! A figure drifting across runs (the case study where tokens/s fell from 610 to 420 over five days): a trend
//! test over the history, so a slow decline is named before any single comparison calls it more than noise.

use infer_doctor_core::figures::{Better, Figure, SampleSource};
use infer_doctor_core::resample::normal_cdf;
use infer_doctor_core::{Confidence, Finding, Observation, Severity, Symptom};
use serde::Serialize;

use crate::assessment::median;

pub const DRIFT_ID: &str = "history.drift";

/// When a trend is named.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DriftSettings {
    /// Fewer runs than this say nothing: three points make a trend by chance one time in six.
    pub min_runs: usize,
    /// One-sided p-value of the Mann–Kendall test below which the trend is real.
    pub significance: f64,
    /// The fitted change from the first run to the last, relative, below which a real trend is too small to name.
    pub min_change: f64,
    /// The same floor for the error rate, in percentage points (it starts at 0 % on a healthy service, where no
    /// relative change exists).
    pub min_points: f64,
}

impl Default for DriftSettings {
    fn default() -> Self {
        DriftSettings {
            min_runs: 4,
            significance: 0.05,
            min_change: 0.10,
            min_points: 1.0,
        }
    }
}

/// A monotonic trend in a series, whatever its direction.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Trend {
    /// Theil–Sen slope per run (the median of pairwise slopes: one outlying run cannot steer it).
    pub slope_per_run: f64,
    /// The fitted line's values at the first and the last run.
    pub fitted_first: f64,
    pub fitted_last: f64,
    /// fitted_last / fitted_first − 1.
    pub change: f64,
    /// Mann–Kendall's one-sided p-value for a trend in the slope's direction.
    pub p_value: f64,
}

/// Mann–Kendall's S with the normal approximation (continuity-corrected, ties adjusted), and the Theil–Sen line.
/// `None` for fewer than two finite values.
pub fn trend(values: &[f64]) -> Option<Trend> {
    let n = values.len();
    if n < 2 || values.iter().any(|v| !v.is_finite()) {
        return None;
    }
    let mut s = 0i64;
    let mut slopes = Vec::with_capacity(n * (n - 1) / 2);
    for i in 0..n {
        for j in i + 1..n {
            s += match values[j].total_cmp(&values[i]) {
                std::cmp::Ordering::Greater => 1,
                std::cmp::Ordering::Less => -1,
                std::cmp::Ordering::Equal => 0,
            };
            slopes.push((values[j] - values[i]) / (j - i) as f64);
        }
    }
    let nf = n as f64;
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let ties: f64 = sorted
        .chunk_by(|a, b| a == b)
        .map(|g| g.len() as f64)
        .filter(|&t| t > 1.0)
        .map(|t| t * (t - 1.0) * (2.0 * t + 5.0))
        .sum();
    let variance = (nf * (nf - 1.0) * (2.0 * nf + 5.0) - ties) / 18.0;
    let z = if s == 0 || variance <= 0.0 {
        0.0
    } else {
        (s as f64 - s.signum() as f64) / variance.sqrt()
    };
    let slope = median(&mut slopes)?;
    let mut offsets: Vec<f64> = values
        .iter()
        .enumerate()
        .map(|(i, v)| v - slope * i as f64)
        .collect();
    let intercept = median(&mut offsets)?;
    let (first, last) = (intercept, intercept + slope * (nf - 1.0));
    Some(Trend {
        slope_per_run: slope,
        fitted_first: first,
        fitted_last: last,
        change: if first != 0.0 {
            last / first - 1.0
        } else {
            0.0
        },
        p_value: 1.0 - normal_cdf(z.abs()),
    })
}

/// The `history.drift` finding when `figure` got worse across `runs` (oldest first, each labelled), or `None`
/// when there are too few runs, no real trend, or the trend is an improvement.
pub fn drift(figure: &Figure, runs: &[(String, f64)], settings: &DriftSettings) -> Option<Finding> {
    if runs.len() < settings.min_runs {
        return None;
    }
    let values: Vec<f64> = runs.iter().map(|(_, v)| *v).collect();
    let t = trend(&values)?;
    let points = figure.source == SampleSource::ErrorShare;
    // How far the fitted line moved, in the unit its floor is in.
    let (moved, floor) = if points {
        (t.fitted_last - t.fitted_first, settings.min_points)
    } else if t.fitted_first > 0.0 {
        (t.change, settings.min_change)
    } else {
        return None;
    };
    let worse = match figure.better {
        Better::Lower => moved > 0.0,
        Better::Higher => moved < 0.0,
    };
    if !worse || t.p_value >= settings.significance || moved.abs() < floor {
        return None;
    }
    let (first, last) = (&runs[0], &runs[runs.len() - 1]);
    let window = format!("{} runs, {} → {}", runs.len(), first.0, last.0);
    let symptom = match (figure.name.split('_').next(), figure.source) {
        (_, SampleSource::ErrorShare) => Symptom::Errors,
        (Some("ttft"), _) => Symptom::Ttft,
        (Some("tpot" | "itl"), _) => Symptom::Itl,
        _ => Symptom::Throughput,
    };
    Some(Finding {
        id: DRIFT_ID.into(),
        severity: if (points && moved.abs() >= 5.0) || (!points && moved.abs() >= 0.25) {
            Severity::Critical
        } else {
            Severity::Warning
        },
        confidence: if t.p_value < 0.01 {
            Confidence::High
        } else {
            Confidence::Medium
        },
        symptom,
        verdict: format!(
            "{} drifted {} across {} runs: {} → {} {} ({} on the fitted trend)",
            figure.label,
            if moved > 0.0 { "up" } else { "down" },
            runs.len(),
            number(first.1),
            number(last.1),
            figure.unit,
            if points {
                format!("{moved:+.1} pp")
            } else {
                format!("{:+.0}%", moved * 100.0)
            }
        ),
        evidence: vec![
            observed(format!("{} first run", figure.name), first.1, None, &first.0),
            observed(format!("{} last run", figure.name), last.1, None, &last.0),
            observed(
                format!("{} fitted change", figure.name),
                moved,
                Some((floor, "|·| ≥")),
                &window,
            ),
            observed(
                "Mann–Kendall p-value".into(),
                t.p_value,
                Some((settings.significance, "<")),
                &window,
            ),
        ],
        why: "The same workload against the same target got steadily worse from run to run, more than run-to-run \
              noise explains: something accumulates between runs (KV-cache fragmentation, a leak, a growing \
              prefix of cold cache, a neighbour taking the GPU, thermal throttling)."
            .into(),
        remedies: vec![
            "Compare the first and the last run (`infer-doctor compare FIRST LAST`) for the server-side reason"
                .into(),
            "Check preemptions and KV usage across the same runs; a restart that restores the first run's \
             numbers points at fragmentation or a leak"
                .into(),
            "Schedule restarts of long-running servers until the cause is fixed".into(),
            "Check the GPU's clocks and throttle reasons over the same period (`infer-doctor collect`)".into(),
        ],
        source: "infer-doctor's rule: Mann–Kendall trend test (Mann 1945, Kendall 1975) with the Theil–Sen slope; \
                 the case study of tokens/s falling 610 → 420 over five days (KV fragmentation)"
            .into(),
    })
}

fn observed(signal: String, value: f64, limit: Option<(f64, &str)>, window: &str) -> Observation {
    Observation {
        signal,
        value,
        threshold: limit.map(|(v, _)| v),
        comparison: limit.map(|(_, how)| how.to_string()),
        window: window.to_string(),
    }
}

fn number(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use infer_doctor_core::figures::figure;

    fn labelled(values: &[f64]) -> Vec<(String, f64)> {
        values
            .iter()
            .enumerate()
            .map(|(i, v)| (format!("day {}", i + 1), *v))
            .collect()
    }

    #[test]
    fn the_case_study_of_tokens_per_second_falling_over_five_days_is_named() {
        let throughput = figure("throughput").unwrap();
        let finding = drift(
            throughput,
            &labelled(&[610.0, 570.0, 525.0, 470.0, 420.0]),
            &DriftSettings::default(),
        )
        .expect("a steady fall of 31% is drift");
        assert_eq!(finding.id, DRIFT_ID);
        assert_eq!(finding.severity, Severity::Critical);
        assert!(finding.verdict.contains("610 → 420"), "{}", finding.verdict);
    }

    #[test]
    fn noise_an_improvement_and_too_few_runs_are_not_drift() {
        let settings = DriftSettings::default();
        let throughput = figure("throughput").unwrap();
        // Up and down around 600: no monotonic trend.
        assert!(
            drift(
                throughput,
                &labelled(&[600.0, 640.0, 590.0, 630.0, 605.0]),
                &settings
            )
            .is_none()
        );
        // Rising tokens/s is an improvement.
        assert!(
            drift(
                throughput,
                &labelled(&[420.0, 470.0, 525.0, 570.0, 610.0]),
                &settings
            )
            .is_none()
        );
        // Three runs: a trend by chance one time in six.
        assert!(drift(throughput, &labelled(&[610.0, 520.0, 420.0]), &settings).is_none());
        // A real but small drift (3 %) stays under the floor.
        assert!(
            drift(
                throughput,
                &labelled(&[600.0, 597.0, 594.0, 591.0, 588.0, 585.0]),
                &settings
            )
            .is_none()
        );
        // An error rate climbing from zero is drift, in percentage points.
        let errors = figure("error_rate").unwrap();
        let f = drift(errors, &labelled(&[0.0, 0.0, 1.0, 2.5, 4.0]), &settings).expect("0% → 4%");
        assert!(
            f.verdict.contains("pp on the fitted trend"),
            "{}",
            f.verdict
        );
        assert!(drift(errors, &labelled(&[0.0, 0.0, 0.0, 0.0, 0.0]), &settings).is_none());
        // Rising latency is drift too.
        let tpot = figure("tpot_p95").unwrap();
        let f = drift(tpot, &labelled(&[20.0, 22.0, 25.0, 27.0, 30.0]), &settings).unwrap();
        assert_eq!(f.symptom, Symptom::Itl);
    }

    #[test]
    fn one_outlying_run_does_not_steer_the_fitted_line() {
        let t = trend(&[100.0, 100.0, 100.0, 500.0, 100.0, 100.0]).unwrap();
        assert_eq!(t.slope_per_run, 0.0);
        assert!(t.p_value > 0.3, "{t:?}");
    }
}
