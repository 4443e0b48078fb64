//! Batch time, invocations and cost against batch size (`squash cost --batch-sizes`): the
//! same coordinator and worker services a deployment runs, in process, each worker invocation
//! in a container of its own as Lambda would run it (`InProcessInvoker::with_containers`):
//! the parts of a split batch land on new containers, cold the first time.
//!
//! Each batch size runs twice on fresh services (cold, then warm with the same containers):
//! - **one at a time**, the invocations waiting for each other, so each one's time is its own
//!   and not shared with the others on this machine's cores. On Lambda every invocation has
//!   its own vCPU, so the batch takes about the coordinator's planning plus its slowest
//!   invocation: that is the modelled batch time. Billed milliseconds come from this run.
//! - **all at once** on this machine, for its wall time (invocations share its cores).
//!
//! Not modelled: the network hop of each Lambda invoke and a container's runtime start (both
//! tens of milliseconds), and a Lambda vCPU's speed relative to this machine's core.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::cost::{
    cost_per_million_queries, CostPerMillion, FunctionMemory, PriceList, RequestUsage,
};
use squash_core::error::{Error, Result};
use squash_core::protocol::{BatchRequest, BatchResponse, QueryRequest};
use squash_service::partition_cache::capacity_bytes_for_lambda_memory;
use squash_service::{CoordinatorService, InProcessInvoker, ServiceConfig, TreeShape};
use squash_storage::{BlobStore, CountingStore};

/// How to measure the curve.
#[derive(Debug, Clone, PartialEq)]
pub struct CurveConfig {
    /// Worker slots (deployed worker functions).
    pub worker_slots: usize,
    /// Batch sizes to run.
    pub batch_sizes: Vec<usize>,
    /// The coordinator's settings (time budget, split target and cap); its worker functions
    /// and tree are set here.
    pub service: ServiceConfig,
    /// Memory sizes the functions are billed at.
    pub memory: FunctionMemory,
    /// Prices.
    pub prices: PriceList,
}

/// What one batch measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BatchPoint {
    /// Queries in the batch.
    pub batch_size: usize,
    /// `cold` (fresh containers) or `warm` (the same containers again).
    pub cache: String,
    /// Worker invocations, retries included.
    pub invocations: u32,
    /// Of those, the extra parts of split slots.
    pub split_invocations: u32,
    /// Invocations that started a container.
    pub worker_cold_starts: u32,
    /// Modelled batch time on Lambda: planning plus the slowest invocation, each invocation
    /// timed alone.
    pub modelled_batch_ms: f64,
    /// The slowest invocation's own time.
    pub slowest_invocation_ms: f64,
    /// Wall time of the batch with every invocation running at once on this machine.
    pub wall_ms_here: f64,
    /// Worker milliseconds billed, summed over the invocations (timed alone).
    pub worker_billed_ms: u64,
    /// Of those, milliseconds spent scanning.
    pub worker_search_ms: f64,
    /// The coordinator's planning, milliseconds.
    pub plan_ms: f64,
    /// Rows scanned per query, summed over its partitions.
    pub probed_rows_per_query: f64,
    /// S3 GET requests.
    pub s3_gets: u32,
    /// Bytes those returned.
    pub s3_bytes: u64,
    /// Dollars per one million queries (direct invocation, no API Gateway).
    pub cost_per_million: CostPerMillion,
    /// Queries answered with some partition missing (should be 0).
    pub partial_answers: usize,
}

/// The whole curve.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CurveReport {
    /// Worker slots.
    pub worker_slots: usize,
    /// The time budget of a request, milliseconds.
    pub timeout_ms: u64,
    /// Estimated milliseconds one invocation is aimed at.
    pub target_invocation_ms: u64,
    /// The cap on invocations of one request.
    pub max_invocations: usize,
    /// Memory sizes billed.
    pub memory: FunctionMemory,
    /// One point per batch size and cache state.
    pub points: Vec<BatchPoint>,
}

/// Time a measured batch may take: invocations timed one at a time wait for each other, which
/// a deployment's budget does not allow for; the split itself follows the configured budget
/// (through its target time per invocation).
const MEASUREMENT_TIMEOUT_MS: u64 = 600_000;

/// Services over one counting store, with containers as Lambda would run them.
struct CurveHarness {
    counting: Arc<CountingStore>,
    config: ServiceConfig,
    cache_bytes: u64,
}

impl CurveHarness {
    fn fresh_service(&self, one_at_a_time: bool) -> CoordinatorService {
        let store: Arc<dyn BlobStore> = Arc::clone(&self.counting) as Arc<dyn BlobStore>;
        let invoker = InProcessInvoker::new(
            Arc::clone(&store),
            Arc::new(squash_service::PartitionCache::new(0)),
        )
        .with_containers(self.cache_bytes, one_at_a_time);
        CoordinatorService::new(store, Arc::new(invoker), self.config.clone())
    }
}

async fn run_batch(
    service: &CoordinatorService,
    name: &str,
    queries: &[QueryRequest],
    request_id: &str,
) -> Result<(BatchResponse, f64)> {
    let batch = BatchRequest::new(queries.to_vec());
    let started = Instant::now();
    let deadline = Instant::now() + Duration::from_millis(MEASUREMENT_TIMEOUT_MS);
    let response = service
        .query_batch(name, batch, request_id, deadline)
        .await?;
    Ok((response, started.elapsed().as_secs_f64() * 1e3))
}

/// Measures the curve for `requests` (cycled to each batch size) on index `name` under `root`.
pub async fn measure_curve(
    root: Arc<dyn BlobStore>,
    name: &str,
    requests: &[QueryRequest],
    config: &CurveConfig,
) -> Result<CurveReport> {
    if requests.is_empty() {
        return Err(Error::invalid("queries", "there are no queries to run"));
    }
    if config.worker_slots == 0 || config.worker_slots > 64 {
        return Err(Error::invalid("slots", "must be between 1 and 64"));
    }
    if let Some(&bad) = config
        .batch_sizes
        .iter()
        .find(|&&n| n == 0 || n > squash_core::protocol::MAX_BATCH_QUERIES)
    {
        return Err(Error::invalid(
            "batch_sizes",
            format!(
                "{bad} is not between 1 and {}",
                squash_core::protocol::MAX_BATCH_QUERIES
            ),
        ));
    }
    let worker_memory = config.memory.worker_mb.to_string();
    let harness = CurveHarness {
        counting: Arc::new(CountingStore::new(root)),
        // A flat tree: every slot's node is a leaf the coordinator invokes, as the parts are,
        // so invocations may run one at a time without a parent waiting on a child.
        config: ServiceConfig {
            worker_functions: crate::usage::slot_names(config.worker_slots),
            tree: TreeShape::try_new(config.worker_slots.max(2), 1)?,
            target_invocation_ms: Some(config.service.target_invocation_ms()),
            timeout_ms: MEASUREMENT_TIMEOUT_MS,
            ..config.service.clone()
        },
        cache_bytes: capacity_bytes_for_lambda_memory(Some(&worker_memory)),
    };
    let budget_ms = config.service.timeout_ms;
    let mut points = Vec::new();
    for &batch_size in &config.batch_sizes {
        let queries: Vec<QueryRequest> =
            requests.iter().cycle().take(batch_size).cloned().collect();
        let alone = harness.fresh_service(true);
        let together = harness.fresh_service(false);
        for cache in ["cold", "warm"] {
            let request_id = format!("curve-{batch_size}-{cache}");
            harness.counting.reset();
            let (response, _) = run_batch(&alone, name, &queries, &request_id).await?;
            let counted = harness.counting.snapshot();
            let (_, wall_ms_here) = run_batch(&together, name, &queries, &request_id).await?;
            let stats = &response.stats;
            let slowest_invocation_ms = stats
                .workers
                .iter()
                .map(|worker| worker.duration_ms)
                .fold(0.0, f64::max);
            let modelled_batch_ms = stats.plan_ms + slowest_invocation_ms;
            let usage = RequestUsage {
                num_queries: batch_size as u64,
                coordinator_billed_ms: modelled_batch_ms.ceil() as u64,
                worker_invocations: u64::from(stats.invocations),
                worker_billed_ms: stats.worker_billed_ms,
                s3_gets: counted.num_get_requests,
                through_api_gateway: false,
            };
            points.push(BatchPoint {
                batch_size,
                cache: cache.to_string(),
                invocations: stats.invocations,
                split_invocations: stats.split_invocations,
                worker_cold_starts: stats.worker_cold_starts,
                modelled_batch_ms,
                slowest_invocation_ms,
                wall_ms_here,
                worker_billed_ms: stats.worker_billed_ms,
                worker_search_ms: stats.worker_search_ms,
                plan_ms: stats.plan_ms,
                probed_rows_per_query: response
                    .results
                    .iter()
                    .map(|r| r.stats.scan.probed_rows as f64)
                    .sum::<f64>()
                    / batch_size as f64,
                s3_gets: stats.store_get_requests,
                s3_bytes: stats.store_bytes_fetched,
                cost_per_million: cost_per_million_queries(
                    &usage,
                    1,
                    config.memory,
                    &config.prices,
                ),
                partial_answers: response.results.iter().filter(|r| r.partial).count(),
            });
        }
    }
    Ok(CurveReport {
        worker_slots: config.worker_slots,
        timeout_ms: budget_ms,
        target_invocation_ms: harness.config.target_invocation_ms(),
        max_invocations: harness.config.max_invocations,
        memory: config.memory,
        points,
    })
}

/// Returns the curve as a text table.
pub fn render_curve(report: &CurveReport) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = writeln!(
        out,
        "{} worker slots, budget {} ms, target {} ms per invocation, at most {} invocations; workers {} MB",
        report.worker_slots,
        report.timeout_ms,
        report.target_invocation_ms,
        report.max_invocations,
        report.memory.worker_mb
    );
    let _ = writeln!(
        out,
        "\n  batch  cache  invoc  split  cold  plan ms  model ms  slowest ms  here ms  billed ms  search ms  rows/q  S3 GETs     S3 MB    $/1M  partial"
    );
    for p in &report.points {
        let _ = writeln!(
            out,
            "{:>7}  {:<5} {:>6} {:>6} {:>5} {:>8.1} {:>9.1} {:>11.1} {:>8.1} {:>10} {:>10.1} {:>7.0} {:>8} {:>9.1} {:>7.3} {:>8}",
            p.batch_size,
            p.cache,
            p.invocations,
            p.split_invocations,
            p.worker_cold_starts,
            p.plan_ms,
            p.modelled_batch_ms,
            p.slowest_invocation_ms,
            p.wall_ms_here,
            p.worker_billed_ms,
            p.worker_search_ms,
            p.probed_rows_per_query,
            p.s3_gets,
            p.s3_bytes as f64 / 1e6,
            p.cost_per_million.total,
            p.partial_answers
        );
    }
    let _ = writeln!(
        out,
        "\nmodel ms: planning + the slowest invocation, each invocation timed alone (on Lambda each has its own vCPU; invoke hops and runtime starts not included). here ms: every invocation at once on this machine's cores. Billed ms and $ from the timed-alone run."
    );
    out
}
