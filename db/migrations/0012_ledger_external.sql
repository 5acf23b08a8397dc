-- Money that entered or left an account from outside the exchange (operator deposits and
-- withdrawals), by account: the vault sampler subtracts it from a vault account's NAV together
-- with the vault's own deposits and withdrawals, so that its `pnl` is what trading made (the
-- protocol vault's operator seed is capital, not profit).
CREATE INDEX ledger_external ON ledger (user_id) WHERE reason IN ('DEPOSIT', 'WITHDRAWAL');
