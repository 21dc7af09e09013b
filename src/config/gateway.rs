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
    /// Purposes, data categories, agencies and the signing key (`[trust]`).
    pub trust: super::trust::TrustConfig,
    /// The audit trail's checkpoints and write timeout (`[audit]`).
    pub audit: super::trust::AuditConfig,
    /// The shield around every backend (`[shield]`); per-backend limits live in connector files.
    pub shield: ShieldSettings,
    /// The cache tier shared by every instance (`[cache]`).
    pub cache: CacheTierConfig,
    /// Life events: detection, the outbox and delivery (`[events]`).
    pub events: EventsConfig,
    /// Persisted operations: APQ and the safelist (`[persisted]`).
    pub persisted: super::persisted::PersistedConfig,
    /// Request rates, cost budgets, the distinct-citizen cap and load shedding (`[quotas]`).
    pub quotas: super::quotas::QuotasConfig,
    /// How large and how expensive one request may be (`[limits]`).
    pub limits: super::limits::LimitsConfig,
    /// The HTTP edge: CSRF, CORS, security headers, header limits and timeouts (`[http]`).
    pub http: super::http_edge::HttpEdgeConfig,
    /// Log format and OpenTelemetry traces (`[telemetry]`).
    pub telemetry: super::telemetry::TelemetryConfig,
    /// Hot reload: file watching and its debounce (`[reload]`).
    pub reload: super::reload::ReloadConfig,
}

/// `[events]`: how life events are detected and delivered. The rules themselves are in
/// `schema/life-events.toml`, beside the graph they refer to.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EventsConfig {
    /// Off stops every poller and delivery worker (the outbox keeps what is in it).
    pub enabled: bool,
    /// `nats://…`: publish every event to JetStream too; empty publishes none. It may hold a
    /// password, so it is never logged.
    pub nats_url: Option<super::Secret>,
    /// The JetStream stream, created when missing.
    pub nats_stream: String,
    /// Subjects are `{subject_prefix}.{EventType}`.
    pub subject_prefix: String,
    /// The longest one webhook attempt may take, answer included.
    pub delivery_timeout_ms: u64,
    /// Seconds to wait before each retry; after the last, the delivery is dead-lettered.
    /// Each wait is jittered by ±20 % so receivers that failed together do not retry together.
    pub retry_schedule_s: Vec<u64>,
    /// How long a worker holds a claimed delivery; a crashed worker's claims are taken again
    /// after this. Raised to `delivery_timeout_ms` + 2 s when shorter, so a claim never runs
    /// out while its attempt is under way (another worker would send the event again).
    pub lease_s: u64,
    /// Deliveries in flight to one subscriber at once, so a slow receiver cannot take every
    /// worker slot from the others.
    pub max_in_flight_per_subscriber: usize,
    /// Allow webhook endpoints on loopback and private networks. Off in production: a
    /// subscriber could otherwise make the gateway call internal services (SSRF).
    pub allow_private_endpoints: bool,
    /// How often the subscription feed reads new events from the outbox.
    pub feed_poll_ms: u64,
    /// How often an idle delivery worker looks for due deliveries.
    pub dispatch_poll_ms: u64,
}

impl Default for EventsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            nats_url: None,
            nats_stream: "CIVICGRAPH_EVENTS".to_string(),
            subject_prefix: "civicgraph.events".to_string(),
            delivery_timeout_ms: 10_000,
            // Standard Webhooks' schedule stretched to about 75 hours.
            retry_schedule_s: vec![5, 300, 1800, 7200, 18_000, 36_000, 36_000, 86_400, 86_400],
            lease_s: 60,
            max_in_flight_per_subscriber: 8,
            allow_private_endpoints: false,
            feed_poll_ms: 200,
            dispatch_poll_ms: 200,
        }
    }
}

/// `[shield]`: gateway-wide shield settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShieldSettings {
    /// Turning this off sends every call straight to its backend: no cache, coalescing,
    /// limits, breaker or retries. Only for measuring what the shield buys (the surge
    /// benchmark); never in production.
    pub enabled: bool,
}

impl Default for ShieldSettings {
    fn default() -> Self {
        Self { enabled: true }
    }
}

/// `[cache]`: the optional Redis tier behind every connector's in-memory cache.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheTierConfig {
    /// `redis://…`; empty or absent keeps caches in memory only. It may hold a password, so
    /// it is never logged.
    pub redis_url: Option<super::Secret>,
    /// A secret shared by every instance that signs each entry (HMAC-SHA256), so an entry
    /// written by anything else is never served; without one, entries carry a checksum only.
    pub redis_secret: Option<super::Secret>,
    /// The longest a Redis command may take before it counts as a miss.
    pub redis_timeout_ms: u64,
}

impl Default for CacheTierConfig {
    fn default() -> Self {
        Self {
            redis_url: None,
            redis_secret: None,
            redis_timeout_ms: 50,
        }
    }
}

/// How callers are identified.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Trust `X-Demo-Citizen` / `X-Demo-Operator` headers. Anyone can send them, so this is
    /// for `civicgraph demo` and tests only; off by default.
    pub demo_headers: bool,
    /// Token issuers whose signed bearer tokens are accepted (`[[auth.issuers]]`). None by
    /// default, so a bearer token is refused until an operator names whom to trust.
    pub issuers: Vec<IssuerConfig>,
    /// The request header in which the TLS-terminating proxy in front of the gateway passes
    /// the client certificate (URL-encoded PEM, e.g. nginx's `$ssl_client_escaped_cert`).
    /// Tokens bound to a certificate (`cnf.x5t#S256`) are accepted only with that certificate;
    /// without this setting they are refused. Set it only when every request comes through
    /// that proxy, which must overwrite the header.
    pub client_cert_header: Option<String>,
}

/// One trusted token issuer. Each token is checked against exactly one of these, picked by its
/// `iss`, so one issuer's keys can never vouch for another issuer's tokens.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerConfig {
    /// A short name for logs.
    pub name: String,
    /// Must equal the token's `iss`.
    pub issuer: String,
    /// Must be one of the token's `aud`, so tokens minted for other APIs are refused.
    pub audience: String,
    /// What a valid token from this issuer makes its caller.
    pub role: IssuerRole,
    /// Where the verification keys are; spanned so a bad key file is reported at its line.
    pub keys: toml::Spanned<KeysConfig>,
    /// Clock skew allowed on `exp`/`nbf`, in seconds (at most 30, default 30).
    #[serde(default)]
    pub leeway_s: Option<toml::Spanned<u64>>,
    /// Required JOSE `typ` header (RFC 9068 access tokens); `""` turns the check off.
    #[serde(default = "default_typ")]
    pub require_typ: String,
    /// A disabled issuer is ignored, so one configuration can carry the local development
    /// issuer and switch it on only where it belongs (`civicgraph demo`).
    #[serde(default = "default_enabled")]
    pub enabled: bool,
}

fn default_enabled() -> bool {
    true
}

fn default_typ() -> String {
    "at+jwt".to_string()
}

/// What kind of caller an issuer's tokens stand for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IssuerRole {
    /// Citizens; `sub` is their citizen id.
    Citizen,
    /// Agency clients, with scopes and purposes.
    Agency,
    /// Gateway operators; `sub` is their name.
    Operator,
    /// The token's own `role` claim decides (one of the three above).
    Claim,
}

/// Exactly one source of verification keys.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeysConfig {
    /// A PEM public key file, relative to `civicgraph.toml`; needs `algorithm`.
    pub pem: Option<String>,
    /// The algorithm a `pem` key verifies (`RS256`, `ES256`, …); a PEM does not say.
    pub algorithm: Option<String>,
    /// A JWKS file, relative to `civicgraph.toml`.
    pub jwks_file: Option<String>,
    /// A JWKS URL, fetched and cached.
    pub jwks_url: Option<String>,
    /// The local development key: an Ed25519 private key file (relative to
    /// `civicgraph.toml`, made on first use) whose public half verifies this issuer's tokens
    /// and which `civicgraph token` signs with. For development only.
    pub dev_key: Option<String>,
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
    /// A directory (relative to `civicgraph.toml`) holding GraphiQL's four browser files, served
    /// by the gateway itself so the playground works without reaching a CDN; unset or empty:
    /// the page loads them from unpkg.com.
    pub graphiql_assets_dir: Option<toml::Spanned<String>>,
    /// Answer introspection queries (GraphiQL's docs need it; production may turn it off).
    pub introspection: bool,
    /// How long in-flight requests may take to finish after SIGINT/SIGTERM.
    pub shutdown_grace_ms: u64,
    /// Deepest selection set a query may have.
    pub max_depth: usize,
    /// Memory for parsed queries kept between requests (0 turns the cache off).
    pub document_cache_mb: u64,
    /// `production` turns GraphiQL, introspection and field suggestions off.
    pub profile: super::limits::Profile,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 4000)),
            max_body_bytes: 1024 * 1024,
            graphiql: true,
            graphiql_assets_dir: None,
            introspection: true,
            shutdown_grace_ms: 10_000,
            max_depth: 32,
            document_cache_mb: 32,
            profile: super::limits::Profile::default(),
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
