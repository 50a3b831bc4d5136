//! Prefill/decode disaggregation: the KV a decode replica pulls from a prefill replica (vLLM's NixlConnector),
//! judged by its share of TTFT, the bandwidth each transfer reached and the transfers that failed.

use infer_doctor_core::{Severity, Signal, Symptom};

use crate::Thresholds;
use crate::assessment::{Assessment, Rule, compared, confidence_from_reasons, ms, percent, seen};
use crate::facts::{Facts, finite, ttft};

const KV_TRANSFER_SLOW: Rule = Rule {
    id: "pd.kv_transfer_slow",
    symptom: Symptom::Ttft,
    why: "With prefill and decode on different replicas, every request's prompt KV crosses the network before its \
          first token: the decode replica waits for the whole transfer. Over RDMA (InfiniBand, RoCE) or NVLink a \
          transfer of a long prompt takes milliseconds; when NIXL/UCX falls back to TCP (no RDMA device visible in \
          the pod, a wrong UCX_TLS, a NIC without GPUDirect) it takes tens of times longer and the split costs more \
          TTFT than it saves. Failed transfers make the decode replica compute the prompt itself.",
    remedies: &[
        "Check that the pods see an RDMA device and UCX uses it (UCX_TLS including rc/ud or cuda_ipc; `ucx_info -d` \
         in the pod; the RDMA device plugin and the NIC's GPUDirect RDMA), not the tcp transport",
        "Place prefill and decode replicas on nodes of one RDMA fabric, or on one node (NVLink, cuda_ipc)",
        "Keep short prompts local: disaggregate only prompts long enough to gain (llm-d's prefill threshold / PD \
         decider), since a transfer costs more than a short prefill",
        "Read the decode replicas' logs for NIXL transfer errors and expired requests (VLLM_NIXL_ABORT_REQUEST_TIMEOUT)",
    ],
    source: "vllm-project/vllm: vllm/distributed/kv_transfer/kv_connector/v1/nixl/stats.py (vllm:nixl_xfer_time_seconds, \
             vllm:nixl_bytes_transferred, vllm:nixl_num_failed_transfers); https://docs.vllm.ai/en/latest/features/nixl_connector_usage.html; \
             llm-d/llm-d: guides/pd-disaggregation (RDMA required for P/D); the thresholds are infer-doctor's own (inference)",
};

pub(crate) fn assess(facts: &Facts, t: &Thresholds) -> Vec<Assessment> {
    vec![kv_transfer_slow(facts, t)]
}

fn kv_transfer_slow(facts: &Facts, t: &Thresholds) -> Assessment {
    let time = facts.histogram(Signal::KvTransferTime);
    let failed = facts
        .counter(Signal::KvTransferFailures)
        .and_then(|c| finite(c.increase))
        .unwrap_or(0.0);
    if time.is_none() && failed <= 0.0 {
        return KV_TRANSFER_SLOW.unknown(
            "KV transfers between prefill and decode replicas (vLLM's vllm:nixl_* metrics)",
            "read the decode replicas' metrics (--prometheus URL, or --metrics-url of a decode pod) of a \
             prefill/decode split with the NixlConnector",
        );
    }
    let window = facts.server_window_label();
    let transfers = time.map_or(0.0, |h| h.count);
    let mut reasons = Vec::new();
    let mut evidence = Vec::new();
    let mut critical = false;
    let fail_share = failed / (transfers + failed);
    if fail_share > t.pd_transfer_failed_share {
        reasons.push(format!(
            "{failed:.0} of {:.0} transfers failed (their prompts computed again on the decode replica)",
            transfers + failed
        ));
        evidence.push(compared(
            "failed KV transfers share",
            fail_share,
            ">",
            t.pd_transfer_failed_share,
            &window,
        ));
        critical |= fail_share > t.error_rate_critical;
    }
    let mut summary = Vec::new();
    if let Some(time) = time {
        let mean_ms = time.mean * 1e3;
        summary.push(format!("transfers take {} on average", ms(mean_ms)));
        // The client's TTFT spans both legs; the server's own is one replica's view.
        let ttft_ms = facts
            .client()
            .and_then(ttft)
            .map(|s| (s.mean, "client TTFT mean"))
            .or_else(|| {
                facts
                    .histogram(Signal::Ttft)
                    .map(|h| (h.mean * 1e3, "server TTFT mean"))
            });
        if let Some((ttft_ms, what)) = ttft_ms.filter(|(v, _)| *v > 0.0) {
            let share = mean_ms / ttft_ms;
            if share >= t.pd_transfer_share_of_ttft {
                reasons.push(format!(
                    "a transfer takes {} on average, {} of the {} TTFT",
                    ms(mean_ms),
                    percent(share),
                    ms(ttft_ms)
                ));
                evidence.push(compared(
                    "KV transfer time / TTFT",
                    share,
                    ">=",
                    t.pd_transfer_share_of_ttft,
                    &window,
                ));
                evidence.push(seen(what, ttft_ms, &window));
                critical |= share >= 2.0 * t.pd_transfer_share_of_ttft;
            } else {
                summary.push(format!("{} of TTFT", percent(share)));
            }
        }
        let bytes = facts
            .counter(Signal::KvTransferBytes)
            .and_then(|c| finite(c.increase))
            .filter(|b| *b > 0.0);
        if let Some(bytes) = bytes {
            let per_transfer = bytes / transfers;
            let gbps = bytes * 8.0 / (time.mean * transfers) / 1e9;
            let mib = per_transfer / 1048576.0;
            // Small transfers are all fixed cost: their bandwidth says nothing about the link.
            if per_transfer >= t.pd_transfer_min_bytes && gbps < t.pd_transfer_gbps_min {
                reasons.push(format!(
                    "{gbps:.1} Gbit/s per transfer ({mib:.0} MiB each): TCP speed, not RDMA or NVLink"
                ));
                evidence.push(compared(
                    "KV transfer bandwidth (Gbit/s)",
                    gbps,
                    "<",
                    t.pd_transfer_gbps_min,
                    &window,
                ));
            } else {
                summary.push(format!("{gbps:.0} Gbit/s for {mib:.1} MiB each"));
            }
        }
    }
    if reasons.is_empty() {
        return KV_TRANSFER_SLOW.passes(format!("{}, none failed", summary.join(", ")));
    }
    KV_TRANSFER_SLOW.fires(
        if critical {
            Severity::Critical
        } else {
            Severity::Warning
        },
        confidence_from_reasons(reasons.len()),
        format!(
            "the prefill→decode KV transfer is slow: {}",
            reasons.join("; ")
        ),
        evidence,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use infer_doctor_core::signals::{CounterStats, HistogramStats, ServerWindow};
    use infer_doctor_core::{CheckStatus, Confidence, Evidence, Finding};

    /// A decode replica's window: `n` transfers of `mean_s` each moving `mib` MiB, `failed` failures, and the
    /// server's TTFT mean.
    fn decode(n: f64, mean_s: f64, mib: f64, failed: f64, ttft_s: f64) -> Evidence {
        let counter = |increase: f64| CounterStats {
            increase,
            rate: increase / 60.0,
            by_label: Default::default(),
        };
        let histogram = |count: f64, mean: f64| HistogramStats {
            count,
            mean,
            p50: mean,
            p90: mean,
            p99: mean,
            limits: Default::default(),
        };
        let mut w = ServerWindow {
            dialect: "vllm_v1".into(),
            end: 60.0,
            scrapes: 30,
            ..ServerWindow::default()
        };
        w.histograms
            .insert(Signal::KvTransferTime, histogram(n, mean_s));
        w.histograms.insert(Signal::Ttft, histogram(n, ttft_s));
        w.counters
            .insert(Signal::KvTransferBytes, counter(n * mib * 1048576.0));
        w.counters
            .insert(Signal::KvTransferFailures, counter(failed));
        Evidence {
            server: Some(w),
            ..Evidence::default()
        }
    }

    fn judged(evidence: &Evidence) -> (Option<Finding>, CheckStatus) {
        let (found, line) = crate::judged(evidence, "pd.kv_transfer_slow", "kv_transfer_fast");
        (found, line.status)
    }

    #[test]
    fn tcp_speed_transfers_that_dominate_ttft_are_named_with_their_numbers() {
        // 512 MiB in 430 ms (10 Gbit/s) of a 600 ms TTFT.
        let (f, line) = judged(&decode(100.0, 0.43, 512.0, 0.0, 0.6));
        let f = f.expect("fires");
        assert_eq!(line, CheckStatus::Fail);
        assert_eq!(
            (f.severity, f.confidence),
            (Severity::Critical, Confidence::High)
        );
        assert!(
            f.verdict
                .contains("430 ms on average, 72% of the 600 ms TTFT"),
            "{}",
            f.verdict
        );
        assert!(
            f.verdict
                .contains("10.0 Gbit/s per transfer (512 MiB each)"),
            "{}",
            f.verdict
        );
    }

    #[test]
    fn rdma_speed_passes_and_small_transfers_are_not_judged_by_bandwidth() {
        // 512 MiB in 11 ms (400 Gbit/s) of a 150 ms TTFT.
        let (f, line) = judged(&decode(100.0, 0.0107, 512.0, 0.0, 0.15));
        assert_eq!((f, line), (None, CheckStatus::Pass));
        // 1 MiB in 2 ms is 4 Gbit/s, but all latency: not a slow link.
        assert_eq!(
            judged(&decode(100.0, 0.002, 1.0, 0.0, 0.1)).1,
            CheckStatus::Pass
        );
    }

    #[test]
    fn failed_transfers_fire_alone_and_no_transfer_metrics_is_unknown() {
        let (f, _) = judged(&decode(100.0, 0.0107, 512.0, 5.0, 0.15));
        let f = f.expect("failures fire");
        assert!(
            f.verdict.contains("5 of 105 transfers failed"),
            "{}",
            f.verdict
        );
        assert_eq!(judged(&Evidence::default()).1, CheckStatus::Unknown);
    }
}
