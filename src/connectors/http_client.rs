//! What the HTTP-based connectors (`rest`, `soap`) share: one way to build a pooled client,
//! to turn configured headers into sensitive header values, to read an answer without ever
//! holding more than a cap in memory, and to sort transport errors.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use super::CallError;
use crate::config::Secret;

/// The largest backend answer read into memory; a legacy system's runaway reply must not
/// exhaust the gateway.
pub(crate) const MAX_RESPONSE_BYTES: usize = 8 * 1024 * 1024;

/// Configured static headers as values marked sensitive (kept out of debug output). A header
/// that cannot be sent is reported by name through `problem`; its value is never shown.
pub(crate) fn static_headers(
    configured: &BTreeMap<String, Secret>,
    mut problem: impl FnMut(String),
) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in configured {
        match (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value.expose()),
        ) {
            (Ok(name), Ok(mut value)) => {
                value.set_sensitive(true);
                headers.insert(name, value);
            }
            _ => problem(format!(
                "header `{name}` has an invalid name or value (the value is not shown)"
            )),
        }
    }
    headers
}

/// A keep-alive client for one backend: no redirects (a backend must not send the gateway
/// elsewhere with its credentials), connect bounded by the call deadline.
pub(crate) fn build_client(
    headers: HeaderMap,
    pool_max_idle: usize,
    timeout: Duration,
) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .default_headers(headers)
        .pool_max_idle_per_host(pool_max_idle)
        .pool_idle_timeout(Duration::from_secs(90))
        .tcp_nodelay(true)
        .connect_timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
}

/// Reads a body up to `limit` bytes, refusing a larger one as soon as it is announced or
/// crosses the limit on the stream.
pub(crate) async fn read_limited(
    mut response: reqwest::Response,
    timeout: Duration,
    limit: usize,
) -> Result<Vec<u8>, CallError> {
    let too_large = || CallError::BadResponse {
        reason: format!("the answer is larger than {limit} bytes"),
    };
    if response
        .content_length()
        .is_some_and(|len| len > limit as u64)
    {
        return Err(too_large());
    }
    let announced = response.content_length().unwrap_or(0).min(limit as u64) as usize;
    let mut body = Vec::with_capacity(announced);
    while let Some(chunk) = response.chunk().await.map_err(|e| classify(e, timeout))? {
        if body.len() + chunk.len() > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Sorts a transport error into a failure kind, once, at the edge. The URL is dropped from
/// the error because URLs carry agency keys (a TIN is personal data) and errors get logged.
pub(crate) fn classify(error: reqwest::Error, timeout: Duration) -> CallError {
    if error.is_timeout() {
        CallError::Timeout {
            timeout_ms: timeout.as_millis() as u64,
        }
    } else {
        CallError::Unreachable(Box::new(error.without_url()))
    }
}
