//! infer-doctor: finds out why an LLM inference service is slow. This binary is glue: it parses the command line,
//! owns the Tokio runtime, runs one room's job and maps the outcome to an exit code.

mod args;
mod bundle;
mod cmd;
mod history;
mod progress;
mod rundir;
mod server_watch;
mod watch_view;

use std::process::ExitCode;

use clap::Parser;

use crate::args::{Cli, Command};

/// Exit codes of DESIGN.md §1.
pub mod exit {
    pub const OK: u8 = 0;
    /// An SLO gate failed.
    pub const GATE_FAILED: u8 = 1;
    pub const USAGE: u8 = 2;
    pub const NOTHING_SUCCEEDED: u8 = 3;
    pub const INTERRUPTED: u8 = 130;
    /// Whoever read stdout has gone (`bench … | head`): 128 + SIGPIPE, as a shell reports any tool SIGPIPE ended.
    pub const BROKEN_PIPE: u8 = 141;
}

/// An error with the exit code it should produce.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub error: anyhow::Error,
}

impl Failure {
    pub fn usage(error: impl Into<anyhow::Error>) -> Failure {
        Failure {
            code: exit::USAGE,
            error: error.into(),
        }
    }
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(error: E) -> Failure {
        Failure {
            code: exit::USAGE,
            error: error.into(),
        }
    }
}

/// Rust ignores SIGPIPE, so `print!` to a pipe whose reader has gone panics on EPIPE. SIGPIPE must stay ignored
/// (a socket written with writev after its peer hung up would raise it and kill a run mid-load), so the panic
/// is what tells that stdout or stderr has no reader: end quietly then. The run directory is written before
/// anything is printed, so it is complete.
fn exit_quietly_when_output_has_no_reader() {
    let broken_pipe =
        std::io::Error::from_raw_os_error(rustix::io::Errno::PIPE.raw_os_error()).to_string();
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map_or("", String::as_str);
        if message.starts_with("failed printing to std") && message.ends_with(&broken_pipe) {
            std::process::exit(exit::BROKEN_PIPE.into());
        }
        report(info);
    }));
}

fn main() -> ExitCode {
    exit_quietly_when_output_has_no_reader();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("infer-doctor")
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(exit::USAGE);
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Bench(args) => cmd::bench::run(args).await,
            Command::Demo(args) => cmd::demo::run(args).await,
            Command::Sim(args) => cmd::sim::run(args).await,
            Command::Metrics(args) => cmd::metrics::run(args).await,
            Command::Logs(args) => cmd::logs::run(&args),
            Command::Diagnose(args) => cmd::diagnose::run(args).await,
            Command::Report(args) => cmd::diagnose::report(&args).await,
            Command::Collect(args) => cmd::collect::run(args).await,
            Command::Plan(args) => cmd::plan::run(&args),
            Command::Trace(args) => cmd::trace::run(&args),
            Command::Compare(args) => cmd::compare::run(&args),
            Command::History(args) => cmd::history::run(&args),
            Command::Export(args) => cmd::export::run(&args),
            Command::Watch(args) => cmd::watch::run(args).await,
        }
    });
    // Request tasks of an interrupted run may still hold sockets; do not wait for them.
    runtime.shutdown_background();
    match result {
        Ok(code) => ExitCode::from(code),
        Err(failure) => {
            eprintln!("error: {:#}", failure.error);
            ExitCode::from(failure.code)
        }
    }
}
