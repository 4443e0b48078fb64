//! The worker function's logic: one node of the invocation tree.
//!
//! A node starts its children's invocations first, searches its own partitions meanwhile
//! (decoded partitions come from the process-wide [`PartitionCache`], or are fetched and
//! decoded once), then merges its children's top-k with its own and answers for its whole
//! subtree. Starting, retrying and merging the children is [`crate::fanout`]'s.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use squash_core::error::{Error, Result};
use squash_core::index::build::partition_key;
use squash_core::index::ranged::{self, SegmentHead};
use squash_core::index::{validate_index_name, PartitionData};
use squash_core::metric::normalize_in_place;
use squash_core::protocol::{
    FailedPartition, FailureKind, InvocationStats, PartitionOutcome, PartitionTask, WorkerRequest,
    WorkerResponse, PROTOCOL_VERSION,
};
use squash_core::search::limits::hits_json_bytes;
use squash_core::search::search_tasks;
use squash_storage::BlobStore;

use crate::decoding::{decode_blocking, decode_partition_for_search};
use crate::fanout::{collect_children, spawn_children, SubtreeAnswer};
use crate::invoker::WorkerInvoker;
use crate::partition_cache::PartitionCache;

/// Time kept between the end of the scans and a node's deadline for encoding and sending its
/// answer, plus [`SCAN_ANSWER_MARGIN_PER_QUERY`] per query (at most a fifth of the time left).
const SCAN_ANSWER_MARGIN: Duration = Duration::from_millis(50);
/// The answer margin's share per query: encoding, compressing and sending one query's hits.
const SCAN_ANSWER_MARGIN_PER_QUERY: Duration = Duration::from_micros(25);

/// Returns the object key of a partition of an index version, under the deployment root:
/// its entry in `segment_keys` (a segment an earlier version wrote), else the version's own.
pub fn partition_object_key(
    index: &str,
    index_version: &str,
    segment_keys: &BTreeMap<u32, String>,
    partition: u32,
) -> String {
    match segment_keys.get(&partition) {
        Some(key) => format!("{index}/{key}"),
        None => format!("{index}/{}", partition_key(index_version, partition)),
    }
}

/// One worker process: its store, its partition cache and the invoker for its children.
#[derive(Debug)]
pub struct WorkerService {
    function: String,
    root: Arc<dyn BlobStore>,
    cache: Arc<PartitionCache>,
    invoker: Arc<dyn WorkerInvoker>,
    num_served: Arc<AtomicU64>,
    /// Whether the scan runs on the calling thread instead of a blocking thread (see
    /// [`WorkerService::with_inline_scans`]).
    scan_inline: bool,
    /// Largest answer this worker builds (see [`WorkerService::with_max_answer_bytes`]).
    max_answer_bytes: u64,
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
            scan_inline: false,
            max_answer_bytes: u64::MAX,
        }
    }

    /// Refuses requests whose hits alone (`k` summed over the queries, without attributes,
    /// as [`hits_json_bytes`] sizes them) would exceed `max_answer_bytes`. The coordinator never sends
    /// such a request (its own estimate of the same answer is larger); this bounds the memory
    /// a request sent straight to a worker can take.
    pub fn with_max_answer_bytes(mut self, max_answer_bytes: u64) -> Self {
        self.max_answer_bytes = max_answer_bytes;
        self
    }

    /// Runs the scans on the thread that polls the request instead of handing them to a
    /// blocking thread. Only for callers that drive one query at a time from inside a rayon
    /// pool (timed single-thread runs): the scan then runs in that pool with no thread
    /// hand-off, and nothing else waits on the runtime meanwhile.
    pub fn with_inline_scans(mut self) -> Self {
        self.scan_inline = true;
        self
    }

    /// Returns the partition cache.
    pub fn cache(&self) -> &Arc<PartitionCache> {
        &self.cache
    }

    /// Answers one request for its whole subtree. Fails as a whole only for a request it
    /// cannot understand; missing partitions are reported in the response.
    pub async fn handle(&self, request: WorkerRequest) -> Result<WorkerResponse> {
        self.handle_received(request, Instant::now()).await
    }

    /// Like [`WorkerService::handle`] for a request that arrived at `received_at`: its budget
    /// counts from then, so the time spent decoding a large request is not spent twice.
    pub async fn handle_received(
        &self,
        request: WorkerRequest,
        received_at: Instant,
    ) -> Result<WorkerResponse> {
        let started = received_at;
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
        let hit_bytes = request
            .queries
            .iter()
            .map(|query| hits_json_bytes(query.k, 0))
            .fold(0u64, u64::saturating_add);
        if hit_bytes > self.max_answer_bytes {
            return Err(Error::invalid(
                "queries",
                format!(
                    "the hits asked for would take at least {hit_bytes} bytes, over this worker's limit of {} bytes",
                    self.max_answer_bytes
                ),
            ));
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
        self.search_own(&request, deadline, &mut stats, &mut merged)
            .await;
        // Before the children's answers come in, the failures are this node's own.
        merged.name_failed_queries(&request.tasks);
        let invocations = collect_children(children, &mut merged).await?;
        stats.child_invocations = invocations.num_invocations;
        stats.child_retries = invocations.num_retries;
        stats.duration_ms = started.elapsed().as_secs_f64() * 1e3;
        tracing::info!(
            request_id = %request.request_id,
            function = %self.function,
            cold_start,
            partitions = stats.partitions_searched,
            cache_hits = stats.cache_hits,
            cache_misses = stats.cache_misses,
            read_by_range = stats.partitions_read_by_range,
            bytes_fetched = stats.store_bytes_fetched,
            duration_ms = stats.duration_ms,
            "worker answered"
        );
        Ok(merged.finish(stats))
    }

    /// Returns the partitions `partition_ids` of an index version: from the cache, or fetched
    /// and decoded (concurrently) and then cached. This is the one partition loader: the
    /// worker's search and the embedded mode's warm-up both come through it. Partitions that
    /// could not be loaded are returned as failures, and the reads are counted in `stats`.
    ///
    /// A cold partition listed in `by_range` is read by byte range the first time it is asked
    /// for (`index/ranged.rs`: only the fine clusters its queries probe, not cached), and whole
    /// from the next time on ([`PartitionCache::first_ranged_read`]).
    pub async fn load_partitions(
        &self,
        index: &str,
        index_version: &str,
        segment_keys: &BTreeMap<u32, String>,
        partition_ids: &[u32],
        by_range: &HashMap<u32, RangedRead>,
        stats: &mut InvocationStats,
    ) -> (HashMap<u32, Arc<PartitionData>>, Vec<FailedPartition>) {
        let mut loaded: HashMap<u32, Arc<PartitionData>> = HashMap::new();
        let mut failed: Vec<FailedPartition> = Vec::new();
        let mut loads = JoinSet::new();
        for &partition_id in partition_ids {
            let key = partition_object_key(index, index_version, segment_keys, partition_id);
            match self.cache.get(&key) {
                Ok(Some(partition)) => {
                    stats.cache_hits += 1;
                    loaded.insert(partition_id, partition);
                }
                Ok(None) | Err(_) => {
                    stats.cache_misses += 1;
                    let root = Arc::clone(&self.root);
                    match by_range.get(&partition_id) {
                        Some(read) if self.cache.first_ranged_read(&key) => {
                            let read = read.clone();
                            loads.spawn(load_by_range(root, key, partition_id, read));
                        }
                        _ => {
                            loads.spawn(load_whole(root, key, partition_id));
                        }
                    }
                }
            }
        }
        while let Some(joined) = loads.join_next().await {
            let load = match joined {
                Ok(load) => load,
                Err(error) => {
                    tracing::error!(%error, "partition load task failed");
                    continue;
                }
            };
            stats.store_get_requests += load.requests;
            stats.store_bytes_fetched += load.bytes;
            match load.outcome {
                Ok(Loaded::Whole(partition)) => {
                    let partition = Arc::new(partition);
                    if let Err(error) = self.cache.insert(&load.key, Arc::clone(&partition)) {
                        tracing::warn!(%error, "partition not cached");
                    }
                    loaded.insert(load.partition, partition);
                }
                Ok(Loaded::ByRange(partition)) => {
                    stats.partitions_read_by_range += 1;
                    loaded.insert(load.partition, Arc::new(partition));
                }
                Ok(Loaded::NotByRange) => {
                    loads.spawn(load_whole(Arc::clone(&self.root), load.key, load.partition));
                }
                Err(error) => failed.push(failure(load.partition, &error)),
            }
        }
        // A partition whose load task vanished (panicked) is reported too.
        for &partition_id in partition_ids {
            let reported = failed.iter().any(|f| f.partition == partition_id);
            if !loaded.contains_key(&partition_id) && !reported {
                failed.push(FailedPartition {
                    partition: partition_id,
                    kind: FailureKind::Error,
                    message: "partition load failed".to_string(),
                    queries: Vec::new(),
                });
            }
        }
        (loaded, failed)
    }

    /// Loads and searches this node's own partitions into `merged`, stopping at `deadline`:
    /// loads still running then are dropped and the scans stop between queries, so the answer
    /// (naming what was cut short) leaves before the parent stops waiting for it.
    async fn search_own(
        &self,
        request: &Arc<WorkerRequest>,
        deadline: Instant,
        stats: &mut InvocationStats,
        merged: &mut SubtreeAnswer,
    ) {
        let load_started = Instant::now();
        let partition_ids: Vec<u32> = request.tasks.iter().map(|task| task.partition).collect();
        let by_range: HashMap<u32, RangedRead> = request
            .tasks
            .iter()
            .filter_map(|task| Some((task.partition, RangedRead::for_task(request, task)?)))
            .collect();
        let loading = self.load_partitions(
            &request.index,
            &request.index_version,
            &request.segment_keys,
            &partition_ids,
            &by_range,
            stats,
        );
        let (loaded, failed) = match tokio::time::timeout_at(
            tokio::time::Instant::from_std(deadline),
            loading,
        )
        .await
        {
            Ok(done) => done,
            Err(_) => {
                let message = format!(
                    "the deadline came while loading partitions ({} ms budget)",
                    request.budget_ms
                );
                let failed = partition_ids
                    .iter()
                    .map(|&partition| FailedPartition {
                        partition,
                        kind: FailureKind::Timeout,
                        message: message.clone(),
                        queries: Vec::new(),
                    })
                    .collect();
                (HashMap::new(), failed)
            }
        };
        merged.failed.extend(failed);
        stats.load_ms = load_started.elapsed().as_secs_f64() * 1e3;
        let search_started = Instant::now();
        let tasks: Vec<_> = request
            .tasks
            .iter()
            .filter(|task| loaded.contains_key(&task.partition))
            .cloned()
            .collect();
        let request_for_search = Arc::clone(request);
        // The scans stop a little before the deadline, leaving time to encode and send the
        // answer (which grows with the queries) within the grace the parent adds for the
        // transport.
        let answer_margin = (deadline.saturating_duration_since(Instant::now()) / 5)
            .min(SCAN_ANSWER_MARGIN + SCAN_ANSWER_MARGIN_PER_QUERY * request.queries.len() as u32);
        let scan_deadline = deadline.checked_sub(answer_margin).unwrap_or(deadline);
        let search = move || {
            search_tasks(
                &request_for_search.queries,
                &tasks,
                &|partition| {
                    loaded
                        .get(&partition)
                        .cloned()
                        .ok_or_else(|| Error::NotFound {
                            what: format!("partition {partition}"),
                        })
                },
                Some(scan_deadline),
            )
        };
        let searched: std::result::Result<Vec<PartitionOutcome>, String> = if self.scan_inline {
            Ok(search())
        } else {
            tokio::task::spawn_blocking(search)
                .await
                .map_err(|error| error.to_string())
        };
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
                        queries: Vec::new(),
                    });
                }
            }
        }
        stats.search_ms = search_started.elapsed().as_secs_f64() * 1e3;
    }
}

/// A cold partition is read by range only for tasks of at most this many queries: a larger
/// batch probes much of the partition and reads it whole (then cached).
const RANGED_READ_MAX_QUERIES: usize = 16;

/// A partition is read by range only when its probed rows are at most this share of its rows;
/// beyond, reading the whole object costs about as many bytes in fewer requests.
const RANGED_READ_MAX_ROW_SHARE: f64 = 0.5;

/// What a ranged read of one partition needs: the object's size and the queries' vectors
/// and probe radii.
#[derive(Debug, Clone)]
pub struct RangedRead {
    object_bytes: u64,
    queries: Vec<(Vec<f32>, f32)>,
}

impl RangedRead {
    /// Returns the ranged read of `task`, or `None` when it must read the whole partition:
    /// its size is unknown, it has more than [`RANGED_READ_MAX_QUERIES`] queries, or one of
    /// them probes every row (exact mode).
    pub fn for_task(request: &WorkerRequest, task: &PartitionTask) -> Option<RangedRead> {
        if task.queries.len() > RANGED_READ_MAX_QUERIES {
            return None;
        }
        let queries = task
            .queries
            .iter()
            .map(|&position| {
                let query = request.queries.get(position as usize)?;
                Some((query.vector.clone(), query.probe_radius?))
            })
            .collect::<Option<Vec<_>>>()?;
        Some(RangedRead {
            object_bytes: task.object_bytes?,
            queries,
        })
    }
}

/// How a partition was loaded.
enum Loaded {
    /// Whole, to be cached.
    Whole(PartitionData),
    /// Its probed clusters only, by range (not cached).
    ByRange(PartitionData),
    /// Not readable by range (an older segment, or most of it probed): load it whole.
    NotByRange,
}

/// One partition load and the reads it made.
struct Load {
    partition: u32,
    key: String,
    requests: u32,
    bytes: u64,
    outcome: Result<Loaded>,
}

async fn load_whole(root: Arc<dyn BlobStore>, key: String, partition: u32) -> Load {
    let fetched = root.get(&key).await;
    let bytes = fetched.as_ref().map(|b| b.len() as u64).unwrap_or(0);
    let outcome = match fetched {
        Ok(object) => decode_partition_for_search(key.clone(), object, partition)
            .await
            .map(Loaded::Whole),
        Err(error) => Err(error),
    };
    Load {
        partition,
        key,
        requests: 1,
        bytes,
        outcome,
    }
}

async fn load_by_range(
    root: Arc<dyn BlobStore>,
    key: String,
    partition: u32,
    read: RangedRead,
) -> Load {
    let mut load = Load {
        partition,
        key,
        requests: 0,
        bytes: 0,
        outcome: Ok(Loaded::NotByRange),
    };
    load.outcome = read_probed_clusters(root, partition, read, &mut load).await;
    load
}

/// Reads the clusters `read`'s queries probe (`index/ranged.rs`): the tail, the toc if the
/// tail did not hold it, the head, then the rows' chunks concurrently. Counts the reads in
/// `load`.
async fn read_probed_clusters(
    root: Arc<dyn BlobStore>,
    partition: u32,
    read: RangedRead,
    load: &mut Load,
) -> Result<Loaded> {
    let key = load.key.clone();
    let object_len = read.object_bytes;
    let tail = read_range(&*root, &key, ranged::tail_range(object_len), load).await?;
    let toc = match ranged::toc_from_tail(&key, object_len, &tail)? {
        Ok(toc) => toc,
        Err(toc_range) => {
            let toc_bytes = read_range(&*root, &key, toc_range, load).await?;
            ranged::toc_from_bytes(&key, object_len, &tail, &toc_bytes)?
        }
    };
    let Some(head_range) = SegmentHead::head_range(&toc) else {
        return Ok(Loaded::NotByRange);
    };
    let head = match SegmentHead::head_from_tail(&toc, object_len, &tail) {
        Some(head_bytes) => {
            let head_bytes = head_bytes.to_vec();
            SegmentHead::decode(&key, toc, &head_bytes)?
        }
        None => {
            let head_bytes = read_range(&*root, &key, head_range, load).await?;
            SegmentHead::decode(&key, toc, &head_bytes)?
        }
    };
    if head.partition() != partition {
        return Err(Error::corrupt(
            &key,
            0,
            format!("holds partition {}, not {partition}", head.partition()),
        ));
    }
    let mut queries = read.queries;
    if head.metric().normalizes() {
        // A zero vector keeps its zeros here and is refused when its query is prepared.
        for (vector, _) in &mut queries {
            normalize_in_place(vector);
        }
    }
    let rows = head.probed_rows(
        queries
            .iter()
            .map(|(vector, radius)| (vector.as_slice(), *radius)),
    );
    let probed: usize = rows.iter().map(|range| range.len()).sum();
    if probed as f64 > RANGED_READ_MAX_ROW_SHARE * head.num_rows() as f64 {
        return Ok(Loaded::NotByRange);
    }
    let mut reads = JoinSet::new();
    for range in head.row_reads(&rows, ranged::DEFAULT_COALESCE_GAP_BYTES)? {
        load.requests += 1;
        load.bytes += range.end - range.start;
        let (root, key) = (Arc::clone(&root), key.clone());
        reads.spawn(async move {
            let bytes = root
                .get_range(&key, range.clone())
                .await
                .map_err(|error| outside_is_corrupt(&key, range.start, error));
            (range, bytes)
        });
    }
    let mut fetched = Vec::with_capacity(reads.len());
    while let Some(joined) = reads.join_next().await {
        let (range, bytes) =
            joined.map_err(|e| Error::internal(format!("ranged read task failed: {e}")))?;
        fetched.push((range, bytes?));
    }
    let assembled = decode_blocking(move || head.assemble(&rows, &fetched)).await?;
    Ok(Loaded::ByRange(assembled))
}

/// Reads `range` of `key`, counting the request and its bytes in `load`.
async fn read_range(
    root: &dyn BlobStore,
    key: &str,
    range: std::ops::Range<u64>,
    load: &mut Load,
) -> Result<Vec<u8>> {
    load.requests += 1;
    load.bytes += range.end - range.start;
    let start = range.start;
    root.get_range(key, range)
        .await
        .map_err(|error| outside_is_corrupt(key, start, error))
}

/// Ranges come from the manifest's size and the object's own toc, so a store that refuses one
/// as outside the object means the object is not what the index says: corrupt.
fn outside_is_corrupt(key: &str, offset: u64, error: Error) -> Error {
    match error {
        Error::InvalidInput { reason, .. } => Error::corrupt(
            key,
            offset,
            format!("the object is shorter than its index says: {reason}"),
        ),
        other => other,
    }
}

fn failure(partition: u32, error: &Error) -> FailedPartition {
    FailedPartition {
        partition,
        kind: FailureKind::of(error),
        message: error.to_string(),
        queries: Vec::new(),
    }
}
