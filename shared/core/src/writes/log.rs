//! The write log of an index: one immutable object per committed write, at a gap-free sequence
//! number that is also the write's token.
//!
//! ```text
//! <index>/log/00000000000000000001.sqsh     kind LogEntry: blocks "entry" (JSON), "ids", "vectors"
//! <index>/log/00000000000000000002.sqsh
//! ```
//!
//! A writer claims slot `n + 1` only after seeing slot `n`, with a create-only conditional put;
//! the loser of a race reads the slot (its own write may have landed on a retried request) and
//! tries the next one. Pure: encoding, decoding and key names; the commit lives in the service.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::format::{f32s_to_le_bytes, le_bytes_to_f32s, le_bytes_to_u64s, u64s_to_le_bytes};
use crate::format::{Container, ContainerWriter, ObjectKind};
use crate::writes::request::WriteBatch;

/// Prefix of the log inside an index prefix.
pub const LOG_PREFIX: &str = "log/";

/// Returns the key (relative to the index prefix) of log slot `seq`: zero-padded to 20 digits,
/// so that key order is sequence order.
pub fn log_key(seq: u64) -> String {
    format!("{LOG_PREFIX}{seq:020}.sqsh")
}

/// Returns the sequence number of a log key (relative to the index prefix), if it is one.
pub fn parse_log_key(key: &str) -> Option<u64> {
    let digits = key.strip_prefix(LOG_PREFIX)?.strip_suffix(".sqsh")?;
    (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

/// One committed write.
#[derive(Debug, Clone, PartialEq)]
pub struct LogEntry {
    /// Its slot in the log: the write's token.
    pub seq: u64,
    /// The request that wrote it: a writer whose conditional put lost finds its own write by it.
    pub request_id: String,
    /// When the writer committed it, milliseconds since the Unix epoch (writer's clock; for
    /// humans, never for ordering).
    pub created_unix_ms: u64,
    /// Vector dimension of the upserted rows.
    pub dim: usize,
    /// The write.
    pub batch: WriteBatch,
}

/// The JSON block of a log entry.
#[derive(Debug, Serialize, Deserialize)]
struct EntryMeta {
    seq: u64,
    request_id: String,
    created_unix_ms: u64,
    dim: usize,
    attributes: Vec<Map<String, Value>>,
    delete_ids: Vec<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    delete_filter: Option<Value>,
}

impl LogEntry {
    /// Returns the entry's object bytes.
    pub fn encode(&self) -> Result<Vec<u8>> {
        let meta = EntryMeta {
            seq: self.seq,
            request_id: self.request_id.clone(),
            created_unix_ms: self.created_unix_ms,
            dim: self.dim,
            attributes: self.batch.attributes.clone(),
            delete_ids: self.batch.delete_ids.clone(),
            delete_filter: self.batch.delete_filter.clone(),
        };
        let json = serde_json::to_vec(&meta)
            .map_err(|e| Error::internal(format!("cannot encode a log entry: {e}")))?;
        let mut writer = ContainerWriter::new(ObjectKind::LogEntry);
        writer.add_block("entry", &json)?;
        writer.add_block("ids", &u64s_to_le_bytes(&self.batch.upsert_ids))?;
        writer.add_block("vectors", &f32s_to_le_bytes(&self.batch.vectors))?;
        writer.finish()
    }

    /// Decodes the log entry stored in `object`, checking it is the one of slot `seq`.
    pub fn decode(object: &str, bytes: Vec<u8>, seq: u64) -> Result<LogEntry> {
        let container = Container::open(object, bytes, ObjectKind::LogEntry)?;
        let meta: EntryMeta = serde_json::from_slice(&container.block("entry")?)
            .map_err(|e| Error::corrupt(object, 0, format!("log entry JSON: {e}")))?;
        let upsert_ids = le_bytes_to_u64s(object, "ids", &container.block("ids")?)?;
        let vectors = le_bytes_to_f32s(object, "vectors", &container.block("vectors")?)?;
        if meta.seq != seq {
            return Err(Error::corrupt(
                object,
                0,
                format!("the entry of slot {seq} says it is slot {}", meta.seq),
            ));
        }
        if vectors.len() != upsert_ids.len() * meta.dim || meta.attributes.len() != upsert_ids.len()
        {
            return Err(Error::corrupt(
                object,
                0,
                format!(
                    "{} ids, {} vector components of dimension {} and {} attribute rows do not agree",
                    upsert_ids.len(),
                    vectors.len(),
                    meta.dim,
                    meta.attributes.len()
                ),
            ));
        }
        Ok(LogEntry {
            seq: meta.seq,
            request_id: meta.request_id,
            created_unix_ms: meta.created_unix_ms,
            dim: meta.dim,
            batch: WriteBatch {
                upsert_ids,
                vectors,
                attributes: meta.attributes,
                delete_ids: meta.delete_ids,
                delete_filter: meta.delete_filter,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn log_keys_sort_by_sequence_and_parse_back() {
        assert_eq!(log_key(7), "log/00000000000000000007.sqsh");
        assert!(log_key(9) < log_key(10));
        assert_eq!(parse_log_key(&log_key(u64::MAX)), Some(u64::MAX));
        assert_eq!(parse_log_key("log/7.sqsh"), None);
        assert_eq!(parse_log_key("log/0000000000000000000x.sqsh"), None);
        assert_eq!(parse_log_key("v1/log/00000000000000000007.sqsh"), None);
    }

    #[test]
    fn entries_round_trip_and_refuse_another_slot_or_damage() {
        let entry = LogEntry {
            seq: 12,
            request_id: "req-1".into(),
            created_unix_ms: 1_700_000_000_000,
            dim: 2,
            batch: WriteBatch {
                upsert_ids: vec![5, u64::MAX],
                vectors: vec![1.0, -2.0, 0.5, 0.25],
                attributes: vec![
                    json!({"a": 1}).as_object().unwrap().clone(),
                    json!({"a": 2}).as_object().unwrap().clone(),
                ],
                delete_ids: vec![9],
                delete_filter: Some(json!({"a": {"$gt": 3}})),
            },
        };
        let bytes = entry.encode().unwrap();
        assert_eq!(LogEntry::decode("e", bytes.clone(), 12).unwrap(), entry);
        assert!(matches!(
            LogEntry::decode("e", bytes.clone(), 13),
            Err(Error::Corrupt { .. })
        ));
        let mut damaged = bytes;
        damaged[20] ^= 0x40;
        assert!(LogEntry::decode("e", damaged, 12).is_err());
    }
}
