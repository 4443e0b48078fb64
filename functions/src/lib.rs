//! The AWS Lambda side of squash: configuration from the environment, the Lambda adapter of
//! the `WorkerInvoker` port, the event handlers of the coordinator, worker and compactor
//! functions, and the fault hook local tests use.
//!
//! The search logic lives in `squash_service`; this crate only translates between Lambda
//! events and those services, so each `main.rs` is a single call.
#![forbid(unsafe_code)]

pub mod compactor_handler;
pub mod config;
pub mod coordinator_handler;
pub mod envelope;
pub mod faults;
pub mod lambda_invoker;
pub mod worker_handler;

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
/// margin to send the answer, capped at `timeout_ms`. A deadline that is not a plausible
/// epoch time (`cargo lambda watch` sends its 600,000 ms timeout itself) is ignored.
pub fn remaining_budget(deadline_epoch_ms: u64, timeout_ms: u64) -> std::time::Duration {
    const ANSWER_MARGIN_MS: u64 = 200;
    /// 2001-09-09 in milliseconds since the epoch: anything smaller is not an epoch time.
    const PLAUSIBLE_EPOCH_MS: u64 = 1_000_000_000_000;
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let lambda_left_ms = deadline_epoch_ms
        .saturating_sub(now_ms)
        .saturating_sub(ANSWER_MARGIN_MS);
    let budget_ms = if deadline_epoch_ms < PLAUSIBLE_EPOCH_MS {
        timeout_ms
    } else {
        lambda_left_ms.min(timeout_ms)
    };
    std::time::Duration::from_millis(budget_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_follow_the_lambda_deadline_and_ignore_implausible_ones() {
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_millis() as u64;
        assert_eq!(remaining_budget(600_000, 5_000).as_millis(), 5_000);
        assert_eq!(remaining_budget(0, 5_000).as_millis(), 5_000);
        let budget = remaining_budget(now_ms + 2_000, 5_000).as_millis();
        assert!((1_700..=1_800).contains(&budget), "{budget}");
        assert_eq!(remaining_budget(now_ms + 60_000, 5_000).as_millis(), 5_000);
        assert_eq!(remaining_budget(now_ms - 1, 5_000).as_millis(), 0);
    }
}
