//! Group commit for the audit trail: concurrent requests' records go to the store together.
//!
//! Each request must see its records committed before its personal data leaves, but on a busy
//! gateway a transaction per request would serialise every request behind the store's single
//! writer (SQLite) or the chain head's row lock (PostgreSQL). One writer task takes what is
//! queued — the first request's records and everything that arrived while the previous batch
//! was committing — appends it in one transaction, and answers every waiter with the outcome.
//! Under no load a batch is one request's records, so a lone request pays nothing extra.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::{AuditError, AuditLog, AuditRecord};

/// The most records one transaction takes; more wait for the next.
const MAX_BATCH_RECORDS: usize = 2_000;
/// Requests waiting for the writer before new ones are refused (fail closed, not queue up).
const QUEUE_DEPTH: usize = 4_096;

/// Why records were not committed. Shared by every request of the failed batch.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AppendError {
    /// The store failed or timed out; nothing of the batch was written.
    #[error(transparent)]
    Store(Arc<AuditError>),
    /// The request's records were not committed within the audit timeout (the writer is
    /// behind); they may still be written later, but the data they cover is withheld.
    #[error("the audit trail did not commit within {} ms", .0.as_millis())]
    Timeout(Duration),
    /// The writer is gone (the gateway is stopping) or its queue is full.
    #[error("the audit writer is not accepting records")]
    Unavailable,
}

struct Job {
    records: Vec<AuditRecord>,
    done: oneshot::Sender<Result<(), AppendError>>,
}

/// A handle on the writer task; cheap to clone. The task ends when every handle is dropped.
#[derive(Debug, Clone)]
pub struct AuditWriter {
    jobs: mpsc::Sender<Job>,
    timeout: Duration,
}

impl AuditWriter {
    /// Starts the writer on `log`'s store; waits are bounded by `log`'s timeout.
    pub fn spawn(log: AuditLog) -> Self {
        let (jobs, queue) = mpsc::channel(QUEUE_DEPTH);
        let timeout = log.timeout();
        tokio::spawn(run(log, queue));
        Self { jobs, timeout }
    }

    /// Appends `records` (one request's) and waits until they are committed.
    pub async fn append(&self, records: Vec<AuditRecord>) -> Result<(), AppendError> {
        if records.is_empty() {
            return Ok(());
        }
        let (done, outcome) = oneshot::channel();
        self.jobs
            .try_send(Job { records, done })
            .map_err(|_| AppendError::Unavailable)?;
        // The batch ahead may take up to the store timeout, and ours as long again.
        match tokio::time::timeout(self.timeout * 2, outcome).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(AppendError::Unavailable),
            Err(_) => Err(AppendError::Timeout(self.timeout * 2)),
        }
    }
}

async fn run(log: AuditLog, mut queue: mpsc::Receiver<Job>) {
    while let Some(first) = queue.recv().await {
        let mut count = first.records.len();
        let mut jobs = vec![first];
        while count < MAX_BATCH_RECORDS {
            match queue.try_recv() {
                Ok(job) => {
                    count += job.records.len();
                    jobs.push(job);
                }
                Err(_) => break,
            }
        }
        let mut records = Vec::with_capacity(count);
        let mut waiters = Vec::with_capacity(jobs.len());
        for job in jobs {
            records.extend(job.records);
            waiters.push(job.done);
        }
        let outcome = log
            .append(records)
            .await
            .map(drop)
            .map_err(|error| AppendError::Store(Arc::new(error)));
        for waiter in waiters {
            // A waiter that gave up has already withheld its data; nothing to tell it.
            let _ = waiter.send(outcome.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use chrono::Utc;

    use super::*;
    use crate::audit::Decision;
    use crate::config::StorageConfig;
    use crate::identity::CitizenId;
    use crate::store::Store;
    use crate::store::testing::TestStore;

    fn record(n: usize) -> AuditRecord {
        AuditRecord {
            at: Utc::now(),
            request_id: format!("r{n}"),
            principal: "citizen:C0000001".into(),
            agency: None,
            citizen: CitizenId::parse("C0000001").unwrap(),
            categories: BTreeSet::from(["dmv.license".to_string()]),
            fields: BTreeSet::from(["Citizen.license".to_string()]),
            purpose: None,
            decision: Decision::Allowed,
            basis: Some("self".into()),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_requests_share_transactions_and_every_record_lands_once() {
        let db = TestStore::sqlite("audit.db").await;
        let log = AuditLog::new(db.store.clone(), Duration::from_secs(5));
        let writer = AuditWriter::spawn(log.clone());
        let appends = (0..200).map(|n| {
            let writer = writer.clone();
            tokio::spawn(async move { writer.append(vec![record(n), record(n)]).await })
        });
        for append in futures::future::join_all(appends).await {
            append.unwrap().expect("committed");
        }
        let head = log.head().await.unwrap();
        assert_eq!(head.seq, 400, "every record once, in one contiguous chain");
        let (records, _) = log
            .for_citizen(&CitizenId::parse("C0000001").unwrap(), 100, None)
            .await
            .unwrap();
        let ids: BTreeSet<&str> = records
            .iter()
            .map(|r| r.record.request_id.as_str())
            .collect();
        assert_eq!(
            ids.len(),
            50,
            "two records per request among the newest 100"
        );
        db.close().await;
    }

    #[tokio::test]
    async fn a_locked_store_fails_every_waiter_within_the_bound() {
        let db = TestStore::sqlite("audit.db").await;
        let locker = Store::connect(&StorageConfig {
            url: db.url.clone(),
            max_connections: 1,
        })
        .await
        .unwrap();
        let Store::Sqlite(pool) = &locker else {
            unreachable!("an sqlite URL")
        };
        let mut lock = pool.acquire().await.unwrap();
        sqlx::query("BEGIN EXCLUSIVE")
            .execute(&mut *lock)
            .await
            .unwrap();
        let writer =
            AuditWriter::spawn(AuditLog::new(db.store.clone(), Duration::from_millis(200)));
        let started = std::time::Instant::now();
        let (a, b) = tokio::join!(
            writer.append(vec![record(1)]),
            writer.append(vec![record(2)])
        );
        assert!(a.is_err() && b.is_err(), "{a:?} {b:?}");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        sqlx::query("ROLLBACK").execute(&mut *lock).await.unwrap();
    }
}
