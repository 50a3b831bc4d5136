//! Measures how fast exact-length synthetic prompts are built and how often one misses its length, for a
//! tokenizer the user has: `cargo run --release -p infer-doctor-prompt --example prompt_rate -- DIR [LEN] [N]`.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use infer_doctor_core::PromptSource;
use infer_doctor_prompt::synth::{SyntheticSource, SyntheticSpec};
use infer_doctor_prompt::tokenizer::Tokenizer;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(path) = args.first() else {
        eprintln!(
            "usage: prompt_rate TOKENIZER [INPUT_TOKENS (512, 512:64, 1-2000)] [PROMPTS] [PREFIX_TOKENS]"
        );
        std::process::exit(2);
    };
    let input = args.get(1).map_or("512", String::as_str);
    let count: u64 = args.get(2).and_then(|n| n.parse().ok()).unwrap_or(2000);
    let prefix_tokens: u32 = args.get(3).and_then(|n| n.parse().ok()).unwrap_or(0);
    let started = Instant::now();
    let tokenizer = match Tokenizer::load(Path::new(path)) {
        Ok(t) => Arc::new(t),
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let loaded = started.elapsed();
    let spec = SyntheticSpec {
        input: input.parse().unwrap_or_else(|e| {
            eprintln!("{e}");
            std::process::exit(2);
        }),
        output: "128".parse().expect("a fixed length parses"),
        prefix_tokens,
        prefix_groups: if prefix_tokens > 0 { 8 } else { 1 },
        seed: 1,
    };
    let source = SyntheticSource::new(spec, Some(tokenizer)).unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(2);
    });
    let started = Instant::now();
    let tokens: u64 = (0..count)
        .map(|i| u64::from(source.item(i).input_tokens.unwrap_or(0)))
        .sum();
    let took = started.elapsed().as_secs_f64();
    let missed = source.info().residual_mismatches;
    println!(
        "{path}: loaded in {:.0} ms; {count} prompts of {input} (+{prefix_tokens} prefix) tokens in {took:.2} s = \
         {:.0} prompts/s, {:.2} M tokens/s; {missed} missed their length ({:.3}%)",
        loaded.as_secs_f64() * 1e3,
        count as f64 / took,
        tokens as f64 / took / 1e6,
        missed as f64 * 100.0 / count as f64
    );
}
