//! Writing a build to a store: objects first, manifest last, then the removal of versions no
//! reader can still be using. The build itself is `squash_core::index::build`'s (pure); this
//! module streams its objects to the [`BlobStore`].
//!
//! Several builds of one index may run at once. Each writes its objects under its own version
//! prefix, and the manifest switch is a conditional write on the manifest it read when it
//! started (S3 `If-Match`, or `If-None-Match: *` for a new index): the first build to switch
//! wins; a later one fails with `Error::Conflict`, removes its own objects and changes nothing.
//! The clean-up after a switch removes only what no retained version reads, and only from
//! versions older than the one switched to (builds started earlier, killed or bound to lose,
//! versions past the retention), never a newer build still writing.
//!
//! Retention: a version replaced by a switch stays readable for the index's
//! `retain_versions_s` (a day by default) after the switch, with the log entries after its
//! snapshot, for readers in flight and for time travel (`as_of`). Each version keeps a copy of
//! its manifest beside its objects, naming the version it replaced and when it was published,
//! so the retained versions form a chain from the served manifest.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use squash_core::error::{Error, Result};
use squash_core::index::build::{
    build_index, BuildInput, BuildParams, BuildProgress, BuildSummary,
};
use squash_core::index::{version_manifest_key, Manifest, MANIFEST_KEY};
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
/// the switch, objects of older versions that no retained version reads are deleted (see the
/// module docs).
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
    if params.retain_versions_s.is_none() {
        params.retain_versions_s = previous_opt
            .as_ref()
            .and_then(|(manifest, _)| manifest.as_ref())
            .and_then(|manifest| manifest.retain_versions_s);
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
    let version = params.index_version.clone();
    publish_version(store, version, previous_opt, move |emit| {
        build_index(input, &params, progress.as_ref(), emit)
    })
    .await
}

/// Runs `emit_version` on a blocking thread, writes the objects it emits to `store` as they
/// come, then switches the manifest to version `version` on the condition that it is still
/// `previous_opt`. On any failure the objects written are removed and nothing changes.
pub async fn publish_version(
    store: Arc<dyn BlobStore>,
    version: String,
    previous_opt: Option<TaggedManifest>,
    emit_version: impl FnOnce(&mut dyn FnMut(&str, Vec<u8>) -> Result<()>) -> Result<BuildSummary>
        + Send
        + 'static,
) -> Result<BuildSummary> {
    let (previous_manifest_opt, switch_condition) = match previous_opt {
        Some((manifest_opt, tag)) => (manifest_opt, PutCondition::Matches(tag)),
        None => (None, PutCondition::Absent),
    };
    let previous_version_opt = previous_manifest_opt
        .as_ref()
        .map(|m| m.index_version.clone());
    let (sender, mut receiver) = tokio::sync::mpsc::channel::<(String, Vec<u8>)>(WRITE_QUEUE_DEPTH);
    let build = tokio::task::spawn_blocking(move || {
        emit_version(&mut |key, bytes| {
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
        (Ok(mut summary), None) => {
            summary.manifest.previous_version = previous_version_opt.clone();
            summary.manifest.published_unix_ms = unix_ms_now();
            switch_manifest(store.as_ref(), &summary.manifest, &switch_condition, &mut written)
                .await
                .map(|()| summary)
                .map_err(|error| match error {
                    Error::Conflict { .. } => Error::Conflict {
                        message: format!(
                            "another build of this index switched its manifest while this one (version {version}) ran; this build's objects were removed and the index serves the other build's version. Run the build again to replace it"
                        ),
                    },
                    other => other,
                })
        }
    };
    match outcome {
        Ok(summary) => {
            remove_unretained(store.as_ref(), &summary.manifest, previous_manifest_opt).await?;
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

/// Writes the copy of `manifest` beside its version's objects (recorded in `written`), then
/// switches the index's manifest to it on `condition`. The copy comes first: once the switch
/// is made, the version is found through the chain of `previous_version`s while it is kept.
async fn switch_manifest(
    store: &dyn BlobStore,
    manifest: &Manifest,
    condition: &PutCondition,
    written: &mut Vec<String>,
) -> Result<()> {
    let bytes = manifest.encode()?;
    let copy_key = version_manifest_key(&manifest.index_version);
    store.put(&copy_key, bytes.clone()).await?;
    written.push(copy_key);
    store.put_if(MANIFEST_KEY, bytes, condition).await
}

/// Milliseconds since the Unix epoch (the clock of `published_unix_ms`).
pub fn unix_ms_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}

/// How long the version replaced last is kept even past the retention: readers that opened
/// it just before the switch may still use it (a Lambda invocation runs at most 15 minutes).
const IN_FLIGHT_READS: std::time::Duration = std::time::Duration::from_secs(15 * 60);

/// Returns the versions still retained once `current` is served, newest first: `current`,
/// the version it replaced (for the retention, and at least [`IN_FLIGHT_READS`] after the
/// switch: readers that opened it just before still use it), and each older one replaced
/// less than `current.retain_versions()` ago ([`replaced_version`]). The chain ends at a
/// version without a readable manifest copy or past the retention.
pub async fn retained_versions(
    store: &dyn BlobStore,
    current: &Manifest,
    previous_opt: Option<Manifest>,
    now_unix_ms: u64,
) -> Result<Vec<Manifest>> {
    let retain_ms = current.retain_versions().as_millis() as u64;
    let mut chain = vec![current.clone()];
    let Some(previous) = previous_opt else {
        return Ok(chain);
    };
    // Without a switch now, the version replaced last goes too once no reader can still be
    // using it.
    let replaced_ms = now_unix_ms.saturating_sub(current.published_unix_ms);
    if current.published_unix_ms > 0
        && replaced_ms >= retain_ms.max(IN_FLIGHT_READS.as_millis() as u64)
    {
        return Ok(chain);
    }
    chain.push(previous);
    loop {
        let successor = &chain[chain.len() - 1];
        // A damaged copy ends the chain here as a missing one does: older versions are no
        // longer found, so a time-travel query stops here too.
        match replaced_version(store, successor, retain_ms, now_unix_ms).await {
            Ok(Some(manifest)) => chain.push(manifest),
            Ok(None) | Err(Error::Corrupt { .. }) => break,
            Err(other) => return Err(other),
        }
    }
    Ok(chain)
}

/// Returns the version `successor` replaced, read from the manifest copy beside its objects,
/// while it is retained: `successor` was published less than `retain_ms` before
/// `now_unix_ms`. `None` past that, when `successor` replaced nothing, or when the copy is
/// gone (removed, or written before copies were kept).
pub async fn replaced_version(
    store: &dyn BlobStore,
    successor: &Manifest,
    retain_ms: u64,
    now_unix_ms: u64,
) -> Result<Option<Manifest>> {
    let Some(version) = &successor.previous_version else {
        return Ok(None);
    };
    if now_unix_ms.saturating_sub(successor.published_unix_ms) >= retain_ms {
        return Ok(None);
    }
    let key = version_manifest_key(version);
    match store.get(&key).await {
        Ok(bytes) => Manifest::decode(&key, bytes).map(Some),
        Err(Error::NotFound { .. }) => Ok(None),
        Err(other) => Err(other),
    }
}

/// Removes what no retained version reads, after a switch to `current` from `previous_opt`:
/// objects of versions older than `current` that no retained manifest names (builds that lost
/// or were killed, versions past the retention), and log entries every retained version
/// already holds. Versions newer than `current` belong to builds still running and are left
/// alone; so is the newest folded log entry (a listing always finds the log's head).
async fn remove_unretained(
    store: &dyn BlobStore,
    current: &Manifest,
    previous_opt: Option<Manifest>,
) -> Result<usize> {
    let mut removed = 0usize;
    let retained = retained_versions(store, current, previous_opt, unix_ms_now()).await?;
    let referenced: HashSet<String> = retained.iter().flat_map(Manifest::object_keys).collect();
    for key in store.list("v").await? {
        let Some(version) = key
            .strip_prefix('v')
            .and_then(|rest| rest.split_once('/'))
            .map(|(version, _)| version)
        else {
            continue;
        };
        let keep = referenced.contains(&key)
            || version == current.index_version
            || !is_older_version(version, &current.index_version);
        if !keep {
            store.delete(&key).await?;
            removed += 1;
        }
    }
    // The oldest retained version applies the log entries after its own snapshot.
    let oldest_folded = retained
        .iter()
        .map(|manifest| manifest.folded_through)
        .min()
        .unwrap_or(0);
    for key in store.list(LOG_PREFIX).await? {
        if parse_log_key(&key).is_some_and(|seq| seq <= oldest_folded) {
            store.delete(&key).await?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// Removes what no version still retained reads (see [`remove_unretained`]) from the index in
/// `store`, without a switch: versions otherwise wait for the next build or compaction to be
/// removed once past the retention. Returns how many objects it removed. Safe beside a build
/// or compaction: a version switched to meanwhile names only its own objects and ones its
/// predecessor names, which stay.
pub async fn remove_expired_versions(store: &dyn BlobStore) -> Result<usize> {
    let bytes = store.get(MANIFEST_KEY).await?;
    let current = Manifest::decode(MANIFEST_KEY, bytes)?;
    let previous_opt = match &current.previous_version {
        None => None,
        Some(version) => {
            let key = version_manifest_key(version);
            match store.get(&key).await {
                Ok(bytes) => Some(Manifest::decode(&key, bytes)?),
                Err(Error::NotFound { .. }) => None,
                Err(other) => return Err(other),
            }
        }
    };
    // Without the replaced version's manifest its objects cannot be told apart: keep them.
    if current.previous_version.is_some() && previous_opt.is_none() {
        return Ok(0);
    }
    remove_unretained(store, &current, previous_opt).await
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
