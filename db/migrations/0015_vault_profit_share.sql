-- The leader's performance fee (profit share) on a withdrawal is its own vault transaction
-- (issue 21): a row of type 'profit_share' for the leader, with the withdrawal's sequence. A
-- transaction is identified by (seq, type) from now on.
ALTER TABLE vault_transactions DROP CONSTRAINT vault_transactions_pkey;
ALTER TABLE vault_transactions ADD PRIMARY KEY (seq, type);
ALTER TABLE vault_transactions DROP CONSTRAINT vault_transactions_type_check;
ALTER TABLE vault_transactions ADD CONSTRAINT vault_transactions_type_check
  CHECK (type IN ('deposit', 'withdrawal', 'management_fee', 'profit_share'));
-- Withdrawals recorded before this migration get their profit-share rows too (the leader's fee
-- shares), so a vault's history reads the same before and after it. Deploy note: an older trading
-- binary writes ON CONFLICT (seq) and fails against the new key: migrate and swap binaries
-- (standbys included) together.
INSERT INTO vault_transactions (seq, vault_id, user_id, type, amount, fee, paid, shares, fee_shares,
                                user_shares, nav, total_shares, unlock_at, time)
SELECT t.seq, t.vault_id, v.leader_user_id, 'profit_share', t.fee, 0, 0, t.fee_shares, 0, 0, t.nav,
       t.total_shares, NULL, t.time
FROM vault_transactions t JOIN vaults v ON v.id = t.vault_id
WHERE t.type = 'withdrawal' AND t.fee_shares > 0
ON CONFLICT (seq, type) DO NOTHING;
