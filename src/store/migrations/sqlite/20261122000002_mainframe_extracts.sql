-- Mainframe extract files: which file each connector serves, and its decoded records.
CREATE TABLE mainframe_extracts (
    connector     TEXT PRIMARY KEY,
    file_name     TEXT NOT NULL,
    file_size     INTEGER NOT NULL,
    file_modified TEXT NOT NULL,
    as_of         TEXT NOT NULL,
    loaded_at     TEXT NOT NULL,
    records       INTEGER NOT NULL
);

CREATE TABLE mainframe_extract_rows (
    connector  TEXT NOT NULL,
    seq        INTEGER NOT NULL,
    record_key TEXT NOT NULL,
    record     TEXT NOT NULL,
    PRIMARY KEY (connector, seq)
);

CREATE INDEX mainframe_extract_rows_by_key ON mainframe_extract_rows (connector, record_key);
