//! Several simulated replicas behind a router the simulator implements (round-robin, least-request, prefix-aware,
//! random), with per-replica setups and outages, so the fleet rules have a fleet to judge on either clock.

use std::collections::HashMap;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::core::SimCore;
use crate::des::{Arrivals, Outcome, Sample};
use crate::engine::{NewRequest, Step};
use crate::metrics::KvTransfer;
use crate::setup::{Built, SimSetup};

/// How the router picks a replica for a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RouterKind {
    RoundRobin,
    /// The replica with the fewest requests running and waiting (nginx `least_conn`, llm-d's queue scorer).
    LeastRequest,
    /// The replica that most recently served the longest prefix of the request's blocks (llm-d's prefix-cache
    /// scorer), else least-request.
    PrefixAware,
    Random,
}

impl RouterKind {
    pub const ALL: [RouterKind; 4] = [
        RouterKind::RoundRobin,
        RouterKind::LeastRequest,
        RouterKind::PrefixAware,
        RouterKind::Random,
    ];

    pub fn name(self) -> &'static str {
        match self {
            RouterKind::RoundRobin => "round-robin",
            RouterKind::LeastRequest => "least-request",
            RouterKind::PrefixAware => "prefix-aware",
            RouterKind::Random => "random",
        }
    }

    pub fn parse(name: &str) -> Option<RouterKind> {
        RouterKind::ALL.into_iter().find(|k| k.name() == name)
    }
}

/// Prompt blocks the prefix-aware router remembers per request: enough for long shared system prompts, bounded
/// so its table grows with traffic by a fixed amount per request.
const PREFIX_ROUTING_BLOCKS: usize = 256;

/// The router's state: its rotation, its random stream and, for prefix-aware routing, which replica last
/// served each prefix block.
pub struct Router {
    kind: RouterKind,
    next: usize,
    rng: StdRng,
    owners: HashMap<u64, usize>,
}

impl Router {
    pub fn new(kind: RouterKind, seed: u64) -> Router {
        Router {
            kind,
            next: 0,
            rng: StdRng::seed_from_u64(seed ^ 0x0007_0a7e),
            owners: HashMap::new(),
        }
    }

    pub fn kind(&self) -> RouterKind {
        self.kind
    }

    /// The replica for a request with these prompt block hashes, given each replica's requests in the system
    /// (`None` for a replica that is down and out of rotation); `None` when every replica is down.
    pub fn pick(&mut self, block_hashes: &[u64], loads: &[Option<u32>]) -> Option<usize> {
        let n = loads.len();
        let up: Vec<usize> = (0..n).filter(|&i| loads[i].is_some()).collect();
        if up.is_empty() {
            return None;
        }
        let least = |start: usize| {
            // Ties go round the ring from `start`, so equal replicas share the traffic.
            (0..n)
                .map(|k| (start + k) % n)
                .filter(|&i| loads[i].is_some())
                .min_by_key(|&i| loads[i])
        };
        let chosen = match self.kind {
            RouterKind::RoundRobin => {
                let i = (0..n)
                    .map(|k| (self.next + k) % n)
                    .find(|&i| loads[i].is_some());
                self.next = i.map_or(self.next, |i| i + 1) % n;
                i
            }
            RouterKind::Random => Some(up[self.rng.random_range(0..up.len())]),
            RouterKind::LeastRequest => {
                let i = least(self.next);
                self.next = (self.next + 1) % n;
                i
            }
            RouterKind::PrefixAware => {
                let owned = block_hashes
                    .iter()
                    .take(PREFIX_ROUTING_BLOCKS)
                    .map_while(|h| self.owners.get(h).copied())
                    .filter(|&i| loads.get(i).is_some_and(Option::is_some))
                    .last();
                let i = owned.or_else(|| least(self.next));
                self.next = (self.next + 1) % n;
                i
            }
        }?;
        if self.kind == RouterKind::PrefixAware {
            for &h in block_hashes.iter().take(PREFIX_ROUTING_BLOCKS) {
                self.owners.insert(h, chosen);
            }
        }
        Some(chosen)
    }
}

/// A span of the run during which a replica is down: unreachable, out of rotation, its requests retried
/// elsewhere; it comes back as a fresh process (counters from zero, an empty prefix cache).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Outage {
    pub from: f64,
    pub to: f64,
}

/// One replica's setup, named as its `pod` label.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ReplicaSpec {
    pub pod: String,
    pub setup: SimSetup,
    pub outage: Option<Outage>,
}

/// The network a prefill replica's KV crosses to its decode replica.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct KvLink {
    /// Effective bandwidth of one transfer, in Gbit/s.
    pub gbps: f64,
    /// Fixed cost of one transfer (connection, descriptor posting, notification), in seconds.
    pub latency_s: f64,
    /// Share of transfers that fail (the decode replica then computes the prompt itself).
    pub failure_rate: f64,
}

impl KvLink {
    /// NIXL over UCX on InfiniBand/RoCE: 400 Gbit/s, tens of microseconds per transfer.
    pub const RDMA: KvLink = KvLink {
        gbps: 400.0,
        latency_s: 50e-6,
        failure_rate: 0.0,
    };
    /// UCX's TCP fallback when no RDMA device is usable: about 10 Gbit/s a flow, a millisecond to set up.
    pub const TCP: KvLink = KvLink {
        gbps: 10.0,
        latency_s: 1e-3,
        failure_rate: 0.0,
    };

    fn seconds(&self, bytes: f64) -> f64 {
        self.latency_s + bytes * 8.0 / (self.gbps * 1e9)
    }
}

/// Prefill/decode disaggregation: the first `prefill` replicas compute prompts, the rest pull the KV over `link`
/// and generate (vLLM's NixlConnector, as llm-d deploys it).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Disaggregation {
    pub prefill: u32,
    pub link: KvLink,
}

/// A whole fleet: the replicas and the router in front of them.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct FleetSetup {
    pub router: RouterKind,
    pub replicas: Vec<ReplicaSpec>,
    pub disaggregation: Option<Disaggregation>,
}

impl FleetSetup {
    /// `n` replicas of one setup, `sim-0`…, each seeded apart so their jitter differs.
    pub fn uniform(setup: &SimSetup, n: u32, router: RouterKind) -> FleetSetup {
        FleetSetup {
            router,
            replicas: (0..n)
                .map(|i| ReplicaSpec {
                    pod: pod_name(i as usize),
                    setup: SimSetup {
                        seed: setup.seed.wrapping_add(u64::from(i)),
                        ..setup.clone()
                    },
                    outage: None,
                })
                .collect(),
            disaggregation: None,
        }
    }

    pub fn build(&self) -> Result<Fleet, infer_doctor_plan::HardwareError> {
        let prefill = self.disaggregation.map_or(0, |d| d.prefill as usize);
        if self.disaggregation.is_some() && (prefill == 0 || prefill >= self.replicas.len()) {
            return Err(infer_doctor_plan::HardwareError::InvalidSetting {
                setting: "prefill_replicas",
                value: prefill.to_string(),
                expected: format!(
                    "at least one prefill and one decode replica among {}",
                    self.replicas.len()
                ),
            });
        }
        let mut replicas = self
            .replicas
            .iter()
            .map(|spec| {
                Ok(Replica {
                    built: spec.setup.build()?,
                    spec: spec.clone(),
                    in_flight: None,
                    up: true,
                    restarts: 0,
                })
            })
            .collect::<Result<Vec<_>, infer_doctor_plan::HardwareError>>()?;
        for r in replicas.iter_mut().skip(prefill).filter(|_| prefill > 0) {
            r.built.core.metrics.enable_nixl();
        }
        let seed = self.replicas.first().map_or(0, |r| r.setup.seed);
        Ok(Fleet {
            router: Router::new(self.router, seed),
            replicas,
            assigned: HashMap::new(),
            disaggregation: self.disaggregation,
            transfers: Vec::new(),
            arrivals: HashMap::new(),
            rng: StdRng::seed_from_u64(seed ^ 0x4b76),
        })
    }
}

/// The `pod` label of replica `i`.
pub fn pod_name(i: usize) -> String {
    format!("sim-{i}")
}

pub struct Replica {
    pub spec: ReplicaSpec,
    pub built: Built,
    in_flight: Option<(Step, f64)>,
    pub up: bool,
    /// Times it came back from an outage as a new process.
    pub restarts: u32,
}

impl Replica {
    pub fn core(&self) -> &SimCore {
        &self.built.core
    }

    fn load(&self) -> Option<u32> {
        self.up
            .then(|| self.built.core.engine.running() + self.built.core.engine.waiting())
    }
}

/// A built fleet on the discrete-event clock.
pub struct Fleet {
    pub router: Router,
    pub replicas: Vec<Replica>,
    /// Requests in the fleet: where each went and what it was, so an outage can retry it elsewhere.
    assigned: HashMap<u64, (usize, NewRequest, f64)>,
    disaggregation: Option<Disaggregation>,
    /// KV on its way from a prefill replica: when it lands, the request, and the transfer.
    transfers: Vec<(f64, NewRequest, KvTransfer)>,
    /// When each request reached the fleet, for the client's view of a request served in two legs.
    arrivals: HashMap<u64, f64>,
    /// Draws which transfers fail.
    rng: StdRng,
}

impl Fleet {
    /// Whether replica `i` prefills for decode replicas.
    pub fn is_prefill(&self, i: usize) -> bool {
        self.disaggregation.is_some_and(|d| i < d.prefill as usize)
    }

    /// The router's pick among the replicas of one role (all of them without disaggregation).
    fn pick(&mut self, block_hashes: &[u64], prefill: bool) -> Option<usize> {
        let split = self.disaggregation.is_some();
        let loads: Vec<Option<u32>> = (0..self.replicas.len())
            .map(|i| {
                (!split || self.is_prefill(i) == prefill)
                    .then(|| self.replicas[i].load())
                    .flatten()
            })
            .collect();
        self.router.pick(block_hashes, &loads)
    }

    /// Routes a request arriving at `at` (to a prefill replica for one token when disaggregated); false when no
    /// replica is up to take it.
    fn route(&mut self, request: NewRequest, at: f64) -> bool {
        let Some(i) = self.pick(&request.block_hashes, true) else {
            return false;
        };
        self.arrivals.entry(request.id).or_insert(at);
        self.assigned.insert(request.id, (i, request.clone(), at));
        let leg = if self.is_prefill(i) {
            NewRequest {
                max_tokens: 1,
                stop_after: None,
                min_tokens: 0,
                ..request
            }
        } else {
            request
        };
        self.replicas[i].built.core.add(leg, at);
        true
    }

    /// A prefill leg finished at `now` on replica `from`: its KV starts over the link to a decode replica.
    fn send_kv(&mut self, id: u64, from: usize, now: f64) {
        let (Some(link), Some((_, request, _))) = (
            self.disaggregation.map(|d| d.link),
            self.assigned.remove(&id),
        ) else {
            return;
        };
        let built = &self.replicas[from].built;
        let tp = built.deployment.tensor_parallel;
        let per_token = built
            .model
            .kv_bytes_per_token_per_rank(built.deployment.kv_cache_dtype, tp)
            as f64
            * f64::from(tp);
        let bytes = per_token * f64::from(request.prompt_tokens);
        let blocks = request.prompt_tokens.div_ceil(built.scheduler.block_size);
        let failed = self.rng.random_bool(link.failure_rate.clamp(0.0, 1.0));
        let transfer = KvTransfer {
            seconds: link.seconds(bytes),
            post_seconds: link.latency_s,
            bytes,
            descriptors: u64::from(blocks) * built.model.num_layers,
            failed,
        };
        self.transfers
            .push((now + transfer.seconds, request, transfer));
    }

    /// Transfers landed by `now` join a decode replica; those no decode replica can take wait.
    fn land_transfers(&mut self, now: f64) {
        let (landed, flying): (Vec<_>, Vec<_>) = std::mem::take(&mut self.transfers)
            .into_iter()
            .partition(|(at, _, _)| *at <= now);
        self.transfers = flying;
        for (at, request, transfer) in landed {
            match self.pick(&request.block_hashes, false) {
                Some(i) => {
                    self.assigned.insert(request.id, (i, request.clone(), at));
                    // The decode replica's clock starts when the request reaches it, before the pull.
                    let reached = at - transfer.seconds;
                    self.replicas[i]
                        .built
                        .core
                        .add_transferred(request, reached, &transfer);
                }
                None => self.transfers.push((now, request, transfer)),
            }
        }
    }

    /// Takes replicas down and brings them back as their outages say, at `now`; returns the requests of a
    /// replica gone down that no other could take.
    fn apply_outages(
        &mut self,
        now: f64,
    ) -> Result<Vec<(NewRequest, f64)>, infer_doctor_plan::HardwareError> {
        let mut orphans = Vec::new();
        for i in 0..self.replicas.len() {
            let Some(outage) = self.replicas[i].spec.outage else {
                continue;
            };
            let up = self.replicas[i].up;
            if up && now >= outage.from && now < outage.to {
                self.replicas[i].up = false;
                self.replicas[i].in_flight = None;
                // Its requests die with it; the gateway retries each on a live replica, as sent.
                let lost: Vec<u64> = self
                    .assigned
                    .iter()
                    .filter(|(_, (replica, _, _))| *replica == i)
                    .map(|(id, _)| *id)
                    .collect();
                for id in lost {
                    let (_, request, arrived) = self.assigned.remove(&id).expect("listed above");
                    if !self.route(request.clone(), arrived) {
                        orphans.push((request, arrived));
                    }
                }
            } else if !up && now >= outage.to {
                let r = &mut self.replicas[i];
                r.built = r.spec.setup.build()?;
                r.up = true;
                r.restarts += 1;
            }
        }
        Ok(orphans)
    }

    /// The next time an outage starts or ends after `now`.
    fn next_outage_edge(&self, now: f64) -> Option<f64> {
        self.replicas
            .iter()
            .filter_map(|r| r.spec.outage)
            .flat_map(|o| [o.from, o.to])
            .filter(|&t| t > now)
            .min_by(f64::total_cmp)
    }

    fn sample(&self, t: f64, finished: usize) -> Sample {
        let up: Vec<&SimCore> = self
            .replicas
            .iter()
            .filter(|r| r.up)
            .map(Replica::core)
            .collect();
        let mut s = Sample {
            t,
            running: 0,
            waiting: 0,
            kv_usage: 0.0,
            prompt_tokens: 0,
            generation_tokens: 0,
            preemptions: 0,
            finished: finished as u64,
        };
        for core in &up {
            let totals = core.totals();
            s.running += core.engine.running();
            s.waiting += core.engine.waiting();
            s.kv_usage += core.engine.kv_usage() / up.len() as f64;
            s.prompt_tokens += totals.prompt_tokens;
            s.generation_tokens += totals.generation_tokens;
            s.preemptions += totals.preemptions;
        }
        s
    }
}

/// [`crate::des::run_observed`] for a fleet: requests go through the router, every replica steps on its own, and
/// `observe` sees the whole fleet at each sampling time.
pub fn run(
    fleet: &mut Fleet,
    arrivals: &Arrivals,
    mut request: impl FnMut(u64) -> NewRequest,
    sample_every: f64,
    horizon: f64,
    keep_token_times: bool,
    mut observe: impl FnMut(f64, &Fleet),
) -> Result<Outcome, infer_doctor_plan::HardwareError> {
    let mut out = Outcome::default();
    let (open_times, total): (&[f64], u64) = match arrivals {
        Arrivals::Open { times } => (times, times.len() as u64),
        Arrivals::Closed { requests, .. } => (&[], *requests),
    };
    let mut sent = 0u64;
    // Requests no replica could take (all down) wait at the gateway for the next one up.
    let mut held: Vec<(NewRequest, f64)> = Vec::new();
    if let Arrivals::Closed { users, requests } = arrivals {
        for i in 0..u64::from(*users).min(*requests) {
            held.push((request(i), 0.0));
        }
        sent = u64::from(*users).min(*requests);
    }
    let mut now = 0.0;
    let mut next_sample = 0.0;
    loop {
        held.extend(fleet.apply_outages(now)?);
        while (sent as usize) < open_times.len() && open_times[sent as usize] <= now {
            held.push((request(sent), open_times[sent as usize]));
            sent += 1;
        }
        fleet.land_transfers(now);
        let waiting = std::mem::take(&mut held);
        for (r, at) in waiting {
            if !fleet.route(r.clone(), at) {
                held.push((r, at));
            }
        }
        for r in fleet
            .replicas
            .iter_mut()
            .filter(|r| r.up && r.in_flight.is_none())
        {
            if r.built.core.has_work()
                && let Some((step, seconds)) = r.built.core.begin_step(now)
            {
                r.in_flight = Some((step, now + seconds));
            }
        }
        let next = fleet
            .replicas
            .iter()
            .filter_map(|r| r.in_flight.as_ref().map(|(_, end)| *end))
            .chain(open_times.get(sent as usize).copied())
            .chain(fleet.next_outage_edge(now))
            .chain(
                fleet
                    .transfers
                    .iter()
                    .map(|(at, _, _)| *at)
                    .filter(|&at| at > now),
            )
            .min_by(f64::total_cmp);
        let Some(next) =
            next.filter(|&t| t <= horizon || fleet.replicas.iter().any(|r| r.in_flight.is_some()))
        else {
            break;
        };
        while next_sample < next.min(horizon) {
            out.series
                .push(fleet.sample(next_sample, out.finished.len()));
            observe(next_sample, fleet);
            next_sample += sample_every;
        }
        now = next;
        for i in 0..fleet.replicas.len() {
            let due = fleet.replicas[i]
                .in_flight
                .as_ref()
                .is_some_and(|(_, end)| *end <= now);
            if !due {
                continue;
            }
            let (step, end) = fleet.replicas[i].in_flight.take().expect("due");
            let prefill = fleet.is_prefill(i);
            for token in fleet.replicas[i].built.core.end_step(&step, end) {
                if prefill {
                    // The prefill replica's one token stays inside the fleet; its KV goes on to decode.
                    if token.finished.is_some() {
                        fleet.send_kv(token.id, i, end);
                    }
                    continue;
                }
                if keep_token_times {
                    out.token_times.entry(token.id).or_default().push(token.at);
                }
                if let Some(mut done) = token.finished {
                    fleet.assigned.remove(&done.id);
                    if let Some(arrived) = fleet.arrivals.remove(&done.id) {
                        done.times.arrived = arrived;
                    }
                    out.finished.push(done);
                    if matches!(arrivals, Arrivals::Closed { .. }) && sent < total {
                        held.push((request(sent), end));
                        sent += 1;
                    }
                }
            }
        }
        if now > horizon {
            break;
        }
    }
    out.series.push(fleet.sample(now, out.finished.len()));
    out.steps = fleet.replicas.iter().map(|r| r.core().steps()).sum();
    out.simulated_seconds = now;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::des::synthetic_request;

    fn loads(values: &[Option<u32>]) -> Vec<Option<u32>> {
        values.to_vec()
    }

    #[test]
    fn round_robin_rotates_and_skips_a_replica_that_is_down() {
        let mut router = Router::new(RouterKind::RoundRobin, 0);
        let all_up = loads(&[Some(0), Some(0), Some(0)]);
        let picks: Vec<usize> = (0..4).map(|_| router.pick(&[], &all_up).unwrap()).collect();
        assert_eq!(picks, vec![0, 1, 2, 0]);
        let one_down = loads(&[Some(0), None, Some(0)]);
        let picks: Vec<usize> = (0..3)
            .map(|_| router.pick(&[], &one_down).unwrap())
            .collect();
        assert_eq!(picks, vec![2, 0, 2]);
        assert_eq!(router.pick(&[], &[None, None]), None);
    }

    #[test]
    fn least_request_picks_the_emptiest_replica() {
        let mut router = Router::new(RouterKind::LeastRequest, 0);
        assert_eq!(
            router.pick(&[], &loads(&[Some(5), Some(1), Some(3)])),
            Some(1)
        );
        assert_eq!(router.pick(&[], &loads(&[Some(5), None, Some(3)])), Some(2));
    }

    #[test]
    fn prefix_aware_keeps_a_prefix_on_the_replica_that_served_it() {
        let mut router = Router::new(RouterKind::PrefixAware, 0);
        // Two requests sharing their first two blocks, one unrelated.
        let first = [11, 12, 13];
        let same_prefix = [11, 12, 99];
        let other = [21, 22];
        let a = router.pick(&first, &loads(&[Some(0), Some(0)])).unwrap();
        // The replica that has it is busier, and still gets it: its cache holds the prefix.
        let busy = if a == 0 {
            [Some(9), Some(0)]
        } else {
            [Some(0), Some(9)]
        };
        assert_eq!(router.pick(&same_prefix, &busy), Some(a));
        // No known prefix: the least loaded.
        assert_eq!(router.pick(&other, &busy), Some(1 - a));
        // The owner went down: least-request among the rest.
        let mut down = busy;
        down[a] = None;
        assert_eq!(router.pick(&first, &down), Some(1 - a));
    }

    fn fleet_outcome(spec: &FleetSetup, users: u32, requests: u64) -> (Outcome, Fleet) {
        let mut fleet = spec.build().unwrap();
        let outcome = run(
            &mut fleet,
            &Arrivals::Closed { users, requests },
            |id| synthetic_request(id, 256, (0, 1), 32, None, 16),
            0.5,
            600.0,
            false,
            |_, _| {},
        )
        .unwrap();
        (outcome, fleet)
    }

    #[test]
    fn every_request_finishes_and_round_robin_splits_them_evenly() {
        let spec = FleetSetup::uniform(&SimSetup::default(), 3, RouterKind::RoundRobin);
        let (outcome, fleet) = fleet_outcome(&spec, 12, 90);
        assert_eq!(outcome.finished.len(), 90);
        let served: Vec<u64> = fleet
            .replicas
            .iter()
            .map(|r| r.core().totals().generation_tokens)
            .collect();
        assert_eq!(served, vec![30 * 32; 3], "{served:?}");
    }

    #[test]
    fn a_replica_in_an_outage_serves_nothing_and_comes_back_restarted() {
        let mut spec = FleetSetup::uniform(&SimSetup::default(), 2, RouterKind::RoundRobin);
        spec.replicas[1].outage = Some(Outage { from: 0.5, to: 1e6 });
        let (outcome, fleet) = fleet_outcome(&spec, 8, 200);
        // Nothing lost: its requests were retried on the other.
        assert_eq!(outcome.finished.len(), 200);
        assert!(!fleet.replicas[1].up);
        let mut back = FleetSetup::uniform(&SimSetup::default(), 2, RouterKind::RoundRobin);
        back.replicas[1].outage = Some(Outage { from: 0.5, to: 1.5 });
        let (outcome, fleet) = fleet_outcome(&back, 8, 200);
        assert_eq!(outcome.finished.len(), 200);
        assert_eq!(fleet.replicas[1].restarts, 1);
        assert!(fleet.replicas[1].core().totals().generation_tokens > 0);
    }

    /// One prefill and one decode replica, 4096-token prompts, the KV over `link`: every request's client-side
    /// TTFT and the decode replica's rendered metrics.
    fn split(link: KvLink) -> (Vec<f64>, String, String) {
        let mut spec = FleetSetup::uniform(&SimSetup::default(), 2, RouterKind::RoundRobin);
        spec.disaggregation = Some(Disaggregation { prefill: 1, link });
        let mut fleet = spec.build().unwrap();
        let outcome = run(
            &mut fleet,
            &Arrivals::Closed {
                users: 1,
                requests: 4,
            },
            |id| synthetic_request(id, 4096, (0, 1), 16, None, 16),
            0.5,
            600.0,
            false,
            |_, _| {},
        )
        .unwrap();
        assert_eq!(outcome.finished.len(), 4);
        let ttft = outcome
            .finished
            .iter()
            .map(|f| f.times.first_token.unwrap() - f.times.arrived)
            .collect();
        let render = |i: usize| fleet.replicas[i].core().metrics.render();
        (ttft, render(0), render(1))
    }

    #[test]
    fn a_split_prefills_on_one_replica_and_decodes_after_the_kv_crosses_the_link() {
        let (rdma, prefill, decode) = split(KvLink::RDMA);
        let (tcp, _, slow_decode) = split(KvLink::TCP);
        // Llama-3.1-8B keeps 128 KiB of KV per token: 512 MiB per prompt, 0.43 s at 10 Gbit/s, 11 ms at 400.
        let bytes = 4096.0 * 131072.0;
        let sample = |text: &str, name: &str| -> f64 {
            text.lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.rsplit(' ').next())
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("no {name}"))
        };
        assert_eq!(
            sample(&decode, "vllm:nixl_bytes_transferred_sum"),
            4.0 * bytes
        );
        assert_eq!(sample(&decode, "vllm:nixl_xfer_time_seconds_count"), 4.0);
        let tcp_each = sample(&slow_decode, "vllm:nixl_xfer_time_seconds_sum") / 4.0;
        assert!(
            (tcp_each - (1e-3 + bytes * 8.0 / 10e9)).abs() < 1e-9,
            "{tcp_each}"
        );
        // The prefill replica computed the prompts and no transfer; the decode replica computed none of them.
        assert!(!prefill.contains("nixl"));
        assert_eq!(sample(&prefill, "vllm:prompt_tokens_total"), 4.0 * 4096.0);
        assert_eq!(sample(&decode, "vllm:generation_tokens_total"), 4.0 * 16.0);
        for (slow, fast) in tcp.iter().zip(&rdma) {
            let gap = slow - fast;
            assert!(
                (gap - (tcp_each - (5e-5 + bytes * 8.0 / 400e9))).abs() < 0.02,
                "{slow} vs {fast}"
            );
        }
    }
}
