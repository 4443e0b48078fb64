//! Measures what queries use on the serverless code path, in this process: the coordinator and
//! worker services the Lambda functions run ([`squash_service`]), workers invoked in process,
//! over an index whose store is wrapped by a [`CountingStore`] (exact GET and byte counts).
//! The measurements are priced with [`crate::cost`].
//!
//! Four phases: cold single queries (each on a fresh service, so every partition it probes is
//! read and decoded: a query landing on cold containers), one cold batch, then, after a warm-up
//! pass over every query, warm single queries and warm batches (the steady state of warm
//! containers). Single queries are priced as interactive requests through API Gateway,
//! batches as direct invocations (batch jobs).
//!
//! Billed milliseconds are wall times of this process: coordinator and workers share this
//! machine's cores, and a parent worker is billed while its children run, as on Lambda.
//! Invocations, GETs and bytes are exact and carry over to AWS; milliseconds do not.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::cost::{
    cost_per_million_queries, storage_per_month, CostPerMillion, FunctionMemory, PriceList,
    RequestUsage,
};
use crate::workloads::{Workload, WorkloadSuite};
use squash_core::error::{Error, Result};
use squash_core::protocol::{
    BatchRequest, ExecutionStats, IndexSummary, QueryRequest, QueryResponse, SearchOptions,
};
use squash_service::coordinator_service::DEFAULT_MAX_DEPTH;
use squash_service::partition_cache::{capacity_bytes_for_lambda_memory, PartitionCache};
use squash_service::{CoordinatorService, InProcessInvoker, ServiceConfig, TreeShape};
use squash_storage::{BlobStore, CountingStore};

/// Time a measured request may take: generous, because the point is what a request uses,
/// not whether a loaded machine meets a deployment's deadline.
const MEASUREMENT_TIMEOUT_MS: u64 = 120_000;

/// How to measure.
#[derive(Debug, Clone, PartialEq)]
pub struct UsageConfig {
    /// Worker slots (deployed worker functions).
    pub worker_slots: usize,
    /// Children per node of the invocation tree.
    pub branching: usize,
    /// Queries per batch request.
    pub batch_size: usize,
    /// Cold single queries, each on a fresh service.
    pub cold_queries: usize,
    /// Each worker invocation runs alone, in a container of its own, under a flat tree (the
    /// coordinator invokes every slot, none waits on a child): its billed time is its own, as
    /// on Lambda, where every invocation has its own vCPU, instead of the time it spends
    /// sharing this machine's cores with the others. The coordinator is billed its planning
    /// and the slowest invocation, as it would wait for them running side by side.
    pub invocations_alone: bool,
    /// Memory sizes the functions are billed at.
    pub memory: FunctionMemory,
    /// Prices.
    pub prices: PriceList,
}

/// Latency percentiles, milliseconds (nearest rank).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Percentiles {
    /// Median.
    pub p50: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Mean.
    pub mean: f64,
}

impl Percentiles {
    /// Returns the percentiles of `values` (zeros when empty).
    pub fn of(values: &[f64]) -> Self {
        if values.is_empty() {
            return Percentiles::default();
        }
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        let rank =
            |p: f64| sorted[((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1];
        Percentiles {
            p50: rank(0.50),
            p95: rank(0.95),
            p99: rank(0.99),
            mean: sorted.iter().sum::<f64>() / sorted.len() as f64,
        }
    }
}

/// Per-query means of one phase.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct PerQuery {
    /// Worker invocations (retries included).
    pub invocations: f64,
    /// Coordinator billed milliseconds (its whole run, rounded up per request).
    pub coordinator_billed_ms: f64,
    /// Worker billed milliseconds, summed over invocations (each rounded up).
    pub worker_billed_ms: f64,
    /// Worker milliseconds spent searching, summed over invocations.
    pub worker_search_ms: f64,
    /// Worker milliseconds spent fetching and decoding partitions, summed.
    pub worker_load_ms: f64,
    /// S3 GET requests, coordinator and workers.
    pub s3_gets: f64,
    /// Of those, GETs of partitions by workers.
    pub partition_gets: f64,
    /// Bytes returned by the GETs.
    pub s3_bytes: f64,
    /// Partitions probed.
    pub partitions_probed: f64,
}

/// What one phase measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PhaseUsage {
    /// `cold` or `warm`.
    pub cache: String,
    /// `single` or `batch`.
    pub mode: String,
    /// Queries answered.
    pub num_queries: u64,
    /// Requests sent (one per single query, one per batch).
    pub num_requests: u64,
    /// Per-query means.
    pub per_query: PerQuery,
    /// Request latency as the caller saw it (wall time of the coordinator call).
    pub request_latency_ms: Percentiles,
    /// Queries answered per second of wall time, requests one after another.
    pub queries_per_second: f64,
    /// Answers with some partitions missing (should be 0).
    pub partial_answers: u64,
    /// Whether the store's own GET and byte counts equal the sums of the execution stats.
    pub store_counts_agree: bool,
    /// Dollars per one million queries, billing the measured milliseconds.
    pub cost_per_million: CostPerMillion,
    /// CPU time of this whole process (coordinator and workers, user and system) per query,
    /// where the platform reports it (Linux).
    pub process_cpu_ms_per_query: Option<f64>,
    /// Dollars per one million queries if Lambda billed only that CPU time (at the worker's
    /// memory size): no waiting on children or on the network and no sharing of cores. A lower
    /// bound for the compute item; the requests and GETs items are the same.
    pub cpu_only_cost_per_million: Option<CostPerMillion>,
}

/// Everything `squash cost` reports.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UsageReport {
    /// The index measured.
    pub index: IndexSummary,
    /// Worker slots.
    pub worker_slots: usize,
    /// Tree branching.
    pub branching: usize,
    /// Whether each invocation ran alone under a flat tree (see [`UsageConfig`]).
    pub invocations_alone: bool,
    /// Queries per batch.
    pub batch_size: usize,
    /// Memory sizes billed.
    pub memory: FunctionMemory,
    /// Prices used.
    pub prices: PriceList,
    /// S3 storage of the index, dollars per month.
    pub storage_per_month: f64,
    /// The phases, in the order run.
    pub phases: Vec<PhaseUsage>,
    /// How to read the milliseconds.
    pub note: String,
}

/// The caveat on milliseconds, carried in every report.
pub const MILLISECONDS_NOTE: &str = "billed ms are wall times of the in-process services on this machine: coordinator and workers share its cores (inflating each other's walls) and a parent worker is billed while its children run, as on Lambda, but no network hop is waited for. They are not Lambda's: a 2048 MB Lambda has about 1.2 vCPU (arm64). The CPU-only figure bills the process CPU time instead (no waiting, no sharing): a lower bound for compute. Invocations, S3 GETs and bytes are exact counts and carry over to AWS. Single queries are priced through API Gateway, batches as direct invocations. With invocations alone (a flat tree), each worker is billed the time it took running alone on this machine and the coordinator its planning plus the slowest invocation: Lambda's billing when every invocation has its own vCPU.";

/// Runs the same services a deployment runs, in process, over the store of a root folder or
/// prefix.
struct Harness {
    counting: Arc<CountingStore>,
    config: ServiceConfig,
    cache_bytes: u64,
    invocations_alone: bool,
}

impl Harness {
    /// Returns a fresh coordinator with fresh workers: cold containers, empty caches.
    fn fresh_service(&self) -> CoordinatorService {
        let store: Arc<dyn BlobStore> = Arc::clone(&self.counting) as Arc<dyn BlobStore>;
        let cache = Arc::new(PartitionCache::new(self.cache_bytes));
        let mut invoker = InProcessInvoker::new(Arc::clone(&store), cache);
        if self.invocations_alone {
            invoker = invoker.with_containers(self.cache_bytes, true);
        }
        CoordinatorService::new(store, Arc::new(invoker), self.config.clone())
    }
}

/// Returns the names of `num_slots` worker slots as the measurements call them.
pub fn slot_names(num_slots: usize) -> Vec<String> {
    (0..num_slots)
        .map(|slot| format!("worker-{slot}"))
        .collect()
}

/// Sums of one phase, turned into a [`PhaseUsage`] at the end.
struct PhaseTally {
    cache: &'static str,
    mode: &'static str,
    through_api_gateway: bool,
    invocations_alone: bool,
    usage: RequestUsage,
    num_requests: u64,
    per_query_sums: PerQuery,
    latencies_ms: Vec<f64>,
    wall: Duration,
    partial_answers: u64,
    stats_gets: u64,
    stats_bytes: u64,
    cpu_ms_at_start: Option<f64>,
}

impl PhaseTally {
    fn new(cache: &'static str, mode: &'static str, invocations_alone: bool) -> Self {
        PhaseTally {
            cache,
            mode,
            through_api_gateway: mode == "single",
            invocations_alone,
            usage: RequestUsage::default(),
            num_requests: 0,
            per_query_sums: PerQuery::default(),
            latencies_ms: Vec::new(),
            wall: Duration::ZERO,
            partial_answers: 0,
            stats_gets: 0,
            stats_bytes: 0,
            cpu_ms_at_start: process_cpu_ms(),
        }
    }

    fn record(&mut self, execution: &ExecutionStats, answers: &[QueryResponse], elapsed: Duration) {
        let num_queries = answers.len() as u64;
        let mut usage = RequestUsage::from_stats(execution, num_queries, self.through_api_gateway);
        // Invocations that ran one after another would have run side by side: the coordinator
        // waits for the slowest, not for their sum.
        let coordinator_ms = if self.invocations_alone {
            let slowest = execution
                .workers
                .iter()
                .map(|worker| worker.duration_ms)
                .fold(0.0, f64::max);
            execution.plan_ms + slowest
        } else {
            execution.total_ms
        };
        let coordinator_billed_ms = coordinator_ms.max(0.0).ceil();
        usage.coordinator_billed_ms = coordinator_billed_ms as u64;
        self.usage.add(&usage);
        self.num_requests += 1;
        self.latencies_ms.push(elapsed.as_secs_f64() * 1e3);
        self.wall += elapsed;
        self.partial_answers += answers.iter().filter(|a| a.partial).count() as u64;
        self.stats_gets += u64::from(execution.store_get_requests);
        self.stats_bytes += execution.store_bytes_fetched;
        let sums = &mut self.per_query_sums;
        sums.invocations += f64::from(execution.invocations);
        sums.coordinator_billed_ms += coordinator_billed_ms;
        sums.worker_billed_ms += execution.worker_billed_ms as f64;
        sums.worker_search_ms += execution.worker_search_ms;
        sums.worker_load_ms += execution.worker_load_ms;
        sums.s3_gets += f64::from(execution.store_get_requests);
        sums.partition_gets += f64::from(
            execution
                .store_get_requests
                .saturating_sub(execution.coordinator_store_get_requests),
        );
        sums.s3_bytes += execution.store_bytes_fetched as f64;
        sums.partitions_probed += answers
            .iter()
            .map(|a| a.stats.partitions_probed as f64)
            .sum::<f64>();
    }

    fn finish(self, counted: squash_storage::StoreCounters, config: &UsageConfig) -> PhaseUsage {
        let n = self.usage.num_queries.max(1) as f64;
        let s = self.per_query_sums;
        let cpu_ms_opt = match (self.cpu_ms_at_start, process_cpu_ms()) {
            (Some(start), Some(end)) => Some((end - start).max(0.0)),
            _ => None,
        };
        let cpu_only_cost_opt = cpu_ms_opt.map(|cpu_ms| {
            let usage = RequestUsage {
                coordinator_billed_ms: 0,
                worker_billed_ms: cpu_ms.ceil() as u64,
                ..self.usage
            };
            cost_per_million_queries(&usage, self.num_requests, config.memory, &config.prices)
        });
        PhaseUsage {
            cache: self.cache.to_string(),
            mode: self.mode.to_string(),
            num_queries: self.usage.num_queries,
            num_requests: self.num_requests,
            per_query: PerQuery {
                invocations: s.invocations / n,
                coordinator_billed_ms: s.coordinator_billed_ms / n,
                worker_billed_ms: s.worker_billed_ms / n,
                worker_search_ms: s.worker_search_ms / n,
                worker_load_ms: s.worker_load_ms / n,
                s3_gets: s.s3_gets / n,
                partition_gets: s.partition_gets / n,
                s3_bytes: s.s3_bytes / n,
                partitions_probed: s.partitions_probed / n,
            },
            request_latency_ms: Percentiles::of(&self.latencies_ms),
            queries_per_second: self.usage.num_queries as f64 / self.wall.as_secs_f64().max(1e-9),
            partial_answers: self.partial_answers,
            store_counts_agree: counted.num_get_requests == self.stats_gets
                && counted.bytes_fetched == self.stats_bytes,
            cost_per_million: cost_per_million_queries(
                &self.usage,
                self.num_requests,
                config.memory,
                &config.prices,
            ),
            process_cpu_ms_per_query: cpu_ms_opt.map(|cpu_ms| cpu_ms / n),
            cpu_only_cost_per_million: cpu_only_cost_opt,
        }
    }
}

/// Clock ticks per second of `/proc/<pid>/stat` times: `USER_HZ`, which Linux fixes at 100 in
/// its user-space interface on every architecture.
const PROC_TICKS_PER_SECOND: f64 = 100.0;

/// Returns the CPU time this process has used (all threads, user and system), in
/// milliseconds, at a resolution of 10 ms; `None` off Linux.
pub fn process_cpu_ms() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    parse_proc_stat_cpu_ms(&stat)
}

/// Returns utime + stime of a `/proc/<pid>/stat` line in milliseconds. The command name (field
/// 2) is in parentheses and may hold spaces, so fields are counted after its closing one.
fn parse_proc_stat_cpu_ms(stat: &str) -> Option<f64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace();
    // After the name: state is field 3, utime field 14, stime field 15.
    let utime: f64 = fields.nth(11)?.parse().ok()?;
    let stime: f64 = fields.next()?.parse().ok()?;
    Some((utime + stime) / PROC_TICKS_PER_SECOND * 1e3)
}

async fn run_single(
    service: &CoordinatorService,
    name: &str,
    request: &QueryRequest,
    request_id: String,
    tally: &mut PhaseTally,
) -> Result<()> {
    let started = Instant::now();
    let response = service
        .query(
            name,
            request.clone(),
            &request_id,
            service.default_deadline(),
        )
        .await?;
    let elapsed = started.elapsed();
    let execution = response.stats.execution.clone().ok_or_else(|| {
        Error::internal("a single-query answer carries no execution stats".to_string())
    })?;
    tally.record(&execution, std::slice::from_ref(&response), elapsed);
    Ok(())
}

async fn run_batch(
    service: &CoordinatorService,
    name: &str,
    requests: &[QueryRequest],
    request_id: String,
    tally: &mut PhaseTally,
) -> Result<()> {
    let batch = BatchRequest::new(requests.to_vec());
    let started = Instant::now();
    let response = service
        .query_batch(name, batch, &request_id, service.default_deadline())
        .await?;
    tally.record(&response.stats, &response.results, started.elapsed());
    Ok(())
}

/// Measures `requests` on index `name` under `root` (see the module documentation) and prices
/// each phase.
pub async fn measure(
    root: Arc<dyn BlobStore>,
    name: &str,
    requests: &[QueryRequest],
    config: &UsageConfig,
) -> Result<UsageReport> {
    if requests.is_empty() {
        return Err(Error::invalid("queries", "there are no queries to run"));
    }
    if config.worker_slots == 0 {
        return Err(Error::invalid(
            "slots",
            "at least one worker slot is needed",
        ));
    }
    if config.batch_size == 0 {
        return Err(Error::invalid("batch_size", "must be at least 1"));
    }
    let worker_memory = config.memory.worker_mb.to_string();
    let container_cache_bytes = capacity_bytes_for_lambda_memory(Some(&worker_memory));
    let alone = config.invocations_alone;
    // Alone, the tree is flat: invocations may run one at a time without a parent waiting on a
    // child.
    let (branching, max_depth) = if alone {
        (config.worker_slots.max(2), 1)
    } else {
        (config.branching, DEFAULT_MAX_DEPTH)
    };
    let harness = Harness {
        counting: Arc::new(CountingStore::new(root)),
        config: ServiceConfig {
            worker_functions: slot_names(config.worker_slots),
            tree: TreeShape::try_new(branching, max_depth)?,
            timeout_ms: MEASUREMENT_TIMEOUT_MS,
            ..ServiceConfig::default()
        },
        // Alone, each container caches what its memory allows; otherwise one cache stands for
        // all slots' containers.
        cache_bytes: if alone {
            container_cache_bytes
        } else {
            container_cache_bytes.saturating_mul(config.worker_slots as u64)
        },
        invocations_alone: alone,
    };
    let index = harness.fresh_service().describe(name).await?;
    let mut phases = Vec::new();

    let mut tally = PhaseTally::new("cold", "single", alone);
    harness.counting.reset();
    for (position, request) in requests.iter().take(config.cold_queries.max(1)).enumerate() {
        let service = harness.fresh_service();
        run_single(
            &service,
            name,
            request,
            format!("cost-cold-{position}"),
            &mut tally,
        )
        .await?;
    }
    phases.push(tally.finish(harness.counting.snapshot(), config));

    let mut tally = PhaseTally::new("cold", "batch", alone);
    harness.counting.reset();
    let first_batch = &requests[..config.batch_size.min(requests.len())];
    run_batch(
        &harness.fresh_service(),
        name,
        first_batch,
        "cost-cold-batch".to_string(),
        &mut tally,
    )
    .await?;
    phases.push(tally.finish(harness.counting.snapshot(), config));

    // Warm: every partition any query probes is loaded once before measuring.
    let service = harness.fresh_service();
    let mut warm_up = PhaseTally::new("warm", "batch", alone);
    for (position, chunk) in requests.chunks(config.batch_size).enumerate() {
        run_batch(
            &service,
            name,
            chunk,
            format!("cost-warm-up-{position}"),
            &mut warm_up,
        )
        .await?;
    }

    let mut tally = PhaseTally::new("warm", "single", alone);
    harness.counting.reset();
    for (position, request) in requests.iter().enumerate() {
        run_single(
            &service,
            name,
            request,
            format!("cost-warm-{position}"),
            &mut tally,
        )
        .await?;
    }
    phases.push(tally.finish(harness.counting.snapshot(), config));

    let mut tally = PhaseTally::new("warm", "batch", alone);
    harness.counting.reset();
    for (position, chunk) in requests.chunks(config.batch_size).enumerate() {
        run_batch(
            &service,
            name,
            chunk,
            format!("cost-batch-{position}"),
            &mut tally,
        )
        .await?;
    }
    phases.push(tally.finish(harness.counting.snapshot(), config));

    Ok(UsageReport {
        storage_per_month: storage_per_month(index.total_bytes, &config.prices),
        index,
        worker_slots: config.worker_slots,
        branching,
        invocations_alone: alone,
        batch_size: config.batch_size,
        memory: config.memory,
        prices: config.prices,
        phases,
        note: MILLISECONDS_NOTE.to_string(),
    })
}

/// Returns the names of the workloads of `path` (a `workloads.json`) selected by `only` (all
/// when `None`) and their queries as requests for `k` hits with `options`: at most
/// `max_queries` per workload, interleaved (query 0 of each workload, then query 1, ...) so
/// that the first queries and every batch mix the workloads.
pub fn requests_from_workloads(
    path: &Path,
    only: Option<&[&str]>,
    max_queries: Option<usize>,
    k: usize,
    options: &SearchOptions,
) -> Result<(Vec<String>, Vec<QueryRequest>)> {
    let suite = WorkloadSuite::open(path)?;
    let (file, queries) = (&suite.file, &suite.queries);
    let selected: Vec<&Workload> = file
        .workloads
        .iter()
        .filter(|w| only.is_none_or(|names| names.contains(&w.name.as_str())))
        .collect();
    if selected.is_empty() {
        return Err(Error::invalid(
            "only",
            format!("no workload of that name in {}", path.display()),
        ));
    }
    let budget = |w: &Workload| w.query_ids.len().min(max_queries.unwrap_or(usize::MAX));
    let longest = selected.iter().map(|w| budget(w)).max().unwrap_or(0);
    let mut requests = Vec::new();
    for position in 0..longest {
        for workload in selected.iter().filter(|w| position < budget(w)) {
            let query_id = workload.query_ids[position];
            if query_id >= queries.num_vectors {
                return Err(Error::invalid(
                    format!("workload {} query_ids[{position}]", workload.name),
                    format!("{query_id} is not a row of {}", file.queries_file),
                ));
            }
            requests.push(QueryRequest {
                vector: queries.row(query_id).to_vec(),
                k,
                filter: workload.filters.get(position).cloned().flatten(),
                include_attributes: false,
                options: options.clone(),
                require_complete: false,
                branching: None,
                min_token: None,
                as_of: None,
            });
        }
    }
    Ok((selected.iter().map(|w| w.name.clone()).collect(), requests))
}

/// Returns the report as a text table.
pub fn render_text(report: &UsageReport) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let index = &report.index;
    // Writing to a String cannot fail.
    let _ = writeln!(
        out,
        "index {} ({} vectors x {}, {} partitions, {:.1} MiB; S3 storage ${:.4}/month)",
        index.name,
        index.num_vectors,
        index.dim,
        index.num_partitions,
        index.total_bytes as f64 / (1 << 20) as f64,
        report.storage_per_month
    );
    let _ = writeln!(
        out,
        "{} worker slots, branching {}{}, batches of {}; coordinator {} MB, workers {} MB; {}",
        report.worker_slots,
        report.branching,
        if report.invocations_alone {
            " (flat, each invocation timed alone)"
        } else {
            ""
        },
        report.batch_size,
        report.memory.coordinator_mb,
        report.memory.worker_mb,
        report.prices.source
    );
    let _ = writeln!(
        out,
        "\nper query            queries  invoc  coord ms  worker ms  search ms  S3 GETs   S3 bytes  p50 ms  p95 ms  p99 ms    $/1M  partial"
    );
    for phase in &report.phases {
        let q = &phase.per_query;
        let l = &phase.request_latency_ms;
        let _ = writeln!(
            out,
            "{:<20} {:>7} {:>6.2} {:>9.2} {:>10.2} {:>10.2} {:>8.3} {:>10.0} {:>7.1} {:>7.1} {:>7.1} {:>7.3} {:>8}",
            format!("{} {}", phase.cache, phase.mode),
            phase.num_queries,
            q.invocations,
            q.coordinator_billed_ms,
            q.worker_billed_ms,
            q.worker_search_ms,
            q.s3_gets,
            q.s3_bytes,
            l.p50,
            l.p95,
            l.p99,
            phase.cost_per_million.total,
            phase.partial_answers,
        );
    }
    let _ = writeln!(
        out,
        "\nprocess CPU per query (coordinator + workers) and dollars per 1M queries billing only it"
    );
    for phase in &report.phases {
        if let (Some(cpu_ms), Some(cost)) = (
            phase.process_cpu_ms_per_query,
            phase.cpu_only_cost_per_million,
        ) {
            let _ = writeln!(
                out,
                "{:<20} {:>8.2} ms {:>10.4} $/1M",
                format!("{} {}", phase.cache, phase.mode),
                cpu_ms,
                cost.total
            );
        }
    }
    let _ = writeln!(out, "\ndollars per 1M queries, by item");
    let _ = writeln!(
        out,
        "{:<20} {:>10} {:>10} {:>10} {:>10} {:>10}",
        "", "compute", "requests", "S3 GETs", "API GW", "total"
    );
    for phase in &report.phases {
        let c = &phase.cost_per_million;
        let _ = writeln!(
            out,
            "{:<20} {:>10.4} {:>10.4} {:>10.4} {:>10.4} {:>10.4}",
            format!("{} {}", phase.cache, phase.mode),
            c.lambda_compute,
            c.lambda_requests,
            c.s3_gets,
            c.api_gateway,
            c.total
        );
    }
    if report.phases.iter().any(|p| !p.store_counts_agree) {
        let _ = writeln!(
            out,
            "warning: the store's GET counts differ from the execution stats"
        );
    }
    let _ = writeln!(out, "\nnote: {}", report.note);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_is_read_after_the_command_name() {
        let line = "4242 (squash cost (x)) R 1 2 3 4 5 6 7 8 9 10 250 75 0 0 20 0 9 0";
        assert_eq!(parse_proc_stat_cpu_ms(line), Some(3250.0));
        assert_eq!(parse_proc_stat_cpu_ms("garbage"), None);
        if cfg!(target_os = "linux") {
            assert!(process_cpu_ms().is_some());
        }
    }

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        let p = Percentiles::of(&values);
        assert_eq!((p.p50, p.p95, p.p99), (50.0, 95.0, 99.0));
        assert_eq!(p.mean, 50.5);
        assert_eq!(Percentiles::of(&[7.0]).p99, 7.0);
        assert_eq!(Percentiles::of(&[]), Percentiles::default());
    }
}
