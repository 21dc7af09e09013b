//! `civicgraph.toml`: how the gateway itself runs (listener, storage, where the graph lives).

use std::net::SocketAddr;

use serde::Deserialize;

/// The gateway's own settings. Every section has safe defaults, so an empty file is valid.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GatewayConfig {
    /// The HTTP listener and request handling.
    pub server: ServerConfig,
    /// The gateway's own database (consent, audit, identity, outbox in later versions).
    pub storage: StorageConfig,
    /// Where the SDL and the connector files are, relative to `civicgraph.toml`.
    pub paths: PathsConfig,
    /// How callers are identified.
    pub auth: AuthConfig,
}

/// How callers are identified.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Trust `X-Demo-Citizen` / `X-Demo-Operator` headers. Anyone can send them, so this is
    /// for `civicgraph demo` and tests only; off by default.
    pub demo_headers: bool,
}

/// The HTTP side of the gateway.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to listen on; loopback by default so nothing is exposed by accident.
    pub listen: SocketAddr,
    /// Largest accepted request body, checked on the stream as it arrives.
    pub max_body_bytes: usize,
    /// Serve the GraphiQL playground to browsers on `GET /graphql` and `/`.
    pub graphiql: bool,
    /// Answer introspection queries (GraphiQL's docs need it; production may turn it off).
    pub introspection: bool,
    /// How long in-flight requests may take to finish after SIGINT/SIGTERM.
    pub shutdown_grace_ms: u64,
    /// Deepest selection set a query may have.
    pub max_depth: usize,
    /// Memory for parsed queries kept between requests (0 turns the cache off).
    pub document_cache_mb: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 4000)),
            max_body_bytes: 1024 * 1024,
            graphiql: true,
            introspection: true,
            shutdown_grace_ms: 10_000,
            max_depth: 32,
            document_cache_mb: 32,
        }
    }
}

/// The gateway's store.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// `sqlite://path/to/file.db`, `sqlite::memory:` or `postgres://…`.
    pub url: String,
    /// Connections in the store's pool.
    pub max_connections: u32,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            url: "sqlite://civicgraph.db?mode=rwc".to_string(),
            max_connections: 8,
        }
    }
}

/// Directories holding the graph, so one checkout can carry several gateways.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PathsConfig {
    /// Directory of `*.graphql` files.
    pub schema: String,
    /// Directory of `*.toml` connector files.
    pub connectors: String,
}

impl Default for PathsConfig {
    fn default() -> Self {
        Self {
            schema: "schema".to_string(),
            connectors: "connectors".to_string(),
        }
    }
}
