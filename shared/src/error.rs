//! The one error type of the crate.
//!
//! Callers branch on the variant: `InvalidInput` is the caller's fault and is never retried,
//! `NotFound` names what is missing, `Corrupt`/`UnsupportedVersion` mean the stored bytes cannot
//! be trusted, `Io`/`Storage` are environmental and may be retried, `Incomplete` means workers
//! did not answer for some partitions in time (retry later), `Remote` is what the HTTP client
//! reports when the service fails or cannot be reached.

use std::path::Path;

/// The result type used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Every failure the library reports.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The caller sent something unusable: a bad file, a bad query, a bad option.
    /// `field` names the file, row, column or request field; `reason` says what is wrong.
    #[error("{field}: {reason}")]
    InvalidInput {
        /// What was wrong: a file path with row/column, or a request field.
        field: String,
        /// Why it was rejected.
        reason: String,
    },
    /// An index, object or attribute that does not exist.
    #[error("not found: {what}")]
    NotFound {
        /// The missing thing.
        what: String,
    },
    /// Stored bytes failed a check (checksum, length, structure).
    #[error("corrupt object {object} at byte {offset}: {what}")]
    Corrupt {
        /// Object (file or key) name.
        object: String,
        /// Byte offset where the problem was found.
        offset: u64,
        /// What check failed.
        what: String,
    },
    /// An object written by a format version this build cannot read.
    #[error("object {object} has format version {found}, this build reads version {supported}")]
    UnsupportedVersion {
        /// Object (file or key) name.
        object: String,
        /// Version found in the object.
        found: u32,
        /// Version this build reads.
        supported: u32,
    },
    /// A local file system operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The path that was being read or written.
        path: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Workers could not answer for some partitions in time, and the request asked for
    /// complete results (otherwise the answer is returned marked partial).
    #[error("incomplete: {message} (partitions {missing_partitions:?}); retry later")]
    Incomplete {
        /// What failed.
        message: String,
        /// Partitions that were not searched.
        missing_partitions: Vec<u32>,
    },
    /// The HTTP API answered with an error that is neither the caller's request nor a state the
    /// other variants describe (a service fault, a gateway's refusal), or could not be reached
    /// (`status` 0).
    #[error("service answered {status}: {message}")]
    Remote {
        /// HTTP status, 0 when no answer came.
        status: u16,
        /// What the service or the transport said.
        message: String,
        /// Whether a retry may succeed (throttling, gateway errors, no answer).
        retryable: bool,
    },
    /// A remote store failed; `retryable` tells whether trying again may help.
    #[error("storage: {message}")]
    Storage {
        /// What failed.
        message: String,
        /// Whether a retry may succeed (throttling, 5xx, timeouts).
        retryable: bool,
    },
}

impl Error {
    /// Returns an `InvalidInput` error for `field` with `reason`.
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::InvalidInput {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// Returns a `Corrupt` error for `object` at `offset`.
    pub fn corrupt(object: impl Into<String>, offset: u64, what: impl Into<String>) -> Self {
        Error::Corrupt {
            object: object.into(),
            offset,
            what: what.into(),
        }
    }

    /// Returns an `Io` error carrying the path it happened on.
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.as_ref().display().to_string(),
            source,
        }
    }

    /// Returns true when retrying the same operation may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Error::Storage {
                retryable: true,
                ..
            } | Error::Incomplete { .. }
        )
    }
}
