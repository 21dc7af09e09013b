//! The gateway's own database: SQLite by default, PostgreSQL for several instances.
//!
//! Later stages keep consent, audit, identity links and the event outbox here; today the
//! gateway needs it reachable to call itself ready.

use std::time::Duration;

use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use sqlx::{PgPool, SqlitePool};

use crate::config::StorageConfig;

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
    /// Opens the pool (and creates an SQLite file when the URL says `mode=rwc`).
    pub async fn connect(config: &StorageConfig) -> Result<Self, StoreError> {
        let url = config.url.as_str();
        if url.starts_with("sqlite:") {
            let options: SqliteConnectOptions = url.parse()?;
            let pool = SqlitePoolOptions::new()
                .max_connections(config.max_connections.max(1))
                .acquire_timeout(Duration::from_secs(5))
                .connect_with(options)
                .await?;
            Ok(Self::Sqlite(pool))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let pool = PgPoolOptions::new()
                .max_connections(config.max_connections.max(1))
                .acquire_timeout(Duration::from_secs(5))
                .connect(url)
                .await?;
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
