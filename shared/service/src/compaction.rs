//! Compaction: folding the writes of the log into a new version of the partitions.
//!
//! The index's live rows (the partitions' rows that no write hid, and the rows the log
//! upserted) are built into a new version like a build from files, with the same parameters,
//! and the manifest switches to it on the condition that it is still the one the compaction
//! read: of two compactions (or a compaction and a build) of one index, one wins and the other
//! fails with `Error::Conflict`, having changed nothing. Writes committed while it runs stay in
//! the log after the position it folded, and are applied over the new version, so none is lost.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;

use squash_core::attributes::{AttributeKind, AttributeSchema, AttributeTable};
use squash_core::error::{Error, Result};
use squash_core::filter::Filter;
use squash_core::index::build::{
    rebuild_partitions, BuildInput, BuildParams, BuildProgress, BuildSummary, PartialRebuild,
};
use squash_core::index::{
    CoordinatorData, Manifest, PartitionData, PartitionDrift, PartitionEntry,
};
use squash_core::writes::delta::extended_schema;
use squash_core::writes::{Delta, DeltaRow, RowIds};
use squash_storage::BlobStore;

use crate::decoding::{decode_blocking, decode_partition};
use crate::publish::{publish_version, read_manifest_tagged, write_version};
use crate::write_log;

/// The default of [`CompactionOptions::max_drift_share`]; see BENCHMARKS.md ("Compaction")
/// for the measurements behind it.
pub const DEFAULT_MAX_DRIFT_SHARE: f64 = 0.5;

/// The bounds a re-encoded partition's size keeps, as shares of the mean partition size: past
/// them the partitions are drawn anew (balanced k-means keeps them within 10 % of the mean).
const PARTITION_SIZE_BOUNDS: (f64, f64) = (0.5, 1.5);

/// How a compaction folds the writes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CompactionOptions {
    /// Compact even when the log holds no write since the last compaction (a full rebuild).
    pub force: bool,
    /// Rebuild every partition and draw the partitions anew, whatever the writes touched.
    pub full: bool,
    /// Rows written into the partitions since they were drawn (added plus removed, over all
    /// compactions since), as a share of the rows they were drawn from, past which a
    /// compaction rebuilds fully instead of re-encoding only the partitions writes touched.
    pub max_drift_share: f64,
}

impl Default for CompactionOptions {
    fn default() -> Self {
        CompactionOptions {
            force: false,
            full: false,
            max_drift_share: DEFAULT_MAX_DRIFT_SHARE,
        }
    }
}

/// What a compaction did.
#[derive(Debug, Clone)]
pub struct CompactionSummary {
    /// The new version's build summary.
    pub build: BuildSummary,
    /// The log position it folded through.
    pub folded_through: u64,
    /// Log entries folded in.
    pub entries_folded: u64,
    /// Partition rows kept in the partitions it re-encoded (all of them on a full rebuild).
    pub rows_kept: u64,
    /// Rows the log upserted, now in the partitions.
    pub rows_added: u64,
    /// Partition rows removed (deleted or replaced).
    pub rows_removed: u64,
    /// The partitions re-encoded, ascending (all on a full rebuild).
    pub partitions_rebuilt: Vec<u32>,
    /// Why every partition was rebuilt and drawn anew; `None` when only the partitions the
    /// writes touched were re-encoded.
    pub full_rebuild_reason: Option<String>,
}

/// Folds every write committed to the log of the index in `store` (a store of its own) into a
/// new version, with the default options but `force`. See [`compact_index_with`].
pub async fn compact_index(
    store: Arc<dyn BlobStore>,
    force: bool,
    progress: Arc<dyn BuildProgress + Send>,
) -> Result<CompactionSummary> {
    let options = CompactionOptions {
        force,
        ..CompactionOptions::default()
    };
    compact_index_with(store, options, progress).await
}

/// Folds every write committed to the log of the index in `store` into a new version:
/// re-encodes the partitions the writes touched and keeps the others, or rebuilds the whole
/// index when asked, when the writes added categories, when a partition would leave its size
/// bounds, or when the rows written since the partitions were drawn pass
/// `options.max_drift_share`. Fails with `InvalidInput` when there is nothing to fold (unless
/// `force`), and with `Conflict` when another build or compaction switched the manifest
/// meanwhile.
pub async fn compact_index_with(
    store: Arc<dyn BlobStore>,
    options: CompactionOptions,
    progress: Arc<dyn BuildProgress + Send>,
) -> Result<CompactionSummary> {
    if options.max_drift_share.is_nan() || options.max_drift_share < 0.0 {
        return Err(Error::invalid(
            "max-drift-share",
            format!("must be a share >= 0, got {}", options.max_drift_share),
        ));
    }
    let Some((Some(manifest), tag)) = read_manifest_tagged(store.as_ref()).await? else {
        return Err(Error::NotFound {
            what: "the index's manifest".to_string(),
        });
    };
    let entries = write_log::read_after(store.as_ref(), "", manifest.folded_through, true).await?;
    // Written rows are filed under their nearest fine cluster, hence partition, when the
    // version can be compacted in part.
    let coordinator_opt = if manifest.row_ids_key.is_some() && !options.full {
        let key = manifest.coordinator_key.clone();
        let bytes = store.get(&key).await?;
        let coordinator = decode_blocking(move || CoordinatorData::decode(&key, bytes)).await?;
        Some(Arc::new(coordinator))
    } else {
        None
    };
    let mut delta = Delta::new(
        manifest.dim,
        manifest.metric,
        manifest.schema.clone(),
        manifest.folded_through,
    );
    if let Some(coordinator) = &coordinator_opt {
        delta = delta.with_clusters(Arc::new(coordinator.clusters.centroids.clone()));
    }
    for entry in &entries {
        delta.apply(entry)?;
    }
    if delta.is_empty() && !options.force && manifest.row_ids_key.is_some() {
        return Err(Error::invalid(
            "index",
            format!(
                "has no writes since its last compaction (log position {}); nothing to fold",
                manifest.folded_through
            ),
        ));
    }
    let mut partitions_read: BTreeMap<u32, PartitionData> = BTreeMap::new();
    let full_reason = match &coordinator_opt {
        None if options.full => "asked for".to_string(),
        None => "the version predates row ids".to_string(),
        Some(coordinator) => {
            match compact_partially(
                &store,
                &manifest,
                tag.clone(),
                coordinator,
                &delta,
                &options,
                &mut partitions_read,
                Arc::clone(&progress),
            )
            .await?
            {
                Ok(summary) => {
                    return Ok(CompactionSummary {
                        entries_folded: entries.len() as u64,
                        ..summary
                    })
                }
                Err(reason) => reason,
            }
        }
    };
    tracing::info!(reason = %full_reason, "compaction rebuilds every partition");
    for entry in &manifest.partitions {
        if let std::collections::btree_map::Entry::Vacant(slot) = partitions_read.entry(entry.id) {
            slot.insert(read_partition(store.as_ref(), entry).await?);
        }
    }
    let partitions: Vec<PartitionData> = partitions_read.into_values().collect();
    let schema = extended_schema(&manifest.schema, delta.live_rows());
    let mut input = empty_input(manifest.dim, schema);
    let mut counts = (0u64, 0u64, 0u64);
    for partition in &partitions {
        let (kept, removed) = add_kept_rows(&mut input, &manifest.schema, partition, &delta)?;
        counts.0 += kept;
        counts.2 += removed;
    }
    drop(partitions);
    counts.1 = add_written_rows(&mut input, delta.live_rows())?;
    if input.ids.is_empty() {
        return Err(Error::invalid(
            "index",
            "every row is deleted; a compaction would leave an empty index (build it again instead)",
        ));
    }
    let mut params = compaction_params(&manifest, &delta);
    // Keep the partition count the index was built with while the rows still fill it.
    let partitions_before = manifest.partitions.len();
    if input.ids.len() >= partitions_before * 64 {
        params.num_partitions = Some(partitions_before);
    }
    let build = write_version(store, input, params, progress, Some((Some(manifest), tag)))
        .await
        .map_err(conflict_named)?;
    Ok(CompactionSummary {
        partitions_rebuilt: (0..build.manifest.partitions.len() as u32).collect(),
        build,
        folded_through: delta.head(),
        entries_folded: entries.len() as u64,
        rows_kept: counts.0,
        rows_added: counts.1,
        rows_removed: counts.2,
        full_rebuild_reason: Some(full_reason),
    })
}

/// Re-encodes only the partitions the writes of `delta` touched, when nothing calls for a full
/// rebuild; `Ok(Err(reason))` says why one is needed instead. Partitions read on the way are
/// left in `partitions_read` for it.
#[allow(clippy::too_many_arguments)]
async fn compact_partially(
    store: &Arc<dyn BlobStore>,
    manifest: &Manifest,
    tag: squash_storage::ObjectTag,
    coordinator: &Arc<CoordinatorData>,
    delta: &Delta,
    options: &CompactionOptions,
    partitions_read: &mut BTreeMap<u32, PartitionData>,
    progress: Arc<dyn BuildProgress + Send>,
) -> Result<std::result::Result<CompactionSummary, String>> {
    if options.full {
        return Ok(Err("asked for".to_string()));
    }
    if delta.is_empty() {
        return Ok(Err("forced with no write to fold".to_string()));
    }
    if extended_schema(&manifest.schema, delta.live_rows()) != manifest.schema {
        return Ok(Err("the writes added categories".to_string()));
    }
    // Cells of the coordinator's quantized attributes must cover the written values.
    let mut written = empty_input(manifest.dim, manifest.schema.clone());
    add_written_rows(&mut written, delta.live_rows())?;
    if let Err(reason) = coordinator
        .attribute_quantizer
        .widened_to_cover(&written.attributes, manifest.attribute_bits)
    {
        return Ok(Err(format!(
            "a written value is outside the attribute cells ({reason})"
        )));
    }
    drop(written);
    let Some(row_ids_key) = &manifest.row_ids_key else {
        return Ok(Err("the version predates row ids".to_string()));
    };
    let bytes = store.get(row_ids_key).await?;
    let (key, num_rows) = (row_ids_key.clone(), manifest.num_vectors);
    let row_ids = decode_blocking(move || RowIds::decode(&key, bytes, num_rows)).await?;
    // The partitions touched: those holding a deleted or replaced id, those a written row is
    // filed under, and those where a delete filter may match.
    let dead = row_ids.dead_rows(coordinator, &delta.hidden_base_ids());
    let mut touched: BTreeSet<u32> = dead.ids_by_partition.keys().copied().collect();
    // Written rows by the partition of the fine cluster they are filed under.
    let mut written_to: BTreeMap<u32, Vec<&DeltaRow>> = BTreeMap::new();
    for row in delta.live_rows() {
        let partition = coordinator.clusters.partition_of[row.cluster as usize];
        written_to.entry(partition).or_default().push(row);
        touched.insert(partition);
    }
    let mut filter_may_remove = 0u64;
    for filter_json in delta.delete_filters() {
        let filter = Filter::parse(filter_json, &manifest.schema)?;
        let possible = filter.evaluate_quantized(
            &coordinator.attribute_quantizer,
            &coordinator.attribute_codes,
        );
        for (partition, range) in coordinator.partition_row_offsets.windows(2).enumerate() {
            let count = possible[range[0] as usize..range[1] as usize].count_ones() as u64;
            if count > 0 {
                touched.insert(partition as u32);
                filter_may_remove += count;
            }
        }
    }
    let drift = manifest.drift.unwrap_or(PartitionDrift {
        partitioned_rows: manifest.num_vectors,
        rows_written: 0,
    });
    let rows_written_bound =
        drift.rows_written + delta.num_live_rows() as u64 + dead.total + filter_may_remove;
    let drift_limit = options.max_drift_share * drift.partitioned_rows as f64;
    if rows_written_bound as f64 > drift_limit {
        return Ok(Err(format!(
            "{rows_written_bound} rows would have been written since the partitions were drawn from {} rows, more than the share {} allows",
            drift.partitioned_rows, options.max_drift_share
        )));
    }
    // The new rows of each touched partition.
    let mut inputs: Vec<(u32, BuildInput)> = Vec::with_capacity(touched.len());
    let (mut kept, mut removed, mut added) = (0u64, 0u64, 0u64);
    for &partition in &touched {
        let entry = &manifest.partitions[partition as usize];
        if let std::collections::btree_map::Entry::Vacant(slot) = partitions_read.entry(partition) {
            slot.insert(read_partition(store.as_ref(), entry).await?);
        }
        let mut input = empty_input(manifest.dim, manifest.schema.clone());
        let (partition_kept, partition_removed) = add_kept_rows(
            &mut input,
            &manifest.schema,
            &partitions_read[&partition],
            delta,
        )?;
        kept += partition_kept;
        removed += partition_removed;
        let written = written_to
            .get(&partition)
            .map(Vec::as_slice)
            .unwrap_or_default();
        added += add_written_rows(&mut input, written.iter().copied())?;
        inputs.push((partition, input));
    }
    let num_rows = manifest.num_vectors - removed + added;
    let mean = num_rows as f64 / manifest.partitions.len() as f64;
    for (partition, input) in &inputs {
        let size = input.ids.len() as f64;
        if size < PARTITION_SIZE_BOUNDS.0 * mean || size > PARTITION_SIZE_BOUNDS.1 * mean {
            return Ok(Err(format!(
                "partition {partition} would hold {size} rows, outside {} to {} times the mean {mean:.0}",
                PARTITION_SIZE_BOUNDS.0, PARTITION_SIZE_BOUNDS.1
            )));
        }
    }
    let ids_in_row_order = row_ids.ids_in_row_order();
    drop(row_ids);
    let params = compaction_params(manifest, delta);
    let version = params.index_version.clone();
    let previous = manifest.clone();
    let coordinator = Arc::clone(coordinator);
    let partitions_rebuilt: Vec<u32> = touched.iter().copied().collect();
    let new_drift = PartitionDrift {
        partitioned_rows: drift.partitioned_rows,
        rows_written: drift.rows_written + removed + added,
    };
    let build = publish_version(
        Arc::clone(store),
        version,
        Some((Some(manifest.clone()), tag)),
        move |emit| {
            rebuild_partitions(
                PartialRebuild {
                    previous: &previous,
                    coordinator: &coordinator,
                    ids_in_row_order: &ids_in_row_order,
                    partitions: inputs,
                    drift: new_drift,
                },
                &params,
                progress.as_ref(),
                emit,
            )
        },
    )
    .await
    .map_err(conflict_named)?;
    Ok(Ok(CompactionSummary {
        build,
        folded_through: delta.head(),
        entries_folded: 0,
        rows_kept: kept,
        rows_added: added,
        rows_removed: removed,
        partitions_rebuilt,
        full_rebuild_reason: None,
    }))
}

/// The parameters of a compaction's version: the replaced version's, a new version id, and
/// the log position `delta` reaches.
fn compaction_params(manifest: &Manifest, delta: &Delta) -> BuildParams {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let mut params = BuildParams::new(manifest.metric, format!("{:x}", now.as_nanos()));
    params.bits_per_dim = manifest.bits_per_dim;
    params.attribute_bits = manifest.attribute_bits;
    params.seed = manifest.seed;
    params.created_unix_s = now.as_secs();
    params.folded_through = delta.head();
    params.retain_versions_s = manifest.retain_versions_s;
    params
}

fn conflict_named(error: Error) -> Error {
    match error {
        Error::Conflict { .. } => Error::Conflict {
            message: "another build or compaction of this index switched its manifest while this compaction ran; this compaction's objects were removed, and no write is lost (the log still holds every write the other version did not fold)".to_string(),
        },
        other => other,
    }
}

async fn read_partition(store: &dyn BlobStore, entry: &PartitionEntry) -> Result<PartitionData> {
    let bytes = store.get(&entry.key).await?;
    decode_partition(entry.key.clone(), bytes, entry.id).await
}

fn empty_input(dim: usize, schema: AttributeSchema) -> BuildInput {
    BuildInput {
        dim,
        vectors: Vec::new(),
        ids: Vec::new(),
        attributes: AttributeTable::with_columns(schema.num_columns(), 0),
        schema,
    }
}

/// Appends the rows of `partition` that no write of `delta` hid to `input` (whose schema
/// extends `schema`, the partition's), and returns (rows kept, rows removed).
fn add_kept_rows(
    input: &mut BuildInput,
    schema: &AttributeSchema,
    partition: &PartitionData,
    delta: &Delta,
) -> Result<(u64, u64)> {
    let dim = input.dim;
    let (mut kept, mut removed) = (0u64, 0u64);
    let deleted_by_filter = delta.deleted_base_rows(&partition.attributes)?;
    for row in 0..partition.num_vectors() {
        let id = partition.ids[row];
        let hidden = !matches!(
            delta.lookup(id),
            squash_core::writes::DeltaLookup::Untouched
        ) || deleted_by_filter[row];
        if hidden {
            removed += 1;
            continue;
        }
        kept += 1;
        input.ids.push(id);
        input
            .vectors
            .extend_from_slice(&partition.vectors[row * dim..(row + 1) * dim]);
        for (column_index, column) in input.schema.columns.iter().enumerate() {
            let value = partition.attributes.columns[column_index][row];
            let value = match column.kind {
                // Dictionaries grew: a code of the old dictionary is a code of the new one
                // only through its string.
                AttributeKind::Categorical => {
                    let text = &schema.columns[column_index].dictionary[value as usize];
                    f64::from(column.code_of(text).ok_or_else(|| {
                        Error::internal(format!("category '{text}' lost from the dictionary"))
                    })?)
                }
                AttributeKind::Integer | AttributeKind::Float => value,
            };
            input.attributes.columns[column_index].push(value);
        }
    }
    input.attributes.num_rows = input.ids.len();
    Ok((kept, removed))
}

/// Appends written rows to `input` (whose schema holds their categories) and returns how many.
fn add_written_rows<'a>(
    input: &mut BuildInput,
    rows: impl Iterator<Item = &'a DeltaRow>,
) -> Result<u64> {
    let mut added = 0u64;
    for row in rows {
        added += 1;
        input.ids.push(row.id);
        input.vectors.extend_from_slice(&row.vector);
        for (column_index, column) in input.schema.columns.iter().enumerate() {
            let value = &row.attributes[&column.name];
            let number = match column.kind {
                AttributeKind::Categorical => value
                    .as_str()
                    .and_then(|text| column.code_of(text))
                    .map(f64::from),
                AttributeKind::Integer | AttributeKind::Float => value.as_f64(),
            };
            input.attributes.columns[column_index].push(number.ok_or_else(|| {
                Error::internal(format!(
                    "row {} has no usable value for '{}': {}",
                    row.id,
                    column.name,
                    Value::clone(value)
                ))
            })?);
        }
    }
    input.attributes.num_rows = input.ids.len();
    Ok(added)
}
