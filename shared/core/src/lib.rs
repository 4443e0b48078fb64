//! squash's pure core: everything that turns bytes into an index and an index plus a request
//! into hits, with no I/O of any kind.
//!
//! Invariants the crate graph keeps: no tokio, no AWS SDK, no HTTP, no file system; no
//! `unsafe` (the SIMD kernels live in `squash-kernels`). Callers bring bytes in and take bytes
//! out; the storage, service and CLI crates do the I/O around it.
//!
//! - [`error`]: the one error enum of the workspace, whose kinds drive retry policy.
//! - [`attributes`]: attribute schema and the raw attribute table.
//! - [`metric`]: distance metrics.
//! - [`filter`]: filter parsing, exact evaluation, attribute quantization and the
//!   conservative evaluation on quantized attributes.
//! - [`linalg`]: PCA and balanced k-means.
//! - [`codec`]: OSQ (bit allocation, Lloyd boundaries, bit-packed planes), sign codes.
//! - [`format`]: the versioned, checksummed, block-compressed object format (`.sqsh`).
//! - [`index`]: the build pipeline, the manifest, coordinator and segment objects, index names.
//! - [`input`]: parsers of vector files (`.fvecs`, `.bvecs`, `.npy`) and attribute CSV text.
//! - [`search`]: the query's stages: `plan` (filter on quantized attributes, partition
//!   choice), `scan` (one partition: filter, Hamming prune, OSQ bounds, re-rank), `merge`.
//! - [`eval`]: recall scored by distance against ground truth.
//! - [`protocol`]: the request and response types of the API and of coordinator → worker
//!   invocations.
#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod attributes;
pub mod codec;
pub mod error;
pub mod eval;
pub mod filter;
pub mod format;
pub mod index;
pub mod input;
pub mod linalg;
pub mod metric;
pub mod protocol;
pub mod search;
pub mod writes;

pub use error::{Error, Result};
