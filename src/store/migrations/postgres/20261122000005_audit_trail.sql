-- The audit trail: one row per protected read, each carrying the hash of the row before it.
-- seq is assigned by the gateway (contiguous from 1), never by a sequence, so a gap always
-- means a deleted row.
CREATE TABLE audit_records (
    seq        BIGINT PRIMARY KEY CHECK (seq >= 1),
    at         TIMESTAMPTZ NOT NULL,
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

-- The chain's end, in one row: appends row-lock it first, so every instance sharing this
-- database appends in turn.
CREATE TABLE audit_head (
    id        INTEGER PRIMARY KEY CHECK (id = 1),
    last_seq  BIGINT NOT NULL,
    last_hash TEXT NOT NULL
);

INSERT INTO audit_head (id, last_seq, last_hash) VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');

-- Append-only. Dropping these takes schema rights; what such an attacker changes anyway is
-- caught by `civicgraph audit verify` (hashes, links, and checkpoints outside the database).
CREATE FUNCTION audit_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '%', TG_ARGV[0] USING ERRCODE = 'restrict_violation';
END
$$;

CREATE TRIGGER audit_records_append_only BEFORE UPDATE OR DELETE ON audit_records
    FOR EACH ROW EXECUTE FUNCTION audit_refuse('audit_records is append-only: UPDATE and DELETE refused');

CREATE TRIGGER audit_records_no_truncate BEFORE TRUNCATE ON audit_records
    FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse('audit_records is append-only: TRUNCATE refused');

CREATE TRIGGER audit_head_no_delete BEFORE DELETE OR TRUNCATE ON audit_head
    FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse('audit_head is permanent: DELETE refused');

CREATE TRIGGER audit_head_no_rewind BEFORE UPDATE ON audit_head
    FOR EACH ROW WHEN (NEW.last_seq < OLD.last_seq)
    EXECUTE FUNCTION audit_refuse('audit_head only moves forward: rewind refused');
