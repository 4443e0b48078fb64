//! The `squash` command's library: everything the command line does besides parsing its
//! arguments (`main.rs`).
//!
//! - [`input_files`]: reads vector and attribute files for a build (the parsers are core's).
//! - [`workloads`]: workloads.json suites and the timed one-thread run of a workload, through
//!   the embedded index (the served code path).
//! - [`bench`]: `squash bench`: builds, sweeps of settings, Markdown tables and PNG plots.
//! - [`synth`]: synthetic clustered data sets with attributes, workloads and exact ground
//!   truth, for scale runs.
//! - [`usage`] and [`cost`]: invocations, billed time and S3 reads per query measured on the
//!   serverless code path in process, priced from a dated AWS price list.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod batch_curve;
pub mod bench;
pub mod cost;
pub mod input_files;
pub mod synth;
pub mod usage;
pub mod workloads;
pub mod write_eval;
pub mod writes;
