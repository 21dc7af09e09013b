-- Mainframe extract files: which file each connector serves, and its decoded records.
CREATE TABLE mainframe_extracts (
    connector     TEXT PRIMARY KEY,
    file_name     TEXT NOT NULL,
    file_size     BIGINT NOT NULL,
    file_modified TIMESTAMPTZ NOT NULL,
    as_of         TIMESTAMPTZ NOT NULL,
    loaded_at     TIMESTAMPTZ NOT NULL,
    records       BIGINT NOT NULL
);

CREATE TABLE mainframe_extract_rows (
    connector  TEXT NOT NULL,
    seq        BIGINT NOT NULL,
    record_key TEXT NOT NULL,
    record     TEXT NOT NULL,
    PRIMARY KEY (connector, seq)
);

CREATE INDEX mainframe_extract_rows_by_key ON mainframe_extract_rows (connector, record_key);
