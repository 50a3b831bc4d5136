//! vLLM V1's scheduler, step by step: running requests first, then waiting ones, under the token budget and
//! the sequence cap, with KV blocks allocated per step, preemption by recompute and prefix-cache hits.

use std::collections::{HashMap, VecDeque};

use crate::kv::{BlockId, BlockPool};
pub use crate::metrics::FinishReason;
use infer_doctor_plan::StepWork;

/// The scheduler's limits, named as vLLM's engine arguments.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct SchedulerConfig {
    pub block_size: u32,
    pub num_gpu_blocks: u32,
    pub max_num_seqs: u32,
    pub max_num_batched_tokens: u32,
    pub max_model_len: u32,
    pub enable_chunked_prefill: bool,
    pub enable_prefix_caching: bool,
    /// Largest prefill chunk one request may take per step; 0 = no limit.
    pub long_prefill_token_threshold: u32,
}

/// A request as the engine receives it.
#[derive(Clone, Debug)]
pub struct NewRequest {
    pub id: u64,
    pub prompt_tokens: u32,
    /// Chained hashes of the prompt's full blocks (block `i` covers tokens `i·block_size..(i+1)·block_size`).
    pub block_hashes: Vec<u64>,
    pub max_tokens: u32,
    /// Where the model would emit its stop token; `None` under `ignore_eos`.
    pub stop_after: Option<u32>,
    pub min_tokens: u32,
}

/// When things happened to one request, in engine seconds.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct RequestTimes {
    pub arrived: f64,
    pub scheduled: Option<f64>,
    pub first_token: Option<f64>,
    pub last_token: Option<f64>,
}

#[derive(Clone, Debug)]
struct Request {
    new: NewRequest,
    /// Tokens whose KV is computed (prompt and generated).
    computed: u32,
    generated: u32,
    blocks: Vec<BlockId>,
    times: RequestTimes,
    preemptions: u32,
    /// Prompt tokens served from the prefix cache when first scheduled.
    cached_prompt_tokens: u32,
    /// Prompt tokens whose KV this request computed itself, recomputation included.
    prefill_computed: u32,
    /// Prompt tokens whose KV another replica computed and sent (prefill/decode disaggregation), used at the
    /// first admission; a preempted request recomputes them.
    remote_kv: u32,
}

impl Request {
    fn num_tokens(&self) -> u32 {
        self.new.prompt_tokens + self.generated
    }

    /// Why it stops after `generated` tokens, if it does.
    fn finish(&self, max_model_len: u32) -> Option<FinishReason> {
        let n = self.generated;
        if self
            .new
            .stop_after
            .is_some_and(|s| n >= s.max(self.new.min_tokens))
        {
            Some(FinishReason::Stop)
        } else if n >= self.new.max_tokens || self.num_tokens() >= max_model_len {
            Some(FinishReason::Length)
        } else {
            None
        }
    }
}

/// One scheduled batch, waiting for its forward pass to finish.
#[derive(Clone, Debug, Default)]
pub struct Step {
    /// (request, tokens computed for it in this step).
    pub scheduled: Vec<(u64, u32)>,
    pub work: StepWork,
    pub preempted: Vec<u64>,
    /// New requests admitted this step, the prompt tokens they looked up in the prefix cache, and how many of
    /// those were found (resumed requests do not look up again).
    pub prefix_requests: u64,
    pub prefix_queries: u64,
    pub prefix_hits: u64,
}

/// A token produced by a finished step.
#[derive(Clone, Debug, PartialEq)]
pub struct Emitted {
    pub id: u64,
    /// 1 for the first token.
    pub index: u32,
    /// Since arrival for the first token (TTFT), else since the previous token (ITL).
    pub since_previous: f64,
    pub prompt_tokens: u32,
    pub cached_prompt_tokens: u32,
    pub finished: Option<Finished>,
}

/// Everything the metrics need about a request that left the engine.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Finished {
    pub id: u64,
    pub reason: FinishReason,
    pub prompt_tokens: u32,
    pub generated: u32,
    pub max_tokens: u32,
    pub times: RequestTimes,
    pub preemptions: u32,
    pub cached_prompt_tokens: u32,
    pub prefill_computed: u32,
}

#[derive(Clone, Debug)]
pub struct Engine {
    config: SchedulerConfig,
    pool: BlockPool,
    requests: HashMap<u64, Request>,
    waiting: VecDeque<u64>,
    running: Vec<u64>,
}

impl Engine {
    pub fn new(config: SchedulerConfig) -> Engine {
        Engine {
            pool: BlockPool::new(config.num_gpu_blocks),
            config,
            requests: HashMap::new(),
            waiting: VecDeque::new(),
            running: Vec::new(),
        }
    }

    pub fn config(&self) -> &SchedulerConfig {
        &self.config
    }

    pub fn add(&mut self, new: NewRequest, now: f64) {
        self.add_with_remote_kv(new, now, 0);
    }

    /// A request whose first `remote_kv` prompt tokens' KV arrived from a prefill replica: it skips their
    /// prefill as a prefix-cache hit would, though the last prompt token is computed to sample from.
    pub fn add_with_remote_kv(&mut self, new: NewRequest, now: f64, remote_kv: u32) {
        let id = new.id;
        self.requests.insert(
            id,
            Request {
                new,
                computed: 0,
                generated: 0,
                blocks: Vec::new(),
                times: RequestTimes {
                    arrived: now,
                    ..Default::default()
                },
                preemptions: 0,
                cached_prompt_tokens: 0,
                prefill_computed: 0,
                remote_kv,
            },
        );
        self.waiting.push_back(id);
    }

    /// Drops a request the client gave up on, freeing its blocks.
    pub fn abort(&mut self, id: u64, now: f64) -> Option<Finished> {
        let req = self.requests.remove(&id)?;
        self.waiting.retain(|&w| w != id);
        self.running.retain(|&r| r != id);
        self.pool.release(&req.blocks);
        Some(finished(req, FinishReason::Abort, now))
    }

    pub fn has_work(&self) -> bool {
        !self.waiting.is_empty() || !self.running.is_empty()
    }

    pub fn running(&self) -> u32 {
        self.running.len() as u32
    }

    /// Requests waiting to be scheduled. All of them wait for capacity (KV blocks, a sequence slot, token
    /// budget): vLLM's other reason, "deferred", is for LoRA budgets and KV transfers, which are not simulated.
    pub fn waiting(&self) -> u32 {
        self.waiting.len() as u32
    }

    pub fn kv_usage(&self) -> f64 {
        self.pool.usage()
    }

    /// Decides the next batch (vLLM's `schedule()`), allocating its KV blocks; `now` stamps first scheduling.
    pub fn schedule(&mut self, now: f64) -> Step {
        let mut step = Step::default();
        let mut budget = self.config.max_num_batched_tokens;
        let mut i = 0;
        while i < self.running.len() && budget > 0 {
            let id = self.running[i];
            let n = self.chunk(&self.requests[&id], budget);
            if n == 0 {
                i += 1;
                continue;
            }
            if !self.make_room(id, n, &mut step) {
                // The request preempted itself: nothing after it in `running` remains either.
                break;
            }
            self.note_work(id, n, &mut step);
            budget -= n;
            i += 1;
        }
        if step.preempted.is_empty() {
            self.admit(&mut step, &mut budget, now);
        }
        step
    }

    /// Tokens to compute for a request this step.
    fn chunk(&self, req: &Request, budget: u32) -> u32 {
        let mut n = req.num_tokens().saturating_sub(req.computed);
        if self.config.long_prefill_token_threshold > 0 {
            n = n.min(self.config.long_prefill_token_threshold);
        }
        n.min(budget)
    }

    fn blocks_for(&self, tokens: u32) -> u32 {
        tokens.div_ceil(self.config.block_size)
    }

    /// Allocates the blocks a running request needs for `n` more tokens, preempting from the tail of `running`
    /// until they fit. False when the request itself was the victim.
    fn make_room(&mut self, id: u64, n: u32, step: &mut Step) -> bool {
        loop {
            let req = &self.requests[&id];
            let need = self
                .blocks_for(req.computed + n)
                .saturating_sub(req.blocks.len() as u32);
            if let Some(blocks) = self.pool.allocate(need) {
                self.requests
                    .get_mut(&id)
                    .expect("running request exists")
                    .blocks
                    .extend(blocks);
                self.cache_full_blocks(id, n);
                return true;
            }
            let Some(victim) = self.running.pop() else {
                return false;
            };
            self.preempt(victim);
            step.preempted.push(victim);
            if victim == id {
                return false;
            }
        }
    }

    /// Recompute preemption: the victim loses its KV and goes to the front of the queue.
    fn preempt(&mut self, id: u64) {
        let req = self.requests.get_mut(&id).expect("running request exists");
        self.pool.release(&req.blocks);
        req.blocks.clear();
        req.computed = 0;
        req.preemptions += 1;
        self.waiting.push_front(id);
    }

    /// Admits waiting requests in order while budget, sequence cap and KV allow.
    fn admit(&mut self, step: &mut Step, budget: &mut u32, now: f64) {
        while let Some(&id) = self.waiting.front() {
            if *budget == 0 || self.running.len() as u32 >= self.config.max_num_seqs {
                return;
            }
            let req = &self.requests[&id];
            let first_time = req.times.scheduled.is_none();
            // A hit may not cover the whole prompt: the last token must be computed to sample from it.
            let hits = if self.config.enable_prefix_caching {
                let usable = (req.num_tokens() - 1) / self.config.block_size;
                let hashes: Vec<u64> = (0..usable as usize).map(|i| block_hash(req, i)).collect();
                self.pool.cached_prefix(&hashes)
            } else {
                Vec::new()
            };
            let computed = (hits.len() as u32 * self.config.block_size)
                .max(req.remote_kv.min(req.num_tokens() - 1));
            let mut n = req.num_tokens() - computed;
            if self.config.long_prefill_token_threshold > 0 {
                n = n.min(self.config.long_prefill_token_threshold);
            }
            if !self.config.enable_chunked_prefill && n > *budget {
                return;
            }
            n = n.min(*budget);
            let fresh = self.blocks_for(computed + n) - hits.len() as u32;
            if !self.pool.can_take(&hits, fresh) {
                return;
            }
            self.pool.take_hits(&hits);
            let blocks = self.pool.allocate(fresh).expect("checked above");
            self.waiting.pop_front();
            let req = self.requests.get_mut(&id).expect("waiting request exists");
            if first_time {
                // vLLM records prefix-cache stats only when the cache is on.
                if self.config.enable_prefix_caching {
                    step.prefix_requests += 1;
                    step.prefix_queries += u64::from(req.new.prompt_tokens);
                    step.prefix_hits += u64::from(computed);
                }
                req.cached_prompt_tokens = computed;
                req.times.scheduled = Some(now);
            }
            req.blocks = hits;
            req.blocks.extend(blocks);
            req.computed = computed;
            req.remote_kv = 0;
            self.running.push(id);
            self.cache_full_blocks(id, n);
            self.note_work(id, n, step);
            *budget -= n;
        }
    }

    /// Registers the request's blocks that will be full after `n` more tokens, at allocation as vLLM does, so a
    /// request admitted later in the same step can already share them.
    fn cache_full_blocks(&mut self, id: u64, n: u32) {
        if !self.config.enable_prefix_caching {
            return;
        }
        let req = &self.requests[&id];
        let full = ((req.computed + n).min(req.num_tokens()) / self.config.block_size) as usize;
        for (i, &block) in req.blocks.iter().enumerate().take(full) {
            self.pool.cache(block, block_hash(req, i));
        }
    }

    fn note_work(&mut self, id: u64, n: u32, step: &mut Step) {
        let req = &self.requests[&id];
        if req.computed >= req.new.prompt_tokens && n == 1 && req.generated > 0 {
            step.work.add_decode(u64::from(req.computed));
        } else {
            step.work
                .add_prefill_chunk(u64::from(req.computed), u64::from(n));
        }
        step.scheduled.push((id, n));
    }

    /// Applies a finished forward pass at time `now`: computed tokens advance, requests that reached their
    /// end sample a token, and finished ones leave, their blocks going back to the pool.
    pub fn complete(&mut self, step: &Step, now: f64) -> Vec<Emitted> {
        let mut out = Vec::with_capacity(step.scheduled.len());
        for &(id, n) in &step.scheduled {
            let Some(req) = self.requests.get_mut(&id) else {
                continue; // aborted during the step
            };
            let before = req.computed;
            req.computed += n;
            if before < req.new.prompt_tokens {
                req.prefill_computed += req.computed.min(req.new.prompt_tokens) - before;
            }
            if req.computed < req.num_tokens() {
                continue; // a prefill chunk that did not reach the end of the prompt
            }
            req.generated += 1;
            let since_previous = now - req.times.last_token.unwrap_or(req.times.arrived);
            req.times.first_token.get_or_insert(now);
            req.times.last_token = Some(now);
            let reason = req.finish(self.config.max_model_len);
            let index = req.generated;
            let (prompt_tokens, cached_prompt_tokens) =
                (req.new.prompt_tokens, req.cached_prompt_tokens);
            let finished = reason.map(|r| {
                let req = self.requests.remove(&id).expect("request exists");
                self.running.retain(|&x| x != id);
                self.pool.release(&req.blocks);
                finished(req, r, now)
            });
            out.push(Emitted {
                id,
                index,
                since_previous,
                prompt_tokens,
                cached_prompt_tokens,
                finished,
            });
        }
        out
    }
}

/// The prefix-cache key of a request's block `i`: its prompt's chained hash, or past the prompt's full blocks one
/// of its own (generated text is never shared, but a preempted request can get its own blocks back).
fn block_hash(req: &Request, i: usize) -> u64 {
    match req.new.block_hashes.get(i) {
        Some(&h) => h,
        None => {
            let parent = req.new.block_hashes.last().copied().unwrap_or(0);
            crate::text::chain_hash(parent, &[req.new.id, i as u64])
        }
    }
}

fn finished(req: Request, reason: FinishReason, now: f64) -> Finished {
    let mut times = req.times;
    times.last_token.get_or_insert(now);
    Finished {
        id: req.new.id,
        reason,
        prompt_tokens: req.new.prompt_tokens,
        generated: req.generated,
        max_tokens: req.new.max_tokens,
        times,
        preemptions: req.preemptions,
        cached_prompt_tokens: req.cached_prompt_tokens,
        prefill_computed: req.prefill_computed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(num_gpu_blocks: u32) -> SchedulerConfig {
        SchedulerConfig {
            block_size: 16,
            num_gpu_blocks,
            max_num_seqs: 8,
            max_num_batched_tokens: 2048,
            max_model_len: 8192,
            enable_chunked_prefill: true,
            enable_prefix_caching: true,
            long_prefill_token_threshold: 0,
        }
    }

    fn request(id: u64, prompt_tokens: u32, max_tokens: u32) -> NewRequest {
        NewRequest {
            id,
            prompt_tokens,
            // Distinct per request: no prefix sharing unless a test says so.
            block_hashes: (0..prompt_tokens / 16)
                .map(|b| id << 32 | u64::from(b))
                .collect(),
            max_tokens,
            stop_after: None,
            min_tokens: 0,
        }
    }

    /// Steps until idle; returns every emitted token with its step number.
    fn run(engine: &mut Engine, limit: usize) -> Vec<(usize, Emitted, Step)> {
        let mut out = Vec::new();
        for n in 0..limit {
            if !engine.has_work() {
                break;
            }
            let step = engine.schedule(n as f64);
            for e in engine.complete(&step, n as f64 + 1.0) {
                out.push((n, e, step.clone()));
            }
        }
        out
    }

    #[test]
    fn one_request_prefills_in_chunks_then_decodes_one_token_per_step() {
        let mut engine = Engine::new(config(1000));
        engine.add(request(1, 5000, 4), 0.0);
        let emitted = run(&mut engine, 100);
        // 5000 prompt tokens under a 2048 budget: three steps before the first token.
        let steps: Vec<usize> = emitted.iter().map(|(n, _, _)| *n).collect();
        assert_eq!(steps, vec![2, 3, 4, 5]);
        let last = emitted.last().unwrap();
        let done = last.1.finished.as_ref().unwrap();
        assert_eq!((done.reason, done.generated), (FinishReason::Length, 4));
        assert_eq!(done.times.first_token, Some(3.0));
        assert_eq!(last.2.work.decode_seqs, 1);
        assert_eq!(engine.kv_usage(), 0.0);
    }

    #[test]
    fn the_sequence_cap_keeps_the_rest_waiting_for_capacity() {
        let mut cfg = config(1000);
        cfg.max_num_seqs = 2;
        let mut engine = Engine::new(cfg);
        for id in 0..3 {
            engine.add(request(id, 32, 10), 0.0);
        }
        let step = engine.schedule(0.0);
        assert_eq!(step.scheduled.len(), 2);
        assert_eq!(engine.running(), 2);
        assert_eq!(engine.waiting(), 1);
    }

    #[test]
    fn a_full_pool_preempts_the_newest_running_request_and_recomputes_it() {
        // 6 blocks: two requests of 32 prompt tokens (2 blocks each) outgrow it while decoding.
        let mut engine = Engine::new(config(6));
        engine.add(request(1, 32, 40), 0.0);
        engine.add(request(2, 32, 40), 0.0);
        let emitted = run(&mut engine, 500);
        let preempted: Vec<u64> = emitted
            .iter()
            .flat_map(|(_, _, s)| s.preempted.clone())
            .collect();
        assert!(preempted.contains(&2), "{preempted:?}");
        let finished: Vec<&Finished> = emitted
            .iter()
            .filter_map(|(_, e, _)| e.finished.as_ref())
            .collect();
        assert_eq!(finished.len(), 2);
        let second = finished.iter().find(|f| f.id == 2).unwrap();
        assert!(second.preemptions >= 1);
        assert_eq!(second.generated, 40);
        // Recomputation counts as prefill work done by the request.
        assert!(second.prefill_computed > 32, "{second:?}");
    }

    #[test]
    fn a_shared_prefix_is_served_from_cache_but_never_the_last_token() {
        let mut engine = Engine::new(config(100));
        let mut first = request(1, 64, 1);
        first.block_hashes = vec![1, 2, 3, 4];
        engine.add(first, 0.0);
        run(&mut engine, 10);
        let mut second = request(2, 64, 1);
        second.block_hashes = vec![1, 2, 3, 4];
        engine.add(second, 10.0);
        let step = engine.schedule(10.0);
        // 64 tokens = 4 full blocks, but the last token must be computed: 3 blocks hit.
        assert_eq!((step.prefix_queries, step.prefix_hits), (64, 48));
        assert_eq!(step.scheduled, vec![(2, 16)]);
    }

    #[test]
    fn a_stop_token_ends_the_request_unless_min_tokens_holds_it() {
        let mut engine = Engine::new(config(100));
        let mut r = request(1, 16, 50);
        r.stop_after = Some(3);
        r.min_tokens = 5;
        engine.add(r, 0.0);
        let done = run(&mut engine, 100)
            .into_iter()
            .find_map(|(_, e, _)| e.finished)
            .unwrap();
        assert_eq!((done.reason, done.generated), (FinishReason::Stop, 5));
    }
}
