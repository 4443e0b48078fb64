//! What one request may ask of the service: how large its answer may be, and how many rows it
//! may make one worker invocation score. The coordinator checks both once the batch is planned
//! (and, for the rows, split over invocations), before any worker is invoked, so a request that
//! could never be answered is refused with the field and the limit named instead of running
//! until its deadline.
//!
//! Both checks work on estimates made from the plan alone:
//! - the answer size from `k`, the number of queries and what each hit carries (its attributes
//!   sized from the schema: longest category label, widest number);
//! - the work from the rows each query makes each partition's worker scan (its probed fine
//!   clusters; every row in exact mode, which counts each row [`EXACT_ROW_WEIGHT`] times),
//!   summed over what one invocation is given.
//!
//! What the limits cannot see coming (a worker slower than expected) is bounded by the
//! deadline instead: workers stop between queries once their budget is spent.

use crate::attributes::{AttributeKind, AttributeSchema};
use crate::error::{Error, Result};
use crate::protocol::AnswerOutput;
pub use crate::search::work::{weighted_rows, EXACT_ROW_WEIGHT};
use crate::search::BatchPlan;

/// JSON bytes of one hit without attributes, at most: `{"id":` + 20 digits + `,"distance":`
/// + a 15-character float + `},`.
pub const HIT_JSON_BYTES: u64 = 56;
/// JSON bytes of one query's answer besides its hits: `partial`, missing partitions, per-query
/// statistics (about 260 measured on the sample, with room for a list of missing partitions).
pub const QUERY_JSON_BYTES: u64 = 320;
/// JSON bytes of a request's answer besides its queries: the execution statistics, with one
/// entry per worker invocation.
pub const REQUEST_JSON_BYTES: u64 = 32 * 1024;
/// Rows per millisecond one worker is assumed to score at most, to turn a time budget into a
/// work limit. It is generous on purpose (several times what a worker reaches), so the check
/// refuses only requests that could not finish even on a fast worker; the deadline bounds the
/// rest.
pub const SCAN_ROWS_PER_MS: u64 = 50_000;

/// Answers travel inside Lambda's 6 MB response, as a string inside the HTTP event (its quotes
/// escaped, about 10 % more): 5 MiB of estimate leaves room for that even when every hit is as
/// wide as estimated (measured answers are about 0.7 of the estimate).
pub const DEFAULT_MAX_ANSWER_BYTES: u64 = 5 << 20;
/// An answer written to the store is still gathered from worker answers, which travel
/// zstd-compressed inside the same 6 MB limit; hits compress about threefold.
pub const DEFAULT_MAX_STORED_ANSWER_BYTES: u64 = 12 << 20;

/// The limits one request is held to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestLimits {
    /// Largest estimated answer returned in the response, in JSON bytes.
    pub max_answer_bytes: u64,
    /// Largest estimated answer written to the store (`"output": "store"`), in JSON bytes.
    pub max_stored_answer_bytes: u64,
    /// Most rows one worker invocation may be planned to score (exact rows weighted).
    pub max_rows_per_invocation: u64,
}

impl RequestLimits {
    /// No limits: for the embedded mode, whose answers stay in the caller's own memory.
    pub fn unlimited() -> RequestLimits {
        RequestLimits {
            max_answer_bytes: u64::MAX,
            max_stored_answer_bytes: u64::MAX,
            max_rows_per_invocation: u64::MAX,
        }
    }

    /// The functions' defaults for requests given `timeout_ms`.
    pub fn for_timeout(timeout_ms: u64) -> RequestLimits {
        RequestLimits {
            max_answer_bytes: DEFAULT_MAX_ANSWER_BYTES,
            max_stored_answer_bytes: DEFAULT_MAX_STORED_ANSWER_BYTES,
            max_rows_per_invocation: timeout_ms.saturating_mul(SCAN_ROWS_PER_MS),
        }
    }

    /// Checks the answer of a planned request against the limits. `single` is a one-query
    /// request (its fields are named without a `queries` prefix).
    pub fn check_answer(
        &self,
        plan: &BatchPlan,
        schema: &AttributeSchema,
        output: AnswerOutput,
        single: bool,
    ) -> Result<()> {
        let (limit, where_to) = match output {
            AnswerOutput::Response => (self.max_answer_bytes, "in a response"),
            AnswerOutput::Store => (self.max_stored_answer_bytes, "written to the store"),
        };
        let answer_bytes = estimated_answer_bytes(
            plan.queries.iter().map(|q| (q.k, q.include_attributes)),
            attribute_json_bytes(schema),
        );
        if answer_bytes > limit {
            let num_hits: u64 = plan.queries.iter().map(|query| query.k as u64).sum();
            let advice = match (output, single) {
                (AnswerOutput::Response, true) => "ask for fewer hits or leave out attributes",
                (AnswerOutput::Response, false) => {
                    "ask for fewer hits, leave out attributes, split the batch, or set \"output\": \"store\" to have the answer written to the store"
                }
                (AnswerOutput::Store, _) => {
                    "ask for fewer hits, leave out attributes, or split the batch"
                }
            };
            return Err(Error::invalid(
                if single { "k" } else { "queries" },
                format!(
                    "the answer would take about {answer_bytes} bytes ({num_hits} hits), over the limit of {limit} bytes {where_to}; {advice}"
                ),
            ));
        }
        Ok(())
    }

    /// Checks the work of the heaviest invocation of a planned request: `rows` (exact rows
    /// weighted, see [`weighted_rows`]) of the partition `partition`, once the batch is split
    /// over `num_invocations` invocations.
    pub fn check_invocation_rows(
        &self,
        rows: u64,
        partition: u32,
        num_invocations: usize,
        single: bool,
    ) -> Result<()> {
        if rows <= self.max_rows_per_invocation {
            return Ok(());
        }
        Err(Error::invalid(
            if single { "options" } else { "queries" },
            format!(
                "one worker invocation would score about {rows} rows of partition {partition} (exact mode counts each row {EXACT_ROW_WEIGHT} times) even with the request split over {num_invocations} invocations, over the limit of {} rows per invocation; split the batch, probe fewer rows, or leave exact mode",
                self.max_rows_per_invocation
            ),
        ))
    }
}

/// Returns the JSON bytes the attributes of one hit take at most: every column's name and its
/// widest value (an integer's 20 characters, a float's 24, the longest category label).
pub fn attribute_json_bytes(schema: &AttributeSchema) -> u64 {
    let columns: u64 = schema
        .columns
        .iter()
        .map(|column| {
            let value_bytes = match column.kind {
                AttributeKind::Integer => 20,
                AttributeKind::Float => 24,
                // Quotes, and escapes for labels that need them.
                AttributeKind::Categorical => column
                    .dictionary
                    .iter()
                    .map(|label| label.len() * 2 + 2)
                    .max()
                    .unwrap_or(4),
            };
            column.name.len() as u64 + 4 + value_bytes as u64
        })
        .sum();
    // `,"attributes":{}`
    16 + columns
}

/// Returns the JSON bytes of `k` hits, each carrying `attribute_bytes` of attributes.
pub fn hits_json_bytes(k: usize, attribute_bytes: u64) -> u64 {
    (k as u64).saturating_mul(HIT_JSON_BYTES + attribute_bytes)
}

/// Returns the estimated JSON bytes of the answer to queries given as `(k, include_attributes)`,
/// hits carrying `attribute_bytes` more when they include attributes.
pub fn estimated_answer_bytes(
    queries: impl IntoIterator<Item = (usize, bool)>,
    attribute_bytes: u64,
) -> u64 {
    let queries: u64 = queries
        .into_iter()
        .map(|(k, include_attributes)| {
            let attribute_bytes = if include_attributes {
                attribute_bytes
            } else {
                0
            };
            QUERY_JSON_BYTES + hits_json_bytes(k, attribute_bytes)
        })
        .fold(0u64, u64::saturating_add);
    REQUEST_JSON_BYTES.saturating_add(queries)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attributes::AttributeColumn;
    use crate::protocol::{Hit, PartitionTask, QueryRequest, SearchKnobs, WorkerQuery};

    fn schema() -> AttributeSchema {
        AttributeSchema {
            columns: vec![
                AttributeColumn {
                    name: "year".into(),
                    kind: AttributeKind::Integer,
                    dictionary: vec![],
                },
                AttributeColumn {
                    name: "color".into(),
                    kind: AttributeKind::Categorical,
                    dictionary: vec!["blue".into(), "ultraviolet \"x\"".into()],
                },
            ],
        }
    }

    #[test]
    fn the_estimate_covers_the_widest_real_hits() {
        // The widest hit there can be, with the widest attribute values, as JSON.
        let mut attributes = serde_json::Map::new();
        attributes.insert("year".into(), serde_json::json!(-9_007_199_254_740_991i64));
        attributes.insert("color".into(), serde_json::json!("ultraviolet \"x\""));
        let hit = Hit {
            id: u64::MAX,
            distance: -1.234_567_9e-30,
            attributes: Some(attributes),
        };
        let bytes = serde_json::to_string(&hit).unwrap().len() as u64 + 1;
        assert!(
            bytes <= HIT_JSON_BYTES + attribute_json_bytes(&schema()),
            "{bytes}"
        );
        let bare = Hit {
            attributes: None,
            ..hit
        };
        // With the comma that follows it in a list.
        assert!((serde_json::to_string(&bare).unwrap().len() as u64) < HIT_JSON_BYTES);
    }

    /// The plan of `requests` over `tasks`, as `plan_batch` would carry the queries.
    fn plan_of(requests: &[QueryRequest], tasks: Vec<PartitionTask>) -> BatchPlan {
        let queries = requests
            .iter()
            .map(|request| WorkerQuery {
                vector: request.vector.clone(),
                k: request.k,
                filter: None,
                include_attributes: request.include_attributes,
                knobs: SearchKnobs::resolve(&request.options).unwrap(),
                probe_radius: None,
            })
            .collect();
        BatchPlan {
            queries,
            plans: Vec::new(),
            tasks,
            task_rows: Vec::new(),
        }
    }

    fn check(
        limits: &RequestLimits,
        plan: &BatchPlan,
        output: AnswerOutput,
        single: bool,
    ) -> Result<()> {
        limits.check_answer(plan, &schema(), output, single)
    }
    #[test]
    fn answers_over_the_limit_are_refused_naming_the_field() {
        let limits = RequestLimits::for_timeout(10_000);
        let mut big = QueryRequest::new(vec![0.0; 4], 10_000);
        big.include_attributes = true;
        // One query of 10,000 hits with attributes fits a response.
        let one = plan_of(std::slice::from_ref(&big), vec![]);
        assert!(check(&limits, &one, AnswerOutput::Response, true).is_ok());
        // A hundred of them do not, nor in the store.
        let batch = plan_of(&vec![big; 100], vec![]);
        for output in [AnswerOutput::Response, AnswerOutput::Store] {
            match check(&limits, &batch, output, false) {
                Err(Error::InvalidInput { field, reason }) => {
                    assert_eq!(field, "queries");
                    assert!(reason.contains("over the limit"), "{reason}");
                }
                other => panic!("{other:?}"),
            }
        }
        // 10,000 queries of k = 10 go to the store, not in a response.
        let many = plan_of(&vec![QueryRequest::new(vec![0.0; 4], 10); 10_000], vec![]);
        assert!(check(&limits, &many, AnswerOutput::Response, false).is_err());
        assert!(check(&limits, &many, AnswerOutput::Store, false).is_ok());
        assert!(check(
            &RequestLimits::unlimited(),
            &many,
            AnswerOutput::Response,
            false
        )
        .is_ok());
    }

    #[test]
    fn work_over_the_limit_is_refused_and_exact_rows_weigh_more() {
        let limits = RequestLimits {
            max_rows_per_invocation: 1_000_000,
            ..RequestLimits::for_timeout(10_000)
        };
        assert!(limits.check_invocation_rows(1_000_000, 0, 1, false).is_ok());
        match limits.check_invocation_rows(1_000_001, 3, 8, false) {
            Err(Error::InvalidInput { field, reason }) => {
                assert_eq!(field, "queries");
                assert!(reason.contains("partition 3"), "{reason}");
                assert!(reason.contains("8 invocations"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        match limits.check_invocation_rows(2_000_000, 0, 1, true) {
            Err(Error::InvalidInput { field, .. }) => assert_eq!(field, "options"),
            other => panic!("{other:?}"),
        }
        let mut request = QueryRequest::new(vec![0.0; 4], 10);
        let approximate = plan_of(std::slice::from_ref(&request), vec![]);
        assert_eq!(weighted_rows(&approximate.queries[0], 50_000), 50_000);
        request.options.exact = true;
        let exact = plan_of(std::slice::from_ref(&request), vec![]);
        assert_eq!(
            weighted_rows(&exact.queries[0], 50_000),
            50_000 * EXACT_ROW_WEIGHT
        );
    }
}
