//! Unemployment insurance as a real relational database.
//!
//! The unemployment insurance agency keeps its claims in an ordinary SQL
//! database, which the `sql` connector reads with named queries. The demo
//! and the tests need such a database filled with the synthetic
//! population's claims: [`seed`] creates two tables and inserts every
//! claimant and claim, on SQLite (the demo's default, a file), PostgreSQL or
//! MariaDB/MySQL, chosen by the URL's scheme.
//!
//! The tables (names prefixed, `ui_` by default, see [`UiTables`]):
//!
//! - `ui_claimants(claimant_id PRIMARY KEY, given_name, family_name,
//!   birth_date, postal_code)`: the agency's own record of the person. It
//!   has no citizen id: only the identity crosswalk joins the two.
//! - `ui_claims(claim_id PRIMARY KEY, claimant_id → ui_claimants, filed_on,
//!   status, separation_reason, last_employer, weekly_benefit, weeks_paid,
//!   benefit_end_date NULL, updated_at)`, indexed on `claimant_id`.
//!
//! Column types per database, so that each driver returns its natural type:
//!
//! | column | PostgreSQL | MariaDB / MySQL | SQLite |
//! |---|---|---|---|
//! | dates | `DATE` | `DATE` | `DATE` (text `YYYY-MM-DD`) |
//! | `weekly_benefit` | `DECIMAL(10,2)` | `DECIMAL(10,2)` | `TEXT` (`512.30`) |
//! | `updated_at` | `TIMESTAMP WITH TIME ZONE` | `TIMESTAMP(0)` (UTC session) | `TEXT` (RFC 3339, `…Z`) |
//!
//! Seeding drops and recreates the tables, then inserts all rows in one
//! transaction with bound parameters, in multi-row batches.
//!
//! Afterwards the agency keeps working: a [`UiWriter`] files new claims (the
//! demo's job losses, see [`super::changes`]) with the same column types, so
//! the gateway's change feed (`claims_changed_since`) sees them. SQLite's
//! `updated_at` is whole seconds, fixed width, so its text sorts in time order.

use std::fmt;
use std::path::Path;
use std::str::FromStr as _;
use std::time::{Duration, Instant};

use chrono::SecondsFormat;
use rust_decimal::Decimal;
use sqlx::mysql::{MySql, MySqlPoolOptions};
use sqlx::postgres::{PgPoolOptions, Postgres};
use sqlx::query_builder::Separated;
use sqlx::sqlite::{Sqlite, SqliteConnectOptions, SqlitePoolOptions};
use sqlx::{Database, Pool, QueryBuilder};

use super::data::{Person, Population, UnemploymentClaim};

/// How long seeding waits for a connection before giving up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Rows per `INSERT` statement: 5 and 10 bound values per row stay well
/// under every database's limit on parameters per statement (SQLite 32 766).
const CLAIMANTS_PER_INSERT: usize = 2_000;
const CLAIMS_PER_INSERT: usize = 1_000;

/// Why the unemployment insurance database could not be seeded. Messages
/// never contain the URL, which may hold a password.
#[derive(Debug, thiserror::Error)]
pub enum SeedUiDatabaseError {
    /// The URL names a database this module cannot seed.
    #[error(
        "unsupported database URL scheme `{0}`: expected sqlite:, postgres://, mysql:// or mariadb://"
    )]
    UnsupportedScheme(String),
    /// The table prefix could be used to inject SQL.
    #[error(
        "table prefix `{0}` must be 1–32 lowercase letters, digits or `_`, starting with a letter or `_`"
    )]
    BadTablePrefix(String),
    /// The database did not accept a connection.
    #[error("cannot connect to the unemployment insurance database: {0}")]
    Connect(#[source] sqlx::Error),
    /// Dropping or creating the tables failed.
    #[error("cannot create the unemployment insurance tables: {0}")]
    CreateTables(#[source] sqlx::Error),
    /// Inserting the rows failed; the transaction was rolled back.
    #[error("cannot insert the unemployment insurance rows: {0}")]
    Insert(#[source] sqlx::Error),
}

/// Which database a URL points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UiDatabaseKind {
    /// `sqlite:` URLs: a file, or memory.
    Sqlite,
    /// `postgres://` and `postgresql://` URLs.
    Postgres,
    /// `mysql://` and `mariadb://` URLs (one wire protocol).
    MySql,
}

impl UiDatabaseKind {
    /// Reads the scheme of a database URL, so callers can tell SQLite (whose
    /// URL must be turned read-only for the gateway) from the servers.
    ///
    /// # Errors
    ///
    /// [`SeedUiDatabaseError::UnsupportedScheme`] for any other scheme.
    pub fn of_url(url: &str) -> Result<Self, SeedUiDatabaseError> {
        let scheme = url.split_once(':').map_or("", |(scheme, _)| scheme);
        match scheme.to_ascii_lowercase().as_str() {
            "sqlite" => Ok(Self::Sqlite),
            "postgres" | "postgresql" => Ok(Self::Postgres),
            "mysql" | "mariadb" => Ok(Self::MySql),
            _ => Err(SeedUiDatabaseError::UnsupportedScheme(
                scheme.chars().take(20).collect(),
            )),
        }
    }
}

/// The names of the two tables, from a validated prefix, so that tests can
/// seed one PostgreSQL or MariaDB database in parallel without collisions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UiTables {
    prefix: String,
}

impl Default for UiTables {
    /// `ui_claimants` and `ui_claims`, the names `connectors/ui.toml` queries.
    fn default() -> Self {
        Self {
            prefix: "ui_".to_owned(),
        }
    }
}

impl UiTables {
    /// Tables named `<prefix>claimants` and `<prefix>claims`. The prefix is
    /// spliced into SQL (identifiers cannot be bound), so it is restricted to
    /// `[a-z_][a-z0-9_]{0,31}`.
    ///
    /// # Errors
    ///
    /// [`SeedUiDatabaseError::BadTablePrefix`] for anything else.
    pub fn with_prefix(prefix: &str) -> Result<Self, SeedUiDatabaseError> {
        let valid = (1..=32).contains(&prefix.len())
            && prefix
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            && !prefix.starts_with(|c: char| c.is_ascii_digit());
        if valid {
            Ok(Self {
                prefix: prefix.to_owned(),
            })
        } else {
            Err(SeedUiDatabaseError::BadTablePrefix(
                prefix.chars().take(40).collect(),
            ))
        }
    }

    /// The claimants table, e.g. `ui_claimants`.
    pub fn claimants(&self) -> String {
        format!("{}claimants", self.prefix)
    }

    /// The claims table, e.g. `ui_claims`.
    pub fn claims(&self) -> String {
        format!("{}claims", self.prefix)
    }
}

/// What [`seed`] wrote, for the demo's banner and for tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeedSummary {
    /// Rows in the claimants table.
    pub claimants: usize,
    /// Rows in the claims table.
    pub claims: usize,
    /// Wall time from connecting to commit.
    pub elapsed: Duration,
}

/// Creates `ui_claimants` and `ui_claims` at `url` (dropping them first) and
/// fills them with the population's claimants and claims.
///
/// # Errors
///
/// If the URL's scheme is not supported, the database cannot be reached, or
/// a statement fails. A failed insert leaves the tables empty.
pub async fn seed(url: &str, population: &Population) -> Result<SeedSummary, SeedUiDatabaseError> {
    seed_tables(url, population, &UiTables::default()).await
}

/// [`seed`] into tables with another prefix.
///
/// # Errors
///
/// As [`seed`].
pub async fn seed_tables(
    url: &str,
    population: &Population,
    tables: &UiTables,
) -> Result<SeedSummary, SeedUiDatabaseError> {
    let started = Instant::now();
    let (claimants, claims) = match UiDatabaseKind::of_url(url)? {
        UiDatabaseKind::Sqlite => {
            let options = SqliteConnectOptions::from_str(url)
                .map_err(SeedUiDatabaseError::Connect)?
                .create_if_missing(true);
            let pool = SqlitePoolOptions::new()
                .max_connections(1)
                .acquire_timeout(CONNECT_TIMEOUT)
                .connect_with(options)
                .await
                .map_err(SeedUiDatabaseError::Connect)?;
            fill_sqlite(pool, population, tables).await?
        }
        UiDatabaseKind::Postgres => {
            let pool = PgPoolOptions::new()
                .max_connections(1)
                .acquire_timeout(CONNECT_TIMEOUT)
                .connect(url)
                .await
                .map_err(SeedUiDatabaseError::Connect)?;
            fill_postgres(pool, population, tables).await?
        }
        UiDatabaseKind::MySql => {
            let pool = MySqlPoolOptions::new()
                .max_connections(1)
                .acquire_timeout(CONNECT_TIMEOUT)
                .connect(&mysql_url(url))
                .await
                .map_err(SeedUiDatabaseError::Connect)?;
            fill_mysql(pool, population, tables).await?
        }
    };
    Ok(SeedSummary {
        claimants,
        claims,
        elapsed: started.elapsed(),
    })
}

/// sqlx speaks to MariaDB through its `mysql://` driver.
fn mysql_url(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("mariadb") => {
            format!("mysql://{rest}")
        }
        _ => url.to_owned(),
    }
}

/// The URL the gateway should read the database with: SQLite files are
/// opened read-only (`mode=ro`), servers are left as given (the `sql`
/// connector opens its sessions read-only itself).
pub fn read_only_url(url: &str) -> String {
    if !matches!(UiDatabaseKind::of_url(url), Ok(UiDatabaseKind::Sqlite)) {
        return url.to_owned();
    }
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut params: Vec<&str> = query
        .split('&')
        .filter(|param| !param.is_empty() && !param.starts_with("mode="))
        .collect();
    params.push("mode=ro");
    format!("{base}?{}", params.join("&"))
}

/// A `sqlite://` URL for a database file, with `mode` (`rwc` to seed, `ro`
/// for the gateway). Characters that end a path in a URL are escaped.
pub fn sqlite_url(path: &Path, mode: &str) -> String {
    const PATH_ESCAPES: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
        .add(b' ')
        .add(b'%')
        .add(b'?')
        .add(b'#');
    let path = path.to_string_lossy();
    let path = percent_encoding::utf8_percent_encode(&path, PATH_ESCAPES);
    format!("sqlite://{path}?mode={mode}")
}

/// A database URL fit for a terminal or a log: any password is replaced by `***`.
pub fn redacted_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(user, _)| user);
            let hidden = if userinfo.contains(':') { ":***" } else { "" };
            format!("{scheme}://{user}{hidden}@{host}{tail}")
        }
        None => url.to_owned(),
    }
}

/// How one database spells the tables and binds the values.
trait Dialect: Database {
    /// Drop (claims first, for the foreign key) and create, one statement each.
    fn ddl(claimants: &str, claims: &str) -> Vec<String>;
    fn push_claimant(row: &mut Separated<'_, '_, Self, &'static str>, person: &Person);
    fn push_claim(row: &mut Separated<'_, '_, Self, &'static str>, claim: &UnemploymentClaim);
}

/// The row binds of the databases with native DATE, DECIMAL and TIMESTAMP types (PostgreSQL,
/// MySQL/MariaDB): the same code, checked against each driver's own `Encode` impls. On MySQL
/// sqlx sets the session time zone to UTC, so a TIMESTAMP stores the instant as given.
macro_rules! native_row_binds {
    () => {
        fn push_claimant(row: &mut Separated<'_, '_, Self, &'static str>, person: &Person) {
            row.push_bind(claimant_id(person))
                .push_bind(person.given_name.clone())
                .push_bind(person.family_name.clone())
                .push_bind(person.birth_date)
                .push_bind(person.address.postal_code.clone());
        }

        fn push_claim(row: &mut Separated<'_, '_, Self, &'static str>, claim: &UnemploymentClaim) {
            row.push_bind(claim.claim_id.clone())
                .push_bind(claim.claimant_id.clone())
                .push_bind(claim.filed_on)
                .push_bind(claim.status.as_str())
                .push_bind(claim.separation_reason.as_str())
                .push_bind(claim.last_employer)
                .push_bind(money(claim))
                .push_bind(weeks(claim))
                .push_bind(claim.benefit_end_date)
                .push_bind(claim.updated_at);
        }
    };
}

const STATUS_CHECK: &str =
    "CHECK (status IN ('PENDING', 'ACTIVE', 'EXHAUSTED', 'DENIED', 'CLOSED'))";
const REASON_CHECK: &str =
    "CHECK (separation_reason IN ('LAYOFF', 'PLANT_CLOSURE', 'CONTRACT_END', 'QUIT_WITH_CAUSE'))";

fn drops(claimants: &str, claims: &str) -> Vec<String> {
    vec![
        format!("DROP TABLE IF EXISTS {claims}"),
        format!("DROP TABLE IF EXISTS {claimants}"),
    ]
}

fn money(claim: &UnemploymentClaim) -> Decimal {
    Decimal::new(claim.weekly_benefit.cents(), 2)
}

fn weeks(claim: &UnemploymentClaim) -> i32 {
    // At most MAX_BENEFIT_WEEKS.
    i32::try_from(claim.weeks_paid).unwrap_or(i32::MAX)
}

impl Dialect for Sqlite {
    fn ddl(claimants: &str, claims: &str) -> Vec<String> {
        let mut statements = drops(claimants, claims);
        statements.push(format!(
            "CREATE TABLE {claimants} (\
             claimant_id TEXT NOT NULL PRIMARY KEY, \
             given_name TEXT NOT NULL, \
             family_name TEXT NOT NULL, \
             birth_date DATE NOT NULL, \
             postal_code TEXT NOT NULL)"
        ));
        statements.push(format!(
            "CREATE TABLE {claims} (\
             claim_id TEXT NOT NULL PRIMARY KEY, \
             claimant_id TEXT NOT NULL REFERENCES {claimants} (claimant_id), \
             filed_on DATE NOT NULL, \
             status TEXT NOT NULL {STATUS_CHECK}, \
             separation_reason TEXT NOT NULL {REASON_CHECK}, \
             last_employer TEXT NOT NULL, \
             weekly_benefit TEXT NOT NULL, \
             weeks_paid INTEGER NOT NULL, \
             benefit_end_date DATE NULL, \
             updated_at TEXT NOT NULL)"
        ));
        statements.push(format!(
            "CREATE INDEX {claims}_claimant_id ON {claims} (claimant_id)"
        ));
        statements
    }

    fn push_claimant(row: &mut Separated<'_, '_, Self, &'static str>, person: &Person) {
        row.push_bind(claimant_id(person))
            .push_bind(person.given_name.clone())
            .push_bind(person.family_name.clone())
            .push_bind(person.birth_date.to_string())
            .push_bind(person.address.postal_code.clone());
    }

    fn push_claim(row: &mut Separated<'_, '_, Self, &'static str>, claim: &UnemploymentClaim) {
        row.push_bind(claim.claim_id.clone())
            .push_bind(claim.claimant_id.clone())
            .push_bind(claim.filed_on.to_string())
            .push_bind(claim.status.as_str())
            .push_bind(claim.separation_reason.as_str())
            .push_bind(claim.last_employer)
            .push_bind(claim.weekly_benefit.to_string())
            .push_bind(weeks(claim))
            .push_bind(claim.benefit_end_date.map(|date| date.to_string()))
            .push_bind(claim.updated_at.to_rfc3339_opts(SecondsFormat::Secs, true));
    }
}

impl Dialect for Postgres {
    fn ddl(claimants: &str, claims: &str) -> Vec<String> {
        let mut statements = drops(claimants, claims);
        statements.push(format!(
            "CREATE TABLE {claimants} (\
             claimant_id VARCHAR(16) PRIMARY KEY, \
             given_name VARCHAR(64) NOT NULL, \
             family_name VARCHAR(64) NOT NULL, \
             birth_date DATE NOT NULL, \
             postal_code VARCHAR(10) NOT NULL)"
        ));
        statements.push(format!(
            "CREATE TABLE {claims} (\
             claim_id VARCHAR(24) PRIMARY KEY, \
             claimant_id VARCHAR(16) NOT NULL REFERENCES {claimants} (claimant_id), \
             filed_on DATE NOT NULL, \
             status VARCHAR(16) NOT NULL {STATUS_CHECK}, \
             separation_reason VARCHAR(24) NOT NULL {REASON_CHECK}, \
             last_employer VARCHAR(128) NOT NULL, \
             weekly_benefit DECIMAL(10,2) NOT NULL, \
             weeks_paid INTEGER NOT NULL, \
             benefit_end_date DATE NULL, \
             updated_at TIMESTAMP WITH TIME ZONE NOT NULL)"
        ));
        statements.push(format!(
            "CREATE INDEX {claims}_claimant_id ON {claims} (claimant_id)"
        ));
        statements
    }

    native_row_binds!();
}

impl Dialect for MySql {
    fn ddl(claimants: &str, claims: &str) -> Vec<String> {
        let mut statements = drops(claimants, claims);
        statements.push(format!(
            "CREATE TABLE {claimants} (\
             claimant_id VARCHAR(16) NOT NULL PRIMARY KEY, \
             given_name VARCHAR(64) NOT NULL, \
             family_name VARCHAR(64) NOT NULL, \
             birth_date DATE NOT NULL, \
             postal_code VARCHAR(10) NOT NULL\
             ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
        ));
        // An explicit DEFAULT keeps `updated_at` from being rewritten on every UPDATE
        // (MySQL's automatic TIMESTAMP initialization).
        statements.push(format!(
            "CREATE TABLE {claims} (\
             claim_id VARCHAR(24) NOT NULL PRIMARY KEY, \
             claimant_id VARCHAR(16) NOT NULL, \
             filed_on DATE NOT NULL, \
             status VARCHAR(16) NOT NULL {STATUS_CHECK}, \
             separation_reason VARCHAR(24) NOT NULL {REASON_CHECK}, \
             last_employer VARCHAR(128) NOT NULL, \
             weekly_benefit DECIMAL(10,2) NOT NULL, \
             weeks_paid INT NOT NULL, \
             benefit_end_date DATE NULL, \
             updated_at TIMESTAMP(0) NOT NULL DEFAULT CURRENT_TIMESTAMP, \
             INDEX {claims}_claimant_id (claimant_id), \
             FOREIGN KEY (claimant_id) REFERENCES {claimants} (claimant_id)\
             ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
        ));
        statements
    }

    native_row_binds!();
}

fn claimant_id(person: &Person) -> String {
    // Only claimants are inserted, and every claimant has an id.
    person.claimant_id.clone().unwrap_or_default()
}

/// Defines `async fn $name(pool, population, tables)`, which recreates the
/// tables and inserts every row in one transaction, returning the numbers of
/// claimants and claims. One concrete function per database, because
/// `QueryBuilder`'s argument lifetimes do not survive generic executors.
macro_rules! define_fill {
    ($name:ident, $db:ty) => {
        async fn $name(
            pool: Pool<$db>,
            population: &Population,
            tables: &UiTables,
        ) -> Result<(usize, usize), SeedUiDatabaseError> {
            let (claimants_table, claims_table) = (tables.claimants(), tables.claims());
            // DDL outside the transaction: MySQL commits implicitly on DDL anyway.
            for statement in <$db as Dialect>::ddl(&claimants_table, &claims_table) {
                sqlx::raw_sql(&statement)
                    .execute(&pool)
                    .await
                    .map_err(SeedUiDatabaseError::CreateTables)?;
            }

            let claimants: Vec<(&Person, &[UnemploymentClaim])> =
                population.claimants().collect();
            let claims: Vec<&UnemploymentClaim> = claimants
                .iter()
                .flat_map(|(_, claims)| claims.iter())
                .collect();

            let mut tx = pool.begin().await.map_err(SeedUiDatabaseError::Insert)?;
            for batch in claimants.chunks(CLAIMANTS_PER_INSERT) {
                let mut insert = QueryBuilder::<$db>::new(format!(
                    "INSERT INTO {claimants_table} \
                     (claimant_id, given_name, family_name, birth_date, postal_code) "
                ));
                insert.push_values(batch, |mut row, (person, _)| {
                    <$db as Dialect>::push_claimant(&mut row, person);
                });
                insert
                    .build()
                    .execute(&mut *tx)
                    .await
                    .map_err(SeedUiDatabaseError::Insert)?;
            }
            for batch in claims.chunks(CLAIMS_PER_INSERT) {
                let mut insert = QueryBuilder::<$db>::new(format!(
                    "INSERT INTO {claims_table} \
                     (claim_id, claimant_id, filed_on, status, separation_reason, \
                     last_employer, weekly_benefit, weeks_paid, benefit_end_date, updated_at) "
                ));
                insert.push_values(batch, |mut row, claim| {
                    <$db as Dialect>::push_claim(&mut row, claim);
                });
                insert
                    .build()
                    .execute(&mut *tx)
                    .await
                    .map_err(SeedUiDatabaseError::Insert)?;
            }
            tx.commit().await.map_err(SeedUiDatabaseError::Insert)?;
            pool.close().await;
            Ok((claimants.len(), claims.len()))
        }
    };
}

define_fill!(fill_sqlite, Sqlite);
define_fill!(fill_postgres, Postgres);
define_fill!(fill_mysql, MySql);

/// Why a claim could not be filed in the unemployment insurance database. Messages never
/// contain the URL, which may hold a password.
#[derive(Debug, thiserror::Error)]
pub enum WriteClaimError {
    /// The URL names a database this module cannot write.
    #[error(transparent)]
    Scheme(#[from] SeedUiDatabaseError),
    /// The database did not accept a connection.
    #[error("cannot connect to the unemployment insurance database: {0}")]
    Connect(#[source] sqlx::Error),
    /// The insert failed (a duplicate claim id, a closed database).
    #[error("cannot insert the claim: {0}")]
    Insert(#[source] sqlx::Error),
}

/// A writing connection to the unemployment insurance database, as the agency's own
/// case-handling system has: it files new claims after seeding.
pub struct UiWriter {
    pool: WriterPool,
    claims_table: String,
}

enum WriterPool {
    Sqlite(Pool<Sqlite>),
    Postgres(Pool<Postgres>),
    MySql(Pool<MySql>),
}

impl fmt::Debug for UiWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.pool {
            WriterPool::Sqlite(_) => "sqlite",
            WriterPool::Postgres(_) => "postgres",
            WriterPool::MySql(_) => "mysql",
        };
        f.debug_struct("UiWriter")
            .field("database", &kind)
            .field("claims_table", &self.claims_table)
            .finish()
    }
}

/// Defines `async fn $name(pool, table, claim)`, one `INSERT` of one claim with bound values.
macro_rules! define_insert {
    ($name:ident, $db:ty) => {
        async fn $name(
            pool: &Pool<$db>,
            table: &str,
            claim: &UnemploymentClaim,
        ) -> Result<(), sqlx::Error> {
            let mut insert = QueryBuilder::<$db>::new(format!(
                "INSERT INTO {table} \
                 (claim_id, claimant_id, filed_on, status, separation_reason, \
                 last_employer, weekly_benefit, weeks_paid, benefit_end_date, updated_at) "
            ));
            insert.push_values(std::iter::once(claim), |mut row, claim| {
                <$db as Dialect>::push_claim(&mut row, claim);
            });
            insert.build().execute(pool).await.map(|_| ())
        }
    };
}

define_insert!(insert_sqlite, Sqlite);
define_insert!(insert_postgres, Postgres);
define_insert!(insert_mysql, MySql);

impl UiWriter {
    /// Connects (one connection: claims are filed one at a time) to the database at `url`,
    /// a URL that may write (`mode=rwc` for SQLite), whose tables [`seed_tables`] created.
    ///
    /// # Errors
    ///
    /// If the URL's scheme is not supported or the database cannot be reached.
    pub async fn connect(url: &str, tables: &UiTables) -> Result<Self, WriteClaimError> {
        let pool = match UiDatabaseKind::of_url(url)? {
            UiDatabaseKind::Sqlite => {
                let options =
                    SqliteConnectOptions::from_str(url).map_err(WriteClaimError::Connect)?;
                WriterPool::Sqlite(
                    SqlitePoolOptions::new()
                        .max_connections(1)
                        .acquire_timeout(CONNECT_TIMEOUT)
                        .connect_with(options)
                        .await
                        .map_err(WriteClaimError::Connect)?,
                )
            }
            UiDatabaseKind::Postgres => WriterPool::Postgres(
                PgPoolOptions::new()
                    .max_connections(1)
                    .acquire_timeout(CONNECT_TIMEOUT)
                    .connect(url)
                    .await
                    .map_err(WriteClaimError::Connect)?,
            ),
            UiDatabaseKind::MySql => WriterPool::MySql(
                MySqlPoolOptions::new()
                    .max_connections(1)
                    .acquire_timeout(CONNECT_TIMEOUT)
                    .connect(&mysql_url(url))
                    .await
                    .map_err(WriteClaimError::Connect)?,
            ),
        };
        Ok(Self {
            pool,
            claims_table: tables.claims(),
        })
    }

    /// Files one claim (its claimant must already be in the claimants table).
    ///
    /// # Errors
    ///
    /// If the insert fails, e.g. for a claim id already taken; nothing is written then.
    pub async fn insert_claim(&self, claim: &UnemploymentClaim) -> Result<(), WriteClaimError> {
        let table = self.claims_table.as_str();
        match &self.pool {
            WriterPool::Sqlite(pool) => insert_sqlite(pool, table, claim).await,
            WriterPool::Postgres(pool) => insert_postgres(pool, table, claim).await,
            WriterPool::MySql(pool) => insert_mysql(pool, table, claim).await,
        }
        .map_err(WriteClaimError::Insert)
    }

    /// Closes the connection, so a temporary SQLite file can be removed after.
    pub async fn close(self) {
        match self.pool {
            WriterPool::Sqlite(pool) => pool.close().await,
            WriterPool::Postgres(pool) => pool.close().await,
            WriterPool::MySql(pool) => pool.close().await,
        }
    }
}

impl fmt::Display for UiTables {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}claimants, {}claims", self.prefix, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_schemes_pick_the_database() {
        assert_eq!(
            UiDatabaseKind::of_url("sqlite:///tmp/ui.db?mode=rwc").ok(),
            Some(UiDatabaseKind::Sqlite)
        );
        assert_eq!(
            UiDatabaseKind::of_url("postgres://u@h/db").ok(),
            Some(UiDatabaseKind::Postgres)
        );
        assert_eq!(
            UiDatabaseKind::of_url("MariaDB://u@h/db").ok(),
            Some(UiDatabaseKind::MySql)
        );
        assert!(matches!(
            UiDatabaseKind::of_url("oracle://scott:tiger@h/db"),
            Err(SeedUiDatabaseError::UnsupportedScheme(scheme)) if scheme == "oracle"
        ));
        assert_eq!(
            mysql_url("mariadb://root@h:3306/t"),
            "mysql://root@h:3306/t"
        );
        assert_eq!(mysql_url("mysql://root@h/t"), "mysql://root@h/t");
    }

    #[test]
    fn table_prefixes_cannot_carry_sql() {
        assert!(UiTables::with_prefix("t_42_").is_ok());
        for bad in ["", "1ui_", "ui;drop", "UI_", "ui-", &"x".repeat(33)] {
            assert!(UiTables::with_prefix(bad).is_err(), "{bad}");
        }
        assert_eq!(UiTables::default().claims(), "ui_claims");
    }

    #[test]
    fn sqlite_urls_become_read_only_and_others_stay() {
        assert_eq!(
            read_only_url("sqlite:///tmp/x/ui.db?mode=rwc"),
            "sqlite:///tmp/x/ui.db?mode=ro"
        );
        assert_eq!(
            read_only_url("sqlite://ui.db?cache=shared&mode=rw"),
            "sqlite://ui.db?cache=shared&mode=ro"
        );
        assert_eq!(read_only_url("sqlite://ui.db"), "sqlite://ui.db?mode=ro");
        let server = "postgres://u:p@127.0.0.1/test";
        assert_eq!(read_only_url(server), server);
        assert_eq!(
            sqlite_url(Path::new("/tmp/a b/ui#1.db"), "ro"),
            "sqlite:///tmp/a%20b/ui%231.db?mode=ro"
        );
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redacted_url("mysql://root:s3cret@127.0.0.1:3306/test"),
            "mysql://root:***@127.0.0.1:3306/test"
        );
        assert_eq!(
            redacted_url("postgres://postgres@127.0.0.1/test"),
            "postgres://postgres@127.0.0.1/test"
        );
        assert_eq!(
            redacted_url("sqlite:///tmp/ui.db?mode=ro"),
            "sqlite:///tmp/ui.db?mode=ro"
        );
    }
}
