//! The `sql` connector against real databases: SQLite (a temporary file, always), PostgreSQL
//! (`CIVICGRAPH_TEST_POSTGRES_URL`) and MariaDB/MySQL (`CIVICGRAPH_TEST_MYSQL_URL`). A database
//! whose variable is unset is skipped with a note on stderr.
//!
//! Every test creates its own table with a random suffix and drops it at the end, so tests
//! run in parallel against one database without meeting.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use civicgraph::config::{ConnectorConfig, LoadedConnector, TomlFile, Vars};
use civicgraph::connectors::{Arguments, CallError, Connector, build_connectors};
use civicgraph::error::ErrorCode;
use serde_json::{Value, json};
use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};

use crate::support::{Project, TestGateway, check, refused_url};

const POSTGRES_VAR: &str = "CIVICGRAPH_TEST_POSTGRES_URL";
const MYSQL_VAR: &str = "CIVICGRAPH_TEST_MYSQL_URL";

// ---------------------------------------------------------------------------------------------
// Databases
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

/// A database to test against, with an administrative pool for setup and checks.
#[derive(Debug)]
struct Db {
    engine: Engine,
    /// The URL the connector under test gets.
    url: String,
    /// The claims table of this test.
    table: String,
    admin: Admin,
    _dir: Option<tempfile::TempDir>,
}

fn suffix() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_string()
}

impl Db {
    /// Opens `engine`'s test database, or `None` (with a note) when its variable is unset.
    async fn open(engine: Engine) -> Option<Self> {
        let table = format!("cg_claims_{}", suffix());
        let var = |name: &str| match std::env::var(name) {
            Ok(url) if !url.is_empty() => Some(url),
            _ => {
                eprintln!("skipped: {name} is not set");
                None
            }
        };
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
                    url: format!("sqlite://{}", path.display()),
                    table,
                    admin: Admin::Sqlite(pool),
                    _dir: Some(dir),
                }
            }
            Engine::Postgres => {
                let url = var(POSTGRES_VAR)?;
                let options: PgConnectOptions = url.parse().expect("a PostgreSQL URL");
                let pool = PgPoolOptions::new()
                    .max_connections(2)
                    .connect_with(options)
                    .await
                    .expect("connect to the test PostgreSQL");
                Self {
                    engine,
                    url,
                    table,
                    admin: Admin::Postgres(pool),
                    _dir: None,
                }
            }
            Engine::MariaDb => {
                let url = var(MYSQL_VAR)?;
                let options: MySqlConnectOptions = url.parse().expect("a MySQL URL");
                let pool = MySqlPoolOptions::new()
                    .max_connections(2)
                    .connect_with(options)
                    .await
                    .expect("connect to the test MariaDB");
                Self {
                    engine,
                    url,
                    table,
                    admin: Admin::MySql(pool),
                    _dir: None,
                }
            }
        })
    }

    /// Runs one statement as the administrator.
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

    /// A single integer the administrator reads.
    async fn scalar(&self, sql: &str) -> i64 {
        let result = match &self.admin {
            Admin::Sqlite(pool) => sqlx::query_scalar::<_, i64>(sql).fetch_one(pool).await,
            Admin::Postgres(pool) => sqlx::query_scalar::<_, i64>(sql).fetch_one(pool).await,
            Admin::MySql(pool) => sqlx::query_scalar::<_, i64>(sql).fetch_one(pool).await,
        };
        result.unwrap_or_else(|error| panic!("{sql}: {error}"))
    }

    async fn rows(&self) -> i64 {
        self.scalar(&format!("SELECT COUNT(*) FROM {}", self.table))
            .await
    }

    async fn status_of(&self, claim_id: i64) -> Option<String> {
        let sql = format!(
            "SELECT status FROM {} WHERE claim_id = {claim_id}",
            self.table
        );
        let result = match &self.admin {
            Admin::Sqlite(pool) => {
                sqlx::query_scalar::<_, Option<String>>(&sql)
                    .fetch_one(pool)
                    .await
            }
            Admin::Postgres(pool) => {
                sqlx::query_scalar::<_, Option<String>>(&sql)
                    .fetch_one(pool)
                    .await
            }
            Admin::MySql(pool) => {
                sqlx::query_scalar::<_, Option<String>>(&sql)
                    .fetch_one(pool)
                    .await
            }
        };
        result.unwrap_or_else(|error| panic!("{sql}: {error}"))
    }

    /// Creates the claims table with three rows: two for `CL-1` with odd values, one for
    /// `CL-2` that is null wherever it can be.
    async fn seed(&self) {
        let t = &self.table;
        let (create, row1, row2) = match self.engine {
            Engine::Postgres => (
                format!(
                    "CREATE TABLE {t} (claim_id INTEGER PRIMARY KEY, claimant_id VARCHAR(20) NOT NULL, \
                     status VARCHAR(20), filed_on DATE, separation_reason TEXT, last_employer TEXT, \
                     weekly_benefit NUMERIC(38,10), weeks_paid SMALLINT, benefit_end_date DATE, \
                     updated_at TIMESTAMPTZ, active BOOLEAN, big BIGINT, rate DOUBLE PRECISION, \
                     local_at TIMESTAMP, note TEXT)"
                ),
                "TIMESTAMPTZ '2026-01-02 05:04:05+02', TRUE, 9007199254740993, 0.1, TIMESTAMP '2026-01-02 03:04:05'",
                "TIMESTAMPTZ '2025-07-01 00:00:00Z', FALSE, -9223372036854775808, -2.5, NULL",
            ),
            Engine::MariaDb => (
                format!(
                    "CREATE TABLE {t} (claim_id INT PRIMARY KEY, claimant_id VARCHAR(20) NOT NULL, \
                     status VARCHAR(20), filed_on DATE, separation_reason TEXT, last_employer VARCHAR(200), \
                     weekly_benefit DECIMAL(38,10), weeks_paid SMALLINT, benefit_end_date DATE, \
                     updated_at TIMESTAMP NULL DEFAULT NULL, active BOOLEAN, big BIGINT, rate DOUBLE, \
                     local_at DATETIME, note TEXT) DEFAULT CHARSET = utf8mb4"
                ),
                "'2026-01-02 03:04:05', TRUE, 9007199254740993, 0.1, '2026-01-02 03:04:05'",
                "'2025-07-01 00:00:00', FALSE, -9223372036854775808, -2.5, NULL",
            ),
            Engine::Sqlite => (
                format!(
                    "CREATE TABLE {t} (claim_id INTEGER PRIMARY KEY, claimant_id TEXT NOT NULL, \
                     status TEXT, filed_on TEXT, separation_reason TEXT, last_employer TEXT, \
                     weekly_benefit TEXT, weeks_paid INTEGER, benefit_end_date TEXT, \
                     updated_at TEXT, active BOOLEAN, big INTEGER, rate REAL, local_at TEXT, note TEXT)"
                ),
                "'2026-01-02T03:04:05Z', 1, 9007199254740993, 0.1, '2026-01-02T03:04:05Z'",
                "'2025-07-01T00:00:00Z', 0, -9223372036854775808, -2.5, NULL",
            ),
        };
        let decimal = |text: &str| {
            if self.engine == Engine::Sqlite {
                format!("'{text}'")
            } else {
                text.to_string()
            }
        };
        self.exec(&create).await;
        self.exec(&format!(
            "INSERT INTO {t} VALUES (1, 'CL-1', 'OPEN', '2026-01-05', 'LAYOFF', 'Acme Widgets', {}, 3, '2026-07-05', {row1}, 'Zoë — 東京 ✓')",
            decimal("12345678901234567890.1234567890")
        ))
        .await;
        self.exec(&format!(
            "INSERT INTO {t} VALUES (2, 'CL-1', 'CLOSED', '2025-06-30', 'QUIT', 'Globex', {}, 0, NULL, {row2}, '')",
            decimal("-0.0000000001")
        ))
        .await;
        self.exec(&format!(
            "INSERT INTO {t} (claim_id, claimant_id) VALUES (3, 'CL-2')"
        ))
        .await;
    }

    async fn drop_table(&self) {
        self.exec(&format!("DROP TABLE IF EXISTS {}", self.table))
            .await;
    }

    /// A connector file named `ui` for this database, with extra top-level lines and
    /// operations.
    fn connector_toml(&self, top: &str, operations: &str) -> String {
        format!(
            "name = \"ui\"\nkind = \"sql\"\ndescription = \"Unemployment insurance claims (SQL)\"\n\
             url = \"${{UI_DATABASE_URL}}\"\nmax_connections = 4\n{top}\n{operations}"
        )
    }

    /// Builds `toml` exactly as the gateway does and returns the runtime connector.
    fn connector(&self, toml: &str) -> Arc<dyn Connector> {
        let vars = Vars::only(HashMap::from([(
            "UI_DATABASE_URL".to_string(),
            self.url.clone(),
        )]));
        let file = TomlFile::from_text("ui.toml", toml, &vars).expect("valid TOML");
        let config = ConnectorConfig::Sql(file.parse().expect("a valid sql connector file"));
        let (connectors, problems) = build_connectors(&[LoadedConnector { config, file }]);
        assert!(problems.is_empty(), "{problems:?}");
        Arc::clone(connectors.get("ui").expect("the ui connector"))
    }

    /// A gateway whose only connector is `toml` over this database.
    async fn gateway(&self, toml: &str) -> TestGateway {
        TestGateway::builder()
            .schema("ui.graphql", SDL)
            .connector("ui.toml", toml)
            .var("UI_DATABASE_URL", &self.url)
            .build()
            .await
    }
}

fn args(pairs: &[(&str, Value)]) -> Arguments {
    pairs
        .iter()
        .map(|(name, value)| (name.to_string(), value.clone()))
        .collect()
}

async fn call(connector: &Arc<dyn Connector>, op: &str, pairs: &[(&str, Value)]) -> Value {
    match connector.call(op, &args(pairs)).await {
        Ok(value) => value.unwrap_or(Value::Null),
        Err(error) => panic!("`{op}` failed: {error}"),
    }
}

async fn call_err(connector: &Arc<dyn Connector>, op: &str, pairs: &[(&str, Value)]) -> CallError {
    match connector.call(op, &args(pairs)).await {
        Ok(value) => panic!("`{op}` was expected to fail, but answered {value:?}"),
        Err(error) => error,
    }
}

// ---------------------------------------------------------------------------------------------
// The graph and the operations
// ---------------------------------------------------------------------------------------------

const SDL: &str = r#"scalar Money
scalar Date
scalar DateTime

type Query {
  claims(claimant_id: ID!): [Claim] @connect(connector: "ui", operation: "claims") @public
  claim(claim_id: Int): Claim @connect(connector: "ui", operation: "claim") @public
  claimsByIds(ids: [Int!]): [Claim] @connect(connector: "ui", operation: "by_ids") @public
  slow: [Row] @connect(connector: "ui", operation: "slow") @public
}

type Claim {
  claimId: Int @map(from: "claim_id")
  status: String
  filedOn: Date @map(from: "filed_on")
  separationReason: String @map(from: "separation_reason")
  lastEmployer: String @map(from: "last_employer")
  weeklyBenefit: Money @map(from: "weekly_benefit")
  weeksPaid: Int @map(from: "weeks_paid")
  benefitEndDate: Date @map(from: "benefit_end_date")
  updatedAt: DateTime @map(from: "updated_at")
  active: Boolean
  note: String
}

type Row {
  x: Int
}
"#;

/// The operations the gateway tests use, over `table`; the claims query is the
/// unemployment-insurance demo's, word for word but for the table name.
fn operations(engine: Engine, table: &str) -> String {
    let slow = match engine {
        Engine::Postgres => "SELECT 1 AS x FROM pg_sleep(5)".to_string(),
        Engine::MariaDb => "SELECT SLEEP(5) AS x".to_string(),
        // SQLite has no sleep: count to a very large number instead.
        Engine::Sqlite => "WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < 1000000000) SELECT COUNT(*) AS x FROM c".to_string(),
    };
    format!(
        r#"[operations.claims]
description = "A claimant's claims, newest first"
query = "SELECT claim_id, status, filed_on, separation_reason, last_employer, weekly_benefit, weeks_paid, benefit_end_date, updated_at FROM {table} WHERE claimant_id = :claimant_id ORDER BY filed_on DESC"
params = {{ claimant_id = "text" }}
returns = "many"

[operations.claim]
query = "SELECT claim_id, status, active, note FROM {table} WHERE claim_id = :claim_id"
params = {{ claim_id = "integer" }}
returns = "one"

[operations.by_ids]
query = "SELECT claim_id, status FROM {table} WHERE claim_id IN (:ids) ORDER BY claim_id"
params = {{ ids = "[integer]" }}

[operations.slow]
query = "{slow}"
"#
    )
}

fn errors_of(body: &Value) -> Vec<(String, String)> {
    body["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .map(|e| {
                    (
                        e["extensions"]["code"].as_str().unwrap_or("").to_string(),
                        e["message"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// Behaviours, run once per database
// ---------------------------------------------------------------------------------------------

async fn answers_the_demo_claims_query_through_the_gateway(db: Db) {
    db.seed().await;
    let toml = db.connector_toml(
        "identifier = \"claimant_id\"",
        &operations(db.engine, &db.table),
    );
    let gateway = db.gateway(&toml).await;
    let answer = gateway
        .post(
            r#"{ claims(claimant_id: "CL-1") { claimId status filedOn separationReason lastEmployer weeklyBenefit weeksPaid benefitEndDate updatedAt }
                 none: claims(claimant_id: "CL-404") { claimId } }"#,
        )
        .await;
    assert_eq!(
        answer.body,
        json!({"data": {
            "claims": [
                {
                    "claimId": 1, "status": "OPEN", "filedOn": "2026-01-05",
                    "separationReason": "LAYOFF", "lastEmployer": "Acme Widgets",
                    "weeklyBenefit": "12345678901234567890.1234567890", "weeksPaid": 3,
                    "benefitEndDate": "2026-07-05", "updatedAt": "2026-01-02T03:04:05Z"
                },
                {
                    "claimId": 2, "status": "CLOSED", "filedOn": "2025-06-30",
                    "separationReason": "QUIT", "lastEmployer": "Globex",
                    "weeklyBenefit": "-0.0000000001", "weeksPaid": 0,
                    "benefitEndDate": null, "updatedAt": "2025-07-01T00:00:00Z"
                }
            ],
            "none": []
        }}),
        "{}",
        answer.text
    );
    db.drop_table().await;
}

async fn maps_column_types_to_exact_json(db: Db) {
    db.seed().await;
    let toml = db.connector_toml(
        "",
        &format!(
            "[operations.all]\nquery = \"SELECT * FROM {} ORDER BY claim_id\"\n",
            db.table
        ),
    );
    let connector = db.connector(&toml);
    let rows = call(&connector, "all", &[]).await;
    assert_eq!(
        rows,
        json!([
            {
                "claim_id": 1, "claimant_id": "CL-1", "status": "OPEN", "filed_on": "2026-01-05",
                "separation_reason": "LAYOFF", "last_employer": "Acme Widgets",
                "weekly_benefit": "12345678901234567890.1234567890", "weeks_paid": 3,
                "benefit_end_date": "2026-07-05", "updated_at": "2026-01-02T03:04:05Z",
                "active": true, "big": 9007199254740993_i64, "rate": 0.1,
                "local_at": "2026-01-02T03:04:05Z", "note": "Zoë — 東京 ✓"
            },
            {
                "claim_id": 2, "claimant_id": "CL-1", "status": "CLOSED", "filed_on": "2025-06-30",
                "separation_reason": "QUIT", "last_employer": "Globex",
                "weekly_benefit": "-0.0000000001", "weeks_paid": 0,
                "benefit_end_date": null, "updated_at": "2025-07-01T00:00:00Z",
                "active": false, "big": i64::MIN, "rate": -2.5,
                "local_at": null, "note": ""
            },
            {
                "claim_id": 3, "claimant_id": "CL-2", "status": null, "filed_on": null,
                "separation_reason": null, "last_employer": null, "weekly_benefit": null,
                "weeks_paid": null, "benefit_end_date": null, "updated_at": null,
                "active": null, "big": null, "rate": null, "local_at": null, "note": null
            }
        ])
    );
    db.drop_table().await;
}

async fn binds_every_parameter_type(db: Db) {
    db.seed().await;
    let t = &db.table;
    let toml = db.connector_toml(
        "",
        &format!(
            r#"[operations.find]
query = "SELECT claim_id FROM {t} WHERE claimant_id = :who AND filed_on >= :since AND weeks_paid >= :weeks AND active = :active AND weekly_benefit > :least ORDER BY claim_id"
params = {{ who = "text", since = "date", weeks = "integer", active = "boolean", least = "decimal" }}

[operations.updated]
query = "SELECT claim_id FROM {t} WHERE claim_id = :id OR claimant_id = :who AND claim_id = :id"
params = {{ id = "integer", who = "text" }}
"#
        ),
    );
    let connector = db.connector(&toml);
    let found = call(
        &connector,
        "find",
        &[
            ("who", json!("CL-1")),
            ("since", json!("2026-01-01")),
            ("weeks", json!(1)),
            ("active", json!(true)),
            ("least", json!("100.5")),
        ],
    )
    .await;
    assert_eq!(found, json!([{"claim_id": 1}]));
    // A placeholder used twice is bound at each use.
    let found = call(
        &connector,
        "updated",
        &[("id", json!("2")), ("who", json!("CL-1"))],
    )
    .await;
    assert_eq!(found, json!([{"claim_id": 2}]));
    db.drop_table().await;
}

async fn null_arguments_and_missing_rows_read_null(db: Db) {
    db.seed().await;
    let toml = db.connector_toml("", &operations(db.engine, &db.table));
    let gateway = db.gateway(&toml).await;
    let answer = gateway
        .post(
            "{ none: claim(claim_id: null) { status } missing: claim(claim_id: 404) { status } \
               three: claim(claim_id: 3) { claimId status active note } one: claim(claim_id: 1) { active note } }",
        )
        .await;
    assert_eq!(
        answer.body,
        json!({"data": {
            "none": null,
            "missing": null,
            "three": {"claimId": 3, "status": null, "active": null, "note": null},
            "one": {"active": true, "note": "Zoë — 東京 ✓"}
        }}),
        "{}",
        answer.text
    );
    // `one` over a query that finds several rows is a wrong query, not a choice to make.
    let toml = db.connector_toml(
        "",
        &format!(
            "[operations.first]\nquery = \"SELECT claim_id FROM {} WHERE claimant_id = :who\"\nparams = {{ who = \"text\" }}\nreturns = \"one\"\n",
            db.table
        ),
    );
    let connector = db.connector(&toml);
    let error = call_err(&connector, "first", &[("who", json!("CL-1"))]).await;
    assert_eq!(error.code(), ErrorCode::BackendBadResponse, "{error}");
    assert_eq!(
        call(&connector, "first", &[("who", json!("CL-2"))]).await,
        json!({"claim_id": 3})
    );
    db.drop_table().await;
}

async fn list_parameters_bind_as_one_batch(db: Db) {
    db.seed().await;
    let t = &db.table;
    let mut ops = format!(
        r#"[operations.by_ids]
query = "SELECT claim_id FROM {t} WHERE claim_id IN (:ids) ORDER BY claim_id"
params = {{ ids = "[integer]" }}

[operations.except]
query = "SELECT claim_id FROM {t} WHERE claimant_id NOT IN ( :who ) ORDER BY claim_id"
params = {{ who = "[text]" }}

[operations.by_days]
query = "SELECT claim_id FROM {t} WHERE filed_on IN (:days) AND claimant_id = :who ORDER BY claim_id"
params = {{ days = "[date]", who = "text" }}
"#
    );
    if db.engine == Engine::Postgres {
        ops.push_str(&format!(
            "\n[operations.any]\nquery = \"SELECT claim_id FROM {t} WHERE claim_id = ANY(:ids) ORDER BY claim_id\"\nparams = {{ ids = \"[integer]\" }}\n"
        ));
    }
    let connector = db.connector(&db.connector_toml("", &ops));
    let ids = |v: Value| vec![("ids", v)];
    assert_eq!(
        call(&connector, "by_ids", &ids(json!([3, 1, 99]))).await,
        json!([{"claim_id": 1}, {"claim_id": 3}])
    );
    assert_eq!(call(&connector, "by_ids", &ids(json!([]))).await, json!([]));
    assert_eq!(
        call(&connector, "except", &[("who", json!(["CL-1"]))]).await,
        json!([{"claim_id": 3}])
    );
    // An empty list excludes nothing.
    assert_eq!(
        call(&connector, "except", &[("who", json!([]))]).await,
        json!([{"claim_id": 1}, {"claim_id": 2}, {"claim_id": 3}])
    );
    assert_eq!(
        call(
            &connector,
            "by_days",
            &[
                ("days", json!(["2025-06-30", "2020-01-01"])),
                ("who", json!("CL-1"))
            ]
        )
        .await,
        json!([{"claim_id": 2}])
    );
    if db.engine == Engine::Postgres {
        assert_eq!(
            call(&connector, "any", &ids(json!([2, 3]))).await,
            json!([{"claim_id": 2}, {"claim_id": 3}])
        );
    }
    let too_many: Vec<i64> = (0..1001).collect();
    let error = call_err(&connector, "by_ids", &ids(json!(too_many))).await;
    assert_eq!(error.code(), ErrorCode::BadUserInput, "{error}");
    let error = call_err(&connector, "by_ids", &ids(json!([1, "two-secret"]))).await;
    assert_eq!(error.code(), ErrorCode::BadUserInput, "{error}");
    assert!(!error.to_string().contains("secret"), "{error}");

    // And through the graph.
    let gateway = db
        .gateway(&db.connector_toml("", &operations(db.engine, t)))
        .await;
    let answer = gateway
        .post("{ claimsByIds(ids: [2, 1]) { claimId status } }")
        .await;
    assert_eq!(
        answer.body,
        json!({"data": {"claimsByIds": [
            {"claimId": 1, "status": "OPEN"},
            {"claimId": 2, "status": "CLOSED"}
        ]}}),
        "{}",
        answer.text
    );
    db.drop_table().await;
}

async fn injection_attempts_match_nothing_and_change_nothing(db: Db) {
    db.seed().await;
    let t = db.table.clone();
    let gateway = db
        .gateway(&db.connector_toml("", &operations(db.engine, &t)))
        .await;
    for attempt in [
        "' OR '1'='1".to_string(),
        "CL-1' OR '1'='1".to_string(),
        format!("CL-1'; DROP TABLE {t}; --"),
        format!("1; DROP TABLE {t}"),
        ":other".to_string(),
        "CL-1' -- ".to_string(),
        "CL-1' /*".to_string(),
        "CL-1\\' OR 1=1 #".to_string(),
        "$$ OR 1=1 $$".to_string(),
        "?".to_string(),
    ] {
        let answer = gateway
            .post_with(
                json!({
                    "query": "query ($who: ID!) { claims(claimant_id: $who) { claimId } }",
                    "variables": {"who": attempt},
                }),
                &[],
            )
            .await;
        assert_eq!(
            answer.body,
            json!({"data": {"claims": []}}),
            "{attempt}: {}",
            answer.text
        );
    }
    // An integer parameter refuses text outright; nothing runs.
    let answer = gateway
        .post_with(
            json!({
                "query": "query ($id: Int) { claim(claim_id: $id) { status } }",
                "variables": {"id": null},
            }),
            &[],
        )
        .await;
    assert_eq!(answer.body, json!({"data": {"claim": null}}));
    let connector = db.connector(&db.connector_toml("", &operations(db.engine, &t)));
    let error = call_err(
        &connector,
        "claim",
        &[("claim_id", json!(format!("1; DROP TABLE {t}")))],
    )
    .await;
    assert_eq!(error.code(), ErrorCode::BadUserInput, "{error}");
    assert!(!error.to_string().contains("DROP"), "{error}");
    assert_eq!(db.rows().await, 3, "the table is intact");
    db.drop_table().await;
}

async fn read_only_connectors_refuse_writes(db: Db) {
    db.seed().await;
    let t = &db.table;
    let writes = format!(
        r#"[operations.rename]
query = "UPDATE {t} SET status = :status WHERE claim_id = :id"
params = {{ status = "text", id = "integer" }}

[operations.add]
query = "INSERT INTO {t} (claim_id, claimant_id) VALUES (:id, :who)"
params = {{ id = "integer", who = "text" }}
"#
    );
    let read_only = db.connector(&db.connector_toml("", &writes));
    let update = [("status", json!("HACKED")), ("id", json!(1))];
    let insert = [("id", json!(10)), ("who", json!("CL-9"))];
    let error = call_err(&read_only, "rename", &update).await;
    assert_eq!(error.code(), ErrorCode::BackendBadResponse, "{error}");
    assert!(!error.to_string().contains("HACKED"), "{error}");
    let error = call_err(&read_only, "add", &insert).await;
    assert_eq!(error.code(), ErrorCode::BackendBadResponse, "{error}");
    assert_eq!(db.status_of(1).await.as_deref(), Some("OPEN"));
    assert_eq!(db.rows().await, 3);

    let writable = db.connector(&db.connector_toml("read_only = false", &writes));
    assert_eq!(call(&writable, "rename", &update).await, json!([]));
    assert_eq!(call(&writable, "add", &insert).await, json!([]));
    assert_eq!(db.status_of(1).await.as_deref(), Some("HACKED"));
    assert_eq!(db.rows().await, 4);
    db.drop_table().await;
}

async fn a_slow_query_times_out_and_the_pool_recovers(db: Db) {
    db.seed().await;
    let toml = db.connector_toml("timeout_ms = 300", &operations(db.engine, &db.table));
    let gateway = db.gateway(&toml).await;
    let started = Instant::now();
    let answer = gateway.post("{ slow { x } }").await;
    let elapsed = started.elapsed();
    assert_eq!(
        answer.body["data"],
        json!({"slow": null}),
        "{}",
        answer.text
    );
    assert_eq!(
        errors_of(&answer.body)
            .into_iter()
            .map(|(code, _)| code)
            .collect::<Vec<_>>(),
        ["BACKEND_TIMEOUT"],
        "{}",
        answer.text
    );
    assert!(elapsed < Duration::from_secs(3), "took {elapsed:?}");
    // The connector still answers quick queries afterwards.
    let answer = gateway.post("{ claim(claim_id: 1) { status } }").await;
    assert_eq!(
        answer.body,
        json!({"data": {"claim": {"status": "OPEN"}}}),
        "{}",
        answer.text
    );
    db.drop_table().await;
}

async fn an_unreachable_database_is_unavailable_quickly(db: Db) {
    let url = match db.engine {
        Engine::Sqlite => format!(
            "sqlite://{}/missing/ui.db",
            std::env::temp_dir().join(suffix()).display()
        ),
        Engine::Postgres => {
            refused_url().replace("http://", "postgres://u:hunter2-secret@") + "/db"
        }
        Engine::MariaDb => refused_url().replace("http://", "mysql://u:hunter2-secret@") + "/db",
    };
    let toml = db.connector_toml("timeout_ms = 800", &operations(db.engine, "nowhere"));
    let gateway = TestGateway::builder()
        .schema("ui.graphql", SDL)
        .connector("ui.toml", &toml)
        .var("UI_DATABASE_URL", &url)
        .build()
        .await;
    let started = Instant::now();
    let answer = gateway.post("{ claim(claim_id: 1) { status } }").await;
    let elapsed = started.elapsed();
    assert_eq!(
        answer.body["data"],
        json!({"claim": null}),
        "{}",
        answer.text
    );
    assert_eq!(
        errors_of(&answer.body)
            .into_iter()
            .map(|(code, _)| code)
            .collect::<Vec<_>>(),
        ["BACKEND_UNAVAILABLE"],
        "{}",
        answer.text
    );
    assert!(elapsed < Duration::from_secs(3), "took {elapsed:?}");
    assert!(!answer.text.contains("hunter2"), "{}", answer.text);

    // The error the gateway logs carries no password either.
    let connector = db.connector(&toml.replace("${UI_DATABASE_URL}", &url));
    let error = call_err(&connector, "claim", &[("claim_id", json!(1))]).await;
    assert_eq!(error.code(), ErrorCode::BackendUnavailable, "{error}");
    let text = format!("{error} {error:?}");
    assert!(!text.contains("hunter2"), "{text}");
}

async fn query_errors_are_bad_responses_without_values(db: Db) {
    let toml = db.connector_toml(
        "",
        &format!(
            "[operations.missing]\nquery = \"SELECT claim_id FROM {}_nope WHERE claimant_id = :who\"\nparams = {{ who = \"text\" }}\n",
            db.table
        ),
    );
    let connector = db.connector(&toml);
    let error = call_err(&connector, "missing", &[("who", json!("CL-secret-1"))]).await;
    assert_eq!(error.code(), ErrorCode::BackendBadResponse, "{error}");
    let text = format!("{error} {error:?}");
    assert!(!text.contains("CL-secret-1"), "{text}");
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
    answers_the_demo_claims_query_through_the_gateway,
    maps_column_types_to_exact_json,
    binds_every_parameter_type,
    null_arguments_and_missing_rows_read_null,
    list_parameters_bind_as_one_batch,
    injection_attempts_match_nothing_and_change_nothing,
    read_only_connectors_refuse_writes,
    a_slow_query_times_out_and_the_pool_recovers,
    an_unreachable_database_is_unavailable_quickly,
    query_errors_are_bad_responses_without_values,
);

// ---------------------------------------------------------------------------------------------
// `civicgraph check`
// ---------------------------------------------------------------------------------------------

/// `file:line:column message` of every diagnostic `check` reports.
fn reports(project: &Project) -> Vec<String> {
    match check(project) {
        Ok(_) => panic!("the project was expected to be rejected"),
        Err(diagnostics) => diagnostics
            .0
            .iter()
            .map(|d| {
                let at = d.location.as_ref().map_or_else(String::new, |l| {
                    let file = l
                        .path
                        .file_name()
                        .map_or_else(String::new, |f| f.to_string_lossy().into_owned());
                    format!("{file}:{}:{}", l.line, l.column)
                });
                format!("{at} {}", d.message)
            })
            .collect(),
    }
}

/// `hello`, on a second connector, keeps `Query` valid when the `ui` connector is refused and
/// its fields are dropped.
const CHECK_SDL: &str = r#"type Query {
  hello: [Row] @connect(connector: "spare", operation: "one") @public
  claims(claimant_id: ID!): [Claim] @connect(connector: "ui", operation: "claims") @public
}
type Claim {
  status: String
}
type Row {
  x: Int
}
"#;

const SPARE_TOML: &str = r#"name = "spare"
kind = "sql"
url = "sqlite::memory:"

[operations.one]
query = "SELECT 1 AS x"
"#;

/// A project with the `ui` connector file `toml` (and `UI_DATABASE_URL` when given).
fn check_project(toml: &str, url: Option<&str>) -> Project {
    let mut builder = TestGateway::builder()
        .schema("ui.graphql", CHECK_SDL)
        .connector("spare.toml", SPARE_TOML)
        .connector("ui.toml", toml);
    if let Some(url) = url {
        builder = builder.var("UI_DATABASE_URL", url);
    }
    builder.write()
}

#[test]
fn check_reports_placeholder_and_type_problems_at_their_lines() {
    let toml = r#"name = "ui"
kind = "sql"
url = "${UI_DATABASE_URL}"

[operations.claims]
query = "SELECT status FROM ui_claims WHERE claimant_id = :claimant_id AND filed_on > :since"
params = { claimant_id = "text", unused = "integer", amount = "money" }
"#;
    let project = check_project(toml, Some("postgres://ui:hunter2@127.0.0.1:1/ui"));
    let mut found = reports(&project);
    found.sort();
    assert_eq!(found.len(), 3, "{found:#?}");
    assert!(
        found[0].starts_with("ui.toml:6:9 operation `claims`: `query` uses placeholder `:since`"),
        "{found:#?}"
    );
    assert!(
        found[1].starts_with("ui.toml:7:43 operation `claims`: parameter `unused` is never used"),
        "{found:#?}"
    );
    assert!(
        found[2].starts_with(
            "ui.toml:7:63 operation `claims`: parameter `amount`: unknown parameter type `money`"
        ),
        "{found:#?}"
    );
    assert!(found.iter().all(|f| !f.contains("hunter2")), "{found:#?}");
}

#[test]
fn check_refuses_an_unknown_database_without_showing_the_url() {
    let toml = r#"name = "ui"
kind = "sql"
url = "${UI_DATABASE_URL}"

[operations.claims]
query = "SELECT status FROM ui_claims WHERE claimant_id = :claimant_id"
params = { claimant_id = "text" }
"#;
    let project = check_project(toml, Some("oracle://scott:tiger-secret@db/orcl"));
    let found = reports(&project);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(found[0].starts_with("ui.toml:3:7 "), "{found:#?}");
    assert!(found[0].contains("postgres://"), "{found:#?}");
    assert!(found[0].contains("mariadb://"), "{found:#?}");
    assert!(!found[0].contains("tiger"), "{found:#?}");
}

#[test]
fn check_accepts_the_demo_connector_without_a_database() {
    let toml = r#"name = "ui"
kind = "sql"
description = "Unemployment insurance claims (SQL)"
identifier = "claimant_id"
url = "${UI_DATABASE_URL:-sqlite://ui.db?mode=ro}"
max_connections = 8

[operations.claims]
description = "A claimant's claims, newest first"
query = "SELECT claim_id, status, filed_on, separation_reason, last_employer, weekly_benefit, weeks_paid, benefit_end_date, updated_at FROM ui_claims WHERE claimant_id = :claimant_id ORDER BY filed_on DESC"
params = { claimant_id = "text" }
returns = "many"
"#;
    for url in [
        None,
        Some("postgres://ui@127.0.0.1:1/ui"),
        Some("mariadb://ui@127.0.0.1:1/ui"),
    ] {
        let project = check_project(toml, url);
        if let Err(diagnostics) = check(&project) {
            panic!("{url:?}: {diagnostics}");
        }
    }
}

#[test]
fn check_refuses_positional_markers_and_list_misuse() {
    let toml = r#"name = "ui"
kind = "sql"
url = "mysql://root@127.0.0.1:1/ui"

[operations.claims]
query = "SELECT status FROM ui_claims WHERE claimant_id = ?"

[operations.by_ids]
query = "SELECT status FROM ui_claims WHERE claimant_id = ANY(:ids)"
params = { ids = "[text]" }
"#;
    let project = check_project(toml, None);
    let mut found = reports(&project);
    found.sort();
    assert_eq!(found.len(), 2, "{found:#?}");
    assert!(
        found[0].starts_with("ui.toml:6:9 operation `claims`: `query`: `?`"),
        "{found:#?}"
    );
    assert!(
        found[1].starts_with("ui.toml:9:9 operation `by_ids`: `query`: list parameter `:ids` must be written `IN (:ids)`"),
        "{found:#?}"
    );
}
