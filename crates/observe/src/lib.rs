//! The `observe` room: everything infer-doctor learns from the server's own words — Prometheus metrics in any
//! dialect, window arithmetic exactly as PromQL does it, scraping, and engine logs — as canonical signals. GPU and host facts are the `host` room's.

pub mod config;
pub mod dialect;
pub mod exposition;
pub mod llamacpp;
pub mod logs;
pub mod prometheus;
pub mod server;
pub mod window;
