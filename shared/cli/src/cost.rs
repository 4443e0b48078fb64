//! The dollar cost of queries on AWS, from what a query measurably uses: Lambda invocations,
//! billed milliseconds at each function's memory size, S3 GET requests, API Gateway requests,
//! and the index's bytes in S3. Pure arithmetic over a dated price list; the measurements come
//! from the `stats` of real runs (`ExecutionStats`).
//!
//! Prices are AWS list prices for us-east-1 (Lambda on arm64, first pricing tier; S3 Standard;
//! API Gateway HTTP APIs, first 300M requests). Free tiers are ignored: the figures are what a
//! busy account pays at the margin.

use serde::{Deserialize, Serialize};

use squash_core::protocol::ExecutionStats;

/// Unit prices in US dollars.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PriceList {
    /// Where and when these prices hold.
    pub source: &'static str,
    /// Lambda compute, per GB-second (arm64).
    pub lambda_per_gb_second: f64,
    /// Lambda, per invocation.
    pub lambda_per_request: f64,
    /// S3 Standard, per GET request.
    pub s3_per_get: f64,
    /// S3 Standard storage, per GB-month.
    pub s3_per_gb_month: f64,
    /// API Gateway HTTP API, per request.
    pub api_gateway_per_request: f64,
}

/// AWS list prices, us-east-1, as of 2026: Lambda arm64 $0.0000133334 per GB-s and $0.20 per
/// 1M requests; S3 Standard $0.0004 per 1,000 GETs and $0.023 per GB-month; API Gateway HTTP
/// API $1.00 per 1M requests.
pub const AWS_US_EAST_1: PriceList = PriceList {
    source: "AWS list prices, us-east-1, 2026 (Lambda arm64, S3 Standard, API Gateway HTTP API)",
    lambda_per_gb_second: 0.000_013_333_4,
    lambda_per_request: 0.20 / 1e6,
    s3_per_get: 0.0004 / 1e3,
    s3_per_gb_month: 0.023,
    api_gateway_per_request: 1.00 / 1e6,
};

/// Memory sizes the functions are deployed with (the SAM template's defaults).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FunctionMemory {
    /// Coordinator memory, MB.
    pub coordinator_mb: u32,
    /// Worker memory, MB.
    pub worker_mb: u32,
}

/// `infra/template.yaml`'s `CoordinatorMemorySize` and `WorkerMemorySize` defaults.
pub const TEMPLATE_MEMORY: FunctionMemory = FunctionMemory {
    coordinator_mb: 1024,
    worker_mb: 2048,
};

/// What one request (a single query or a whole batch) used.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct RequestUsage {
    /// Queries the request answered (1 for a single query).
    pub num_queries: u64,
    /// Billed milliseconds of the coordinator (it runs for the whole request).
    pub coordinator_billed_ms: u64,
    /// Worker invocations, retries included.
    pub worker_invocations: u64,
    /// Billed milliseconds summed over the worker invocations.
    pub worker_billed_ms: u64,
    /// S3 GET requests of the coordinator and the workers.
    pub s3_gets: u64,
    /// Whether the request came through API Gateway (not a direct invocation).
    pub through_api_gateway: bool,
}

impl RequestUsage {
    /// Returns the usage recorded in a response's execution stats; the coordinator is billed
    /// for its whole run, rounded up to the millisecond as Lambda bills.
    pub fn from_stats(stats: &ExecutionStats, num_queries: u64, through_api_gateway: bool) -> Self {
        RequestUsage {
            num_queries,
            coordinator_billed_ms: stats.total_ms.max(0.0).ceil() as u64,
            worker_invocations: u64::from(stats.invocations),
            worker_billed_ms: stats.worker_billed_ms,
            // `store_get_requests` already includes the coordinator's own GETs.
            s3_gets: u64::from(stats.store_get_requests),
            through_api_gateway,
        }
    }

    /// Adds another request's usage.
    pub fn add(&mut self, other: &RequestUsage) {
        self.num_queries += other.num_queries;
        self.coordinator_billed_ms += other.coordinator_billed_ms;
        self.worker_invocations += other.worker_invocations;
        self.worker_billed_ms += other.worker_billed_ms;
        self.s3_gets += other.s3_gets;
        self.through_api_gateway |= other.through_api_gateway;
    }
}

/// Dollars per one million queries, by item.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct CostPerMillion {
    /// Lambda GB-seconds of the coordinator and workers.
    pub lambda_compute: f64,
    /// Lambda requests (coordinator + workers).
    pub lambda_requests: f64,
    /// S3 GET requests.
    pub s3_gets: f64,
    /// API Gateway requests.
    pub api_gateway: f64,
    /// Sum of the above.
    pub total: f64,
}

/// Returns the dollars per one million queries of `usage` (summed over any number of
/// requests; each request is one coordinator invocation).
pub fn cost_per_million_queries(
    usage: &RequestUsage,
    num_requests: u64,
    memory: FunctionMemory,
    prices: &PriceList,
) -> CostPerMillion {
    if usage.num_queries == 0 {
        return CostPerMillion::default();
    }
    let per_query = 1e6 / usage.num_queries as f64;
    let gb_seconds = usage.coordinator_billed_ms as f64 / 1e3 * f64::from(memory.coordinator_mb)
        / 1024.0
        + usage.worker_billed_ms as f64 / 1e3 * f64::from(memory.worker_mb) / 1024.0;
    let lambda_compute = gb_seconds * prices.lambda_per_gb_second * per_query;
    let lambda_requests =
        (num_requests + usage.worker_invocations) as f64 * prices.lambda_per_request * per_query;
    let s3_gets = usage.s3_gets as f64 * prices.s3_per_get * per_query;
    let api_gateway = if usage.through_api_gateway {
        num_requests as f64 * prices.api_gateway_per_request * per_query
    } else {
        0.0
    };
    CostPerMillion {
        lambda_compute,
        lambda_requests,
        s3_gets,
        api_gateway,
        total: lambda_compute + lambda_requests + s3_gets + api_gateway,
    }
}

/// Returns the monthly S3 storage cost of an index of `index_bytes`.
pub fn storage_per_month(index_bytes: u64, prices: &PriceList) -> f64 {
    index_bytes as f64 / 1e9 * prices.s3_per_gb_month
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
    }

    #[test]
    fn one_second_of_one_gb_per_query_costs_the_gb_second_price_a_million_times() {
        let usage = RequestUsage {
            num_queries: 1,
            coordinator_billed_ms: 0,
            worker_invocations: 0,
            worker_billed_ms: 500,
            s3_gets: 0,
            through_api_gateway: false,
        };
        let memory = FunctionMemory {
            coordinator_mb: 1024,
            worker_mb: 2048,
        };
        let cost = cost_per_million_queries(&usage, 1, memory, &AWS_US_EAST_1);
        // 0.5 s x 2 GB = 1 GB-s per query.
        assert!(close(cost.lambda_compute, 1e6 * 0.000_013_333_4));
        // One coordinator request per query.
        assert!(close(cost.lambda_requests, 0.20));
        assert_eq!(cost.api_gateway, 0.0);
        assert!(close(
            cost.total,
            cost.lambda_compute + cost.lambda_requests
        ));
    }

    #[test]
    fn a_batch_spreads_its_requests_over_its_queries() {
        let single = RequestUsage {
            num_queries: 1,
            coordinator_billed_ms: 10,
            worker_invocations: 4,
            worker_billed_ms: 20,
            s3_gets: 2,
            through_api_gateway: true,
        };
        let mut batch = single;
        batch.num_queries = 100;
        let one = cost_per_million_queries(&single, 1, TEMPLATE_MEMORY, &AWS_US_EAST_1);
        let hundred = cost_per_million_queries(&batch, 1, TEMPLATE_MEMORY, &AWS_US_EAST_1);
        assert!(close(one.total, 100.0 * hundred.total));
        // 5 Lambda requests, 2 GETs and 1 API request per query.
        assert!(close(one.lambda_requests, 5.0 * 0.20));
        assert!(close(one.s3_gets, 2.0 * 0.4));
        assert!(close(one.api_gateway, 1.0));
    }

    #[test]
    fn usage_from_stats_counts_the_coordinators_gets_once() {
        let stats = ExecutionStats {
            coordinator_store_get_requests: 2,
            store_get_requests: 5,
            invocations: 4,
            worker_billed_ms: 30,
            total_ms: 11.2,
            ..ExecutionStats::default()
        };
        let usage = RequestUsage::from_stats(&stats, 1, false);
        assert_eq!(usage.s3_gets, 5);
        assert_eq!(usage.coordinator_billed_ms, 12);
        assert_eq!((usage.worker_invocations, usage.worker_billed_ms), (4, 30));
    }

    #[test]
    fn usage_adds_up_and_storage_is_priced_per_gb_month() {
        let mut total = RequestUsage::default();
        let one = RequestUsage {
            num_queries: 3,
            coordinator_billed_ms: 7,
            worker_invocations: 2,
            worker_billed_ms: 9,
            s3_gets: 1,
            through_api_gateway: false,
        };
        total.add(&one);
        total.add(&one);
        assert_eq!(
            (total.num_queries, total.worker_billed_ms, total.s3_gets),
            (6, 18, 2)
        );
        assert!(close(
            storage_per_month(2_000_000_000, &AWS_US_EAST_1),
            0.046
        ));
        assert_eq!(
            cost_per_million_queries(&RequestUsage::default(), 0, TEMPLATE_MEMORY, &AWS_US_EAST_1),
            CostPerMillion::default()
        );
    }
}
