//! Index build.
