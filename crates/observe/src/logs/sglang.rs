//! SGLang's scheduler log messages: the decode and prefill batch lines (its stats timeline), the start-up
//! capacity lines and KV-pool retractions. Formats: `research/server_signals.md` §4.1.

use super::events::{EventKind, StatsSample, StatsSource};
use super::scan::{f64_after, fields, leading_f64, leading_u64, u64_after};

/// The event in one SGLang message, if it is one this module knows.
pub(super) fn parse(message: &str) -> Option<EventKind> {
    if message.starts_with("Decode batch") {
        batch(message, StatsSource::SglangDecode).map(EventKind::Stats)
    } else if message.starts_with("Prefill batch") {
        batch(message, StatsSource::SglangPrefill).map(EventKind::Stats)
    } else if message.contains("max_total_num_tokens=") {
        Some(capacity(message))
    } else if message.starts_with("KV Cache is allocated.") {
        Some(EventKind::KvCacheAllocated {
            tokens: u64_after(message, "#tokens: ")?,
            memory_gib: f64_after(message, "K size: ")
                .zip(f64_after(message, "V size: "))
                .map(|(keys, values)| keys + values),
        })
    } else if message.contains("#retracted_reqs: ") {
        Some(EventKind::Preemption {
            message: message.to_string(),
            mode: None,
            cumulative: None,
            retracted: u64_after(message, "#retracted_reqs: "),
        })
    } else {
        None
    }
}

/// `Decode batch. #running-req: 8, #token: 62531, token usage: 0.12, gen throughput (token/s): 186.64,
/// #queue-req: 0` and its variants (`,` after `batch` since 2026, `cuda graph: True`, trailing commas, hybrid
/// `full token usage`); `Prefill batch. #new-seq: 1, #new-token: 2266, #cached-token: 1, token usage: 0.00,
/// #running-req: 0, #queue-req: 0[, input throughput (token/s): 559.53]`.
fn batch(message: &str, source: StatsSource) -> Option<StatsSample> {
    let body = &message[message.find('#')?..];
    let mut sample = StatsSample {
        source: Some(source),
        ..StatsSample::default()
    };
    let mut full_token_usage = None;
    let mut new_tokens = None;
    let mut cached_tokens = None;
    for (label, value) in fields(body, ": ") {
        match label {
            "#running-req" => sample.running = leading_u64(value),
            "#queue-req" => sample.waiting = leading_u64(value),
            "#token" => sample.kv_tokens = leading_u64(value),
            "token usage" => sample.kv_usage = leading_f64(value),
            "full token usage" => full_token_usage = leading_f64(value),
            "gen throughput (token/s)" => sample.generation_throughput = leading_f64(value),
            "input throughput (token/s)" => sample.prompt_throughput = leading_f64(value),
            "#new-token" => new_tokens = leading_u64(value),
            "#cached-token" => cached_tokens = leading_u64(value),
            _ => {}
        }
    }
    sample.kv_usage = sample.kv_usage.or(full_token_usage);
    if let (Some(new), Some(cached)) = (new_tokens, cached_tokens) {
        let looked_up = new.saturating_add(cached);
        if looked_up > 0 {
            sample.prefix_cache_hit_rate = Some(cached as f64 / looked_up as f64);
        }
    }
    sample.running.is_some().then_some(sample)
}

/// `max_total_num_tokens=..., chunked_prefill_size=..., max_prefill_tokens=..., max_running_requests=...,
/// context_len=..., available_gpu_mem=78.50 GB` (scheduler.py).
fn capacity(message: &str) -> EventKind {
    let mut max_total_num_tokens = None;
    let mut max_prefill_tokens = None;
    let mut max_running_requests = None;
    let mut context_len = None;
    let mut available_gpu_memory_gb = None;
    for (label, value) in fields(message, "=") {
        match label.rsplit(' ').next().unwrap_or(label) {
            "max_total_num_tokens" => max_total_num_tokens = leading_u64(value),
            "max_prefill_tokens" => max_prefill_tokens = leading_u64(value),
            "max_running_requests" => max_running_requests = leading_u64(value),
            "context_len" => context_len = leading_u64(value),
            "available_gpu_mem" => available_gpu_memory_gb = leading_f64(value),
            _ => {}
        }
    }
    EventKind::SglangCapacity {
        max_total_num_tokens,
        max_prefill_tokens,
        max_running_requests,
        context_len,
        available_gpu_memory_gb,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(message: &str) -> StatsSample {
        match parse(message) {
            Some(EventKind::Stats(sample)) => sample,
            other => panic!("not stats: {other:?}"),
        }
    }

    #[test]
    fn decode_batch_lines_old_and_new() {
        // sglang issue #3909 (2025-02).
        let old = sample(
            "Decode batch. #running-req: 8, #token: 62531, token usage: 0.12, gen throughput (token/s): 186.64, #queue-req: 0",
        );
        assert_eq!(old.source, Some(StatsSource::SglangDecode));
        assert_eq!(old.running, Some(8));
        assert_eq!(old.kv_tokens, Some(62_531));
        assert_eq!(old.kv_usage, Some(0.12));
        assert_eq!(old.generation_throughput, Some(186.64));
        assert_eq!(old.waiting, Some(0));
        // sglang PR #22331 (2026-04): comma after `batch`, `cuda graph`.
        let new = sample(
            "Decode batch, #running-req: 5, #token: 20800, token usage: 0.29, cuda graph: True, gen throughput (token/s): 144.95, #queue-req: 0",
        );
        assert_eq!(new.running, Some(5));
        assert_eq!(new.generation_throughput, Some(144.95));
        // sglang issue #4407 (2025-03): `largest-len` and a trailing comma.
        let trailing = sample(
            "Decode batch. #running-req: 509, #token: 180776, token usage: 0.43, gen throughput (token/s): 7897.87, largest-len: 0, #queue-req: 0, ",
        );
        assert_eq!(trailing.waiting, Some(0));
        assert_eq!(trailing.kv_usage, Some(0.43));
        // sglang issue #938 (2024): a deep queue.
        assert_eq!(
            sample("Decode batch. #running-req: 1010, #token: 55006, token usage: 0.93, gen throughput (token/s): 1397.13, #queue-req: 12279").waiting,
            Some(12_279)
        );
    }

    #[test]
    fn prefill_batch_lines() {
        // sglang PR #22166 (2026-04).
        let prefill = sample(
            "Prefill batch, #new-seq: 1, #new-token: 158, #cached-token: 0, token usage: 0.08, #running-req: 31, #queue-req: 0, cuda graph: True, input throughput (token/s): 559.53",
        );
        assert_eq!(prefill.source, Some(StatsSource::SglangPrefill));
        assert_eq!(prefill.running, Some(31));
        assert_eq!(prefill.prompt_throughput, Some(559.53));
        assert_eq!(prefill.prefix_cache_hit_rate, Some(0.0));
        // sglang issue #7515 (2025-06): no throughput.
        let older = sample(
            "Prefill batch. #new-seq: 1, #new-token: 2266, #cached-token: 1, token usage: 0.00, #running-req: 0, #queue-req: 0",
        );
        assert_eq!(older.prompt_throughput, None);
        assert_eq!(older.prefix_cache_hit_rate, Some(1.0 / 2267.0));
    }

    #[test]
    fn capacity_allocation_and_retraction() {
        // Format of managers/scheduler.py (sglang@8905cbd), numbers of an 8B model on one H100.
        assert_eq!(
            parse(
                "max_total_num_tokens=456123, chunked_prefill_size=8192, max_prefill_tokens=16384, max_running_requests=4096, context_len=131072, available_gpu_mem=13.54 GB"
            ),
            Some(EventKind::SglangCapacity {
                max_total_num_tokens: Some(456_123),
                max_prefill_tokens: Some(16_384),
                max_running_requests: Some(4096),
                context_len: Some(131_072),
                available_gpu_memory_gb: Some(13.54),
            })
        );
        assert_eq!(
            parse(
                "KV Cache is allocated. dtype: torch.bfloat16, #tokens: 456123, K size: 27.84 GB, V size: 27.84 GB"
            ),
            Some(EventKind::KvCacheAllocated {
                tokens: 456_123,
                memory_gib: Some(55.68)
            })
        );
        match parse(
            "KV cache pool is full. Retract requests. #retracted_reqs: 3, #new_tokens_gained: 1024",
        ) {
            Some(EventKind::Preemption { retracted, .. }) => assert_eq!(retracted, Some(3)),
            other => panic!("{other:?}"),
        }
        assert_eq!(parse("Decode batch."), None);
        assert_eq!(parse("The server is fired up and ready to roll!"), None);
    }
}
