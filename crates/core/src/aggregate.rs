//! Folds request records into distributions, counts and a timeline. One aggregate per worker thread keeps the
//! hot path free of shared state; the run merges them once and summarises over its steady window.

use std::collections::BTreeMap;

use crate::record::{ErrorClass, RequestError, RequestRecord};
use crate::slo::SloSet;
use crate::stats::LatencyHistogram;
use crate::summary::{
    ClientHealth, ErrorCount, Latencies, PromptTokensAdded, RequestCounts, RunSummary, Throughput,
    TokenAccounting, WarmupCounts,
};
use crate::timeline::Timeline;

/// How a run was driven, which decides what its numbers mean.
#[derive(Clone, Debug, Default)]
pub struct AggregateConfig {
    /// Open loop: headline latencies are measured from the intended send time.
    pub open_loop: bool,
    /// The run asked for exactly `max_tokens` (`--ignore-eos`), so shorter outputs are flagged.
    pub expect_exact_output: bool,
    pub slo: SloSet,
}

#[derive(Clone, Debug, Default)]
struct ErrorTally {
    count: u64,
    example: String,
}

#[derive(Clone, Debug, Default)]
struct Histograms {
    ttft: LatencyHistogram,
    ttfo: LatencyHistogram,
    itl_gap: LatencyHistogram,
    itl_token: LatencyHistogram,
    tpot: LatencyHistogram,
    e2e: LatencyHistogram,
    ttft_from_schedule: LatencyHistogram,
    e2e_from_schedule: LatencyHistogram,
    client_queue: LatencyHistogram,
}

impl Histograms {
    fn merge(&mut self, o: &Histograms) {
        self.ttft.merge(&o.ttft);
        self.ttfo.merge(&o.ttfo);
        self.itl_gap.merge(&o.itl_gap);
        self.itl_token.merge(&o.itl_token);
        self.tpot.merge(&o.tpot);
        self.e2e.merge(&o.e2e);
        self.ttft_from_schedule.merge(&o.ttft_from_schedule);
        self.e2e_from_schedule.merge(&o.e2e_from_schedule);
        self.client_queue.merge(&o.client_queue);
    }
}

/// Counters that only add.
#[derive(Clone, Debug, Default)]
struct Counts {
    sent: u64,
    ok: u64,
    failed: u64,
    interrupted: u64,
    retried: u64,
    warmup: u64,
    warmup_ok: u64,
    warmup_failed: u64,
    warmup_interrupted: u64,
    good: u64,
    input_total: u64,
    output_total: u64,
    max_tokens_total: u64,
    token_events: u64,
    usage_missing: u64,
    usage_vs_events: u64,
    tokenizer_checked: u64,
    usage_vs_tokenizer: u64,
    output_short: u64,
    output_long: u64,
}

impl Counts {
    fn merge(&mut self, o: &Counts) {
        let pairs = [
            (&mut self.sent, o.sent),
            (&mut self.ok, o.ok),
            (&mut self.failed, o.failed),
            (&mut self.interrupted, o.interrupted),
            (&mut self.retried, o.retried),
            (&mut self.warmup, o.warmup),
            (&mut self.warmup_ok, o.warmup_ok),
            (&mut self.warmup_failed, o.warmup_failed),
            (&mut self.warmup_interrupted, o.warmup_interrupted),
            (&mut self.good, o.good),
            (&mut self.input_total, o.input_total),
            (&mut self.output_total, o.output_total),
            (&mut self.max_tokens_total, o.max_tokens_total),
            (&mut self.token_events, o.token_events),
            (&mut self.usage_missing, o.usage_missing),
            (&mut self.usage_vs_events, o.usage_vs_events),
            (&mut self.tokenizer_checked, o.tokenizer_checked),
            (&mut self.usage_vs_tokenizer, o.usage_vs_tokenizer),
            (&mut self.output_short, o.output_short),
            (&mut self.output_long, o.output_long),
        ];
        for (mine, theirs) in pairs {
            *mine += theirs;
        }
    }
}

/// Server-counted prompt tokens minus the tokens the client built, over requests where both are known.
#[derive(Clone, Copy, Debug, Default)]
struct PromptDelta {
    compared: u64,
    sum: i64,
    min: i64,
    max: i64,
}

impl PromptDelta {
    fn add(&mut self, delta: i64) {
        *self = self.merged(&PromptDelta {
            compared: 1,
            sum: delta,
            min: delta,
            max: delta,
        });
    }

    fn merged(&self, o: &PromptDelta) -> PromptDelta {
        match (self.compared, o.compared) {
            (0, _) => *o,
            (_, 0) => *self,
            _ => PromptDelta {
                compared: self.compared + o.compared,
                sum: self.sum + o.sum,
                min: self.min.min(o.min),
                max: self.max.max(o.max),
            },
        }
    }
}

/// Failures by class and HTTP status, each with the first message seen.
type ErrorTallies = BTreeMap<(ErrorClass, Option<u16>), ErrorTally>;

fn tally_error(tallies: &mut ErrorTallies, err: &RequestError) {
    let tally = tallies.entry((err.class, err.status)).or_default();
    if tally.count == 0 {
        tally.example = err.message.clone();
    }
    tally.count += 1;
}

fn merge_tallies(mine: &mut ErrorTallies, theirs: &ErrorTallies) {
    for (key, tally) in theirs {
        let into = mine.entry(*key).or_default();
        if into.count == 0 {
            into.example = tally.example.clone();
        }
        into.count += tally.count;
    }
}

fn error_counts(tallies: &ErrorTallies) -> Vec<ErrorCount> {
    tallies
        .iter()
        .map(|(&(class, status), t)| ErrorCount {
            class,
            status,
            count: t.count,
            example: t.example.clone(),
        })
        .collect()
}

/// Everything a run's summary is computed from.
#[derive(Clone, Debug, Default)]
pub struct RunAggregate {
    config: AggregateConfig,
    counts: Counts,
    prompt_delta: PromptDelta,
    hist: Histograms,
    errors: ErrorTallies,
    warmup_errors: ErrorTallies,
    finish_reasons: BTreeMap<String, u64>,
    pub timeline: Timeline,
}

/// Facts about the run that records do not carry.
#[derive(Clone, Debug, Default)]
pub struct RunContext {
    /// Steady window: load at its target level, warm-up and drain excluded (µs from the run's start).
    pub window_us: (u64, u64),
    pub requested_rate: Option<f64>,
    pub max_concurrency: u64,
    pub schedule_lag: Option<LatencyHistogram>,
    pub cpu_seconds: f64,
    pub wall_seconds: f64,
    pub cores: u32,
    /// The configured in-flight limit, if any; a client that holds requests back for it is not "behind".
    pub in_flight_limit: Option<u64>,
    /// Users of a closed loop.
    pub requested_concurrency: Option<u64>,
    /// Times the pacer slid its schedule after falling too far behind.
    pub schedule_slips: u64,
    /// Seconds a due request waited for the prompt builder.
    pub prompt_wait_s: f64,
    /// The client process's peak resident memory by the run's end (`VmHWM`).
    pub peak_rss_bytes: Option<u64>,
}

/// Largest spread of (server − built) prompt tokens still explained by merges at the template's edges.
const PROMPT_DELTA_SPREAD: i64 = 2;

fn token_counts_disagree(usage: u32, other: u32) -> bool {
    let tolerance = 2.max(usage / 10);
    usage.abs_diff(other) > tolerance
}

impl RunAggregate {
    pub fn new(config: AggregateConfig) -> Self {
        Self {
            config,
            ..Default::default()
        }
    }

    pub fn add(&mut self, rec: &RequestRecord) {
        if !rec.measured() {
            self.add_warmup(rec);
            return;
        }
        let c = &mut self.counts;
        c.sent += 1;
        c.retried += u64::from(rec.retries > 0);
        self.timeline.bin_mut(rec.sent_us).sent += 1;
        self.timeline
            .add_busy(rec.sent_us, rec.end_us.max(rec.sent_us));
        if let Some(err) = &rec.error {
            // Stopped by the client: no outcome, so neither a failure nor a latency.
            if err.class == ErrorClass::Interrupted {
                c.interrupted += 1;
                return;
            }
            c.failed += 1;
            self.timeline.bin_mut(rec.end_us).failed += 1;
            tally_error(&mut self.errors, err);
            return;
        }
        c.ok += 1;
        let good = self.config.slo.request_is_good(rec, self.config.open_loop);
        c.good += u64::from(good);
        let n = rec.output_tokens();
        let input = rec.input_tokens().unwrap_or(0);
        c.input_total += u64::from(input);
        c.output_total += u64::from(n);
        c.max_tokens_total += u64::from(rec.max_tokens);
        c.token_events += u64::from(rec.token_events);
        self.account_tokens(rec, n);
        if let Some(reason) = &rec.finish_reason {
            *self.finish_reasons.entry(reason.clone()).or_default() += 1;
        }

        let done = self.timeline.bin_mut(rec.end_us);
        done.completed_ok += 1;
        done.completed_good += u32::from(good);
        done.input_tokens += u64::from(input);
        for (at, tokens) in rec.token_arrivals() {
            self.timeline.bin_mut(at).output_tokens += tokens;
        }
        if rec.first_token_us.is_none() && n > 0 {
            self.timeline.bin_mut(rec.end_us).output_tokens += f64::from(n);
        }

        let h = &mut self.hist;
        if let Some(v) = rec.ttft_us() {
            h.ttft.record_us(v);
        }
        if let Some(v) = rec.ttfo_us() {
            h.ttfo.record_us(v);
        }
        if let Some(v) = rec.ttft_from_schedule_us() {
            h.ttft_from_schedule.record_us(v);
        }
        if let Some(v) = rec.tpot_us() {
            h.tpot.record_us(v.round() as u64);
        }
        h.e2e.record_us(rec.e2e_us());
        h.e2e_from_schedule.record_us(rec.e2e_from_schedule_us());
        h.client_queue.record_us(rec.client_queue_us());
        for (i, &gap) in rec.gaps_us.iter().enumerate() {
            h.itl_gap.record_us(u64::from(gap));
            h.itl_token
                .record_us((f64::from(gap) / rec.tokens_after_gap(i)).round() as u64);
        }
    }

    /// Outside every statistic, but counted: a failed warm-up is a failure of the server all the same. Its time in
    /// flight is kept apart: the window opens at the first measured send, while other users may still wait on
    /// their warm-up, a request the server holds like any other.
    fn add_warmup(&mut self, rec: &RequestRecord) {
        self.timeline
            .add_warmup_busy(rec.sent_us, rec.end_us.max(rec.sent_us));
        let c = &mut self.counts;
        c.warmup += 1;
        match &rec.error {
            None => c.warmup_ok += 1,
            Some(err) if err.class == ErrorClass::Interrupted => c.warmup_interrupted += 1,
            Some(err) => {
                c.warmup_failed += 1;
                tally_error(&mut self.warmup_errors, err);
            }
        }
    }

    fn account_tokens(&mut self, rec: &RequestRecord, n: u32) {
        if let (Some(server), Some(built)) = (rec.usage_prompt_tokens, rec.input_tokens_built) {
            self.prompt_delta.add(i64::from(server) - i64::from(built));
        }
        let c = &mut self.counts;
        match rec.usage_output_tokens {
            None if rec.streamed => c.usage_missing += 1,
            None => {}
            Some(usage) => {
                let chunk_sum: u32 = rec.event_tokens.iter().sum();
                if rec.token_events > usage.max(1)
                    || (!rec.event_tokens.is_empty() && chunk_sum != usage)
                {
                    c.usage_vs_events += 1;
                }
                if let Some(counted) = rec.tokenizer_output_tokens {
                    c.tokenizer_checked += 1;
                    c.usage_vs_tokenizer += u64::from(token_counts_disagree(usage, counted));
                }
            }
        }
        if n > rec.max_tokens && rec.max_tokens > 0 {
            c.output_long += 1;
        }
        if self.config.expect_exact_output && n < rec.max_tokens {
            c.output_short += 1;
        }
    }

    pub fn merge(&mut self, other: &RunAggregate) {
        self.counts.merge(&other.counts);
        self.prompt_delta = self.prompt_delta.merged(&other.prompt_delta);
        self.hist.merge(&other.hist);
        merge_tallies(&mut self.errors, &other.errors);
        merge_tallies(&mut self.warmup_errors, &other.warmup_errors);
        for (reason, count) in &other.finish_reasons {
            *self.finish_reasons.entry(reason.clone()).or_default() += count;
        }
        self.timeline.merge(&other.timeline);
    }

    pub fn sent(&self) -> u64 {
        self.counts.sent
    }

    pub fn failed(&self) -> u64 {
        self.counts.failed
    }

    pub fn summarize(&self, ctx: &RunContext) -> RunSummary {
        let c = &self.counts;
        let per_request = |total: u64, of: u64| {
            if of == 0 {
                0.0
            } else {
                total as f64 / of as f64
            }
        };
        let requests = RequestCounts {
            sent: c.sent,
            ok: c.ok,
            failed: c.failed,
            interrupted: c.interrupted,
            retried: c.retried,
            warmup: c.warmup,
            error_rate: per_request(c.failed, c.ok + c.failed),
            errors: error_counts(&self.errors),
        };
        let warmup = WarmupCounts {
            sent: c.warmup,
            ok: c.warmup_ok,
            failed: c.warmup_failed,
            interrupted: c.warmup_interrupted,
            errors: error_counts(&self.warmup_errors),
        };
        let h = &self.hist;
        let open_loop = self.config.open_loop;
        let latency = Latencies {
            open_loop,
            ttft: h.ttft.summary(),
            ttfo: h.ttfo.summary(),
            itl_gap: h.itl_gap.summary(),
            itl_token: h.itl_token.summary(),
            tpot: h.tpot.summary(),
            e2e: h.e2e.summary(),
            ttft_from_schedule: h.ttft_from_schedule.summary().filter(|_| open_loop),
            e2e_from_schedule: h.e2e_from_schedule.summary().filter(|_| open_loop),
            client_queue: h.client_queue.summary().filter(|_| open_loop),
        };
        let tokens = TokenAccounting {
            input_total: c.input_total,
            output_total: c.output_total,
            mean_input: per_request(c.input_total, c.ok),
            mean_output: per_request(c.output_total, c.ok),
            mean_max_tokens: per_request(c.max_tokens_total, c.ok),
            usage_missing: c.usage_missing,
            usage_vs_events_mismatches: c.usage_vs_events,
            tokenizer_checked: c.tokenizer_checked,
            usage_vs_tokenizer_mismatches: c.usage_vs_tokenizer,
            output_shorter_than_requested: c.output_short,
            output_longer_than_requested: c.output_long,
            events_per_token: per_request(c.token_events, c.output_total),
            finish_reasons: self.finish_reasons.clone(),
            prompt_tokens_added: (self.prompt_delta.compared > 0).then(|| {
                let d = &self.prompt_delta;
                PromptTokensAdded {
                    compared: d.compared,
                    mean: d.sum as f64 / d.compared as f64,
                    min: d.min,
                    max: d.max,
                }
            }),
        };
        let throughput = self.throughput(ctx);
        let client = self.client_health(ctx);
        let slo = self.config.slo.evaluate(&RunSummary {
            requests: requests.clone(),
            latency: latency.clone(),
            ..Default::default()
        });
        let mut summary = RunSummary {
            requests,
            latency,
            throughput,
            tokens,
            client,
            warmup,
            slo,
            warnings: Vec::new(),
        };
        summary.warnings = warnings(&summary);
        summary
    }

    fn throughput(&self, ctx: &RunContext) -> Throughput {
        let (mut from, mut to) = ctx.window_us;
        let t = &self.timeline;
        let span_end = t.bins.len() as u64 * crate::timeline::BIN_US;
        // With no steady part (everything sent at once), fall back to first send → last completion.
        let steady = to > from && (to - from) * 10 >= span_end.saturating_sub(from).max(1);
        if !steady {
            let first_sent = t.bins.iter().position(|b| b.sent > 0).unwrap_or(0) as u64;
            from = from.max(first_sent * crate::timeline::BIN_US);
            let last_done = t
                .bins
                .iter()
                .rposition(|b| b.completed_ok + b.failed > 0)
                .unwrap_or(0) as u64;
            to = ((last_done + 1) * crate::timeline::BIN_US).max(from + 1);
        }
        let window_s = (to - from) as f64 / 1e6;
        let rate =
            |field: &dyn Fn(&crate::timeline::Bin) -> f64| t.sum_over(from, to, field) / window_s;
        let output_tokens_per_s = rate(&|b| b.output_tokens);
        let input_tokens_per_s = rate(&|b| b.input_tokens as f64);
        let has_slo = !self.config.slo.is_empty();
        Throughput {
            window_start_s: from as f64 / 1e6,
            window_end_s: to as f64 / 1e6,
            window_s,
            steady,
            request_rate: rate(&|b| f64::from(b.completed_ok)),
            output_tokens_per_s,
            input_tokens_per_s,
            total_tokens_per_s: output_tokens_per_s + input_tokens_per_s,
            goodput_rate: has_slo.then(|| rate(&|b| f64::from(b.completed_good))),
            // Over requests with an outcome: one the client stopped was neither good nor bad.
            good_fraction: has_slo.then(|| {
                let judged = self.counts.ok + self.counts.failed;
                if judged == 0 {
                    0.0
                } else {
                    self.counts.good as f64 / judged as f64
                }
            }),
            mean_concurrency: t.sum_over(from, to, |b| b.busy_us as f64) / (to - from) as f64,
            warmup_in_flight: t.sum_over(from, to, |b| b.warmup_busy_us as f64)
                / (to - from) as f64,
            max_concurrency: ctx.max_concurrency,
            send_rate: rate(&|b| f64::from(b.sent)),
        }
    }

    fn client_health(&self, ctx: &RunContext) -> ClientHealth {
        let schedule_lag = ctx
            .schedule_lag
            .as_ref()
            .and_then(LatencyHistogram::summary);
        let cpu_cores_used = if ctx.wall_seconds > 0.0 {
            ctx.cpu_seconds / ctx.wall_seconds
        } else {
            0.0
        };
        let held_at_limit = ctx
            .in_flight_limit
            .is_some_and(|limit| ctx.requested_rate.is_some() && ctx.max_concurrency >= limit);
        // Whether these numbers mean the client was the limit is the playbook's `client.bound` rule to judge,
        // with thresholds the user can set; the summary only carries the facts.
        ClientHealth {
            requested_rate: ctx.requested_rate,
            schedule_lag,
            cpu_seconds: ctx.cpu_seconds,
            cpu_cores_used,
            cores: ctx.cores,
            requested_concurrency: ctx.requested_concurrency,
            held_at_limit,
            schedule_slips: ctx.schedule_slips,
            prompt_wait_s: ctx.prompt_wait_s,
            prompt_wait_share: if ctx.wall_seconds > 0.0 {
                ctx.prompt_wait_s / ctx.wall_seconds
            } else {
                0.0
            },
            peak_rss_bytes: ctx.peak_rss_bytes,
            client_bound: false,
        }
    }
}

/// `3 timeout, 2 http_status 503`: what the failures were, in a warning's words.
fn describe_errors(errors: &[ErrorCount]) -> String {
    errors
        .iter()
        .map(|e| match e.status {
            Some(status) => format!("{} {} {status}", e.count, e.class.as_str()),
            None => format!("{} {}", e.count, e.class.as_str()),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn warmup_warning(s: &RunSummary) -> Option<String> {
    let warm = &s.warmup;
    if warm.failed == 0 {
        return None;
    }
    let reached = match s.client.requested_concurrency {
        Some(users) => format!(
            "; users waiting on them sent no measured requests: the measured window held {:.1} requests in flight \
             on average ({} at most) of the {users} users asked for",
            s.throughput.mean_concurrency, s.throughput.max_concurrency
        ),
        None => String::new(),
    };
    Some(format!(
        "{} of {} warm-up requests failed ({}): they are left out of every number above, which count only the \
         measured requests{reached}",
        warm.failed,
        warm.sent,
        describe_errors(&warm.errors)
    ))
}

fn warnings(s: &RunSummary) -> Vec<String> {
    let mut w = Vec::new();
    w.extend(warmup_warning(s));
    let t = &s.tokens;
    if t.output_shorter_than_requested > 0 {
        w.push(format!(
            "{} of {} requests ended before max_tokens although --ignore-eos was set: the server does not honour \
             ignore_eos/min_tokens, so output lengths and TPOT are not comparable",
            t.output_shorter_than_requested, s.requests.ok
        ));
    }
    if t.output_longer_than_requested > 0 {
        w.push(format!(
            "{} requests returned more tokens than max_tokens",
            t.output_longer_than_requested
        ));
    }
    if t.usage_missing > 0 {
        w.push(format!(
            "{} streamed responses carried no usage: output tokens were counted from events or the tokenizer; \
             servers that support stream_options.include_usage give exact counts",
            t.usage_missing
        ));
    }
    if t.usage_vs_events_mismatches > 0 {
        w.push(format!(
            "{} responses had more token events than usage.completion_tokens (or per-chunk counts that do not add \
             up): the server's usage is suspect",
            t.usage_vs_events_mismatches
        ));
    }
    if t.usage_vs_tokenizer_mismatches > 0 {
        let prompts_agree = t
            .prompt_tokens_added
            .as_ref()
            .is_some_and(|added| added.max - added.min <= PROMPT_DELTA_SPREAD);
        // A tokenizer that counts every prompt as the server does is the served one; then it is the generated
        // text that does not re-encode to the tokens that made it (random weights, stripped special tokens).
        let why = if prompts_agree {
            "the tokenizer counts prompts as the server does, so the generated text does not re-encode to the \
             tokens that made it (random weights or special tokens dropped from text); trust usage"
        } else {
            "is --tokenizer the served model's tokenizer?"
        };
        w.push(format!(
            "{} of {} responses: the local tokenizer's count differs from usage by more than 10%: {why}",
            t.usage_vs_tokenizer_mismatches, t.tokenizer_checked
        ));
    }
    if let Some(added) = &t.prompt_tokens_added {
        // A chat template or BOS adds the same tokens to every prompt; a spread means different tokenizers.
        if added.max - added.min > PROMPT_DELTA_SPREAD {
            w.push(format!(
                "the server counted between {:+} and {:+} prompt tokens more than were built, not a constant: \
                 --tokenizer does not tokenize like the served model, so input lengths are not what was asked",
                added.min, added.max
            ));
        } else if added.mean < 0.0 {
            w.push(format!(
                "the server counted {:.1} fewer prompt tokens than were built: --tokenizer does not tokenize \
                 like the served model",
                -added.mean
            ));
        }
    }
    if !s.throughput.steady && s.requests.sent > 0 {
        w.push(
            "no steady state: every request was in flight at once, so throughput is measured from first send to \
             last completion; use more requests than --concurrency, or --duration"
                .to_string(),
        );
    }
    if s.requests.retried > 0 {
        w.push(format!(
            "{} requests were re-sent on a fresh connection because the server had closed the pooled one \
             (llama.cpp's server closes after every streamed response); no request was lost",
            s.requests.retried
        ));
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Phase, RequestError};
    use crate::timeline::BIN_US;

    /// A successful request sent at `sent_ms`, first token 10 ms later, `n` tokens 5 ms apart.
    fn request(id: u64, sent_ms: u64, n: u32) -> RequestRecord {
        let sent = sent_ms * 1000;
        let first = sent + 10_000;
        let gaps = vec![5_000; n.saturating_sub(1) as usize];
        let last = first + gaps.iter().map(|&g| u64::from(g)).sum::<u64>();
        RequestRecord {
            id,
            phase: Some(Phase::Measured),
            scheduled_us: sent,
            sent_us: sent,
            first_token_us: Some(first),
            first_content_us: Some(first),
            last_token_us: Some(last),
            end_us: last + 100,
            streamed: true,
            max_tokens: n,
            usage_output_tokens: Some(n),
            usage_prompt_tokens: Some(100),
            token_events: n,
            gaps_us: gaps,
            finish_reason: Some("length".into()),
            ..Default::default()
        }
    }

    #[test]
    fn counts_and_latencies_over_a_closed_loop_run() {
        let mut agg = RunAggregate::new(AggregateConfig {
            slo: "ttft_p95=20ms".parse().unwrap(),
            ..Default::default()
        });
        for i in 0..100 {
            agg.add(&request(i, i * 100, 11));
        }
        let mut failed = request(100, 5000, 11);
        failed.error = Some(RequestError {
            class: ErrorClass::HttpStatus,
            status: Some(503),
            message: "busy".into(),
        });
        agg.add(&failed);
        let mut stopped = request(102, 6000, 11);
        stopped.error = Some(RequestError {
            class: ErrorClass::Interrupted,
            status: None,
            message: "run interrupted before the response ended".into(),
        });
        agg.add(&stopped);
        let mut warm = request(101, 0, 11);
        warm.phase = Some(Phase::Warmup);
        agg.add(&warm);

        let s = agg.summarize(&RunContext {
            window_us: (0, 10_000_000),
            max_concurrency: 1,
            ..Default::default()
        });
        assert_eq!(
            (
                s.requests.sent,
                s.requests.ok,
                s.requests.failed,
                s.requests.interrupted,
                s.requests.warmup
            ),
            (102, 100, 1, 1, 1)
        );
        // The interrupted request is no failure of the server: out of the error rate and the error list.
        assert!((s.requests.error_rate - 1.0 / 101.0).abs() < 1e-12);
        assert_eq!(s.requests.errors.len(), 1);
        assert_eq!(s.requests.errors[0].status, Some(503));
        let ttft = s.latency.ttft.unwrap();
        assert_eq!((ttft.p50, ttft.count), (10.0, 100));
        assert_eq!(s.latency.tpot.unwrap().p50, 5.0);
        assert_eq!(s.latency.itl_gap.unwrap().count, 1000);
        assert_eq!(s.latency.e2e.unwrap().p99, 60.0);
        assert!(
            s.latency.ttft_from_schedule.is_none(),
            "closed loop has no schedule"
        );
        // 100 requests of 11 tokens over a 10 s window.
        assert!(
            (s.throughput.request_rate - 10.0).abs() < 0.01,
            "{}",
            s.throughput.request_rate
        );
        assert!((s.throughput.output_tokens_per_s - 110.0).abs() < 0.5);
        assert!((s.throughput.mean_concurrency - (100.0 * 0.0601 + 0.0601) / 10.0).abs() < 0.01);
        // The warm-up request held 60.1 ms of the window too, kept apart from the measured ones.
        assert!((s.throughput.warmup_in_flight - 0.0601 / 10.0).abs() < 1e-9);
        assert_eq!(
            s.throughput.goodput_rate.map(|g| (g * 100.0).round()),
            Some(1000.0)
        );
        assert_eq!(s.throughput.good_fraction, Some(100.0 / 101.0));
        assert!(s.slo[0].pass);
        assert_eq!(s.tokens.finish_reasons["length"], 100);
    }

    #[test]
    fn failed_warmup_requests_are_counted_apart_and_warned_with_the_concurrency_reached() {
        let (mut a, mut b) = (RunAggregate::default(), RunAggregate::default());
        for id in 0..5 {
            let mut warm = request(id, 0, 3);
            warm.phase = Some(Phase::Warmup);
            if id < 3 {
                warm.error = Some(RequestError {
                    class: ErrorClass::Timeout,
                    status: None,
                    message: "no byte within the idle timeout".into(),
                });
            }
            if id % 2 == 0 {
                a.add(&warm)
            } else {
                b.add(&warm)
            }
        }
        for id in 5..25 {
            a.add(&request(id, id * 100, 3));
        }
        a.merge(&b);
        let s = a.summarize(&RunContext {
            window_us: (0, 2_500_000),
            max_concurrency: 2,
            requested_concurrency: Some(8),
            ..Default::default()
        });
        assert_eq!((s.warmup.sent, s.warmup.ok, s.warmup.failed), (5, 2, 3));
        assert_eq!(s.warmup.errors.len(), 1);
        assert_eq!(
            (s.warmup.errors[0].class, s.warmup.errors[0].count),
            (ErrorClass::Timeout, 3)
        );
        // The measured counts stay the measured ones: the warm-up's failures are not the window's.
        assert_eq!((s.requests.failed, s.requests.warmup), (0, 5));
        let warning = s
            .warnings
            .iter()
            .find(|w| w.contains("warm-up"))
            .expect("a warning for the failed warm-up");
        assert!(
            warning.starts_with("3 of 5 warm-up requests failed (3 timeout)"),
            "{warning}"
        );
        assert!(
            warning.contains("(2 at most) of the 8 users asked for"),
            "{warning}"
        );

        // A run.json written before warm-up outcomes were counted still reads.
        let mut old = serde_json::to_value(&s).unwrap();
        old.as_object_mut().unwrap().remove("warmup");
        let read: RunSummary = serde_json::from_value(old).unwrap();
        assert_eq!(read.warmup, WarmupCounts::default());
    }

    #[test]
    fn merging_per_thread_aggregates_equals_one_aggregate() {
        let mut one = RunAggregate::default();
        let (mut a, mut b) = (RunAggregate::default(), RunAggregate::default());
        for i in 0..50 {
            let r = request(i, i * 37, (i % 7 + 1) as u32);
            one.add(&r);
            if i % 2 == 0 { a.add(&r) } else { b.add(&r) }
        }
        a.merge(&b);
        let ctx = RunContext {
            window_us: (0, 2_000_000),
            ..Default::default()
        };
        assert_eq!(a.summarize(&ctx), one.summarize(&ctx));
    }

    #[test]
    fn open_loop_headline_includes_the_client_queue() {
        let mut agg = RunAggregate::new(AggregateConfig {
            open_loop: true,
            ..Default::default()
        });
        let mut r = request(0, 10, 3);
        r.scheduled_us = 0;
        agg.add(&r);
        let s = agg.summarize(&RunContext {
            window_us: (0, BIN_US * 10),
            ..Default::default()
        });
        assert_eq!(s.latency.headline_ttft().unwrap().p50, 20.0);
        assert_eq!(s.latency.ttft.unwrap().p50, 10.0);
        assert_eq!(s.latency.client_queue.unwrap().p50, 10.0);
    }

    #[test]
    fn token_accounting_flags_disagreements() {
        let mut agg = RunAggregate::new(AggregateConfig {
            expect_exact_output: true,
            ..Default::default()
        });
        let mut short = request(0, 0, 5);
        short.max_tokens = 8;
        short.tokenizer_output_tokens = Some(9);
        agg.add(&short);
        let mut no_usage = request(1, 0, 5);
        no_usage.usage_output_tokens = None;
        agg.add(&no_usage);
        let mut lying = request(2, 0, 5);
        lying.usage_output_tokens = Some(3);
        lying.max_tokens = 3;
        agg.add(&lying);
        let s = agg.summarize(&RunContext {
            window_us: (0, 1_000_000),
            ..Default::default()
        });
        let t = &s.tokens;
        assert_eq!(t.output_shorter_than_requested, 1);
        assert_eq!(t.usage_missing, 1);
        assert_eq!(t.usage_vs_events_mismatches, 1);
        assert_eq!(
            (t.tokenizer_checked, t.usage_vs_tokenizer_mismatches),
            (1, 1)
        );
        assert_eq!(t.output_longer_than_requested, 0);
        assert!(s.warnings.iter().any(|w| w.contains("ignore_eos")));
        assert!(s.warnings.iter().any(|w| w.contains("is --tokenizer")));

        // The same mismatch from a tokenizer that counted every prompt as the server did is the output's.
        let mut agg = RunAggregate::default();
        for id in 0..4 {
            let mut r = request(id, 0, 20);
            (r.input_tokens_built, r.usage_prompt_tokens) = (Some(100), Some(101));
            r.tokenizer_output_tokens = Some(if id == 0 { 31 } else { 20 });
            agg.add(&r);
        }
        let s = agg.summarize(&RunContext {
            window_us: (0, 1_000_000),
            ..Default::default()
        });
        let warning = s.warnings.iter().find(|w| w.contains("1 of 4")).unwrap();
        assert!(warning.contains("trust usage"), "{warning}");
    }

    fn summary_of_prompt_counts(pairs: &[(u32, u32)]) -> RunSummary {
        let mut shards = [RunAggregate::default(), RunAggregate::default()];
        for (i, &(built, served)) in pairs.iter().enumerate() {
            let mut rec = request(i as u64, 0, 3);
            rec.input_tokens_built = Some(built);
            rec.usage_prompt_tokens = Some(served);
            shards[i % 2].add(&rec);
        }
        let [mut all, other] = shards;
        all.merge(&other);
        all.summarize(&RunContext {
            window_us: (0, 1_000_000),
            ..Default::default()
        })
    }

    #[test]
    fn a_constant_template_overhead_is_reported_and_a_varying_one_is_a_warning() {
        // A chat template adding 9 tokens (±1 where it merges with the prompt's first token) is expected.
        let s = summary_of_prompt_counts(&[(100, 109), (200, 209), (50, 58), (70, 79)]);
        let added = s.tokens.prompt_tokens_added.clone().unwrap();
        assert_eq!((added.compared, added.min, added.max), (4, 8, 9));
        assert!((added.mean - 8.75).abs() < 1e-9);
        assert!(
            !s.warnings.iter().any(|w| w.contains("prompt tokens")),
            "{:?}",
            s.warnings
        );
        // A different tokenizer: the difference grows with the prompt.
        let s = summary_of_prompt_counts(&[(100, 112), (400, 445)]);
        assert!(
            s.warnings
                .iter()
                .any(|w| w.contains("between +12 and +45 prompt tokens")),
            "{:?}",
            s.warnings
        );
        let s = summary_of_prompt_counts(&[(100, 95), (100, 94)]);
        assert!(
            s.warnings
                .iter()
                .any(|w| w.contains("5.5 fewer prompt tokens")),
            "{:?}",
            s.warnings
        );
        // Nothing built exactly: nothing compared, nothing claimed.
        let s = summary_of_prompt_counts(&[]);
        assert_eq!(s.tokens.prompt_tokens_added, None);
    }
}
