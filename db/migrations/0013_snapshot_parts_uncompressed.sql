-- Snapshot parts are stored as they are: PostgreSQL's default for bytea compresses every value
-- (pglz) on the way in, slow for 32 MiB parts that hardly compress; EXTERNAL keeps them
-- out of line, uncompressed.
ALTER TABLE engine_snapshot_parts ALTER COLUMN bytes SET STORAGE EXTERNAL;
