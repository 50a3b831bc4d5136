//! `diagnose --determinism`: builds the probe's fixed prompts and its client, runs the load room's probe, and keeps
//! what it measured in the bundle, so `diagnose --bundle` judges the same outputs again.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::anyhow;
use infer_doctor_core::{DeterminismFacts, PromptSource};
use infer_doctor_load::determinism::{self, DeterminismSpec};
use infer_doctor_load::http::{ClientOptions, HttpClient};
use infer_doctor_load::{ApiKey, Target};
use infer_doctor_prompt::dist::LengthDist;
use infer_doctor_prompt::synth::{SyntheticSource, SyntheticSpec};
use infer_doctor_prompt::tokenizer::Tokenizer;

use crate::Failure;
use crate::args::DiagnoseArgs;
use crate::exit;

/// Where a bundle keeps the determinism probe's result.
pub(crate) const DETERMINISM_FILE: &str = "determinism.json";

/// The probe's prompts are the same on every run and every machine, so two runs compare like with like.
const PROMPT_SEED: u64 = 0xde7e_4415;
/// Long enough to be a real prompt, short enough that 32 of them prefill in one step on any server.
const PROMPT_TOKENS: u32 = 32;
/// Candidates per position: enough to see the runner-up a batch flips to, within every server's limit (vLLM's
/// default `max_logprobs` is 20).
const TOP_LOGPROBS: u32 = 5;
/// One request of the probe, alone or in its batch.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// Runs the probe against `url` within `--budget` and writes its result into `dir`.
pub(crate) async fn determinism(
    url: &str,
    args: &DiagnoseArgs,
    dir: &Path,
) -> Result<DeterminismFacts, Failure> {
    if args.determinism_batches.contains(&0) {
        return Err(Failure::usage(anyhow!(
            "--determinism-batches: a batch needs at least 1 request"
        )));
    }
    let api_key = match args.api_key.clone() {
        Some(key) => ApiKey::new(key).map_err(Failure::usage)?,
        None => None,
    };
    let target = Arc::new(Target::parse(url, api_key).map_err(Failure::usage)?);
    let largest = args.determinism_batches.iter().copied().max().unwrap_or(1);
    let client = Arc::new(HttpClient::new(
        target.clone(),
        ClientOptions {
            http2: false,
            pool_size: largest as usize,
            connect_timeout: Duration::from_secs(5),
        },
    ));
    let model = match &args.model {
        Some(model) => model.clone(),
        None => {
            let info = infer_doctor_load::probe::probe(&client, Duration::from_secs(10)).await;
            info.model_ids.first().cloned().ok_or_else(|| Failure {
                code: exit::NOTHING_SUCCEEDED,
                error: anyhow!(
                    "--determinism: could not learn the model from {}/v1/models ({}); pass --model",
                    target.display_url(),
                    info.models_error.as_deref().unwrap_or("it listed no model")
                ),
            })?
        }
    };
    let tokenizer = match &args.tokenizer {
        Some(path) => Some(Arc::new(Tokenizer::load(path).map_err(Failure::usage)?)),
        None => None,
    };
    let source = SyntheticSource::new(
        SyntheticSpec {
            input: LengthDist::Fixed(PROMPT_TOKENS),
            output: LengthDist::Fixed(args.determinism_tokens),
            prefix_tokens: 0,
            prefix_groups: 1,
            seed: PROMPT_SEED,
        },
        tokenizer,
    )
    .map_err(Failure::usage)?;
    let prompts = (0..u64::from(args.determinism_prompts))
        .map(|i| source.item(i).text)
        .collect();
    if !args.quiet {
        eprintln!(
            "diagnose: determinism probe ({} prompts alone, then in batches of {})",
            args.determinism_prompts,
            args.determinism_batches
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let facts = determinism::probe(
        client,
        DeterminismSpec {
            model,
            prompts,
            max_tokens: args.determinism_tokens,
            batches: args.determinism_batches.clone(),
            top_logprobs: TOP_LOGPROBS,
            request_timeout: REQUEST_TIMEOUT,
            deadline: Instant::now() + args.budget,
        },
    )
    .await;
    let path = dir.join(DETERMINISM_FILE);
    std::fs::create_dir_all(dir)
        .and_then(|()| std::fs::write(&path, serde_json::to_string_pretty(&facts)?))
        .map_err(|e| Failure::usage(anyhow!("writing {}: {e}", path.display())))?;
    Ok(facts)
}
