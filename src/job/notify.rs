//! Webhook notifications: a JSON POST to the policy's URL.
//!
//! A notification that cannot be delivered is logged, never turned into a
//! failed backup: the backup's own outcome is what the exit code reports.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(20);

/// POST `body` to `url`; Ok when the server answered 2xx.
pub async fn post_json(url: &str, body: &serde_json::Value) -> Result<(), String> {
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
        .map_err(|e| format!("{e}"))?;
    let status = resp.status();
    // Drain the body so the connection closes cleanly.
    let _ = tokio::time::timeout(TIMEOUT, resp.into_body().collect()).await;
    if status.is_success() { Ok(()) } else { Err(format!("the webhook answered {status}")) }
}
