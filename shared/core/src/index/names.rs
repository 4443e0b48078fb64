//! Index names: what an index may be called, so that every name is one object-key segment
//! and no request can address an object outside its index's prefix.

use crate::error::{Error, Result};

/// The longest index name accepted.
pub const MAX_INDEX_NAME_LEN: usize = 128;

/// Checks an index name: 1 to 128 ASCII letters, digits, `.`, `_` or `-`, starting with a
/// letter or digit. Such a name is one key segment, so no request can address an object
/// outside its index's prefix.
pub fn validate_index_name(name: &str) -> Result<()> {
    let valid_chars = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    let starts_well = name
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphanumeric());
    if name.len() > MAX_INDEX_NAME_LEN || !valid_chars || !starts_well {
        return Err(Error::invalid(
            "index",
            format!(
                "'{}' is not a valid index name (1 to {MAX_INDEX_NAME_LEN} letters, digits, '.', '_' or '-', starting with a letter or digit)",
                name.escape_debug()
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_names_cannot_escape_their_prefix() {
        for good in ["glove", "films-2024", "a.b_c", "0"] {
            assert!(validate_index_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "..",
            ".hidden",
            "a/b",
            "a\\b",
            "x\u{0}",
            "é",
            "-x",
            &"a".repeat(129),
        ] {
            assert!(validate_index_name(bad).is_err(), "{bad:?}");
        }
    }
}
