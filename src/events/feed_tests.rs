use std::time::Duration;

use chrono::Utc;
use futures::StreamExt as _;
use serde_json::{Map, Value};

use super::*;
use crate::config::StorageConfig;
use crate::events::{Mark, NewEvent, Recorded};
use crate::store::Store;
use crate::store::testing::{TestStore, on_both_stores};

const POLL: Duration = Duration::from_millis(10);
const WAIT: Duration = Duration::from_secs(10);

fn event(kind: &str, citizen: &str, key: &str) -> NewEvent {
    let mut subject = Map::new();
    subject.insert("claim".into(), Value::from(key));
    NewEvent {
        event_type: kind.into(),
        category: "ui.claims".into(),
        citizen_id: citizen.into(),
        subject,
        idempotency_key: format!("{kind}:{key}"),
        source: "test".into(),
        occurred_at: Utc::now(),
        audience: None,
    }
}

async fn record(outbox: &Outbox, events: Vec<NewEvent>) -> Vec<LifeEvent> {
    match outbox.record("test", Mark::Nothing, events).await.unwrap() {
        Recorded::Events(events) => events,
        other => panic!("expected events, got {other:?}"),
    }
}

async fn next(receiver: &mut FeedReceiver) -> Arc<LifeEvent> {
    tokio::time::timeout(WAIT, receiver.recv())
        .await
        .expect("an event within the wait")
        .expect("an event, not an error")
}

async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !check().await {
        assert!(Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(POLL).await;
    }
}

on_both_stores!(
    sqlite "feed.db",
    postgres &["life_events"];
    delivers_what_is_recorded_after_subscribing_in_order,
    a_slow_subscriber_is_told_the_gap_it_missed,
    stops_reading_when_nobody_listens_and_restarts_at_the_newest,
);

async fn delivers_what_is_recorded_after_subscribing_in_order(db: &TestStore) {
    let outbox = Outbox::new(db.store.clone());
    record(&outbox, vec![event("JobLost", "C0000001", "before")]).await;
    let feed = EventFeed::new(outbox.clone(), POLL);
    let mut first = feed.subscribe().await.unwrap();
    let mut second = feed.subscribe().await.unwrap();
    assert_eq!(feed.subscribers().await, 2);
    let recorded = record(
        &outbox,
        vec![
            event("JobLost", "C0000001", "a"),
            event("BirthRegistered", "C0000002", "b"),
            event("JobLost", "C0000001", "c"),
        ],
    )
    .await;
    for receiver in [&mut first, &mut second] {
        let mut seen = Vec::new();
        for _ in 0..3 {
            seen.push(next(receiver).await.as_ref().clone());
        }
        assert_eq!(seen, recorded, "every subscriber, every event, in order");
    }
}

async fn a_slow_subscriber_is_told_the_gap_it_missed(db: &TestStore) {
    let outbox = Outbox::new(db.store.clone());
    let feed = EventFeed::with_capacity(outbox.clone(), POLL, 2);
    let slow = feed.subscribe().await.unwrap();
    let start = outbox.last_seq().await.unwrap();
    let recorded = record(
        &outbox,
        (0..5)
            .map(|n| event("JobLost", "C0000001", &n.to_string()))
            .collect(),
    )
    .await;
    let newest = recorded.last().map(|e| e.seq).unwrap();
    eventually("the tail sends all five", async || {
        feed.inner.sent.load(Ordering::Acquire) >= newest
    })
    .await;
    let mut stream = Box::pin(slow.into_stream());
    match stream.next().await {
        Some(Err(FeedError::Lagged { after_seq, missed })) => {
            assert_eq!((after_seq, missed), (start, 3), "names the gap");
        }
        other => panic!("expected a lag, got {other:?}"),
    }
    assert!(
        stream.next().await.is_none(),
        "the subscription ends after the gap"
    );
}

async fn stops_reading_when_nobody_listens_and_restarts_at_the_newest(db: &TestStore) {
    let outbox = Outbox::new(db.store.clone());
    let feed = EventFeed::new(outbox.clone(), POLL);
    assert!(!feed.is_tailing().await, "nobody listens yet");
    let receiver = feed.subscribe().await.unwrap();
    assert!(feed.is_tailing().await);
    drop(receiver);
    eventually("the idle feed stops", async || !feed.is_tailing().await).await;

    record(&outbox, vec![event("JobLost", "C0000001", "while-idle")]).await;
    let mut receiver = feed.subscribe().await.unwrap();
    let later = record(&outbox, vec![event("JobLost", "C0000001", "later")]).await;
    assert_eq!(
        next(&mut receiver).await.id,
        later[0].id,
        "a new subscription starts at the newest event"
    );
}

#[tokio::test]
async fn an_event_recorded_by_another_instance_arrives() {
    let db = TestStore::sqlite("shared.db").await;
    let other = Store::connect(&StorageConfig {
        url: db.url.clone(),
        max_connections: 2,
    })
    .await
    .unwrap();
    let feed = EventFeed::new(Outbox::new(db.store.clone()), POLL);
    let mut receiver = feed.subscribe().await.unwrap();
    let recorded = record(
        &Outbox::new(other.clone()),
        vec![event("JobLost", "C0000003", "elsewhere")],
    )
    .await;
    assert_eq!(next(&mut receiver).await.id, recorded[0].id);
    other.close().await;
    db.close().await;
}

#[tokio::test]
async fn shutdown_ends_every_subscription_and_refuses_new_ones() {
    let db = TestStore::sqlite("shutdown.db").await;
    let feed = EventFeed::new(Outbox::new(db.store.clone()), POLL);
    let mut receiver = feed.subscribe().await.unwrap();
    feed.shutdown();
    tokio::time::timeout(WAIT, feed.stopped())
        .await
        .expect("stopped resolves");
    let ended = tokio::time::timeout(WAIT, receiver.recv())
        .await
        .expect("the receiver ends");
    assert!(matches!(ended, Err(FeedError::Closed)), "{ended:?}");
    assert!(matches!(feed.subscribe().await, Err(FeedError::Closed)));
    db.close().await;
}

/// PostgreSQL numbers rows at insert: an event whose transaction commits after a later-numbered
/// one still reaches the subscriber.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_event_committed_after_a_later_numbered_one_still_arrives() {
    let Some(db) = TestStore::postgres(&["life_events"]).await else {
        return;
    };
    let Store::Postgres(pool) = &db.store else {
        unreachable!("a PostgreSQL test store")
    };
    let outbox = Outbox::new(db.store.clone());
    let feed = EventFeed::new(outbox.clone(), POLL);
    let mut receiver = feed.subscribe().await.unwrap();

    let mut slow = pool.begin().await.unwrap();
    let now = Utc::now().timestamp_millis();
    let (early_seq,): (i64,) = sqlx::query_as(
        "INSERT INTO life_events (id, idempotency_key, event_type, category, citizen_id, \
         citizen_seq, subject, source, occurred_at, recorded_at) \
         VALUES ('evt_slow', 'slow', 'JobLost', 'ui.claims', 'C0000009', 1, '{}', 'test', $1, $1) \
         RETURNING seq",
    )
    .bind(now)
    .fetch_one(&mut *slow)
    .await
    .unwrap();
    let later = record(&outbox, vec![event("JobLost", "C0000001", "fast")]).await;
    assert!(later[0].seq > early_seq);
    assert_eq!(next(&mut receiver).await.id, later[0].id);

    slow.commit().await.unwrap();
    let late = next(&mut receiver).await;
    assert_eq!((late.seq, late.id.as_str()), (early_seq, "evt_slow"));
    drop(receiver);
    db.close().await;
}

#[test]
fn the_graph_value_names_every_field_and_keeps_ids_as_text() {
    let mut subject = Map::new();
    subject.insert("case".into(), Value::from(42));
    subject.insert("claim".into(), Value::from("CL-1"));
    let at = chrono::DateTime::parse_from_rfc3339("2026-11-23T01:02:03.456Z")
        .unwrap()
        .with_timezone(&Utc);
    let event = LifeEvent {
        seq: 7,
        id: "evt_1".into(),
        event_type: "JobLost".into(),
        category: "ui.claims".into(),
        citizen_id: "C0000001".into(),
        citizen_seq: 3,
        subject,
        source: "ui-claims".into(),
        occurred_at: at,
        recorded_at: at,
        audience: None,
    };
    assert_eq!(
        graph_value(&event),
        serde_json::json!({
            "id": "evt_1", "type": "JobLost", "citizenId": "C0000001", "citizenSequence": 3,
            "category": "ui.claims",
            "subject": [{"name": "case", "id": "42"}, {"name": "claim", "id": "CL-1"}],
            "occurredAt": "2026-11-23T01:02:03.456Z", "recordedAt": "2026-11-23T01:02:03.456Z",
        })
    );
}
