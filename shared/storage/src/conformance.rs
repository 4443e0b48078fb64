//! The behaviour every `BlobStore` adapter must share, as one async check that adapter tests
//! (unit tests here, integration tests against a real S3 server) run.
//!
//! Compiled for tests and under the `testing` feature only; it panics on the first mismatch,
//! so it must never be called from library code.

use std::sync::Arc;

use super::{BlobStore, PutCondition};
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
    run_conditional(store).await;
}

/// The conditional-write checks: create-if-absent and compare-and-swap on the tag read.
async fn run_conditional(store: &dyn BlobStore) {
    let is_conflict =
        |result: &squash_core::error::Result<()>| matches!(result, Err(Error::Conflict { .. }));
    assert!(
        matches!(store.get_tagged("cas/m").await, Err(Error::NotFound { .. })),
        "get_tagged of a missing key is NotFound"
    );
    store
        .put_if("cas/m", b"one".to_vec(), &PutCondition::Absent)
        .await
        .expect("create if absent");
    let again = store
        .put_if("cas/m", b"two".to_vec(), &PutCondition::Absent)
        .await;
    assert!(
        is_conflict(&again),
        "create over an existing object is a Conflict: {again:?}"
    );
    let (bytes, tag) = store.get_tagged("cas/m").await.expect("get tagged");
    assert_eq!(bytes, b"one");
    store
        .put_if(
            "cas/m",
            b"three".to_vec(),
            &PutCondition::Matches(tag.clone()),
        )
        .await
        .expect("swap on the tag read");
    let stale = store
        .put_if("cas/m", b"four".to_vec(), &PutCondition::Matches(tag))
        .await;
    assert!(
        is_conflict(&stale),
        "a swap on a stale tag is a Conflict: {stale:?}"
    );
    assert_eq!(store.get("cas/m").await.expect("get"), b"three");
    let (_, tag) = store.get_tagged("cas/m").await.expect("get tagged");
    store.delete("cas/m").await.expect("delete");
    let gone = store
        .put_if("cas/m", b"five".to_vec(), &PutCondition::Matches(tag))
        .await;
    assert!(
        is_conflict(&gone),
        "a swap on a removed object is a Conflict: {gone:?}"
    );
    assert!(
        matches!(store.get("cas/m").await, Err(Error::NotFound { .. })),
        "a failed swap writes nothing"
    );
}

/// Starts `writers` concurrent create-if-absent writes of `key` (each with its own bytes) and
/// returns how many succeeded: 1 for a store that enforces the condition atomically. The
/// object then holds the winner's bytes.
pub async fn concurrent_creations(store: Arc<dyn BlobStore>, key: &str, writers: usize) -> usize {
    let mut tasks = tokio::task::JoinSet::new();
    for writer in 0..writers {
        let store = Arc::clone(&store);
        let key = key.to_string();
        tasks.spawn(async move {
            let bytes = format!("writer {writer}").into_bytes();
            store
                .put_if(&key, bytes.clone(), &PutCondition::Absent)
                .await
                .map(|()| bytes)
        });
    }
    let mut winners = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        match joined.expect("writer task") {
            Ok(bytes) => winners.push(bytes),
            Err(Error::Conflict { .. }) => {}
            Err(other) => panic!("a conditional create failed otherwise: {other}"),
        }
    }
    if let [winner] = winners.as_slice() {
        assert_eq!(
            &store.get(key).await.expect("get"),
            winner,
            "the winner's bytes are stored"
        );
    }
    winners.len()
}
