//! The coordinator function's logic: open an index (manifest and coordinator object, kept in
//! memory and re-checked after a time-to-live), plan a batch, fan it out over the invocation
//! tree, and merge the answers into one response per query with exact execution statistics.
//!
//! A query is planned against one index version and every worker is told that version, so an
//! answer never mixes versions. When a rebuild has removed the version being served (workers
//! report its partitions missing), the manifest is read again and the batch runs once more.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::batch_split::{
    plan_invocations, SplitSettings, DEFAULT_MAX_INVOCATIONS, DEFAULT_TARGET_SHARE,
};
use crate::decoding::{decode_blocking, decode_partition};
use crate::fanout::{collect_children, spawn_children, SubtreeAnswer};
use crate::invocation_tree::TreeShape;
use crate::invoker::WorkerInvoker;
use crate::publish::{replaced_version, unix_ms_now};
use crate::write_log;
use squash_core::attributes::{AttributeKind, AttributeSchema};
use squash_core::error::{Error, Result};
use squash_core::index::validate_index_name;
use squash_core::index::{CoordinatorData, Manifest, MANIFEST_KEY};
use squash_core::protocol::{
    AnswerOutput, BatchRequest, BatchResponse, ColumnSummary, ExecutionStats, FailedPartition,
    FailureKind, Hit, IndexSummary, InvocationStats, QueryHits, QueryRequest, QueryResponse,
    QueryStats, StoredAnswer, TreeNode, WorkerRequest, DEFAULT_TIMEOUT_MS, MAX_BATCH_QUERIES,
    PROTOCOL_VERSION,
};
use squash_core::search::{
    plan_batch_with_dead_rows, QueryPlan, RequestLimits, WorkModel, DEFAULT_WORK_MODEL,
};
use squash_core::writes::{
    check_fetch, DeadRows, DeleteRequest, Delta, DeltaLookup, FetchRequest, FetchResponse,
    FetchedRow, RowIds, UpsertRequest, WriteBatch, WriteResponse,
};
use squash_storage::{BlobStore, CountingStore, PrefixedStore};

/// Default children per tree node.
pub const DEFAULT_BRANCHING: usize = 4;
/// Default levels of workers at most.
pub const DEFAULT_MAX_DEPTH: usize = 3;
/// Default time an opened index is served before its manifest is read again.
pub const DEFAULT_MANIFEST_TTL_MS: u64 = 5_000;
/// Default time an open version is served from memory while the store cannot be read: long
/// enough to ride out a regional S3 incident's first minutes, short enough that a rebuild made
/// meanwhile is not ignored for long.
pub const DEFAULT_MANIFEST_MAX_STALE_MS: u64 = 300_000;
/// Where answers written to the store go, under the deployment root (index names start with a
/// letter or digit, so this never collides with an index).
pub const STORED_ANSWERS_PREFIX: &str = "_answers";
/// Where batches too large for a request body are put for `queries_from`, under the root.
pub const STORED_BATCHES_PREFIX: &str = "_batches";
/// The largest batch object `queries_from` reads: 10,000 queries of 784 dimensions with
/// filters take about 40 MB of JSON.
pub const MAX_BATCH_OBJECT_BYTES: usize = 64 << 20;

/// Default time a coordinator answers from the write log as it last read it (see
/// [`ServiceConfig::log_check_ms`]): as long as it serves a manifest before reading it again,
/// so a warm query reads nothing from the store, and a write's token makes its reads exact.
pub const DEFAULT_LOG_CHECK_MS: u64 = DEFAULT_MANIFEST_TTL_MS;

/// Older versions a coordinator keeps open for time travel (their coordinator objects are the
/// size of a served one's).
const MAX_HISTORICAL_VERSIONS: usize = 2;

/// Default most rows written since the last compaction an index takes (see
/// [`ServiceConfig::max_unfolded_rows`]).
pub const DEFAULT_MAX_UNFOLDED_ROWS: usize = 200_000;

/// How the coordinator runs queries.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceConfig {
    /// The worker slots: partition `p` is searched by `worker_functions[p % len]`.
    pub worker_functions: Vec<String>,
    /// Shape of the invocation tree.
    pub tree: TreeShape,
    /// Time a request may take end to end, in milliseconds.
    pub timeout_ms: u64,
    /// Time an opened index is served before its manifest is read again, in milliseconds.
    pub manifest_ttl_ms: u64,
    /// How long after its manifest was last read an open version is still served while the
    /// store cannot be read, in milliseconds; past it, queries fail with 503.
    pub manifest_max_stale_ms: u64,
    /// What one request may ask for.
    pub limits: RequestLimits,
    /// Most worker invocations of one request: a large batch is split over concurrent
    /// invocations up to this many (`batch_split.rs`).
    pub max_invocations: usize,
    /// Estimated milliseconds one worker invocation is aimed at; `None`: a quarter of
    /// `timeout_ms`.
    pub target_invocation_ms: Option<u64>,
    /// Functions the extra parts of a split batch go to, in turn; empty sends each part to
    /// its slot's own function (on AWS, another container of it).
    pub split_functions: Vec<String>,
    /// The work estimates the split is planned with.
    pub work_model: WorkModel,
    /// How long a coordinator answers from the write log as it last read it, in milliseconds
    /// ([`DEFAULT_LOG_CHECK_MS`]). A request with `min_token` past what was read reads the log
    /// at once, and a coordinator sees its own writes at once; other writers' are seen within
    /// this. 0 reads the log's newest entries for every request (one GET when nothing is new).
    pub log_check_ms: u64,
    /// Most rows written since the last compaction (upserted, or partition rows deleted or
    /// replaced) an index takes: past it, writes are refused until a compaction folds them in.
    /// Queries scan the unfolded rows exactly.
    pub max_unfolded_rows: usize,
}

impl ServiceConfig {
    /// Returns the estimated milliseconds one worker invocation is aimed at.
    pub fn target_invocation_ms(&self) -> u64 {
        self.target_invocation_ms
            .unwrap_or((self.timeout_ms as f64 * DEFAULT_TARGET_SHARE) as u64)
            .max(1)
    }
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            worker_functions: vec!["worker".to_string()],
            tree: TreeShape {
                branching: DEFAULT_BRANCHING,
                max_depth: DEFAULT_MAX_DEPTH,
            },
            timeout_ms: DEFAULT_TIMEOUT_MS,
            manifest_ttl_ms: DEFAULT_MANIFEST_TTL_MS,
            manifest_max_stale_ms: DEFAULT_MANIFEST_MAX_STALE_MS,
            limits: RequestLimits::for_timeout(DEFAULT_TIMEOUT_MS),
            max_invocations: DEFAULT_MAX_INVOCATIONS,
            target_invocation_ms: None,
            split_functions: Vec::new(),
            work_model: DEFAULT_WORK_MODEL,
            max_unfolded_rows: DEFAULT_MAX_UNFOLDED_ROWS,
            log_check_ms: DEFAULT_LOG_CHECK_MS,
        }
    }
}

fn summarize(name: &str, manifest: &Manifest) -> IndexSummary {
    let attributes = summarize_schema(&manifest.schema);
    IndexSummary {
        name: name.to_string(),
        index_version: manifest.index_version.clone(),
        created_unix_s: manifest.created_unix_s,
        metric: manifest.metric,
        dim: manifest.dim,
        num_vectors: manifest.num_vectors,
        num_partitions: manifest.partitions.len(),
        total_bytes: manifest.total_bytes,
        bits_per_dim: manifest.bits_per_dim,
        attributes,
    }
}

fn summarize_schema(schema: &AttributeSchema) -> Vec<ColumnSummary> {
    schema
        .columns
        .iter()
        .map(|column| ColumnSummary {
            name: column.name.clone(),
            kind: column.kind,
            num_categories: (column.kind == AttributeKind::Categorical)
                .then_some(column.dictionary.len()),
        })
        .collect()
}

/// An index as the coordinator holds it between requests.
#[derive(Debug)]
struct OpenIndex {
    manifest: Manifest,
    coordinator: Arc<CoordinatorData>,
    checked_at: Instant,
    /// The writes after the version's snapshot, through the newest entry read.
    delta: Arc<Delta>,
    /// Whether the log was listed for this version (a new version lists it once; after that,
    /// the next slots are read one by one).
    log_listed: bool,
    /// When the log was last read for this state (see [`ServiceConfig::log_check_ms`]).
    log_read_at: Mutex<Instant>,
    /// Where each id lives in the partitions, read when writes first hide a partition row or
    /// a fetch asks for one.
    row_ids: Option<Arc<RowIds>>,
    /// The partition rows the delta hides.
    dead: Arc<DeadRows>,
}

impl OpenIndex {
    /// Returns version `manifest` with no write read yet.
    fn fresh(manifest: Manifest, coordinator: Arc<CoordinatorData>) -> OpenIndex {
        OpenIndex {
            delta: Arc::new(
                Delta::new(
                    manifest.dim,
                    manifest.metric,
                    manifest.schema.clone(),
                    manifest.folded_through,
                )
                .with_clusters(Arc::new(coordinator.clusters.centroids.clone())),
            ),
            manifest,
            coordinator,
            checked_at: Instant::now(),
            log_listed: false,
            log_read_at: Mutex::new(Instant::now()),
            row_ids: None,
            dead: Arc::new(DeadRows::default()),
        }
    }
}

/// Store reads made while opening an index, for the execution statistics.
#[derive(Debug, Default)]
struct OpenReads {
    num_get_requests: u32,
    bytes_fetched: u64,
    /// Set when the store could not be read and the open version was served anyway: how long
    /// ago its manifest was read.
    stale_ms_opt: Option<u64>,
}

/// One coordinator process: the indexes it has opened and the invoker of its workers.
#[derive(Debug)]
pub struct CoordinatorService {
    root: Arc<dyn BlobStore>,
    invoker: Arc<dyn WorkerInvoker>,
    config: ServiceConfig,
    indexes: Mutex<HashMap<String, Arc<OpenIndex>>>,
    /// Retained older versions opened for time travel, newest use first.
    history: Mutex<Vec<(String, Arc<OpenIndex>)>>,
    num_served: AtomicU64,
}

impl CoordinatorService {
    /// Returns a coordinator over the indexes under `root` that runs queries on the workers
    /// reached through `invoker`.
    pub fn new(
        root: Arc<dyn BlobStore>,
        invoker: Arc<dyn WorkerInvoker>,
        config: ServiceConfig,
    ) -> Self {
        CoordinatorService {
            root,
            invoker,
            config,
            indexes: Mutex::new(HashMap::new()),
            history: Mutex::new(Vec::new()),
            num_served: AtomicU64::new(0),
        }
    }

    /// Returns the configuration.
    pub fn config(&self) -> &ServiceConfig {
        &self.config
    }

    /// Returns the deadline of a request starting now under the configured timeout.
    pub fn default_deadline(&self) -> Instant {
        Instant::now() + Duration::from_millis(self.config.timeout_ms)
    }

    fn cached(&self, name: &str) -> Option<Arc<OpenIndex>> {
        self.indexes
            .lock()
            .ok()
            .and_then(|indexes| indexes.get(name).cloned())
    }

    /// Returns the open index `name`, reading the manifest when the cached one is older than
    /// the time-to-live (or `refresh` is set), and the coordinator object when the version
    /// changed.
    async fn open(
        &self,
        name: &str,
        refresh: bool,
        reads: &mut OpenReads,
    ) -> Result<Arc<OpenIndex>> {
        validate_index_name(name)?;
        let cached_opt = self.cached(name);
        if let Some(cached) = &cached_opt {
            let fresh =
                cached.checked_at.elapsed() < Duration::from_millis(self.config.manifest_ttl_ms);
            if fresh && !refresh {
                return Ok(Arc::clone(cached));
            }
        }
        let manifest_key = format!("{name}/{MANIFEST_KEY}");
        reads.num_get_requests += 1;
        let manifest_bytes = match self.root.get(&manifest_key).await {
            Ok(bytes) => bytes,
            Err(Error::NotFound { .. }) => {
                return Err(Error::NotFound {
                    what: format!("index '{name}'"),
                })
            }
            // The store is down or slow: the version already open is still whole (its objects
            // are immutable), so keep serving it, for a bounded time and saying so, rather than
            // fail queries that warm workers can answer from memory. A rebuild is seen once the
            // store answers again.
            Err(error) => match cached_opt {
                Some(cached) if error.is_retryable() => {
                    let stale_ms = cached.checked_at.elapsed().as_millis() as u64;
                    if stale_ms > self.config.manifest_max_stale_ms {
                        return Err(Error::Storage {
                            message: format!(
                                "index '{name}': the store cannot be read ({error}) and the manifest in memory was read {stale_ms} ms ago, longer than the {} ms it may be served stale",
                                self.config.manifest_max_stale_ms
                            ),
                            retryable: true,
                        });
                    }
                    tracing::warn!(
                        index = name,
                        %error,
                        stale_ms,
                        version = %cached.manifest.index_version,
                        "manifest unreadable; serving the version already open"
                    );
                    reads.stale_ms_opt = Some(stale_ms);
                    return Ok(cached);
                }
                _ => return Err(error),
            },
        };
        reads.bytes_fetched += manifest_bytes.len() as u64;
        let manifest = Manifest::decode(&manifest_key, manifest_bytes)?;
        let coordinator = match &cached_opt {
            Some(cached) if cached.manifest.index_version == manifest.index_version => {
                Arc::clone(&cached.coordinator)
            }
            _ => self.read_coordinator(name, &manifest, reads).await?,
        };
        let opened = match &cached_opt {
            Some(cached) if cached.manifest.index_version == manifest.index_version => {
                Arc::new(OpenIndex {
                    manifest,
                    coordinator,
                    checked_at: Instant::now(),
                    delta: Arc::clone(&cached.delta),
                    log_listed: cached.log_listed,
                    log_read_at: Mutex::new(
                        cached
                            .log_read_at
                            .lock()
                            .map(|at| *at)
                            .unwrap_or_else(|_| Instant::now()),
                    ),
                    row_ids: cached.row_ids.clone(),
                    dead: Arc::clone(&cached.dead),
                })
            }
            _ => Arc::new(OpenIndex::fresh(manifest, coordinator)),
        };
        if let Ok(mut indexes) = self.indexes.lock() {
            indexes.insert(name.to_string(), Arc::clone(&opened));
        }
        Ok(opened)
    }

    /// Reads and decodes the coordinator object of version `manifest` of index `name`.
    async fn read_coordinator(
        &self,
        name: &str,
        manifest: &Manifest,
        reads: &mut OpenReads,
    ) -> Result<Arc<CoordinatorData>> {
        let key = format!("{name}/{}", manifest.coordinator_key);
        reads.num_get_requests += 1;
        let bytes = self.root.get(&key).await.map_err(|error| match error {
            // The manifest names this object: its absence is a damaged index (a server
            // fault), not an unknown one (which a 404 would tell the client).
            Error::NotFound { .. } => Error::internal(format!(
                "index '{name}' version {} is damaged: its coordinator object '{key}' is missing from the store",
                manifest.index_version
            )),
            other => other,
        })?;
        reads.bytes_fetched += bytes.len() as u64;
        let decode_key = key.clone();
        let coordinator =
            decode_blocking(move || CoordinatorData::decode(&decode_key, bytes)).await?;
        coordinator.check_matches(manifest, &key)?;
        Ok(Arc::new(coordinator))
    }

    /// Returns the retained version of index `name` that answers as of `token`, older than
    /// the one `current` serves: the newest whose snapshot is at or before `token`, found by
    /// following the chain of replaced versions (`Manifest::previous_version`) through the
    /// manifest copies kept beside their objects. A version replaced longer ago than the
    /// index's retention is not read, even while its objects wait for the next clean-up.
    async fn retained_version(
        &self,
        name: &str,
        current: &Manifest,
        token: u64,
        reads: &mut OpenReads,
    ) -> Result<Arc<OpenIndex>> {
        let retain_ms = current.retain_versions().as_millis() as u64;
        let now_ms = unix_ms_now();
        // The chain's manifest copies are read through a counter, for the statistics.
        let store = CountingStore::new(Arc::new(PrefixedStore::try_new(
            Arc::clone(&self.root),
            name,
        )?));
        let count_reads = |reads: &mut OpenReads| {
            let counters = store.snapshot();
            reads.num_get_requests += counters.num_get_requests as u32;
            reads.bytes_fetched += counters.bytes_fetched;
        };
        let mut successor = current.clone();
        let manifest = loop {
            let retained = now_ms.saturating_sub(successor.published_unix_ms) < retain_ms;
            let cached_opt = successor
                .previous_version
                .as_deref()
                .filter(|_| retained)
                .and_then(|version| self.cached_history(name, version));
            let replaced = match cached_opt {
                Some(cached) if cached.manifest.folded_through <= token => {
                    count_reads(reads);
                    return Ok(cached);
                }
                Some(cached) => Some(cached.manifest.clone()),
                None => replaced_version(&store, &successor, retain_ms, now_ms).await?,
            };
            match replaced {
                Some(manifest) if manifest.folded_through <= token => break manifest,
                Some(manifest) => successor = manifest,
                None => {
                    return Err(Error::invalid(
                        "as_of",
                        format!(
                            "{token} is before the oldest version index '{name}' still keeps: versions stay readable {} s after they are replaced, and the oldest kept answers as of token {} onwards",
                            current.retain_versions().as_secs(),
                            successor.folded_through
                        ),
                    ))
                }
            }
        };
        count_reads(reads);
        let coordinator = self.read_coordinator(name, &manifest, reads).await?;
        let opened = Arc::new(OpenIndex::fresh(manifest, coordinator));
        if let Ok(mut history) = self.history.lock() {
            history.retain(|(index, _)| index != name);
            history.truncate(MAX_HISTORICAL_VERSIONS - 1);
            history.insert(0, (name.to_string(), Arc::clone(&opened)));
        }
        Ok(opened)
    }

    fn cached_history(&self, name: &str, version: &str) -> Option<Arc<OpenIndex>> {
        self.history.lock().ok().and_then(|history| {
            history
                .iter()
                .find(|(index, opened)| index == name && opened.manifest.index_version == version)
                .map(|(_, opened)| Arc::clone(opened))
        })
    }

    /// Returns `opened` with every write committed to the log applied: the state a query,
    /// fetch or write is answered against. Costs one GET of the next free slot when nothing was
    /// written since (a LIST, the first time a version is read).
    async fn caught_up(
        &self,
        name: &str,
        opened: Arc<OpenIndex>,
        min_token_opt: Option<u64>,
        reads: &mut OpenReads,
    ) -> Result<Arc<OpenIndex>> {
        let list_first = !opened.log_listed;
        let recently_read = self.config.log_check_ms > 0
            && opened
                .log_read_at
                .lock()
                .is_ok_and(|at| at.elapsed() < Duration::from_millis(self.config.log_check_ms));
        let token_reached = min_token_opt.is_none_or(|token| token <= opened.delta.head());
        if !list_first && recently_read && token_reached {
            return Ok(opened);
        }
        let read_at = Instant::now();
        let entries = match write_log::read_after(
            self.root.as_ref(),
            &format!("{name}/"),
            opened.delta.head(),
            list_first,
        )
        .await
        {
            Ok(entries) => entries,
            // The store is down: the writes already read are still whole, so keep answering
            // from them (as the open version is kept), unless the request needs a newer token.
            Err(error) if error.is_retryable() && !list_first && token_reached => {
                tracing::warn!(index = name, %error, head = opened.delta.head(), "write log unreadable; answering from the writes already read");
                return Ok(opened);
            }
            Err(error) => return Err(error),
        };
        reads.num_get_requests += entries.len() as u32 + 1;
        if entries.is_empty() && !list_first {
            if let Ok(mut at) = opened.log_read_at.lock() {
                *at = read_at;
            }
            return Ok(opened);
        }
        let mut delta = (*opened.delta).clone();
        for entry in &entries {
            reads.bytes_fetched += (entry.batch.vectors.len() * 4) as u64;
            delta.apply(entry)?;
        }
        let updated = Arc::new(
            self.with_delta(name, &opened, delta, read_at, reads)
                .await?,
        );
        if let Ok(mut indexes) = self.indexes.lock() {
            // Concurrent requests may catch up at once: keep the newest state of the version.
            let newer = match indexes.get(name) {
                Some(current) => {
                    current.manifest.index_version != updated.manifest.index_version
                        && current.checked_at <= updated.checked_at
                        || current.manifest.index_version == updated.manifest.index_version
                            && (current.delta.head() < updated.delta.head() || !current.log_listed)
                }
                None => true,
            };
            if newer {
                indexes.insert(name.to_string(), Arc::clone(&updated));
            }
        }
        Ok(updated)
    }

    /// Returns the state of index `name` as of write `token` (time travel): the version that
    /// held the writes up to `token` (the one `opened` serves, or a retained older one) plus
    /// the log entries after its snapshot through `token`. Not cached: it is read again for
    /// each request that asks for it (older versions' coordinator objects are kept).
    async fn state_as_of(
        &self,
        name: &str,
        opened: &Arc<OpenIndex>,
        token: u64,
        reads: &mut OpenReads,
    ) -> Result<Arc<OpenIndex>> {
        if token == opened.delta.head() {
            return Ok(Arc::clone(opened));
        }
        let base = if token < opened.delta.folded_through() {
            self.retained_version(name, &opened.manifest, token, reads)
                .await?
        } else {
            Arc::clone(opened)
        };
        let folded = base.delta.folded_through();
        if token == folded {
            return Ok(base);
        }
        let entries =
            write_log::read_after(self.root.as_ref(), &format!("{name}/"), folded, true).await?;
        reads.num_get_requests += entries.len() as u32 + 1;
        let mut delta = base.delta.emptied();
        for entry in entries.iter().take_while(|entry| entry.seq <= token) {
            delta.apply(entry)?;
        }
        Ok(Arc::new(
            self.with_delta(name, &base, delta, Instant::now(), reads)
                .await?,
        ))
    }

    /// Returns the version `opened` serves with `delta` (read from the log at `read_at`) over
    /// it, and the partition rows the delta hides placed in their partitions and clusters.
    async fn with_delta(
        &self,
        name: &str,
        opened: &OpenIndex,
        delta: Delta,
        read_at: Instant,
        reads: &mut OpenReads,
    ) -> Result<OpenIndex> {
        let hidden = delta.hidden_base_ids();
        let (row_ids, dead) = if hidden.is_empty() {
            (opened.row_ids.clone(), Arc::new(DeadRows::default()))
        } else {
            let row_ids = self.row_ids(name, opened, reads).await?;
            let dead = Arc::new(row_ids.dead_rows(&opened.coordinator, &hidden));
            (Some(row_ids), dead)
        };
        Ok(OpenIndex {
            manifest: opened.manifest.clone(),
            coordinator: Arc::clone(&opened.coordinator),
            checked_at: opened.checked_at,
            delta: Arc::new(delta),
            log_listed: true,
            log_read_at: Mutex::new(read_at),
            row_ids,
            dead,
        })
    }

    /// Returns the row ids of the open version, reading them on first use.
    async fn row_ids(
        &self,
        name: &str,
        opened: &OpenIndex,
        reads: &mut OpenReads,
    ) -> Result<Arc<RowIds>> {
        if let Some(row_ids) = &opened.row_ids {
            return Ok(Arc::clone(row_ids));
        }
        let Some(relative_key) = &opened.manifest.row_ids_key else {
            return Err(Error::internal(format!(
                "index '{name}' version {} has writes but no row-ids object; compact it",
                opened.manifest.index_version
            )));
        };
        let key = format!("{name}/{relative_key}");
        let bytes = self.root.get(&key).await?;
        reads.num_get_requests += 1;
        reads.bytes_fetched += bytes.len() as u64;
        let num_rows = opened.manifest.num_vectors;
        let row_ids = decode_blocking(move || RowIds::decode(&key, bytes, num_rows)).await?;
        Ok(Arc::new(row_ids))
    }

    /// Returns index `name` with every committed write applied, checking that it reaches
    /// `min_token_opt`.
    async fn open_current(
        &self,
        name: &str,
        min_token_opt: Option<u64>,
        reads: &mut OpenReads,
    ) -> Result<Arc<OpenIndex>> {
        self.open_current_refreshed(name, min_token_opt, false, reads)
            .await
    }

    /// As [`Self::open_current`], reading the manifest again first when `refresh` is set.
    async fn open_current_refreshed(
        &self,
        name: &str,
        min_token_opt: Option<u64>,
        refresh: bool,
        reads: &mut OpenReads,
    ) -> Result<Arc<OpenIndex>> {
        let opened = self.open(name, refresh, reads).await?;
        let opened = self.caught_up(name, opened, min_token_opt, reads).await?;
        if let Some(min_token) = min_token_opt {
            if min_token > opened.delta.head() {
                return Err(Error::invalid(
                    "min_token",
                    format!(
                        "{min_token} is past the newest write of index '{name}' ({}); a token comes from a write's answer",
                        opened.delta.head()
                    ),
                ));
            }
        }
        Ok(opened)
    }

    /// Upserts rows into index `name`; answers once the write is committed to the log.
    pub async fn upsert(
        &self,
        name: &str,
        request: UpsertRequest,
        request_id: &str,
    ) -> Result<WriteResponse> {
        let mut reads = OpenReads::default();
        // A write reads the manifest afresh: the log position it builds on must not predate a
        // compaction or a rebuild.
        let opened = self
            .open_current_refreshed(name, None, true, &mut reads)
            .await?;
        let manifest = &opened.manifest;
        let batch = WriteBatch::upsert(request, manifest.dim, manifest.metric, &manifest.schema)?;
        self.commit(name, &opened, batch, request_id).await
    }

    /// Deletes rows of index `name` by id or filter; answers once the write is committed.
    pub async fn delete(
        &self,
        name: &str,
        request: DeleteRequest,
        request_id: &str,
    ) -> Result<WriteResponse> {
        let mut reads = OpenReads::default();
        let opened = self
            .open_current_refreshed(name, None, true, &mut reads)
            .await?;
        let batch = WriteBatch::delete(request, &opened.manifest.schema)?;
        self.commit(name, &opened, batch, request_id).await
    }

    /// Commits a checked write to the log of `name`.
    async fn commit(
        &self,
        name: &str,
        opened: &OpenIndex,
        batch: WriteBatch,
        request_id: &str,
    ) -> Result<WriteResponse> {
        if opened.manifest.row_ids_key.is_none() {
            return Err(Error::invalid(
                "index",
                format!(
                    "'{name}' was built before squash took writes (its version has no row-ids object); run `squash compact` on it once, then write"
                ),
            ));
        }
        let unfolded = opened.delta.num_live_rows() + opened.dead.total as usize;
        if unfolded + batch.num_upserts() > self.config.max_unfolded_rows {
            return Err(Error::Throttled {
                message: format!(
                    "index '{name}' has {unfolded} rows written since its last compaction; it takes at most {} before `squash compact` (or the scheduled compaction) folds them in",
                    self.config.max_unfolded_rows
                ),
                retry_after_ms: Some(60_000),
            });
        }
        let response = WriteResponse {
            token: 0,
            upserted: batch.num_upserts(),
            deleted_ids: batch.delete_ids.len(),
            deleted_by_filter: batch.delete_filter.is_some(),
        };
        let unique_id = format!(
            "{request_id}-{:x}-{:x}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0),
            self.num_served.fetch_add(1, Ordering::Relaxed)
        );
        let token = write_log::append(
            self.root.as_ref(),
            &format!("{name}/"),
            batch,
            opened.manifest.dim,
            &unique_id,
            opened.delta.head(),
            opened.delta.folded_through(),
        )
        .await?;
        tracing::info!(request_id, index = name, token, "write committed");
        // This coordinator's own writes are seen by its next requests at once, whatever
        // `log_check_ms` allows.
        if let Some(cached) = self.cached(name) {
            let mut reads = OpenReads::default();
            if let Err(error) = self.caught_up(name, cached, Some(token), &mut reads).await {
                tracing::warn!(index = name, %error, "could not read back a committed write");
            }
        }
        Ok(WriteResponse { token, ..response })
    }

    /// Returns the live rows of index `name` with the ids asked for.
    pub async fn fetch(&self, name: &str, request: FetchRequest) -> Result<FetchResponse> {
        check_fetch(&request)?;
        let mut reads = OpenReads::default();
        let opened = self
            .open_current(name, request.min_token, &mut reads)
            .await?;
        let manifest = &opened.manifest;
        let mut found: HashMap<u64, FetchedRow> = HashMap::new();
        // Partition rows to read: partition -> (segment row, id).
        let mut wanted: BTreeMap<u32, Vec<(usize, u64)>> = BTreeMap::new();
        let mut row_ids_opt: Option<Arc<RowIds>> = None;
        for &id in &request.ids {
            match opened.delta.lookup(id) {
                DeltaLookup::Live(row) => {
                    found.insert(
                        id,
                        FetchedRow {
                            id,
                            vector: request.include_vectors.then(|| row.vector.clone()),
                            attributes: row.attributes.clone(),
                        },
                    );
                }
                DeltaLookup::Deleted => {}
                DeltaLookup::Untouched => {
                    if row_ids_opt.is_none() {
                        row_ids_opt = Some(self.row_ids(name, &opened, &mut reads).await?);
                    }
                    let row_ids = row_ids_opt.as_ref().expect("set above");
                    if let Some(row) = row_ids.row_of(id) {
                        let offsets = &opened.coordinator.partition_row_offsets;
                        let partition = offsets.partition_point(|&first| first <= row) - 1;
                        wanted
                            .entry(partition as u32)
                            .or_default()
                            .push(((row - offsets[partition]) as usize, id));
                    }
                }
            }
        }
        for (partition, rows) in wanted {
            let entry = manifest
                .partitions
                .iter()
                .find(|entry| entry.id == partition)
                .ok_or_else(|| {
                    Error::internal(format!("partition {partition} is not in the manifest"))
                })?;
            let key = format!("{name}/{}", entry.key);
            let bytes = self.root.get(&key).await?;
            let data = decode_partition(key, bytes, partition).await?;
            let deleted_by_filter = opened.delta.deleted_base_rows(&data.attributes)?;
            for (row, id) in rows {
                if data.ids.get(row) != Some(&id) {
                    return Err(Error::internal(format!(
                        "index '{name}': the row-ids object places id {id} at row {row} of partition {partition}, which holds another id"
                    )));
                }
                if deleted_by_filter[row] {
                    continue;
                }
                found.insert(
                    id,
                    FetchedRow {
                        id,
                        vector: request
                            .include_vectors
                            .then(|| data.vectors[row * data.dim..(row + 1) * data.dim].to_vec()),
                        attributes: data.attributes.row_json(&data.schema, row),
                    },
                );
            }
        }
        let mut rows = Vec::with_capacity(found.len());
        let mut missing = Vec::new();
        for id in &request.ids {
            match found.remove(id) {
                Some(row) => rows.push(row),
                None => missing.push(*id),
            }
        }
        Ok(FetchResponse {
            rows,
            missing,
            token: opened.delta.head(),
        })
    }

    /// Returns the manifest of the version of index `name` being served.
    pub async fn manifest(&self, name: &str) -> Result<Manifest> {
        let opened = self.open(name, false, &mut OpenReads::default()).await?;
        Ok(opened.manifest.clone())
    }

    /// Reads the manifest of index `name` again now (after a build or compaction made in this
    /// process) and returns it.
    pub async fn manifest_refreshed(&self, name: &str) -> Result<Manifest> {
        let opened = self.open(name, true, &mut OpenReads::default()).await?;
        Ok(opened.manifest.clone())
    }

    /// Returns the summary of index `name`.
    pub async fn describe(&self, name: &str) -> Result<IndexSummary> {
        let opened = self.open(name, false, &mut OpenReads::default()).await?;
        Ok(summarize(name, &opened.manifest))
    }

    /// Returns the names of the indexes under the root, sorted.
    pub async fn list(&self) -> Result<Vec<String>> {
        let suffix = format!("/{MANIFEST_KEY}");
        let keys = self.root.list("").await?;
        Ok(keys
            .iter()
            .filter_map(|key| key.strip_suffix(&suffix))
            .filter(|name| validate_index_name(name).is_ok())
            .map(str::to_string)
            .collect())
    }

    /// Answers one query on index `name`.
    pub async fn query(
        &self,
        name: &str,
        request: QueryRequest,
        request_id: &str,
        deadline: Instant,
    ) -> Result<QueryResponse> {
        let require_complete = request.require_complete;
        let tree = self.tree_shape(request.branching)?;
        let (mut responses, execution) = self
            .run(
                name,
                std::slice::from_ref(&request),
                RunOptions {
                    require_complete,
                    tree,
                    output: AnswerOutput::Response,
                    single: true,
                    target_invocation_ms: None,
                    max_invocations: None,
                    min_token: request.min_token,
                    as_of: request.as_of,
                },
                request_id,
                deadline,
            )
            .await?;
        let mut response = responses
            .pop()
            .ok_or_else(|| Error::internal("no answer for the query"))?;
        response.stats.execution = Some(execution);
        Ok(response)
    }

    /// Answers a batch of queries on index `name`.
    pub async fn query_batch(
        &self,
        name: &str,
        mut batch: BatchRequest,
        request_id: &str,
        deadline: Instant,
    ) -> Result<BatchResponse> {
        if let Some(object_name) = batch.queries_from.take() {
            if !batch.queries.is_empty() {
                return Err(Error::invalid(
                    "queries_from",
                    "set either queries or queries_from, not both",
                ));
            }
            batch.queries = self.stored_batch(name, &object_name).await?;
        }
        if batch.queries.is_empty() || batch.queries.len() > MAX_BATCH_QUERIES {
            return Err(Error::invalid(
                "queries",
                format!(
                    "must hold between 1 and {MAX_BATCH_QUERIES} queries, got {}",
                    batch.queries.len()
                ),
            ));
        }
        // As of one token per batch: each query's own would need its own state of the index.
        if let Some(position) = batch.queries.iter().position(|q| q.as_of.is_some()) {
            return Err(Error::invalid(
                format!("queries[{position}].as_of"),
                "set as_of on the batch, not on its queries",
            ));
        }
        // The tree is one per batch: a query's own `branching` would be silently ignored.
        if let Some(position) = batch.queries.iter().position(|q| q.branching.is_some()) {
            return Err(Error::invalid(
                format!("queries[{position}].branching"),
                "set branching on the batch, not on its queries",
            ));
        }
        if batch.target_invocation_ms == Some(0) {
            return Err(Error::invalid(
                "target_invocation_ms",
                "must be at least 1 (milliseconds)",
            ));
        }
        if batch.max_invocations == Some(0) {
            return Err(Error::invalid("max_invocations", "must be at least 1"));
        }
        let tree = self.tree_shape(batch.branching)?;
        let (results, stats) = self
            .run(
                name,
                &batch.queries,
                RunOptions {
                    require_complete: batch.require_complete,
                    tree,
                    output: batch.output,
                    single: false,
                    target_invocation_ms: batch.target_invocation_ms,
                    max_invocations: batch.max_invocations,
                    min_token: batch
                        .queries
                        .iter()
                        .filter_map(|query| query.min_token)
                        .chain(batch.min_token)
                        .max(),
                    as_of: batch.as_of,
                },
                request_id,
                deadline,
            )
            .await
            .map_err(|error| match error {
                // The newest token asked for is the one refused: name where it was set.
                Error::InvalidInput { field, reason } if field == "min_token" => {
                    let newest = batch
                        .queries
                        .iter()
                        .enumerate()
                        .filter_map(|(position, query)| query.min_token.map(|t| (t, position)))
                        .max_by_key(|&(token, position)| (token, std::cmp::Reverse(position)));
                    let field = match (newest, batch.min_token) {
                        (Some((token, position)), batch_token)
                            if batch_token.is_none_or(|b| token > b) =>
                        {
                            format!("queries[{position}].min_token")
                        }
                        _ => field,
                    };
                    Error::InvalidInput { field, reason }
                }
                // A batch names the query even when it holds only one.
                Error::InvalidInput { field, reason }
                    if batch.queries.len() == 1
                        && field != "index"
                        && !field.starts_with("queries") =>
                {
                    Error::InvalidInput {
                        field: format!("queries[0].{field}"),
                        reason,
                    }
                }
                other => other,
            })?;
        let response = BatchResponse {
            partial: results.iter().any(|r| r.partial),
            results,
            stats,
            stored: None,
        };
        match batch.output {
            AnswerOutput::Response => Ok(response),
            AnswerOutput::Store => self.store_answer(name, request_id, response).await,
        }
    }

    /// Returns the queries of the batch object `object_name` under
    /// `_batches/{index}/` (a JSON array of query requests).
    async fn stored_batch(&self, index: &str, object_name: &str) -> Result<Vec<QueryRequest>> {
        validate_index_name(index)?;
        let safe_name = !object_name.is_empty()
            && object_name.len() <= 200
            && !object_name.starts_with('.')
            && object_name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !safe_name {
            return Err(Error::invalid(
                "queries_from",
                format!(
                    "'{}' is not an object name: up to 200 letters, digits, '-', '_' and '.', not starting with '.'",
                    object_name.escape_debug()
                ),
            ));
        }
        let key = format!("{STORED_BATCHES_PREFIX}/{index}/{object_name}");
        let bytes = match self.root.get(&key).await {
            Ok(bytes) => bytes,
            Err(Error::NotFound { .. }) => {
                return Err(Error::invalid(
                    "queries_from",
                    format!(
                        "no object '{key}' in {}; put the batch there first",
                        self.root.describe()
                    ),
                ))
            }
            Err(other) => return Err(other),
        };
        if bytes.len() > MAX_BATCH_OBJECT_BYTES {
            return Err(Error::invalid(
                "queries_from",
                format!(
                    "'{key}' holds {} bytes, over the limit of {MAX_BATCH_OBJECT_BYTES}",
                    bytes.len()
                ),
            ));
        }
        serde_json::from_slice(&bytes).map_err(|error| {
            Error::invalid(
                "queries_from",
                format!("'{key}' is not a JSON array of queries: {error}"),
            )
        })
    }

    /// Writes `response` whole to the store and returns it without its results, saying where
    /// they are.
    async fn store_answer(
        &self,
        name: &str,
        request_id: &str,
        response: BatchResponse,
    ) -> Result<BatchResponse> {
        let safe_id = !request_id.is_empty()
            && request_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
            && !request_id.starts_with('.');
        if !safe_id {
            return Err(Error::internal(format!(
                "request id '{}' cannot name a stored answer",
                request_id.escape_debug()
            )));
        }
        let key = format!("{STORED_ANSWERS_PREFIX}/{name}/{request_id}.json");
        let bytes = serde_json::to_vec(&response)
            .map_err(|e| Error::internal(format!("encoding the answer: {e}")))?;
        let num_bytes = bytes.len() as u64;
        self.root.put(&key, bytes).await?;
        Ok(BatchResponse {
            results: Vec::new(),
            stored: Some(StoredAnswer {
                location: format!("{}/{key}", self.root.describe().trim_end_matches('/')),
                bytes: num_bytes,
            }),
            ..response
        })
    }

    /// Returns the configured tree shape with the request's branching, if it sets one.
    fn tree_shape(&self, branching_opt: Option<usize>) -> Result<TreeShape> {
        match branching_opt {
            None => Ok(self.config.tree),
            Some(branching) => TreeShape::try_new(branching, self.config.tree.max_depth),
        }
    }

    /// Runs a batch on index `name`: plan against the open version, check the plan against
    /// the limits, fan out, and when a rebuild removed that version meanwhile, read the
    /// manifest again and run once more.
    async fn run(
        &self,
        name: &str,
        requests: &[QueryRequest],
        options: RunOptions,
        request_id: &str,
        deadline: Instant,
    ) -> Result<(Vec<QueryResponse>, ExecutionStats)> {
        let RunOptions {
            require_complete,
            tree,
            output,
            single,
            target_invocation_ms,
            max_invocations,
            min_token,
            as_of,
        } = options;
        let split = SplitSettings {
            target_ms: target_invocation_ms.unwrap_or_else(|| self.config.target_invocation_ms())
                as f64,
            max_invocations: max_invocations
                .unwrap_or(usize::MAX)
                .min(self.config.max_invocations),
            max_rows: self.config.limits.max_rows_per_invocation,
            split_functions: self.config.split_functions.clone(),
            model: self.config.work_model,
        };
        let started = Instant::now();
        let cold_start = self.num_served.fetch_add(1, Ordering::Relaxed) == 0;
        let mut reads = OpenReads::default();
        let mut refresh = false;
        loop {
            // Answering as of a token needs the log up to it, like `min_token`.
            let needed = min_token.max(as_of);
            let opened = self
                .open_current_refreshed(name, needed, refresh, &mut reads)
                .await
                .map_err(|error| match error {
                    Error::InvalidInput { field, reason }
                        if field == "min_token" && as_of == needed && min_token < needed =>
                    {
                        Error::InvalidInput {
                            field: "as_of".to_string(),
                            reason,
                        }
                    }
                    other => other,
                })?;
            let opened = match as_of {
                Some(token) => self.state_as_of(name, &opened, token, &mut reads).await?,
                None => opened,
            };
            let delta = &opened.delta;
            // Delete filters of unfolded writes hide partition rows: the partitions' share of
            // each query carries them (after the query's own filter is checked as sent, so its
            // errors name its own fields).
            let base_requests: Option<Vec<QueryRequest>> = if delta.delete_filters().is_empty() {
                None
            } else {
                check_filters(&opened.coordinator.schema, requests)?;
                Some(
                    requests
                        .iter()
                        .map(|request| QueryRequest {
                            filter: delta.base_filter(request.filter.as_ref()),
                            ..request.clone()
                        })
                        .collect(),
                )
            };
            let mut plan = plan_batch_with_dead_rows(
                &opened.coordinator,
                base_requests.as_deref().unwrap_or(requests),
                &opened.dead.per_cluster,
            )?;
            for task in &mut plan.tasks {
                task.object_bytes = opened
                    .manifest
                    .partitions
                    .iter()
                    .find(|entry| entry.id == task.partition)
                    .map(|entry| entry.size_bytes);
                if let Some(ids) = opened.dead.ids_by_partition.get(&task.partition) {
                    task.excluded_ids = ids.clone();
                }
            }
            self.config
                .limits
                .check_answer(&plan, &opened.coordinator.schema, output, single)?;
            let invocations = plan_invocations(
                &plan,
                opened.coordinator.dim,
                &self.config.worker_functions,
                tree,
                &split,
            )?;
            let (heaviest_rows, heaviest_partition) = invocations.heaviest_rows;
            self.config.limits.check_invocation_rows(
                heaviest_rows,
                heaviest_partition,
                invocations.num_invocations,
                single,
            )?;
            let nodes = invocations.nodes;
            let plan_ms = started.elapsed().as_secs_f64() * 1e3;
            let fan_out_started = Instant::now();
            let root_request = Arc::new(WorkerRequest {
                protocol_version: PROTOCOL_VERSION,
                request_id: request_id.to_string(),
                index: name.to_string(),
                index_version: opened.manifest.index_version.clone(),
                budget_ms: deadline
                    .saturating_duration_since(Instant::now())
                    .as_millis() as u64,
                queries: plan.queries.clone(),
                tasks: Vec::new(),
                children: nodes.clone(),
                segment_keys: opened.manifest.segment_keys_elsewhere(),
            });
            let (answer, top_level_attempts) = self.fan_out(&root_request, deadline).await?;
            let fan_out_ms = fan_out_started.elapsed().as_secs_f64() * 1e3;
            let (results, rest) = answer.into_query_results();
            let version_gone = rest.failed.iter().any(|f| f.kind == FailureKind::NotFound);
            if version_gone && !refresh {
                tracing::warn!(
                    request_id,
                    index = name,
                    "index version gone; reading the manifest again"
                );
                refresh = true;
                continue;
            }
            let mut responses = query_responses(
                results,
                &plan.plans,
                requests,
                &rest.failed,
                opened.manifest.partitions.len(),
                require_complete,
            )?;
            if delta.num_live_rows() > 0 {
                add_unfolded_hits(
                    delta,
                    opened.manifest.metric,
                    requests,
                    &plan.plans,
                    &mut responses,
                )?;
            }
            let mut execution = ExecutionStats {
                token: delta.head(),
                unfolded_rows: delta.num_live_rows() as u64,
                request_id: request_id.to_string(),
                index_version: opened.manifest.index_version.clone(),
                coordinator_cold_start: cold_start,
                coordinator_store_get_requests: reads.num_get_requests,
                coordinator_store_bytes_fetched: reads.bytes_fetched,
                invocations: top_level_attempts,
                split_invocations: invocations.num_split as u32,
                tree_depth: nodes.iter().map(TreeNode::depth).max().unwrap_or(0) as u32,
                plan_ms,
                fan_out_ms,
                store_get_requests: reads.num_get_requests,
                store_bytes_fetched: reads.bytes_fetched,
                stale_manifest_ms: reads.stale_ms_opt,
                ..ExecutionStats::default()
            };
            add_worker_stats(&mut execution, rest.invocations);
            execution.total_ms = started.elapsed().as_secs_f64() * 1e3;
            tracing::info!(
                request_id,
                index = name,
                queries = requests.len(),
                invocations = execution.invocations,
                missing = rest.failed.len(),
                total_ms = execution.total_ms,
                "query answered"
            );
            return Ok((responses, execution));
        }
    }

    /// Invokes the top level of the tree and merges what comes back; returns the merged
    /// answer and the number of top-level invocations (retries included).
    async fn fan_out(
        &self,
        root_request: &Arc<WorkerRequest>,
        deadline: Instant,
    ) -> Result<(SubtreeAnswer, u32)> {
        let mut answer = SubtreeAnswer::new(root_request);
        let children = spawn_children(&self.invoker, root_request, deadline);
        let invocations = collect_children(children, &mut answer).await?;
        Ok((answer, invocations.num_invocations))
    }
}

/// How [`CoordinatorService::run`] runs a batch.
#[derive(Debug, Clone, Copy)]
struct RunOptions {
    require_complete: bool,
    tree: TreeShape,
    output: AnswerOutput,
    /// A one-query request: limit errors name its fields without a `queries` prefix.
    single: bool,
    /// The batch's own target time per invocation, if it sets one.
    target_invocation_ms: Option<u64>,
    /// The batch's own cap on invocations, if it sets one.
    max_invocations: Option<usize>,
    /// The newest write token the answer must reflect, if the request names one.
    min_token: Option<u64>,
    /// The write token to answer as of, if the request names one.
    as_of: Option<u64>,
}

/// Parses each request's filter against `schema`; the first bad one fails with its field
/// named as planning names it.
fn check_filters(schema: &AttributeSchema, requests: &[QueryRequest]) -> Result<()> {
    for (position, request) in requests.iter().enumerate() {
        if let Some(filter) = &request.filter {
            squash_core::filter::Filter::parse(filter, schema).map_err(|error| match error {
                Error::InvalidInput { field, reason } if requests.len() > 1 => {
                    Error::InvalidInput {
                        field: format!("queries[{position}].{field}"),
                        reason,
                    }
                }
                other => other,
            })?;
        }
    }
    Ok(())
}

/// Merges into each response the exact nearest unfolded rows that match its query's filter,
/// among those filed under the fine clusters its plan probes. When the answer is still short of
/// `k`, every unfolded row is scored: the plan covers the partitions' matches only, so this
/// keeps the one-pass guarantee for matches that exist only among the written rows.
fn add_unfolded_hits(
    delta: &Delta,
    metric: squash_core::metric::Metric,
    requests: &[QueryRequest],
    plans: &[QueryPlan],
    responses: &mut [QueryResponse],
) -> Result<()> {
    use rayon::prelude::*;
    let unfolded: Vec<Vec<Hit>> = requests
        .par_iter()
        .zip(plans)
        .zip(responses.par_iter())
        .map(|((request, plan), response)| {
            let mut vector = request.vector.clone();
            if metric.normalizes() {
                squash_core::metric::normalize_in_place(&mut vector);
            }
            let search = |radius: Option<f32>| {
                delta.search(
                    &vector,
                    request.filter.as_ref(),
                    request.k,
                    request.include_attributes,
                    radius,
                )
            };
            let hits = search(plan.probe_radius)?;
            if plan.probe_radius.is_some() && response.hits.len() + hits.len() < request.k {
                return search(None);
            }
            Ok(hits)
        })
        .collect::<Result<Vec<Vec<Hit>>>>()?;
    for ((response, request), hits) in responses.iter_mut().zip(requests).zip(unfolded) {
        if hits.is_empty() {
            continue;
        }
        response.hits.extend(hits);
        response
            .hits
            .sort_by(|a, b| a.distance.total_cmp(&b.distance).then(a.id.cmp(&b.id)));
        response.hits.truncate(request.k);
    }
    Ok(())
}

/// Returns one response per query, in order: its merged hits, the partitions of its plan that
/// failed (the answer is then partial), and its statistics. With `require_complete` (on the
/// batch or the query), a query missing a partition fails the batch as `Incomplete`.
fn query_responses(
    results: Vec<QueryHits>,
    plans: &[QueryPlan],
    requests: &[QueryRequest],
    failed: &[FailedPartition],
    partitions_total: usize,
    require_complete: bool,
) -> Result<Vec<QueryResponse>> {
    let missing: BTreeSet<u32> = failed.iter().map(|f| f.partition).collect();
    // Per failed partition, the queries left without it: `None` for all that visit it (a
    // failure naming no queries), else those a failed part of a split batch held.
    let mut missing_for: HashMap<u32, Option<BTreeSet<u32>>> = HashMap::new();
    for failure in failed {
        let entry = missing_for
            .entry(failure.partition)
            .or_insert_with(|| Some(BTreeSet::new()));
        if failure.queries.is_empty() {
            *entry = None;
        } else if let Some(queries) = entry {
            queries.extend(&failure.queries);
        }
    }
    let mut responses = Vec::with_capacity(results.len());
    for (position, ((result, query_plan), request)) in
        results.into_iter().zip(plans).zip(requests).enumerate()
    {
        let missing_partitions: Vec<u32> = query_plan
            .partitions
            .iter()
            .copied()
            .filter(|p| match missing_for.get(p) {
                None => false,
                Some(None) => true,
                Some(Some(queries)) => queries.contains(&(position as u32)),
            })
            .collect();
        if !missing_partitions.is_empty() && (require_complete || request.require_complete) {
            let message = failed
                .first()
                .map(|f| f.message.clone())
                .unwrap_or_default();
            return Err(Error::Incomplete {
                message,
                missing_partitions: missing.into_iter().collect(),
            });
        }
        responses.push(QueryResponse {
            hits: result.hits,
            partial: !missing_partitions.is_empty(),
            missing_partitions,
            stats: QueryStats {
                partitions_probed: query_plan.partitions.len(),
                partitions_total,
                estimated_matches: query_plan.estimated_matches,
                scan: result.stats,
                execution: None,
            },
        });
    }
    Ok(responses)
}

/// Adds up the statistics the workers reported into `execution`.
fn add_worker_stats(execution: &mut ExecutionStats, workers: Vec<InvocationStats>) {
    for worker in &workers {
        execution.invocations += worker.child_invocations;
        execution.worker_cold_starts += u32::from(worker.cold_start);
        execution.cache_hits += worker.cache_hits;
        execution.cache_misses += worker.cache_misses;
        execution.partitions_read_by_range += worker.partitions_read_by_range;
        execution.store_get_requests += worker.store_get_requests;
        execution.store_bytes_fetched += worker.store_bytes_fetched;
        execution.worker_load_ms += worker.load_ms;
        execution.worker_search_ms += worker.search_ms;
        execution.worker_billed_ms += worker.duration_ms.ceil() as u64;
    }
    execution.workers = workers;
}
