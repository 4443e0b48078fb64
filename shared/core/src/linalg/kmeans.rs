//! Balanced k-means: the coarse partitioning of SQUASH digest §2.1, where every partition must
//! hold between (1 − tol)·n/k and (1 + tol)·n/k rows (the reference uses `KMeansConstrained`
//! with tol = 10 %).
//!
//! Plan: k-means++ seeding and Lloyd iterations on a random sample of rows, then a
//! capacity-constrained assignment of all rows (greedy by regret, then topping up clusters under
//! the lower bound), repeated for a few rounds with recomputed centroids.

use std::borrow::Cow;

use faer::linalg::matmul::matmul;
use faer::{Accum, MatMut, MatRef, Par};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rayon::prelude::*;

use super::{check_matrix, column_means};
use crate::error::{Error, Result};
use squash_kernels::{dot_f32, l2_squared_f32 as squared_l2_f32};

/// Rows per block of the distance computation: one `rows × k` matrix product per rayon task.
const DISTANCE_BLOCK_ROWS: usize = 256;
/// Rows per partial sum of a per-row quantity; partial sums are combined in chunk order.
const SUM_CHUNK_ROWS: usize = 4096;
/// Constrained assignments of all rows; after the first, each one starts from the centroids
/// of the previous balanced clusters. Rounds stop early when the cost stops falling.
const NUM_BALANCED_ROUNDS: usize = 3;
/// Smallest window of candidate rows sorted at once when topping up a cluster (tests shrink it so
/// the window-growing path runs on small inputs).
/// Lloyd stops once the centroids move less than this fraction of the mean per-dimension variance
/// (Σ‖Δc‖² ≤ tol·mean variance, the `tol = 1e-4` criterion of the reference's k-means).
const LLOYD_TOLERANCE: f64 = 1e-4;
#[cfg(not(test))]
const MIN_TOP_UP_WINDOW: usize = 1024;
#[cfg(test)]
const MIN_TOP_UP_WINDOW: usize = 2;

/// Parameters of [`balanced_kmeans`].
#[derive(Debug, Clone, PartialEq)]
pub struct BalancedKMeansParams {
    /// Number of clusters `k`, between 1 and the number of rows.
    pub num_clusters: usize,
    /// Maximum number of Lloyd iterations on the training sample (0 keeps the seeds).
    pub max_iterations: usize,
    /// Allowed relative deviation of a cluster size from n/k (0.10 = ±10 %); must be ≥ 0.
    pub balance_tolerance: f64,
    /// Seed of the sampling and of the k-means++ seeding.
    pub seed: u64,
    /// Rows used for seeding and Lloyd iterations (a uniform random sample when the data has
    /// more); never fewer than `num_clusters`. The final assignment always covers every row.
    pub max_training_rows: usize,
}

impl Default for BalancedKMeansParams {
    /// Returns one cluster, 25 iterations, ±10 %, seed 0 and 100,000 training rows; callers are
    /// expected to set `num_clusters`.
    fn default() -> Self {
        BalancedKMeansParams {
            num_clusters: 1,
            max_iterations: 25,
            balance_tolerance: 0.10,
            seed: 0,
            max_training_rows: 100_000,
        }
    }
}

/// The result of [`balanced_kmeans`].
#[derive(Debug, Clone, PartialEq)]
pub struct Clustering {
    /// Cluster of each input row, in `0..k`.
    pub assignments: Vec<u32>,
    /// `k × dim` row-major; row `c` is the mean of the rows assigned to cluster `c`.
    pub centroids: Vec<f32>,
}

/// Returns the inclusive `(min, max)` cluster sizes that [`balanced_kmeans`] guarantees:
/// `floor((1 − tol)·n/k)` and `ceil((1 + tol)·n/k)`, tightened to at least 1 and at most n, and
/// widened if `f64` rounding would make them infeasible (so `k·min ≤ n ≤ k·max` always holds).
///
/// Requires `1 ≤ num_clusters ≤ num_rows` and `balance_tolerance ≥ 0`.
pub fn balanced_cluster_size_bounds(
    num_rows: usize,
    num_clusters: usize,
    balance_tolerance: f64,
) -> (usize, usize) {
    debug_assert!(num_clusters >= 1 && num_clusters <= num_rows && balance_tolerance >= 0.0);
    let ideal_size = num_rows as f64 / num_clusters as f64;
    let floor_share = num_rows / num_clusters;
    let ceil_share = num_rows.div_ceil(num_clusters);
    // Nudge by a relative 1e-12 so that products like 1.1 × 100 = 110.00000000000001 do not
    // round outwards; the clamps below restore feasibility if the nudge ever cuts too deep.
    let lower_bound = (1.0 - balance_tolerance) * ideal_size * (1.0 + 1e-12);
    let upper_bound = (1.0 + balance_tolerance) * ideal_size * (1.0 - 1e-12);
    let min_size = (lower_bound.floor().max(0.0) as usize)
        .min(floor_share)
        .max(1);
    let max_size = (upper_bound.ceil() as usize).max(ceil_share).min(num_rows);
    (min_size, max_size)
}

/// Clusters the rows of `data` (row-major `n × dim`, finite) into `params.num_clusters`
/// clusters whose sizes lie within [`balanced_cluster_size_bounds`].
///
/// `on_iteration(done, total)` is called after each Lloyd iteration and each balanced round,
/// and once with `done == total` at the end. The output depends only on the data and the
/// parameters, not on the number of rayon threads.
///
/// Errors with `InvalidInput` for a malformed matrix, `num_clusters` of 0 or above the number of
/// rows, or a negative or non-finite `balance_tolerance`.
pub fn balanced_kmeans(
    data: &[f32],
    dim: usize,
    params: &BalancedKMeansParams,
    on_iteration: &(dyn Fn(usize, usize) + Sync),
) -> Result<Clustering> {
    let num_rows = check_matrix("data", data, dim)?;
    let num_clusters = params.num_clusters;
    if num_clusters == 0 {
        return Err(Error::invalid("num_clusters", "must be at least 1"));
    }
    if num_clusters > num_rows {
        return Err(Error::invalid(
            "num_clusters",
            format!("{num_clusters} clusters requested for only {num_rows} rows"),
        ));
    }
    if num_rows > u32::MAX as usize {
        return Err(Error::invalid(
            "data",
            format!(
                "{num_rows} rows exceed the supported maximum of {}",
                u32::MAX
            ),
        ));
    }
    if !params.balance_tolerance.is_finite() || params.balance_tolerance < 0.0 {
        return Err(Error::invalid(
            "balance_tolerance",
            format!(
                "must be finite and at least 0, got {}",
                params.balance_tolerance
            ),
        ));
    }
    let num_steps = params.max_iterations + NUM_BALANCED_ROUNDS;

    if num_clusters == 1 {
        let assignments = vec![0u32; num_rows];
        let centroids = cluster_means(data, dim, &assignments, 1, &[]);
        on_iteration(num_steps, num_steps);
        return Ok(Clustering {
            assignments,
            centroids,
        });
    }

    let mut rng = StdRng::seed_from_u64(params.seed);
    let num_training_rows = params.max_training_rows.max(num_clusters).min(num_rows);
    let training_rows: Cow<'_, [f32]> = if num_training_rows == num_rows {
        Cow::Borrowed(data)
    } else {
        let mut row_indices =
            rand::seq::index::sample(&mut rng, num_rows, num_training_rows).into_vec();
        // Data order keeps the copy sequential in memory; the sample itself stays random.
        row_indices.sort_unstable();
        let mut sample = Vec::with_capacity(num_training_rows * dim);
        for row_index in row_indices {
            sample.extend_from_slice(&data[row_index * dim..(row_index + 1) * dim]);
        }
        Cow::Owned(sample)
    };

    let mut centroids = kmeans_plus_plus(&training_rows, dim, num_clusters, &mut rng);
    lloyd(
        &training_rows,
        dim,
        &mut centroids,
        num_clusters,
        params.max_iterations,
        &|num_done| on_iteration(num_done, num_steps),
    );
    drop(training_rows);

    let (min_size, max_size) =
        balanced_cluster_size_bounds(num_rows, num_clusters, params.balance_tolerance);
    let row_norms = squared_norms(data, dim);
    // (k-means cost, assignments, centroids = the means of those assignments)
    let mut best_opt: Option<(f64, Vec<u32>, Vec<f32>)> = None;
    for round in 0..NUM_BALANCED_ROUNDS {
        let assignments = constrained_assignment(
            data,
            dim,
            &row_norms,
            &centroids,
            num_clusters,
            min_size,
            max_size,
        );
        on_iteration(params.max_iterations + round + 1, num_steps);
        if let Some((_, best_assignments, _)) = &best_opt {
            if *best_assignments == assignments {
                break;
            }
        }
        let means = cluster_means(data, dim, &assignments, num_clusters, &centroids);
        let cost = assignment_cost(data, dim, &assignments, &means);
        if let Some((best_cost, _, _)) = &best_opt {
            if cost >= *best_cost {
                break;
            }
        }
        centroids.copy_from_slice(&means);
        best_opt = Some((cost, assignments, means));
    }
    on_iteration(num_steps, num_steps);
    let (_, assignments, centroids) =
        best_opt.expect("the first balanced round always records a result");
    Ok(Clustering {
        assignments,
        centroids,
    })
}

/// Returns ‖x‖² of every row.
fn squared_norms(rows: &[f32], dim: usize) -> Vec<f32> {
    rows.par_chunks(dim).map(|row| dot_f32(row, row)).collect()
}

/// Returns Σ ‖x − centroid(x)‖² over all rows, in `f64`.
fn assignment_cost(rows: &[f32], dim: usize, assignments: &[u32], centroids: &[f32]) -> f64 {
    let row_costs: Vec<f32> = rows
        .par_chunks(dim)
        .zip(assignments)
        .map(|(row, &cluster)| {
            let cluster = cluster as usize;
            squared_l2_f32(row, &centroids[cluster * dim..(cluster + 1) * dim])
        })
        .collect();
    ordered_sum(&row_costs)
}

/// Returns the variance of the rows averaged over dimensions: Σ ‖x − μ‖² / (n·dim).
fn mean_variance(rows: &[f32], dim: usize) -> f64 {
    let mean: Vec<f32> = column_means(rows, dim)
        .iter()
        .map(|&value| value as f32)
        .collect();
    let row_deviations: Vec<f32> = rows
        .par_chunks(dim)
        .map(|row| squared_l2_f32(row, &mean))
        .collect();
    ordered_sum(&row_deviations) / rows.len() as f64
}

/// Returns Σ values in `f64`, summed in fixed chunks combined in order.
fn ordered_sum(values: &[f32]) -> f64 {
    let partial_sums: Vec<f64> = values
        .par_chunks(SUM_CHUNK_ROWS)
        .map(|chunk| chunk.iter().map(|&value| f64::from(value)).sum::<f64>())
        .collect();
    partial_sums.iter().sum()
}

/// Calls `per_row(distances, row_out)` for every row, with the squared L2 distances from the
/// row to every centroid and the row's `outputs_per_row` slots of `out`.
///
/// Distances are ‖x‖² − 2·x·c + ‖c‖² (clamped at 0), the cross terms coming from one matrix
/// product per block of rows.
fn map_row_distances<T: Send>(
    rows: &[f32],
    row_norms: &[f32],
    dim: usize,
    centroids: &[f32],
    out: &mut [T],
    outputs_per_row: usize,
    per_row: impl Fn(&[f32], &mut [T]) + Sync,
) {
    debug_assert_eq!(out.len(), row_norms.len() * outputs_per_row);
    let num_clusters = centroids.len() / dim;
    let centroid_norms = squared_norms(centroids, dim);
    let centroids_transposed =
        MatRef::from_row_major_slice(centroids, num_clusters, dim).transpose();
    rows.par_chunks(DISTANCE_BLOCK_ROWS * dim)
        .zip(row_norms.par_chunks(DISTANCE_BLOCK_ROWS))
        .zip(out.par_chunks_mut(DISTANCE_BLOCK_ROWS * outputs_per_row))
        .for_each_init(
            || vec![0.0f32; DISTANCE_BLOCK_ROWS * num_clusters],
            |distances, ((block, block_norms), block_out)| {
                let num_block_rows = block_norms.len();
                let distances = &mut distances[..num_block_rows * num_clusters];
                matmul(
                    MatMut::from_row_major_slice_mut(distances, num_block_rows, num_clusters),
                    Accum::Replace,
                    MatRef::from_row_major_slice(block, num_block_rows, dim),
                    centroids_transposed,
                    -2.0f32,
                    Par::Seq,
                );
                for ((row_distances, row_norm), row_out) in distances
                    .chunks_exact_mut(num_clusters)
                    .zip(block_norms)
                    .zip(block_out.chunks_exact_mut(outputs_per_row))
                {
                    for (distance, centroid_norm) in row_distances.iter_mut().zip(&centroid_norms) {
                        *distance = (*distance + row_norm + centroid_norm).max(0.0);
                    }
                    per_row(row_distances, row_out);
                }
            },
        );
}

/// Returns `(index, distance)` of the smallest distance; ties go to the lowest index.
fn nearest(distances: &[f32]) -> (u32, f32) {
    let mut best = (0u32, distances[0]);
    for (index, &distance) in distances.iter().enumerate().skip(1) {
        if distance < best.1 {
            best = (index as u32, distance);
        }
    }
    best
}

/// The two nearest centroids of a row.
#[derive(Debug, Clone, Copy, Default)]
struct TwoNearest {
    first: u32,
    first_distance: f32,
    second: u32,
    second_distance: f32,
}

impl TwoNearest {
    fn from_distances(distances: &[f32]) -> Self {
        debug_assert!(distances.len() >= 2);
        let (mut first, mut second) = if distances[1] < distances[0] {
            (1, 0)
        } else {
            (0, 1)
        };
        for (index, &distance) in distances.iter().enumerate().skip(2) {
            if distance < distances[first] {
                second = first;
                first = index;
            } else if distance < distances[second] {
                second = index;
            }
        }
        TwoNearest {
            first: first as u32,
            first_distance: distances[first],
            second: second as u32,
            second_distance: distances[second],
        }
    }

    /// What the row loses if it cannot have its first choice.
    fn regret(&self) -> f32 {
        self.second_distance - self.first_distance
    }
}

/// Returns k-means++ seeds (`k × dim`) drawn from `rows`, using the greedy variant: each step
/// draws `2 + ln k` candidates by D² sampling and keeps the one that lowers the total cost most.
fn kmeans_plus_plus(rows: &[f32], dim: usize, num_clusters: usize, rng: &mut StdRng) -> Vec<f32> {
    let num_rows = rows.len() / dim;
    let num_candidates = 2 + (num_clusters as f64).ln() as usize;
    let row_norms = squared_norms(rows, dim);
    let row = |index: usize| &rows[index * dim..(index + 1) * dim];

    let first = rng.random_range(0..num_rows);
    let mut centroids = Vec::with_capacity(num_clusters * dim);
    centroids.extend_from_slice(row(first));
    let mut min_distances = vec![0.0f32; num_rows];
    map_row_distances(
        rows,
        &row_norms,
        dim,
        row(first),
        &mut min_distances,
        1,
        |distances, out| out[0] = distances[0],
    );
    let mut candidate_rows = Vec::with_capacity(num_candidates * dim);
    let mut candidate_distances = vec![0.0f32; num_rows * num_candidates];
    for _ in 1..num_clusters {
        let chunk_sums: Vec<f64> = min_distances
            .par_chunks(SUM_CHUNK_ROWS)
            .map(|chunk| chunk.iter().map(|&value| f64::from(value)).sum::<f64>())
            .collect();
        let candidates: Vec<usize> = (0..num_candidates)
            .map(|_| sample_by_weight(&min_distances, &chunk_sums, rng))
            .collect();
        candidate_rows.clear();
        for &candidate in &candidates {
            candidate_rows.extend_from_slice(row(candidate));
        }
        map_row_distances(
            rows,
            &row_norms,
            dim,
            &candidate_rows,
            &mut candidate_distances,
            num_candidates,
            |distances, out| out.copy_from_slice(distances),
        );
        // Cost of the seeding if each candidate were added, summed per chunk, chunks in order.
        let partial_costs: Vec<Vec<f64>> = min_distances
            .par_chunks(SUM_CHUNK_ROWS)
            .zip(candidate_distances.par_chunks(SUM_CHUNK_ROWS * num_candidates))
            .map(|(current_chunk, candidate_chunk)| {
                let mut costs = vec![0.0f64; num_candidates];
                for (&current, row_candidates) in current_chunk
                    .iter()
                    .zip(candidate_chunk.chunks_exact(num_candidates))
                {
                    for (cost, &distance) in costs.iter_mut().zip(row_candidates) {
                        *cost += f64::from(current.min(distance));
                    }
                }
                costs
            })
            .collect();
        let mut costs = vec![0.0f64; num_candidates];
        for chunk_costs in &partial_costs {
            for (cost, chunk_cost) in costs.iter_mut().zip(chunk_costs) {
                *cost += chunk_cost;
            }
        }
        let mut best = 0;
        for (slot, &cost) in costs.iter().enumerate() {
            if cost < costs[best] {
                best = slot;
            }
        }
        centroids.extend_from_slice(row(candidates[best]));
        min_distances
            .par_iter_mut()
            .zip(candidate_distances.par_chunks(num_candidates))
            .for_each(|(current, row_candidates)| *current = current.min(row_candidates[best]));
    }
    centroids
}

/// Returns an index drawn with probability proportional to `weights[index]`, or uniformly when
/// every weight is 0. `chunk_sums` are the sums of `weights` over chunks of `SUM_CHUNK_ROWS`.
fn sample_by_weight(weights: &[f32], chunk_sums: &[f64], rng: &mut StdRng) -> usize {
    let total: f64 = chunk_sums.iter().sum();
    if total <= 0.0 {
        return rng.random_range(0..weights.len());
    }
    let target = rng.random::<f64>() * total;
    let mut cumulative = 0.0f64;
    for (chunk_index, &chunk_sum) in chunk_sums.iter().enumerate() {
        if cumulative + chunk_sum <= target {
            cumulative += chunk_sum;
            continue;
        }
        let start = chunk_index * SUM_CHUNK_ROWS;
        let end = (start + SUM_CHUNK_ROWS).min(weights.len());
        for (index, &weight) in weights.iter().enumerate().take(end).skip(start) {
            cumulative += f64::from(weight);
            if weight > 0.0 && cumulative > target {
                return index;
            }
        }
    }
    // Rounding left the target past the last positive weight: take that weight's row.
    weights
        .iter()
        .rposition(|&weight| weight > 0.0)
        .expect("the total weight is positive")
}

/// Runs Lloyd iterations on `rows`, updating `centroids` in place, until no assignment changes,
/// the centroids move less than the tolerance, or `max_iterations` is reached. Empty clusters are re-seeded with the rows farthest from
/// their centroids. Calls `on_iteration(done)` after each iteration.
fn lloyd(
    rows: &[f32],
    dim: usize,
    centroids: &mut [f32],
    num_clusters: usize,
    max_iterations: usize,
    on_iteration: &dyn Fn(usize),
) {
    let num_rows = rows.len() / dim;
    let row_norms = squared_norms(rows, dim);
    let shift_threshold = LLOYD_TOLERANCE * mean_variance(rows, dim);
    let mut assignments = vec![u32::MAX; num_rows];
    let mut nearest_pairs = vec![(0u32, 0.0f32); num_rows];
    for iteration in 0..max_iterations {
        map_row_distances(
            rows,
            &row_norms,
            dim,
            centroids,
            &mut nearest_pairs,
            1,
            |distances, out| out[0] = nearest(distances),
        );
        let mut num_changed = 0usize;
        for (assignment, &(cluster, _)) in assignments.iter_mut().zip(&nearest_pairs) {
            if *assignment != cluster {
                *assignment = cluster;
                num_changed += 1;
            }
        }
        if num_changed == 0 {
            // Converged: the centroids already are the means of these clusters.
            on_iteration(max_iterations);
            return;
        }
        let means = cluster_means(rows, dim, &assignments, num_clusters, centroids);
        let total_shift: f64 = centroids
            .iter()
            .zip(&means)
            .map(|(old, new)| {
                let delta = f64::from(*new) - f64::from(*old);
                delta * delta
            })
            .sum();
        centroids.copy_from_slice(&means);
        let num_reseeded = reseed_empty_clusters(
            rows,
            dim,
            centroids,
            &assignments,
            &nearest_pairs,
            num_clusters,
        );
        if num_reseeded == 0 && total_shift <= shift_threshold {
            on_iteration(max_iterations);
            return;
        }
        on_iteration(iteration + 1);
    }
}

/// Moves the centroid of every empty cluster onto a distinct row, taking the rows farthest from
/// their assigned centroid first, and only from clusters that keep at least one other row.
/// Returns the number of clusters re-seeded.
fn reseed_empty_clusters(
    rows: &[f32],
    dim: usize,
    centroids: &mut [f32],
    assignments: &[u32],
    nearest_pairs: &[(u32, f32)],
    num_clusters: usize,
) -> usize {
    let mut sizes = vec![0usize; num_clusters];
    for &cluster in assignments {
        sizes[cluster as usize] += 1;
    }
    let empty_clusters: Vec<usize> = (0..num_clusters).filter(|&c| sizes[c] == 0).collect();
    if empty_clusters.is_empty() {
        return 0;
    }
    let mut by_distance: Vec<u32> = (0..assignments.len() as u32).collect();
    by_distance.par_sort_unstable_by(|&a, &b| {
        nearest_pairs[b as usize]
            .1
            .total_cmp(&nearest_pairs[a as usize].1)
            .then(a.cmp(&b))
    });
    let mut donors = by_distance.into_iter();
    for &empty_cluster in &empty_clusters {
        for row_index in donors.by_ref() {
            let row_index = row_index as usize;
            let donor_cluster = assignments[row_index] as usize;
            if sizes[donor_cluster] > 1 {
                sizes[donor_cluster] -= 1;
                sizes[empty_cluster] += 1;
                centroids[empty_cluster * dim..(empty_cluster + 1) * dim]
                    .copy_from_slice(&rows[row_index * dim..(row_index + 1) * dim]);
                break;
            }
        }
    }
    empty_clusters.len()
}

/// Returns the mean of each cluster (`k × dim`), summed in `f64` in row order. A cluster with
/// no rows keeps its row of `fallback` (which must then be `k × dim`).
fn cluster_means(
    rows: &[f32],
    dim: usize,
    assignments: &[u32],
    num_clusters: usize,
    fallback: &[f32],
) -> Vec<f32> {
    // Group row indices by cluster (a counting sort keeps row order inside each group), so the
    // clusters can be summed in parallel, each in a fixed order.
    let mut group_starts = vec![0usize; num_clusters + 1];
    for &cluster in assignments {
        group_starts[cluster as usize + 1] += 1;
    }
    for cluster in 0..num_clusters {
        group_starts[cluster + 1] += group_starts[cluster];
    }
    let mut next_slot = group_starts.clone();
    let mut grouped_rows = vec![0u32; assignments.len()];
    for (row_index, &cluster) in assignments.iter().enumerate() {
        let slot = &mut next_slot[cluster as usize];
        grouped_rows[*slot] = row_index as u32;
        *slot += 1;
    }

    let mut means = vec![0.0f32; num_clusters * dim];
    means
        .par_chunks_mut(dim)
        .enumerate()
        .for_each(|(cluster, mean)| {
            let members = &grouped_rows[group_starts[cluster]..group_starts[cluster + 1]];
            if members.is_empty() {
                mean.copy_from_slice(&fallback[cluster * dim..(cluster + 1) * dim]);
                return;
            }
            let mut sums = vec![0.0f64; dim];
            for &row_index in members {
                let row_index = row_index as usize;
                for (sum, value) in sums
                    .iter_mut()
                    .zip(&rows[row_index * dim..(row_index + 1) * dim])
                {
                    *sum += f64::from(*value);
                }
            }
            let inverse_size = 1.0 / members.len() as f64;
            for (target, sum) in mean.iter_mut().zip(&sums) {
                *target = (sum * inverse_size) as f32;
            }
        });
    means
}

/// Returns a cluster for every row such that each cluster size is within
/// `[min_size, max_size]`.
///
/// Rows are placed in decreasing order of regret (second-nearest minus nearest distance) into
/// the nearest cluster that is not yet full; clusters left under `min_size` then take the rows
/// whose move costs least from clusters that can spare them. Requires
/// `k·min_size ≤ n ≤ k·max_size`.
fn constrained_assignment(
    rows: &[f32],
    dim: usize,
    row_norms: &[f32],
    centroids: &[f32],
    num_clusters: usize,
    min_size: usize,
    max_size: usize,
) -> Vec<u32> {
    let num_rows = rows.len() / dim;
    debug_assert!(num_clusters * min_size <= num_rows && num_rows <= num_clusters * max_size);
    let row = |index: usize| &rows[index * dim..(index + 1) * dim];
    let centroid = |cluster: usize| &centroids[cluster * dim..(cluster + 1) * dim];

    let mut two_nearest = vec![TwoNearest::default(); num_rows];
    map_row_distances(
        rows,
        row_norms,
        dim,
        centroids,
        &mut two_nearest,
        1,
        |distances, out| out[0] = TwoNearest::from_distances(distances),
    );
    let mut placement_order: Vec<u32> = (0..num_rows as u32).collect();
    // Keys are unique (ties broken by row index), so the parallel sort is deterministic.
    placement_order.par_sort_unstable_by(|&a, &b| {
        two_nearest[b as usize]
            .regret()
            .total_cmp(&two_nearest[a as usize].regret())
            .then(a.cmp(&b))
    });

    let mut sizes = vec![0usize; num_clusters];
    let mut assignments = vec![0u32; num_rows];
    let mut row_distances = vec![0.0f32; num_rows];
    for &row_index in &placement_order {
        let row_index = row_index as usize;
        let choice = two_nearest[row_index];
        let (cluster, distance) = if sizes[choice.first as usize] < max_size {
            (choice.first as usize, choice.first_distance)
        } else if sizes[choice.second as usize] < max_size {
            (choice.second as usize, choice.second_distance)
        } else {
            // Both favourites are full: rank every cluster that still has room.
            let mut best_opt: Option<(usize, f32)> = None;
            for (cluster, &size) in sizes.iter().enumerate() {
                if size >= max_size {
                    continue;
                }
                let distance = squared_l2_f32(row(row_index), centroid(cluster));
                let is_better = match best_opt {
                    Some((_, best_distance)) => distance < best_distance,
                    None => true,
                };
                if is_better {
                    best_opt = Some((cluster, distance));
                }
            }
            best_opt.expect("k·max_size ≥ n leaves room for every row")
        };
        sizes[cluster] += 1;
        assignments[row_index] = cluster as u32;
        row_distances[row_index] = distance;
    }

    for cluster in 0..num_clusters {
        if sizes[cluster] >= min_size {
            continue;
        }
        let target = centroid(cluster);
        let sizes_now = &sizes;
        let assignments_now = &assignments;
        let distances_now = &row_distances;
        // (extra cost of the move, row): only rows of clusters that can spare one.
        let mut candidates: Vec<(f32, u32)> = (0..num_rows)
            .into_par_iter()
            .filter(|&index| {
                let donor = assignments_now[index] as usize;
                donor != cluster && sizes_now[donor] > min_size
            })
            .map(|index| {
                let extra_cost = squared_l2_f32(row(index), target) - distances_now[index];
                (extra_cost, index as u32)
            })
            .collect();
        // Keys are unique, so the selection and the order are deterministic. Only a window of
        // the cheapest candidates is sorted; it grows if donors run dry inside it.
        let by_cost = |a: &(f32, u32), b: &(f32, u32)| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1));
        let mut window_len = (2 * (min_size - sizes[cluster])).max(MIN_TOP_UP_WINDOW);
        let mut remaining: &mut [(f32, u32)] = &mut candidates;
        while sizes[cluster] < min_size && !remaining.is_empty() {
            let take = window_len.min(remaining.len());
            if take < remaining.len() {
                remaining.select_nth_unstable_by(take - 1, by_cost);
            }
            let (window, rest) = remaining.split_at_mut(take);
            window.par_sort_unstable_by(by_cost);
            for &(_, row_index) in window.iter() {
                if sizes[cluster] >= min_size {
                    break;
                }
                let row_index = row_index as usize;
                let donor = assignments[row_index] as usize;
                // Earlier moves may have brought the donor down to its minimum.
                if sizes[donor] <= min_size {
                    continue;
                }
                sizes[donor] -= 1;
                sizes[cluster] += 1;
                assignments[row_index] = cluster as u32;
                row_distances[row_index] = squared_l2_f32(row(row_index), target);
            }
            remaining = rest;
            window_len = window_len.saturating_mul(4);
        }
    }
    debug_assert!(sizes
        .iter()
        .all(|&size| min_size <= size && size <= max_size));
    assignments
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn gaussian(rng: &mut StdRng) -> f32 {
        let u1 = 1.0 - rng.random::<f64>();
        let u2 = rng.random::<f64>();
        ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
    }

    /// Gaussian blobs of the given sizes around well-separated random centers, rows shuffled.
    /// Returns the data and the true blob of each row.
    fn blobs(sizes: &[usize], dim: usize, spread: f32, seed: u64) -> (Vec<f32>, Vec<usize>) {
        let mut rng = StdRng::seed_from_u64(seed);
        let centers: Vec<Vec<f32>> = (0..sizes.len())
            .map(|blob| {
                (0..dim)
                    .map(|axis| if axis % sizes.len() == blob { 100.0 } else { 0.0 } + rng.random_range(-5.0..5.0))
                    .collect()
            })
            .collect();
        let mut labels: Vec<usize> = sizes
            .iter()
            .enumerate()
            .flat_map(|(blob, &size)| std::iter::repeat_n(blob, size))
            .collect();
        for i in (1..labels.len()).rev() {
            let j = rng.random_range(0..=i);
            labels.swap(i, j);
        }
        let mut data = Vec::with_capacity(labels.len() * dim);
        for &label in &labels {
            for center_value in &centers[label] {
                data.push(center_value + spread * gaussian(&mut rng));
            }
        }
        (data, labels)
    }

    fn params(num_clusters: usize) -> BalancedKMeansParams {
        BalancedKMeansParams {
            num_clusters,
            ..BalancedKMeansParams::default()
        }
    }

    fn no_progress(_: usize, _: usize) {}

    fn cluster_sizes(assignments: &[u32], num_clusters: usize) -> Vec<usize> {
        let mut sizes = vec![0usize; num_clusters];
        for &cluster in assignments {
            sizes[cluster as usize] += 1;
        }
        sizes
    }

    fn assert_within_bounds(assignments: &[u32], num_clusters: usize, tolerance: f64) {
        let num_rows = assignments.len();
        let ideal = num_rows as f64 / num_clusters as f64;
        let lower = ((1.0 - tolerance) * ideal).floor() as usize;
        let upper = ((1.0 + tolerance) * ideal).ceil() as usize;
        for (cluster, size) in cluster_sizes(assignments, num_clusters)
            .into_iter()
            .enumerate()
        {
            assert!(
                lower <= size && size <= upper,
                "cluster {cluster} has {size} rows, bounds [{lower}, {upper}]"
            );
        }
    }

    /// Checks that the clustering equals the labels up to a permutation of cluster ids.
    fn assert_same_partition(assignments: &[u32], labels: &[usize], num_clusters: usize) {
        let mut label_of_cluster = vec![usize::MAX; num_clusters];
        for (&cluster, &label) in assignments.iter().zip(labels) {
            let slot = &mut label_of_cluster[cluster as usize];
            if *slot == usize::MAX {
                *slot = label;
            }
            assert_eq!(*slot, label, "cluster {cluster} mixes blobs");
        }
        let mut seen = label_of_cluster.clone();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), num_clusters, "two clusters share a blob");
    }

    #[test]
    fn recovers_equal_blobs_exactly() {
        let dim = 6;
        let (data, labels) = blobs(&[400, 400, 400, 400, 400], dim, 1.0, 1);
        let clustering = balanced_kmeans(&data, dim, &params(5), &no_progress).unwrap();
        assert_same_partition(&clustering.assignments, &labels, 5);
        assert_eq!(cluster_sizes(&clustering.assignments, 5), vec![400; 5]);
        assert_within_bounds(&clustering.assignments, 5, 0.10);
    }

    #[test]
    fn centroids_are_the_means_of_the_final_clusters() {
        let dim = 3;
        let (data, _) = blobs(&[300, 200, 100], dim, 3.0, 2);
        let clustering = balanced_kmeans(&data, dim, &params(3), &no_progress).unwrap();
        assert_eq!(clustering.centroids.len(), 3 * dim);
        for cluster in 0..3 {
            let members: Vec<&[f32]> = data
                .chunks_exact(dim)
                .zip(&clustering.assignments)
                .filter(|(_, &c)| c as usize == cluster)
                .map(|(row, _)| row)
                .collect();
            for axis in 0..dim {
                let mean =
                    members.iter().map(|row| row[axis] as f64).sum::<f64>() / members.len() as f64;
                assert!((clustering.centroids[cluster * dim + axis] as f64 - mean).abs() < 1e-3);
            }
        }
    }

    #[test]
    fn unbalanced_blobs_respect_the_size_bounds() {
        let dim = 4;
        for (tolerance, seed) in [(0.10, 3), (0.0, 4), (0.25, 5)] {
            let (data, _) = blobs(&[1400, 400, 200], dim, 1.0, seed);
            let params = BalancedKMeansParams {
                num_clusters: 3,
                balance_tolerance: tolerance,
                seed,
                ..BalancedKMeansParams::default()
            };
            let clustering = balanced_kmeans(&data, dim, &params, &no_progress).unwrap();
            assert_within_bounds(&clustering.assignments, 3, tolerance);
        }
    }

    #[test]
    fn many_clusters_with_sampling_respect_the_size_bounds() {
        let dim = 5;
        let sizes: Vec<usize> = (0..12).map(|i| 50 + 40 * i).collect();
        let (data, _) = blobs(&sizes, dim, 4.0, 6);
        let num_rows = data.len() / dim;
        for num_clusters in [2, 7, 12, 30] {
            let params = BalancedKMeansParams {
                num_clusters,
                max_training_rows: 500,
                ..BalancedKMeansParams::default()
            };
            let clustering = balanced_kmeans(&data, dim, &params, &no_progress).unwrap();
            assert_eq!(clustering.assignments.len(), num_rows);
            assert_within_bounds(&clustering.assignments, num_clusters, 0.10);
        }
    }

    #[test]
    fn small_inputs_and_duplicates_stay_valid() {
        // k = n: every row is its own cluster.
        let data = [0.0f32, 0.0, 1.0, 1.0, 5.0, 5.0];
        let clustering = balanced_kmeans(&data, 2, &params(3), &no_progress).unwrap();
        assert_eq!(cluster_sizes(&clustering.assignments, 3), vec![1, 1, 1]);
        // Identical rows: k-means++ finds no spread, sizes are still balanced.
        let data = vec![2.5f32; 40 * 3];
        let clustering = balanced_kmeans(&data, 3, &params(4), &no_progress).unwrap();
        assert_within_bounds(&clustering.assignments, 4, 0.10);
        assert!(clustering.centroids.iter().all(|&v| v == 2.5));
        // No Lloyd iterations at all.
        let (data, _) = blobs(&[30, 30], 2, 1.0, 8);
        let params = BalancedKMeansParams {
            num_clusters: 2,
            max_iterations: 0,
            ..BalancedKMeansParams::default()
        };
        let clustering = balanced_kmeans(&data, 2, &params, &no_progress).unwrap();
        assert_within_bounds(&clustering.assignments, 2, 0.10);
    }

    #[test]
    fn one_cluster_holds_everything() {
        let data = [1.0f32, 2.0, 3.0, 6.0];
        let clustering = balanced_kmeans(&data, 2, &params(1), &no_progress).unwrap();
        assert_eq!(clustering.assignments, vec![0, 0]);
        assert_eq!(clustering.centroids, vec![2.0, 4.0]);
    }

    #[test]
    fn rejects_bad_cluster_counts_and_tolerances() {
        let data = [1.0f32, 2.0, 3.0, 4.0];
        for bad in [params(0), params(3)] {
            let error = balanced_kmeans(&data, 2, &bad, &no_progress).unwrap_err();
            assert!(matches!(error, Error::InvalidInput { .. }), "{error}");
        }
        let bad_tolerance = BalancedKMeansParams {
            balance_tolerance: -0.1,
            ..params(2)
        };
        assert!(balanced_kmeans(&data, 2, &bad_tolerance, &no_progress).is_err());
        assert!(balanced_kmeans(&data, 3, &params(1), &no_progress).is_err());
        assert!(balanced_kmeans(&[f32::NAN, 1.0], 2, &params(1), &no_progress).is_err());
    }

    #[test]
    fn output_is_identical_across_runs_and_thread_counts() {
        let dim = 8;
        let (data, _) = blobs(&[900, 600, 500, 300, 200], dim, 20.0, 9);
        let params = BalancedKMeansParams {
            num_clusters: 6,
            max_training_rows: 1500,
            seed: 42,
            ..BalancedKMeansParams::default()
        };
        let run_with = |num_threads: usize| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(num_threads)
                .build()
                .unwrap()
                .install(|| balanced_kmeans(&data, dim, &params, &no_progress).unwrap())
        };
        let reference = run_with(1);
        assert_eq!(reference, run_with(1));
        assert_eq!(reference, run_with(2));
        assert_eq!(reference, run_with(4));
        let other_seed = BalancedKMeansParams {
            seed: 43,
            ..params.clone()
        };
        assert_within_bounds(
            &balanced_kmeans(&data, dim, &other_seed, &no_progress)
                .unwrap()
                .assignments,
            6,
            0.10,
        );
    }

    #[test]
    fn progress_reaches_its_total() {
        let (data, _) = blobs(&[100, 100], 2, 1.0, 10);
        let last_done = AtomicUsize::new(0);
        let last_total = AtomicUsize::new(0);
        let record = |done: usize, total: usize| {
            assert!(done <= total);
            assert!(done >= last_done.load(Ordering::SeqCst));
            last_done.store(done, Ordering::SeqCst);
            last_total.store(total, Ordering::SeqCst);
        };
        balanced_kmeans(&data, 2, &params(2), &record).unwrap();
        assert_eq!(
            last_done.load(Ordering::SeqCst),
            last_total.load(Ordering::SeqCst)
        );
        assert!(last_total.load(Ordering::SeqCst) > 0);
    }

    #[test]
    fn size_bounds_are_feasible() {
        for num_rows in 1..60 {
            for num_clusters in 1..=num_rows {
                for tolerance in [0.0, 0.05, 0.1, 0.5, 1.0, 3.0] {
                    let (min_size, max_size) =
                        balanced_cluster_size_bounds(num_rows, num_clusters, tolerance);
                    assert!(min_size >= 1 && min_size <= max_size);
                    assert!(num_clusters * min_size <= num_rows);
                    assert!(num_rows <= num_clusters * max_size);
                    assert!(max_size <= num_rows);
                }
            }
        }
        assert_eq!(balanced_cluster_size_bounds(1000, 10, 0.1), (90, 110));
        assert_eq!(balanced_cluster_size_bounds(1001, 10, 0.0), (100, 101));
        assert_eq!(balanced_cluster_size_bounds(40, 4, 0.1), (9, 11));
        assert_eq!(balanced_cluster_size_bounds(5, 5, 0.5), (1, 2));
    }

    #[test]
    fn constrained_assignment_tops_up_a_far_cluster() {
        // 1-D: every row prefers cluster 0 or 1; cluster 2 sits far away and only gets rows
        // because of the bounds.
        let rows: Vec<f32> = (0..40)
            .map(|i| if i % 2 == 0 { 0.0 } else { 10.0 })
            .collect();
        let row_norms = squared_norms(&rows, 1);
        let centroids = [0.0f32, 10.0, 1000.0];
        let (min_size, max_size) = balanced_cluster_size_bounds(40, 3, 0.5);
        assert_eq!((min_size, max_size), (6, 20));
        let assignments =
            constrained_assignment(&rows, 1, &row_norms, &centroids, 3, min_size, max_size);
        assert_eq!(cluster_sizes(&assignments, 3), vec![20, 14, 6]);
        // The far cluster takes the rows that lose least by moving: those at 10.
        for (row, &cluster) in rows.iter().zip(&assignments) {
            if cluster == 2 {
                assert_eq!(*row, 10.0);
            }
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

        #[test]
        fn constrained_assignment_always_meets_the_bounds(
            num_rows in 2usize..120,
            num_clusters_seed in 0usize..1000,
            tolerance in proptest::sample::select(vec![0.0, 0.05, 0.1, 0.3, 1.0]),
            seed in 0u64..1000,
        ) {
            let num_clusters = 2 + num_clusters_seed % (num_rows - 1).min(9);
            let dim = 2;
            let mut rng = StdRng::seed_from_u64(seed);
            // Skewed rows and centroids far from them make both bounds bind.
            let rows: Vec<f32> = (0..num_rows * dim)
                .map(|_| rng.random_range(0.0f32..1.0).powi(4) * 10.0)
                .collect();
            let centroids: Vec<f32> = (0..num_clusters * dim)
                .map(|_| rng.random_range(-20.0f32..40.0))
                .collect();
            let row_norms = squared_norms(&rows, dim);
            let (min_size, max_size) =
                balanced_cluster_size_bounds(num_rows, num_clusters, tolerance);
            let assignments = constrained_assignment(
                &rows, dim, &row_norms, &centroids, num_clusters, min_size, max_size,
            );
            for size in cluster_sizes(&assignments, num_clusters) {
                proptest::prop_assert!(min_size <= size && size <= max_size);
            }
        }

        #[test]
        fn balanced_kmeans_always_meets_the_bounds(
            num_rows in 1usize..150,
            num_clusters_seed in 0usize..1000,
            tolerance in proptest::sample::select(vec![0.0, 0.1, 0.5]),
            seed in 0u64..1000,
        ) {
            let num_clusters = 1 + num_clusters_seed % num_rows.min(10);
            let mut rng = StdRng::seed_from_u64(seed);
            let data: Vec<f32> = (0..num_rows * 3).map(|_| rng.random_range(-1.0f32..1.0)).collect();
            let params = BalancedKMeansParams {
                num_clusters,
                balance_tolerance: tolerance,
                seed,
                max_training_rows: 40,
                ..BalancedKMeansParams::default()
            };
            let clustering = balanced_kmeans(&data, 3, &params, &no_progress).unwrap();
            let (min_size, max_size) =
                balanced_cluster_size_bounds(num_rows, num_clusters, tolerance);
            for size in cluster_sizes(&clustering.assignments, num_clusters) {
                proptest::prop_assert!(min_size <= size && size <= max_size);
            }
            proptest::prop_assert!(clustering.centroids.iter().all(|v| v.is_finite()));
        }
    }

    #[test]
    fn sampling_by_weight_skips_zero_weights() {
        let mut rng = StdRng::seed_from_u64(0);
        let mut weights = vec![0.0f32; 10_000];
        weights[4_500] = 1.0;
        weights[9_999] = 3.0;
        let chunk_sums: Vec<f64> = weights
            .chunks(SUM_CHUNK_ROWS)
            .map(|chunk| chunk.iter().map(|&w| w as f64).sum())
            .collect();
        let mut counts = [0usize; 2];
        for _ in 0..400 {
            match sample_by_weight(&weights, &chunk_sums, &mut rng) {
                4_500 => counts[0] += 1,
                9_999 => counts[1] += 1,
                other => panic!("drew zero-weight index {other}"),
            }
        }
        assert!(counts[0] > 50 && counts[1] > 200, "{counts:?}");
    }
}
