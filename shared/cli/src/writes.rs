//! `squash upsert`, `squash delete`, `squash fetch` and `squash compact`: writes to a built
//! index, through the same coordinator code the functions run (embedded).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use clap::Args;
use serde_json::Value;

use squash_core::attributes::AttributeKind;
use squash_core::error::{Error, Result};
use squash_core::index::BuildProgress;
use squash_core::writes::{DeleteRequest, FetchRequest, UpsertRequest, UpsertRow, MAX_WRITE_ROWS};
use squash_service::embedded::{EmbeddedConfig, EmbeddedIndex};
use squash_service::CompactionOptions;

use crate::input_files;

/// `squash upsert`.
#[derive(Args)]
pub struct UpsertArgs {
    /// Index location: a folder or s3://bucket/prefix.
    #[arg(long)]
    pub index: String,
    /// Vector file: .fvecs, .bvecs (uint8) or .npy (2-d float32).
    #[arg(long)]
    pub vectors: PathBuf,
    /// Attribute CSV with a header, one row per vector, a value for every attribute column
    /// of the index, and an `id` column (unless --first-id is given).
    #[arg(long)]
    pub attributes: Option<PathBuf>,
    /// Ids of the rows when the CSV has no `id` column: this one, then the next ones in order.
    #[arg(long)]
    pub first_id: Option<u64>,
    /// Rows per write (each write is one log entry and one token).
    #[arg(long, default_value_t = 1000)]
    pub batch_rows: usize,
    /// Print each write's token and rows as it is acknowledged (`token 7 rows 1000..2000`),
    /// instead of a progress bar.
    #[arg(long)]
    pub print_tokens: bool,
}

/// `squash delete`.
#[derive(Args)]
pub struct DeleteArgs {
    /// Index location: a folder or s3://bucket/prefix.
    #[arg(long)]
    pub index: String,
    /// Ids to delete, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub ids: Vec<u64>,
    /// Delete every row matching this filter (Mongo-style JSON, as in queries).
    #[arg(long)]
    pub filter: Option<String>,
}

/// `squash fetch`.
#[derive(Args)]
pub struct FetchArgs {
    /// Index location: a folder or s3://bucket/prefix.
    #[arg(long)]
    pub index: String,
    /// Ids to fetch, comma-separated.
    #[arg(long, value_delimiter = ',', required = true)]
    pub ids: Vec<u64>,
    /// Leave the vectors out.
    #[arg(long)]
    pub no_vectors: bool,
}

/// `squash compact`.
#[derive(Args)]
pub struct CompactArgs {
    /// Index location: a folder or s3://bucket/prefix.
    #[arg(long)]
    pub index: String,
    /// Rebuild every partition and draw the partitions anew, whatever the writes touched.
    #[arg(long)]
    pub full: bool,
    /// Rows written since the partitions were drawn, as a share of the rows they were drawn
    /// from, past which the compaction rebuilds every partition instead of re-encoding only
    /// those the writes touched.
    #[arg(long, default_value_t = squash_service::DEFAULT_MAX_DRIFT_SHARE)]
    pub max_drift_share: f64,
}

/// Writes the rows of a vector file (and attribute CSV) to an index, `--batch-rows` per write.
pub async fn run_upsert(args: UpsertArgs) -> Result<()> {
    if args.batch_rows == 0 || args.batch_rows > MAX_WRITE_ROWS {
        return Err(Error::invalid(
            "batch-rows",
            format!("must be between 1 and {MAX_WRITE_ROWS}"),
        ));
    }
    let index = EmbeddedIndex::open_location(&args.index, EmbeddedConfig::default()).await?;
    let schema = index.manifest().schema.clone();
    // Read the CSV with the index's column kinds, not kinds guessed from the values.
    let declared: Vec<(String, AttributeKind)> = schema
        .columns
        .iter()
        .map(|column| (column.name.clone(), column.kind))
        .collect();
    let input =
        input_files::read_build_input(&args.vectors, args.attributes.as_deref(), &declared)?;
    let has_id_column = match &args.attributes {
        Some(path) => csv_has_id_column(path)?,
        None => false,
    };
    let ids: Vec<u64> = match (args.first_id, has_id_column) {
        (Some(first), false) => (0..input.ids.len() as u64)
            .map(|offset| first.checked_add(offset))
            .collect::<Option<Vec<u64>>>()
            .ok_or_else(|| Error::invalid("first-id", "ids would pass 2^64 - 1"))?,
        (Some(_), true) => {
            return Err(Error::invalid(
                "first-id",
                "the attribute CSV has an id column already; give one or the other",
            ))
        }
        (None, true) => input.ids.clone(),
        (None, false) => {
            return Err(Error::invalid(
                "attributes",
                "an upsert needs the rows' ids: an `id` column in --attributes, or --first-id (row numbers would replace the index's own rows 0, 1, ...)",
            ))
        }
    };
    let dim = input.dim;
    let total = ids.len();
    let started = Instant::now();
    let mut last_token = 0;
    let bar = if args.print_tokens {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::new(total as u64)
    };
    for start in (0..total).step_by(args.batch_rows) {
        let end = (start + args.batch_rows).min(total);
        let rows: Vec<UpsertRow> = (start..end)
            .map(|row| UpsertRow {
                id: ids[row],
                vector: input.vectors[row * dim..(row + 1) * dim].to_vec(),
                attributes: input.attributes.row_json(&input.schema, row),
            })
            .collect();
        let answer = index
            .upsert(UpsertRequest { rows })
            .await
            .map_err(|error| match error {
                Error::InvalidInput { field, reason } => Error::InvalidInput {
                    field: file_row_field(&field, start),
                    reason: format!(
                        "{reason} (rows {start}..{end} were not written; rows before them were, up to token {last_token})"
                    ),
                },
                other => other,
            })?;
        last_token = answer.token;
        if args.print_tokens {
            use std::io::Write;
            println!("token {} rows {start}..{end}", answer.token);
            let _ = std::io::stdout().flush();
        } else {
            bar.inc((end - start) as u64);
        }
    }
    bar.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "upserted {total} rows in {seconds:.1} s ({:.0} rows/s); last token {last_token}",
        total as f64 / seconds.max(1e-9)
    );
    Ok(())
}

/// Whether the header of the CSV at `path` names an `id` column.
fn csv_has_id_column(path: &std::path::Path) -> Result<bool> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_path(path)
        .map_err(|e| Error::invalid(path.display().to_string(), e.to_string()))?;
    let header = reader
        .headers()
        .map_err(|e| Error::invalid(path.display().to_string(), e.to_string()))?;
    Ok(header.iter().any(|name| name.trim() == "id"))
}

/// Names a row of a write by its position in the input files: `rows[3].vector` of the write
/// starting at row 2000 is `rows[2003].vector`.
fn file_row_field(field: &str, start: usize) -> String {
    let Some(rest) = field.strip_prefix("rows[") else {
        return field.to_string();
    };
    match rest.split_once(']') {
        Some((position, tail)) => match position.parse::<usize>() {
            Ok(position) => format!("rows[{}]{tail}", start + position),
            Err(_) => field.to_string(),
        },
        None => field.to_string(),
    }
}

/// Deletes rows by ids or filter.
pub async fn run_delete(args: DeleteArgs) -> Result<()> {
    let index = EmbeddedIndex::open_location(&args.index, EmbeddedConfig::default()).await?;
    let filter = match &args.filter {
        Some(text) => Some(
            serde_json::from_str::<Value>(text)
                .map_err(|e| Error::invalid("filter", format!("is not JSON: {e}")))?,
        ),
        None => None,
    };
    let answer = index
        .delete(DeleteRequest {
            ids: args.ids,
            filter,
        })
        .await?;
    println!(
        "delete committed at token {} ({} ids{})",
        answer.token,
        answer.deleted_ids,
        if answer.deleted_by_filter {
            ", and the rows matching the filter"
        } else {
            ""
        }
    );
    Ok(())
}

/// Prints the live rows with the ids asked for, as JSON.
pub async fn run_fetch(args: FetchArgs) -> Result<()> {
    let index = EmbeddedIndex::open_location(&args.index, EmbeddedConfig::default()).await?;
    let answer = index
        .fetch(FetchRequest {
            ids: args.ids,
            include_vectors: !args.no_vectors,
            min_token: None,
        })
        .await?;
    let text = serde_json::to_string_pretty(&answer)
        .map_err(|e| Error::internal(format!("cannot print the answer: {e}")))?;
    println!("{text}");
    Ok(())
}

/// Folds the writes into a new version of the partitions.
pub async fn run_compact(args: CompactArgs, progress: Arc<dyn BuildProgress + Send>) -> Result<()> {
    let started = Instant::now();
    let index = EmbeddedIndex::open_location(&args.index, EmbeddedConfig::default()).await?;
    let options = CompactionOptions {
        full: args.full,
        max_drift_share: args.max_drift_share,
        ..CompactionOptions::default()
    };
    let summary = index.compact_with(options, progress).await?;
    let manifest = &summary.build.manifest;
    println!(
        "compacted into version {} through token {} in {:.1} s",
        manifest.index_version,
        summary.folded_through,
        started.elapsed().as_secs_f64()
    );
    println!(
        "  {} log entries folded; rows kept {}, added {}, removed {}; {} rows in {} partitions",
        summary.entries_folded,
        summary.rows_kept,
        summary.rows_added,
        summary.rows_removed,
        manifest.num_vectors,
        manifest.partitions.len()
    );
    match &summary.full_rebuild_reason {
        Some(reason) => println!("  every partition rebuilt: {reason}"),
        None => println!(
            "  {} of {} partitions re-encoded (those the writes touched), the others kept",
            summary.partitions_rebuilt.len(),
            manifest.partitions.len()
        ),
    }
    Ok(())
}
