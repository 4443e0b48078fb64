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
use shared::service::{handle_direct, handle_http, CoordinatorService, HttpResponse};
use shared::storage::store_for_location;

use crate::config::FunctionConfig;
use crate::invoker::LambdaInvoker;

/// Handles one coordinator event whose Lambda deadline is `deadline_epoch_ms`.
pub async fn handle_event(
    service: &CoordinatorService,
    payload: Value,
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
    let is_http = payload
        .get("requestContext")
        .and_then(|context| context.get("http"))
        .is_some();
    if !is_http {
        let body = serde_json::to_vec(&payload).unwrap_or_default();
        let response = handle_direct(service, &body, request_id, deadline).await;
        let mut body = response.body;
        if response.status != 200 {
            body["status"] = json!(response.status);
        }
        return body;
    }
    let method = payload["requestContext"]["http"]["method"]
        .as_str()
        .unwrap_or("GET")
        .to_string();
    let path = payload["rawPath"]
        .as_str()
        .or_else(|| payload["requestContext"]["http"]["path"].as_str())
        .unwrap_or("/")
        .to_string();
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
        headers["retry-after"] = json!(shared::service::http::RETRY_AFTER_S.to_string());
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
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let request_id = event.context.request_id.clone();
        Ok::<Value, lambda_runtime::Error>(
            handle_event(service, event.payload, &request_id, event.context.deadline).await,
        )
    }))
    .await
}
