//! Criterion benches of the hot kernels: the scalar reference against the dispatched path
//! (`squash_kernels::active_isa()` names it) on the shapes the search runs.
//!
//! Shapes: Hamming on 64-bit and 784-bit codes over 50k rows (all rows, and 10k gathered
//! rows); ADC lower bounds with 50 dims at 4 bits on average (25 planes) and 784 dims (392
//! planes), 10k sorted rows gathered out of 50k; L2 and dot products at 50 and 784 dims over 1k
//! gathered rows; fast-scan sums at 50 and 784 dims over 50k contiguous rows. Throughput is in
//! rows per second. Runs are short (2 s per bench) so the whole
//! file takes about a minute: `cargo bench -p squash-kernels --bench kernels`.
//!
//! `memory_bandwidth` reads a 1 GiB buffer (larger than any cache here) once per iteration, in
//! bytes per second: multiplied by the bytes a kernel reads per row, it is the row rate at which
//! that kernel would be bound by memory rather than by compute.

use std::hint::black_box;
use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use squash_kernels::{self as kernels, scalar, DimSlot};

/// Number of vectors in a partition.
const NUM_VECTORS: usize = 50_000;
/// Number of rows surviving the filter, gathered for ADC and gathered Hamming.
const NUM_GATHERED_ROWS: usize = 10_000;
/// Number of candidates reranked with exact distances.
const NUM_RERANKED_ROWS: usize = 1_000;
/// Number of vectors the reranked rows are drawn from (kept below 50k so the 784-d floats stay
/// at 31 MB).
const NUM_FLOAT_VECTORS: usize = 10_000;
/// Widths of consecutive dims: 40 bits per 10 dims, i.e. 4 bits per dim on average, with widths
/// that exercise every lookup path (permute, two permutes, gather) and straddling codes.
const WIDTH_PATTERN: [u8; 10] = [2, 3, 4, 5, 6, 4, 4, 4, 3, 5];

/// Returns `num_rows` distinct rows out of `num_vectors`, sorted as the search produces them.
fn sorted_rows(rng: &mut StdRng, num_vectors: usize, num_rows: usize) -> Vec<u32> {
    let mut rows: Vec<u32> = rand::seq::index::sample(rng, num_vectors, num_rows)
        .into_iter()
        .map(|row| row as u32)
        .collect();
    rows.sort_unstable();
    rows
}

/// Returns the slots of dims packed MSB-first one after another, and the number of planes.
fn packed_slots(widths: &[u8]) -> (Vec<DimSlot>, usize) {
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
    (slots, bit_offset.div_ceil(8))
}

fn short_group<'a>(
    c: &'a mut Criterion,
    name: &str,
    num_rows: usize,
) -> BenchmarkGroup<'a, WallTime> {
    let mut group = c.benchmark_group(name);
    group
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .throughput(Throughput::Elements(num_rows as u64));
    group
}

fn bench_hamming(c: &mut Criterion) {
    let mut rng = StdRng::seed_from_u64(1);
    for num_bits in [64usize, 784] {
        let num_words = num_bits.div_ceil(64);
        let query: Vec<u64> = (0..num_words).map(|_| rng.random()).collect();
        let codes: Vec<u64> = (0..num_words * NUM_VECTORS).map(|_| rng.random()).collect();
        let mut distances = vec![0u32; NUM_VECTORS];
        let mut group = short_group(c, &format!("hamming/{num_bits}b"), NUM_VECTORS);
        group.bench_function("scalar", |b| {
            b.iter(|| scalar::hamming_distances(black_box(&query), &codes, &mut distances))
        });
        group.bench_function(kernels::active_isa(), |b| {
            b.iter(|| kernels::hamming_distances(black_box(&query), &codes, &mut distances))
        });
        group.finish();

        let rows = sorted_rows(&mut rng, NUM_VECTORS, NUM_GATHERED_ROWS);
        let mut distances = vec![0u32; rows.len()];
        let mut group = short_group(c, &format!("hamming_gather/{num_bits}b"), rows.len());
        group.bench_function("scalar", |b| {
            b.iter(|| {
                scalar::hamming_distances_gather(black_box(&query), &codes, &rows, &mut distances)
            })
        });
        group.bench_function(kernels::active_isa(), |b| {
            b.iter(|| {
                kernels::hamming_distances_gather(black_box(&query), &codes, &rows, &mut distances)
            })
        });
        group.finish();
    }
}

fn bench_adc(c: &mut Criterion) {
    let mut rng = StdRng::seed_from_u64(2);
    for num_dims in [50usize, 784] {
        let widths: Vec<u8> = (0..num_dims)
            .map(|dim| WIDTH_PATTERN[dim % WIDTH_PATTERN.len()])
            .collect();
        let (slots, num_planes) = packed_slots(&widths);
        let table_len: usize = widths.iter().map(|&width| 1usize << width).sum();
        let table: Vec<f32> = (0..table_len)
            .map(|_| rng.random_range(0.0f32..1.0))
            .collect();
        let planes: Vec<u8> = (0..num_planes * NUM_VECTORS)
            .map(|_| rng.random())
            .collect();
        let rows = sorted_rows(&mut rng, NUM_VECTORS, NUM_GATHERED_ROWS);
        let mut bounds = vec![0.0f32; rows.len()];
        let name = format!("adc/{num_dims}d_{num_planes}planes");
        let mut group = short_group(c, &name, rows.len());
        group.bench_function("scalar", |b| {
            b.iter(|| {
                scalar::adc_lower_bounds(
                    &planes,
                    NUM_VECTORS,
                    &slots,
                    black_box(&table),
                    &rows,
                    &mut bounds,
                )
            })
        });
        group.bench_function(kernels::active_isa(), |b| {
            b.iter(|| {
                kernels::adc_lower_bounds(
                    &planes,
                    NUM_VECTORS,
                    &slots,
                    black_box(&table),
                    &rows,
                    &mut bounds,
                )
            })
        });
        group.finish();
    }
}

fn bench_float_gathers(c: &mut Criterion) {
    let mut rng = StdRng::seed_from_u64(3);
    for dim in [50usize, 784] {
        let query: Vec<f32> = (0..dim).map(|_| rng.random_range(-1.0f32..1.0)).collect();
        let vectors: Vec<f32> = (0..dim * NUM_FLOAT_VECTORS)
            .map(|_| rng.random_range(-1.0f32..1.0))
            .collect();
        let rows = sorted_rows(&mut rng, NUM_FLOAT_VECTORS, NUM_RERANKED_ROWS);
        let mut results = vec![0.0f32; rows.len()];
        let mut group = short_group(c, &format!("l2_gather/{dim}d"), rows.len());
        group.bench_function("scalar", |b| {
            b.iter(|| scalar::l2_squared_gather(black_box(&query), &vectors, &rows, &mut results))
        });
        group.bench_function(kernels::active_isa(), |b| {
            b.iter(|| kernels::l2_squared_gather(black_box(&query), &vectors, &rows, &mut results))
        });
        group.finish();
        let mut group = short_group(c, &format!("dot_gather/{dim}d"), rows.len());
        group.bench_function("scalar", |b| {
            b.iter(|| scalar::dot_gather(black_box(&query), &vectors, &rows, &mut results))
        });
        group.bench_function(kernels::active_isa(), |b| {
            b.iter(|| kernels::dot_gather(black_box(&query), &vectors, &rows, &mut results))
        });
        group.finish();
        // The same rows as 8-bit codes, padded to a multiple of 16 bytes.
        let stride = dim.next_multiple_of(16);
        let weights: Vec<f32> = (0..stride)
            .map(|j| if j < dim { query[j] } else { 0.0 })
            .collect();
        let codes: Vec<u8> = (0..stride * NUM_FLOAT_VECTORS)
            .map(|_| rng.random())
            .collect();
        let mut group = short_group(c, &format!("dot_u8_gather/{dim}d"), rows.len());
        group.bench_function("scalar", |b| {
            b.iter(|| scalar::dot_u8_gather(black_box(&weights), &codes, &rows, &mut results))
        });
        group.bench_function(kernels::active_isa(), |b| {
            b.iter(|| kernels::dot_u8_gather(black_box(&weights), &codes, &rows, &mut results))
        });
        group.finish();
    }
}

fn bench_fastscan(c: &mut Criterion) {
    let mut rng = StdRng::seed_from_u64(4);
    for dim in [50usize, 784] {
        let block_bytes = kernels::fastscan_block_bytes(dim);
        let num_blocks = NUM_VECTORS / kernels::FASTSCAN_BLOCK_ROWS;
        let codes: Vec<u8> = (0..num_blocks * block_bytes)
            .map(|_| rng.random())
            .collect();
        let tables: Vec<u8> = (0..block_bytes).map(|_| rng.random()).collect();
        let mut sums = vec![0u32; num_blocks * kernels::FASTSCAN_BLOCK_ROWS];
        let mut group = short_group(c, &format!("fastscan/{dim}d"), sums.len());
        group.bench_function("scalar", |b| {
            b.iter(|| scalar::fastscan_sums(black_box(&codes), &tables, &mut sums))
        });
        group.bench_function(kernels::active_isa(), |b| {
            b.iter(|| kernels::fastscan_sums(black_box(&codes), &tables, &mut sums))
        });
        group.finish();
    }
}

/// Size of the buffer the bandwidth bench streams through.
const BANDWIDTH_BUFFER_BYTES: usize = 1 << 30;

fn bench_memory_bandwidth(c: &mut Criterion) {
    // Distinct non-zero words so no page is shared or compressed by the host.
    let words: Vec<u64> = (0..BANDWIDTH_BUFFER_BYTES / 8)
        .map(|i| (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
        .collect();
    let mut group = c.benchmark_group("memory_bandwidth");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(4))
        .throughput(Throughput::Bytes(BANDWIDTH_BUFFER_BYTES as u64));
    group.bench_function("read_1GiB", |b| {
        // Four independent sums keep several loads in flight; wrapping adds vectorise.
        b.iter(|| {
            let mut sums = [0u64; 4];
            for chunk in black_box(&words).chunks_exact(4) {
                for (sum, &word) in sums.iter_mut().zip(chunk) {
                    *sum = sum.wrapping_add(word);
                }
            }
            black_box(sums)
        })
    });
    group.finish();
}

criterion_group!(
    benches,
    bench_hamming,
    bench_adc,
    bench_float_gathers,
    bench_fastscan,
    bench_memory_bandwidth
);
criterion_main!(benches);
