-- Trading: the engine's command journal (the source of truth the engine is rebuilt from) and the
-- read tables the persister keeps in the same transactions (orders, fills, trades, positions,
-- balances, ledger, marks). Amounts are NUMERIC rendered from exact fixed-point values.

CREATE TABLE engine_journal (
  command_no  bigint PRIMARY KEY,        -- 1, 2, 3, ... in engine order
  kind        text NOT NULL,
  payload     jsonb NOT NULL,
  first_seq   bigint NOT NULL,           -- the first event sequence the command produced
  event_count integer NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE orders (
  id              uuid PRIMARY KEY,
  user_id         uuid NOT NULL,
  market_id       integer NOT NULL REFERENCES markets(id),
  side            text NOT NULL CHECK (side IN ('Buy', 'Sell')),
  type            text NOT NULL,
  time_in_force   text NOT NULL,
  price           numeric,                -- null for market orders
  amount          numeric NOT NULL,
  filled          numeric NOT NULL DEFAULT 0,
  filled_notional numeric NOT NULL DEFAULT 0,
  status          text NOT NULL,
  reduce_only     boolean NOT NULL DEFAULT false,
  client_order_id text,
  leverage        integer NOT NULL,
  cancel_reason   text,
  reject_reason   text,
  created_seq     bigint NOT NULL,
  created_at      timestamptz NOT NULL,
  updated_at      timestamptz NOT NULL
);
CREATE INDEX orders_user_open ON orders (user_id, created_seq DESC) WHERE status IN ('Open', 'PartiallyFilled');
CREATE INDEX orders_user_all ON orders (user_id, created_seq DESC);
CREATE UNIQUE INDEX orders_client_id ON orders (user_id, client_order_id) WHERE client_order_id IS NOT NULL;

CREATE TABLE trades (
  seq        bigint PRIMARY KEY,            -- the Trade event's sequence: the trade id
  market_id  integer NOT NULL REFERENCES markets(id),
  price      numeric NOT NULL,
  amount     numeric NOT NULL,
  taker_side text NOT NULL,
  maker_order_id uuid NOT NULL,
  taker_order_id uuid NOT NULL,
  time       timestamptz NOT NULL
);
CREATE INDEX trades_market_seq ON trades (market_id, seq DESC);

CREATE TABLE fills (
  seq           bigint NOT NULL,            -- the trade's sequence
  liquidity     text NOT NULL CHECK (liquidity IN ('maker', 'taker')),
  user_id       uuid NOT NULL,
  order_id      uuid NOT NULL,
  market_id     integer NOT NULL,
  side          text NOT NULL,
  price         numeric NOT NULL,
  amount        numeric NOT NULL,
  fee           numeric NOT NULL,
  realized_pnl  numeric NOT NULL,
  time          timestamptz NOT NULL,
  PRIMARY KEY (seq, liquidity)
);
CREATE INDEX fills_user_seq ON fills (user_id, seq DESC);

CREATE TABLE positions (
  id            uuid PRIMARY KEY,
  user_id       uuid NOT NULL,
  market_id     integer NOT NULL,
  size          numeric NOT NULL,     -- signed base units (+ long, - short)
  cost          numeric NOT NULL,     -- signed entry notional in USDM
  realized_pnl  numeric NOT NULL DEFAULT 0,
  funding_paid  numeric NOT NULL DEFAULT 0,
  leverage      integer NOT NULL,
  margin_mode   text NOT NULL DEFAULT 'cross',
  created_at    timestamptz NOT NULL,
  updated_at    timestamptz NOT NULL,
  UNIQUE (user_id, market_id)
);

CREATE TABLE balances (
  user_id     uuid PRIMARY KEY,
  collateral  numeric NOT NULL,       -- USDM
  updated_at  timestamptz NOT NULL
);

CREATE TABLE ledger (
  seq         bigint NOT NULL,
  user_id     uuid NOT NULL,
  delta       numeric NOT NULL,
  reason      text NOT NULL,
  reference   text,
  time        timestamptz NOT NULL,
  PRIMARY KEY (seq, user_id, reason)
);
CREATE INDEX ledger_user ON ledger (user_id, seq DESC);

CREATE TABLE marks (
  market_id  integer PRIMARY KEY REFERENCES markets(id),
  mark       numeric NOT NULL,
  updated_at timestamptz NOT NULL
);

-- Operator API idempotency: a retried deposit/withdrawal/faucet with the same key answers the
-- first outcome and moves no money twice.
CREATE TABLE operator_requests (
  idempotency_key text PRIMARY KEY,
  kind            text NOT NULL,
  user_id         uuid NOT NULL,
  amount          numeric NOT NULL,
  command_no      bigint NOT NULL,
  outcome         text NOT NULL,
  created_at      timestamptz NOT NULL DEFAULT now()
);
