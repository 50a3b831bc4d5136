//! One engine split over several hosts: which parallelism crosses the network between them, and over what
//! network. Tensor parallelism all-reduces at every layer; across hosts over TCP, decode waits on the wire.

use infer_doctor_core::{Confidence, Observation, Severity, Symptom};

use crate::Thresholds;
use crate::assessment::{Assessment, Rule, seen};
use crate::config::{HOW_CONFIG, known, visible_gpus};
use crate::facts::Facts;

const PP_TP: Rule = Rule {
    id: "multinode.pp_tp",
    symptom: Symptom::Itl,
    why: "An engine whose model is split over several hosts talks between them at every step. Tensor parallelism \
          all-reduces the activations at every layer, so a tensor-parallel group that spans hosts puts two \
          network round trips per layer on every decode step; pipeline parallelism only hands activations on \
          once per stage. Between hosts NCCL should use RDMA (InfiniBand, RoCE, EFA); over TCP sockets each \
          transfer costs tens of microseconds more and a fraction of the bandwidth, which decode feels directly.",
    remedies: &[
        "Keep tensor parallelism inside a host and pipeline parallelism across hosts: --tensor-parallel-size \
         <GPUs per host> --pipeline-parallel-size <hosts>",
        "Give NCCL the RDMA network: no NCCL_IB_DISABLE=1, NCCL_SOCKET_IFNAME/NCCL_IB_HCA on the fast \
         interfaces, the RDMA devices mounted into the pod; check with NCCL_DEBUG=INFO (`Using network IB`)",
        "If the model fits on one host at a lower precision (FP8 weights) or a smaller context, serve it on one \
         host and add replicas instead",
    ],
    source: "https://docs.vllm.ai/en/latest/serving/parallelism_scaling.html (tensor parallel within a node, \
             pipeline parallel across nodes; NCCL_DEBUG=INFO to check the network); \
             https://docs.nvidia.com/deeplearning/nccl/user-guide/docs/env.html (NCCL_IB_DISABLE, NCCL_NET, \
             NCCL_SOCKET_IFNAME)",
};

pub(crate) fn assess(facts: &Facts, _t: &Thresholds) -> Vec<Assessment> {
    vec![pp_tp(facts)]
}

/// The network NCCL uses between hosts, and where that was read: its own log line first, else the variables
/// that force it.
fn collective_network(facts: &Facts) -> Option<(String, &'static str)> {
    if let Some(network) = facts
        .evidence
        .log
        .as_ref()
        .and_then(|l| l.collective_network.clone())
    {
        return Some((network, "engine log, NCCL INFO Using network"));
    }
    let variables = &facts.evidence.environment.as_ref()?.variables;
    let forced = |name: &str| variables.get(name).map(|v| v.trim().to_ascii_lowercase());
    if forced("NCCL_IB_DISABLE").as_deref() == Some("1") {
        return Some(("Socket".into(), "NCCL_IB_DISABLE=1 in the environment"));
    }
    forced("NCCL_NET")
        .filter(|net| net == "socket")
        .map(|_| ("Socket".into(), "NCCL_NET=Socket in the environment"))
}

fn pp_tp(facts: &Facts) -> Assessment {
    let config = facts.evidence.config.as_ref();
    let Some((&tp, source)) = known(config, |c| &c.tensor_parallel_size) else {
        return PP_TP.unknown("tensor_parallel_size", HOW_CONFIG);
    };
    let pp = known(config, |c| &c.pipeline_parallel_size).map_or(1, |(pp, _)| *pp);
    let needed = tp.saturating_mul(pp);
    let gpus = visible_gpus(facts).map(|(n, from)| (n as u64, from));
    // How many hosts the engine spans: as said (--nnodes), else one when a host has the GPUs it needs. Needing
    // more than the host shows is either a split over hosts or a setting that cannot start; which one is not
    // known here (config.tp_vs_topology speaks to the second).
    let hosts = match (known(config, |c| &c.nnodes), gpus) {
        (Some((&n, from)), _) => Some((n, from)),
        (None, Some((count, from))) if count >= needed => Some((1, from)),
        _ => None,
    };
    let Some((hosts, hosts_from)) = hosts else {
        return PP_TP.unknown(
            "how many hosts the engine spans (--nnodes, or the GPUs one host has)",
            "pass the server's start-up log (--log FILE) and the GPU host's nvidia-smi (--gpu FILE, or \
             infer-doctor collect there)",
        );
    };
    if hosts <= 1 {
        return PP_TP.passes(format!(
            "tensor_parallel_size {tp} × pipeline_parallel_size {pp} on one host ({hosts_from})"
        ));
    }
    let per_host = gpus.map_or(needed.div_ceil(hosts), |(count, _)| count);
    let mut problems: Vec<String> = Vec::new();
    let mut evidence: Vec<Observation> =
        vec![seen("hosts the engine spans", hosts as f64, hosts_from)];
    if tp > per_host {
        problems.push(format!(
            "its tensor-parallel group of {tp} spans hosts of {per_host} GPUs, so every layer all-reduces over \
             the network: run --tensor-parallel-size {per_host} --pipeline-parallel-size {}",
            needed.div_ceil(per_host)
        ));
        evidence.push(seen("tensor_parallel_size", tp as f64, source));
        evidence.push(seen("GPUs per host", per_host as f64, hosts_from));
    }
    let network = collective_network(facts);
    if let Some((net, from)) = &network
        && net.eq_ignore_ascii_case("socket")
    {
        problems.push(format!(
            "NCCL's traffic between the hosts goes over TCP sockets, not RDMA ({from})"
        ));
    }
    if problems.is_empty() {
        return match network {
            Some((net, from)) => PP_TP.passes(format!(
                "{hosts} hosts, tensor parallel {tp} within each, pipeline parallel {pp} across; NCCL uses {net} \
                 ({from})"
            )),
            None => PP_TP.unknown(
                "which network NCCL uses between the hosts",
                "start the server with NCCL_DEBUG=INFO and pass its log (--log FILE): NCCL names it in `NCCL INFO \
                 Using network …`",
            ),
        };
    }
    PP_TP.fires(
        if problems.len() > 1 {
            Severity::Critical
        } else {
            Severity::Warning
        },
        Confidence::Medium,
        format!(
            "the engine spans {hosts} hosts and {}",
            problems.join("; and ")
        ),
        evidence,
    )
}
