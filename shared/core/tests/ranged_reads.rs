//! Reading a segment's probed clusters by byte range (`index/ranged.rs`): the partition
//! assembled from the ranges answers exactly as the whole segment does, from fewer bytes.

mod common;

use std::ops::Range;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use squash_core::attributes::{AttributeKind, AttributeSchema, AttributeTable};
use squash_core::filter::Filter;
use squash_core::index::ranged::{tail_range, toc_from_bytes, toc_from_tail, SegmentHead};
use squash_core::index::{BuildInput, BuildParams, CoordinatorData, PartitionData};
use squash_core::metric::{normalize_in_place, Metric};
use squash_core::protocol::{SearchKnobs, SearchOptions, WorkerQuery};
use squash_core::search::{plan_query, search_partition_using, PreparedQuery, ScanMethod};

/// 256 dimensions make chunks of 64 rows, so a partition of 2,000 rows has about 30.
const DIM: usize = 256;
const NUM_VECTORS: usize = 6_000;

struct Built {
    coordinator: CoordinatorData,
    segments: Vec<(String, Vec<u8>)>,
}

fn build(metric: Metric) -> Built {
    let mut rng = StdRng::seed_from_u64(21);
    let centers: Vec<f32> = (0..16 * DIM)
        .map(|_| (rng.random::<f32>() - 0.5) * 8.0)
        .collect();
    let mut vectors = Vec::with_capacity(NUM_VECTORS * DIM);
    for _ in 0..NUM_VECTORS {
        let center = rng.random_range(0..16);
        vectors.extend((0..DIM).map(|d| centers[center * DIM + d] + rng.random::<f32>()));
    }
    let input = BuildInput {
        dim: DIM,
        vectors,
        ids: (0..NUM_VECTORS as u64).map(|id| id * 7 + 3).collect(),
        schema: AttributeSchema {
            columns: vec![
                common::column("year", AttributeKind::Integer),
                common::column("price", AttributeKind::Float),
            ],
        },
        attributes: AttributeTable {
            num_rows: NUM_VECTORS,
            columns: vec![
                (0..NUM_VECTORS)
                    .map(|_| f64::from(rng.random_range(2000..2025)))
                    .collect(),
                (0..NUM_VECTORS)
                    .map(|_| rng.random::<f64>() * 100.0)
                    .collect(),
            ],
        },
    };
    let mut params = BuildParams::new(metric, "1");
    params.num_partitions = Some(3);
    params.cluster_rows = 100;
    let (summary, objects) = common::build_objects(input, &params);
    let coordinator = CoordinatorData::decode(
        "coordinator",
        objects[&summary.manifest.coordinator_key].clone(),
    )
    .unwrap();
    let segments = summary
        .manifest
        .partitions
        .iter()
        .map(|entry| (entry.key.clone(), objects[&entry.key].clone()))
        .collect();
    Built {
        coordinator,
        segments,
    }
}

fn read(bytes: &[u8], range: Range<u64>) -> Vec<u8> {
    bytes[range.start as usize..range.end as usize].to_vec()
}

/// Reads every range of `ranges` from `bytes`, with its range.
fn read_all(bytes: &[u8], ranges: Vec<Range<u64>>) -> Vec<(Range<u64>, Vec<u8>)> {
    ranges
        .into_iter()
        .map(|range| (range.clone(), read(bytes, range)))
        .collect()
}

/// The reads of a cold worker: tail, toc when longer, head, rows (exactly the chunks needed:
/// these partitions are smaller than the gap a worker reads across). Returns the partition and
/// the bytes read.
fn read_by_range(key: &str, bytes: &[u8], queries: &[(Vec<f32>, f32)]) -> (PartitionData, u64) {
    let object_len = bytes.len() as u64;
    let tail = read(bytes, tail_range(object_len));
    let mut bytes_read = tail.len() as u64;
    let toc = match toc_from_tail(key, object_len, &tail).unwrap() {
        Ok(toc) => toc,
        Err(toc_range) => {
            bytes_read += toc_range.end - toc_range.start;
            toc_from_bytes(key, object_len, &tail, &read(bytes, toc_range)).unwrap()
        }
    };
    let head_range = SegmentHead::head_range(&toc).expect("new segments have a head");
    let head_bytes = match SegmentHead::head_from_tail(&toc, object_len, &tail) {
        Some(head_bytes) => head_bytes.to_vec(),
        None => {
            bytes_read += head_range.end - head_range.start;
            read(bytes, head_range)
        }
    };
    let head = SegmentHead::decode(key, toc, &head_bytes).unwrap();
    let rows = head.probed_rows(
        queries
            .iter()
            .map(|(vector, radius)| (vector.as_slice(), *radius)),
    );
    // Concurrent reads finish in any order: hand them over last first.
    let mut reads = read_all(bytes, head.row_reads(&rows, 0).unwrap());
    reads.reverse();
    bytes_read += reads
        .iter()
        .map(|(_, bytes)| bytes.len() as u64)
        .sum::<u64>();
    (head.assemble(&rows, &reads).unwrap(), bytes_read)
}

#[test]
fn a_partition_read_by_range_answers_as_the_whole_segment() {
    for metric in [Metric::L2, Metric::Cosine] {
        let built = build(metric);
        let mut rng = StdRng::seed_from_u64(4);
        let knobs = SearchKnobs::resolve(&SearchOptions::default()).unwrap();
        let mut total_read = 0u64;
        let mut total_whole = 0u64;
        for _ in 0..6 {
            // Near a stored vector, as real queries are: far from every row, a query's
            // neighbourhood is the whole index.
            let (_, any_segment) = &built.segments[rng.random_range(0..built.segments.len())];
            let any = PartitionData::decode("any", any_segment.clone()).unwrap();
            let row = rng.random_range(0..any.num_vectors());
            let mut vector: Vec<f32> = any.vectors[row * DIM..][..DIM]
                .iter()
                .map(|value| value + rng.random::<f32>() * 0.1)
                .collect();
            if metric.normalizes() {
                normalize_in_place(&mut vector);
            }
            let filter_json = json!({"year": {"$gte": 2010}});
            let filter = Filter::parse(&filter_json, &built.coordinator.schema).unwrap();
            let plan = plan_query(&built.coordinator, &vector, &filter, 10, &knobs);
            let radius = plan.probe_radius.expect("approximate plans have a radius");
            for &partition in &plan.partitions {
                let (key, bytes) = &built.segments[partition as usize];
                let whole = PartitionData::decode(key, bytes.clone()).unwrap();
                let (ranged, bytes_read) = read_by_range(key, bytes, &[(vector.clone(), radius)]);
                assert!(ranged.quantized.is_none());
                assert!(ranged.num_vectors() <= whole.num_vectors());
                total_read += bytes_read;
                total_whole += bytes.len() as u64;
                for filter in [None, Some(filter_json.clone())] {
                    let query = WorkerQuery {
                        vector: vector.clone(),
                        k: 10,
                        filter,
                        include_attributes: true,
                        knobs,
                        probe_radius: Some(radius),
                    };
                    // Forced, and as the cost model picks (the same method for both).
                    for method in [Some(ScanMethod::Direct), Some(ScanMethod::FastScan), None] {
                        let search = |partition: &PartitionData| {
                            let prepared = PreparedQuery::try_new(&query, partition).unwrap();
                            search_partition_using(partition, &prepared, method)
                        };
                        let (whole_hits, whole_stats) = search(&whole);
                        let (ranged_hits, ranged_stats) = search(&ranged);
                        assert_eq!(ranged_hits, whole_hits, "{metric} {method:?}");
                        assert_eq!(ranged_stats, whole_stats, "{metric} {method:?}");
                    }
                }
            }
        }
        assert!(
            total_read * 2 < total_whole,
            "{metric}: read {total_read} of {total_whole} bytes"
        );
    }
}

#[test]
fn several_queries_read_the_union_of_their_clusters() {
    let built = build(Metric::L2);
    let (key, bytes) = &built.segments[0];
    let whole = PartitionData::decode(key, bytes.clone()).unwrap();
    let first = whole.vectors[..DIM].to_vec();
    let last = whole.vectors[(whole.num_vectors() - 1) * DIM..].to_vec();
    // A radius just past the first and the last cluster's centroid.
    let radius = |vector: &[f32], cluster: usize| {
        let centroid = &whole.clusters.centroids[cluster * DIM..][..DIM];
        Metric::L2.distance(vector, centroid).sqrt() * 1.001
    };
    let first_radius = radius(&first, 0);
    let last_radius = radius(&last, whole.clusters.num_clusters() - 1);
    let (one, _) = read_by_range(key, bytes, &[(first.clone(), first_radius)]);
    let (both, _) = read_by_range(
        key,
        bytes,
        &[(first.clone(), first_radius), (last.clone(), last_radius)],
    );
    assert!(one.num_vectors() < whole.num_vectors());
    assert!(both.num_vectors() > one.num_vectors());
    for vector in [&first, &last] {
        let expected_id = whole.ids[if vector == &first {
            0
        } else {
            whole.num_vectors() - 1
        }];
        assert!(both.ids.contains(&expected_id));
    }
    // Every row of the union is the whole segment's row, vector and attributes included.
    for (row, &id) in both.ids.iter().enumerate() {
        let whole_row = whole.ids.iter().position(|&other| other == id).unwrap();
        assert_eq!(
            both.vectors[row * DIM..][..DIM],
            whole.vectors[whole_row * DIM..][..DIM]
        );
        for column in 0..2 {
            assert_eq!(
                both.attributes.columns[column][row].to_bits(),
                whole.attributes.columns[column][whole_row].to_bits()
            );
        }
    }
}

#[test]
fn bad_ranges_and_missing_reads_are_errors() {
    let built = build(Metric::L2);
    let (key, bytes) = &built.segments[1];
    let object_len = bytes.len() as u64;
    let tail = read(bytes, tail_range(object_len));
    let toc = toc_from_tail(key, object_len, &tail).unwrap().unwrap();
    // A size that is not the object's is caught at the trailer.
    let error = toc_from_tail(key, object_len + 1, &tail)
        .unwrap_err()
        .to_string();
    assert!(error.contains("trailer describes"), "{error}");
    let head_range = SegmentHead::head_range(&toc).unwrap();
    let head = SegmentHead::decode(key, toc, &read(bytes, head_range)).unwrap();
    // Part of a fine cluster is refused.
    let partial = std::iter::once(0..3).collect::<Vec<_>>();
    let reads = read_all(bytes, head.row_reads(&partial, 0).unwrap());
    let error = head.assemble(&partial, &reads).unwrap_err().to_string();
    assert!(error.contains("whole fine clusters"), "{error}");
    // Rows whose chunks were not read, and a flipped byte, are corrupt.
    let rows = head.probed_rows([(vec![0.0f32; DIM].as_slice(), f32::MAX)]);
    assert_eq!(rows, vec![0..head.num_rows()]);
    let error = head.assemble(&rows, &[]).unwrap_err().to_string();
    assert!(error.contains("was not read"), "{error}");
    let mut reads = read_all(bytes, head.row_reads(&rows, 0).unwrap());
    let last = reads.last_mut().unwrap();
    let middle = last.1.len() / 2;
    last.1[middle] ^= 0x40;
    let error = head.assemble(&rows, &reads).unwrap_err().to_string();
    assert!(error.contains("checksum"), "{error}");
}

#[test]
fn reads_close_together_are_merged() {
    let built = build(Metric::L2);
    let (key, bytes) = &built.segments[2];
    let object_len = bytes.len() as u64;
    let tail = read(bytes, tail_range(object_len));
    let toc = toc_from_tail(key, object_len, &tail).unwrap().unwrap();
    let head_bytes = SegmentHead::head_from_tail(&toc, object_len, &tail)
        .expect("a small segment's head is in its tail")
        .to_vec();
    let head = SegmentHead::decode(key, toc, &head_bytes).unwrap();
    // The first and the last cluster: far apart.
    let rows = head.probed_rows([(vec![0.0f32; DIM].as_slice(), f32::MAX)]);
    let all = rows[0].clone();
    let whole_clusters = |from_end: bool| {
        let whole = PartitionData::decode(key, bytes.clone()).unwrap();
        let sizes = &whole.clusters.sizes;
        if from_end {
            all.end - *sizes.last().unwrap() as usize..all.end
        } else {
            0..sizes[0] as usize
        }
    };
    let ends = vec![whole_clusters(false), whole_clusters(true)];
    let exact = head.row_reads(&ends, 0).unwrap();
    let merged = head.row_reads(&ends, u64::MAX).unwrap();
    assert!(exact.len() >= 2, "{exact:?}");
    assert_eq!(merged.len(), 1);
    assert_eq!(merged[0].start, exact[0].start);
    assert_eq!(merged[0].end, exact.last().unwrap().end);
}
