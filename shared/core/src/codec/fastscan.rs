//! Fast-scan codes: 4 bits per dimension of the full-precision vectors, in the block layout of
//! `squash_kernels::fastscan_sums`, for a first-stage distance estimate whose tables sit in
//! SIMD registers (the FastScan / Quick ADC technique).
//!
//! Each dimension is cut into 16 equal cells; a row's code is the cell of its coordinate. The
//! cells span the dimension's range over the partition, less the few most extreme values where
//! that reconstructs the coordinates with less squared error (the extremes then take the end
//! cells): one outlier no longer widens every cell, which matters most where many dimensions
//! each carry a little of the distance (at 384 unit-norm dimensions, recall@10 at default knobs
//! 0.953 with whole-range cells, 0.977 with these).
//!
//! For a query, a dimension's table holds the distance term of each cell's midpoint (`(q_d - m)²` for L2, `-q_d·m` for inner products), shifted to start at 0
//! and scaled by one factor for all dimensions into 0..=255, so a row's estimate is
//! `bias + Σ table / scale`: one integer sum per row, in the order of the estimated distance.
//! The codes work on the vectors as stored (normalised for cosine), so a query needs no
//! rotation; the estimate only ranks candidates for the exact re-rank.

use std::ops::Range;

use crate::error::{Error, Result};
use squash_kernels::{fastscan_block_bytes, fastscan_sums, FASTSCAN_BLOCK_ROWS};

/// Cells per dimension.
const CELLS: usize = 16;

/// A partition's fast-scan codes and the per-dimension cells they index.
#[derive(Debug, Clone, PartialEq)]
pub struct FastScanCodes {
    /// Per dimension, the low end of cell 0.
    pub lows: Vec<f32>,
    /// Per dimension, the width of one cell (0 for a constant dimension).
    pub steps: Vec<f32>,
    /// Blocks of 32 rows, `fastscan_block_bytes(dim)` bytes each; the last block is padded
    /// with code 0.
    pub codes: Vec<u8>,
}

/// One query's tables for [`FastScanCodes::sums`].
#[derive(Debug, Clone)]
pub struct FastScanTables {
    /// 16 entries per dimension, dimensions padded to even.
    pub entries: Vec<u8>,
    /// Table units per unit of distance.
    pub scale: f32,
    /// The distance of a row whose every entry is 0.
    pub bias: f32,
}

impl FastScanTables {
    /// Returns the distance estimate of a row from its sum.
    pub fn estimate(&self, sum: u32) -> f32 {
        self.bias + sum as f32 / self.scale
    }
}

impl FastScanCodes {
    /// Encodes `vectors` (`n x dim`, row-major, as the partition stores them).
    pub fn encode(vectors: &[f32], dim: usize) -> FastScanCodes {
        let num_rows = vectors.len().checked_div(dim).unwrap_or(0);
        let stride = num_rows.div_ceil(RANGE_SAMPLE_ROWS).max(1);
        let mut lows = vec![0f32; dim];
        let mut steps = vec![0f32; dim];
        let mut column = Vec::with_capacity(num_rows.min(RANGE_SAMPLE_ROWS) + 1);
        for d in 0..dim {
            column.clear();
            column.extend(
                (0..num_rows)
                    .step_by(stride)
                    .map(|row| vectors[row * dim + d])
                    .filter(|value| value.is_finite()),
            );
            let (low, step) = least_error_cells(&mut column);
            lows[d] = low;
            steps[d] = step;
        }
        FastScanCodes::encode_with_cells(lows, steps, vectors, dim)
    }

    /// Encodes `vectors` with given cells (`lows` and `steps`, one per dimension): a reader of
    /// some rows re-derives exactly the codes the whole partition stores for them.
    pub fn encode_with_cells(
        lows: Vec<f32>,
        steps: Vec<f32>,
        vectors: &[f32],
        dim: usize,
    ) -> FastScanCodes {
        let num_rows = vectors.len().checked_div(dim).unwrap_or(0);
        let block_bytes = fastscan_block_bytes(dim);
        let num_blocks = num_rows.div_ceil(FASTSCAN_BLOCK_ROWS);
        let mut codes = vec![0u8; num_blocks * block_bytes];
        for (row_index, row) in vectors.chunks_exact(dim.max(1)).take(num_rows).enumerate() {
            let block = &mut codes[row_index / FASTSCAN_BLOCK_ROWS * block_bytes..][..block_bytes];
            let lane = row_index % FASTSCAN_BLOCK_ROWS;
            let (byte_in_dim, shift) = (lane % 16, if lane < 16 { 0 } else { 4 });
            for (d, &value) in row.iter().enumerate() {
                let code = cell_of(value, lows[d], steps[d]);
                block[d * 16 + byte_in_dim] |= code << shift;
            }
        }
        FastScanCodes { lows, steps, codes }
    }

    /// Checks the shapes against the segment's rows and dimension.
    pub fn check(&self, object: &str, num_rows: usize, dim: usize) -> Result<()> {
        let expected_codes = num_rows
            .div_ceil(FASTSCAN_BLOCK_ROWS)
            .checked_mul(fastscan_block_bytes(dim));
        if Some(self.codes.len()) != expected_codes {
            return Err(Error::corrupt(
                object,
                0,
                format!(
                    "fastscan codes have {} bytes, expected {expected_codes:?} for {num_rows} rows",
                    self.codes.len()
                ),
            ));
        }
        FastScanCodes::check_cells(object, &self.lows, &self.steps, dim)
    }

    /// Checks cells read from a segment: one low and one step per dimension, finite, steps not
    /// negative.
    pub fn check_cells(object: &str, lows: &[f32], steps: &[f32], dim: usize) -> Result<()> {
        if lows.len() != dim || steps.len() != dim {
            return Err(Error::corrupt(
                object,
                0,
                format!(
                    "fastscan cells have {} lows and {} steps, expected {dim} of each",
                    lows.len(),
                    steps.len()
                ),
            ));
        }
        if lows.iter().chain(steps).any(|value| !value.is_finite())
            || steps.iter().any(|&step| step < 0.0)
        {
            return Err(Error::corrupt(
                object,
                0,
                "fastscan cells are not finite and non-negative",
            ));
        }
        Ok(())
    }

    /// Returns the heap bytes the codes hold.
    pub fn memory_bytes(&self) -> usize {
        self.codes.len() + (self.lows.len() + self.steps.len()) * 4
    }

    /// Builds the tables of `query` (as the vectors are stored: normalised for cosine); with
    /// `inner_product` the estimate is of `-q·x`, otherwise of `‖q - x‖²`.
    pub fn tables(&self, query: &[f32], inner_product: bool) -> FastScanTables {
        let dim = self.lows.len();
        let term = |d: usize, cell: usize| -> f32 {
            let midpoint = midpoint(self.lows[d], self.steps[d], cell);
            if inner_product {
                -query[d] * midpoint
            } else {
                (query[d] - midpoint) * (query[d] - midpoint)
            }
        };
        // Per dimension, the least and the greatest term, found without visiting every cell:
        // an inner-product term is linear in the cell, so both are at the ends; an L2 term is
        // convex, so the greatest is at an end and the least at the cell holding the query.
        let mut least = vec![0f32; dim];
        let mut bias = 0f32;
        let mut widest = 0f32;
        for (d, least) in least.iter_mut().enumerate() {
            let (first, last) = (term(d, 0), term(d, CELLS - 1));
            *least = if inner_product {
                first.min(last)
            } else {
                let cell = cell_of(query[d], self.lows[d], self.steps[d]);
                term(d, usize::from(cell)).min(first).min(last)
            };
            bias += *least;
            widest = widest.max(first.max(last) - *least);
        }
        let scale = if widest.is_finite() && widest > 0.0 {
            255.0 / widest
        } else {
            1.0
        };
        let mut entries = vec![0u8; fastscan_block_bytes(dim)];
        // Terms are at least -ulp after the shift; adding one half and truncating (saturating
        // at 0 and 255) rounds, and vectorises where `f32::round` is a libm call. The two
        // metric families get their own loops so that each is branch-free.
        let cells = entries.chunks_exact_mut(CELLS).take(dim);
        let dims = query.iter().zip(&self.lows).zip(&self.steps).zip(&least);
        for (dim_entries, (((&q, &low), &step), &least)) in cells.zip(dims) {
            let shift = least - 0.5 / scale;
            if inner_product {
                for (cell, entry) in dim_entries.iter_mut().enumerate() {
                    let midpoint = midpoint(low, step, cell);
                    *entry = ((-q * midpoint - shift) * scale).min(255.0) as u8;
                }
            } else {
                for (cell, entry) in dim_entries.iter_mut().enumerate() {
                    let midpoint = midpoint(low, step, cell);
                    *entry = (((q - midpoint) * (q - midpoint) - shift) * scale).min(255.0) as u8;
                }
            }
        }
        FastScanTables {
            entries,
            scale,
            bias,
        }
    }

    /// Writes the sums of the blocks covering `rows` into `out` (resized) and returns the row
    /// of `out[0]`: `rows` rounded out to whole blocks.
    ///
    /// Panics if `rows` reaches past the encoded rows' blocks.
    pub fn sums(&self, rows: Range<usize>, tables: &FastScanTables, out: &mut Vec<u32>) -> usize {
        let block_bytes = tables.entries.len();
        let first_block = rows.start / FASTSCAN_BLOCK_ROWS;
        let end_block = rows.end.div_ceil(FASTSCAN_BLOCK_ROWS).max(first_block);
        out.clear();
        out.resize((end_block - first_block) * FASTSCAN_BLOCK_ROWS, 0);
        fastscan_sums(
            &self.codes[first_block * block_bytes..end_block * block_bytes],
            &tables.entries,
            out,
        );
        first_block * FASTSCAN_BLOCK_ROWS
    }
}

/// Values per dimension a partition's cells are chosen from.
const RANGE_SAMPLE_ROWS: usize = 8192;

/// Shares of the values left below the first cell and above the last, tried per dimension.
const CLIP_SHARES: [f64; 6] = [0.0, 0.0005, 0.002, 0.005, 0.01, 0.02];

/// Returns the cells (low end, width) of one dimension's `values` (sorted here) that
/// reconstruct them with the least squared error.
fn least_error_cells(values: &mut [f32]) -> (f32, f32) {
    if values.is_empty() {
        return (0.0, 0.0);
    }
    values.sort_unstable_by(f32::total_cmp);
    let last = values.len() - 1;
    let mut best = (f64::INFINITY, 0f32, 0f32);
    for share in CLIP_SHARES {
        let clipped = (share * last as f64).round() as usize;
        let (low, high) = (values[clipped], values[last - clipped]);
        let step = (high - low) / CELLS as f32;
        let step = if step.is_finite() && step > 0.0 {
            step
        } else {
            0.0
        };
        let error: f64 = values
            .iter()
            .map(|&value| {
                let miss = f64::from(value - midpoint(low, step, cell_of(value, low, step).into()));
                miss * miss
            })
            .sum();
        if error < best.0 {
            best = (error, low, step);
        }
    }
    (best.1, best.2)
}

/// Returns the midpoint of `cell` in a dimension starting at `low` with cells `step` wide (the
/// value every coordinate of the cell stands for).
fn midpoint(low: f32, step: f32, cell: usize) -> f32 {
    low + (cell as f32 + 0.5) * step
}

/// Returns the cell of `value` in a dimension starting at `low` with cells `step` wide.
fn cell_of(value: f32, low: f32, step: f32) -> u8 {
    if step > 0.0 {
        ((value - low) / step)
            .floor()
            .clamp(0.0, (CELLS - 1) as f32) as u8
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    fn random_vectors(rng: &mut StdRng, num_rows: usize, dim: usize) -> Vec<f32> {
        (0..num_rows * dim)
            .map(|i| rng.random_range(-1.0f32..1.0) * (1.0 + (i % dim) as f32))
            .collect()
    }

    /// The estimate from the kernel's sums equals the sum of the midpoint terms computed
    /// directly, within the tables' rounding (half a unit per dimension).
    #[test]
    fn estimates_match_midpoint_distances_within_rounding() {
        let mut rng = StdRng::seed_from_u64(7);
        for (num_rows, dim) in [(1, 1), (31, 3), (33, 17), (100, 50), (70, 784)] {
            let vectors = random_vectors(&mut rng, num_rows, dim);
            let codes = FastScanCodes::encode(&vectors, dim);
            codes.check("test", num_rows, dim).unwrap();
            let query: Vec<f32> = (0..dim).map(|_| rng.random_range(-2.0f32..2.0)).collect();
            for inner_product in [false, true] {
                let tables = codes.tables(&query, inner_product);
                let mut sums = Vec::new();
                let first = codes.sums(0..num_rows, &tables, &mut sums);
                assert_eq!(first, 0);
                for row in 0..num_rows {
                    let vector = &vectors[row * dim..][..dim];
                    let expected: f32 = (0..dim)
                        .map(|d| {
                            let cell = cell_of(vector[d], codes.lows[d], codes.steps[d]);
                            let midpoint = codes.lows[d] + (f32::from(cell) + 0.5) * codes.steps[d];
                            if inner_product {
                                -query[d] * midpoint
                            } else {
                                (query[d] - midpoint).powi(2)
                            }
                        })
                        .sum();
                    let estimate = tables.estimate(sums[row]);
                    let tolerance = 0.5 * dim as f32 / tables.scale + 1e-3 * expected.abs();
                    assert!(
                        (estimate - expected).abs() <= tolerance,
                        "row {row} dim {dim}: {estimate} vs {expected}"
                    );
                }
            }
        }
    }

    /// Squared error of reconstructing every coordinate of `vectors` by its cell's midpoint.
    fn reconstruction_error(codes: &FastScanCodes, vectors: &[f32], dim: usize) -> f64 {
        vectors
            .chunks_exact(dim)
            .flat_map(|row| row.iter().enumerate())
            .map(|(d, &value)| {
                let (low, step) = (codes.lows[d], codes.steps[d]);
                f64::from(value - midpoint(low, step, cell_of(value, low, step).into())).powi(2)
            })
            .sum()
    }

    /// Cells spanning each dimension's whole range, the choice the encoder improves on.
    fn min_max_codes(vectors: &[f32], dim: usize) -> FastScanCodes {
        let mut lows = vec![f32::INFINITY; dim];
        let mut highs = vec![f32::NEG_INFINITY; dim];
        for row in vectors.chunks_exact(dim) {
            for (d, &value) in row.iter().enumerate() {
                lows[d] = lows[d].min(value);
                highs[d] = highs[d].max(value);
            }
        }
        let steps = lows
            .iter()
            .zip(&highs)
            .map(|(low, high)| (high - low) / CELLS as f32)
            .collect();
        FastScanCodes::encode_with_cells(lows, steps, vectors, dim)
    }

    /// Midpoints are within half a cell of every coordinate inside the cells' span, so the
    /// estimate of a row's own distance to itself is small next to the spread of the data;
    /// the cells never reconstruct worse than cells spanning the whole range.
    #[test]
    fn codes_stay_within_half_a_cell_inside_their_span() {
        let mut rng = StdRng::seed_from_u64(8);
        let (num_rows, dim) = (200, 12);
        let vectors = random_vectors(&mut rng, num_rows, dim);
        let codes = FastScanCodes::encode(&vectors, dim);
        for row in vectors.chunks_exact(dim) {
            for (d, &value) in row.iter().enumerate() {
                let (low, step) = (codes.lows[d], codes.steps[d]);
                if value < low || value > low + CELLS as f32 * step {
                    continue;
                }
                let midpoint = midpoint(low, step, cell_of(value, low, step).into());
                assert!((value - midpoint).abs() <= 0.5 * step * 1.0001);
            }
        }
        let chosen = reconstruction_error(&codes, &vectors, dim);
        let min_max = reconstruction_error(&min_max_codes(&vectors, dim), &vectors, dim);
        assert!(chosen <= min_max * 1.0001, "{chosen} vs {min_max}");
    }

    /// A few outliers no longer stretch a dimension's cells: on Gaussian coordinates with one
    /// row in 1,000 ten deviations out, the chosen cells leave the outliers in the end cells
    /// and reconstruct the data with well under the error of whole-range cells.
    #[test]
    fn outliers_do_not_stretch_the_cells() {
        let mut rng = StdRng::seed_from_u64(9);
        let (num_rows, dim) = (5000, 8);
        let vectors: Vec<f32> = (0..num_rows * dim)
            .map(|i| {
                let gaussian = (0..12).map(|_| rng.random_range(0.0f32..1.0)).sum::<f32>() - 6.0;
                if (i / dim) % 1000 == 0 {
                    10.0 * gaussian.signum()
                } else {
                    gaussian
                }
            })
            .collect();
        let codes = FastScanCodes::encode(&vectors, dim);
        let chosen = reconstruction_error(&codes, &vectors, dim);
        let min_max = reconstruction_error(&min_max_codes(&vectors, dim), &vectors, dim);
        assert!(chosen < 0.7 * min_max, "{chosen} vs {min_max}");
    }

    #[test]
    fn constant_dimensions_and_empty_partitions_encode() {
        let codes = FastScanCodes::encode(&[3.0, 3.0, 3.0, 3.0], 2);
        assert_eq!(codes.steps, vec![0.0, 0.0]);
        codes.check("test", 2, 2).unwrap();
        let tables = codes.tables(&[1.0, 1.0], false);
        let mut sums = Vec::new();
        codes.sums(0..2, &tables, &mut sums);
        assert!((tables.estimate(sums[0]) - 8.0).abs() < 1e-5);
        let empty = FastScanCodes::encode(&[], 5);
        empty.check("test", 0, 5).unwrap();
        assert!(empty.codes.is_empty());
    }

    #[test]
    fn check_names_a_short_code_block() {
        let mut codes = FastScanCodes::encode(&[1.0, 2.0, 3.0, 4.0], 2);
        codes.codes.pop();
        let error = codes.check("seg", 2, 2).unwrap_err().to_string();
        assert!(error.contains("fastscan"), "{error}");
    }
}
