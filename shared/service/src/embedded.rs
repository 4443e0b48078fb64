//! The embedded mode: the coordinator and worker services the Lambda functions run, run in this
//! process over an index in a [`BlobStore`], with the workers reached through the
//! [`InProcessInvoker`]. `squash query`, `squash eval`, `squash bench` and the library's users
//! all answer through it, so what they measure is the served code path minus the transport.
//!
//! It adds nothing to the search: planning, fan-out, scan and merge are the services'. The
//! differences from the functions: `require_complete` is always set (an embedded answer is
//! complete or an error), requests reach the one worker slot as values rather than JSON, and
//! timed runs may scan inline (see [`EmbeddedConfig::for_timed_runs`]).

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use squash_core::error::{Error, Result};
use squash_core::index::build::BuildProgress;
use squash_core::index::{Manifest, PartitionData};
use squash_core::protocol::{
    BatchRequest, FailedPartition, FailureKind, InvocationStats, QueryRequest, QueryResponse,
};
use squash_core::search::RequestLimits;
use squash_core::writes::{
    DeleteRequest, FetchRequest, FetchResponse, UpsertRequest, WriteResponse,
};
use squash_storage::{split_index_location, store_for_location, BlobStore, PrefixedStore};

use crate::compaction::{compact_index_with, CompactionOptions, CompactionSummary};

use crate::coordinator_service::{CoordinatorService, ServiceConfig};
use crate::in_process::InProcessInvoker;
use crate::partition_cache::{default_capacity_bytes, PartitionCache};

/// Worker slots of the embedded mode: one. In one process a deeper tree adds hand-offs and no
/// parallelism (a worker already scans its partitions in parallel on rayon's pool).
pub const EMBEDDED_WORKER_SLOTS: usize = 1;

/// Time an embedded request may take: generous, since nothing bills it, but bounded so that a
/// runaway request still ends (exact mode over millions of rows takes seconds per query).
pub const EMBEDDED_TIMEOUT_MS: u64 = 600_000;

/// How an embedded index runs.
#[derive(Debug, Clone)]
pub struct EmbeddedConfig {
    /// Bytes of decoded partitions kept in memory ([`default_capacity_bytes`] by default;
    /// `u64::MAX` keeps every partition once loaded, which benchmarks want).
    pub cache_bytes: u64,
    /// Whether scans run on the thread that polls the query (see
    /// [`crate::worker_service::WorkerService::with_inline_scans`]); `false` hands them to a blocking thread.
    pub scan_inline: bool,
    /// Time one request may take, in milliseconds.
    pub timeout_ms: u64,
}

impl EmbeddedConfig {
    /// Returns the configuration of timed runs (`squash eval`, `squash bench`): every
    /// partition stays in memory once loaded, so no timed query includes a reload, and scans
    /// run inline, so a caller driving queries from inside a one-thread rayon pool on a
    /// current-thread runtime measures single-thread throughput with no thread hand-offs.
    pub fn for_timed_runs() -> EmbeddedConfig {
        EmbeddedConfig {
            cache_bytes: u64::MAX,
            scan_inline: true,
            timeout_ms: EMBEDDED_TIMEOUT_MS,
        }
    }
}

impl Default for EmbeddedConfig {
    fn default() -> Self {
        EmbeddedConfig {
            cache_bytes: default_capacity_bytes(),
            scan_inline: false,
            timeout_ms: EMBEDDED_TIMEOUT_MS,
        }
    }
}

/// An opened index, answered in-process by the coordinator and worker services.
#[derive(Debug)]
pub struct EmbeddedIndex {
    root: Arc<dyn BlobStore>,
    name: String,
    manifest: std::sync::RwLock<Arc<Manifest>>,
    coordinator: CoordinatorService,
    invoker: Arc<InProcessInvoker>,
}

impl EmbeddedIndex {
    /// Opens index `name` under `root` with the default configuration: reads its manifest and
    /// coordinator object, so a wrong name fails here.
    pub async fn open(root: Arc<dyn BlobStore>, name: &str) -> Result<EmbeddedIndex> {
        EmbeddedIndex::open_with(root, name, EmbeddedConfig::default()).await
    }

    /// Opens the index at `location` (`folder/name` or `s3://bucket/prefix/name`).
    pub async fn open_location(location: &str, config: EmbeddedConfig) -> Result<EmbeddedIndex> {
        let (root, name) = split_index_location(location)?;
        let root_store = store_for_location(&root).await?;
        EmbeddedIndex::open_with(root_store, &name, config).await
    }

    /// Opens the index whose objects `index_store` holds at its root (the store a build
    /// wrote to), with `config`.
    pub async fn open_store(
        index_store: Arc<dyn BlobStore>,
        config: EmbeddedConfig,
    ) -> Result<EmbeddedIndex> {
        let root: Arc<dyn BlobStore> = Arc::new(OneIndexRoot { index_store });
        EmbeddedIndex::open_with(root, ONE_INDEX_NAME, config).await
    }

    /// Opens index `name` under `root` with `config`.
    pub async fn open_with(
        root: Arc<dyn BlobStore>,
        name: &str,
        config: EmbeddedConfig,
    ) -> Result<EmbeddedIndex> {
        squash_core::index::validate_index_name(name)?;
        let cache = Arc::new(PartitionCache::new(config.cache_bytes));
        let mut invoker =
            InProcessInvoker::new(Arc::clone(&root), cache).without_payload_round_trip();
        if config.scan_inline {
            invoker = invoker.with_inline_scans();
        }
        let invoker = Arc::new(invoker);
        let service_config = ServiceConfig {
            worker_functions: (0..EMBEDDED_WORKER_SLOTS)
                .map(|slot| format!("embedded-{slot}"))
                .collect(),
            timeout_ms: config.timeout_ms,
            // One process: nothing else rebuilds the index behind its back often enough to be
            // worth a manifest read per request.
            manifest_ttl_ms: u64::MAX / 2,
            // Answers stay in this process's memory; the caller sizes its own requests.
            limits: RequestLimits::unlimited(),
            ..ServiceConfig::default()
        };
        let coordinator =
            CoordinatorService::new(Arc::clone(&root), invoker.clone(), service_config);
        // Opening through the coordinator reads and checks the manifest and the coordinator
        // object now, so a wrong name or a damaged index fails here.
        let manifest = coordinator.manifest(name).await?;
        Ok(EmbeddedIndex {
            root,
            name: name.to_string(),
            manifest: std::sync::RwLock::new(Arc::new(manifest)),
            coordinator,
            invoker,
        })
    }

    /// Returns the manifest of the version served: the one read at open, or the one a
    /// [`EmbeddedIndex::compact`] of this index switched to.
    pub fn manifest(&self) -> Arc<Manifest> {
        self.manifest
            .read()
            .map(|manifest| Arc::clone(&manifest))
            .unwrap_or_else(|poisoned| Arc::clone(&poisoned.into_inner()))
    }

    /// Loads `partition_ids` as a worker does (through the partition cache); the first
    /// partition that cannot be loaded fails the call.
    async fn load(&self, partition_ids: &[u32]) -> Result<HashMap<u32, Arc<PartitionData>>> {
        let manifest = self.manifest();
        // The loader never invokes children: the invoker it is given is only a placeholder.
        let loader = self
            .invoker
            .worker("embedded-loader", Arc::new(self.invoker.as_ref().clone()));
        let mut stats = InvocationStats::default();
        let (loaded, failed) = loader
            .load_partitions(
                &self.name,
                &manifest.index_version,
                &manifest.segment_keys_elsewhere(),
                partition_ids,
                &HashMap::new(),
                &mut stats,
            )
            .await;
        match failed.first() {
            Some(failure) => Err(failure_error(&self.name, failure)),
            None => Ok(loaded),
        }
    }

    /// Returns partition `partition` as a worker loads it (through the partition cache).
    pub async fn partition(&self, partition: u32) -> Result<Arc<PartitionData>> {
        if partition as usize >= self.manifest().partitions.len() {
            return Err(Error::NotFound {
                what: format!("partition {partition}"),
            });
        }
        self.load(&[partition])
            .await?
            .remove(&partition)
            .ok_or_else(|| Error::internal(format!("partition {partition} was not loaded")))
    }

    /// Loads every partition into the cache, so that later queries do no I/O (when the cache
    /// holds them all).
    pub async fn load_all(&self) -> Result<()> {
        let ids: Vec<u32> = (0..self.manifest().partitions.len() as u32).collect();
        self.load(&ids).await.map(|_| ())
    }

    fn deadline(&self) -> Instant {
        Instant::now() + Duration::from_millis(self.coordinator.config().timeout_ms)
    }

    /// Answers one query. Unless the request says otherwise, a partition that cannot be
    /// searched fails the query (`Error::Incomplete` naming it) instead of a partial answer.
    pub async fn query(&self, mut request: QueryRequest) -> Result<QueryResponse> {
        request.require_complete = true;
        self.coordinator
            .query(&self.name, request, "embedded", self.deadline())
            .await
    }

    /// Answers a batch of queries, one response per query in order; complete or an error.
    pub async fn query_batch(&self, requests: &[QueryRequest]) -> Result<Vec<QueryResponse>> {
        let batch = BatchRequest {
            require_complete: true,
            ..BatchRequest::new(requests.to_vec())
        };
        let response = self
            .coordinator
            .query_batch(&self.name, batch, "embedded", self.deadline())
            .await?;
        Ok(response.results)
    }

    /// Upserts rows; answers with the write's token once it is committed to the log.
    pub async fn upsert(&self, request: UpsertRequest) -> Result<WriteResponse> {
        self.coordinator
            .upsert(&self.name, request, "embedded")
            .await
    }

    /// Deletes rows by id or filter; answers with the write's token once it is committed.
    pub async fn delete(&self, request: DeleteRequest) -> Result<WriteResponse> {
        self.coordinator
            .delete(&self.name, request, "embedded")
            .await
    }

    /// Returns the live rows with the ids asked for.
    pub async fn fetch(&self, request: FetchRequest) -> Result<FetchResponse> {
        self.coordinator.fetch(&self.name, request).await
    }

    /// Folds the writes into a new version of the partitions ([`crate::compaction`]); later
    /// queries answer from it.
    pub async fn compact(
        &self,
        progress: Arc<dyn BuildProgress + Send>,
    ) -> Result<CompactionSummary> {
        self.compact_with(CompactionOptions::default(), progress)
            .await
    }

    /// As [`EmbeddedIndex::compact`], with `options` (a full rebuild, the drift allowed).
    pub async fn compact_with(
        &self,
        options: CompactionOptions,
        progress: Arc<dyn BuildProgress + Send>,
    ) -> Result<CompactionSummary> {
        let index_store: Arc<dyn BlobStore> =
            Arc::new(PrefixedStore::try_new(Arc::clone(&self.root), &self.name)?);
        let summary = compact_index_with(index_store, options, progress).await?;
        // Serve the new version from now on (the manifest is otherwise read once).
        let manifest = self.coordinator.manifest_refreshed(&self.name).await?;
        if let Ok(mut served) = self.manifest.write() {
            *served = Arc::new(manifest);
        }
        Ok(summary)
    }
}

fn failure_error(index: &str, failure: &FailedPartition) -> Error {
    match failure.kind {
        FailureKind::NotFound => Error::NotFound {
            what: format!("index '{index}' partition {}", failure.partition),
        },
        _ => Error::Incomplete {
            message: failure.message.clone(),
            missing_partitions: vec![failure.partition],
        },
    }
}

/// The name [`EmbeddedIndex::open_store`] serves its index under.
const ONE_INDEX_NAME: &str = "index";

/// A root holding one index, [`ONE_INDEX_NAME`], whose objects are those of `index_store`: what
/// the services (which address indexes by name under a root) need to serve a store that holds
/// one index at its top.
#[derive(Debug)]
struct OneIndexRoot {
    index_store: Arc<dyn BlobStore>,
}

impl OneIndexRoot {
    fn inner_key<'k>(&self, key: &'k str) -> Result<&'k str> {
        key.strip_prefix(ONE_INDEX_NAME)
            .and_then(|rest| rest.strip_prefix('/'))
            .ok_or_else(|| Error::NotFound {
                what: format!("object '{key}'"),
            })
    }
}

#[async_trait]
impl BlobStore for OneIndexRoot {
    async fn get(&self, key: &str) -> Result<Vec<u8>> {
        self.index_store.get(self.inner_key(key)?).await
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Vec<u8>> {
        self.index_store
            .get_range(self.inner_key(key)?, range)
            .await
    }

    async fn get_tagged(&self, key: &str) -> Result<(Vec<u8>, squash_storage::ObjectTag)> {
        self.index_store.get_tagged(self.inner_key(key)?).await
    }

    async fn put_if(
        &self,
        key: &str,
        bytes: Vec<u8>,
        condition: &squash_storage::PutCondition,
    ) -> Result<()> {
        self.index_store
            .put_if(self.inner_key(key)?, bytes, condition)
            .await
    }

    async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<()> {
        self.index_store.put(self.inner_key(key)?, bytes).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let root_prefix = format!("{ONE_INDEX_NAME}/");
        let inner_prefix = if let Some(rest) = prefix.strip_prefix(&root_prefix) {
            rest
        } else if root_prefix.starts_with(prefix) {
            ""
        } else {
            return Ok(Vec::new());
        };
        let keys = self.index_store.list(inner_prefix).await?;
        Ok(keys
            .into_iter()
            .map(|key| format!("{root_prefix}{key}"))
            .collect())
    }

    async fn delete(&self, key: &str) -> Result<()> {
        self.index_store.delete(self.inner_key(key)?).await
    }

    fn describe(&self) -> String {
        self.index_store.describe()
    }
}

#[cfg(test)]
mod tests {
    use squash_storage::MemoryStore;

    use super::*;

    #[tokio::test]
    async fn one_index_root_maps_keys_into_the_index_store() {
        let index_store = Arc::new(MemoryStore::new());
        index_store
            .put("manifest.sqsh", b"m".to_vec())
            .await
            .expect("put");
        index_store
            .put("v1/a.sqsh", b"a".to_vec())
            .await
            .expect("put");
        let root = OneIndexRoot {
            index_store: index_store.clone(),
        };
        assert_eq!(root.get("index/manifest.sqsh").await.expect("get"), b"m");
        assert_eq!(
            root.get_range("index/v1/a.sqsh", 0..1)
                .await
                .expect("range"),
            b"a"
        );
        assert!(matches!(
            root.get("other/manifest.sqsh").await,
            Err(Error::NotFound { .. })
        ));
        assert_eq!(
            root.list("").await.expect("list"),
            vec!["index/manifest.sqsh", "index/v1/a.sqsh"]
        );
        assert_eq!(
            root.list("index/v1").await.expect("list"),
            vec!["index/v1/a.sqsh"]
        );
        assert!(root.list("zzz").await.expect("list").is_empty());
        root.delete("index/v1/a.sqsh").await.expect("delete");
        assert!(index_store.get("v1/a.sqsh").await.is_err());
    }
}
