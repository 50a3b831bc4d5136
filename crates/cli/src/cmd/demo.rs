//! `infer-doctor demo`: the whole playbook on a machine with nothing installed: the simulated vLLM server with a
//! known problem on loopback, diagnosed live (one user, then a crowd), the report printed and the HTML written.

use std::io::Write as _;
use std::sync::Arc;

use anyhow::Context;

use clap::Parser;
use infer_doctor_sim::logs::{LogRecord, Pids};
use infer_doctor_sim::server::SimServer;
use infer_doctor_sim::text::WordTokenizer;

use crate::args::{Cli, Command, DemoArgs};
use crate::cmd::sim::find_scenario;
use crate::{Failure, exit};

/// A server that is fine for one user and fills its KV cache under load.
const DEFAULT_SCENARIO: &str = "kv-saturated";

pub async fn run(args: DemoArgs) -> Result<u8, Failure> {
    let scenario = find_scenario(args.scenario.as_deref().unwrap_or(DEFAULT_SCENARIO))?;
    if scenario.fleet.is_some() {
        // The demo probes one server; a fleet's finding needs every replica's metrics.
        return Err(Failure::usage(anyhow::anyhow!(
            "--scenario {}: a fleet scenario; run `infer-doctor sim run --scenario {0} --diagnose`, or serve it with \
             `infer-doctor sim --scenario {0}` and diagnose through a Prometheus that scrapes its replicas",
            scenario.name
        )));
    }
    let setup = (scenario.setup)();
    let out = match &args.out {
        Some(dir) => dir.clone(),
        None => std::env::temp_dir().join(format!("infer-doctor-demo-{}", std::process::id())),
    };
    // The server's own log goes where `diagnose` reads a bundle's logs, as an operator would hand it over.
    let logs = out.join("logs");
    std::fs::create_dir_all(&logs)
        .with_context(|| format!("creating {}", logs.display()))
        .map_err(Failure::usage)?;
    let log_path = logs.join("vllm.log");
    std::fs::write(
        &log_path,
        crate::cmd::sim::startup_log_text(&setup).map_err(Failure::usage)?,
    )
    .with_context(|| format!("writing {}", log_path.display()))
    .map_err(Failure::usage)?;
    let log_file = std::sync::Mutex::new(
        std::fs::OpenOptions::new()
            .append(true)
            .open(&log_path)
            .with_context(|| format!("opening {}", log_path.display()))
            .map_err(Failure::usage)?,
    );
    let pids = Pids {
        api_server: 1,
        engine_core: 2,
        worker: 3,
    };
    let built = setup.build().map_err(Failure::usage)?;
    let server = SimServer::start(
        built.core,
        built.server,
        Arc::new(WordTokenizer),
        "127.0.0.1:0".parse().expect("loopback address"),
        Arc::new(move |record: LogRecord| {
            let unix = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64());
            if let Ok(mut file) = log_file.lock() {
                let _ = writeln!(file, "{}", record.render(&pids, unix));
            }
        }),
    )
    .await?;
    eprintln!(
        "demo: simulated vLLM server on {} — scenario `{}`: {}",
        server.url(),
        scenario.name,
        scenario.reproduces,
    );
    let w = scenario.workload;
    let url = server.url();
    let mut argv: Vec<String> = ["infer-doctor", "diagnose", "--url", &url, "--budget", "40s"]
        .map(String::from)
        .to_vec();
    let mut flag = |name: &str, value: String| {
        argv.push(name.into());
        argv.push(value);
    };
    flag("--concurrency", w.users.to_string());
    flag("--input-tokens", w.input_tokens.to_string());
    flag("--output-tokens", w.output_tokens.to_string());
    if w.prefix_tokens > 0 {
        flag("--prefix-tokens", w.prefix_tokens.to_string());
        flag("--prefix-groups", w.prefix_groups.to_string());
    }
    // The demo knows the simulated hardware, so single-user latency can be judged against its floor.
    flag("--model-config", setup.model.clone());
    flag("--gpu", setup.gpu.clone());
    flag(
        "--tensor-parallel-size",
        setup.tensor_parallel_size.to_string(),
    );
    flag("--out", out.display().to_string());
    // A simulated server is no baseline of the user's service.
    argv.push("--no-history".into());
    let Command::Diagnose(diagnose) = Cli::try_parse_from(argv)?.command else {
        unreachable!("the demo's own command line is a diagnose command")
    };
    let code = crate::cmd::diagnose::run(diagnose).await?;
    println!(
        "HTML report: {}\n(`infer-doctor sim --list-scenarios` lists the other problems the simulator can show)",
        out.join("report.html").display()
    );
    // Finding the scenario's problem is the demo working, not failing.
    Ok(if code == exit::GATE_FAILED {
        exit::OK
    } else {
        code
    })
}
