//! The HTTP surface: `/graphql` (POST, GET, WebSocket), GraphiQL, `/healthz`, `/readyz`,
//! `/metrics`, and `/events/{connector}` for backends' signed change notifications.
//!
//! `app(state)` builds the whole router so tests can drive it with `oneshot` and the server
//! can wrap it with its listener; request ids and tracing are layered here, once.

mod events;
mod graphql;
mod health;
mod observe;
pub mod playground;
mod ws;

use std::sync::Arc;

use axum::Router;
use axum::http::HeaderName;
use axum::routing::get;
use tower::ServiceBuilder;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::auth::TokenValidator;
use crate::config::{AuthConfig, ServerConfig};
use crate::graph::{DocumentCache, Graph};
use crate::store::Store;

/// The header that carries a request's id in and out (kept when a client sends one).
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// What every handler can reach. Cheap to clone: everything is behind one `Arc`.
#[derive(Debug, Clone)]
pub struct AppState(Arc<Shared>);

/// The shared parts of [`AppState`].
#[derive(Debug)]
pub struct Shared {
    /// The executable graph.
    pub graph: Graph,
    /// The gateway's store, pinged by `/readyz`.
    pub store: Store,
    /// HTTP settings.
    pub server: ServerConfig,
    /// How callers are identified.
    pub auth: AuthConfig,
    /// Verifies bearer tokens against `[[auth.issuers]]`.
    pub tokens: TokenValidator,
    /// Parsed queries, reused across requests.
    pub documents: DocumentCache,
    /// Life events, for inbound webhooks (`None` when `[events] enabled = false`).
    pub events: Option<crate::events::EventServices>,
    pub(crate) graphiql: String,
}

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl AppState {
    /// Bundles the parts the handlers need; GraphiQL's page is rendered once here.
    pub fn new(
        graph: Graph,
        store: Store,
        server: ServerConfig,
        auth: AuthConfig,
        tokens: TokenValidator,
    ) -> Self {
        let graphiql = async_graphql::http::GraphiQLSource::build()
            .endpoint("/graphql")
            .subscription_endpoint("/graphql")
            .title("CivicGraph")
            .finish();
        let documents = DocumentCache::new(server.document_cache_mb.saturating_mul(1024 * 1024));
        Self(Arc::new(Shared {
            graph,
            store,
            documents,
            server,
            auth,
            tokens,
            graphiql,
            events: None,
        }))
    }
}

impl AppState {
    /// Accepts inbound webhooks on `POST /events/{connector}` for these life events. Only
    /// before the state is shared, like [`AppState::with_playground`].
    pub fn with_events(mut self, events: crate::events::EventServices) -> Self {
        match Arc::get_mut(&mut self.0) {
            Some(shared) => shared.events = Some(events),
            None => tracing::warn!("Life events were set after the gateway started; ignored."),
        }
        self
    }

    /// Serves GraphiQL with these persona tabs instead of the stock page. Only before the
    /// state is shared (right after it is built); later calls are ignored with a warning.
    pub fn with_playground(mut self, tabs: &[playground::PlaygroundTab]) -> Self {
        match Arc::get_mut(&mut self.0) {
            Some(shared) => shared.graphiql = playground::page("/graphql", tabs),
            None => tracing::warn!("GraphiQL tabs were set after the gateway started; ignored."),
        }
        self
    }
}

/// The gateway's router with every layer applied.
pub fn app(state: AppState) -> Router {
    let request_id = HeaderName::from_static(REQUEST_ID_HEADER);
    let layers = ServiceBuilder::new()
        .layer(SetRequestIdLayer::new(request_id.clone(), MakeRequestUuid))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(crate::telemetry::request_span)
                .on_response(crate::telemetry::record_status),
        )
        .layer(PropagateRequestIdLayer::new(request_id));
    Router::new()
        .route("/", get(health::graphiql))
        .route(
            "/graphql",
            get(ws::get)
                .post(graphql::post)
                .layer(axum::middleware::from_fn_with_state(
                    state.clone(),
                    observe::graphql,
                )),
        )
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .route("/events/{connector}", axum::routing::post(events::receive))
        .with_state(state)
        .layer(layers)
}
