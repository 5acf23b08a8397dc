-- The market lifecycle (issue 24): a market's trading status and the parameters an operator
-- changed since it was listed (SetMarketStatus, SetMarketParams), written with the journal
-- command that changed them. The markets row keeps what the market was listed with (the engine
-- starts from it and replays the changes from the journal); readers take this row over it.
CREATE TABLE market_state (
  market_id      integer PRIMARY KEY REFERENCES markets(id),
  status         text NOT NULL CHECK (status IN ('ACTIVE', 'HALTED', 'DELISTED')),
  maker_fee_rate numeric NOT NULL,
  taker_fee_rate numeric NOT NULL,
  max_leverage   integer NOT NULL,
  final_price    numeric,                -- DELISTED: the settlement price
  command_no     bigint NOT NULL,
  updated_at     timestamptz NOT NULL
);
