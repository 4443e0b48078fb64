//! Input parsers: vector files (`.fvecs`, `.bvecs`, `.npy`) and attribute CSV text, as
//! functions over bytes plus a display name for error messages.
//!
//! Reading the files is the CLI's job (`squash_cli::input_files`); everything here is tested
//! without files. It must not compute anything beyond turning input bytes into a [`VectorSet`]
//! and an [`AttributeInput`].

pub mod attributes;
pub mod vectors;

pub use attributes::{
    parse_attributes, parse_schema_spec, row_number_ids, AttributeInput, ID_COLUMN,
};
pub use vectors::{
    parse_distances, parse_vectors, write_fvecs, VectorFormat, VectorSet, MAX_DIMENSION,
};
