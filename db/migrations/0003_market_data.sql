-- Market data written by trading's persister in the same transactions as the fills: one-minute
-- bars per market. Longer bars roll up from these; the 24h ticker reads them.
CREATE TABLE klines_1m (
  market_id    integer NOT NULL REFERENCES markets(id),
  bucket       timestamptz NOT NULL,      -- the bar's open, on a whole minute
  open         numeric NOT NULL,
  high         numeric NOT NULL,
  low          numeric NOT NULL,
  close        numeric NOT NULL,
  volume       numeric NOT NULL,          -- base units
  quote_volume numeric NOT NULL,          -- USDM
  trades       integer NOT NULL,
  first_seq    bigint NOT NULL,
  last_seq     bigint NOT NULL,
  PRIMARY KEY (market_id, bucket)
);
