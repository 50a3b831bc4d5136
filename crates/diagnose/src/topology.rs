//! Rules over how the GPUs reach each other: a tensor-parallel group whose all-reduces cross PCIe instead of
//! NVLink, and NVLinks that are down, slower than their siblings, or whose error counters grow under load. Source
//! rows: gpu_trace.md §C (14, 15).

use infer_doctor_core::{
    Confidence, GpuLink, GpuNvLinkErrors, GpuTopology, Observation, Severity, Symptom,
};

use crate::Thresholds;
use crate::assessment::{Assessment, Rule, how, seen};
use crate::facts::{Facts, visible_gpu_indices};

const TP_OVER_PCIE: Rule = Rule {
    id: "hardware.tp_over_pcie",
    symptom: Symptom::Itl,
    why: "Tensor parallelism all-reduces activations between the GPUs of a group at every layer of every step; \
          over PCIe (and worse, across CPU sockets) that traffic runs at a fraction of NVLink's bandwidth, so \
          each decode step and prefill waits on the interconnect.",
    remedies: &[
        "Place the tensor-parallel group on GPUs joined by NVLink (`nvidia-smi topo -m` shows NV# between them), \
         e.g. with CUDA_VISIBLE_DEVICES",
        "Without NVLink, prefer pipeline parallelism or more replicas with a smaller tensor-parallel size",
        "Keep a group within one CPU socket (no SYS between its GPUs)",
        "Unset NCCL_P2P_DISABLE where the GPUs have NVLink, so NCCL copies over it",
    ],
    source: "https://docs.vllm.ai/en/latest/serving/parallelism_scaling.html (tensor parallelism needs a fast \
             interconnect; use pipeline parallelism across slow links); nvidia-smi topo -m legend (NV#, PIX, PXB, \
             PHB, NODE, SYS); https://docs.nvidia.com/deeplearning/nccl/user-guide/docs/env.html (NCCL_P2P_DISABLE)",
};

const NVLINK_DEGRADED: Rule = Rule {
    id: "hardware.nvlink_degraded",
    symptom: Symptom::Hardware,
    why: "An NVLink that is down, or a GPU pair bonded by fewer links than its siblings, leaves all-reduces and \
          peer copies to fewer lanes (or to PCIe), slowing every tensor-parallel step that crosses it; a link whose \
          error counters grow under load resends (replays) or retrains (recovers) what it carries, and may go \
          down next.",
    remedies: &[
        "On HGX/DGX systems check that nvidia-fabricmanager is running, then `nvidia-smi nvlink -s` again",
        "Check `nvidia-smi nvlink -e` for growing error counters and the kernel log for NVLink XIDs (74)",
        "A link that stays down after a reset: drain the node and have the baseboard checked",
    ],
    source: "https://docs.nvidia.com/datacenter/tesla/fabric-manager-user-guide/index.html (NVLink on NVSwitch \
             systems needs Fabric Manager); https://docs.nvidia.com/dgx/dgxh100-user-guide/introduction-to-dgxh100.html \
             (18 NVLinks per H100 GPU, every pair alike through NVSwitch)",
};

pub(crate) fn assess(facts: &Facts, _: &Thresholds) -> Vec<Assessment> {
    vec![tp_over_pcie(facts), nvlink_degraded(facts)]
}

/// The tensor-parallel size the server was started with: its log's arguments, else the gathered settings (the
/// command line `collect` recorded, the engine's config line), else 1 where a read arguments line names none
/// (vLLM prints only those it was given). Not from `--tensor-parallel-size`, whose default of 1 is the floors'
/// assumption, not the server's word.
fn tensor_parallel_size(facts: &Facts) -> Option<u32> {
    let log = facts.evidence.log.as_ref();
    log.and_then(|log| {
        ["tensor_parallel_size", "tensor-parallel-size", "tp_size"]
            .iter()
            .find_map(|key| log.non_default_args.get(*key))
            .and_then(|v| v.trim().parse().ok())
    })
    .or_else(|| {
        let setting = facts
            .evidence
            .config
            .as_ref()?
            .tensor_parallel_size
            .as_ref()?;
        u32::try_from(setting.value).ok()
    })
    .or_else(|| {
        log.filter(|log| log.server == "vllm" && !log.non_default_args.is_empty())
            .map(|_| 1)
    })
}

fn link_name(link: GpuLink) -> String {
    match link {
        GpuLink::NvLink(n) => format!("NV{n}"),
        GpuLink::Pcie(path) => format!("{path:?}").to_uppercase(),
    }
}

/// Every GPU pair of the matrix (each once) with its link.
fn pairs(topology: &GpuTopology) -> Vec<(&str, &str, GpuLink)> {
    topology
        .gpus
        .iter()
        .flat_map(|gpu| {
            gpu.links
                .iter()
                .filter(move |(peer, _)| gpu.name.as_str() < peer.as_str())
                .map(move |(peer, link)| (gpu.name.as_str(), peer.as_str(), *link))
        })
        .collect()
}

fn tp_over_pcie(facts: &Facts) -> Assessment {
    let Some(topology) = &facts.evidence.topology else {
        return TP_OVER_PCIE.unknown("the GPU topology (`nvidia-smi topo -m`)", how::TOPOLOGY);
    };
    let Some(tp) = tensor_parallel_size(facts) else {
        return TP_OVER_PCIE.unknown("the server's tensor-parallel size", how::LOG);
    };
    if tp <= 1 {
        return TP_OVER_PCIE.passes(format!(
            "tensor_parallel_size {tp}: no all-reduce between GPUs"
        ));
    }
    let tp = tp as usize;
    if topology.gpus.len() < tp {
        return TP_OVER_PCIE.unknown(
            &format!(
                "which GPUs the group of {tp} uses ({} has {} GPUs)",
                topology.source,
                topology.gpus.len()
            ),
            how::TOPOLOGY,
        );
    }
    let all = pairs(topology);
    // The engine takes the first GPUs it is given: CUDA_VISIBLE_DEVICES names them when the environment is in
    // the evidence (by index; UUIDs cannot be matched to the matrix), else the matrix's first GPUs are assumed.
    let visible_indices = visible_gpu_indices(facts.evidence);
    let visible: Option<Vec<String>> = visible_indices
        .as_ref()
        .map(|(indices, _)| {
            indices
                .iter()
                .map(|i| format!("GPU{i}"))
                .collect::<Vec<_>>()
        })
        .filter(|names| {
            names.len() >= tp
                && names
                    .iter()
                    .all(|n| topology.gpus.iter().any(|g| g.name == *n))
        });
    let group: Vec<&str> = match &visible {
        Some(names) => names.iter().take(tp).map(String::as_str).collect(),
        None => topology
            .gpus
            .iter()
            .take(tp)
            .map(|g| g.name.as_str())
            .collect(),
    };
    let over_pcie: Vec<&(&str, &str, GpuLink)> = all
        .iter()
        .filter(|(a, b, link)| {
            group.contains(a) && group.contains(b) && matches!(link, GpuLink::Pcie(_))
        })
        .collect();
    if over_pcie.is_empty() {
        let links: Vec<String> = all
            .iter()
            .filter(|(a, b, _)| group.contains(a) && group.contains(b))
            .map(|(_, _, l)| link_name(*l))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let p2p_disabled = facts
            .evidence
            .environment
            .as_ref()
            .and_then(|env| env.variables.get("NCCL_P2P_DISABLE"))
            .filter(|v| v.trim() == "1");
        if let (Some(_), Some(env)) = (p2p_disabled, &facts.evidence.environment) {
            return TP_OVER_PCIE.fires(
                Severity::Warning,
                if env.server_process {
                    Confidence::High
                } else {
                    Confidence::Medium
                },
                format!(
                    "NCCL_P2P_DISABLE=1: the group of {tp} ({}) has NVLink ({}), but NCCL may not use it and \
                     copies through host memory instead",
                    group.join(", "),
                    links.join(", ")
                ),
                vec![seen("NCCL_P2P_DISABLE", 1.0, &env.source)],
            );
        }
        return TP_OVER_PCIE.passes(format!(
            "the group of {tp} ({}) meets over NVLink ({})",
            group.join(", "),
            links.join(", ")
        ));
    }
    // A host without any NVLink pair puts every group on PCIe, whichever GPUs it uses.
    let no_nvlink = all.iter().all(|(_, _, l)| matches!(l, GpuLink::Pcie(_)));
    // Only the server process's own CUDA_VISIBLE_DEVICES names its GPUs for sure; a collect-env paste shows a
    // shell's, which may differ.
    let visible_is_the_servers =
        visible.is_some() && visible_indices.is_some_and(|(_, from_server)| from_server);
    let confidence = if no_nvlink || visible_is_the_servers {
        Confidence::High
    } else {
        Confidence::Medium
    };
    let worst = over_pcie
        .iter()
        .map(|(_, _, l)| *l)
        .max_by_key(|l| match l {
            GpuLink::Pcie(path) => *path as u8,
            GpuLink::NvLink(_) => 0,
        });
    let across_sockets = if worst == Some(GpuLink::Pcie(infer_doctor_core::PciePath::Sys)) {
        ", some across CPU sockets (SYS)"
    } else {
        ""
    };
    let assumed = if no_nvlink {
        "this host has no NVLink between any GPUs".to_string()
    } else if visible.is_some() {
        format!("the group is {}, by CUDA_VISIBLE_DEVICES", group.join(", "))
    } else {
        format!(
            "assuming the group is {} (the first {tp} GPUs)",
            group.join(", ")
        )
    };
    let evidence: Vec<Observation> = over_pcie
        .iter()
        .map(|(a, b, link)| {
            seen(
                format!("{a}–{b} {}", link_name(*link)),
                1.0,
                &topology.source,
            )
        })
        .collect();
    TP_OVER_PCIE.fires(
        Severity::Warning,
        confidence,
        format!(
            "tensor_parallel_size {tp} over PCIe: {} of the group's GPU pairs meet without NVLink{across_sockets} \
             ({assumed})",
            over_pcie.len()
        ),
        evidence,
    )
}

/// Counters that count faults, by any driver's names: `Replay Errors`, `Recovery Errors`, `CRC Errors`, a
/// Blackwell driver's `Rx Errors`, `Link recovery … events`, `Tx discards`. Not traffic (`Tx packets`, `Rx bytes`),
/// which grows with any load, nor the FEC bins (`FEC Errors - N`), which count codewords the link corrected, bin 0
/// every clean one.
fn counts_faults(counter: &str) -> bool {
    let name = counter.to_ascii_lowercase();
    !name.starts_with("fec ")
        && ["error", "recovery", "discard"]
            .iter()
            .any(|word| name.contains(word))
}

/// One fault counter that grew between two readings of `nvidia-smi nvlink -e`.
struct Growth<'a> {
    gpu: u32,
    link: u32,
    counter: &'a str,
    increase: u64,
}

/// The fault counters present in both readings, and those of them that grew. One that fell was reset between the
/// readings (`nvidia-smi nvlink -ec`) and says nothing.
fn grown_counters<'a>(
    before: &[GpuNvLinkErrors],
    after: &'a [GpuNvLinkErrors],
) -> (usize, Vec<Growth<'a>>) {
    let mut compared = 0;
    let mut grown = Vec::new();
    for gpu in after {
        let Some(earlier_gpu) = before.iter().find(|g| g.index == gpu.index) else {
            continue;
        };
        for link in &gpu.links {
            let Some(earlier) = earlier_gpu.links.iter().find(|l| l.link == link.link) else {
                continue;
            };
            for (counter, now) in &link.counters {
                let Some(was) = earlier.counters.get(counter) else {
                    continue;
                };
                if !counts_faults(counter) {
                    continue;
                }
                compared += 1;
                if now > was {
                    grown.push(Growth {
                        gpu: gpu.index,
                        link: link.link,
                        counter,
                        increase: now - was,
                    });
                }
            }
        }
    }
    (compared, grown)
}

fn nvlink_degraded(facts: &Facts) -> Assessment {
    let nvlinks = facts.evidence.nvlinks.as_ref();
    let topology = facts.evidence.topology.as_ref();
    let bonded: Vec<(&str, &str, u32)> = topology
        .map(pairs)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(a, b, link)| match link {
            GpuLink::NvLink(n) => Some((a, b, n)),
            GpuLink::Pcie(_) => None,
        })
        .collect();
    // Growth needs two readings: one alone says nothing about the counters, however high they stand.
    let error_window = facts
        .evidence
        .nvlink_errors_before
        .as_ref()
        .zip(facts.evidence.nvlink_errors_after.as_ref());
    if nvlinks.is_none() && bonded.is_empty() && error_window.is_none() {
        let missing = if topology.is_some() {
            "NVLink state (`nvidia-smi nvlink -s`; the topology shows no NVLink pair)"
        } else {
            "NVLink state (`nvidia-smi nvlink -s` or `topo -m`)"
        };
        return NVLINK_DEGRADED.unknown(missing, how::TOPOLOGY);
    }
    let mut problems = Vec::new();
    let mut evidence = Vec::new();
    let mut fine = Vec::new();
    let mut uneven_bonds = false;
    if let Some((source, gpus)) = nvlinks {
        let fastest = gpus
            .iter()
            .flat_map(|g| &g.links)
            .filter_map(|l| l.speed_gb_per_s)
            .fold(0.0_f64, f64::max);
        let mut active = 0;
        let mut listed = 0;
        for gpu in gpus {
            if gpu.all_inactive {
                problems.push(format!(
                    "GPU {}: every NVLink inactive (nvidia-smi lists none)",
                    gpu.index
                ));
                evidence.push(seen(
                    format!("gpu {} nvlinks all inactive", gpu.index),
                    1.0,
                    source,
                ));
                continue;
            }
            // A GPU with no link lines says nothing about its links: neither up nor down.
            if gpu.links.is_empty() {
                continue;
            }
            listed += 1;
            let down: Vec<u32> = gpu
                .links
                .iter()
                .filter(|l| l.speed_gb_per_s.is_none())
                .map(|l| l.link)
                .collect();
            // Below the fastest link of the host by more than rounding: trained at a lower rate.
            let slow: Vec<u32> = gpu
                .links
                .iter()
                .filter(|l| l.speed_gb_per_s.is_some_and(|s| s < 0.95 * fastest))
                .map(|l| l.link)
                .collect();
            active += gpu.links.len() - down.len();
            if !down.is_empty() {
                problems.push(format!(
                    "GPU {}: {} of {} NVLinks down",
                    gpu.index,
                    down.len(),
                    gpu.links.len()
                ));
                evidence.push(seen(
                    format!("gpu {} nvlinks inactive", gpu.index),
                    down.len() as f64,
                    source,
                ));
            }
            if !slow.is_empty() {
                problems.push(format!(
                    "GPU {}: {} NVLinks below {fastest} GB/s",
                    gpu.index,
                    slow.len()
                ));
                evidence.push(seen(
                    format!("gpu {} nvlinks slow", gpu.index),
                    slow.len() as f64,
                    source,
                ));
            }
        }
        let gpu_count = match listed {
            1 => "1 GPU".to_string(),
            n => format!("{n} GPUs"),
        };
        if listed > 0 {
            fine.push(format!(
                "{active} NVLinks up at {fastest} GB/s on {gpu_count}"
            ));
        }
    }
    if let Some(most) = bonded.iter().map(|(_, _, n)| *n).max() {
        let source = topology.map_or("", |t| t.source.as_str());
        let fewer: Vec<&(&str, &str, u32)> = bonded.iter().filter(|(_, _, n)| *n < most).collect();
        for (a, b, n) in &fewer {
            evidence.push(seen(format!("{a}–{b} NV{n}"), f64::from(*n), source));
        }
        if fewer.is_empty() {
            fine.push(format!("every NVLink pair bonded by {most} links"));
        } else {
            uneven_bonds = true;
            problems.push(format!(
                "{} GPU pairs bonded by fewer links than NV{most} (NVSwitch systems bond every pair alike; a \
                 hybrid cube-mesh such as DGX-1's mixes NV1 and NV2 by design)",
                fewer.len()
            ));
        }
    }
    if let Some(((_, before), (source, after))) = error_window {
        let (compared, grown) = grown_counters(before, after);
        if !grown.is_empty() {
            let named: Vec<String> = grown
                .iter()
                .map(|g| {
                    format!(
                        "GPU {} link {} {} +{}",
                        g.gpu, g.link, g.counter, g.increase
                    )
                })
                .collect();
            problems.push(format!(
                "{} NVLink error counters grew over the probe ({})",
                grown.len(),
                named.join(", ")
            ));
            for g in &grown {
                evidence.push(seen(
                    format!("gpu {} nvlink {} {} increase", g.gpu, g.link, g.counter),
                    g.increase as f64,
                    source,
                ));
            }
        } else if compared > 0 {
            fine.push(format!(
                "{compared} NVLink error counters unchanged over the probe"
            ));
        }
    }
    if problems.is_empty() {
        if fine.is_empty() {
            return NVLINK_DEGRADED.unknown(
                "NVLink state (`nvidia-smi nvlink -s` listed no link)",
                how::TOPOLOGY,
            );
        }
        return NVLINK_DEGRADED.passes(fine.join("; "));
    }
    // Links reported down are facts; uneven bonds alone may be the design.
    let confidence = if uneven_bonds && problems.len() == 1 {
        Confidence::Medium
    } else {
        Confidence::High
    };
    NVLINK_DEGRADED.fires(Severity::Warning, confidence, problems.join("; "), evidence)
}
