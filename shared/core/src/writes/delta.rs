//! The writes not yet folded into the partitions, replayed from the log: the rows they upsert
//! (searched exactly, beside the partitions) and what they hide of the partitions (ids
//! deleted or replaced, and delete filters).
//!
//! For an id, the highest log position wins. A delete filter removes the rows that match it
//! when it commits: the unfolded rows written before it and every partition row (all older than
//! any unfolded write); rows written after it are not affected.

use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;

use serde_json::{Map, Value};

use crate::attributes::{AttributeKind, AttributeSchema, AttributeTable, Bitmap};
use crate::error::{Error, Result};
use crate::filter::Filter;
use crate::index::clusters::PROBE_RADIUS_SLACK;
use crate::metric::{normalize_in_place, Metric};
use crate::protocol::Hit;
use crate::writes::log::LogEntry;

/// One upserted row.
#[derive(Debug, Clone, PartialEq)]
pub struct DeltaRow {
    /// External id.
    pub id: u64,
    /// The fine cluster of the partitions whose centroid is nearest ([`Delta::with_clusters`]);
    /// 0 when the delta knows no clusters.
    pub cluster: u32,
    /// The vector (unit length for cosine, as the partitions store it).
    pub vector: Vec<f32>,
    /// Attribute values by column, every column present.
    pub attributes: Map<String, Value>,
}

/// The live rows in a form the exact filter and the distance kernels read.
#[derive(Debug, Clone)]
struct DeltaView {
    /// Positions in `Delta::rows` of the live rows, in log order.
    rows: Vec<usize>,
    /// The index schema with every categorical dictionary extended by the values written.
    schema: AttributeSchema,
    /// The live rows' attributes under `schema`.
    table: AttributeTable,
    /// Positions in `rows` grouped by fine cluster: (cluster, positions), by cluster.
    by_cluster: Vec<(u32, Vec<usize>)>,
}

/// Unfolded writes: the state of the log after the last snapshot the partitions hold.
#[derive(Debug, Clone)]
pub struct Delta {
    dim: usize,
    metric: Metric,
    base_schema: AttributeSchema,
    folded_through: u64,
    head: u64,
    rows: Vec<DeltaRow>,
    live: HashMap<u64, usize>,
    hidden_base_ids: HashSet<u64>,
    delete_filters: Vec<Value>,
    /// The partitions' fine-cluster centroids (`num_clusters x dim`), when known: written rows
    /// are filed under the nearest, so that a query scans those of the clusters it probes.
    cluster_centroids: Option<std::sync::Arc<Vec<f32>>>,
    view: OnceLock<DeltaView>,
}

/// What the unfolded writes say of one id.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum DeltaLookup<'a> {
    /// The id's newest write upserted this row.
    Live(&'a DeltaRow),
    /// The id was deleted (or replaced, then deleted) by an unfolded write.
    Deleted,
    /// No unfolded write names the id: the partitions have the answer (a delete filter may
    /// still hide it, [`Delta::deleted_base_rows`]).
    Untouched,
}

impl Delta {
    /// Returns the empty delta over partitions that hold the log through `folded_through`.
    pub fn new(
        dim: usize,
        metric: Metric,
        base_schema: AttributeSchema,
        folded_through: u64,
    ) -> Delta {
        Delta {
            dim,
            metric,
            base_schema,
            folded_through,
            head: folded_through,
            rows: Vec::new(),
            live: HashMap::new(),
            hidden_base_ids: HashSet::new(),
            delete_filters: Vec::new(),
            cluster_centroids: None,
            view: OnceLock::new(),
        }
    }

    /// Returns the empty delta over the same partitions (no entry applied), filing rows under
    /// the same clusters: the start of a replay up to another token.
    pub fn emptied(&self) -> Delta {
        Delta {
            cluster_centroids: self.cluster_centroids.clone(),
            ..Delta::new(
                self.dim,
                self.metric,
                self.base_schema.clone(),
                self.folded_through,
            )
        }
    }

    /// Returns the delta filing written rows under the nearest of `centroids` (the fine
    /// clusters of the partitions, `num_clusters x dim`, in the space the partitions store:
    /// unit length for cosine), so that [`Delta::search`] with a probe radius scans only the
    /// written rows of the clusters within it. Set before any entry is applied.
    pub fn with_clusters(mut self, centroids: std::sync::Arc<Vec<f32>>) -> Delta {
        self.cluster_centroids = Some(centroids);
        self
    }

    /// Returns the nearest cluster of `vector`, 0 without clusters.
    fn nearest_cluster(&self, vector: &[f32]) -> u32 {
        let Some(centroids) = &self.cluster_centroids else {
            return 0;
        };
        let mut best = (f32::INFINITY, 0u32);
        for (cluster, centroid) in centroids.chunks_exact(self.dim).enumerate() {
            let distance = squash_kernels::l2_squared_f32(vector, centroid);
            if distance < best.0 {
                best = (distance, cluster as u32);
            }
        }
        best.1
    }

    /// Returns the last log position applied: the token answers reflect.
    pub fn head(&self) -> u64 {
        self.head
    }

    /// Returns the log position the partitions hold.
    pub fn folded_through(&self) -> u64 {
        self.folded_through
    }

    /// Returns the number of live unfolded rows.
    pub fn num_live_rows(&self) -> usize {
        self.live.len()
    }

    /// Returns whether no unfolded write changes anything.
    pub fn is_empty(&self) -> bool {
        self.head == self.folded_through
    }

    /// Returns the delete filters of the unfolded writes, oldest first.
    pub fn delete_filters(&self) -> &[Value] {
        &self.delete_filters
    }

    /// Returns the ids whose partition rows the unfolded writes hide (deleted or replaced),
    /// sorted.
    pub fn hidden_base_ids(&self) -> Vec<u64> {
        let mut ids: Vec<u64> = self.hidden_base_ids.iter().copied().collect();
        ids.sort_unstable();
        ids
    }

    /// Applies the next entry of the log. Entries must come in order, without gaps.
    pub fn apply(&mut self, entry: &LogEntry) -> Result<()> {
        if entry.seq != self.head + 1 {
            return Err(Error::internal(format!(
                "log entry {} applied after {}: entries must be applied in order",
                entry.seq, self.head
            )));
        }
        let batch = &entry.batch;
        if batch.num_upserts() > 0 && entry.dim != self.dim {
            return Err(Error::corrupt(
                format!("log entry {}", entry.seq),
                0,
                format!(
                    "rows of dimension {} in an index of dimension {}",
                    entry.dim, self.dim
                ),
            ));
        }
        if let Some(filter_json) = &batch.delete_filter {
            let matched: Vec<u64> = {
                let view = self.view();
                let filter = Filter::parse(filter_json, &view.schema)?;
                let bitmap = filter.evaluate(&view.table);
                view.rows
                    .iter()
                    .zip(bitmap.iter())
                    .filter(|(_, bit)| **bit)
                    .map(|(&row, _)| self.rows[row].id)
                    .collect()
            };
            for id in matched {
                self.live.remove(&id);
            }
            self.delete_filters.push(filter_json.clone());
        }
        for &id in &batch.delete_ids {
            self.live.remove(&id);
            self.hidden_base_ids.insert(id);
        }
        for (row, &id) in batch.upsert_ids.iter().enumerate() {
            let mut vector = batch.vector(row, self.dim).to_vec();
            if self.metric.normalizes() && !normalize_in_place(&mut vector) {
                return Err(Error::corrupt(
                    format!("log entry {}", entry.seq),
                    0,
                    format!("row {row} is a zero vector in a cosine index"),
                ));
            }
            self.live.insert(id, self.rows.len());
            self.hidden_base_ids.insert(id);
            let cluster = self.nearest_cluster(&vector);
            self.rows.push(DeltaRow {
                id,
                cluster,
                vector,
                attributes: batch.attributes[row].clone(),
            });
        }
        self.head = entry.seq;
        self.view = OnceLock::new();
        Ok(())
    }

    /// Returns what the unfolded writes say of `id`.
    pub fn lookup(&self, id: u64) -> DeltaLookup<'_> {
        match self.live.get(&id) {
            Some(&row) => DeltaLookup::Live(&self.rows[row]),
            None if self.hidden_base_ids.contains(&id) => DeltaLookup::Deleted,
            None => DeltaLookup::Untouched,
        }
    }

    /// Returns the live rows, in log order.
    pub fn live_rows(&self) -> impl Iterator<Item = &DeltaRow> + Clone {
        self.view().rows.iter().map(|&row| &self.rows[row])
    }

    /// Returns which rows of a partition's `table` (under the index schema) a delete filter
    /// removes: each filter is parsed once and evaluated over the whole table.
    pub fn deleted_base_rows(&self, table: &AttributeTable) -> Result<Bitmap> {
        let mut deleted = Bitmap::repeat(false, table.num_rows);
        for filter_json in &self.delete_filters {
            deleted |= Filter::parse(filter_json, &self.base_schema)?.evaluate(table);
        }
        Ok(deleted)
    }

    /// Returns the filter the partitions must apply for a query filtered by `filter_opt`: the
    /// query's filter and none of the delete filters.
    pub fn base_filter(&self, filter_opt: Option<&Value>) -> Option<Value> {
        if self.delete_filters.is_empty() {
            return filter_opt.cloned();
        }
        let mut parts: Vec<Value> = filter_opt.into_iter().cloned().collect();
        parts.extend(
            self.delete_filters
                .iter()
                .map(|deleted| serde_json::json!({ "$not": deleted })),
        );
        Some(serde_json::json!({ "$and": parts }))
    }

    /// Returns the `k` nearest live rows to `query` (normalised for cosine) that match
    /// `filter_opt`, exactly, best first. With `probe_radius` (a query plan's) and clusters
    /// known, only the rows filed under clusters whose centroid lies within it are scored, as
    /// workers scan the partitions; `None` scores every written row.
    pub fn search(
        &self,
        query: &[f32],
        filter_opt: Option<&Value>,
        k: usize,
        include_attributes: bool,
        probe_radius: Option<f32>,
    ) -> Result<Vec<Hit>> {
        if self.live.is_empty() || k == 0 {
            return Ok(Vec::new());
        }
        let view = self.view();
        let in_scope: Vec<usize> = match (probe_radius, &self.cluster_centroids) {
            (Some(radius), Some(centroids)) => {
                let limit = radius * (1.0 + PROBE_RADIUS_SLACK) + f32::EPSILON;
                let mut positions = Vec::new();
                for (cluster, members) in &view.by_cluster {
                    let centroid = &centroids
                        [*cluster as usize * self.dim..(*cluster as usize + 1) * self.dim];
                    if squash_kernels::l2_squared_f32(query, centroid).sqrt() <= limit {
                        positions.extend_from_slice(members);
                    }
                }
                // No order needed: the ranking below breaks ties by id.
                positions
            }
            _ => (0..view.rows.len()).collect(),
        };
        let passing: Vec<usize> = match filter_opt {
            Some(json) => {
                let filter = Filter::parse(json, &view.schema)?;
                in_scope
                    .into_iter()
                    .filter(|&position| filter.matches_row(&view.table, position))
                    .map(|position| view.rows[position])
                    .collect()
            }
            None => in_scope
                .into_iter()
                .map(|position| view.rows[position])
                .collect(),
        };
        let mut scored: Vec<(f32, usize)> = passing
            .into_iter()
            .map(|row| (self.metric.distance(query, &self.rows[row].vector), row))
            .collect();
        let by_distance = |a: &(f32, usize), b: &(f32, usize)| {
            a.0.total_cmp(&b.0)
                .then(self.rows[a.1].id.cmp(&self.rows[b.1].id))
        };
        if scored.len() > k {
            scored.select_nth_unstable_by(k - 1, by_distance);
            scored.truncate(k);
        }
        scored.sort_unstable_by(by_distance);
        Ok(scored
            .into_iter()
            .map(|(distance, row)| Hit {
                id: self.rows[row].id,
                distance,
                attributes: include_attributes.then(|| self.rows[row].attributes.clone()),
            })
            .collect())
    }

    fn view(&self) -> &DeltaView {
        self.view.get_or_init(|| {
            let mut rows: Vec<usize> = self.live.values().copied().collect();
            rows.sort_unstable();
            let schema = extended_schema(&self.base_schema, rows.iter().map(|&r| &self.rows[r]));
            let mut table = AttributeTable::with_columns(schema.num_columns(), rows.len());
            table.num_rows = rows.len();
            for (column, values) in schema.columns.iter().zip(table.columns.iter_mut()) {
                for &row in &rows {
                    let value = &self.rows[row].attributes[&column.name];
                    values.push(match column.kind {
                        AttributeKind::Categorical => value
                            .as_str()
                            .and_then(|text| column.code_of(text))
                            .map(f64::from)
                            .unwrap_or(f64::NAN),
                        AttributeKind::Integer | AttributeKind::Float => {
                            value.as_f64().unwrap_or(f64::NAN)
                        }
                    });
                }
            }
            let mut by_cluster: std::collections::BTreeMap<u32, Vec<usize>> = Default::default();
            for (position, &row) in rows.iter().enumerate() {
                by_cluster
                    .entry(self.rows[row].cluster)
                    .or_default()
                    .push(position);
            }
            DeltaView {
                rows,
                schema,
                table,
                by_cluster: by_cluster.into_iter().collect(),
            }
        })
    }
}

/// Returns `base` with each categorical dictionary extended by the values of `rows` (kept
/// sorted, as filters on categorical ranges need).
pub fn extended_schema<'a>(
    base: &AttributeSchema,
    rows: impl Iterator<Item = &'a DeltaRow> + Clone,
) -> AttributeSchema {
    let mut schema = base.clone();
    for column in &mut schema.columns {
        if column.kind != AttributeKind::Categorical {
            continue;
        }
        let mut added = false;
        for row in rows.clone() {
            if let Some(text) = row.attributes.get(&column.name).and_then(Value::as_str) {
                if column.code_of(text).is_none() {
                    column.dictionary.push(text.to_string());
                    column.dictionary.sort_unstable();
                    added = true;
                }
            }
        }
        if added {
            column.dictionary.dedup();
        }
    }
    schema
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attributes::AttributeColumn;
    use crate::writes::request::WriteBatch;
    use serde_json::json;

    fn schema() -> AttributeSchema {
        AttributeSchema {
            columns: vec![
                AttributeColumn {
                    name: "year".into(),
                    kind: AttributeKind::Integer,
                    dictionary: vec![],
                },
                AttributeColumn {
                    name: "genre".into(),
                    kind: AttributeKind::Categorical,
                    dictionary: vec!["drama".into()],
                },
            ],
        }
    }

    fn upsert(seq: u64, rows: &[(u64, [f32; 2], i64, &str)]) -> LogEntry {
        LogEntry {
            seq,
            request_id: format!("r{seq}"),
            created_unix_ms: 0,
            dim: 2,
            batch: WriteBatch {
                upsert_ids: rows.iter().map(|r| r.0).collect(),
                vectors: rows.iter().flat_map(|r| r.1).collect(),
                attributes: rows
                    .iter()
                    .map(|r| {
                        json!({"year": r.2, "genre": r.3})
                            .as_object()
                            .unwrap()
                            .clone()
                    })
                    .collect(),
                ..WriteBatch::default()
            },
        }
    }

    fn delete(seq: u64, ids: &[u64], filter: Option<Value>) -> LogEntry {
        LogEntry {
            seq,
            request_id: format!("r{seq}"),
            created_unix_ms: 0,
            dim: 2,
            batch: WriteBatch {
                delete_ids: ids.to_vec(),
                delete_filter: filter,
                ..WriteBatch::default()
            },
        }
    }

    #[test]
    fn the_newest_write_of_an_id_wins_and_deletes_hide_base_rows() {
        let mut delta = Delta::new(2, Metric::L2, schema(), 10);
        assert!(delta.is_empty());
        delta
            .apply(&upsert(
                11,
                &[
                    (1, [0.0, 0.0], 2000, "drama"),
                    (2, [5.0, 0.0], 2001, "noir"),
                ],
            ))
            .unwrap();
        delta
            .apply(&upsert(12, &[(1, [9.0, 0.0], 2002, "noir")]))
            .unwrap();
        delta.apply(&delete(13, &[2, 77], None)).unwrap();
        assert_eq!(delta.head(), 13);
        assert_eq!(delta.num_live_rows(), 1);
        match delta.lookup(1) {
            DeltaLookup::Live(row) => assert_eq!(row.vector, vec![9.0, 0.0]),
            other => panic!("{other:?}"),
        }
        assert_eq!(delta.lookup(2), DeltaLookup::Deleted);
        assert_eq!(delta.lookup(77), DeltaLookup::Deleted);
        assert_eq!(delta.lookup(3), DeltaLookup::Untouched);
        assert_eq!(delta.hidden_base_ids(), vec![1, 2, 77]);
        // Out of order: refused.
        assert!(delta.apply(&delete(15, &[1], None)).is_err());
    }

    #[test]
    fn search_is_exact_and_filters_see_new_categories() {
        let mut delta = Delta::new(2, Metric::L2, schema(), 0);
        delta
            .apply(&upsert(
                1,
                &[
                    (1, [0.0, 0.0], 2000, "drama"),
                    (2, [1.0, 0.0], 2001, "noir"),
                    (3, [2.0, 0.0], 2002, "noir"),
                    (4, [3.0, 0.0], 2003, "western"),
                ],
            ))
            .unwrap();
        let ids = |hits: Vec<Hit>| hits.iter().map(|h| h.id).collect::<Vec<_>>();
        assert_eq!(
            ids(delta.search(&[2.1, 0.0], None, 2, false, None).unwrap()),
            vec![3, 4]
        );
        let noir = json!({"genre": "noir"});
        assert_eq!(
            ids(delta
                .search(&[9.0, 0.0], Some(&noir), 5, false, None)
                .unwrap()),
            vec![3, 2]
        );
        let late = json!({"genre": {"$gte": "noir"}, "year": {"$gte": 2002}});
        let hits = delta
            .search(&[0.0, 0.0], Some(&late), 5, true, None)
            .unwrap();
        assert_eq!(ids(hits.clone()), vec![3, 4]);
        assert_eq!(
            hits[1].attributes.as_ref().unwrap()["genre"],
            json!("western")
        );
        assert_eq!(hits[0].distance, 4.0);
    }

    #[test]
    fn a_probe_radius_scores_only_the_rows_of_the_clusters_within_it() {
        let centroids = std::sync::Arc::new(vec![0.0, 0.0, 10.0, 0.0]);
        let mut delta = Delta::new(2, Metric::L2, schema(), 0).with_clusters(centroids);
        delta
            .apply(&upsert(
                1,
                &[
                    (1, [0.5, 0.0], 2000, "drama"),
                    (2, [9.0, 0.0], 2000, "drama"),
                    (3, [11.0, 0.0], 2000, "drama"),
                ],
            ))
            .unwrap();
        let ids = |hits: Vec<Hit>| hits.iter().map(|h| h.id).collect::<Vec<_>>();
        // Rows 2 and 3 are filed under the far cluster, out of a radius of 1 around the origin.
        assert_eq!(
            ids(delta
                .search(&[0.0, 0.0], None, 3, false, Some(1.0))
                .unwrap()),
            vec![1]
        );
        assert_eq!(
            ids(delta.search(&[0.0, 0.0], None, 3, false, None).unwrap()),
            vec![1, 2, 3]
        );
        assert_eq!(
            ids(delta
                .search(&[9.5, 0.0], None, 3, false, Some(0.5))
                .unwrap()),
            vec![2, 3]
        );
    }

    #[test]
    fn a_delete_filter_removes_earlier_rows_only_and_masks_the_partitions() {
        let mut delta = Delta::new(2, Metric::L2, schema(), 0);
        delta
            .apply(&upsert(
                1,
                &[(1, [0.0, 0.0], 1990, "noir"), (2, [1.0, 0.0], 2010, "noir")],
            ))
            .unwrap();
        let old = json!({"year": {"$lt": 2000}});
        delta.apply(&delete(2, &[], Some(old.clone()))).unwrap();
        delta
            .apply(&upsert(3, &[(3, [2.0, 0.0], 1980, "drama")]))
            .unwrap();
        assert_eq!(delta.lookup(1), DeltaLookup::Deleted);
        let live: Vec<u64> = delta.live_rows().map(|r| r.id).collect();
        assert_eq!(live, vec![2, 3], "row 3 came after the delete filter");
        let base = delta.base_filter(Some(&json!({"genre": "noir"}))).unwrap();
        assert_eq!(base, json!({"$and": [{"genre": "noir"}, {"$not": old}]}));
        let mut table = AttributeTable::with_columns(2, 2);
        table.num_rows = 2;
        table.columns[0] = vec![1999.0, 2000.0];
        table.columns[1] = vec![0.0, 0.0];
        let deleted = delta.deleted_base_rows(&table).unwrap();
        assert!(deleted[0]);
        assert!(!deleted[1]);
    }
}
