//! Request and response types carried between the coordinator stage and the workers.
//!
//! The same types travel as JSON in Lambda payloads and are passed in-process by the embedded
//! mode, so the embedded path exercises the serverless contract. Requests carry the filter as
//! JSON (small), never per-vector bitmaps: a worker re-evaluates the filter on its partition.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::attributes::AttributeKind;
use crate::error::{Error, Result};
use crate::metric::Metric;

/// Version of this protocol; a worker rejects a request with another version.
pub const PROTOCOL_VERSION: u32 = 1;

/// The largest `k` a query may ask for.
pub const MAX_K: usize = 10_000;

pub use crate::metric::MAX_COMPONENT_MAGNITUDE;

/// Tuning knobs of one query. Every field is optional; [`SearchKnobs::resolve`] fills defaults.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchOptions {
    /// Return the exact top-k (all partitions with matches, VA-file style scan).
    #[serde(default)]
    pub exact: bool,
    /// Probe every fine cluster whose centroid distance is within this factor of the nearest
    /// cluster's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub centroid_factor: Option<f32>,
    /// Probe the nearest fine clusters until they hold at least this many rows that may match
    /// the filter (default `k * rerank_factor * 10`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe_rows: Option<usize>,
    /// Probe at least this many partitions (those with matches, nearest first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_partitions: Option<usize>,
    /// Probe at most this many partitions (never fewer than needed to cover k matches).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_partitions: Option<usize>,
    /// Candidates re-ranked exactly per partition = `k * rerank_factor`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rerank_factor: Option<usize>,
    /// Share of filter-passing candidates kept by the Hamming (sign-code) pre-filter
    /// (0 < x <= 1); it never keeps fewer than 50 candidates per re-rank slot, and 1 turns it off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hamming_keep: Option<f32>,
}

/// Resolved knobs, as carried to workers.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SearchKnobs {
    /// See [`SearchOptions::exact`].
    pub exact: bool,
    /// See [`SearchOptions::centroid_factor`].
    pub centroid_factor: f32,
    /// See [`SearchOptions::probe_rows`]; `None` for the default, which depends on `k`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe_rows: Option<usize>,
    /// See [`SearchOptions::min_partitions`].
    pub min_partitions: usize,
    /// See [`SearchOptions::max_partitions`]; `usize::MAX` when unbounded.
    pub max_partitions: usize,
    /// See [`SearchOptions::rerank_factor`].
    pub rerank_factor: usize,
    /// See [`SearchOptions::hamming_keep`].
    pub hamming_keep: f32,
}

/// Default probe factor on fine-cluster centroid distance. It sets the neighbourhood a query
/// scans from the data around it: where many centroids are about as near as the nearest (flat,
/// high-dimensional data such as GloVe), it takes many clusters; where clusters are well
/// separated (Fashion-MNIST), few. Recall@10 at 1.2 / 1.3: GloVe unfiltered 0.88 / 0.95,
/// Fashion-MNIST 0.99 / 0.99 (256-row clusters).
pub const DEFAULT_CENTROID_FACTOR: f32 = 1.3;
/// Default minimum partitions probed: the clusters taken decide the partitions.
pub const DEFAULT_MIN_PARTITIONS: usize = 1;
/// Default re-rank depth multiplier.
pub const DEFAULT_RERANK_FACTOR: usize = 10;
/// Default share kept by the Hamming pre-filter.
pub const DEFAULT_HAMMING_KEEP: f32 = 0.3;

/// Rows that may match, per re-rank slot, that a query probes at the least by default (1,000 for
/// k = 10 at the default re-rank factor): a floor that grows with `k`, under the neighbourhood
/// the centroid factor sets.
pub const DEFAULT_PROBE_ROWS_PER_RERANK: usize = 10;

impl SearchKnobs {
    /// Returns the rows that may match a query of `k` probes at the least.
    pub fn probe_rows_for(&self, k: usize) -> usize {
        self.probe_rows.unwrap_or_else(|| {
            k.max(1)
                .saturating_mul(self.rerank_factor)
                .saturating_mul(DEFAULT_PROBE_ROWS_PER_RERANK)
        })
    }

    /// Returns the knobs with defaults filled in, or an error naming the bad option.
    pub fn resolve(options: &SearchOptions) -> Result<SearchKnobs> {
        let centroid_factor = options.centroid_factor.unwrap_or(DEFAULT_CENTROID_FACTOR);
        if !(centroid_factor.is_finite() && centroid_factor >= 1.0) {
            return Err(Error::invalid(
                "options.centroid_factor",
                "must be a finite number >= 1",
            ));
        }
        let rerank_factor = options.rerank_factor.unwrap_or(DEFAULT_RERANK_FACTOR);
        if rerank_factor == 0 || rerank_factor > 1000 {
            return Err(Error::invalid(
                "options.rerank_factor",
                "must be between 1 and 1000",
            ));
        }
        let hamming_keep = options.hamming_keep.unwrap_or(DEFAULT_HAMMING_KEEP);
        if !(hamming_keep > 0.0 && hamming_keep <= 1.0) {
            return Err(Error::invalid("options.hamming_keep", "must be in (0, 1]"));
        }
        let probe_rows = options.probe_rows;
        if probe_rows == Some(0) {
            return Err(Error::invalid("options.probe_rows", "must be at least 1"));
        }
        let max_partitions = options.max_partitions.unwrap_or(usize::MAX);
        if max_partitions == 0 {
            return Err(Error::invalid(
                "options.max_partitions",
                "must be at least 1",
            ));
        }
        Ok(SearchKnobs {
            exact: options.exact,
            centroid_factor,
            probe_rows,
            min_partitions: options.min_partitions.unwrap_or(DEFAULT_MIN_PARTITIONS),
            max_partitions,
            rerank_factor,
            hamming_keep,
        })
    }
}

fn default_k() -> usize {
    10
}

/// One query as a client sends it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryRequest {
    /// The query vector (same dimension as the index).
    pub vector: Vec<f32>,
    /// How many hits to return, 1..=10,000.
    #[serde(default = "default_k")]
    pub k: usize,
    /// Mongo-style filter on attributes; absent or null = no filter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<serde_json::Value>,
    /// Return each hit's attributes.
    #[serde(default)]
    pub include_attributes: bool,
    /// Tuning knobs.
    #[serde(default)]
    pub options: SearchOptions,
    /// Fail (HTTP 503) instead of answering with some partitions missing.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub require_complete: bool,
    /// Children per node of the invocation tree for this request, overriding the deployment's
    /// setting (for tuning and measurement).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branching: Option<usize>,
    /// Read at least this write's token (the answer to an upsert or delete): the answer then
    /// reflects that write. Every query reads the newest committed writes anyway; a token the
    /// log has not reached is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_token: Option<u64>,
    /// Answer as of this write's token: writes after it are left out (time travel). Any token
    /// from the snapshot of the oldest version the index still retains to the newest write;
    /// an earlier one is refused, naming the earliest that can be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub as_of: Option<u64>,
}

impl QueryRequest {
    /// Returns a request for `vector` with `k` hits and no filter.
    pub fn new(vector: Vec<f32>, k: usize) -> Self {
        QueryRequest {
            vector,
            k,
            filter: None,
            include_attributes: false,
            options: SearchOptions::default(),
            require_complete: false,
            branching: None,
            min_token: None,
            as_of: None,
        }
    }

    /// Checks the parts that need no index: `k` range and finite components.
    pub fn validate_shape(&self, dim: usize) -> Result<()> {
        if self.k == 0 || self.k > MAX_K {
            return Err(Error::invalid(
                "k",
                format!("must be between 1 and {MAX_K}, got {}", self.k),
            ));
        }
        if self.vector.len() != dim {
            return Err(Error::invalid(
                "vector",
                format!(
                    "has {} components, the index has dimension {dim}",
                    self.vector.len()
                ),
            ));
        }
        if let Some(position) = self.vector.iter().position(|v| !v.is_finite()) {
            return Err(Error::invalid(
                format!("vector[{position}]"),
                "must be a finite number (NaN and infinity are not allowed)",
            ));
        }
        if let Some(position) = self
            .vector
            .iter()
            .position(|v| v.abs() > MAX_COMPONENT_MAGNITUDE)
        {
            return Err(Error::invalid(
                format!("vector[{position}]"),
                format!("must be at most {MAX_COMPONENT_MAGNITUDE:e} in magnitude (distances would overflow)"),
            ));
        }
        Ok(())
    }
}

/// One hit of a query.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hit {
    /// The vector's external id.
    pub id: u64,
    /// Distance under the index metric (smaller is closer).
    pub distance: f32,
    /// The vector's attributes, when asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attributes: Option<serde_json::Map<String, serde_json::Value>>,
}

/// Candidate counts after each pruning stage, summed over the partitions searched.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScanStats {
    /// Vectors in the partitions searched.
    pub partition_vectors: u64,
    /// Vectors in the fine clusters scanned (the rest of the partitions was skipped).
    #[serde(default)]
    pub probed_rows: u64,
    /// Vectors of the scanned clusters passing the exact filter.
    pub passed_filter: u64,
    /// Candidates scored with their full vectors at once, where the cost model found that
    /// cheaper than the quantized stages (which then did not run).
    #[serde(default)]
    pub scored_directly: u64,
    /// Candidates ranked by their 4-bit fast-scan estimate (the kernel sums whole 32-row
    /// blocks, so it reads the codes of some neighbouring rows too).
    #[serde(default)]
    pub fast_scanned: u64,
    /// Candidates kept by the Hamming pre-filter.
    pub after_hamming: u64,
    /// Candidates whose OSQ lower bound was computed.
    pub lower_bounds: u64,
    /// Candidates re-ranked with full-precision vectors.
    pub reranked: u64,
}

impl ScanStats {
    /// Adds `other` into `self`.
    pub fn add(&mut self, other: &ScanStats) {
        self.partition_vectors += other.partition_vectors;
        self.probed_rows += other.probed_rows;
        self.passed_filter += other.passed_filter;
        self.scored_directly += other.scored_directly;
        self.fast_scanned += other.fast_scanned;
        self.after_hamming += other.after_hamming;
        self.lower_bounds += other.lower_bounds;
        self.reranked += other.reranked;
    }
}

/// One query as a worker receives it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerQuery {
    /// The query vector as the client sent it (the worker normalises for cosine).
    pub vector: Vec<f32>,
    /// Hits wanted.
    pub k: usize,
    /// The filter JSON (re-parsed against the index schema by the worker).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<serde_json::Value>,
    /// Return attributes with hits.
    pub include_attributes: bool,
    /// Resolved knobs.
    pub knobs: SearchKnobs,
    /// Scan the fine clusters whose centroids lie within this distance of the query (the
    /// coordinator's plan); absent: every row of the partition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe_radius: Option<f32>,
}

/// The queries a worker must run on one partition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartitionTask {
    /// Partition id.
    pub partition: u32,
    /// Positions in [`WorkerRequest::queries`].
    pub queries: Vec<u32>,
    /// Size of the partition's segment object, from the manifest: a cold worker that knows it
    /// can read the probed clusters by byte range instead of the whole object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_bytes: Option<u64>,
    /// Ids of this partition's rows that writes not yet folded in deleted or replaced,
    /// sorted: the scan never admits them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub excluded_ids: Vec<u64>,
}

/// One node of the invocation tree below a worker: the function (worker slot) to invoke, the
/// partitions it searches itself and its own children.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TreeNode {
    /// Worker function name (or name with alias) to invoke.
    pub function: String,
    /// Partition tasks the node runs itself.
    pub tasks: Vec<PartitionTask>,
    /// Nodes this node invokes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<TreeNode>,
}

impl TreeNode {
    /// Returns the partitions of this node and all its descendants.
    pub fn subtree_partitions(&self) -> Vec<u32> {
        let mut partitions: Vec<u32> = self.tasks.iter().map(|task| task.partition).collect();
        for child in &self.children {
            partitions.extend(child.subtree_partitions());
        }
        partitions
    }

    /// Returns the number of levels of this subtree (1 for a leaf).
    pub fn depth(&self) -> usize {
        1 + self.children.iter().map(TreeNode::depth).max().unwrap_or(0)
    }
}

/// A worker invocation: a batch of queries, the partitions to run them on, and the sub-trees
/// of workers to invoke meanwhile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerRequest {
    /// Must equal [`PROTOCOL_VERSION`].
    pub protocol_version: u32,
    /// Identifier of the client request, carried down the tree for logs.
    #[serde(default)]
    pub request_id: String,
    /// Index name under the deployment's root location.
    #[serde(default)]
    pub index: String,
    /// The index version the coordinator planned against; a worker never mixes versions.
    pub index_version: String,
    /// Milliseconds this node has to answer, children included.
    #[serde(default = "default_budget_ms")]
    pub budget_ms: u64,
    /// The queries.
    pub queries: Vec<WorkerQuery>,
    /// Partition tasks this node runs itself.
    pub tasks: Vec<PartitionTask>,
    /// Nodes this node invokes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<TreeNode>,
    /// The segment object of each partition that an earlier version wrote (a compaction
    /// re-encodes only the partitions writes touched and keeps the others' segments), relative
    /// to the index; every other partition's is `partition_key(index_version, partition)`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub segment_keys: BTreeMap<u32, String>,
}

fn default_budget_ms() -> u64 {
    DEFAULT_TIMEOUT_MS
}

/// Suggested wait before retrying a 503, in seconds (the `Retry-After` header and the
/// `retry_after_s` field of error bodies).
pub const RETRY_AFTER_S: u64 = 1;

/// The default time a query may take end to end, in milliseconds.
pub const DEFAULT_TIMEOUT_MS: u64 = 10_000;

/// The top-k of one query on one partition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueryHits {
    /// Position in [`WorkerRequest::queries`].
    pub query: u32,
    /// Hits, best first.
    pub hits: Vec<Hit>,
    /// Pruning counts.
    pub stats: ScanStats,
}

/// What one partition task produced: hits per query, or an error (reported in-band so the
/// caller can retry only the failed partitions).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum PartitionOutcome {
    /// The partition was searched.
    Ok {
        /// Partition id.
        partition: u32,
        /// Per-query results.
        results: Vec<QueryHits>,
    },
    /// The partition could not be searched.
    Failed {
        /// Partition id.
        partition: u32,
        /// Why, in kind.
        kind: FailureKind,
        /// Why.
        message: String,
        /// Whether a retry may succeed.
        retryable: bool,
    },
}

/// Why a partition is missing from an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// Its object does not exist (the index version was removed by a later rebuild).
    NotFound,
    /// Its worker did not answer within the deadline, or reached the deadline while searching
    /// it and stopped.
    Timeout,
    /// Its worker or its store failed.
    Error,
}

impl FailureKind {
    /// Returns the kind of failure `error` makes of a partition it kept from being searched.
    pub fn of(error: &Error) -> FailureKind {
        match error {
            Error::NotFound { .. } => FailureKind::NotFound,
            Error::Timeout { .. } => FailureKind::Timeout,
            _ => FailureKind::Error,
        }
    }
}

/// A partition that could not be searched.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailedPartition {
    /// Partition id.
    pub partition: u32,
    /// Why.
    pub kind: FailureKind,
    /// Details.
    pub message: String,
    /// The queries (positions in the request of the node reporting it) left without this
    /// partition; empty when every query that visits it is. A part of a split batch that
    /// fails leaves only its own queries without the partition.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub queries: Vec<u32>,
}

/// What one worker invocation did: the inputs of the cost model.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InvocationStats {
    /// The function invoked.
    pub function: String,
    /// Whether this was the first invocation of its container (process).
    pub cold_start: bool,
    /// Partitions searched by this invocation itself.
    pub partitions_searched: u32,
    /// Partitions found decoded in the container's cache.
    pub cache_hits: u32,
    /// Partitions loaded from the store.
    pub cache_misses: u32,
    /// GET requests this invocation sent to the store.
    pub store_get_requests: u32,
    /// Bytes those GET requests returned.
    pub store_bytes_fetched: u64,
    /// Cold partitions read by byte range (only the fine clusters the queries probe) instead
    /// of whole; they are not cached.
    #[serde(default)]
    pub partitions_read_by_range: u32,
    /// Milliseconds spent fetching and decoding partitions.
    pub load_ms: f64,
    /// Milliseconds spent searching partitions.
    pub search_ms: f64,
    /// Milliseconds from receiving the request to answering (what Lambda bills, before
    /// rounding up to the next millisecond).
    pub duration_ms: f64,
    /// Children invoked, retries included.
    pub child_invocations: u32,
    /// Child invocations that were retries.
    pub child_retries: u32,
}

/// A worker's answer for its whole subtree.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerResponse {
    /// Echo of [`PROTOCOL_VERSION`].
    pub protocol_version: u32,
    /// Per query of the request (by position), the merged top-k of the subtree.
    pub results: Vec<QueryHits>,
    /// Partitions searched in the subtree.
    pub searched: Vec<u32>,
    /// Partitions of the subtree that could not be searched.
    pub failed: Vec<FailedPartition>,
    /// One entry per invocation in the subtree, this one first.
    pub invocations: Vec<InvocationStats>,
}

/// How a request was executed, summed over the coordinator and every worker invocation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ExecutionStats {
    /// Identifier of the request (also in the functions' logs).
    pub request_id: String,
    /// The index version answered from.
    pub index_version: String,
    /// Whether the coordinator's container was cold.
    pub coordinator_cold_start: bool,
    /// Set when the store could not be read and the index version already open was served
    /// from memory: how many milliseconds ago its manifest was last read (at most the
    /// deployment's stale limit). A rebuild made meanwhile is not seen yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stale_manifest_ms: Option<u64>,
    /// The write-log position the answer reflects: every write whose token is at most this
    /// is in it.
    #[serde(default)]
    pub token: u64,
    /// Rows written since the last compaction, searched exactly beside the partitions.
    #[serde(default)]
    pub unfolded_rows: u64,
    /// GET requests the coordinator sent to the store (manifest, coordinator object, log).
    pub coordinator_store_get_requests: u32,
    /// Bytes those requests returned.
    pub coordinator_store_bytes_fetched: u64,
    /// Worker invocations, retries included.
    pub invocations: u32,
    /// Worker invocations that landed on a cold container.
    pub worker_cold_starts: u32,
    /// Worker invocations planned beyond one per worker slot: the extra parts a large batch's
    /// share of a slot was split into, to run concurrently.
    #[serde(default)]
    pub split_invocations: u32,
    /// Levels of workers in the invocation tree.
    pub tree_depth: u32,
    /// Partitions found decoded in worker caches.
    pub cache_hits: u32,
    /// Partitions loaded from the store by workers.
    pub cache_misses: u32,
    /// Of those, partitions read by byte range (their probed fine clusters only).
    #[serde(default)]
    pub partitions_read_by_range: u32,
    /// GET requests sent to the store, coordinator and workers.
    pub store_get_requests: u32,
    /// Bytes returned by those requests.
    pub store_bytes_fetched: u64,
    /// Milliseconds the coordinator spent loading index metadata and planning.
    pub plan_ms: f64,
    /// Milliseconds from the first worker invocation to the last answer.
    pub fan_out_ms: f64,
    /// Milliseconds the coordinator spent on the request.
    pub total_ms: f64,
    /// Worker milliseconds spent loading partitions, summed.
    pub worker_load_ms: f64,
    /// Worker milliseconds spent searching, summed.
    pub worker_search_ms: f64,
    /// Worker durations summed, each rounded up to the next millisecond as Lambda bills.
    pub worker_billed_ms: u64,
    /// Per worker invocation that answered.
    pub workers: Vec<InvocationStats>,
}

/// Statistics of one query, summed over the partitions searched.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct QueryStats {
    /// Partitions searched.
    pub partitions_probed: usize,
    /// Partitions in the index.
    pub partitions_total: usize,
    /// Upper estimate of the vectors passing the filter, from the quantized attributes.
    pub estimated_matches: u64,
    /// Pruning counts.
    pub scan: ScanStats,
    /// How the request was executed; set on single-query answers (a batch carries one for
    /// all its queries).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution: Option<ExecutionStats>,
}

/// The answer to one query.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueryResponse {
    /// Hits, best first.
    pub hits: Vec<Hit>,
    /// True when some partitions the query needed could not be searched.
    #[serde(default)]
    pub partial: bool,
    /// The partitions the query needed that could not be searched.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing_partitions: Vec<u32>,
    /// Statistics.
    pub stats: QueryStats,
}

/// The largest number of queries in one batch request.
pub const MAX_BATCH_QUERIES: usize = 10_000;

/// A batch of queries as a client sends it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    /// The queries, at most [`MAX_BATCH_QUERIES`]; empty when they come from
    /// `queries_from`.
    #[serde(default)]
    pub queries: Vec<QueryRequest>,
    /// Instead of `queries`: the name of an object under `_batches/{index}/` in the store the
    /// indexes live in, holding the queries as a JSON array: for batches larger than a request
    /// body may be (Lambda takes at most 6 MB; 10,000 queries of 50 dimensions take about 7).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queries_from: Option<String>,
    /// Fail (HTTP 503) instead of answering with some partitions missing.
    #[serde(default)]
    pub require_complete: bool,
    /// Children per node of the invocation tree for this batch, overriding the deployment's
    /// setting (for tuning and measurement).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branching: Option<usize>,
    /// Where the answer goes: in the response (default), or written to the store for answers
    /// too large for one.
    #[serde(default, skip_serializing_if = "AnswerOutput::is_response")]
    pub output: AnswerOutput,
    /// Aim for worker invocations of about this many milliseconds (estimated): a slot's share
    /// of the batch that would take longer is split over concurrent invocations. Lower
    /// finishes a large batch sooner and costs more (more invocations, more cold loads).
    /// Default: the deployment's (a quarter of its time budget).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_invocation_ms: Option<u64>,
    /// The most worker invocations this batch may use, at most the deployment's cap: a
    /// bound on its cost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_invocations: Option<usize>,
    /// Read at least this write's token (as [`QueryRequest::min_token`], for every query).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_token: Option<u64>,
    /// Answer every query as of this write's token (as [`QueryRequest::as_of`]; set it on the
    /// batch, not on its queries).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub as_of: Option<u64>,
}

impl BatchRequest {
    /// Returns a batch of `queries` with every option at its default.
    pub fn new(queries: Vec<QueryRequest>) -> BatchRequest {
        BatchRequest {
            queries,
            queries_from: None,
            require_complete: false,
            branching: None,
            output: AnswerOutput::Response,
            target_invocation_ms: None,
            max_invocations: None,
            min_token: None,
            as_of: None,
        }
    }
}

/// Where the answer to a batch goes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AnswerOutput {
    /// In the response body.
    #[default]
    Response,
    /// Written as one JSON object (a whole [`BatchResponse`]) to the store the indexes live
    /// in, under `_answers/{index}/{request id}.json`; the response says where.
    Store,
}

impl AnswerOutput {
    /// Whether this is the default, [`AnswerOutput::Response`].
    pub fn is_response(&self) -> bool {
        *self == AnswerOutput::Response
    }
}

/// Where an answer written to the store is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredAnswer {
    /// The object's location (`s3://bucket/prefix/_answers/index/id.json`, or a path).
    pub location: String,
    /// Its size in bytes.
    pub bytes: u64,
}

/// The answer to a batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchResponse {
    /// One answer per query, in request order; empty when the answer was written to the store.
    pub results: Vec<QueryResponse>,
    /// True when some query's answer is partial.
    pub partial: bool,
    /// How the batch was executed.
    pub stats: ExecutionStats,
    /// Where the answer was written, with `"output": "store"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stored: Option<StoredAnswer>,
}

/// One attribute column as an index summary lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColumnSummary {
    /// Column name.
    pub name: String,
    /// `integer`, `float` or `categorical`.
    pub kind: AttributeKind,
    /// Distinct values of a categorical column.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_categories: Option<usize>,
}

/// What `GET /v1/indexes/{index}` answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IndexSummary {
    /// Index name.
    pub name: String,
    /// Version being served.
    pub index_version: String,
    /// Build time, seconds since the Unix epoch.
    pub created_unix_s: u64,
    /// Distance metric.
    pub metric: Metric,
    /// Vector dimension.
    pub dim: usize,
    /// Vectors indexed.
    pub num_vectors: u64,
    /// Partitions.
    pub num_partitions: usize,
    /// Bytes of all objects.
    pub total_bytes: u64,
    /// OSQ bits per dimension.
    pub bits_per_dim: f32,
    /// Attribute columns.
    pub attributes: Vec<ColumnSummary>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_responses_round_trip_through_json() {
        let knobs = SearchKnobs::resolve(&SearchOptions::default()).expect("defaults");
        let request = WorkerRequest {
            protocol_version: PROTOCOL_VERSION,
            request_id: "r1".into(),
            index: "films".into(),
            index_version: "v1".into(),
            budget_ms: 2_000,
            queries: vec![WorkerQuery {
                vector: vec![0.5, -1.25],
                k: 3,
                filter: Some(serde_json::json!({"year": {"$gte": 2020}})),
                include_attributes: true,
                knobs,
                probe_radius: Some(0.75),
            }],
            tasks: vec![PartitionTask {
                partition: 4,
                queries: vec![0],
                object_bytes: None,
                excluded_ids: Vec::new(),
            }],
            children: vec![TreeNode {
                function: "worker-1".into(),
                tasks: vec![PartitionTask {
                    partition: 2,
                    queries: vec![0],
                    object_bytes: None,
                    excluded_ids: Vec::new(),
                }],
                children: vec![],
            }],
            segment_keys: BTreeMap::from([(1, "va0/partition-00001.sqsh".to_string())]),
        };
        let text = serde_json::to_string(&request).expect("encode");
        assert_eq!(
            serde_json::from_str::<WorkerRequest>(&text).expect("decode"),
            request
        );
        let response = WorkerResponse {
            protocol_version: PROTOCOL_VERSION,
            results: vec![QueryHits {
                query: 0,
                hits: vec![Hit {
                    id: 9,
                    distance: 0.5,
                    attributes: None,
                }],
                stats: ScanStats::default(),
            }],
            searched: vec![4],
            failed: vec![FailedPartition {
                partition: 2,
                kind: FailureKind::Timeout,
                message: "no answer in 900 ms".into(),
                queries: vec![0],
            }],
            invocations: vec![InvocationStats::default()],
        };
        let text = serde_json::to_string(&response).expect("encode");
        assert!(text.contains(r#""kind":"timeout""#));
        assert_eq!(
            serde_json::from_str::<WorkerResponse>(&text).expect("decode"),
            response
        );
    }

    #[test]
    fn client_requests_reject_unknown_fields_and_bad_knobs() {
        let unknown = serde_json::from_str::<QueryRequest>(r#"{"vector": [1.0], "kk": 3}"#);
        assert!(unknown.is_err());
        let request: QueryRequest =
            serde_json::from_str(r#"{"vector": [1.0, 2.0]}"#).expect("minimal request");
        assert_eq!(request.k, 10);
        assert!(request.validate_shape(2).is_ok());
        let bad = SearchOptions {
            hamming_keep: Some(0.0),
            ..SearchOptions::default()
        };
        assert!(
            matches!(SearchKnobs::resolve(&bad), Err(Error::InvalidInput { field, .. }) if field == "options.hamming_keep")
        );
    }
}
