//! Request and response types carried between the coordinator stage and the workers.
//!
//! The same types travel as JSON in Lambda payloads and are passed in-process by the embedded
//! mode, so the embedded path exercises the serverless contract. Requests carry the filter as
//! JSON (small), never per-vector bitmaps: a worker re-evaluates the filter on its partition.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Version of this protocol; a worker rejects a request with another version.
pub const PROTOCOL_VERSION: u32 = 1;

/// The largest `k` a query may ask for.
pub const MAX_K: usize = 10_000;

/// Tuning knobs of one query. Every field is optional; [`SearchKnobs::resolve`] fills defaults.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchOptions {
    /// Return the exact top-k (all partitions with matches, VA-file style scan).
    #[serde(default)]
    pub exact: bool,
    /// Probe every partition whose centroid distance is within this factor of the nearest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub centroid_factor: Option<f32>,
    /// Probe at least this many partitions (those with matches, nearest first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_partitions: Option<usize>,
    /// Probe at most this many partitions (never fewer than needed to cover k matches).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_partitions: Option<usize>,
    /// Candidates re-ranked exactly per partition = `k * rerank_factor`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rerank_factor: Option<usize>,
    /// Share of filter-passing candidates kept by the Hamming (sign-code) pre-filter
    /// (0 < x <= 1); it never keeps fewer than 50 candidates per re-rank slot, and 1 turns it off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hamming_keep: Option<f32>,
}

/// Resolved knobs, as carried to workers.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SearchKnobs {
    /// See [`SearchOptions::exact`].
    pub exact: bool,
    /// See [`SearchOptions::centroid_factor`].
    pub centroid_factor: f32,
    /// See [`SearchOptions::min_partitions`].
    pub min_partitions: usize,
    /// See [`SearchOptions::max_partitions`]; `usize::MAX` when unbounded.
    pub max_partitions: usize,
    /// See [`SearchOptions::rerank_factor`].
    pub rerank_factor: usize,
    /// See [`SearchOptions::hamming_keep`].
    pub hamming_keep: f32,
}

/// Default probe factor on centroid distance. Filters move the true neighbours away from the
/// nearest centroids (GloVe `freq_top10k`: recall@10 0.86 at 1.3, 0.95 at 1.5), and partitions
/// are searched in parallel, so probing wider costs work rather than latency.
pub const DEFAULT_CENTROID_FACTOR: f32 = 1.5;
/// Default minimum partitions probed.
pub const DEFAULT_MIN_PARTITIONS: usize = 2;
/// Default re-rank depth multiplier.
pub const DEFAULT_RERANK_FACTOR: usize = 10;
/// Default share kept by the Hamming pre-filter.
pub const DEFAULT_HAMMING_KEEP: f32 = 0.3;

impl SearchKnobs {
    /// Returns the knobs with defaults filled in, or an error naming the bad option.
    pub fn resolve(options: &SearchOptions) -> Result<SearchKnobs> {
        let centroid_factor = options.centroid_factor.unwrap_or(DEFAULT_CENTROID_FACTOR);
        if !(centroid_factor.is_finite() && centroid_factor >= 1.0) {
            return Err(Error::invalid(
                "options.centroid_factor",
                "must be a finite number >= 1",
            ));
        }
        let rerank_factor = options.rerank_factor.unwrap_or(DEFAULT_RERANK_FACTOR);
        if rerank_factor == 0 || rerank_factor > 1000 {
            return Err(Error::invalid(
                "options.rerank_factor",
                "must be between 1 and 1000",
            ));
        }
        let hamming_keep = options.hamming_keep.unwrap_or(DEFAULT_HAMMING_KEEP);
        if !(hamming_keep > 0.0 && hamming_keep <= 1.0) {
            return Err(Error::invalid("options.hamming_keep", "must be in (0, 1]"));
        }
        let max_partitions = options.max_partitions.unwrap_or(usize::MAX);
        if max_partitions == 0 {
            return Err(Error::invalid(
                "options.max_partitions",
                "must be at least 1",
            ));
        }
        Ok(SearchKnobs {
            exact: options.exact,
            centroid_factor,
            min_partitions: options.min_partitions.unwrap_or(DEFAULT_MIN_PARTITIONS),
            max_partitions,
            rerank_factor,
            hamming_keep,
        })
    }
}

fn default_k() -> usize {
    10
}

/// One query as a client sends it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryRequest {
    /// The query vector (same dimension as the index).
    pub vector: Vec<f32>,
    /// How many hits to return, 1..=10,000.
    #[serde(default = "default_k")]
    pub k: usize,
    /// Mongo-style filter on attributes; absent or null = no filter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<serde_json::Value>,
    /// Return each hit's attributes.
    #[serde(default)]
    pub include_attributes: bool,
    /// Tuning knobs.
    #[serde(default)]
    pub options: SearchOptions,
}

impl QueryRequest {
    /// Returns a request for `vector` with `k` hits and no filter.
    pub fn new(vector: Vec<f32>, k: usize) -> Self {
        QueryRequest {
            vector,
            k,
            filter: None,
            include_attributes: false,
            options: SearchOptions::default(),
        }
    }

    /// Checks the parts that need no index: `k` range and finite components.
    pub fn validate_shape(&self, dim: usize) -> Result<()> {
        if self.k == 0 || self.k > MAX_K {
            return Err(Error::invalid(
                "k",
                format!("must be between 1 and {MAX_K}, got {}", self.k),
            ));
        }
        if self.vector.len() != dim {
            return Err(Error::invalid(
                "vector",
                format!(
                    "has {} components, the index has dimension {dim}",
                    self.vector.len()
                ),
            ));
        }
        if let Some(position) = self.vector.iter().position(|v| !v.is_finite()) {
            return Err(Error::invalid(
                format!("vector[{position}]"),
                "must be a finite number (NaN and infinity are not allowed)",
            ));
        }
        Ok(())
    }
}

/// One hit of a query.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hit {
    /// The vector's external id.
    pub id: u64,
    /// Distance under the index metric (smaller is closer).
    pub distance: f32,
    /// The vector's attributes, when asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attributes: Option<serde_json::Map<String, serde_json::Value>>,
}

/// Candidate counts after each pruning stage, summed over the partitions searched.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScanStats {
    /// Vectors in the partitions searched.
    pub partition_vectors: u64,
    /// Vectors passing the exact filter.
    pub passed_filter: u64,
    /// Candidates kept by the Hamming pre-filter.
    pub after_hamming: u64,
    /// Candidates whose OSQ lower bound was computed.
    pub lower_bounds: u64,
    /// Candidates re-ranked with full-precision vectors.
    pub reranked: u64,
}

impl ScanStats {
    /// Adds `other` into `self`.
    pub fn add(&mut self, other: &ScanStats) {
        self.partition_vectors += other.partition_vectors;
        self.passed_filter += other.passed_filter;
        self.after_hamming += other.after_hamming;
        self.lower_bounds += other.lower_bounds;
        self.reranked += other.reranked;
    }
}

/// One query as a worker receives it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerQuery {
    /// The query vector as the client sent it (the worker normalises for cosine).
    pub vector: Vec<f32>,
    /// Hits wanted.
    pub k: usize,
    /// The filter JSON (re-parsed against the index schema by the worker).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<serde_json::Value>,
    /// Return attributes with hits.
    pub include_attributes: bool,
    /// Resolved knobs.
    pub knobs: SearchKnobs,
}

/// The queries a worker must run on one partition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartitionTask {
    /// Partition id.
    pub partition: u32,
    /// Positions in [`WorkerRequest::queries`].
    pub queries: Vec<u32>,
}

/// A worker invocation: a batch of queries and the partitions to run them on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerRequest {
    /// Must equal [`PROTOCOL_VERSION`].
    pub protocol_version: u32,
    /// The index version the coordinator planned against; a worker never mixes versions.
    pub index_version: String,
    /// The queries.
    pub queries: Vec<WorkerQuery>,
    /// Partition tasks.
    pub tasks: Vec<PartitionTask>,
}

/// The top-k of one query on one partition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueryHits {
    /// Position in [`WorkerRequest::queries`].
    pub query: u32,
    /// Hits, best first.
    pub hits: Vec<Hit>,
    /// Pruning counts.
    pub stats: ScanStats,
}

/// What one partition task produced: hits per query, or an error (reported in-band so the
/// caller can retry only the failed partitions).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum PartitionOutcome {
    /// The partition was searched.
    Ok {
        /// Partition id.
        partition: u32,
        /// Per-query results.
        results: Vec<QueryHits>,
    },
    /// The partition could not be searched.
    Failed {
        /// Partition id.
        partition: u32,
        /// Why.
        message: String,
        /// Whether a retry may succeed.
        retryable: bool,
    },
}

/// A worker's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerResponse {
    /// Echo of [`PROTOCOL_VERSION`].
    pub protocol_version: u32,
    /// One outcome per task.
    pub outcomes: Vec<PartitionOutcome>,
}

/// Statistics of one query, summed over the partitions searched.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct QueryStats {
    /// Partitions searched.
    pub partitions_probed: usize,
    /// Partitions in the index.
    pub partitions_total: usize,
    /// Upper estimate of the vectors passing the filter, from the quantized attributes.
    pub estimated_matches: u64,
    /// Pruning counts.
    pub scan: ScanStats,
}

/// The answer to one query.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueryResponse {
    /// Hits, best first.
    pub hits: Vec<Hit>,
    /// Statistics.
    pub stats: QueryStats,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_responses_round_trip_through_json() {
        let knobs = SearchKnobs::resolve(&SearchOptions::default()).expect("defaults");
        let request = WorkerRequest {
            protocol_version: PROTOCOL_VERSION,
            index_version: "v1".into(),
            queries: vec![WorkerQuery {
                vector: vec![0.5, -1.25],
                k: 3,
                filter: Some(serde_json::json!({"year": {"$gte": 2020}})),
                include_attributes: true,
                knobs,
            }],
            tasks: vec![PartitionTask {
                partition: 4,
                queries: vec![0],
            }],
        };
        let text = serde_json::to_string(&request).expect("encode");
        assert_eq!(
            serde_json::from_str::<WorkerRequest>(&text).expect("decode"),
            request
        );
        let response = WorkerResponse {
            protocol_version: PROTOCOL_VERSION,
            outcomes: vec![
                PartitionOutcome::Ok {
                    partition: 4,
                    results: vec![QueryHits {
                        query: 0,
                        hits: vec![Hit {
                            id: 9,
                            distance: 0.5,
                            attributes: None,
                        }],
                        stats: ScanStats::default(),
                    }],
                },
                PartitionOutcome::Failed {
                    partition: 5,
                    message: "gone".into(),
                    retryable: true,
                },
            ],
        };
        let text = serde_json::to_string(&response).expect("encode");
        assert!(text.contains(r#""status":"failed""#));
        assert_eq!(
            serde_json::from_str::<WorkerResponse>(&text).expect("decode"),
            response
        );
    }

    #[test]
    fn client_requests_reject_unknown_fields_and_bad_knobs() {
        let unknown = serde_json::from_str::<QueryRequest>(r#"{"vector": [1.0], "kk": 3}"#);
        assert!(unknown.is_err());
        let request: QueryRequest =
            serde_json::from_str(r#"{"vector": [1.0, 2.0]}"#).expect("minimal request");
        assert_eq!(request.k, 10);
        assert!(request.validate_shape(2).is_ok());
        let bad = SearchOptions {
            hamming_keep: Some(0.0),
            ..SearchOptions::default()
        };
        assert!(
            matches!(SearchKnobs::resolve(&bad), Err(Error::InvalidInput { field, .. }) if field == "options.hamming_keep")
        );
    }
}
