//! Writes after a build: checked requests, the write log, the unfolded rows searched beside
//! the partitions, and where each id lives in the partitions.
//!
//! An index's state at log position `n` is the newest build or compaction (its manifest says
//! which log positions it holds, `Manifest::folded_through`) plus the log entries after that,
//! through `n`. Pure: the commit protocol over a store lives in the service
//! (`squash_service::write_log`).

pub mod delta;
pub mod log;
pub mod request;
pub mod row_ids;

pub use delta::{Delta, DeltaLookup, DeltaRow};
pub use log::{log_key, parse_log_key, LogEntry, LOG_PREFIX};
pub use request::{
    check_fetch, DeleteRequest, FetchRequest, FetchResponse, FetchedRow, UpsertRequest, UpsertRow,
    WriteBatch, WriteResponse, MAX_WRITE_ROWS,
};
pub use row_ids::{DeadRows, RowIds};
