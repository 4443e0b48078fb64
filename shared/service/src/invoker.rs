//! The port to worker functions: [`WorkerInvoker`]. Its adapters: the in-process one
//! ([`crate::in_process::InProcessInvoker`]), and the Lambda one, which lives with the
//! functions; this module knows nothing of either.

use async_trait::async_trait;

use squash_core::error::Result;
use squash_core::protocol::{WorkerRequest, WorkerResponse};

/// Invokes one worker function with a request and returns its answer.
#[async_trait]
pub trait WorkerInvoker: Send + Sync + std::fmt::Debug {
    /// Invokes `function` and waits for its response. The caller bounds the wait.
    async fn invoke(&self, function: &str, request: &WorkerRequest) -> Result<WorkerResponse>;
}
