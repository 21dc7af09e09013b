-- Life events: the outbox and what delivers it. Times are unix milliseconds (INTEGER), compared
-- and ordered the same way on SQLite and PostgreSQL.

-- Where each change source has got to, moved in the same transaction as the events it produced.
-- One instance polls a source at a time: it holds the lease while it polls and records.
CREATE TABLE event_sources (
    source      TEXT NOT NULL PRIMARY KEY,
    watermark   TEXT NOT NULL,
    lease_owner TEXT,
    lease_until INTEGER,
    updated_at  INTEGER NOT NULL
);

-- The outbox. `seq` is the global order (the subscription feed tails it); `citizen_seq` numbers
-- one citizen's events so consumers can keep them in order; `idempotency_key` makes a change
-- seen twice (a re-poll, a redelivered inbound webhook) one event.
CREATE TABLE life_events (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    id              TEXT NOT NULL UNIQUE,
    idempotency_key TEXT NOT NULL UNIQUE,
    event_type      TEXT NOT NULL,
    category        TEXT NOT NULL,
    citizen_id      TEXT NOT NULL,
    citizen_seq     INTEGER NOT NULL,
    subject         TEXT NOT NULL,
    source          TEXT NOT NULL,
    occurred_at     INTEGER NOT NULL,
    recorded_at     INTEGER NOT NULL,
    audience        TEXT,
    UNIQUE (citizen_id, citizen_seq)
);

CREATE TABLE citizen_event_counters (
    citizen_id TEXT NOT NULL PRIMARY KEY,
    last_seq   INTEGER NOT NULL
);

-- Who receives events: a webhook endpoint of an agency (for one purpose), or the NATS bus.
CREATE TABLE event_subscribers (
    id              TEXT NOT NULL PRIMARY KEY,
    agency          TEXT NOT NULL,
    purpose         TEXT NOT NULL,
    kind            TEXT NOT NULL CHECK (kind IN ('webhook', 'nats')),
    endpoint        TEXT NOT NULL,
    secret          TEXT NOT NULL,
    event_types     TEXT NOT NULL,
    state           TEXT NOT NULL CHECK (state IN ('active', 'disabled')),
    disabled_reason TEXT,
    created_by      TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);

-- One row per event per subscriber, written with the event. A worker claims due rows with a
-- lease; a row whose lease ran out (its worker died) is claimed again, with the same event id.
CREATE TABLE event_deliveries (
    event_seq       INTEGER NOT NULL REFERENCES life_events (seq),
    subscriber_id   TEXT NOT NULL REFERENCES event_subscribers (id),
    citizen_id      TEXT NOT NULL,
    citizen_seq     INTEGER NOT NULL,
    state           TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'dead', 'filtered')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    lease_owner     TEXT,
    lease_until     INTEGER,
    last_status     INTEGER,
    last_error      TEXT,
    delivered_at    INTEGER,
    updated_at      INTEGER NOT NULL,
    PRIMARY KEY (event_seq, subscriber_id)
);
CREATE INDEX event_deliveries_due ON event_deliveries (state, next_attempt_at);
CREATE INDEX event_deliveries_per_citizen ON event_deliveries (subscriber_id, citizen_id, citizen_seq);

-- Inbound webhook ids already accepted per source: a replay inside the tolerance is a no-op.
CREATE TABLE inbound_webhooks (
    source      TEXT NOT NULL,
    webhook_id  TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    PRIMARY KEY (source, webhook_id)
);

-- Proactive service offers made to citizens when an event triggers a service.
CREATE TABLE service_offers (
    id          TEXT NOT NULL PRIMARY KEY,
    citizen_id  TEXT NOT NULL,
    service_id  TEXT NOT NULL,
    event_id    TEXT NOT NULL,
    state       TEXT NOT NULL CHECK (state IN ('offered', 'accepted', 'dismissed')),
    created_at  INTEGER NOT NULL,
    changed_at  INTEGER NOT NULL,
    UNIQUE (citizen_id, service_id, event_id)
);
CREATE INDEX service_offers_by_citizen ON service_offers (citizen_id, created_at);
