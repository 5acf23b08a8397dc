-- Withdrawals to the chain (POST /withdrawals): one row per request, written in the journal's
-- transaction with the command that moved the money (so the row exists exactly when the amount
-- has left the account), its status changed the same way (the bridge's PROCESSING, COMPLETED with
-- the chain's transaction id, REJECTED with a reason; the user's CANCELLED).
CREATE TABLE withdrawals (
  id          uuid PRIMARY KEY,
  user_id     uuid NOT NULL,
  amount      numeric NOT NULL CHECK (amount > 0),
  address     text NOT NULL,
  chain       text NOT NULL,
  status      text NOT NULL CHECK (status IN ('PENDING', 'PROCESSING', 'COMPLETED', 'REJECTED', 'CANCELLED')),
  chain_tx_id text,
  reason      text,
  command_no  bigint NOT NULL,
  created_at  timestamptz NOT NULL,
  updated_at  timestamptz NOT NULL
);
CREATE INDEX withdrawals_user ON withdrawals (user_id, created_at DESC, id DESC);
