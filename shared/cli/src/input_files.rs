//! Reading input files from disk: the I/O edge of the index builder. Parsing is
//! `squash_core::input`'s; this module only reads whole files and hands their bytes over.

use std::path::Path;

use squash_core::attributes::{AttributeKind, AttributeSchema, AttributeTable};
use squash_core::error::{Error, Result};
use squash_core::index::BuildInput;
use squash_core::input::{
    parse_attributes, parse_distances, parse_vectors, row_number_ids, AttributeInput, VectorFormat,
    VectorSet,
};

/// Reads a vector file, choosing the format from its extension.
///
/// Error fields start with the path as given, e.g. `data/base.fvecs: record 17 (byte 3468)`.
pub fn read_vectors(path: &Path) -> Result<VectorSet> {
    let format = VectorFormat::from_path(path)?;
    let bytes = std::fs::read(path).map_err(|error| Error::io(path, error))?;
    parse_vectors(&path.display().to_string(), format, &bytes)
}

/// Reads a ground-truth distance file (the layouts of [`read_vectors`]): any finite values.
pub fn read_distances(path: &Path) -> Result<VectorSet> {
    let format = VectorFormat::from_path(path)?;
    let bytes = std::fs::read(path).map_err(|error| Error::io(path, error))?;
    parse_distances(&path.display().to_string(), format, &bytes)
}

/// Reads an attribute CSV file with one data row per vector (`expected_rows` of them).
///
/// `declared` fixes the kinds of the named columns; see [`parse_attributes`].
pub fn read_attributes(
    path: &Path,
    declared: &[(String, AttributeKind)],
    expected_rows: usize,
) -> Result<AttributeInput> {
    let text = std::fs::read(path).map_err(|error| Error::io(path, error))?;
    parse_attributes(&path.display().to_string(), &text, declared, expected_rows)
}

/// Reads what an index build takes: the vectors and, when given, their attribute CSV
/// (`declared` fixes column kinds); without attributes the ids are the row numbers.
pub fn read_build_input(
    vectors_path: &Path,
    attributes_path_opt: Option<&Path>,
    declared: &[(String, AttributeKind)],
) -> Result<BuildInput> {
    let vectors = read_vectors(vectors_path)?;
    let (ids, schema, attributes) = match attributes_path_opt {
        Some(path) => {
            let parsed = read_attributes(path, declared, vectors.num_vectors)?;
            (parsed.ids, parsed.schema, parsed.table)
        }
        None => (
            row_number_ids(vectors.num_vectors),
            AttributeSchema::default(),
            AttributeTable {
                num_rows: vectors.num_vectors,
                columns: Vec::new(),
            },
        ),
    };
    Ok(BuildInput {
        dim: vectors.dim,
        vectors: vectors.data,
        ids,
        schema,
        attributes,
    })
}
