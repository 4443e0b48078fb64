//! How a planned batch is spread over worker invocations: by partition, and for a large batch
//! by queries too.
//!
//! Every partition's share of a batch goes first to its slot's node of the invocation tree
//! (`invocation_tree.rs`), whose warm container likely holds it. When a slot's estimated work
//! ([`WorkModel`]) exceeds the target time of one invocation, the slot keeps what fits the
//! target and the rest of each of its partitions' queries is cut into parts, each sent to an
//! invocation of its own: on AWS a concurrent invocation of the same function, which Lambda
//! runs in another container (cold, so a part's estimate includes reading its partition). The
//! parts are leaves the coordinator invokes itself: a part never waits on another invocation,
//! so however few containers a function gets (one per name under `cargo lambda watch`), the
//! parts cannot deadlock.
//!
//! When the parts would exceed the cap on invocations, the target is raised until they fit:
//! the batch then runs longer per invocation rather than over more of them. Small requests
//! never split, so warm caches keep serving them.
//!
//! Pure: builds plans, invokes nothing.

use std::collections::BTreeMap;
use std::ops::Range;

use squash_core::error::Result;
use squash_core::protocol::{PartitionTask, TreeNode};
use squash_core::search::{weighted_rows, BatchPlan, WorkModel};

use crate::invocation_tree::{tasks_by_slot, tree_of_slots, TreeShape};

/// Default share of the request's time budget one invocation is aimed at: the first attempt
/// of a child gets 60 % of the time left, so a part estimated at a quarter of it finishes
/// with room for a slower vCPU than the model's, and a retry after a failure still fits.
pub const DEFAULT_TARGET_SHARE: f64 = 0.25;

/// Default cap on the worker invocations of one request. Lambda's default account
/// concurrency is 1,000; a cap well below it leaves room for other requests.
pub const DEFAULT_MAX_INVOCATIONS: usize = 64;

/// The factor the target rises by, a step at a time (each step lays the parts out again),
/// while the parts exceed the cap.
const TARGET_STEP: f64 = 1.25;

/// How a batch may be split.
#[derive(Debug, Clone, PartialEq)]
pub struct SplitSettings {
    /// Estimated milliseconds one invocation is aimed at.
    pub target_ms: f64,
    /// Most worker invocations of one request (before retries); never fewer than the slots
    /// the batch needs, one each.
    pub max_invocations: usize,
    /// Most rows (exact rows weighted) one invocation may be given: the work limit of a
    /// request (`RequestLimits::max_rows_per_invocation`), which a split must respect too.
    pub max_rows: u64,
    /// Functions the extra parts go to, in turn; empty sends each part to its slot's own
    /// function (Lambda runs concurrent invocations in separate containers).
    pub split_functions: Vec<String>,
    /// The work estimates.
    pub model: WorkModel,
}

/// The invocations of one request.
#[derive(Debug, Clone, PartialEq)]
pub struct InvocationPlan {
    /// What the coordinator invokes: the slots' tree, then the extra parts (leaves).
    pub nodes: Vec<TreeNode>,
    /// Worker invocations planned (nodes of the tree and parts).
    pub num_invocations: usize,
    /// Of those, the extra parts.
    pub num_split: usize,
    /// The largest estimate of one invocation's own time, in milliseconds (cold reads
    /// included for parts).
    pub slowest_ms: f64,
    /// The most rows one invocation is given (exact rows weighted), and its heaviest partition.
    pub heaviest_rows: (u64, u32),
}

/// A run of one task's queries (positions in the task's query list).
#[derive(Debug, Clone)]
struct Piece {
    task: usize,
    queries: Range<usize>,
}

/// Per task, the estimated milliseconds and weighted rows of each of its queries.
struct TaskWork {
    query_ms: Vec<f64>,
    query_rows: Vec<u64>,
    cold_load_ms: f64,
}

/// Where each task's queries go for one target.
struct Layout {
    /// Per slot (with tasks), the pieces its own node runs.
    slots: Vec<(usize, Vec<Piece>)>,
    /// The extra parts, one piece each, with their slot.
    parts: Vec<(usize, Piece)>,
}

/// Returns the invocations of `plan` (whose tasks carry their objects' sizes) on an index of
/// `dim` dimensions.
pub fn plan_invocations(
    plan: &BatchPlan,
    dim: usize,
    functions: &[String],
    shape: TreeShape,
    settings: &SplitSettings,
) -> Result<InvocationPlan> {
    let work: Vec<TaskWork> = plan
        .tasks
        .iter()
        .enumerate()
        .map(|(index, task)| {
            let rows_of = |position: usize| -> u64 {
                plan.task_rows
                    .get(index)
                    .and_then(|rows| rows.get(position))
                    .copied()
                    .unwrap_or(0)
            };
            let query_ms = task
                .queries
                .iter()
                .enumerate()
                .map(|(position, &q)| {
                    settings
                        .model
                        .query_ms(&plan.queries[q as usize], rows_of(position), dim)
                })
                .collect();
            let query_rows = task
                .queries
                .iter()
                .enumerate()
                .map(|(position, &q)| weighted_rows(&plan.queries[q as usize], rows_of(position)))
                .collect();
            TaskWork {
                query_ms,
                query_rows,
                cold_load_ms: settings.model.cold_load_ms(task.object_bytes.unwrap_or(0)),
            }
        })
        .collect();
    let tasks_of_slot = tasks_by_slot(&plan.tasks, functions.len());
    // Past the largest slot's work, a higher target splits nothing more.
    let largest_slot_ms = tasks_of_slot
        .values()
        .map(|tasks| {
            tasks
                .iter()
                .map(|&task| work[task].query_ms.iter().sum::<f64>())
                .sum::<f64>()
        })
        .fold(0.0, f64::max);
    let mut target = settings.target_ms.max(0.001);
    let layout = loop {
        let layout = lay_out(&tasks_of_slot, &work, target, settings.max_rows);
        let fits = layout.slots.len() + layout.parts.len() <= settings.max_invocations;
        if fits || layout.parts.is_empty() {
            break layout;
        }
        if target > largest_slot_ms {
            // Only the row limit still makes parts, more than the cap allows: keep within the
            // cap and let the work limit refuse what one invocation cannot do.
            break lay_out(&tasks_of_slot, &work, target, u64::MAX);
        }
        target *= TARGET_STEP;
    };

    let task_of = |piece: &Piece| -> PartitionTask {
        let task = &plan.tasks[piece.task];
        PartitionTask {
            partition: task.partition,
            queries: task.queries[piece.queries.clone()].to_vec(),
            object_bytes: task.object_bytes,
            excluded_ids: task.excluded_ids.clone(),
        }
    };
    let mut slowest_ms = 0f64;
    let mut heaviest_rows = (0u64, 0u32);
    let mut weigh = |pieces: &[&Piece], cold: bool| {
        let mut ms = 0f64;
        let mut rows = 0u64;
        let mut heaviest = (0u64, 0u32);
        for piece in pieces {
            let task_work = &work[piece.task];
            let piece_rows: u64 = task_work.query_rows[piece.queries.clone()].iter().sum();
            ms += task_work.query_ms[piece.queries.clone()]
                .iter()
                .sum::<f64>();
            if cold {
                ms += task_work.cold_load_ms;
            }
            rows = rows.saturating_add(piece_rows);
            if piece_rows >= heaviest.0 {
                heaviest = (piece_rows, plan.tasks[piece.task].partition);
            }
        }
        slowest_ms = slowest_ms.max(ms);
        if rows > heaviest_rows.0 {
            heaviest_rows = (rows, heaviest.1);
        }
    };
    let slot_nodes: Vec<(usize, Vec<PartitionTask>)> = layout
        .slots
        .iter()
        .map(|(slot, pieces)| {
            weigh(&pieces.iter().collect::<Vec<_>>(), false);
            (*slot, pieces.iter().map(task_of).collect())
        })
        .collect();
    let mut nodes = tree_of_slots(slot_nodes, functions, shape)?;
    let num_slot_nodes = layout.slots.len();
    for (position, (slot, piece)) in layout.parts.iter().enumerate() {
        weigh(&[piece], true);
        let function = if settings.split_functions.is_empty() {
            functions[*slot].clone()
        } else {
            settings.split_functions[position % settings.split_functions.len()].clone()
        };
        nodes.push(TreeNode {
            function,
            tasks: vec![task_of(piece)],
            children: Vec::new(),
        });
    }
    Ok(InvocationPlan {
        nodes,
        num_invocations: num_slot_nodes + layout.parts.len(),
        num_split: layout.parts.len(),
        slowest_ms,
        heaviest_rows,
    })
}

/// Lays the tasks out for `target_ms`: a slot whose work fits keeps it all; otherwise the
/// slot's node takes queries (tasks in order, queries in order) until it holds the target,
/// and the rest of each task is cut into parts of at most the target, less the part's cold
/// read (but at least a quarter of the target, so a large partition still splits). No node
/// or part takes more than `max_rows` rows, unless one query alone does.
fn lay_out(
    tasks_of_slot: &BTreeMap<usize, Vec<usize>>,
    work: &[TaskWork],
    target: f64,
    max_rows: u64,
) -> Layout {
    let mut layout = Layout {
        slots: Vec::new(),
        parts: Vec::new(),
    };
    for (&slot, tasks) in tasks_of_slot {
        let total: f64 = tasks
            .iter()
            .map(|&task| work[task].query_ms.iter().sum::<f64>())
            .sum();
        let total_rows: u64 = tasks
            .iter()
            .flat_map(|&task| work[task].query_rows.iter())
            .fold(0u64, |sum, &rows| sum.saturating_add(rows));
        if total <= target && total_rows <= max_rows {
            let pieces = tasks
                .iter()
                .map(|&task| Piece {
                    task,
                    queries: 0..work[task].query_ms.len(),
                })
                .collect();
            layout.slots.push((slot, pieces));
            continue;
        }
        let mut own: Vec<Piece> = Vec::new();
        let mut own_ms = 0f64;
        let mut own_rows = 0u64;
        for &task in tasks {
            let query_ms = &work[task].query_ms;
            let query_rows = &work[task].query_rows;
            let mut start = 0;
            while start < query_ms.len()
                && own_ms + query_ms[start] <= target
                && own_rows.saturating_add(query_rows[start]) <= max_rows
            {
                own_ms += query_ms[start];
                own_rows = own_rows.saturating_add(query_rows[start]);
                start += 1;
            }
            // The slot's node never stays empty: it takes one query even over the target.
            if own.is_empty() && start == 0 && !query_ms.is_empty() {
                own_ms += query_ms[0];
                own_rows = own_rows.saturating_add(query_rows[0]);
                start = 1;
            }
            if start > 0 {
                own.push(Piece {
                    task,
                    queries: 0..start,
                });
            }
            let capacity = (target - work[task].cold_load_ms).max(target / 4.0);
            while start < query_ms.len() {
                let mut end = start + 1;
                let mut part_ms = query_ms[start];
                let mut part_rows = query_rows[start];
                while end < query_ms.len()
                    && part_ms + query_ms[end] <= capacity
                    && part_rows.saturating_add(query_rows[end]) <= max_rows
                {
                    part_ms += query_ms[end];
                    part_rows = part_rows.saturating_add(query_rows[end]);
                    end += 1;
                }
                layout.parts.push((
                    slot,
                    Piece {
                        task,
                        queries: start..end,
                    },
                ));
                start = end;
            }
        }
        layout.slots.push((slot, own));
    }
    layout
}

#[cfg(test)]
mod tests {
    use super::*;
    use squash_core::protocol::{SearchKnobs, SearchOptions, WorkerQuery};
    use squash_core::search::DEFAULT_WORK_MODEL;

    fn slots(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("w{i}")).collect()
    }

    /// A batch of `num_queries` queries each visiting every one of `num_partitions`
    /// partitions, scanning `rows` rows in each.
    fn batch(num_queries: usize, num_partitions: u32, rows: u64) -> BatchPlan {
        let knobs = SearchKnobs::resolve(&SearchOptions::default()).expect("knobs");
        let queries = (0..num_queries)
            .map(|i| WorkerQuery {
                vector: vec![i as f32; 8],
                k: 10,
                filter: None,
                include_attributes: false,
                knobs,
                probe_radius: Some(1.0),
            })
            .collect();
        let tasks: Vec<PartitionTask> = (0..num_partitions)
            .map(|partition| PartitionTask {
                partition,
                queries: (0..num_queries as u32).collect(),
                object_bytes: Some(10 << 20),
                excluded_ids: Vec::new(),
            })
            .collect();
        BatchPlan {
            queries,
            plans: Vec::new(),
            task_rows: vec![vec![rows; num_queries]; tasks.len()],
            tasks,
        }
    }

    fn settings(target_ms: f64, max_invocations: usize) -> SplitSettings {
        SplitSettings {
            target_ms,
            max_invocations,
            max_rows: u64::MAX,
            split_functions: Vec::new(),
            model: DEFAULT_WORK_MODEL,
        }
    }

    fn all_nodes(nodes: &[TreeNode]) -> Vec<&TreeNode> {
        let mut all = Vec::new();
        for node in nodes {
            all.push(node);
            all.extend(all_nodes(&node.children));
        }
        all
    }

    /// Asserts every (partition, query) of `plan` is run by exactly one node.
    fn assert_each_query_once(plan: &BatchPlan, nodes: &[TreeNode]) {
        let mut got: Vec<(u32, u32)> = all_nodes(nodes)
            .iter()
            .flat_map(|node| node.tasks.iter())
            .flat_map(|task| task.queries.iter().map(move |&q| (task.partition, q)))
            .collect();
        got.sort_unstable();
        let mut want: Vec<(u32, u32)> = plan
            .tasks
            .iter()
            .flat_map(|task| task.queries.iter().map(move |&q| (task.partition, q)))
            .collect();
        want.sort_unstable();
        assert_eq!(got, want);
    }

    #[test]
    fn a_small_batch_keeps_one_node_per_slot() {
        let plan = batch(10, 8, 5_000);
        let shape = TreeShape::try_new(2, 3).expect("shape");
        let invocations =
            plan_invocations(&plan, 50, &slots(4), shape, &settings(2_500.0, 64)).expect("plan");
        assert_eq!(invocations.num_split, 0);
        assert_eq!(invocations.num_invocations, 4);
        let nodes = all_nodes(&invocations.nodes);
        assert_eq!(nodes.len(), 4);
        for node in nodes {
            for task in &node.tasks {
                assert_eq!(format!("w{}", task.partition % 4), node.function);
                assert_eq!(task.queries.len(), 10);
            }
        }
        assert_each_query_once(&plan, &invocations.nodes);
    }

    #[test]
    fn a_large_batch_splits_into_parts_under_the_target_and_the_cap() {
        // 10,000 queries x 50,000 rows of 128 dims on 8 partitions: minutes of work.
        let plan = batch(10_000, 8, 50_000);
        let shape = TreeShape::try_new(4, 3).expect("shape");
        let target = 2_500.0;
        let invocations =
            plan_invocations(&plan, 128, &slots(4), shape, &settings(target, 1_000)).expect("plan");
        assert!(invocations.num_split > 8, "{}", invocations.num_split);
        assert!(
            invocations.slowest_ms <= target,
            "{}",
            invocations.slowest_ms
        );
        assert_eq!(
            all_nodes(&invocations.nodes).len(),
            invocations.num_invocations
        );
        assert_each_query_once(&plan, &invocations.nodes);
        // Parts are leaves of their slot's function, one partition each.
        for part in &invocations.nodes[invocations.nodes.len() - invocations.num_split..] {
            assert!(part.children.is_empty());
            assert_eq!(part.tasks.len(), 1);
            assert_eq!(format!("w{}", part.tasks[0].partition % 4), part.function);
        }

        // A cap of 8 raises the target instead of exceeding it.
        let capped =
            plan_invocations(&plan, 128, &slots(4), shape, &settings(target, 8)).expect("plan");
        assert!(capped.num_invocations <= 8, "{}", capped.num_invocations);
        assert!(capped.num_split > 0);
        assert!(capped.slowest_ms > target, "{}", capped.slowest_ms);
        assert_each_query_once(&plan, &capped.nodes);

        // A cap below the slots needed still runs every slot once, unsplit.
        let minimal =
            plan_invocations(&plan, 128, &slots(4), shape, &settings(target, 1)).expect("plan");
        assert_eq!((minimal.num_invocations, minimal.num_split), (4, 0));
        assert_each_query_once(&plan, &minimal.nodes);
    }

    #[test]
    fn parts_go_to_the_split_functions_in_turn() {
        let plan = batch(2_000, 2, 50_000);
        let shape = TreeShape::try_new(2, 3).expect("shape");
        let mut split = settings(100.0, 64);
        split.split_functions = vec!["s0".into(), "s1".into()];
        let invocations = plan_invocations(&plan, 128, &slots(2), shape, &split).expect("plan");
        assert!(invocations.num_split >= 4, "{}", invocations.num_split);
        let parts = &invocations.nodes[invocations.nodes.len() - invocations.num_split..];
        for (position, part) in parts.iter().enumerate() {
            assert_eq!(part.function, format!("s{}", position % 2));
        }
        assert_each_query_once(&plan, &invocations.nodes);
    }

    #[test]
    fn no_invocation_takes_more_rows_than_the_limit() {
        // Cheap rows (16 dims) under a generous target, but 100 x 2 x 9,000 rows per slot.
        let plan = batch(100, 4, 9_000);
        let shape = TreeShape::try_new(2, 3).expect("shape");
        let mut limited = settings(1e9, 64);
        limited.max_rows = 100_000;
        let invocations = plan_invocations(&plan, 16, &slots(2), shape, &limited).expect("plan");
        assert!(invocations.num_split > 0);
        assert!(
            invocations.heaviest_rows.0 <= 100_000,
            "{:?}",
            invocations.heaviest_rows
        );
        assert_each_query_once(&plan, &invocations.nodes);
    }

    #[test]
    fn rows_beyond_what_the_cap_allows_stay_within_the_cap_and_are_reported() {
        // 1,000 queries x 4 partitions x 50,000 rows under a limit of 100,000 rows per
        // invocation would need about 2,000 parts; the cap is 16.
        let plan = batch(1_000, 4, 50_000);
        let shape = TreeShape::try_new(2, 3).expect("shape");
        let mut limited = settings(1.0, 16);
        limited.max_rows = 100_000;
        let invocations = plan_invocations(&plan, 16, &slots(4), shape, &limited).expect("plan");
        assert!(
            invocations.num_invocations <= 16,
            "{}",
            invocations.num_invocations
        );
        assert!(
            invocations.heaviest_rows.0 > 100_000,
            "{:?}",
            invocations.heaviest_rows
        );
        assert_each_query_once(&plan, &invocations.nodes);
    }

    #[test]
    fn the_heaviest_invocation_is_reported_for_the_limit() {
        let mut plan = batch(100, 2, 1_000);
        plan.task_rows[1] = vec![9_000; 100];
        let shape = TreeShape::try_new(2, 3).expect("shape");
        let invocations =
            plan_invocations(&plan, 16, &slots(2), shape, &settings(1e9, 64)).expect("plan");
        assert_eq!(invocations.heaviest_rows, (900_000, 1));
    }
}
