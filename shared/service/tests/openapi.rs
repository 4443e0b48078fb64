//! The HTTP API description (`openapi.yaml` at the repository root) against the HTTP routes.
//!
//! The document must be sound: every `$ref` resolves, every route the router's module
//! documentation lists is described (and nothing else), every operation has responses, every
//! path parameter is declared. Then every named response example is replayed through
//! `handle_http` against an in-process service holding the index `films` (2,000 synthetic
//! 16-d vectors, 4 partitions, L2): the answer's status is the one the example is listed
//! under, its body validates against the documented schema (undocumented properties are
//! errors), it has the example's shape (same keys, same array lengths, same JSON types), and
//! an error has the example's `code` and `field`. Every documented example value also
//! validates against its schema.
//!
//! Pairing: a response example `NAME` is answered to the request built from the examples
//! named `NAME` of the request body and of each path parameter, or their example `ok` when
//! they have none of that name. An `x-request-method` on the response example replaces the
//! operation's method (for 405s, sent without a body); an `x-not-replayed: <why>` marks an
//! example that cannot be produced against a healthy service (it is only validated). Every
//! request example name must have a response example.
//!
//! Set `OPENAPI_PRINT_ACTUAL=1` to print the actual answers, to refresh the examples.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde_json::Value;
use squash_core::index::build::NoProgress;
use squash_core::metric::Metric;
use squash_service::partition_cache::PartitionCache;
use squash_service::write_index;
use squash_service::{
    handle_http, CoordinatorService, InProcessInvoker, ServiceConfig, WorkerInvoker,
};
use squash_storage::{BlobStore, MemoryStore, PrefixedStore};

const DOCUMENT: &str = include_str!("../../../openapi.yaml");
const ROUTER_SOURCE: &str = include_str!("../src/http_routes.rs");
const JSON: &str = "application/json";
const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

fn document() -> Value {
    serde_norway::from_str(DOCUMENT).expect("openapi.yaml is YAML")
}

/// Returns the target of a local reference (`#/a/b`).
fn lookup<'a>(doc: &'a Value, reference: &str) -> Option<&'a Value> {
    reference
        .strip_prefix('#')
        .and_then(|pointer| doc.pointer(pointer))
}

/// Follows `$ref` until an inline object.
fn resolve<'a>(doc: &'a Value, value: &'a Value) -> &'a Value {
    let mut current = value;
    for _ in 0..16 {
        match current.get("$ref").and_then(Value::as_str) {
            Some(reference) => {
                current = lookup(doc, reference)
                    .unwrap_or_else(|| panic!("unresolved reference {reference}"))
            }
            None => return current,
        }
    }
    panic!("reference chain too long at {value}")
}

fn collect_refs(value: &Value, at: &str, refs: &mut Vec<(String, String)>) {
    match value {
        Value::Object(object) => {
            for (key, child) in object {
                if key == "$ref" {
                    refs.push((at.to_string(), child.as_str().unwrap_or("").to_string()));
                } else {
                    collect_refs(child, &format!("{at}/{key}"), refs);
                }
            }
        }
        Value::Array(items) => {
            for (position, child) in items.iter().enumerate() {
                collect_refs(child, &format!("{at}/{position}"), refs);
            }
        }
        _ => {}
    }
}

/// One operation of the document.
struct Operation<'a> {
    method: String,
    path: &'a str,
    path_item: &'a Value,
    operation: &'a Value,
}

impl Operation<'_> {
    fn label(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

fn operations(doc: &Value) -> Vec<Operation<'_>> {
    let paths = doc["paths"].as_object().expect("paths is an object");
    let mut found = Vec::new();
    for (path, path_item) in paths {
        for method in METHODS {
            if let Some(operation) = path_item.get(method) {
                found.push(Operation {
                    method: method.to_ascii_uppercase(),
                    path,
                    path_item,
                    operation,
                });
            }
        }
    }
    found
}

/// Returns the operation's parameters (path-level then operation-level), resolved.
fn parameters<'a>(doc: &'a Value, op: &Operation<'a>) -> Vec<&'a Value> {
    [
        op.path_item.get("parameters"),
        op.operation.get("parameters"),
    ]
    .into_iter()
    .flatten()
    .filter_map(Value::as_array)
    .flatten()
    .map(|parameter| resolve(doc, parameter))
    .collect()
}

/// Returns the names of the `{name}` segments of a path template.
fn template_names(path: &str) -> Vec<&str> {
    path.split('/')
        .filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
        .collect()
}

/// Returns the routes the router's module documentation lists: (method, path template).
fn router_routes() -> BTreeSet<(String, String)> {
    ROUTER_SOURCE
        .lines()
        .filter_map(|line| line.strip_prefix("//! - `"))
        .filter_map(|rest| rest.split('`').next())
        .filter_map(|route| route.split_once(' '))
        .map(|(method, path)| (method.to_string(), path.to_string()))
        .collect()
}

#[test]
fn the_document_is_sound_and_describes_every_route() {
    let doc = document();
    assert!(
        doc["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.0.")),
        "openapi 3.0.x"
    );
    assert!(doc["info"]["title"].is_string() && doc["info"]["version"].is_string());
    assert!(
        doc["servers"].as_array().is_some_and(|s| s.len() >= 2),
        "servers"
    );

    let mut refs = Vec::new();
    collect_refs(&doc, "#", &mut refs);
    assert!(refs.len() > 20, "only {} references", refs.len());
    let unresolved: Vec<_> = refs
        .iter()
        .filter(|(_, reference)| lookup(&doc, reference).is_none())
        .collect();
    assert!(unresolved.is_empty(), "unresolved $ref: {unresolved:?}");

    // Every declared security scheme requirement names a declared scheme.
    let schemes = doc["components"]["securitySchemes"]
        .as_object()
        .expect("security schemes");
    for requirement in doc["security"].as_array().expect("global security") {
        for name in requirement.as_object().expect("requirement").keys() {
            assert!(schemes.contains_key(name), "security scheme {name}");
        }
    }

    let ops = operations(&doc);
    let documented: BTreeSet<(String, String)> = ops
        .iter()
        .map(|op| (op.method.clone(), op.path.to_string()))
        .collect();
    let routes = router_routes();
    assert_eq!(routes.len(), 8, "routes listed in http.rs: {routes:?}");
    assert_eq!(documented, routes, "documented operations vs the router");

    let mut operation_ids = BTreeSet::new();
    for op in &ops {
        let label = op.label();
        let id = op.operation["operationId"].as_str().expect("operationId");
        assert!(
            operation_ids.insert(id),
            "{label}: duplicate operationId {id}"
        );
        let responses = op.operation["responses"]
            .as_object()
            .unwrap_or_else(|| panic!("{label}: no responses"));
        assert!(!responses.is_empty(), "{label}: no responses");
        for required in ["200", "405", "500"] {
            assert!(responses.contains_key(required), "{label}: no {required}");
        }
        if op.method == "POST" {
            for required in ["400", "404", "413", "503"] {
                assert!(responses.contains_key(required), "{label}: no {required}");
            }
            let body = resolve(&doc, &op.operation["requestBody"]);
            assert!(
                body["content"][JSON]["schema"].is_object(),
                "{label}: request schema"
            );
        }
        for (status, response) in responses {
            let response = resolve(&doc, response);
            assert!(
                status.parse::<u16>().is_ok(),
                "{label}: status {status} is not a code"
            );
            assert!(
                response["description"].is_string(),
                "{label} {status}: description"
            );
            assert!(
                response["content"][JSON]["schema"].is_object(),
                "{label} {status}: JSON schema"
            );
        }
        let parameters = parameters(&doc, op);
        for name in template_names(op.path) {
            let declared = parameters.iter().any(|p| {
                p["name"] == name && p["in"] == "path" && p["required"] == Value::Bool(true)
            });
            assert!(declared, "{label}: path parameter {name} is not declared");
        }
    }

    // The index name pattern is the one the service enforces.
    let index = lookup(&doc, "#/components/parameters/Index").expect("index parameter");
    assert_eq!(
        index["schema"]["pattern"],
        "^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
    );
    for (name, example) in index["examples"].as_object().expect("index examples") {
        let value = example["value"].as_str().expect("index example value");
        let valid = squash_core::index::validate_index_name(value).is_ok();
        assert_eq!(
            valid,
            name != "invalid_index_name",
            "index example {name}: {value}"
        );
    }
}

// --- A subset of the OpenAPI 3.0 schema language, enough for this document. ---

/// Keywords that only annotate.
const ANNOTATIONS: [&str; 9] = [
    "description",
    "title",
    "example",
    "default",
    "format",
    "pattern",
    "readOnly",
    "writeOnly",
    "deprecated",
];

/// Validates `value` against `schema`, appending one message per violation. Object schemas
/// without `additionalProperties` are closed: a property they do not list is an error, so the
/// document cannot fall behind the answers.
fn validate(doc: &Value, schema: &Value, value: &Value, at: &str, errors: &mut Vec<String>) {
    let Some(keywords) = schema.as_object() else {
        errors.push(format!("{at}: schema is not an object: {schema}"));
        return;
    };
    if let Some(reference) = keywords.get("$ref").and_then(Value::as_str) {
        match lookup(doc, reference) {
            Some(target) => validate(doc, target, value, at, errors),
            None => errors.push(format!("{at}: unresolved {reference}")),
        }
        return;
    }
    if value.is_null() && keywords.get("nullable") == Some(&Value::Bool(true)) {
        return;
    }
    for (keyword, argument) in keywords {
        match keyword.as_str() {
            "type" => {
                let ok = match argument.as_str().unwrap_or("") {
                    "object" => value.is_object(),
                    "array" => value.is_array(),
                    "string" => value.is_string(),
                    "boolean" => value.is_boolean(),
                    "number" => value.is_number(),
                    "integer" => value.is_i64() || value.is_u64(),
                    other => {
                        errors.push(format!("{at}: unknown type {other}"));
                        true
                    }
                };
                if !ok {
                    errors.push(format!("{at}: expected {argument}, got {value}"));
                }
            }
            // A null that is not allowed fails `type` (or the `allOf` it wraps).
            "nullable" => {}
            "enum" => {
                if !argument.as_array().is_some_and(|a| a.contains(value)) {
                    errors.push(format!("{at}: {value} is not one of {argument}"));
                }
            }
            "required" => {
                if let Some(object) = value.as_object() {
                    for name in argument.as_array().into_iter().flatten() {
                        let name = name.as_str().unwrap_or("");
                        if !object.contains_key(name) {
                            errors.push(format!("{at}: missing required {name}"));
                        }
                    }
                }
            }
            "properties" => {
                if let Some(object) = value.as_object() {
                    for (name, property) in argument.as_object().into_iter().flatten() {
                        if let Some(child) = object.get(name) {
                            validate(doc, property, child, &format!("{at}.{name}"), errors);
                        }
                    }
                }
            }
            "additionalProperties" => {}
            "items" => {
                for (position, item) in value.as_array().into_iter().flatten().enumerate() {
                    validate(doc, argument, item, &format!("{at}[{position}]"), errors);
                }
            }
            "minItems" | "maxItems" | "minProperties" | "maxProperties" | "minLength"
            | "maxLength" => {
                let count = match value {
                    Value::Array(items) => Some(items.len()),
                    Value::Object(object) => Some(object.len()),
                    Value::String(text) => Some(text.chars().count()),
                    _ => None,
                };
                let bound = argument.as_u64().unwrap_or(0) as usize;
                if let Some(count) = count {
                    let ok = if keyword.starts_with("min") {
                        count >= bound
                    } else {
                        count <= bound
                    };
                    if !ok {
                        errors.push(format!("{at}: {count} breaks {keyword} {bound}"));
                    }
                }
            }
            "minimum" | "maximum" => {
                if let (Some(number), Some(bound)) = (value.as_f64(), argument.as_f64()) {
                    let exclusive_key = if keyword == "minimum" {
                        "exclusiveMinimum"
                    } else {
                        "exclusiveMaximum"
                    };
                    let exclusive = keywords.get(exclusive_key) == Some(&Value::Bool(true));
                    let ok = match (keyword == "minimum", exclusive) {
                        (true, false) => number >= bound,
                        (true, true) => number > bound,
                        (false, false) => number <= bound,
                        (false, true) => number < bound,
                    };
                    if !ok {
                        errors.push(format!(
                            "{at}: {number} breaks {keyword} {bound} (exclusive: {exclusive})"
                        ));
                    }
                }
            }
            "exclusiveMinimum" | "exclusiveMaximum" => {}
            "allOf" => {
                for sub in argument.as_array().into_iter().flatten() {
                    validate(doc, sub, value, at, errors);
                }
            }
            "oneOf" | "anyOf" => {
                let subs = argument.as_array().map(Vec::as_slice).unwrap_or_default();
                let matching = subs
                    .iter()
                    .filter(|sub| {
                        let mut sub_errors = Vec::new();
                        validate(doc, sub, value, at, &mut sub_errors);
                        sub_errors.is_empty()
                    })
                    .count();
                let ok = if keyword == "oneOf" {
                    matching == 1
                } else {
                    matching >= 1
                };
                if !ok {
                    errors.push(format!(
                        "{at}: {value} matches {matching} of the {keyword} schemas"
                    ));
                }
            }
            other if ANNOTATIONS.contains(&other) || other.starts_with("x-") => {}
            other => errors.push(format!("{at}: unsupported schema keyword {other}")),
        }
    }
    // Undocumented properties.
    if let Some(object) = value.as_object() {
        let documented = keywords.get("properties").and_then(Value::as_object);
        let is_object_schema =
            keywords.get("type") == Some(&Value::String("object".into())) || documented.is_some();
        if is_object_schema {
            for (name, child) in object {
                if documented.is_some_and(|d| d.contains_key(name)) {
                    continue;
                }
                match keywords.get("additionalProperties") {
                    None | Some(Value::Bool(false)) => {
                        errors.push(format!("{at}: undocumented property {name}"))
                    }
                    Some(Value::Bool(true)) => {}
                    Some(extra) => validate(doc, extra, child, &format!("{at}.{name}"), errors),
                }
            }
        }
    }
}

/// Checks that `actual` has the shape of `documented`: the same keys, the same array lengths,
/// the same JSON types (any two numbers match).
fn same_shape(documented: &Value, actual: &Value, at: &str, errors: &mut Vec<String>) {
    match (documented, actual) {
        (Value::Object(want), Value::Object(got)) => {
            let want_keys: BTreeSet<&String> = want.keys().collect();
            let got_keys: BTreeSet<&String> = got.keys().collect();
            if want_keys != got_keys {
                errors.push(format!(
                    "{at}: keys {want_keys:?} documented, {got_keys:?} answered"
                ));
            }
            for (key, child) in want {
                if let Some(other) = got.get(key) {
                    same_shape(child, other, &format!("{at}.{key}"), errors);
                }
            }
        }
        (Value::Array(want), Value::Array(got)) => {
            if want.len() != got.len() {
                errors.push(format!(
                    "{at}: {} items documented, {} answered",
                    want.len(),
                    got.len()
                ));
            }
            for (position, (a, b)) in want.iter().zip(got).enumerate() {
                same_shape(a, b, &format!("{at}[{position}]"), errors);
            }
        }
        (Value::Number(_), Value::Number(_))
        | (Value::String(_), Value::String(_))
        | (Value::Bool(_), Value::Bool(_))
        | (Value::Null, Value::Null) => {}
        (want, got) => errors.push(format!("{at}: {want} documented, {got} answered")),
    }
}

// --- Replaying the examples. ---

/// Returns the `{name: value}` of an examples map, each example resolved.
fn example_values<'a>(doc: &'a Value, examples: Option<&'a Value>) -> Vec<(&'a str, &'a Value)> {
    examples
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .map(|(name, example)| (name.as_str(), &resolve(doc, example)["value"]))
        .collect()
}

/// Picks the example named `name`, or the one named `ok`.
fn pick<'a>(examples: &[(&str, &'a Value)], name: &str) -> Option<&'a Value> {
    let find = |wanted: &str| {
        examples
            .iter()
            .find(|(candidate, _)| *candidate == wanted)
            .map(|(_, value)| *value)
    };
    find(name).or_else(|| find("ok"))
}

async fn films_service() -> CoordinatorService {
    let input = common::synthetic(2000, 16, 5);
    let root: Arc<dyn BlobStore> = Arc::new(MemoryStore::new());
    let store: Arc<dyn BlobStore> =
        Arc::new(PrefixedStore::try_new(Arc::clone(&root), "films").expect("prefix"));
    write_index(
        store,
        input,
        common::params(Metric::L2, 4, "1"),
        Arc::new(NoProgress),
    )
    .await
    .expect("build");
    let invoker: Arc<dyn WorkerInvoker> = Arc::new(InProcessInvoker::new(
        Arc::clone(&root),
        Arc::new(PartitionCache::new(1 << 30)),
    ));
    CoordinatorService::new(root, invoker, ServiceConfig::default())
}

/// Counts of what was checked.
#[derive(Debug, Default)]
struct Tally {
    replayed: usize,
    documentation_only: usize,
    request_bodies_validated: usize,
}

#[tokio::test]
async fn every_example_is_answered_as_documented() {
    let doc = document();
    let service = films_service().await;
    let print_actual = std::env::var_os("OPENAPI_PRINT_ACTUAL").is_some();
    let mut errors: Vec<String> = Vec::new();
    let mut tally = Tally::default();
    let mut names_by_operation: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();

    for op in operations(&doc) {
        let label = op.label();
        let request_body = op.operation.get("requestBody").map(|b| resolve(&doc, b));
        let request_schema = request_body.map(|b| &b["content"][JSON]["schema"]);
        let body_examples = example_values(
            &doc,
            request_body.and_then(|b| b["content"][JSON].get("examples")),
        );
        let path_examples: Vec<(String, Vec<(&str, &Value)>)> = parameters(&doc, &op)
            .into_iter()
            .filter(|p| p["in"] == "path")
            .map(|p| {
                (
                    p["name"].as_str().unwrap_or("").to_string(),
                    example_values(&doc, p.get("examples")),
                )
            })
            .collect();
        if request_body.is_some() && body_examples.is_empty() {
            errors.push(format!("{label}: the request body has no examples"));
        }

        let mut response_names = BTreeSet::new();
        let responses = op.operation["responses"].as_object().expect("responses");
        for (status, response) in responses {
            let response = resolve(&doc, response);
            let schema = &response["content"][JSON]["schema"];
            let examples = response["content"][JSON]
                .get("examples")
                .and_then(Value::as_object);
            for (name, example) in examples.into_iter().flatten() {
                let here = format!("{label} {status} example {name}");
                if !response_names.insert(name.clone()) {
                    errors.push(format!("{here}: the name is used twice"));
                }
                let example = resolve(&doc, example);
                if !example["summary"].is_string() {
                    errors.push(format!("{here}: no summary"));
                }
                let documented = &example["value"];
                validate(
                    &doc,
                    schema,
                    documented,
                    &format!("{here} (documented)"),
                    &mut errors,
                );

                if let Some(reason) = example.get("x-not-replayed") {
                    if reason.as_str().is_none_or(str::is_empty) {
                        errors.push(format!("{here}: x-not-replayed needs a reason"));
                    }
                    tally.documentation_only += 1;
                    continue;
                }

                // The request.
                let method_override = example.get("x-request-method").and_then(Value::as_str);
                let method = method_override.unwrap_or(&op.method);
                let mut path = op.path.to_string();
                for (parameter, values) in &path_examples {
                    match pick(values, name).and_then(Value::as_str) {
                        Some(value) => path = path.replace(&format!("{{{parameter}}}"), value),
                        None => errors.push(format!("{here}: no example for {parameter}")),
                    }
                }
                let body_value = if method_override.is_none() {
                    pick(&body_examples, name)
                } else {
                    None
                };
                let body = body_value.map(|v| v.to_string()).unwrap_or_default();

                let answer = handle_http(
                    &service,
                    method,
                    &path,
                    body.as_bytes(),
                    "example",
                    service.default_deadline(),
                )
                .await;
                tally.replayed += 1;
                if print_actual {
                    println!(
                        "=== {here}: {method} {path} {body}\n{} {}",
                        answer.status,
                        serde_json::to_string_pretty(&answer.body).unwrap_or_default()
                    );
                }
                let expected_status: u16 = status.parse().unwrap_or(0);
                if answer.status != expected_status {
                    errors.push(format!(
                        "{here}: {method} {path} answered {} {}",
                        answer.status, answer.body
                    ));
                    continue;
                }
                validate(
                    &doc,
                    schema,
                    &answer.body,
                    &format!("{here} (answered)"),
                    &mut errors,
                );
                same_shape(documented, &answer.body, &here, &mut errors);
                if expected_status >= 400 {
                    for key in ["code", "field"] {
                        if documented["error"].get(key) != answer.body["error"].get(key) {
                            errors.push(format!(
                                "{here}: error {key} {} documented, {} answered",
                                documented["error"][key], answer.body["error"][key]
                            ));
                        }
                    }
                }
                if (200..300).contains(&expected_status) {
                    if let (Some(schema), Some(value)) = (request_schema, body_value) {
                        validate(
                            &doc,
                            schema,
                            value,
                            &format!("{here} (request)"),
                            &mut errors,
                        );
                        tally.request_bodies_validated += 1;
                    }
                }
            }
        }

        // Every request example is answered by a response example of its name.
        let request_names = body_examples.iter().map(|(name, _)| *name).chain(
            path_examples
                .iter()
                .flat_map(|(_, values)| values.iter().map(|(name, _)| *name)),
        );
        for name in request_names {
            if !response_names.contains(name) {
                errors.push(format!(
                    "{label}: request example {name} has no response example"
                ));
            }
        }
        names_by_operation.insert(label, response_names);
    }

    // The examples every search route must show.
    for route in [
        "POST /v1/indexes/{index}/query",
        "POST /v1/indexes/{index}/query-batch",
    ] {
        let names = &names_by_operation[route];
        for required in ["ok", "wrong_dimension", "bad_filter", "unknown_index"] {
            assert!(names.contains(required), "{route}: no example {required}");
        }
    }
    for (route, names) in &names_by_operation {
        assert!(names.contains("ok"), "{route}: no example ok");
    }

    println!(
        "{} examples replayed through handle_http, {} documentation-only examples validated, \
         {} request bodies validated",
        tally.replayed, tally.documentation_only, tally.request_bodies_validated
    );
    assert!(
        errors.is_empty(),
        "{} problems:\n{}",
        errors.len(),
        errors.join("\n")
    );
    assert!(tally.replayed >= 30, "only {} replayed", tally.replayed);
}
