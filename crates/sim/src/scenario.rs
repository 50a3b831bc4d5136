//! Named presets, one per playbook finding a server can show, plus `healthy`: each is a full setup of the
//! simulated server (model, GPU, engine arguments, faults) that reliably reproduces its finding under load.

use crate::fleet::{Disaggregation, FleetSetup, KvLink, Outage, RouterKind};
use crate::server::{Faults, StopModel};
use crate::setup::SimSetup;

pub struct Scenario {
    pub name: &'static str,
    /// The playbook finding (DESIGN.md §6 id) it produces under load; `None` for `healthy`.
    pub finding: Option<&'static str>,
    pub reproduces: &'static str,
    pub setup: fn() -> SimSetup,
    /// The traffic under which it shows (a probe that sends other traffic may not see it).
    pub workload: Workload,
    /// Several replicas behind a router, built from `setup` (flags applied): `None` for one server.
    pub fleet: Option<fn(&SimSetup) -> FleetSetup>,
}

/// Prompt and output lengths of the traffic a scenario is meant to be probed with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Workload {
    pub input_tokens: u32,
    pub output_tokens: u32,
    /// Tokens of shared prefix added before each prompt (as bench's `--prefix-tokens`), in `prefix_groups`
    /// distinct prefixes.
    pub prefix_tokens: u32,
    pub prefix_groups: u32,
    /// Users in the loaded probe.
    pub users: u32,
}

/// Chat-like traffic: 512-token prompts, up to 256 tokens out.
pub const CHAT: Workload = Workload {
    input_tokens: 512,
    output_tokens: 256,
    prefix_tokens: 0,
    prefix_groups: 1,
    users: 32,
};

/// Every scenario, `healthy` first.
pub fn all() -> &'static [Scenario] {
    &SCENARIOS
}

pub fn find(name: &str) -> Option<&'static Scenario> {
    SCENARIOS.iter().find(|s| s.name == name)
}

/// KV blocks for about `requests` requests of 512 + 256 tokens at once.
fn blocks_for_requests(requests: u32) -> u32 {
    requests * 768 / 16
}

static SCENARIOS: [Scenario; 18] = [
    Scenario {
        name: "healthy",
        finding: None,
        reproduces: "a well-sized server: no queue, KV well below full, ITL close to the hardware floor",
        setup: SimSetup::default,
        workload: CHAT,
        fleet: None,
    },
    Scenario {
        name: "kv-saturated",
        finding: Some("capacity.kv_saturated"),
        reproduces: "fine for one user; under load the KV cache fills, requests wait for blocks and TTFT climbs",
        setup: || SimSetup {
            num_gpu_blocks_override: Some(blocks_for_requests(12)),
            ..SimSetup::default()
        },
        workload: CHAT,
        fleet: None,
    },
    Scenario {
        name: "batch-capped",
        finding: Some("capacity.batch_cap"),
        reproduces: "max-num-seqs 4: requests queue while the KV cache sits mostly empty",
        setup: || SimSetup {
            max_num_seqs: Some(4),
            ..SimSetup::default()
        },
        workload: CHAT,
        fleet: None,
    },
    Scenario {
        name: "preemption-storm",
        finding: Some("capacity.preemptions"),
        reproduces: "long outputs in a tight KV pool: running requests are preempted and recomputed",
        setup: || SimSetup {
            num_gpu_blocks_override: Some(blocks_for_requests(6)),
            max_model_len: 4096,
            stop: StopModel::LogNormal {
                median: 900.0,
                sigma: 0.3,
            },
            ..SimSetup::default()
        },
        // Outputs long enough that running requests outgrow the pool while they generate.
        workload: Workload {
            output_tokens: 1200,
            users: 16,
            ..CHAT
        },
        fleet: None,
    },
    Scenario {
        name: "long-prompts",
        finding: Some("ttft.prefill_bound"),
        reproduces: "a 70B model on two H200s fed 16k-token prompts: prefill dominates TTFT with no queue",
        setup: || SimSetup {
            model: "llama-3.1-70b".into(),
            served_model_name: "sim-llama-3.1-70b".into(),
            gpu: "h200".into(),
            tensor_parallel_size: 2,
            max_model_len: 32768,
            ..SimSetup::default()
        },
        // A few users: long prompts alone, not a full KV cache, make the first token late.
        workload: Workload {
            input_tokens: 16000,
            output_tokens: 128,
            users: 4,
            ..CHAT
        },
        fleet: None,
    },
    Scenario {
        name: "batch-latency",
        finding: Some("itl.batch_size"),
        reproduces: "long contexts batched on an L40S: ITL under load is twice the single-user ITL, with no queue",
        setup: || SimSetup {
            gpu: "l40s".into(),
            max_model_len: 4096,
            ..SimSetup::default()
        },
        workload: Workload {
            input_tokens: 2048,
            ..CHAT
        },
        fleet: None,
    },
    Scenario {
        name: "slow-decode",
        finding: Some("itl.single_user_slow"),
        reproduces: "a throttled A100 40GB: ITL at concurrency 1 far above the GPU's memory-bandwidth floor",
        setup: || SimSetup {
            gpu: "a100-40gb".into(),
            throttle: 2.5,
            max_model_len: 4096,
            ..SimSetup::default()
        },
        workload: CHAT,
        fleet: None,
    },
    Scenario {
        name: "tp-over-pcie",
        finding: Some("itl.single_user_slow"),
        reproduces: "70B with tensor parallelism 4 over PCIe instead of NVLink: every step pays slow all-reduces",
        setup: || SimSetup {
            model: "llama-3.1-70b".into(),
            served_model_name: "sim-llama-3.1-70b".into(),
            gpu: "h100".into(),
            tensor_parallel_size: 4,
            pcie: true,
            ..SimSetup::default()
        },
        workload: CHAT,
        fleet: None,
    },
    Scenario {
        name: "upstream-bottleneck",
        finding: Some("upstream.bottleneck"),
        reproduces: "a gateway in front admits 4 requests at once: the engine idles while clients wait",
        setup: || SimSetup {
            faults: Faults {
                gateway_limit: Some(4),
                ..SimSetup::default().faults
            },
            ..SimSetup::default()
        },
        workload: CHAT,
        fleet: None,
    },
    Scenario {
        name: "errors",
        finding: Some("errors.rate"),
        reproduces: "8% of requests fail with HTTP 503 and 2% of streams are cut mid-response",
        setup: || SimSetup {
            faults: Faults {
                error_rate: 0.08,
                error_status: 503,
                disconnect_rate: 0.02,
                ..SimSetup::default().faults
            },
            ..SimSetup::default()
        },
        workload: CHAT,
        fleet: None,
    },
    Scenario {
        name: "runaway-generation",
        finding: Some("output.runaway"),
        reproduces: "the stop token never comes (a broken chat template): every request runs to max_tokens",
        setup: || SimSetup {
            stop: StopModel::Never,
            ..SimSetup::default()
        },
        workload: CHAT,
        fleet: None,
    },
    Scenario {
        name: "cold-start",
        finding: Some("ttft.cold_start"),
        reproduces: "the first 20 s run 8× slower (no warm-up: compilation and graph capture on live traffic)",
        setup: || SimSetup {
            cold_seconds: 20.0,
            cold_factor: 8.0,
            ..SimSetup::default()
        },
        workload: CHAT,
        fleet: None,
    },
    Scenario {
        name: "prefix-cache-miss",
        finding: Some("cache.prefix_low_hit"),
        reproduces: "prefix caching disabled while the workload shares long prefixes",
        setup: || SimSetup {
            enable_prefix_caching: false,
            ..SimSetup::default()
        },
        workload: Workload {
            input_tokens: 256,
            prefix_tokens: 768,
            prefix_groups: 4,
            ..CHAT
        },
        fleet: None,
    },
    Scenario {
        name: "degrading",
        finding: Some("throughput.degraded_over_time"),
        // Compressed, so a probe of a minute sees what a leak or fragmentation does over hours of traffic.
        reproduces: "every 10,000 tokens served make steps 200% slower (a leak, fragmentation): tokens/s falls as the run goes on",
        setup: || SimSetup {
            degrade_per_10k_tokens: 2.0,
            ..SimSetup::default()
        },
        workload: CHAT,
        fleet: None,
    },
    Scenario {
        name: "imbalanced-routing",
        finding: Some("fleet.load_skew"),
        reproduces: "three replicas behind round-robin, one of them with max-num-seqs 4: the weak pod's queue \
                     grows while its peers have room",
        setup: SimSetup::default,
        workload: CHAT,
        fleet: Some(|setup| {
            let mut fleet = FleetSetup::uniform(setup, 3, RouterKind::RoundRobin);
            fleet.replicas[2].setup.max_num_seqs = Some(4);
            fleet
        }),
    },
    Scenario {
        name: "replica-down",
        finding: Some("fleet.replica_down"),
        reproduces: "three replicas, one down for 1.5 s mid-run and back as a new process (counters from zero); \
                     its requests are retried on the others",
        setup: SimSetup::default,
        workload: CHAT,
        fleet: Some(|setup| {
            let mut fleet = FleetSetup::uniform(setup, 3, RouterKind::RoundRobin);
            fleet.replicas[1].outage = Some(Outage { from: 3.0, to: 4.5 });
            fleet
        }),
    },
    Scenario {
        name: "cache-unaware-routing",
        finding: Some("fleet.cache_unaware_routing"),
        reproduces: "three replicas behind round-robin, one 1024-token prefix per conversation: each prefix is \
                     computed on every pod (--router prefix-aware keeps it on one)",
        setup: SimSetup::default,
        workload: Workload {
            input_tokens: 128,
            output_tokens: 256,
            prefix_tokens: 1024,
            prefix_groups: 32,
            users: 32,
        },
        fleet: Some(|setup| FleetSetup::uniform(setup, 3, RouterKind::RoundRobin)),
    },
    Scenario {
        name: "pd-transfer-slow",
        finding: Some("pd.kv_transfer_slow"),
        reproduces: "prefill/decode split (1 prefill, 2 decode replicas) whose KV moves over TCP at 10 Gbit/s \
                     instead of RDMA: 4k-token prompts wait on the transfer longer than on the prefill",
        setup: SimSetup::default,
        workload: Workload {
            input_tokens: 4096,
            users: 16,
            ..CHAT
        },
        fleet: Some(|setup| FleetSetup {
            disaggregation: Some(Disaggregation {
                prefill: 1,
                link: KvLink::TCP,
            }),
            ..FleetSetup::uniform(setup, 3, RouterKind::LeastRequest)
        }),
    },
];
