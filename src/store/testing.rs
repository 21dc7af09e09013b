//! Stores for tests: an SQLite file in a temporary directory, or (when
//! `CIVICGRAPH_TEST_POSTGRES_URL` is set) a PostgreSQL schema of the test's own, so parallel
//! tests never meet. [`on_both_stores!`] runs one test body on each.

use crate::config::StorageConfig;
use crate::store::{Store, on_pool};

/// One test's database, and what a test needs to reach past the code under test.
pub(crate) struct TestStore {
    pub(crate) store: Store,
    /// Holds the SQLite file, and any files the test writes (checkpoints, keys).
    pub(crate) dir: tempfile::TempDir,
    /// The URL the store was opened with (for a second, independent connection).
    pub(crate) url: String,
    /// The administrator pool and the test's schema, dropped on [`close`](Self::close).
    postgres: Option<(sqlx::PgPool, String)>,
}

impl TestStore {
    /// A store in `file_name` in a fresh temporary directory.
    pub(crate) async fn sqlite(file_name: &str) -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let url = format!("sqlite://{}?mode=rwc", dir.path().join(file_name).display());
        let store = Store::connect(&StorageConfig {
            url: url.clone(),
            max_connections: 4,
        })
        .await
        .expect("SQLite file store");
        Self {
            store,
            dir,
            url,
            postgres: None,
        }
    }

    /// A store in a fresh `cg_<uuid>` schema, checked to be where its connections point and
    /// where the migrations made each of `expect_tables`. `None` (and a note on stderr) when
    /// no PostgreSQL is configured.
    pub(crate) async fn postgres(expect_tables: &[&str]) -> Option<Self> {
        let Ok(url) = std::env::var("CIVICGRAPH_TEST_POSTGRES_URL") else {
            eprintln!("skipped: CIVICGRAPH_TEST_POSTGRES_URL is not set");
            return None;
        };
        let schema = format!("cg_{}", uuid::Uuid::new_v4().simple());
        let admin = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .connect(&url)
            .await
            .expect("PostgreSQL from CIVICGRAPH_TEST_POSTGRES_URL");
        sqlx::query(&format!("CREATE SCHEMA {schema}"))
            .execute(&admin)
            .await
            .expect("create schema");
        let separator = if url.contains('?') { '&' } else { '?' };
        let url = format!("{url}{separator}options=-c%20search_path%3D{schema}");
        let store = Store::connect(&StorageConfig {
            url: url.clone(),
            max_connections: 4,
        })
        .await
        .expect("store in its own schema");
        let Store::Postgres(pool) = &store else {
            unreachable!("a postgres:// URL opens PostgreSQL")
        };
        let (current,): (String,) = sqlx::query_as("SELECT current_schema()")
            .fetch_one(pool)
            .await
            .expect("current_schema");
        assert_eq!(
            current, schema,
            "the store's connections use the test schema"
        );
        for table in expect_tables {
            let (tables,): (i64,) = sqlx::query_as(
                "SELECT count(*) FROM information_schema.tables \
                 WHERE table_schema = $1 AND table_name = $2",
            )
            .bind(&schema)
            .bind(table)
            .fetch_one(&admin)
            .await
            .expect("catalogue");
            assert_eq!(
                tables, 1,
                "the migrations made `{table}` in the test schema"
            );
        }
        Some(Self {
            store,
            dir: tempfile::tempdir().expect("temporary directory"),
            url,
            postgres: Some((admin, schema)),
        })
    }

    pub(crate) fn is_postgres(&self) -> bool {
        self.postgres.is_some()
    }

    /// Runs administrator SQL (several statements allowed) on the store, past the code
    /// under test.
    pub(crate) async fn execute(&self, sql: &str) {
        on_pool!(&self.store, pool => {
            sqlx::raw_sql(sql).execute(pool).await.expect("administrator SQL");
        });
    }

    /// Rows in `table`, read past the code under test.
    pub(crate) async fn count(&self, table: &str) -> i64 {
        let sql = format!("SELECT count(*) FROM {table}");
        on_pool!(&self.store, pool => {
            let (count,): (i64,) = sqlx::query_as(&sql).fetch_one(pool).await.expect("count");
            count
        })
    }

    /// Closes the store, then drops the PostgreSQL schema.
    pub(crate) async fn close(self) {
        self.store.close().await;
        if let Some((admin, schema)) = self.postgres {
            sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
                .execute(&admin)
                .await
                .expect("drop schema");
            admin.close().await;
        }
    }
}

/// Runs each async test body (`async fn name(db: &TestStore)`, next to the call) on an SQLite
/// file and, when configured, on PostgreSQL: makes `name::sqlite` and `name::postgres`.
///
/// `on_both_stores!(sqlite "file.db", postgres &["table", …]; name, …)` passes the file name
/// to [`TestStore::sqlite`] and the tables to [`TestStore::postgres`].
macro_rules! on_both_stores {
    (sqlite $file:literal, postgres $tables:expr; $($test:ident),+ $(,)?) => {$(
        mod $test {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                let db = $crate::store::testing::TestStore::sqlite($file).await;
                super::$test(&db).await;
                db.close().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                let Some(db) = $crate::store::testing::TestStore::postgres($tables).await else {
                    return;
                };
                super::$test(&db).await;
                db.close().await;
            }
        }
    )+};
}
pub(crate) use on_both_stores;
