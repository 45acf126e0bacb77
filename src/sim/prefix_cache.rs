//! A prefill engine's cache of prompt prefix blocks, least recently used out first.
//!
//! Engines with prefix caching (vLLM's, SGLang's) keep the KV blocks of prompts they have
//! prefilled and reuse them for a later prompt that starts with the same blocks: only the
//! rest is computed. The trace names each prompt's blocks by hash (Mooncake's `hash_ids`),
//! so the simulation needs only which hashes an engine holds, and in what order of use.

use std::collections::VecDeque;
use std::sync::Arc;

use rustc_hash::FxHashMap;

/// What a scenario's `deployment.prefix_cache` turns on, with the trace's block hashes.
#[derive(Debug, Clone)]
pub struct PrefixCache {
    /// Tokens one block stands for (Mooncake's: 512).
    pub block_tokens: u32,
    /// Every request's block hashes, each request's `prefix` a range of them.
    pub blocks: Arc<[u64]>,
}

/// The blocks one engine holds: at most `capacity`, the least recently used dropped first.
#[derive(Debug, Clone, Default)]
pub struct BlockCache {
    /// Each held block and when it was last used.
    last_use: FxHashMap<u64, u64>,
    /// Uses in order, oldest first; a use that a later one of the same block superseded is
    /// skipped when it comes up for eviction.
    uses: VecDeque<(u64, u64)>,
    clock: u64,
    capacity: usize,
}

impl BlockCache {
    pub fn new(capacity: usize) -> BlockCache {
        BlockCache {
            capacity,
            ..BlockCache::default()
        }
    }

    /// How many of `keys`, from the first, the cache holds: the prefix a prompt finds.
    pub fn leading_hits(&self, keys: impl Iterator<Item = u64>) -> usize {
        let mut hits = 0;
        for key in keys {
            if !self.last_use.contains_key(&key) {
                break;
            }
            hits += 1;
        }
        hits
    }

    /// Sets how many blocks it may hold from the next use on (an aggregated worker's cache
    /// has what its decoding leaves of the KV).
    pub fn set_capacity(&mut self, capacity: usize) {
        self.capacity = capacity;
    }

    /// Marks `keys` as just used (a prompt's blocks once it is prefilled), evicting the
    /// least recently used blocks beyond the capacity.
    pub fn use_blocks(&mut self, keys: impl Iterator<Item = u64>) {
        for key in keys {
            self.clock += 1;
            self.last_use.insert(key, self.clock);
            self.uses.push_back((self.clock, key));
        }
        while self.last_use.len() > self.capacity {
            let Some((when, key)) = self.uses.pop_front() else {
                break;
            };
            if self.last_use.get(&key) == Some(&when) {
                self.last_use.remove(&key);
            }
        }
        // Superseded uses pile up under a hot prefix reused again and again; rebuilt from
        // the held blocks once they outnumber them a few times over.
        if self.uses.len() > 4 * self.last_use.len() + 1024 {
            let mut live: Vec<(u64, u64)> = self.last_use.iter().map(|(&k, &t)| (t, k)).collect();
            live.sort_unstable();
            self.uses = live.into();
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.last_use.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prompt_finds_the_blocks_held_from_its_start_only() {
        let mut c = BlockCache::new(100);
        c.use_blocks([1, 2, 3].into_iter());
        assert_eq!(c.leading_hits([1, 2, 3, 4].into_iter()), 3);
        assert_eq!(c.leading_hits([1, 9, 3].into_iter()), 1);
        assert_eq!(c.leading_hits([9, 1, 2].into_iter()), 0);
    }

    #[test]
    fn the_least_recently_used_blocks_go_first() {
        let mut c = BlockCache::new(3);
        c.use_blocks([1, 2, 3].into_iter());
        c.use_blocks([1].into_iter()); // 1 is now the most recent
        c.use_blocks([4].into_iter()); // evicts 2, the oldest use
        assert_eq!(c.len(), 3);
        assert_eq!(c.leading_hits([1].into_iter()), 1);
        assert_eq!(c.leading_hits([2].into_iter()), 0);
        assert_eq!(c.leading_hits([3, 4].into_iter()), 2);
    }

    #[test]
    fn a_hot_block_reused_without_end_keeps_the_bookkeeping_bounded() {
        let mut c = BlockCache::new(2);
        for _ in 0..10_000 {
            c.use_blocks([7].into_iter());
        }
        c.use_blocks([8, 9].into_iter());
        assert_eq!(c.len(), 2);
        assert!(c.uses.len() <= 4 * 2 + 1024 + 2, "{}", c.uses.len());
        assert_eq!(c.leading_hits([7].into_iter()), 0);
        assert_eq!(c.leading_hits([8, 9].into_iter()), 2);
    }
}
