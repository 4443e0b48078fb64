//! Heavy and hostile requests within every documented limit, through the local stack
//! (`scripts/local-stack.sh up`): answers too large for a Lambda response, a batch of exact
//! queries far beyond its time budget with a cheap query right behind it, `require_complete`
//! against the deadline, and integers beyond 2^53 in filters and builds.
//!
//! Each request gets a 4xx within 10 s or an answer within its budget (plus the transport), no
//! function process exceeds the stack's function memory during the request or in the 30 s
//! after it, and no function process dies.
//!
//! Run one at a time (`--test-threads=1`): the requests share the function processes.

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{json, Value};
use squash_core::attributes::{AttributeColumn, AttributeKind, AttributeSchema, AttributeTable};
use squash_core::index::build::NoProgress;
use squash_core::index::{BuildInput, BuildParams};
use squash_core::metric::Metric;
use squash_core::protocol::{Hit, QueryRequest};
use squash_service::write_index;
use squash_storage::store_for_location;
use squash_tests::loopback::stack_function_memory;
use squash_tests::stack_faults::{embedded_answers, index_store, list_objects, runtime};
use squash_tests::{sample_dir, sample_workloads, squash_cli, Stack};

const SAMPLE_INDEX: &str = "glove-20k";

/// The stack's request budget.
fn budget() -> Duration {
    let ms: u64 = std::env::var("SQUASH_STACK_TIMEOUT_MS")
        .ok()
        .and_then(|text| text.parse().ok())
        .expect("SQUASH_STACK_TIMEOUT_MS (scripts/local-stack.sh env)");
    Duration::from_millis(ms)
}

/// The memory each function process has on the stack, in KiB.
fn memory_bound_kib() -> u64 {
    let mib: u64 = std::env::var("SQUASH_STACK_FUNCTION_MEMORY_MIB")
        .ok()
        .and_then(|text| text.parse().ok())
        .expect("SQUASH_STACK_FUNCTION_MEMORY_MIB (scripts/local-stack.sh env)");
    mib * 1024
}

/// The sample's query vectors, cycled to `count` queries of `k` hits, components rounded to
/// four decimals so large batches stay well inside the 6 MB body limit.
fn sample_queries(count: usize, k: usize) -> Vec<QueryRequest> {
    let (_, queries) = sample_workloads();
    let num_queries = queries.data.len() / queries.dim;
    (0..count)
        .map(|i| {
            let row = &queries.data[(i % num_queries) * queries.dim..][..queries.dim];
            let vector = row.iter().map(|v| (v * 1e4).round() / 1e4).collect();
            QueryRequest::new(vector, k)
        })
        .collect()
}

/// Watches the function processes' memory from a thread until stopped: the largest resident
/// set seen per process, and whether every process present at the start is still alive.
struct MemoryWatch {
    stop: Arc<AtomicBool>,
    peaks: Arc<Mutex<BTreeMap<(String, u32), u64>>>,
    thread: Option<std::thread::JoinHandle<()>>,
    pids_at_start: Vec<u32>,
}

impl MemoryWatch {
    fn start() -> MemoryWatch {
        let processes = stack_function_memory().expect("function processes");
        // The coordinator and four worker slots, and the split functions a large batch has
        // used so far (watch starts those on first use).
        let slots = processes
            .iter()
            .filter(|p| !p.function.starts_with("worker-split-"))
            .count();
        assert_eq!(slots, 5, "coordinator and four workers: {processes:?}");
        let stop = Arc::new(AtomicBool::new(false));
        let peaks = Arc::new(Mutex::new(BTreeMap::new()));
        let thread = {
            let stop = Arc::clone(&stop);
            let peaks = Arc::clone(&peaks);
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    for process in stack_function_memory().unwrap_or_default() {
                        let mut peaks = peaks.lock().expect("peaks");
                        let peak = peaks.entry((process.function, process.pid)).or_insert(0);
                        *peak = (*peak).max(process.rss_kib).max(process.peak_rss_kib);
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            })
        };
        MemoryWatch {
            stop,
            peaks,
            thread: Some(thread),
            pids_at_start: processes.iter().map(|p| p.pid).collect(),
        }
    }

    /// Keeps watching for `linger` more, then asserts that no process went over the function
    /// memory and that none died.
    fn finish(mut self, linger: Duration, what: &str) {
        std::thread::sleep(linger);
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            thread.join().expect("memory watch");
        }
        let peaks = self.peaks.lock().expect("peaks").clone();
        let report: Vec<String> = peaks
            .iter()
            .map(|((function, pid), kib)| format!("{function} ({pid}): {} MiB", kib / 1024))
            .collect();
        eprintln!("{what}: peak resident memory {report:?}");
        for ((function, pid), kib) in &peaks {
            assert!(
                *kib < memory_bound_kib(),
                "{what}: {function} ({pid}) reached {kib} KiB, over the function memory: {report:?}"
            );
        }
        let alive: Vec<u32> = stack_function_memory()
            .expect("function processes")
            .iter()
            .map(|p| p.pid)
            .collect();
        for pid in &self.pids_at_start {
            assert!(alive.contains(pid), "{what}: function process {pid} died");
        }
    }
}

/// Posts `body` to `path`, returning status, answer and seconds. Encoded straight from the
/// typed value: through `serde_json::Value` an `f32` would widen to 17 digits.
fn post_timed(stack: &Stack, path: &str, body: &impl Serialize) -> (u16, Value, f64) {
    let bytes = serde_json::to_vec(body).expect("json");
    stack.call_timed("POST", path, Some(&bytes))
}

/// A batch body.
#[derive(Serialize)]
struct Batch<'a> {
    queries: &'a [QueryRequest],
    #[serde(skip_serializing_if = "Option::is_none")]
    output: Option<&'a str>,
    require_complete: bool,
}

impl<'a> Batch<'a> {
    fn of(queries: &'a [QueryRequest]) -> Batch<'a> {
        Batch {
            queries,
            output: None,
            require_complete: false,
        }
    }
}

#[test]
fn answers_too_large_for_a_response_get_a_4xx_in_time() {
    let Some(stack) = Stack::from_env("answers_too_large_for_a_response_get_a_4xx_in_time") else {
        return;
    };
    let watch = MemoryWatch::start();
    let batch_path = format!("/v1/indexes/{SAMPLE_INDEX}/query-batch");
    // 100 queries of 10,000 hits with attributes: about 50 MB of answer.
    let mut queries = sample_queries(100, 10_000);
    queries.iter_mut().for_each(|q| q.include_attributes = true);
    let (status, answer, seconds) = post_timed(&stack, &batch_path, &Batch::of(&queries));
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["error"]["field"], json!("queries"), "{answer}");
    let message = answer["error"]["message"].as_str().expect("message");
    assert!(message.contains("over the limit"), "{message}");
    assert!(seconds < 10.0, "took {seconds} s");
    // Written to the store it is still too large, and says so.
    let body = Batch {
        output: Some("store"),
        ..Batch::of(&queries)
    };
    let (status, answer, _) = post_timed(&stack, &batch_path, &body);
    assert_eq!(status, 400, "{answer}");
    // 10,000 such queries: refused as quickly.
    let mut queries = sample_queries(10_000, 10_000);
    queries.iter_mut().for_each(|q| q.include_attributes = true);
    let (status, answer, seconds) = post_timed(&stack, &batch_path, &Batch::of(&queries));
    assert!((400..500).contains(&status), "{status} {answer}");
    assert!(seconds < 10.0, "took {seconds} s");
    // 5,000 queries of k = 10 fit a response (about 3.4 MB of answer): answered, within the
    // 6 MB a Lambda response may carry.
    let queries = sample_queries(5_000, 10);
    let (status, answer, _) = post_timed(&stack, &batch_path, &Batch::of(&queries));
    assert_eq!(status, 200, "{}", answer["error"]);
    assert_eq!(answer["results"].as_array().map(Vec::len), Some(5_000));
    let answer_bytes = serde_json::to_string(&answer).expect("json").len();
    assert!(answer_bytes < 6 << 20, "{answer_bytes} bytes");
    // One query of 10,000 hits with attributes fits, and is answered whole.
    let mut one = sample_queries(1, 10_000).remove(0);
    one.include_attributes = true;
    let (status, answer, _) =
        post_timed(&stack, &format!("/v1/indexes/{SAMPLE_INDEX}/query"), &one);
    assert_eq!(status, 200, "{}", answer["error"]);
    assert_eq!(answer["partial"], json!(false));
    let hits = answer["hits"].as_array().expect("hits");
    assert_eq!(hits.len(), 10_000);
    assert!(hits.iter().all(|hit| hit["attributes"].is_object()));
    watch.finish(Duration::from_secs(30), "answers too large");
}

#[test]
fn an_exact_batch_past_its_budget_stops_and_a_cheap_query_behind_it_is_answered() {
    let Some(stack) = Stack::from_env(
        "an_exact_batch_past_its_budget_stops_and_a_cheap_query_behind_it_is_answered",
    ) else {
        return;
    };
    let budget = budget();
    let cheap = sample_queries(1, 10).remove(0);
    let expected = embedded_answers(
        index_store(&stack, SAMPLE_INDEX),
        std::slice::from_ref(&cheap),
    )
    .remove(0)
    .hits;
    let cheap_path = format!("/v1/indexes/{SAMPLE_INDEX}/query");
    let cheap_body = &cheap;
    let (status, answer, normal_seconds) = post_timed(&stack, &cheap_path, &cheap_body);
    assert_eq!(status, 200, "{answer}");

    let watch = MemoryWatch::start();
    // 10,000 exact queries over the whole index: tens of seconds of work on the stack's debug
    // functions, against a budget of a few seconds. The answer (about 10 MB) goes to S3.
    let mut queries = sample_queries(10_000, 10);
    queries.iter_mut().for_each(|q| q.options.exact = true);
    let heavy = {
        let stack = stack.clone();
        let path = format!("/v1/indexes/{SAMPLE_INDEX}/query-batch");
        std::thread::spawn(move || {
            let heavy_body = Batch {
                output: Some("store"),
                ..Batch::of(&queries)
            };
            let started = Instant::now();
            let (status, answer, _) = post_timed(&stack, &path, &heavy_body);
            (status, answer, started.elapsed())
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    let (status, answer, cheap_seconds) = post_timed(&stack, &cheap_path, &cheap_body);
    let (heavy_status, heavy_answer, heavy_elapsed) = heavy.join().expect("heavy request");
    eprintln!(
        "heavy batch: {heavy_status} in {:.2} s (budget {} ms, stats {}); cheap query behind it: {status} in {cheap_seconds:.2} s (alone {normal_seconds:.3} s)",
        heavy_elapsed.as_secs_f64(),
        budget.as_millis(),
        heavy_answer["stats"]
    );
    // The cheap query is answered completely, within its normal latency plus what was left
    // of the heavy request's budget (with a second for the transport).
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["partial"], json!(false), "{answer}");
    let hits: Vec<Hit> = serde_json::from_value(answer["hits"].clone()).expect("hits");
    assert_eq!(hits, expected);
    assert!(
        cheap_seconds < normal_seconds + budget.as_secs_f64() + 1.0,
        "the cheap query took {cheap_seconds} s"
    );
    // The heavy batch is answered within its budget (plus two seconds to upload and parse
    // its 4 MB body), complete or naming what the deadline cut short; its answer is in S3.
    assert_eq!(heavy_status, 200, "{heavy_answer}");
    assert!(
        heavy_elapsed < budget + Duration::from_secs(2),
        "took {heavy_elapsed:?}"
    );
    let location = heavy_answer["stored"]["location"]
        .as_str()
        .expect("stored location");
    let key = location
        .strip_prefix(&format!("{}/", stack.root))
        .expect("under the stack's root");
    let root = runtime()
        .block_on(store_for_location(&stack.root))
        .expect("root store");
    let stored: Value = serde_json::from_slice(&runtime().block_on(root.get(key)).expect("read"))
        .expect("the stored answer is JSON");
    assert_eq!(stored["results"].as_array().map(Vec::len), Some(10_000));
    if heavy_answer["partial"] == json!(true) {
        let named = stored["results"]
            .as_array()
            .expect("results")
            .iter()
            .filter(|result| {
                result["missing_partitions"]
                    .as_array()
                    .is_some_and(|m| !m.is_empty())
            })
            .count();
        assert!(named > 0, "a partial answer names its missing partitions");
    }
    // Nothing is left computing: cheap queries right after answer at their normal speed.
    for _ in 0..10 {
        let (status, answer, seconds) = post_timed(&stack, &cheap_path, &cheap_body);
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["partial"], json!(false), "{answer}");
        assert!(
            seconds < 1.0,
            "a cheap query after the heavy one took {seconds} s"
        );
    }
    watch.finish(Duration::from_secs(30), "exact batch past its budget");
}

#[test]
fn require_complete_503s_arrive_within_the_budget() {
    let Some(stack) = Stack::from_env("require_complete_503s_arrive_within_the_budget") else {
        return;
    };
    let budget = budget();
    let watch = MemoryWatch::start();
    // As many exact queries as a batch may hold: exact mode scores every row directly, and
    // 4,000 such queries now finish within the stack's budget. k = 1 keeps the answer of
    // 10,000 queries within a response.
    let mut queries = sample_queries(10_000, 1);
    queries.iter_mut().for_each(|q| q.options.exact = true);
    let (status, answer, seconds) = post_timed(
        &stack,
        &format!("/v1/indexes/{SAMPLE_INDEX}/query-batch"),
        &Batch {
            require_complete: true,
            ..Batch::of(&queries)
        },
    );
    eprintln!("require_complete batch: {status} in {seconds:.2} s");
    // The deadline cuts this batch short: a 503 naming the missing partitions, sent within the
    // budget (a second for the 4 MB upload and the emulator's relay).
    assert_eq!(status, 503, "{answer}");
    assert_eq!(answer["error"]["code"], json!("incomplete"), "{answer}");
    assert!(
        seconds < budget.as_secs_f64() + 1.0,
        "the 503 came after {seconds} s"
    );
    watch.finish(Duration::from_secs(5), "require_complete batch");
}

/// The first 1,000 sample vectors with one integer column `big`: rows 0-9 hold 2^53 − 1,
/// rows 10-19 hold −(2^53 − 1), the others their row number.
fn build_big_integer_index(stack: &Stack, name: &str) {
    let vectors =
        squash_cli::input_files::read_vectors(&sample_dir().join("base.fvecs")).expect("vectors");
    let num_vectors = 1000;
    let max = squash_core::attributes::MAX_INTEGER_MAGNITUDE as f64;
    let mut table = AttributeTable::with_columns(1, num_vectors);
    table.columns[0] = (0..num_vectors)
        .map(|row| match row {
            0..=9 => max,
            10..=19 => -max,
            _ => row as f64,
        })
        .collect();
    table.num_rows = num_vectors;
    let input = BuildInput {
        dim: vectors.dim,
        vectors: vectors.data[..num_vectors * vectors.dim].to_vec(),
        ids: (0..num_vectors as u64).collect(),
        schema: AttributeSchema {
            columns: vec![AttributeColumn {
                name: "big".into(),
                kind: AttributeKind::Integer,
                dictionary: vec![],
            }],
        },
        attributes: table,
    };
    let mut params = BuildParams::new(Metric::Cosine, "1");
    params.num_partitions = Some(4);
    runtime()
        .block_on(write_index(
            index_store(stack, name),
            input,
            params,
            Arc::new(NoProgress),
        ))
        .expect("build into S3");
}

#[test]
fn integers_beyond_2_53_compare_exactly_and_builds_refuse_what_they_cannot_hold() {
    let Some(stack) = Stack::from_env(
        "integers_beyond_2_53_compare_exactly_and_builds_refuse_what_they_cannot_hold",
    ) else {
        return;
    };
    let name = format!("bigint-{}", std::process::id());
    build_big_integer_index(&stack, &name);
    let vector = sample_queries(1, 10).remove(0).vector;
    let ids_for = |filter: Value| -> Vec<u64> {
        let (status, answer) = stack.post(
            &format!("/v1/indexes/{name}/query"),
            &json!({"vector": vector, "k": 10, "filter": filter, "options": {"min_partitions": 4}}),
        );
        assert_eq!(status, 200, "{filter}: {answer}");
        assert_eq!(answer["partial"], json!(false), "{answer}");
        let mut ids: Vec<u64> = answer["hits"]
            .as_array()
            .expect("hits")
            .iter()
            .map(|hit| hit["id"].as_u64().expect("id"))
            .collect();
        ids.sort_unstable();
        ids
    };
    let top: Vec<u64> = (0..10).collect();
    let bottom: Vec<u64> = (10..20).collect();
    // 2^53 + 1 would round to 2^53 as an f64; no row holds it, nor 2^53.
    assert!(ids_for(json!({"big": 9_007_199_254_740_993u64})).is_empty());
    assert!(ids_for(json!({"big": 9_007_199_254_740_992u64})).is_empty());
    assert_eq!(ids_for(json!({"big": 9_007_199_254_740_991u64})), top);
    assert_eq!(
        ids_for(json!({"big": {"$gt": 9_007_199_254_740_990u64}})),
        top
    );
    assert_eq!(
        ids_for(json!({"big": {"$gte": 9_007_199_254_740_991u64}})),
        top
    );
    assert!(ids_for(json!({"big": {"$gt": 9_007_199_254_740_991u64}})).is_empty());
    assert_eq!(
        ids_for(json!({"big": {"$lte": -9_007_199_254_740_991i64}})),
        bottom
    );
    assert!(ids_for(json!({"big": {"$lt": -9_007_199_254_740_991i64}})).is_empty());
    assert_eq!(
        ids_for(json!({"big": {"$ne": 9_007_199_254_740_993u64}})).len(),
        10
    );
    assert_eq!(ids_for(json!({"big": {"$lt": u64::MAX}})).len(), 10);

    // A build given 2^53 refuses it, naming the cell, and writes nothing.
    let dir = std::env::temp_dir().join(format!("squash-bigint-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let attributes = dir.join("attributes.csv");
    let mut csv = String::from("id,big\n");
    for row in 0..20_000 {
        let value: i64 = if row == 7 { 1 << 53 } else { row };
        csv.push_str(&format!("{row},{value}\n"));
    }
    std::fs::write(&attributes, csv).expect("csv written");
    let refused_name = format!("bigint-refused-{}", std::process::id());
    let output = Command::new(squash_cli())
        .arg("build")
        .arg("--vectors")
        .arg(sample_dir().join("base.fvecs"))
        .arg("--attributes")
        .arg(&attributes)
        .args(["--metric", "cosine", "--out"])
        .arg(format!("{}/{refused_name}", stack.root))
        .output()
        .expect("squash build runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("column 'big'"), "{stderr}");
    assert!(stderr.contains("2^53 − 1"), "{stderr}");
    assert!(list_objects(&index_store(&stack, &refused_name), "").is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}
