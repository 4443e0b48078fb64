//! `stack-bench`: latency and throughput of the serverless path on the local stack
//! (`scripts/local-stack.sh up`, then `eval "$(scripts/local-stack.sh env)"`).
//!
//! Measures, through `curl` against the coordinator's function URL:
//! - cold single queries (first query on a freshly built index: S3 reads and decoding; listed
//!   apart when function processes were started for it) next to the warm repeat;
//! - warm single queries over the sample's workloads: p50/p95/p99;
//! - batch throughput (queries per second) for batches of the sample's queries;
//! - a sweep of branching factors: the same queries over all 4 worker slots with a branching
//!   of 4 (one level of workers), 3 and 2 (two levels);
//! - dollars per 1M queries (`squash_cli::cost`, AWS list prices, the SAM template's memory sizes)
//!   from the `stats` of every answer: invocations, billed milliseconds, S3 GETs.
//!
//! With `--load N`, runs only a load test instead: N queries of the sample's workloads (mixed
//! filters) over `--concurrency C` keep-alive connections (default 16), each answer checked
//! against the embedded path, stopped after 10 minutes at most; reports throughput, p50/p99
//! latency, errors and the peak memory of every function process.
//!
//! Usage: `cargo run -p squash-tests --bin stack-bench -- [--queries N] [--json FILE]`
//!        `cargo run -p squash-tests --bin stack-bench -- --load 5000 [--concurrency 16] [--json FILE]`

use std::sync::Arc;

use serde_json::{json, Value};
use squash_cli::cost::{cost_per_million_queries, RequestUsage, AWS_US_EAST_1, TEMPLATE_MEMORY};
use squash_cli::input_files;
use squash_core::index::build::NoProgress;
use squash_core::index::{BuildInput, BuildParams};
use squash_core::metric::Metric;
use squash_core::protocol::ExecutionStats;
use squash_service::write_index;
use squash_tests::loopback::{memory_json, run_load, sample_load_queries, stack_function_memory};
use squash_tests::{quantile, sample_dir, sample_workloads, workload_requests, Stack};

const SAMPLE_INDEX: &str = "glove-20k";
const COLD_TRIALS: usize = 5;

struct Args {
    num_queries: usize,
    json_path_opt: Option<String>,
    load_queries_opt: Option<usize>,
    concurrency: usize,
}

const USAGE: &str = "usage: stack-bench [--queries N] [--json FILE]\n       stack-bench --load N [--concurrency C] [--json FILE]";

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        num_queries: 200,
        json_path_opt: None,
        load_queries_opt: None,
        concurrency: 16,
    };
    let mut iter = std::env::args().skip(1);
    while let Some(arg) = iter.next() {
        match arg.as_str() {
            "--queries" => {
                args.num_queries = iter
                    .next()
                    .and_then(|v| v.parse().ok())
                    .ok_or("--queries needs a positive number")?;
            }
            "--json" => args.json_path_opt = Some(iter.next().ok_or("--json needs a file")?),
            "--load" => {
                args.load_queries_opt = Some(
                    iter.next()
                        .and_then(|v| v.parse().ok())
                        .filter(|&n: &usize| n > 0)
                        .ok_or("--load needs a positive number of queries")?,
                );
            }
            "--concurrency" => {
                args.concurrency = iter
                    .next()
                    .and_then(|v| v.parse().ok())
                    .filter(|&n: &usize| n > 0)
                    .ok_or("--concurrency needs a positive number")?;
            }
            "-h" | "--help" => return Err(USAGE.to_string()),
            other => return Err(format!("unknown argument '{other}' (see --help)")),
        }
    }
    Ok(args)
}

fn summary(latencies_s: &mut [f64]) -> Value {
    let ms = |q: f64, values: &mut [f64]| (quantile(values, q) * 1e4).round() / 10.0;
    json!({
        "n": latencies_s.len(),
        "p50_ms": ms(0.5, latencies_s),
        "p95_ms": ms(0.95, latencies_s),
        "p99_ms": ms(0.99, latencies_s),
    })
}

/// Sums the usage of answers (one request each, through API Gateway) and prices it per 1M
/// queries.
fn cost_json(usages: &[RequestUsage]) -> Value {
    let mut total = RequestUsage::default();
    for usage in usages {
        total.add(usage);
    }
    let cost =
        cost_per_million_queries(&total, usages.len() as u64, TEMPLATE_MEMORY, &AWS_US_EAST_1);
    let per_query = |value: u64| value as f64 / total.num_queries.max(1) as f64;
    json!({
        "per_query": {
            "lambda_invocations": per_query(usages.len() as u64 + total.worker_invocations),
            "coordinator_billed_ms": per_query(total.coordinator_billed_ms),
            "worker_billed_ms": per_query(total.worker_billed_ms),
            "s3_gets": per_query(total.s3_gets),
        },
        "dollars_per_million_queries": cost,
    })
}

/// Returns the usage recorded in an answer's execution stats.
fn usage_of(execution: &Value, num_queries: u64) -> RequestUsage {
    let stats: ExecutionStats =
        serde_json::from_value(execution.clone()).expect("execution stats in the answer");
    RequestUsage::from_stats(&stats, num_queries, true)
}

fn build_fresh_index(stack: &Stack, name: &str) {
    let vectors =
        input_files::read_vectors(&sample_dir().join("base.fvecs")).expect("sample vectors");
    let mut attributes =
        squash_core::attributes::AttributeTable::with_columns(0, vectors.num_vectors);
    attributes.num_rows = vectors.num_vectors;
    let build = BuildInput {
        dim: vectors.dim,
        ids: (0..vectors.num_vectors as u64).collect(),
        vectors: vectors.data,
        schema: Default::default(),
        attributes,
    };
    let mut params = BuildParams::new(Metric::Cosine, "1");
    params.num_partitions = Some(4);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let store = squash_storage::store_for_location(&format!("{}/{name}", stack.root))
            .await
            .expect("store");
        write_index(store, build, params, Arc::new(NoProgress))
            .await
            .expect("build");
    });
}

/// Runs the load test alone and returns its report.
fn load_report(stack: &Stack, num_queries: usize, concurrency: usize) -> Value {
    let queries = sample_load_queries(stack, SAMPLE_INDEX);
    let report = run_load(
        &stack.api,
        &format!("/v1/indexes/{SAMPLE_INDEX}/query"),
        &queries,
        num_queries,
        concurrency,
        std::time::Duration::from_secs(600),
    )
    .expect("load run");
    let memory = stack_function_memory().unwrap_or_else(|message| {
        eprintln!("stack-bench: no process memory: {message}");
        Vec::new()
    });
    json!({
        "load": report.to_json(),
        "function_memory_bound_mib": std::env::var("SQUASH_STACK_FUNCTION_MEMORY_MIB").ok(),
        "worker_cache_bytes": std::env::var("SQUASH_STACK_CACHE_BYTES").ok(),
        "processes": memory_json(&memory),
    })
}

fn main() {
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}");
            std::process::exit(2);
        }
    };
    let stack = match Stack::from_vars() {
        Ok(stack) => stack,
        Err(message) => {
            eprintln!("stack-bench: {message}");
            std::process::exit(2);
        }
    };
    if let Some(num_queries) = args.load_queries_opt {
        let report = load_report(&stack, num_queries, args.concurrency);
        println!("{}", serde_json::to_string_pretty(&report).expect("report"));
        if let Some(path) = args.json_path_opt {
            std::fs::write(
                &path,
                serde_json::to_string_pretty(&report).expect("report"),
            )
            .expect("report written");
        }
        return;
    }
    let (file, queries) = sample_workloads();
    let mut requests = Vec::new();
    for workload in &file.workloads {
        requests.extend(workload_requests(workload, &queries, 10));
    }
    requests.truncate(args.num_queries.max(1));
    let query_path = format!("/v1/indexes/{SAMPLE_INDEX}/query");
    let mut report = json!({});

    // Cold cache vs warm repeat, on freshly built copies of the sample.
    let (mut cold, mut warm_repeat, mut cold_containers) = (Vec::new(), Vec::new(), Vec::new());
    let mut cold_bytes = 0u64;
    let mut cold_usages = Vec::new();
    for (trial, request) in requests.iter().enumerate().take(COLD_TRIALS) {
        let name = format!("bench-cold-{}-{trial}", std::process::id());
        build_fresh_index(&stack, &name);
        let body = serde_json::to_vec(request).expect("json");
        let path = format!("/v1/indexes/{name}/query");
        let (status, answer, seconds) = stack.call_timed("POST", &path, Some(&body));
        assert_eq!(status, 200, "{answer}");
        let execution = &answer["stats"]["execution"];
        cold_bytes += execution["store_bytes_fetched"].as_u64().unwrap_or(0);
        cold_usages.push(usage_of(execution, 1));
        let containers_started = execution["worker_cold_starts"].as_u64().unwrap_or(0)
            + u64::from(execution["coordinator_cold_start"] == json!(true));
        if containers_started > 0 {
            // Functions started for this query: a cold container, not only a cold cache.
            cold_containers.push(json!({
                "ms": (seconds * 1e4).round() / 10.0,
                "containers_started": containers_started,
            }));
        } else {
            cold.push(seconds);
        }
        let (status, answer, seconds) = stack.call_timed("POST", &path, Some(&body));
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["stats"]["execution"]["store_get_requests"], json!(0));
        warm_repeat.push(seconds);
    }
    report["cold_container_single"] = json!(cold_containers);
    report["cold_cache_single"] = summary(&mut cold);
    report["cold_cache_single"]["mean_bytes_from_s3"] = json!(cold_bytes / COLD_TRIALS as u64);
    report["warm_repeat_single"] = summary(&mut warm_repeat);
    report["cold_cache_single"]["cost"] = cost_json(&cold_usages);

    // Warm single queries (the default tree; partitions as the planner picks them).
    for request in requests.iter().take(20) {
        stack.call(
            "POST",
            &query_path,
            Some(&serde_json::to_vec(request).expect("json")),
        );
    }
    let (mut latencies, mut server_ms, mut invocations) = (Vec::new(), Vec::new(), 0u64);
    let mut bytes_from_s3 = 0u64;
    let mut warm_usages = Vec::new();
    for request in &requests {
        let body = serde_json::to_vec(request).expect("json");
        let (status, answer, seconds) = stack.call_timed("POST", &query_path, Some(&body));
        assert_eq!(status, 200, "{answer}");
        latencies.push(seconds);
        let execution = &answer["stats"]["execution"];
        server_ms.push(execution["total_ms"].as_f64().unwrap_or(f64::NAN) / 1e3);
        invocations += execution["invocations"].as_u64().unwrap_or(0);
        bytes_from_s3 += execution["store_bytes_fetched"].as_u64().unwrap_or(0);
        warm_usages.push(usage_of(execution, 1));
    }
    report["warm_single"] = summary(&mut latencies);
    report["warm_single"]["server_side"] = summary(&mut server_ms);
    report["warm_single"]["mean_invocations"] = json!(invocations as f64 / requests.len() as f64);
    report["warm_single"]["bytes_from_s3"] = json!(bytes_from_s3);
    report["warm_single"]["cost"] = cost_json(&warm_usages);

    // Batch throughput.
    let batch_path = format!("/v1/indexes/{SAMPLE_INDEX}/query-batch");
    let mut batch_rows = Vec::new();
    for batch_size in [10usize, 100, requests.len()] {
        let batch_size = batch_size.min(requests.len());
        let mut seconds_total = 0.0;
        let mut num_queries = 0usize;
        let mut usages = Vec::new();
        for chunk in requests.chunks(batch_size) {
            let body = serde_json::to_vec(&json!({ "queries": chunk })).expect("json");
            let (status, answer, seconds) = stack.call_timed("POST", &batch_path, Some(&body));
            assert_eq!(status, 200, "{answer}");
            seconds_total += seconds;
            num_queries += chunk.len();
            usages.push(usage_of(&answer["stats"], chunk.len() as u64));
        }
        batch_rows.push(json!({
            "batch_size": batch_size,
            "queries": num_queries,
            "queries_per_s": (num_queries as f64 / seconds_total * 10.0).round() / 10.0,
            "cost": cost_json(&usages),
        }));
    }
    report["batch"] = json!(batch_rows);

    // Branching sweep over all four slots: 4 (one level of workers), 3 and 2 (two levels),
    // alternated query by query so drift in the machine's load hits every shape alike.
    const BRANCHINGS: [usize; 3] = [4, 3, 2];
    let mut latencies_by_branching: Vec<Vec<f64>> = vec![Vec::new(); BRANCHINGS.len()];
    let mut usages_by_branching: Vec<Vec<RequestUsage>> = vec![Vec::new(); BRANCHINGS.len()];
    let mut depth_by_branching = [0u64; BRANCHINGS.len()];
    for request in requests.iter().take(100) {
        for (position, &branching) in BRANCHINGS.iter().enumerate() {
            let mut request = request.clone();
            request.options.min_partitions = Some(4);
            request.branching = Some(branching);
            let body = serde_json::to_vec(&request).expect("json");
            let (status, answer, seconds) = stack.call_timed("POST", &query_path, Some(&body));
            assert_eq!(status, 200, "{answer}");
            let execution = &answer["stats"]["execution"];
            depth_by_branching[position] = execution["tree_depth"].as_u64().unwrap_or(0);
            latencies_by_branching[position].push(seconds);
            usages_by_branching[position].push(usage_of(execution, 1));
        }
    }
    let mut sweep = Vec::new();
    for (position, &branching) in BRANCHINGS.iter().enumerate() {
        let mut row = summary(&mut latencies_by_branching[position]);
        row["branching"] = json!(branching);
        row["tree_depth"] = json!(depth_by_branching[position]);
        row["cost"] = cost_json(&usages_by_branching[position]);
        sweep.push(row);
    }
    assert_eq!(
        depth_by_branching[0], 1,
        "branching 4 over 4 slots is one level"
    );
    assert_eq!(
        depth_by_branching[2], 2,
        "branching 2 over 4 slots is two levels"
    );
    let flat_p50 = quantile(&mut latencies_by_branching[0], 0.5);
    let deep_p50 = quantile(&mut latencies_by_branching[2], 0.5);
    report["branching_sweep"] = json!(sweep);
    report["one_level_overhead_p50_ms"] = json!(((deep_p50 - flat_p50) * 1e4).round() / 10.0);
    report["cost_assumptions"] = json!({
        "prices": AWS_US_EAST_1.source,
        "memory_mb": TEMPLATE_MEMORY,
        "billed_ms": "wall times of the debug-built functions under cargo lambda watch on this machine",
    });

    println!("{}", serde_json::to_string_pretty(&report).expect("report"));
    if let Some(path) = args.json_path_opt {
        std::fs::write(
            &path,
            serde_json::to_string_pretty(&report).expect("report"),
        )
        .expect("report written");
    }
}
