//! NEON paths (aarch64, where NEON is part of the base architecture: every Graviton has it).
//!
//! Covers the kernels of the direct-scoring path, the fast-scan first stage and the sign-code
//! prune: f32 squared L2 and inner product (single and gathered rows), fast-scan sums (`tbl`)
//! and Hamming distances. The ADC lower bounds and
//! code extraction still run their scalar reference on aarch64.
//!
//! Every function is `unsafe` for the same reason as in `x86_64.rs`: the caller (`lib.rs`) has
//! validated shapes and rows, and the loops index without bounds checks. Each is held to its
//! scalar twin by the proptests in `lib.rs`, which `scripts/test.sh` runs under qemu-aarch64.

use std::arch::aarch64::*;

/// f32 lanes of one NEON register.
const F32_LANES: usize = 4;

/// Returns `Σ (a[i] - b[i])²` (equal lengths, checked by the caller).
///
/// # Safety
/// NEON must be available (always on aarch64).
#[target_feature(enable = "neon")]
pub unsafe fn l2_squared_f32_neon(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    let len = a.len().min(b.len());
    let mut index = 0;
    // SAFETY: every load reads [index, index + 4) with index + 4 <= len, inside both slices.
    let vector_sum = unsafe {
        let (a_ptr, b_ptr) = (a.as_ptr(), b.as_ptr());
        let mut accumulators = [vdupq_n_f32(0.0); 4];
        while index + 4 * F32_LANES <= len {
            for (lane_block, accumulator) in accumulators.iter_mut().enumerate() {
                let offset = index + lane_block * F32_LANES;
                let difference =
                    vsubq_f32(vld1q_f32(a_ptr.add(offset)), vld1q_f32(b_ptr.add(offset)));
                *accumulator = vfmaq_f32(*accumulator, difference, difference);
            }
            index += 4 * F32_LANES;
        }
        while index + F32_LANES <= len {
            let difference = vsubq_f32(vld1q_f32(a_ptr.add(index)), vld1q_f32(b_ptr.add(index)));
            accumulators[0] = vfmaq_f32(accumulators[0], difference, difference);
            index += F32_LANES;
        }
        vaddvq_f32(vaddq_f32(
            vaddq_f32(accumulators[0], accumulators[1]),
            vaddq_f32(accumulators[2], accumulators[3]),
        ))
    };
    let tail: f32 = a[index..len]
        .iter()
        .zip(&b[index..len])
        .map(|(x, y)| (x - y) * (x - y))
        .sum();
    vector_sum + tail
}

/// Returns `Σ a[i]·b[i]` (equal lengths, checked by the caller).
///
/// # Safety
/// NEON must be available (always on aarch64).
#[target_feature(enable = "neon")]
pub unsafe fn dot_f32_neon(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    let len = a.len().min(b.len());
    let mut index = 0;
    // SAFETY: every load reads [index, index + 4) with index + 4 <= len, inside both slices.
    let vector_sum = unsafe {
        let (a_ptr, b_ptr) = (a.as_ptr(), b.as_ptr());
        let mut accumulators = [vdupq_n_f32(0.0); 4];
        while index + 4 * F32_LANES <= len {
            for (lane_block, accumulator) in accumulators.iter_mut().enumerate() {
                let offset = index + lane_block * F32_LANES;
                *accumulator = vfmaq_f32(
                    *accumulator,
                    vld1q_f32(a_ptr.add(offset)),
                    vld1q_f32(b_ptr.add(offset)),
                );
            }
            index += 4 * F32_LANES;
        }
        while index + F32_LANES <= len {
            accumulators[0] = vfmaq_f32(
                accumulators[0],
                vld1q_f32(a_ptr.add(index)),
                vld1q_f32(b_ptr.add(index)),
            );
            index += F32_LANES;
        }
        vaddvq_f32(vaddq_f32(
            vaddq_f32(accumulators[0], accumulators[1]),
            vaddq_f32(accumulators[2], accumulators[3]),
        ))
    };
    let tail: f32 = a[index..len]
        .iter()
        .zip(&b[index..len])
        .map(|(x, y)| x * y)
        .sum();
    vector_sum + tail
}

/// Writes `out[i] = distance(row rows[i])` for row-major `vectors` of `dim` floats per row.
///
/// # Safety
/// `vectors` must hold every requested row and `rows.len()` must equal `out.len()` (validated
/// by the caller).
#[inline]
unsafe fn gather_neon(
    vectors: &[f32],
    dim: usize,
    rows: &[u32],
    out: &mut [f32],
    distance: impl Fn(&[f32]) -> f32,
) {
    for (&row, result) in rows.iter().zip(out.iter_mut()) {
        let start = row as usize * dim;
        debug_assert!(start + dim <= vectors.len());
        // SAFETY: the row lies inside vectors (caller).
        *result = distance(unsafe { vectors.get_unchecked(start..start + dim) });
    }
}

/// Writes `out[i] = l2_squared(query, row rows[i])`.
///
/// # Safety
/// `vectors` must hold every requested row of `query.len()` floats and `rows.len()` must equal
/// `out.len()` (validated by the caller).
#[target_feature(enable = "neon")]
pub unsafe fn l2_squared_gather_neon(
    query: &[f32],
    vectors: &[f32],
    rows: &[u32],
    out: &mut [f32],
) {
    // SAFETY: shapes validated by the caller; every row has query.len() floats.
    unsafe {
        gather_neon(vectors, query.len(), rows, out, |row| {
            l2_squared_f32_neon(query, row)
        })
    }
}

/// Writes `out[i] = l2_squared(query, row i)` for every row of row-major `vectors`.
///
/// # Safety
/// `query` is not empty and `vectors.len() == out.len() * query.len()` (validated by the
/// caller); NEON must be available.
#[target_feature(enable = "neon")]
pub unsafe fn l2_squared_rows_neon(query: &[f32], vectors: &[f32], out: &mut [f32]) {
    for (row, result) in vectors.chunks_exact(query.len()).zip(out.iter_mut()) {
        // SAFETY: the lengths are equal (caller).
        *result = unsafe { l2_squared_f32_neon(query, row) };
    }
}

/// Writes `out[i] = dot(query, row rows[i])`.
///
/// # Safety
/// As [`l2_squared_gather_neon`].
#[target_feature(enable = "neon")]
pub unsafe fn dot_gather_neon(query: &[f32], vectors: &[f32], rows: &[u32], out: &mut [f32]) {
    // SAFETY: shapes validated by the caller; every row has query.len() floats.
    unsafe {
        gather_neon(vectors, query.len(), rows, out, |row| {
            dot_f32_neon(query, row)
        })
    }
}

/// Writes `out[i] = sum of weights[j] * codes[rows[i] * stride + j]` (`stride =
/// weights.len()`): eight codes at a time are widened to two `f32` registers and
/// multiplied-added.
///
/// # Safety
/// `weights` is not empty, `rows.len() == out.len()` and every row satisfies
/// `(row + 1) * weights.len() <= codes.len()` (validated by the caller); NEON must be available.
#[target_feature(enable = "neon")]
pub unsafe fn dot_u8_gather_neon(weights: &[f32], codes: &[u8], rows: &[u32], out: &mut [f32]) {
    let stride = weights.len();
    let whole = stride / 8 * 8;
    for (&row, result) in rows.iter().zip(out.iter_mut()) {
        let start = row as usize * stride;
        debug_assert!(start + stride <= codes.len());
        // SAFETY: every load reads bytes [start + j, start + j + 8) with j + 8 <= stride, inside
        // the row (caller), and weights [j, j + 8) inside weights.
        unsafe {
            let row_ptr = codes.as_ptr().add(start);
            let weights_ptr = weights.as_ptr();
            let (mut low_sum, mut high_sum) = (vdupq_n_f32(0.0), vdupq_n_f32(0.0));
            let mut j = 0;
            while j < whole {
                let wide = vmovl_u8(vld1_u8(row_ptr.add(j)));
                let low = vcvtq_f32_u32(vmovl_u16(vget_low_u16(wide)));
                let high = vcvtq_f32_u32(vmovl_u16(vget_high_u16(wide)));
                low_sum = vfmaq_f32(low_sum, low, vld1q_f32(weights_ptr.add(j)));
                high_sum = vfmaq_f32(high_sum, high, vld1q_f32(weights_ptr.add(j + 4)));
                j += 8;
            }
            let mut total = vaddvq_f32(vaddq_f32(low_sum, high_sum));
            while j < stride {
                total += f32::from(*row_ptr.add(j)) * weights[j];
                j += 1;
            }
            *result = total;
        }
    }
}

/// Returns the popcount of `query XOR row`, two words per NEON register.
///
/// # Safety
/// `row.len() == query.len()`; NEON must be available.
#[target_feature(enable = "neon")]
unsafe fn row_distance_neon(query: &[u64], row: &[u64]) -> u32 {
    let len = query.len().min(row.len());
    let mut index = 0;
    let mut distance = 0u32;
    // SAFETY: every load reads words [index, index + 2) with index + 2 <= len.
    unsafe {
        while index + 2 <= len {
            let difference = veorq_u64(
                vld1q_u64(query.as_ptr().add(index)),
                vld1q_u64(row.as_ptr().add(index)),
            );
            distance += u32::from(vaddlvq_u8(vcntq_u8(vreinterpretq_u8_u64(difference))));
            index += 2;
        }
    }
    for word in index..len {
        distance += (query[word] ^ row[word]).count_ones();
    }
    distance
}

/// Writes `out[i] = popcount(query XOR row i)` for row-major `codes`.
///
/// # Safety
/// `codes.len() == out.len() * query.len()` (validated by the caller).
#[target_feature(enable = "neon")]
pub unsafe fn hamming_distances_neon(query: &[u64], codes: &[u64], out: &mut [u32]) {
    let words = query.len();
    for (row, result) in out.iter_mut().enumerate() {
        // SAFETY: row `row` spans [row * words, (row + 1) * words) inside codes (caller).
        *result = unsafe {
            row_distance_neon(query, codes.get_unchecked(row * words..(row + 1) * words))
        };
    }
}

/// Writes `out[i] = popcount(query XOR row rows[i])` for row-major `codes`.
///
/// # Safety
/// Every requested row must lie inside `codes` and `rows.len() == out.len()` (validated by the
/// caller); `query` is not empty.
#[target_feature(enable = "neon")]
pub unsafe fn hamming_distances_gather_neon(
    query: &[u64],
    codes: &[u64],
    rows: &[u32],
    out: &mut [u32],
) {
    let words = query.len();
    for (&row, result) in rows.iter().zip(out.iter_mut()) {
        let start = row as usize * words;
        debug_assert!(start + words <= codes.len());
        // SAFETY: the row lies inside codes (caller).
        *result = unsafe { row_distance_neon(query, codes.get_unchecked(start..start + words)) };
    }
}

/// Table lookups summed in 16-bit lanes before they are widened: at most 255 per dimension, so
/// 256 dimensions stay below 2^16.
const FASTSCAN_DIMS_PER_FLUSH: usize = 256;

/// Fast-scan sums (layout in [`crate::fastscan_sums`]): one register holds a dimension's
/// 16-entry table and its codes of 32 rows; `tbl` looks up the low nibbles (rows 0-15) and the
/// high nibbles (rows 16-31), widened into 16-bit accumulators and every 256 dimensions into
/// 32-bit totals.
///
/// # Safety
/// NEON must be available; `tables.len()` is a non-zero multiple of 32; `codes` is whole blocks
/// of `tables.len()` bytes; `out.len()` is 32 per block.
#[target_feature(enable = "neon")]
pub unsafe fn fastscan_sums_neon(codes: &[u8], tables: &[u8], out: &mut [u32]) {
    let block_bytes = tables.len();
    let num_dims = block_bytes / 16;
    // SAFETY: every load reads 16 bytes at `dim * 16 < block_bytes` inside one block of
    // `codes` and inside `tables`; every store writes 4 u32 inside the block's 32 sums.
    unsafe {
        let low_nibbles = vdupq_n_u8(0x0f);
        let tables_ptr = tables.as_ptr();
        for (block, sums) in codes
            .chunks_exact(block_bytes)
            .zip(out.chunks_exact_mut(crate::FASTSCAN_BLOCK_ROWS))
        {
            let codes_ptr = block.as_ptr();
            // u32 totals of rows 4i..4i + 4.
            let mut totals = [vdupq_n_u32(0); 8];
            let mut dim = 0;
            while dim < num_dims {
                let end = (dim + FASTSCAN_DIMS_PER_FLUSH).min(num_dims);
                // u16 sums of rows 0-7, 8-15, 16-23, 24-31.
                let mut partial = [vdupq_n_u16(0); 4];
                while dim < end {
                    let packed = vld1q_u8(codes_ptr.add(dim * 16));
                    let table = vld1q_u8(tables_ptr.add(dim * 16));
                    let low = vqtbl1q_u8(table, vandq_u8(packed, low_nibbles));
                    let high = vqtbl1q_u8(table, vshrq_n_u8(packed, 4));
                    partial[0] = vaddw_u8(partial[0], vget_low_u8(low));
                    partial[1] = vaddw_high_u8(partial[1], low);
                    partial[2] = vaddw_u8(partial[2], vget_low_u8(high));
                    partial[3] = vaddw_high_u8(partial[3], high);
                    dim += 1;
                }
                for (index, sum) in partial.iter().enumerate() {
                    totals[2 * index] = vaddw_u16(totals[2 * index], vget_low_u16(*sum));
                    totals[2 * index + 1] = vaddw_high_u16(totals[2 * index + 1], *sum);
                }
            }
            let sums_ptr = sums.as_mut_ptr();
            for (index, total) in totals.iter().enumerate() {
                vst1q_u32(sums_ptr.add(4 * index), *total);
            }
        }
    }
}
