//! Compaction: folding the writes of the log into a new version of the partitions.
//!
//! The index's live rows (the partitions' rows that no write hid, and the rows the log
//! upserted) are built into a new version like a build from files, with the same parameters,
//! and the manifest switches to it on the condition that it is still the one the compaction
//! read: of two compactions (or a compaction and a build) of one index, one wins and the other
//! fails with `Error::Conflict`, having changed nothing. Writes committed while it runs stay in
//! the log after the position it folded, and are applied over the new version, so none is lost.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;

use squash_core::attributes::{AttributeKind, AttributeSchema, AttributeTable};
use squash_core::error::{Error, Result};
use squash_core::index::build::{BuildInput, BuildParams, BuildProgress, BuildSummary};
use squash_core::index::{Manifest, PartitionData};
use squash_core::writes::delta::extended_schema;
use squash_core::writes::Delta;
use squash_storage::BlobStore;

use crate::publish::{read_manifest_tagged, write_version};
use crate::write_log;

/// What a compaction did.
#[derive(Debug, Clone)]
pub struct CompactionSummary {
    /// The new version's build summary.
    pub build: BuildSummary,
    /// The log position it folded through.
    pub folded_through: u64,
    /// Log entries folded in.
    pub entries_folded: u64,
    /// Live rows before and after: partition rows kept, and unfolded rows added.
    pub rows_kept: u64,
    /// Rows the log upserted, now in the partitions.
    pub rows_added: u64,
    /// Partition rows removed (deleted or replaced).
    pub rows_removed: u64,
}

/// Folds every write committed to the log of the index in `store` (a store of its own) into a
/// new version. Fails with `InvalidInput` when there is nothing to fold (unless `force`), and
/// with `Conflict` when another build or compaction switched the manifest meanwhile.
pub async fn compact_index(
    store: Arc<dyn BlobStore>,
    force: bool,
    progress: Arc<dyn BuildProgress + Send>,
) -> Result<CompactionSummary> {
    let Some((Some(manifest), tag)) = read_manifest_tagged(store.as_ref()).await? else {
        return Err(Error::NotFound {
            what: "the index's manifest".to_string(),
        });
    };
    let entries = write_log::read_after(store.as_ref(), "", manifest.folded_through, true).await?;
    let mut delta = Delta::new(
        manifest.dim,
        manifest.metric,
        manifest.schema.clone(),
        manifest.folded_through,
    );
    for entry in &entries {
        delta.apply(entry)?;
    }
    if delta.is_empty() && !force && manifest.row_ids_key.is_some() {
        return Err(Error::invalid(
            "index",
            format!(
                "has no writes since its last compaction (log position {}); nothing to fold",
                manifest.folded_through
            ),
        ));
    }
    let mut partitions = Vec::with_capacity(manifest.partitions.len());
    for entry in &manifest.partitions {
        let bytes = store.get(&entry.key).await?;
        let key = entry.key.clone();
        partitions.push(
            tokio::task::spawn_blocking(move || PartitionData::decode(&key, bytes))
                .await
                .map_err(|e| Error::internal(format!("decode task failed: {e}")))??,
        );
    }
    let (input, counts) = live_input(&manifest, &partitions, &delta)?;
    drop(partitions);
    if input.ids.is_empty() {
        return Err(Error::invalid(
            "index",
            "every row is deleted; a compaction would leave an empty index (build it again instead)",
        ));
    }
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
    // Keep the partition count the index was built with while the rows still fill it.
    let partitions_before = manifest.partitions.len();
    if input.ids.len() >= partitions_before * 64 {
        params.num_partitions = Some(partitions_before);
    }
    let build = write_version(store, input, params, progress, Some((Some(manifest), tag)))
        .await
        .map_err(|error| match error {
            Error::Conflict { .. } => Error::Conflict {
                message: "another build or compaction of this index switched its manifest while this compaction ran; this compaction's objects were removed, and no write is lost (the log still holds every write the other version did not fold)".to_string(),
            },
            other => other,
        })?;
    Ok(CompactionSummary {
        build,
        folded_through: delta.head(),
        entries_folded: entries.len() as u64,
        rows_kept: counts.0,
        rows_added: counts.1,
        rows_removed: counts.2,
    })
}

/// Returns the live rows as a build input, and (partition rows kept, unfolded rows added,
/// partition rows removed).
fn live_input(
    manifest: &Manifest,
    partitions: &[PartitionData],
    delta: &Delta,
) -> Result<(BuildInput, (u64, u64, u64))> {
    let dim = manifest.dim;
    let schema: AttributeSchema = extended_schema(&manifest.schema, delta.live_rows());
    let mut input = BuildInput {
        dim,
        vectors: Vec::new(),
        ids: Vec::new(),
        attributes: AttributeTable::with_columns(schema.num_columns(), 0),
        schema: schema.clone(),
    };
    let (mut kept, mut removed) = (0u64, 0u64);
    for partition in partitions {
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
            for (column_index, column) in schema.columns.iter().enumerate() {
                let value = partition.attributes.columns[column_index][row];
                let value = match column.kind {
                    // Dictionaries grew: a code of the old dictionary is a code of the new one
                    // only through its string.
                    AttributeKind::Categorical => {
                        let text =
                            &manifest.schema.columns[column_index].dictionary[value as usize];
                        f64::from(column.code_of(text).ok_or_else(|| {
                            Error::internal(format!("category '{text}' lost from the dictionary"))
                        })?)
                    }
                    AttributeKind::Integer | AttributeKind::Float => value,
                };
                input.attributes.columns[column_index].push(value);
            }
        }
    }
    let mut added = 0u64;
    for row in delta.live_rows() {
        added += 1;
        input.ids.push(row.id);
        input.vectors.extend_from_slice(&row.vector);
        for (column_index, column) in schema.columns.iter().enumerate() {
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
    Ok((input, (kept, added, removed)))
}
