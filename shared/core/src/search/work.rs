//! How long a worker is expected to take for its share of a batch, from the plan alone: the
//! rows each query makes a partition's worker scan (`BatchPlan::task_rows`), the index's
//! dimension, and, for a container that must first read the partition, the object's size.
//!
//! The coordinator uses these estimates to split a slot's share of a large batch over
//! concurrent invocations (`squash_service::batch_split`); the work limit (`limits.rs`) counts
//! the same weighted rows. The estimates are deliberately simple and on the slow side: a
//! scan's own cost model
//! (`scan.rs`) picks between methods per partition with the partition in hand, which the
//! coordinator does not have.

use crate::protocol::WorkerQuery;

/// Exact mode scores every row that passes the filter by its lower bound and re-ranks in
/// bound order: about this many times the work of an approximate scan per row.
pub const EXACT_ROW_WEIGHT: u64 = 4;

/// Estimated milliseconds of worker time, and of a cold container's first read.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WorkModel {
    /// Nanoseconds per scanned row, besides its dimensions (filter, candidate bookkeeping).
    pub row_ns: f64,
    /// Nanoseconds per scanned row and dimension (4-bit estimates, the re-rank's share).
    pub row_dim_ns: f64,
    /// Nanoseconds per query and partition besides its rows: its lookup tables, filter and
    /// answer (per dimension).
    pub query_dim_ns: f64,
    /// Milliseconds a new container takes before it reads anything (runtime start, index
    /// version check).
    pub cold_start_ms: f64,
    /// Bytes per millisecond a cold container reads and decodes a partition at.
    pub load_bytes_per_ms: f64,
}

/// The model the services use, fitted to `squash cost --batch-sizes` on this project's
/// benchmark machine (x86-64 AVX2, one thread per invocation; BENCHMARKS.md): GloVe 50-d at
/// 40,000 and 208,000 scanned rows per query took 3.2 and 2.1 ns per row, Fashion-MNIST 784-d
/// at 2,300 and 15,000 rows 73 and 22 ns per row (its fixed cost per query and partition,
/// tables and the re-rank of `k x R` full vectors, weighs more with few rows). The fit, about
/// 1 + 0.027 x dim ns per row and 80 ns per dimension per query and partition, is taken 1.5
/// times: a Lambda vCPU (arm64, NEON kernels) is slower than this core, and an estimate on the
/// slow side only splits a batch into a few more parts than needed. The read rate is what one
/// S3 GET stream gives a Lambda function (about 90 MB/s), with the decode on top.
pub const DEFAULT_WORK_MODEL: WorkModel = WorkModel {
    row_ns: 1.5,
    row_dim_ns: 0.04,
    query_dim_ns: 120.0,
    cold_start_ms: 150.0,
    load_bytes_per_ms: 60_000.0,
};

impl WorkModel {
    /// Returns the milliseconds one query takes on one partition where it scans `rows` rows.
    pub fn query_ms(&self, query: &WorkerQuery, rows: u64, dim: usize) -> f64 {
        let row_ns = self.row_ns + self.row_dim_ns * dim as f64;
        let rows = weighted_rows(query, rows) as f64;
        (rows * row_ns + self.query_dim_ns * dim as f64) / 1e6
    }

    /// Returns the milliseconds a container without the partition takes to get it: its start
    /// and a whole read of `object_bytes` (a large share of a batch reads partitions whole).
    pub fn cold_load_ms(&self, object_bytes: u64) -> f64 {
        self.cold_start_ms + object_bytes as f64 / self.load_bytes_per_ms
    }
}

/// Returns the rows `query` scanning `rows` rows counts for in work estimates and limits:
/// exact mode counts each row [`EXACT_ROW_WEIGHT`] times.
pub fn weighted_rows(query: &WorkerQuery, rows: u64) -> u64 {
    if query.knobs.exact {
        rows.saturating_mul(EXACT_ROW_WEIGHT)
    } else {
        rows
    }
}

impl Default for WorkModel {
    fn default() -> Self {
        DEFAULT_WORK_MODEL
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{SearchKnobs, SearchOptions};

    fn query(exact: bool) -> WorkerQuery {
        let options = SearchOptions {
            exact,
            ..SearchOptions::default()
        };
        WorkerQuery {
            vector: vec![0.0; 4],
            k: 10,
            filter: None,
            include_attributes: false,
            knobs: SearchKnobs::resolve(&options).expect("knobs"),
            probe_radius: None,
        }
    }

    #[test]
    fn estimates_grow_with_rows_dimensions_exact_mode_and_bytes() {
        let model = DEFAULT_WORK_MODEL;
        let small = model.query_ms(&query(false), 1_000, 50);
        assert!(small > 0.0);
        assert!(model.query_ms(&query(false), 10_000, 50) > small);
        assert!(model.query_ms(&query(false), 1_000, 784) > small);
        let approximate = model.query_ms(&query(false), 100_000, 50);
        let exact = model.query_ms(&query(true), 100_000, 50);
        assert!(exact > 3.0 * approximate, "{exact} vs {approximate}");
        assert!(model.cold_load_ms(100 << 20) > model.cold_load_ms(1 << 20));
        assert!(model.cold_load_ms(0) >= model.cold_start_ms);
    }
}
