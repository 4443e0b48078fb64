//! The index: what a build produces and how its objects are laid out.
//!
//! An index is a manifest plus one coordinator object and one segment per partition, all in
//! the [`crate::format`] format. Objects of one build share a version prefix; the manifest,
//! written last, names the version, so a reader never sees a half-built index and a rebuild
//! switches atomically.
//!
//! ```text
//! <index>/manifest.sqsh                          kind Manifest: block "manifest" (JSON)
//! <index>/v<version>/coordinator.sqsh            kind Coordinator: centroids, attribute codes
//! <index>/v<version>/partition-00000.sqsh        kind Segment: one per partition, rows grouped
//!                                                by fine cluster (`clusters.rs`)
//! <index>/v<version>/row-ids.sqsh                kind RowIds: every row's id, in coordinator
//!                                                row order (`crate::writes::RowIds`)
//! <index>/log/00000000000000000001.sqsh          kind LogEntry: one per committed write
//!                                                (`crate::writes::log`); the manifest's
//!                                                `folded_through` says which the version holds
//! ```
//!
//! A segment's blocks, in storage order (`objects.rs`, `PartitionData::encode`):
//!
//! ```text
//! | ids.0 attributes.*.0 vectors.0 | ids.1 ... vectors.1 | ... |   rows, chunk by chunk
//! | pca.* osq.planes sign_codes sign_norms fastscan.codes |       whole-partition codes
//! | meta clusters.sizes clusters.centroids fastscan.lows fastscan.steps | toc | trailer |
//!   '-- the head a ranged reader takes with the toc in one read from the end (`ranged.rs`)
//! ```
//!
//! Pure: encodes to and decodes from bytes; storage lives in [`squash_storage`].

pub mod build;
pub mod clusters;
pub mod names;
pub mod objects;
pub mod ranged;

pub use build::{build_index, BuildInput, BuildParams, BuildProgress, BuildSummary};
pub use clusters::FineClusters;
pub use names::{validate_index_name, MAX_INDEX_NAME_LEN};
pub use objects::{
    segment_rows_per_chunk, version_manifest_key, ClusterDirectory, CoordinatorData, Manifest,
    PartitionData, PartitionDrift, PartitionEntry, QuantizedCodes, DEFAULT_RETAIN_VERSIONS_S,
    MANIFEST_KEY,
};
