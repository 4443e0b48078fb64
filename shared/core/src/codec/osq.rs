//! OSQ: per-dimension non-uniform scalar quantization of PCA-rotated vectors (SQUASH §1.3–1.5,
//! after the VA+-file).
//!
//! Owns the bit allocation, the Lloyd-refined boundaries, the bit-packed plane layout and the
//! per-query lower-bound tables. Knows nothing of partitions, storage or queries beyond one
//! rotated vector at a time.
//!
//! Differences from the reference code, on purpose:
//! - a bit offered to a dimension already at 8 bits goes to the next best dimension instead of
//!   being lost, and dimensions with zero variance never take bits;
//! - cells are `2^bits` (256 at 8 bits, not 255), so every code value is used;
//! - the outer boundaries are the observed min and max of the dimension, so every stored
//!   value lies inside its cell and the lower bound is sound without padding constants;
//! - the lower-bound table of the query's own cell is 0 by construction (no zero-boundary quirk).
//!
//! Packing (SQUASH "segment-based storage"): the codes of one vector, dimension after
//! dimension, form one MSB-first bit string of `total_bits`; byte `p` of that string is stored
//! in plane `p`, and planes are stored one after another (`planes[p * n + i]`), so one
//! dimension of many vectors is read by walking one or two planes in order.
//!
//! ```text
//!  vector i bit string:  |d0 (5b)|d1 (4b) |d2 (3b)| ...
//!                        |plane 0 byte |plane 1 byte | ...
//!  d1 straddles planes 0 and 1: window = plane0[i] << 8 | plane1[i]; code = window >> 7 & 0xF
//! ```

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use squash_kernels::DimSlot;

/// Most bits one dimension can take: codes are stored in at most one byte.
pub const MAX_BITS_PER_DIM: u8 = 8;

/// Lloyd stops when distortion improves by less than this fraction (the reference's 0.005).
const LLOYD_RELATIVE_TOLERANCE: f64 = 0.005;

/// Lloyd iteration cap; with prefix sums an iteration costs O(cells · log n), so this is cheap.
const LLOYD_MAX_ITERATIONS: usize = 100;

/// The trained quantizer of one partition: bits and boundaries per rotated dimension.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OsqQuantizer {
    /// Bits per rotated dimension (0..=8), in PCA order.
    pub bits: Vec<u8>,
    /// Per dimension, `2^bits + 1` ascending boundaries (2 for a dimension with 0 bits: its
    /// min and max), concatenated in dimension order.
    pub boundaries: Vec<f32>,
}

/// Where each coded dimension sits in the planes and in the per-query table.
#[derive(Debug, Clone, PartialEq)]
pub struct OsqLayout {
    /// One slot per dimension with at least one bit, in dimension order.
    pub slots: Vec<DimSlot>,
    /// The dimension each slot codes.
    pub slot_dims: Vec<usize>,
    /// Dimensions with zero bits: their contribution to a bound is a per-query constant.
    pub uncoded_dims: Vec<usize>,
    /// Start of each dimension's boundaries in `OsqQuantizer::boundaries`.
    pub boundary_offsets: Vec<usize>,
    /// Number of byte planes (`ceil(total_bits / 8)`).
    pub num_planes: usize,
    /// Length of a per-query table: the sum of `2^bits` over coded dimensions.
    pub table_len: usize,
}

/// Returns bits per dimension for a total budget, greedily by variance (6 dB per bit).
///
/// Each step gives one bit to the dimension with the largest remaining energy among those
/// below [`MAX_BITS_PER_DIM`] and with non-zero variance, then divides its energy by 4.
/// Stops early only when no dimension can take another bit, so no bit is silently lost.
pub fn allocate_bits(variances: &[f32], total_bits: usize) -> Vec<u8> {
    let mut bits = vec![0u8; variances.len()];
    let mut energy: Vec<f64> = variances.iter().map(|&v| f64::from(v.max(0.0))).collect();
    for _ in 0..total_bits {
        let mut best_opt: Option<usize> = None;
        for dim in 0..energy.len() {
            if bits[dim] >= MAX_BITS_PER_DIM || energy[dim] <= 0.0 {
                continue;
            }
            match best_opt {
                Some(best) if energy[best] >= energy[dim] => {}
                _ => best_opt = Some(dim),
            }
        }
        let Some(best) = best_opt else { break };
        bits[best] += 1;
        energy[best] /= 4.0;
    }
    bits
}

/// Returns `cells + 1` boundaries for one dimension: equal-frequency start, Lloyd-Max refinement.
///
/// `sorted` must be ascending and non-empty. The outer boundaries are the min and max.
pub fn design_boundaries(sorted: &[f32], cells: usize) -> Vec<f32> {
    debug_assert!(!sorted.is_empty() && cells >= 1);
    let n = sorted.len();
    let min = sorted[0];
    let max = sorted[n - 1];
    let mut boundaries = Vec::with_capacity(cells + 1);
    boundaries.push(min);
    for j in 1..cells {
        boundaries.push(sorted[(j * n).div_ceil(cells).min(n - 1)]);
    }
    boundaries.push(max);
    if cells == 1 || min == max {
        return boundaries;
    }
    // Prefix sums in f64 make each cell's mean and distortion O(1) after two binary searches.
    let mut prefix_sum = Vec::with_capacity(n + 1);
    let mut prefix_sq = Vec::with_capacity(n + 1);
    let (mut sum, mut sq) = (0.0f64, 0.0f64);
    prefix_sum.push(0.0);
    prefix_sq.push(0.0);
    for &value in sorted {
        let value = f64::from(value);
        sum += value;
        sq += value * value;
        prefix_sum.push(sum);
        prefix_sq.push(sq);
    }
    let mut previous_distortion = f64::INFINITY;
    let mut representatives = vec![0.0f64; cells];
    for _ in 0..LLOYD_MAX_ITERATIONS {
        let mut distortion = 0.0;
        let mut start = 0usize;
        for cell in 0..cells {
            let end = if cell + 1 == cells {
                n
            } else {
                sorted.partition_point(|&v| v < boundaries[cell + 1])
            };
            let count = end.saturating_sub(start);
            if count == 0 {
                representatives[cell] =
                    (f64::from(boundaries[cell]) + f64::from(boundaries[cell + 1])) / 2.0;
            } else {
                let s = prefix_sum[end] - prefix_sum[start];
                let q = prefix_sq[end] - prefix_sq[start];
                let mean = s / count as f64;
                representatives[cell] = mean;
                distortion += (q - s * mean).max(0.0);
            }
            start = end.max(start);
        }
        for j in 1..cells {
            let midpoint = ((representatives[j - 1] + representatives[j]) / 2.0) as f32;
            boundaries[j] = midpoint.clamp(min, max);
        }
        // Keep boundaries ascending even when float rounding nudges a midpoint.
        for j in 1..=cells {
            if boundaries[j] < boundaries[j - 1] {
                boundaries[j] = boundaries[j - 1];
            }
        }
        let improvement = (previous_distortion - distortion) / distortion.max(f64::MIN_POSITIVE);
        if distortion == 0.0 || improvement.abs() < LLOYD_RELATIVE_TOLERANCE {
            break;
        }
        previous_distortion = distortion;
    }
    boundaries
}

impl OsqQuantizer {
    /// Trains a quantizer on rotated vectors (`rotated` is row-major `n x dim`).
    ///
    /// `variances` are the per-dimension variances used for the bit allocation and
    /// `total_bits` the budget (`bits_per_dim * dim`).
    pub fn train(
        rotated: &[f32],
        dim: usize,
        variances: &[f32],
        total_bits: usize,
    ) -> Result<Self> {
        if dim == 0 || rotated.is_empty() || !rotated.len().is_multiple_of(dim) {
            return Err(Error::invalid(
                "osq",
                format!(
                    "cannot train on {} values of dimension {dim}",
                    rotated.len()
                ),
            ));
        }
        let num_vectors = rotated.len() / dim;
        let bits = allocate_bits(variances, total_bits);
        let per_dim: Vec<Vec<f32>> = {
            use rayon::prelude::*;
            (0..dim)
                .into_par_iter()
                .map(|d| {
                    let mut column: Vec<f32> =
                        (0..num_vectors).map(|i| rotated[i * dim + d]).collect();
                    column.sort_unstable_by(f32::total_cmp);
                    let cells = if bits[d] == 0 { 1 } else { 1usize << bits[d] };
                    design_boundaries(&column, cells)
                })
                .collect()
        };
        Ok(OsqQuantizer {
            bits,
            boundaries: per_dim.into_iter().flatten().collect(),
        })
    }

    /// Returns the number of dimensions.
    pub fn dim(&self) -> usize {
        self.bits.len()
    }

    /// Returns the total bits of one vector's code.
    pub fn total_bits(&self) -> usize {
        self.bits.iter().map(|&b| usize::from(b)).sum()
    }

    /// Returns the plane/table layout, checking that the stored shape is consistent.
    pub fn layout(&self) -> Result<OsqLayout> {
        let mut slots = Vec::new();
        let mut slot_dims = Vec::new();
        let mut uncoded_dims = Vec::new();
        let mut boundary_offsets = Vec::with_capacity(self.bits.len());
        let mut boundary_offset = 0usize;
        let mut bit_position = 0usize;
        let mut table_offset = 0usize;
        for (dim, &width) in self.bits.iter().enumerate() {
            if width > MAX_BITS_PER_DIM {
                return Err(Error::corrupt(
                    "osq",
                    dim as u64,
                    format!("{width} bits for one dimension"),
                ));
            }
            boundary_offsets.push(boundary_offset);
            let cells = if width == 0 { 1 } else { 1usize << width };
            boundary_offset += cells + 1;
            if width == 0 {
                uncoded_dims.push(dim);
                continue;
            }
            let bit_in_byte = (bit_position % 8) as u8;
            slots.push(DimSlot {
                plane: (bit_position / 8) as u32,
                shift: 16 - bit_in_byte - width,
                width,
                straddles: bit_in_byte + width > 8,
                table_offset: table_offset as u32,
            });
            slot_dims.push(dim);
            bit_position += usize::from(width);
            table_offset += cells;
        }
        if boundary_offset != self.boundaries.len() {
            return Err(Error::corrupt(
                "osq",
                0,
                format!(
                    "{} boundaries stored, bit allocation needs {boundary_offset}",
                    self.boundaries.len()
                ),
            ));
        }
        // Training yields finite boundaries, ascending within a dimension; the lower bounds
        // are sound only then, and JSON cannot carry an infinite one back.
        for (dim, &start) in boundary_offsets.iter().enumerate() {
            let end = boundary_offsets
                .get(dim + 1)
                .copied()
                .unwrap_or(self.boundaries.len());
            let boundaries = &self.boundaries[start..end];
            let is_ascending = boundaries.windows(2).all(|pair| pair[0] <= pair[1]);
            if !is_ascending || !boundaries.iter().all(|b| b.is_finite()) {
                return Err(Error::corrupt(
                    "osq",
                    dim as u64,
                    format!("boundaries of dimension {dim} are not finite and ascending"),
                ));
            }
        }
        Ok(OsqLayout {
            slots,
            slot_dims,
            uncoded_dims,
            boundary_offsets,
            num_planes: bit_position.div_ceil(8),
            table_len: table_offset,
        })
    }

    /// Returns the boundaries of dimension `dim`.
    pub fn dim_boundaries<'a>(&'a self, layout: &OsqLayout, dim: usize) -> &'a [f32] {
        let cells = if self.bits[dim] == 0 {
            1
        } else {
            1usize << self.bits[dim]
        };
        let start = layout.boundary_offsets[dim];
        &self.boundaries[start..start + cells + 1]
    }

    /// Returns the cell of `value` in dimension `dim` (clamped to the outer cells).
    pub fn cell_of(&self, layout: &OsqLayout, dim: usize, value: f32) -> u8 {
        let boundaries = self.dim_boundaries(layout, dim);
        let cells = boundaries.len() - 1;
        // Interior boundaries only: a value equal to boundary j belongs to cell j.
        let interior = &boundaries[1..cells];
        interior.partition_point(|&b| b <= value) as u8
    }

    /// Encodes rotated vectors (row-major `n x dim`) into plane-major packed codes.
    pub fn encode(&self, layout: &OsqLayout, rotated: &[f32]) -> Vec<u8> {
        let dim = self.dim();
        let num_vectors = rotated.len() / dim;
        let mut planes = vec![0u8; layout.num_planes * num_vectors];
        for (slot, &d) in layout.slots.iter().zip(&layout.slot_dims) {
            let plane_start = slot.plane as usize * num_vectors;
            for i in 0..num_vectors {
                let code = u16::from(self.cell_of(layout, d, rotated[i * dim + d]));
                let window = code << slot.shift;
                planes[plane_start + i] |= (window >> 8) as u8;
                if slot.straddles {
                    planes[plane_start + num_vectors + i] |= (window & 0xFF) as u8;
                }
            }
        }
        planes
    }

    /// Fills `table` with the squared-L2 lower bound of each cell for a centered, rotated query
    /// and returns the constant contributed by the uncoded dimensions.
    ///
    /// A cell's entry is the squared distance from the query coordinate to the cell's closed
    /// interval, so it is 0 for the query's own cell and never exceeds the true per-dimension
    /// squared difference of any vector in that cell.
    pub fn l2_lower_bound_table(
        &self,
        layout: &OsqLayout,
        query: &[f32],
        table: &mut [f32],
    ) -> f32 {
        let interval_gap = |q: f32, lo: f32, hi: f32| -> f32 {
            let gap = if q < lo {
                lo - q
            } else if q > hi {
                q - hi
            } else {
                0.0
            };
            gap * gap
        };
        self.fill_table(layout, query, table, interval_gap)
    }

    /// Fills `table` with a lower bound of `-(q'_d · z_d)` per cell for a rotated (uncentered)
    /// query `q'` and returns the uncoded dimensions' constant.
    ///
    /// Over a cell `[lo, hi]` the product `q'_d · z_d` is largest at an end point, so its
    /// negation is bounded below by `-max(q'_d·lo, q'_d·hi)`.
    pub fn ip_lower_bound_table(
        &self,
        layout: &OsqLayout,
        rotated_query: &[f32],
        table: &mut [f32],
    ) -> f32 {
        let bound = |q: f32, lo: f32, hi: f32| -> f32 { -(q * lo).max(q * hi) };
        self.fill_table(layout, rotated_query, table, bound)
    }

    /// Writes `cell_bound(q_d, lo, hi)` for every cell of every coded dimension into its table
    /// slot and returns the sum of the same bound over the uncoded dimensions (one cell each).
    fn fill_table(
        &self,
        layout: &OsqLayout,
        query: &[f32],
        table: &mut [f32],
        cell_bound: impl Fn(f32, f32, f32) -> f32,
    ) -> f32 {
        for (slot, &d) in layout.slots.iter().zip(&layout.slot_dims) {
            let boundaries = self.dim_boundaries(layout, d);
            let entries = &mut table[slot.table_offset as usize..][..boundaries.len() - 1];
            for (cell, entry) in entries.iter_mut().enumerate() {
                *entry = cell_bound(query[d], boundaries[cell], boundaries[cell + 1]);
            }
        }
        layout
            .uncoded_dims
            .iter()
            .map(|&d| {
                let boundaries = self.dim_boundaries(layout, d);
                cell_bound(query[d], boundaries[0], boundaries[1])
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;
    use squash_kernels as kernels;

    fn random_rotated(num_vectors: usize, dim: usize, seed: u64) -> (Vec<f32>, Vec<f32>) {
        let mut rng = StdRng::seed_from_u64(seed);
        let scales: Vec<f32> = (0..dim).map(|d| 4.0 / (1.0 + d as f32)).collect();
        let data = (0..num_vectors * dim)
            .map(|i| (rng.random::<f32>() - 0.5) * scales[i % dim])
            .collect();
        let variances = scales.iter().map(|s| s * s / 12.0).collect();
        (data, variances)
    }

    #[test]
    fn layout_refuses_boundaries_that_are_not_finite_and_ascending() {
        let quantizer = |boundaries: Vec<f32>| OsqQuantizer {
            bits: vec![1, 0],
            boundaries,
        };
        assert!(quantizer(vec![-1.0, 0.0, 1.0, 2.0, 2.0]).layout().is_ok());
        // Found by fuzzing the segment decoder: a JSON boundary of 1e39 decodes to an infinite
        // f32, which the segment encoder then writes as null and cannot read back.
        for bad in [
            vec![-1.0, 0.0, 1e39f64 as f32, 2.0, 2.0],
            vec![-1.0, 0.0, 1.0, f32::NAN, 2.0],
            vec![-1.0, 1.0, 0.0, 2.0, 2.0],
            vec![-1.0, 0.0, 1.0, 3.0, 2.0],
        ] {
            let error = quantizer(bad.clone()).layout().unwrap_err().to_string();
            assert!(
                error.contains("not finite and ascending"),
                "{bad:?}: {error}"
            );
        }
    }

    #[test]
    fn bit_allocation_spends_the_whole_budget_and_respects_the_cap() {
        let variances = [100.0, 1.0, 0.0, 0.5];
        let bits = allocate_bits(&variances, 20);
        assert_eq!(bits.iter().map(|&b| b as usize).sum::<usize>(), 20);
        assert!(bits.iter().all(|&b| b <= MAX_BITS_PER_DIM));
        assert_eq!(bits[2], 0, "a constant dimension takes no bit");
        assert_eq!(bits[0], 8);
        // More budget than the non-constant dimensions can hold: spent up to the cap, not lost.
        let bits = allocate_bits(&variances, 100);
        assert_eq!(bits, vec![8, 8, 0, 8]);
    }

    #[test]
    fn boundaries_cover_the_data_and_ascend() {
        let mut values: Vec<f32> = (0..1000)
            .map(|i| ((i * 7919) % 1000) as f32 / 10.0)
            .collect();
        values.sort_unstable_by(f32::total_cmp);
        for cells in [1, 2, 16, 256] {
            let b = design_boundaries(&values, cells);
            assert_eq!(b.len(), cells + 1);
            assert_eq!(b[0], values[0]);
            assert_eq!(b[cells], values[999]);
            assert!(b.windows(2).all(|w| w[0] <= w[1]));
        }
        let constant = vec![3.0f32; 50];
        assert_eq!(design_boundaries(&constant, 4), vec![3.0; 5]);
    }

    #[test]
    fn codes_round_trip_through_the_planes() {
        let dim = 12;
        let (data, variances) = random_rotated(300, dim, 7);
        let quantizer = OsqQuantizer::train(&data, dim, &variances, 37).expect("train");
        let layout = quantizer.layout().expect("layout");
        let planes = quantizer.encode(&layout, &data);
        let rows: Vec<u32> = (0..300).collect();
        let mut extracted = vec![0u8; rows.len()];
        for (slot, &d) in layout.slots.iter().zip(&layout.slot_dims) {
            kernels::extract_codes(&planes, 300, slot, &rows, &mut extracted);
            for (i, &code) in extracted.iter().enumerate() {
                assert_eq!(
                    code,
                    quantizer.cell_of(&layout, d, data[i * dim + d]),
                    "dim {d} row {i}"
                );
            }
        }
    }

    #[test]
    fn lower_bounds_never_exceed_true_distances() {
        let dim = 10;
        let (data, variances) = random_rotated(500, dim, 11);
        let quantizer = OsqQuantizer::train(&data, dim, &variances, 24).expect("train");
        let layout = quantizer.layout().expect("layout");
        let planes = quantizer.encode(&layout, &data);
        let rows: Vec<u32> = (0..500).collect();
        let mut rng = StdRng::seed_from_u64(3);
        let mut table = vec![0f32; layout.table_len];
        let mut bounds = vec![0f32; rows.len()];
        for _ in 0..20 {
            let query: Vec<f32> = (0..dim).map(|_| rng.random::<f32>() * 3.0 - 1.5).collect();
            let constant = quantizer.l2_lower_bound_table(&layout, &query, &mut table);
            kernels::adc_lower_bounds(&planes, 500, &layout.slots, &table, &rows, &mut bounds);
            for i in 0..500 {
                let row = &data[i * dim..][..dim];
                let exact = kernels::scalar::l2_squared_f32(&query, row);
                assert!(bounds[i] + constant <= exact * (1.0 + 1e-5) + 1e-6);
            }
            let constant = quantizer.ip_lower_bound_table(&layout, &query, &mut table);
            kernels::adc_lower_bounds(&planes, 500, &layout.slots, &table, &rows, &mut bounds);
            for i in 0..500 {
                let row = &data[i * dim..][..dim];
                let exact = -kernels::scalar::dot_f32(&query, row);
                assert!(bounds[i] + constant <= exact + 1e-5 * exact.abs() + 1e-6);
            }
        }
    }
}
