//! The storage port: one small trait over object stores, with local-folder, in-memory and S3
//! adapters, and [`store_for_location`] to pick one from an index location.
//!
//! Objects are immutable blobs addressed by `/`-separated keys relative to the store's root
//! (the index location). `put` is atomic: a reader sees the old object or the new one, never a
//! prefix of it. I/O only: no decoding, no search.
#![forbid(unsafe_code)]

use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;

use squash_core::error::Result;

#[cfg(any(test, feature = "testing"))]
pub mod conformance;
mod counting;
mod local;
mod memory;
mod prefixed;
#[cfg(feature = "s3")]
mod s3;

pub use counting::{CountingStore, StoreCounters};
pub use local::LocalStore;
pub use memory::MemoryStore;
pub use prefixed::PrefixedStore;
#[cfg(feature = "s3")]
pub use s3::{client_from_env, sdk_config_from_env, S3ReadTimeouts, S3Store};

/// A version of an object as its store names it, for conditional writes: S3's ETag, a content
/// checksum in the other adapters.
pub type ObjectTag = String;

/// When a conditional write ([`BlobStore::put_if`]) may happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutCondition {
    /// Only if no object has the key (S3 `If-None-Match: *`).
    Absent,
    /// Only if the object is still the version that was read (S3 `If-Match`).
    Matches(ObjectTag),
}

/// Returns the tag the local adapters give `bytes`: their length and CRC-32.
pub(crate) fn content_tag(bytes: &[u8]) -> ObjectTag {
    format!("{:x}-{:08x}", bytes.len(), crc32fast::hash(bytes))
}

/// Returns whether `condition` holds for the current tag (`None` when the object is absent).
pub(crate) fn condition_holds(condition: &PutCondition, current_opt: Option<&str>) -> bool {
    match (condition, current_opt) {
        (PutCondition::Absent, None) => true,
        (PutCondition::Matches(expected), Some(current)) => expected == current,
        _ => false,
    }
}

/// The `Conflict` a failed condition on `key` gives.
pub(crate) fn conflict(key: &str, condition: &PutCondition) -> squash_core::error::Error {
    squash_core::error::Error::Conflict {
        message: match condition {
            PutCondition::Absent => format!("'{key}' was created by another writer"),
            PutCondition::Matches(_) => {
                format!("'{key}' was replaced or removed by another writer since it was read")
            }
        },
    }
}

/// An object store rooted at one prefix.
#[async_trait]
pub trait BlobStore: Send + Sync + std::fmt::Debug {
    /// Returns the whole object, or `Error::NotFound`.
    async fn get(&self, key: &str) -> Result<Vec<u8>>;
    /// Returns the whole object and its tag, or `Error::NotFound`.
    async fn get_tagged(&self, key: &str) -> Result<(Vec<u8>, ObjectTag)>;
    /// Stores the object only if `condition` holds, checked atomically with the write against
    /// every other writer of the store; `Error::Conflict` when it does not hold.
    async fn put_if(&self, key: &str, bytes: Vec<u8>, condition: &PutCondition) -> Result<()>;
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
        return Err(squash_core::error::Error::invalid(
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
        return Err(squash_core::error::Error::invalid(
            "key",
            format!("'{key}' is not a valid object key"),
        ));
    }
    Ok(())
}

/// Splits an index location (`s3://bucket/prefix/name` or `folder/name`) into the root that
/// holds it and its name.
pub fn split_index_location(location: &str) -> Result<(String, String)> {
    let trimmed = location.trim_end_matches('/');
    let (root, name) = match trimmed.rsplit_once('/') {
        Some((root, name))
            if !root.is_empty() && !root.ends_with(':') && !root.ends_with("s3:/") =>
        {
            (root.to_string(), name.to_string())
        }
        Some(("", name)) => ("/".to_string(), name.to_string()),
        None => (".".to_string(), trimmed.to_string()),
        Some(_) => {
            return Err(squash_core::Error::invalid(
                "index location",
                format!("'{location}' names a bucket, not an index inside it"),
            ))
        }
    };
    squash_core::index::validate_index_name(&name).map_err(|_| {
        squash_core::Error::invalid(
            "index location",
            format!("the last part of '{location}' is not a valid index name (letters, digits, '.', '_', '-')"),
        )
    })?;
    Ok((root, name))
}

/// Returns the store behind an index location: an `S3Store` for `s3://bucket/prefix`
/// (client and read timeouts configured from the environment), a [`LocalStore`] for anything
/// else. A build without the `aws` feature refuses s3:// locations.
pub async fn store_for_location(location: &str) -> Result<Arc<dyn BlobStore>> {
    if location.starts_with("s3://") {
        #[cfg(feature = "s3")]
        {
            let timeouts = S3ReadTimeouts::from_env()?;
            let client = client_from_env().await;
            return Ok(Arc::new(
                S3Store::from_url(location, &client)?.with_read_timeouts(timeouts),
            ));
        }
        #[cfg(not(feature = "s3"))]
        return Err(squash_core::error::Error::invalid(
            "index location",
            format!("'{location}': this build has no S3 support (the `s3` feature of squash-storage is off)"),
        ));
    }
    if location.contains("://") {
        return Err(squash_core::error::Error::invalid(
            "index location",
            format!("'{location}': only local folders and s3:// locations are supported"),
        ));
    }
    Ok(Arc::new(LocalStore::new(location)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_locations_split_into_root_and_name() {
        let split = |l: &str| split_index_location(l).expect(l);
        assert_eq!(
            split("s3://bucket/prefix/glove"),
            ("s3://bucket/prefix".into(), "glove".into())
        );
        assert_eq!(
            split("s3://bucket/glove/"),
            ("s3://bucket".into(), "glove".into())
        );
        assert_eq!(split("/tmp/idx"), ("/tmp".into(), "idx".into()));
        assert_eq!(split("idx"), (".".into(), "idx".into()));
        assert!(split_index_location("s3://bucket").is_err());
    }
}
