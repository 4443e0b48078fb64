//! The coordinator function's event handler. One function serves every entry:
//! - API Gateway HTTP API (payload version 2.0) and Lambda function URL events, recognised by
//!   their `requestContext.http`, answered with a payload-2.0 response;
//! - API Gateway REST API (payload version 1.0) events, recognised by their `httpMethod` and
//!   `requestContext`, answered with a payload-1.0 response;
//! - direct invocations, whose payload is a query or batch body plus `"index"`, answered with
//!   the JSON body the HTTP route would return (an error body carries `"status"`).

use std::sync::Arc;
use std::time::Instant;

use base64::Engine;
use lambda_runtime::{service_fn, LambdaEvent};
use serde_json::{json, Value};
use squash_service::{
    handle_direct_payload, handle_http, CoordinatorService, HttpResponse, JsonPayload,
};
use squash_storage::store_for_location;

use crate::config::FunctionConfig;
use crate::lambda_invoker::LambdaInvoker;

/// Handles one coordinator event whose Lambda deadline is `deadline_epoch_ms`; HTTP answers
/// carry CORS headers allowing `cors_allow_origin` (none when `None`).
pub async fn handle_event(
    service: &CoordinatorService,
    event: JsonPayload,
    request_id: &str,
    deadline_epoch_ms: u64,
    cors_allow_origin: Option<&str>,
) -> Value {
    let budget = crate::remaining_budget(deadline_epoch_ms, service.config().timeout_ms);
    let deadline = Instant::now() + budget;
    tracing::debug!(
        request_id,
        deadline_epoch_ms,
        budget_ms = budget.as_millis() as u64,
        "request budget"
    );
    let has_context = event.value.get("requestContext").is_some();
    let is_http_v2 = has_context && event.value["requestContext"].get("http").is_some();
    let is_rest_v1 = has_context && event.value.get("httpMethod").is_some_and(Value::is_string);
    if !is_http_v2 && !is_rest_v1 {
        let response = handle_direct_payload(service, event, request_id, deadline).await;
        let mut body = response.body;
        if response.status != 200 {
            body["status"] = json!(response.status);
        }
        // Sized by encoding it once more: a direct answer is a JSON value until the runtime
        // sends it, and direct invocations are batch jobs, where this costs little.
        let answer_bytes = serde_json::to_vec(&body)
            .map(|json| json.len())
            .unwrap_or(0);
        if answer_bytes > LAMBDA_RESPONSE_LIMIT_BYTES {
            let mut refused = answer_too_large("queries", answer_bytes).body;
            refused["status"] = json!(400);
            return refused;
        }
        return body;
    }
    // The HTTP body is a string inside the event: repeated keys in it are found by the route.
    let payload = event.value;
    let format = if is_http_v2 {
        EventFormat::HttpV2
    } else {
        EventFormat::RestV1
    };
    let method = match format {
        EventFormat::HttpV2 => payload["requestContext"]["http"]["method"].as_str(),
        EventFormat::RestV1 => payload["httpMethod"].as_str(),
    }
    .unwrap_or("GET")
    .to_ascii_uppercase();
    // REST (v1) events carry the path after the stage in `path`; HTTP API (v2) events carry
    // it with a named stage in `rawPath`.
    let path = match format {
        EventFormat::HttpV2 => payload["rawPath"]
            .as_str()
            .or_else(|| payload["requestContext"]["http"]["path"].as_str()),
        EventFormat::RestV1 => payload["path"].as_str(),
    }
    .unwrap_or("/")
    .to_string();
    // A named API Gateway stage stays in `rawPath` (`/prod/v1/...`); the routes start after it.
    let path = match payload["requestContext"]["stage"].as_str() {
        Some(stage) if stage != "$default" && format == EventFormat::HttpV2 => path
            .strip_prefix(&format!("/{stage}"))
            .filter(|rest| rest.is_empty() || rest.starts_with('/'))
            .map(|rest| {
                if rest.is_empty() {
                    "/".to_string()
                } else {
                    rest.to_string()
                }
            })
            .unwrap_or(path),
        _ => path,
    };
    let answer_shape = AnswerShape {
        request_id,
        method: &method,
        format,
        cors_allow_origin,
        field_if_too_large: if path.ends_with("/query") {
            "k"
        } else {
            "queries"
        },
    };
    let reply = |response: &HttpResponse| http_event_response(response, &answer_shape);
    if method == "OPTIONS" {
        // A CORS preflight: the transport's business, answered for every path.
        return reply(&HttpResponse {
            status: 204,
            body: Value::Null,
            allow_opt: Some(ALL_METHODS),
        });
    }
    let body_text = payload["body"].as_str().unwrap_or("");
    let body = if payload["isBase64Encoded"].as_bool().unwrap_or(false) {
        match base64::engine::general_purpose::STANDARD.decode(body_text) {
            Ok(bytes) => bytes,
            Err(_) => {
                return reply(&HttpResponse {
                    status: 400,
                    body: json!({"error": {"code": "invalid_request", "message": "body: not valid base64", "field": "body"}}),
                    allow_opt: None,
                })
            }
        }
    } else {
        body_text.as_bytes().to_vec()
    };
    let response = handle_http(service, &method, &path, &body, request_id, deadline).await;
    reply(&response)
}

/// The largest synchronous Lambda response, 6 MB.
const LAMBDA_RESPONSE_LIMIT_BYTES: usize = 6 * 1024 * 1024;
/// What an HTTP event response holds besides its body: status, headers, flags.
const HTTP_EVENT_OVERHEAD_BYTES: usize = 2048;

/// The 400 of an answer that took `answer_bytes`, more than a Lambda response may carry: the
/// answer estimate let it through (a limit configured above the default, or hits wider than
/// estimated). Said here rather than left to Lambda, which API Gateway would turn into a bare
/// 502.
fn answer_too_large(field: &str, answer_bytes: usize) -> HttpResponse {
    HttpResponse {
        status: 400,
        body: json!({"error": {
            "code": "invalid_request",
            "field": field,
            "message": format!(
                "{field}: the answer took {answer_bytes} bytes, over the {LAMBDA_RESPONSE_LIMIT_BYTES} bytes a Lambda response may carry; ask for fewer hits, leave out attributes, or (for a batch) set \"output\": \"store\""
            ),
        }}),
        allow_opt: None,
    }
}

/// How the HTTP answers of one event are shaped.
struct AnswerShape<'a> {
    request_id: &'a str,
    method: &'a str,
    format: EventFormat,
    cors_allow_origin: Option<&'a str>,
    /// The field an answer too large for a Lambda response is refused for.
    field_if_too_large: &'static str,
}

/// The two shapes of HTTP events API Gateway sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EventFormat {
    /// HTTP API and function URLs: payload format 2.0.
    HttpV2,
    /// REST API: payload format 1.0.
    RestV1,
}

/// Every method some route answers, plus the preflight's own.
const ALL_METHODS: &str = "GET, HEAD, POST, OPTIONS";

/// The `Access-Control-Allow-Headers` of every answer: what the clients send, SigV4's
/// headers included.
const CORS_ALLOW_HEADERS: &str = "content-type, authorization, x-amz-date, x-amz-security-token";

fn http_event_response(response: &HttpResponse, shape: &AnswerShape) -> Value {
    // HEAD and 204 answers carry no body.
    let body = if shape.method == "HEAD" || response.status == 204 {
        String::new()
    } else {
        response.body.to_string()
    };
    // Inside the event the body is a JSON string: each quote and backslash gains an escape.
    let event_bytes = body.len()
        + body.bytes().filter(|b| matches!(b, b'"' | b'\\')).count()
        + HTTP_EVENT_OVERHEAD_BYTES;
    if event_bytes > LAMBDA_RESPONSE_LIMIT_BYTES {
        return http_event_response(
            &answer_too_large(shape.field_if_too_large, event_bytes),
            shape,
        );
    }
    let mut headers = json!({
        "content-type": "application/json",
        "x-request-id": shape.request_id,
    });
    // By default browsers may call the API from any origin: it sets no cookies, and an API
    // behind IAM authorization still needs a signature on every call. A deployment can name
    // its one origin, or send no CORS headers at all.
    if let Some(origin) = shape.cors_allow_origin {
        headers["access-control-allow-origin"] = json!(origin);
        headers["access-control-allow-methods"] = json!(ALL_METHODS);
        headers["access-control-allow-headers"] = json!(CORS_ALLOW_HEADERS);
        headers["access-control-expose-headers"] = json!("x-request-id, retry-after");
        if origin != "*" {
            // The answer differs by origin: caches must key on it.
            headers["vary"] = json!("origin");
        }
    }
    if let Some(allow) = response.allow_opt {
        headers["allow"] = json!(allow);
    }
    if response.status == 503 {
        let retry_after_s = response.body["error"]["retry_after_s"]
            .as_u64()
            .unwrap_or(squash_core::protocol::RETRY_AFTER_S);
        headers["retry-after"] = json!(retry_after_s.to_string());
    }
    let mut answer = json!({
        "statusCode": response.status,
        "headers": headers,
        "body": body,
        "isBase64Encoded": false,
    });
    if shape.format == EventFormat::HttpV2 {
        // Required by strict payload-2.0 parsers (the local emulator's among them); a REST
        // (1.0) response must not carry it.
        answer["cookies"] = json!([]);
    }
    answer
}

/// Runs the coordinator function: configuration and clients once per cold start, then events.
pub async fn run() -> Result<(), lambda_runtime::Error> {
    crate::init_logging();
    let config = FunctionConfig::from_env()?;
    let root = store_for_location(&config.root).await?;
    let invoker = Arc::new(LambdaInvoker::from_env().await);
    let service = CoordinatorService::new(root, invoker, config.service);
    let service = &service;
    let cors_allow_origin = config.cors_allow_origin.as_deref();
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<JsonPayload>| async move {
            let request_id = event.context.request_id.clone();
            Ok::<Value, lambda_runtime::Error>(
                handle_event(
                    service,
                    event.payload,
                    &request_id,
                    event.context.deadline,
                    cors_allow_origin,
                )
                .await,
            )
        },
    ))
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use squash_service::partition_cache::PartitionCache;
    use squash_service::{InProcessInvoker, ServiceConfig};
    use squash_storage::{BlobStore, MemoryStore};

    const CORS: Option<&str> = Some("*");

    fn service() -> CoordinatorService {
        let root: Arc<dyn BlobStore> = Arc::new(MemoryStore::new());
        let invoker =
            InProcessInvoker::new(Arc::clone(&root), Arc::new(PartitionCache::new(1 << 20)));
        CoordinatorService::new(root, Arc::new(invoker), ServiceConfig::default())
    }

    fn http_event(stage: &str, raw_path: &str, method: &str) -> Value {
        json!({
            "version": "2.0",
            "rawPath": raw_path,
            "requestContext": {"stage": stage, "http": {"method": method, "path": raw_path}},
            "isBase64Encoded": false,
        })
    }

    #[tokio::test]
    async fn http_events_route_with_and_without_a_named_stage() {
        let service = service();
        for (stage, path) in [("$default", "/health"), ("prod", "/prod/health")] {
            let answer = handle_event(
                &service,
                http_event(stage, path, "GET").into(),
                "r",
                0,
                CORS,
            )
            .await;
            assert_eq!(answer["statusCode"], json!(200), "{answer}");
            assert_eq!(answer["cookies"], json!([]));
            let body: Value =
                serde_json::from_str(answer["body"].as_str().expect("body")).expect("json");
            assert_eq!(body["status"], json!("ok"));
        }
        let missing = handle_event(
            &service,
            http_event("prod", "/prod/v1/indexes/nope", "GET").into(),
            "r",
            0,
            CORS,
        )
        .await;
        assert_eq!(missing["statusCode"], json!(404), "{missing}");
    }

    #[tokio::test]
    async fn rest_v1_events_head_options_and_405s_get_http_answers() {
        let service = service();
        let rest_event = |method: &str, path: &str| -> Value {
            json!({
                "resource": "/{proxy+}",
                "path": path,
                "httpMethod": method,
                "headers": {"content-type": "application/json"},
                "requestContext": {"stage": "prod", "path": format!("/prod{path}")},
                "body": null,
                "isBase64Encoded": false,
            })
        };
        let health =
            handle_event(&service, rest_event("GET", "/health").into(), "r", 0, CORS).await;
        assert_eq!(health["statusCode"], json!(200), "{health}");
        assert!(health.get("cookies").is_none(), "{health}");
        assert_eq!(health["headers"]["access-control-allow-origin"], json!("*"));
        let body: Value =
            serde_json::from_str(health["body"].as_str().expect("body")).expect("json");
        assert_eq!(body["status"], json!("ok"));

        let head = handle_event(
            &service,
            http_event("$default", "/health", "HEAD").into(),
            "r",
            0,
            CORS,
        )
        .await;
        assert_eq!(head["statusCode"], json!(200), "{head}");
        assert_eq!(head["body"], json!(""));

        let refused = handle_event(
            &service,
            rest_event("DELETE", "/v1/indexes/films").into(),
            "r",
            0,
            CORS,
        )
        .await;
        assert_eq!(refused["statusCode"], json!(405), "{refused}");
        assert_eq!(refused["headers"]["allow"], json!("GET, HEAD"));
        let refused = handle_event(
            &service,
            http_event("$default", "/v1/indexes/films/query", "GET").into(),
            "r",
            0,
            CORS,
        )
        .await;
        assert_eq!(refused["headers"]["allow"], json!("POST"), "{refused}");

        let preflight = handle_event(
            &service,
            http_event("$default", "/v1/indexes/films/query", "OPTIONS").into(),
            "r",
            0,
            CORS,
        )
        .await;
        assert_eq!(preflight["statusCode"], json!(204), "{preflight}");
        assert_eq!(preflight["body"], json!(""));
        assert!(preflight["headers"]["access-control-allow-methods"]
            .as_str()
            .is_some_and(|methods| methods.contains("POST")));

        // CORS as configured: one origin (and Vary), or no CORS headers at all.
        let event = || http_event("$default", "/health", "GET").into();
        let one = handle_event(&service, event(), "r", 0, Some("https://app.example")).await;
        assert_eq!(
            one["headers"]["access-control-allow-origin"],
            json!("https://app.example")
        );
        assert_eq!(one["headers"]["vary"], json!("origin"));
        let none = handle_event(&service, event(), "r", 0, None).await;
        assert_eq!(none["statusCode"], json!(200));
        let headers = none["headers"].as_object().expect("headers");
        assert!(
            headers
                .keys()
                .all(|name| !name.starts_with("access-control-")),
            "{none}"
        );
    }

    #[tokio::test]
    async fn direct_invocations_answer_with_the_http_body_and_status() {
        let service = service();
        let answer = handle_event(&service, json!({"vector": [1.0]}).into(), "r", 0, CORS).await;
        assert_eq!(answer["status"], json!(400), "{answer}");
        assert_eq!(answer["error"]["field"], json!("index"));
        let answer = handle_event(
            &service,
            json!({"index": "nope", "vector": [1.0]}).into(),
            "r",
            0,
            CORS,
        )
        .await;
        assert_eq!(answer["status"], json!(404), "{answer}");
        // The runtime parses the event: a repeated key is refused as over HTTP, not last-wins.
        let event: JsonPayload =
            serde_json::from_str(r#"{"index": "nope", "vector": [1.0], "k": 3, "k": 5}"#)
                .expect("valid JSON");
        let answer = handle_event(&service, event, "r", 0, CORS).await;
        assert_eq!(answer["status"], json!(400), "{answer}");
        assert_eq!(answer["error"]["field"], json!("k"));
    }
}
