-- The identity crosswalk: one key per agency per citizen, and one citizen per agency key.
CREATE TABLE identity_links (
    citizen_id TEXT NOT NULL,
    kind       TEXT NOT NULL CHECK (kind IN ('tin', 'license_number', 'claimant_id', 'case_number')),
    agency_key TEXT NOT NULL,
    linked_at  TIMESTAMPTZ NOT NULL,
    linked_by  TEXT NOT NULL,
    PRIMARY KEY (citizen_id, kind),
    UNIQUE (kind, agency_key)
);
