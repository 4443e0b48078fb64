//! Fast-scan codes: 4 bits per dimension of the full-precision vectors, in the block layout of
//! `squash_kernels::fastscan_sums`, for a first-stage distance estimate whose tables sit in
//! SIMD registers (the FastScan / Quick ADC technique).
//!
//! Each dimension's range over the partition is cut into 16 equal cells; a row's code is the
//! cell of its coordinate. For a query, a dimension's table holds the distance term of each
//! cell's midpoint (`(q_d - m)²` for L2, `-q_d·m` for inner products), shifted to start at 0
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
        let mut lows = vec![f32::INFINITY; dim];
        let mut highs = vec![f32::NEG_INFINITY; dim];
        for row in vectors.chunks_exact(dim.max(1)).take(num_rows) {
            for ((low, high), &value) in lows.iter_mut().zip(highs.iter_mut()).zip(row) {
                *low = low.min(value);
                *high = high.max(value);
            }
        }
        let steps: Vec<f32> = lows
            .iter()
            .zip(&highs)
            .map(|(&low, &high)| {
                let step = (high - low) / CELLS as f32;
                if step.is_finite() && step > 0.0 {
                    step
                } else {
                    0.0
                }
            })
            .collect();
        lows.iter_mut()
            .filter(|low| !low.is_finite())
            .for_each(|low| *low = 0.0);
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
            let midpoint = self.lows[d] + (cell as f32 + 0.5) * self.steps[d];
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
                    let midpoint = low + (cell as f32 + 0.5) * step;
                    *entry = ((-q * midpoint - shift) * scale).min(255.0) as u8;
                }
            } else {
                for (cell, entry) in dim_entries.iter_mut().enumerate() {
                    let midpoint = low + (cell as f32 + 0.5) * step;
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

    /// Midpoints are within half a cell of every coordinate, so the estimate of a row's own
    /// distance to itself is small next to the spread of the data.
    #[test]
    fn codes_stay_within_half_a_cell() {
        let mut rng = StdRng::seed_from_u64(8);
        let (num_rows, dim) = (200, 12);
        let vectors = random_vectors(&mut rng, num_rows, dim);
        let codes = FastScanCodes::encode(&vectors, dim);
        for row in vectors.chunks_exact(dim) {
            for (d, &value) in row.iter().enumerate() {
                let cell = cell_of(value, codes.lows[d], codes.steps[d]);
                let midpoint = codes.lows[d] + (f32::from(cell) + 0.5) * codes.steps[d];
                assert!((value - midpoint).abs() <= 0.5 * codes.steps[d] * 1.0001);
            }
        }
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
