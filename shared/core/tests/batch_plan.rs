//! Planning a batch (`search/plan.rs`): queries planned in parallel, with the filters several
//! queries share evaluated once, plan exactly as each query planned alone.

mod common;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use squash_core::attributes::{AttributeKind, AttributeSchema, AttributeTable};
use squash_core::filter::Filter;
use squash_core::index::{BuildInput, BuildParams, CoordinatorData};
use squash_core::metric::{normalize_in_place, Metric};
use squash_core::protocol::{QueryRequest, SearchKnobs};
use squash_core::search::{plan_batch, plan_query};

const DIM: usize = 16;
const NUM_VECTORS: usize = 5_000;

fn coordinator(metric: Metric) -> CoordinatorData {
    let mut rng = StdRng::seed_from_u64(9);
    let input = BuildInput {
        dim: DIM,
        vectors: (0..NUM_VECTORS * DIM)
            .map(|_| rng.random::<f32>() - 0.5)
            .collect(),
        ids: (0..NUM_VECTORS as u64).collect(),
        schema: AttributeSchema {
            columns: vec![common::column("year", AttributeKind::Integer)],
        },
        attributes: AttributeTable {
            num_rows: NUM_VECTORS,
            columns: vec![(0..NUM_VECTORS)
                .map(|_| f64::from(rng.random_range(1990..2025)))
                .collect()],
        },
    };
    let mut params = BuildParams::new(metric, "1");
    params.num_partitions = Some(4);
    params.cluster_rows = 100;
    let (summary, objects) = common::build_objects(input, &params);
    CoordinatorData::decode(
        "coordinator",
        objects[&summary.manifest.coordinator_key].clone(),
    )
    .unwrap()
}

#[test]
fn a_batch_with_shared_filters_plans_as_its_queries_alone() {
    for metric in [Metric::L2, Metric::Cosine] {
        let coordinator = coordinator(metric);
        let mut rng = StdRng::seed_from_u64(3);
        // Three filters repeated through the batch, one per query, and none.
        let filters = [
            Some(json!({"year": {"$gte": 2010}})),
            Some(json!({"year": 2001})),
            Some(json!({"year": {"$lt": 1995}})),
            None,
        ];
        let requests: Vec<QueryRequest> = (0..60)
            .map(|i| {
                let mut request = QueryRequest::new(
                    (0..DIM).map(|_| rng.random::<f32>() - 0.5).collect(),
                    1 + i % 20,
                );
                request.filter = if i % 5 == 4 {
                    Some(json!({"year": {"$gte": 1990 + (i as i64 % 30)}}))
                } else {
                    filters[i % 4].clone()
                };
                request
            })
            .collect();
        let batch = plan_batch(&coordinator, &requests).unwrap();
        assert_eq!(batch.plans.len(), requests.len());
        for (position, request) in requests.iter().enumerate() {
            let filter = match &request.filter {
                Some(json) => Filter::parse(json, &coordinator.schema).unwrap(),
                None => Filter::match_all(),
            };
            let mut vector = request.vector.clone();
            if metric.normalizes() {
                normalize_in_place(&mut vector);
            }
            let knobs = SearchKnobs::resolve(&request.options).unwrap();
            let alone = plan_query(&coordinator, &vector, &filter, request.k, &knobs);
            assert_eq!(batch.plans[position], alone, "{metric} query {position}");
            assert_eq!(batch.queries[position].probe_radius, alone.probe_radius);
        }
        // Every (partition, query) of the plans is one task entry, with its rows.
        for (task, rows) in batch.tasks.iter().zip(&batch.task_rows) {
            assert_eq!(task.queries.len(), rows.len());
            for (&query, &task_rows) in task.queries.iter().zip(rows) {
                let plan = &batch.plans[query as usize];
                let at = plan
                    .partitions
                    .iter()
                    .position(|&p| p == task.partition)
                    .unwrap();
                assert_eq!(plan.rows_by_partition[at], task_rows);
            }
        }
    }
}

#[test]
fn the_first_bad_query_of_a_batch_is_named() {
    let coordinator = coordinator(Metric::L2);
    let mut requests = vec![QueryRequest::new(vec![0.1; DIM], 5); 30];
    requests[7].vector = vec![0.1; DIM + 1];
    requests[20].k = 0;
    match plan_batch(&coordinator, &requests) {
        Err(squash_core::Error::InvalidInput { field, .. }) => {
            assert_eq!(field, "queries[7].vector")
        }
        other => panic!("{other:?}"),
    }
}
