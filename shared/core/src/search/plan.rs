//! The coordinator stage: which partitions, and which fine clusters in them, a query must visit
//! (SQUASH §2.2, level 0).
//!
//! The filter is evaluated on the quantized attributes of all vectors. That evaluation is
//! conservative both ways: `possible` is a superset of the true matches (a row is left out only
//! when its cells prove it fails) and `certain` a subset (rows whose cells prove they pass).
//! Every fine cluster of the index (`index/clusters.rs`) that may hold a match is ranked by
//! centroid distance, and clusters are taken nearest first while any of these holds:
//! - the certain matches covered are fewer than `k * COVERAGE_SAFETY_FACTOR` (the one-pass
//!   guarantee);
//! - the rows that may match are fewer than the probe target: the rows in the clusters within
//!   `centroid_factor` of the nearest cluster's distance (the query's neighbourhood, counted
//!   without the filter), and at least `probe_rows` (by default `k * rerank_factor * 10`). A
//!   filter that passes a share `s` of the rows thus widens the scan until about as many
//!   matching rows are covered as an unfiltered query covers rows;
//! - fewer than `min_partitions` partitions are touched.
//!
//! The query goes to the partitions of the clusters taken, with the largest distance taken as
//! its probe radius; a worker scans its clusters within that radius, a superset of those taken.
//! Because certain matches really match and a worker returns `min(k, matches)` hits of the rows
//! it scans, a query with at least `k` matches never gets fewer than `k` hits, in one pass. The
//! number of clusters probed follows the filter (more when few rows may match) and the data
//! (more where many centroids are about equally near). It grows with the index only where the
//! data's own clusters do: in a mixture of blobs, a neighbourhood is a whole blob.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use crate::error::Result;
use crate::filter::Filter;
use crate::index::CoordinatorData;
use crate::metric::normalize_in_place;
use crate::protocol::{PartitionTask, QueryRequest, SearchKnobs, WorkerQuery};
use squash_kernels as kernels;

/// Certain matches to cover before stopping, as a multiple of `k`: with fewer, the nearest
/// partitions may hold only the far matches of a selective filter.
pub const COVERAGE_SAFETY_FACTOR: usize = 4;

/// The partitions and fine clusters one query visits.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryPlan {
    /// Partitions to search, nearest first.
    pub partitions: Vec<u32>,
    /// Upper estimate of the matching vectors in the whole index.
    pub estimated_matches: u64,
    /// Workers scan the clusters whose centroids lie within this distance; `None` scans every
    /// row of the partitions (exact mode).
    pub probe_radius: Option<f32>,
    /// Rows in the clusters taken (a worker may scan a few more, within the same radius).
    pub probed_rows: u64,
    /// Per partition of `partitions` (same order), the rows of its clusters taken: what the
    /// query makes that partition's worker scan (every row in exact mode).
    pub rows_by_partition: Vec<u64>,
}

/// Per fine cluster, the rows that may match a filter and the rows certain to: what the
/// coordinator evaluates on the quantized attributes of every row, once per distinct filter.
#[derive(Debug, Clone, PartialEq)]
struct ClusterCounts {
    /// Rows that may match (a superset of the matches), per cluster.
    possible: Vec<u64>,
    /// Rows certain to match (a subset), per cluster.
    certain: Vec<u64>,
}

impl ClusterCounts {
    /// Evaluates `filter` on the quantized attributes of every row of `coordinator`.
    /// `dead_per_cluster` (empty, or one count per cluster) are rows deleted or replaced by
    /// writes not yet folded in: they may have counted as certain matches, so they are taken
    /// off the certain counts (not off the possible ones, which stay a superset).
    fn of(
        coordinator: &CoordinatorData,
        filter: &Filter,
        dead_per_cluster: &[u64],
    ) -> ClusterCounts {
        let clusters = &coordinator.clusters;
        let (possible, mut certain) = if filter.is_match_all() {
            let sizes: Vec<u64> = (0..clusters.num_clusters())
                .map(|c| clusters.rows_in(c))
                .collect();
            (sizes.clone(), sizes)
        } else {
            filter.count_quantized_bounds(
                &coordinator.attribute_quantizer,
                &coordinator.attribute_codes,
                &coordinator.attribute_postings,
                &clusters.row_offsets,
            )
        };
        for (count, &dead) in certain.iter_mut().zip(dead_per_cluster) {
            *count = count.saturating_sub(dead);
        }
        ClusterCounts { possible, certain }
    }
}

/// Returns the partitions `query` (already normalised for cosine) must visit.
pub fn plan_query(
    coordinator: &CoordinatorData,
    query: &[f32],
    filter: &Filter,
    k: usize,
    knobs: &SearchKnobs,
) -> QueryPlan {
    plan_query_counted(
        coordinator,
        query,
        &ClusterCounts::of(coordinator, filter, &[]),
        k,
        knobs,
    )
}

/// As [`plan_query`], with the query's filter already counted per cluster.
fn plan_query_counted(
    coordinator: &CoordinatorData,
    query: &[f32],
    counts: &ClusterCounts,
    k: usize,
    knobs: &SearchKnobs,
) -> QueryPlan {
    let clusters = &coordinator.clusters;
    let num_clusters = clusters.num_clusters();
    let possible = &counts.possible;
    let estimated_matches: u64 = possible.iter().sum();
    let dim = coordinator.dim;
    if knobs.exact {
        // Every partition that may hold a match, read whole: no distance is needed (the
        // partitions come in the order of their first cluster that may match).
        let no_distances = vec![0f32; num_clusters];
        let partitions = PossiblePartitions::of(coordinator, &no_distances, possible).partitions;
        let rows_by_partition: Vec<u64> = partitions
            .iter()
            .map(|&partition| coordinator.partition_sizes[partition as usize])
            .collect();
        return QueryPlan {
            probed_rows: rows_by_partition.iter().sum(),
            partitions,
            estimated_matches,
            probe_radius: None,
            rows_by_partition,
        };
    }
    let mut distances = vec![0f32; num_clusters];
    kernels::l2_squared_rows(
        query,
        &clusters.centroids[..num_clusters * dim],
        &mut distances,
    );
    distances
        .iter_mut()
        .for_each(|distance| *distance = distance.sqrt());
    // The rows an unfiltered query would probe by the centroid factor: the scale of the
    // query's neighbourhood, whatever the filter.
    let nearest = distances.iter().copied().fold(f32::INFINITY, f32::min);
    let neighbourhood_rows: u64 = (0..num_clusters)
        .filter(|&c| distances[c] <= nearest * knobs.centroid_factor)
        .map(|c| clusters.rows_in(c))
        .sum();
    let coverage_target = (k * COVERAGE_SAFETY_FACTOR) as u64;
    let probe_target = (knobs.probe_rows_for(k) as u64).max(neighbourhood_rows);
    if let Some(plan) = plan_every_possible_cluster(
        coordinator,
        &distances,
        possible,
        estimated_matches,
        probe_target,
        knobs.max_partitions,
    ) {
        return plan;
    }
    walk_clusters(
        coordinator,
        &distances,
        counts,
        estimated_matches,
        coverage_target,
        probe_target,
        knobs,
    )
}

/// Takes clusters nearest first until the plan's targets are met (see [`plan_query_counted`]).
fn walk_clusters(
    coordinator: &CoordinatorData,
    distances: &[f32],
    counts: &ClusterCounts,
    estimated_matches: u64,
    coverage_target: u64,
    probe_target: u64,
    knobs: &SearchKnobs,
) -> QueryPlan {
    let clusters = &coordinator.clusters;
    let (possible, certain) = (&counts.possible, &counts.certain);
    // Nearest first, ties by cluster: a heap built in linear time and popped only as far as the
    // walk goes (a small share of the clusters), instead of sorting them all.
    let ranked = RankedClusters::new(
        (0..clusters.num_clusters())
            .filter(|&c| possible[c] > 0)
            .map(|c| (distances[c], c as u32)),
    );
    let mut partitions: Vec<u32> = Vec::new();
    let mut taken_partition = vec![false; coordinator.num_partitions()];
    let mut certain_covered = 0u64;
    let mut possible_covered = 0u64;
    let mut probed_rows = 0u64;
    let mut probe_radius = 0f32;
    let mut rows_by_partition: Vec<u64> = Vec::new();
    // Per partition, its position in `partitions` once taken.
    let mut position_of = vec![u32::MAX; coordinator.num_partitions()];
    for (distance, cluster) in ranked {
        let partition = clusters.partition_of[cluster as usize];
        let new_partition = !taken_partition[partition as usize];
        let needs_coverage = certain_covered < coverage_target;
        let wants_rows = possible_covered < probe_target;
        let below_minimum = partitions.len() < knobs.min_partitions;
        if !(needs_coverage || wants_rows || below_minimum) {
            break;
        }
        // The cap never cuts coverage: k hits must stay reachable.
        if new_partition && partitions.len() >= knobs.max_partitions && !needs_coverage {
            continue;
        }
        if new_partition {
            taken_partition[partition as usize] = true;
            position_of[partition as usize] = partitions.len() as u32;
            partitions.push(partition);
            rows_by_partition.push(0);
        }
        certain_covered += certain[cluster as usize];
        possible_covered += possible[cluster as usize];
        let rows = clusters.rows_in(cluster as usize);
        probed_rows += rows;
        rows_by_partition[position_of[partition as usize] as usize] += rows;
        probe_radius = probe_radius.max(distance);
    }
    QueryPlan {
        partitions,
        estimated_matches,
        probe_radius: Some(probe_radius),
        probed_rows,
        rows_by_partition,
    }
}

/// The partitions holding a cluster that may match, with what those clusters add up to.
struct PossiblePartitions {
    /// Partitions in the order of their nearest such cluster (by distance, then cluster id):
    /// the order a walk of the clusters nearest first meets them in.
    partitions: Vec<u32>,
    /// Rows of those clusters, per partition in `partitions`.
    rows_by_partition: Vec<u64>,
    /// The distance of the farthest such cluster (0 without any).
    radius: f32,
}

impl PossiblePartitions {
    /// One pass over the clusters, no ranking: `possible[c]` rows of cluster `c` may match, at
    /// `distances[c]` from the query.
    fn of(coordinator: &CoordinatorData, distances: &[f32], possible: &[u64]) -> Self {
        let clusters = &coordinator.clusters;
        // Per partition: the key of its nearest cluster that may match, and its rows.
        let mut nearest_key = vec![u64::MAX; coordinator.num_partitions()];
        let mut rows_of = vec![0u64; coordinator.num_partitions()];
        let mut radius = 0f32;
        for (cluster, &count) in possible.iter().enumerate() {
            if count == 0 {
                continue;
            }
            let partition = clusters.partition_of[cluster] as usize;
            let key = (u64::from(order_bits(distances[cluster])) << 32) | cluster as u64;
            nearest_key[partition] = nearest_key[partition].min(key);
            rows_of[partition] += clusters.rows_in(cluster);
            radius = radius.max(distances[cluster]);
        }
        let mut partitions: Vec<u32> = (0..coordinator.num_partitions() as u32)
            .filter(|&partition| nearest_key[partition as usize] != u64::MAX)
            .collect();
        partitions.sort_unstable_by_key(|&partition| nearest_key[partition as usize]);
        let rows_by_partition = partitions
            .iter()
            .map(|&partition| rows_of[partition as usize])
            .collect();
        PossiblePartitions {
            partitions,
            rows_by_partition,
            radius,
        }
    }
}

/// The plan of [`plan_query_counted`]'s walk when it would take every cluster that may match:
/// fewer rows may match in all of them than the probe target (a selective filter), and they lie
/// in no more partitions than the cap. Then no ranking is needed: the same partitions, rows and
/// radius come from one pass. `None` otherwise.
fn plan_every_possible_cluster(
    coordinator: &CoordinatorData,
    distances: &[f32],
    possible: &[u64],
    estimated_matches: u64,
    probe_target: u64,
    max_partitions: usize,
) -> Option<QueryPlan> {
    if estimated_matches >= probe_target {
        return None;
    }
    let every = PossiblePartitions::of(coordinator, distances, possible);
    if every.partitions.len() > max_partitions {
        return None;
    }
    Some(QueryPlan {
        probed_rows: every.rows_by_partition.iter().sum(),
        partitions: every.partitions,
        estimated_matches,
        probe_radius: Some(every.radius),
        rows_by_partition: every.rows_by_partition,
    })
}

/// Clusters by ascending distance, ties by cluster id, popped lazily from a min-heap.
struct RankedClusters {
    heap: BinaryHeap<Reverse<u64>>,
}

impl RankedClusters {
    fn new(clusters: impl Iterator<Item = (f32, u32)>) -> RankedClusters {
        let keys: Vec<Reverse<u64>> = clusters
            .map(|(distance, cluster)| {
                Reverse((u64::from(order_bits(distance)) << 32) | u64::from(cluster))
            })
            .collect();
        RankedClusters {
            heap: BinaryHeap::from(keys),
        }
    }
}

impl Iterator for RankedClusters {
    type Item = (f32, u32);

    fn next(&mut self) -> Option<(f32, u32)> {
        let Reverse(key) = self.heap.pop()?;
        Some((from_order_bits((key >> 32) as u32), key as u32))
    }
}

/// Maps an f32 to bits whose unsigned order is `f32::total_cmp`'s.
fn order_bits(value: f32) -> u32 {
    let bits = value.to_bits();
    if bits >> 31 == 1 {
        !bits
    } else {
        bits | 0x8000_0000
    }
}

/// Inverts [`order_bits`].
fn from_order_bits(bits: u32) -> f32 {
    f32::from_bits(if bits >> 31 == 1 {
        bits & 0x7fff_ffff
    } else {
        !bits
    })
}

/// The plan of a batch: the queries as workers receive them and one task per partition.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchPlan {
    /// Queries in request order.
    pub queries: Vec<WorkerQuery>,
    /// Per query, its plan.
    pub plans: Vec<QueryPlan>,
    /// One task per partition that at least one query visits, by partition id.
    pub tasks: Vec<PartitionTask>,
    /// Per task, per query of it (same order), the rows the query makes that partition's
    /// worker scan: what the work estimates ([`crate::search::WorkModel`]) start from.
    pub task_rows: Vec<Vec<u64>>,
}

/// A request checked and prepared for planning.
struct Prepared {
    vector: Vec<f32>,
    knobs: SearchKnobs,
    filter: Filter,
    /// The filter as canonical JSON text: equal filters count their clusters once.
    filter_key: String,
}

/// Most distinct repeated filters of one batch whose cluster counts are kept for the batch
/// (each takes two counts per fine cluster: 64 KiB at 4,000 clusters).
const SHARED_FILTER_COUNTS: usize = 256;

/// Validates one request and prepares it for planning.
fn prepare(coordinator: &CoordinatorData, request: &QueryRequest) -> Result<Prepared> {
    request.validate_shape(coordinator.dim)?;
    let knobs = SearchKnobs::resolve(&request.options)?;
    let filter = match &request.filter {
        Some(json) => Filter::parse(json, &coordinator.schema)?,
        None => Filter::match_all(),
    };
    let mut vector = request.vector.clone();
    if coordinator.metric.normalizes() && !normalize_in_place(&mut vector) {
        return Err(crate::Error::invalid(
            "vector",
            "is a zero vector, which has no cosine distance",
        ));
    }
    let filter_key = match &request.filter {
        Some(json) if !filter.is_match_all() => json.to_string(),
        _ => String::new(),
    };
    Ok(Prepared {
        vector,
        knobs,
        filter,
        filter_key,
    })
}

/// Validates and plans a batch of requests. The first invalid request fails the batch, with
/// its position in the field name. Queries are planned in parallel (rayon), and a filter that
/// several queries share is evaluated on the quantized attributes once: a large batch's
/// planning is the one step of a request no worker shares.
pub fn plan_batch(coordinator: &CoordinatorData, requests: &[QueryRequest]) -> Result<BatchPlan> {
    plan_batch_with_dead_rows(coordinator, requests, &[])
}

/// As [`plan_batch`] over partitions in which unfolded writes hide `dead_per_cluster` rows of
/// each fine cluster (empty: none): the one-pass guarantee counts only live certain matches.
pub fn plan_batch_with_dead_rows(
    coordinator: &CoordinatorData,
    requests: &[QueryRequest],
    dead_per_cluster: &[u64],
) -> Result<BatchPlan> {
    use rayon::prelude::*;
    let prepared: Vec<Prepared> = requests
        .par_iter()
        .enumerate()
        .map(|(position, request)| {
            prepare(coordinator, request).map_err(|error| match error {
                crate::Error::InvalidInput { field, reason } if requests.len() > 1 => {
                    crate::Error::InvalidInput {
                        field: format!("queries[{position}].{field}"),
                        reason,
                    }
                }
                other => other,
            })
        })
        // Collected in request order first, so the error is the first bad query's.
        .collect::<Vec<Result<Prepared>>>()
        .into_iter()
        .collect::<Result<Vec<Prepared>>>()?;
    // The filters used more than once (the empty key: no filter), most used first.
    let mut uses: HashMap<&str, (usize, usize)> = HashMap::new();
    for (position, query) in prepared.iter().enumerate() {
        uses.entry(query.filter_key.as_str())
            .or_insert((0, position))
            .0 += 1;
    }
    let mut repeated: Vec<(&str, usize, usize)> = uses
        .into_iter()
        .filter(|(_, (count, _))| *count > 1)
        .map(|(key, (count, first))| (key, count, first))
        .collect();
    repeated.sort_by(|a, b| b.1.cmp(&a.1).then(a.2.cmp(&b.2)));
    repeated.truncate(SHARED_FILTER_COUNTS);
    let shared: HashMap<&str, ClusterCounts> = repeated
        .par_iter()
        .map(|&(key, _, first)| {
            let counts = ClusterCounts::of(coordinator, &prepared[first].filter, dead_per_cluster);
            (key, counts)
        })
        .collect();
    let planned: Vec<(WorkerQuery, QueryPlan)> = prepared
        .par_iter()
        .zip(requests.par_iter())
        .map(|(query, request)| {
            let plan = match shared.get(query.filter_key.as_str()) {
                Some(counts) => {
                    plan_query_counted(coordinator, &query.vector, counts, request.k, &query.knobs)
                }
                None => plan_query_counted(
                    coordinator,
                    &query.vector,
                    &ClusterCounts::of(coordinator, &query.filter, dead_per_cluster),
                    request.k,
                    &query.knobs,
                ),
            };
            let worker_query = WorkerQuery {
                vector: request.vector.clone(),
                k: request.k,
                filter: request.filter.clone(),
                include_attributes: request.include_attributes,
                knobs: query.knobs,
                probe_radius: plan.probe_radius,
            };
            (worker_query, plan)
        })
        .collect();
    let mut queries = Vec::with_capacity(requests.len());
    let mut plans = Vec::with_capacity(requests.len());
    let mut queries_of_partition: Vec<Vec<u32>> = vec![Vec::new(); coordinator.num_partitions()];
    let mut rows_of_partition: Vec<Vec<u64>> = vec![Vec::new(); coordinator.num_partitions()];
    for (position, (query, plan)) in planned.into_iter().enumerate() {
        for (&partition, &rows) in plan.partitions.iter().zip(&plan.rows_by_partition) {
            queries_of_partition[partition as usize].push(position as u32);
            rows_of_partition[partition as usize].push(rows);
        }
        queries.push(query);
        plans.push(plan);
    }
    let (tasks, task_rows) = queries_of_partition
        .into_iter()
        .zip(rows_of_partition)
        .enumerate()
        .filter(|(_, (queries, _))| !queries.is_empty())
        .map(|(partition, (queries, rows))| {
            let task = PartitionTask {
                partition: partition as u32,
                queries,
                object_bytes: None,
                excluded_ids: Vec::new(),
            };
            (task, rows)
        })
        .unzip();
    Ok(BatchPlan {
        queries,
        plans,
        tasks,
        task_rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A coordinator of `sizes.len()` clusters in 2 dimensions over `num_partitions`
    /// partitions (cluster c in partition c % num_partitions), with no attributes.
    fn coordinator_of(num_partitions: usize, sizes: &[u64], seed: u64) -> CoordinatorData {
        use crate::attributes::AttributeSchema;
        use crate::filter::{AttributeQuantizer, ColumnPostings, QuantizedAttributes};
        use crate::index::ClusterDirectory;
        let mut state = seed | 1;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % 1000) as f32 / 100.0
        };
        // Clusters grouped by partition, as the directory stores them.
        let mut clusters_per_partition = vec![0u64; num_partitions];
        let mut cluster_sizes = Vec::new();
        let mut partition_sizes = vec![0u64; num_partitions];
        for partition in 0..num_partitions {
            for (cluster, &size) in sizes.iter().enumerate() {
                if cluster % num_partitions == partition {
                    clusters_per_partition[partition] += 1;
                    cluster_sizes.push(size);
                    partition_sizes[partition] += size;
                }
            }
        }
        let centroids: Vec<f32> = (0..sizes.len() * 2).map(|_| next()).collect();
        let clusters = ClusterDirectory::from_parts(
            "test",
            2,
            &partition_sizes,
            &clusters_per_partition,
            &cluster_sizes,
            centroids,
        )
        .unwrap();
        let mut partition_row_offsets = vec![0u64];
        for size in &partition_sizes {
            partition_row_offsets.push(partition_row_offsets.last().unwrap() + size);
        }
        CoordinatorData {
            metric: crate::metric::Metric::L2,
            dim: 2,
            clusters,
            attribute_postings: ColumnPostings::new(0),
            partition_sizes,
            partition_row_offsets,
            centroids: vec![0.0; num_partitions * 2],
            schema: AttributeSchema { columns: vec![] },
            attribute_quantizer: AttributeQuantizer { columns: vec![] },
            attribute_codes: QuantizedAttributes::default(),
        }
    }

    #[test]
    fn a_plan_of_every_possible_cluster_equals_the_walk() {
        let mut checked = 0;
        for seed in 1..200u64 {
            let num_partitions = 1 + (seed % 6) as usize;
            let sizes: Vec<u64> = (0..40).map(|c| 50 + (c * seed) % 300).collect();
            let coordinator = coordinator_of(num_partitions, &sizes, seed);
            let query = [(seed % 10) as f32, (seed % 7) as f32];
            let distances: Vec<f32> = (0..40)
                .map(|c| {
                    kernels::l2_squared_f32(&query, &coordinator.clusters.centroids[c * 2..][..2])
                        .sqrt()
                })
                .collect();
            // Few clusters may match, some surely: a selective filter.
            let possible: Vec<u64> = (0..40u64)
                .map(|c| {
                    if (c * 7 + seed) % 5 == 0 {
                        1 + (c + seed) % 9
                    } else {
                        0
                    }
                })
                .collect();
            let certain: Vec<u64> = possible.iter().map(|&p| p / 2).collect();
            let counts = ClusterCounts {
                possible: possible.clone(),
                certain,
            };
            let estimated: u64 = possible.iter().sum();
            for max_partitions in [1, 3, usize::MAX] {
                let knobs = SearchKnobs {
                    max_partitions,
                    min_partitions: (seed % 3) as usize,
                    ..SearchKnobs::resolve(&Default::default()).unwrap()
                };
                for probe_target in [estimated, estimated + 1, 10_000] {
                    let walked = walk_clusters(
                        &coordinator,
                        &distances,
                        &counts,
                        estimated,
                        seed % 40,
                        probe_target,
                        &knobs,
                    );
                    if let Some(shortcut) = plan_every_possible_cluster(
                        &coordinator,
                        &distances,
                        &possible,
                        estimated,
                        probe_target,
                        max_partitions,
                    ) {
                        assert_eq!(shortcut, walked, "seed {seed}");
                        checked += 1;
                    }
                }
            }
        }
        assert!(checked > 300, "{checked}");
    }

    #[test]
    fn ranked_clusters_come_nearest_first_ties_by_cluster() {
        let input = [
            (2.5, 0),
            (0.0, 7),
            (1.0, 3),
            (2.5, 1),
            (-0.0, 2),
            (1e-30, 9),
            (f32::MAX, 4),
        ];
        let ranked: Vec<(f32, u32)> = RankedClusters::new(input.into_iter()).collect();
        let mut expected = input.to_vec();
        expected.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        assert_eq!(ranked.len(), expected.len());
        for (got, want) in ranked.iter().zip(&expected) {
            assert_eq!(got.0.to_bits(), want.0.to_bits());
            assert_eq!(got.1, want.1);
        }
    }
}
