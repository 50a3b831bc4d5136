//! One module per subcommand; each turns its arguments into a room's job and returns an exit code.

pub mod bench;
pub mod bench_emit;
pub mod bench_merge;
pub mod collect;
pub mod compare;
pub mod demo;
pub mod diagnose;
pub mod export;
pub mod history;
pub mod logs;
pub mod metrics;
pub(crate) mod output_probes;
pub mod plan;
pub mod selftest;
pub mod sim;
pub mod trace;
pub mod watch;

/// A command's document to `-o FILE`, or to standard output without one.
pub fn write_or_print(path: Option<&std::path::Path>, text: &str) -> Result<(), crate::Failure> {
    match path {
        Some(path) => std::fs::write(path, text)
            .map_err(|e| crate::Failure::usage(anyhow::anyhow!("writing {}: {e}", path.display()))),
        None => {
            print!("{text}");
            Ok(())
        }
    }
}
