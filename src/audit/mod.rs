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
pub mod writer;

pub use chain::{
    AuditError, AuditLog, AuditRecord, ChainHead, Decision, GENESIS_HASH, ParseDecisionError,
    StoredRecord, record_hash,
};
pub use checkpoint::{CHECKPOINT_TYPE, CheckpointClaims, Checkpointer, write_checkpoint};
pub use verify::{ChainProblem, VerifyReport, verify};
pub use writer::{AppendError, AuditWriter};

/// What the audit tests add to a [`TestStore`](crate::store::testing::TestStore), and the
/// records they write.
#[cfg(test)]
pub(crate) mod testing {
    use std::collections::BTreeSet;
    use std::time::Duration;

    use chrono::{DateTime, TimeZone, Utc};

    use super::{AuditLog, AuditRecord, Decision};
    use crate::identity::CitizenId;
    use crate::store::testing::TestStore;

    /// The audit chain on a test store, and what an attacker with schema rights does to it.
    pub(crate) trait AuditStore {
        fn log(&self, timeout: Duration) -> AuditLog;
        /// What an attacker with schema rights does first.
        async fn drop_triggers(&self);
        async fn count_records(&self) -> i64;
    }

    impl AuditStore for TestStore {
        fn log(&self, timeout: Duration) -> AuditLog {
            AuditLog::new(self.store.clone(), timeout)
        }

        async fn drop_triggers(&self) {
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

        async fn count_records(&self) -> i64 {
            self.count("audit_records").await
        }
    }

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
