//! The HTTP API of the coordinator as a plain function: method, path and body in, status and
//! JSON body out. The Lambda adapter (API Gateway HTTP API payload v2, function URLs) and the
//! tests call the same function.
//!
//! Routes:
//! - `GET /health`
//! - `GET /v1/indexes`
//! - `GET /v1/indexes/{index}`
//! - `POST /v1/indexes/{index}/query` with a [`QueryRequest`]
//! - `POST /v1/indexes/{index}/query-batch` with a [`BatchRequest`]
//!
//! Errors are `{"error": {"code", "message", "field"?, "missing_partitions"?}}`: 400 for a bad
//! request (the field named), 404 for an unknown index or route, 405, 413 for a body over
//! [`MAX_BODY_BYTES`], 503 (retry later) when workers could not answer in time, 500 only for
//! faults of the service itself (corrupt index objects, store failures).

use std::time::Instant;

use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use super::coordinator::CoordinatorService;
use crate::error::Error;
use crate::protocol::{BatchRequest, QueryRequest};

/// The largest request body accepted: the synchronous Lambda payload limit.
pub const MAX_BODY_BYTES: usize = 6 * 1024 * 1024;

/// Suggested wait before retrying a 503, in seconds.
pub const RETRY_AFTER_S: u64 = 1;

/// A status code and a JSON body.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpResponse {
    /// HTTP status code.
    pub status: u16,
    /// JSON body.
    pub body: Value,
}

impl HttpResponse {
    fn ok(body: Value) -> Self {
        HttpResponse { status: 200, body }
    }

    fn error(status: u16, code: &str, message: impl Into<String>, field_opt: Option<&str>) -> Self {
        let mut error = json!({"code": code, "message": message.into()});
        if let Some(field) = field_opt {
            error["field"] = json!(field);
        }
        HttpResponse {
            status,
            body: json!({ "error": error }),
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
            } => {
                let mut response = HttpResponse::error(
                    503,
                    "unavailable",
                    format!("storage is unavailable ({message}); retry later"),
                    None,
                );
                response.body["error"]["retry_after_s"] = json!(RETRY_AFTER_S);
                response
            }
            other => HttpResponse::error(500, "internal", other.to_string(), None),
        }
    }
}

/// Parses a JSON body into `T`, naming the offending field on error.
fn parse_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, HttpResponse> {
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
fn field_of_parse_error(path: &str, message: &str) -> String {
    let missing_opt = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next());
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
    let expect = |allowed: &str| -> Option<HttpResponse> {
        (method != allowed).then(|| {
            HttpResponse::error(
                405,
                "method_not_allowed",
                format!("{method} is not allowed on {path}; use {allowed}"),
                None,
            )
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
            let request: QueryRequest = match parse_body(body) {
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
            let batch: BatchRequest = match parse_body(body) {
                Ok(batch) => batch,
                Err(response) => return response,
            };
            service
                .query_batch(name, batch, request_id, deadline)
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

/// Answers a direct (non-HTTP) invocation: the body of a query or batch request with an added
/// `"index"` field; a body with `"queries"` is a batch. Returns what the HTTP route would.
pub async fn handle_direct(
    service: &CoordinatorService,
    payload: &[u8],
    request_id: &str,
    deadline: Instant,
) -> HttpResponse {
    let mut object: serde_json::Map<String, Value> = match parse_body(payload) {
        Ok(object) => object,
        Err(response) => return response,
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
    if let Err(error) = super::validate_index_name(&index) {
        return HttpResponse::from_error(&error);
    }
    let route = if object.contains_key("queries") {
        "query-batch"
    } else {
        "query"
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
    }
}
