//! A pool of KV caches for batched decoding: a sequence that finishes hands its cache back
//! and the next sequence reuses it, so the memory of `B` caches is allocated once.
//!
//! The pool holds at most `slots` caches (live and free together). A request is served by
//! the smallest free cache that is long enough; when none is, a new one is made and, if the
//! pool is full, the smallest free cache is dropped first.

use crate::error::Result;
use crate::memory::KvCache;

/// Reusable KV caches, at most `slots` of them.
#[derive(Debug)]
pub struct KvPool {
    free: Vec<KvCache>,
    slots: usize,
    /// Caches handed out and not yet returned.
    lent: usize,
    /// How many caches were allocated (for tests and logs).
    allocated: usize,
    /// The most caches held at once, lent and free together.
    peak_held: usize,
}

impl KvPool {
    /// An empty pool for at most `slots` caches.
    pub fn new(slots: usize) -> Self {
        Self {
            free: Vec::new(),
            slots: slots.max(1),
            lent: 0,
            allocated: 0,
            peak_held: 0,
        }
    }

    /// A cache with room for `max_len` positions: a reused one (emptied) or a new one from `make`.
    pub fn take(&mut self, max_len: usize, make: impl FnOnce(usize) -> Result<KvCache>) -> Result<KvCache> {
        let best = self
            .free
            .iter()
            .enumerate()
            .filter(|(_, c)| c.capacity() >= max_len)
            .min_by_key(|(_, c)| c.capacity())
            .map(|(i, _)| i);
        let cache = match best {
            Some(i) => {
                let mut c = self.free.swap_remove(i);
                c.reset();
                c
            }
            None => {
                if self.lent + self.free.len() >= self.slots {
                    if let Some(i) = self
                        .free
                        .iter()
                        .enumerate()
                        .min_by_key(|(_, c)| c.capacity())
                        .map(|(i, _)| i)
                    {
                        self.free.swap_remove(i);
                    }
                }
                self.allocated += 1;
                make(max_len)?
            }
        };
        self.lent += 1;
        self.peak_held = self.peak_held.max(self.held());
        Ok(cache)
    }

    /// Returns a cache for reuse.
    pub fn give(&mut self, cache: KvCache) {
        self.lent = self.lent.saturating_sub(1);
        if self.free.len() + self.lent < self.slots {
            self.free.push(cache);
        }
    }

    /// Tells the pool a lent cache will not come back (its page failed).
    pub fn forget(&mut self) {
        self.lent = self.lent.saturating_sub(1);
    }

    /// Caches held now: lent out and free.
    pub fn held(&self) -> usize {
        self.lent + self.free.len()
    }

    /// The most caches held at once since the pool was made; at most `slots` as long as no
    /// more than `slots` are lent at once.
    pub fn peak_held(&self) -> usize {
        self.peak_held
    }

    /// Caches allocated since the pool was made (reallocations included).
    pub fn allocated(&self) -> usize {
        self.allocated
    }

    /// Bytes held by the free caches.
    pub fn free_bytes(&self) -> u64 {
        self.free.iter().map(|c| c.bytes()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    fn make(n: usize) -> Result<KvCache> {
        KvCache::new(1, 1, 2, n, DType::F32, &Device::Cpu)
    }

    #[test]
    fn finished_caches_are_reused_and_the_pool_stays_bounded() {
        let mut pool = KvPool::new(2);
        let a = pool.take(10, make).unwrap();
        let b = pool.take(20, make).unwrap();
        assert_eq!(pool.allocated(), 2);
        pool.give(a);
        // Fits in the returned 10-position cache: reused.
        let c = pool.take(8, make).unwrap();
        assert_eq!((c.capacity(), pool.allocated()), (10, 2));
        pool.give(c);
        // Too long for the free cache: it is dropped and a new one made; still two in all.
        let d = pool.take(30, make).unwrap();
        assert_eq!((d.capacity(), pool.allocated()), (30, 3));
        // Three allocations, never more than two caches at once.
        assert_eq!((pool.held(), pool.peak_held()), (2, 2));
        assert_eq!(pool.free_bytes(), 0);
        pool.give(b);
        pool.give(d);
        assert_eq!(pool.free_bytes(), make(20).unwrap().bytes() + make(30).unwrap().bytes());
    }
}
