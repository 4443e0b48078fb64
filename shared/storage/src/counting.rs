//! A [`BlobStore`] wrapper that counts the requests and bytes that reach the store it wraps.
//!
//! The counts feed the request-cost model (object stores bill per request and per byte), so
//! they are exact: every call is one request whatever its outcome (stores bill failed requests
//! too), a ranged GET is one request with the range's length in bytes, and bytes are counted
//! only for calls that succeeded. A `list` call counts as one request even though a remote
//! adapter may page through several. Counting only: no caching, retrying or decoding here.

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::BlobStore;
use squash_core::error::Result;

/// A snapshot of the counters of a [`CountingStore`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreCounters {
    /// GET requests, whole-object and ranged.
    pub num_get_requests: u64,
    /// Bytes returned by successful GET requests.
    pub bytes_fetched: u64,
    /// PUT requests.
    pub num_put_requests: u64,
    /// Bytes sent by successful PUT requests.
    pub bytes_written: u64,
    /// LIST requests.
    pub num_list_requests: u64,
    /// DELETE requests.
    pub num_delete_requests: u64,
}

/// A [`BlobStore`] that forwards every call to an inner store and counts it.
#[derive(Debug)]
pub struct CountingStore {
    inner: Arc<dyn BlobStore>,
    num_get_requests: AtomicU64,
    bytes_fetched: AtomicU64,
    num_put_requests: AtomicU64,
    bytes_written: AtomicU64,
    num_list_requests: AtomicU64,
    num_delete_requests: AtomicU64,
}

impl CountingStore {
    /// Returns a store that counts the calls it forwards to `inner`, starting from zero.
    pub fn new(inner: Arc<dyn BlobStore>) -> Self {
        CountingStore {
            inner,
            num_get_requests: AtomicU64::new(0),
            bytes_fetched: AtomicU64::new(0),
            num_put_requests: AtomicU64::new(0),
            bytes_written: AtomicU64::new(0),
            num_list_requests: AtomicU64::new(0),
            num_delete_requests: AtomicU64::new(0),
        }
    }

    /// Returns the current counts.
    ///
    /// Each counter is read atomically, but not all of them at one instant: while requests are
    /// in flight a request may already be counted and its bytes not yet.
    pub fn snapshot(&self) -> StoreCounters {
        StoreCounters {
            num_get_requests: self.num_get_requests.load(Ordering::Relaxed),
            bytes_fetched: self.bytes_fetched.load(Ordering::Relaxed),
            num_put_requests: self.num_put_requests.load(Ordering::Relaxed),
            bytes_written: self.bytes_written.load(Ordering::Relaxed),
            num_list_requests: self.num_list_requests.load(Ordering::Relaxed),
            num_delete_requests: self.num_delete_requests.load(Ordering::Relaxed),
        }
    }

    /// Sets every counter back to zero.
    pub fn reset(&self) {
        for counter in [
            &self.num_get_requests,
            &self.bytes_fetched,
            &self.num_put_requests,
            &self.bytes_written,
            &self.num_list_requests,
            &self.num_delete_requests,
        ] {
            counter.store(0, Ordering::Relaxed);
        }
    }

    /// Counts the bytes of a read that succeeded.
    fn count_fetched(&self, bytes_opt: Option<&Vec<u8>>) {
        if let Some(bytes) = bytes_opt {
            self.bytes_fetched
                .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        }
    }

    /// Counts a write of `num_bytes`, and its bytes when it succeeded.
    fn count_written(&self, result: &Result<()>, num_bytes: u64) {
        if result.is_ok() {
            self.bytes_written.fetch_add(num_bytes, Ordering::Relaxed);
        }
    }
}

#[async_trait]
impl BlobStore for CountingStore {
    async fn get(&self, key: &str) -> Result<Vec<u8>> {
        self.num_get_requests.fetch_add(1, Ordering::Relaxed);
        let result = self.inner.get(key).await;
        self.count_fetched(result.as_ref().ok());
        result
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Vec<u8>> {
        self.num_get_requests.fetch_add(1, Ordering::Relaxed);
        let result = self.inner.get_range(key, range).await;
        self.count_fetched(result.as_ref().ok());
        result
    }

    async fn get_tagged(&self, key: &str) -> Result<(Vec<u8>, crate::ObjectTag)> {
        self.num_get_requests.fetch_add(1, Ordering::Relaxed);
        let result = self.inner.get_tagged(key).await;
        self.count_fetched(result.as_ref().ok().map(|(bytes, _)| bytes));
        result
    }

    async fn put_if(
        &self,
        key: &str,
        bytes: Vec<u8>,
        condition: &crate::PutCondition,
    ) -> Result<()> {
        self.num_put_requests.fetch_add(1, Ordering::Relaxed);
        let num_bytes = bytes.len() as u64;
        let result = self.inner.put_if(key, bytes, condition).await;
        self.count_written(&result, num_bytes);
        result
    }

    async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<()> {
        self.num_put_requests.fetch_add(1, Ordering::Relaxed);
        let num_bytes = bytes.len() as u64;
        let result = self.inner.put(key, bytes).await;
        self.count_written(&result, num_bytes);
        result
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        self.num_list_requests.fetch_add(1, Ordering::Relaxed);
        self.inner.list(prefix).await
    }

    async fn delete(&self, key: &str) -> Result<()> {
        self.num_delete_requests.fetch_add(1, Ordering::Relaxed);
        self.inner.delete(key).await
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryStore;

    #[tokio::test]
    async fn counting_store_conforms() {
        super::super::conformance::run(&CountingStore::new(Arc::new(MemoryStore::new()))).await;
    }

    #[tokio::test]
    async fn counts_requests_and_bytes_exactly() {
        let store = CountingStore::new(Arc::new(MemoryStore::new()));
        store.put("a", vec![7; 100]).await.expect("put");
        store.put("b", vec![1; 10]).await.expect("put");
        assert!(store.put("../bad", vec![1; 5]).await.is_err());
        assert_eq!(store.get("a").await.expect("get").len(), 100);
        assert_eq!(store.get_range("a", 10..30).await.expect("range").len(), 20);
        assert!(store.get("missing").await.is_err());
        assert!(store.get_range("b", 5..11).await.is_err());
        store.list("").await.expect("list");
        store.delete("b").await.expect("delete");
        assert_eq!(
            store.snapshot(),
            StoreCounters {
                num_get_requests: 4,
                bytes_fetched: 120,
                num_put_requests: 3,
                bytes_written: 110,
                num_list_requests: 1,
                num_delete_requests: 1,
            }
        );
        store.reset();
        assert_eq!(store.snapshot(), StoreCounters::default());
        let json = serde_json::to_string(&store.snapshot()).expect("serialize");
        assert!(json.contains("\"num_get_requests\":0"));
    }
}
