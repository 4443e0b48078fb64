//! The in-process adapter of the [`WorkerInvoker`] port: runs worker requests in this process
//! through the same JSON payloads a Lambda invocation carries. The embedded mode, `squash
//! eval`, `squash bench` and the tests reach the workers through it.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use async_trait::async_trait;

use squash_core::error::{Error, Result};
use squash_core::protocol::{WorkerRequest, WorkerResponse};
use squash_storage::BlobStore;

use crate::invoker::WorkerInvoker;
use crate::partition_cache::PartitionCache;
use crate::worker_service::WorkerService;

/// Runs worker requests in this process, through the same JSON payloads a Lambda invocation
/// carries, with one partition cache for every slot (one process holds them all).
#[derive(Debug, Clone)]
pub struct InProcessInvoker {
    root: Arc<dyn BlobStore>,
    cache: Arc<PartitionCache>,
    num_served: Arc<AtomicU64>,
    search_pool_opt: Option<Arc<rayon::ThreadPool>>,
}

impl InProcessInvoker {
    /// Returns an invoker whose workers read indexes under `root` and share `cache`.
    pub fn new(root: Arc<dyn BlobStore>, cache: Arc<PartitionCache>) -> Self {
        InProcessInvoker {
            root,
            cache,
            num_served: Arc::new(AtomicU64::new(0)),
            search_pool_opt: None,
        }
    }

    /// Runs the workers' scans in `search_pool` (see [`WorkerService::with_search_pool`]).
    pub fn with_search_pool(mut self, search_pool: Arc<rayon::ThreadPool>) -> Self {
        self.search_pool_opt = Some(search_pool);
        self
    }

    /// Returns a worker of this process as slot `function` would run it, invoking its children
    /// through `children`.
    pub fn worker(&self, function: &str, children: Arc<dyn WorkerInvoker>) -> WorkerService {
        let worker = WorkerService::with_counter(
            function,
            Arc::clone(&self.root),
            Arc::clone(&self.cache),
            children,
            Arc::clone(&self.num_served),
        );
        match &self.search_pool_opt {
            Some(pool) => worker.with_search_pool(Arc::clone(pool)),
            None => worker,
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
        let payload = serde_json::to_vec(request)
            .map_err(|e| Error::internal(format!("encoding the request for {function}: {e}")))?;
        let worker = self.worker(function, children);
        let request: WorkerRequest = serde_json::from_slice(&payload)
            .map_err(|e| Error::invalid("worker request", e.to_string()))?;
        let response = worker.handle(request).await?;
        let payload = serde_json::to_vec(&response)
            .map_err(|e| Error::internal(format!("encoding the response of {function}: {e}")))?;
        serde_json::from_slice(&payload)
            .map_err(|e| Error::internal(format!("decoding the response of {function}: {e}")))
    }
}

#[async_trait]
impl WorkerInvoker for InProcessInvoker {
    async fn invoke(&self, function: &str, request: &WorkerRequest) -> Result<WorkerResponse> {
        self.run(function, request, Arc::new(self.clone())).await
    }
}
