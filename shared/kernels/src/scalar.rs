//! Scalar reference kernels: the definition every ISA path is tested against, and the fallback
//! on CPUs (and architectures) without a dedicated path.
//!
//! Owns: portable, safe implementations of every kernel in [`crate::kernels`], shaped for
//! autovectorization (`chunks_exact` plus fixed-size accumulator arrays), so the fallback on
//! baseline x86-64 and on aarch64 still runs in SIMD registers.
//! Must not: use `unsafe`, use ISA intrinsics, or allocate per vector pair.
//!
//! Each function checks its own slice shapes with cheap asserts and otherwise relies on
//! ordinary bounds-checked indexing, so it is memory-safe on any input; the dispatching
//! wrappers in [`crate::kernels`] add the friendlier once-per-call validation.

use super::{DimSlot, ADC_CHUNK_ROWS};

/// Number of f32 accumulators: one AVX2 register, two SSE/NEON registers.
const F32_LANES: usize = 8;

/// Number of u64 words whose popcounts are summed in independent accumulators.
const HAMMING_WORDS_PER_STEP: usize = 4;

/// Returns the Hamming distance between two equally long bit strings stored as u64 words.
///
/// Panics if the lengths differ.
#[inline]
pub fn hamming_distance(query: &[u64], row: &[u64]) -> u32 {
    assert_eq!(query.len(), row.len(), "hamming_distance: length mismatch");
    let mut counts = [0u32; HAMMING_WORDS_PER_STEP];
    let query_steps = query.chunks_exact(HAMMING_WORDS_PER_STEP);
    let row_steps = row.chunks_exact(HAMMING_WORDS_PER_STEP);
    let query_tail = query_steps.remainder();
    let row_tail = row_steps.remainder();
    for (query_step, row_step) in query_steps.zip(row_steps) {
        for lane in 0..HAMMING_WORDS_PER_STEP {
            counts[lane] += (query_step[lane] ^ row_step[lane]).count_ones();
        }
    }
    let tail_count: u32 = query_tail
        .iter()
        .zip(row_tail)
        .map(|(query_word, row_word)| (query_word ^ row_word).count_ones())
        .sum();
    counts.iter().sum::<u32>() + tail_count
}

/// Writes `out[i] = popcount(query XOR row i)` for row-major `codes` of `query.len()` words per
/// row.
///
/// Panics if `codes.len() != out.len() * query.len()`.
pub fn hamming_distances(query: &[u64], codes: &[u64], out: &mut [u32]) {
    assert_eq!(
        Some(codes.len()),
        out.len().checked_mul(query.len()),
        "hamming_distances: codes.len() must be out.len() * query.len()"
    );
    if query.is_empty() {
        out.fill(0);
        return;
    }
    for (row, distance) in codes.chunks_exact(query.len()).zip(out.iter_mut()) {
        *distance = hamming_distance(query, row);
    }
}

/// Writes `out[i] = popcount(query XOR row rows[i])` for row-major `codes` of `query.len()`
/// words per row.
///
/// Panics if `rows.len() != out.len()`, if `codes.len()` is not a multiple of `query.len()`, or
/// if a row is out of range. An empty query gives distance 0 for every requested row.
pub fn hamming_distances_gather(query: &[u64], codes: &[u64], rows: &[u32], out: &mut [u32]) {
    assert_eq!(
        rows.len(),
        out.len(),
        "hamming_distances_gather: rows and out lengths differ"
    );
    if query.is_empty() {
        out.fill(0);
        return;
    }
    let num_words = query.len();
    assert_eq!(
        codes.len() % num_words,
        0,
        "hamming_distances_gather: ragged codes"
    );
    for (&row, distance) in rows.iter().zip(out.iter_mut()) {
        let start = row as usize * num_words;
        *distance = hamming_distance(query, &codes[start..start + num_words]);
    }
}

/// Returns the code of one vector under `slot`: the bit field selected from the (possibly
/// straddling) 16-bit window of plane bytes.
#[inline(always)]
pub(crate) fn decode_window(high_byte: u8, low_byte: u8, shift: u8, width: u8) -> u8 {
    let window: u16 = (high_byte as u16) << 8 | low_byte as u16;
    let mask: u16 = (1u16 << width) - 1;
    ((window >> shift) & mask) as u8
}

/// Returns the byte plane `plane` (all `num_vectors` bytes of it).
#[inline(always)]
fn plane_bytes(planes: &[u8], num_vectors: usize, plane: u32) -> &[u8] {
    let start = plane as usize * num_vectors;
    &planes[start..start + num_vectors]
}

/// Writes the code of dimension `slot` for every vector in `rows` into `out`.
///
/// Panics if `rows.len() != out.len()` or if the slot or a row lies outside the planes.
pub fn extract_codes(
    planes: &[u8],
    num_vectors: usize,
    slot: &DimSlot,
    rows: &[u32],
    out: &mut [u8],
) {
    assert_eq!(
        rows.len(),
        out.len(),
        "extract_codes: rows and out lengths differ"
    );
    assert!(
        (1..=8).contains(&slot.width),
        "extract_codes: width must be in 1..=8"
    );
    assert!(
        slot.shift <= 16 - slot.width,
        "extract_codes: shift + width exceeds 16 bits"
    );
    if rows.is_empty() {
        return;
    }
    let high_plane = plane_bytes(planes, num_vectors, slot.plane);
    if slot.straddles {
        let low_plane = plane_bytes(planes, num_vectors, slot.plane + 1);
        for (&row, code) in rows.iter().zip(out.iter_mut()) {
            let row = row as usize;
            *code = decode_window(high_plane[row], low_plane[row], slot.shift, slot.width);
        }
    } else {
        for (&row, code) in rows.iter().zip(out.iter_mut()) {
            *code = decode_window(high_plane[row as usize], 0, slot.shift, slot.width);
        }
    }
}

/// Writes `out[i] = Σ_slots table[slot.table_offset + code(slot, rows[i])]`, overwriting `out`.
///
/// Rows are processed in chunks of [`ADC_CHUNK_ROWS`] and, inside a chunk, slot by slot, so the
/// partial sums stay in L1 and each plane is walked in row order. Every row's sum adds the slots
/// in slice order, which the ISA paths reproduce exactly.
///
/// Panics if `rows.len() != out.len()` or if a slot, table entry or row lies out of range.
pub fn adc_lower_bounds(
    planes: &[u8],
    num_vectors: usize,
    slots: &[DimSlot],
    table: &[f32],
    rows: &[u32],
    out: &mut [f32],
) {
    assert_eq!(
        rows.len(),
        out.len(),
        "adc_lower_bounds: rows and out lengths differ"
    );
    if rows.is_empty() {
        return;
    }
    for slot in slots {
        assert!(
            (1..=8).contains(&slot.width),
            "adc_lower_bounds: width must be in 1..=8"
        );
        assert!(
            slot.shift <= 16 - slot.width,
            "adc_lower_bounds: shift + width exceeds 16 bits"
        );
    }
    // A 256-entry copy of the slot's table lets `code as usize` index without a bounds check;
    // only the first 2^width entries are (re)written per slot, and no code can exceed them.
    let mut slot_table = [0.0f32; 256];
    for (row_chunk, sum_chunk) in rows
        .chunks(ADC_CHUNK_ROWS)
        .zip(out.chunks_mut(ADC_CHUNK_ROWS))
    {
        sum_chunk.fill(0.0);
        for slot in slots {
            let num_codes = 1usize << slot.width;
            let table_start = slot.table_offset as usize;
            slot_table[..num_codes].copy_from_slice(&table[table_start..table_start + num_codes]);
            let high_plane = plane_bytes(planes, num_vectors, slot.plane);
            if slot.straddles {
                let low_plane = plane_bytes(planes, num_vectors, slot.plane + 1);
                for (&row, sum) in row_chunk.iter().zip(sum_chunk.iter_mut()) {
                    let row = row as usize;
                    let code =
                        decode_window(high_plane[row], low_plane[row], slot.shift, slot.width);
                    *sum += slot_table[code as usize];
                }
            } else {
                for (&row, sum) in row_chunk.iter().zip(sum_chunk.iter_mut()) {
                    let code = decode_window(high_plane[row as usize], 0, slot.shift, slot.width);
                    *sum += slot_table[code as usize];
                }
            }
        }
    }
}

/// Adds the lanes of an accumulator in a fixed pairwise order.
#[inline(always)]
fn sum_lanes(lanes: [f32; F32_LANES]) -> f32 {
    let quads = [
        lanes[0] + lanes[4],
        lanes[1] + lanes[5],
        lanes[2] + lanes[6],
        lanes[3] + lanes[7],
    ];
    (quads[0] + quads[2]) + (quads[1] + quads[3])
}

/// Returns `Σ (a[i] - b[i])²`. Panics if the lengths differ.
pub fn l2_squared_f32(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "l2_squared_f32: length mismatch");
    let mut lanes = [0.0f32; F32_LANES];
    let a_steps = a.chunks_exact(F32_LANES);
    let b_steps = b.chunks_exact(F32_LANES);
    let a_tail = a_steps.remainder();
    let b_tail = b_steps.remainder();
    for (a_step, b_step) in a_steps.zip(b_steps) {
        for lane in 0..F32_LANES {
            let difference = a_step[lane] - b_step[lane];
            lanes[lane] += difference * difference;
        }
    }
    let tail: f32 = a_tail
        .iter()
        .zip(b_tail)
        .map(|(x, y)| (x - y) * (x - y))
        .sum();
    sum_lanes(lanes) + tail
}

/// Returns `Σ a[i]·b[i]`. Panics if the lengths differ.
pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "dot_f32: length mismatch");
    let mut lanes = [0.0f32; F32_LANES];
    let a_steps = a.chunks_exact(F32_LANES);
    let b_steps = b.chunks_exact(F32_LANES);
    let a_tail = a_steps.remainder();
    let b_tail = b_steps.remainder();
    for (a_step, b_step) in a_steps.zip(b_steps) {
        for lane in 0..F32_LANES {
            lanes[lane] += a_step[lane] * b_step[lane];
        }
    }
    let tail: f32 = a_tail.iter().zip(b_tail).map(|(x, y)| x * y).sum();
    sum_lanes(lanes) + tail
}

/// Applies `distance(query, row)` to every requested row of row-major `vectors`.
fn gather_rows(
    query: &[f32],
    vectors: &[f32],
    rows: &[u32],
    out: &mut [f32],
    distance: fn(&[f32], &[f32]) -> f32,
) {
    assert_eq!(rows.len(), out.len(), "gather: rows and out lengths differ");
    let dim = query.len();
    if dim == 0 {
        out.fill(0.0);
        return;
    }
    assert_eq!(
        vectors.len() % dim,
        0,
        "gather: vectors.len() is not a multiple of dim"
    );
    for (&row, result) in rows.iter().zip(out.iter_mut()) {
        let start = row as usize * dim;
        *result = distance(query, &vectors[start..start + dim]);
    }
}

/// Writes `out[i] = l2_squared_f32(query, row rows[i])` for row-major `vectors` of
/// `query.len()` floats per row.
///
/// Panics if `rows.len() != out.len()`, if `vectors` is ragged, or if a row is out of range.
pub fn l2_squared_gather(query: &[f32], vectors: &[f32], rows: &[u32], out: &mut [f32]) {
    gather_rows(query, vectors, rows, out, l2_squared_f32);
}

/// Writes `out[i] = l2_squared_f32(query, row i)` for every row of row-major `vectors`.
///
/// Panics if `vectors.len() != out.len() * query.len()`.
pub fn l2_squared_rows(query: &[f32], vectors: &[f32], out: &mut [f32]) {
    assert_eq!(
        vectors.len(),
        out.len() * query.len(),
        "rows: shape mismatch"
    );
    if query.is_empty() {
        out.fill(0.0);
        return;
    }
    for (row, result) in vectors.chunks_exact(query.len()).zip(out.iter_mut()) {
        *result = l2_squared_f32(query, row);
    }
}

/// Writes `out[i] = dot_f32(query, row rows[i])` for row-major `vectors` of `query.len()`
/// floats per row.
///
/// Panics if `rows.len() != out.len()`, if `vectors` is ragged, or if a row is out of range.
pub fn dot_gather(query: &[f32], vectors: &[f32], rows: &[u32], out: &mut [f32]) {
    gather_rows(query, vectors, rows, out, dot_f32);
}

/// Writes `out[i] = sum over j of weights[j] * codes[rows[i] * stride + j]` for row-major
/// `codes` of `stride = weights.len()` bytes per row (8-bit codes, weighted in `f32`).
///
/// Panics if `rows.len() != out.len()`, if `codes` is not whole rows, or if a row is out of
/// range.
pub fn dot_u8_gather(weights: &[f32], codes: &[u8], rows: &[u32], out: &mut [f32]) {
    assert_eq!(rows.len(), out.len(), "gather: rows and out lengths differ");
    let stride = weights.len();
    if stride == 0 {
        out.fill(0.0);
        return;
    }
    assert_eq!(codes.len() % stride, 0, "gather: codes are not whole rows");
    for (&row, result) in rows.iter().zip(out.iter_mut()) {
        let start = row as usize * stride;
        *result = codes[start..start + stride]
            .iter()
            .zip(weights)
            .map(|(&code, &weight)| f32::from(code) * weight)
            .sum();
    }
}

/// Writes, for every row of every fast-scan block of `codes`, the sum over dimensions of
/// `tables[d * 16 + code]` (layout in [`crate::fastscan_sums`]). Sums are exact integers, so
/// every path returns identical values.
pub fn fastscan_sums(codes: &[u8], tables: &[u8], out: &mut [u32]) {
    let block_bytes = tables.len();
    if block_bytes == 0 {
        out.fill(0);
        return;
    }
    for (block, sums) in codes
        .chunks_exact(block_bytes)
        .zip(out.chunks_exact_mut(crate::FASTSCAN_BLOCK_ROWS))
    {
        sums.fill(0);
        for (dim_codes, table) in block.chunks_exact(16).zip(tables.chunks_exact(16)) {
            for (lane, &byte) in dim_codes.iter().enumerate() {
                sums[lane] += u32::from(table[usize::from(byte & 0x0f)]);
                sums[lane + 16] += u32::from(table[usize::from(byte >> 4)]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hamming_matches_naive_bit_loop() {
        let query = [0xFFFF_0000_1234_5678u64, 1, 0, u64::MAX, 7];
        let row = [0x0000_FFFF_1234_5678u64, 0, 0, 0, 1];
        let naive: u32 = (0..query.len() * 64)
            .filter(|&bit| ((query[bit / 64] ^ row[bit / 64]) >> (bit % 64)) & 1 == 1)
            .count() as u32;
        assert_eq!(hamming_distance(&query, &row), naive);
        assert_eq!(naive, 32 + 1 + 64 + 2);
    }

    #[test]
    fn hamming_gather_and_batch_agree() {
        let query = [5u64, 9];
        let codes = [5u64, 9, 0, 0, u64::MAX, 1];
        let mut batch = [0u32; 3];
        hamming_distances(&query, &codes, &mut batch);
        let mut gathered = [0u32; 4];
        hamming_distances_gather(&query, &codes, &[2, 0, 1, 2], &mut gathered);
        assert_eq!(batch, [0, 4, 62 + 1]);
        assert_eq!(gathered, [batch[2], batch[0], batch[1], batch[2]]);
    }

    #[test]
    fn empty_query_gives_zero_distances() {
        let mut out = [7u32; 3];
        hamming_distances(&[], &[], &mut out);
        assert_eq!(out, [0; 3]);
        let mut out = [7.0f32; 2];
        l2_squared_gather(&[], &[], &[4, 5], &mut out);
        assert_eq!(out, [0.0; 2]);
    }

    #[test]
    fn decode_window_selects_bit_field() {
        // Window 0b1010_1100_0101_0011: bits 6..=9 (shift 6, width 4) are 0b0001.
        assert_eq!(decode_window(0b1010_1100, 0b0101_0011, 6, 4), 0b0001);
        assert_eq!(decode_window(0xAB, 0xCD, 8, 8), 0xAB);
        assert_eq!(decode_window(0xAB, 0xCD, 0, 8), 0xCD);
        assert_eq!(decode_window(0x80, 0, 15, 1), 1);
    }

    #[test]
    fn float_kernels_match_naive_sums() {
        let a: Vec<f32> = (0..19).map(|i| i as f32 * 0.5).collect();
        let b: Vec<f32> = (0..19).map(|i| 3.0 - i as f32).collect();
        let naive_dot: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        let naive_l2: f32 = a.iter().zip(&b).map(|(x, y)| (x - y) * (x - y)).sum();
        assert!((dot_f32(&a, &b) - naive_dot).abs() <= 1e-4 * naive_dot.abs().max(1.0));
        assert!((l2_squared_f32(&a, &b) - naive_l2).abs() <= 1e-4 * naive_l2.max(1.0));
    }

    #[test]
    fn adc_sums_table_entries_per_slot() {
        // Two vectors, one plane: vector 0 byte 0b1001_0110, vector 1 byte 0b0110_1001.
        let planes = [0b1001_0110u8, 0b0110_1001];
        let slots = [
            DimSlot {
                plane: 0,
                shift: 12,
                width: 4,
                straddles: false,
                table_offset: 0,
            },
            DimSlot {
                plane: 0,
                shift: 8,
                width: 4,
                straddles: false,
                table_offset: 16,
            },
        ];
        let table: Vec<f32> = (0..32).map(|i| i as f32).collect();
        let mut out = [0.0f32; 3];
        adc_lower_bounds(&planes, 2, &slots, &table, &[1, 0, 1], &mut out);
        // Vector 1: codes 0b0110 = 6 and 0b1001 = 9 -> 6 + (16 + 9).
        assert_eq!(out, [31.0, 9.0 + 16.0 + 6.0, 31.0]);
    }
}
