//! A small index written by format version 1, committed under
//! `shared/core/tests/data/golden/index-v1`, must keep opening and answering: a change to block
//! names, layouts or the manifest that breaks existing indexes fails here.
//!
//! Regenerate (only on a deliberate format change, with a new version number):
//! `SQUASH_REGENERATE_GOLDEN=1 cargo test -p squash-service --test index_golden`.

use std::path::PathBuf;
use std::sync::Arc;

use serde_json::json;
use squash_core::attributes::{AttributeColumn, AttributeKind, AttributeSchema, AttributeTable};
use squash_core::index::build::NoProgress;
use squash_core::index::{BuildInput, BuildParams};
use squash_core::metric::Metric;
use squash_core::protocol::{QueryRequest, SearchOptions};
use squash_service::embedded::{EmbeddedConfig, EmbeddedIndex};
use squash_service::write_index;
use squash_storage::{BlobStore, LocalStore};

const NUM_VECTORS: usize = 64;
const DIM: usize = 6;

/// Deterministic data without a random generator, so it never depends on a crate's stream.
fn golden_input() -> BuildInput {
    let mut vectors = Vec::with_capacity(NUM_VECTORS * DIM);
    let mut table = AttributeTable::with_columns(2, NUM_VECTORS);
    for i in 0..NUM_VECTORS {
        for d in 0..DIM {
            vectors.push((((i * 7 + d * 13) % 23) as f32 - 11.0) / 4.0 + (i % 4) as f32);
        }
        table.columns[0].push((1990 + i % 30) as f64);
        table.columns[1].push((i % 3) as f64);
    }
    table.num_rows = NUM_VECTORS;
    BuildInput {
        dim: DIM,
        vectors,
        ids: (0..NUM_VECTORS as u64).map(|i| 1000 + i).collect(),
        schema: AttributeSchema {
            columns: vec![
                AttributeColumn {
                    name: "year".into(),
                    kind: AttributeKind::Integer,
                    dictionary: vec![],
                },
                AttributeColumn {
                    name: "shape".into(),
                    kind: AttributeKind::Categorical,
                    dictionary: vec!["circle".into(), "square".into(), "triangle".into()],
                },
            ],
        },
        attributes: table,
    }
}

fn golden_folder() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../core/tests/data/golden/index-v1")
}

#[tokio::test(flavor = "multi_thread")]
async fn version_1_index_still_opens_and_answers() {
    let folder = golden_folder();
    if std::env::var_os("SQUASH_REGENERATE_GOLDEN").is_some() {
        let _ = std::fs::remove_dir_all(&folder);
        let mut params = BuildParams::new(Metric::L2, "golden1");
        params.num_partitions = Some(2);
        params.created_unix_s = 1_790_000_000;
        let store: Arc<dyn BlobStore> = Arc::new(LocalStore::new(&folder));
        write_index(store, golden_input(), params, Arc::new(NoProgress))
            .await
            .expect("write golden index");
    }
    let store: Arc<dyn BlobStore> = Arc::new(LocalStore::new(&folder));
    let index = EmbeddedIndex::open_store(store, EmbeddedConfig::default())
        .await
        .expect("the committed version-1 index opens");
    let manifest = index.manifest();
    assert_eq!(manifest.format_version, 1);
    assert_eq!(manifest.index_version, "golden1");
    assert_eq!(manifest.num_vectors, NUM_VECTORS as u64);
    assert_eq!(manifest.partitions.len(), 2);
    assert_eq!(manifest.schema, golden_input().schema);

    // Exact mode must return the brute-force answer over the same data.
    let input = golden_input();
    let query: Vec<f32> = input.vectors[5 * DIM..6 * DIM]
        .iter()
        .map(|v| v + 0.25)
        .collect();
    let filter = json!({"shape": {"$in": ["circle", "triangle"]}, "year": {"$lt": 2010}});
    let request = QueryRequest {
        vector: query.clone(),
        k: 5,
        filter: Some(filter),
        include_attributes: true,
        require_complete: false,
        branching: None,
        min_token: None,
        as_of: None,
        options: SearchOptions {
            exact: true,
            ..SearchOptions::default()
        },
    };
    let response = index
        .query_batch(&[request])
        .await
        .expect("query")
        .remove(0);
    let mut expected: Vec<(f32, u64)> = (0..NUM_VECTORS)
        .filter(|&i| i % 3 != 1 && 1990 + i % 30 < 2010)
        .map(|i| {
            (
                Metric::L2.distance(&query, &input.vectors[i * DIM..][..DIM]),
                input.ids[i],
            )
        })
        .collect();
    expected.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let got: Vec<u64> = response.hits.iter().map(|hit| hit.id).collect();
    let want: Vec<u64> = expected.iter().take(5).map(|e| e.1).collect();
    assert_eq!(got, want);
    let first = response.hits[0].attributes.as_ref().expect("attributes");
    assert!(first["shape"] == "circle" || first["shape"] == "triangle");
}
