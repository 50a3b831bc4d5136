//! Load from many machines: which requests of one seeded schedule a shard (`bench --shard I/N`) owns, the clock a
//! shard records, and how shards' records become the run one process would have produced (`bench merge`).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::RunAggregate;
use crate::aggregate::{AggregateConfig, RunContext};
use crate::record::RequestRecord;
use crate::summary::{ClientHealth, RunSummary};

/// Shard `index` of `count` (counting from 0): it owns request `k` of the whole schedule when `k mod count ==
/// index`, so N shards together send exactly the requests one process would, with the same prompts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardSpec {
    pub index: u64,
    pub count: u64,
}

impl Default for ShardSpec {
    fn default() -> Self {
        ShardSpec { index: 0, count: 1 }
    }
}

impl fmt::Display for ShardSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

#[derive(Debug, Error, PartialEq)]
pub enum ShardError {
    #[error("--shard `{0}`: expected I/N, shard I of N counting from 0 (e.g. 0/4)")]
    Syntax(String),
    #[error("--shard `{0}`: N must be at least 1")]
    NoShards(String),
    #[error("--shard `{text}`: I counts from 0 and must be below N ({count}), so 0..{last}", last = count - 1)]
    OutOfRange { text: String, count: u64 },
    #[error("{0}")]
    Merge(String),
}

impl FromStr for ShardSpec {
    type Err = ShardError;

    fn from_str(text: &str) -> Result<Self, ShardError> {
        let syntax = || ShardError::Syntax(text.to_string());
        let (i, n) = text.trim().split_once('/').ok_or_else(syntax)?;
        let index: u64 = i.trim().parse().map_err(|_| syntax())?;
        let count: u64 = n.trim().parse().map_err(|_| syntax())?;
        if count == 0 {
            return Err(ShardError::NoShards(text.to_string()));
        }
        if index >= count {
            return Err(ShardError::OutOfRange {
                text: text.to_string(),
                count,
            });
        }
        Ok(ShardSpec { index, count })
    }
}

impl ShardSpec {
    pub fn is_whole(&self) -> bool {
        self.count == 1
    }

    pub fn owns(&self, k: u64) -> bool {
        k % self.count == self.index
    }

    /// The index in the whole schedule of this shard's `p`-th request.
    pub fn nth(&self, p: u64) -> u64 {
        self.index + p * self.count
    }

    /// How many of the whole schedule's first `total` requests this shard owns.
    pub fn owned_below(&self, total: u64) -> u64 {
        total / self.count + u64::from(self.index < total % self.count)
    }

    /// This shard's share of `n` users (or in-flight slots): the shares of all shards add up to `n`.
    pub fn share(&self, n: u64) -> u64 {
        self.owned_below(n)
    }
}

/// What a bench run records in `run.json` so that shards can be put on one clock: its place among the shards, the
/// wall clock at the instant its monotonic clock (every `*_us` of its records) starts, to the microsecond, and its
/// steady window on that clock.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ShardRun {
    pub index: u64,
    pub count: u64,
    /// Unix time in µs of the run clock's zero (for `sim run`: µs on the simulated clock).
    pub started_unix_us: u64,
    /// The steady window, µs on the run clock: first measured send → last measured send (count mode) or the
    /// duration's end.
    pub window_us: (u64, u64),
}

impl ShardRun {
    pub fn spec(&self) -> ShardSpec {
        ShardSpec {
            index: self.index,
            count: self.count,
        }
    }
}

/// One shard's run as read back: `name` (its directory) names it in errors.
pub struct ShardInput {
    pub name: String,
    pub run: ShardRun,
    pub records: Vec<RequestRecord>,
    pub client: ClientHealth,
    pub wall_seconds: f64,
}

/// The run the shards make together, on the earliest shard's clock.
pub struct Merged {
    /// Every shard's records, times shifted onto the common clock, in order of their end.
    pub records: Vec<RequestRecord>,
    pub summary: RunSummary,
    pub run: ShardRun,
    /// Per shard (in shard order): µs its clock started after the earliest shard's.
    pub offsets_us: Vec<u64>,
    /// From the earliest shard's start to the latest shard's end.
    pub wall_seconds: f64,
}

/// Puts shards of one run on the common wall clock and summarises them as one run: records shifted by each shard's
/// start relative to the earliest, histograms and timelines merged, throughput over the union of the steady windows,
/// client resources summed. Refuses a missing or duplicate shard, or shards that disagree on N.
pub fn merge(config: AggregateConfig, mut shards: Vec<ShardInput>) -> Result<Merged, ShardError> {
    let Some(first) = shards.first() else {
        return Err(ShardError::Merge("no shard to merge".into()));
    };
    let count = first.run.count;
    let mut by_index: BTreeMap<u64, &str> = BTreeMap::new();
    for shard in &shards {
        if shard.run.count != count {
            return Err(ShardError::Merge(format!(
                "{} is shard {} of {} but {} is of {count}: shards of different runs",
                shard.name, shard.run.index, shard.run.count, first.name
            )));
        }
        if let Some(other) = by_index.insert(shard.run.index, &shard.name) {
            return Err(ShardError::Merge(format!(
                "shard {}/{count} given twice: {other} and {}",
                shard.run.index, shard.name
            )));
        }
    }
    let missing: Vec<String> = (0..count)
        .filter(|i| !by_index.contains_key(i))
        .map(|i| format!("{i}/{count}"))
        .collect();
    if !missing.is_empty() {
        return Err(ShardError::Merge(format!(
            "shard {} missing: the union of the given {} is not the whole run",
            missing.join(", "),
            shards.len()
        )));
    }
    shards.sort_by_key(|s| s.run.index);
    let origin = shards
        .iter()
        .map(|s| s.run.started_unix_us)
        .min()
        .unwrap_or(0);
    let mut owner: BTreeMap<u64, &str> = BTreeMap::new();
    for shard in &shards {
        for rec in &shard.records {
            if let Some(other) = owner.insert(rec.id, &shard.name) {
                return Err(ShardError::Merge(format!(
                    "request {} is in both {other} and {}: these are not disjoint shards of one run",
                    rec.id, shard.name
                )));
            }
        }
    }
    let offsets_us: Vec<u64> = shards
        .iter()
        .map(|s| s.run.started_unix_us - origin)
        .collect();
    let mut aggregate = RunAggregate::new(config.clone());
    let mut records = Vec::new();
    let mut window = (u64::MAX, 0);
    let mut ctx = RunContext::default();
    let mut wall_end_us = 0u64;
    for (shard, &offset) in shards.iter().zip(&offsets_us) {
        let mut part = RunAggregate::new(config.clone());
        for rec in &shard.records {
            let mut rec = rec.clone();
            shift_times(&mut rec, offset as i64);
            part.add(&rec);
            records.push(rec);
        }
        aggregate.merge(&part);
        window.0 = window.0.min(offset + shard.run.window_us.0);
        window.1 = window.1.max(offset + shard.run.window_us.1);
        wall_end_us = wall_end_us.max(offset + (shard.wall_seconds * 1e6).round() as u64);
        let c = &shard.client;
        ctx.requested_rate = sum_some(ctx.requested_rate, c.requested_rate);
        ctx.requested_concurrency = sum_some(ctx.requested_concurrency, c.requested_concurrency);
        ctx.cpu_seconds += c.cpu_seconds;
        ctx.cores += c.cores;
        ctx.schedule_slips += c.schedule_slips;
        ctx.prompt_wait_s += c.prompt_wait_s;
        ctx.peak_rss_bytes = ctx.peak_rss_bytes.max(c.peak_rss_bytes);
    }
    records.sort_by_key(|r| (r.end_us, r.id));
    window = (window.0.min(window.1), window.1);
    ctx.window_us = window;
    ctx.wall_seconds = wall_end_us as f64 / 1e6;
    ctx.max_concurrency = max_in_flight(&records);
    let mut summary = aggregate.summarize(&ctx);
    summary.client.held_at_limit = shards.iter().any(|s| s.client.held_at_limit);
    summary.client.client_bound = shards.iter().any(|s| s.client.client_bound);
    for shard in shards.iter().filter(|s| s.client.client_bound) {
        summary.warnings.push(format!(
            "shard {}/{count} ({}) was limited by its own client: the merged load is short of what was asked",
            shard.run.index, shard.name
        ));
    }
    Ok(Merged {
        records,
        summary,
        run: ShardRun {
            index: 0,
            count: 1,
            started_unix_us: origin,
            window_us: window,
        },
        offsets_us,
        wall_seconds: ctx.wall_seconds,
    })
}

fn sum_some<T: std::ops::Add<Output = T>>(a: Option<T>, b: Option<T>) -> Option<T> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a + b),
        (a, b) => a.or(b),
    }
}

/// Moves every time of `rec` by `by_us`: positive onto a clock that started that much earlier, negative onto one
/// that started later (never below its zero).
pub fn shift_times(rec: &mut RequestRecord, by_us: i64) {
    let moved = |t: u64| t.saturating_add_signed(by_us);
    for t in [&mut rec.scheduled_us, &mut rec.sent_us, &mut rec.end_us] {
        *t = moved(*t);
    }
    for t in [
        &mut rec.headers_us,
        &mut rec.first_token_us,
        &mut rec.first_content_us,
        &mut rec.last_token_us,
    ]
    .into_iter()
    .flatten()
    {
        *t = moved(*t);
    }
}

/// The most measured requests in flight at once, from their send and end times (an end frees its slot before a
/// send at the same microsecond takes one, as a closed-loop user's next request does).
pub fn max_in_flight(records: &[RequestRecord]) -> u64 {
    let mut events: Vec<(u64, i64)> = records
        .iter()
        .filter(|r| r.measured())
        .flat_map(|r| [(r.sent_us, 1), (r.end_us.max(r.sent_us), -1)])
        .collect();
    events.sort();
    let (mut now, mut peak) = (0i64, 0i64);
    for (_, step) in events {
        now += step;
        peak = peak.max(now);
    }
    peak as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Phase;

    #[test]
    fn shard_specs_parse_and_bad_ones_say_why() {
        assert_eq!(
            "1/3".parse::<ShardSpec>(),
            Ok(ShardSpec { index: 1, count: 3 })
        );
        let err = |t: &str| t.parse::<ShardSpec>().unwrap_err().to_string();
        assert_eq!(err("0/0"), "--shard `0/0`: N must be at least 1");
        assert_eq!(
            err("3/2"),
            "--shard `3/2`: I counts from 0 and must be below N (2), so 0..1"
        );
        assert!(err("x").contains("expected I/N"), "{}", err("x"));
        assert!(err("1/x").contains("expected I/N"));
        assert!(err("-1/2").contains("expected I/N"));
    }

    #[test]
    fn shards_own_every_request_once_and_share_users_exactly() {
        for count in 1..6u64 {
            let shards: Vec<ShardSpec> =
                (0..count).map(|index| ShardSpec { index, count }).collect();
            for total in [0u64, 1, 7, 100] {
                let owned: u64 = shards.iter().map(|s| s.owned_below(total)).sum();
                assert_eq!(owned, total);
                for k in 0..total {
                    assert_eq!(shards.iter().filter(|s| s.owns(k)).count(), 1);
                }
                for s in &shards {
                    let listed: Vec<u64> = (0..s.owned_below(total)).map(|p| s.nth(p)).collect();
                    let expected: Vec<u64> = (0..total).filter(|k| s.owns(*k)).collect();
                    assert_eq!(listed, expected);
                }
            }
        }
    }

    fn record(id: u64, sent_us: u64, end_us: u64) -> RequestRecord {
        RequestRecord {
            id,
            phase: Some(Phase::Measured),
            scheduled_us: sent_us,
            sent_us,
            first_token_us: Some(sent_us + 1_000),
            last_token_us: Some(end_us),
            end_us,
            streamed: true,
            max_tokens: 4,
            usage_output_tokens: Some(4),
            token_events: 4,
            gaps_us: vec![(end_us - sent_us - 1_000) as u32 / 3; 3],
            ..Default::default()
        }
    }

    fn input(
        name: &str,
        index: u64,
        count: u64,
        start: u64,
        records: Vec<RequestRecord>,
    ) -> ShardInput {
        let first = records.iter().map(|r| r.sent_us).min().unwrap_or(0);
        let last = records.iter().map(|r| r.sent_us).max().unwrap_or(0);
        ShardInput {
            name: name.into(),
            run: ShardRun {
                index,
                count,
                started_unix_us: start,
                window_us: (first, last),
            },
            records,
            client: ClientHealth {
                cores: 2,
                cpu_seconds: 0.5,
                ..Default::default()
            },
            wall_seconds: 1.0,
        }
    }

    #[test]
    fn merging_shifts_each_shard_onto_the_earliest_clock() {
        // The whole run: requests every 100 ms, each 50 ms long. Shard 1 started 30 ms after shard 0.
        let whole: Vec<RequestRecord> = (0..10)
            .map(|k| record(k, k * 100_000, k * 100_000 + 50_000))
            .collect();
        let shard = |index: u64, start: u64| {
            let own: Vec<RequestRecord> = whole
                .iter()
                .filter(|r| r.id % 2 == index)
                .map(|r| {
                    let mut r = r.clone();
                    shift_times(&mut r, -(start as i64));
                    r
                })
                .collect();
            input(&format!("dir{index}"), index, 2, 5_000_000 + start, own)
        };
        let merged = merge(
            AggregateConfig::default(),
            vec![shard(1, 30_000), shard(0, 0)],
        )
        .unwrap();
        let mut ids: Vec<RequestRecord> = merged.records.clone();
        ids.sort_by_key(|r| r.id);
        assert_eq!(ids, whole);
        assert_eq!(merged.offsets_us, vec![0, 30_000]);
        assert_eq!(merged.run.window_us, (0, 900_000));
        assert_eq!(merged.run.started_unix_us, 5_000_000);
        assert_eq!(merged.summary.throughput.max_concurrency, 1);
        assert_eq!(
            (
                merged.summary.client.cores,
                merged.summary.client.cpu_seconds
            ),
            (4, 1.0)
        );
        assert_eq!(merged.summary.requests.sent, 10);
    }

    #[test]
    fn missing_duplicate_and_foreign_shards_are_refused_by_name() {
        let err = |shards| match merge(AggregateConfig::default(), shards) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("merged"),
        };
        let a = || input("a", 0, 3, 0, vec![record(0, 0, 10_000)]);
        let b = || input("b", 1, 3, 0, vec![record(1, 0, 10_000)]);
        assert_eq!(
            err(vec![a(), b()]),
            "shard 2/3 missing: the union of the given 2 is not the whole run"
        );
        let again = input("c", 1, 3, 0, vec![record(4, 0, 10_000)]);
        assert_eq!(err(vec![a(), b(), again]), "shard 1/3 given twice: b and c");
        let other = input("d", 1, 2, 0, vec![]);
        assert!(err(vec![a(), other]).contains("d is shard 1 of 2 but a is of 3"));
        let overlapping = input("e", 2, 3, 0, vec![record(0, 0, 10_000)]);
        assert!(err(vec![a(), b(), overlapping]).contains("request 0 is in both a and e"));
    }
}
