//! The in-process adapter of the [`WorkerInvoker`] port: runs worker requests in this process,
//! by default through the same JSON payloads a Lambda invocation carries (the tests check they
//! survive it), or as values (the embedded mode). The embedded mode, `squash eval`, `squash
//! bench`, `squash cost` and the tests reach the workers through it.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use async_trait::async_trait;

use squash_core::error::{Error, Result};
use squash_core::protocol::{WorkerRequest, WorkerResponse};
use squash_storage::BlobStore;

use crate::invoker::WorkerInvoker;
use crate::partition_cache::PartitionCache;
use crate::worker_service::WorkerService;

/// Runs worker requests in this process, with one partition cache for every slot (one process
/// holds them all).
#[derive(Debug, Clone)]
pub struct InProcessInvoker {
    root: Arc<dyn BlobStore>,
    cache: Arc<PartitionCache>,
    num_served: Arc<AtomicU64>,
    scan_inline: bool,
    /// Whether requests and responses go through JSON, as a Lambda invocation carries them.
    round_trip_payloads: bool,
}

impl InProcessInvoker {
    /// Returns an invoker whose workers read indexes under `root` and share `cache`.
    pub fn new(root: Arc<dyn BlobStore>, cache: Arc<PartitionCache>) -> Self {
        InProcessInvoker {
            root,
            cache,
            num_served: Arc::new(AtomicU64::new(0)),
            scan_inline: false,
            round_trip_payloads: true,
        }
    }

    /// Hands requests and responses to the workers as values, without the JSON round trip
    /// that checks they survive a Lambda payload: the embedded mode, where no payload exists.
    pub fn without_payload_round_trip(mut self) -> Self {
        self.round_trip_payloads = false;
        self
    }

    /// Runs the workers' scans inline (see [`WorkerService::with_inline_scans`]).
    pub fn with_inline_scans(mut self) -> Self {
        self.scan_inline = true;
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
        if self.scan_inline {
            worker.with_inline_scans()
        } else {
            worker
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
        let worker = self.worker(function, children);
        if !self.round_trip_payloads {
            return worker.handle(request.clone()).await;
        }
        let payload = serde_json::to_vec(request)
            .map_err(|e| Error::internal(format!("encoding the request for {function}: {e}")))?;
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
