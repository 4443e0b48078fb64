//! The embedded mode: coordinator and worker stages run in-process over an index in a
//! [`BlobStore`], through the same request/response types the Lambda functions carry.
//!
//! Also owns writing a build to a store: objects first, manifest last, then the removal of
//! versions no reader can still be using.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};
use crate::index::build::{build_index, BuildInput, BuildParams, BuildProgress, BuildSummary};
use crate::index::{CoordinatorData, Manifest, PartitionData, MANIFEST_KEY};
use crate::protocol::{PartitionOutcome, QueryRequest, QueryResponse, QueryStats};
use crate::search::{merge_hits, plan_batch, search_tasks, BatchPlan};
use crate::storage::BlobStore;

/// Objects in flight between the build thread and the writer: bounds the memory a build
/// holds beyond its input to a couple of segments.
const WRITE_QUEUE_DEPTH: usize = 2;

/// Builds an index from `input` and writes it to `store`: all objects, then the manifest.
///
/// On any error the objects of the new version are deleted and the previous manifest (if any)
/// stays in place, so no half-built index is ever visible. After the switch, objects of
/// versions older than the previous one are deleted (the previous one is kept for readers
/// that opened it just before the switch).
pub async fn write_index(
    store: Arc<dyn BlobStore>,
    input: BuildInput,
    params: BuildParams,
    progress: Arc<dyn BuildProgress + Send>,
) -> Result<BuildSummary> {
    let previous_version_opt = match store.get(MANIFEST_KEY).await {
        Ok(bytes) => Manifest::decode(MANIFEST_KEY, bytes)
            .ok()
            .map(|m| m.index_version),
        Err(Error::NotFound { .. }) => None,
        Err(other) => return Err(other),
    };
    let version = params.index_version.clone();
    let (sender, mut receiver) = tokio::sync::mpsc::channel::<(String, Vec<u8>)>(WRITE_QUEUE_DEPTH);
    let build = tokio::task::spawn_blocking(move || {
        build_index(input, &params, progress.as_ref(), &mut |key, bytes| {
            sender
                .blocking_send((key.to_string(), bytes))
                .map_err(|_| Error::Storage {
                    message: "the object writer stopped".to_string(),
                    retryable: false,
                })
        })
    });
    let mut written: Vec<String> = Vec::new();
    let mut write_error_opt: Option<Error> = None;
    while let Some((key, bytes)) = receiver.recv().await {
        if write_error_opt.is_some() {
            continue;
        }
        match store.put(&key, bytes).await {
            Ok(()) => written.push(key),
            Err(error) => {
                write_error_opt = Some(error);
                receiver.close();
            }
        }
    }
    let build_result = build.await.map_err(|e| Error::Storage {
        message: format!("build task failed: {e}"),
        retryable: false,
    })?;
    let outcome = match (build_result, write_error_opt) {
        (_, Some(write_error)) => Err(write_error),
        (Err(build_error), None) => Err(build_error),
        (Ok(summary), None) => {
            let manifest_bytes = summary.manifest.encode()?;
            store
                .put(MANIFEST_KEY, manifest_bytes)
                .await
                .map(|()| summary)
        }
    };
    match outcome {
        Ok(summary) => {
            remove_stale_versions(store.as_ref(), &version, previous_version_opt.as_deref())
                .await?;
            Ok(summary)
        }
        Err(error) => {
            for key in written {
                let _ = store.delete(&key).await;
            }
            Err(error)
        }
    }
}

async fn remove_stale_versions(
    store: &dyn BlobStore,
    current: &str,
    previous_opt: Option<&str>,
) -> Result<()> {
    let current_prefix = format!("v{current}/");
    let previous_prefix_opt = previous_opt.map(|v| format!("v{v}/"));
    for key in store.list("v").await? {
        let keep = key.starts_with(&current_prefix)
            || previous_prefix_opt
                .as_deref()
                .is_some_and(|prefix| key.starts_with(prefix));
        if !keep {
            store.delete(&key).await?;
        }
    }
    Ok(())
}

/// An opened index, searched in-process.
#[derive(Debug)]
pub struct EmbeddedIndex {
    store: Arc<dyn BlobStore>,
    manifest: Manifest,
    coordinator: CoordinatorData,
    partitions: Mutex<HashMap<u32, Arc<PartitionData>>>,
}

impl EmbeddedIndex {
    /// Opens the index in `store`: reads the manifest and the coordinator object.
    pub async fn open(store: Arc<dyn BlobStore>) -> Result<EmbeddedIndex> {
        let manifest_bytes = store.get(MANIFEST_KEY).await.map_err(|error| match error {
            Error::NotFound { .. } => Error::NotFound {
                what: format!("no index at {} (no {MANIFEST_KEY})", store.describe()),
            },
            other => other,
        })?;
        let manifest = Manifest::decode(MANIFEST_KEY, manifest_bytes)?;
        let coordinator_bytes = store.get(&manifest.coordinator_key).await?;
        let coordinator = CoordinatorData::decode(&manifest.coordinator_key, coordinator_bytes)?;
        coordinator.check_matches(&manifest, &manifest.coordinator_key)?;
        Ok(EmbeddedIndex {
            store,
            manifest,
            coordinator,
            partitions: Mutex::new(HashMap::new()),
        })
    }

    /// Returns the manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Returns the coordinator data.
    pub fn coordinator(&self) -> &CoordinatorData {
        &self.coordinator
    }

    fn cached(&self, partition: u32) -> Result<Option<Arc<PartitionData>>> {
        let partitions = self.partitions.lock().map_err(|_| poisoned())?;
        Ok(partitions.get(&partition).cloned())
    }

    /// Loads (once) and returns partition `partition`.
    pub async fn partition(&self, partition: u32) -> Result<Arc<PartitionData>> {
        if let Some(loaded) = self.cached(partition)? {
            return Ok(loaded);
        }
        let entry = self
            .manifest
            .partitions
            .get(partition as usize)
            .ok_or_else(|| Error::NotFound {
                what: format!("partition {partition}"),
            })?;
        let bytes = self.store.get(&entry.key).await?;
        let key = entry.key.clone();
        let data = tokio::task::spawn_blocking(move || PartitionData::decode(&key, bytes))
            .await
            .map_err(|e| Error::Storage {
                message: format!("decode task failed: {e}"),
                retryable: false,
            })??;
        let data = Arc::new(data);
        self.partitions
            .lock()
            .map_err(|_| poisoned())?
            .insert(partition, Arc::clone(&data));
        Ok(data)
    }

    /// Loads every partition, so later searches do no I/O.
    pub async fn load_all(&self) -> Result<()> {
        for partition in 0..self.manifest.partitions.len() as u32 {
            self.partition(partition).await?;
        }
        Ok(())
    }

    /// Answers a batch of queries: plans, loads the partitions the plan needs, runs the worker
    /// stage in-process and merges.
    pub async fn query_batch(&self, requests: &[QueryRequest]) -> Result<Vec<QueryResponse>> {
        let plan = plan_batch(&self.coordinator, requests)?;
        for task in &plan.tasks {
            self.partition(task.partition).await?;
        }
        self.search_planned(&plan)
    }

    /// Runs a planned batch on partitions that are already loaded (no I/O).
    pub fn search_planned(&self, plan: &BatchPlan) -> Result<Vec<QueryResponse>> {
        let outcomes = search_tasks(&plan.queries, &plan.tasks, &|partition| {
            self.cached(partition)?.ok_or_else(|| Error::NotFound {
                what: format!("partition {partition} is not loaded"),
            })
        });
        merge_outcomes(plan, &outcomes, self.manifest.partitions.len())
    }
}

/// Merges per-partition outcomes into one response per planned query; a failed partition
/// fails the whole batch (the embedded mode has no partial answers).
pub fn merge_outcomes(
    plan: &BatchPlan,
    outcomes: &[PartitionOutcome],
    partitions_total: usize,
) -> Result<Vec<QueryResponse>> {
    let mut per_query_hits: Vec<Vec<Vec<crate::protocol::Hit>>> =
        vec![Vec::new(); plan.queries.len()];
    let mut per_query_stats: Vec<QueryStats> = plan
        .plans
        .iter()
        .map(|query_plan| QueryStats {
            partitions_probed: query_plan.partitions.len(),
            partitions_total,
            estimated_matches: query_plan.estimated_matches,
            ..QueryStats::default()
        })
        .collect();
    for outcome in outcomes {
        match outcome {
            PartitionOutcome::Ok { results, .. } => {
                for result in results {
                    let position = result.query as usize;
                    let Some(stats) = per_query_stats.get_mut(position) else {
                        return Err(Error::corrupt(
                            "worker response",
                            0,
                            format!("unknown query {position}"),
                        ));
                    };
                    stats.scan.add(&result.stats);
                    per_query_hits[position].push(result.hits.clone());
                }
            }
            PartitionOutcome::Failed {
                partition,
                message,
                retryable,
            } => {
                return Err(Error::Storage {
                    message: format!("partition {partition} failed: {message}"),
                    retryable: *retryable,
                });
            }
        }
    }
    Ok(per_query_hits
        .into_iter()
        .zip(per_query_stats)
        .zip(&plan.queries)
        .map(|((lists, stats), query)| QueryResponse {
            hits: merge_hits(lists, query.k),
            partial: false,
            missing_partitions: Vec::new(),
            stats,
        })
        .collect())
}

fn poisoned() -> Error {
    Error::Storage {
        message: "partition cache lock poisoned by a panicked search".to_string(),
        retryable: false,
    }
}
