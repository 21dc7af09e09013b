//! The outbox: events written in the same transaction that moves their source's watermark, and
//! one delivery row per subscriber written with them.
//!
//! Nothing is delivered from memory. A worker claims due delivery rows with a lease
//! (`FOR UPDATE SKIP LOCKED` on PostgreSQL; SQLite serialises writers), so two gateway instances
//! never work on one delivery at once; a worker that dies leaves its lease to run out, and the
//! row is claimed again with the same event id. A citizen's later event for a subscriber is not
//! claimed while an earlier one is still pending, so each subscriber sees a citizen's events in
//! order.

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, TimeZone as _, Utc};
use serde_json::{Map, Value, json};
use sqlx::Row as _;

use crate::store::{Store, on_pool};

/// The most delivery rows one claim takes.
pub const MAX_CLAIM: i64 = 200;

/// Why the outbox could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    /// The database refused or failed.
    #[error("the event outbox is unavailable: {0}")]
    Store(#[from] sqlx::Error),
    /// A stored row cannot be read back (e.g. a subject that is not a JSON object).
    #[error("the event outbox holds a row it cannot read: {0}")]
    Corrupt(String),
}

/// An event as detected, before the outbox numbers it.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// E.g. `JobLost`.
    pub event_type: String,
    /// The consent category an agency needs to receive it, e.g. `ui.claims`.
    pub category: String,
    /// The canonical citizen id the event is about.
    pub citizen_id: String,
    /// Opaque ids naming what changed (never personal details).
    pub subject: Map<String, Value>,
    /// Two detections with the same key are one event.
    pub idempotency_key: String,
    /// The change source (or `mutation:…`, `services`) it came from.
    pub source: String,
    /// When it happened in the backend, when the backend says; else when it was detected.
    pub occurred_at: DateTime<Utc>,
    /// Only this agency receives it (a citizen accepting an agency's offer), when set.
    pub audience: Option<String>,
}

/// An event in the outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct LifeEvent {
    /// Global order of recording; the subscription feed tails it.
    pub seq: i64,
    /// `evt_<uuid>`: the same on every redelivery (Standard Webhooks `webhook-id`).
    pub id: String,
    /// E.g. `JobLost`.
    pub event_type: String,
    /// The consent category it belongs to.
    pub category: String,
    /// The citizen it is about.
    pub citizen_id: String,
    /// 1, 2, 3… per citizen: consumers order one citizen's events by it.
    pub citizen_seq: i64,
    /// Opaque ids of what changed.
    pub subject: Map<String, Value>,
    /// Where it was detected.
    pub source: String,
    /// When it happened.
    pub occurred_at: DateTime<Utc>,
    /// When the outbox recorded it.
    pub recorded_at: DateTime<Utc>,
    /// Only this agency receives it, when set.
    pub audience: Option<String>,
}

impl LifeEvent {
    /// The thin body every channel carries (Standard Webhooks' `{type, timestamp, data}`): ids
    /// only, so a receiver reads any detail through the graph with its own, audited, token.
    pub fn payload(&self) -> Value {
        json!({
            "type": self.event_type,
            "timestamp": rfc3339(self.recorded_at),
            "data": {
                "id": self.id,
                "citizenId": self.citizen_id,
                "citizenSequence": self.citizen_seq,
                "category": self.category,
                "subject": self.subject,
                "occurredAt": rfc3339(self.occurred_at),
            }
        })
    }
}

/// Milliseconds-precise RFC 3339 in UTC, the form every timestamp leaves the gateway in.
pub fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// How a recording marks its source as read up to here.
#[derive(Debug, Clone, Copy)]
pub enum Mark<'a> {
    /// A polled source's new watermark, written only while `owner` holds the source's lease.
    Watermark {
        /// The new watermark.
        value: &'a str,
        /// The poller holding the lease.
        owner: &'a str,
    },
    /// An inbound webhook's id: a second recording with the same id records nothing.
    Inbound {
        /// The `webhook-id` header.
        webhook_id: &'a str,
    },
    /// Nothing to mark (the gateway's own mutations, accepted offers).
    Nothing,
}

/// What a recording did.
#[derive(Debug, Clone, PartialEq)]
pub enum Recorded {
    /// These events were new and are now in the outbox (duplicates are left out).
    Events(Vec<LifeEvent>),
    /// The inbound webhook id was seen before: nothing was recorded.
    Replayed,
    /// The poller no longer holds its source's lease: nothing was recorded.
    LeaseLost,
}

/// Who a subscriber is and where its events go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscriber {
    /// `sub_<uuid>`, or `nats` for the JetStream bus.
    pub id: String,
    /// The agency receiving; its consents decide which events it gets.
    pub agency: String,
    /// The purpose the agency receives them for (consents are per purpose).
    pub purpose: String,
    /// Webhook or NATS.
    pub kind: SubscriberKind,
    /// The webhook URL (or the NATS subject prefix).
    pub endpoint: String,
    /// The `whsec_…` signing secret.
    pub secret: String,
    /// Event types wanted; empty means all.
    pub event_types: Vec<String>,
    /// Active, or disabled (by an operator, or after a 410).
    pub active: bool,
    /// Why it was disabled.
    pub disabled_reason: Option<String>,
    /// Who registered it.
    pub created_by: String,
    /// When.
    pub created_at: DateTime<Utc>,
}

impl Subscriber {
    /// Whether it asked for this event type.
    pub fn wants(&self, event_type: &str) -> bool {
        self.event_types.is_empty() || self.event_types.iter().any(|t| t == event_type)
    }
}

/// Where a subscriber's events go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscriberKind {
    /// Signed HTTP POSTs.
    Webhook,
    /// NATS JetStream, one subject per event type.
    Nats,
}

impl SubscriberKind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Webhook => "webhook",
            Self::Nats => "nats",
        }
    }
}

/// A subscriber to register.
#[derive(Debug, Clone)]
pub struct NewSubscriber {
    /// The receiving agency.
    pub agency: String,
    /// The purpose it receives for.
    pub purpose: String,
    /// The checked webhook URL.
    pub endpoint: String,
    /// Its signing secret (`whsec_…`).
    pub secret: String,
    /// Types wanted; empty is all.
    pub event_types: Vec<String>,
    /// Who registered it.
    pub created_by: String,
}

/// Where one delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryState {
    /// Waiting for its next attempt (or being attempted).
    Pending,
    /// Acknowledged with a 2xx.
    Delivered,
    /// The retry schedule ran out, or the endpoint answered 410: kept for replay.
    Dead,
    /// Not delivered: the agency had no live consent covering the event's category.
    Filtered,
}

impl DeliveryState {
    /// The stored (and GraphQL enum) spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Dead => "dead",
            Self::Filtered => "filtered",
        }
    }

    /// Reads the stored spelling.
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "pending" => Self::Pending,
            "delivered" => Self::Delivered,
            "dead" => Self::Dead,
            "filtered" => Self::Filtered,
            _ => return None,
        })
    }
}

/// One event's delivery to one subscriber, as operators and agencies see it.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    /// The event.
    pub event: LifeEvent,
    /// The subscriber.
    pub subscriber_id: String,
    /// Where it stands.
    pub state: DeliveryState,
    /// Attempts made.
    pub attempts: i64,
    /// When the next attempt is due (pending only).
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// The last HTTP status received.
    pub last_status: Option<i64>,
    /// What went wrong last (never a body or a secret).
    pub last_error: Option<String>,
    /// When it was acknowledged.
    pub delivered_at: Option<DateTime<Utc>>,
}

/// A delivery a worker holds the lease of.
#[derive(Debug, Clone)]
pub struct Claimed {
    /// The event to send.
    pub event: LifeEvent,
    /// Where to send it.
    pub subscriber: Subscriber,
    /// Attempts made before this one.
    pub attempts: i64,
}

/// How a delivery attempt ended, as the outbox records it.
#[derive(Debug, Clone)]
pub enum Attempt<'a> {
    /// Acknowledged.
    Delivered {
        /// The HTTP status (0 for NATS).
        status: Option<u16>,
    },
    /// Failed; tried again at `retry_at`, or dead-lettered when `None`.
    Failed {
        /// The HTTP status, when there was one.
        status: Option<u16>,
        /// What went wrong.
        error: &'a str,
        /// When to try again.
        retry_at: Option<DateTime<Utc>>,
    },
    /// Not delivered for lack of consent.
    Filtered,
}

/// The outbox in the gateway's store.
#[derive(Debug, Clone)]
pub struct Outbox {
    store: Store,
}

fn ms(at: DateTime<Utc>) -> i64 {
    at.timestamp_millis()
}

fn from_ms(at: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(at).single().unwrap_or_default()
}

const EVENT_COLUMNS: &str = "seq, id, event_type, category, citizen_id, citizen_seq, subject, \
                             source, occurred_at, recorded_at, audience";

const SUBSCRIBER_COLUMNS: &str = "id, agency, purpose, kind, endpoint, secret, event_types, \
                                  state, disabled_reason, created_by, created_at";

/// Reads an event row selected with [`EVENT_COLUMNS`] first.
fn event_row<R>(row: &R) -> Result<LifeEvent, OutboxError>
where
    R: sqlx::Row,
    usize: sqlx::ColumnIndex<R>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let subject: String = row.try_get(6)?;
    let subject = match serde_json::from_str::<Value>(&subject) {
        Ok(Value::Object(map)) => map,
        _ => {
            return Err(OutboxError::Corrupt(
                "an event subject is not an object".into(),
            ));
        }
    };
    Ok(LifeEvent {
        seq: row.try_get(0)?,
        id: row.try_get(1)?,
        event_type: row.try_get(2)?,
        category: row.try_get(3)?,
        citizen_id: row.try_get(4)?,
        citizen_seq: row.try_get(5)?,
        subject,
        source: row.try_get(7)?,
        occurred_at: from_ms(row.try_get(8)?),
        recorded_at: from_ms(row.try_get(9)?),
        audience: row.try_get(10)?,
    })
}

/// Reads a subscriber row selected with [`SUBSCRIBER_COLUMNS`] first.
fn subscriber_row<R>(row: &R) -> Result<Subscriber, OutboxError>
where
    R: sqlx::Row,
    usize: sqlx::ColumnIndex<R>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let kind: String = row.try_get(3)?;
    let types: String = row.try_get(6)?;
    let state: String = row.try_get(7)?;
    Ok(Subscriber {
        id: row.try_get(0)?,
        agency: row.try_get(1)?,
        purpose: row.try_get(2)?,
        kind: match kind.as_str() {
            "nats" => SubscriberKind::Nats,
            _ => SubscriberKind::Webhook,
        },
        endpoint: row.try_get(4)?,
        secret: row.try_get(5)?,
        event_types: serde_json::from_str(&types)
            .map_err(|_| OutboxError::Corrupt("a subscriber's event types".into()))?,
        active: state == "active",
        disabled_reason: row.try_get(8)?,
        created_by: row.try_get(9)?,
        created_at: from_ms(row.try_get(10)?),
    })
}

impl Outbox {
    /// The outbox in `store` (its tables come with the store's migrations).
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    /// The store it lives in.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// A source's watermark, or `None` before its first recording.
    pub async fn watermark(&self, source: &str) -> Result<Option<String>, OutboxError> {
        const SQL: &str = "SELECT watermark FROM event_sources WHERE source = $1";
        let found: Option<(String,)> = on_pool!(&self.store, pool => {
            sqlx::query_as(SQL).bind(source).fetch_optional(pool).await?
        });
        Ok(found.map(|(w,)| w))
    }

    /// Takes (or renews) the lease on polling `source` for `lease`, creating its row with
    /// `start` as the watermark. Returns the watermark to poll from, or `None` while another
    /// instance holds the lease.
    pub async fn lease_source(
        &self,
        source: &str,
        start: &str,
        owner: &str,
        lease: std::time::Duration,
    ) -> Result<Option<String>, OutboxError> {
        let now = ms(Utc::now());
        let until = now.saturating_add(i64::try_from(lease.as_millis()).unwrap_or(i64::MAX));
        const INSERT: &str = "INSERT INTO event_sources (source, watermark, updated_at) \
                              VALUES ($1, $2, $3) ON CONFLICT (source) DO NOTHING";
        const LEASE: &str = "UPDATE event_sources SET lease_owner = $2, lease_until = $3 \
                             WHERE source = $1 AND (lease_owner IS NULL OR lease_owner = $2 \
                             OR lease_until < $4) RETURNING watermark";
        let found: Option<(String,)> = on_pool!(&self.store, pool => {
            sqlx::query(INSERT).bind(source).bind(start).bind(now).execute(pool).await?;
            sqlx::query_as(LEASE)
                .bind(source)
                .bind(owner)
                .bind(until)
                .bind(now)
                .fetch_optional(pool)
                .await?
        });
        Ok(found.map(|(w,)| w))
    }

    /// Records `events` (each one whose idempotency key is new), one delivery row per active
    /// subscriber that wants it, and `mark`, in one transaction: either all of it is stored or
    /// none, so a crash can neither lose an event past a moved watermark nor record one twice.
    pub async fn record(
        &self,
        source: &str,
        mark: Mark<'_>,
        events: Vec<NewEvent>,
    ) -> Result<Recorded, OutboxError> {
        let now = Utc::now();
        let now_ms = ms(now);
        on_pool!(&self.store, pool => {
            let mut tx = crate::store::BeginWrite::begin_write(pool).await?;
            match mark {
                Mark::Watermark { value, owner } => {
                    let moved = sqlx::query(
                        "UPDATE event_sources SET watermark = $2, updated_at = $3 \
                         WHERE source = $1 AND lease_owner = $4",
                    )
                    .bind(source)
                    .bind(value)
                    .bind(now_ms)
                    .bind(owner)
                    .execute(&mut *tx)
                    .await?;
                    if moved.rows_affected() == 0 {
                        tx.rollback().await?;
                        return Ok(Recorded::LeaseLost);
                    }
                }
                Mark::Inbound { webhook_id } => {
                    let fresh = sqlx::query(
                        "INSERT INTO inbound_webhooks (source, webhook_id, received_at) \
                         VALUES ($1, $2, $3) ON CONFLICT (source, webhook_id) DO NOTHING",
                    )
                    .bind(source)
                    .bind(webhook_id)
                    .bind(now_ms)
                    .execute(&mut *tx)
                    .await?;
                    if fresh.rows_affected() == 0 {
                        tx.rollback().await?;
                        return Ok(Recorded::Replayed);
                    }
                }
                Mark::Nothing => {}
            }
            let subscribers = if events.is_empty() {
                Vec::new()
            } else {
                let sql = format!(
                    "SELECT {SUBSCRIBER_COLUMNS} FROM event_subscribers WHERE state = 'active'"
                );
                let rows = sqlx::query(&sql).fetch_all(&mut *tx).await?;
                rows.iter().map(subscriber_row).collect::<Result<Vec<_>, _>>()?
            };
            let mut recorded = Vec::new();
            let mut seen = BTreeSet::new();
            for event in events {
                if !seen.insert(event.idempotency_key.clone()) {
                    continue;
                }
                // Taking the citizen's counter first locks it (PostgreSQL) until commit, so a
                // racing recording of the same key waits and then finds it below.
                let (citizen_seq,): (i64,) = sqlx::query_as(
                    "INSERT INTO citizen_event_counters (citizen_id, last_seq) VALUES ($1, 1) \
                     ON CONFLICT (citizen_id) DO UPDATE \
                     SET last_seq = citizen_event_counters.last_seq + 1 RETURNING last_seq",
                )
                .bind(&event.citizen_id)
                .fetch_one(&mut *tx)
                .await?;
                let exists: Option<(i64,)> =
                    sqlx::query_as("SELECT seq FROM life_events WHERE idempotency_key = $1")
                        .bind(&event.idempotency_key)
                        .fetch_optional(&mut *tx)
                        .await?;
                if exists.is_some() {
                    sqlx::query(
                        "UPDATE citizen_event_counters SET last_seq = last_seq - 1 \
                         WHERE citizen_id = $1",
                    )
                    .bind(&event.citizen_id)
                    .execute(&mut *tx)
                    .await?;
                    continue;
                }
                let id = format!("evt_{}", uuid::Uuid::new_v4().simple());
                let subject = Value::Object(event.subject.clone()).to_string();
                let (seq,): (i64,) = sqlx::query_as(
                    "INSERT INTO life_events (id, idempotency_key, event_type, category, \
                     citizen_id, citizen_seq, subject, source, occurred_at, recorded_at, audience) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING seq",
                )
                .bind(&id)
                .bind(&event.idempotency_key)
                .bind(&event.event_type)
                .bind(&event.category)
                .bind(&event.citizen_id)
                .bind(citizen_seq)
                .bind(&subject)
                .bind(&event.source)
                .bind(ms(event.occurred_at))
                .bind(now_ms)
                .bind(&event.audience)
                .fetch_one(&mut *tx)
                .await?;
                for subscriber in &subscribers {
                    let audience_ok = match (&event.audience, subscriber.kind) {
                        (Some(agency), _) => *agency == subscriber.agency,
                        (None, _) => true,
                    };
                    if !audience_ok || !subscriber.wants(&event.event_type) {
                        continue;
                    }
                    sqlx::query(
                        "INSERT INTO event_deliveries (event_seq, subscriber_id, citizen_id, \
                         citizen_seq, state, attempts, next_attempt_at, updated_at) \
                         VALUES ($1, $2, $3, $4, 'pending', 0, $5, $5)",
                    )
                    .bind(seq)
                    .bind(&subscriber.id)
                    .bind(&event.citizen_id)
                    .bind(citizen_seq)
                    .bind(now_ms)
                    .execute(&mut *tx)
                    .await?;
                }
                recorded.push(LifeEvent {
                    seq,
                    id,
                    event_type: event.event_type,
                    category: event.category,
                    citizen_id: event.citizen_id,
                    citizen_seq,
                    subject: event.subject,
                    source: event.source,
                    // As stored (milliseconds), so it equals what a later read returns.
                    occurred_at: from_ms(ms(event.occurred_at)),
                    recorded_at: from_ms(now_ms),
                    audience: event.audience,
                });
            }
            tx.commit().await?;
            Ok(Recorded::Events(recorded))
        })
    }

    /// Events recorded after `seq`, oldest first (the subscription feed and offer makers tail
    /// the outbox with this).
    pub async fn events_after(&self, seq: i64, limit: i64) -> Result<Vec<LifeEvent>, OutboxError> {
        let sql =
            format!("SELECT {EVENT_COLUMNS} FROM life_events WHERE seq > $1 ORDER BY seq LIMIT $2");
        on_pool!(&self.store, pool => {
            let rows = sqlx::query(&sql).bind(seq).bind(limit.clamp(1, 10_000)).fetch_all(pool).await?;
            rows.iter().map(event_row).collect()
        })
    }

    /// The newest event's `seq` (0 when there is none): where a new live feed starts.
    pub async fn last_seq(&self) -> Result<i64, OutboxError> {
        let (seq,): (Option<i64>,) = on_pool!(&self.store, pool => {
            sqlx::query_as("SELECT MAX(seq) FROM life_events").fetch_one(pool).await?
        });
        Ok(seq.unwrap_or(0))
    }

    /// One event by its id.
    pub async fn event(&self, id: &str) -> Result<Option<LifeEvent>, OutboxError> {
        let sql = format!("SELECT {EVENT_COLUMNS} FROM life_events WHERE id = $1");
        on_pool!(&self.store, pool => {
            let row = sqlx::query(&sql).bind(id).fetch_optional(pool).await?;
            row.as_ref().map(event_row).transpose()
        })
    }

    /// A citizen's events, newest first.
    pub async fn citizen_events(
        &self,
        citizen_id: &str,
        limit: i64,
    ) -> Result<Vec<LifeEvent>, OutboxError> {
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM life_events WHERE citizen_id = $1 \
             ORDER BY citizen_seq DESC LIMIT $2"
        );
        on_pool!(&self.store, pool => {
            let rows = sqlx::query(&sql).bind(citizen_id).bind(limit.clamp(1, 1000)).fetch_all(pool).await?;
            rows.iter().map(event_row).collect()
        })
    }

    /// Registers a webhook subscriber; it receives events recorded from now on.
    pub async fn add_subscriber(&self, new: NewSubscriber) -> Result<Subscriber, OutboxError> {
        let id = format!("sub_{}", uuid::Uuid::new_v4().simple());
        self.insert_subscriber(&id, SubscriberKind::Webhook, new)
            .await?;
        self.subscriber(&id)
            .await?
            .ok_or_else(|| OutboxError::Corrupt("a subscriber vanished as it was added".into()))
    }

    /// Makes sure the NATS bus is a subscriber (id `nats`) when `[events] nats_url` is set: it
    /// receives every event, through the same claims, leases and retries as a webhook.
    pub async fn ensure_nats_subscriber(&self, subject_prefix: &str) -> Result<(), OutboxError> {
        let new = NewSubscriber {
            agency: String::new(),
            purpose: String::new(),
            endpoint: subject_prefix.to_string(),
            secret: String::new(),
            event_types: Vec::new(),
            created_by: "civicgraph".to_string(),
        };
        self.insert_subscriber("nats", SubscriberKind::Nats, new)
            .await
    }

    async fn insert_subscriber(
        &self,
        id: &str,
        kind: SubscriberKind,
        new: NewSubscriber,
    ) -> Result<(), OutboxError> {
        let now = ms(Utc::now());
        let types = serde_json::to_string(&new.event_types).unwrap_or_else(|_| "[]".into());
        const SQL: &str = "INSERT INTO event_subscribers (id, agency, purpose, kind, endpoint, \
                           secret, event_types, state, created_by, created_at, updated_at) \
                           VALUES ($1, $2, $3, $4, $5, $6, $7, 'active', $8, $9, $9) \
                           ON CONFLICT (id) DO UPDATE SET endpoint = excluded.endpoint, \
                           state = 'active', updated_at = excluded.updated_at";
        on_pool!(&self.store, pool => {
            sqlx::query(SQL)
                .bind(id)
                .bind(&new.agency)
                .bind(&new.purpose)
                .bind(kind.as_str())
                .bind(&new.endpoint)
                .bind(&new.secret)
                .bind(&types)
                .bind(&new.created_by)
                .bind(now)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// One subscriber.
    pub async fn subscriber(&self, id: &str) -> Result<Option<Subscriber>, OutboxError> {
        let sql = format!("SELECT {SUBSCRIBER_COLUMNS} FROM event_subscribers WHERE id = $1");
        on_pool!(&self.store, pool => {
            let row = sqlx::query(&sql).bind(id).fetch_optional(pool).await?;
            row.as_ref().map(subscriber_row).transpose()
        })
    }

    /// The webhook subscribers, of one agency or all, oldest first.
    pub async fn subscribers(&self, agency: Option<&str>) -> Result<Vec<Subscriber>, OutboxError> {
        let sql = format!(
            "SELECT {SUBSCRIBER_COLUMNS} FROM event_subscribers WHERE kind = 'webhook' \
             AND ($1 = '' OR agency = $1) ORDER BY created_at, id"
        );
        on_pool!(&self.store, pool => {
            let rows = sqlx::query(&sql).bind(agency.unwrap_or("")).fetch_all(pool).await?;
            rows.iter().map(subscriber_row).collect()
        })
    }

    /// Turns a subscriber on or off (`reason` says why it was turned off); `None` when there is
    /// no such subscriber.
    pub async fn set_subscriber_active(
        &self,
        id: &str,
        active: bool,
        reason: Option<&str>,
    ) -> Result<Option<Subscriber>, OutboxError> {
        let now = ms(Utc::now());
        let state = if active { "active" } else { "disabled" };
        let reason = if active { None } else { reason };
        let changed = on_pool!(&self.store, pool => {
            sqlx::query(
                "UPDATE event_subscribers SET state = $2, disabled_reason = $3, updated_at = $4 \
                 WHERE id = $1",
            )
            .bind(id)
            .bind(state)
            .bind(reason)
            .bind(now)
            .execute(pool)
            .await?
            .rows_affected()
        });
        if changed == 0 {
            return Ok(None);
        }
        self.subscriber(id).await
    }

    /// Claims up to `limit` due deliveries for `owner` until `lease` from now: pending, due,
    /// not leased by a live worker, to an active subscriber not in `busy`, and each the oldest
    /// pending one of its citizen for its subscriber.
    pub async fn claim(
        &self,
        owner: &str,
        lease: std::time::Duration,
        limit: i64,
        busy: &[String],
    ) -> Result<Vec<Claimed>, OutboxError> {
        let full: Vec<(String, usize)> = busy.iter().map(|id| (id.clone(), usize::MAX)).collect();
        self.claim_capped(owner, lease, limit, usize::MAX, &full)
            .await
    }

    /// [`claim`](Self::claim), taking no more of one subscriber's deliveries than leave it at
    /// most `per_subscriber` in flight, counting the `in_flight` ones `owner` already has by
    /// subscriber: a slow receiver gets its share of a worker's slots, not all of them.
    pub async fn claim_capped(
        &self,
        owner: &str,
        lease: std::time::Duration,
        limit: i64,
        per_subscriber: usize,
        in_flight: &[(String, usize)],
    ) -> Result<Vec<Claimed>, OutboxError> {
        let now = ms(Utc::now());
        let until = now.saturating_add(i64::try_from(lease.as_millis()).unwrap_or(i64::MAX));
        let room =
            |taken: usize| i64::try_from(per_subscriber.saturating_sub(taken)).unwrap_or(i64::MAX);
        // Subscribers with no room left are not looked at; the others' rooms are bound below.
        let full: Vec<&String> = in_flight
            .iter()
            .filter(|(_, taken)| room(*taken) == 0)
            .map(|(id, _)| id)
            .collect();
        let partial: Vec<(&String, i64)> = in_flight
            .iter()
            .map(|(id, taken)| (id, room(*taken)))
            .filter(|(_, left)| *left > 0)
            .collect();
        let mut next = 6;
        let mut placeholder = || {
            next += 1;
            format!("${}", next - 1)
        };
        let not_busy = if full.is_empty() {
            String::new()
        } else {
            let list: Vec<String> = full.iter().map(|_| placeholder()).collect();
            format!("AND d.subscriber_id NOT IN ({})", list.join(", "))
        };
        let rooms: String = partial
            .iter()
            .map(|_| format!(" WHEN {} THEN {}", placeholder(), placeholder()))
            .collect();
        let room_of = if rooms.is_empty() {
            "$5".to_string()
        } else {
            format!("CASE r.subscriber_id{rooms} ELSE $5 END")
        };
        let lock = match self.store {
            Store::Postgres(_) => "FOR UPDATE OF d SKIP LOCKED",
            Store::Sqlite(_) => "",
        };
        // A candidate is its citizen's oldest pending delivery to its subscriber. (Asked as a
        // correlated MIN, not NOT EXISTS: PostgreSQL turns NOT EXISTS into an anti-join, and on
        // a young table without statistics planned it as a scan of every pending row per
        // candidate, 120 ms a claim at 1 500 pending; the MIN is one index probe each.)
        // The candidates ($4 of them at most, locked against other workers) are numbered per
        // subscriber in event order, and each subscriber keeps as many as it has room for. A
        // subscriber with little room may leave some of the $4 unused this time; it is then full
        // and left out of the next claim.
        let sql = format!(
            "UPDATE event_deliveries SET lease_owner = $1, lease_until = $2, updated_at = $3 \
             WHERE (event_seq, subscriber_id) IN ( \
               SELECT r.event_seq, r.subscriber_id FROM ( \
                 SELECT c.event_seq, c.subscriber_id, ROW_NUMBER() OVER \
                   (PARTITION BY c.subscriber_id ORDER BY c.event_seq) AS n FROM ( \
                   SELECT d.event_seq, d.subscriber_id FROM event_deliveries d \
                   JOIN event_subscribers s ON s.id = d.subscriber_id AND s.state = 'active' \
                   WHERE d.state = 'pending' AND d.next_attempt_at <= $3 \
                     AND (d.lease_until IS NULL OR d.lease_until < $3) {not_busy} \
                     AND d.citizen_seq = (SELECT MIN(p.citizen_seq) FROM event_deliveries p \
                       WHERE p.subscriber_id = d.subscriber_id AND p.citizen_id = d.citizen_id \
                         AND p.state = 'pending') \
                   ORDER BY d.event_seq LIMIT $4 {lock}) c) r \
               WHERE r.n <= {room_of} ORDER BY r.event_seq LIMIT $4) \
             RETURNING event_seq, subscriber_id, attempts"
        );
        let claimed: Vec<(i64, String, i64)> = on_pool!(&self.store, pool => {
            let mut query = sqlx::query_as(&sql)
                .bind(owner)
                .bind(until)
                .bind(now)
                .bind(limit.clamp(1, MAX_CLAIM))
                .bind(room(0));
            for id in &full {
                query = query.bind(*id);
            }
            for (id, left) in &partial {
                query = query.bind(*id).bind(*left);
            }
            query.fetch_all(pool).await?
        });
        if claimed.is_empty() {
            return Ok(Vec::new());
        }
        let seqs: BTreeSet<i64> = claimed.iter().map(|(seq, _, _)| *seq).collect();
        let ids: BTreeSet<&str> = claimed.iter().map(|(_, id, _)| id.as_str()).collect();
        let events = self
            .events_by_seq(&seqs.into_iter().collect::<Vec<_>>())
            .await?;
        let mut subscribers = HashMap::new();
        for id in ids {
            if let Some(subscriber) = self.subscriber(id).await? {
                subscribers.insert(id.to_string(), subscriber);
            }
        }
        let mut out = Vec::with_capacity(claimed.len());
        for (seq, subscriber_id, attempts) in claimed {
            if let (Some(event), Some(subscriber)) =
                (events.get(&seq), subscribers.get(&subscriber_id))
            {
                out.push(Claimed {
                    event: event.clone(),
                    subscriber: subscriber.clone(),
                    attempts,
                });
            }
        }
        out.sort_by_key(|c| c.event.seq);
        Ok(out)
    }

    async fn events_by_seq(&self, seqs: &[i64]) -> Result<HashMap<i64, LifeEvent>, OutboxError> {
        let mut out = HashMap::new();
        for chunk in seqs.chunks(500) {
            let placeholders: Vec<String> = (1..=chunk.len()).map(|n| format!("${n}")).collect();
            let sql = format!(
                "SELECT {EVENT_COLUMNS} FROM life_events WHERE seq IN ({})",
                placeholders.join(", ")
            );
            let events: Vec<LifeEvent> = on_pool!(&self.store, pool => {
                let mut query = sqlx::query(&sql);
                for seq in chunk {
                    query = query.bind(*seq);
                }
                let rows = query.fetch_all(pool).await?;
                rows.iter().map(event_row).collect::<Result<Vec<_>, _>>()?
            });
            out.extend(events.into_iter().map(|e| (e.seq, e)));
        }
        Ok(out)
    }

    /// Records how an attempt on a claimed delivery ended, only while `owner` still holds its
    /// lease; `false` when the lease was lost (another worker has it now).
    pub async fn finish(
        &self,
        owner: &str,
        event_seq: i64,
        subscriber_id: &str,
        attempt: Attempt<'_>,
    ) -> Result<bool, OutboxError> {
        let now = ms(Utc::now());
        let (state, status, error, next, delivered_at): (
            &str,
            Option<i64>,
            Option<&str>,
            i64,
            Option<i64>,
        ) = match attempt {
            Attempt::Delivered { status } => {
                ("delivered", status.map(i64::from), None, now, Some(now))
            }
            Attempt::Failed {
                status,
                error,
                retry_at: Some(at),
            } => ("pending", status.map(i64::from), Some(error), ms(at), None),
            Attempt::Failed {
                status,
                error,
                retry_at: None,
            } => ("dead", status.map(i64::from), Some(error), now, None),
            Attempt::Filtered => ("filtered", None, None, now, None),
        };
        let counts = !matches!(attempt, Attempt::Filtered);
        let changed = on_pool!(&self.store, pool => {
            sqlx::query(
                "UPDATE event_deliveries SET state = $4, attempts = attempts + $5, \
                 last_status = COALESCE($6, last_status), last_error = $7, next_attempt_at = $8, \
                 delivered_at = $9, lease_owner = NULL, lease_until = NULL, updated_at = $10 \
                 WHERE event_seq = $1 AND subscriber_id = $2 AND lease_owner = $3",
            )
            .bind(event_seq)
            .bind(subscriber_id)
            .bind(owner)
            .bind(state)
            .bind(i64::from(counts))
            .bind(status)
            .bind(error)
            .bind(next)
            .bind(delivered_at)
            .bind(now)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(changed == 1)
    }

    /// A subscriber's deliveries in one state (or all), newest event first.
    pub async fn deliveries(
        &self,
        subscriber_id: &str,
        state: Option<DeliveryState>,
        limit: i64,
    ) -> Result<Vec<Delivery>, OutboxError> {
        let sql = format!(
            "SELECT {}, d.subscriber_id, d.state, d.attempts, d.next_attempt_at, d.last_status, \
             d.last_error, d.delivered_at FROM event_deliveries d \
             JOIN life_events e ON e.seq = d.event_seq \
             WHERE d.subscriber_id = $1 AND ($2 = '' OR d.state = $2) \
             ORDER BY d.event_seq DESC LIMIT $3",
            EVENT_COLUMNS
                .split(", ")
                .map(|c| format!("e.{c}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let state = state.map(DeliveryState::as_str).unwrap_or("");
        on_pool!(&self.store, pool => {
            let rows = sqlx::query(&sql)
                .bind(subscriber_id)
                .bind(state)
                .bind(limit.clamp(1, 1000))
                .fetch_all(pool)
                .await?;
            rows.iter()
                .map(|row| {
                    let event = event_row(row)?;
                    let state: String = row.try_get(12)?;
                    let delivery_state = DeliveryState::parse(&state)
                        .ok_or_else(|| OutboxError::Corrupt("a delivery state".into()))?;
                    let next: i64 = row.try_get(14)?;
                    let delivered: Option<i64> = row.try_get(17)?;
                    Ok(Delivery {
                        event,
                        subscriber_id: row.try_get(11)?,
                        state: delivery_state,
                        attempts: row.try_get(13)?,
                        next_attempt_at: (delivery_state == DeliveryState::Pending)
                            .then(|| from_ms(next)),
                        last_status: row.try_get(15)?,
                        last_error: row.try_get(16)?,
                        delivered_at: delivered.map(from_ms),
                    })
                })
                .collect()
        })
    }

    /// Puts dead deliveries of a subscriber (one event's, or all of them) back in line with a
    /// fresh schedule; the event keeps its id. Returns how many.
    pub async fn replay(
        &self,
        subscriber_id: &str,
        event_id: Option<&str>,
    ) -> Result<u64, OutboxError> {
        let now = ms(Utc::now());
        let changed = on_pool!(&self.store, pool => {
            sqlx::query(
                "UPDATE event_deliveries SET state = 'pending', attempts = 0, \
                 next_attempt_at = $3, lease_owner = NULL, lease_until = NULL, updated_at = $3 \
                 WHERE subscriber_id = $1 AND state = 'dead' AND ($2 = '' OR event_seq = \
                 (SELECT seq FROM life_events WHERE id = $2))",
            )
            .bind(subscriber_id)
            .bind(event_id.unwrap_or(""))
            .bind(now)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(changed)
    }
}

#[cfg(test)]
#[path = "outbox_tests.rs"]
mod tests;
