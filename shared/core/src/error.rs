//! The one error type of the workspace.
//!
//! Callers branch on the variant, and the variant alone decides retry policy
//! ([`Error::is_retryable`]) and the HTTP status:
//! - `InvalidInput`: the caller's fault, never retried (400).
//! - `NotFound`: names what is missing (404).
//! - `Corrupt`, `UnsupportedVersion`: the stored bytes cannot be trusted; retrying cannot help.
//! - `Throttled`: a service refused for rate or concurrency; retry after `retry_after_ms`.
//! - `Timeout`: an operation did not finish in its time; retrying may help.
//! - `Io`, `Storage`: environmental; `Storage` says whether a retry may help.
//! - `Incomplete`: workers did not answer for some partitions in time (retry later).
//! - `Remote`: what the HTTP client reports when the service fails or cannot be reached.
//! - `Internal`: a bug or a broken invariant here (a panicked task, an encoder that failed);
//!   never retried.

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
    /// A service refused the call for its rate or concurrency limits (Lambda's
    /// `TooManyRequestsException`, S3's `SlowDown`).
    #[error("throttled: {message}")]
    Throttled {
        /// What was throttled.
        message: String,
        /// How long the service asked to wait, when it said.
        retry_after_ms: Option<u64>,
    },
    /// An operation did not finish within its time.
    #[error("timed out: {message}")]
    Timeout {
        /// What did not finish.
        message: String,
    },
    /// A bug or a broken invariant in this process: a task that panicked, a value that could
    /// not be encoded. Retrying the same request does not help.
    #[error("internal error: {message}")]
    Internal {
        /// What failed.
        message: String,
    },
    /// A conditional write lost: the object changed (or appeared) since it was read, because
    /// another writer committed first. Re-read the state before trying again.
    #[error("conflict: {message}")]
    Conflict {
        /// What was written, and what changed.
        message: String,
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

    /// Returns an `Internal` error.
    pub fn internal(message: impl Into<String>) -> Self {
        Error::Internal {
            message: message.into(),
        }
    }

    /// Returns true when retrying the same operation may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Storage { retryable, .. } | Error::Remote { retryable, .. } => *retryable,
            Error::Incomplete { .. } | Error::Throttled { .. } | Error::Timeout { .. } => true,
            Error::InvalidInput { .. }
            | Error::NotFound { .. }
            | Error::Corrupt { .. }
            | Error::UnsupportedVersion { .. }
            | Error::Io { .. }
            | Error::Conflict { .. }
            | Error::Internal { .. } => false,
        }
    }

    /// Returns the short name of the kind, as error bodies and Lambda diagnostics carry it.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Error::InvalidInput { .. } => "invalid_input",
            Error::NotFound { .. } => "not_found",
            Error::Corrupt { .. } => "corrupt",
            Error::UnsupportedVersion { .. } => "unsupported_version",
            Error::Io { .. } => "io",
            Error::Incomplete { .. } => "incomplete",
            Error::Remote { .. } => "remote",
            Error::Throttled { .. } => "throttled",
            Error::Timeout { .. } => "timeout",
            Error::Internal { .. } => "internal",
            Error::Conflict { .. } => "conflict",
            Error::Storage { .. } => "storage",
        }
    }
}
