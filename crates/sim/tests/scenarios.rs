//! Every scenario shows the phenomenon its finding rests on, under its own workload, probed as `diagnose` will
//! probe it: one user, then a crowd. (Faults that live in the HTTP front, `errors` and `upstream-bottleneck`,
//! are shown in tests/server.rs.)

mod common;

use common::sample;
use infer_doctor_sim::des::{self, Arrivals, Outcome};
use infer_doctor_sim::engine::FinishReason;
use infer_doctor_sim::scenario::{self, Scenario};
use infer_doctor_sim::setup::{Built, SimSetup};
use rand::SeedableRng;
use rand::rngs::StdRng;

const CROWD: u32 = 32;

struct Probed {
    single: Outcome,
    loaded: Outcome,
    /// The loaded server, for its cost model and metrics.
    built: Built,
}

fn run(s: &Scenario, users: u32, requests: u64) -> (Outcome, Built) {
    let setup = (s.setup)();
    let mut built = setup.build().unwrap();
    let w = s.workload;
    let mut rng = StdRng::seed_from_u64(7);
    let stop = setup.stop.clone();
    let block_size = built.scheduler.block_size;
    let outcome = des::run(
        &mut built.core,
        &Arrivals::Closed { users, requests },
        |id| {
            des::synthetic_request(
                id,
                w.prefix_tokens + w.input_tokens,
                (w.prefix_tokens, w.prefix_groups),
                w.output_tokens,
                stop.sample(&mut rng),
                block_size,
            )
        },
        0.25,
        f64::INFINITY,
    );
    (outcome, built)
}

fn probe(name: &str) -> Probed {
    let s = scenario::find(name).unwrap();
    let (single, _) = run(s, 1, 4);
    let (loaded, built) = run(s, CROWD, 8 * u64::from(CROWD));
    Probed {
        single,
        loaded,
        built,
    }
}

fn mean_ttft(o: &Outcome) -> f64 {
    o.finished
        .iter()
        .map(|f| f.times.first_token.unwrap() - f.times.arrived)
        .sum::<f64>()
        / o.finished.len() as f64
}

fn mean_itl(o: &Outcome) -> f64 {
    let (sum, n) =
        o.finished
            .iter()
            .filter(|f| f.generated > 1)
            .fold((0.0, 0u64), |(sum, n), f| {
                let t = &f.times;
                (
                    sum + t.last_token.unwrap() - t.first_token.unwrap(),
                    n + u64::from(f.generated - 1),
                )
            });
    sum / n as f64
}

/// Mean time from arrival to first scheduling after the crowd's first wave (which arrives all at once):
/// near zero when nothing queues.
fn mean_queue(o: &Outcome) -> f64 {
    let later: Vec<f64> = o
        .finished
        .iter()
        .filter(|f| f.id >= u64::from(CROWD))
        .map(|f| f.times.scheduled.unwrap() - f.times.arrived)
        .collect();
    later.iter().sum::<f64>() / later.len() as f64
}

#[test]
fn every_scenario_builds_and_names_a_finding_except_healthy() {
    for s in scenario::all() {
        (s.setup)()
            .build()
            .unwrap_or_else(|e| panic!("{}: {e}", s.name));
        assert_eq!(s.finding.is_none(), s.name == "healthy", "{}", s.name);
    }
}

#[test]
fn healthy_has_no_queue_no_preemption_and_near_floor_latency() {
    let p = probe("healthy");
    // A request arriving mid-step waits for the next one, and no longer.
    assert!(mean_queue(&p.loaded) < 0.03, "{}", mean_queue(&p.loaded));
    assert_eq!(p.loaded.series.last().unwrap().preemptions, 0);
    assert!(p.loaded.series.iter().all(|s| s.kv_usage < 0.5));
    assert!(mean_itl(&p.loaded) < 2.0 * mean_itl(&p.single));
}

#[test]
fn kv_saturated_is_fine_alone_and_full_under_load() {
    let p = probe("kv-saturated");
    assert!(mean_ttft(&p.single) < 0.1);
    assert!(
        p.loaded
            .series
            .iter()
            .any(|s| s.waiting > 0 && s.kv_usage >= 0.9),
        "never full"
    );
    assert!(mean_ttft(&p.loaded) > 5.0 * mean_ttft(&p.single));
}

#[test]
fn batch_capped_queues_with_the_cache_mostly_empty() {
    let p = probe("batch-capped");
    let cap = p.built.scheduler.max_num_seqs;
    assert!(
        p.loaded
            .series
            .iter()
            .any(|s| s.running == cap && s.waiting > 0 && s.kv_usage < 0.8)
    );
}

#[test]
fn preemption_storm_preempts() {
    let p = probe("preemption-storm");
    assert!(p.loaded.series.last().unwrap().preemptions > 10);
}

#[test]
fn long_prompts_make_prefill_dominate_ttft_at_concurrency_one() {
    let p = probe("long-prompts");
    let ttft = mean_ttft(&p.single);
    assert!(ttft > 1.0, "{ttft}");
    // No queue at concurrency 1: TTFT is the prefill itself.
    let f = &p.single.finished[0].times;
    assert!(f.scheduled.unwrap() - f.arrived < 1e-9);
}

#[test]
fn batch_latency_multiplies_itl_under_load_without_a_queue() {
    let p = probe("batch-latency");
    assert!(
        mean_itl(&p.loaded) > 2.0 * mean_itl(&p.single),
        "{} vs {}",
        mean_itl(&p.loaded),
        mean_itl(&p.single)
    );
    assert!(mean_queue(&p.loaded) < 0.1, "{}", mean_queue(&p.loaded));
}

#[test]
fn slow_decode_is_far_above_the_bandwidth_floor_for_one_user() {
    let p = probe("slow-decode");
    let floor = p.built.core.cost.decode_floor_seconds();
    let itl = mean_itl(&p.single);
    assert!(itl > 2.0 * floor, "{itl} vs floor {floor}");
}

#[test]
fn tp_over_pcie_is_slower_for_one_user_than_the_same_gpus_over_nvlink() {
    let s = scenario::find("tp-over-pcie").unwrap();
    let (pcie, _) = run(s, 1, 3);
    let over_nvlink = Scenario {
        setup: || SimSetup {
            pcie: false,
            ..(scenario::find("tp-over-pcie").unwrap().setup)()
        },
        ..*s
    };
    let (nvlink, _) = run(&over_nvlink, 1, 3);
    // 160 all-reduces per token (2 per layer), each paying PCIe's latency.
    assert!(
        mean_itl(&pcie) > 1.1 * mean_itl(&nvlink),
        "{} vs {}",
        mean_itl(&pcie),
        mean_itl(&nvlink)
    );
}

#[test]
fn runaway_generation_always_runs_to_max_tokens() {
    let p = probe("runaway-generation");
    assert_eq!(
        p.loaded.count(FinishReason::Length),
        p.loaded.finished.len()
    );
    let healthy = probe("healthy");
    assert!(healthy.loaded.count(FinishReason::Stop) > healthy.loaded.finished.len() / 2);
}

#[test]
fn cold_start_makes_the_first_requests_slow() {
    let p = probe("cold-start");
    let first = &p.single.finished[0].times;
    let (early, late): (Vec<_>, Vec<_>) = p
        .loaded
        .finished
        .iter()
        .partition(|f| f.times.arrived < 20.0);
    let ttft = |fs: &[&infer_doctor_sim::engine::Finished]| {
        fs.iter()
            .map(|f| f.times.first_token.unwrap() - f.times.arrived)
            .sum::<f64>()
            / fs.len() as f64
    };
    assert!(!late.is_empty(), "the run never left the cold window");
    assert!(
        ttft(&early) > 3.0 * ttft(&late),
        "{} vs {}",
        ttft(&early),
        ttft(&late)
    );
    assert!(first.first_token.unwrap() - first.arrived > 0.05);
}

#[test]
fn prefix_cache_miss_finds_nothing_where_caching_would_find_most() {
    let p = probe("prefix-cache-miss");
    let metrics = p.built.core.metrics.render();
    // With the cache off vLLM records no lookups at all, and says so in its cache config.
    assert_eq!(sample(&metrics, "vllm:prefix_cache_queries_total"), 0.0);
    assert!(metrics.contains("enable_prefix_caching=\"False\""));
    // The same workload with caching on: most prompt tokens come from the shared prefixes.
    let s = scenario::find("prefix-cache-miss").unwrap();
    let cached = Scenario {
        setup: SimSetup::default,
        ..*s
    };
    let (_, built) = run(&cached, CROWD, 8 * u64::from(CROWD));
    let metrics = built.core.metrics.render();
    let hit_rate = sample(&metrics, "vllm:prefix_cache_hits_total")
        / sample(&metrics, "vllm:prefix_cache_queries_total");
    assert!(hit_rate > 0.6, "{hit_rate}");
}

#[test]
fn degrading_loses_throughput_as_the_run_goes_on() {
    let s = scenario::find("degrading").unwrap();
    let (o, _) = run(s, CROWD, 40 * u64::from(CROWD));
    let series = &o.series;
    let rate = |a: usize, b: usize| {
        (series[b].generation_tokens - series[a].generation_tokens) as f64
            / (series[b].t - series[a].t)
    };
    let n = series.len();
    assert!(n > 12, "{n}");
    let (early, late) = (rate(n / 6, n / 3), rate(2 * n / 3, 5 * n / 6));
    assert!(late < 0.8 * early, "{early} → {late}");
}
