//! One request as the client saw it: the line written to `requests.jsonl` and the input of every statistic.
//! Times are microseconds on the run's monotonic clock, counted from the run's start.

use serde::{Deserialize, Serialize};

/// Whether a request counts toward the statistics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Sent during warm-up: recorded, never summarised.
    Warmup,
    Measured,
}

/// Why a request failed. Every failed request has exactly one class.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// TCP connect refused, unreachable host, DNS failure.
    Connect,
    /// Connect timeout, no byte within the idle timeout, or the whole-request limit.
    Timeout,
    /// The server answered with a non-2xx status.
    HttpStatus,
    /// The connection dropped after the response started, or the stream ended before a finish.
    StreamBroken,
    /// An SSE event that is not JSON, or a line over the size limit.
    MalformedSse,
    /// The stream carried an error object instead of tokens.
    ServerErrorEvent,
    /// Stopped by the client while in flight: the run was interrupted (Ctrl-C, a sweep point ending) or a probe's
    /// budget ran out. Not a failure of the server.
    Interrupted,
}

impl ErrorClass {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Connect => "connect",
            ErrorClass::Timeout => "timeout",
            ErrorClass::HttpStatus => "http_status",
            ErrorClass::StreamBroken => "stream_broken",
            ErrorClass::MalformedSse => "malformed_sse",
            ErrorClass::ServerErrorEvent => "server_error_event",
            ErrorClass::Interrupted => "interrupted",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RequestError {
    pub class: ErrorClass,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    pub message: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RequestRecord {
    pub id: u64,
    pub phase: Option<Phase>,
    /// Intended send time from the schedule (`t_int`); equal to `sent_us` in closed loop.
    pub scheduled_us: u64,
    /// Actual send time (`t_send`).
    pub sent_us: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers_us: Option<u64>,
    /// First token-bearing event (`t1`): text, reasoning or a tool call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_token_us: Option<u64>,
    /// First event carrying answer content (differs from `t1` for reasoning models).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_content_us: Option<u64>,
    /// Last token-bearing event (`tN`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_token_us: Option<u64>,
    /// When the response was fully read or the request failed.
    pub end_us: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<RequestError>,
    /// Sends repeated on a fresh connection because the pooled one was closed before any byte went out.
    #[serde(default)]
    pub retries: u32,
    pub streamed: bool,
    pub max_tokens: u32,
    /// Prompt tokens as built and verified by the local tokenizer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_tokens_built: Option<u32>,
    /// `usage.prompt_tokens` from the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage_prompt_tokens: Option<u32>,
    /// `usage.completion_tokens` from the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage_output_tokens: Option<u32>,
    /// Output tokens counted by re-encoding the generated text with the local tokenizer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokenizer_output_tokens: Option<u32>,
    /// Token-bearing events received.
    pub token_events: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finish_reason: Option<String>,
    /// Gap before each token-bearing event after the first, in µs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gaps_us: Vec<u32>,
    /// Tokens carried by each token-bearing event, when the server reports it per chunk
    /// (`continuous_usage_stats`); empty otherwise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub event_tokens: Vec<u32>,
}

impl RequestRecord {
    pub fn ok(&self) -> bool {
        self.error.is_none()
    }

    pub fn measured(&self) -> bool {
        self.phase != Some(Phase::Warmup)
    }

    /// `n`: output tokens from the server's usage, else the local tokenizer, else the event count.
    pub fn output_tokens(&self) -> u32 {
        self.usage_output_tokens
            .or(self.tokenizer_output_tokens)
            .unwrap_or(self.token_events)
    }

    pub fn input_tokens(&self) -> Option<u32> {
        self.usage_prompt_tokens.or(self.input_tokens_built)
    }

    /// TTFT = t1 − t_send.
    pub fn ttft_us(&self) -> Option<u64> {
        self.first_token_us.map(|t| t.saturating_sub(self.sent_us))
    }

    /// TTFO = first content event − t_send.
    pub fn ttfo_us(&self) -> Option<u64> {
        self.first_content_us
            .map(|t| t.saturating_sub(self.sent_us))
    }

    /// Queue-inclusive TTFT = t1 − t_int.
    pub fn ttft_from_schedule_us(&self) -> Option<u64> {
        self.first_token_us
            .map(|t| t.saturating_sub(self.scheduled_us))
    }

    /// Time when the answer was complete: the last token-bearing event when streamed, the full body otherwise.
    fn answer_done_us(&self) -> u64 {
        if self.streamed {
            self.last_token_us.unwrap_or(self.end_us)
        } else {
            self.end_us
        }
    }

    /// E2E = tN − t_send (a non-streamed request ends when its body is read).
    pub fn e2e_us(&self) -> u64 {
        self.answer_done_us().saturating_sub(self.sent_us)
    }

    /// Queue-inclusive E2E = tN − t_int.
    pub fn e2e_from_schedule_us(&self) -> u64 {
        self.answer_done_us().saturating_sub(self.scheduled_us)
    }

    /// Client queue = t_send − t_int.
    pub fn client_queue_us(&self) -> u64 {
        self.sent_us.saturating_sub(self.scheduled_us)
    }

    /// TPOT = (tN − t1)/(n − 1), defined when n > 1 and the response was streamed.
    pub fn tpot_us(&self) -> Option<f64> {
        let n = self.output_tokens();
        match (self.first_token_us, self.last_token_us) {
            (Some(t1), Some(tn)) if n > 1 => Some(tn.saturating_sub(t1) as f64 / f64::from(n - 1)),
            _ => None,
        }
    }

    /// Tokens carried by the event that ends gap `i` (the event with index `i + 1`). Uses the server's per-chunk
    /// counts when it gave them, else spreads the tokens not in the first event evenly over the later events.
    pub fn tokens_after_gap(&self, i: usize) -> f64 {
        if let Some(&t) = self.event_tokens.get(i + 1) {
            return f64::from(t.max(1));
        }
        let later_events = self.gaps_us.len().max(1) as f64;
        (f64::from(self.output_tokens().saturating_sub(1)) / later_events).max(1.0)
    }

    /// Times of every token-bearing event with the tokens each carried, for throughput over a window.
    pub fn token_arrivals(&self) -> impl Iterator<Item = (u64, f64)> + '_ {
        let first = self.first_token_us.map(|t1| {
            let tokens_in_first = match self.event_tokens.first() {
                Some(&t) => f64::from(t),
                None if self.gaps_us.is_empty() => f64::from(self.output_tokens()),
                None => 1.0,
            };
            (t1, tokens_in_first)
        });
        let mut at = self.first_token_us.unwrap_or(0);
        let later = self.gaps_us.iter().enumerate().map(move |(i, &gap)| {
            at += u64::from(gap);
            (at, self.tokens_after_gap(i))
        });
        first.into_iter().chain(later)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn streamed(n: u32) -> RequestRecord {
        RequestRecord {
            scheduled_us: 1_000,
            sent_us: 3_000,
            first_token_us: Some(13_000),
            first_content_us: Some(15_000),
            last_token_us: Some(33_000),
            end_us: 34_000,
            streamed: true,
            usage_output_tokens: Some(n),
            token_events: 3,
            gaps_us: vec![10_000, 10_000],
            ..Default::default()
        }
    }

    #[test]
    fn definitions_follow_metrics_md() {
        let r = streamed(5);
        assert_eq!(r.ttft_us(), Some(10_000));
        assert_eq!(r.ttfo_us(), Some(12_000));
        assert_eq!(r.ttft_from_schedule_us(), Some(12_000));
        assert_eq!(
            r.e2e_us(),
            30_000,
            "E2E ends at the last token event, not at the end of the body"
        );
        assert_eq!(r.e2e_from_schedule_us(), 32_000);
        assert_eq!(r.client_queue_us(), 2_000);
        assert_eq!(r.tpot_us(), Some(20_000.0 / 4.0));
        // 5 tokens over 3 events: the 4 after the first spread over the 2 later events.
        assert_eq!(r.tokens_after_gap(0), 2.0);
        let total: f64 = r.token_arrivals().map(|(_, t)| t).sum();
        assert_eq!(total, 5.0);
    }

    #[test]
    fn per_chunk_counts_win_when_present() {
        let mut r = streamed(6);
        r.event_tokens = vec![1, 3, 2];
        assert_eq!(r.tokens_after_gap(0), 3.0);
        assert_eq!(r.tokens_after_gap(1), 2.0);
        let arrivals: Vec<_> = r.token_arrivals().collect();
        assert_eq!(arrivals, vec![(13_000, 1.0), (23_000, 3.0), (33_000, 2.0)]);
    }

    #[test]
    fn tpot_is_undefined_for_one_token() {
        assert_eq!(streamed(1).tpot_us(), None);
    }
}
