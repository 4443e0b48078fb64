//! Exact filtered ground truth by brute force: for every query and workload, the `k` nearest
//! base vectors (squared L2) among those passing the query's filter, best first, ties broken
//! by the smaller id, with distances accumulated in float64.
//!
//! Queries are processed in blocks (one pass over the base serves a whole block, so the base
//! streams from memory once per block, not once per query), blocks in parallel with rayon.
//! Rows with fewer than `k` matches are padded with id -1 and distance [`PAD_DISTANCE`]. Pure.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use rayon::prelude::*;

use super::{QueryFilter, SynthAttributes};
use squash_core::index::BuildProgress;

/// The distance of padding entries: the largest value the vector file readers accept (they
/// reject infinities and values whose squares would overflow).
pub const PAD_DISTANCE: f32 = squash_core::protocol::MAX_COMPONENT_MAGNITUDE;

/// Queries sharing one pass over the base.
const QUERIES_PER_BLOCK: usize = 8;

/// The ground truth of one workload.
#[derive(Debug, Clone, PartialEq)]
pub struct GroundTruth {
    /// Neighbours per query.
    pub k: usize,
    /// `num_queries x k` base ids, best first (-1 pads rows with fewer than `k` matches).
    pub ids: Vec<i32>,
    /// `num_queries x k` squared L2 distances ([`PAD_DISTANCE`] pads).
    pub distances: Vec<f32>,
    /// Per query, the number of base vectors passing its filter.
    pub match_counts: Vec<usize>,
}

/// A candidate ordered by (distance, id): the heap's largest is the worst kept.
#[derive(Clone, Copy, PartialEq)]
struct Candidate {
    distance: f64,
    id: u32,
}

impl Eq for Candidate {}

impl PartialOrd for Candidate {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Candidate {
    fn cmp(&self, other: &Self) -> Ordering {
        self.distance
            .total_cmp(&other.distance)
            .then(self.id.cmp(&other.id))
    }
}

/// Keeps the `k` smallest candidates.
struct TopK {
    k: usize,
    heap: BinaryHeap<Candidate>,
    num_matches: usize,
}

impl TopK {
    fn new(k: usize) -> Self {
        TopK {
            k,
            heap: BinaryHeap::with_capacity(k + 1),
            num_matches: 0,
        }
    }

    fn offer(&mut self, candidate: Candidate) {
        self.num_matches += 1;
        if self.heap.len() < self.k {
            self.heap.push(candidate);
        } else if self.heap.peek().is_some_and(|worst| candidate < *worst) {
            self.heap.pop();
            self.heap.push(candidate);
        }
    }

    fn into_sorted(self) -> (Vec<Candidate>, usize) {
        (self.heap.into_sorted_vec(), self.num_matches)
    }
}

/// Returns the squared L2 distance of two float32 vectors, accumulated in float64.
pub fn squared_l2_f64(a: &[f32], b: &[f32]) -> f64 {
    let mut lanes = [0f64; 4];
    let mut a_chunks = a.chunks_exact(4);
    let mut b_chunks = b.chunks_exact(4);
    for (x, y) in (&mut a_chunks).zip(&mut b_chunks) {
        for lane in 0..4 {
            let d = f64::from(x[lane]) - f64::from(y[lane]);
            lanes[lane] += d * d;
        }
    }
    let mut sum = (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);
    for (x, y) in a_chunks.remainder().iter().zip(b_chunks.remainder()) {
        let d = f64::from(*x) - f64::from(*y);
        sum += d * d;
    }
    sum
}

/// One query's exact top-k in one workload, best first, and how many base rows its filter
/// matches.
type QueryTruth = (Vec<Candidate>, usize);

/// Returns, per workload (`filters[w][q]` is query `q`'s filter in workload `w`), the exact
/// top-`k` of every query, reporting queries done to `progress`.
pub fn ground_truth(
    base: &[f32],
    attributes: &SynthAttributes,
    queries: &[f32],
    dim: usize,
    filters: &[&[QueryFilter]],
    k: usize,
    progress: &dyn BuildProgress,
) -> Vec<GroundTruth> {
    let num_queries = queries.len() / dim.max(1);
    let num_base = base.len() / dim.max(1);
    debug_assert!(filters.iter().all(|f| f.len() == num_queries));
    progress.start_phase("exact ground truth (queries)", num_queries as u64);
    // Per block: per query of the block, per workload, the sorted top-k and the match count.
    let blocks: Vec<Vec<Vec<QueryTruth>>> = queries
        .par_chunks(QUERIES_PER_BLOCK * dim)
        .enumerate()
        .map(|(block, block_queries)| {
            let first_query = block * QUERIES_PER_BLOCK;
            let block_len = block_queries.len() / dim;
            let mut tops: Vec<Vec<TopK>> = (0..block_len)
                .map(|_| filters.iter().map(|_| TopK::new(k)).collect())
                .collect();
            for (row, vector) in base.chunks_exact(dim).enumerate().take(num_base) {
                for (offset, query) in block_queries.chunks_exact(dim).enumerate() {
                    let mut distance_opt = None;
                    for (workload, workload_filters) in filters.iter().enumerate() {
                        if !workload_filters[first_query + offset].matches(attributes, row) {
                            continue;
                        }
                        let distance =
                            *distance_opt.get_or_insert_with(|| squared_l2_f64(query, vector));
                        tops[offset][workload].offer(Candidate {
                            distance,
                            id: row as u32,
                        });
                    }
                }
            }
            progress.advance(block_len as u64);
            tops.into_iter()
                .map(|per_workload| per_workload.into_iter().map(TopK::into_sorted).collect())
                .collect()
        })
        .collect();
    progress.finish_phase();
    (0..filters.len())
        .map(|workload| {
            let mut truth = GroundTruth {
                k,
                ids: Vec::with_capacity(num_queries * k),
                distances: Vec::with_capacity(num_queries * k),
                match_counts: Vec::with_capacity(num_queries),
            };
            for per_query in blocks.iter().flatten() {
                let (candidates, num_matches) = &per_query[workload];
                for position in 0..k {
                    match candidates.get(position) {
                        Some(c) => {
                            truth.ids.push(c.id as i32);
                            truth.distances.push(c.distance as f32);
                        }
                        None => {
                            truth.ids.push(-1);
                            truth.distances.push(PAD_DISTANCE);
                        }
                    }
                }
                truth.match_counts.push(*num_matches);
            }
            truth
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::{generate, workloads, SynthParams};
    use squash_core::index::build::NoProgress;

    #[test]
    fn matches_a_naive_sort_of_every_passing_vector() {
        let params = SynthParams {
            num_vectors: 1500,
            dim: 6,
            num_clusters: 5,
            num_queries: 21,
            seed: 11,
        };
        let data = generate(&params, &NoProgress).expect("generate");
        let mut base = data.base.clone();
        // Exact duplicates of row 3 at rows 700 and 1400: ties must go to the smaller id.
        for copy in [700, 1400] {
            let (head, tail) = base.split_at_mut(copy * 6);
            tail[..6].copy_from_slice(&head[18..24]);
        }
        let specs = workloads(&data.base_attributes, 21, 11);
        let filters: Vec<&[QueryFilter]> = specs.iter().map(|w| w.filters.as_slice()).collect();
        let k = 40;
        let truths = ground_truth(
            &base,
            &data.base_attributes,
            &data.queries,
            6,
            &filters,
            k,
            &NoProgress,
        );
        assert_eq!(truths.len(), specs.len());
        let mut saw_padding = false;
        for (truth, spec) in truths.iter().zip(&specs) {
            for (q, query) in data.queries.chunks_exact(6).enumerate() {
                let mut all: Vec<(f64, usize)> = (0..1500)
                    .filter(|&r| spec.filters[q].matches(&data.base_attributes, r))
                    .map(|r| {
                        let d: f64 = query
                            .iter()
                            .zip(&base[r * 6..r * 6 + 6])
                            .map(|(a, b)| (f64::from(*a) - f64::from(*b)).powi(2))
                            .sum();
                        (d, r)
                    })
                    .collect();
                all.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
                assert_eq!(truth.match_counts[q], all.len());
                for position in 0..k {
                    let (id, distance) = (
                        truth.ids[q * k + position],
                        truth.distances[q * k + position],
                    );
                    match all.get(position) {
                        Some(&(d, r)) => {
                            assert_eq!(id, r as i32, "{} query {q} position {position}", spec.name);
                            assert!((f64::from(distance) - d).abs() <= 1e-6 * d.max(1.0));
                        }
                        None => {
                            saw_padding = true;
                            assert_eq!((id, distance), (-1, PAD_DISTANCE));
                        }
                    }
                }
            }
        }
        // The ~1 % workload has fewer than 40 matches in 1500 rows: padding was exercised.
        assert!(saw_padding);
    }

    #[test]
    fn float64_accumulation_matches_a_plain_sum() {
        let a: Vec<f32> = (0..11).map(|i| i as f32 * 0.37).collect();
        let b: Vec<f32> = (0..11).map(|i| 1.0 - i as f32 * 0.11).collect();
        let plain: f64 = a
            .iter()
            .zip(&b)
            .map(|(x, y)| (f64::from(*x) - f64::from(*y)).powi(2))
            .sum();
        assert!((squared_l2_f64(&a, &b) - plain).abs() < 1e-12);
    }
}
