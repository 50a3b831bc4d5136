//! The configuration review beyond fire and near miss: the flag and value each finding names, the way round a
//! rule fires, and the unknowns when a setting or the load that judges it is missing.

mod support;

use infer_doctor_core::{CheckStatus, ConfigSource, Evidence, Setting, Severity, Signal};
use infer_doctor_diagnose::{Thresholds, diagnose};
use support::*;

/// The nine config checklist lines.
const LINES: [&str; 9] = [
    "config_cuda_graphs",
    "config_max_num_seqs_fits_kv",
    "config_max_model_len_fits",
    "config_gpu_memory_used",
    "config_prefix_caching_on",
    "config_chunked_prefill",
    "config_tp_fits_topology",
    "config_kv_cache_dtype",
    "config_spec_decode_accepted",
];

/// Speculative decoding with `k` tokens a draft, and the window's draft steps, drafted and accepted tokens.
fn speculating(evidence: &mut Evidence, k: u64, (drafts, drafted, accepted): (f64, f64, f64)) {
    config(evidence).speculative = logged(true);
    config(evidence).num_speculative_tokens = logged(k);
    let counters = &mut server(evidence).counters;
    counters.insert(Signal::SpecDrafts, counter(drafts, 30.0));
    counters.insert(Signal::SpecDraftTokens, counter(drafted, 30.0));
    counters.insert(Signal::SpecAcceptedTokens, counter(accepted, 30.0));
}

/// No load measured: no probe, and no requests the server finished over the window.
fn without_load(evidence: &mut Evidence) {
    evidence.client = None;
    evidence.single_user = None;
    server(evidence).counters.remove(&Signal::RequestsFinished);
}

fn verdict(evidence: &Evidence, id: &str) -> String {
    let diagnosis = diagnose(evidence, &Thresholds::default());
    finding(&diagnosis, id)
        .unwrap_or_else(|| panic!("{id} did not fire: {:#?}", diagnosis.findings))
        .verdict
        .clone()
}

#[test]
fn without_the_settings_every_config_line_is_unknown_and_says_how_to_know() {
    let mut evidence = healthy();
    evidence.config = None;
    let diagnosis = diagnose(&evidence, &Thresholds::default());
    for id in LINES {
        let line = check_line(&diagnosis, id);
        assert_eq!(line.status, CheckStatus::Unknown, "{line:#?}");
        // Acceptance is the metrics' to tell, whatever the settings say.
        let how = if id == "config_spec_decode_accepted" {
            "metrics"
        } else {
            "--log FILE"
        };
        assert!(
            line.how_to_know.as_deref().unwrap().contains(how),
            "{line:#?}"
        );
    }
    assert!(
        diagnosis
            .findings
            .iter()
            .all(|f| !f.id.starts_with("config."))
    );
}

#[test]
fn a_setting_known_but_no_load_to_judge_it_is_unknown_not_pass() {
    // Only the settings: no client, no metrics, no log, no workload.
    let mut config = healthy_config();
    config.gpu_memory_utilization = logged(0.7);
    config.enable_prefix_caching = logged(false);
    config.speculative = logged(true);
    config.num_gpu_blocks = logged(10_000);
    config.block_size = logged(16);
    let evidence = Evidence {
        config: Some(config),
        ..Default::default()
    };
    let diagnosis = diagnose(&evidence, &Thresholds::default());
    for id in [
        "config_max_num_seqs_fits_kv",
        "config_max_model_len_fits",
        "config_gpu_memory_used",
        "config_prefix_caching_on",
        "config_chunked_prefill",
        "config_tp_fits_topology",
        "config_kv_cache_dtype",
        "config_spec_decode_accepted",
    ] {
        assert_eq!(
            check_line(&diagnosis, id).status,
            CheckStatus::Unknown,
            "{id}: {:#?}",
            check_line(&diagnosis, id)
        );
    }
    // enforce_eager needs no load: the setting alone answers.
    assert_eq!(
        check_line(&diagnosis, "config_cuda_graphs").status,
        CheckStatus::Pass
    );
}

#[test]
fn enforce_eager_says_how_much_itl_is_overhead_when_the_floor_is_known() {
    let mut evidence = healthy();
    config(&mut evidence).enforce_eager = Some(Setting::new(true, ConfigSource::CommandLine));
    // Single-user ITL 9 ms against a 5 ms floor.
    let said = verdict(&evidence, "config.enforce_eager");
    assert!(said.contains("remove --enforce-eager"), "{said}");
    assert!(said.contains("up to 4.0 ms per token"), "{said}");
    assert!(said.contains("server command line"), "{said}");
    // Without the floor: qualitative.
    evidence.hardware = None;
    let said = verdict(&evidence, "config.enforce_eager");
    assert!(said.contains("kernel-launch overhead"), "{said}");
}

#[test]
fn max_num_seqs_far_above_the_cache_names_the_value_and_its_severity_follows_the_pressure() {
    let mut evidence = healthy();
    config(&mut evidence).max_num_seqs = logged(1024);
    // A measured load the cache held: the admission arithmetic's fear did not come true.
    let diagnosis = diagnose(&evidence, &Thresholds::default());
    let line = check_line(&diagnosis, "config_max_num_seqs_fits_kv");
    assert_eq!(line.status, CheckStatus::Pass, "{line:#?}");
    assert!(line.detail.contains("never ran out"), "{line:#?}");
    // No load measured (one idle scrape's worth): a note. 163,840 tokens / (512 + 256, the workload's) = 213.
    without_load(&mut evidence);
    let diagnosis = diagnose(&evidence, &Thresholds::default());
    let found = finding(&diagnosis, "config.max_num_seqs_vs_kv").expect("fires");
    assert!(
        found.verdict.contains("set --max-num-seqs 213"),
        "{}",
        found.verdict
    );
    // Uncorroborated: a note.
    assert_eq!(found.severity, Severity::Info);
    server(&mut evidence)
        .counters
        .insert(Signal::Preemptions, counter(40.0, 30.0));
    let diagnosis = diagnose(&evidence, &Thresholds::default());
    let found = finding(&diagnosis, "config.max_num_seqs_vs_kv").expect("fires");
    assert_eq!(found.severity, Severity::Warning);
    assert!(found.verdict.contains("it ran out"), "{}", found.verdict);
}

#[test]
fn max_num_seqs_pinned_below_what_the_cache_holds_is_a_batch_cap_to_raise() {
    let mut evidence = healthy();
    config(&mut evidence).max_num_seqs = logged(16);
    set_gauge(&mut evidence, Signal::RequestsRunning, 16.0, 16.0);
    set_gauge(&mut evidence, Signal::RequestsWaiting, 12.0, 20.0);
    set_gauge(&mut evidence, Signal::KvUsage, 0.2, 0.3);
    let said = verdict(&evidence, "config.max_num_seqs_vs_kv");
    assert!(said.contains("caps the batch"), "{said}");
    assert!(said.contains("set --max-num-seqs 230"), "{said}");
    // The same queue with the cache half full: not the cap's fault by this rule.
    set_gauge(&mut evidence, Signal::KvUsage, 0.5, 0.6);
    let diagnosis = diagnose(&evidence, &Thresholds::default());
    assert!(finding(&diagnosis, "config.max_num_seqs_vs_kv").is_none());
}

#[test]
fn an_oversized_context_suggests_a_round_length_above_the_longest_request() {
    let mut evidence = healthy();
    config(&mut evidence).max_model_len = logged(131_072);
    // The cache holds 1.25 requests of 131k, but under the load measured it never ran out: no cost shown.
    let diagnosis = diagnose(&evidence, &Thresholds::default());
    assert!(finding(&diagnosis, "config.max_model_len_oversized").is_none());
    // Once it preempts: longest 512 + 256 = 768 tokens; × 1.25 = 960 → 1024.
    server(&mut evidence)
        .counters
        .insert(Signal::Preemptions, counter(40.0, 30.0));
    let said = verdict(&evidence, "config.max_model_len_oversized");
    assert!(said.contains("set --max-model-len 1024"), "{said}");
    // Per-request records, where they carry prompt lengths, set the longest.
    for r in &mut evidence.requests {
        r.usage_prompt_tokens = Some(3000);
    }
    let said = verdict(&evidence, "config.max_model_len_oversized");
    // 3000 + 256 = 3256 × 1.25 = 4070 → 4096.
    assert!(said.contains("set --max-model-len 4096"), "{said}");
}

#[test]
fn low_memory_utilization_says_what_each_step_buys() {
    let mut evidence = healthy();
    config(&mut evidence).gpu_memory_utilization = logged(0.6);
    set_gauge(&mut evidence, Signal::KvUsage, 0.9, 0.99);
    // KV memory ≈ 0.6 × 80 GB − 16 GB = 32 GB for 163,840 tokens: 195 kB each; 0.05 × 80 GB buys ≈20,480.
    let said = verdict(&evidence, "config.gpu_memory_utilization_low");
    assert!(said.contains("--gpu-memory-utilization 0.90"), "{said}");
    assert!(said.contains("≈20480 KV tokens"), "{said}");
}

#[test]
fn a_small_token_budget_with_long_prompts_and_slow_first_tokens_is_raised() {
    let mut evidence = healthy();
    config(&mut evidence).max_num_batched_tokens = logged(1024);
    let c = client(&mut evidence);
    c.tokens.mean_input = 3000.0;
    c.latency.ttft = Some(latency(2500.0, 3500.0));
    let said = verdict(&evidence, "config.chunked_prefill");
    assert!(said.contains("set --max-num-batched-tokens 4096"), "{said}");
}

#[test]
fn tensor_parallelism_for_a_model_that_fits_one_gpu_is_a_note() {
    let mut evidence = healthy();
    config(&mut evidence).tensor_parallel_size = logged(4);
    let diagnosis = diagnose(&evidence, &Thresholds::default());
    let found = finding(&diagnosis, "config.tp_vs_topology").expect("fires");
    assert_eq!(found.severity, Severity::Info);
    assert!(
        found
            .verdict
            .contains("--tensor-parallel-size 1 and run 4 replicas"),
        "{}",
        found.verdict
    );
    // Over PCIe only, the link is topology.tp_over_pcie's finding; this rule stays about the model's size.
    evidence.topology = Some(topology(8, |_, _| pcie(infer_doctor_core::PciePath::Node)));
    let diagnosis = diagnose(&evidence, &Thresholds::default());
    let found = finding(&diagnosis, "config.tp_vs_topology").expect("fires");
    assert_eq!(found.severity, Severity::Info);
    // Without the model's size, no TP value is named.
    evidence.hardware = None;
    let diagnosis = diagnose(&evidence, &Thresholds::default());
    assert!(finding(&diagnosis, "config.tp_vs_topology").is_none());
}

#[test]
fn an_idle_scrape_proves_no_cache_big_enough_and_a_suggestion_never_grows_the_context() {
    let mut evidence = healthy();
    config(&mut evidence).gpu_memory_utilization = logged(0.5);
    // No load: an empty cache says nothing of whether it is big enough.
    without_load(&mut evidence);
    let diagnosis = diagnose(&evidence, &Thresholds::default());
    for line in ["config_gpu_memory_used", "config_kv_cache_dtype"] {
        assert_eq!(
            check_line(&diagnosis, line).status,
            CheckStatus::Unknown,
            "{line}"
        );
    }
    // max_model_len 512 for requests of 100: "shorten it to 1024" would grow it; silent instead.
    let mut evidence = healthy();
    config(&mut evidence).max_model_len = logged(512);
    for r in &mut evidence.requests {
        r.usage_prompt_tokens = Some(50);
        r.max_tokens = 50;
        r.usage_output_tokens = Some(50);
    }
    server(&mut evidence)
        .counters
        .insert(Signal::Preemptions, counter(40.0, 30.0));
    let diagnosis = diagnose(&evidence, &Thresholds::default());
    assert!(finding(&diagnosis, "config.max_model_len_oversized").is_none());
}

#[test]
fn zero_drafts_and_a_large_draft_with_fair_acceptance_are_not_low_acceptance() {
    let mut evidence = healthy();
    speculating(&mut evidence, 5, (0.0, 0.0, 0.0));
    let diagnosis = diagnose(&evidence, &Thresholds::default());
    assert_eq!(
        check_line(&diagnosis, "config_spec_decode_accepted").status,
        CheckStatus::Unknown
    );
    // 40 % of 5 drafted tokens: 2 gained a draft, a speed-up.
    speculating(&mut evidence, 5, (200.0, 1000.0, 400.0));
    let diagnosis = diagnose(&evidence, &Thresholds::default());
    assert!(finding(&diagnosis, "config.spec_decode_low_acceptance").is_none());
}

#[test]
fn low_acceptance_suggests_drafting_what_is_accepted_plus_one() {
    let mut evidence = healthy();
    // 0.3 accepted per draft step of five.
    speculating(&mut evidence, 5, (200.0, 1000.0, 60.0));
    let said = verdict(&evidence, "config.spec_decode_low_acceptance");
    assert!(
        said.contains("only 0.30 tokens accepted per draft (6.0%"),
        "{said}"
    );
    assert!(said.contains("num_speculative_tokens to 2"), "{said}");
    // Configured but no counters: unknown, not pass.
    server(&mut evidence)
        .counters
        .remove(&Signal::SpecDraftTokens);
    let diagnosis = diagnose(&evidence, &Thresholds::default());
    assert_eq!(
        check_line(&diagnosis, "config_spec_decode_accepted").status,
        CheckStatus::Unknown
    );
}

#[test]
fn fp8_kv_is_suggested_only_where_the_gpu_has_fp8_and_the_cache_runs_out() {
    let mut evidence = healthy();
    server(&mut evidence)
        .counters
        .insert(Signal::Preemptions, counter(5.0, 30.0));
    let said = verdict(&evidence, "config.kv_cache_dtype");
    assert!(said.contains("--kv-cache-dtype fp8"), "{said}");
    config(&mut evidence).kv_cache_dtype = logged("fp8".to_string());
    let diagnosis = diagnose(&evidence, &Thresholds::default());
    assert!(finding(&diagnosis, "config.kv_cache_dtype").is_none());
    // The GPU unknown: unknown.
    config(&mut evidence).kv_cache_dtype = logged("auto".to_string());
    evidence.hardware = None;
    evidence.gpus.clear();
    let diagnosis = diagnose(&evidence, &Thresholds::default());
    assert_eq!(
        check_line(&diagnosis, "config_kv_cache_dtype").status,
        CheckStatus::Unknown
    );
}

#[test]
fn acceptance_is_read_from_the_log_where_metrics_lack_it() {
    let mut evidence = healthy();
    config(&mut evidence).speculative = logged(true);
    config(&mut evidence).num_speculative_tokens = logged(4);
    evidence.log.as_mut().unwrap().spec_decode_tokens = Some((60, 600));
    let diagnosis = diagnose(&evidence, &Thresholds::default());
    let found = finding(&diagnosis, "config.spec_decode_low_acceptance").expect("fires");
    // No draft count in the log: half the configured tokens.
    assert!(
        found.verdict.contains("num_speculative_tokens to 2"),
        "{}",
        found.verdict
    );
    assert!(
        found.evidence[0].window.contains("SpecDecoding"),
        "{:?}",
        found.evidence
    );
}
