//! The compactor function's event handler: folds the write logs of indexes into new versions
//! (see `squash_service::compaction`).
//!
//! - A scheduled event (EventBridge), or any event without `"index"`, compacts every index
//!   under the root whose log holds writes after its manifest's `folded_through`; of the
//!   others it only removes the versions past their retention.
//! - A direct invocation `{"index": "NAME"}` compacts that index; `{"index": "NAME", "force":
//!   true}` rebuilds it even when it has no writes to fold.
//!
//! The answer lists one result per index: what the compaction folded, or the kind and message
//! of its error. A failed index does not stop the others, and nothing is retried here: a
//! `conflict` (another build or compaction switched the manifest meanwhile) loses no write, and
//! the next scheduled run tries again. An event that cannot be read, or a root that cannot be
//! listed, fails the invocation with the error's kind as its type.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lambda_runtime::{service_fn, LambdaEvent};
use serde_json::{json, Value};
use squash_core::error::{Error, Result};
use squash_core::index::build::NoProgress;
use squash_core::index::{validate_index_name, Manifest, MANIFEST_KEY};
use squash_core::writes::parse_log_key;
use squash_service::{compact_index, remove_expired_versions, CompactionSummary};
use squash_storage::{store_for_location, BlobStore, PrefixedStore};

use crate::config::FunctionConfig;

/// The longest a Lambda invocation runs: the budget when the context's deadline is not a
/// plausible time (a local emulator's).
const LAMBDA_MAX_TIMEOUT_MS: u64 = 900_000;

/// A scheduled run starts no compaction with less time than this left before the function's
/// deadline: the index is reported `deferred`, and the next run takes it first.
const MIN_START_BUDGET: Duration = Duration::from_secs(60);

/// What one event asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CompactorEvent {
    /// Every index with unfolded writes (a scheduled event, or any event without `"index"`).
    Due,
    /// One index; with `force`, even when it has no writes to fold.
    One {
        /// The index name.
        index: String,
        /// Whether to rebuild the index without writes to fold.
        force: bool,
    },
}

/// Reads an event: an object with `"index"` (and optionally `"force"`, nothing else) names one
/// index; anything else (EventBridge's scheduled event among them) means every due index. A
/// `"force"` without `"index"` is refused rather than applied to every index.
pub fn parse_event(event: &Value) -> Result<CompactorEvent> {
    let Some(object) = event.as_object() else {
        return Ok(CompactorEvent::Due);
    };
    let Some(index) = object.get("index") else {
        if object.contains_key("force") {
            return Err(Error::invalid(
                "force",
                "applies to one index: give \"index\" too (a run without \"index\" compacts every index with unfolded writes)",
            ));
        }
        return Ok(CompactorEvent::Due);
    };
    let index = index
        .as_str()
        .ok_or_else(|| Error::invalid("index", "must be a string (an index name)"))?;
    validate_index_name(index)?;
    let force = match object.get("force") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(force)) => *force,
        Some(_) => return Err(Error::invalid("force", "must be true or false")),
    };
    if let Some(unknown) = object
        .keys()
        .find(|key| !matches!(key.as_str(), "index" | "force"))
    {
        return Err(Error::invalid(
            unknown,
            "unknown field: a direct invocation takes \"index\" and, optionally, \"force\"",
        ));
    }
    Ok(CompactorEvent::One {
        index: index.to_string(),
        force,
    })
}

/// Where one index under the root stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IndexState {
    /// The log holds `unfolded_entries` writes after the manifest's `folded_through`.
    Due {
        /// The manifest's `folded_through`.
        folded_through: u64,
        /// Log entries after it.
        unfolded_entries: u64,
    },
    /// Nothing to fold.
    UpToDate {
        /// The manifest's `folded_through`.
        folded_through: u64,
    },
}

/// Returns, per index name, the log positions found in `keys` (a listing of the root, keys
/// relative to it); indexes are the names with a manifest, as `CoordinatorService::list`
/// finds them, and an index without log entries maps to an empty list.
pub fn log_positions_by_index(keys: &[String]) -> BTreeMap<String, Vec<u64>> {
    let suffix = format!("/{MANIFEST_KEY}");
    let mut by_index: BTreeMap<String, Vec<u64>> = keys
        .iter()
        .filter_map(|key| key.strip_suffix(&suffix))
        .filter(|name| validate_index_name(name).is_ok())
        .map(|name| (name.to_string(), Vec::new()))
        .collect();
    for key in keys {
        let Some((name, rest)) = key.split_once('/') else {
            continue;
        };
        if let (Some(positions), Some(seq)) = (by_index.get_mut(name), parse_log_key(rest)) {
            positions.push(seq);
        }
    }
    by_index
}

/// Lists the indexes under `root` (one listing) and reads the manifest of each: which have
/// writes after their `folded_through`. An index whose manifest cannot be read gets its error,
/// and the others are still surveyed.
pub async fn survey(root: &dyn BlobStore) -> Result<Vec<(String, Result<IndexState>)>> {
    let keys = root.list("").await?;
    let mut states = Vec::new();
    for (name, positions) in log_positions_by_index(&keys) {
        let state = read_manifest(root, &name).await.map(|manifest| {
            let folded_through = manifest.folded_through;
            let unfolded_entries = positions
                .iter()
                .filter(|&&seq| seq > folded_through)
                .count() as u64;
            if unfolded_entries == 0 {
                IndexState::UpToDate { folded_through }
            } else {
                IndexState::Due {
                    folded_through,
                    unfolded_entries,
                }
            }
        });
        states.push((name, state));
    }
    Ok(states)
}

async fn read_manifest(root: &dyn BlobStore, name: &str) -> Result<Manifest> {
    let key = format!("{name}/{MANIFEST_KEY}");
    let bytes = root.get(&key).await?;
    Manifest::decode(&key, bytes)
}

/// Handles one compactor event: `deadline` is when the function must have answered.
pub async fn handle_event(
    root: Arc<dyn BlobStore>,
    event: &Value,
    request_id: &str,
    deadline: Instant,
) -> Result<Value> {
    let results = match parse_event(event)? {
        CompactorEvent::One { index, force } => {
            tracing::info!(request_id, index, force, "compacting one index");
            vec![compact_one(&root, &index, force).await]
        }
        CompactorEvent::Due => {
            let states = survey(root.as_ref()).await?;
            let mut results = Vec::with_capacity(states.len());
            let mut due = Vec::new();
            for (name, state) in states {
                match state {
                    Ok(IndexState::Due {
                        unfolded_entries, ..
                    }) => due.push((name, unfolded_entries)),
                    Ok(IndexState::UpToDate { folded_through }) => {
                        // Versions past the retention go even when nothing is compacted.
                        let removed = remove_expired(&root, &name).await;
                        results.push(json!({
                            "index": name,
                            "status": "up_to_date",
                            "folded_through": folded_through,
                            "expired_objects_removed": removed,
                        }))
                    }
                    Err(error) => results.push(failed(&name, &error)),
                }
            }
            tracing::info!(
                request_id,
                indexes = results.len() + due.len(),
                due = due.len(),
                "compacting the indexes with unfolded writes"
            );
            // The longest logs first: they are the nearest to having writes refused.
            due.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            for (name, unfolded_entries) in due {
                if deadline.saturating_duration_since(Instant::now()) < MIN_START_BUDGET {
                    tracing::warn!(
                        index = name,
                        unfolded_entries,
                        "too little time left to start a compaction: deferred to the next run"
                    );
                    results.push(json!({
                        "index": name,
                        "status": "deferred",
                        "unfolded_entries": unfolded_entries,
                    }));
                    continue;
                }
                results.push(compact_one(&root, &name, false).await);
            }
            results
        }
    };
    let count = |status: &str| {
        results
            .iter()
            .filter(|result| result["status"] == status)
            .count()
    };
    Ok(json!({
        "compacted": count("compacted"),
        "failed": count("failed"),
        "indexes": results,
    }))
}

/// Removes the objects of index `name` that no retained version reads; returns how many, or
/// 0 when that failed (logged: the next run tries again).
async fn remove_expired(root: &Arc<dyn BlobStore>, name: &str) -> usize {
    let outcome = async {
        let store = PrefixedStore::try_new(Arc::clone(root), name)?;
        remove_expired_versions(&store).await
    }
    .await;
    outcome.unwrap_or_else(|error| {
        tracing::warn!(index = name, %error, "removing expired versions failed");
        0
    })
}

/// Compacts index `name` under `root` and reports how it went, failures included.
async fn compact_one(root: &Arc<dyn BlobStore>, name: &str, force: bool) -> Value {
    let started = Instant::now();
    let outcome = async {
        let store: Arc<dyn BlobStore> = Arc::new(PrefixedStore::try_new(Arc::clone(root), name)?);
        compact_index(store, force, Arc::new(NoProgress)).await
    }
    .await;
    let seconds = started.elapsed().as_secs_f64();
    match outcome {
        Ok(summary) => {
            tracing::info!(
                index = name,
                index_version = summary.build.manifest.index_version,
                folded_through = summary.folded_through,
                entries_folded = summary.entries_folded,
                rows_kept = summary.rows_kept,
                rows_added = summary.rows_added,
                rows_removed = summary.rows_removed,
                partitions_rebuilt = summary.partitions_rebuilt.len(),
                full_rebuild_reason = summary.full_rebuild_reason.as_deref().unwrap_or(""),
                seconds,
                "compacted"
            );
            compacted(name, &summary, seconds)
        }
        Err(error) => {
            tracing::warn!(
                index = name,
                kind = error.kind_name(),
                error = %error,
                seconds,
                "compaction failed"
            );
            failed(name, &error)
        }
    }
}

fn compacted(name: &str, summary: &CompactionSummary, seconds: f64) -> Value {
    json!({
        "index": name,
        "status": "compacted",
        "index_version": summary.build.manifest.index_version,
        "folded_through": summary.folded_through,
        "entries_folded": summary.entries_folded,
        "rows_kept": summary.rows_kept,
        "rows_added": summary.rows_added,
        "rows_removed": summary.rows_removed,
        "partitions_rebuilt": summary.partitions_rebuilt.len(),
        "num_partitions": summary.build.manifest.partitions.len(),
        "full_rebuild_reason": summary.full_rebuild_reason,
        "num_vectors": summary.build.manifest.num_vectors,
        "seconds": (seconds * 1000.0).round() / 1000.0,
    })
}

fn failed(name: &str, error: &Error) -> Value {
    json!({
        "index": name,
        "status": "failed",
        "error": {"kind": error.kind_name(), "message": error.to_string()},
    })
}

/// An event the compactor could not act on at all; Lambda reports it as a function error whose
/// type is the error's kind (`invalid_input`, `storage`, ...).
#[derive(Debug)]
pub struct CompactorError(pub Error);

impl std::fmt::Display for CompactorError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for CompactorError {}

impl From<CompactorError> for lambda_runtime::Diagnostic {
    fn from(error: CompactorError) -> Self {
        lambda_runtime::Diagnostic {
            error_type: error.0.kind_name().to_string(),
            error_message: error.0.to_string(),
        }
    }
}

/// Runs the compactor function: configuration and store once per cold start, then events.
pub async fn run() -> Result<(), lambda_runtime::Error> {
    crate::init_logging();
    let config = FunctionConfig::from_env()?;
    let root = store_for_location(&config.root).await?;
    let root = &root;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let budget = crate::remaining_budget(event.context.deadline, LAMBDA_MAX_TIMEOUT_MS);
        handle_event(
            Arc::clone(root),
            &event.payload,
            &event.context.request_id,
            Instant::now() + budget,
        )
        .await
        .map_err(|error| {
            tracing::error!(kind = error.kind_name(), error = %error, "compactor run failed");
            CompactorError(error)
        })
    }))
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Map;
    use squash_core::attributes::{AttributeSchema, AttributeTable};
    use squash_core::index::{BuildInput, BuildParams};
    use squash_core::metric::Metric;
    use squash_core::writes::{log_key, UpsertRequest, UpsertRow};
    use squash_service::embedded::{EmbeddedConfig, EmbeddedIndex};
    use squash_service::write_index;
    use squash_storage::MemoryStore;
    use std::collections::BTreeSet;

    const DIM: usize = 4;
    const ROWS: u64 = 300;

    fn vector(id: u64) -> Vec<f32> {
        (0..DIM)
            .map(|d| ((id * 7 + d as u64 * 13) % 29) as f32 - 14.0)
            .collect()
    }

    /// Builds a small index `name` under `root`.
    async fn build(root: &Arc<dyn BlobStore>, name: &str) {
        build_version(root, name, "1", None).await
    }

    /// Builds version `version` of index `name` under `root`, keeping replaced versions
    /// `retain_versions_s`.
    async fn build_version(
        root: &Arc<dyn BlobStore>,
        name: &str,
        version: &str,
        retain_versions_s: Option<u64>,
    ) {
        let ids: Vec<u64> = (0..ROWS).collect();
        let mut attributes = AttributeTable::with_columns(0, ROWS as usize);
        attributes.num_rows = ROWS as usize;
        let input = BuildInput {
            dim: DIM,
            vectors: ids.iter().flat_map(|&id| vector(id)).collect(),
            ids,
            schema: AttributeSchema { columns: vec![] },
            attributes,
        };
        let mut params = BuildParams::new(Metric::L2, version);
        params.num_partitions = Some(2);
        params.seed = 42;
        params.retain_versions_s = retain_versions_s;
        let store: Arc<dyn BlobStore> =
            Arc::new(PrefixedStore::try_new(Arc::clone(root), name).expect("prefix"));
        write_index(store, input, params, Arc::new(NoProgress))
            .await
            .expect("build");
    }

    /// Upserts rows `ids` into index `name` under `root`: one log entry.
    async fn upsert(root: &Arc<dyn BlobStore>, name: &str, ids: std::ops::Range<u64>) {
        let index = EmbeddedIndex::open_with(Arc::clone(root), name, EmbeddedConfig::default())
            .await
            .expect("open");
        let rows = ids
            .map(|id| UpsertRow {
                id,
                vector: vector(id + 1),
                attributes: Map::new(),
            })
            .collect();
        index.upsert(UpsertRequest { rows }).await.expect("upsert");
    }

    async fn manifest_bytes(root: &Arc<dyn BlobStore>, name: &str) -> Vec<u8> {
        root.get(&format!("{name}/{MANIFEST_KEY}"))
            .await
            .expect("manifest")
    }

    fn far_deadline() -> Instant {
        Instant::now() + Duration::from_secs(600)
    }

    fn field_of(result: Result<CompactorEvent>) -> String {
        match result {
            Err(Error::InvalidInput { field, .. }) => field,
            other => panic!("expected an invalid input, got {other:?}"),
        }
    }

    #[test]
    fn events_name_one_index_or_mean_every_due_one() {
        let scheduled = json!({
            "version": "0",
            "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
            "detail-type": "Scheduled Event",
            "source": "aws.events",
            "account": "123456789012",
            "time": "2025-01-01T00:00:00Z",
            "region": "eu-west-1",
            "resources": ["arn:aws:events:eu-west-1:123456789012:rule/squash-compaction"],
            "detail": {}
        });
        for event in [scheduled, json!({}), Value::Null, json!([1, 2])] {
            assert_eq!(parse_event(&event).expect("event"), CompactorEvent::Due);
        }
        assert_eq!(
            parse_event(&json!({"index": "films"})).expect("event"),
            CompactorEvent::One {
                index: "films".into(),
                force: false
            }
        );
        assert_eq!(
            parse_event(&json!({"index": "films", "force": true})).expect("event"),
            CompactorEvent::One {
                index: "films".into(),
                force: true
            }
        );
        assert_eq!(field_of(parse_event(&json!({"index": "../x"}))), "index");
        assert_eq!(field_of(parse_event(&json!({"index": 3}))), "index");
        assert_eq!(field_of(parse_event(&json!({"force": true}))), "force");
        assert_eq!(
            field_of(parse_event(&json!({"index": "films", "force": "yes"}))),
            "force"
        );
        assert_eq!(
            field_of(parse_event(&json!({"index": "films", "forse": true}))),
            "forse"
        );
    }

    #[test]
    fn log_positions_belong_to_indexes_with_a_manifest() {
        let keys: Vec<String> = [
            "films/manifest.sqsh",
            "films/v1/partition-00000.sqsh",
            &format!("films/{}", log_key(3)),
            &format!("films/{}", log_key(4)),
            "films/log/notes.txt",
            "songs/manifest.sqsh",
            &format!("orphan/{}", log_key(1)),
            "_answers/x/manifest.sqsh",
            "manifest.sqsh",
        ]
        .iter()
        .map(|key| key.to_string())
        .collect();
        let by_index = log_positions_by_index(&keys);
        assert_eq!(
            by_index.into_iter().collect::<Vec<_>>(),
            vec![
                ("films".to_string(), vec![3, 4]),
                ("songs".to_string(), vec![]),
            ]
        );
    }

    #[tokio::test]
    async fn scheduled_runs_compact_only_indexes_with_unfolded_writes() {
        let root: Arc<dyn BlobStore> = Arc::new(MemoryStore::new());
        build(&root, "busy").await;
        build(&root, "quiet").await;
        upsert(&root, "busy", 0..5).await;
        upsert(&root, "busy", ROWS..ROWS + 3).await;
        let states: Vec<(String, IndexState)> = survey(root.as_ref())
            .await
            .expect("survey")
            .into_iter()
            .map(|(name, state)| (name, state.expect("state")))
            .collect();
        assert_eq!(
            states,
            vec![
                (
                    "busy".to_string(),
                    IndexState::Due {
                        folded_through: 0,
                        unfolded_entries: 2
                    }
                ),
                (
                    "quiet".to_string(),
                    IndexState::UpToDate { folded_through: 0 }
                ),
            ]
        );

        // Too little time left: nothing starts, nothing changes.
        let busy_before = manifest_bytes(&root, "busy").await;
        let answer = handle_event(Arc::clone(&root), &json!({}), "r", Instant::now())
            .await
            .expect("answer");
        assert_eq!(answer["compacted"], json!(0), "{answer}");
        assert_eq!(
            answer["indexes"][1]["status"],
            json!("deferred"),
            "{answer}"
        );
        assert_eq!(answer["indexes"][1]["unfolded_entries"], json!(2));
        assert_eq!(manifest_bytes(&root, "busy").await, busy_before);

        let quiet_before = manifest_bytes(&root, "quiet").await;
        let answer = handle_event(
            Arc::clone(&root),
            &json!({"source": "aws.events"}),
            "r",
            far_deadline(),
        )
        .await
        .expect("answer");
        assert_eq!(answer["compacted"], json!(1), "{answer}");
        assert_eq!(answer["failed"], json!(0), "{answer}");
        let results = answer["indexes"].as_array().expect("results");
        let quiet = &results[0];
        assert_eq!(quiet["index"], json!("quiet"), "{answer}");
        assert_eq!(quiet["status"], json!("up_to_date"));
        let busy = &results[1];
        assert_eq!(busy["index"], json!("busy"), "{answer}");
        assert_eq!(busy["status"], json!("compacted"));
        assert_eq!(busy["folded_through"], json!(2));
        assert_eq!(busy["entries_folded"], json!(2));
        assert_eq!(busy["rows_kept"], json!(ROWS - 5));
        assert_eq!(busy["rows_added"], json!(8));
        assert_eq!(busy["rows_removed"], json!(5));
        assert_eq!(busy["num_vectors"], json!(ROWS + 3));
        assert!(busy["index_version"].as_str().is_some_and(|v| v != "1"));
        assert_eq!(manifest_bytes(&root, "quiet").await, quiet_before);

        // Folded: the next run rewrites nothing.
        let busy_after = manifest_bytes(&root, "busy").await;
        let answer = handle_event(Arc::clone(&root), &json!({}), "r", far_deadline())
            .await
            .expect("answer");
        assert_eq!(answer["compacted"], json!(0), "{answer}");
        assert!(answer["indexes"]
            .as_array()
            .expect("results")
            .iter()
            .all(|result| result["status"] == "up_to_date"));
        assert_eq!(manifest_bytes(&root, "busy").await, busy_after);
    }

    #[tokio::test]
    async fn scheduled_runs_remove_versions_past_their_retention() {
        let root: Arc<dyn BlobStore> = Arc::new(MemoryStore::new());
        for version in ["a1", "a2", "a3"] {
            build_version(&root, "quiet", version, Some(1)).await;
        }
        // "a1" was replaced less than a second ago: still kept.
        let versions = |keys: Vec<String>| -> BTreeSet<String> {
            keys.iter()
                .filter_map(|key| key.strip_prefix("quiet/v")?.split_once('/'))
                .map(|(version, _)| version.to_string())
                .collect()
        };
        assert_eq!(versions(root.list("quiet/v").await.expect("list")).len(), 3);
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let answer = handle_event(Arc::clone(&root), &json!({}), "r", far_deadline())
            .await
            .expect("answer");
        let quiet = &answer["indexes"][0];
        assert_eq!(quiet["status"], json!("up_to_date"), "{answer}");
        assert!(
            quiet["expired_objects_removed"].as_u64() > Some(0),
            "{answer}"
        );
        // "a2", replaced last, stays for readers in flight; "a1" is gone.
        assert_eq!(
            versions(root.list("quiet/v").await.expect("list")),
            BTreeSet::from(["a2".to_string(), "a3".to_string()])
        );
    }

    #[tokio::test]
    async fn direct_invocations_compact_one_index_and_report_errors() {
        let root: Arc<dyn BlobStore> = Arc::new(MemoryStore::new());
        build(&root, "films").await;
        let answer = handle_event(
            Arc::clone(&root),
            &json!({"index": "films"}),
            "r",
            far_deadline(),
        )
        .await
        .expect("answer");
        assert_eq!(answer["failed"], json!(1), "{answer}");
        assert_eq!(
            answer["indexes"][0]["error"]["kind"],
            json!("invalid_input")
        );

        let answer = handle_event(
            Arc::clone(&root),
            &json!({"index": "films", "force": true}),
            "r",
            far_deadline(),
        )
        .await
        .expect("answer");
        assert_eq!(answer["compacted"], json!(1), "{answer}");
        assert_eq!(answer["indexes"][0]["rows_kept"], json!(ROWS));
        assert_eq!(answer["indexes"][0]["entries_folded"], json!(0));

        upsert(&root, "films", 0..2).await;
        let answer = handle_event(
            Arc::clone(&root),
            &json!({"index": "films"}),
            "r",
            far_deadline(),
        )
        .await
        .expect("answer");
        assert_eq!(
            answer["indexes"][0]["status"],
            json!("compacted"),
            "{answer}"
        );
        assert_eq!(answer["indexes"][0]["folded_through"], json!(1));

        let answer = handle_event(
            Arc::clone(&root),
            &json!({"index": "nope"}),
            "r",
            far_deadline(),
        )
        .await
        .expect("answer");
        assert_eq!(answer["indexes"][0]["error"]["kind"], json!("not_found"));

        let refused = handle_event(
            Arc::clone(&root),
            &json!({"index": "a/b"}),
            "r",
            far_deadline(),
        )
        .await;
        assert!(
            matches!(refused, Err(Error::InvalidInput { ref field, .. }) if field == "index"),
            "{refused:?}"
        );
    }
}
