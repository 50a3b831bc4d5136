//! The determinism probe: the same prompts at temperature 0 alone, then inside batches of concurrent requests,
//! compared token by token, because batch-variant kernels make a request's output depend on its neighbours.

use std::sync::Arc;
use std::time::{Duration, Instant};

use infer_doctor_core::{DeterminismFacts, DeterminismRun, Divergence, TokenPick};
use serde_json::{Value, json};
use tokio::task::JoinSet;

use crate::http::HttpClient;

#[derive(Clone, Debug)]
pub struct DeterminismSpec {
    pub model: String,
    pub prompts: Vec<String>,
    pub max_tokens: u32,
    /// Concurrent requests per batch, each batch after the one before it has finished.
    pub batches: Vec<u32>,
    /// Candidates asked for per position (`logprobs` of `/v1/completions`); 0 asks for none.
    pub top_logprobs: u32,
    pub request_timeout: Duration,
    /// Nothing is sent after this; what is in flight then counts as failed.
    pub deadline: Instant,
}

/// One generated position as the server reported it.
#[derive(Clone, Debug, PartialEq)]
struct Position {
    token: String,
    logprob: Option<f64>,
    /// The most likely tokens there, with their logprobs.
    top: Vec<(String, f64)>,
}

/// One answer: its text and, with logprobs, its tokens.
#[derive(Clone, Debug, PartialEq)]
struct Output {
    text: String,
    tokens: Option<Vec<Position>>,
}

fn request_body(spec: &DeterminismSpec, prompt: &str, logprobs: bool) -> Vec<u8> {
    let mut body = json!({
        "model": spec.model,
        "prompt": prompt,
        "max_tokens": spec.max_tokens,
        "temperature": 0,
        "stream": false,
    });
    if logprobs {
        body["logprobs"] = json!(spec.top_logprobs);
    }
    serde_json::to_vec(&body).unwrap_or_default()
}

/// The first choice's text and tokens, from either logprobs shape servers use on `/v1/completions`: the legacy
/// one (`tokens`, `token_logprobs`, `top_logprobs` as maps; vLLM) or the chat one (`content` entries with their
/// own `top_logprobs` lists; llama.cpp).
fn parse_output(body: &[u8]) -> Result<Output, String> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| format!("response is not JSON: {e}"))?;
    let choice = &v["choices"][0];
    let text = choice["text"]
        .as_str()
        .ok_or("the response has no choices[0].text")?
        .to_string();
    let lp = &choice["logprobs"];
    let tokens = if let Some(tokens) = lp["tokens"].as_array() {
        let positions = tokens
            .iter()
            .enumerate()
            .map(|(i, token)| Position {
                token: token.as_str().unwrap_or_default().to_string(),
                logprob: lp["token_logprobs"][i].as_f64(),
                top: lp["top_logprobs"][i]
                    .as_object()
                    .map(|top| {
                        top.iter()
                            .filter_map(|(t, l)| Some((t.clone(), l.as_f64()?)))
                            .collect()
                    })
                    .unwrap_or_default(),
            })
            .collect();
        Some(positions)
    } else {
        lp["content"].as_array().map(|content| {
            content
                .iter()
                .map(|entry| Position {
                    token: entry["token"].as_str().unwrap_or_default().to_string(),
                    logprob: entry["logprob"].as_f64(),
                    top: entry["top_logprobs"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|t| {
                            Some((t["token"].as_str()?.to_string(), t["logprob"].as_f64()?))
                        })
                        .collect(),
                })
                .collect()
        })
    };
    Ok(Output { text, tokens })
}

async fn ask(
    client: &HttpClient,
    spec: &DeterminismSpec,
    prompt: &str,
    logprobs: bool,
) -> Result<Output, String> {
    let left = spec.deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err("the probe's time ran out".into());
    }
    let path = client.target().path("/v1/completions");
    let body = client
        .post_json(
            &path,
            request_body(spec, prompt, logprobs),
            spec.request_timeout.min(left),
        )
        .await?;
    parse_output(&body)
}

/// Where two outputs of one prompt first part: position, the lone pick, the batched pick, and the lone run's
/// logprob gap between them when it saw the batched token among its candidates.
fn first_difference(
    alone: &Output,
    batched: &Output,
    by_tokens: bool,
) -> Option<(u32, TokenPick, TokenPick, Option<f64>)> {
    if alone.text == batched.text {
        return None;
    }
    let pick = |p: Option<&Position>| TokenPick {
        token: p.map(|p| p.token.clone()).unwrap_or_default(),
        logprob: p.and_then(|p| p.logprob),
    };
    // Texts that differ under equal tokens (a server's detokenizing alone) are compared by words below.
    if let (true, Some(a), Some(b)) = (by_tokens, &alone.tokens, &batched.tokens)
        && let Some(at) = (0..a.len().max(b.len()))
            .find(|&i| a.get(i).map(|p| &p.token) != b.get(i).map(|p| &p.token))
    {
        let (lone, other) = (a.get(at), b.get(at));
        let margin = lone.zip(other).and_then(|(lone, other)| {
            let own = lone.logprob?;
            let theirs = lone.top.iter().find(|(t, _)| *t == other.token)?.1;
            Some(own - theirs)
        });
        return Some((at as u32 + 1, pick(lone), pick(other), margin));
    }
    let (a, b): (Vec<&str>, Vec<&str>) = (
        alone.text.split_whitespace().collect(),
        batched.text.split_whitespace().collect(),
    );
    // Equal words but different text (spacing alone) part where the shorter word list ends.
    let at = (0..a.len().max(b.len()))
        .find(|&i| a.get(i) != b.get(i))
        .unwrap_or(a.len().min(b.len()));
    let word = |w: Option<&&str>| TokenPick {
        token: w.map(|w| w.to_string()).unwrap_or_default(),
        logprob: None,
    };
    Some((at as u32 + 1, word(a.get(at)), word(b.get(at)), None))
}

/// Runs the probe: every prompt alone, one after another, then every prompt alone again (the control: the second
/// run meets the prefix cache the first filled, as batched copies do), then each batch size with the prompts
/// repeated to fill it. A prompt whose two lone runs differ is nondeterministic alone and is left out of the
/// batches' comparisons. Requests are bounded by the batch sizes and by the deadline; failures are counted, not
/// fatal.
pub async fn probe(client: Arc<HttpClient>, spec: DeterminismSpec) -> DeterminismFacts {
    let spec = Arc::new(spec);
    let mut facts = DeterminismFacts {
        prompts: spec.prompts.len() as u32,
        max_tokens: spec.max_tokens,
        ..Default::default()
    };
    let mut logprobs = spec.top_logprobs > 0;
    let mut lone: Vec<Option<Output>> = Vec::with_capacity(spec.prompts.len());
    let mut lone_error = None;
    for prompt in &spec.prompts {
        let mut answer = ask(&client, &spec, prompt, logprobs).await;
        // A server that refuses logprobs is still probed, by text.
        if lone.is_empty()
            && logprobs
            && let Err(why) = &answer
        {
            let plain = ask(&client, &spec, prompt, false).await;
            if plain.is_ok() {
                facts.notes.push(format!(
                    "the server refused logprobs ({why}): outputs compared by words of their text"
                ));
                logprobs = false;
                answer = plain;
            }
        }
        match answer {
            Ok(output) => lone.push(Some(output)),
            Err(why) => {
                facts.lone_failed += 1;
                lone_error.get_or_insert(why);
                lone.push(None);
            }
        }
    }
    if let Some(why) = lone_error {
        facts.notes.push(format!(
            "{} of {} lone requests failed (first: {why}); their prompts were not compared",
            facts.lone_failed, facts.prompts
        ));
    }
    let answered: Vec<&Output> = lone.iter().flatten().collect();
    facts.logprobs = logprobs
        && answered.iter().any(|o| {
            o.tokens
                .as_ref()
                .is_some_and(|t| t.iter().any(|p| p.logprob.is_some()))
        });
    facts.by_tokens =
        logprobs && !answered.is_empty() && answered.iter().all(|o| o.tokens.is_some());
    if answered.is_empty() {
        return facts;
    }
    let mut unstable = vec![false; spec.prompts.len()];
    let (mut unrepeated, mut repeat_error) = (0, None);
    for (i, first) in lone.iter().enumerate() {
        let Some(first) = first else { continue };
        if Instant::now() >= spec.deadline {
            unrepeated += 1;
            repeat_error.get_or_insert_with(|| "the probe's time ran out".to_string());
            continue;
        }
        match ask(&client, &spec, &spec.prompts[i], logprobs).await {
            Ok(second) => {
                facts.repeated += 1;
                if let Some((position, alone, again, margin)) =
                    first_difference(first, &second, facts.by_tokens)
                {
                    unstable[i] = true;
                    facts.alone_divergences.push(Divergence {
                        batch: 1,
                        prompt: i as u32,
                        position,
                        alone,
                        batched: again,
                        margin,
                    });
                }
            }
            Err(why) => {
                unrepeated += 1;
                repeat_error.get_or_insert(why);
            }
        }
    }
    if let Some(why) = repeat_error {
        facts.notes.push(format!(
            "{unrepeated} prompts were not repeated alone (first: {why}): for them a cache effect cannot be told \
             from a batch's"
        ));
    }
    for &batch in &spec.batches {
        if Instant::now() >= spec.deadline {
            facts.notes.push(format!(
                "batch {batch} was not sent: the probe's time ran out"
            ));
            break;
        }
        let mut set = JoinSet::new();
        for k in 0..batch as usize {
            let prompt = k % spec.prompts.len();
            let (client, spec) = (client.clone(), spec.clone());
            set.spawn(async move {
                let answer = ask(&client, &spec, &spec.prompts[prompt], logprobs).await;
                (prompt, answer)
            });
        }
        let mut run = DeterminismRun {
            batch,
            sent: batch,
            ..Default::default()
        };
        let mut earliest: Vec<Option<Divergence>> = vec![None; spec.prompts.len()];
        while let Some(joined) = set.join_next().await {
            let Ok((prompt, answer)) = joined else {
                run.failed += 1;
                continue;
            };
            let output = match answer {
                Ok(output) => output,
                Err(why) => {
                    run.failed += 1;
                    run.first_error.get_or_insert(why);
                    continue;
                }
            };
            let Some(reference) = lone[prompt].as_ref().filter(|_| !unstable[prompt]) else {
                continue;
            };
            run.compared += 1;
            if let Some((position, alone, batched, margin)) =
                first_difference(reference, &output, facts.by_tokens)
            {
                run.differing += 1;
                let slot = &mut earliest[prompt];
                if slot.as_ref().is_none_or(|d| position < d.position) {
                    *slot = Some(Divergence {
                        batch,
                        prompt: prompt as u32,
                        position,
                        alone,
                        batched,
                        margin,
                    });
                }
            }
        }
        facts.divergences.extend(earliest.into_iter().flatten());
        facts.runs.push(run);
    }
    facts
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A token, its logprob, and the candidates at its position with theirs.
    type Step<'a> = (&'a str, f64, &'a [(&'a str, f64)]);

    fn legacy(tokens: &[Step]) -> Vec<u8> {
        let text: String = tokens.iter().map(|t| t.0).collect();
        let body = json!({"choices": [{"index": 0, "text": text, "logprobs": {
            "tokens": tokens.iter().map(|t| t.0).collect::<Vec<_>>(),
            "token_logprobs": tokens.iter().map(|t| t.1).collect::<Vec<_>>(),
            "top_logprobs": tokens.iter().map(|t| t.2.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>()).collect::<Vec<_>>(),
        }}]});
        serde_json::to_vec(&body).unwrap()
    }

    #[test]
    fn a_flip_between_near_tied_tokens_is_found_with_its_margin() {
        let alone = parse_output(&legacy(&[
            (" a", -0.1, &[(" a", -0.1), (" b", -3.0)]),
            (" c", -0.69, &[(" c", -0.69), (" d", -0.71)]),
            (" e", -0.2, &[(" e", -0.2)]),
        ]))
        .unwrap();
        let batched = parse_output(&legacy(&[
            (" a", -0.1, &[(" a", -0.1)]),
            (" d", -0.70, &[(" d", -0.70)]),
            (" f", -0.3, &[(" f", -0.3)]),
        ]))
        .unwrap();
        let (at, lone, other, margin) = first_difference(&alone, &batched, true).unwrap();
        assert_eq!(
            (at, lone.token.as_str(), other.token.as_str()),
            (2, " c", " d"),
            "positions are 1-based: the second token"
        );
        assert!((margin.unwrap() - 0.02).abs() < 1e-9, "{margin:?}");
        assert_eq!(first_difference(&alone, &alone.clone(), true), None);
    }

    #[test]
    fn chat_shaped_logprobs_and_outputs_that_end_early_are_read() {
        let body = json!({"choices": [{"text": " x y", "logprobs": {"content": [
            {"token": " x", "logprob": -0.5, "top_logprobs": [{"token": " x", "logprob": -0.5}, {"token": " z", "logprob": -1.5}]},
            {"token": " y", "logprob": -0.1, "top_logprobs": []}]}}]});
        let alone = parse_output(&serde_json::to_vec(&body).unwrap()).unwrap();
        let short = Output {
            text: " x".into(),
            tokens: Some(alone.tokens.as_ref().unwrap()[..1].to_vec()),
        };
        let (at, lone, other, margin) = first_difference(&alone, &short, true).unwrap();
        assert_eq!(
            (at, lone.token.as_str(), other.token.as_str(), margin),
            (2, " y", "", None)
        );
        // Without tokens, words of the text.
        let words = Output {
            text: " x q".into(),
            tokens: None,
        };
        let (at, lone, other, _) = first_difference(&alone, &words, false).unwrap();
        assert_eq!(
            (at, lone.token.as_str(), other.token.as_str()),
            (2, "y", "q")
        );
        assert!(parse_output(b"{\"choices\": []}").is_err());
        // Equal tokens, different text: still a difference, found by words.
        let respaced = Output {
            text: " x  y".into(),
            tokens: alone.tokens.clone(),
        };
        let (at, _, _, margin) = first_difference(&alone, &respaced, true).unwrap();
        assert_eq!((at, margin), (3, None));
    }
}
