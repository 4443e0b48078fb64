//! Vector codecs: OSQ codes for lower bounds, sign codes for the Hamming pre-filter and 4-bit
//! fast-scan codes for the first-stage estimate.
//!
//! Pure: works on rotated `f32` rows and returns bytes/words; no I/O.

pub mod fastscan;
pub mod osq;
pub mod sign;

pub use fastscan::{FastScanCodes, FastScanTables};
pub use osq::{OsqLayout, OsqQuantizer};
