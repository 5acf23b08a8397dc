-- Engine snapshots: the engine's state after journal command `command_no` (libs/engine
-- snapshot_codec), so that a restart loads the newest one and replays only the journal after it.
-- A cache of the journal, which stays the source of truth: a snapshot that does not decode, was
-- taken with another market list, or does not give its state hash back is skipped, and the
-- whole journal is replayed. The trading service keeps the newest two.
CREATE TABLE engine_snapshots (
    command_no  BIGINT PRIMARY KEY,
    last_seq    BIGINT NOT NULL,
    state_hash  TEXT NOT NULL,
    markets     TEXT NOT NULL,
    state       BYTEA NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
