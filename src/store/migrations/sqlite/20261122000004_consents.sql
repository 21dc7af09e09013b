-- The consent ledger: what each citizen lets an agency read (categories), for what (purpose) and
-- for how long. `categories` holds the category codes sorted and joined by single spaces (a code
-- never contains a space). Times are `DateTime<Utc>` as sqlx writes them (RFC 3339 text, UTC, to
-- the microsecond); the ledger compares them in Rust, never as text. Rows are never deleted:
-- revoking is a state, and `consent_events` keeps every change.
CREATE TABLE consents (
    handle      TEXT NOT NULL PRIMARY KEY,
    citizen_id  TEXT NOT NULL,
    grantee     TEXT NOT NULL,
    categories  TEXT NOT NULL CHECK (categories <> ''),
    purpose     TEXT NOT NULL,
    valid_from  TEXT NOT NULL,
    valid_until TEXT NOT NULL,
    state       TEXT NOT NULL CHECK (state IN ('active', 'paused', 'revoked')),
    granted_at  TEXT NOT NULL,
    changed_at  TEXT NOT NULL
);
-- Serves the policy's per-request lookup (citizen, grantee, purpose) and, by its first column,
-- a citizen's list; a separate (citizen_id) index would only repeat it.
CREATE INDEX consents_by_citizen_grantee_purpose ON consents (citizen_id, grantee, purpose);

-- Every change to a consent, appended in the same transaction as the change itself.
CREATE TABLE consent_events (
    id     INTEGER PRIMARY KEY AUTOINCREMENT,
    handle TEXT NOT NULL REFERENCES consents (handle),
    action TEXT NOT NULL CHECK (action IN ('granted', 'revoked', 'paused', 'resumed')),
    at     TEXT NOT NULL
);
CREATE INDEX consent_events_by_handle ON consent_events (handle, id);
