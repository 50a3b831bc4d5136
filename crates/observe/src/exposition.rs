//! Our own Prometheus text format and OpenMetrics parser: names with `:`, escaped labels, NaN and ±Inf,
//! timestamps and exemplars; a malformed line is reported with its number and the rest of the scrape is kept.

use std::borrow::Cow;

/// A family's declared type (`# TYPE`); `Untyped` when none was declared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricType {
    Counter,
    Gauge,
    Histogram,
    GaugeHistogram,
    Summary,
    Info,
    StateSet,
    Untyped,
}

/// One sample line. Borrowed from the scraped text where possible; label values with escapes are owned.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample<'a> {
    /// The full sample name, e.g. `vllm:e2e_request_latency_seconds_bucket`.
    pub name: &'a str,
    pub labels: Vec<(&'a str, Cow<'a, str>)>,
    pub value: f64,
    pub timestamp_ms: Option<i64>,
}

/// A family: the samples under one `# TYPE`/`# HELP` name (a histogram's `_bucket`, `_sum`, `_count` included).
#[derive(Clone, Debug, PartialEq)]
pub struct Family<'a> {
    pub name: &'a str,
    pub kind: MetricType,
    pub help: Option<Cow<'a, str>>,
    pub unit: Option<&'a str>,
    pub samples: Vec<Sample<'a>>,
}

/// A line that could not be read, and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct LineError {
    /// 1-based.
    pub line: usize,
    pub message: String,
}

/// A parsed scrape: every family in the order first seen, and the lines that were skipped.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Scrape<'a> {
    pub families: Vec<Family<'a>>,
    pub errors: Vec<LineError>,
}
