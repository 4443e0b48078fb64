//! The storage port: one small trait over object stores, with local-folder, in-memory and S3
//! adapters, and [`store_for_location`] to pick one from an index location.
//!
//! Objects are immutable blobs addressed by `/`-separated keys relative to the store's root
//! (the index location). `put` is atomic: a reader sees the old object or the new one, never a
//! prefix of it. I/O only: no decoding, no search.

use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;

use crate::error::Result;

#[cfg(any(test, feature = "testing"))]
pub mod conformance;
mod counting;
mod local;
mod memory;
mod prefixed;
mod s3;

pub use counting::{CountingStore, StoreCounters};
pub use local::LocalStore;
pub use memory::MemoryStore;
pub use prefixed::PrefixedStore;
pub use s3::{client_from_env, sdk_config_from_env, S3ReadTimeouts, S3Store};

/// An object store rooted at one prefix.
#[async_trait]
pub trait BlobStore: Send + Sync + std::fmt::Debug {
    /// Returns the whole object, or `Error::NotFound`.
    async fn get(&self, key: &str) -> Result<Vec<u8>>;
    /// Returns bytes `range` of the object; a range past the end is an error.
    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Vec<u8>>;
    /// Stores the object atomically, replacing any previous one.
    async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<()>;
    /// Returns the keys starting with `prefix`, sorted.
    async fn list(&self, prefix: &str) -> Result<Vec<String>>;
    /// Deletes the object; deleting a missing object succeeds.
    async fn delete(&self, key: &str) -> Result<()>;
    /// Returns a short description of where the store points, for messages.
    fn describe(&self) -> String;
}

/// Checks that `range` lies inside an object of `size` bytes.
pub(crate) fn check_range(key: &str, range: &Range<u64>, size: u64) -> Result<()> {
    if range.start > range.end || range.end > size {
        return Err(crate::error::Error::invalid(
            "range",
            format!(
                "{}..{} is outside object '{key}' of {size} bytes",
                range.start, range.end
            ),
        ));
    }
    Ok(())
}

/// Checks that a key is relative, `/`-separated and free of `.`/`..` segments.
pub(crate) fn validate_key(key: &str) -> Result<()> {
    let bad = key.is_empty()
        || key.starts_with('/')
        || key.contains('\\')
        || key
            .split('/')
            .any(|segment| segment.is_empty() || segment == "." || segment == "..");
    if bad {
        return Err(crate::error::Error::invalid(
            "key",
            format!("'{key}' is not a valid object key"),
        ));
    }
    Ok(())
}

/// Returns the store behind an index location: an [`S3Store`] for `s3://bucket/prefix`
/// (client and read timeouts configured from the environment), a [`LocalStore`] for anything
/// else.
pub async fn store_for_location(location: &str) -> Result<Arc<dyn BlobStore>> {
    if location.starts_with("s3://") {
        let timeouts = S3ReadTimeouts::from_env()?;
        let client = client_from_env().await;
        return Ok(Arc::new(
            S3Store::from_url(location, &client)?.with_read_timeouts(timeouts),
        ));
    }
    if location.contains("://") {
        return Err(crate::error::Error::invalid(
            "index location",
            format!("'{location}': only local folders and s3:// locations are supported"),
        ));
    }
    Ok(Arc::new(LocalStore::new(location)))
}
