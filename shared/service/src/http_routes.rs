//! The HTTP API of the coordinator as a plain function: method, path and body in, status and
//! JSON body out. The Lambda adapter (API Gateway HTTP API payload v2, function URLs) and the
//! tests call the same function.
//!
//! Routes:
//! - `GET /health` (and `HEAD`, as for every `GET` route)
//! - `GET /v1/indexes`
//! - `GET /v1/indexes/{index}`
//! - `POST /v1/indexes/{index}/query` with a [`QueryRequest`]
//! - `POST /v1/indexes/{index}/query-batch` with a [`BatchRequest`]
//! - `POST /v1/indexes/{index}/upsert` with an [`UpsertRequest`]
//! - `POST /v1/indexes/{index}/delete` with a [`DeleteRequest`]
//! - `POST /v1/indexes/{index}/fetch` with a [`FetchRequest`]
//!
//! A direct invocation carries `"index"` and, for anything but a query or batch,
//! `"operation"` (`upsert`, `delete`, `fetch`) beside the body's fields.
//!
//! Errors are `{"error": {"code", "message", "field"?, "missing_partitions"?}}`: 400 for a bad
//! request (the field named), 404 for an unknown index or route, 405 (with the accepted methods
//! in [`HttpResponse::allow_opt`]), 413 for a body over
//! [`MAX_BODY_BYTES`], 503 (retry later) when workers could not answer in time or an index has
//! more unfolded writes than it takes (compact it), 409 when a write lost to a concurrent
//! build, 500 only for
//! faults of the service itself (corrupt index objects, store failures).

use std::time::Instant;

use serde::de::{DeserializeOwned, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::{json, Map, Value};

use crate::coordinator_service::CoordinatorService;
use squash_core::error::Error;
use squash_core::protocol::{BatchRequest, QueryRequest, RETRY_AFTER_S};
use squash_core::writes::{DeleteRequest, FetchRequest, UpsertRequest};

/// The largest request body accepted: the synchronous Lambda payload limit.
pub const MAX_BODY_BYTES: usize = 6 * 1024 * 1024;

/// A status code and a JSON body.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpResponse {
    /// HTTP status code.
    pub status: u16,
    /// JSON body.
    pub body: Value,
    /// The methods the route accepts, for the `Allow` header (set on a 405).
    pub allow_opt: Option<&'static str>,
}

impl HttpResponse {
    fn ok(body: Value) -> Self {
        HttpResponse {
            status: 200,
            body,
            allow_opt: None,
        }
    }

    fn error(status: u16, code: &str, message: impl Into<String>, field_opt: Option<&str>) -> Self {
        let mut error = json!({"code": code, "message": message.into()});
        if let Some(field) = field_opt {
            error["field"] = json!(field);
        }
        HttpResponse {
            status,
            body: json!({ "error": error }),
            allow_opt: None,
        }
    }

    /// Returns the response for a library error.
    pub fn from_error(error: &Error) -> Self {
        match error {
            Error::InvalidInput { field, reason } => HttpResponse::error(
                400,
                "invalid_request",
                format!("{field}: {reason}"),
                Some(field),
            ),
            Error::NotFound { what } => {
                HttpResponse::error(404, "not_found", format!("{what} does not exist"), None)
            }
            Error::Incomplete {
                message,
                missing_partitions,
            } => {
                let mut response = HttpResponse::error(
                    503,
                    "incomplete",
                    format!("workers did not answer for every partition ({message}); retry later"),
                    None,
                );
                response.body["error"]["missing_partitions"] = json!(missing_partitions);
                response.body["error"]["retry_after_s"] = json!(RETRY_AFTER_S);
                response
            }
            Error::Storage {
                message,
                retryable: true,
            } => HttpResponse::unavailable(
                format!("storage is unavailable ({message}); retry later"),
                RETRY_AFTER_S,
            ),
            Error::Throttled {
                message,
                retry_after_ms,
            } => HttpResponse::unavailable(
                format!("the service is throttled ({message}); retry later"),
                retry_after_ms
                    .map(|ms| ms.div_ceil(1000).max(1))
                    .unwrap_or(RETRY_AFTER_S),
            ),
            Error::Conflict { message } => {
                HttpResponse::error(409, "conflict", message.clone(), None)
            }
            Error::Timeout { message } => {
                HttpResponse::unavailable(format!("{message}; retry later"), RETRY_AFTER_S)
            }
            other => HttpResponse::error(500, "internal", other.to_string(), None),
        }
    }

    /// Returns a 503 `unavailable` telling the client to retry after `retry_after_s`.
    fn unavailable(message: String, retry_after_s: u64) -> Self {
        let mut response = HttpResponse::error(503, "unavailable", message, None);
        response.body["error"]["retry_after_s"] = json!(retry_after_s);
        response
    }
}

/// Where a body must hold JSON objects, beyond what the typed parse checks: serde's derived
/// structs also read a JSON array, by field position, which a client never means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyShape {
    /// A [`QueryRequest`].
    Query,
    /// A [`BatchRequest`].
    Batch,
    /// Any JSON object.
    Object,
}

/// Walks a body once without keeping it, and returns the first field that holds an array (or,
/// for the body itself, anything) where an object belongs. Nothing of the body is allocated but
/// object keys, so a 6 MB body of numbers costs no more than its bytes.
///
/// Each variant is one place of the body the walk looks at; the walk descends only into the
/// places that must be objects and skips everything else unread.
#[derive(Debug, Clone)]
enum ShapeProbe {
    /// The whole body, of this shape.
    Body(BodyShape),
    /// A batch's `queries`.
    Queries,
    /// `queries[i]` of a batch.
    Query(usize),
    /// An `options` object, at this field path.
    Options(String),
}

impl ShapeProbe {
    /// What a scalar at this place means: only the body itself must be an object here; a
    /// scalar elsewhere is left to the typed parse to name.
    fn scalar(self) -> Option<String> {
        match self {
            ShapeProbe::Body(_) => Some("body".to_string()),
            _ => None,
        }
    }
}

impl<'de> DeserializeSeed<'de> for ShapeProbe {
    type Value = Option<String>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ShapeProbe {
    type Value = Option<String>;

    fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
        formatter.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found = None;
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            let inner_opt = match (&self, key.as_ref()) {
                (ShapeProbe::Body(BodyShape::Query), "options") => {
                    Some(ShapeProbe::Options("options".to_string()))
                }
                (ShapeProbe::Body(BodyShape::Batch), "queries") => Some(ShapeProbe::Queries),
                (ShapeProbe::Query(position), "options") => {
                    Some(ShapeProbe::Options(format!("queries[{position}].options")))
                }
                _ => None,
            };
            let misplaced = match inner_opt {
                Some(inner) => map.next_value_seed(inner)?,
                None => {
                    map.next_value::<IgnoredAny>()?;
                    None
                }
            };
            found = found.or(misplaced);
        }
        Ok(found)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        if let ShapeProbe::Queries = self {
            let mut found = None;
            let mut position = 0usize;
            while let Some(misplaced) = seq.next_element_seed(ShapeProbe::Query(position))? {
                found = found.or(misplaced);
                position += 1;
            }
            return Ok(found);
        }
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(match self {
            ShapeProbe::Body(_) => Some("body".to_string()),
            ShapeProbe::Query(position) => Some(format!("queries[{position}]")),
            ShapeProbe::Options(path) => Some(path),
            ShapeProbe::Queries => None,
        })
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(self.scalar())
    }

    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(self.scalar())
    }

    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(self.scalar())
    }

    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(self.scalar())
    }

    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(self.scalar())
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(self.scalar())
    }
}

/// Parses a JSON body into `T`, naming the offending field on error.
fn parse_body<T: DeserializeOwned>(body: &[u8], shape: BodyShape) -> Result<T, HttpResponse> {
    if body.len() > MAX_BODY_BYTES {
        return Err(HttpResponse::error(
            413,
            "payload_too_large",
            format!(
                "the body has {} bytes, the limit is {MAX_BODY_BYTES}",
                body.len()
            ),
            Some("body"),
        ));
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(HttpResponse::error(
            400,
            "invalid_request",
            "body: a JSON object is required",
            Some("body"),
        ));
    }
    if std::str::from_utf8(body).is_err() {
        return Err(HttpResponse::error(
            400,
            "invalid_request",
            "body: is not valid UTF-8",
            Some("body"),
        ));
    }
    // Arrays in place of objects are only checked on a body that is valid JSON; the typed
    // parse below names every other error.
    let mut probe = serde_json::Deserializer::from_slice(body);
    if let Ok(Some(field)) = ShapeProbe::Body(shape).deserialize(&mut probe) {
        return Err(HttpResponse::error(
            400,
            "invalid_request",
            format!("{field}: a JSON object is required"),
            Some(&field),
        ));
    }
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let parsed: T = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        let field = field_of_parse_error(&path, &inner.to_string());
        HttpResponse::error(
            400,
            "invalid_request",
            format!("{field}: {inner}"),
            Some(&field),
        )
    })?;
    // One JSON document: anything after it is an error, not ignored.
    deserializer.end().map_err(|error| {
        HttpResponse::error(
            400,
            "invalid_request",
            format!("body: unexpected data after the JSON document ({error})"),
            Some("body"),
        )
    })?;
    Ok(parsed)
}

/// Returns the request field a body parse error is about: the path where parsing stopped,
/// extended by the name of a missing field; `body` for errors about the body as a whole.
/// An unknown key is named by itself, quoted as `["key"]` when it would not read as one name:
/// empty, `?`, or holding `.`, `[`, `]` or `"`.
fn field_of_parse_error(path: &str, message: &str) -> String {
    let missing_opt = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next());
    let unknown_opt = message.strip_prefix("unknown field `").map(|rest| {
        rest.rsplit_once("`, expected")
            .or_else(|| rest.rsplit_once("`, there are no fields"))
            .map_or(rest, |(key, _)| key)
    });
    if let Some(unknown) = unknown_opt {
        // The path ends with the unknown key itself, after its parent and a `.`.
        let parent = path.strip_suffix(unknown).unwrap_or(path);
        let parent = parent.strip_suffix('.').unwrap_or(parent);
        let parent = if parent == "?" { "" } else { parent };
        let plain =
            !unknown.is_empty() && unknown != "?" && !unknown.contains(['.', '[', ']', '"']);
        return match (parent, plain) {
            ("", true) => unknown.to_string(),
            (parent, true) => format!("{parent}.{unknown}"),
            (parent, false) => format!("{parent}[{}]", Value::String(unknown.to_string())),
        };
    }
    match (path, missing_opt) {
        ("." | "?", Some(missing)) => missing.to_string(),
        (path, Some(missing)) => format!("{path}.{missing}"),
        ("." | "?", None) => "body".to_string(),
        (path, None) => path.to_string(),
    }
}

/// Answers one HTTP request.
pub async fn handle_http(
    service: &CoordinatorService,
    method: &str,
    path: &str,
    body: &[u8],
    request_id: &str,
    deadline: Instant,
) -> HttpResponse {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let method = method.to_ascii_uppercase();
    // HEAD is answered as GET (the transport drops the body).
    let expect = |allowed: &str| -> Option<HttpResponse> {
        let accepted = method == allowed || (allowed == "GET" && method == "HEAD");
        (!accepted).then(|| {
            let allow = if allowed == "GET" {
                "GET, HEAD"
            } else {
                "POST"
            };
            let mut refused = HttpResponse::error(
                405,
                "method_not_allowed",
                format!("{method} is not allowed on {path}; use {allow}"),
                None,
            );
            refused.allow_opt = Some(allow);
            refused
        })
    };
    let result = match segments.as_slice() {
        ["health"] => {
            if let Some(refused) = expect("GET") {
                return refused;
            }
            return HttpResponse::ok(json!({"status": "ok"}));
        }
        ["v1", "indexes"] => {
            if let Some(refused) = expect("GET") {
                return refused;
            }
            service
                .list()
                .await
                .map(|names| json!({ "indexes": names }))
        }
        ["v1", "indexes", name] => {
            if let Some(refused) = expect("GET") {
                return refused;
            }
            service
                .describe(name)
                .await
                .map(|summary| serde_json::to_value(summary).unwrap_or(Value::Null))
        }
        ["v1", "indexes", name, "query"] => {
            if let Some(refused) = expect("POST") {
                return refused;
            }
            let request: QueryRequest = match parse_body(body, BodyShape::Query) {
                Ok(request) => request,
                Err(response) => return response,
            };
            service
                .query(name, request, request_id, deadline)
                .await
                .map(|response| serde_json::to_value(response).unwrap_or(Value::Null))
        }
        ["v1", "indexes", name, "query-batch"] => {
            if let Some(refused) = expect("POST") {
                return refused;
            }
            let batch: BatchRequest = match parse_body(body, BodyShape::Batch) {
                Ok(batch) => batch,
                Err(response) => return response,
            };
            service
                .query_batch(name, batch, request_id, deadline)
                .await
                .map(|response| serde_json::to_value(response).unwrap_or(Value::Null))
        }
        ["v1", "indexes", name, "upsert"] => {
            if let Some(refused) = expect("POST") {
                return refused;
            }
            let request: UpsertRequest = match parse_body(body, BodyShape::Object) {
                Ok(request) => request,
                Err(response) => return response,
            };
            service
                .upsert(name, request, request_id)
                .await
                .map(|response| serde_json::to_value(response).unwrap_or(Value::Null))
        }
        ["v1", "indexes", name, "delete"] => {
            if let Some(refused) = expect("POST") {
                return refused;
            }
            let request: DeleteRequest = match parse_body(body, BodyShape::Object) {
                Ok(request) => request,
                Err(response) => return response,
            };
            service
                .delete(name, request, request_id)
                .await
                .map(|response| serde_json::to_value(response).unwrap_or(Value::Null))
        }
        ["v1", "indexes", name, "fetch"] => {
            if let Some(refused) = expect("POST") {
                return refused;
            }
            let request: FetchRequest = match parse_body(body, BodyShape::Object) {
                Ok(request) => request,
                Err(response) => return response,
            };
            service
                .fetch(name, request)
                .await
                .map(|response| serde_json::to_value(response).unwrap_or(Value::Null))
        }
        _ => {
            return HttpResponse::error(
                404,
                "not_found",
                format!("no route for {method} {path}"),
                None,
            )
        }
    };
    match result {
        Ok(body) => HttpResponse::ok(body),
        Err(error) => HttpResponse::from_error(&error),
    }
}

/// A JSON document read the way the typed request parse reads it, as a plain value: a key
/// repeated in one object is recorded (the HTTP route refuses it) instead of silently winning.
///
/// The Lambda adapter deserializes direct invocation events into this type, so a direct call and
/// an HTTP call of the same body get the same answer.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct JsonPayload {
    /// The document; of repeated keys, the last value.
    pub value: Value,
    /// The first repeated key, as a field path (`k`, `queries[1].vector`).
    pub duplicate_key_opt: Option<String>,
}

impl From<Value> for JsonPayload {
    fn from(value: Value) -> Self {
        JsonPayload {
            value,
            duplicate_key_opt: None,
        }
    }
}

impl<'de> Deserialize<'de> for JsonPayload {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut duplicate_key_opt = None;
        let value = TrackedValue {
            path: String::new(),
            duplicate_key_opt: &mut duplicate_key_opt,
        }
        .deserialize(deserializer)?;
        Ok(JsonPayload {
            value,
            duplicate_key_opt,
        })
    }
}

/// Deserializes one value at `path`, recording the first repeated object key.
struct TrackedValue<'a> {
    path: String,
    duplicate_key_opt: &'a mut Option<String>,
}

impl TrackedValue<'_> {
    fn child(&mut self, segment: &str) -> TrackedValue<'_> {
        TrackedValue {
            path: format!("{}{segment}", self.path),
            duplicate_key_opt: self.duplicate_key_opt,
        }
    }
}

impl<'de> DeserializeSeed<'de> for TrackedValue<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for TrackedValue<'_> {
    type Value = Value;

    fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
        formatter.write_str("a JSON value")
    }

    fn visit_bool<E>(self, value: bool) -> Result<Value, E> {
        Ok(Value::Bool(value))
    }

    fn visit_i64<E>(self, value: i64) -> Result<Value, E> {
        Ok(Value::from(value))
    }

    fn visit_u64<E>(self, value: u64) -> Result<Value, E> {
        Ok(Value::from(value))
    }

    fn visit_f64<E>(self, value: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(value).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, value: &str) -> Result<Value, E> {
        Ok(Value::String(value.to_string()))
    }

    fn visit_string<E>(self, value: String) -> Result<Value, E> {
        Ok(Value::String(value))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        self.deserialize(deserializer)
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(self.child(&format!("[{}]", items.len())))? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let separator = if self.path.is_empty() { "" } else { "." };
            let value = map.next_value_seed(self.child(&format!("{separator}{key}")))?;
            if object.insert(key.clone(), value).is_some() && self.duplicate_key_opt.is_none() {
                *self.duplicate_key_opt = Some(format!("{}{separator}{key}", self.path));
            }
        }
        Ok(Value::Object(object))
    }
}

/// Answers a direct (non-HTTP) invocation: the body of a query or batch request with an added
/// `"index"` field; a body with `"queries"` or `"queries_from"` is a batch. Returns what the
/// HTTP route would.
pub async fn handle_direct(
    service: &CoordinatorService,
    payload: &[u8],
    request_id: &str,
    deadline: Instant,
) -> HttpResponse {
    match parse_body::<JsonPayload>(payload, BodyShape::Object) {
        Ok(payload) => handle_direct_payload(service, payload, request_id, deadline).await,
        Err(response) => response,
    }
}

/// What a direct invocation's `"operation"` may name: the last segment of an index route.
const DIRECT_OPERATIONS: [&str; 5] = ["query", "query-batch", "upsert", "delete", "fetch"];

/// Answers a direct invocation whose payload the Lambda runtime has already parsed.
pub async fn handle_direct_payload(
    service: &CoordinatorService,
    payload: JsonPayload,
    request_id: &str,
    deadline: Instant,
) -> HttpResponse {
    if let Some(field) = payload.duplicate_key_opt {
        let key = field.rsplit('.').next().unwrap_or(&field).to_string();
        return HttpResponse::error(
            400,
            "invalid_request",
            format!("{field}: duplicate field `{key}`"),
            Some(&field),
        );
    }
    let mut object = match payload.value {
        Value::Object(object) => object,
        _ => {
            return HttpResponse::error(
                400,
                "invalid_request",
                "body: a JSON object is required",
                Some("body"),
            )
        }
    };
    let index = match object.remove("index") {
        Some(Value::String(index)) => index,
        _ => {
            return HttpResponse::error(
                400,
                "invalid_request",
                "index: a string naming the index is required",
                Some("index"),
            )
        }
    };
    if let Err(error) = squash_core::index::validate_index_name(&index) {
        return HttpResponse::from_error(&error);
    }
    let route = match object.remove("operation") {
        None if object.contains_key("queries") || object.contains_key("queries_from") => {
            "query-batch".to_string()
        }
        None => "query".to_string(),
        Some(Value::String(operation))
            if DIRECT_OPERATIONS.contains(&operation.as_str()) =>
        {
            operation
        }
        Some(other) => {
            return HttpResponse::error(
                400,
                "invalid_request",
                format!(
                    "operation: must be one of {} (absent: query, or query-batch when the payload has queries), got {other}",
                    DIRECT_OPERATIONS.join(", ")
                ),
                Some("operation"),
            )
        }
    };
    let body = serde_json::to_vec(&object).unwrap_or_default();
    let path = format!("/v1/indexes/{index}/{route}");
    handle_http(service, "POST", &path, &body, request_id, deadline).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_errors_name_the_field() {
        assert_eq!(
            field_of_parse_error(".", "missing field `vector` at line 1 column 9"),
            "vector"
        );
        assert_eq!(
            field_of_parse_error("queries[2]", "missing field `vector` at line 1 column 40"),
            "queries[2].vector"
        );
        assert_eq!(
            field_of_parse_error("?", "key must be a string at line 1 column 2"),
            "body"
        );
        assert_eq!(field_of_parse_error("k", "invalid type: string"), "k");
        let unknown = |key: &str| format!("unknown field `{key}`, expected one of `vector`, `k`");
        assert_eq!(field_of_parse_error("zz", &unknown("zz")), "zz");
        assert_eq!(
            field_of_parse_error("options.zz", &unknown("zz")),
            "options.zz"
        );
        assert_eq!(field_of_parse_error("", &unknown("")), "[\"\"]");
        assert_eq!(field_of_parse_error(".", &unknown(".")), "[\".\"]");
        assert_eq!(field_of_parse_error("?", &unknown("?")), "[\"?\"]");
        assert_eq!(
            field_of_parse_error("options.", &unknown("")),
            "options[\"\"]"
        );
        assert_eq!(
            field_of_parse_error("queries[0].a.b", &unknown("a.b")),
            "queries[0][\"a.b\"]"
        );
    }

    #[test]
    fn direct_payloads_record_the_first_repeated_key() {
        let parse = |text: &str| serde_json::from_str::<JsonPayload>(text).expect("valid JSON");
        assert_eq!(parse(r#"{"k": 1, "v": [1, 2]}"#).duplicate_key_opt, None);
        let repeated = parse(r#"{"k": 1, "k": 2}"#);
        assert_eq!(repeated.duplicate_key_opt.as_deref(), Some("k"));
        assert_eq!(repeated.value, json!({"k": 2}));
        let nested = parse(r#"{"queries": [{"k": 1}, {"v": 1, "options": {"a": 1, "a": 2}}]}"#);
        assert_eq!(
            nested.duplicate_key_opt.as_deref(),
            Some("queries[1].options.a")
        );
    }

    #[test]
    fn arrays_in_place_of_objects_are_named() {
        let misplaced = |shape: BodyShape, body: Value| {
            let text = body.to_string();
            ShapeProbe::Body(shape)
                .deserialize(&mut serde_json::Deserializer::from_str(&text))
                .expect("valid JSON")
        };
        assert_eq!(
            misplaced(BodyShape::Query, json!([1, 2])),
            Some("body".into())
        );
        assert_eq!(
            misplaced(
                BodyShape::Query,
                json!({"vector": [1.0], "options": [true]})
            ),
            Some("options".into())
        );
        assert_eq!(
            misplaced(BodyShape::Query, json!({"vector": [1.0], "options": {}})),
            None
        );
        assert_eq!(
            misplaced(
                BodyShape::Batch,
                json!({"queries": [{"vector": [1.0]}, [[1.0]]]})
            ),
            Some("queries[1]".into())
        );
        assert_eq!(
            misplaced(
                BodyShape::Batch,
                json!({"queries": [{"vector": [1.0], "options": [1]}]})
            ),
            Some("queries[0].options".into())
        );
        assert_eq!(misplaced(BodyShape::Object, json!({"a": [1]})), None);
        assert_eq!(misplaced(BodyShape::Object, json!(3)), Some("body".into()));
        // The first misplaced query is named, however many follow.
        assert_eq!(
            misplaced(
                BodyShape::Batch,
                json!({"k": [1], "queries": [{"options": {}}, {"options": [1]}, []]})
            ),
            Some("queries[1].options".into())
        );
    }
}
