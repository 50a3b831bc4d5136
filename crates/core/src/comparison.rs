//! What a comparison of two runs concludes, as plain values: each figure's change with its interval and verdict,
//! the server-side signals that moved, and the `--fail-on` gates. `diagnose` computes it; `report` renders it.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;
use thiserror::Error;

use crate::figures::{Figure, SampleSource, parse_figure};
use crate::resample::Interval;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Better,
    Worse,
    WithinNoise,
    /// A value is missing on one side, or there are no samples to draw an interval from.
    Unknown,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verdict::Better => "better",
            Verdict::Worse => "worse",
            Verdict::WithinNoise => "within noise",
            Verdict::Unknown => "unknown",
        })
    }
}

/// How a figure's change is expressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeUnit {
    /// candidate / baseline − 1.
    Relative,
    /// candidate − baseline, in percentage points (the error rate).
    Points,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FigureChange {
    pub name: &'static str,
    pub label: &'static str,
    pub unit: &'static str,
    pub baseline: Option<f64>,
    pub candidate: Option<f64>,
    pub change: Option<f64>,
    pub change_unit: ChangeUnit,
    pub interval: Option<Interval>,
    pub verdict: Verdict,
    /// Why there is no interval, when there is none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// A server-side signal that moved between the runs, in words.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ServerChange {
    pub signal: &'static str,
    pub baseline: f64,
    pub candidate: f64,
    pub phrase: String,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Comparison {
    pub figures: Vec<FigureChange>,
    /// The server's signals that changed markedly, biggest first: the reason a latency or throughput moved.
    pub server: Vec<ServerChange>,
    /// Why no server-side reason can be given, when it cannot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_note: Option<String>,
    pub gates: Vec<GateResult>,
}

impl Comparison {
    pub fn failed(&self) -> bool {
        self.gates.iter().any(|g| g.failed)
    }

    /// The server-side reason in one clause, e.g. "twice the batch size (8.0 → 16.1), KV usage 40% → 85%".
    pub fn server_reason(&self) -> Option<String> {
        (!self.server.is_empty()).then(|| {
            self.server
                .iter()
                .map(|c| c.phrase.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        })
    }
}

/// A `--fail-on` limit: the compared run fails when `figure` moved past `limit` (a relative change, or
/// percentage points for the error rate) in the limit's direction, and the move is not noise.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Gate {
    pub figure: &'static Figure,
    pub limit: f64,
}

#[derive(Debug, Error, PartialEq)]
#[error("--fail-on `{item}`: {reason} (expected e.g. tpot_p95=+10%,throughput=-5%,error_rate=+1%)")]
pub struct GateParseError {
    pub item: String,
    pub reason: String,
}

/// Parses `tpot_p95=+10%,throughput=-5%`.
pub fn parse_gates(text: &str) -> Result<Vec<Gate>, GateParseError> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::parse)
        .collect()
}

impl FromStr for Gate {
    type Err = GateParseError;

    fn from_str(item: &str) -> Result<Gate, GateParseError> {
        let fail = |reason: String| GateParseError {
            item: item.to_string(),
            reason,
        };
        let (name, limit) = item.split_once('=').ok_or_else(|| fail("no `=`".into()))?;
        let figure = parse_figure(name.trim()).map_err(fail)?;
        let limit = limit.trim();
        let number = limit
            .strip_suffix('%')
            .ok_or_else(|| fail("the limit is a signed percentage, e.g. +10%".into()))?;
        if !number.starts_with(['+', '-']) {
            return Err(fail(
                "the limit needs a sign: + for a rise, - for a fall".into(),
            ));
        }
        let value: f64 = number
            .parse()
            .map_err(|_| fail(format!("`{limit}` is not a number")))?;
        if !value.is_finite() || value == 0.0 {
            return Err(fail("the limit must be a non-zero percentage".into()));
        }
        let limit = match figure.source {
            SampleSource::ErrorShare => value,
            _ => value / 100.0,
        };
        Ok(Gate { figure, limit })
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GateResult {
    pub name: &'static str,
    /// As given: relative (0.1 = +10 %) or percentage points.
    pub limit: f64,
    pub change: Option<f64>,
    pub failed: bool,
    pub reason: String,
}

impl Gate {
    /// Whether the compared run fails this gate, given the figure's change.
    pub fn judge(&self, change: Option<&FigureChange>) -> GateResult {
        let result = |failed: bool, reason: String| GateResult {
            name: self.figure.name,
            limit: self.limit,
            change: change.and_then(|c| c.change),
            failed,
            reason,
        };
        let Some(c) = change.filter(|c| c.change.is_some()) else {
            return result(
                true,
                "no value on one side: the gate cannot pass unchecked".into(),
            );
        };
        let moved = c.change.unwrap_or_default();
        let past = if self.limit > 0.0 {
            moved > self.limit
        } else {
            moved < self.limit
        };
        if !past {
            return result(false, "within the limit".into());
        }
        match c.interval {
            Some(ci) if !ci.excludes_zero() => result(
                false,
                "past the limit, but the interval includes no change: noise".into(),
            ),
            Some(_) => result(true, "past the limit".into()),
            None => result(true, "past the limit (no interval to call it noise)".into()),
        }
    }
}
