//! The serverless runtime's logic, free of Lambda: where a query is served.
//!
//! - [`coordinator_service`]: the coordinator function's logic: open an index, plan a batch,
//!   fan it out, merge the answers, count what it cost.
//! - [`worker_service`]: the worker function's logic: one node of the invocation tree that
//!   loads and scans its partitions.
//! - [`fanout`]: spawning children, deadline shares, retries and merging their answers, used by
//!   both services above.
//! - [`invocation_tree`]: the pure planner that shapes the tree of worker invocations.
//! - [`batch_split`]: the pure planner that splits a large batch's share of a slot over
//!   concurrent invocations, from the engine's work estimates.
//! - [`invoker`]: the [`WorkerInvoker`] port; [`in_process`]: its in-process adapter.
//! - [`partition_cache`]: the memory-bounded cache of decoded partitions a warm worker keeps.
//! - [`http_routes`]: the HTTP API (API Gateway and function URL events) over plain types.
//! - [`embedded`]: the embedded mode, which runs both services in this process.
//! - [`publish`]: writing a built index to a store (objects first, manifest last).
//! - [`write_log`]: committing upserts and deletes to an index's write log, and reading it.
//! - [`compaction`]: folding the log's writes into a new version of the partitions.
//! - `decoding`: decoding objects (segments, coordinator objects, row ids) off the async
//!   threads, for all of the above.
//!
//! The Lambda functions wrap these services in thin `main.rs` files; the embedded mode, `squash
//! eval`, `squash bench` and the tests run the same services in-process through
//! [`InProcessInvoker`]. I/O goes through the [`squash_storage::BlobStore`] and
//! [`WorkerInvoker`] ports only.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod batch_split;
pub mod compaction;
pub mod coordinator_service;
mod decoding;
pub mod embedded;
pub mod fanout;
pub mod http_routes;
pub mod in_process;
pub mod invocation_tree;
pub mod invoker;
pub mod partition_cache;
pub mod publish;
pub mod worker_service;
pub mod write_log;

pub use batch_split::{plan_invocations, InvocationPlan, SplitSettings};
pub use compaction::{
    compact_index, compact_index_with, CompactionOptions, CompactionSummary,
    DEFAULT_MAX_DRIFT_SHARE,
};
pub use coordinator_service::{CoordinatorService, ServiceConfig};
pub use embedded::EmbeddedIndex;
pub use http_routes::{
    handle_direct, handle_direct_payload, handle_http, HttpResponse, JsonPayload,
};
pub use in_process::InProcessInvoker;
pub use invocation_tree::{slot_of, tasks_by_slot, tree_of_slots, TreeShape};
pub use invoker::WorkerInvoker;
pub use partition_cache::{default_capacity_bytes, PartitionCache};
pub use publish::{remove_expired_versions, write_index};
pub use worker_service::{partition_object_key, WorkerService};
