//! Encoding and decoding of the three object kinds: manifest, coordinator, partition segment.
//!
//! Block names are part of the format (version 1). Arrays are little-endian; small metadata
//! is JSON inside a block, so it stays readable with `squash inspect` and extensible.

use serde::{Deserialize, Serialize};

use crate::attributes::{AttributeSchema, AttributeTable};
use crate::codec::{FastScanCodes, OsqLayout, OsqQuantizer, Sq8Rows};
use crate::error::{Error, Result};
use crate::filter::{AttributeQuantizer, ColumnPostings, QuantizedAttributes, SortedColumns};
use crate::format::{self, Container, ContainerWriter, ObjectKind};
use crate::index::clusters::FineClusters;
use crate::linalg::Pca;
use crate::metric::Metric;

/// Key of the manifest inside an index prefix.
pub const MANIFEST_KEY: &str = "manifest.sqsh";

/// The largest bits-per-dimension budget a build accepts (a code is at most one byte).
const MAX_BITS_PER_DIM_BUDGET: f32 = 8.0;

/// Bytes of vectors per chunk of a segment's row arrays, about: small enough that reading the
/// rows of a few fine clusters by range fetches little else, large enough that a partition of
/// 50,000 rows keeps its table of contents within the 64 KiB a reader takes from the end.
const ROW_CHUNK_VECTOR_BYTES: usize = 64 * 1024;

/// Returns the rows per chunk of a segment's row arrays for vectors of `dim` dimensions:
/// about [`ROW_CHUNK_VECTOR_BYTES`] of vectors, a multiple of 32 (a fast-scan block), at least
/// 32.
pub fn segment_rows_per_chunk(dim: usize) -> usize {
    (ROW_CHUNK_VECTOR_BYTES / (dim.max(1) * 4)).max(32) / 32 * 32
}

/// One partition as the manifest lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartitionEntry {
    /// Partition id (0-based, dense).
    pub id: u32,
    /// Object key, relative to the index prefix.
    pub key: String,
    /// Vectors in the partition.
    pub num_vectors: u64,
    /// Size of the segment object in bytes.
    pub size_bytes: u64,
}

/// The manifest: the single entry point of an index.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Format version of the objects.
    pub format_version: u32,
    /// Unique version of this build; object keys start with `v<version>/`.
    pub index_version: String,
    /// Build time, seconds since the Unix epoch.
    pub created_unix_s: u64,
    /// Distance metric.
    pub metric: Metric,
    /// Vector dimension.
    pub dim: usize,
    /// Total vectors.
    pub num_vectors: u64,
    /// Attribute schema.
    pub schema: AttributeSchema,
    /// Coordinator object key.
    pub coordinator_key: String,
    /// Partitions.
    pub partitions: Vec<PartitionEntry>,
    /// Bits per dimension budget used for the OSQ codes.
    pub bits_per_dim: f32,
    /// Bits per attribute in the coordinator's quantized attributes.
    pub attribute_bits: u32,
    /// Seed used for the build.
    pub seed: u64,
    /// Total bytes of all objects (excluding the manifest).
    pub total_bytes: u64,
    /// The write-log positions this version holds: log entries up to here are in its
    /// partitions, later ones are applied over them (`crate::writes`). 0 before any write.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub folded_through: u64,
    /// The row-ids object (`crate::writes::RowIds`), relative to the index prefix; absent in
    /// versions written before it existed, which take no writes until compacted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub row_ids_key: Option<String>,
    /// The version this one replaced, if any: the chain of versions kept for time travel and
    /// for readers in flight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_version: Option<String>,
    /// When the manifest was switched to this version, milliseconds since the Unix epoch (the
    /// moment the version before it stopped being served). 0 in versions written before it
    /// was recorded.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub published_unix_ms: u64,
    /// How long a version stays readable after a newer one replaced it, in seconds (time
    /// travel reaches back that far); `None` is [`DEFAULT_RETAIN_VERSIONS_S`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retain_versions_s: Option<u64>,
    /// Rows written into the partitions since their centroids were last drawn (by a full
    /// build), against the rows they were drawn from: a compaction that re-encodes only the
    /// partitions writes touched keeps the centroids, so it rebuilds fully once the writes
    /// drift too far from them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift: Option<PartitionDrift>,
}

/// The default of [`Manifest::retain_versions_s`]: a day.
pub const DEFAULT_RETAIN_VERSIONS_S: u64 = 24 * 3600;

/// See [`Manifest::drift`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionDrift {
    /// Rows of the full build that drew the partition centroids.
    pub partitioned_rows: u64,
    /// Rows added to or removed from the partitions by compactions since.
    pub rows_written: u64,
}

/// Returns the key of the copy of version `version`'s manifest kept beside its objects (read
/// for time travel and to find which versions are still retained).
pub fn version_manifest_key(version: &str) -> String {
    format!("v{version}/manifest.sqsh")
}

fn is_zero(value: &u64) -> bool {
    *value == 0
}

impl Manifest {
    /// Returns how long versions replaced by this one stay readable.
    pub fn retain_versions(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.retain_versions_s.unwrap_or(DEFAULT_RETAIN_VERSIONS_S))
    }

    /// Returns every object key this version reads (relative to the index prefix), its
    /// manifest copy included. A version re-encoding only some partitions reads the others'
    /// segments from the versions that wrote them.
    pub fn object_keys(&self) -> Vec<String> {
        let mut keys = vec![
            version_manifest_key(&self.index_version),
            self.coordinator_key.clone(),
        ];
        keys.extend(self.row_ids_key.iter().cloned());
        keys.extend(self.partitions.iter().map(|entry| entry.key.clone()));
        keys
    }

    /// Returns the segment key of each partition whose segment is not under this version
    /// (kept from the version that wrote it by a compaction that re-encoded other partitions):
    /// what a [`crate::protocol::WorkerRequest`] tells its workers.
    pub fn segment_keys_elsewhere(&self) -> std::collections::BTreeMap<u32, String> {
        // Read per request: one allocation, and one per segment kept from elsewhere.
        let own_prefix = format!("v{}/", self.index_version);
        self.partitions
            .iter()
            .filter(|entry| !entry.key.starts_with(&own_prefix))
            .map(|entry| (entry.id, entry.key.clone()))
            .collect()
    }

    /// Returns the manifest object's bytes.
    pub fn encode(&self) -> Result<Vec<u8>> {
        let json = serde_json::to_vec_pretty(self)
            .map_err(|e| Error::invalid("manifest", format!("cannot encode: {e}")))?;
        let mut writer = ContainerWriter::new(ObjectKind::Manifest);
        writer.add_block("manifest", &json)?;
        writer.finish()
    }

    /// Decodes a manifest object.
    ///
    /// Fails with `Corrupt` for a value the build never writes and [`Manifest::encode`]
    /// could not write back: a JSON number beyond `f32` range becomes an infinite
    /// `bits_per_dim`, which JSON cannot carry.
    pub fn decode(object: &str, bytes: Vec<u8>) -> Result<Manifest> {
        let container = Container::open(object, bytes, ObjectKind::Manifest)?;
        let json = container.block("manifest")?;
        let manifest: Manifest = serde_json::from_slice(&json)
            .map_err(|e| Error::corrupt(object, 0, format!("manifest JSON: {e}")))?;
        if !(manifest.bits_per_dim > 0.0 && manifest.bits_per_dim <= MAX_BITS_PER_DIM_BUDGET) {
            return Err(Error::corrupt(
                object,
                0,
                format!(
                    "bits_per_dim {} is outside (0, {MAX_BITS_PER_DIM_BUDGET}]",
                    manifest.bits_per_dim
                ),
            ));
        }
        Ok(manifest)
    }
}

/// Small coordinator metadata stored as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct CoordinatorMeta {
    metric: Metric,
    dim: usize,
    num_partitions: usize,
    partition_sizes: Vec<u64>,
    schema: AttributeSchema,
    attribute_quantizer: AttributeQuantizer,
}

/// What the coordinator stage needs: centroids and the quantized attributes of all vectors.
///
/// Attribute codes are stored in partition order (partition 0's vectors, then partition 1's,
/// ...), so one partition's share of a filter bitmap is a contiguous bit range.
#[derive(Debug, Clone)]
pub struct CoordinatorData {
    /// Distance metric.
    pub metric: Metric,
    /// Vector dimension.
    pub dim: usize,
    /// Vectors per partition.
    pub partition_sizes: Vec<u64>,
    /// First row of each partition in the attribute codes, plus the total at the end.
    pub partition_row_offsets: Vec<u64>,
    /// Partition centroids, `num_partitions x dim`, in the (normalised, for cosine) vector space.
    pub centroids: Vec<f32>,
    /// Attribute schema.
    pub schema: AttributeSchema,
    /// Per-attribute quantizer.
    pub attribute_quantizer: AttributeQuantizer,
    /// Quantized attributes in partition order.
    pub attribute_codes: QuantizedAttributes,
    /// Every fine cluster of the index, partition after partition.
    pub clusters: ClusterDirectory,
    /// The rows of each attribute code column grouped by code, built on first use by a
    /// selective filter.
    pub attribute_postings: ColumnPostings,
}

/// The fine clusters of all partitions, flattened for ranking: cluster `c` belongs to partition
/// `partition_of[c]` and holds global rows `row_offsets[c]..row_offsets[c + 1]` (rows in the
/// coordinator's partition order).
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterDirectory {
    /// `num_clusters x dim` centroids, row-major.
    pub centroids: Vec<f32>,
    /// Partition of each cluster.
    pub partition_of: Vec<u32>,
    /// First global row of each cluster, plus the total at the end.
    pub row_offsets: Vec<u64>,
}

impl ClusterDirectory {
    /// Returns the number of clusters.
    pub fn num_clusters(&self) -> usize {
        self.partition_of.len()
    }

    /// Returns the rows of cluster `cluster`.
    pub fn rows_in(&self, cluster: usize) -> u64 {
        self.row_offsets[cluster + 1] - self.row_offsets[cluster]
    }

    /// Builds the directory from per-partition cluster counts and sizes, checking them against
    /// the partition sizes; `object` is named in errors.
    pub fn from_parts(
        object: &str,
        dim: usize,
        partition_sizes: &[u64],
        clusters_per_partition: &[u64],
        cluster_sizes: &[u64],
        centroids: Vec<f32>,
    ) -> Result<ClusterDirectory> {
        let corrupt = |what: String| Error::corrupt(object, 0, what);
        if clusters_per_partition.len() != partition_sizes.len() {
            return Err(corrupt(format!(
                "fine cluster counts for {} partitions, expected {}",
                clusters_per_partition.len(),
                partition_sizes.len()
            )));
        }
        let num_clusters = clusters_per_partition
            .iter()
            .try_fold(0u64, |sum, &count| sum.checked_add(count));
        if num_clusters != Some(cluster_sizes.len() as u64)
            || Some(centroids.len()) != cluster_sizes.len().checked_mul(dim)
        {
            return Err(corrupt(
                "fine cluster counts, sizes and centroids do not agree".to_string(),
            ));
        }
        let mut partition_of = Vec::with_capacity(cluster_sizes.len());
        let mut row_offsets = Vec::with_capacity(cluster_sizes.len() + 1);
        let mut next_cluster = 0usize;
        let mut row = 0u64;
        for (partition, (&count, &partition_size)) in clusters_per_partition
            .iter()
            .zip(partition_sizes)
            .enumerate()
        {
            let mut partition_rows = 0u64;
            for &size in &cluster_sizes[next_cluster..next_cluster + count as usize] {
                partition_of.push(partition as u32);
                row_offsets.push(row);
                row = row.saturating_add(size);
                partition_rows = partition_rows.saturating_add(size);
            }
            next_cluster += count as usize;
            if partition_rows != partition_size {
                return Err(corrupt(format!(
                    "the fine clusters of partition {partition} hold {partition_rows} rows, \
                     the partition {partition_size}"
                )));
            }
        }
        row_offsets.push(row);
        Ok(ClusterDirectory {
            centroids,
            partition_of,
            row_offsets,
        })
    }
}

impl CoordinatorData {
    /// Returns the number of partitions.
    pub fn num_partitions(&self) -> usize {
        self.partition_sizes.len()
    }

    /// Checks that this coordinator object (read from `object`) belongs to `manifest`.
    pub fn check_matches(&self, manifest: &Manifest, object: &str) -> Result<()> {
        if self.num_partitions() != manifest.partitions.len() || self.dim != manifest.dim {
            return Err(Error::corrupt(object, 0, "does not match the manifest"));
        }
        Ok(())
    }

    /// Returns the coordinator object's bytes.
    pub fn encode(&self) -> Result<Vec<u8>> {
        let meta = CoordinatorMeta {
            metric: self.metric,
            dim: self.dim,
            num_partitions: self.num_partitions(),
            partition_sizes: self.partition_sizes.clone(),
            schema: self.schema.clone(),
            attribute_quantizer: self.attribute_quantizer.clone(),
        };
        let mut writer = ContainerWriter::new(ObjectKind::Coordinator);
        let json = serde_json::to_vec(&meta)
            .map_err(|e| Error::invalid("coordinator", format!("cannot encode metadata: {e}")))?;
        writer.add_block("meta", &json)?;
        writer.add_block("centroids", &format::f32s_to_le_bytes(&self.centroids))?;
        let mut clusters_per_partition = vec![0u64; self.num_partitions()];
        for &partition in &self.clusters.partition_of {
            clusters_per_partition[partition as usize] += 1;
        }
        let cluster_sizes: Vec<u64> = (0..self.clusters.num_clusters())
            .map(|cluster| self.clusters.rows_in(cluster))
            .collect();
        writer.add_block(
            "clusters.per_partition",
            &format::u64s_to_le_bytes(&clusters_per_partition),
        )?;
        writer.add_block("clusters.sizes", &format::u64s_to_le_bytes(&cluster_sizes))?;
        writer.add_block(
            "clusters.centroids",
            &format::f32s_to_le_bytes(&self.clusters.centroids),
        )?;
        for (column, codes) in self.attribute_codes.columns.iter().enumerate() {
            writer.add_block(&format!("attribute_codes.{column}"), codes)?;
        }
        writer.finish()
    }

    /// Decodes a coordinator object, checking every length against the metadata.
    pub fn decode(object: &str, bytes: Vec<u8>) -> Result<CoordinatorData> {
        let container = Container::open(object, bytes, ObjectKind::Coordinator)?;
        let meta: CoordinatorMeta = serde_json::from_slice(&container.block("meta")?)
            .map_err(|e| Error::corrupt(object, 0, format!("coordinator metadata: {e}")))?;
        let centroids =
            format::le_bytes_to_f32s(object, "centroids", &container.block("centroids")?)?;
        // Checked: dim and the partition count are stored values, and a product that wrapped
        // around could match a short centroid block.
        let num_centroid_values = meta.num_partitions.checked_mul(meta.dim);
        if meta.partition_sizes.len() != meta.num_partitions
            || num_centroid_values != Some(centroids.len())
        {
            return Err(Error::corrupt(
                object,
                0,
                "centroid count does not match the partition count",
            ));
        }
        if meta.attribute_quantizer.columns.len() != meta.schema.num_columns() {
            return Err(Error::corrupt(
                object,
                0,
                format!(
                    "{} attribute quantizers for {} attribute columns",
                    meta.attribute_quantizer.columns.len(),
                    meta.schema.num_columns()
                ),
            ));
        }
        let mut partition_row_offsets = Vec::with_capacity(meta.num_partitions + 1);
        let mut total = 0u64;
        for &size in &meta.partition_sizes {
            partition_row_offsets.push(total);
            total = total.checked_add(size).ok_or_else(|| {
                Error::corrupt(object, 0, "partition sizes add up beyond 2^64 vectors")
            })?;
        }
        partition_row_offsets.push(total);
        let mut columns = Vec::with_capacity(meta.schema.num_columns());
        for column in 0..meta.schema.num_columns() {
            let codes = container.block(&format!("attribute_codes.{column}"))?;
            if codes.len() as u64 != total {
                return Err(Error::corrupt(
                    object,
                    0,
                    format!(
                        "attribute column {column} has {} codes, expected {total}",
                        codes.len()
                    ),
                ));
            }
            columns.push(codes);
        }
        // A coordinator written before fine clusters existed: one cluster per partition, at
        // the partition centroid.
        let clusters = if container.toc().entry("clusters.per_partition").is_some() {
            let per_partition = format::le_bytes_to_u64s(
                object,
                "clusters.per_partition",
                &container.block("clusters.per_partition")?,
            )?;
            let sizes = format::le_bytes_to_u64s(
                object,
                "clusters.sizes",
                &container.block("clusters.sizes")?,
            )?;
            let centroids = format::le_bytes_to_f32s(
                object,
                "clusters.centroids",
                &container.block("clusters.centroids")?,
            )?;
            ClusterDirectory::from_parts(
                object,
                meta.dim,
                &meta.partition_sizes,
                &per_partition,
                &sizes,
                centroids,
            )?
        } else {
            ClusterDirectory::from_parts(
                object,
                meta.dim,
                &meta.partition_sizes,
                &vec![1; meta.num_partitions],
                &meta.partition_sizes,
                centroids.clone(),
            )?
        };
        let num_columns = columns.len();
        Ok(CoordinatorData {
            metric: meta.metric,
            dim: meta.dim,
            partition_sizes: meta.partition_sizes,
            partition_row_offsets,
            centroids,
            schema: meta.schema,
            attribute_quantizer: meta.attribute_quantizer,
            attribute_codes: QuantizedAttributes {
                num_rows: total as usize,
                columns,
            },
            attribute_postings: ColumnPostings::new(num_columns),
            clusters,
        })
    }
}

/// Small segment metadata stored as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct SegmentMeta {
    pub(crate) partition: u32,
    pub(crate) num_vectors: usize,
    pub(crate) dim: usize,
    pub(crate) metric: Metric,
    pub(crate) num_sign_bits: usize,
    pub(crate) osq: OsqQuantizer,
    pub(crate) schema: AttributeSchema,
}

/// The quantized representation of a partition's rows (SQUASH's OSQ codes and the sign codes
/// of the Hamming pre-filter), in the coordinates of the partition's own PCA.
#[derive(Debug, Clone)]
pub struct QuantizedCodes {
    /// Local PCA of the partition.
    pub pca: Pca,
    /// OSQ quantizer.
    pub osq: OsqQuantizer,
    /// Layout derived from `osq`.
    pub layout: OsqLayout,
    /// Packed OSQ codes, plane-major.
    pub planes: Vec<u8>,
    /// Sign bits per vector.
    pub num_sign_bits: usize,
    /// Sign codes, row-major, `words_for_bits(num_sign_bits)` words per vector.
    pub sign_codes: Vec<u64>,
    /// Per vector, `[‖z_s‖, ‖z_r‖²]`: the norm of its rotated, centered coordinates inside the
    /// sign subspace and the squared norm outside it; they turn a Hamming distance into a
    /// distance estimate.
    pub sign_norms: Vec<f32>,
}

impl QuantizedCodes {
    /// Returns the heap bytes the codes and the PCA hold.
    pub fn memory_bytes(&self) -> usize {
        let pca_bytes =
            (self.pca.mean.len() + self.pca.components.len() + self.pca.variances.len()) * 4;
        let osq_bytes = self.osq.bits.len() + self.osq.boundaries.len() * 4;
        pca_bytes
            + osq_bytes
            + self.planes.len()
            + self.sign_codes.len() * 8
            + self.sign_norms.len() * 4
    }
}

/// One partition, decoded: everything a worker needs to search it.
#[derive(Debug, Clone)]
pub struct PartitionData {
    /// Partition id.
    pub partition: u32,
    /// Vector dimension.
    pub dim: usize,
    /// Distance metric.
    pub metric: Metric,
    /// Rows of the whole segment: more than `ids.len()` in a partition read by range, which
    /// holds only the probed clusters' rows.
    pub segment_rows: usize,
    /// External ids, one per vector.
    pub ids: Vec<u64>,
    /// Full-precision vectors, row-major (normalised for cosine), for exact re-ranking.
    pub vectors: Vec<f32>,
    /// Raw attributes, for the exact filter.
    pub attributes: AttributeTable,
    /// Attribute schema.
    pub schema: AttributeSchema,
    /// The OSQ and sign codes with the partition's PCA; `None` in a partition read by range
    /// (its probed rows only: plane-major codes cannot be read by row), which scores by the
    /// other methods.
    pub quantized: Option<QuantizedCodes>,
    /// Fine clusters: contiguous row ranges and their centroids.
    pub clusters: FineClusters,
    /// 4-bit fast-scan codes of the vectors; `None` in segments written before they existed,
    /// whose scans score by the other methods.
    pub fastscan: Option<FastScanCodes>,
    /// The rows of each raw attribute column in value order, built on first use by a
    /// selective filter.
    pub sorted_attributes: SortedColumns,
    /// 8-bit codes of the vectors, row-major, for scoring scattered candidates
    /// (`search/scan.rs`): built by a worker with the decode of a partition it caches,
    /// otherwise on first use ([`PartitionData::sq8_rows`]).
    pub sq8_rows: std::sync::OnceLock<Sq8Rows>,
}

impl PartitionData {
    /// Returns the number of vectors.
    pub fn num_vectors(&self) -> usize {
        self.ids.len()
    }

    /// Returns the 8-bit codes of the vectors, building them the first time.
    pub fn sq8_rows(&self) -> &Sq8Rows {
        self.sq8_rows
            .get_or_init(|| Sq8Rows::encode(&self.vectors, self.dim))
    }

    /// Returns the heap bytes the decoded partition holds (its arrays; small metadata is
    /// rounded into a fixed allowance), the figure a memory-bounded cache charges for it.
    pub fn memory_bytes(&self) -> usize {
        const METADATA_ALLOWANCE_BYTES: usize = 4096;
        let attribute_bytes: usize = self
            .attributes
            .columns
            .iter()
            .map(|column| column.len() * std::mem::size_of::<f64>())
            .sum();
        self.ids.len() * 8
            + self.vectors.len() * 4
            + attribute_bytes
            + self.quantized.as_ref().map_or(0, QuantizedCodes::memory_bytes)
            + self.clusters.sizes.len() * 8
            + self.clusters.centroids.len() * 4
            + self.fastscan.as_ref().map_or(0, FastScanCodes::memory_bytes)
            // The sorted columns a selective filter builds on first use: a value and a row
            // per row and column.
            + attribute_bytes / 8 * 12
            // The 8-bit row codes (built with the decode of a cached partition).
            + Sq8Rows::memory_bytes_for(self.ids.len(), self.dim)
            + METADATA_ALLOWANCE_BYTES
    }

    /// Returns the segment object's bytes.
    ///
    /// Layout for readers by range: the row arrays (ids, attributes, vectors) come first,
    /// interleaved by chunks of [`segment_rows_per_chunk`] rows, so the rows of a run of fine
    /// clusters are one contiguous range; the quantized codes follow; the blocks a cold reader
    /// needs first (meta, fine clusters, fast-scan cells) come last, just before the table of
    /// contents, so that one read from the end usually covers both. Fails for a partition read
    /// by range (it has no quantized codes to write).
    pub fn encode(&self) -> Result<Vec<u8>> {
        let Some(quantized) = &self.quantized else {
            return Err(Error::invalid(
                "segment",
                "a partition read by range holds only some rows and cannot be written",
            ));
        };
        let meta = SegmentMeta {
            partition: self.partition,
            num_vectors: self.num_vectors(),
            dim: self.dim,
            metric: self.metric,
            num_sign_bits: quantized.num_sign_bits,
            osq: quantized.osq.clone(),
            schema: self.schema.clone(),
        };
        let mut writer = ContainerWriter::new(ObjectKind::Segment);
        let ids = format::u64s_to_le_bytes(&self.ids);
        let attribute_names: Vec<String> = (0..self.attributes.columns.len())
            .map(|column| format!("attributes.{column}"))
            .collect();
        let attribute_bytes: Vec<Vec<u8>> = self
            .attributes
            .columns
            .iter()
            .map(|values| {
                let bits: Vec<u64> = values.iter().map(|v| v.to_bits()).collect();
                format::u64s_to_le_bytes(&bits)
            })
            .collect();
        let vectors = format::f32s_to_le_bytes(&self.vectors);
        let mut arrays: Vec<(&str, &[u8], usize)> = vec![("ids", &ids, 8)];
        for (name, bytes) in attribute_names.iter().zip(&attribute_bytes) {
            arrays.push((name, bytes, 8));
        }
        arrays.push(("vectors", &vectors, self.dim.max(1) * 4));
        writer.add_row_groups(&arrays, segment_rows_per_chunk(self.dim))?;
        let pca = &quantized.pca;
        writer.add_block("pca.mean", &format::f32s_to_le_bytes(&pca.mean))?;
        writer.add_block("pca.components", &format::f32s_to_le_bytes(&pca.components))?;
        writer.add_block("pca.variances", &format::f32s_to_le_bytes(&pca.variances))?;
        writer.add_block("osq.planes", &quantized.planes)?;
        writer.add_block(
            "sign_codes",
            &format::u64s_to_le_bytes(&quantized.sign_codes),
        )?;
        writer.add_block(
            "sign_norms",
            &format::f32s_to_le_bytes(&quantized.sign_norms),
        )?;
        if let Some(fastscan) = &self.fastscan {
            writer.add_block("fastscan.codes", &fastscan.codes)?;
        }
        let json = serde_json::to_vec(&meta)
            .map_err(|e| Error::invalid("segment", format!("cannot encode metadata: {e}")))?;
        writer.add_block("meta", &json)?;
        writer.add_block(
            "clusters.sizes",
            &format::u64s_to_le_bytes(&self.clusters.sizes),
        )?;
        if self.clusters.has_centroids() {
            writer.add_block(
                "clusters.centroids",
                &format::f32s_to_le_bytes(&self.clusters.centroids),
            )?;
        }
        if let Some(fastscan) = &self.fastscan {
            writer.add_block("fastscan.lows", &format::f32s_to_le_bytes(&fastscan.lows))?;
            writer.add_block("fastscan.steps", &format::f32s_to_le_bytes(&fastscan.steps))?;
        }
        writer.finish()
    }

    /// Decodes a segment object, checking every length against the metadata.
    pub fn decode(object: &str, bytes: Vec<u8>) -> Result<PartitionData> {
        let container = Container::open(object, bytes, ObjectKind::Segment)?;
        let meta: SegmentMeta = serde_json::from_slice(&container.block("meta")?)
            .map_err(|e| Error::corrupt(object, 0, format!("segment metadata: {e}")))?;
        let (n, dim) = (meta.num_vectors, meta.dim);
        let expect_len = |what: &str, found: usize, expected: usize| -> Result<()> {
            if found == expected {
                Ok(())
            } else {
                Err(Error::corrupt(
                    object,
                    0,
                    format!("{what} has {found} values, expected {expected}"),
                ))
            }
        };
        // Expected lengths are products of stored values: a product that wrapped around could
        // match a short block, so an overflow is corrupt.
        let product = |what: &str, a: usize, b: usize| -> Result<usize> {
            a.checked_mul(b).ok_or_else(|| {
                Error::corrupt(object, 0, format!("{what}: {a} x {b} values overflow"))
            })
        };
        let mean = format::le_bytes_to_f32s(object, "pca.mean", &container.block("pca.mean")?)?;
        let components = format::le_bytes_to_f32s(
            object,
            "pca.components",
            &container.block("pca.components")?,
        )?;
        let variances =
            format::le_bytes_to_f32s(object, "pca.variances", &container.block("pca.variances")?)?;
        expect_len("pca.mean", mean.len(), dim)?;
        expect_len(
            "pca.components",
            components.len(),
            product("pca.components", dim, dim)?,
        )?;
        expect_len("pca.variances", variances.len(), dim)?;
        let ids = format::le_bytes_to_u64s(object, "ids", &block_or_rows(&container, "ids")?)?;
        expect_len("ids", ids.len(), n)?;
        let vectors = format::le_bytes_to_f32s(object, "vectors", &container.rows("vectors")?)?;
        expect_len("vectors", vectors.len(), product("vectors", n, dim)?)?;
        if meta.osq.dim() != dim {
            return Err(Error::corrupt(
                object,
                0,
                "osq dimension does not match the segment",
            ));
        }
        let layout = meta
            .osq
            .layout()
            .map_err(|e| Error::corrupt(object, 0, e.to_string()))?;
        let planes = container.block("osq.planes")?;
        expect_len(
            "osq.planes",
            planes.len(),
            product("osq.planes", layout.num_planes, n)?,
        )?;
        let sign_codes =
            format::le_bytes_to_u64s(object, "sign_codes", &container.block("sign_codes")?)?;
        expect_len(
            "sign_codes",
            sign_codes.len(),
            product(
                "sign_codes",
                crate::codec::sign::words_for_bits(meta.num_sign_bits),
                n,
            )?,
        )?;
        let sign_norms =
            format::le_bytes_to_f32s(object, "sign_norms", &container.block("sign_norms")?)?;
        expect_len("sign_norms", sign_norms.len(), product("sign_norms", 2, n)?)?;
        if meta.num_sign_bits > dim {
            return Err(Error::corrupt(object, 0, "more sign bits than dimensions"));
        }
        let clusters = decode_fine_clusters(object, &container, n, dim)?;
        let fastscan = decode_fastscan(object, &container, n, dim)?;
        let mut columns = Vec::with_capacity(meta.schema.num_columns());
        for column in 0..meta.schema.num_columns() {
            let name = format!("attributes.{column}");
            let bits = format::le_bytes_to_u64s(object, &name, &block_or_rows(&container, &name)?)?;
            expect_len(&name, bits.len(), n)?;
            columns.push(bits.into_iter().map(f64::from_bits).collect());
        }
        let columns_len = columns.len();
        Ok(PartitionData {
            partition: meta.partition,
            dim,
            metric: meta.metric,
            segment_rows: n,
            ids,
            vectors,
            attributes: AttributeTable {
                num_rows: n,
                columns,
            },
            schema: meta.schema,
            quantized: Some(QuantizedCodes {
                pca: Pca {
                    dim,
                    mean,
                    components,
                    variances,
                },
                osq: meta.osq,
                layout,
                planes,
                num_sign_bits: meta.num_sign_bits,
                sign_codes,
                sign_norms,
            }),
            sorted_attributes: SortedColumns::new(columns_len),
            sq8_rows: std::sync::OnceLock::new(),
            clusters,
            fastscan,
        })
    }
}

/// Returns the decoded row array `name`: one block in segments written before row arrays were
/// chunked, chunks `name.0`, `name.1`, ... since.
fn block_or_rows(container: &Container, name: &str) -> Result<Vec<u8>> {
    if container.toc().entry(name).is_some() {
        container.block(name)
    } else {
        container.rows(name)
    }
}

/// Reads the optional fast-scan blocks of a segment (absent in segments written before them).
fn decode_fastscan(
    object: &str,
    container: &Container,
    num_rows: usize,
    dim: usize,
) -> Result<Option<FastScanCodes>> {
    if container.toc().entry("fastscan.codes").is_none() {
        return Ok(None);
    }
    let fastscan = FastScanCodes {
        lows: format::le_bytes_to_f32s(
            object,
            "fastscan.lows",
            &container.block("fastscan.lows")?,
        )?,
        steps: format::le_bytes_to_f32s(
            object,
            "fastscan.steps",
            &container.block("fastscan.steps")?,
        )?,
        codes: container.block("fastscan.codes")?,
    };
    fastscan.check(object, num_rows, dim)?;
    Ok(Some(fastscan))
}

/// Reads the optional fine-cluster blocks of a segment; a segment written before fine clusters
/// existed is one cluster without a centroid.
fn decode_fine_clusters(
    object: &str,
    container: &Container,
    num_rows: usize,
    dim: usize,
) -> Result<FineClusters> {
    if container.toc().entry("clusters.sizes").is_none() {
        return Ok(FineClusters::whole(num_rows));
    }
    let sizes = format::le_bytes_to_u64s(
        object,
        "clusters.sizes",
        &container.block("clusters.sizes")?,
    )?;
    let centroids = if container.toc().entry("clusters.centroids").is_some() {
        format::le_bytes_to_f32s(
            object,
            "clusters.centroids",
            &container.block("clusters.centroids")?,
        )?
    } else {
        Vec::new()
    };
    let clusters = FineClusters { sizes, centroids };
    clusters.check(object, num_rows, dim)?;
    Ok(clusters)
}

#[cfg(test)]
mod tests {
    //! Decoder regressions. Each case is an input the fuzz targets (`fuzz/`) found: a golden
    //! object with one metadata value changed and valid checksums.

    use serde_json::{json, Value};

    use super::*;

    const GOLDEN_MANIFEST: &[u8] = include_bytes!("../../tests/data/golden/index-v1/manifest.sqsh");
    const GOLDEN_COORDINATOR: &[u8] =
        include_bytes!("../../tests/data/golden/index-v1/vgolden1/coordinator.sqsh");
    const GOLDEN_PARTITION: &[u8] =
        include_bytes!("../../tests/data/golden/index-v1/vgolden1/partition-00000.sqsh");

    /// Returns the object `bytes` of `kind` rewritten with `edit` applied to its JSON block
    /// `block_name`.
    fn with_json_edit(
        bytes: &[u8],
        kind: ObjectKind,
        block_name: &str,
        edit: impl FnOnce(&mut Value),
    ) -> Vec<u8> {
        let container = Container::open("golden", bytes.to_vec(), kind).unwrap();
        let mut writer = ContainerWriter::new(kind);
        let mut edit_opt = Some(edit);
        for entry in &container.toc().entries {
            let mut raw = container.block(&entry.name).unwrap();
            if entry.name == block_name {
                let mut json: Value = serde_json::from_slice(&raw).unwrap();
                (edit_opt.take().unwrap())(&mut json);
                raw = serde_json::to_vec(&json).unwrap();
            }
            writer.add_block(&entry.name, &raw).unwrap();
        }
        assert!(edit_opt.is_none(), "no block {block_name}");
        writer.finish().unwrap()
    }

    fn assert_corrupt<T>(result: Result<T>, object: &str, expected: &str) {
        match result {
            Err(Error::Corrupt {
                object: named,
                what,
                ..
            }) => {
                assert_eq!(named, object);
                assert!(what.contains(expected), "{what:?} lacks {expected:?}");
            }
            Err(other) => panic!("expected Corrupt, got {other:?}"),
            Ok(_) => panic!("expected Corrupt, got a decoded object"),
        }
    }

    #[test]
    fn golden_objects_still_decode_after_a_rewrite() {
        let unchanged = with_json_edit(GOLDEN_COORDINATOR, ObjectKind::Coordinator, "meta", |_| {});
        assert!(CoordinatorData::decode("c", unchanged).is_ok());
        let unchanged = with_json_edit(GOLDEN_PARTITION, ObjectKind::Segment, "meta", |_| {});
        assert!(PartitionData::decode("p", unchanged).is_ok());
        let unchanged = with_json_edit(GOLDEN_MANIFEST, ObjectKind::Manifest, "manifest", |_| {});
        assert!(Manifest::decode("m", unchanged).is_ok());
    }

    #[test]
    fn coordinator_with_a_huge_dimension_is_corrupt() {
        // dim x num_partitions overflowed (a panic with overflow checks, a wrapped product
        // matching a short centroid block without).
        let bytes = with_json_edit(
            GOLDEN_COORDINATOR,
            ObjectKind::Coordinator,
            "meta",
            |meta| {
                meta["dim"] = json!(u64::MAX);
            },
        );
        assert_corrupt(
            CoordinatorData::decode("c", bytes),
            "c",
            "centroid count does not match",
        );
    }

    #[test]
    fn coordinator_whose_partition_sizes_overflow_is_corrupt() {
        // The row offsets overflowed; without overflow checks they wrapped to a total that
        // matched empty attribute codes, and planning sliced the filter bitmap backwards.
        let bytes = with_json_edit(
            GOLDEN_COORDINATOR,
            ObjectKind::Coordinator,
            "meta",
            |meta| {
                meta["partition_sizes"] = json!([u64::MAX, 1]);
            },
        );
        assert_corrupt(
            CoordinatorData::decode("c", bytes),
            "c",
            "beyond 2^64 vectors",
        );
    }

    #[test]
    fn coordinator_without_a_quantizer_per_column_is_corrupt() {
        // Decoded, then panicked (index out of bounds) when a filter was planned.
        let bytes = with_json_edit(
            GOLDEN_COORDINATOR,
            ObjectKind::Coordinator,
            "meta",
            |meta| {
                meta["attribute_quantizer"]["columns"] = json!([]);
            },
        );
        assert_corrupt(
            CoordinatorData::decode("c", bytes),
            "c",
            "0 attribute quantizers for 2 attribute columns",
        );
    }

    #[test]
    fn manifest_with_bits_per_dim_beyond_f32_is_corrupt() {
        // 1e308 once decoded to an infinite f32, which encode wrote as null; the exact float
        // parser refuses it as out of range.
        let bytes = with_json_edit(GOLDEN_MANIFEST, ObjectKind::Manifest, "manifest", |m| {
            m["bits_per_dim"] = json!(1e308);
        });
        assert_corrupt(Manifest::decode("m", bytes), "m", "number out of range");
        for bits_per_dim in [json!(0), json!(-1), json!(8.5)] {
            let bytes = with_json_edit(GOLDEN_MANIFEST, ObjectKind::Manifest, "manifest", |m| {
                m["bits_per_dim"] = bits_per_dim.clone();
            });
            assert_corrupt(Manifest::decode("m", bytes), "m", "bits_per_dim");
        }
    }

    #[test]
    fn segment_with_an_infinite_osq_boundary_is_corrupt() {
        // As for the manifest: 1e39 is beyond f32, refused as out of range.
        let bytes = with_json_edit(GOLDEN_PARTITION, ObjectKind::Segment, "meta", |meta| {
            meta["osq"]["boundaries"][2] = json!(1e39);
        });
        assert_corrupt(
            PartitionData::decode("p", bytes),
            "p",
            "number out of range",
        );
        // Boundaries out of order are caught by the decode's own check.
        let bytes = with_json_edit(GOLDEN_PARTITION, ObjectKind::Segment, "meta", |meta| {
            let first = meta["osq"]["boundaries"][0].clone();
            meta["osq"]["boundaries"][2] = json!(first.as_f64().unwrap_or(0.0) - 1e6);
        });
        assert_corrupt(
            PartitionData::decode("p", bytes),
            "p",
            "not finite and ascending",
        );
    }
}
