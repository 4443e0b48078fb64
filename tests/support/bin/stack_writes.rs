//! `stack-writes`: what writes cost through the local stack (`scripts/local-stack.sh up`, then
//! `eval "$(scripts/local-stack.sh env)"`): HTTP to the coordinator under `cargo lambda
//! watch`, the write log in SeaweedFS.
//!
//! Builds a 4,000-row index of the committed sample into the stack's S3 (name `writes-bench`),
//! then measures:
//! - write-to-visible latency: an upsert of one row, then a query for that row's vector with
//!   the write's token (`min_token`), timed from the upsert's start to the query's answer,
//!   `--visible` times; every query must return the written row first;
//! - write throughput of one writer and of `--writers` writers at once, per rows per call
//!   (`--batches`), in rows per second.
//!
//! Usage: `cargo run -p squash-tests --bin stack-writes -- [--visible 100] [--batches 1,10,100,1000]
//!         [--writers 8] [--json FILE]`

use std::time::Instant;

use serde_json::{json, Value};
use squash_cli::input_files;
use squash_tests::stack_faults::build_sample_subset;
use squash_tests::{quantile, sample_dir, Stack};

const USAGE: &str =
    "usage: stack-writes [--visible N] [--batches 1,10,100,1000] [--writers 8] [--json FILE]";
const INDEX: &str = "writes-bench";
const BUILT: usize = 4000;

fn main() {
    if let Err(message) = run() {
        eprintln!("stack-writes: {message}");
        std::process::exit(2);
    }
}

fn numbers(text: &str) -> Result<Vec<usize>, String> {
    text.split(',')
        .map(|n| n.trim().parse::<usize>().ok().filter(|&n| n > 0))
        .collect::<Option<Vec<_>>>()
        .ok_or(format!(
            "expected positive numbers, comma-separated: {text}"
        ))
}

fn run() -> Result<(), String> {
    let mut visible = 100;
    let mut batches = vec![1, 10, 100, 1000];
    let mut writers = 8;
    let mut json_path_opt: Option<String> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value\n{USAGE}"));
        match arg.as_str() {
            "--visible" => visible = numbers(&value()?)?[0],
            "--batches" => batches = numbers(&value()?)?,
            "--writers" => writers = numbers(&value()?)?[0],
            "--json" => json_path_opt = Some(value()?),
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    let stack = Stack::from_vars()?;
    let vectors =
        input_files::read_vectors(&sample_dir().join("base.fvecs")).map_err(|e| e.to_string())?;
    build_sample_subset(&stack, INDEX, BUILT, 0, "wb1");

    let mut latencies_ms = Vec::with_capacity(visible);
    for i in 0..visible {
        let id = 10_000_000 + i as u64;
        let vector = vectors
            .row(BUILT + i % (vectors.num_vectors - BUILT))
            .to_vec();
        let started = Instant::now();
        let (status, answer) = stack.post(
            &format!("/v1/indexes/{INDEX}/upsert"),
            &json!({"rows": [{"id": id, "vector": vector}]}),
        );
        if status != 200 {
            return Err(format!("upsert answered {status}: {answer}"));
        }
        let token = answer["token"].as_u64().ok_or("no token")?;
        let (status, answer) = stack.post(
            &format!("/v1/indexes/{INDEX}/query"),
            &json!({"vector": vector, "k": 1, "min_token": token}),
        );
        let elapsed_ms = started.elapsed().as_secs_f64() * 1e3;
        if status != 200 || answer["hits"][0]["id"].as_u64() != Some(id) {
            return Err(format!(
                "write {id} not visible at token {token}: {status} {answer}"
            ));
        }
        latencies_ms.push(elapsed_ms);
    }
    let p50 = quantile(&mut latencies_ms, 0.5);
    let p99 = quantile(&mut latencies_ms, 0.99);
    println!("write-to-visible over {visible} writes: p50 {p50:.1} ms, p99 {p99:.1} ms");

    let mut throughput: Vec<Value> = Vec::new();
    let mut next_id = 20_000_000u64;
    for &rows_per_call in &batches {
        for &num_writers in &[1, writers] {
            let calls_per_writer = (2000 / rows_per_call).clamp(3, 50);
            let started = Instant::now();
            let handles: Vec<_> = (0..num_writers)
                .map(|writer| {
                    let stack = stack.clone();
                    let vectors = vectors.clone();
                    let first = next_id + (writer * calls_per_writer * rows_per_call) as u64;
                    std::thread::spawn(move || -> Result<usize, String> {
                        for call in 0..calls_per_writer {
                            let rows: Vec<Value> = (0..rows_per_call)
                                .map(|r| {
                                    let id = first + (call * rows_per_call + r) as u64;
                                    json!({"id": id, "vector": vectors.row(id as usize % vectors.num_vectors)})
                                })
                                .collect();
                            let (status, answer) = stack.post(
                                &format!("/v1/indexes/{INDEX}/upsert"),
                                &json!({ "rows": rows }),
                            );
                            if status != 200 {
                                return Err(format!("upsert answered {status}: {answer}"));
                            }
                        }
                        Ok(calls_per_writer * rows_per_call)
                    })
                })
                .collect();
            let mut rows = 0;
            for handle in handles {
                rows += handle.join().map_err(|_| "writer panicked")??;
            }
            next_id += rows as u64;
            let seconds = started.elapsed().as_secs_f64();
            let per_second = rows as f64 / seconds;
            println!(
                "{rows_per_call:>5} rows per call, {num_writers} writer(s): {rows} rows in {seconds:.2} s = {per_second:.0} rows/s ({:.0} per writer)",
                per_second / num_writers as f64
            );
            throughput.push(json!({
                "rows_per_call": rows_per_call, "writers": num_writers, "rows": rows,
                "seconds": seconds, "rows_per_second": per_second,
            }));
        }
        // Fold what was written, so that each batch size starts from few unfolded rows.
        let output = std::process::Command::new(squash_tests::squash_cli())
            .args(["compact", "--index", &format!("{}/{INDEX}", stack.root)])
            .output()
            .map_err(|e| e.to_string())?;
        if !output.status.success() {
            return Err(format!(
                "compaction failed: {}",
                String::from_utf8_lossy(&output.stderr)
            ));
        }
    }
    if let Some(path) = json_path_opt {
        let report = json!({
            "write_to_visible_ms": {"p50": p50, "p99": p99, "writes": visible},
            "throughput": throughput,
        });
        std::fs::write(&path, report.to_string()).map_err(|e| e.to_string())?;
    }
    Ok(())
}
