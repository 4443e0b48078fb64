//! Writes after a build, through the library: upserts, deletes (by id and by filter) and
//! fetches against a brute-force model of the index's state, before and after compaction;
//! concurrent writers and compactions over a real file-system store.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Map, Value};
use squash_core::error::Error;
use squash_core::index::build::NoProgress;
use squash_core::index::BuildInput;
use squash_core::index::{version_manifest_key, Manifest};
use squash_core::metric::{normalize_in_place, Metric};
use squash_core::protocol::QueryRequest;
use squash_core::writes::{DeleteRequest, FetchRequest, UpsertRequest, UpsertRow};
use squash_service::embedded::{EmbeddedConfig, EmbeddedIndex};
use squash_service::{compact_index, write_index, CompactionOptions};
use squash_storage::{BlobStore, LocalStore};

use common::{built_in_memory, params, synthetic, COLORS};

/// One live row of the model: vector as sent, year, price, color.
#[derive(Debug, Clone, PartialEq)]
struct ModelRow {
    vector: Vec<f32>,
    year: i64,
    price: f64,
    color: String,
}

impl ModelRow {
    fn attributes(&self) -> Map<String, Value> {
        json!({"year": self.year, "price": self.price, "color": self.color})
            .as_object()
            .unwrap()
            .clone()
    }
}

/// The index's state as the writes say it should be.
type Model = BTreeMap<u64, ModelRow>;

fn model_of(input: &BuildInput) -> Model {
    (0..input.ids.len())
        .map(|row| {
            (
                input.ids[row],
                ModelRow {
                    vector: input.vectors[row * input.dim..(row + 1) * input.dim].to_vec(),
                    year: input.attributes.columns[0][row] as i64,
                    price: input.attributes.columns[1][row],
                    color: COLORS[input.attributes.columns[2][row] as usize].to_string(),
                },
            )
        })
        .collect()
}

/// What one write did: per id, the row it upserted or `None` for a delete.
type Changes = Vec<(u64, Option<ModelRow>)>;

/// A filter and the same predicate in plain Rust, the oracle's.
type Predicate = fn(&ModelRow) -> bool;

fn filters() -> Vec<(Value, Predicate)> {
    vec![
        (Value::Null, |_| true),
        (json!({"year": {"$gte": 2010, "$lte": 2014}}), |r| {
            (2010..=2014).contains(&r.year)
        }),
        (
            json!({"color": {"$in": ["red", "indigo"]}, "price": {"$lt": 50.0}}),
            |r| (r.color == "red" || r.color == "indigo") && r.price < 50.0,
        ),
        (json!({"color": "indigo"}), |r| r.color == "indigo"),
        (json!({"year": 2003, "color": "blue"}), |r| {
            r.year == 2003 && r.color == "blue"
        }),
    ]
}

fn distance(metric: Metric, query: &[f32], vector: &[f32]) -> f32 {
    let (mut q, mut v) = (query.to_vec(), vector.to_vec());
    if metric.normalizes() {
        normalize_in_place(&mut q);
        normalize_in_place(&mut v);
    }
    metric.distance(&q, &v)
}

fn oracle(
    model: &Model,
    metric: Metric,
    query: &[f32],
    predicate: Predicate,
    k: usize,
) -> Vec<u64> {
    let mut scored: Vec<(f32, u64)> = model
        .iter()
        .filter(|(_, row)| predicate(row))
        .map(|(&id, row)| (distance(metric, query, &row.vector), id))
        .collect();
    scored.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    scored.into_iter().take(k).map(|(_, id)| id).collect()
}

/// Runs every filter over `queries` and checks recall@k against the model, that every hit is
/// live and matches, and that a filter with at least k live matches gets k hits.
async fn check_against_model(
    index: &EmbeddedIndex,
    model: &Model,
    metric: Metric,
    queries: &[Vec<f32>],
    k: usize,
    stage: &str,
) {
    for (filter, predicate) in filters() {
        let (mut found, mut wanted) = (0usize, 0usize);
        for query in queries {
            let mut request = QueryRequest::new(query.clone(), k);
            request.filter = (!filter.is_null()).then(|| filter.clone());
            let response = index.query(request).await.expect("query");
            let truth = oracle(model, metric, query, predicate, k);
            assert_eq!(
                response.hits.len(),
                truth.len(),
                "{stage}, {filter}: {} hits where {} live rows match (one-pass guarantee)",
                response.hits.len(),
                truth.len()
            );
            for hit in &response.hits {
                let row = model.get(&hit.id).unwrap_or_else(|| {
                    panic!(
                        "{stage}, {filter}: hit {} is deleted or never existed",
                        hit.id
                    )
                });
                assert!(
                    predicate(row),
                    "{stage}, {filter}: hit {} does not match",
                    hit.id
                );
            }
            found += response
                .hits
                .iter()
                .filter(|hit| truth.contains(&hit.id))
                .count();
            wanted += truth.len();
        }
        // No live match at all: the hit count check above is the whole test.
        let recall = if wanted == 0 {
            1.0
        } else {
            found as f64 / wanted as f64
        };
        assert!(
            recall >= 0.95,
            "{stage}, {filter}: recall@{k} {recall:.3} below 0.95"
        );
    }
}

fn random_row(rng: &mut StdRng, model: &Model, dim: usize, new_color: bool) -> ModelRow {
    // Near an existing row, so new rows land inside the data's clusters.
    let ids: Vec<&u64> = model.keys().collect();
    let anchor = &model[ids[rng.random_range(0..ids.len())]];
    ModelRow {
        vector: (0..dim)
            .map(|d| anchor.vector[d] + (rng.random::<f32>() - 0.5))
            .collect(),
        year: rng.random_range(2000..2025),
        price: (rng.random::<f64>() * 1000.0).round() / 10.0,
        color: if new_color {
            "indigo".to_string()
        } else {
            COLORS[rng.random_range(0..COLORS.len())].to_string()
        },
    }
}

fn upsert_request(rows: &[(u64, ModelRow)]) -> UpsertRequest {
    UpsertRequest {
        rows: rows
            .iter()
            .map(|(id, row)| UpsertRow {
                id: *id,
                vector: row.vector.clone(),
                attributes: row.attributes(),
            })
            .collect(),
    }
}

async fn writes_keep_recall_and_hide_deleted_rows(metric: Metric) {
    let dim = 16;
    let input = synthetic(6000, dim, 5);
    let (_, index, _) = built_in_memory(&input, params(metric, 4, "1")).await;
    let mut model = model_of(&input);
    let mut rng = StdRng::seed_from_u64(11);
    let existing: Vec<u64> = input.ids.clone();
    let mut last_token = 0;

    // 10% new rows (some of a category the build never saw), in calls of 200.
    let new_rows: Vec<(u64, ModelRow)> = (0..600)
        .map(|i| (1_000_000 + i, random_row(&mut rng, &model, dim, i % 7 == 0)))
        .collect();
    for chunk in new_rows.chunks(200) {
        let answer = index.upsert(upsert_request(chunk)).await.expect("upsert");
        assert!(answer.token > last_token, "tokens grow");
        last_token = answer.token;
        model.extend(chunk.iter().cloned());
    }
    // 5% overwritten: new vectors and attributes for existing ids.
    let overwritten: Vec<(u64, ModelRow)> = existing[..300]
        .iter()
        .map(|&id| (id, random_row(&mut rng, &model, dim, false)))
        .collect();
    let answer = index
        .upsert(upsert_request(&overwritten))
        .await
        .expect("overwrite");
    assert_eq!(answer.upserted, 300);
    model.extend(overwritten.iter().cloned());
    // 10% deleted by id: partition rows, some just overwritten, some just written.
    let mut deleted: Vec<u64> = existing[200..760].to_vec();
    deleted.extend(new_rows[..40].iter().map(|(id, _)| *id));
    let answer = index
        .delete(DeleteRequest {
            ids: deleted.clone(),
            filter: None,
        })
        .await
        .expect("delete");
    assert_eq!(answer.deleted_ids, 600);
    for id in &deleted {
        model.remove(id);
    }
    // And by filter: every row of 2001 priced under 20, partition rows and written rows alike.
    let by_filter = json!({"year": 2001, "price": {"$lt": 20.0}});
    index
        .delete(DeleteRequest {
            ids: vec![],
            filter: Some(by_filter),
        })
        .await
        .expect("delete by filter");
    model.retain(|_, row| !(row.year == 2001 && row.price < 20.0));
    // A row written after the filtered delete is not affected by it.
    let late = (
        2_000_000u64,
        ModelRow {
            year: 2001,
            price: 1.0,
            ..random_row(&mut rng, &model, dim, false)
        },
    );
    last_token = index
        .upsert(upsert_request(std::slice::from_ref(&late)))
        .await
        .unwrap()
        .token;
    model.insert(late.0, late.1.clone());

    let queries: Vec<Vec<f32>> = (0..40)
        .map(|_| {
            let ids: Vec<&u64> = model.keys().collect();
            let anchor = &model[ids[rng.random_range(0..ids.len())]].vector;
            anchor
                .iter()
                .map(|v| v + (rng.random::<f32>() - 0.5) * 0.5)
                .collect()
        })
        .collect();
    check_against_model(&index, &model, metric, &queries, 10, "before compaction").await;
    check_against_model(
        &index,
        &model,
        metric,
        &queries[..5],
        300,
        "before compaction, k 300",
    )
    .await;

    // Fetch: live rows as written, deleted and unknown ids missing.
    let fetch_ids = vec![
        existing[0],
        existing[250],
        existing[900],
        1_000_100,
        late.0,
        999,
    ];
    let fetched = index
        .fetch(FetchRequest {
            ids: fetch_ids.clone(),
            include_vectors: true,
            min_token: Some(last_token),
        })
        .await
        .expect("fetch");
    assert_eq!(fetched.token, last_token);
    let fetched_ids: Vec<u64> = fetched.rows.iter().map(|r| r.id).collect();
    let expected_ids: Vec<u64> = fetch_ids
        .iter()
        .copied()
        .filter(|id| model.contains_key(id))
        .collect();
    assert_eq!(fetched_ids, expected_ids);
    assert!(fetched.missing.contains(&existing[250]) && fetched.missing.contains(&999));
    for row in &fetched.rows {
        let want = &model[&row.id];
        assert_eq!(row.attributes, want.attributes(), "id {}", row.id);
        let mut want_vector = want.vector.clone();
        if metric.normalizes() {
            normalize_in_place(&mut want_vector);
        }
        let got = row.vector.as_ref().unwrap();
        assert!(
            got.iter()
                .zip(&want_vector)
                .all(|(a, b)| (a - b).abs() < 1e-4),
            "id {}: fetched vector differs",
            row.id
        );
    }
    // A token the log has not reached is refused, naming the field.
    match index
        .query(QueryRequest {
            min_token: Some(last_token + 1),
            ..QueryRequest::new(queries[0].clone(), 10)
        })
        .await
    {
        Err(Error::InvalidInput { field, .. }) => assert_eq!(field, "min_token"),
        other => panic!("expected a min_token error, got {other:?}"),
    }

    let summary = index.compact(Arc::new(NoProgress)).await.expect("compact");
    assert_eq!(summary.folded_through, last_token);
    assert_eq!(
        summary.build.manifest.num_vectors as usize,
        model.len(),
        "the new version holds exactly the live rows"
    );
    check_against_model(&index, &model, metric, &queries, 10, "after compaction").await;
    // Writes after a compaction apply over it.
    let after: Vec<(u64, ModelRow)> = (0..50)
        .map(|i| (3_000_000 + i, random_row(&mut rng, &model, dim, true)))
        .collect();
    let token = index.upsert(upsert_request(&after)).await.unwrap().token;
    assert_eq!(token, last_token + 1, "the log goes on after a compaction");
    model.extend(after);
    check_against_model(
        &index,
        &model,
        metric,
        &queries,
        10,
        "written after compaction",
    )
    .await;
    // A few deletes more (by id and by a filter) and a compaction of only the partitions
    // the writes touched: the same live rows, the same recall.
    let gone: Vec<u64> = model.keys().copied().step_by(97).take(30).collect();
    index
        .delete(DeleteRequest {
            ids: gone.clone(),
            filter: None,
        })
        .await
        .unwrap();
    index
        .delete(DeleteRequest {
            ids: Vec::new(),
            filter: Some(json!({"price": {"$gte": 99.95}})),
        })
        .await
        .unwrap();
    for id in gone {
        model.remove(&id);
    }
    model.retain(|_, row| row.price < 99.95);
    let partial = index.compact(Arc::new(NoProgress)).await.expect("compact");
    assert_eq!(partial.full_rebuild_reason, None, "{partial:?}");
    assert_eq!(partial.build.manifest.num_vectors as usize, model.len());
    check_against_model(
        &index,
        &model,
        metric,
        &queries,
        10,
        "after compacting only the partitions the writes touched",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_keep_recall_and_hide_deleted_rows_l2() {
    writes_keep_recall_and_hide_deleted_rows(Metric::L2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_keep_recall_and_hide_deleted_rows_cosine() {
    writes_keep_recall_and_hide_deleted_rows(Metric::Cosine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_writes_change_nothing() {
    let input = synthetic(2000, 8, 3);
    let (store, index, _) = built_in_memory(&input, params(Metric::L2, 2, "1")).await;
    let good = UpsertRow {
        id: 1,
        vector: vec![0.5; 8],
        attributes: json!({"year": 2001, "price": 3.5, "color": "red"})
            .as_object()
            .unwrap()
            .clone(),
    };
    let cases: Vec<(UpsertRow, &str)> = vec![
        (
            UpsertRow {
                vector: vec![0.5; 7],
                ..good.clone()
            },
            "rows[1].vector",
        ),
        (
            UpsertRow {
                vector: vec![f32::INFINITY; 8],
                ..good.clone()
            },
            "rows[1].vector[0]",
        ),
        (
            UpsertRow {
                attributes: json!({"year": "2001", "price": 3.5, "color": "red"})
                    .as_object()
                    .unwrap()
                    .clone(),
                ..good.clone()
            },
            "rows[1].attributes.year",
        ),
        (
            UpsertRow {
                attributes: json!({"year": 2001, "price": 3.5, "color": "red", "size": 3})
                    .as_object()
                    .unwrap()
                    .clone(),
                ..good.clone()
            },
            "rows[1].attributes.size",
        ),
        (
            UpsertRow {
                id: 5,
                ..good.clone()
            },
            "rows[1].id",
        ),
    ];
    for (bad, field) in cases {
        let first = UpsertRow {
            id: 5,
            ..good.clone()
        };
        match index
            .upsert(UpsertRequest {
                rows: vec![first, bad],
            })
            .await
        {
            Err(Error::InvalidInput { field: named, .. }) => assert_eq!(named, field),
            other => panic!("expected {field} refused, got {other:?}"),
        }
    }
    assert!(
        store.list("log/").await.unwrap().is_empty(),
        "a refused write leaves nothing in the log"
    );
    let fetched = index
        .fetch(FetchRequest {
            ids: vec![5],
            include_vectors: false,
            min_token: None,
        })
        .await
        .unwrap();
    assert_eq!(
        fetched.missing,
        vec![5],
        "nothing of a refused call became visible"
    );
    assert_eq!(fetched.token, 0);
}

/// Eight writers, each its own coordinator (as separate function containers are), over one
/// file-system store: every acknowledged write lands once, and the final state is the serial
/// application of the writes in token order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_lose_no_acknowledged_write() {
    let dim = 8;
    let input = synthetic(3000, dim, 9);
    let folder = tempfile::tempdir().unwrap();
    let store: Arc<dyn BlobStore> = Arc::new(LocalStore::new(folder.path()));
    write_index(
        Arc::clone(&store),
        input.clone(),
        params(Metric::L2, 3, "1"),
        Arc::new(NoProgress),
    )
    .await
    .unwrap();
    let mut writers = Vec::new();
    for writer in 0..8u64 {
        let store = Arc::clone(&store);
        let input = input.clone();
        writers.push(tokio::spawn(async move {
            let index = EmbeddedIndex::open_store(store, EmbeddedConfig::default())
                .await
                .unwrap();
            let mut rng = StdRng::seed_from_u64(writer);
            let model = model_of(&input);
            // (token, write): Some(rows) an upsert, None a delete of ids.
            let mut acknowledged: Vec<(u64, Changes)> = Vec::new();
            for call in 0..10u64 {
                // Ids shared between writers, so writes of one id race.
                let rows: Vec<(u64, ModelRow)> = (0..100u64)
                    .map(|i| {
                        (
                            (i * 7 + call * 13 + writer) % 1500 + 1_000_000,
                            random_row(&mut rng, &model, dim, false),
                        )
                    })
                    .collect::<BTreeMap<u64, ModelRow>>()
                    .into_iter()
                    .collect();
                let token = index.upsert(upsert_request(&rows)).await.unwrap().token;
                acknowledged.push((
                    token,
                    rows.into_iter().map(|(id, row)| (id, Some(row))).collect(),
                ));
                let ids: Vec<u64> = (0..20u64)
                    .map(|i| (i * 31 + call * 5 + writer * 3) % 1500 + 1_000_000)
                    .chain((0..5).map(|i| input.ids[(writer * 100 + call * 5 + i) as usize]))
                    .collect::<std::collections::BTreeSet<u64>>()
                    .into_iter()
                    .collect();
                let token = index
                    .delete(DeleteRequest {
                        ids: ids.clone(),
                        filter: None,
                    })
                    .await
                    .unwrap()
                    .token;
                acknowledged.push((token, ids.into_iter().map(|id| (id, None)).collect()));
            }
            acknowledged
        }));
    }
    let mut acknowledged = Vec::new();
    for writer in writers {
        acknowledged.extend(writer.await.unwrap());
    }
    acknowledged.sort_by_key(|(token, _)| *token);
    let tokens: Vec<u64> = acknowledged.iter().map(|(token, _)| *token).collect();
    assert_eq!(
        tokens,
        (1..=160).collect::<Vec<u64>>(),
        "one slot per write, no gaps"
    );
    let mut model = model_of(&input);
    for (_, changes) in &acknowledged {
        for (id, row_opt) in changes {
            match row_opt {
                Some(row) => {
                    model.insert(*id, row.clone());
                }
                None => {
                    model.remove(id);
                }
            }
        }
    }
    let reader = EmbeddedIndex::open_store(Arc::clone(&store), EmbeddedConfig::default())
        .await
        .unwrap();
    check_fetched(&reader, &model, &input.ids[..900], 160).await;
    // Two compactions at once: one wins, the other changes nothing; nothing is lost.
    let (first, second) = tokio::join!(
        compact_index(Arc::clone(&store), false, Arc::new(NoProgress)),
        compact_index(Arc::clone(&store), false, Arc::new(NoProgress)),
    );
    let outcomes = [first.is_ok(), second.is_ok()];
    assert_eq!(
        outcomes.iter().filter(|ok| **ok).count(),
        1,
        "{first:?} / {second:?}"
    );
    let loser = if first.is_ok() { second } else { first };
    assert!(matches!(loser, Err(Error::Conflict { .. })), "{loser:?}");
    // The reader opened before still answers (its version is kept), and a new one reads the
    // compacted version: both see the same rows.
    check_fetched(&reader, &model, &input.ids[..900], 160).await;
    let fresh = EmbeddedIndex::open_store(Arc::clone(&store), EmbeddedConfig::default())
        .await
        .unwrap();
    assert_eq!(fresh.manifest().folded_through, 160);
    check_fetched(&fresh, &model, &input.ids[..900], 160).await;
}

/// Fetches the written ids and `built_ids` and checks them against the model.
async fn check_fetched(index: &EmbeddedIndex, model: &Model, built_ids: &[u64], token: u64) {
    let mut ids: Vec<u64> = (1_000_000..1_001_500).collect();
    ids.extend(built_ids);
    for chunk in ids.chunks(1000) {
        let fetched = index
            .fetch(FetchRequest {
                ids: chunk.to_vec(),
                include_vectors: true,
                min_token: Some(token),
            })
            .await
            .unwrap();
        for row in &fetched.rows {
            let want = model
                .get(&row.id)
                .unwrap_or_else(|| panic!("id {} should be deleted", row.id));
            assert_eq!(row.vector.as_ref().unwrap(), &want.vector, "id {}", row.id);
            assert_eq!(row.attributes, want.attributes(), "id {}", row.id);
        }
        for id in &fetched.missing {
            assert!(!model.contains_key(id), "id {id} was lost");
        }
    }
}

/// The one-pass guarantee with deletes: a filter whose matches were mostly deleted still gets
/// all of its live matches (at least k) in one answer; the plan does not count deleted rows as
/// certain matches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_matches_do_not_count_toward_k() {
    let input = synthetic(8000, 16, 21);
    let (_, index, _) = built_in_memory(&input, params(Metric::L2, 4, "1")).await;
    let mut model = model_of(&input);
    let predicate: Predicate = |row| (2003..=2004).contains(&row.year);
    let filter = json!({"year": {"$gte": 2003, "$lte": 2004}});
    let query: Vec<f32> = model[&input.ids[0]].vector.clone();
    // Keep the 10 matches farthest from the query, delete the rest: the nearest clusters then
    // hold many deleted matches and no live one.
    let mut matching: Vec<(f32, u64)> = model
        .iter()
        .filter(|(_, row)| predicate(row))
        .map(|(&id, row)| (distance(Metric::L2, &query, &row.vector), id))
        .collect();
    matching.sort_by(|a, b| a.0.total_cmp(&b.0));
    let keep = 10;
    let deleted: Vec<u64> = matching[..matching.len() - keep]
        .iter()
        .map(|m| m.1)
        .collect();
    assert!(deleted.len() > 400, "{} matches", matching.len());
    index
        .delete(DeleteRequest {
            ids: deleted.clone(),
            filter: None,
        })
        .await
        .unwrap();
    for id in &deleted {
        model.remove(id);
    }
    // The smallest neighbourhood, so that only the count of certain matches keeps the plan
    // going.
    let mut request = QueryRequest::new(query.clone(), keep);
    request.filter = Some(filter);
    request.options.probe_rows = Some(1);
    request.options.centroid_factor = Some(1.0);
    let response = index.query(request).await.unwrap();
    let truth = oracle(&model, Metric::L2, &query, predicate, keep);
    let mut got: Vec<u64> = response.hits.iter().map(|h| h.id).collect();
    got.sort_unstable();
    let mut want = truth.clone();
    want.sort_unstable();
    assert_eq!(got, want, "every live match, in one pass");
}

/// Time travel: a query as of a token leaves out the writes after it, also across
/// compactions while the versions they replaced are retained; a token past the log, or older
/// than the retention reaches, is a 400 naming `as_of`. What no retained version reads is
/// removed at the next switch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_answer_as_of_a_token() {
    for retain_versions_s in [None, Some(2)] {
        let input = synthetic(2000, 8, 13);
        let mut build_params = params(Metric::L2, 2, "1");
        build_params.retain_versions_s = retain_versions_s;
        let (store, index, _) = built_in_memory(&input, build_params).await;
        let attributes = json!({"year": 2001, "price": 3.5, "color": "red"})
            .as_object()
            .unwrap()
            .clone();
        let row = |value: f32| UpsertRow {
            id: 5,
            vector: vec![value; 8],
            attributes: attributes.clone(),
        };
        let upsert = |value: f32| {
            let index = &index;
            let rows = vec![row(value)];
            async move { index.upsert(UpsertRequest { rows }).await.unwrap().token }
        };
        let written = upsert(100.0).await;
        let deleted = index
            .delete(DeleteRequest {
                ids: vec![5],
                filter: None,
            })
            .await
            .unwrap()
            .token;
        let rewritten = upsert(200.0).await;
        // The nearest row to (200, ..., 200), k = 1: (id, distance), or the error's field.
        let nearest = |as_of: Option<u64>| {
            let index = &index;
            let store_ref = &store;
            async move {
                let request = QueryRequest {
                    as_of,
                    ..QueryRequest::new(vec![200.0; 8], 1)
                };
                match index.query(request).await {
                    Ok(response) => Ok((response.hits[0].id, response.hits[0].distance)),
                    Err(Error::InvalidInput { field, .. }) => Err(field),
                    Err(other) => panic!("{other:?} {:?}", store_ref.list("").await.unwrap()),
                }
            }
        };
        // Row 5 as rewritten (distance 0), as first written (8 x 100^2 away), absent while
        // deleted.
        let check_history = || async {
            assert_eq!(nearest(Some(written)).await, Ok((5, 80_000.0)));
            assert_ne!(nearest(Some(deleted)).await.unwrap().0, 5);
            assert_eq!(nearest(Some(rewritten)).await, Ok((5, 0.0)));
        };
        check_history().await;
        assert_eq!(nearest(None).await, Ok((5, 0.0)));
        assert_eq!(nearest(Some(rewritten + 1)).await, Err("as_of".to_string()));
        // Two compactions, a write between them (row 5 moves again): one re-encoding only
        // the partitions the writes touched, one rebuilding all.
        let partial = index.compact(Arc::new(NoProgress)).await.unwrap();
        assert_eq!(partial.full_rebuild_reason, None);
        let moved = upsert(300.0).await;
        let full = CompactionOptions {
            full: true,
            ..CompactionOptions::default()
        };
        index
            .compact_with(full, Arc::new(NoProgress))
            .await
            .unwrap();
        let versions = || async {
            let mut versions: Vec<String> = store
                .list("v")
                .await
                .unwrap()
                .iter()
                .map(|key| key.split('/').next().unwrap().to_string())
                .collect();
            versions.dedup();
            versions.len()
        };
        match retain_versions_s {
            None => {
                // A day's retention: the build and both compactions answer, the log kept.
                check_history().await;
                assert_eq!(nearest(Some(moved)).await, Ok((5, 8.0 * 100.0 * 100.0)));
                assert_eq!(nearest(Some(moved - 1)).await, Ok((5, 0.0)));
                assert_eq!(versions().await, 3);
            }
            Some(_) => {
                // Past the retention, the build's version is no longer read, and the next
                // switch removes it and the log entries only it needed; the version just
                // replaced is kept for readers in flight.
                tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
                assert_eq!(nearest(Some(written)).await, Err("as_of".to_string()));
                upsert(400.0).await;
                index.compact(Arc::new(NoProgress)).await.unwrap();
                assert_eq!(versions().await, 2);
                assert!(store.list("log/").await.unwrap().len() <= 2);
                // The version just replaced answers within its 2 s; the one before it not.
                assert_eq!(nearest(Some(moved)).await, Ok((5, 8.0 * 100.0 * 100.0)));
                assert_eq!(nearest(Some(moved - 1)).await, Err("as_of".to_string()));
                // Once the full rebuild's version is past the retention, its segments that a
                // later version kept (untouched by the writes) stay; the rest of it goes.
                tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
                upsert(500.0).await;
                let last = index.compact(Arc::new(NoProgress)).await.unwrap();
                assert!(last.partitions_rebuilt.len() < 2, "{last:?}");
                let current = index.manifest();
                let previous_key =
                    version_manifest_key(current.previous_version.as_deref().unwrap());
                let previous =
                    Manifest::decode("previous", store.get(&previous_key).await.unwrap()).unwrap();
                let mut named = current.object_keys();
                named.extend(previous.object_keys());
                let stored = store.list("v").await.unwrap();
                assert!(stored.iter().all(|key| named.contains(key)), "{stored:?}");
                assert!(
                    current.partitions.iter().any(|entry| !entry
                        .key
                        .starts_with(&format!("v{}/", current.index_version))
                        && !entry
                            .key
                            .starts_with(&format!("v{}/", previous.index_version))),
                    "{current:?}"
                );
                let answer = index
                    .query(QueryRequest::new(vec![500.0; 8], 1))
                    .await
                    .unwrap();
                assert_eq!((answer.hits[0].id, answer.hits[0].distance), (5, 0.0));
            }
        }
    }
}

/// A compaction re-encodes only the partitions the writes touched and keeps the others'
/// segments as they are, with the same answers as the live rows say; it rebuilds every
/// partition when asked, when writes add a category, and past the drift share.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_re_encodes_only_the_partitions_writes_touched() {
    let dim = 8;
    let input = synthetic(4000, dim, 21);
    let (store, index, built) = built_in_memory(&input, params(Metric::L2, 4, "1")).await;
    let mut model = model_of(&input);
    // Writes inside partition 0 only: copies of its rows under new ids, and deletes of others.
    let first_entry = &built.manifest.partitions[0];
    let segment = squash_core::index::PartitionData::decode(
        &first_entry.key,
        store.get(&first_entry.key).await.unwrap(),
    )
    .unwrap();
    let copies: Vec<(u64, ModelRow)> = (0..40)
        .map(|row| {
            let mut copy = model[&segment.ids[row]].clone();
            copy.price = 1.0 + row as f64;
            (9_000_000 + row as u64, copy)
        })
        .collect();
    index.upsert(upsert_request(&copies)).await.unwrap();
    let gone: Vec<u64> = segment.ids[100..130].to_vec();
    index
        .delete(DeleteRequest {
            ids: gone.clone(),
            filter: None,
        })
        .await
        .unwrap();
    model.extend(copies);
    for id in &gone {
        model.remove(id);
    }
    let summary = index.compact(Arc::new(NoProgress)).await.unwrap();
    assert_eq!(summary.full_rebuild_reason, None);
    assert!(summary.partitions_rebuilt.contains(&0), "{summary:?}");
    assert!(summary.partitions_rebuilt.len() < 4, "{summary:?}");
    let manifest = &summary.build.manifest;
    assert_eq!(manifest.num_vectors as usize, model.len());
    for entry in &manifest.partitions {
        let kept = !summary.partitions_rebuilt.contains(&entry.id);
        let before = &built.manifest.partitions[entry.id as usize];
        assert_eq!(kept, entry.key == before.key, "{entry:?}");
    }
    assert_eq!(
        manifest.drift.map(|drift| drift.rows_written),
        Some(70),
        "40 rows added, 30 removed"
    );
    let mut rng = StdRng::seed_from_u64(3);
    let queries: Vec<Vec<f32>> = (0..30)
        .map(|_| random_row(&mut rng, &model, dim, false).vector)
        .collect();
    check_against_model(
        &index,
        &model,
        Metric::L2,
        &queries,
        10,
        "after a partial compaction",
    )
    .await;

    // Every partition is rebuilt when asked, when a write brings a new category, and when the
    // rows written since the partitions were drawn pass the share allowed.
    let cases: [(CompactionOptions, &str, &str); 3] = [
        (
            CompactionOptions {
                full: true,
                ..CompactionOptions::default()
            },
            "red",
            "asked",
        ),
        (CompactionOptions::default(), "ultramarine", "categories"),
        (
            CompactionOptions {
                max_drift_share: 0.0,
                ..CompactionOptions::default()
            },
            "red",
            "share",
        ),
    ];
    for (case, (options, color, reason)) in cases.into_iter().enumerate() {
        let mut written = (
            9_500_000 + case as u64,
            random_row(&mut rng, &model, dim, false),
        );
        written.1.color = color.to_string();
        index
            .upsert(upsert_request(std::slice::from_ref(&written)))
            .await
            .unwrap();
        model.insert(written.0, written.1);
        let summary = index
            .compact_with(options, Arc::new(NoProgress))
            .await
            .unwrap();
        let said = summary.full_rebuild_reason.clone().unwrap_or_default();
        assert!(said.contains(reason), "case {case}: {summary:?}");
        assert_eq!(summary.partitions_rebuilt.len(), 4);
        assert_eq!(summary.build.manifest.drift, None, "partitions drawn anew");
    }
    check_against_model(
        &index,
        &model,
        Metric::L2,
        &queries,
        10,
        "after full rebuilds",
    )
    .await;
}
