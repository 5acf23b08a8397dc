-- Engine snapshots in parts: one bytea value is capped at 1 GB (and the hex text libpq sends it
-- as at half of that), which the state of a few million resting orders reaches. A snapshot is now
-- its row in engine_snapshots plus `parts` rows here of at most SNAPSHOT_PART_BYTES (32 MiB) each.
-- Rows of the single-value form have no parts: they are skipped (the whole journal is replayed
-- once, and the follower stores a snapshot in parts).
CREATE TABLE engine_snapshot_parts (
    command_no  BIGINT NOT NULL REFERENCES engine_snapshots (command_no) ON DELETE CASCADE,
    part        INTEGER NOT NULL,
    bytes       BYTEA NOT NULL,
    PRIMARY KEY (command_no, part)
);
ALTER TABLE engine_snapshots DROP COLUMN state;
ALTER TABLE engine_snapshots ADD COLUMN parts INTEGER NOT NULL DEFAULT 0;
