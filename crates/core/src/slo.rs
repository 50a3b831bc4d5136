//! Service-level objectives: parsed from `--slo ttft_p95=500ms,tpot_p95=50ms,error_rate=1%`, checked per request
//! for goodput and on the run's distributions for the pass/fail gate.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::record::RequestRecord;
use crate::summary::RunSummary;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SloMetric {
    Ttft,
    Ttfo,
    Tpot,
    Itl,
    E2e,
    ErrorRate,
}

impl SloMetric {
    fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "ttft" => SloMetric::Ttft,
            "ttfo" => SloMetric::Ttfo,
            "tpot" => SloMetric::Tpot,
            "itl" => SloMetric::Itl,
            "e2e" | "e2el" => SloMetric::E2e,
            "error_rate" | "errors" => SloMetric::ErrorRate,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SloMetric::Ttft => "ttft",
            SloMetric::Ttfo => "ttfo",
            SloMetric::Tpot => "tpot",
            SloMetric::Itl => "itl",
            SloMetric::E2e => "e2e",
            SloMetric::ErrorRate => "error_rate",
        }
    }
}

/// One objective: `stat` of `metric` must not exceed `threshold` (ms for latencies, a fraction for error rate).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Slo {
    pub metric: SloMetric,
    /// `p50`, `p90`, `p95`, `p99`, `p999`, `mean` or `max`; empty for error rate.
    pub stat: String,
    pub threshold: f64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SloSet(pub Vec<Slo>);

#[derive(Debug, Error, PartialEq)]
#[error(
    "--slo `{item}`: {reason} (expected e.g. ttft_p95=500ms,tpot_p95=50ms,e2e_p99=10s,error_rate=1%)"
)]
pub struct SloParseError {
    pub item: String,
    pub reason: String,
}

/// The verdict on one objective after a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SloResult {
    pub name: String,
    pub threshold: f64,
    pub observed: Option<f64>,
    pub pass: bool,
}

fn parse_duration_ms(text: &str) -> Option<f64> {
    let (number, scale) = if let Some(n) = text.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix("us").or_else(|| text.strip_suffix("µs")) {
        (n, 0.001)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1000.0)
    } else {
        (text, 1.0)
    };
    number
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v >= 0.0)
        .map(|v| v * scale)
}

fn parse_fraction(text: &str) -> Option<f64> {
    let value = match text.strip_suffix('%') {
        Some(pct) => pct.trim().parse::<f64>().ok()? / 100.0,
        None => text.trim().parse::<f64>().ok()?,
    };
    (0.0..=1.0).contains(&value).then_some(value)
}

impl FromStr for SloSet {
    type Err = SloParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut slos = Vec::new();
        for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let err = |reason: &str| SloParseError {
                item: item.to_string(),
                reason: reason.to_string(),
            };
            let (key, value) = item.split_once('=').ok_or_else(|| err("missing `=`"))?;
            let key = key.trim();
            if let Some(metric) = SloMetric::parse(key) {
                if metric != SloMetric::ErrorRate {
                    return Err(err("name a statistic, e.g. ttft_p95"));
                }
                let threshold = parse_fraction(value)
                    .ok_or_else(|| err("error rate must be like 1% or 0.01"))?;
                slos.push(Slo {
                    metric,
                    stat: String::new(),
                    threshold,
                });
                continue;
            }
            let (name, stat) = key
                .rsplit_once('_')
                .ok_or_else(|| err("unknown objective"))?;
            let metric = SloMetric::parse(name)
                .ok_or_else(|| err("unknown metric (ttft, ttfo, tpot, itl, e2e)"))?;
            if !matches!(
                stat,
                "p50" | "p90" | "p95" | "p99" | "p999" | "mean" | "max"
            ) {
                return Err(err(
                    "unknown statistic (p50, p90, p95, p99, p999, mean, max)",
                ));
            }
            let threshold = parse_duration_ms(value.trim())
                .ok_or_else(|| err("threshold must be like 500ms or 2s"))?;
            slos.push(Slo {
                metric,
                stat: stat.to_string(),
                threshold,
            });
        }
        Ok(SloSet(slos))
    }
}

impl fmt::Display for Slo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.metric {
            SloMetric::ErrorRate => write!(f, "error_rate<={}%", self.threshold * 100.0),
            m => write!(f, "{}_{}<={}ms", m.as_str(), self.stat, self.threshold),
        }
    }
}

impl SloSet {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Goodput's test: a request is good when it succeeded and each of its own TTFT, TTFO, TPOT and E2E is within
    /// every latency objective (ITL is judged on the distribution only). `from_schedule` selects queue-inclusive
    /// TTFT/E2E, the headline of open-loop runs.
    pub fn request_is_good(&self, rec: &RequestRecord, from_schedule: bool) -> bool {
        if !rec.ok() {
            return false;
        }
        self.0.iter().all(|slo| {
            let value_ms = match slo.metric {
                SloMetric::Ttft if from_schedule => {
                    rec.ttft_from_schedule_us().map(|v| v as f64 / 1000.0)
                }
                SloMetric::Ttft => rec.ttft_us().map(|v| v as f64 / 1000.0),
                SloMetric::Ttfo => rec.ttfo_us().map(|v| v as f64 / 1000.0),
                SloMetric::Tpot => rec.tpot_us().map(|v| v / 1000.0),
                SloMetric::E2e if from_schedule => Some(rec.e2e_from_schedule_us() as f64 / 1000.0),
                SloMetric::E2e => Some(rec.e2e_us() as f64 / 1000.0),
                SloMetric::Itl | SloMetric::ErrorRate => None,
            };
            value_ms.is_none_or(|v| v <= slo.threshold)
        })
    }

    /// The gate: each objective against the run's distributions (headline TTFT/E2E, which are queue-inclusive in
    /// open-loop runs).
    pub fn evaluate(&self, summary: &RunSummary) -> Vec<SloResult> {
        self.0
            .iter()
            .map(|slo| {
                let observed = match slo.metric {
                    SloMetric::ErrorRate => Some(summary.requests.error_rate),
                    metric => {
                        let latency = &summary.latency;
                        let dist = match metric {
                            SloMetric::Ttft => latency.headline_ttft(),
                            SloMetric::Ttfo => latency.ttfo.as_ref(),
                            SloMetric::Tpot => latency.tpot.as_ref(),
                            SloMetric::Itl => latency.itl_gap.as_ref(),
                            _ => latency.headline_e2e(),
                        };
                        dist.and_then(|d| d.stat(&slo.stat))
                    }
                };
                SloResult {
                    name: slo.to_string(),
                    threshold: slo.threshold,
                    observed,
                    pass: observed.is_some_and(|v| v <= slo.threshold),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_form() {
        let set: SloSet = "ttft_p95=500ms, tpot_p95=0.05s,e2e_p99=2s,error_rate=1%"
            .parse()
            .unwrap();
        assert_eq!(set.0.len(), 4);
        assert_eq!(
            set.0[0],
            Slo {
                metric: SloMetric::Ttft,
                stat: "p95".into(),
                threshold: 500.0
            }
        );
        assert_eq!(set.0[1].threshold, 50.0);
        assert_eq!(set.0[2].threshold, 2000.0);
        assert_eq!(
            set.0[3],
            Slo {
                metric: SloMetric::ErrorRate,
                stat: String::new(),
                threshold: 0.01
            }
        );
    }

    #[test]
    fn rejects_bad_items_with_the_item_named() {
        for bad in [
            "ttft=5ms",
            "ttft_p42=5ms",
            "foo_p95=1ms",
            "ttft_p95",
            "error_rate=150%",
            "ttft_p95=fast",
        ] {
            let err = bad.parse::<SloSet>().unwrap_err();
            assert_eq!(err.item, bad, "{err}");
        }
    }

    #[test]
    fn failed_requests_are_never_good() {
        let set: SloSet = "ttft_p95=1s".parse().unwrap();
        let mut rec = RequestRecord {
            first_token_us: Some(10),
            ..Default::default()
        };
        assert!(set.request_is_good(&rec, false));
        rec.error = Some(crate::RequestError {
            class: crate::ErrorClass::Timeout,
            status: None,
            message: "idle".into(),
        });
        assert!(!set.request_is_good(&rec, false));
    }
}
