//! A deployment tried at a load before anyone buys the GPUs: the simulator's discrete-event clock runs an open
//! Poisson workload through it and reports the percentiles an SLO names, so a plan is checked, not trusted.

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, Exp};
use serde::Serialize;

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

/// What the simulated clients saw.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Simulated {
    pub ttft_p95_s: f64,
    pub tpot_p95_s: f64,
    pub e2e_p95_s: f64,
    pub preempted_requests: usize,
    /// Requests per second that finished, over the measured ones' span.
    pub throughput: f64,
}

/// Runs `load` through the server `setup` describes, on the discrete-event clock (no sleeping, no HTTP).
pub fn simulate(setup: &SimSetup, load: Load) -> Result<Simulated, HardwareError> {
    let mut built = setup.build()?;
    let mut rng = StdRng::seed_from_u64(setup.seed);
    let gap = Exp::new(load.rate.max(1e-9)).map_err(|_| HardwareError::InvalidSetting {
        setting: "rate",
        value: load.rate.to_string(),
        expected: "a positive number of requests per second".to_owned(),
    })?;
    let mut t = 0.0;
    let times = (0..load.requests)
        .map(|_| {
            t += gap.sample(&mut rng);
            t
        })
        .collect();
    let block_size = built.scheduler.block_size;
    let prompt = load.input_tokens.clamp(1, setup.max_model_len - 1);
    let output = load.output_tokens.clamp(1, setup.max_model_len - prompt);
    let outcome = des::run(
        &mut built.core,
        &Arrivals::Open { times },
        |id| des::synthetic_request(id, prompt, (0, 1), output, Some(output), block_size),
        10.0,
        1e6,
    );
    let warm_up = load.requests / 10;
    let measured: Vec<_> = outcome
        .finished
        .iter()
        .filter(|f| f.id >= warm_up)
        .collect();
    let mut ttft = Vec::new();
    let mut tpot = Vec::new();
    let mut e2e = Vec::new();
    for f in &measured {
        let (Some(first), Some(last)) = (f.times.first_token, f.times.last_token) else {
            continue;
        };
        ttft.push(first - f.times.arrived);
        e2e.push(last - f.times.arrived);
        if f.generated > 1 {
            tpot.push((last - first) / f64::from(f.generated - 1));
        }
    }
    let span = measured
        .iter()
        .filter_map(|f| f.times.last_token)
        .fold(0.0_f64, f64::max)
        - measured
            .iter()
            .map(|f| f.times.arrived)
            .fold(f64::INFINITY, f64::min);
    Ok(Simulated {
        ttft_p95_s: p95(&mut ttft),
        tpot_p95_s: p95(&mut tpot),
        e2e_p95_s: p95(&mut e2e),
        preempted_requests: measured.iter().filter(|f| f.preemptions > 0).count(),
        throughput: if span > 0.0 {
            measured.len() as f64 / span
        } else {
            0.0
        },
    })
}

/// Nearest-rank 95th percentile; NaN with no samples, which meets no SLO.
fn p95(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let rank = (0.95 * values.len() as f64).ceil() as usize;
    values[rank.clamp(1, values.len()) - 1]
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
