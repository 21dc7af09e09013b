//! The `sql` connector: named queries with bound parameters against PostgreSQL, MySQL/MariaDB
//! or SQLite, through a sqlx pool per connector.
//!
//! `build` (which is also what `civicgraph check` runs) parses the URL and compiles every query
//! but never connects: the pool is created on the first call and opens connections lazily.
//!
//! # Behaviour
//!
//! - **Database** by URL scheme: `postgres://`/`postgresql://`, `mysql://`/`mariadb://` (the
//!   MySQL driver), `sqlite:`. The URL is never shown in a diagnostic, log or error; messages
//!   from the driver have the URL and its password cut out.
//! - **Placeholders** `:name` become `$1…` (PostgreSQL) or `?` (MySQL, SQLite); values are
//!   always bound. A repeated placeholder is bound again at each use (PostgreSQL reuses `$n`).
//!   `check` rejects a placeholder missing from `params`, a parameter the query never uses, an
//!   unknown type, and hand-written `?`/`$1` markers.
//! - **Null arguments**: every parameter is required. A null (or absent) argument skips the
//!   query and the field reads `null`, as a REST path placeholder does. An argument that does
//!   not fit its type is `BAD_USER_INPUT`, naming the parameter and never the value, and no
//!   query runs.
//! - **Lists** (`[integer]`, …) are written `IN (:ids)` on every database; MySQL and SQLite get
//!   one `?` per item, PostgreSQL binds one array (`IN (SELECT unnest($1))`). PostgreSQL also
//!   accepts `= ANY(:ids)`. An empty list matches nothing in `IN` and everything in `NOT IN`
//!   (an empty subquery stands in for it). More than 1000 items is
//!   `BAD_USER_INPUT`.
//! - **Rows**: `returns = "many"` is a list of row objects (at most 10 000, more is
//!   `BACKEND_BAD_RESPONSE`); `returns = "one"` is the only row, `null` when there is none, and
//!   `BACKEND_BAD_RESPONSE` when there are several (the query is wrong, and picking one would
//!   hide it). Two columns with one name are refused rather than overwritten.
//! - **Column types** (see `decode`): integers → numbers; DECIMAL/NUMERIC → exact strings
//!   (`"1234.50"`); floats → numbers; text → strings; PostgreSQL `bool` and MySQL `BOOLEAN`
//!   (`TINYINT(1)`) → `true`/`false`; DATE → `"YYYY-MM-DD"`; TIME → `"HH:MM:SS"`; TIMESTAMPTZ
//!   and MySQL TIMESTAMP → RFC 3339 in UTC (`"2026-01-02T03:04:05Z"`); TIMESTAMP without zone
//!   and MySQL DATETIME are taken to be UTC; UUID → string; JSON/JSONB → the JSON value (on
//!   MariaDB, where JSON is LONGTEXT, the text); bytes/BLOB → base64 strings. SQLite decodes by
//!   each value's storage class (an integer in a `BOOLEAN` column is a boolean), so money in
//!   SQLite must be stored as TEXT or integer cents. Other types are `BACKEND_BAD_RESPONSE`
//!   naming the column and type.
//! - **Deadline**: `timeout_ms` bounds waiting for a connection plus the query. PostgreSQL
//!   also gets `statement_timeout`, MariaDB `max_statement_time` (MySQL `max_execution_time`),
//!   so the server stops the work too. When no connection could be opened in time while the
//!   pool had room, the database is unreachable (`BACKEND_UNAVAILABLE`); when every pooled
//!   connection was busy, it is `BACKEND_TIMEOUT`.
//! - **Batch** (`batch = { key, query, column, max }`, see [`crate::config::SqlBatch`]):
//!   [`Connector::call_batch`](super::Connector::call_batch) runs `batch.query` once per
//!   `batch.max` distinct keys, the key bound as a list (`IN (?, ?, …)` on MySQL/MariaDB and
//!   SQLite, one array on PostgreSQL), and hands each key the rows whose `batch.column`
//!   equals it, in the query's order, with that column taken out: what the single query
//!   answers for that key alone (`[]` or `null` when no row is its). Arguments are converted
//!   exactly as for the single query, so a null key reads `null` without a query and a key
//!   of the wrong type fails the batch with the single call's `BAD_USER_INPUT`; two rows for
//!   one key of a `returns = "one"` operation fail it with the single call's error. When the
//!   rows cannot be handed back exactly (a row's key is none of the keys asked for, as under
//!   a case-insensitive collation, or there are more than 10 000 rows in all), every key of
//!   that query is answered by the single query instead, so the answers stay those of the
//!   single call. Grouping is exact equality (after the key's type conversion), so when
//!   the query compares keys more loosely (a case- or accent-insensitive collation, as
//!   MySQL/MariaDB have by default, or `lower(…)`) and one batch holds two keys it takes for
//!   equal (`ab` and `AB`), each gets only its exact rows where the single query would find
//!   both keys' rows for either: compare the key with a binary collation in `batch.query`
//!   (`claimant_id COLLATE utf8mb4_bin IN (…)`) when keys can differ so.
//! - **Read-only** (`read_only = true`, the default): SQLite opens the file read-only;
//!   PostgreSQL and MySQL/MariaDB set the session's transactions read-only on every new
//!   connection. This is a guard against a wrong query, not a permission model: give the
//!   connector a database account that can only read.

mod decode;
mod params;

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures::TryStreamExt as _;
use futures::future::BoxFuture;
use serde_json::{Map, Value};
use sqlx::mysql::{MySqlArguments, MySqlConnectOptions, MySqlPoolOptions};
use sqlx::postgres::{PgArguments, PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteArguments, SqliteConnectOptions, SqlitePoolOptions};
use sqlx::{Arguments as _, Database, Executor as _, Pool};

use self::params::{
    BindItem, Bound, CompileProblem, CompiledQuery, Dialect, ParamType, Scalar, ScalarType,
};
use super::{Arguments, BatchSpec, CallError, ConnectorSpec, OperationSpec, Reply};
use crate::config::{
    DEFAULT_BATCH_MAX, Diagnostic, MAX_BATCH_MAX, Returns, SqlConfig, SqlOperation, TomlFile,
};

/// The most rows a `many` operation may answer with; a larger answer is refused rather than
/// held in memory (add a `LIMIT`).
const MAX_ROWS: usize = 10_000;

/// The URL schemes this connector understands, for messages.
const SCHEMES: &str = "postgres://, postgresql://, mysql://, mariadb:// or sqlite:";

/// A built SQL backend: a lazily created pool and its compiled queries.
pub struct SqlConnector {
    backend: Backend,
    timeout: Duration,
    max_connections: u32,
    operations: HashMap<String, CompiledOperation>,
    redactor: Redactor,
}

impl std::fmt::Debug for SqlConnector {
    /// Leaves out the connect options, which hold the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlConnector")
            .field("database", &self.backend.dialect().label())
            .field("timeout", &self.timeout)
            .field("max_connections", &self.max_connections)
            .field("operations", &self.operations.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
struct CompiledOperation {
    query: CompiledQuery,
    returns: Returns,
    batch: Option<CompiledBatch>,
}

/// An operation's batch query, tied to the single query's parameters.
#[derive(Debug)]
struct CompiledBatch {
    query: CompiledQuery,
    /// Where the key is among the single query's parameters.
    key_index: usize,
    /// The key's type, which the key column's values are converted to before comparing.
    key_type: ScalarType,
    /// For each parameter of the batch query, its index among the single query's.
    sources: Vec<usize>,
    /// The result column that holds each row's key.
    column: String,
    max: usize,
}

/// A decoded row: column name → JSON value.
type Row = Map<String, Value>;

/// A batch query's rows handed back to its keys, or why they cannot be exactly (the keys
/// are then asked one by one).
#[derive(Debug)]
enum Grouped {
    /// Each key's rows, in the order of the keys.
    ByKey(Vec<Vec<Row>>),
    /// More rows than one answer may hold.
    TooManyRows,
    /// A row whose key is not one of the keys asked for (a collation that compares loosely).
    ForeignKey,
}

/// A pool made on first use, so that building a connector (and `check`) needs no runtime and
/// opens nothing.
struct LazyPool<DB: Database> {
    cell: OnceLock<Pool<DB>>,
    make: Box<dyn Fn() -> Pool<DB> + Send + Sync>,
}

impl<DB: Database> LazyPool<DB> {
    fn new(make: impl Fn() -> Pool<DB> + Send + Sync + 'static) -> Self {
        Self {
            cell: OnceLock::new(),
            make: Box::new(make),
        }
    }

    fn get(&self) -> &Pool<DB> {
        self.cell.get_or_init(|| (self.make)())
    }
}

enum Backend {
    Postgres(LazyPool<sqlx::Postgres>),
    MySql(LazyPool<sqlx::MySql>),
    Sqlite(LazyPool<sqlx::Sqlite>),
}

impl Backend {
    fn dialect(&self) -> Dialect {
        match self {
            Self::Postgres(_) => Dialect::Postgres,
            Self::MySql(_) => Dialect::MySql,
            Self::Sqlite(_) => Dialect::Sqlite,
        }
    }

    /// Connections open or opening, and idle ones.
    fn pool_state(&self) -> (u32, usize) {
        fn state<DB: Database>(lazy: &LazyPool<DB>) -> (u32, usize) {
            lazy.cell
                .get()
                .map_or((0, 0), |pool| (pool.size(), pool.num_idle()))
        }
        match self {
            Self::Postgres(lazy) => state(lazy),
            Self::MySql(lazy) => state(lazy),
            Self::Sqlite(lazy) => state(lazy),
        }
    }
}

/// Why a database could not be reached; the text has the URL and password removed.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct ConnectDatabaseError(String);

impl SqlConnector {
    /// Parses the URL and compiles every query, collecting every problem with its line. Opens
    /// no connection.
    pub(crate) fn build(
        config: &SqlConfig,
        file: &TomlFile,
    ) -> Result<(Arc<dyn super::Connector>, ConnectorSpec), Vec<Diagnostic>> {
        let mut diagnostics = Vec::new();
        let url = config.url.get_ref().expose();
        let redactor = Redactor::for_url(url);
        let url_at = file.location(&config.url.span());
        let dialect = match dialect_of(url) {
            Ok(dialect) => Some(dialect),
            Err(message) => {
                diagnostics.push(Diagnostic::at(url_at.clone(), message));
                None
            }
        };
        if config.max_connections == 0 {
            diagnostics.push(Diagnostic::at(
                file.location(&config.name.span()),
                "`max_connections` must be at least 1",
            ));
        }
        if config.timeout_ms == 0 {
            diagnostics.push(Diagnostic::at(
                file.location(&config.name.span()),
                "`timeout_ms` must be greater than 0",
            ));
        }

        let mut operations = HashMap::new();
        let mut specs = std::collections::BTreeMap::new();
        if let Some(dialect) = dialect {
            for (name, op) in &config.operations {
                let params = op
                    .params
                    .iter()
                    .map(|(param, ty)| (param.as_str(), ty.get_ref().as_str()));
                match CompiledQuery::compile(op.query.get_ref(), params, dialect) {
                    Ok(query) => {
                        let problems = diagnostics.len();
                        let batch = op.batch.as_ref().and_then(|_| {
                            compile_batch(
                                op,
                                &query,
                                dialect,
                                file,
                                name.get_ref(),
                                &mut diagnostics,
                            )
                        });
                        if diagnostics.len() > problems {
                            continue;
                        }
                        specs.insert(
                            name.get_ref().clone(),
                            OperationSpec {
                                required: query.params().iter().map(|(n, _)| n.clone()).collect(),
                                optional: Vec::new(),
                                location: file.location(&name.span()),
                                page: None,
                                description: op.description.clone(),
                                batch: batch.as_ref().and_then(|batch| {
                                    let (key, _) = query.params().get(batch.key_index)?;
                                    Some(BatchSpec {
                                        key: key.clone(),
                                        max: batch.max,
                                    })
                                }),
                            },
                        );
                        operations.insert(
                            name.get_ref().clone(),
                            CompiledOperation {
                                query,
                                returns: op.returns,
                                batch,
                            },
                        );
                    }
                    Err(problems) => {
                        for problem in problems {
                            let (span, message) = match problem {
                                CompileProblem::Query(message) => (op.query.span(), message),
                                CompileProblem::Param {
                                    name: param,
                                    message,
                                } => (
                                    op.params
                                        .get(&param)
                                        .map_or_else(|| op.query.span(), |ty| ty.span()),
                                    message,
                                ),
                            };
                            diagnostics.push(Diagnostic::at(
                                file.location(&span),
                                format!("operation `{}`: {message}", name.get_ref()),
                            ));
                        }
                    }
                }
            }
        }

        let backend = dialect.and_then(|dialect| {
            make_backend(dialect, url, config).map_or_else(
                |error| {
                    diagnostics.push(Diagnostic::at(
                        url_at.clone(),
                        format!(
                            "`url` is not a valid {} URL: {} (the URL is not shown, since it may hold a password)",
                            dialect.label(),
                            redactor.clean(&error.to_string())
                        ),
                    ));
                    None
                },
                Some,
            )
        });
        let Some(backend) = backend.filter(|_| diagnostics.is_empty()) else {
            return Err(diagnostics);
        };
        let spec = ConnectorSpec {
            kind: "sql",
            identifier: None,
            location: file.location(&config.name.span()),
            operations: specs,
        };
        let connector = Self {
            backend,
            timeout: Duration::from_millis(config.timeout_ms),
            max_connections: config.max_connections,
            operations,
            redactor,
        };
        Ok((Arc::new(connector), spec))
    }

    async fn call_operation(
        &self,
        op: &CompiledOperation,
        args: &Arguments,
    ) -> Result<Option<Value>, CallError> {
        match bind_values(&op.query, args)? {
            Some(values) => self.run_single(op, &values).await,
            None => Ok(None),
        }
    }

    /// The single query with its converted arguments.
    async fn run_single(
        &self,
        op: &CompiledOperation,
        values: &[Bound],
    ) -> Result<Option<Value>, CallError> {
        let (sql, binds) = op.query.render(values);
        let limit = match op.returns {
            Returns::One => 2,
            Returns::Many => MAX_ROWS + 1,
        };
        let rows = self.run(&sql, &binds, limit).await?;
        answer(op.returns, rows)
    }

    /// Runs `sql` within the deadline and decodes up to `limit` rows.
    async fn run(
        &self,
        sql: &str,
        binds: &[BindItem<'_>],
        limit: usize,
    ) -> Result<Vec<Row>, CallError> {
        let connected = AtomicBool::new(false);
        let fetch = self.fetch(sql, binds, limit, &connected);
        match tokio::time::timeout(self.timeout, fetch).await {
            Ok(rows) => rows,
            Err(_) if connected.load(Ordering::Acquire) => Err(self.timed_out()),
            Err(_) => Err(self.no_connection(None)),
        }
    }

    /// Answers every entry of `args` as the single query would, with one batch query per
    /// `batch.max` distinct keys.
    async fn call_batch_operation(
        &self,
        op: &CompiledOperation,
        batch: &CompiledBatch,
        args: &[Arguments],
    ) -> Result<Vec<Reply>, CallError> {
        // Each entry is converted exactly as the single call converts it, so a null reads
        // null and a bad value is the single call's error, for the whole batch.
        let mut shared: Option<Vec<Bound>> = None;
        let mut keys: Vec<Scalar> = Vec::new();
        let mut index: HashMap<Scalar, usize> = HashMap::new();
        let mut slots: Vec<Option<usize>> = Vec::with_capacity(args.len());
        for entry in args {
            let Some(values) = bind_values(&op.query, entry)? else {
                slots.push(None);
                continue;
            };
            let Some(Bound::Scalar(key)) = values.get(batch.key_index) else {
                return Err(CallError::BadResponse {
                    reason: "a batch key is not a single value".to_string(),
                });
            };
            let key = key.clone();
            match &shared {
                None => shared = Some(values),
                // The contract says entries differ only in the key; when they do not, one
                // query cannot answer them all, and each is asked alone.
                Some(first) if !same_apart_from(first, &values, batch.key_index) => {
                    return crate::connectors::each_alone(args, |args| {
                        self.call_operation(op, args)
                    })
                    .await;
                }
                Some(_) => {}
            }
            let slot = *index.entry(key).or_insert_with_key(|key| {
                keys.push(key.clone());
                keys.len() - 1
            });
            slots.push(Some(slot));
        }
        let Some(shared) = shared else {
            return Ok(vec![
                Reply {
                    value: None,
                    as_of: None
                };
                args.len()
            ]);
        };
        let answers = futures::future::try_join_all(
            keys.chunks(batch.max)
                .map(|chunk| self.fetch_batch(op, batch, &shared, chunk)),
        )
        .await?;
        let answers: Vec<Option<Value>> = answers.into_iter().flatten().collect();
        Ok(slots
            .iter()
            .map(|slot| Reply {
                value: slot.and_then(|index| answers.get(index).cloned().flatten()),
                as_of: None,
            })
            .collect())
    }

    /// One batch query for `keys` (distinct); the answer for each key, in the order of `keys`.
    async fn fetch_batch(
        &self,
        op: &CompiledOperation,
        batch: &CompiledBatch,
        shared: &[Bound],
        keys: &[Scalar],
    ) -> Result<Vec<Option<Value>>, CallError> {
        let values: Option<Vec<Bound>> = batch
            .sources
            .iter()
            .map(|&source| {
                if source == batch.key_index {
                    Some(Bound::List(batch.key_type, keys.to_vec()))
                } else {
                    shared.get(source).cloned()
                }
            })
            .collect();
        let Some(values) = values else {
            // `compile_batch` ties every batch parameter to one of the single query's.
            return Err(CallError::BadResponse {
                reason: "a batch query parameter has no value".to_string(),
            });
        };
        let (sql, binds) = batch.query.render(&values);
        let rows = self.run(&sql, &binds, MAX_ROWS + 1).await?;
        match group(batch, keys, rows)? {
            Grouped::ByKey(groups) => groups
                .into_iter()
                .map(|rows| answer(op.returns, rows))
                .collect(),
            ungrouped => {
                if matches!(ungrouped, Grouped::ForeignKey) {
                    tracing::warn!(
                        column = %batch.column,
                        "A batch query returned a row for a key it was not asked for (a case- or space-insensitive collation, or the wrong `batch.column`); asking each key alone."
                    );
                } else {
                    tracing::debug!(
                        keys = keys.len(),
                        "A batch query found more rows than one answer holds; asking each key alone."
                    );
                }
                futures::future::try_join_all(keys.iter().map(|key| {
                    let mut values = shared.to_vec();
                    if let Some(slot) = values.get_mut(batch.key_index) {
                        *slot = Bound::Scalar(key.clone());
                    }
                    async move { self.run_single(op, &values).await }
                }))
                .await
            }
        }
    }

    /// Runs `sql` and decodes up to `limit` rows; `connected` is set once a connection is held.
    async fn fetch(
        &self,
        sql: &str,
        binds: &[BindItem<'_>],
        limit: usize,
        connected: &AtomicBool,
    ) -> Result<Vec<Map<String, Value>>, CallError> {
        macro_rules! run {
            ($lazy:expr, $args:expr, $decode:path, |$conn:ident| $prepare:block) => {{
                let args = $args;
                let mut $conn = $lazy
                    .get()
                    .acquire()
                    .await
                    .map_err(|error| self.no_connection(Some(error)))?;
                connected.store(true, Ordering::Release);
                $prepare
                let mut stream = sqlx::query_with(sql, args).fetch(&mut *$conn);
                let mut rows = Vec::new();
                while rows.len() < limit {
                    let Some(row) = stream
                        .try_next()
                        .await
                        .map_err(|error| self.query_failed(error, binds))?
                    else {
                        break;
                    };
                    rows.push($decode(&row).map_err(|error| CallError::BadResponse {
                        reason: error.to_string(),
                    })?);
                }
                Ok(rows)
            }};
        }
        match &self.backend {
            Backend::Postgres(lazy) => {
                run!(lazy, pg_arguments(binds)?, decode::pg_row, |conn| {})
            }
            Backend::MySql(lazy) => {
                run!(lazy, mysql_arguments(binds)?, decode::mysql_row, |conn| {})
            }
            Backend::Sqlite(lazy) => {
                run!(lazy, sqlite_arguments(binds)?, decode::sqlite_row, |conn| {
                    // SQLite has no statement timeout, and a dropped query keeps running on
                    // its worker thread; this stops it soon after the deadline.
                    let deadline = std::time::Instant::now() + self.timeout;
                    conn.lock_handle()
                        .await
                        .map_err(|error| self.query_failed(error, binds))?
                        .set_progress_handler(1_000, move || std::time::Instant::now() < deadline);
                })
            }
        }
    }

    fn timed_out(&self) -> CallError {
        CallError::Timeout {
            timeout_ms: u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX),
        }
    }

    /// No connection within the deadline: unreachable when the pool had room to open one (so
    /// opening failed), a timeout when every connection was busy with other queries.
    fn no_connection(&self, error: Option<sqlx::Error>) -> CallError {
        let (size, idle) = self.backend.pool_state();
        let saturated = size >= self.max_connections && idle == 0;
        match error {
            None | Some(sqlx::Error::PoolTimedOut) if saturated => self.timed_out(),
            None | Some(sqlx::Error::PoolTimedOut) => {
                CallError::Unreachable(Box::new(ConnectDatabaseError(format!(
                    "could not connect to the {} database within {} ms",
                    self.backend.dialect().label(),
                    self.timeout.as_millis()
                ))))
            }
            Some(error) => CallError::Unreachable(Box::new(ConnectDatabaseError(
                self.redactor.clean(&error.to_string()),
            ))),
        }
    }

    /// Sorts a query failure once, at the edge. The database's message is kept for the log,
    /// except for data and constraint errors (SQLSTATE classes 22 and 23), whose messages can
    /// quote a value; bound text is cut out of any message as well.
    fn query_failed(&self, error: sqlx::Error, binds: &[BindItem<'_>]) -> CallError {
        match error {
            sqlx::Error::Database(db) if is_server_deadline(&*db) => self.timed_out(),
            sqlx::Error::Database(db) => {
                let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
                let reason = if code.starts_with("22") || code.starts_with("23") {
                    format!(
                        "the database refused the query with SQLSTATE {code} (a data or constraint error; its message is not logged because it can quote values)"
                    )
                } else {
                    let message = redact_values(&self.redactor.clean(db.message()), binds);
                    format!("the database refused the query: {message} (code {code})")
                };
                CallError::BadResponse { reason }
            }
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::PoolClosed
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::WorkerCrashed => CallError::Unreachable(Box::new(ConnectDatabaseError(
                self.redactor.clean(&error.to_string()),
            ))),
            other => CallError::BadResponse {
                reason: redact_values(&self.redactor.clean(&other.to_string()), binds),
            },
        }
    }
}

impl super::Connector for SqlConnector {
    fn call<'a>(
        &'a self,
        operation: &'a str,
        args: &'a Arguments,
    ) -> BoxFuture<'a, Result<Option<Value>, CallError>> {
        Box::pin(async move {
            let op = self
                .operations
                .get(operation)
                .ok_or_else(|| CallError::UnknownOperation(operation.to_string()))?;
            self.call_operation(op, args).await
        })
    }

    /// One query per `batch.max` distinct keys (see "Batch" in the module documentation),
    /// each within the connector's `timeout_ms`, as a single query is.
    fn call_batch<'a>(
        &'a self,
        operation: &'a str,
        args: &'a [Arguments],
    ) -> BoxFuture<'a, Result<Vec<Reply>, CallError>> {
        Box::pin(async move {
            let op = self
                .operations
                .get(operation)
                .ok_or_else(|| CallError::UnknownOperation(operation.to_string()))?;
            match &op.batch {
                Some(batch) => self.call_batch_operation(op, batch, args).await,
                None => {
                    crate::connectors::each_alone(args, |args| self.call_operation(op, args)).await
                }
            }
        })
    }
}

/// Converts `args` to the query's parameter types, as every call does: `Ok(None)` when one
/// is null (the query is skipped), the first argument that does not fit as an error.
fn bind_values(query: &CompiledQuery, args: &Arguments) -> Result<Option<Vec<Bound>>, CallError> {
    let mut values = Vec::with_capacity(query.params().len());
    let mut missing = false;
    for (name, ty) in query.params() {
        let value = args.get(name).unwrap_or(&Value::Null);
        match params::convert(*ty, value) {
            Ok(Some(bound)) => values.push(bound),
            Ok(None) => missing = true,
            Err(error) => {
                return Err(CallError::InvalidArgument {
                    name: name.clone(),
                    reason: error.0,
                });
            }
        }
    }
    Ok((!missing).then_some(values))
}

/// Whether two entries' converted arguments agree on everything but the key.
fn same_apart_from(first: &[Bound], other: &[Bound], key_index: usize) -> bool {
    first.len() == other.len()
        && first
            .iter()
            .zip(other)
            .enumerate()
            .all(|(index, (a, b))| index == key_index || a == b)
}

/// What an operation answers for its rows: the only row or null, or the list.
fn answer(returns: Returns, rows: Vec<Row>) -> Result<Option<Value>, CallError> {
    match returns {
        Returns::One if rows.len() > 1 => Err(CallError::BadResponse {
            reason: "the query of a `returns = \"one\"` operation found more than one row"
                .to_string(),
        }),
        Returns::One => Ok(rows.into_iter().next().map(Value::Object)),
        Returns::Many if rows.len() > MAX_ROWS => Err(CallError::BadResponse {
            reason: format!("the query found more than {MAX_ROWS} rows; add a LIMIT"),
        }),
        Returns::Many => Ok(Some(Value::Array(
            rows.into_iter().map(Value::Object).collect(),
        ))),
    }
}

/// Hands a batch query's rows to `keys` by their `batch.column`, keeping their order and
/// taking the column out; the error is a batch query that does not select the column.
fn group(batch: &CompiledBatch, keys: &[Scalar], rows: Vec<Row>) -> Result<Grouped, CallError> {
    if rows.len() > MAX_ROWS {
        return Ok(Grouped::TooManyRows);
    }
    let wanted: HashMap<&Scalar, usize> = keys.iter().enumerate().map(|(i, k)| (k, i)).collect();
    let key_type = ParamType {
        scalar: batch.key_type,
        list: false,
    };
    let mut groups: Vec<Vec<Row>> = vec![Vec::new(); keys.len()];
    for mut row in rows {
        let Some(value) = row.remove(&batch.column) else {
            return Err(CallError::BadResponse {
                reason: format!(
                    "the batch query's rows have no column `{}` (`batch.column`); select it",
                    batch.column
                ),
            });
        };
        let index = match params::convert(key_type, &value) {
            Ok(Some(Bound::Scalar(key))) => wanted.get(&key).copied(),
            _ => None,
        };
        let Some(index) = index else {
            return Ok(Grouped::ForeignKey);
        };
        groups[index].push(row);
    }
    Ok(Grouped::ByKey(groups))
}

/// Checks an operation's `batch` against its compiled single query and compiles the batch
/// query, reporting every problem at its line.
fn compile_batch(
    op: &SqlOperation,
    single: &CompiledQuery,
    dialect: Dialect,
    file: &TomlFile,
    operation: &str,
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<CompiledBatch> {
    let batch = op.batch.as_ref()?.get_ref();
    let before = diagnostics.len();
    let mut report = |span: std::ops::Range<usize>, message: String| {
        diagnostics.push(Diagnostic::at(
            file.location(&span),
            format!("operation `{operation}`: {message}"),
        ));
    };
    let key = batch.key.get_ref();
    let key_index = single.params().iter().position(|(name, _)| name == key);
    let key_type = match key_index.map(|index| single.params()[index].1) {
        None => {
            let names: Vec<String> = single
                .params()
                .iter()
                .map(|(n, _)| format!("`{n}`"))
                .collect();
            report(
                batch.key.span(),
                format!(
                    "`batch.key` `{key}` is not a parameter of the query (its parameters: {})",
                    if names.is_empty() {
                        "none".to_string()
                    } else {
                        names.join(", ")
                    }
                ),
            );
            None
        }
        Some(ty) if ty.list => {
            report(
                batch.key.span(),
                format!(
                    "`batch.key` `{key}` is a list parameter (`{ty}`); a batch key is one value per entry"
                ),
            );
            None
        }
        Some(ty) => Some(ty.scalar),
    };
    let column = batch.column.get_ref();
    if column.trim().is_empty() {
        report(
            batch.column.span(),
            "`batch.column` must name the result column that holds each row's key".to_string(),
        );
    }
    let max = batch
        .max
        .as_ref()
        .map_or(DEFAULT_BATCH_MAX, |max| *max.get_ref());
    if let Some(spanned) = &batch.max
        && !(1..=MAX_BATCH_MAX).contains(&max)
    {
        report(
            spanned.span(),
            format!("`batch.max` must be between 1 and {MAX_BATCH_MAX}, not {max}"),
        );
    }
    let (Some(key_index), Some(key_type)) = (key_index, key_type) else {
        return None;
    };
    let params = op
        .params
        .iter()
        .map(|(param, ty)| (param.as_str(), ty.get_ref().as_str()));
    let query = match CompiledQuery::compile_batch(batch.query.get_ref(), params, dialect, key) {
        Ok(query) => query,
        Err(problems) => {
            for problem in problems {
                let (span, message) = match problem {
                    CompileProblem::Query(message) => (batch.query.span(), message),
                    CompileProblem::Param { name, message } => (
                        op.params
                            .get(&name)
                            .map_or_else(|| batch.query.span(), |ty| ty.span()),
                        message,
                    ),
                };
                report(span, message);
            }
            return None;
        }
    };
    if diagnostics.len() > before {
        return None;
    }
    let sources = query
        .params()
        .iter()
        .filter_map(|(name, _)| single.params().iter().position(|(n, _)| n == name))
        .collect();
    Some(CompiledBatch {
        query,
        key_index,
        key_type,
        sources,
        column: column.clone(),
        max,
    })
}

/// Whether the server stopped the query at the deadline this connector set on it: PostgreSQL
/// `statement_timeout` (57014), MariaDB `max_statement_time` (1969, SQLSTATE 70100), MySQL
/// `max_execution_time` (3024), SQLite's progress handler (`SQLITE_INTERRUPT`, 9).
fn is_server_deadline(db: &dyn sqlx::error::DatabaseError) -> bool {
    if let Some(mysql) = db.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>() {
        return matches!(mysql.number(), 1969 | 3024);
    }
    if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
        return db.code().is_some_and(|code| code == "9");
    }
    db.code().is_some_and(|code| code == "57014")
}

/// Cuts bound text values out of a database message (a belt to the SQLSTATE braces).
fn redact_values(message: &str, binds: &[BindItem<'_>]) -> String {
    let mut message = message.to_string();
    let mut texts: Vec<&str> = Vec::new();
    for bind in binds {
        match bind {
            BindItem::Scalar(Scalar::Text(text)) => texts.push(text),
            BindItem::List(_, items) => texts.extend(items.iter().filter_map(|item| match item {
                Scalar::Text(text) => Some(text.as_str()),
                _ => None,
            })),
            BindItem::Scalar(_) => {}
        }
    }
    texts.sort_by_key(|t| std::cmp::Reverse(t.len()));
    for text in texts.into_iter().filter(|t| t.len() >= 3) {
        message = message.replace(text, "<value>");
    }
    message
}

/// The database a URL names, or a message listing the supported schemes.
fn dialect_of(url: &str) -> Result<Dialect, String> {
    let scheme = url
        .split_once(':')
        .map(|(scheme, _)| scheme.to_ascii_lowercase());
    match scheme.as_deref() {
        Some("postgres" | "postgresql") => Ok(Dialect::Postgres),
        Some("mysql" | "mariadb") => Ok(Dialect::MySql),
        Some("sqlite") => Ok(Dialect::Sqlite),
        // Shown only when it is clearly a scheme (`x://`), never a piece of a credential.
        Some(scheme)
            if url[scheme.len()..].starts_with("://")
                && scheme.len() <= 20
                && scheme
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.')) =>
        {
            Err(format!(
                "`url` scheme `{scheme}:` is not a database this connector speaks; use {SCHEMES}"
            ))
        }
        _ => Err(format!(
            "`url` must start with {SCHEMES} (the URL is not shown, since it may hold a password)"
        )),
    }
}

/// The connect options and a lazy pool for the database.
fn make_backend(dialect: Dialect, url: &str, config: &SqlConfig) -> Result<Backend, sqlx::Error> {
    let timeout = Duration::from_millis(config.timeout_ms);
    let max_connections = config.max_connections;
    let read_only = config.read_only;
    let timeout_ms = config.timeout_ms;
    Ok(match dialect {
        Dialect::Postgres => {
            let options = PgConnectOptions::from_str(url)?;
            Backend::Postgres(LazyPool::new(move || {
                PgPoolOptions::new()
                    .max_connections(max_connections)
                    .acquire_timeout(timeout)
                    .after_connect(move |conn, _| Box::pin(pg_session(conn, timeout_ms, read_only)))
                    .connect_lazy_with(options.clone())
            }))
        }
        Dialect::MySql => {
            let url = match url.get(..8) {
                Some(scheme) if scheme.eq_ignore_ascii_case("mariadb:") => {
                    format!("mysql:{}", &url[8..])
                }
                _ => url.to_string(),
            };
            let options = MySqlConnectOptions::from_str(&url)?;
            Backend::MySql(LazyPool::new(move || {
                MySqlPoolOptions::new()
                    .max_connections(max_connections)
                    .acquire_timeout(timeout)
                    .after_connect(move |conn, _| {
                        Box::pin(mysql_session(conn, timeout_ms, read_only))
                    })
                    .connect_lazy_with(options.clone())
            }))
        }
        Dialect::Sqlite => {
            let mut options = SqliteConnectOptions::from_str(url)?.busy_timeout(timeout);
            if read_only {
                options = options.read_only(true);
            }
            Backend::Sqlite(LazyPool::new(move || {
                SqlitePoolOptions::new()
                    .max_connections(max_connections)
                    .acquire_timeout(timeout)
                    .connect_lazy_with(options.clone())
            }))
        }
    })
}

/// Prepares a new PostgreSQL connection: the server-side deadline and, if asked, read-only.
async fn pg_session(
    conn: &mut sqlx::PgConnection,
    timeout_ms: u64,
    read_only: bool,
) -> Result<(), sqlx::Error> {
    let mut setup = format!("SET statement_timeout = {timeout_ms}");
    if read_only {
        setup.push_str("; SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY");
    }
    conn.execute(sqlx::raw_sql(&setup)).await?;
    Ok(())
}

/// Prepares a new MySQL/MariaDB connection: the server-side deadline and, if asked, read-only.
async fn mysql_session(
    conn: &mut sqlx::MySqlConnection,
    timeout_ms: u64,
    read_only: bool,
) -> Result<(), sqlx::Error> {
    // MariaDB and MySQL name the server-side deadline differently; whichever the server lacks
    // fails harmlessly. (MySQL's applies to SELECT only.)
    let mariadb = format!(
        "SET SESSION max_statement_time = {}.{:03}",
        timeout_ms / 1000,
        timeout_ms % 1000
    );
    if conn.execute(sqlx::raw_sql(&mariadb)).await.is_err() {
        let mysql = format!("SET SESSION max_execution_time = {timeout_ms}");
        let _ = conn.execute(sqlx::raw_sql(&mysql)).await;
    }
    if read_only {
        conn.execute(sqlx::raw_sql("SET SESSION TRANSACTION READ ONLY"))
            .await?;
    }
    Ok(())
}

fn bind_failed(error: sqlx::error::BoxDynError) -> CallError {
    CallError::BadResponse {
        reason: format!("cannot bind a parameter: {error}"),
    }
}

fn pg_arguments(binds: &[BindItem<'_>]) -> Result<PgArguments, CallError> {
    let mut args = PgArguments::default();
    for bind in binds {
        match bind {
            BindItem::Scalar(scalar) => match scalar {
                Scalar::Text(v) => args.add(v.clone()),
                Scalar::Integer(v) => args.add(*v),
                Scalar::Decimal(v) => args.add(*v),
                Scalar::Boolean(v) => args.add(*v),
                Scalar::Date(v) => args.add(*v),
                Scalar::Timestamp(v) => args.add(*v),
            },
            BindItem::List(ty, items) => {
                fn each<T>(items: &[Scalar], pick: impl Fn(&Scalar) -> Option<T>) -> Vec<T> {
                    items.iter().filter_map(pick).collect()
                }
                match ty {
                    ScalarType::Text => args.add(each(items, |s| match s {
                        Scalar::Text(v) => Some(v.clone()),
                        _ => None,
                    })),
                    ScalarType::Integer => args.add(each(items, |s| match s {
                        Scalar::Integer(v) => Some(*v),
                        _ => None,
                    })),
                    ScalarType::Decimal => args.add(each(items, |s| match s {
                        Scalar::Decimal(v) => Some(*v),
                        _ => None,
                    })),
                    ScalarType::Boolean => args.add(each(items, |s| match s {
                        Scalar::Boolean(v) => Some(*v),
                        _ => None,
                    })),
                    ScalarType::Date => args.add(each(items, |s| match s {
                        Scalar::Date(v) => Some(*v),
                        _ => None,
                    })),
                    ScalarType::Timestamp => args.add(each(items, |s| match s {
                        Scalar::Timestamp(v) => Some(*v),
                        _ => None,
                    })),
                }
            }
        }
        .map_err(bind_failed)?;
    }
    Ok(args)
}

fn mysql_arguments(binds: &[BindItem<'_>]) -> Result<MySqlArguments, CallError> {
    let mut args = MySqlArguments::default();
    for bind in binds {
        let BindItem::Scalar(scalar) = bind else {
            return Err(list_bind());
        };
        match scalar {
            Scalar::Text(v) => args.add(v.clone()),
            Scalar::Integer(v) => args.add(*v),
            Scalar::Decimal(v) => args.add(*v),
            Scalar::Boolean(v) => args.add(*v),
            Scalar::Date(v) => args.add(*v),
            Scalar::Timestamp(v) => args.add(*v),
        }
        .map_err(bind_failed)?;
    }
    Ok(args)
}

fn sqlite_arguments(binds: &[BindItem<'_>]) -> Result<SqliteArguments<'static>, CallError> {
    let mut args = SqliteArguments::default();
    for bind in binds {
        let BindItem::Scalar(scalar) = bind else {
            return Err(list_bind());
        };
        match scalar {
            Scalar::Text(v) => args.add(v.clone()),
            Scalar::Integer(v) => args.add(*v),
            Scalar::Boolean(v) => args.add(*v),
            other => args.add(other.to_text().unwrap_or_default()),
        }
        .map_err(bind_failed)?;
    }
    Ok(args)
}

/// Compilation only leaves lists unexpanded for PostgreSQL, so this is a bug if it happens.
fn list_bind() -> CallError {
    CallError::BadResponse {
        reason: "a list parameter reached a database without arrays unexpanded".to_string(),
    }
}

/// Removes a URL's secrets from driver messages.
#[derive(Debug)]
struct Redactor {
    needles: Vec<String>,
}

impl Redactor {
    fn for_url(url: &str) -> Self {
        let mut needles = vec![url.to_string()];
        if let Ok(parsed) = reqwest::Url::parse(url) {
            if let Some(password) = parsed.password() {
                needles.push(password.to_string());
                if let Ok(decoded) = percent_encoding::percent_decode_str(password).decode_utf8() {
                    needles.push(decoded.into_owned());
                }
            }
            for (key, value) in parsed.query_pairs() {
                if key.eq_ignore_ascii_case("password") {
                    needles.push(value.into_owned());
                }
            }
        }
        needles.retain(|n| !n.is_empty());
        needles.sort_by_key(|n| std::cmp::Reverse(n.len()));
        Self { needles }
    }

    fn clean(&self, text: &str) -> String {
        self.needles
            .iter()
            .fold(text.to_string(), |text, needle| text.replace(needle, "***"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Vars;

    fn build(text: &str) -> Result<Arc<dyn super::super::Connector>, Vec<String>> {
        let file = TomlFile::from_text("ui.toml", text, &Vars::default()).expect("valid toml");
        let config: SqlConfig = file.parse().expect("a valid sql connector");
        SqlConnector::build(&config, &file)
            .map(|(connector, _)| connector)
            .map_err(|ds| {
                ds.into_iter()
                    .map(|d| {
                        let at = d.location.map(|l| format!("{}:{}", l.line, l.column));
                        format!("{} {}", at.unwrap_or_default(), d.message)
                    })
                    .collect()
            })
    }

    fn connector(url: &str, op: &str) -> String {
        format!("name = \"ui\"\nkind = \"sql\"\nurl = \"{url}\"\ntimeout_ms = 300\n{op}")
    }

    const CLAIMS: &str = "[operations.claims]\nquery = \"SELECT * FROM c WHERE id = :id\"\nparams = { id = \"text\" }\n";

    #[test]
    fn builds_without_a_runtime_or_a_database() {
        for url in [
            "postgres://u:pw@127.0.0.1:1/db",
            "postgresql://127.0.0.1/db",
            "mysql://root@127.0.0.1:1/db",
            "mariadb://root:pw@127.0.0.1:1/db",
            "sqlite://does-not-exist.db?mode=ro",
            "sqlite::memory:",
        ] {
            assert!(build(&connector(url, CLAIMS)).is_ok(), "{url}");
        }
    }

    #[test]
    fn an_unknown_scheme_lists_the_supported_ones() {
        let errors =
            build(&connector("oracle://scott:tiger@db/orcl", CLAIMS)).expect_err("refused");
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].starts_with("3:7 "), "{errors:?}");
        assert!(errors[0].contains("`oracle:`"), "{errors:?}");
        assert!(errors[0].contains("mariadb://"), "{errors:?}");
        assert!(!errors[0].contains("tiger"), "{errors:?}");
        let errors = build(&connector("tiger@db", CLAIMS)).expect_err("refused");
        assert!(!errors[0].contains("tiger"), "{errors:?}");
    }

    #[test]
    fn a_malformed_url_is_reported_without_its_password() {
        let errors =
            build(&connector("postgres://u:hunter2@host:notaport/db", CLAIMS)).expect_err("bad");
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].contains("not a valid PostgreSQL URL"),
            "{errors:?}"
        );
        assert!(!errors[0].contains("hunter2"), "{errors:?}");
    }

    #[test]
    fn mismatches_are_reported_at_the_query_and_the_param() {
        let op = "[operations.claims]\nquery = \"SELECT * FROM c WHERE id = :id AND s = :status\"\nparams = { id = \"text\", since = \"date\", n = \"money\" }\n";
        let mut errors = build(&connector("sqlite::memory:", op)).expect_err("refused");
        errors.sort();
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(
            errors.iter().any(|e| e.starts_with("6:9 ")
                && e.contains("operation `claims`: `query` uses placeholder `:status`")),
            "{errors:?}"
        );
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with("7:33 ") && e.contains("parameter `since` is never used")),
            "{errors:?}"
        );
        assert!(
            errors.iter().any(|e| e.starts_with("7:45 ")
                && e.contains("parameter `n`: unknown parameter type `money`")),
            "{errors:?}"
        );
    }

    #[test]
    fn debug_output_never_shows_the_password() {
        let connector =
            build(&connector("postgres://u:hunter2@127.0.0.1:1/db", CLAIMS)).expect("builds");
        let text = format!("{connector:?}");
        assert!(!text.contains("hunter2"), "{text}");
    }

    #[test]
    fn redacts_the_password_in_every_form() {
        let redactor = Redactor::for_url("postgres://u:p%40ss@h/db?password=other");
        assert_eq!(
            redactor.clean("a p%40ss b p@ss c other"),
            "a *** b *** c ***"
        );
    }

    /// The `claims` operation with a batch table (its lines start at 8).
    fn batched(batch: &str) -> String {
        format!(
            "[operations.claims]\nquery = \"SELECT status FROM c WHERE claimant_id = :claimant_id AND y = :year\"\nparams = {{ claimant_id = \"text\", year = \"integer\" }}\n[operations.claims.batch]\n{batch}"
        )
    }

    const BATCH: &str = "key = \"claimant_id\"\ncolumn = \"claimant_id\"\nquery = \"SELECT claimant_id, status FROM c WHERE claimant_id IN (:claimant_id) AND y = :year\"\n";

    #[test]
    fn a_batch_form_sets_the_batch_spec_on_every_database() {
        for url in [
            "postgres://u@127.0.0.1:1/db",
            "mysql://root@127.0.0.1:1/db",
            "sqlite::memory:",
        ] {
            let text = connector(url, &batched(&format!("{BATCH}max = 50\n")));
            let file = TomlFile::from_text("ui.toml", &text, &Vars::default()).expect("toml");
            let config: SqlConfig = file.parse().expect("a valid sql connector");
            let (_, spec) = SqlConnector::build(&config, &file).expect("builds");
            assert_eq!(
                spec.operations["claims"].batch,
                Some(BatchSpec {
                    key: "claimant_id".to_string(),
                    max: 50
                }),
                "{url}"
            );
        }
        // PostgreSQL also takes `= ANY(:key)`.
        let any = BATCH.replace("IN (:claimant_id)", "= ANY(:claimant_id)");
        assert!(build(&connector("postgres://u@127.0.0.1:1/db", &batched(&any))).is_ok());
    }

    #[test]
    fn a_batch_key_must_be_a_scalar_parameter_of_the_query() {
        let errors = build(&connector(
            "sqlite::memory:",
            &batched(&BATCH.replace("key = \"claimant_id\"", "key = \"claimant\"")),
        ))
        .expect_err("refused");
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].starts_with("9:7 "), "{errors:?}");
        assert!(
            errors[0].contains("`batch.key` `claimant` is not a parameter of the query (its parameters: `claimant_id`, `year`)"),
            "{errors:?}"
        );
        let op = "[operations.by_ids]\nquery = \"SELECT id FROM c WHERE id IN (:ids)\"\nparams = { ids = \"[integer]\" }\nbatch = { key = \"ids\", column = \"id\", query = \"SELECT id FROM c WHERE id IN (:ids)\" }\n";
        let errors = build(&connector("sqlite::memory:", op)).expect_err("refused");
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].starts_with("8:17 "), "{errors:?}");
        assert!(
            errors[0].contains("is a list parameter (`[integer]`)"),
            "{errors:?}"
        );
    }

    #[test]
    fn a_batch_column_and_max_are_checked() {
        let errors = build(&connector(
            "sqlite::memory:",
            &batched(&format!(
                "{}max = 0\n",
                BATCH.replace("column = \"claimant_id\"", "column = \" \"")
            )),
        ))
        .expect_err("refused");
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with("10:10 ") && e.contains("`batch.column` must name")),
            "{errors:?}"
        );
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with("12:7 ") && e.contains("between 1 and 1000, not 0")),
            "{errors:?}"
        );
    }

    #[test]
    fn a_batch_query_must_use_the_key_as_a_set_and_the_same_params() {
        // The key written as a scalar: MySQL and SQLite cannot bind a list there.
        let scalar = BATCH.replace("IN (:claimant_id)", "= :claimant_id");
        for url in ["mysql://root@127.0.0.1:1/db", "sqlite::memory:"] {
            let errors = build(&connector(url, &batched(&scalar))).expect_err("refused");
            assert_eq!(errors.len(), 1, "{errors:?}");
            assert!(errors[0].starts_with("11:9 "), "{errors:?}");
            assert!(
                errors[0].contains("`batch.query`: the batch key `:claimant_id` must be written `IN (:claimant_id)`"),
                "{errors:?}"
            );
        }
        let errors = build(&connector("postgres://u@127.0.0.1:1/db", &batched(&scalar)))
            .expect_err("refused");
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].starts_with("11:9 ")
                && errors[0].contains("is an array of keys here; write it `IN (:claimant_id)` or `= ANY(:claimant_id)`"),
            "{errors:?}"
        );
        // A parameter left out, and one the single query does not have.
        let other = BATCH.replace("AND y = :year", "AND z = :zone");
        let mut errors =
            build(&connector("sqlite::memory:", &batched(&other))).expect_err("refused");
        errors.sort();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(
            errors[0].starts_with("11:9 ")
                && errors[0]
                    .contains("`batch.query` uses placeholder `:zone`, not declared in `params`"),
            "{errors:?}"
        );
        assert!(
            errors[1].starts_with("7:41 ")
                && errors[1].contains("parameter `year` is never used in `batch.query`"),
            "{errors:?}"
        );
    }

    #[test]
    fn a_misspelt_batch_key_is_reported_at_its_line() {
        let text = connector(
            "sqlite::memory:",
            &batched(&format!("{BATCH}colum = \"x\"\n")),
        );
        let file = TomlFile::from_text("ui.toml", &text, &Vars::default()).expect("toml");
        let error = file.parse::<SqlConfig>().expect_err("misspelt");
        assert_eq!(error.location.as_ref().map(|l| l.line), Some(12), "{error}");
        assert!(error.message.contains("unknown key `colum`"), "{error}");
    }

    #[tokio::test]
    async fn a_batch_of_null_keys_runs_no_query() {
        // Nothing listens on port 1: any query would fail.
        let connector =
            build(&connector("postgres://u@127.0.0.1:1/db", &batched(BATCH))).expect("builds");
        let entry = |key: Value| {
            Arguments::from([
                ("claimant_id".to_string(), key),
                ("year".to_string(), Value::from(2026)),
            ])
        };
        let replies = connector
            .call_batch("claims", &[entry(Value::Null), Arguments::new()])
            .await
            .expect("no query");
        assert_eq!(replies.len(), 2);
        assert!(replies.iter().all(|r| r.value.is_none()), "{replies:?}");
        assert!(
            connector
                .call_batch("claims", &[])
                .await
                .expect("empty")
                .is_empty()
        );
        // A key of the wrong type fails the batch as it fails the single call.
        let wrong = Arguments::from([
            ("claimant_id".to_string(), Value::from("C1")),
            ("year".to_string(), Value::from("twenty")),
        ]);
        let error = connector
            .call_batch("claims", &[entry(Value::from("C2")), wrong])
            .await
            .expect_err("refused");
        assert!(
            matches!(&error, CallError::InvalidArgument { name, .. } if name == "year"),
            "{error:?}"
        );
    }

    #[tokio::test]
    async fn a_null_argument_skips_the_query() {
        // Nothing listens on port 1: a query would fail, so `Ok(None)` proves none ran.
        let connector = build(&connector("postgres://u@127.0.0.1:1/db", CLAIMS)).expect("builds");
        let args = Arguments::from([("id".to_string(), Value::Null)]);
        assert!(matches!(connector.call("claims", &args).await, Ok(None)));
        assert!(matches!(
            connector.call("claims", &Arguments::new()).await,
            Ok(None)
        ));
    }

    #[tokio::test]
    async fn an_argument_of_the_wrong_type_names_the_parameter_only() {
        let op = "[operations.claims]\nquery = \"SELECT * FROM c WHERE n = :n\"\nparams = { n = \"integer\" }\n";
        let connector = build(&connector("postgres://u@127.0.0.1:1/db", op)).expect("builds");
        let args = Arguments::from([("n".to_string(), Value::from("abc-secret"))]);
        let error = connector.call("claims", &args).await.expect_err("refused");
        assert_eq!(error.code(), crate::error::ErrorCode::BadUserInput);
        let text = error.to_string();
        assert!(text.contains("argument `n`"), "{text}");
        assert!(!text.contains("secret"), "{text}");
    }

    #[tokio::test]
    async fn an_unreachable_database_is_unavailable_without_its_password() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        drop(listener);
        let url = format!("postgres://u:hunter2@127.0.0.1:{port}/db");
        let connector = build(&connector(&url, CLAIMS)).expect("builds");
        let args = Arguments::from([("id".to_string(), Value::from("C1"))]);
        let error = connector.call("claims", &args).await.expect_err("refused");
        assert_eq!(error.code(), crate::error::ErrorCode::BackendUnavailable);
        let text = format!("{error} {error:?}");
        assert!(!text.contains("hunter2"), "{text}");
    }
}
