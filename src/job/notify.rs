//! Webhook notifications: a JSON POST to the policy's URL.
//!
//! A notification that cannot be delivered is logged, never turned into a
//! failed backup: the backup's own outcome is what the exit code reports.
//!
//! Webhook URLs carry their secret in the URL (Slack's
//! `/services/T…/B…/SECRET`, `?token=…`, `user:password@`), so the URL is
//! never shown whole: errors name it as `scheme://host:port/<redacted>`, and
//! the text of lower-level errors is scrubbed of every part of it too.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(20);
const HIDDEN: &str = "<redacted>";

/// A notification that was not delivered; `url` is already redacted.
#[derive(Debug, thiserror::Error)]
#[error("notification to {url} failed: {reason}")]
pub struct NotifyError {
    pub url: String,
    pub reason: String,
}

/// `url` as it may be shown: scheme, host and port, and `/<redacted>` in
/// place of any user, password, path, query or fragment.
pub fn redact(url: &str) -> String {
    let Ok(u) = url::Url::parse(url) else { return format!("<invalid URL> {HIDDEN}") };
    let port = u.port().map(|p| format!(":{p}")).unwrap_or_default();
    let secret_parts = !u.username().is_empty()
        || u.password().is_some()
        || u.path() != "/"
        || u.query().is_some()
        || u.fragment().is_some();
    let rest = if secret_parts { format!("/{HIDDEN}") } else { String::new() };
    format!("{}://{}{port}{rest}", u.scheme(), u.host_str().unwrap_or(""))
}

/// `text` with every piece of `url` that may be secret replaced.
fn scrub(text: &str, url: &str) -> String {
    let mut pieces: Vec<String> = vec![url.to_string()];
    if let Ok(u) = url::Url::parse(url) {
        pieces.push(u.as_str().to_string());
        pieces.push(u.path().to_string());
        pieces.extend(u.query().map(String::from));
        pieces.extend(u.fragment().map(String::from));
        pieces.extend(u.password().map(String::from));
        pieces.push(u.username().to_string());
        pieces.extend(u.path_segments().into_iter().flatten().map(String::from));
        pieces.extend(u.query_pairs().map(|(_, v)| v.into_owned()));
    }
    // Longest first, so a whole URL goes before the pieces inside it; very
    // short pieces ("/", "v1") are not secrets and would garble the message.
    pieces.retain(|p| p.len() >= 4);
    pieces.sort_by_key(|p| std::cmp::Reverse(p.len()));
    let mut out = text.to_string();
    for p in &pieces {
        out = out.replace(p.as_str(), HIDDEN);
    }
    out
}

/// The error and its sources, as one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(s) = next {
        out.push_str(": ");
        out.push_str(&s.to_string());
        next = s.source();
    }
    out
}

/// POST `body` to `url`; Ok when the server answered 2xx.
pub async fn post_json(url: &str, body: &serde_json::Value) -> Result<(), NotifyError> {
    post(url, body).await.map_err(|reason| NotifyError { url: redact(url), reason: scrub(&reason, url) })
}

async fn post(url: &str, body: &serde_json::Value) -> Result<(), String> {
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_native_roots(rustls::crypto::aws_lc_rs::default_provider())
        .map_err(|e| format!("no TLS root certificates: {e}"))?
        .https_or_http()
        .enable_http1()
        .build();
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build(connector);
    let payload = serde_json::to_vec(body).map_err(|e| e.to_string())?;
    let req = hyper::Request::post(url)
        .header("content-type", "application/json")
        .header("user-agent", concat!("drtool/", env!("CARGO_PKG_VERSION")))
        .body(Full::new(Bytes::from(payload)))
        .map_err(|e| format!("invalid webhook request: {e}"))?;
    let resp = tokio::time::timeout(TIMEOUT, client.request(req))
        .await
        .map_err(|_| format!("no answer within {} s", TIMEOUT.as_secs()))?
        .map_err(|e| chain(&e))?;
    let status = resp.status();
    // Drain the body so the connection closes cleanly.
    let _ = tokio::time::timeout(TIMEOUT, resp.into_body().collect()).await;
    if status.is_success() { Ok(()) } else { Err(format!("the webhook answered {status}")) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_keeps_only_scheme_host_and_port() {
        assert_eq!(redact("https://hooks.slack.com/services/T0/B0/SECRET"), "https://hooks.slack.com/<redacted>");
        assert_eq!(redact("http://u:pw@127.0.0.1:8080/?token=abc"), "http://127.0.0.1:8080/<redacted>");
        assert_eq!(redact("https://example.com"), "https://example.com");
        assert!(!redact("not a url SECRET").contains("SECRET"));
    }

    #[test]
    fn scrubbing_removes_every_secret_piece() {
        let url = "https://user:hunter22@h.example/services/T0/B0/SECRETTOKEN?token=QUERYSECRET#frag";
        let text = format!("error trying to connect to {url}: path /services/T0/B0/SECRETTOKEN, QUERYSECRET, hunter22");
        let out = scrub(&text, url);
        for secret in ["SECRETTOKEN", "QUERYSECRET", "hunter22"] {
            assert!(!out.contains(secret), "{out}");
        }
        assert!(out.starts_with("error trying to connect to"), "{out}");
    }
}
