//! Bad numbers never panic the playbook: NaN, infinities, zeros and negatives anywhere in a full evidence shape
//! still give a diagnosis with the whole checklist.

mod support;

use infer_doctor_core::{Evidence, Signal};
use infer_doctor_diagnose::{Thresholds, diagnose};
use proptest::prelude::*;
use support::*;

fn any_number() -> impl Strategy<Value = f64> {
    prop_oneof![
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        Just(0.0),
        Just(-1.0),
        0.0..5000.0f64,
    ]
}

/// Writes `values` into every number the rules read, cycling through them.
fn scramble(values: &[f64]) -> Evidence {
    let mut next = values.iter().copied().cycle();
    let mut take = || next.next().unwrap_or(0.0);
    let mut evidence = healthy();
    for signal in [
        Signal::RequestsRunning,
        Signal::RequestsWaiting,
        Signal::KvUsage,
        Signal::RequestsWaitingCapacity,
    ] {
        let (mean, max) = (take(), take());
        set_gauge(&mut evidence, signal, mean, max);
    }
    for signal in [
        Signal::Ttft,
        Signal::QueueTime,
        Signal::PrefillTime,
        Signal::E2e,
    ] {
        let mut h = histogram(take());
        h.count = take();
        server(&mut evidence).histograms.insert(signal, h);
    }
    for signal in [
        Signal::Preemptions,
        Signal::PrefixCacheHits,
        Signal::PrefixCacheQueries,
        Signal::RequestsFinished,
    ] {
        let (increase, seconds) = (take(), take());
        server(&mut evidence)
            .counters
            .insert(signal, counter(increase, seconds));
    }
    server(&mut evidence).end = take();
    // Host facts are integers but for pressure; `as` saturates NaN and infinities.
    let host = host(&mut evidence);
    host.swap_used_bytes = Some(take() as u64);
    host.pressure.memory.as_mut().unwrap().some_avg10 = Some(take());
    let cgroup = host.cgroup.as_mut().unwrap();
    (cgroup.nr_periods, cgroup.nr_throttled) = (Some(take() as u64), Some(take() as u64));
    let (ttft, itl, in_flight) = (take(), take(), take());
    evidence.client = Some(run(ttft, itl, in_flight));
    let client = client(&mut evidence);
    client.requests.error_rate = take();
    client.tokens.mean_output = take();
    client.tokens.mean_max_tokens = take();
    client.tokens.mean_input = take();
    client.throughput.output_tokens_per_s = take();
    client.client.requested_rate = Some(take());
    let (ttft, itl) = (take(), take());
    evidence.single_user = Some(run(ttft, itl, 1.0));
    let hardware = evidence.hardware.as_mut().unwrap();
    (
        hardware.decode_floor_seconds,
        hardware.vram_bytes,
        hardware.weight_bytes,
    ) = (take(), take(), take());
    let log = evidence.log.as_mut().unwrap();
    log.max_concurrency = Some((take(), 4096));
    evidence.scrapes = (0..6)
        .map(|_| {
            let mut readings = infer_doctor_core::ServerReadings::default();
            readings.readings.insert(
                Signal::GenerationTokens,
                infer_doctor_core::Reading::Value(take()),
            );
            (take(), readings)
        })
        .collect();
    let gpu = gpu(&mut evidence);
    gpu.utilization_percent = Some(take());
    (gpu.sm_clock_mhz, gpu.max_sm_clock_mhz) = (Some(take()), Some(take()));
    (gpu.power_limit_watts, gpu.default_power_limit_watts) = (Some(take()), Some(take()));
    (gpu.pcie_gen, gpu.pcie_gen_max) = (Some(take()), Some(take()));
    (gpu.ecc_uncorrected_volatile, gpu.ecc_corrected_volatile) = (Some(take()), Some(take()));
    with_fleet(&mut evidence);
    for pod in ["vllm-0", "vllm-1"] {
        for signal in [
            Signal::RequestsRunning,
            Signal::RequestsWaiting,
            Signal::KvUsage,
        ] {
            let (mean, max) = (take(), take());
            set_pod_gauge(&mut evidence, pod, signal, mean, max);
        }
    }
    evidence.requests.clear();
    evidence
}

/// Every checklist line, asked of every diagnosis.
const CHECKLIST_LINES: usize = 57;

proptest! {
    #[test]
    fn any_numbers_give_a_full_diagnosis(values in proptest::collection::vec(any_number(), 1..64)) {
        let diagnosis = diagnose(&scramble(&values), &Thresholds::default());
        prop_assert_eq!(diagnosis.checklist.len(), CHECKLIST_LINES);
        prop_assert!(!diagnosis.headline.is_empty());
    }
}

#[test]
fn zero_everything_does_not_panic() {
    let diagnosis = diagnose(&scramble(&[0.0]), &Thresholds::default());
    assert_eq!(diagnosis.checklist.len(), CHECKLIST_LINES);
    let diagnosis = diagnose(&scramble(&[f64::NAN]), &Thresholds::default());
    assert_eq!(diagnosis.checklist.len(), CHECKLIST_LINES);
}
