use std::time::Duration;

use super::*;
use crate::store::testing::{TestStore, on_both_stores};

fn event(kind: &str, citizen: &str, key: &str) -> NewEvent {
    let mut subject = Map::new();
    subject.insert("claim".into(), Value::from(key));
    NewEvent {
        event_type: kind.into(),
        category: "ui.claims".into(),
        citizen_id: citizen.into(),
        subject,
        idempotency_key: format!("{kind}:{key}"),
        source: "ui-claims".into(),
        occurred_at: Utc::now(),
        audience: None,
    }
}

fn hook(agency: &str, types: &[&str]) -> NewSubscriber {
    NewSubscriber {
        agency: agency.into(),
        purpose: "benefit-eligibility".into(),
        endpoint: "http://127.0.0.1:9/hook".into(),
        secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into(),
        event_types: types.iter().map(|t| t.to_string()).collect(),
        created_by: "ops".into(),
    }
}

fn events(recorded: Recorded) -> Vec<LifeEvent> {
    match recorded {
        Recorded::Events(events) => events,
        other => panic!("expected events, got {other:?}"),
    }
}

const LEASE: Duration = Duration::from_secs(30);

on_both_stores!(
    sqlite "outbox.db",
    postgres &["life_events", "event_deliveries"];
    events_and_watermark_move_together_and_duplicates_are_one_event,
    inbound_webhook_ids_are_recorded_once,
    a_citizens_later_event_waits_for_the_earlier_one,
    two_workers_never_hold_one_delivery_and_a_lapsed_lease_is_taken_again,
    a_capped_claim_leaves_each_subscriber_at_most_its_room,
    failures_retry_then_dead_letter_and_replay_keeps_the_id,
    audience_and_types_decide_who_gets_a_row,
);

async fn events_and_watermark_move_together_and_duplicates_are_one_event(db: &TestStore) {
    let outbox = Outbox::new(db.store.clone());
    let start = outbox
        .lease_source("ui-claims", "1970", "a", LEASE)
        .await
        .unwrap();
    assert_eq!(start.as_deref(), Some("1970"));
    assert_eq!(
        outbox
            .lease_source("ui-claims", "1970", "b", LEASE)
            .await
            .unwrap(),
        None,
        "another instance does not poll a leased source"
    );
    let first = events(
        outbox
            .record(
                "ui-claims",
                Mark::Watermark {
                    value: "2026-01",
                    owner: "a",
                },
                vec![event("JobLost", "C1", "k1"), event("JobLost", "C1", "k2")],
            )
            .await
            .unwrap(),
    );
    assert_eq!(first.len(), 2);
    assert_eq!(
        (first[0].citizen_seq, first[1].citizen_seq),
        (1, 2),
        "one citizen's events are numbered in order"
    );
    assert!(first[0].id.starts_with("evt_") && first[0].id != first[1].id);
    assert_eq!(
        outbox.watermark("ui-claims").await.unwrap().as_deref(),
        Some("2026-01")
    );
    // The same change seen again (a re-poll) is no new event and leaves no gap in the numbering.
    let again = events(
        outbox
            .record(
                "ui-claims",
                Mark::Watermark {
                    value: "2026-02",
                    owner: "a",
                },
                vec![event("JobLost", "C1", "k2"), event("JobLost", "C1", "k3")],
            )
            .await
            .unwrap(),
    );
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].citizen_seq, 3);
    // A poller that lost its lease records nothing, not even its events.
    assert_eq!(
        outbox
            .record(
                "ui-claims",
                Mark::Watermark {
                    value: "2027",
                    owner: "b",
                },
                vec![event("JobLost", "C2", "k9")],
            )
            .await
            .unwrap(),
        Recorded::LeaseLost
    );
    assert_eq!(db.count("life_events").await, 3);
    assert_eq!(
        outbox.watermark("ui-claims").await.unwrap().as_deref(),
        Some("2026-02")
    );
    let tail = outbox.events_after(first[0].seq, 10).await.unwrap();
    assert_eq!(
        tail.iter().map(|e| e.citizen_seq).collect::<Vec<_>>(),
        [2, 3]
    );
    assert_eq!(outbox.last_seq().await.unwrap(), again[0].seq);
    assert_eq!(
        outbox.event(&first[1].id).await.unwrap().as_ref(),
        Some(&first[1])
    );
    let payload = first[0].payload();
    assert_eq!(payload["type"], "JobLost");
    assert_eq!(payload["data"]["id"], first[0].id.as_str());
    assert_eq!(payload["data"]["subject"]["claim"], "k1");
}

async fn inbound_webhook_ids_are_recorded_once(db: &TestStore) {
    let outbox = Outbox::new(db.store.clone());
    let mark = Mark::Inbound {
        webhook_id: "msg_1",
    };
    let first = events(
        outbox
            .record("registry", mark, vec![event("BirthRegistered", "C1", "b1")])
            .await
            .unwrap(),
    );
    assert_eq!(first.len(), 1);
    assert_eq!(
        outbox
            .record("registry", mark, vec![event("BirthRegistered", "C1", "b2")])
            .await
            .unwrap(),
        Recorded::Replayed
    );
    assert_eq!(db.count("life_events").await, 1);
}

async fn a_citizens_later_event_waits_for_the_earlier_one(db: &TestStore) {
    let outbox = Outbox::new(db.store.clone());
    let sub = outbox.add_subscriber(hook("ui", &[])).await.unwrap();
    let recorded = events(
        outbox
            .record(
                "s",
                Mark::Nothing,
                vec![
                    event("JobLost", "C1", "a"),
                    event("JobLost", "C1", "b"),
                    event("JobLost", "C2", "c"),
                ],
            )
            .await
            .unwrap(),
    );
    let claimed = outbox.claim("w1", LEASE, 10, &[]).await.unwrap();
    let keys: Vec<(&str, i64)> = claimed
        .iter()
        .map(|c| (c.event.citizen_id.as_str(), c.event.citizen_seq))
        .collect();
    assert_eq!(
        keys,
        [("C1", 1), ("C2", 1)],
        "C1's second event waits for its first"
    );
    assert!(
        outbox
            .finish(
                "w1",
                recorded[0].seq,
                &sub.id,
                Attempt::Delivered { status: Some(200) }
            )
            .await
            .unwrap()
    );
    let next = outbox.claim("w1", LEASE, 10, &[]).await.unwrap();
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].event.id, recorded[1].id);
    // A busy subscriber is skipped.
    assert!(
        outbox
            .claim("w2", LEASE, 10, std::slice::from_ref(&sub.id))
            .await
            .unwrap()
            .is_empty()
    );
}

async fn two_workers_never_hold_one_delivery_and_a_lapsed_lease_is_taken_again(db: &TestStore) {
    let outbox = Outbox::new(db.store.clone());
    outbox.add_subscriber(hook("ui", &[])).await.unwrap();
    let batch: Vec<NewEvent> = (0..60)
        .map(|i| event("JobLost", &format!("C{i}"), &format!("k{i}")))
        .collect();
    events(outbox.record("s", Mark::Nothing, batch).await.unwrap());
    let (a, b, c) = tokio::join!(
        outbox.claim("w1", LEASE, 40, &[]),
        outbox.claim("w2", LEASE, 40, &[]),
        outbox.claim("w3", LEASE, 40, &[]),
    );
    let claims = [("w1", a.unwrap()), ("w2", b.unwrap()), ("w3", c.unwrap())];
    let mut all: Vec<i64> = claims
        .iter()
        .flat_map(|(_, claimed)| claimed.iter().map(|c| c.event.seq))
        .collect();
    let total = all.len();
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), total, "no delivery was claimed twice");
    assert_eq!(total, 60);
    // A worker that died: its lease lapses and the row is claimed again with the same event.
    // (Which workers got rows is up to timing: on SQLite one may have found none left.)
    let (dead, _) = claims
        .iter()
        .find(|(_, claimed)| !claimed.is_empty())
        .expect("some worker claimed");
    let outbox2 = Outbox::new(db.store.clone());
    db.execute(&format!(
        "UPDATE event_deliveries SET lease_until = 1 WHERE lease_owner = '{dead}'"
    ))
    .await;
    let retaken = outbox2.claim("w4", LEASE, 100, &[]).await.unwrap();
    assert!(!retaken.is_empty());
    assert!(retaken.iter().all(|c| all.contains(&c.event.seq)));
    // The dead worker's late answer is not recorded over the new lease.
    let stale = outbox
        .finish(
            dead,
            retaken[0].event.seq,
            &retaken[0].subscriber.id,
            Attempt::Delivered { status: Some(200) },
        )
        .await
        .unwrap();
    assert!(!stale);
}

async fn a_capped_claim_leaves_each_subscriber_at_most_its_room(db: &TestStore) {
    let outbox = Outbox::new(db.store.clone());
    let slow = outbox.add_subscriber(hook("ui", &[])).await.unwrap();
    let other = outbox.add_subscriber(hook("tax", &[])).await.unwrap();
    let batch: Vec<NewEvent> = (0..10)
        .map(|i| event("JobLost", &format!("C{i}"), &format!("k{i}")))
        .collect();
    events(outbox.record("s", Mark::Nothing, batch).await.unwrap());
    let count =
        |claimed: &[Claimed], id: &str| claimed.iter().filter(|c| c.subscriber.id == id).count();
    // Room for 3 each; `slow` already has 2 in flight, so it gets 1.
    let first = outbox
        .claim_capped("w1", LEASE, 100, 3, &[(slow.id.clone(), 2)])
        .await
        .unwrap();
    assert_eq!((count(&first, &slow.id), count(&first, &other.id)), (1, 3));
    // A subscriber at its cap is not claimed for at all; the limit still bounds the total.
    let second = outbox
        .claim_capped("w1", LEASE, 2, 3, &[(slow.id.clone(), 3)])
        .await
        .unwrap();
    assert_eq!(
        (count(&second, &slow.id), count(&second, &other.id)),
        (0, 2)
    );
    // What was not taken is still there for the next claim, oldest first.
    let third = outbox.claim("w2", LEASE, 100, &[]).await.unwrap();
    assert_eq!((count(&third, &slow.id), count(&third, &other.id)), (9, 5));
    let mut seqs: Vec<i64> = third
        .iter()
        .filter(|c| c.subscriber.id == slow.id)
        .map(|c| c.event.seq)
        .collect();
    let sorted = {
        let mut s = seqs.clone();
        s.sort_unstable();
        s
    };
    assert_eq!(seqs, sorted);
    seqs.dedup();
    assert_eq!(seqs.len(), 9);
}

async fn failures_retry_then_dead_letter_and_replay_keeps_the_id(db: &TestStore) {
    let outbox = Outbox::new(db.store.clone());
    let sub = outbox.add_subscriber(hook("ui", &[])).await.unwrap();
    let recorded = events(
        outbox
            .record("s", Mark::Nothing, vec![event("JobLost", "C1", "a")])
            .await
            .unwrap(),
    );
    let seq = recorded[0].seq;
    outbox.claim("w", LEASE, 10, &[]).await.unwrap();
    let later = Utc::now() + chrono::Duration::hours(1);
    assert!(
        outbox
            .finish(
                "w",
                seq,
                &sub.id,
                Attempt::Failed {
                    status: Some(503),
                    error: "503",
                    retry_at: Some(later)
                }
            )
            .await
            .unwrap()
    );
    assert!(
        outbox.claim("w", LEASE, 10, &[]).await.unwrap().is_empty(),
        "not due yet"
    );
    db.execute("UPDATE event_deliveries SET next_attempt_at = 0")
        .await;
    let again = outbox.claim("w", LEASE, 10, &[]).await.unwrap();
    assert_eq!(again[0].attempts, 1);
    outbox
        .finish(
            "w",
            seq,
            &sub.id,
            Attempt::Failed {
                status: None,
                error: "timed out",
                retry_at: None,
            },
        )
        .await
        .unwrap();
    let dead = outbox
        .deliveries(&sub.id, Some(DeliveryState::Dead), 10)
        .await
        .unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].attempts, 2);
    assert_eq!(dead[0].last_status, Some(503));
    assert_eq!(dead[0].last_error.as_deref(), Some("timed out"));
    assert_eq!(
        outbox.replay(&sub.id, Some(&recorded[0].id)).await.unwrap(),
        1
    );
    let replayed = outbox.claim("w", LEASE, 10, &[]).await.unwrap();
    assert_eq!(
        replayed[0].event.id, recorded[0].id,
        "the event keeps its id"
    );
    assert_eq!(replayed[0].attempts, 0);
    assert_eq!(outbox.replay(&sub.id, None).await.unwrap(), 0);
}

async fn audience_and_types_decide_who_gets_a_row(db: &TestStore) {
    let outbox = Outbox::new(db.store.clone());
    let ui = outbox
        .add_subscriber(hook("ui", &["JobLost"]))
        .await
        .unwrap();
    let tax = outbox.add_subscriber(hook("tax", &[])).await.unwrap();
    let off = outbox.add_subscriber(hook("dmv", &[])).await.unwrap();
    outbox
        .set_subscriber_active(&off.id, false, Some("410 Gone"))
        .await
        .unwrap();
    let mut addressed = event("ServiceOfferAccepted", "C1", "o1");
    addressed.audience = Some("tax".into());
    events(
        outbox
            .record(
                "s",
                Mark::Nothing,
                vec![
                    event("JobLost", "C1", "a"),
                    event("AddressChanged", "C1", "b"),
                    addressed,
                ],
            )
            .await
            .unwrap(),
    );
    let count = |id: &str| {
        let outbox = outbox.clone();
        let id = id.to_string();
        async move { outbox.deliveries(&id, None, 100).await.unwrap().len() }
    };
    assert_eq!(count(&ui.id).await, 1, "ui asked for JobLost only");
    assert_eq!(count(&tax.id).await, 3);
    assert_eq!(
        count(&off.id).await,
        0,
        "a disabled subscriber gets no rows"
    );
    let listed = outbox.subscribers(Some("dmv")).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert!(!listed[0].active);
    assert_eq!(listed[0].disabled_reason.as_deref(), Some("410 Gone"));
}
