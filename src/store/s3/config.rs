//! S3 repository addresses and client construction.
//!
//! `s3://bucket/prefix?key=value&...`; endpoint, region and credentials come
//! from the standard AWS environment and profiles unless the address sets them.

use super::{ATTEMPT_TIMEOUT, CONNECT_TIMEOUT};
use aws_sdk_s3::Client;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{Region, RequestChecksumCalculation, ResponseChecksumValidation};

/// Static credentials; the secret never reaches a log or an error message.
#[derive(Clone, PartialEq)]
pub struct StaticCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

impl std::fmt::Debug for StaticCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StaticCredentials({}, <secret redacted>)", self.access_key_id)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct S3Options {
    pub bucket: String,
    /// Key prefix without leading or trailing `/` (may be empty).
    pub prefix: String,
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub profile: Option<String>,
    /// From AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY when both are set; otherwise
    /// the SDK's chain (profiles, web identity, instance roles) finds them.
    pub credentials: Option<StaticCredentials>,
    /// Path-style addressing (`endpoint/bucket/key`), needed by MinIO, Garage and Ceph.
    pub path_style: bool,
    pub storage_class: Option<String>,
    /// `AES256` or `aws:kms`.
    pub sse: Option<String>,
    pub sse_kms_key_id: Option<String>,
    /// Object Lock retention (days) for packs, index files and snapshots.
    pub object_lock_days: Option<u32>,
    /// `GOVERNANCE` or `COMPLIANCE`.
    pub object_lock_mode: String,
    /// Packs uploaded at once.
    pub upload_concurrency: usize,
    /// Range reads kept in flight by a tree restore.
    pub read_concurrency: usize,
    /// Parts of one multipart upload sent at once.
    pub part_concurrency: usize,
    /// Objects larger than this use multipart upload.
    pub multipart_threshold: usize,
    pub part_size: usize,
}

const MIB: usize = 1 << 20;

impl S3Options {
    /// Parse `s3://bucket[/prefix][?options]`, filling unset options from the environment.
    pub fn from_url(url: &str) -> Result<Self, String> {
        Self::parse(url, |k| std::env::var(k).ok())
    }

    pub fn parse(url: &str, env: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let rest = url.strip_prefix("s3://").ok_or_else(|| format!("{url:?} is not an s3:// address"))?;
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (bucket, prefix) = path.split_once('/').unwrap_or((path, ""));
        if bucket.is_empty() {
            return Err(format!("{url:?}: no bucket name (expected s3://bucket/prefix)"));
        }
        let endpoint = env("AWS_ENDPOINT_URL_S3").or_else(|| env("AWS_ENDPOINT_URL")).filter(|e| !e.is_empty());
        let mut o = S3Options {
            bucket: bucket.to_string(),
            prefix: prefix.trim_matches('/').to_string(),
            path_style: endpoint.is_some(),
            endpoint,
            region: env("AWS_REGION").or_else(|| env("AWS_DEFAULT_REGION")).filter(|r| !r.is_empty()),
            profile: env("AWS_PROFILE").filter(|p| !p.is_empty()),
            credentials: match (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY")) {
                (Some(access_key_id), Some(secret_access_key)) if !access_key_id.is_empty() => {
                    Some(StaticCredentials {
                        access_key_id,
                        secret_access_key,
                        session_token: env("AWS_SESSION_TOKEN").filter(|t| !t.is_empty()),
                    })
                }
                _ => None,
            },
            storage_class: None,
            sse: None,
            sse_kms_key_id: None,
            object_lock_days: None,
            object_lock_mode: "GOVERNANCE".into(),
            upload_concurrency: 4,
            read_concurrency: 16,
            part_concurrency: 4,
            multipart_threshold: 32 * MIB,
            part_size: 8 * MIB,
        };
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, "true"));
            o.set(k, v)?;
        }
        Ok(o)
    }

    fn set(&mut self, key: &str, value: &str) -> Result<(), String> {
        let num = |v: &str| v.parse::<usize>().map_err(|_| format!("option {key}: {v:?} is not a number"));
        let flag = |v: &str| match v {
            "true" | "1" | "yes" => Ok(true),
            "false" | "0" | "no" => Ok(false),
            _ => Err(format!("option {key}: {v:?} is not true or false")),
        };
        let v = Some(value.to_string());
        match key {
            "endpoint" => self.endpoint = v,
            "region" => self.region = v,
            "profile" => self.profile = v,
            "path_style" => self.path_style = flag(value)?,
            "storage_class" => self.storage_class = v,
            "sse" => self.sse = v,
            "sse_kms_key_id" => self.sse_kms_key_id = v,
            "object_lock_days" => self.object_lock_days = Some(num(value)? as u32),
            "object_lock_mode" => match value {
                "GOVERNANCE" | "COMPLIANCE" => self.object_lock_mode = value.to_string(),
                _ => return Err(format!("object_lock_mode must be GOVERNANCE or COMPLIANCE, not {value:?}")),
            },
            "concurrency" => self.upload_concurrency = num(value)?.clamp(1, 64),
            "read_concurrency" => self.read_concurrency = num(value)?.clamp(1, 64),
            "part_concurrency" => self.part_concurrency = num(value)?.clamp(1, 64),
            "multipart_threshold_mib" => self.multipart_threshold = num(value)?.max(5) * MIB,
            "part_size_mib" => self.part_size = num(value)?.max(5) * MIB,
            _ => return Err(format!("unknown S3 option {key:?}")),
        }
        Ok(())
    }

    /// The endpoint for messages: host only, never credentials.
    pub fn endpoint_display(&self) -> String {
        match &self.endpoint {
            Some(e) => e.split_once('@').map_or(e.as_str(), |(_, host)| host).to_string(),
            None => format!("AWS S3 ({})", self.region.as_deref().unwrap_or("default region")),
        }
    }
}

pub async fn client(opts: &S3Options) -> Client {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    if let Some(p) = &opts.profile {
        loader = loader.profile_name(p);
    }
    if let Some(r) = &opts.region {
        loader = loader.region(Region::new(r.clone()));
    }
    if let Some(e) = &opts.endpoint {
        loader = loader.endpoint_url(e);
    }
    if let Some(c) = &opts.credentials {
        loader = loader.credentials_provider(aws_sdk_s3::config::Credentials::new(
            &c.access_key_id,
            &c.secret_access_key,
            c.session_token.clone(),
            None,
            "drtool-environment",
        ));
    }
    let sdk = loader.load().await;
    let mut b = aws_sdk_s3::config::Builder::from(&sdk)
        .force_path_style(opts.path_style)
        .retry_config(RetryConfig::disabled())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .operation_attempt_timeout(ATTEMPT_TIMEOUT)
                .build(),
        )
        // Checksum trailers and aws-chunked bodies break several S3-compatible servers;
        // integrity is ours anyway (AEAD tags, content-hash ids).
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
    if sdk.region().is_none() {
        b = b.region(Region::new("us-east-1"));
    }
    Client::from_conf(b.build())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_addresses_and_options() {
        let env = |k: &str| match k {
            "AWS_ENDPOINT_URL" => Some("http://127.0.0.1:3900".to_string()),
            "AWS_REGION" => Some("garage".to_string()),
            _ => None,
        };
        let o = S3Options::parse("s3://bkt/some/prefix/?storage_class=STANDARD_IA&concurrency=8", env).unwrap();
        assert_eq!((o.bucket.as_str(), o.prefix.as_str()), ("bkt", "some/prefix"));
        assert_eq!(o.endpoint.as_deref(), Some("http://127.0.0.1:3900"));
        assert!(o.path_style);
        assert_eq!(o.storage_class.as_deref(), Some("STANDARD_IA"));
        assert_eq!(o.upload_concurrency, 8);
        assert!(o.credentials.is_none());
        let with_keys = S3Options::parse("s3://b", |k| match k {
            "AWS_ACCESS_KEY_ID" => Some("GKID".into()),
            "AWS_SECRET_ACCESS_KEY" => Some("topsecret".into()),
            _ => None,
        })
        .unwrap();
        assert!(!format!("{with_keys:?}").contains("topsecret"));
        let aws = S3Options::parse("s3://bkt", |_| None).unwrap();
        assert!(!aws.path_style && aws.prefix.is_empty());
        assert!(S3Options::parse("s3:///x", |_| None).is_err());
        assert!(S3Options::parse("s3://b?bogus=1", |_| None).is_err());
        assert!(S3Options::parse("s3://b?object_lock_mode=WEAK", |_| None).is_err());
        let spaces = S3Options::parse(
            "s3://b/p?endpoint=https://fra1.digitaloceanspaces.com&region=fra1&path_style=false",
            |_| None,
        )
        .unwrap();
        assert_eq!(spaces.endpoint_display(), "https://fra1.digitaloceanspaces.com");
        assert!(!spaces.path_style);
    }
}
