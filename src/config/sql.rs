//! `kind = "sql"`: a relational database (PostgreSQL, MySQL/MariaDB, SQLite) read with
//! named queries and bound parameters.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use super::{Returns, Secret};
use crate::identity::KeyKind;

/// A SQL backend. The database is chosen by the URL's scheme.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlConfig {
    /// The name the SDL uses in `@connect(connector: …)`; unique across files.
    pub name: Spanned<String>,
    /// Always `"sql"` here.
    pub kind: String,
    /// What the backend is, for `civicgraph check` and operators.
    #[serde(default)]
    pub description: Option<String>,
    /// The agency key this backend knows a person by; the graph fills `:<key>` from the
    /// identity crosswalk.
    #[serde(default)]
    pub identifier: Option<Spanned<KeyKind>>,
    /// `postgres://…`, `mysql://…` / `mariadb://…`, or `sqlite:…`. It may hold a password,
    /// so it is never logged.
    pub url: Spanned<Secret>,
    /// The pool size, which is also how many queries the database ever sees at once.
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
    /// Per-query deadline (including waiting for a pooled connection).
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Open connections read-only where the database supports it. On by default.
    #[serde(default = "default_read_only")]
    pub read_only: bool,
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
    /// Named queries, by operation name.
    pub operations: BTreeMap<Spanned<String>, SqlOperation>,
}

fn default_max_connections() -> u32 {
    8
}

fn default_timeout_ms() -> u64 {
    2_000
}

fn default_read_only() -> bool {
    true
}

/// One named query.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlOperation {
    /// What the query does, shown by `civicgraph check`.
    #[serde(default)]
    pub description: Option<String>,
    /// SQL with `:name` placeholders; every value is bound, never spliced into the text.
    /// A list parameter is written `IN (:ids)` on every database (PostgreSQL also takes
    /// `= ANY(:ids)`). A null argument skips the query and reads as `null`.
    pub query: Spanned<String>,
    /// Every placeholder and its type: `text`, `integer`, `decimal`, `boolean`, `date`,
    /// `timestamp`, or a list such as `[text]`. `check` rejects a query whose placeholders and
    /// parameters differ.
    #[serde(default)]
    pub params: BTreeMap<String, Spanned<String>>,
    /// `one` (the only row, or `null` when there is none; several rows are an error) or
    /// `many` (a list of rows).
    #[serde(default = "many")]
    pub returns: Returns,
    /// The query for many values of one parameter at once, so a list of parents costs one
    /// query instead of one per parent; absent, every key is its own query.
    #[serde(default)]
    pub batch: Option<Spanned<SqlBatch>>,
}

/// The batch form of an operation: its query for a set of keys, for example
///
/// ```toml
/// [operations.claims]
/// query = "SELECT claim_id, status FROM ui_claims WHERE claimant_id = :claimant_id ORDER BY filed_on DESC"
/// params = { claimant_id = "text" }
/// batch = { key = "claimant_id", column = "claimant_id", query = "SELECT claimant_id, claim_id, status FROM ui_claims WHERE claimant_id IN (:claimant_id) ORDER BY filed_on DESC" }
/// ```
///
/// `batch.query` uses the same `params` as the single query, except that the key is bound
/// as a list of its type: write it `IN (:key)` (every database; MySQL/MariaDB and SQLite get
/// one `?` per distinct key, PostgreSQL one array) or `= ANY(:key)` (PostgreSQL only, one
/// array). Every row must carry its key in `column`, which groups the rows back to keys and
/// is then taken out of the row: the single query's rows do not have it. When the single
/// query also answers the key column, select it once more under an alias for `column`
/// (`claimant_id AS batch_key`). Each key keeps its rows in the query's `ORDER BY` order.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlBatch {
    /// The parameter whose values vary across one batch, e.g. `claimant_id`: a scalar
    /// parameter of the single query.
    pub key: Spanned<String>,
    /// SQL for many keys, with the same placeholders as `query`; the key's is a list.
    pub query: Spanned<String>,
    /// The result column that holds each row's key, as the database names it (PostgreSQL
    /// folds unquoted names to lower case).
    pub column: Spanned<String>,
    /// The most keys in one query (default 100, at most 1000).
    #[serde(default)]
    pub max: Option<Spanned<usize>>,
}

fn many() -> Returns {
    Returns::Many
}
