//! Every number a rule compares with, in one value with its source, so a team can tune the playbook from a TOML
//! file without touching code; defaults come from `research/sim_capacity.md` §D unless marked as inference.

use serde::{Deserialize, Serialize};

/// The thresholds of every rule. Fractions are 0–1; client latencies are milliseconds (as the client measures
/// them), server times are seconds (as servers export them).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Thresholds {
    /// KV usage above which a queue means the system is full. D1/D2: llm-d alert `> 0.90`, vllm-doctor 0.90,
    /// the PSAP playbook "> 90%".
    pub kv_saturated: f64,
    /// KV usage that makes saturation critical. D1: llm-d decode pods `> 0.95` (critical).
    pub kv_critical: f64,
    /// KV usage read as "full" (≈ 100%) for `throughput.memory_bound`. Inference: DESIGN.md §6 "KV ≈ 100%".
    pub kv_full: f64,
    /// KV usage below which a queue cannot be blamed on memory (batch cap instead). D3: GIE saturation
    /// detector's KV threshold 0.8.
    pub batch_cap_kv_below: f64,
    /// Share of `max_num_seqs` the peak running count must reach for the cap to bind. DESIGN.md §6
    /// "running = max-num-seqs" (1.0); Vidur's bottleneck analyzer uses 0.9 of the P75 batch.
    pub batch_cap_running_share: f64,
    /// Mean waiting requests above which the queue counts as non-empty. Inference: the playbook's "waiting > 0"
    /// averaged over scrapes, so one stray scrape with a waiting request does not count.
    pub waiting_mean_nonempty: f64,
    /// Preemptions in the window above which the rule fires. D6: PSAP playbook "should be 0", vllm-doctor any > 0.
    pub preemptions_allowed: f64,
    /// KV usage at which preemptions are confidently blamed on KV exhaustion. D6: vllm-doctor "high if KV ≥ 0.8".
    pub preemption_kv_high_confidence: f64,
    /// Preemptions per second that make the finding critical. D6: llm-d `LLMDHighPreemptions` `> 1/s`.
    pub preemption_rate_critical: f64,
    /// Preemptions per finished request from which recomputation, not the full cache, is named first.
    /// Inference: a full cache preempts occasionally; a storm preempts about once per request.
    pub preemption_storm_per_request: f64,
    /// TTFT p95 (ms) counted as high on its own. D7: vllm-doctor TTFT p95 > 2 s.
    pub ttft_high_ms: f64,
    /// Loaded TTFT p95 over single-user TTFT p95 counted as high. Inference: "fine alone, slow under load".
    pub ttft_load_ratio: f64,
    /// Loaded TTFT p95 (ms) below which no ratio makes TTFT "high". Inference: below a quarter second nobody
    /// files a ticket.
    pub ttft_ratio_min_ms: f64,
    /// Share of TTFT spent in the queue that makes queueing the cause. DESIGN.md §6 "queue time is the larger
    /// part"; D8.
    pub queue_share_of_ttft: f64,
    /// Share of TTFT spent in prefill that makes prefill the cause. DESIGN.md §6 "prefill time dominates"; D7.
    pub prefill_share_of_ttft: f64,
    /// Prompt length (tokens) counted as long for prefill. Inference from §B3: 2048-token prefill of an 8B model
    /// is ~67 ms on an H100, so TTFT in seconds needs long prompts or a big model.
    pub long_input_tokens: f64,
    /// Share of the run's first requests (by send time) that form the "cold" sample. Inference.
    pub cold_start_early_share: f64,
    /// Early median TTFT over the median TTFT of the run's second half that means a cold start. Inference:
    /// DESIGN.md §6 "first requests' TTFT ≫ steady TTFT".
    pub cold_start_ratio: f64,
    /// Early median TTFT (ms) below which no ratio counts as a cold start. Inference: a first burst of prefills
    /// alone is tens of milliseconds.
    pub cold_start_min_ms: f64,
    /// Single-user ITL over the memory-bandwidth decode floor that means "slower than the hardware allows". D9:
    /// inference, "> 2× the §B3 bound".
    pub itl_floor_ratio: f64,
    /// Loaded ITL over single-user ITL that means the batch is too large. Inference: D10 "high ITL only under
    /// load"; the simulator's `batch-latency` scenario reproduces 2×.
    pub itl_load_ratio: f64,
    /// Loaded TPOT p95 (ms) counted as high without a single-user baseline. D10: vllm-doctor TPOT p95 > 0.2 s.
    pub tpot_high_ms: f64,
    /// Server in-system count (running + waiting) over the client's mean in-flight below which the bottleneck is
    /// upstream. D13: PSAP "running + waiting ≪ client concurrency"; the factor is inference.
    pub upstream_ratio: f64,
    /// Client mean in-flight below which the upstream comparison is not meaningful. Inference.
    pub upstream_min_in_flight: f64,
    /// Client schedule lag p99 (ms) that means the load generator fell behind. Inference, matching `load`'s
    /// catch-up bound of 100 ms.
    pub client_lag_p99_ms: f64,
    /// Achieved send rate over requested rate below which the client did not deliver its load. Inference.
    pub client_rate_achieved_share: f64,
    /// Mean requests in flight over a closed loop's users below which the client, between a response and the
    /// next request, kept the load from the server. Inference: wrong when the client held 55 of 100.
    pub client_in_flight_share: f64,
    /// Share of the client machine's cores busy in the client that means it ran out of CPU. Inference.
    pub client_cpu_share: f64,
    /// Share of the run a due request waited for its prompt to be built above which the prompt builder, not the
    /// server, set the pace. Inference: a builder that keeps up leaves only the first prompts' wait, far below.
    pub client_prompt_wait_share: f64,
    /// Seconds requests must have waited for their prompts in all before that share counts: in a probe of a few
    /// requests, a few milliseconds of prompt building are a large share of nothing. Inference.
    pub client_prompt_wait_min_seconds: f64,
    /// Error share that warns. D17: llm-d `> 1%` for 10 m.
    pub error_rate_warning: f64,
    /// Error share that is critical. D17: llm-d `> 5%` for 2 m, vllm-doctor 5%.
    pub error_rate_critical: f64,
    /// Share of requests ending by `length` that means runaway generation. DESIGN.md §6 "most requests".
    pub runaway_length_share: f64,
    /// Mean output over mean `max_tokens` that counts as "at max_tokens". Inference.
    pub runaway_max_tokens_share: f64,
    /// Share of batched outputs at temperature 0 that may differ from the same prompt's lone output (and share of
    /// prompts whose two lone runs may differ). Greedy decoding is a function of the prompt, so any difference is
    /// the batch's doing (or, alone, the cache's): vLLM's batch-invariance tests allow none
    /// (tests/v1/determinism/test_batch_invariance.py).
    pub nondeterministic_share: f64,
    /// Logprob gap (nats) between the lone run's token and the batched one below which a flip is a near tie
    /// that rounding in batch-variant kernels explains. Inference: rounding moves logits by hundredths between
    /// batch sizes, so a flip across a tenth of a nat or more is unlikely to be rounding alone.
    pub near_tie_logprob_gap: f64,
    /// Share of `max_model_len` that prompt + output must reach to count as hitting the context window.
    /// Inference.
    pub context_fill_share: f64,
    /// Prefix-cache hit rate below which caching is not working. D16: llm-d `< 0.30` for 15 m (vllm-doctor 0.50).
    pub prefix_hit_low: f64,
    /// Weights' share of VRAM above which little is left for KV. D14: PSAP "weights > 75% of VRAM".
    pub weights_vram_share: f64,
    /// Tokens/s in the run's last third over its first third below which throughput degraded. Inference: the
    /// KV-fragmentation case study in DESIGN.md §6.
    pub degradation_ratio: f64,
    /// Relative mismatch between running + waiting and completion rate × mean E2E that breaks Little's law. D23:
    /// inference (scrape-sampled gauges are noisy, so only a large gap counts).
    pub littles_law_tolerance: f64,
    /// Requests in the system below which Little's law is not checked (small numbers are all noise). Inference.
    pub littles_law_min_in_system: f64,
    /// Scrapes, and completions in their window, below which gauge means and the completion rate are too coarse
    /// for Little's law: a short run's handful of scrapes would headline a false "cannot be trusted". Inference.
    pub littles_law_min_scrapes: f64,
    pub littles_law_min_completions: f64,
    /// Share of the client's requests failing above which its in-flight count is not comparable with the
    /// engine's: requests refused at once (HTTP 400) never run there. Inference.
    pub upstream_max_failed_share: f64,
    /// Scrapes below which the engine's running and waiting means are too coarse to compare. Inference.
    pub upstream_min_scrapes: f64,
    /// GPU utilization (%) from which a GPU counts as busy, so its clocks and PCIe link can be judged (idle
    /// GPUs lower both on purpose). Inference; gpu_trace.md §C8: "do not judge idle GPUs".
    pub gpu_busy_utilization_percent: f64,
    /// Share of the maximum SM clock below which a busy, power-capped GPU counts as slowed. gpu_trace.md §C6:
    /// a healthy H100 at 629 of 700 W runs 1980 of 1980 MHz; the share is inference.
    pub gpu_clock_share: f64,
    /// Share of the default power limit below which the enforced limit counts as lowered. gpu_trace.md §C7
    /// (no anchor threshold); 1% leaves room for rounding.
    pub gpu_power_limit_share: f64,
    /// Corrected volatile ECC errors above which the memory counts as failing. gpu_trace.md §C2: GCM fails the
    /// check above 50,000,000.
    pub gpu_ecc_corrected_max: f64,
    /// TCP connect time (ms) to the server above which the path is slow. Inference: within a data centre a
    /// connect takes well under a millisecond; tens of milliseconds mean another region or a full accept queue.
    pub network_connect_ms: f64,
    /// Time (ms) from a `/health` request to its first byte above which the server's front is slow before any
    /// model work. Inference: an idle API server answers in about a millisecond.
    pub network_first_byte_ms: f64,
    /// Milliseconds the URL users reach may add over the direct server URL (gateway, load balancer, proxy).
    /// Inference.
    pub network_gateway_added_ms: f64,
    /// Swap in use (MiB) above which the host counts as swapping. gpu_trace.md §C18: "swap in use during
    /// serving" (no numeric anchor), so any page in swap counts.
    pub host_swap_used_mib: f64,
    /// PSI memory `some avg10` (%) above which tasks are stalling on memory now, making swap use a warning rather
    /// than a note. gpu_trace.md §C18: "PSI memory some avg10 > 0".
    pub host_memory_stall_percent: f64,
    /// Share of the cgroup's CPU periods throttled above which the quota slows the server.
    /// kubernetes-mixin's CPUThrottlingHigh alert: `cpuThrottlingPercent: 25`.
    pub host_cpu_throttled_share: f64,
    /// CPU of one server thread (% of a core) at or above which it is saturated: a full core, less the
    /// sampling's rounding. vllm-project/vllm#12705 (the API server bound by one CPU).
    pub host_thread_core_percent: f64,
    /// max_num_seqs over the requests the KV cache holds (KV tokens / mean prompt + output) above which the cap
    /// admits more than fits, and, the other way round, the cache's room over the cap above which a binding cap
    /// is too low. Inference: half again as many as fit is preemption territory once requests run long.
    pub config_seqs_over_kv_ratio: f64,
    /// KV usage below which a binding max_num_seqs wastes the cache. Inference: half the cache idle while
    /// requests queue; below `batch_cap_kv_below`'s 0.8 so the cap, not memory, is clearly the limit.
    pub config_batch_cap_kv_below: f64,
    /// max_model_len over the longest request above which it is oversized. Inference: 4× leaves room for
    /// occasional longer requests; vLLM docs (conserving memory) advise lowering it to what requests need.
    pub config_max_model_len_ratio: f64,
    /// Margin over the longest request for a suggested max_model_len (then rounded up to 1024). Inference.
    pub config_max_model_len_margin: f64,
    /// gpu_memory_utilization below which it counts as low. Inference: vLLM's default is 0.9; 0.85 leaves a
    /// margin for deliberate headroom.
    pub config_gpu_memory_utilization_low: f64,
    /// The gpu_memory_utilization to suggest. vLLM's default (docs: engine args), safe with nothing else on the
    /// GPU; up to 0.95 is common.
    pub config_gpu_memory_utilization_target: f64,
    /// max_num_batched_tokens below which it is small: vLLM's smallest default (2048, on GPUs under 70 GiB;
    /// docs: optimization, chunked prefill).
    pub config_min_batched_tokens: f64,
    /// Weights' share of one GPU's memory below which the model fits one GPU with room, so tensor parallelism is
    /// for latency, not need. Inference: half the memory left for KV cache.
    pub config_tp_weights_share: f64,
    /// Tokens accepted per draft step (vLLM's mean acceptance length minus one) below which speculation costs
    /// more than it saves. Inference: a verification step costs about one decode step, so under half a token
    /// gained per draft the drafting rarely pays, whatever the number of tokens drafted (a 40 % acceptance of 5
    /// drafted tokens still gains 2).
    pub spec_decode_accepted_per_draft_low: f64,
    /// Share of a trace's GPU time (within engine steps where they are annotated) with no op running above which
    /// the GPU waits on the host. TraceLens flags idle above 15% (cpu_idle_analysis.py).
    pub trace_gpu_idle_share: f64,
    /// Share of kernels under 10 µs above which launching, not running, sets the pace. Inference from HTA's and
    /// TraceLens's short-kernel analyses (neither names a share).
    pub trace_short_kernel_share: f64,
    /// Share of kernels replayed from CUDA graphs below which launches are paid one by one. Inference.
    pub trace_graph_kernel_share: f64,
    /// Share of the GPU's busy time spent in communication nothing overlaps above which a tensor-parallel step
    /// waits on its collectives. Inference: HTA reports the overlap with no threshold.
    pub trace_comm_exposed_share: f64,
    /// Share of engine steps' GPU time in host↔device copies above which the steps move data over PCIe (offload,
    /// swapping). Inference: vLLM's own per-step copies (sampled tokens) stay far below.
    pub trace_host_copy_share: f64,
    /// Kernels below which a trace is too short to judge launches. Inference.
    pub trace_min_kernels: f64,
    /// Decode step GPU time over the roofline floor (the weights read once at full bandwidth) above which decode
    /// is slower than the hardware allows. Inference, as `itl_floor_ratio`.
    pub trace_step_floor_ratio: f64,
    /// One replica's mean running + waiting (or waiting) over the median of the others' from which the fleet's
    /// load is skewed. Inference: vllm-doctor's imbalance rule compares replicas the same way; twice is far
    /// beyond what a least-connections split of equal requests leaves.
    pub fleet_skew_ratio: f64,
    /// Requests in the system the busiest replica must hold beyond the others' median for a skew to count, so two
    /// nearly idle replicas (1 against 0.4) are not called skewed. Inference.
    pub fleet_min_in_system_gap: f64,
    /// KV usage of the fullest replica over the others' median (a share, 0–1) that is a skew. Inference: a
    /// 30-point gap is one pod near full while its peers have a third of their cache free.
    pub fleet_kv_gap: f64,
    /// Share of Prometheus's scrapes a replica must answer over the window: one slow `/metrics` under load is a
    /// missed scrape, not a replica down. Inference: one miss in ten.
    pub fleet_up_share_min: f64,
    /// Seconds llm-d's endpoint picker may take, at the 99th percentile, to choose a replica. The Gateway API
    /// Inference Extension's scheduler proposal aims at O(10 ms) on average; twice that at the tail is slow.
    pub epp_scheduling_p99_seconds: f64,
    /// Seconds requests may wait in the picker's flow-control queue (p90) before that queue counts, however short
    /// TTFT is. Inference: a tenth of a second is felt on a chat's first token.
    pub epp_queue_min_seconds: f64,
    /// The flow-control queue's p90 as a share of the gateway's TTFT p90 from which the picker, not the engines,
    /// is where users wait. Inference: a quarter of the first token's wait.
    pub epp_queue_ttft_share: f64,
    /// Share of prompt tokens that must be a shared prefix for routing by prefix to matter; below it a low hit
    /// rate costs little. Inference: under a third of the prompt, recomputing it is a minor share of prefill.
    pub fleet_prefix_share_min: f64,
    /// The replicas' prefix-cache hit rate over what the workload allows (the shared share of prompt tokens)
    /// below which the router spreads prefixes over pods. Inference: prefix-aware routing keeps a repeated
    /// prefix on one pod and comes close to the share; spreading each over N pods hits at most about 1/N of
    /// the repeats on a pod that holds it, well under 60% from three replicas up.
    pub fleet_prefix_hit_share: f64,
    /// Mean KV transfer time over TTFT from which a prefill/decode split's transfers are slow (twice it:
    /// critical). Inference: over RDMA a long prompt's KV moves in a few percent of its prefill time.
    pub pd_transfer_share_of_ttft: f64,
    /// Gbit/s per transfer below which KV moves at TCP speed: a TCP flow reaches about 10–25, RDMA NICs 100–400,
    /// NVLink far more. Inference from those link speeds.
    pub pd_transfer_gbps_min: f64,
    /// Bytes per transfer from which bandwidth is judged; smaller transfers are dominated by their fixed cost.
    pub pd_transfer_min_bytes: f64,
    /// Share of failed KV transfers above which the split fails requests' prefills. Inference, as the 1% error
    /// budget.
    pub pd_transfer_failed_share: f64,
    /// Tokens generated per request that ended by itself at or below which a replica is the prefill worker of a
    /// P/D split (confirmed by KV transfers on another replica): llm-d's routing sidecar asks the prefill pod for
    /// one token, then the decode pod pulls its KV.
    pub pd_prefill_tokens_per_request: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            kv_saturated: 0.90,
            kv_critical: 0.95,
            kv_full: 0.98,
            batch_cap_kv_below: 0.80,
            batch_cap_running_share: 1.0,
            waiting_mean_nonempty: 0.5,
            preemptions_allowed: 0.0,
            preemption_kv_high_confidence: 0.80,
            preemption_rate_critical: 1.0,
            preemption_storm_per_request: 0.5,
            ttft_high_ms: 2000.0,
            ttft_load_ratio: 4.0,
            ttft_ratio_min_ms: 250.0,
            queue_share_of_ttft: 0.5,
            prefill_share_of_ttft: 0.5,
            long_input_tokens: 2048.0,
            cold_start_early_share: 0.10,
            cold_start_ratio: 5.0,
            cold_start_min_ms: 100.0,
            itl_floor_ratio: 2.0,
            itl_load_ratio: 1.5,
            tpot_high_ms: 200.0,
            upstream_ratio: 0.5,
            upstream_min_in_flight: 2.0,
            client_lag_p99_ms: 100.0,
            client_rate_achieved_share: 0.9,
            client_in_flight_share: 0.8,
            client_cpu_share: 0.9,
            client_prompt_wait_share: 0.05,
            client_prompt_wait_min_seconds: 0.5,
            error_rate_warning: 0.01,
            error_rate_critical: 0.05,
            runaway_length_share: 0.5,
            runaway_max_tokens_share: 0.95,
            nondeterministic_share: 0.0,
            near_tie_logprob_gap: 0.1,
            context_fill_share: 0.95,
            prefix_hit_low: 0.30,
            weights_vram_share: 0.75,
            degradation_ratio: 0.7,
            littles_law_tolerance: 0.5,
            littles_law_min_in_system: 1.0,
            littles_law_min_scrapes: 10.0,
            littles_law_min_completions: 20.0,
            upstream_max_failed_share: 0.05,
            upstream_min_scrapes: 3.0,
            gpu_busy_utilization_percent: 50.0,
            gpu_clock_share: 0.95,
            gpu_power_limit_share: 0.99,
            gpu_ecc_corrected_max: 50_000_000.0,
            network_connect_ms: 10.0,
            network_first_byte_ms: 100.0,
            network_gateway_added_ms: 50.0,
            host_swap_used_mib: 0.0,
            host_memory_stall_percent: 0.0,
            host_cpu_throttled_share: 0.25,
            host_thread_core_percent: 95.0,
            config_seqs_over_kv_ratio: 1.5,
            config_batch_cap_kv_below: 0.5,
            config_max_model_len_ratio: 4.0,
            config_max_model_len_margin: 1.25,
            config_gpu_memory_utilization_low: 0.85,
            config_gpu_memory_utilization_target: 0.9,
            config_min_batched_tokens: 2048.0,
            config_tp_weights_share: 0.5,
            spec_decode_accepted_per_draft_low: 0.5,
            trace_gpu_idle_share: 0.15,
            trace_short_kernel_share: 0.5,
            trace_graph_kernel_share: 0.5,
            trace_comm_exposed_share: 0.15,
            trace_host_copy_share: 0.05,
            trace_min_kernels: 200.0,
            trace_step_floor_ratio: 2.0,
            fleet_skew_ratio: 2.0,
            fleet_min_in_system_gap: 2.0,
            fleet_kv_gap: 0.30,
            fleet_up_share_min: 0.9,
            epp_scheduling_p99_seconds: 0.02,
            epp_queue_min_seconds: 0.1,
            epp_queue_ttft_share: 0.25,
            fleet_prefix_share_min: 0.3,
            fleet_prefix_hit_share: 0.6,
            pd_transfer_share_of_ttft: 0.3,
            pd_transfer_gbps_min: 25.0,
            pd_transfer_min_bytes: 16.0 * 1048576.0,
            pd_transfer_failed_share: 0.01,
            pd_prefill_tokens_per_request: 1.5,
        }
    }
}

/// A thresholds file that could not be used, with where in it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ThresholdError {
    /// Bad TOML, an unknown key or a value of the wrong type.
    #[error("thresholds line {line}: {message}")]
    Parse { line: usize, message: String },
    /// A well-formed number no rule can compare with (negative, infinite, NaN).
    #[error("thresholds line {line}: `{key}` must be a finite number ≥ 0, got {value}")]
    Invalid {
        line: usize,
        key: String,
        value: f64,
    },
}

impl Thresholds {
    /// Reads any subset of the fields from TOML; missing fields keep their defaults, unknown keys are errors.
    pub fn from_toml(text: &str) -> Result<Thresholds, ThresholdError> {
        let thresholds: Thresholds =
            toml::from_str(text).map_err(|error| ThresholdError::Parse {
                line: error
                    .span()
                    .map_or(1, |span| line_of_offset(text, span.start)),
                message: error.message().trim().to_string(),
            })?;
        if let Some((key, value)) = thresholds
            .named_values()
            .into_iter()
            .find(|(_, value)| !value.is_finite() || *value < 0.0)
        {
            return Err(ThresholdError::Invalid {
                line: line_of_key(text, key),
                key: key.to_string(),
                value,
            });
        }
        Ok(thresholds)
    }

    /// Every field by name, for validation; a test keeps this list in step with the struct.
    fn named_values(&self) -> Vec<(&'static str, f64)> {
        vec![
            ("kv_saturated", self.kv_saturated),
            ("kv_critical", self.kv_critical),
            ("kv_full", self.kv_full),
            ("batch_cap_kv_below", self.batch_cap_kv_below),
            ("batch_cap_running_share", self.batch_cap_running_share),
            ("waiting_mean_nonempty", self.waiting_mean_nonempty),
            ("preemptions_allowed", self.preemptions_allowed),
            (
                "preemption_kv_high_confidence",
                self.preemption_kv_high_confidence,
            ),
            ("preemption_rate_critical", self.preemption_rate_critical),
            (
                "preemption_storm_per_request",
                self.preemption_storm_per_request,
            ),
            ("ttft_high_ms", self.ttft_high_ms),
            ("ttft_load_ratio", self.ttft_load_ratio),
            ("ttft_ratio_min_ms", self.ttft_ratio_min_ms),
            ("queue_share_of_ttft", self.queue_share_of_ttft),
            ("prefill_share_of_ttft", self.prefill_share_of_ttft),
            ("long_input_tokens", self.long_input_tokens),
            ("cold_start_early_share", self.cold_start_early_share),
            ("cold_start_ratio", self.cold_start_ratio),
            ("cold_start_min_ms", self.cold_start_min_ms),
            ("itl_floor_ratio", self.itl_floor_ratio),
            ("itl_load_ratio", self.itl_load_ratio),
            ("tpot_high_ms", self.tpot_high_ms),
            ("upstream_ratio", self.upstream_ratio),
            ("upstream_min_in_flight", self.upstream_min_in_flight),
            ("client_lag_p99_ms", self.client_lag_p99_ms),
            (
                "client_rate_achieved_share",
                self.client_rate_achieved_share,
            ),
            ("client_in_flight_share", self.client_in_flight_share),
            ("client_cpu_share", self.client_cpu_share),
            ("client_prompt_wait_share", self.client_prompt_wait_share),
            (
                "client_prompt_wait_min_seconds",
                self.client_prompt_wait_min_seconds,
            ),
            ("error_rate_warning", self.error_rate_warning),
            ("error_rate_critical", self.error_rate_critical),
            ("runaway_length_share", self.runaway_length_share),
            ("runaway_max_tokens_share", self.runaway_max_tokens_share),
            ("nondeterministic_share", self.nondeterministic_share),
            ("near_tie_logprob_gap", self.near_tie_logprob_gap),
            ("context_fill_share", self.context_fill_share),
            ("prefix_hit_low", self.prefix_hit_low),
            ("weights_vram_share", self.weights_vram_share),
            ("degradation_ratio", self.degradation_ratio),
            ("fleet_skew_ratio", self.fleet_skew_ratio),
            ("fleet_min_in_system_gap", self.fleet_min_in_system_gap),
            ("fleet_kv_gap", self.fleet_kv_gap),
            ("fleet_up_share_min", self.fleet_up_share_min),
            (
                "epp_scheduling_p99_seconds",
                self.epp_scheduling_p99_seconds,
            ),
            ("epp_queue_min_seconds", self.epp_queue_min_seconds),
            ("epp_queue_ttft_share", self.epp_queue_ttft_share),
            ("fleet_prefix_share_min", self.fleet_prefix_share_min),
            ("fleet_prefix_hit_share", self.fleet_prefix_hit_share),
            ("pd_transfer_share_of_ttft", self.pd_transfer_share_of_ttft),
            ("pd_transfer_gbps_min", self.pd_transfer_gbps_min),
            ("pd_transfer_min_bytes", self.pd_transfer_min_bytes),
            ("pd_transfer_failed_share", self.pd_transfer_failed_share),
            (
                "pd_prefill_tokens_per_request",
                self.pd_prefill_tokens_per_request,
            ),
            ("littles_law_tolerance", self.littles_law_tolerance),
            ("littles_law_min_in_system", self.littles_law_min_in_system),
            ("littles_law_min_scrapes", self.littles_law_min_scrapes),
            (
                "littles_law_min_completions",
                self.littles_law_min_completions,
            ),
            ("upstream_max_failed_share", self.upstream_max_failed_share),
            ("upstream_min_scrapes", self.upstream_min_scrapes),
            (
                "gpu_busy_utilization_percent",
                self.gpu_busy_utilization_percent,
            ),
            ("gpu_clock_share", self.gpu_clock_share),
            ("gpu_power_limit_share", self.gpu_power_limit_share),
            ("gpu_ecc_corrected_max", self.gpu_ecc_corrected_max),
            ("network_connect_ms", self.network_connect_ms),
            ("network_first_byte_ms", self.network_first_byte_ms),
            ("network_gateway_added_ms", self.network_gateway_added_ms),
            ("host_swap_used_mib", self.host_swap_used_mib),
            ("host_memory_stall_percent", self.host_memory_stall_percent),
            ("host_cpu_throttled_share", self.host_cpu_throttled_share),
            ("host_thread_core_percent", self.host_thread_core_percent),
            ("config_seqs_over_kv_ratio", self.config_seqs_over_kv_ratio),
            ("config_batch_cap_kv_below", self.config_batch_cap_kv_below),
            (
                "config_max_model_len_ratio",
                self.config_max_model_len_ratio,
            ),
            (
                "config_max_model_len_margin",
                self.config_max_model_len_margin,
            ),
            (
                "config_gpu_memory_utilization_low",
                self.config_gpu_memory_utilization_low,
            ),
            (
                "config_gpu_memory_utilization_target",
                self.config_gpu_memory_utilization_target,
            ),
            ("config_min_batched_tokens", self.config_min_batched_tokens),
            ("config_tp_weights_share", self.config_tp_weights_share),
            (
                "spec_decode_accepted_per_draft_low",
                self.spec_decode_accepted_per_draft_low,
            ),
            ("trace_gpu_idle_share", self.trace_gpu_idle_share),
            ("trace_short_kernel_share", self.trace_short_kernel_share),
            ("trace_graph_kernel_share", self.trace_graph_kernel_share),
            ("trace_comm_exposed_share", self.trace_comm_exposed_share),
            ("trace_host_copy_share", self.trace_host_copy_share),
            ("trace_min_kernels", self.trace_min_kernels),
            ("trace_step_floor_ratio", self.trace_step_floor_ratio),
        ]
    }
}

/// 1-based line of a byte offset.
fn line_of_offset(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// 1-based line where `key` is assigned; 1 when it cannot be found (the value came from elsewhere).
fn line_of_key(text: &str, key: &str) -> usize {
    text.lines()
        .position(|line| {
            line.trim_start()
                .strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with('='))
        })
        .map_or(1, |index| index + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_is_validated() {
        let serialized = serde_json::to_value(Thresholds::default()).expect("thresholds serialize");
        let fields = serialized.as_object().map_or(0, serde_json::Map::len);
        assert_eq!(fields, Thresholds::default().named_values().len());
    }

    #[test]
    fn lines_are_one_based() {
        assert_eq!(line_of_offset("a\nb\nc", 4), 3);
        assert_eq!(line_of_key("x = 1\n  kv_full = 2", "kv_full"), 2);
        assert_eq!(line_of_key("kv_full_x = 2", "kv_full"), 1);
    }
}
