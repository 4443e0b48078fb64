//! The Rust client (`squash_client::Client`) against the local stack: the same answers as the
//! embedded path, and the API's errors mapped back onto the library's error variants. Started by
//! `scripts/test.sh`; skipped with a message otherwise.

use squash_client::Client;
use squash_core::error::Error;
use squash_core::protocol::{BatchRequest, QueryRequest};
use squash_service::embedded::{EmbeddedConfig, EmbeddedIndex};
use squash_storage::store_for_location;
use squash_tests::{sample_workloads, workload_requests, Stack};

const SAMPLE_INDEX: &str = "glove-20k";

#[tokio::test(flavor = "multi_thread")]
async fn the_rust_client_answers_like_the_embedded_path_and_maps_errors() {
    let Some(stack) =
        Stack::from_env("the_rust_client_answers_like_the_embedded_path_and_maps_errors")
    else {
        return;
    };
    let client = Client::new(&stack.api).expect("client");
    client.health().await.expect("health");
    assert!(client
        .list()
        .await
        .expect("list")
        .contains(&SAMPLE_INDEX.to_string()));
    let summary = client.describe(SAMPLE_INDEX).await.expect("describe");
    assert_eq!((summary.dim, summary.num_vectors), (50, 20_000));

    let store = store_for_location(&format!("{}/{SAMPLE_INDEX}", stack.root))
        .await
        .expect("store");
    let embedded = EmbeddedIndex::open_store(store, EmbeddedConfig::default())
        .await
        .expect("open the sample");
    let (file, queries) = sample_workloads();
    for workload in file.workloads.iter().take(2) {
        let requests: Vec<QueryRequest> = workload_requests(workload, &queries, 10)
            .into_iter()
            .take(20)
            .collect();
        let expected = embedded.query_batch(&requests).await.expect("embedded");
        let single = client
            .query(SAMPLE_INDEX, &requests[0])
            .await
            .expect("query");
        assert!(!single.partial);
        assert_eq!(single.hits, expected[0].hits, "{}", workload.name);
        let batch = BatchRequest {
            queries: requests.clone(),
            require_complete: true,
            branching: None,
            min_token: None,
            as_of: None,
            output: Default::default(),
            target_invocation_ms: None,
            queries_from: None,
            max_invocations: None,
        };
        let answers = client
            .query_batch(SAMPLE_INDEX, &batch)
            .await
            .expect("batch");
        assert_eq!(answers.results.len(), requests.len());
        for (answer, expected) in answers.results.iter().zip(&expected) {
            assert_eq!(answer.hits, expected.hits, "{}", workload.name);
        }
    }

    // A wrong dimension is the caller's fault, named by field.
    match client
        .query(SAMPLE_INDEX, &QueryRequest::new(vec![0.5; 3], 10))
        .await
    {
        Err(Error::InvalidInput { field, reason }) => {
            assert_eq!(field, "vector", "{reason}");
        }
        other => panic!("expected InvalidInput, got {other:?}"),
    }
    match client
        .query("no-such-index", &QueryRequest::new(vec![0.5; 50], 10))
        .await
    {
        Err(Error::NotFound { what }) => assert!(what.contains("no-such-index"), "{what}"),
        other => panic!("expected NotFound, got {other:?}"),
    }
    // Names that could leave the index prefix are refused before anything is sent.
    assert!(matches!(
        client.describe("../x").await,
        Err(Error::InvalidInput { field, .. }) if field == "index"
    ));
}
