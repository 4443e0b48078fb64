//! squash: serverless, quantization-based, attribute-filtered vector search.
//!
//! Crate map (pure modules do no I/O and no async; they work on bytes and slices):
//! - [`error`]: the one error enum.
//! - [`attributes`]: attribute schema and the raw attribute table.
//! - [`kernels`] (pure): Hamming, ADC lower bound, L2/IP; scalar reference + AVX2.
//! - [`filter`] (pure): filter parsing, exact evaluation, attribute quantization and the
//!   conservative evaluation on quantized attributes.
//! - [`linalg`] (pure): PCA and balanced k-means.
//! - [`codec`] (pure): OSQ (bit allocation, Lloyd boundaries, bit-packed planes), sign codes.
//! - [`container`] (pure): the versioned, checksummed, block-compressed object format.
//! - [`index`] (pure): index build pipeline, manifest, coordinator and segment objects.
//! - [`search`] (pure): coordinator stage (filter + partition choice), worker stage, merge.
//! - [`eval`] (pure): recall scored by distance against ground truth.
//! - [`cost`] (pure): dollars per query on AWS from measured usage and a dated price list.
//! - [`bench`] (pure, except `bench::run`): benchmark points, the settings squash sweeps,
//!   Markdown tables and PNG plots; `bench::run` drives `squash bench`.
//! - [`protocol`]: request/response types carried between coordinator and workers.
//! - [`input`] (I/O): readers for `.fvecs`, `.bvecs`, `.npy` and attribute CSV files.
//! - [`metric`]: distance metrics.
//! - [`workloads`] (I/O): workloads.json suites and the timed one-thread run of a workload.
//! - [`embedded`] (I/O): index writing and in-process search over a store.
//! - [`storage`] (I/O): the `BlobStore` port with local-folder and in-memory adapters.
//! - [`cache`] (I/O): memory-bounded LRU caches: objects and byte ranges over a `BlobStore`,
//!   and decoded partitions for warm workers.
//! - [`service`] (I/O): the coordinator and worker services the Lambda functions wrap, the
//!   invocation tree, the HTTP routes and the `WorkerInvoker` port.
//! - [`client`] (I/O): a typed client of the HTTP API (optionally SigV4-signed).
//! - [`synth`] (pure, except `synth::files`): synthetic clustered data sets with attributes,
//!   filtered workloads and exact ground truth, for scale runs.
//! - [`usage`] (I/O): measures invocations, billed time, S3 GETs and bytes per query on the
//!   serverless code path in process, and prices them with [`cost`].
#![warn(missing_docs)]

pub mod attributes;
pub mod bench;
pub mod cache;
pub mod client;
pub mod codec;
pub mod container;
pub mod cost;
pub mod embedded;
pub mod error;
pub mod eval;
pub mod filter;
pub mod index;
pub mod input;
pub mod kernels;
pub mod linalg;
pub mod metric;
pub mod protocol;
pub mod search;
pub mod service;
pub mod storage;
pub mod synth;
pub mod usage;
pub mod workloads;

pub use error::{Error, Result};
