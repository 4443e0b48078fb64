//! The serverless services run in-process: coordinator + invocation tree + workers over a
//! store, against the embedded path (same hits), with warm caches, injected worker faults,
//! rebuilds while serving, and the HTTP routes' answers to good and bad requests.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::json;
use squash_core::error::{Error, Result};
use squash_core::index::build::NoProgress;
use squash_core::index::BuildInput;
use squash_core::metric::Metric;
use squash_core::protocol::{
    AnswerOutput, BatchRequest, QueryRequest, WorkerRequest, WorkerResponse,
};
use squash_core::search::RequestLimits;
use squash_service::embedded::EmbeddedIndex;
use squash_service::partition_cache::PartitionCache;
use squash_service::write_index;
use squash_service::{
    handle_direct, handle_http, slot_of, CoordinatorService, InProcessInvoker, ServiceConfig,
    TreeShape, WorkerInvoker,
};
use squash_storage::{BlobStore, MemoryStore, PrefixedStore};

use common::{params, synthetic};

const NUM_PARTITIONS: usize = 8;

/// A bad HTTP request: method, path, body, expected status, expected field.
type BadCase = (&'static str, String, Vec<u8>, u16, Option<&'static str>);
const SLOTS: [&str; 4] = ["w0", "w1", "w2", "w3"];

/// What a [`FaultyInvoker`] does to calls of one function.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Fault {
    /// Every call fails.
    Fail,
    /// The first call fails, later ones succeed.
    FailOnce,
    /// Every call answers after this long.
    Slow(Duration),
}

/// Wraps the in-process invoker with faults injected per function name.
#[derive(Debug)]
struct FaultyInvoker {
    inner: InProcessInvoker,
    this: OnceLock<Weak<FaultyInvoker>>,
    faults: Mutex<Vec<(String, Fault)>>,
    num_calls: AtomicU32,
}

#[async_trait]
impl WorkerInvoker for FaultyInvoker {
    async fn invoke(&self, function: &str, request: &WorkerRequest) -> Result<WorkerResponse> {
        self.num_calls.fetch_add(1, Ordering::SeqCst);
        let fault_opt = {
            let mut faults = self.faults.lock().expect("faults");
            let position = faults.iter().position(|(name, _)| name == function);
            position.map(|p| {
                let fault = faults[p].1;
                if fault == Fault::FailOnce {
                    faults.remove(p);
                }
                fault
            })
        };
        let children: Arc<dyn WorkerInvoker> = self
            .this
            .get()
            .and_then(Weak::upgrade)
            .expect("the invoker is alive while it runs");
        match fault_opt {
            Some(Fault::Fail) | Some(Fault::FailOnce) => Err(Error::Storage {
                message: format!("{function} crashed"),
                retryable: true,
            }),
            Some(Fault::Slow(delay)) => {
                tokio::time::sleep(delay).await;
                self.inner.run(function, request, children).await
            }
            None => self.inner.run(function, request, children).await,
        }
    }
}

struct Fixture {
    input: BuildInput,
    root: Arc<dyn BlobStore>,
    invoker: Arc<FaultyInvoker>,
    service: CoordinatorService,
}

async fn build_into(root: &Arc<dyn BlobStore>, name: &str, input: &BuildInput, version: &str) {
    build_retaining(root, name, input, version, None).await
}

/// Builds version `version` of index `name`, keeping the versions it replaces
/// `retain_versions_s` (None: the default).
async fn build_retaining(
    root: &Arc<dyn BlobStore>,
    name: &str,
    input: &BuildInput,
    version: &str,
    retain_versions_s: Option<u64>,
) {
    let store: Arc<dyn BlobStore> =
        Arc::new(PrefixedStore::try_new(Arc::clone(root), name).expect("prefix"));
    let mut params = params(Metric::L2, NUM_PARTITIONS, version);
    params.retain_versions_s = retain_versions_s;
    write_index(store, input.clone(), params, Arc::new(NoProgress))
        .await
        .expect("build");
}

async fn fixture(timeout_ms: u64, manifest_ttl_ms: u64) -> Fixture {
    let input = synthetic(4000, 16, 5);
    let root: Arc<dyn BlobStore> = Arc::new(MemoryStore::new());
    build_into(&root, "films", &input, "1").await;
    let invoker = Arc::new(FaultyInvoker {
        inner: InProcessInvoker::new(Arc::clone(&root), Arc::new(PartitionCache::new(1 << 30))),
        this: OnceLock::new(),
        faults: Mutex::new(Vec::new()),
        num_calls: AtomicU32::new(0),
    });
    let _ = invoker.this.set(Arc::downgrade(&invoker));
    let config = ServiceConfig {
        worker_functions: SLOTS.iter().map(|s| s.to_string()).collect(),
        tree: TreeShape::try_new(2, 3).expect("shape"),
        timeout_ms,
        manifest_ttl_ms,
        // The heavy-request tests below go past the functions' limits on purpose.
        limits: RequestLimits::unlimited(),
        ..ServiceConfig::default()
    };
    let service = CoordinatorService::new(
        Arc::clone(&root),
        Arc::clone(&invoker) as Arc<dyn WorkerInvoker>,
        config,
    );
    Fixture {
        input,
        root,
        invoker,
        service,
    }
}

fn exhaustive(input: &BuildInput, row: usize, filter: serde_json::Value) -> QueryRequest {
    let mut request = QueryRequest::new(input.vectors[row * input.dim..][..input.dim].to_vec(), 10);
    request.filter = (!filter.is_null()).then_some(filter);
    // Every partition with matches, so every slot takes part.
    request.options.min_partitions = Some(NUM_PARTITIONS);
    request
}

fn deadline(service: &CoordinatorService) -> Instant {
    service.default_deadline()
}

#[tokio::test]
async fn tree_answers_equal_the_embedded_path_and_warm_queries_read_nothing() {
    let fx = fixture(10_000, 60_000).await;
    let embedded = EmbeddedIndex::open(Arc::clone(&fx.root), "films")
        .await
        .expect("open");
    let filters = [
        serde_json::Value::Null,
        json!({"year": {"$gte": 2010, "$lte": 2014}}),
        json!({"color": {"$in": ["red", "blue"]}, "price": {"$lt": 50.0}}),
        json!({"year": {"$gt": 2030}}),
    ];
    for (position, filter) in filters.iter().enumerate() {
        let request = exhaustive(&fx.input, position * 31, filter.clone());
        let expected = embedded
            .query_batch(std::slice::from_ref(&request))
            .await
            .expect("embedded")
            .remove(0);
        let served = fx
            .service
            .query("films", request, "t", deadline(&fx.service))
            .await
            .expect("served");
        assert_eq!(served.hits, expected.hits, "filter {filter}");
        assert!(!served.partial);
        assert_eq!(served.stats.scan, expected.stats.scan);
        let execution = served.stats.execution.expect("execution stats");
        if !expected.hits.is_empty() {
            assert!(execution.tree_depth >= 2, "depth {}", execution.tree_depth);
            assert_eq!(execution.invocations as usize, execution.workers.len());
        }
    }
    // Cold then warm: the same query again reads nothing from the store.
    let request = exhaustive(&fx.input, 3, serde_json::Value::Null);
    let first = fx
        .service
        .query("films", request.clone(), "t", deadline(&fx.service))
        .await
        .expect("first");
    let warm = fx
        .service
        .query("films", request, "t", deadline(&fx.service))
        .await
        .expect("warm");
    assert_eq!(first.hits, warm.hits);
    let execution = warm.stats.execution.expect("execution");
    assert_eq!(execution.store_get_requests, 0);
    assert_eq!(execution.store_bytes_fetched, 0);
    assert_eq!(execution.cache_misses, 0);
    assert_eq!(execution.cache_hits as usize, NUM_PARTITIONS);
    assert!(!execution.coordinator_cold_start);
}

#[tokio::test]
async fn a_failing_worker_is_retried_once_then_named_missing() {
    let fx = fixture(10_000, 60_000).await;
    let request = exhaustive(&fx.input, 0, serde_json::Value::Null);
    // Slot w3 is a leaf (the coordinator invokes w0 and w1, w0 invokes w2 and w3).
    fx.invoker
        .faults
        .lock()
        .expect("faults")
        .push(("w3".into(), Fault::Fail));
    let answer = fx
        .service
        .query("films", request.clone(), "t", deadline(&fx.service))
        .await
        .expect("partial answer");
    let expected_missing: Vec<u32> = (0..NUM_PARTITIONS as u32)
        .filter(|&p| slot_of(p, SLOTS.len()) == 3)
        .collect();
    assert!(answer.partial);
    let mut missing = answer.missing_partitions.clone();
    missing.sort_unstable();
    assert_eq!(missing, expected_missing);
    let execution = answer.stats.execution.expect("execution");
    // w0, w1, w2 answered; w3 was tried twice.
    assert_eq!(execution.workers.len(), 3);
    assert_eq!(execution.invocations, 5);
    // Asking for complete results turns the same failure into an error naming the partitions.
    let mut strict = request.clone();
    strict.require_complete = true;
    match fx
        .service
        .query("films", strict, "t", deadline(&fx.service))
        .await
    {
        Err(Error::Incomplete {
            missing_partitions, ..
        }) => assert_eq!(missing_partitions, expected_missing),
        other => panic!("expected Incomplete, got {other:?}"),
    }
    // A worker that fails once is retried and the answer is complete.
    fx.invoker.faults.lock().expect("faults").clear();
    let complete = fx
        .service
        .query("films", request.clone(), "t", deadline(&fx.service))
        .await
        .expect("complete");
    fx.invoker
        .faults
        .lock()
        .expect("faults")
        .push(("w2".into(), Fault::FailOnce));
    let retried = fx
        .service
        .query("films", request, "t", deadline(&fx.service))
        .await
        .expect("retried");
    assert!(!retried.partial);
    assert_eq!(retried.hits, complete.hits);
    let execution = retried.stats.execution.expect("execution");
    assert_eq!(execution.invocations as usize, execution.workers.len() + 1);
    assert_eq!(
        execution
            .workers
            .iter()
            .map(|w| w.child_retries)
            .sum::<u32>(),
        1
    );
}

#[tokio::test]
async fn a_worker_slower_than_the_deadline_is_cut_off_in_time() {
    let fx = fixture(1_500, 60_000).await;
    fx.invoker
        .faults
        .lock()
        .expect("faults")
        .push(("w0".into(), Fault::Slow(Duration::from_secs(30))));
    let request = exhaustive(&fx.input, 0, serde_json::Value::Null);
    let started = Instant::now();
    let answer = fx
        .service
        .query("films", request, "t", deadline(&fx.service))
        .await
        .expect("partial answer");
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(3), "took {elapsed:?}");
    assert!(answer.partial);
    // w0 is a top-level node with children w2 and w3: its whole subtree is missing.
    let expected: HashSet<u32> = (0..NUM_PARTITIONS as u32)
        .filter(|&p| matches!(slot_of(p, SLOTS.len()), 0 | 2 | 3))
        .collect();
    let missing: HashSet<u32> = answer.missing_partitions.iter().copied().collect();
    assert_eq!(missing, expected);
}

#[tokio::test]
async fn rebuilds_switch_versions_without_mixing_them() {
    let fx = fixture(10_000, 0).await;
    let request = exhaustive(&fx.input, 7, serde_json::Value::Null);
    let before = fx
        .service
        .query("films", request.clone(), "t", deadline(&fx.service))
        .await
        .expect("before");
    assert_eq!(
        before.stats.execution.as_ref().expect("e").index_version,
        "1"
    );
    // The rebuild indexes other data under version 2; answers come from one version only.
    let mut other = synthetic(4000, 16, 6);
    other.ids = other.ids.iter().map(|id| id + 1_000_000).collect();
    build_into(&fx.root, "films", &other, "2").await;
    let after = fx
        .service
        .query("films", request.clone(), "t", deadline(&fx.service))
        .await
        .expect("after");
    assert_eq!(
        after.stats.execution.as_ref().expect("e").index_version,
        "2"
    );
    assert!(after.hits.iter().all(|hit| hit.id >= 1_000_000));

    // A coordinator that still holds version 2 when versions 3 and 4 replace it (version 2 is
    // deleted: they keep no version past the one they replace) reads the manifest again and answers from version 4. (Workers that cached
    // version 2 would still answer from it, consistently; these have a cold cache.)
    let cold_workers =
        InProcessInvoker::new(Arc::clone(&fx.root), Arc::new(PartitionCache::new(1 << 30)));
    let stale = CoordinatorService::new(
        Arc::clone(&fx.root),
        Arc::new(cold_workers) as Arc<dyn WorkerInvoker>,
        ServiceConfig {
            worker_functions: SLOTS.iter().map(|s| s.to_string()).collect(),
            manifest_ttl_ms: 3_600_000,
            ..ServiceConfig::default()
        },
    );
    let opened = stale.describe("films").await.expect("opens version 2");
    assert_eq!(opened.index_version, "2");
    build_retaining(&fx.root, "films", &fx.input, "3", Some(0)).await;
    build_retaining(&fx.root, "films", &fx.input, "4", Some(0)).await;
    let answer = stale
        .query("films", request, "t", deadline(&stale))
        .await
        .expect("after two rebuilds");
    assert!(!answer.partial);
    assert_eq!(
        answer.stats.execution.as_ref().expect("e").index_version,
        "4"
    );
    assert_eq!(answer.hits, before.hits);
}

#[tokio::test]
async fn http_routes_answer_good_and_bad_requests() {
    let fx = fixture(10_000, 60_000).await;
    let service = &fx.service;
    let call = |method: &'static str, path: String, body: Vec<u8>| async move {
        handle_http(service, method, &path, &body, "t", deadline(service)).await
    };
    let health = call("GET", "/health".into(), vec![]).await;
    assert_eq!(
        (health.status, health.body["status"].clone()),
        (200, json!("ok"))
    );
    let list = call("GET", "/v1/indexes".into(), vec![]).await;
    assert_eq!(list.body["indexes"], json!(["films"]));
    let describe = call("GET", "/v1/indexes/films".into(), vec![]).await;
    assert_eq!(describe.status, 200);
    assert_eq!(describe.body["num_vectors"], json!(4000));
    assert_eq!(describe.body["num_partitions"], json!(NUM_PARTITIONS));

    let vector: Vec<f32> = fx.input.vectors[..16].to_vec();
    let body =
        json!({"vector": vector, "k": 5, "filter": {"color": "red"}, "include_attributes": true});
    let answer = call(
        "POST",
        "/v1/indexes/films/query".into(),
        body.to_string().into_bytes(),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let hits = answer.body["hits"].as_array().expect("hits");
    assert_eq!(hits.len(), 5);
    assert!(hits
        .iter()
        .all(|h| h["attributes"]["color"] == json!("red")));
    assert!(
        answer.body["stats"]["execution"]["invocations"]
            .as_u64()
            .expect("n")
            >= 1
    );

    let batch = json!({"queries": [{"vector": vector, "k": 3}, {"vector": vector, "k": 2, "filter": {"year": 2001}}]});
    let answer = call(
        "POST",
        "/v1/indexes/films/query-batch".into(),
        batch.to_string().into_bytes(),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(
        answer.body["results"][0]["hits"].as_array().map(Vec::len),
        Some(3)
    );
    assert_eq!(
        answer.body["results"][1]["hits"].as_array().map(Vec::len),
        Some(2)
    );

    let direct = handle_direct(
        service,
        json!({"index": "films", "vector": vector, "k": 4})
            .to_string()
            .as_bytes(),
        "t",
        deadline(service),
    )
    .await;
    assert_eq!(direct.status, 200);
    assert_eq!(direct.body["hits"].as_array().map(Vec::len), Some(4));

    let short: Vec<f32> = vec![0.5; 3];
    let cases: Vec<BadCase> = vec![
        (
            "POST",
            "/v1/indexes/films/query".into(),
            json!({"vector": short}).to_string().into_bytes(),
            400,
            Some("vector"),
        ),
        (
            "POST",
            "/v1/indexes/films/query".into(),
            json!({"vector": vector, "k": 0}).to_string().into_bytes(),
            400,
            Some("k"),
        ),
        (
            "POST",
            "/v1/indexes/films/query".into(),
            json!({"vector": vector, "k": 100000})
                .to_string()
                .into_bytes(),
            400,
            Some("k"),
        ),
        (
            "POST",
            "/v1/indexes/films/query".into(),
            json!({"vector": vector, "filter": {"nope": 1}})
                .to_string()
                .into_bytes(),
            400,
            Some("filter.nope"),
        ),
        (
            "POST",
            "/v1/indexes/films/query".into(),
            json!({"vector": vector, "filter": {"year": {"$near": 1}}})
                .to_string()
                .into_bytes(),
            400,
            None,
        ),
        (
            "POST",
            "/v1/indexes/films/query".into(),
            json!({"vector": "abc"}).to_string().into_bytes(),
            400,
            Some("vector"),
        ),
        (
            "POST",
            "/v1/indexes/films/query".into(),
            json!({"vector": [1.0, "x"]}).to_string().into_bytes(),
            400,
            Some("vector[1]"),
        ),
        (
            "POST",
            "/v1/indexes/films/query".into(),
            json!({"vector": vector, "kk": 3}).to_string().into_bytes(),
            400,
            Some("kk"),
        ),
        (
            "POST",
            "/v1/indexes/films/query".into(),
            b"{not json".to_vec(),
            400,
            None,
        ),
        (
            "POST",
            "/v1/indexes/films/query".into(),
            vec![0xff, 0xfe],
            400,
            Some("body"),
        ),
        (
            "POST",
            "/v1/indexes/films/query".into(),
            vec![],
            400,
            Some("body"),
        ),
        (
            "POST",
            "/v1/indexes/films/query".into(),
            vec![b' '; 7 * 1024 * 1024],
            413,
            Some("body"),
        ),
        (
            "POST",
            "/v1/indexes/films/query-batch".into(),
            json!({"queries": []}).to_string().into_bytes(),
            400,
            Some("queries"),
        ),
        (
            "POST",
            "/v1/indexes/films/query-batch".into(),
            json!({"queries": [{"vector": vector}, {"vector": short}]})
                .to_string()
                .into_bytes(),
            400,
            Some("queries[1].vector"),
        ),
        (
            "POST",
            "/v1/indexes/nothing/query".into(),
            json!({"vector": vector}).to_string().into_bytes(),
            404,
            None,
        ),
        ("GET", "/v1/indexes/nothing".into(), vec![], 404, None),
        (
            "POST",
            "/v1/indexes/..%2Fetc/query".into(),
            json!({"vector": vector}).to_string().into_bytes(),
            400,
            Some("index"),
        ),
        (
            "POST",
            "/v1/indexes/.hidden/query".into(),
            json!({"vector": vector}).to_string().into_bytes(),
            400,
            Some("index"),
        ),
        ("GET", "/v1/indexes/films/query".into(), vec![], 405, None),
        ("DELETE", "/v1/indexes/films".into(), vec![], 405, None),
        ("GET", "/v2/everything".into(), vec![], 404, None),
    ];
    for (method, path, body, status, field_opt) in cases {
        let response = call(method, path.clone(), body).await;
        assert_eq!(
            response.status, status,
            "{method} {path}: {}",
            response.body
        );
        let error = &response.body["error"];
        assert!(
            error["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{path}: {error}"
        );
        assert!(error["code"].is_string());
        if let Some(field) = field_opt {
            assert_eq!(error["field"], json!(field), "{method} {path}: {error}");
        }
    }
    let missing_index = handle_direct(
        service,
        json!({"vector": vector}).to_string().as_bytes(),
        "t",
        deadline(service),
    )
    .await;
    assert_eq!(missing_index.status, 400);
    assert_eq!(missing_index.body["error"]["field"], json!("index"));
}

/// A store whose reads fail as an outage would (retryable) while `down` is set.
#[derive(Debug)]
struct OutageStore {
    inner: Arc<dyn BlobStore>,
    down: std::sync::atomic::AtomicBool,
}

impl OutageStore {
    fn check(&self) -> Result<()> {
        if self.down.load(Ordering::SeqCst) {
            return Err(Error::Storage {
                message: "store unreachable".to_string(),
                retryable: true,
            });
        }
        Ok(())
    }
}

#[async_trait]
impl BlobStore for OutageStore {
    async fn get(&self, key: &str) -> Result<Vec<u8>> {
        self.check()?;
        self.inner.get(key).await
    }
    async fn get_range(&self, key: &str, range: std::ops::Range<u64>) -> Result<Vec<u8>> {
        self.check()?;
        self.inner.get_range(key, range).await
    }
    async fn get_tagged(&self, key: &str) -> Result<(Vec<u8>, squash_storage::ObjectTag)> {
        self.check()?;
        self.inner.get_tagged(key).await
    }
    async fn put_if(
        &self,
        key: &str,
        bytes: Vec<u8>,
        condition: &squash_storage::PutCondition,
    ) -> Result<()> {
        self.check()?;
        self.inner.put_if(key, bytes, condition).await
    }
    async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<()> {
        self.check()?;
        self.inner.put(key, bytes).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        self.check()?;
        self.inner.list(prefix).await
    }
    async fn delete(&self, key: &str) -> Result<()> {
        self.check()?;
        self.inner.delete(key).await
    }
    fn describe(&self) -> String {
        "outage".to_string()
    }
}

#[tokio::test]
async fn a_store_outage_keeps_serving_the_open_version_from_warm_workers() {
    let input = synthetic(2000, 16, 9);
    let memory: Arc<dyn BlobStore> = Arc::new(MemoryStore::new());
    build_into(&memory, "films", &input, "1").await;
    let store = Arc::new(OutageStore {
        inner: memory,
        down: std::sync::atomic::AtomicBool::new(false),
    });
    let root: Arc<dyn BlobStore> = store.clone();
    let invoker = InProcessInvoker::new(Arc::clone(&root), Arc::new(PartitionCache::new(1 << 30)));
    let config = ServiceConfig {
        // Every request re-reads the manifest.
        manifest_ttl_ms: 0,
        manifest_max_stale_ms: 400,
        ..ServiceConfig::default()
    };
    let service = CoordinatorService::new(Arc::clone(&root), Arc::new(invoker), config);
    let request = exhaustive(&input, 3, serde_json::Value::Null);
    let warm = service
        .query("films", request.clone(), "warm", deadline(&service))
        .await
        .expect("answer before the outage");
    assert!(!warm.partial);

    store.down.store(true, Ordering::SeqCst);
    let during = service
        .query("films", request.clone(), "outage", deadline(&service))
        .await
        .expect("the open version is still served");
    assert!(!during.partial, "every partition is in the warm cache");
    assert_eq!(during.hits, warm.hits);
    // The answer says it came from a manifest read before the outage.
    let execution = |answer: &squash_core::protocol::QueryResponse| {
        answer.stats.execution.clone().expect("execution stats")
    };
    assert_eq!(execution(&warm).stale_manifest_ms, None);
    let stale_ms = execution(&during)
        .stale_manifest_ms
        .expect("said to be stale");
    assert!(stale_ms <= 400, "{stale_ms}");
    // Past the stale limit the open version is no longer served: a retryable error (503).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let too_stale = service
        .query("films", request.clone(), "late", deadline(&service))
        .await;
    match &too_stale {
        Err(error @ Error::Storage { message, .. }) => {
            assert!(error.is_retryable());
            assert!(message.contains("may be served stale"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    store.down.store(false, Ordering::SeqCst);
    let after = service
        .query("films", request.clone(), "after", deadline(&service))
        .await
        .expect("the store is back");
    assert_eq!(execution(&after).stale_manifest_ms, None);
    assert_eq!(after.hits, warm.hits);
    store.down.store(true, Ordering::SeqCst);
    // An index never opened cannot be served without the store, and says why.
    let unopened = service.describe("other").await;
    assert!(
        matches!(
            &unopened,
            Err(Error::Storage {
                retryable: true,
                ..
            })
        ),
        "{unopened:?}"
    );
}

#[tokio::test]
async fn work_past_the_deadline_stops_and_is_named() {
    // 10,000 exact queries over every partition: far more than 300 ms of work.
    let fx = fixture(300, 60_000).await;
    let queries: Vec<QueryRequest> = (0..10_000)
        .map(|i| {
            let mut request = exhaustive(&fx.input, i % 4000, serde_json::Value::Null);
            request.k = 100;
            request.options.exact = true;
            request
        })
        .collect();
    let batch = BatchRequest {
        queries,
        require_complete: false,
        branching: None,
        min_token: None,
        as_of: None,
        output: AnswerOutput::Response,
        target_invocation_ms: None,
        queries_from: None,
        // Unsplit: each slot's one invocation holds far more than its budget.
        max_invocations: Some(1),
    };
    let started = Instant::now();
    let answer = fx
        .service
        .query_batch("films", batch, "heavy", deadline(&fx.service))
        .await
        .expect("a partial answer");
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(3), "took {elapsed:?}");
    assert!(answer.partial);
    // The workers stopped scanning at their own deadlines and said so, rather than being
    // given up on while they went on computing.
    let stopped_by_deadline = answer
        .stats
        .workers
        .iter()
        .filter(|worker| worker.partitions_searched == 0)
        .count();
    assert!(stopped_by_deadline > 0, "{:?}", answer.stats.workers);
    let budget_ms = 300.0;
    for worker in &answer.stats.workers {
        assert!(
            worker.duration_ms < budget_ms + 100.0,
            "{} ran {} ms past a {budget_ms} ms budget",
            worker.function,
            worker.duration_ms
        );
    }
    let missing: HashSet<u32> = answer
        .results
        .iter()
        .flat_map(|result| result.missing_partitions.iter().copied())
        .collect();
    assert!(!missing.is_empty());
}

#[tokio::test]
async fn requests_over_the_limits_are_refused_up_front_and_big_answers_go_to_the_store() {
    let fx = fixture(10_000, 60_000).await;
    let service = CoordinatorService::new(
        Arc::clone(&fx.root),
        Arc::clone(&fx.invoker) as Arc<dyn WorkerInvoker>,
        ServiceConfig {
            worker_functions: SLOTS.iter().map(|s| s.to_string()).collect(),
            ..ServiceConfig::default()
        },
    );
    let query = |row: usize, k: usize| {
        let mut request = QueryRequest::new(fx.input.vectors[row * 16..][..16].to_vec(), k);
        request.include_attributes = true;
        request
    };
    let batch = |queries: Vec<QueryRequest>, output| BatchRequest {
        queries,
        require_complete: false,
        branching: None,
        min_token: None,
        as_of: None,
        output,
        target_invocation_ms: None,
        queries_from: None,
        max_invocations: None,
    };
    // 1,000 queries of 10,000 hits with attributes: refused before any worker runs.
    let calls_before = fx.invoker.num_calls.load(Ordering::SeqCst);
    let huge = batch(
        (0..1000).map(|i| query(i, 10_000)).collect(),
        AnswerOutput::Response,
    );
    let started = Instant::now();
    let error = service
        .query_batch("films", huge.clone(), "huge", deadline(&service))
        .await
        .expect_err("too large");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(
        matches!(&error, Error::InvalidInput { field, reason } if field == "queries" && reason.contains("over the limit of 5242880 bytes")),
        "{error}"
    );
    assert_eq!(fx.invoker.num_calls.load(Ordering::SeqCst), calls_before);
    // Through HTTP: a 400 naming the field.
    let body = serde_json::to_vec(&huge).expect("json");
    let response = handle_http(
        &service,
        "POST",
        "/v1/indexes/films/query-batch",
        &body,
        "h",
        deadline(&service),
    )
    .await;
    assert_eq!(response.status, 400, "{}", response.body);
    assert_eq!(response.body["error"]["field"], "queries");

    // 2,000 queries of k = 20 are over the response limit but fit the store.
    let big: Vec<QueryRequest> = (0..2000).map(|i| query(i % 4000, 20)).collect();
    let inline = service
        .query_batch(
            "films",
            batch(big.clone(), AnswerOutput::Response),
            "inline",
            deadline(&service),
        )
        .await;
    assert!(
        matches!(inline, Err(Error::InvalidInput { .. })),
        "{inline:?}"
    );
    let stored = service
        .query_batch(
            "films",
            batch(big.clone(), AnswerOutput::Store),
            "req-1",
            deadline(&service),
        )
        .await
        .expect("stored");
    assert!(stored.results.is_empty());
    let location = stored.stored.expect("location");
    assert!(
        location.location.ends_with("/_answers/films/req-1.json"),
        "{}",
        location.location
    );
    let bytes = fx
        .root
        .get("_answers/films/req-1.json")
        .await
        .expect("the stored answer");
    assert_eq!(bytes.len() as u64, location.bytes);
    let whole: squash_core::protocol::BatchResponse =
        serde_json::from_slice(&bytes).expect("a batch response");
    assert_eq!(whole.results.len(), 2000);
    // The stored answers are those an unlimited service gives inline.
    let expected = fx
        .service
        .query_batch(
            "films",
            batch(big, AnswerOutput::Response),
            "unlimited",
            deadline(&fx.service),
        )
        .await
        .expect("inline without limits");
    for (got, want) in whole.results.iter().zip(&expected.results) {
        assert_eq!(got.hits, want.hits);
    }
}

/// A cold worker reads a small request's probed clusters by byte range (not cached), loads the
/// partition whole on the next request for it, and serves the one after from memory; the
/// answers are the embedded path's throughout.
#[tokio::test]
async fn cold_partitions_are_read_by_range_then_whole_then_from_memory() {
    // 128 dimensions: chunks of 128 rows (64 KiB of vectors); partitions of 12,000 rows
    // (6 MB), of which a narrow query probes a few clusters (a worker reads across gaps of up
    // to 1 MiB, so smaller partitions would be read almost whole).
    let input = synthetic(48_000, 128, 9);
    let root: Arc<dyn BlobStore> = Arc::new(MemoryStore::new());
    let store: Arc<dyn BlobStore> =
        Arc::new(PrefixedStore::try_new(Arc::clone(&root), "docs").expect("prefix"));
    let summary = write_index(
        store,
        input.clone(),
        params(Metric::L2, 4, "1"),
        Arc::new(NoProgress),
    )
    .await
    .expect("build");
    let invoker = Arc::new(InProcessInvoker::new(
        Arc::clone(&root),
        Arc::new(PartitionCache::new(1 << 30)),
    ));
    let service = CoordinatorService::new(
        Arc::clone(&root),
        invoker as Arc<dyn WorkerInvoker>,
        ServiceConfig {
            worker_functions: SLOTS.iter().map(|s| s.to_string()).collect(),
            ..ServiceConfig::default()
        },
    );
    let embedded = EmbeddedIndex::open(Arc::clone(&root), "docs")
        .await
        .expect("open");
    let segment_bytes: u64 = summary
        .manifest
        .partitions
        .iter()
        .map(|entry| entry.size_bytes)
        .sum();
    let mut request = QueryRequest::new(input.vectors[17 * 128..][..128].to_vec(), 10);
    request.filter = Some(json!({"year": {"$gte": 2005}}));
    request.include_attributes = true;
    // A narrow probe, so that every probed partition is mostly left unread.
    request.options.probe_rows = Some(200);
    request.options.centroid_factor = Some(1.0);
    let expected = embedded
        .query_batch(std::slice::from_ref(&request))
        .await
        .expect("embedded")
        .remove(0);
    let mut executions = Vec::new();
    for _ in 0..3 {
        let served = service
            .query("docs", request.clone(), "t", service.default_deadline())
            .await
            .expect("served");
        assert_eq!(served.hits, expected.hits);
        assert_eq!(served.stats.scan, expected.stats.scan);
        assert!(!served.partial);
        executions.push(served.stats.execution.expect("execution"));
    }
    let [by_range, whole, warm] = [&executions[0], &executions[1], &executions[2]];
    assert!(by_range.cache_misses > 0);
    assert_eq!(by_range.partitions_read_by_range, by_range.cache_misses);
    let worker_bytes = |execution: &&squash_core::protocol::ExecutionStats| {
        execution.store_bytes_fetched - execution.coordinator_store_bytes_fetched
    };
    assert_eq!(whole.partitions_read_by_range, 0);
    assert_eq!(whole.cache_misses, by_range.cache_misses);
    assert!(worker_bytes(&whole) <= segment_bytes);
    assert!(
        worker_bytes(&by_range) * 2 < worker_bytes(&whole),
        "read {} bytes by range, {} whole",
        worker_bytes(&by_range),
        worker_bytes(&whole)
    );
    assert_eq!(warm.cache_misses, 0);
    assert_eq!(warm.store_get_requests, 0);
}

/// A batch of `n` queries (every fourth filtered) over every partition, with the split knobs.
fn split_batch(
    input: &BuildInput,
    n: usize,
    target_invocation_ms: Option<u64>,
    max_invocations: Option<usize>,
) -> BatchRequest {
    let queries = (0..n)
        .map(|i| {
            let filter = if i % 4 == 0 {
                json!({"year": {"$gte": 2005}})
            } else {
                serde_json::Value::Null
            };
            exhaustive(input, (i * 7) % 4000, filter)
        })
        .collect();
    BatchRequest {
        queries,
        require_complete: false,
        branching: None,
        min_token: None,
        as_of: None,
        output: AnswerOutput::Response,
        target_invocation_ms,
        max_invocations,
        queries_from: None,
    }
}

#[tokio::test]
async fn a_batch_split_over_concurrent_invocations_answers_as_one_unsplit() {
    let fx = fixture(10_000, 60_000).await;
    let unsplit = fx
        .service
        .query_batch(
            "films",
            split_batch(&fx.input, 600, None, Some(1)),
            "unsplit",
            deadline(&fx.service),
        )
        .await
        .expect("unsplit");
    assert_eq!(unsplit.stats.split_invocations, 0);
    assert_eq!(unsplit.stats.invocations as usize, SLOTS.len());
    // A target of 1 ms cuts each slot's share into parts, up to the cap of 24 invocations.
    let split = fx
        .service
        .query_batch(
            "films",
            split_batch(&fx.input, 600, Some(1), Some(24)),
            "split",
            deadline(&fx.service),
        )
        .await
        .expect("split");
    assert!(!split.partial);
    assert!(split.stats.split_invocations > 0, "{:?}", split.stats);
    assert!(split.stats.invocations <= 24, "{}", split.stats.invocations);
    assert_eq!(
        split.stats.invocations,
        SLOTS.len() as u32 + split.stats.split_invocations
    );
    assert_eq!(split.stats.workers.len(), split.stats.invocations as usize);
    assert_eq!(split.results.len(), unsplit.results.len());
    for (position, (a, b)) in split.results.iter().zip(&unsplit.results).enumerate() {
        assert_eq!(a.hits, b.hits, "query {position}");
        assert_eq!(a.stats.scan, b.stats.scan, "query {position}");
    }
    // Knobs out of range are refused naming the field.
    for (bad, field) in [
        (
            split_batch(&fx.input, 2, Some(0), None),
            "target_invocation_ms",
        ),
        (split_batch(&fx.input, 2, None, Some(0)), "max_invocations"),
    ] {
        match fx
            .service
            .query_batch("films", bad, "bad", deadline(&fx.service))
            .await
        {
            Err(Error::InvalidInput { field: got, .. }) => assert_eq!(got, field),
            other => panic!("expected a bad {field}, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_failed_part_leaves_only_its_own_queries_partial() {
    let fx = fixture(2_000, 60_000).await;
    let whole = fx
        .service
        .query_batch(
            "films",
            split_batch(&fx.input, 400, None, Some(1)),
            "whole",
            deadline(&fx.service),
        )
        .await
        .expect("whole");
    // Parts go to their own function names, one of which fails or hangs (retried, then named).
    let service = CoordinatorService::new(
        Arc::clone(&fx.root),
        Arc::clone(&fx.invoker) as Arc<dyn WorkerInvoker>,
        ServiceConfig {
            split_functions: vec!["part-a".into(), "part-b".into()],
            ..fx.service.config().clone()
        },
    );
    // A part that fails every call, then one that answers long after the deadline.
    for fault in [Fault::Fail, Fault::Slow(Duration::from_secs(30))] {
        fx.invoker
            .faults
            .lock()
            .expect("faults")
            .push(("part-b".into(), fault));
        let started = Instant::now();
        let answer = service
            .query_batch(
                "films",
                split_batch(&fx.input, 400, Some(1), Some(12)),
                "split",
                deadline(&service),
            )
            .await
            .expect("a partial answer");
        fx.invoker.faults.lock().expect("faults").clear();
        assert!(started.elapsed() < Duration::from_secs(3), "{fault:?}");
        let stats = &answer.stats;
        assert!(stats.split_invocations >= 2, "{stats:?}");
        // The failing part was invoked twice (retried once).
        assert!(
            stats.invocations > 4 + stats.split_invocations,
            "{fault:?}: {stats:?}"
        );
        let partial = answer.results.iter().filter(|r| r.partial).count();
        assert!(
            partial > 0,
            "{fault:?}: the failing part's queries are partial"
        );
        assert!(
            partial < answer.results.len(),
            "{fault:?}: the other queries are whole"
        );
        for (position, (got, want)) in answer.results.iter().zip(&whole.results).enumerate() {
            if got.partial {
                assert!(!got.missing_partitions.is_empty(), "query {position}");
            } else {
                assert_eq!(got.hits, want.hits, "{fault:?}: query {position} is whole");
            }
        }
    }
}

#[tokio::test]
async fn a_batch_read_from_the_store_answers_as_the_same_batch_inline() {
    let fx = fixture(10_000, 60_000).await;
    let inline = split_batch(&fx.input, 50, None, None);
    let expected = fx
        .service
        .query_batch("films", inline.clone(), "inline", deadline(&fx.service))
        .await
        .expect("inline");
    fx.root
        .put(
            "_batches/films/fifty.json",
            serde_json::to_vec(&inline.queries).expect("encode"),
        )
        .await
        .expect("put");
    fx.root
        .put("_batches/films/broken.json", b"[{\"vector\": 1}]".to_vec())
        .await
        .expect("put");
    let from_store = |name: &str, queries: Vec<QueryRequest>| BatchRequest {
        queries,
        queries_from: Some(name.to_string()),
        ..split_batch(&fx.input, 0, None, None)
    };
    let answer = fx
        .service
        .query_batch(
            "films",
            from_store("fifty.json", Vec::new()),
            "stored",
            deadline(&fx.service),
        )
        .await
        .expect("from the store");
    assert_eq!(answer.results.len(), 50);
    for (got, want) in answer.results.iter().zip(&expected.results) {
        assert_eq!(got.hits, want.hits);
    }
    for (name, queries, words) in [
        ("fifty.json", inline.queries[..1].to_vec(), "not both"),
        ("missing.json", Vec::new(), "no object"),
        ("../films/x", Vec::new(), "not an object name"),
        ("broken.json", Vec::new(), "not a JSON array of queries"),
    ] {
        match fx
            .service
            .query_batch(
                "films",
                from_store(name, queries),
                "bad",
                deadline(&fx.service),
            )
            .await
        {
            Err(Error::InvalidInput { field, reason }) => {
                assert_eq!(field, "queries_from");
                assert!(reason.contains(words), "{name}: {reason}");
            }
            other => panic!("{name}: expected a bad queries_from, got {other:?}"),
        }
    }
}
