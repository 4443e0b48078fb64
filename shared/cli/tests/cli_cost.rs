//! `squash synth`, `squash build` and `squash cost` chained on a tiny synthetic set: the
//! generated folder builds into an index, and the cost report counts what queries read.

use std::process::{Command, Output};

fn squash(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_squash"))
        .args(args)
        .output()
        .expect("run squash")
}

fn check(output: &Output, what: &str) {
    assert!(
        output.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn synth_build_and_cost_report_counted_usage() {
    let folder = tempfile::tempdir().expect("tempdir");
    let data = folder.path().join("synth");
    let index = folder.path().join("index");
    let (data, index) = (data.to_str().unwrap(), index.to_str().unwrap());
    check(
        &squash(&[
            "synth",
            "--num-vectors",
            "2000",
            "--dim",
            "16",
            "--clusters",
            "10",
            "--num-queries",
            "30",
            "--seed",
            "4",
            "--out",
            data,
        ]),
        "synth",
    );
    let base = format!("{data}/base.fvecs");
    let attributes = format!("{data}/base_attrs.csv");
    check(
        &squash(&[
            "build",
            "--vectors",
            &base,
            "--attributes",
            &attributes,
            "--metric",
            "l2",
            "--partitions",
            "6",
            "--out",
            index,
        ]),
        "build",
    );
    let workloads = format!("{data}/workloads.json");
    let evaluated = squash(&[
        "eval",
        "--index",
        index,
        "--workloads",
        &workloads,
        "--exact",
        "--json",
    ]);
    check(&evaluated, "eval");
    let eval: serde_json::Value = serde_json::from_slice(&evaluated.stdout).expect("eval json");
    let eval_workloads = eval["workloads"].as_array().expect("workloads");
    assert_eq!(eval_workloads.len(), 4);
    for workload in eval_workloads {
        // Exact search against exact ground truth: the generated truth is right.
        assert_eq!(workload["recall"], 1.0, "{workload}");
    }

    let costed = squash(&[
        "cost",
        "--index",
        index,
        "--workloads",
        &workloads,
        "--max-queries",
        "20",
        "--batch-size",
        "25",
        "--cold-queries",
        "3",
        "--json",
    ]);
    check(&costed, "cost");
    let report: serde_json::Value = serde_json::from_slice(&costed.stdout).expect("cost json");
    assert_eq!(report["num_queries"], 80);
    assert_eq!(report["index"]["num_partitions"], 6);
    assert!(report["storage_per_month"].as_f64().expect("storage") > 0.0);
    let phases = report["phases"].as_array().expect("phases");
    let phase = |cache: &str, mode: &str| {
        phases
            .iter()
            .find(|p| p["cache"] == cache && p["mode"] == mode)
            .unwrap_or_else(|| panic!("no {cache} {mode} phase in {report}"))
    };
    for p in phases {
        assert!(
            p["per_query"]["invocations"].as_f64().expect("invocations") > 0.0,
            "{p}"
        );
        assert!(
            p["cost_per_million"]["total"].as_f64().expect("cost") > 0.0,
            "{p}"
        );
        assert_eq!(p["partial_answers"], 0, "{p}");
        assert_eq!(p["store_counts_agree"], true, "{p}");
    }
    let cold = phase("cold", "single");
    assert_eq!(cold["num_queries"], 3);
    // A cold query reads the manifest, the coordinator object and every partition it probes:
    // whole (one GET) or by range (the tail, then at least one run of clusters).
    let cold_gets = cold["per_query"]["s3_gets"].as_f64().expect("gets");
    let probed = cold["per_query"]["partitions_probed"]
        .as_f64()
        .expect("probed");
    assert!(cold_gets >= 2.0 + probed, "{cold}");
    assert!(cold["per_query"]["s3_bytes"].as_f64().expect("bytes") > 0.0);
    let warm = phase("warm", "single");
    assert_eq!(warm["num_queries"], 80);
    assert_eq!(warm["per_query"]["partition_gets"], 0.0, "{warm}");
    let warm_batch = phase("warm", "batch");
    assert_eq!(warm_batch["num_requests"], 4);
    assert_eq!(
        warm_batch["per_query"]["partition_gets"], 0.0,
        "{warm_batch}"
    );
    // A batch spreads its invocations over its queries.
    assert!(
        warm_batch["per_query"]["invocations"].as_f64().unwrap()
            < warm["per_query"]["invocations"].as_f64().unwrap()
    );
    // Single queries pay API Gateway; batch jobs are direct invocations.
    assert!(warm["cost_per_million"]["api_gateway"].as_f64().unwrap() > 0.0);
    assert_eq!(warm_batch["cost_per_million"]["api_gateway"], 0.0);

    // Each invocation alone, in its own container, under a flat tree: every slot's container
    // is warmed by the warm-up, no answer is partial, and the coordinator is billed its
    // planning and the slowest invocation, never more than its wall time.
    let alone = squash(&[
        "cost",
        "--index",
        index,
        "--workloads",
        &workloads,
        "--max-queries",
        "5",
        "--batch-size",
        "10",
        "--cold-queries",
        "1",
        "--slots",
        "3",
        "--invocations-alone",
        "--worker-memory-mb",
        "4096",
        "--json",
    ]);
    check(&alone, "cost --invocations-alone");
    let report: serde_json::Value = serde_json::from_slice(&alone.stdout).expect("cost json");
    assert_eq!(report["invocations_alone"], true, "{report}");
    assert_eq!(report["branching"], 3, "{report}");
    assert_eq!(report["memory"]["worker_mb"], 4096, "{report}");
    for p in report["phases"].as_array().expect("phases") {
        assert_eq!(p["partial_answers"], 0, "{p}");
        assert_eq!(p["store_counts_agree"], true, "{p}");
        let invocations = p["per_query"]["invocations"].as_f64().expect("invocations");
        assert!(invocations > 0.0 && invocations <= 3.0, "{p}");
        if p["cache"] == "warm" {
            assert_eq!(p["per_query"]["partition_gets"], 0.0, "{p}");
        }
        if p["mode"] == "single" {
            let billed = p["per_query"]["coordinator_billed_ms"].as_f64().unwrap();
            let wall = p["request_latency_ms"]["mean"].as_f64().unwrap();
            assert!(billed <= wall.ceil() + 1.0, "{p}");
        }
    }
}

/// A worker memory Lambda does not offer is refused by name, before any query runs.
#[test]
fn cost_refuses_a_worker_memory_lambda_does_not_offer() {
    for memory in ["64", "20000"] {
        let output = squash(&[
            "cost",
            "--index",
            "/nonexistent",
            "--workloads",
            "/nonexistent/workloads.json",
            "--worker-memory-mb",
            memory,
        ]);
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("worker-memory-mb"), "{stderr}");
    }
}
