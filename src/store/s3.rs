//! S3-compatible object storage (AWS S3, DigitalOcean Spaces, MinIO, Garage, Ceph).
//!
//! Semantics of the `Store` trait on S3: a PUT is atomic (an object is visible
//! whole or not at all) and durable once acknowledged; nothing here relies on
//! conditional writes (Garage 2.x ignores If-None-Match), because the format
//! never needs create-if-absent: object names are content hashes or random.
//! The SDK's own retries are off; `RetryStore` retries transient errors so that
//! the policy (and the "no retry storm" guarantee) lives in one place.

use super::{BackendErrorKind, ObjectInfo, Store, StoreError, validate_name};
use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart, ObjectLockMode, ServerSideEncryption, StorageClass,
};
use futures_util::stream::{self, StreamExt, TryStreamExt};
use std::time::Duration;

mod config;
pub use config::S3Options;

#[derive(Debug, Clone)]
pub struct S3Store {
    client: Client,
    opts: S3Options,
}

type HttpResponse = aws_sdk_s3::config::http::HttpResponse;

/// Map an SDK error to a store error a user can act on. Never includes credentials.
fn classify<E>(op: &str, name: &str, endpoint: &str, err: SdkError<E, HttpResponse>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let backend = |kind, message: String| StoreError::Backend { kind, message };
    match &err {
        SdkError::TimeoutError(_) => {
            backend(BackendErrorKind::Transient, format!("{op} {name}: timed out talking to {endpoint}"))
        }
        SdkError::DispatchFailure(d) => {
            let kind =
                if d.is_timeout() || d.is_io() { BackendErrorKind::Unreachable } else { BackendErrorKind::Transient };
            backend(kind, format!("cannot reach the S3 endpoint {endpoint}: {}", root_cause(&err)))
        }
        SdkError::ResponseError(_) => backend(
            BackendErrorKind::Transient,
            format!("{op} {name}: malformed or interrupted response from {endpoint}"),
        ),
        SdkError::ServiceError(se) => {
            let status = se.raw().status().as_u16();
            let code = se.err().code().unwrap_or("");
            let msg = se.err().message().unwrap_or("");
            match (status, code) {
                (_, "NoSuchBucket") => {
                    backend(BackendErrorKind::NoSuchBucket, format!("bucket does not exist ({op} {name})"))
                }
                (404, _) => StoreError::NotFound { name: name.to_string() },
                (403, _) | (_, "InvalidAccessKeyId" | "SignatureDoesNotMatch" | "AccessDenied") => {
                    let why = [code, msg].iter().filter(|s| !s.is_empty()).copied().collect::<Vec<_>>().join(": ");
                    let why = if why.is_empty() { format!("HTTP {status}") } else { why };
                    backend(
                        BackendErrorKind::AccessDenied,
                        format!(
                            "access denied by {endpoint} ({op} {name}): {why}; check the credentials and their permissions"
                        ),
                    )
                }
                (429 | 500..=599, _) | (_, "SlowDown" | "RequestTimeout" | "InternalError" | "ServiceUnavailable") => {
                    backend(
                        BackendErrorKind::Transient,
                        format!("{op} {name}: {endpoint} answered {status} {code} {msg}"),
                    )
                }
                _ => backend(
                    BackendErrorKind::Permanent,
                    format!("{op} {name}: {endpoint} answered {status} {code} {msg}"),
                ),
            }
        }
        _ => backend(
            BackendErrorKind::Permanent,
            format!("{op} {name}: {}", short(&DisplayErrorContext(&err).to_string())),
        ),
    }
}

/// The innermost cause (e.g. "Connection refused (os error 111)"): the SDK's
/// own layers only repeat the request context.
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    short(&cur.to_string())
}

/// Keep error lines to one readable line.
fn short(s: &str) -> String {
    let one = s.replace('\n', " ");
    if one.len() > 300 { format!("{}...", &one[..one.floor_char_boundary(300)]) } else { one }
}

/// Apply storage class, server-side encryption and Object Lock settings to a
/// PutObject or CreateMultipartUpload request (same setters, different types).
macro_rules! with_object_options {
    ($store:expr, $name:expr, $req:expr) => {{
        let (opts, mut req) = (&$store.opts, $req);
        if let Some(sc) = &opts.storage_class {
            req = req.storage_class(StorageClass::from(sc.as_str()));
        }
        if let Some(sse) = &opts.sse {
            req = req.server_side_encryption(ServerSideEncryption::from(sse.as_str()));
        }
        if let Some(k) = &opts.sse_kms_key_id {
            req = req.ssekms_key_id(k);
        }
        if let Some(until) = $store.lock_until($name) {
            req = req
                .object_lock_mode(ObjectLockMode::from(opts.object_lock_mode.as_str()))
                .object_lock_retain_until_date(until);
        }
        req
    }};
}

impl S3Store {
    /// Build a client from the standard AWS environment/profile plus `opts`,
    /// then probe the bucket so that a wrong credential, a missing bucket or an
    /// unreachable endpoint is reported once, clearly, before any work starts.
    pub async fn connect(opts: S3Options) -> Result<Self, StoreError> {
        let client = config::client(&opts).await;
        let store = Self { client, opts };
        store.probe().await?;
        Ok(store)
    }

    async fn probe(&self) -> Result<(), StoreError> {
        let policy = super::RetryPolicy { max_retries: 2, ..super::RetryPolicy::default() };
        let mut attempt = 0;
        loop {
            let r = self.client.head_bucket().bucket(&self.opts.bucket).send().await;
            let err = match r {
                Ok(_) => return Ok(()),
                Err(SdkError::ServiceError(se)) if se.raw().status().as_u16() == 404 => {
                    return Err(StoreError::Backend {
                        kind: BackendErrorKind::NoSuchBucket,
                        message: format!(
                            "bucket {:?} does not exist at {}",
                            self.opts.bucket,
                            self.opts.endpoint_display()
                        ),
                    });
                }
                Err(e) => classify("open bucket", &self.opts.bucket, &self.opts.endpoint_display(), e),
            };
            if !err.is_transient() || attempt >= policy.max_retries {
                return Err(err);
            }
            tokio::time::sleep(policy.delay(attempt)).await;
            attempt += 1;
        }
    }

    fn key(&self, name: &str) -> Result<String, StoreError> {
        validate_name(name)?;
        Ok(if self.opts.prefix.is_empty() { name.to_string() } else { format!("{}/{name}", self.opts.prefix) })
    }

    fn err<E>(&self, op: &str, name: &str, e: SdkError<E, HttpResponse>) -> StoreError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        classify(op, name, &self.opts.endpoint_display(), e)
    }

    /// Retention for objects that must be immutable (packs, snapshots), if configured.
    fn lock_until(&self, name: &str) -> Option<aws_sdk_s3::primitives::DateTime> {
        let days = self.opts.object_lock_days?;
        if !(name.starts_with("data/") || name.starts_with("snapshots/") || name.starts_with("index/")) {
            return None;
        }
        let until = chrono::Utc::now() + chrono::Duration::days(i64::from(days));
        Some(aws_sdk_s3::primitives::DateTime::from_secs(until.timestamp()))
    }

    async fn put_single(&self, name: &str, key: &str, data: Vec<u8>) -> Result<(), StoreError> {
        let req = self.client.put_object().bucket(&self.opts.bucket).key(key).body(ByteStream::from(data));
        let mut req = with_object_options!(self, name, req);
        if self.lock_until(name).is_some() {
            // S3 refuses Object Lock puts without a content checksum.
            req = req.checksum_algorithm(ChecksumAlgorithm::Crc32);
        }
        // Payload signing would SHA-256 every byte a second time; the data is
        // already authenticated by AES-GCM and named by its hash, and TLS
        // protects it in transit.
        req.customize().disable_payload_signing().send().await.map_err(|e| self.err("put", name, e))?;
        Ok(())
    }

    async fn put_multipart(&self, name: &str, key: &str, data: Vec<u8>) -> Result<(), StoreError> {
        let req = self.client.create_multipart_upload().bucket(&self.opts.bucket).key(key);
        let req = with_object_options!(self, name, req);
        let created = req.send().await.map_err(|e| self.err("start upload of", name, e))?;
        let upload_id = created.upload_id().unwrap_or_default().to_string();
        let part_size = self.opts.part_size.max(5 << 20);
        let parts: Vec<(i32, Vec<u8>)> =
            data.chunks(part_size).enumerate().map(|(i, c)| (i as i32 + 1, c.to_vec())).collect();
        drop(data);
        let result: Result<Vec<CompletedPart>, StoreError> = stream::iter(parts)
            .map(|(n, body)| {
                let (upload_id, key) = (upload_id.clone(), key.to_string());
                async move {
                    let r = self
                        .client
                        .upload_part()
                        .bucket(&self.opts.bucket)
                        .key(key)
                        .upload_id(upload_id)
                        .part_number(n)
                        .body(ByteStream::from(body))
                        .customize()
                        .disable_payload_signing()
                        .send()
                        .await
                        .map_err(|e| self.err("upload part of", name, e))?;
                    Ok(CompletedPart::builder().part_number(n).set_e_tag(r.e_tag().map(str::to_string)).build())
                }
            })
            .buffered(self.opts.part_concurrency.max(1))
            .try_collect()
            .await;
        let completed = match result {
            Ok(parts) => self
                .client
                .complete_multipart_upload()
                .bucket(&self.opts.bucket)
                .key(key)
                .upload_id(&upload_id)
                .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
                .send()
                .await
                .map_err(|e| self.err("finish upload of", name, e)),
            Err(e) => Err(e),
        };
        if let Err(e) = completed {
            // Best effort: an abandoned upload is invisible to readers but costs storage.
            let _ = self
                .client
                .abort_multipart_upload()
                .bucket(&self.opts.bucket)
                .key(key)
                .upload_id(&upload_id)
                .send()
                .await;
            return Err(e);
        }
        Ok(())
    }

    /// Start a whole-object GET: the body and its announced length.
    async fn get_object(&self, name: &str) -> Result<(ByteStream, Option<u64>), StoreError> {
        let key = self.key(name)?;
        let r = self
            .client
            .get_object()
            .bucket(&self.opts.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| self.err("get", name, e))?;
        let expected = r.content_length().and_then(|l| u64::try_from(l).ok());
        Ok((r.body, expected))
    }

    async fn read_body(&self, name: &str, body: ByteStream, expected: Option<u64>) -> Result<Vec<u8>, StoreError> {
        let data = body
            .collect()
            .await
            .map_err(|e| StoreError::Backend {
                kind: BackendErrorKind::Transient,
                message: format!("get {name}: body interrupted: {e}"),
            })?
            .into_bytes()
            .to_vec();
        if let Some(len) = expected {
            if data.len() as u64 != len {
                return Err(StoreError::ShortRead { name: name.to_string(), expected: len, got: data.len() as u64 });
            }
        }
        Ok(data)
    }

    /// Read a body chunk by chunk, giving up as soon as it passes `limit`
    /// (a server may omit or misstate Content-Length).
    async fn read_body_limited(&self, name: &str, mut body: ByteStream, limit: u64) -> Result<Vec<u8>, StoreError> {
        let mut data = Vec::new();
        while let Some(part) = body.next().await {
            let part = part.map_err(|e| StoreError::Backend {
                kind: BackendErrorKind::Transient,
                message: format!("get {name}: body interrupted: {e}"),
            })?;
            if (data.len() + part.len()) as u64 > limit {
                return Err(StoreError::TooLarge { name: name.to_string(), size: None, limit });
            }
            data.extend_from_slice(&part);
        }
        Ok(data)
    }
}

#[async_trait]
impl Store for S3Store {
    async fn put(&self, name: &str, data: Vec<u8>) -> Result<(), StoreError> {
        let key = self.key(name)?;
        if data.len() > self.opts.multipart_threshold {
            self.put_multipart(name, &key, data).await
        } else {
            self.put_single(name, &key, data).await
        }
    }

    async fn get(&self, name: &str) -> Result<Vec<u8>, StoreError> {
        let (body, expected) = self.get_object(name).await?;
        self.read_body(name, body, expected).await
    }

    async fn get_limited(&self, name: &str, limit: u64) -> Result<Vec<u8>, StoreError> {
        let (body, expected) = self.get_object(name).await?;
        if let Some(size) = expected.filter(|&s| s > limit) {
            // Dropping the response closes the connection without reading the body.
            return Err(StoreError::TooLarge { name: name.to_string(), size: Some(size), limit });
        }
        let data = self.read_body_limited(name, body, limit).await?;
        if let Some(len) = expected
            && data.len() as u64 != len
        {
            return Err(StoreError::ShortRead { name: name.to_string(), expected: len, got: data.len() as u64 });
        }
        Ok(data)
    }

    async fn get_range(&self, name: &str, offset: u64, len: u64) -> Result<Vec<u8>, StoreError> {
        if len == 0 {
            return Ok(Vec::new());
        }
        let key = self.key(name)?;
        let range = format!("bytes={}-{}", offset, offset + len - 1);
        let r = self
            .client
            .get_object()
            .bucket(&self.opts.bucket)
            .key(key)
            .range(range)
            .send()
            .await
            .map_err(|e| self.err("get", name, e))?;
        self.read_body(name, r.body, Some(len)).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StoreError> {
        let full =
            if self.opts.prefix.is_empty() { prefix.to_string() } else { format!("{}/{prefix}", self.opts.prefix) };
        let strip = if self.opts.prefix.is_empty() { 0 } else { self.opts.prefix.len() + 1 };
        let mut pages = self.client.list_objects_v2().bucket(&self.opts.bucket).prefix(&full).into_paginator().send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| self.err("list", prefix, e))?;
            for obj in page.contents() {
                let Some(key) = obj.key() else { continue };
                let name = &key[strip.min(key.len())..];
                if validate_name(name).is_ok() {
                    out.push(ObjectInfo {
                        name: name.to_string(),
                        size: obj.size().and_then(|s| u64::try_from(s).ok()).unwrap_or(0),
                        modified: obj.last_modified().and_then(system_time),
                    });
                }
            }
        }
        Ok(out)
    }

    async fn delete(&self, name: &str) -> Result<(), StoreError> {
        let key = self.key(name)?;
        match self.client.delete_object().bucket(&self.opts.bucket).key(key).send().await {
            Ok(_) => Ok(()),
            Err(e) => match self.err("delete", name, e) {
                StoreError::NotFound { .. } => Ok(()),
                other => Err(other),
            },
        }
    }

    async fn size(&self, name: &str) -> Result<u64, StoreError> {
        let key = self.key(name)?;
        let r = self
            .client
            .head_object()
            .bucket(&self.opts.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| self.err("stat", name, e))?;
        Ok(r.content_length().and_then(|l| u64::try_from(l).ok()).unwrap_or(0))
    }

    fn location(&self) -> String {
        format!("s3://{}/{} at {}", self.opts.bucket, self.opts.prefix, self.opts.endpoint_display())
    }

    fn upload_concurrency(&self) -> usize {
        self.opts.upload_concurrency
    }

    fn read_concurrency(&self) -> usize {
        self.opts.read_concurrency
    }
}

fn system_time(t: &aws_sdk_s3::primitives::DateTime) -> Option<std::time::SystemTime> {
    let secs = u64::try_from(t.secs()).ok()?;
    Some(std::time::UNIX_EPOCH + Duration::new(secs, t.subsec_nanos()))
}

/// Connect timeout for new connections; an attempt may take longer (large parts).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(300);
