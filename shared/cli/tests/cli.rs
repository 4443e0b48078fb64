//! The `squash` command line: happy path and clear errors for bad input, with no index
//! written on error.

use std::path::Path;
use std::process::{Command, Output};

fn squash(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_squash"))
        .args(args)
        .output()
        .expect("run squash")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).to_string()
}

fn write_fvecs(path: &Path, rows: &[Vec<f32>]) {
    let mut bytes = Vec::new();
    for row in rows {
        bytes.extend_from_slice(&(row.len() as i32).to_le_bytes());
        for value in row {
            bytes.extend_from_slice(&value.to_le_bytes());
        }
    }
    std::fs::write(path, bytes).expect("write fvecs");
}

fn sample_rows(num_rows: usize, dim: usize) -> Vec<Vec<f32>> {
    (0..num_rows)
        .map(|i| {
            (0..dim)
                .map(|d| ((i * 31 + d * 17) % 97) as f32 / 97.0 + (i % 5) as f32)
                .collect()
        })
        .collect()
}

fn write_attributes(path: &Path, num_rows: usize) {
    let mut text = String::from("id,year,genre\n");
    for i in 0..num_rows {
        let genre = ["drama", "comedy", "noir"][i % 3];
        text.push_str(&format!("{},{},{genre}\n", 1000 + i, 2000 + i % 25));
    }
    std::fs::write(path, text).expect("write csv");
}

#[test]
fn build_query_inspect_happy_path() {
    let folder = tempfile::tempdir().expect("tempdir");
    let vectors = folder.path().join("base.fvecs");
    let attributes = folder.path().join("attrs.csv");
    let index = folder.path().join("index");
    write_fvecs(&vectors, &sample_rows(600, 12));
    write_attributes(&attributes, 600);
    let built = squash(&[
        "build",
        "--vectors",
        vectors.to_str().unwrap(),
        "--attributes",
        attributes.to_str().unwrap(),
        "--metric",
        "l2",
        "--partitions",
        "3",
        "--out",
        index.to_str().unwrap(),
    ]);
    assert!(built.status.success(), "build failed: {}", stderr(&built));
    let summary = String::from_utf8_lossy(&built.stdout);
    assert!(summary.contains("partitions     3"), "{summary}");

    let queried = squash(&[
        "query",
        "--index",
        index.to_str().unwrap(),
        "--vector-file",
        vectors.to_str().unwrap(),
        "--row",
        "4",
        "--k",
        "5",
        "--filter",
        r#"{"genre": {"$eq": "noir"}, "year": {"$gte": 2010}}"#,
        "--json",
    ]);
    assert!(
        queried.status.success(),
        "query failed: {}",
        stderr(&queried)
    );
    let response: serde_json::Value = serde_json::from_slice(&queried.stdout).expect("json output");
    let hits = response["hits"].as_array().expect("hits");
    assert_eq!(hits.len(), 5);
    for hit in hits {
        assert_eq!(hit["attributes"]["genre"], "noir");
        assert!(hit["attributes"]["year"].as_i64().expect("year") >= 2010);
    }

    let inspected = squash(&["inspect", "--index", index.to_str().unwrap(), "--json"]);
    assert!(
        inspected.status.success(),
        "inspect failed: {}",
        stderr(&inspected)
    );
    let report: serde_json::Value = serde_json::from_slice(&inspected.stdout).expect("json output");
    assert_eq!(
        report["partitions"].as_array().expect("partitions").len(),
        3
    );
}

#[test]
fn bad_inputs_fail_clearly_and_write_nothing() {
    let folder = tempfile::tempdir().expect("tempdir");
    let vectors = folder.path().join("base.fvecs");
    let attributes = folder.path().join("attrs.csv");
    write_fvecs(&vectors, &sample_rows(50, 4));
    write_attributes(&attributes, 49);
    let index = folder.path().join("index");
    let run_build = |extra: &[&str]| {
        let mut args = vec![
            "build",
            "--vectors",
            vectors.to_str().unwrap(),
            "--out",
            index.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        squash(&args)
    };

    let mismatch = run_build(&["--attributes", attributes.to_str().unwrap()]);
    assert!(!mismatch.status.success());
    assert!(
        stderr(&mismatch).contains("49") && stderr(&mismatch).contains("50"),
        "{}",
        stderr(&mismatch)
    );

    let bad_metric = run_build(&["--metric", "manhattan"]);
    assert!(!bad_metric.status.success());
    assert!(
        stderr(&bad_metric).contains("metric"),
        "{}",
        stderr(&bad_metric)
    );

    let too_many = run_build(&["--partitions", "51"]);
    assert!(!too_many.status.success());
    assert!(
        stderr(&too_many).contains("partitions"),
        "{}",
        stderr(&too_many)
    );

    let mut truncated = std::fs::read(&vectors).expect("read");
    truncated.truncate(truncated.len() - 3);
    std::fs::write(&vectors, truncated).expect("write");
    let truncated_run = run_build(&[]);
    assert!(!truncated_run.status.success());
    assert!(
        stderr(&truncated_run).contains("record 49"),
        "{}",
        stderr(&truncated_run)
    );

    assert!(
        !index.join("manifest.sqsh").exists(),
        "no index is written on error"
    );

    let missing = squash(&[
        "query",
        "--index",
        index.to_str().unwrap(),
        "--vector-file",
        vectors.to_str().unwrap(),
    ]);
    assert!(!missing.status.success());
    assert!(
        stderr(&missing).contains("not found: index"),
        "{}",
        stderr(&missing)
    );
}

#[test]
fn build_refuses_index_names_the_service_cannot_serve() {
    let dir = tempfile::tempdir().expect("tempdir");
    let vectors = dir.path().join("base.fvecs");
    write_fvecs(&vectors, &sample_rows(50, 4));
    for bad_name in ["bad name", "caf\u{e9}", "a+b", ".hidden"] {
        let out = dir.path().join(bad_name);
        let built = squash(&[
            "build",
            "--vectors",
            vectors.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(!built.status.success(), "{bad_name:?} was accepted");
        let message = stderr(&built);
        assert!(message.contains("out"), "{bad_name:?}: {message}");
        assert!(
            message.contains("not a valid index name"),
            "{bad_name:?}: {message}"
        );
        assert!(!out.exists(), "{bad_name:?}: nothing may be written");
    }
}
