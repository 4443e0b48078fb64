//! The fan-out: how one node of the invocation tree (the coordinator at the root, a worker
//! below it) starts its children, gives each a share of its time, retries a child that fails
//! or hangs, and merges the children's answers with its own.
//!
//! Used by [`crate::coordinator_service`] and [`crate::worker_service`]; it depends on neither.
//! Why the shares: a child's first attempt gets 60% of the time left, which leaves room for
//! one retry (90% of what is left then) of a child that hung, and each wait adds a grace for
//! the transport. A child that still fails has all its subtree's partitions reported as
//! failed, never silently dropped.

use std::sync::Arc;
use std::time::{Duration, Instant};

use squash_core::error::{Error, Result};
use squash_core::protocol::{
    FailedPartition, FailureKind, Hit, InvocationStats, PartitionOutcome, PartitionTask, QueryHits,
    ScanStats, TreeNode, WorkerRequest, WorkerResponse, PROTOCOL_VERSION,
};
use squash_core::search::merge_hits;

use crate::invocation_tree::child_request;
use crate::invoker::WorkerInvoker;

/// Share of a node's remaining time given to a child's first attempt; the rest leaves room
/// for one retry of a child that hung.
const FIRST_ATTEMPT_SHARE: f64 = 0.6;
/// Share of the remaining time given to the retry.
const RETRY_SHARE: f64 = 0.9;
/// Extra wait beyond a child's budget for the transport (invocation and payload transfer).
const TRANSPORT_GRACE: Duration = Duration::from_millis(100);
/// Below this budget a child is not invoked: it could not answer in time anyway.
const MIN_CHILD_BUDGET: Duration = Duration::from_millis(20);

/// What a child invocation produced, after at most one retry.
pub(crate) struct ChildOutcome {
    /// The child's answer, or a synthesized one naming all its partitions as failed.
    pub(crate) response: WorkerResponse,
    /// Per query of the child's request, its position in the parent's.
    pub(crate) parent_positions: Vec<u32>,
    /// Invocations made (1 or 2).
    pub(crate) num_attempts: u32,
    /// When the child gave no answer: its partitions, failed for the queries (in the
    /// parent's numbering) its subtree held for each.
    pub(crate) failed: Vec<FailedPartition>,
}

/// Starts one task per child of `request`, each invoking it (and retrying once).
pub(crate) fn spawn_children(
    invoker: &Arc<dyn WorkerInvoker>,
    request: &Arc<WorkerRequest>,
    deadline: Instant,
) -> Vec<tokio::task::JoinHandle<ChildOutcome>> {
    request
        .children
        .iter()
        .map(|node| {
            let invoker = Arc::clone(invoker);
            let request = Arc::clone(request);
            let node = node.clone();
            tokio::spawn(async move { invoke_child(invoker, &request, &node, deadline).await })
        })
        .collect()
}

async fn invoke_child(
    invoker: Arc<dyn WorkerInvoker>,
    parent: &WorkerRequest,
    node: &TreeNode,
    deadline: Instant,
) -> ChildOutcome {
    // Each partition of the subtree is failed for the queries the subtree held for it (in the
    // parent's numbering): a failed part of a split batch leaves its other queries whole.
    let failed_outcome = |kind: FailureKind, message: String, num_attempts: u32| {
        let failed = subtree_tasks(node)
            .into_iter()
            .map(|task| FailedPartition {
                partition: task.partition,
                kind,
                message: message.clone(),
                queries: task.queries.clone(),
            })
            .collect();
        ChildOutcome {
            response: WorkerResponse {
                protocol_version: PROTOCOL_VERSION,
                results: Vec::new(),
                searched: Vec::new(),
                failed: Vec::new(),
                invocations: Vec::new(),
            },
            parent_positions: Vec::new(),
            num_attempts,
            failed,
        }
    };
    let (mut request, parent_positions) = match child_request(parent, node, 0) {
        Ok(built) => built,
        Err(error) => return failed_outcome(FailureKind::Error, error.to_string(), 0),
    };
    let mut last_failure = (
        FailureKind::Timeout,
        format!("{}: no time left to invoke it", node.function),
    );
    let mut num_attempts = 0;
    // What a throttled child asked to wait before it is invoked again.
    let mut pause_before_retry = Duration::ZERO;
    for share in [FIRST_ATTEMPT_SHARE, RETRY_SHARE] {
        if !pause_before_retry.is_zero() {
            // Wait as asked, but never more than half of what is left, so the retry still has
            // time to answer.
            let left = deadline.saturating_duration_since(Instant::now());
            tokio::time::sleep(pause_before_retry.min(left / 2)).await;
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        let budget = remaining.mul_f64(share);
        if budget < MIN_CHILD_BUDGET {
            break;
        }
        request.budget_ms = budget.as_millis() as u64;
        let wait = (budget + TRANSPORT_GRACE).min(remaining);
        num_attempts += 1;
        let mut retryable = true;
        match tokio::time::timeout(wait, invoker.invoke(&node.function, &request)).await {
            Ok(Ok(response)) => {
                if response.results.len() == request.queries.len() {
                    return ChildOutcome {
                        response,
                        parent_positions,
                        num_attempts,
                        failed: Vec::new(),
                    };
                }
                last_failure = (
                    FailureKind::Error,
                    format!(
                        "{} answered {} queries of {}",
                        node.function,
                        response.results.len(),
                        request.queries.len()
                    ),
                );
            }
            Ok(Err(error)) => {
                let kind = match &error {
                    Error::Timeout { .. } => FailureKind::Timeout,
                    _ => FailureKind::Error,
                };
                last_failure = (kind, format!("{}: {error}", node.function));
                // A request the child refused, or a deployment fault, would fail the same way
                // again and only spend the budget.
                retryable = error.is_retryable();
                if let Error::Throttled {
                    retry_after_ms: Some(retry_after_ms),
                    ..
                } = &error
                {
                    pause_before_retry = Duration::from_millis(*retry_after_ms);
                }
            }
            Err(_) => {
                last_failure = (
                    FailureKind::Timeout,
                    format!(
                        "{} did not answer within {} ms",
                        node.function,
                        wait.as_millis()
                    ),
                );
            }
        }
        tracing::warn!(
            request_id = %parent.request_id,
            function = %node.function,
            attempt = num_attempts,
            retryable,
            failure = %last_failure.1,
            "child invocation failed"
        );
        if !retryable {
            break;
        }
    }
    failed_outcome(last_failure.0, last_failure.1, num_attempts)
}

/// Returns the tasks of `node` and of all its descendants.
fn subtree_tasks(node: &TreeNode) -> Vec<&PartitionTask> {
    let mut tasks: Vec<&PartitionTask> = node.tasks.iter().collect();
    for child in &node.children {
        tasks.extend(subtree_tasks(child));
    }
    tasks
}

/// Invocations the children of one node took.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct ChildInvocations {
    /// Invocations made, retries included.
    pub(crate) num_invocations: u32,
    /// Of those, the retries.
    pub(crate) num_retries: u32,
}

/// Waits for the children started by [`spawn_children`] and merges their answers into
/// `answer`; returns the invocations they took.
pub(crate) async fn collect_children(
    children: Vec<tokio::task::JoinHandle<ChildOutcome>>,
    answer: &mut SubtreeAnswer,
) -> Result<ChildInvocations> {
    let mut invocations = ChildInvocations::default();
    for child in children {
        let outcome = child
            .await
            .map_err(|e| Error::internal(format!("child invocation task failed: {e}")))?;
        invocations.num_invocations += outcome.num_attempts;
        invocations.num_retries += outcome.num_attempts.saturating_sub(1);
        answer.add_child(outcome)?;
    }
    Ok(invocations)
}

/// The merged answer of a subtree, built up as partitions and children report.
pub(crate) struct SubtreeAnswer {
    ks: Vec<usize>,
    hits: Vec<Vec<Hit>>,
    scan: Vec<ScanStats>,
    pub(crate) searched: Vec<u32>,
    pub(crate) failed: Vec<FailedPartition>,
    pub(crate) invocations: Vec<InvocationStats>,
}

impl SubtreeAnswer {
    pub(crate) fn new(request: &WorkerRequest) -> Self {
        SubtreeAnswer {
            ks: request.queries.iter().map(|q| q.k).collect(),
            hits: vec![Vec::new(); request.queries.len()],
            scan: vec![ScanStats::default(); request.queries.len()],
            searched: Vec::new(),
            failed: Vec::new(),
            invocations: Vec::new(),
        }
    }

    fn add_hits(&mut self, position: usize, hits: Vec<Hit>, scan: &ScanStats) {
        let current = std::mem::take(&mut self.hits[position]);
        self.hits[position] = merge_hits([current, hits], self.ks[position]);
        self.scan[position].add(scan);
    }

    pub(crate) fn add_outcome(&mut self, outcome: PartitionOutcome) {
        match outcome {
            PartitionOutcome::Ok { partition, results } => {
                self.searched.push(partition);
                for result in results {
                    self.add_hits(result.query as usize, result.hits, &result.stats);
                }
            }
            PartitionOutcome::Failed {
                partition,
                kind,
                message,
                ..
            } => self.failed.push(FailedPartition {
                partition,
                kind,
                message,
                queries: Vec::new(),
            }),
        }
    }

    /// Merges a child's answer, mapping its query positions back to this request's.
    pub(crate) fn add_child(&mut self, outcome: ChildOutcome) -> Result<()> {
        for result in outcome.response.results {
            let position = outcome
                .parent_positions
                .get(result.query as usize)
                .copied()
                .ok_or_else(|| {
                    Error::corrupt(
                        "worker response",
                        0,
                        format!("unknown query {}", result.query),
                    )
                })?;
            self.add_hits(position as usize, result.hits, &result.stats);
        }
        self.searched.extend(outcome.response.searched);
        for mut failure in outcome.response.failed {
            for query in &mut failure.queries {
                *query = outcome
                    .parent_positions
                    .get(*query as usize)
                    .copied()
                    .ok_or_else(|| {
                        Error::corrupt(
                            "worker response",
                            0,
                            format!("unknown query {query} in a failed partition"),
                        )
                    })?;
            }
            self.failed.push(failure);
        }
        self.failed.extend(outcome.failed);
        self.invocations.extend(outcome.response.invocations);
        Ok(())
    }

    /// Returns per query (by position) the merged hits and scan counts.
    pub(crate) fn into_query_results(self) -> (Vec<QueryHits>, SubtreeRest) {
        let results = self
            .hits
            .into_iter()
            .zip(self.scan)
            .enumerate()
            .map(|(position, (hits, stats))| QueryHits {
                query: position as u32,
                hits,
                stats,
            })
            .collect();
        (
            results,
            SubtreeRest {
                searched: self.searched,
                failed: self.failed,
                invocations: self.invocations,
            },
        )
    }

    /// Names, on the failures that name no queries, the queries of `tasks` (this node's own)
    /// that visit the failed partition.
    pub(crate) fn name_failed_queries(&mut self, tasks: &[PartitionTask]) {
        for failure in &mut self.failed {
            if !failure.queries.is_empty() {
                continue;
            }
            if let Some(task) = tasks.iter().find(|t| t.partition == failure.partition) {
                failure.queries = task.queries.clone();
            }
        }
    }

    pub(crate) fn finish(self, own: InvocationStats) -> WorkerResponse {
        let (results, rest) = self.into_query_results();
        let mut invocations = Vec::with_capacity(rest.invocations.len() + 1);
        invocations.push(own);
        invocations.extend(rest.invocations);
        WorkerResponse {
            protocol_version: PROTOCOL_VERSION,
            results,
            searched: rest.searched,
            failed: rest.failed,
            invocations,
        }
    }
}

/// The parts of a subtree answer besides the hits.
pub(crate) struct SubtreeRest {
    pub(crate) searched: Vec<u32>,
    pub(crate) failed: Vec<FailedPartition>,
    pub(crate) invocations: Vec<InvocationStats>,
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Mutex;

    use async_trait::async_trait;
    use squash_core::protocol::{SearchKnobs, SearchOptions, WorkerQuery};

    use super::*;

    /// Answers every invocation with the next error of a script, counting the calls.
    #[derive(Debug)]
    struct ScriptedInvoker {
        errors: Mutex<Vec<Error>>,
        num_calls: AtomicU32,
    }

    #[async_trait]
    impl WorkerInvoker for ScriptedInvoker {
        async fn invoke(
            &self,
            _function: &str,
            _request: &WorkerRequest,
        ) -> Result<WorkerResponse> {
            self.num_calls.fetch_add(1, Ordering::SeqCst);
            let next = self.errors.lock().expect("script").pop();
            Err(next.unwrap_or_else(|| Error::internal("script exhausted")))
        }
    }

    fn one_child_request() -> Arc<WorkerRequest> {
        Arc::new(WorkerRequest {
            protocol_version: PROTOCOL_VERSION,
            request_id: "r".to_string(),
            index: "idx".to_string(),
            index_version: "1".to_string(),
            budget_ms: 2_000,
            queries: vec![WorkerQuery {
                vector: vec![0.0; 4],
                k: 3,
                filter: None,
                include_attributes: false,
                knobs: SearchKnobs::resolve(&SearchOptions::default()).expect("defaults"),
                probe_radius: None,
            }],
            tasks: Vec::new(),
            children: vec![TreeNode {
                function: "worker-1".to_string(),
                tasks: vec![PartitionTask {
                    partition: 7,
                    queries: vec![0],
                    object_bytes: None,
                    excluded_ids: Vec::new(),
                }],
                children: Vec::new(),
            }],
            segment_keys: Default::default(),
        })
    }

    async fn run_script(errors: Vec<Error>) -> (ChildOutcome, u32) {
        let scripted = Arc::new(ScriptedInvoker {
            errors: Mutex::new(errors),
            num_calls: AtomicU32::new(0),
        });
        let invoker: Arc<dyn WorkerInvoker> = scripted.clone();
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut children = spawn_children(&invoker, &one_child_request(), deadline);
        let mut outcome = children.remove(0).await.expect("child task");
        // The failures as the parent sees them.
        outcome.response.failed.append(&mut outcome.failed);
        (outcome, scripted.num_calls.load(Ordering::SeqCst))
    }

    #[tokio::test]
    async fn a_retryable_failure_is_retried_once_then_named() {
        let (outcome, num_calls) = run_script(vec![
            Error::Storage {
                message: "second".to_string(),
                retryable: true,
            },
            Error::Storage {
                message: "first".to_string(),
                retryable: true,
            },
        ])
        .await;
        assert_eq!((num_calls, outcome.num_attempts), (2, 2));
        let failed = &outcome.response.failed;
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0].partition, 7);
        assert!(failed[0].message.contains("second"), "{:?}", failed[0]);
    }

    #[tokio::test]
    async fn a_fatal_failure_is_not_retried() {
        let (outcome, num_calls) =
            run_script(vec![Error::invalid("worker request", "bad field")]).await;
        assert_eq!((num_calls, outcome.num_attempts), (1, 1));
        assert_eq!(outcome.response.failed[0].kind, FailureKind::Error);
        assert!(outcome.response.failed[0].message.contains("bad field"));
    }

    #[tokio::test]
    async fn a_timeout_is_named_as_one() {
        let (outcome, num_calls) = run_script(vec![
            Error::Timeout {
                message: "late again".to_string(),
            },
            Error::Timeout {
                message: "late".to_string(),
            },
        ])
        .await;
        assert_eq!(num_calls, 2);
        assert_eq!(outcome.response.failed[0].kind, FailureKind::Timeout);
    }

    #[tokio::test]
    async fn a_throttled_child_is_retried_after_the_wait_it_asked_for() {
        let started = Instant::now();
        let (outcome, num_calls) = run_script(vec![
            Error::internal("then a bug"),
            Error::Throttled {
                message: "slow down".to_string(),
                retry_after_ms: Some(150),
            },
        ])
        .await;
        assert_eq!(num_calls, 2);
        assert!(started.elapsed() >= Duration::from_millis(150));
        assert!(outcome.response.failed[0].message.contains("then a bug"));
    }
}
