//! A memory-bounded cache of decoded partitions, shared by all requests of a worker process:
//! a warm container answers from memory, with no object-store read and no decoding.
//!
//! Entries are keyed by the partition's object key, which carries the index version
//! (`<index>/v<version>/partition-*.sqsh`), so a rebuilt index is never served from the entries
//! of the old one: its queries ask for other keys, and the old entries age out. Each entry is
//! charged the decoded partition's [`PartitionData::memory_bytes`]. Bookkeeping only: loading
//! and counting the reads belong to the caller.

use std::sync::{Arc, Mutex, MutexGuard};

use super::lru::{ByteLru, Slot, Weighed};
use super::CacheStats;
use crate::error::{Error, Result};
use crate::index::PartitionData;

impl Weighed for Arc<PartitionData> {
    fn payload_bytes(&self) -> usize {
        self.memory_bytes()
    }
}

struct State {
    lru: ByteLru<Arc<PartitionData>>,
    num_hits: u64,
    num_misses: u64,
}

/// Decoded partitions by object key, least recently used evicted first, within a byte budget.
pub struct PartitionCache {
    capacity_bytes: u64,
    state: Mutex<State>,
}

impl std::fmt::Debug for PartitionCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartitionCache")
            .field("capacity_bytes", &self.capacity_bytes)
            .field("stats", &self.stats())
            .finish()
    }
}

impl PartitionCache {
    /// Returns an empty cache holding at most `capacity_bytes`.
    pub fn new(capacity_bytes: u64) -> Self {
        PartitionCache {
            capacity_bytes,
            state: Mutex::new(State {
                lru: ByteLru::new(capacity_bytes),
                num_hits: 0,
                num_misses: 0,
            }),
        }
    }

    /// Returns the capacity in bytes.
    pub fn capacity_bytes(&self) -> u64 {
        self.capacity_bytes
    }

    fn lock(&self) -> Result<MutexGuard<'_, State>> {
        self.state.lock().map_err(|_| Error::Storage {
            message: "partition cache lock poisoned by a panicked search".to_string(),
            retryable: false,
        })
    }

    /// Returns the partition stored under `key` and marks it most recently used, counting a
    /// hit; counts a miss when it is absent.
    pub fn get(&self, key: &str) -> Result<Option<Arc<PartitionData>>> {
        let mut state = self.lock()?;
        match state.lru.get(key, Slot::Whole) {
            Some(partition) => {
                state.num_hits += 1;
                Ok(Some(partition))
            }
            None => {
                state.num_misses += 1;
                Ok(None)
            }
        }
    }

    /// Stores a partition, evicting the least recently used ones to make room. Returns false
    /// (storing nothing) when the partition alone exceeds the capacity.
    pub fn insert(&self, key: &str, partition: Arc<PartitionData>) -> Result<bool> {
        Ok(self.lock()?.lru.insert(key, Slot::Whole, partition))
    }

    /// Returns the hit, miss and eviction counts and the current occupancy.
    pub fn stats(&self) -> CacheStats {
        let Ok(state) = self.lock() else {
            return CacheStats::default();
        };
        state.lru.stats(state.num_hits, state.num_misses)
    }
}
