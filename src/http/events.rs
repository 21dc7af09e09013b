//! `POST /events/{connector}`: signed change notifications from backends (see
//! [`crate::events::inbound`]). Answers are JSON; errors carry a stable `code`.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, Limited};
use serde_json::json;

use super::AppState;
use crate::error::ErrorCode;
use crate::events::inbound::{InboundError, accept};

fn refused(code: ErrorCode, message: String) -> Response {
    (
        code.http_status(),
        axum::Json(json!({"error": {"code": code.as_str(), "message": message}})),
    )
        .into_response()
}

/// Verifies, records and acknowledges one inbound webhook.
pub(crate) async fn receive(
    State(state): State<AppState>,
    Path(connector): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Some(events) = &state.events else {
        return refused(
            ErrorCode::NotFound,
            "Life events are not enabled on this gateway.".into(),
        );
    };
    let limit = state.server.max_body_bytes;
    let body = match Limited::new(body, limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            return refused(
                ErrorCode::PayloadTooLarge,
                format!("The body is larger than {limit} bytes."),
            );
        }
    };
    let now = chrono::Utc::now().timestamp();
    match accept(&events.detector, &connector, &headers, &body, now).await {
        Ok(answer) => (StatusCode::OK, axum::Json(answer)).into_response(),
        Err(error) => {
            let code = error.code();
            match &error {
                InboundError::Record(inner) => {
                    tracing::error!(error = %inner, "An inbound webhook could not be recorded.");
                }
                other => {
                    tracing::warn!(error = %other, "An inbound webhook was refused.");
                }
            }
            let message = match &error {
                InboundError::Record(_) => {
                    "The change could not be recorded; send it again.".to_string()
                }
                other => crate::error::capitalised(&other.to_string()) + ".",
            };
            refused(code, message)
        }
    }
}
