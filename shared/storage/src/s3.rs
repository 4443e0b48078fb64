//! A store over an S3 bucket and key prefix (AWS S3 or any S3-compatible server).
//!
//! Owns the translation between the `BlobStore` port and S3 calls: key prefixing, ranged GETs,
//! paginated listing, multipart upload for large objects, and the mapping of SDK errors onto
//! `Error` (`NotFound`, retryable or fatal `Storage`). Retries live in the SDK client (standard
//! mode: bounded attempts, jittered exponential backoff, throttling/5xx/timeouts/IO classified as
//! transient), configured once in [`client_from_env`]. It must not decode or compute anything.
//!
//! Reads (GET, HEAD, LIST) go through a second client with [`S3ReadTimeouts`]: a connection
//! that does not open, or a response whose first byte does not come, is cut off and retried
//! by the SDK instead of waiting for the query's deadline. A response body is read piece by
//! piece under the same read timeout; a body that stalls or ends early (the SDK retries only
//! up to the response headers) is fetched again, up to [`BODY_ATTEMPTS`] times. Writes keep
//! the SDK's defaults (a connect timeout only): an upload's first response byte comes only
//! after all its bytes went up, which may take long on a slow link.

use std::error::Error as StdError;
use std::ops::Range;
use std::time::Duration;

use async_trait::async_trait;
use aws_config::BehaviorVersion;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use aws_sdk_s3::Client;
use aws_smithy_http_client::tls;

use super::{conflict, validate_key, BlobStore, ObjectTag, PutCondition};
use squash_core::error::{Error, Result};

/// Objects above this size go up as a multipart upload. A single PUT is capped at 5 GiB by
/// S3 and gives no per-part retry, so anything bigger than a few parts is split.
pub const MULTIPART_THRESHOLD_BYTES: usize = 16 * 1024 * 1024;

/// Size of each multipart part except the last. S3 requires at least 5 MiB per part and at
/// most 10,000 parts, so 8 MiB parts cover objects up to about 78 GiB.
pub const MULTIPART_PART_BYTES: usize = 8 * 1024 * 1024;

/// Total attempts per request (first try included) in the SDK's standard retry mode.
pub const MAX_ATTEMPTS: u32 = 5;

/// Times a read whose response body stalls or ends early is sent again (first try included).
pub const BODY_ATTEMPTS: u32 = 3;

/// First backoff of a retried read (jittered, doubling per attempt): a query waits on its
/// reads, so four retries stay within about 3 s in the worst case (0.2 + 0.4 + 0.8 + 1.6 s)
/// instead of the SDK's 15 s with its 1 s default, while still backing off from throttling.
const READ_INITIAL_BACKOFF: Duration = Duration::from_millis(200);

/// Timeouts of the reads an [`S3Store`] makes, from `SQUASH_S3_CONNECT_TIMEOUT_MS` and
/// `SQUASH_S3_READ_TIMEOUT_MS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct S3ReadTimeouts {
    /// Longest wait for a connection to open.
    pub connect: Duration,
    /// Longest wait for the first byte of a response after sending the request, and for each
    /// further piece of a response body.
    pub read: Duration,
}

impl Default for S3ReadTimeouts {
    /// Returns 1 s to connect and 2 s per read: S3's median latency is tens of milliseconds
    /// and its guidance for latency-sensitive reads is to retry a request that has not
    /// answered after 2 s; a query's budget (10 s by default) leaves room for a cut-off
    /// attempt plus a retry.
    fn default() -> Self {
        S3ReadTimeouts {
            connect: Duration::from_millis(1_000),
            read: Duration::from_millis(2_000),
        }
    }
}

impl S3ReadTimeouts {
    /// Returns the timeouts set in the process environment, defaults for unset ones.
    pub fn from_env() -> Result<S3ReadTimeouts> {
        S3ReadTimeouts::from_lookup(&|name| std::env::var(name).ok())
    }

    /// Returns the timeouts `lookup` gives (milliseconds), defaults for unset or empty ones;
    /// a value that is not a positive integer is an error naming its variable.
    pub fn from_lookup(lookup: &dyn Fn(&str) -> Option<String>) -> Result<S3ReadTimeouts> {
        let defaults = S3ReadTimeouts::default();
        let millis = |name: &str, default: Duration| -> Result<Duration> {
            match lookup(name) {
                Some(text) if !text.trim().is_empty() => match text.trim().parse::<u64>() {
                    Ok(ms) if ms > 0 => Ok(Duration::from_millis(ms)),
                    _ => Err(Error::invalid(
                        name,
                        format!("'{text}' is not a positive number of milliseconds"),
                    )),
                },
                _ => Ok(default),
            }
        };
        Ok(S3ReadTimeouts {
            connect: millis("SQUASH_S3_CONNECT_TIMEOUT_MS", defaults.connect)?,
            read: millis("SQUASH_S3_READ_TIMEOUT_MS", defaults.read)?,
        })
    }
}

/// Returns the AWS SDK configuration from the environment (credentials, region, endpoints),
/// with the lean feature set's explicit HTTP client and the standard retry mode with
/// `max_attempts` attempts (first try included) and jittered exponential backoff.
pub async fn sdk_config_from_env(max_attempts: u32) -> aws_config::SdkConfig {
    // The lean SDK feature set carries no default HTTP client, so one is given explicitly.
    // `build_https` also speaks plain http:// to local endpoints.
    let http_client = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https();
    aws_config::defaults(BehaviorVersion::latest())
        .http_client(http_client)
        .retry_config(RetryConfig::standard().with_max_attempts(max_attempts))
        .load()
        .await
}

/// Returns an S3 client configured from the environment (credentials, region, endpoint).
///
/// Uses the SDK's standard retry mode with [`MAX_ATTEMPTS`] attempts and jittered exponential
/// backoff. When `AWS_ENDPOINT_URL_S3` or `AWS_ENDPOINT_URL` is set (a local or third-party
/// server), addressing is path-style, since virtual-host names such as
/// `bucket.localhost` do not resolve. The region defaults to `us-east-1` when none is
/// configured.
pub async fn client_from_env() -> Client {
    let sdk_config = sdk_config_from_env(MAX_ATTEMPTS).await;
    let endpoint_is_overridden = ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"]
        .iter()
        .any(|name| std::env::var(name).is_ok_and(|value| !value.is_empty()));
    let mut s3_config = aws_sdk_s3::config::Builder::from(&sdk_config);
    s3_config.set_force_path_style(Some(endpoint_is_overridden));
    if sdk_config.region().is_none() {
        // A standalone region chain here would not reuse the HTTP client above, so the
        // fallback is applied after loading instead.
        s3_config.set_region(Some(aws_sdk_s3::config::Region::new("us-east-1")));
    }
    let s3_config = s3_config.build();
    Client::from_conf(s3_config)
}

/// A [`BlobStore`] over `s3://bucket/prefix`.
#[derive(Debug, Clone)]
pub struct S3Store {
    client: Client,
    /// `client` with the read timeouts and a shorter backoff, for GET, HEAD and LIST.
    read_client: Client,
    read_timeouts: S3ReadTimeouts,
    bucket: String,
    /// Key prefix without leading or trailing `/`; empty for the bucket root.
    prefix: String,
}

impl S3Store {
    /// Returns a store rooted at `url` (`s3://bucket` or `s3://bucket/some/prefix`), reading
    /// with the default [`S3ReadTimeouts`].
    pub fn from_url(url: &str, client: &Client) -> Result<S3Store> {
        let rest = url.strip_prefix("s3://").ok_or_else(|| {
            Error::invalid(
                "index location",
                format!("'{url}' does not start with s3://"),
            )
        })?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(Error::invalid(
                "index location",
                format!("'{url}' names no bucket"),
            ));
        }
        let prefix = prefix.trim_matches('/');
        if !prefix.is_empty() {
            validate_key(prefix).map_err(|_| {
                Error::invalid(
                    "index location",
                    format!("'{url}' has an invalid key prefix"),
                )
            })?;
        }
        let read_timeouts = S3ReadTimeouts::default();
        Ok(S3Store {
            client: client.clone(),
            read_client: read_client(client, &read_timeouts),
            read_timeouts,
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
        })
    }

    /// Returns this store reading with `timeouts`.
    pub fn with_read_timeouts(mut self, timeouts: S3ReadTimeouts) -> S3Store {
        self.read_client = read_client(&self.client, &timeouts);
        self.read_timeouts = timeouts;
        self
    }

    /// Returns the read timeouts.
    pub fn read_timeouts(&self) -> S3ReadTimeouts {
        self.read_timeouts
    }

    /// Returns the bucket name.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// Returns the key prefix (no leading or trailing `/`; empty for the bucket root).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn full_key(&self, key: &str) -> Result<String> {
        validate_key(key)?;
        Ok(self.join(key))
    }

    fn join(&self, relative: &str) -> String {
        if self.prefix.is_empty() {
            relative.to_string()
        } else {
            format!("{}/{relative}", self.prefix)
        }
    }

    fn not_found(&self, key: &str) -> Error {
        Error::NotFound {
            what: format!("object '{key}' in {}", self.describe()),
        }
    }

    async fn put_multipart(&self, full_key: &str, bytes: &[u8]) -> Result<()> {
        let created = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(full_key)
            .send()
            .await
            .map_err(|e| storage_error("create multipart upload", full_key, e))?;
        let upload_id = created.upload_id().ok_or_else(|| Error::Storage {
            message: format!("create multipart upload of {full_key}: no upload id in the reply"),
            retryable: false,
        })?;
        let uploaded = self.upload_parts(full_key, upload_id, bytes).await;
        let completed = match uploaded {
            Ok(parts) => self
                .client
                .complete_multipart_upload()
                .bucket(&self.bucket)
                .key(full_key)
                .upload_id(upload_id)
                .multipart_upload(
                    CompletedMultipartUpload::builder()
                        .set_parts(Some(parts))
                        .build(),
                )
                .send()
                .await
                .map(|_| ())
                .map_err(|e| storage_error("complete multipart upload", full_key, e)),
            Err(error) => Err(error),
        };
        if completed.is_err() {
            // Uploaded parts are billed until aborted; the original error matters more than
            // a failed abort, which a bucket lifecycle rule cleans up eventually.
            let aborted = self
                .client
                .abort_multipart_upload()
                .bucket(&self.bucket)
                .key(full_key)
                .upload_id(upload_id)
                .send()
                .await;
            if let Err(abort_error) = aborted {
                tracing::warn!(
                    key = full_key,
                    error = %DisplayErrorContext(&abort_error),
                    "abort of a failed multipart upload failed"
                );
            }
        }
        completed
    }

    /// Uploads the parts one after another; the SDK retries each part on its own.
    async fn upload_parts(
        &self,
        full_key: &str,
        upload_id: &str,
        bytes: &[u8],
    ) -> Result<Vec<CompletedPart>> {
        let mut parts = Vec::new();
        for (index, chunk) in bytes.chunks(MULTIPART_PART_BYTES).enumerate() {
            let part_number = i32::try_from(index + 1).map_err(|_| {
                Error::invalid("object size", format!("{full_key} needs too many parts"))
            })?;
            let uploaded = self
                .client
                .upload_part()
                .bucket(&self.bucket)
                .key(full_key)
                .upload_id(upload_id)
                .part_number(part_number)
                .body(ByteStream::from(chunk.to_vec()))
                .send()
                .await
                .map_err(|e| storage_error("upload part", full_key, e))?;
            parts.push(
                CompletedPart::builder()
                    .set_e_tag(uploaded.e_tag().map(str::to_string))
                    .part_number(part_number)
                    .build(),
            );
        }
        Ok(parts)
    }

    async fn object_size(&self, key: &str, full_key: &str) -> Result<u64> {
        let head = self
            .read_client
            .head_object()
            .bucket(&self.bucket)
            .key(full_key)
            .send()
            .await
            .map_err(|e| {
                if is_not_found(&e) {
                    self.not_found(key)
                } else {
                    storage_error("head", full_key, e)
                }
            })?;
        Ok(head.content_length().unwrap_or(0).max(0) as u64)
    }
}

#[async_trait]
impl BlobStore for S3Store {
    async fn get(&self, key: &str) -> Result<Vec<u8>> {
        self.get_whole(key).await.map(|(bytes, _)| bytes)
    }

    async fn get_tagged(&self, key: &str) -> Result<(Vec<u8>, ObjectTag)> {
        let (bytes, tag_opt) = self.get_whole(key).await?;
        let tag = tag_opt.ok_or_else(|| Error::Storage {
            message: format!("get {key}: the store returned no ETag"),
            retryable: false,
        })?;
        Ok((bytes, tag))
    }

    async fn put_if(&self, key: &str, bytes: Vec<u8>, condition: &PutCondition) -> Result<()> {
        let full_key = self.full_key(key)?;
        let request = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(&full_key)
            .body(ByteStream::from(bytes));
        let request = match condition {
            PutCondition::Absent => request.if_none_match("*"),
            PutCondition::Matches(tag) => request.if_match(tag),
        };
        match request.send().await {
            Ok(_) => Ok(()),
            // 412: the condition failed. 409: a concurrent conditional write interfered.
            // 404 (If-Match): the object was removed since it was read.
            Err(error) if matches!(http_status(&error), Some(412 | 409 | 404)) => {
                Err(conflict(key, condition))
            }
            Err(error) => Err(storage_error("conditional put", &full_key, error)),
        }
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Vec<u8>> {
        let full_key = self.full_key(key)?;
        let outside = |size: Option<u64>| {
            let size = size.map_or_else(|| "unknown".to_string(), |s| s.to_string());
            Error::invalid(
                "range",
                format!(
                    "{}..{} is outside object '{key}' of {size} bytes",
                    range.start, range.end
                ),
            )
        };
        if range.start > range.end {
            return Err(outside(None));
        }
        if range.start == range.end {
            // HTTP has no empty byte range; a HEAD still checks existence and bounds.
            let size = self.object_size(key, &full_key).await?;
            return if range.end <= size {
                Ok(Vec::new())
            } else {
                Err(outside(Some(size)))
            };
        }
        let mut attempt = 1;
        loop {
            let output = self
                .read_client
                .get_object()
                .bucket(&self.bucket)
                .key(&full_key)
                .range(format!("bytes={}-{}", range.start, range.end - 1))
                .send()
                .await
                .map_err(|e| {
                    if is_not_found(&e) {
                        self.not_found(key)
                    } else if http_status(&e) == Some(416) {
                        outside(None)
                    } else {
                        storage_error("ranged get", &full_key, e)
                    }
                })?;
            // S3 clips a range that runs past the end instead of refusing it; the port does not.
            let size_opt = output
                .content_range()
                .and_then(|r| r.rsplit('/').next())
                .and_then(|total| total.parse::<u64>().ok());
            let wanted = (range.end - range.start) as usize;
            match self.collect_body(output.body, &full_key, wanted).await {
                Ok(bytes) if bytes.len() == wanted => return Ok(bytes),
                Ok(_) => return Err(outside(size_opt)),
                Err(error) if attempt < BODY_ATTEMPTS => {
                    tracing::warn!(key = full_key, attempt, %error, "object body failed, reading again");
                    attempt += 1;
                }
                Err(error) => return Err(error),
            }
        }
    }

    async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<()> {
        let full_key = self.full_key(key)?;
        if bytes.len() > MULTIPART_THRESHOLD_BYTES {
            return self.put_multipart(&full_key, &bytes).await;
        }
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(&full_key)
            .body(ByteStream::from(bytes))
            .send()
            .await
            .map_err(|e| storage_error("put", &full_key, e))?;
        Ok(())
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let root = self.join("");
        let full_prefix = format!("{root}{prefix}");
        let mut keys = Vec::new();
        let mut continuation_opt: Option<String> = None;
        loop {
            let page = self
                .read_client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(&full_prefix)
                .set_continuation_token(continuation_opt.take())
                .send()
                .await
                .map_err(|e| storage_error("list", &full_prefix, e))?;
            for object in page.contents() {
                if let Some(relative) = object.key().and_then(|k| k.strip_prefix(&root)) {
                    keys.push(relative.to_string());
                }
            }
            match page.next_continuation_token() {
                Some(token) if page.is_truncated() == Some(true) => {
                    continuation_opt = Some(token.to_string());
                }
                _ => break,
            }
        }
        keys.sort();
        Ok(keys)
    }

    async fn delete(&self, key: &str) -> Result<()> {
        let full_key = self.full_key(key)?;
        // S3 answers 204 for a missing key too, which matches the port's contract.
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(&full_key)
            .send()
            .await
            .map_err(|e| storage_error("delete", &full_key, e))?;
        Ok(())
    }

    fn describe(&self) -> String {
        if self.prefix.is_empty() {
            format!("s3://{}", self.bucket)
        } else {
            format!("s3://{}/{}", self.bucket, self.prefix)
        }
    }
}

/// Returns `client` with `timeouts` and the read backoff.
fn read_client(client: &Client, timeouts: &S3ReadTimeouts) -> Client {
    let config = client
        .config()
        .to_builder()
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(timeouts.connect)
                .read_timeout(timeouts.read)
                .build(),
        )
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(MAX_ATTEMPTS)
                .with_initial_backoff(READ_INITIAL_BACKOFF),
        )
        .build();
    Client::from_conf(config)
}

impl S3Store {
    /// Returns the whole object and its ETag, reading the body again when it breaks off.
    async fn get_whole(&self, key: &str) -> Result<(Vec<u8>, Option<String>)> {
        let full_key = self.full_key(key)?;
        let mut attempt = 1;
        loop {
            let output = self
                .read_client
                .get_object()
                .bucket(&self.bucket)
                .key(&full_key)
                .send()
                .await
                .map_err(|e| {
                    if is_not_found(&e) {
                        self.not_found(key)
                    } else {
                        storage_error("get", &full_key, e)
                    }
                })?;
            let size_hint = output.content_length().unwrap_or(0).max(0) as usize;
            let tag_opt = output.e_tag().map(str::to_string);
            match self.collect_body(output.body, &full_key, size_hint).await {
                Ok(bytes) => return Ok((bytes, tag_opt)),
                Err(error) if attempt < BODY_ATTEMPTS => {
                    tracing::warn!(key = full_key, attempt, %error, "object body failed, reading again");
                    attempt += 1;
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// Reads a response body, failing (retryably) when the connection breaks or no byte
    /// comes for the read timeout.
    async fn collect_body(
        &self,
        mut body: ByteStream,
        full_key: &str,
        size_hint: usize,
    ) -> Result<Vec<u8>> {
        let stall = self.read_timeouts.read;
        // The hint comes from the server; a huge claimed length must not allocate up front.
        let mut bytes = Vec::with_capacity(size_hint.min(MULTIPART_THRESHOLD_BYTES));
        loop {
            match tokio::time::timeout(stall, body.next()).await {
                Ok(None) => return Ok(bytes),
                Ok(Some(Ok(piece))) => bytes.extend_from_slice(&piece),
                // A body cut off mid-stream is a network failure; reading again may succeed.
                Ok(Some(Err(error))) => {
                    return Err(Error::Storage {
                        message: format!(
                            "read body of {full_key}: {}",
                            DisplayErrorContext(&error)
                        ),
                        retryable: true,
                    })
                }
                Err(_) => {
                    return Err(Error::Storage {
                        message: format!(
                            "read body of {full_key}: no data for {} ms after {} bytes",
                            stall.as_millis(),
                            bytes.len()
                        ),
                        retryable: true,
                    })
                }
            }
        }
    }
}

fn http_status<E, R>(error: &SdkError<E, R>) -> Option<u16>
where
    R: HttpStatus,
{
    error.raw_response().map(HttpStatus::status_code)
}

/// Gives the status of a raw response; a trait so the classification can be unit tested.
trait HttpStatus {
    fn status_code(&self) -> u16;
}

impl HttpStatus for aws_sdk_s3::config::http::HttpResponse {
    fn status_code(&self) -> u16 {
        self.status().as_u16()
    }
}

fn is_not_found<E, R>(error: &SdkError<E, R>) -> bool
where
    E: ProvideErrorMetadata,
    R: HttpStatus,
{
    match error {
        SdkError::ServiceError(service) => {
            matches!(
                service.err().code(),
                Some("NoSuchKey" | "NotFound" | "NoSuchBucket")
            ) || service.raw().status_code() == 404
        }
        _ => false,
    }
}

/// Returns true for S3 error codes that mean "slow down" or "try again".
fn is_transient_code(code: &str) -> bool {
    is_throttle_code(code)
        || matches!(
            code,
            "RequestTimeout" | "RequestTimeoutException" | "InternalError" | "ServiceUnavailable"
        )
}

/// Returns true for S3 error codes that mean "you are sending too much".
fn is_throttle_code(code: &str) -> bool {
    matches!(
        code,
        "SlowDown"
            | "Throttling"
            | "ThrottlingException"
            | "ThrottledException"
            | "RequestThrottled"
            | "RequestThrottledException"
            | "TooManyRequestsException"
            | "ProvisionedThroughputExceededException"
            | "RequestLimitExceeded"
            | "BandwidthLimitExceeded"
    )
}

fn is_retryable<E, R>(error: &SdkError<E, R>) -> bool
where
    E: ProvideErrorMetadata,
    R: HttpStatus,
{
    match error {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            true
        }
        SdkError::ServiceError(service) => {
            let status = service.raw().status_code();
            status == 429
                || (500..=599).contains(&status)
                || service.err().code().is_some_and(is_transient_code)
        }
        _ => false,
    }
}

fn storage_error<E, R>(operation: &str, full_key: &str, error: SdkError<E, R>) -> Error
where
    E: ProvideErrorMetadata + StdError + 'static,
    R: HttpStatus + std::fmt::Debug,
{
    let retryable = is_retryable(&error);
    let message = format!("{operation} {full_key}: {}", DisplayErrorContext(&error));
    if is_throttle(&error) {
        return Error::Throttled {
            message,
            retry_after_ms: None,
        };
    }
    if matches!(error, SdkError::TimeoutError(_)) {
        return Error::Timeout { message };
    }
    Error::Storage { message, retryable }
}

/// Returns true when S3 refused for its request rate (429, or a throttling code).
fn is_throttle<E, R>(error: &SdkError<E, R>) -> bool
where
    E: ProvideErrorMetadata,
    R: HttpStatus,
{
    match error {
        SdkError::ServiceError(service) => {
            service.raw().status_code() == 429 || service.err().code().is_some_and(is_throttle_code)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_s3::error::ErrorMetadata;

    #[derive(Debug)]
    struct FakeResponse(u16);

    impl HttpStatus for FakeResponse {
        fn status_code(&self) -> u16 {
            self.0
        }
    }

    fn service_error(status: u16, code: &str) -> SdkError<ErrorMetadata, FakeResponse> {
        SdkError::service_error(
            ErrorMetadata::builder().code(code).build(),
            FakeResponse(status),
        )
    }

    fn offline_client() -> Client {
        let config = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(aws_sdk_s3::config::Region::new("us-east-1"))
            .build();
        Client::from_conf(config)
    }

    #[test]
    fn urls_split_into_bucket_and_prefix() {
        let client = offline_client();
        let store = S3Store::from_url("s3://bucket/prefix/index/", &client).expect("url");
        assert_eq!(store.bucket(), "bucket");
        assert_eq!(store.prefix(), "prefix/index");
        assert_eq!(
            store.full_key("a/b.bin").expect("key"),
            "prefix/index/a/b.bin"
        );
        assert_eq!(store.describe(), "s3://bucket/prefix/index");
        let root = S3Store::from_url("s3://bucket", &client).expect("url");
        assert_eq!(root.prefix(), "");
        assert_eq!(root.full_key("x").expect("key"), "x");
        assert_eq!(root.describe(), "s3://bucket");
        for bad in ["s3://", "s3:///prefix", "http://bucket/x", "s3://b/../x"] {
            assert!(S3Store::from_url(bad, &client).is_err(), "{bad}");
        }
        assert!(store.full_key("../escape").is_err());
    }

    #[test]
    fn errors_are_classified() {
        assert!(is_not_found(&service_error(404, "NoSuchKey")));
        assert!(is_not_found(&service_error(404, "")));
        assert!(!is_not_found(&service_error(403, "AccessDenied")));
        assert!(is_retryable(&service_error(503, "SlowDown")));
        assert!(is_retryable(&service_error(500, "InternalError")));
        assert!(is_retryable(&service_error(429, "")));
        assert!(is_retryable(&service_error(400, "RequestTimeout")));
        assert!(!is_retryable(&service_error(403, "AccessDenied")));
        assert!(!is_retryable(&service_error(404, "NoSuchKey")));
        let timeout: SdkError<ErrorMetadata, FakeResponse> =
            SdkError::timeout_error("attempt timed out");
        assert!(is_retryable(&timeout));
        let construction: SdkError<ErrorMetadata, FakeResponse> =
            SdkError::construction_failure("bad input");
        assert!(!is_retryable(&construction));
        let error = storage_error("get", "k", service_error(503, "SlowDown"));
        assert!(error.is_retryable());
        assert!(matches!(error, Error::Throttled { .. }), "{error:?}");
        let error = storage_error("get", "k", service_error(500, "InternalError"));
        assert!(
            matches!(
                error,
                Error::Storage {
                    retryable: true,
                    ..
                }
            ),
            "{error:?}"
        );
        let timed_out: SdkError<ErrorMetadata, FakeResponse> =
            SdkError::timeout_error("attempt timed out");
        let error = storage_error("get", "k", timed_out);
        assert!(matches!(error, Error::Timeout { .. }), "{error:?}");
        let error = storage_error("get", "k", service_error(403, "AccessDenied"));
        assert!(!error.is_retryable());
    }

    #[test]
    fn read_timeouts_come_from_the_environment_with_defaults() {
        let timeouts = |pairs: &[(&str, &str)]| {
            let pairs: Vec<(String, String)> = pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            S3ReadTimeouts::from_lookup(&|name| {
                pairs
                    .iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.clone())
            })
        };
        assert_eq!(timeouts(&[]).expect("defaults"), S3ReadTimeouts::default());
        let set = timeouts(&[
            ("SQUASH_S3_CONNECT_TIMEOUT_MS", "250"),
            ("SQUASH_S3_READ_TIMEOUT_MS", " 900 "),
        ])
        .expect("set");
        assert_eq!(set.connect, Duration::from_millis(250));
        assert_eq!(set.read, Duration::from_millis(900));
        for bad in ["0", "-1", "soon"] {
            match timeouts(&[("SQUASH_S3_READ_TIMEOUT_MS", bad)]) {
                Err(Error::InvalidInput { field, .. }) => {
                    assert_eq!(field, "SQUASH_S3_READ_TIMEOUT_MS")
                }
                other => panic!("{bad}: expected an error, got {other:?}"),
            }
        }
        let store = S3Store::from_url("s3://bucket/p", &offline_client())
            .expect("url")
            .with_read_timeouts(set);
        assert_eq!(store.read_timeouts(), set);
        let config = store.read_client.config();
        let timeout_config = config.timeout_config().expect("timeouts");
        assert_eq!(timeout_config.read_timeout(), Some(set.read));
        assert_eq!(timeout_config.connect_timeout(), Some(set.connect));
    }
}
