//! The audit trail: one record per read of a protected field, in an append-only, hash-chained
//! table of the gateway's store.
//!
//! Each record carries the hash of the one before it, so an edited, removed or re-ordered
//! record breaks the chain. A database administrator could still cut the chain's tail and
//! rewind its head consistently; signed checkpoints of the head, appended to a file outside
//! the database, catch that. `civicgraph audit verify` walks both.
//!
//! - [`chain`]: the record, its hash, and [`AuditLog`] (append a request's records in one
//!   transaction under a timeout; the chain head; a citizen's own records, newest first).
//! - [`checkpoint`]: signed chain heads appended to the checkpoint file, and the background
//!   [`Checkpointer`].
//! - [`verify`](mod@verify): walks the chain and the checkpoints and names the first problem.

pub mod chain;
pub mod checkpoint;
pub mod verify;

pub use chain::{
    AuditError, AuditLog, AuditRecord, ChainHead, Decision, GENESIS_HASH, ParseDecisionError,
    StoredRecord, record_hash,
};
pub use checkpoint::{CHECKPOINT_TYPE, CheckpointClaims, Checkpointer, write_checkpoint};
pub use verify::{ChainProblem, VerifyReport, verify};

/// Stores for the audit tests: an SQLite file in a temporary directory, or (when
/// `CIVICGRAPH_TEST_POSTGRES_URL` is set) a PostgreSQL schema of the test's own.
#[cfg(test)]
pub(crate) mod testing {
    use std::collections::BTreeSet;
    use std::time::Duration;

    use chrono::{DateTime, TimeZone, Utc};

    use super::{AuditLog, AuditRecord, Decision};
    use crate::config::StorageConfig;
    use crate::identity::CitizenId;
    use crate::store::{Store, on_pool};

    /// One test's database, and what a test needs to attack it.
    pub(crate) struct TestDb {
        pub(crate) store: Store,
        /// Holds the SQLite file, the checkpoint files and the signing key.
        pub(crate) dir: tempfile::TempDir,
        /// The URL the store was opened with (for a second, independent pool).
        pub(crate) url: String,
        postgres: Option<(sqlx::PgPool, String)>,
    }

    impl TestDb {
        pub(crate) async fn sqlite() -> Self {
            let dir = tempfile::tempdir().expect("temporary directory");
            let url = format!(
                "sqlite://{}?mode=rwc",
                dir.path().join("audit.db").display()
            );
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

        /// `None` (and a note on stderr) when no PostgreSQL is configured.
        pub(crate) async fn postgres() -> Option<Self> {
            let Ok(url) = std::env::var("CIVICGRAPH_TEST_POSTGRES_URL") else {
                eprintln!("skipped: CIVICGRAPH_TEST_POSTGRES_URL is not set");
                return None;
            };
            let schema = format!("cg_{}", uuid::Uuid::new_v4().simple());
            let admin = sqlx::PgPool::connect(&url).await.expect("PostgreSQL");
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
            let (tables,): (i64,) = sqlx::query_as(
                "SELECT count(*) FROM information_schema.tables \
                 WHERE table_schema = $1 AND table_name = 'audit_records'",
            )
            .bind(&schema)
            .fetch_one(&admin)
            .await
            .expect("catalogue");
            assert_eq!(tables, 1, "the migrations ran in the test schema");
            Some(Self {
                store,
                dir: tempfile::tempdir().expect("temporary directory"),
                url,
                postgres: Some((admin, schema)),
            })
        }

        pub(crate) fn log(&self, timeout: Duration) -> AuditLog {
            AuditLog::new(self.store.clone(), timeout)
        }

        pub(crate) fn is_postgres(&self) -> bool {
            self.postgres.is_some()
        }

        /// Runs administrator SQL (several statements allowed) on the store.
        pub(crate) async fn execute(&self, sql: &str) {
            on_pool!(&self.store, pool => {
                sqlx::raw_sql(sql).execute(pool).await.expect("administrator SQL");
            });
        }

        /// What an attacker with schema rights does first.
        pub(crate) async fn drop_triggers(&self) {
            if self.is_postgres() {
                self.execute(
                    "DROP TRIGGER audit_records_append_only ON audit_records; \
                     DROP TRIGGER audit_records_no_truncate ON audit_records; \
                     DROP TRIGGER audit_head_no_delete ON audit_head; \
                     DROP TRIGGER audit_head_no_rewind ON audit_head;",
                )
                .await;
            } else {
                self.execute(
                    "DROP TRIGGER audit_records_no_update; DROP TRIGGER audit_records_no_delete; \
                     DROP TRIGGER audit_head_no_delete; DROP TRIGGER audit_head_no_rewind;",
                )
                .await;
            }
        }

        pub(crate) async fn count_records(&self) -> i64 {
            on_pool!(&self.store, pool => {
                let (count,): (i64,) = sqlx::query_as("SELECT count(*) FROM audit_records")
                    .fetch_one(pool)
                    .await
                    .expect("count");
                count
            })
        }

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

    /// Runs one async test body on an SQLite file and, when configured, on PostgreSQL:
    /// `on_both!(name, body_fn)` makes `name::sqlite` and `name::postgres`.
    macro_rules! on_both {
        ($name:ident, $body:path) => {
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn sqlite() {
                    let db = $crate::audit::testing::TestDb::sqlite().await;
                    $body(&db).await;
                    db.close().await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn postgres() {
                    if let Some(db) = $crate::audit::testing::TestDb::postgres().await {
                        $body(&db).await;
                        db.close().await;
                    }
                }
            }
        };
    }
    pub(crate) use on_both;

    pub(crate) fn citizen(id: &str) -> CitizenId {
        CitizenId::parse(id).expect("valid citizen id")
    }

    /// A plausible record; `n` varies the request and the time.
    pub(crate) fn record(citizen_id: &str, n: u32) -> AuditRecord {
        let at: DateTime<Utc> = Utc
            .with_ymd_and_hms(2026, 11, 22, 10, 0, 0)
            .single()
            .expect("valid time")
            + chrono::Duration::microseconds(i64::from(n) * 1_234_567);
        AuditRecord {
            at,
            request_id: format!("req-{n}"),
            principal: "agency:benefits-portal".to_string(),
            agency: Some("benefits".to_string()),
            citizen: citizen(citizen_id),
            categories: BTreeSet::from(["dmv.license".to_string()]),
            fields: BTreeSet::from([
                "Citizen.driverLicense".to_string(),
                "DriverLicense.number".to_string(),
            ]),
            purpose: Some("benefit-eligibility".to_string()),
            decision: Decision::Allowed,
            basis: Some(format!("consent cns_{n:04}")),
        }
    }
}
