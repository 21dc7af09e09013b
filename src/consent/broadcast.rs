//! Consent withdrawals broadcast to every gateway instance on one PostgreSQL, with
//! `LISTEN`/`NOTIFY`, so each drops what it cached for the agency at once.
//!
//! The instance that records a revoke or a pause sends a `NOTIFY` inside the same transaction
//! (`AnnounceWithdrawal`), so the notice goes out exactly when the change commits and never
//! for a change that rolled back. Every instance keeps one connection listening
//! ([`spawn_listener`]) and reports each notice as [`ListenerEvent::Withdrawn`]; the gateway
//! bumps that agency's cache generation, so none of its cached answers is served again and
//! none of its loads in flight is cached.
//!
//! The payload names the agency and a generation counter (the change's `consent_events` id),
//! never the citizen, the consent or anything else personal: `{"agency":"benefits",
//! "generation":42}`.
//!
//! A notice sent while an instance's listener is reconnecting is lost (PostgreSQL keeps none
//! for absent listeners). Nothing personal leaks through that gap: the policy reads the ledger
//! on every request, and the last step before data leaves re-reads the consents it used
//! (`ConsentLedger::still_live`). Still, the listener reports [`ListenerEvent::Listening`]
//! after every (re)connection, and the gateway then bumps every agency's generation, so a
//! missed notice costs cache misses, never a stale cache entry.
//!
//! The channel is named after the connection's schema, so gateways that share a database but
//! not a schema (tests, several environments) do not hear each other. SQLite is one instance,
//! so it needs none of this: its `AnnounceWithdrawal` does nothing.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The SQL expression for the channel's name: a fixed prefix and a digest of the connection's
/// schema (its `search_path`), short enough for PostgreSQL's 63-byte identifiers.
const CHANNEL_SQL: &str = "'civicgraph_consent_' || left(md5(current_schema()), 16)";

/// The first wait before reconnecting a lost listener; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);

/// The longest wait between two attempts to reconnect the listener.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// What one notice says: the agency whose cached reads must go, and a counter that only
/// grows (the `consent_events` id of the change), for logs and for telling notices apart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Withdrawal {
    /// The grantee of the withdrawn consent (an agency code from `[trust.agencies]`).
    pub agency: String,
    /// The id of the change's row in `consent_events`.
    pub generation: i64,
}

/// What the listener reports to the gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenerEvent {
    /// A consent given to this agency was revoked or paused, on this instance or another.
    Withdrawn(Withdrawal),
    /// The listener is (again) connected and listening. Notices sent while it was not were
    /// lost, so every agency's cached reads should go.
    Listening,
    /// The connection was lost; notices may be missed until [`ListenerEvent::Listening`].
    Lost,
    /// A notice that is not a [`Withdrawal`] (another version of the gateway, or someone
    /// else's `NOTIFY` on the channel): treated as a withdrawal by every agency.
    Unreadable,
}

/// Sends the withdrawal notice inside the transaction that records the change, so it is
/// delivered when (and only if) the change commits.
pub(crate) trait AnnounceWithdrawal {
    /// Announces that a consent given to `agency` was withdrawn, in the change's transaction
    /// (after its `consent_events` row was inserted, whose id becomes the generation).
    fn announce_withdrawal(
        &mut self,
        agency: &str,
    ) -> impl Future<Output = Result<(), sqlx::Error>> + Send;
}

impl AnnounceWithdrawal for sqlx::SqliteConnection {
    async fn announce_withdrawal(&mut self, _agency: &str) -> Result<(), sqlx::Error> {
        // One instance per SQLite file: the caller already bumped its own caches.
        Ok(())
    }
}

impl AnnounceWithdrawal for sqlx::PgConnection {
    async fn announce_withdrawal(&mut self, agency: &str) -> Result<(), sqlx::Error> {
        // `currval` is this session's last id from the insert just made in this transaction.
        let sql = format!(
            "SELECT pg_notify({CHANNEL_SQL}, json_build_object('agency', $1::text, \
             'generation', currval(pg_get_serial_sequence('consent_events', 'id')))::text)"
        );
        sqlx::query(&sql).bind(agency).execute(self).await?;
        Ok(())
    }
}

/// Listens on `pool`'s database until `stop` turns true or the pool closes, reporting every
/// notice and every change of the connection to `report`. Reconnects with a backoff from
/// 100 ms to 5 s after a failure.
pub fn spawn_listener(
    pool: PgPool,
    report: impl Fn(ListenerEvent) + Send + Sync + 'static,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut backoff = FIRST_BACKOFF;
        loop {
            let listener = tokio::select! {
                listener = listen(&pool) => listener,
                _ = stop.wait_for(|stopped| *stopped) => return,
            };
            let mut listener = match listener {
                Ok(listener) => listener,
                Err(error) => {
                    if pool.is_closed() {
                        return;
                    }
                    tracing::warn!(%error, retry_ms = backoff.as_millis() as u64, "Could not listen for consent withdrawals; trying again.");
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {}
                        _ = stop.wait_for(|stopped| *stopped) => return,
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            };
            backoff = FIRST_BACKOFF;
            tracing::debug!("Listening for consent withdrawals.");
            report(ListenerEvent::Listening);
            loop {
                let received = tokio::select! {
                    received = listener.try_recv() => received,
                    _ = stop.wait_for(|stopped| *stopped) => return,
                };
                match received {
                    Ok(Some(notice)) => report(parse(notice.payload())),
                    // The connection dropped and sqlx reconnected and listens again; what was
                    // sent in between is lost.
                    Ok(None) => {
                        tracing::warn!(
                            "The consent-withdrawal listener reconnected; dropping every agency's cached reads."
                        );
                        report(ListenerEvent::Lost);
                        report(ListenerEvent::Listening);
                    }
                    Err(error) => {
                        if pool.is_closed() {
                            return;
                        }
                        tracing::warn!(%error, "The consent-withdrawal listener lost its connection.");
                        report(ListenerEvent::Lost);
                        break;
                    }
                }
            }
        }
    })
}

/// A listener on the pool's database, listening on this schema's channel.
async fn listen(pool: &PgPool) -> Result<PgListener, sqlx::Error> {
    let (channel,): (String,) = sqlx::query_as(&format!("SELECT {CHANNEL_SQL}"))
        .fetch_one(pool)
        .await?;
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(&channel).await?;
    Ok(listener)
}

/// Reads a notice's payload; anything else is [`ListenerEvent::Unreadable`].
fn parse(payload: &str) -> ListenerEvent {
    serde_json::from_str::<Withdrawal>(payload)
        .map_or(ListenerEvent::Unreadable, ListenerEvent::Withdrawn)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consent::ConsentLedger;
    use crate::consent::ledger::tests::{alice_to_dmv, citizen, t0, trust};
    use crate::store::Store;
    use crate::store::testing::TestStore;
    use std::sync::Arc;
    use tokio::sync::mpsc;

    /// How long a test waits for one notice before it fails.
    const WAIT: Duration = Duration::from_secs(10);

    /// A listener on `db` whose events arrive on the returned channel, once it listens.
    async fn listening(
        db: &TestStore,
    ) -> (mpsc::UnboundedReceiver<ListenerEvent>, watch::Sender<bool>) {
        let Store::Postgres(pool) = &db.store else {
            unreachable!("a PostgreSQL test store")
        };
        let (events, mut heard) = mpsc::unbounded_channel();
        let (stop, stopped) = watch::channel(false);
        spawn_listener(
            pool.clone(),
            move |event| {
                let _ = events.send(event);
            },
            stopped,
        );
        assert_eq!(next(&mut heard).await, ListenerEvent::Listening);
        (heard, stop)
    }

    async fn next(heard: &mut mpsc::UnboundedReceiver<ListenerEvent>) -> ListenerEvent {
        tokio::time::timeout(WAIT, heard.recv())
            .await
            .expect("a listener event in time")
            .expect("the listener is running")
    }

    fn withdrawn_from(event: &ListenerEvent) -> (&str, i64) {
        match event {
            ListenerEvent::Withdrawn(Withdrawal { agency, generation }) => (agency, *generation),
            other => panic!("expected a withdrawal, heard {other:?}"),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn revokes_and_pauses_are_heard_with_the_agency_and_a_growing_generation() {
        let Some(db) = TestStore::postgres(&["consent_events"]).await else {
            return;
        };
        let (mut heard, stop) = listening(&db).await;
        let ledger = ConsentLedger::new(db.store.clone(), Arc::new(trust()));
        let alice = citizen("C0000001");
        let first = ledger.grant(alice_to_dmv(), t0()).await.unwrap();
        let second = ledger.grant(alice_to_dmv(), t0()).await.unwrap();

        ledger.pause(&alice, &first.handle, t0()).await.unwrap();
        let paused = next(&mut heard).await;
        assert_eq!(withdrawn_from(&paused).0, "dmv");
        ledger.resume(&alice, &first.handle, t0()).await.unwrap();
        ledger.revoke(&alice, &second.handle, t0()).await.unwrap();
        // Grants and the resume say nothing: the next notice is the revoke's.
        let revoked = next(&mut heard).await;
        assert_eq!(withdrawn_from(&revoked).0, "dmv");
        assert!(withdrawn_from(&revoked).1 > withdrawn_from(&paused).1);

        // A refused change (already revoked) rolls back, and with it its notice.
        ledger
            .revoke(&alice, &second.handle, t0())
            .await
            .expect_err("revoked twice");
        ledger.revoke(&alice, &first.handle, t0()).await.unwrap();
        assert_eq!(withdrawn_from(&next(&mut heard).await).0, "dmv");
        assert!(heard.try_recv().is_err(), "one notice per withdrawal");
        stop.send_replace(true);
        db.close().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_listener_whose_connection_is_killed_listens_again_and_asks_for_a_resync() {
        let Some(db) = TestStore::postgres(&["consent_events"]).await else {
            return;
        };
        let (mut heard, stop) = listening(&db).await;
        db.execute(&format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE query = 'LISTEN \"' || {CHANNEL_SQL} || '\"' AND pid <> pg_backend_pid()"
        ))
        .await;
        assert_eq!(next(&mut heard).await, ListenerEvent::Lost);
        assert_eq!(next(&mut heard).await, ListenerEvent::Listening);

        // Withdrawals after the reconnection are heard again.
        let ledger = ConsentLedger::new(db.store.clone(), Arc::new(trust()));
        let consent = ledger.grant(alice_to_dmv(), t0()).await.unwrap();
        ledger
            .revoke(&citizen("C0000001"), &consent.handle, t0())
            .await
            .unwrap();
        assert_eq!(withdrawn_from(&next(&mut heard).await).0, "dmv");
        stop.send_replace(true);
        db.close().await;
    }

    #[tokio::test]
    async fn on_sqlite_a_withdrawal_announces_nothing_and_succeeds() {
        let db = TestStore::sqlite("consents.db").await;
        let ledger = ConsentLedger::new(db.store.clone(), Arc::new(trust()));
        let consent = ledger.grant(alice_to_dmv(), t0()).await.unwrap();
        ledger
            .revoke(&citizen("C0000001"), &consent.handle, t0())
            .await
            .expect("a revoke needs no listener on SQLite");
        db.close().await;
    }

    #[test]
    fn a_notice_names_the_agency_and_a_generation_only() {
        assert_eq!(
            parse(r#"{"agency":"benefits","generation":42}"#),
            ListenerEvent::Withdrawn(Withdrawal {
                agency: "benefits".into(),
                generation: 42
            })
        );
    }

    #[test]
    fn an_unreadable_notice_is_reported_as_such() {
        for payload in [
            "",
            "benefits",
            r#"{"agency":"benefits"}"#,
            r#"{"agency":"benefits","generation":"x"}"#,
            r#"{"agency":"benefits","generation":1,"citizen":"C0000001"}"#,
        ] {
            assert_eq!(parse(payload), ListenerEvent::Unreadable, "{payload}");
        }
    }
}
