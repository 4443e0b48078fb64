//! Configuration of both functions, read once per cold start from environment variables.
//!
//! | variable | meaning | default |
//! | --- | --- | --- |
//! | `SQUASH_ROOT` | where indexes live: `s3://bucket/prefix` or a folder | required |
//! | `SQUASH_WORKER_FUNCTIONS` | comma-separated worker slots (function names or ARNs) | `worker` |
//! | `SQUASH_BRANCHING` | children per invocation-tree node | 4 |
//! | `SQUASH_MAX_DEPTH` | levels of workers at most | 3 |
//! | `SQUASH_TIMEOUT_MS` | time a request may take | 10000 |
//! | `SQUASH_MANIFEST_TTL_MS` | how long an opened index is served before its manifest is re-read | 5000 |
//! | `SQUASH_MANIFEST_MAX_STALE_MS` | how long an open index is still served from memory while the store cannot be read | 300000 |
//! | `SQUASH_MAX_ANSWER_BYTES` | largest estimated answer in a response | 5242880 |
//! | `SQUASH_MAX_STORED_ANSWER_BYTES` | largest estimated answer written to the store (`"output": "store"`); also what a worker answers at most | 12582912 |
//! | `SQUASH_MAX_ROWS_PER_INVOCATION` | rows one worker invocation may be planned to score (exact mode counts 4 per row) | `SQUASH_TIMEOUT_MS` × 50000 |
//! | `SQUASH_MAX_INVOCATIONS` | most worker invocations of one request: a large batch is split over concurrent invocations up to this many | 64 |
//! | `SQUASH_TARGET_INVOCATION_MS` | estimated time one worker invocation is aimed at; a slot's share of a batch that would take longer is split | `SQUASH_TIMEOUT_MS` / 4 |
//! | `SQUASH_SPLIT_FUNCTIONS` | comma-separated functions the extra parts of a split batch go to, in turn (the local stack's extra names) | each part to its slot's own function |
//! | `SQUASH_MAX_UNFOLDED_ROWS` | most rows written since the last compaction an index takes before writes are refused (503) until it is compacted | 200000 |
//! | `SQUASH_LOG_CHECK_MS` | how long a coordinator answers from the write log as it last read it (a request's `min_token` and the coordinator's own writes are read at once; 0: every request reads the log's newest entries) | 5000 |
//! | `SQUASH_CORS_ALLOW_ORIGIN` | the `Access-Control-Allow-Origin` of HTTP answers; `none` sends no CORS headers | `*` |
//! | `SQUASH_CACHE_BYTES` | worker partition cache budget | half of the function memory |
//! | `SQUASH_S3_CONNECT_TIMEOUT_MS`, `SQUASH_S3_READ_TIMEOUT_MS` | S3 read timeouts (read by `squash_storage::S3ReadTimeouts` when the store opens) | 1000, 2000 |

use squash_core::error::{Error, Result};
use squash_core::search::{RequestLimits, DEFAULT_WORK_MODEL};
use squash_service::batch_split::DEFAULT_MAX_INVOCATIONS;
use squash_service::coordinator_service::{
    DEFAULT_BRANCHING, DEFAULT_LOG_CHECK_MS, DEFAULT_MANIFEST_MAX_STALE_MS,
    DEFAULT_MANIFEST_TTL_MS, DEFAULT_MAX_DEPTH, DEFAULT_MAX_UNFOLDED_ROWS,
};
use squash_service::partition_cache::default_capacity_bytes;
use squash_service::{ServiceConfig, TreeShape};

/// Everything the functions read from the environment.
#[derive(Debug, Clone, PartialEq)]
pub struct FunctionConfig {
    /// Where indexes live.
    pub root: String,
    /// Coordinator settings.
    pub service: ServiceConfig,
    /// Worker partition cache budget in bytes.
    pub cache_bytes: u64,
    /// The `Access-Control-Allow-Origin` of HTTP answers; `None` sends no CORS headers.
    pub cors_allow_origin: Option<String>,
}

fn number<T: std::str::FromStr>(
    lookup: &dyn Fn(&str) -> Option<String>,
    name: &str,
    default: T,
) -> Result<T> {
    match lookup(name) {
        None => Ok(default),
        Some(text) if text.trim().is_empty() => Ok(default),
        Some(text) => text
            .trim()
            .parse()
            .map_err(|_| Error::invalid(name, format!("'{text}' is not a valid number"))),
    }
}

fn positive(lookup: &dyn Fn(&str) -> Option<String>, name: &str, default: u64) -> Result<u64> {
    let value = number(lookup, name, default)?;
    if value == 0 {
        return Err(Error::invalid(name, "must be positive"));
    }
    Ok(value)
}

impl FunctionConfig {
    /// Reads the configuration from the process environment.
    pub fn from_env() -> Result<FunctionConfig> {
        FunctionConfig::from_lookup(&|name| std::env::var(name).ok())
    }

    /// Reads the configuration through `lookup` (the environment, or a map in tests).
    pub fn from_lookup(lookup: &dyn Fn(&str) -> Option<String>) -> Result<FunctionConfig> {
        let root = lookup("SQUASH_ROOT")
            .filter(|root| !root.trim().is_empty())
            .ok_or_else(|| {
                Error::invalid(
                    "SQUASH_ROOT",
                    "must be set to where indexes live (s3://bucket/prefix or a folder)",
                )
            })?;
        let names = |text: String| -> Vec<String> {
            text.split(',')
                .map(|name| name.trim().to_string())
                .filter(|name| !name.is_empty())
                .collect()
        };
        let worker_functions =
            names(lookup("SQUASH_WORKER_FUNCTIONS").unwrap_or_else(|| "worker".to_string()));
        let split_functions = names(lookup("SQUASH_SPLIT_FUNCTIONS").unwrap_or_default());
        if worker_functions.is_empty() {
            return Err(Error::invalid(
                "SQUASH_WORKER_FUNCTIONS",
                "must name at least one worker function",
            ));
        }
        let tree = TreeShape::try_new(
            number(lookup, "SQUASH_BRANCHING", DEFAULT_BRANCHING)?,
            number(lookup, "SQUASH_MAX_DEPTH", DEFAULT_MAX_DEPTH)?,
        )
        .map_err(|error| match error {
            Error::InvalidInput { field, reason } => Error::invalid(
                if field == "branching" {
                    "SQUASH_BRANCHING"
                } else {
                    "SQUASH_MAX_DEPTH"
                },
                reason,
            ),
            other => other,
        })?;
        let timeout_ms = number(
            lookup,
            "SQUASH_TIMEOUT_MS",
            squash_core::protocol::DEFAULT_TIMEOUT_MS,
        )?;
        if timeout_ms == 0 {
            return Err(Error::invalid("SQUASH_TIMEOUT_MS", "must be positive"));
        }
        let defaults = RequestLimits::for_timeout(timeout_ms);
        let limits = RequestLimits {
            max_answer_bytes: positive(
                lookup,
                "SQUASH_MAX_ANSWER_BYTES",
                defaults.max_answer_bytes,
            )?,
            max_stored_answer_bytes: positive(
                lookup,
                "SQUASH_MAX_STORED_ANSWER_BYTES",
                defaults.max_stored_answer_bytes,
            )?,
            max_rows_per_invocation: positive(
                lookup,
                "SQUASH_MAX_ROWS_PER_INVOCATION",
                defaults.max_rows_per_invocation,
            )?,
        };
        let cors_allow_origin = match lookup("SQUASH_CORS_ALLOW_ORIGIN") {
            None => Some("*".to_string()),
            Some(text) if text.trim().is_empty() => Some("*".to_string()),
            Some(text) if text.trim().eq_ignore_ascii_case("none") => None,
            Some(text) => {
                let origin = text.trim().to_string();
                // A header value: one origin (or *), nothing that could split the header.
                if origin
                    .bytes()
                    .any(|b| b.is_ascii_control() || b == b',' || b == b' ')
                {
                    return Err(Error::invalid(
                        "SQUASH_CORS_ALLOW_ORIGIN",
                        format!(
                            "'{origin}' is not one origin (https://example.com), '*' or 'none'"
                        ),
                    ));
                }
                Some(origin)
            }
        };
        Ok(FunctionConfig {
            root,
            service: ServiceConfig {
                worker_functions,
                tree,
                timeout_ms,
                manifest_ttl_ms: number(lookup, "SQUASH_MANIFEST_TTL_MS", DEFAULT_MANIFEST_TTL_MS)?,
                manifest_max_stale_ms: number(
                    lookup,
                    "SQUASH_MANIFEST_MAX_STALE_MS",
                    DEFAULT_MANIFEST_MAX_STALE_MS,
                )?,
                limits,
                max_invocations: positive(
                    lookup,
                    "SQUASH_MAX_INVOCATIONS",
                    DEFAULT_MAX_INVOCATIONS as u64,
                )? as usize,
                target_invocation_ms: match lookup("SQUASH_TARGET_INVOCATION_MS") {
                    Some(text) if !text.trim().is_empty() => {
                        Some(positive(lookup, "SQUASH_TARGET_INVOCATION_MS", 1)?)
                    }
                    _ => None,
                },
                split_functions,
                work_model: DEFAULT_WORK_MODEL,
                max_unfolded_rows: positive(
                    lookup,
                    "SQUASH_MAX_UNFOLDED_ROWS",
                    DEFAULT_MAX_UNFOLDED_ROWS as u64,
                )? as usize,
                log_check_ms: number(lookup, "SQUASH_LOG_CHECK_MS", DEFAULT_LOG_CHECK_MS)?,
            },
            cache_bytes: number(lookup, "SQUASH_CACHE_BYTES", default_capacity_bytes())?,
            cors_allow_origin,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(pairs: &[(&str, &str)]) -> Result<FunctionConfig> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        FunctionConfig::from_lookup(&|name| map.get(name).cloned())
    }

    #[test]
    fn defaults_apply_and_bad_values_name_their_variable() {
        let parsed = config(&[
            ("SQUASH_ROOT", "s3://b/p"),
            ("SQUASH_WORKER_FUNCTIONS", "a, b,c"),
        ])
        .expect("config");
        assert_eq!(parsed.service.worker_functions, vec!["a", "b", "c"]);
        assert_eq!(parsed.service.tree.branching, DEFAULT_BRANCHING);
        let field_of = |result: Result<FunctionConfig>| match result {
            Err(Error::InvalidInput { field, .. }) => field,
            other => panic!("expected an error, got {other:?}"),
        };
        assert_eq!(field_of(config(&[])), "SQUASH_ROOT");
        assert_eq!(
            field_of(config(&[
                ("SQUASH_ROOT", "x"),
                ("SQUASH_BRANCHING", "many")
            ])),
            "SQUASH_BRANCHING"
        );
        assert_eq!(
            field_of(config(&[("SQUASH_ROOT", "x"), ("SQUASH_MAX_DEPTH", "0")])),
            "SQUASH_MAX_DEPTH"
        );
        assert_eq!(
            field_of(config(&[
                ("SQUASH_ROOT", "x"),
                ("SQUASH_WORKER_FUNCTIONS", " , ")
            ])),
            "SQUASH_WORKER_FUNCTIONS"
        );
        assert_eq!(parsed.cors_allow_origin.as_deref(), Some("*"));
        assert_eq!(
            parsed.service.limits,
            RequestLimits::for_timeout(squash_core::protocol::DEFAULT_TIMEOUT_MS)
        );
        let set = config(&[
            ("SQUASH_ROOT", "x"),
            ("SQUASH_CORS_ALLOW_ORIGIN", "none"),
            ("SQUASH_MAX_ANSWER_BYTES", "1000"),
        ])
        .expect("config");
        assert_eq!(set.cors_allow_origin, None);
        assert_eq!(set.service.limits.max_answer_bytes, 1000);
        assert_eq!(
            field_of(config(&[
                ("SQUASH_ROOT", "x"),
                ("SQUASH_CORS_ALLOW_ORIGIN", "https://a.com, https://b.com")
            ])),
            "SQUASH_CORS_ALLOW_ORIGIN"
        );
        assert_eq!(
            field_of(config(&[
                ("SQUASH_ROOT", "x"),
                ("SQUASH_MAX_ROWS_PER_INVOCATION", "0")
            ])),
            "SQUASH_MAX_ROWS_PER_INVOCATION"
        );
        let split = config(&[
            ("SQUASH_ROOT", "x"),
            ("SQUASH_MAX_INVOCATIONS", "8"),
            ("SQUASH_TARGET_INVOCATION_MS", "300"),
            ("SQUASH_SPLIT_FUNCTIONS", "s1, s2"),
        ])
        .expect("config");
        assert_eq!(split.service.max_invocations, 8);
        assert_eq!(split.service.target_invocation_ms(), 300);
        assert_eq!(split.service.split_functions, vec!["s1", "s2"]);
        let defaults =
            config(&[("SQUASH_ROOT", "x"), ("SQUASH_TIMEOUT_MS", "8000")]).expect("config");
        assert_eq!(defaults.service.target_invocation_ms(), 2_000);
        assert!(defaults.service.split_functions.is_empty());
        for name in ["SQUASH_MAX_INVOCATIONS", "SQUASH_TARGET_INVOCATION_MS"] {
            assert_eq!(field_of(config(&[("SQUASH_ROOT", "x"), (name, "0")])), name);
        }
    }
}
