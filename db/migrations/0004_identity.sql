-- Identity: session tokens and API keys, stored only as SHA-256 hashes. Redis holds the same
-- hashes for the gateway's lookups (sessions with their TTL); PostgreSQL is the record.
CREATE TABLE api_keys (
  id          uuid PRIMARY KEY,
  user_id     uuid NOT NULL,
  key_hash    bytea NOT NULL UNIQUE,
  prefix      text NOT NULL,               -- the first characters of the key, to recognise it
  scope       text NOT NULL CHECK (scope IN ('read', 'trade')),
  label       text NOT NULL DEFAULT '',
  created_at  timestamptz NOT NULL DEFAULT now(),
  revoked_at  timestamptz
);
CREATE INDEX api_keys_user ON api_keys (user_id, created_at DESC);

CREATE TABLE sessions (
  token_hash  bytea PRIMARY KEY,
  user_id     uuid NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now(),
  expires_at  timestamptz NOT NULL,
  revoked_at  timestamptz
);
CREATE INDEX sessions_user ON sessions (user_id);
