//! The observe room against the simulated vLLM server, whose truth is known: scrapes of its `/metrics` text
//! read as canonical signals and summarised over the run must give back what the engine actually did.

use infer_doctor_core::Signal;
use infer_doctor_observe::dialect;
use infer_doctor_observe::exposition::parse;
use infer_doctor_observe::server::summarize;
use infer_doctor_sim::des::synthetic_request;
use infer_doctor_sim::setup::SimSetup;

#[test]
fn a_scraped_simulated_run_summarises_to_what_the_engine_did() {
    let mut built = SimSetup {
        jitter_sigma: 0.0,
        ..SimSetup::default()
    }
    .build()
    .unwrap();
    let core = &mut built.core;
    for id in 0..20 {
        core.add(synthetic_request(id, 256, (0, 1), 64, None, 16), 0.0);
    }
    let mut scrapes = Vec::new();
    let mut scrape = |t: f64, text: String| {
        let readings = dialect::read(&parse(&text), None, "sim").unwrap();
        scrapes.push((t, readings));
    };
    scrape(0.0, core.metrics.render());
    let (mut now, mut next_scrape, mut finished) = (0.0, 0.1, Vec::new());
    while let Some((step, seconds)) = core.begin_step(now) {
        now += seconds;
        for token in core.end_step(&step, now) {
            finished.extend(token.finished);
        }
        if now >= next_scrape {
            scrape(now, core.metrics.render());
            next_scrape += 0.1;
        }
    }
    scrape(now + 0.01, core.metrics.render());
    assert_eq!(finished.len(), 20);

    let w = summarize(&scrapes).unwrap();
    assert_eq!(w.dialect, "vllm_v1");
    assert_eq!(
        w.counter(Signal::GenerationTokens).unwrap().increase,
        20.0 * 64.0
    );
    assert_eq!(
        w.counter(Signal::PromptTokens).unwrap().increase,
        20.0 * 256.0
    );
    assert_eq!(
        w.counter(Signal::RequestsFinished).unwrap().by_label["length"],
        20.0
    );
    assert_eq!(w.gauge(Signal::RequestsRunning).unwrap().max, 20.0);
    assert_eq!(w.gauge(Signal::RequestsRunning).unwrap().last, 0.0);
    let e2e = w.histogram(Signal::E2e).unwrap();
    assert_eq!(e2e.count, 20.0);
    // The mean is exact (sum / count); quantiles are interpolated inside vLLM's buckets.
    let truth: Vec<f64> = finished
        .iter()
        .map(|f| f.times.last_token.unwrap() - f.times.arrived)
        .collect();
    let mean = truth.iter().sum::<f64>() / truth.len() as f64;
    assert!((e2e.mean - mean).abs() < 1e-9, "{} vs {mean}", e2e.mean);
    let (lo, hi) = truth.iter().fold((f64::INFINITY, 0.0f64), |(lo, hi), &v| {
        (lo.min(v), hi.max(v))
    });
    // vLLM's e2e buckets around a second: 0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5 …
    assert!(
        e2e.p50 > lo * 0.5 && e2e.p50 < hi * 2.0,
        "p50 {} outside [{lo}, {hi}]",
        e2e.p50
    );
}
