//! `stack-batch`: large batches through the local stack (`scripts/local-stack.sh up`, then
//! `eval "$(scripts/local-stack.sh env)"`), against an index already built into the stack's
//! S3 (`squash build ... --out $SQUASH_ROOT/NAME`).
//!
//! For each batch size, puts a batch of the workloads' queries (cycled to the size) under
//! `_batches/` in the stack's S3 and sends a request naming it (`queries_from`) with
//! `"output": "store"` to the coordinator's function URL, twice (the first on cold workers for
//! a fresh index), reads each stored answer back from S3 and compares every query's hits with
//! the embedded path's over the same index. Reports the status, wall time, invocations, split
//! parts, cold starts and whether the answer is complete and equal.
//!
//! Usage: `cargo run --release -p squash-tests --bin stack-batch -- --index glove
//!         --workloads ../shared/data/glove-6b-50-angular/workloads.json
//!         --sizes 10,100,1000,10000 [--k 10] [--target-invocation-ms MS] [--json FILE]`

use std::path::PathBuf;
use std::time::Instant;

use serde_json::{json, Value};
use squash_cli::usage::requests_from_workloads;
use squash_core::protocol::{BatchResponse, QueryRequest, QueryResponse, SearchOptions};
use squash_service::embedded::{EmbeddedConfig, EmbeddedIndex};
use squash_storage::{store_for_location, BlobStore};
use squash_tests::Stack;

const USAGE: &str = "usage: stack-batch --index NAME --workloads FILE --sizes 10,100,1000 [--k 10] [--target-invocation-ms MS] [--json FILE]";

struct Args {
    index: String,
    workloads: PathBuf,
    sizes: Vec<usize>,
    k: usize,
    target_invocation_ms_opt: Option<u64>,
    json_path_opt: Option<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut index = None;
    let mut workloads = None;
    let mut sizes = Vec::new();
    let mut k = 10;
    let mut target_invocation_ms_opt = None;
    let mut json_path_opt = None;
    let mut iter = std::env::args().skip(1);
    while let Some(arg) = iter.next() {
        let mut value = || iter.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--index" => index = Some(value()?),
            "--workloads" => workloads = Some(PathBuf::from(value()?)),
            "--sizes" => {
                sizes = value()?
                    .split(',')
                    .map(|n| n.trim().parse::<usize>().ok().filter(|&n| n > 0))
                    .collect::<Option<Vec<_>>>()
                    .ok_or("--sizes needs positive numbers, comma-separated")?
            }
            "--k" => {
                k = value()?
                    .parse()
                    .ok()
                    .filter(|&k: &usize| k > 0)
                    .ok_or("--k needs a positive number")?
            }
            "--target-invocation-ms" => {
                target_invocation_ms_opt = Some(
                    value()?
                        .parse()
                        .ok()
                        .filter(|&ms: &u64| ms > 0)
                        .ok_or("--target-invocation-ms needs a positive number")?,
                )
            }
            "--json" => json_path_opt = Some(value()?),
            "-h" | "--help" => return Err(USAGE.to_string()),
            other => return Err(format!("unknown argument '{other}' (see --help)")),
        }
    }
    Ok(Args {
        index: index.ok_or("--index is required")?,
        workloads: workloads.ok_or("--workloads is required")?,
        sizes: if sizes.is_empty() {
            vec![10, 100, 1_000, 10_000]
        } else {
            sizes
        },
        k,
        target_invocation_ms_opt,
        json_path_opt,
    })
}

/// Reads the answer a batch wrote to the store.
async fn stored_answer(
    root: &dyn BlobStore,
    index: &str,
    answer: &Value,
) -> Result<BatchResponse, String> {
    let request_id = answer["stats"]["request_id"]
        .as_str()
        .ok_or("the answer carries no request id")?;
    let bytes = root
        .get(&format!("_answers/{index}/{request_id}.json"))
        .await
        .map_err(|e| e.to_string())?;
    serde_json::from_slice(&bytes).map_err(|e| format!("stored answer: {e}"))
}

/// Counts the queries whose stored answer is partial, and the complete ones whose hits differ
/// from `expected`.
fn compare(stored: &BatchResponse, expected: &[QueryResponse]) -> (usize, usize) {
    let partial = stored.results.iter().filter(|r| r.partial).count();
    let wrong = stored
        .results
        .iter()
        .zip(expected)
        .filter(|(got, want)| !got.partial && got.hits != want.hits)
        .count()
        + expected.len().abs_diff(stored.results.len());
    (partial, wrong)
}

fn main() {
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}");
            std::process::exit(2);
        }
    };
    let Some(stack) = Stack::from_env("stack-batch") else {
        std::process::exit(2);
    };
    let (_, requests) = requests_from_workloads(
        &args.workloads,
        None,
        None,
        args.k,
        &SearchOptions::default(),
    )
    .expect("workload queries");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let embedded = runtime.block_on(async {
        let store = store_for_location(&format!("{}/{}", stack.root, args.index))
            .await
            .expect("store");
        EmbeddedIndex::open_store(store, EmbeddedConfig::default())
            .await
            .expect("open the index in the stack's S3")
    });
    // The stack's root, where batches are put and answers read back.
    let root = runtime
        .block_on(store_for_location(&stack.root))
        .expect("the stack's root store");
    let path = format!("/v1/indexes/{}/query-batch", args.index);
    let mut points = Vec::new();
    for &size in &args.sizes {
        let queries: Vec<QueryRequest> = requests.iter().cycle().take(size).cloned().collect();
        let expected = runtime
            .block_on(embedded.query_batch(&queries))
            .expect("embedded answers");
        for attempt in ["first", "second"] {
            // A batch of thousands of queries is larger than a request body may be (6 MB): it
            // goes to the store first, as a client would put it, and the request names it.
            let object_name = format!("stack-batch-{size}.json");
            let queries_json = serde_json::to_vec(&queries).expect("queries encode");
            runtime
                .block_on(root.put(
                    &format!("_batches/{}/{object_name}", args.index),
                    queries_json,
                ))
                .expect("batch put in the store");
            let mut body = json!({"queries_from": object_name, "output": "store"});
            if let Some(ms) = args.target_invocation_ms_opt {
                body["target_invocation_ms"] = json!(ms);
            }
            let started = Instant::now();
            let (status, answer) = stack.post(&path, &body);
            let seconds = started.elapsed().as_secs_f64();
            let (partial, wrong, error) = if status == 200 {
                match runtime.block_on(stored_answer(&*root, &args.index, &answer)) {
                    Ok(stored) => {
                        let (partial, wrong) = compare(&stored, &expected);
                        (partial, wrong, Value::Null)
                    }
                    Err(message) => (size, 0, json!(message)),
                }
            } else {
                (size, 0, answer["error"].clone())
            };
            let stats = &answer["stats"];
            let point = json!({
                "batch_size": size,
                "attempt": attempt,
                "status": status,
                "seconds": (seconds * 1000.0).round() / 1000.0,
                "invocations": stats["invocations"],
                "split_invocations": stats["split_invocations"],
                "worker_cold_starts": stats["worker_cold_starts"],
                "plan_ms": stats["plan_ms"],
                "worker_billed_ms": stats["worker_billed_ms"],
                "partial_queries": partial,
                "wrong_queries": wrong,
                "error": error,
            });
            eprintln!("{point}");
            points.push(point);
        }
    }
    let report = json!({
        "index": args.index,
        "k": args.k,
        "target_invocation_ms": args.target_invocation_ms_opt,
        "points": points,
    });
    println!("{}", serde_json::to_string_pretty(&report).expect("report"));
    if let Some(path) = args.json_path_opt {
        std::fs::write(&path, report.to_string()).expect("json written");
    }
}
