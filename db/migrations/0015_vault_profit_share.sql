-- The leader's performance fee (profit share) on a withdrawal is its own vault transaction
-- (issue 21): a row of type 'profit_share' for the leader, with the withdrawal's sequence. A
-- transaction is identified by (seq, type) from now on.
ALTER TABLE vault_transactions DROP CONSTRAINT vault_transactions_pkey;
ALTER TABLE vault_transactions ADD PRIMARY KEY (seq, type);
ALTER TABLE vault_transactions DROP CONSTRAINT vault_transactions_type_check;
ALTER TABLE vault_transactions ADD CONSTRAINT vault_transactions_type_check
  CHECK (type IN ('deposit', 'withdrawal', 'management_fee', 'profit_share'));
