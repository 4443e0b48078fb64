//! A memory-bounded cache of decoded partitions, shared by all requests of a worker process:
//! a warm container answers from memory, with no object-store read and no decoding.
//!
//! Entries are keyed by the partition's object key, which carries the index version
//! (`<index>/v<version>/partition-*.sqsh`), so a rebuilt index is never served from the entries
//! of the old one: its queries ask for other keys, and the old entries age out. Each entry is
//! charged the decoded partition's [`PartitionData::memory_bytes`]. Bookkeeping only: loading
//! and counting the reads belong to the caller.

use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};
use squash_core::error::{Error, Result};
use squash_core::index::PartitionData;

mod lru;

use lru::{ByteLru, Slot, Weighed};

/// The environment variable in which AWS Lambda gives the function's memory size, in MiB
/// (the console calls them MB).
pub const LAMBDA_MEMORY_ENV: &str = "AWS_LAMBDA_FUNCTION_MEMORY_SIZE";

/// The cache budget outside Lambda: 1 GiB, a fair share of a developer machine or a server.
pub const DEFAULT_CAPACITY_BYTES: u64 = 1 << 30;

/// Returns the cache budget for a Lambda memory size given as the text of
/// [`LAMBDA_MEMORY_ENV`]: half of it, which leaves the other half for the runtime, request
/// buffers and search scratch. Without a value, or with one that is not a positive integer,
/// returns [`DEFAULT_CAPACITY_BYTES`].
pub fn capacity_bytes_for_lambda_memory(lambda_memory_mib_opt: Option<&str>) -> u64 {
    match lambda_memory_mib_opt.and_then(|text| text.trim().parse::<u64>().ok()) {
        Some(memory_mib) if memory_mib > 0 => memory_mib.saturating_mul(1 << 20) / 2,
        _ => DEFAULT_CAPACITY_BYTES,
    }
}

/// Returns the cache budget for this process: half the Lambda memory size when
/// [`LAMBDA_MEMORY_ENV`] is set, otherwise [`DEFAULT_CAPACITY_BYTES`].
pub fn default_capacity_bytes() -> u64 {
    let value_opt = std::env::var(LAMBDA_MEMORY_ENV).ok();
    capacity_bytes_for_lambda_memory(value_opt.as_deref())
}

/// Counters and occupancy of a [`PartitionCache`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheStats {
    /// Reads served from memory.
    pub num_hits: u64,
    /// Reads of cacheable keys not found in memory (including those that joined another
    /// read's request for the same bytes).
    pub num_misses: u64,
    /// Entries dropped to make room for newer ones.
    pub num_evictions: u64,
    /// Bytes held, counting payloads plus a per-entry bookkeeping estimate; never more than the
    /// capacity.
    pub bytes_cached: u64,
    /// Entries held (whole objects and ranges).
    pub num_entries: u64,
}

impl Weighed for Arc<PartitionData> {
    fn payload_bytes(&self) -> usize {
        self.memory_bytes()
    }
}

struct State {
    lru: ByteLru<Arc<PartitionData>>,
    num_hits: u64,
    num_misses: u64,
    /// Keys read by range since they were last absent from this set (see
    /// [`PartitionCache::first_ranged_read`]).
    read_by_range: std::collections::HashSet<String>,
}

/// Keys remembered as read by range, at most: beyond it the set starts over, which only means
/// some partitions are read by range once more before they are loaded whole.
const MAX_REMEMBERED_RANGED_READS: usize = 4096;

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
                read_by_range: std::collections::HashSet::new(),
            }),
        }
    }

    /// Returns the capacity in bytes.
    pub fn capacity_bytes(&self) -> u64 {
        self.capacity_bytes
    }

    fn lock(&self) -> Result<MutexGuard<'_, State>> {
        self.state.lock().map_err(|_| {
            Error::internal("partition cache lock poisoned by a panicked search".to_string())
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

    /// Returns whether `key` may be read by range now: true the first time a cold partition is
    /// asked for, false the next time, when it should be loaded whole and cached. A container
    /// that serves one small request reads little; one that keeps getting requests for a
    /// partition warms up to serve it from memory (a two-touch admission).
    pub fn first_ranged_read(&self, key: &str) -> bool {
        let Ok(mut state) = self.lock() else {
            return false;
        };
        if state.read_by_range.len() >= MAX_REMEMBERED_RANGED_READS {
            state.read_by_range.clear();
        }
        state.read_by_range.insert(key.to_string())
    }

    /// Returns the hit, miss and eviction counts and the current occupancy.
    pub fn stats(&self) -> CacheStats {
        let Ok(state) = self.lock() else {
            return CacheStats::default();
        };
        state.lru.stats(state.num_hits, state.num_misses)
    }
}

#[cfg(test)]
mod capacity_tests {
    use super::*;

    #[test]
    fn capacity_follows_lambda_memory() {
        assert_eq!(capacity_bytes_for_lambda_memory(None), 1 << 30);
        assert_eq!(capacity_bytes_for_lambda_memory(Some("1769")), 1769 << 19);
        assert_eq!(capacity_bytes_for_lambda_memory(Some(" 128 ")), 64 << 20);
        assert_eq!(capacity_bytes_for_lambda_memory(Some("0")), 1 << 30);
        assert_eq!(capacity_bytes_for_lambda_memory(Some("lots")), 1 << 30);
        assert!(default_capacity_bytes() > 0);
    }

    #[test]
    fn a_key_is_read_by_range_once() {
        let cache = PartitionCache::new(5);
        assert!(cache.first_ranged_read("a"));
        assert!(!cache.first_ranged_read("a"));
        assert!(cache.first_ranged_read("b"));
    }

    #[test]
    fn stats_serialize() {
        let json = serde_json::to_string(&CacheStats::default()).expect("serialize");
        assert!(json.contains("\"num_hits\":0"));
        let cache = PartitionCache::new(5);
        assert_eq!(cache.capacity_bytes(), 5);
        assert!(format!("{cache:?}").contains("PartitionCache"));
    }
}
