//! End to end through the library: build into a store, open, search, compare with a
//! brute-force oracle; rebuilds, corruption and the committed real sample.

mod common;

use std::path::PathBuf;
use std::sync::Arc;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use squash_core::eval::{ground_truth_distance, recall_at_k};
use squash_core::filter::Filter;
use squash_core::index::build::NoProgress;
use squash_core::index::{BuildInput, Manifest, MANIFEST_KEY};
use squash_core::metric::{normalize_in_place, Metric};
use squash_core::protocol::{QueryRequest, SearchOptions};
use squash_service::embedded::{EmbeddedConfig, EmbeddedIndex};
use squash_service::write_index;
use squash_storage::{BlobStore, LocalStore, MemoryStore};

use common::{built_in_memory, params, synthetic};

/// Exact filtered top-k by brute force: (id, distance), best first, ties by id.
fn oracle(
    input: &BuildInput,
    metric: Metric,
    query: &[f32],
    filter: &Filter,
    k: usize,
) -> (Vec<(u64, f32)>, usize) {
    let dim = input.dim;
    let mut query = query.to_vec();
    if metric.normalizes() {
        normalize_in_place(&mut query);
    }
    let mut scored: Vec<(u64, f32)> = Vec::new();
    for row in 0..input.ids.len() {
        if !filter.matches_row(&input.attributes, row) {
            continue;
        }
        let mut vector = input.vectors[row * dim..][..dim].to_vec();
        if metric.normalizes() {
            normalize_in_place(&mut vector);
        }
        scored.push((input.ids[row], metric.distance(&query, &vector)));
    }
    let matches = scored.len();
    scored.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
    scored.truncate(k);
    (scored, matches)
}

fn filters() -> Vec<serde_json::Value> {
    vec![
        serde_json::Value::Null,
        json!({"year": {"$gte": 2010, "$lte": 2014}}),
        json!({"color": {"$in": ["red", "blue"]}, "price": {"$lt": 50.0}}),
        json!({"$or": [{"color": "violet"}, {"year": {"$eq": 2001}}]}),
        json!({"$not": {"year": {"$ne": 2003}}, "color": {"$nin": ["green"]}}),
        json!({"year": {"$gt": 2030}}),
    ]
}

async fn check_against_oracle(metric: Metric) {
    let input = synthetic(3000, 16, 1);
    let (_, index, _) = built_in_memory(&input, params(metric, 4, "1")).await;
    let manifest = index.manifest();
    assert_eq!(manifest.num_vectors, 3000);
    assert_eq!(manifest.partitions.len(), 4);
    for partition in &manifest.partitions {
        assert!(
            (675..=825).contains(&partition.num_vectors),
            "partition size {}",
            partition.num_vectors
        );
    }
    let mut rng = StdRng::seed_from_u64(9);
    let k = 10;
    let mut recall_sum = 0.0;
    let mut num_queries = 0;
    for filter_json in filters() {
        let filter = Filter::parse(&filter_json, &input.schema).expect("filter");
        for _ in 0..15 {
            let row = rng.random_range(0..3000);
            let query: Vec<f32> = input.vectors[row * 16..][..16]
                .iter()
                .map(|v| v + rng.random::<f32>() - 0.5)
                .collect();
            let (truth, matches) = oracle(&input, metric, &query, &filter, k);
            let mut request = QueryRequest::new(query.clone(), k);
            request.filter = (!filter_json.is_null()).then(|| filter_json.clone());
            request.include_attributes = true;
            let approximate = index
                .query_batch(std::slice::from_ref(&request))
                .await
                .expect("query");
            let hits = &approximate[0].hits;
            assert_eq!(
                hits.len(),
                k.min(matches),
                "{metric} {filter_json}: never fewer than k hits when k match"
            );
            for hit in hits {
                let row = ((hit.id - 7) / 3) as usize;
                assert!(
                    filter.matches_row(&input.attributes, row),
                    "hit {} fails the filter",
                    hit.id
                );
                assert!(hit.attributes.is_some());
            }
            let kth = truth.last().map(|t| t.1).unwrap_or(f32::INFINITY);
            recall_sum += recall_at_k(hits, k, kth, matches);
            num_queries += 1;

            request.options = SearchOptions {
                exact: true,
                ..SearchOptions::default()
            };
            let exact = index
                .query_batch(std::slice::from_ref(&request))
                .await
                .expect("exact query");
            let exact_hits = &exact[0].hits;
            assert_eq!(exact_hits.len(), truth.len());
            for (hit, (_, distance)) in exact_hits.iter().zip(&truth) {
                assert!(
                    (hit.distance - distance).abs() <= 1e-4 * distance.abs().max(1.0),
                    "{metric} exact mode"
                );
            }
            assert_eq!(recall_at_k(exact_hits, k, kth, matches), 1.0);
        }
    }
    let recall = recall_sum / num_queries as f64;
    assert!(
        recall >= 0.95,
        "{metric}: mean recall {recall} against the oracle"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn l2_search_matches_the_oracle() {
    check_against_oracle(Metric::L2).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn cosine_search_matches_the_oracle() {
    check_against_oracle(Metric::Cosine).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn ip_search_matches_the_oracle() {
    check_against_oracle(Metric::Ip).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_queries_get_errors_naming_the_field() {
    let input = synthetic(500, 8, 2);
    let store: Arc<dyn BlobStore> = Arc::new(MemoryStore::new());
    write_index(
        Arc::clone(&store),
        input,
        params(Metric::L2, 2, "1"),
        Arc::new(NoProgress),
    )
    .await
    .expect("build");
    let index = EmbeddedIndex::open_store(store, EmbeddedConfig::default())
        .await
        .expect("open");
    let cases: Vec<(QueryRequest, &str)> = vec![
        (QueryRequest::new(vec![0.0; 7], 10), "vector"),
        (QueryRequest::new(vec![0.0; 8], 0), "k"),
        (QueryRequest::new(vec![0.0; 8], 10_001), "k"),
        (QueryRequest::new(vec![f32::NAN; 8], 10), "vector[0]"),
        (
            QueryRequest {
                filter: Some(json!({"nope": {"$eq": 1}})),
                ..QueryRequest::new(vec![0.0; 8], 10)
            },
            "filter",
        ),
        (
            QueryRequest {
                filter: Some(json!({"year": {"$eq": "x"}})),
                ..QueryRequest::new(vec![0.0; 8], 10)
            },
            "filter",
        ),
        (
            QueryRequest {
                options: SearchOptions {
                    rerank_factor: Some(0),
                    ..SearchOptions::default()
                },
                ..QueryRequest::new(vec![0.0; 8], 10)
            },
            "options.rerank_factor",
        ),
    ];
    for (request, field_prefix) in cases {
        match index.query_batch(&[request]).await {
            // A batch names the query by its position.
            Err(squash_core::Error::InvalidInput { field, .. }) => {
                let expected = format!("queries[0].{field_prefix}");
                assert!(
                    field.starts_with(&expected),
                    "field {field} should start with {expected}"
                )
            }
            other => panic!("expected InvalidInput for {field_prefix}, got {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn rebuild_switches_versions_and_a_failed_build_leaves_the_index_intact() {
    let folder = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn BlobStore> = Arc::new(LocalStore::new(folder.path().join("index")));
    let first = synthetic(400, 8, 3);
    write_index(
        Arc::clone(&store),
        first.clone(),
        params(Metric::L2, 2, "a1"),
        Arc::new(NoProgress),
    )
    .await
    .expect("build 1");
    write_index(
        Arc::clone(&store),
        synthetic(600, 8, 4),
        params(Metric::L2, 3, "a2"),
        Arc::new(NoProgress),
    )
    .await
    .expect("build 2");
    let index = EmbeddedIndex::open_store(Arc::clone(&store), EmbeddedConfig::default())
        .await
        .expect("open");
    assert_eq!(index.manifest().index_version, "a2");
    assert_eq!(index.manifest().num_vectors, 600);
    // Within the retention (a day by default) the replaced version "a1" is kept; a build
    // that keeps versions 0 s removes it, but never the version it replaces (in-flight readers).
    assert!(store
        .list("va1/")
        .await
        .expect("list")
        .contains(&"va1/manifest.sqsh".to_string()));
    let mut no_retention = params(Metric::L2, 2, "a3");
    no_retention.retain_versions_s = Some(0);
    write_index(
        Arc::clone(&store),
        synthetic(300, 8, 5),
        no_retention,
        Arc::new(NoProgress),
    )
    .await
    .expect("build 3");
    let keys = store.list("v").await.expect("list");
    assert!(
        keys.iter()
            .all(|key| key.starts_with("va2/") || key.starts_with("va3/")),
        "stale objects: {keys:?}"
    );
    assert!(
        keys.iter().any(|key| key.starts_with("va2/")),
        "the previous version is kept for in-flight readers"
    );

    // A build that fails (more partitions than vectors) writes nothing and keeps "a3".
    let failed = write_index(
        Arc::clone(&store),
        synthetic(5, 8, 6),
        params(Metric::L2, 9, "a4"),
        Arc::new(NoProgress),
    )
    .await;
    assert!(matches!(
        failed,
        Err(squash_core::Error::InvalidInput { .. })
    ));
    assert!(store.list("va4/").await.expect("list").is_empty());
    let index = EmbeddedIndex::open_store(Arc::clone(&store), EmbeddedConfig::default())
        .await
        .expect("open");
    assert_eq!(index.manifest().index_version, "a3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_builds_of_one_index_leave_one_whole_version() {
    let folder = tempfile::tempdir().expect("tempdir");
    let stores: [Arc<dyn BlobStore>; 2] = [
        Arc::new(LocalStore::new(folder.path().join("index"))),
        Arc::new(MemoryStore::new()),
    ];
    for store in stores {
        write_index(
            Arc::clone(&store),
            synthetic(400, 8, 3),
            params(Metric::L2, 2, "b1"),
            Arc::new(NoProgress),
        )
        .await
        .expect("first build");
        // Two rebuilds at once, of different data: one switches, the other must fail cleanly.
        let (second, third) = tokio::join!(
            write_index(
                Arc::clone(&store),
                synthetic(600, 8, 4),
                params(Metric::L2, 3, "b2"),
                Arc::new(NoProgress),
            ),
            write_index(
                Arc::clone(&store),
                synthetic(500, 8, 5),
                params(Metric::L2, 2, "b3"),
                Arc::new(NoProgress),
            ),
        );
        let (winner, loser, loser_error) = match (second, third) {
            (Ok(_), Err(error)) => ("b2", "b3", error),
            (Err(error), Ok(_)) => ("b3", "b2", error),
            other => panic!("exactly one build must switch: {other:?}"),
        };
        assert!(
            matches!(&loser_error, squash_core::Error::Conflict { message } if message.contains("another build")),
            "{loser_error}"
        );
        assert!(store
            .list(&format!("v{loser}/"))
            .await
            .expect("list")
            .is_empty());
        let index = EmbeddedIndex::open_store(Arc::clone(&store), EmbeddedConfig::default())
            .await
            .expect("open");
        assert_eq!(index.manifest().index_version, winner);
        // Every object of the served version is there.
        index.load_all().await.expect("every partition loads");
        let answer = index
            .query(QueryRequest::new(vec![0.5; 8], 10))
            .await
            .expect("a complete answer");
        assert_eq!(answer.hits.len(), 10);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_corrupted_segment_is_an_error_not_a_panic() {
    let store = MemoryStore::new();
    let shared_store: Arc<dyn BlobStore> = Arc::new(store.clone());
    write_index(
        Arc::clone(&shared_store),
        synthetic(400, 8, 7),
        params(Metric::L2, 2, "c1"),
        Arc::new(NoProgress),
    )
    .await
    .expect("build");
    let key = store
        .list("vc1/partition-00000")
        .await
        .expect("list")
        .remove(0);
    let mut bytes = store.get(&key).await.expect("get");
    let middle = bytes.len() / 3;
    bytes[middle] ^= 0x5A;
    store.put(&key, bytes).await.expect("put");
    let index = EmbeddedIndex::open_store(shared_store, EmbeddedConfig::default())
        .await
        .expect("open");
    let options = SearchOptions {
        exact: true,
        ..SearchOptions::default()
    };
    let request = QueryRequest {
        options,
        ..QueryRequest::new(vec![0.0; 8], 10)
    };
    let outcome = index.query_batch(&[request]).await;
    // The worker names the partition it could not read, and why; the embedded mode answers
    // completely or not at all.
    match outcome {
        Err(squash_core::Error::Incomplete {
            message,
            missing_partitions,
        }) => {
            assert!(message.contains("corrupt object"), "{message}");
            assert!(message.contains("partition-00000"), "{message}");
            assert_eq!(missing_partitions, vec![0]);
        }
        other => panic!("expected the corrupt partition named, got {other:?}"),
    }
    assert!(store.get(MANIFEST_KEY).await.is_ok());
}

/// The committed real sample (20k GloVe vectors): recall@10 per workload, approximate and exact.
#[tokio::test(flavor = "multi_thread")]
async fn glove_sample_recall_per_workload() {
    let sample = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/glove-20k");
    let vectors = read_vectors(&sample.join("base.fvecs")).expect("vectors");
    let attributes = read_attributes(&sample.join("base_attrs.csv"), &[], vectors.num_vectors)
        .expect("attributes");
    let queries = read_vectors(&sample.join("queries.fvecs")).expect("queries");
    let store: Arc<dyn BlobStore> = Arc::new(MemoryStore::new());
    let input = BuildInput {
        dim: vectors.dim,
        vectors: vectors.data,
        ids: attributes.ids,
        schema: attributes.schema,
        attributes: attributes.table,
    };
    write_index(
        Arc::clone(&store),
        input,
        params(Metric::Cosine, 4, "g1"),
        Arc::new(NoProgress),
    )
    .await
    .expect("build");
    let index = EmbeddedIndex::open_store(store, EmbeddedConfig::default())
        .await
        .expect("open");
    let workloads: serde_json::Value =
        serde_json::from_slice(&std::fs::read(sample.join("workloads.json")).expect("workloads"))
            .expect("json");
    let k = 10;
    for workload in workloads["workloads"].as_array().expect("array") {
        let name = workload["name"].as_str().expect("name");
        let truth = read_distances(&sample.join(workload["gt_dist_fvecs"].as_str().expect("gt")));
        let truth = truth.expect("gt");
        for exact in [false, true] {
            let mut requests = Vec::new();
            for (position, query_id) in workload["query_ids"]
                .as_array()
                .expect("ids")
                .iter()
                .enumerate()
            {
                let query_id = query_id.as_u64().expect("id") as usize;
                let filter = workload["filters"][position].clone();
                requests.push(QueryRequest {
                    require_complete: false,
                    branching: None,
                    min_token: None,
                    as_of: None,
                    vector: queries.data[query_id * queries.dim..][..queries.dim].to_vec(),
                    k,
                    filter: (!filter.is_null()).then_some(filter),
                    include_attributes: false,
                    options: SearchOptions {
                        exact,
                        ..SearchOptions::default()
                    },
                });
            }
            let responses = index.query_batch(&requests).await.expect("batch");
            let mut recall_sum = 0.0;
            for (position, response) in responses.iter().enumerate() {
                let kth = ground_truth_distance(
                    Metric::Cosine,
                    true,
                    truth.data[position * truth.dim + k - 1],
                );
                let matches = workload["match_counts"][position].as_u64().expect("count") as usize;
                assert!(
                    response.hits.len() >= k.min(matches),
                    "{name}: short answer"
                );
                recall_sum += recall_at_k(&response.hits, k, kth, matches);
            }
            let recall = recall_sum / responses.len() as f64;
            if exact {
                assert!(recall >= 0.999, "{name}: exact mode recall {recall}");
            } else {
                assert!(recall >= 0.95, "{name}: recall {recall}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn same_input_and_seed_give_the_same_index_bytes() {
    let mut objects = Vec::new();
    for _ in 0..2 {
        let store = MemoryStore::new();
        let shared_store: Arc<dyn BlobStore> = Arc::new(store.clone());
        write_index(
            shared_store,
            synthetic(900, 10, 8),
            params(Metric::Cosine, 3, "d1"),
            Arc::new(NoProgress),
        )
        .await
        .expect("build");
        let mut contents = Vec::new();
        for key in store.list("").await.expect("list") {
            let mut bytes = store.get(&key).await.expect("get");
            if key.ends_with("manifest.sqsh") {
                // The moment of the switch is the one thing two builds do not share.
                let mut manifest = Manifest::decode(&key, bytes).expect("manifest");
                assert!(manifest.published_unix_ms > 0);
                manifest.published_unix_ms = 0;
                bytes = manifest.encode().expect("encode");
            }
            contents.push((key.clone(), bytes));
        }
        objects.push(contents);
    }
    assert_eq!(
        objects[0].len(),
        7,
        "manifest and its copy, coordinator, row ids and three segments"
    );
    assert!(
        objects[0] == objects[1],
        "a rebuild with the same seed must produce identical objects"
    );
}

fn read_vectors(path: &std::path::Path) -> squash_core::Result<squash_core::input::VectorSet> {
    let bytes = std::fs::read(path).expect("read the sample");
    let format = squash_core::input::VectorFormat::from_path(path)?;
    squash_core::input::parse_vectors(&path.display().to_string(), format, &bytes)
}

fn read_distances(path: &std::path::Path) -> squash_core::Result<squash_core::input::VectorSet> {
    let bytes = std::fs::read(path).expect("read the sample");
    let format = squash_core::input::VectorFormat::from_path(path)?;
    squash_core::input::parse_distances(&path.display().to_string(), format, &bytes)
}

fn read_attributes(
    path: &std::path::Path,
    declared: &[(String, squash_core::attributes::AttributeKind)],
    expected_rows: usize,
) -> squash_core::Result<squash_core::input::AttributeInput> {
    let bytes = std::fs::read(path).expect("read the sample");
    squash_core::input::parse_attributes(
        &path.display().to_string(),
        &bytes,
        declared,
        expected_rows,
    )
}
