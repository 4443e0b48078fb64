//! The coordinator function's event handler. One function serves both entries:
//! - API Gateway HTTP API (payload version 2.0) and Lambda function URL events, recognised by
//!   their `requestContext.http`, answered with a payload-2.0 response;
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

/// Handles one coordinator event whose Lambda deadline is `deadline_epoch_ms`.
pub async fn handle_event(
    service: &CoordinatorService,
    event: JsonPayload,
    request_id: &str,
    deadline_epoch_ms: u64,
) -> Value {
    let budget = crate::remaining_budget(deadline_epoch_ms, service.config().timeout_ms);
    let deadline = Instant::now() + budget;
    tracing::debug!(
        request_id,
        deadline_epoch_ms,
        budget_ms = budget.as_millis() as u64,
        "request budget"
    );
    let is_http = event
        .value
        .get("requestContext")
        .and_then(|context| context.get("http"))
        .is_some();
    if !is_http {
        let response = handle_direct_payload(service, event, request_id, deadline).await;
        let mut body = response.body;
        if response.status != 200 {
            body["status"] = json!(response.status);
        }
        return body;
    }
    // The HTTP body is a string inside the event: repeated keys in it are found by the route.
    let payload = event.value;
    let method = payload["requestContext"]["http"]["method"]
        .as_str()
        .unwrap_or("GET")
        .to_string();
    let path = payload["rawPath"]
        .as_str()
        .or_else(|| payload["requestContext"]["http"]["path"].as_str())
        .unwrap_or("/")
        .to_string();
    // A named API Gateway stage stays in `rawPath` (`/prod/v1/...`); the routes start after it.
    let path = match payload["requestContext"]["stage"].as_str() {
        Some(stage) if stage != "$default" => path
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
    let body_text = payload["body"].as_str().unwrap_or("");
    let body = if payload["isBase64Encoded"].as_bool().unwrap_or(false) {
        match base64::engine::general_purpose::STANDARD.decode(body_text) {
            Ok(bytes) => bytes,
            Err(_) => {
                return http_event_response(
                    &HttpResponse {
                        status: 400,
                        body: json!({"error": {"code": "invalid_request", "message": "body: not valid base64", "field": "body"}}),
                    },
                    request_id,
                )
            }
        }
    } else {
        body_text.as_bytes().to_vec()
    };
    let response = handle_http(service, &method, &path, &body, request_id, deadline).await;
    http_event_response(&response, request_id)
}

fn http_event_response(response: &HttpResponse, request_id: &str) -> Value {
    let mut headers = json!({
        "content-type": "application/json",
        "x-request-id": request_id,
    });
    if response.status == 503 {
        let retry_after_s = response.body["error"]["retry_after_s"]
            .as_u64()
            .unwrap_or(squash_core::protocol::RETRY_AFTER_S);
        headers["retry-after"] = json!(retry_after_s.to_string());
    }
    json!({
        "statusCode": response.status,
        "headers": headers,
        "body": response.body.to_string(),
        "isBase64Encoded": false,
        // Required by strict payload-2.0 parsers (the local emulator's among them).
        "cookies": [],
    })
}

/// Runs the coordinator function: configuration and clients once per cold start, then events.
pub async fn run() -> Result<(), lambda_runtime::Error> {
    crate::init_logging();
    let config = FunctionConfig::from_env()?;
    let root = store_for_location(&config.root).await?;
    let invoker = Arc::new(LambdaInvoker::from_env().await);
    let service = CoordinatorService::new(root, invoker, config.service);
    let service = &service;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<JsonPayload>| async move {
            let request_id = event.context.request_id.clone();
            Ok::<Value, lambda_runtime::Error>(
                handle_event(service, event.payload, &request_id, event.context.deadline).await,
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
            let answer =
                handle_event(&service, http_event(stage, path, "GET").into(), "r", 0).await;
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
        )
        .await;
        assert_eq!(missing["statusCode"], json!(404), "{missing}");
    }

    #[tokio::test]
    async fn direct_invocations_answer_with_the_http_body_and_status() {
        let service = service();
        let answer = handle_event(&service, json!({"vector": [1.0]}).into(), "r", 0).await;
        assert_eq!(answer["status"], json!(400), "{answer}");
        assert_eq!(answer["error"]["field"], json!("index"));
        let answer = handle_event(
            &service,
            json!({"index": "nope", "vector": [1.0]}).into(),
            "r",
            0,
        )
        .await;
        assert_eq!(answer["status"], json!(404), "{answer}");
        // The runtime parses the event: a repeated key is refused as over HTTP, not last-wins.
        let event: JsonPayload =
            serde_json::from_str(r#"{"index": "nope", "vector": [1.0], "k": 3, "k": 5}"#)
                .expect("valid JSON");
        let answer = handle_event(&service, event, "r", 0).await;
        assert_eq!(answer["status"], json!(400), "{answer}");
        assert_eq!(answer["error"]["field"], json!("k"));
    }
}
