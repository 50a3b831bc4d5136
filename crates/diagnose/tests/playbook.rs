//! Every playbook rule over hand-built evidence: one case that must fire and a near miss that must not, then the
//! checklist, the headline and partial evidence.

mod support;

use infer_doctor_core::record::ErrorClass;
use infer_doctor_core::summary::ErrorCount;
use infer_doctor_core::{CheckStatus, ClockReason, Evidence, Severity, Signal, XidEvent};
use infer_doctor_diagnose::{Thresholds, diagnose};
use support::*;

type Change = fn(&mut Evidence);

/// (rule id, the change that makes it fire, a near miss that must not).
const CASES: &[(&str, Change, Change)] = &[
    (
        "hardware.xid_errors",
        |e| {
            e.kernel.as_mut().unwrap().xids = vec![xid(79, "GPU has fallen off the bus")];
        },
        // A second kernel log, also clean.
        |e| e.kernel.as_mut().unwrap().sources.push("dmesg.txt".into()),
    ),
    (
        "hardware.memory_errors",
        |e| gpu(e).ecc_uncorrected_volatile = Some(1.0),
        // Corrected errors are what ECC is for, up to GCM's limit.
        |e| gpu(e).ecc_corrected_volatile = Some(1_000_000.0),
    ),
    (
        "hardware.clock_slowdown",
        |e| {
            gpu(e).clock_reasons = Some(vec![ClockReason::HwThermalSlowdown]);
            gpu(e).sm_clock_mhz = Some(1410.0);
        },
        // At its power cap but still at full clock: the cap is not what limits it.
        |e| gpu(e).clock_reasons = Some(vec![ClockReason::SwPowerCap]),
    ),
    (
        "hardware.pcie_degraded",
        |e| gpu(e).pcie_gen = Some(3.0),
        // The same link on an idle GPU, which lowers it on purpose.
        |e| {
            gpu(e).pcie_gen = Some(1.0);
            gpu(e).utilization_percent = Some(0.0);
            gpu(e).clock_reasons = Some(vec![ClockReason::GpuIdle]);
        },
    ),
    (
        "capacity.kv_saturated",
        |e| {
            set_gauge(e, Signal::KvUsage, 0.85, 0.97);
            set_gauge(e, Signal::RequestsWaiting, 5.0, 12.0);
        },
        |e| {
            set_gauge(e, Signal::KvUsage, 0.8, 0.89);
            set_gauge(e, Signal::RequestsWaiting, 5.0, 12.0);
        },
    ),
    (
        "capacity.batch_cap",
        |e| {
            set_gauge(e, Signal::RequestsWaiting, 5.0, 12.0);
            set_gauge(e, Signal::RequestsRunning, 250.0, 256.0);
        },
        |e| {
            set_gauge(e, Signal::RequestsWaiting, 5.0, 12.0);
            set_gauge(e, Signal::RequestsRunning, 190.0, 200.0);
        },
    ),
    (
        "capacity.preemptions",
        |e| {
            server(e)
                .counters
                .insert(Signal::Preemptions, counter(12.0, WINDOW_SECONDS));
        },
        |e| {
            server(e)
                .counters
                .insert(Signal::Preemptions, counter(0.0, WINDOW_SECONDS));
        },
    ),
    (
        "ttft.queueing",
        |e| {
            client(e).latency.ttft = Some(latency(1800.0, 2400.0));
            server(e).histograms.insert(Signal::Ttft, histogram(1.8));
            server(e)
                .histograms
                .insert(Signal::QueueTime, histogram(1.5));
        },
        |e| {
            client(e).latency.ttft = Some(latency(1800.0, 2400.0));
            server(e).histograms.insert(Signal::Ttft, histogram(1.8));
            server(e)
                .histograms
                .insert(Signal::QueueTime, histogram(0.2));
        },
    ),
    (
        "ttft.prefill_bound",
        |e| {
            client(e).latency.ttft = Some(latency(2800.0, 3000.0));
            server(e).histograms.insert(Signal::Ttft, histogram(2.8));
            server(e)
                .histograms
                .insert(Signal::PrefillTime, histogram(2.5));
        },
        |e| {
            client(e).latency.ttft = Some(latency(1400.0, 1500.0));
            server(e).histograms.insert(Signal::Ttft, histogram(1.4));
            server(e)
                .histograms
                .insert(Signal::PrefillTime, histogram(1.3));
        },
    ),
    (
        "ttft.cold_start",
        // A cold engine is slow at every step: the first requests' decode crawls too.
        |e| {
            for r in e.requests.iter_mut().take(3) {
                *r = record(r.id, r.sent_us as f64 / 1e6, 2000.0, 100, 80.0);
            }
        },
        // A crowd arriving at once: first tokens late from the queue, decode at full speed.
        |e| {
            for r in e.requests.iter_mut().take(3) {
                *r = record(r.id, r.sent_us as f64 / 1e6, 2000.0, 100, 12.0);
            }
        },
    ),
    (
        "itl.single_user_slow",
        |e| e.single_user.as_mut().unwrap().latency.itl_token = Some(latency(15.0, 18.0)),
        |e| e.single_user.as_mut().unwrap().latency.itl_token = Some(latency(10.0, 12.0)),
    ),
    (
        "itl.batch_size",
        |e| client(e).latency.itl_token = Some(latency(20.0, 25.0)),
        |e| client(e).latency.itl_token = Some(latency(13.0, 16.0)),
    ),
    (
        "throughput.memory_bound",
        |e| {
            set_gauge(e, Signal::KvUsage, 0.9, 0.99);
            set_gauge(e, Signal::RequestsWaiting, 5.0, 12.0);
        },
        |e| {
            set_gauge(e, Signal::KvUsage, 0.9, 0.95);
            set_gauge(e, Signal::RequestsWaiting, 5.0, 12.0);
        },
    ),
    (
        "throughput.degraded_over_time",
        |e| {
            for r in e.requests.iter_mut().skip(15) {
                *r = record(r.id, r.sent_us as f64 / 1e6, 100.0, 30, 10.0);
            }
            server(e)
                .counters
                .insert(Signal::Preemptions, counter(40.0, WINDOW_SECONDS));
        },
        |e| {
            for r in e.requests.iter_mut().skip(15) {
                *r = record(r.id, r.sent_us as f64 / 1e6, 100.0, 80, 10.0);
            }
        },
    ),
    (
        "upstream.bottleneck",
        |e| set_gauge(e, Signal::RequestsRunning, 3.0, 4.0),
        |e| set_gauge(e, Signal::RequestsRunning, 10.0, 12.0),
    ),
    (
        "client.bound",
        |e| client(e).client.client_bound = true,
        |e| client(e).client.schedule_lag = Some(latency(5.0, 40.0)),
    ),
    (
        "errors.rate",
        |e| {
            let requests = &mut client(e).requests;
            (requests.ok, requests.failed, requests.error_rate) = (92, 8, 0.08);
            requests.errors = vec![ErrorCount {
                class: ErrorClass::HttpStatus,
                status: Some(503),
                count: 8,
                example: "Service Unavailable".into(),
            }];
        },
        |e| {
            let requests = &mut client(e).requests;
            (
                requests.sent,
                requests.ok,
                requests.failed,
                requests.error_rate,
            ) = (1000, 991, 9, 0.009);
        },
    ),
    (
        "output.runaway",
        |e| {
            let tokens = &mut client(e).tokens;
            tokens.finish_reasons = [("length".to_string(), 90), ("stop".to_string(), 10)].into();
            tokens.mean_output = 252.0;
        },
        |e| {
            client(e).tokens.finish_reasons =
                [("length".to_string(), 40), ("stop".to_string(), 60)].into();
        },
    ),
    (
        "output.truncation",
        |e| {
            client(e).requests.errors = vec![ErrorCount {
                class: ErrorClass::HttpStatus,
                status: Some(400),
                count: 5,
                example: "This model's maximum context length is 4096 tokens".into(),
            }];
        },
        |e| {
            client(e).requests.errors = vec![ErrorCount {
                class: ErrorClass::HttpStatus,
                status: Some(400),
                count: 5,
                example: "temperature must be non-negative".into(),
            }];
        },
    ),
    (
        "cache.prefix_low_hit",
        |e| {
            server(e)
                .counters
                .insert(Signal::PrefixCacheHits, counter(10_000.0, WINDOW_SECONDS));
        },
        |e| {
            server(e)
                .counters
                .insert(Signal::PrefixCacheHits, counter(40_000.0, WINDOW_SECONDS));
        },
    ),
    (
        "capacity.weights_dominate",
        |e| e.hardware.as_mut().unwrap().weight_bytes = 70e9,
        |e| e.hardware.as_mut().unwrap().weight_bytes = 58e9,
    ),
    (
        "capacity.startup_headroom",
        |e| {
            let log = e.log.as_mut().unwrap();
            (log.max_concurrency, log.kv_capacity_tokens) = (Some((8.0, 4096)), None);
        },
        |e| e.log.as_mut().unwrap().max_concurrency = Some((16.0, 4096)),
    ),
    (
        "consistency.littles_law",
        |e| {
            server(e).histograms.insert(Signal::E2e, histogram(0.5));
        },
        |e| {
            server(e).histograms.insert(Signal::E2e, histogram(2.0));
        },
    ),
];

#[test]
fn every_rule_fires_on_its_case_and_not_on_its_near_miss() {
    let thresholds = Thresholds::default();
    for (id, fire, near_miss) in CASES {
        let mut evidence = healthy();
        fire(&mut evidence);
        let diagnosis = diagnose(&evidence, &thresholds);
        let found =
            finding(&diagnosis, id).unwrap_or_else(|| panic!("{id} did not fire: {diagnosis:#?}"));
        // Weights filling VRAM is only a note until the load needs the KV room (see the test below).
        if *id != "capacity.weights_dominate" {
            assert!(
                found.severity <= Severity::Warning,
                "{id} fired only as {:?}",
                found.severity
            );
        }
        assert!(
            !found.evidence.is_empty() && !found.remedies.is_empty() && !found.source.is_empty(),
            "{id}"
        );

        let mut evidence = healthy();
        near_miss(&mut evidence);
        let diagnosis = diagnose(&evidence, &thresholds);
        assert!(
            finding(&diagnosis, id).is_none(),
            "{id} fired on its near miss: {diagnosis:#?}"
        );
    }
}

#[test]
fn every_playbook_rule_has_a_case() {
    let ids = [
        "capacity.kv_saturated",
        "capacity.batch_cap",
        "capacity.preemptions",
        "ttft.queueing",
        "ttft.prefill_bound",
        "ttft.cold_start",
        "itl.single_user_slow",
        "itl.batch_size",
        "throughput.memory_bound",
        "upstream.bottleneck",
        "client.bound",
        "errors.rate",
        "output.runaway",
        "output.truncation",
        "cache.prefix_low_hit",
        "capacity.weights_dominate",
        "capacity.startup_headroom",
        "throughput.degraded_over_time",
        "consistency.littles_law",
        "hardware.xid_errors",
        "hardware.memory_errors",
        "hardware.clock_slowdown",
        "hardware.pcie_degraded",
    ];
    for id in ids {
        assert!(
            CASES.iter().any(|(case, _, _)| *case == id),
            "no case for {id}"
        );
    }
}

#[test]
fn healthy_evidence_has_no_warning_and_every_checklist_line_passes() {
    let diagnosis = diagnose(&healthy(), &Thresholds::default());
    assert!(
        diagnosis
            .findings
            .iter()
            .all(|f| f.severity == Severity::Info),
        "{:#?}",
        diagnosis.findings
    );
    assert_eq!(diagnosis.checklist.len(), 19);
    for line in &diagnosis.checklist {
        assert_eq!(line.status, CheckStatus::Pass, "{line:#?}");
    }
    assert!(
        diagnosis
            .headline
            .starts_with("No problem found: TTFT p95 120 ms"),
        "{}",
        diagnosis.headline
    );
}

#[test]
fn headline_names_the_symptom_numbers_and_the_primary_finding() {
    let mut evidence = healthy();
    client(&mut evidence).latency.ttft = Some(latency(1800.0, 2400.0));
    set_gauge(&mut evidence, Signal::KvUsage, 0.9, 0.97);
    set_gauge(&mut evidence, Signal::RequestsWaiting, 6.0, 14.0);
    server(&mut evidence)
        .histograms
        .insert(Signal::Ttft, histogram(1.8));
    server(&mut evidence)
        .histograms
        .insert(Signal::QueueTime, histogram(1.5));
    let diagnosis = diagnose(&evidence, &Thresholds::default());
    assert_eq!(
        diagnosis.findings[0].id, "capacity.kv_saturated",
        "{:#?}",
        diagnosis.findings
    );
    assert_eq!(diagnosis.findings[0].severity, Severity::Critical);
    let headline = &diagnosis.headline;
    assert!(
        headline.starts_with("TTFT is high under load (p95 2.4 s vs 30 ms alone): "),
        "{headline}"
    );
    assert!(headline.ends_with("(capacity.kv_saturated)"), "{headline}");
    assert!(
        finding(&diagnosis, "ttft.queueing").is_some(),
        "the queueing symptom is reported too"
    );
}

#[test]
fn weights_filling_vram_warn_only_when_the_load_needs_the_room() {
    let mut evidence = healthy();
    evidence.hardware.as_mut().unwrap().weight_bytes = 70e9;
    let note = diagnose(&evidence, &Thresholds::default());
    assert_eq!(
        finding(&note, "capacity.weights_dominate")
            .unwrap()
            .severity,
        Severity::Info
    );
    assert!(
        note.headline.starts_with("No problem found"),
        "{}",
        note.headline
    );
    assert!(
        note.headline
            .ends_with("(notes: capacity.weights_dominate)"),
        "{}",
        note.headline
    );
    set_gauge(&mut evidence, Signal::RequestsWaiting, 5.0, 12.0);
    let warning = diagnose(&evidence, &Thresholds::default());
    assert_eq!(
        finding(&warning, "capacity.weights_dominate")
            .unwrap()
            .severity,
        Severity::Warning
    );
}

#[test]
fn errors_dominate_the_headline() {
    let mut evidence = healthy();
    let requests = &mut client(&mut evidence).requests;
    (requests.ok, requests.failed, requests.error_rate) = (90, 10, 0.10);
    let diagnosis = diagnose(&evidence, &Thresholds::default());
    assert_eq!(diagnosis.findings[0].id, "errors.rate");
    assert!(
        diagnosis
            .headline
            .starts_with("Errors are high (10 of 100 requests failed)"),
        "{}",
        diagnosis.headline
    );
}

#[test]
fn findings_are_sorted_by_severity_then_confidence() {
    let mut evidence = healthy();
    for (_, fire, _) in CASES {
        fire(&mut evidence);
    }
    let diagnosis = diagnose(&evidence, &Thresholds::default());
    let keys: Vec<_> = diagnosis
        .findings
        .iter()
        .map(|f| (f.severity, f.confidence))
        .collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted);
    assert!(diagnosis.findings.len() > 10);
}

#[test]
fn batch_cap_without_max_num_seqs_is_a_low_confidence_guess_and_the_checklist_asks_for_the_log() {
    // The how-to fits what was given: no log, a log without vLLM's start-up lines, or start-up arguments
    // that leave max_num_seqs at its default.
    type Change = fn(&mut Evidence);
    let cases: [(Change, &str); 3] = [
        (|e| e.log = None, "pass --log FILE"),
        (
            |e| e.log.as_mut().unwrap().non_default_args.clear(),
            "lacks vLLM's start-up lines",
        ),
        (
            |e| {
                let args = &mut e.log.as_mut().unwrap().non_default_args;
                args.remove("max_num_seqs");
                args.insert("max_model_len".into(), "8192".into());
            },
            "start the server with --max-num-seqs",
        ),
    ];
    for (change, how) in cases {
        let mut evidence = healthy();
        change(&mut evidence);
        set_gauge(&mut evidence, Signal::RequestsWaiting, 5.0, 12.0);
        set_gauge(&mut evidence, Signal::RequestsRunning, 250.0, 256.0);
        let diagnosis = diagnose(&evidence, &Thresholds::default());
        let found = finding(&diagnosis, "capacity.batch_cap").expect("batch cap suspected");
        assert_eq!(found.confidence, infer_doctor_core::Confidence::Low);
        let line = check_line(&diagnosis, "batch_not_capped");
        assert_eq!(line.status, CheckStatus::Unknown);
        let said = line.how_to_know.as_deref().unwrap();
        assert!(said.contains(how), "{said}");
    }
}

#[test]
fn nothing_at_all_gives_no_findings_and_says_how_to_get_each_answer() {
    let diagnosis = diagnose(&Evidence::default(), &Thresholds::default());
    assert!(diagnosis.findings.is_empty());
    assert!(
        diagnosis
            .headline
            .starts_with("No problem found: no client measurement")
    );
    for line in &diagnosis.checklist {
        if line.id == "prefix_cache_hitting" {
            assert_eq!(
                line.status,
                CheckStatus::Pass,
                "not applicable without shared prefixes"
            );
            continue;
        }
        assert_eq!(line.status, CheckStatus::Unknown, "{line:#?}");
        assert!(line.detail.starts_with("not checked"), "{line:#?}");
        assert!(line.how_to_know.is_some(), "{line:#?}");
    }
}

#[test]
fn client_only_evidence_skips_server_rules_and_asks_for_metrics() {
    let mut evidence = healthy();
    evidence.server = None;
    evidence.log = None;
    set_gauge_free_saturation(&mut evidence);
    let diagnosis = diagnose(&evidence, &Thresholds::default());
    for id in [
        "capacity.kv_saturated",
        "capacity.batch_cap",
        "capacity.preemptions",
        "throughput.memory_bound",
    ] {
        assert!(
            finding(&diagnosis, id).is_none(),
            "{id} fired without server evidence"
        );
    }
    for id in [
        "queue_empty",
        "kv_below_saturation",
        "no_preemptions",
        "upstream_matches",
        "littles_law",
    ] {
        let line = check_line(&diagnosis, id);
        assert_eq!(line.status, CheckStatus::Unknown, "{line:#?}");
        assert!(
            line.how_to_know
                .as_deref()
                .unwrap()
                .contains("--metrics-url"),
            "{line:#?}"
        );
    }
    let startup = check_line(&diagnosis, "startup_capacity");
    assert!(startup.how_to_know.as_deref().unwrap().contains("--log"));
}

/// The client alone shows high TTFT under load; without server metrics only TTFT rules can speak.
fn set_gauge_free_saturation(evidence: &mut Evidence) {
    client(evidence).latency.ttft = Some(latency(1800.0, 2400.0));
}

#[test]
fn missing_hardware_facts_leave_the_floor_unknown() {
    let mut evidence = healthy();
    evidence.hardware = None;
    let diagnosis = diagnose(&evidence, &Thresholds::default());
    let line = check_line(&diagnosis, "single_user_near_floor");
    assert_eq!(line.status, CheckStatus::Unknown);
    assert!(line.how_to_know.as_deref().unwrap().contains("--gpu"));
}

#[test]
fn the_checklist_fails_where_the_findings_fire() {
    let mut evidence = healthy();
    set_gauge(&mut evidence, Signal::KvUsage, 0.9, 0.97);
    set_gauge(&mut evidence, Signal::RequestsWaiting, 6.0, 14.0);
    server(&mut evidence)
        .counters
        .insert(Signal::Preemptions, counter(5.0, WINDOW_SECONDS));
    let diagnosis = diagnose(&evidence, &Thresholds::default());
    for id in ["queue_empty", "kv_below_saturation", "no_preemptions"] {
        let line = check_line(&diagnosis, id);
        assert_eq!(line.status, CheckStatus::Fail, "{line:#?}");
    }
}

#[test]
fn diagnosis_is_deterministic() {
    let mut evidence = healthy();
    for (_, fire, _) in CASES {
        fire(&mut evidence);
    }
    let thresholds = Thresholds::default();
    assert_eq!(
        diagnose(&evidence, &thresholds),
        diagnose(&evidence, &thresholds)
    );
}

/// llama.cpp: no KV gauge, but its slots (from `/props`) are the cap, and `requests_deferred` the queue.
fn llamacpp_with_deferred_requests(running_max: f64) -> Evidence {
    let mut evidence = healthy();
    evidence.log = None;
    let server = server(&mut evidence);
    server.dialect = "llamacpp".into();
    server.gauges.remove(&Signal::KvUsage);
    set_gauge(&mut evidence, Signal::MaxRunning, 4.0, 4.0);
    set_gauge(
        &mut evidence,
        Signal::RequestsRunning,
        running_max - 0.5,
        running_max,
    );
    set_gauge(&mut evidence, Signal::RequestsWaiting, 2.5, 4.0);
    evidence
}

#[test]
fn llamacpp_slots_all_busy_with_deferred_requests_is_the_batch_cap() {
    let diagnosis = diagnose(
        &llamacpp_with_deferred_requests(4.0),
        &Thresholds::default(),
    );
    let found = finding(&diagnosis, "capacity.batch_cap").expect("slots full");
    assert_eq!(found.severity, Severity::Warning);
    assert_eq!(found.confidence, infer_doctor_core::Confidence::High);
    assert!(found.verdict.contains("slots 4"), "{}", found.verdict);
    assert!(found.remedies[0].contains("--parallel"));
    let line = check_line(&diagnosis, "batch_not_capped");
    assert_eq!(line.status, CheckStatus::Fail);

    // Near miss: requests wait but only two of the four slots were ever busy.
    let diagnosis = diagnose(
        &llamacpp_with_deferred_requests(2.0),
        &Thresholds::default(),
    );
    assert!(finding(&diagnosis, "capacity.batch_cap").is_none());
}

#[test]
fn outputs_ending_by_length_are_expected_when_the_run_asked_for_exact_lengths() {
    let mut evidence = healthy();
    let tokens = &mut client(&mut evidence).tokens;
    tokens.finish_reasons = [("length".to_string(), 100)].into();
    tokens.mean_output = 256.0;
    assert!(
        finding(
            &diagnose(&evidence, &Thresholds::default()),
            "output.runaway"
        )
        .is_some()
    );

    evidence.exact_output_lengths = true;
    let diagnosis = diagnose(&evidence, &Thresholds::default());
    assert!(finding(&diagnosis, "output.runaway").is_none());
    let line = check_line(&diagnosis, "outputs_stop");
    assert_eq!(line.status, CheckStatus::Unknown);
    assert!(
        line.how_to_know
            .as_deref()
            .unwrap()
            .contains("--ignore-eos")
    );
}

/// The cold-start line says why it passes: first answers that came fast, or a first wave whose tokens all
/// arrived at once (a server that buffered them), which is not a cold engine although its TTFT was long.
#[test]
fn the_cold_start_line_passes_with_the_reason_that_holds() {
    let line = |evidence: &Evidence| {
        let diagnosis = diagnose(evidence, &Thresholds::default());
        assert!(finding(&diagnosis, "ttft.cold_start").is_none());
        let line = check_line(&diagnosis, "first_requests_warm").clone();
        assert_eq!(line.status, CheckStatus::Pass, "{line:?}");
        line.detail
    };
    let mut burst = healthy();
    for r in burst.requests.iter_mut().take(3) {
        *r = record(r.id, r.sent_us as f64 / 1e6, 2000.0, 100, 0.0);
    }
    let detail = line(&burst);
    assert!(detail.contains("no slower than 5×"), "{detail}");
    let mut quick = healthy();
    for r in quick.requests.iter_mut().take(3) {
        *r = record(r.id, r.sent_us as f64 / 1e6, 50.0, 100, 80.0);
    }
    let detail = line(&quick);
    assert!(
        detail.starts_with("the first requests answer fast"),
        "{detail}"
    );
}

/// With several GPUs the verdict names the one at fault; an idle GPU's lowered PCIe link is not judged, and
/// the line says what capture would settle it.
#[test]
fn gpu_rules_name_the_gpu_and_leave_idle_links_unjudged() {
    let mut evidence = healthy();
    let mut second = busy_gpu();
    second.bus_id = "00000000:0A:00.0".into();
    second.remapped_rows_pending = Some(true);
    evidence.gpus.push(second);
    let diagnosis = diagnose(&evidence, &Thresholds::default());
    let found = finding(&diagnosis, "hardware.memory_errors").unwrap();
    assert_eq!(found.severity, Severity::Warning);
    assert_eq!(
        found.verdict,
        "GPU 00000000:0A:00.0: a row remap waits for a GPU reset"
    );
    assert!(
        diagnosis
            .headline
            .starts_with("A GPU is not at full health")
    );

    let mut idle = healthy();
    let gpu = gpu(&mut idle);
    (gpu.utilization_percent, gpu.pcie_gen) = (Some(0.0), Some(1.0));
    gpu.clock_reasons = Some(vec![ClockReason::GpuIdle]);
    let diagnosis = diagnose(&idle, &Thresholds::default());
    let link = check_line(&diagnosis, "gpu_link_full");
    assert_eq!(link.status, CheckStatus::Unknown);
    assert!(
        link.detail.contains("idle GPUs lower their PCIe link"),
        "{link:?}"
    );
    assert!(
        link.how_to_know
            .as_deref()
            .unwrap()
            .contains("while it serves")
    );
    let clocks = check_line(&diagnosis, "gpu_clocks_full");
    assert_eq!(clocks.status, CheckStatus::Pass);
    assert!(
        clocks.detail.contains("not busy when captured"),
        "{clocks:?}"
    );

    // At its own power cap under load the GPU works as rated: a note, not a warning; a lowered limit warns.
    let mut capped = healthy();
    capped.gpus[0].clock_reasons = Some(vec![ClockReason::SwPowerCap]);
    capped.gpus[0].sm_clock_mhz = Some(1755.0);
    let note = diagnose(&capped, &Thresholds::default());
    assert_eq!(
        finding(&note, "hardware.clock_slowdown").unwrap().severity,
        Severity::Info
    );
    capped.gpus[0].power_limit_watts = Some(500.0);
    let lowered = diagnose(&capped, &Thresholds::default());
    let found = finding(&lowered, "hardware.clock_slowdown").unwrap();
    assert_eq!(found.severity, Severity::Warning);
    assert!(
        found
            .verdict
            .contains("power limit lowered to 500 W (default 700 W)")
    );

    // ECC off: the pass says the counts were not reported, not that there were no errors.
    let mut no_ecc = healthy();
    (
        no_ecc.gpus[0].ecc_uncorrected_volatile,
        no_ecc.gpus[0].ecc_corrected_volatile,
    ) = (None, None);
    let memory = check_line(
        &diagnose(&no_ecc, &Thresholds::default()),
        "gpu_memory_healthy",
    )
    .clone();
    assert_eq!(memory.status, CheckStatus::Pass);
    assert!(
        memory.detail.starts_with("ECC error counts not reported"),
        "{memory:?}"
    );
}

/// An XID's severity follows what it means: the GPU failing is critical, an application's fault seen by the
/// driver is a note, the rest a warning; the verdict counts repeats.
#[test]
fn xid_severity_follows_what_the_code_means() {
    let severity = |xids: Vec<XidEvent>| {
        let mut evidence = healthy();
        evidence.kernel.as_mut().unwrap().xids = xids;
        let diagnosis = diagnose(&evidence, &Thresholds::default());
        let found = finding(&diagnosis, "hardware.xid_errors").unwrap().clone();
        (found.severity, found.verdict)
    };
    let mut repeated = xid(79, "GPU has fallen off the bus");
    repeated.count = 3;
    assert_eq!(
        severity(vec![repeated]),
        (
            Severity::Critical,
            "XID 79 on 0000:00:09.0 ×3 (GPU has fallen off the bus)".to_string()
        )
    );
    assert_eq!(
        severity(vec![xid(13, "Graphics Exception")]).0,
        Severity::Info
    );
    assert_eq!(
        severity(vec![xid(94, "Contained ECC error")]).0,
        Severity::Warning
    );
    // No kernel log at all: unknown, with how to get one.
    let mut evidence = healthy();
    evidence.kernel = None;
    let line = check_line(&diagnose(&evidence, &Thresholds::default()), "gpu_no_xid").clone();
    assert_eq!(line.status, CheckStatus::Unknown);
    assert!(line.how_to_know.unwrap().contains("journalctl -k"));
}
