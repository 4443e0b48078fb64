//! Versioned, checksummed, block-compressed object format.
