//! AVX2 (+FMA, +POPCNT) kernels for x86-64.
//!
//! Owns: the `#[target_feature]` implementations behind [`crate::kernels`]; each one runs the
//! whole batch (the loop over rows is inside), so dispatch happens once per call.
//! Must not: validate inputs (the safe wrappers in [`crate::kernels`] do it once per call and
//! state what each function may assume in its `# Safety` section), or be called on a CPU
//! without the features it enables.
//!
//! Hamming uses the vpshufb nibble popcount of Mula, Kurz and Lemire, "Faster Population Counts
//! Using AVX2 Instructions" (2016): across four rows per register for 64-bit codes (5% faster
//! than POPCNT per row), four words per step within a row for codes of 4+ words (about 2x
//! faster than POPCNT per word at 784 bits), and POPCNT per word for 2-3 words. Gathered rows
//! are prefetched a few rows ahead.
//!
//! ADC stages plane bytes: for a chunk of rows and a group of planes, one 32-bit gather per
//! plane and 8 rows copies the needed bytes into a contiguous L1 buffer; every slot then decodes
//! its codes from it with plain loads and looks them up with in-register permutes for widths up
//! to 4 (no memory access) or a float gather for wider codes.

use core::arch::x86_64::*;

use super::{scalar, DimSlot, ADC_CHUNK_ROWS};

/// Number of f32 lanes in one AVX2 register.
const F32_LANES: usize = 8;

/// Number of rows handled per ADC step: one 32-bit lane per row.
const ADC_ROWS_PER_STEP: usize = 8;

/// Returns, per byte of `bytes`, the number of bits set (vpshufb nibble lookup).
///
/// # Safety
/// The CPU must support AVX2.
#[target_feature(enable = "avx2")]
#[inline]
#[allow(unused_unsafe)] // register intrinsics are safe here from Rust 1.87; the MSRV is 1.85
unsafe fn popcount_per_byte(bytes: __m256i) -> __m256i {
    // SAFETY: register-only AVX2 intrinsics; the caller guarantees AVX2.
    unsafe {
        let nibble_counts = _mm256_setr_epi8(
            0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4, //
            0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4,
        );
        let low_nibble_mask = _mm256_set1_epi8(0x0f);
        let low_nibbles = _mm256_and_si256(bytes, low_nibble_mask);
        let high_nibbles = _mm256_and_si256(_mm256_srli_epi16::<4>(bytes), low_nibble_mask);
        _mm256_add_epi8(
            _mm256_shuffle_epi8(nibble_counts, low_nibbles),
            _mm256_shuffle_epi8(nibble_counts, high_nibbles),
        )
    }
}

/// Returns the Hamming distance between `query` and `row` with one POPCNT per word: the
/// scalar reference, compiled here with POPCNT enabled.
///
/// # Safety
/// The CPU must support POPCNT.
#[target_feature(enable = "popcnt")]
#[inline]
unsafe fn row_distance_popcnt(query: &[u64], row: &[u64]) -> u32 {
    scalar::hamming_distance(query, row)
}

/// Number of 4-word steps whose per-byte counts (at most 8 each) are summed in 8-bit counters
/// before they could overflow: 31 * 8 = 248 <= 255. Measured 25% faster at 784 bits than
/// widening to 64 bits after every step.
const MAX_STEPS_PER_BYTE_SUM: usize = 31;

/// Returns the Hamming distance between `query` and `row`: the vpshufb popcount on four words
/// per step, POPCNT on the remaining words.
///
/// # Safety
/// The CPU must support AVX2 and POPCNT, and `row.len() == query.len()`.
#[target_feature(enable = "avx2,popcnt")]
#[inline]
unsafe fn row_distance_avx2(query: &[u64], row: &[u64]) -> u32 {
    debug_assert_eq!(query.len(), row.len());
    let num_steps = query.len() / 4;
    // SAFETY: the loads read words [step * 4, step * 4 + 4) with step < num_steps, inside query
    // and row (equal lengths, caller); the rest are register intrinsics; AVX2 is available.
    let vector_count = unsafe {
        let zero = _mm256_setzero_si256();
        let mut word_counts = zero;
        let mut byte_counts = zero;
        let mut num_steps_in_bytes = 0;
        for step in 0..num_steps {
            if num_steps_in_bytes == MAX_STEPS_PER_BYTE_SUM {
                // vpsadbw adds each word's 8 byte counters into one 64-bit lane.
                word_counts = _mm256_add_epi64(word_counts, _mm256_sad_epu8(byte_counts, zero));
                byte_counts = zero;
                num_steps_in_bytes = 0;
            }
            let query_words = _mm256_loadu_si256(query.as_ptr().add(step * 4).cast());
            let row_words = _mm256_loadu_si256(row.as_ptr().add(step * 4).cast());
            let step_counts = popcount_per_byte(_mm256_xor_si256(query_words, row_words));
            byte_counts = _mm256_add_epi8(byte_counts, step_counts);
            num_steps_in_bytes += 1;
        }
        word_counts = _mm256_add_epi64(word_counts, _mm256_sad_epu8(byte_counts, zero));
        let halves = _mm_add_epi64(
            _mm256_castsi256_si128(word_counts),
            _mm256_extracti128_si256::<1>(word_counts),
        );
        (_mm_cvtsi128_si64(halves) + _mm_extract_epi64::<1>(halves)) as u32
    };
    // At most 3 words: a plain loop (iterator chains here get vectorized with masked loads,
    // measured 30% slower at 784 bits).
    let mut tail_count = 0;
    for word_index in num_steps * 4..query.len() {
        // SAFETY: word_index < query.len() == row.len() (caller).
        let (query_word, row_word) = unsafe {
            (
                *query.get_unchecked(word_index),
                *row.get_unchecked(word_index),
            )
        };
        tail_count += (query_word ^ row_word).count_ones();
    }
    vector_count + tail_count
}

/// Writes the distances of a single-word query to every single-word code, four codes per
/// register.
///
/// # Safety
/// The CPU must support AVX2 and POPCNT, and `codes.len() == out.len()`.
#[target_feature(enable = "avx2,popcnt")]
unsafe fn hamming_single_word_avx2(query_word: u64, codes: &[u64], out: &mut [u32]) {
    debug_assert_eq!(codes.len(), out.len());
    let num_rows = out.len();
    let mut row = 0;
    // SAFETY: every load reads codes[row..row + 8] and every store writes out[row..row + 8],
    // both in bounds since row + 8 <= num_rows == codes.len() == out.len(); the remaining
    // intrinsics are register-only and AVX2 is available (caller).
    unsafe {
        let query_lanes = _mm256_set1_epi64x(query_word as i64);
        let zero = _mm256_setzero_si256();
        // After packing, u32 lanes hold rows [0, 4, 1, 5, 2, 6, 3, 7]; this restores row order.
        let row_order = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
        while row + 8 <= num_rows {
            let first = _mm256_loadu_si256(codes.as_ptr().add(row).cast::<__m256i>());
            let second = _mm256_loadu_si256(codes.as_ptr().add(row + 4).cast::<__m256i>());
            // vpsadbw sums the 8 byte counts of each word into its low 16 bits.
            let first_counts = _mm256_sad_epu8(
                popcount_per_byte(_mm256_xor_si256(first, query_lanes)),
                zero,
            );
            let second_counts = _mm256_sad_epu8(
                popcount_per_byte(_mm256_xor_si256(second, query_lanes)),
                zero,
            );
            let packed = _mm256_or_si256(first_counts, _mm256_slli_epi64::<32>(second_counts));
            let ordered = _mm256_permutevar8x32_epi32(packed, row_order);
            _mm256_storeu_si256(out.as_mut_ptr().add(row).cast::<__m256i>(), ordered);
            row += 8;
        }
    }
    for (distance, &code) in out[row..].iter_mut().zip(&codes[row..]) {
        *distance = (query_word ^ code).count_ones();
    }
}

/// Returns the Hamming distance between `query` and `row`, with the faster method for the
/// code width (measured at 64 and 784 bits).
///
/// # Safety
/// The CPU must support AVX2 and POPCNT, and `row.len() == query.len()`.
#[target_feature(enable = "avx2,popcnt")]
#[inline]
unsafe fn row_distance(query: &[u64], row: &[u64]) -> u32 {
    // SAFETY: same features and length contract as this function's.
    unsafe {
        if query.len() >= 4 {
            row_distance_avx2(query, row)
        } else {
            row_distance_popcnt(query, row)
        }
    }
}

/// Writes `out[i] = popcount(query XOR row i)` for row-major `codes`.
///
/// # Safety
/// The CPU must support AVX2 and POPCNT, and `codes.len() == out.len() * query.len()`.
#[target_feature(enable = "avx2,popcnt")]
pub unsafe fn hamming_distances_avx2(query: &[u64], codes: &[u64], out: &mut [u32]) {
    let num_words = query.len();
    debug_assert_eq!(Some(codes.len()), out.len().checked_mul(num_words));
    match num_words {
        0 => out.fill(0),
        // SAFETY: same features; codes.len() == out.len() when rows are one word (caller).
        1 => unsafe { hamming_single_word_avx2(query[0], codes, out) },
        _ => {
            for (row, distance) in codes.chunks_exact(num_words).zip(out.iter_mut()) {
                // SAFETY: AVX2 and POPCNT are available (caller); rows have num_words words.
                *distance = unsafe { row_distance_avx2(query, row) };
            }
        }
    }
}

/// Writes `out[i] = popcount(query XOR row rows[i])` for row-major `codes`.
///
/// # Safety
/// The CPU must support AVX2 and POPCNT; `query` must be non-empty, `codes.len()` a multiple of
/// `query.len()`, `rows.len() == out.len()` and every row `< codes.len() / query.len()`.
#[target_feature(enable = "avx2,popcnt")]
pub unsafe fn hamming_distances_gather_avx2(
    query: &[u64],
    codes: &[u64],
    rows: &[u32],
    out: &mut [u32],
) {
    let num_words = query.len();
    debug_assert_eq!(rows.len(), out.len());
    if num_words == 1 {
        let query_word = query[0];
        for (&row, distance) in rows.iter().zip(out.iter_mut()) {
            debug_assert!((row as usize) < codes.len());
            // SAFETY: row is in range (caller) and rows are one word.
            let code = unsafe { *codes.get_unchecked(row as usize) };
            *distance = (query_word ^ code).count_ones();
        }
        return;
    }
    for (row_index, (&row, distance)) in rows.iter().zip(out.iter_mut()).enumerate() {
        debug_assert!((row as usize + 1) * num_words <= codes.len());
        if let Some(&ahead) = rows.get(row_index + PREFETCH_ROWS_AHEAD) {
            prefetch_row(
                codes
                    .as_ptr()
                    .wrapping_add(ahead as usize * num_words)
                    .cast(),
                num_words * 8,
            );
        }
        let start = row as usize * num_words;
        // SAFETY: the row is in range (caller), so its num_words words lie inside codes; AVX2
        // and POPCNT are available (caller).
        *distance = unsafe { row_distance(query, codes.get_unchecked(start..start + num_words)) };
    }
}

/// Number of rows between a gathered row and the row prefetched while it is processed: enough
/// to cover a cache miss to L3/DRAM at 10-20 ns per row. Measured on 784-bit codes, 10k rows
/// of 50k: the gathered Hamming loop runs about 2x faster with it.
const PREFETCH_ROWS_AHEAD: usize = 8;

/// Rows of 8-bit codes prefetched ahead: a short row is scored in a few nanoseconds, so the
/// lines must be requested further ahead to arrive in time.
const CODE_PREFETCH_ROWS_AHEAD: usize = 24;

/// Bytes of a row prefetched ahead: long rows are streamed by the hardware prefetcher once
/// their first lines are requested.
const PREFETCH_MAX_BYTES: usize = 256;

/// Hints the CPU to pull the first bytes (at most [`PREFETCH_MAX_BYTES`]) of a row that a
/// gathered loop reads a few iterations later.
#[inline(always)]
#[allow(unused_unsafe)] // _mm_prefetch is safe from Rust 1.87; the MSRV is 1.85
fn prefetch_row(row_start: *const i8, num_bytes: usize) {
    let num_prefetched = num_bytes.min(PREFETCH_MAX_BYTES);
    let mut offset = 0;
    while offset < num_prefetched {
        // SAFETY: a prefetch is a hint that never faults, whatever the address.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(row_start.wrapping_add(offset)) };
        offset += 64;
    }
    if num_prefetched > 0 {
        // The row may start mid-line: also cover its last prefetched byte's line.
        // SAFETY: a prefetch is a hint that never faults, whatever the address.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(row_start.wrapping_add(num_prefetched - 1)) };
    }
}

// How the ADC table of one slot is read (the LOOKUP parameter of `adc_slot_staged_avx2`).
/// Width <= 3: the zero-padded 8 entries sit in one register, read with vpermps.
const LOOKUP_PERMUTE8: u8 = 0;
/// Width 4: two registers of 8 entries, vpermps on both, select on bit 3 of the code.
const LOOKUP_PERMUTE16: u8 = 1;
/// Width >= 5: vgatherdps from the table in memory.
const LOOKUP_GATHER: u8 = 2;

/// Number of planes staged at once: 32 planes x [`ADC_CHUNK_ROWS`] rows = 8 KiB, which stays in
/// L1 next to the partial sums. Measured: 8, 32 and 64 planes perform alike.
const ADC_GROUP_PLANES: usize = 32;

/// A run of consecutive slots whose planes fit the staging buffer together.
struct SlotGroup {
    /// One past the last slot of the group (the group starts where the previous one ended).
    slots_end: usize,
    /// First staged plane.
    first_plane: usize,
    /// Number of staged planes, at most [`ADC_GROUP_PLANES`].
    num_planes: usize,
}

/// Returns the longest run of slots starting at `slots_start` whose planes (including the
/// straddled ones) span at most [`ADC_GROUP_PLANES`] planes; a run has at least one slot.
///
/// Slots laid out in plane order (the codec's layout) form groups that stage each plane once per
/// chunk; any other order is still correct, only restages more.
fn next_slot_group(slots: &[DimSlot], slots_start: usize) -> SlotGroup {
    debug_assert!(slots_start < slots.len());
    let mut first_plane = usize::MAX;
    let mut last_plane = 0;
    let mut slots_end = slots_start;
    for slot in &slots[slots_start..] {
        let slot_first = slot.plane as usize;
        let slot_last = slot_first + slot.straddles as usize;
        let span = last_plane.max(slot_last) - first_plane.min(slot_first) + 1;
        if slots_end > slots_start && span > ADC_GROUP_PLANES {
            break;
        }
        first_plane = first_plane.min(slot_first);
        last_plane = last_plane.max(slot_last);
        slots_end += 1;
    }
    SlotGroup {
        slots_end,
        first_plane,
        num_planes: last_plane + 1 - first_plane,
    }
}

/// Copies byte `row_chunk[j]` of each plane in `first_plane..first_plane + num_planes` to
/// `staged[(plane - first_plane) * ADC_CHUNK_ROWS + j]`, 8 rows per 32-bit gather.
///
/// # Safety
/// The CPU must support AVX2; `row_chunk.len() <= ADC_CHUNK_ROWS`; the planes exist
/// (`(first_plane + num_planes) * num_vectors <= planes.len()`); every row `< num_vectors <=
/// i32::MAX`; `max_row` is the largest row; `num_planes <= ADC_GROUP_PLANES`.
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn stage_plane_bytes_avx2(
    planes: &[u8],
    num_vectors: usize,
    group: &SlotGroup,
    row_chunk: &[u32],
    max_row: usize,
    staged: &mut [u8; ADC_GROUP_PLANES * ADC_CHUNK_ROWS],
) {
    let num_steps = row_chunk.len() / ADC_ROWS_PER_STEP;
    for staged_index in 0..group.num_planes {
        let plane_start = (group.first_plane + staged_index) * num_vectors;
        let staged_plane = &mut staged[staged_index * ADC_CHUNK_ROWS..][..row_chunk.len()];
        // A gather reads 4 bytes per row: only the last 3 rows of the final plane could take it
        // past the end of the buffer, and those chunks copy byte by byte instead.
        let gathers_in_bounds = plane_start + max_row + 4 <= planes.len();
        let mut copied = 0;
        if gathers_in_bounds {
            // SAFETY: each gather reads 4 bytes at plane_start + row <= plane_start + max_row,
            // inside planes by the check above; the row loads read row_chunk[first..first + 8]
            // and the stores write staged_plane[first..first + 8], first + 8 <= len of both.
            // AVX2 is available (caller).
            unsafe {
                let plane_base = planes.as_ptr().add(plane_start).cast::<i32>();
                // Byte 0 of each 32-bit lane to bytes 0..4 of its 128-bit half, then the two
                // halves' first 32 bits side by side.
                let pick_low_bytes = _mm256_setr_epi8(
                    0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, //
                    0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
                );
                let join_halves = _mm256_setr_epi32(0, 4, 1, 1, 1, 1, 1, 1);
                for step in 0..num_steps {
                    let first_row = step * ADC_ROWS_PER_STEP;
                    let offsets = _mm256_loadu_si256(row_chunk.as_ptr().add(first_row).cast());
                    let words = _mm256_i32gather_epi32::<1>(plane_base, offsets);
                    let bytes = _mm256_permutevar8x32_epi32(
                        _mm256_shuffle_epi8(words, pick_low_bytes),
                        join_halves,
                    );
                    _mm_storel_epi64(
                        staged_plane.as_mut_ptr().add(first_row).cast(),
                        _mm256_castsi256_si128(bytes),
                    );
                }
            }
            copied = num_steps * ADC_ROWS_PER_STEP;
        }
        for (byte, &row) in staged_plane[copied..].iter_mut().zip(&row_chunk[copied..]) {
            *byte = planes[plane_start + row as usize];
        }
    }
}

/// Adds one slot's table entries to `sums`, reading the slot's staged plane bytes (`low_bytes`
/// is ignored unless `STRADDLES`), 8 rows per step.
///
/// # Safety
/// The CPU must support AVX2; `high_bytes`, `low_bytes` and `sums` have equal lengths; the slot
/// has width 1..=8, shift <= 16 - width and `table_offset + 2^width <= table.len()`;
/// `LOOKUP` is the constant matching the width (see `adc_lower_bounds_avx2`).
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn adc_slot_staged_avx2<const STRADDLES: bool, const LOOKUP: u8>(
    high_bytes: &[u8],
    low_bytes: &[u8],
    slot: &DimSlot,
    table: &[f32],
    sums: &mut [f32],
) {
    debug_assert!(high_bytes.len() == sums.len() && low_bytes.len() == sums.len());
    let num_codes = 1usize << slot.width;
    let slot_table = &table[slot.table_offset as usize..][..num_codes];
    let mut register_table = [0.0f32; 16];
    let num_register_entries = num_codes.min(register_table.len());
    register_table[..num_register_entries].copy_from_slice(&slot_table[..num_register_entries]);
    let num_steps = sums.len() / ADC_ROWS_PER_STEP;
    // SAFETY: the byte loads read [first_row, first_row + 8) of high_bytes/low_bytes and the
    // sum loads/stores the same range of sums, with first_row + 8 <= sums.len() == their
    // lengths; the table gather reads slot_table[code] with code masked below
    // 2^width == slot_table.len(); register_table holds 16 floats. AVX2 is available (caller).
    unsafe {
        let shift = _mm_cvtsi32_si128(i32::from(slot.shift));
        let code_mask = _mm256_set1_epi32(num_codes as i32 - 1);
        let table_low = _mm256_loadu_ps(register_table.as_ptr());
        let table_high = _mm256_loadu_ps(register_table.as_ptr().add(F32_LANES));
        for step in 0..num_steps {
            let first_row = step * ADC_ROWS_PER_STEP;
            let high =
                _mm256_cvtepu8_epi32(_mm_loadl_epi64(high_bytes.as_ptr().add(first_row).cast()));
            let mut window = _mm256_slli_epi32::<8>(high);
            if STRADDLES {
                let low =
                    _mm256_cvtepu8_epi32(_mm_loadl_epi64(low_bytes.as_ptr().add(first_row).cast()));
                window = _mm256_or_si256(window, low);
            }
            let codes = _mm256_and_si256(_mm256_srl_epi32(window, shift), code_mask);
            let values = if LOOKUP == LOOKUP_PERMUTE8 {
                _mm256_permutevar8x32_ps(table_low, codes)
            } else if LOOKUP == LOOKUP_PERMUTE16 {
                let from_low = _mm256_permutevar8x32_ps(table_low, codes);
                let from_high = _mm256_permutevar8x32_ps(table_high, codes);
                // blendv selects on the sign bit: move code bit 3 there.
                let use_high = _mm256_castsi256_ps(_mm256_slli_epi32::<28>(codes));
                _mm256_blendv_ps(from_low, from_high, use_high)
            } else {
                _mm256_i32gather_ps::<4>(slot_table.as_ptr(), codes)
            };
            let sums_at = sums.as_mut_ptr().add(first_row);
            _mm256_storeu_ps(sums_at, _mm256_add_ps(_mm256_loadu_ps(sums_at), values));
        }
    }
    let tail_start = num_steps * ADC_ROWS_PER_STEP;
    for row in tail_start..sums.len() {
        let low_byte = if STRADDLES { low_bytes[row] } else { 0 };
        let code = scalar::decode_window(high_bytes[row], low_byte, slot.shift, slot.width);
        sums[row] += slot_table[usize::from(code)];
    }
}

/// The signature shared by the `adc_slot_staged_avx2` instances, chosen once per slot and
/// chunk.
type AdcSlotKernel = unsafe fn(&[u8], &[u8], &DimSlot, &[f32], &mut [f32]);

/// Writes the ADC lower bounds of `rows` into `out`, adding slots in slice order exactly like
/// the scalar reference.
///
/// Rows go in chunks of [`ADC_CHUNK_ROWS`]; inside a chunk, slots go in groups spanning at most
/// `ADC_GROUP_PLANES` planes. A group's plane bytes for the chunk's rows are first gathered
/// into a contiguous staging buffer (one gather per plane and 8 rows, shared by every slot
/// reading that plane), then each slot decodes its codes from the staged bytes with plain
/// loads. Measured against gathering plane bytes per slot: 15-25% faster at 50 and 784 dims.
///
/// # Safety
/// The CPU must support AVX2, `num_vectors <= i32::MAX`, and the inputs must have passed the
/// checks of `adc_lower_bounds`: `planes` is whole planes of `num_vectors` bytes, every slot has
/// width 1..=8, shift <= 16 - width, existing planes and table entries, every row
/// `< num_vectors`, and `out.len() == rows.len()`.
#[target_feature(enable = "avx2")]
pub unsafe fn adc_lower_bounds_avx2(
    planes: &[u8],
    num_vectors: usize,
    slots: &[DimSlot],
    table: &[f32],
    rows: &[u32],
    out: &mut [f32],
) {
    debug_assert_eq!(rows.len(), out.len());
    debug_assert!(num_vectors <= i32::MAX as usize);
    let mut staged = [0u8; ADC_GROUP_PLANES * ADC_CHUNK_ROWS];
    for (row_chunk, sum_chunk) in rows
        .chunks(ADC_CHUNK_ROWS)
        .zip(out.chunks_mut(ADC_CHUNK_ROWS))
    {
        sum_chunk.fill(0.0);
        let max_row = row_chunk.iter().copied().fold(0u32, u32::max) as usize;
        let mut slots_start = 0;
        while slots_start < slots.len() {
            let group = next_slot_group(slots, slots_start);
            // SAFETY: AVX2 is available; the chunk has at most ADC_CHUNK_ROWS rows, all below
            // num_vectors <= i32::MAX; the group's planes exist because every slot's planes do
            // (caller) and next_slot_group keeps num_planes <= ADC_GROUP_PLANES.
            unsafe {
                stage_plane_bytes_avx2(planes, num_vectors, &group, row_chunk, max_row, &mut staged)
            };
            for slot in &slots[slots_start..group.slots_end] {
                let staged_plane = |plane: usize| {
                    &staged[(plane - group.first_plane) * ADC_CHUNK_ROWS..][..row_chunk.len()]
                };
                let high_bytes = staged_plane(slot.plane as usize);
                let low_bytes = staged_plane(slot.plane as usize + slot.straddles as usize);
                let slot_kernel: AdcSlotKernel = match (slot.straddles, slot.width) {
                    (false, 1..=3) => adc_slot_staged_avx2::<false, LOOKUP_PERMUTE8>,
                    (false, 4) => adc_slot_staged_avx2::<false, LOOKUP_PERMUTE16>,
                    (false, _) => adc_slot_staged_avx2::<false, LOOKUP_GATHER>,
                    (true, 1..=3) => adc_slot_staged_avx2::<true, LOOKUP_PERMUTE8>,
                    (true, 4) => adc_slot_staged_avx2::<true, LOOKUP_PERMUTE16>,
                    (true, _) => adc_slot_staged_avx2::<true, LOOKUP_GATHER>,
                };
                // SAFETY: AVX2 is available; the staged slices and the sums have the chunk's
                // length; the slot was validated (caller) and LOOKUP matches its width.
                unsafe { slot_kernel(high_bytes, low_bytes, slot, table, sum_chunk) };
            }
            slots_start = group.slots_end;
        }
    }
}

/// Returns the sum of the 8 lanes of `lanes`.
///
/// # Safety
/// The CPU must support AVX2.
#[target_feature(enable = "avx2")]
#[inline]
#[allow(unused_unsafe)] // register intrinsics are safe here from Rust 1.87; the MSRV is 1.85
unsafe fn sum_lanes(lanes: __m256) -> f32 {
    // SAFETY: register-only AVX/SSE intrinsics; the caller guarantees AVX2.
    unsafe {
        let quads = _mm_add_ps(
            _mm256_castps256_ps128(lanes),
            _mm256_extractf128_ps::<1>(lanes),
        );
        let pairs = _mm_add_ps(quads, _mm_movehl_ps(quads, quads));
        let single = _mm_add_ss(pairs, _mm_shuffle_ps::<0b01>(pairs, pairs));
        _mm_cvtss_f32(single)
    }
}

/// Returns `Σ (a[i] - b[i])²` with FMA and four 8-lane accumulators.
///
/// # Safety
/// The CPU must support AVX2 and FMA, and `a.len() == b.len()`.
#[target_feature(enable = "avx2,fma")]
#[inline]
pub unsafe fn l2_squared_f32_avx2(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    let len = a.len().min(b.len());
    let mut index = 0;
    // SAFETY: every load reads [index, index + 8) with index + 8 <= len, inside both slices;
    // AVX2 and FMA are available (caller).
    let vector_sum = unsafe {
        let (a_ptr, b_ptr) = (a.as_ptr(), b.as_ptr());
        let mut accumulators = [_mm256_setzero_ps(); 4];
        while index + 4 * F32_LANES <= len {
            for (lane_block, accumulator) in accumulators.iter_mut().enumerate() {
                let offset = index + lane_block * F32_LANES;
                let difference = _mm256_sub_ps(
                    _mm256_loadu_ps(a_ptr.add(offset)),
                    _mm256_loadu_ps(b_ptr.add(offset)),
                );
                *accumulator = _mm256_fmadd_ps(difference, difference, *accumulator);
            }
            index += 4 * F32_LANES;
        }
        while index + F32_LANES <= len {
            let difference = _mm256_sub_ps(
                _mm256_loadu_ps(a_ptr.add(index)),
                _mm256_loadu_ps(b_ptr.add(index)),
            );
            accumulators[0] = _mm256_fmadd_ps(difference, difference, accumulators[0]);
            index += F32_LANES;
        }
        sum_lanes(_mm256_add_ps(
            _mm256_add_ps(accumulators[0], accumulators[1]),
            _mm256_add_ps(accumulators[2], accumulators[3]),
        ))
    };
    let tail: f32 = a[index..len]
        .iter()
        .zip(&b[index..len])
        .map(|(x, y)| (x - y) * (x - y))
        .sum();
    vector_sum + tail
}

/// Returns `Σ a[i]·b[i]` with FMA and four 8-lane accumulators.
///
/// # Safety
/// The CPU must support AVX2 and FMA, and `a.len() == b.len()`.
#[target_feature(enable = "avx2,fma")]
#[inline]
pub unsafe fn dot_f32_avx2(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    let len = a.len().min(b.len());
    let mut index = 0;
    // SAFETY: every load reads [index, index + 8) with index + 8 <= len, inside both slices;
    // AVX2 and FMA are available (caller).
    let vector_sum = unsafe {
        let (a_ptr, b_ptr) = (a.as_ptr(), b.as_ptr());
        let mut accumulators = [_mm256_setzero_ps(); 4];
        while index + 4 * F32_LANES <= len {
            for (lane_block, accumulator) in accumulators.iter_mut().enumerate() {
                let offset = index + lane_block * F32_LANES;
                *accumulator = _mm256_fmadd_ps(
                    _mm256_loadu_ps(a_ptr.add(offset)),
                    _mm256_loadu_ps(b_ptr.add(offset)),
                    *accumulator,
                );
            }
            index += 4 * F32_LANES;
        }
        while index + F32_LANES <= len {
            accumulators[0] = _mm256_fmadd_ps(
                _mm256_loadu_ps(a_ptr.add(index)),
                _mm256_loadu_ps(b_ptr.add(index)),
                accumulators[0],
            );
            index += F32_LANES;
        }
        sum_lanes(_mm256_add_ps(
            _mm256_add_ps(accumulators[0], accumulators[1]),
            _mm256_add_ps(accumulators[2], accumulators[3]),
        ))
    };
    let tail: f32 = a[index..len]
        .iter()
        .zip(&b[index..len])
        .map(|(x, y)| x * y)
        .sum();
    vector_sum + tail
}

/// Writes `out[i] = l2_squared(query, row rows[i])` for row-major `vectors`.
///
/// # Safety
/// The CPU must support AVX2 and FMA; `rows.len() == out.len()`; and either `query` is empty or
/// every row satisfies `(row + 1) * query.len() <= vectors.len()`.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn l2_squared_gather_avx2(
    query: &[f32],
    vectors: &[f32],
    rows: &[u32],
    out: &mut [f32],
) {
    let dim = query.len();
    for (row_index, (&row, result)) in rows.iter().zip(out.iter_mut()).enumerate() {
        if let Some(&ahead) = rows.get(row_index + PREFETCH_ROWS_AHEAD) {
            prefetch_row(
                vectors.as_ptr().wrapping_add(ahead as usize * dim).cast(),
                dim * 4,
            );
        }
        let start = row as usize * dim;
        debug_assert!(start + dim <= vectors.len());
        // SAFETY: the row lies inside vectors (caller), the lengths are equal, and AVX2 and
        // FMA are available.
        *result = unsafe { l2_squared_f32_avx2(query, vectors.get_unchecked(start..start + dim)) };
    }
}

/// Writes `out[i] = l2_squared(query, row i)` for every row of row-major `vectors`.
///
/// # Safety
/// The CPU must support AVX2 and FMA; `query` is not empty and `vectors.len() == out.len() *
/// query.len()`.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn l2_squared_rows_avx2(query: &[f32], vectors: &[f32], out: &mut [f32]) {
    for (row, result) in vectors.chunks_exact(query.len()).zip(out.iter_mut()) {
        // SAFETY: the lengths are equal, and AVX2 and FMA are available (caller).
        *result = unsafe { l2_squared_f32_avx2(query, row) };
    }
}

/// Writes `out[i] = dot(query, row rows[i])` for row-major `vectors`.
///
/// # Safety
/// The CPU must support AVX2 and FMA; `rows.len() == out.len()`; and either `query` is empty or
/// every row satisfies `(row + 1) * query.len() <= vectors.len()`.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn dot_gather_avx2(query: &[f32], vectors: &[f32], rows: &[u32], out: &mut [f32]) {
    let dim = query.len();
    for (row_index, (&row, result)) in rows.iter().zip(out.iter_mut()).enumerate() {
        if let Some(&ahead) = rows.get(row_index + PREFETCH_ROWS_AHEAD) {
            prefetch_row(
                vectors.as_ptr().wrapping_add(ahead as usize * dim).cast(),
                dim * 4,
            );
        }
        let start = row as usize * dim;
        debug_assert!(start + dim <= vectors.len());
        // SAFETY: the row lies inside vectors (caller), the lengths are equal, and AVX2 and
        // FMA are available.
        *result = unsafe { dot_f32_avx2(query, vectors.get_unchecked(start..start + dim)) };
    }
}

/// Writes `out[i] = sum of weights[j] * codes[rows[i] * stride + j]` (`stride =
/// weights.len()`): eight codes at a time are widened to `f32` and multiplied-added.
///
/// # Safety
/// The CPU must support AVX2 and FMA; `rows.len() == out.len()`; `weights` is not empty and
/// every row satisfies `(row + 1) * weights.len() <= codes.len()`.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn dot_u8_gather_avx2(weights: &[f32], codes: &[u8], rows: &[u32], out: &mut [f32]) {
    let stride = weights.len();
    let whole = stride / F32_LANES * F32_LANES;
    for (row_index, (&row, result)) in rows.iter().zip(out.iter_mut()).enumerate() {
        if let Some(&ahead) = rows.get(row_index + CODE_PREFETCH_ROWS_AHEAD) {
            prefetch_row(
                codes.as_ptr().wrapping_add(ahead as usize * stride).cast(),
                stride,
            );
        }
        let start = row as usize * stride;
        debug_assert!(start + stride <= codes.len());
        // SAFETY: every load reads bytes [start + j, start + j + 8) with j + 8 <= stride, inside
        // the row (caller), and weights [j, j + 8) inside weights; AVX2 and FMA are available.
        unsafe {
            let row_ptr = codes.as_ptr().add(start);
            let weights_ptr = weights.as_ptr();
            let widened = |j: usize| {
                _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64(row_ptr.add(j).cast())))
            };
            let (mut even, mut odd) = (_mm256_setzero_ps(), _mm256_setzero_ps());
            let mut j = 0;
            while j + 2 * F32_LANES <= whole {
                even = _mm256_fmadd_ps(widened(j), _mm256_loadu_ps(weights_ptr.add(j)), even);
                let next = j + F32_LANES;
                odd = _mm256_fmadd_ps(widened(next), _mm256_loadu_ps(weights_ptr.add(next)), odd);
                j += 2 * F32_LANES;
            }
            if j < whole {
                even = _mm256_fmadd_ps(widened(j), _mm256_loadu_ps(weights_ptr.add(j)), even);
                j += F32_LANES;
            }
            let mut total = sum_lanes(_mm256_add_ps(even, odd));
            while j < stride {
                total += f32::from(*row_ptr.add(j)) * weights[j];
                j += 1;
            }
            *result = total;
        }
    }
}

/// Table lookups summed in 16-bit lanes before they are widened: the odd-row accumulator adds
/// at most 255 per dimension pair, so 256 pairs stay below 2^16.
const FASTSCAN_PAIRS_PER_FLUSH: usize = 256;

/// Fast-scan sums (layout in [`crate::fastscan_sums`]): one register holds two dimensions'
/// 16-entry tables (one per 128-bit lane) and two dimensions' codes of 32 rows; `vpshufb` looks
/// up the low nibbles (rows 0-15) and the high nibbles (rows 16-31).
///
/// The 8-bit results are summed in 16-bit lanes without unpacking (the FAISS fast-scan trick):
/// one accumulator adds each result as 16-bit words (even row + 256 × odd row, wrapping), the
/// other adds the results shifted right by 8 (the odd rows alone); the even rows are their
/// difference. Every 256 pairs both are widened into 32-bit totals.
///
/// # Safety
/// The CPU must support AVX2; `tables.len()` is a non-zero multiple of 32; `codes` is whole
/// blocks of `tables.len()` bytes; `out.len()` is 32 per block.
#[target_feature(enable = "avx2")]
pub unsafe fn fastscan_sums_avx2(codes: &[u8], tables: &[u8], out: &mut [u32]) {
    let block_bytes = tables.len();
    let num_pairs = block_bytes / 32;
    // SAFETY: every load reads 32 bytes at `pair * 32 < block_bytes` inside one block of
    // `codes` and inside `tables`; every store writes 8 u32 inside the block's 32 sums; AVX2 is
    // available (caller).
    unsafe {
        let low_nibbles = _mm256_set1_epi8(0x0f);
        let tables_ptr = tables.as_ptr();
        for (block, sums) in codes
            .chunks_exact(block_bytes)
            .zip(out.chunks_exact_mut(crate::FASTSCAN_BLOCK_ROWS))
        {
            let codes_ptr = block.as_ptr();
            // u32 totals of rows 2j, 2j + 1, 16 + 2j and 17 + 2j for j in 0..8.
            let mut totals = [_mm256_setzero_si256(); 4];
            let mut pair = 0;
            while pair < num_pairs {
                let end = (pair + FASTSCAN_PAIRS_PER_FLUSH).min(num_pairs);
                let mut low_all = _mm256_setzero_si256();
                let mut low_odd = _mm256_setzero_si256();
                let mut high_all = _mm256_setzero_si256();
                let mut high_odd = _mm256_setzero_si256();
                while pair < end {
                    let packed = _mm256_loadu_si256(codes_ptr.add(pair * 32) as *const __m256i);
                    let table = _mm256_loadu_si256(tables_ptr.add(pair * 32) as *const __m256i);
                    let low = _mm256_shuffle_epi8(table, _mm256_and_si256(packed, low_nibbles));
                    let high = _mm256_shuffle_epi8(
                        table,
                        _mm256_and_si256(_mm256_srli_epi16(packed, 4), low_nibbles),
                    );
                    low_all = _mm256_add_epi16(low_all, low);
                    low_odd = _mm256_add_epi16(low_odd, _mm256_srli_epi16(low, 8));
                    high_all = _mm256_add_epi16(high_all, high);
                    high_odd = _mm256_add_epi16(high_odd, _mm256_srli_epi16(high, 8));
                    pair += 1;
                }
                let parts = [
                    _mm256_sub_epi16(low_all, _mm256_slli_epi16(low_odd, 8)),
                    low_odd,
                    _mm256_sub_epi16(high_all, _mm256_slli_epi16(high_odd, 8)),
                    high_odd,
                ];
                for (total, part) in totals.iter_mut().zip(parts) {
                    // The two 128-bit lanes hold the same rows for the pair's two dimensions.
                    let first = _mm256_cvtepu16_epi32(_mm256_castsi256_si128(part));
                    let second = _mm256_cvtepu16_epi32(_mm256_extracti128_si256(part, 1));
                    *total = _mm256_add_epi32(*total, _mm256_add_epi32(first, second));
                }
            }
            // Interleave even and odd rows back into row order.
            let sums_ptr = sums.as_mut_ptr();
            for (half, (even, odd)) in [(totals[0], totals[1]), (totals[2], totals[3])]
                .into_iter()
                .enumerate()
            {
                let rows_0_3_8_11 = _mm256_unpacklo_epi32(even, odd);
                let rows_4_7_12_15 = _mm256_unpackhi_epi32(even, odd);
                let first = _mm256_permute2x128_si256(rows_0_3_8_11, rows_4_7_12_15, 0x20);
                let second = _mm256_permute2x128_si256(rows_0_3_8_11, rows_4_7_12_15, 0x31);
                _mm256_storeu_si256(sums_ptr.add(half * 16) as *mut __m256i, first);
                _mm256_storeu_si256(sums_ptr.add(half * 16 + 8) as *mut __m256i, second);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;

    fn avx2_available() -> bool {
        is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
            && is_x86_feature_detected!("popcnt")
    }

    /// Returns words mixing the edge values 0 and u64::MAX with random ones.
    fn random_words(rng: &mut StdRng, len: usize) -> Vec<u64> {
        (0..len)
            .map(|_| match rng.random_range(0..4) {
                0 => 0,
                1 => u64::MAX,
                _ => rng.random::<u64>(),
            })
            .collect()
    }

    fn random_floats(rng: &mut StdRng, len: usize) -> Vec<f32> {
        (0..len).map(|_| rng.random_range(-10.0f32..10.0)).collect()
    }

    /// Returns whether `actual` is within float rounding of `expected`, relative to the sum of
    /// the absolute values of the terms (which bounds the rounding error of any summation order).
    fn close(actual: f32, expected: f32, sum_of_magnitudes: f32) -> bool {
        (actual - expected).abs() <= 1e-5 * sum_of_magnitudes + 1e-6
    }

    /// Returns random slots over `num_planes` planes (any order, any legal shift) and the table
    /// length they need.
    fn random_slots(
        rng: &mut StdRng,
        num_planes: usize,
        num_slots: usize,
    ) -> (Vec<DimSlot>, usize) {
        let mut table_len = 0;
        let slots = (0..num_slots)
            .map(|_| {
                let width = rng.random_range(1..=8u8);
                let straddles = num_planes > 1 && rng.random_range(0..2) == 1;
                let plane = rng.random_range(0..num_planes - straddles as usize) as u32;
                let shift = rng.random_range(0..=16 - width);
                let slot = DimSlot {
                    plane,
                    shift,
                    width,
                    straddles,
                    table_offset: table_len as u32,
                };
                table_len += 1 << width;
                slot
            })
            .collect();
        (slots, table_len)
    }

    fn adc_both(
        planes: &[u8],
        num_vectors: usize,
        slots: &[DimSlot],
        table: &[f32],
        rows: &[u32],
    ) -> (Vec<u32>, Vec<u32>) {
        let mut expected = vec![0.0f32; rows.len()];
        scalar::adc_lower_bounds(planes, num_vectors, slots, table, rows, &mut expected);
        let mut actual = vec![f32::NAN; rows.len()];
        // SAFETY: AVX2 was detected by the caller; the slots come from random_slots (valid for
        // the planes and table) and every row is below num_vectors, which is small.
        unsafe { adc_lower_bounds_avx2(planes, num_vectors, slots, table, rows, &mut actual) };
        let bits = |values: Vec<f32>| values.into_iter().map(f32::to_bits).collect::<Vec<_>>();
        (bits(actual), bits(expected))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn hamming_matches_scalar(num_words in 0usize..=14, num_rows in 0usize..=31, seed: u64) {
            prop_assume!(avx2_available());
            let mut rng = StdRng::seed_from_u64(seed);
            let query = random_words(&mut rng, num_words);
            let codes = random_words(&mut rng, num_words * num_rows);
            let mut expected = vec![0u32; num_rows];
            scalar::hamming_distances(&query, &codes, &mut expected);
            let mut actual = vec![u32::MAX; num_rows];
            // SAFETY: features detected above; codes has num_rows rows of num_words words.
            unsafe { hamming_distances_avx2(&query, &codes, &mut actual) };
            prop_assert_eq!(actual, expected);
        }

        #[test]
        fn hamming_gather_matches_scalar(
            num_words in 1usize..=14,
            num_rows in 1usize..=20,
            num_requested in 0usize..=40,
            seed: u64,
        ) {
            prop_assume!(avx2_available());
            let mut rng = StdRng::seed_from_u64(seed);
            let query = random_words(&mut rng, num_words);
            let codes = random_words(&mut rng, num_words * num_rows);
            let rows: Vec<u32> =
                (0..num_requested).map(|_| rng.random_range(0..num_rows as u32)).collect();
            let mut expected = vec![0u32; num_requested];
            scalar::hamming_distances_gather(&query, &codes, &rows, &mut expected);
            let mut actual = vec![u32::MAX; num_requested];
            // SAFETY: features detected above; the query is non-empty and rows are in range.
            unsafe { hamming_distances_gather_avx2(&query, &codes, &rows, &mut actual) };
            prop_assert_eq!(actual, expected);
        }

        #[test]
        fn adc_matches_scalar_bit_for_bit(
            num_vectors in 1usize..=40,
            num_planes in 1usize..=40,
            num_slots in 0usize..=40,
            num_requested in 0usize..=600,
            sorted in any::<bool>(),
            seed: u64,
        ) {
            prop_assume!(avx2_available());
            let mut rng = StdRng::seed_from_u64(seed);
            let planes: Vec<u8> = (0..num_planes * num_vectors).map(|_| rng.random()).collect();
            let (slots, table_len) = random_slots(&mut rng, num_planes, num_slots);
            let table = random_floats(&mut rng, table_len);
            let mut rows: Vec<u32> =
                (0..num_requested).map(|_| rng.random_range(0..num_vectors as u32)).collect();
            if sorted {
                rows.sort_unstable();
            }
            let (actual, expected) = adc_both(&planes, num_vectors, &slots, &table, &rows);
            prop_assert_eq!(actual, expected);
        }

        #[test]
        fn dot_and_l2_match_scalar(len in 0usize..=3 * F32_LANES + 7, seed: u64) {
            prop_assume!(avx2_available());
            let mut rng = StdRng::seed_from_u64(seed);
            let a = random_floats(&mut rng, len);
            let b = random_floats(&mut rng, len);
            let dot_magnitude: f32 = a.iter().zip(&b).map(|(x, y)| (x * y).abs()).sum();
            let l2_expected = scalar::l2_squared_f32(&a, &b);
            // SAFETY: features detected above; equal lengths.
            let (dot_actual, l2_actual) =
                unsafe { (dot_f32_avx2(&a, &b), l2_squared_f32_avx2(&a, &b)) };
            prop_assert!(close(dot_actual, scalar::dot_f32(&a, &b), dot_magnitude));
            prop_assert!(close(l2_actual, l2_expected, l2_expected));
        }

        #[test]
        fn float_gathers_match_scalar(
            dim in 1usize..=3 * F32_LANES + 7,
            num_rows in 1usize..=12,
            num_requested in 0usize..=30,
            seed: u64,
        ) {
            prop_assume!(avx2_available());
            let mut rng = StdRng::seed_from_u64(seed);
            let query = random_floats(&mut rng, dim);
            let vectors = random_floats(&mut rng, dim * num_rows);
            let rows: Vec<u32> =
                (0..num_requested).map(|_| rng.random_range(0..num_rows as u32)).collect();
            let mut l2_expected = vec![0.0f32; num_requested];
            let mut dot_expected = vec![0.0f32; num_requested];
            scalar::l2_squared_gather(&query, &vectors, &rows, &mut l2_expected);
            scalar::dot_gather(&query, &vectors, &rows, &mut dot_expected);
            let mut l2_actual = vec![f32::NAN; num_requested];
            let mut dot_actual = vec![f32::NAN; num_requested];
            // SAFETY: features detected above; every row lies inside vectors.
            unsafe {
                l2_squared_gather_avx2(&query, &vectors, &rows, &mut l2_actual);
                dot_gather_avx2(&query, &vectors, &rows, &mut dot_actual);
            }
            for (index, &row) in rows.iter().enumerate() {
                let vector = &vectors[row as usize * dim..][..dim];
                let dot_magnitude: f32 =
                    query.iter().zip(vector).map(|(x, y)| (x * y).abs()).sum();
                prop_assert!(close(l2_actual[index], l2_expected[index], l2_expected[index]));
                prop_assert!(close(dot_actual[index], dot_expected[index], dot_magnitude));
            }
        }
    }

    #[test]
    fn adc_reads_last_rows_of_last_plane_with_width_8_straddling() {
        if !avx2_available() {
            return;
        }
        // 3 planes of 19 vectors; the slots read the last plane at every row, including the
        // last 3 rows where a 4-byte gather would run past the buffer.
        let num_vectors = 19;
        let planes: Vec<u8> = (0..3 * num_vectors).map(|i| (i * 37 + 11) as u8).collect();
        let slots = [
            DimSlot {
                plane: 1,
                shift: 0,
                width: 8,
                straddles: true,
                table_offset: 0,
            },
            DimSlot {
                plane: 2,
                shift: 8,
                width: 8,
                straddles: false,
                table_offset: 256,
            },
            DimSlot {
                plane: 1,
                shift: 5,
                width: 8,
                straddles: true,
                table_offset: 0,
            },
        ];
        let table: Vec<f32> = (0..512).map(|i| i as f32 * 0.25).collect();
        let rows: Vec<u32> = (0..num_vectors as u32)
            .rev()
            .chain([18, 17, 16, 0])
            .collect();
        let (actual, expected) = adc_both(&planes, num_vectors, &slots, &table, &rows);
        assert_eq!(actual, expected);
        let (actual, expected) = adc_both(&planes, num_vectors, &slots, &table, &[]);
        assert_eq!(actual, expected);
    }

    #[test]
    fn long_codes_do_not_overflow_byte_counters() {
        if !avx2_available() {
            return;
        }
        // Every bit differs, so each byte counter gains 8 per step: 31 steps is the most the
        // 8-bit counters hold, and these widths cross one and two flushes.
        for num_words in [
            4 * MAX_STEPS_PER_BYTE_SUM,
            4 * MAX_STEPS_PER_BYTE_SUM + 5,
            251,
        ] {
            let query = vec![u64::MAX; num_words];
            let codes = vec![0u64; 2 * num_words];
            let mut distances = [0u32; 2];
            // SAFETY: features detected above; codes holds 2 rows of num_words words.
            unsafe { hamming_distances_avx2(&query, &codes, &mut distances) };
            assert_eq!(distances, [64 * num_words as u32; 2]);
            let mut gathered = [0u32; 3];
            // SAFETY: features detected above; rows 0 and 1 exist.
            unsafe { hamming_distances_gather_avx2(&query, &codes, &[1, 0, 1], &mut gathered) };
            assert_eq!(gathered, [64 * num_words as u32; 3]);
        }
    }

    #[test]
    fn slot_groups_cover_every_slot_and_bound_their_planes() {
        let mut rng = StdRng::seed_from_u64(7);
        let (mut slots, _) = random_slots(&mut rng, 100, 200);
        slots[..100].sort_by_key(|slot| slot.plane);
        let mut slots_start = 0;
        let mut num_groups = 0;
        while slots_start < slots.len() {
            let group = next_slot_group(&slots, slots_start);
            assert!(group.slots_end > slots_start);
            assert!(group.num_planes <= ADC_GROUP_PLANES);
            for slot in &slots[slots_start..group.slots_end] {
                assert!(slot.plane as usize >= group.first_plane);
                let last_plane = slot.plane as usize + slot.straddles as usize;
                assert!(last_plane < group.first_plane + group.num_planes);
            }
            slots_start = group.slots_end;
            num_groups += 1;
        }
        // The 100 sorted slots span 100 planes: about 4 groups; the unsorted ones need more.
        assert!(num_groups >= 4);
    }
}
