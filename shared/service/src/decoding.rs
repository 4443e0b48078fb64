//! Decoding objects off the async threads: a decode is CPU work (checksums, decompression,
//! milliseconds to seconds for a segment) that would stall every request sharing the runtime.

use squash_core::error::{Error, Result};
use squash_core::index::PartitionData;

/// Runs `decode` on a blocking thread.
pub(crate) async fn decode_blocking<T: Send + 'static>(
    decode: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(decode)
        .await
        .map_err(|e| Error::internal(format!("decode task failed: {e}")))?
}

/// Decodes the segment object `key`, which must hold partition `expected`.
pub(crate) async fn decode_partition(
    key: String,
    bytes: Vec<u8>,
    expected: u32,
) -> Result<PartitionData> {
    decode_blocking(move || decode_checked(&key, bytes, expected)).await
}

/// As [`decode_partition`], for a partition a worker caches for many queries: its 8-bit row
/// codes are built with the decode (milliseconds, on the blocking thread) rather than by the
/// first query that scores from them.
pub(crate) async fn decode_partition_for_search(
    key: String,
    bytes: Vec<u8>,
    expected: u32,
) -> Result<PartitionData> {
    decode_blocking(move || {
        let partition = decode_checked(&key, bytes, expected)?;
        partition.sq8_rows();
        Ok(partition)
    })
    .await
}

fn decode_checked(key: &str, bytes: Vec<u8>, expected: u32) -> Result<PartitionData> {
    let partition = PartitionData::decode(key, bytes)?;
    if partition.partition != expected {
        return Err(Error::corrupt(
            key,
            0,
            format!("holds partition {}, not {expected}", partition.partition),
        ));
    }
    Ok(partition)
}
