//! `connectors/*.toml`: how each backend system is reached.
//!
//! A connector file is read in two steps: first only its `kind`, then the whole file as that
//! kind's struct. Internally tagged serde enums lose spans and ignore `deny_unknown_fields`, so
//! this keeps every error pointing at its line and every misspelt key an error.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use toml::Spanned;

use super::mainframe::MainframeConfig;
use super::soap::SoapConfig;
use super::sql::SqlConfig;
use crate::identity::KeyKind;

/// The kinds of backend this gateway speaks to; the exhaustive `match` on it is the registry.
#[derive(Debug, Clone)]
pub enum ConnectorConfig {
    /// JSON over HTTP.
    Rest(RestConfig),
    /// XML envelopes over HTTP.
    Soap(SoapConfig),
    /// A relational database.
    Sql(SqlConfig),
    /// COBOL records in EBCDIC, online over TCP or from extract files.
    Mainframe(Box<MainframeConfig>),
}

impl ConnectorConfig {
    /// The connector's name as the SDL refers to it.
    pub fn name(&self) -> &Spanned<String> {
        match self {
            Self::Rest(rest) => &rest.name,
            Self::Soap(soap) => &soap.name,
            Self::Sql(sql) => &sql.name,
            Self::Mainframe(mainframe) => &mainframe.name,
        }
    }

    /// How the gateway shields this backend: the shield keys of the file, with the
    /// connector's own deadline (a mainframe's `[online] timeout_ms`; extracts are local).
    pub fn shield(&self) -> super::ShieldConfig {
        macro_rules! keys {
            ($config:expr) => {
                super::ShieldKeys {
                    max_concurrency: $config.max_concurrency,
                    queue_timeout_ms: $config.queue_timeout_ms,
                    cache: $config.cache.clone(),
                    retry: $config.retry.clone(),
                    breaker: $config.breaker.clone(),
                    maintenance: $config.maintenance.clone(),
                }
            };
        }
        match self {
            Self::Rest(rest) => super::ShieldConfig::from_keys(&keys!(rest), rest.timeout_ms),
            Self::Soap(soap) => super::ShieldConfig::from_keys(&keys!(soap), soap.timeout_ms),
            Self::Sql(sql) => super::ShieldConfig::from_keys(&keys!(sql), sql.timeout_ms),
            Self::Mainframe(mainframe) => {
                let timeout_ms = mainframe
                    .online
                    .as_ref()
                    .map_or(2_000, |online| online.get_ref().timeout_ms);
                super::ShieldConfig::from_keys(&keys!(mainframe), timeout_ms)
            }
        }
    }

    /// The agency key the backend knows a person by, if it declares one.
    pub fn identifier(&self) -> Option<&Spanned<KeyKind>> {
        match self {
            Self::Rest(rest) => rest.identifier.as_ref(),
            Self::Soap(soap) => soap.identifier.as_ref(),
            Self::Sql(sql) => sql.identifier.as_ref(),
            Self::Mainframe(mainframe) => mainframe.identifier.as_ref(),
        }
    }
}

/// Only the `kind` key, read first to choose the struct for the rest of the file.
#[derive(Debug, Deserialize)]
pub(crate) struct KindProbe {
    pub(crate) kind: Option<Spanned<String>>,
}

/// The connector kinds a file may name, for error messages.
pub const CONNECTOR_KINDS: &[&str] = &["rest", "soap", "sql", "mainframe"];

/// A REST backend: JSON over HTTP.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestConfig {
    /// The name the SDL uses in `@connect(connector: …)`; unique across files.
    pub name: Spanned<String>,
    /// Always `"rest"` here.
    pub kind: String,
    /// What the backend is, for `civicgraph check` and operators.
    #[serde(default)]
    pub description: Option<String>,
    /// The agency key this backend knows a person by; the graph fills `{<key>}` from the
    /// identity crosswalk.
    #[serde(default)]
    pub identifier: Option<Spanned<KeyKind>>,
    /// Scheme, host, port and optional path prefix, e.g. `http://127.0.0.1:7101`.
    pub base_url: Spanned<String>,
    /// Per-call deadline; a slow legacy backend must not hold a citizen's request forever.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Idle pooled connections kept per backend host.
    #[serde(default = "default_pool_idle")]
    pub pool_max_idle: usize,
    /// Static headers sent with every call (credentials come in through `${VAR}`).
    #[serde(default)]
    pub headers: BTreeMap<String, Secret>,
    /// Static credentials for the backend.
    #[serde(default)]
    pub auth: Option<RestAuth>,
    /// The most calls in flight to this backend at once (default 32); never exceeded.
    #[serde(default)]
    pub max_concurrency: Option<usize>,
    /// How long a call waits for a free slot before failing fast with `BACKEND_BUSY`
    /// (default 50).
    #[serde(default)]
    pub queue_timeout_ms: Option<u64>,
    /// Answers kept for reuse, per operation; absent caches nothing.
    #[serde(default)]
    pub cache: Option<super::CacheConfig>,
    /// Retries of failed reads (never of writes).
    #[serde(default)]
    pub retry: super::RetryConfig,
    /// When the circuit opens and how it closes.
    #[serde(default)]
    pub breaker: super::BreakerConfig,
    /// Daily windows when the backend must not be called (stale answers are served instead).
    #[serde(default)]
    pub maintenance: Vec<super::MaintenanceWindow>,
    /// The calls this backend offers, by name.
    pub operations: BTreeMap<Spanned<String>, RestOperation>,
}

fn default_timeout_ms() -> u64 {
    2_000
}

fn default_pool_idle() -> usize {
    32
}

/// Credentials sent to a REST backend.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case", tag = "scheme")]
pub enum RestAuth {
    /// `Authorization: Bearer <token>`.
    Bearer {
        /// The token, normally `${SOME_TOKEN}`.
        token: Secret,
    },
    /// `Authorization: Basic …`.
    Basic {
        /// User name.
        username: String,
        /// Password, normally `${SOME_PASSWORD}`.
        password: Secret,
    },
}

/// One call on a REST backend.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestOperation {
    /// What the call does, shown by `civicgraph check`.
    #[serde(default)]
    pub description: Option<String>,
    /// HTTP method; reads are `GET`.
    #[serde(default)]
    pub method: HttpMethod,
    /// Path after `base_url`, with `{placeholders}` filled from arguments or parent fields.
    pub path: Spanned<String>,
    /// Query parameters; a parameter whose placeholders are all null is left out.
    #[serde(default)]
    pub query: BTreeMap<String, Spanned<String>>,
    /// JSON body for `POST`/`PUT`; a string that is exactly `"{name}"` becomes that value.
    #[serde(default)]
    pub body: Option<Spanned<toml::Value>>,
    /// JSON pointer (RFC 6901) to the object in the response, e.g. `/account`.
    #[serde(default)]
    pub select: Option<Spanned<String>>,
    /// What a 404 means for this operation.
    #[serde(default)]
    pub not_found: NotFound,
    /// Set when the operation returns one page of a list.
    #[serde(default)]
    pub page: Option<PageConfig>,
    /// The backend's call for many keys at once, so a list of parents costs one request
    /// instead of one per parent; absent, every key is its own call.
    #[serde(default)]
    pub batch: Option<Spanned<RestBatch>>,
}

/// The batch form of a `GET` operation: one call that answers many values of one of its
/// placeholders (the key), for example
///
/// ```toml
/// [operations.account]
/// path = "/v1/taxpayers/{tin}/account"
/// select = "/account"
/// batch = { path = "/v1/taxpayers/accounts", query = { tins = "{tin}" }, items = "/accounts", match = "/tin", max = 100 }
/// ```
///
/// The key placeholder in `path` or `query` expands to the batch's distinct keys joined
/// with `,`, each percent-encoded (`/v1/taxpayers/accounts?tins=123,456`); every other
/// placeholder takes its one value, as in the single call. The answer's items are matched
/// back to keys by the value at `match` in each item, so their order does not matter and a
/// key with no item reads `null`, as a 404 does for the single call. A key that cannot be
/// told apart inside a comma-joined list (one that contains `,`, or is empty, null, a list
/// or an object) is answered by the single call instead, so every key gets exactly the
/// answer it would get alone.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestBatch {
    /// The placeholder whose values vary across one batch, e.g. `tin`; it must be one of
    /// the single call's placeholders. It may be left out when the batch's `path` and
    /// `query` have exactly one placeholder, which is then the key.
    #[serde(default)]
    pub key: Option<Spanned<String>>,
    /// Path after `base_url` for the batch call; no `?` (parameters go in `query`).
    pub path: Spanned<String>,
    /// Query parameters of the batch call; one whose placeholders are all null is left out.
    #[serde(default)]
    pub query: BTreeMap<String, Spanned<String>>,
    /// JSON pointer (RFC 6901) to the array of items in the answer, e.g. `/accounts`
    /// (`""` when the answer is the array itself).
    pub items: Spanned<String>,
    /// JSON pointer inside an item to the key it answers, e.g. `/tin`; the item belongs to
    /// the key whose text equals that value (a string, number or boolean).
    #[serde(rename = "match")]
    pub key_at: Spanned<String>,
    /// JSON pointer inside an item to what the single call's `select` answers; absent, the
    /// item itself. A null there reads `null`, as for the single call.
    #[serde(default)]
    pub select: Option<Spanned<String>>,
    /// The most keys in one call (default 100, at most 1000); the backend's own limit.
    #[serde(default)]
    pub max: Option<Spanned<usize>>,
}

/// Keys in one batch call when the connector file does not say (`batch.max`).
pub const DEFAULT_BATCH_MAX: usize = 100;

/// The most keys a connector file may allow in one batch call: a longer URL or `IN` list
/// would be refused by the backends anyway, or cost more than separate calls.
pub const MAX_BATCH_MAX: usize = 1000;

/// Methods a REST operation may use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum HttpMethod {
    /// A read; the default.
    #[default]
    Get,
    /// A create or a query too large for a URL.
    Post,
    /// A replace.
    Put,
    /// A partial update.
    Patch,
    /// A removal.
    Delete,
}

impl HttpMethod {
    /// The method as reqwest wants it.
    pub fn as_reqwest(self) -> reqwest::Method {
        match self {
            Self::Get => reqwest::Method::GET,
            Self::Post => reqwest::Method::POST,
            Self::Put => reqwest::Method::PUT,
            Self::Patch => reqwest::Method::PATCH,
            Self::Delete => reqwest::Method::DELETE,
        }
    }
}

/// What a 404 from the backend means.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotFound {
    /// The entity does not exist: the field is `null` and no error is reported.
    #[default]
    Null,
    /// The path should always exist: report `BACKEND_BAD_RESPONSE`.
    Error,
}

/// How to read one page of a list, so the graph can offer a Relay-style connection.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PageConfig {
    /// JSON pointer to the array of items.
    pub items: Spanned<String>,
    /// JSON pointer to the cursor of the next page (null or absent on the last page).
    pub next_cursor: Spanned<String>,
    /// JSON pointer, inside an item, to that item's own cursor; absent → edges share the page cursor.
    #[serde(default)]
    pub edge_cursor: Option<Spanned<String>>,
}

/// Whether an operation answers with one object or a list of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Returns {
    /// One object, or `null` when there is none; more than one is a bad response.
    One,
    /// A list (`[]` when there is none).
    Many,
}

/// A configuration string that must never reach a log: its `Debug` is redacted.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// The value, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_show_in_debug_output() {
        let secret: Secret = serde_json::from_str("\"hunter2\"").unwrap();
        assert_eq!(format!("{secret:?}"), "Secret(***)");
        assert_eq!(secret.expose(), "hunter2");
    }
}
