//! The write log over a [`BlobStore`]: committing a write at the next free slot, and reading
//! the entries after a position.
//!
//! A write claims slot `n + 1` with a create-only conditional put (S3 `If-None-Match: *`), so
//! two writers never both own a slot and the log has no gaps: a writer only tries `n + 1` after
//! seeing `n`. A writer that loses a slot reads it: when the slot holds the writer's own entry
//! (a put whose answer was lost and that was retried), the write is done; otherwise it tries
//! the next slot. Nothing is visible before the put that claims a slot, so a writer killed at
//! any point leaves either the whole write or nothing.

use std::time::{SystemTime, UNIX_EPOCH};

use squash_core::error::{Error, Result};
use squash_core::writes::{log_key, parse_log_key, LogEntry, WriteBatch, LOG_PREFIX};
use squash_storage::{BlobStore, PutCondition};

/// Slots a write tries before giving up: each lost slot means another write committed, so this
/// many in a row means more concurrent writers than one log serves well.
const MAX_SLOT_ATTEMPTS: usize = 512;

/// Attempts of one slot's put when the store fails in a way a retry may fix.
const MAX_PUT_RETRIES: usize = 4;

/// Returns the key of log slot `seq` of the index whose keys start with `prefix` (its name and
/// a slash under a root store, or nothing in a store of its own).
fn slot_key(prefix: &str, seq: u64) -> String {
    format!("{prefix}{}", log_key(seq))
}

/// Returns the positions of the log entries of the index at `prefix` after `after`, sorted, from a listing.
pub async fn list_after(store: &dyn BlobStore, prefix: &str, after: u64) -> Result<Vec<u64>> {
    let log_prefix = format!("{prefix}{LOG_PREFIX}");
    let mut positions: Vec<u64> = within_timeout(&log_prefix, store.list(&log_prefix))
        .await?
        .iter()
        .filter_map(|key| key.strip_prefix(prefix))
        .filter_map(parse_log_key)
        .filter(|&seq| seq > after)
        .collect();
    positions.sort_unstable();
    Ok(positions)
}

/// Longest wait for one read of the log (a slot, or the listing): a store that holds a read
/// back (SeaweedFS does, for a key whose writer died mid-PUT) fails the request with a
/// retryable timeout instead of holding it until the function's own timeout.
const LOG_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Runs one read of the log within [`LOG_READ_TIMEOUT`].
async fn within_timeout<T>(
    what: &str,
    read: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    tokio::time::timeout(LOG_READ_TIMEOUT, read)
        .await
        .unwrap_or_else(|_| {
            Err(Error::Timeout {
                message: format!(
                    "reading {what} took longer than {} s",
                    LOG_READ_TIMEOUT.as_secs()
                ),
            })
        })
}

/// Reads log slot `seq` of the index at `prefix`; `None` when it is free.
pub async fn read_slot(store: &dyn BlobStore, prefix: &str, seq: u64) -> Result<Option<LogEntry>> {
    let key = slot_key(prefix, seq);
    match within_timeout(&key, store.get(&key)).await {
        Ok(bytes) => Ok(Some(LogEntry::decode(&key, bytes, seq)?)),
        Err(Error::NotFound { .. }) => Ok(None),
        Err(other) => Err(other),
    }
}

/// Returns the entries of the index at `prefix` after position `after`, in order, through the last committed
/// one. With `list_first` (a reader that knows nothing newer than `after`) the log is listed
/// once and the listed entries read; either way, slots are then read one by one until a free
/// one (a write that committed after the listing).
pub async fn read_after(
    store: &dyn BlobStore,
    prefix: &str,
    after: u64,
    list_first: bool,
) -> Result<Vec<LogEntry>> {
    let mut entries = Vec::new();
    let mut next = after + 1;
    if list_first {
        let listed = list_after(store, prefix, after).await?;
        for (expected, &seq) in (after + 1..).zip(&listed) {
            if seq != expected {
                return Err(Error::corrupt(
                    format!("{prefix}{LOG_PREFIX}"),
                    0,
                    format!("the write log has no entry {expected} but has {seq}: entries after a snapshot are never removed"),
                ));
            }
        }
        // Read the listed entries a few at a time: a cold reader of a long log would otherwise
        // wait one round trip per entry.
        for chunk in listed.chunks(16) {
            let reads = chunk.iter().map(|&seq| read_slot(store, prefix, seq));
            for (seq, read) in chunk.iter().zip(futures::future::join_all(reads).await) {
                let entry = read?.ok_or_else(|| {
                    Error::corrupt(
                        slot_key(prefix, *seq),
                        0,
                        "a listed log entry is gone: entries after a snapshot are never removed",
                    )
                })?;
                entries.push(entry);
            }
        }
        next = after + 1 + listed.len() as u64;
    }
    while let Some(entry) = read_slot(store, prefix, next).await? {
        entries.push(entry);
        next += 1;
    }
    Ok(entries)
}

/// Commits `batch` (rows of dimension `dim`) to the log of the index at `prefix` at the next
/// free slot after `head_hint` (the newest position the caller knows of), and returns its
/// position: the write's token. `folded_through` is what the served version holds (from a
/// manifest read for this write). `request_id` must be unique to this write.
///
/// A slot is claimed only after its predecessor is seen: when the hint's slot is not in the
/// store (the index was deleted and built again, or entries before a compaction were removed),
/// the head is found again by listing, so no position is ever written twice or skipped.
pub async fn append(
    store: &dyn BlobStore,
    prefix: &str,
    batch: WriteBatch,
    dim: usize,
    request_id: &str,
    head_hint: u64,
    folded_through: u64,
) -> Result<u64> {
    let mut head = head_hint.max(folded_through);
    if head > folded_through && read_slot(store, prefix, head).await?.is_none() {
        let listed = list_after(store, prefix, folded_through).await?;
        head = listed.last().copied().unwrap_or(0).max(folded_through);
    }
    let created_unix_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let mut entry = LogEntry {
        seq: head + 1,
        request_id: request_id.to_string(),
        created_unix_ms,
        dim,
        batch,
    };
    for _ in 0..MAX_SLOT_ATTEMPTS {
        let key = slot_key(prefix, entry.seq);
        let bytes = entry.encode()?;
        let mut retries = 0;
        let outcome = loop {
            match store
                .put_if(&key, bytes.clone(), &PutCondition::Absent)
                .await
            {
                Err(error) if error.is_retryable() && retries < MAX_PUT_RETRIES => {
                    // The put may or may not have landed; trying again is safe: a second
                    // create of the slot fails, and the slot is then read below.
                    retries += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(20 << retries)).await;
                }
                other => break other,
            }
        };
        match outcome {
            Ok(()) => return Ok(entry.seq),
            Err(Error::Conflict { .. }) => {
                // Taken: by this very write (an earlier attempt whose answer was lost), or by
                // another writer, whose entry pushes this one to the next slot.
                if let Some(holder) = read_slot(store, prefix, entry.seq).await? {
                    if holder.request_id == entry.request_id {
                        return Ok(entry.seq);
                    }
                }
                entry.seq += 1;
            }
            Err(other) => return Err(other),
        }
    }
    Err(Error::Throttled {
        message: format!(
            "index at '{prefix}': {MAX_SLOT_ATTEMPTS} log slots in a row were taken by other writers; the write was not committed"
        ),
        retry_after_ms: Some(1000),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use squash_core::writes::WriteBatch;
    use squash_storage::MemoryStore;
    use std::sync::Arc;

    fn batch(id: u64) -> WriteBatch {
        WriteBatch {
            delete_ids: vec![id],
            ..WriteBatch::default()
        }
    }

    #[tokio::test]
    async fn concurrent_appends_leave_a_gap_free_log_with_every_write_once() {
        let store: Arc<dyn BlobStore> = Arc::new(MemoryStore::new());
        let mut tasks = Vec::new();
        for writer in 0..8u64 {
            let store = Arc::clone(&store);
            tasks.push(tokio::spawn(async move {
                let mut tokens = Vec::new();
                for i in 0..25u64 {
                    let id = writer * 1000 + i;
                    // Stale hints on purpose: every writer starts from 0.
                    let token =
                        append(store.as_ref(), "ix/", batch(id), 2, &format!("w{id}"), 0, 0)
                            .await
                            .unwrap();
                    tokens.push((token, id));
                }
                tokens
            }));
        }
        let mut acknowledged = Vec::new();
        for task in tasks {
            acknowledged.extend(task.await.unwrap());
        }
        let entries = read_after(store.as_ref(), "ix/", 0, true).await.unwrap();
        assert_eq!(entries.len(), 200);
        for (position, entry) in entries.iter().enumerate() {
            assert_eq!(entry.seq, position as u64 + 1);
        }
        acknowledged.sort_unstable();
        let logged: Vec<(u64, u64)> = entries
            .iter()
            .map(|e| (e.seq, e.batch.delete_ids[0]))
            .collect();
        assert_eq!(
            acknowledged, logged,
            "each acknowledged write at its token, once"
        );
    }

    #[tokio::test]
    async fn a_retried_write_finds_its_own_slot() {
        let store = MemoryStore::new();
        let first = append(&store, "ix/", batch(1), 2, "same-request", 0, 0)
            .await
            .unwrap();
        let again = append(&store, "ix/", batch(1), 2, "same-request", 0, 0)
            .await
            .unwrap();
        assert_eq!((first, again), (1, 1));
        let other = append(&store, "ix/", batch(2), 2, "other", 0, 0)
            .await
            .unwrap();
        assert_eq!(other, 2);
        // Reading from a known position sees only what came after it.
        let after_one = read_after(&store, "ix/", 1, false).await.unwrap();
        assert_eq!(after_one.len(), 1);
        assert_eq!(after_one[0].request_id, "other");
        // A hint past the log (its index deleted and built again): the head is listed.
        let after_wipe = append(&store, "ix/", batch(3), 2, "third", 40, 0)
            .await
            .unwrap();
        assert_eq!(after_wipe, 3);
        // A hint from before a compaction that removed the entries it knew: no reuse.
        let after_compaction = append(&store, "ix/", batch(4), 2, "fourth", 1, 9)
            .await
            .unwrap();
        assert_eq!(after_compaction, 10);
    }
}
