//! Where each id lives in the partitions: the row-ids object a build writes beside the
//! coordinator object, and what the coordinator derives from it for unfolded writes (the dead
//! rows per fine cluster and per partition).
//!
//! ```text
//! <index>/v<version>/row-ids.sqsh     kind RowIds: block "ids" (u64 LE, coordinator row order)
//! ```

use std::collections::BTreeMap;

use crate::error::{Error, Result};
use crate::format::{le_bytes_to_u64s, u64s_to_le_bytes, Container, ContainerWriter, ObjectKind};
use crate::index::CoordinatorData;

/// The ids of an index's rows, searchable by id.
#[derive(Debug, Clone, PartialEq)]
pub struct RowIds {
    /// Ids, sorted.
    sorted_ids: Vec<u64>,
    /// Global row (coordinator order) of each id in `sorted_ids`.
    rows: Vec<u32>,
}

/// Partition rows the unfolded writes hide, as the plan and the workers need them.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DeadRows {
    /// Per fine cluster of the coordinator, its dead rows (empty when there are none).
    pub per_cluster: Vec<u64>,
    /// Per partition with dead rows, their ids, sorted.
    pub ids_by_partition: BTreeMap<u32, Vec<u64>>,
    /// Total dead rows.
    pub total: u64,
}

impl RowIds {
    /// Returns the object bytes for the ids of every row, in coordinator row order.
    pub fn encode(ids_in_row_order: &[u64]) -> Result<Vec<u8>> {
        let mut writer = ContainerWriter::new(ObjectKind::RowIds);
        writer.add_block("ids", &u64s_to_le_bytes(ids_in_row_order))?;
        writer.finish()
    }

    /// Decodes a row-ids object of an index of `num_rows` rows.
    pub fn decode(object: &str, bytes: Vec<u8>, num_rows: u64) -> Result<RowIds> {
        let container = Container::open(object, bytes, ObjectKind::RowIds)?;
        let ids = le_bytes_to_u64s(object, "ids", &container.block("ids")?)?;
        if ids.len() as u64 != num_rows || ids.len() > u32::MAX as usize {
            return Err(Error::corrupt(
                object,
                0,
                format!("{} ids for an index of {num_rows} rows", ids.len()),
            ));
        }
        Ok(RowIds::from_row_order(&ids))
    }

    /// Returns the map of ids given in coordinator row order.
    pub fn from_row_order(ids: &[u64]) -> RowIds {
        let mut pairs: Vec<(u64, u32)> = ids
            .iter()
            .enumerate()
            .map(|(row, &id)| (id, row as u32))
            .collect();
        pairs.sort_unstable();
        RowIds {
            sorted_ids: pairs.iter().map(|p| p.0).collect(),
            rows: pairs.iter().map(|p| p.1).collect(),
        }
    }

    /// Returns the ids in coordinator row order (what [`RowIds::encode`] was given).
    pub fn ids_in_row_order(&self) -> Vec<u64> {
        let mut ids = vec![0u64; self.sorted_ids.len()];
        for (&id, &row) in self.sorted_ids.iter().zip(&self.rows) {
            ids[row as usize] = id;
        }
        ids
    }

    /// Returns the global row of `id`, if the partitions hold it.
    pub fn row_of(&self, id: u64) -> Option<u64> {
        self.sorted_ids
            .binary_search(&id)
            .ok()
            .map(|position| u64::from(self.rows[position]))
    }

    /// Returns where the rows of `hidden_ids` (sorted or not; ids the partitions lack are
    /// skipped) lie in `coordinator`'s partitions and fine clusters.
    pub fn dead_rows(&self, coordinator: &CoordinatorData, hidden_ids: &[u64]) -> DeadRows {
        let clusters = &coordinator.clusters;
        let mut dead = DeadRows {
            per_cluster: vec![0; clusters.num_clusters()],
            ..DeadRows::default()
        };
        for &id in hidden_ids {
            let Some(row) = self.row_of(id) else { continue };
            // The cluster holding `row`: the last whose first row is at most `row`.
            let cluster = clusters.row_offsets.partition_point(|&first| first <= row) - 1;
            dead.per_cluster[cluster] += 1;
            dead.ids_by_partition
                .entry(clusters.partition_of[cluster])
                .or_default()
                .push(id);
            dead.total += 1;
        }
        for ids in dead.ids_by_partition.values_mut() {
            ids.sort_unstable();
        }
        dead
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_map_to_their_rows() {
        let ids = vec![40, 10, 30, u64::MAX];
        let bytes = RowIds::encode(&ids).unwrap();
        let map = RowIds::decode("r", bytes.clone(), 4).unwrap();
        assert_eq!(map.row_of(40), Some(0));
        assert_eq!(map.row_of(u64::MAX), Some(3));
        assert_eq!(map.row_of(11), None);
        assert_eq!(map.ids_in_row_order(), ids);
        assert!(matches!(
            RowIds::decode("r", bytes, 5),
            Err(Error::Corrupt { .. })
        ));
    }
}
