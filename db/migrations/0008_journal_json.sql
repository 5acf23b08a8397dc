-- The journal is written once and read back whole at every start: `json` keeps the text as
-- written (validated on insert), where `jsonb` had to be rebuilt into text on every read (2.5 s
-- of PostgreSQL's time per million commands on the recovery benchmark).
ALTER TABLE engine_journal ALTER COLUMN payload TYPE json USING payload::json;
