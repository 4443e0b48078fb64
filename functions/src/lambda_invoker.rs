//! The Lambda adapter of the `WorkerInvoker` port: a synchronous (request/response) Invoke
//! per tree node, through `aws-sdk-lambda`. `AWS_ENDPOINT_URL_LAMBDA` points it at a local
//! emulator (`cargo lambda watch`).

use async_trait::async_trait;
use aws_sdk_lambda::config::http::HttpResponse;
use aws_sdk_lambda::error::{DisplayErrorContext, SdkError};
use aws_sdk_lambda::operation::invoke::InvokeError;
use aws_sdk_lambda::primitives::Blob;
use squash_core::error::{Error, Result};
use squash_core::protocol::{WorkerRequest, WorkerResponse};
use squash_service::WorkerInvoker;

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
        let sdk_config = squash_storage::sdk_config_from_env(1).await;
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
        let payload = serde_json::to_vec(request)
            .map_err(|e| Error::internal(format!("encoding the request for {function}: {e}")))?;
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
        // is a 200 with `X-Amz-Function-Error`. Both carry the function's error body, whose
        // `errorType` says the kind (see `worker_handler::WorkerError`).
        let output = self
            .client
            .invoke()
            .function_name(function)
            .payload(Blob::new(payload))
            .send()
            .await
            .map_err(|e| classify_invoke_error(function, e))?;
        let body = output
            .payload()
            .map(|blob| blob.as_ref())
            .unwrap_or_default();
        if output.function_error().is_some() {
            return Err(classify_function_error(function, body));
        }
        let not_a_response = |e: &dyn std::fmt::Display| Error::Storage {
            message: format!("{function} answered something that is not a worker response: {e}"),
            retryable: true,
        };
        crate::envelope::unwrap_bytes_as(body, "worker response").map_err(|e| not_a_response(&e))
    }
}

/// Sorts a failed Invoke call into the error kinds the fan-out acts on: throttling (with the
/// service's suggested wait), timeouts and transient service faults are retryable; a function
/// error carries its own kind in its body; anything else (an unknown function, a denied call,
/// a request too large) is a deployment or request fault that a retry cannot fix.
fn classify_invoke_error(function: &str, error: SdkError<InvokeError, HttpResponse>) -> Error {
    let message = format!("invoking {function}: {}", DisplayErrorContext(&error));
    match &error {
        SdkError::TimeoutError(_) => Error::Timeout { message },
        SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => Error::Storage {
            message,
            retryable: true,
        },
        SdkError::ServiceError(service) => {
            let status = service.raw().status().as_u16();
            match service.err() {
                InvokeError::TooManyRequestsException(throttle) => Error::Throttled {
                    message,
                    retry_after_ms: throttle
                        .retry_after_seconds()
                        .and_then(|seconds| seconds.trim().parse::<u64>().ok())
                        .map(|seconds| seconds.saturating_mul(1000)),
                },
                InvokeError::ServiceException(_)
                | InvokeError::ResourceNotReadyException(_)
                | InvokeError::EniLimitReachedException(_)
                | InvokeError::SubnetIpAddressLimitReachedException(_) => Error::Storage {
                    message,
                    retryable: true,
                },
                _ if status == 429 => Error::Throttled {
                    message,
                    retry_after_ms: None,
                },
                // `cargo lambda watch` answers a function error with a 500 carrying its body.
                _ if status >= 500 => match service.raw().body().bytes() {
                    Some(body) if !body.is_empty() => classify_function_error(function, body),
                    _ => Error::Storage {
                        message,
                        retryable: true,
                    },
                },
                _ => Error::internal(message),
            }
        }
        _ => Error::Storage {
            message,
            retryable: true,
        },
    }
}

/// Returns the error a function's error body (`{"errorType": .., "errorMessage": ..}`) stands
/// for. The worker sets `errorType` to `Retryable.<kind>` or `Fatal.<kind>`; any other type is
/// the runtime's own (a crash, an out-of-memory kill, a timeout of the function), which a
/// retry on a fresh container may fix.
pub fn classify_function_error(function: &str, body: &[u8]) -> Error {
    let parsed: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let error_type = parsed["errorType"].as_str().unwrap_or("Unhandled");
    let error_message = parsed["errorMessage"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(500)]).into_owned());
    let message = format!("{function} failed ({error_type}): {error_message}");
    match error_type.split_once('.') {
        Some(("Fatal", "invalid_input")) => Error::invalid("worker request", message),
        Some(("Fatal", _)) => Error::internal(message),
        Some(("Retryable", "throttled")) => Error::Throttled {
            message,
            retry_after_ms: None,
        },
        Some(("Retryable", "timeout")) => Error::Timeout { message },
        _ => Error::Storage {
            message,
            retryable: true,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn function_errors_keep_their_kind() {
        let body = |error_type: &str| {
            serde_json::to_vec(&serde_json::json!({
                "errorType": error_type,
                "errorMessage": "what went wrong"
            }))
            .expect("json")
        };
        let fatal = classify_function_error("worker-1", &body("Fatal.invalid_input"));
        assert!(matches!(fatal, Error::InvalidInput { .. }), "{fatal:?}");
        assert!(!fatal.is_retryable());
        let bug = classify_function_error("worker-1", &body("Fatal.internal"));
        assert!(matches!(bug, Error::Internal { .. }), "{bug:?}");
        let throttled = classify_function_error("worker-1", &body("Retryable.throttled"));
        assert!(
            matches!(throttled, Error::Throttled { .. }),
            "{throttled:?}"
        );
        let late = classify_function_error("worker-1", &body("Retryable.timeout"));
        assert!(matches!(late, Error::Timeout { .. }), "{late:?}");
        let crash = classify_function_error("worker-1", &body("Runtime.ExitError"));
        assert!(crash.is_retryable(), "{crash:?}");
        assert!(crash.to_string().contains("Runtime.ExitError"), "{crash}");
        let garbage = classify_function_error("worker-1", b"not json");
        assert!(garbage.is_retryable() && garbage.to_string().contains("not json"));
    }
}
