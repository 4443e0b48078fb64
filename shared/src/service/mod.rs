//! The serverless runtime's logic, free of Lambda: the coordinator service (HTTP routes,
//! index metadata, planning, fan-out, merge, statistics), the worker service (one node of the
//! invocation tree over a partition cache), the invocation tree, and the [`WorkerInvoker`]
//! port with its in-process adapter.
//!
//! The Lambda functions wrap these services in thin `main.rs` files; the embedded mode and the
//! tests run them in-process through [`InProcessInvoker`]. I/O goes through the
//! [`crate::storage::BlobStore`] and [`WorkerInvoker`] ports only.

pub mod coordinator;
pub mod http;
pub mod invoker;
pub mod tree;
pub mod worker;

pub use coordinator::{CoordinatorService, IndexSummary, ServiceConfig};
pub use http::{handle_direct, handle_direct_payload, handle_http, HttpResponse, JsonPayload};
pub use invoker::{InProcessInvoker, WorkerInvoker};
pub use tree::{plan_tree, slot_of, TreeShape};
pub use worker::{partition_object_key, WorkerService};

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

/// Splits an index location (`s3://bucket/prefix/name` or `folder/name`) into the root that
/// holds it and its name.
pub fn split_index_location(location: &str) -> Result<(String, String)> {
    let trimmed = location.trim_end_matches('/');
    let (root, name) = match trimmed.rsplit_once('/') {
        Some((root, name))
            if !root.is_empty() && !root.ends_with(':') && !root.ends_with("s3:/") =>
        {
            (root.to_string(), name.to_string())
        }
        Some(("", name)) => ("/".to_string(), name.to_string()),
        None => (".".to_string(), trimmed.to_string()),
        Some(_) => {
            return Err(Error::invalid(
                "index location",
                format!("'{location}' names a bucket, not an index inside it"),
            ))
        }
    };
    validate_index_name(&name).map_err(|_| {
        Error::invalid(
            "index location",
            format!("the last part of '{location}' is not a valid index name (letters, digits, '.', '_', '-')"),
        )
    })?;
    Ok((root, name))
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

    #[test]
    fn index_locations_split_into_root_and_name() {
        let split = |l: &str| split_index_location(l).expect(l);
        assert_eq!(
            split("s3://bucket/prefix/glove"),
            ("s3://bucket/prefix".into(), "glove".into())
        );
        assert_eq!(
            split("s3://bucket/glove/"),
            ("s3://bucket".into(), "glove".into())
        );
        assert_eq!(split("/tmp/idx"), ("/tmp".into(), "idx".into()));
        assert_eq!(split("idx"), (".".into(), "idx".into()));
        assert!(split_index_location("s3://bucket").is_err());
    }
}
