-- Vaults with share accounting (issue #8). Shares and money live in the engine (the single
-- writer); these tables are what trading's persister writes from its events, in the same
-- transaction as the command journal, so they can never disagree with it.

-- A vault row is written by trading's persister when the engine creates the vault: it must never
-- fail there, so uniqueness of names is checked by the vault service before it asks, and the
-- leader and account need not be rows of `users` (API-key users, system accounts).
ALTER TABLE vaults DROP CONSTRAINT vaults_name_key;
ALTER TABLE vaults DROP CONSTRAINT vaults_leader_user_id_fkey;
ALTER TABLE vaults DROP CONSTRAINT vaults_account_user_id_fkey;
-- Lockups below a day (tests, short-lived vaults); lock_period_days stays the whole days of it.
ALTER TABLE vaults ADD COLUMN lock_period_ms bigint;
UPDATE vaults SET lock_period_ms = lock_period_days::bigint * 86400000;
ALTER TABLE vaults ALTER COLUMN lock_period_ms SET NOT NULL;
CREATE INDEX vaults_leader ON vaults (leader_user_id);

-- Every share movement: deposits, withdrawals (with the performance fee), management fee mints.
CREATE TABLE vault_transactions (
  seq           bigint PRIMARY KEY,          -- the engine event's sequence: the transaction id
  vault_id      uuid NOT NULL,
  user_id       uuid NOT NULL,
  type          text NOT NULL CHECK (type IN ('deposit', 'withdrawal', 'management_fee')),
  amount        numeric NOT NULL,            -- USDM in, or out before the fee
  fee           numeric NOT NULL,            -- performance fee (USDM)
  paid          numeric NOT NULL,            -- USDM paid out (withdrawal)
  shares        numeric NOT NULL,
  fee_shares    numeric NOT NULL,
  user_shares   numeric NOT NULL,            -- the user's shares after
  nav           numeric NOT NULL,            -- the vault's value after
  total_shares  numeric NOT NULL,            -- after
  unlock_at     timestamptz,                 -- deposit: when its shares unlock
  time          timestamptz NOT NULL
);
CREATE INDEX vault_transactions_vault ON vault_transactions (vault_id, seq DESC);
CREATE INDEX vault_transactions_user ON vault_transactions (vault_id, user_id, seq DESC);

-- NAV per share, TVL and PnL sampled every minute by the vault service.
CREATE TABLE vault_performance (
  vault_id       uuid NOT NULL,
  time           timestamptz NOT NULL,
  nav            numeric NOT NULL,
  total_shares   numeric NOT NULL,
  nav_per_share  numeric NOT NULL,
  pnl            numeric NOT NULL,           -- nav - net deposits into the vault
  PRIMARY KEY (vault_id, time)
);
