//! The AWS Lambda side of squash: configuration from the environment, the Lambda adapter of
//! the `WorkerInvoker` port, the event handlers of the coordinator and worker functions, and
//! the fault hook local tests use.
//!
//! The search logic lives in `shared::service`; this crate only translates between Lambda
//! events and those services, so each `main.rs` is a single call.

pub mod config;
pub mod coordinator;
pub mod faults;
pub mod invoker;
pub mod worker;

/// Sets up structured JSON logs on stdout (CloudWatch keeps them), filtered by `RUST_LOG`
/// (default `info`).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(false)
        .without_time()
        .try_init();
}

/// Returns the time left before `deadline_epoch_ms` (the Lambda context deadline), minus a
/// margin to send the answer, capped at `timeout_ms`.
pub fn remaining_budget(deadline_epoch_ms: u64, timeout_ms: u64) -> std::time::Duration {
    const ANSWER_MARGIN_MS: u64 = 200;
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let lambda_left_ms = deadline_epoch_ms
        .saturating_sub(now_ms)
        .saturating_sub(ANSWER_MARGIN_MS);
    let budget_ms = if deadline_epoch_ms == 0 {
        timeout_ms
    } else {
        lambda_left_ms.min(timeout_ms)
    };
    std::time::Duration::from_millis(budget_ms)
}
