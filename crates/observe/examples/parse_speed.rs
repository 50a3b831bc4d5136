//! Measures how fast `exposition::parse` reads exposition text, in MB/s: a real vLLM scrape's families, each
//! sample repeated for many replicas (distinct label values), like one big scrape of a large deployment.
//!
//! Run: `cargo run --release -p infer-doctor-observe --example parse_speed [megabytes]` (default 64).

use std::fmt::Write as _;
use std::hint::black_box;
use std::time::{Duration, Instant};

use infer_doctor_observe::exposition::parse;

const VLLM_SCRAPE: &str = include_str!("../../../fixtures/vllm_cpu/metrics_after_bench.txt");

const ROUNDS: usize = 5;

fn main() {
    let megabytes: usize = match std::env::args().nth(1) {
        Some(arg) => arg
            .parse()
            .expect("the argument is the input size in megabytes"),
        None => 64,
    };
    let text = synthetic_scrape(megabytes * 1_000_000);

    let scrape = parse(&text);
    assert!(
        scrape.errors.is_empty(),
        "synthetic input has errors: {:?}",
        &scrape.errors[..1]
    );
    let samples: usize = scrape
        .families
        .iter()
        .map(|family| family.samples.len())
        .sum();
    drop(scrape);

    // Best of several rounds: the machine is shared, and the best round is the least disturbed one.
    let best = (0..ROUNDS)
        .map(|_| {
            let started = Instant::now();
            black_box(parse(black_box(&text)));
            started.elapsed()
        })
        .min()
        .unwrap_or(Duration::MAX);
    let megabytes_per_second = text.len() as f64 / 1e6 / best.as_secs_f64();
    println!(
        "parsed {:.1} MB ({samples} samples) in {:.1} ms (best of {ROUNDS}): {megabytes_per_second:.0} MB/s",
        text.len() as f64 / 1e6,
        best.as_secs_f64() * 1e3,
    );
}

/// Keeps each comment line of the fixture once and repeats each sample line with a `replica` label per copy,
/// for about `target_bytes` of text.
fn synthetic_scrape(target_bytes: usize) -> String {
    let sample_bytes: usize = VLLM_SCRAPE
        .lines()
        .filter(|line| !line.starts_with('#'))
        .map(|line| line.len() + r#"replica="1000","#.len())
        .sum();
    let replicas = target_bytes.div_ceil(sample_bytes).max(1);
    let mut text = String::with_capacity(target_bytes + VLLM_SCRAPE.len() * 2);
    for line in VLLM_SCRAPE.lines() {
        if line.starts_with('#') {
            text.push_str(line);
            text.push('\n');
            continue;
        }
        for replica in 0..replicas {
            match line.split_once('{') {
                Some((name, labels)) => writeln!(text, "{name}{{replica=\"{replica}\",{labels}"),
                None => {
                    let (name, value) = line.split_once(' ').expect("a sample line has a value");
                    writeln!(text, "{name}{{replica=\"{replica}\"}} {value}")
                }
            }
            .expect("writing to a String cannot fail");
        }
    }
    text
}
