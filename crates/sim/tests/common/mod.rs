//! Helpers the simulator's integration tests share, so each test reads a `/metrics` sample the same way
//! (tests/server.rs, faithfulness.rs and scenarios.rs each include this module).

/// The value of the first sample in a `/metrics` text whose line starts with `prefix` (a name, or a name with
/// the start of its labels).
pub fn sample(metrics: &str, prefix: &str) -> f64 {
    metrics
        .lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no sample `{prefix}` in the metrics"))
}
