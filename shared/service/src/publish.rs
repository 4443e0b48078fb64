//! Writing a build to a store: objects first, manifest last, then the removal of versions no
//! reader can still be using. The build itself is `squash_core::index::build`'s (pure); this
//! module streams its objects to the [`BlobStore`].

use std::sync::Arc;

use squash_core::error::{Error, Result};
use squash_core::index::build::{
    build_index, BuildInput, BuildParams, BuildProgress, BuildSummary,
};
use squash_core::index::{Manifest, MANIFEST_KEY};
use squash_storage::BlobStore;

/// Objects in flight between the build thread and the writer: bounds the memory a build
/// holds beyond its input to a couple of segments.
const WRITE_QUEUE_DEPTH: usize = 2;

/// Builds an index from `input` and writes it to `store`: all objects, then the manifest.
///
/// On any error the objects of the new version are deleted and the previous manifest (if any)
/// stays in place, so no half-built index is ever visible. After the switch, objects of
/// versions older than the previous one are deleted (the previous one is kept for readers
/// that opened it just before the switch).
pub async fn write_index(
    store: Arc<dyn BlobStore>,
    input: BuildInput,
    params: BuildParams,
    progress: Arc<dyn BuildProgress + Send>,
) -> Result<BuildSummary> {
    let previous_version_opt = match store.get(MANIFEST_KEY).await {
        Ok(bytes) => Manifest::decode(MANIFEST_KEY, bytes)
            .ok()
            .map(|m| m.index_version),
        Err(Error::NotFound { .. }) => None,
        Err(other) => return Err(other),
    };
    let version = params.index_version.clone();
    let (sender, mut receiver) = tokio::sync::mpsc::channel::<(String, Vec<u8>)>(WRITE_QUEUE_DEPTH);
    let build = tokio::task::spawn_blocking(move || {
        build_index(input, &params, progress.as_ref(), &mut |key, bytes| {
            sender
                .blocking_send((key.to_string(), bytes))
                .map_err(|_| Error::internal("the object writer stopped".to_string()))
        })
    });
    let mut written: Vec<String> = Vec::new();
    let mut write_error_opt: Option<Error> = None;
    while let Some((key, bytes)) = receiver.recv().await {
        if write_error_opt.is_some() {
            continue;
        }
        match store.put(&key, bytes).await {
            Ok(()) => written.push(key),
            Err(error) => {
                write_error_opt = Some(error);
                receiver.close();
            }
        }
    }
    let build_result = build
        .await
        .map_err(|e| Error::internal(format!("build task failed: {e}")))?;
    let outcome = match (build_result, write_error_opt) {
        (_, Some(write_error)) => Err(write_error),
        (Err(build_error), None) => Err(build_error),
        (Ok(summary), None) => {
            let manifest_bytes = summary.manifest.encode()?;
            store
                .put(MANIFEST_KEY, manifest_bytes)
                .await
                .map(|()| summary)
        }
    };
    match outcome {
        Ok(summary) => {
            remove_stale_versions(store.as_ref(), &version, previous_version_opt.as_deref())
                .await?;
            Ok(summary)
        }
        Err(error) => {
            for key in written {
                let _ = store.delete(&key).await;
            }
            Err(error)
        }
    }
}

async fn remove_stale_versions(
    store: &dyn BlobStore,
    current: &str,
    previous_opt: Option<&str>,
) -> Result<()> {
    let current_prefix = format!("v{current}/");
    let previous_prefix_opt = previous_opt.map(|v| format!("v{v}/"));
    for key in store.list("v").await? {
        let keep = key.starts_with(&current_prefix)
            || previous_prefix_opt
                .as_deref()
                .is_some_and(|prefix| key.starts_with(prefix));
        if !keep {
            store.delete(&key).await?;
        }
    }
    Ok(())
}
