//! `squash`: build an index from vector and attribute files, query it, evaluate recall
//! against ground truth, benchmark it and inspect it, all embedded (no server, no cloud).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use squash_cli::bench::run::{default_quick_data_dir, run_bench, BenchConfig, SAMPLE_DATA_DIR};
use squash_cli::bench::{format_bytes, summary_lines, SQUASH_ENGINE};
use squash_cli::input_files;
use squash_cli::workloads::{single_thread_pool, WorkloadSuite};
use squash_cli::writes::{CompactArgs, DeleteArgs, FetchArgs, UpsertArgs};
use squash_core::attributes::AttributeSchema;
use squash_core::error::{Error, Result};
use squash_core::index::{BuildParams, BuildProgress, PartitionData};
use squash_core::metric::Metric;
use squash_core::protocol::{QueryRequest, QueryResponse, SearchOptions};
use squash_service::embedded::{EmbeddedConfig, EmbeddedIndex};
use squash_service::write_index;
use squash_storage::{split_index_location, store_for_location};

#[derive(Parser)]
#[command(
    name = "squash",
    version,
    about = "Quantization-based, attribute-filtered vector search (embedded mode)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build an index from vectors (.fvecs, .bvecs, .npy) and an attribute CSV into a folder.
    ///
    /// Example: squash build --vectors base.fvecs --attributes base_attrs.csv --metric cosine --out ./idx
    Build(BuildArgs),
    /// Answer one query, taking the query vector from a row of a vector file.
    ///
    /// Example: squash query --index ./idx --vector-file queries.fvecs --row 0 --k 10 --filter '{"label": {"$eq": 3}}'
    Query(QueryArgs),
    /// Run the workloads of a workloads.json file and report recall@k, candidates and QPS per workload.
    ///
    /// Example: squash eval --index ./idx --workloads ../shared/data/glove-6b-50-angular/workloads.json
    Eval(EvalArgs),
    /// Benchmark: build every data set, sweep search settings per workload (recall@10, QPS on
    /// one thread), merge other engines' points, write results.json, tables.md and plots.
    ///
    /// Example: squash bench --data-dir ../shared/data --peers out/peers.json --out out --plot
    Bench(BenchArgs),
    /// Show an index: manifest, partitions, bit allocation, bytes per vector.
    ///
    /// Example: squash inspect --index ./idx
    Inspect(InspectArgs),
    /// Generate a synthetic data set (clustered vectors, year/price/category attributes, four
    /// filtered workloads, exact ground truth) in the layout of ../shared/data.
    ///
    /// Example: squash synth --num-vectors 1000000 --dim 128 --out ./synth-1m
    Synth(SynthArgs),
    /// Measure a workload's queries on the serverless code path in process (coordinator and
    /// workers as the Lambda functions run them): invocations, billed ms, S3 GETs and bytes,
    /// latency, and dollars per 1M queries, cold and warm, single queries and batches.
    ///
    /// Example: squash cost --index ./idx --workloads ./synth-1m/workloads.json --max-queries 200
    Cost(CostArgs),
    /// Insert or replace rows of a built index from a vector file and an attribute CSV (with an
    /// `id` column, or --first-id); each write is committed to the index's log and searchable
    /// at once.
    ///
    /// Example: squash upsert --index ./idx --vectors new.fvecs --attributes new_attrs.csv
    Upsert(UpsertArgs),
    /// Delete rows by ids or by filter.
    ///
    /// Example: squash delete --index ./idx --ids 17,42 --filter '{"year": {"$lt": 2000}}'
    Delete(DeleteArgs),
    /// Print rows (vector and attributes) by id, as JSON.
    ///
    /// Example: squash fetch --index ./idx --ids 17,42
    Fetch(FetchArgs),
    /// Fold the writes made since the last build or compaction into a new version of the
    /// partitions (queries then scan no unfolded rows).
    ///
    /// Example: squash compact --index ./idx
    Compact(CompactArgs),
    /// Recall and QPS after writes (new, overwritten and deleted rows) against ground truth
    /// recomputed on the new state, before and after compaction.
    ///
    /// Example: squash write-eval --workloads ../shared/data/glove-6b-50-angular/workloads.json --out /tmp/we
    WriteEval(squash_cli::write_eval::WriteEvalArgs),
}

#[derive(Args)]
struct BuildArgs {
    /// Vector file: .fvecs, .bvecs (uint8) or .npy (2-d float32).
    #[arg(long)]
    vectors: PathBuf,
    /// Attribute CSV with a header, one row per vector; an `id` column holds external ids.
    #[arg(long)]
    attributes: Option<PathBuf>,
    /// Declared column kinds, overriding detection: "year:int,price:float,genre:string".
    #[arg(long)]
    schema: Option<String>,
    /// Distance metric: l2, cosine or ip.
    #[arg(long, default_value = "l2")]
    metric: String,
    /// Index location to create or replace: a folder or s3://bucket/prefix.
    #[arg(long)]
    out: String,
    /// Number of partitions (default: one per 50,000 vectors, rounded up).
    #[arg(long)]
    partitions: Option<usize>,
    /// Average bits per dimension of the quantized codes (0 < B <= 8).
    #[arg(long, default_value_t = 4.0)]
    bits_per_dim: f32,
    /// Bits per attribute of the coordinator's quantized attributes (1..=8).
    #[arg(long, default_value_t = 8)]
    attribute_bits: u32,
    /// Rows per fine cluster inside a partition (the unit a query probes).
    #[arg(long, default_value_t = squash_core::index::clusters::DEFAULT_CLUSTER_ROWS)]
    cluster_rows: usize,
    /// Seed for every random choice (same inputs + seed = same index contents).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// How long a version stays readable (time travel, readers in flight) after a build or
    /// compaction replaced it, in seconds. Default: the index's current setting, else a day.
    #[arg(long)]
    retain_versions_s: Option<u64>,
}

#[derive(Args, Clone)]
struct KnobArgs {
    /// Exact search: the true top-k (all partitions with matches, lower-bound ordered scan).
    #[arg(long)]
    exact: bool,
    /// Probe fine clusters whose centroid is within this factor of the nearest one's distance.
    #[arg(long)]
    centroid_factor: Option<f32>,
    /// Probe the nearest fine clusters until they hold this many rows that may match
    /// (default k x rerank factor x 10).
    #[arg(long)]
    probe_rows: Option<usize>,
    /// Probe at least this many partitions.
    #[arg(long)]
    min_partitions: Option<usize>,
    /// Probe at most this many partitions (never fewer than needed to cover k matches).
    #[arg(long)]
    max_partitions: Option<usize>,
    /// Re-rank k x R candidates per partition with full-precision vectors.
    #[arg(long)]
    rerank_factor: Option<usize>,
    /// Share of filter-passing candidates kept by the Hamming pre-filter (0 < x <= 1).
    #[arg(long)]
    hamming_keep: Option<f32>,
}

impl KnobArgs {
    fn options(&self) -> SearchOptions {
        SearchOptions {
            exact: self.exact,
            centroid_factor: self.centroid_factor,
            probe_rows: self.probe_rows,
            min_partitions: self.min_partitions,
            max_partitions: self.max_partitions,
            rerank_factor: self.rerank_factor,
            hamming_keep: self.hamming_keep,
        }
    }
}

#[derive(Args)]
struct QueryArgs {
    /// Index location: a folder or s3://bucket/prefix.
    #[arg(long)]
    index: String,
    /// File holding the query vector (.fvecs, .bvecs or .npy).
    #[arg(long)]
    vector_file: PathBuf,
    /// Row of the vector file to use (0-based).
    #[arg(long, default_value_t = 0)]
    row: usize,
    /// Number of hits.
    #[arg(long, default_value_t = 10)]
    k: usize,
    /// Filter, Mongo-style JSON: '{"year": {"$gte": 2020}, "category": {"$in": ["a", "b"]}}'.
    #[arg(long)]
    filter: Option<String>,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    knobs: KnobArgs,
}

#[derive(Args)]
struct EvalArgs {
    /// Index location: a folder or s3://bucket/prefix.
    #[arg(long)]
    index: String,
    /// workloads.json (queries, filters and ground-truth files, relative to its folder).
    #[arg(long)]
    workloads: PathBuf,
    /// Hits per query (recall@k).
    #[arg(long, default_value_t = 10)]
    k: usize,
    /// Run only these workloads (comma-separated names).
    #[arg(long)]
    only: Option<String>,
    /// Use at most this many queries per workload.
    #[arg(long)]
    max_queries: Option<usize>,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    knobs: KnobArgs,
}

#[derive(Args)]
struct BenchArgs {
    /// A folder of data set folders, or one data set folder (each with a workloads.json naming
    /// base_file, queries_file and ground truth; base_attrs.csv beside it). Default with
    /// --quick: the repository's tests/data/glove-20k.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Quick run: at most 100 queries per workload and the two end settings of the sweep.
    #[arg(long)]
    quick: bool,
    /// Other engines' points (a squash-bench-points/1 JSON file) to merge into the results.
    #[arg(long)]
    peers: Option<PathBuf>,
    /// Output folder: results.json, tables.md, indexes/<dataset>, plots/.
    #[arg(long)]
    out: PathBuf,
    /// Also draw plots/<dataset>__<workload>.png (recall@10 vs QPS, one line per engine).
    #[arg(long)]
    plot: bool,
    /// Queries per workload at most (default: 500, or 100 with --quick); the first ones of
    /// each workload, so other engines can run the same queries.
    #[arg(long)]
    max_queries: Option<usize>,
}

#[derive(Args)]
struct InspectArgs {
    /// Index location: a folder or s3://bucket/prefix.
    #[arg(long)]
    index: String,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct SynthArgs {
    /// Base vectors.
    #[arg(long)]
    num_vectors: usize,
    /// Dimension.
    #[arg(long)]
    dim: usize,
    /// Mixture components (at most the number of vectors).
    #[arg(long, default_value_t = 100)]
    clusters: usize,
    /// Query vectors (each workload runs all of them with its own filters).
    #[arg(long, default_value_t = 1000)]
    num_queries: usize,
    /// Seed of every random choice (same arguments = same files).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Folder to write (created if missing; files in it replaced).
    #[arg(long)]
    out: PathBuf,
}

#[derive(Args)]
struct CostArgs {
    /// Index location: a folder or s3://bucket/prefix.
    #[arg(long)]
    index: String,
    /// workloads.json (queries and filters, relative to its folder).
    #[arg(long)]
    workloads: PathBuf,
    /// Run only these workloads (comma-separated names); queries of several are interleaved.
    #[arg(long)]
    only: Option<String>,
    /// Use at most this many queries per workload.
    #[arg(long)]
    max_queries: Option<usize>,
    /// Hits per query.
    #[arg(long, default_value_t = 10)]
    k: usize,
    /// Worker slots (deployed worker functions).
    #[arg(long, default_value_t = 4)]
    slots: usize,
    /// Memory of each worker function in MB, 128..=10240 (the template's `WorkerMemorySize`):
    /// half of it caches partitions, and compute is priced by it.
    #[arg(long, default_value_t = squash_cli::cost::TEMPLATE_MEMORY.worker_mb)]
    worker_memory_mb: u32,
    /// Children per node of the invocation tree (2..=64).
    #[arg(long, default_value_t = 2)]
    branching: usize,
    /// Queries per batch request.
    #[arg(long, default_value_t = 100)]
    batch_size: usize,
    /// Cold single queries, each on fresh (cold) services.
    #[arg(long, default_value_t = 5)]
    cold_queries: usize,
    /// Run each worker invocation alone under a flat tree, so its billed time is its own (as
    /// on Lambda, where each invocation has its own vCPU) rather than time spent sharing this
    /// machine's cores; the coordinator is billed planning plus the slowest invocation.
    #[arg(long)]
    invocations_alone: bool,
    /// Instead of the usual phases, measure batch time, invocations and cost against these
    /// batch sizes (comma-separated, e.g. 10,100,1000,10000), each worker invocation in a
    /// container of its own as on Lambda, large batches split over concurrent invocations.
    #[arg(long, value_delimiter = ',')]
    batch_sizes: Vec<usize>,
    /// Time budget of a request in milliseconds (with --batch-sizes).
    #[arg(long, default_value_t = squash_core::protocol::DEFAULT_TIMEOUT_MS)]
    timeout_ms: u64,
    /// Estimated milliseconds one worker invocation is aimed at (with --batch-sizes; default
    /// a quarter of the budget).
    #[arg(long)]
    target_invocation_ms: Option<u64>,
    /// Most worker invocations of one request (with --batch-sizes).
    #[arg(long, default_value_t = squash_service::batch_split::DEFAULT_MAX_INVOCATIONS)]
    max_invocations: usize,
    /// Print one JSON object instead of tables.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    knobs: KnobArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        match cli.command {
            Command::Build(args) => run_build(args).await,
            Command::Query(args) => run_query(args).await,
            Command::Eval(args) => run_eval(args).await,
            Command::Bench(args) => run_bench_command(args).await,
            Command::Inspect(args) => run_inspect(args).await,
            Command::Synth(args) => run_synth(args),
            Command::Cost(args) => run_cost(args).await,
            Command::WriteEval(args) => squash_cli::write_eval::run_write_eval(args).await,
            Command::Upsert(args) => squash_cli::writes::run_upsert(args).await,
            Command::Delete(args) => squash_cli::writes::run_delete(args).await,
            Command::Fetch(args) => squash_cli::writes::run_fetch(args).await,
            Command::Compact(args) => {
                let progress = Arc::new(BarProgress {
                    bar: Mutex::new(None),
                });
                squash_cli::writes::run_compact(args, progress).await
            }
        }
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Progress bars on stderr, one per build phase.
struct BarProgress {
    bar: Mutex<Option<ProgressBar>>,
}

impl BuildProgress for BarProgress {
    fn start_phase(&self, name: &str, total: u64) {
        let bar = ProgressBar::new(total);
        if let Ok(style) =
            ProgressStyle::with_template("{msg:<45} [{bar:30}] {pos}/{len} {elapsed}")
        {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message(name.to_string());
        if let Ok(mut slot) = self.bar.lock() {
            *slot = Some(bar);
        }
    }

    fn advance(&self, delta: u64) {
        if let Ok(slot) = self.bar.lock() {
            if let Some(bar) = slot.as_ref() {
                bar.inc(delta);
            }
        }
    }

    fn finish_phase(&self) {
        if let Ok(mut slot) = self.bar.lock() {
            if let Some(bar) = slot.take() {
                bar.finish();
            }
        }
    }
}

fn spinner(message: &str) -> ProgressBar {
    let bar = ProgressBar::new_spinner();
    bar.set_message(message.to_string());
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    bar
}

async fn run_build(args: BuildArgs) -> Result<()> {
    let started = Instant::now();
    let metric: Metric = args.metric.parse()?;
    // The last part of the location is the name the service and `squash query` address the
    // index by: refuse here a name they would refuse, instead of building an index that can
    // never be served.
    split_index_location(&args.out).map_err(|error| match error {
        Error::InvalidInput { reason, .. } => Error::invalid("out", reason),
        other => other,
    })?;
    let store = store_for_location(&args.out).await?;
    let declared = match &args.schema {
        Some(spec) => squash_core::input::parse_schema_spec(spec)?,
        None => Vec::new(),
    };
    if args.attributes.is_none() && !declared.is_empty() {
        return Err(Error::invalid("schema", "--schema needs --attributes"));
    }
    let reading = spinner("reading vectors and attributes");
    let input =
        input_files::read_build_input(&args.vectors, args.attributes.as_deref(), &declared)?;
    reading.finish_and_clear();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let mut params = BuildParams::new(metric, format!("{:x}", now.as_nanos()));
    params.num_partitions = args.partitions;
    params.bits_per_dim = args.bits_per_dim;
    params.attribute_bits = args.attribute_bits;
    params.cluster_rows = args.cluster_rows;
    params.seed = args.seed;
    params.created_unix_s = now.as_secs();
    params.retain_versions_s = args.retain_versions_s;
    let (num_vectors, dim) = (input.ids.len(), input.dim);
    let raw_bytes = (num_vectors * dim * 4) as f64;
    let progress = Arc::new(BarProgress {
        bar: Mutex::new(None),
    });
    let summary = write_index(Arc::clone(&store), input, params, progress).await?;
    let manifest = &summary.manifest;
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "built index {} at {}",
        manifest.index_version,
        store.describe()
    );
    println!("  vectors        {num_vectors} x {dim} ({metric})");
    println!("  attributes     {}", describe_schema(&manifest.schema));
    println!("  partitions     {}", manifest.partitions.len());
    let sizes: Vec<u64> = manifest.partitions.iter().map(|p| p.num_vectors).collect();
    println!(
        "  partition size min {} / max {}",
        sizes.iter().min().copied().unwrap_or(0),
        sizes.iter().max().copied().unwrap_or(0)
    );
    println!(
        "  index size     {:.1} MiB ({:.1} bytes/vector; raw float32 vectors are {:.0} bytes/vector)",
        manifest.total_bytes as f64 / (1 << 20) as f64,
        manifest.total_bytes as f64 / num_vectors as f64,
        raw_bytes / num_vectors as f64
    );
    for (phase, phase_seconds) in &summary.phase_seconds {
        println!("  {phase:<28} {phase_seconds:.1} s");
    }
    println!("  build time     {seconds:.1} s");
    Ok(())
}

fn describe_schema(schema: &AttributeSchema) -> String {
    if schema.columns.is_empty() {
        return "none".to_string();
    }
    schema
        .columns
        .iter()
        .map(|column| match column.kind {
            squash_core::attributes::AttributeKind::Categorical => {
                format!(
                    "{} (categorical, {} values)",
                    column.name,
                    column.dictionary.len()
                )
            }
            kind => format!(
                "{} ({})",
                column.name,
                serde_json::to_string(&kind)
                    .unwrap_or_default()
                    .trim_matches('"')
            ),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn parse_filter(text: &Option<String>) -> Result<Option<serde_json::Value>> {
    match text {
        None => Ok(None),
        Some(text) => serde_json::from_str(text)
            .map(Some)
            .map_err(|e| Error::invalid("filter", format!("not valid JSON: {e}"))),
    }
}

async fn run_query(args: QueryArgs) -> Result<()> {
    // Opening the index first reports a wrong --index before any problem with the query file.
    let index = EmbeddedIndex::open_location(&args.index, EmbeddedConfig::default()).await?;
    let vectors = input_files::read_vectors(&args.vector_file)?;
    if args.row >= vectors.num_vectors {
        return Err(Error::invalid(
            "row",
            format!(
                "{} has {} vectors, row {} does not exist",
                args.vector_file.display(),
                vectors.num_vectors,
                args.row
            ),
        ));
    }
    let request = QueryRequest {
        vector: vectors.data[args.row * vectors.dim..][..vectors.dim].to_vec(),
        k: args.k,
        filter: parse_filter(&args.filter)?,
        include_attributes: true,
        options: args.knobs.options(),
        require_complete: true,
        branching: None,
        min_token: None,
        as_of: None,
    };
    let started = Instant::now();
    let response = index.query(request).await?;
    let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
    if args.json {
        let mut value = serde_json::to_value(&response)
            .map_err(|e| Error::invalid("response", e.to_string()))?;
        value["stats"]["elapsed_ms"] = json!(elapsed_ms);
        println!("{value}");
        return Ok(());
    }
    print_hits(&response);
    let stats = &response.stats;
    println!(
        "{} hits in {elapsed_ms:.1} ms; partitions {}/{}, passed filter {}, after hamming {}, re-ranked {}",
        response.hits.len(),
        stats.partitions_probed,
        stats.partitions_total,
        stats.scan.passed_filter,
        stats.scan.after_hamming,
        stats.scan.reranked
    );
    Ok(())
}

fn print_hits(response: &QueryResponse) {
    println!(
        "{:>5}  {:>12}  {:>14}  attributes",
        "rank", "id", "distance"
    );
    for (rank, hit) in response.hits.iter().enumerate() {
        let attributes = hit
            .attributes
            .as_ref()
            .map(|map| serde_json::Value::Object(map.clone()).to_string())
            .unwrap_or_default();
        println!(
            "{:>5}  {:>12}  {:>14.6}  {attributes}",
            rank + 1,
            hit.id,
            hit.distance
        );
    }
}

async fn run_eval(args: EvalArgs) -> Result<()> {
    let index = EmbeddedIndex::open_location(&args.index, EmbeddedConfig::for_timed_runs()).await?;
    let suite = WorkloadSuite::open(&args.workloads)?;
    let index_metric = index.manifest().metric;
    if suite.ground_truth_is_ip == (index_metric == Metric::L2) {
        eprintln!(
            "warning: the workloads use metric '{}' but the index uses '{index_metric}'",
            suite.file.metric
        );
    }
    let loading = spinner("loading partitions");
    index.load_all().await?;
    loading.finish_and_clear();
    let only: Option<Vec<&str>> = args.only.as_deref().map(|list| list.split(',').collect());
    let options = args.knobs.options();
    let scan_thread = single_thread_pool()?;
    let mut reports = Vec::new();
    for workload in &suite.file.workloads {
        if only
            .as_ref()
            .is_some_and(|names| !names.contains(&workload.name.as_str()))
        {
            continue;
        }
        let loaded = suite.load(workload, args.k, args.max_queries)?;
        // Timed with the scans on one thread, partitions already in memory: the served path.
        let run = loaded.run(&index, &options, &scan_thread)?;
        let n = run.num_queries.max(1) as f64;
        reports.push(json!({
            "name": workload.name,
            "queries": run.num_queries,
            "k": args.k,
            "recall": run.recall,
            "qps": run.qps(),
            "mean_latency_ms": run.seconds * 1000.0 / n,
            "partitions_probed": run.partitions_probed as f64 / n,
            "passed_filter": run.scan.passed_filter as f64 / n,
            "after_hamming": run.scan.after_hamming as f64 / n,
            "reranked": run.scan.reranked as f64 / n,
            "short_answers": run.short_answers,
        }));
    }
    let manifest = index.manifest();
    if args.json {
        let report = json!({
            "index": args.index,
            "index_version": manifest.index_version,
            "metric": manifest.metric,
            "num_vectors": manifest.num_vectors,
            "partitions": manifest.partitions.len(),
            "exact": args.knobs.exact,
            "workloads": reports,
        });
        println!("{report}");
        return Ok(());
    }
    println!(
        "index {} ({} vectors, {} partitions, {}), k = {}{}",
        args.index,
        manifest.num_vectors,
        manifest.partitions.len(),
        manifest.metric,
        args.k,
        if args.knobs.exact { ", exact mode" } else { "" }
    );
    println!(
        "{:<20} {:>7} {:>8} {:>9} {:>10} {:>11} {:>12} {:>9} {:>6}",
        "workload",
        "queries",
        "recall",
        "qps(1t)",
        "partitions",
        "passed",
        "after_hamm",
        "reranked",
        "short"
    );
    for report in &reports {
        println!(
            "{:<20} {:>7} {:>8.4} {:>9.1} {:>10.2} {:>11.0} {:>12.0} {:>9.0} {:>6}",
            report["name"].as_str().unwrap_or(""),
            report["queries"],
            report["recall"].as_f64().unwrap_or(0.0),
            report["qps"].as_f64().unwrap_or(0.0),
            report["partitions_probed"].as_f64().unwrap_or(0.0),
            report["passed_filter"].as_f64().unwrap_or(0.0),
            report["after_hamming"].as_f64().unwrap_or(0.0),
            report["reranked"].as_f64().unwrap_or(0.0),
            report["short_answers"],
        );
    }
    Ok(())
}

async fn run_bench_command(args: BenchArgs) -> Result<()> {
    let data_dir = match (args.data_dir, args.quick) {
        (Some(folder), _) => folder,
        (None, true) => default_quick_data_dir().ok_or_else(|| {
            Error::invalid(
                "data-dir",
                format!("{SAMPLE_DATA_DIR} is not under the current folder: give --data-dir"),
            )
        })?,
        (None, false) => {
            return Err(Error::invalid(
                "data-dir",
                "needed (a folder of data sets), unless --quick",
            ))
        }
    };
    let config = BenchConfig {
        data_dir,
        out_dir: args.out,
        peers_path_opt: args.peers,
        quick: args.quick,
        plot: args.plot,
        max_queries_opt: args.max_queries,
    };
    let progress = Arc::new(BarProgress {
        bar: Mutex::new(None),
    });
    let outcome = run_bench(&config, progress).await?;
    let num_squash = outcome
        .results
        .points
        .iter()
        .filter(|point| point.engine == SQUASH_ENGINE)
        .count();
    println!(
        "squash bench: {} data set(s), {num_squash} squash points, {} points of other engines, {:.1} s",
        outcome.datasets.len(),
        outcome.results.points.len() - num_squash,
        outcome.seconds
    );
    for dataset in &outcome.datasets {
        println!(
            "{}: {} vectors in {} partition(s), built in {:.1} s, {}",
            dataset.name,
            dataset.num_vectors,
            dataset.num_partitions,
            dataset.build_seconds,
            format_bytes(dataset.index_bytes)
        );
        for line in summary_lines(&outcome.results, SQUASH_ENGINE, &dataset.name) {
            println!("  {line}");
        }
    }
    for file in &outcome.files {
        println!("wrote {}", file.display());
    }
    Ok(())
}

async fn run_inspect(args: InspectArgs) -> Result<()> {
    let index = EmbeddedIndex::open_location(&args.index, EmbeddedConfig::default()).await?;
    let manifest = index.manifest().clone();
    let mut partitions = Vec::new();
    for entry in &manifest.partitions {
        let data: Arc<PartitionData> = index.partition(entry.id).await?;
        // Whole partitions loaded from storage always carry their quantized codes.
        let codes = data.quantized.as_ref().ok_or_else(|| {
            Error::internal(format!("partition {} has no quantized codes", entry.id))
        })?;
        let bits = &codes.osq.bits;
        let coded = bits.iter().filter(|&&b| b > 0).count();
        let max_bits = bits.iter().copied().max().unwrap_or(0);
        partitions.push(json!({
            "id": entry.id,
            "key": entry.key,
            "vectors": entry.num_vectors,
            "size_bytes": entry.size_bytes,
            "code_bits": codes.osq.total_bits(),
            "coded_dims": coded,
            "max_bits_per_dim": max_bits,
            "sign_bits": codes.num_sign_bits,
            "fastscan_bytes": data.fastscan.as_ref().map_or(0, |codes| codes.codes.len()),
            "bits_per_dim": bits,
        }));
    }
    if args.json {
        println!(
            "{}",
            json!({ "manifest": &*manifest, "partitions": partitions })
        );
        return Ok(());
    }
    println!("index version   {}", manifest.index_version);
    println!("format version  {}", manifest.format_version);
    println!("metric          {}", manifest.metric);
    println!(
        "vectors         {} x {}",
        manifest.num_vectors, manifest.dim
    );
    println!("attributes      {}", describe_schema(&manifest.schema));
    println!(
        "bits per dim    {} (attributes: {} bits)",
        manifest.bits_per_dim, manifest.attribute_bits
    );
    println!(
        "size            {:.1} MiB, {:.1} bytes/vector",
        manifest.total_bytes as f64 / (1 << 20) as f64,
        manifest.total_bytes as f64 / manifest.num_vectors.max(1) as f64
    );
    println!("partitions      {}", manifest.partitions.len());
    println!(
        "{:>5} {:>10} {:>12} {:>10} {:>11} {:>9} {:>10}",
        "id", "vectors", "bytes", "code bits", "coded dims", "max bits", "sign bits"
    );
    for p in &partitions {
        println!(
            "{:>5} {:>10} {:>12} {:>10} {:>11} {:>9} {:>10}",
            p["id"],
            p["vectors"],
            p["size_bytes"],
            p["code_bits"],
            p["coded_dims"],
            p["max_bits_per_dim"],
            p["sign_bits"]
        );
    }
    Ok(())
}

fn run_synth(args: SynthArgs) -> Result<()> {
    let started = Instant::now();
    let params = squash_cli::synth::SynthParams {
        num_vectors: args.num_vectors,
        dim: args.dim,
        num_clusters: args.clusters.min(args.num_vectors.max(1)),
        num_queries: args.num_queries,
        seed: args.seed,
    };
    let progress = BarProgress {
        bar: Mutex::new(None),
    };
    let summary =
        squash_cli::synth::files::write_synthetic_data_set(&params, &args.out, &progress)?;
    println!(
        "wrote {} ({} x {}, {} clusters, {} queries, seed {}; {:.1} MiB) in {:.1} s",
        summary.folder.display(),
        params.num_vectors,
        params.dim,
        params.num_clusters,
        params.num_queries,
        params.seed,
        summary.bytes_written as f64 / (1 << 20) as f64,
        started.elapsed().as_secs_f64()
    );
    println!(
        "{:<20} {:>12} {:>12}",
        "workload", "selectivity", "min matches"
    );
    for (name, selectivity, min_matches) in &summary.workloads {
        println!("{name:<20} {selectivity:>12.4} {min_matches:>12}");
    }
    Ok(())
}

/// The template's function memory with the worker's from `--worker-memory-mb`, checked against
/// Lambda's range.
fn worker_memory(args: &CostArgs) -> Result<squash_cli::cost::FunctionMemory> {
    if !(128..=10_240).contains(&args.worker_memory_mb) {
        return Err(Error::invalid(
            "worker-memory-mb",
            "must be between 128 and 10240 (Lambda's memory sizes, MB)",
        ));
    }
    Ok(squash_cli::cost::FunctionMemory {
        worker_mb: args.worker_memory_mb,
        ..squash_cli::cost::TEMPLATE_MEMORY
    })
}

async fn run_cost(args: CostArgs) -> Result<()> {
    let memory = worker_memory(&args)?;
    let only: Option<Vec<&str>> = args.only.as_deref().map(|list| list.split(',').collect());
    let (workload_names, requests) = squash_cli::usage::requests_from_workloads(
        &args.workloads,
        only.as_deref(),
        args.max_queries,
        args.k,
        &args.knobs.options(),
    )?;
    let (root, name) = split_index_location(&args.index)?;
    if !args.batch_sizes.is_empty() {
        return run_cost_curve(&args, memory, &workload_names, &requests, &root, &name).await;
    }
    let config = squash_cli::usage::UsageConfig {
        worker_slots: args.slots,
        branching: args.branching,
        batch_size: args.batch_size,
        cold_queries: args.cold_queries,
        invocations_alone: args.invocations_alone,
        memory,
        prices: squash_cli::cost::AWS_US_EAST_1,
    };
    let running = spinner(&format!(
        "running {} queries cold, warm, single and in batches",
        requests.len()
    ));
    let report =
        squash_cli::usage::measure(store_for_location(&root).await?, &name, &requests, &config)
            .await;
    running.finish_and_clear();
    let report = report?;
    if args.json {
        let mut value =
            serde_json::to_value(&report).map_err(|e| Error::invalid("report", e.to_string()))?;
        value["workloads"] = json!(workload_names);
        value["num_queries"] = json!(requests.len());
        println!("{value}");
        return Ok(());
    }
    println!(
        "workloads {} ({} queries, k = {})",
        workload_names.join(", "),
        requests.len(),
        args.k
    );
    print!("{}", squash_cli::usage::render_text(&report));
    Ok(())
}

/// `squash cost --batch-sizes`: batch time, invocations and cost against batch size.
async fn run_cost_curve(
    args: &CostArgs,
    memory: squash_cli::cost::FunctionMemory,
    workload_names: &[String],
    requests: &[squash_core::protocol::QueryRequest],
    root: &str,
    name: &str,
) -> Result<()> {
    if args.timeout_ms == 0 || args.max_invocations == 0 || args.target_invocation_ms == Some(0) {
        return Err(Error::invalid(
            "timeout-ms, target-invocation-ms, max-invocations",
            "must be positive",
        ));
    }
    let config = squash_cli::batch_curve::CurveConfig {
        worker_slots: args.slots,
        batch_sizes: args.batch_sizes.clone(),
        service: squash_service::ServiceConfig {
            timeout_ms: args.timeout_ms,
            target_invocation_ms: args.target_invocation_ms,
            max_invocations: args.max_invocations,
            // Large batches' answers exceed a response; a deployment has them written to
            // the store (`"output": "store"`), under this limit. Here they stay in memory.
            limits: {
                let limits = squash_core::search::RequestLimits::for_timeout(args.timeout_ms);
                squash_core::search::RequestLimits {
                    max_answer_bytes: limits.max_stored_answer_bytes,
                    ..limits
                }
            },
            ..squash_service::ServiceConfig::default()
        },
        memory,
        prices: squash_cli::cost::AWS_US_EAST_1,
    };
    let running = spinner(&format!(
        "running batches of {:?} queries, cold and warm, timed alone and all at once",
        args.batch_sizes
    ));
    let report = squash_cli::batch_curve::measure_curve(
        store_for_location(root).await?,
        name,
        requests,
        &config,
    )
    .await;
    running.finish_and_clear();
    let report = report?;
    if args.json {
        let mut value =
            serde_json::to_value(&report).map_err(|e| Error::invalid("report", e.to_string()))?;
        value["workloads"] = json!(workload_names);
        println!("{value}");
    } else {
        println!(
            "workloads {} ({} distinct queries, k = {})",
            workload_names.join(", "),
            requests.len(),
            args.k
        );
        print!("{}", squash_cli::batch_curve::render_curve(&report));
    }
    Ok(())
}
