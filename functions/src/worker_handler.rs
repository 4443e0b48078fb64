//! The worker function's event handler: a `WorkerRequest` in, a `WorkerResponse` out.

use std::sync::Arc;

use lambda_runtime::{service_fn, LambdaEvent};
use serde_json::value::RawValue;
use squash_core::error::Error;
use squash_core::protocol::WorkerRequest;
use squash_service::partition_cache::PartitionCache;
use squash_service::WorkerService;
use squash_storage::store_for_location;

use crate::config::FunctionConfig;
use crate::faults::{fault_for, Fault};
use crate::lambda_invoker::LambdaInvoker;

/// A worker request that could not be served; Lambda reports it as a function error whose
/// type carries the kind: `Retryable.<kind>` or `Fatal.<kind>` (kinds of `squash_core::Error`),
/// which the parent's invoker turns back into that kind.
#[derive(Debug)]
pub struct WorkerError(pub Error);

impl std::fmt::Display for WorkerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for WorkerError {}

impl WorkerError {
    /// Returns the Lambda error type: `Retryable.<kind>` or `Fatal.<kind>`.
    pub fn error_type(&self) -> String {
        let policy = if self.0.is_retryable() {
            "Retryable"
        } else {
            "Fatal"
        };
        format!("{policy}.{}", self.0.kind_name())
    }
}

impl From<WorkerError> for lambda_runtime::Diagnostic {
    fn from(error: WorkerError) -> Self {
        lambda_runtime::Diagnostic {
            error_type: error.error_type(),
            error_message: error.0.to_string(),
        }
    }
}

/// Handles one worker event, given as its raw JSON text: the request is decoded straight into
/// its types (never into a `serde_json::Value`), and the answer goes back as raw JSON too.
pub async fn handle_event(
    worker: &WorkerService,
    function: &str,
    payload: &RawValue,
) -> Result<Box<RawValue>, WorkerError> {
    match fault_for(function) {
        Some(Fault::Crash) => std::process::abort(),
        Some(Fault::Fail) => {
            return Err(WorkerError(Error::Storage {
                message: format!("{function}: injected failure"),
                retryable: true,
            }))
        }
        Some(Fault::Sleep(delay)) => tokio::time::sleep(delay).await,
        None => {}
    }
    let received_at = std::time::Instant::now();
    let request: WorkerRequest =
        crate::envelope::unwrap_bytes_as(payload.get().as_bytes(), "worker request")
            .map_err(WorkerError)?;
    let response = worker
        .handle_received(request, received_at)
        .await
        .map_err(WorkerError)?;
    // Large answers (thousands of queries' hits) travel compressed, like large requests.
    let json = serde_json::to_vec(&response)
        .map_err(|e| WorkerError(Error::internal(format!("encoding the response: {e}"))))?;
    let wrapped = crate::envelope::wrap(json).map_err(WorkerError)?;
    String::from_utf8(wrapped)
        .map_err(|e| e.to_string())
        .and_then(|text| RawValue::from_string(text).map_err(|e| e.to_string()))
        .map_err(|e| WorkerError(Error::internal(format!("wrapping the response: {e}"))))
}

/// Runs the worker function: configuration and clients once per cold start, then events.
pub async fn run() -> Result<(), lambda_runtime::Error> {
    crate::init_logging();
    let config = FunctionConfig::from_env()?;
    let function = std::env::var("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_else(|_| "worker".into());
    let root = store_for_location(&config.root).await?;
    let invoker = Arc::new(LambdaInvoker::from_env().await);
    let cache = Arc::new(PartitionCache::new(config.cache_bytes));
    let worker = WorkerService::new(&function, root, cache, invoker)
        .with_max_answer_bytes(config.service.limits.max_stored_answer_bytes);
    let worker = &worker;
    let function = function.as_str();
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<Box<RawValue>>| async move {
            handle_event(worker, function, &event.payload).await
        },
    ))
    .await
}
