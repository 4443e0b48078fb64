//! Conversions between typed arrays and the little-endian bytes stored in blocks.
//!
//! Must not reinterpret memory (no transmute, no pointer casts): the stored form is
//! little-endian whatever the host, and these copies cost little next to fetching a block.

use crate::error::{Error, Result};

/// Returns the little-endian bytes of `values`, 4 per value.
pub fn f32s_to_le_bytes(values: &[f32]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(values.len() * 4);
    for value in values {
        bytes.extend_from_slice(&value.to_le_bytes());
    }
    bytes
}

/// Returns the little-endian bytes of `values`, 4 per value.
pub fn u32s_to_le_bytes(values: &[u32]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(values.len() * 4);
    for value in values {
        bytes.extend_from_slice(&value.to_le_bytes());
    }
    bytes
}

/// Returns the little-endian bytes of `values`, 8 per value.
pub fn u64s_to_le_bytes(values: &[u64]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(values.len() * 8);
    for value in values {
        bytes.extend_from_slice(&value.to_le_bytes());
    }
    bytes
}

/// Returns the `f32`s stored little-endian in `bytes`, the decoded block `block_name` of
/// `object`; a length that is not a multiple of 4 is `Corrupt`.
pub fn le_bytes_to_f32s(object: &str, block_name: &str, bytes: &[u8]) -> Result<Vec<f32>> {
    decode_le::<f32, 4>(object, block_name, bytes, "f32", f32::from_le_bytes)
}

/// Returns the `u32`s stored little-endian in `bytes`, the decoded block `block_name` of
/// `object`; a length that is not a multiple of 4 is `Corrupt`.
pub fn le_bytes_to_u32s(object: &str, block_name: &str, bytes: &[u8]) -> Result<Vec<u32>> {
    decode_le::<u32, 4>(object, block_name, bytes, "u32", u32::from_le_bytes)
}

/// Returns the `u64`s stored little-endian in `bytes`, the decoded block `block_name` of
/// `object`; a length that is not a multiple of 8 is `Corrupt`.
pub fn le_bytes_to_u64s(object: &str, block_name: &str, bytes: &[u8]) -> Result<Vec<u64>> {
    decode_le::<u64, 8>(object, block_name, bytes, "u64", u64::from_le_bytes)
}

/// Decodes `bytes` as consecutive `N`-byte little-endian values. The offset of a length error
/// is where the incomplete value starts inside the decoded block, because the block's offset
/// in the object is not known here.
fn decode_le<T, const N: usize>(
    object: &str,
    block_name: &str,
    bytes: &[u8],
    type_name: &str,
    from_le_bytes: fn([u8; N]) -> T,
) -> Result<Vec<T>> {
    let num_trailing_bytes = bytes.len() % N;
    if num_trailing_bytes != 0 {
        let incomplete_start = bytes.len() - num_trailing_bytes;
        return Err(Error::corrupt(
            object,
            incomplete_start as u64,
            format!(
                "block {block_name}: {} bytes is not a whole number of {N}-byte {type_name} values \
                 (offset is within the decoded block)",
                bytes.len()
            ),
        ));
    }
    let mut values = Vec::with_capacity(bytes.len() / N);
    for chunk in bytes.chunks_exact(N) {
        let mut array = [0u8; N];
        array.copy_from_slice(chunk);
        values.push(from_le_bytes(array));
    }
    Ok(values)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_arrays_round_trip() {
        let floats = [0.0f32, -1.5, f32::MAX, f32::MIN_POSITIVE, f32::INFINITY];
        let bytes = f32s_to_le_bytes(&floats);
        assert_eq!(&bytes[4..8], &(-1.5f32).to_le_bytes());
        assert_eq!(le_bytes_to_f32s("o", "b", &bytes).unwrap(), floats);

        let words = [0u32, 1, 0xdead_beef, u32::MAX];
        let bytes = u32s_to_le_bytes(&words);
        assert_eq!(&bytes[8..12], &[0xef, 0xbe, 0xad, 0xde]);
        assert_eq!(le_bytes_to_u32s("o", "b", &bytes).unwrap(), words);

        let longs = [0u64, 1 << 40, u64::MAX];
        assert_eq!(
            le_bytes_to_u64s("o", "b", &u64s_to_le_bytes(&longs)).unwrap(),
            longs
        );
        assert!(le_bytes_to_u64s("o", "b", &[]).unwrap().is_empty());
    }

    #[test]
    fn nan_bits_survive() {
        let nan = f32::from_bits(0x7fc0_1234);
        let decoded = le_bytes_to_f32s("o", "b", &f32s_to_le_bytes(&[nan])).unwrap();
        assert_eq!(decoded[0].to_bits(), 0x7fc0_1234);
    }

    #[test]
    fn ragged_lengths_are_corrupt() {
        let error = le_bytes_to_f32s("seg", "vectors", &[0; 6]).unwrap_err();
        let message = error.to_string();
        assert!(
            matches!(error, Error::Corrupt { offset: 4, .. }),
            "{message}"
        );
        assert!(
            message.contains("seg") && message.contains("vectors"),
            "{message}"
        );
        assert!(le_bytes_to_u32s("o", "b", &[0; 3]).is_err());
        assert!(le_bytes_to_u64s("o", "b", &[0; 12]).is_err());
    }
}
