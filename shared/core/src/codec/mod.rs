//! Vector codecs: OSQ codes for lower bounds, sign codes for the Hamming pre-filter, 4-bit
//! fast-scan codes for the first-stage estimate and 8-bit row codes for scattered candidates.
//!
//! Pure: works on rotated `f32` rows and returns bytes/words; no I/O.

pub mod fastscan;
pub mod osq;
pub mod sign;
pub mod sq8;

pub use fastscan::{FastScanCodes, FastScanTables};
pub use osq::{OsqLayout, OsqQuantizer};
pub use sq8::{Sq8Query, Sq8Rows};
