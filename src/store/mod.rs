//! The gateway's own database: SQLite by default, PostgreSQL for several instances.
//!
//! It holds the identity crosswalk, the mainframe extract tables and the consent ledger (consents
//! and their change history), the audit trail, and the life-event outbox with its deliveries.
//! The schema is versioned by embedded migrations that run when the store opens, so a fresh
//! database and an old one end up the same.

use std::borrow::Cow;
use std::time::Duration;

use sqlx::migrate::{Migration, MigrationType, Migrator};

use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use sqlx::{PgPool, SqlitePool};

use crate::config::StorageConfig;

#[cfg(test)]
pub(crate) mod testing;

/// Why the store could not be opened or reached.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The URL names no supported database.
    #[error("`storage.url` must start with `sqlite:` or `postgres://` (got `{scheme}`)")]
    UnsupportedUrl {
        /// What the URL started with.
        scheme: String,
    },
    /// The database refused or failed.
    #[error("the store is unreachable: {0}")]
    Database(#[from] sqlx::Error),
    /// The schema could not be brought up to date.
    #[error("the store's schema could not be migrated: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// Runs the same body on whichever pool the store has; the SQL is written once in the
/// `$n` parameter style both SQLite and PostgreSQL accept.
macro_rules! on_pool {
    ($store:expr, $pool:ident => $body:expr) => {
        match $store {
            $crate::store::Store::Sqlite($pool) => $body,
            $crate::store::Store::Postgres($pool) => $body,
        }
    };
}
pub(crate) use on_pool;

/// Opens a transaction that will write. On SQLite it takes the write lock up front
/// (`BEGIN IMMEDIATE`): a deferred transaction that reads and then writes cannot upgrade its
/// lock while another connection writes, and SQLite refuses it at once ("database is locked")
/// instead of waiting out the busy timeout. PostgreSQL's row locks need no such care.
pub(crate) trait BeginWrite {
    /// The database the pool speaks.
    type Db: sqlx::Database;

    /// A transaction that holds the right to write from its first statement.
    fn begin_write(
        &self,
    ) -> impl std::future::Future<Output = Result<sqlx::Transaction<'static, Self::Db>, sqlx::Error>>
    + Send;
}

impl BeginWrite for SqlitePool {
    type Db = sqlx::Sqlite;

    fn begin_write(
        &self,
    ) -> impl std::future::Future<Output = Result<sqlx::Transaction<'static, Self::Db>, sqlx::Error>>
    + Send {
        self.begin_with("BEGIN IMMEDIATE")
    }
}

impl BeginWrite for PgPool {
    type Db = sqlx::Postgres;

    fn begin_write(
        &self,
    ) -> impl std::future::Future<Output = Result<sqlx::Transaction<'static, Self::Db>, sqlx::Error>>
    + Send {
        self.begin()
    }
}

/// One schema change: its version, a description, and the SQL per database.
struct Change {
    version: i64,
    description: &'static str,
    sqlite: &'static str,
    postgres: &'static str,
}

/// Every schema change, oldest first. Files are embedded so the binary carries its schema;
/// a released change is never edited (sqlx checks each one's checksum), only followed.
const CHANGES: &[Change] = &[
    Change {
        version: 20261122000001,
        description: "identity links",
        sqlite: include_str!("migrations/sqlite/20261122000001_identity_links.sql"),
        postgres: include_str!("migrations/postgres/20261122000001_identity_links.sql"),
    },
    Change {
        version: 20261122000002,
        description: "mainframe extracts",
        sqlite: include_str!("migrations/sqlite/20261122000002_mainframe_extracts.sql"),
        postgres: include_str!("migrations/postgres/20261122000002_mainframe_extracts.sql"),
    },
    Change {
        version: 20261122000003,
        description: "extract rows in key order",
        sqlite: include_str!("migrations/sqlite/20261122000003_extract_rows_key_order.sql"),
        postgres: include_str!("migrations/postgres/20261122000003_extract_rows_key_order.sql"),
    },
    Change {
        version: 20261122000004,
        description: "consents",
        sqlite: include_str!("migrations/sqlite/20261122000004_consents.sql"),
        postgres: include_str!("migrations/postgres/20261122000004_consents.sql"),
    },
    Change {
        version: 20261122000005,
        description: "audit trail",
        sqlite: include_str!("migrations/sqlite/20261122000005_audit_trail.sql"),
        postgres: include_str!("migrations/postgres/20261122000005_audit_trail.sql"),
    },
    Change {
        version: 20261123000001,
        description: "life events",
        sqlite: include_str!("migrations/sqlite/20261123000001_life_events.sql"),
        postgres: include_str!("migrations/postgres/20261123000001_life_events.sql"),
    },
];

fn migrator(sql: impl Fn(&Change) -> &'static str) -> Migrator {
    let migrations: Vec<Migration> = CHANGES
        .iter()
        .map(|change| {
            Migration::new(
                change.version,
                Cow::Borrowed(change.description),
                MigrationType::Simple,
                Cow::Borrowed(sql(change)),
                false,
            )
        })
        .collect();
    Migrator {
        migrations: Cow::Owned(migrations),
        ..Migrator::DEFAULT
    }
}

/// A pool on the configured database.
#[derive(Debug, Clone)]
pub enum Store {
    /// Embedded: one file, or memory for the demo.
    Sqlite(SqlitePool),
    /// Shared by several gateway instances.
    Postgres(PgPool),
}

impl Store {
    /// Opens the pool (and creates an SQLite file when the URL says `mode=rwc`), then runs
    /// any migrations the database has not seen.
    pub async fn connect(config: &StorageConfig) -> Result<Self, StoreError> {
        let url = config.url.as_str();
        if url.starts_with("sqlite:") {
            let options: SqliteConnectOptions = url
                .parse::<SqliteConnectOptions>()?
                .foreign_keys(true)
                .busy_timeout(Duration::from_secs(5));
            // Each connection to `:memory:` is a database of its own, and it vanishes when
            // the connection closes: keep exactly one, forever.
            let memory = url.contains(":memory:") || url.contains("mode=memory");
            let pool = if memory {
                SqlitePoolOptions::new()
                    .max_connections(1)
                    .min_connections(1)
                    .idle_timeout(None)
                    .max_lifetime(None)
            } else {
                SqlitePoolOptions::new().max_connections(config.max_connections.max(1))
            }
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await?;
            migrator(|c| c.sqlite).run(&pool).await?;
            Ok(Self::Sqlite(pool))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let pool = PgPoolOptions::new()
                .max_connections(config.max_connections.max(1))
                .acquire_timeout(Duration::from_secs(5))
                .connect(url)
                .await?;
            migrator(|c| c.postgres).run(&pool).await?;
            Ok(Self::Postgres(pool))
        } else {
            Err(StoreError::UnsupportedUrl {
                scheme: url.split(':').next().unwrap_or_default().to_string(),
            })
        }
    }

    /// A round trip to the database, for `/readyz`.
    pub async fn ping(&self) -> Result<(), StoreError> {
        match self {
            Self::Sqlite(pool) => sqlx::query("SELECT 1").execute(pool).await.map(drop)?,
            Self::Postgres(pool) => sqlx::query("SELECT 1").execute(pool).await.map(drop)?,
        }
        Ok(())
    }

    /// Closes every connection; called on shutdown so SQLite files are left clean.
    pub async fn close(&self) {
        match self {
            Self::Sqlite(pool) => pool.close().await,
            Self::Postgres(pool) => pool.close().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sqlite_memory_store_answers_pings() {
        let store = Store::connect(&StorageConfig {
            url: "sqlite::memory:".into(),
            max_connections: 1,
        })
        .await
        .expect("in-memory SQLite opens");
        store.ping().await.expect("ping");
        store.close().await;
    }

    #[tokio::test]
    async fn postgres_store_answers_pings() {
        let Ok(url) = std::env::var("CIVICGRAPH_TEST_POSTGRES_URL") else {
            eprintln!("skipped: CIVICGRAPH_TEST_POSTGRES_URL is not set");
            return;
        };
        let store = Store::connect(&StorageConfig {
            url,
            max_connections: 2,
        })
        .await
        .expect("PostgreSQL from CIVICGRAPH_TEST_POSTGRES_URL opens");
        store.ping().await.expect("ping");
        store.close().await;
    }

    #[tokio::test]
    async fn unsupported_urls_are_named() {
        let error = Store::connect(&StorageConfig {
            url: "mysql://x".into(),
            max_connections: 1,
        })
        .await
        .expect_err("mysql is not a store");
        assert_eq!(
            error.to_string(),
            "`storage.url` must start with `sqlite:` or `postgres://` (got `mysql`)"
        );
    }
}
