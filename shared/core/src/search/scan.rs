//! The worker stage: search one partition for a batch of queries (SQUASH §2.2, levels 1-4).
//!
//! Per query: the fine clusters within the query's probe radius (`index/clusters.rs`) give the
//! rows to scan -> exact filter on those rows' raw attributes -> the candidates are scored one of
//! three ways, whichever the cost model finds cheaper for their number, their density and the
//! partition's shape:
//! - **directly**: every candidate's full-precision distance, then the top-k;
//! - **fast-scan**: every candidate's 4-bit estimate (`codec/fastscan.rs`, tables in SIMD
//!   registers, 32 rows per block) -> the `k * R` smallest re-ranked with full-precision
//!   vectors -> top-k;
//! - **quantized**: Hamming distance on sign codes, turned into a distance estimate with the
//!   stored norms, keeping the closest share (never fewer than 50 per re-rank slot) -> OSQ
//!   lower bounds from per-query tables -> the `k * R` smallest bounds re-ranked with
//!   full-precision vectors -> top-k with exact distances.
//!
//! The filter is evaluated exactly up front, on the raw attributes the segment carries, so the
//! scoring is never spent on vectors that fail it and every returned hit has passed the exact
//! predicate. Exact mode scans every row; quantized, it skips the Hamming prune and visits
//! candidates in lower-bound order until the bound exceeds the k-th exact distance (VA-file
//! phase 2). Either way it returns the true top-k of the partition.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::time::Instant;

use crate::codec::sign;
use crate::error::{Error, Result};
use crate::filter::{Filter, MatchingRows};
use crate::index::{PartitionData, QuantizedCodes};
use crate::metric::normalize_in_place;
use crate::protocol::{
    FailureKind, Hit, PartitionOutcome, PartitionTask, QueryHits, ScanStats, SearchKnobs,
    WorkerQuery,
};
use squash_kernels as kernels;

/// The sign-code prune keeps at least this many candidates per re-rank slot (5,000 for k = 10
/// at R = 10): sign codes rank near candidates well but far ones poorly, and a filter that
/// leaves only far candidates (a class other than the query's) needs most of them scored by the
/// lower bound. Measured on Fashion-MNIST `label_eq_other`: recall@10 0.82 with a floor of 10
/// per slot, 0.92 with 30, 0.98 with 50.
const HAMMING_MIN_KEEP_PER_RERANK: usize = 50;

/// Relative slack on lower bounds in exact mode: bounds and exact distances are computed in
/// different (rotated vs original) coordinates in f32, which differ by a few ulps.
const EXACT_MODE_RELATIVE_SLACK: f32 = 1e-4;

/// A query made ready for one index: normalised vector and parsed filter.
#[derive(Debug, Clone)]
pub struct PreparedQuery {
    /// The query vector (unit length for cosine).
    pub vector: Vec<f32>,
    /// The parsed filter.
    pub filter: Filter,
    /// Hits wanted.
    pub k: usize,
    /// Resolved knobs.
    pub knobs: SearchKnobs,
    /// Return attributes with hits.
    pub include_attributes: bool,
    /// Fine clusters within this distance are scanned; `None`: every row.
    pub probe_radius: Option<f32>,
    /// Ids never admitted (rows deleted or replaced by writes not yet folded in), sorted.
    pub excluded_ids: std::sync::Arc<[u64]>,
}

impl PreparedQuery {
    /// Prepares a worker query against the schema and metric of `partition`.
    pub fn try_new(query: &WorkerQuery, partition: &PartitionData) -> Result<PreparedQuery> {
        if query.vector.len() != partition.dim {
            return Err(Error::invalid(
                "vector",
                format!(
                    "has {} components, the index has dimension {}",
                    query.vector.len(),
                    partition.dim
                ),
            ));
        }
        let mut vector = query.vector.clone();
        if partition.metric.normalizes() && !normalize_in_place(&mut vector) {
            return Err(Error::invalid(
                "vector",
                "is a zero vector, which has no cosine distance",
            ));
        }
        let filter = match &query.filter {
            Some(json) => Filter::parse(json, &partition.schema)?,
            None => Filter::match_all(),
        };
        Ok(PreparedQuery {
            vector,
            filter,
            k: query.k,
            knobs: query.knobs,
            include_attributes: query.include_attributes,
            probe_radius: query.probe_radius,
            excluded_ids: std::sync::Arc::from(Vec::new()),
        })
    }
}

/// A candidate ordered by a key, for heaps and selection.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Scored {
    key: f32,
    row: u32,
}

impl Eq for Scored {}

impl Ord for Scored {
    fn cmp(&self, other: &Self) -> Ordering {
        self.key
            .total_cmp(&other.key)
            .then(self.row.cmp(&other.row))
    }
}

impl PartialOrd for Scored {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Per-query tables for the lower bound and the sign-code estimate, in the partition's
/// rotated coordinates.
struct QueryTables {
    table: Vec<f32>,
    constant: f32,
    sign_code: Vec<u64>,
    /// Norm of the query inside the sign subspace.
    sign_subspace_norm: f32,
}

fn query_tables(partition: &PartitionData, codes: &QuantizedCodes, query: &[f32]) -> QueryTables {
    let dim = partition.dim;
    let num_sign_bits = codes.num_sign_bits;
    let mut table = vec![0f32; codes.layout.table_len];
    let mut sign_code = vec![0u64; sign::words_for_bits(num_sign_bits)];
    let mut coordinates = vec![0f32; dim];
    let constant = if partition.metric.uses_inner_product() {
        // q·x = q·mean + (R q)·(R (x - mean)) for the orthonormal rotation R.
        codes.pca.rotate(query, &mut coordinates);
        let base =
            partition.metric.inner_product_offset() - kernels::dot_f32(query, &codes.pca.mean);
        base + codes
            .osq
            .ip_lower_bound_table(&codes.layout, &coordinates, &mut table)
    } else {
        codes.pca.project(query, &mut coordinates);
        codes
            .osq
            .l2_lower_bound_table(&codes.layout, &coordinates, &mut table)
    };
    sign::encode_sign(&coordinates, num_sign_bits, &mut sign_code);
    let sign_subspace_norm = coordinates[..num_sign_bits.min(dim)]
        .iter()
        .map(|v| v * v)
        .sum::<f32>()
        .sqrt();
    QueryTables {
        table,
        constant,
        sign_code,
        sign_subspace_norm,
    }
}

/// Returns, per candidate, a distance estimate from its sign code: the angle to the query in
/// the sign subspace is estimated as `π·h/bits` from the Hamming distance `h`, and combined
/// with the stored norms (`‖q−z‖² ≈ ‖z_s‖² + ‖z_r‖² − 2‖q_s‖‖z_s‖cos θ` up to terms equal
/// for all candidates; `−q·z ≈ −‖q_s‖‖z_s‖cos θ`). Plain Hamming ignores norms and ranks
/// badly when a filter leaves only far candidates, whose norms decide their order.
fn sign_estimates(
    partition: &PartitionData,
    codes: &QuantizedCodes,
    tables: &QueryTables,
    rows: &[u32],
) -> Vec<f32> {
    let mut distances = vec![0u32; rows.len()];
    kernels::hamming_distances_gather(&tables.sign_code, &codes.sign_codes, rows, &mut distances);
    let cosines = sign::angle_cosines(codes.num_sign_bits);
    let query_norm = tables.sign_subspace_norm;
    let inner_product = partition.metric.uses_inner_product();
    rows.iter()
        .zip(&distances)
        .map(|(&row, &hamming)| {
            let norms = &codes.sign_norms[2 * row as usize..][..2];
            let cosine = cosines[(hamming as usize).min(cosines.len() - 1)];
            let aligned = query_norm * norms[0] * cosine;
            if inner_product {
                -aligned
            } else {
                norms[0] * norms[0] + norms[1] - 2.0 * aligned
            }
        })
        .collect()
}

/// Returns the `keep` rows with the smallest keys, in their input order.
///
/// Selecting a threshold on the bare keys and filtering in one pass keeps the rows ascending
/// (so the lower-bound kernel walks the code planes in order) without sorting them, which
/// profiling showed to be the largest cost of an unfiltered query.
fn smallest_in_order(rows: &[u32], keys: &[f32], keep: usize) -> Vec<u32> {
    if keep >= rows.len() {
        return rows.to_vec();
    }
    let mut scratch = keys.to_vec();
    let (_, threshold, _) = scratch.select_nth_unstable_by(keep, f32::total_cmp);
    let threshold = *threshold;
    let num_below = keys.iter().filter(|&&key| key < threshold).count();
    let mut ties_left = keep.saturating_sub(num_below);
    let mut kept = Vec::with_capacity(keep);
    for (&row, &key) in rows.iter().zip(keys) {
        if key < threshold {
            kept.push(row);
        } else if key == threshold && ties_left > 0 {
            kept.push(row);
            ties_left -= 1;
        }
    }
    kept
}

/// Keeps the `keep` smallest entries of `scored` (by key, then row), unordered.
fn keep_smallest(scored: &mut Vec<Scored>, keep: usize) {
    if scored.len() > keep {
        scored.select_nth_unstable(keep);
        scored.truncate(keep);
    }
}

fn exact_distances(partition: &PartitionData, query: &[f32], rows: &[u32], out: &mut [f32]) {
    if partition.metric.uses_inner_product() {
        kernels::dot_gather(query, &partition.vectors, rows, out);
        let offset = partition.metric.inner_product_offset();
        out.iter_mut().for_each(|value| *value = offset - *value);
    } else {
        kernels::l2_squared_gather(query, &partition.vectors, rows, out);
    }
}

fn to_hits(partition: &PartitionData, best: &[Scored], include_attributes: bool) -> Vec<Hit> {
    best.iter()
        .map(|scored| Hit {
            id: partition.ids[scored.row as usize],
            distance: scored.key,
            attributes: include_attributes.then(|| {
                partition
                    .attributes
                    .row_json(&partition.schema, scored.row as usize)
            }),
        })
        .collect()
}

/// How a partition scan scores its candidates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanMethod {
    /// Every candidate with its full-precision vector.
    Direct,
    /// 4-bit fast-scan estimates of every candidate, the `k * R` best re-ranked with their
    /// full vectors (approximate mode, segments with fast-scan codes; otherwise `Direct`).
    FastScan,
    /// Sign-code prune, OSQ lower bounds, exact re-rank (or the lower-bound ordered scan in
    /// exact mode); `Direct` for a partition read by range, which has no quantized codes.
    Quantized,
}

/// Returns the top-k hits of `query` in `partition` and the pruning counts, scoring by the
/// method the cost model picks.
pub fn search_partition(partition: &PartitionData, query: &PreparedQuery) -> (Vec<Hit>, ScanStats) {
    search_partition_using(partition, query, None)
}

/// As [`search_partition`], with the scoring method forced when `method_opt` is given (tests
/// and benchmarks compare the two on the same candidates).
pub fn search_partition_using(
    partition: &PartitionData,
    query: &PreparedQuery,
    method_opt: Option<ScanMethod>,
) -> (Vec<Hit>, ScanStats) {
    let num_vectors = partition.num_vectors();
    let mut stats = ScanStats {
        partition_vectors: partition.segment_rows as u64,
        ..ScanStats::default()
    };
    let probed = partition
        .clusters
        .rows_to_probe(&query.vector, query.probe_radius);
    stats.probed_rows = probed.iter().map(|rows| rows.len() as u64).sum();
    let MatchingRows {
        rows: mut candidates,
        ascending,
    } = query
        .filter
        .matching_rows(&partition.attributes, &partition.sorted_attributes, &probed);
    // Tombstones are checked while admitting candidates, before any ranking, so a deleted row
    // never takes the place of a live one in the top k.
    if !query.excluded_ids.is_empty() {
        candidates.retain(|&row| {
            query
                .excluded_ids
                .binary_search(&partition.ids[row as usize])
                .is_err()
        });
    }
    stats.passed_filter = candidates.len() as u64;
    if candidates.is_empty() || query.k == 0 {
        return (Vec::new(), stats);
    }
    let method = method_opt.unwrap_or_else(|| {
        cheaper_method(
            partition,
            query,
            candidates.len(),
            stats.probed_rows as usize,
        )
    });
    // A filter's sorted column gives the candidates in value order. Direct scoring takes them
    // in any order; the fast-scan sums the blocks of ascending candidates, and the quantized
    // stages walk their planes forward over ascending ones.
    if method != ScanMethod::Direct && !ascending {
        candidates.sort_unstable();
    }
    let codes = match (method, &partition.fastscan, &partition.quantized) {
        (ScanMethod::FastScan, Some(fastscan), _) if !query.knobs.exact => {
            let best = fast_scan(partition, fastscan, query, &candidates, &mut stats);
            return (to_hits(partition, &best, query.include_attributes), stats);
        }
        (ScanMethod::Quantized, _, Some(codes)) => Some(codes),
        _ => None,
    };
    let Some(codes) = codes else {
        let best = score_directly(partition, query, &candidates);
        stats.scored_directly = candidates.len() as u64;
        stats.reranked = candidates.len() as u64;
        return (to_hits(partition, &best, query.include_attributes), stats);
    };
    let tables = query_tables(partition, codes, &query.vector);
    let rerank_depth = query.k.saturating_mul(query.knobs.rerank_factor);

    // Hamming pre-filter (approximate mode only).
    let mut survivors = candidates;
    if !query.knobs.exact && !tables.sign_code.is_empty() {
        let keep = hamming_kept(survivors.len(), query.knobs.hamming_keep, rerank_depth);
        if keep < survivors.len() {
            let estimates = sign_estimates(partition, codes, &tables, &survivors);
            survivors = smallest_in_order(&survivors, &estimates, keep);
        }
    }
    stats.after_hamming = survivors.len() as u64;

    // OSQ lower bounds.
    let mut bounds = vec![0f32; survivors.len()];
    kernels::adc_lower_bounds(
        &codes.planes,
        num_vectors,
        &codes.layout.slots,
        &tables.table,
        &survivors,
        &mut bounds,
    );
    stats.lower_bounds = survivors.len() as u64;
    let mut scored: Vec<Scored> = survivors
        .iter()
        .zip(&bounds)
        .map(|(&row, &bound)| Scored {
            key: bound + tables.constant,
            row,
        })
        .collect();

    let best = if query.knobs.exact {
        exact_scan(partition, query, &mut scored, &mut stats)
    } else {
        keep_smallest(&mut scored, rerank_depth);
        let rows: Vec<u32> = scored.iter().map(|s| s.row).collect();
        stats.reranked = rows.len() as u64;
        score_directly(partition, query, &rows)
    };
    (to_hits(partition, &best, query.include_attributes), stats)
}

/// Costs of the scan stages, in units of one multiply-add of a full-precision distance over
/// one dimension (the direct score of one row costs `dim` units, 0.1-0.4 ns: less in cache,
/// more for scattered rows of a partition that is not). Measured with `perf` and
/// `squash eval` on this project's AVX2 machine (GloVe 50-d, Fashion-MNIST 784-d, partitions
/// in memory): a full-precision distance runs at 0.17-0.37 ns per dimension, one plane of the
/// lower-bound kernel at about 2 ns per row, the sign-code estimate at about 8 ns per row.
const ADC_PLANE_COST: usize = 8;
/// See [`ADC_PLANE_COST`]: the sign-code estimate and selection of one row.
const SIGN_ROW_COST: usize = 32;
/// See [`ADC_PLANE_COST`]: rotating the query and building its tables costs about this share
/// of `dim²` units (one projection plus table fills).
const QUERY_TABLE_COST_PER_DIM_SQUARED: usize = 1;

/// See [`ADC_PLANE_COST`]: the fast-scan sum of one row costs about 1/16 unit per dimension.
/// `cargo bench -p squash-kernels --bench kernels` gives 0.87 ns per row at 50 dimensions and
/// 15 ns at 784 (0.02 ns per dimension), against 5.6 and 61 ns for a full distance of rows in
/// cache; `squash eval` with each method forced on GloVe and Fashion-MNIST puts the break-even
/// between one candidate in 10 and one in 30 rows, which this ratio reproduces.
const FASTSCAN_DIMS_PER_UNIT: usize = 16;
/// See [`ADC_PLANE_COST`]: offering one estimate to the re-rank selection.
const FASTSCAN_SELECT_COST: usize = 8;
/// See [`ADC_PLANE_COST`]: a re-ranked row's distance, gathered from scattered rows, costs
/// about twice a row of the contiguous direct scan.
const RERANK_GATHER_FACTOR: usize = 2;

/// Returns the cheapest way to score `num_candidates` candidates: every one with its full
/// vector, the fast-scan estimates and a re-rank, or the quantized stages (query tables,
/// sign-code prune, lower bounds, re-rank), by the cost model above.
///
/// With the present kernels, once a query has more candidates than a few times its re-rank
/// depth the fast-scan wins; below that the full vectors do. The OSQ stages remain for the
/// lower-bound order of exact mode, for segments without fast-scan codes, and for what they
/// save beyond compute.
fn cheaper_method(
    partition: &PartitionData,
    query: &PreparedQuery,
    num_candidates: usize,
    probed_rows: usize,
) -> ScanMethod {
    let dim = partition.dim;
    let direct = num_candidates.saturating_mul(dim);
    if partition.fastscan.is_some() && !query.knobs.exact {
        let rerank_depth = query.k.saturating_mul(query.knobs.rerank_factor);
        let fast = blocks_holding(num_candidates, probed_rows)
            .saturating_mul(squash_kernels::FASTSCAN_BLOCK_ROWS)
            .saturating_mul(dim.next_multiple_of(2))
            / FASTSCAN_DIMS_PER_UNIT
            + num_candidates.saturating_mul(FASTSCAN_SELECT_COST)
            + dim.saturating_mul(16)
            + rerank_depth
                .min(num_candidates)
                .saturating_mul(dim)
                .saturating_mul(RERANK_GATHER_FACTOR);
        if fast < direct {
            return ScanMethod::FastScan;
        }
    }
    quantized_or_direct(partition, query, num_candidates)
}

/// Returns the expected number of 32-row fast-scan blocks holding at least one of
/// `num_candidates` spread evenly over `probed_rows`. An estimate from the counts alone, not
/// the rows' positions: a partition read by range numbers its rows differently, and must pick
/// the same method as the whole one.
fn blocks_holding(num_candidates: usize, probed_rows: usize) -> usize {
    const BLOCK_ROWS: usize = squash_kernels::FASTSCAN_BLOCK_ROWS;
    if num_candidates == 0 || probed_rows == 0 {
        return 0;
    }
    let density = (num_candidates as f64 / probed_rows as f64).min(1.0);
    let blocks = probed_rows.div_ceil(BLOCK_ROWS) as f64;
    let holding = blocks * (1.0 - (1.0 - density).powi(BLOCK_ROWS as i32));
    (holding.ceil() as usize).min(num_candidates)
}

/// Returns the cheaper of direct scoring and the OSQ stages for `num_candidates`.
fn quantized_or_direct(
    partition: &PartitionData,
    query: &PreparedQuery,
    num_candidates: usize,
) -> ScanMethod {
    let Some(codes) = &partition.quantized else {
        return ScanMethod::Direct;
    };
    let dim = partition.dim;
    let rerank_depth = query.k.saturating_mul(query.knobs.rerank_factor);
    let kept = if query.knobs.exact {
        num_candidates
    } else {
        hamming_kept(num_candidates, query.knobs.hamming_keep, rerank_depth)
    };
    let direct = num_candidates.saturating_mul(dim);
    let quantized = dim
        .saturating_mul(dim)
        .saturating_mul(QUERY_TABLE_COST_PER_DIM_SQUARED)
        .saturating_add(num_candidates.saturating_mul(SIGN_ROW_COST))
        .saturating_add(
            kept.saturating_mul(codes.layout.num_planes)
                .saturating_mul(ADC_PLANE_COST),
        )
        .saturating_add(rerank_depth.min(kept).saturating_mul(dim));
    if direct <= quantized {
        ScanMethod::Direct
    } else {
        ScanMethod::Quantized
    }
}

/// Returns how many of `num_candidates` the sign-code prune keeps.
fn hamming_kept(num_candidates: usize, hamming_keep: f32, rerank_depth: usize) -> usize {
    let keep = ((num_candidates as f64 * f64::from(hamming_keep)).ceil() as usize)
        .max(rerank_depth.saturating_mul(HAMMING_MIN_KEEP_PER_RERANK));
    keep.min(num_candidates)
}

/// Candidates per hit wanted, at least, for the direct method to score from 8-bit row codes
/// first: each code distance costs a quarter of the memory of a full one, and the rows a full
/// distance is then needed for are about `k` plus those whose code distance is within the
/// rounding error of the k-th; below a few per hit that second pass would be most of them.
const SQ8_MIN_CANDIDATES_PER_HIT: usize = 4;

/// Scores every candidate with its full-precision vector and returns the top k, best first
/// (the direct method, and the re-rank of the others).
///
/// Many candidates per hit are first scored from their 8-bit row codes (`codec/sq8.rs`); only
/// those whose code distance is within the rounding error of the k-th smallest are scored with
/// their full vectors. The bound holds for every row, so the hits are those scoring every
/// candidate fully would give.
fn score_directly(
    partition: &PartitionData,
    query: &PreparedQuery,
    candidates: &[u32],
) -> Vec<Scored> {
    let k = query.k.max(1);
    // A partition read by range (probed clusters only, for one request) does not pay for
    // coding all its rows to score a few.
    let worth_codes = partition.dim > 0
        && candidates.len() >= k.saturating_mul(SQ8_MIN_CANDIDATES_PER_HIT).max(64)
        && (partition.sq8_rows.get().is_some()
            || partition.num_vectors() == partition.segment_rows);
    // The reach is that of the k-th code distance over all the candidates, so the rows
    // scored fully are the same however many threads share the work.
    let near_enough;
    let candidates = if worth_codes {
        near_enough = within_code_reach(partition, query, candidates);
        &near_enough[..]
    } else {
        candidates
    };
    let mut scored: Vec<Scored> = in_parts(candidates, |part| {
        let mut distances = vec![0f32; part.len()];
        exact_distances(partition, &query.vector, part, &mut distances);
        let mut scored: Vec<Scored> = part
            .iter()
            .zip(&distances)
            .map(|(&row, &distance)| Scored { key: distance, row })
            .collect();
        keep_smallest(&mut scored, query.k);
        scored
    });
    keep_smallest(&mut scored, query.k);
    scored.sort_unstable();
    scored
}

/// Returns the rows of `candidates` that may be among their k nearest: those whose 8-bit code
/// distance is within the reach of the k-th smallest code distance (every row exactly nearer
/// than the k-th is).
fn within_code_reach(
    partition: &PartitionData,
    query: &PreparedQuery,
    candidates: &[u32],
) -> Vec<u32> {
    let codes = partition.sq8_rows();
    let prepared = codes.prepare(&query.vector);
    let distances: Vec<f32> = in_parts(candidates, |part| {
        let mut distances = vec![0f32; part.len()];
        codes.distances(partition.metric, &prepared, part, &mut distances);
        distances
    });
    let kth = kth_smallest(candidates, &distances, query.k.max(1));
    let reach = codes.reach(partition.metric, &prepared, kth);
    // A NaN distance or reach (values beyond what f32 sums hold) keeps the row.
    candidates
        .iter()
        .zip(&distances)
        .filter(|&(_, &distance)| distance <= reach || distance.is_nan() || reach.is_nan())
        .map(|(&row, _)| row)
        .collect()
}

/// Returns the `k`-th smallest of the `keys` of `rows` (1-based; the largest when there are
/// fewer), by a bounded max-heap: most keys are turned away by one comparison with its top.
/// NaN counts as infinity.
fn kth_smallest(rows: &[u32], keys: &[f32], k: usize) -> f32 {
    let mut heap: BinaryHeap<Scored> = BinaryHeap::with_capacity(k.min(keys.len()) + 1);
    for (&row, &key) in rows.iter().zip(keys) {
        let key = if key.is_nan() { f32::INFINITY } else { key };
        if heap.len() < k {
            heap.push(Scored { key, row });
        } else if let Some(mut top) = heap.peek_mut() {
            if key < top.key {
                *top = Scored { key, row };
            }
        }
    }
    heap.peek().map_or(f32::INFINITY, |top| top.key)
}

/// Candidates per part, at least, when a partition's candidates are split across threads: a
/// part of this size takes tens of microseconds, well above the cost of handing it over.
const PARALLEL_PART_CANDIDATES: usize = 16_384;

/// Runs `keep_best` on parts of `candidates` on the threads of the current
/// rayon pool, one part per thread when there are at least [`PARALLEL_PART_CANDIDATES`] each,
/// and returns what the parts kept, concatenated. Each part keeps its own best by a total order
/// and the caller keeps the best of their union, so the answer is the one a single part would
/// give: a worker with more than one vCPU answers a large scan sooner, with the same hits. On a
/// pool of one thread (every benchmark) it is one call.
fn in_parts<T: Send>(candidates: &[u32], keep_best: impl Fn(&[u32]) -> Vec<T> + Sync) -> Vec<T> {
    use rayon::prelude::*;
    let num_parts = rayon::current_num_threads()
        .min(candidates.len() / PARALLEL_PART_CANDIDATES)
        .max(1);
    if num_parts == 1 {
        return keep_best(candidates);
    }
    let part_len = candidates.len().div_ceil(num_parts);
    candidates
        .par_chunks(part_len)
        .map(&keep_best)
        .flatten_iter()
        .collect()
}

/// Fast-scan blocks summed per kernel call, at most: the sums (16 KiB) stay in L1 while the
/// candidates are offered.
const FASTSCAN_RUN_BLOCKS: usize = 128;

/// Estimates every candidate from its fast-scan code, keeps the `k * R` smallest estimates
/// and returns the top k of those by full-precision distance, best first.
///
/// Only blocks holding a candidate are summed: runs of consecutive such blocks go to the kernel
/// together, so an unfiltered range is one call per 4,096 rows and a selective filter touches
/// only its candidates' blocks.
fn fast_scan(
    partition: &PartitionData,
    codes: &crate::codec::FastScanCodes,
    query: &PreparedQuery,
    candidates: &[u32],
    stats: &mut ScanStats,
) -> Vec<Scored> {
    let tables = codes.tables(&query.vector, partition.metric.uses_inner_product());
    let keep = query
        .k
        .saturating_mul(query.knobs.rerank_factor)
        .max(query.k);
    let mut kept: Vec<u64> = in_parts(candidates, |part| {
        fast_scan_keep(codes, &tables, part, keep)
    });
    if kept.len() > keep {
        kept.select_nth_unstable(keep);
        kept.truncate(keep);
    }
    stats.fast_scanned = candidates.len() as u64;
    let mut rows: Vec<u32> = kept.iter().map(|&key| key as u32).collect();
    // Ascending rows walk the vectors forward.
    rows.sort_unstable();
    stats.reranked = rows.len() as u64;
    score_directly(partition, query, &rows)
}

/// Returns the `keep` best fast-scan estimates of `candidates` (ascending rows) as
/// `sum << 32 | row`, in no order.
fn fast_scan_keep(
    codes: &crate::codec::FastScanCodes,
    tables: &crate::codec::FastScanTables,
    candidates: &[u32],
    keep: usize,
) -> Vec<u64> {
    const BLOCK_ROWS: usize = squash_kernels::FASTSCAN_BLOCK_ROWS;
    // The kept estimates as `sum << 32 | row`, the worst on top. Rows are offered in
    // ascending order, so a later row with the worst's sum never displaces it: only a smaller
    // sum than `worst_sum` needs the heap.
    let mut kept: BinaryHeap<u64> = BinaryHeap::with_capacity(keep.min(candidates.len()) + 1);
    let mut worst_sum = u32::MAX;
    let mut sums = Vec::with_capacity(FASTSCAN_RUN_BLOCKS * BLOCK_ROWS);
    let offer = |kept: &mut BinaryHeap<u64>, worst_sum: &mut u32, row: usize, sum: u32| {
        kept.push((u64::from(sum) << 32) | row as u64);
        if kept.len() > keep {
            kept.pop();
        }
        if kept.len() == keep {
            *worst_sum = kept.peek().map_or(u32::MAX, |&worst| (worst >> 32) as u32);
        }
    };
    let mut next = 0;
    while next < candidates.len() {
        let first_block = candidates[next] as usize / BLOCK_ROWS;
        let run_limit = (first_block + FASTSCAN_RUN_BLOCKS) * BLOCK_ROWS;
        // The run: candidates up to the block limit, no block between two of them left empty.
        // 32 consecutive candidates (an unfiltered stretch) are passed in one comparison.
        let mut end = next;
        let mut last_row = candidates[next] as usize;
        while end < candidates.len() {
            let row = candidates[end] as usize;
            if row >= run_limit || row / BLOCK_ROWS > last_row / BLOCK_ROWS + 1 {
                break;
            }
            let stretch_end = row + BLOCK_ROWS - 1;
            if candidates.get(end + BLOCK_ROWS - 1) == Some(&(stretch_end as u32))
                && stretch_end < run_limit
            {
                end += BLOCK_ROWS;
                last_row = stretch_end;
            } else {
                end += 1;
                last_row = row;
            }
        }
        let first_row = codes.sums(first_block * BLOCK_ROWS..last_row + 1, tables, &mut sums);
        let mut position = next;
        while position < end {
            let row = candidates[position] as usize;
            if candidates.get(position + BLOCK_ROWS - 1) == Some(&((row + BLOCK_ROWS - 1) as u32))
                && position + BLOCK_ROWS <= end
            {
                // Most stretches hold nothing better than the kept worst: one vectorised
                // minimum decides.
                let stretch = &sums[row - first_row..][..BLOCK_ROWS];
                if stretch.iter().copied().min().unwrap_or(u32::MAX) < worst_sum {
                    for (offset, &sum) in stretch.iter().enumerate() {
                        if sum < worst_sum {
                            offer(&mut kept, &mut worst_sum, row + offset, sum);
                        }
                    }
                }
                position += BLOCK_ROWS;
            } else {
                let sum = sums[row - first_row];
                if sum < worst_sum {
                    offer(&mut kept, &mut worst_sum, row, sum);
                }
                position += 1;
            }
        }
        next = end;
    }
    kept.into_vec()
}

/// VA-file phase 2: visit by lower bound, stop once the bound passes the k-th exact distance.
fn exact_scan(
    partition: &PartitionData,
    query: &PreparedQuery,
    scored: &mut [Scored],
    stats: &mut ScanStats,
) -> Vec<Scored> {
    scored.sort_unstable();
    let mut heap: BinaryHeap<Scored> = BinaryHeap::with_capacity(query.k + 1);
    let mut distance = [0f32; 1];
    for candidate in scored.iter() {
        if heap.len() == query.k {
            let kth = heap.peek().map(|s| s.key).unwrap_or(f32::INFINITY);
            let slack = EXACT_MODE_RELATIVE_SLACK * (kth.abs() + candidate.key.abs()) + 1e-6;
            if candidate.key > kth + slack {
                break;
            }
        }
        exact_distances(partition, &query.vector, &[candidate.row], &mut distance);
        stats.reranked += 1;
        let exact = Scored {
            key: distance[0],
            row: candidate.row,
        };
        if heap.len() < query.k {
            heap.push(exact);
        } else if heap.peek().is_some_and(|worst| exact < *worst) {
            heap.pop();
            heap.push(exact);
        }
    }
    heap.into_sorted_vec()
}

/// Time to encode, merge and send one hit of an answer, reserved before the deadline for the
/// hits already produced: a batch of 10,000 queries at k = 100 produces a million hits per
/// partition, whose answer takes longer to send than the fixed margin a worker keeps.
const ANSWER_TIME_PER_HIT: std::time::Duration = std::time::Duration::from_nanos(150);

/// Runs every task on partitions supplied by `partition_of`, tasks in parallel (rayon), and
/// returns one outcome per task. A partition that cannot be loaded or a query that cannot be
/// prepared fails that task in-band, so the caller can report exactly which partitions are
/// missing.
///
/// Work stops at `deadline_opt`, less the time to send the hits produced so far
/// ([`ANSWER_TIME_PER_HIT`] each): it is checked before every query, so a task overruns it by
/// at most one query's scan of one partition. A task cut short fails as a whole with kind
/// [`FailureKind::Timeout`]: its partition is then missing from every query of the task, which
/// is what the caller reports, and no one is left computing answers nobody waits for.
pub fn search_tasks(
    queries: &[WorkerQuery],
    tasks: &[PartitionTask],
    partition_of: &(dyn Fn(u32) -> Result<std::sync::Arc<PartitionData>> + Sync),
    deadline_opt: Option<Instant>,
) -> Vec<PartitionOutcome> {
    use rayon::prelude::*;
    use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
    // Hits produced so far by every task: the answer that carries them takes time to encode
    // and send, so the scans stop once the time left no longer covers that.
    let hits_produced = AtomicU64::new(0);
    tasks
        .par_iter()
        .map(|task| {
            let outcome = (|| -> Result<Vec<QueryHits>> {
                let partition = partition_of(task.partition)?;
                let mut excluded_ids = task.excluded_ids.clone();
                if !excluded_ids.is_sorted() {
                    excluded_ids.sort_unstable();
                }
                let excluded_ids: std::sync::Arc<[u64]> = excluded_ids.into();
                let mut results = Vec::with_capacity(task.queries.len());
                for (done, &position) in task.queries.iter().enumerate() {
                    let hits_so_far = hits_produced.load(AtomicOrdering::Relaxed);
                    let answer_time = ANSWER_TIME_PER_HIT
                        .saturating_mul(u32::try_from(hits_so_far).unwrap_or(u32::MAX));
                    if deadline_opt.is_some_and(|deadline| Instant::now() + answer_time >= deadline)
                    {
                        return Err(Error::Timeout {
                            message: format!(
                                "partition {}: the deadline came after {done} of its {} queries",
                                task.partition,
                                task.queries.len()
                            ),
                        });
                    }
                    let query = queries.get(position as usize).ok_or_else(|| {
                        Error::invalid(
                            "tasks.queries",
                            format!("query position {position} is out of range"),
                        )
                    })?;
                    let mut prepared = PreparedQuery::try_new(query, &partition)?;
                    prepared.excluded_ids = std::sync::Arc::clone(&excluded_ids);
                    let (hits, stats) = search_partition(&partition, &prepared);
                    hits_produced.fetch_add(hits.len() as u64, AtomicOrdering::Relaxed);
                    results.push(QueryHits {
                        query: position,
                        hits,
                        stats,
                    });
                }
                Ok(results)
            })();
            match outcome {
                Ok(results) => PartitionOutcome::Ok {
                    partition: task.partition,
                    results,
                },
                Err(error) => PartitionOutcome::Failed {
                    partition: task.partition,
                    kind: FailureKind::of(&error),
                    retryable: error.is_retryable(),
                    message: error.to_string(),
                },
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smallest_in_order_keeps_input_order_and_exact_count() {
        let rows = [3, 5, 8, 9, 12, 20];
        let keys = [4.0, 1.0, 4.0, 0.5, 4.0, 9.0];
        assert_eq!(smallest_in_order(&rows, &keys, 2), vec![5, 9]);
        // Ties at the threshold fill the remaining slots in input order.
        assert_eq!(smallest_in_order(&rows, &keys, 4), vec![3, 5, 8, 9]);
        assert_eq!(smallest_in_order(&rows, &keys, 10), rows.to_vec());
        assert!(smallest_in_order(&rows, &keys, 0).is_empty());
    }
}
