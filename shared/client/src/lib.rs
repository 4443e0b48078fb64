//! A Rust client of the HTTP API: the same routes and JSON as `openapi.yaml`, typed with the
//! request and response types of [`squash_core::protocol`] and [`squash_core::writes`], errors
//! mapped back onto [`Error`].
//!
//! It talks to an API Gateway URL (signing requests with SigV4 for the `execute-api` service
//! when the API uses IAM authorization, which is the deployed default) or to a function URL or
//! the local emulator without authentication. A 503 (workers or storage briefly unavailable) is
//! retried after the server's `retry_after_s`, a bounded number of times; writes too, since an
//! upsert or delete applied twice leaves the same rows.
#![forbid(unsafe_code)]

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::rt::TokioExecutor;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use squash_core::error::{Error, Result};
use squash_core::index::validate_index_name;
use squash_core::protocol::IndexSummary;
use squash_core::protocol::{BatchRequest, BatchResponse, QueryRequest, QueryResponse};
use squash_core::writes::{
    DeleteRequest, FetchRequest, FetchResponse, UpsertRequest, WriteResponse,
};

/// Default time allowed for one HTTP exchange.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Default number of retries of a 503 answer or a failed connection.
pub const DEFAULT_MAX_RETRIES: u32 = 2;

/// The longest wait between retries, whatever the server suggests.
const MAX_RETRY_WAIT: Duration = Duration::from_secs(10);

type HttpsConnector = hyper_rustls::HttpsConnector<HttpConnector>;

/// How requests are authenticated.
#[derive(Clone)]
#[cfg_attr(not(feature = "aws"), allow(dead_code))]
enum Auth {
    /// No authentication (function URLs with auth NONE, the local emulator, an open API).
    None,
    /// SigV4 for `execute-api` with credentials from the default AWS chain.
    Iam {
        credentials: aws_credential_types::provider::SharedCredentialsProvider,
        region: String,
    },
}

/// A client of one squash deployment, cheap to clone (connections are pooled and shared).
#[derive(Clone)]
pub struct Client {
    base_url: String,
    http: HyperClient<HttpsConnector, Full<Bytes>>,
    auth: Auth,
    request_timeout: Duration,
    max_retries: u32,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Client")
            .field("base_url", &self.base_url)
            .field("iam_auth", &matches!(self.auth, Auth::Iam { .. }))
            .field("request_timeout", &self.request_timeout)
            .field("max_retries", &self.max_retries)
            .finish()
    }
}

impl Client {
    /// Returns a client of the API at `base_url` (for example the stack's `ApiUrl` output, or
    /// `http://127.0.0.1:9000/lambda-url/coordinator` locally), without authentication.
    pub fn new(base_url: &str) -> Result<Self> {
        let base_url = base_url.trim_end_matches('/').to_string();
        if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
            return Err(Error::invalid(
                "base_url",
                format!("{base_url:?} must start with http:// or https://"),
            ));
        }
        if base_url.parse::<http::Uri>().is_err() {
            return Err(Error::invalid(
                "base_url",
                format!("{base_url:?} is not a URL"),
            ));
        }
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(rustls::crypto::ring::default_provider())
            .map_err(|error| Error::Remote {
                status: 0,
                message: format!("no TLS root certificates: {error}"),
                retryable: false,
            })?
            .https_or_http()
            .enable_http1()
            .build();
        Ok(Client {
            base_url,
            http: HyperClient::builder(TokioExecutor::new()).build(connector),
            auth: Auth::None,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            max_retries: DEFAULT_MAX_RETRIES,
        })
    }

    /// Returns a client that signs every request with SigV4 (service `execute-api`), for an API
    /// deployed with IAM authorization. Credentials and, unless given, the region come from the
    /// default AWS chain (environment, profile, container or instance role). Needs the `aws`
    /// feature (on by default).
    #[cfg(feature = "aws")]
    pub async fn with_iam_auth(base_url: &str, region_opt: Option<&str>) -> Result<Self> {
        let mut client = Client::new(base_url)?;
        let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .load()
            .await;
        let region = match (region_opt, config.region()) {
            (Some(region), _) => region.to_string(),
            (None, Some(region)) => region.to_string(),
            (None, None) => {
                return Err(Error::invalid(
                    "region",
                    "no AWS region given and none configured (set AWS_REGION)",
                ))
            }
        };
        let credentials = config.credentials_provider().ok_or_else(|| {
            Error::invalid("credentials", "no AWS credentials provider is configured")
        })?;
        client.auth = Auth::Iam {
            credentials,
            region,
        };
        Ok(client)
    }

    /// Sets the time allowed for one HTTP exchange (default [`DEFAULT_REQUEST_TIMEOUT`]).
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Sets how many times a 503 or a failed connection is retried (default
    /// [`DEFAULT_MAX_RETRIES`]).
    pub fn with_max_retries(mut self, max_retries: u32) -> Self {
        self.max_retries = max_retries;
        self
    }

    /// Checks that the API answers `GET /health`.
    pub async fn health(&self) -> Result<()> {
        self.call::<Value>("GET", "/health", None).await.map(|_| ())
    }

    /// Returns the names of the indexes under the deployment's root.
    pub async fn list(&self) -> Result<Vec<String>> {
        #[derive(serde::Deserialize)]
        struct Indexes {
            indexes: Vec<String>,
        }
        let answer: Indexes = self.call("GET", "/v1/indexes", None).await?;
        Ok(answer.indexes)
    }

    /// Describes one index: version served, metric, dimension, sizes, attributes.
    pub async fn describe(&self, index: &str) -> Result<IndexSummary> {
        validate_index_name(index)?;
        self.call("GET", &format!("/v1/indexes/{index}"), None)
            .await
    }

    /// Answers one query.
    pub async fn query(&self, index: &str, request: &QueryRequest) -> Result<QueryResponse> {
        validate_index_name(index)?;
        let body = to_body(request)?;
        self.call("POST", &format!("/v1/indexes/{index}/query"), Some(body))
            .await
    }

    /// Answers a batch of queries in one request.
    pub async fn query_batch(&self, index: &str, batch: &BatchRequest) -> Result<BatchResponse> {
        validate_index_name(index)?;
        let body = to_body(batch)?;
        self.call(
            "POST",
            &format!("/v1/indexes/{index}/query-batch"),
            Some(body),
        )
        .await
    }

    /// Inserts or replaces rows (at most [`squash_core::writes::MAX_WRITE_ROWS`] per call) and
    /// answers once the write is committed, with its token: a query or fetch that carries it
    /// as `min_token` sees the write.
    pub async fn upsert(&self, index: &str, request: &UpsertRequest) -> Result<WriteResponse> {
        validate_index_name(index)?;
        let body = to_body(request)?;
        self.call("POST", &format!("/v1/indexes/{index}/upsert"), Some(body))
            .await
    }

    /// Deletes rows by id, by filter, or both, and answers once the write is committed, with
    /// its token.
    pub async fn delete(&self, index: &str, request: &DeleteRequest) -> Result<WriteResponse> {
        validate_index_name(index)?;
        let body = to_body(request)?;
        self.call("POST", &format!("/v1/indexes/{index}/delete"), Some(body))
            .await
    }

    /// Returns the live rows with the ids asked for, and the ids of none.
    pub async fn fetch(&self, index: &str, request: &FetchRequest) -> Result<FetchResponse> {
        validate_index_name(index)?;
        let body = to_body(request)?;
        self.call("POST", &format!("/v1/indexes/{index}/fetch"), Some(body))
            .await
    }

    /// Sends one request, retrying 503s and connection failures, and parses the answer.
    async fn call<T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body_opt: Option<Vec<u8>>,
    ) -> Result<T> {
        let mut attempt = 0;
        loop {
            let outcome = self.exchange(method, path, body_opt.as_deref()).await;
            let error = match outcome {
                Ok((200, body)) => {
                    return serde_json::from_slice(&body).map_err(|error| Error::Remote {
                        status: 200,
                        message: format!("{method} {path}: unexpected answer: {error}"),
                        retryable: false,
                    })
                }
                Ok((status, body)) => error_of_answer(status, &body),
                Err(error) => error,
            };
            if !error.is_retryable() || attempt >= self.max_retries {
                return Err(error);
            }
            attempt += 1;
            tokio::time::sleep(retry_wait(attempt)).await;
        }
    }

    /// Sends one request and returns the status and body.
    async fn exchange(
        &self,
        method: &str,
        path: &str,
        body_opt: Option<&[u8]>,
    ) -> Result<(u16, Bytes)> {
        let url = format!("{}{path}", self.base_url);
        let body = Bytes::copy_from_slice(body_opt.unwrap_or_default());
        let mut request = http::Request::builder()
            .method(method)
            .uri(&url)
            .header("accept", "application/json");
        if body_opt.is_some() {
            request = request.header("content-type", "application/json");
        }
        let mut request = request
            .body(Full::new(body.clone()))
            .map_err(|error| Error::invalid("url", format!("{url}: {error}")))?;
        if let Auth::Iam {
            credentials,
            region,
        } = &self.auth
        {
            sign(&mut request, &body, credentials, region).await?;
        }
        let unreachable = |what: String| Error::Remote {
            status: 0,
            message: format!("{method} {url}: {what}"),
            retryable: true,
        };
        let exchange = async {
            let response = self
                .http
                .request(request)
                .await
                .map_err(|error| unreachable(error.to_string()))?;
            let status = response.status().as_u16();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|error| unreachable(format!("reading the answer: {error}")))?
                .to_bytes();
            Ok((status, body))
        };
        tokio::time::timeout(self.request_timeout, exchange)
            .await
            .map_err(|_| {
                unreachable(format!(
                    "no answer within {} ms",
                    self.request_timeout.as_millis()
                ))
            })?
    }
}

/// Serializes a request body.
fn to_body(request: &impl Serialize) -> Result<Vec<u8>> {
    serde_json::to_vec(request).map_err(|error| Error::invalid("request", error.to_string()))
}

/// Returns the wait before retry number `attempt` (1-based): the server's suggested second,
/// doubled per attempt, capped.
fn retry_wait(attempt: u32) -> Duration {
    let suggested = Duration::from_secs(squash_core::protocol::RETRY_AFTER_S);
    suggested
        .saturating_mul(1 << attempt.saturating_sub(1).min(8))
        .min(MAX_RETRY_WAIT)
}

/// Signs `request` with SigV4 for `execute-api`.
async fn sign(
    request: &mut http::Request<Full<Bytes>>,
    body: &[u8],
    credentials: &aws_credential_types::provider::SharedCredentialsProvider,
    region: &str,
) -> Result<()> {
    use aws_credential_types::provider::ProvideCredentials;
    use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings};
    let refused = |what: String| Error::invalid("credentials", what);
    let credentials = credentials
        .provide_credentials()
        .await
        .map_err(|error| refused(format!("could not load AWS credentials: {error}")))?;
    let identity = credentials.into();
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("execute-api")
        .time(SystemTime::now())
        .settings(SigningSettings::default())
        .build()
        .map_err(|error| refused(error.to_string()))?
        .into();
    let headers: Vec<(&str, &str)> = request
        .headers()
        .iter()
        .filter_map(|(name, value)| Some((name.as_str(), value.to_str().ok()?)))
        .collect();
    let uri = request.uri().to_string();
    let signable = SignableRequest::new(
        request.method().as_str(),
        &uri,
        headers.into_iter(),
        SignableBody::Bytes(body),
    )
    .map_err(|error| refused(error.to_string()))?;
    let (instructions, _signature) = aws_sigv4::http_request::sign(signable, &params)
        .map_err(|error| refused(error.to_string()))?
        .into_parts();
    instructions.apply_to_request_http1x(request);
    Ok(())
}

/// Maps an error answer (`{"error": {"code", "message", "field"?, "missing_partitions"?}}`)
/// back onto the error the server started from.
fn error_of_answer(status: u16, body: &[u8]) -> Error {
    let parsed: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let error = &parsed["error"];
    let code = error["code"].as_str().unwrap_or("");
    let message = error["message"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| String::from_utf8_lossy(body).chars().take(500).collect());
    match (status, code) {
        (400 | 413, _) => {
            let field = error["field"].as_str().unwrap_or("request").to_string();
            // The message repeats the field first; keep only the reason.
            let reason = message
                .strip_prefix(&format!("{field}: "))
                .unwrap_or(&message)
                .to_string();
            Error::InvalidInput { field, reason }
        }
        (404, "not_found") => Error::NotFound { what: message },
        (409, "conflict") => Error::Conflict { message },
        (503, "incomplete") => Error::Incomplete {
            message,
            missing_partitions: error["missing_partitions"]
                .as_array()
                .map(|partitions| {
                    partitions
                        .iter()
                        .filter_map(|p| p.as_u64().and_then(|p| u32::try_from(p).ok()))
                        .collect()
                })
                .unwrap_or_default(),
        },
        (503, "unavailable") => Error::Storage {
            message,
            retryable: true,
        },
        (status, _) => Error::Remote {
            status,
            message: if code.is_empty() {
                message
            } else {
                format!("{code}: {message}")
            },
            // Throttling and gateway hiccups pass; a 500 of the service itself does not.
            retryable: matches!(status, 429 | 502 | 503 | 504),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn answer(status: u16, body: Value) -> Error {
        error_of_answer(status, body.to_string().as_bytes())
    }

    #[test]
    fn bad_requests_come_back_as_invalid_input_naming_the_field() {
        let error = answer(
            400,
            json!({"error": {"code": "invalid_request", "field": "queries[1].k",
                             "message": "queries[1].k: must be between 1 and 1000"}}),
        );
        match error {
            Error::InvalidInput { field, reason } => {
                assert_eq!(field, "queries[1].k");
                assert_eq!(reason, "must be between 1 and 1000");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn server_states_map_to_the_variants_callers_act_on() {
        assert!(matches!(
            answer(404, json!({"error": {"code": "not_found", "message": "index x does not exist"}})),
            Error::NotFound { what } if what.contains("index x")
        ));
        match answer(
            503,
            json!({"error": {"code": "incomplete", "message": "m", "missing_partitions": [3, 5]}}),
        ) {
            Error::Incomplete {
                missing_partitions, ..
            } => assert_eq!(missing_partitions, vec![3, 5]),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            answer(409, json!({"error": {"code": "conflict", "message": "raced"}})),
            Error::Conflict { message } if message == "raced"
        ));
        assert!(matches!(
            answer(
                503,
                json!({"error": {"code": "unavailable", "message": "m"}})
            ),
            Error::Storage {
                retryable: true,
                ..
            }
        ));
        assert!(matches!(
            answer(
                500,
                json!({"error": {"code": "internal", "message": "corrupt"}})
            ),
            Error::Remote {
                status: 500,
                retryable: false,
                ..
            }
        ));
        // API Gateway's own answers are not in the API's error shape.
        assert!(matches!(
            error_of_answer(403, br#"{"message":"Forbidden"}"#),
            Error::Remote {
                status: 403,
                retryable: false,
                ..
            }
        ));
        assert!(matches!(
            error_of_answer(429, b"Too Many Requests"),
            Error::Remote {
                status: 429,
                retryable: true,
                ..
            }
        ));
    }

    #[test]
    fn base_urls_are_checked_and_normalised() {
        assert!(matches!(
            Client::new("ftp://x"),
            Err(Error::InvalidInput { field, .. }) if field == "base_url"
        ));
        let client = Client::new("http://127.0.0.1:9000/lambda-url/coordinator/").expect("valid");
        assert_eq!(
            client.base_url,
            "http://127.0.0.1:9000/lambda-url/coordinator"
        );
    }

    #[test]
    fn retry_waits_grow_and_are_capped() {
        assert_eq!(retry_wait(1), Duration::from_secs(1));
        assert_eq!(retry_wait(2), Duration::from_secs(2));
        assert_eq!(retry_wait(30), MAX_RETRY_WAIT);
    }

    #[tokio::test]
    async fn an_unreachable_server_is_a_retryable_remote_error() {
        // Port 9 (discard) is closed on loopback.
        let client = Client::new("http://127.0.0.1:9")
            .expect("valid")
            .with_max_retries(0);
        match client.health().await {
            Err(Error::Remote {
                status: 0,
                retryable: true,
                message,
            }) => assert!(message.contains("127.0.0.1:9"), "{message}"),
            other => panic!("{other:?}"),
        }
    }
}
