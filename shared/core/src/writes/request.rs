//! Write requests as clients send them, and their checks: a write that fails a check changes
//! nothing, and its error names the field and the reason.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::attributes::{AttributeKind, AttributeSchema, MAX_INTEGER_MAGNITUDE};
use crate::error::{Error, Result};
use crate::filter::Filter;
use crate::metric::{Metric, MAX_COMPONENT_MAGNITUDE};

/// The most rows one upsert call may carry (and ids one delete or fetch call may name). Larger
/// loads go in several calls (`squash upsert` splits files).
pub const MAX_WRITE_ROWS: usize = 10_000;

/// One row of an upsert: its id, vector and attribute values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpsertRow {
    /// External id; a row with this id (built or written before) is replaced.
    pub id: u64,
    /// The vector (the index's dimension).
    pub vector: Vec<f32>,
    /// One value per attribute column of the index, by column name.
    #[serde(default)]
    pub attributes: Map<String, Value>,
}

/// `POST /v1/indexes/{index}/upsert`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpsertRequest {
    /// Rows to insert or replace, 1 to [`MAX_WRITE_ROWS`], each id at most once.
    pub rows: Vec<UpsertRow>,
}

/// `POST /v1/indexes/{index}/delete`: by ids, by filter, or both.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteRequest {
    /// Ids to delete (absent ids are no error), at most [`MAX_WRITE_ROWS`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ids: Vec<u64>,
    /// Delete every row that matches this filter (the query filter language) when the delete
    /// commits; rows written later are not affected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<Value>,
}

/// `POST /v1/indexes/{index}/fetch`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FetchRequest {
    /// Ids to fetch, 1 to [`MAX_WRITE_ROWS`].
    pub ids: Vec<u64>,
    /// Return each row's vector (default true).
    #[serde(default = "yes")]
    pub include_vectors: bool,
    /// Read at least this write's token (see [`WriteResponse::token`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_token: Option<u64>,
}

fn yes() -> bool {
    true
}

/// The answer to a write: where in the index's write log it landed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WriteResponse {
    /// The write's position in the log. A query or fetch that carries `min_token` at least
    /// this sees the write; later writes have larger tokens.
    pub token: u64,
    /// Rows inserted or replaced.
    pub upserted: usize,
    /// Ids named for deletion.
    pub deleted_ids: usize,
    /// Whether the write deletes by filter.
    pub deleted_by_filter: bool,
}

/// One fetched row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FetchedRow {
    /// External id.
    pub id: u64,
    /// The vector as stored (unit length for cosine indexes), when asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vector: Option<Vec<f32>>,
    /// Attribute values by column name.
    pub attributes: Map<String, Value>,
}

/// The answer to a fetch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FetchResponse {
    /// The rows found, in the order their ids were asked for.
    pub rows: Vec<FetchedRow>,
    /// Ids that name no live row.
    pub missing: Vec<u64>,
    /// The log position the answer reflects.
    pub token: u64,
}

/// A checked write, as the log stores it: rows to upsert, then deletes.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct WriteBatch {
    /// Ids of the upserted rows.
    pub upsert_ids: Vec<u64>,
    /// Their vectors, row-major, as sent.
    pub vectors: Vec<f32>,
    /// Their attribute values, one object per row, every column present.
    pub attributes: Vec<Map<String, Value>>,
    /// Ids deleted.
    pub delete_ids: Vec<u64>,
    /// Rows matching this filter are deleted.
    pub delete_filter: Option<Value>,
}

impl WriteBatch {
    /// Checks an upsert against an index of dimension `dim`, metric `metric` and `schema`.
    pub fn upsert(
        request: UpsertRequest,
        dim: usize,
        metric: Metric,
        schema: &AttributeSchema,
    ) -> Result<WriteBatch> {
        check_count("rows", request.rows.len(), false)?;
        let mut batch = WriteBatch {
            upsert_ids: Vec::with_capacity(request.rows.len()),
            vectors: Vec::with_capacity(request.rows.len() * dim),
            ..WriteBatch::default()
        };
        let mut first_row_of: HashMap<u64, usize> = HashMap::with_capacity(request.rows.len());
        for (position, row) in request.rows.into_iter().enumerate() {
            if let Some(first) = first_row_of.insert(row.id, position) {
                return Err(Error::invalid(
                    format!("rows[{position}].id"),
                    format!(
                        "id {} appears twice in this call (rows {first} and {position}); send each id once",
                        row.id
                    ),
                ));
            }
            check_vector(
                &format!("rows[{position}].vector"),
                &row.vector,
                dim,
                metric,
            )?;
            let attributes = check_attributes(
                &format!("rows[{position}].attributes"),
                row.attributes,
                schema,
            )?;
            batch.upsert_ids.push(row.id);
            batch.vectors.extend_from_slice(&row.vector);
            batch.attributes.push(attributes);
        }
        Ok(batch)
    }

    /// Checks a delete against an index of `schema`.
    pub fn delete(request: DeleteRequest, schema: &AttributeSchema) -> Result<WriteBatch> {
        if request.ids.is_empty() && request.filter.is_none() {
            return Err(Error::invalid(
                "ids",
                "name ids to delete, a filter, or both",
            ));
        }
        check_count("ids", request.ids.len(), true)?;
        check_unique_ids("ids", &request.ids)?;
        if let Some(filter) = &request.filter {
            let parsed = Filter::parse(filter, schema).map_err(|error| match error {
                Error::InvalidInput { field, reason } => Error::InvalidInput {
                    field: if field.is_empty() || field == "filter" {
                        "filter".to_string()
                    } else if field.starts_with("filter") {
                        field
                    } else {
                        format!("filter.{field}")
                    },
                    reason,
                },
                other => other,
            })?;
            if parsed.is_match_all() {
                return Err(Error::invalid(
                    "filter",
                    "matches every row; to empty an index, build it again (an empty filter deletes nothing by accident)",
                ));
            }
        }
        Ok(WriteBatch {
            delete_ids: request.ids,
            delete_filter: request.filter,
            ..WriteBatch::default()
        })
    }

    /// Returns the number of upserted rows.
    pub fn num_upserts(&self) -> usize {
        self.upsert_ids.len()
    }

    /// Returns the vector of upserted row `row`.
    pub fn vector(&self, row: usize, dim: usize) -> &[f32] {
        &self.vectors[row * dim..(row + 1) * dim]
    }
}

/// Checks the ids of a fetch.
pub fn check_fetch(request: &FetchRequest) -> Result<()> {
    check_count("ids", request.ids.len(), false)?;
    check_unique_ids("ids", &request.ids)
}

fn check_count(field: &str, count: usize, may_be_empty: bool) -> Result<()> {
    if (count == 0 && !may_be_empty) || count > MAX_WRITE_ROWS {
        return Err(Error::invalid(
            field,
            format!(
                "must hold between {} and {MAX_WRITE_ROWS} entries per call, got {count}; split larger loads into several calls",
                usize::from(!may_be_empty)
            ),
        ));
    }
    Ok(())
}

fn check_unique_ids(field: &str, ids: &[u64]) -> Result<()> {
    let mut first_of: HashMap<u64, usize> = HashMap::with_capacity(ids.len());
    for (position, &id) in ids.iter().enumerate() {
        if let Some(first) = first_of.insert(id, position) {
            return Err(Error::invalid(
                format!("{field}[{position}]"),
                format!("id {id} appears twice in this call (positions {first} and {position})"),
            ));
        }
    }
    Ok(())
}

fn check_vector(field: &str, vector: &[f32], dim: usize, metric: Metric) -> Result<()> {
    if vector.len() != dim {
        return Err(Error::invalid(
            field,
            format!(
                "has {} components, the index has dimension {dim}",
                vector.len()
            ),
        ));
    }
    if let Some(position) = vector
        .iter()
        .position(|v| !v.is_finite() || v.abs() > MAX_COMPONENT_MAGNITUDE)
    {
        return Err(Error::invalid(
            format!("{field}[{position}]"),
            format!(
                "must be a finite number of magnitude at most {MAX_COMPONENT_MAGNITUDE:e}, got {}",
                vector[position]
            ),
        ));
    }
    if metric.normalizes() && vector.iter().all(|&v| v == 0.0) {
        return Err(Error::invalid(
            field,
            "is a zero vector, which has no cosine distance",
        ));
    }
    Ok(())
}

/// Checks one row's attributes: every column of the schema present with a value of its kind,
/// no other key. Returns them in schema order.
fn check_attributes(
    field: &str,
    mut attributes: Map<String, Value>,
    schema: &AttributeSchema,
) -> Result<Map<String, Value>> {
    if let Some(unknown) = attributes
        .keys()
        .find(|name| schema.column_index(name).is_none())
    {
        let columns: Vec<&str> = schema.columns.iter().map(|c| c.name.as_str()).collect();
        return Err(Error::invalid(
            format!("{field}.{unknown}"),
            format!(
                "the index has no such attribute column (its columns: {})",
                if columns.is_empty() {
                    "none".to_string()
                } else {
                    columns.join(", ")
                }
            ),
        ));
    }
    let mut checked = Map::with_capacity(schema.columns.len());
    for column in &schema.columns {
        let column_field = format!("{field}.{}", column.name);
        let value = attributes.remove(&column.name).ok_or_else(|| {
            Error::invalid(
                &column_field,
                "is missing; every row needs a value for every attribute column",
            )
        })?;
        let valid = match (&column.kind, &value) {
            (AttributeKind::Integer, Value::Number(number)) => number
                .as_i64()
                .is_some_and(|n| n.abs() <= MAX_INTEGER_MAGNITUDE),
            (AttributeKind::Float, Value::Number(number)) => {
                number.as_f64().is_some_and(f64::is_finite)
            }
            (AttributeKind::Categorical, Value::String(_)) => true,
            _ => false,
        };
        if !valid {
            let expected = match column.kind {
                AttributeKind::Integer => {
                    format!("a whole number of magnitude at most {MAX_INTEGER_MAGNITUDE}")
                }
                AttributeKind::Float => "a finite number".to_string(),
                AttributeKind::Categorical => "a string".to_string(),
            };
            return Err(Error::invalid(
                column_field,
                format!("expected {expected}, got {value}"),
            ));
        }
        // A float column answers with floats, whether the row said 3 or 3.0.
        let value = match (column.kind, value.as_f64()) {
            (AttributeKind::Float, Some(number)) => Value::from(number),
            _ => value,
        };
        checked.insert(column.name.clone(), value);
    }
    Ok(checked)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attributes::AttributeColumn;
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
                    name: "price".into(),
                    kind: AttributeKind::Float,
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

    fn row(id: u64, vector: Vec<f32>, attributes: Value) -> UpsertRow {
        UpsertRow {
            id,
            vector,
            attributes: attributes.as_object().unwrap().clone(),
        }
    }

    fn good(id: u64) -> UpsertRow {
        row(
            id,
            vec![1.0, 2.0],
            json!({"year": 2020, "price": 1.5, "genre": "new genre"}),
        )
    }

    fn field_of(result: Result<WriteBatch>) -> String {
        match result {
            Err(Error::InvalidInput { field, .. }) => field,
            other => panic!("expected a field error, got {other:?}"),
        }
    }

    fn upsert(rows: Vec<UpsertRow>) -> Result<WriteBatch> {
        WriteBatch::upsert(UpsertRequest { rows }, 2, Metric::Cosine, &schema())
    }

    #[test]
    fn a_good_upsert_keeps_rows_in_order_with_new_categories() {
        let batch = upsert(vec![good(7), good(3)]).unwrap();
        assert_eq!(batch.upsert_ids, vec![7, 3]);
        assert_eq!(batch.vector(1, 2), &[1.0, 2.0]);
        assert_eq!(batch.attributes[0]["genre"], json!("new genre"));
    }

    #[test]
    fn bad_upserts_name_the_field() {
        assert_eq!(field_of(upsert(vec![])), "rows");
        assert_eq!(
            field_of(upsert((0..=MAX_WRITE_ROWS as u64).map(good).collect())),
            "rows"
        );
        assert_eq!(field_of(upsert(vec![good(1), good(1)])), "rows[1].id");
        let mut short = good(1);
        short.vector = vec![1.0];
        assert_eq!(field_of(upsert(vec![short])), "rows[0].vector");
        let mut nan = good(1);
        nan.vector = vec![1.0, f32::NAN];
        assert_eq!(field_of(upsert(vec![good(0), nan])), "rows[1].vector[1]");
        let mut zero = good(1);
        zero.vector = vec![0.0, 0.0];
        assert_eq!(field_of(upsert(vec![zero])), "rows[0].vector");
        let unknown = row(
            1,
            vec![1.0, 1.0],
            json!({"year": 1, "price": 1.0, "genre": "x", "colour": "red"}),
        );
        assert_eq!(field_of(upsert(vec![unknown])), "rows[0].attributes.colour");
        let missing = row(1, vec![1.0, 1.0], json!({"year": 1, "genre": "x"}));
        assert_eq!(field_of(upsert(vec![missing])), "rows[0].attributes.price");
        let fractional = row(
            1,
            vec![1.0, 1.0],
            json!({"year": 1.5, "price": 1.0, "genre": "x"}),
        );
        assert_eq!(
            field_of(upsert(vec![fractional])),
            "rows[0].attributes.year"
        );
        let wrong_kind = row(
            1,
            vec![1.0, 1.0],
            json!({"year": 1, "price": "cheap", "genre": "x"}),
        );
        assert_eq!(
            field_of(upsert(vec![wrong_kind])),
            "rows[0].attributes.price"
        );
        let number_category = row(
            1,
            vec![1.0, 1.0],
            json!({"year": 1, "price": 1.0, "genre": 3}),
        );
        assert_eq!(
            field_of(upsert(vec![number_category])),
            "rows[0].attributes.genre"
        );
    }

    #[test]
    fn bad_deletes_name_the_field() {
        let delete = |ids: Vec<u64>, filter: Option<Value>| {
            WriteBatch::delete(DeleteRequest { ids, filter }, &schema())
        };
        assert_eq!(field_of(delete(vec![], None)), "ids");
        assert_eq!(field_of(delete(vec![1, 2, 1], None)), "ids[2]");
        assert!(field_of(delete(vec![], Some(json!({"colour": "red"})))).starts_with("filter"));
        assert_eq!(field_of(delete(vec![], Some(json!({})))), "filter");
        let ok = delete(vec![4], Some(json!({"year": {"$lt": 2000}}))).unwrap();
        assert_eq!(ok.delete_ids, vec![4]);
        assert!(ok.delete_filter.is_some());
    }
}
