//! The HTTP surface: `/graphql` (POST, GET, WebSocket), GraphiQL (and its files on
//! `/graphiql/{file}` when the gateway serves them), `/healthz`, `/readyz`,
//! `/metrics`, and `/events/{connector}` for backends' signed change notifications.
//!
//! `app(state)` builds the whole router so tests can drive it with `oneshot` and the server
//! can wrap it with its listener; request ids, tracing, CORS and the security headers are
//! layered here, once. The listener (`listener`) holds the connection limits; the CSRF rule
//! (`csrf`) runs in the `/graphql` handlers, where GraphiQL's page can be told from a query.

mod csrf;
mod edge;
mod events;
mod graphql;
mod health;
pub mod listener;
mod observe;
pub mod persisted;
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
    /// APQ registrations and the safelist manifests (`[persisted]`).
    pub persisted: Arc<persisted::PersistedOperations>,
    /// Per-caller limits and load shedding (`[quotas]`).
    pub quotas: crate::quota::Quotas,
    /// The HTTP edge: CSRF, CORS, security headers (`[http]`).
    pub edge: crate::config::HttpEdgeConfig,
    pub(crate) graphiql: String,
    /// GraphiQL's files when the gateway serves them (`[server] graphiql_assets_dir`).
    pub(crate) graphiql_assets: Option<playground::GraphiqlAssets>,
    /// The persona tabs GraphiQL opens with, kept so the page can be rendered again.
    playground_tabs: Vec<playground::PlaygroundTab>,
}

impl Shared {
    /// Renders GraphiQL's page from the tabs and where its files come from.
    fn render_graphiql(&mut self) {
        let source = match self.graphiql_assets {
            Some(_) => playground::AssetSource::Gateway,
            None => playground::AssetSource::Cdn,
        };
        self.graphiql = playground::page("/graphql", &self.playground_tabs, source);
    }
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
        let graphiql = playground::page("/graphql", &[], playground::AssetSource::Cdn);
        let limits = &graph.request_limits().limits;
        let documents = DocumentCache::new(server.document_cache_mb.saturating_mul(1024 * 1024))
            .with_limits(crate::graph::LexLimits {
                max_tokens: limits.max_tokens,
                max_nesting: limits.max_nesting,
            });
        let quotas = crate::quota::Quotas::new(
            &crate::config::QuotasConfig::default(),
            Arc::clone(graph.shields().metrics()),
        );
        Self(Arc::new(Shared {
            persisted: Arc::default(),
            quotas,
            graph,
            store,
            documents,
            server,
            auth,
            tokens,
            graphiql,
            graphiql_assets: None,
            playground_tabs: Vec::new(),
            events: None,
            edge: crate::config::HttpEdgeConfig::default(),
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

    /// Resolves persisted operations and applies `[quotas]` as configured (the defaults
    /// otherwise). Only before the state is shared, like [`AppState::with_events`].
    pub fn with_limits(
        mut self,
        persisted: Arc<persisted::PersistedOperations>,
        quotas: &crate::config::QuotasConfig,
    ) -> Self {
        match Arc::get_mut(&mut self.0) {
            Some(shared) => {
                shared.quotas =
                    crate::quota::Quotas::new(quotas, Arc::clone(shared.graph.shields().metrics()));
                shared.persisted = persisted;
            }
            None => tracing::warn!("Limits were set after the gateway started; ignored."),
        }
        self
    }

    /// Applies `[http]` (CSRF, CORS, security headers). Only before the state is shared, like
    /// [`AppState::with_playground`]; until then the safe defaults apply.
    pub fn with_edge(mut self, edge: crate::config::HttpEdgeConfig) -> Self {
        match Arc::get_mut(&mut self.0) {
            Some(shared) => shared.edge = edge,
            None => tracing::warn!("[http] settings were set after the gateway started; ignored."),
        }
        self
    }

    /// Serves GraphiQL with these persona tabs instead of the stock page. Only before the
    /// state is shared (right after it is built); later calls are ignored with a warning.
    pub fn with_playground(mut self, tabs: &[playground::PlaygroundTab]) -> Self {
        match Arc::get_mut(&mut self.0) {
            Some(shared) => {
                shared.playground_tabs = tabs.to_vec();
                shared.render_graphiql();
            }
            None => tracing::warn!("GraphiQL tabs were set after the gateway started; ignored."),
        }
        self
    }

    /// Serves GraphiQL's files from the gateway (on `/graphiql/{file}`) and points the page
    /// at them, so the playground works without a CDN. Only before the state is shared.
    pub fn with_graphiql_assets(mut self, assets: playground::GraphiqlAssets) -> Self {
        match Arc::get_mut(&mut self.0) {
            Some(shared) => {
                shared.graphiql_assets = Some(assets);
                shared.render_graphiql();
            }
            None => tracing::warn!("GraphiQL files were set after the gateway started; ignored."),
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
    let edge = state.edge.clone();
    let router = Router::new()
        .route("/", get(health::graphiql))
        .route("/graphiql/{file}", get(playground::asset))
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
        .layer(layers);
    edge::apply(router, &edge)
}
