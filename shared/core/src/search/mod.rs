//! Search: the coordinator stage (filter on quantized attributes, partition choice), the
//! worker stage (filter, Hamming prune, OSQ lower bounds, exact re-rank) and the merge
//! (SQUASH §2.2).
//!
//! Pure: the input is decoded index data plus protocol requests, the output is hits and
//! statistics. Fetching objects and invoking workers belong to the callers.

pub mod limits;
pub mod merge;
pub mod plan;
pub mod scan;
pub mod work;

pub use limits::{weighted_rows, RequestLimits};
pub use merge::merge_hits;
pub use plan::{plan_batch, plan_batch_with_dead_rows, plan_query, BatchPlan, QueryPlan};
pub use scan::{search_partition, search_partition_using, search_tasks, PreparedQuery, ScanMethod};
pub use work::{WorkModel, DEFAULT_WORK_MODEL};
