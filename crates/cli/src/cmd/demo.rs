//! `infer-doctor demo`: the whole measurement on a machine with nothing installed. Until the simulator and the
//! playbook exist it benchmarks a built-in test server on loopback and says plainly that diagnosis comes later.

use std::time::Duration;

use infer_doctor_testkit::{MockConfig, MockServer};

use clap::Parser;

use crate::args::{Cli, Command, DemoArgs};
use crate::{Failure, exit};

pub async fn run(args: DemoArgs) -> Result<u8, Failure> {
    if let Some(scenario) = &args.scenario {
        eprintln!(
            "note: scenario `{scenario}` needs the simulated vLLM server, which is not built yet; \
             running the healthy built-in test server instead"
        );
    }
    let server = MockServer::start(MockConfig {
        model: "demo-model".into(),
        ttft: Duration::from_millis(40),
        itl: Duration::from_millis(8),
        record_truth: false,
        ..Default::default()
    })
    .await?;
    eprintln!(
        "demo: a built-in OpenAI-compatible test server is listening on {}",
        server.url()
    );
    let url = server.url();
    let mut argv = vec![
        "infer-doctor",
        "bench",
        "--url",
        &url,
        "--concurrency",
        "8",
        "--num-requests",
        "80",
    ];
    argv.extend([
        "--warmup",
        "8",
        "--input-tokens",
        "256",
        "--output-tokens",
        "64",
    ]);
    let out = args.out.as_ref().map(|p| p.display().to_string());
    if let Some(out) = &out {
        argv.extend(["--out", out]);
    }
    let Command::Bench(bench) = Cli::try_parse_from(argv)?.command else {
        unreachable!("the demo's own command line is a bench command")
    };
    let code = crate::cmd::bench::run(bench).await?;
    println!(
        "\nDiagnosis is not built yet: the simulated vLLM server (issue 3), server metrics (issue 4) and the \
         playbook (issue 5) will turn these numbers into findings. What you see above is the client-side \
         measurement that diagnosis will stand on."
    );
    Ok(if code == exit::OK { exit::OK } else { code })
}
