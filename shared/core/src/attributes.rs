//! Attribute schema and the raw (exact) attribute table.
//!
//! Every attribute value is held as an `f64`: integers of magnitude up to
//! [`MAX_INTEGER_MAGNITUDE`] (2^53 − 1) and floats are exact, and a categorical (string) value
//! is held as its dictionary code. The table is column-major
//! because filters scan one column for many rows.

use bitvec::prelude::{BitVec, Lsb0};
use serde::{Deserialize, Serialize};

/// The largest magnitude an integer cell may have: 2^53 − 1, the last integer whose neighbours
/// are also exact in an `f64`.
///
/// Because every stored integer lies strictly inside ±2^53, a filter's integer value compares
/// exactly even beyond that range: rounding to `f64` is monotone and maps anything of larger
/// magnitude to at least 2^53, past every stored cell, so `9007199254740993` can never equal a
/// cell and `$ne` keeps every row. (A cell of 2^53 itself would equal the rounded 2^53 + 1.)
pub const MAX_INTEGER_MAGNITUDE: i64 = (1 << 53) - 1;

/// A set of row positions, one bit per row.
pub type Bitmap = BitVec<u64, Lsb0>;

/// How the values of one attribute column are interpreted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AttributeKind {
    /// Whole numbers of magnitude up to [`MAX_INTEGER_MAGNITUDE`] (2^53 − 1), held exactly.
    Integer,
    /// Real numbers.
    Float,
    /// Strings, dictionary-encoded: the value is the position in `AttributeColumn::dictionary`.
    Categorical,
}

/// One attribute column: its name, its kind and (for categorical columns) its dictionary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttributeColumn {
    /// Column name as written in the CSV header and in filters.
    pub name: String,
    /// How values are interpreted.
    pub kind: AttributeKind,
    /// Categorical columns only: code -> string, sorted so codes are deterministic.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dictionary: Vec<String>,
}

impl AttributeColumn {
    /// Returns the dictionary code of `value`, if this categorical column has it.
    pub fn code_of(&self, value: &str) -> Option<u32> {
        self.dictionary
            .binary_search_by(|entry| entry.as_str().cmp(value))
            .ok()
            .map(|code| code as u32)
    }
}

/// The attribute columns of an index, in storage order.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct AttributeSchema {
    /// Columns in storage order.
    pub columns: Vec<AttributeColumn>,
}

impl AttributeSchema {
    /// Returns the position of the column called `name`.
    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|column| column.name == name)
    }

    /// Returns the number of columns.
    pub fn num_columns(&self) -> usize {
        self.columns.len()
    }
}

/// Raw attribute values, column-major: `columns[c][row]`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AttributeTable {
    /// Number of rows (vectors).
    pub num_rows: usize,
    /// One `Vec` of `num_rows` values per schema column.
    pub columns: Vec<Vec<f64>>,
}

impl AttributeTable {
    /// Returns an empty table with `num_columns` columns and room for `capacity` rows.
    pub fn with_columns(num_columns: usize, capacity: usize) -> Self {
        AttributeTable {
            num_rows: 0,
            columns: (0..num_columns)
                .map(|_| Vec::with_capacity(capacity))
                .collect(),
        }
    }

    /// Returns the table restricted to `rows`, in that order.
    pub fn select_rows(&self, rows: &[u32]) -> AttributeTable {
        AttributeTable {
            num_rows: rows.len(),
            columns: self
                .columns
                .iter()
                .map(|column| rows.iter().map(|&row| column[row as usize]).collect())
                .collect(),
        }
    }

    /// Returns the attribute values of `row` as JSON (categorical codes decoded to strings).
    pub fn row_json(
        &self,
        schema: &AttributeSchema,
        row: usize,
    ) -> serde_json::Map<String, serde_json::Value> {
        let mut object = serde_json::Map::with_capacity(schema.columns.len());
        for (column, values) in schema.columns.iter().zip(&self.columns) {
            let value = values[row];
            let json = match column.kind {
                AttributeKind::Integer => serde_json::Value::from(value as i64),
                AttributeKind::Float => serde_json::Number::from_f64(value)
                    .map(serde_json::Value::Number)
                    .unwrap_or(serde_json::Value::Null),
                AttributeKind::Categorical => column
                    .dictionary
                    .get(value as usize)
                    .map(|text| serde_json::Value::String(text.clone()))
                    .unwrap_or(serde_json::Value::Null),
            };
            object.insert(column.name.clone(), json);
        }
        object
    }
}
