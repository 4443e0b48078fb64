//! The coordinator stage: which partitions a query must visit (SQUASH §2.2, level 0).
//!
//! The filter is evaluated on the quantized attributes of all vectors. That evaluation is
//! conservative both ways: `possible` is a superset of the true matches (a row is left out only
//! when its cells prove it fails) and `certain` a subset (rows whose cells prove they pass).
//! Partitions are ranked by centroid distance; every partition within `centroid_factor` of the
//! nearest is taken (at least `min_partitions`), then more, nearest first, until the certain
//! matches covered reach `k * COVERAGE_SAFETY_FACTOR`, or every partition that may hold a match
//! is taken. Because certain matches really match and the worker returns `min(k, matches)` hits
//! per partition, a query with at least `k` matches never gets fewer than `k` hits, in one pass.

use crate::attributes::Bitmap;
use crate::error::Result;
use crate::filter::Filter;
use crate::index::CoordinatorData;
use crate::metric::normalize_in_place;
use crate::protocol::{PartitionTask, QueryRequest, SearchKnobs, WorkerQuery};
use squash_kernels as kernels;

/// Certain matches to cover before stopping, as a multiple of `k`: with fewer, the nearest
/// partitions may hold only the far matches of a selective filter.
pub const COVERAGE_SAFETY_FACTOR: usize = 4;

/// The partitions one query visits.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryPlan {
    /// Partitions to search, nearest first.
    pub partitions: Vec<u32>,
    /// Upper estimate of the matching vectors in the whole index.
    pub estimated_matches: u64,
}

/// Returns the per-partition counts of set bits of `bitmap`, whose rows are in partition order.
fn counts_per_partition(coordinator: &CoordinatorData, bitmap: &Bitmap) -> Vec<u64> {
    coordinator
        .partition_row_offsets
        .windows(2)
        .map(|range| bitmap[range[0] as usize..range[1] as usize].count_ones() as u64)
        .collect()
}

/// Returns the partitions `query` (already normalised for cosine) must visit.
pub fn plan_query(
    coordinator: &CoordinatorData,
    query: &[f32],
    filter: &Filter,
    k: usize,
    knobs: &SearchKnobs,
) -> QueryPlan {
    let num_partitions = coordinator.num_partitions();
    let (possible, certain): (Vec<u64>, Vec<u64>) = if filter.is_match_all() {
        (
            coordinator.partition_sizes.clone(),
            coordinator.partition_sizes.clone(),
        )
    } else {
        let (possible_rows, certain_rows) = filter.evaluate_quantized_bounds(
            &coordinator.attribute_quantizer,
            &coordinator.attribute_codes,
        );
        (
            counts_per_partition(coordinator, &possible_rows),
            counts_per_partition(coordinator, &certain_rows),
        )
    };
    let estimated_matches: u64 = possible.iter().sum();
    let mut ranked: Vec<(f32, u32)> = (0..num_partitions)
        .filter(|&p| possible[p] > 0)
        .map(|p| {
            let centroid = &coordinator.centroids[p * coordinator.dim..][..coordinator.dim];
            (kernels::l2_squared_f32(query, centroid).sqrt(), p as u32)
        })
        .collect();
    ranked.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    if knobs.exact {
        return QueryPlan {
            partitions: ranked.iter().map(|&(_, p)| p).collect(),
            estimated_matches,
        };
    }
    let coverage_target = (k * COVERAGE_SAFETY_FACTOR) as u64;
    let nearest = ranked.first().map(|r| r.0).unwrap_or(0.0);
    let mut partitions = Vec::new();
    let mut certain_covered = 0u64;
    for &(distance, partition) in &ranked {
        let within_factor = distance <= nearest * knobs.centroid_factor;
        let below_minimum = partitions.len() < knobs.min_partitions;
        let needs_coverage = certain_covered < coverage_target;
        let under_cap = partitions.len() < knobs.max_partitions;
        // The cap never cuts coverage: k hits must stay reachable.
        let take = needs_coverage || ((within_factor || below_minimum) && under_cap);
        if !take {
            break;
        }
        partitions.push(partition);
        certain_covered += certain[partition as usize];
    }
    QueryPlan {
        partitions,
        estimated_matches,
    }
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
}

/// Validates and plans a batch of requests. The first invalid request fails the batch, with
/// its position in the field name.
pub fn plan_batch(coordinator: &CoordinatorData, requests: &[QueryRequest]) -> Result<BatchPlan> {
    let mut queries = Vec::with_capacity(requests.len());
    let mut plans = Vec::with_capacity(requests.len());
    let mut queries_of_partition: Vec<Vec<u32>> = vec![Vec::new(); coordinator.num_partitions()];
    for (position, request) in requests.iter().enumerate() {
        let prefix_error = |error: crate::Error| -> crate::Error {
            match error {
                crate::Error::InvalidInput { field, reason } if requests.len() > 1 => {
                    crate::Error::InvalidInput {
                        field: format!("queries[{position}].{field}"),
                        reason,
                    }
                }
                other => other,
            }
        };
        request
            .validate_shape(coordinator.dim)
            .map_err(prefix_error)?;
        let knobs = SearchKnobs::resolve(&request.options).map_err(prefix_error)?;
        let filter = match &request.filter {
            Some(json) => Filter::parse(json, &coordinator.schema).map_err(prefix_error)?,
            None => Filter::match_all(),
        };
        let mut vector = request.vector.clone();
        if coordinator.metric.normalizes() && !normalize_in_place(&mut vector) {
            return Err(prefix_error(crate::Error::invalid(
                "vector",
                "is a zero vector, which has no cosine distance",
            )));
        }
        let plan = plan_query(coordinator, &vector, &filter, request.k, &knobs);
        for &partition in &plan.partitions {
            queries_of_partition[partition as usize].push(position as u32);
        }
        plans.push(plan);
        queries.push(WorkerQuery {
            vector: request.vector.clone(),
            k: request.k,
            filter: request.filter.clone(),
            include_attributes: request.include_attributes,
            knobs,
        });
    }
    let tasks = queries_of_partition
        .into_iter()
        .enumerate()
        .filter(|(_, queries)| !queries.is_empty())
        .map(|(partition, queries)| PartitionTask {
            partition: partition as u32,
            queries,
        })
        .collect();
    Ok(BatchPlan {
        queries,
        plans,
        tasks,
    })
}
