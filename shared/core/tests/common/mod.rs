//! What the core integration tests share: building an index into memory.
#![allow(dead_code)]

use std::collections::HashMap;

use squash_core::attributes::{AttributeColumn, AttributeKind};
use squash_core::index::build::NoProgress;
use squash_core::index::{build_index, BuildInput, BuildParams, BuildSummary};

/// Builds `input` with `params` and returns the summary and every object by key.
pub fn build_objects(
    input: BuildInput,
    params: &BuildParams,
) -> (BuildSummary, HashMap<String, Vec<u8>>) {
    let mut objects = HashMap::new();
    let summary = build_index(input, params, &NoProgress, &mut |key, bytes| {
        objects.insert(key.to_string(), bytes);
        Ok(())
    })
    .expect("build");
    (summary, objects)
}

/// An attribute column of `kind` named `name`, with no dictionary.
pub fn column(name: &str, kind: AttributeKind) -> AttributeColumn {
    AttributeColumn {
        name: name.into(),
        kind,
        dictionary: vec![],
    }
}
