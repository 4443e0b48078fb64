//! The index build pipeline (SQUASH §2.1 and §1): global PCA, balanced k-means partitions,
//! per-partition local PCA + OSQ + sign codes, global attribute quantization.
//!
//! Pure: takes vectors and attributes in memory, hands finished objects to a sink closure and
//! reports progress through a trait; the caller owns files, stores and progress bars. The
//! manifest is returned, not emitted, so the caller writes it last.

use std::time::Instant;

use crate::attributes::{
    AttributeColumn, AttributeKind, AttributeSchema, AttributeTable, MAX_INTEGER_MAGNITUDE,
};
use crate::codec::{sign, FastScanCodes, OsqQuantizer};
use crate::error::{Error, Result};
use crate::filter::{AttributeQuantizer, QuantizedAttributes};
use crate::format::FORMAT_VERSION;
use crate::index::clusters::{cluster_partition, DEFAULT_CLUSTER_ROWS};
use crate::index::objects::{
    ClusterDirectory, CoordinatorData, Manifest, PartitionData, PartitionEntry, QuantizedCodes,
};
use crate::linalg::{balanced_kmeans, BalancedKMeansParams, Pca};
use crate::metric::{normalize_in_place, Metric};

/// Default partition size target: partitions of 25k-50k vectors keep a worker's scan in the
/// tens of milliseconds and its segment in the tens of MB, and give enough partitions for
/// fan-out from a few hundred thousand vectors on.
pub const DEFAULT_TARGET_PARTITION_VECTORS: usize = 50_000;

/// Clustering runs on the leading principal components only: beyond ~64 components the
/// assignment barely changes while the cost grows linearly with the dimension.
const CLUSTERING_COMPONENTS: usize = 64;

/// The global PCA is fitted on at most this many rows (an evenly spaced sample).
const GLOBAL_PCA_SAMPLE_ROWS: usize = 100_000;

/// Sign bits cover the leading dimensions that hold this share of the variance: beyond it,
/// the signs of low-variance coordinates are mostly noise and blur the Hamming ranking
/// (on 784-d Fashion-MNIST, signs of all dimensions lose half the recall at a 30 % keep).
const SIGN_VARIANCE_SHARE: f64 = 0.9;

/// What the build needs besides the data.
#[derive(Debug, Clone, PartialEq)]
pub struct BuildParams {
    /// Distance metric.
    pub metric: Metric,
    /// Number of partitions; `None` picks [`default_num_partitions`].
    pub num_partitions: Option<usize>,
    /// Average bits per dimension of the OSQ codes (0 < b <= 8).
    pub bits_per_dim: f32,
    /// Bits per attribute of the coordinator's quantized attributes (1..=8).
    pub attribute_bits: u32,
    /// Rows per fine cluster inside a partition (the unit a query probes).
    pub cluster_rows: usize,
    /// Seed for every random choice of the build.
    pub seed: u64,
    /// Version string of this build (unique per build; object keys start with `v<version>/`).
    pub index_version: String,
    /// Build time, seconds since the Unix epoch (recorded in the manifest).
    pub created_unix_s: u64,
    /// The write-log position the input holds (recorded in the manifest): later log entries
    /// are applied over the build.
    pub folded_through: u64,
    /// How long versions this one replaces stay readable, in seconds (recorded in the
    /// manifest); `None` is the default, a day.
    pub retain_versions_s: Option<u64>,
}

impl BuildParams {
    /// Returns parameters with the defaults: 4 bits per dimension, 8 bits per attribute, seed 0.
    pub fn new(metric: Metric, index_version: impl Into<String>) -> Self {
        BuildParams {
            metric,
            num_partitions: None,
            bits_per_dim: 4.0,
            attribute_bits: 8,
            cluster_rows: DEFAULT_CLUSTER_ROWS,
            seed: 0,
            index_version: index_version.into(),
            created_unix_s: 0,
            folded_through: 0,
            retain_versions_s: None,
        }
    }
}

/// Returns the default number of partitions for `num_vectors` vectors.
pub fn default_num_partitions(num_vectors: usize) -> usize {
    num_vectors
        .div_ceil(DEFAULT_TARGET_PARTITION_VECTORS)
        .max(1)
}

/// The data to index.
#[derive(Debug, Clone)]
pub struct BuildInput {
    /// Vector dimension.
    pub dim: usize,
    /// Row-major vectors.
    pub vectors: Vec<f32>,
    /// External ids, one per vector.
    pub ids: Vec<u64>,
    /// Attribute schema (may have no columns).
    pub schema: AttributeSchema,
    /// Raw attributes, one row per vector.
    pub attributes: AttributeTable,
}

/// Receives progress of the long phases.
pub trait BuildProgress: Sync {
    /// A phase starts, with `total` units of work.
    fn start_phase(&self, name: &str, total: u64);
    /// `delta` more units are done.
    fn advance(&self, delta: u64);
    /// The phase is done.
    fn finish_phase(&self);
}

/// A progress sink that ignores everything.
pub struct NoProgress;

impl BuildProgress for NoProgress {
    fn start_phase(&self, _name: &str, _total: u64) {}
    fn advance(&self, _delta: u64) {}
    fn finish_phase(&self) {}
}

/// What a build produced, besides its objects.
#[derive(Debug, Clone)]
pub struct BuildSummary {
    /// The manifest, still to be written (last).
    pub manifest: Manifest,
    /// Seconds spent per phase, in order.
    pub phase_seconds: Vec<(String, f64)>,
}

/// Returns the object key of partition `id` in version `version`.
pub fn partition_key(version: &str, id: u32) -> String {
    format!("v{version}/partition-{id:05}.sqsh")
}

/// Returns the coordinator object key of version `version`.
pub fn coordinator_key(version: &str) -> String {
    format!("v{version}/coordinator.sqsh")
}

/// Returns the row-ids object key of version `version`.
pub fn row_ids_key(version: &str) -> String {
    format!("v{version}/row-ids.sqsh")
}

fn validate(input: &BuildInput, params: &BuildParams) -> Result<usize> {
    let dim = input.dim;
    if dim == 0 {
        return Err(Error::invalid("vectors", "dimension is 0"));
    }
    if input.vectors.is_empty() {
        return Err(Error::invalid("vectors", "no vectors to index"));
    }
    if !input.vectors.len().is_multiple_of(dim) {
        return Err(Error::invalid(
            "vectors",
            "length is not a multiple of the dimension",
        ));
    }
    let num_vectors = input.vectors.len() / dim;
    if num_vectors > u32::MAX as usize {
        return Err(Error::invalid(
            "vectors",
            "more than 2^32 - 1 vectors in one index",
        ));
    }
    if input.ids.len() != num_vectors {
        return Err(Error::invalid(
            "ids",
            format!("{} ids for {num_vectors} vectors", input.ids.len()),
        ));
    }
    if input.attributes.num_rows != num_vectors
        || input.attributes.columns.len() != input.schema.num_columns()
    {
        return Err(Error::invalid(
            "attributes",
            format!(
                "{} attribute rows for {num_vectors} vectors",
                input.attributes.num_rows
            ),
        ));
    }
    // The input parsers check the same; a table built in code must hold to it too.
    for (column, values) in input.schema.columns.iter().zip(&input.attributes.columns) {
        let problem_opt = values
            .iter()
            .enumerate()
            .find_map(|(row, &value)| cell_problem(column, value).map(|reason| (row, reason)));
        if let Some((row, reason)) = problem_opt {
            return Err(Error::invalid(
                format!("attributes row {row} column '{}'", column.name),
                reason,
            ));
        }
    }
    if !(params.bits_per_dim > 0.0 && params.bits_per_dim <= 8.0) {
        return Err(Error::invalid(
            "bits-per-dim",
            format!("must be in (0, 8], got {}", params.bits_per_dim),
        ));
    }
    if !(1..=8).contains(&params.attribute_bits) {
        return Err(Error::invalid("attribute-bits", "must be between 1 and 8"));
    }
    if params.cluster_rows == 0 {
        return Err(Error::invalid("cluster-rows", "must be at least 1"));
    }
    let num_partitions = params
        .num_partitions
        .unwrap_or_else(|| default_num_partitions(num_vectors));
    if num_partitions == 0 || num_partitions > num_vectors {
        return Err(Error::invalid(
            "partitions",
            format!(
                "must be between 1 and the number of vectors ({num_vectors}), got {num_partitions}"
            ),
        ));
    }
    Ok(num_partitions)
}

/// Returns why `value` cannot be a cell of `column`, if it cannot.
fn cell_problem(column: &AttributeColumn, value: f64) -> Option<String> {
    match column.kind {
        AttributeKind::Integer => (!(value.fract() == 0.0
            && value.abs() <= MAX_INTEGER_MAGNITUDE as f64))
            .then(|| {
                format!(
                    "{value} is not an integer of magnitude at most 2^53 − 1 = {MAX_INTEGER_MAGNITUDE}"
                )
            }),
        AttributeKind::Float => (!value.is_finite()).then(|| "is not a finite number".to_string()),
        AttributeKind::Categorical => (!(value >= 0.0
            && (value as usize) < column.dictionary.len()))
        .then(|| "is not a code of the column's dictionary".to_string()),
    }
}

/// Scales every row of `vectors` to unit length when `metric` compares directions (a zero
/// row, which has no direction, is refused by record).
fn normalize_rows(metric: Metric, vectors: &mut [f32], dim: usize) -> Result<()> {
    if !metric.normalizes() {
        return Ok(());
    }
    for (row, vector) in vectors.chunks_exact_mut(dim).enumerate() {
        if !normalize_in_place(vector) {
            return Err(Error::invalid(
                format!("vectors: record {row}"),
                "is a zero vector, which has no cosine distance",
            ));
        }
    }
    Ok(())
}

fn gather_rows(data: &[f32], dim: usize, rows: &[u32]) -> Vec<f32> {
    let mut out = Vec::with_capacity(rows.len() * dim);
    for &row in rows {
        out.extend_from_slice(&data[row as usize * dim..][..dim]);
    }
    out
}

/// Returns the partition of every vector: balanced k-means on the leading global PCA components.
fn assign_partitions(
    vectors: &[f32],
    dim: usize,
    num_partitions: usize,
    seed: u64,
    progress: &dyn BuildProgress,
) -> Result<Vec<u32>> {
    let num_vectors = vectors.len() / dim;
    if num_partitions == 1 {
        return Ok(vec![0; num_vectors]);
    }
    let step = num_vectors.div_ceil(GLOBAL_PCA_SAMPLE_ROWS).max(1);
    let sample_rows: Vec<u32> = (0..num_vectors as u32).step_by(step).collect();
    let pca = Pca::fit(&gather_rows(vectors, dim, &sample_rows), dim)?;
    let components = dim.min(CLUSTERING_COMPONENTS);
    let projected = pca.project_all(vectors, components);
    let params = BalancedKMeansParams {
        num_clusters: num_partitions,
        seed,
        ..BalancedKMeansParams::default()
    };
    progress.start_phase(
        "partitioning (balanced k-means)",
        params.max_iterations as u64,
    );
    let last_done = std::sync::atomic::AtomicUsize::new(0);
    let clustering = balanced_kmeans(&projected, components, &params, &|done, _total| {
        let previous = last_done.swap(done, std::sync::atomic::Ordering::Relaxed);
        progress.advance(done.saturating_sub(previous) as u64);
    })?;
    progress.finish_phase();
    Ok(clustering.assignments)
}

/// Builds one partition from its rows, which it reorders cluster by cluster (the order the
/// segment stores them in).
fn build_partition(
    input: &BuildInput,
    vectors: &[f32],
    partition: u32,
    rows: &mut Vec<u32>,
    params: &BuildParams,
) -> Result<PartitionData> {
    let dim = input.dim;
    let partition_vectors = gather_rows(vectors, dim, rows);
    let pca = Pca::fit(&partition_vectors, dim)?;
    let (order, clusters) = cluster_partition(
        &partition_vectors,
        dim,
        &pca,
        params.cluster_rows,
        params.seed ^ u64::from(partition),
    )?;
    *rows = order
        .iter()
        .map(|&position| rows[position as usize])
        .collect();
    let partition_vectors = gather_rows(&partition_vectors, dim, &order);
    let rotated = pca.project_all(&partition_vectors, dim);
    let total_bits = (params.bits_per_dim * dim as f32).round().max(1.0) as usize;
    let osq = OsqQuantizer::train(&rotated, dim, &pca.variances, total_bits)?;
    let layout = osq.layout()?;
    let planes = osq.encode(&layout, &rotated);
    let num_sign_bits = sign::num_sign_bits(&pca.variances, SIGN_VARIANCE_SHARE);
    let sign_codes = sign::encode_signs(&rotated, dim, num_sign_bits);
    let sign_norms = sign::subspace_norms(&rotated, dim, num_sign_bits);
    let fastscan = Some(FastScanCodes::encode(&partition_vectors, dim));
    Ok(PartitionData {
        partition,
        dim,
        metric: params.metric,
        segment_rows: rows.len(),
        ids: rows.iter().map(|&row| input.ids[row as usize]).collect(),
        vectors: partition_vectors,
        attributes: input.attributes.select_rows(rows),
        schema: input.schema.clone(),
        quantized: Some(QuantizedCodes {
            pca,
            osq,
            layout,
            planes,
            num_sign_bits,
            sign_codes,
            sign_norms,
        }),
        sorted_attributes: crate::filter::SortedColumns::new(input.schema.num_columns()),
        sq8_rows: std::sync::OnceLock::new(),
        clusters,
        fastscan,
    })
}

/// What a version's coordinator object, row ids and manifest gather from its partitions, in
/// partition order: filled by a build, and by a compaction that re-encodes some partitions and
/// keeps the others.
#[derive(Default)]
struct VersionParts {
    dim: usize,
    entries: Vec<PartitionEntry>,
    /// Partition centroids (row means), `num_partitions x dim`.
    centroids: Vec<f32>,
    cluster_centroids: Vec<f32>,
    clusters_per_partition: Vec<u64>,
    cluster_sizes: Vec<u64>,
    ids_in_row_order: Vec<u64>,
    total_bytes: u64,
}

impl VersionParts {
    fn new(dim: usize) -> VersionParts {
        VersionParts {
            dim,
            ..VersionParts::default()
        }
    }

    /// Adds a partition built anew, emitting its segment under version `version`.
    fn add_built(
        &mut self,
        data: &PartitionData,
        version: &str,
        emit: &mut dyn FnMut(&str, Vec<u8>) -> Result<()>,
    ) -> Result<()> {
        let dim = data.dim;
        self.ids_in_row_order.extend_from_slice(&data.ids);
        self.cluster_centroids
            .extend_from_slice(&data.clusters.centroids);
        self.clusters_per_partition
            .push(data.clusters.num_clusters() as u64);
        self.cluster_sizes.extend_from_slice(&data.clusters.sizes);
        let mut sums = vec![0f64; dim];
        for vector in data.vectors.chunks_exact(dim) {
            for (sum, &value) in sums.iter_mut().zip(vector) {
                *sum += f64::from(value);
            }
        }
        let num_rows = data.num_vectors();
        self.centroids
            .extend(sums.iter().map(|&sum| (sum / num_rows as f64) as f32));
        let bytes = data.encode()?;
        let key = partition_key(version, data.partition);
        self.total_bytes += bytes.len() as u64;
        self.entries.push(PartitionEntry {
            id: data.partition,
            key: key.clone(),
            num_vectors: num_rows as u64,
            size_bytes: bytes.len() as u64,
        });
        emit(&key, bytes)
    }

    /// Adds a partition kept as the version `coordinator` belongs to wrote it: its manifest
    /// `entry` (the segment stays where it is), centroid, fine clusters and `ids`.
    fn add_kept(&mut self, entry: &PartitionEntry, coordinator: &CoordinatorData, ids: &[u64]) {
        let dim = self.dim;
        let directory = &coordinator.clusters;
        let partition = entry.id as usize;
        self.ids_in_row_order.extend_from_slice(ids);
        self.centroids
            .extend_from_slice(&coordinator.centroids[partition * dim..][..dim]);
        // A partition's clusters are consecutive in the directory.
        let clusters = directory.partition_of.partition_point(|&p| p < entry.id)
            ..directory.partition_of.partition_point(|&p| p <= entry.id);
        self.clusters_per_partition.push(clusters.len() as u64);
        self.cluster_centroids
            .extend_from_slice(&directory.centroids[clusters.start * dim..clusters.end * dim]);
        self.cluster_sizes
            .extend(clusters.map(|cluster| directory.rows_in(cluster)));
        self.total_bytes += entry.size_bytes;
        self.entries.push(entry.clone());
    }

    /// Emits the coordinator object (with `attribute_codes` in partition order) and the row
    /// ids, and returns the manifest for the caller to write last.
    fn finish(
        self,
        schema: &AttributeSchema,
        attribute_quantizer: AttributeQuantizer,
        attribute_codes: QuantizedAttributes,
        params: &BuildParams,
        drift: Option<crate::index::PartitionDrift>,
        emit: &mut dyn FnMut(&str, Vec<u8>) -> Result<()>,
    ) -> Result<Manifest> {
        let dim = self.dim;
        let partition_sizes: Vec<u64> =
            self.entries.iter().map(|entry| entry.num_vectors).collect();
        let mut partition_row_offsets = Vec::with_capacity(partition_sizes.len() + 1);
        let mut offset = 0u64;
        for &size in &partition_sizes {
            partition_row_offsets.push(offset);
            offset += size;
        }
        partition_row_offsets.push(offset);
        let clusters = ClusterDirectory::from_parts(
            "coordinator",
            dim,
            &partition_sizes,
            &self.clusters_per_partition,
            &self.cluster_sizes,
            self.cluster_centroids,
        )?;
        let coordinator = CoordinatorData {
            metric: params.metric,
            dim,
            clusters,
            attribute_postings: crate::filter::ColumnPostings::new(schema.num_columns()),
            partition_sizes,
            partition_row_offsets,
            centroids: self.centroids,
            schema: schema.clone(),
            attribute_quantizer,
            attribute_codes,
        };
        let mut total_bytes = self.total_bytes;
        let coordinator_bytes = coordinator.encode()?;
        total_bytes += coordinator_bytes.len() as u64;
        let coordinator_key = coordinator_key(&params.index_version);
        emit(&coordinator_key, coordinator_bytes)?;
        let row_ids_bytes = crate::writes::RowIds::encode(&self.ids_in_row_order)?;
        total_bytes += row_ids_bytes.len() as u64;
        let row_ids_key = row_ids_key(&params.index_version);
        emit(&row_ids_key, row_ids_bytes)?;
        Ok(Manifest {
            format_version: FORMAT_VERSION,
            index_version: params.index_version.clone(),
            created_unix_s: params.created_unix_s,
            metric: params.metric,
            dim,
            num_vectors: offset,
            schema: schema.clone(),
            coordinator_key,
            partitions: self.entries,
            bits_per_dim: params.bits_per_dim,
            attribute_bits: params.attribute_bits,
            seed: params.seed,
            total_bytes,
            folded_through: params.folded_through,
            row_ids_key: Some(row_ids_key),
            previous_version: None,
            published_unix_ms: 0,
            retain_versions_s: params.retain_versions_s,
            drift,
        })
    }
}

/// Builds an index: emits the coordinator and every segment through `emit(key, bytes)` and
/// returns the manifest for the caller to write last.
pub fn build_index(
    mut input: BuildInput,
    params: &BuildParams,
    progress: &dyn BuildProgress,
    emit: &mut dyn FnMut(&str, Vec<u8>) -> Result<()>,
) -> Result<BuildSummary> {
    let num_partitions = validate(&input, params)?;
    let dim = input.dim;
    let mut phase_seconds = Vec::new();
    let mut vectors = std::mem::take(&mut input.vectors);
    normalize_rows(params.metric, &mut vectors, dim)?;

    let started = Instant::now();
    let assignments = assign_partitions(&vectors, dim, num_partitions, params.seed, progress)?;
    phase_seconds.push(("partitioning".to_string(), started.elapsed().as_secs_f64()));

    let mut members: Vec<Vec<u32>> = vec![Vec::new(); num_partitions];
    for (row, &partition) in assignments.iter().enumerate() {
        members[partition as usize].push(row as u32);
    }
    if let Some(empty) = members.iter().position(Vec::is_empty) {
        return Err(Error::invalid(
            "partitions",
            format!("partition {empty} came out empty; use fewer partitions"),
        ));
    }

    let started = Instant::now();
    progress.start_phase(
        "encoding partitions (PCA, OSQ, sign codes)",
        num_partitions as u64,
    );
    let mut parts = VersionParts::new(dim);
    for (partition, rows) in members.iter_mut().enumerate() {
        let data = build_partition(&input, &vectors, partition as u32, rows, params)?;
        parts.add_built(&data, &params.index_version, emit)?;
        progress.advance(1);
    }
    progress.finish_phase();
    phase_seconds.push((
        "encoding partitions".to_string(),
        started.elapsed().as_secs_f64(),
    ));

    let started = Instant::now();
    let partition_order: Vec<u32> = members.iter().flatten().copied().collect();
    let attributes_in_order = input.attributes.select_rows(&partition_order);
    let attribute_quantizer =
        AttributeQuantizer::train(&attributes_in_order, params.attribute_bits);
    let attribute_codes = attribute_quantizer.encode(&attributes_in_order);
    let manifest = parts.finish(
        &input.schema,
        attribute_quantizer,
        attribute_codes,
        params,
        None,
        emit,
    )?;
    phase_seconds.push((
        "attributes and coordinator".to_string(),
        started.elapsed().as_secs_f64(),
    ));
    Ok(BuildSummary {
        manifest,
        phase_seconds,
    })
}

/// What a compaction that re-encodes only some partitions starts from: the version it
/// replaces, and the new rows of the partitions writes touched.
pub struct PartialRebuild<'a> {
    /// The manifest of the version replaced.
    pub previous: &'a Manifest,
    /// Its coordinator object.
    pub coordinator: &'a CoordinatorData,
    /// Its ids in coordinator row order (the row-ids object).
    pub ids_in_row_order: &'a [u64],
    /// The partitions to re-encode, each with all its live rows (in the index's schema),
    /// ascending by partition id. Every other partition is kept as it is.
    pub partitions: Vec<(u32, BuildInput)>,
    /// Rows written into the partitions since their centroids were drawn, this rebuild's
    /// included (recorded in the manifest).
    pub drift: crate::index::PartitionDrift,
}

/// Writes a new version that re-encodes the partitions of `rebuild` (local PCA, fine clusters,
/// OSQ and fast-scan codes, from their new rows) and keeps every other partition's segment:
/// the manifest names the kept segments under the versions that wrote them. The partition
/// centroids that route rows are kept too (the rebuilt ones move to their rows' mean), and
/// the attribute cells are widened to cover the new rows; a value that cannot be covered
/// without blurring an exact cell fails with `InvalidInput` naming the column, and the
/// caller builds the whole index instead. Emits the rebuilt segments, the coordinator and the
/// row ids through `emit`, and returns the manifest for the caller to write last.
pub fn rebuild_partitions(
    rebuild: PartialRebuild<'_>,
    params: &BuildParams,
    progress: &dyn BuildProgress,
    emit: &mut dyn FnMut(&str, Vec<u8>) -> Result<()>,
) -> Result<BuildSummary> {
    let PartialRebuild {
        previous,
        coordinator,
        ids_in_row_order,
        mut partitions,
        drift,
    } = rebuild;
    let dim = previous.dim;
    let num_partitions = previous.partitions.len();
    if ids_in_row_order.len() as u64 != previous.num_vectors
        || coordinator.partition_row_offsets.len() != num_partitions + 1
    {
        return Err(Error::internal(
            "the replaced version's row ids, coordinator and manifest do not agree".to_string(),
        ));
    }
    let mut phase_seconds = Vec::new();
    let started = Instant::now();
    // Attribute cells widened to the rebuilt partitions' rows.
    let mut attribute_quantizer = coordinator.attribute_quantizer.clone();
    // The new code of each old code, per column (cells inserted for new values move codes).
    let mut code_maps: Vec<Vec<u8>> = (0..previous.schema.num_columns())
        .map(|column| {
            (0..attribute_quantizer.num_cells(column) as u32)
                .map(|code| code as u8)
                .collect()
        })
        .collect();
    for (partition, input) in &partitions {
        if input.schema != previous.schema || input.dim != dim {
            return Err(Error::internal(format!(
                "partition {partition} is rebuilt with another schema or dimension"
            )));
        }
        if input.ids.is_empty() {
            return Err(Error::invalid(
                "partitions",
                format!("partition {partition} would be left empty"),
            ));
        }
        validate(
            input,
            &BuildParams {
                num_partitions: Some(1),
                ..params.clone()
            },
        )?;
        let (widened, maps) = attribute_quantizer
            .widened_to_cover(&input.attributes, params.attribute_bits)
            .map_err(|reason| Error::invalid("attributes", reason))?;
        attribute_quantizer = widened;
        for (total, map) in code_maps.iter_mut().zip(&maps) {
            for code in total.iter_mut() {
                *code = map[usize::from(*code)];
            }
        }
    }
    progress.start_phase(
        "re-encoding the partitions writes touched",
        partitions.len() as u64,
    );
    let mut parts = VersionParts::new(dim);
    let mut code_columns: Vec<Vec<u8>> = vec![Vec::new(); previous.schema.num_columns()];
    let mut rebuilt = partitions.iter_mut().peekable();
    for partition in 0..num_partitions {
        let partition_id = partition as u32;
        match rebuilt.next_if(|(id, _)| *id == partition_id) {
            Some((_, input)) => {
                let mut vectors = std::mem::take(&mut input.vectors);
                normalize_rows(params.metric, &mut vectors, dim)?;
                let mut rows: Vec<u32> = (0..input.ids.len() as u32).collect();
                let data = build_partition(input, &vectors, partition_id, &mut rows, params)?;
                let codes = attribute_quantizer.encode(&data.attributes);
                for (column, codes) in code_columns.iter_mut().zip(codes.columns) {
                    column.extend(codes);
                }
                parts.add_built(&data, &params.index_version, emit)?;
                progress.advance(1);
            }
            None => {
                let first = coordinator.partition_row_offsets[partition] as usize;
                let end = coordinator.partition_row_offsets[partition + 1] as usize;
                parts.add_kept(
                    &previous.partitions[partition],
                    coordinator,
                    &ids_in_row_order[first..end],
                );
                for ((column, codes), map) in code_columns
                    .iter_mut()
                    .zip(&coordinator.attribute_codes.columns)
                    .zip(&code_maps)
                {
                    // A code beyond the old cells stays beyond the new ones ("maybe").
                    column.extend(
                        codes[first..end]
                            .iter()
                            .map(|&code| map.get(usize::from(code)).copied().unwrap_or(u8::MAX)),
                    );
                }
            }
        }
    }
    if let Some((partition, _)) = rebuilt.next() {
        return Err(Error::internal(format!(
            "partition {partition} is not a partition of the index"
        )));
    }
    progress.finish_phase();
    phase_seconds.push((
        "encoding partitions".to_string(),
        started.elapsed().as_secs_f64(),
    ));
    let started = Instant::now();
    let num_rows = parts.ids_in_row_order.len();
    let manifest = parts.finish(
        &previous.schema,
        attribute_quantizer,
        QuantizedAttributes {
            num_rows,
            columns: code_columns,
        },
        params,
        Some(drift),
        emit,
    )?;
    phase_seconds.push((
        "attributes and coordinator".to_string(),
        started.elapsed().as_secs_f64(),
    ));
    Ok(BuildSummary {
        manifest,
        phase_seconds,
    })
}

/// Returns the partition sizes a build would need to respect (±10 % of `n / p`), for tests.
#[cfg(test)]
pub(crate) fn partition_size_bounds(num_vectors: usize, num_partitions: usize) -> (usize, usize) {
    let mean = num_vectors as f64 / num_partitions as f64;
    ((mean * 0.9).floor() as usize, (mean * 1.1).ceil() as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_partitions_keep_sizes_sensible() {
        assert_eq!(default_num_partitions(1), 1);
        assert_eq!(default_num_partitions(60_000), 2);
        assert_eq!(default_num_partitions(399_000), 8);
        assert_eq!(default_num_partitions(1_000_000), 20);
        assert_eq!(partition_size_bounds(100, 4), (22, 28));
    }

    #[test]
    fn attribute_cells_outside_their_column_kind_are_refused() {
        let column = |kind, dictionary: &[&str]| AttributeColumn {
            name: "a".to_string(),
            kind,
            dictionary: dictionary.iter().map(|word| word.to_string()).collect(),
        };
        let cases = [
            (
                column(AttributeKind::Integer, &[]),
                9_007_199_254_740_992.0,
                "2^53 − 1",
            ),
            (column(AttributeKind::Integer, &[]), 1.5, "not an integer"),
            (column(AttributeKind::Float, &[]), f64::NAN, "finite"),
            (
                column(AttributeKind::Categorical, &["x"]),
                1.0,
                "dictionary",
            ),
        ];
        for (column, bad, expected) in cases {
            let input = BuildInput {
                dim: 1,
                vectors: vec![0.0, 1.0],
                ids: vec![1, 2],
                schema: AttributeSchema {
                    columns: vec![column],
                },
                attributes: AttributeTable {
                    num_rows: 2,
                    columns: vec![vec![0.0, bad]],
                },
            };
            match validate(&input, &BuildParams::new(Metric::L2, "1")) {
                Err(Error::InvalidInput { field, reason }) => {
                    assert_eq!(field, "attributes row 1 column 'a'");
                    assert!(reason.contains(expected), "{reason}");
                }
                other => panic!("{bad}: {other:?}"),
            }
        }
    }
}
