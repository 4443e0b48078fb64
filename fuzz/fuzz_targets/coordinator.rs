//! `CoordinatorData::decode` on any bytes, as given and with repaired checksums, then the
//! coordinator stage on what decoded.
//!
//! Contract: a failure is `Corrupt`/`UnsupportedVersion` naming the object; a decoded object
//! encodes and decodes back to the same data; and a decoded object is safe to plan queries on
//! (filters on every column): the decoder must refuse whatever would make planning panic.
#![no_main]

use libfuzzer_sys::{fuzz_mutator, fuzz_target};
use serde_json::{json, Value};
use squash_core::attributes::AttributeKind;
use squash_core::index::CoordinatorData;
use squash_core::protocol::{QueryRequest, SearchOptions};
use squash_core::search::plan_batch;
use squash_core::Error;
use squash_fuzz::mutate::mutate_object;
use squash_fuzz::{assert_stored_error, check_as_given_and_resealed};

const OBJECT: &str = "films/v1/coordinator.sqsh";

/// Planning allocates a query vector of the stored dimension; larger ones are skipped.
const MAX_PLANNED_DIM: usize = 4096;

fuzz_target!(|data: &[u8]| check_as_given_and_resealed(data, check));

fuzz_mutator!(|data: &mut [u8], size: usize, max_size: usize, seed: u32| {
    mutate_object(data, size, max_size, seed, libfuzzer_sys::fuzzer_mutate)
});

fn check(data: &[u8]) {
    let coordinator = match CoordinatorData::decode(OBJECT, data.to_vec()) {
        Ok(coordinator) => coordinator,
        Err(error) => return assert_stored_error(OBJECT, &error),
    };
    assert_eq!(
        coordinator.partition_row_offsets.len(),
        coordinator.num_partitions() + 1
    );
    let bytes = coordinator.encode().expect("a decoded coordinator encodes");
    let again = CoordinatorData::decode(OBJECT, bytes).expect("an encoded coordinator decodes");
    assert_same(&coordinator, &again);
    if (1..=MAX_PLANNED_DIM).contains(&coordinator.dim) {
        plan_on(&coordinator);
    }
}

fn assert_same(a: &CoordinatorData, b: &CoordinatorData) {
    assert_eq!(a.metric, b.metric);
    assert_eq!(a.dim, b.dim);
    assert_eq!(a.partition_sizes, b.partition_sizes);
    assert_eq!(a.partition_row_offsets, b.partition_row_offsets);
    let bits = |values: &[f32]| values.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&a.centroids), bits(&b.centroids));
    assert_eq!(a.schema, b.schema);
    assert_eq!(a.attribute_quantizer, b.attribute_quantizer);
    assert_eq!(a.attribute_codes, b.attribute_codes);
}

/// Plans one unfiltered query, one per column and one combining them, exact and approximate.
fn plan_on(coordinator: &CoordinatorData) {
    let mut filters: Vec<Value> = coordinator
        .schema
        .columns
        .iter()
        .map(|column| match column.kind {
            AttributeKind::Categorical => {
                let value = column.dictionary.first().cloned().unwrap_or_default();
                json!({ column.name.clone(): {"$in": [value]} })
            }
            AttributeKind::Integer | AttributeKind::Float => {
                json!({ column.name.clone(): {"$gte": 1, "$lt": 1000} })
            }
        })
        .collect();
    if filters.len() > 1 {
        filters.push(json!({"$or": filters.clone()}));
    }
    let mut requests = Vec::new();
    for exact in [false, true] {
        let filtered = std::iter::once(None).chain(filters.iter().cloned().map(Some));
        for filter in filtered {
            let mut request = QueryRequest::new(vec![0.5; coordinator.dim], 10);
            request.filter = filter;
            request.options = SearchOptions {
                exact,
                ..SearchOptions::default()
            };
            requests.push(request);
        }
    }
    // One request at a time: the first invalid request fails a whole batch.
    for request in requests {
        match plan_batch(coordinator, std::slice::from_ref(&request)) {
            Ok(plan) => {
                for partition in plan.plans.iter().flat_map(|p| &p.partitions) {
                    assert!((*partition as usize) < coordinator.num_partitions());
                }
            }
            // A schema the parser refuses (say, duplicate column names) is the index's fault
            // but must still come back as an error, not a panic.
            Err(Error::InvalidInput { .. }) => {}
            Err(other) => panic!("planning failed with {other:?}"),
        }
    }
}
