//! `squash bench` end to end on the committed sample: squash points for every workload merged
//! with a peers file, tables and plots written; bad input refused before any work.

use std::path::{Path, PathBuf};
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

fn sample() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/glove-20k")
}

fn sample_workloads() -> Vec<String> {
    let text = std::fs::read_to_string(sample().join("workloads.json")).expect("workloads.json");
    let value: serde_json::Value = serde_json::from_str(&text).expect("json");
    value["workloads"]
        .as_array()
        .expect("workloads")
        .iter()
        .map(|w| w["name"].as_str().expect("name").to_string())
        .collect()
}

fn peer_point(workload: &str, setting: &str, recall: f64, qps: f64) -> serde_json::Value {
    serde_json::json!({
        "engine": "faiss-hnsw", "dataset": "glove-20k", "workload": workload,
        "setting": setting, "recall_at_10": recall, "qps": qps, "threads": 1,
        "num_queries": 100, "build_seconds": 0.8, "index_bytes": 6_000_000
    })
}

#[test]
fn quick_bench_on_the_sample_merges_peers_and_writes_tables_and_plots() {
    let folder = tempfile::tempdir().expect("tempdir");
    let peers = folder.path().join("peers.json");
    let out = folder.path().join("out");
    let peers_file = serde_json::json!({
        "schema": "squash-bench-points/1", "date": "2026-11-29", "machine": "elsewhere",
        "points": [
            peer_point("unfiltered", "efSearch=16", 0.91, 9000.0),
            peer_point("unfiltered", "efSearch=64", 0.99, 4000.0),
        ]
    });
    std::fs::write(&peers, peers_file.to_string()).expect("write peers");
    let sample = sample();
    let output = squash(&[
        "bench",
        "--quick",
        "--data-dir",
        sample.to_str().expect("utf-8 path"),
        "--peers",
        peers.to_str().expect("utf-8 path"),
        "--out",
        out.to_str().expect("utf-8 path"),
        "--plot",
        "--max-queries",
        "20",
    ]);
    assert!(output.status.success(), "bench failed: {}", stderr(&output));

    let results: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("results.json")).expect("results.json"))
            .expect("results json");
    assert_eq!(results["schema"], "squash-bench-points/1");
    let points = results["points"].as_array().expect("points");
    let workloads = sample_workloads();
    assert_eq!(workloads.len(), 5);
    for workload in &workloads {
        let ours: Vec<&serde_json::Value> = points
            .iter()
            .filter(|p| p["engine"] == "squash" && p["workload"] == workload.as_str())
            .collect();
        // Quick mode: the fastest setting and the exact one.
        assert_eq!(ours.len(), 2, "squash points of {workload}");
        for point in ours {
            assert_eq!(point["dataset"], "glove-20k");
            assert_eq!(point["num_queries"], 20);
            assert_eq!(point["threads"], 1);
            let recall = point["recall_at_10"].as_f64().expect("recall");
            assert!(recall > 0.0 && recall <= 1.0, "{workload}: recall {recall}");
            assert!(point["qps"].as_f64().expect("qps") > 0.0);
            assert!(point["index_bytes"].as_u64().expect("bytes") > 1_000_000);
        }
    }
    let exact_recalls: Vec<f64> = points
        .iter()
        .filter(|p| p["engine"] == "squash" && p["setting"] == "exact")
        .map(|p| p["recall_at_10"].as_f64().expect("recall"))
        .collect();
    assert_eq!(
        exact_recalls,
        vec![1.0; 5],
        "exact mode finds the true top 10"
    );
    assert_eq!(
        points
            .iter()
            .filter(|p| p["engine"] == "faiss-hnsw")
            .count(),
        2
    );

    let tables = std::fs::read_to_string(out.join("tables.md")).expect("tables.md");
    assert!(
        tables.contains("| workload | squash | faiss-hnsw |"),
        "{tables}"
    );
    for workload in &workloads {
        let rows = tables
            .lines()
            .filter(|line| line.starts_with(&format!("| {workload} |")))
            .count();
        assert_eq!(rows, 1, "row of {workload} in\n{tables}");
    }
    assert!(
        tables.contains("4,000 QPS** at 0.990 (efSearch=64)"),
        "{tables}"
    );
    assert!(
        tables.contains("measured on elsewhere, 2026-11-29"),
        "{tables}"
    );

    for workload in &workloads {
        let plot = out.join("plots").join(format!("glove-20k__{workload}.png"));
        let bytes = std::fs::read(&plot).expect("plot file");
        assert_eq!(bytes[..4], [0x89, b'P', b'N', b'G']);
    }
    let summary = String::from_utf8_lossy(&output.stdout);
    assert!(
        summary.contains("glove-20k: 20000 vectors in 1 partition(s)"),
        "{summary}"
    );
}

#[test]
fn bad_bench_input_is_refused_naming_the_file() {
    let folder = tempfile::tempdir().expect("tempdir");
    let out = folder.path().join("out");
    let sample = sample();
    let run = |peers: &Path, data_dir: &Path| {
        squash(&[
            "bench",
            "--data-dir",
            data_dir.to_str().expect("utf-8 path"),
            "--peers",
            peers.to_str().expect("utf-8 path"),
            "--out",
            out.to_str().expect("utf-8 path"),
        ])
    };
    let peers = folder.path().join("peers.json");
    std::fs::write(
        &peers,
        "{\"schema\": \"squash-bench-points/1\", \"points\": [",
    )
    .expect("write");
    let output = run(&peers, &sample);
    assert!(!output.status.success());
    let message = stderr(&output);
    assert!(message.contains("peers.json: not valid JSON"), "{message}");

    std::fs::write(&peers, r#"{"schema": "other/1", "points": []}"#).expect("write");
    let message = stderr(&run(&peers, &sample));
    assert!(
        message.contains("peers.json: unknown schema 'other/1'"),
        "{message}"
    );

    std::fs::write(
        &peers,
        r#"{"schema": "squash-bench-points/1", "points": []}"#,
    )
    .expect("write");
    let missing = folder.path().join("no-such-data");
    let output = run(&peers, &missing);
    assert!(!output.status.success());
    let message = stderr(&output);
    assert!(
        message.contains("no-such-data: no such folder"),
        "{message}"
    );

    let message = stderr(&run(&folder.path().join("absent.json"), &sample));
    assert!(message.contains("absent.json"), "{message}");
    // Nothing was built for refused input.
    assert!(!out.join("indexes").exists());
}
