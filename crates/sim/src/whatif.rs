//! A deployment tried at a load before anyone buys the GPUs: the simulator's discrete-event clock runs an open
//! Poisson workload through it and reports the percentiles an SLO names, so a plan is checked, not trusted.

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, Exp};
use serde::Serialize;

use infer_doctor_core::LatencyHistogram;

use crate::des::{self, Arrivals};
use crate::setup::SimSetup;
use infer_doctor_plan::HardwareError;

/// A steady load on one replica.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Load {
    /// Requests per second, Poisson.
    pub rate: f64,
    pub input_tokens: u32,
    pub output_tokens: u32,
    /// Requests simulated; the first tenth are warm-up and not counted.
    pub requests: u64,
}

/// What the simulated clients saw; a percentile is NaN (meeting no SLO) when some measured request never finished.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Simulated {
    pub ttft_p95_s: f64,
    pub tpot_p95_s: f64,
    pub e2e_p95_s: f64,
    pub preempted_requests: usize,
    /// Requests per second that finished, over the measured ones' span.
    pub throughput: f64,
}

impl Simulated {
    /// What a check that could not run reports: no percentile, so no SLO met.
    pub fn unmeasured() -> Simulated {
        Simulated {
            ttft_p95_s: f64::NAN,
            tpot_p95_s: f64::NAN,
            e2e_p95_s: f64::NAN,
            preempted_requests: 0,
            throughput: 0.0,
        }
    }
}

/// Runs `load` through the server `setup` describes, on the discrete-event clock (no sleeping, no HTTP).
pub fn simulate(setup: &SimSetup, load: Load) -> Result<Simulated, HardwareError> {
    let mut built = setup.build()?;
    let mut rng = StdRng::seed_from_u64(setup.seed);
    let rate = Some(load.rate).filter(|r| r.is_finite() && *r > 0.0);
    let gap = rate
        .and_then(|r| Exp::new(r).ok())
        .ok_or_else(|| HardwareError::InvalidSetting {
            setting: "rate",
            value: load.rate.to_string(),
            expected: "a positive number of requests per second".to_owned(),
        })?;
    let mut t = 0.0;
    let times: Vec<f64> = (0..load.requests)
        .map(|_| {
            t += gap.sample(&mut rng);
            t
        })
        .collect();
    let block_size = built.scheduler.block_size;
    let prompt = load.input_tokens.clamp(1, setup.max_model_len - 1);
    let output = load.output_tokens.clamp(1, setup.max_model_len - prompt);
    // Long enough to drain any queue the arrivals built up, whatever the rate; samples stay ~1,000 whatever it is.
    let last_arrival = times.last().copied().unwrap_or(0.0);
    let horizon = 2.0 * last_arrival + 3600.0;
    let outcome = des::run(
        &mut built.core,
        &Arrivals::Open { times },
        |id| des::synthetic_request(id, prompt, (0, 1), output, Some(output), block_size),
        horizon / 1000.0,
        horizon,
    );
    let warm_up = load.requests / 10;
    let measured: Vec<_> = outcome
        .finished
        .iter()
        .filter(|f| f.id >= warm_up)
        .collect();
    let (mut ttft, mut tpot, mut e2e) = (
        LatencyHistogram::new(),
        LatencyHistogram::new(),
        LatencyHistogram::new(),
    );
    let us = |seconds: f64| (seconds * 1e6).round().max(0.0) as u64;
    for f in &measured {
        let (Some(first), Some(last)) = (f.times.first_token, f.times.last_token) else {
            continue;
        };
        ttft.record_us(us(first - f.times.arrived));
        e2e.record_us(us(last - f.times.arrived));
        if f.generated > 1 {
            tpot.record_us(us((last - first) / f64::from(f.generated - 1)));
        }
    }
    // A request still queued or running at the horizon never got its latency: the percentiles are unknown then,
    // not the survivors' (which would flatter an overloaded option).
    let all_finished = measured.len() as u64 == load.requests - warm_up.min(load.requests);
    let p95 = |h: &LatencyHistogram| {
        h.summary()
            .filter(|_| all_finished)
            .map_or(f64::NAN, |s| s.p95 / 1e3)
    };
    let span = measured
        .iter()
        .filter_map(|f| f.times.last_token)
        .fold(0.0_f64, f64::max)
        - measured
            .iter()
            .map(|f| f.times.arrived)
            .fold(f64::INFINITY, f64::min);
    Ok(Simulated {
        ttft_p95_s: p95(&ttft),
        tpot_p95_s: p95(&tpot),
        e2e_p95_s: p95(&e2e),
        preempted_requests: measured.iter().filter(|f| f.preemptions > 0).count(),
        throughput: if span > 0.0 {
            measured.len() as f64 / span
        } else {
            0.0
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(rate: f64) -> Load {
        Load {
            rate,
            input_tokens: 2000,
            output_tokens: 300,
            requests: 400,
        }
    }

    #[test]
    fn latency_grows_with_the_load_and_bad_settings_are_errors() {
        let setup = SimSetup {
            jitter_sigma: 0.0,
            ..SimSetup::default()
        };
        let light = simulate(&setup, load(1.0)).unwrap();
        let heavy = simulate(&setup, load(40.0)).unwrap();
        assert!(light.ttft_p95_s < heavy.ttft_p95_s, "{light:?} {heavy:?}");
        assert!(light.tpot_p95_s < heavy.tpot_p95_s, "{light:?} {heavy:?}");
        // One user alone: a 2,000-token prefill on an H100 is tens of ms, a decode step ~7 ms.
        assert!(
            light.ttft_p95_s < 0.2 && light.tpot_p95_s < 0.012,
            "{light:?}"
        );
        assert!((light.throughput - 1.0).abs() < 0.25, "{light:?}");
        let error = simulate(
            &SimSetup {
                quantization: Some("awq".into()),
                ..setup
            },
            load(1.0),
        )
        .unwrap_err();
        assert!(error.to_string().contains("quantization"), "{error}");
    }
}
