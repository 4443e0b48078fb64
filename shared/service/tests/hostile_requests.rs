//! Malformed and hostile requests thrown at the coordinator's two entry points, `handle_http`
//! and `handle_direct`, over an in-process index `films` (synthetic, 16-d, 1000 vectors, two
//! partitions, built once per test binary).
//!
//! Every generator knows what its inputs deserve. Valid requests must be answered completely:
//! status 200, at most k hits, best first, hits that pass the filter and carry the stored
//! attributes. Hostile requests must get a 4xx whose body is
//! `{"error": {"code", "message", "field"?}}`, with `field` naming the part of the request the
//! generator broke. No input may panic or answer 5xx.
//!
//! Defects the property tests found are pinned by the `regression_*` tests at the end, which
//! assert the behaviour a client gets now.
//!
//! `cargo test -p squash-service --test hostile_requests -- --nocapture` prints the cases tried per
//! strategy and in total.

mod common;

use std::cell::RefCell;
use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::sample::{select, Index, Select};
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{json, Map, Value};
use squash_core::index::build::NoProgress;
use squash_core::index::BuildInput;
use squash_core::metric::Metric;
use squash_core::protocol::{MAX_BATCH_QUERIES, MAX_K};
use squash_service::http_routes::MAX_BODY_BYTES;
use squash_service::partition_cache::PartitionCache;
use squash_service::write_index;
use squash_service::{
    handle_direct, handle_http, CoordinatorService, HttpResponse, InProcessInvoker, ServiceConfig,
    WorkerInvoker,
};
use squash_storage::{BlobStore, MemoryStore, PrefixedStore};

use common::{params, synthetic, COLORS};

const INDEX: &str = "films";
const DIM: usize = 16;
const NUM_VECTORS: usize = 1000;
const NUM_PARTITIONS: usize = 2;
const QUERY_PATH: &str = "/v1/indexes/films/query";
const BATCH_PATH: &str = "/v1/indexes/films/query-batch";

/// The deepest JSON nesting serde_json parses (its recursion limit is 128 levels).
const MAX_JSON_DEPTH: usize = 127;
/// Containers around the filter in a client query body: the request object.
const QUERY_DEPTH_ABOVE_FILTER: usize = 1;
/// Containers around the filter in a worker payload: request object, `queries`, query object.
const WORKER_DEPTH_ABOVE_FILTER: usize = 3;

/// Marks a string value that is written into the body as a bare JSON token (`1e999`, `NaN`).
const RAW_MARKER: &str = "\u{1}raw:";

/// Top-level fields of a query request.
const QUERY_FIELDS: [&str; 7] = [
    "vector",
    "k",
    "filter",
    "include_attributes",
    "options",
    "require_complete",
    "branching",
];
/// Fields of `options`.
const OPTION_FIELDS: [&str; 6] = [
    "exact",
    "centroid_factor",
    "min_partitions",
    "max_partitions",
    "rerank_factor",
    "hamming_keep",
];
const ATTRIBUTES: [&str; 3] = ["year", "price", "color"];
const ATTRIBUTE_OPERATORS: [&str; 8] = ["$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin"];

// ---------------------------------------------------------------------------------------------
// The service under test
// ---------------------------------------------------------------------------------------------

struct Fixture {
    runtime: tokio::runtime::Runtime,
    service: CoordinatorService,
    input: BuildInput,
    /// Each row's attributes as a hit carries them.
    rows: Vec<Map<String, Value>>,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let input = synthetic(NUM_VECTORS, DIM, 11);
        let root: Arc<dyn BlobStore> = Arc::new(MemoryStore::new());
        let store: Arc<dyn BlobStore> =
            Arc::new(PrefixedStore::try_new(Arc::clone(&root), INDEX).expect("prefix"));
        runtime
            .block_on(write_index(
                store,
                input.clone(),
                params(Metric::L2, NUM_PARTITIONS, "1"),
                Arc::new(NoProgress),
            ))
            .expect("build");
        let invoker =
            InProcessInvoker::new(Arc::clone(&root), Arc::new(PartitionCache::new(1 << 28)));
        let config = ServiceConfig {
            worker_functions: vec!["w0".into(), "w1".into()],
            // Generous: a slow debug build under parallel tests must not turn answers into 503s.
            timeout_ms: 120_000,
            ..ServiceConfig::default()
        };
        let service =
            CoordinatorService::new(root, Arc::new(invoker) as Arc<dyn WorkerInvoker>, config);
        let columns = &input.attributes.columns;
        let rows = (0..NUM_VECTORS)
            .map(|row| {
                let mut attributes = Map::new();
                attributes.insert("year".into(), json!(columns[0][row] as i64));
                attributes.insert("price".into(), json!(columns[1][row]));
                attributes.insert("color".into(), json!(COLORS[columns[2][row] as usize]));
                attributes
            })
            .collect();
        Fixture {
            runtime,
            service,
            input,
            rows,
        }
    })
}

static NUM_REQUESTS: AtomicU64 = AtomicU64::new(0);

fn deadline() -> Instant {
    Instant::now() + Duration::from_secs(120)
}

thread_local! {
    /// Responses per status on this test's thread, for the strategy's summary line.
    static STATUS_COUNTS: RefCell<BTreeMap<u16, u64>> = const { RefCell::new(BTreeMap::new()) };
}

fn record(response: HttpResponse) -> HttpResponse {
    NUM_REQUESTS.fetch_add(1, AtomicOrdering::Relaxed);
    STATUS_COUNTS.with(|counts| *counts.borrow_mut().entry(response.status).or_default() += 1);
    response
}

fn call_http(method: &str, path: &str, body: &[u8]) -> HttpResponse {
    let fx = fixture();
    record(fx.runtime.block_on(handle_http(
        &fx.service,
        method,
        path,
        body,
        "hostile",
        deadline(),
    )))
}

fn call_direct(payload: &[u8]) -> HttpResponse {
    let fx = fixture();
    record(
        fx.runtime
            .block_on(handle_direct(&fx.service, payload, "hostile", deadline())),
    )
}

// ---------------------------------------------------------------------------------------------
// Expectations
// ---------------------------------------------------------------------------------------------

/// What a valid query's answer must satisfy.
#[derive(Debug, Clone)]
struct QueryCheck {
    k: usize,
    filter: Value,
    include_attributes: bool,
    /// The answer must hold exactly min(k, matching rows) hits (exact search, or default
    /// options, which probe both partitions).
    exact_count: bool,
}

/// What `error.field` must be.
#[derive(Debug, Clone, PartialEq)]
enum FieldIs {
    Exactly(String),
    StartsWith(String),
    OneOf(Vec<String>),
    /// Not checked (404, 405, or a 400 whose field depends on where random bytes broke).
    Unchecked,
}

fn exactly(field: impl Into<String>) -> FieldIs {
    FieldIs::Exactly(field.into())
}

/// What a request deserves.
#[derive(Debug, Clone)]
enum Expect {
    /// 200 with a complete answer to one query.
    Answer(QueryCheck),
    /// 200 with a complete answer per query, in order.
    BatchAnswer(Vec<QueryCheck>),
    /// 200 from a route that is not a query.
    Ok,
    /// An error with this status and field.
    Error(u16, FieldIs),
    /// Any 4xx with a well-formed error body.
    ClientError,
}

impl Expect {
    fn invalid(field: FieldIs) -> Expect {
        Expect::Error(400, field)
    }
}

fn cut(text: &str) -> String {
    const MAX_CHARS: usize = 400;
    if text.chars().count() <= MAX_CHARS {
        text.to_string()
    } else {
        format!(
            "{}... ({} chars)",
            text.chars().take(MAX_CHARS).collect::<String>(),
            text.chars().count()
        )
    }
}

/// Checks the invariants every response must satisfy, then what `expect` demands.
fn check(context: &str, response: &HttpResponse, expect: &Expect) -> Result<(), TestCaseError> {
    let status = response.status;
    let body = &response.body;
    let shown = || format!("{context}\n=> {status} {}", cut(&body.to_string()));
    prop_assert!(
        status == 200 || (400..500).contains(&status),
        "status outside 200 and 4xx: {}",
        shown()
    );
    prop_assert!(body.is_object(), "body is not an object: {}", shown());
    if status != 200 {
        let error = &body["error"];
        prop_assert!(
            error["code"].as_str().is_some_and(|c| !c.is_empty()),
            "no error.code: {}",
            shown()
        );
        prop_assert!(
            error["message"].as_str().is_some_and(|m| !m.is_empty()),
            "no error.message: {}",
            shown()
        );
        if status == 400 || status == 413 {
            // "?" is serde_path_to_error's segment for an unknown position, not a field.
            prop_assert!(
                error["field"]
                    .as_str()
                    .is_some_and(|f| !f.is_empty() && f != "?"),
                "a {status} without a usable error.field: {}",
                shown()
            );
        }
    }
    match expect {
        Expect::Answer(query) => {
            prop_assert_eq!(status, 200, "{}", shown());
            check_answer(body, query)
                .map_err(|why| TestCaseError::fail(format!("{why}: {}", shown())))?;
        }
        Expect::BatchAnswer(queries) => {
            prop_assert_eq!(status, 200, "{}", shown());
            let results = body["results"].as_array();
            prop_assert_eq!(results.map(Vec::len), Some(queries.len()), "{}", shown());
            for (result, query) in results.into_iter().flatten().zip(queries) {
                check_answer(result, query)
                    .map_err(|why| TestCaseError::fail(format!("{why}: {}", shown())))?;
            }
            prop_assert_eq!(&body["partial"], &json!(false), "{}", shown());
        }
        Expect::Ok => prop_assert_eq!(status, 200, "{}", shown()),
        Expect::Error(expected_status, field) => {
            prop_assert_eq!(status, *expected_status, "{}", shown());
            let actual = body["error"]["field"].as_str();
            let matches = match field {
                FieldIs::Exactly(name) => actual == Some(name.as_str()),
                FieldIs::StartsWith(prefix) => actual.is_some_and(|a| a.starts_with(prefix)),
                FieldIs::OneOf(names) => actual.is_some_and(|a| names.iter().any(|n| n == a)),
                FieldIs::Unchecked => true,
            };
            prop_assert!(matches, "error.field should be {:?}: {}", field, shown());
        }
        Expect::ClientError => {
            prop_assert!((400..500).contains(&status), "{}", shown());
        }
    }
    Ok(())
}

/// Checks one query's answer: complete, at most k hits, best first, known ids, filter kept.
fn check_answer(answer: &Value, query: &QueryCheck) -> Result<(), String> {
    let fx = fixture();
    if answer["partial"] != json!(false) {
        return Err("a valid query was answered partially".into());
    }
    let hits = answer["hits"].as_array().ok_or("no hits array")?;
    if hits.len() > query.k.min(NUM_VECTORS) {
        return Err(format!("{} hits for k = {}", hits.len(), query.k));
    }
    let num_matching = fx
        .rows
        .iter()
        .filter(|row| model_matches(&query.filter, row))
        .count();
    if query.exact_count && hits.len() != query.k.min(num_matching) {
        return Err(format!(
            "{} hits, expected min(k = {}, matching = {num_matching})",
            hits.len(),
            query.k
        ));
    }
    let mut previous = f64::NEG_INFINITY;
    let mut seen = std::collections::HashSet::new();
    for hit in hits {
        let id = hit["id"].as_u64().ok_or("a hit without an integer id")?;
        let row = fx
            .input
            .ids
            .iter()
            .position(|&known| known == id)
            .ok_or(format!("unknown id {id}"))?;
        if !seen.insert(id) {
            return Err(format!("id {id} returned twice"));
        }
        let distance = hit["distance"]
            .as_f64()
            .ok_or("a hit whose distance is not a number")?;
        if !(distance.is_finite() && distance >= previous) {
            return Err(format!("distance {distance} after {previous}"));
        }
        previous = distance;
        if !model_matches(&query.filter, &fx.rows[row]) {
            return Err(format!("hit {id} ({:?}) fails the filter", fx.rows[row]));
        }
        match (&hit["attributes"], query.include_attributes) {
            (Value::Object(attributes), true) if *attributes == fx.rows[row] => {}
            (Value::Null, false) => {}
            (other, _) => return Err(format!("hit {id} carries attributes {other}")),
        }
    }
    Ok(())
}

/// The filter semantics as documented, evaluated on one row (a model independent of the
/// library's compiler).
fn model_matches(filter: &Value, row: &Map<String, Value>) -> bool {
    match filter {
        Value::Null => true,
        Value::Object(entries) => entries.iter().all(|(key, value)| match key.as_str() {
            "$and" => value
                .as_array()
                .into_iter()
                .flatten()
                .all(|f| model_matches(f, row)),
            "$or" => value
                .as_array()
                .into_iter()
                .flatten()
                .any(|f| model_matches(f, row)),
            "$not" => !model_matches(value, row),
            attribute => {
                let cell = &row[attribute];
                match value {
                    Value::Object(operators) => operators
                        .iter()
                        .all(|(operator, operand)| model_operator(cell, operator, operand)),
                    scalar => model_operator(cell, "$eq", scalar),
                }
            }
        }),
        other => panic!("the model only takes generated filters, got {other}"),
    }
}

fn model_operator(cell: &Value, operator: &str, operand: &Value) -> bool {
    let order = |other: &Value| -> Option<Ordering> {
        match (cell, other) {
            (Value::Number(a), Value::Number(b)) => a.as_f64()?.partial_cmp(&b.as_f64()?),
            (Value::String(a), Value::String(b)) => Some(a.cmp(b)),
            _ => None,
        }
    };
    let is_member = || {
        operand
            .as_array()
            .into_iter()
            .flatten()
            .any(|member| order(member) == Some(Ordering::Equal))
    };
    match operator {
        "$eq" => order(operand) == Some(Ordering::Equal),
        "$ne" => order(operand) != Some(Ordering::Equal),
        "$gt" => order(operand) == Some(Ordering::Greater),
        "$gte" => matches!(order(operand), Some(Ordering::Greater | Ordering::Equal)),
        "$lt" => order(operand) == Some(Ordering::Less),
        "$lte" => matches!(order(operand), Some(Ordering::Less | Ordering::Equal)),
        "$in" => is_member(),
        "$nin" => !is_member(),
        other => panic!("the model only takes generated operators, got {other}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Running strategies and counting cases
// ---------------------------------------------------------------------------------------------

/// The strategies run by this file; the last one to finish prints the total.
const NUM_STRATEGIES: usize = 13;

static TALLY: Mutex<Vec<(&'static str, u64)>> = Mutex::new(Vec::new());

/// Runs `test` on `num_cases` values of `strategy`, reports the count, and fails with the
/// shrunk counterexample.
fn run_strategy<S>(
    name: &'static str,
    num_cases: u32,
    strategy: S,
    test: impl Fn(S::Value) -> Result<(), TestCaseError>,
) where
    S: Strategy,
    S::Value: std::fmt::Debug,
{
    let _ = fixture();
    let started = Instant::now();
    let config = Config {
        cases: num_cases,
        failure_persistence: None,
        max_shrink_time: 60_000,
        ..Config::default()
    };
    let num_tried = AtomicU64::new(0);
    STATUS_COUNTS.with(|counts| counts.borrow_mut().clear());
    let result = TestRunner::new(config).run(&strategy, |value| {
        num_tried.fetch_add(1, AtomicOrdering::Relaxed);
        test(value)
    });
    let num_tried = num_tried.load(AtomicOrdering::Relaxed);
    let statuses = STATUS_COUNTS.with(|counts| {
        let counts = counts.borrow();
        counts
            .iter()
            .map(|(status, n)| format!("{status}: {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    });
    eprintln!(
        "hostile_requests: {name}: {num_tried} cases in {:.1} s (responses {statuses})",
        started.elapsed().as_secs_f64()
    );
    {
        let mut tally = TALLY
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        tally.push((name, num_tried));
        if tally.len() == NUM_STRATEGIES {
            let total: u64 = tally.iter().map(|(_, n)| n).sum();
            eprintln!(
                "hostile_requests: total {total} cases over {NUM_STRATEGIES} strategies, \
                 {num_requests} requests",
                num_requests = NUM_REQUESTS.load(AtomicOrdering::Relaxed)
            );
        }
    }
    if let Err(error) = result {
        panic!("{name}: {error}");
    }
}

// ---------------------------------------------------------------------------------------------
// Bodies
// ---------------------------------------------------------------------------------------------

/// A JSON value written into a body as the bare token `token`.
fn raw(token: &str) -> Value {
    Value::String(format!("{RAW_MARKER}{token}"))
}

/// Returns the JSON text of `value` with every [`raw`] token written bare.
fn to_text(value: &Value) -> String {
    let mut text = serde_json::to_string(value).expect("a Value serializes");
    let marker = "\"\\u0001raw:";
    while let Some(start) = text.find(marker) {
        let token_start = start + marker.len();
        let token_len = text[token_start..].find('"').expect("a closing quote");
        let token = text[token_start..token_start + token_len].to_string();
        text.replace_range(start..token_start + token_len + 1, &token);
    }
    text
}

/// Returns `body` with the `"index"` a direct invocation needs, when the body is an object.
fn with_index(body: &Value) -> Value {
    let mut body = body.clone();
    if let Value::Object(object) = &mut body {
        object.insert("index".into(), json!(INDEX));
    }
    body
}

/// A JSON body with what each entry point must answer.
#[derive(Debug, Clone)]
struct JsonCase {
    body: Value,
    batch: bool,
    expect: Expect,
    /// What `handle_direct` must answer, when it differs from the HTTP route.
    direct_expect_opt: Option<Expect>,
}

impl JsonCase {
    fn query(body: Value, expect: Expect) -> JsonCase {
        JsonCase {
            body,
            batch: false,
            expect,
            direct_expect_opt: None,
        }
    }

    fn batch(body: Value, expect: Expect) -> JsonCase {
        JsonCase {
            body,
            batch: true,
            expect,
            direct_expect_opt: None,
        }
    }
}

/// Sends a case to the HTTP route and as a direct invocation, and checks both answers.
fn send(case: &JsonCase) -> Result<(), TestCaseError> {
    let text = to_text(&case.body);
    let path = if case.batch { BATCH_PATH } else { QUERY_PATH };
    let response = call_http("POST", path, text.as_bytes());
    check(
        &format!("POST {path} {}", cut(&text)),
        &response,
        &case.expect,
    )?;
    let direct_text = to_text(&with_index(&case.body));
    let response = call_direct(direct_text.as_bytes());
    let expect = case.direct_expect_opt.as_ref().unwrap_or(&case.expect);
    check(&format!("direct {}", cut(&direct_text)), &response, expect)
}

// ---------------------------------------------------------------------------------------------
// Valid requests
// ---------------------------------------------------------------------------------------------

fn vector_strategy() -> impl Strategy<Value = Vec<f32>> {
    let odd_component = prop_oneof![
        Just(0.0f32),
        Just(-0.0f32),
        Just(1e-40f32),
        Just(f32::MIN_POSITIVE),
        -1e15f32..1e15,
    ];
    prop_oneof![
        4 => prop::collection::vec(-8.0f32..8.0, DIM),
        1 => prop::collection::vec((-6i32..=6).prop_map(|x| x as f32), DIM),
        1 => prop::collection::vec(odd_component, DIM),
    ]
}

/// A valid scalar for attribute `attribute` (strings absent from the dictionary included).
fn attribute_value(attribute: &'static str) -> BoxedStrategy<Value> {
    match attribute {
        "year" => prop_oneof![
            (1990i64..2035).prop_map(Value::from),
            (1990.0f64..2035.0).prop_map(Value::from),
            Just(json!(1e300)),
            Just(json!(-1.7976931348623157e308)),
        ]
        .boxed(),
        "price" => prop_oneof![
            (-10.0f64..110.0).prop_map(Value::from),
            (0i64..100).prop_map(Value::from),
            Just(json!(u64::MAX)),
        ]
        .boxed(),
        _ => prop_oneof![
            pick(&COLORS).prop_map(Value::from),
            "[a-z]{0,7}".prop_map(Value::from),
            "[ -~é日]{0,5}".prop_map(Value::from),
        ]
        .boxed(),
    }
}

/// A valid condition on one attribute: `{attribute: condition}`.
fn valid_leaf() -> BoxedStrategy<Value> {
    pick(&ATTRIBUTES)
        .prop_flat_map(|attribute| {
            let value = attribute_value(attribute);
            let compare = pick(&["$eq", "$ne", "$gt", "$gte", "$lt", "$lte"]);
            let set = pick(&["$in", "$nin"]);
            prop_oneof![
                value.clone().prop_map(move |v| json!({ attribute: v })),
                prop::collection::vec((compare, value.clone()), 1..3).prop_map(move |ops| {
                    let operators: Map<String, Value> =
                        ops.into_iter().map(|(op, v)| (op.to_string(), v)).collect();
                    json!({ attribute: operators })
                }),
                (set, prop::collection::vec(value, 0..6))
                    .prop_map(move |(op, members)| json!({ attribute: { op: members } })),
            ]
        })
        .boxed()
}

fn valid_filter() -> BoxedStrategy<Value> {
    let leaf = prop_oneof![
        6 => valid_leaf(),
        1 => (valid_leaf(), valid_leaf()).prop_map(|(a, b)| {
            let mut merged = a.as_object().cloned().unwrap_or_default();
            merged.extend(b.as_object().cloned().unwrap_or_default());
            Value::Object(merged)
        }),
        1 => Just(json!({})),
    ];
    leaf.prop_recursive(3, 16, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 1..4).prop_map(|f| json!({ "$and": f })),
            prop::collection::vec(inner.clone(), 1..4).prop_map(|f| json!({ "$or": f })),
            inner.prop_map(|f| json!({ "$not": f })),
        ]
    })
    .boxed()
}

/// Valid `options`, each field absent, null (where the field is optional) or in range.
fn valid_options() -> impl Strategy<Value = Value> {
    fn optional(value: BoxedStrategy<Value>) -> BoxedStrategy<Option<Value>> {
        prop_oneof![
            2 => Just(None),
            1 => Just(Some(Value::Null)),
            3 => value.prop_map(Some),
        ]
        .boxed()
    }
    (
        proptest::option::of(any::<bool>()),
        optional((1.0f32..4.0).prop_map(Value::from).boxed()),
        optional((0usize..5).prop_map(Value::from).boxed()),
        optional((1usize..5).prop_map(Value::from).boxed()),
        optional(
            prop_oneof![1usize..=30, Just(1000)]
                .prop_map(Value::from)
                .boxed(),
        ),
        optional(
            prop_oneof![0.01f32..=1.0, Just(1.0f32)]
                .prop_map(Value::from)
                .boxed(),
        ),
    )
        .prop_map(|(exact, factor, min, max, rerank, keep)| {
            let mut options = Map::new();
            let values = [exact.map(Value::from), factor, min, max, rerank, keep];
            for (name, value) in OPTION_FIELDS.iter().zip(values) {
                if let Some(value) = value {
                    options.insert(name.to_string(), value);
                }
            }
            Value::Object(options)
        })
}

/// A valid query body and what its answer must satisfy. It has no `branching`, which only a
/// query sent alone may carry.
fn valid_query() -> impl Strategy<Value = (Map<String, Value>, QueryCheck)> {
    let k = prop_oneof![
        6 => (1usize..=20).prop_map(Some),
        2 => Just(None),
        1 => (1usize..=MAX_K).prop_map(Some),
        1 => Just(Some(MAX_K)),
    ];
    let filter = prop_oneof![
        1 => Just(None),
        1 => Just(Some(Value::Null)),
        4 => valid_filter().prop_map(Some),
    ];
    (
        vector_strategy(),
        k,
        filter,
        proptest::option::of(any::<bool>()),
        proptest::option::of(valid_options()),
        proptest::option::of(any::<bool>()),
    )
        .prop_map(
            |(vector, k_opt, filter_opt, include_opt, options_opt, complete_opt)| {
                let mut body = Map::new();
                body.insert("vector".into(), json!(vector));
                if let Some(k) = k_opt {
                    body.insert("k".into(), json!(k));
                }
                if let Some(filter) = &filter_opt {
                    body.insert("filter".into(), filter.clone());
                }
                if let Some(include) = include_opt {
                    body.insert("include_attributes".into(), json!(include));
                }
                let exact_search = options_opt
                    .as_ref()
                    .is_some_and(|options| options["exact"] == json!(true));
                let exact_count = exact_search || options_opt.is_none();
                if let Some(options) = options_opt {
                    body.insert("options".into(), options);
                }
                if let Some(complete) = complete_opt {
                    body.insert("require_complete".into(), json!(complete));
                }
                let check = QueryCheck {
                    k: k_opt.unwrap_or(10),
                    filter: filter_opt.unwrap_or(Value::Null),
                    include_attributes: include_opt.unwrap_or(false),
                    exact_count,
                };
                (body, check)
            },
        )
}

// ---------------------------------------------------------------------------------------------
// Hostile values
// ---------------------------------------------------------------------------------------------

/// JSON value kinds, to put one where another belongs.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Null,
    Bool,
    Int,
    NegInt,
    Float,
    Str,
    Array,
    Object,
}

fn value_of(kind: Kind) -> BoxedStrategy<Value> {
    match kind {
        Kind::Null => Just(Value::Null).boxed(),
        Kind::Bool => any::<bool>().prop_map(Value::from).boxed(),
        Kind::Int => (0u64..100).prop_map(Value::from).boxed(),
        Kind::NegInt => (i64::MIN..0).prop_map(Value::from).boxed(),
        Kind::Float => prop_oneof![
            (-1e6f64..1e6).prop_map(Value::from),
            (1u32..50).prop_map(|x| Value::from(f64::from(x))),
        ]
        .boxed(),
        Kind::Str => prop_oneof![
            "[ -~]{0,12}".prop_map(Value::from),
            "[0-9]{1,3}".prop_map(Value::from),
            Just(json!("true")),
        ]
        .boxed(),
        Kind::Array => prop_oneof![
            prop::collection::vec((0u8..10).prop_map(Value::from), 0..4).prop_map(Value::from),
            Just(json!([[1.0, 2.0]])),
        ]
        .boxed(),
        Kind::Object => prop_oneof![
            "[a-z]{1,6}".prop_map(|key| json!({ key: 1 })),
            Just(json!({})),
        ]
        .boxed(),
    }
}

/// Picks one of `values`.
fn pick<T: Clone + std::fmt::Debug + 'static>(values: &[T]) -> Select<T> {
    select(values.to_vec())
}

/// A value of one of `kinds`.
fn one_of(kinds: &'static [Kind]) -> BoxedStrategy<Value> {
    select(kinds).prop_flat_map(value_of).boxed()
}

const NOT_BOOL: &[Kind] = &[
    Kind::Null,
    Kind::Int,
    Kind::Float,
    Kind::Str,
    Kind::Array,
    Kind::Object,
];
const NOT_COUNT: &[Kind] = &[
    Kind::Bool,
    Kind::NegInt,
    Kind::Float,
    Kind::Str,
    Kind::Array,
    Kind::Object,
];
const NOT_NUMBER: &[Kind] = &[Kind::Bool, Kind::Str, Kind::Array, Kind::Object];
const NOT_ELEMENT: &[Kind] = &[Kind::Null, Kind::Bool, Kind::Str, Kind::Array, Kind::Object];

/// Tokens that JSON does not allow or that overflow f64: serde_json refuses them where read.
const BAD_NUMBER_TOKENS: [&str; 14] = [
    "1e999",
    "-1e999",
    "1E400",
    "-2e308",
    "1.8e308",
    "NaN",
    "-NaN",
    "Infinity",
    "-Infinity",
    "inf",
    "nan",
    "+1",
    ".5",
    "--1",
];
/// Finite f64 that overflow f32 (read as infinity).
const F32_OVERFLOW_TOKENS: [&str; 5] = [
    "1e39",
    "-1e39",
    "3.5e38",
    "-3.41e38",
    "1.7976931348623157e308",
];

/// One edit that makes a valid query invalid, and the field the error must name.
#[derive(Debug, Clone)]
struct Mutation {
    edit: Edit,
    field: FieldIs,
}

#[derive(Debug, Clone)]
enum Edit {
    /// Sets the value at a path of object keys, creating objects on the way.
    Set(Vec<&'static str>, Value),
    /// Sets a top-level key that no query has.
    SetUnknown(String, Value),
    /// Sets a key that `options` does not have.
    SetUnknownOption(String, Value),
    Remove(&'static str),
    ReplaceBody(Value),
}

impl Edit {
    fn apply(&self, body: &mut Map<String, Value>) -> Option<Value> {
        match self {
            Edit::Set(path, value) => {
                let (last, parents) = path.split_last().expect("a non-empty path");
                let mut object = body;
                for parent in parents {
                    let entry = object
                        .entry(parent.to_string())
                        .or_insert_with(|| json!({}));
                    object = entry
                        .as_object_mut()
                        .expect("generated parents are objects");
                }
                object.insert(last.to_string(), value.clone());
            }
            Edit::SetUnknown(key, value) => {
                body.insert(key.clone(), value.clone());
            }
            Edit::SetUnknownOption(key, value) => {
                let options = body.entry("options").or_insert_with(|| json!({}));
                options
                    .as_object_mut()
                    .expect("generated options are objects")
                    .insert(key.clone(), value.clone());
            }
            Edit::Remove(key) => {
                body.remove(*key);
            }
            Edit::ReplaceBody(value) => return Some(value.clone()),
        }
        None
    }
}

fn set(path: &[&'static str], value: Value, field: &str) -> Mutation {
    Mutation {
        edit: Edit::Set(path.to_vec(), value),
        field: exactly(field),
    }
}

/// Wrong JSON types, out-of-range values and unknown keys for every field of a query.
fn mutation() -> BoxedStrategy<Mutation> {
    let wrong_vector = prop_oneof![
        one_of(&[
            Kind::Null,
            Kind::Bool,
            Kind::Int,
            Kind::Float,
            Kind::Str,
            Kind::Object
        ])
        .prop_map(|v| set(&["vector"], v, "vector")),
        (0usize..DIM, one_of(NOT_ELEMENT)).prop_map(|(position, bad)| {
            let mut vector = vec![json!(0.5); DIM];
            vector[position] = bad;
            set(
                &["vector"],
                Value::Array(vector),
                &format!("vector[{position}]"),
            )
        }),
        (1usize..4).prop_map(|depth| {
            let mut nested = json!([1.0, 2.0]);
            for _ in 0..depth {
                nested = json!([nested]);
            }
            set(&["vector"], nested, "vector[0]")
        }),
        (0usize..200)
            .prop_filter("not the index dimension", |&n| n != DIM)
            .prop_map(|n| set(&["vector"], json!(vec![0.25; n]), "vector")),
        (0usize..DIM, pick(&F32_OVERFLOW_TOKENS)).prop_map(|(position, token)| {
            let mut vector = vec![json!(0.5); DIM];
            vector[position] = raw(token);
            set(
                &["vector"],
                Value::Array(vector),
                &format!("vector[{position}]"),
            )
        }),
        (0usize..DIM, pick(&BAD_NUMBER_TOKENS)).prop_map(|(position, token)| {
            let mut vector = vec![json!(0.5); DIM];
            vector[position] = raw(token);
            set(
                &["vector"],
                Value::Array(vector),
                &format!("vector[{position}]"),
            )
        }),
    ];
    let wrong_k = prop_oneof![
        one_of(NOT_COUNT).prop_map(|v| set(&["k"], v, "k")),
        Just(set(&["k"], Value::Null, "k")),
        pick(&[
            "1e20",
            "100000000000000000000",
            "18446744073709551616",
            "1e999",
            "-0",
            "5e0"
        ])
        .prop_map(|token| set(&["k"], raw(token), "k")),
        prop_oneof![Just(0u64), (MAX_K as u64 + 1)..=u64::MAX].prop_map(|k| set(
            &["k"],
            json!(k),
            "k"
        )),
    ];
    let wrong_filter = one_of(&[
        Kind::Bool,
        Kind::Int,
        Kind::NegInt,
        Kind::Float,
        Kind::Str,
        Kind::Array,
    ])
    .prop_map(|v| set(&["filter"], v, "filter"));
    let wrong_flags = prop_oneof![
        one_of(NOT_BOOL).prop_map(|v| set(&["include_attributes"], v, "include_attributes")),
        one_of(NOT_BOOL).prop_map(|v| set(&["require_complete"], v, "require_complete")),
    ];
    let wrong_branching = prop_oneof![
        one_of(NOT_COUNT).prop_map(|v| set(&["branching"], v, "branching")),
        // In a batch, any branching of a query is refused (the batch has one tree).
        prop_oneof![Just(0u64), Just(1), 65u64..=u64::MAX].prop_map(|b| set(
            &["branching"],
            json!(b),
            "branching"
        )),
    ];
    let wrong_options = prop_oneof![
        one_of(&[Kind::Null, Kind::Bool, Kind::Int, Kind::Str, Kind::Array]).prop_map(|v| set(
            &["options"],
            v,
            "options"
        )),
        one_of(NOT_BOOL).prop_map(|v| set(&["options", "exact"], v, "options.exact")),
        one_of(NOT_NUMBER).prop_map(|v| set(
            &["options", "centroid_factor"],
            v,
            "options.centroid_factor"
        )),
        prop_oneof![
            (-1e30f64..0.99).prop_map(Value::from),
            pick(&F32_OVERFLOW_TOKENS).prop_map(raw),
        ]
        .prop_map(|v| set(
            &["options", "centroid_factor"],
            v,
            "options.centroid_factor"
        )),
        pick(&BAD_NUMBER_TOKENS).prop_map(|token| set(
            &["options", "centroid_factor"],
            raw(token),
            "options.centroid_factor"
        )),
        one_of(NOT_COUNT).prop_map(|v| set(
            &["options", "min_partitions"],
            v,
            "options.min_partitions"
        )),
        one_of(NOT_COUNT).prop_map(|v| set(
            &["options", "max_partitions"],
            v,
            "options.max_partitions"
        )),
        Just(set(
            &["options", "max_partitions"],
            json!(0),
            "options.max_partitions"
        )),
        one_of(NOT_COUNT).prop_map(|v| set(
            &["options", "rerank_factor"],
            v,
            "options.rerank_factor"
        )),
        prop_oneof![Just(0u64), 1001u64..=u64::MAX].prop_map(|r| set(
            &["options", "rerank_factor"],
            json!(r),
            "options.rerank_factor"
        )),
        one_of(NOT_NUMBER).prop_map(|v| set(
            &["options", "hamming_keep"],
            v,
            "options.hamming_keep"
        )),
        prop_oneof![
            (-1e30f64..=0.0).prop_map(Value::from),
            (1.001f64..1e30).prop_map(Value::from),
            pick(&["1e39", "-1e39", "1e-46", "-0.0", "0"]).prop_map(raw),
        ]
        .prop_map(|v| set(&["options", "hamming_keep"], v, "options.hamming_keep")),
    ];
    let unknown = prop_oneof![
        (
            "[a-zA-Z0-9_.$ é\\[\\]\n-]{1,16}",
            one_of(&[Kind::Null, Kind::Int, Kind::Str])
        )
            .prop_filter("an unknown key", |(key, _)| {
                !QUERY_FIELDS.contains(&key.as_str())
                    && !["index", "queries"].contains(&key.as_str())
            })
            .prop_map(|(key, value)| Mutation {
                field: exactly(unknown_key_field("", &key)),
                edit: Edit::SetUnknown(key, value),
            }),
        (
            "[a-zA-Z0-9_.$ é-]{1,16}",
            one_of(&[Kind::Null, Kind::Int, Kind::Bool])
        )
            .prop_filter("an unknown option", |(key, _)| !OPTION_FIELDS
                .contains(&key.as_str()))
            .prop_map(|(key, value)| Mutation {
                field: exactly(unknown_key_field("options", &key)),
                edit: Edit::SetUnknownOption(key, value),
            }),
    ];
    let missing_or_not_an_object = prop_oneof![
        Just(Mutation {
            edit: Edit::Remove("vector"),
            field: exactly("vector"),
        }),
        one_of(&[
            Kind::Null,
            Kind::Bool,
            Kind::Int,
            Kind::Float,
            Kind::Str,
            Kind::Array,
        ])
        .prop_map(|value| {
            Mutation {
                edit: Edit::ReplaceBody(value),
                field: exactly("body"),
            }
        }),
    ];
    prop_oneof![
        3 => wrong_vector,
        2 => wrong_k,
        1 => wrong_filter,
        1 => wrong_flags,
        1 => wrong_branching,
        4 => wrong_options,
        2 => unknown,
        1 => missing_or_not_an_object,
    ]
    .boxed()
}

/// How `error.field` names an unknown `key` under `parent` (empty at the top level): by
/// itself, or quoted as `["key"]` when it would not read as one name.
fn unknown_key_field(parent: &str, key: &str) -> String {
    let plain = !key.is_empty() && key != "?" && !key.contains(['.', '[', ']', '"']);
    match (parent, plain) {
        ("", true) => key.to_string(),
        (parent, true) => format!("{parent}.{key}"),
        (parent, false) => format!("{parent}[{}]", Value::String(key.to_string())),
    }
}

/// Returns `field` as named inside query `position` of a batch.
fn within_batch(position: usize, field: &FieldIs) -> FieldIs {
    let prefixed = |name: &str| {
        if name == "body" {
            format!("queries[{position}]")
        } else if name.starts_with('[') {
            format!("queries[{position}]{name}")
        } else {
            format!("queries[{position}].{name}")
        }
    };
    match field {
        FieldIs::Exactly(name) => FieldIs::Exactly(prefixed(name)),
        FieldIs::StartsWith(name) => FieldIs::StartsWith(prefixed(name)),
        FieldIs::OneOf(names) => FieldIs::OneOf(names.iter().map(|n| prefixed(n)).collect()),
        other => other.clone(),
    }
}

/// A query body, alone or as query `position` of a batch of valid queries, with `expect` for
/// the query alone.
fn place(
    body: Value,
    expect: Expect,
    batch_opt: Option<(Vec<Map<String, Value>>, Index)>,
) -> JsonCase {
    match batch_opt {
        None => JsonCase::query(body, expect),
        Some((others, index)) => {
            let position = index.index(others.len() + 1);
            let mut queries: Vec<Value> = others.into_iter().map(Value::Object).collect();
            queries.insert(position, body);
            let expect = match expect {
                Expect::Error(status, field) => {
                    Expect::Error(status, within_batch(position, &field))
                }
                other => other,
            };
            JsonCase::batch(json!({ "queries": queries }), expect)
        }
    }
}

/// Optionally, the other (valid) queries of a batch of one to four.
fn batch_mates() -> impl Strategy<Value = Option<(Vec<Map<String, Value>>, Index)>> {
    prop_oneof![
        2 => Just(None),
        1 => (prop::collection::vec(valid_query().prop_map(|(body, _)| body), 0..4), any::<Index>())
            .prop_map(Some),
    ]
}

// ---------------------------------------------------------------------------------------------
// Filters
// ---------------------------------------------------------------------------------------------

/// A bad filter fragment `{key: value}` and the path below it that the error must name.
#[derive(Debug, Clone)]
struct BadFilter {
    filter: Value,
    /// Path below the fragment's position, starting with `.`.
    suffix: String,
}

fn bad(filter: Value, suffix: impl Into<String>) -> BadFilter {
    BadFilter {
        filter,
        suffix: suffix.into(),
    }
}

/// Unknown operators at every level, unknown attributes, logical operators misused.
fn unknown_operator() -> BoxedStrategy<BadFilter> {
    let any_value = one_of(&[
        Kind::Null,
        Kind::Bool,
        Kind::Int,
        Kind::Str,
        Kind::Array,
        Kind::Object,
    ]);
    let attribute = pick(&ATTRIBUTES);
    prop_oneof![
        // Under an attribute: anything but the eight attribute operators.
        (attribute.clone(), "\\$?[a-zA-Z]{1,8}", any_value.clone())
            .prop_filter("unknown", |(_, op, _)| !ATTRIBUTE_OPERATORS
                .contains(&op.as_str()))
            .prop_map(|(attribute, op, value)| {
                bad(
                    json!({ attribute: { op.clone(): value } }),
                    format!(".{attribute}.{op}"),
                )
            }),
        (
            attribute.clone(),
            pick(&["$and", "$or", "$not", "$regex", "$exists", "$where", "$size"])
        )
            .prop_map(|(attribute, op)| bad(
                json!({ attribute: { op: [{ "year": 2001 }] } }),
                format!(".{attribute}.{op}")
            )),
        // At filter level: `$` words other than $and, $or, $not.
        ("\\$[a-zA-Z$]{0,8}", any_value.clone())
            .prop_filter("unknown", |(op, _)| !["$and", "$or", "$not"]
                .contains(&op.as_str()))
            .prop_map(|(op, value)| bad(json!({ op.clone(): value }), format!(".{op}"))),
        // Attribute names the index does not have.
        ("[a-zA-Z_é][a-zA-Z0-9_. é-]{0,12}", any_value)
            .prop_filter("unknown", |(name, _)| !ATTRIBUTES.contains(&name.as_str()))
            .prop_map(|(name, value)| bad(json!({ name.clone(): value }), format!(".{name}"))),
        // Logical operators with operands of the wrong shape.
        (
            pick(&["$and", "$or"]),
            one_of(&[Kind::Null, Kind::Bool, Kind::Int, Kind::Str, Kind::Object])
        )
            .prop_map(|(op, value)| bad(json!({ op: value }), format!(".{op}"))),
        pick(&["$and", "$or"]).prop_map(|op| bad(json!({ op: [] }), format!(".{op}"))),
        (
            pick(&["$and", "$or"]),
            0usize..3,
            one_of(&[Kind::Null, Kind::Bool, Kind::Int, Kind::Str, Kind::Array])
        )
            .prop_map(|(op, position, element)| {
                let mut elements = vec![json!({ "year": 2001 }); position];
                elements.push(element);
                bad(json!({ op: elements }), format!(".{op}[{position}]"))
            }),
        one_of(&[Kind::Null, Kind::Bool, Kind::Int, Kind::Str, Kind::Array])
            .prop_map(|value| bad(json!({ "$not": value }), ".$not")),
    ]
    .boxed()
}

/// Strings where numbers go and the reverse, for each attribute kind and operator.
fn kind_mismatch() -> BoxedStrategy<BadFilter> {
    let numeric = pick(&["year", "price"]);
    let scalar_operator = pick(&["$eq", "$ne", "$gt", "$gte", "$lt", "$lte"]);
    let set_operator = pick(&["$in", "$nin"]);
    let not_a_number = one_of(&[Kind::Null, Kind::Bool, Kind::Str, Kind::Object]);
    let not_a_string = one_of(&[
        Kind::Null,
        Kind::Bool,
        Kind::Int,
        Kind::NegInt,
        Kind::Float,
        Kind::Object,
    ]);
    // An object in place of a value is an operator object, so shorthand values are scalars.
    let scalar_not_a_number = one_of(&[Kind::Null, Kind::Bool, Kind::Str]);
    let scalar_not_a_string =
        one_of(&[Kind::Null, Kind::Bool, Kind::Int, Kind::NegInt, Kind::Float]);
    prop_oneof![
        (numeric.clone(), scalar_not_a_number).prop_map(|(attribute, value)| bad(
            json!({ attribute: value }),
            format!(".{attribute}")
        )),
        (
            numeric.clone(),
            scalar_operator.clone(),
            prop_oneof![not_a_number.clone(), one_of(&[Kind::Array])]
        )
            .prop_map(|(attribute, op, value)| bad(
                json!({ attribute: { op: value } }),
                format!(".{attribute}.{op}")
            )),
        (
            numeric.clone(),
            set_operator.clone(),
            prop::collection::vec(1990i64..2030, 0..5),
            any::<Index>(),
            not_a_number.clone()
        )
            .prop_map(|(attribute, op, members, index, value)| {
                let position = index.index(members.len() + 1);
                let mut members: Vec<Value> = members.into_iter().map(Value::from).collect();
                members.insert(position, value);
                bad(
                    json!({ attribute: { op: members } }),
                    format!(".{attribute}.{op}[{position}]"),
                )
            }),
        (Just("color"), scalar_not_a_string).prop_map(|(attribute, value)| bad(
            json!({ attribute: value }),
            format!(".{attribute}")
        )),
        (
            Just("color"),
            scalar_operator,
            prop_oneof![not_a_string.clone(), one_of(&[Kind::Array])]
        )
            .prop_map(|(attribute, op, value)| bad(
                json!({ attribute: { op: value } }),
                format!(".{attribute}.{op}")
            )),
        (
            Just("color"),
            set_operator.clone(),
            prop::collection::vec(pick(&COLORS), 0..5),
            any::<Index>(),
            not_a_string
        )
            .prop_map(|(attribute, op, members, index, value)| {
                let position = index.index(members.len() + 1);
                let mut members: Vec<Value> = members.into_iter().map(Value::from).collect();
                members.insert(position, value);
                bad(
                    json!({ attribute: { op: members } }),
                    format!(".{attribute}.{op}[{position}]"),
                )
            }),
        // Set operators without an array, arrays without an operator, empty conditions.
        (
            pick(&ATTRIBUTES),
            set_operator,
            one_of(&[Kind::Null, Kind::Bool, Kind::Int, Kind::Str, Kind::Object])
        )
            .prop_map(|(attribute, op, value)| bad(
                json!({ attribute: { op: value } }),
                format!(".{attribute}.{op}")
            )),
        (
            pick(&ATTRIBUTES),
            prop_oneof![
                Just(json!([])),
                Just(json!([2001, 2002])),
                Just(json!(["red"]))
            ]
        )
            .prop_map(|(attribute, value)| bad(
                json!({ attribute: value }),
                format!(".{attribute}")
            )),
        pick(&ATTRIBUTES)
            .prop_map(|attribute| bad(json!({ attribute: {} }), format!(".{attribute}"))),
        // Numbers JSON cannot hold, in filters.
        (pick(&["year", "price"]), pick(&BAD_NUMBER_TOKENS[..5])).prop_map(|(attribute, token)| {
            bad(
                json!({ attribute: { "$lt": raw(token) } }),
                format!(".{attribute}.$lt"),
            )
        }),
    ]
    .boxed()
}

/// Places a bad fragment inside up to three levels of `$and`/`$or`/`$not` among valid
/// siblings, and returns the whole filter with the field its error must name.
fn nest_bad(inner: BoxedStrategy<BadFilter>) -> impl Strategy<Value = (Value, String)> {
    let level = (
        pick(&["$and", "$or", "$not"]),
        prop::collection::vec(valid_leaf(), 0..3),
        any::<Index>(),
    );
    (inner, prop::collection::vec(level, 0..4)).prop_map(|(bad, levels)| {
        let mut filter = bad.filter;
        let mut path = String::new();
        for (op, siblings, index) in levels.into_iter().rev() {
            if op == "$not" {
                filter = json!({ "$not": filter });
                path = format!(".$not{path}");
            } else {
                let position = index.index(siblings.len() + 1);
                let mut elements = siblings;
                elements.insert(position, filter);
                filter = json!({ op: elements });
                path = format!(".{op}[{position}]{path}");
            }
        }
        (filter, format!("filter{path}{}", bad.suffix))
    })
}

/// One level of a deep filter, outermost first.
#[derive(Debug, Clone)]
enum Level {
    /// `$and`/`$or` with the inner filter at `position` among always-true/always-false leaves.
    List(&'static str, usize, usize),
    Not,
}

fn level() -> impl Strategy<Value = Level> {
    prop_oneof![
        2 => (pick(&["$and", "$or"]), 0usize..2, 0usize..2)
            .prop_map(|(op, before, after)| Level::List(op, before, after)),
        3 => Just(Level::Not),
    ]
}

/// Returns the levels of arrays and objects in `value` (0 for a scalar).
fn json_depth(value: &Value) -> usize {
    match value {
        Value::Array(elements) => 1 + elements.iter().map(json_depth).max().unwrap_or(0),
        Value::Object(entries) => 1 + entries.values().map(json_depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// Returns (filter, the field of the leaf's error if the leaf is bad).
fn build_deep(levels: &[Level], leaf: &Value, leaf_suffix: &str) -> (Value, String) {
    let sibling = |i: usize| {
        if i.is_multiple_of(2) {
            json!({ "year": { "$gte": 1990 } })
        } else {
            json!({ "color": "none" })
        }
    };
    let mut filter = leaf.clone();
    for level in levels.iter().rev() {
        match level {
            Level::Not => filter = json!({ "$not": filter }),
            Level::List(op, before, after) => {
                let mut elements: Vec<Value> = (0..*before).map(sibling).collect();
                elements.push(filter);
                elements.extend((0..*after).map(|i| sibling(i + 1)));
                filter = json!({ *op: elements });
            }
        }
    }
    let mut path = String::from("filter");
    for level in levels {
        match level {
            Level::Not => path.push_str(".$not"),
            Level::List(op, before, _) => path.push_str(&format!(".{op}[{before}]")),
        }
    }
    path.push_str(leaf_suffix);
    (filter, path)
}

// ---------------------------------------------------------------------------------------------
// Index names, methods and paths
// ---------------------------------------------------------------------------------------------

/// The documented rule: 1 to 128 ASCII letters, digits, `.`, `_` or `-`, starting with a
/// letter or digit.
fn is_valid_index_name(name: &str) -> bool {
    (1..=128).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
}

fn index_name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        pick(&[
            ".",
            "..",
            "../films",
            "films/..",
            "..%2Ffilms",
            "%2e%2e",
            "films%2F..",
            "/",
            "films/",
            "/films",
            "films\\..",
            "FILMS",
            "films.",
            "films ",
            " films",
            "fi lms",
            "films\0",
            "films\n",
            "films?x=1",
            "films#x",
            "films;x",
            "films..x",
            "-films",
            "_films",
            "film\u{e9}s",
            "\u{202e}films",
            "films\u{0}/x"
        ])
        .prop_map(str::to_string),
        "[a-zA-Z0-9][a-zA-Z0-9._-]{0,20}",
        "[.\\-_][a-z]{0,8}",
        "[a-z]{0,4}(%2[fF]|%00|%2e|\\.\\.|/|\\\\)[a-z.]{0,6}",
        "[a-z]{0,4}[\\x00-\\x1f\\x7f][a-z]{0,4}",
        "[a-z]{0,4}[é日本🦀 ?#:*\"<>|'`{}\\[\\]]{1,3}[a-z]{0,4}",
        "[a-z0-9]{120,136}",
        "[a-z]{300,600}",
        any::<String>(),
    ]
}

/// How the router answers a path (the routes in the `http` module's documentation).
#[derive(Debug, Clone, PartialEq)]
enum Route {
    Health,
    List,
    Describe(String),
    Query(String),
    Batch(String),
}

fn route_of(path: &str) -> Option<Route> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match segments.as_slice() {
        ["health"] => Some(Route::Health),
        ["v1", "indexes"] => Some(Route::List),
        ["v1", "indexes", name] => Some(Route::Describe(name.to_string())),
        ["v1", "indexes", name, "query"] => Some(Route::Query(name.to_string())),
        ["v1", "indexes", name, "query-batch"] => Some(Route::Batch(name.to_string())),
        _ => None,
    }
}

fn method() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => pick(&["GET", "POST", "get", "post"]).prop_map(str::to_string),
        3 => pick(&[
            "GET",
            "POST",
            "PUT",
            "DELETE",
            "PATCH",
            "HEAD",
            "OPTIONS",
            "TRACE",
            "CONNECT",
            "get",
            "post",
            "Get",
            "pOsT",
            "",
            " GET",
            "GET ",
            "G ET",
            "GET\0",
            "ＧＥＴ",
            "POST\r\n"
        ])
        .prop_map(str::to_string),
        1 => "[A-Za-z]{0,10}",
        1 => any::<String>(),
    ]
}

fn path() -> impl Strategy<Value = String> {
    let known = pick(&[
        "/health",
        "/v1/indexes",
        "/v1/indexes/films",
        QUERY_PATH,
        BATCH_PATH,
    ]);
    prop_oneof![
        // Known routes, with slashes around them.
        4 => (known, "/{0,2}", "/{0,2}")
            .prop_map(|(path, before, after)| format!("{before}{path}{after}")),
        // Near misses.
        2 => pick(&[
            "",
            "/",
            "/v1",
            "/V1/indexes",
            "/v1/index/films",
            "/v1//indexes/films",
            "/healthz",
            "/health/x",
            "/v2/indexes",
            "/v1/indexes/films/Query",
            "/v1/indexes/films/querybatch",
            "/v1/indexes/films/query/x",
            "/v1/indexes/films/query?k=1",
            "/v1/indexes/films/query%2F",
            "/v1/indexes/films/query-batch/..",
            "/v1/indexes/films/../films/query",
            "\\v1\\indexes\\films",
            "/v1/indexes/films/query\0"
        ])
        .prop_map(str::to_string),
        1 => "(/[a-zA-Z0-9%.?#:-]{0,8}){0,6}",
        2 => "(/(v1|indexes|films|query|query-batch|health|\\.\\.)){0,5}/?",
        1 => any::<String>(),
    ]
}

// ---------------------------------------------------------------------------------------------
// The properties
// ---------------------------------------------------------------------------------------------

#[test]
fn valid_queries_are_answered_completely() {
    let strategy = (valid_query(), proptest::option::of(2usize..=64));
    run_strategy(
        "valid queries",
        1000,
        strategy,
        |((mut body, query), branching_opt)| {
            if let Some(branching) = branching_opt {
                body.insert("branching".into(), json!(branching));
            }
            send(&JsonCase::query(Value::Object(body), Expect::Answer(query)))
        },
    );
}

#[test]
fn valid_batches_are_answered_completely() {
    let batch = (
        prop::collection::vec(valid_query(), 1..5),
        proptest::option::of(any::<bool>()),
        proptest::option::of(2usize..=64),
    );
    run_strategy(
        "valid batches",
        256,
        batch,
        |(queries, complete_opt, branching_opt)| {
            let (bodies, checks): (Vec<_>, Vec<_>) = queries.into_iter().unzip();
            let mut body = json!({ "queries": bodies });
            if let Some(complete) = complete_opt {
                body["require_complete"] = json!(complete);
            }
            if let Some(branching) = branching_opt {
                body["branching"] = json!(branching);
            }
            send(&JsonCase::batch(body, Expect::BatchAnswer(checks)))
        },
    );
}

#[test]
fn large_batches_and_large_k_are_answered_or_refused_by_the_answer_limit() {
    // Up to 3,000 queries of up to 10,000 hits, with attributes and exact mode: each batch is
    // answered completely when its estimated answer fits a response, and refused with a 400
    // naming `queries` when it does not, never cut short or grown past the limit.
    let limits = squash_core::search::RequestLimits::for_timeout(120_000);
    let schema = fixture().input.schema.clone();
    let attribute_bytes = squash_core::search::limits::attribute_json_bytes(&schema);
    let strategy = (
        vector_strategy(),
        prop_oneof![3 => 1usize..=50, 2 => 1usize..=3000, 1 => Just(3000)],
        prop_oneof![3 => 1usize..=20, 1 => 1usize..=MAX_K, 1 => Just(MAX_K)],
        any::<bool>(),
        any::<bool>(),
    );
    run_strategy(
        "large batches and large k",
        48,
        strategy,
        |(vector, num_queries, k, include_attributes, exact)| {
            let query = json!({
                "vector": vector,
                "k": k,
                "include_attributes": include_attributes,
                "options": {"exact": exact},
            });
            let requests: Vec<squash_core::protocol::QueryRequest> =
                vec![serde_json::from_value(query.clone()).expect("a valid query"); num_queries];
            let estimate = squash_core::search::limits::estimated_answer_bytes(
                requests.iter().map(|r| (r.k, r.include_attributes)),
                attribute_bytes,
            );
            let check = QueryCheck {
                k,
                filter: Value::Null,
                include_attributes,
                exact_count: true,
            };
            let expect = if estimate > limits.max_answer_bytes {
                Expect::invalid(exactly("queries"))
            } else {
                Expect::BatchAnswer(vec![check; num_queries])
            };
            let body = json!({ "queries": vec![query; num_queries] });
            send(&JsonCase::batch(body, expect))
        },
    );
}

#[test]
fn every_field_of_a_query_refuses_wrong_types_and_ranges() {
    let strategy = (valid_query(), mutation(), batch_mates());
    run_strategy(
        "wrong field types and ranges",
        3000,
        strategy,
        |((mut body, _), mutation, batch_opt)| {
            let body = mutation
                .edit
                .apply(&mut body)
                .unwrap_or(Value::Object(body));
            send(&place(body, Expect::invalid(mutation.field), batch_opt))
        },
    );
}

#[test]
fn unknown_operators_and_attributes_are_named_by_their_path() {
    let strategy = (valid_query(), nest_bad(unknown_operator()), batch_mates());
    run_strategy(
        "unknown operators and attributes",
        2000,
        strategy,
        |((mut body, _), (filter, field), batch_opt)| {
            body.insert("filter".into(), filter);
            send(&place(
                Value::Object(body),
                Expect::invalid(exactly(field)),
                batch_opt,
            ))
        },
    );
}

#[test]
fn values_of_the_wrong_kind_for_an_attribute_are_named_by_their_path() {
    let strategy = (valid_query(), nest_bad(kind_mismatch()), batch_mates());
    run_strategy(
        "attribute kind mismatches",
        2000,
        strategy,
        |((mut body, _), (filter, field), batch_opt)| {
            body.insert("filter".into(), filter);
            send(&place(
                Value::Object(body),
                Expect::invalid(exactly(field)),
                batch_opt,
            ))
        },
    );
}

#[test]
fn deep_filters_neither_overflow_the_stack_nor_pass_unchecked() {
    let leaf = prop_oneof![
        3 => Just((json!({ "year": { "$gte": 2000 } }), None)),
        1 => Just((json!({ "color": { "$in": ["red", "blue"] } }), None)),
        1 => Just((json!({ "nope": 1 }), Some(".nope"))),
        1 => Just((json!({ "year": { "$gte": "x" } }), Some(".year.$gte"))),
        1 => Just((json!({ "color": 3 }), Some(".color"))),
    ];
    let levels = prop_oneof![
        prop::collection::vec(level(), 25..62),
        prop::collection::vec(level(), 50..500),
        // Around serde_json's depth limit of 127: $not chains of 117 to 129 levels.
        prop::collection::vec(Just(Level::Not), 115..127),
    ];
    let strategy = (valid_query(), levels, leaf);
    // Cases answered, refused at the JSON limit, refused at the bad leaf, in the defect band.
    let outcomes: [AtomicU64; 4] = Default::default();
    run_strategy(
        "deep filters (50..1000 levels)",
        256,
        strategy,
        |((mut body, mut query), levels, (leaf, bad_suffix))| {
            let (filter, path) = build_deep(&levels, &leaf, bad_suffix.unwrap_or(""));
            let depth = json_depth(&filter);
            body.insert("filter".into(), filter.clone());
            let outcome = if depth + QUERY_DEPTH_ABOVE_FILTER > MAX_JSON_DEPTH {
                1
            } else if bad_suffix.is_some() {
                2
            } else if depth + WORKER_DEPTH_ABOVE_FILTER > MAX_JSON_DEPTH {
                3
            } else {
                0
            };
            outcomes[outcome].fetch_add(1, AtomicOrdering::Relaxed);
            let expect = if depth + QUERY_DEPTH_ABOVE_FILTER > MAX_JSON_DEPTH {
                // serde_json's recursion limit, reported at the level where it was reached.
                Expect::invalid(FieldIs::StartsWith("filter.".into()))
            } else if depth + WORKER_DEPTH_ABOVE_FILTER > MAX_JSON_DEPTH {
                // The filter nesting limit, checked before the filter's contents.
                Expect::invalid(exactly("filter".to_string()))
            } else if bad_suffix.is_some() {
                Expect::invalid(exactly(path))
            } else {
                query.filter = filter;
                Expect::Answer(query)
            };
            send(&JsonCase::query(Value::Object(body), expect))
        },
    );
    let [answered, too_deep, bad_leaf, band] = outcomes.map(|n| n.load(AtomicOrdering::Relaxed));
    eprintln!(
        "hostile_requests: deep filters: {answered} answered, {too_deep} over the JSON depth \
         limit, {bad_leaf} refused at a bad leaf, {band} in the worker-depth defect band"
    );
}

#[test]
fn wide_filters_are_answered_or_refused_at_the_right_member() {
    #[derive(Debug, Clone)]
    enum Wide {
        /// `$in`/`$nin` with this many members, and a bad member at a position, or none.
        Set(&'static str, usize, Option<usize>),
        /// `$and`/`$or` with this many children, and a bad child at a position, or none.
        List(&'static str, usize, Option<usize>),
        /// An object with this many unknown attribute names.
        UnknownKeys(usize),
        /// An attribute with every operator at once.
        AllOperators,
    }
    let wide = prop_oneof![
        (
            pick(&["$in", "$nin"]),
            1000usize..100_000,
            proptest::option::of(any::<Index>())
        )
            .prop_map(|(op, n, bad)| Wide::Set(op, n, bad.map(|i| i.index(n)))),
        (
            pick(&["$and", "$or"]),
            100usize..3000,
            proptest::option::of(any::<Index>())
        )
            .prop_map(|(op, n, bad)| Wide::List(op, n, bad.map(|i| i.index(n)))),
        (1000usize..5000).prop_map(Wide::UnknownKeys),
        Just(Wide::AllOperators),
    ];
    let strategy = (vector_strategy(), 1usize..50, wide);
    run_strategy(
        "wide filters (up to 100k members)",
        64,
        strategy,
        |(vector, k, wide)| {
            // Each filter, the field its error must name, and an equivalent small filter for the
            // model (which scans members linearly).
            let (filter, expect_field, model_filter) = match &wide {
                Wide::Set(op, n, bad) => {
                    // Years 1990..2030 repeated: equivalent to the 40 distinct years.
                    let mut members: Vec<Value> =
                        (0..*n).map(|i| json!(1990 + (i % 40) as i64)).collect();
                    if let Some(position) = bad {
                        members[*position] = json!("2001");
                    }
                    let distinct: Vec<i64> = (1990..2030).collect();
                    (
                        json!({ "year": { *op: members } }),
                        bad.map(|p| format!("filter.year.{op}[{p}]")),
                        json!({ "year": { *op: distinct } }),
                    )
                }
                Wide::List(op, n, bad) => {
                    // Price bounds 0..99 repeated: $and means price >= 99, $or price >= 0.
                    let mut children: Vec<Value> = (0..*n)
                        .map(|i| json!({ "price": { "$gte": (i % 100) as f64 } }))
                        .collect();
                    if let Some(position) = bad {
                        children[*position] = json!({ "price": "cheap" });
                    }
                    let bound = if *op == "$and" { 99.0 } else { 0.0 };
                    (
                        json!({ *op: children }),
                        bad.map(|p| format!("filter.{op}[{p}].price")),
                        json!({ "price": { "$gte": bound } }),
                    )
                }
                Wide::UnknownKeys(n) => {
                    let keys: Map<String, Value> = (0..*n)
                        .map(|i| (format!("attribute_{i}"), json!(i)))
                        .collect();
                    (Value::Object(keys), Some(String::new()), Value::Null)
                }
                Wide::AllOperators => {
                    let filter = json!({ "year": {
                        "$eq": 2001, "$ne": 2002, "$gt": 1990, "$gte": 2001,
                        "$lt": 2030, "$lte": 2001, "$in": [2001, 2003], "$nin": [2004],
                    } });
                    (filter.clone(), None, filter)
                }
            };
            let body =
                json!({ "vector": vector, "k": k, "filter": filter, "include_attributes": true });
            let expect = match expect_field {
                None => Expect::Answer(QueryCheck {
                    k,
                    filter: model_filter,
                    include_attributes: true,
                    exact_count: false,
                }),
                // The first unknown key in the order the filter object iterates them.
                Some(field) if field.is_empty() => {
                    Expect::invalid(FieldIs::StartsWith("filter.attribute_".into()))
                }
                Some(field) => Expect::invalid(exactly(field)),
            };
            send(&JsonCase::query(body, expect))
        },
    );
}

#[test]
fn bodies_that_are_not_json_objects_are_refused() {
    #[derive(Debug, Clone)]
    enum Bytes {
        Random(Vec<u8>),
        Whitespace(Vec<u8>),
        /// A valid body with an invalid UTF-8 sequence inserted at a position.
        InvalidUtf8(Vec<u8>, Index),
        /// A strict prefix of a valid body.
        Truncated(Index),
    }
    let invalid_sequence = pick(&[
        vec![0xffu8],
        vec![0xfe],
        vec![0x80],
        vec![0xc0, 0xaf],
        vec![0xed, 0xa0, 0x80],
        vec![0xe2, 0x82],
        vec![0xf8, 0x88, 0x80, 0x80, 0x80],
        vec![0xf4, 0x90, 0x80, 0x80],
        vec![0xc3],
    ]);
    let bytes = prop_oneof![
        4 => prop::collection::vec(any::<u8>(), 0..2048).prop_map(Bytes::Random),
        1 => prop::collection::vec(pick(b" \t\n\r"), 0..64).prop_map(Bytes::Whitespace),
        3 => (invalid_sequence, any::<Index>()).prop_map(|(seq, at)| Bytes::InvalidUtf8(seq, at)),
        2 => any::<Index>().prop_map(Bytes::Truncated),
    ];
    let strategy = (valid_query(), bytes, any::<bool>());
    run_strategy(
        "random, empty, invalid UTF-8 and truncated bodies",
        2000,
        strategy,
        |((body, _), bytes, batch)| {
            let path = if batch { BATCH_PATH } else { QUERY_PATH };
            let body = if batch {
                json!({ "queries": [body] })
            } else {
                Value::Object(body)
            };
            let valid = serde_json::to_vec(&body).expect("encode");
            let valid_direct = serde_json::to_vec(&with_index(&body)).expect("encode");
            let (http_bytes, direct_bytes, expect, direct_expect) = match bytes {
                Bytes::Random(random) => {
                    // Random text that opens an object or array fails somewhere inside it.
                    let first = random.iter().find(|b| !b.is_ascii_whitespace());
                    let object_like = matches!(first, Some(b'{') | Some(b'['));
                    let expect = if object_like {
                        Expect::invalid(FieldIs::Unchecked)
                    } else {
                        Expect::invalid(exactly("body"))
                    };
                    (random.clone(), random, expect.clone(), expect)
                }
                Bytes::Whitespace(blank) => (
                    blank.clone(),
                    blank,
                    Expect::invalid(exactly("body")),
                    Expect::invalid(exactly("body")),
                ),
                Bytes::InvalidUtf8(sequence, at) => {
                    let insert = |mut bytes: Vec<u8>| {
                        let position = at.index(bytes.len() + 1);
                        bytes.splice(position..position, sequence.iter().copied());
                        bytes
                    };
                    (
                        insert(valid),
                        insert(valid_direct),
                        Expect::invalid(exactly("body")),
                        Expect::invalid(exactly("body")),
                    )
                }
                Bytes::Truncated(at) => {
                    // The field depends on where the text stops.
                    let cut_at = |bytes: &[u8]| bytes[..at.index(bytes.len())].to_vec();
                    (
                        cut_at(&valid),
                        cut_at(&valid_direct),
                        Expect::invalid(FieldIs::Unchecked),
                        Expect::invalid(FieldIs::Unchecked),
                    )
                }
            };
            let response = call_http("POST", path, &http_bytes);
            check(
                &format!(
                    "POST {path} {:?}",
                    cut(&String::from_utf8_lossy(&http_bytes))
                ),
                &response,
                &expect,
            )?;
            let response = call_direct(&direct_bytes);
            check(
                &format!("direct {:?}", cut(&String::from_utf8_lossy(&direct_bytes))),
                &response,
                &direct_expect,
            )
        },
    );
}

#[test]
fn bodies_over_the_size_limit_are_refused_before_parsing() {
    // 0 extra bytes: a valid body padded to exactly the limit, which must be answered.
    let extra = prop_oneof![1 => Just(0usize), 6 => 1usize..=4096, 1 => Just(MAX_BODY_BYTES)];
    let strategy = (valid_query(), extra, any::<bool>());
    run_strategy(
        "bodies around the 6 MB limit",
        32,
        strategy,
        |((body, query), extra, garbage)| {
            let expect = if extra == 0 {
                Expect::Answer(query)
            } else {
                Expect::Error(413, exactly("body"))
            };
            for (direct, body) in [
                (false, Value::Object(body.clone())),
                (true, with_index(&Value::Object(body.clone()))),
            ] {
                let mut bytes = if garbage && extra > 0 {
                    vec![0xff; 3]
                } else {
                    Vec::new()
                };
                let text = serde_json::to_vec(&body).expect("encode");
                bytes.resize(MAX_BODY_BYTES + extra - text.len(), b' ');
                bytes.extend_from_slice(&text);
                let response = if direct {
                    call_direct(&bytes)
                } else {
                    call_http("POST", QUERY_PATH, &bytes)
                };
                check(
                    &format!("{} bytes, direct: {direct}", bytes.len()),
                    &response,
                    &expect,
                )?;
            }
            Ok(())
        },
    );
}

#[test]
fn non_finite_and_out_of_range_numbers_are_refused() {
    #[derive(Debug, Clone)]
    enum Token {
        Vector(usize, &'static str),
        Option(&'static str, &'static str),
        K(&'static str),
        Filter(&'static str, &'static str, Option<usize>),
        /// f64 numbers a filter may hold: accepted.
        FilterFinite(&'static str, &'static str),
        /// Finite f32 components whose squared distances overflow.
        HugeComponents(f32),
    }
    let bad_token = prop_oneof![pick(&BAD_NUMBER_TOKENS), pick(&F32_OVERFLOW_TOKENS)];
    let token = prop_oneof![
        4 => (0usize..DIM, bad_token.clone()).prop_map(|(i, t)| Token::Vector(i, t)),
        2 => (pick(&["centroid_factor", "hamming_keep"]), bad_token.clone())
            .prop_map(|(o, t)| Token::Option(o, t)),
        1 => pick(&BAD_NUMBER_TOKENS).prop_map(Token::K),
        2 => (
            pick(&["year", "price"]),
            pick(&BAD_NUMBER_TOKENS[..5]),
            proptest::option::of(0usize..4),
        )
            .prop_map(|(a, t, p)| Token::Filter(a, t, p)),
        1 => (
            pick(&["year", "price"]),
            pick(&["1e300", "-1e308", "1.7976931348623157e308", "1e39", "5e-324", "-0"]),
        )
            .prop_map(|(a, t)| Token::FilterFinite(a, t)),
        1 => prop_oneof![1e19f32..1e20, 1e20f32..f32::MAX].prop_map(Token::HugeComponents),
    ];
    let strategy = (valid_query(), token, batch_mates());
    run_strategy(
        "non-finite and overflowing numbers",
        1000,
        strategy,
        |((mut body, mut query), token, batch_opt)| {
            let expect = match token {
                Token::Vector(position, token) => {
                    let mut vector = vec![json!(0.5); DIM];
                    vector[position] = raw(token);
                    body.insert("vector".into(), Value::Array(vector));
                    // Refused where read ("vector[i]"); a malformed token may be reported at the
                    // array when the parser stops between elements.
                    Expect::invalid(FieldIs::OneOf(vec![
                        format!("vector[{position}]"),
                        "vector".into(),
                    ]))
                }
                Token::Option(option, token) => {
                    body.insert("options".into(), json!({ option: raw(token) }));
                    Expect::invalid(exactly(format!("options.{option}")))
                }
                Token::K(token) => {
                    body.insert("k".into(), raw(token));
                    Expect::invalid(exactly("k"))
                }
                Token::Filter(attribute, token, position_opt) => match position_opt {
                    None => {
                        body.insert("filter".into(), json!({ attribute: { "$lt": raw(token) } }));
                        Expect::invalid(exactly(format!("filter.{attribute}.$lt")))
                    }
                    Some(position) => {
                        let mut members = vec![json!(2001); position];
                        members.push(raw(token));
                        body.insert("filter".into(), json!({ attribute: { "$in": members } }));
                        Expect::invalid(exactly(format!("filter.{attribute}.$in[{position}]")))
                    }
                },
                Token::FilterFinite(attribute, token) => {
                    body.insert("filter".into(), json!({ attribute: { "$lt": raw(token) } }));
                    query.filter =
                        json!({ attribute: { "$lt": token.parse::<f64>().expect("a number") } });
                    Expect::Answer(query)
                }
                Token::HugeComponents(magnitude) => {
                    body.insert("vector".into(), json!(vec![magnitude; DIM]));
                    Expect::invalid(FieldIs::StartsWith("vector[".into()))
                }
            };
            // Answers are checked on single queries.
            let batch_opt = batch_opt.filter(|_| !matches!(expect, Expect::Answer(_)));
            send(&place(Value::Object(body), expect, batch_opt))
        },
    );
}

#[test]
fn index_names_cannot_escape_or_crash_the_router() {
    #[derive(Debug, Clone)]
    enum Entry {
        Query,
        Batch,
        Describe,
        Direct,
        /// A direct payload whose `index` is not a string, or is missing.
        DirectIndexValue(Option<Value>),
    }
    let entry = prop_oneof![
        3 => Just(Entry::Query),
        1 => Just(Entry::Batch),
        2 => Just(Entry::Describe),
        3 => Just(Entry::Direct),
        1 => proptest::option::of(one_of(&[
            Kind::Null,
            Kind::Bool,
            Kind::Int,
            Kind::Float,
            Kind::Array,
            Kind::Object,
        ]))
            .prop_map(Entry::DirectIndexValue),
    ];
    let strategy = (
        valid_query(),
        prop_oneof![1 => Just(INDEX.to_string()), 9 => index_name()],
        entry,
    );
    run_strategy(
        "index names",
        2000,
        strategy,
        |((body, query), name, entry)| {
            let valid = is_valid_index_name(&name);
            let has_slash = name.contains('/');
            // What a query on this name deserves, wherever the name arrives.
            let expect = if name == INDEX {
                Expect::Answer(query.clone())
            } else if valid {
                Expect::Error(404, FieldIs::Unchecked)
            } else if has_slash {
                // Over HTTP a slash makes another path (no route); see
                // `regression_direct_index_names_with_a_slash_get_no_route` for direct invocations.
                Expect::ClientError
            } else {
                Expect::invalid(exactly("index"))
            };
            let body = Value::Object(body);
            match entry {
                Entry::Query => {
                    let path = format!("/v1/indexes/{name}/query");
                    let expect = if has_slash {
                        Expect::Error(404, FieldIs::Unchecked)
                    } else {
                        expect
                    };
                    check(
                        &format!("POST {path:?}"),
                        &call_http("POST", &path, body.to_string().as_bytes()),
                        &expect,
                    )
                }
                Entry::Batch => {
                    let path = format!("/v1/indexes/{name}/query-batch");
                    let expect = match expect {
                        Expect::Answer(query) => Expect::BatchAnswer(vec![query]),
                        _ if has_slash => Expect::Error(404, FieldIs::Unchecked),
                        other => other,
                    };
                    let batch = json!({ "queries": [body] });
                    check(
                        &format!("POST {path:?}"),
                        &call_http("POST", &path, batch.to_string().as_bytes()),
                        &expect,
                    )
                }
                Entry::Describe => {
                    let path = format!("/v1/indexes/{name}");
                    // "/v1/indexes/" is the list route, and a slash makes another path
                    // ("films/" is the index itself, "x/query" the query route refusing GET).
                    let expect = match route_of(&path) {
                        Some(Route::List) => Expect::Ok,
                        Some(Route::Describe(inner)) if inner == INDEX => Expect::Ok,
                        _ if has_slash => Expect::ClientError,
                        _ => match expect {
                            Expect::Answer(_) => Expect::Ok,
                            other => other,
                        },
                    };
                    let response = call_http("GET", &path, &[]);
                    check(&format!("GET {path:?}"), &response, &expect)?;
                    if name == INDEX {
                        prop_assert_eq!(&response.body["dim"], &json!(DIM));
                        prop_assert_eq!(&response.body["num_vectors"], &json!(NUM_VECTORS));
                    }
                    Ok(())
                }
                Entry::Direct => {
                    let mut payload = body;
                    payload["index"] = json!(name);
                    check(
                        &format!("direct {:?}", cut(&payload.to_string())),
                        &call_direct(payload.to_string().as_bytes()),
                        &expect,
                    )
                }
                Entry::DirectIndexValue(value_opt) => {
                    let mut payload = body;
                    if let Some(value) = value_opt {
                        payload["index"] = value;
                    }
                    check(
                        &format!("direct {:?}", cut(&payload.to_string())),
                        &call_direct(payload.to_string().as_bytes()),
                        &Expect::invalid(exactly("index")),
                    )
                }
            }
        },
    );
}

#[test]
fn random_methods_and_paths_get_405_or_404() {
    let strategy = (
        method(),
        path(),
        valid_query(),
        prop::collection::vec(any::<u8>(), 0..64),
    );
    run_strategy(
        "methods and paths",
        2000,
        strategy,
        |(method, path, (query_body, query), junk)| {
            let route = route_of(&path);
            let (allowed, body, expect_ok) = match &route {
                None => ("", junk, Expect::Ok),
                Some(Route::Health) | Some(Route::List) => ("GET", junk, Expect::Ok),
                Some(Route::Describe(name)) => (
                    "GET",
                    junk,
                    if name == INDEX {
                        Expect::Ok
                    } else {
                        Expect::ClientError
                    },
                ),
                Some(Route::Query(name)) => (
                    "POST",
                    serde_json::to_vec(&query_body).expect("encode"),
                    if name == INDEX {
                        Expect::Answer(query)
                    } else {
                        Expect::ClientError
                    },
                ),
                Some(Route::Batch(name)) => (
                    "POST",
                    serde_json::to_vec(&json!({ "queries": [query_body] })).expect("encode"),
                    if name == INDEX {
                        Expect::BatchAnswer(vec![query])
                    } else {
                        Expect::ClientError
                    },
                ),
            };
            let expect = if route.is_none() {
                Expect::Error(404, FieldIs::Unchecked)
            } else if method.to_ascii_uppercase() == allowed
                || (allowed == "GET" && method.eq_ignore_ascii_case("HEAD"))
            {
                expect_ok
            } else {
                Expect::Error(405, FieldIs::Unchecked)
            };
            let response = call_http(&method, &path, &body);
            check(&format!("{method:?} {path:?}"), &response, &expect)?;
            if matches!(route, Some(Route::List)) && response.status == 200 {
                prop_assert_eq!(&response.body["indexes"], &json!([INDEX]));
            }
            if matches!(route, Some(Route::Health)) && response.status == 200 {
                prop_assert_eq!(&response.body["status"], &json!("ok"));
            }
            if response.status == 404 || response.status == 405 {
                let code = if response.status == 404 {
                    "not_found"
                } else {
                    "method_not_allowed"
                };
                prop_assert_eq!(&response.body["error"]["code"], &json!(code));
            }
            Ok(())
        },
    );
}

#[test]
fn batch_envelopes_refuse_wrong_types_and_sizes() {
    #[derive(Debug, Clone)]
    enum BatchEdit {
        Queries(Value),
        EmptyQueries,
        TooManyQueries,
        MissingQueries,
        RequireComplete(Value),
        Branching(Value),
        Unknown(String),
    }
    let edit = prop_oneof![
        30 => one_of(&[Kind::Null, Kind::Bool, Kind::Int, Kind::Str, Kind::Object])
            .prop_map(BatchEdit::Queries),
        10 => Just(BatchEdit::EmptyQueries),
        // Rare: each builds a body of 10,001 queries.
        1 => Just(BatchEdit::TooManyQueries),
        10 => Just(BatchEdit::MissingQueries),
        10 => one_of(NOT_BOOL).prop_map(BatchEdit::RequireComplete),
        20 => prop_oneof![
            one_of(NOT_COUNT),
            prop_oneof![Just(0u64), Just(1), 65u64..=u64::MAX].prop_map(Value::from),
        ]
            .prop_map(BatchEdit::Branching),
        20 => "[a-zA-Z_ é.]{1,12}"
            .prop_filter("unknown", |key| {
                !["queries", "require_complete", "branching", "index"].contains(&key.as_str())
            })
            .prop_map(BatchEdit::Unknown),
    ];
    let strategy = (
        prop::collection::vec(
            valid_query().prop_map(|(body, _)| Value::Object(body)),
            1..4,
        ),
        edit,
    );
    run_strategy("batch envelopes", 1000, strategy, |(queries, edit)| {
        let mut body = json!({ "queries": queries });
        let field = match edit {
            BatchEdit::Queries(value) => {
                body["queries"] = value;
                "queries".to_string()
            }
            BatchEdit::EmptyQueries => {
                body["queries"] = json!([]);
                "queries".to_string()
            }
            BatchEdit::TooManyQueries => {
                let query = json!({ "vector": vec![0.5; DIM], "k": 1 });
                body["queries"] = Value::Array(vec![query; MAX_BATCH_QUERIES + 1]);
                "queries".to_string()
            }
            BatchEdit::MissingQueries => {
                body = json!({ "require_complete": false });
                "queries".to_string()
            }
            BatchEdit::RequireComplete(value) => {
                body["require_complete"] = value;
                "require_complete".to_string()
            }
            BatchEdit::Branching(value) => {
                body["branching"] = value;
                "branching".to_string()
            }
            BatchEdit::Unknown(key) => {
                body[key.as_str()] = json!(1);
                unknown_key_field("", &key)
            }
        };
        let has_queries = body.get("queries").is_some();
        let mut case = JsonCase::batch(body, Expect::invalid(exactly(field)));
        if !has_queries {
            // Without "queries" a direct invocation is a single query, missing its vector.
            case.direct_expect_opt = Some(Expect::invalid(exactly("vector")));
        }
        send(&case)
    });
}

// ---------------------------------------------------------------------------------------------
// Known defects: each test states what a client should get. Run with `--ignored`.
// ---------------------------------------------------------------------------------------------

fn query_vector() -> Vec<f32> {
    fixture().input.vectors[..DIM].to_vec()
}

#[test]
fn regression_huge_finite_components_lose_every_partition() {
    let huge = vec![1e30f32; DIM];
    let response = call_http(
        "POST",
        QUERY_PATH,
        json!({ "vector": huge, "k": 5 }).to_string().as_bytes(),
    );
    // Either refuse the vector or answer it; a partial answer with no hits is neither.
    assert!(
        response.status == 400
            && response.body["error"]["field"]
                .as_str()
                .is_some_and(|field| field.starts_with("vector"))
            || response.status == 200 && response.body["partial"] == json!(false),
        "{} {}",
        response.status,
        response.body
    );
    // Asking for a complete answer turns the loss into a 503 that tells the client to retry.
    let strict = json!({ "vector": huge, "k": 5, "require_complete": true });
    let response = call_http("POST", QUERY_PATH, strict.to_string().as_bytes());
    assert_ne!(response.status, 503, "{}", response.body);
    // One such query must not take the other queries of its batch down with it.
    let batch =
        json!({ "queries": [{ "vector": query_vector(), "k": 5 }, { "vector": huge, "k": 5 }] });
    let response = call_http("POST", BATCH_PATH, batch.to_string().as_bytes());
    if response.status == 200 {
        assert_eq!(
            response.body["results"][0]["partial"],
            json!(false),
            "{}",
            response.body
        );
        assert_eq!(
            response.body["results"][0]["hits"].as_array().map(Vec::len),
            Some(5)
        );
    }
}

#[test]
fn regression_filters_nested_near_the_json_limit_fail_on_the_workers() {
    for num_nots in [123usize, 124] {
        // 2 levels of leaf + num_nots: 125 and 126 levels, which the coordinator accepts. The
        // leaf is chosen so that the whole filter matches every row (a filter that matches
        // nothing is answered without invoking workers).
        let leaf_op = if num_nots % 2 == 0 { "$gte" } else { "$lt" };
        let mut filter = json!({ "year": { leaf_op: 2000 } });
        for _ in 0..num_nots {
            filter = json!({ "$not": filter });
        }
        for require_complete in [false, true] {
            let body = json!({ "vector": query_vector(), "k": 5, "filter": filter,
                               "require_complete": require_complete });
            let response = call_http("POST", QUERY_PATH, body.to_string().as_bytes());
            let hits = response.body["hits"].as_array().map(Vec::len);
            let complete = response.status == 200 && response.body["partial"] == json!(false);
            assert!(
                complete || response.status == 400,
                "depth {}, require_complete {require_complete}: {} partial = {}, hits = {hits:?}, \
                 missing = {}, error = {}",
                num_nots + 2,
                response.status,
                response.body["partial"],
                response.body["missing_partitions"],
                response.body["error"]
            );
        }
    }
}

#[test]
fn regression_trailing_bytes_after_the_body_are_ignored() {
    let body = format!(
        "{} {{\"k\": 0}} garbage",
        json!({ "vector": query_vector(), "k": 3 })
    );
    let response = call_http("POST", QUERY_PATH, body.as_bytes());
    assert_eq!(response.status, 400, "{}", response.body);
    assert_eq!(response.body["error"]["field"], json!("body"));
}

#[test]
fn regression_direct_index_names_with_a_slash_get_no_route() {
    for name in ["a/b", "../films", "films/", "/films"] {
        let payload = json!({ "index": name, "vector": query_vector() });
        let response = call_direct(payload.to_string().as_bytes());
        assert_eq!(
            (response.status, &response.body["error"]["field"]),
            (400, &json!("index")),
            "{name}: {}",
            response.body
        );
    }
}

#[test]
fn regression_branching_inside_a_batch_is_neither_used_nor_checked() {
    let batch = json!({ "queries": [
        { "vector": query_vector() },
        { "vector": query_vector(), "branching": 0 },
    ] });
    let response = call_http("POST", BATCH_PATH, batch.to_string().as_bytes());
    assert_eq!(response.status, 400, "{}", response.body);
    assert_eq!(
        response.body["error"]["field"],
        json!("queries[1].branching")
    );
}

#[test]
fn regression_unknown_keys_that_look_like_paths_are_not_named() {
    for key in ["", ".", "?"] {
        let body = json!({ "vector": query_vector(), key: 1 });
        let response = call_http("POST", QUERY_PATH, body.to_string().as_bytes());
        assert_eq!(response.status, 400);
        let field = response.body["error"]["field"].as_str().unwrap_or_default();
        // Another key is named by itself; these are named empty or as the whole body.
        assert!(
            !field.is_empty() && field != "body",
            "{key:?}: {}",
            response.body
        );
    }
}

#[test]
fn regression_duplicate_keys_are_refused_over_http_but_not_direct() {
    let body = format!(
        "{{\"vector\": {}, \"k\": 3, \"k\": 5}}",
        json!(query_vector())
    );
    let over_http = call_http("POST", QUERY_PATH, body.as_bytes());
    let direct = call_direct(body.replacen('{', "{\"index\": \"films\", ", 1).as_bytes());
    assert_eq!(
        over_http.status, direct.status,
        "http {} / direct {}",
        over_http.body, direct.body
    );
}

#[test]
fn regression_a_json_array_is_accepted_in_place_of_an_object() {
    let vector = query_vector();
    let cases = [
        (QUERY_PATH, json!([vector, 3]), "body"),
        (
            QUERY_PATH,
            json!({ "vector": vector, "options": [true, 2.0] }),
            "options",
        ),
        (BATCH_PATH, json!([[{ "vector": vector }]]), "body"),
    ];
    for (path, body, field) in cases {
        let response = call_http("POST", path, body.to_string().as_bytes());
        assert_eq!(
            (response.status, &response.body["error"]["field"]),
            (400, &json!(field)),
            "{path} {}: {}",
            cut(&body.to_string()),
            cut(&response.body.to_string())
        );
    }
}
