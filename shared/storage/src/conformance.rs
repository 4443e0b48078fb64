//! The behaviour every `BlobStore` adapter must share, as one async check that adapter tests
//! (unit tests here, integration tests against a real S3 server) run.
//!
//! Compiled for tests and under the `testing` feature only; it panics on the first mismatch,
//! so it must never be called from library code.

use super::BlobStore;
use squash_core::error::Error;

/// Runs the shared checks against `store`, which must start empty; panics on the first
/// mismatch with a message naming the check.
pub async fn run(store: &dyn BlobStore) {
    assert!(
        matches!(store.get("missing").await, Err(Error::NotFound { .. })),
        "get of a missing key is NotFound"
    );
    assert!(
        matches!(
            store.get_range("missing", 0..1).await,
            Err(Error::NotFound { .. })
        ),
        "ranged get of a missing key is NotFound"
    );
    store
        .put("a/b.bin", b"hello world".to_vec())
        .await
        .expect("put");
    assert_eq!(store.get("a/b.bin").await.expect("get"), b"hello world");
    assert_eq!(
        store.get_range("a/b.bin", 6..11).await.expect("range"),
        b"world"
    );
    assert_eq!(
        store.get_range("a/b.bin", 0..1).await.expect("first byte"),
        b"h"
    );
    assert!(
        store
            .get_range("a/b.bin", 11..11)
            .await
            .expect("empty range at the end")
            .is_empty(),
        "empty range at the end"
    );
    assert!(
        store.get_range("a/b.bin", 6..12).await.is_err(),
        "range past the end"
    );
    assert!(
        store.get_range("a/b.bin", 20..30).await.is_err(),
        "range starting past the end"
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
    assert!(store.get("a/c.bin").await.expect("get empty").is_empty());
    store.put("z.bin", b"z".to_vec()).await.expect("put");
    assert_eq!(
        store.list("a/").await.expect("list"),
        vec!["a/b.bin", "a/c.bin"]
    );
    assert_eq!(store.list("").await.expect("list").len(), 3);
    assert!(store.list("nothing/").await.expect("list").is_empty());
    store.delete("a/b.bin").await.expect("delete");
    store.delete("a/b.bin").await.expect("delete again");
    assert_eq!(store.list("a/").await.expect("list"), vec!["a/c.bin"]);
    assert!(store.put("../escape", vec![]).await.is_err());
    assert!(store.put("/abs", vec![]).await.is_err());
}
