//! Batch calls of the `rest` and `sql` connectors (`Connector::call_batch`): one backend call
//! answers many keys, and every key's answer equals what `call_with_freshness` answers for it
//! alone, including unknown keys, duplicates, keys that need encoding and failures.
//!
//! REST runs against a taxpayer API on `127.0.0.1` that counts its calls, and against the
//! simulated agencies with the shipped `tax.toml` and `registry.toml`. SQL runs against an
//! SQLite file always, and PostgreSQL (`CIVICGRAPH_TEST_POSTGRES_URL`) and MariaDB
//! (`CIVICGRAPH_TEST_MYSQL_URL`) when set; there a sequence bumped once per query execution
//! counts the queries.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use civicgraph::config::{ConnectorConfig, LoadedConnector, TomlFile, Vars};
use civicgraph::connectors::{Arguments, CallError, Connector, Reply, build_connectors};
use civicgraph::demo::ui::{self, UiTables};
use civicgraph::demo::{Population, SimulatedAgencies};
use serde_json::{Value, json};
use sqlx::mysql::{MySqlPool, MySqlPoolOptions};
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};

use crate::support::refused_url;

/// Builds one connector file exactly as the gateway does.
fn build(name: &str, toml: &str, vars: &Vars) -> Arc<dyn Connector> {
    let file = TomlFile::from_text(format!("{name}.toml"), toml, vars).expect("valid TOML");
    let config = if toml.contains("kind = \"sql\"") {
        ConnectorConfig::Sql(file.parse().expect("a valid sql connector file"))
    } else {
        ConnectorConfig::Rest(file.parse().expect("a valid rest connector file"))
    };
    let (connectors, problems) = build_connectors(&[LoadedConnector { config, file }]);
    assert!(problems.is_empty(), "{problems:?}");
    Arc::clone(connectors.get(name).expect("the connector"))
}

/// One entry per key: `key` set to it, plus the `shared` arguments.
fn entries(key: &str, values: &[Value], shared: &[(&str, Value)]) -> Vec<Arguments> {
    values
        .iter()
        .map(|value| {
            let mut args: Arguments = shared
                .iter()
                .map(|(name, value)| (name.to_string(), value.clone()))
                .collect();
            args.insert(key.to_string(), value.clone());
            args
        })
        .collect()
}

/// What `call_with_freshness` answers for each entry alone.
async fn singles(connector: &Arc<dyn Connector>, op: &str, args: &[Arguments]) -> Vec<Reply> {
    let mut replies = Vec::with_capacity(args.len());
    for entry in args {
        match connector.call_with_freshness(op, entry).await {
            Ok(reply) => replies.push(reply),
            Err(error) => panic!("the single `{op}` failed for {entry:?}: {error}"),
        }
    }
    replies
}

async fn batch(connector: &Arc<dyn Connector>, op: &str, args: &[Arguments]) -> Vec<Reply> {
    match connector.call_batch(op, args).await {
        Ok(replies) => replies,
        Err(error) => panic!("the batch `{op}` failed: {error}"),
    }
}

/// The error a single call and a batch give for the same entries: same kind, same code,
/// same message.
fn assert_same_failure(single: &CallError, batch: &CallError) {
    assert_eq!(
        (
            std::mem::discriminant(single),
            single.code(),
            single.to_string()
        ),
        (
            std::mem::discriminant(batch),
            batch.code(),
            batch.to_string()
        ),
        "single: {single:?}\nbatch: {batch:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// REST: a taxpayer API that counts its calls
// ---------------------------------------------------------------------------------------------

/// How the fake taxpayer API answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Normal,
    Status(u16),
    NotJson,
    Hang,
    /// Batch answers only: no `accounts` array, an item without `tin`, two items for a TIN.
    NoItems,
    KeylessItem,
    TwinItems,
}

#[derive(Debug)]
struct Taxpayers {
    /// Accounts by TIN; a null account is served as `{"account": null}`.
    accounts: HashMap<String, Value>,
    singles: AtomicUsize,
    batches: AtomicUsize,
    /// The raw value of `tins=` of every batch call, still percent-encoded.
    lists: Mutex<Vec<String>>,
    mode: Mutex<Mode>,
}

impl Taxpayers {
    fn mode(&self) -> Mode {
        *self.mode.lock().expect("not poisoned")
    }

    fn set_mode(&self, mode: Mode) {
        *self.mode.lock().expect("not poisoned") = mode;
    }

    fn counts(&self) -> (usize, usize) {
        (
            self.batches.swap(0, Ordering::SeqCst),
            self.singles.swap(0, Ordering::SeqCst),
        )
    }

    fn take_lists(&self) -> Vec<String> {
        std::mem::take(&mut *self.lists.lock().expect("not poisoned"))
    }
}

/// The TINs the fake API knows; `a,b` and the one full of reserved characters are real keys.
const ODD_TIN: &str = "a/b&c d#%?+=";
const COMMA_TIN: &str = "a,b";

fn account(tin: &str, balance: &str) -> Value {
    json!({"tin": tin, "balance": balance, "currency": "USD", "assessments": [{"year": 2025, "paid": "1.00"}]})
}

async fn failing(mode: Mode) -> Option<Response> {
    match mode {
        Mode::Status(status) => Some(
            (
                StatusCode::from_u16(status).expect("a status"),
                "{\"error\":\"SECRET\"}",
            )
                .into_response(),
        ),
        Mode::NotJson => Some((StatusCode::OK, "<html>maintenance</html>").into_response()),
        Mode::Hang => std::future::pending().await,
        _ => None,
    }
}

async fn single_account(State(api): State<Arc<Taxpayers>>, Path(tin): Path<String>) -> Response {
    api.singles.fetch_add(1, Ordering::SeqCst);
    if let Some(failure) = failing(api.mode()).await {
        return failure;
    }
    match api.accounts.get(&tin) {
        Some(account) => axum::Json(json!({ "account": account })).into_response(),
        None => (StatusCode::NOT_FOUND, "{\"error\":\"not_found\"}").into_response(),
    }
}

/// `?tins=a,b,…`: split on the literal commas, then decoded, as RFC 3986 intends; found
/// accounts come back in reverse order with one account nobody asked for, as a backend may.
async fn batch_accounts(
    State(api): State<Arc<Taxpayers>>,
    Path(shape): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    api.batches.fetch_add(1, Ordering::SeqCst);
    let mode = api.mode();
    if let Some(failure) = failing(mode).await {
        return failure;
    }
    let raw = query
        .as_deref()
        .unwrap_or("")
        .split('&')
        .find_map(|pair| pair.strip_prefix("tins="))
        .unwrap_or("")
        .to_string();
    api.lists.lock().expect("not poisoned").push(raw.clone());
    let wrapped = shape == "wrapped";
    let mut items: Vec<Value> = raw
        .split(',')
        .filter_map(|tin| {
            let tin = percent_encoding::percent_decode_str(tin)
                .decode_utf8()
                .ok()?
                .into_owned();
            let account = api.accounts.get(&tin)?;
            if wrapped {
                Some(json!({"tin": tin, "account": account}))
            } else {
                (!account.is_null()).then(|| account.clone())
            }
        })
        .collect();
    items.reverse();
    items.push(account("999999999", "0.00"));
    match mode {
        Mode::NoItems => return axum::Json(json!({"accounts": {}})).into_response(),
        Mode::KeylessItem => items.push(json!({"balance": "1.00"})),
        Mode::TwinItems => {
            if let Some(first) = items.first().cloned() {
                items.push(first);
            }
        }
        _ => {}
    }
    axum::Json(json!({ "accounts": items })).into_response()
}

async fn start_taxpayers() -> (String, Arc<Taxpayers>) {
    let mut accounts = HashMap::new();
    for (tin, balance) in [
        ("100000001", "-12.50"),
        ("100000002", "0.00"),
        ("100000003", "1234.56"),
        ("100000004", "7.00"),
        (ODD_TIN, "3.00"),
        (COMMA_TIN, "4.00"),
        ("Zoë", "5.00"),
    ] {
        accounts.insert(tin.to_string(), account(tin, balance));
    }
    accounts.insert("100000009".to_string(), Value::Null);
    let api = Arc::new(Taxpayers {
        accounts,
        singles: AtomicUsize::new(0),
        batches: AtomicUsize::new(0),
        lists: Mutex::new(Vec::new()),
        mode: Mutex::new(Mode::Normal),
    });
    let router = Router::new()
        .route("/v1/taxpayers/batch/{shape}", get(batch_accounts))
        .route("/v1/taxpayers/{tin}/account", get(single_account))
        .with_state(Arc::clone(&api));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a loopback port");
    let url = format!("http://{}", listener.local_addr().expect("an address"));
    tokio::spawn(async move {
        axum::serve(listener, router)
            .await
            .expect("the taxpayer API serves");
    });
    (url, api)
}

/// A tax connector over `url`: `account` (items are accounts) and `wrapped` (items hold the
/// account under `/account`), both batched with `max` keys per call.
fn tax_connector(url: &str, max: usize) -> Arc<dyn Connector> {
    let toml = format!(
        r#"name = "tax"
kind = "rest"
base_url = "{url}"
timeout_ms = 1000

[operations.account]
path = "/v1/taxpayers/{{tin}}/account"
select = "/account"
batch = {{ path = "/v1/taxpayers/batch/accounts", query = {{ tins = "{{tin}}" }}, items = "/accounts", match = "/tin", max = {max} }}

[operations.wrapped]
path = "/v1/taxpayers/{{tin}}/account"
select = "/account"

[operations.wrapped.batch]
key = "tin"
path = "/v1/taxpayers/batch/wrapped"
query = {{ tins = "{{tin}}" }}
items = "/accounts"
match = "/tin"
select = "/account"
max = {max}
"#
    );
    build("tax", &toml, &Vars::default())
}

fn tins(values: &[Value]) -> Vec<Arguments> {
    entries("tin", values, &[])
}

#[tokio::test]
async fn a_rest_batch_is_one_call_answering_each_key_as_its_single_call() {
    let (url, api) = start_taxpayers().await;
    let tax = tax_connector(&url, 100);
    let args = tins(&[
        json!("100000001"),
        json!("404000001"),
        json!("100000002"),
        json!("100000001"),
        json!(ODD_TIN),
        json!("Zoë"),
        json!(100000004),
        json!("100000003"),
        json!("404000002"),
        json!("100000009"),
    ]);
    for op in ["account", "wrapped"] {
        let batched = batch(&tax, op, &args).await;
        assert_eq!(
            api.counts(),
            (1, 0),
            "`{op}`: one batch call, no single call"
        );
        let lists = api.take_lists();
        assert_eq!(lists.len(), 1, "{lists:?}");
        // Nine distinct keys, each percent-encoded, the separators literal.
        let listed: Vec<&str> = lists[0].split(',').collect();
        assert_eq!(listed.len(), 9, "{lists:?}");
        assert!(
            listed.contains(&"a%2Fb%26c%20d%23%25%3F%2B%3D") && listed.contains(&"Zo%C3%AB"),
            "{lists:?}"
        );

        let alone = singles(&tax, op, &args).await;
        assert_eq!(api.counts(), (0, args.len()));
        assert_eq!(batched, alone, "`{op}`");
        // The answers are the accounts themselves, not the single call's envelope.
        assert_eq!(batched[0].value, Some(account("100000001", "-12.50")));
        assert_eq!(batched[1].value, None, "an unknown TIN reads null");
        assert_eq!(batched[3], batched[0], "a duplicate gets the same answer");
        assert_eq!(batched[9].value, None, "a null account reads null");
    }
}

#[tokio::test]
async fn rest_keys_that_cannot_go_in_a_list_are_answered_by_the_single_call() {
    let (url, api) = start_taxpayers().await;
    let tax = tax_connector(&url, 100);
    // `a,b` would read as two TINs in a list, so it is asked alone, intact; an empty key
    // would read as no key; null skips the call as it does alone.
    let args = tins(&[
        json!(COMMA_TIN),
        json!("100000001"),
        json!(""),
        Value::Null,
        json!(COMMA_TIN),
    ]);
    let batched = batch(&tax, "account", &args).await;
    let (batches, _) = api.counts();
    assert_eq!(batches, 1);
    assert_eq!(api.take_lists(), ["100000001"]);
    assert_eq!(batched[0].value, Some(account(COMMA_TIN, "4.00")));
    assert_eq!(batched[3].value, None);
    assert_eq!(batched, singles(&tax, "account", &args).await);

    // Only such keys: no batch call at all.
    api.counts();
    let args = tins(&[json!(COMMA_TIN), Value::Null]);
    let batched = batch(&tax, "account", &args).await;
    assert_eq!(api.counts(), (0, 1));
    assert_eq!(batched, singles(&tax, "account", &args).await);
}

#[tokio::test]
async fn rest_keys_beyond_max_take_one_call_per_max_distinct_keys() {
    let (url, api) = start_taxpayers().await;
    let tax = tax_connector(&url, 2);
    let args = tins(&[
        json!("100000001"),
        json!("100000002"),
        json!("100000001"),
        json!("100000003"),
        json!("404000001"),
        json!("100000004"),
    ]);
    let batched = batch(&tax, "account", &args).await;
    assert_eq!(api.counts(), (3, 0), "five distinct keys, two per call");
    let mut lists = api.take_lists();
    lists.sort();
    assert_eq!(
        lists,
        ["100000001,100000002", "100000003,404000001", "100000004"]
    );
    assert_eq!(batched, singles(&tax, "account", &args).await);
}

#[tokio::test]
async fn a_failed_rest_batch_is_the_error_its_single_call_gives() {
    let (url, api) = start_taxpayers().await;
    let tax = tax_connector(&url, 100);
    let args = tins(&[json!("100000001"), json!("100000002")]);
    for mode in [
        Mode::Status(500),
        Mode::Status(503),
        Mode::Status(400),
        Mode::Status(403),
        Mode::NotJson,
        Mode::Hang,
    ] {
        api.set_mode(mode);
        let batch = tax
            .call_batch("account", &args)
            .await
            .expect_err("the batch fails");
        let single = tax
            .call_with_freshness("account", &args[0])
            .await
            .expect_err("the single call fails");
        assert_same_failure(&single, &batch);
        assert!(!format!("{batch:?}").contains("SECRET"), "{batch:?}");
        assert!(!format!("{batch:?}").contains("100000001"), "{batch:?}");
    }

    // Nothing listening.
    let gone = tax_connector(&refused_url(), 100);
    let batch = gone.call_batch("account", &args).await.expect_err("fails");
    let single = gone
        .call_with_freshness("account", &args[0])
        .await
        .expect_err("fails");
    assert_same_failure(&single, &batch);
    assert!(matches!(batch, CallError::Unreachable(_)), "{batch:?}");
}

#[tokio::test]
async fn a_malformed_rest_batch_answer_fails_the_whole_batch() {
    let (url, api) = start_taxpayers().await;
    let tax = tax_connector(&url, 100);
    let args = tins(&[json!("100000001"), json!("100000002")]);
    for (mode, reason) in [
        (Mode::NoItems, "no array at `/accounts`"),
        (
            Mode::KeylessItem,
            "has no text, number or boolean at `/tin`",
        ),
        (Mode::TwinItems, "a key an earlier item already answered"),
    ] {
        api.set_mode(mode);
        let error = tax.call_batch("account", &args).await.expect_err("refused");
        assert!(
            matches!(&error, CallError::BadResponse { reason: r } if r.contains(reason)),
            "{mode:?}: {error:?}"
        );
        assert!(!error.to_string().contains("100000001"), "{error}");
    }
    // A batch path the backend does not have is an error, not every key unknown.
    api.set_mode(Mode::Normal);
    let toml = format!(
        "name = \"tax\"\nkind = \"rest\"\nbase_url = \"{url}\"\n[operations.account]\npath = \"/v1/taxpayers/{{tin}}/account\"\nselect = \"/account\"\nbatch = {{ path = \"/v1/nowhere\", query = {{ tins = \"{{tin}}\" }}, items = \"/accounts\", match = \"/tin\" }}\n"
    );
    let lost = build("tax", &toml, &Vars::default());
    let error = lost
        .call_batch("account", &args)
        .await
        .expect_err("refused");
    assert!(
        matches!(error, CallError::Rejected { status: 404 }),
        "{error:?}"
    );
}

/// The shipped connector file `name`, with its URL variable pointing at `url`.
fn shipped(name: &str, var: &str, url: &str) -> Arc<dyn Connector> {
    let path = format!("{}/connectors/{name}.toml", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).expect("the shipped connector file");
    let vars = Vars::only(HashMap::from([(var.to_string(), url.to_string())]));
    build(name, &text, &vars)
}

#[tokio::test]
async fn the_shipped_tax_and_registry_batches_answer_as_their_single_calls() {
    let population = Arc::new(Population::generate(400, 42));
    let agencies = SimulatedAgencies::start(Arc::clone(&population))
        .await
        .expect("start the simulated agencies");
    let tax = shipped("tax", "TAX_URL", &agencies.tax_url);
    let registry = shipped("registry", "REGISTRY_URL", &agencies.registry_url);

    // 150 distinct TINs (minors have no account) and 150 ids, more than one call's 100, with
    // unknown keys and duplicates.
    let people = &population.people()[..150];
    let mut tin_values: Vec<Value> = people.iter().map(|p| json!(p.tin)).collect();
    tin_values.extend([
        json!("000000000"),
        json!(people[3].tin),
        json!(people[0].tin),
    ]);
    let args = tins(&tin_values);
    let batched = batch(&tax, "account", &args).await;
    assert!(
        batched.iter().any(|r| r.value.is_none()) && batched.iter().any(|r| r.value.is_some()),
        "both accounts and people without one"
    );
    assert_eq!(batched, singles(&tax, "account", &args).await);

    let mut ids: Vec<Value> = people.iter().map(|p| json!(p.id)).collect();
    ids.extend([json!("C9999999"), json!(people[7].id)]);
    let args = entries("id", &ids, &[]);
    let batched = batch(&registry, "person", &args).await;
    assert_eq!(
        batched[0].value,
        Some(civicgraph::demo::agencies::person_json(&people[0]))
    );
    assert_eq!(batched, singles(&registry, "person", &args).await);
    agencies.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// SQL
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Engine {
    Sqlite,
    Postgres,
    MariaDb,
}

#[derive(Debug)]
enum Admin {
    Sqlite(SqlitePool),
    Postgres(PgPool),
    MySql(MySqlPool),
}

/// A test database: an administrative pool, the URL the connector gets, and a table (and a
/// sequence) of this test's own, so tests run in parallel on one server.
#[derive(Debug)]
struct Db {
    engine: Engine,
    url: String,
    table: String,
    admin: Admin,
    dir: Option<tempfile::TempDir>,
}

/// The deadline of the connectors under test, generous for a shared machine.
const TIMEOUT: &str = "timeout_ms = 2000";

fn suffix() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_string()
}

impl Db {
    /// `engine`'s test database, or `None` (with the reason) when its variable is unset.
    async fn open(engine: Engine) -> Option<Self> {
        let var = |name: &str| match std::env::var(name) {
            Ok(url) if !url.is_empty() => Some(url),
            _ => {
                eprintln!("skipped: {name} is not set");
                None
            }
        };
        let table = format!("cg_batch_{}", suffix());
        Some(match engine {
            Engine::Sqlite => {
                let dir = tempfile::tempdir().expect("a temporary directory");
                let path = dir.path().join("ui.db");
                let options = SqliteConnectOptions::new()
                    .filename(&path)
                    .create_if_missing(true);
                let pool = SqlitePoolOptions::new()
                    .max_connections(1)
                    .connect_with(options)
                    .await
                    .expect("create the SQLite file");
                Self {
                    engine,
                    url: ui::sqlite_url(&path, "ro"),
                    table,
                    admin: Admin::Sqlite(pool),
                    dir: Some(dir),
                }
            }
            Engine::Postgres => {
                let url = var("CIVICGRAPH_TEST_POSTGRES_URL")?;
                let pool = PgPoolOptions::new()
                    .max_connections(2)
                    .connect(&url)
                    .await
                    .expect("connect to the test PostgreSQL");
                Self {
                    engine,
                    url,
                    table,
                    admin: Admin::Postgres(pool),
                    dir: None,
                }
            }
            Engine::MariaDb => {
                let url = var("CIVICGRAPH_TEST_MYSQL_URL")?;
                let pool = MySqlPoolOptions::new()
                    .max_connections(2)
                    .connect(&url.replacen("mariadb:", "mysql:", 1))
                    .await
                    .expect("connect to the test MariaDB");
                Self {
                    engine,
                    url,
                    table,
                    admin: Admin::MySql(pool),
                    dir: None,
                }
            }
        })
    }

    async fn exec(&self, sql: &str) {
        let result = match &self.admin {
            Admin::Sqlite(pool) => sqlx::raw_sql(sql).execute(pool).await.map(|_| ()),
            Admin::Postgres(pool) => sqlx::raw_sql(sql).execute(pool).await.map(|_| ()),
            Admin::MySql(pool) => sqlx::raw_sql(sql).execute(pool).await.map(|_| ()),
        };
        if let Err(error) = result {
            panic!("setup statement failed: {error}\n{sql}");
        }
    }

    async fn scalar(&self, sql: &str) -> i64 {
        let result = match &self.admin {
            Admin::Sqlite(pool) => sqlx::query_scalar::<_, i64>(sql).fetch_one(pool).await,
            Admin::Postgres(pool) => sqlx::query_scalar::<_, i64>(sql).fetch_one(pool).await,
            Admin::MySql(pool) => sqlx::query_scalar::<_, i64>(sql).fetch_one(pool).await,
        };
        result.unwrap_or_else(|error| panic!("{sql}: {error}"))
    }

    /// Claims for `CL-1` (three, newest last in insertion order), `CL-2`, a claimant whose id
    /// is an injection attempt, and one with a non-ASCII id.
    async fn seed(&self) {
        let t = &self.table;
        let (money, date) = match self.engine {
            Engine::Sqlite => ("TEXT", "TEXT"),
            _ => ("DECIMAL(10,2)", "DATE"),
        };
        let charset = if self.engine == Engine::MariaDb {
            " DEFAULT CHARSET = utf8mb4"
        } else {
            ""
        };
        self.exec(&format!(
            "CREATE TABLE {t} (claim_id INTEGER PRIMARY KEY, claimant_id VARCHAR(40) NOT NULL, \
             status VARCHAR(20) NOT NULL, filed_on {date}, weekly_benefit {money}, note TEXT){charset}"
        ))
        .await;
        let money = |text: &str| {
            if self.engine == Engine::Sqlite {
                format!("'{text}'")
            } else {
                text.to_string()
            }
        };
        for (id, claimant, status, filed, benefit) in [
            (1, "CL-1", "CLOSED", "2023-01-10", "310.00"),
            (2, "CL-1", "OPEN", "2026-02-01", "455.50"),
            (3, "CL-1", "DENIED", "2024-06-30", "0.00"),
            (4, "CL-2", "OPEN", "2025-11-11", "120.25"),
            (
                5,
                "O'Brien'); DROP TABLE x; --",
                "OPEN",
                "2025-01-01",
                "99.99",
            ),
            (6, "Zoë", "CLOSED", "2022-03-03", "1.10"),
            (7, "CL-2", "VOID", "2025-12-12", "5.00"),
        ] {
            self.exec(&format!(
                "INSERT INTO {t} VALUES ({id}, '{}', '{status}', '{filed}', {}, NULL)",
                claimant.replace('\'', "''"),
                money(benefit)
            ))
            .await;
        }
    }

    async fn drop_all(&self) {
        self.exec(&format!("DROP TABLE IF EXISTS {}", self.table))
            .await;
    }

    /// A connector named `ui` over this database with top-level keys `top` and `operations`.
    fn connector(&self, top: &str, operations: &str) -> Arc<dyn Connector> {
        let toml = format!(
            "name = \"ui\"\nkind = \"sql\"\nurl = \"${{UI_DATABASE_URL}}\"\nmax_connections = 4\n{top}\n{operations}"
        );
        let vars = Vars::only(HashMap::from([(
            "UI_DATABASE_URL".to_string(),
            self.url.clone(),
        )]));
        build("ui", &toml, &vars)
    }

    /// The batch key written as a set: `= ANY(:k)` on PostgreSQL (its array form), `IN (:k)`
    /// elsewhere.
    fn set_of(&self, key: &str) -> String {
        if self.engine == Engine::Postgres {
            format!("= ANY(:{key})")
        } else {
            format!("IN (:{key})")
        }
    }
}

/// The claims of one claimant (a shared `skip` status left out, newest first), and one
/// claim by id whose single query answers the key column itself.
fn claim_operations(db: &Db) -> String {
    let t = &db.table;
    let set = db.set_of("claim_id");
    format!(
        r#"[operations.claims]
query = "SELECT claim_id, status, filed_on, weekly_benefit FROM {t} WHERE claimant_id = :claimant_id AND status <> :skip ORDER BY filed_on DESC"
params = {{ claimant_id = "text", skip = "text" }}

[operations.claims.batch]
key = "claimant_id"
column = "claimant_id"
query = "SELECT claimant_id, claim_id, status, filed_on, weekly_benefit FROM {t} WHERE status <> :skip AND claimant_id IN ( :claimant_id ) ORDER BY filed_on DESC"

[operations.claim]
query = "SELECT claim_id, claimant_id, status, note FROM {t} WHERE claim_id = :claim_id"
params = {{ claim_id = "integer" }}
returns = "one"
batch = {{ key = "claim_id", column = "batch_key", max = 3, query = "SELECT claim_id AS batch_key, claim_id, claimant_id, status, note FROM {t} WHERE claim_id {set}" }}

[operations.only_claim]
query = "SELECT claim_id FROM {t} WHERE claimant_id = :claimant_id"
params = {{ claimant_id = "text" }}
returns = "one"
batch = {{ key = "claimant_id", column = "claimant_id", query = "SELECT claimant_id, claim_id FROM {t} WHERE claimant_id IN (:claimant_id)" }}

[operations.lowered]
query = "SELECT claim_id FROM {t} WHERE lower(claimant_id) = :who ORDER BY claim_id"
params = {{ who = "text" }}
batch = {{ key = "who", column = "claimant_id", query = "SELECT claimant_id, claim_id FROM {t} WHERE lower(claimant_id) IN (:who) ORDER BY claim_id" }}
"#
    )
}

async fn sql_batches_answer_each_key_as_its_single_query(db: Db) {
    db.seed().await;
    let ui = db.connector(TIMEOUT, &claim_operations(&db));

    let args = entries(
        "claimant_id",
        &[
            json!("CL-1"),
            json!("CL-404"),
            json!("CL-2"),
            json!("CL-1"),
            json!("O'Brien'); DROP TABLE x; --"),
            json!("Zoë"),
            Value::Null,
            json!(7),
        ],
        &[("skip", json!("VOID"))],
    );
    let batched = batch(&ui, "claims", &args).await;
    assert_eq!(batched, singles(&ui, "claims", &args).await);
    assert_eq!(
        batched[0].value,
        Some(json!([
            {"claim_id": 2, "status": "OPEN", "filed_on": "2026-02-01", "weekly_benefit": "455.50"},
            {"claim_id": 3, "status": "DENIED", "filed_on": "2024-06-30", "weekly_benefit": "0.00"},
            {"claim_id": 1, "status": "CLOSED", "filed_on": "2023-01-10", "weekly_benefit": "310.00"},
        ])),
        "newest first, without the grouping column"
    );
    assert_eq!(batched[1].value, Some(json!([])), "no rows: an empty list");
    assert_eq!(batched[6].value, None, "a null key reads null");
    assert_eq!(
        db.scalar(&format!("SELECT COUNT(*) FROM {}", db.table))
            .await,
        7
    );

    // Integer keys as numbers and as text, as the single call converts them; more keys than
    // `max` (3) take more than one query; the single query also answers the key column.
    let args = entries(
        "claim_id",
        &[
            json!(1),
            json!("2"),
            json!(" 4 "),
            json!(1),
            json!(404),
            json!(6),
            json!(5),
        ],
        &[],
    );
    let batched = batch(&ui, "claim", &args).await;
    assert_eq!(batched, singles(&ui, "claim", &args).await);
    assert_eq!(
        batched[1].value,
        Some(json!({"claim_id": 2, "claimant_id": "CL-1", "status": "OPEN", "note": null}))
    );
    assert_eq!(batched[4].value, None, "no row: null");

    // Rows the database matched to keys by a looser comparison than equality (here
    // `lower()`, whose rows carry `CL-1` for the key `cl-1`) are not handed to a wrong key:
    // those keys are asked alone.
    let args = entries(
        "who",
        &[json!("cl-1"), json!("cl-2"), json!("cl-404"), json!("zoë")],
        &[],
    );
    let batched = batch(&ui, "lowered", &args).await;
    assert_eq!(batched, singles(&ui, "lowered", &args).await);
    assert_eq!(
        batched[1].value,
        Some(json!([{"claim_id": 4}, {"claim_id": 7}]))
    );
    db.drop_all().await;
}

async fn sql_batch_failures_are_the_single_querys_errors(db: Db) {
    db.seed().await;
    let ui = db.connector(TIMEOUT, &claim_operations(&db));

    // Two rows for one key of a `returns = "one"` operation.
    let args = entries("claimant_id", &[json!("CL-2"), json!("CL-1")], &[]);
    let batch = ui.call_batch("only_claim", &args).await.expect_err("fails");
    let single = ui
        .call_with_freshness("only_claim", &args[1])
        .await
        .expect_err("fails");
    assert_same_failure(&single, &batch);
    assert!(matches!(batch, CallError::BadResponse { .. }), "{batch:?}");
    let one = entries(
        "claimant_id",
        &[
            json!("Zoë"),
            json!("CL-404"),
            json!("O'Brien'); DROP TABLE x; --"),
        ],
        &[],
    );
    assert_eq!(
        self::batch(&ui, "only_claim", &one).await,
        singles(&ui, "only_claim", &one).await
    );

    // A key that does not fit its type, named but not quoted.
    let args = entries("claim_id", &[json!(1), json!("two-secret")], &[]);
    let batch = ui.call_batch("claim", &args).await.expect_err("fails");
    let single = ui
        .call_with_freshness("claim", &args[1])
        .await
        .expect_err("fails");
    assert_same_failure(&single, &batch);
    assert!(
        matches!(batch, CallError::InvalidArgument { .. }),
        "{batch:?}"
    );
    assert!(!batch.to_string().contains("secret"), "{batch}");

    // The table is gone.
    db.drop_all().await;
    let args = entries("claim_id", &[json!(1), json!(2)], &[]);
    let batch = ui.call_batch("claim", &args).await.expect_err("fails");
    let single = ui
        .call_with_freshness("claim", &args[0])
        .await
        .expect_err("fails");
    assert_eq!(
        (std::mem::discriminant(&single), single.code()),
        (std::mem::discriminant(&batch), batch.code()),
        "single: {single:?}\nbatch: {batch:?}"
    );
    assert!(matches!(batch, CallError::BadResponse { .. }), "{batch:?}");

    // The database cannot be reached.
    let url = match db.engine {
        Engine::Sqlite => format!(
            "sqlite://{}/missing/ui.db",
            std::env::temp_dir().join(suffix()).display()
        ),
        Engine::Postgres => refused_url().replace("http://", "postgres://u:hunter2@") + "/db",
        Engine::MariaDb => refused_url().replace("http://", "mysql://u:hunter2@") + "/db",
    };
    let gone = Db {
        engine: db.engine,
        url,
        table: db.table.clone(),
        admin: match &db.admin {
            Admin::Sqlite(pool) => Admin::Sqlite(pool.clone()),
            Admin::Postgres(pool) => Admin::Postgres(pool.clone()),
            Admin::MySql(pool) => Admin::MySql(pool.clone()),
        },
        dir: None,
    };
    let ui = gone.connector("timeout_ms = 800", &claim_operations(&db));
    let batch = ui.call_batch("claim", &args).await.expect_err("fails");
    let single = ui
        .call_with_freshness("claim", &args[0])
        .await
        .expect_err("fails");
    assert_same_failure(&single, &batch);
    assert!(matches!(batch, CallError::Unreachable(_)), "{batch:?}");
    assert!(!format!("{batch:?}").contains("hunter2"), "{batch:?}");
}

/// The shipped `ui.toml` over the demo's own tables, seeded from a population.
async fn the_shipped_ui_batch_answers_as_its_single_query(db: Db) {
    let population = Population::generate(300, 42);
    let tables = UiTables::with_prefix(&format!("cgb{}_", suffix())).expect("a valid prefix");
    let seed_url = match db.engine {
        Engine::Sqlite => {
            let path = db.dir.as_ref().expect("a directory").path().join("ui.db");
            ui::sqlite_url(&path, "rwc")
        }
        _ => db.url.clone(),
    };
    ui::seed_tables(&seed_url, &population, &tables)
        .await
        .expect("seed the UI tables");
    let text =
        std::fs::read_to_string(format!("{}/connectors/ui.toml", env!("CARGO_MANIFEST_DIR")))
            .expect("the shipped ui.toml")
            .replace("ui_claims", &tables.claims());
    let vars = Vars::only(HashMap::from([(
        "UI_DATABASE_URL".to_string(),
        db.url.clone(),
    )]));
    let ui = build("ui", &text, &vars);

    let mut ids: Vec<Value> = population
        .claimants()
        .take(120)
        .map(|(person, _)| json!(person.claimant_id))
        .collect();
    let busiest = population
        .claimants()
        .max_by_key(|(_, claims)| claims.len())
        .map(|(person, _)| json!(person.claimant_id))
        .expect("claimants");
    ids.extend([json!("UI-9999999"), busiest, ids[5].clone()]);
    let args = entries("claimant_id", &ids, &[]);
    let batched = batch(&ui, "claims", &args).await;
    assert!(
        batched.iter().any(|r| r
            .value
            .as_ref()
            .and_then(Value::as_array)
            .is_some_and(|a| a.len() > 1)),
        "some claimant has several claims"
    );
    assert_eq!(batched, singles(&ui, "claims", &args).await);
    for table in [tables.claims(), tables.claimants()] {
        db.exec(&format!("DROP TABLE {table}")).await;
    }
}

macro_rules! per_database {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    if let Some(db) = super::Db::open(super::Engine::Sqlite).await {
                        super::$name(db).await;
                    }
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    if let Some(db) = super::Db::open(super::Engine::Postgres).await {
                        super::$name(db).await;
                    }
                }
            )*
        }
        mod mariadb {
            $(
                #[tokio::test]
                async fn $name() {
                    if let Some(db) = super::Db::open(super::Engine::MariaDb).await {
                        super::$name(db).await;
                    }
                }
            )*
        }
    };
}

per_database!(
    sql_batches_answer_each_key_as_its_single_query,
    sql_batch_failures_are_the_single_querys_errors,
    the_shipped_ui_batch_answers_as_its_single_query,
);

/// Counts executions of the batch query with a sequence it bumps once per execution (an
/// uncorrelated subquery, evaluated once): PostgreSQL and MariaDB have sequences, SQLite
/// does not, so there one `fetch` per batch is taken on trust.
async fn count_queries(db: Db) {
    db.seed().await;
    let t = &db.table;
    let sequence = format!("{t}_calls");
    let (create, bump, next) = match db.engine {
        Engine::Postgres => (
            format!("CREATE SEQUENCE {sequence}"),
            format!("(SELECT nextval('{sequence}')) > 0"),
            format!("SELECT nextval('{sequence}')"),
        ),
        _ => (
            format!("CREATE SEQUENCE {sequence}"),
            format!("(SELECT NEXTVAL({sequence})) > 0"),
            format!("SELECT NEXTVAL({sequence})"),
        ),
    };
    db.exec(&create).await;
    let operations = format!(
        r#"[operations.claims]
query = "SELECT claim_id FROM {t} WHERE {bump} AND claimant_id = :claimant_id ORDER BY claim_id"
params = {{ claimant_id = "text" }}
batch = {{ key = "claimant_id", column = "claimant_id", query = "SELECT claimant_id, claim_id FROM {t} WHERE {bump} AND claimant_id IN (:claimant_id) ORDER BY claim_id" }}
"#
    );
    // Bumping a sequence is a write.
    let ui = db.connector(&format!("{TIMEOUT}\nread_only = false"), &operations);
    let keys: Vec<Value> = (0..40)
        .map(|i| json!(format!("CL-{}", i % 25)))
        .chain([json!("Zoë")])
        .collect();
    let args = entries("claimant_id", &keys, &[]);
    let before = db.scalar(&next).await;
    let batched = batch(&ui, "claims", &args).await;
    let after = db.scalar(&next).await;
    assert_eq!(after - before - 1, 1, "one query for 41 keys");
    let alone = singles(&ui, "claims", &args).await;
    let last = db.scalar(&next).await;
    assert_eq!(last - after - 1, 41, "the single calls, one query each");
    assert_eq!(batched, alone);
    db.exec(&format!("DROP SEQUENCE {sequence}")).await;
    db.drop_all().await;
}

#[tokio::test]
async fn a_postgres_batch_is_one_query() {
    if let Some(db) = Db::open(Engine::Postgres).await {
        count_queries(db).await;
    }
}

#[tokio::test]
async fn a_mariadb_batch_is_one_query() {
    if let Some(db) = Db::open(Engine::MariaDb).await {
        count_queries(db).await;
    }
}

#[tokio::test]
async fn a_batch_query_over_a_slow_database_times_out_like_the_single_query() {
    let Some(db) = Db::open(Engine::Sqlite).await else {
        return;
    };
    db.seed().await;
    let t = &db.table;
    // SQLite has no sleep: counting to a very large number stands in for a slow query.
    let slow = "(WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < 1000000000) SELECT COUNT(*) FROM c) > 0";
    let operations = format!(
        r#"[operations.claims]
query = "SELECT claim_id FROM {t} WHERE {slow} AND claimant_id = :claimant_id"
params = {{ claimant_id = "text" }}
batch = {{ key = "claimant_id", column = "claimant_id", query = "SELECT claimant_id, claim_id FROM {t} WHERE {slow} AND claimant_id IN (:claimant_id)" }}
"#
    );
    let ui = db.connector("timeout_ms = 300", &operations);
    let args = entries("claimant_id", &[json!("CL-1"), json!("CL-2")], &[]);
    let started = std::time::Instant::now();
    let batch = ui.call_batch("claims", &args).await.expect_err("too slow");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    let single = ui
        .call_with_freshness("claims", &args[0])
        .await
        .expect_err("too slow");
    assert_same_failure(&single, &batch);
    assert!(matches!(batch, CallError::Timeout { .. }), "{batch:?}");
    db.drop_all().await;
}
