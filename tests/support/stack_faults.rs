//! Faults under the local stack's functions: the rules file of the S3 fault proxy
//! (`scripts/s3-fault-proxy.py`) and its log of what was injected, dedicated small indexes
//! built straight into the stack's S3 (so tests do not disturb each other), and the objects of
//! those indexes, read and overwritten directly in S3 to damage them at rest.

use std::path::PathBuf;
use std::sync::Arc;

use squash_cli::input_files;
use squash_core::index::build::NoProgress;
use squash_core::index::{BuildInput, BuildParams};
use squash_core::metric::Metric;
use squash_core::protocol::{QueryRequest, QueryResponse};
use squash_service::embedded::{EmbeddedConfig, EmbeddedIndex};
use squash_service::write_index;
use squash_storage::{store_for_location, BlobStore};

use crate::{sample_dir, Stack};

/// Returns a tokio runtime for the async parts of a test.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// The S3 fault proxy's rules file and injection log.
#[derive(Debug, Clone)]
pub struct S3Faults {
    /// Rules file (`SQUASH_S3_FAULT_FILE`).
    pub rules_file: PathBuf,
    /// Injection log (`SQUASH_S3_FAULT_LOG`).
    pub log_file: PathBuf,
}

impl S3Faults {
    /// Returns the files `scripts/local-stack.sh env` names, or the ones beside the workers'
    /// fault file.
    pub fn for_stack(stack: &Stack) -> S3Faults {
        let beside = |name: &str| stack.fault_file.with_file_name(name);
        S3Faults {
            rules_file: std::env::var("SQUASH_S3_FAULT_FILE")
                .map(PathBuf::from)
                .unwrap_or_else(|_| beside("s3-faults")),
            log_file: std::env::var("SQUASH_S3_FAULT_LOG")
                .map(PathBuf::from)
                .unwrap_or_else(|_| beside("s3-faults.log")),
        }
    }

    /// Replaces the rules (every count starts again; empty text clears every fault).
    pub fn set(&self, rules: &str) {
        std::fs::write(&self.rules_file, rules).expect("S3 fault rules written");
    }

    /// Returns the injections logged so far whose line contains `substring`.
    pub fn injections(&self, substring: &str) -> Vec<String> {
        std::fs::read_to_string(&self.log_file)
            .unwrap_or_default()
            .lines()
            .filter(|line| line.contains(substring))
            .map(str::to_string)
            .collect()
    }
}

/// Returns the store of index `name` in the stack's S3, reached directly (not through the
/// fault proxy).
pub fn index_store(stack: &Stack, name: &str) -> Arc<dyn BlobStore> {
    runtime()
        .block_on(store_for_location(&format!("{}/{name}", stack.root)))
        .expect("store")
}

/// Builds the first `num_vectors` sample vectors (ids shifted by `id_offset`, no attributes)
/// into 4 partitions as index `name`, version `version`.
pub fn build_sample_subset(
    stack: &Stack,
    name: &str,
    num_vectors: usize,
    id_offset: u64,
    version: &str,
) {
    let vectors = input_files::read_vectors(&sample_dir().join("base.fvecs")).expect("vectors");
    let dim = vectors.dim;
    let mut attributes = squash_core::attributes::AttributeTable::with_columns(0, num_vectors);
    attributes.num_rows = num_vectors;
    let input = BuildInput {
        dim,
        vectors: vectors.data[..num_vectors * dim].to_vec(),
        ids: (0..num_vectors as u64).map(|i| i + id_offset).collect(),
        schema: Default::default(),
        attributes,
    };
    let mut params = BuildParams::new(Metric::Cosine, version);
    params.num_partitions = Some(4);
    let store = index_store(stack, name);
    runtime()
        .block_on(write_index(store, input, params, Arc::new(NoProgress)))
        .expect("build into S3");
}

/// Returns the embedded path's answers to `requests` on the index in `store`.
pub fn embedded_answers(
    store: Arc<dyn BlobStore>,
    requests: &[QueryRequest],
) -> Vec<QueryResponse> {
    runtime().block_on(async {
        let index = EmbeddedIndex::open_store(store, EmbeddedConfig::default())
            .await
            .expect("open the index");
        index.query_batch(requests).await.expect("embedded answers")
    })
}

/// Returns the bytes of object `key` of `store`.
pub fn read_object(store: &Arc<dyn BlobStore>, key: &str) -> Vec<u8> {
    runtime().block_on(store.get(key)).expect("object read")
}

/// Replaces object `key` of `store` with `bytes`.
pub fn write_object(store: &Arc<dyn BlobStore>, key: &str, bytes: Vec<u8>) {
    runtime()
        .block_on(store.put(key, bytes))
        .expect("object written");
}

/// Deletes object `key` of `store`.
pub fn delete_object(store: &Arc<dyn BlobStore>, key: &str) {
    runtime()
        .block_on(store.delete(key))
        .expect("object deleted");
}

/// Returns the keys of `store` starting with `prefix`.
pub fn list_objects(store: &Arc<dyn BlobStore>, prefix: &str) -> Vec<String> {
    runtime().block_on(store.list(prefix)).expect("listing")
}
