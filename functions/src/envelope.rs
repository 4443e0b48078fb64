//! Compression of large payloads between functions: a worker request or response over
//! [`COMPRESS_ABOVE_BYTES`] travels as `{"squash_envelope": "zstd+base64", "data": "..."}`,
//! so a batch of thousands of queries stays under the 6 MB synchronous Lambda limit (vectors
//! written as JSON numbers shrink to about 60 %, base64 included). Small payloads travel as plain JSON, readable
//! in logs and by hand.

use base64::Engine;
use std::borrow::Cow;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use squash_core::error::{Error, Result};

/// Payloads larger than this are compressed.
pub const COMPRESS_ABOVE_BYTES: usize = 256 * 1024;

/// The envelope's marker field and its one supported value.
const MARKER_FIELD: &str = "squash_envelope";
const MARKER_VALUE: &str = "zstd+base64";
/// zstd level: fast; the payload is transient.
const ZSTD_LEVEL: i32 = 3;

/// Returns `json` as it should travel: unchanged when small, in an envelope otherwise.
pub fn wrap(json: Vec<u8>) -> Result<Vec<u8>> {
    if json.len() <= COMPRESS_ABOVE_BYTES {
        return Ok(json);
    }
    let compressed = zstd::bulk::compress(&json, ZSTD_LEVEL)
        .map_err(|e| Error::internal(format!("compressing a payload: {e}")))?;
    let data = base64::engine::general_purpose::STANDARD.encode(compressed);
    serde_json::to_vec(&serde_json::json!({ MARKER_FIELD: MARKER_VALUE, "data": data }))
        .map_err(|e| Error::internal(format!("encoding an envelope: {e}")))
}

/// The largest payload an envelope may inflate to.
pub const MAX_INFLATED_BYTES: usize = 64 * 1024 * 1024;

/// Returns the payload in `json` (plain, or an envelope) decoded as a `T` named `what` in
/// errors (with the path of a bad field). Nothing goes through a `serde_json::Value`, whose
/// numbers take several times the memory of their text: a plain payload is decoded straight
/// from its bytes, an envelope's data straight from its decompressed bytes, so a payload costs
/// its typed size, not more.
pub fn unwrap_bytes_as<T: DeserializeOwned>(json: &[u8], what: &str) -> Result<T> {
    match envelope_bytes(json)? {
        None => decode_typed(json, what),
        Some(inflated) => decode_typed(&inflated, what),
    }
}

fn decode_typed<T: DeserializeOwned>(json: &[u8], what: &str) -> Result<T> {
    let mut deserializer = serde_json::Deserializer::from_slice(json);
    let decoded: T = serde_path_to_error::deserialize(&mut deserializer).map_err(
        |e: serde_path_to_error::Error<serde_json::Error>| {
            Error::invalid(format!("{what} at {}", e.path()), e.inner().to_string())
        },
    )?;
    deserializer
        .end()
        .map_err(|e| Error::invalid("data", format!("trailing data after the payload: {e}")))?;
    Ok(decoded)
}

/// The two fields that make an envelope; every other field of a payload is skipped unread.
#[derive(Deserialize)]
struct EnvelopeFields<'a> {
    #[serde(borrow, default)]
    squash_envelope: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    data: Option<Cow<'a, str>>,
}

/// Returns the decompressed JSON of an envelope, or `None` when `json` is no envelope.
fn envelope_bytes(json: &[u8]) -> Result<Option<Vec<u8>>> {
    // Not an object (or not JSON): no envelope; the typed decode names what is wrong.
    let Ok(fields) = serde_json::from_slice::<EnvelopeFields>(json) else {
        return Ok(None);
    };
    let Some(marker) = fields.squash_envelope else {
        return Ok(None);
    };
    if marker != MARKER_VALUE {
        return Err(Error::invalid(
            MARKER_FIELD,
            format!("unsupported envelope \"{marker}\", expected \"{MARKER_VALUE}\""),
        ));
    }
    let data = fields
        .data
        .ok_or_else(|| Error::invalid("data", "an envelope needs a base64 string `data`"))?;
    let compressed = base64::engine::general_purpose::STANDARD
        .decode(data.as_bytes())
        .map_err(|e| Error::invalid("data", format!("not valid base64: {e}")))?;
    let json = zstd::bulk::decompress(&compressed, MAX_INFLATED_BYTES)
        .map_err(|e| Error::invalid("data", format!("not a valid zstd frame: {e}")))?;
    Ok(Some(json))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[derive(Debug, serde::Deserialize)]
    struct Queries {
        queries: Vec<Vec<f32>>,
    }

    #[test]
    fn large_payloads_round_trip_compressed_and_small_ones_stay_plain() {
        let small = serde_json::json!({"k": 3});
        let bytes = wrap(serde_json::to_vec(&small).expect("json")).expect("wrap");
        assert_eq!(
            serde_json::from_slice::<Value>(&bytes).expect("plain"),
            small
        );
        assert_eq!(
            unwrap_bytes_as::<Value>(&bytes, "payload").expect("plain"),
            small
        );
        let vectors: Vec<Vec<f32>> = (0..2000)
            .map(|i| (0..50).map(|d| ((i * 50 + d) as f32).sin()).collect())
            .collect();
        let large = serde_json::json!({ "queries": vectors });
        let plain = serde_json::to_vec(&large).expect("json");
        let wrapped = wrap(plain.clone()).expect("wrap");
        assert!(
            wrapped.len() * 4 < plain.len() * 3,
            "{} vs {}",
            wrapped.len(),
            plain.len()
        );
        // Typed decoding of the envelope and of the plain payload give the same values.
        let from_envelope: Queries = unwrap_bytes_as(&wrapped, "payload").expect("typed");
        let from_plain: Queries = unwrap_bytes_as(&plain, "payload").expect("typed");
        assert_eq!(from_envelope.queries, vectors);
        assert_eq!(from_plain.queries, vectors);
        // The path of a bad field is named, inside an envelope or not.
        let mut broken = serde_json::to_value(&large).expect("value");
        broken["queries"][1500][7] = serde_json::json!("x");
        let broken_plain = serde_json::to_vec(&broken).expect("json");
        let broken_wrapped = wrap(broken_plain.clone()).expect("wrap");
        for bytes in [&broken_plain, &broken_wrapped] {
            let error =
                unwrap_bytes_as::<Queries>(bytes, "payload").expect_err("a string among floats");
            assert!(
                error.to_string().contains("payload at queries[1500][7]"),
                "{error}"
            );
        }
        for bad in [
            serde_json::json!({"squash_envelope": "zstd+base64", "data": "!!"}),
            serde_json::json!({"squash_envelope": "gzip", "data": ""}),
            serde_json::json!({"squash_envelope": "zstd+base64"}),
        ] {
            let bytes = serde_json::to_vec(&bad).expect("json");
            assert!(
                unwrap_bytes_as::<Value>(&bytes, "payload").is_err(),
                "{bad}"
            );
        }
        // Not an object at all: the typed decode says so.
        assert!(unwrap_bytes_as::<Queries>(b"[1, 2]", "payload").is_err());
    }

    #[test]
    fn raw_events_reach_the_handler_as_the_runtime_reads_them() {
        // lambda_runtime decodes an event through serde_path_to_error; the worker's raw event
        // type must come through it with its text intact.
        let text = br#"{"squash_envelope": "zstd+base64", "data": "abc", "n": [1, 2.5]}"#;
        let mut deserializer = serde_json::Deserializer::from_slice(text);
        let raw: Box<serde_json::value::RawValue> =
            serde_path_to_error::deserialize(&mut deserializer).expect("raw event");
        assert_eq!(raw.get().as_bytes(), text);
    }
}
