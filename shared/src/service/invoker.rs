//! The port to worker functions: [`WorkerInvoker`], and [`InProcessInvoker`], which runs the
//! worker handler in this process (the embedded mode and tests).
//!
//! The Lambda adapter lives with the functions; this module knows nothing of Lambda.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use async_trait::async_trait;

use super::worker::WorkerService;
use crate::cache::PartitionCache;
use crate::error::{Error, Result};
use crate::protocol::{WorkerRequest, WorkerResponse};
use crate::storage::BlobStore;

/// Invokes one worker function with a request and returns its answer.
#[async_trait]
pub trait WorkerInvoker: Send + Sync + std::fmt::Debug {
    /// Invokes `function` and waits for its response. The caller bounds the wait.
    async fn invoke(&self, function: &str, request: &WorkerRequest) -> Result<WorkerResponse>;
}

/// Runs worker requests in this process, through the same JSON payloads a Lambda invocation
/// carries, with one partition cache for every slot (one process holds them all).
#[derive(Debug, Clone)]
pub struct InProcessInvoker {
    root: Arc<dyn BlobStore>,
    cache: Arc<PartitionCache>,
    num_served: Arc<AtomicU64>,
}

impl InProcessInvoker {
    /// Returns an invoker whose workers read indexes under `root` and share `cache`.
    pub fn new(root: Arc<dyn BlobStore>, cache: Arc<PartitionCache>) -> Self {
        InProcessInvoker {
            root,
            cache,
            num_served: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Returns the partition cache the workers share.
    pub fn cache(&self) -> &Arc<PartitionCache> {
        &self.cache
    }
}

impl InProcessInvoker {
    /// Runs `request` as worker `function` would, invoking its children through `children`
    /// (an invoker that wraps this one, to inject faults for instance).
    pub async fn run(
        &self,
        function: &str,
        request: &WorkerRequest,
        children: Arc<dyn WorkerInvoker>,
    ) -> Result<WorkerResponse> {
        let payload = serde_json::to_vec(request).map_err(|e| Error::Storage {
            message: format!("encoding the request for {function}: {e}"),
            retryable: false,
        })?;
        let worker = WorkerService::with_counter(
            function,
            Arc::clone(&self.root),
            Arc::clone(&self.cache),
            children,
            Arc::clone(&self.num_served),
        );
        let request: WorkerRequest = serde_json::from_slice(&payload)
            .map_err(|e| Error::invalid("worker request", e.to_string()))?;
        let response = worker.handle(request).await?;
        let payload = serde_json::to_vec(&response).map_err(|e| Error::Storage {
            message: format!("encoding the response of {function}: {e}"),
            retryable: false,
        })?;
        serde_json::from_slice(&payload).map_err(|e| Error::Storage {
            message: format!("decoding the response of {function}: {e}"),
            retryable: false,
        })
    }
}

#[async_trait]
impl WorkerInvoker for InProcessInvoker {
    async fn invoke(&self, function: &str, request: &WorkerRequest) -> Result<WorkerResponse> {
        self.run(function, request, Arc::new(self.clone())).await
    }
}
