//! `POST /events/{connector}`: a backend tells the gateway about changes as they happen.
//!
//! The request must carry a Standard Webhooks signature made with the source's secret, and a
//! timestamp within the tolerance; anything else is refused with 400 and nothing is recorded.
//! The `webhook-id` is stored with the events in one transaction, so a sender's retry of a
//! request that was recorded records nothing new (and is answered 200, so it stops retrying).

use http::HeaderMap;
use serde_json::{Value, json};

use super::detect::{DetectError, Detector};
use super::outbox::{Mark, Recorded};
use super::rules::{MAX_CHANGES_PER_CALL, SourceKind};
use super::signature::{ID_HEADER, SIGNATURE_HEADER, SignatureError, TIMESTAMP_HEADER};
use crate::error::ErrorCode;

/// The most characters of a `webhook-id` kept (ids are short; a long one is an attack).
const MAX_ID_LEN: usize = 128;

/// Why an inbound webhook was refused.
#[derive(Debug, thiserror::Error)]
pub enum InboundError {
    /// No inbound source is configured for this connector.
    #[error("no source accepts webhooks from `{0}`")]
    UnknownConnector(String),
    /// The source's secret is not configured, so no request can be verified.
    #[error("webhooks from `{0}` are not accepted: its source has no secret configured")]
    NoSecret(String),
    /// The signature headers did not verify.
    #[error("the webhook was refused: {0}")]
    Signature(#[from] SignatureError),
    /// `webhook-id` is empty or too long.
    #[error("`webhook-id` must be 1 to {MAX_ID_LEN} visible ASCII characters")]
    BadId,
    /// The body is not a JSON object or a list of objects.
    #[error("the body must be one change (a JSON object) or a list of them")]
    BadBody,
    /// More changes than one request may carry.
    #[error("at most {MAX_CHANGES_PER_CALL} changes per request")]
    TooMany,
    /// The outbox failed; the sender should retry.
    #[error("the change could not be recorded: {0}")]
    Record(#[from] DetectError),
}

impl InboundError {
    /// The stable code (and so the HTTP status) the sender sees.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::UnknownConnector(_) | Self::NoSecret(_) => ErrorCode::NotFound,
            Self::Signature(_) => ErrorCode::SignatureInvalid,
            Self::BadId | Self::BadBody | Self::TooMany => ErrorCode::BadRequest,
            Self::Record(_) => ErrorCode::EventsUnavailable,
        }
    }
}

/// Verifies and records one inbound webhook; the JSON answer says how many events it made and
/// whether the id was seen before.
pub async fn accept(
    detector: &Detector,
    connector: &str,
    headers: &HeaderMap,
    body: &[u8],
    now: i64,
) -> Result<Value, InboundError> {
    let source = detector
        .rules()
        .inbound(connector)
        .ok_or_else(|| InboundError::UnknownConnector(connector.chars().take(64).collect()))?;
    let SourceKind::Inbound {
        secret,
        tolerance_s,
    } = &source.kind
    else {
        return Err(InboundError::UnknownConnector(connector.to_string()));
    };
    let Some(secret) = secret else {
        return Err(InboundError::NoSecret(connector.to_string()));
    };
    let header = |name: &'static str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .ok_or(SignatureError::MissingHeader(name))
    };
    let id = header(ID_HEADER)?;
    let timestamp = header(TIMESTAMP_HEADER)?;
    let signatures = header(SIGNATURE_HEADER)?;
    if id.is_empty() || id.len() > MAX_ID_LEN || !id.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(InboundError::BadId);
    }
    // The signature is checked before the body is parsed: nothing unauthenticated is read.
    secret.verify(id, timestamp, signatures, body, now, *tolerance_s)?;
    let changes = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Array(items)) if items.iter().all(Value::is_object) => items,
        Ok(object @ Value::Object(_)) => vec![object],
        _ => return Err(InboundError::BadBody),
    };
    if changes.len() > MAX_CHANGES_PER_CALL {
        return Err(InboundError::TooMany);
    }
    let name = source.name.clone();
    match detector
        .record(&name, Mark::Inbound { webhook_id: id }, &changes)
        .await?
    {
        Recorded::Events(events) => Ok(json!({
            "accepted": changes.len(),
            "events": events.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
            "duplicate": false,
        })),
        Recorded::Replayed | Recorded::LeaseLost => Ok(json!({
            "accepted": 0,
            "events": [],
            "duplicate": true,
        })),
    }
}
