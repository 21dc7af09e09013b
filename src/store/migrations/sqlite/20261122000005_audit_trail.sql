-- The audit trail: one row per protected read, each carrying the hash of the row before it.
-- seq is assigned by the gateway (contiguous from 1), never by the database, so a gap always
-- means a deleted row. Times are RFC 3339 text, as sqlx writes a DateTime<Utc>.
CREATE TABLE audit_records (
    seq        INTEGER PRIMARY KEY CHECK (seq >= 1),
    at         TEXT NOT NULL,
    request_id TEXT NOT NULL,
    principal  TEXT NOT NULL,
    agency     TEXT,
    citizen_id TEXT NOT NULL,
    categories TEXT NOT NULL,
    fields     TEXT NOT NULL,
    purpose    TEXT,
    decision   TEXT NOT NULL CHECK (decision IN ('allowed', 'forbidden', 'consent_required')),
    basis      TEXT,
    prev_hash  TEXT NOT NULL,
    hash       TEXT NOT NULL
);

-- A citizen's access log, newest first.
CREATE INDEX audit_records_by_citizen ON audit_records (citizen_id, seq);

-- The chain's end, in one row: appends lock it first, so they are serialised.
CREATE TABLE audit_head (
    id        INTEGER PRIMARY KEY CHECK (id = 1),
    last_seq  INTEGER NOT NULL,
    last_hash TEXT NOT NULL
);

INSERT INTO audit_head (id, last_seq, last_hash) VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');

-- Append-only. Dropping these takes schema rights; what such an attacker changes anyway is
-- caught by `civicgraph audit verify` (hashes, links, and checkpoints outside the database).
CREATE TRIGGER audit_records_no_update BEFORE UPDATE ON audit_records
BEGIN
    SELECT RAISE(ABORT, 'audit_records is append-only: UPDATE refused');
END;

CREATE TRIGGER audit_records_no_delete BEFORE DELETE ON audit_records
BEGIN
    SELECT RAISE(ABORT, 'audit_records is append-only: DELETE refused');
END;

CREATE TRIGGER audit_head_no_delete BEFORE DELETE ON audit_head
BEGIN
    SELECT RAISE(ABORT, 'audit_head is permanent: DELETE refused');
END;

CREATE TRIGGER audit_head_no_rewind BEFORE UPDATE ON audit_head
WHEN NEW.last_seq < OLD.last_seq
BEGIN
    SELECT RAISE(ABORT, 'audit_head only moves forward: rewind refused');
END;
