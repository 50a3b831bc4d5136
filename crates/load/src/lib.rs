//! The client side of the measurement: sends OpenAI-compatible requests on a closed- or open-loop schedule,
//! times every streamed token on the monotonic clock, and turns each request into a `RequestRecord`.

pub mod cancel;
pub mod cpu;
pub mod determinism;
mod exchange;
pub mod http;
pub mod openai;
pub mod probe;
pub mod recorder;
pub mod run;
pub mod schedule;
pub mod scrape;
pub mod sse;
pub mod sweep;
pub mod target;
pub mod template;
#[cfg(feature = "tls")]
mod tls;

pub use cancel::Cancel;
pub use run::{LiveCounters, LoadShape, RunOutput, RunSpec, Stop, Warmup, run};
pub use schedule::Arrival;
pub use target::{ApiKey, Endpoint, Target, Trust};

use thiserror::Error;

#[derive(Debug, Error)]
pub enum LoadError {
    #[error("--url `{url}`: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("the API key (--api-key or OPENAI_API_KEY): {0}")]
    BadApiKey(String),
    #[error("{0}")]
    Spec(String),
    #[error("writing {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
}
