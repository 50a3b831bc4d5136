//! The path to the server before any model work: a slow connect or a slow first byte of `/health` adds to every
//! TTFT whatever the engine does, and a gateway in front can add more than the server itself.

use infer_doctor_core::{Confidence, PathTiming, Severity, Symptom};

use crate::Thresholds;
use crate::assessment::{Assessment, Rule, compared, ms};
use crate::facts::Facts;

const SLOW_PATH: Rule = Rule {
    id: "network.slow_path",
    symptom: Symptom::Ttft,
    why: "Every request pays the connect, the TLS handshake and the front's own answer before the engine sees \
          it; with streaming, each token also crosses the same path. Time lost there is not the model's and no \
          engine setting gets it back.",
    remedies: &[
        "Run the client (or the gateway) in the server's region and network; keep connections alive",
        "Check the gateway or load balancer in front: its own queue, TLS termination, health checks, timeouts",
        "A slow /health on an idle server: the API server process is busy (CPU-bound tokenization or detokenization)",
    ],
    source: "curl's -w timings (time_connect, time_appconnect, time_starttransfer: \
             https://everything.curl.dev/usingcurl/verbose/writeout.html); thresholds are infer-doctor's own \
             (inference)",
};

pub(crate) fn assess(facts: &Facts, t: &Thresholds) -> Vec<Assessment> {
    vec![slow_path(facts, t)]
}

fn total(timing: &PathTiming) -> f64 {
    timing.connect_ms + timing.tls_ms.unwrap_or(0.0) + timing.first_byte_ms
}

fn slow_path(facts: &Facts, t: &Thresholds) -> Assessment {
    let Some(network) = &facts.evidence.network else {
        return SLOW_PATH.unknown(
            "timings of the path to the server",
            "run diagnose --url URL (it times /health first), or infer-doctor collect --url URL --direct-url POD_URL",
        );
    };
    let window = format!("GET {} ×{} (median)", network.path, network.samples);
    let through = &network.through;
    let mut problems = Vec::new();
    let mut evidence = Vec::new();
    if through.connect_ms > t.network_connect_ms {
        problems.push(format!("connect takes {}", ms(through.connect_ms)));
        evidence.push(compared(
            "tcp connect (ms)",
            through.connect_ms,
            ">",
            t.network_connect_ms,
            &window,
        ));
    }
    if through.first_byte_ms > t.network_first_byte_ms {
        problems.push(format!(
            "{} answers its first byte after {}",
            network.path,
            ms(through.first_byte_ms)
        ));
        evidence.push(compared(
            "first byte (ms)",
            through.first_byte_ms,
            ">",
            t.network_first_byte_ms,
            &window,
        ));
    }
    let added = network
        .direct
        .as_ref()
        .map(|direct| total(through) - total(direct));
    if let Some(added) = added.filter(|a| *a > t.network_gateway_added_ms) {
        problems.push(format!(
            "the path through {} adds {} over the server itself",
            network.url,
            ms(added)
        ));
        evidence.push(compared(
            "added over the direct URL (ms)",
            added,
            ">",
            t.network_gateway_added_ms,
            &window,
        ));
    }
    if problems.is_empty() {
        let direct = added.map_or(String::new(), |a| {
            format!("; {} over the direct URL", ms(a.max(0.0)))
        });
        return SLOW_PATH.passes(format!(
            "connect {}, first byte {}{direct}",
            ms(through.connect_ms),
            ms(through.first_byte_ms)
        ));
    }
    // A few samples of a path that may vary: enough to name it, not to be sure of it.
    SLOW_PATH.fires(
        Severity::Warning,
        Confidence::Medium,
        problems.join("; "),
        evidence,
    )
}
