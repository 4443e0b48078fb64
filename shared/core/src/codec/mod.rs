//! Vector codecs: OSQ codes for lower bounds and sign codes for the Hamming pre-filter.
//!
//! Pure: works on rotated `f32` rows and returns bytes/words; no I/O.

pub mod osq;
pub mod sign;

pub use osq::{OsqLayout, OsqQuantizer};
