//! Hot kernels of the search path: Hamming distances on sign codes, ADC lower bounds over
//! bit-packed quantized planes, fast-scan sums over 4-bit codes, and f32 L2 / inner product
//! for reranking.
//!
//! Owns: the safe public API, the one-time CPU feature detection, and the once-per-call input
//! validation after which the ISA paths index without bounds checks.
//! Must not: do I/O, allocate per vector, know about segments or codecs beyond the plane layout
//! below, or dispatch per vector pair (the loop over rows always lives inside the ISA function).
//!
//! Layout: [`scalar`] is the reference every other path is tested against and the fallback on
//! every CPU without a dedicated path; `x86_64` holds the AVX2 (+FMA, +POPCNT) paths and
//! `aarch64` the NEON paths (distances, Hamming and fast-scan; the ADC lower bounds stay scalar
//! there).
//! [`active_isa`] names the path in use.
//!
//! Bit-packed planes (the "dimension extraction" layout read by [`adc_lower_bounds`]): each
//! vector's codes form one MSB-first bit string, cut into bytes; byte `p` of every vector is
//! stored together in plane `p`, so one dimension of many vectors is read from one or two
//! contiguous planes:
//!
//! ```text
//! vector i bits : |d0 d0 d0 d1|d1 d1 d1 d2 | d2 d2 d3 d3 ...     (MSB-first, widths 3,4,4,..)
//!                 '--- byte 0 ----------'  '--- byte 1 -- ...
//! planes        : | plane 0: byte 0 of vectors 0..n | plane 1: byte 1 of vectors 0..n | ...
//!                   ^ planes[0 * n + i]                ^ planes[1 * n + i]
//! slot of d1    : plane 0, window = plane0[i] << 8 | plane1[i] (straddles), shift 9, width 4
//! ```

#[cfg(target_arch = "aarch64")]
#[doc(hidden)]
pub mod aarch64;
pub mod scalar;
#[cfg(target_arch = "x86_64")]
#[doc(hidden)]
pub mod x86_64;

use std::sync::OnceLock;

/// Number of rows whose ADC partial sums are kept while the slots are walked: 256 f32 sums are
/// 1 KiB, which stays in L1 next to the plane bytes being read.
pub const ADC_CHUNK_ROWS: usize = 256;

/// Layout of one quantized dimension inside bit-packed byte planes.
///
/// The code of vector `i` is read from the 16-bit window
/// `planes[plane * n + i] << 8 | (if straddles { planes[(plane + 1) * n + i] } else { 0 })`
/// as `(window >> shift) & ((1 << width) - 1)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DimSlot {
    /// Plane holding the high byte of the window.
    pub plane: u32,
    /// Right shift applied to the 16-bit window; at most `16 - width`.
    pub shift: u8,
    /// Number of bits of the code, 1..=8.
    pub width: u8,
    /// Whether the code continues into plane `plane + 1` (the window's low byte).
    pub straddles: bool,
    /// Index of this dimension's first entry (code 0) in the ADC table; the dimension owns
    /// `2^width` consecutive entries.
    pub table_offset: u32,
}

/// The instruction set a call is dispatched to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Isa {
    Scalar,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    #[cfg(target_arch = "aarch64")]
    Neon,
}

/// Returns the best available instruction set, detected on first use and cached.
fn detected_isa() -> Isa {
    static DETECTED: OnceLock<Isa> = OnceLock::new();
    *DETECTED.get_or_init(detect_isa)
}

fn detect_isa() -> Isa {
    // One level for every kernel: every CPU with AVX2 also has FMA and POPCNT in practice, and a
    // single level keeps the dispatch and the reports simple.
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2")
        && is_x86_feature_detected!("fma")
        && is_x86_feature_detected!("popcnt")
    {
        return Isa::Avx2;
    }
    #[cfg(target_arch = "aarch64")]
    if std::arch::is_aarch64_feature_detected!("neon") {
        return Isa::Neon;
    }
    Isa::Scalar
}

/// Returns the name of the kernel path in use on this CPU: `"avx2"`, `"neon"` or `"scalar"`.
pub fn active_isa() -> &'static str {
    match detected_isa() {
        Isa::Scalar => "scalar",
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => "avx2",
        #[cfg(target_arch = "aarch64")]
        Isa::Neon => "neon",
    }
}

/// Returns the largest requested row, or `None` when there is none.
fn max_row(rows: &[u32]) -> Option<usize> {
    rows.iter().copied().max().map(|row| row as usize)
}

/// Writes `out[i] = popcount(query XOR row i)` for row-major `codes` of `query.len()` u64 words
/// per row.
///
/// The distance is a u32: it cannot overflow below 2^26 words (4 Gbit) per code, far beyond
/// any realistic code width.
///
/// Panics if `codes.len() != out.len() * query.len()`.
pub fn hamming_distances(query: &[u64], codes: &[u64], out: &mut [u32]) {
    assert_eq!(
        Some(codes.len()),
        out.len().checked_mul(query.len()),
        "hamming_distances: codes.len() must be out.len() * query.len()"
    );
    match detected_isa() {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => {
            // SAFETY: AVX2 and POPCNT were detected; the shape was asserted just above.
            unsafe { x86_64::hamming_distances_avx2(query, codes, out) }
        }
        #[cfg(target_arch = "aarch64")]
        Isa::Neon => {
            // SAFETY: NEON was detected; the shape was asserted just above.
            unsafe { aarch64::hamming_distances_neon(query, codes, out) }
        }
        Isa::Scalar => scalar::hamming_distances(query, codes, out),
    }
}

/// Writes `out[i] = popcount(query XOR row rows[i])` for row-major `codes` of `query.len()` u64
/// words per row. An empty query gives distance 0 for every requested row.
///
/// Panics if `rows.len() != out.len()`, if `codes.len()` is not a multiple of `query.len()`, or
/// if a row is out of range.
pub fn hamming_distances_gather(query: &[u64], codes: &[u64], rows: &[u32], out: &mut [u32]) {
    assert_eq!(
        rows.len(),
        out.len(),
        "hamming_distances_gather: rows.len() != out.len()"
    );
    if query.is_empty() {
        assert!(
            codes.is_empty(),
            "hamming_distances_gather: empty query but non-empty codes"
        );
        out.fill(0);
        return;
    }
    let num_words = query.len();
    assert_eq!(
        codes.len() % num_words,
        0,
        "hamming_distances_gather: codes.len() is not a multiple of query.len()"
    );
    let num_rows = codes.len() / num_words;
    if let Some(max_row) = max_row(rows) {
        assert!(
            max_row < num_rows,
            "hamming_distances_gather: row {max_row} out of range for {num_rows} rows"
        );
    }
    match detected_isa() {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => {
            // SAFETY: AVX2 and POPCNT were detected; the query is non-empty, codes are whole
            // rows and every row is in range (checked just above).
            unsafe { x86_64::hamming_distances_gather_avx2(query, codes, rows, out) }
        }
        #[cfg(target_arch = "aarch64")]
        Isa::Neon => {
            // SAFETY: NEON was detected; the query is not empty and every row was validated
            // just above.
            unsafe { aarch64::hamming_distances_gather_neon(query, codes, rows, out) }
        }
        Isa::Scalar => scalar::hamming_distances_gather(query, codes, rows, out),
    }
}

/// Panics unless `slot` can be decoded from `num_planes` planes with a table of `table_len`
/// entries. `num_planes` is `None` when there are no vectors (and so nothing to read);
/// `table_len` is `None` when no table is read.
fn validate_slot(
    kernel: &str,
    slot_index: usize,
    slot: &DimSlot,
    num_planes: Option<usize>,
    table_len: Option<usize>,
) {
    let DimSlot {
        plane,
        shift,
        width,
        straddles,
        table_offset,
    } = *slot;
    assert!(
        (1..=8).contains(&width),
        "{kernel}: slot {slot_index} has width {width}, expected 1..=8"
    );
    assert!(
        shift <= 16 - width,
        "{kernel}: slot {slot_index} has shift {shift} + width {width} beyond the 16-bit window"
    );
    if let Some(num_planes) = num_planes {
        let last_plane = plane as usize + straddles as usize;
        assert!(
            last_plane < num_planes,
            "{kernel}: slot {slot_index} reads plane {last_plane} but there are {num_planes} planes"
        );
    }
    if let Some(table_len) = table_len {
        let table_end = table_offset as usize + (1usize << width);
        assert!(
            table_end <= table_len,
            "{kernel}: slot {slot_index} needs table entries up to {table_end}, table has \
             {table_len}"
        );
    }
}

/// Panics unless `planes` is whole planes of `num_vectors` bytes and every row is a vector;
/// returns the number of planes (`None` when there are no vectors).
fn validate_planes_and_rows(
    kernel: &str,
    planes: &[u8],
    num_vectors: usize,
    rows: &[u32],
) -> Option<usize> {
    if num_vectors == 0 {
        assert!(
            planes.is_empty(),
            "{kernel}: num_vectors is 0 but planes are not empty"
        );
        assert!(
            rows.is_empty(),
            "{kernel}: rows requested but num_vectors is 0"
        );
        return None;
    }
    assert_eq!(
        planes.len() % num_vectors,
        0,
        "{kernel}: planes.len() is not a multiple of num_vectors"
    );
    if let Some(max_row) = max_row(rows) {
        assert!(
            max_row < num_vectors,
            "{kernel}: row {max_row} out of range for {num_vectors} vectors"
        );
    }
    Some(planes.len() / num_vectors)
}

/// Writes the code of dimension `slot` for every vector in `rows` into `out` (one dimension
/// extracted for many vectors at once).
///
/// Panics if `out.len() != rows.len()`, if the slot is malformed or reads a missing plane, or if
/// a row is out of range.
pub fn extract_codes(
    planes: &[u8],
    num_vectors: usize,
    slot: &DimSlot,
    rows: &[u32],
    out: &mut [u8],
) {
    const KERNEL: &str = "extract_codes";
    assert_eq!(rows.len(), out.len(), "{KERNEL}: rows.len() != out.len()");
    let num_planes = validate_planes_and_rows(KERNEL, planes, num_vectors, rows);
    validate_slot(KERNEL, 0, slot, num_planes, None);
    scalar::extract_codes(planes, num_vectors, slot, rows, out);
}

/// Writes `out[i] = Σ_slots table[slot.table_offset + code(slot, rows[i])]`, overwriting `out`.
///
/// Rows need not be sorted, but sorted rows walk every plane forward. Every row's sum adds the
/// slots in slice order on every path, so results are identical across ISAs.
///
/// Panics (once per call, before any work) if `out.len() != rows.len()`, if `planes` is not
/// whole planes of `num_vectors` bytes, if a slot has a width outside 1..=8, a shift beyond
/// `16 - width`, a missing plane or table entries past the end of `table`, or if a row is out
/// of range.
pub fn adc_lower_bounds(
    planes: &[u8],
    num_vectors: usize,
    slots: &[DimSlot],
    table: &[f32],
    rows: &[u32],
    out: &mut [f32],
) {
    const KERNEL: &str = "adc_lower_bounds";
    assert_eq!(rows.len(), out.len(), "{KERNEL}: rows.len() != out.len()");
    let num_planes = validate_planes_and_rows(KERNEL, planes, num_vectors, rows);
    for (slot_index, slot) in slots.iter().enumerate() {
        validate_slot(KERNEL, slot_index, slot, num_planes, Some(table.len()));
    }
    match detected_isa() {
        // The AVX2 gathers take i32 byte offsets, so planes longer than that stay scalar.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 if num_vectors <= i32::MAX as usize => {
            // SAFETY: AVX2 was detected; planes, slots, table and rows were validated just
            // above and num_vectors fits an i32 offset.
            unsafe { x86_64::adc_lower_bounds_avx2(planes, num_vectors, slots, table, rows, out) }
        }
        _ => scalar::adc_lower_bounds(planes, num_vectors, slots, table, rows, out),
    }
}

/// Rows of one fast-scan block.
pub const FASTSCAN_BLOCK_ROWS: usize = 32;

/// Returns the bytes of one fast-scan block (and of one query's tables) for `dim` 4-bit codes
/// per row: 16 per dimension, the dimensions padded to an even count so that one AVX2 register
/// holds two of them.
pub fn fastscan_block_bytes(dim: usize) -> usize {
    dim.next_multiple_of(2) * 16
}

/// Fast-scan sums (the FastScan / Quick ADC technique): writes, for every row of every block of
/// `codes`, `Σ_d tables[d * 16 + code_d]`, the query's 8-bit table entry for the row's 4-bit
/// code of each dimension. The tables sit in SIMD registers and are looked up with byte
/// shuffles (`vpshufb` on AVX2, `tbl` on NEON), 32 rows per block.
///
/// Layout: a block holds 32 rows and is `tables.len()` bytes: 16 bytes per (padded) dimension,
/// byte `j` of dimension `d` holding the code of row `j` in its low nibble and of row `j + 16`
/// in its high nibble:
///
/// ```text
/// block : | dim 0: 16 bytes | dim 1: 16 bytes | dim 2 ... |       (dims padded to even)
/// byte j of dim d : row j + 16 (high nibble) | row j (low nibble)
/// tables: | dim 0: 16 entries | dim 1: 16 entries | ...           (one u8 per code)
/// out   : | block 0: 32 sums | block 1: 32 sums | ...
/// ```
///
/// Sums are exact u32 on every path (at most 255 per dimension).
///
/// Panics if `tables.len()` is not a multiple of 32 (16 entries for an even number of
/// dimensions), if `codes` is not whole blocks, or if `out.len()` is not 32 per block.
pub fn fastscan_sums(codes: &[u8], tables: &[u8], out: &mut [u32]) {
    const KERNEL: &str = "fastscan_sums";
    let block_bytes = tables.len();
    assert_eq!(
        block_bytes % 32,
        0,
        "{KERNEL}: tables.len() must be 16 per dimension, dimensions padded to even"
    );
    let num_blocks = if block_bytes == 0 {
        assert!(codes.is_empty(), "{KERNEL}: codes without tables");
        out.len() / FASTSCAN_BLOCK_ROWS
    } else {
        assert_eq!(
            codes.len() % block_bytes,
            0,
            "{KERNEL}: codes.len() is not whole blocks of tables.len() bytes"
        );
        codes.len() / block_bytes
    };
    assert_eq!(
        out.len(),
        num_blocks * FASTSCAN_BLOCK_ROWS,
        "{KERNEL}: out.len() must be 32 per block"
    );
    match detected_isa() {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 if block_bytes > 0 => {
            // SAFETY: AVX2 was detected; codes are whole blocks of tables.len() bytes, tables
            // hold an even number of 16-entry dimensions and out has 32 sums per block.
            unsafe { x86_64::fastscan_sums_avx2(codes, tables, out) }
        }
        #[cfg(target_arch = "aarch64")]
        Isa::Neon if block_bytes > 0 => {
            // SAFETY: NEON was detected; shapes were validated just above.
            unsafe { aarch64::fastscan_sums_neon(codes, tables, out) }
        }
        _ => scalar::fastscan_sums(codes, tables, out),
    }
}

/// Returns `Σ (a[i] - b[i])²`. Panics if the lengths differ.
pub fn l2_squared_f32(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "l2_squared_f32: length mismatch");
    match detected_isa() {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => {
            // SAFETY: AVX2 and FMA were detected; the lengths are equal.
            unsafe { x86_64::l2_squared_f32_avx2(a, b) }
        }
        #[cfg(target_arch = "aarch64")]
        Isa::Neon => {
            // SAFETY: NEON was detected; the lengths are equal.
            unsafe { aarch64::l2_squared_f32_neon(a, b) }
        }
        Isa::Scalar => scalar::l2_squared_f32(a, b),
    }
}

/// Returns `Σ a[i]·b[i]`. Panics if the lengths differ.
pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "dot_f32: length mismatch");
    match detected_isa() {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => {
            // SAFETY: AVX2 and FMA were detected; the lengths are equal.
            unsafe { x86_64::dot_f32_avx2(a, b) }
        }
        #[cfg(target_arch = "aarch64")]
        Isa::Neon => {
            // SAFETY: NEON was detected; the lengths are equal.
            unsafe { aarch64::dot_f32_neon(a, b) }
        }
        Isa::Scalar => scalar::dot_f32(a, b),
    }
}

/// Panics unless `vectors` is whole rows of `query.len()` floats and every row exists.
fn validate_gather(kernel: &str, query: &[f32], vectors: &[f32], rows: &[u32], out_len: usize) {
    assert_eq!(rows.len(), out_len, "{kernel}: rows.len() != out.len()");
    if query.is_empty() {
        assert!(
            vectors.is_empty(),
            "{kernel}: empty query but non-empty vectors"
        );
        return;
    }
    let dim = query.len();
    assert_eq!(
        vectors.len() % dim,
        0,
        "{kernel}: vectors.len() is not a multiple of query.len()"
    );
    let num_rows = vectors.len() / dim;
    if let Some(max_row) = max_row(rows) {
        assert!(
            max_row < num_rows,
            "{kernel}: row {max_row} out of range for {num_rows} rows"
        );
    }
}

/// Writes `out[i] = l2_squared_f32(query, row rows[i])` for row-major `vectors` of
/// `query.len()` floats per row. An empty query gives 0 for every requested row.
///
/// Panics if `rows.len() != out.len()`, if `vectors` is not whole rows, or if a row is out of
/// range.
pub fn l2_squared_gather(query: &[f32], vectors: &[f32], rows: &[u32], out: &mut [f32]) {
    validate_gather("l2_squared_gather", query, vectors, rows, out.len());
    match detected_isa() {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => {
            // SAFETY: AVX2 and FMA were detected; shapes and rows were validated just above.
            unsafe { x86_64::l2_squared_gather_avx2(query, vectors, rows, out) }
        }
        #[cfg(target_arch = "aarch64")]
        Isa::Neon => {
            // SAFETY: NEON was detected; shapes and rows were validated just above.
            unsafe { aarch64::l2_squared_gather_neon(query, vectors, rows, out) }
        }
        Isa::Scalar => scalar::l2_squared_gather(query, vectors, rows, out),
    }
}

/// Writes `out[i] = dot_f32(query, row rows[i])` for row-major `vectors` of `query.len()`
/// floats per row. An empty query gives 0 for every requested row.
///
/// Panics if `rows.len() != out.len()`, if `vectors` is not whole rows, or if a row is out of
/// range.
pub fn dot_gather(query: &[f32], vectors: &[f32], rows: &[u32], out: &mut [f32]) {
    validate_gather("dot_gather", query, vectors, rows, out.len());
    match detected_isa() {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => {
            // SAFETY: AVX2 and FMA were detected; shapes and rows were validated just above.
            unsafe { x86_64::dot_gather_avx2(query, vectors, rows, out) }
        }
        #[cfg(target_arch = "aarch64")]
        Isa::Neon => {
            // SAFETY: NEON was detected; shapes and rows were validated just above.
            unsafe { aarch64::dot_gather_neon(query, vectors, rows, out) }
        }
        Isa::Scalar => scalar::dot_gather(query, vectors, rows, out),
    }
}

/// Writes `out[i] = l2_squared_f32(query, row i)` for every row of row-major `vectors` (the
/// distances of a query to a list of centroids, in one call instead of one per centroid). An
/// empty query gives 0 for every row.
///
/// Panics if `vectors.len() != out.len() * query.len()`.
pub fn l2_squared_rows(query: &[f32], vectors: &[f32], out: &mut [f32]) {
    assert_eq!(
        vectors.len(),
        out.len() * query.len(),
        "l2_squared_rows: vectors are not out.len() rows of query.len()"
    );
    if query.is_empty() {
        out.fill(0.0);
        return;
    }
    match detected_isa() {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => {
            // SAFETY: AVX2 and FMA were detected; the shapes were validated just above.
            unsafe { x86_64::l2_squared_rows_avx2(query, vectors, out) }
        }
        #[cfg(target_arch = "aarch64")]
        Isa::Neon => {
            // SAFETY: NEON was detected; the shapes were validated just above.
            unsafe { aarch64::l2_squared_rows_neon(query, vectors, out) }
        }
        Isa::Scalar => scalar::l2_squared_rows(query, vectors, out),
    }
}

/// Writes `out[i] = sum over j of weights[j] * codes[rows[i] * stride + j]` for row-major
/// 8-bit `codes` of `stride = weights.len()` bytes per row: the first pass of scoring scattered
/// rows from one byte per dimension instead of four (a caller's padding bytes get weight 0).
/// An empty `weights` gives 0 for every requested row.
///
/// Panics if `rows.len() != out.len()`, if `codes` is not whole rows, or if a row is out of
/// range.
pub fn dot_u8_gather(weights: &[f32], codes: &[u8], rows: &[u32], out: &mut [f32]) {
    assert_eq!(
        rows.len(),
        out.len(),
        "dot_u8_gather: rows.len() != out.len()"
    );
    let stride = weights.len();
    if stride == 0 {
        assert!(
            codes.is_empty(),
            "dot_u8_gather: empty weights but non-empty codes"
        );
        out.fill(0.0);
        return;
    }
    assert_eq!(
        codes.len() % stride,
        0,
        "dot_u8_gather: codes.len() is not a multiple of weights.len()"
    );
    let num_rows = codes.len() / stride;
    if let Some(max_row) = max_row(rows) {
        assert!(
            max_row < num_rows,
            "dot_u8_gather: row {max_row} out of range for {num_rows} rows"
        );
    }
    match detected_isa() {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => {
            // SAFETY: AVX2 and FMA were detected; shapes and rows were validated just above.
            unsafe { x86_64::dot_u8_gather_avx2(weights, codes, rows, out) }
        }
        #[cfg(target_arch = "aarch64")]
        Isa::Neon => {
            // SAFETY: NEON was detected; shapes and rows were validated just above.
            unsafe { aarch64::dot_u8_gather_neon(weights, codes, rows, out) }
        }
        Isa::Scalar => scalar::dot_u8_gather(weights, codes, rows, out),
    }
}

#[cfg(test)]
mod tests {
    use bitvec::prelude::*;
    use proptest::prelude::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;

    /// Packs each vector's codes MSB-first into one bit string, cuts it into bytes and
    /// transposes the bytes into planes; returns the planes and the slot of every dimension.
    fn pack_with_bitvec(widths: &[u8], codes: &[Vec<u8>]) -> (Vec<u8>, Vec<DimSlot>) {
        let num_vectors = codes.len();
        let num_bits: usize = widths.iter().map(|&width| width as usize).sum();
        let num_planes = num_bits.div_ceil(8);
        let mut planes = vec![0u8; num_planes * num_vectors];
        for (vector, vector_codes) in codes.iter().enumerate() {
            let mut bits: BitVec<u8, Msb0> = BitVec::new();
            for (&code, &width) in vector_codes.iter().zip(widths) {
                bits.extend_from_bitslice(&code.view_bits::<Msb0>()[8 - width as usize..]);
            }
            bits.resize(num_planes * 8, false);
            for (plane, &byte) in bits.as_raw_slice().iter().enumerate() {
                planes[plane * num_vectors + vector] = byte;
            }
        }
        let mut slots = Vec::with_capacity(widths.len());
        let mut bit_offset = 0usize;
        let mut table_offset = 0u32;
        for &width in widths {
            let offset_in_byte = bit_offset % 8;
            slots.push(DimSlot {
                plane: (bit_offset / 8) as u32,
                shift: (16 - offset_in_byte - width as usize) as u8,
                width,
                straddles: offset_in_byte + width as usize > 8,
                table_offset,
            });
            bit_offset += width as usize;
            table_offset += 1 << width;
        }
        (planes, slots)
    }

    fn random_codes(rng: &mut StdRng, widths: &[u8], num_vectors: usize) -> Vec<Vec<u8>> {
        (0..num_vectors)
            .map(|_| {
                widths
                    .iter()
                    .map(|&width| rng.random_range(0..=u8::MAX >> (8 - width)))
                    .collect()
            })
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn extract_codes_and_adc_match_bitvec_reference(
            widths in prop::collection::vec(1u8..=8, 1..=24),
            num_vectors in 1usize..=20,
            seed: u64,
        ) {
            let mut rng = StdRng::seed_from_u64(seed);
            let codes = random_codes(&mut rng, &widths, num_vectors);
            let (planes, slots) = pack_with_bitvec(&widths, &codes);
            let table_len: usize = widths.iter().map(|&width| 1usize << width).sum();
            let table: Vec<f32> = (0..table_len).map(|_| rng.random_range(0.0f32..4.0)).collect();
            // Unsorted, with repeats, ending on the last vector.
            let rows: Vec<u32> = (0..2 * num_vectors as u32)
                .map(|index| (index * 7 + 3) % num_vectors as u32)
                .chain([num_vectors as u32 - 1])
                .collect();
            for (dim, slot) in slots.iter().enumerate() {
                let mut extracted = vec![0u8; rows.len()];
                extract_codes(&planes, num_vectors, slot, &rows, &mut extracted);
                let expected: Vec<u8> = rows.iter().map(|&row| codes[row as usize][dim]).collect();
                prop_assert_eq!(extracted, expected);
            }
            let mut bounds = vec![f32::NAN; rows.len()];
            adc_lower_bounds(&planes, num_vectors, &slots, &table, &rows, &mut bounds);
            for (&row, &bound) in rows.iter().zip(&bounds) {
                // Same addition order as the kernels, so the sums are identical.
                let mut expected = 0.0f32;
                for (slot, &code) in slots.iter().zip(&codes[row as usize]) {
                    expected += table[slot.table_offset as usize + code as usize];
                }
                prop_assert_eq!(bound.to_bits(), expected.to_bits());
            }
        }

        #[test]
        fn dispatched_kernels_match_scalar(
            num_words in 1usize..=14,
            dim in 1usize..=40,
            num_rows in 1usize..=30,
            seed: u64,
        ) {
            let mut rng = StdRng::seed_from_u64(seed);
            let query: Vec<u64> = (0..num_words).map(|_| rng.random()).collect();
            let codes: Vec<u64> = (0..num_words * num_rows).map(|_| rng.random()).collect();
            let rows: Vec<u32> = (0..num_rows as u32).rev().step_by(2).collect();
            let mut expected = vec![0u32; num_rows];
            let mut actual = vec![0u32; num_rows];
            scalar::hamming_distances(&query, &codes, &mut expected);
            hamming_distances(&query, &codes, &mut actual);
            prop_assert_eq!(&actual, &expected);
            let mut expected = vec![0u32; rows.len()];
            let mut actual = vec![0u32; rows.len()];
            scalar::hamming_distances_gather(&query, &codes, &rows, &mut expected);
            hamming_distances_gather(&query, &codes, &rows, &mut actual);
            prop_assert_eq!(&actual, &expected);

            let float_query: Vec<f32> = (0..dim).map(|_| rng.random_range(-1.0f32..1.0)).collect();
            let vectors: Vec<f32> =
                (0..dim * num_rows).map(|_| rng.random_range(-1.0f32..1.0)).collect();
            let mut l2_out = vec![0.0f32; rows.len()];
            let mut dot_out = vec![0.0f32; rows.len()];
            l2_squared_gather(&float_query, &vectors, &rows, &mut l2_out);
            dot_gather(&float_query, &vectors, &rows, &mut dot_out);
            for (index, &row) in rows.iter().enumerate() {
                let vector = &vectors[row as usize * dim..][..dim];
                let l2 = scalar::l2_squared_f32(&float_query, vector);
                let dot = scalar::dot_f32(&float_query, vector);
                // Terms are at most 4 (l2) and 1 (dot) in magnitude.
                prop_assert!((l2_out[index] - l2).abs() <= 1e-5 * 4.0 * dim as f32);
                prop_assert!((dot_out[index] - dot).abs() <= 1e-5 * dim as f32);
                prop_assert!((l2_squared_f32(&float_query, vector) - l2).abs() <= 1e-5 * 4.0 * dim as f32);
                prop_assert!((dot_f32(&float_query, vector) - dot).abs() <= 1e-5 * dim as f32);
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn l2_squared_rows_match_scalar(
            dim in 0usize..=70,
            num_rows in 0usize..=9,
            seed: u64,
        ) {
            let mut rng = StdRng::seed_from_u64(seed);
            let query: Vec<f32> = (0..dim).map(|_| rng.random_range(-1.0f32..1.0)).collect();
            let vectors: Vec<f32> =
                (0..dim * num_rows).map(|_| rng.random_range(-1.0f32..1.0)).collect();
            let mut actual = vec![f32::NAN; num_rows];
            l2_squared_rows(&query, &vectors, &mut actual);
            for (row, &value) in actual.iter().enumerate() {
                let expected = if dim == 0 {
                    0.0
                } else {
                    scalar::l2_squared_f32(&query, &vectors[row * dim..][..dim])
                };
                // Terms are at most 4 in magnitude.
                prop_assert!((value - expected).abs() <= 1e-5 * 4.0 * dim as f32);
            }
        }

        /// Strides of every remainder modulo the 8 and 16 codes of one SIMD step, codes up to
        /// 255 and weights of both signs.
        #[test]
        fn dot_u8_gather_matches_scalar(
            stride in 0usize..=100,
            num_rows in 1usize..=9,
            seed: u64,
        ) {
            let mut rng = StdRng::seed_from_u64(seed);
            let weights: Vec<f32> = (0..stride).map(|_| rng.random_range(-1.0f32..1.0)).collect();
            let codes: Vec<u8> = (0..stride * num_rows).map(|_| rng.random()).collect();
            let rows: Vec<u32> = (0..2 * num_rows).map(|_| rng.random_range(0..num_rows as u32)).collect();
            let mut expected = vec![0.0f32; rows.len()];
            let mut actual = vec![f32::NAN; rows.len()];
            if stride == 0 {
                dot_u8_gather(&weights, &[], &rows, &mut actual);
                prop_assert!(actual.iter().all(|&value| value == 0.0));
            } else {
                scalar::dot_u8_gather(&weights, &codes, &rows, &mut expected);
                dot_u8_gather(&weights, &codes, &rows, &mut actual);
                for (index, &row) in rows.iter().enumerate() {
                    let exact: f64 = codes[row as usize * stride..][..stride]
                        .iter()
                        .zip(&weights)
                        .map(|(&code, &weight)| f64::from(code) * f64::from(weight))
                        .sum();
                    // Terms are at most 255 in magnitude.
                    let tolerance = 1e-5 * 255.0 * stride as f64;
                    prop_assert!((f64::from(expected[index]) - exact).abs() <= tolerance);
                    prop_assert!((f64::from(actual[index]) - exact).abs() <= tolerance);
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// Dimensions up to 1,100 cross the 16-bit flush of both SIMD paths (256 dimensions on
        /// NEON, 512 on AVX2); tables near 255 would overflow a missing flush.
        #[test]
        fn fastscan_sums_match_scalar(
            dim in 1usize..=1100,
            num_blocks in 0usize..=3,
            high_tables: bool,
            seed: u64,
        ) {
            let mut rng = StdRng::seed_from_u64(seed);
            let block_bytes = fastscan_block_bytes(dim);
            let codes: Vec<u8> = (0..num_blocks * block_bytes).map(|_| rng.random()).collect();
            let tables: Vec<u8> = (0..block_bytes)
                .map(|_| if high_tables { rng.random_range(240..=255) } else { rng.random() })
                .collect();
            let mut expected = vec![u32::MAX; num_blocks * FASTSCAN_BLOCK_ROWS];
            let mut actual = vec![u32::MAX; num_blocks * FASTSCAN_BLOCK_ROWS];
            scalar::fastscan_sums(&codes, &tables, &mut expected);
            fastscan_sums(&codes, &tables, &mut actual);
            prop_assert_eq!(&actual, &expected);
            // The reference itself, row by row from the documented layout.
            for block in 0..num_blocks {
                for row in 0..FASTSCAN_BLOCK_ROWS {
                    let mut sum = 0u32;
                    for d in 0..dim.next_multiple_of(2) {
                        let byte = codes[block * block_bytes + d * 16 + row % 16];
                        let code = if row < 16 { byte & 0x0f } else { byte >> 4 };
                        sum += u32::from(tables[d * 16 + usize::from(code)]);
                    }
                    prop_assert_eq!(expected[block * FASTSCAN_BLOCK_ROWS + row], sum);
                }
            }
        }
    }

    #[test]
    fn fastscan_sums_do_not_overflow_at_the_largest_entries() {
        let dim = 2048;
        let codes = vec![0xffu8; fastscan_block_bytes(dim)];
        let tables = vec![255u8; fastscan_block_bytes(dim)];
        let mut out = vec![0u32; FASTSCAN_BLOCK_ROWS];
        fastscan_sums(&codes, &tables, &mut out);
        assert!(out.iter().all(|&sum| sum == 255 * dim as u32), "{out:?}");
    }

    #[test]
    #[should_panic(expected = "codes.len() is not whole blocks")]
    fn fastscan_rejects_partial_block() {
        let tables = vec![0u8; fastscan_block_bytes(4)];
        let mut out = vec![0u32; FASTSCAN_BLOCK_ROWS];
        fastscan_sums(&vec![0u8; tables.len() - 1], &tables, &mut out);
    }

    #[test]
    #[should_panic(expected = "out.len() must be 32 per block")]
    fn fastscan_rejects_short_output() {
        let tables = vec![0u8; fastscan_block_bytes(4)];
        let mut out = vec![0u32; FASTSCAN_BLOCK_ROWS - 1];
        fastscan_sums(&vec![0u8; tables.len()], &tables, &mut out);
    }

    #[test]
    fn active_isa_names_the_dispatched_path() {
        let isa = active_isa();
        assert!(isa == "avx2" || isa == "neon" || isa == "scalar");
        #[cfg(target_arch = "aarch64")]
        assert_eq!(isa, "neon");
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
            && is_x86_feature_detected!("popcnt")
        {
            assert_eq!(isa, "avx2");
        }
    }

    #[test]
    fn empty_inputs_give_empty_or_zero_outputs() {
        let slot = DimSlot {
            plane: 0,
            shift: 0,
            width: 8,
            straddles: false,
            table_offset: 0,
        };
        let table = [1.0f32; 256];
        let mut bounds: [f32; 0] = [];
        adc_lower_bounds(&[1, 2, 3], 3, &[slot], &table, &[], &mut bounds);
        adc_lower_bounds(&[], 0, &[slot], &table, &[], &mut bounds);
        let mut sums = [5.0f32; 2];
        adc_lower_bounds(&[1, 2, 3], 3, &[], &table, &[2, 0], &mut sums);
        assert_eq!(sums, [0.0, 0.0], "no slots sum to zero");
        extract_codes(&[], 0, &slot, &[], &mut []);
        let mut distances = [9u32; 2];
        hamming_distances_gather(&[], &[], &[4, 1], &mut distances);
        assert_eq!(distances, [0, 0]);
        hamming_distances(&[1], &[], &mut []);
        let mut values = [9.0f32; 1];
        dot_gather(&[], &[], &[3], &mut values);
        assert_eq!(values, [0.0]);
        assert_eq!(dot_f32(&[], &[]), 0.0);
        assert_eq!(l2_squared_f32(&[], &[]), 0.0);
    }

    #[test]
    fn width_8_straddling_into_last_plane_reads_both_bytes() {
        // 2 planes of 5 vectors; vector i has bytes (0x10 + i, 0xA0 + i).
        let planes = [0x10, 0x11, 0x12, 0x13, 0x14, 0xA0, 0xA1, 0xA2, 0xA3, 0xA4];
        let slot = DimSlot {
            plane: 0,
            shift: 4,
            width: 8,
            straddles: true,
            table_offset: 0,
        };
        let mut codes = [0u8; 3];
        extract_codes(&planes, 5, &slot, &[4, 0, 3], &mut codes);
        assert_eq!(codes, [0x4A, 0x0A, 0x3A]);
        let table: Vec<f32> = (0..256).map(|code| code as f32).collect();
        let mut bounds = [0.0f32; 3];
        adc_lower_bounds(&planes, 5, &[slot, slot], &table, &[4, 0, 3], &mut bounds);
        assert_eq!(bounds, [148.0, 20.0, 116.0]);
    }

    fn one_plane_slot() -> DimSlot {
        DimSlot {
            plane: 0,
            shift: 8,
            width: 4,
            straddles: false,
            table_offset: 0,
        }
    }

    #[test]
    #[should_panic(expected = "adc_lower_bounds: row 3 out of range for 3 vectors")]
    fn adc_rejects_row_out_of_range() {
        adc_lower_bounds(
            &[0; 3],
            3,
            &[one_plane_slot()],
            &[0.0; 16],
            &[0, 3],
            &mut [0.0; 2],
        );
    }

    #[test]
    #[should_panic(expected = "adc_lower_bounds: slot 0 reads plane 1 but there are 1 planes")]
    fn adc_rejects_straddle_past_last_plane() {
        let slot = DimSlot {
            straddles: true,
            ..one_plane_slot()
        };
        adc_lower_bounds(&[0; 3], 3, &[slot], &[0.0; 16], &[0], &mut [0.0; 1]);
    }

    #[test]
    #[should_panic(expected = "adc_lower_bounds: slot 1 needs table entries up to 20")]
    fn adc_rejects_short_table() {
        let slot = DimSlot {
            table_offset: 4,
            ..one_plane_slot()
        };
        adc_lower_bounds(
            &[0; 3],
            3,
            &[one_plane_slot(), slot],
            &[0.0; 19],
            &[0],
            &mut [0.0; 1],
        );
    }

    #[test]
    #[should_panic(expected = "adc_lower_bounds: slot 0 has width 9, expected 1..=8")]
    fn adc_rejects_wide_code() {
        let slot = DimSlot {
            width: 9,
            shift: 0,
            ..one_plane_slot()
        };
        adc_lower_bounds(&[0; 3], 3, &[slot], &[0.0; 512], &[0], &mut [0.0; 1]);
    }

    #[test]
    #[should_panic(expected = "beyond the 16-bit window")]
    fn adc_rejects_shift_past_window() {
        let slot = DimSlot {
            shift: 13,
            ..one_plane_slot()
        };
        adc_lower_bounds(&[0; 3], 3, &[slot], &[0.0; 16], &[0], &mut [0.0; 1]);
    }

    #[test]
    #[should_panic(expected = "planes.len() is not a multiple of num_vectors")]
    fn adc_rejects_ragged_planes() {
        adc_lower_bounds(
            &[0; 4],
            3,
            &[one_plane_slot()],
            &[0.0; 16],
            &[0],
            &mut [0.0; 1],
        );
    }

    #[test]
    #[should_panic(expected = "adc_lower_bounds: rows.len() != out.len()")]
    fn adc_rejects_output_length() {
        adc_lower_bounds(
            &[0; 3],
            3,
            &[one_plane_slot()],
            &[0.0; 16],
            &[0],
            &mut [0.0; 2],
        );
    }

    #[test]
    #[should_panic(expected = "extract_codes: row 5 out of range for 3 vectors")]
    fn extract_codes_rejects_row_out_of_range() {
        extract_codes(&[0; 3], 3, &one_plane_slot(), &[5], &mut [0; 1]);
    }

    #[test]
    #[should_panic(expected = "hamming_distances: codes.len() must be out.len() * query.len()")]
    fn hamming_rejects_shape_mismatch() {
        hamming_distances(&[0, 0], &[0; 5], &mut [0; 2]);
    }

    #[test]
    #[should_panic(expected = "hamming_distances_gather: row 2 out of range for 2 rows")]
    fn hamming_gather_rejects_row_out_of_range() {
        hamming_distances_gather(&[0], &[0; 2], &[1, 2], &mut [0; 2]);
    }

    #[test]
    #[should_panic(expected = "l2_squared_gather: row 1 out of range for 1 rows")]
    fn float_gather_rejects_row_out_of_range() {
        l2_squared_gather(&[0.0; 2], &[0.0; 2], &[1], &mut [0.0; 1]);
    }

    #[test]
    #[should_panic(expected = "dot_f32: length mismatch")]
    fn dot_rejects_length_mismatch() {
        dot_f32(&[0.0; 2], &[0.0; 3]);
    }
}
