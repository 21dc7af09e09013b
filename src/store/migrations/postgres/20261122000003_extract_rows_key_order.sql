-- Lookups read one key's records in file order. With (connector, record_key) alone, SQLite served
-- the ORDER BY from the primary key (connector, seq) and scanned every row of the connector
-- (2.2 ms against 12 µs for 34 000 rows); this index serves both the filter and the order.
DROP INDEX mainframe_extract_rows_by_key;
CREATE INDEX mainframe_extract_rows_by_key ON mainframe_extract_rows (connector, record_key, seq);
