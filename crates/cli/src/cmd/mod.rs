//! One module per subcommand; each turns its arguments into a room's job and returns an exit code.

pub mod bench;
pub mod collect;
pub mod compare;
pub mod demo;
pub mod diagnose;
pub mod export;
pub mod history;
pub mod logs;
pub mod metrics;
pub mod plan;
pub mod selftest;
pub mod sim;
pub mod trace;
pub mod watch;
