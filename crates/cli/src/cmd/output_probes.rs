//! `diagnose --determinism` and `--template`: builds each probe's fixed inputs and its client, runs the load
//! room's probe, and keeps what it measured in the bundle, so `diagnose --bundle` judges the same outputs again.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::anyhow;
use infer_doctor_core::workload::ChatMessage;
use infer_doctor_core::{DeterminismFacts, PromptSource, TemplateFacts};
use infer_doctor_load::determinism::{self, DeterminismSpec};
use infer_doctor_load::http::{ClientOptions, HttpClient};
use infer_doctor_load::template::TemplateSpec;
use infer_doctor_load::{ApiKey, Target};
use infer_doctor_prompt::chat_template::ChatTemplate;
use infer_doctor_prompt::dist::LengthDist;
use infer_doctor_prompt::synth::{SyntheticSource, SyntheticSpec};
use infer_doctor_prompt::tokenizer::Tokenizer;

use crate::Failure;
use crate::args::DiagnoseArgs;
use crate::exit;

/// Where a bundle keeps the determinism probe's result.
pub(crate) const DETERMINISM_FILE: &str = "determinism.json";
/// Where a bundle keeps the chat-template probe's result.
pub(crate) const TEMPLATE_FILE: &str = "template.json";

/// The template probe's conversation: two user turns around an assistant's, so templates that insist on
/// alternating roles accept it and the assistant's end-of-turn is rendered too.
const CONVERSATION: [(&str, &str); 3] = [
    ("user", "Name three primary colours."),
    ("assistant", "Red, yellow and blue."),
    ("user", "And three secondary colours?"),
];
/// Text no template contains, to find what it writes after an assistant's message.
const SENTINEL: &str = "infer-doctor-sentinel";
/// Long enough for a model to finish a short answer and stop.
const TEMPLATE_MAX_TOKENS: u32 = 64;

/// The probe's prompts are the same on every run and every machine, so two runs compare like with like.
const PROMPT_SEED: u64 = 0xde7e_4415;
/// Long enough to be a real prompt, short enough that 32 of them prefill in one step on any server.
const PROMPT_TOKENS: u32 = 32;
/// Candidates per position: enough to see the runner-up a batch flips to, within every server's limit (vLLM's
/// default `max_logprobs` is 20).
const TOP_LOGPROBS: u32 = 5;
/// One request of the probe, alone or in its batch.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// Runs the probe against `url` within a third of `--budget` (it comes after a load probe that had the whole
/// budget) and writes its result into `dir`.
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
    let largest = args.determinism_batches.iter().copied().max().unwrap_or(1);
    let (client, model) = client_and_model(url, args, largest as usize, "--determinism").await?;
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
            "diagnose: determinism probe ({} prompts alone twice, then in batches of {})",
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
            deadline: Instant::now() + args.budget / 3,
        },
    )
    .await;
    keep(dir, DETERMINISM_FILE, &facts)?;
    Ok(facts)
}

/// A probe's result in the bundle, beside the runs.
fn keep(dir: &Path, name: &str, facts: &impl serde::Serialize) -> Result<(), Failure> {
    let path = dir.join(name);
    std::fs::create_dir_all(dir)
        .and_then(|()| std::fs::write(&path, serde_json::to_string_pretty(facts)?))
        .map_err(|e| Failure::usage(anyhow!("writing {}: {e}", path.display())))
}

/// A client for `url` holding up to `pool` idle connections, and the model to ask for: `--model`, else the first
/// of `/v1/models`.
async fn client_and_model(
    url: &str,
    args: &DiagnoseArgs,
    pool: usize,
    flag: &str,
) -> Result<(Arc<HttpClient>, String), Failure> {
    let api_key = match args.api_key.clone() {
        Some(key) => ApiKey::new(key).map_err(Failure::usage)?,
        None => None,
    };
    let target = Arc::new(Target::parse(url, api_key).map_err(Failure::usage)?);
    let client = Arc::new(HttpClient::new(
        target.clone(),
        ClientOptions {
            http2: false,
            pool_size: pool,
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
                    "{flag}: could not learn the model from {}/v1/models ({}); pass --model",
                    target.display_url(),
                    info.models_error.as_deref().unwrap_or("it listed no model")
                ),
            })?
        }
    };
    Ok((client, model))
}

/// Runs the chat-template probe against `url` with the model's template from `--tokenizer` and writes its result
/// into `dir`.
pub(crate) async fn template(
    url: &str,
    args: &DiagnoseArgs,
    dir: &Path,
) -> Result<TemplateFacts, Failure> {
    let Some(tokenizer) = &args.tokenizer else {
        return Err(Failure::usage(anyhow!(
            "--template needs the model's tokenizer_config.json: pass --tokenizer DIR (or its tokenizer.json)"
        )));
    };
    let template = ChatTemplate::load(tokenizer).map_err(Failure::usage)?;
    let messages: Vec<ChatMessage> = CONVERSATION
        .iter()
        .map(|(role, content)| ChatMessage {
            role: role.to_string(),
            content: content.to_string(),
        })
        .collect();
    // A template this renderer cannot render (an unsupported filter, a function of the server's own) leaves the
    // check unknown, with why, rather than ending the whole diagnosis.
    let rendered = template
        .render(&messages, true)
        .and_then(|rendered| Ok((rendered, template.opens_assistant_turn(&messages)?)));
    let (rendered, generation_prompt) = match rendered {
        Ok(ok) => ok,
        Err(e) => {
            if !args.quiet {
                eprintln!("diagnose: chat-template probe not run: {e}");
            }
            let facts = TemplateFacts {
                template: template.path.display().to_string(),
                render_error: Some(e.to_string()),
                ..Default::default()
            };
            keep(dir, TEMPLATE_FILE, &facts)?;
            return Ok(facts);
        }
    };
    let closing = [
        ChatMessage {
            role: "user".into(),
            content: "hi".into(),
        },
        ChatMessage {
            role: "assistant".into(),
            content: SENTINEL.into(),
        },
    ];
    // Templates that render only some conversations are judged on the probe's, not on this one.
    let end_of_turn = template.render(&closing, false).ok().and_then(|text| {
        let (_, after) = text.split_once(SENTINEL)?;
        after.split_whitespace().next().map(str::to_string)
    });
    let (client, model) = client_and_model(url, args, 1, "--template").await?;
    if !args.quiet {
        eprintln!(
            "diagnose: chat-template probe (one conversation through chat, and through completions with {})",
            template.path.display()
        );
    }
    let mut facts = infer_doctor_load::template::probe(
        &client,
        &TemplateSpec {
            model,
            messages,
            rendered: rendered.clone(),
            max_tokens: TEMPLATE_MAX_TOKENS,
            timeout: REQUEST_TIMEOUT,
        },
    )
    .await;
    facts.template = template.path.display().to_string();
    facts.generation_prompt = generation_prompt;
    facts.end_of_turn = end_of_turn;
    keep(dir, TEMPLATE_FILE, &facts)?;
    Ok(facts)
}
