-- A user's funding payments (issue 23, GET /api/v1/funding/payments): one row per position per
-- settled interval, projected from the engine's FundingPaid events like the other read tables.
-- The interval's rate is funding_rates' row for the market and time. Payments settled before this
-- migration are in the ledger (reason FUNDING) without the position's size.
CREATE TABLE funding_payments (
  seq            bigint PRIMARY KEY,
  user_id        uuid NOT NULL,
  market_id      integer NOT NULL,
  time           timestamptz NOT NULL,  -- the interval's settlement moment
  amount         numeric NOT NULL,      -- the change of the account's balance (negative: paid)
  position_size  numeric NOT NULL       -- signed: positive long, negative short
);
CREATE INDEX funding_payments_user ON funding_payments (user_id, seq DESC);
-- The ledger read by kind and time (GET /api/v1/ledger).
CREATE INDEX ledger_user_time ON ledger (user_id, time DESC);
