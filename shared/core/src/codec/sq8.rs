//! 8-bit scalar codes of each row, row-major, for scoring scattered candidates.
//!
//! A selective filter leaves a few hundred rows spread over a partition, each scored with its
//! full vector: a gather whose time is the memory latency of `4 × dim` bytes per row. One byte
//! per dimension (each dimension's range over the partition cut into 255 steps) reads a
//! quarter of the lines, and with the rounding error bounded per query, the candidates whose
//! code distance cannot reach the k-th are dropped before any full vector is read. The scan
//! re-ranks the rest with their full vectors, so the answer is the one scoring every candidate
//! exactly would give.
//!
//! Built from the decoded vectors (by a worker with the decode of a partition it caches,
//! otherwise when a partition is first scored this way); never stored.

use crate::metric::Metric;

/// Rows of codes are padded to a multiple of this many bytes (two SIMD steps of the kernel),
/// the padding coded 0 and weighted 0.
const STRIDE_MULTIPLE: usize = 16;

/// Relative slack on the bounds: the code distances and the exact ones are sums in `f32` in
/// different orders, a few ulps apart.
const RELATIVE_SLACK: f32 = 1e-4;

/// The 8-bit codes of one partition's vectors.
#[derive(Debug, Clone, PartialEq)]
pub struct Sq8Rows {
    /// Bytes per row: `dim` codes and zero padding.
    stride: usize,
    /// Per dimension, the value of code 0 (the partition's minimum).
    lows: Vec<f32>,
    /// Per dimension, the value of one code step (0 for a constant dimension).
    steps: Vec<f32>,
    codes: Vec<u8>,
    /// Per row, the squared norm of its decoded codes (for L2).
    decoded_norms: Vec<f32>,
    /// The norm of the largest rounding error a row can have: `sqrt(Σ (step / 2)²)`.
    max_error_norm: f32,
}

/// One query's weights over [`Sq8Rows`] codes and the bound on its rounding error.
#[derive(Debug, Clone)]
pub struct Sq8Query {
    /// `query[d] * step[d]`, padded with zeros to the stride.
    weights: Vec<f32>,
    /// `Σ query[d] * low[d]`: the dot product of the query with a row of codes 0.
    constant: f32,
    /// The largest difference between the dot product with a row and with its decoded codes:
    /// `Σ |query[d]| * step[d] / 2`.
    dot_error: f32,
    /// `|query|²`, for L2.
    query_norm: f32,
    /// Sum of magnitudes the slack is relative to.
    magnitude: f32,
}

impl Sq8Rows {
    /// Codes the row-major `vectors` of `dim` floats per row.
    ///
    /// Panics if `vectors` is not whole rows of `dim`.
    pub fn encode(vectors: &[f32], dim: usize) -> Sq8Rows {
        assert!(dim > 0, "sq8: dimension 0");
        assert_eq!(vectors.len() % dim, 0, "sq8: ragged vectors");
        let num_rows = vectors.len() / dim;
        let stride = dim.next_multiple_of(STRIDE_MULTIPLE);
        let mut lows = vec![f32::INFINITY; dim];
        let mut highs = vec![f32::NEG_INFINITY; dim];
        for row in vectors.chunks_exact(dim) {
            for ((low, high), &value) in lows.iter_mut().zip(&mut highs).zip(row) {
                *low = low.min(value);
                *high = high.max(value);
            }
        }
        if num_rows == 0 {
            lows.fill(0.0);
            highs.fill(0.0);
        }
        // In f64: the range of finite values near f32::MAX overflows f32, its 255th does not.
        let steps: Vec<f32> = lows
            .iter()
            .zip(&highs)
            .map(|(&low, &high)| {
                let step = ((f64::from(high) - f64::from(low)) / 255.0) as f32;
                if step.is_finite() && step > 0.0 {
                    step
                } else {
                    0.0
                }
            })
            .collect();
        let inverse_steps: Vec<f32> = steps
            .iter()
            .map(|&step| if step > 0.0 { 1.0 / step } else { 0.0 })
            .collect();
        let mut codes = vec![0u8; num_rows * stride];
        let mut decoded_norms = Vec::with_capacity(num_rows);
        for (row, row_codes) in vectors
            .chunks_exact(dim)
            .zip(codes.chunks_exact_mut(stride))
        {
            let mut norm = 0f64;
            for (d, (&value, code)) in row.iter().zip(row_codes.iter_mut()).enumerate() {
                // Round half up by truncating `level + 0.5` (a conversion, where `round` would
                // be a library call per value).
                let level = ((value - lows[d]) * inverse_steps[d]).clamp(0.0, 255.0);
                *code = (level + 0.5) as u8;
                let decoded = f64::from(lows[d]) + f64::from(steps[d]) * f64::from(*code);
                norm += decoded * decoded;
            }
            decoded_norms.push(norm as f32);
        }
        // A value's error is at most half a step, plus the f32 rounding of `(value - low) /
        // step` near a half-step boundary, which the slack of the bounds covers.
        let max_error_norm = steps
            .iter()
            .map(|&step| f64::from(step) * f64::from(step) / 4.0)
            .sum::<f64>()
            .sqrt() as f32;
        Sq8Rows {
            stride,
            lows,
            steps,
            codes,
            decoded_norms,
            max_error_norm,
        }
    }

    /// Returns the heap bytes [`Sq8Rows::encode`] would hold for `num_rows` rows of `dim`.
    pub fn memory_bytes_for(num_rows: usize, dim: usize) -> usize {
        num_rows * (dim.next_multiple_of(STRIDE_MULTIPLE) + 4) + dim * 8
    }

    /// Prepares `query` (normalised for cosine, as the rows are).
    ///
    /// Panics if `query.len()` is not the dimension.
    pub fn prepare(&self, query: &[f32]) -> Sq8Query {
        let dim = self.lows.len();
        assert_eq!(query.len(), dim, "sq8: query of another dimension");
        let mut weights = vec![0f32; self.stride];
        let mut constant = 0f64;
        let mut dot_error = 0f64;
        let mut magnitude = 0f64;
        let mut query_norm = 0f64;
        for d in 0..dim {
            let (q, low, step) = (query[d], self.lows[d], self.steps[d]);
            weights[d] = q * step;
            constant += f64::from(q) * f64::from(low);
            dot_error += f64::from(q.abs()) * f64::from(step) / 2.0;
            magnitude += f64::from(q.abs()) * (f64::from(low.abs()) + 255.0 * f64::from(step));
            query_norm += f64::from(q) * f64::from(q);
        }
        Sq8Query {
            weights,
            constant: constant as f32,
            dot_error: dot_error as f32,
            query_norm: query_norm as f32,
            magnitude: magnitude as f32,
        }
    }

    /// Writes, for each of `rows`, the distance of `query` to its decoded codes under
    /// `metric` (the convention of the scan: `offset - q·x` for inner-product metrics,
    /// squared L2 otherwise).
    ///
    /// Panics if `rows.len() != out.len()` or a row is out of range.
    pub fn distances(&self, metric: Metric, query: &Sq8Query, rows: &[u32], out: &mut [f32]) {
        squash_kernels::dot_u8_gather(&query.weights, &self.codes, rows, out);
        if metric.uses_inner_product() {
            let offset = metric.inner_product_offset();
            for value in out.iter_mut() {
                *value = offset - (query.constant + *value);
            }
        } else {
            for (value, &row) in out.iter_mut().zip(rows) {
                let dot = query.constant + *value;
                *value = (query.query_norm - 2.0 * dot + self.decoded_norms[row as usize]).max(0.0);
            }
        }
    }

    /// Returns the largest code distance (from [`Sq8Rows::distances`]) a row may have when
    /// its exact distance is at most the exact distance of a row whose code distance is
    /// `code_distance`: rows above it cannot be nearer than that row.
    pub fn reach(&self, metric: Metric, query: &Sq8Query, code_distance: f32) -> f32 {
        if metric.uses_inner_product() {
            // Exact and code distances differ by at most `dot_error` either way.
            let slack = RELATIVE_SLACK * (query.magnitude + code_distance.abs());
            code_distance + 2.0 * query.dot_error + slack
        } else {
            // |q - x| and |q - decoded x| differ by at most the error norm either way.
            let radius = code_distance.max(0.0).sqrt() + 2.0 * self.max_error_norm;
            let slack = RELATIVE_SLACK * (query.query_norm + query.magnitude + code_distance);
            radius * radius + slack
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    fn exact(metric: Metric, query: &[f32], row: &[f32]) -> f32 {
        if metric.uses_inner_product() {
            let dot: f32 = query.iter().zip(row).map(|(a, b)| a * b).sum();
            metric.inner_product_offset() - dot
        } else {
            query.iter().zip(row).map(|(a, b)| (a - b) * (a - b)).sum()
        }
    }

    /// Whatever the data, a row's exact distance and its code distance are within the reach:
    /// any row nearer (exactly) than another has a code distance within that row's reach.
    #[test]
    fn the_reach_bounds_every_rows_rounding_error() {
        let mut rng = StdRng::seed_from_u64(7);
        for (dim, scale) in [(1usize, 1.0f32), (5, 100.0), (50, 1.0), (97, 0.01)] {
            let num_rows = 300;
            let vectors: Vec<f32> = (0..num_rows * dim)
                .map(|i| {
                    // One constant dimension and skewed others.
                    if dim > 1 && i % dim == 0 {
                        3.0
                    } else {
                        rng.random_range(-1.0f32..1.0).powi(3) * scale
                    }
                })
                .collect();
            let codes = Sq8Rows::encode(&vectors, dim);
            let rows: Vec<u32> = (0..num_rows as u32).collect();
            for metric in [Metric::L2, Metric::Ip, Metric::Cosine] {
                for _ in 0..5 {
                    let query: Vec<f32> = (0..dim)
                        .map(|_| rng.random_range(-2.0f32..2.0) * scale)
                        .collect();
                    let prepared = codes.prepare(&query);
                    let mut approx = vec![0f32; num_rows];
                    codes.distances(metric, &prepared, &rows, &mut approx);
                    let exact: Vec<f32> = vectors
                        .chunks_exact(dim)
                        .map(|row| exact(metric, &query, row))
                        .collect();
                    for a in 0..num_rows {
                        for b in 0..num_rows {
                            if exact[b] <= exact[a] {
                                assert!(
                                    approx[b] <= codes.reach(metric, &prepared, approx[a]),
                                    "{metric:?} dim {dim}: row {b} (exact {}, code {}) beyond the \
                                     reach of row {a} (exact {}, code {})",
                                    exact[b],
                                    approx[b],
                                    exact[a],
                                    approx[a]
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn a_range_beyond_f32_still_gets_a_finite_step() {
        let vectors = [-3.0e38f32, 1.0, 3.0e38, 2.0];
        let codes = Sq8Rows::encode(&vectors, 2);
        assert!(codes.steps[0].is_finite() && codes.steps[0] > 0.0);
        assert_eq!(&codes.codes[..1], &[0]);
        assert_eq!(&codes.codes[16..17], &[255]);
    }

    #[test]
    fn codes_round_to_the_nearest_step_and_pad_with_zeros() {
        // Dimension 0 spans 0..=255 in unit steps; dimension 1 is constant.
        let vectors = [0.0f32, 4.0, 255.0, 4.0, 100.4, 4.0];
        let codes = Sq8Rows::encode(&vectors, 2);
        assert_eq!(codes.stride, 16);
        assert_eq!(&codes.codes[..2], &[0, 0]);
        assert_eq!(&codes.codes[16..18], &[255, 0]);
        assert_eq!(&codes.codes[32..34], &[100, 0]);
        assert!(codes.codes[2..16].iter().all(|&code| code == 0));
        assert_eq!(codes.steps, vec![1.0, 0.0]);
        let query = codes.prepare(&[1.0, 1.0]);
        let mut out = [0f32; 1];
        codes.distances(Metric::Ip, &query, &[2], &mut out);
        assert!((out[0] - -(100.0 + 4.0)).abs() < 1e-4);
        let held = codes.codes.len()
            + codes.decoded_norms.len() * 4
            + (codes.lows.len() + codes.steps.len()) * 4;
        assert_eq!(held, Sq8Rows::memory_bytes_for(3, 2));
    }
}
