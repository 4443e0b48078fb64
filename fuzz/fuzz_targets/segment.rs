//! `PartitionData::decode` on any bytes, as given and with repaired checksums, then the
//! worker stage on what decoded.
//!
//! Contract: a failure is `Corrupt`/`UnsupportedVersion` naming the object; a decoded segment
//! encodes and decodes back to the same data; and a decoded segment is safe to search
//! (filters on every column, approximate and exact): the decoder must refuse whatever would
//! make the search panic or read out of bounds.
#![no_main]

use libfuzzer_sys::{fuzz_mutator, fuzz_target};
use serde_json::{json, Value};
use squash_core::attributes::AttributeKind;
use squash_core::index::PartitionData;
use squash_core::protocol::{SearchKnobs, SearchOptions, WorkerQuery, MAX_COMPONENT_MAGNITUDE};
use squash_core::search::{search_partition_using, ScanMethod, PreparedQuery};
use squash_core::Error;
use squash_fuzz::mutate::mutate_object;
use squash_fuzz::{assert_stored_error, check_as_given_and_resealed};

const OBJECT: &str = "films/v1/partition-00003.sqsh";

/// Searching allocates per-query tables of the stored dimension; larger ones are skipped.
const MAX_SEARCHED_DIM: usize = 4096;

const K: usize = 5;

fuzz_target!(|data: &[u8]| check_as_given_and_resealed(data, check));

fuzz_mutator!(|data: &mut [u8], size: usize, max_size: usize, seed: u32| {
    mutate_object(data, size, max_size, seed, libfuzzer_sys::fuzzer_mutate)
});

fn check(data: &[u8]) {
    let partition = match PartitionData::decode(OBJECT, data.to_vec()) {
        Ok(partition) => partition,
        Err(error) => return assert_stored_error(OBJECT, &error),
    };
    let bytes = partition.encode().expect("a decoded segment encodes");
    let again = PartitionData::decode(OBJECT, bytes).expect("an encoded segment decodes");
    assert_same(&partition, &again);
    let _ = partition.memory_bytes();
    if (1..=MAX_SEARCHED_DIM).contains(&partition.dim) {
        search_on(&partition);
    }
}

fn assert_same(a: &PartitionData, b: &PartitionData) {
    let bits = |values: &[f32]| values.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    assert_eq!(a.partition, b.partition);
    assert_eq!(a.dim, b.dim);
    assert_eq!(a.metric, b.metric);
    assert_eq!(a.ids, b.ids);
    assert_eq!(bits(&a.vectors), bits(&b.vectors));
    let column_bits = |columns: &[Vec<f64>]| {
        columns
            .iter()
            .map(|column| column.iter().map(|v| v.to_bits()).collect::<Vec<_>>())
            .collect::<Vec<_>>()
    };
    assert_eq!(a.attributes.num_rows, b.attributes.num_rows);
    assert_eq!(
        column_bits(&a.attributes.columns),
        column_bits(&b.attributes.columns)
    );
    assert_eq!(a.schema, b.schema);
    let (a_codes, b_codes) = (a.quantized.as_ref().unwrap(), b.quantized.as_ref().unwrap());
    assert_eq!(bits(&a_codes.pca.mean), bits(&b_codes.pca.mean));
    assert_eq!(bits(&a_codes.pca.components), bits(&b_codes.pca.components));
    assert_eq!(bits(&a_codes.pca.variances), bits(&b_codes.pca.variances));
    assert_eq!(a_codes.osq.bits, b_codes.osq.bits);
    assert_eq!(bits(&a_codes.osq.boundaries), bits(&b_codes.osq.boundaries));
    assert_eq!(a_codes.layout, b_codes.layout);
    assert_eq!(a_codes.planes, b_codes.planes);
    assert_eq!(a_codes.num_sign_bits, b_codes.num_sign_bits);
    assert_eq!(a_codes.sign_codes, b_codes.sign_codes);
    assert_eq!(bits(&a_codes.sign_norms), bits(&b_codes.sign_norms));
    assert_eq!(a.fastscan, b.fastscan);
}

/// Searches with a constant vector and with the first stored vector (when a client could send
/// it), unfiltered and with a filter on each column, approximate and exact.
fn search_on(partition: &PartitionData) {
    let mut vectors = vec![vec![0.5f32; partition.dim]];
    if let Some(first) = partition.vectors.get(..partition.dim) {
        if first
            .iter()
            .all(|v| v.is_finite() && v.abs() <= MAX_COMPONENT_MAGNITUDE)
        {
            vectors.push(first.to_vec());
        }
    }
    let mut filters: Vec<Option<Value>> = vec![None];
    for column in &partition.schema.columns {
        let filter = match column.kind {
            AttributeKind::Categorical => {
                let value = column.dictionary.first().cloned().unwrap_or_default();
                json!({ column.name.clone(): {"$nin": [value]} })
            }
            AttributeKind::Integer | AttributeKind::Float => {
                json!({ column.name.clone(): {"$gte": 1, "$lt": 1000} })
            }
        };
        filters.push(Some(filter));
    }
    for vector in &vectors {
        for filter in &filters {
            for exact in [false, true] {
                let options = SearchOptions {
                    exact,
                    // The smallest re-rank depth: the sign-code prune then runs on
                    // partitions of more than 250 vectors (5 x 1 x 50 kept at least).
                    rerank_factor: Some(1),
                    ..SearchOptions::default()
                };
                let query = WorkerQuery {
                    vector: vector.clone(),
                    k: K,
                    filter: filter.clone(),
                    include_attributes: true,
                    knobs: SearchKnobs::resolve(&options).expect("valid options"),
                    // A radius reaches the fine-cluster selection; none scans every row.
                    probe_radius: (!exact).then_some(1.0),
                };
                let prepared = match PreparedQuery::try_new(&query, partition) {
                    Ok(prepared) => prepared,
                    // A zero vector under cosine, or a schema the parser refuses.
                    Err(Error::InvalidInput { .. }) => continue,
                    Err(other) => panic!("preparing the query failed with {other:?}"),
                };
                for method in [ScanMethod::Direct, ScanMethod::Quantized, ScanMethod::FastScan] {
                    let (hits, stats) = search_partition_using(partition, &prepared, Some(method));
                    assert!(hits.len() <= K);
                    assert!(stats.passed_filter <= partition.num_vectors() as u64);
                    for hit in &hits {
                        assert!(partition.ids.contains(&hit.id));
                    }
                }
            }
        }
    }
}
