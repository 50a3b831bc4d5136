//! The KV block pool as vLLM V1 keeps it: fixed-size blocks, reference counts, one LRU queue of free blocks
//! that still remember their prefix hash, so a freed prompt block can be hit again until it is evicted.

use std::collections::HashMap;

pub type BlockId = u32;

/// Marks the end of the free queue's links.
const NONE: u32 = u32::MAX;

#[derive(Clone, Debug)]
pub struct BlockPool {
    ref_count: Vec<u32>,
    hash: Vec<Option<u64>>,
    /// Doubly linked LRU list of blocks with no owner: allocation takes from the head, freeing appends to the
    /// tail, and a prefix hit unlinks a block from the middle; all O(1).
    prev: Vec<u32>,
    next: Vec<u32>,
    head: u32,
    tail: u32,
    free: u32,
    cached: HashMap<u64, BlockId>,
}

impl BlockPool {
    pub fn new(num_blocks: u32) -> BlockPool {
        let n = num_blocks as usize;
        let mut pool = BlockPool {
            ref_count: vec![0; n],
            hash: vec![None; n],
            prev: vec![NONE; n],
            next: vec![NONE; n],
            head: NONE,
            tail: NONE,
            free: 0,
            cached: HashMap::new(),
        };
        // Block 0 is vLLM's null block, reserved and never handed out.
        for id in 1..num_blocks {
            pool.push_tail(id);
        }
        pool
    }

    /// Blocks that can hold KV: all but the null block.
    pub fn num_blocks(&self) -> u32 {
        (self.ref_count.len() as u32).saturating_sub(1)
    }

    pub fn free_blocks(&self) -> u32 {
        self.free
    }

    /// vLLM's `kv_cache_usage_perc`: cached-but-idle blocks count as free.
    pub fn usage(&self) -> f64 {
        match self.num_blocks() {
            0 => 0.0,
            n => 1.0 - f64::from(self.free) / f64::from(n),
        }
    }

    /// The longest run of leading prompt blocks already in the cache.
    pub fn cached_prefix(&self, block_hashes: &[u64]) -> Vec<BlockId> {
        block_hashes
            .iter()
            .map_while(|h| self.cached.get(h).copied())
            .collect()
    }

    /// Blocks that taking `hits` and then allocating `fresh` more would need from the free queue.
    pub fn can_take(&self, hits: &[BlockId], fresh: u32) -> bool {
        let idle_hits = hits
            .iter()
            .filter(|&&b| self.ref_count[b as usize] == 0)
            .count() as u32;
        self.free >= idle_hits + fresh
    }

    /// Shares cached blocks with a new owner.
    pub fn take_hits(&mut self, hits: &[BlockId]) {
        for &b in hits {
            if self.ref_count[b as usize] == 0 {
                self.unlink(b);
            }
            self.ref_count[b as usize] += 1;
        }
    }

    /// `count` fresh blocks from the least recently freed end, evicting their old prefix hashes; `None` (and
    /// nothing taken) when too few are free.
    pub fn allocate(&mut self, count: u32) -> Option<Vec<BlockId>> {
        if count > self.free {
            return None;
        }
        let mut out = Vec::with_capacity(count as usize);
        for _ in 0..count {
            let b = self.head;
            self.unlink(b);
            if let Some(h) = self.hash[b as usize].take()
                && self.cached.get(&h) == Some(&b)
            {
                self.cached.remove(&h);
            }
            self.ref_count[b as usize] = 1;
            out.push(b);
        }
        Some(out)
    }

    /// Records that `block` holds the full prompt block with this hash, so later requests can share it.
    pub fn cache(&mut self, block: BlockId, hash: u64) {
        if self.hash[block as usize].is_none() {
            self.hash[block as usize] = Some(hash);
            self.cached.entry(hash).or_insert(block);
        }
    }

    /// Releases a request's blocks. The last blocks go to the tail first so a request's prefix outlives its
    /// suffix in the cache, as in vLLM.
    pub fn release(&mut self, blocks: &[BlockId]) {
        for &b in blocks.iter().rev() {
            let rc = &mut self.ref_count[b as usize];
            debug_assert!(*rc > 0, "block {b} released twice");
            if *rc == 0 {
                continue;
            }
            *rc -= 1;
            if *rc == 0 {
                self.push_tail(b);
            }
        }
    }

    fn push_tail(&mut self, b: BlockId) {
        self.prev[b as usize] = self.tail;
        self.next[b as usize] = NONE;
        if self.tail == NONE {
            self.head = b;
        } else {
            self.next[self.tail as usize] = b;
        }
        self.tail = b;
        self.free += 1;
    }

    fn unlink(&mut self, b: BlockId) {
        let (p, n) = (self.prev[b as usize], self.next[b as usize]);
        if p == NONE {
            self.head = n;
        } else {
            self.next[p as usize] = n;
        }
        if n == NONE {
            self.tail = p;
        } else {
            self.prev[n as usize] = p;
        }
        self.prev[b as usize] = NONE;
        self.next[b as usize] = NONE;
        self.free -= 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn freed_prompt_blocks_are_hit_until_evicted_least_recent_first() {
        let mut pool = BlockPool::new(5);
        let a = pool.allocate(2).unwrap();
        pool.cache(a[0], 11);
        pool.cache(a[1], 12);
        assert_eq!(pool.usage(), 0.5);
        pool.release(&a);
        // Cached but idle blocks count as free.
        assert_eq!((pool.free_blocks(), pool.usage()), (4, 0.0));
        assert_eq!(pool.cached_prefix(&[11, 12, 13]), a);
        // Two never-used blocks go first, then the released suffix block (12) before the prefix block (11).
        let b = pool.allocate(3).unwrap();
        assert!(b.contains(&a[1]) && !b.contains(&a[0]));
        assert_eq!(pool.cached_prefix(&[11, 12]), vec![a[0]]);
        assert!(pool.can_take(&[a[0]], 0));
        assert!(!pool.can_take(&[a[0]], 1));
        pool.take_hits(&[a[0]]);
        assert_eq!(pool.free_blocks(), 0);
        assert_eq!(pool.allocate(1), None);
    }

    #[test]
    fn shared_blocks_return_to_the_queue_only_when_the_last_owner_leaves() {
        let mut pool = BlockPool::new(3);
        let a = pool.allocate(1).unwrap();
        pool.cache(a[0], 7);
        let hit = pool.cached_prefix(&[7]);
        pool.take_hits(&hit);
        pool.release(&a);
        assert_eq!(pool.free_blocks(), 1);
        pool.release(&hit);
        assert_eq!(pool.free_blocks(), 2);
    }
}
