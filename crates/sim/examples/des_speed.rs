//! Benchmark for the discrete-event clock: 10,000 requests of 512 input and 256 output tokens at 64-way
//! concurrency through the healthy setup, timed in process CPU seconds (target: under 2 s).

use infer_doctor_sim::des::{self, Arrivals};
use infer_doctor_sim::engine::NewRequest;
use infer_doctor_sim::setup::SimSetup;
use infer_doctor_sim::text::synthetic_block_hashes;

fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

fn main() {
    let mut built = SimSetup::default().build().expect("healthy setup builds");
    let block_size = built.scheduler.block_size;
    let before = cpu_seconds();
    let wall = std::time::Instant::now();
    let outcome = des::run(
        &mut built.core,
        &Arrivals::Closed {
            users: 64,
            requests: 10_000,
        },
        |i| NewRequest {
            id: i,
            prompt_tokens: 512,
            block_hashes: synthetic_block_hashes(0, i, 512, 0, block_size),
            max_tokens: 256,
            stop_after: None,
            min_tokens: 0,
        },
        1.0,
        f64::INFINITY,
    );
    let cpu = cpu_seconds() - before;
    println!(
        "{} requests, {} steps, {:.1} simulated s: {:.2} s CPU, {:.2} s wall ({:.0} steps/s)",
        outcome.finished.len(),
        outcome.steps,
        outcome.simulated_seconds,
        cpu,
        wall.elapsed().as_secs_f64(),
        outcome.steps as f64 / wall.elapsed().as_secs_f64()
    );
}
