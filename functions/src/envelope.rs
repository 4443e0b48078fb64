//! Compression of large payloads between functions: a worker request or response over
//! [`COMPRESS_ABOVE_BYTES`] travels as `{"squash_envelope": "zstd+base64", "data": "..."}`,
//! so a batch of thousands of queries stays under the 6 MB synchronous Lambda limit (vectors
//! written as JSON numbers shrink to about 60 %, base64 included). Small payloads travel as plain JSON, readable
//! in logs and by hand.

use base64::Engine;
use serde::de::DeserializeOwned;
use serde_json::Value;
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

/// Returns the payload inside `value` decoded as a `T` named `what` in errors (with the path of
/// a bad field). An envelope's data is decoded straight from its decompressed bytes, never
/// through a `serde_json::Value`, whose numbers take several times the memory of their text: a
/// small envelope that inflates to a large payload costs the payload's typed size, not more.
pub fn unwrap_as<T: DeserializeOwned>(value: Value, what: &str) -> Result<T> {
    let named = |e: serde_path_to_error::Error<serde_json::Error>| {
        Error::invalid(format!("{what} at {}", e.path()), e.inner().to_string())
    };
    match envelope_bytes(&value)? {
        None => serde_path_to_error::deserialize(value).map_err(named),
        Some(json) => {
            let mut deserializer = serde_json::Deserializer::from_slice(&json);
            let decoded: T = serde_path_to_error::deserialize(&mut deserializer).map_err(named)?;
            deserializer.end().map_err(|e| {
                Error::invalid("data", format!("trailing data after the payload: {e}"))
            })?;
            Ok(decoded)
        }
    }
}

/// Returns the decompressed JSON of an envelope, or `None` when `value` is no envelope.
fn envelope_bytes(value: &Value) -> Result<Option<Vec<u8>>> {
    let Some(marker) = value.get(MARKER_FIELD) else {
        return Ok(None);
    };
    if marker != MARKER_VALUE {
        return Err(Error::invalid(
            MARKER_FIELD,
            format!("unsupported envelope {marker}, expected \"{MARKER_VALUE}\""),
        ));
    }
    let data = value
        .get("data")
        .and_then(Value::as_str)
        .ok_or_else(|| Error::invalid("data", "an envelope needs a base64 string `data`"))?;
    let compressed = base64::engine::general_purpose::STANDARD
        .decode(data)
        .map_err(|e| Error::invalid("data", format!("not valid base64: {e}")))?;
    // The decompressed size is bounded like any payload the functions accept.
    let json = zstd::bulk::decompress(&compressed, 64 * 1024 * 1024)
        .map_err(|e| Error::invalid("data", format!("not a valid zstd frame: {e}")))?;
    Ok(Some(json))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_payloads_round_trip_compressed_and_small_ones_stay_plain() {
        let small = serde_json::json!({"k": 3});
        let bytes = wrap(serde_json::to_vec(&small).expect("json")).expect("wrap");
        assert_eq!(
            serde_json::from_slice::<Value>(&bytes).expect("plain"),
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
        let value: Value = serde_json::from_slice(&wrapped).expect("envelope");
        // Compared with the plain text parsed the same way (JSON floats parse approximately).
        let expected: Value = serde_json::from_slice(&plain).expect("plain parses");
        assert_eq!(
            unwrap_as::<Value>(value, "payload").expect("unwrap"),
            expected
        );
        // Typed decoding reads the same payload without the intermediate value, and names the
        // path of a bad field inside an envelope.
        #[derive(Debug, serde::Deserialize)]
        struct Queries {
            queries: Vec<Vec<f32>>,
        }
        let envelope: Value = serde_json::from_slice(&wrapped).expect("envelope");
        let typed: Queries = unwrap_as(envelope, "payload").expect("typed");
        assert_eq!(typed.queries.len(), 2000);
        let mut broken = serde_json::to_value(&large).expect("value");
        broken["queries"][1500][7] = serde_json::json!("x");
        let broken = wrap(serde_json::to_vec(&broken).expect("json")).expect("wrap");
        let envelope: Value = serde_json::from_slice(&broken).expect("envelope");
        let error = unwrap_as::<Queries>(envelope, "payload").expect_err("a string among floats");
        assert!(
            error.to_string().contains("payload at queries[1500][7]"),
            "{error}"
        );
        let bad = serde_json::json!({"squash_envelope": "zstd+base64", "data": "!!"});
        assert!(unwrap_as::<Value>(bad, "payload").is_err());
        let other = serde_json::json!({"squash_envelope": "gzip", "data": ""});
        assert!(unwrap_as::<Value>(other, "payload").is_err());
    }
}
