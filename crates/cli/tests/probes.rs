//! The output probes against the simulator: `diagnose --determinism` finds the token where a batch flips a near
//! tie (the simulator's batch-variant fault) and stays silent without the fault; `diagnose --template` finds a
//! server whose chat template is not the model's and passes one whose template is.

use std::path::Path;
use std::process::Command;

use infer_doctor_testkit::start_sim;
use serde_json::Value;

const EXE: &str = env!("CARGO_BIN_EXE_infer-doctor");

fn bin() -> Command {
    infer_doctor_testkit::command(EXE)
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// `diagnose --determinism` on `url` with short probes; the diagnosis document and the probe's own record.
fn determinism(url: &str, dir: &Path, extra: &[&str]) -> (Value, Value) {
    let out = bin()
        .args(["diagnose", "--url", url, "--determinism", "--quiet"])
        // The determinism probe gets a third of it.
        .args([
            "--budget",
            "15s",
            "--concurrency",
            "4",
            "--input-tokens",
            "64",
        ])
        .args(["--output-tokens", "16", "--format", "json", "--out"])
        .arg(dir)
        .args(extra)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        serde_json::from_str(&stdout).unwrap(),
        read_json(&dir.join("determinism.json")),
    )
}

fn finding<'a>(doc: &'a Value, id: &str) -> Option<&'a Value> {
    doc["diagnosis"]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["id"] == id)
}

fn check_status(doc: &Value, id: &str) -> String {
    doc["diagnosis"]["checklist"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["id"] == id)
        .map(|l| l["status"].as_str().unwrap().to_string())
        .unwrap()
}

#[test]
fn a_batch_above_the_simulators_limit_flips_its_near_tie_and_the_probe_names_the_token() {
    // A forward pass of more than 8 requests flips every prompt's near tie at its 5th generated token.
    let (_sim, url) = start_sim(
        EXE,
        &["--batch-variant-above", "8", "--batch-variant-at", "5"],
    );
    let dir = tempfile::tempdir().unwrap();
    let (doc, probe) = determinism(&url, dir.path(), &[]);

    assert_eq!(
        (probe["prompts"].as_u64(), probe["lone_failed"].as_u64()),
        (Some(4), Some(0))
    );
    // Alone, the simulator repeats itself: the flips are the batch's.
    assert_eq!(probe["repeated"], 4, "{probe:#}");
    assert!(probe.get("alone_divergences").is_none(), "{probe:#}");
    assert_eq!(
        (probe["by_tokens"].as_bool(), probe["logprobs"].as_bool()),
        (Some(true), Some(true))
    );
    let counts = batch_counts(&probe);
    // Eight at once never exceed the limit; thirty-two always do.
    assert_eq!(counts, [(8, 8, 0), (32, 32, 32)], "{probe:#}");
    let divergences = probe["divergences"].as_array().unwrap();
    assert_eq!(
        divergences.len(),
        4,
        "one per prompt of the batch of 32: {probe:#}"
    );
    for d in divergences {
        assert_eq!(
            (d["batch"].as_u64(), d["position"].as_u64()),
            (Some(32), Some(5)),
            "{d:#}"
        );
        assert_ne!(d["alone"]["token"], d["batched"]["token"]);
        let margin = d["margin"].as_f64().unwrap();
        assert!(
            (margin - 0.01).abs() < 1e-6,
            "the simulator's tie is 0.01 nats: {margin}"
        );
    }

    let found = finding(&doc, "output.nondeterministic").expect("output.nondeterministic");
    let verdict = found["verdict"].as_str().unwrap();
    assert!(
        verdict.starts_with("32 of 40 outputs") && verdict.contains("first at token 5"),
        "{verdict}"
    );
    assert_eq!(
        found["severity"], "info",
        "near ties alone are rounding: {found:#}"
    );
    assert_eq!(check_status(&doc, "outputs_deterministic"), "fail");

    // The bundle keeps the probe: diagnosed again offline, the same verdict.
    let out = bin()
        .args(["diagnose", "--format", "json", "--bundle"])
        .arg(dir.path())
        .output()
        .unwrap();
    let offline: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        finding(&offline, "output.nondeterministic").map(|f| &f["verdict"]),
        Some(&found["verdict"])
    );
}

#[test]
fn without_the_fault_every_batched_output_matches_its_lone_run() {
    let (_sim, url) = start_sim(EXE, &[]);
    let dir = tempfile::tempdir().unwrap();
    let (doc, probe) = determinism(
        &url,
        dir.path(),
        &[
            "--determinism-batches",
            "3,16",
            "--determinism-prompts",
            "3",
        ],
    );
    let counts = batch_counts(&probe);
    assert_eq!(counts, [(3, 3, 0), (16, 16, 0)], "{probe:#}");
    assert!(finding(&doc, "output.nondeterministic").is_none());
    assert_eq!(check_status(&doc, "outputs_deterministic"), "pass");

    // A diagnosis without the probe cannot know.
    let out = bin()
        .args(["diagnose", "--format", "json", "--bundle"])
        .arg(dir.path().join("loaded"))
        .output()
        .unwrap();
    let without: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(check_status(&without, "outputs_deterministic"), "unknown");
}

/// A tokenizer directory whose chat template is the one the simulator renders chat with (one word per token,
/// so the markers stand apart), beside a real tokenizer.json for the probes' prompts.
const SIM_TEMPLATE: &str = "{% for message in messages %}<|im_start|> {{ message['role'] }} {{ message['content'] }} <|im_end|> {% endfor %}{% if add_generation_prompt %}<|im_start|> assistant{% endif %}";

fn model_dir(dir: &Path, chat_template: &str) -> String {
    let tokenizer = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/tokenizers/tiny-bpe/tokenizer.json");
    std::fs::copy(tokenizer, dir.join("tokenizer.json")).unwrap();
    let config = serde_json::json!({
        "eos_token": "<|endoftext|>",
        "chat_template": chat_template,
    });
    std::fs::write(dir.join("tokenizer_config.json"), config.to_string()).unwrap();
    dir.display().to_string()
}

fn template(url: &str, dir: &Path, chat_template: &str) -> (Value, Value) {
    let model = tempfile::tempdir().unwrap();
    let out = bin()
        .args([
            "diagnose",
            "--url",
            url,
            "--template",
            "--quiet",
            "--tokenizer",
            &model_dir(model.path(), chat_template),
        ])
        .args([
            "--budget",
            "5s",
            "--concurrency",
            "2",
            "--input-tokens",
            "32",
            "--output-tokens",
            "8",
        ])
        .args(["--format", "json", "--out"])
        .arg(dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        serde_json::from_str(&stdout).unwrap(),
        read_json(&dir.join("template.json")),
    )
}

#[test]
fn a_server_whose_chat_template_drops_the_assistant_opening_is_found_and_a_matching_one_passes() {
    let (_sim, url) = start_sim(EXE, &["--chat-template-without-generation-prompt"]);
    let dir = tempfile::tempdir().unwrap();
    let (doc, probe) = template(&url, dir.path(), SIM_TEMPLATE);
    assert_eq!(
        probe["generation_prompt"], true,
        "the model's own template opens the turn: {probe:#}"
    );
    assert_eq!(probe["end_of_turn"], "<|im_end|>");
    assert!(
        probe["rendered"]
            .as_str()
            .unwrap()
            .ends_with("<|im_end|> <|im_start|> assistant"),
        "{probe:#}"
    );
    // The server's rendering lacks the two words of the assistant's opening.
    let (chat, plain) = (&probe["chat"], &probe["completion"]);
    assert_eq!(
        plain["prompt_tokens"].as_u64().unwrap() - chat["prompt_tokens"].as_u64().unwrap(),
        2,
        "{probe:#}"
    );
    assert_ne!(chat["text"], plain["text"]);
    let found = finding(&doc, "output.template").expect("output.template");
    let verdict = found["verdict"].as_str().unwrap();
    assert!(
        verdict.contains("different answers through chat and through completions"),
        "{verdict}"
    );
    assert_eq!(check_status(&doc, "template_matches"), "fail");

    let (_sim, url) = start_sim(EXE, &[]);
    let dir = tempfile::tempdir().unwrap();
    let (doc, probe) = template(&url, dir.path(), SIM_TEMPLATE);
    assert_eq!(
        probe["chat"]["text"], probe["completion"]["text"],
        "{probe:#}"
    );
    assert_eq!(
        probe["chat"]["prompt_tokens"], probe["completion"]["prompt_tokens"],
        "{probe:#}"
    );
    assert!(finding(&doc, "output.template").is_none());
    assert_eq!(check_status(&doc, "template_matches"), "pass");

    // A template this renderer cannot render leaves the check unknown, with why; the diagnosis goes on.
    let dir = tempfile::tempdir().unwrap();
    let (doc, probe) = template(
        &url,
        dir.path(),
        "{% for message in messages %}{{ message['content'] | no_such_filter }}{% endfor %}",
    );
    let why = probe["render_error"].as_str().unwrap_or_default();
    assert!(why.contains("no_such_filter"), "{probe:#}");
    assert_eq!(check_status(&doc, "template_matches"), "unknown");
    assert!(
        doc["evidence"]["requests"]
            .as_array()
            .is_some_and(|r| !r.is_empty()),
        "{doc:#}"
    );
}

/// (batch size, outputs compared, outputs differing) of each batch the determinism probe sent.
fn batch_counts(probe: &Value) -> Vec<(u64, u64, u64)> {
    probe["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["batch"].as_u64().unwrap(),
                r["compared"].as_u64().unwrap(),
                r["differing"].as_u64().unwrap(),
            )
        })
        .collect()
}
