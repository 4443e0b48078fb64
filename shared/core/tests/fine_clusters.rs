//! Fine clusters end to end through the pure stages: the coordinator's plan, the workers' cluster
//! selection and every scoring method, against brute force on the decoded partitions.

mod common;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use squash_core::attributes::{AttributeKind, AttributeSchema, AttributeTable};
use squash_core::filter::Filter;
use squash_core::index::{BuildInput, BuildParams, CoordinatorData, PartitionData};
use squash_core::metric::Metric;
use squash_core::protocol::{SearchKnobs, SearchOptions, WorkerQuery};
use squash_core::search::{plan_query, search_partition_using, PreparedQuery, ScanMethod};

const DIM: usize = 12;
const NUM_VECTORS: usize = 6_000;

struct Index {
    metric: Metric,
    coordinator: CoordinatorData,
    partitions: Vec<PartitionData>,
}

/// 6,000 clustered vectors with one integer column `year` in 2000..2025, in 3 partitions of
/// fine clusters of about 100 rows.
fn build() -> Index {
    build_with(Metric::L2)
}

fn build_with(metric: Metric) -> Index {
    let mut rng = StdRng::seed_from_u64(11);
    let centers: Vec<f32> = (0..20 * DIM).map(|_| rng.random::<f32>() * 8.0).collect();
    let mut vectors = Vec::with_capacity(NUM_VECTORS * DIM);
    let mut years = Vec::with_capacity(NUM_VECTORS);
    for _ in 0..NUM_VECTORS {
        let center = rng.random_range(0..20);
        for d in 0..DIM {
            vectors.push(centers[center * DIM + d] + rng.random::<f32>() * 2.0);
        }
        years.push(f64::from(rng.random_range(2000..2025)));
    }
    let input = BuildInput {
        dim: DIM,
        vectors,
        ids: (0..NUM_VECTORS as u64).collect(),
        schema: AttributeSchema {
            columns: vec![common::column("year", AttributeKind::Integer)],
        },
        attributes: AttributeTable {
            num_rows: NUM_VECTORS,
            columns: vec![years],
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
    .expect("coordinator");
    let partitions = summary
        .manifest
        .partitions
        .iter()
        .map(|entry| PartitionData::decode(&entry.key, objects[&entry.key].clone()).unwrap())
        .collect();
    Index {
        metric,
        coordinator,
        partitions,
    }
}

fn queries(count: usize) -> Vec<Vec<f32>> {
    let mut rng = StdRng::seed_from_u64(5);
    (0..count)
        .map(|_| (0..DIM).map(|_| rng.random::<f32>() * 9.0).collect())
        .collect()
}

/// The true top-k distances over every partition, among rows matching `filter`.
fn brute_force(index: &Index, query: &[f32], filter: &Filter, k: usize) -> Vec<f32> {
    let mut query = query.to_vec();
    if index.metric.normalizes() {
        squash_core::metric::normalize_in_place(&mut query);
    }
    let mut distances: Vec<f32> = index
        .partitions
        .iter()
        .flat_map(|partition| {
            (0..partition.num_vectors())
                .filter(|&row| filter.matches_row(&partition.attributes, row))
                .map(|row| {
                    index
                        .metric
                        .distance(&query, &partition.vectors[row * DIM..][..DIM])
                })
                .collect::<Vec<f32>>()
        })
        .collect();
    distances.sort_by(f32::total_cmp);
    distances.truncate(k);
    distances
}

/// Runs `query` through the plan and the planned partitions; returns the merged distances, the
/// rows the workers probed and the rows the plan took.
fn search(
    index: &Index,
    vector: &[f32],
    filter_json: Option<serde_json::Value>,
    options: &SearchOptions,
    k: usize,
    method: ScanMethod,
) -> (Vec<f32>, u64, u64) {
    let knobs = SearchKnobs::resolve(options).unwrap();
    let filter = match &filter_json {
        Some(json) => Filter::parse(json, &index.coordinator.schema).unwrap(),
        None => Filter::match_all(),
    };
    let plan = plan_query(&index.coordinator, vector, &filter, k, &knobs);
    let query = WorkerQuery {
        vector: vector.to_vec(),
        k,
        filter: filter_json,
        include_attributes: false,
        knobs,
        probe_radius: plan.probe_radius,
    };
    let mut distances = Vec::new();
    let mut probed_rows = 0;
    for &partition in &plan.partitions {
        let partition = &index.partitions[partition as usize];
        let prepared = PreparedQuery::try_new(&query, partition).unwrap();
        let (hits, stats) = search_partition_using(partition, &prepared, Some(method));
        assert!(stats.probed_rows <= partition.num_vectors() as u64);
        probed_rows += stats.probed_rows;
        distances.extend(hits.iter().map(|hit| hit.distance));
    }
    distances.sort_by(f32::total_cmp);
    distances.truncate(k);
    (distances, probed_rows, plan.probed_rows)
}

#[test]
fn partitions_are_cut_into_contiguous_fine_clusters_the_coordinator_lists() {
    let index = build();
    let directory = &index.coordinator.clusters;
    let total: usize = index
        .partitions
        .iter()
        .map(|p| p.clusters.num_clusters())
        .sum();
    assert_eq!(directory.num_clusters(), total);
    assert!(total >= 45, "{total} clusters for 6,000 rows of 100");
    for (id, partition) in index.partitions.iter().enumerate() {
        // Every row sits nearer its own cluster's centroid than the average other centroid:
        // the rows of a range really are a cluster.
        let ranges = partition.clusters.row_ranges();
        let centroid = |c: usize| &partition.clusters.centroids[c * DIM..][..DIM];
        let mut own_nearer = 0;
        for (cluster, range) in ranges.iter().enumerate() {
            for row in range.clone() {
                let vector = &partition.vectors[row * DIM..][..DIM];
                let own = Metric::L2.distance(vector, centroid(cluster));
                let others = (0..ranges.len())
                    .filter(|&c| c != cluster)
                    .map(|c| Metric::L2.distance(vector, centroid(c)))
                    .sum::<f32>()
                    / (ranges.len() - 1).max(1) as f32;
                own_nearer += usize::from(own < others);
            }
        }
        assert!(own_nearer * 10 >= partition.num_vectors() * 9, "{id}");
        let in_directory = directory
            .partition_of
            .iter()
            .filter(|&&p| p as usize == id)
            .count();
        assert_eq!(in_directory, partition.clusters.num_clusters());
    }
}

#[test]
fn workers_probe_at_least_the_clusters_the_plan_counted_and_find_the_neighbours() {
    let index = build();
    let k = 10;
    let mut recall_sum = 0.0;
    let queries = queries(40);
    for vector in &queries {
        let truth = brute_force(&index, vector, &Filter::match_all(), k);
        let (found, probed, planned) = search(
            &index,
            vector,
            None,
            &SearchOptions::default(),
            k,
            ScanMethod::Direct,
        );
        assert!(probed >= planned, "probed {probed} < planned {planned}");
        assert!(
            probed < NUM_VECTORS as u64,
            "a default query scanned everything"
        );
        let kth = truth[k - 1];
        recall_sum += found.iter().filter(|&&d| d <= kth).count() as f64 / k as f64;
    }
    let recall = recall_sum / queries.len() as f64;
    assert!(recall >= 0.95, "recall@10 {recall}");
}

/// Direct scoring of many candidates goes through the 8-bit row codes first; the bound on
/// their rounding keeps every true neighbour, whatever the metric and k (up to more hits than
/// a partition has candidates for).
#[test]
fn direct_scoring_through_row_codes_is_exact_for_every_metric_and_k() {
    let options = SearchOptions {
        exact: true,
        ..SearchOptions::default()
    };
    for metric in [Metric::L2, Metric::Cosine, Metric::Ip] {
        let index = build_with(metric);
        for vector in queries(6) {
            for filter in [None, Some(json!({"year": {"$gte": 2020}}))] {
                let parsed = match &filter {
                    Some(json) => Filter::parse(json, &index.coordinator.schema).unwrap(),
                    None => Filter::match_all(),
                };
                for k in [1, 10, 250, 2_500] {
                    let truth = brute_force(&index, &vector, &parsed, k);
                    let (found, _, _) = search(
                        &index,
                        &vector,
                        filter.clone(),
                        &options,
                        k,
                        ScanMethod::Direct,
                    );
                    assert_eq!(found.len(), truth.len(), "{metric:?} k {k}");
                    for (a, b) in found.iter().zip(&truth) {
                        assert!(
                            (a - b).abs() <= 1e-4 * b.abs().max(1.0),
                            "{metric:?} k {k}: {a} vs {b}"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn exact_mode_is_exact_with_either_scoring_method() {
    let index = build();
    let options = SearchOptions {
        exact: true,
        ..SearchOptions::default()
    };
    for vector in queries(15) {
        for filter in [None, Some(json!({"year": {"$lt": 2003}}))] {
            let parsed = match &filter {
                Some(json) => Filter::parse(json, &index.coordinator.schema).unwrap(),
                None => Filter::match_all(),
            };
            let truth = brute_force(&index, &vector, &parsed, 10);
            // The fast-scan estimate is not exact: exact mode scores directly instead.
            for method in [
                ScanMethod::Direct,
                ScanMethod::Quantized,
                ScanMethod::FastScan,
            ] {
                let (found, probed, _) =
                    search(&index, &vector, filter.clone(), &options, 10, method);
                assert_eq!(probed, NUM_VECTORS as u64, "exact mode skipped rows");
                assert_eq!(found.len(), truth.len());
                for (a, b) in found.iter().zip(&truth) {
                    assert!(
                        (a - b).abs() <= 1e-3 * b.abs().max(1.0),
                        "{method:?}: {a} vs {b}"
                    );
                }
            }
        }
    }
}

#[test]
fn a_selective_filter_gets_k_hits_in_one_pass_by_either_method() {
    let index = build();
    // About 1 row in 25 has a given year; 240 match, far more than k.
    let filter = json!({"year": {"$eq": 2011}});
    let parsed = Filter::parse(&filter, &index.coordinator.schema).unwrap();
    let options = SearchOptions {
        centroid_factor: Some(1.0),
        probe_rows: Some(1),
        ..SearchOptions::default()
    };
    for vector in queries(20) {
        let truth = brute_force(&index, &vector, &parsed, 50);
        assert_eq!(truth.len(), 50);
        for k in [10, 50] {
            for method in [
                ScanMethod::Direct,
                ScanMethod::Quantized,
                ScanMethod::FastScan,
            ] {
                let (found, _, _) =
                    search(&index, &vector, Some(filter.clone()), &options, k, method);
                assert_eq!(found.len(), k, "{method:?} k = {k}");
            }
        }
    }
}

/// The fast-scan first stage keeps the recall of direct scoring on the same probed clusters, for
/// both metric families, unfiltered and filtered, at k = 10 and k = 100.
#[test]
fn fast_scan_finds_the_neighbours_direct_scoring_finds() {
    for metric in [Metric::L2, Metric::Cosine] {
        let index = build_with(metric);
        for filter in [None, Some(json!({"year": {"$lt": 2012}}))] {
            let parsed = match &filter {
                Some(json) => Filter::parse(json, &index.coordinator.schema).unwrap(),
                None => Filter::match_all(),
            };
            for k in [10, 100] {
                let mut recall = [0.0f64; 2];
                let queries = queries(100);
                for vector in &queries {
                    let truth = brute_force(&index, vector, &parsed, k);
                    let kth = truth[k - 1] + 1e-4 * truth[k - 1].abs().max(1.0);
                    for (slot, method) in [ScanMethod::Direct, ScanMethod::FastScan]
                        .into_iter()
                        .enumerate()
                    {
                        let (found, _, _) = search(
                            &index,
                            vector,
                            filter.clone(),
                            &SearchOptions::default(),
                            k,
                            method,
                        );
                        recall[slot] +=
                            found.iter().filter(|&&d| d <= kth).count() as f64 / k as f64;
                    }
                }
                let [direct, fast] = recall.map(|sum| sum / queries.len() as f64);
                assert!(
                    fast >= 0.95 && fast >= direct - 0.02,
                    "{metric} {filter:?} k = {k}: fast-scan recall {fast}, direct {direct}"
                );
            }
        }
    }
}

/// The fast-scan method ranks every candidate by its estimate and re-ranks k × R of them; segments decoded without fast-scan codes fall back to direct scoring.
#[test]
fn fast_scan_statistics_and_fallback() {
    let mut index = build();
    let vector = queries(1).remove(0);
    let knobs = SearchKnobs::resolve(&SearchOptions::default()).unwrap();
    let query = WorkerQuery {
        vector: vector.clone(),
        k: 10,
        filter: None,
        include_attributes: false,
        knobs,
        probe_radius: None,
    };
    let partition = &index.partitions[0];
    let prepared = PreparedQuery::try_new(&query, partition).unwrap();
    let (fast_hits, stats) =
        search_partition_using(partition, &prepared, Some(ScanMethod::FastScan));
    let rows = partition.num_vectors() as u64;
    assert_eq!(stats.passed_filter, rows);
    assert_eq!(stats.fast_scanned, rows);
    assert_eq!(stats.reranked, 10 * knobs.rerank_factor as u64);
    assert_eq!(stats.scored_directly, 0);
    assert_eq!(fast_hits.len(), 10);

    index.partitions[0].fastscan = None;
    let partition = &index.partitions[0];
    let (hits, stats) = search_partition_using(partition, &prepared, Some(ScanMethod::FastScan));
    assert_eq!(stats.fast_scanned, 0);
    assert_eq!(stats.scored_directly, rows);
    assert_eq!(hits.len(), 10);
    // The segment round-trips without its fast-scan blocks, as one written before them would.
    let decoded = PartitionData::decode("old", partition.encode().unwrap()).unwrap();
    assert!(decoded.fastscan.is_none());
}

/// A worker with several vCPUs splits a large scan across them and gets the same hits and
/// statistics as on one thread.
#[test]
fn a_scan_split_across_threads_answers_as_on_one_thread() {
    let mut rng = StdRng::seed_from_u64(31);
    let num_rows = 40_000;
    let input = BuildInput {
        dim: DIM,
        vectors: (0..num_rows * DIM).map(|_| rng.random::<f32>()).collect(),
        ids: (0..num_rows as u64).collect(),
        schema: AttributeSchema {
            columns: vec![common::column("year", AttributeKind::Integer)],
        },
        attributes: AttributeTable {
            num_rows,
            columns: vec![(0..num_rows)
                .map(|row| f64::from(row as u32 % 10))
                .collect()],
        },
    };
    let mut params = BuildParams::new(Metric::L2, "1");
    params.num_partitions = Some(1);
    let (summary, objects) = common::build_objects(input, &params);
    let key = &summary.manifest.partitions[0].key;
    let partition = PartitionData::decode(key, objects[key].clone()).unwrap();
    let knobs = SearchKnobs::resolve(&SearchOptions::default()).unwrap();
    for filter in [None, Some(json!({"year": {"$ne": 3}}))] {
        let query = WorkerQuery {
            vector: (0..DIM).map(|_| rng.random::<f32>()).collect(),
            k: 100,
            filter,
            include_attributes: false,
            knobs,
            probe_radius: None,
        };
        let prepared = PreparedQuery::try_new(&query, &partition).unwrap();
        for method in [ScanMethod::Direct, ScanMethod::FastScan] {
            let on = |threads: usize| {
                rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap()
                    .install(|| search_partition_using(&partition, &prepared, Some(method)))
            };
            let (one, one_stats) = on(1);
            let (four, four_stats) = on(4);
            assert_eq!(one.len(), 100);
            assert_eq!(one, four, "{method:?}");
            assert_eq!(one_stats, four_stats);
        }
    }
}
