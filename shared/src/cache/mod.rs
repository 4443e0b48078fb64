//! A memory-bounded cache of object contents and byte ranges: [`CachedStore`], a
//! [`BlobStore`] that wraps another one.
//!
//! Why caching is safe: every object of an index except the manifest is immutable, because
//! its key carries the index version (`v<version>/...`) and a rebuild writes new keys instead of
//! overwriting old ones. A cached `v7/...` object therefore always holds exactly the bytes the
//! store holds (or held, before it was deleted), and serving it from memory never mixes index
//! versions: a reader that opened version 7 through the manifest only asks for `v7/...` keys.
//! The manifest (`manifest.sqsh`) is the one mutable object (a rebuild switches it), so it is
//! never cached and is always read from the inner store; the set of such keys is a constructor
//! parameter.
//!
//! Owns the caching policy only: least recently used eviction within a byte budget, and
//! coalescing of concurrent misses for the same bytes into one inner request. It must not
//! decode objects or retry: retries and metrics are their own wrappers.

use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::sync::OnceCell;

use crate::error::{Error, Result};
use crate::index::MANIFEST_KEY;
use crate::storage::BlobStore;

mod lru;
mod partitions;

pub use partitions::PartitionCache;

use lru::{ByteLru, Slot};

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

/// Counters and occupancy of a [`CachedStore`].
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

/// One in-flight fetch that concurrent misses for the same bytes wait on.
type Inflight = Arc<OnceCell<Arc<Vec<u8>>>>;

struct State {
    lru: ByteLru,
    inflight: HashMap<(String, Slot), Inflight>,
    /// Bumped by every `put` and `delete`; a fetch that started before a bump does not store
    /// its result, since it may hold the bytes the write replaced.
    write_epoch: u64,
    num_hits: u64,
    num_misses: u64,
}

/// What a lookup found.
enum Lookup {
    Hit(Arc<Vec<u8>>, Option<Range<usize>>),
    Miss(Inflight),
}

/// A [`BlobStore`] that keeps recently read objects and byte ranges in memory.
///
/// Share one instance (behind an `Arc`) across all requests of a process so they share one
/// budget. `get` caches whole objects; `get_range` caches each range under (key, range) and is
/// also served from a cached whole object that contains it (a range inside another cached
/// range is fetched anew). Entries larger than the capacity are passed through uncached.
/// Concurrent misses for the same bytes are coalesced into one inner request; if it fails,
/// each waiter retries on its own. `put` and `delete` go to the inner store and then drop the
/// key's entries. The lock around the bookkeeping is never held across an await.
pub struct CachedStore {
    inner: Arc<dyn BlobStore>,
    uncacheable_keys: HashSet<String>,
    capacity_bytes: u64,
    state: Mutex<State>,
}

impl std::fmt::Debug for CachedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Deliberately omits the cached bytes, which may be gigabytes.
        f.debug_struct("CachedStore")
            .field("inner", &self.inner)
            .field("uncacheable_keys", &self.uncacheable_keys)
            .field("stats", &self.stats())
            .finish()
    }
}

impl CachedStore {
    /// Returns a cache of at most `capacity_bytes` over `inner` that never caches the manifest
    /// ([`MANIFEST_KEY`]).
    pub fn new(inner: Arc<dyn BlobStore>, capacity_bytes: u64) -> Self {
        CachedStore::with_uncacheable_keys(inner, capacity_bytes, [MANIFEST_KEY])
    }

    /// Returns a cache of at most `capacity_bytes` over `inner` that never caches the given
    /// keys: those are the mutable objects, always read from `inner`.
    pub fn with_uncacheable_keys<I, K>(
        inner: Arc<dyn BlobStore>,
        capacity_bytes: u64,
        uncacheable_keys: I,
    ) -> Self
    where
        I: IntoIterator<Item = K>,
        K: Into<String>,
    {
        CachedStore {
            inner,
            uncacheable_keys: uncacheable_keys.into_iter().map(Into::into).collect(),
            capacity_bytes,
            state: Mutex::new(State {
                lru: ByteLru::new(capacity_bytes),
                inflight: HashMap::new(),
                write_epoch: 0,
                num_hits: 0,
                num_misses: 0,
            }),
        }
    }

    /// Returns the capacity in bytes.
    pub fn capacity_bytes(&self) -> u64 {
        self.capacity_bytes
    }

    /// Returns the hit, miss and eviction counts and the current occupancy.
    pub fn stats(&self) -> CacheStats {
        let Ok(state) = self.lock() else {
            return CacheStats::default();
        };
        state.lru.stats(state.num_hits, state.num_misses)
    }

    fn lock(&self) -> Result<MutexGuard<'_, State>> {
        // The bookkeeping may be half-updated after a panic, so it is not trusted again.
        self.state.lock().map_err(|_| Error::Storage {
            message: "cache lock poisoned by a panicked reader".to_string(),
            retryable: false,
        })
    }

    fn is_cacheable(&self, key: &str) -> bool {
        !self.uncacheable_keys.contains(key)
    }

    /// Finds the bytes for `slot` of `key` in memory, or joins (or starts) the in-flight fetch.
    fn lookup(&self, key: &str, slot: Slot) -> Result<Lookup> {
        let mut state = self.lock()?;
        if let Some(bytes) = state.lru.get(key, slot) {
            state.num_hits += 1;
            return Ok(Lookup::Hit(bytes, None));
        }
        if let Slot::Range { start, end } = slot {
            if let Some(whole) = state.lru.get(key, Slot::Whole) {
                if end <= whole.len() as u64 {
                    state.num_hits += 1;
                    return Ok(Lookup::Hit(whole, Some(start as usize..end as usize)));
                }
                // Past the end of the object: the inner store reports the error.
            }
        }
        state.num_misses += 1;
        let inflight = state
            .inflight
            .entry((key.to_string(), slot))
            .or_default()
            .clone();
        Ok(Lookup::Miss(inflight))
    }

    /// Returns the bytes of `slot` of `key`, from memory or from the inner store.
    async fn read(&self, key: &str, slot: Slot) -> Result<Vec<u8>> {
        let inflight = match self.lookup(key, slot)? {
            Lookup::Hit(bytes, None) => return Ok(bytes.as_ref().clone()),
            Lookup::Hit(bytes, Some(range)) => return Ok(bytes[range].to_vec()),
            Lookup::Miss(inflight) => inflight,
        };
        let _guard = InflightGuard {
            store: self,
            id: (key.to_string(), slot),
            inflight: Arc::clone(&inflight),
        };
        let bytes = inflight
            .get_or_try_init(|| self.fetch_and_store(key, slot))
            .await?;
        Ok(bytes.as_ref().clone())
    }

    async fn fetch_and_store(&self, key: &str, slot: Slot) -> Result<Arc<Vec<u8>>> {
        let epoch = self.lock()?.write_epoch;
        let bytes = Arc::new(match slot {
            Slot::Whole => self.inner.get(key).await?,
            Slot::Range { start, end } => self.inner.get_range(key, start..end).await?,
        });
        let mut state = self.lock()?;
        if state.write_epoch == epoch {
            state.lru.insert(key, slot, Arc::clone(&bytes));
        }
        Ok(bytes)
    }

    /// Drops every entry and in-flight fetch of `key`, and stops fetches already started
    /// from storing what they read.
    fn invalidate(&self, key: &str) -> Result<()> {
        let mut state = self.lock()?;
        state.write_epoch += 1;
        state.lru.remove_key(key);
        // Readers arriving after the write must not join a fetch that may predate it.
        state
            .inflight
            .retain(|(inflight_key, _), _| inflight_key != key);
        Ok(())
    }
}

/// Removes an in-flight fetch from the table when a participant finishes or is cancelled;
/// later misses start a fresh fetch (or hit the entry the fetch stored).
struct InflightGuard<'a> {
    store: &'a CachedStore,
    id: (String, Slot),
    inflight: Inflight,
}

impl Drop for InflightGuard<'_> {
    fn drop(&mut self) {
        // A poisoned lock leaves the table as it is; every later call fails anyway.
        if let Ok(mut state) = self.store.state.lock() {
            let is_ours = state
                .inflight
                .get(&self.id)
                .is_some_and(|current| Arc::ptr_eq(current, &self.inflight));
            if is_ours {
                state.inflight.remove(&self.id);
            }
        }
    }
}

#[async_trait]
impl BlobStore for CachedStore {
    async fn get(&self, key: &str) -> Result<Vec<u8>> {
        if !self.is_cacheable(key) {
            return self.inner.get(key).await;
        }
        self.read(key, Slot::Whole).await
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Vec<u8>> {
        if !self.is_cacheable(key) || range.start > range.end {
            return self.inner.get_range(key, range).await;
        }
        self.read(
            key,
            Slot::Range {
                start: range.start,
                end: range.end,
            },
        )
        .await
    }

    async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<()> {
        let result = self.inner.put(key, bytes).await;
        // Even a failed put may have replaced the object (a timeout after the write landed).
        self.invalidate(key)?;
        result
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        self.inner.list(prefix).await
    }

    async fn delete(&self, key: &str) -> Result<()> {
        let result = self.inner.delete(key).await;
        self.invalidate(key)?;
        result
    }

    fn describe(&self) -> String {
        format!("{} (cached)", self.inner.describe())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::lru::charge_bytes;
    use super::*;
    use crate::storage::{CountingStore, MemoryStore};

    /// A store that waits before every read, so that concurrent reads overlap.
    #[derive(Debug)]
    struct SlowStore {
        inner: MemoryStore,
        delay: Duration,
    }

    #[async_trait]
    impl BlobStore for SlowStore {
        async fn get(&self, key: &str) -> Result<Vec<u8>> {
            tokio::time::sleep(self.delay).await;
            self.inner.get(key).await
        }
        async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Vec<u8>> {
            tokio::time::sleep(self.delay).await;
            self.inner.get_range(key, range).await
        }
        async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<()> {
            self.inner.put(key, bytes).await
        }
        async fn list(&self, prefix: &str) -> Result<Vec<String>> {
            self.inner.list(prefix).await
        }
        async fn delete(&self, key: &str) -> Result<()> {
            self.inner.delete(key).await
        }
        fn describe(&self) -> String {
            "slow".to_string()
        }
    }

    /// Returns a memory store, a counting store over it and a cache over that.
    fn stack(capacity_bytes: u64) -> (MemoryStore, Arc<CountingStore>, CachedStore) {
        let memory = MemoryStore::new();
        let counting = Arc::new(CountingStore::new(Arc::new(memory.clone())));
        let cache = CachedStore::new(counting.clone(), capacity_bytes);
        (memory, counting, cache)
    }

    fn check_invariants(cache: &CachedStore) {
        let state = cache.lock().expect("lock");
        state.lru.check_invariants();
        assert!(state.inflight.is_empty(), "in-flight fetches left behind");
    }

    #[tokio::test]
    async fn cached_store_conforms() {
        let cache = CachedStore::new(Arc::new(MemoryStore::new()), 1 << 20);
        crate::storage::conformance::run(&cache).await;
        check_invariants(&cache);
    }

    #[tokio::test]
    async fn second_read_does_no_inner_get() {
        let (memory, counting, cache) = stack(1 << 20);
        memory.put("v1/a", (0..100).collect()).await.expect("put");
        assert_eq!(
            cache.get("v1/a").await.expect("get"),
            (0..100).collect::<Vec<u8>>()
        );
        assert_eq!(
            cache.get("v1/a").await.expect("get"),
            (0..100).collect::<Vec<u8>>()
        );
        assert_eq!(counting.snapshot().num_get_requests, 1);
        assert_eq!(counting.snapshot().bytes_fetched, 100);
        // Ranges inside the cached object come from memory too.
        assert_eq!(
            cache.get_range("v1/a", 10..20).await.expect("range"),
            (10..20).collect::<Vec<u8>>()
        );
        assert_eq!(
            cache.get_range("v1/a", 100..100).await.expect("range"),
            Vec::<u8>::new()
        );
        assert_eq!(counting.snapshot().num_get_requests, 1);
        // A range past the end is the inner store's error, not a cache answer.
        assert!(cache.get_range("v1/a", 90..101).await.is_err());
        assert_eq!(counting.snapshot().num_get_requests, 2);
        // Ranges of an uncached object are cached under their own bounds.
        memory.put("v1/b", vec![5; 50]).await.expect("put");
        assert_eq!(
            cache.get_range("v1/b", 0..8).await.expect("range"),
            vec![5; 8]
        );
        assert_eq!(
            cache.get_range("v1/b", 0..8).await.expect("range"),
            vec![5; 8]
        );
        assert_eq!(
            cache.get_range("v1/b", 0..9).await.expect("range"),
            vec![5; 9]
        );
        assert_eq!(counting.snapshot().num_get_requests, 4);
        assert!(cache.get("v1/missing").await.is_err());
        assert_eq!(
            cache.stats(),
            CacheStats {
                num_hits: 4,
                num_misses: 5,
                num_evictions: 0,
                bytes_cached: charge_bytes("v1/a", 100)
                    + charge_bytes("v1/b", 8)
                    + charge_bytes("v1/b", 9),
                num_entries: 3,
            }
        );
        check_invariants(&cache);
    }

    #[tokio::test]
    async fn evicts_least_recently_used_under_tight_capacity() {
        let (memory, counting, cache) = stack(3 * charge_bytes("k0", 100));
        for key in ["k0", "k1", "k2", "k3"] {
            memory.put(key, vec![1; 100]).await.expect("put");
        }
        for key in ["k0", "k1", "k2", "k0", "k3"] {
            cache.get(key).await.expect("get");
        }
        // k1 was the least recently used when k3 arrived.
        assert_eq!(cache.stats().num_evictions, 1);
        assert_eq!(cache.stats().num_entries, 3);
        counting.reset();
        for key in ["k0", "k2", "k3"] {
            cache.get(key).await.expect("get");
        }
        assert_eq!(counting.snapshot().num_get_requests, 0);
        cache.get("k1").await.expect("get");
        assert_eq!(counting.snapshot().num_get_requests, 1);
        // Refetching k1 evicted k0, now the least recently used.
        cache.get("k2").await.expect("get");
        cache.get("k0").await.expect("get");
        assert_eq!(counting.snapshot().num_get_requests, 2);
        check_invariants(&cache);
    }

    #[tokio::test]
    async fn oversize_entries_bypass_the_cache() {
        let capacity = charge_bytes("small", 100);
        assert!(charge_bytes("big", 200) > capacity);
        let (memory, counting, cache) = stack(capacity);
        memory.put("small", vec![1; 100]).await.expect("put");
        memory.put("big", vec![2; 200]).await.expect("put");
        cache.get("small").await.expect("get");
        for _ in 0..2 {
            assert_eq!(cache.get("big").await.expect("get"), vec![2; 200]);
            assert_eq!(
                cache.get_range("big", 0..200).await.expect("range"),
                vec![2; 200]
            );
        }
        assert_eq!(counting.snapshot().num_get_requests, 5);
        assert_eq!(cache.stats().num_entries, 1, "the small entry stays");
        assert_eq!(cache.stats().num_evictions, 0);
        cache.get("small").await.expect("get");
        assert_eq!(counting.snapshot().num_get_requests, 5);
        // A zero capacity caches nothing and still answers.
        let (memory, counting, cache) = stack(0);
        memory.put("k", vec![3; 4]).await.expect("put");
        for _ in 0..2 {
            assert_eq!(cache.get("k").await.expect("get"), vec![3; 4]);
        }
        assert_eq!(counting.snapshot().num_get_requests, 2);
        check_invariants(&cache);
    }

    #[tokio::test]
    async fn manifest_is_never_cached() {
        let (memory, counting, cache) = stack(1 << 20);
        memory
            .put(MANIFEST_KEY, b"version 1".to_vec())
            .await
            .expect("put");
        assert_eq!(cache.get(MANIFEST_KEY).await.expect("get"), b"version 1");
        assert_eq!(
            cache.get_range(MANIFEST_KEY, 0..7).await.expect("range"),
            b"version"
        );
        // A rebuild switches the manifest behind the cache's back.
        memory
            .put(MANIFEST_KEY, b"version 2".to_vec())
            .await
            .expect("put");
        assert_eq!(cache.get(MANIFEST_KEY).await.expect("get"), b"version 2");
        assert_eq!(counting.snapshot().num_get_requests, 3);
        assert_eq!(cache.stats(), CacheStats::default());
        // The set of uncacheable keys is the caller's choice.
        let custom = CachedStore::with_uncacheable_keys(counting.clone(), 1 << 20, ["head"]);
        memory.put("head", b"1".to_vec()).await.expect("put");
        custom.get("head").await.expect("get");
        custom.get(MANIFEST_KEY).await.expect("get");
        memory.put("head", b"2".to_vec()).await.expect("put");
        assert_eq!(custom.get("head").await.expect("get"), b"2");
        assert_eq!(custom.stats().num_entries, 1, "only the manifest is cached");
    }

    #[tokio::test]
    async fn put_and_delete_invalidate_the_key() {
        let (_memory, counting, cache) = stack(1 << 20);
        cache.put("k", b"first".to_vec()).await.expect("put");
        cache.put("other", b"other".to_vec()).await.expect("put");
        cache.get("k").await.expect("get");
        cache.get_range("k", 0..2).await.expect("range");
        cache.get("other").await.expect("get");
        cache.put("k", b"second".to_vec()).await.expect("put");
        assert_eq!(cache.get("k").await.expect("get"), b"second");
        assert_eq!(cache.get_range("k", 0..2).await.expect("range"), b"se");
        cache.delete("k").await.expect("delete");
        assert!(matches!(cache.get("k").await, Err(Error::NotFound { .. })));
        assert!(cache.get_range("k", 0..2).await.is_err());
        // Other keys keep their entries.
        counting.reset();
        assert_eq!(cache.get("other").await.expect("get"), b"other");
        assert_eq!(counting.snapshot().num_get_requests, 0);
        check_invariants(&cache);
    }

    #[tokio::test]
    async fn concurrent_misses_are_coalesced() {
        let slow = Arc::new(SlowStore {
            inner: MemoryStore::new(),
            delay: Duration::from_millis(20),
        });
        slow.put("v1/a", vec![9; 1000]).await.expect("put");
        let counting = Arc::new(CountingStore::new(slow));
        let cache = Arc::new(CachedStore::new(counting.clone(), 1 << 20));
        let mut tasks = Vec::new();
        for _ in 0..10 {
            let cache = Arc::clone(&cache);
            tasks.push(tokio::spawn(async move {
                let whole = cache.get("v1/a").await.expect("get");
                let range = cache.get_range("v1/a", 10..20).await.expect("range");
                (whole, range)
            }));
        }
        for task in tasks {
            let (whole, range) = task.await.expect("task");
            assert_eq!(whole, vec![9; 1000]);
            assert_eq!(range, vec![9; 10]);
        }
        assert_eq!(counting.snapshot().num_get_requests, 1);
        assert_eq!(cache.stats().num_misses, 10);
        assert_eq!(cache.stats().num_hits, 10);
        check_invariants(&cache);
    }

    #[tokio::test]
    async fn failed_fetch_is_not_shared_or_cached() {
        let (memory, counting, cache) = stack(1 << 20);
        assert!(cache.get("late").await.is_err());
        memory.put("late", b"here".to_vec()).await.expect("put");
        assert_eq!(cache.get("late").await.expect("get"), b"here");
        assert_eq!(counting.snapshot().num_get_requests, 2);
        check_invariants(&cache);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_reads_are_correct_and_bounded() {
        const NUM_OBJECTS: usize = 24;
        let mut rng = StdRng::seed_from_u64(7);
        let slow = Arc::new(SlowStore {
            inner: MemoryStore::new(),
            delay: Duration::from_micros(50),
        });
        let mut objects = Vec::new();
        for index in 0..NUM_OBJECTS {
            let len = rng.random_range(0..2000);
            let bytes: Vec<u8> = (0..len).map(|_| rng.random::<u8>()).collect();
            slow.put(&format!("v1/obj{index}"), bytes.clone())
                .await
                .expect("put");
            objects.push(bytes);
        }
        let objects = Arc::new(objects);
        let capacity = 8_000;
        let cache = Arc::new(CachedStore::new(slow, capacity));
        let mut tasks = Vec::new();
        for task_index in 0..16u64 {
            let cache = Arc::clone(&cache);
            let objects = Arc::clone(&objects);
            tasks.push(tokio::spawn(async move {
                let mut rng = StdRng::seed_from_u64(task_index);
                for _ in 0..300 {
                    let index = rng.random_range(0..NUM_OBJECTS);
                    let key = format!("v1/obj{index}");
                    let expected = &objects[index];
                    match rng.random_range(0..10) {
                        0..=3 => {
                            assert_eq!(&cache.get(&key).await.expect("get"), expected);
                        }
                        4 => {
                            // Rewriting identical bytes exercises invalidation mid-read.
                            cache.put(&key, expected.clone()).await.expect("put");
                        }
                        _ => {
                            let start = rng.random_range(0..=expected.len());
                            let end = rng.random_range(start..=expected.len());
                            let range = start as u64..end as u64;
                            let bytes = cache.get_range(&key, range).await.expect("range");
                            assert_eq!(bytes, expected[start..end]);
                        }
                    }
                    assert!(cache.stats().bytes_cached <= capacity);
                }
            }));
        }
        for task in tasks {
            task.await.expect("task");
        }
        let stats = cache.stats();
        assert!(stats.num_hits > 0 && stats.num_evictions > 0, "{stats:?}");
        check_invariants(&cache);
    }

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
    fn stats_serialize() {
        let json = serde_json::to_string(&CacheStats::default()).expect("serialize");
        assert!(json.contains("\"num_hits\":0"));
        let cache = CachedStore::new(Arc::new(MemoryStore::new()), 5);
        assert_eq!(cache.capacity_bytes(), 5);
        assert!(format!("{cache:?}").contains("CachedStore"));
        assert_eq!(cache.describe(), "memory (cached)");
    }
}
