//! The storage port: one small trait over object stores, with a local-folder and an in-memory
//! adapter (an S3 adapter implements the same trait).
//!
//! Objects are immutable blobs addressed by `/`-separated keys relative to the store's root
//! (the index location). `put` is atomic: a reader sees the old object or the new one, never a
//! prefix of it. I/O only: no decoding, no search.

use std::ops::Range;

use async_trait::async_trait;

use crate::error::Result;

mod counting;
mod local;
mod memory;

pub use counting::{CountingStore, StoreCounters};
pub use local::LocalStore;
pub use memory::MemoryStore;

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

/// Runs the behaviour every adapter must share; adapter tests call it.
#[cfg(test)]
pub(crate) async fn conformance(store: &dyn BlobStore) {
    use crate::error::Error;
    assert!(matches!(
        store.get("missing").await,
        Err(Error::NotFound { .. })
    ));
    store
        .put("a/b.bin", b"hello world".to_vec())
        .await
        .expect("put");
    assert_eq!(store.get("a/b.bin").await.expect("get"), b"hello world");
    assert_eq!(
        store.get_range("a/b.bin", 6..11).await.expect("range"),
        b"world"
    );
    assert!(
        store.get_range("a/b.bin", 6..12).await.is_err(),
        "range past the end"
    );
    store
        .put("a/b.bin", b"replaced".to_vec())
        .await
        .expect("overwrite");
    assert_eq!(store.get("a/b.bin").await.expect("get"), b"replaced");
    store
        .put("a/c.bin", Vec::new())
        .await
        .expect("empty object");
    store.put("z.bin", b"z".to_vec()).await.expect("put");
    assert_eq!(
        store.list("a/").await.expect("list"),
        vec!["a/b.bin", "a/c.bin"]
    );
    assert_eq!(store.list("").await.expect("list").len(), 3);
    store.delete("a/b.bin").await.expect("delete");
    store.delete("a/b.bin").await.expect("delete again");
    assert_eq!(store.list("a/").await.expect("list"), vec!["a/c.bin"]);
    assert!(store.put("../escape", vec![]).await.is_err());
    assert!(store.put("/abs", vec![]).await.is_err());
}
