//! Test data shared by the integration tests: a clustered synthetic set with attributes, and
//! an index of it in a memory store.
#![allow(dead_code)]

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use squash_core::attributes::{AttributeColumn, AttributeKind, AttributeSchema, AttributeTable};
use std::sync::Arc;

use squash_core::index::build::{BuildSummary, NoProgress};
use squash_core::index::{BuildInput, BuildParams};
use squash_core::metric::Metric;
use squash_service::embedded::{EmbeddedConfig, EmbeddedIndex};
use squash_service::write_index;
use squash_storage::{BlobStore, MemoryStore};

pub const COLORS: [&str; 5] = ["blue", "green", "red", "violet", "yellow"];

/// Clustered vectors with three attributes: year (int), price (float), color (categorical).
pub fn synthetic(num_vectors: usize, dim: usize, seed: u64) -> BuildInput {
    let mut rng = StdRng::seed_from_u64(seed);
    let num_clusters = 12;
    let centers: Vec<f32> = (0..num_clusters * dim)
        .map(|_| rng.random::<f32>() * 10.0 - 5.0)
        .collect();
    let mut vectors = Vec::with_capacity(num_vectors * dim);
    let mut table = AttributeTable::with_columns(3, num_vectors);
    for _ in 0..num_vectors {
        let cluster = rng.random_range(0..num_clusters);
        for d in 0..dim {
            vectors.push(centers[cluster * dim + d] + (rng.random::<f32>() - 0.5) * 3.0);
        }
        table.columns[0].push(f64::from(rng.random_range(2000..2025)));
        table.columns[1].push((rng.random::<f64>() * 1000.0).round() / 10.0);
        table.columns[2].push(rng.random_range(0..COLORS.len()) as f64);
    }
    table.num_rows = num_vectors;
    let schema = AttributeSchema {
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
                name: "color".into(),
                kind: AttributeKind::Categorical,
                dictionary: COLORS.iter().map(|c| c.to_string()).collect(),
            },
        ],
    };
    BuildInput {
        dim,
        vectors,
        ids: (0..num_vectors as u64).map(|i| i * 3 + 7).collect(),
        schema,
        attributes: table,
    }
}

pub fn params(metric: Metric, partitions: usize, version: &str) -> BuildParams {
    let mut params = BuildParams::new(metric, version);
    params.num_partitions = Some(partitions);
    params.seed = 42;
    params
}

/// Builds `input` into a memory store with `build_params` and opens it embedded.
pub async fn built_in_memory(
    input: &BuildInput,
    build_params: BuildParams,
) -> (Arc<dyn BlobStore>, EmbeddedIndex, BuildSummary) {
    let store: Arc<dyn BlobStore> = Arc::new(MemoryStore::new());
    let built = write_index(
        Arc::clone(&store),
        input.clone(),
        build_params,
        Arc::new(NoProgress),
    )
    .await
    .expect("build");
    let index = EmbeddedIndex::open_store(Arc::clone(&store), EmbeddedConfig::default())
        .await
        .expect("open");
    (store, index, built)
}
