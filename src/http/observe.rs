//! Request metrics for `/graphql`: a middleware times each request and counts it by operation
//! name, status and error code; the handler tells it, through a task-local slot, which
//! operation ran and which code its first error had (both are only known inside the handler).

use std::cell::RefCell;

use async_graphql::ServerError;
use async_graphql::parser::types::{DocumentOperations, ExecutableDocument};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use tokio::time::Instant;

use super::AppState;

/// What the handler learnt about the request.
#[derive(Debug, Default)]
struct Observed {
    operation: Option<String>,
    code: Option<String>,
}

tokio::task_local! {
    static OBSERVED: RefCell<Observed>;
}

/// Wraps the `/graphql` route: in-flight gauge, latency histogram and request counter.
pub(crate) async fn graphql(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let metrics = std::sync::Arc::clone(state.graph.shields().metrics());
    metrics.request_in_flight_add(1);
    // Leaves the gauge however the request ends, including a client that hung up.
    struct Leave<'a>(&'a crate::metrics::Metrics);
    impl Drop for Leave<'_> {
        fn drop(&mut self) {
            self.0.request_in_flight_add(-1);
        }
    }
    let _leave = Leave(&metrics);
    let started = Instant::now();
    let (response, observed) = OBSERVED
        .scope(RefCell::new(Observed::default()), async {
            let response = next.run(request).await;
            let observed = OBSERVED.with(|slot| std::mem::take(&mut *slot.borrow_mut()));
            (response, observed)
        })
        .await;
    let operation = metrics.operation_label(observed.operation.as_deref());
    metrics.request(
        &operation,
        response.status().as_u16(),
        observed.code.as_deref(),
        started.elapsed().as_secs_f64(),
    );
    response
}

/// The handler parsed `document`; `requested` is the request's `operationName`. Outside the
/// middleware (WebSocket, tests) this does nothing.
pub(crate) fn operation(document: &ExecutableDocument, requested: Option<&str>) {
    let name = match (&document.operations, requested) {
        (_, Some(name)) => Some(name.to_string()),
        (DocumentOperations::Multiple(ops), None) if ops.len() == 1 => {
            ops.keys().next().map(|name| name.to_string())
        }
        _ => None,
    };
    let _ = OBSERVED.try_with(|slot| slot.borrow_mut().operation = name);
}

/// The handler answers with `errors`: the first one's `extensions.code` labels the request.
pub(crate) fn response_errors(errors: &[ServerError]) {
    let code = errors.iter().find_map(|error| {
        match error.extensions.as_ref().and_then(|e| e.get("code")) {
            Some(async_graphql::Value::String(code)) => Some(code.clone()),
            _ => None,
        }
    });
    let _ = OBSERVED.try_with(|slot| slot.borrow_mut().code = code);
}
