//! A bounded load test on loopback through the local stack (`scripts/local-stack.sh up`):
//! the sample's queries with their mixed filters, `SQUASH_LOAD_QUERIES` of them (default
//! 5,000) over 16 keep-alive connections, stopped after 120 s at most. Every answer must be
//! complete and equal to the embedded path's, and every function process's peak resident
//! memory must stay under the function memory the stack gives it (what Lambda would enforce;
//! the worker's partition cache is held to `SQUASH_CACHE_BYTES` inside it).
//!
//! `cargo run -p squash-tests --bin stack-bench -- --load 5000` runs a longer one and prints
//! the same report.

use std::time::Duration;

use serde_json::json;
use squash_tests::loopback::{memory_json, run_load, sample_load_queries, stack_function_memory};
use squash_tests::Stack;

const SAMPLE_INDEX: &str = "glove-20k";
const CONCURRENCY: usize = 16;
const MAX_DURATION: Duration = Duration::from_secs(120);

#[test]
fn bounded_load_is_answered_completely_within_memory_bounds() {
    let Some(stack) = Stack::from_env("bounded_load_is_answered_completely_within_memory_bounds")
    else {
        return;
    };
    let num_queries: usize = std::env::var("SQUASH_LOAD_QUERIES")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(5_000);
    let queries = sample_load_queries(&stack, SAMPLE_INDEX);
    let report = run_load(
        &stack.api,
        &format!("/v1/indexes/{SAMPLE_INDEX}/query"),
        &queries,
        num_queries,
        CONCURRENCY,
        MAX_DURATION,
    )
    .expect("load run");
    let memory = stack_function_memory().expect("function processes");
    let bound_mib: u64 = std::env::var("SQUASH_STACK_FUNCTION_MEMORY_MIB")
        .ok()
        .and_then(|text| text.parse().ok())
        .expect("SQUASH_STACK_FUNCTION_MEMORY_MIB (scripts/local-stack.sh env)");
    let summary = json!({
        "load": report.to_json(),
        "function_memory_bound_mib": bound_mib,
        "worker_cache_bytes": std::env::var("SQUASH_STACK_CACHE_BYTES").ok(),
        "processes": memory_json(&memory),
    });
    eprintln!(
        "{}",
        serde_json::to_string_pretty(&summary).expect("summary")
    );
    assert!(!report.stopped_by_time, "{summary}");
    assert_eq!(report.num_queries, num_queries, "{summary}");
    assert_eq!(report.num_errors, 0, "{summary}");
    assert_eq!(report.num_partial, 0, "{summary}");
    assert_eq!(report.num_wrong, 0, "{summary}");
    // The split functions are there once a large batch has used them (watch starts them on
    // first use): the coordinator and the four worker slots always are.
    let slots = memory
        .iter()
        .filter(|p| !p.function.starts_with("worker-split-"))
        .count();
    assert_eq!(slots, 5, "coordinator and four workers: {summary}");
    for process in &memory {
        assert!(
            process.peak_rss_kib < bound_mib * 1024,
            "{} peaked at {} KiB: {summary}",
            process.function,
            process.peak_rss_kib
        );
    }
}
