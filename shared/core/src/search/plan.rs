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
    let (possible, certain) = (&counts.possible, &counts.certain);
    let estimated_matches: u64 = possible.iter().sum();
    let dim = coordinator.dim;
    let distances: Vec<f32> = (0..num_clusters)
        .map(|c| {
            let centroid = &clusters.centroids[c * dim..][..dim];
            kernels::l2_squared_f32(query, centroid).sqrt()
        })
        .collect();
    // Nearest first, ties by cluster: a heap built in linear time and popped only as far as the
    // walk below goes (a small share of the clusters), instead of sorting them all.
    let mut ranked = RankedClusters::new(
        (0..num_clusters)
            .filter(|&c| possible[c] > 0)
            .map(|c| (distances[c], c as u32)),
    );
    let mut partitions: Vec<u32> = Vec::new();
    let mut taken_partition = vec![false; coordinator.num_partitions()];
    if knobs.exact {
        let mut probed_rows = 0;
        for (_, cluster) in ranked.by_ref() {
            let partition = clusters.partition_of[cluster as usize];
            if !std::mem::replace(&mut taken_partition[partition as usize], true) {
                partitions.push(partition);
            }
        }
        let rows_by_partition: Vec<u64> = partitions
            .iter()
            .map(|&partition| coordinator.partition_sizes[partition as usize])
            .collect();
        probed_rows += rows_by_partition.iter().sum::<u64>();
        return QueryPlan {
            partitions,
            estimated_matches,
            probe_radius: None,
            probed_rows,
            rows_by_partition,
        };
    }
    // The rows an unfiltered query would probe by the centroid factor: the scale of the
    // query's neighbourhood, whatever the filter.
    let nearest = distances.iter().copied().fold(f32::INFINITY, f32::min);
    let neighbourhood_rows: u64 = (0..num_clusters)
        .filter(|&c| distances[c] <= nearest * knobs.centroid_factor)
        .map(|c| clusters.rows_in(c))
        .sum();
    let coverage_target = (k * COVERAGE_SAFETY_FACTOR) as u64;
    let probe_target = (knobs.probe_rows_for(k) as u64).max(neighbourhood_rows);
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
