//! `kill -9` between detection and delivery: the gateway runs as a real `civicgraph serve`
//! child process on an SQLite file, is SIGKILLed, and started again on the same file. Every
//! event must then arrive at least once, with the id (and body) it had before the kill, each
//! citizen's events first arriving in their order, and none lost or recorded twice.
//!
//! - deliveries in flight at the kill (the receiver had the POSTs but never answered), so
//!   nothing was marked delivered: sent again after the restart with the same `webhook-id`
//!   (BAD_INPUTS row 56), and the restarted poller goes on from the stored watermark;
//! - events committed to the outbox while the receiver was not even listening, so no POST
//!   had arrived: delivered after the restart, once the receiver is up (row 55).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::events_world::{
    ChangeFeed, EventsProject, Mode, Receiver, ServeProcess, Storage, assert_in_order_per_citizen,
    check_receptions, citizen, deliveries, register_subscriber, unused_addr, wait_until,
};

/// A lease of 4 s, so a killed instance's claims are taken again quickly, and the 2 s delivery
/// timeout plus the dispatcher's 2 s margin; retries every 1–2 s, and enough of them that
/// nothing is dead-lettered while a test waits.
const EVENTS: &str = r#"
dispatch_poll_ms = 50
delivery_timeout_ms = 2000
lease_s = 4
retry_schedule_s = [1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2]
"#;

/// Bounds every wait, so a failure fails the test instead of hanging CI.
const WAIT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_in_flight_at_a_kill_are_sent_again_after_restart_with_the_same_ids_in_order() {
    const CITIZENS: usize = 5;
    const ROUNDS: usize = 4;
    let (feed, feed_url) = ChangeFeed::start().await;
    let receiver = Receiver::start(Mode::Hold).await;
    let project = EventsProject::write(Storage::SqliteFile, &feed_url, EVENTS);

    let mut gateway = ServeProcess::start(&project).await;
    let client = gateway.client();
    let (subscriber, secret) = register_subscriber(&client, receiver.url()).await;
    let mut per_citizen: BTreeMap<String, usize> = BTreeMap::new();
    for round in 0..ROUNDS {
        for n in 1..=CITIZENS {
            feed.push(&citizen(n), &format!("CASE-{n}-{round}"));
            *per_citizen.entry(citizen(n)).or_default() += 1;
        }
    }
    let recorded = CITIZENS * ROUNDS;
    wait_until("every change recorded as an event", WAIT, async || {
        deliveries(&client, &subscriber, None).await.len() == recorded
    })
    .await;
    // Each citizen's first event is claimed and POSTed; the receiver holds them open, so they
    // are in flight, received but never acknowledged.
    wait_until("one POST per citizen in flight", WAIT, async || {
        let ids: BTreeSet<String> = receiver.receptions().into_iter().map(|r| r.id).collect();
        ids.len() == CITIZENS
    })
    .await;
    assert!(
        deliveries(&client, &subscriber, Some("DELIVERED"))
            .await
            .is_empty(),
        "nothing is acknowledged while the receiver holds every request"
    );
    gateway.kill();
    let before_kill = receiver.receptions();
    let polls_before_restart = feed.asked().len();

    receiver.set_mode(Mode::Answer(Duration::ZERO));
    let gateway = ServeProcess::start(&project).await;
    let client = gateway.client();
    // A change after the restart: the poller must go on from the stored watermark.
    for n in 1..=CITIZENS {
        feed.push(&citizen(n), &format!("CASE-{n}-late"));
        *per_citizen.entry(citizen(n)).or_default() += 1;
    }
    let total = recorded + CITIZENS;
    wait_until(
        "every event acknowledged after the restart",
        WAIT,
        async || {
            deliveries(&client, &subscriber, Some("DELIVERED"))
                .await
                .len()
                == total
        },
    )
    .await;

    let receptions = receiver.receptions();
    let bodies = check_receptions(&receptions, &secret);
    let all = deliveries(&client, &subscriber, None).await;
    assert_eq!(all.len(), total, "one event per change, none twice");
    let recorded_ids: BTreeSet<String> = all
        .iter()
        .map(|d| d["event"]["id"].as_str().expect("an event id").to_string())
        .collect();
    let received_ids: BTreeSet<String> = bodies.keys().cloned().collect();
    assert_eq!(
        received_ids, recorded_ids,
        "every event received, none lost"
    );
    for held in &before_kill {
        let again = receptions[before_kill.len()..]
            .iter()
            .find(|r| r.id == held.id)
            .unwrap_or_else(|| {
                panic!(
                    "event {} was in flight at the kill and never sent again:\n{}",
                    held.id,
                    gateway.log_tail()
                )
            });
        assert_eq!(again.body, held.body, "the same event, byte for byte");
    }
    assert_in_order_per_citizen(&receptions, &per_citizen);
    let polls_after = &feed.asked()[polls_before_restart..];
    assert!(
        polls_after.first() == Some(&(recorded as u64))
            && polls_after.iter().all(|since| *since >= recorded as u64),
        "the restarted poller starts from the stored watermark {recorded}, not from the start: {polls_after:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_committed_before_a_kill_and_never_posted_are_delivered_after_restart() {
    const CITIZENS: usize = 3;
    const ROUNDS: usize = 3;
    let (feed, feed_url) = ChangeFeed::start().await;
    // Nothing listens here until after the restart: no POST can arrive before the kill.
    let receiver_addr = unused_addr();
    let url = format!("http://{receiver_addr}/hook");
    let project = EventsProject::write(Storage::SqliteFile, &feed_url, EVENTS);

    let mut gateway = ServeProcess::start(&project).await;
    let client = gateway.client();
    let (subscriber, secret) = register_subscriber(&client, &url).await;
    let mut per_citizen: BTreeMap<String, usize> = BTreeMap::new();
    for round in 0..ROUNDS {
        for n in 1..=CITIZENS {
            feed.push(&citizen(n), &format!("CASE-{n}-{round}"));
            *per_citizen.entry(citizen(n)).or_default() += 1;
        }
    }
    let total = CITIZENS * ROUNDS;
    wait_until("every change committed to the outbox", WAIT, async || {
        deliveries(&client, &subscriber, None).await.len() == total
    })
    .await;
    let before: BTreeMap<String, String> = deliveries(&client, &subscriber, None)
        .await
        .iter()
        .map(|d| {
            (
                d["event"]["id"].as_str().expect("an id").to_string(),
                d["state"].as_str().expect("a state").to_string(),
            )
        })
        .collect();
    assert!(
        before.values().all(|state| state == "PENDING"),
        "nothing delivered before the kill: {before:?}"
    );
    gateway.kill();

    let gateway = ServeProcess::start(&project).await;
    let client = gateway.client();
    let receiver = Receiver::start_at(receiver_addr, Mode::Answer(Duration::ZERO)).await;
    wait_until(
        "every event acknowledged after the restart",
        WAIT,
        async || {
            deliveries(&client, &subscriber, Some("DELIVERED"))
                .await
                .len()
                == total
        },
    )
    .await;

    let receptions = receiver.receptions();
    let bodies = check_receptions(&receptions, &secret);
    let received: BTreeSet<&String> = bodies.keys().collect();
    let recorded: BTreeSet<&String> = before.keys().collect();
    assert_eq!(
        received, recorded,
        "the events recorded before the kill, with their ids"
    );
    assert_in_order_per_citizen(&receptions, &per_citizen);
    assert_eq!(
        deliveries(&client, &subscriber, None).await.len(),
        total,
        "no event recorded twice"
    );
}
