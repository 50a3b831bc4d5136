//! `infer-doctor demo`: the whole measurement on a machine with nothing installed: the simulated vLLM server
//! with a known problem on loopback, probed by one user and then by a crowd, as `diagnose` will probe it.

use std::sync::Arc;

use clap::Parser;
use infer_doctor_sim::server::SimServer;
use infer_doctor_sim::text::WordTokenizer;

use crate::args::{Cli, Command, DemoArgs};
use crate::cmd::sim::find_scenario;
use crate::{Failure, exit};

/// A server that is fine for one user and fills its KV cache under load.
const DEFAULT_SCENARIO: &str = "kv-saturated";

pub async fn run(args: DemoArgs) -> Result<u8, Failure> {
    let scenario = find_scenario(args.scenario.as_deref().unwrap_or(DEFAULT_SCENARIO))?;
    let setup = (scenario.setup)();
    let built = setup.build().map_err(Failure::usage)?;
    let capacity = built.plan.kv.tokens();
    let server = SimServer::start(
        built.core,
        built.server,
        Arc::new(WordTokenizer),
        "127.0.0.1:0".parse().expect("loopback address"),
        Arc::new(|_| {}),
    )
    .await?;
    eprintln!(
        "demo: simulated vLLM server on {} — scenario `{}`: {}\n      {} on {}, KV cache {capacity} tokens",
        server.url(),
        scenario.name,
        scenario.reproduces,
        setup.model,
        setup.gpu
    );
    let w = scenario.workload;
    let (input, output) = (w.input_tokens.to_string(), w.output_tokens.to_string());
    let prefix = w.prefix_tokens.to_string();
    let groups = w.prefix_groups.to_string();
    let url = server.url();
    let mut code = exit::OK;
    for (label, concurrency, requests) in [("one user", "1", "5"), ("a crowd of 32", "32", "96")] {
        println!("\n── {label} ──");
        let mut argv = vec!["infer-doctor", "bench", "--url", &url, "--quiet"];
        argv.extend(["--concurrency", concurrency, "--num-requests", requests]);
        argv.extend(["--input-tokens", &input, "--output-tokens", &output]);
        if w.prefix_tokens > 0 {
            argv.extend(["--prefix-tokens", &prefix, "--prefix-groups", &groups]);
        }
        let out = args
            .out
            .as_ref()
            .map(|p| p.join(concurrency).display().to_string());
        if let Some(out) = &out {
            argv.extend(["--out", out]);
        }
        let Command::Bench(bench) = Cli::try_parse_from(argv)?.command else {
            unreachable!("the demo's own command line is a bench command")
        };
        code = code.max(crate::cmd::bench::run(bench).await?);
    }
    println!(
        "\nDiagnosis is not built yet: reading the server's metrics and logs (issue 4) and the playbook (issue 5) \
         will turn the difference between these two runs into findings. `infer-doctor sim --list-scenarios` \
         lists the problems the simulator can show."
    );
    Ok(code)
}
