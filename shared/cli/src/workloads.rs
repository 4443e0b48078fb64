//! Workload suites: a data set folder's `workloads.json` with its query vectors and exact
//! ground truth, and the timed single-thread run that `squash eval` and `squash bench` share.
//!
//! A suite is read once; each workload is then loaded (its queries, filters and ground-truth
//! distances, cut to a query budget) and run against an opened [`EmbeddedIndex`] whose
//! partitions are already in memory, so the timing covers what the functions run per query
//! (coordinator planning, the fan-out to in-process workers, their scans and the merges), and
//! no I/O. Recall is scored by distance ([`squash_core::eval`]).

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Deserialize;

use squash_core::error::{Error, Result};
use squash_core::eval::{ground_truth_distance, recall_at_k};
use squash_core::input::VectorSet;
use squash_service::embedded::EmbeddedIndex;

use crate::input_files;
use squash_core::metric::Metric;
use squash_core::protocol::{QueryRequest, QueryResponse, ScanStats, SearchOptions};

/// The parts of a `workloads.json` file that squash reads (other keys are ignored).
#[derive(Debug, Clone, Deserialize)]
pub struct WorkloadsFile {
    /// Metric of the ground truth: `ip`/`angular`/`cosine` (inner products) or `l2`/`euclidean`.
    pub metric: String,
    /// Base vector file, relative to the file's folder (needed to build an index).
    #[serde(default)]
    pub base_file: Option<String>,
    /// Query vector file, relative to the file's folder.
    pub queries_file: String,
    /// The workloads, in file order.
    pub workloads: Vec<Workload>,
}

/// One workload: a query per row, each with an optional filter and exact ground truth.
#[derive(Debug, Clone, Deserialize)]
pub struct Workload {
    /// Name, e.g. `freq_10`.
    pub name: String,
    /// Row of the query file for each query.
    pub query_ids: Vec<usize>,
    /// Filter of each query in the query API's syntax (`null`: none).
    pub filters: Vec<Option<serde_json::Value>>,
    /// Ground-truth distances (row i belongs to query i), relative to the file's folder.
    pub gt_dist_fvecs: String,
    /// Base vectors passing each query's filter.
    pub match_counts: Vec<usize>,
}

/// A parsed `workloads.json` with its query vectors.
#[derive(Debug, Clone)]
pub struct WorkloadSuite {
    /// Folder holding the file; the file's relative paths start here.
    pub folder: PathBuf,
    /// The parsed file.
    pub file: WorkloadsFile,
    /// All query vectors of `file.queries_file`.
    pub queries: VectorSet,
    /// Whether the ground truth holds inner products (else squared L2 distances).
    pub ground_truth_is_ip: bool,
}

impl WorkloadSuite {
    /// Reads `path` (a `workloads.json`) and its query file.
    pub fn open(path: &Path) -> Result<WorkloadSuite> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let file: WorkloadsFile = serde_json::from_slice(&bytes)
            .map_err(|e| Error::invalid(path.display().to_string(), format!("not valid: {e}")))?;
        let ground_truth_is_ip = match file.metric.as_str() {
            "ip" | "angular" | "cosine" => true,
            "l2" | "euclidean" => false,
            other => {
                return Err(Error::invalid(
                    format!("{}: metric", path.display()),
                    format!("unknown metric '{other}'"),
                ))
            }
        };
        let folder = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        let queries = input_files::read_vectors(&folder.join(&file.queries_file))?;
        Ok(WorkloadSuite {
            folder,
            file,
            queries,
            ground_truth_is_ip,
        })
    }

    /// Returns the metric an index over this data set is built with: cosine for inner-product
    /// ground truth (the data sets' vectors are unit norm, so the rankings agree), else l2.
    pub fn index_metric(&self) -> Metric {
        if self.ground_truth_is_ip {
            Metric::Cosine
        } else {
            Metric::L2
        }
    }

    /// Returns the path of the base vector file, or an error when the file names none.
    pub fn base_path(&self) -> Result<PathBuf> {
        match &self.file.base_file {
            Some(base) => Ok(self.folder.join(base)),
            None => Err(Error::invalid(
                self.folder.join("workloads.json").display().to_string(),
                "no base_file",
            )),
        }
    }

    /// Loads `workload` for recall@`k`: its first `max_queries` queries (all when `None`),
    /// their filters, match counts and ground truth.
    pub fn load(
        &self,
        workload: &Workload,
        k: usize,
        max_queries: Option<usize>,
    ) -> Result<LoadedWorkload> {
        if k == 0 {
            return Err(Error::invalid("k", "must be at least 1"));
        }
        let ground_truth = input_files::read_distances(&self.folder.join(&workload.gt_dist_fvecs))?;
        if ground_truth.dim < k {
            return Err(Error::invalid(
                "k",
                format!(
                    "workload {} has ground truth for k <= {}",
                    workload.name, ground_truth.dim
                ),
            ));
        }
        let count = workload
            .query_ids
            .len()
            .min(max_queries.unwrap_or(usize::MAX));
        if ground_truth.num_vectors < count {
            return Err(Error::invalid(
                workload.gt_dist_fvecs.clone(),
                format!(
                    "{} rows of ground truth for {count} queries",
                    ground_truth.num_vectors
                ),
            ));
        }
        let mut vectors = Vec::with_capacity(count);
        for (position, &query_id) in workload.query_ids[..count].iter().enumerate() {
            if query_id >= self.queries.num_vectors {
                return Err(Error::invalid(
                    format!("workload {} query_ids[{position}]", workload.name),
                    format!("{query_id} is not a row of {}", self.file.queries_file),
                ));
            }
            vectors.push(self.queries.row(query_id).to_vec());
        }
        Ok(LoadedWorkload {
            name: workload.name.clone(),
            k,
            vectors,
            filters: (0..count)
                .map(|position| workload.filters.get(position).cloned().flatten())
                .collect(),
            match_counts: (0..count)
                .map(|position| {
                    workload
                        .match_counts
                        .get(position)
                        .copied()
                        .unwrap_or(usize::MAX)
                })
                .collect(),
            ground_truth,
            ground_truth_is_ip: self.ground_truth_is_ip,
        })
    }
}

/// A workload ready to run: queries cut to the budget, ground truth in memory.
#[derive(Debug, Clone)]
pub struct LoadedWorkload {
    /// Workload name.
    pub name: String,
    /// Hits per query (recall@k).
    pub k: usize,
    vectors: Vec<Vec<f32>>,
    filters: Vec<Option<serde_json::Value>>,
    match_counts: Vec<usize>,
    ground_truth: VectorSet,
    ground_truth_is_ip: bool,
}

/// What one run of a workload measured.
#[derive(Debug, Clone, Default)]
pub struct WorkloadRun {
    /// Queries run.
    pub num_queries: usize,
    /// Wall time of the timed loop.
    pub seconds: f64,
    /// Mean recall@k, scored by distance.
    pub recall: f64,
    /// Queries answered with fewer than min(k, matches) hits.
    pub short_answers: usize,
    /// Scan counters summed over the queries.
    pub scan: ScanStats,
    /// Partitions probed, summed over the queries.
    pub partitions_probed: usize,
}

impl WorkloadRun {
    /// Returns queries per second of the timed loop.
    pub fn qps(&self) -> f64 {
        self.num_queries as f64 / self.seconds.max(1e-9)
    }
}

impl LoadedWorkload {
    /// Returns query `position`'s vector and filter.
    pub fn query(&self, position: usize) -> (&[f32], Option<&serde_json::Value>) {
        (&self.vectors[position], self.filters[position].as_ref())
    }

    /// Returns the workload scored against other ground truth: per query, its `k` nearest
    /// matching distances (under the index metric, best first, fewer when fewer match) and its
    /// number of matches. For an index whose rows changed after the shipped truth was made.
    pub fn with_truth(&self, nearest: &[Vec<f32>], match_counts: Vec<usize>) -> LoadedWorkload {
        let mut data = Vec::with_capacity(nearest.len() * self.k);
        for distances in nearest {
            let last = distances.last().copied().unwrap_or(f32::INFINITY);
            data.extend((0..self.k).map(|i| distances.get(i).copied().unwrap_or(last)));
        }
        LoadedWorkload {
            ground_truth: VectorSet {
                num_vectors: nearest.len(),
                dim: self.k,
                data,
            },
            ground_truth_is_ip: false,
            match_counts,
            ..self.clone()
        }
    }

    /// Returns the number of queries.
    pub fn num_queries(&self) -> usize {
        self.vectors.len()
    }

    /// Runs every query one after the other with `options` through `index`, from inside
    /// `scan_thread` (a one-thread rayon pool, [`single_thread_pool`]) on a current-thread
    /// runtime, and scores the answers. Open the index with `EmbeddedConfig::for_timed_runs`
    /// and load its partitions first: the scans then run inline on that one thread, so the
    /// figures are single-thread ones of the served code path with no I/O and no hand-offs.
    ///
    /// Blocks the calling thread for the whole run.
    pub fn run(
        &self,
        index: &EmbeddedIndex,
        options: &SearchOptions,
        scan_thread: &rayon::ThreadPool,
    ) -> Result<WorkloadRun> {
        let requests: Vec<QueryRequest> = self
            .vectors
            .iter()
            .zip(&self.filters)
            .map(|(vector, filter)| QueryRequest {
                require_complete: true,
                branching: None,
                min_token: None,
                as_of: None,
                vector: vector.clone(),
                k: self.k,
                filter: filter.clone(),
                include_attributes: false,
                options: options.clone(),
            })
            .collect();
        let (responses, seconds) =
            scan_thread.install(|| -> Result<(Vec<QueryResponse>, f64)> {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_time()
                    .build()
                    .map_err(|e| Error::internal(format!("starting the query runtime: {e}")))?;
                runtime.block_on(async move {
                    let started = Instant::now();
                    let mut responses: Vec<QueryResponse> = Vec::with_capacity(requests.len());
                    for request in requests {
                        responses.push(index.query(request).await?);
                    }
                    Ok((responses, started.elapsed().as_secs_f64()))
                })
            })?;
        let index_metric = index.manifest().metric;
        let mut run = WorkloadRun {
            num_queries: responses.len(),
            seconds,
            ..WorkloadRun::default()
        };
        let mut recall_sum = 0.0;
        for (position, response) in responses.iter().enumerate() {
            let kth = self.ground_truth.row(position)[self.k - 1];
            let kth = ground_truth_distance(index_metric, self.ground_truth_is_ip, kth);
            let matches = self.match_counts[position];
            recall_sum += recall_at_k(&response.hits, self.k, kth, matches);
            if response.hits.len() < self.k.min(matches) {
                run.short_answers += 1;
            }
            run.scan.add(&response.stats.scan);
            run.partitions_probed += response.stats.partitions_probed;
        }
        run.recall = recall_sum / run.num_queries.max(1) as f64;
        Ok(run)
    }
}

/// Returns a rayon pool of one thread, for single-thread figures (see [`LoadedWorkload::run`]).
pub fn single_thread_pool() -> Result<rayon::ThreadPool> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .map_err(|e| Error::internal(format!("starting the scan thread: {e}")))
}
