//! The Lambda adapter of the `WorkerInvoker` port: a synchronous (request/response) Invoke
//! per tree node, through `aws-sdk-lambda`. `AWS_ENDPOINT_URL_LAMBDA` points it at a local
//! emulator (`cargo lambda watch`).

use async_trait::async_trait;
use aws_sdk_lambda::error::DisplayErrorContext;
use aws_sdk_lambda::primitives::Blob;
use shared::error::{Error, Result};
use shared::protocol::{WorkerRequest, WorkerResponse};
use shared::service::WorkerInvoker;

/// The synchronous invocation payload limit of AWS Lambda, for requests and responses.
pub const MAX_PAYLOAD_BYTES: usize = 6 * 1024 * 1024;

/// Invokes worker functions through the Lambda Invoke API.
#[derive(Debug, Clone)]
pub struct LambdaInvoker {
    client: aws_sdk_lambda::Client,
}

impl LambdaInvoker {
    /// Returns an invoker configured from the environment. The SDK makes one attempt per
    /// call: the invocation tree retries a failed child itself, once, within its deadline.
    pub async fn from_env() -> LambdaInvoker {
        let sdk_config = shared::storage::sdk_config_from_env(1).await;
        let mut config = aws_sdk_lambda::config::Builder::from(&sdk_config);
        if sdk_config.region().is_none() {
            config.set_region(Some(aws_sdk_lambda::config::Region::new("us-east-1")));
        }
        LambdaInvoker {
            client: aws_sdk_lambda::Client::from_conf(config.build()),
        }
    }
}

#[async_trait]
impl WorkerInvoker for LambdaInvoker {
    async fn invoke(&self, function: &str, request: &WorkerRequest) -> Result<WorkerResponse> {
        let payload = serde_json::to_vec(request).map_err(|e| Error::Storage {
            message: format!("encoding the request for {function}: {e}"),
            retryable: false,
        })?;
        let payload = crate::envelope::wrap(payload)?;
        if payload.len() > MAX_PAYLOAD_BYTES {
            return Err(Error::invalid(
                "queries",
                format!(
                    "the worker request is {} bytes, over the {MAX_PAYLOAD_BYTES}-byte Lambda payload limit; send fewer queries per batch",
                    payload.len()
                ),
            ));
        }
        // Under `cargo lambda watch` a function error is an HTTP 500 (an SDK error); on AWS it
        // is a 200 with `X-Amz-Function-Error`. Both become the same retryable error here.
        let output = self
            .client
            .invoke()
            .function_name(function)
            .payload(Blob::new(payload))
            .send()
            .await
            .map_err(|e| Error::Storage {
                message: format!("invoking {function}: {}", DisplayErrorContext(e)),
                retryable: true,
            })?;
        let body = output
            .payload()
            .map(|blob| blob.as_ref())
            .unwrap_or_default();
        if let Some(kind) = output.function_error() {
            return Err(Error::Storage {
                message: format!(
                    "{function} failed ({kind}): {}",
                    String::from_utf8_lossy(&body[..body.len().min(500)])
                ),
                retryable: true,
            });
        }
        let not_a_response = |e: &dyn std::fmt::Display| Error::Storage {
            message: format!("{function} answered something that is not a worker response: {e}"),
            retryable: true,
        };
        let value: serde_json::Value =
            serde_json::from_slice(body).map_err(|e| not_a_response(&e))?;
        let value = crate::envelope::unwrap(value).map_err(|e| not_a_response(&e))?;
        serde_json::from_value(value).map_err(|e| not_a_response(&e))
    }
}
