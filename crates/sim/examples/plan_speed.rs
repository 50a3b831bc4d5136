//! Benchmark for `plan`: the planner's options for Llama-3.1-8B on H100 at 20 req/s, the first 8 each checked on
//! the discrete-event clock with `plan`'s default 600 requests, timed in wall seconds (target: under 5 s).
//! Run with `cargo run --release -p infer-doctor-sim --example plan_speed`.

use infer_doctor_plan::options::{self, Search, Slo, Workload};
use infer_doctor_plan::{CacheConfig, Dtype, Gpu, ModelShape};
use infer_doctor_sim::setup::SimSetup;
use infer_doctor_sim::whatif::{self, Load};

fn main() {
    let wall = std::time::Instant::now();
    let model = ModelShape::by_name("llama-3.1-8b").expect("built-in model");
    let gpu = Gpu::by_name("h100").expect("catalog GPU");
    let workload = Workload {
        input_tokens: 2000,
        output_tokens: 300,
        rate: 20.0,
    };
    let slo = Slo {
        ttft_p95_s: 1.0,
        tpot_p95_s: 0.05,
    };
    let search = Search {
        cache: CacheConfig {
            max_model_len: Some(5120),
            ..CacheConfig::default()
        },
        ..Search::default()
    };
    let (planned, _) = options::enumerate(&model, &gpu, &workload, &slo, &search);
    let planning = wall.elapsed().as_secs_f64();
    let mut steps = Vec::new();
    for option in planned.iter().take(8) {
        let d = option.deployment;
        let setup = SimSetup {
            tensor_parallel_size: d.tensor_parallel,
            max_model_len: 5120,
            quantization: d.quantization.map(|_| "fp8".to_owned()),
            kv_cache_dtype: (d.kv_cache_dtype == Dtype::Fp8).then(|| "fp8".to_owned()),
            ..SimSetup::default()
        };
        let started = std::time::Instant::now();
        let simulated = whatif::simulate(
            &setup,
            Load {
                rate: workload.rate / f64::from(option.replicas.max(1)),
                input_tokens: 2000,
                output_tokens: 300,
                requests: 600,
            },
        )
        .expect("option simulates");
        steps.push(started.elapsed().as_secs_f64());
        println!(
            "TP {} {} weights {} KV x{}: simulated TTFT p95 {:.0} ms, TPOT p95 {:.1} ms in {:.3} s",
            d.tensor_parallel,
            option.weights_label(),
            d.kv_cache_dtype,
            option.replicas,
            simulated.ttft_p95_s * 1e3,
            simulated.tpot_p95_s * 1e3,
            steps.last().unwrap()
        );
    }
    let total = wall.elapsed().as_secs_f64();
    println!(
        "{} options planned in {planning:.4} s, {} simulated in {:.2} s; total {total:.2} s (target < 5 s): {}",
        planned.len(),
        steps.len(),
        steps.iter().sum::<f64>(),
        if total < 5.0 { "met" } else { "MISSED" }
    );
}
