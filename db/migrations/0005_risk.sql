-- Mark price, funding and liquidation (issue #7, perp-rules "Funding" and "Liquidation").

-- How a fill came about: NULL for a normal trade, else the liquidation stage
-- ('BOOK': an engine IOC into the book, 'BACKSTOP': taken over by the protocol vault at the mark,
-- 'ADL': auto-deleveraged against an opposite position at the bankruptcy price).
ALTER TABLE trades ADD COLUMN liquidation text CHECK (liquidation IN ('BOOK', 'BACKSTOP', 'ADL'));
ALTER TABLE fills ADD COLUMN liquidation text CHECK (liquidation IN ('BOOK', 'BACKSTOP', 'ADL'));

-- One row per settled funding interval of a market. rate is what the interval applied
-- (F / 8 of the 8-hour-equivalent rate, after the 4 % cap); paid = Σ payers (each rounded up),
-- received = Σ receivers (each rounded down); the difference went to the insurance fund.
CREATE TABLE funding_rates (
  market_id     integer NOT NULL REFERENCES markets(id),
  time          timestamptz NOT NULL,   -- the settlement moment (end of the interval)
  rate          numeric NOT NULL,
  rate_8h       numeric NOT NULL,
  index_price   numeric NOT NULL,
  mark_price    numeric NOT NULL,
  paid          numeric NOT NULL,
  received      numeric NOT NULL,
  to_insurance  numeric NOT NULL,
  positions     integer NOT NULL,
  seq           bigint NOT NULL,
  PRIMARY KEY (market_id, time)
);

-- Every liquidated account: what it looked like when found, and the last stage it needed.
CREATE TABLE liquidations (
  seq                 bigint PRIMARY KEY,
  user_id             uuid NOT NULL,
  account_value       numeric NOT NULL,
  maintenance_margin  numeric NOT NULL,
  stage               text NOT NULL CHECK (stage IN ('BOOK', 'BACKSTOP', 'ADL')),
  insurance_paid      numeric NOT NULL,
  time                timestamptz NOT NULL
);
CREATE INDEX liquidations_user ON liquidations (user_id, seq DESC);
