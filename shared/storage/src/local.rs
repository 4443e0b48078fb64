//! A store over a local folder: one file per object.
//!
//! `put` writes a uniquely named temporary file beside the target, syncs it and renames it
//! over the target, so a crash or a concurrent reader never sees a partial object.
//!
//! `put_if` does the same while holding an exclusive lock on a lock file beside the target
//! (`<name>.cas-lock`, never listed), and checks the condition under it: conditional writes of
//! one key exclude each other across processes. Plain `put`s take no lock.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

use super::{
    check_range, condition_holds, conflict, content_tag, validate_key, BlobStore, ObjectTag,
    PutCondition,
};
use squash_core::error::{Error, Result};

/// Distinguishes temporary files of concurrent writers in one process.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Temporary files carry this suffix; `list` skips them.
const TEMP_SUFFIX: &str = ".partial";
/// Lock files of conditional writes carry this suffix; `list` skips them.
const LOCK_SUFFIX: &str = ".cas-lock";

/// A [`BlobStore`] over a local folder.
#[derive(Debug, Clone)]
pub struct LocalStore {
    root: PathBuf,
}

impl LocalStore {
    /// Returns a store rooted at `root` (created on the first `put`).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        LocalStore { root: root.into() }
    }

    /// Returns the root folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path_of(&self, key: &str) -> Result<PathBuf> {
        validate_key(key)?;
        Ok(self.root.join(key))
    }
}

fn not_found_or_io(path: &Path, key: &str, error: std::io::Error) -> Error {
    if error.kind() == std::io::ErrorKind::NotFound {
        Error::NotFound {
            what: format!("object '{key}' in {}", path.display()),
        }
    } else {
        Error::io(path, error)
    }
}

/// Returns the path beside `path` whose file name is `path`'s followed by `suffix`.
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("object");
    path.with_file_name(format!("{name}{suffix}"))
}

/// Returns a temporary path beside `path`, unique among this process's writers.
fn temp_path_of(path: &Path) -> PathBuf {
    let unique = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    sibling(
        path,
        &format!(".{}.{unique}{TEMP_SUFFIX}", std::process::id()),
    )
}

/// Writes `bytes` to `path` through `temp` if `condition` holds, all under the key's lock.
fn put_if_locked(
    path: &Path,
    key: &str,
    bytes: &[u8],
    condition: &PutCondition,
    temp: &Path,
) -> Result<()> {
    use std::io::Write;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    }
    let lock_path = sibling(path, LOCK_SUFFIX);
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| Error::io(&lock_path, e))?;
    // Released when `lock` is dropped, after the rename.
    lock.lock().map_err(|e| Error::io(&lock_path, e))?;
    let current_opt = match std::fs::read(path) {
        Ok(current) => Some(content_tag(&current)),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
        Err(error) => return Err(Error::io(path, error)),
    };
    if !condition_holds(condition, current_opt.as_deref()) {
        return Err(conflict(key, condition));
    }
    let write = || -> std::io::Result<()> {
        let mut file = std::fs::File::create(temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(temp, path)
    };
    if let Err(error) = write() {
        let _ = std::fs::remove_file(temp);
        return Err(Error::io(path, error));
    }
    drop(lock);
    Ok(())
}

#[async_trait]
impl BlobStore for LocalStore {
    async fn get(&self, key: &str) -> Result<Vec<u8>> {
        let path = self.path_of(key)?;
        tokio::fs::read(&path)
            .await
            .map_err(|e| not_found_or_io(&path, key, e))
    }

    async fn get_tagged(&self, key: &str) -> Result<(Vec<u8>, ObjectTag)> {
        let bytes = self.get(key).await?;
        let tag = content_tag(&bytes);
        Ok((bytes, tag))
    }

    async fn put_if(&self, key: &str, bytes: Vec<u8>, condition: &PutCondition) -> Result<()> {
        let path = self.path_of(key)?;
        if key.ends_with(LOCK_SUFFIX) || key.ends_with(TEMP_SUFFIX) {
            return Err(Error::invalid(
                "key",
                format!("'{key}' ends like the store's own files"),
            ));
        }
        let key = key.to_string();
        let condition = condition.clone();
        let temp = temp_path_of(&path);
        tokio::task::spawn_blocking(move || put_if_locked(&path, &key, &bytes, &condition, &temp))
            .await
            .map_err(|e| Error::internal(format!("conditional write task failed: {e}")))?
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Vec<u8>> {
        let path = self.path_of(key)?;
        let mut file = tokio::fs::File::open(&path)
            .await
            .map_err(|e| not_found_or_io(&path, key, e))?;
        let size = file
            .metadata()
            .await
            .map_err(|e| Error::io(&path, e))?
            .len();
        check_range(key, &range, size)?;
        file.seek(std::io::SeekFrom::Start(range.start))
            .await
            .map_err(|e| Error::io(&path, e))?;
        let mut buffer = vec![0u8; (range.end - range.start) as usize];
        file.read_exact(&mut buffer)
            .await
            .map_err(|e| Error::io(&path, e))?;
        Ok(buffer)
    }

    async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<()> {
        let path = self.path_of(key)?;
        if let Some(parent) = path.parent() {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(|e| Error::io(parent, e))?;
        }
        let temp = temp_path_of(&path);
        let write = async {
            let mut file = tokio::fs::File::create(&temp).await?;
            file.write_all(&bytes).await?;
            file.sync_all().await?;
            drop(file);
            tokio::fs::rename(&temp, &path).await
        };
        if let Err(error) = write.await {
            let _ = tokio::fs::remove_file(&temp).await;
            return Err(Error::io(&path, error));
        }
        Ok(())
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let mut keys = Vec::new();
        let mut pending = vec![self.root.clone()];
        while let Some(folder) = pending.pop() {
            let mut entries = match tokio::fs::read_dir(&folder).await {
                Ok(entries) => entries,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io(&folder, e)),
            };
            while let Some(entry) = entries
                .next_entry()
                .await
                .map_err(|e| Error::io(&folder, e))?
            {
                let path = entry.path();
                let file_type = entry.file_type().await.map_err(|e| Error::io(&path, e))?;
                if file_type.is_dir() {
                    pending.push(path);
                    continue;
                }
                let Ok(relative) = path.strip_prefix(&self.root) else {
                    continue;
                };
                let key = relative.to_string_lossy().replace('\\', "/");
                if key.starts_with(prefix)
                    && !key.ends_with(TEMP_SUFFIX)
                    && !key.ends_with(LOCK_SUFFIX)
                {
                    keys.push(key);
                }
            }
        }
        keys.sort();
        Ok(keys)
    }

    async fn delete(&self, key: &str) -> Result<()> {
        let path = self.path_of(key)?;
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(&path, e)),
        }
    }

    fn describe(&self) -> String {
        self.root.display().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn local_store_conforms() {
        let folder = tempfile::tempdir().expect("tempdir");
        let store = LocalStore::new(folder.path().join("index"));
        super::super::conformance::run(&store).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_conditional_creates_have_one_winner() {
        let folder = tempfile::tempdir().expect("tempdir");
        let store: std::sync::Arc<dyn BlobStore> =
            std::sync::Arc::new(LocalStore::new(folder.path()));
        for round in 0..20 {
            let key = format!("m-{round}");
            let winners =
                super::super::conformance::concurrent_creations(store.clone(), &key, 8).await;
            assert_eq!(winners, 1, "round {round}");
        }
        // Lock files are never listed.
        assert_eq!(store.list("").await.expect("list").len(), 20);
    }
}
