//! The in-process adapter of the [`WorkerInvoker`] port: runs worker requests in this process,
//! by default through the same JSON payloads a Lambda invocation carries (the tests check they
//! survive it), or as values (the embedded mode). The embedded mode, `squash eval`, `squash
//! bench`, `squash cost` and the tests reach the workers through it.
//!
//! By default every worker shares one partition cache (one process holds them all). For cost
//! measurements, [`InProcessInvoker::with_containers`] gives each invocation a container as
//! Lambda would: the invocations of one function within a request each get their own (the
//! first of a request its warm one, the parts of a split batch new ones, cold the first time),
//! each with its own cache and cold start.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use tokio::sync::Semaphore;

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
    /// One container per concurrent invocation of a function, when measuring as Lambda runs.
    containers: Option<Arc<Containers>>,
}

/// One modelled Lambda container: its partition cache and its count of requests served.
#[derive(Debug, Clone)]
struct Container {
    cache: Arc<PartitionCache>,
    num_served: Arc<AtomicU64>,
}

/// The containers of every function, and which of them the current request has taken.
#[derive(Debug)]
struct Containers {
    cache_bytes: u64,
    by_function: Mutex<HashMap<String, Vec<Container>>>,
    /// The request being served, and per function how many of its invocations came so far.
    taken: Mutex<(String, HashMap<String, usize>)>,
    /// When set, invocations run one at a time (each timed alone); only for flat trees, whose
    /// nodes never wait on a child.
    one_at_a_time: Option<Semaphore>,
}

impl Containers {
    /// Returns the container the next invocation of `function` for `request_id` lands on: the
    /// n-th invocation of a function within a request gets its n-th container. Requests are
    /// expected one after another (the measurement harness sends them so).
    fn take(&self, function: &str, request_id: &str) -> Container {
        let ordinal = {
            let mut taken = self.taken.lock().unwrap_or_else(|e| e.into_inner());
            if taken.0 != request_id {
                *taken = (request_id.to_string(), HashMap::new());
            }
            let count = taken.1.entry(function.to_string()).or_insert(0);
            *count += 1;
            *count - 1
        };
        let mut by_function = self.by_function.lock().unwrap_or_else(|e| e.into_inner());
        let containers = by_function.entry(function.to_string()).or_default();
        while containers.len() <= ordinal {
            containers.push(Container {
                cache: Arc::new(PartitionCache::new(self.cache_bytes)),
                num_served: Arc::new(AtomicU64::new(0)),
            });
        }
        containers[ordinal].clone()
    }
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
            containers: None,
        }
    }

    /// Runs each invocation in a container of its own as Lambda would (see the module
    /// documentation), each container caching up to `cache_bytes`; with `one_at_a_time`,
    /// invocations wait for each other, so each one's time is its own (only for flat trees:
    /// a node that waited on a child would wait forever).
    pub fn with_containers(mut self, cache_bytes: u64, one_at_a_time: bool) -> Self {
        self.containers = Some(Arc::new(Containers {
            cache_bytes,
            by_function: Mutex::new(HashMap::new()),
            taken: Mutex::new((String::new(), HashMap::new())),
            one_at_a_time: one_at_a_time.then(|| Semaphore::new(1)),
        }));
        self
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
        self.worker_in(
            function,
            children,
            Arc::clone(&self.cache),
            Arc::clone(&self.num_served),
        )
    }

    /// Returns a worker of slot `function` over `cache`, counting its requests in
    /// `num_served`: the shared container, or one of [`InProcessInvoker::with_containers`].
    fn worker_in(
        &self,
        function: &str,
        children: Arc<dyn WorkerInvoker>,
        cache: Arc<PartitionCache>,
        num_served: Arc<AtomicU64>,
    ) -> WorkerService {
        let worker = WorkerService::with_counter(
            function,
            Arc::clone(&self.root),
            cache,
            children,
            num_served,
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
        let _turn;
        let worker = match &self.containers {
            None => self.worker(function, children),
            Some(containers) => {
                _turn = match &containers.one_at_a_time {
                    Some(semaphore) => Some(semaphore.acquire().await.map_err(|e| {
                        Error::internal(format!("waiting for a turn to run {function}: {e}"))
                    })?),
                    None => None,
                };
                let container = containers.take(function, &request.request_id);
                self.worker_in(function, children, container.cache, container.num_served)
            }
        };
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
