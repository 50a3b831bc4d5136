//! Output rules: generations that never stop (they run to max_tokens), requests that do not fit the context
//! window (400s, cut-off answers), and outputs that change with the batch they ran in. Source: DESIGN.md §6.

use infer_doctor_core::{Confidence, Divergence, ErrorClass, Severity, Signal, Symptom};

use crate::Thresholds;
use crate::assessment::{Assessment, Rule, compared, how, percent, ratio, seen};
use crate::facts::{Facts, finite};

const RUNAWAY: Rule = Rule {
    id: "output.runaway",
    symptom: Symptom::Output,
    why: "Most generations end because they hit max_tokens, not because the model said stop: the stop token never \
          comes (a wrong chat template or missing stop strings), so every request costs its full token budget. \
          (Expected only when the run asked for exact lengths with --ignore-eos.)",
    remedies: &[
        "Check the chat template and the stop tokens the server uses (--chat-template, generation_config)",
        "Set stop strings in requests where the template has none",
        "Set a realistic max_tokens so runaways cost less",
    ],
    source: "vllm-project/vllm: vllm/v1/metrics/loggers.py (vllm:request_success_total{finished_reason=\"length\"}) \
             and vllm/v1/engine/__init__.py (FinishReason); \"most requests\" is infer-doctor's own threshold \
             (inference)",
};

const TRUNCATION: Rule = Rule {
    id: "output.truncation",
    symptom: Symptom::Output,
    why: "Prompt plus max_tokens does not fit the model's context window: the server rejects the request with a \
          400, or the answer is cut off when the context fills.",
    remedies: &[
        "Budget tokens: keep prompt + max_tokens under max_model_len",
        "Trim or summarise long prompts (history, retrieved documents)",
        "Serve a longer --max-model-len if the model and KV memory allow it",
    ],
    source: "vllm-project/vllm: vllm/entrypoints/openai/serving_engine.py (a 400: \"This model's maximum context \
             length is N tokens\")",
};

const NONDETERMINISTIC: Rule = Rule {
    id: "output.nondeterministic",
    symptom: Symptom::Output,
    why: "At temperature 0 the same prompt gave a different output inside a batch of concurrent requests than \
          alone. Greedy decoding is a function of the prompt, so the batch changed the logits: the server's \
          matmul, attention and normalisation kernels reduce in an order that depends on the batch size \
          (batch-variant kernels), rounding moves the logits, and where two tokens are nearly tied the argmax \
          flips and the rest of the output follows from the flipped token. A flip between tokens far apart is \
          more than rounding. Each prompt is also sent alone twice: one whose two lone runs differ is \
          nondeterministic without any batch (the second run hit the prefix cache the first filled, or decoding is \
          not greedy), and is reported as such, not blamed on the batch.",
    remedies: &[
        "vLLM: start the server with VLLM_BATCH_INVARIANT=1 (batch-invariant kernels; beta, NVIDIA compute \
         capability 8.0+, AMD Instinct or Intel XPU as of vLLM 0.32). It costs throughput: about 1% in vLLM's own \
         benchmark on Qwen3-1.7B, 20–35% end to end on smaller GPUs in vllm-project/vllm#27433; measure with \
         bench before and after",
        "Where exact reproducibility matters (evaluations, RL rollouts, golden-output tests), send those \
         requests alone, or compare outputs with a tolerance instead of byte for byte",
        "A flip between tokens far apart (no near tie): rerun the probe with prefix caching and chunked prefill \
         off (--no-enable-prefix-caching, --no-enable-chunked-prefill) to find the feature that changes the \
         logits, and report it upstream",
    ],
    source: "vLLM docs: features/batch_invariance (VLLM_BATCH_INVARIANT=1); vllm-project/vllm#27433 (status and \
             cost), #28161 (its benchmark); Thinking Machines Lab, \"Defeating Nondeterminism in LLM Inference\" \
             (2025)",
};

const TEMPLATE: Rule = Rule {
    id: "output.template",
    symptom: Symptom::Output,
    why: "The server's chat does not give the model the prompt its own chat template makes: a different template \
          (role markers, special tokens), a template that never opens the assistant's turn, or an end-of-turn \
          token that is not a stop token. The model then answers worse, continues the user's message, or runs \
          on past its answer to max_tokens.",
    remedies: &[
        "Serve the model's own template: vLLM takes the tokenizer's unless --chat-template overrides it; \
         llama.cpp needs --jinja (and --chat-template-file for a template the GGUF lacks)",
        "A template must open the assistant's turn when add_generation_prompt is true (e.g. \
         `<|im_start|>assistant\\n`); fix it or pass a corrected one with --chat-template",
        "Make the end-of-turn token a stop token: eos_token_id in generation_config.json, or stop_token_ids \
         (vLLM) / stop (llama.cpp) in requests",
    ],
    source: "https://huggingface.co/docs/transformers/chat_templating (apply_chat_template, \
             add_generation_prompt); https://docs.vllm.ai/en/latest/serving/openai_compatible_server.html \
             (chat template, --chat-template); ggml-org/llama.cpp: tools/server/README (--jinja, \
             --chat-template-file)",
};

/// Words of the errors servers return when a request exceeds the context window.
const CONTEXT_ERROR_WORDS: [&str; 6] = [
    "context length",
    "context window",
    "maximum context",
    "max_model_len",
    "too long",
    "maximum model length",
];

pub(crate) fn assess(facts: &Facts, t: &Thresholds) -> Vec<Assessment> {
    vec![
        runaway(facts, t),
        truncation(facts, t),
        nondeterministic(facts, t),
        template(facts),
    ]
}

/// How requests finished: count by reason and where that was read.
fn finish_reasons(facts: &Facts) -> Option<(Vec<(String, f64)>, String)> {
    if let Some(client) = facts
        .client()
        .filter(|c| !c.tokens.finish_reasons.is_empty())
    {
        let counts = client
            .tokens
            .finish_reasons
            .iter()
            .map(|(k, v)| (k.clone(), *v as f64))
            .collect();
        return Some((counts, facts.client_window_label()));
    }
    let finished = facts
        .counter(Signal::RequestsFinished)
        .filter(|c| !c.by_label.is_empty())?;
    let counts = finished
        .by_label
        .iter()
        .filter(|(_, v)| v.is_finite())
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    Some((counts, facts.server_window_label()))
}

fn length_share(counts: &[(String, f64)]) -> Option<f64> {
    let total: f64 = counts.iter().map(|(_, n)| n).sum();
    let length: f64 = counts
        .iter()
        .filter(|(reason, _)| reason == "length")
        .map(|(_, n)| n)
        .sum();
    ratio(length, total)
}

fn runaway(facts: &Facts, t: &Thresholds) -> Assessment {
    if facts.evidence.exact_output_lengths {
        return RUNAWAY.unknown(
            "the run asked for exact output lengths (ignore_eos), so every output ends by length",
            "run without --ignore-eos to see whether outputs stop by themselves",
        );
    }
    let Some((counts, window)) = finish_reasons(facts) else {
        return RUNAWAY.unknown("finish reasons", how::LOADED_PROBE);
    };
    let Some(share) = length_share(&counts) else {
        return RUNAWAY.unknown("finish reasons (no request finished)", how::LOADED_PROBE);
    };
    if share <= t.runaway_length_share {
        return RUNAWAY.passes(format!("{} of requests ended by length", percent(share)));
    }
    let mut evidence = vec![compared(
        "finish_reason=length share",
        share,
        ">",
        t.runaway_length_share,
        &window,
    )];
    let budget_used = facts.client().and_then(|c| {
        evidence.push(seen("mean output tokens", c.tokens.mean_output, &window));
        evidence.push(seen("mean max_tokens", c.tokens.mean_max_tokens, &window));
        ratio(c.tokens.mean_output, c.tokens.mean_max_tokens)
    });
    let confidence = match budget_used {
        // Ending by length well short of max_tokens is the context window, not a missing stop token.
        Some(used) if used < t.runaway_max_tokens_share => {
            return RUNAWAY.passes(format!(
                "{} of requests ended by length but used only {} of max_tokens: see output.truncation",
                percent(share),
                percent(used)
            ));
        }
        Some(_) => Confidence::High,
        None => Confidence::Medium,
    };
    RUNAWAY.fires(
        Severity::Warning,
        confidence,
        format!(
            "{} of requests run to max_tokens instead of stopping",
            percent(share)
        ),
        evidence,
    )
}

fn truncation(facts: &Facts, t: &Thresholds) -> Assessment {
    let client = facts.client();
    let max_model_len = facts
        .evidence
        .log
        .as_ref()
        .and_then(|l| l.max_model_len)
        .map(|n| n as f64)
        .filter(|n| *n > 0.0);
    if client.is_none() && max_model_len.is_none() {
        return TRUNCATION.unknown("request outcomes and the context window", how::LOADED_PROBE);
    }
    let window = facts.client_window_label();
    if let Some(client) = client.filter(|c| c.requests.sent > 0) {
        let rejected: u64 = client
            .requests
            .errors
            .iter()
            .filter(|e| e.status == Some(400) || e.class == ErrorClass::ServerErrorEvent)
            .filter(|e| {
                let message = e.example.to_lowercase();
                CONTEXT_ERROR_WORDS.iter().any(|w| message.contains(w))
            })
            .map(|e| e.count)
            .sum();
        if rejected > 0 {
            let share = rejected as f64 / client.requests.sent as f64;
            let severity = if share > t.error_rate_critical {
                Severity::Critical
            } else {
                Severity::Warning
            };
            return TRUNCATION.fires(
                severity,
                Confidence::High,
                format!(
                    "{rejected} requests ({}) were rejected for exceeding the context window",
                    percent(share)
                ),
                vec![seen("context-length errors", rejected as f64, &window)],
            );
        }
    }
    let Some(context) = max_model_len else {
        return TRUNCATION.passes(
            "no context-length errors (max_model_len unknown, so cut-offs were not checked)"
                .to_string(),
        );
    };
    let context_window = "engine log, max_model_len";
    let asked = client
        .map(|c| (c.tokens.mean_input, c.tokens.mean_max_tokens))
        .or_else(|| {
            facts
                .evidence
                .workload
                .as_ref()
                .map(|w| (w.input_tokens, w.output_tokens))
        })
        .and_then(|(input, output)| Some(finite(input)? + finite(output)?))
        .filter(|n| *n > 0.0);
    if let Some(asked) = asked.filter(|n| *n > context) {
        return TRUNCATION.fires(
            Severity::Warning,
            Confidence::Medium,
            format!("requests ask for {asked:.0} tokens (prompt + max_tokens) in a {context:.0}-token context"),
            vec![compared("mean prompt + max_tokens", asked, ">", context, context_window)],
        );
    }
    if let Some(client) = client {
        let filled = client.tokens.mean_input + client.tokens.mean_output;
        let cut_by_length = length_share(
            &client
                .tokens
                .finish_reasons
                .iter()
                .map(|(k, v)| (k.clone(), *v as f64))
                .collect::<Vec<_>>(),
        )
        .is_some_and(|share| share > 0.0);
        if cut_by_length && filled >= t.context_fill_share * context {
            return TRUNCATION.fires(
                Severity::Warning,
                Confidence::Medium,
                format!("answers end by length with the {context:.0}-token context full ({filled:.0} tokens used)"),
                vec![compared("mean prompt + output tokens", filled, "≥", t.context_fill_share * context, &window)],
            );
        }
    }
    TRUNCATION.passes(format!("requests fit the {context:.0}-token context"))
}

/// Prompts whose two lone runs differed: nondeterminism no batch explains, so their batches were not judged.
fn alone_differs(
    probe: &infer_doctor_core::DeterminismFacts,
    unit: &str,
    share: f64,
    t: &Thresholds,
) -> Assessment {
    let window = format!(
        "determinism probe: {} prompts, each alone twice",
        probe.prompts
    );
    let mut evidence = vec![compared(
        "prompts whose two lone runs differ",
        share,
        ">",
        t.nondeterministic_share,
        &window,
    )];
    let first = probe.alone_divergences.iter().min_by_key(|d| d.position);
    let at = first.map_or(String::new(), |d| {
        evidence.push(seen(
            format!(
                "first differing {unit} (prompt {}): {:?} first, {:?} second",
                d.prompt, d.alone.token, d.batched.token
            ),
            f64::from(d.position),
            &window,
        ));
        format!(", first at {unit} {}", d.position)
    });
    let (checked, differing) = probe.totals();
    let batches = if checked > 0 {
        format!(
            "; {differing} of {checked} batched outputs of the other prompts differed from their lone runs"
        )
    } else {
        String::new()
    };
    NONDETERMINISTIC.fires(
        Severity::Warning,
        if probe.by_tokens {
            Confidence::High
        } else {
            Confidence::Medium
        },
        format!(
            "{} of {} prompts gave a different output at temperature 0 when sent alone twice{at}: the server is \
             nondeterministic without any batch (a prefix-cache hit on the second run changing the logits, or \
             decoding that is not greedy), so their batched copies were not compared{batches}",
            probe.alone_divergences.len(),
            probe.repeated
        ),
        evidence,
    )
}

fn nondeterministic(facts: &Facts, t: &Thresholds) -> Assessment {
    const HOW: &str = "run diagnose --url URL --determinism (the same prompts at temperature 0 alone and in \
                       batches of 8 and 32)";
    let Some(probe) = &facts.evidence.determinism else {
        return NONDETERMINISTIC.unknown("the determinism probe", HOW);
    };
    let (checked, differing) = probe.totals();
    let unit = if probe.by_tokens { "token" } else { "word" };
    let unstable = probe.alone_divergences.len() as u32;
    let unstable_share = f64::from(unstable) / f64::from(probe.repeated.max(1));
    if unstable_share > t.nondeterministic_share {
        return alone_differs(probe, unit, unstable_share, t);
    }
    if checked == 0 {
        return NONDETERMINISTIC.unknown(
            "the determinism probe compared no output (its requests failed)",
            HOW,
        );
    }
    let share = f64::from(differing) / f64::from(checked);
    let window = format!(
        "determinism probe: {} prompts × batches of {}",
        probe.prompts,
        probe
            .runs
            .iter()
            .map(|r| r.batch.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    if share <= t.nondeterministic_share {
        return NONDETERMINISTIC.passes(format!(
            "{checked} batched outputs at temperature 0 matched their lone runs {unit} for {unit}"
        ));
    }
    let near_tie = |d: &Divergence| d.margin.is_some_and(|m| m < t.near_tie_logprob_gap);
    let ties = probe.divergences.iter().filter(|d| near_tie(d)).count();
    let mut evidence = vec![compared(
        "batched outputs differing from the lone run",
        share,
        ">",
        t.nondeterministic_share,
        &window,
    )];
    for run in &probe.runs {
        evidence.push(seen(
            format!("batch of {}: outputs differing", run.batch),
            f64::from(run.differing),
            &format!("of {} compared", run.compared),
        ));
    }
    let earliest = probe.divergences.iter().min_by_key(|d| d.position);
    if let Some(d) = earliest {
        let gap = match d.margin {
            Some(m) => format!(", lone logprob gap {m:.3}"),
            None if probe.logprobs => ", not among the lone run's top candidates".to_string(),
            None => String::new(),
        };
        evidence.push(seen(
            format!(
                "first differing {unit} (prompt {}, batch {}): {:?} alone, {:?} batched{gap}",
                d.prompt, d.batch, d.alone.token, d.batched.token
            ),
            f64::from(d.position),
            &window,
        ));
    }
    let (severity, kind) = if !probe.logprobs {
        (
            Severity::Warning,
            "without logprobs, near ties cannot be told from real divergences".to_string(),
        )
    } else if ties == probe.divergences.len() {
        (
            Severity::Info,
            format!(
                "every divergence starts at a near tie (logprob gap < {})",
                t.near_tie_logprob_gap
            ),
        )
    } else {
        (
            Severity::Warning,
            format!(
                "{} of {} divergences start where the tokens were not nearly tied",
                probe.divergences.len() - ties,
                probe.divergences.len()
            ),
        )
    };
    let confidence = if probe.by_tokens {
        Confidence::High
    } else {
        Confidence::Medium
    };
    NONDETERMINISTIC.fires(
        severity,
        confidence,
        format!(
            "{differing} of {checked} outputs at temperature 0 changed inside a batch ({}), first at {unit} {}; \
             {kind}",
            percent(share),
            earliest.map_or(0, |d| d.position)
        ),
        evidence,
    )
}

/// Where two renderings of one conversation part: the character offset and a few characters of each from there.
fn rendering_difference(ours: &str, theirs: &str) -> Option<(usize, String, String)> {
    let at = ours
        .char_indices()
        .zip(theirs.chars())
        .find(|((_, a), b)| a != b)
        .map(|((i, _), _)| i)
        .unwrap_or(ours.len().min(theirs.len()));
    if ours == theirs {
        return None;
    }
    let at_theirs = theirs
        .char_indices()
        .nth(ours[..at].chars().count())
        .map_or(theirs.len(), |(i, _)| i);
    let snippet = |text: &str| format!("{:?}", text.chars().take(24).collect::<String>());
    Some((at, snippet(&ours[at..]), snippet(&theirs[at_theirs..])))
}

/// The tags a reasoning model writes around its thinking, which a server's reasoning parser removes from chat.
const REASONING_TAGS: [&str; 4] = ["<think>", "</think>", "[THINK]", "[/THINK]"];

/// Whether chat gave the completions answer. With a reasoning parser, chat's `content` lacks the thinking that
/// completions returns inline: the two are compared as words, the thinking first and its tags left out.
fn same_answer(reasoning: Option<&str>, content: &str, plain: &str) -> bool {
    if content == plain {
        return true;
    }
    let Some(reasoning) = reasoning else {
        return false;
    };
    let words = |text: &str| {
        let text = REASONING_TAGS
            .iter()
            .fold(text.to_string(), |t, tag| t.replace(tag, " "));
        text.split_whitespace()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    words(&format!("{reasoning} {content}")) == words(plain)
}

fn template(facts: &Facts) -> Assessment {
    const HOW: &str = "run diagnose --url URL --template --tokenizer DIR (the model's tokenizer_config.json): one \
                       conversation through chat and, rendered with the model's template, through completions";
    let Some(probe) = &facts.evidence.template else {
        return TEMPLATE.unknown("the chat-template probe", HOW);
    };
    if let Some(reason) = &probe.render_error {
        return TEMPLATE.unknown(
            &format!("a rendering of the model's template here ({reason})"),
            HOW,
        );
    }
    let window = format!("template probe: {}", probe.template);
    if !probe.generation_prompt {
        return TEMPLATE.fires(
            Severity::Warning,
            Confidence::High,
            "the model's chat template never opens the assistant's turn (add_generation_prompt changes \
             nothing), so the model continues the user's message"
                .to_string(),
            vec![seen("template renders an assistant opening", 0.0, &window)],
        );
    }
    let (chat, completion) = (&probe.chat, &probe.completion);
    let Some(plain) = &completion.text else {
        return TEMPLATE.unknown(
            &format!(
                "the completions request failed ({})",
                completion.error.as_deref().unwrap_or("no text")
            ),
            HOW,
        );
    };
    let Some(answered) = &chat.text else {
        return TEMPLATE.fires(
            Severity::Warning,
            Confidence::Medium,
            format!(
                "the server's chat failed where completions answered: {}",
                chat.error.as_deref().unwrap_or("no text")
            ),
            vec![seen("chat requests answered", 0.0, &window)],
        );
    };
    let mut evidence = Vec::new();
    if let (Some(c), Some(p)) = (chat.prompt_tokens, completion.prompt_tokens) {
        evidence.push(compared(
            "chat prompt tokens",
            f64::from(c),
            "vs",
            f64::from(p),
            "the completions request with the model's template",
        ));
    }
    let rendered = probe
        .server_rendered
        .as_deref()
        .and_then(|theirs| rendering_difference(&probe.rendered, theirs));
    let counts_differ =
        matches!((chat.prompt_tokens, completion.prompt_tokens), (Some(c), Some(p)) if c != p);
    let same_answer = same_answer(chat.reasoning.as_deref(), answered, plain);
    // A rendering read back through the server's tokenizer may differ in spacing alone: shown, not judged.
    if !same_answer || counts_differ {
        let shown = match &rendered {
            Some((at, ours, theirs)) => format!(
                "the renderings part at character {at}: the model's template gives {ours}, the server's {theirs}"
            ),
            None => format!(
                "the model's template renders the conversation as {:?}",
                probe.rendered.chars().take(160).collect::<String>()
            ),
        };
        let what = if !same_answer {
            "the same conversation at temperature 0 gave different answers through chat and through completions \
             with the model's own template"
        } else {
            "the server's chat renders the conversation differently from the model's own template"
        };
        return TEMPLATE.fires(
            Severity::Warning,
            Confidence::High,
            format!("{what}; {shown}"),
            evidence,
        );
    }
    let ran_on = |a: &infer_doctor_core::TemplateAnswer| {
        a.finish_reason.as_deref() == Some("length")
            && probe
                .end_of_turn
                .as_deref()
                .is_some_and(|end| a.text.as_deref().is_some_and(|t| t.contains(end)))
    };
    if ran_on(chat) || ran_on(completion) {
        return TEMPLATE.fires(
            Severity::Warning,
            Confidence::High,
            format!(
                "the model wrote its end-of-turn {:?} but generation ran on to max_tokens: it is not a stop token",
                probe.end_of_turn.as_deref().unwrap_or_default()
            ),
            evidence,
        );
    }
    TEMPLATE.passes(format!(
        "chat and completions with the model's template gave the same answer{}",
        if probe.server_rendered.is_some() {
            " and the same rendering"
        } else {
            ""
        }
    ))
}
