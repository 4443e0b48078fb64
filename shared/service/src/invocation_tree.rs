//! The invocation tree: which worker slot searches which partitions, and who invokes whom.
//!
//! Partition `p` is always searched by slot `p mod W` of the `W` deployed worker functions, so
//! the warm container of that slot already holds it. The slots a batch needs become the nodes
//! of a tree laid out level by level: the coordinator invokes the first `b` nodes, node `i`
//! invokes nodes `b + i*b .. b + i*b + b`. Every query therefore starts all its workers in
//! `O(log_b W)` rounds. A parent always comes before its children in slot order, so no slot
//! ever waits on itself or on a slot that waits on it: with one container per slot (the local
//! emulator's default) concurrent batches cannot deadlock.
//!
//! Pure: builds plans and sub-requests, invokes nothing.

use std::collections::BTreeMap;

use squash_core::error::{Error, Result};
use squash_core::protocol::{PartitionTask, TreeNode, WorkerRequest};

/// The largest branching factor accepted.
pub const MAX_BRANCHING: usize = 64;

/// The largest depth accepted.
pub const MAX_DEPTH: usize = 8;

/// The shape of invocation trees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TreeShape {
    /// Children per node (and nodes the coordinator invokes itself).
    pub branching: usize,
    /// Levels of workers at most; when the slots do not fit, the branching is raised.
    pub max_depth: usize,
}

impl TreeShape {
    /// Returns the shape, or an error naming the bad setting.
    pub fn try_new(branching: usize, max_depth: usize) -> Result<TreeShape> {
        if !(2..=MAX_BRANCHING).contains(&branching) {
            return Err(Error::invalid(
                "branching",
                format!("must be between 2 and {MAX_BRANCHING}, got {branching}"),
            ));
        }
        if !(1..=MAX_DEPTH).contains(&max_depth) {
            return Err(Error::invalid(
                "max_depth",
                format!("must be between 1 and {MAX_DEPTH}, got {max_depth}"),
            ));
        }
        Ok(TreeShape {
            branching,
            max_depth,
        })
    }

    /// Returns the branching that fits `num_nodes` within the depth limit: the configured one,
    /// or the smallest larger one that fits.
    pub fn effective_branching(&self, num_nodes: usize) -> usize {
        let capacity = |branching: usize| -> usize {
            let mut total = 0usize;
            let mut level = 1usize;
            for _ in 0..self.max_depth {
                level = level.saturating_mul(branching);
                total = total.saturating_add(level);
            }
            total
        };
        let mut branching = self.branching;
        while capacity(branching) < num_nodes {
            branching += 1;
        }
        branching
    }
}

/// Returns the worker slot that always searches `partition`.
pub fn slot_of(partition: u32, num_slots: usize) -> usize {
    partition as usize % num_slots.max(1)
}

/// Returns, per worker slot with work (ascending), the positions in `tasks` of the tasks its
/// partitions give it.
pub fn tasks_by_slot(tasks: &[PartitionTask], num_slots: usize) -> BTreeMap<usize, Vec<usize>> {
    let mut by_slot: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (position, task) in tasks.iter().enumerate() {
        by_slot
            .entry(slot_of(task.partition, num_slots))
            .or_default()
            .push(position);
    }
    by_slot
}

fn no_functions() -> Error {
    Error::invalid("worker functions", "at least one worker function is needed")
}

/// Returns the tree over `nodes` (each a slot, in ascending slot order, with the tasks its
/// node runs): the nodes the coordinator invokes, with the rest below them.
pub fn tree_of_slots(
    nodes: Vec<(usize, Vec<PartitionTask>)>,
    functions: &[String],
    shape: TreeShape,
) -> Result<Vec<TreeNode>> {
    if functions.is_empty() {
        return Err(no_functions());
    }
    let branching = shape.effective_branching(nodes.len());
    fn build(
        position: usize,
        branching: usize,
        nodes: &[(usize, Vec<PartitionTask>)],
        functions: &[String],
    ) -> TreeNode {
        let (slot, tasks) = &nodes[position];
        let first_child = branching + position * branching;
        let children = (first_child..(first_child + branching).min(nodes.len()))
            .map(|child| build(child, branching, nodes, functions))
            .collect();
        TreeNode {
            function: functions[*slot].clone(),
            tasks: tasks.clone(),
            children,
        }
    }
    Ok((0..branching.min(nodes.len()))
        .map(|position| build(position, branching, &nodes, functions))
        .collect())
}

/// Returns the request for `node` (a child of `parent`) with `budget_ms`, carrying only the
/// queries its subtree runs, renumbered; and, per query of the new request, its position in
/// `parent`.
pub fn child_request(
    parent: &WorkerRequest,
    node: &TreeNode,
    budget_ms: u64,
) -> Result<(WorkerRequest, Vec<u32>)> {
    fn collect(node: &TreeNode, used: &mut Vec<u32>) {
        for task in &node.tasks {
            used.extend(&task.queries);
        }
        for child in &node.children {
            collect(child, used);
        }
    }
    let mut parent_positions = Vec::new();
    collect(node, &mut parent_positions);
    parent_positions.sort_unstable();
    parent_positions.dedup();
    let mut new_position = vec![u32::MAX; parent.queries.len()];
    let mut queries = Vec::with_capacity(parent_positions.len());
    for (position, &parent_position) in parent_positions.iter().enumerate() {
        let query = parent
            .queries
            .get(parent_position as usize)
            .ok_or_else(|| {
                Error::invalid(
                    "children.tasks.queries",
                    format!("query position {parent_position} is out of range"),
                )
            })?;
        new_position[parent_position as usize] = position as u32;
        queries.push(query.clone());
    }
    fn renumber(node: &TreeNode, new_position: &[u32]) -> TreeNode {
        TreeNode {
            function: node.function.clone(),
            tasks: node
                .tasks
                .iter()
                .map(|task| PartitionTask {
                    partition: task.partition,
                    queries: task
                        .queries
                        .iter()
                        .map(|&q| new_position[q as usize])
                        .collect(),
                    object_bytes: task.object_bytes,
                    excluded_ids: task.excluded_ids.clone(),
                })
                .collect(),
            children: node
                .children
                .iter()
                .map(|child| renumber(child, new_position))
                .collect(),
        }
    }
    let renumbered = renumber(node, &new_position);
    Ok((
        WorkerRequest {
            protocol_version: parent.protocol_version,
            request_id: parent.request_id.clone(),
            index: parent.index.clone(),
            index_version: parent.index_version.clone(),
            budget_ms,
            queries,
            tasks: renumbered.tasks,
            children: renumbered.children,
            segment_keys: parent.segment_keys.clone(),
        },
        parent_positions,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(partition: u32, queries: &[u32]) -> PartitionTask {
        PartitionTask {
            partition,
            queries: queries.to_vec(),
            object_bytes: None,
            excluded_ids: Vec::new(),
        }
    }

    fn slots(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("w{i}")).collect()
    }

    /// The unsplit tree of `tasks`: each slot's node runs its partitions' whole tasks.
    fn plan_tree(
        tasks: &[PartitionTask],
        functions: &[String],
        shape: TreeShape,
    ) -> Result<Vec<TreeNode>> {
        let nodes = tasks_by_slot(tasks, functions.len())
            .into_iter()
            .map(|(slot, positions)| (slot, positions.iter().map(|&p| tasks[p].clone()).collect()))
            .collect();
        tree_of_slots(nodes, functions, shape)
    }

    fn nodes_in(tree: &[TreeNode]) -> Vec<String> {
        let mut names = Vec::new();
        for node in tree {
            names.push(node.function.clone());
            names.extend(nodes_in(&node.children));
        }
        names
    }

    #[test]
    fn every_partition_goes_to_its_slot_once_and_parents_precede_children() {
        let tasks: Vec<PartitionTask> = (0..23).map(|p| task(p, &[0])).collect();
        let shape = TreeShape::try_new(2, 3).expect("shape");
        let tree = plan_tree(&tasks, &slots(7), shape).expect("tree");
        let mut names = nodes_in(&tree);
        names.sort();
        assert_eq!(names, slots(7), "each slot is one node");
        let mut partitions: Vec<u32> = tree.iter().flat_map(|n| n.subtree_partitions()).collect();
        partitions.sort_unstable();
        assert_eq!(partitions, (0..23).collect::<Vec<_>>());
        fn check(node: &TreeNode) {
            for task in &node.tasks {
                assert_eq!(format!("w{}", task.partition % 7), node.function);
            }
            for child in &node.children {
                assert!(child.function > node.function, "parent before child");
                check(child);
            }
        }
        tree.iter().for_each(check);
        assert_eq!(tree.len(), 2);
        assert_eq!(tree.iter().map(TreeNode::depth).max(), Some(3));
    }

    #[test]
    fn depth_limit_raises_the_branching() {
        let shape = TreeShape::try_new(2, 1).expect("shape");
        assert_eq!(shape.effective_branching(5), 5);
        let tasks: Vec<PartitionTask> = (0..5).map(|p| task(p, &[0])).collect();
        let tree = plan_tree(&tasks, &slots(5), shape).expect("tree");
        assert_eq!(tree.len(), 5);
        assert!(tree.iter().all(|n| n.children.is_empty()));
        assert!(TreeShape::try_new(1, 2).is_err());
        assert!(TreeShape::try_new(4, 0).is_err());
    }

    #[test]
    fn child_requests_carry_only_their_queries_renumbered() {
        use squash_core::protocol::{SearchKnobs, SearchOptions, WorkerQuery, PROTOCOL_VERSION};
        let knobs = SearchKnobs::resolve(&SearchOptions::default()).expect("knobs");
        let query = |x: f32| WorkerQuery {
            vector: vec![x],
            k: 1,
            filter: None,
            include_attributes: false,
            knobs,
            probe_radius: None,
        };
        let parent = WorkerRequest {
            protocol_version: PROTOCOL_VERSION,
            request_id: "r".into(),
            index: "i".into(),
            index_version: "1".into(),
            budget_ms: 1000,
            queries: vec![query(0.0), query(1.0), query(2.0), query(3.0)],
            tasks: vec![],
            children: vec![],
            segment_keys: Default::default(),
        };
        let node = TreeNode {
            function: "w1".into(),
            tasks: vec![task(1, &[3])],
            children: vec![TreeNode {
                function: "w2".into(),
                tasks: vec![task(2, &[1, 3])],
                children: vec![],
            }],
        };
        let (request, positions) = child_request(&parent, &node, 500).expect("child");
        assert_eq!(positions, vec![1, 3]);
        assert_eq!(request.queries, vec![query(1.0), query(3.0)]);
        assert_eq!(request.tasks, vec![task(1, &[1])]);
        assert_eq!(request.children[0].tasks, vec![task(2, &[0, 1])]);
        assert_eq!(request.budget_ms, 500);
    }
}
