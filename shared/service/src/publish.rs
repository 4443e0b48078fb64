//! Writing a build to a store: objects first, manifest last, then the removal of versions no
//! reader can still be using. The build itself is `squash_core::index::build`'s (pure); this
//! module streams its objects to the [`BlobStore`].
//!
//! Several builds of one index may run at once. Each writes its objects under its own version
//! prefix, and the manifest switch is a conditional write on the manifest it read when it
//! started (S3 `If-Match`, or `If-None-Match: *` for a new index): the first build to switch
//! wins; a later one fails with `Error::Conflict`, removes its own objects and changes nothing.
//! The clean-up after a switch removes only versions older than the one switched to (builds
//! started earlier, killed or bound to lose), never a newer build still writing.

use std::sync::Arc;

use squash_core::error::{Error, Result};
use squash_core::index::build::{
    build_index, BuildInput, BuildParams, BuildProgress, BuildSummary,
};
use squash_core::index::{Manifest, MANIFEST_KEY};
use squash_core::writes::{parse_log_key, LOG_PREFIX};
use squash_storage::{BlobStore, ObjectTag, PutCondition};

use crate::write_log;

/// Objects in flight between the build thread and the writer: bounds the memory a build
/// holds beyond its input to a couple of segments.
const WRITE_QUEUE_DEPTH: usize = 2;

/// Builds an index from `input` and writes it to `store`: all objects, then the manifest.
///
/// On any error the objects of the new version are deleted and the previous manifest (if any)
/// stays in place, so no half-built index is ever visible. When another build switched the
/// manifest since this one started, this one fails with `Error::Conflict` the same way. After
/// the switch, objects of versions older than the new one are deleted, except the previous
/// one (kept for readers that opened it just before the switch).
pub async fn write_index(
    store: Arc<dyn BlobStore>,
    input: BuildInput,
    mut params: BuildParams,
    progress: Arc<dyn BuildProgress + Send>,
) -> Result<BuildSummary> {
    let previous_opt = read_manifest_tagged(store.as_ref()).await?;
    // The build replaces what the log holds so far; writes committed after this point are
    // applied over it.
    if params.folded_through == 0 {
        let listed = write_log::list_after(store.as_ref(), "", 0).await?;
        let previous_folded = previous_opt
            .as_ref()
            .and_then(|(manifest, _)| manifest.as_ref().map(|m| m.folded_through))
            .unwrap_or(0);
        params.folded_through = listed.last().copied().unwrap_or(0).max(previous_folded);
    }
    write_version(store, input, params, progress, previous_opt).await
}

/// The manifest of an index read with its tag: `None` when there is none; an inner `None`
/// when it exists but cannot be decoded (a build still replaces it).
pub type TaggedManifest = (Option<Manifest>, ObjectTag);

/// Reads the manifest of the index in `store` with its tag, for a later conditional switch.
pub async fn read_manifest_tagged(store: &dyn BlobStore) -> Result<Option<TaggedManifest>> {
    match store.get_tagged(MANIFEST_KEY).await {
        Ok((bytes, tag)) => Ok(Some((Manifest::decode(MANIFEST_KEY, bytes).ok(), tag))),
        Err(Error::NotFound { .. }) => Ok(None),
        Err(other) => Err(other),
    }
}

/// Builds a version from `input` and switches the manifest to it on the condition that the
/// manifest is still `previous_opt` (absent: that there is none). See [`write_index`].
pub async fn write_version(
    store: Arc<dyn BlobStore>,
    input: BuildInput,
    params: BuildParams,
    progress: Arc<dyn BuildProgress + Send>,
    previous_opt: Option<TaggedManifest>,
) -> Result<BuildSummary> {
    let (previous_manifest_opt, switch_condition) = match previous_opt {
        Some((manifest_opt, tag)) => (manifest_opt, PutCondition::Matches(tag)),
        None => (None, PutCondition::Absent),
    };
    let previous_version_opt = previous_manifest_opt
        .as_ref()
        .map(|m| m.index_version.clone());
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
            match store
                .put_if(MANIFEST_KEY, manifest_bytes, &switch_condition)
                .await
            {
                Ok(()) => Ok(summary),
                Err(Error::Conflict { .. }) => Err(Error::Conflict {
                    message: format!(
                        "another build of this index switched its manifest while this one (version {version}) ran; this build's objects were removed and the index serves the other build's version. Run the build again to replace it"
                    ),
                }),
                Err(other) => Err(other),
            }
        }
    };
    match outcome {
        Ok(summary) => {
            remove_stale_versions(store.as_ref(), &version, previous_version_opt.as_deref())
                .await?;
            if let Some(previous) = &previous_manifest_opt {
                remove_folded_log_entries(store.as_ref(), previous.folded_through).await?;
            }
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

/// Deletes the log entries through `folded_through`: the previous version already held them,
/// so no reader of the current or the previous version reads them again. Entries after it stay
/// (readers of the previous version apply them), and the newest folded entry with them, so a
/// listing always finds the log's head.
async fn remove_folded_log_entries(store: &dyn BlobStore, folded_through: u64) -> Result<()> {
    for key in store.list(LOG_PREFIX).await? {
        if parse_log_key(&key).is_some_and(|seq| seq <= folded_through) {
            store.delete(&key).await?;
        }
    }
    Ok(())
}

/// Deletes the objects of versions older than `current`, except `previous` (readers that
/// opened it just before the switch still use it). Versions newer than `current` belong to
/// builds still running, which may yet switch to them.
async fn remove_stale_versions(
    store: &dyn BlobStore,
    current: &str,
    previous_opt: Option<&str>,
) -> Result<()> {
    for key in store.list("v").await? {
        let Some(version) = key
            .strip_prefix('v')
            .and_then(|rest| rest.split_once('/'))
            .map(|(version, _)| version)
        else {
            continue;
        };
        let keep = version == current
            || previous_opt == Some(version)
            || !is_older_version(version, current);
        if !keep {
            store.delete(&key).await?;
        }
    }
    Ok(())
}

/// Whether version `a` was started before version `b`. Versions are the build's start time
/// in hexadecimal nanoseconds, so numeric order is start order; a version that is not a hex
/// number is taken as older (it cannot be a build running now).
fn is_older_version(a: &str, b: &str) -> bool {
    match (u128::from_str_radix(a, 16), u128::from_str_radix(b, 16)) {
        (Ok(a), Ok(b)) => a < b,
        (Err(_), Ok(_)) => true,
        (Ok(_), Err(_)) => false,
        (Err(_), Err(_)) => a < b,
    }
}

#[cfg(test)]
mod tests {
    use super::is_older_version;

    #[test]
    fn versions_order_by_start_time() {
        assert!(is_older_version("18ee09ff1c650a09", "18ee09ff37ccf940"));
        assert!(!is_older_version("18ee09ff37ccf940", "18ee09ff1c650a09"));
        assert!(!is_older_version("a2", "a2"));
        // Longer hex is later, not lexicographically smaller.
        assert!(is_older_version("ff", "100"));
        // A name that is no start time counts as older than one that is.
        assert!(is_older_version("golden", "a1"));
        assert!(!is_older_version("a1", "golden"));
    }
}
