//! Liveness, readiness, metrics and the playground at `/`.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde_json::json;

use super::AppState;

/// `/healthz`: the process is alive and serving HTTP.
pub(crate) async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// `/readyz`: the graph is loaded and the store answers within a second.
pub(crate) async fn readyz(State(state): State<AppState>) -> Response {
    let store = tokio::time::timeout(Duration::from_secs(1), state.store.ping()).await;
    match store {
        Ok(Ok(())) => {
            Json(json!({"status": "ready", "graph": "loaded", "store": "ok"})).into_response()
        }
        Ok(Err(error)) => {
            tracing::warn!(%error, "Store is not reachable.");
            not_ready("unreachable")
        }
        Err(_) => {
            tracing::warn!("Store did not answer within 1 s.");
            not_ready("timeout")
        }
    }
}

fn not_ready(store: &str) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({"status": "not ready", "graph": "loaded", "store": store})),
    )
        .into_response()
}

/// `/metrics`: the shields' counters, gauges and histograms in Prometheus text format (cache
/// hits, coalesced calls, calls in flight and queued per backend, breaker states, backend
/// latency, errors by code). Names and codes only; never personal data.
pub(crate) async fn metrics(State(state): State<AppState>) -> Response {
    let body = state.graph.shields().metrics().render();
    (
        [(
            axum::http::header::CONTENT_TYPE,
            crate::metrics::content_type(),
        )],
        body,
    )
        .into_response()
}

/// `/`: the playground, or a pointer to `/graphql` when GraphiQL is off.
pub(crate) async fn graphiql(State(state): State<AppState>) -> Response {
    if state.server.graphiql {
        super::edge::graphiql_page(&state.graphiql)
    } else {
        Redirect::temporary("/graphql").into_response()
    }
}
