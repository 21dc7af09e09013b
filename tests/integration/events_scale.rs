//! Two `civicgraph serve` processes on one PostgreSQL outbox (a schema of the test's own, from
//! `CIVICGRAPH_TEST_POSTGRES_URL`; skipped with a note when it is unset), delivering to one slow
//! webhook receiver that notices any event being delivered twice at the same time.
//!
//! - 250 events: every one delivered, none ever in flight twice at once, each citizen's in
//!   order (BAD_INPUTS row 57: two relay workers never double-claim while a lease is held);
//! - one instance SIGKILLed with deliveries in flight: the other takes them over once their
//!   lease has run out, never before, with the same ids and bodies (row 57: reclaimed after
//!   expiry; duplicates keep the same id);
//! - a lease configured shorter than the delivery timeout: still no event in flight twice.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::events_world::{
    ChangeFeed, EventsProject, Mode, Receiver, ServeProcess, Storage, assert_in_order_per_citizen,
    check_receptions, citizen, register_subscriber, wait_until,
};

/// Bounds every wait, so a failure fails the test instead of hanging CI.
const WAIT: Duration = Duration::from_secs(120);

/// A PostgreSQL schema of one test's own, dropped at the end.
pub(crate) struct PgSchema {
    pub(crate) admin: sqlx::PgPool,
    pub(crate) schema: String,
    pub(crate) url: String,
}

impl PgSchema {
    pub(crate) async fn create() -> Option<Self> {
        let Ok(url) = std::env::var("CIVICGRAPH_TEST_POSTGRES_URL") else {
            eprintln!("skipped: CIVICGRAPH_TEST_POSTGRES_URL is not set");
            return None;
        };
        let admin = sqlx::postgres::PgPoolOptions::new()
            .max_connections(2)
            .connect(&url)
            .await
            .expect("PostgreSQL from CIVICGRAPH_TEST_POSTGRES_URL");
        let schema = format!("cg_{}", uuid::Uuid::new_v4().simple());
        sqlx::query(&format!("CREATE SCHEMA {schema}"))
            .execute(&admin)
            .await
            .expect("create the test's schema");
        let separator = if url.contains('?') { '&' } else { '?' };
        let url = format!("{url}{separator}options=-c%20search_path%3D{schema}");
        Some(Self { admin, schema, url })
    }

    /// Deliveries by state, read past the gateways.
    pub(crate) async fn states(&self) -> BTreeMap<String, i64> {
        sqlx::query_as::<_, (String, i64)>(&format!(
            "SELECT state, count(*) FROM {}.event_deliveries GROUP BY state",
            self.schema
        ))
        .fetch_all(&self.admin)
        .await
        .expect("count the deliveries")
        .into_iter()
        .collect()
    }

    pub(crate) async fn delivered(&self) -> i64 {
        self.states().await.get("delivered").copied().unwrap_or(0)
    }

    /// Every event id in the outbox.
    pub(crate) async fn event_ids(&self) -> BTreeSet<String> {
        sqlx::query_as::<_, (String,)>(&format!("SELECT id FROM {}.life_events", self.schema))
            .fetch_all(&self.admin)
            .await
            .expect("read the event ids")
            .into_iter()
            .map(|(id,)| id)
            .collect()
    }

    pub(crate) async fn drop_schema(self) {
        sqlx::query(&format!("DROP SCHEMA {} CASCADE", self.schema))
            .execute(&self.admin)
            .await
            .expect("drop the test's schema");
    }
}

/// Two gateways on `db`, each with a project directory of its own (signing key, audit
/// checkpoints): the first starts (and migrates the schema) alone, then the second.
async fn two_instances(
    db: &PgSchema,
    feed_url: &str,
    events: &str,
) -> (ServeProcess, ServeProcess, [EventsProject; 2]) {
    let projects = [
        EventsProject::write(Storage::Url(&db.url), feed_url, events),
        EventsProject::write(Storage::Url(&db.url), feed_url, events),
    ];
    let a = ServeProcess::start(&projects[0]).await;
    let b = ServeProcess::start(&projects[1]).await;
    (a, b, projects)
}

/// Pushes `rounds` changes for each of `citizens` citizens, interleaved; returns how many
/// events each citizen gets.
fn push_changes(feed: &ChangeFeed, citizens: usize, rounds: usize) -> BTreeMap<String, usize> {
    let mut per_citizen = BTreeMap::new();
    for round in 0..rounds {
        for n in 1..=citizens {
            feed.push(&citizen(n), &format!("CASE-{n}-{round}"));
            *per_citizen.entry(citizen(n)).or_default() += 1;
        }
    }
    per_citizen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_one_postgres_outbox_never_send_one_event_twice_at_once() {
    let Some(db) = PgSchema::create().await else {
        return;
    };
    let (feed, feed_url) = ChangeFeed::start().await;
    let receiver = Receiver::start(Mode::Answer(Duration::from_millis(200))).await;
    let events = r#"
dispatch_poll_ms = 50
delivery_timeout_ms = 2000
lease_s = 4
retry_schedule_s = [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]
"#;
    let (a, b, _projects) = two_instances(&db, &feed_url, events).await;
    let (_, secret) = register_subscriber(&a.client(), receiver.url()).await;
    let per_citizen = push_changes(&feed, 50, 5);
    let total = per_citizen.values().sum::<usize>();

    wait_until("every event delivered", WAIT, async || {
        db.delivered().await == total as i64
    })
    .await;

    let receptions = receiver.receptions();
    assert_eq!(
        receiver.overlaps(),
        Vec::<String>::new(),
        "events delivered twice at the same time"
    );
    let bodies = check_receptions(&receptions, &secret);
    let received: BTreeSet<String> = bodies.keys().cloned().collect();
    assert_eq!(received.len(), total, "{total} distinct events received");
    assert_eq!(
        received,
        db.event_ids().await,
        "every recorded event received"
    );
    assert_eq!(
        db.states().await,
        BTreeMap::from([("delivered".to_string(), total as i64)]),
        "every delivery acknowledged"
    );
    assert_in_order_per_citizen(&receptions, &per_citizen);
    assert!(
        receiver.peak_in_flight() <= 2 * 8,
        "at most max_in_flight_per_subscriber (8) per instance at once, saw {}",
        receiver.peak_in_flight()
    );
    let by_a = a.deliveries_counted("delivered").await;
    let by_b = b.deliveries_counted("delivered").await;
    // Which instance claims what is up to timing; both should have had a share.
    eprintln!(
        "{total} events, {} webhook requests, peak {} in flight at the receiver; \
         delivered by instance A: {by_a}, by instance B: {by_b}",
        receptions.len(),
        receiver.peak_in_flight()
    );
    assert_eq!(
        by_a + by_b,
        receptions.len() as u64,
        "each request acknowledged once, by one instance"
    );
    drop((a, b));
    db.drop_schema().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_instances_deliveries_are_taken_over_after_their_lease_with_the_same_ids() {
    let Some(db) = PgSchema::create().await else {
        return;
    };
    const LEASE: Duration = Duration::from_secs(4);
    let (feed, feed_url) = ChangeFeed::start().await;
    // Each answer takes 1 s, so both instances have their eight slots full when one is killed.
    let receiver = Receiver::start(Mode::Answer(Duration::from_secs(1))).await;
    let events = r#"
dispatch_poll_ms = 50
delivery_timeout_ms = 2000
lease_s = 4
max_in_flight_per_subscriber = 8
retry_schedule_s = [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]
"#;
    let (mut a, b, _projects) = two_instances(&db, &feed_url, events).await;
    let (_, secret) = register_subscriber(&a.client(), receiver.url()).await;
    let per_citizen = push_changes(&feed, 24, 1);
    let total = per_citizen.values().sum::<usize>();

    // More than one instance's eight slots in flight: both instances are sending.
    wait_until("both instances sending", WAIT, async || {
        receiver.in_flight() > 8
    })
    .await;
    let in_flight_at_kill = receiver.in_flight();
    a.kill();
    wait_until("every event delivered by the survivor", WAIT, async || {
        db.delivered().await == total as i64
    })
    .await;

    let receptions = receiver.receptions();
    assert_eq!(
        receiver.overlaps(),
        Vec::<String>::new(),
        "events delivered twice at the same time"
    );
    let bodies = check_receptions(&receptions, &secret);
    let received: BTreeSet<String> = bodies.keys().cloned().collect();
    assert_eq!(
        received,
        db.event_ids().await,
        "every recorded event received"
    );
    assert_eq!(received.len(), total);
    let mut by_id: BTreeMap<&str, Vec<std::time::Instant>> = BTreeMap::new();
    for reception in &receptions {
        by_id.entry(&reception.id).or_default().push(reception.at);
    }
    let redelivered: Vec<(&str, Duration)> = by_id
        .iter()
        .filter(|(_, times)| times.len() > 1)
        .map(|(id, times)| (*id, times[1] - times[0]))
        .collect();
    assert!(
        !redelivered.is_empty(),
        "the killed instance had deliveries in flight ({in_flight_at_kill} at the receiver), \
         so some events are sent twice:\n{}",
        b.log_tail()
    );
    for (id, gap) in &redelivered {
        // Taken again only after the killed instance's lease ran out (less the moment between
        // its claim and its POST arriving).
        assert!(
            *gap >= LEASE - Duration::from_millis(500),
            "event {id} was sent again {gap:?} after its first POST, while its lease ({LEASE:?}) was held"
        );
    }
    eprintln!(
        "{total} events; {in_flight_at_kill} in flight at the kill; {} sent again by the survivor \
         after the lease, gaps {:?}",
        redelivered.len(),
        redelivered.iter().map(|(_, gap)| *gap).collect::<Vec<_>>()
    );
    drop((a, b));
    db.drop_schema().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_shorter_than_the_delivery_timeout_still_never_sends_one_event_twice_at_once() {
    let Some(db) = PgSchema::create().await else {
        return;
    };
    let (feed, feed_url) = ChangeFeed::start().await;
    // Answers take 2.5 s: longer than the configured 1 s lease, shorter than the 4 s timeout.
    // The dispatcher holds each claim for the timeout and a margin instead (6 s).
    let receiver = Receiver::start(Mode::Answer(Duration::from_millis(2500))).await;
    let events = r#"
dispatch_poll_ms = 50
delivery_timeout_ms = 4000
lease_s = 1
retry_schedule_s = [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]
"#;
    let (a, b, _projects) = two_instances(&db, &feed_url, events).await;
    let (_, secret) = register_subscriber(&a.client(), receiver.url()).await;
    let per_citizen = push_changes(&feed, 10, 1);
    let total = per_citizen.values().sum::<usize>();

    wait_until("every event delivered", WAIT, async || {
        db.delivered().await == total as i64
    })
    .await;
    let receptions = receiver.receptions();
    assert_eq!(
        receiver.overlaps(),
        Vec::<String>::new(),
        "events delivered twice at the same time: a claim's lease must outlast its attempt"
    );
    let bodies = check_receptions(&receptions, &secret);
    assert_eq!(bodies.len(), total);
    assert_eq!(
        receptions.len(),
        total,
        "with every answer in time, each event is sent once"
    );
    drop((a, b));
    db.drop_schema().await;
}
