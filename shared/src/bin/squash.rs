//! `squash`: build an index from vector and attribute files, query it, evaluate recall
//! against ground truth and inspect it, all embedded (no server, no cloud).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Deserialize;
use serde_json::json;
use shared::attributes::{AttributeSchema, AttributeTable};
use shared::cache::{default_capacity_bytes, PartitionCache};
use shared::embedded::{write_index, EmbeddedIndex};
use shared::error::{Error, Result};
use shared::eval::{ground_truth_distance, recall_at_k};
use shared::index::{BuildInput, BuildParams, BuildProgress, PartitionData};
use shared::input::{self, VectorSet};
use shared::metric::Metric;
use shared::protocol::{QueryRequest, QueryResponse, ScanStats, SearchOptions};
use shared::search::plan_batch;
use shared::service::{split_index_location, CoordinatorService, InProcessInvoker, ServiceConfig};
use shared::storage::store_for_location;

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
    /// Seed for every random choice (same inputs + seed = same index contents).
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

#[derive(Args, Clone)]
struct KnobArgs {
    /// Exact search: the true top-k (all partitions with matches, lower-bound ordered scan).
    #[arg(long)]
    exact: bool,
    /// Probe partitions whose centroid is within this factor of the nearest one's distance.
    #[arg(long)]
    centroid_factor: Option<f32>,
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
    /// Children per node of the invocation tree (2..=64).
    #[arg(long, default_value_t = 2)]
    branching: usize,
    /// Queries per batch request.
    #[arg(long, default_value_t = 100)]
    batch_size: usize,
    /// Cold single queries, each on fresh (cold) services.
    #[arg(long, default_value_t = 5)]
    cold_queries: usize,
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
            Command::Inspect(args) => run_inspect(args).await,
            Command::Synth(args) => run_synth(args),
            Command::Cost(args) => run_cost(args).await,
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
    let store = store_for_location(&args.out).await?;
    let reading = spinner("reading vectors");
    let vectors = input::read_vectors(&args.vectors)?;
    reading.finish_and_clear();
    let declared = match &args.schema {
        Some(spec) => input::parse_schema_spec(spec)?,
        None => Vec::new(),
    };
    let (ids, schema, attributes) = match &args.attributes {
        Some(path) => {
            let reading = spinner("reading attributes");
            let parsed = input::read_attributes(path, &declared, vectors.num_vectors)?;
            reading.finish_and_clear();
            (parsed.ids, parsed.schema, parsed.table)
        }
        None => {
            if !declared.is_empty() {
                return Err(Error::invalid("schema", "--schema needs --attributes"));
            }
            (
                input::row_number_ids(vectors.num_vectors),
                AttributeSchema::default(),
                AttributeTable {
                    num_rows: vectors.num_vectors,
                    columns: Vec::new(),
                },
            )
        }
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let mut params = BuildParams::new(metric, format!("{:x}", now.as_nanos()));
    params.num_partitions = args.partitions;
    params.bits_per_dim = args.bits_per_dim;
    params.attribute_bits = args.attribute_bits;
    params.seed = args.seed;
    params.created_unix_s = now.as_secs();
    let (num_vectors, dim) = (vectors.num_vectors, vectors.dim);
    let raw_bytes = (num_vectors * dim * 4) as f64;
    let input = BuildInput {
        dim,
        vectors: vectors.data,
        ids,
        schema,
        attributes,
    };
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
            shared::attributes::AttributeKind::Categorical => {
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

/// Returns a coordinator running in this process over the index's parent location, with
/// in-process workers: the serverless code path, minus Lambda.
async fn embedded_service(location: &str) -> Result<(CoordinatorService, String)> {
    let (root, name) = split_index_location(location)?;
    let root_store = store_for_location(&root).await?;
    let cache = Arc::new(PartitionCache::new(default_capacity_bytes()));
    let invoker = Arc::new(InProcessInvoker::new(Arc::clone(&root_store), cache));
    let config = ServiceConfig {
        worker_functions: (0..EMBEDDED_WORKER_SLOTS)
            .map(|slot| format!("embedded-{slot}"))
            .collect(),
        ..ServiceConfig::default()
    };
    Ok((CoordinatorService::new(root_store, invoker, config), name))
}

/// Worker slots of the embedded mode: in-process, they only shape the invocation tree.
const EMBEDDED_WORKER_SLOTS: usize = 4;

async fn run_query(args: QueryArgs) -> Result<()> {
    let (service, name) = embedded_service(&args.index).await?;
    // Opening the index first reports a wrong --index before any problem with the query file.
    service.describe(&name).await?;
    let vectors = input::read_vectors(&args.vector_file)?;
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
    };
    let started = Instant::now();
    let response = service
        .query(&name, request, "cli", service.default_deadline())
        .await?;
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

#[derive(Deserialize)]
struct WorkloadsFile {
    metric: String,
    queries_file: String,
    workloads: Vec<Workload>,
}

#[derive(Deserialize)]
struct Workload {
    name: String,
    query_ids: Vec<usize>,
    filters: Vec<Option<serde_json::Value>>,
    gt_dist_fvecs: String,
    match_counts: Vec<usize>,
}

fn read_json_file<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| Error::invalid(path.display().to_string(), format!("not valid: {e}")))
}

async fn run_eval(args: EvalArgs) -> Result<()> {
    let index = EmbeddedIndex::open(store_for_location(&args.index).await?).await?;
    let file: WorkloadsFile = read_json_file(&args.workloads)?;
    let folder = args.workloads.parent().unwrap_or(Path::new("."));
    let ground_truth_is_ip = match file.metric.as_str() {
        "ip" | "angular" | "cosine" => true,
        "l2" | "euclidean" => false,
        other => {
            return Err(Error::invalid(
                "workloads.metric",
                format!("unknown metric '{other}'"),
            ))
        }
    };
    let index_metric = index.manifest().metric;
    if ground_truth_is_ip == (index_metric == Metric::L2) {
        eprintln!(
            "warning: the workloads use metric '{}' but the index uses '{index_metric}'",
            file.metric
        );
    }
    let queries: VectorSet = input::read_vectors(&folder.join(&file.queries_file))?;
    let loading = spinner("loading partitions");
    index.load_all().await?;
    loading.finish_and_clear();
    let only: Option<Vec<&str>> = args.only.as_deref().map(|list| list.split(',').collect());
    let single_thread = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .map_err(|e| Error::invalid("threads", e.to_string()))?;
    let mut reports = Vec::new();
    for workload in &file.workloads {
        if only
            .as_ref()
            .is_some_and(|names| !names.contains(&workload.name.as_str()))
        {
            continue;
        }
        let ground_truth = input::read_vectors(&folder.join(&workload.gt_dist_fvecs))?;
        if ground_truth.dim < args.k {
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
            .min(args.max_queries.unwrap_or(usize::MAX));
        let mut requests = Vec::with_capacity(count);
        for position in 0..count {
            let query_id = workload.query_ids[position];
            if query_id >= queries.num_vectors {
                return Err(Error::invalid(
                    format!("workload {} query_ids[{position}]", workload.name),
                    format!("{query_id} is not a row of {}", file.queries_file),
                ));
            }
            requests.push(QueryRequest {
                require_complete: false,
                branching: None,
                vector: queries.data[query_id * queries.dim..][..queries.dim].to_vec(),
                k: args.k,
                filter: workload.filters.get(position).cloned().flatten(),
                include_attributes: false,
                options: args.knobs.options(),
            });
        }
        // Timed on one thread, partitions already in memory: plan + worker stage + merge.
        let started = Instant::now();
        let responses: Vec<QueryResponse> = single_thread.install(|| {
            requests
                .iter()
                .map(|request| {
                    let plan = plan_batch(index.coordinator(), std::slice::from_ref(request))?;
                    index.search_planned(&plan).map(|mut r| r.remove(0))
                })
                .collect::<Result<Vec<_>>>()
        })?;
        let seconds = started.elapsed().as_secs_f64();
        let mut recall_sum = 0.0;
        let mut short_answers = 0usize;
        let mut scan = ScanStats::default();
        let mut partitions_probed = 0usize;
        for (position, response) in responses.iter().enumerate() {
            let kth = ground_truth.data[position * ground_truth.dim + args.k - 1];
            let kth = ground_truth_distance(index_metric, ground_truth_is_ip, kth);
            let matches = workload
                .match_counts
                .get(position)
                .copied()
                .unwrap_or(usize::MAX);
            recall_sum += recall_at_k(&response.hits, args.k, kth, matches);
            if response.hits.len() < args.k.min(matches) {
                short_answers += 1;
            }
            scan.add(&response.stats.scan);
            partitions_probed += response.stats.partitions_probed;
        }
        let n = count.max(1) as f64;
        reports.push(json!({
            "name": workload.name,
            "queries": count,
            "k": args.k,
            "recall": recall_sum / n,
            "qps": count as f64 / seconds.max(1e-9),
            "mean_latency_ms": seconds * 1000.0 / n,
            "partitions_probed": partitions_probed as f64 / n,
            "passed_filter": scan.passed_filter as f64 / n,
            "after_hamming": scan.after_hamming as f64 / n,
            "reranked": scan.reranked as f64 / n,
            "short_answers": short_answers,
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

async fn run_inspect(args: InspectArgs) -> Result<()> {
    let index = EmbeddedIndex::open(store_for_location(&args.index).await?).await?;
    let manifest = index.manifest().clone();
    let mut partitions = Vec::new();
    for entry in &manifest.partitions {
        let data: Arc<PartitionData> = index.partition(entry.id).await?;
        let bits = &data.osq.bits;
        let coded = bits.iter().filter(|&&b| b > 0).count();
        let max_bits = bits.iter().copied().max().unwrap_or(0);
        partitions.push(json!({
            "id": entry.id,
            "key": entry.key,
            "vectors": entry.num_vectors,
            "size_bytes": entry.size_bytes,
            "code_bits": data.osq.total_bits(),
            "coded_dims": coded,
            "max_bits_per_dim": max_bits,
            "sign_bits": data.num_sign_bits,
            "bits_per_dim": bits,
        }));
    }
    if args.json {
        println!(
            "{}",
            json!({ "manifest": manifest, "partitions": partitions })
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
    let params = shared::synth::SynthParams {
        num_vectors: args.num_vectors,
        dim: args.dim,
        num_clusters: args.clusters.min(args.num_vectors.max(1)),
        num_queries: args.num_queries,
        seed: args.seed,
    };
    let progress = BarProgress {
        bar: Mutex::new(None),
    };
    let summary = shared::synth::files::write_synthetic_data_set(&params, &args.out, &progress)?;
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
    println!("{:<20} {:>12} {:>12}", "workload", "selectivity", "min matches");
    for (name, selectivity, min_matches) in &summary.workloads {
        println!("{name:<20} {selectivity:>12.4} {min_matches:>12}");
    }
    Ok(())
}

async fn run_cost(args: CostArgs) -> Result<()> {
    let only: Option<Vec<&str>> = args.only.as_deref().map(|list| list.split(',').collect());
    let (workload_names, requests) = shared::usage::requests_from_workloads(
        &args.workloads,
        only.as_deref(),
        args.max_queries,
        args.k,
        &args.knobs.options(),
    )?;
    let (root, name) = split_index_location(&args.index)?;
    let config = shared::usage::UsageConfig {
        worker_slots: args.slots,
        branching: args.branching,
        batch_size: args.batch_size,
        cold_queries: args.cold_queries,
        memory: shared::cost::TEMPLATE_MEMORY,
        prices: shared::cost::AWS_US_EAST_1,
    };
    let running = spinner(&format!(
        "running {} queries cold, warm, single and in batches",
        requests.len()
    ));
    let report = shared::usage::measure(
        store_for_location(&root).await?,
        &name,
        &requests,
        &config,
    )
    .await;
    running.finish_and_clear();
    let report = report?;
    if args.json {
        let mut value = serde_json::to_value(&report)
            .map_err(|e| Error::invalid("report", e.to_string()))?;
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
    print!("{}", shared::usage::render_text(&report));
    Ok(())
}
