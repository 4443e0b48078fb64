//! `squash write-eval`: recall and speed of an index after writes, against ground truth
//! recomputed on the index's new state, before and after compaction.
//!
//! A share of the data set's rows is held out of the build and upserted afterwards (new rows);
//! a share of the built rows is overwritten with another row's vector and attributes (moved
//! rows); a share is deleted. Every workload is then scored against exact truth over the live
//! rows (brute force, the workload's filters evaluated exactly), with the queries run
//! single-threaded as `squash eval` runs them; then the index is compacted and scored again.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use clap::Args;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rayon::prelude::*;
use serde::Serialize;

use squash_core::attributes::AttributeTable;
use squash_core::error::{Error, Result};
use squash_core::filter::Filter;
use squash_core::index::build::NoProgress;
use squash_core::index::{BuildInput, BuildParams};
use squash_core::metric::{normalize_in_place, Metric};
use squash_core::protocol::{QueryRequest, SearchOptions};
use squash_core::writes::{DeleteRequest, UpsertRequest, UpsertRow};
use squash_service::embedded::{EmbeddedConfig, EmbeddedIndex};
use squash_service::{write_index, CompactionOptions};
use squash_storage::{BlobStore, LocalStore};

use crate::input_files;
use crate::workloads::{single_thread_pool, LoadedWorkload, WorkloadSuite};

/// `squash write-eval`.
#[derive(Args)]
pub struct WriteEvalArgs {
    /// workloads.json of a data set (base_attrs.csv beside it).
    #[arg(long)]
    pub workloads: PathBuf,
    /// Folder to build the index in (replaced).
    #[arg(long)]
    pub out: PathBuf,
    /// Share of the rows held out of the build and upserted after it.
    #[arg(long, default_value_t = 0.10)]
    pub new_share: f64,
    /// Share of the built rows overwritten (another row's vector and attributes).
    #[arg(long, default_value_t = 0.05)]
    pub overwrite_share: f64,
    /// Share of the built rows deleted.
    #[arg(long, default_value_t = 0.10)]
    pub delete_share: f64,
    /// Queries per workload.
    #[arg(long, default_value_t = 200)]
    pub max_queries: usize,
    /// Hits per query (recall@k).
    #[arg(long, default_value_t = 10)]
    pub k: usize,
    /// Rows per upsert call.
    #[arg(long, default_value_t = 1000)]
    pub batch_rows: usize,
    /// Seed of the choice of rows.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Also write the results as JSON here.
    #[arg(long)]
    pub json_out: Option<PathBuf>,
    /// How the compaction folds the writes: `auto` (re-encode only the partitions the writes
    /// touched unless `--max-drift-share` is passed), `partial` (always that) or `full`
    /// (draw the partitions anew).
    #[arg(long, default_value = "auto", value_parser = ["auto", "partial", "full"])]
    pub compaction: String,
    /// Choose the written rows (new, overwritten, deleted) among the rows nearest one random
    /// row instead of uniformly: writes of one region of the space (one tenant, one topic),
    /// which touch few partitions.
    #[arg(long)]
    pub localized: bool,
    /// The drift share of `--compaction auto` (see `squash compact`).
    #[arg(long, default_value_t = squash_service::DEFAULT_MAX_DRIFT_SHARE)]
    pub max_drift_share: f64,
}

/// One workload's scores in one state of the index.
#[derive(Debug, Clone, Serialize)]
struct WorkloadScore {
    workload: String,
    recall: f64,
    qps: f64,
    short_answers: usize,
    deleted_ids_returned: usize,
}

/// What the run measured.
#[derive(Debug, Clone, Serialize)]
struct WriteEvalReport {
    dataset: String,
    rows_built: usize,
    rows_new: usize,
    rows_overwritten: usize,
    rows_deleted: usize,
    live_rows: usize,
    upsert_rows_per_second: f64,
    build_seconds: f64,
    compact_seconds: f64,
    /// Partitions the compaction re-encoded, of how many.
    partitions_rebuilt: usize,
    num_partitions: usize,
    /// Why every partition was rebuilt, when it was.
    full_rebuild_reason: Option<String>,
    before_writes: Vec<WorkloadScore>,
    before_compaction: Vec<WorkloadScore>,
    after_compaction: Vec<WorkloadScore>,
}

/// Runs `squash write-eval`.
pub async fn run_write_eval(args: WriteEvalArgs) -> Result<()> {
    for (name, share) in [
        ("new-share", args.new_share),
        ("overwrite-share", args.overwrite_share),
        ("delete-share", args.delete_share),
    ] {
        if !(0.0..0.5).contains(&share) {
            return Err(Error::invalid(name, "must be in [0, 0.5)"));
        }
    }
    let suite = WorkloadSuite::open(&args.workloads)?;
    let metric = suite.index_metric();
    let attributes_path = suite.folder.join("base_attrs.csv");
    let full = input_files::read_build_input(
        &suite.base_path()?,
        attributes_path
            .is_file()
            .then_some(attributes_path.as_path()),
        &[],
    )?;
    let dim = full.dim;
    let num_rows = full.ids.len();
    let mut rng = StdRng::seed_from_u64(args.seed);
    let mut order: Vec<usize> = (0..num_rows).collect();
    order.shuffle(&mut rng);
    let num_new = (num_rows as f64 * args.new_share) as usize;
    let num_touched =
        num_new + (num_rows as f64 * (args.overwrite_share + args.delete_share)).ceil() as usize;
    let mut near_rows: Vec<usize> = Vec::new();
    if args.localized {
        // The rows nearest an anchor come first, in order of distance: the new rows, then
        // (below) the overwritten and deleted ones.
        let anchor = order[0];
        let anchor_vector = &full.vectors[anchor * dim..(anchor + 1) * dim];
        let distances: Vec<f32> = (0..num_rows)
            .map(|row| metric.distance(anchor_vector, &full.vectors[row * dim..(row + 1) * dim]))
            .collect();
        let take = num_touched.min(num_rows);
        order.select_nth_unstable_by(take.saturating_sub(1), |&a, &b| {
            distances[a].total_cmp(&distances[b])
        });
        order[..take].sort_unstable_by(|&a, &b| distances[a].total_cmp(&distances[b]));
        // The rows chosen are spread over new, overwritten and deleted alike.
        order[..take].shuffle(&mut rng);
        let (near, far) = order.split_at_mut(take);
        near_rows = near.to_vec();
        let new_part: Vec<usize> = near[..num_new.min(take)].to_vec();
        let mut rest: Vec<usize> = near[num_new.min(take)..].to_vec();
        rest.extend_from_slice(far);
        order = new_part.into_iter().chain(rest).collect();
    }
    let (new_rows, built_rows) = order.split_at(num_new);
    let built = select(&full, built_rows);

    if args.out.exists() {
        std::fs::remove_dir_all(&args.out).map_err(|e| Error::io(&args.out, e))?;
    }
    let store: Arc<dyn BlobStore> = Arc::new(LocalStore::new(&args.out));
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let mut params = BuildParams::new(metric, format!("{:x}", now.as_nanos()));
    params.created_unix_s = now.as_secs();
    let started = Instant::now();
    write_index(
        Arc::clone(&store),
        built.clone(),
        params,
        Arc::new(NoProgress),
    )
    .await?;
    let build_seconds = started.elapsed().as_secs_f64();
    let index =
        EmbeddedIndex::open_store(Arc::clone(&store), EmbeddedConfig::for_timed_runs()).await?;
    index.load_all().await?;

    let loaded: Vec<LoadedWorkload> = suite
        .file
        .workloads
        .iter()
        .map(|workload| suite.load(workload, args.k, Some(args.max_queries)))
        .collect::<Result<_>>()?;
    let scan_thread = single_thread_pool()?;
    let mut live: Vec<usize> = built_rows.to_vec();
    let before_writes = score_all(&index, &loaded, &full, &live, &[], metric, &scan_thread).await?;

    // The writes: new rows, then moved rows, then deletes.
    let upsert_started = Instant::now();
    let mut upserted = 0usize;
    let row_of = |source: usize, id: u64| UpsertRow {
        id,
        vector: full.vectors[source * dim..(source + 1) * dim].to_vec(),
        attributes: full.attributes.row_json(&full.schema, source),
    };
    for chunk in new_rows.chunks(args.batch_rows.max(1)) {
        let rows = chunk
            .iter()
            .map(|&row| row_of(row, full.ids[row]))
            .collect();
        index.upsert(UpsertRequest { rows }).await?;
        upserted += chunk.len();
    }
    let upsert_seconds = upsert_started.elapsed().as_secs_f64();
    // Moved rows: a built id takes another row's vector and attributes. The model keeps, per
    // live id, the source row of its content.
    let num_overwritten = (built_rows.len() as f64 * args.overwrite_share) as usize;
    let num_deleted = (built_rows.len() as f64 * args.delete_share) as usize;
    let mut content_of: std::collections::HashMap<u64, usize> =
        live.iter().map(|&row| (full.ids[row], row)).collect();
    for &row in new_rows {
        content_of.insert(full.ids[row], row);
    }
    let overwritten: Vec<(u64, usize)> = built_rows[..num_overwritten]
        .iter()
        .map(|&row| {
            // Localized writes move a row to another place in the same region.
            let source = if near_rows.is_empty() {
                rng.random_range(0..num_rows)
            } else {
                near_rows[rng.random_range(0..near_rows.len())]
            };
            (full.ids[row], source)
        })
        .collect();
    for chunk in overwritten.chunks(args.batch_rows.max(1)) {
        let rows = chunk
            .iter()
            .map(|&(id, source)| row_of(source, id))
            .collect();
        index.upsert(UpsertRequest { rows }).await?;
    }
    for &(id, source) in &overwritten {
        content_of.insert(id, source);
    }
    let deleted: Vec<u64> = built_rows[num_overwritten..num_overwritten + num_deleted]
        .iter()
        .map(|&row| full.ids[row])
        .collect();
    for chunk in deleted.chunks(squash_core::writes::MAX_WRITE_ROWS) {
        index
            .delete(DeleteRequest {
                ids: chunk.to_vec(),
                filter: None,
            })
            .await?;
    }
    for id in &deleted {
        content_of.remove(id);
    }
    // The live state: (id, content row) pairs.
    let mut live_pairs: Vec<(u64, usize)> = content_of.into_iter().collect();
    live_pairs.sort_unstable();
    live = live_pairs.iter().map(|p| p.1).collect();
    let live_ids: Vec<u64> = live_pairs.iter().map(|p| p.0).collect();

    let before_compaction = score_all(
        &index,
        &loaded,
        &full,
        &live,
        &live_ids,
        metric,
        &scan_thread,
    )
    .await?;
    let check_deleted =
        |scores: &[WorkloadScore]| scores.iter().map(|s| s.deleted_ids_returned).sum::<usize>();
    let options = CompactionOptions {
        full: args.compaction == "full",
        max_drift_share: if args.compaction == "partial" {
            f64::INFINITY
        } else {
            args.max_drift_share
        },
        ..CompactionOptions::default()
    };
    let started = Instant::now();
    let compaction = index.compact_with(options, Arc::new(NoProgress)).await?;
    let compact_seconds = started.elapsed().as_secs_f64();
    index.load_all().await?;
    let after_compaction = score_all(
        &index,
        &loaded,
        &full,
        &live,
        &live_ids,
        metric,
        &scan_thread,
    )
    .await?;

    let report = WriteEvalReport {
        dataset: suite
            .folder
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default(),
        rows_built: built_rows.len(),
        rows_new: new_rows.len(),
        rows_overwritten: num_overwritten,
        rows_deleted: num_deleted,
        live_rows: live.len(),
        upsert_rows_per_second: upserted as f64 / upsert_seconds.max(1e-9),
        build_seconds,
        compact_seconds,
        partitions_rebuilt: compaction.partitions_rebuilt.len(),
        num_partitions: compaction.build.manifest.partitions.len(),
        full_rebuild_reason: compaction.full_rebuild_reason.clone(),
        before_writes,
        before_compaction,
        after_compaction,
    };
    print_report(&report);
    if let Some(path) = &args.json_out {
        let text = serde_json::to_string_pretty(&report)
            .map_err(|e| Error::internal(format!("cannot encode the report: {e}")))?;
        std::fs::write(path, text).map_err(|e| Error::io(path, e))?;
    }
    let returned =
        check_deleted(&report.before_compaction) + check_deleted(&report.after_compaction);
    if returned > 0 {
        return Err(Error::internal(format!(
            "{returned} answers held deleted or replaced rows"
        )));
    }
    Ok(())
}

/// Returns the rows `rows` of `input`.
fn select(input: &BuildInput, rows: &[usize]) -> BuildInput {
    let dim = input.dim;
    let positions: Vec<u32> = rows.iter().map(|&row| row as u32).collect();
    BuildInput {
        dim,
        vectors: rows
            .iter()
            .flat_map(|&row| input.vectors[row * dim..(row + 1) * dim].iter().copied())
            .collect(),
        ids: rows.iter().map(|&row| input.ids[row]).collect(),
        schema: input.schema.clone(),
        attributes: input.attributes.select_rows(&positions),
    }
}

/// Scores every workload on `index` against exact truth over the live rows: `live[i]` is the
/// row of `full` holding the content of live id `live_ids[i]` (empty ids: the rows' own ids).
async fn score_all(
    index: &EmbeddedIndex,
    loaded: &[LoadedWorkload],
    full: &BuildInput,
    live: &[usize],
    live_ids: &[u64],
    metric: Metric,
    scan_thread: &rayon::ThreadPool,
) -> Result<Vec<WorkloadScore>> {
    let dim = full.dim;
    let positions: Vec<u32> = live.iter().map(|&row| row as u32).collect();
    let table: AttributeTable = full.attributes.select_rows(&positions);
    let ids: Vec<u64> = if live_ids.is_empty() {
        live.iter().map(|&row| full.ids[row]).collect()
    } else {
        live_ids.to_vec()
    };
    let live_set: HashSet<u64> = ids.iter().copied().collect();
    let mut vectors: Vec<f32> = live
        .iter()
        .flat_map(|&row| full.vectors[row * dim..(row + 1) * dim].iter().copied())
        .collect();
    if metric.normalizes() {
        vectors.chunks_exact_mut(dim).for_each(|v| {
            normalize_in_place(v);
        });
    }
    let mut scores = Vec::with_capacity(loaded.len());
    for workload in loaded {
        let truth: Vec<(Vec<f32>, usize)> = (0..workload.num_queries())
            .into_par_iter()
            .map(|position| -> Result<(Vec<f32>, usize)> {
                let (query, filter_json) = workload.query(position);
                let mut query = query.to_vec();
                if metric.normalizes() {
                    normalize_in_place(&mut query);
                }
                let passing: Vec<usize> = match filter_json {
                    Some(json) => Filter::parse(json, &full.schema)?
                        .evaluate(&table)
                        .iter_ones()
                        .collect(),
                    None => (0..ids.len()).collect(),
                };
                let mut distances: Vec<f32> = passing
                    .iter()
                    .map(|&row| metric.distance(&query, &vectors[row * dim..(row + 1) * dim]))
                    .collect();
                let k = workload.k.min(distances.len());
                if k > 0 {
                    distances.select_nth_unstable_by(k - 1, f32::total_cmp);
                    distances.truncate(k);
                    distances.sort_unstable_by(f32::total_cmp);
                }
                Ok((distances, passing.len()))
            })
            .collect::<Result<_>>()?;
        let (nearest, counts): (Vec<Vec<f32>>, Vec<usize>) = truth.into_iter().unzip();
        let rescored = workload.with_truth(&nearest, counts);
        let run = rescored.run(index, &SearchOptions::default(), scan_thread)?;
        // Untimed: no answer may hold a row that is not live.
        let mut deleted_ids_returned = 0;
        for position in 0..workload.num_queries() {
            let (vector, filter) = workload.query(position);
            let mut request = QueryRequest::new(vector.to_vec(), workload.k);
            request.filter = filter.cloned();
            let response = index.query(request).await?;
            deleted_ids_returned += response
                .hits
                .iter()
                .filter(|hit| !live_set.contains(&hit.id))
                .count();
        }
        scores.push(WorkloadScore {
            workload: workload.name.clone(),
            recall: run.recall,
            qps: run.qps(),
            short_answers: run.short_answers,
            deleted_ids_returned,
        });
    }
    Ok(scores)
}

fn print_report(report: &WriteEvalReport) {
    println!(
        "{}: built {} rows; then {} new, {} overwritten, {} deleted -> {} live rows",
        report.dataset,
        report.rows_built,
        report.rows_new,
        report.rows_overwritten,
        report.rows_deleted,
        report.live_rows
    );
    println!(
        "upserts {:.0} rows/s (embedded, one writer); build {:.1} s, compaction {:.1} s",
        report.upsert_rows_per_second, report.build_seconds, report.compact_seconds
    );
    match &report.full_rebuild_reason {
        Some(reason) => println!("compaction rebuilt every partition: {reason}"),
        None => println!(
            "compaction re-encoded {} of {} partitions",
            report.partitions_rebuilt, report.num_partitions
        ),
    }
    println!(
        "{:<24} {:>14} {:>10} {:>14} {:>10} {:>14} {:>10}  deleted returned",
        "workload", "recall before", "QPS", "recall unfold.", "QPS", "recall compact", "QPS"
    );
    for ((before, unfolded), compacted) in report
        .before_writes
        .iter()
        .zip(&report.before_compaction)
        .zip(&report.after_compaction)
    {
        println!(
            "{:<24} {:>14.4} {:>10.0} {:>14.4} {:>10.0} {:>14.4} {:>10.0}  {}",
            before.workload,
            before.recall,
            before.qps,
            unfolded.recall,
            unfolded.qps,
            compacted.recall,
            compacted.qps,
            unfolded.deleted_ids_returned + compacted.deleted_ids_returned
        );
    }
}
