//! `infer-doctor sim`: the simulated vLLM V1 server, served over HTTP with vLLM's start-up and stats log lines
//! on stderr, or `sim run` to push a workload through the same engine on a discrete-event clock.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, anyhow};
use infer_doctor_core::stats::LatencyHistogram;
use infer_doctor_core::{RequestRecord, ServerReadings};
use infer_doctor_observe::{dialect, exposition, server};
use infer_doctor_prompt::dist::LengthDist;
use infer_doctor_sim::des::{self, Arrivals, Outcome};
use infer_doctor_sim::engine::{FinishReason, NewRequest};
use infer_doctor_sim::fleet::{self, Disaggregation, Fleet, FleetSetup, KvLink, RouterKind};
use infer_doctor_sim::logs::{self, LogRecord, Pids};
use infer_doctor_sim::metrics::with_label;
use infer_doctor_sim::scenario;
use infer_doctor_sim::server::{
    BatchVariant, FleetMember, LISTEN_BACKLOG, LogSink, PickerSetup, SimServer, StopModel,
};
use infer_doctor_sim::setup::SimSetup;
use infer_doctor_sim::text::WordTokenizer;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, Exp};

use crate::args::{Format, SimArgs, SimCommand, SimRunArgs, SimSetupArgs};
use crate::cmd::bench::length;
use crate::{Failure, exit};

pub async fn run(args: Box<SimArgs>) -> Result<u8, Failure> {
    if args.list_scenarios {
        print_scenarios();
        return Ok(exit::OK);
    }
    match &args.run {
        Some(SimCommand::Run(run_args)) => run_des(run_args),
        None => serve(&args).await,
    }
}

fn print_scenarios() {
    println!("{:<22} {:<32} reproduces", "scenario", "finding");
    for s in scenario::all() {
        println!(
            "{:<22} {:<32} {}",
            s.name,
            s.finding.unwrap_or("(none: no warning expected)"),
            s.reproduces
        );
    }
}

/// A scenario by name, or a usage error listing the known ones.
pub fn find_scenario(name: &str) -> Result<&'static scenario::Scenario, Failure> {
    scenario::find(name).ok_or_else(|| {
        let known: Vec<&str> = scenario::all().iter().map(|s| s.name).collect();
        Failure::usage(anyhow!(
            "--scenario `{name}`: unknown; one of {}",
            known.join(", ")
        ))
    })
}

/// The scenario's setup with every flag the user gave laid over it.
pub fn setup_from(args: &SimSetupArgs) -> Result<SimSetup, Failure> {
    let preset = find_scenario(args.scenario.as_deref().unwrap_or("healthy"))?;
    let mut setup = (preset.setup)();
    if let Some(model) = &args.model {
        setup.model = model.clone();
        setup.served_model_name = args.served_model_name.clone().unwrap_or_else(|| {
            let stem = Path::new(model)
                .file_stem()
                .map_or(model.clone(), |s| s.to_string_lossy().into_owned());
            format!("sim-{stem}")
        });
    }
    if let Some(name) = &args.served_model_name {
        setup.served_model_name = name.clone();
    }
    let overrides = [
        (args.max_num_seqs.map(Some), &mut setup.max_num_seqs),
        (
            args.max_num_batched_tokens.map(Some),
            &mut setup.max_num_batched_tokens,
        ),
        (
            args.num_gpu_blocks_override.map(Some),
            &mut setup.num_gpu_blocks_override,
        ),
    ];
    for (given, field) in overrides {
        if let Some(value) = given {
            *field = value;
        }
    }
    if let Some(gpu) = &args.gpu {
        setup.gpu = gpu.clone();
    }
    setup.tensor_parallel_size = args
        .tensor_parallel_size
        .unwrap_or(setup.tensor_parallel_size);
    setup.pcie |= args.pcie;
    setup.gpu_memory_utilization = args
        .gpu_memory_utilization
        .unwrap_or(setup.gpu_memory_utilization);
    setup.max_model_len = args.max_model_len.unwrap_or(setup.max_model_len);
    setup.enable_prefix_caching &= !args.no_enable_prefix_caching;
    setup.enable_chunked_prefill &= !args.no_enable_chunked_prefill;
    setup.jitter_sigma = args.jitter.unwrap_or(setup.jitter_sigma);
    setup.seed = args.seed.unwrap_or(setup.seed);
    let f = &mut setup.faults;
    let fractions = [
        ("--error-rate", args.error_rate, &mut f.error_rate),
        (
            "--disconnect-rate",
            args.disconnect_rate,
            &mut f.disconnect_rate,
        ),
        ("--stall-rate", args.stall_rate, &mut f.stall_rate),
    ];
    for (flag, given, field) in fractions {
        if let Some(rate) = given {
            if !(0.0..=1.0).contains(&rate) {
                return Err(Failure::usage(anyhow!(
                    "{flag} {rate}: must be between 0 and 1"
                )));
            }
            *field = rate;
        }
    }
    if let Some(status) = args.error_status {
        if !(400..=599).contains(&status) {
            return Err(Failure::usage(anyhow!(
                "--error-status {status}: must be an HTTP error status (400–599)"
            )));
        }
        f.error_status = status;
    }
    f.cut_after = args.cut_after.unwrap_or(f.cut_after);
    f.gateway_limit = args.gateway_limit.or(f.gateway_limit);
    f.loading_seconds = args.loading_seconds.unwrap_or(f.loading_seconds);
    setup.cold_seconds = args.cold_seconds.unwrap_or(setup.cold_seconds);
    setup.cold_factor = args.cold_factor.unwrap_or(setup.cold_factor);
    setup.throttle = args.throttle.unwrap_or(setup.throttle);
    setup.degrade_per_10k_tokens = args
        .degrade_per_10k_tokens
        .unwrap_or(setup.degrade_per_10k_tokens);
    if args.never_stop {
        setup.stop = StopModel::Never;
    }
    if let (Some(above), Some(at)) = (args.batch_variant_above, args.batch_variant_at) {
        if at == 0 {
            return Err(Failure::usage(anyhow!(
                "--batch-variant-at 0: tokens count from 1"
            )));
        }
        setup.faults.batch_variant = Some(BatchVariant { above, at });
    }
    setup.faults.chat_template_without_generation_prompt |=
        args.chat_template_without_generation_prompt;
    Ok(setup)
}

/// The fleet the scenario and the flags ask for, or `None` for one server (one replica is one server, as it
/// always was).
pub fn fleet_from(args: &SimSetupArgs, setup: &SimSetup) -> Result<Option<FleetSetup>, Failure> {
    let preset = find_scenario(args.scenario.as_deref().unwrap_or("healthy"))?;
    if args.replicas == Some(0) {
        return Err(Failure::usage(anyhow!(
            "--replicas 0: a fleet needs at least one replica"
        )));
    }
    let mut fleet = match (preset.fleet, args.replicas) {
        (Some(build), _) => build(setup),
        (None, Some(n)) => FleetSetup::uniform(setup, n, RouterKind::RoundRobin),
        (None, None) => FleetSetup::uniform(setup, 1, RouterKind::RoundRobin),
    };
    if let Some(n) = args.replicas {
        let mut more = FleetSetup::uniform(setup, n, fleet.router).replicas;
        fleet.replicas.truncate(n as usize);
        let have = fleet.replicas.len();
        fleet.replicas.extend(more.drain(have..));
    }
    if let Some(router) = &args.router {
        // clap allows only the names RouterKind knows.
        fleet.router = RouterKind::parse(router)
            .ok_or_else(|| Failure::usage(anyhow!("--router `{router}`: unknown")))?;
    }
    if let Some(k) = args.prefill_replicas {
        fleet.disaggregation = Some(Disaggregation {
            prefill: k,
            link: fleet.disaggregation.map_or(KvLink::RDMA, |d| d.link),
        });
    }
    if fleet.disaggregation.is_none()
        && (args.kv_transfer_gbps.is_some() || args.kv_transfer_failure_rate.is_some())
    {
        return Err(Failure::usage(anyhow!(
            "--kv-transfer-gbps and --kv-transfer-failure-rate need a prefill/decode split (--prefill-replicas K)"
        )));
    }
    if let Some(d) = fleet.disaggregation.as_mut() {
        if let Some(gbps) = args.kv_transfer_gbps {
            if !(gbps.is_finite() && gbps > 0.0) {
                return Err(Failure::usage(anyhow!(
                    "--kv-transfer-gbps {gbps}: must be a positive bandwidth"
                )));
            }
            d.link.gbps = gbps;
        }
        if let Some(rate) = args.kv_transfer_failure_rate {
            if !(0.0..=1.0).contains(&rate) {
                return Err(Failure::usage(anyhow!(
                    "--kv-transfer-failure-rate {rate}: must be between 0 and 1"
                )));
            }
            d.link.failure_rate = rate;
        }
        if d.prefill == 0 || d.prefill as usize >= fleet.replicas.len() {
            return Err(Failure::usage(anyhow!(
                "--prefill-replicas {}: leaves no prefill or no decode replica among --replicas {}",
                d.prefill,
                fleet.replicas.len()
            )));
        }
    }
    Ok((fleet.replicas.len() > 1).then_some(fleet))
}

fn run_des(args: &SimRunArgs) -> Result<u8, Failure> {
    let setup = setup_from(&args.setup)?;
    let fleet = fleet_from(&args.setup, &setup)?;
    if args.diagnose {
        let scenario = find_scenario(args.setup.scenario.as_deref().unwrap_or("healthy"))?;
        let users = args.concurrency.unwrap_or(scenario.workload.users);
        let evidence = simulated_evidence(&setup, fleet.as_ref(), scenario.workload, users)
            .map_err(Failure::usage)?;
        let gathered = crate::bundle::Gathered {
            evidence,
            ..Default::default()
        };
        let document = crate::cmd::diagnose::document(
            &gathered,
            &infer_doctor_diagnose::Thresholds::default(),
            None,
        );
        match args.format {
            Format::Json => println!(
                "{}",
                serde_json::to_string_pretty(&document)
                    .map_err(|e| Failure::usage(anyhow::Error::from(e)))?
            ),
            Format::Term => print!("{}", infer_doctor_report::diagnosis::render_term(&document)),
        }
        return Ok(exit::OK);
    }
    let mut built = setup.build().map_err(Failure::usage)?;
    let input = length("--input-tokens", &args.input_tokens)?;
    let output = length("--output-tokens", &args.output_tokens)?;
    let arrivals = match (args.concurrency, args.request_rate) {
        (_, Some(rate)) if rate > 0.0 && rate.is_finite() => {
            let mut rng = StdRng::seed_from_u64(setup.seed ^ 0xa771);
            let gap = Exp::new(rate).map_err(|e| Failure::usage(anyhow!("--request-rate: {e}")))?;
            let mut t = 0.0;
            Arrivals::Open {
                times: (0..args.num_requests)
                    .map(|_| {
                        t += gap.sample(&mut rng);
                        t
                    })
                    .collect(),
            }
        }
        (_, Some(rate)) => {
            return Err(Failure::usage(anyhow!(
                "--request-rate {rate}: must be a positive number of requests per second"
            )));
        }
        (users, None) => Arrivals::Closed {
            users: users.unwrap_or(64).max(1),
            requests: args.num_requests,
        },
    };
    if let Arrivals::Open { times } = &arrivals
        && let Some(last) = times.last().filter(|t| **t > SIM_RUN_HORIZON_SECONDS)
    {
        return Err(Failure::usage(anyhow!(
            "--request-rate {}: the last of {} requests would arrive after {last:.0} s of simulated time, past the \
             {:.0}-day limit; raise the rate or lower --num-requests",
            args.request_rate.unwrap_or_default(),
            args.num_requests,
            SIM_RUN_HORIZON_SECONDS / 86_400.0
        )));
    }
    let requests = workload(
        &setup,
        args,
        &input,
        &output,
        built.scheduler.block_size,
        built.scheduler.max_model_len,
    );
    let cpu_before = infer_doctor_load::cpu::process_cpu_seconds();
    let wall = std::time::Instant::now();
    // With --out, the client's view is written too, so it needs every token's time and the server's scrapes.
    let mut scrapes = Vec::new();
    let keep = args.out.is_some();
    let (outcome, metrics) = match &fleet {
        None => {
            let outcome = des::run_observed(
                &mut built.core,
                &arrivals,
                requests,
                1.0,
                SIM_RUN_HORIZON_SECONDS,
                keep,
                |t, core| {
                    if keep {
                        scrape(&mut scrapes, t, core);
                    }
                },
            );
            (outcome, built.core.metrics.render())
        }
        Some(spec) => {
            let mut fleet = spec.build().map_err(Failure::usage)?;
            let outcome = fleet::run(
                &mut fleet,
                &arrivals,
                requests,
                1.0,
                SIM_RUN_HORIZON_SECONDS,
                keep,
                |t, fleet| {
                    if keep && let Some(readings) = fleet_readings(fleet) {
                        scrapes.push((t, readings));
                    }
                },
            )
            .map_err(Failure::usage)?;
            (outcome, fleet_exposition(&fleet))
        }
    };
    if outcome.simulated_seconds > SIM_RUN_HORIZON_SECONDS {
        return Err(Failure::usage(too_slow(&setup, args, &outcome)));
    }
    let cpu = infer_doctor_load::cpu::process_cpu_seconds() - cpu_before;
    if let Some(dir) = &args.out {
        write_outputs(dir, &outcome, &metrics).map_err(Failure::usage)?;
        write_client_view(&dir.join("client"), &setup, args, &outcome, &scrapes)
            .map_err(Failure::usage)?;
    }
    let report = Report::of(&outcome);
    match args.format {
        Format::Json => println!(
            "{}",
            serde_json::json!({
                "setup": setup,
                "fleet": fleet,
                "requests": outcome.finished.len(),
                "steps": outcome.steps,
                "simulated_seconds": outcome.simulated_seconds,
                "cpu_seconds": cpu,
                "request_throughput": report.request_rate,
                "output_throughput": report.output_rate,
                "ttft_ms": report.ttft.summary(),
                "itl_ms": report.itl.summary(),
                "e2e_ms": report.e2e.summary(),
                "preempted_requests": report.preempted,
                "finish_reasons": {"stop": outcome.count(FinishReason::Stop), "length": outcome.count(FinishReason::Length)},
            })
        ),
        Format::Term => report.print(&outcome, cpu, wall.elapsed().as_secs_f64()),
    }
    Ok(exit::OK)
}

/// The most simulated time `sim run` covers: a week, sampled each second, holds a few tens of MB. Extreme fault
/// settings (a throttle of 1e12) or sparse arrivals would otherwise run for simulated years, a sample a second.
const SIM_RUN_HORIZON_SECONDS: f64 = 7.0 * 24.0 * 3600.0;

/// Why a run passed the horizon, naming the settings that stretch simulated time.
fn too_slow(setup: &SimSetup, args: &SimRunArgs, outcome: &Outcome) -> anyhow::Error {
    let mut causes = Vec::new();
    if setup.throttle != 1.0 {
        causes.push(format!("--throttle {}", setup.throttle));
    }
    if setup.cold_seconds > 0.0 && setup.cold_factor != 1.0 {
        causes.push(format!(
            "--cold-factor {} for --cold-seconds {}",
            setup.cold_factor, setup.cold_seconds
        ));
    }
    if setup.degrade_per_10k_tokens > 0.0 {
        causes.push(format!(
            "--degrade-per-10k-tokens {}",
            setup.degrade_per_10k_tokens
        ));
    }
    if let Some(rate) = args.request_rate {
        causes.push(format!("--request-rate {rate}"));
    }
    let causes = if causes.is_empty() {
        "the model, GPU and workload".to_string()
    } else {
        causes.join(", ")
    };
    anyhow!(
        "the simulation passed {:.0} days of simulated time with {} of {} requests finished: {causes} stretch it \
         too far; use milder settings or fewer requests",
        SIM_RUN_HORIZON_SECONDS / 86_400.0,
        outcome.finished.len(),
        args.num_requests
    )
}

/// The i-th request: lengths drawn from the flags' distributions, prompts sharing prefixes by group.
fn workload(
    setup: &SimSetup,
    args: &SimRunArgs,
    input: &LengthDist,
    output: &LengthDist,
    block_size: u32,
    max_model_len: u32,
) -> impl FnMut(u64) -> NewRequest {
    let mut rng = StdRng::seed_from_u64(setup.seed);
    let (prefix, groups, ignore_eos) = (
        args.prefix_tokens,
        args.prefix_groups.max(1),
        args.ignore_eos,
    );
    let stop = setup.stop.clone();
    move |id| {
        let prompt = (prefix + input.sample(&mut rng)).clamp(1, max_model_len - 1);
        let max_tokens = output.sample(&mut rng).clamp(1, max_model_len - prompt);
        let stop_after = if ignore_eos {
            None
        } else {
            stop.sample(&mut rng)
        };
        des::synthetic_request(
            id,
            prompt,
            (prefix, groups),
            max_tokens,
            stop_after,
            block_size,
        )
    }
}

/// The simulated server's `/metrics` read at simulated time `t`, as a scraper beside a client would.
fn scrape(
    scrapes: &mut Vec<(f64, ServerReadings)>,
    t: f64,
    core: &infer_doctor_sim::core::SimCore,
) {
    let text = core.metrics.render();
    if let Ok(readings) = dialect::read(&exposition::parse(&text), None, "simulator") {
        scrapes.push((t, readings));
    }
}

/// Every replica that is up, its `/metrics` labelled with its pod, in one body: what a Prometheus scraping the
/// fleet with the replicas' own labels (`honor_labels`) holds, and what the router's `/metrics` serves.
pub fn fleet_exposition(fleet: &Fleet) -> String {
    fleet
        .replicas
        .iter()
        .filter(|r| r.up)
        .map(|r| with_label(&r.core().metrics.render(), "pod", &r.spec.pod))
        .collect()
}

/// The fleet's server readings at one moment: every replica up, summed as one server's (shares averaged).
fn fleet_readings(fleet: &Fleet) -> Option<ServerReadings> {
    let text = fleet_exposition(fleet);
    dialect::read(&exposition::parse(&text), None, "simulator").ok()
}

/// The run as a client beside the simulated server would have recorded it: a bench run directory (`run.json`,
/// `requests.jsonl`) on the discrete-event clock, which `compare` and `diagnose --bundle` read, so what-if runs
/// are compared with the same statistics as real ones, free of this machine's timing noise.
fn write_client_view(
    dir: &Path,
    setup: &SimSetup,
    args: &SimRunArgs,
    outcome: &Outcome,
    scrapes: &[(f64, ServerReadings)],
) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let records: Vec<RequestRecord> = outcome
        .finished
        .iter()
        .map(|f| client_record(f, outcome.token_times.get(&f.id)))
        .collect();
    let (records, shard) = shard_view(records, args.shard.unwrap_or_default());
    let mut summary = crate::bundle::summarize_requests(&records).unwrap_or_default();
    summary.throughput.max_concurrency = infer_doctor_core::shard::max_in_flight(&records);
    let mut lines = String::new();
    for record in &records {
        lines += &serde_json::to_string(record)?;
        lines.push('\n');
    }
    let path = dir.join("requests.jsonl");
    std::fs::write(&path, lines).with_context(|| format!("writing {}", path.display()))?;
    let shape = match (args.concurrency, args.request_rate) {
        (_, Some(rate)) => format!("open loop {rate} req/s, {} requests", args.num_requests),
        (users, None) => format!(
            "closed loop {} users, {} requests",
            users.unwrap_or(64),
            args.num_requests
        ),
    };
    let document = infer_doctor_report::RunDocument {
        schema_version: infer_doctor_report::SCHEMA_VERSION,
        tool: infer_doctor_report::RunDocument::tool(),
        command_line: crate::rundir::redacted_command_line(),
        started_at: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        wall_seconds: outcome.simulated_seconds,
        interrupted: false,
        target: serde_json::json!({
            "url": format!("sim://{}", args.setup.scenario.as_deref().unwrap_or("healthy")),
            "model_ids": [setup.served_model_name],
        }),
        config: serde_json::json!({
            "model": setup.served_model_name,
            "endpoint": "completions",
            "stream": true,
            "ignore_eos": args.ignore_eos,
            "shape": shape,
            "input_tokens": args.input_tokens,
            "output_tokens": args.output_tokens,
            "prefix_tokens": args.prefix_tokens,
            "prefix_groups": args.prefix_groups,
            "clock": "discrete-event (simulated seconds)",
            "seed": setup.seed,
            "shards": shard.count,
        }),
        workload: serde_json::Value::Null,
        host: serde_json::Value::Null,
        summary,
        sweep: None,
        server: server::summarize(scrapes),
        shard: None,
        merged_from: Vec::new(),
        formulas: infer_doctor_report::RunDocument::formulas(),
    };
    let document = infer_doctor_report::RunDocument {
        shard: Some(shard),
        ..document
    };
    crate::rundir::write(dir, &document)
}

/// What `bench --shard I/N` would have recorded of this run: the requests it owns (id k when k mod N = I), on a
/// clock of its own. Shard I's clock starts at its first request less the schedule's lead before request 0 (so the
/// shard holding the run's first request starts with the simulation), and `started_unix_us` says where that is on
/// the simulated clock, as a real shard's says where its start is on the wall clock.
fn shard_view(
    records: Vec<RequestRecord>,
    shard: infer_doctor_core::shard::ShardSpec,
) -> (Vec<RequestRecord>, infer_doctor_core::shard::ShardRun) {
    let lead = records.iter().map(|r| r.scheduled_us).min().unwrap_or(0);
    let mut own: Vec<RequestRecord> = records.into_iter().filter(|r| shard.owns(r.id)).collect();
    let start = own
        .iter()
        .map(|r| r.scheduled_us)
        .min()
        .map_or(0, |first| first - lead);
    for r in &mut own {
        infer_doctor_core::shard::shift_times(r, -(start as i64));
    }
    let first = own.iter().map(|r| r.sent_us).min().unwrap_or(0);
    let last = own.iter().map(|r| r.end_us).max().unwrap_or(first);
    let run = infer_doctor_core::shard::ShardRun {
        index: shard.index,
        count: shard.count,
        started_unix_us: start,
        // The steady window `summarize_requests` takes: first send to last end.
        window_us: (first, last.max(first + 1)),
    };
    (own, run)
}

fn write_outputs(dir: &Path, outcome: &Outcome, metrics: &str) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating --out {}", dir.display()))?;
    let lines = |name: &str, items: &mut dyn Iterator<Item = serde_json::Result<String>>| {
        let path = dir.join(name);
        let mut file = std::io::BufWriter::new(
            std::fs::File::create(&path).with_context(|| format!("writing {}", path.display()))?,
        );
        for item in items {
            writeln!(file, "{}", item?)?;
        }
        file.flush()
            .with_context(|| format!("writing {}", path.display()))
    };
    lines(
        "requests.jsonl",
        &mut outcome.finished.iter().map(serde_json::to_string),
    )?;
    lines(
        "series.jsonl",
        &mut outcome.series.iter().map(serde_json::to_string),
    )?;
    let path = dir.join("metrics.prom");
    std::fs::write(&path, metrics).with_context(|| format!("writing {}", path.display()))
}

/// Client-view latencies of a simulated run.
struct Report {
    ttft: LatencyHistogram,
    itl: LatencyHistogram,
    e2e: LatencyHistogram,
    request_rate: f64,
    output_rate: f64,
    preempted: usize,
}

impl Report {
    fn of(outcome: &Outcome) -> Report {
        let us = |s: f64| (s * 1e6).round().max(0.0) as u64;
        let (mut ttft, mut itl, mut e2e) = (
            LatencyHistogram::new(),
            LatencyHistogram::new(),
            LatencyHistogram::new(),
        );
        let mut tokens = 0u64;
        for f in &outcome.finished {
            let t = &f.times;
            tokens += u64::from(f.generated);
            let (Some(first), Some(last)) = (t.first_token, t.last_token) else {
                continue;
            };
            ttft.record_us(us(first - t.arrived));
            e2e.record_us(us(last - t.arrived));
            if f.generated > 1 {
                itl.record_us_n(
                    us((last - first) / f64::from(f.generated - 1)),
                    u64::from(f.generated - 1),
                );
            }
        }
        let seconds = outcome.simulated_seconds.max(f64::MIN_POSITIVE);
        Report {
            ttft,
            itl,
            e2e,
            request_rate: outcome.finished.len() as f64 / seconds,
            output_rate: tokens as f64 / seconds,
            preempted: outcome
                .finished
                .iter()
                .filter(|f| f.preemptions > 0)
                .count(),
        }
    }

    fn print(&self, outcome: &Outcome, cpu: f64, wall: f64) {
        println!(
            "simulated {} requests in {:.1} s of server time ({} engine steps; {:.2} s CPU, {:.2} s wall)",
            outcome.finished.len(),
            outcome.simulated_seconds,
            outcome.steps,
            cpu,
            wall
        );
        println!(
            "throughput: {:.2} req/s, {:.0} output tok/s; {} requests preempted at least once; finished by stop {}, by length {}",
            self.request_rate,
            self.output_rate,
            self.preempted,
            outcome.count(FinishReason::Stop),
            outcome.count(FinishReason::Length)
        );
        println!(
            "{:<6} {:>10} {:>10} {:>10} {:>10}",
            "ms", "p50", "p90", "p99", "mean"
        );
        for (name, h) in [("TTFT", &self.ttft), ("ITL", &self.itl), ("E2E", &self.e2e)] {
            if let Some(s) = h.summary() {
                println!(
                    "{name:<6} {:>10.2} {:>10.2} {:>10.2} {:>10.2}",
                    s.p50, s.p90, s.p99, s.mean
                );
            }
        }
    }
}

/// Where `sim` listens.
pub fn listen_addr(args: &SimArgs) -> Result<SocketAddr, Failure> {
    format!("{}:{}", args.host, args.port)
        .parse::<SocketAddr>()
        .or_else(|_| format!("[{}]:{}", args.host, args.port).parse())
        .map_err(|_| Failure::usage(anyhow!("--host `{}`: not an IP address", args.host)))
}

/// The kernel's cap on any listen backlog (Linux), when it can be read.
fn listen_backlog_cap() -> Option<u32> {
    std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Serves the simulated vLLM server until Ctrl-C, logging like vLLM on stderr.
async fn serve(args: &SimArgs) -> Result<u8, Failure> {
    let setup = setup_from(&args.setup)?;
    let addr = listen_addr(args)?;
    let mut built = setup.build().map_err(Failure::usage)?;
    built.server.trace = args.trace.clone();
    // vLLM runs the API server, the engine core and a worker as separate processes.
    let pid = std::process::id();
    let pids = Pids {
        api_server: pid,
        engine_core: pid + 1,
        worker: pid + 2,
    };
    let print: LogSink = Arc::new(move |record: LogRecord| {
        let unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        eprintln!("{}", record.render(&pids, unix));
    });
    for record in built.startup_log(&setup, &args.host, addr.port()) {
        print(record);
    }
    if let Some(fleet) = fleet_from(&args.setup, &setup)? {
        return serve_fleet(args, &fleet, addr, print).await;
    }
    let router_flag = [
        ("--scheduling-delay", args.scheduling_delay.is_some()),
        ("--flow-control-limit", args.flow_control_limit.is_some()),
    ]
    .into_iter()
    .find_map(|(flag, given)| given.then_some(flag));
    if let Some(flag) = router_flag {
        return Err(Failure::usage(anyhow!(
            "{flag}: it sets the fleet router's endpoint picker; simulate a fleet with --replicas N"
        )));
    }
    let server = SimServer::start(
        built.core,
        built.server.clone(),
        Arc::new(WordTokenizer),
        addr,
        print.clone(),
    )
    .await
    .with_context(|| format!("starting the simulated server on {addr}"))
    .map_err(Failure::usage)?;
    if let Some(cap) = listen_backlog_cap()
        && cap < LISTEN_BACKLOG
    {
        eprintln!(
            "warning: net.core.somaxconn is {cap}: the kernel holds at most {cap} connections waiting to be \
             accepted, not {LISTEN_BACKLOG}; clients past that connecting at once wait a second or more for SYN \
             retries (sysctl -w net.core.somaxconn={LISTEN_BACKLOG})"
        );
    }
    print(logs::server_started(&args.host, server.addr.port()));
    println!("{}", server.url());
    tokio::signal::ctrl_c()
        .await
        .map_err(|e| Failure::usage(anyhow::Error::from(e)))?;
    Ok(exit::INTERRUPTED)
}

/// One probe of a simulated server or fleet: the client's records, the server's scrapes and, for a fleet, each
/// replica's own scrapes and whether it answered each one (with its restarts so far).
#[derive(Default)]
struct Probe {
    records: Vec<RequestRecord>,
    scrapes: Vec<(f64, ServerReadings)>,
    pods: BTreeMap<String, Vec<(f64, ServerReadings)>>,
    health: BTreeMap<String, Vec<(f64, bool, u32)>>,
}

impl Probe {
    /// Each replica's window and health over the steady part of the run, as a Prometheus scraping each one
    /// (`up`, `resets()`) would report them.
    fn fleet_view(
        &self,
    ) -> (
        BTreeMap<String, infer_doctor_core::signals::ServerWindow>,
        BTreeMap<String, infer_doctor_core::ReplicaHealth>,
    ) {
        let steady_from = crate::bundle::steady_scrapes(&self.scrapes, &self.records)
            .first()
            .map_or(0.0, |(t, _)| *t);
        let mut pods = BTreeMap::new();
        let mut health = BTreeMap::new();
        for (pod, scrapes) in &self.pods {
            if let Some(window) =
                server::summarize(&crate::bundle::steady_scrapes(scrapes, &self.records))
            {
                pods.insert(pod.clone(), window);
            }
            let seen: Vec<&(f64, bool, u32)> = self.health[pod]
                .iter()
                .filter(|(t, _, _)| *t >= steady_from)
                .collect();
            let (Some(first), Some(last)) = (seen.first(), seen.last()) else {
                continue;
            };
            let up = seen.iter().filter(|(_, up, _)| *up).count() as f64 / seen.len() as f64;
            health.insert(
                pod.clone(),
                infer_doctor_core::ReplicaHealth {
                    up_share: Some(up),
                    restarts: Some(f64::from(last.2 - first.2)),
                },
            );
        }
        (pods, health)
    }
}

/// Serves a fleet until Ctrl-C: the router's URL first on stdout, then one `POD URL` line per replica.
async fn serve_fleet(
    args: &SimArgs,
    fleet: &FleetSetup,
    addr: SocketAddr,
    print: LogSink,
) -> Result<u8, Failure> {
    if args.trace.is_some() {
        return Err(Failure::usage(anyhow!(
            "--trace records one server's requests; it does not apply with --replicas"
        )));
    }
    if fleet.disaggregation.is_some() {
        return Err(Failure::usage(anyhow!(
            "--prefill-replicas: the prefill/decode split is simulated by `sim run` (the discrete-event clock) only, \
             not over HTTP yet"
        )));
    }
    if args.flow_control_limit == Some(0) {
        return Err(Failure::usage(anyhow!(
            "--flow-control-limit 0: the router would let no request through; give at least 1"
        )));
    }
    let mut members = Vec::new();
    for spec in &fleet.replicas {
        let built = spec.setup.build().map_err(Failure::usage)?;
        let outage = match spec.outage {
            Some(o) => Some((o, spec.setup.build().map_err(Failure::usage)?.core)),
            None => None,
        };
        members.push(FleetMember {
            pod: spec.pod.clone(),
            core: built.core,
            config: built.server,
            outage,
        });
    }
    let (router, replicas) = SimServer::start_fleet(
        members,
        fleet.router,
        PickerSetup {
            scheduling_delay: args.scheduling_delay.unwrap_or_default(),
            flow_control_limit: args.flow_control_limit,
        },
        Arc::new(WordTokenizer),
        addr,
        print.clone(),
    )
    .await
    .with_context(|| format!("starting the simulated fleet on {addr}"))
    .map_err(Failure::usage)?;
    print(logs::server_started(&args.host, router.addr.port()));
    println!("{}", router.url());
    for (spec, replica) in fleet.replicas.iter().zip(&replicas) {
        println!("{} {}", spec.pod, replica.url());
    }
    tokio::signal::ctrl_c()
        .await
        .map_err(|e| Failure::usage(anyhow::Error::from(e)))?;
    Ok(exit::INTERRUPTED)
}

/// The evidence `diagnose` would gather from this server (or, with `fleet`, through its router with a Prometheus
/// scraping every replica), gathered on the discrete-event clock: a single-user probe, then `users` users sending
/// three requests each while `/metrics` is scraped every half second.
pub fn simulated_evidence(
    setup: &SimSetup,
    fleet: Option<&FleetSetup>,
    workload: scenario::Workload,
    users: u32,
) -> anyhow::Result<infer_doctor_core::Evidence> {
    let probe = |users: u32, requests: u64| -> anyhow::Result<Probe> {
        let block_size = setup.build()?.scheduler.block_size;
        let mut rng = StdRng::seed_from_u64(setup.seed);
        let stop = setup.stop.clone();
        let prompt = workload.prefix_tokens + workload.input_tokens;
        let request = |id| {
            des::synthetic_request(
                id,
                prompt,
                (workload.prefix_tokens, workload.prefix_groups),
                workload.output_tokens,
                stop.sample(&mut rng),
                block_size,
            )
        };
        let arrivals = Arrivals::Closed { users, requests };
        let mut probe = Probe::default();
        // A live probe is bounded in time too.
        let (every, horizon) = (0.5, 120.0);
        let outcome = match fleet {
            None => {
                let mut built = setup.build()?;
                des::run_observed(
                    &mut built.core,
                    &arrivals,
                    request,
                    every,
                    horizon,
                    true,
                    |t, core| scrape(&mut probe.scrapes, t, core),
                )
            }
            Some(spec) => {
                let mut fleet = spec.build()?;
                fleet::run(
                    &mut fleet,
                    &arrivals,
                    request,
                    every,
                    horizon,
                    true,
                    |t, fleet| {
                        if let Some(readings) = fleet_readings(fleet) {
                            probe.scrapes.push((t, readings));
                        }
                        for r in &fleet.replicas {
                            let pod = &r.spec.pod;
                            probe
                                .health
                                .entry(pod.clone())
                                .or_default()
                                .push((t, r.up, r.restarts));
                            if r.up {
                                scrape(probe.pods.entry(pod.clone()).or_default(), t, r.core());
                            }
                        }
                    },
                )?
            }
        };
        probe.records = outcome
            .finished
            .iter()
            .map(|f| client_record(f, outcome.token_times.get(&f.id)))
            .collect();
        if users > 1 {
            // The first wave is the live probe's warm-up too.
            for r in probe.records.iter_mut().filter(|r| r.id < u64::from(users)) {
                r.phase = Some(infer_doctor_core::Phase::Warmup);
            }
        }
        Ok(probe)
    };
    let single = probe(1, 5)?;
    let log = startup_log_text(setup)?;
    let loaded = probe(users, 3 * u64::from(users))?;
    let (pods, pod_health) = loaded.fleet_view();
    Ok(infer_doctor_core::Evidence {
        single_user: crate::bundle::summarize_requests(&single.records),
        client: crate::bundle::summarize_requests(&loaded.records),
        server: server::summarize(&crate::bundle::steady_scrapes(
            &loaded.scrapes,
            &loaded.records,
        )),
        scrapes: loaded.scrapes,
        requests: loaded.records,
        pods,
        pod_health,
        hardware: Some({
            let built = setup.build()?;
            infer_doctor_plan::hardware_facts(&built.model, &built.gpu, setup.tensor_parallel_size)?
        }),
        workload: Some(infer_doctor_core::WorkloadFacts {
            input_tokens: f64::from(workload.prefix_tokens + workload.input_tokens),
            output_tokens: f64::from(workload.output_tokens),
            concurrency: u64::from(users),
            prefix_tokens: Some(f64::from(workload.prefix_tokens)),
        }),
        shared_prefixes: Some(workload.prefix_tokens > 0),
        // One replica's log does not describe a fleet; a Prometheus reading of one carries none either.
        log: fleet
            .is_none()
            .then(|| infer_doctor_observe::logs::parse_log(&log).facts())
            .flatten(),
        ..Default::default()
    })
}

/// The simulated server's start-up log as vLLM would print it: what `--log` gives a diagnosis.
pub fn startup_log_text(setup: &SimSetup) -> anyhow::Result<String> {
    let built = setup.build()?;
    let pids = Pids {
        api_server: 1,
        engine_core: 2,
        worker: 3,
    };
    let unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    Ok(built
        .startup_log(setup, "127.0.0.1", 8000)
        .iter()
        .map(|record| record.render(&pids, unix) + "\n")
        .collect())
}

/// What a streaming client would have recorded for a simulated request (µs from the run's start).
fn client_record(
    f: &infer_doctor_sim::engine::Finished,
    tokens: Option<&Vec<f64>>,
) -> RequestRecord {
    let us = |s: f64| (s * 1e6).round().max(0.0) as u64;
    let t = &f.times;
    let gaps = tokens
        .map(|times| {
            times
                .windows(2)
                .map(|w| ((w[1] - w[0]) * 1e6).round() as u32)
                .collect()
        })
        .unwrap_or_default();
    RequestRecord {
        id: f.id,
        phase: Some(infer_doctor_core::Phase::Measured),
        scheduled_us: us(t.arrived),
        sent_us: us(t.arrived),
        first_token_us: t.first_token.map(us),
        first_content_us: t.first_token.map(us),
        last_token_us: t.last_token.map(us),
        end_us: us(t.last_token.unwrap_or(t.arrived)),
        streamed: true,
        max_tokens: f.max_tokens,
        usage_prompt_tokens: Some(f.prompt_tokens),
        usage_output_tokens: Some(f.generated),
        token_events: f.generated,
        finish_reason: Some(f.reason.label().to_string()),
        gaps_us: gaps,
        ..Default::default()
    }
}
