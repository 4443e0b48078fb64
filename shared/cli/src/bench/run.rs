//! The `squash bench` driver (I/O): finds the data sets, builds an index of each at default
//! parameters, runs every workload at each setting of the sweep on one thread with the
//! partitions in memory, merges the points of other engines, and writes `results.json`,
//! `tables.md` and the plots.
//!
//! Timing is that of `squash eval` ([`crate::workloads`]): queries one after the other through
//! the embedded coordinator and worker services, scans on one thread, no I/O.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use super::{
    dataset_workloads, format_utc, merge_points, parse_points_file, plot, plot_file_name,
    render_tables, sweep_settings, workload_series, BenchPoint, PointsFile, SQUASH_ENGINE,
};
use crate::input_files;
use crate::workloads::{single_thread_pool, WorkloadSuite};
use squash_core::error::{Error, Result};
use squash_core::index::{BuildParams, BuildProgress};
use squash_service::embedded::{EmbeddedConfig, EmbeddedIndex};
use squash_service::write_index;
use squash_storage::{BlobStore, LocalStore};

/// Queries per workload at most in a full run. With 1,000 the sweep of both real data sets
/// took 549 s of CPU on the build machine (2026-11-29), nearly all of a ten-minute budget that
/// other engines' measurements share; 500 halves that and still gives recall@10 to about
/// +-0.01. `--max-queries 1000` restores the larger sample.
pub const FULL_MAX_QUERIES: usize = 500;
/// Queries per workload at most in a quick run.
pub const QUICK_MAX_QUERIES: usize = 100;
/// Hits per query: the points report recall@10.
const K: usize = 10;
/// The sample data set a quick run uses by default, relative to the repository root.
pub const SAMPLE_DATA_DIR: &str = "tests/data/glove-20k";

/// What `squash bench` was asked to do.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// A folder of data set folders, or one data set folder (each holds a workloads.json).
    pub data_dir: PathBuf,
    /// Output folder: results.json, tables.md, indexes/, plots/.
    pub out_dir: PathBuf,
    /// Points of other engines to merge (a `squash-bench-points/1` file).
    pub peers_path_opt: Option<PathBuf>,
    /// Quick run: [`QUICK_MAX_QUERIES`] queries and the two end settings of the sweep.
    pub quick: bool,
    /// Whether to draw plots/<dataset>__<workload>.png.
    pub plot: bool,
    /// Queries per workload at most, overriding the mode's budget.
    pub max_queries_opt: Option<usize>,
}

/// What one data set's build cost.
#[derive(Debug, Clone)]
pub struct DatasetSummary {
    /// Data set name (its folder's name).
    pub name: String,
    /// Vectors indexed.
    pub num_vectors: usize,
    /// Partitions of the index.
    pub num_partitions: usize,
    /// Wall time of reading the files and building the index.
    pub build_seconds: f64,
    /// Bytes of all objects of the index.
    pub index_bytes: u64,
}

/// What a run produced.
#[derive(Debug, Clone)]
pub struct BenchOutcome {
    /// All points (squash's and the peers'), as written to results.json.
    pub results: PointsFile,
    /// One entry per data set squash was run on.
    pub datasets: Vec<DatasetSummary>,
    /// Files written.
    pub files: Vec<PathBuf>,
    /// Wall time of the whole run.
    pub seconds: f64,
}

/// Returns the repository's sample data set when it can be found from the current folder or
/// from where this crate was built.
pub fn default_quick_data_dir() -> Option<PathBuf> {
    [
        PathBuf::from(SAMPLE_DATA_DIR),
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../..")
            .join(SAMPLE_DATA_DIR),
    ]
    .into_iter()
    .find(|candidate| candidate.join("workloads.json").is_file())
}

/// Reads and checks a points file.
pub fn read_points_file(path: &Path) -> Result<PointsFile> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    parse_points_file(&path.display().to_string(), &bytes)
}

/// Returns the data set folders of `data_dir`: itself when it holds a workloads.json, else
/// its sub-folders that do, by name.
pub fn find_datasets(data_dir: &Path) -> Result<Vec<PathBuf>> {
    let field = || data_dir.display().to_string();
    if !data_dir.is_dir() {
        return Err(Error::invalid(field(), "no such folder"));
    }
    if data_dir.join("workloads.json").is_file() {
        return Ok(vec![data_dir.to_path_buf()]);
    }
    let mut folders = Vec::new();
    for entry in std::fs::read_dir(data_dir).map_err(|e| Error::io(data_dir, e))? {
        let path = entry.map_err(|e| Error::io(data_dir, e))?.path();
        if path.join("workloads.json").is_file() {
            folders.push(path);
        }
    }
    folders.sort();
    if folders.is_empty() {
        return Err(Error::invalid(
            field(),
            "holds no data set (no workloads.json in it or in its sub-folders)",
        ));
    }
    Ok(folders)
}

fn dataset_name(folder: &Path) -> String {
    let canonical = folder
        .canonicalize()
        .unwrap_or_else(|_| folder.to_path_buf());
    canonical
        .file_name()
        .map(|name| name.to_string_lossy().to_string())
        .unwrap_or_else(|| "dataset".to_string())
}

/// Returns the machine in a line: CPU model, logical CPUs, OS and architecture.
pub fn machine_description() -> String {
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|line| line.starts_with("model name"))
                .and_then(|line| line.split(':').nth(1))
                .map(|model| model.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".to_string());
    let cpus = std::thread::available_parallelism().map_or(0, usize::from);
    format!(
        "{model}, {cpus} logical CPUs, {} {}",
        std::env::consts::OS,
        std::env::consts::ARCH
    )
}

fn folder_bytes(folder: &Path) -> Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(folder).map_err(|e| Error::io(folder, e))? {
        let entry = entry.map_err(|e| Error::io(folder, e))?;
        let metadata = entry.metadata().map_err(|e| Error::io(entry.path(), e))?;
        total += if metadata.is_dir() {
            folder_bytes(&entry.path())?
        } else {
            metadata.len()
        };
    }
    Ok(total)
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes).map_err(|e| Error::io(path, e))
}

/// Runs the benchmark. `progress` shows the build phases and one phase per data set sweep
/// (a unit per workload and setting).
pub async fn run_bench(
    config: &BenchConfig,
    progress: Arc<dyn BuildProgress + Send>,
) -> Result<BenchOutcome> {
    let started = Instant::now();
    // Bad peers or data folders fail before minutes of building and searching.
    let peers_opt = match &config.peers_path_opt {
        Some(path) => Some(read_points_file(path)?),
        None => None,
    };
    let folders = find_datasets(&config.data_dir)?;
    let suites = folders
        .iter()
        .map(|folder| WorkloadSuite::open(&folder.join("workloads.json")))
        .collect::<Result<Vec<_>>>()?;
    std::fs::create_dir_all(&config.out_dir).map_err(|e| Error::io(&config.out_dir, e))?;
    let settings = sweep_settings(config.quick);
    let max_queries = config.max_queries_opt.unwrap_or(if config.quick {
        QUICK_MAX_QUERIES
    } else {
        FULL_MAX_QUERIES
    });
    let scan_thread = single_thread_pool()?;
    let mut points = Vec::new();
    let mut datasets = Vec::new();
    for (folder, suite) in folders.iter().zip(&suites) {
        let name = dataset_name(folder);
        let index_folder = config.out_dir.join("indexes").join(&name);
        if index_folder.exists() {
            std::fs::remove_dir_all(&index_folder).map_err(|e| Error::io(&index_folder, e))?;
        }
        let build_started = Instant::now();
        let attributes = folder.join("base_attrs.csv");
        let build_input = input_files::read_build_input(
            &suite.base_path()?,
            attributes.is_file().then_some(attributes.as_path()),
            &[],
        )?;
        let num_vectors = build_input.ids.len();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let mut params = BuildParams::new(suite.index_metric(), format!("{:x}", now.as_nanos()));
        params.created_unix_s = now.as_secs();
        let store: Arc<dyn BlobStore> = Arc::new(LocalStore::new(&index_folder));
        let summary = write_index(
            Arc::clone(&store),
            build_input,
            params,
            Arc::clone(&progress),
        )
        .await?;
        let build_seconds = build_started.elapsed().as_secs_f64();
        let index_bytes = folder_bytes(&index_folder)?;
        datasets.push(DatasetSummary {
            name: name.clone(),
            num_vectors,
            num_partitions: summary.manifest.partitions.len(),
            build_seconds,
            index_bytes,
        });
        let index = EmbeddedIndex::open_store(store, EmbeddedConfig::for_timed_runs()).await?;
        index.load_all().await?;
        progress.start_phase(
            &format!("{name}: sweeping workloads"),
            (suite.file.workloads.len() * settings.len()) as u64,
        );
        for workload in &suite.file.workloads {
            let loaded = suite.load(workload, K, Some(max_queries))?;
            for setting in &settings {
                let run = loaded.run(&index, &setting.options, &scan_thread)?;
                points.push(BenchPoint {
                    engine: SQUASH_ENGINE.to_string(),
                    dataset: name.clone(),
                    workload: workload.name.clone(),
                    setting: setting.label.clone(),
                    recall_at_10: run.recall,
                    qps: run.qps(),
                    threads: 1,
                    num_queries: run.num_queries as u64,
                    build_seconds: Some(build_seconds),
                    index_bytes: Some(index_bytes),
                    extra: serde_json::Map::new(),
                });
                progress.advance(1);
            }
        }
        progress.finish_phase();
    }
    let mut notes = Vec::new();
    let peer_points = match peers_opt {
        Some(peers) => {
            notes.push(format!(
                "Other engines' points: measured on {}, {} ({}).",
                or_unknown(&peers.machine),
                or_unknown(&peers.date),
                config
                    .peers_path_opt
                    .as_deref()
                    .map(|path| path.display().to_string())
                    .unwrap_or_default()
            ));
            peers.points
        }
        None => Vec::new(),
    };
    let now_s = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let results = PointsFile::new(
        format_utc(now_s),
        machine_description(),
        merge_points(points, peer_points),
    );
    let mut files = Vec::new();
    let results_path = config.out_dir.join("results.json");
    write_file(&results_path, results.to_json()?.as_bytes())?;
    files.push(results_path);
    let tables_path = config.out_dir.join("tables.md");
    write_file(&tables_path, render_tables(&results, &notes).as_bytes())?;
    files.push(tables_path);
    if config.plot {
        let plots = config.out_dir.join("plots");
        std::fs::create_dir_all(&plots).map_err(|e| Error::io(&plots, e))?;
        for (dataset, workload) in dataset_workloads(&results.points) {
            let series = workload_series(&results.points, dataset, workload);
            let png = plot::plot_png(&format!("{dataset}: {workload}"), &series)?;
            let path = plots.join(plot_file_name(dataset, workload));
            write_file(&path, &png)?;
            files.push(path);
        }
    }
    Ok(BenchOutcome {
        results,
        datasets,
        files,
        seconds: started.elapsed().as_secs_f64(),
    })
}

fn or_unknown(text: &str) -> &str {
    if text.trim().is_empty() {
        "unknown machine or date"
    } else {
        text
    }
}
