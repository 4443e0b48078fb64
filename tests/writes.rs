//! Writes through the local stack: HTTP (`cargo lambda watch`) to the coordinator, the log and
//! the index in SeaweedFS. Read-your-writes with tokens, eight concurrent writers, two
//! concurrent compactions, and writers and compactions killed with `kill -9`.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use squash_cli::input_files;
use squash_core::input::{write_fvecs, VectorSet};
use squash_tests::stack_faults::{build_sample_subset, index_store};
use squash_tests::{sample_dir, squash_cli, Stack};

/// What one acknowledged write did: per id, the vector it upserted or `None` for a delete.
type Changes = Vec<(u64, Option<Vec<f32>>)>;

/// Rows of the built index (sample vectors 0..BUILT, ids equal to the row).
const BUILT: usize = 4000;

/// Builds the first `rows` sample vectors as index `name`, after removing whatever an earlier
/// run left under that name (its log included).
fn fresh_index(stack: &Stack, name: &str, rows: usize) {
    let store = index_store(stack, name);
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(async {
            for key in store.list("").await.expect("list") {
                store.delete(&key).await.expect("delete");
            }
        });
    let version = format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_nanos()
    );
    build_sample_subset(stack, name, rows, 0, &version);
}

fn sample_vectors() -> VectorSet {
    input_files::read_vectors(&sample_dir().join("base.fvecs")).expect("sample vectors")
}

/// Upserts `rows` (id, vector) over HTTP; returns the token.
fn upsert(stack: &Stack, index: &str, rows: &[(u64, Vec<f32>)]) -> u64 {
    let body = json!({
        "rows": rows.iter().map(|(id, vector)| json!({"id": id, "vector": vector})).collect::<Vec<_>>()
    });
    let (status, answer) = stack.post(&format!("/v1/indexes/{index}/upsert"), &body);
    assert_eq!(status, 200, "upsert: {answer}");
    answer["token"].as_u64().expect("token")
}

fn delete(stack: &Stack, index: &str, ids: &[u64]) -> u64 {
    let (status, answer) = stack.post(
        &format!("/v1/indexes/{index}/delete"),
        &json!({ "ids": ids }),
    );
    assert_eq!(status, 200, "delete: {answer}");
    answer["token"].as_u64().expect("token")
}

/// Fetches `ids` at least at `token`: id -> vector of the live ones. A 503 (the store held a
/// read back) is retried for up to three minutes, and so is a call that got no answer within
/// 30 s (see [`post_with_deadline`]) or one the emulator failed to relay (see
/// [`emulator_relay_failed`]).
fn fetch(stack: &Stack, index: &str, ids: &[u64], token: u64) -> HashMap<u64, Vec<f32>> {
    let mut live = HashMap::new();
    for chunk in ids.chunks(1000) {
        let started = Instant::now();
        let body = json!({ "ids": chunk, "min_token": token });
        let (status, answer) = loop {
            let answered = post_with_deadline(stack, &format!("/v1/indexes/{index}/fetch"), &body);
            match answered {
                Some((status, answer))
                    if status != 503 && !emulator_relay_failed(status, &answer) =>
                {
                    break (status, answer)
                }
                _ if started.elapsed() > Duration::from_secs(180) => {
                    panic!("fetch: no answer but 503s or silence for 3 minutes")
                }
                other => {
                    eprintln!("fetch: {other:?}; again in 2 s");
                    std::thread::sleep(Duration::from_secs(2));
                }
            }
        };
        assert_eq!(status, 200, "fetch: {answer}");
        for row in answer["rows"].as_array().expect("rows") {
            let vector: Vec<f32> = serde_json::from_value(row["vector"].clone()).expect("vector");
            live.insert(row["id"].as_u64().expect("id"), vector);
        }
    }
    live
}

/// Whether an answer is `cargo lambda watch`'s own 500 (a problem-details body whose type is
/// `https://httpstatuses.com/500`), not the coordinator's: the emulator has now and then
/// answered a fetch that way within 10 ms, the coordinator logging no call, right after a
/// compaction process was killed. The coordinator's own errors carry its error body, which this
/// never matches.
fn emulator_relay_failed(status: u16, answer: &serde_json::Value) -> bool {
    status == 500 && answer["type"] == "https://httpstatuses.com/500"
}

/// Posts `body` with `curl --max-time 30`: `None` when no answer came in that time. Right after
/// a writer process is killed, `cargo lambda watch` has now and then left a call unanswered
/// (no byte in 120 s) while the coordinator answered other calls at once; the call is then
/// made again and the silence reported.
fn post_with_deadline(
    stack: &Stack,
    path: &str,
    body: &serde_json::Value,
) -> Option<(u16, serde_json::Value)> {
    let output = Command::new("curl")
        .args([
            "-s",
            "-S",
            "--max-time",
            "30",
            "-X",
            "POST",
            "-w",
            "\n%{http_code}",
        ])
        .args([
            "-H",
            "content-type: application/json",
            "--data-binary",
            &body.to_string(),
        ])
        .arg(format!("{}{path}", stack.api))
        .output()
        .expect("curl runs");
    if !output.status.success() {
        eprintln!(
            "POST {path}: no answer within 30 s ({})",
            String::from_utf8_lossy(&output.stderr).trim()
        );
        return None;
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let (answer, status) = text.rsplit_once('\n').expect("status line");
    let status: u16 = status.trim().parse().expect("status code");
    Some((status, serde_json::from_str(answer).expect("JSON answer")))
}

fn normalized(vector: &[f32]) -> Vec<f32> {
    let norm = vector.iter().map(|v| v * v).sum::<f32>().sqrt();
    vector.iter().map(|v| v / norm).collect()
}

fn assert_same_vector(got: &[f32], want: &[f32], id: u64) {
    let want = normalized(want);
    assert!(
        got.iter().zip(&want).all(|(a, b)| (a - b).abs() < 1e-5),
        "id {id}: the stored vector is not the one written"
    );
}

#[test]
fn writes_are_read_with_their_token_and_concurrent_writers_lose_nothing() {
    let Some(stack) =
        Stack::from_env("writes_are_read_with_their_token_and_concurrent_writers_lose_nothing")
    else {
        return;
    };
    let index = "writes-http";
    fresh_index(&stack, index, BUILT);
    let vectors = sample_vectors();
    let dim = vectors.dim;
    // Read-your-writes: each new row is the nearest hit of its own vector at its token.
    for i in 0..20u64 {
        let id = 1_000_000 + i;
        let vector = vectors.row(BUILT + i as usize).to_vec();
        let token = upsert(&stack, index, &[(id, vector.clone())]);
        let (status, answer) = stack.post(
            &format!("/v1/indexes/{index}/query"),
            &json!({"vector": vector, "k": 1, "min_token": token}),
        );
        assert_eq!(status, 200, "{answer}");
        assert_eq!(
            answer["hits"][0]["id"].as_u64(),
            Some(id),
            "write {id} not visible at its token"
        );
        assert!(answer["stats"]["execution"]["token"].as_u64().unwrap() >= token);
    }
    // A token past the log's head is a 400 naming the field.
    let (status, answer) = stack.post(
        &format!("/v1/indexes/{index}/query"),
        &json!({"vector": vectors.row(0), "k": 1, "min_token": 1_000_000}),
    );
    assert_eq!(
        (status, answer["error"]["field"].as_str()),
        (400, Some("min_token")),
        "{answer}"
    );
    // A bad write is a 400 naming the field and changes nothing.
    let (status, answer) = stack.post(
        &format!("/v1/indexes/{index}/upsert"),
        &json!({"rows": [{"id": 5, "vector": vec![0.5; dim - 1]}]}),
    );
    assert_eq!(
        (status, answer["error"]["field"].as_str()),
        (400, Some("rows[0].vector")),
        "{answer}"
    );

    // Eight writers at once, each its own client thread, upserts and deletes of shared ids.
    let writers: Vec<_> = (0..8u64)
        .map(|writer| {
            let stack = stack.clone();
            let vectors = vectors.clone();
            std::thread::spawn(move || {
                let mut rng = StdRng::seed_from_u64(writer);
                let mut acknowledged: Vec<(u64, Changes)> = Vec::new();
                for call in 0..10u64 {
                    let rows: BTreeMap<u64, Vec<f32>> = (0..100u64)
                        .map(|i| {
                            let id = 2_000_000 + (i * 7 + call * 11 + writer * 100) % 1000;
                            (
                                id,
                                vectors
                                    .row(rng.random_range(0..vectors.num_vectors))
                                    .to_vec(),
                            )
                        })
                        .collect();
                    let rows: Vec<(u64, Vec<f32>)> = rows.into_iter().collect();
                    let token = upsert(&stack, index, &rows);
                    acknowledged.push((
                        token,
                        rows.into_iter().map(|(id, v)| (id, Some(v))).collect(),
                    ));
                    let ids: Vec<u64> = (0..10u64)
                        .map(|i| 2_000_000 + (i * 29 + call * 3 + writer * 5) % 1000)
                        .chain([writer * 400 + call])
                        .collect::<std::collections::BTreeSet<u64>>()
                        .into_iter()
                        .collect();
                    let token = delete(&stack, index, &ids);
                    acknowledged.push((token, ids.into_iter().map(|id| (id, None)).collect()));
                }
                acknowledged
            })
        })
        .collect();
    let mut acknowledged = Vec::new();
    for writer in writers {
        acknowledged.extend(writer.join().expect("writer"));
    }
    acknowledged.sort_by_key(|(token, _)| *token);
    let tokens: Vec<u64> = acknowledged.iter().map(|(t, _)| *t).collect();
    assert_eq!(
        tokens,
        (21..=180).collect::<Vec<u64>>(),
        "one log slot per write, no gaps"
    );
    let mut model: HashMap<u64, Vec<f32>> = (0..BUILT as u64)
        .map(|id| (id, vectors.row(id as usize).to_vec()))
        .collect();
    for i in 0..20u64 {
        model.insert(1_000_000 + i, vectors.row(BUILT + i as usize).to_vec());
    }
    for (_, changes) in &acknowledged {
        for (id, vector_opt) in changes {
            match vector_opt {
                Some(vector) => model.insert(*id, vector.clone()),
                None => model.remove(id),
            };
        }
    }
    let mut ids: Vec<u64> = (2_000_000..2_001_000).collect();
    ids.extend(0..BUILT as u64);
    let check = |stage: &str| {
        let live = fetch(&stack, index, &ids, 180);
        for id in &ids {
            match (live.get(id), model.get(id)) {
                (Some(got), Some(want)) => assert_same_vector(got, want, *id),
                (None, None) => {}
                (got, want) => panic!(
                    "{stage}: id {id}: fetched {} but the serial application of the acknowledged writes has it {}",
                    if got.is_some() { "live" } else { "missing" },
                    if want.is_some() { "live" } else { "deleted" }
                ),
            }
        }
    };
    check("before compaction");

    // Two compactions of the index at once: one switches the manifest, the other fails
    // with a conflict and changes nothing.
    let location = format!("{}/{index}", stack.root);
    let compactions: Vec<Child> = (0..2)
        .map(|_| {
            Command::new(squash_cli())
                .args(["compact", "--index", &location])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("squash compact starts")
        })
        .collect();
    let outcomes: Vec<(bool, String)> = compactions
        .into_iter()
        .map(|child| {
            let output = child.wait_with_output().expect("compaction ends");
            (
                output.status.success(),
                String::from_utf8_lossy(&output.stderr).to_string(),
            )
        })
        .collect();
    let winners = outcomes.iter().filter(|(ok, _)| *ok).count();
    assert_eq!(winners, 1, "one compaction wins: {outcomes:?}");
    let loser = &outcomes.iter().find(|(ok, _)| !ok).expect("a loser").1;
    assert!(
        loser.contains("conflict"),
        "the other fails with a clear conflict: {loser}"
    );
    check("after compaction");
    // Time travel across the compaction, answered by the version it replaced (retained a
    // day) and the log entries after that version: as of token 1, row 1,000,001 (written at
    // token 2) is not there yet; as of token 2 it is the nearest hit of its own vector.
    let as_of = |token: u64| {
        let (status, answer) = stack.post(
            &format!("/v1/indexes/{index}/query"),
            &json!({"vector": vectors.row(BUILT + 1), "k": 1, "as_of": token}),
        );
        assert_eq!(status, 200, "as of {token}: {answer}");
        (
            answer["hits"][0]["id"].as_u64(),
            answer["stats"]["execution"]["index_version"].clone(),
        )
    };
    // The coordinator reads the manifest again once its time to live (5 s) has passed.
    std::thread::sleep(Duration::from_millis(5_500));
    let (_, served) = as_of(180);
    let (before, old_version) = as_of(1);
    let (after, same_version) = as_of(2);
    assert_ne!(before, Some(1_000_001));
    assert_eq!(after, Some(1_000_001));
    assert_eq!(old_version, same_version);
    assert_ne!(
        served, old_version,
        "tokens 1 and 2 are read from the replaced version"
    );
    // The log goes on after the compaction.
    let token = upsert(&stack, index, &[(3_000_000, vectors.row(5).to_vec())]);
    assert_eq!(token, 181);
}

/// Starts `squash upsert` of the vectors in `file` (ids from `first_id`) in writes of 5 rows,
/// printing each acknowledged token.
fn start_upsert(stack: &Stack, index: &str, file: &std::path::Path, first_id: u64) -> Child {
    Command::new(squash_cli())
        .args(["upsert", "--index", &format!("{}/{index}", stack.root)])
        .arg("--vectors")
        .arg(file)
        .args([
            "--first-id",
            &first_id.to_string(),
            "--batch-rows",
            "25",
            "--print-tokens",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("squash upsert starts")
}

#[test]
fn writers_and_compactions_killed_with_sigkill_lose_no_acknowledged_write() {
    let Some(stack) =
        Stack::from_env("writers_and_compactions_killed_with_sigkill_lose_no_acknowledged_write")
    else {
        return;
    };
    let index = "writes-kill";
    // Large enough that a compaction takes a while to kill part way through.
    let built = 16_000;
    fresh_index(&stack, index, built);
    let vectors = sample_vectors();
    let dim = vectors.dim;
    let folder = tempfile::tempdir().expect("temp dir");
    let file = folder.path().join("new.fvecs");
    let new_rows = 4000;
    std::fs::write(
        &file,
        write_fvecs(&VectorSet {
            num_vectors: new_rows,
            dim,
            data: vectors.data[built * dim..(built + new_rows) * dim].to_vec(),
        }),
    )
    .expect("write fvecs");
    let mut rng = StdRng::seed_from_u64(99);
    // How long a compaction of this index takes, to kill the next ones part way through.
    upsert(&stack, index, &[(4_999_999, vectors.row(3).to_vec())]);
    let started = Instant::now();
    let output = Command::new(squash_cli())
        .args(["compact", "--index", &format!("{}/{index}", stack.root)])
        .output()
        .expect("compaction runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let compaction_ms = started.elapsed().as_millis() as u64;
    // Acknowledged rows: id -> sample row.
    let mut acknowledged: HashMap<u64, usize> = HashMap::new();
    acknowledged.insert(4_999_999, 3);
    let mut newest_token = 0;
    for round in 0..3u64 {
        let first_id = 5_000_000 + round * 10_000;
        let mut writer = start_upsert(&stack, index, &file, first_id);
        let stdout = writer.stdout.take().expect("stdout");
        let (lines_tx, lines_rx) = std::sync::mpsc::channel::<String>();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = lines_tx.send(line);
            }
        });
        // Kill it mid-load: after its first acknowledged write, at a random point later.
        let mut lines: Vec<String> = Vec::new();
        match lines_rx.recv_timeout(Duration::from_secs(60)) {
            Ok(line) => lines.push(line),
            Err(error) => panic!("the writer acknowledged nothing within 60 s: {error}"),
        }
        let kill_after = Duration::from_millis(rng.random_range(0..600));
        std::thread::sleep(kill_after);
        let finished = writer.try_wait().ok().flatten().is_some();
        assert!(
            !finished,
            "the writer finished its load before it could be killed"
        );
        writer.kill().expect("kill -9 the writer");
        let _ = writer.wait();
        let _ = reader.join();
        lines.extend(lines_rx.try_iter());
        let mut acked_now = 0;
        for line in lines.iter().filter(|line| line.starts_with("token ")) {
            // "token 7 rows 1000..1005"
            let parts: Vec<&str> = line.split_whitespace().collect();
            let token: u64 = parts[1].parse().expect("token");
            let (from, to) = parts[3].split_once("..").expect("rows");
            for row in from.parse::<usize>().unwrap()..to.parse::<usize>().unwrap() {
                acknowledged.insert(first_id + row as u64, built + row);
            }
            newest_token = newest_token.max(token);
            acked_now += 1;
        }
        eprintln!(
            "round {round}: writer killed {kill_after:?} after its first acknowledged write, {acked_now} writes acknowledged"
        );
        // Every acknowledged write is there, and the index serves.
        let ids: Vec<u64> = acknowledged.keys().copied().collect();
        let live = fetch(&stack, index, &ids, newest_token);
        for (id, row) in &acknowledged {
            let got = live
                .get(id)
                .unwrap_or_else(|| panic!("acknowledged id {id} lost"));
            assert_same_vector(got, vectors.row(*row), *id);
        }
        let (status, answer) = stack.post(
            &format!("/v1/indexes/{index}/query"),
            &json!({"vector": vectors.row(1), "k": 10}),
        );
        assert_eq!(
            status, 200,
            "the index serves after a killed writer: {answer}"
        );

        // A compaction killed at a random point leaves the index serving the same rows.
        let kill_after =
            Duration::from_millis(rng.random_range(compaction_ms / 10..compaction_ms * 9 / 10));
        let mut compaction = Command::new(squash_cli())
            .args(["compact", "--index", &format!("{}/{index}", stack.root)])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("squash compact starts");
        std::thread::sleep(kill_after);
        let finished = compaction.try_wait().expect("status").is_some();
        let _ = compaction.kill();
        let _ = compaction.wait();
        eprintln!(
            "round {round}: compaction killed after {kill_after:?} (finished first: {finished})"
        );
        let live = fetch(&stack, index, &ids, newest_token);
        for (id, row) in &acknowledged {
            let got = live
                .get(id)
                .unwrap_or_else(|| panic!("acknowledged id {id} lost after a killed compaction"));
            assert_same_vector(got, vectors.row(*row), *id);
        }
        let built: Vec<u64> = (0..BUILT as u64).step_by(97).collect();
        assert_eq!(
            fetch(&stack, index, &built, newest_token).len(),
            built.len(),
            "built rows kept"
        );
        let (status, answer) = stack.post(
            &format!("/v1/indexes/{index}/query"),
            &json!({"vector": vectors.row(2), "k": 10}),
        );
        assert_eq!(
            status, 200,
            "the index serves after a killed compaction: {answer}"
        );
        assert_eq!(answer["hits"].as_array().map(Vec::len), Some(10));
    }
    // A compaction run to the end afterwards folds everything.
    let output = Command::new(squash_cli())
        .args(["compact", "--index", &format!("{}/{index}", stack.root)])
        .output()
        .expect("compaction runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() || stderr.contains("nothing to fold"),
        "compaction after the kills: {stderr}"
    );
    let ids: Vec<u64> = acknowledged.keys().copied().collect();
    assert_eq!(fetch(&stack, index, &ids, newest_token).len(), ids.len());
}
