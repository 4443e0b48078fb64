//! The worker function's logic: one node of the invocation tree.
//!
//! A node starts its children's invocations first, searches its own partitions meanwhile
//! (decoded partitions come from the process-wide [`PartitionCache`], or are fetched and
//! decoded once), then merges its children's top-k with its own and answers for its whole
//! subtree. A child that fails or does not answer in time is invoked once more; if that fails
//! too, its partitions are reported as failed, never silently dropped.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use super::invoker::WorkerInvoker;
use super::tree::child_request;
use super::validate_index_name;
use crate::cache::PartitionCache;
use crate::error::{Error, Result};
use crate::index::build::partition_key;
use crate::index::PartitionData;
use crate::protocol::{
    FailedPartition, FailureKind, Hit, InvocationStats, PartitionOutcome, QueryHits, ScanStats,
    TreeNode, WorkerRequest, WorkerResponse, PROTOCOL_VERSION,
};
use crate::search::{merge_hits, search_tasks};
use crate::storage::BlobStore;

/// Share of a node's remaining time given to a child's first attempt; the rest leaves room
/// for one retry of a child that hung.
const FIRST_ATTEMPT_SHARE: f64 = 0.6;
/// Share of the remaining time given to the retry.
const RETRY_SHARE: f64 = 0.9;
/// Extra wait beyond a child's budget for the transport (invocation and payload transfer).
const TRANSPORT_GRACE: Duration = Duration::from_millis(100);
/// Below this budget a child is not invoked: it could not answer in time anyway.
const MIN_CHILD_BUDGET: Duration = Duration::from_millis(20);

/// Returns the object key of a partition of an index version, under the deployment root.
pub fn partition_object_key(index: &str, index_version: &str, partition: u32) -> String {
    format!("{index}/{}", partition_key(index_version, partition))
}

/// One worker process: its store, its partition cache and the invoker for its children.
#[derive(Debug)]
pub struct WorkerService {
    function: String,
    root: Arc<dyn BlobStore>,
    cache: Arc<PartitionCache>,
    invoker: Arc<dyn WorkerInvoker>,
    num_served: Arc<AtomicU64>,
}

impl WorkerService {
    /// Returns the worker `function` reading indexes under `root`, caching decoded partitions
    /// in `cache` and invoking its children through `invoker`.
    pub fn new(
        function: &str,
        root: Arc<dyn BlobStore>,
        cache: Arc<PartitionCache>,
        invoker: Arc<dyn WorkerInvoker>,
    ) -> Self {
        WorkerService::with_counter(function, root, cache, invoker, Arc::new(AtomicU64::new(0)))
    }

    /// Like [`WorkerService::new`], counting served requests in `num_served` (shared by every
    /// service of one process, so the first request of the process is the cold one).
    pub fn with_counter(
        function: &str,
        root: Arc<dyn BlobStore>,
        cache: Arc<PartitionCache>,
        invoker: Arc<dyn WorkerInvoker>,
        num_served: Arc<AtomicU64>,
    ) -> Self {
        WorkerService {
            function: function.to_string(),
            root,
            cache,
            invoker,
            num_served,
        }
    }

    /// Returns the partition cache.
    pub fn cache(&self) -> &Arc<PartitionCache> {
        &self.cache
    }

    /// Answers one request for its whole subtree. Fails as a whole only for a request it
    /// cannot understand; missing partitions are reported in the response.
    pub async fn handle(&self, request: WorkerRequest) -> Result<WorkerResponse> {
        let started = Instant::now();
        let cold_start = self.num_served.fetch_add(1, Ordering::Relaxed) == 0;
        if request.protocol_version != PROTOCOL_VERSION {
            return Err(Error::invalid(
                "protocol_version",
                format!(
                    "worker speaks version {PROTOCOL_VERSION}, request has {}",
                    request.protocol_version
                ),
            ));
        }
        validate_index_name(&request.index)?;
        for task in request.tasks.iter() {
            if let Some(&bad) = task
                .queries
                .iter()
                .find(|&&q| q as usize >= request.queries.len())
            {
                return Err(Error::invalid(
                    "tasks.queries",
                    format!("query position {bad} is out of range"),
                ));
            }
        }
        let deadline = started + Duration::from_millis(request.budget_ms);
        let request = Arc::new(request);
        let children = spawn_children(&self.invoker, &request, deadline);
        let mut stats = InvocationStats {
            function: self.function.clone(),
            cold_start,
            ..InvocationStats::default()
        };
        let mut merged = SubtreeAnswer::new(&request);
        self.search_own(&request, &mut stats, &mut merged).await;
        for child in children {
            let outcome = child.await.map_err(|e| Error::Storage {
                message: format!("child invocation task failed: {e}"),
                retryable: true,
            })?;
            stats.child_invocations += outcome.num_attempts;
            stats.child_retries += outcome.num_attempts.saturating_sub(1);
            merged.add_child(outcome)?;
        }
        stats.duration_ms = started.elapsed().as_secs_f64() * 1e3;
        tracing::info!(
            request_id = %request.request_id,
            function = %self.function,
            cold_start,
            partitions = stats.partitions_searched,
            cache_hits = stats.cache_hits,
            cache_misses = stats.cache_misses,
            bytes_fetched = stats.store_bytes_fetched,
            duration_ms = stats.duration_ms,
            "worker answered"
        );
        Ok(merged.finish(stats))
    }

    /// Loads and searches this node's own partitions into `merged`.
    async fn search_own(
        &self,
        request: &Arc<WorkerRequest>,
        stats: &mut InvocationStats,
        merged: &mut SubtreeAnswer,
    ) {
        let load_started = Instant::now();
        let mut loaded: HashMap<u32, Arc<PartitionData>> = HashMap::new();
        let mut loads = JoinSet::new();
        for task in &request.tasks {
            let key = partition_object_key(&request.index, &request.index_version, task.partition);
            match self.cache.get(&key) {
                Ok(Some(partition)) => {
                    stats.cache_hits += 1;
                    loaded.insert(task.partition, partition);
                }
                Ok(None) | Err(_) => {
                    stats.cache_misses += 1;
                    let root = Arc::clone(&self.root);
                    let partition_id = task.partition;
                    loads.spawn(async move {
                        let fetched = root.get(&key).await;
                        let num_bytes = fetched.as_ref().map(|b| b.len() as u64).unwrap_or(0);
                        let decoded = match fetched {
                            Ok(bytes) => decode_partition(key.clone(), bytes, partition_id).await,
                            Err(error) => Err(error),
                        };
                        (partition_id, key, num_bytes, decoded)
                    });
                }
            }
        }
        while let Some(joined) = loads.join_next().await {
            let (partition_id, key, num_bytes, decoded) = match joined {
                Ok(result) => result,
                Err(error) => {
                    tracing::error!(%error, "partition load task failed");
                    continue;
                }
            };
            stats.store_get_requests += 1;
            stats.store_bytes_fetched += num_bytes;
            match decoded {
                Ok(partition) => {
                    let partition = Arc::new(partition);
                    if let Err(error) = self.cache.insert(&key, Arc::clone(&partition)) {
                        tracing::warn!(%error, "partition not cached");
                    }
                    loaded.insert(partition_id, partition);
                }
                Err(error) => merged.failed.push(failure(partition_id, &error)),
            }
        }
        // A task whose load task vanished (panicked) is reported too.
        for task in &request.tasks {
            let reported = merged.failed.iter().any(|f| f.partition == task.partition);
            if !loaded.contains_key(&task.partition) && !reported {
                merged.failed.push(FailedPartition {
                    partition: task.partition,
                    kind: FailureKind::Error,
                    message: "partition load failed".to_string(),
                });
            }
        }
        stats.load_ms = load_started.elapsed().as_secs_f64() * 1e3;
        let search_started = Instant::now();
        let tasks: Vec<_> = request
            .tasks
            .iter()
            .filter(|task| loaded.contains_key(&task.partition))
            .cloned()
            .collect();
        let request_for_search = Arc::clone(request);
        let searched = tokio::task::spawn_blocking(move || {
            search_tasks(&request_for_search.queries, &tasks, &|partition| {
                loaded
                    .get(&partition)
                    .cloned()
                    .ok_or_else(|| Error::NotFound {
                        what: format!("partition {partition}"),
                    })
            })
        })
        .await;
        match searched {
            Ok(outcomes) => {
                for outcome in outcomes {
                    if let PartitionOutcome::Ok { .. } = outcome {
                        stats.partitions_searched += 1;
                    }
                    merged.add_outcome(outcome);
                }
            }
            Err(error) => {
                for task in &request.tasks {
                    merged.failed.push(FailedPartition {
                        partition: task.partition,
                        kind: FailureKind::Error,
                        message: format!("search task failed: {error}"),
                    });
                }
            }
        }
        stats.search_ms = search_started.elapsed().as_secs_f64() * 1e3;
    }
}

async fn decode_partition(key: String, bytes: Vec<u8>, expected: u32) -> Result<PartitionData> {
    let decoded = tokio::task::spawn_blocking(move || {
        let partition = PartitionData::decode(&key, bytes)?;
        if partition.partition != expected {
            return Err(Error::corrupt(
                &key,
                0,
                format!("holds partition {}, not {expected}", partition.partition),
            ));
        }
        Ok(partition)
    })
    .await;
    decoded.map_err(|e| Error::Storage {
        message: format!("decode task failed: {e}"),
        retryable: false,
    })?
}

fn failure(partition: u32, error: &Error) -> FailedPartition {
    FailedPartition {
        partition,
        kind: match error {
            Error::NotFound { .. } => FailureKind::NotFound,
            _ => FailureKind::Error,
        },
        message: error.to_string(),
    }
}

/// What a child invocation produced, after at most one retry.
pub(crate) struct ChildOutcome {
    /// The child's answer, or a synthesized one naming all its partitions as failed.
    pub(crate) response: WorkerResponse,
    /// Per query of the child's request, its position in the parent's.
    pub(crate) parent_positions: Vec<u32>,
    /// Invocations made (1 or 2).
    pub(crate) num_attempts: u32,
}

/// Starts one task per child of `request`, each invoking it (and retrying once).
pub(crate) fn spawn_children(
    invoker: &Arc<dyn WorkerInvoker>,
    request: &Arc<WorkerRequest>,
    deadline: Instant,
) -> Vec<tokio::task::JoinHandle<ChildOutcome>> {
    request
        .children
        .iter()
        .map(|node| {
            let invoker = Arc::clone(invoker);
            let request = Arc::clone(request);
            let node = node.clone();
            tokio::spawn(async move { invoke_child(invoker, &request, &node, deadline).await })
        })
        .collect()
}

async fn invoke_child(
    invoker: Arc<dyn WorkerInvoker>,
    parent: &WorkerRequest,
    node: &TreeNode,
    deadline: Instant,
) -> ChildOutcome {
    let failed_outcome = |kind: FailureKind, message: String, num_attempts: u32| {
        let failed = node
            .subtree_partitions()
            .into_iter()
            .map(|partition| FailedPartition {
                partition,
                kind,
                message: message.clone(),
            })
            .collect();
        ChildOutcome {
            response: WorkerResponse {
                protocol_version: PROTOCOL_VERSION,
                results: Vec::new(),
                searched: Vec::new(),
                failed,
                invocations: Vec::new(),
            },
            parent_positions: Vec::new(),
            num_attempts,
        }
    };
    let (mut request, parent_positions) = match child_request(parent, node, 0) {
        Ok(built) => built,
        Err(error) => return failed_outcome(FailureKind::Error, error.to_string(), 0),
    };
    let mut last_failure = (
        FailureKind::Timeout,
        format!("{}: no time left to invoke it", node.function),
    );
    let mut num_attempts = 0;
    for share in [FIRST_ATTEMPT_SHARE, RETRY_SHARE] {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let budget = remaining.mul_f64(share);
        if budget < MIN_CHILD_BUDGET {
            break;
        }
        request.budget_ms = budget.as_millis() as u64;
        let wait = (budget + TRANSPORT_GRACE).min(remaining);
        num_attempts += 1;
        match tokio::time::timeout(wait, invoker.invoke(&node.function, &request)).await {
            Ok(Ok(response)) => {
                if response.results.len() == request.queries.len() {
                    return ChildOutcome {
                        response,
                        parent_positions,
                        num_attempts,
                    };
                }
                last_failure = (
                    FailureKind::Error,
                    format!(
                        "{} answered {} queries of {}",
                        node.function,
                        response.results.len(),
                        request.queries.len()
                    ),
                );
            }
            Ok(Err(error)) => {
                last_failure = (FailureKind::Error, format!("{}: {error}", node.function));
            }
            Err(_) => {
                last_failure = (
                    FailureKind::Timeout,
                    format!(
                        "{} did not answer within {} ms",
                        node.function,
                        wait.as_millis()
                    ),
                );
            }
        }
        tracing::warn!(
            request_id = %parent.request_id,
            function = %node.function,
            attempt = num_attempts,
            failure = %last_failure.1,
            "child invocation failed"
        );
    }
    failed_outcome(last_failure.0, last_failure.1, num_attempts)
}

/// The merged answer of a subtree, built up as partitions and children report.
pub(crate) struct SubtreeAnswer {
    ks: Vec<usize>,
    hits: Vec<Vec<Hit>>,
    scan: Vec<ScanStats>,
    pub(crate) searched: Vec<u32>,
    pub(crate) failed: Vec<FailedPartition>,
    pub(crate) invocations: Vec<InvocationStats>,
}

impl SubtreeAnswer {
    pub(crate) fn new(request: &WorkerRequest) -> Self {
        SubtreeAnswer {
            ks: request.queries.iter().map(|q| q.k).collect(),
            hits: vec![Vec::new(); request.queries.len()],
            scan: vec![ScanStats::default(); request.queries.len()],
            searched: Vec::new(),
            failed: Vec::new(),
            invocations: Vec::new(),
        }
    }

    fn add_hits(&mut self, position: usize, hits: Vec<Hit>, scan: &ScanStats) {
        let current = std::mem::take(&mut self.hits[position]);
        self.hits[position] = merge_hits([current, hits], self.ks[position]);
        self.scan[position].add(scan);
    }

    fn add_outcome(&mut self, outcome: PartitionOutcome) {
        match outcome {
            PartitionOutcome::Ok { partition, results } => {
                self.searched.push(partition);
                for result in results {
                    self.add_hits(result.query as usize, result.hits, &result.stats);
                }
            }
            PartitionOutcome::Failed {
                partition, message, ..
            } => self.failed.push(FailedPartition {
                partition,
                kind: FailureKind::Error,
                message,
            }),
        }
    }

    /// Merges a child's answer, mapping its query positions back to this request's.
    pub(crate) fn add_child(&mut self, outcome: ChildOutcome) -> Result<()> {
        for result in outcome.response.results {
            let position = outcome
                .parent_positions
                .get(result.query as usize)
                .copied()
                .ok_or_else(|| {
                    Error::corrupt(
                        "worker response",
                        0,
                        format!("unknown query {}", result.query),
                    )
                })?;
            self.add_hits(position as usize, result.hits, &result.stats);
        }
        self.searched.extend(outcome.response.searched);
        self.failed.extend(outcome.response.failed);
        self.invocations.extend(outcome.response.invocations);
        Ok(())
    }

    /// Returns per query (by position) the merged hits and scan counts.
    pub(crate) fn into_query_results(self) -> (Vec<QueryHits>, SubtreeRest) {
        let results = self
            .hits
            .into_iter()
            .zip(self.scan)
            .enumerate()
            .map(|(position, (hits, stats))| QueryHits {
                query: position as u32,
                hits,
                stats,
            })
            .collect();
        (
            results,
            SubtreeRest {
                searched: self.searched,
                failed: self.failed,
                invocations: self.invocations,
            },
        )
    }

    fn finish(self, own: InvocationStats) -> WorkerResponse {
        let (results, rest) = self.into_query_results();
        let mut invocations = Vec::with_capacity(rest.invocations.len() + 1);
        invocations.push(own);
        invocations.extend(rest.invocations);
        WorkerResponse {
            protocol_version: PROTOCOL_VERSION,
            results,
            searched: rest.searched,
            failed: rest.failed,
            invocations,
        }
    }
}

/// The parts of a subtree answer besides the hits.
pub(crate) struct SubtreeRest {
    pub(crate) searched: Vec<u32>,
    pub(crate) failed: Vec<FailedPartition>,
    pub(crate) invocations: Vec<InvocationStats>,
}
