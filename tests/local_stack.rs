//! The serverless path end to end on this machine: `curl` -> `cargo lambda watch` (function
//! URL) -> coordinator -> Lambda Invoke API -> worker tree -> SeaweedFS S3. Started by
//! `scripts/test.sh` through `scripts/local-stack.sh up`; skipped with a message otherwise.
//!
//! Run one at a time (`--test-threads=1`): the fault test changes what the shared workers do.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use squash_cli::input_files;
use squash_core::eval::{ground_truth_distance, recall_at_k};
use squash_core::protocol::{Hit, QueryResponse};
use squash_service::embedded::{EmbeddedConfig, EmbeddedIndex};
use squash_storage::store_for_location;
use squash_tests::stack_faults::build_sample_subset;
use squash_tests::{sample_dir, sample_workloads, workload_requests, Stack};

const SAMPLE_INDEX: &str = "glove-20k";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// The sample index in the stack's S3, opened in this process: the answers to compare with.
fn sample_embedded(stack: &Stack) -> EmbeddedIndex {
    runtime().block_on(async {
        let store = store_for_location(&format!("{}/{SAMPLE_INDEX}", stack.root))
            .await
            .expect("store");
        EmbeddedIndex::open_store(store, EmbeddedConfig::default())
            .await
            .expect("open the sample index in S3")
    })
}

fn hits_of(value: &Value) -> Vec<Hit> {
    serde_json::from_value(value["hits"].clone()).expect("hits")
}

#[test]
fn http_answers_equal_the_embedded_path_on_every_workload() {
    let Some(stack) = Stack::from_env("http_answers_equal_the_embedded_path_on_every_workload")
    else {
        return;
    };
    let (file, queries) = sample_workloads();
    let embedded = sample_embedded(&stack);
    let metric = embedded.manifest().metric;
    let k = 10;
    for workload in &file.workloads {
        let requests = workload_requests(workload, &queries, k);
        let expected: Vec<QueryResponse> = runtime()
            .block_on(embedded.query_batch(&requests))
            .expect("embedded answers");
        let (status, body) = stack.post(
            &format!("/v1/indexes/{SAMPLE_INDEX}/query-batch"),
            &json!({ "queries": requests, "require_complete": true }),
        );
        assert_eq!(status, 200, "{}: {body}", workload.name);
        let results = body["results"].as_array().expect("results");
        assert_eq!(results.len(), requests.len());
        let ground_truth =
            input_files::read_distances(&sample_dir().join(&workload.gt_dist_fvecs)).expect("gt");
        let (mut recall_http, mut recall_embedded) = (0.0, 0.0);
        for (position, (result, expected)) in results.iter().zip(&expected).enumerate() {
            let hits = hits_of(result);
            assert_eq!(hits, expected.hits, "{} query {position}", workload.name);
            let kth = ground_truth_distance(
                metric,
                true,
                ground_truth.data[position * ground_truth.dim + k - 1],
            );
            let matches = workload.match_counts[position];
            recall_http += recall_at_k(&hits, k, kth, matches);
            recall_embedded += recall_at_k(&expected.hits, k, kth, matches);
        }
        let n = requests.len() as f64;
        eprintln!(
            "{}: recall@10 http {:.4} embedded {:.4} ({} queries)",
            workload.name,
            recall_http / n,
            recall_embedded / n,
            requests.len()
        );
        assert_eq!(recall_http, recall_embedded);
        assert!(
            recall_http / n >= 0.9,
            "{} recall {}",
            workload.name,
            recall_http / n
        );
    }
}

#[test]
fn a_batch_split_over_the_split_functions_answers_as_the_embedded_path() {
    let Some(stack) =
        Stack::from_env("a_batch_split_over_the_split_functions_answers_as_the_embedded_path")
    else {
        return;
    };
    let (file, queries) = sample_workloads();
    let embedded = sample_embedded(&stack);
    // Every workload's queries in one batch, over all four partitions.
    let mut requests = Vec::new();
    for workload in &file.workloads {
        requests.extend(workload_requests(workload, &queries, 10));
    }
    for request in &mut requests {
        request.options.min_partitions = Some(4);
    }
    let expected: Vec<QueryResponse> = runtime()
        .block_on(embedded.query_batch(&requests))
        .expect("embedded answers");
    let path = format!("/v1/indexes/{SAMPLE_INDEX}/query-batch");
    // Unsplit (one invocation per slot), then cut into parts by a 1 ms target: the stack caps
    // a request at 8 invocations, so at most four parts, one per split function. The split
    // functions start on first use, so the split batch runs twice.
    let (status, unsplit) = stack.post(
        &path,
        &json!({"queries": requests, "require_complete": true, "max_invocations": 1}),
    );
    assert_eq!(status, 200, "{unsplit}");
    assert_eq!(unsplit["stats"]["split_invocations"], json!(0));
    let split_body =
        json!({"queries": requests, "require_complete": true, "target_invocation_ms": 1});
    let (status, first) = stack.post(&path, &split_body);
    assert_eq!(status, 200, "{first}");
    let (status, split) = stack.post(&path, &split_body);
    assert_eq!(status, 200, "{split}");
    let stats = &split["stats"];
    let num_split = stats["split_invocations"]
        .as_u64()
        .expect("split_invocations");
    assert!((1..=4).contains(&num_split), "{stats}");
    assert_eq!(
        stats["invocations"].as_u64(),
        Some(4 + num_split),
        "{stats}"
    );
    let functions: Vec<&str> = stats["workers"]
        .as_array()
        .expect("workers")
        .iter()
        .filter_map(|worker| worker["function"].as_str())
        .collect();
    // The parts go to the split functions in turn.
    for part in 1..=num_split {
        let name = format!("worker-split-{part}");
        assert!(
            functions.contains(&name.as_str()),
            "{name} not in {functions:?}"
        );
    }
    for answer in [&unsplit, &first, &split] {
        let results = answer["results"].as_array().expect("results");
        assert_eq!(results.len(), expected.len());
        for (position, (result, expected)) in results.iter().zip(&expected).enumerate() {
            assert_eq!(hits_of(result), expected.hits, "query {position}");
        }
    }

    // A part that fails is retried once, then only its own queries are named partial; the
    // others are whole.
    stack.set_faults("worker-split-1 fail\n");
    let mut partial_body = split_body.clone();
    partial_body["require_complete"] = json!(false);
    let (status, partial) = stack.post(&path, &partial_body);
    stack.set_faults("");
    assert_eq!(status, 200, "{partial}");
    let stats = &partial["stats"];
    let num_split = stats["split_invocations"]
        .as_u64()
        .expect("split_invocations");
    assert_eq!(
        stats["invocations"].as_u64(),
        Some(4 + num_split + 1),
        "one retry: {stats}"
    );
    let results = partial["results"].as_array().expect("results");
    let num_partial = results
        .iter()
        .filter(|r| r["partial"] == json!(true))
        .count();
    assert!(
        num_partial > 0 && num_partial < results.len(),
        "{num_partial} partial"
    );
    for (position, (result, expected)) in results.iter().zip(&expected).enumerate() {
        if result["partial"] == json!(true) {
            assert!(!result["missing_partitions"]
                .as_array()
                .expect("missing")
                .is_empty());
        } else {
            assert_eq!(hits_of(result), expected.hits, "query {position}");
        }
    }
}

#[test]
fn single_queries_use_a_tree_at_least_two_levels_deep() {
    let Some(stack) = Stack::from_env("single_queries_use_a_tree_at_least_two_levels_deep") else {
        return;
    };
    let body: Value = serde_json::from_slice(
        &std::fs::read(sample_dir().join("example-query.json")).expect("example"),
    )
    .expect("example parses");
    let (status, answer) = stack.post(&format!("/v1/indexes/{SAMPLE_INDEX}/query"), &body);
    assert_eq!(status, 200, "{answer}");
    let hits = hits_of(&answer);
    assert_eq!(hits.len(), 5);
    for hit in &hits {
        let rank = hit.attributes.as_ref().expect("attributes")["freq_rank"]
            .as_f64()
            .expect("freq_rank");
        assert!(rank < 5000.0, "filter violated: {hit:?}");
    }
    // Without the filter and with every partition probed, all four worker slots take part:
    // the coordinator invokes two, one of which invokes the other two.
    let mut everywhere = body.clone();
    everywhere.as_object_mut().expect("object").remove("filter");
    everywhere["options"] = json!({"min_partitions": 4});
    let (status, answer) = stack.post(&format!("/v1/indexes/{SAMPLE_INDEX}/query"), &everywhere);
    assert_eq!(status, 200, "{answer}");
    let execution = &answer["stats"]["execution"];
    assert_eq!(execution["tree_depth"].as_u64(), Some(2), "{execution}");
    assert_eq!(execution["invocations"].as_u64(), Some(4), "{execution}");
    assert_eq!(answer["stats"]["partitions_probed"].as_u64(), Some(4));
    assert_eq!(answer["partial"], json!(false));

    let (status, listing) = stack.call("GET", "/v1/indexes", None);
    assert_eq!(status, 200);
    assert!(listing["indexes"]
        .as_array()
        .expect("names")
        .contains(&json!(SAMPLE_INDEX)));
    let (status, summary) = stack.call("GET", &format!("/v1/indexes/{SAMPLE_INDEX}"), None);
    assert_eq!(status, 200);
    assert_eq!(summary["num_vectors"], json!(20_000));
    let (status, health) = stack.call("GET", "/health", None);
    assert_eq!((status, health["status"].clone()), (200, json!("ok")));
}

#[test]
fn bad_requests_get_a_4xx_naming_the_field() {
    let Some(stack) = Stack::from_env("bad_requests_get_a_4xx_naming_the_field") else {
        return;
    };
    let path = format!("/v1/indexes/{SAMPLE_INDEX}/query");
    let vector = vec![0.1f32; 50];
    let cases = [
        (json!({"vector": [0.1, 0.2]}), 400, Some("vector")),
        (json!({"vector": vector, "k": 0}), 400, Some("k")),
        (
            json!({"vector": vector, "filter": {"colour": "red"}}),
            400,
            Some("filter.colour"),
        ),
        (
            json!({"vector": vector, "filter": {"freq_rank": {"$gt": "x"}}}),
            400,
            None,
        ),
        (json!({"vector": "not a list"}), 400, Some("vector")),
        (
            json!({"vector": vector, "unknown": 1}),
            400,
            Some("unknown"),
        ),
    ];
    for (body, status, field_opt) in cases {
        let (got, answer) = stack.post(&path, &body);
        assert_eq!(got, status, "{body}: {answer}");
        if let Some(field) = field_opt {
            assert_eq!(answer["error"]["field"], json!(field), "{answer}");
        }
    }
    let (status, answer) = stack.call("POST", &path, Some(b"{oops"));
    assert_eq!(status, 400, "{answer}");
    let (status, answer) = stack.post(
        "/v1/indexes/no-such-index/query",
        &json!({"vector": vector}),
    );
    assert_eq!(status, 404, "{answer}");
    assert_eq!(answer["error"]["code"], json!("not_found"));
    let (status, _) = stack.post(
        "/v1/indexes/..%2F..%2Fsecrets/query",
        &json!({"vector": vector}),
    );
    assert_eq!(status, 400);
}

#[test]
fn a_cold_query_reads_s3_and_the_warm_repeat_reads_nothing() {
    let Some(stack) = Stack::from_env("a_cold_query_reads_s3_and_the_warm_repeat_reads_nothing")
    else {
        return;
    };
    // A fresh index name: its objects are in no worker's cache yet.
    let name = format!("coldwarm-{}", std::process::id());
    build_sample_subset(&stack, &name, 4000, 0, "1");
    let body = json!({"vector": vec![0.05f32; 50], "k": 10, "options": {"min_partitions": 4}});
    let path = format!("/v1/indexes/{name}/query");
    let (status, cold) = stack.post(&path, &body);
    assert_eq!(status, 200, "{cold}");
    assert_eq!(cold["partial"], json!(false), "{cold}");
    // A cold worker reads the probed clusters by range for the first request; the second
    // loads those partitions whole into its cache.
    let (status, second) = stack.post(&path, &body);
    assert_eq!(status, 200, "{second}");
    let (status, warm) = stack.post(&path, &body);
    assert_eq!(status, 200, "{warm}");
    assert_eq!(cold["hits"], warm["hits"]);
    assert_eq!(second["hits"], warm["hits"]);
    let cold = &cold["stats"]["execution"];
    let second = &second["stats"]["execution"];
    let warm = &warm["stats"]["execution"];
    assert_eq!(cold["cache_misses"].as_u64(), Some(4), "{cold}");
    assert!(
        cold["store_bytes_fetched"].as_u64().expect("bytes") > 0,
        "{cold}"
    );
    assert_eq!(
        second["cache_misses"], cold["partitions_read_by_range"],
        "{second}"
    );
    assert_eq!(warm["store_get_requests"].as_u64(), Some(0), "{warm}");
    assert_eq!(warm["store_bytes_fetched"].as_u64(), Some(0), "{warm}");
    assert_eq!(warm["cache_hits"].as_u64(), Some(4), "{warm}");
    assert_eq!(warm["coordinator_cold_start"], json!(false));
}

#[test]
fn failing_or_slow_workers_are_retried_then_named_missing() {
    let Some(stack) = Stack::from_env("failing_or_slow_workers_are_retried_then_named_missing")
    else {
        return;
    };
    let path = format!("/v1/indexes/{SAMPLE_INDEX}/query");
    let body = json!({"vector": vec![0.05f32; 50], "k": 10, "options": {"min_partitions": 4}});
    let (status, healthy) = stack.post(&path, &body);
    assert_eq!(status, 200, "{healthy}");
    assert_eq!(healthy["partial"], json!(false));

    // worker-3 (a leaf) fails every request: retried once, then its partition is named.
    stack.set_faults("worker-3 fail\n");
    let (status, answer) = stack.post(&path, &body);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["partial"], json!(true), "{answer}");
    assert_eq!(answer["missing_partitions"], json!([3]), "{answer}");
    let retries: u64 = answer["stats"]["execution"]["workers"]
        .as_array()
        .expect("workers")
        .iter()
        .map(|w| w["child_retries"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(retries, 1, "{answer}");
    let mut strict = body.clone();
    strict["require_complete"] = json!(true);
    let (status, refused) = stack.post(&path, &strict);
    stack.set_faults("");
    assert_eq!(status, 503, "{refused}");
    assert_eq!(refused["error"]["missing_partitions"], json!([3]));

    // A failure on the first attempt only: the retry answers and nothing is missing.
    let marker = stack
        .fault_file
        .with_extension(format!("once-{}", std::process::id()));
    let _ = std::fs::remove_file(&marker);
    stack.set_faults(&format!("worker-2 fail-once {}\n", marker.display()));
    let (status, retried) = stack.post(&path, &body);
    stack.set_faults("");
    assert_eq!(status, 200, "{retried}");
    assert_eq!(retried["partial"], json!(false), "{retried}");
    assert_eq!(retried["hits"], healthy["hits"]);
    assert!(marker.exists(), "the first attempt failed");

    // worker-1 stalls past the deadline: the answer comes in time, without its partition.
    stack.set_faults("worker-1 sleep 20000\n");
    let started = Instant::now();
    let (status, slow) = stack.post(&path, &body);
    let elapsed = started.elapsed();
    stack.set_faults("");
    assert_eq!(status, 200, "{slow}");
    assert_eq!(slow["partial"], json!(true), "{slow}");
    assert_eq!(slow["missing_partitions"], json!([1]), "{slow}");
    assert!(
        elapsed < Duration::from_secs(8),
        "answered after {elapsed:?}"
    );
    // The stalled invocation drains (the queued retry sees no fault); then answers are whole.
    let recovered = (0..60).any(|_| {
        std::thread::sleep(Duration::from_millis(500));
        let (status, answer) = stack.post(&path, &body);
        status == 200 && answer["partial"] == json!(false)
    });
    assert!(recovered, "the stack did not recover after the stall");
}

/// Kills a worker process mid-query. The emulator does not restart a dead function process,
/// so `scripts/test.sh` runs this test last, on its own.
#[test]
fn worker_process_killed_mid_query_is_named_missing() {
    let Some(stack) = Stack::from_env("worker_process_killed_mid_query_is_named_missing") else {
        return;
    };
    let path = format!("/v1/indexes/{SAMPLE_INDEX}/query");
    let body = json!({"vector": vec![0.05f32; 50], "k": 10, "options": {"min_partitions": 4}});
    stack.set_faults("worker-3 crash\n");
    let started = Instant::now();
    let (status, answer) = stack.post(&path, &body);
    stack.set_faults("");
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["partial"], json!(true), "{answer}");
    assert_eq!(answer["missing_partitions"], json!([3]), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(8));
    let hits = hits_of(&answer);
    assert_eq!(hits.len(), 10, "the other partitions still answer");
}

#[test]
fn an_index_rebuilt_while_serving_answers_from_one_version() {
    let Some(stack) = Stack::from_env("an_index_rebuilt_while_serving_answers_from_one_version")
    else {
        return;
    };
    let name = format!("rebuild-{}", std::process::id());
    const OFFSET: u64 = 1_000_000;
    build_sample_subset(&stack, &name, 3000, 0, "1");
    let path = format!("/v1/indexes/{name}/query");
    let body = json!({"vector": vec![0.05f32; 50], "k": 10});
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let stack = stack.clone();
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut versions = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let (status, answer) = stack.post(&path, &body);
                assert_eq!(status, 200, "{answer}");
                let hits = hits_of(&answer);
                let old = hits.iter().filter(|h| h.id < OFFSET).count();
                assert!(old == 0 || old == hits.len(), "mixed versions: {hits:?}");
                versions.push(answer["stats"]["execution"]["index_version"].clone());
            }
            versions
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    build_sample_subset(&stack, &name, 3000, OFFSET, "2");
    // The manifest time-to-live is 5 s: after it, answers come from version 2.
    std::thread::sleep(Duration::from_secs(6));
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let versions = reader.join().expect("reader");
    assert!(versions.contains(&json!("1")), "{versions:?}");
    assert_eq!(versions.last(), Some(&json!("2")), "{versions:?}");
}
